/* daemon.c - `idsync serve`: start-up, signals, the scheduler and its
 * requests, configuration reload, automatic full steps. See serve.h. */
#include "serve/serve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cmd/cmd.h"
#include "engine/engine.h"
#include "notify/notify.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/spool.h"
#include "util/banned.h"

#define LOCK_RETRY_SECONDS 60

int64_t serve_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A logfmt value: quoted, with " and \ escaped, newlines flattened. */
const char *serve_logq(struct strbuf *sb, const char *s)
{
    strbuf_reset(sb);
    strbuf_addch(sb, '"');
    for (; s != NULL && *s; s++) {
        if (*s == '"' || *s == '\\') {
            strbuf_addch(sb, '\\');
            strbuf_addch(sb, *s);
        } else if (*s == '\n' || *s == '\r') {
            strbuf_addch(sb, ' ');
        } else {
            strbuf_addch(sb, *s);
        }
    }
    strbuf_addch(sb, '"');
    return sb->buf;
}

static void request_free(struct serve_request *r)
{
    if (r == NULL) {
        return;
    }
    free(r->message);
    strbuf_release(&r->report);
    free(r);
}

/* Drop the oldest finished requests beyond SERVE_REQUESTS_KEPT (mu held). */
static void prune_requests(struct serve_daemon *d)
{
    size_t done = 0;
    size_t i;
    size_t j;

    for (i = 0; i < d->nreqs; i++) {
        done += d->reqs[i]->state == SERVE_REQ_DONE;
    }
    for (i = 0, j = 0; i < d->nreqs; i++) {
        if (done > SERVE_REQUESTS_KEPT && d->reqs[i]->state == SERVE_REQ_DONE) {
            request_free(d->reqs[i]);
            done--;
            continue;
        }
        d->reqs[j++] = d->reqs[i];
    }
    d->nreqs = j;
}

int64_t serve_enqueue(struct serve_daemon *d, bool full, bool dry_run, const char *origin)
{
    struct serve_request *r;
    int64_t id = 0;
    size_t queued = 0;
    size_t i;

    pthread_mutex_lock(&d->mu);
    for (i = 0; i < d->nreqs; i++) {
        queued += d->reqs[i]->state == SERVE_REQ_QUEUED;
    }
    prune_requests(d);
    if (d->stopping || queued >= SERVE_REQUESTS_KEPT || d->nreqs >= ARRAY_SIZE(d->reqs)) {
        goto done;
    }
    r = xcalloc(1, sizeof(*r));
    r->id = ++d->next_id;
    r->full = full;
    r->dry_run = dry_run;
    r->origin = origin;
    r->state = SERVE_REQ_QUEUED;
    r->queued_us = serve_now_us();
    strbuf_init(&r->report, 0);
    r->report.max = SERVE_REPORT_MAX;
    d->reqs[d->nreqs++] = r;
    id = r->id;
    pthread_cond_signal(&d->cond);

done:
    pthread_mutex_unlock(&d->mu);
    return id;
}

void serve_request_reload(struct serve_daemon *d)
{
    pthread_mutex_lock(&d->mu);
    d->reload = true;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->mu);
}

/* ---- signals -------------------------------------------------------- */

static void signal_set(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
}

static void *signal_thread(void *arg)
{
    struct serve_daemon *d = arg;
    sigset_t set;
    int sig = 0;

    signal_set(&set);
    for (;;) {
        if (sigwait(&set, &sig) != 0) {
            continue;
        }
        if (sig == SIGHUP) {
            log_info("signal", "signal=HUP action=reload");
            serve_request_reload(d);
            continue;
        }
        pthread_mutex_lock(&d->mu);
        if (d->stopping) {
            pthread_mutex_unlock(&d->mu);
            /* The second request: leave now. Every step can be killed at any
             * instant (in-flight exports are marked before they are sent),
             * so the store stays consistent. */
            log_warn("signal", "signal=%s action=exit-now", sig == SIGINT ? "INT" : "TERM");
            _exit(EXIT_OK);
        }
        /* logged before the main thread is woken: it may exit at once,
         * and must not find this thread in the middle of a log line */
        log_info("signal", "signal=%s action=stop-after-current-batch",
                 sig == SIGINT ? "INT" : "TERM");
        d->stopping = true;
        d->stop = 1;
        pthread_cond_signal(&d->cond);
        pthread_mutex_unlock(&d->mu);
    }
    return NULL;
}

