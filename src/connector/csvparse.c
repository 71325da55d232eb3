/* csvparse.c - streaming RFC 4180 parser and writer; see csvparse.h. */
#include "connector/csvparse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/mem.h"
#include "util/banned.h"

void csv_record_init(struct csv_record *rec)
{
    memset(rec, 0, sizeof(*rec));
    strbuf_init(&rec->data, 0);
    strbuf_init(&rec->raw, 0);
    rec->max = CSV_RECORD_MAX;
}

void csv_record_release(struct csv_record *rec)
{
    strbuf_release(&rec->data);
    strbuf_release(&rec->raw);
    free(rec->f);
    rec->f = NULL;
    rec->nf = 0;
    rec->falloc = 0;
}

static void start_field(struct csv_record *rec)
{
    ALLOC_GROW(rec->f, rec->nf + 1, rec->falloc);
    rec->f[rec->nf].off = rec->data.len;
    rec->f[rec->nf].len = 0;
    rec->nf++;
}

static void end_field(struct csv_record *rec)
{
    struct csv_field *f = &rec->f[rec->nf - 1];

    if (!rec->too_big) {
        f->len = rec->data.len - f->off;
        strbuf_addch(&rec->data, '\0');
    }
}

/* Keep n content bytes (and their raw bytes), within the cap. */
static void keep_run(struct csv_record *rec, const char *b, size_t n)
{
    if (!rec->too_big && rec->raw.len + n > rec->max) {
        rec->too_big = true;
    }
    if (!rec->too_big) {
        strbuf_add(&rec->raw, b, n);
        strbuf_add(&rec->data, b, n);
    }
}

/* Keep one content byte (and the raw byte), within the cap. */
static void keep(struct csv_record *rec, int c, bool content)
{
    if (rec->too_big) {
        return;
    }
    if (rec->raw.len + 1 > rec->max) {
        rec->too_big = true;
        return;
    }
    strbuf_addch(&rec->raw, c);
    if (content) {
        strbuf_addch(&rec->data, c);
    }
}

enum state {
    ST_FIELD_START,
    ST_UNQUOTED,
    ST_QUOTED,
    ST_AFTER_QUOTE,
};

enum csv_status csv_read_record(struct file_reader *r, char delim, uint64_t *line,
                                struct csv_record *rec)
{
    enum state st = ST_FIELD_START;
    bool first_newline_seen = false;
    int c;

    strbuf_reset(&rec->data);
    strbuf_reset(&rec->raw);
    rec->nf = 0;
    rec->line = *line;
    rec->too_big = false;
    rec->unterminated = false;
    rec->bad_quote_field = SIZE_MAX;
    rec->unterminated_field = SIZE_MAX;
    rec->restart_off = 0;
    rec->restart_line = 0;
    rec->eol[0] = '\0';

