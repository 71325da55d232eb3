/* table.c - aligned text tables and formatting helpers (see table.h). */
#include "util/table.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/mem.h"
#include "util/strvec.h"
#include "util/banned.h"

struct table_column {
    char *header;
    enum table_align align;
    size_t width;
};

struct table {
    size_t ncols;
    size_t alloc_cols;
    struct table_column *cols;
    size_t nrows;
    size_t alloc_rows;
    struct strvec *rows; /* each row: ncols sanitized cells (fewer while being filled) */
};

struct table *table_new(void)
{
    return xcalloc(1, sizeof(struct table));
}

void table_free(struct table *t)
{
    size_t i;

    if (t == NULL) {
        return;
    }
    for (i = 0; i < t->ncols; i++) {
        free(t->cols[i].header);
    }
    for (i = 0; i < t->nrows; i++) {
        strvec_clear(&t->rows[i]);
    }
    free(t->cols);
    free(t->rows);
    free(t);
}

void table_add_column(struct table *t, const char *header, enum table_align align)
{
    struct table_column *c;
    struct strbuf sb = STRBUF_INIT;

    ALLOC_GROW(t->cols, t->ncols + 1, t->alloc_cols);
    c = &t->cols[t->ncols++];
    text_sanitize(&sb, header ? header : "", header ? strlen(header) : 0);
    c->header = strbuf_detach(&sb, NULL);
    c->align = align;
    c->width = text_width(c->header);
}

void table_add_row(struct table *t)
{
    ALLOC_GROW(t->rows, t->nrows + 1, t->alloc_rows);
    strvec_init(&t->rows[t->nrows++]);
}

void table_add_cell(struct table *t, const char *text)
{
    struct strvec *row;
    struct strbuf sb = STRBUF_INIT;
    size_t w;

    if (t->nrows == 0) {
        table_add_row(t);
    }
    row = &t->rows[t->nrows - 1];
    if (row->nr >= t->ncols) {
        return;
    }
    if (text != NULL) {
        text_sanitize(&sb, text, strlen(text));
    }
    w = text_width(sb.buf);
    if (w > t->cols[row->nr].width) {
        t->cols[row->nr].width = w;
    }
    strvec_push(row, sb.buf);
    strbuf_release(&sb);
}

void table_add_cellf(struct table *t, const char *fmt, ...)
{
    struct strbuf sb = STRBUF_INIT;
    va_list ap;

    va_start(ap, fmt);
    strbuf_vaddf(&sb, fmt, ap);
    va_end(ap);
    table_add_cell(t, sb.buf);
    strbuf_release(&sb);
}

size_t table_rows(const struct table *t)
{
    return t->nrows;
}

static void pad(FILE *out, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        fputc(' ', out);
    }
}

static void print_line(const struct table *t, FILE *out, size_t indent, char *const *cells,
                       size_t ncells)
{
    size_t i;
    size_t last = 0;

    /* trailing empty cells print nothing, not blanks */
    for (i = 0; i < ncells && i < t->ncols; i++) {
        if (cells[i][0] != '\0') {
            last = i + 1;
        }
    }
    pad(out, indent);
    for (i = 0; i < last; i++) {
        const struct table_column *c = &t->cols[i];
        size_t w = text_width(cells[i]);
        size_t fill = c->width > w ? c->width - w : 0;

        if (i > 0) {
            fputs("  ", out);
        }
        if (c->align == TABLE_RIGHT) {
            pad(out, fill);
            fputs(cells[i], out);
        } else {
            fputs(cells[i], out);
            if (i + 1 < last) {
                pad(out, fill);
            }
        }
    }
    fputc('\n', out);
}

void table_print(const struct table *t, FILE *out, size_t indent)
{
    size_t i;
    bool headers = false;
    char **hdr = xcalloc(t->ncols ? t->ncols : 1, sizeof(*hdr));

    for (i = 0; i < t->ncols; i++) {
        hdr[i] = t->cols[i].header;
        if (hdr[i][0] != '\0') {
            headers = true;
        }
    }
    if (headers) {
        print_line(t, out, indent, hdr, t->ncols);
    }
    for (i = 0; i < t->nrows; i++) {
        print_line(t, out, indent, t->rows[i].v, t->rows[i].nr);
    }
    free(hdr);
}

/* Length of the valid UTF-8 sequence at s (up to len bytes), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    size_t n;
    size_t i;
    unsigned cp;

    if (s[0] < 0x80) {
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        n = 2;
        cp = s[0] & 0x1fu;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        n = 3;
        cp = s[0] & 0x0fu;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        n = 4;
        cp = s[0] & 0x07u;
    } else {
        return 0;
    }
    if (len < n) {
        return 0;
    }
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0u) != 0x80u) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    /* C1 controls (U+0080..U+009F) can act as escape sequences too */
    if (cp >= 0x80 && cp <= 0x9f) {
        return 0;
    }
    return n;
}

void text_sanitize(struct strbuf *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        unsigned char c = p[i];
        size_t n;

        if (c == '\n') {
            strbuf_addstr(out, "\\n");
            i++;
            continue;
        }
        if (c == '\t') {
            strbuf_addstr(out, "\\t");
            i++;
            continue;
        }
        if (c == '\r') {
            strbuf_addstr(out, "\\r");
            i++;
            continue;
        }
        if (c < 0x20 || c == 0x7f) {
            strbuf_addf(out, "\\x%02x", c);
            i++;
            continue;
        }
        n = utf8_seq(p + i, len - i);
        if (n == 0) {
            strbuf_addf(out, "\\x%02x", c);
            i++;
            continue;
        }
        strbuf_add(out, p + i, n);
        i += n;
    }
}

size_t text_width(const char *s)
{
    size_t w = 0;
    const unsigned char *p = (const unsigned char *)s;

    for (; *p; p++) {
        if ((*p & 0xc0u) != 0x80u) {
            w++;
        }
    }
    return w;
}

void fmt_duration(struct strbuf *out, int64_t us)
{
    int64_t s;

    if (us < 0) {
        strbuf_addstr(out, "-");
        return;
    }
    if (us < 1000000) {
        strbuf_addf(out, "%.2f s", (double)us / 1e6);
        return;
    }
    if (us < 10000000) {
        strbuf_addf(out, "%.1f s", (double)us / 1e6);
        return;
    }
    s = (us + 500000) / 1000000;
    if (s < 60) {
        strbuf_addf(out, "%lld s", (long long)s);
    } else if (s < 3600) {
        strbuf_addf(out, "%lld m %02lld s", (long long)(s / 60), (long long)(s % 60));
    } else {
        strbuf_addf(out, "%lld h %02lld m", (long long)(s / 3600), (long long)((s % 3600) / 60));
    }
}

void fmt_local_time(struct strbuf *out, int64_t us)
{
    time_t t;
    struct tm tm;
    char buf[64];

    if (us <= 0) {
        strbuf_addstr(out, "-");
        return;
    }
    t = (time_t)(us / 1000000);
    if (localtime_r(&t, &tm) == NULL || strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm) == 0) {
        strbuf_addf(out, "@%lld", (long long)t);
        return;
    }
    strbuf_addstr(out, buf);
}

void fmt_iso_time(struct strbuf *out, int64_t us)
{
    time_t t;
    struct tm tm;
    char buf[64];

    if (us <= 0) {
        return;
    }
    t = (time_t)(us / 1000000);
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        strbuf_addf(out, "@%lld", (long long)t);
        return;
    }
    strbuf_addf(out, "%s.%03dZ", buf, (int)((us % 1000000) / 1000));
}
