/* engine_int.h - what the engine's files share (not an API for others).
 *
 * run.c      engine_new/free, connectors, run records and run errors, cycle
 * import.c   full and delta import, confirming import
 * join.c     inbound and outbound join
 * flow.c     expression evaluation, inbound MV computation, outbound
 *            desired attributes, diffs, join keys
 * sync.c     full and delta sync (inbound, MV, outbound, deprovisioning)
 * export.c   export with the in-flight protocol and the delete threshold
 * report.c   dry-run / pending JSON lines, preview
 */
#ifndef IDSYNC_ENGINE_INT_H
#define IDSYNC_ENGINE_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "connector/connector.h"
#include "connector/fileio.h"
#include "engine/engine.h"
#include "entry.h"
#include "store/store.h"
#include "util/progress.h"
#include "util/strbuf.h"
#include "util/strvec.h"

/* Objects per store transaction in sync and export. */
#define ENGINE_BATCH 2000
/* Objects per transaction of the sync step. Every commit writes each page
 * it dirtied to the WAL, and the random index pages of a big space (DN
 * keys) are dirtied again by every batch: a 1M-object full sync spent 9.3 s
 * of system time with 2,000 a batch, 6.6-6.9 s with 20,000 (35-39 s
 * instead of 42 s), memory unchanged. */
#define SYNC_BATCH 20000
/* Candidates fetched per join lookup: more than one is ambiguous anyway. */
#define ENGINE_MAX_CANDIDATES 16

/* ---- small containers --------------------------------------------------- */

struct i64vec {
    int64_t *v;
    size_t nr;
    size_t alloc;
};
void i64vec_push(struct i64vec *vec, int64_t x);
void i64vec_release(struct i64vec *vec);
/* qsort/bsearch comparator of int64_t. */
int i64_cmp(const void *pa, const void *pb);
/* Sort and drop repeats: vec becomes a set that the two below take. */
void i64vec_sort_unique(struct i64vec *vec);
/* Keep in a only what is also in b (both sorted, unique). */
void i64vec_intersect(struct i64vec *a, const struct i64vec *b);
/* Position of x in sorted vec, or SIZE_MAX when absent. */
size_t i64vec_find(const struct i64vec *vec, int64_t x);

/* A bitmap over object ids (ids are small, dense integers): flat memory. */
struct bitmap {
    uint64_t *w;
    size_t nwords;
};
void bitmap_set(struct bitmap *b, int64_t id);
void bitmap_clear(struct bitmap *b, int64_t id);
bool bitmap_test(const struct bitmap *b, int64_t id);
void bitmap_release(struct bitmap *b);

/* Join keys of one object, owned (see store_keys). */
struct keyset {
    struct strvec strs; /* attr0, value0, attr1, value1, ... */
    struct store_key *k;
    size_t alloc;
    struct store_keys keys; /* points into strs */
};
void keyset_init(struct keyset *ks);
void keyset_release(struct keyset *ks);
/* Keys for `attrs` (lower-case names) from the values of e. */
void keyset_build(struct keyset *ks, const struct strvec *attrs, const struct entry *e);
bool keyset_equal(const struct keyset *a, const struct keyset *b);

/* ---- engine --------------------------------------------------------------- */

/* One configured connector as the engine sees it. */
struct econn {
    struct connector_config *cfg;
    struct connector *conn; /* created and opened lazily */
    int64_t id;             /* store_connector_id */
    bool is_source;         /* in some metaverse `from` */
    bool is_target;         /* in some metaverse `to` */
    struct strvec keys;     /* lower-case target join-key attributes (to join rules,
                               anchor carriers): indexed for store_cs_find */
};

/* One metaverse type with what the engine derives from it. */
struct mvt_info {
    struct mv_type_config *t;
    struct strvec keys;      /* lower-case MV attributes used as keys in from join rules */
    struct strvec ref_attrs; /* lower-case MV attributes that hold references */
    bool in_refs;            /* some from flow carries references */
    bool out_refs;           /* some to flow may carry references */
};

