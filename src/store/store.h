/* store.h - connector spaces, metaverse, pending exports, watermarks, runs.
 *
 * One interface, several backends (struct store_ops): sqlite.c is the
 * embedded default ("sqlite:/path/idsync.db"), a PostgreSQL backend can be
 * added without touching the engine, which never writes SQL. The engine
 * calls only the store_*() functions below; they dispatch through the ops
 * table of the open backend.
 *
 * Transactions: the engine groups work in batches:
 *   store_begin(); ...many puts...; store_commit();
 * A commit that fails (a full disk) has rolled the transaction back when
 * it returns; store_rollback after it does nothing.
 * Calls outside an explicit transaction are each their own transaction.
 * Reads see the writes of the current transaction.
 *
 * Dry run: store_dry_run_begin() opens an outer transaction; every
 * store_begin/commit inside it becomes a savepoint, and store_dry_run_end()
 * rolls everything back, leaving the store exactly as before.
 *
 * Object identity: every CS object and MV object has a store-assigned
 * int64 id (> 0, never reused within a store). Connectors have an int64 id
 * too (store_connector_id), created on first use by name.
 *
 * Ownership: objects returned through `struct cs_object **` / `struct
 * mv_object **` are the caller's (cs_object_free, mv_object_free). Objects
 * passed in are borrowed.
 */
#ifndef IDSYNC_STORE_H
#define IDSYNC_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "entry.h"
#include "util/error.h"
#include "util/strbuf.h"
#include "util/strvec.h"

struct store;

/* ---- connector-space objects ------------------------------------------ */

enum cs_import_state {
    CS_IMPORT_NONE = 0, /* nothing staged */
    CS_IMPORT_ADD,      /* staged: new object */
    CS_IMPORT_UPDATE,   /* staged: attributes or DN changed */
    CS_IMPORT_DELETE,   /* staged: gone from the connected system */
};

enum cs_export_state {
    CS_EXPORT_NONE = 0, /* no pending export */
    CS_EXPORT_PENDING,  /* pending_export waits for the next export run */
    CS_EXPORT_INFLIGHT, /* sent (or being sent): result not yet recorded */
    CS_EXPORT_FAILED,   /* last attempt failed (export_error); retried next run */
};

/* cs_object.flags */
#define CS_PROVISIONED  0x01u /* created by idsync's provisioning (not imported first) */
#define CS_DISABLED     0x02u /* deprovisioned by disabling */
#define CS_OUT_OF_SCOPE 0x04u /* failed its scope filter at the last sync */
#define CS_LEAVER_MOVE                                                                             \
    0x10u /* its pending change only moves a disabled object into disable_move_to:                 \
             not a delete for the threshold */
#define CS_REF_DELTA                                                                               \
    0x08u /* ref_delta holds every change of its reference attributes since its last sync */

struct cs_object {
    int64_t id;          /* 0 for a new object: store_cs_put assigns */
    int64_t connector;   /* store_connector_id */
    char *type;          /* connector object type ("user") */
    char *anchor;        /* NULL until the object exists in its system */
    char *dn;            /* DN / identifier; may be NULL */
    struct entry *entry; /* attributes as last imported or exported; never NULL
                            (entry->type/anchor/dn mirror the fields above) */
    uint64_t hash;       /* entry_hash(entry) as of the last import */
    int64_t mv_id;       /* joined MV object; 0 = disconnector */
    unsigned flags;      /* CS_* */
    enum cs_import_state import_state;
    enum cs_export_state export_state;
    struct change *pending_export; /* NULL when export_state == CS_EXPORT_NONE */
    int export_attempts;           /* failed attempts of the current pending export */
    char *export_error;            /* last export error text, or NULL */
    struct change *unconfirmed;    /* last exported change, until a confirming import */
    int64_t export_run;            /* run that last set export_state to INFLIGHT */
    /* With CS_REF_DELTA: the reference values imported (MOD_ADD) and gone
     * (MOD_DELETE) per attribute since the object's last sync; NULL when
     * none changed. Set by import, cleared by the sync that uses it. */
    struct change *ref_delta;
};

/* The little an import needs to decide "unchanged": no attributes decoded. */
struct cs_brief {
    int64_t id;
    uint64_t hash;
    int64_t mv_id;
    unsigned flags;
    enum cs_import_state import_state;
    bool has_unconfirmed;
};

