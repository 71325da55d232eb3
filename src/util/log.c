#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util/strbuf.h"
#include "util/banned.h"

static enum log_level cur_level = LOG_WARN;
static enum log_format cur_format = LOG_LOGFMT;

static const char *const level_names[] = {"debug", "info", "warn", "error", "quiet"};

void log_setup(enum log_level level, enum log_format format)
{
    cur_level = level;
    cur_format = format;
}

enum log_level log_get_level(void)
{
    return cur_level;
}

bool log_enabled(enum log_level level)
{
    return level >= cur_level && level != LOG_QUIET;
}

/* Convert `k=v k2="v 2"` pairs into JSON members. */
static void logfmt_to_json(struct strbuf *out, const char *s)
{
    const char *p = s;

    while (*p) {
        const char *k;
        const char *v;
        size_t klen;
        struct strbuf val = STRBUF_INIT;

        while (*p == ' ') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        k = p;
        while (*p && *p != '=' && *p != ' ') {
            p++;
        }
        klen = (size_t)(p - k);
        if (*p == '=') {
            p++;
            if (*p == '"') {
                p++;
                while (*p && *p != '"') {
                    if (*p == '\\' && p[1]) {
                        p++;
                    }
                    strbuf_addch(&val, *p++);
                }
                if (*p == '"') {
                    p++;
                }
            } else {
                v = p;
                while (*p && *p != ' ') {
                    p++;
                }
                strbuf_add(&val, v, (size_t)(p - v));
            }
        }
        strbuf_addch(out, ',');
        strbuf_add_json_str(out, k, klen);
        strbuf_addch(out, ':');
        strbuf_add_json_str(out, val.buf, val.len);
        strbuf_release(&val);
    }
}

void log_msg(enum log_level level, const char *event, const char *fmt, ...)
{
    struct strbuf line = STRBUF_INIT;
    struct strbuf pairs = STRBUF_INIT;
    char ts[32];
    struct timespec now;
    struct tm tm;
    va_list ap;

    if (!log_enabled(level)) {
        return;
    }
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    va_start(ap, fmt);
    strbuf_vaddf(&pairs, fmt, ap);
    va_end(ap);
    if (cur_format == LOG_JSON) {
        strbuf_addf(&line, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"event\":", ts,
                    now.tv_nsec / 1000000, level_names[level]);
        strbuf_add_json_str(&line, event, strlen(event));
        logfmt_to_json(&line, pairs.buf);
        strbuf_addstr(&line, "}\n");
    } else {
        strbuf_addf(&line, "ts=%s.%03ldZ level=%s event=%s %s\n", ts, now.tv_nsec / 1000000,
                    level_names[level], event, pairs.buf);
    }
    fwrite(line.buf, 1, line.len, stderr);
    strbuf_release(&line);
    strbuf_release(&pairs);
}
