/* strbuf.h - growable byte buffers with a cap.
 *
 * A strbuf is never NULL-buffered: after strbuf_init() `buf` points at a
 * valid NUL-terminated string (possibly a shared empty one), so it can be
 * printed at any time. Contents may hold NUL bytes (binary values); `len`
 * is authoritative.
 *
 * `max` (0 = unlimited) caps the length for buffers fed by the network or a
 * file: the *_checked appenders return IDS_ETOOBIG instead of growing past it.
 * The plain appenders never fail (allocation failure is fatal, see mem.h).
 */
#ifndef IDSYNC_UTIL_STRBUF_H
#define IDSYNC_UTIL_STRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

struct strbuf {
    char *buf;    /* NUL-terminated contents; never NULL */
    size_t len;   /* bytes used, excluding the NUL */
    size_t alloc; /* bytes allocated; 0 while buf is the shared empty string */
    size_t max;   /* cap for the *_checked appenders; 0 = none */
};

extern char strbuf_empty[];
#define STRBUF_INIT                                                                                \
    {                                                                                              \
        strbuf_empty, 0, 0, 0                                                                      \
    }

void strbuf_init(struct strbuf *sb, size_t hint);
/* Free the contents; the strbuf is ready for reuse (empty). */
void strbuf_release(struct strbuf *sb);
/* Hand the contents over to the caller, who frees them with free(); resets sb. */
char *strbuf_detach(struct strbuf *sb, size_t *len);
void strbuf_reset(struct strbuf *sb);
void strbuf_grow(struct strbuf *sb, size_t extra);
void strbuf_setlen(struct strbuf *sb, size_t len);

void strbuf_add(struct strbuf *sb, const void *data, size_t len);
void strbuf_addstr(struct strbuf *sb, const char *s);
void strbuf_addch(struct strbuf *sb, int c);
void strbuf_addbuf(struct strbuf *sb, const struct strbuf *other);
void strbuf_addf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap);
/* Append `s` as a JSON string literal, with quotes and escapes. */
void strbuf_add_json_str(struct strbuf *sb, const char *s, size_t len);

/* Capped variants: fail with IDS_ETOOBIG (sb unchanged) past sb->max. */
enum ids_err strbuf_add_checked(struct strbuf *sb, const void *data, size_t len);
enum ids_err strbuf_addch_checked(struct strbuf *sb, int c);

void strbuf_trim(struct strbuf *sb);
void strbuf_tolower(struct strbuf *sb);
bool strbuf_equals(const struct strbuf *sb, const char *s);

/* Read a whole file into sb (appending). Fails with IDS_EIO naming the path,
 * or IDS_ETOOBIG when the file is larger than sb->max. */
enum ids_err strbuf_read_file(struct strbuf *sb, const char *path, struct ids_error *err);

#endif