/* ---- reload ----------------------------------------------------------- */

static bool same_str(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return strcmp(a, b) == 0;
}

static void do_reload(struct serve_daemon *d)
{
    struct config *cfg = NULL;
    struct config *old;
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf q = STRBUF_INIT;
    enum ids_err ret;

    ret = config_load(d->config_path, &cfg, &err);
    if (ret != IDS_OK) {
        log_error("config-reload-rejected", "file=%s error=%s keeping=previous", d->config_path,
                  serve_logq(&q, err.msg));
        pthread_mutex_lock(&d->mu);
        free(d->reload_error);
        d->reload_error = xstrdup(err.msg);
        d->reload_error_us = serve_now_us();
        pthread_mutex_unlock(&d->mu);
        goto done;
    }
    if (!same_str(cfg->store, d->cfg->store)) {
        log_warn("config-reload", "changed=store note=%s",
                 serve_logq(&q, "the store is reopened only by a restart"));
    }
    if (!same_str(config_get_str(&cfg->serve, "listen"),
                  config_get_str(&d->cfg->serve, "listen"))) {
        log_warn("config-reload", "changed=serve.listen note=%s",
                 serve_logq(&q, "the listening address changes only by a restart"));
    }
    pthread_rwlock_wrlock(&d->cfg_lock);
    old = d->cfg;
    d->cfg = cfg;
    d->config_loaded_us = serve_now_us();
    pthread_rwlock_unlock(&d->cfg_lock);
    config_free(old);
    pthread_mutex_lock(&d->mu);
    free(d->reload_error);
    d->reload_error = NULL;
    pthread_mutex_unlock(&d->mu);
    log_info("config-reload", "file=%s connectors=%zu schedule=%lds", d->config_path,
             cfg->nconnectors, cfg->schedule_seconds);

done:
    strbuf_release(&q);
}

/* ---- one cycle ------------------------------------------------------- */

/* Put `reason` in front of the message of run `id` (why it was a full step). */
static void annotate_run(struct store *s, int64_t id, const char *reason)
{
    struct run_record r = {0};
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf msg = STRBUF_INIT;

    if (id <= 0 || store_run_get(s, id, &r, &err) != IDS_OK) {
        goto done; /* nothing recorded: the log line carries the reason */
    }
    strbuf_addstr(&msg, reason);
    if (r.message != NULL && r.message[0] != '\0') {
        strbuf_addstr(&msg, ". ");
        strbuf_addstr(&msg, r.message);
    }
    free(r.message);
    r.message = strbuf_detach(&msg, NULL);
    if (store_run_finish(s, &r, &err) != IDS_OK) {
        log_warn("run-annotate", "run=%lld error=%s", (long long)id, err.msg);
    }

done:
    run_record_release(&r);
    strbuf_release(&msg);
}

static void log_run(const char *event, const struct run_record *run, enum ids_err ret,
                    const char *reason)
{
    struct strbuf q = STRBUF_INIT;
    struct strbuf q2 = STRBUF_INIT;

    log_msg(ret == IDS_OK ? LOG_INFO : LOG_WARN, event,
            "run=%lld step=%s connector=%s status=%s result=%s reason=%s message=%s",
            (long long)run->id, run->step ? run->step : "-", run->connector ? run->connector : "-",
            run_status_name(run->status), ids_err_name(ret), serve_logq(&q, reason),
            serve_logq(&q2, run->message));
    strbuf_release(&q);
    strbuf_release(&q2);
}

static int status_rank(enum run_status st)
{
    switch (st) {
    case RUN_SUCCESS:
        return 0;
    case RUN_COMPLETED_WITH_ERRORS:
        return 1;
    case RUN_STOPPED_THRESHOLD:
    case RUN_STOPPED_ERROR_LIMIT:
        return 2;
    default:
        return 3;
    }
}

/* Count an automatic step in the request's result (the worst run wins). */
static void request_add_step(struct serve_request *req, const struct run_record *run,
                             enum ids_err ret)
{
    int code = engine_exit_code(ret, run);

    if (run->id > 0 && req->nauto < ARRAY_SIZE(req->auto_runs)) {
        req->auto_runs[req->nauto++] = run->id;
    }
    if (code > req->exit_code) {
        req->exit_code = code;
    }
    if (status_rank(run->status) > status_rank(req->status)) {
        req->status = run->status;
    }
}

/* Full import of connectors whose scope changed, full sync when the rules
 * changed: before the delta cycle, each recorded with its reason. */
