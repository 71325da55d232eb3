#include "util/error.h"

#include <stdio.h>
#include <string.h>

#include "util/banned.h"

static const char *const err_names[] = {
#define X(code, name, desc) [code] = name,
    IDS_ERR_LIST
#undef X
};

static const char *const err_descs[] = {
#define X(code, name, desc) [code] = desc,
    IDS_ERR_LIST
#undef X
};

const char *ids_err_name(enum ids_err code)
{
    if ((unsigned)code >= IDS_ERR_COUNT) {
        return "unknown";
    }
    return err_names[code];
}

const char *ids_err_str(enum ids_err code)
{
    if ((unsigned)code >= IDS_ERR_COUNT) {
        return "unknown error";
    }
    return err_descs[code];
}

static void mark_truncated(struct ids_error *err, int n)
{
    if (n >= (int)sizeof(err->msg)) {
        memcpy(err->msg + sizeof(err->msg) - 4, "...", 4);
    }
}

enum ids_err ids_error_setv(struct ids_error *err, enum ids_err code, const char *fmt, va_list ap)
{
    int n;

    if (err == NULL) {
        return code;
    }
    err->code = code;
    err->detail = 0;
    n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    mark_truncated(err, n);
    return code;
}

enum ids_err ids_error_set(struct ids_error *err, enum ids_err code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    ids_error_setv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

enum ids_err ids_error_set_detail(struct ids_error *err, enum ids_err code, int detail,
                                  const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    ids_error_setv(err, code, fmt, ap);
    va_end(ap);
    if (err != NULL) {
        err->detail = detail;
    }
    return code;
}

void ids_error_prefix(struct ids_error *err, const char *fmt, ...)
{
    char prefix[256];
    char old[IDS_ERROR_MSG_MAX];
    va_list ap;
    int n;

    if (err == NULL) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    n = snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
    mark_truncated(err, n);
}

void ids_error_clear(struct ids_error *err)
{
    if (err == NULL) {
        return;
    }
    err->code = IDS_OK;
    err->detail = 0;
    err->msg[0] = '\0';
}