struct engine {
    struct config *cfg;
    struct store *store;
    struct engine_opts opts;
    size_t nconns;
    struct econn *conns;
    size_t nmvt;
    struct mvt_info *mvt;
    int64_t parent;        /* run id of the cycle running, 0 = none */
    const char *state_dir; /* store_state_dir(): handed to the connectors */
    bool confirming;       /* a cycle's confirming imports (after its exports) run */
};

/* Does target ec (a connector only written to) have a scope changed since
 * its last full import? Its full import then waits for a cycle's
 * confirming import: before the exports, the entries the sync moves into
 * the new scope (a base moved with the dn flow) would look deleted. */
bool engine_scope_waits(struct engine *eng, const struct econn *ec);
struct econn *engine_conn(struct engine *eng, const char *name);
struct econn *engine_conn_by_id(struct engine *eng, int64_t id);
struct econn *engine_conn_by_cfg(struct engine *eng, const struct connector_config *cfg);
/* The connector instance, created and opened on first use. */
enum ids_err engine_conn_open(struct engine *eng, struct econn *ec, struct ids_error *err);
unsigned econn_caps(const struct econn *ec);
/* In a directory (a connector whose references are DNs: one entry per
 * DN), the object of `X` that another metaverse object holds at `dn`
 * (joined to an MV object other than self_mv, not the CS object self_cs,
 * not being deleted): *holder, the caller's; NULL when the DN is free.
 * Two metaverse objects can never share one entry. deleting (may be NULL,
 * then objects joined to no other MV object are not read): set when the
 * object at `dn` has a pending delete (free once that delete is sent). */
enum ids_err engine_dn_holder(struct engine *eng, const struct econn *X, const char *dn,
                              int64_t self_cs, int64_t self_mv, struct cs_object **holder,
                              bool *deleting, struct ids_error *err);
/* The MV objects whose reference attributes name MV object `mv` (the
 * store's reference index), appended to out. */
enum ids_err engine_mv_referrers(struct engine *eng, int64_t mv, struct i64vec *out,
                                 struct ids_error *err);
struct mvt_info *engine_mvt(struct engine *eng, const char *type);
/* The `from` element of a CS object (connector + object type), or NULL. */
const struct flow_config *engine_find_from(struct engine *eng, const struct econn *ec,
                                           const char *type, struct mvt_info **mi);
/* The `to` element for (connector, object type), or NULL. */
const struct flow_config *engine_find_to(struct engine *eng, const struct econn *ec,
                                         const char *type, struct mvt_info **mi);
/* The econn of a flow element's connector. */
struct econn *engine_flow_conn(struct engine *eng, const struct flow_config *f);

/* ---- runs ----------------------------------------------------------------- */

struct preview;

struct erun {
    struct engine *eng;
    struct run_record rec;
    bool record;       /* false: preview, nothing goes to run history */
    bool errlimit;     /* more than safety.max_errors errors */
    struct strbuf msg; /* the run message being built */
    struct progress *prog;
    struct preview *pv;    /* preview trace, or NULL */
    const char *undo_note; /* erun_undo_counters: said after the failure */
};

enum ids_err erun_start(struct engine *eng, struct erun *r, const char *step, const char *connector,
                        struct ids_error *err);
/* Record the outcome: status from ret (and errors), message, end time.
 * Moves the record into *out (when not NULL). Returns ret. */
enum ids_err erun_finish(struct erun *r, enum ids_err ret, const struct ids_error *err,
                         struct run_record *out);