void cs_object_free(struct cs_object *o); /* NULL-safe; frees everything inside */

/* Join index keys of one object: attribute (lower-case) -> normalised value
 * (value_normalize()). The engine computes them; the store indexes them. */
struct store_key {
    const char *attr;
    const char *value;
};
struct store_keys {
    size_t nr;
    const struct store_key *k;
};

/* ---- metaverse objects ------------------------------------------------- */

struct mv_object {
    int64_t id;          /* 0 for a new object: store_mv_put assigns */
    char *type;          /* metaverse type ("person") */
    struct entry *entry; /* attributes; attr.source = index of the inbound flow that set it */
    int64_t created_run;
    int64_t updated_run;
};
void mv_object_free(struct mv_object *o); /* NULL-safe */

/* ---- runs --------------------------------------------------------------- */

/* X(field, name) - counters of a run, in the spirit of MIIS run history. */
#define RUN_COUNTER_LIST                                                                           \
    X(read, "read") /* objects read from the connected system */                                   \
    X(staged_add, "staged-add")                                                                    \
    X(staged_update, "staged-update")                                                              \
    X(staged_delete, "staged-delete")                                                              \
    X(unchanged, "unchanged")                                                                      \
    X(joined, "joined")             /* CS objects joined to an existing MV object */               \
    X(projected, "projected")       /* MV objects created */                                       \
    X(filtered, "filtered")         /* CS objects out of scope */                                  \
    X(disconnected, "disconnected") /* links removed */                                            \
    X(mv_deleted, "mv-deleted")                                                                    \
    X(flowed, "flowed")           /* MV objects whose attributes changed */                        \
    X(provisioned, "provisioned") /* target CS objects created (pending add) */                    \
    X(flowed_out, "flowed-out")   /* target objects given an update or rename to export */         \
    X(deprovisioned, "deprovisioned")                                                              \
    X(export_add, "export-add")                                                                    \
    X(export_update, "export-update")                                                              \
    X(export_rename, "export-rename")                                                              \
    X(export_delete, "export-delete")                                                              \
    X(export_failed, "export-failed")                                                              \
    X(confirmed, "confirmed") /* exported values seen again by an import */                        \
    X(errors, "errors")       /* per-object errors recorded */

struct run_counters {
#define X(field, name) long field;
    RUN_COUNTER_LIST
#undef X
};

/* Names and offsets, for generic output (history, JSON, metrics). */
struct run_counter_desc {
    const char *name;
    size_t offset; /* offsetof(struct run_counters, field) */
};
extern const struct run_counter_desc run_counter_descs[];
extern const size_t run_counter_count;
static inline long *run_counter_ptr(struct run_counters *c, size_t i)
{
    return (long *)((char *)c + run_counter_descs[i].offset);
}

enum run_status {
    RUN_RUNNING = 0,
    RUN_SUCCESS,
    RUN_COMPLETED_WITH_ERRORS,
    RUN_STOPPED_THRESHOLD,
    RUN_STOPPED_ERROR_LIMIT,
    RUN_FAILED,
};
const char *run_status_name(enum run_status s); /* "success", "completed-with-errors",
                                                   "stopped-threshold", "stopped-error-limit",
                                                   "failed", "running" */

struct run_record {
    int64_t id;       /* assigned by store_run_start */
    char *step;       /* "full-import", "delta-import", "full-sync", "delta-sync", "export",
                         "cycle", "reconnect" */
    char *connector;  /* NULL for sync and cycle */
    int64_t parent;   /* the cycle run this step belongs to; 0 = none */
    int64_t start_us; /* microseconds since the epoch */
    int64_t end_us;   /* 0 while running */
    enum run_status status;
    bool dry_run;
    char *message; /* one paragraph for people: why it stopped, what to do; may be NULL */
    struct run_counters counters;
};
void run_record_release(struct run_record *r); /* frees the strings, keeps the struct */

/* One per-object error of a run. */
struct run_error {
    int64_t run;
    char *connector;
    char *anchor;
    char *dn;
    char *attr; /* may be NULL */
    char *code; /* stable kebab-case: "ambiguous-join", "anchor-mismatch",
                   "dn-conflict", "export-failed", "exported-change-not-reimported",
                   "reference-unresolved", "expression-error", "bad-input" ... */
    char *message;
    int64_t cs_id; /* 0 when none */
    int64_t mv_id; /* 0 when none */
    int64_t time_us;
};
void run_error_release(struct run_error *e);

