/* notify.h - telling administrators about new problems after a run.
 *
 * After a run (a step, or a cycle with its steps), notify_after_run()
 * collects the run's problems: per-object errors (code, connector, anchor,
 * DN, attribute, reason), a guard or threshold stop, an error-limit stop, a
 * failed run, and a rebuilt-source detection by the import guard. Each
 * problem has a fingerprint:
 *   object error   code + connector + anchor + attribute
 *   run problem    "run" + status class + step + connector
 * The fingerprints already notified are kept in store_meta (key
 * NOTIFY_META_SEEN) with the time they were last seen, so an unchanged
 * problem is not mailed again every cycle; a run-level problem is forgotten
 * when the same step of the same connector later succeeds, and an object
 * problem when it has not been seen for NOTIFY_FORGET_SECONDS.
 *
 * Only NEW problems trigger a report. With notify.digest_seconds > 0 the new
 * problems are queued in store_meta (NOTIFY_META_DIGEST) and one report of
 * everything queued goes out at most once per interval.
 *
 * Channels: e-mail through libcurl (notify.smtp: smtp:// with STARTTLS when
 * the server offers it - required when a user name is configured -, or
 * smtps://; user notify.username, password from notify.password, read from
 * its file or environment variable at send time), and a webhook
 * (notify.webhook: a JSON POST of the report). A failure to notify is
 * logged and appended to the run's message in run history; it never
 * changes the run's status.
 *
 * Ownership: every struct here owns its strings; release with the
 * matching *_release().
 */
#ifndef IDSYNC_NOTIFY_H
#define IDSYNC_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "store/store.h"
#include "util/error.h"
#include "util/strbuf.h"
#include "util/strvec.h"

#define NOTIFY_META_SEEN      "notify.seen"
#define NOTIFY_META_DIGEST    "notify.digest"
#define NOTIFY_META_LAST_SENT "notify.last-sent"
/* An object problem not seen again for this long is forgotten (and mailed
 * again if it comes back). */
#define NOTIFY_FORGET_SECONDS (7L * 86400)
/* Objects listed in one report; the rest are counted and `idsync errors
 * RUN` lists them. */
#define NOTIFY_MAX_LISTED 20
/* Problems kept per report (in memory and in a digest queue). */
#define NOTIFY_MAX_PROBLEMS 100000

/* One problem of a run. */
struct notify_problem {
    char *fingerprint; /* 16 hex digits */
    char *kind;        /* error code ("anchor-mismatch"), or for a run problem
                          "stopped-threshold", "stopped-error-limit", "failed",
                          "rebuilt-source" */
    bool run_level;    /* a problem of the run itself, not of one object */
    int64_t run;       /* the run it was recorded in */
    char *step;        /* run problems: the step ("full-import") */
    char *connector;   /* may be NULL */
    char *anchor;      /* may be NULL */
    char *dn;          /* may be NULL */
    char *attr;        /* may be NULL */
    char *message;     /* the reason, one paragraph */
};

/* What one report says. */
struct notify_report {
    int64_t run;            /* the run reported (a cycle or a step) */
    char *step;             /* its step */
    char *connector;        /* may be NULL */
    enum run_status status; /* its status */
    char *run_message;      /* may be NULL */
    long total_problems;    /* problems found in the run (new or not) */
    size_t nr;              /* new problems (all queued ones for a digest) */
    size_t alloc;
    struct notify_problem *v;
    bool digest;              /* a digest of several runs */
    struct strbuf errors_cmd; /* "idsync -c CONFIG errors RUN" */
    long already_reported;    /* problems left out by notify_filter_new: reported before */
    struct strvec forget;     /* fingerprints of run problems that are over
                                 (their step succeeded in this run) */
};

void notify_report_init(struct notify_report *rep);
void notify_report_release(struct notify_report *rep);
void notify_problem_release(struct notify_problem *p);

/* The hook: call after every recorded run (cycle, step, reconnect apply)
 * with the run record the engine returned. Does nothing for dry runs or
 * when neither notify.smtp nor notify.webhook is configured. Returns
 * IDS_OK when there was nothing new to say or the report went out; an
 * error when a channel failed (already logged and written into the run's
 * message): callers do not change their exit status for it. */
enum ids_err notify_after_run(struct config *cfg, struct store *store, const struct run_record *run,
                              struct ids_error *err);

/* ---- pieces, exposed for tests ------------------------------------------ */

/* Fingerprint of an object problem (code, connector, anchor, attribute) or
 * a run problem (class, step, connector) into out (16 hex digits). */
void notify_fingerprint(struct strbuf *out, bool run_level, const char *kind, const char *connector,
                        const char *anchor_or_step, const char *attr);

/* Collect every problem of `run` (and of its child runs for a cycle) into
 * rep (rep->nr problems, all of them: new or not). */
enum ids_err notify_collect(struct store *store, const struct run_record *run,
                            struct notify_report *rep, struct ids_error *err);

/* Keep in rep only the problems whose fingerprint is not in the seen set
 * stored in the store, and update the seen set (the time of `now` for
 * every problem of rep; run-level problems of steps that succeeded in
 * `run` forgotten; entries older than NOTIFY_FORGET_SECONDS dropped).
 * With `commit` false the seen set is left unchanged (previews, tests). */
enum ids_err notify_filter_new(struct store *store, const struct run_record *run,
                               struct notify_report *rep, int64_t now, bool commit,
                               struct ids_error *err);

/* The e-mail (RFC 5322 headers and a UTF-8 text body, CRLF line ends). */
void notify_build_mail(const struct notify_config *nc, const char *config_path,
                       const struct notify_report *rep, int64_t now, struct strbuf *out);
/* The subject line alone (used by the mail and the webhook). */
void notify_subject(const struct notify_report *rep, struct strbuf *out);
/* The webhook body: {"event":"idsync.problems","subject","run":{...},
 * "total_problems","new_problems","problems":[...],"command"}. */
void notify_build_json(const struct notify_report *rep, struct strbuf *out);

/* Send through the configured channels; err names the failing channel. */
enum ids_err notify_send(const struct notify_config *nc, const char *config_path,
                         const struct notify_report *rep, struct ids_error *err);

#endif
