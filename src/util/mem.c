#include "util/mem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/banned.h"

static void die_oom(size_t size)
{
    fprintf(stderr, "idsync: out of memory (allocating %zu bytes)\n", size);
    exit(4);
}

void *xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);

    if (p == NULL) {
        die_oom(size);
    }
    return p;
}

void *xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

    if (p == NULL) {
        die_oom(nmemb * size);
    }
    return p;
}

void *xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);

    if (p == NULL) {
        die_oom(size);
    }
    return p;
}

void *xreallocarray(void *ptr, size_t nmemb, size_t size)
{
    if (size != 0 && nmemb > SIZE_MAX / size) {
        die_oom(SIZE_MAX);
    }
    return xrealloc(ptr, nmemb * size);
}

char *xstrdup(const char *s)
{
    return xmemdup(s, strlen(s));
}

char *xstrdup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

char *xmemdup(const void *s, size_t len)
{
    char *p = xmalloc(len + 1);

    if (len) {
        memcpy(p, s, len);
    }
    p[len] = '\0';
    return p;
}

void grow_array(void **arr, size_t *alloc, size_t need, size_t size)
{
    size_t n;

    if (need <= *alloc) {
        return;
    }
    /* bytes (strbufs) start at 64: a DN or a value then needs one
     * allocation, not five */
    n = *alloc ? *alloc : size == 1 ? 64 : 8;
    while (n < need) {
        n = n + n / 2 + 8;
    }
    *arr = xreallocarray(*arr, n, size);
    *alloc = n;
}