/* ---- selections for iteration ------------------------------------------ */

enum store_sel {
    STORE_SEL_ALL,
    STORE_SEL_PENDING_IMPORT, /* import_state != NONE */
    STORE_SEL_PENDING_EXPORT, /* export_state in (PENDING, INFLIGHT, FAILED) */
    STORE_SEL_INFLIGHT,       /* export_state == INFLIGHT */
    STORE_SEL_DISCONNECTORS,  /* mv_id == 0 */
    STORE_SEL_JOINED,         /* mv_id != 0 */
};

/* ---- the API ------------------------------------------------------------ */

/* Open (creating and migrating as needed) the store at `url`:
 * "sqlite:PATH" (file created with mode 0600), later "postgresql://...".
 * IDS_EUNREACHABLE when it cannot be opened, IDS_ECONFIG for a bad URL. */
enum ids_err store_open(const char *url, struct store **out, struct ids_error *err);
void store_close(struct store *s); /* NULL-safe; rolls back an open transaction */

enum ids_err store_begin(struct store *s, struct ids_error *err);
enum ids_err store_commit(struct store *s, struct ids_error *err);
void store_rollback(struct store *s);
enum ids_err store_dry_run_begin(struct store *s, struct ids_error *err);
void store_dry_run_end(struct store *s);

/* Id of the connector called `name`, created on first use. */
enum ids_err store_connector_id(struct store *s, const char *name, int64_t *id,
                                struct ids_error *err);

/* Cheap import lookup by anchor: IDS_OK with *out, IDS_ENOTFOUND. */
enum ids_err store_cs_brief(struct store *s, int64_t connector, const char *anchor,
                            struct cs_brief *out, struct ids_error *err);
enum ids_err store_cs_get(struct store *s, int64_t id, struct cs_object **out,
                          struct ids_error *err);
enum ids_err store_cs_get_by_anchor(struct store *s, int64_t connector, const char *anchor,
                                    struct cs_object **out, struct ids_error *err);
/* DN compared case-insensitively (normalised). IDS_ENOTFOUND when none. */
enum ids_err store_cs_get_by_dn(struct store *s, int64_t connector, const char *dn,
                                struct cs_object **out, struct ids_error *err);
/* Object `id` of `connector` was called `old_dn` before a rename an import
 * saw (kept until the object is deleted). */
enum ids_err store_cs_dn_alias(struct store *s, int64_t connector, const char *old_dn, int64_t id,
                               struct ids_error *err);
/* The object that was called `dn` (newest first), for a reference the
 * directory rewrote without reporting it. IDS_ENOTFOUND when none. */
enum ids_err store_cs_get_by_former_dn(struct store *s, int64_t connector, const char *dn,
                                       struct cs_object **out, struct ids_error *err);
/* The CS object of `connector` joined to MV object `mv_id`, IDS_ENOTFOUND. */
enum ids_err store_cs_get_by_mv(struct store *s, int64_t connector, int64_t mv_id,
                                struct cs_object **out, struct ids_error *err);
/* Insert (o->id == 0: assigns o->id) or replace the whole object. keys ==
 * NULL leaves the object's join keys as they are; otherwise they are
 * replaced by `keys`. IDS_EEXIST when another object of the connector has
 * the same anchor. */
enum ids_err store_cs_put(struct store *s, struct cs_object *o, const struct store_keys *keys,
                          struct ids_error *err);
/* store_cs_put() of a new object (o->id == 0) whose anchor the caller
 * found free in this same transaction (a full import's lookup): the
 * anchor is not looked up a second time. */
enum ids_err store_cs_insert_new(struct store *s, struct cs_object *o,
                                 const struct store_keys *keys, struct ids_error *err);
/* Update only the export fields (state, pending_export, attempts, error,
 * export_run) of object `o->id`: the export's hot path. */
enum ids_err store_cs_put_export(struct store *s, const struct cs_object *o, struct ids_error *err);
/* Anchor, DN and import state of CS object `id`, without reading its
 * attributes (an export resolving a group's members to identifiers).
 * anchor and dn are reset, then set; left empty when NULL in the store.
 * *has_anchor tells an empty anchor from none; *renaming (may be NULL):
 * its pending export, not settled yet, renames it (its DN is about to
 * change). IDS_ENOTFOUND when gone. */