    c = file_reader_peek(r);
    if (c < 0) {
        return r->err ? CSV_REC_IOERR : CSV_REC_EOF;
    }
    start_field(rec);
    for (;;) {
        if (st != ST_AFTER_QUOTE && r->pos < r->len) {
            /* fast path: a run of plain bytes in the buffer, taken at once
             * (kept, or passed over once the record is too long) */
            const char *b = r->buf + r->pos;
            size_t avail = r->len - r->pos;
            size_t n = 0;

            if (st == ST_QUOTED) {
                while (n < avail && b[n] != '"' && b[n] != '\n' && b[n] != '\r') {
                    n++;
                }
            } else if (st == ST_UNQUOTED || b[0] != '"') {
                while (n < avail && b[n] != delim && b[n] != '\n' && b[n] != '\r') {
                    n++;
                }
            }
            if (n > 0) {
                keep_run(rec, b, n);
                r->pos += n;
                if (st == ST_FIELD_START) {
                    st = ST_UNQUOTED;
                }
                continue;
            }
        }
        c = file_reader_getc(r);
        if (c < 0) {
            if (r->err) {
                return CSV_REC_IOERR;
            }
            if (st == ST_QUOTED) {
                rec->unterminated = true;
                rec->unterminated_field = rec->nf - 1;
                if (first_newline_seen) {
                    file_reader_seek(r, rec->restart_off);
                    *line = rec->restart_line;
                } else {
                    rec->restart_off = file_reader_tell(r);
                    rec->restart_line = *line;
                }
            }
            break;
        }
        if (st == ST_QUOTED) {
            if (c == '"') {
                if (file_reader_peek(r) == '"') {
                    file_reader_getc(r);
                    keep(rec, '"', false);
                    keep(rec, '"', true);
                } else {
                    keep(rec, '"', false);
                    st = ST_AFTER_QUOTE;
                }
                continue;
            }
            keep(rec, c, true);
            if (c == '\n' || (c == '\r' && file_reader_peek(r) != '\n')) {
                (*line)++;
                if (!first_newline_seen) {
                    first_newline_seen = true;
                    rec->restart_off = file_reader_tell(r);
                    rec->restart_line = *line;
                }
            }
            continue;
        }
        if (c == '"' && st == ST_FIELD_START) {
            keep(rec, c, false);
            st = ST_QUOTED;
            continue;
        }
        if (c == (unsigned char)delim) {
            keep(rec, c, false);
            end_field(rec);
            start_field(rec);
            st = ST_FIELD_START;
            continue;
        }
        if (c == '\n') {
            (*line)++;
            memcpy(rec->eol, "\n", 2);
            break;
        }
        if (c == '\r') {
            (*line)++;
            if (file_reader_peek(r) == '\n') {
                file_reader_getc(r);
                memcpy(rec->eol, "\r\n", 3);
            } else {
                memcpy(rec->eol, "\r", 2);
            }
            break;
        }
        if (st == ST_AFTER_QUOTE && rec->bad_quote_field == SIZE_MAX) {
            rec->bad_quote_field = rec->nf - 1;
        }
        keep(rec, c, true);
        st = ST_UNQUOTED;
    }
    end_field(rec);
    if (rec->too_big) {
        strbuf_reset(&rec->data);
        strbuf_reset(&rec->raw);
    }
    return CSV_REC_OK;
}

bool csv_record_blank(const struct csv_record *rec)
{
    return rec->nf == 1 && rec->f[0].len == 0 && rec->raw.len == 0 && !rec->too_big;
}

void csv_write_field(struct strbuf *out, const char *s, size_t len, char delim)
{
    bool quote = false;
    size_t i;

    if (len > 0 && (s[0] == ' ' || s[len - 1] == ' ' || s[0] == '\t' || s[len - 1] == '\t')) {
        quote = true;
    }
    for (i = 0; i < len && !quote; i++) {
        if (s[i] == delim || s[i] == '"' || s[i] == '\r' || s[i] == '\n') {
            quote = true;
        }
    }
    if (!quote) {
        strbuf_add(out, s, len);
        return;
    }
    strbuf_addch(out, '"');
    for (i = 0; i < len; i++) {
        if (s[i] == '"') {
            strbuf_addch(out, '"');
        }
        strbuf_addch(out, s[i]);
    }
    strbuf_addch(out, '"');
}

void csv_split_values(const char *s, size_t len, char sep, struct strvec *out)
{
    struct strbuf cur = STRBUF_INIT;
    size_t i = 0;

    while (i <= len) {
        size_t start = i;

        /* a value without a backslash is taken as it is (the usual case) */
        while (i < len && s[i] != sep && s[i] != '\\') {
            i++;
        }
        if (i == len || s[i] == sep) {
            if (i > start) {
                strvec_pushn(out, s + start, i - start);
            }
            i++;
            continue;
        }
        /* a backslash: this value byte by byte */
        strbuf_reset(&cur);
        strbuf_add(&cur, s + start, i - start);
        for (; i < len && s[i] != sep; i++) {
            if (s[i] == '\\' && i + 1 < len && (s[i + 1] == sep || s[i + 1] == '\\')) {
                i++;
            }
            strbuf_addch(&cur, s[i]);
        }
        if (cur.len > 0) {
            strvec_pushn(out, cur.buf, cur.len);
        }
        i++;
    }
    strbuf_release(&cur);
}

void csv_join_values(struct strbuf *out, const struct strvec *vals, char sep)
{
    size_t i;
    const char *p;

    for (i = 0; i < vals->nr; i++) {
        if (i > 0) {
            strbuf_addch(out, sep);
        }
        for (p = vals->v[i]; *p; p++) {
            /* a backslash needs escaping only where it would be read as one */
            bool esc = *p == sep;

            if (*p == '\\') {
                esc = p[1] == '\\' || p[1] == sep || (p[1] == '\0' && i + 1 < vals->nr);
            }
            if (esc) {
                strbuf_addch(out, '\\');
            }
            strbuf_addch(out, *p);
        }
    }
}