static void automatic_full_steps(struct serve_daemon *d, struct engine *eng,
                                 struct serve_request *req)
{
    struct config *cfg = d->cfg;
    struct strbuf fp = STRBUF_INIT;
    struct strbuf reason = STRBUF_INIT;
    struct ids_error err = IDS_ERROR_INIT;
    bool first;
    enum ids_err ret;
    size_t i;

    for (i = 0; i < cfg->nconnectors && !d->stop; i++) {
        struct connector_config *cc = &cfg->connectors[i];
        struct run_record run = {0};

        if (!engine_scope_changed(d->store, cc, &fp, &first) ||
            engine_connector_scope_waits(eng, cc->name)) {
            /* unchanged, or a target read in full by the cycle's confirming
             * import, after the exports that move entries into its scope */
            continue;
        }
        strbuf_reset(&reason);
        strbuf_addf(&reason,
                    first ? "Automatic full import: no fingerprint of the scope of connector %s "
                            "(object types, filters, attributes) is recorded yet"
                          : "Automatic full import: the scope of connector %s (object types, "
                            "filters, attributes) changed since the last cycle",
                    cc->name);
        log_info("auto-full-import", "connector=%s reason=%s", cc->name,
                 first ? "first-cycle" : "scope-changed");
        ids_error_clear(&err);
        ret = engine_import(eng, cc->name, true, &run, &err);
        if (run.message == NULL && ret != IDS_OK) {
            run.message = xstrdup(err.msg);
        }
        /* a full import that finished has stored the scope's fingerprint */
        annotate_run(d->store, run.id, reason.buf);
        request_add_step(req, &run, ret);
        run_record_release(&run);
    }
    if (!d->stop) {
        struct run_record run = {0};

        if (engine_rules_changed(d->store, cfg, &fp, &first)) {
            strbuf_reset(&reason);
            strbuf_addstr(&reason,
                          first ? "Automatic full sync: no fingerprint of the metaverse rules "
                                  "(joins, flows, provisioning) is recorded yet"
                                : "Automatic full sync: the metaverse rules (joins, flows, "
                                  "provisioning) changed since the last cycle");
            log_info("auto-full-sync", "reason=%s", first ? "first-cycle" : "rules-changed");
            ids_error_clear(&err);
            ret = engine_sync(eng, true, &run, &err);
            if (run.message == NULL && ret != IDS_OK) {
                run.message = xstrdup(err.msg);
            }
            /* a full sync that finished has stored the rules' fingerprint */
            annotate_run(d->store, run.id, reason.buf);
            request_add_step(req, &run, ret);
            run_record_release(&run);
        }
    }
    strbuf_release(&fp);
    strbuf_release(&reason);
}

static void save_all_fingerprints(struct serve_daemon *d)
{
    struct strbuf fp = STRBUF_INIT;
    struct strbuf key = STRBUF_INIT;
    size_t i;

    for (i = 0; i < d->cfg->nconnectors; i++) {
        strbuf_reset(&fp);
        engine_fingerprint_connector(&d->cfg->connectors[i], &fp);
        engine_fingerprint_key(&key, d->cfg->connectors[i].name);
        engine_fingerprint_save(d->store, key.buf, fp.buf);
    }
    strbuf_reset(&fp);
    engine_fingerprint_rules(d->cfg, &fp);
    engine_fingerprint_save(d->store, ENGINE_META_RULES, fp.buf);
    strbuf_release(&fp);
    strbuf_release(&key);
}

static bool cycle_finished(enum run_status st)
{
    return st == RUN_SUCCESS || st == RUN_COMPLETED_WITH_ERRORS;
}

/* A dry run's report, from its spool into the request (what the API pages
 * through), unless it passes SERVE_REPORT_MAX: then dropped whole, with a
 * log line, before any of it is read into memory. */
