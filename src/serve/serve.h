/* serve.h - the daemon behind `idsync serve`: scheduler, HTTP API, web
 * console and metrics.
 *
 * Threads:
 *   - the scheduler (the thread that calls serve_main) runs every cycle, one
 *     at a time, with its own store handle (`store`), under the store lock;
 *   - a signal thread turns SIGTERM/SIGINT/SIGHUP into flags (sigwait);
 *   - libmicrohttpd's thread answers HTTP with a second store handle
 *     (`http_store`, guarded by http_mu), so that the API stays readable
 *     while a cycle writes.
 * The configuration is swapped (SIGHUP, POST /api/reload) by the scheduler
 * only, between cycles, under the write side of cfg_lock; HTTP handlers hold
 * its read side while they look at d->cfg.
 *
 * docs/internals/serve.md is not written; docs/operations.md describes the
 * daemon for administrators.
 */
#ifndef IDSYNC_SERVE_H
#define IDSYNC_SERVE_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "store/store.h"
#include "util/error.h"
#include "util/strbuf.h"

/* ---- the entry point (src/cmd/serve.c) --------------------------------- */

struct serve_options {
    const char *config_path; /* the file to reload on SIGHUP */
    bool initial_cycle;      /* run a cycle at start (default) instead of after one interval */
};

/* Run the daemon until SIGTERM/SIGINT. Takes ownership of `cfg` (loaded and
 * validated by the caller). Returns the process exit status (0 after a clean
 * stop, 3 for a bad serve: configuration, 4 when the store cannot be opened
 * or the address cannot be bound), after logging why. */
int serve_main(const struct serve_options *opts, struct config *cfg);

/* ---- internals shared by the files of src/serve/ ------------------------ */

enum serve_req_state { SERVE_REQ_QUEUED, SERVE_REQ_RUNNING, SERVE_REQ_DONE };

/* One cycle asked for: by the schedule, the API (sync-now) or a restart. */
struct serve_request {
    int64_t id;         /* 1, 2, ... per daemon */
    bool full;          /* full import + full sync */
    bool dry_run;       /* report only, store rolled back */
    const char *origin; /* "schedule" or "api" (static strings) */
    enum serve_req_state state;
    int64_t queued_us, started_us, done_us; /* wall clock, microseconds */
    int64_t run;                            /* the cycle run (0 until known, or when none ran) */
    size_t nauto;                           /* automatic full steps run before the cycle */
    int64_t auto_runs[32];                  /* ... their runs */
    enum ids_err code;                      /* what engine_cycle returned (or IDS_EBUSY ...) */
    enum run_status status;
    int exit_code;        /* as `idsync cycle` would exit */
    char *message;        /* why it stopped or failed; may be NULL */
    struct strbuf report; /* dry run: JSON lines, capped at SERVE_REPORT_MAX */
};

#define SERVE_REPORT_MAX    (16u * 1024u * 1024u)
#define SERVE_REQUESTS_KEPT 64

/* Totals since the daemon started, per (step, connector), for /metrics. */
struct serve_total {
    char *step;
    char *connector;           /* "" for sync and cycle */
    long runs[RUN_FAILED + 1]; /* per run_status */
    double seconds;            /* sum of durations */
    struct run_counters counters;
};

struct serve_daemon {
    /* fixed at start */
    char *config_path; /* the file reloaded on SIGHUP (a copy) */
    char *listen;      /* as configured ("127.0.0.1:8470") */
    char *bound;       /* host:port actually bound (port 0 resolved) */
    bool loopback;     /* every address bound is a loopback one */
    bool tls;
    bool console;   /* serve.console: serve the web console at / */
    char *token;    /* bearer token or NULL (loopback without token_file) */
    char *tls_cert; /* PEM, kept while libmicrohttpd runs */
    char *tls_key;
    int64_t started_us;
    bool initial_cycle;

    pthread_rwlock_t cfg_lock; /* see above */
    struct config *cfg;
    int64_t config_loaded_us;

    struct store *store;     /* scheduler's */
    pthread_mutex_t http_mu; /* guards http_store and the metrics totals */
    struct store *http_store;
    size_t ntotals;
    size_t totals_alloc;
    struct serve_total *totals;
    int64_t totals_seen;    /* runs with id <= this are counted */
    void *conn_cache;       /* json_t: the counts of /api/connectors (they scan) */
    int64_t conn_cache_run; /* ... valid while the newest run is this one, */
    int64_t conn_cache_us;  /* ... computed then */

    volatile sig_atomic_t stop; /* engine_opts.stop: set on SIGTERM */

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cond;
    bool stopping;
    bool reload;
    char *reload_error; /* last rejected reload, NULL when the last one worked */
    int64_t reload_error_us;
    int64_t next_run_us; /* wall clock of the next scheduled cycle, 0 = none */
    int64_t next_id;
    struct serve_request *current; /* running, or NULL */
    size_t nreqs;                  /* requests, oldest first: queued, running, done (kept) */
    struct serve_request *reqs[SERVE_REQUESTS_KEPT * 2];
    int64_t last_success_us; /* end of the last cycle that finished (success or with errors) */
    struct MHD_Daemon *mhd;
};

int64_t serve_now_us(void);
/* A value for a logfmt line: quoted and escaped into sb; returns sb->buf. */
const char *serve_logq(struct strbuf *sb, const char *s);

/* daemon.c: queue a cycle (POST /api/cycle). Returns the request id, or 0
 * when the queue is full or the daemon is stopping. */
int64_t serve_enqueue(struct serve_daemon *d, bool full, bool dry_run, const char *origin);
/* Ask the scheduler to reload the configuration (SIGHUP, POST /api/reload). */
void serve_request_reload(struct serve_daemon *d);

/* http.c */
enum ids_err serve_http_start(struct serve_daemon *d, struct ids_error *err);
void serve_http_stop(struct serve_daemon *d);

/* One HTTP answer built by a handler. */
struct serve_reply {
    unsigned status;   /* 200, 404 ... */
    const char *ctype; /* static string */
    struct strbuf body;
};

/* A parsed request handed to the handlers of api.c. */
struct serve_call {
    struct MHD_Connection *conn;
    const char *method;
    const char *path; /* URL path without the query */
    const char *body; /* POST body (NUL-terminated) or "" */
    size_t body_len;
};
const char *serve_arg(const struct serve_call *c, const char *name); /* query value or NULL */

/* api.c: answer /api/... Called with cfg_lock (read) and http_mu held. */
void serve_api(struct serve_daemon *d, const struct serve_call *c, struct serve_reply *r);
/* metrics.c: /metrics, same locks. */
void serve_metrics(struct serve_daemon *d, struct serve_reply *r);
/* metrics.c: count finished runs newer than d->totals_seen (http_mu held). */
void serve_totals_update(struct serve_daemon *d);

/* The fingerprints that decide an automatic full import or full sync are
 * the engine's (engine.h, engine_fingerprint_*): the command line's steps
 * use them too. */

/* The embedded console (console_assets.c, generated at build time). */
struct console_asset {
    const char *path;  /* "/index.html" */
    const char *ctype; /* "text/html; charset=utf-8" */
    const unsigned char *data;
    size_t len;
};
extern const struct console_asset console_assets[]; /* ends with path == NULL */

#endif
