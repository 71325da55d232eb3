/* metrics.c - /metrics in the Prometheus text format (version 0.0.4).
 *
 * Three kinds of series:
 *   - daemon state: up, running, next and last successful cycle, reload;
 *   - totals since the daemon started, counted from run history (every
 *     finished run newer than the newest one at start, whoever ran it):
 *     runs per status, run duration (summary _sum/_count), objects per
 *     counter, errors;
 *   - the store now: last run of each step and connector, pending exports,
 *     connector-space and metaverse sizes.
 */
#include "serve/serve.h"

#include <stdlib.h>
#include <string.h>

#include "serve/serve_version.h"
#include "util/mem.h"
#include "util/banned.h"

#define SCAN_MAX 20000

static void label(struct strbuf *sb, const char *name, const char *value, bool first)
{
    const char *p;

    strbuf_addstr(sb, first ? "{" : ",");
    strbuf_addstr(sb, name);
    strbuf_addstr(sb, "=\"");
    for (p = value ? value : ""; *p; p++) {
        if (*p == '\\' || *p == '"') {
            strbuf_addch(sb, '\\');
            strbuf_addch(sb, *p);
        } else if (*p == '\n') {
            strbuf_addstr(sb, "\\n");
        } else {
            strbuf_addch(sb, *p);
        }
    }
    strbuf_addch(sb, '"');
}

