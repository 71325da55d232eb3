/* fileio.c - private helpers of the file connectors; see fileio.h. */
#include "connector/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "util/codec.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/strvec.h"
#include "util/banned.h"

#define READ_BUF_SIZE 65536u

void file_hasher_init(struct file_hasher *fh)
{
    fh->h = 0;
    fh->prev = 0;
    fh->first = 0;
    fh->size = 0;
    fh->blen = 0;
    fh->block = xmalloc(FILE_HASH_BLOCK);
}

void file_hasher_release(struct file_hasher *fh)
{
    free(fh->block);
    fh->block = NULL;
}

void file_hasher_feed(struct file_hasher *fh, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        if (fh->blen == 0 && len >= FILE_HASH_BLOCK) {
            /* a whole block in place: hashed where it is, not copied */
            fh->prev = fh->h;
            fh->h = hash64_bulk(p, FILE_HASH_BLOCK, fh->h);
            fh->size += FILE_HASH_BLOCK;
            if (fh->size == FILE_HASH_BLOCK) {
                fh->first = fh->h;
            }
            p += FILE_HASH_BLOCK;
            len -= FILE_HASH_BLOCK;
            continue;
        }
        size_t n = FILE_HASH_BLOCK - fh->blen;

        if (n > len) {
            n = len;
        }
        memcpy(fh->block + fh->blen, p, n);
        fh->blen += n;
        fh->size += n;
        p += n;
        len -= n;
        if (fh->blen == FILE_HASH_BLOCK) {
            fh->prev = fh->h;
            fh->h = hash64_bulk(fh->block, fh->blen, fh->h);
            if (fh->size == FILE_HASH_BLOCK) {
                fh->first = fh->h;
            }
            fh->blen = 0;
        }
    }
}

uint64_t file_hasher_value(const struct file_hasher *fh)
{
    if (fh->blen == 0) {
        return fh->h;
    }
    return hash64_bulk(fh->block, fh->blen, fh->h);
}

enum ids_err file_reader_open(struct file_reader *r, const char *path, struct ids_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        int e = errno;

        memset(r, 0, sizeof(*r));
        r->fd = -1;
        return ids_error_set(err, e == ENOENT ? IDS_ENOTFOUND : IDS_EIO, "%s: %s", path,
                             strerror(e));
    }
    file_reader_open_fd(r, fd, path);
    return IDS_OK;
}

void file_reader_open_fd(struct file_reader *r, int fd, const char *path)
{
    memset(r, 0, sizeof(*r));
    r->fd = fd;
    r->path = xstrdup(path);
    r->limit = UINT64_MAX;
    r->buf = xmalloc(READ_BUF_SIZE);
    r->keep = UINT64_MAX;
    file_hasher_init(&r->hasher);
}

#define TRIM_AT (2u << 20)

/* The content hash of a mapped file, a slice at a time, each slice's pages
 * given back after it (the parse maps them again as it goes): the whole
 * file is never resident at once. */
static void hash_mapped(struct file_reader *r)
{
    size_t off = 0;

    while (off < r->len) {
        size_t n = r->len - off < TRIM_AT ? r->len - off : TRIM_AT;

        file_hasher_feed(&r->hasher, r->buf + off, n);
        if (n == TRIM_AT) {
            madvise(r->buf + off, n, MADV_DONTNEED);
        }
        off += n;
    }
}

bool file_reader_map(struct file_reader *r)
{
    struct stat st;
    void *m;

    if (r->fd < 0 || r->mapped || r->off != 0 || r->len != 0 || fstat(r->fd, &st) != 0 ||
        !S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t)st.st_size > SIZE_MAX ||
        r->limit != UINT64_MAX) {
        return false;
    }
    m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, r->fd, 0);
    if (m == MAP_FAILED) {
        return false;
    }
    fd_bus_install();
    free(r->buf);
    r->buf = m;
    r->len = (size_t)st.st_size;
    r->pos = 0;
    r->mapped = true;
    if (r->count_only) {
        r->hasher.size = (uint64_t)st.st_size;
    } else {
        hash_mapped(r);
    }
    return true;
}

void file_reader_trim(struct file_reader *r)
{
    static size_t page;
    size_t upto = r->pos;

    if (!r->mapped) {
        return;
    }
    if (page == 0) {
        page = (size_t)sysconf(_SC_PAGESIZE);
    }
    if (r->keep < r->off + upto) {
        upto = (size_t)(r->keep - r->off);
    }
    upto -= upto % page;
    if (upto < r->released + TRIM_AT) {
        return;
    }
    madvise(r->buf + r->released, upto - r->released, MADV_DONTNEED);
    r->released = upto;
}

