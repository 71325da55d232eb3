/* progress.c - the redrawn status line of long steps (see progress.h). */
#include "util/progress.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/mem.h"
#include "util/strbuf.h"
#include "util/banned.h"

#define PROGRESS_DELAY_MS  1000 /* nothing for steps shorter than this */
#define PROGRESS_PERIOD_MS 250  /* at most 4 redraws a second */

struct progress {
    char *step;
    char *connector;
    long total;
    long done;
    unsigned calls;
    int64_t start_ms;
    int64_t phase_ms; /* the rate counts from here: the start, or the last set_step */
    int64_t last_ms;  /* last redraw, 0 = never drawn */
    size_t drawn;     /* width of the line on screen */
    FILE *out;
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct progress *progress_start(bool enabled, const char *step, const char *connector, long total)
{
    struct progress *p;

    if (!enabled) {
        return NULL;
    }
    p = xcalloc(1, sizeof(*p));
    p->step = xstrdup(step ? step : "");
    p->connector = xstrdup_or_null(connector);
    p->total = total;
    p->start_ms = now_ms();
    p->phase_ms = p->start_ms;
    p->out = stderr;
    return p;
}

void progress_set_output(struct progress *p, FILE *out, long age_ms)
{
    if (p == NULL) {
        return;
    }
    p->out = out;
    p->start_ms -= age_ms;
    p->phase_ms -= age_ms;
}

static void format_duration(struct strbuf *sb, long secs)
{
    if (secs >= 3600) {
        strbuf_addf(sb, "%ldh%02ldm", secs / 3600, (secs / 60) % 60);
    } else if (secs >= 60) {
        strbuf_addf(sb, "%ldm%02lds", secs / 60, secs % 60);
    } else {
        strbuf_addf(sb, "%lds", secs);
    }
}

static void draw(struct progress *p, int64_t now)
{
    struct strbuf sb = STRBUF_INIT;
    double secs = (double)(now - p->phase_ms) / 1000.0;
    double rate = secs > 0 ? (double)p->done / secs : 0;
    size_t width;

    strbuf_addf(&sb, "\r%s", p->step);
    if (p->connector != NULL) {
        strbuf_addf(&sb, " %s", p->connector);
    }
    if (p->total >= 0) {
        strbuf_addf(&sb, ": %ld/%ld objects", p->done, p->total);
    } else {
        strbuf_addf(&sb, ": %ld objects", p->done);
    }
    strbuf_addf(&sb, ", %.0f/s", rate);
    if (p->total > 0 && rate > 0 && p->done <= p->total) {
        strbuf_addstr(&sb, ", ETA ");
        format_duration(&sb, (long)((double)(p->total - p->done) / rate + 0.5));
    }
    width = sb.len - 1;
    /* pad over what a longer previous line left on screen */
    while (width < p->drawn) {
        strbuf_addch(&sb, ' ');
        width++;
    }
    fputs(sb.buf, p->out);
    fflush(p->out);
    p->drawn = sb.len - 1;
    p->last_ms = now;
    strbuf_release(&sb);
}

void progress_update(struct progress *p, long done)
{
    int64_t now;

    if (p == NULL) {
        return;
    }
    p->done = done;
    if ((p->calls++ & 63) != 0) {
        return;
    }
    now = now_ms();
    if (now - p->start_ms < PROGRESS_DELAY_MS) {
        return;
    }
    if (p->last_ms != 0 && now - p->last_ms < PROGRESS_PERIOD_MS) {
        return;
    }
    draw(p, now);
}

void progress_set_total(struct progress *p, long total)
{
    if (p != NULL) {
        p->total = total;
    }
}

void progress_set_step(struct progress *p, const char *step)
{
    if (p != NULL) {
        free(p->step);
        p->step = xstrdup(step ? step : "");
        p->phase_ms = now_ms(); /* a new phase counts from 0: so does its rate */
        p->last_ms = 0;         /* and is shown at its first update */
    }
}

void progress_end(struct progress *p)
{
    if (p == NULL) {
        return;
    }
    if (p->drawn > 0) {
        fprintf(p->out, "\r%*s\r", (int)p->drawn, "");
        fflush(p->out);
    }
    free(p->step);
    free(p->connector);
    free(p);
}
