/* csvstate.c - the row tables of the CSV connector; see csvstate.h. */
#include "connector/csvstate.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "connector/fileio.h"
#include "util/codec.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/banned.h"

#define STATE_MAGIC   "IDSYNCRT"
#define STATE_VERSION 3u
#define STATE_ENDIAN  0x01020304u
#define BLOB_SEED     0x626c6f6268617368ull
/* More runs files than this in one index: the small ones are written again */
#define FILES_MAX 8u
/* Runs written into the new runs file at a time */
#define FLUSH_AT (1u << 20)

static size_t pad8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

size_t csv_blob_size(size_t k, size_t keys_len)
{
    return 16 * k + pad8(4 * (k + 1)) + pad8(keys_len);
}

/* ---- reading ------------------------------------------------------------- */

static void state_files_close(struct csv_state *st)
{
    size_t i;

    for (i = 0; i < st->nfiles; i++) {
        if (st->files[i].mapped) {
            file_state_unmap(st->files[i].data, st->files[i].size);
        }
        free(st->files[i].name);
    }
    free(st->files);
    st->files = NULL;
    st->nfiles = 0;
}

void csv_state_close(struct csv_state *st)
{
    if (st == NULL) {
        return;
    }
    state_files_close(st);
    free(st->t);
    memset(st, 0, sizeof(*st));
}

/* The fixed part of an index at p: its number of types and files. */
static bool index_head(const char *p, size_t len, uint64_t *ntypes, uint64_t *nfiles)
{
    uint32_t hdr[2];

    if (len < 32 || memcmp(p, STATE_MAGIC, 8) != 0) {
        return false;
    }
    memcpy(hdr, p + 8, sizeof(hdr));
    memcpy(ntypes, p + 16, sizeof(*ntypes));
    memcpy(nfiles, p + 24, sizeof(*nfiles));
    return hdr[0] == STATE_VERSION && hdr[1] == STATE_ENDIAN && *nfiles <= (len - 32) / 64;
}

bool csv_state_open(struct csv_state *st, const void *base, size_t len, const char *dir,
                    size_t ntypes, const char **why)
{
    const char *p = base;
    const char *end = p + len;
    uint64_t nt, nf;
    size_t i, ti;

    memset(st, 0, sizeof(*st));
    *why = "left an unreadable watermark";
    if (len >= 12 && memcmp(p, STATE_MAGIC, 8) == 0 &&
        memcmp(p + 8, &(uint32_t){STATE_VERSION}, 4) != 0) {
        *why = "left row tables of another version of idsync";
        return false;
    }
    if (((uintptr_t)base & 7u) != 0 || !index_head(p, len, &nt, &nf) || nt != ntypes) {
        return false;
    }
    st->ntypes = ntypes;
    st->t = xcalloc(ntypes + 1, sizeof(*st->t));
    st->nfiles = (size_t)nf;
    st->files = xcalloc(st->nfiles + 1, sizeof(*st->files));
    p += 32 + 64 * st->nfiles;
    for (ti = 0; ti < ntypes; ti++) {
        struct csv_state_table *t = &st->t[ti];
        uint64_t v[4];
        uint64_t rows = 0;

        if ((size_t)(end - p) < sizeof(v)) {
            goto bad;
        }
        memcpy(v, p, sizeof(v));
        p += sizeof(v);
        if (v[2] >= UINT32_MAX || v[3] > (size_t)(end - p) / sizeof(struct csv_run)) {
            goto bad;
        }
        t->cfg = v[0];
        t->flags = v[1];
        t->nrows = (size_t)v[2];
        t->nruns = (size_t)v[3];
        t->runs = (const struct csv_run *)(const void *)p;
        p += t->nruns * sizeof(struct csv_run);
        for (i = 0; i < t->nruns; i++) {
            const struct csv_run *r = &t->runs[i];

            if (r->nrows == 0 || r->nrows > CSV_RUN_MAX || r->blob_no >= st->nfiles ||
                r->blob_len < csv_blob_size(r->nrows, 0) || (r->blob_off & 7u) != 0) {
                goto bad;
            }
            rows += r->nrows;
        }
        if (rows != t->nrows) {
            goto bad;
        }
    }
    /* the runs files: mapped, or the blobs after the index */
    for (i = 0; i < st->nfiles; i++) {
        const struct csv_state_fileref *f =
            (const struct csv_state_fileref *)(const void *)((const char *)base + 32 + 64 * i);
        struct csv_state_file *sf = &st->files[i];
        struct ids_error err = IDS_ERROR_INIT;
        const void *m = NULL;
        size_t mlen = 0;

        if (memchr(f->name, '\0', sizeof(f->name)) == NULL) {
            goto bad;
        }
        if (f->name[0] == '\0') {
            if (dir != NULL || (size_t)(end - p) != f->size) {
                goto bad;
            }
            sf->data = (const unsigned char *)p;
            sf->size = (size_t)f->size;
            continue;
        }
        if (dir == NULL || strchr(f->name, '/') != NULL) {
            goto bad;
        }
        sf->name = xstrdup(f->name);
        if (file_state_map(dir, f->name, &m, &mlen, &err) != IDS_OK) {
            *why = "a runs file of its row tables is missing";
            goto fail;
        }
        sf->data = m;
        sf->size = mlen;
        sf->mapped = m != NULL;
        if (mlen != f->size) {
            *why = "a runs file of its row tables is not the one written";
            goto fail;
        }
    }
    if (dir != NULL && p != end) {
        goto bad;
    }
    for (ti = 0; ti < ntypes; ti++) {
        for (i = 0; i < st->t[ti].nruns; i++) {
            const struct csv_run *r = &st->t[ti].runs[i];

            if (r->blob_off > st->files[r->blob_no].size ||
                r->blob_len > st->files[r->blob_no].size - r->blob_off) {
                goto bad;
            }
        }
    }
    return true;
bad:
    *why = "left an unreadable watermark";
fail:
    csv_state_close(st);
    return false;
}