enum ids_err store_cs_ident(struct store *s, int64_t id, struct strbuf *anchor, bool *has_anchor,
                            struct strbuf *dn, enum cs_import_state *state, bool *renaming,
                            struct ids_error *err);
/* Only the link and state of object `o->id` (mv_id, flags, import_state,
 * ref_delta):
 * a sync that joined, projected, disconnected or settled the object
 * without changing its attributes, anchor, DN or pending export (the
 * object's row is not encoded again). IDS_ENOTFOUND when gone. */
enum ids_err store_cs_put_link(struct store *s, const struct cs_object *o, struct ids_error *err);
/* Only the export state and run of object `id` (marking a batch in
 * flight: the pending change is as stored). IDS_ENOTFOUND when gone. */
enum ids_err store_cs_set_export_state(struct store *s, int64_t id, enum cs_export_state state,
                                       int64_t run, struct ids_error *err);
/* Delete the object, its join keys and reference waits. */
enum ids_err store_cs_delete(struct store *s, int64_t id, struct ids_error *err);
/* Up to `max` ids of `connector` (0 = every connector) matching `sel`, in
 * ascending order, greater than `after`. *n = 0 at the end. */
enum ids_err store_cs_ids(struct store *s, int64_t connector, enum store_sel sel, int64_t after,
                          int64_t *ids, size_t max, size_t *n, struct ids_error *err);
enum ids_err store_cs_count(struct store *s, int64_t connector, enum store_sel sel, long *n,
                            struct ids_error *err);
/* Remove the runs that started before `before_us` with their per-object
 * errors, a few hundred runs per transaction (never inside one: a store
 * that holds a transaction refuses with IDS_EINTERNAL). The newest run
 * stays whatever its age, so that run ids never start again from 1 (they
 * are how notifications and API clients tell new runs). *runs and *errors
 * count what went. */
enum ids_err store_runs_prune(struct store *s, int64_t before_us, long *runs, long *errors,
                              struct ids_error *err);
/* Pending exports of `connector` (objects with a pending change in any
 * export state but none), how many of them are deletes, and how many are
 * the disabling of a deprovisioned object (CS_DISABLED, no MV link): the
 * delete threshold's figures, without reading the objects. */
enum ids_err store_cs_count_exports(struct store *s, int64_t connector, long *pending,
                                    long *deletes, long *disables, struct ids_error *err);
/* Ids of CS objects of `connector` whose join key `attr` equals the
 * normalised `value` (up to max; *n is the total found, which may exceed max). */
enum ids_err store_cs_find(struct store *s, int64_t connector, const char *attr, const char *value,
                           int64_t *ids, size_t max, size_t *n, struct ids_error *err);
/* Every CS object linked to MV object mv_id (any connector): ids up to max. */
enum ids_err store_cs_links(struct store *s, int64_t mv_id, int64_t *ids, size_t max, size_t *n,
                            struct ids_error *err);

enum ids_err store_mv_get(struct store *s, int64_t id, struct mv_object **out,
                          struct ids_error *err);
/* Insert (o->id == 0 assigns) or replace; keys as for store_cs_put. */
enum ids_err store_mv_put(struct store *s, struct mv_object *o, const struct store_keys *keys,
                          struct ids_error *err);
/* MV object `id` with its keys, waits and reference index. */
enum ids_err store_mv_delete(struct store *s, int64_t id, struct ids_error *err);
/* The reference index of MV object `mv`: its reference attribute `attr`
 * gained the values (MV ids) of `add` and lost those of `del` (either may
 * be NULL). store_mv_find(type, attr, value) then answers who names MV
 * object `value`; store_mv_delete drops what the object's own ATTR_REF
 * values indexed. Kept apart from the join keys so that a group of 50,000
 * members with one change costs one write, not a diff of its whole list. */
enum ids_err store_mv_refs(struct store *s, int64_t mv, const char *attr, const struct attr *add,
                           const struct attr *del, struct ids_error *err);
