/* engine.h - the steps: import, sync, export, and the cycle.
 *
 * An engine binds one loaded configuration to one open store. Each step
 * function runs one step as a run recorded in run history (store_run_*),
 * with counters and per-object errors, and returns:
 *   IDS_OK          the run finished (its status may still be
 *                   completed-with-errors: see run->status)
 *   IDS_ETHRESHOLD  stopped by a deletion threshold or the import guard
 *   IDS_EERRLIMIT   stopped by the error limit
 *   other           failed (connected system or store unreachable ...);
 *                   the run is recorded as failed with err's message.
 * In every case *run (when not NULL) receives the run record (caller
 * releases it with run_record_release).
 *
 * Connections are opened lazily, once per engine, and closed by
 * engine_free().
 */
#ifndef IDSYNC_ENGINE_H
#define IDSYNC_ENGINE_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "config.h"
#include "store/store.h"
#include "util/error.h"
#include "util/strbuf.h"

struct engine;

struct engine_opts {
    bool dry_run;       /* export/cycle: report, write nothing anywhere, store unchanged */
    long allow_deletes; /* export: let this many deletes through a threshold (0 = as configured) */
    bool progress;      /* progress bar on stderr (the caller checks isatty) */
    /* Dry-run report sink: one JSON object per line per pending export
     * ({"connector","op","type","anchor","dn","new_dn","changes":[{"attr","op",
     * "old":[...],"new":[...]}]}), or NULL. Owned by the caller. */
    FILE *report;
    /* Stop request, or NULL (appended for the daemon, issue 6: its SIGTERM
     * handler sets *stop to non-zero). When set, a step finishes and commits
     * the batch it is in, records its run as failed with a message saying it
     * was interrupted, and returns IDS_EINTR; a cycle starts no further step.
     * The store is left consistent: running the step again completes it. */
    const volatile sig_atomic_t *stop;
};

enum ids_err engine_new(struct config *cfg, struct store *store, const struct engine_opts *opts,
                        struct engine **out, struct ids_error *err);
void engine_free(struct engine *eng); /* NULL-safe */

/* import CONNECTOR [--full]. Without full, a delta import from the stored
 * watermark; falls back to a full import (recording why) when the connector
 * has no delta or answers IDS_EFULLREQUIRED. */
enum ids_err engine_import(struct engine *eng, const char *connector, bool full,
                           struct run_record *run, struct ids_error *err);
enum ids_err engine_sync(struct engine *eng, bool full, struct run_record *run,
                         struct ids_error *err);
enum ids_err engine_export(struct engine *eng, const char *connector, struct run_record *run,
                           struct ids_error *err);
/* import every connector, sync, export every target, confirming import of
 * every exported-to connector. The cycle is a run too (step "cycle"), the
 * steps its children (parent). With opts.dry_run: imports and sync happen
 * inside a store dry run, the pending exports are reported, nothing is sent
 * and the store is rolled back. */
enum ids_err engine_cycle(struct engine *eng, bool full, struct run_record *run,
                          struct ids_error *err);

/* preview CONNECTOR ANCHOR|DN: what a sync would do to this one object,
 * rule by rule, without writing: scope result, each join rule tried with
 * its value and candidates, projection, each inbound flow (old -> new MV
 * value), and per target the provisioning decision and the resulting
 * export. Written as JSON to `out` (an object; the CLI renders it). */
enum ids_err engine_preview(struct engine *eng, const char *connector, const char *id,
                            struct strbuf *out, struct ids_error *err);

/* Describe the pending exports of CONNECTOR as JSON lines (the same format
 * as the dry-run report) into `out`, read in one store snapshot
 * (store_read_begin: no transaction may be open). */
enum ids_err engine_pending(struct engine *eng, const char *connector, FILE *out,
                            struct ids_error *err);

/* Connector spaces (`idsync space`). One per connector the store knows,
 * configured or not (a connector renamed or removed keeps its space), in
 * the order they were created. */
