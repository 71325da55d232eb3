/* ldifparse.c - streaming RFC 2849 reader and writer helpers; see ldifparse.h. */
#include "connector/ldifparse.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/codec.h"
#include "util/mem.h"
#include "util/banned.h"

#define LDIF_FOLD 76

void ldif_record_init(struct ldif_record *rec)
{
    memset(rec, 0, sizeof(*rec));
}

static void clear_avs(struct ldif_record *rec)
{
    size_t i;

    for (i = 0; i < rec->nav; i++) {
        free(rec->av[i].name);
        free(rec->av[i].value);
    }
    rec->nav = 0;
    rec->bytes = 0;
    free(rec->marker);
    rec->marker = NULL;
}

void ldif_record_release(struct ldif_record *rec)
{
    clear_avs(rec);
    free(rec->av);
    memset(rec, 0, sizeof(*rec));
}

static void set_bad(struct ldif_record *rec, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_bad(struct ldif_record *rec, const char *fmt, ...)
{
    va_list ap;

    if (rec->bad) {
        return; /* keep the first problem */
    }
    rec->bad = true;
    va_start(ap, fmt);
    vsnprintf(rec->errmsg, sizeof(rec->errmsg), fmt, ap);
    va_end(ap);
}

/* Read one physical line into sb (capped: *too_long set, rest dropped),
 * without its LF / CRLF. Returns false at end of file with nothing read. */
static bool read_physical(struct file_reader *r, struct strbuf *sb, bool *too_long)
{
    if (r->pos == r->len && !file_reader_fill(r)) {
        return false;
    }
    /* runs of the read buffer up to the newline, not byte by byte */
    for (;;) {
        const char *b = r->buf + r->pos;
        size_t avail = r->len - r->pos;
        const char *nl = memchr(b, '\n', avail);
        size_t n = nl != NULL ? (size_t)(nl - b) : avail;
        size_t room = sb->len < LDIF_LINE_MAX ? LDIF_LINE_MAX - sb->len : 0;

        if (n > room) {
            *too_long = true;
        }
        strbuf_add(sb, b, n < room ? n : room);
        r->pos += n;
        if (nl != NULL) {
            r->pos++; /* the newline */
            break;
        }
        if (!file_reader_fill(r)) {
            break; /* the last line has no newline */
        }
    }
    if (sb->len > 0 && sb->buf[sb->len - 1] == '\r') {
        strbuf_setlen(sb, sb->len - 1);
    }
    return true;
}

/* One logical line (continuations joined). *lineno is advanced by the
 * physical lines consumed. Returns false at end of file. */
static bool read_logical(struct file_reader *r, uint64_t *lineno, struct strbuf *sb, bool *too_long)
{
    strbuf_reset(sb);
    *too_long = false;
    if (!read_physical(r, sb, too_long)) {
        return false;
    }
    (*lineno)++;
    /* a blank line is never continued */
    while (sb->len > 0 && file_reader_peek(r) == ' ') {
        file_reader_getc(r);
        read_physical(r, sb, too_long);
        (*lineno)++;
    }
    return true;
}

static bool valid_name(const char *s, size_t len)
{
    size_t i;

    if (len == 0) {
        return false;
    }
    for (i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == ';' || c == '.' || c == '_')) {
            return false;
        }
    }
    return true;
}

static void parse_line(struct ldif_record *rec, const struct strbuf *l, uint64_t lineno)
{
    struct strbuf val = STRBUF_INIT;
    struct ldif_av *av;
    const char *colon;
    const char *v;
    size_t nlen;
    char kind = ':';

    if (strcmp(l->buf, "-") == 0) {
        ALLOC_GROW(rec->av, rec->nav + 1, rec->alloc);
        av = &rec->av[rec->nav++];
        av->name = xstrdup("-");
        av->value = xstrdup("");
        av->vlen = 0;
        av->kind = '-';
        av->line = lineno;
        return;
    }
    colon = memchr(l->buf, ':', l->len);
    if (colon == NULL) {
        set_bad(rec, "line %" PRIu64 ": no colon (expected \"attribute: value\")", lineno);
        return;
    }
    nlen = (size_t)(colon - l->buf);
    if (!valid_name(l->buf, nlen)) {
        set_bad(rec, "line %" PRIu64 ": invalid attribute description", lineno);
        return;
    }
    v = colon + 1;
    if (*v == ':') {
        kind = 'b';
        v++;
    } else if (*v == '<') {
        kind = '<';
        v++;
    }
    while (*v == ' ') {
        v++;
    }
    if (kind == 'b') {
        if (base64_decode(&val, v, l->len - (size_t)(v - l->buf)) != IDS_OK) {
            set_bad(rec, "line %" PRIu64 ": attribute %.*s: invalid base64", lineno, (int)nlen,
                    l->buf);
            goto done;
        }
    } else {
        strbuf_add(&val, v, l->len - (size_t)(v - l->buf));
        if (memchr(val.buf, '\0', val.len) != NULL || !utf8_valid(val.buf, val.len)) {
            set_bad(rec, "line %" PRIu64 ": attribute %.*s: invalid UTF-8 (use base64, \"::\")",
                    lineno, (int)nlen, l->buf);
            goto done;
        }
    }
    if (rec->bytes + val.len > LDIF_RECORD_MAX) {
        set_bad(rec, "line %" PRIu64 ": record larger than %u bytes", lineno, LDIF_RECORD_MAX);
        goto done;
    }
    rec->bytes += val.len + nlen;
    ALLOC_GROW(rec->av, rec->nav + 1, rec->alloc);
    av = &rec->av[rec->nav++];
    av->name = xmemdup(l->buf, nlen);
    av->vlen = val.len;
    av->value = strbuf_detach(&val, NULL);
    av->kind = kind;
    av->line = lineno;
done:
    strbuf_release(&val);
}