/* MV objects of `type` (NULL = any) whose join key `attr` equals `value`. */
enum ids_err store_mv_find(struct store *s, const char *type, const char *attr, const char *value,
                           int64_t *ids, size_t max, size_t *n, struct ids_error *err);
/* MV objects (of `type`; NULL = any) with ids above `after`, in id order. */
enum ids_err store_mv_ids(struct store *s, const char *type, int64_t after, int64_t *ids,
                          size_t max, size_t *n, struct ids_error *err);
enum ids_err store_mv_count(struct store *s, long *n, struct ids_error *err);
/* Search any MV attribute (not only join keys) for an exact value, for
 * `show mv --where` and the console: may scan; up to max ids after `after`. */
enum ids_err store_mv_search(struct store *s, const char *attr, const char *value, int64_t after,
                             int64_t *ids, size_t max, size_t *n, struct ids_error *err);

/* References waiting for their target to appear. `space` is a connector id
 * (key = normalised DN or anchor the reference names) or 0 for the
 * metaverse side (key = "mv:ID" of an MV object not yet provisioned in
 * some target). `referrer` is the id of the object holding the reference
 * (a CS id for space != 0, an MV id for space == 0). */
enum ids_err store_ref_wait(struct store *s, int64_t space, const char *key, int64_t referrer,
                            struct ids_error *err);
/* Referrers waiting on key (up to max); does not remove them. */
enum ids_err store_ref_waiters(struct store *s, int64_t space, const char *key, int64_t *ids,
                               size_t max, size_t *n, struct ids_error *err);
/* Forget every wait of `referrer` in `space`. */
enum ids_err store_ref_clear(struct store *s, int64_t space, int64_t referrer,
                             struct ids_error *err);

/* Watermarks: *out untouched (and IDS_ENOTFOUND) when none is stored. */
enum ids_err store_watermark_get(struct store *s, int64_t connector, struct strbuf *out,
                                 struct ids_error *err);
/* value NULL removes it. */
enum ids_err store_watermark_set(struct store *s, int64_t connector, const char *value,
                                 struct ids_error *err);

/* Small named values the engine and daemon keep (configuration hash per
 * connector, last notified problems): key -> text. */
enum ids_err store_meta_get(struct store *s, const char *key, struct strbuf *out,
                            struct ids_error *err);
enum ids_err store_meta_set(struct store *s, const char *key, const char *value,
                            struct ids_error *err);

/* Runs. store_run_start assigns r->id and writes start_us if 0. Runs and
 * errors are written outside dry-run rollbacks (a dry run is recorded). */
enum ids_err store_run_start(struct store *s, struct run_record *r, struct ids_error *err);
enum ids_err store_run_finish(struct store *s, const struct run_record *r, struct ids_error *err);
enum ids_err store_run_add_error(struct store *s, const struct run_error *e, struct ids_error *err);
enum ids_err store_run_get(struct store *s, int64_t id, struct run_record *out,
                           struct ids_error *err);
/* Newest first: runs with id < before (0 = from the newest), up to max. The
 * caller releases each record and frees the array. */
enum ids_err store_runs_list(struct store *s, int64_t before, size_t max, struct run_record **out,
                             size_t *n, struct ids_error *err);
/* Errors of run `run` (0 = the newest run that has errors), offset/limit. */
enum ids_err store_run_errors(struct store *s, int64_t run, size_t offset, size_t max,
                              struct run_error **out, size_t *n, struct ids_error *err);
/* Number of errors of a run. */
enum ids_err store_run_error_count(struct store *s, int64_t run, long *n, struct ids_error *err);

/* One run at a time across processes: acquire fails with IDS_EBUSY naming
 * the holder (pid, host, since) unless the holder process is gone. */
enum ids_err store_lock_acquire(struct store *s, const char *holder, struct ids_error *err);
void store_lock_release(struct store *s);

/* ---- the backend interface --------------------------------------------- */

/* Every slot is MUST; semantics as the store_*() function of the same name.
 * A backend's private struct embeds struct store as its first member. */
/* A folder beside the store for connector read state too large for a
 * watermark ("FILE.state" for sqlite:FILE), or NULL (in-memory store). Not
 * created here. (appended) */
const char *store_state_dir(struct store *s);