void file_reader_close(struct file_reader *r)
{
    if (r->fd >= 0) {
        close(r->fd);
    }
    r->fd = -1;
    free(r->path);
    r->path = NULL;
    if (r->mapped) {
        munmap(r->buf, r->len);
    } else {
        free(r->buf);
    }
    r->buf = NULL;
    r->mapped = false;
    r->pos = 0;
    r->len = 0;
    file_hasher_release(&r->hasher);
}

bool file_reader_fill(struct file_reader *r)
{
    ssize_t n;
    size_t want = READ_BUF_SIZE;

    if (r->fd < 0 || r->err != 0 || r->mapped) {
        return false; /* a mapping holds the whole file */
    }
    r->off += r->len;
    r->pos = 0;
    r->len = 0;
    if (r->off >= r->limit) {
        return false;
    }
    if (r->limit - r->off < want) {
        want = (size_t)(r->limit - r->off);
    }
    do {
        n = pread(r->fd, r->buf, want, (off_t)r->off);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        r->err = errno;
        return false;
    }
    if (n == 0) {
        return false;
    }
    r->len = (size_t)n;
    /* hash only bytes not hashed before, in order */
    if (r->off + r->len > r->hasher.size && r->off <= r->hasher.size) {
        size_t skip = (size_t)(r->hasher.size - r->off);

        if (r->count_only) {
            r->hasher.size = r->off + r->len;
        } else {
            file_hasher_feed(&r->hasher, r->buf + skip, r->len - skip);
        }
    }
    return true;
}

bool file_reader_need(const struct file_reader *r, size_t n)
{
    return r->len - r->pos >= n;
}

void file_reader_seek(struct file_reader *r, uint64_t off)
{
    if (r->mapped) {
        r->pos = off < r->len ? (size_t)off : r->len;
        return;
    }
    if (off >= r->off && off <= r->off + r->len) {
        r->pos = (size_t)(off - r->off);
        return;
    }
    r->off = off;
    r->pos = 0;
    r->len = 0;
}

enum ids_err file_reader_advance(struct file_reader *r, uint64_t off, struct ids_error *err)
{
    while (file_reader_tell(r) < off) {
        uint64_t left = off - file_reader_tell(r);

        if (r->pos == r->len && !file_reader_fill(r)) {
            break;
        }
        r->pos += left < r->len - r->pos ? (size_t)left : r->len - r->pos;
    }
    if (r->err != 0) {
        return ids_error_set(err, IDS_EIO, "%s: %s", r->path, strerror(r->err));
    }
    return IDS_OK;
}

enum ids_err file_reader_drain(struct file_reader *r, struct ids_error *err)
{
    r->pos = r->len;
    while (file_reader_fill(r)) {
        r->pos = r->len;
    }
    if (r->err != 0) {
        return ids_error_set(err, IDS_EIO, "%s: %s", r->path, strerror(r->err));
    }
    return IDS_OK;
}

void file_reader_watermark(const struct file_reader *r, struct strbuf *out)
{
    if (r->count_only) {
        strbuf_addf(out, "%" PRIu64 ":-", r->hasher.size);
        return;
    }
    strbuf_addf(out, "%" PRIu64 ":%016" PRIx64, r->hasher.size, file_hasher_value(&r->hasher));
}

