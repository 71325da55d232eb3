#include "util/strbuf.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/mem.h"
#include "util/banned.h"

char strbuf_empty[1];

void strbuf_init(struct strbuf *sb, size_t hint)
{
    sb->buf = strbuf_empty;
    sb->len = 0;
    sb->alloc = 0;
    sb->max = 0;
    if (hint) {
        strbuf_grow(sb, hint);
    }
}

void strbuf_release(struct strbuf *sb)
{
    size_t max = sb->max;

    if (sb->alloc) {
        free(sb->buf);
    }
    strbuf_init(sb, 0);
    sb->max = max;
}

char *strbuf_detach(struct strbuf *sb, size_t *len)
{
    char *res;

    strbuf_grow(sb, 0);
    res = sb->buf;
    if (len) {
        *len = sb->len;
    }
    sb->buf = strbuf_empty;
    sb->len = 0;
    sb->alloc = 0;
    return res;
}

void strbuf_reset(struct strbuf *sb)
{
    strbuf_setlen(sb, 0);
}

void strbuf_grow(struct strbuf *sb, size_t extra)
{
    size_t need = sb->len + extra + 1;

    if (need < sb->len) {
        xrealloc(NULL, (size_t)-1); /* overflow: fatal */
    }
    if (need <= sb->alloc) {
        return;
    }
    if (sb->alloc == 0) {
        sb->buf = NULL;
    }
    ALLOC_GROW(sb->buf, need, sb->alloc);
    if (sb->len == 0) {
        sb->buf[0] = '\0';
    }
}

void strbuf_setlen(struct strbuf *sb, size_t len)
{
    if (sb->alloc == 0) {
        return; /* shared empty string: len is 0 */
    }
    sb->len = len;
    sb->buf[len] = '\0';
}

void strbuf_add(struct strbuf *sb, const void *data, size_t len)
{
    if (len == 0) {
        return;
    }
    strbuf_grow(sb, len);
    memcpy(sb->buf + sb->len, data, len);
    sb->len += len;
    sb->buf[sb->len] = '\0';
}

void strbuf_addstr(struct strbuf *sb, const char *s)
{
    strbuf_add(sb, s, strlen(s));
}

void strbuf_addch(struct strbuf *sb, int c)
{
    strbuf_grow(sb, 1);
    sb->buf[sb->len++] = (char)c;
    sb->buf[sb->len] = '\0';
}

void strbuf_addbuf(struct strbuf *sb, const struct strbuf *other)
{
    strbuf_add(sb, other->buf, other->len);
}

void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap)
{
    va_list cp;
    int n;

    strbuf_grow(sb, 64);
    va_copy(cp, ap);
    n = vsnprintf(sb->buf + sb->len, sb->alloc - sb->len, fmt, cp);
    va_end(cp);
    if (n < 0) {
        return;
    }
    if ((size_t)n >= sb->alloc - sb->len) {
        strbuf_grow(sb, (size_t)n);
        n = vsnprintf(sb->buf + sb->len, sb->alloc - sb->len, fmt, ap);
    }
    sb->len += (size_t)n;
}

void strbuf_addf(struct strbuf *sb, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    strbuf_vaddf(sb, fmt, ap);
    va_end(ap);
}

void strbuf_add_json_str(struct strbuf *sb, const char *s, size_t len)
{
    size_t i;

    strbuf_addch(sb, '"');
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        switch (c) {
        case '"':
            strbuf_addstr(sb, "\\\"");
            break;
        case '\\':
            strbuf_addstr(sb, "\\\\");
            break;
        case '\n':
            strbuf_addstr(sb, "\\n");
            break;
        case '\r':
            strbuf_addstr(sb, "\\r");
            break;
        case '\t':
            strbuf_addstr(sb, "\\t");
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                strbuf_addf(sb, "\\u%04x", c);
            } else {
                strbuf_addch(sb, c);
            }
        }
    }
    strbuf_addch(sb, '"');
}

enum ids_err strbuf_add_checked(struct strbuf *sb, const void *data, size_t len)
{
    if (sb->max && (len > sb->max || sb->len > sb->max - len)) {
        return IDS_ETOOBIG;
    }
    strbuf_add(sb, data, len);
    return IDS_OK;
}

enum ids_err strbuf_addch_checked(struct strbuf *sb, int c)
{
    char ch = (char)c;

    return strbuf_add_checked(sb, &ch, 1);
}

void strbuf_trim(struct strbuf *sb)
{
    size_t start = 0;
    size_t end = sb->len;

    while (start < end && isspace((unsigned char)sb->buf[start])) {
        start++;
    }
    while (end > start && isspace((unsigned char)sb->buf[end - 1])) {
        end--;
    }
    if (start > 0 && end > start) {
        memmove(sb->buf, sb->buf + start, end - start);
    }
    strbuf_setlen(sb, end - start);
}

void strbuf_tolower(struct strbuf *sb)
{
    size_t i;

    for (i = 0; i < sb->len; i++) {
        sb->buf[i] = (char)tolower((unsigned char)sb->buf[i]);
    }
}

bool strbuf_equals(const struct strbuf *sb, const char *s)
{
    size_t n = strlen(s);

    return n == sb->len && memcmp(sb->buf, s, n) == 0;
}

enum ids_err strbuf_read_file(struct strbuf *sb, const char *path, struct ids_error *err)
{
    struct stat st;
    FILE *f;
    char chunk[65536];
    size_t n;
    enum ids_err ret = IDS_OK;

    f = fopen(path, "rb");
    if (f == NULL) {
        return ids_error_set(err, IDS_EIO, "%s: %s", path, strerror(errno));
    }
    /* room for a regular file at once (large state files: no regrowth) */
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
        (sb->max == 0 || (size_t)st.st_size <= sb->max)) {
        strbuf_grow(sb, (size_t)st.st_size);
    }
    for (;;) {
        n = fread(chunk, 1, sizeof(chunk), f);
        if (n == 0) {
            break;
        }
        if (strbuf_add_checked(sb, chunk, n) != IDS_OK) {
            ret = ids_error_set(err, IDS_ETOOBIG, "%s: larger than %zu bytes", path, sb->max);
            goto done;
        }
    }
    if (ferror(f)) {
        ret = ids_error_set(err, IDS_EIO, "%s: read error", path);
    }
done:
    fclose(f);
    return ret;
}