struct store_ops {
    const char *scheme; /* "sqlite", "postgresql" */
    enum ids_err (*open)(const char *url, struct store **out, struct ids_error *err);
    void (*close)(struct store *s);
    enum ids_err (*begin)(struct store *s, struct ids_error *err);
    enum ids_err (*commit)(struct store *s, struct ids_error *err);
    void (*rollback)(struct store *s);
    enum ids_err (*dry_run_begin)(struct store *s, struct ids_error *err);
    void (*dry_run_end)(struct store *s);
    enum ids_err (*connector_id)(struct store *s, const char *name, int64_t *id,
                                 struct ids_error *err);
    enum ids_err (*cs_brief)(struct store *s, int64_t connector, const char *anchor,
                             struct cs_brief *out, struct ids_error *err);
    enum ids_err (*cs_get)(struct store *s, int64_t id, struct cs_object **out,
                           struct ids_error *err);
    enum ids_err (*cs_get_by_anchor)(struct store *s, int64_t connector, const char *anchor,
                                     struct cs_object **out, struct ids_error *err);
    enum ids_err (*cs_get_by_dn)(struct store *s, int64_t connector, const char *dn,
                                 struct cs_object **out, struct ids_error *err);
    enum ids_err (*cs_dn_alias)(struct store *s, int64_t connector, const char *old_dn, int64_t id,
                                struct ids_error *err);
    enum ids_err (*cs_get_by_former_dn)(struct store *s, int64_t connector, const char *dn,
                                        struct cs_object **out, struct ids_error *err);
    enum ids_err (*cs_get_by_mv)(struct store *s, int64_t connector, int64_t mv_id,
                                 struct cs_object **out, struct ids_error *err);
    enum ids_err (*cs_put)(struct store *s, struct cs_object *o, const struct store_keys *keys,
                           struct ids_error *err);
    enum ids_err (*cs_insert_new)(struct store *s, struct cs_object *o,
                                  const struct store_keys *keys, struct ids_error *err);
    enum ids_err (*cs_put_export)(struct store *s, const struct cs_object *o,
                                  struct ids_error *err);
    enum ids_err (*cs_set_export_state)(struct store *s, int64_t id, enum cs_export_state state,
                                        int64_t run, struct ids_error *err);
    enum ids_err (*cs_delete)(struct store *s, int64_t id, struct ids_error *err);
    enum ids_err (*cs_ids)(struct store *s, int64_t connector, enum store_sel sel, int64_t after,
                           int64_t *ids, size_t max, size_t *n, struct ids_error *err);
    enum ids_err (*cs_count)(struct store *s, int64_t connector, enum store_sel sel, long *n,
                             struct ids_error *err);
    enum ids_err (*cs_count_exports)(struct store *s, int64_t connector, long *pending,
                                     long *deletes, long *disables, struct ids_error *err);
    enum ids_err (*runs_prune)(struct store *s, int64_t before_us, long *runs, long *errors,
                               struct ids_error *err);
    enum ids_err (*cs_find)(struct store *s, int64_t connector, const char *attr, const char *value,
                            int64_t *ids, size_t max, size_t *n, struct ids_error *err);
    enum ids_err (*cs_links)(struct store *s, int64_t mv_id, int64_t *ids, size_t max, size_t *n,
                             struct ids_error *err);
    enum ids_err (*mv_get)(struct store *s, int64_t id, struct mv_object **out,
                           struct ids_error *err);
    enum ids_err (*mv_put)(struct store *s, struct mv_object *o, const struct store_keys *keys,
                           struct ids_error *err);
    enum ids_err (*mv_delete)(struct store *s, int64_t id, struct ids_error *err);
    enum ids_err (*mv_refs)(struct store *s, int64_t mv, const char *attr, const struct attr *add,
                            const struct attr *del, struct ids_error *err);
    enum ids_err (*mv_find)(struct store *s, const char *type, const char *attr, const char *value,
                            int64_t *ids, size_t max, size_t *n, struct ids_error *err);
    enum ids_err (*mv_ids)(struct store *s, const char *type, int64_t after, int64_t *ids,
                           size_t max, size_t *n, struct ids_error *err);
    enum ids_err (*mv_count)(struct store *s, long *n, struct ids_error *err);
    enum ids_err (*mv_search)(struct store *s, const char *attr, const char *value, int64_t after,
                              int64_t *ids, size_t max, size_t *n, struct ids_error *err);
    enum ids_err (*ref_wait)(struct store *s, int64_t space, const char *key, int64_t referrer,
                             struct ids_error *err);
    enum ids_err (*ref_waiters)(struct store *s, int64_t space, const char *key, int64_t *ids,
                                size_t max, size_t *n, struct ids_error *err);
    enum ids_err (*ref_clear)(struct store *s, int64_t space, int64_t referrer,
                              struct ids_error *err);
    enum ids_err (*watermark_get)(struct store *s, int64_t connector, struct strbuf *out,
                                  struct ids_error *err);
    enum ids_err (*watermark_set)(struct store *s, int64_t connector, const char *value,
                                  struct ids_error *err);
    enum ids_err (*meta_get)(struct store *s, const char *key, struct strbuf *out,
                             struct ids_error *err);
    enum ids_err (*meta_set)(struct store *s, const char *key, const char *value,
                             struct ids_error *err);
    enum ids_err (*run_start)(struct store *s, struct run_record *r, struct ids_error *err);
    enum ids_err (*run_finish)(struct store *s, const struct run_record *r, struct ids_error *err);
    enum ids_err (*run_add_error)(struct store *s, const struct run_error *e,
                                  struct ids_error *err);
    enum ids_err (*run_get)(struct store *s, int64_t id, struct run_record *out,
                            struct ids_error *err);
    enum ids_err (*runs_list)(struct store *s, int64_t before, size_t max, struct run_record **out,
                              size_t *n, struct ids_error *err);
    enum ids_err (*run_errors)(struct store *s, int64_t run, size_t offset, size_t max,
                               struct run_error **out, size_t *n, struct ids_error *err);
    enum ids_err (*run_error_count)(struct store *s, int64_t run, long *n, struct ids_error *err);
    enum ids_err (*lock_acquire)(struct store *s, const char *holder, struct ids_error *err);
    void (*lock_release)(struct store *s);
    /* appended */
    enum ids_err (*cs_ref_by_mv)(struct store *s, int64_t connector, int64_t mv_id, int64_t *id,
                                 struct strbuf *anchor, struct strbuf *dn, struct ids_error *err);
    const char *(*state_dir)(struct store *s);
    enum ids_err (*cs_put_link)(struct store *s, const struct cs_object *o, struct ids_error *err);
    enum ids_err (*cs_ident)(struct store *s, int64_t id, struct strbuf *anchor, bool *has_anchor,
                             struct strbuf *dn, enum cs_import_state *state, bool *renaming,
                             struct ids_error *err);
    enum ids_err (*cs_brief_by_dn)(struct store *s, int64_t connector, const char *dn,
                                   struct cs_brief *out, struct ids_error *err);
    enum ids_err (*read_begin)(struct store *s, struct ids_error *err);
    void (*read_end)(struct store *s);
    enum ids_err (*connector_name)(struct store *s, int64_t id, struct strbuf *name,
                                   struct ids_error *err);
    enum ids_err (*connector_next)(struct store *s, int64_t after, int64_t *id,
                                   struct ids_error *err);
    enum ids_err (*ref_waits_prefix)(struct store *s, int64_t space, const char *prefix,
                                     struct strvec *keys, int64_t *ids, size_t max, size_t *n,
                                     struct ids_error *err);
    enum ids_err (*ref_unwait)(struct store *s, int64_t space, const char *key, int64_t referrer,
                               struct ids_error *err);
    enum ids_err (*cs_brief_by_dn_other)(struct store *s, int64_t connector, const char *dn,
                                         int64_t not_id, struct cs_brief *out,
                                         struct ids_error *err);
    enum ids_err (*connector_find)(struct store *s, const char *name, int64_t *id,
                                   struct ids_error *err);
    enum ids_err (*connector_drop)(struct store *s, int64_t id, struct ids_error *err);
    enum ids_err (*connector_rename)(struct store *s, int64_t id, const char *name,
                                     struct ids_error *err);
};

