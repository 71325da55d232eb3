/* progress.h - one redrawn status line on stderr for long steps.
 *
 *   struct progress *p = progress_start(opts->progress, "full-import", "corp", -1);
 *   ... progress_update(p, done); ...
 *   progress_end(p);
 *
 * Nothing is drawn when `enabled` is false, nor during the first second of
 * a step. After that the line is redrawn at most 4 times a second:
 * step, connector, objects done, rate, and the ETA when the total is known.
 * progress_end() erases the line. All functions are NULL-safe, so that a
 * caller can keep one code path whether progress is shown or not.
 */
#ifndef IDSYNC_UTIL_PROGRESS_H
#define IDSYNC_UTIL_PROGRESS_H

#include <stdbool.h>
#include <stdio.h>

struct progress;

/* total < 0: unknown. connector may be NULL. Returns NULL when !enabled.
 * The strings are copied. */
struct progress *progress_start(bool enabled, const char *step, const char *connector, long total);
/* Objects done so far (absolute). Cheap: looks at the clock every 64 calls. */
void progress_update(struct progress *p, long done);
/* Change the total (e.g. known after a count); < 0 = unknown. */
void progress_set_total(struct progress *p, long total);
/* Change the label (a new phase of the same step, whose count starts
 * again from 0: the rate and ETA count from here). */
void progress_set_step(struct progress *p, const char *step);
/* Erase the line (if drawn) and free. NULL-safe. */
void progress_end(struct progress *p);

/* For tests: draw to `out` instead of stderr, and with a start time shifted
 * back by `age_ms` so the one-second delay is already over. */
void progress_set_output(struct progress *p, FILE *out, long age_ms);

#endif
