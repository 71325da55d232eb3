/* fileio.h - private helpers of the file connectors (csv.c, ldif.c).
 *
 * - struct file_reader: a buffered reader over a file descriptor (or the
 *   file mapped, file_reader_map) that feeds every byte, once and in file
 *   order, to a content hasher, so that the watermark of a read is the hash
 *   of exactly the bytes that were parsed (a reader may seek back to
 *   re-parse; bytes are hashed only once), or only counts them.
 * - state files in the engine's state folder: created, mapped, listed.
 * - the content hash: hash64 chained over 64 KiB blocks from offset 0, so
 *   the hash of a file's first N bytes can be recomputed later (LDIF delta).
 * - watermarks "SIZE:HASH" (HASH 16 lower-case hex digits), "-" for a
 *   missing file.
 * - atomic replacement of a file: temp file in the same folder, fsync,
 *   rename, fsync of the folder.
 * - struct u64map: an open-addressing map uint64 -> uint64 (key hashes to
 *   line numbers or record numbers), for duplicate detection without
 *   keeping the keys themselves.
 *
 * Not part of the connector interface; no other module includes this.
 */
#ifndef IDSYNC_CONNECTOR_FILEIO_H
#define IDSYNC_CONNECTOR_FILEIO_H

#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "util/error.h"
#include "util/fdio.h"
#include "util/strbuf.h"

struct config_values;
struct strvec;
struct connector_config;

#define FILE_HASH_BLOCK 65536u

/* Sequential content hash. Bytes must be fed in file order. */
struct file_hasher {
    uint64_t h;     /* chained hash of the full blocks so far */
    uint64_t prev;  /* h before the last full block */
    uint64_t first; /* h after the first full block (0 before it) */
    uint64_t size;  /* bytes fed */
    size_t blen;    /* bytes pending in block */
    char *block;    /* FILE_HASH_BLOCK bytes */
};

void file_hasher_init(struct file_hasher *fh);
void file_hasher_release(struct file_hasher *fh);
void file_hasher_feed(struct file_hasher *fh, const void *data, size_t len);
/* The hash of everything fed so far (does not change the state). */
uint64_t file_hasher_value(const struct file_hasher *fh);

struct file_reader {
    int fd;          /* -1 when closed */
    char *path;      /* owned copy, for messages */
    char *buf;       /* read buffer */
    size_t pos, len; /* next byte, bytes valid in buf */
    uint64_t off;    /* file offset of buf[0] */
    struct file_hasher hasher;
    int err;        /* errno of a failed read, 0 if none */
    uint64_t limit; /* read nothing at or past this offset (UINT64_MAX: no limit) */
    /* pages from this offset on are not given back (file_reader_trim):
     * the caller still hashes them (UINT64_MAX: none) */
    uint64_t keep;
    bool count_only; /* the hasher only counts bytes: no content hash */
    bool mapped;     /* buf is the file mapped (file_reader_map) */
    size_t released; /* mapped: pages before this are given back (file_reader_trim) */
};

/* Open `path` for reading. IDS_ENOTFOUND when it does not exist, IDS_EIO
 * naming the path otherwise. On success r must be closed. */
enum ids_err file_reader_open(struct file_reader *r, const char *path, struct ids_error *err);
/* A reader of open descriptor fd (taken: closed by file_reader_close);
 * `path` names it in messages. */
void file_reader_open_fd(struct file_reader *r, int fd, const char *path);
void file_reader_close(struct file_reader *r); /* safe on a closed reader */
/* Refill the buffer; returns false at end of file or on error (r->err). */
bool file_reader_fill(struct file_reader *r);
/* Read the file through a mapping of all of it instead of read calls: its
 * bytes are not copied (a reader that has read nothing yet; false, and the
 * reader reads as before, when the file cannot be mapped). The file's
 * content is hashed at once (not with count_only). Touching the mapping of
 * a file that shrank raises SIGBUS: callers read it between
 * fd_bus_catch(&env) and fd_bus_catch(NULL) (util/fdio.h). */
bool file_reader_map(struct file_reader *r);
/* Mapped: give back the pages of the file read (before the next byte and
 * r->keep), 2 MiB at a time, so that a read keeps a window of the file
 * resident, not all of it. */
void file_reader_trim(struct file_reader *r);
/* Are n bytes from the next byte on at buf + pos, in one piece? Always
 * the rest of a mapped file; of a read buffer only what it holds (the CSV
 * reader keeps runs of rows whole only when mapped). */