bool csv_state_blob(const struct csv_state *st, const struct csv_run *r, struct csv_blob *b)
{
    const unsigned char *p = st->files[r->blob_no].data + r->blob_off;
    size_t k = r->nrows;
    size_t i;

    if (hash64_bulk(p, r->blob_len, BLOB_SEED) != r->blob_hash) {
        return false;
    }
    b->k = k;
    b->hash = (const uint64_t *)(const void *)p;
    b->kh = b->hash + k;
    b->koff = (const uint32_t *)(const void *)(p + 16 * k);
    b->keys = (const char *)p + 16 * k + pad8(4 * (k + 1));
    if (b->koff[0] != 0) {
        return false;
    }
    for (i = 0; i < k; i++) {
        if (b->koff[i] > b->koff[i + 1]) {
            return false;
        }
    }
    return csv_blob_size(k, b->koff[k]) <= r->blob_len;
}

bool csv_state_map_index(const char *dir, const char *name, uint64_t hash, uint64_t len,
                         const void **map, size_t *map_len, const char **why)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct file_hasher h;
    uint64_t v;

    *map = NULL;
    *map_len = 0;
    if (file_state_map(dir, name, map, map_len, &err) != IDS_OK) {
        *why = "its row table file is missing";
        return false;
    }
    file_hasher_init(&h);
    file_hasher_feed(&h, *map, *map_len);
    v = file_hasher_value(&h);
    file_hasher_release(&h);
    if (*map_len != len || v != hash) {
        *why = "its row table file is not the one written";
        file_state_unmap(*map, *map_len);
        *map = NULL;
        *map_len = 0;
        return false;
    }
    return true;
}

/* ---- writing ------------------------------------------------------------- */

