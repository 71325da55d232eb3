/* error.h - idsync's error space.
 *
 * Functions that can fail return an `enum ids_err`. Control flow reads the
 * code; people read the text, which travels in a `struct ids_error` that the
 * caller owns and passes down (it may be NULL when the caller does not care).
 *
 * The list of codes is declared once, in IDS_ERR_LIST; ids_err_name() and
 * ids_err_str() are generated from it.
 */
#ifndef IDSYNC_UTIL_ERROR_H
#define IDSYNC_UTIL_ERROR_H

#include <stdarg.h>

/* X(code, name, description) */
#define IDS_ERR_LIST                                                                               \
    X(IDS_OK, "ok", "success")                                                                     \
    X(IDS_DONE, "done", "no more items")                                                           \
    X(IDS_EAGAIN, "again", "nothing ready yet")                                                    \
    X(IDS_ENOMEM, "no-memory", "out of memory")                                                    \
    X(IDS_EINVAL, "invalid", "invalid argument")                                                   \
    X(IDS_ECONFIG, "config", "configuration error")                                                \
    X(IDS_EUSAGE, "usage", "usage error")                                                          \
    X(IDS_ENOTFOUND, "not-found", "object not found")                                              \
    X(IDS_EEXIST, "exists", "object already exists")                                               \
    X(IDS_EINPUT, "bad-input", "malformed input")                                                  \
    X(IDS_EIO, "io", "input/output error")                                                         \
    X(IDS_ESTORE, "store", "store error")                                                          \
    X(IDS_EUNREACHABLE, "unreachable", "connected system unreachable")                             \
    X(IDS_EPROTO, "protocol", "protocol error")                                                    \
    X(IDS_EREJECTED, "rejected", "the connected system rejected the operation")                    \
    X(IDS_EFULLREQUIRED, "full-required", "a full import is required")                             \
    X(IDS_EEXPR, "expression", "expression error")                                                 \
    X(IDS_ETOOBIG, "too-big", "value exceeds its limit")                                           \
    X(IDS_ETHRESHOLD, "threshold", "stopped by a deletion threshold")                              \
    X(IDS_EERRLIMIT, "error-limit", "stopped by the error limit")                                  \
    X(IDS_EINTR, "interrupted", "interrupted by a signal")                                         \
    X(IDS_EBUSY, "busy", "another run holds the lock")                                             \
    X(IDS_EUNSUPPORTED, "unsupported", "operation not supported by this connector")                \
    X(IDS_EINTERNAL, "internal", "internal error")

enum ids_err {
#define X(code, name, desc) code,
    IDS_ERR_LIST
#undef X
        IDS_ERR_COUNT
};

/* Size of the message buffer; longer messages are truncated with "...". */
#define IDS_ERROR_MSG_MAX 1024

/* The human side of an error. Owned by the caller, usually on its stack. */
struct ids_error {
    enum ids_err code;           /* same value the function returned */
    int detail;                  /* LDAP result code, HTTP status, SQLite code; 0 if none */
    char msg[IDS_ERROR_MSG_MAX]; /* one line, no trailing newline */
};

#define IDS_ERROR_INIT                                                                             \
    {                                                                                              \
        IDS_OK, 0,                                                                                 \
        {                                                                                          \
            0                                                                                      \
        }                                                                                          \
    }

/* Short stable name of a code ("not-found"), for JSON and logs. */
const char *ids_err_name(enum ids_err code);
/* One-line description of a code ("object not found"). */
const char *ids_err_str(enum ids_err code);

/* Fill `err` (may be NULL) and return `code`, so that callers can write
 * `return ids_error_set(err, IDS_EINPUT, "...", ...);`. */
enum ids_err ids_error_set(struct ids_error *err, enum ids_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
enum ids_err ids_error_setv(struct ids_error *err, enum ids_err code, const char *fmt, va_list ap);

/* Like ids_error_set, also records `detail` (protocol result code). */
enum ids_err ids_error_set_detail(struct ids_error *err, enum ids_err code, int detail,
                                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Prefix the existing message with "<prefix>: " (context added by a caller). */
void ids_error_prefix(struct ids_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Reset to IDS_OK with an empty message. */
void ids_error_clear(struct ids_error *err);

#endif