bool file_reader_need(const struct file_reader *r, size_t n);

/* Next byte, or -1 at end of file (or on a read error: check r->err). */
static inline int file_reader_getc(struct file_reader *r)
{
    if (r->pos == r->len && !file_reader_fill(r)) {
        return -1;
    }
    return (unsigned char)r->buf[r->pos++];
}

static inline int file_reader_peek(struct file_reader *r)
{
    if (r->pos == r->len && !file_reader_fill(r)) {
        return -1;
    }
    return (unsigned char)r->buf[r->pos];
}

/* Offset of the next byte getc would return. */
static inline uint64_t file_reader_tell(const struct file_reader *r)
{
    return r->off + r->pos;
}

/* Continue reading from `off` (bytes before what was already hashed are not
 * hashed again). */
void file_reader_seek(struct file_reader *r, uint64_t off);
/* Read (and hash) up to offset `off` (or the limit) without parsing. */
enum ids_err file_reader_advance(struct file_reader *r, uint64_t off, struct ids_error *err);
/* Read (and hash) the rest of the file without parsing it. */
enum ids_err file_reader_drain(struct file_reader *r, struct ids_error *err);
/* After the whole file was read: "SIZE:HASH" ("SIZE:-" for a reader that
 * only counted bytes, which matches no file's watermark). */
void file_reader_watermark(const struct file_reader *r, struct strbuf *out);

/* "SIZE:HASH" of the first `limit` bytes of the file (UINT64_MAX = all);
 * "-" when the file does not exist. *size_out receives the bytes hashed. */
enum ids_err file_watermark(const char *path, uint64_t limit, struct strbuf *out,
                            uint64_t *size_out, struct ids_error *err);
/* Parse "SIZE:HASH"; false when malformed. */
bool file_watermark_parse(const char *s, size_t len, uint64_t *size, uint64_t *hash);

/* A file read up to `size`, with what a later read needs to continue after
 * it without hashing the bytes before again (file_mark_*):
 *   hash    the content hash of the first `size` bytes;
 *   rb      start of the hash block that holds the last byte (block-aligned),
 *   rstate  the hasher's chained state at rb;
 *   first   the chained state after the first block (0 while size <= block);
 *   dev/ino the file's identity.
 * Text form "SIZE:HASH:RB:RSTATE:FIRST:DEV:INO" (numbers in decimal, the
 * three hash states in 16 hex digits). */
struct file_mark {
    uint64_t size, hash, rb, rstate, first, dev, ino;
};

/* The mark of everything r has read (and hashed) so far. */
void file_reader_mark(const struct file_reader *r, struct file_mark *m);
void file_mark_format(const struct file_mark *m, struct strbuf *out);
bool file_mark_parse(const char *s, size_t len, struct file_mark *m);
/* Is r's file (opened, not read yet) the file of mark m, unchanged up to
 * m->size? Checked: identity (device and inode), size not smaller, the first
 * hash block and the last block up to m->size (so a file replaced,
 * truncated, rewritten in place from the start or with its end changed is
 * told apart; an append-only file passes). On true, r is set to continue at
 * m->rb with the hasher state of then: file_reader_advance(r, m->size)
 * reads at most one block to get back to m->size. *why says what differed. */
enum ids_err file_reader_resume(struct file_reader *r, const struct file_mark *m, bool *same,
                                const char **why, struct ids_error *err);
/* Size of r's file now. */
enum ids_err file_reader_size(const struct file_reader *r, uint64_t *size, struct ids_error *err);

/* ---- files that another process may still be writing -----------------
 * A file's version: device, inode, size and modification time. */
struct file_stamp {
    uint64_t dev, ino, size;
    int64_t mtime_ns;
    bool set; /* false: no version (never written by this instance) */
};

void file_stamp_of(const struct stat *st, struct file_stamp *s);
bool file_stamp_equal(const struct file_stamp *a, const struct file_stamp *b);

/* Before a file is read: wait until it has not changed for `settle_ms`
 * milliseconds, so that an export that another process is still writing (a
 * copy, an upload, an HR job's output) is not read cut short, which would
 * stage the people after the cut as deletes. Settled: its modification
 * time is that old, or it stayed the same (size, time, inode) that long
 * while watched (a clock ahead of this one), or it is
 * `own`, the version this connector wrote itself (MAY be NULL). A missing
 * file is settled (the reader reports it). Logs once when it waits.
 * IDS_EIO when the file kept changing for 10 × settle_ms; IDS_EINTR
 * when *stop is non-zero while it waits. settle_ms 0: returns at once. */