void csv_writer_init(struct csv_state_writer *w, const char *dir, const char *prefix,
                     const struct csv_state *old, const uint64_t *kept)
{
    size_t i;
    size_t used = 0;

    memset(w, 0, sizeof(*w));
    w->dir = dir;
    w->prefix = prefix;
    w->old = old;
    w->fd = -1;
    strbuf_init(&w->blobs, 0);
    strbuf_init(&w->index, 0);
    strbuf_init(&w->b_keys, 0);
    strbuf_init(&w->b_blob, 0);
    if (old == NULL) {
        return;
    }
    w->old_no = xcalloc(old->nfiles + 1, sizeof(*w->old_no));
    w->rewrite = xcalloc(old->nfiles + 1, sizeof(*w->rewrite));
    /* Old runs files stay where they are while at least half of each is
     * still used. Past FILES_MAX with the new one, the runs of the files
     * used the least are copied into the new one until half of that many
     * are left (the large files stay: a delta copies what a few deltas
     * wrote, not the base). Inline: everything is copied. */
    for (i = 0; i < old->nfiles; i++) {
        if (kept == NULL || kept[i] == 0) {
            continue;
        }
        w->rewrite[i] =
            dir == NULL || old->files[i].name == NULL || 2 * kept[i] < old->files[i].size;
        used += !w->rewrite[i]; /* files that stay */
    }
    if (used + 1 <= FILES_MAX) {
        return;
    }
    while (used + 1 > FILES_MAX / 2) {
        size_t least = SIZE_MAX;

        for (i = 0; i < old->nfiles; i++) {
            if (kept[i] > 0 && !w->rewrite[i] && (least == SIZE_MAX || kept[i] < kept[least])) {
                least = i;
            }
        }
        w->rewrite[least] = true;
        used--;
    }
}

void csv_writer_release(struct csv_state_writer *w)
{
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
    }
    strbuf_release(&w->blobs);
    strbuf_release(&w->index);
    strbuf_release(&w->b_keys);
    strbuf_release(&w->b_blob);
    free(w->blobs_name);
    free(w->old_no);
    free(w->rewrite);
    free(w->files);
    memset(w, 0, sizeof(*w));
    w->fd = -1;
}

/* The new runs file's number in the new index (created on first use). */
static uint32_t new_file_no(struct csv_state_writer *w)
{
    if (!w->have_new) {
        w->have_new = true;
        w->new_no = (uint32_t)w->nfiles;
        ALLOC_GROW(w->files, w->nfiles + 1, w->afiles);
        memset(&w->files[w->nfiles], 0, sizeof(w->files[w->nfiles]));
        w->nfiles++;
    }
    return w->new_no;
}

/* Write what the new runs file holds so far (file mode; the file is
 * created at the first write). */
static void blobs_flush(struct csv_state_writer *w)
{
    if (w->dir == NULL || w->blobs.len == 0 || w->ret != IDS_OK) {
        return;
    }
    if (w->fd < 0) {
        struct strbuf name = STRBUF_INIT;

        w->ret = file_state_create(w->dir, w->prefix, ".runs", &name, &w->fd, &w->err);
        if (w->ret != IDS_OK) {
            strbuf_release(&name);
            return;
        }
        w->blobs_name = strbuf_detach(&name, NULL);
    }
    w->ret = fd_write_all(w->fd, w->blobs.buf, w->blobs.len, w->blobs_name, &w->err);
    w->written += w->blobs.len;
    strbuf_reset(&w->blobs);
}

/* Append a blob's bytes to the new runs file: its offset there. */
static uint64_t blobs_put(struct csv_state_writer *w, const void *p, size_t len)
{
    uint64_t off = w->written + w->blobs.len;

    strbuf_add(&w->blobs, p, len);
    if (w->blobs.len >= FLUSH_AT) {
        blobs_flush(w);
    }
    return off;
}

void csv_writer_blob_row(struct csv_state_writer *w, uint64_t hash, uint64_t kh, const char *key,
                         uint32_t klen)
{
    if (w->b_k == CSV_RUN_MAX) {
        /* not reached: no run is built longer */
        w->ret = ids_error_set(&w->err, IDS_EINVAL, "a run of more than %u rows", CSV_RUN_MAX);
        return;
    }
    if (w->b_k == 0) {
        strbuf_reset(&w->b_keys);
    }
    w->b_hash[w->b_k] = hash;
    w->b_kh[w->b_k] = kh;
    w->b_koff[w->b_k] = (uint32_t)w->b_keys.len;
    strbuf_add(&w->b_keys, key, klen);
    w->b_k++;
}