static void keep_report(struct serve_daemon *d, struct serve_request *req, FILE *spool)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf q = STRBUF_INIT;
    struct strbuf text = STRBUF_INIT;
    char buf[65536];
    long size = -1;
    size_t n;

    if (spool_finish(spool, &err) == IDS_OK && fseek(spool, 0, SEEK_END) == 0) {
        size = ftell(spool);
        rewind(spool);
    }
    if (size < 0) {
        log_warn("dry-run-report", "request=%lld note=%s", (long long)req->id,
                 serve_logq(&q, err.msg[0] ? err.msg : "the report could not be read back"));
    } else if ((size_t)size > SERVE_REPORT_MAX) {
        log_warn("dry-run-report", "request=%lld bytes=%ld note=%s", (long long)req->id, size,
                 serve_logq(&q, "report larger than 16 MiB: dropped"));
    } else {
        while ((n = fread(buf, 1, sizeof(buf), spool)) > 0) {
            strbuf_add(&text, buf, n);
        }
        /* its size was checked: the text itself moves into the request */
        pthread_mutex_lock(&d->mu);
        strbuf_release(&req->report);
        req->report = text;
        req->report.max = SERVE_REPORT_MAX;
        pthread_mutex_unlock(&d->mu);
        strbuf_init(&text, 0);
    }
    strbuf_release(&text);
    strbuf_release(&q);
}

/* Run one request: lock, automatic full steps, the cycle, unlock. */
static void run_request(struct serve_daemon *d, struct serve_request *req)
{
    struct engine_opts eopts = {0};
    struct engine *eng = NULL;
    struct run_record run = {0};
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf holder = STRBUF_INIT;
    struct strbuf q = STRBUF_INIT;
    FILE *report_fp = NULL;
    bool locked = false;
    enum ids_err ret;

    req->status = RUN_SUCCESS;
    req->exit_code = EXIT_OK;
    strbuf_addf(&holder, "idsync serve pid=%ld request=%lld", (long)getpid(), (long long)req->id);
    ret = store_lock_acquire(d->store, holder.buf, &err);
    if (ret != IDS_OK) {
        log_warn("cycle-skipped", "request=%lld origin=%s error=%s", (long long)req->id,
                 req->origin, serve_logq(&q, err.msg));
        req->exit_code = ret == IDS_EBUSY ? EXIT_GUARD : EXIT_UNREACHABLE;
        req->status = RUN_FAILED;
        goto done;
    }
    locked = true;
    if (req->dry_run) {
        report_fp = spool_open(&err);
        if (report_fp == NULL) {
            log_warn("dry-run-report", "request=%lld note=%s", (long long)req->id,
                     serve_logq(&q, err.msg));
            ids_error_clear(&err);
        }
    }
    eopts.dry_run = req->dry_run;
    eopts.report = report_fp;
    eopts.stop = &d->stop;
    ret = engine_new(d->cfg, d->store, &eopts, &eng, &err);
    if (ret != IDS_OK) {
        log_error("cycle-failed", "request=%lld error=%s", (long long)req->id,
                  serve_logq(&q, err.msg));
        req->exit_code = EXIT_CONFIG;
        req->status = RUN_FAILED;
        goto done;
    }
    log_info("cycle-start", "request=%lld origin=%s full=%s dry_run=%s", (long long)req->id,
             req->origin, req->full ? "true" : "false", req->dry_run ? "true" : "false");
    if (!req->full && !req->dry_run) {
        automatic_full_steps(d, eng, req);
    }
    if (d->stop) {
        ret = ids_error_set(&err, IDS_EINTR, "stopped by SIGTERM before the cycle started");
        req->status = RUN_FAILED;
        req->exit_code = EXIT_UNREACHABLE;
        goto done;
    }
    ids_error_clear(&err);
    ret = engine_cycle(eng, req->full, &run, &err);
    if (run.message == NULL && ret != IDS_OK) {
        run.message = xstrdup(err.msg);
    }
    if (req->full && run.id > 0) {
        annotate_run(d->store, run.id,
                     strcmp(req->origin, "api") == 0 ? "Full cycle requested (sync-now --full)"
                                                     : "Full cycle");
    }
    req->run = run.id;
    {
        int code = engine_exit_code(ret, &run);

        if (code > req->exit_code) {
            req->exit_code = code;
        }
        if (status_rank(run.status) >= status_rank(req->status)) {
            req->status = run.status;
        }
    }
    log_run("cycle-end", &run, ret, req->origin);
    if (!req->dry_run && run.id > 0) {
        struct ids_error nerr = IDS_ERROR_INIT;

        /* logged and recorded by notify; never changes the run's outcome */
        (void)notify_after_run(d->cfg, d->store, &run, &nerr);
    }
    if (ret == IDS_OK && req->full && !req->dry_run) {
        save_all_fingerprints(d);
    }
    if (!req->dry_run && cycle_finished(run.status)) {
        pthread_mutex_lock(&d->mu);
        d->last_success_us = run.end_us ? run.end_us : serve_now_us();
        pthread_mutex_unlock(&d->mu);
    }

done:
    req->code = ret;
    if (ret != IDS_OK && req->message == NULL) {
        req->message = xstrdup(run.message ? run.message : err.msg);
    } else if (run.message != NULL && req->message == NULL) {
        req->message = xstrdup(run.message);
    }
    engine_free(eng);
    if (report_fp != NULL) {
        keep_report(d, req, report_fp);
        fclose(report_fp);
    }
    if (locked) {
        store_lock_release(d->store);
    }
    run_record_release(&run);
    strbuf_release(&holder);
    strbuf_release(&q);
}

