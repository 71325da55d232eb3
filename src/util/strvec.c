#include "util/strvec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/mem.h"
#include "util/strbuf.h"
#include "util/banned.h"

const char *strvec_empty[] = {NULL};

void strvec_init(struct strvec *sv)
{
    sv->v = (char **)strvec_empty;
    sv->nr = 0;
    sv->alloc = 0;
}

void strvec_clear(struct strvec *sv)
{
    size_t i;

    if (sv->alloc) {
        for (i = 0; i < sv->nr; i++) {
            free(sv->v[i]);
        }
        free(sv->v);
    }
    strvec_init(sv);
}

void strvec_push_nodup(struct strvec *sv, char *s)
{
    if (sv->alloc == 0) {
        sv->v = NULL;
    }
    ALLOC_GROW(sv->v, sv->nr + 2, sv->alloc);
    sv->v[sv->nr++] = s;
    sv->v[sv->nr] = NULL;
}

const char *strvec_push(struct strvec *sv, const char *s)
{
    strvec_push_nodup(sv, xstrdup(s));
    return sv->v[sv->nr - 1];
}

const char *strvec_pushn(struct strvec *sv, const char *s, size_t len)
{
    strvec_push_nodup(sv, xmemdup(s, len));
    return sv->v[sv->nr - 1];
}

const char *strvec_pushf(struct strvec *sv, const char *fmt, ...)
{
    struct strbuf sb = STRBUF_INIT;
    va_list ap;

    va_start(ap, fmt);
    strbuf_vaddf(&sb, fmt, ap);
    va_end(ap);
    strvec_push_nodup(sv, strbuf_detach(&sb, NULL));
    return sv->v[sv->nr - 1];
}

void strvec_split(struct strvec *sv, const char *s, char sep, bool skip_empty)
{
    const char *p = s;
    const char *q;

    for (;;) {
        q = strchr(p, sep);
        if (q == NULL) {
            q = p + strlen(p);
        }
        if (q > p || !skip_empty) {
            strvec_pushn(sv, p, (size_t)(q - p));
        }
        if (*q == '\0') {
            break;
        }
        p = q + 1;
    }
}

long strvec_find(const struct strvec *sv, const char *s, bool nocase)
{
    size_t i;

    for (i = 0; i < sv->nr; i++) {
        if ((nocase ? strcasecmp(sv->v[i], s) : strcmp(sv->v[i], s)) == 0) {
            return (long)i;
        }
    }
    return -1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void strvec_sort(struct strvec *sv)
{
    if (sv->nr > 1) {
        qsort(sv->v, sv->nr, sizeof(char *), cmp_str);
    }
}
