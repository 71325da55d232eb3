/* mem.h - allocation helpers.
 *
 * idsync treats running out of memory as fatal: xmalloc() and friends print
 * one line and exit(4) rather than returning NULL, so that callers do not
 * carry a NULL check for every small allocation. Large, input-driven sizes
 * are bounded by the caller (see strbuf's cap) before they get here.
 */
#ifndef IDSYNC_UTIL_MEM_H
#define IDSYNC_UTIL_MEM_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
/* realloc to nmemb*size with overflow check */
void *xreallocarray(void *ptr, size_t nmemb, size_t size);
char *xstrdup(const char *s);
/* copy of s[0..len) with a NUL appended; s may contain NULs */
char *xmemdup(const void *s, size_t len);
/* NULL-safe strdup: returns NULL for NULL */
char *xstrdup_or_null(const char *s);

/* Grow `*arr` (of `*alloc` elements of `size` bytes) to hold at least `need`. */
void grow_array(void **arr, size_t *alloc, size_t need, size_t size);
#define ALLOC_GROW(arr, need, alloc) grow_array((void **)&(arr), &(alloc), (need), sizeof(*(arr)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