enum ids_err file_watermark(const char *path, uint64_t limit, struct strbuf *out,
                            uint64_t *size_out, struct ids_error *err)
{
    enum ids_err ret;
    struct file_reader r;
    struct file_hasher fh;
    char *buf = NULL;
    uint64_t done_bytes = 0;

    file_hasher_init(&fh);
    *size_out = 0;
    ret = file_reader_open(&r, path, err);
    if (ret == IDS_ENOTFOUND) {
        strbuf_addstr(out, "-");
        ret = IDS_OK;
        goto done_closed;
    }
    if (ret != IDS_OK) {
        goto done_closed;
    }
    buf = xmalloc(READ_BUF_SIZE);
    while (done_bytes < limit) {
        size_t want = READ_BUF_SIZE;
        ssize_t n;

        if (limit - done_bytes < want) {
            want = (size_t)(limit - done_bytes);
        }
        do {
            n = pread(r.fd, buf, want, (off_t)done_bytes);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            ret = ids_error_set(err, IDS_EIO, "%s: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0) {
            break;
        }
        file_hasher_feed(&fh, buf, (size_t)n);
        done_bytes += (uint64_t)n;
    }
    *size_out = fh.size;
    strbuf_addf(out, "%" PRIu64 ":%016" PRIx64, fh.size, file_hasher_value(&fh));
done:
    file_reader_close(&r);
done_closed:
    free(buf);
    file_hasher_release(&fh);
    return ret;
}

bool file_watermark_parse(const char *s, size_t len, uint64_t *size, uint64_t *hash)
{
    char tmp[64];
    char *end;
    const char *colon;

    if (len == 0 || len >= sizeof(tmp)) {
        return false;
    }
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    colon = strchr(tmp, ':');
    if (colon == NULL || colon == tmp || tmp[0] == '-' || strlen(colon + 1) != 16) {
        return false;
    }
    errno = 0;
    *size = strtoull(tmp, &end, 10);
    if (errno != 0 || end != colon) {
        return false;
    }
    *hash = strtoull(colon + 1, &end, 16);
    if (errno != 0 || *end != '\0' || colon[1] == '-' || colon[1] == '+') {
        return false;
    }
    return true;
}

void file_reader_mark(const struct file_reader *r, struct file_mark *m)
{
    const struct file_hasher *fh = &r->hasher;
    struct stat st;

    memset(m, 0, sizeof(*m));
    m->size = fh->size;
    m->hash = file_hasher_value(fh);
    if (fh->blen > 0 || fh->size == 0) {
        m->rb = fh->size - fh->blen;
        m->rstate = fh->h;
    } else {
        m->rb = fh->size - FILE_HASH_BLOCK;
        m->rstate = fh->prev;
    }
    m->first = fh->first;
    if (r->fd >= 0 && fstat(r->fd, &st) == 0) {
        m->dev = (uint64_t)st.st_dev;
        m->ino = (uint64_t)st.st_ino;
    }
}

void file_mark_format(const struct file_mark *m, struct strbuf *out)
{
    strbuf_addf(out,
                "%" PRIu64 ":%016" PRIx64 ":%" PRIu64 ":%016" PRIx64 ":%016" PRIx64 ":%" PRIu64
                ":%" PRIu64,
                m->size, m->hash, m->rb, m->rstate, m->first, m->dev, m->ino);
}

bool file_mark_parse(const char *s, size_t len, struct file_mark *m)
{
    uint64_t *v[7] = {&m->size, &m->hash, &m->rb, &m->rstate, &m->first, &m->dev, &m->ino};
    static const int base[7] = {10, 16, 10, 16, 16, 10, 10};
    const char *end = s + len;
    size_t i;

    memset(m, 0, sizeof(*m));
    for (i = 0; i < 7; i++) {
        const char *q = s;
        uint64_t x = 0;

        while (q < end && *q != ':') {
            unsigned d;

            if (*q >= '0' && *q <= '9') {
                d = (unsigned)(*q - '0');
            } else if (base[i] == 16 && *q >= 'a' && *q <= 'f') {
                d = (unsigned)(*q - 'a' + 10);
            } else {
                return false;
            }
            if (x > (UINT64_MAX - d) / (uint64_t)base[i]) {
                return false;
            }
            x = x * (uint64_t)base[i] + d;
            q++;
        }
        if (q == s || (base[i] == 16 && q - s != 16)) {
            return false;
        }
        *v[i] = x;
        if (i < 6) {
            if (q == end) {
                return false;
            }
            q++;
        } else if (q != end) {
            return false;
        }
        s = q;
    }
    return m->rb <= m->size && m->size - m->rb <= FILE_HASH_BLOCK && m->rb % FILE_HASH_BLOCK == 0 &&
           (m->size > m->rb || m->size == 0);
}

enum ids_err file_reader_size(const struct file_reader *r, uint64_t *size, struct ids_error *err)
{
    struct stat st;

    if (fstat(r->fd, &st) != 0) {
        return ids_error_set(err, IDS_EIO, "%s: %s", r->path, strerror(errno));
    }
    *size = (uint64_t)st.st_size;
    return IDS_OK;
}

enum ids_err file_reader_resume(struct file_reader *r, const struct file_mark *m, bool *same,
                                const char **why, struct ids_error *err)
{
    enum ids_err ret;
    struct stat st;
    char *block = NULL;

    *same = false;
    *why = NULL;
    if (fstat(r->fd, &st) != 0) {
        return ids_error_set(err, IDS_EIO, "%s: %s", r->path, strerror(errno));
    }
    if ((uint64_t)st.st_dev != m->dev || (uint64_t)st.st_ino != m->ino) {
        *why = "replaced by another file";
        return IDS_OK;
    }
    if ((uint64_t)st.st_size < m->size) {
        *why = "shorter than at the last read";
        return IDS_OK;
    }
    block = xmalloc(FILE_HASH_BLOCK);
    if (m->rb >= FILE_HASH_BLOCK) {
        ret = fd_pread_all(r->fd, block, FILE_HASH_BLOCK, 0, r->path, err);
        if (ret != IDS_OK) {
            goto done;
        }
        if (hash64_bulk(block, FILE_HASH_BLOCK, 0) != m->first) {
            *why = "its start differs";
            ret = IDS_OK;
            goto done;
        }
    }
    ret = fd_pread_all(r->fd, block, (size_t)(m->size - m->rb), m->rb, r->path, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if ((m->size > 0 || m->hash != 0) &&
        hash64_bulk(block, (size_t)(m->size - m->rb), m->rstate) != m->hash) {
        *why = "the end of what was read before differs";
        goto done;
    }
    r->off = m->rb;
    r->pos = 0;
    r->len = 0;
    r->hasher.h = m->rstate;
    r->hasher.prev = 0;
    r->hasher.first = m->first;
    r->hasher.size = m->rb;
    r->hasher.blen = 0;
    *same = true;
done:
    free(block);
    return ret;
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL) {
        return xstrdup(".");
    }
    if (slash == path) {
        return xstrdup("/");
    }
    return xmemdup(path, (size_t)(slash - path));
}

enum ids_err file_atomic_begin(struct file_atomic *fa, const char *path, struct ids_error *err)
{
    struct strbuf tmp = STRBUF_INIT;
    char *dir = dir_of(path);
    const char *base = strrchr(path, '/');
    enum ids_err ret = IDS_OK;

    base = base ? base + 1 : path;
    memset(fa, 0, sizeof(*fa));
    fa->fd = -1;
    strbuf_addf(&tmp, "%s/.%s.idsync-XXXXXX", dir, base);
    fa->fd = mkostemp(tmp.buf, O_CLOEXEC);
    if (fa->fd < 0) {
        ret = ids_error_set(err, IDS_EIO, "%s: cannot create a temporary file: %s", dir,
                            strerror(errno));
        strbuf_release(&tmp);
        goto done;
    }
    fa->path = xstrdup(path);
    fa->tmp = strbuf_detach(&tmp, NULL);
done:
    free(dir);
    return ret;
}

enum ids_err file_atomic_write(struct file_atomic *fa, const void *data, size_t len,
                               struct ids_error *err)
{
    return fd_write_all(fa->fd, data, len, fa->tmp, err);
}

enum ids_err file_sync_dir(const char *path, struct ids_error *err)
{
    char *dir = dir_of(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    enum ids_err ret = IDS_OK;

    if (fd < 0) {
        ret = ids_error_set(err, IDS_EIO, "%s: %s", dir, strerror(errno));
        goto done;
    }
    if (fsync(fd) != 0 && errno != EINVAL) {
        ret = ids_error_set(err, IDS_EIO, "%s: fsync: %s", dir, strerror(errno));
    }
    close(fd);
done:
    free(dir);
    return ret;
}

enum ids_err file_atomic_commit(struct file_atomic *fa, struct ids_error *err)
{
    struct stat st;

    if (fsync(fa->fd) != 0) {
        return ids_error_set(err, IDS_EIO, "%s: fsync: %s", fa->tmp, strerror(errno));
    }
    /* keep the permissions of the file being replaced */
    if (stat(fa->path, &st) == 0) {
        /* failure only leaves the temp file's 0600 mode: not worth failing for */
        (void)fchmod(fa->fd, st.st_mode & 07777);
    } else {
        mode_t mask = umask(0);

        umask(mask);
        (void)fchmod(fa->fd, 0666 & ~mask);
    }
    if (fstat(fa->fd, &st) == 0) {
        file_stamp_of(&st, &fa->stamp);
    }
    close(fa->fd);
    fa->fd = -1;
    if (rename(fa->tmp, fa->path) != 0) {
        return ids_error_set(err, IDS_EIO, "rename %s -> %s: %s", fa->tmp, fa->path,
                             strerror(errno));
    }
    free(fa->tmp);
    fa->tmp = NULL;
    return file_sync_dir(fa->path, err);
}

void file_atomic_release(struct file_atomic *fa)
{
    if (fa->fd >= 0) {
        close(fa->fd);
    }
    if (fa->tmp != NULL) {
        unlink(fa->tmp);
    }
    free(fa->tmp);
    free(fa->path);
    memset(fa, 0, sizeof(*fa));
    fa->fd = -1;
}

enum ids_err file_anon_temp(const char *path, int *fd_out, struct ids_error *err)
{
    struct file_atomic fa;
    enum ids_err ret = file_atomic_begin(&fa, path, err);

    *fd_out = -1;
    if (ret != IDS_OK) {
        return ret;
    }
    unlink(fa.tmp);
    *fd_out = fa.fd;
    fa.fd = -1;
    file_atomic_release(&fa);
    return IDS_OK;
}

/* ---- u64map ---------------------------------------------------------- */

/* The first slot of key in a table of cap (a power of two) slots. */
static size_t slot_of(size_t cap, uint64_t key)
{
    uint64_t x = key * 0x9e3779b97f4a7c15ull;

    return (size_t)(x >> 17) & (cap - 1);
}

static size_t u64map_slot(const struct u64map *m, uint64_t key)
{
    return slot_of(m->cap, key);
}

static void u64map_put_new(struct u64map *m, uint64_t key, uint64_t val)
{
    size_t i = u64map_slot(m, key);

    while (m->used[i] && m->slots[i].key != key) {
        i = (i + 1) & (m->cap - 1);
    }
    if (!m->used[i]) {
        m->used[i] = 1;
        m->slots[i].key = key;
        m->nr++;
    }
    m->slots[i].val = val;
}

static void u64map_resize(struct u64map *m, size_t cap)
{
    struct u64map n = {0};
    size_t i;

    n.cap = cap;
    n.slots = xcalloc(n.cap, sizeof(*n.slots));
    n.used = xcalloc(n.cap, 1);
    for (i = 0; i < m->cap; i++) {
        if (m->used[i]) {
            u64map_put_new(&n, m->slots[i].key, m->slots[i].val);
        }
    }
    u64map_release(m);
    *m = n;
}

void u64map_release(struct u64map *m)
{
    free(m->slots);
    free(m->used);
    memset(m, 0, sizeof(*m));
}

void u64map_reserve(struct u64map *m, size_t n)
{
    size_t cap = m->cap ? m->cap : 64;

    while (n * 4 > cap * 3) {
        cap *= 2;
    }
    if (cap != m->cap) {
        u64map_resize(m, cap);
    }
}

void u64map_put(struct u64map *m, uint64_t key, uint64_t val)
{
    if ((m->nr + 1) * 4 > m->cap * 3) {
        u64map_resize(m, m->cap ? m->cap * 2 : 64);
    }
    u64map_put_new(m, key, val);
}

bool u64map_get(const struct u64map *m, uint64_t key, uint64_t *val)
{
    size_t i;

    if (m->cap == 0) {
        return false;
    }
    i = u64map_slot(m, key);
    while (m->used[i]) {
        if (m->slots[i].key == key) {
            if (val != NULL) {
                *val = m->slots[i].val;
            }
            return true;
        }
        i = (i + 1) & (m->cap - 1);
    }
    return false;
}

/* ---- u64set ---------------------------------------------------------- */

static void u64set_put_new(struct u64set *m, uint64_t key)
{
    size_t i = slot_of(m->cap, key);

    while (m->slots[i] != 0) {
        if (m->slots[i] == key) {
            return;
        }
        i = (i + 1) & (m->cap - 1);
    }
    m->slots[i] = key;
    m->nr++;
}

void u64set_release(struct u64set *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

void u64set_add(struct u64set *m, uint64_t key)
{
    if (key == 0) {
        m->has_zero = true;
        return;
    }
    if ((m->nr + 1) * 4 > m->cap * 3) {
        struct u64set n = {0};
        size_t i;

        n.cap = m->cap ? m->cap * 2 : 64;
        n.slots = xcalloc(n.cap, sizeof(*n.slots));
        n.has_zero = m->has_zero;
        for (i = 0; i < m->cap; i++) {
            if (m->slots[i] != 0) {
                u64set_put_new(&n, m->slots[i]);
            }
        }
        free(m->slots);
        *m = n;
    }
    u64set_put_new(m, key);
}

bool u64set_has(const struct u64set *m, uint64_t key)
{
    size_t i;

    if (key == 0) {
        return m->has_zero;
    }
    if (m->cap == 0) {
        return false;
    }
    i = slot_of(m->cap, key);
    while (m->slots[i] != 0) {
        if (m->slots[i] == key) {
            return true;
        }
        i = (i + 1) & (m->cap - 1);
    }
    return false;
}

/* ---- state files --------------------------------------------------- */

enum ids_err file_state_create(const char *dir, const char *prefix, const char *suffix,
                               struct strbuf *name_out, int *fd_out, struct ids_error *err)
{
    struct strbuf path = STRBUF_INIT;
    struct timespec ts;
    enum ids_err ret = IDS_OK;
    int fd = -1;
    int tries;

    *fd_out = -1;
    strbuf_reset(name_out);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        ret = ids_error_set(err, IDS_EIO, "%s: cannot create the state folder: %s", dir,
                            strerror(errno));
        goto done;
    }
    for (tries = 0; tries < 100 && fd < 0; tries++) {
        clock_gettime(CLOCK_REALTIME, &ts);
        strbuf_reset(name_out);
        strbuf_addf(name_out, "%s-%016" PRIx64 "%02x%s", prefix,
                    (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec, tries, suffix);
        strbuf_reset(&path);
        strbuf_addf(&path, "%s/%s", dir, name_out->buf);
        fd = open(path.buf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) {
            break;
        }
    }
    if (fd < 0) {
        ret = ids_error_set(err, IDS_EIO, "%s: %s", path.buf, strerror(errno));
        goto done;
    }
    *fd_out = fd;
done:
    strbuf_release(&path);
    return ret;
}

void file_state_remove(const char *dir, const char *name)
{
    struct strbuf path = STRBUF_INIT;

    strbuf_addf(&path, "%s/%s", dir, name);
    unlink(path.buf);
    strbuf_release(&path);
}

enum ids_err file_state_map(const char *dir, const char *name, const void **map, size_t *len,
                            struct ids_error *err)
{
    struct strbuf path = STRBUF_INIT;
    enum ids_err ret = IDS_OK;
    struct stat st;
    void *m;
    int fd;

    *map = NULL;
    *len = 0;
    strbuf_addf(&path, "%s/%s", dir, name);
    fd = open(path.buf, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ret = ids_error_set(err, errno == ENOENT ? IDS_ENOTFOUND : IDS_EIO, "%s: %s", path.buf,
                            strerror(errno));
        goto done;
    }
    if (fstat(fd, &st) != 0) {
        ret = ids_error_set(err, IDS_EIO, "%s: %s", path.buf, strerror(errno));
        goto done;
    }
    if (st.st_size == 0 || (uint64_t)st.st_size > SIZE_MAX) {
        goto done; /* nothing to map: an empty state */
    }
    m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
        ret = ids_error_set(err, IDS_EIO, "%s: %s", path.buf, strerror(errno));
        goto done;
    }
    *map = m;
    *len = (size_t)st.st_size;
done:
    if (fd >= 0) {
        close(fd);
    }
    strbuf_release(&path);
    return ret;
}

void file_state_unmap(const void *map, size_t len)
{
    if (map != NULL) {
        munmap((void *)(uintptr_t)map, len);
    }
}

void file_state_list(const char *dir, const char *prefix, struct strvec *out)
{
    size_t plen = strlen(prefix);
    DIR *d = opendir(dir);
    struct dirent *de;

    if (d == NULL) {
        return;
    }
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, prefix, plen) == 0 && de->d_name[plen] == '-') {
            strvec_push(out, de->d_name);
        }
    }
    closedir(d);
}