/* ---- the scheduler ---------------------------------------------------- */

static struct serve_request *next_queued(struct serve_daemon *d)
{
    size_t i;

    for (i = 0; i < d->nreqs; i++) {
        if (d->reqs[i]->state == SERVE_REQ_QUEUED) {
            return d->reqs[i];
        }
    }
    return NULL;
}

static void scheduler(struct serve_daemon *d)
{
    int64_t interval_us;
    int64_t next_mono;

    interval_us = (int64_t)d->cfg->schedule_seconds * 1000000;
    next_mono = d->initial_cycle ? mono_us() : mono_us() + interval_us;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        struct serve_request *req;
        int64_t now = mono_us();
        int64_t started;
        bool scheduled = false;

        interval_us = (int64_t)d->cfg->schedule_seconds * 1000000;
        d->next_run_us = interval_us > 0 ? serve_now_us() + (next_mono - now) : 0;
        if (d->stopping) {
            break;
        }
        if (d->reload) {
            d->reload = false;
            pthread_mutex_unlock(&d->mu);
            do_reload(d);
            pthread_mutex_lock(&d->mu);
            continue;
        }
        req = next_queued(d);
        if (req == NULL && interval_us > 0 && now >= next_mono) {
            pthread_mutex_unlock(&d->mu);
            serve_enqueue(d, false, false, "schedule");
            pthread_mutex_lock(&d->mu);
            req = next_queued(d);
            scheduled = true;
        }
        if (req == NULL) {
            struct timespec ts;
            int64_t wait = interval_us > 0 ? next_mono - now : 3600 * 1000000LL;

            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += wait / 1000000;
            ts.tv_nsec += (wait % 1000000) * 1000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&d->cond, &d->mu, &ts);
            continue;
        }
        req->state = SERVE_REQ_RUNNING;
        req->started_us = serve_now_us();
        d->current = req;
        started = mono_us();
        pthread_mutex_unlock(&d->mu);

        run_request(d, req);

        pthread_mutex_lock(&d->mu);
        req->state = SERVE_REQ_DONE;
        req->done_us = serve_now_us();
        d->current = NULL;
        if (scheduled) {
            if (req->code == IDS_EBUSY) {
                next_mono = mono_us() + LOCK_RETRY_SECONDS * 1000000LL;
            } else {
                /* the interval runs from the start of the last scheduled cycle */
                next_mono = started + interval_us;
                if (next_mono < mono_us() + 1000000) {
                    next_mono = mono_us() + 1000000;
                }
            }
        }
        pthread_cond_broadcast(&d->cond);
    }
    pthread_mutex_unlock(&d->mu);
}

/* ---- start-up --------------------------------------------------------- */

static enum ids_err read_token(struct serve_daemon *d, struct ids_error *err)
{
    const struct config_value *v = config_values_get(&d->cfg->serve, "token_file");
    struct strbuf tok = STRBUF_INIT;
    char *path = NULL;
    enum ids_err ret = IDS_OK;

    tok.max = 4096;
    if (v != NULL && v->str != NULL && v->str[0] != '\0') {
        path = config_path(d->cfg, v->str);
        ret = strbuf_read_file(&tok, path, err);
        if (ret != IDS_OK) {
            ids_error_prefix(err, "serve.token_file");
            goto done;
        }
    } else {
        ret = config_secret(&d->cfg->serve, "token", &tok, err);
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
            goto done;
        }
        if (ret != IDS_OK) {
            goto done;
        }
    }
    strbuf_trim(&tok);
    if (tok.len < 16) {
        ret = ids_error_set(err, IDS_ECONFIG,
                            "serve.token_file %s: the token must be at least 16 characters",
                            path ? path : "");
        goto done;
    }
    d->token = strbuf_detach(&tok, NULL);

done:
    free(path);
    strbuf_release(&tok);
    return ret;
}