static void head(struct strbuf *sb, const char *name, const char *type, const char *help)
{
    strbuf_addf(sb, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample_sc(struct strbuf *sb, const char *name, const char *step, const char *conn,
                      double v)
{
    strbuf_addstr(sb, name);
    label(sb, "step", step, true);
    label(sb, "connector", conn, false);
    strbuf_addf(sb, "} %.17g\n", v);
}

static struct serve_total *total_for(struct serve_daemon *d, const char *step, const char *conn)
{
    struct serve_total *t;
    size_t i;

    for (i = 0; i < d->ntotals; i++) {
        if (strcmp(d->totals[i].step, step) == 0 && strcmp(d->totals[i].connector, conn) == 0) {
            return &d->totals[i];
        }
    }
    ALLOC_GROW(d->totals, d->ntotals + 1, d->totals_alloc);
    t = &d->totals[d->ntotals++];
    memset(t, 0, sizeof(*t));
    t->step = xstrdup(step);
    t->connector = xstrdup(conn);
    return t;
}

void serve_totals_update(struct serve_daemon *d)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct run_record *all = NULL;
    struct run_record *runs = NULL;
    size_t nall = 0;
    size_t alloc = 0;
    int64_t before = 0;
    size_t n = 0;
    size_t i;
    bool more = true;

    while (more && nall < SCAN_MAX) {
        if (store_runs_list(d->http_store, before, 500, &runs, &n, &err) != IDS_OK || n == 0) {
            break;
        }
        for (i = 0; i < n; i++) {
            if (runs[i].id <= d->totals_seen) {
                more = false;
                run_record_release(&runs[i]);
                continue;
            }
            ALLOC_GROW(all, nall + 1, alloc);
            all[nall++] = runs[i];
        }
        before = runs[n - 1].id;
        free(runs);
        runs = NULL;
        if (n < 500) {
            break;
        }
    }
    /* oldest first; stop at the first run still running */
    for (i = nall; i > 0; i--) {
        struct run_record *r = &all[i - 1];
        struct serve_total *t;
        size_t k;

        if (r->status == RUN_RUNNING || r->dry_run) {
            if (r->status == RUN_RUNNING) {
                break;
            }
            d->totals_seen = r->id;
            continue;
        }
        t = total_for(d, r->step, r->connector ? r->connector : "");
        t->runs[r->status]++;
        if (r->end_us > r->start_us) {
            t->seconds += (double)(r->end_us - r->start_us) / 1e6;
        }
        for (k = 0; k < run_counter_count; k++) {
            *run_counter_ptr(&t->counters, k) += *run_counter_ptr(&r->counters, k);
        }
        d->totals_seen = r->id;
    }
    for (i = 0; i < nall; i++) {
        run_record_release(&all[i]);
    }
    free(all);
}

static void metrics_totals(struct serve_daemon *d, struct strbuf *sb)
{
    size_t i;
    size_t k;
    int st;

    serve_totals_update(d);
    head(sb, "idsync_runs_total", "counter",
         "Runs finished since the daemon started, by step, connector and status.");
    for (i = 0; i < d->ntotals; i++) {
        for (st = RUN_SUCCESS; st <= RUN_FAILED; st++) {
            strbuf_addstr(sb, "idsync_runs_total");
            label(sb, "step", d->totals[i].step, true);
            label(sb, "connector", d->totals[i].connector, false);
            label(sb, "status", run_status_name((enum run_status)st), false);
            strbuf_addf(sb, "} %ld\n", d->totals[i].runs[st]);
        }
    }
    head(sb, "idsync_run_duration_seconds", "summary",
         "Duration of the runs finished since the daemon started, by step and connector.");
    for (i = 0; i < d->ntotals; i++) {
        long count = 0;

        for (st = RUN_SUCCESS; st <= RUN_FAILED; st++) {
            count += d->totals[i].runs[st];
        }
        sample_sc(sb, "idsync_run_duration_seconds_sum", d->totals[i].step, d->totals[i].connector,
                  d->totals[i].seconds);
        sample_sc(sb, "idsync_run_duration_seconds_count", d->totals[i].step,
                  d->totals[i].connector, (double)count);
    }
    head(sb, "idsync_objects_processed_total", "counter",
         "Objects counted by the runs finished since the daemon started (steps, not cycles), "
         "by step, connector and counter.");
    for (i = 0; i < d->ntotals; i++) {
        if (strcmp(d->totals[i].step, "cycle") == 0) {
            continue;
        }
        for (k = 0; k < run_counter_count; k++) {
            if (strcmp(run_counter_descs[k].name, "errors") == 0) {
                continue;
            }
            strbuf_addstr(sb, "idsync_objects_processed_total");
            label(sb, "step", d->totals[i].step, true);
            label(sb, "connector", d->totals[i].connector, false);
            label(sb, "counter", run_counter_descs[k].name, false);
            strbuf_addf(sb, "} %ld\n", *run_counter_ptr(&d->totals[i].counters, k));
        }
    }
    head(sb, "idsync_run_errors_total", "counter",
         "Per-object errors recorded by the runs finished since the daemon started.");
    for (i = 0; i < d->ntotals; i++) {
        if (strcmp(d->totals[i].step, "cycle") == 0) {
            continue;
        }
        sample_sc(sb, "idsync_run_errors_total", d->totals[i].step, d->totals[i].connector,
                  (double)d->totals[i].counters.errors);
    }
}

/* The newest finished run of each (step, connector) among recent runs. */
static void metrics_last_runs(struct serve_daemon *d, struct strbuf *sb)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct run_record *runs = NULL;
    struct strvec seen = STRVEC_INIT;
    struct strbuf key = STRBUF_INIT;
    struct strbuf dur = STRBUF_INIT;
    struct strbuf when = STRBUF_INIT;
    struct strbuf ok = STRBUF_INIT;
    struct strbuf objs = STRBUF_INIT;
    size_t n = 0;
    size_t i;
    size_t k;

    if (store_runs_list(d->http_store, 0, 500, &runs, &n, &err) != IDS_OK) {
        n = 0;
    }
    for (i = 0; i < n; i++) {
        const struct run_record *r = &runs[i];
        const char *conn = r->connector ? r->connector : "";

        if (r->status == RUN_RUNNING || r->dry_run) {
            continue;
        }
        strbuf_reset(&key);
        strbuf_addf(&key, "%s\n%s", r->step, conn);
        if (strvec_find(&seen, key.buf, false) >= 0) {
            continue;
        }
        strvec_push(&seen, key.buf);
        sample_sc(&dur, "idsync_last_run_duration_seconds", r->step, conn,
                  (double)(r->end_us - r->start_us) / 1e6);
        sample_sc(&when, "idsync_last_run_end_timestamp_seconds", r->step, conn,
                  (double)r->end_us / 1e6);
        sample_sc(&ok, "idsync_last_run_success", r->step, conn,
                  r->status == RUN_SUCCESS || r->status == RUN_COMPLETED_WITH_ERRORS);
        for (k = 0; k < run_counter_count; k++) {
            strbuf_addstr(&objs, "idsync_last_run_objects");
            label(&objs, "step", r->step, true);
            label(&objs, "connector", conn, false);
            label(&objs, "counter", run_counter_descs[k].name, false);
            strbuf_addf(&objs, "} %ld\n", *run_counter_ptr((struct run_counters *)&r->counters, k));
        }
    }
    head(sb, "idsync_last_run_duration_seconds", "gauge",
         "Duration of the last finished run of each step and connector.");
    strbuf_addbuf(sb, &dur);
    head(sb, "idsync_last_run_end_timestamp_seconds", "gauge",
         "End of the last finished run of each step and connector (Unix time).");
    strbuf_addbuf(sb, &when);
    head(sb, "idsync_last_run_success", "gauge",
         "1 when the last run of the step finished (success or completed with object errors).");
    strbuf_addbuf(sb, &ok);
    head(sb, "idsync_last_run_objects", "gauge",
         "Counters of the last finished run of each step and connector.");
    strbuf_addbuf(sb, &objs);
    for (i = 0; i < n; i++) {
        run_record_release(&runs[i]);
    }
    free(runs);
    strvec_clear(&seen);
    strbuf_release(&key);
    strbuf_release(&dur);
    strbuf_release(&when);
    strbuf_release(&ok);
    strbuf_release(&objs);
}