struct store {
    const struct store_ops *ops;
};

/* Reference resolution (appended): id, anchor and DN of the CS object of
 * `connector` joined to MV object `mv_id`, without reading its attributes
 * (anchor/dn are reset, then set; left empty when NULL in the store).
 * IDS_ENOTFOUND when there is none. */
enum ids_err store_cs_ref_by_mv(struct store *s, int64_t connector, int64_t mv_id, int64_t *id,
                                struct strbuf *anchor, struct strbuf *dn, struct ids_error *err);

/* store_cs_brief of the object called `dn` (appended): the object
 * store_cs_get_by_dn finds, without reading its attributes (a sync
 * resolving a group's members by DN). IDS_ENOTFOUND when none. */
enum ids_err store_cs_brief_by_dn(struct store *s, int64_t connector, const char *dn,
                                  struct cs_brief *out, struct ids_error *err);

/* Read snapshot (appended): every read until store_read_end sees the store
 * as it was at the first of them, whatever other processes commit
 * meanwhile (a report that reads a million objects is one point in time),
 * and costs no lock per statement. Writers are not blocked. Nothing may be
 * written inside it: store_begin and store_dry_run_begin are refused
 * (IDS_EINTERNAL), run history is held back until it ends, as in a
 * transaction. IDS_EINTERNAL when a transaction or snapshot is open. */
