/* log.h - one line per event on stderr, logfmt or JSON.
 *
 *   log_info("import", "connector=%s objects=%ld", name, n);
 *
 * Every line carries a timestamp, level and event name; the format string
 * adds logfmt key=value pairs (values with spaces must be quoted by the
 * caller with log_q()). In JSON mode the pairs are converted to a JSON
 * object. Secrets are never passed to the logger.
 */
#ifndef IDSYNC_UTIL_LOG_H
#define IDSYNC_UTIL_LOG_H

#include <stdbool.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_QUIET };
enum log_format { LOG_LOGFMT, LOG_JSON };

void log_setup(enum log_level level, enum log_format format);
enum log_level log_get_level(void);
bool log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(ev, ...) log_msg(LOG_DEBUG, ev, __VA_ARGS__)
#define log_info(ev, ...)  log_msg(LOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...)  log_msg(LOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) log_msg(LOG_ERROR, ev, __VA_ARGS__)

#endif
