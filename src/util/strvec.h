/* strvec.h - a growable, NULL-terminated vector of owned strings. */
#ifndef IDSYNC_UTIL_STRVEC_H
#define IDSYNC_UTIL_STRVEC_H

#include <stdbool.h>
#include <stddef.h>

struct strvec {
    char **v;     /* NULL-terminated; never NULL after init (shared empty) */
    size_t nr;    /* number of strings */
    size_t alloc; /* 0 while v is the shared empty vector */
};

extern const char *strvec_empty[];
#define STRVEC_INIT                                                                                \
    {                                                                                              \
        (char **)strvec_empty, 0, 0                                                                \
    }

void strvec_init(struct strvec *sv);
/* Free every string and the vector; sv is empty and reusable. */
void strvec_clear(struct strvec *sv);
/* Append a copy of s; returns the copy. */
const char *strvec_push(struct strvec *sv, const char *s);
/* Append a copy of s[0..len). */
const char *strvec_pushn(struct strvec *sv, const char *s, size_t len);
/* Append s, taking ownership (s was malloc'ed). */
void strvec_push_nodup(struct strvec *sv, char *s);
const char *strvec_pushf(struct strvec *sv, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Split s on `sep` (every occurrence; empty fields kept unless skip_empty). */
void strvec_split(struct strvec *sv, const char *s, char sep, bool skip_empty);
/* Index of the first string equal to s (strcasecmp when nocase), or -1. */
long strvec_find(const struct strvec *sv, const char *s, bool nocase);
void strvec_sort(struct strvec *sv);

#endif