void csv_writer_blob_end(struct csv_state_writer *w, struct csv_run *r)
{
    static const char zero[8];
    struct strbuf *b = &w->b_blob;
    size_t k = w->b_k;

    w->b_koff[k] = (uint32_t)w->b_keys.len;
    strbuf_reset(b);
    strbuf_add(b, w->b_hash, 8 * k);
    strbuf_add(b, w->b_kh, 8 * k);
    strbuf_add(b, w->b_koff, 4 * (k + 1));
    strbuf_add(b, zero, pad8(4 * (k + 1)) - 4 * (k + 1));
    strbuf_addbuf(b, &w->b_keys);
    strbuf_add(b, zero, pad8(w->b_keys.len) - w->b_keys.len);
    r->nrows = (uint32_t)k;
    r->blob_len = (uint32_t)b->len;
    r->blob_hash = hash64_bulk(b->buf, b->len, BLOB_SEED);
    r->blob_no = new_file_no(w);
    r->blob_off = blobs_put(w, b->buf, b->len);
    w->b_k = 0;
}

void csv_writer_keep(struct csv_state_writer *w, struct csv_run *r)
{
    uint32_t i = r->blob_no;

    if (w->rewrite[i]) {
        r->blob_off = blobs_put(w, w->old->files[i].data + r->blob_off, r->blob_len);
        r->blob_no = new_file_no(w);
        return;
    }
    if (w->old_no[i] == 0) {
        ALLOC_GROW(w->files, w->nfiles + 1, w->afiles);
        memset(&w->files[w->nfiles], 0, sizeof(w->files[w->nfiles]));
        memcpy(w->files[w->nfiles].name, w->old->files[i].name, strlen(w->old->files[i].name) + 1);
        w->files[w->nfiles].size = w->old->files[i].size;
        w->old_no[i] = (uint32_t)++w->nfiles;
    }
    r->blob_no = w->old_no[i] - 1;
}

void csv_writer_table(struct csv_state_writer *w, uint64_t cfg, uint64_t flags, size_t nrows,
                      const struct csv_run *runs, size_t nruns)
{
    uint64_t v[4] = {cfg, flags, nrows, nruns};

    strbuf_add(&w->index, v, sizeof(v));
    strbuf_add(&w->index, runs, nruns * sizeof(*runs));
    w->ntables++;
}

/* The fixed part and the file table, before the tables. */
static void index_head_put(const struct csv_state_writer *w, struct strbuf *out)
{
    uint32_t hdr[2] = {STATE_VERSION, STATE_ENDIAN};
    uint64_t n[2] = {w->ntables, w->nfiles};

    strbuf_add(out, STATE_MAGIC, 8);
    strbuf_add(out, hdr, sizeof(hdr));
    strbuf_add(out, n, sizeof(n));
    strbuf_add(out, w->files, w->nfiles * sizeof(*w->files));
}

/* Remove the files of the connector that neither index names (nor the
 * newest other index, when there is no old one: the store may still name
 * it if this read is not committed). */