static void metrics_store(struct serve_daemon *d, struct strbuf *sb)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf pend = STRBUF_INIT;
    struct strbuf size = STRBUF_INIT;
    long mv = 0;
    size_t i;

    for (i = 0; i < d->cfg->nconnectors; i++) {
        const char *name = d->cfg->connectors[i].name;
        int64_t id = 0;
        long np = 0;
        long ns = 0;

        if (store_connector_id(d->http_store, name, &id, &err) != IDS_OK ||
            store_cs_count(d->http_store, id, STORE_SEL_PENDING_EXPORT, &np, &err) != IDS_OK ||
            store_cs_count(d->http_store, id, STORE_SEL_ALL, &ns, &err) != IDS_OK) {
            continue;
        }
        strbuf_addstr(&pend, "idsync_pending_exports");
        label(&pend, "connector", name, true);
        strbuf_addf(&pend, "} %ld\n", np);
        strbuf_addstr(&size, "idsync_connector_space_objects");
        label(&size, "connector", name, true);
        strbuf_addf(&size, "} %ld\n", ns);
    }
    head(sb, "idsync_pending_exports", "gauge",
         "Connector-space objects with a pending, in-flight or failed export.");
    strbuf_addbuf(sb, &pend);
    head(sb, "idsync_connector_space_objects", "gauge", "Objects in each connector space.");
    strbuf_addbuf(sb, &size);
    if (store_mv_count(d->http_store, &mv, &err) == IDS_OK) {
        head(sb, "idsync_metaverse_objects", "gauge", "Objects in the metaverse.");
        strbuf_addf(sb, "idsync_metaverse_objects %ld\n", mv);
    }
    strbuf_release(&pend);
    strbuf_release(&size);
}

void serve_metrics(struct serve_daemon *d, struct serve_reply *r)
{
    struct strbuf *sb = &r->body;
    size_t queued = 0;
    size_t i;

    r->status = 200;
    r->ctype = "text/plain; version=0.0.4; charset=utf-8";
    strbuf_reset(sb);
    head(sb, "idsync_up", "gauge", "The idsync daemon answers.");
    strbuf_addstr(sb, "idsync_up 1\n");
    head(sb, "idsync_info", "gauge", "Version of the running daemon.");
    strbuf_addstr(sb, "idsync_info");
    label(sb, "version", IDSYNC_VERSION, true);
    strbuf_addstr(sb, "} 1\n");
    head(sb, "idsync_start_timestamp_seconds", "gauge", "When the daemon started (Unix time).");
    strbuf_addf(sb, "idsync_start_timestamp_seconds %.3f\n", (double)d->started_us / 1e6);

    pthread_mutex_lock(&d->mu);
    for (i = 0; i < d->nreqs; i++) {
        queued += d->reqs[i]->state == SERVE_REQ_QUEUED;
    }
    head(sb, "idsync_cycle_running", "gauge", "1 while a cycle runs.");
    strbuf_addf(sb, "idsync_cycle_running %d\n", d->current != NULL);
    head(sb, "idsync_cycles_queued", "gauge", "Cycles asked for and not started yet.");
    strbuf_addf(sb, "idsync_cycles_queued %zu\n", queued);
    head(sb, "idsync_next_cycle_timestamp_seconds", "gauge",
         "When the next scheduled cycle starts (Unix time; 0 = none).");
    strbuf_addf(sb, "idsync_next_cycle_timestamp_seconds %.3f\n", (double)d->next_run_us / 1e6);
    head(sb, "idsync_last_successful_cycle_timestamp_seconds", "gauge",
         "End of the last cycle that finished, with or without object errors (Unix time; 0 = "
         "never).");
    strbuf_addf(sb, "idsync_last_successful_cycle_timestamp_seconds %.3f\n",
                (double)d->last_success_us / 1e6);
    head(sb, "idsync_config_reload_failed", "gauge",
         "1 when the last reload was rejected (the previous configuration still runs).");
    strbuf_addf(sb, "idsync_config_reload_failed %d\n", d->reload_error != NULL);
    pthread_mutex_unlock(&d->mu);

    metrics_totals(d, sb);
    metrics_last_runs(d, sb);
    metrics_store(d, sb);
}