/* Append a sentence to the run message. */
void erun_message(struct erun *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Record one per-object error (counted; may set errlimit). */
void erun_error(struct erun *r, const char *connector, const char *anchor, const char *dn,
                const char *attr, const char *code, int64_t cs_id, int64_t mv_id, const char *fmt,
                ...) __attribute__((format(printf, 9, 10)));
/* Same, naming a CS object. */
void erun_error_cs(struct erun *r, const struct econn *ec, const struct cs_object *o,
                   const char *attr, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* The transaction that began when the counters were `before` was rolled
 * back: they go back to it, except what was read and the errors (recorded
 * either way), so that the run history counts what the store holds.
 * `note` (a constant string) follows the failure in the run message. */
void erun_undo_counters(struct erun *r, const struct run_counters *before, const char *note);
/* True when the step must stop now: error limit or a stop request.
 * *why receives IDS_EERRLIMIT or IDS_EINTR. */
bool erun_must_stop(struct erun *r, enum ids_err *why);

/* ---- flows (flow.c) ------------------------------------------------------- */

/* The initial flows of t (sent with a create only: an initial password)
 * evaluated against the MV entry, appended to the create ch as MOD_ADDs
 * flagged ATTR_INITIAL. dry_run: passwords are not drawn (a placeholder).
 * IDS_EEXPR names the rule. */
enum ids_err flow_initial(const struct flow_config *t, const struct entry *mv, bool dry_run,
                          struct change *ch, struct ids_error *err);

/* Evaluate a flow, join or scope item against e: values appended to out. */
enum ids_err flow_eval(const struct rule_item *it, const struct entry *e, struct attr *out,
                       struct ids_error *err);
/* Is this inbound flow item a reference flow (a plain copy of a reference attribute)? */
bool flow_in_is_ref(const struct flow_config *f, const struct rule_item *it);
/* May this outbound flow item carry references (a reference attribute of
 * the target type, or a plain copy of an MV reference attribute)? */
bool flow_out_is_ref(const struct flow_config *t, const struct rule_item *it,
                     const struct entry *mv);
bool reference_attr(const struct object_type_config *ot, const char *attr);
/* Values compare: exact, or equal once normalised, or (JSON) equal as JSON. */
bool value_matches(const struct value *a, const struct value *b, unsigned flags);
/* Short printable form of a value for messages. */
void value_describe(struct strbuf *out, const char *data, size_t len);
/* DN equality for rename detection (LDAP rules when both parse). */
bool dn_equal(const char *a, const char *b);
/* A new change equal to c byte for byte? (c, d may be NULL) */
bool change_equal(const struct change *c, const struct change *d);

/* Differences between two value sets, byte-wise: values of a not in b go
 * to only_a, values of b not in a to only_b (either may be NULL). */
void attr_value_diff(const struct attr *a, const struct attr *b, struct attr *only_a,
                     struct attr *only_b);

/* ---- sync internals shared with report.c (sync.c) ------------------------ */

/* How a reference attribute of an MV object changed in mv_update (delta
 * sync): MV ids added and removed. Outbound turns them into value changes
 * of a target in step with the MV object, without mapping every member. */
struct ref_delta {
    char *attr;      /* MV attribute */
    struct attr add; /* MV ids (decimal) */
    struct attr del;
    int64_t checked_conn; /* the target connector `mappable` was found for */
    bool mappable;        /* every removed MV object has an object there */
};

/* A reference still unresolved when it was met; re-checked at the end. */
struct unres {
    bool out;         /* outbound (MV id -> target CS) or inbound (value -> CS -> MV) */
    int64_t referrer; /* CS id (inbound) or MV id (outbound) */
    int64_t conn;     /* store connector id */
    char *attr;
    char *value; /* inbound: the reference value; outbound: the referenced MV id */
};

struct sync_ctx {
    struct engine *eng;
    struct erun *r;
    bool full;
    bool refs;         /* resolve references now (false in pass 1 of a full sync) */
    bool outbound;     /* run outbound after inbound (false in pass 1 of a full sync) */
    struct i64vec qcs; /* referrer CS objects to recompute */
    struct i64vec qmv; /* MV objects to run outbound for */
    struct i64vec qre; /* MV objects to recompute (a reference of theirs was deleted) */
    struct bitmap qcs_set;
    struct bitmap qmv_set;
    struct bitmap qre_set;
    struct bitmap out_done; /* MV objects whose outbound ran in this step */
    struct bitmap final;    /* full sync: MV objects finished in pass 1 (no references) */
    int64_t fresh_mv;       /* MV object projected just now: it has no target object yet */
    int64_t removing_mv;    /* MV object mv_remove deprovisions (its referrers are recomputed) */
    /* target objects of connectors that name members by DN, renamed by
     * this step: in a group, their current (old) DN goes */
    struct u64set renamed;
    struct unres *unres;
    size_t nunres;
    size_t aunres;
    long done;
    /* the reference changes of MV object delta_mv by its last mv_update
     * (delta sync only; delta_mv 0: none known) */
    int64_t delta_mv;
    struct ref_delta *deltas;
    size_t ndeltas, adeltas;
    /* inbound: map every reference value, not an import's changes (an
     * object whose references may resolve now) */
    bool map_all_in;
    /* the run's counters when the open batch began (put back when it is
     * rolled back), and how many batches were committed */
    struct run_counters batch_counters;
    long batches_committed;
};

/* " (from hr E0042)": the first source object joined to MV object mv_id
 * of metaverse type `type` (NULL: read from the store), one lookup per
 * source type; nothing when there is none. */
void engine_mv_origin(struct engine *eng, const char *type, int64_t mv_id, struct strbuf *out);

/* " (from hr E0042)": the first source object joined to MV object m (one
 * lookup per source type), for messages about an object that has none in
 * the target yet; nothing when there is none. */
void sync_mv_origin(struct sync_ctx *ctx, const struct mv_object *m, struct strbuf *out);

void sync_ctx_init(struct sync_ctx *ctx, struct engine *eng, struct erun *r, bool full);
void sync_ctx_release(struct sync_ctx *ctx);
/* Process one CS object as a sync would (inbound, then outbound). */
enum ids_err sync_one_cs(struct sync_ctx *ctx, int64_t cs_id, struct ids_error *err);
/* Work queued by reference resolution. */
enum ids_err sync_drain(struct sync_ctx *ctx, struct ids_error *err);
/* `idsync space drop`: every object of connector `conn` (a connector the
 * configuration no longer has) deleted in batches, each MV object it was
 * linked to recomputed from the configured sources, or deleted and
 * deprovisioned in every target when none is left (the exports wait for
 * the next export). *stopped and *why as in a sync. */
enum ids_err sync_drop_space(struct sync_ctx *ctx, int64_t conn, bool *stopped, enum ids_err *why,
                             struct ids_error *err);
/* Record the references still unresolved at the end of a step. */
void sync_report_unresolved(struct sync_ctx *ctx);
/* The end of a step that synced in batches: the unresolved references
 * reported (ret IDS_OK), and a stop turned into its reason (`why`; an
 * interruption says "interrupted; what was done is committed, AGAIN to
 * complete it"). Returns the step's result. */
enum ids_err sync_end(struct sync_ctx *ctx, enum ids_err ret, bool stopped, enum ids_err why,
                      const char *again, struct ids_error *err);
void sync_unres_add(struct sync_ctx *ctx, bool out, int64_t referrer, int64_t conn,
                    const char *attr, const char *value, size_t len);

/* join.c: inbound join of cs (not joined). *mv_id = the one candidate or 0;
 * *stop = an error was recorded (ambiguous, expression): neither join nor
 * project. */
enum ids_err join_inbound(struct sync_ctx *ctx, struct econn *ec, const struct cs_object *cs,
                          struct mvt_info *mi, const struct flow_config *f, int64_t *mv_id,
                          bool *stop, struct ids_error *err);
/* join.c: outbound join of MV object m (desired attributes des) in target
 * X: *out = the joined disconnector (caller frees) or NULL; *stop = an error
 * (anchor-mismatch, ambiguous-join, expression) was recorded: nothing may be
 * exported for m in X. */
enum ids_err join_outbound(struct sync_ctx *ctx, struct econn *X, const struct flow_config *t,
                           const struct mv_object *m, const struct entry *des,
                           struct cs_object **out, bool *stop, struct ids_error *err);

/* ---- reports (report.c) --------------------------------------------------- */

/* One JSON line per pending export of ec into out (dry-run / pending). */
enum ids_err report_pending(struct engine *eng, struct econn *ec, FILE *out, long *count,
                            struct ids_error *err);
/* One JSON object describing cs (a pending export) into sb (no newline). */
enum ids_err report_pending_object(struct engine *eng, struct econn *ec, const struct cs_object *cs,
                                   struct strbuf *sb, struct ids_error *err);

/* Preview trace (report.c), filled by sync.c when ctx's run has one. */
struct preview {
    struct strbuf joins;   /* JSON array items: join rules tried */
    struct strbuf targets; /* JSON array items: targets */
    struct strbuf errors;  /* JSON array items: errors */
    const char *action;    /* inbound decision */
    int64_t mv_id;
    bool scope_known;
    bool in_scope;
};
void preview_add_sep(struct strbuf *sb);

#endif