static void prune(struct csv_state_writer *w, const char *index, const char *old_index)
{
    struct strvec names = STRVEC_INIT;
    struct strvec keep = STRVEC_INIT;
    const char *newest = NULL;
    size_t i;

    file_state_list(w->dir, w->prefix, &names);
    strvec_push(&keep, index);
    for (i = 0; i < w->nfiles; i++) {
        if (w->files[i].name[0] != '\0') {
            strvec_push(&keep, w->files[i].name);
        }
    }
    if (old_index != NULL) {
        strvec_push(&keep, old_index);
    }
    for (i = 0; w->old != NULL && i < w->old->nfiles; i++) {
        if (w->old->files[i].name != NULL) {
            strvec_push(&keep, w->old->files[i].name);
        }
    }
    if (old_index == NULL) {
        for (i = 0; i < names.nr; i++) {
            size_t len = strlen(names.v[i]);

            if (len > 6 && strcmp(names.v[i] + len - 6, ".state") == 0 &&
                strcmp(names.v[i], index) != 0 &&
                (newest == NULL || strcmp(names.v[i], newest) > 0)) {
                newest = names.v[i];
            }
        }
        if (newest != NULL) {
            const void *m = NULL;
            size_t mlen = 0;
            struct ids_error err = IDS_ERROR_INIT;
            uint64_t nt, nf;

            strvec_push(&keep, newest);
            if (file_state_map(w->dir, newest, &m, &mlen, &err) == IDS_OK && m != NULL &&
                index_head(m, mlen, &nt, &nf)) {
                for (i = 0; i < nf; i++) {
                    const char *n = (const char *)m + 32 + 64 * i;

                    if (memchr(n, '\0', 56) != NULL && n[0] != '\0') {
                        strvec_push(&keep, n);
                    }
                }
            }
            file_state_unmap(m, mlen);
        }
    }
    for (i = 0; i < names.nr; i++) {
        if (strvec_find(&keep, names.v[i], false) < 0) {
            file_state_remove(w->dir, names.v[i]);
        }
    }
    strvec_clear(&names);
    strvec_clear(&keep);
}

enum ids_err csv_writer_end(struct csv_state_writer *w, const char *old_index, struct strbuf *wm,
                            struct ids_error *err)
{
    struct strbuf out = STRBUF_INIT;
    struct strbuf name = STRBUF_INIT;
    struct file_hasher h;
    enum ids_err ret = IDS_OK;
    int fd = -1;

    if (w->have_new) {
        w->files[w->new_no].size = w->written + w->blobs.len;
    }
    if (w->dir == NULL && w->ret != IDS_OK) {
        ret = ids_error_set(err, w->ret, "%s", w->err.msg);
        goto done;
    }
    if (w->dir == NULL) {
        /* inline: the index, then the blobs */
        index_head_put(w, &out);
        strbuf_addbuf(&out, &w->index);
        strbuf_addbuf(&out, &w->blobs);
        strbuf_addstr(wm, "\n=");
        base64_encode(wm, out.buf, out.len);
        goto done;
    }
    blobs_flush(w);
    if (w->ret == IDS_OK && w->fd >= 0 && close(w->fd) != 0) {
        w->ret = ids_error_set(&w->err, IDS_EIO, "%s: %s", w->blobs_name, strerror(errno));
    }
    w->fd = -1;
    if (w->ret != IDS_OK) {
        ret = ids_error_set(err, w->ret, "%s", w->err.msg);
        goto fail;
    }
    if (w->have_new) {
        size_t nlen = w->blobs_name != NULL ? strlen(w->blobs_name) : SIZE_MAX;

        if (nlen >= sizeof(w->files[0].name)) {
            ret = ids_error_set(err, IDS_EIO, "state file name too long");
            goto fail;
        }
        memcpy(w->files[w->new_no].name, w->blobs_name, nlen + 1);
    }
    index_head_put(w, &out);
    strbuf_addbuf(&out, &w->index);
    ret = file_state_create(w->dir, w->prefix, ".state", &name, &fd, err);
    if (ret != IDS_OK) {
        goto fail;
    }
    ret = fd_write_all(fd, out.buf, out.len, name.buf, err);
    if (close(fd) != 0 && ret == IDS_OK) {
        ret = ids_error_set(err, IDS_EIO, "%s: %s", name.buf, strerror(errno));
    }
    if (ret != IDS_OK) {
        file_state_remove(w->dir, name.buf);
        goto fail;
    }
    file_hasher_init(&h);
    file_hasher_feed(&h, out.buf, out.len);
    strbuf_addf(wm, "\n@%s %016" PRIx64 " %zu", name.buf, file_hasher_value(&h), out.len);
    file_hasher_release(&h);
    prune(w, name.buf, old_index);
    goto done;
fail:
    if (w->blobs_name != NULL) {
        file_state_remove(w->dir, w->blobs_name);
    }
done:
    strbuf_release(&out);
    strbuf_release(&name);
    return ret;
}