enum ldif_status ldif_read_record(struct file_reader *r, uint64_t *line, bool first,
                                  struct ldif_record *rec)
{
    struct strbuf l = STRBUF_INIT;
    enum ldif_status ret = LDIF_OK;
    bool too_long;
    bool version_ok = first;

    clear_avs(rec);
    rec->bad = false;
    rec->errmsg[0] = '\0';
    for (;;) {
        uint64_t start = *line + 1;
        uint64_t off = file_reader_tell(r);

        if (!read_logical(r, line, &l, &too_long)) {
            ret = r->err ? LDIF_IOERR : LDIF_EOF;
            goto done;
        }
        if (l.len == 0) {
            continue; /* blank lines between records */
        }
        /* first line of a record */
        rec->off = off;
        rec->line = start;
        for (;;) {
            if (too_long) {
                set_bad(rec, "line %" PRIu64 ": line longer than %u bytes", start, LDIF_LINE_MAX);
            } else if (l.buf[0] == '#') {
                if (strncmp(l.buf, "# idsync:", 9) == 0) {
                    free(rec->marker);
                    rec->marker = xstrdup(l.buf);
                }
            } else if (version_ok && rec->nav == 0 && strncasecmp(l.buf, "version:", 8) == 0) {
                const char *v = l.buf + 8;

                while (*v == ' ') {
                    v++;
                }
                if (strcmp(v, "1") != 0) {
                    set_bad(rec, "line %" PRIu64 ": unsupported LDIF version \"%s\"", start, v);
                }
                version_ok = false;
            } else {
                if (rec->nav == 0) {
                    rec->line = start;
                }
                version_ok = false;
                parse_line(rec, &l, start);
            }
            start = *line + 1;
            if (!read_logical(r, line, &l, &too_long) || l.len == 0) {
                break;
            }
        }
        if (r->err) {
            ret = LDIF_IOERR;
            goto done;
        }
        rec->end_off = file_reader_tell(r);
        if (rec->nav == 0 && !rec->bad) {
            /* only comments (or the version line): not a record */
            free(rec->marker);
            rec->marker = NULL;
            continue;
        }
        goto done;
    }
done:
    strbuf_release(&l);
    return ret;
}

bool ldif_safe_string(const char *s, size_t len)
{
    size_t i;
    unsigned char c;

    if (len == 0) {
        return true;
    }
    c = (unsigned char)s[0];
    if (c == ' ' || c == ':' || c == '<') {
        return false;
    }
    if (s[len - 1] == ' ') {
        return false;
    }
    for (i = 0; i < len; i++) {
        c = (unsigned char)s[i];
        if (c == 0 || c == '\n' || c == '\r' || c >= 0x80) {
            return false;
        }
    }
    return true;
}

/* Append line (without newline) folded at LDIF_FOLD columns, plus "\n". */
static void add_folded(struct strbuf *out, const char *s, size_t len)
{
    size_t first = len < LDIF_FOLD ? len : LDIF_FOLD;

    strbuf_add(out, s, first);
    strbuf_addch(out, '\n');
    s += first;
    len -= first;
    while (len > 0) {
        size_t n = len < LDIF_FOLD - 1 ? len : LDIF_FOLD - 1;

        strbuf_addch(out, ' ');
        strbuf_add(out, s, n);
        strbuf_addch(out, '\n');
        s += n;
        len -= n;
    }
}

void ldif_write_attr(struct strbuf *out, const char *name, const char *value, size_t len)
{
    struct strbuf line = STRBUF_INIT;

    strbuf_addstr(&line, name);
    if (ldif_safe_string(value, len)) {
        strbuf_addstr(&line, ": ");
        strbuf_add(&line, value, len);
    } else {
        strbuf_addstr(&line, ":: ");
        base64_encode(&line, value, len);
    }
    add_folded(out, line.buf, line.len);
    strbuf_release(&line);
}
