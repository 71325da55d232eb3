/* csv.c - the CSV connector (RFC 4180 files), source and target.
 *
 * One object type = one file (a connector with one object type may set
 * `path` at the connector level). The header row names the columns; the
 * `key` column is the anchor; `dn_column` (optional) the DN, else the key.
 * Cells of other columns hold values separated by `separator` (";").
 *
 * Read: a cursor streams each file record by record (csvparse.c), hashing
 * the bytes it reads. The watermark ("csv4", see the row table below) is
 * "SIZE:HASH:STAT" per file plus, per file, the hash and key of every row
 * read. A delta read of files whose size, modification time and inode are
 * those of the last read opens nothing and yields nothing; of a changed file it
 * streams the file, skips every row whose bytes are remembered (after the
 * duplicate-key check), yields the other rows as complete objects and then
 * the deletion of every remembered key that no row has any more.
 *
 * Write: submit() queues modifies and deletes in memory and appends adds to
 * an anonymous side file; export_end() streams the existing file into a
 * temp file next to it, applying the queued changes by key, appends the
 * adds, and renames the temp file over the original (fsync of both). The
 * results are delivered by poll() after that. See docs/internals/connectors.md.
 */
#include "connector/connector.h"

#include <errno.h>
#include <fcntl.h>
#include <iconv.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "connector/csvparse.h"
#include "connector/csvstate.h"
#include "connector/fileio.h"
#include "util/codec.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/strvec.h"
#include "util/banned.h"

#define NO_COL    SIZE_MAX
#define OUT_FLUSH (256u * 1024u)