enum ids_err file_settle(const char *connector, const char *path, long settle_ms,
                         const struct file_stamp *own, const volatile sig_atomic_t *stop,
                         struct ids_error *err);

/* Atomic replacement: creates a temp file next to `path`. */
struct file_atomic {
    char *path; /* the file to replace */
    char *tmp;  /* the temp file, NULL once renamed or removed */
    int fd;
    struct file_stamp stamp; /* the new file's version, after commit */
};
enum ids_err file_atomic_begin(struct file_atomic *fa, const char *path, struct ids_error *err);
/* Write all of data; IDS_EIO naming the temp file. */
enum ids_err file_atomic_write(struct file_atomic *fa, const void *data, size_t len,
                               struct ids_error *err);
/* fsync the temp file, rename it over path, fsync the folder. */
enum ids_err file_atomic_commit(struct file_atomic *fa, struct ids_error *err);
/* Remove the temp file if still there and free. */
void file_atomic_release(struct file_atomic *fa);

/* An anonymous (already unlinked) temp file in the folder of `path`. */
enum ids_err file_anon_temp(const char *path, int *fd_out, struct ids_error *err);
/* fsync the folder that holds `path`. */
enum ids_err file_sync_dir(const char *path, struct ids_error *err);

/* ---- state files (connector->state_dir) ------------------------------
 * Create a new file "PREFIX-GEN" SUFFIX in `dir` for writing (the folder is
 * created, mode 0700; the file 0600); GEN orders files by their creation
 * time. *name_out receives the file name (no folder), *fd_out the open
 * descriptor. Not synced: what names it keeps its length and hash, a file
 * lost or damaged in a crash is told on reading. */
enum ids_err file_state_create(const char *dir, const char *prefix, const char *suffix,
                               struct strbuf *name_out, int *fd_out, struct ids_error *err);
/* Remove state file `name` of `dir` (a write that failed). */
void file_state_remove(const char *dir, const char *name);
/* Map state file `name` of `dir` read-only (*map NULL, *len 0 for an
 * empty file); IDS_ENOTFOUND when it is not there. The state files are the
 * engine's own (0600 in a 0700 folder): nothing truncates one while mapped. */
enum ids_err file_state_map(const char *dir, const char *name, const void **map, size_t *len,
                            struct ids_error *err);
void file_state_unmap(const void *map, size_t len);
/* Append the names of dir's files "PREFIX-*" to out. */
void file_state_list(const char *dir, const char *prefix, struct strvec *out);

/* ---- uint64 -> uint64 map (open addressing; key 0 is allowed) ------- */
struct u64map_slot {
    uint64_t key;
    uint64_t val;
};
struct u64map {
    size_t cap; /* power of two, 0 when empty */
    size_t nr;
    struct u64map_slot *slots;
    unsigned char *used;
};
void u64map_release(struct u64map *m);
/* Make room for n entries without growing (a map about to take many). */
void u64map_reserve(struct u64map *m, size_t n);
/* Insert or overwrite. */
void u64map_put(struct u64map *m, uint64_t key, uint64_t val);
bool u64map_get(const struct u64map *m, uint64_t key, uint64_t *val);

/* ---- set of uint64 (open addressing, 8 bytes a slot; key 0 allowed) -- */
struct u64set {
    size_t cap; /* power of two, 0 when empty */
    size_t nr;
    uint64_t *slots; /* 0: free (key 0 is has_zero) */
    bool has_zero;
};
void u64set_release(struct u64set *m);
void u64set_add(struct u64set *m, uint64_t key);
bool u64set_has(const struct u64set *m, uint64_t key);

/* ---- options -------------------------------------------------------- */
/* The string value of option `key` in vals (NULL when absent). */
const char *file_opt(const struct config_values *vals, const char *key);
/* Resolve a relative path against the folder of the configuration file
 * (cfg->loc.file); absolute paths are copied. Caller frees. */
char *file_resolve_path(const struct connector_config *cfg, const char *path);

/* hash64 of a string, for key maps. */
uint64_t file_key_hash(const char *s, size_t len);

#endif