/* The end time of the newest finished cycle in the store. */
static void load_history(struct serve_daemon *d)
{
    struct run_record *runs = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    size_t n = 0;
    size_t i;

    if (store_runs_list(d->store, 0, 500, &runs, &n, &err) != IDS_OK) {
        log_warn("history", "error=%s", err.msg);
        return;
    }
    d->totals_seen = n > 0 ? runs[0].id : 0;
    for (i = 0; i < n; i++) {
        if (strcmp(runs[i].step, "cycle") == 0 && !runs[i].dry_run &&
            cycle_finished(runs[i].status)) {
            d->last_success_us = runs[i].end_us;
            break;
        }
    }
    for (i = 0; i < n; i++) {
        run_record_release(&runs[i]);
    }
    free(runs);
}

static void daemon_free(struct serve_daemon *d)
{
    size_t i;

    for (i = 0; i < d->nreqs; i++) {
        request_free(d->reqs[i]);
    }
    for (i = 0; i < d->ntotals; i++) {
        free(d->totals[i].step);
        free(d->totals[i].connector);
    }
    free(d->totals);
    json_decref(d->conn_cache);
    store_close(d->store);
    store_close(d->http_store);
    config_free(d->cfg);
    free(d->config_path);
    free(d->listen);
    free(d->bound);
    free(d->token);
    free(d->tls_cert);
    free(d->tls_key);
    free(d->reload_error);
    pthread_rwlock_destroy(&d->cfg_lock);
    pthread_mutex_destroy(&d->http_mu);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cond);
    free(d);
}

int serve_main(const struct serve_options *opts, struct config *cfg)
{
    struct serve_daemon *d = xcalloc(1, sizeof(*d));
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf q = STRBUF_INIT;
    pthread_condattr_t cattr;
    pthread_t sigthr;
    bool sig_started = false;
    sigset_t set;
    const char *listen;
    int ret = EXIT_OK;

    d->config_path = xstrdup(opts->config_path);
    d->cfg = cfg;
    d->initial_cycle = opts->initial_cycle;
    d->started_us = serve_now_us();
    d->config_loaded_us = d->started_us;
    pthread_rwlock_init(&d->cfg_lock, NULL);
    pthread_mutex_init(&d->http_mu, NULL);
    pthread_mutex_init(&d->mu, NULL);
    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cond, &cattr);
    pthread_condattr_destroy(&cattr);
    d->console = config_get_bool(&cfg->serve, "console");
    listen = config_get_str(&cfg->serve, "listen");
    d->listen = xstrdup(listen && listen[0] ? listen : "127.0.0.1:8470");

    /* Signals go to the signal thread only: block them before any thread
     * (libmicrohttpd's included) is created. */
    signal_set(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (read_token(d, &err) != IDS_OK) {
        log_error("serve-start", "error=%s", serve_logq(&q, err.msg));
        ret = EXIT_CONFIG;
        goto done;
    }
    if (store_open(cfg->store, &d->store, &err) != IDS_OK ||
        store_open(cfg->store, &d->http_store, &err) != IDS_OK) {
        log_error("serve-start", "store=%s error=%s", cfg->store, serve_logq(&q, err.msg));
        ret = err.code == IDS_ECONFIG ? EXIT_CONFIG : EXIT_UNREACHABLE;
        goto done;
    }
    load_history(d);
    if (serve_http_start(d, &err) != IDS_OK) {
        log_error("serve-start", "listen=%s error=%s", d->listen, serve_logq(&q, err.msg));
        ret = err.code == IDS_ECONFIG ? EXIT_CONFIG : EXIT_UNREACHABLE;
        goto done;
    }
    if (pthread_create(&sigthr, NULL, signal_thread, d) == 0) {
        sig_started = true;
    }
    log_info("serve-start",
             "pid=%ld listen=%s url=%s://%s/ tls=%s auth=%s schedule=%lds "
             "config=%s store=%s",
             (long)getpid(), d->listen, d->tls ? "https" : "http", d->bound, d->tls ? "on" : "off",
             d->token ? "bearer" : "none", cfg->schedule_seconds, d->config_path, cfg->store);

    scheduler(d);

    log_info("serve-stop", "pid=%ld", (long)getpid());
    serve_http_stop(d);

done:
    if (sig_started) {
        pthread_cancel(sigthr);
        pthread_join(sigthr, NULL);
    }
    daemon_free(d);
    strbuf_release(&q);
    return ret;
}