/* ---- options --------------------------------------------------------- */

const char *file_opt(const struct config_values *vals, const char *key)
{
    size_t i;

    if (vals == NULL) {
        return NULL;
    }
    for (i = 0; i < vals->nr; i++) {
        const struct config_value *v = &vals->v[i];

        if (v->opt != NULL && v->opt->key != NULL && strcmp(v->opt->key, key) == 0) {
            if (v->str != NULL) {
                return v->str;
            }
            if (v->list.nr > 0) {
                return v->list.v[0];
            }
            return v->opt->def;
        }
    }
    return NULL;
}

char *file_resolve_path(const struct connector_config *cfg, const char *path)
{
    struct strbuf sb = STRBUF_INIT;
    char *dir;

    if (path[0] == '/' || cfg->loc.file == NULL || strchr(cfg->loc.file, '/') == NULL) {
        return xstrdup(path);
    }
    dir = dir_of(cfg->loc.file);
    strbuf_addf(&sb, "%s/%s", dir, path);
    free(dir);
    return strbuf_detach(&sb, NULL);
}

uint64_t file_key_hash(const char *s, size_t len)
{
    return hash64(s, len, 0x6964737966696c65ull);
}

/* ---- files that another process may still be writing -------------------- */

void file_stamp_of(const struct stat *st, struct file_stamp *s)
{
    s->dev = (uint64_t)st->st_dev;
    s->ino = (uint64_t)st->st_ino;
    s->size = (uint64_t)st->st_size;
    s->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    s->set = true;
}

