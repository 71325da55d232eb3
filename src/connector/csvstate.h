/* csvstate.h - the row tables of the CSV connector (private to csv.c).
 *
 * What a read of the CSV files leaves for the next one: per object type
 * (one file each) the rows of the file, in order, in runs of up to
 * CSV_RUN_MAX rows. A run (struct csv_run) records
 *   - its bytes in the file (length and hash): a delta read that finds the
 *     same bytes where the run's first row is expected keeps all its rows
 *     without looking at them;
 *   - where its rows are: a blob (row hashes, key hashes, keys) in a runs
 *     file.
 * Runs files are written once and never changed. A delta read writes one
 * new runs file with the runs it built (rows changed, new, or next to
 * them) and an index naming, for every run, its runs file: a million
 * unchanged rows cost a few hundred kilobytes of index, not their 28 MB of
 * rows again. A runs file less than half used has its runs copied into the
 * new one; past eight runs files, so have the least used until four are
 * left (csv_writer_init decides).
 *
 * Files, in the engine's state folder, mode 0600: "PREFIX-GEN.state" (an
 * index) and "PREFIX-GEN.runs" (a runs file), GEN ordering them by
 * creation. The watermark names the index with its length and content
 * hash ("\n@NAME HASH LEN"); small tables go into the watermark itself
 * ("\n=" base64 of the index followed by the blobs). A run's blob carries
 * its own hash, checked when the blob is first used: a runs file damaged in
 * a crash (they are not synced) is told then, and the read that meets it
 * leaves no tables (the next read is a full one).
 *
 * Layout (native byte order, told by CSV_STATE_ENDIAN; all offsets
 * 8-aligned):
 *   index:  "IDSYNCRT", u32 version, u32 endian, u64 ntypes, u64 nfiles,
 *           nfiles x struct csv_state_fileref,
 *           per type: u64 cfg, u64 flags, u64 nrows, u64 nruns,
 *                     nruns x struct csv_run
 *   blob of k rows: u64 row hash[k], u64 key hash[k], u32 key offset[k+1]
 *           (padded to 8), the keys (padded to 8).
 */
#ifndef IDSYNC_CONNECTOR_CSVSTATE_H
#define IDSYNC_CONNECTOR_CSVSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/strbuf.h"
#include "util/strvec.h"

#define CSV_RUN_ROWS 64u  /* a run being built closes at this many rows */
#define CSV_RUN_MAX  128u /* no run has more rows */

/* The table's keys are in strictly increasing byte order (a file sorted by
 * its key): keys are found by bisection, without an index of them all. */
#define CSV_TABLE_SORTED 1u

struct csv_run {
    uint64_t csv_hash; /* hash of its bytes in the file (CSV_RUN_SEED) */
    uint32_t csv_len;  /* their length; 0: the run cannot be kept whole */
    uint32_t nrows;
    uint64_t blob_off; /* its blob: offset in runs file blob_no */
    uint32_t blob_len;
    uint32_t blob_no;
    uint64_t blob_hash;
};

#define CSV_RUN_SEED 0x63687a6b68617368ull

struct csv_state_fileref {
    char name[56]; /* a runs file of the folder; "" for blobs after the index */
    uint64_t size;
};

struct csv_state_table {
    uint64_t cfg; /* the configuration hash of the read that wrote it */
    uint64_t flags;
    size_t nrows, nruns;
    const struct csv_run *runs;
};

struct csv_state_file {
    char *name;                /* NULL: the blobs follow the index */
    const unsigned char *data; /* mapped (or in the index buffer) */
    size_t size;
    bool mapped;
};

/* Row tables read from an index. */
struct csv_state {
    size_t ntypes;
    struct csv_state_table *t;
    size_t nfiles;
    struct csv_state_file *files;
};

/* The rows of a run, in its blob. */
struct csv_blob {
    size_t k;
    const uint64_t *hash, *kh;
    const uint32_t *koff;
    const char *keys;
};

/* Parse the index at p (len bytes, 8-aligned, kept by the caller while st is
 * used) with ntypes tables, mapping the runs files it names from dir (NULL:
 * the blobs must follow the index). false, *why set, when it is not a
 * complete index of this version or a runs file is missing or short. */
bool csv_state_open(struct csv_state *st, const void *p, size_t len, const char *dir, size_t ntypes,
                    const char **why);
void csv_state_close(struct csv_state *st);
/* Run r's rows, its blob checked against its hash and its offsets: false
 * when damaged. */
bool csv_state_blob(const struct csv_state *st, const struct csv_run *r, struct csv_blob *b);
/* Bytes of a blob of k rows whose keys are keys_len bytes. */
size_t csv_blob_size(size_t k, size_t keys_len);

/* ---- writing ------------------------------------------------------------ */

struct csv_state_writer {
    const char *dir;    /* NULL: everything into the watermark */
    const char *prefix; /* "csv-" and the connector's name hash */
    const struct csv_state *old;
    /* the new runs file (inline: the blobs after the index) */
    struct strbuf blobs; /* not written yet */
    uint64_t written;    /* bytes written before them */
    int fd;
    char *blobs_name;
    bool have_new;
    uint32_t new_no;  /* its number in the new index */
    uint32_t *old_no; /* old runs file i: its number in the new index + 1 (0: none yet) */
    bool *rewrite;    /* old runs file i: the runs kept from it are copied */
    struct csv_state_fileref *files;
    size_t nfiles, afiles;
    struct strbuf index; /* the tables, after the file table */
    size_t ntables;
    /* the blob being built */
    struct strbuf b_keys, b_blob;
    uint64_t b_hash[CSV_RUN_MAX], b_kh[CSV_RUN_MAX];
    uint32_t b_koff[CSV_RUN_MAX + 1];
    size_t b_k;
    enum ids_err ret;
    struct ids_error err;
};

/* Start the tables of a read, given the tables it read before (old, NULL
 * for a full read) and how many bytes the runs it keeps from old take in
 * their runs files, per old runs file (kept[i]; NULL for none). dir NULL:
 * inline. */
void csv_writer_init(struct csv_state_writer *w, const char *dir, const char *prefix,
                     const struct csv_state *old, const uint64_t *kept);
void csv_writer_release(struct csv_state_writer *w);
/* Build a blob row by row, then csv_writer_blob_end fills r's blob fields. */
void csv_writer_blob_row(struct csv_state_writer *w, uint64_t hash, uint64_t kh, const char *key,
                         uint32_t klen);
void csv_writer_blob_end(struct csv_state_writer *w, struct csv_run *r);
/* A run of old kept whole: r (its old record) is pointed at where its blob
 * is in the new tables. */
void csv_writer_keep(struct csv_state_writer *w, struct csv_run *r);
/* The table of the next object type. */
void csv_writer_table(struct csv_state_writer *w, uint64_t cfg, uint64_t flags, size_t nrows,
                      const struct csv_run *runs, size_t nruns);
/* Write the tables: into dir (the watermark names the index: "\n@NAME HASH
 * LEN"), or inline ("\n=" base64), appended to wm. On a failed write (err
 * set) nothing is appended. Then files of the connector that neither this
 * index nor the old one (old_index, its runs files) name are removed. */
enum ids_err csv_writer_end(struct csv_state_writer *w, const char *old_index, struct strbuf *wm,
                            struct ids_error *err);

/* An index file of dir: checked against the watermark's length and hash,
 * mapped (*map, *len; unmap with file_state_unmap). false with *why. */
bool csv_state_map_index(const char *dir, const char *name, uint64_t hash, uint64_t len,
                         const void **map, size_t *map_len, const char **why);

#endif