struct space_info {
    char *name;
    bool configured;      /* the configuration has a connector of this name */
    long objects;         /* connector-space objects */
    long joined;          /* of them linked to a metaverse object */
    long pending_exports; /* of them with an export pending, in flight or failed */
};
enum ids_err engine_spaces(struct store *store, const struct config *cfg, struct space_info **out,
                           size_t *n, struct ids_error *err);
void space_info_free(struct space_info *v, size_t n);
/* space drop NAME: the space of a connector the configuration no longer
 * has, deleted object by object as if its source had deleted them (each
 * metaverse object recomputed from the configured sources, or deleted and
 * deprovisioned when none is left; the exports wait for the next export),
 * then its watermark, name and read state. A recorded run (step
 * "space-drop"). opts.dry_run: done inside a store dry run, the pending
 * exports of every target reported, nothing kept. IDS_EUSAGE, before any
 * run, for a configured connector or a space the store does not have. */
enum ids_err engine_space_drop(struct engine *eng, const char *name, struct run_record *run,
                               struct ids_error *err);
/* space rename FROM TO: the space of FROM (no longer configured) given to
 * connector TO of the configuration, whose own space must be empty. A
 * recorded run (step "space-rename"). IDS_EUSAGE before any run when a
 * condition does not hold, saying what to do instead. */
enum ids_err engine_space_rename(struct engine *eng, const char *from, const char *to,
                                 struct run_record *run, struct ids_error *err);

/* Fingerprints (fingerprint.c): what decides that a delta step must run in
 * full. Hex hash of one connector's scope (object types, filters,
 * attributes, references, and the options that choose what is read, such
 * as base; connection options — URL, credentials, timeouts, TLS — are left
 * out), and of every metaverse rule (scope, join, projection, flows,
 * provisioning, deprovisioning, anchor carriers). engine_import keeps the
 * connector's under ENGINE_META_CONNECTOR + name and runs a delta import
 * in full when it changed; engine_sync keeps the rules' under
 * ENGINE_META_RULES and runs a delta sync in full when they changed, each
 * saying why in its run message. */
#define ENGINE_META_RULES     "serve.fingerprint.rules"
#define ENGINE_META_CONNECTOR "serve.fingerprint.connector." /* + name */
void engine_fingerprint_connector(const struct connector_config *cc, struct strbuf *out);
void engine_fingerprint_rules(const struct config *cfg, struct strbuf *out);
/* The store_meta key of connector `connector`'s fingerprint, or of the
 * rules' (connector NULL), into key (reset first). */
void engine_fingerprint_key(struct strbuf *key, const char *connector);
/* Did connector cc's scope change since its last full import, or the
 * metaverse rules since the last full sync (the fingerprint stored for
 * them)? fp receives the fingerprint now, to store once the full step is
 * done; *first: none is stored yet (that counts as a change). */
bool engine_scope_changed(struct store *s, const struct connector_config *cc, struct strbuf *fp,
                          bool *first);
bool engine_rules_changed(struct store *s, const struct config *cfg, struct strbuf *fp,
                          bool *first);
/* A connector only written to (a target, no source) whose scope changed
 * since its last full import: its full import waits for a cycle's
 * confirming import, after the exports, since the entries a sync moves into
 * the new scope (a base moved along with the dn flow) would look deleted
 * before them. engine_import then imports it by delta, and engine_cycle
 * reads it in full after its exports. False for an unknown name. */
bool engine_connector_scope_waits(struct engine *eng, const char *connector);
/* Store `value` under `key`; a failure is logged (the next step runs in
 * full again), never returned. */
void engine_fingerprint_save(struct store *s, const char *key, const char *value);

/* Exit status for a finished run (DESIGN: 0 ok, 1 object errors, 2 guard,
 * 3 config/usage, 4 unreachable). */
int engine_exit_code(enum ids_err ret, const struct run_record *run);

#endif