static const struct config_option csv_options[] = {
    {"path", OPT_PATH, NULL, 0, 0, NULL, false,
     "CSV file (RFC 4180, UTF-8) read and written; relative to the configuration file. "
     "May be set per object type instead, when each type has its own file."},
    {"key", OPT_STRING, NULL, 0, 0, NULL, false,
     "Key column: the anchor of each row, unique and never empty (may be set per object type)."},
    {"dn_column", OPT_STRING, NULL, 0, 0, NULL, false,
     "Column holding the object's DN or identifier; default: the key."},
    {"delimiter", OPT_STRING, ",", 0, 0, NULL, false, "Field delimiter: one character, or `tab`."},
    {"separator", OPT_STRING, ";", 0, 0, NULL, false,
     "Separator of the values of a multi-valued cell (one character); written escaped as "
     "`\\;` inside a value, a backslash as `\\\\`."},
    {"encoding", OPT_STRING, "UTF-8", 0, 0, NULL, false,
     "Character encoding of the files read: `UTF-8`, or any name `iconv -l` lists, such as "
     "`WINDOWS-1252`, `ISO-8859-15` or `UTF-16` (with its byte order mark). A file in another "
     "encoding is converted to UTF-8 as it is read; a byte that is not of the encoding fails "
     "the read, naming the line. idsync writes CSV files only in UTF-8: a connector with "
     "another encoding can be read, not exported to."},
    {"settle", OPT_DURATION, "2s", 0, 0, NULL, false,
     "A file changed less than this long ago may still be being written (a copy, an upload, "
     "the HR job's output): the import waits until it has stayed unchanged this long, and "
     "fails, reading nothing, if it keeps changing for ten times as long. A file this "
     "connector wrote itself is read at once. `0` reads at once."},
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

static const struct config_option csv_object_options[] = {
    {"path", OPT_PATH, NULL, 0, 0, NULL, false,
     "CSV file of this object type (when the connector has several)."},
    {"key", OPT_STRING, NULL, 0, 0, NULL, false, "Key column of this object type."},
    {"dn_column", OPT_STRING, NULL, 0, 0, NULL, false, "DN column of this object type."},
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

/* One queued modify or delete. Its change waits in the side file of
 * modifies (change_encode), read back when the snapshot is written: a
 * session of a million modifies holds only these. */
struct csv_pending {
    uint64_t tag;
    enum change_op op;
    uint32_t ch_len;
    uint64_t ch_off; /* in the side file of modifies */
    char *key;       /* the row it addresses */
    size_t next;     /* next pending with the same key hash, +1 (0 = none) */
    bool done;
    enum ids_err code;
    char *msg;     /* why it failed (code != IDS_OK); a session holds many of these */
    char *new_key; /* the key after the change, when it changed */
    char *new_dn;  /* the DN after the change, when it changed */
};

/* Status of an add, by its record offset in the side file (add_status). */
#define ADD_PRESENT  1u /* the row already existed with the same values */
#define ADD_CONFLICT 2u /* the key exists with other values; line << 2 */

struct csv_type {
    const struct object_type_config *ot;
    char *path;
    const char *key;       /* key column name */
    const char *dn_column; /* NULL: the DN is the key */
    size_t index;

    /* export state (export_begin .. last poll) */
    bool exists; /* the file existed at export_begin */
    bool bom;
    char eol[3];
    struct strvec cols;      /* columns of the file written */
    struct strvec orig_cols; /* header of the existing file */
    int adds_fd;             /* side file of adds, -1 when none */
    uint64_t adds_size;
    size_t nadds;
    struct u64map add_index;  /* key hash -> record offset in the side file */
    struct u64map add_status; /* record offset -> ADD_* */
    struct csv_pending *pend;
    size_t npend, palloc;
    int mods_fd;            /* side file of modifies and deletes, -1 when none */
    uint64_t mods_size;     /* bytes queued: written and in mods_buf */
    struct strbuf mods_buf; /* not written yet */
    enum ids_err mods_code; /* a write to it failed (sticky for the export) */
    struct ids_error mods_err;
    struct u64map pend_index; /* key hash -> first pending index + 1 */
    enum ids_err fail_code;   /* the snapshot of this file could not be written */
    struct ids_error fail_err;
    /* poll position */
    size_t poll_pend;
    uint64_t poll_add_off;
    struct file_stamp own; /* the version of the file this instance last wrote */
};

struct csv_conn {
    struct connector base; /* MUST be first */
    char delim;
    char sep;
    long settle_ms; /* file_settle */
    char *encoding; /* the files' encoding when not UTF-8 (converted as read), else NULL */
    size_t ntypes;
    struct csv_type *types;
    bool exporting; /* between export_begin and the last result */
    bool ended;     /* export_end ran */
    size_t poll_type;
};

/* Where rows start: row `row` at `line`, the rows after it on the lines
 * after it, up to the next entry (a row of several lines, a blank line). */
struct line_mark {
    uint32_t row;
    uint32_t line;
};

/* A run of the table a read leaves (csvstate.h): kept whole from the old
 * table (ref: old run old_c, its record as it was), or built from rows:
 * entries seq[first .. first + rec.nrows) of the row table. */
struct nrun {
    struct csv_run rec;
    bool ref;
    bool tail; /* built after the files: old rows whose deletion is put off */
    uint32_t first;
    uint32_t old_c;
};

/* An open run that has this few rows takes the old run kept after it in,
 * instead of closing this short (a row inserted or changed before a run) */
#define RUN_SMALL 16u
/* A run longer than this in the file is not kept whole */
#define RUN_BYTES_MAX (1u << 20)

/* The rows of one file accepted by this read, for the next watermark and
 * for duplicate keys (rows read now: 12 bytes a row and its key), and the
 * table this read leaves, in runs. */
struct row_table {
    uint64_t *hash; /* hash64 of each row's bytes */
    uint32_t *koff; /* each row's key in keys (its length: up to the next key) */
    size_t nr, alloc, kalloc;
    struct strbuf keys;
    struct line_mark *marks; /* the first row's line and where rows skip lines */
    size_t nmarks, amarks;
    bool unsorted; /* a key was not greater than the one before: rows are in cur->seen */
    uint64_t cfg;  /* hash of the header and configuration (row_cfg_hash) */
    bool have_cfg;
    /* delta: the entries of runs built, an old row kept (its index) or a row
     * read now (SEQ_NEW | its index above); a full read's are implicit
     * (run_entry) */
    uint32_t *seq;
    size_t nseq, aseq;
    struct nrun *runs;
    size_t nruns, aruns;
    size_t ntotal; /* rows in runs */
};

#define SEQ_NEW 0x80000000u
/* How far ahead of the expected old row a row is looked for (a row
 * inserted, deleted or changed moves the rest by one) */
#define MATCH_WINDOW 32

/* The table of one file at the last read (delta read), in file order: old
 * row j is in run c when first[c] <= j < first[c + 1]. A run's rows are
 * looked at (its blob checked and used) only when the read needs them. */
struct old_table {
    bool usable; /* its configuration hash equals this read's: rows can be skipped */
    bool sorted; /* keys in increasing order: found by bisection */
    uint64_t cfg;
    size_t n, nruns;
    const struct csv_run *runs;
    uint32_t *first;          /* nruns + 1 */
    struct csv_blob *blob;    /* per run, once loaded */
    unsigned char *state;     /* per run: 0 not loaded, 1 loaded, 2 damaged */
    unsigned char *whole;     /* per run: kept whole by this read */
    unsigned char *touched;   /* per run: a row of it kept or taken one by one */
    uint32_t *wline;          /* per run kept whole: the line of its first row */
    unsigned char *same;      /* bit per row: read again with the same bytes (kept) */
    unsigned char *taken;     /* bit per row: a row read now changed it in place */
    struct line_mark *klines; /* rows kept one by one: their line now */
    size_t nklines, aklines;
    size_t next; /* the old row the next row of the file is expected to be */
    size_t rc;   /* the run that holds it (or one before) */
    /* rows not kept yet whose key a row read now (not in its old place)
     * has: kept later, they are duplicates (first in the files wins) */
    uint32_t *watch;
    size_t nwatch, awatch;
    /* unsorted tables: rows by key hash (open addressing; row index + 1) */
    uint32_t *kslot;
    size_t kmask;
    bool kbuilt;
};

/* An old row as its run's blob has it. */
struct orow {
    uint64_t hash, kh;
    const char *key;
    uint32_t klen;
};

struct csv_cursor {
    struct csv_conn *conn;
    bool changes_only;      /* read_changes with an unchanged file: yields nothing */
    bool collect;           /* remember the rows for the watermark (reads, not check) */
    bool delta;             /* read_changes of a changed file: old[] is set */
    bool incomplete;        /* a row could not be read: the watermark forces a full read */
    long unreadable;        /* IDS_EINPUT rows of this read */
    struct row_table *rows; /* per object type */
    struct old_table *old;  /* per object type (delta) */
    struct change **dels;   /* deletions left to yield (delta, after the files) */
    size_t ndels, idel;
    bool tail; /* the files are read: yielding deletions */
    size_t ti; /* current object type */
    bool open;
    struct file_reader r;
    struct file_stamp opened; /* the file being read, as it was opened */
    uint64_t line;
    struct csv_record rec;
    struct strvec header;
    struct strvec missing; /* configured columns not in a header (csv_check) */
    size_t key_col, dn_col;
    bool *keep; /* per header column */
    bool *is_ref;
    /* The rows read (not kept) of tables not in key order, by key hash,
     * for duplicate keys: a slot holds the row's index over the row tables
     * of all types + 1, 0 when free. 4 bytes a slot (a million rows: 8
     * MiB); key hashes are computed again from the tables' keys. */
    uint32_t *seen;
    size_t seen_mask, seen_nr;
    struct strbuf wm; /* watermark being built */
    bool bom;         /* the current file starts with a UTF-8 BOM */
    bool done;
    char *old_state;      /* the state file the old watermark names (delta), or NULL */
    struct strbuf tables; /* the old row tables from the watermark (delta) */
    const void *map;      /* or their index file, mapped */
    size_t map_len;
    struct csv_state st; /* the old tables (delta); cur->old points into them */
    bool damaged;        /* a blob of them was not the one written */
    /* the run of rows being built: open, its rows all one line each so far
     * (its bytes can be kept), where it starts in the file, its first entry */
    bool copen, cok;
    uint64_t cstart;
    size_t cfirst;
};

static const char *opt_of(const struct csv_conn *cc, const struct csv_type *t, const char *key)
{
    const char *v = NULL;

    if (t != NULL && t->ot != NULL) {
        v = file_opt(&t->ot->opts, key);
    }
    if (v == NULL) {
        v = file_opt(&cc->base.cfg->opts, key);
    }
    return v;
}

static enum ids_err one_char(const char *v, const char *what, char def, char *out,
                             struct ids_error *err)
{
    if (v == NULL) {
        *out = def;
        return IDS_OK;
    }
    if (strcmp(v, "tab") == 0 || strcmp(v, "\\t") == 0) {
        *out = '\t';
        return IDS_OK;
    }
    if (strlen(v) != 1 || v[0] == '"' || v[0] == '\r' || v[0] == '\n') {
        return ids_error_set(err, IDS_ECONFIG,
                             "%s must be one character (not a quote or line end), not \"%s\"", what,
                             v);
    }
    *out = v[0];
    return IDS_OK;
}

static void csv_type_export_reset(struct csv_type *t);

static void csv_free(struct csv_conn *cc)
{
    size_t i;

    if (cc == NULL) {
        return;
    }
    for (i = 0; i < cc->ntypes; i++) {
        csv_type_export_reset(&cc->types[i]);
        free(cc->types[i].path);
    }
    free(cc->types);
    free(cc->encoding);
    free(cc);
}

/* `encoding`: NULL for UTF-8, else a name iconv knows (kept in *out). */
static enum ids_err check_encoding(const char *enc, char **out, struct ids_error *err)
{
    iconv_t cd;

    *out = NULL;
    if (enc == NULL || strcasecmp(enc, "UTF-8") == 0 || strcasecmp(enc, "UTF8") == 0) {
        return IDS_OK;
    }
    cd = iconv_open("UTF-8", enc);
    if (cd == (iconv_t)-1) {
        return ids_error_set(err, IDS_ECONFIG,
                             "encoding: \"%s\" is not an encoding iconv knows (`iconv -l` lists "
                             "them: WINDOWS-1252, ISO-8859-15, UTF-16, ...)",
                             enc);
    }
    iconv_close(cd);
    *out = xstrdup(enc);
    return IDS_OK;
}

static enum ids_err csv_create(const struct connector_config *cfg, struct connector **out,
                               struct ids_error *err)
{
    struct csv_conn *cc = xcalloc(1, sizeof(*cc));
    const struct config_value *v;
    enum ids_err ret;
    size_t i, j;

    *out = NULL;
    cc->base.cfg = cfg;
    ret = one_char(file_opt(&cfg->opts, "delimiter"), "delimiter", ',', &cc->delim, err);
    if (ret != IDS_OK) {
        goto done;
    }
    ret = one_char(file_opt(&cfg->opts, "separator"), "separator", ';', &cc->sep, err);
    if (ret != IDS_OK) {
        goto done;
    }
    v = config_values_get(&cfg->opts, "settle");
    cc->settle_ms = (v != NULL ? v->num : 2) * 1000;
    ret = check_encoding(file_opt(&cfg->opts, "encoding"), &cc->encoding, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (cc->sep == cc->delim || cc->sep == '\\') {
        ret = ids_error_set(err, IDS_ECONFIG,
                            "separator must differ from the delimiter and the backslash");
        goto done;
    }
    if (cfg->nobjects == 0) {
        ret = ids_error_set(err, IDS_ECONFIG, "a csv connector needs one object type (objects:)");
        goto done;
    }
    cc->ntypes = cfg->nobjects;
    cc->types = xcalloc(cc->ntypes, sizeof(*cc->types));
    for (i = 0; i < cc->ntypes; i++) {
        struct csv_type *t = &cc->types[i];
        const char *path;

        t->ot = &cfg->objects[i];
        t->index = i;
        t->adds_fd = -1;
        t->mods_fd = -1;
        strbuf_init(&t->mods_buf, 0);
        path = file_opt(&t->ot->opts, "path");
        if (path == NULL && cc->ntypes > 1) {
            ret = ids_error_set(err, IDS_ECONFIG,
                                "object type %s: each object type needs its own path "
                                "when there are several",
                                t->ot->name);
            goto done;
        }
        if (path == NULL) {
            path = file_opt(&cfg->opts, "path");
        }
        if (path == NULL || path[0] == '\0') {
            ret = ids_error_set(err, IDS_ECONFIG, "object type %s: no path", t->ot->name);
            goto done;
        }
        t->path = file_resolve_path(cfg, path);
        for (j = 0; j < i; j++) {
            if (strcmp(cc->types[j].path, t->path) == 0) {
                ret = ids_error_set(err, IDS_ECONFIG, "object types %s and %s share the file %s",
                                    cc->types[j].ot->name, t->ot->name, t->path);
                goto done;
            }
        }
        t->key = opt_of(cc, t, "key");
        if (t->key == NULL || t->key[0] == '\0') {
            ret = ids_error_set(err, IDS_ECONFIG, "object type %s: no key column (key:)",
                                t->ot->name);
            goto done;
        }
        t->dn_column = opt_of(cc, t, "dn_column");
        if (t->dn_column != NULL && t->dn_column[0] == '\0') {
            t->dn_column = NULL;
        }
    }
    *out = &cc->base;
    cc = NULL;
    ret = IDS_OK;
done:
    csv_free(cc);
    return ret;
}

static enum ids_err csv_open(struct connector *c, struct ids_error *err)
{
    struct csv_conn *cc = (struct csv_conn *)c;
    size_t i;

    for (i = 0; i < cc->ntypes; i++) {
        const char *path = cc->types[i].path;
        const char *slash = strrchr(path, '/');
        struct stat st;

        if (stat(path, &st) == 0) {
            if (!S_ISREG(st.st_mode)) {
                return ids_error_set(err, IDS_EUNREACHABLE, "%s: not a regular file", path);
            }
            if (access(path, R_OK) != 0) {
                return ids_error_set(err, IDS_EUNREACHABLE, "%s: %s", path, strerror(errno));
            }
        } else if (errno != ENOENT) {
            return ids_error_set(err, IDS_EUNREACHABLE, "%s: %s", path, strerror(errno));
        } else if (slash != NULL) {
            char *dir = xmemdup(path, slash == path ? 1 : (size_t)(slash - path));
            int rc = stat(dir, &st);

            if (rc != 0 || !S_ISDIR(st.st_mode)) {
                ids_error_set(err, IDS_EUNREACHABLE, "%s: folder %s does not exist", path, dir);
                free(dir);
                return IDS_EUNREACHABLE;
            }
            free(dir);
        }
    }
    return IDS_OK;
}

static void csv_close(struct connector *c)
{
    csv_free((struct csv_conn *)c);
}

/* ---- reading --------------------------------------------------------- */

static bool ref_attr(const struct object_type_config *ot, const char *name)
{
    size_t i;

    for (i = 0; i < ot->nrefs; i++) {
        if (strcasecmp(ot->refs[i].attr, name) == 0) {
            return true;
        }
    }
    return false;
}

static bool configured(const struct object_type_config *ot, const char *name)
{
    return ot->attributes.nr == 0 || strvec_find(&ot->attributes, name, true) >= 0;
}

static void cursor_close_file(struct csv_cursor *cur)
{
    if (cur->open) {
        file_reader_close(&cur->r);
    }
    cur->open = false;
    cur->copen = false;
    strvec_clear(&cur->header);
    free(cur->keep);
    cur->keep = NULL;
    free(cur->is_ref);
    cur->is_ref = NULL;
}

/* ---- the row table of the watermark ------------------------------------
 *
 * "csv4" + (":" or ",") + "SIZE:HASH:STAT" (or "-") per file, then the row
 * tables (csvstate.h): "\n=" + base64 of them, or "\n@NAME HASH LEN" naming
 * their index file. HASH is the file's content hash, or "-" after a delta
 * read (which hashes runs of rows, not the file: the tables, always
 * written then, are what the next read compares with). STAT is
 * "MTIME_NS.INO.DEV" of the file when it was read, or "0" when its
 * modification time was less than two seconds before the read (a change in
 * the same clock tick could hide behind it: such a file is read next time).
 * A read that met an unreadable row writes no tables (the next changed file
 * is read in full, which stages deletions against the store). */

#define ROW_HASH_SEED 0x726f7768617368ull
/* Row tables from this size on go to state files (write_tables). */
#define CSV_STATE_MIN 65536u

/* What turns the bytes of a row into an entry: header, BOM, columns and
 * attributes configured, delimiter, separator. Rows are only skipped when
 * this is the same as at the last import. */
static uint64_t row_cfg_hash(const struct csv_cursor *cur, const struct csv_type *t)
{
    struct strbuf sb = STRBUF_INIT;
    uint64_t h;
    size_t i;

    strbuf_addf(&sb, "%s%c%s%c%s%c%c%c%d%c", t->ot->name, 0, t->key, 0,
                t->dn_column ? t->dn_column : "", 0, cur->conn->delim, cur->conn->sep, cur->bom, 0);
    for (i = 0; i < t->ot->attributes.nr; i++) {
        strbuf_addstr(&sb, t->ot->attributes.v[i]);
        strbuf_addch(&sb, '\0');
    }
    strbuf_addch(&sb, '\1');
    for (i = 0; i < t->ot->nrefs; i++) {
        strbuf_addstr(&sb, t->ot->refs[i].attr);
        strbuf_addch(&sb, '\0');
    }
    strbuf_addch(&sb, '\1');
    strbuf_addbuf(&sb, &cur->rec.raw); /* the header row */
    h = hash64(sb.buf, sb.len, ROW_HASH_SEED);
    strbuf_release(&sb);
    return h;
}

static uint64_t row_hash(const struct csv_record *rec)
{
    return hash64_bulk(rec->raw.buf, rec->raw.len, ROW_HASH_SEED);
}

static void row_table_release(struct row_table *t)
{
    free(t->seq);
    free(t->hash);
    free(t->koff);
    free(t->marks);
    free(t->runs);
    strbuf_release(&t->keys);
    memset(t, 0, sizeof(*t));
}

static void old_table_release(struct old_table *t)
{
    /* runs point into the cursor's index */
    free(t->first);
    free(t->blob);
    free(t->state);
    free(t->whole);
    free(t->touched);
    free(t->wline);
    free(t->same);
    free(t->taken);
    free(t->klines);
    free(t->watch);
    free(t->kslot);
    memset(t, 0, sizeof(*t));
}

static uint32_t rt_key_len(const struct row_table *t, size_t i)
{
    return (i + 1 < t->nr ? t->koff[i + 1] : (uint32_t)t->keys.len) - t->koff[i];
}

/* The line row i of t starts at. */
static uint32_t rt_line(const struct row_table *t, size_t i)
{
    size_t lo = 0;
    size_t hi = t->nmarks; /* the mark sought is in [lo, hi) */

    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;

        if (t->marks[mid].row <= i) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return t->marks[lo].line + (uint32_t)(i - t->marks[lo].row);
}

static uint64_t rt_key_hash(const struct row_table *t, size_t i)
{
    return file_key_hash(t->keys.buf + t->koff[i], rt_key_len(t, i));
}

static size_t seen_slot(const struct csv_cursor *cur, uint64_t kh)
{
    return (size_t)((kh * 0x9e3779b97f4a7c15ull) >> 20) & cur->seen_mask;
}

/* The row a seen slot names: its type and index in that type's table. */
static void seen_row(const struct csv_cursor *cur, uint32_t slot, size_t *ti, size_t *i)
{
    size_t g = slot - 1;
    size_t t = 0;

    while (g >= cur->rows[t].nr) {
        g -= cur->rows[t].nr;
        t++;
    }
    *ti = t;
    *i = g;
}

/* Two keys compared as bytes (the shorter first on a tie). */
static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);

    return c != 0 ? c : (alen > blen) - (alen < blen);
}

/* Row i's key of t compared with key. */
static int rt_key_cmp(const struct row_table *t, size_t i, const char *key, size_t len)
{
    return key_cmp(t->keys.buf + t->koff[i], rt_key_len(t, i), key, len);
}

/* A sorted table's row whose key is key: true with its index. */
static bool rt_find_sorted(const struct row_table *t, const char *key, size_t len, size_t *i)
{
    size_t lo = 0;
    size_t hi = t->nr;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = rt_key_cmp(t, mid, key, len);

        if (c == 0) {
            *i = mid;
            return true;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return false;
}

/* A row read with key `key` (hash kh): true with its type and line. Rows
 * of a table in key order are found by bisection, the others through the
 * index. */
static bool seen_find(const struct csv_cursor *cur, uint64_t kh, const char *key, size_t len,
                      size_t *ti, uint32_t *line)
{
    size_t s, i, t;

    for (s = seen_slot(cur, kh); cur->seen != NULL && cur->seen[s] != 0;
         s = (s + 1) & cur->seen_mask) {
        seen_row(cur, cur->seen[s], ti, &i);
        if (rt_key_hash(&cur->rows[*ti], i) == kh) {
            *line = rt_line(&cur->rows[*ti], i);
            return true;
        }
    }
    for (t = 0; t < cur->conn->ntypes; t++) {
        if (!cur->rows[t].unsorted && rt_find_sorted(&cur->rows[t], key, len, &i)) {
            *ti = t;
            *line = rt_line(&cur->rows[t], i);
            return true;
        }
    }
    return false;
}

static void seen_put(struct csv_cursor *cur, uint64_t kh, uint32_t slot)
{
    size_t s = seen_slot(cur, kh);

    while (cur->seen[s] != 0) {
        s = (s + 1) & cur->seen_mask;
    }
    cur->seen[s] = slot;
}

/* Index every row of the tables not in key order, in at least twice as
 * many slots. */
static void seen_rebuild(struct csv_cursor *cur)
{
    size_t total = 0;
    size_t cap = 1024;
    size_t g = 0;
    size_t t, r;

    for (t = 0; t < cur->conn->ntypes; t++) {
        total += cur->rows[t].unsorted ? cur->rows[t].nr : 0;
    }
    while (cap < 2 * total) {
        cap *= 2;
    }
    free(cur->seen);
    cur->seen = xcalloc(cap, sizeof(*cur->seen));
    cur->seen_mask = cap - 1;
    cur->seen_nr = 0;
    for (t = 0; t < cur->conn->ntypes; g += cur->rows[t].nr, t++) {
        for (r = 0; cur->rows[t].unsorted && r < cur->rows[t].nr; r++) {
            if (g + r + 1 >= UINT32_MAX) {
                return; /* four billion rows: later ones are not compared */
            }
            seen_put(cur, rt_key_hash(&cur->rows[t], r), (uint32_t)(g + r + 1));
            cur->seen_nr++;
        }
    }
}

/* Row i of type ti (the last row of its table) with key hash kh was
 * accepted. A table whose keys come in increasing order (an export sorted
 * by its key, the usual case) needs no index in a full read: bisection
 * finds them. The first key out of order indexes the table's rows. */
static void seen_add(struct csv_cursor *cur, size_t ti, size_t i, uint64_t kh)
{
    struct row_table *rt = &cur->rows[ti];
    size_t g = i;
    size_t t;

    if (!rt->unsorted) {
        /* a delta read indexes its few rows: every kept row asks */
        if (!cur->delta &&
            (i == 0 || rt_key_cmp(rt, i - 1, rt->keys.buf + rt->koff[i], rt_key_len(rt, i)) < 0)) {
            return;
        }
        rt->unsorted = true;
        seen_rebuild(cur);
        return;
    }
    for (t = 0; t < ti; t++) {
        g += cur->rows[t].nr;
    }
    if (g + 1 >= UINT32_MAX) {
        return;
    }
    if ((cur->seen_nr + 1) * 2 > cur->seen_mask + 1) {
        seen_rebuild(cur); /* takes row i too */
        return;
    }
    seen_put(cur, kh, (uint32_t)(g + 1));
    cur->seen_nr++;
}

/* Remember an accepted row: for the next watermark and for duplicate keys. */
static void row_table_add(struct csv_cursor *cur, size_t ti, uint64_t hash, const char *key,
                          size_t len, uint64_t line)
{
    struct row_table *t = &cur->rows[ti];

    if (t->keys.len + len > UINT32_MAX) {
        cur->incomplete = true; /* absurdly large: read in full next time */
        return;
    }
    ALLOC_GROW(t->hash, t->nr + 1, t->alloc);
    ALLOC_GROW(t->koff, t->nr + 1, t->kalloc);
    t->hash[t->nr] = hash;
    t->koff[t->nr] = (uint32_t)t->keys.len;
    if (t->nr == 0 || rt_line(t, t->nr) != (uint32_t)line) {
        ALLOC_GROW(t->marks, t->nmarks + 1, t->amarks);
        t->marks[t->nmarks].row = (uint32_t)t->nr;
        t->marks[t->nmarks].line = (uint32_t)line;
        t->nmarks++;
    }
    t->nr++;
    strbuf_add(&t->keys, key, len);
    seen_add(cur, ti, t->nr - 1, file_key_hash(key, len));
}

/* ---- the old table (delta) ------------------------------------------------ */

/* The run that holds old row j. */
static size_t old_run_of(const struct old_table *o, size_t j)
{
    size_t lo = 0;
    size_t hi = o->nruns; /* the run sought is in [lo, hi) */

    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;

        if (o->first[mid] <= j) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* Run c's rows, its blob checked the first time: false when it is damaged
 * (the read then leaves no tables: the next one is a full read). */
static bool old_load(struct csv_cursor *cur, struct old_table *o, size_t c)
{
    if (o->state[c] == 0) {
        o->state[c] = csv_state_blob(&cur->st, &o->runs[c], &o->blob[c]) ? 1 : 2;
    }
    if (o->state[c] != 2) {
        return true;
    }
    if (!cur->damaged) {
        log_warn("csv-state",
                 "connector=%s msg=\"its row tables are damaged (a state file not written out "
                 "before a crash?): rows are read as they are now, deletions wait for the next "
                 "read, a full one\"",
                 cur->conn->base.name);
        cur->damaged = true;
    }
    return false;
}

/* Old row j: false when its run is damaged. */
static bool old_row(struct csv_cursor *cur, struct old_table *o, size_t j, struct orow *r)
{
    size_t c = old_run_of(o, j);
    size_t i = j - o->first[c];
    const struct csv_blob *b = &o->blob[c];

    if (!old_load(cur, o, c)) {
        return false;
    }
    r->hash = b->hash[i];
    r->kh = b->kh[i];
    r->key = b->keys + b->koff[i];
    r->klen = b->koff[i + 1] - b->koff[i];
    return true;
}

static bool old_kept(const struct old_table *o, size_t j)
{
    return ((o->same[j / 8] >> (j % 8)) & 1u) != 0 || o->whole[old_run_of(o, j)] != 0;
}

static bool old_taken(const struct old_table *o, size_t j)
{
    return (o->taken[j / 8] >> (j % 8)) & 1u;
}

static void old_set_kept(struct old_table *o, size_t j)
{
    o->same[j / 8] |= (unsigned char)(1u << (j % 8));
    o->touched[old_run_of(o, j)] = 1;
}

/* Old row j is read again one by one, on `line` now. */
static void old_keep_row(struct old_table *o, size_t j, uint64_t line)
{
    old_set_kept(o, j);
    ALLOC_GROW(o->klines, o->nklines + 1, o->aklines);
    o->klines[o->nklines].row = (uint32_t)j;
    o->klines[o->nklines].line = (uint32_t)line;
    o->nklines++;
}

/* Old row j was changed in place by a row read now. */
static void old_set_taken(struct old_table *o, size_t j)
{
    o->taken[j / 8] |= (unsigned char)(1u << (j % 8));
    o->touched[old_run_of(o, j)] = 1;
}

/* Is an old row in [lo, hi) watched (a row read now has its key)? */
static bool old_watched(const struct old_table *o, size_t lo, size_t hi)
{
    size_t i;

    for (i = 0; i < o->nwatch; i++) {
        if (o->watch[i] >= lo && o->watch[i] < hi) {
            return true;
        }
    }
    return false;
}

/* The line an old row kept by this read is on now (0 when not known). */
static uint32_t old_line(const struct old_table *o, size_t j)
{
    size_t c = old_run_of(o, j);
    size_t i;

    if (o->whole[c]) {
        return o->wline[c] + (uint32_t)(j - o->first[c]);
    }
    for (i = 0; i < o->nklines; i++) {
        if (o->klines[i].row == j) {
            return o->klines[i].line;
        }
    }
    return 0;
}

/* Index an unsorted table's rows by key hash (runs damaged left out). */
static void old_index_keys(struct csv_cursor *cur, struct old_table *o)
{
    size_t cap = 16;
    size_t c, i;

    o->kbuilt = true;
    if (o->n >= UINT32_MAX / 2) {
        return; /* no index: rows are matched in order only */
    }
    while (cap < 2 * o->n) {
        cap *= 2;
    }
    o->kslot = xcalloc(cap, sizeof(*o->kslot));
    o->kmask = cap - 1;
    for (c = 0; c < o->nruns; c++) {
        if (!old_load(cur, o, c)) {
            continue;
        }
        for (i = 0; i < o->blob[c].k; i++) {
            size_t s = (size_t)((o->blob[c].kh[i] * 0x9e3779b97f4a7c15ull) >> 20) & o->kmask;

            while (o->kslot[s] != 0) {
                s = (s + 1) & o->kmask;
            }
            o->kslot[s] = (uint32_t)(o->first[c] + i + 1);
        }
    }
}

/* The old row of type ti whose key is key (hash kh): true with its index.
 * A sorted table is searched by bisection over its runs' first keys, then
 * in the run (a few blobs looked at); another one through an index of all
 * its keys, built at the first question. */
static bool old_find_key(struct csv_cursor *cur, size_t ti, const char *key, size_t len,
                         uint64_t kh, size_t *j)
{
    struct old_table *o = &cur->old[ti];
    struct orow r;
    size_t lo, hi, s;

    if (o->nruns == 0) {
        return false;
    }
    if (o->sorted) {
        lo = 0;
        hi = o->nruns; /* the last run whose first key is <= key: in [lo, hi) */
        while (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;

            if (!old_row(cur, o, o->first[mid], &r)) {
                return false;
            }
            if (key_cmp(r.key, r.klen, key, len) <= 0) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        s = o->first[lo];
        hi = o->first[lo + 1];
        while (s < hi) {
            size_t mid = s + (hi - s) / 2;
            int cmp;

            if (!old_row(cur, o, mid, &r)) {
                return false;
            }
            cmp = key_cmp(r.key, r.klen, key, len);
            if (cmp == 0) {
                *j = mid;
                return true;
            }
            if (cmp < 0) {
                s = mid + 1;
            } else {
                hi = mid;
            }
        }
        return false;
    }
    if (!o->kbuilt) {
        old_index_keys(cur, o);
    }
    if (o->kslot == NULL) {
        return false;
    }
    for (s = (size_t)((kh * 0x9e3779b97f4a7c15ull) >> 20) & o->kmask; o->kslot[s] != 0;
         s = (s + 1) & o->kmask) {
        size_t g = o->kslot[s] - 1;

        if (old_row(cur, o, g, &r) && r.kh == kh && key_cmp(r.key, r.klen, key, len) == 0) {
            *j = g;
            return true;
        }
    }
    return false;
}

/* ---- the tables a read leaves (csvstate.h) ------------------------------- */

/* "csv-" and a hash of the connector's name: its state files */
/* The state files of connector `name` are called PREFIX-... */
static void state_prefix_of(const char *name, struct strbuf *out)
{
    strbuf_addf(out, "csv-%016" PRIx64, hash64(name, strlen(name), 0));
}

static void state_prefix(const struct csv_conn *cc, struct strbuf *out)
{
    state_prefix_of(cc->base.name, out);
}

void csv_state_forget(const char *state_dir, const char *name)
{
    struct strbuf prefix = STRBUF_INIT;
    struct strbuf path = STRBUF_INIT;
    struct strvec names = STRVEC_INIT;
    size_t i;

    state_prefix_of(name, &prefix);
    file_state_list(state_dir, prefix.buf, &names);
    for (i = 0; i < names.nr; i++) {
        strbuf_reset(&path);
        strbuf_addf(&path, "%s/%s", state_dir, names.v[i]);
        if (unlink(path.buf) != 0 && errno != ENOENT) {
            log_warn("csv-state", "file=%s error=\"%s\" (left in place; it is never read again)",
                     path.buf, strerror(errno));
        }
    }
    strvec_clear(&names);
    strbuf_release(&path);
    strbuf_release(&prefix);
}

/* Entry i of built run nr of rt: an old row kept (its index) or a row read
 * now (SEQ_NEW | its index). A full read's runs are the rows read, in
 * order: their entries are not stored. */
static uint32_t run_entry(const struct csv_cursor *cur, const struct row_table *rt,
                          const struct nrun *nr, size_t i)
{
    return cur->old == NULL ? (uint32_t)(nr->first + i) | SEQ_NEW : rt->seq[nr->first + i];
}

/* Entry e of a built run: its row. false when it is an old row of a
 * damaged run. */
static bool entry_row(struct csv_cursor *cur, size_t ti, uint32_t e, struct orow *r)
{
    const struct row_table *rt = &cur->rows[ti];

    if (e & SEQ_NEW) {
        size_t i = e & ~SEQ_NEW;

        r->hash = rt->hash[i];
        r->key = rt->keys.buf + rt->koff[i];
        r->klen = rt_key_len(rt, i);
        r->kh = file_key_hash(r->key, r->klen);
        return true;
    }
    return old_row(cur, &cur->old[ti], e, r);
}

/* The first (last) row of run k of the new table. */
static bool run_edge_row(struct csv_cursor *cur, size_t ti, size_t k, bool last, struct orow *r)
{
    const struct nrun *nr = &cur->rows[ti].runs[k];

    if (nr->ref) {
        struct old_table *o = &cur->old[ti];

        return old_row(cur, o, last ? o->first[nr->old_c + 1] - 1 : o->first[nr->old_c], r);
    }
    return entry_row(cur, ti, run_entry(cur, &cur->rows[ti], nr, last ? nr->rec.nrows - 1 : 0), r);
}

/* Are the keys of the new table of type ti in increasing order? Runs kept
 * whole are in the order of the old table, which was (when there is
 * one); built runs and the edges next to them are compared. */
static bool table_sorted(struct csv_cursor *cur, size_t ti)
{
    const struct row_table *rt = &cur->rows[ti];
    struct orow a, b;
    size_t k, i;

    if (cur->old == NULL) {
        return !rt->unsorted; /* a full read: seen_add compared every key with the one before */
    }
    for (k = 0; k < rt->nruns; k++) {
        const struct nrun *nr = &rt->runs[k];

        if (nr->ref) {
            if (!cur->old[ti].sorted) {
                return false;
            }
        } else {
            for (i = 1; i < nr->rec.nrows; i++) {
                if (!entry_row(cur, ti, run_entry(cur, rt, nr, i - 1), &a) ||
                    !entry_row(cur, ti, run_entry(cur, rt, nr, i), &b) ||
                    key_cmp(a.key, a.klen, b.key, b.klen) >= 0) {
                    return false;
                }
            }
        }
        if (k > 0 && (!nr->ref || !rt->runs[k - 1].ref) &&
            (!run_edge_row(cur, ti, k - 1, true, &a) || !run_edge_row(cur, ti, k, false, &b) ||
             key_cmp(a.key, a.klen, b.key, b.klen) >= 0)) {
            return false;
        }
    }
    return true;
}

/* Write the tables this read leaves and name them in the watermark: runs
 * kept whole stay in their runs files, built runs go into a new one (or
 * everything into the watermark when small or without a state folder).
 * The tables cannot be written (a state file, a damaged old run): none, the
 * next changed file is read in full. */
static void write_tables(struct csv_cursor *cur)
{
    struct csv_conn *cc = cur->conn;
    const char *dir = cc->base.state_dir;
    struct strbuf prefix = STRBUF_INIT;
    struct csv_state_writer w;
    struct ids_error err = IDS_ERROR_INIT;
    struct csv_run *recs = NULL;
    uint64_t *kept = NULL;
    size_t alloc = 0;
    size_t est = 0;
    size_t ti, k, i;
    enum ids_err ret = IDS_OK;

    if (cur->old != NULL) {
        kept = xcalloc(cur->st.nfiles + 1, sizeof(*kept));
    }
    for (ti = 0; ti < cc->ntypes; ti++) {
        const struct row_table *rt = &cur->rows[ti];

        for (k = 0; k < rt->nruns; k++) {
            const struct nrun *nr = &rt->runs[k];

            if (nr->ref) {
                kept[nr->rec.blob_no] += nr->rec.blob_len;
                est += nr->rec.blob_len;
            } else {
                est += csv_blob_size(nr->rec.nrows, 0) + 16 * nr->rec.nrows;
            }
        }
    }
    state_prefix(cc, &prefix);
    csv_writer_init(&w, est >= CSV_STATE_MIN ? dir : NULL, prefix.buf,
                    cur->old != NULL ? &cur->st : NULL, kept);
    for (ti = 0; ti < cc->ntypes && ret == IDS_OK; ti++) {
        struct row_table *rt = &cur->rows[ti];
        uint64_t flags = table_sorted(cur, ti) ? CSV_TABLE_SORTED : 0;

        ALLOC_GROW(recs, rt->nruns + 1, alloc);
        for (k = 0; k < rt->nruns && ret == IDS_OK; k++) {
            struct nrun *nr = &rt->runs[k];

            recs[k] = nr->rec;
            if (nr->ref) {
                csv_writer_keep(&w, &recs[k]);
                continue;
            }
            for (i = 0; i < nr->rec.nrows; i++) {
                struct orow r;

                if (!entry_row(cur, ti, run_entry(cur, rt, nr, i), &r)) {
                    ret = ids_error_set(&err, IDS_EIO, "a run of the row tables is damaged");
                    break;
                }
                csv_writer_blob_row(&w, r.hash, r.kh, r.key, r.klen);
            }
            if (ret == IDS_OK) {
                csv_writer_blob_end(&w, &recs[k]);
            }
        }
        csv_writer_table(&w, rt->have_cfg ? rt->cfg : 0, flags, rt->ntotal, recs, rt->nruns);
    }
    if (ret == IDS_OK) {
        ret = csv_writer_end(&w, cur->old_state, &cur->wm, &err);
    }
    if (ret != IDS_OK) {
        log_warn("csv-state", "connector=%s msg=\"%s (the next changed file is read in full)\"",
                 cc->base.name, err.msg);
        cur->incomplete = true;
    }
    csv_writer_release(&w);
    free(recs);
    free(kept);
    strbuf_release(&prefix);
}

/* The old tables of a watermark (after its first line, at p: "\n@NAME HASH
 * LEN" or "\n=" base64) into cur->st and cur->old. false, *why set, when
 * they cannot be used. */
static bool load_tables(struct csv_cursor *cur, const char *p, const char *end, const char **why)
{
    struct csv_conn *cc = cur->conn;
    const char *dir = cc->base.state_dir;
    size_t ti, c;

    *why = "left an unreadable watermark";
    if (p[1] == '@') {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        unsigned long long len;
        uint64_t hash;
        char *e = NULL;

        *why = "its row table file is unreadable";
        if (dir == NULL || sp == NULL || end - sp < 19 || sp[17] != ' ') {
            return false;
        }
        cur->old_state = xmemdup(p + 2, (size_t)(sp - p - 2));
        hash = strtoull(sp + 1, &e, 16);
        if (strchr(cur->old_state, '/') != NULL || e != sp + 17) {
            return false;
        }
        len = strtoull(sp + 18, &e, 10);
        if (e != end ||
            !csv_state_map_index(dir, cur->old_state, hash, len, &cur->map, &cur->map_len, why) ||
            !csv_state_open(&cur->st, cur->map, cur->map_len, dir, cc->ntypes, why)) {
            return false;
        }
    } else if (p[1] != '=' || base64_decode(&cur->tables, p + 2, (size_t)(end - p - 2)) != IDS_OK ||
               !csv_state_open(&cur->st, cur->tables.buf, cur->tables.len, NULL, cc->ntypes, why)) {
        return false;
    }
    cur->old = xcalloc(cc->ntypes, sizeof(*cur->old));
    for (ti = 0; ti < cc->ntypes; ti++) {
        const struct csv_state_table *t = &cur->st.t[ti];
        struct old_table *o = &cur->old[ti];

        o->cfg = t->cfg;
        o->sorted = (t->flags & CSV_TABLE_SORTED) != 0;
        o->n = t->nrows;
        o->nruns = t->nruns;
        o->runs = t->runs;
        o->first = xcalloc(o->nruns + 1, sizeof(*o->first));
        for (c = 0; c < o->nruns; c++) {
            o->first[c + 1] = o->first[c] + o->runs[c].nrows;
        }
        o->blob = xcalloc(o->nruns + 1, sizeof(*o->blob));
        o->state = xcalloc(o->nruns + 1, 1);
        o->whole = xcalloc(o->nruns + 1, 1);
        o->touched = xcalloc(o->nruns + 1, 1);
        o->wline = xcalloc(o->nruns + 1, sizeof(*o->wline));
        o->same = xcalloc(o->n / 8 + 1, 1);
        o->taken = xcalloc(o->n / 8 + 1, 1);
    }
    return true;
}

static void csv_cursor_free(struct connector_cursor *c)
{
    struct csv_cursor *cur = (struct csv_cursor *)c;
    size_t i;

    if (cur == NULL) {
        return;
    }
    cursor_close_file(cur);
    strvec_clear(&cur->missing);
    csv_record_release(&cur->rec);
    free(cur->seen);
    strbuf_release(&cur->wm);
    free(cur->old_state);
    for (i = 0; i < cur->conn->ntypes; i++) {
        if (cur->rows != NULL) {
            row_table_release(&cur->rows[i]);
        }
        if (cur->old != NULL) {
            old_table_release(&cur->old[i]);
        }
    }
    free(cur->rows);
    free(cur->old);
    csv_state_close(&cur->st);
    strbuf_release(&cur->tables);
    file_state_unmap(cur->map, cur->map_len);
    for (i = cur->idel; i < cur->ndels; i++) {
        change_free(cur->dels[i]);
    }
    free(cur->dels);
    free(cur);
}

static void wm_sep(struct csv_cursor *cur)
{
    strbuf_addch(&cur->wm, cur->ti == 0 ? ':' : ',');
}

/* "MTIME_NS.INO.DEV" of a file, "0" when it changed too recently to be
 * told apart from a change in the same clock tick */
static void put_stat(struct strbuf *out, const struct stat *st)
{
    struct timespec now;
    int64_t mt = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    int64_t nw;

    clock_gettime(CLOCK_REALTIME, &now);
    nw = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    if (mt <= 0 || nw - mt < 2000000000) {
        strbuf_addch(out, '0');
        return;
    }
    strbuf_addf(out, "%" PRId64 ".%" PRIu64 ".%" PRIu64, mt, (uint64_t)st->st_ino,
                (uint64_t)st->st_dev);
}

/* The current file is read to its end: "SIZE:HASH:STAT" into the watermark. */
static void put_file_wm(struct csv_cursor *cur)
{
    struct stat st;

    wm_sep(cur);
    file_reader_watermark(&cur->r, &cur->wm);
    strbuf_addch(&cur->wm, ':');
    if (fstat(cur->r.fd, &st) == 0) {
        put_stat(&cur->wm, &st);
    } else {
        strbuf_addch(&cur->wm, '0');
    }
}

/* Skip a UTF-8 byte order mark at the start of the file. Returns true when
 * there was one. */
static bool skip_bom(struct file_reader *r)
{
    if (file_reader_peek(r) == 0xEF) {
        file_reader_getc(r);
        if (file_reader_peek(r) == 0xBB) {
            file_reader_getc(r);
            if (file_reader_peek(r) == 0xBF) {
                file_reader_getc(r);
                return true;
            }
        }
        file_reader_seek(r, 0);
    }
    return false;
}

/* Does the file start with a UTF-16 byte order mark (FF FE or FE FF)? */
static bool utf16_bom(struct file_reader *r)
{
    int a = file_reader_getc(r);
    int b = file_reader_getc(r);

    file_reader_seek(r, 0);
    return (a == 0xFF && b == 0xFE) || (a == 0xFE && b == 0xFF);
}

#define UTF8_HOW(from)                                                                             \
    "set `encoding: " from "` on the connector, or export the file as UTF-8 (Excel: \"CSV "        \
    "UTF-8\"; PowerShell: Export-Csv -Encoding UTF8)"

/* Read and check the header of the current file. */
static enum ids_err read_header(struct csv_cursor *cur, struct csv_type *t, struct ids_error *err)
{
    struct csv_record *rec = &cur->rec;
    enum csv_status st;
    size_t i, j;

    if (utf16_bom(&cur->r)) {
        return ids_error_set(
            err, IDS_EPROTO,
            "%s: the file is UTF-16 (it starts with a UTF-16 byte order mark); "
            "idsync reads CSV files as UTF-8 unless told otherwise: " UTF8_HOW("UTF-16"),
            t->path);
    }
    cur->bom = skip_bom(&cur->r);
    st = csv_read_record(&cur->r, cur->conn->delim, &cur->line, rec);
    if (st == CSV_REC_IOERR) {
        return ids_error_set(err, IDS_EIO, "%s: %s", t->path, strerror(cur->r.err));
    }
    if (st == CSV_REC_EOF) {
        return IDS_DONE; /* an empty file: no header, no rows */
    }
    if (rec->too_big || rec->unterminated || rec->bad_quote_field != SIZE_MAX) {
        return ids_error_set(err, IDS_EPROTO, "%s:%" PRIu64 ": malformed header row", t->path,
                             rec->line);
    }
    cur->key_col = NO_COL;
    cur->dn_col = NO_COL;
    for (i = 0; i < rec->nf; i++) {
        const char *name = csv_field_str(rec, i);

        if (strlen(name) != rec->f[i].len) {
            return ids_error_set(err, IDS_EPROTO,
                                 "%s:%" PRIu64 ": header column %zu contains NUL bytes: the file "
                                 "looks like UTF-16; idsync reads CSV files as UTF-8 unless told "
                                 "otherwise: " UTF8_HOW("UTF-16"),
                                 t->path, rec->line, i + 1);
        }
        if (rec->f[i].len == 0 || !utf8_valid(name, rec->f[i].len)) {
            return ids_error_set(err, IDS_EPROTO,
                                 "%s:%" PRIu64 ": header column %zu is empty or not UTF-8", t->path,
                                 rec->line, i + 1);
        }
        for (j = 0; j < i; j++) {
            if (strcasecmp(cur->header.v[j], name) == 0) {
                return ids_error_set(err, IDS_EPROTO,
                                     "%s:%" PRIu64 ": column \"%s\" appears twice in the header",
                                     t->path, rec->line, name);
            }
        }
        strvec_push(&cur->header, name);
        if (strcasecmp(name, t->key) == 0) {
            cur->key_col = i;
        }
        if (t->dn_column != NULL && strcasecmp(name, t->dn_column) == 0) {
            cur->dn_col = i;
        }
    }
    if (cur->key_col == NO_COL) {
        static const char others[] = ";,\t|";
        static const char *const names[] = {"\";\"", "\",\"", "tab", "\"|\""};
        const char *d = NULL;

        /* the whole header in one column: another delimiter (a European
         * Excel writes `;`) */
        if (rec->nf == 1) {
            for (d = others; *d != '\0' && strchr(cur->header.v[0], *d) == NULL; d++) {
            }
        }
        if (d != NULL && *d != '\0' && *d != cur->conn->delim) {
            return ids_error_set(err, IDS_ECONFIG,
                                 "%s:%" PRIu64 ": the key column \"%s\" is not in the header, "
                                 "which is one column: the file looks delimited by %s (set "
                                 "`delimiter: %s` on the connector)",
                                 t->path, rec->line, t->key, names[d - others], names[d - others]);
        }
        return ids_error_set(err, IDS_ECONFIG,
                             "%s:%" PRIu64 ": the key column \"%s\" is not in the header", t->path,
                             rec->line, t->key);
    }
    if (t->dn_column != NULL && cur->dn_col == NO_COL) {
        return ids_error_set(err, IDS_ECONFIG,
                             "%s:%" PRIu64 ": the DN column \"%s\" is not in the header", t->path,
                             rec->line, t->dn_column);
    }
    cur->keep = xcalloc(rec->nf, sizeof(*cur->keep));
    cur->is_ref = xcalloc(rec->nf, sizeof(*cur->is_ref));
    for (i = 0; i < rec->nf; i++) {
        cur->keep[i] = i == cur->key_col || configured(t->ot, cur->header.v[i]);
        cur->is_ref[i] = ref_attr(t->ot, cur->header.v[i]);
    }
    for (i = 0; i < t->ot->attributes.nr; i++) {
        if (strvec_find(&cur->header, t->ot->attributes.v[i], true) < 0) {
            log_warn("csv-missing-column", "connector=%s file=%s column=%s", cur->conn->base.name,
                     t->path, t->ot->attributes.v[i]);
            /* for `idsync check`: "TYPE-INDEX COLUMN" */
            strvec_pushf(&cur->missing, "%zu %s", cur->ti, t->ot->attributes.v[i]);
        }
    }
    if (cur->rows != NULL) {
        struct row_table *rt = &cur->rows[cur->ti];

        rt->cfg = row_cfg_hash(cur, t);
        rt->have_cfg = true;
        if (cur->old != NULL) {
            cur->old[cur->ti].usable = cur->old[cur->ti].cfg == rt->cfg;
        }
    }
    return IDS_OK;
}

static enum ids_err stamp_fd(int fd, const char *path, struct file_stamp *s, struct ids_error *err)
{
    struct stat st;

    if (fstat(fd, &st) != 0) {
        return ids_error_set(err, IDS_EIO, "%s: %s", path, strerror(errno));
    }
    file_stamp_of(&st, s);
    return IDS_OK;
}

/* At the end of a file: is it still the version that was opened? A file
 * written to while it was read was read cut short or mixed. */
static enum ids_err check_unchanged(struct csv_cursor *cur, const char *path, struct ids_error *err)
{
    struct file_stamp now;
    enum ids_err ret = stamp_fd(cur->r.fd, path, &now, err);

    if (ret == IDS_OK && !file_stamp_equal(&now, &cur->opened)) {
        ret = ids_error_set(err, IDS_EIO,
                            "%s: the file changed while it was read (%" PRIu64 " bytes when "
                            "opened, %" PRIu64 " now): it is still being written.",
                            path, cur->opened.size, now.size);
    }
    return ret;
}

#define TRANSCODE_IN (64u * 1024u)

/* Write the UTF-8 form of `path` (in cc->encoding) to an unnamed temporary
 * file in the engine's state folder (beside the file when there is none:
 * unit tests) and return it in *fd_out, at offset 0. IDS_ENOTFOUND when
 * the file does not exist; IDS_EPROTO naming the line when a byte is not
 * of the encoding (the read fails: nothing of the file is staged); IDS_EIO
 * when the file changed meanwhile. The rows' line
 * numbers are the same in both forms (a line end is a line end in every
 * encoding iconv converts). */
static enum ids_err transcode_file(struct csv_conn *cc, const char *path, int *fd_out,
                                   struct ids_error *err)
{
    struct strbuf where = STRBUF_INIT;
    struct file_stamp before, after;
    iconv_t cd = (iconv_t)-1;
    char *in = NULL;
    char *out = NULL;
    size_t have = 0; /* bytes waiting in `in` (a character cut by the read) */
    uint64_t line = 1;
    int src = -1;
    int fd = -1;
    enum ids_err ret = IDS_OK;

    *fd_out = -1;
    src = open(path, O_RDONLY | O_CLOEXEC);
    if (src < 0) {
        int e = errno;

        return ids_error_set(err, e == ENOENT ? IDS_ENOTFOUND : IDS_EIO, "%s: %s", path,
                             strerror(e));
    }
    ret = stamp_fd(src, path, &before, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (cc->base.state_dir != NULL) {
        (void)mkdir(cc->base.state_dir, 0700);
        strbuf_addf(&where, "%s/csv-utf8", cc->base.state_dir);
    } else {
        strbuf_addstr(&where, path);
    }
    ret = file_anon_temp(where.buf, &fd, err);
    if (ret != IDS_OK) {
        goto done;
    }
    cd = iconv_open("UTF-8", cc->encoding);
    if (cd == (iconv_t)-1) {
        ret = ids_error_set(err, IDS_ECONFIG, "encoding %s: %s", cc->encoding, strerror(errno));
        goto done;
    }
    in = xmalloc(TRANSCODE_IN);
    out = xmalloc(4 * TRANSCODE_IN);
    for (;;) {
        ssize_t n = read(src, in + have, TRANSCODE_IN - have);
        char *ip = in;
        size_t ileft;
        char *op = out;
        size_t oleft = 4 * TRANSCODE_IN; /* a byte in becomes at most 3 bytes out, 2 at most 4 */
        const char *q;
        size_t r;

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            ret = ids_error_set(err, IDS_EIO, "%s: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0 && have > 0) {
            ret = ids_error_set(err, IDS_EPROTO,
                                "%s:%" PRIu64 ": the file ends in the middle of a %s character",
                                path, line, cc->encoding);
            goto done;
        }
        if (n == 0) {
            break;
        }
        ileft = have + (size_t)n;
        r = iconv(cd, &ip, &ileft, &op, &oleft);
        for (q = out; q < op; q++) {
            line += *q == '\n';
        }
        if (r == (size_t)-1 && errno == EILSEQ) {
            ret = ids_error_set(err, IDS_EPROTO,
                                "%s:%" PRIu64 ": byte 0x%02x is not %s text (set `encoding` to "
                                "the file's encoding)",
                                path, line, (unsigned char)*ip, cc->encoding);
            goto done;
        }
        /* EINVAL: a character continues in the next read */
        ret = fd_write_all(fd, out, (size_t)(op - out), "the UTF-8 copy of a CSV file", err);
        if (ret != IDS_OK) {
            goto done;
        }
        memmove(in, ip, ileft);
        have = ileft;
    }
    ret = stamp_fd(src, path, &after, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (!file_stamp_equal(&before, &after)) {
        ret = ids_error_set(err, IDS_EIO,
                            "%s: the file changed while it was read: it is still being written.",
                            path);
        goto done;
    }
    if (lseek(fd, 0, SEEK_SET) != 0) {
        ret = ids_error_set(err, IDS_EIO, "%s: %s", where.buf, strerror(errno));
        goto done;
    }
    *fd_out = fd;
    fd = -1;
done:
    if (cd != (iconv_t)-1) {
        iconv_close(cd);
    }
    if (fd >= 0) {
        close(fd);
    }
    close(src);
    free(in);
    free(out);
    strbuf_release(&where);
    return ret;
}

/* Open the next file; IDS_DONE when there is none left. */
static enum ids_err open_next_file(struct csv_cursor *cur, struct ids_error *err)
{
    struct csv_conn *cc = cur->conn;
    enum ids_err ret;

    while (cur->ti < cc->ntypes) {
        struct csv_type *t = &cc->types[cur->ti];

        ret = file_settle(cc->base.name, t->path, cc->settle_ms, &t->own, cc->base.stop, err);
        if (ret != IDS_OK) {
            return ret;
        }
        if (cc->encoding != NULL) {
            int fd = -1;

            ret = transcode_file(cc, t->path, &fd, err);
            if (ret == IDS_OK) {
                file_reader_open_fd(&cur->r, fd, t->path);
            }
        } else {
            ret = file_reader_open(&cur->r, t->path, err);
        }
        if (ret == IDS_ENOTFOUND) {
            log_warn("csv-no-file", "connector=%s file=%s (read as empty)", cc->base.name, t->path);
            wm_sep(cur);
            strbuf_addstr(&cur->wm, "-");
            cur->ti++;
            continue;
        }
        if (ret != IDS_OK) {
            return ret;
        }
        cur->open = true;
        cur->line = 1;
        ret = stamp_fd(cur->r.fd, t->path, &cur->opened, err);
        if (ret != IDS_OK) {
            return ret;
        }
        /* a delta read keeps the row tables it compares with: the file's
         * own content hash would be a second pass over every byte */
        cur->r.count_only = cur->delta;
        /* the file mapped: its bytes are hashed and parsed where they are
         * (csv_cursor_next catches a file that shrinks meanwhile) */
        file_reader_map(&cur->r);
        ret = read_header(cur, t, err);
        if (ret == IDS_DONE) {
            /* empty file */
            ret = file_reader_drain(&cur->r, err);
            if (ret == IDS_OK) {
                ret = check_unchanged(cur, t->path, err);
            }
            if (ret != IDS_OK) {
                return ret;
            }
            put_file_wm(cur);
            cursor_close_file(cur);
            cur->ti++;
            continue;
        }
        return ret;
    }
    return IDS_DONE;
}

static enum ids_err new_cursor(struct csv_conn *cc, bool collect, struct csv_cursor **out)
{
    struct csv_cursor *cur = xcalloc(1, sizeof(*cur));

    cur->conn = cc;
    cur->collect = collect;
    /* kept by every read: duplicate keys are found through them */
    cur->rows = xcalloc(cc->ntypes, sizeof(*cur->rows));
    csv_record_init(&cur->rec);
    strvec_init(&cur->header);
    strvec_init(&cur->missing);
    strbuf_init(&cur->wm, 0);
    strbuf_init(&cur->tables, 0);
    strbuf_addstr(&cur->wm, "csv4");
    *out = cur;
    return IDS_OK;
}

static enum ids_err csv_read_full(struct connector *c, struct connector_cursor **out,
                                  struct ids_error *err)
{
    struct csv_cursor *cur;

    (void)err;
    new_cursor((struct csv_conn *)c, true, &cur);
    *out = (struct connector_cursor *)cur;
    return IDS_OK;
}

/* The part of file i in the watermark's first line: *p (after "csv4" or
 * the previous part) moves past the separator, *q to the part's end. */
static bool file_part(const char **p, const char *end, size_t i, const char **q)
{
    if (*p >= end || **p != (i == 0 ? ':' : ',')) {
        return false;
    }
    (*p)++;
    *q = *p;
    while (*q < end && **q != ',') {
        (*q)++;
    }
    return true;
}

/* Are the files those of the watermark's first line (wm[0..len)), unchanged
 * by size, modification time and inode? A file whose stat part is "0" is
 * not known unchanged; a file absent then and now is. */
static bool files_unchanged(struct csv_conn *cc, const char *wm, size_t len)
{
    struct strbuf now = STRBUF_INIT;
    const char *p = wm + 4; /* after "csv4" */
    const char *end = wm + len;
    bool same = true;
    size_t i;

    for (i = 0; i < cc->ntypes && same; i++) {
        const char *q;
        const char *stat_part;
        struct stat st;

        if (!file_part(&p, end, i, &q)) {
            same = false;
            break;
        }
        if (stat(cc->types[i].path, &st) != 0) {
            same = errno == ENOENT && q - p == 1 && *p == '-';
            p = q;
            continue;
        }
        /* SIZE:HASH:STAT */
        stat_part = memchr(p, ':', (size_t)(q - p));
        stat_part =
            stat_part != NULL ? memchr(stat_part + 1, ':', (size_t)(q - stat_part - 1)) : NULL;
        if (stat_part == NULL) {
            same = false;
            break;
        }
        strbuf_reset(&now);
        strbuf_addf(&now, "%" PRIu64 ":", (uint64_t)st.st_size);
        if (strncmp(p, now.buf, now.len) != 0) {
            same = false;
            break;
        }
        strbuf_reset(&now);
        put_stat(&now, &st);
        stat_part++;
        same = now.len != 1 && (size_t)(q - stat_part) == now.len &&
               memcmp(stat_part, now.buf, now.len) == 0;
        p = q;
    }
    strbuf_release(&now);
    return same && p == end;
}

/* Do the files have the content (SIZE:HASH) of the watermark's first line?
 * Hashes every file: for watermarks without row tables, where a changed
 * file must be read in full, so a file touched in the same clock tick as
 * the last read is not taken for a changed one. */
static bool files_same_content(struct csv_conn *cc, const char *wm, size_t len,
                               struct ids_error *err)
{
    struct strbuf now = STRBUF_INIT;
    const char *p = wm + 4;
    const char *end = wm + len;
    bool same = true;
    uint64_t size;
    size_t i;

    for (i = 0; i < cc->ntypes && same; i++) {
        const char *q;

        if (!file_part(&p, end, i, &q)) {
            same = false;
            break;
        }
        strbuf_reset(&now);
        if (file_watermark(cc->types[i].path, UINT64_MAX, &now, &size, err) != IDS_OK) {
            same = false;
            break;
        }
        /* "-", or SIZE:HASH followed by ":STAT" */
        same = (size_t)(q - p) >= now.len && memcmp(p, now.buf, now.len) == 0 &&
               ((size_t)(q - p) == now.len || p[now.len] == ':');
        p = q;
    }
    strbuf_release(&now);
    return same && p == end;
}

static enum ids_err csv_read_changes(struct connector *c, const char *watermark,
                                     struct connector_cursor **out, struct ids_error *err)
{
    struct csv_conn *cc = (struct csv_conn *)c;
    struct csv_cursor *cur = NULL;
    const char *why;
    const char *nl;
    size_t first;
    size_t wlen;
    bool ok;
    enum ids_err ret;

    *out = NULL;
    if (watermark == NULL || watermark[0] == '\0') {
        ret = ids_error_set(err, IDS_EFULLREQUIRED, "no watermark: the file was never imported");
        goto done;
    }
    if (strncmp(watermark, "csv4", 4) != 0) {
        ret = ids_error_set(err, IDS_EFULLREQUIRED,
                            "the watermark was written by an older version of idsync");
        goto done;
    }
    wlen = strlen(watermark);
    nl = strchr(watermark, '\n');
    first = nl != NULL ? (size_t)(nl - watermark) : wlen;
    if (files_unchanged(cc, watermark, first) ||
        (nl == NULL && files_same_content(cc, watermark, first, err))) {
        /* no file changed: nothing to read, the same watermark */
        new_cursor(cc, false, &cur);
        cur->changes_only = true;
        strbuf_reset(&cur->wm);
        strbuf_add(&cur->wm, watermark, wlen);
        cur->done = true;
        *out = (struct connector_cursor *)cur;
        cur = NULL;
        ret = IDS_OK;
        goto done;
    }
    new_cursor(cc, true, &cur);
    why = "could not read every row";
    ok = nl != NULL && load_tables(cur, nl, watermark + wlen, &why);
    if (!ok) {
        ret = ids_error_set(err, IDS_EFULLREQUIRED,
                            "%s: file changed since the last import, which %s",
                            cc->ntypes == 1 ? cc->types[0].path : "a csv file", why);
        goto done;
    }
    cur->delta = true;
    *out = (struct connector_cursor *)cur;
    cur = NULL;
    ret = IDS_OK;
done:
    csv_cursor_free((struct connector_cursor *)cur);
    return ret;
}

/* "file:line" prefix of a row message. */
static void row_where(struct strbuf *sb, const struct csv_type *t, uint64_t line)
{
    strbuf_addf(sb, "%s:%" PRIu64, t->path, line);
}

/* Check one row and build its entry. IDS_EINPUT with err set for a bad row. */
static enum ids_err row_to_entry(struct csv_cursor *cur, struct csv_type *t, struct entry **out,
                                 struct ids_error *err)
{
    struct csv_record *rec = &cur->rec;
    struct strbuf where = STRBUF_INIT;
    struct strvec vals = STRVEC_INIT;
    struct entry *e = NULL;
    const char *key;
    enum ids_err ret = IDS_OK;
    uint32_t pline;
    size_t i, j, pti;

    *out = NULL;
    row_where(&where, t, rec->line);
    if (rec->too_big) {
        ret = ids_error_set(err, IDS_EINPUT, "%s: row longer than %zu bytes, skipped", where.buf,
                            rec->max);
        goto done;
    }
    if (rec->unterminated) {
        ret = ids_error_set(
            err, IDS_EINPUT, "%s: column \"%s\": quoted field not terminated (no closing quote)",
            where.buf,
            rec->unterminated_field < cur->header.nr ? cur->header.v[rec->unterminated_field]
                                                     : "(extra)");
        goto done;
    }
    if (rec->nf != cur->header.nr) {
        ret = ids_error_set(err, IDS_EINPUT, "%s: %zu fields, the header has %zu", where.buf,
                            rec->nf, cur->header.nr);
        goto done;
    }
    if (rec->bad_quote_field != SIZE_MAX) {
        ret = ids_error_set(err, IDS_EINPUT, "%s: column \"%s\": text after the closing quote",
                            where.buf, cur->header.v[rec->bad_quote_field]);
        goto done;
    }
    for (i = 0; i < rec->nf; i++) {
        const char *s = csv_field_str(rec, i);

        if (!utf8_valid(s, rec->f[i].len)) {
            ret = ids_error_set(err, IDS_EINPUT,
                                "%s: column \"%s\": invalid UTF-8: the file may be in another "
                                "encoding, such as Windows-1252; " UTF8_HOW("WINDOWS-1252"),
                                where.buf, cur->header.v[i]);
            goto done;
        }
        if (strlen(s) != rec->f[i].len) {
            ret = ids_error_set(err, IDS_EINPUT, "%s: column \"%s\": contains a NUL byte",
                                where.buf, cur->header.v[i]);
            goto done;
        }
    }
    key = csv_field_str(rec, cur->key_col);
    if (key[0] == '\0') {
        ret = ids_error_set(err, IDS_EINPUT, "%s: column \"%s\": empty key", where.buf,
                            cur->header.v[cur->key_col]);
        goto done;
    }
    if (seen_find(cur, file_key_hash(key, strlen(key)), key, strlen(key), &pti, &pline)) {
        ret = ids_error_set(
            err, IDS_EINPUT, "%s: column \"%s\": duplicate key \"%s\" (first at %s:%" PRIu32 ")",
            where.buf, cur->header.v[cur->key_col], key, cur->conn->types[pti].path, pline);
        goto done;
    }

    e = entry_new(t->ot->name, key,
                  cur->dn_col != NO_COL && rec->f[cur->dn_col].len > 0
                      ? csv_field_str(rec, cur->dn_col)
                      : (cur->dn_col != NO_COL ? NULL : key));
    for (i = 0; i < rec->nf; i++) {
        const char *s = csv_field_str(rec, i);
        struct attr *a;

        if (!cur->keep[i] || rec->f[i].len == 0) {
            continue;
        }
        if (i == cur->key_col || i == cur->dn_col ||
            (memchr(s, cur->conn->sep, rec->f[i].len) == NULL &&
             memchr(s, '\\', rec->f[i].len) == NULL)) {
            /* one value as it is: the key, the DN, a cell without a
             * separator or an escape */
            entry_add_value(e, cur->header.v[i], s, rec->f[i].len);
        } else {
            strvec_clear(&vals);
            csv_split_values(s, rec->f[i].len, cur->conn->sep, &vals);
            for (j = 0; j < vals.nr; j++) {
                entry_add_str(e, cur->header.v[i], vals.v[j]);
            }
        }
        a = entry_attr(e, cur->header.v[i]);
        if (a != NULL && cur->is_ref[i]) {
            a->flags |= ATTR_REF;
        }
    }
    *out = e;
    e = NULL;
done:
    entry_free(e);
    strvec_clear(&vals);
    strbuf_release(&where);
    return ret;
}

static void seq_push(struct row_table *rt, uint32_t e)
{
    ALLOC_GROW(rt->seq, rt->nseq + 1, rt->aseq);
    rt->seq[rt->nseq++] = e;
}

/* Delta read: the old row of the current file that a row with hash h is
 * the same bytes as, not taken yet: the one expected next or one a little
 * ahead (rows inserted or removed before), or, when the row's key is known
 * (key not NULL), the old row of that key wherever it was. SIZE_MAX when
 * none: the row changed or is new. */
static size_t find_old(struct csv_cursor *cur, uint64_t h, const char *key, size_t klen,
                       uint64_t kh)
{
    struct old_table *o = &cur->old[cur->ti];
    struct orow r;
    size_t j;

    for (j = o->next; j < o->n && j <= o->next + MATCH_WINDOW; j++) {
        if (old_row(cur, o, j, &r) && r.hash == h && !old_kept(o, j)) {
            o->next = j + 1;
            return j;
        }
    }
    if (key != NULL && old_find_key(cur, cur->ti, key, klen, kh, &j) && old_row(cur, o, j, &r) &&
        r.hash == h && !old_kept(o, j)) {
        return j;
    }
    return SIZE_MAX;
}

/* ---- the runs a read builds ----------------------------------------------
 *
 * Every read puts the rows of the table it leaves in runs of CSV_RUN_ROWS
 * (csvstate.h), each with the hash of its bytes in the file, hashed once
 * where they are in the mapped file (r.keep: their pages are not given back
 * before; a file read through a buffer instead, when it cannot be mapped,
 * leaves runs that cannot be kept whole, read row by row). A delta
 * read where the first row of an old run is expected hashes that many
 * bytes there: the same hash keeps the run's rows without parsing, hashing
 * or comparing them one by one, and the run with its rows' data where it
 * is (an unchanged HR export of a million rows: ~16,000 hashes of a few
 * KiB, nothing written for them). */

/* A run starts at the next row of the file. */
static void run_open(struct csv_cursor *cur)
{
    cur->copen = true;
    cur->cok = true;
    cur->cstart = file_reader_tell(&cur->r);
    cur->cfirst = cur->old == NULL ? cur->rows[cur->ti].nr : cur->rows[cur->ti].nseq;
    cur->r.keep = cur->cstart;
}

static size_t run_rows(const struct csv_cursor *cur)
{
    const struct row_table *rt = &cur->rows[cur->ti];

    if (!cur->copen) {
        return 0;
    }
    return (cur->old == NULL ? rt->nr : rt->nseq) - cur->cfirst;
}

static struct nrun *run_push(struct row_table *rt)
{
    struct nrun *nr;

    ALLOC_GROW(rt->runs, rt->nruns + 1, rt->aruns);
    nr = &rt->runs[rt->nruns++];
    memset(nr, 0, sizeof(*nr));
    return nr;
}

/* The open run ends at file offset end: a built run of its rows (its bytes
 * hashed when they are all in the buffer, each row one line, the last one
 * ended). A run without rows is dropped. */
static void run_close(struct csv_cursor *cur, uint64_t end)
{
    struct row_table *rt = &cur->rows[cur->ti];
    struct file_reader *r = &cur->r;
    size_t n = run_rows(cur);
    struct nrun *nr;

    if (n > 0) {
        nr = run_push(rt);
        nr->first = (uint32_t)cur->cfirst;
        nr->rec.nrows = (uint32_t)n;
        if (cur->cok && cur->cstart >= r->off && end <= r->off + r->len && end > cur->cstart &&
            end - cur->cstart <= RUN_BYTES_MAX && r->buf[end - 1 - r->off] == '\n') {
            nr->rec.csv_len = (uint32_t)(end - cur->cstart);
            nr->rec.csv_hash =
                hash64_bulk(r->buf + (cur->cstart - r->off), nr->rec.csv_len, CSV_RUN_SEED);
        }
        rt->ntotal += n;
    }
    cur->copen = false;
    r->keep = UINT64_MAX;
}

/* A row of the file (one line, or not) joined the open run, ending where
 * the reader is: the run closes at CSV_RUN_ROWS rows. */
static void run_row(struct csv_cursor *cur, bool one_line)
{
    if (!cur->copen) {
        return;
    }
    if (!one_line) {
        cur->cok = false;
    }
    if (run_rows(cur) >= CSV_RUN_ROWS) {
        run_close(cur, file_reader_tell(&cur->r));
    }
}

/* After the files: old row j of type ti, whose deletion is put off, stays
 * in the table, in runs of their own (not kept whole). */
static void run_put_off(struct csv_cursor *cur, size_t ti, size_t j)
{
    struct row_table *rt = &cur->rows[ti];
    struct nrun *nr = rt->nruns > 0 ? &rt->runs[rt->nruns - 1] : NULL;

    if (nr == NULL || !nr->tail || nr->rec.nrows >= CSV_RUN_ROWS) {
        nr = run_push(rt);
        nr->tail = true;
        nr->first = (uint32_t)rt->nseq;
    }
    seq_push(rt, (uint32_t)j);
    nr->rec.nrows++;
    rt->ntotal++;
}

/* Delta read: at the next row, the old run that starts with the expected
 * old row, if the file has its bytes there: its rows kept, the reader past
 * them. false when there is no such run (the rows are read one by one). */
static bool skip_run(struct csv_cursor *cur)
{
    struct old_table *o = &cur->old[cur->ti];
    struct row_table *rt = &cur->rows[cur->ti];
    struct file_reader *r = &cur->r;
    const struct csv_run *run;
    size_t open = run_rows(cur);
    size_t c, j, x;

    while (o->rc < o->nruns && o->first[o->rc + 1] <= o->next) {
        o->rc++;
    }
    c = o->rc;
    if (c >= o->nruns || o->first[c] != o->next || o->runs[c].csv_len == 0) {
        return false;
    }
    run = &o->runs[c];
    if (o->touched[c] || old_watched(o, o->first[c], o->first[c + 1])) {
        /* a row of it is earlier in the file, or a row read before has a
         * key of it: read row by row */
        return false;
    }
    if (!file_reader_need(r, run->csv_len) ||
        hash64_bulk(r->buf + r->pos, run->csv_len, CSV_RUN_SEED) != run->csv_hash) {
        return false;
    }
    if (open == 0 || open >= RUN_SMALL || open + run->nrows > CSV_RUN_MAX) {
        /* the run as it is, after the open run (closed) */
        struct nrun *nr;

        run_close(cur, file_reader_tell(r));
        nr = run_push(rt);
        nr->ref = true;
        nr->rec = *run;
        nr->old_c = (uint32_t)c;
        rt->ntotal += run->nrows;
        o->whole[c] = 1;
        o->wline[c] = (uint32_t)cur->line;
    } else {
        /* a short open run takes its rows in (its bytes are in the buffer
         * after the open run's) */
        for (x = 0; x < run->nrows; x++) {
            j = o->first[c] + x;
            old_keep_row(o, j, cur->line + x);
            seq_push(rt, (uint32_t)j);
        }
    }
    r->pos += run->csv_len;
    cur->line += run->nrows;
    o->next = o->first[c + 1];
    if (cur->copen && run_rows(cur) >= CSV_RUN_ROWS) {
        run_close(cur, file_reader_tell(r));
    }
    return true;
}

/* Delta read: the row at `line` is old row j read again with the same
 * bytes: kept, unless a row read earlier has its key (IDS_EINPUT, the
 * duplicate reported as a full read would). */
static enum ids_err keep_old(struct csv_cursor *cur, size_t j, uint64_t line, struct ids_error *err)
{
    struct csv_conn *cc = cur->conn;
    struct old_table *o = &cur->old[cur->ti];
    struct strbuf key = STRBUF_INIT;
    enum ids_err ret = IDS_OK;
    struct orow r;
    uint32_t pline;
    size_t pti;

    if (!old_row(cur, o, j, &r)) {
        /* not reached: the row was compared before */
        return ids_error_set(err, IDS_EIO, "%s: the row tables are damaged", cc->base.name);
    }
    /* a row read now has this key only if one changed this row in place
     * or one not in its old place has its key (watched: keys of the old
     * table are unique) */
    if ((old_taken(o, j) || old_watched(o, j, j + 1)) &&
        seen_find(cur, r.kh, r.key, r.klen, &pti, &pline)) {
        strbuf_add(&key, r.key, r.klen);
        ret = ids_error_set(err, IDS_EINPUT,
                            "%s:%" PRIu64
                            ": column \"%s\": duplicate key \"%s\" (first at %s:%" PRIu32 ")",
                            cc->types[cur->ti].path, line, cc->types[cur->ti].key, key.buf,
                            cc->types[pti].path, pline);
        cur->unreadable++;
        goto done;
    }
    old_keep_row(o, j, line);
    seq_push(&cur->rows[cur->ti], (uint32_t)j);
done:
    strbuf_release(&key);
    return ret;
}

/* Delta read: a row read now (entry e), not in its old place, whose key an
 * old row kept earlier in the files has: IDS_EINPUT, the duplicate
 * reported. An old row of its key not kept yet is watched: kept later, it
 * is the duplicate. */
static enum ids_err dup_of_kept(struct csv_cursor *cur, const struct entry *e, uint64_t line,
                                struct ids_error *err)
{
    struct csv_conn *cc = cur->conn;
    size_t len = strlen(e->anchor);
    uint64_t kh = file_key_hash(e->anchor, len);
    size_t ti;
    size_t j;

    for (ti = 0; ti < cc->ntypes; ti++) {
        struct old_table *o = &cur->old[ti];

        if (!old_find_key(cur, ti, e->anchor, len, kh, &j)) {
            continue;
        }
        if (!old_kept(o, j)) {
            ALLOC_GROW(o->watch, o->nwatch + 1, o->awatch);
            o->watch[o->nwatch++] = (uint32_t)j;
            continue;
        }
        cur->unreadable++;
        return ids_error_set(err, IDS_EINPUT,
                             "%s:%" PRIu64
                             ": column \"%s\": duplicate key \"%s\" (first at %s:%" PRIu32 ")",
                             cc->types[cur->ti].path, line, cc->types[cur->ti].key, e->anchor,
                             cc->types[ti].path, old_line(&cur->old[ti], j));
    }
    return IDS_OK;
}

/* Delta read of a file whose configuration is unchanged: the next line,
 * when it is whole in the read buffer and plain (no quote, no CR but in
 * its CRLF end, not empty): its bytes are its raw row, hashed without
 * parsing; *eol is the length of its line end. */
static bool plain_line(struct csv_cursor *cur, const char **p, size_t *len, size_t *eol)
{
    struct file_reader *r = &cur->r;
    const char *b = r->buf + r->pos;
    const char *nl;
    const char *end;

    if (r->pos >= r->len) {
        return false;
    }
    nl = memchr(b, '\n', r->len - r->pos);
    if (nl == NULL) {
        return false;
    }
    end = nl > b && nl[-1] == '\r' ? nl - 1 : nl; /* CRLF, as RFC 4180 writes it */
    if (end == b || memchr(b, '"', (size_t)(end - b)) != NULL ||
        memchr(b, '\r', (size_t)(end - b)) != NULL) {
        return false;
    }
    *p = b;
    *len = (size_t)(end - b);
    *eol = (size_t)(nl - end) + 1;
    return true;
}

/* After the last file of a delta read: the deletions to yield (remembered
 * keys that no row has now), and which old rows the next watermark keeps:
 * those read again, and while a row could not be read, those whose
 * deletion is put off (the unreadable row may be theirs). */
static void delta_deletions(struct csv_cursor *cur)
{
    struct csv_conn *cc = cur->conn;
    struct strbuf key = STRBUF_INIT;
    size_t alloc = 0;
    size_t ti, c, j;

    for (ti = 0; ti < cc->ntypes; ti++) {
        struct old_table *o = &cur->old[ti];

        for (c = 0; c < o->nruns; c++) {
            if (o->whole[c]) {
                continue; /* read again whole */
            }
            for (j = o->first[c]; j < o->first[c + 1]; j++) {
                struct orow r;
                uint32_t pline;
                size_t pti;

                if (((o->same[j / 8] >> (j % 8)) & 1u) != 0) {
                    continue; /* read again */
                }
                if (!old_row(cur, o, j, &r)) {
                    break; /* damaged: not known (no tables are written) */
                }
                if (seen_find(cur, r.kh, r.key, r.klen, &pti, &pline)) {
                    continue; /* the key has another row now (read, or reported) */
                }
                if (cur->unreadable > 0) {
                    old_set_kept(o, j);
                    run_put_off(cur, ti, j);
                    continue;
                }
                if (r.klen == 0) {
                    continue;
                }
                strbuf_reset(&key);
                strbuf_add(&key, r.key, r.klen);
                ALLOC_GROW(cur->dels, cur->ndels + 1, alloc);
                cur->dels[cur->ndels++] =
                    change_new(CHANGE_DELETE, cc->types[ti].ot->name, key.buf, key.buf);
            }
        }
    }
    strbuf_release(&key);
}

/* All files are read: finish the watermark (tables), free what the read
 * needed, queue the deletions of a delta read. */
static void finish_read(struct csv_cursor *cur)
{
    size_t ti;

    if (cur->delta) {
        delta_deletions(cur);
    }
    free(cur->seen);
    cur->seen = NULL;
    if (!cur->collect) {
        return;
    }
    if ((cur->unreadable > 0 && !cur->delta) || cur->damaged) {
        cur->incomplete = true;
    }
    if (!cur->incomplete) {
        write_tables(cur);
    }
    for (ti = 0; ti < cur->conn->ntypes; ti++) {
        row_table_release(&cur->rows[ti]);
        if (cur->old != NULL) {
            old_table_release(&cur->old[ti]);
        }
    }
    csv_state_close(&cur->st);
    strbuf_release(&cur->tables);
    file_state_unmap(cur->map, cur->map_len);
    cur->map = NULL;
}

static enum ids_err cursor_next_row(struct csv_cursor *cur, struct read_item *item,
                                    struct ids_error *err)
{
    struct csv_conn *cc = cur->conn;
    enum ids_err ret;

    memset(item, 0, sizeof(*item));
    for (;;) {
        struct csv_type *t;
        enum csv_status st;
        uint64_t hash = 0;
        const char *lp = NULL;
        size_t llen = 0;
        size_t eol = 0;
        bool delta;
        bool clean;
        bool one_line; /* the row was one line of the file */
        uint64_t line0;
        bool in_place; /* delta: a row changed where its old row was */

        if (cur->tail) {
            if (cur->idel < cur->ndels) {
                item->op = CHANGE_DELETE;
                item->change = cur->dels[cur->idel++];
                return IDS_OK;
            }
            cur->done = true;
            cur->tail = false;
        }
        if (cur->done) {
            return IDS_DONE;
        }
        if (!cur->open) {
            ret = open_next_file(cur, err);
            if (ret == IDS_DONE) {
                finish_read(cur);
                cur->tail = true;
                continue;
            }
            if (ret != IDS_OK) {
                cur->done = true;
                return ret;
            }
        }
        t = &cc->types[cur->ti];
        file_reader_trim(&cur->r);
        delta = cur->delta && cur->old[cur->ti].usable && cur->collect;
        if (cur->collect) {
            if (!cur->copen) {
                run_open(cur);
            } else if (file_reader_tell(&cur->r) - cur->cstart > RUN_BYTES_MAX) {
                cur->cok = false; /* too long to keep: not hashed */
                cur->r.keep = UINT64_MAX;
            }
        }
        if (delta && skip_run(cur)) {
            continue;
        }
        if (delta && plain_line(cur, &lp, &llen, &eol)) {
            size_t j = find_old(cur, hash64_bulk(lp, llen, ROW_HASH_SEED), NULL, 0, 0);

            if (j != SIZE_MAX) {
                cur->r.pos += llen + eol;
                ret = keep_old(cur, j, cur->line++, err);
                if (ret != IDS_OK) {
                    cur->cok = false;
                    return ret;
                }
                run_row(cur, true);
                continue;
            }
        }
        line0 = cur->line;
        st = csv_read_record(&cur->r, cc->delim, &cur->line, &cur->rec);
        if (st == CSV_REC_IOERR) {
            cur->done = true;
            return ids_error_set(err, IDS_EIO, "%s: %s", t->path, strerror(cur->r.err));
        }
        if (st == CSV_REC_EOF) {
            ret = check_unchanged(cur, t->path, err);
            if (ret != IDS_OK) {
                cur->done = true;
                return ret;
            }
            if (cur->collect) {
                run_close(cur, file_reader_tell(&cur->r));
            }
            put_file_wm(cur);
            cursor_close_file(cur);
            cur->ti++;
            continue;
        }
        /* one line, ended by LF or CRLF (a run's rows each end with its
         * only LF: skip_run splits runs there) */
        one_line = cur->rec.line == line0 && cur->line == line0 + 1 &&
                   (strcmp(cur->rec.eol, "\n") == 0 || strcmp(cur->rec.eol, "\r\n") == 0);
        if (csv_record_blank(&cur->rec)) {
            cur->cok = false;
            continue;
        }
        clean = !cur->rec.too_big && !cur->rec.unterminated && cur->rec.bad_quote_field == SIZE_MAX;
        if (!clean) {
            cur->cok = false;
        }
        if (clean && cur->collect) {
            hash = row_hash(&cur->rec);
        }
        in_place = false;
        if (clean && delta) {
            struct csv_record *rec = &cur->rec;
            struct old_table *o = &cur->old[cur->ti];
            bool have_kh = cur->key_col < rec->nf;
            const char *key = have_kh ? csv_field_str(rec, cur->key_col) : NULL;
            size_t klen = have_kh ? rec->f[cur->key_col].len : 0;
            uint64_t kh = have_kh ? file_key_hash(key, klen) : 0;
            struct orow expect;
            size_t j;

            /* the row expected here with this key, other bytes: changed in
             * place (keys are unique in the old table: no other old row
             * can be these bytes or be a kept duplicate of the key) */
            in_place = have_kh && o->next < o->n && old_row(cur, o, o->next, &expect) &&
                       expect.kh == kh && !old_kept(o, o->next);
            j = find_old(cur, hash, have_kh && !in_place ? key : NULL, klen, kh);
            if (j != SIZE_MAX) {
                ret = keep_old(cur, j, rec->line, err);
                if (ret != IDS_OK) {
                    cur->cok = false;
                    return ret;
                }
                run_row(cur, one_line);
                continue;
            }
            if (in_place) {
                old_set_taken(o, o->next);
                o->next++;
            }
        }
        ret = row_to_entry(cur, t, &item->entry, err);
        if (ret == IDS_OK && cur->delta && !in_place) {
            ret = dup_of_kept(cur, item->entry, cur->rec.line, err);
            if (ret != IDS_OK) {
                entry_free(item->entry);
                item->entry = NULL;
                cur->cok = false;
                return ret;
            }
        }
        if (ret == IDS_EINPUT) {
            cur->unreadable++;
        }
        if (ret != IDS_OK) {
            cur->cok = false;
            return ret;
        }
        if (clean) {
            row_table_add(cur, cur->ti, hash, item->entry->anchor, strlen(item->entry->anchor),
                          cur->rec.line);
            if (cur->old != NULL) {
                seq_push(&cur->rows[cur->ti], (uint32_t)(cur->rows[cur->ti].nr - 1) | SEQ_NEW);
            }
            if (cur->collect) {
                run_row(cur, one_line);
            }
        }
        item->op = CHANGE_ADD;
        return IDS_OK;
    }
}

static enum ids_err csv_cursor_next(struct connector_cursor *c, struct read_item *item,
                                    struct ids_error *err)
{
    struct csv_cursor *cur = (struct csv_cursor *)c;
    sigjmp_buf env;
    enum ids_err ret;

    if (sigsetjmp(env, 1) != 0) {
        /* SIGBUS: the mapped file shrank under the read */
        fd_bus_catch(NULL);
        cur->done = true;
        return ids_error_set(err, IDS_EIO, "%s: the file was truncated while it was read",
                             cur->ti < cur->conn->ntypes ? cur->conn->types[cur->ti].path : "?");
    }
    fd_bus_catch(&env);
    ret = cursor_next_row(cur, item, err);
    fd_bus_catch(NULL);
    return ret;
}

static enum ids_err csv_cursor_watermark(struct connector_cursor *c, struct strbuf *out,
                                         struct ids_error *err)
{
    struct csv_cursor *cur = (struct csv_cursor *)c;

    if (!cur->done || cur->open) {
        return ids_error_set(err, IDS_EINVAL, "csv: watermark asked before the end of the read");
    }
    strbuf_addbuf(out, &cur->wm);
    return IDS_OK;
}

static enum ids_err csv_check(struct connector *c, struct strbuf *report, struct ids_error *err)
{
    struct csv_conn *cc = (struct csv_conn *)c;
    struct csv_cursor *cur;
    struct read_item item;
    struct ids_error rowerr = IDS_ERROR_INIT;
    long *objects = xcalloc(cc->ntypes, sizeof(*objects));
    long *bad = xcalloc(cc->ntypes, sizeof(*bad));
    enum ids_err ret;
    size_t i, j;

    new_cursor(cc, false, &cur);
    for (;;) {
        ret = csv_cursor_next((struct connector_cursor *)cur, &item, &rowerr);
        if (ret == IDS_DONE) {
            break;
        }
        if (ret == IDS_OK) {
            objects[cur->ti]++;
            read_item_release(&item);
        } else if (ret == IDS_EINPUT) {
            if (bad[cur->ti]++ == 0) {
                strbuf_addf(report, "first bad row: %s\n", rowerr.msg);
            }
        } else {
            ids_error_set(err, ret, "%s", rowerr.msg);
            goto done;
        }
    }
    ret = IDS_OK;
    for (i = 0; i < cc->ntypes; i++) {
        struct stat st;

        strbuf_addf(report, "path: %s\n", cc->types[i].path);
        if (stat(cc->types[i].path, &st) == 0) {
            strbuf_addf(report, "size: %lld bytes\n", (long long)st.st_size);
        } else {
            strbuf_addstr(report, "size: (no file yet)\n");
        }
        strbuf_addf(report, "objects: %ld %s\n", objects[i], cc->types[i].ot->name);
        for (j = 0; j < cur->missing.nr; j++) {
            char *end;

            if (strtoul(cur->missing.v[j], &end, 10) == i) {
                strbuf_addf(report,
                            "missing column: %s (in attributes, not in the header: every object "
                            "would have no %s)\n",
                            end + 1, end + 1);
            }
        }
        if (bad[i] > 0) {
            strbuf_addf(report, "bad rows: %ld\n", bad[i]);
        }
    }
done:
    csv_cursor_free((struct connector_cursor *)cur);
    free(objects);
    free(bad);
    return ret;
}

/* ---- writing --------------------------------------------------------- */

static void csv_type_export_reset(struct csv_type *t)
{
    size_t i;

    for (i = 0; i < t->npend; i++) {
        free(t->pend[i].key);
        free(t->pend[i].new_key);
        free(t->pend[i].new_dn);
        free(t->pend[i].msg);
    }
    free(t->pend);
    t->pend = NULL;
    t->npend = 0;
    t->palloc = 0;
    u64map_release(&t->pend_index);
    u64map_release(&t->add_index);
    u64map_release(&t->add_status);
    if (t->adds_fd >= 0) {
        close(t->adds_fd);
    }
    t->adds_fd = -1;
    if (t->mods_fd >= 0) {
        close(t->mods_fd);
    }
    t->mods_fd = -1;
    t->mods_size = 0;
    strbuf_release(&t->mods_buf);
    t->mods_code = IDS_OK;
    ids_error_clear(&t->mods_err);
    t->adds_size = 0;
    t->nadds = 0;
    strvec_clear(&t->cols);
    strvec_clear(&t->orig_cols);
    t->fail_code = IDS_OK;
    ids_error_clear(&t->fail_err);
    t->poll_pend = 0;
    t->poll_add_off = 0;
    t->exists = false;
    t->bom = false;
}

static size_t col_index(const struct strvec *cols, const char *name)
{
    long i = strvec_find(cols, name, true);

    return i < 0 ? NO_COL : (size_t)i;
}

/* Read the header of an existing file (export side). */
static enum ids_err read_existing_header(struct csv_conn *cc, struct csv_type *t,
                                         struct ids_error *err)
{
    struct csv_cursor *cur;
    enum ids_err ret;
    size_t i;

    new_cursor(cc, false, &cur);
    ret = file_reader_open(&cur->r, t->path, err);
    if (ret == IDS_ENOTFOUND) {
        ret = IDS_OK;
        goto done;
    }
    if (ret != IDS_OK) {
        goto done;
    }
    cur->open = true;
    cur->line = 1;
    ret = read_header(cur, t, err);
    t->bom = cur->bom;
    if (ret == IDS_DONE) {
        ret = IDS_OK; /* empty file: written as new */
        goto done;
    }
    if (ret != IDS_OK) {
        goto done;
    }
    t->exists = true;
    memcpy(t->eol, cur->rec.eol[0] ? cur->rec.eol : "\r\n", sizeof(t->eol));
    for (i = 0; i < cur->header.nr; i++) {
        strvec_push(&t->orig_cols, cur->header.v[i]);
    }
done:
    csv_cursor_free((struct connector_cursor *)cur);
    return ret;
}

static enum ids_err csv_export_begin(struct connector *c, struct ids_error *err)
{
    struct csv_conn *cc = (struct csv_conn *)c;
    enum ids_err ret = IDS_OK;
    size_t i, j;

    if (cc->encoding != NULL) {
        return ids_error_set(err, IDS_ECONFIG,
                             "encoding %s is for reading: idsync writes CSV files only in UTF-8 "
                             "(remove `encoding`, or do not export to this connector)",
                             cc->encoding);
    }

    for (i = 0; i < cc->ntypes; i++) {
        struct csv_type *t = &cc->types[i];

        csv_type_export_reset(t);
        memcpy(t->eol, "\r\n", 3);
        ret = read_existing_header(cc, t, err);
        if (ret != IDS_OK) {
            goto done;
        }
        if (t->exists) {
            for (j = 0; j < t->orig_cols.nr; j++) {
                strvec_push(&t->cols, t->orig_cols.v[j]);
            }
        } else {
            strvec_push(&t->cols, t->key);
            if (t->dn_column != NULL && strcasecmp(t->dn_column, t->key) != 0) {
                strvec_push(&t->cols, t->dn_column);
            }
        }
        for (j = 0; j < t->ot->attributes.nr; j++) {
            if (col_index(&t->cols, t->ot->attributes.v[j]) == NO_COL) {
                strvec_push(&t->cols, t->ot->attributes.v[j]);
            }
        }
    }
    cc->exporting = true;
    cc->ended = false;
    cc->poll_type = 0;
done:
    return ret;
}

static struct csv_type *type_of_change(struct csv_conn *cc, const struct change *ch)
{
    size_t i;

    if (ch->type == NULL) {
        return cc->ntypes == 1 ? &cc->types[0] : NULL;
    }
    for (i = 0; i < cc->ntypes; i++) {
        if (strcasecmp(cc->types[i].ot->name, ch->type) == 0) {
            return &cc->types[i];
        }
    }
    return NULL;
}

/* Column of attribute `name`: an existing column, or a new one when the
 * object type keeps every column (no attributes list). */
static enum ids_err column_for(struct csv_type *t, const char *name, const struct change *ch,
                               size_t *col, struct ids_error *err)
{
    *col = col_index(&t->cols, name);
    if (*col != NO_COL) {
        return IDS_OK;
    }
    if (t->ot->attributes.nr == 0) {
        strvec_push(&t->cols, name);
        *col = t->cols.nr - 1;
        return IDS_OK;
    }
    return ids_error_set(
        err, IDS_EREJECTED, "%s: attribute \"%s\" is not a column of %s (not in attributes)",
        ch->dn ? ch->dn : (ch->anchor ? ch->anchor : "(new object)"), name, t->path);
}

static enum ids_err check_values(const struct csv_type *t, const struct change *ch,
                                 const struct attr *a, struct ids_error *err)
{
    size_t i;

    for (i = 0; i < a->nvals; i++) {
        const struct value *v = &a->vals[i];

        if (memchr(v->data, '\0', v->len) != NULL || !utf8_valid(v->data, v->len)) {
            return ids_error_set(
                err, IDS_EREJECTED, "%s: attribute \"%s\": binary value cannot be written to %s",
                ch->dn ? ch->dn : (ch->anchor ? ch->anchor : "(new object)"), a->name, t->path);
        }
    }
    return IDS_OK;
}

static void put_u32(struct strbuf *sb, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};

    strbuf_add(sb, b, 4);
}

static void put_u64(struct strbuf *sb, uint64_t v)
{
    put_u32(sb, (uint32_t)(v >> 32));
    put_u32(sb, (uint32_t)v);
}

static uint32_t get_u32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t get_u64(const unsigned char *p)
{
    return ((uint64_t)get_u32(p) << 32) | get_u32(p + 4);
}

static void put_str(struct strbuf *sb, const char *s, size_t len)
{
    put_u32(sb, (uint32_t)len);
    strbuf_add(sb, s, len);
}

/* One add in the side file:
 *   u32 total length (after this field), u64 tag, str key, str dn,
 *   u32 ncells, ncells * (u32 column, str cell)
 * with str = u32 length + bytes. */
struct csv_add {
    uint64_t tag;
    char *key;
    char *dn;
    size_t ncells;
    size_t *col;
    char **cell;
    uint64_t next_off;
};

static void csv_add_release(struct csv_add *a)
{
    size_t i;

    free(a->key);
    free(a->dn);
    for (i = 0; i < a->ncells; i++) {
        free(a->cell[i]);
    }
    free(a->cell);
    free(a->col);
    memset(a, 0, sizeof(*a));
}

static enum ids_err csv_add_load(struct csv_type *t, uint64_t off, struct csv_add *a,
                                 struct ids_error *err)
{
    unsigned char hdr[4];
    unsigned char *buf = NULL;
    const unsigned char *p;
    uint32_t total, n, i, len;
    enum ids_err ret;

    memset(a, 0, sizeof(*a));
    ret = fd_pread_all(t->adds_fd, hdr, 4, off, "csv side file", err);
    if (ret != IDS_OK) {
        goto done;
    }
    total = get_u32(hdr);
    buf = xmalloc(total);
    ret = fd_pread_all(t->adds_fd, buf, total, off + 4, "csv side file", err);
    if (ret != IDS_OK) {
        goto done;
    }
    /* written by us just before: trusted layout */
    p = buf;
    a->tag = get_u64(p);
    p += 8;
    len = get_u32(p);
    a->key = xmemdup(p + 4, len);
    p += 4 + len;
    len = get_u32(p);
    a->dn = len ? xmemdup(p + 4, len) : NULL;
    p += 4 + len;
    n = get_u32(p);
    p += 4;
    a->ncells = n;
    a->col = xcalloc(n ? n : 1, sizeof(*a->col));
    a->cell = xcalloc(n ? n : 1, sizeof(*a->cell));
    for (i = 0; i < n; i++) {
        a->col[i] = get_u32(p);
        len = get_u32(p + 4);
        a->cell[i] = xmemdup(p + 8, len);
        p += 8 + len;
    }
    a->next_off = off + 4 + total;
done:
    free(buf);
    return ret;
}

/* Build the cells of an add: attribute values joined per column. */
static enum ids_err submit_add(struct csv_conn *cc, struct csv_type *t, const struct change *ch,
                               uint64_t tag, struct ids_error *err)
{
    struct strvec *vals = NULL; /* per column */
    struct strbuf rec = STRBUF_INIT;
    struct strbuf body = STRBUF_INIT;
    struct strbuf cell = STRBUF_INIT;
    const char *key = NULL;
    const char *dn = ch->dn;
    size_t ncols_alloc = 0;
    size_t i, j, col, ncells = 0;
    enum ids_err ret = IDS_OK;
    uint64_t h, prev;

    for (i = 0; i < ch->nmods; i++) {
        const struct mod *m = &ch->mods[i];

        if (m->op == MOD_DELETE || m->attr.nvals == 0) {
            continue;
        }
        ret = column_for(t, m->attr.name, ch, &col, err);
        if (ret != IDS_OK) {
            goto done;
        }
        ret = check_values(t, ch, &m->attr, err);
        if (ret != IDS_OK) {
            goto done;
        }
        if (col >= ncols_alloc) {
            size_t n = t->cols.nr + 1;

            vals = xreallocarray(vals, n, sizeof(*vals));
            for (j = ncols_alloc; j < n; j++) {
                strvec_init(&vals[j]);
            }
            ncols_alloc = n;
        }
        if (m->op == MOD_REPLACE) {
            strvec_clear(&vals[col]);
        }
        for (j = 0; j < m->attr.nvals; j++) {
            if (strvec_find(&vals[col], m->attr.vals[j].data, false) < 0) {
                strvec_push(&vals[col], m->attr.vals[j].data);
            }
        }
    }
    col = col_index(&t->cols, t->key);
    if (col < ncols_alloc && vals[col].nr > 0) {
        key = vals[col].v[0];
        if (vals[col].nr > 1) {
            ret = ids_error_set(err, IDS_EREJECTED, "%s: the key column \"%s\" has %zu values",
                                dn ? dn : key, t->key, vals[col].nr);
            goto done;
        }
    } else if (t->dn_column == NULL && dn != NULL && dn[0] != '\0') {
        key = dn;
    }
    if (key == NULL || key[0] == '\0') {
        ret = ids_error_set(err, IDS_EREJECTED, "%s: add without a value for the key column \"%s\"",
                            dn ? dn : "(new object)", t->key);
        goto done;
    }
    /* every column gets a slot; the key and DN cells are filled in */
    if (ncols_alloc < t->cols.nr) {
        vals = xreallocarray(vals, t->cols.nr, sizeof(*vals));
        for (j = ncols_alloc; j < t->cols.nr; j++) {
            strvec_init(&vals[j]);
        }
        ncols_alloc = t->cols.nr;
    }
    col = col_index(&t->cols, t->key);
    if (vals[col].nr == 0) {
        strvec_push(&vals[col], key);
    }
    key = vals[col].v[0];
    if (t->dn_column != NULL) {
        size_t dcol = col_index(&t->cols, t->dn_column);

        if (vals[dcol].nr == 0 && dn != NULL && dn[0] != '\0') {
            strvec_push(&vals[dcol], dn);
        }
        dn = vals[dcol].nr > 0 ? vals[dcol].v[0] : NULL;
    } else {
        dn = key;
    }
    h = file_key_hash(key, strlen(key));
    if (u64map_get(&t->add_index, h, &prev)) {
        ret = ids_error_set(err, IDS_EEXIST, "%s: key \"%s\" is added twice in this export",
                            t->path, key);
        goto done;
    }
    if (t->adds_fd < 0) {
        ret = file_anon_temp(t->path, &t->adds_fd, err);
        if (ret != IDS_OK) {
            goto done;
        }
    }
    for (col = 0; col < ncols_alloc; col++) {
        if (vals[col].nr == 0) {
            continue;
        }
        strbuf_reset(&cell);
        if (col == col_index(&t->cols, t->key) ||
            (t->dn_column != NULL && col == col_index(&t->cols, t->dn_column))) {
            strbuf_addstr(&cell, vals[col].v[0]);
        } else {
            csv_join_values(&cell, &vals[col], cc->sep);
        }
        put_u32(&body, (uint32_t)col);
        put_str(&body, cell.buf, cell.len);
        ncells++;
    }
    put_u64(&rec, tag);
    put_str(&rec, key, strlen(key));
    put_str(&rec, dn ? dn : "", dn ? strlen(dn) : 0);
    put_u32(&rec, (uint32_t)ncells);
    strbuf_addbuf(&rec, &body);
    strbuf_reset(&body);
    put_u32(&body, (uint32_t)rec.len);
    strbuf_addbuf(&body, &rec);
    /* at its offset: a failed write before leaves no shifted records */
    ret = fd_pwrite_all(t->adds_fd, body.buf, body.len, t->adds_size, "csv side file", err);
    if (ret != IDS_OK) {
        goto done;
    }
    u64map_put(&t->add_index, h, t->adds_size);
    t->adds_size += body.len;
    t->nadds++;
done:
    for (j = 0; j < ncols_alloc; j++) {
        strvec_clear(&vals[j]);
    }
    free(vals);
    strbuf_release(&rec);
    strbuf_release(&body);
    strbuf_release(&cell);
    return ret;
}

/* Write the queued modifies' changes to their side file, at their offset.
 * A failure is kept: the changes it lost cannot be applied, so the
 * snapshot of this file is not written in this export and every change to
 * it fails (retryable), as when the file cannot be rewritten. */
static enum ids_err mods_flush(struct csv_type *t, struct ids_error *err)
{
    enum ids_err ret;

    if (t->mods_code != IDS_OK) {
        if (err != NULL) {
            *err = t->mods_err;
        }
        return t->mods_code;
    }
    if (t->mods_buf.len == 0) {
        return IDS_OK;
    }
    ret = fd_pwrite_all(t->mods_fd, t->mods_buf.buf, t->mods_buf.len,
                        t->mods_size - t->mods_buf.len, "csv side file", &t->mods_err);
    strbuf_reset(&t->mods_buf);
    if (ret != IDS_OK) {
        t->mods_code = ret;
        if (err != NULL) {
            *err = t->mods_err;
        }
    }
    return ret;
}

/* The change of pending p, read back from the side file (the caller's). */
static enum ids_err pend_change(struct csv_type *t, const struct csv_pending *p, struct change **ch,
                                struct ids_error *err)
{
    enum ids_err ret;
    char *buf = xmalloc(p->ch_len ? p->ch_len : 1);

    *ch = NULL;
    ret = fd_pread_all(t->mods_fd, buf, p->ch_len, p->ch_off, "csv side file", err);
    if (ret == IDS_OK) {
        ret = change_decode(buf, p->ch_len, ch, err);
    }
    free(buf);
    return ret;
}

static enum ids_err csv_submit(struct connector *c, const struct change *ch, uint64_t tag,
                               struct ids_error *err)
{
    struct csv_conn *cc = (struct csv_conn *)c;
    struct csv_type *t = type_of_change(cc, ch);
    struct csv_pending *p;
    const char *key;
    size_t i, col, before;
    uint64_t h, first;
    enum ids_err ret;

    if (!cc->exporting || cc->ended) {
        return ids_error_set(err, IDS_EINVAL, "csv: submit outside export_begin/export_end");
    }
    if (t == NULL) {
        return ids_error_set(err, IDS_EREJECTED, "no object type \"%s\" in this connector",
                             ch->type ? ch->type : "(none)");
    }
    if (ch->op == CHANGE_ADD) {
        return submit_add(cc, t, ch, tag, err);
    }
    if (ch->op != CHANGE_MODIFY && ch->op != CHANGE_DELETE) {
        return ids_error_set(err, IDS_EINVAL, "csv: change without an operation");
    }
    key = ch->anchor;
    if ((key == NULL || key[0] == '\0') && t->dn_column == NULL) {
        key = ch->dn;
    }
    if (key == NULL || key[0] == '\0') {
        return ids_error_set(err, IDS_EREJECTED, "%s: %s without a key (anchor)",
                             ch->dn ? ch->dn : "(no DN)", change_op_name(ch->op));
    }
    for (i = 0; i < ch->nmods; i++) {
        ret = column_for(t, ch->mods[i].attr.name, ch, &col, err);
        if (ret != IDS_OK) {
            return ret;
        }
        ret = check_values(t, ch, &ch->mods[i].attr, err);
        if (ret != IDS_OK) {
            return ret;
        }
    }
    if (t->mods_code != IDS_OK) {
        return mods_flush(t, err); /* the error that stopped this file */
    }
    if (t->mods_fd < 0) {
        ret = file_anon_temp(t->path, &t->mods_fd, err);
        if (ret != IDS_OK) {
            return ret;
        }
    }
    before = t->mods_buf.len;
    if (ch->op != CHANGE_DELETE) { /* a delete needs nothing but its key */
        change_encode(ch, &t->mods_buf);
    }
    if (t->mods_buf.len - before > UINT32_MAX) {
        strbuf_setlen(&t->mods_buf, before);
        return ids_error_set(err, IDS_EREJECTED, "%s: key \"%s\": the change is too large", t->path,
                             key);
    }
    ALLOC_GROW(t->pend, t->npend + 1, t->palloc);
    p = &t->pend[t->npend];
    memset(p, 0, sizeof(*p));
    p->tag = tag;
    p->op = ch->op;
    p->ch_off = t->mods_size;
    p->ch_len = (uint32_t)(t->mods_buf.len - before);
    t->mods_size += p->ch_len;
    p->key = xstrdup(key);
    if (t->mods_buf.len >= OUT_FLUSH) {
        ret = mods_flush(t, err);
        if (ret != IDS_OK) {
            free(p->key); /* p is not counted: this submit failed; the ones
                             before fail at export_end (mods_code) */
            return ret;
        }
    }
    h = file_key_hash(key, strlen(key));
    if (u64map_get(&t->pend_index, h, &first)) {
        /* append to the end of the chain: changes apply in submit order */
        size_t k = (size_t)first - 1;

        while (t->pend[k].next != 0) {
            k = t->pend[k].next - 1;
        }
        t->pend[k].next = t->npend + 1;
    } else {
        u64map_put(&t->pend_index, h, t->npend + 1);
    }
    t->npend++;
    return IDS_OK;
}

/* Cells of one row in the output columns. */
struct row {
    size_t n;
    struct strbuf *cell;
    bool deleted;
    bool touched;
};

static void row_init(struct row *r, size_t n)
{
    size_t i;

    r->n = n;
    r->cell = xcalloc(n ? n : 1, sizeof(*r->cell));
    for (i = 0; i < n; i++) {
        strbuf_init(&r->cell[i], 0);
    }
    r->deleted = false;
    r->touched = false;
}

static void row_release(struct row *r)
{
    size_t i;

    for (i = 0; i < r->n; i++) {
        strbuf_release(&r->cell[i]);
    }
    free(r->cell);
    memset(r, 0, sizeof(*r));
}

static void row_format(const struct row *r, char delim, const char *eol, struct strbuf *out)
{
    size_t i;

    for (i = 0; i < r->n; i++) {
        if (i > 0) {
            strbuf_addch(out, delim);
        }
        csv_write_field(out, r->cell[i].buf, r->cell[i].len, delim);
    }
    strbuf_addstr(out, eol);
}

/* Apply one mod to a multi-valued cell. */
static void apply_mod_cell(struct strbuf *cell, const struct mod *m, char sep)
{
    struct strvec vals = STRVEC_INIT;
    struct strvec out = STRVEC_INIT;
    size_t i;

    if (m->op != MOD_REPLACE) {
        csv_split_values(cell->buf, cell->len, sep, &vals);
    }
    if (m->op == MOD_DELETE && m->attr.nvals == 0) {
        strvec_clear(&vals);
    }
    for (i = 0; i < vals.nr; i++) {
        bool drop = false;
        size_t j;

        if (m->op == MOD_DELETE) {
            for (j = 0; j < m->attr.nvals; j++) {
                if (strcmp(vals.v[i], m->attr.vals[j].data) == 0) {
                    drop = true;
                }
            }
        }
        if (!drop) {
            strvec_push(&out, vals.v[i]);
        }
    }
    if (m->op != MOD_DELETE) {
        for (i = 0; i < m->attr.nvals; i++) {
            if (strvec_find(&out, m->attr.vals[i].data, false) < 0) {
                strvec_push(&out, m->attr.vals[i].data);
            }
        }
    }
    strbuf_reset(cell);
    csv_join_values(cell, &out, sep);
    strvec_clear(&vals);
    strvec_clear(&out);
}

/* p failed: its code and message. */
static enum ids_err pend_fail(struct csv_pending *p, enum ids_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum ids_err pend_fail(struct csv_pending *p, enum ids_err code, const char *fmt, ...)
{
    struct ids_error e = IDS_ERROR_INIT;
    va_list ap;

    va_start(ap, fmt);
    ids_error_setv(&e, code, fmt, ap);
    va_end(ap);
    free(p->msg);
    p->msg = xstrdup(e.msg);
    p->code = code;
    return code;
}

/* Apply pending change p to row r (key column kcol, DN column dcol). */
static void apply_pending(struct csv_conn *cc, struct csv_type *t, struct csv_pending *p,
                          struct row *r, size_t kcol, size_t dcol)
{
    struct ids_error lerr = IDS_ERROR_INIT;
    struct change *ch = NULL;
    size_t i;

    p->done = true;
    p->code = IDS_OK;
    if (r->deleted) {
        if (p->op == CHANGE_MODIFY) {
            pend_fail(p, IDS_ENOTFOUND, "%s: key \"%s\": modify of a row deleted in this export",
                      t->path, p->key);
        }
        return;
    }
    r->touched = true;
    if (p->op == CHANGE_DELETE) {
        r->deleted = true;
        return;
    }
    if (pend_change(t, p, &ch, &lerr) != IDS_OK) {
        pend_fail(p, lerr.code, "%s: key \"%s\": %s", t->path, p->key, lerr.msg);
        return;
    }
    for (i = 0; i < ch->nmods; i++) {
        const struct mod *m = &ch->mods[i];
        size_t col = col_index(&t->cols, m->attr.name);

        if (col == NO_COL) {
            continue; /* checked at submit */
        }
        if (col == kcol || col == dcol) {
            if (m->op == MOD_DELETE && col == kcol) {
                pend_fail(p, IDS_EREJECTED, "%s: key \"%s\": the key column cannot be deleted",
                          t->path, p->key);
                continue;
            }
            strbuf_reset(&r->cell[col]);
            if (m->op != MOD_DELETE && m->attr.nvals > 0) {
                strbuf_add(&r->cell[col], m->attr.vals[0].data, m->attr.vals[0].len);
            }
        } else {
            apply_mod_cell(&r->cell[col], m, cc->sep);
        }
    }
    if (ch->new_dn != NULL) {
        size_t col = dcol != NO_COL ? dcol : kcol;

        strbuf_reset(&r->cell[col]);
        strbuf_addstr(&r->cell[col], ch->new_dn);
        free(p->new_dn);
        p->new_dn = xstrdup(ch->new_dn);
    }
    change_free(ch);
    if (strcmp(r->cell[kcol].buf, p->key) != 0) {
        free(p->new_key);
        p->new_key = xstrdup(r->cell[kcol].buf);
        if (dcol == NO_COL && p->new_dn == NULL) {
            p->new_dn = xstrdup(r->cell[kcol].buf);
        }
    }
    if (r->cell[kcol].len == 0) {
        pend_fail(p, IDS_EREJECTED, "%s: key \"%s\": the key would be empty", t->path, p->key);
    }
}

/* Same values as the add (sets compared; other cells must be empty). */
static bool row_matches_add(struct csv_conn *cc, const struct row *r, const struct csv_add *a,
                            size_t kcol, size_t dcol)
{
    bool *seen = xcalloc(r->n ? r->n : 1, sizeof(*seen));
    bool same = true;
    size_t i, col;

    for (i = 0; i < a->ncells && same; i++) {
        struct strvec x = STRVEC_INIT;
        struct strvec y = STRVEC_INIT;
        size_t j;

        col = a->col[i];
        if (col >= r->n) {
            same = false;
            break;
        }
        seen[col] = true;
        if (col == kcol || col == dcol) {
            same = strcmp(r->cell[col].buf, a->cell[i]) == 0;
            continue;
        }
        csv_split_values(r->cell[col].buf, r->cell[col].len, cc->sep, &x);
        csv_split_values(a->cell[i], strlen(a->cell[i]), cc->sep, &y);
        for (j = 0; j < y.nr && same; j++) {
            same = strvec_find(&x, y.v[j], false) >= 0;
        }
        for (j = 0; j < x.nr && same; j++) {
            same = strvec_find(&y, x.v[j], false) >= 0;
        }
        strvec_clear(&x);
        strvec_clear(&y);
    }
    for (col = 0; col < r->n && same; col++) {
        if (!seen[col] && col != kcol && col != dcol && r->cell[col].len > 0) {
            same = false;
        }
    }
    free(seen);
    return same;
}

static enum ids_err flush_out(struct file_atomic *fa, struct strbuf *out, bool force,
                              struct ids_error *err)
{
    enum ids_err ret = IDS_OK;

    if (out->len > 0 && (force || out->len >= OUT_FLUSH)) {
        ret = file_atomic_write(fa, out->buf, out->len, err);
        strbuf_reset(out);
    }
    return ret;
}

static void write_header(struct csv_conn *cc, const struct csv_type *t, bool bom,
                         struct strbuf *out)
{
    struct row hdr;
    size_t i;

    if (bom) {
        strbuf_addstr(out, "\xEF\xBB\xBF");
    }
    row_init(&hdr, t->cols.nr);
    for (i = 0; i < t->cols.nr; i++) {
        strbuf_addstr(&hdr.cell[i], t->cols.v[i]);
    }
    row_format(&hdr, cc->delim, t->eol, out);
    row_release(&hdr);
}

/* Write the header, then stream the existing rows into the temp file,
 * applying pending changes. */
static enum ids_err rewrite_existing(struct csv_conn *cc, struct csv_type *t,
                                     struct file_atomic *fa, struct strbuf *out,
                                     struct ids_error *err)
{
    struct csv_cursor *cur;
    struct row r = {0};
    struct csv_add add = {0};
    enum ids_err ret;
    size_t kcol = col_index(&t->cols, t->key);
    size_t dcol = t->dn_column ? col_index(&t->cols, t->dn_column) : NO_COL;
    size_t *map = NULL; /* header column -> output column */
    bool same_cols;
    size_t i;

    new_cursor(cc, false, &cur);
    ret = file_reader_open(&cur->r, t->path, err);
    if (ret == IDS_ENOTFOUND) {
        write_header(cc, t, false, out); /* removed since export_begin: written as new */
        ret = IDS_OK;
        goto done;
    }
    if (ret != IDS_OK) {
        goto done;
    }
    cur->open = true;
    cur->line = 1;
    ret = read_header(cur, t, err);
    if (ret == IDS_DONE) {
        write_header(cc, t, cur->bom, out);
        ret = IDS_OK;
        goto done;
    }
    if (ret != IDS_OK) {
        goto done;
    }
    map = xcalloc(cur->header.nr, sizeof(*map));
    same_cols = cur->header.nr == t->cols.nr;
    for (i = 0; i < cur->header.nr; i++) {
        map[i] = col_index(&t->cols, cur->header.v[i]);
        if (map[i] == NO_COL) {
            /* column added to the file since export_begin: keep it */
            strvec_push(&t->cols, cur->header.v[i]);
            map[i] = t->cols.nr - 1;
        }
        if (map[i] != i) {
            same_cols = false;
        }
    }
    same_cols = same_cols && cur->header.nr == t->cols.nr;
    write_header(cc, t, cur->bom, out);
    for (;;) {
        enum csv_status st = csv_read_record(&cur->r, cc->delim, &cur->line, &cur->rec);
        struct csv_record *rec = &cur->rec;
        const char *key;
        uint64_t h, v;
        bool bad;

        if (st == CSV_REC_IOERR) {
            ret = ids_error_set(err, IDS_EIO, "%s: %s", t->path, strerror(cur->r.err));
            goto done;
        }
        if (st == CSV_REC_EOF) {
            break;
        }
        if (csv_record_blank(rec)) {
            continue;
        }
        if (rec->too_big || rec->unterminated) {
            ret = ids_error_set(err, IDS_EINPUT,
                                "%s:%" PRIu64 ": %s; the file is not rewritten until it is "
                                "fixed",
                                t->path, rec->line,
                                rec->too_big ? "row too long" : "quoted field not terminated");
            goto done;
        }
        bad = rec->nf != cur->header.nr || rec->bad_quote_field != SIZE_MAX;
        for (i = 0; i < rec->nf && !bad; i++) {
            bad = !utf8_valid(csv_field_str(rec, i), rec->f[i].len);
        }
        if (bad || rec->f[cur->key_col].len == 0) {
            /* kept as it is: never lose a row we cannot read */
            strbuf_addbuf(out, &rec->raw);
            strbuf_addstr(out, t->eol);
            ret = flush_out(fa, out, false, err);
            if (ret != IDS_OK) {
                goto done;
            }
            continue;
        }
        key = csv_field_str(rec, cur->key_col);
        row_release(&r);
        row_init(&r, t->cols.nr);
        for (i = 0; i < rec->nf; i++) {
            strbuf_add(&r.cell[map[i]], csv_field_str(rec, i), rec->f[i].len);
        }
        h = file_key_hash(key, strlen(key));
        if (u64map_get(&t->pend_index, h, &v)) {
            size_t k = (size_t)v;

            while (k != 0) {
                struct csv_pending *p = &t->pend[k - 1];

                if (!p->done && strcmp(p->key, key) == 0) {
                    apply_pending(cc, t, p, &r, kcol, dcol);
                }
                k = p->next;
            }
        }
        if (!r.deleted && u64map_get(&t->add_index, h, &v)) {
            csv_add_release(&add);
            ret = csv_add_load(t, v, &add, err);
            if (ret != IDS_OK) {
                goto done;
            }
            if (strcmp(add.key, r.cell[kcol].buf) == 0) {
                if (row_matches_add(cc, &r, &add, kcol, dcol)) {
                    u64map_put(&t->add_status, v, ADD_PRESENT);
                } else {
                    u64map_put(&t->add_status, v, ADD_CONFLICT | (rec->line << 2));
                }
            }
        }
        if (r.deleted) {
            continue;
        }
        if (!r.touched && same_cols) {
            strbuf_addbuf(out, &rec->raw);
            strbuf_addstr(out, t->eol);
        } else {
            row_format(&r, cc->delim, t->eol, out);
        }
        ret = flush_out(fa, out, false, err);
        if (ret != IDS_OK) {
            goto done;
        }
    }
    ret = IDS_OK;
done:
    row_release(&r);
    csv_add_release(&add);
    free(map);
    csv_cursor_free((struct connector_cursor *)cur);
    return ret;
}

static enum ids_err append_adds(struct csv_conn *cc, struct csv_type *t, struct file_atomic *fa,
                                struct strbuf *out, struct ids_error *err)
{
    struct csv_add a = {0};
    struct row r = {0};
    uint64_t off = 0, st;
    enum ids_err ret = IDS_OK;
    size_t i;

    while (off < t->adds_size) {
        csv_add_release(&a);
        ret = csv_add_load(t, off, &a, err);
        if (ret != IDS_OK) {
            goto done;
        }
        if (!u64map_get(&t->add_status, off, &st)) {
            row_release(&r);
            row_init(&r, t->cols.nr);
            for (i = 0; i < a.ncells; i++) {
                strbuf_addstr(&r.cell[a.col[i]], a.cell[i]);
            }
            row_format(&r, cc->delim, t->eol, out);
            ret = flush_out(fa, out, false, err);
            if (ret != IDS_OK) {
                goto done;
            }
        }
        off = a.next_off;
    }
done:
    csv_add_release(&a);
    row_release(&r);
    return ret;
}

static enum ids_err write_snapshot(struct csv_conn *cc, struct csv_type *t, struct ids_error *err)
{
    struct file_atomic fa;
    struct strbuf out = STRBUF_INIT;
    enum ids_err ret;

    ret = file_atomic_begin(&fa, t->path, err);
    if (ret != IDS_OK) {
        return ret;
    }
    ret = rewrite_existing(cc, t, &fa, &out, err);
    if (ret != IDS_OK) {
        goto done;
    }
    ret = append_adds(cc, t, &fa, &out, err);
    if (ret != IDS_OK) {
        goto done;
    }
    ret = flush_out(&fa, &out, true, err);
    if (ret != IDS_OK) {
        goto done;
    }
    ret = file_atomic_commit(&fa, err);
    if (ret == IDS_OK) {
        t->own = fa.stamp;
    }
done:
    strbuf_release(&out);
    file_atomic_release(&fa);
    return ret;
}

static enum ids_err csv_export_end(struct connector *c, struct ids_error *err)
{
    struct csv_conn *cc = (struct csv_conn *)c;
    size_t i, k;

    (void)err;
    if (!cc->exporting) {
        return IDS_OK;
    }
    for (i = 0; i < cc->ntypes; i++) {
        struct csv_type *t = &cc->types[i];

        if (t->npend == 0 && t->nadds == 0) {
            continue;
        }
        t->fail_code = mods_flush(t, &t->fail_err);
        if (t->fail_code == IDS_OK) {
            t->fail_code = write_snapshot(cc, t, &t->fail_err);
        }
        if (t->fail_code != IDS_OK) {
            log_error("csv-export", "connector=%s file=%s error=\"%s\"", cc->base.name, t->path,
                      t->fail_err.msg);
            continue;
        }
        for (k = 0; k < t->npend; k++) {
            struct csv_pending *p = &t->pend[k];

            if (p->done) {
                continue;
            }
            p->done = true;
            if (p->op == CHANGE_DELETE) {
                p->code = IDS_OK; /* already absent: the delete is done */
            } else {
                pend_fail(p, IDS_ENOTFOUND, "%s: no row with key \"%s\"", t->path, p->key);
            }
        }
    }
    cc->ended = true;
    return IDS_OK;
}

static enum ids_err csv_poll(struct connector *c, bool block, struct export_result *res,
                             struct ids_error *err)
{
    struct csv_conn *cc = (struct csv_conn *)c;
    enum ids_err ret;

    (void)block;
    memset(res, 0, sizeof(*res));
    if (!cc->exporting) {
        return IDS_DONE;
    }
    if (!cc->ended) {
        size_t i;

        for (i = 0; i < cc->ntypes; i++) {
            if (cc->types[i].npend > 0 || cc->types[i].nadds > 0) {
                return IDS_EAGAIN; /* results come with export_end */
            }
        }
        return IDS_DONE;
    }
    while (cc->poll_type < cc->ntypes) {
        struct csv_type *t = &cc->types[cc->poll_type];

        if (t->poll_pend < t->npend) {
            struct csv_pending *p = &t->pend[t->poll_pend++];

            res->tag = p->tag;
            if (t->fail_code != IDS_OK) {
                res->code = t->fail_code;
                res->err = t->fail_err;
                res->retryable = true;
                return IDS_OK;
            }
            res->code = p->code;
            if (p->msg != NULL) {
                ids_error_set(&res->err, p->code, "%s", p->msg);
            }
            if (p->new_key != NULL) {
                res->anchor = xstrdup(p->new_key);
            }
            if (p->new_dn != NULL) {
                res->dn = xstrdup(p->new_dn);
            }
            return IDS_OK;
        }
        if (t->poll_add_off < t->adds_size) {
            struct csv_add a;
            uint64_t st;

            ret = csv_add_load(t, t->poll_add_off, &a, err);
            if (ret != IDS_OK) {
                return ret;
            }
            res->tag = a.tag;
            if (t->fail_code != IDS_OK) {
                res->code = t->fail_code;
                res->err = t->fail_err;
                res->retryable = true;
            } else if (u64map_get(&t->add_status, t->poll_add_off, &st) &&
                       (st & 3u) == ADD_CONFLICT) {
                res->code =
                    ids_error_set(&res->err, IDS_EEXIST,
                                  "%s:%" PRIu64 ": key \"%s\" already exists with other values",
                                  t->path, st >> 2, a.key);
            } else {
                res->code = IDS_OK;
                res->anchor = xstrdup(a.key);
                res->dn = xstrdup_or_null(a.dn);
            }
            t->poll_add_off = a.next_off;
            csv_add_release(&a);
            return IDS_OK;
        }
        csv_type_export_reset(t);
        cc->poll_type++;
    }
    cc->exporting = false;
    return IDS_DONE;
}

const struct connector_ops csv_connector_ops = {
    .name = "csv",
    .caps = CONN_CAP_READ | CONN_CAP_WRITE | CONN_CAP_RENAME,
    .options = csv_options,
    .object_options = csv_object_options,
    .create = csv_create,
    .open = csv_open,
    .close = csv_close,
    .check = csv_check,
    .read_full = csv_read_full,
    .read_changes = csv_read_changes,
    .cursor_next = csv_cursor_next,
    .cursor_watermark = csv_cursor_watermark,
    .cursor_free = csv_cursor_free,
    .export_begin = csv_export_begin,
    .submit = csv_submit,
    .poll = csv_poll,
    .export_end = csv_export_end,
};