enum ids_err store_read_begin(struct store *s, struct ids_error *err);
void store_read_end(struct store *s); /* NULL-safe; nothing open: nothing done */

/* Connectors the store knows (appended), configured or not (a connector
 * renamed or removed in the configuration keeps its space): the name of
 * connector `id` (appended to name; IDS_ENOTFOUND), and the next id after
 * `after` (0 to start; IDS_DONE at the end). */
enum ids_err store_connector_name(struct store *s, int64_t id, struct strbuf *name,
                                  struct ids_error *err);
enum ids_err store_connector_next(struct store *s, int64_t after, int64_t *id,
                                  struct ids_error *err);

/* Waits of `space` whose key starts with `prefix` (appended), in key order:
 * up to max keys into `keys` and their referrers into ids; *n is the number
 * that exist. Forget one wait (appended). */
enum ids_err store_ref_waits_prefix(struct store *s, int64_t space, const char *prefix,
                                    struct strvec *keys, int64_t *ids, size_t max, size_t *n,
                                    struct ids_error *err);
enum ids_err store_ref_unwait(struct store *s, int64_t space, const char *key, int64_t referrer,
                              struct ids_error *err);

/* store_cs_brief_by_dn of an object other than `not_id` (appended): is a DN
 * that object `not_id` has, or is about to take, someone else's too? When
 * only not_id has it, answered without reading its row. IDS_ENOTFOUND. */
enum ids_err store_cs_brief_by_dn_other(struct store *s, int64_t connector, const char *dn,
                                        int64_t not_id, struct cs_brief *out,
                                        struct ids_error *err);

/* Connector spaces as a whole (appended), for `idsync space`:
 * - find: the id of the connector called `name`, without creating it
 *   (IDS_ENOTFOUND);
 * - drop: forget connector `id` (its watermark and its name) once its
 *   space holds no object; IDS_EEXIST while it still holds one (delete
 *   them first with store_cs_delete, which takes their join keys,
 *   reference waits and former DNs with them);
 * - rename: connector `id`, its space and watermark, is called `name` from
 *   now on; IDS_EEXIST when another connector has that name (drop it
 *   first). */
enum ids_err store_connector_find(struct store *s, const char *name, int64_t *id,
                                  struct ids_error *err);
enum ids_err store_connector_drop(struct store *s, int64_t id, struct ids_error *err);
enum ids_err store_connector_rename(struct store *s, int64_t id, const char *name,
                                    struct ids_error *err);

extern const struct store_ops sqlite_store_ops;

/* Threads (appended): a struct store, and every statement it caches, is
 * used by one thread at a time. A program that needs the store in several
 * threads (the daemon's HTTP API beside its scheduler) opens one store per
 * thread; the SQLite backend lets them read while one of them writes.
 *
 * Errors (appended): a stored object whose BLOB does not decode is
 * IDS_EINPUT naming its id and anchor (a per-object error, not a broken
 * store); every other backend failure is IDS_ESTORE with err->detail set
 * to the backend's code (SQLite extended result code).
 *
 * Counts (appended): store_cs_find, store_mv_find, store_cs_links and
 * store_ref_waiters fill at most `max` ids and set *n to the number that
 * exist, which may exceed max (ask again with room for *n). The paging
 * calls store_cs_ids, store_mv_ids and store_mv_search set *n to the
 * number filled. */

#endif