bool file_stamp_equal(const struct file_stamp *a, const struct file_stamp *b)
{
    return a->set && b->set && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns;
}

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#define SETTLE_POLL_NS 100000000 /* 0.1 s between looks at the file */

enum ids_err file_settle(const char *connector, const char *path, long settle_ms,
                         const struct file_stamp *own, const volatile sig_atomic_t *stop,
                         struct ids_error *err)
{
    int64_t settle_ns = (int64_t)settle_ms * 1000000;
    int64_t start = clock_ns(CLOCK_MONOTONIC);
    int64_t same_since = start; /* watched unchanged since */
    struct file_stamp prev = {0};
    int logged = 0; /* 1: the wait was logged, 2: and that it keeps changing */

    if (settle_ms <= 0) {
        return IDS_OK;
    }
    for (;;) {
        struct file_stamp cur;
        struct stat st;
        int64_t now = clock_ns(CLOCK_MONOTONIC);
        int64_t age;
        struct timespec ts = {0, SETTLE_POLL_NS};

        if (stat(path, &st) != 0) {
            if (errno == ENOENT) {
                return IDS_OK;
            }
            return ids_error_set(err, IDS_EIO, "%s: %s", path, strerror(errno));
        }
        file_stamp_of(&st, &cur);
        if (own != NULL && file_stamp_equal(&cur, own)) {
            return IDS_OK;
        }
        if (!prev.set) {
            prev = cur;
        } else if (!file_stamp_equal(&cur, &prev)) {
            prev = cur;
            same_since = now; /* changed while watched */
        }
        age = clock_ns(CLOCK_REALTIME) - cur.mtime_ns;
        if (age >= settle_ns || now - same_since >= settle_ns) {
            if (logged) {
                log_info("file-settled", "connector=%s file=%s waited=%.1fs", connector, path,
                         (double)(now - start) / 1e9);
            }
            return IDS_OK;
        }
        if (now - start >= 10 * settle_ns) {
            return ids_error_set(err, IDS_EIO,
                                 "%s: still being written: it kept changing for %.1f s (last "
                                 "change %.1f s ago, settle: %.1f s).",
                                 path, (double)(now - start) / 1e9,
                                 age > 0 ? (double)age / 1e9 : 0.0, (double)settle_ms / 1e3);
        }
        if (logged == 1 && same_since > start && now - start >= settle_ns) {
            /* it keeps changing: say so where a waiting administrator sees it */
            log_warn("file-changing",
                     "connector=%s file=%s waited=%.1fs changed=%.1fs-ago (still being written? "
                     "waiting up to %.1fs for it to stay unchanged %.1fs)",
                     connector, path, (double)(now - start) / 1e9, (double)(now - same_since) / 1e9,
                     10 * (double)settle_ms / 1e3, (double)settle_ms / 1e3);
            logged = 2;
        }
        if (!logged) {
            log_info("file-settle",
                     "connector=%s file=%s changed=%.1fs-ago settle=%.1fs (waiting until it stays "
                     "unchanged: it may still be being written)",
                     connector, path, age > 0 ? (double)age / 1e9 : 0.0, (double)settle_ms / 1e3);
            logged = 1;
        }
        if (stop != NULL && *stop) {
            return ids_error_set(err, IDS_EINTR, "%s: stopped while waiting for the file to settle",
                                 path);
        }
        nanosleep(&ts, NULL);
    }
}
