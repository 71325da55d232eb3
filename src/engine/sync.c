/* sync.c - moving data between connector spaces and the metaverse, inside
 * the store: scope, join, projection, inbound flow with precedence,
 * references, outbound join, provisioning, outbound flow as minimal diffs,
 * deprovisioning. See docs/internals/engine.md. */
#include "engine/engine_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "expr/expr.h"
#include "util/ldapesc.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/banned.h"

#define META_FULL_PENDING "engine.full-sync-pending"
/* the MV types and attributes whose reference values the store indexes
 * ("person:manager;group:members"): an MV object written before they were
 * indexed gets its keys once (ref_keys_ensure) */
#define META_REF_KEYS "engine.reference-keys"
/* MV objects a transaction of ref_keys_ensure indexes */
#define REF_KEYS_BATCH 256

struct contrib {
    struct cs_object *cs; /* owned unless it is the object being processed */
    const struct flow_config *f;
    struct econn *ec;
    bool borrowed;
};

/* ---- context ----------------------------------------------------------------- */

/* ---- reference deltas ------------------------------------------------------ */

static void deltas_clear(struct sync_ctx *ctx)
{
    size_t i;

    for (i = 0; i < ctx->ndeltas; i++) {
        free(ctx->deltas[i].attr);
        attr_release(&ctx->deltas[i].add);
        attr_release(&ctx->deltas[i].del);
    }
    ctx->ndeltas = 0;
    ctx->delta_mv = 0;
}

/* Remember how the reference attributes of MV object `mv` changed from
 * old to now (MV ids: byte-wise sets). */
static void deltas_compute(struct sync_ctx *ctx, int64_t mv, const struct entry *old,
                           const struct entry *now)
{
    const struct entry *side[2] = {old, now};
    size_t s, i;

    deltas_clear(ctx);
    for (s = 0; s < 2; s++) {
        for (i = 0; i < side[s]->nattrs; i++) {
            const struct attr *a = &side[s]->attrs[i];
            const struct attr *o = entry_attr(old, a->name);
            const struct attr *n = entry_attr(now, a->name);
            struct ref_delta *d;

            if (!(a->flags & ATTR_REF) || (s == 1 && o != NULL)) {
                continue; /* not a reference, or seen from the old side */
            }
            ALLOC_GROW(ctx->deltas, ctx->ndeltas + 1, ctx->adeltas);
            d = &ctx->deltas[ctx->ndeltas++];
            memset(d, 0, sizeof(*d));
            d->attr = xstrdup(a->name);
            attr_value_diff(n, o, &d->add, &d->del);
        }
    }
    ctx->delta_mv = mv;
}

/* Has every MV object removed by d an object in X (so the member to take
 * out is known)? One that was deleted or deprovisioned in this sync has
 * none: the full mapping then finds its target object by the current
 * values. Asked once per delta and connector. */
static bool removed_mappable(struct sync_ctx *ctx, struct ref_delta *d, const struct econn *X)
{
    struct strbuf anchor = STRBUF_INIT;
    struct strbuf dn = STRBUF_INIT;
    struct ids_error lerr = IDS_ERROR_INIT;
    size_t k;

    if (d->checked_conn == X->id) {
        return d->mappable;
    }
    d->checked_conn = X->id;
    d->mappable = true;
    for (k = 0; k < d->del.nvals && d->mappable; k++) {
        long long mv = strtoll(d->del.vals[k].data, NULL, 10);
        int64_t id = 0;

        d->mappable = mv > 0 && store_cs_ref_by_mv(ctx->eng->store, X->id, mv, &id, &anchor, &dn,
                                                   &lerr) == IDS_OK;
    }
    strbuf_release(&anchor);
    strbuf_release(&dn);
    return d->mappable;
}

/* The delta outbound may use for flow `it` of t into target (X's object of
 * m, linked before this sync): NULL when the values must be mapped in full.
 * A target is in step with the MV object when nothing is pending or staged
 * for it: its values are what the last outbound computed, so the MV
 * changes are its changes. */
static const struct ref_delta *flow_delta(struct sync_ctx *ctx, const struct econn *X,
                                          const struct flow_config *t, const struct rule_item *it,
                                          const struct mv_object *m, const struct cs_object *target)
{
    size_t i;
    size_t same = 0;

    if (ctx->delta_mv == 0 || ctx->delta_mv != m->id || target == NULL || target->anchor == NULL ||
        target->pending_export != NULL || target->export_state != CS_EXPORT_NONE ||
        target->import_state != CS_IMPORT_NONE || !it->plain || it->source == NULL ||
        strcasecmp(it->attr, "dn") == 0 || !flow_out_is_ref(t, it, m->entry)) {
        return NULL;
    }
    for (i = 0; i < t->nflows; i++) {
        same += strcasecmp(t->flows[i].attr, it->attr) == 0;
    }
    if (same != 1) {
        return NULL;
    }
    for (i = 0; i < ctx->ndeltas; i++) {
        if (strcasecmp(ctx->deltas[i].attr, it->source) == 0) {
            return removed_mappable(ctx, &ctx->deltas[i], X) ? &ctx->deltas[i] : NULL;
        }
    }
    return NULL;
}

void sync_ctx_init(struct sync_ctx *ctx, struct engine *eng, struct erun *r, bool full)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->eng = eng;
    ctx->r = r;
    ctx->full = full;
    ctx->refs = true;
    ctx->outbound = true;
}

void sync_ctx_release(struct sync_ctx *ctx)
{
    size_t i;

    for (i = 0; i < ctx->nunres; i++) {
        free(ctx->unres[i].attr);
        free(ctx->unres[i].value);
    }
    free(ctx->unres);
    deltas_clear(ctx);
    free(ctx->deltas);
    i64vec_release(&ctx->qcs);
    i64vec_release(&ctx->qmv);
    i64vec_release(&ctx->qre);
    bitmap_release(&ctx->qcs_set);
    bitmap_release(&ctx->qmv_set);
    bitmap_release(&ctx->qre_set);
    u64set_release(&ctx->renamed);
    bitmap_release(&ctx->out_done);
    bitmap_release(&ctx->final);
    memset(ctx, 0, sizeof(*ctx));
}

void sync_unres_add(struct sync_ctx *ctx, bool out, int64_t referrer, int64_t conn,
                    const char *attr, const char *value, size_t len)
{
    struct unres *u;

    ALLOC_GROW(ctx->unres, ctx->nunres + 1, ctx->aunres);
    u = &ctx->unres[ctx->nunres++];
    u->out = out;
    u->referrer = referrer;
    u->conn = conn;
    u->attr = xstrdup(attr);
    u->value = xmemdup(value, len);
}

static void queue_cs(struct sync_ctx *ctx, int64_t id)
{
    if (!bitmap_test(&ctx->qcs_set, id)) {
        bitmap_set(&ctx->qcs_set, id);
        i64vec_push(&ctx->qcs, id);
    }
}

static void queue_mv(struct sync_ctx *ctx, int64_t id)
{
    if (!bitmap_test(&ctx->qmv_set, id)) {
        bitmap_set(&ctx->qmv_set, id);
        i64vec_push(&ctx->qmv, id);
    }
}

static void queue_recompute(struct sync_ctx *ctx, int64_t id)
{
    if (!bitmap_test(&ctx->qre_set, id)) {
        bitmap_set(&ctx->qre_set, id);
        i64vec_push(&ctx->qre, id);
    }
}

/* Queue every referrer waiting on `key` in `space`. */
static enum ids_err queue_waiters(struct sync_ctx *ctx, int64_t space, const char *key,
                                  struct ids_error *err)
{
    enum ids_err ret;
    int64_t small[64];
    int64_t *ids = small;
    size_t max = ARRAY_SIZE(small);
    size_t n = 0;
    size_t i;

    ret = store_ref_waiters(ctx->eng->store, space, key, ids, max, &n, err);
    if (ret == IDS_OK && n > max) {
        max = n;
        ids = xcalloc(max, sizeof(*ids));
        ret = store_ref_waiters(ctx->eng->store, space, key, ids, max, &n, err);
    }
    if (ret == IDS_ENOTFOUND) {
        ret = IDS_OK;
        n = 0;
    }
    for (i = 0; ret == IDS_OK && i < n && i < max; i++) {
        if (space == 0) {
            queue_mv(ctx, ids[i]);
        } else {
            queue_cs(ctx, ids[i]);
        }
    }
    if (ids != small) {
        free(ids);
    }
    return ret;
}

/* An object of `ec` got joined or projected: whoever referenced it by DN
 * or anchor can now resolve the reference. */
static enum ids_err queue_in_waiters(struct sync_ctx *ctx, const struct econn *ec,
                                     const struct cs_object *cs, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct strbuf key = STRBUF_INIT;

    if (!ctx->refs) {
        return IDS_OK; /* pass 1 of a full sync: pass 2 resolves everything */
    }
    if (cs->dn != NULL) {
        value_normalize(&key, cs->dn, strlen(cs->dn));
        ret = queue_waiters(ctx, ec->id, key.buf, err);
    }
    if (ret == IDS_OK && cs->anchor != NULL) {
        strbuf_reset(&key);
        value_normalize(&key, cs->anchor, strlen(cs->anchor));
        ret = queue_waiters(ctx, ec->id, key.buf, err);
    }
    strbuf_release(&key);
    return ret;
}

static void mv_wait_key(struct strbuf *sb, int64_t mv, int64_t connector)
{
    strbuf_reset(sb);
    strbuf_addf(sb, "mv:%" PRId64 "@%" PRId64, mv, connector);
}

/* The wait of a metaverse object whose create in directory X found `dn`
 * held by another one (dn-conflict): "dn:<connector id>:<normalised DN>". */
static void dn_wait_key(struct strbuf *sb, int64_t connector, const char *dn)
{
    strbuf_reset(sb);
    strbuf_addf(sb, "dn:%" PRId64 ":", connector);
    if (ldapdn_normalize(dn, sb, NULL) != IDS_OK) {
        value_normalize(sb, dn, strlen(dn));
    }
}

/* MV object m got an object in target X. */
static enum ids_err queue_out_waiters(struct sync_ctx *ctx, int64_t mv, const struct econn *X,
                                      struct ids_error *err)
{
    enum ids_err ret;
    struct strbuf key = STRBUF_INIT;

    mv_wait_key(&key, mv, X->id);
    ret = queue_waiters(ctx, 0, key.buf, err);
    strbuf_release(&key);
    return ret;
}

/* MV object `mv` is deleted (recompute: the MV objects whose references
 * name it are recomputed, their sources' values no longer resolve to it),
 * or lost its object in a target (!recompute: their outbound maps the
 * reference again, to nothing), so that their targets lose the value
 * instead of keeping a member that is gone. The store indexes reference
 * values (mv_index_refs). */
static enum ids_err queue_referrers(struct sync_ctx *ctx, int64_t mv, bool recompute,
                                    struct ids_error *err)
{
    struct i64vec ids = {0};
    enum ids_err ret;
    size_t k;

    if (!ctx->refs) {
        return IDS_OK; /* pass 1 of a full sync: pass 2 recomputes every referrer */
    }
    ret = engine_mv_referrers(ctx->eng, mv, &ids, err);
    for (k = 0; ret == IDS_OK && k < ids.nr; k++) {
        if (recompute) {
            queue_recompute(ctx, ids.v[k]);
        } else {
            queue_mv(ctx, ids.v[k]);
        }
    }
    i64vec_release(&ids);
    return ret;
}

/* ---- inbound ------------------------------------------------------------------ */

/* Resolve one inbound reference value of connector ec to an MV id (0:
 * unresolved). any_state: the link of the value's object whatever its
 * state (the MV id a removed value stood for at the last sync). */
static enum ids_err resolve_ref(struct sync_ctx *ctx, const struct econn *ec, const char *value,
                                bool any_state, int64_t *mv, struct ids_error *err)
{
    enum ids_err ret;
    struct cs_brief b = {0};

    *mv = 0;
    if (econn_caps(ec) & CONN_CAP_REF_BY_DN) {
        ret = store_cs_brief_by_dn(ctx->eng->store, ec->id, value, &b, err);
        if (ret == IDS_ENOTFOUND) {
            /* a member the directory renamed without reporting the group */
            struct cs_object *o = NULL;

            ret = store_cs_get_by_former_dn(ctx->eng->store, ec->id, value, &o, err);
            if (ret == IDS_OK) {
                b.mv_id = o->mv_id;
                b.flags = o->flags;
                b.import_state = o->import_state;
            }
            cs_object_free(o);
        }
    } else {
        ret = store_cs_brief(ctx->eng->store, ec->id, value, &b, err);
    }
    if (ret == IDS_OK &&
        (any_state || (!(b.flags & CS_OUT_OF_SCOPE) && b.import_state != CS_IMPORT_DELETE))) {
        *mv = b.mv_id;
    }
    return ret == IDS_ENOTFOUND ? IDS_OK : ret;
}

static enum ids_err resolve_in_ref(struct sync_ctx *ctx, const struct econn *ec, const char *value,
                                   int64_t *mv, struct ids_error *err)
{
    return resolve_ref(ctx, ec, value, false, mv, err);
}

/* Resolve reference values a of contributor c's flow `it` into MV ids
 * added to out; an unresolved value waits for its object. */
static enum ids_err resolve_values(struct sync_ctx *ctx, const struct contrib *c,
                                   const struct rule_item *it, const struct attr *a,
                                   struct attr *out, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct strbuf key = STRBUF_INIT;
    size_t i;

    for (i = 0; a != NULL && i < a->nvals; i++) {
        int64_t mv = 0;

        ret = resolve_in_ref(ctx, c->ec, a->vals[i].data, &mv, err);
        if (ret != IDS_OK) {
            break;
        }
        if (mv != 0) {
            strbuf_reset(&key);
            strbuf_addf(&key, "%" PRId64, mv);
            attr_add_value(out, key.buf, key.len);
            continue;
        }
        strbuf_reset(&key);
        value_normalize(&key, a->vals[i].data, a->vals[i].len);
        ret = store_ref_wait(ctx->eng->store, c->ec->id, key.buf, c->cs->id, err);
        if (ret != IDS_OK) {
            break;
        }
        sync_unres_add(ctx, false, c->cs->id, c->ec->id, it->source, a->vals[i].data,
                       a->vals[i].len);
    }
    strbuf_release(&key);
    return ret;
}

static enum ids_err inbound_refs(struct sync_ctx *ctx, const struct contrib *c,
                                 const struct rule_item *it, struct attr *out,
                                 struct ids_error *err)
{
    out->flags |= ATTR_REF;
    return resolve_values(ctx, c, it, entry_attr(c->cs->entry, it->source), out, err);
}

/* Can contributor c's references be computed from the MV object's old
 * values and the changes its imports recorded (c->cs->ref_delta)? Only in
 * a delta sync, for an object linked to this MV object since its last
 * sync, when each reference attribute the MV object holds came from c's
 * flow (fi). */
static bool in_delta_ok(const struct sync_ctx *ctx, const struct contrib *c, size_t fi,
                        const struct entry *old)
{
    const struct flow_config *f = c->f;
    size_t i;

    if (!ctx->refs || ctx->full || ctx->map_all_in || old == NULL ||
        !(c->cs->flags & CS_REF_DELTA)) {
        return false;
    }
    for (i = 0; i < f->nflows; i++) {
        const struct attr *oa = entry_attr(old, f->flows[i].attr);

        if (flow_in_is_ref(f, &f->flows[i]) && oa != NULL && oa->source != (int)fi) {
            return false;
        }
    }
    return true;
}

/* Reference flow `it` of contributor c from the old MV value and c's
 * recorded changes: removed values' MV ids out, added values resolved in
 * (or waiting, as inbound_refs). A removed value whose object has no link
 * any more (its MV id unknown) makes the flow resolve every value: the
 * waits kept for the delta stay, and only cost a recomputation when their
 * object comes. */
static enum ids_err inbound_refs_delta(struct sync_ctx *ctx, const struct contrib *c,
                                       const struct rule_item *it, const struct entry *old,
                                       struct attr *out, struct ids_error *err)
{
    const struct attr *oa = entry_attr(old, it->attr);
    const struct attr *del = change_mod_values(c->cs->ref_delta, MOD_DELETE, it->source);
    const struct attr *add = change_mod_values(c->cs->ref_delta, MOD_ADD, it->source);
    struct attr gone;
    struct attr fresh; /* the added values' MV ids */
    struct attr only;
    struct strbuf key = STRBUF_INIT;
    enum ids_err ret = IDS_OK;
    size_t k;

    memset(&gone, 0, sizeof(gone));
    memset(&fresh, 0, sizeof(fresh));
    memset(&only, 0, sizeof(only));
    out->flags |= ATTR_REF;
    for (k = 0; del != NULL && k < del->nvals && ret == IDS_OK; k++) {
        int64_t mv = 0;

        ret = resolve_ref(ctx, c->ec, del->vals[k].data, true, &mv, err);
        if (ret == IDS_OK && mv == 0) {
            attr_release(&gone);
            strbuf_release(&key);
            return inbound_refs(ctx, c, it, out, err);
        }
        strbuf_reset(&key);
        strbuf_addf(&key, "%" PRId64, mv);
        attr_add_value(&gone, key.buf, key.len);
    }
    if (ret == IDS_OK) {
        attr_value_diff(oa, &gone, out, NULL); /* the old values less the removed */
    }
    if (ret == IDS_OK) {
        ret = resolve_values(ctx, c, it, add, &fresh, err);
    }
    /* sets: an MV id already there (a value added back) is not doubled */
    attr_value_diff(&fresh, out, &only, NULL);
    for (k = 0; k < only.nvals; k++) {
        attr_add_value(out, only.vals[k].data, only.vals[k].len);
    }
    attr_release(&gone);
    attr_release(&fresh);
    attr_release(&only);
    strbuf_release(&key);
    return ret;
}

static bool flow_has_refs(const struct flow_config *f)
{
    size_t i;

    for (i = 0; i < f->nflows; i++) {
        if (flow_in_is_ref(f, &f->flows[i])) {
            return true;
        }
    }
    return false;
}

/* Compute the MV attributes from the contributors, in `from` precedence. */
static enum ids_err mv_compute(struct sync_ctx *ctx, struct mvt_info *mi, struct contrib *cs,
                               size_t n, const struct entry *old, struct entry *out, bool *ok,
                               struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    bool delta;
    size_t fi;
    size_t i;
    size_t k;

    *ok = true;
    for (fi = 0; fi < mi->t->nfrom; fi++) {
        const struct flow_config *f = &mi->t->from[fi];
        struct contrib *c = NULL;

        for (k = 0; k < n; k++) {
            if (cs[k].f == f) {
                c = &cs[k];
                break;
            }
        }
        if (c == NULL) {
            continue;
        }
        delta = in_delta_ok(ctx, c, fi, old);
        if (ctx->refs && flow_has_refs(f) && !delta) {
            /* recorded again by the mapping; a delta keeps the waits of
             * the values it does not resolve */
            ret = store_ref_clear(ctx->eng->store, c->ec->id, c->cs->id, err);
            if (ret != IDS_OK) {
                return ret;
            }
        }
        for (i = 0; i < f->nflows; i++) {
            const struct rule_item *it = &f->flows[i];
            struct attr a;

            if (entry_attr(out, it->attr) != NULL) {
                continue; /* a contributor of higher precedence gave a value */
            }
            memset(&a, 0, sizeof(a));
            a.name = xstrdup(it->attr);
            a.source = (int)fi;
            if (flow_in_is_ref(f, it)) {
                if (!ctx->refs) {
                    /* pass 1 of a full sync keeps the references as they are */
                    const struct attr *o = old ? entry_attr(old, it->attr) : NULL;

                    if (o != NULL) {
                        entry_set_attr(out, it->attr, o);
                    }
                    attr_release(&a);
                    continue;
                }
                ret = delta ? inbound_refs_delta(ctx, c, it, old, &a, err)
                            : inbound_refs(ctx, c, it, &a, err);
            } else {
                ret = flow_eval(it, c->cs->entry, &a, err);
                a.flags &= ~ATTR_REF;
            }
            if (ret == IDS_EEXPR) {
                erun_error_cs(ctx->r, c->ec, c->cs, it->attr, "expression-error", "%s", err->msg);
                *ok = false;
                ret = IDS_OK;
            }
            if (ret != IDS_OK) {
                attr_release(&a);
                return ret;
            }
            if (a.nvals > 0) {
                entry_take_attr(out, it->attr, &a);
            }
            attr_release(&a);
        }
    }
    return IDS_OK;
}

static bool is_from_of(const struct mvt_info *mi, const struct flow_config *f)
{
    return f != NULL && f >= mi->t->from && f < mi->t->from + mi->t->nfrom;
}

static void contribs_free(struct contrib *c, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (!c[i].borrowed) {
            cs_object_free(c[i].cs);
        }
    }
    free(c);
}

/* The CS objects that contribute to MV object mv_id: `cur` (borrowed, its
 * in-memory state counts) and every other linked object of a `from`
 * element that is in scope and not being deleted. */
static enum ids_err gather_contribs(struct sync_ctx *ctx, struct mvt_info *mi, int64_t mv_id,
                                    struct cs_object *cur, struct econn *cur_ec,
                                    const struct flow_config *cur_f, struct contrib **out,
                                    size_t *nout, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct contrib *c = NULL;
    size_t n = 0;
    size_t alloc = 0;
    int64_t ids[64];
    size_t nids = 0;
    size_t i;

    if (cur != NULL) {
        ALLOC_GROW(c, n + 1, alloc);
        c[n].cs = cur;
        c[n].f = cur_f;
        c[n].ec = cur_ec;
        c[n].borrowed = true;
        n++;
    }
    if (mv_id != 0 && (cur == NULL || mi->t->nfrom > 1)) {
        ret = store_cs_links(ctx->eng->store, mv_id, ids, ARRAY_SIZE(ids), &nids, err);
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
            nids = 0;
        }
        if (ret != IDS_OK) {
            goto done;
        }
        for (i = 0; i < nids && i < ARRAY_SIZE(ids); i++) {
            struct cs_object *o = NULL;
            struct econn *ec;
            const struct flow_config *f;
            struct mvt_info *omi = NULL;

            if (cur != NULL && ids[i] == cur->id) {
                continue;
            }
            ret = store_cs_get(ctx->eng->store, ids[i], &o, err);
            if (ret == IDS_ENOTFOUND) {
                ret = IDS_OK;
                continue;
            }
            if (ret != IDS_OK) {
                goto done;
            }
            ec = engine_conn_by_id(ctx->eng, o->connector);
            f = ec ? engine_find_from(ctx->eng, ec, o->type, &omi) : NULL;
            if (f == NULL || omi != mi || !is_from_of(mi, f) || (o->flags & CS_OUT_OF_SCOPE) ||
                o->import_state == CS_IMPORT_DELETE) {
                cs_object_free(o);
                continue;
            }
            ALLOC_GROW(c, n + 1, alloc);
            c[n].cs = o;
            c[n].f = f;
            c[n].ec = ec;
            c[n].borrowed = false;
            n++;
        }
    }
done:
    if (ret != IDS_OK) {
        contribs_free(c, n);
        c = NULL;
        n = 0;
    }
    *out = c;
    *nout = n;
    return ret;
}

/* The reference index of MV object m (written just now; old: its entry
 * before, NULL when new): the values each reference attribute gained and
 * lost. The deltas a delta sync computed for its outbound are used when
 * they are of this object; else the values are compared here. */
static enum ids_err mv_index_refs(struct sync_ctx *ctx, const struct mvt_info *mi,
                                  const struct mv_object *m, const struct entry *old,
                                  struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    size_t i;
    size_t k;

    for (i = 0; ret == IDS_OK && i < mi->ref_attrs.nr; i++) {
        const char *name = mi->ref_attrs.v[i];
        const struct ref_delta *d = NULL;
        struct attr add;
        struct attr del;

        for (k = 0; ctx->delta_mv == m->id && k < ctx->ndeltas && d == NULL; k++) {
            if (strcasecmp(ctx->deltas[k].attr, name) == 0) {
                d = &ctx->deltas[k];
            }
        }
        if (d != NULL) {
            ret = store_mv_refs(ctx->eng->store, m->id, name, &d->add, &d->del, err);
            continue;
        }
        memset(&add, 0, sizeof(add));
        memset(&del, 0, sizeof(del));
        attr_value_diff(entry_attr(m->entry, name), old ? entry_attr(old, name) : NULL, &add, &del);
        if (add.nvals > 0 || del.nvals > 0) {
            ret = store_mv_refs(ctx->eng->store, m->id, name, &add, &del, err);
        }
        attr_release(&add);
        attr_release(&del);
    }
    return ret;
}

/* Recompute MV object m (loaded, or new with id 0) and write it when it
 * changed (keys only when they changed). */
static enum ids_err mv_update(struct sync_ctx *ctx, struct mvt_info *mi, struct mv_object *m,
                              struct cs_object *cur, struct econn *cur_ec,
                              const struct flow_config *cur_f, bool *changed, bool *ok,
                              struct ids_error *err)
{
    enum ids_err ret;
    struct contrib *c = NULL;
    size_t n = 0;
    struct entry *ne = NULL;
    struct keyset nk;
    struct keyset ok_keys;
    struct entry *old = NULL;
    bool keys_changed = true;

    *changed = false;
    *ok = true;
    deltas_clear(ctx);
    keyset_init(&nk);
    keyset_init(&ok_keys);
    ret = gather_contribs(ctx, mi, m->id, cur, cur_ec, cur_f, &c, &n, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (n == 0 && m->id != 0) {
        /* no configured source contributes (its connectors left the
         * configuration): recomputed from nothing, every attribute would
         * be cleared and the empty object flowed to the targets. It stays
         * as it is, and nothing flows out of it (*ok false), until its last
         * link goes (mv_after_unlink) or its space is dropped. */
        *ok = false;
        goto done;
    }
    ne = entry_new(mi->t->name, NULL, NULL);
    ret = mv_compute(ctx, mi, c, n, m->entry, ne, ok, err);
    if (ret != IDS_OK || !*ok) {
        goto done;
    }
    if (m->id != 0 && m->entry != NULL && entry_hash(ne) == entry_hash(m->entry)) {
        goto done; /* unchanged: no write */
    }
    keyset_build(&nk, &mi->keys, ne);
    if (m->id != 0 && m->entry != NULL) {
        keyset_build(&ok_keys, &mi->keys, m->entry);
        keys_changed = !keyset_equal(&nk, &ok_keys);
    }
    if (ctx->r->pv != NULL && ctx->r->pv->mv_id == 0) {
        ctx->r->pv->mv_id = m->id;
    }
    if (!ctx->full && ctx->refs && m->id != 0 && m->entry != NULL && mi->out_refs) {
        deltas_compute(ctx, m->id, m->entry, ne);
    }
    old = m->entry;
    m->entry = ne;
    ne = NULL;
    m->updated_run = ctx->r->rec.id;
    if (m->id == 0) {
        m->created_run = ctx->r->rec.id;
    } else {
        ctx->r->rec.counters.flowed++;
    }
    if (m->type == NULL) {
        m->type = xstrdup(mi->t->name);
    }
    ret = store_mv_put(ctx->eng->store, m, keys_changed ? &nk.keys : NULL, err);
    if (ret == IDS_OK) {
        ret = mv_index_refs(ctx, mi, m, old, err);
    }
    if (ret != IDS_OK) {
        goto done;
    }
    *changed = true;
done:
    entry_free(old);
    entry_free(ne);
    keyset_release(&nk);
    keyset_release(&ok_keys);
    contribs_free(c, n);
    return ret;
}

/* ---- outbound ---------------------------------------------------------------- */

/* Put cs's pending export = ch (owned; NULL = none). Writes only when it
 * differs (full: write the whole object, e.g. after a join). */
static enum ids_err set_pending(struct sync_ctx *ctx, struct cs_object *cs, struct change *ch,
                                bool full, struct ids_error *err)
{
    if (change_equal(ch, cs->pending_export)) {
        change_free(ch);
        if (!full) {
            return IDS_OK;
        }
    } else {
        if (ch != NULL && ch->op == CHANGE_MODIFY) {
            ctx->r->rec.counters.flowed_out++;
        }
        change_free(cs->pending_export);
        cs->pending_export = ch;
        cs->export_state = ch != NULL ? CS_EXPORT_PENDING : CS_EXPORT_NONE;
        cs->export_attempts = 0;
        free(cs->export_error);
        cs->export_error = NULL;
    }
    if (full) {
        return store_cs_put(ctx->eng->store, cs, NULL, err);
    }
    return store_cs_put_export(ctx->eng->store, cs, err);
}

static enum ids_err deprovision(struct sync_ctx *ctx, struct econn *X, const struct flow_config *t,
                                struct cs_object *target, struct ids_error *err)
{
    struct change *ch = NULL;

    ctx->r->rec.counters.deprovisioned++;
    if (ctx->r->pv != NULL) {
        preview_add_sep(&ctx->r->pv->targets);
        strbuf_addf(&ctx->r->pv->targets, "{\"connector\":");
        strbuf_add_json_str(&ctx->r->pv->targets, X->cfg->name, strlen(X->cfg->name));
        strbuf_addf(&ctx->r->pv->targets, ",\"action\":\"deprovision-%s\"}",
                    t->deprovision == DEPROVISION_DELETE    ? "delete"
                    : t->deprovision == DEPROVISION_DISABLE ? "disable"
                                                            : "disconnect");
    }
    if (target->mv_id != 0 && target->mv_id != ctx->removing_mv) {
        /* the groups naming it: their members in X are mapped again */
        enum ids_err ret = queue_referrers(ctx, target->mv_id, false, err);

        if (ret != IDS_OK) {
            return ret;
        }
    }
    if (target->anchor == NULL && target->export_state != CS_EXPORT_INFLIGHT) {
        /* never exported: nothing exists in the target to undo */
        return store_cs_delete(ctx->eng->store, target->id, err);
    }
    target->mv_id = 0;
    switch (t->deprovision) {
    case DEPROVISION_DELETE:
        if (target->anchor != NULL) {
            ch = change_new(CHANGE_DELETE, target->type, target->anchor, target->dn);
        }
        if (target->dn != NULL && (econn_caps(X) & CONN_CAP_REF_BY_DN)) {
            /* whoever waits for its DN (dn-conflict) is created after the delete */
            struct strbuf key = STRBUF_INIT;
            enum ids_err ret;

            dn_wait_key(&key, X->id, target->dn);
            ret = queue_waiters(ctx, 0, key.buf, err);
            strbuf_release(&key);
            if (ret != IDS_OK) {
                return ret;
            }
        }
        break;
    case DEPROVISION_DISABLE:
        if (target->anchor != NULL) {
            const char *attr = t->disable_attr ? t->disable_attr : "active";
            const char *val = t->disable_value ? t->disable_value : "false";
            struct mod *md;

            ch = change_new(CHANGE_MODIFY, target->type, target->anchor, target->dn);
            md = change_add_mod(ch, MOD_REPLACE, attr, 0);
            attr_add_value(&md->attr, val, strlen(val));
            target->flags |= CS_DISABLED;
        }
        break;
    case DEPROVISION_DISCONNECT:
        break;
    }
    if (ch != NULL) {
        change_free(target->pending_export);
        target->pending_export = ch;
        target->export_state = CS_EXPORT_PENDING;
        target->export_attempts = 0;
        free(target->export_error);
        target->export_error = NULL;
    }
    return store_cs_put(ctx->eng->store, target, NULL, err);
}

/* The target identifiers (normalised DN or anchor) of the CS objects that
 * the desired reference values name, so that the diff can map the current
 * values back to CS ids without a lookup each. */
struct refmap_item {
    char *key;
    int64_t id;
};
struct refmap {
    struct refmap_item *v;
    size_t nr;
    size_t alloc;
    bool sorted;
};

static void refmap_release(struct refmap *rm)
{
    size_t i;

    for (i = 0; i < rm->nr; i++) {
        free(rm->v[i].key);
    }
    free(rm->v);
    memset(rm, 0, sizeof(*rm));
}

static void refmap_add(struct refmap *rm, const char *ident, int64_t id)
{
    struct strbuf sb = STRBUF_INIT;

    value_normalize(&sb, ident, strlen(ident));
    ALLOC_GROW(rm->v, rm->nr + 1, rm->alloc);
    rm->v[rm->nr].key = strbuf_detach(&sb, NULL);
    rm->v[rm->nr].id = id;
    rm->nr++;
    rm->sorted = false;
}

static int cmp_refmap(const void *pa, const void *pb)
{
    return strcmp(((const struct refmap_item *)pa)->key, ((const struct refmap_item *)pb)->key);
}

static int64_t refmap_find(struct refmap *rm, const char *ident, size_t len)
{
    struct strbuf sb = STRBUF_INIT;
    struct refmap_item key;
    struct refmap_item *hit;

    if (rm == NULL || rm->nr == 0) {
        return 0;
    }
    if (!rm->sorted) {
        qsort(rm->v, rm->nr, sizeof(*rm->v), cmp_refmap);
        rm->sorted = true;
    }
    value_normalize(&sb, ident, len);
    key.key = sb.buf;
    hit = bsearch(&key, rm->v, rm->nr, sizeof(*rm->v), cmp_refmap);
    strbuf_release(&sb);
    return hit != NULL ? hit->id : 0;
}

/* MV id (decimal) -> the target CS id of that MV object in X (0: none);
 * its identifier is recorded in rm (may be NULL). */
static enum ids_err map_mv_ref(struct sync_ctx *ctx, const struct econn *X, const char *value,
                               int64_t *cs_id, struct refmap *rm, struct ids_error *err)
{
    enum ids_err ret;
    struct strbuf anchor = STRBUF_INIT;
    struct strbuf dn = STRBUF_INIT;
    char *end = NULL;
    long long mv = strtoll(value, &end, 10);

    *cs_id = 0;
    if (end == value || *end != '\0' || mv <= 0) {
        return IDS_OK;
    }
    /* id, anchor and DN only: a group's members are many lookups */
    ret = store_cs_ref_by_mv(ctx->eng->store, X->id, mv, cs_id, &anchor, &dn, err);
    if (ret == IDS_OK) {
        const struct strbuf *ident = (econn_caps(X) & CONN_CAP_REF_BY_DN) ? &dn : &anchor;

        if (rm != NULL && ident->len > 0 && anchor.len > 0) {
            refmap_add(rm, ident->buf, *cs_id);
        }
    }
    strbuf_release(&anchor);
    strbuf_release(&dn);
    return ret == IDS_ENOTFOUND ? IDS_OK : ret;
}

/* " (from hr E0042)": the first source object joined to m, so that a
 * message about an MV object with no object in the target yet names the
 * person an administrator knows. Empty when there is none. */
void sync_mv_origin(struct sync_ctx *ctx, const struct mv_object *m, struct strbuf *out)
{
    engine_mv_origin(ctx->eng, m->type, m->id, out);
}

/* A value given twice by a flow (`{ mail, lower(mail) }`) is sent once: a
 * directory refuses the whole entry otherwise ("value provided more than
 * once"), and compares most attributes ignoring case and extra spaces
 * (nocase: value_matches, as the confirming import compares; for a
 * directory, "SMTP:a@x" after "smtp:a@x" is the same value too; the first
 * is kept). */
static void drop_repeated_values(struct attr *a, bool nocase)
{
    size_t i;
    size_t k;
    size_t n = 0;

    if (a->nvals < 2 || a->nvals > 1024) {
        return;
    }
    for (i = 0; i < a->nvals; i++) {
        bool seen = false;

        for (k = 0; k < n && !seen; k++) {
            seen = nocase ? value_matches(&a->vals[k], &a->vals[i], a->flags)
                          : a->vals[k].len == a->vals[i].len &&
                                memcmp(a->vals[k].data, a->vals[i].data, a->vals[i].len) == 0;
        }
        if (seen) {
            free(a->vals[i].data);
        } else {
            a->vals[n++] = a->vals[i];
        }
    }
    a->nvals = n;
}

/* The attributes (and DN) the flows of t want for MV object m in X.
 * Reference attributes that flow_delta gives a delta for in in_step (the
 * target joined before this sync, or NULL) are left out: make_diff turns
 * the delta into their changes. */
static enum ids_err out_desired(struct sync_ctx *ctx, struct econn *X, const struct flow_config *t,
                                const struct mv_object *m, const struct cs_object *in_step,
                                struct entry *des, char **dn, struct strvec *dns, bool *ok,
                                struct refmap *rm, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct strbuf sb = STRBUF_INIT;
    size_t i;
    size_t k;

    *ok = true;
    *dn = NULL;
    for (i = 0; i < t->nflows; i++) {
        const struct rule_item *it = &t->flows[i];
        struct attr a;
        struct attr mapped;
        bool ref = flow_out_is_ref(t, it, m->entry);

        if (ref && flow_delta(ctx, X, t, it, m, in_step) != NULL) {
            continue;
        }
        memset(&a, 0, sizeof(a));
        a.name = xstrdup(it->attr);
        a.source = -1;
        ret = flow_eval(it, m->entry, &a, err);
        if (ret == IDS_EEXPR && in_step != NULL) {
            /* named by the target object it would change */
            erun_error_cs(ctx->r, X, in_step, it->attr, "expression-error",
                          "metaverse object %" PRId64 ": %s", m->id, err->msg);
        } else if (ret == IDS_EEXPR) {
            struct strbuf origin = STRBUF_INIT;

            sync_mv_origin(ctx, m, &origin);
            erun_error(ctx->r, X->cfg->name, NULL, NULL, it->attr, "expression-error", 0, m->id,
                       "metaverse object %" PRId64 "%s: %s", m->id, origin.buf, err->msg);
            strbuf_release(&origin);
        }
        if (ret == IDS_EEXPR) {
            *ok = false;
            attr_release(&a);
            ret = IDS_OK;
            continue;
        }
        if (ret != IDS_OK) {
            attr_release(&a);
            break;
        }
        /* an empty string is no value (`title or ""`): a directory refuses
         * it ("invalid per syntax"), and a CSV cell cannot tell them apart */
        attr_remove_value(&a, "", 0);
        if (!ref) {
            drop_repeated_values(&a, (econn_caps(X) & CONN_CAP_REF_BY_DN) != 0);
        }
        if (strcasecmp(it->attr, "dn") == 0) {
            if (a.nvals > 0) {
                free(*dn);
                *dn = xstrdup(a.vals[0].data);
            }
            strvec_clear(dns);
            for (k = 0; k < a.nvals; k++) {
                strvec_push(dns, a.vals[k].data); /* a list: DNs to try in order */
            }
            attr_release(&a);
            continue;
        }
        if (ref) {
            memset(&mapped, 0, sizeof(mapped));
            mapped.name = xstrdup(it->attr);
            mapped.source = -1;
            mapped.flags = ATTR_REF;
            for (k = 0; k < a.nvals && ret == IDS_OK; k++) {
                int64_t csid = 0;

                ret = map_mv_ref(ctx, X, a.vals[k].data, &csid, rm, err);
                if (ret != IDS_OK) {
                    break;
                }
                if (csid != 0) {
                    strbuf_reset(&sb);
                    strbuf_addf(&sb, "%" PRId64, csid);
                    attr_add_value(&mapped, sb.buf, sb.len);
                    continue;
                }
                mv_wait_key(&sb, strtoll(a.vals[k].data, NULL, 10), X->id);
                ret = store_ref_wait(ctx->eng->store, 0, sb.buf, m->id, err);
                sync_unres_add(ctx, true, m->id, X->id, it->attr, a.vals[k].data, a.vals[k].len);
            }
            attr_release(&a);
            a = mapped;
            if (ret != IDS_OK) {
                attr_release(&a);
                break;
            }
        } else {
            a.flags &= ~ATTR_REF;
        }
        if (a.nvals > 0) {
            entry_take_attr(des, it->attr, &a);
        }
        attr_release(&a);
    }
    strbuf_release(&sb);
    if (ret != IDS_OK || !*ok) {
        free(*dn);
        *dn = NULL;
    }
    return ret;
}

/* A dry run shows what the create will carry from the initial flows
 * (passwords not drawn: the output masks them anyway). A real sync stores
 * none of it: the export evaluates them as it sends the create. */
static void dry_run_initial(struct sync_ctx *ctx, const struct econn *X,
                            const struct flow_config *t, const struct mv_object *m,
                            struct change *ch)
{
    struct ids_error err = IDS_ERROR_INIT;

    if (t->ninitial == 0 || !ctx->r->rec.dry_run) {
        return;
    }
    if (flow_initial(t, m->entry, true, ch, &err) != IDS_OK) {
        struct strbuf origin = STRBUF_INIT;

        sync_mv_origin(ctx, m, &origin);
        erun_error(ctx->r, X->cfg->name, NULL, NULL, NULL, "expression-error", 0, m->id,
                   "metaverse object %" PRId64 "%s: %s", m->id, origin.buf, err.msg);
        strbuf_release(&origin);
    }
}

/* A CHANGE_ADD of every desired attribute; the values move out of des
 * (left with its attribute names and no values). */
static struct change *make_add(const struct flow_config *t, struct entry *des, const char *dn)
{
    struct change *ch = change_new(CHANGE_ADD, t->object, NULL, dn);
    size_t i;

    entry_canonicalize(des);
    for (i = 0; i < des->nattrs; i++) {
        struct mod *md = change_add_mod(ch, MOD_ADD, des->attrs[i].name, des->attrs[i].flags);

        attr_take_values(&md->attr, &des->attrs[i]);
    }
    return ch;
}

/* Current reference values of a target attribute, mapped to CS ids
 * (values that name no known object are left out: idsync does not remove
 * what it cannot identify). */
static enum ids_err map_cur_refs(struct sync_ctx *ctx, const struct econn *X, const struct attr *c,
                                 const struct attr *want, struct refmap *rm, struct attr *out,
                                 struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct strbuf sb = STRBUF_INIT;
    struct u64set wanted = {0}; /* the CS ids in want, filled at the first rename */
    bool have_wanted = false;
    size_t i;

    for (i = 0; c != NULL && i < c->nvals; i++) {
        int64_t id = refmap_find(rm, c->vals[i].data, c->vals[i].len);

        if (id != 0) {
            /* known from the desired values: no lookup */
        } else if (econn_caps(X) & CONN_CAP_REF_BY_DN) {
            struct cs_object *o = NULL;
            struct cs_brief b;

            ret = store_cs_brief_by_dn(ctx->eng->store, X->id, c->vals[i].data, &b, err);
            if (ret == IDS_OK) {
                id = b.id;
            } else if (ret == IDS_ENOTFOUND) {
                ret = store_cs_get_by_former_dn(ctx->eng->store, X->id, c->vals[i].data, &o, err);
                if (ret == IDS_OK) {
                    /* an old DN of an object renamed since (the target kept
                     * it): it goes, and the object, if wanted, comes with
                     * its DN */
                    attr_add_value(out, c->vals[i].data, c->vals[i].len);
                    cs_object_free(o);
                    continue;
                }
            }
            cs_object_free(o);
        } else {
            struct cs_brief b;

            ret = store_cs_brief(ctx->eng->store, X->id, c->vals[i].data, &b, err);
            if (ret == IDS_OK) {
                id = b.id;
            }
        }
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
        }
        if (ret != IDS_OK) {
            break;
        }
        if (id != 0 && u64set_has(&ctx->renamed, (uint64_t)id)) {
            /* its DN as the target holds it goes; the member, if it stays,
             * is sent by the export as its DN after the rename */
            attr_add_value(out, c->vals[i].data, c->vals[i].len);
            strbuf_reset(&sb);
            strbuf_addf(&sb, "%" PRId64, id);
            if (!have_wanted && want != NULL) {
                size_t k;

                for (k = 0; k < want->nvals; k++) {
                    u64set_add(&wanted, (uint64_t)strtoll(want->vals[k].data, NULL, 10));
                }
                have_wanted = true;
            }
            if ((econn_caps(X) & CONN_CAP_NOOP_VALUES) && !u64set_has(&wanted, (uint64_t)id)) {
                /* it leaves the group too: a directory that rewrote the
                 * member itself at the rename (AD, refint) holds the new
                 * DN, one that did not the old; both go (the new one as
                 * the object, resolved after its rename), the one absent
                 * is a no-op */
                attr_add_value(out, sb.buf, sb.len);
            }
        } else if (id != 0) {
            strbuf_reset(&sb);
            strbuf_addf(&sb, "%" PRId64, id);
            attr_add_value(out, sb.buf, sb.len);
        }
    }
    u64set_release(&wanted);
    strbuf_release(&sb);
    return ret;
}

static bool json_sets_equal(const struct attr *a, const struct attr *b)
{
    size_t i;
    size_t k;

    if (a->nvals != b->nvals) {
        return false;
    }
    for (i = 0; i < a->nvals; i++) {
        bool found = false;

        for (k = 0; k < b->nvals && !found; k++) {
            found = value_matches(&a->vals[i], &b->vals[k], ATTR_JSON);
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

static void add_values_mod(struct change *ch, enum mod_op op, const char *name, unsigned flags,
                           struct attr *vals)
{
    struct mod *md;

    if (vals->nvals == 0) {
        return;
    }
    md = change_add_mod(ch, op, name, flags);
    attr_take_values(&md->attr, vals);
}

/* Does target attribute c hold `ident` (values compared normalised)? */
static bool cur_has(const struct attr *c, const struct strbuf *ident, struct strbuf *tmp)
{
    struct strbuf want = STRBUF_INIT;
    bool found = false;
    size_t i;

    value_normalize(&want, ident->buf, ident->len);
    for (i = 0; c != NULL && i < c->nvals && !found; i++) {
        strbuf_reset(tmp);
        value_normalize(tmp, c->vals[i].data, c->vals[i].len);
        found = tmp->len == want.len && memcmp(tmp->buf, want.buf, want.len) == 0;
    }
    strbuf_release(&want);
    return found;
}

/* The values of a target attribute normalised and sorted, for the
 * membership tests of a large delta: 50,000 members removed from a group
 * of 100,000 were 5e9 normalisations value by value (cur_has), 77 s. */
struct normset {
    struct strbuf buf;  /* the normalised values, each NUL-terminated */
    struct value *vals; /* pointing into buf, sorted */
    size_t n;
};

static void normset_build(struct normset *ns, const struct attr *c)
{
    size_t *off = xcalloc(c->nvals + 1, sizeof(*off));
    size_t i;

    strbuf_init(&ns->buf, 0);
    for (i = 0; i < c->nvals; i++) {
        off[i] = ns->buf.len;
        value_normalize(&ns->buf, c->vals[i].data, c->vals[i].len);
        strbuf_addch(&ns->buf, '\0');
    }
    off[c->nvals] = ns->buf.len;
    ns->n = c->nvals;
    ns->vals = xcalloc(c->nvals + 1, sizeof(*ns->vals));
    for (i = 0; i < c->nvals; i++) {
        ns->vals[i].data = ns->buf.buf + off[i];
        ns->vals[i].len = off[i + 1] - off[i] - 1;
    }
    qsort(ns->vals, ns->n, sizeof(*ns->vals), value_cmp);
    free(off);
}

static bool normset_has(const struct normset *ns, const struct strbuf *ident, struct strbuf *tmp)
{
    struct value key;

    strbuf_reset(tmp);
    value_normalize(tmp, ident->buf, ident->len);
    key.data = tmp->buf;
    key.len = tmp->len;
    return ns->n > 0 && bsearch(&key, ns->vals, ns->n, sizeof(*ns->vals), value_cmp) != NULL;
}

static void normset_release(struct normset *ns)
{
    strbuf_release(&ns->buf);
    free(ns->vals);
}

/* The changes of target attribute `attr` (current values c) for the MV
 * reference changes dl: added members not there yet (as target CS ids;
 * unresolved ones wait), removed members that are there. */
static enum ids_err delta_mods(struct sync_ctx *ctx, const struct econn *X,
                               const struct mv_object *m, const char *attr, const struct attr *c,
                               const struct ref_delta *dl, struct attr *adds, struct attr *dels,
                               struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct strbuf anchor = STRBUF_INIT;
    struct strbuf dn = STRBUF_INIT;
    struct strbuf sb = STRBUF_INIT;
    bool by_dn = (econn_caps(X) & CONN_CAP_REF_BY_DN) != 0;
    /* past a few thousand comparisons for more than a few changes, c is
     * normalised and sorted once (one member more: one pass is cheaper) */
    size_t nchanges = dl->add.nvals + dl->del.nvals;
    bool big = c != NULL && nchanges > 16 && nchanges * c->nvals > 4096;
    struct normset ns;
    size_t side, k;

    if (big) {
        normset_build(&ns, c);
    }
    for (side = 0; side < 2 && ret == IDS_OK; side++) {
        const struct attr *vals = side == 0 ? &dl->add : &dl->del;

        for (k = 0; k < vals->nvals && ret == IDS_OK; k++) {
            long long mv = strtoll(vals->vals[k].data, NULL, 10);
            int64_t csid = 0;
            bool there;

            ret = mv > 0 ? store_cs_ref_by_mv(ctx->eng->store, X->id, mv, &csid, &anchor, &dn, err)
                         : IDS_ENOTFOUND;
            if (ret == IDS_ENOTFOUND) {
                ret = IDS_OK;
                if (side == 0 && mv > 0) {
                    /* not provisioned yet: waits, as out_desired's mapping */
                    mv_wait_key(&sb, mv, X->id);
                    ret = store_ref_wait(ctx->eng->store, 0, sb.buf, m->id, err);
                    sync_unres_add(ctx, true, m->id, X->id, attr, vals->vals[k].data,
                                   vals->vals[k].len);
                }
                continue; /* a removed member without an object (not mappable) */
            }
            if (ret != IDS_OK) {
                break;
            }
            there = anchor.len > 0 && (big ? normset_has(&ns, by_dn ? &dn : &anchor, &sb)
                                           : cur_has(c, by_dn ? &dn : &anchor, &sb));
            if (side == 0 ? !there : there) {
                strbuf_reset(&sb);
                strbuf_addf(&sb, "%" PRId64, csid);
                attr_add_value(side == 0 ? adds : dels, sb.buf, sb.len);
            }
        }
    }
    if (big) {
        normset_release(&ns);
    }
    strbuf_release(&anchor);
    strbuf_release(&dn);
    strbuf_release(&sb);
    return ret;
}

/* Minimal change from the target's CS entry to the desired attributes,
 * restricted to the flowed attributes; NULL when nothing differs. */
/* objectClass of a directory entry: the classes the flow gives that the
 * entry lacks are added (an auxiliary class added to the flow later); none
 * is removed (the server keeps the structural chain: AD lists top, person
 * and organizationalPerson beside user, and refuses their removal). When
 * the type does not read objectClass, it is set by the create only: an
 * entry whose classes are never read back would otherwise be sent them at
 * every sync. */
static void object_classes_mod(const struct flow_config *t, const struct attr *d,
                               const struct attr *c, struct change *ch)
{
    struct mod *md = NULL;
    size_t i;
    size_t k;

    if (d == NULL || (t->otype != NULL && t->otype->attributes.nr > 0 &&
                      strvec_find(&t->otype->attributes, "objectClass", true) < 0)) {
        return;
    }
    for (i = 0; i < d->nvals; i++) {
        bool have = false;

        for (k = 0; c != NULL && k < c->nvals && !have; k++) {
            have = strcasecmp(c->vals[k].data, d->vals[i].data) == 0;
        }
        if (!have) {
            if (md == NULL) {
                md = change_add_mod(ch, MOD_ADD, "objectClass", 0);
            }
            attr_add_value(&md->attr, d->vals[i].data, d->vals[i].len);
        }
    }
}

/* A target object that deprovisioning disabled is joined again (a person
 * rehired, a source restored): unless a flow sets the disable attribute
 * itself, the change enables it. AD's `userAccountControl` "2" is a bit,
 * cleared by "0"; "false" becomes "true" (SCIM `active`); any other
 * disable value is removed. */
static void enable_again(const struct flow_config *t, const struct cs_object *target,
                         struct change **ch)
{
    const char *attr = t->disable_attr ? t->disable_attr : "active";
    const char *val = t->disable_value ? t->disable_value : "false";
    const char *on = NULL;
    const char *first;
    const struct attr *cur;
    struct mod *md;
    size_t i;

    for (i = 0; i < t->nflows; i++) {
        if (strcasecmp(t->flows[i].attr, attr) == 0) {
            return; /* the flows decide */
        }
    }
    if (strcasecmp(attr, "userAccountControl") == 0 && strcmp(val, "2") == 0) {
        on = "0";
    } else if (strcmp(val, "false") == 0) {
        on = "true";
    } else if (strcmp(val, "FALSE") == 0) {
        on = "TRUE";
    }
    cur = entry_attr(target->entry, attr);
    first = cur != NULL && cur->nvals > 0 ? cur->vals[0].data : NULL;
    if (on != NULL && first != NULL &&
        (strcmp(on, "0") == 0 ? (strtol(first, NULL, 10) & 2) == 0 : strcmp(first, on) == 0)) {
        return; /* enabled already (by hand) */
    }
    if (on == NULL && (cur == NULL || !attr_has_value(cur, val, strlen(val)))) {
        return;
    }
    if (*ch == NULL) {
        *ch = change_new(CHANGE_MODIFY, target->type, target->anchor, target->dn);
    }
    if (on != NULL) {
        md = change_add_mod(*ch, MOD_REPLACE, attr, 0);
        attr_add_value(&md->attr, on, strlen(on));
    } else {
        md = change_add_mod(*ch, MOD_DELETE, attr, 0);
        attr_add_value(&md->attr, val, strlen(val));
    }
}

/* Whether `v` is, as a DN, one of the values of a. */
static bool dn_value_in(const struct value *v, const struct attr *a)
{
    size_t i;

    for (i = 0; a != NULL && i < a->nvals; i++) {
        if (dn_equal(v->data, a->vals[i].data)) {
            return true;
        }
    }
    return false;
}

/* Values of a DN-syntax attribute (ATTR_DN: the directory's schema says so)
 * that differ from the entry's only in the form of the DN ("CN=Boss,
 * OU=People" where the directory keeps "cn=Boss,ou=People") are not sent:
 * the directory would store its own form again, and the next sync would
 * send them again. Removes them from adds (held by cur) and dels (still
 * wanted by want). */
static void drop_same_dns(struct attr *adds, struct attr *dels, const struct attr *want,
                          const struct attr *cur)
{
    struct attr *side[2] = {adds, dels};
    const struct attr *other[2] = {cur, want};
    size_t s, i, j;

    for (s = 0; s < 2; s++) {
        struct attr *a = side[s];

        for (i = j = 0; i < a->nvals; i++) {
            if (dn_value_in(&a->vals[i], other[s])) {
                free(a->vals[i].data);
            } else {
                a->vals[j++] = a->vals[i];
            }
        }
        a->nvals = j;
    }
}

static enum ids_err make_diff(struct sync_ctx *ctx, struct econn *X, const struct flow_config *t,
                              const struct mv_object *m, const struct cs_object *cs,
                              const struct cs_object *in_step, const struct entry *des,
                              const char *dn, struct refmap *rm, struct change **out,
                              struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct change *ch = change_new(CHANGE_MODIFY, cs->type, cs->anchor, cs->dn);
    size_t i;
    size_t j;

    *out = NULL;
    for (i = 0; i < t->nflows; i++) {
        const struct rule_item *it = &t->flows[i];
        const struct attr *d = entry_attr(des, it->attr);
        const struct attr *c = entry_attr(cs->entry, it->attr);
        const struct ref_delta *dl;
        struct attr adds;
        struct attr dels;
        bool dup = false;

        if (strcasecmp(it->attr, "dn") == 0) {
            continue;
        }
        for (j = 0; j < i; j++) {
            dup = dup || strcasecmp(t->flows[j].attr, it->attr) == 0;
        }
        if (dup) {
            continue;
        }
        if (strcasecmp(it->attr, "objectClass") == 0 && (econn_caps(X) & CONN_CAP_REF_BY_DN)) {
            object_classes_mod(t, d, c, ch);
            continue;
        }
        memset(&adds, 0, sizeof(adds));
        memset(&dels, 0, sizeof(dels));
        dl = flow_delta(ctx, X, t, it, m, in_step);
        if (dl != NULL) {
            ret = delta_mods(ctx, X, m, it->attr, c, dl, &adds, &dels, err);
            add_values_mod(ch, MOD_ADD, it->attr, ATTR_REF, &adds);
            add_values_mod(ch, MOD_DELETE, it->attr, ATTR_REF, &dels);
        } else if ((d != NULL && (d->flags & ATTR_REF)) || flow_out_is_ref(t, it, m->entry)) {
            struct attr cur;

            memset(&cur, 0, sizeof(cur));
            ret = map_cur_refs(ctx, X, c, d, rm, &cur, err);
            if (ret == IDS_OK) {
                attr_value_diff(d, &cur, &adds, &dels);
                add_values_mod(ch, MOD_ADD, it->attr, ATTR_REF, &adds);
                add_values_mod(ch, MOD_DELETE, it->attr, ATTR_REF, &dels);
            }
            attr_release(&cur);
        } else if (d == NULL || d->nvals == 0) {
            if (c != NULL && c->nvals > 0) {
                change_add_mod(ch, MOD_DELETE, it->attr, 0);
            }
        } else if ((d->flags & ATTR_JSON) || (c != NULL && (c->flags & ATTR_JSON))) {
            if (c == NULL || !json_sets_equal(c, d)) {
                struct mod *md = change_add_mod(ch, MOD_REPLACE, it->attr, d->flags);

                attr_release(&md->attr);
                attr_copy(&md->attr, d);
            }
        } else if (d->nvals <= 1 && (c == NULL || c->nvals <= 1)) {
            if (c == NULL ||
                !(attr_values_equal(c, d) || ((c->flags & ATTR_DN) && c->nvals == 1 &&
                                              dn_equal(c->vals[0].data, d->vals[0].data)))) {
                struct mod *md = change_add_mod(ch, MOD_REPLACE, it->attr, d->flags);

                attr_release(&md->attr);
                attr_copy(&md->attr, d);
                md->attr.source = -1;
            }
        } else {
            attr_value_diff(d, c, &adds, &dels);
            if (c != NULL && (c->flags & ATTR_DN)) {
                drop_same_dns(&adds, &dels, d, c);
            }
            add_values_mod(ch, MOD_ADD, it->attr, 0, &adds);
            add_values_mod(ch, MOD_DELETE, it->attr, 0, &dels);
        }
        attr_release(&adds);
        attr_release(&dels);
        if (ret != IDS_OK) {
            change_free(ch);
            return ret;
        }
    }
    if (dn != NULL && cs->dn != NULL && !dn_equal(dn, cs->dn) &&
        (econn_caps(X) & CONN_CAP_RENAME)) {
        ch->new_dn = xstrdup(dn);
    }
    if (change_size(ch) == 0) {
        change_free(ch);
        return IDS_OK;
    }
    *out = ch;
    return IDS_OK;
}

static void pv_target(struct sync_ctx *ctx, const struct econn *X, const struct flow_config *t,
                      const char *action, const struct cs_object *cs)
{
    struct strbuf *sb;

    if (ctx->r->pv == NULL) {
        return;
    }
    sb = &ctx->r->pv->targets;
    preview_add_sep(sb);
    strbuf_addstr(sb, "{\"connector\":");
    strbuf_add_json_str(sb, X->cfg->name, strlen(X->cfg->name));
    strbuf_addstr(sb, ",\"object\":");
    strbuf_add_json_str(sb, t->object, strlen(t->object));
    strbuf_addf(sb, ",\"action\":\"%s\"", action);
    if (cs != NULL && cs->pending_export != NULL) {
        strbuf_addstr(sb, ",\"export\":");
        change_to_json(cs->pending_export, sb);
    }
    strbuf_addch(sb, '}');
}

/* Does `have` (an imported entry) hold every value `des` gives to the
 * attributes the type reads? References and passwords are not compared (not
 * comparable, or not readable). Otherwise *why names the first difference. */
static bool holds_values(const struct flow_config *t, const struct entry *des,
                         const struct entry *have, struct strbuf *why)
{
    size_t i;
    size_t k;
    size_t j;

    for (i = 0; i < des->nattrs; i++) {
        const struct attr *d = &des->attrs[i];
        const struct attr *h;

        if ((d->flags & ATTR_REF) || d->nvals == 0 || attr_is_password(d->name) ||
            (t->otype != NULL && t->otype->attributes.nr > 0 &&
             strvec_find(&t->otype->attributes, d->name, true) < 0)) {
            continue;
        }
        h = entry_attr(have, d->name);
        if (h == NULL || h->nvals == 0) {
            strbuf_addf(why, "it has no %s", d->name);
            return false;
        }
        for (k = 0; k < d->nvals; k++) {
            bool found = false;

            for (j = 0; j < h->nvals && !found; j++) {
                found = value_matches(&h->vals[j], &d->vals[k], d->flags);
            }
            if (!found) {
                strbuf_addf(why, "its %s is ", d->name);
                value_describe(why, h->vals[0].data, h->vals[0].len);
                strbuf_addstr(why, h->nvals > 1 ? " ..., not " : ", not ");
                value_describe(why, d->vals[k].data, d->vals[k].len);
                return false;
            }
        }
    }
    return true;
}

/* What is at a DN of directory X (a connector whose references are DNs:
 * one entry per DN) for metaverse object m. */
enum dn_use {
    DN_FREE,       /* no entry, one on its way out, or m's own */
    DN_JOIN,       /* an entry no metaverse object holds, with every value m's create
                      would give it: the entry that create would make (a store started
                      again, a connector renamed, a create whose result was lost) */
    DN_HELD,       /* the entry of another metaverse object */
    DN_FOREIGN,    /* an entry no metaverse object holds that is someone else */
    DN_UNREADABLE, /* outside what the connector reads of the type (its base) */
};

/* Classify `dn` for m, whose object in X is self (NULL: none yet). *occ:
 * the entry there (DN_JOIN, DN_HELD, DN_FOREIGN; the caller's); why: for
 * DN_FOREIGN, the first value that differs. */
static enum ids_err dn_classify(struct sync_ctx *ctx, struct econn *X, const struct flow_config *t,
                                const struct mv_object *m, const struct cs_object *self,
                                const struct entry *des, const char *dn, enum dn_use *use,
                                struct cs_object **occ, struct strbuf *why, struct ids_error *err)
{
    struct cs_brief b;
    struct cs_object *o = NULL;
    enum ids_err ret;

    *use = DN_FREE;
    *occ = NULL;
    if (dn == NULL || !(econn_caps(X) & CONN_CAP_REF_BY_DN)) {
        return IDS_OK;
    }
    if (!connector_dn_readable(X->cfg, t->object, dn, why)) {
        *use = DN_UNREADABLE;
        return IDS_OK;
    }
    ret = self != NULL ? store_cs_brief_by_dn_other(ctx->eng->store, X->id, dn, self->id, &b, err)
                       : store_cs_brief_by_dn(ctx->eng->store, X->id, dn, &b, err);
    if (ret == IDS_ENOTFOUND) {
        return IDS_OK; /* the usual answer: one look-up */
    }
    if (ret != IDS_OK || (self != NULL && b.id == self->id) || b.mv_id == m->id ||
        b.import_state == CS_IMPORT_DELETE) {
        return ret;
    }
    ret = store_cs_get(ctx->eng->store, b.id, &o, err);
    if (ret == IDS_ENOTFOUND) {
        return IDS_OK;
    }
    if (ret != IDS_OK) {
        return ret;
    }
    if (o->pending_export != NULL && o->pending_export->op == CHANGE_DELETE) {
        /* free once its delete is sent: the export sends it before */
    } else if (o->mv_id != 0 && !(self != NULL && o->anchor == NULL && o->id > self->id)) {
        *use = DN_HELD; /* (of two creates of one DN, the first keeps it) */
    } else if (o->anchor == NULL || o->export_state == CS_EXPORT_INFLIGHT) {
        /* not in the system (yet) */
    } else if (self != NULL && self->anchor != NULL) {
        *use = DN_FOREIGN; /* a rename cannot take the place of another entry */
        strbuf_addstr(why, "a rename cannot replace it");
    } else if (o->type != NULL && strcasecmp(o->type, t->object) == 0 &&
               holds_values(t, des, o->entry, why)) {
        /* an object of m not created yet: its export takes the entry over */
        *use = self == NULL ? DN_JOIN : DN_FREE;
    } else {
        if (why->len == 0) {
            strbuf_addf(why, "it is a %s", o->type ? o->type : "object of another type");
        }
        *use = DN_FOREIGN;
    }
    if (*use == DN_FREE) {
        cs_object_free(o);
    } else {
        *occ = o;
    }
    return IDS_OK;
}

/* `dn` cannot be m's (DN_HELD, DN_FOREIGN: occ is there; DN_UNREADABLE):
 * dn-conflict (dn-out-of-scope) on m, nothing is created or changed for m
 * in X. ncand: how many DNs the dn flow gave (none could be taken). */
static void dn_report(struct sync_ctx *ctx, struct econn *X, const char *t_object,
                      const struct mv_object *m, const struct cs_object *self, const char *dn,
                      enum dn_use use, const struct cs_object *occ, const char *why, size_t ncand)
{
    struct strbuf msg = STRBUF_INIT;
    struct strbuf origin = STRBUF_INIT;
    bool rename = self != NULL && self->anchor != NULL;

    if (rename) {
        strbuf_addf(&msg, "renaming %s to %s", self->dn ? self->dn : "?", dn);
    } else {
        strbuf_addf(&msg, "creating %s", dn);
    }
    if (ncand > 1) {
        strbuf_addf(&msg, " (the first of the %zu DNs the dn flow gives; none is free)", ncand);
    }
    if (use == DN_UNREADABLE) {
        strbuf_addf(&msg,
                    ": that DN is outside what idsync reads of %s/%s (%s), so the entry would "
                    "never be read back, and every full import would find it gone",
                    X->cfg->name, t_object, why);
    } else if (use == DN_HELD) {
        struct mv_object *hm = NULL;
        struct ids_error lerr = IDS_ERROR_INIT;

        strbuf_addf(&msg, ": that DN is already the DN of metaverse object %" PRId64, occ->mv_id);
        if (store_mv_get(ctx->eng->store, occ->mv_id, &hm, &lerr) == IDS_OK) {
            sync_mv_origin(ctx, hm, &msg);
        }
        mv_object_free(hm);
        strbuf_addf(&msg, " in %s, and one entry cannot be two objects", X->cfg->name);
    } else {
        strbuf_addf(&msg,
                    ": an entry is already at that DN in %s, joined to no metaverse object, "
                    "and it is not this one (%s)",
                    X->cfg->name, why);
    }
    sync_mv_origin(ctx, m, &origin);
    strbuf_addf(&msg, "; nothing was %s for metaverse object %" PRId64 "%s. ",
                rename ? "changed" : "created", m->id, origin.buf);
    if (use == DN_HELD && !rename) {
        /* created once the entry there is deprovisioned (deleted) */
        struct strbuf key = STRBUF_INIT;
        struct ids_error lerr = IDS_ERROR_INIT;

        dn_wait_key(&key, X->id, dn);
        if (store_ref_wait(ctx->eng->store, 0, key.buf, m->id, &lerr) != IDS_OK) {
            log_warn("dn-wait", "connector=%s dn=\"%s\": %s", X->cfg->name, dn, lerr.msg);
        }
        strbuf_release(&key);
    }
    if (use == DN_UNREADABLE) {
        strbuf_addf(&msg, "Fix the dn flow, or widen the `base` of %s", t_object);
        erun_error(ctx->r, X->cfg->name, self ? self->anchor : NULL, self ? self->dn : dn, "dn",
                   "dn-out-of-scope", self ? self->id : 0, m->id, "%s", msg.buf);
        strbuf_release(&msg);
        strbuf_release(&origin);
        return;
    }
    if (use == DN_FOREIGN && !rename) {
        strbuf_addstr(&msg, "If it is the same identity, a join rule under this `to:` joins it "
                            "(for example on an employee number or mail); if not, ");
    }
    strbuf_addstr(&msg, use == DN_FOREIGN && !rename ? "make" : "Make");
    strbuf_addstr(&msg, " the dn flow give each object its own DN: with a unique value (an "
                        "employee number), or as a list of DNs to try in order");
    erun_error(ctx->r, X->cfg->name, self ? self->anchor : NULL, self ? self->dn : dn, "dn",
               "dn-conflict", self ? self->id : 0, m->id, "%s", msg.buf);
    strbuf_release(&msg);
    strbuf_release(&origin);
}

/* Can m's object (self, NULL before a create) take `dn` in X? DN_JOIN sets
 * *join (the entry to join instead of creating one); DN_HELD and
 * DN_FOREIGN are reported (*stop). */
static enum ids_err dn_check(struct sync_ctx *ctx, struct econn *X, const struct flow_config *t,
                             const struct mv_object *m, const struct cs_object *self,
                             const struct entry *des, const char *dn, size_t ncand,
                             struct cs_object **join, bool *stop, struct ids_error *err)
{
    struct strbuf why = STRBUF_INIT;
    struct cs_object *occ = NULL;
    enum dn_use use;
    enum ids_err ret = dn_classify(ctx, X, t, m, self, des, dn, &use, &occ, &why, err);

    if (ret == IDS_OK && use == DN_JOIN && join != NULL) {
        log_info("join-by-dn",
                 "connector=%s dn=\"%s\" mv=%" PRId64
                 ": the entry at the DN holds every value of the create: joined",
                 X->cfg->name, dn, m->id);
        *join = occ;
        occ = NULL;
    } else if (ret == IDS_OK && use != DN_FREE && use != DN_JOIN) {
        dn_report(ctx, X, t->object, m, self, dn, use, occ, why.buf, ncand);
        *stop = true;
    }
    cs_object_free(occ);
    strbuf_release(&why);
    return ret;
}

/* The dn flow gave several DNs (dns, in order): the one m's object has
 * (no rename for a DN still offered), else the first it can take. *dn is
 * left as the first when none can be taken (dn_check reports it). */
static enum ids_err dn_choose(struct sync_ctx *ctx, struct econn *X, const struct flow_config *t,
                              const struct mv_object *m, const struct cs_object *self,
                              const struct entry *des, const struct strvec *dns, char **dn,
                              struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    size_t i;

    for (i = 0; self != NULL && self->anchor != NULL && self->dn != NULL && i < dns->nr; i++) {
        if (dn_equal(dns->v[i], self->dn)) {
            free(*dn);
            *dn = xstrdup(dns->v[i]);
            return IDS_OK;
        }
    }
    for (i = 0; i < dns->nr; i++) {
        struct strbuf why = STRBUF_INIT;
        struct cs_object *occ = NULL;
        enum dn_use use = DN_FREE;

        ret = dn_classify(ctx, X, t, m, self, des, dns->v[i], &use, &occ, &why, err);
        cs_object_free(occ);
        strbuf_release(&why);
        if (ret != IDS_OK) {
            return ret;
        }
        if (use == DN_FREE || use == DN_JOIN) {
            free(*dn);
            *dn = xstrdup(dns->v[i]);
            return IDS_OK;
        }
    }
    return IDS_OK;
}

/* m's entry is named by a DN the dn flow gave after its first: the
 * attributes of that DN's RDN take its values (a cn flow written for the
 * first DN would contradict the name: a naming violation). */
static void des_follow_rdn(struct entry *des, const char *dn)
{
    struct ldapdn p = LDAPDN_INIT;
    size_t i;

    if (ldapdn_parse(dn, strlen(dn), &p, NULL) == IDS_OK && p.nrdns > 0) {
        for (i = 0; i < p.rdns[0].navas; i++) {
            const struct ldapdn_ava *ava = &p.rdns[0].avas[i];
            struct attr a = {0};

            if (entry_attr(des, ava->type) == NULL) {
                continue;
            }
            a.source = -1;
            attr_add_value(&a, ava->value, ava->vlen);
            entry_set_attr(des, ava->type, &a);
            attr_release(&a);
        }
    }
    ldapdn_release(&p);
}

static enum ids_err provision(struct sync_ctx *ctx, struct econn *X, const struct flow_config *t,
                              const struct mv_object *m, struct entry *des, const char *dn,
                              struct ids_error *err)
{
    enum ids_err ret;
    struct cs_object *cs;
    struct keyset ks;

    cs = xcalloc(1, sizeof(*cs));
    keyset_init(&ks);
    cs->connector = X->id;
    cs->type = xstrdup(t->object);
    cs->dn = xstrdup_or_null(dn);
    cs->entry = entry_new(t->object, NULL, dn);
    cs->mv_id = m->id;
    cs->flags = CS_PROVISIONED;
    keyset_build(&ks, &X->keys, des); /* before make_add takes the values */
    cs->pending_export = make_add(t, des, dn);
    dry_run_initial(ctx, X, t, m, cs->pending_export);
    cs->export_state = CS_EXPORT_PENDING;
    ret = store_cs_put(ctx->eng->store, cs, &ks.keys, err);
    if (ret == IDS_OK) {
        ctx->r->rec.counters.provisioned++;
        pv_target(ctx, X, t, "provision", cs);
        ret = queue_out_waiters(ctx, m->id, X, err);
    }
    keyset_release(&ks);
    cs_object_free(cs);
    return ret;
}

static enum ids_err outbound_one(struct sync_ctx *ctx, struct mvt_info *mi,
                                 const struct flow_config *t, const struct mv_object *m,
                                 struct ids_error *err)
{
    enum ids_err ret;
    struct econn *X = engine_flow_conn(ctx->eng, t);
    struct cs_object *target = NULL;
    struct entry *des = NULL;
    struct change *ch = NULL;
    struct refmap rm = {0};
    const struct cs_object *in_step; /* the target as linked before this sync */
    char *dn = NULL;
    struct strvec dns = STRVEC_INIT;
    bool was_disabled = false; /* joined again after a deprovisioning that disabled it */
    bool ok = true;
    bool in = true;
    bool joined_now = false;
    bool stop = false;

    (void)mi;
    if (X == NULL) {
        return IDS_OK;
    }
    if (m->id == ctx->fresh_mv) {
        ret = IDS_ENOTFOUND; /* projected just now: no target object yet */
    } else {
        ret = store_cs_get_by_mv(ctx->eng->store, X->id, m->id, &target, err);
    }
    if (ret == IDS_ENOTFOUND) {
        ret = IDS_OK;
        target = NULL;
    }
    if (ret != IDS_OK) {
        goto done;
    }
    if (target != NULL && (target->type == NULL || strcasecmp(target->type, t->object) != 0)) {
        goto done; /* the object of another `to` element of this connector */
    }
    if (t->scope.expr != NULL) {
        ret = expr_eval_bool(t->scope.expr, m->entry, &in, err);
        if (ret == IDS_EEXPR) {
            erun_error(ctx->r, X->cfg->name, target ? target->anchor : NULL,
                       target ? target->dn : NULL, NULL, "expression-error",
                       target ? target->id : 0, m->id, "%s", err->msg);
            ret = IDS_OK;
            goto done;
        }
        if (ret != IDS_OK) {
            goto done;
        }
    }
    if (!in) {
        if (target != NULL) {
            ret = deprovision(ctx, X, t, target, err);
        } else {
            pv_target(ctx, X, t, "out-of-scope", NULL);
        }
        goto done;
    }
    in_step = target;
    des = entry_new(t->object, NULL, NULL);
    ret = out_desired(ctx, X, t, m, in_step, des, &dn, &dns, &ok, &rm, err);
    if (ret != IDS_OK || !ok) {
        goto done;
    }
    if (dns.nr > 1 && (econn_caps(X) & CONN_CAP_REF_BY_DN)) {
        ret = dn_choose(ctx, X, t, m, target, des, &dns, &dn, err);
        if (ret != IDS_OK) {
            goto done;
        }
        if (!dn_equal(dn, dns.v[0])) {
            des_follow_rdn(des, dn);
        }
    }
    if (target == NULL) {
        ret = join_outbound(ctx, X, t, m, des, &target, &stop, err);
        if (ret != IDS_OK || stop) {
            if (stop) {
                pv_target(ctx, X, t, "error", NULL);
            }
            goto done;
        }
        if (target == NULL && t->provision) {
            ret = dn_check(ctx, X, t, m, NULL, des, dn, dns.nr, &target, &stop, err);
            if (ret != IDS_OK || stop) {
                if (stop) {
                    pv_target(ctx, X, t, "error", NULL);
                }
                goto done;
            }
            if (target == NULL) {
                ret = provision(ctx, X, t, m, des, dn, err);
                goto done;
            }
        } else if (target == NULL) {
            pv_target(ctx, X, t, "none", NULL);
            goto done;
        }
        target->mv_id = m->id;
        was_disabled = (target->flags & CS_DISABLED) != 0;
        target->flags &= ~(CS_DISABLED | CS_LEAVER_MOVE);
        ctx->r->rec.counters.joined++;
        joined_now = true;
    }
    if (target->export_state == CS_EXPORT_INFLIGHT) {
        /* a killed export: the next export settles it first */
        if (joined_now) {
            ret = store_cs_put(ctx->eng->store, target, NULL, err);
        }
        pv_target(ctx, X, t, "in-flight", target);
        goto done;
    }
    if (target->anchor == NULL) {
        /* provisioned, not created yet (its create failed, or waits) */
        ret = dn_check(ctx, X, t, m, target, des, dn, dns.nr, NULL, &stop, err);
        if (ret == IDS_OK && stop && target->pending_export != NULL &&
            target->export_attempts == 0) {
            /* a create staged before the DN was taken (a store synced by an
             * older idsync): the export checks it again instead of sending */
            target->export_state = CS_EXPORT_FAILED;
            target->export_attempts = 1;
            free(target->export_error);
            target->export_error = xstrdup("dn-conflict: the DN is another object's");
            ret = store_cs_put_export(ctx->eng->store, target, err);
        }
        if (ret != IDS_OK || stop) {
            if (stop) {
                pv_target(ctx, X, t, "error", target);
            }
            goto done;
        }
        ch = make_add(t, des, dn);
        dry_run_initial(ctx, X, t, m, ch);
    } else {
        ret = make_diff(ctx, X, t, m, target, joined_now ? NULL : in_step, des, dn, &rm, &ch, err);
        if (ret != IDS_OK) {
            goto done;
        }
        if (was_disabled) {
            enable_again(t, target, &ch);
        }
        if (ch != NULL && ch->new_dn != NULL) {
            ret = dn_check(ctx, X, t, m, target, des, ch->new_dn, dns.nr, NULL, &stop, err);
            if (ret != IDS_OK || stop) {
                if (stop) {
                    pv_target(ctx, X, t, "error", target);
                }
                goto done;
            }
        }
        if (ch != NULL && ch->new_dn != NULL && (econn_caps(X) & CONN_CAP_REF_BY_DN)) {
            /* the groups of X that name it by DN follow the rename (a
             * directory without referential integrity would keep the old) */
            u64set_add(&ctx->renamed, (uint64_t)target->id);
            ret = queue_referrers(ctx, m->id, false, err);
            if (ret != IDS_OK) {
                goto done;
            }
        }
    }
    ret = set_pending(ctx, target, ch, joined_now, err);
    ch = NULL;
    if (ret != IDS_OK) {
        goto done;
    }
    pv_target(ctx, X, t,
              joined_now                       ? "join"
              : target->pending_export != NULL ? "update"
                                               : "none",
              target);
    if (joined_now) {
        ret = queue_out_waiters(ctx, m->id, X, err);
    }
done:
    change_free(ch);
    entry_free(des);
    free(dn);
    strvec_clear(&dns);
    refmap_release(&rm);
    cs_object_free(target);
    return ret;
}

static enum ids_err sync_outbound(struct sync_ctx *ctx, struct mvt_info *mi,
                                  const struct mv_object *m, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    size_t i;

    bitmap_set(&ctx->out_done, m->id);
    if (!ctx->outbound) {
        /* pass 1 of a full sync, a type without references: final already */
        bitmap_set(&ctx->final, m->id);
    }
    if (mi->out_refs && ctx->delta_mv != m->id) {
        /* waits are recorded again by the mapping; with a delta, members
         * not mapped now keep theirs */
        ret = store_ref_clear(ctx->eng->store, 0, m->id, err);
    }
    for (i = 0; ret == IDS_OK && i < mi->t->nto; i++) {
        ret = outbound_one(ctx, mi, &mi->t->to[i], m, err);
    }
    deltas_clear(ctx);
    return ret;
}

/* The MV object has lost its last contributor: deprovision it in every
 * target and delete it. */
static enum ids_err mv_remove(struct sync_ctx *ctx, struct mvt_info *mi, struct mv_object *m,
                              struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    int64_t ids[64];
    size_t n = 0;
    size_t i;

    ctx->removing_mv = m->id; /* its referrers are recomputed below */
    for (i = 0; ret == IDS_OK && i < mi->t->nto; i++) {
        const struct flow_config *t = &mi->t->to[i];
        struct econn *X = engine_flow_conn(ctx->eng, t);
        struct cs_object *target = NULL;

        if (X == NULL) {
            continue;
        }
        ret = store_cs_get_by_mv(ctx->eng->store, X->id, m->id, &target, err);
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
            continue;
        }
        if (ret == IDS_OK) {
            ret = deprovision(ctx, X, t, target, err);
        }
        cs_object_free(target);
    }
    ctx->removing_mv = 0;
    /* anything else still linked is unlinked */
    if (ret == IDS_OK) {
        ret = store_cs_links(ctx->eng->store, m->id, ids, ARRAY_SIZE(ids), &n, err);
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
            n = 0;
        }
    }
    for (i = 0; ret == IDS_OK && i < n && i < ARRAY_SIZE(ids); i++) {
        struct cs_object *o = NULL;

        ret = store_cs_get(ctx->eng->store, ids[i], &o, err);
        if (ret == IDS_OK) {
            o->mv_id = 0;
            ret = store_cs_put(ctx->eng->store, o, NULL, err);
        } else if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
        }
        cs_object_free(o);
    }
    if (ret == IDS_OK) {
        ret = store_ref_clear(ctx->eng->store, 0, m->id, err);
    }
    if (ret == IDS_OK) {
        ret = store_mv_delete(ctx->eng->store, m->id, err);
    }
    if (ret == IDS_OK) {
        ctx->r->rec.counters.mv_deleted++;
        ret = queue_referrers(ctx, m->id, true, err);
    }
    return ret;
}

/* A contributor was unlinked from MV object mv_id: delete the MV object
 * when none is left, else recompute it. */
static enum ids_err mv_after_unlink(struct sync_ctx *ctx, struct mvt_info *mi, int64_t mv_id,
                                    struct ids_error *err)
{
    enum ids_err ret;
    struct mv_object *m = NULL;
    struct contrib *c = NULL;
    size_t n = 0;
    bool changed = false;
    bool ok = true;

    ret = store_mv_get(ctx->eng->store, mv_id, &m, err);
    if (ret == IDS_ENOTFOUND) {
        return IDS_OK;
    }
    if (ret != IDS_OK) {
        return ret;
    }
    ret = gather_contribs(ctx, mi, mv_id, NULL, NULL, NULL, &c, &n, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (n == 0) {
        ret = mv_remove(ctx, mi, m, err);
        goto done;
    }
    ret = mv_update(ctx, mi, m, NULL, NULL, NULL, &changed, &ok, err);
    if (ret == IDS_OK && ok && ctx->outbound) {
        ret = sync_outbound(ctx, mi, m, err);
    }
done:
    contribs_free(c, n);
    mv_object_free(m);
    return ret;
}

static void pv_action(struct sync_ctx *ctx, const char *action)
{
    if (ctx->r->pv != NULL) {
        ctx->r->pv->action = action;
    }
}

/* cs has been synced as imported: nothing staged, no recorded changes. */
static void cs_synced(struct cs_object *cs)
{
    cs->import_state = CS_IMPORT_NONE;
    cs->flags &= ~CS_REF_DELTA;
    change_free(cs->ref_delta);
    cs->ref_delta = NULL;
}

/* Inbound for one CS object of a `from` element (cs is the caller's). */
static enum ids_err sync_inbound(struct sync_ctx *ctx, struct econn *ec, struct cs_object *cs,
                                 struct mvt_info *mi, const struct flow_config *f,
                                 struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct mv_object *m = NULL;
    bool in = true;
    bool newly = false;
    bool changed = false;
    bool ok = true;
    bool dirty = cs->import_state != CS_IMPORT_NONE;
    bool projected = false;
    int64_t was;

    if (cs->import_state == CS_IMPORT_DELETE) {
        was = cs->mv_id;
        pv_action(ctx, "delete");
        ret = store_cs_delete(ctx->eng->store, cs->id, err);
        if (ret == IDS_OK && was != 0) {
            ctx->r->rec.counters.disconnected++;
            ret = mv_after_unlink(ctx, mi, was, err);
        }
        return ret;
    }
    if (f->scope.expr != NULL) {
        ret = expr_eval_bool(f->scope.expr, cs->entry, &in, err);
        if (ret == IDS_EEXPR) {
            erun_error_cs(ctx->r, ec, cs, NULL, "expression-error", "scope: %s", err->msg);
            return IDS_OK; /* stays staged: retried by the next sync */
        }
        if (ret != IDS_OK) {
            return ret;
        }
        if (ctx->r->pv != NULL) {
            ctx->r->pv->scope_known = true;
            ctx->r->pv->in_scope = in;
        }
    }
    if (!in) {
        ctx->r->rec.counters.filtered++;
        pv_action(ctx, "out-of-scope");
        was = cs->mv_id;
        if (!dirty && was == 0 && (cs->flags & CS_OUT_OF_SCOPE)) {
            return IDS_OK; /* already so */
        }
        cs->mv_id = 0;
        cs->flags |= CS_OUT_OF_SCOPE;
        cs_synced(cs);
        ret = store_cs_put_link(ctx->eng->store, cs, err);
        if (ret == IDS_OK && was != 0) {
            ctx->r->rec.counters.disconnected++;
            ret = mv_after_unlink(ctx, mi, was, err);
        }
        return ret;
    }
    if (cs->flags & CS_OUT_OF_SCOPE) {
        cs->flags &= ~CS_OUT_OF_SCOPE;
        dirty = true;
    }
    if (cs->mv_id != 0) {
        ret = store_mv_get(ctx->eng->store, cs->mv_id, &m, err);
        if (ret == IDS_ENOTFOUND) {
            /* its MV object is gone: join again */
            cs->mv_id = 0;
            dirty = true;
            ret = IDS_OK;
        }
        if (ret != IDS_OK) {
            goto done;
        }
    }
    if (cs->mv_id == 0) {
        int64_t cand = 0;
        bool stop = false;

        ret = join_inbound(ctx, ec, cs, mi, f, &cand, &stop, err);
        if (ret != IDS_OK) {
            goto done;
        }
        if (stop) {
            pv_action(ctx, "error");
            cs_synced(cs);
            ret = dirty ? store_cs_put_link(ctx->eng->store, cs, err) : IDS_OK;
            goto done;
        }
        if (cand != 0) {
            ret = store_mv_get(ctx->eng->store, cand, &m, err);
            if (ret != IDS_OK) {
                goto done;
            }
            cs->mv_id = cand;
            ctx->r->rec.counters.joined++;
            pv_action(ctx, "join");
        } else if (f->project) {
            m = xcalloc(1, sizeof(*m));
            m->type = xstrdup(mi->t->name);
            ctx->r->rec.counters.projected++;
            projected = true;
            pv_action(ctx, "project");
        } else {
            pv_action(ctx, "none");
            cs_synced(cs);
            ret = dirty ? store_cs_put_link(ctx->eng->store, cs, err) : IDS_OK;
            goto done;
        }
        newly = true;
        dirty = true;
        /* linked now: what its imports recorded is not relative to this
         * MV object */
        cs->flags &= ~CS_REF_DELTA;
    } else {
        pv_action(ctx, "update");
    }
    ret = mv_update(ctx, mi, m, cs, ec, f, &changed, &ok, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (m->id == 0) {
        /* a projection whose flows failed: nothing is created */
        cs->mv_id = 0;
        newly = false;
        ctx->r->rec.counters.projected--;
    } else {
        cs->mv_id = m->id;
    }
    if (ctx->r->pv != NULL) {
        ctx->r->pv->mv_id = m->id;
    }
    if (ok) {
        cs_synced(cs);
    }
    if (dirty) {
        ret = store_cs_put_link(ctx->eng->store, cs, err);
        if (ret != IDS_OK) {
            goto done;
        }
    }
    if (newly) {
        ret = queue_in_waiters(ctx, ec, cs, err);
        if (ret != IDS_OK) {
            goto done;
        }
    }
    if (ok && m->id != 0 && (changed || newly || ctx->full) &&
        (ctx->outbound || (!mi->in_refs && !mi->out_refs))) {
        /* pass 1 of a full sync finishes the objects of types without
         * references right away */
        ctx->fresh_mv = projected ? m->id : 0;
        ret = sync_outbound(ctx, mi, m, err);
        ctx->fresh_mv = 0;
    }
done:
    mv_object_free(m);
    return ret;
}

/* Try outbound join for the MV objects a new target disconnector may
 * belong to (delta sync): rules whose conditions are plain copies of
 * metaverse join keys can be reversed with an index lookup. */
static enum ids_err reverse_join(struct sync_ctx *ctx, struct econn *ec, const struct cs_object *cs,
                                 struct mvt_info *mi, const struct flow_config *t,
                                 struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct strbuf name = STRBUF_INIT;
    struct strbuf norm = STRBUF_INIT;
    size_t ri;

    (void)ec;
    for (ri = 0; ret == IDS_OK && ri < t->njoins; ri++) {
        const struct join_rule *r = &t->joins[ri];
        const struct rule_item *it;
        const char *v;
        int64_t ids[ENGINE_MAX_CANDIDATES];
        size_t n = 0;
        size_t i;

        if (r->nitems == 0) {
            continue;
        }
        it = &r->items[0];
        if (!it->plain || it->source == NULL) {
            continue;
        }
        strbuf_reset(&name);
        strbuf_addstr(&name, it->source);
        strbuf_tolower(&name);
        if (strvec_find(&mi->keys, name.buf, false) < 0) {
            continue;
        }
        v = entry_first(cs->entry, it->attr);
        if (v == NULL) {
            continue;
        }
        strbuf_reset(&norm);
        value_normalize(&norm, v, strlen(v));
        ret = store_mv_find(ctx->eng->store, mi->t->name, name.buf, norm.buf, ids, ARRAY_SIZE(ids),
                            &n, err);
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
            n = 0;
        }
        for (i = 0; ret == IDS_OK && i < n && i < ARRAY_SIZE(ids); i++) {
            /* an MV object whose outbound already ran in this sync saw this
             * object (imported before the sync) */
            if (!bitmap_test(&ctx->out_done, ids[i])) {
                queue_mv(ctx, ids[i]);
            }
        }
    }
    strbuf_release(&name);
    strbuf_release(&norm);
    return ret;
}

/* A staged CS object of a `to` element (imported from a target). */
static enum ids_err sync_target_cs(struct sync_ctx *ctx, struct econn *ec, struct cs_object *cs,
                                   struct mvt_info *mi, const struct flow_config *t,
                                   struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct mv_object *m = NULL;
    int64_t was = cs->mv_id;

    if (cs->import_state == CS_IMPORT_NONE && !ctx->outbound) {
        return IDS_OK;
    }
    if (cs->import_state == CS_IMPORT_DELETE) {
        pv_action(ctx, "delete");
        ret = store_cs_delete(ctx->eng->store, cs->id, err);
        if (ret == IDS_OK && was != 0) {
            ctx->r->rec.counters.disconnected++;
            /* pass 1 of a full sync may have finished its MV object already */
            bitmap_clear(&ctx->final, was);
        }
    } else if (cs->import_state != CS_IMPORT_NONE) {
        cs_synced(cs);
        ret = store_cs_put(ctx->eng->store, cs, NULL, err);
        pv_action(ctx, "update");
    }
    if (ret != IDS_OK || !ctx->outbound) {
        return ret;
    }
    if (was != 0) {
        /* re-provision a deleted object, or correct drift: every value
         * mapped again, no reference delta */
        ret = store_mv_get(ctx->eng->store, was, &m, err);
        if (ret == IDS_ENOTFOUND) {
            return IDS_OK;
        }
        if (ret == IDS_OK) {
            deltas_clear(ctx);
            ret = sync_outbound(ctx, mi, m, err);
        }
        mv_object_free(m);
        return ret;
    }
    if (cs->import_state != CS_IMPORT_DELETE) {
        ret = reverse_join(ctx, ec, cs, mi, t, err);
    }
    return ret;
}

static enum ids_err drop_one_cs(struct sync_ctx *ctx, int64_t cs_id, struct ids_error *err);

enum ids_err sync_one_cs(struct sync_ctx *ctx, int64_t cs_id, struct ids_error *err)
{
    enum ids_err ret;
    struct cs_object *cs = NULL;
    struct econn *ec;
    struct mvt_info *mi = NULL;
    const struct flow_config *f;

    ret = store_cs_get(ctx->eng->store, cs_id, &cs, err);
    if (ret == IDS_ENOTFOUND) {
        return IDS_OK;
    }
    if (ret != IDS_OK) {
        return ret;
    }
    ec = engine_conn_by_id(ctx->eng, cs->connector);
    if (ec == NULL) {
        goto done;
    }
    f = engine_find_from(ctx->eng, ec, cs->type, &mi);
    if (f != NULL) {
        ret = sync_inbound(ctx, ec, cs, mi, f, err);
        goto done;
    }
    f = engine_find_to(ctx->eng, ec, cs->type, &mi);
    if (f != NULL) {
        ret = sync_target_cs(ctx, ec, cs, mi, f, err);
        goto done;
    }
    /* an object type the metaverse does not use (or no longer: a type taken
     * out of the configuration, whose objects a full import no longer
     * reads): a deletion unlinks as its source's delete would (the MV
     * object recomputed, or removed and deprovisioned); else its staging
     * is settled */
    if (cs->import_state == CS_IMPORT_DELETE) {
        ret = drop_one_cs(ctx, cs->id, err);
    } else if (cs->import_state != CS_IMPORT_NONE) {
        cs_synced(cs);
        ret = store_cs_put(ctx->eng->store, cs, NULL, err);
    }
done:
    cs_object_free(cs);
    return ret;
}

/* A referrer whose references may resolve now: recompute its MV object. */
static enum ids_err reprocess_referrer(struct sync_ctx *ctx, int64_t id, struct ids_error *err)
{
    enum ids_err ret;
    struct cs_object *cs = NULL;
    struct mv_object *m = NULL;
    struct econn *ec;
    struct mvt_info *mi = NULL;
    const struct flow_config *f;
    bool changed = false;
    bool ok = true;

    ret = store_cs_get(ctx->eng->store, id, &cs, err);
    if (ret == IDS_ENOTFOUND) {
        return IDS_OK;
    }
    if (ret != IDS_OK) {
        return ret;
    }
    ec = engine_conn_by_id(ctx->eng, cs->connector);
    f = ec ? engine_find_from(ctx->eng, ec, cs->type, &mi) : NULL;
    if (f == NULL || cs->mv_id == 0 || cs->import_state == CS_IMPORT_DELETE) {
        goto done;
    }
    ret = store_mv_get(ctx->eng->store, cs->mv_id, &m, err);
    if (ret == IDS_ENOTFOUND) {
        ret = IDS_OK;
        goto done;
    }
    if (ret != IDS_OK) {
        goto done;
    }
    ctx->map_all_in = true; /* a reference of it may resolve now */
    ret = mv_update(ctx, mi, m, cs, ec, f, &changed, &ok, err);
    ctx->map_all_in = false;
    if (ret == IDS_OK && ok && changed && ctx->outbound) {
        ret = sync_outbound(ctx, mi, m, err);
    }
done:
    mv_object_free(m);
    cs_object_free(cs);
    return ret;
}

static enum ids_err outbound_mv_id(struct sync_ctx *ctx, int64_t id, bool recompute,
                                   struct ids_error *err)
{
    enum ids_err ret;
    struct mv_object *m = NULL;
    struct mvt_info *mi;
    bool changed = false;
    bool ok = true;

    ret = store_mv_get(ctx->eng->store, id, &m, err);
    if (ret == IDS_ENOTFOUND) {
        return IDS_OK;
    }
    if (ret != IDS_OK) {
        return ret;
    }
    mi = engine_mvt(ctx->eng, m->type);
    if (mi != NULL && recompute && mi->in_refs) {
        ctx->map_all_in = true;
        ret = mv_update(ctx, mi, m, NULL, NULL, NULL, &changed, &ok, err);
        ctx->map_all_in = false;
    }
    if (mi != NULL && ret == IDS_OK && ok) {
        /* queued because references may map now: every value is mapped
         * again, not only what the MV object gained */
        deltas_clear(ctx);
        ret = sync_outbound(ctx, mi, m, err);
    }
    mv_object_free(m);
    return ret;
}

enum ids_err sync_drain(struct sync_ctx *ctx, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;

    while (ret == IDS_OK && (ctx->qcs.nr > 0 || ctx->qmv.nr > 0 || ctx->qre.nr > 0)) {
        while (ret == IDS_OK && ctx->qcs.nr > 0) {
            int64_t id = ctx->qcs.v[--ctx->qcs.nr];

            bitmap_clear(&ctx->qcs_set, id);
            ret = reprocess_referrer(ctx, id, err);
        }
        while (ret == IDS_OK && ctx->qre.nr > 0) {
            int64_t id = ctx->qre.v[--ctx->qre.nr];

            bitmap_clear(&ctx->qre_set, id);
            ret = outbound_mv_id(ctx, id, true, err);
        }
        while (ret == IDS_OK && ctx->qmv.nr > 0) {
            int64_t id = ctx->qmv.v[--ctx->qmv.nr];

            bitmap_clear(&ctx->qmv_set, id);
            ret = outbound_mv_id(ctx, id, false, err);
        }
    }
    return ret;
}

/* ---- unresolved references ------------------------------------------------- */

static int cmp_unres(const void *pa, const void *pb)
{
    const struct unres *a = pa;
    const struct unres *b = pb;
    int c;

    if (a->out != b->out) {
        return a->out ? 1 : -1;
    }
    if (a->referrer != b->referrer) {
        return a->referrer < b->referrer ? -1 : 1;
    }
    if (a->conn != b->conn) {
        return a->conn < b->conn ? -1 : 1;
    }
    c = strcmp(a->attr, b->attr);
    return c != 0 ? c : strcmp(a->value, b->value);
}

/* Why MV object `value` (decimal id) has no object in target X, for the
 * message of an outbound reference left out: outside the scope of its `to`
 * rule for X (it never will have one), no `to` rule for X, a rule that does
 * not provision, or not provisioned yet. */
static void why_unmapped(struct sync_ctx *ctx, const struct econn *X, const char *value,
                         struct strbuf *out)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct mv_object *m = NULL;
    const struct flow_config *t = NULL;
    struct mvt_info *mi;
    bool in = true;
    size_t i;

    if (store_mv_get(ctx->eng->store, strtoll(value, NULL, 10), &m, &err) != IDS_OK) {
        strbuf_addstr(out, "which no longer exists; the value was left out");
        return;
    }
    mi = engine_mvt(ctx->eng, m->type);
    for (i = 0; mi != NULL && i < mi->t->nto && t == NULL; i++) {
        if (engine_flow_conn(ctx->eng, &mi->t->to[i]) == X) {
            t = &mi->t->to[i];
        }
    }
    if (t == NULL) {
        strbuf_addf(out,
                    "a %s, which no `to` rule writes to %s; the value was left out (a `to` rule "
                    "for its type, or a flow that leaves it out, ends this)",
                    m->type, X->cfg->name);
    } else if (t->scope.expr != NULL &&
               expr_eval_bool(t->scope.expr, m->entry, &in, &err) == IDS_OK && !in) {
        strbuf_addf(out,
                    "which is outside the scope of the `to` rule for %s/%s (`%s`): it has no "
                    "object there, and the value was left out; it comes back when the object "
                    "enters the scope",
                    X->cfg->name, t->object, t->scope.source);
    } else if (!t->provision) {
        strbuf_addf(out,
                    "which has no object in %s, and the `to` rule for %s/%s does not provision: "
                    "the value was left out and will be added when a join rule finds its object",
                    X->cfg->name, X->cfg->name, t->object);
    } else {
        strbuf_addf(out,
                    "which has no object in %s yet; the value was left out and will be added "
                    "when that object is provisioned or joined",
                    X->cfg->name);
    }
    mv_object_free(m);
}

void sync_report_unresolved(struct sync_ctx *ctx)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf v = STRBUF_INIT;
    struct strbuf why = STRBUF_INIT;
    size_t i;

    if (ctx->nunres > 1) {
        qsort(ctx->unres, ctx->nunres, sizeof(*ctx->unres), cmp_unres);
    }
    for (i = 0; i < ctx->nunres; i++) {
        struct unres *u = &ctx->unres[i];
        struct econn *ec = engine_conn_by_id(ctx->eng, u->conn);

        if ((i > 0 && cmp_unres(&ctx->unres[i - 1], u) == 0) || ec == NULL) {
            continue;
        }
        strbuf_reset(&v);
        value_describe(&v, u->value, strlen(u->value));
        if (!u->out) {
            struct cs_object *o = NULL;
            int64_t mv = 0;

            if (resolve_in_ref(ctx, ec, u->value, &mv, &err) != IDS_OK || mv != 0) {
                continue;
            }
            if (store_cs_get(ctx->eng->store, u->referrer, &o, &err) != IDS_OK) {
                continue;
            }
            erun_error_cs(ctx->r, ec, o, u->attr, "reference-unresolved",
                          "%s value %s names no object of %s that is joined to the metaverse "
                          "(not imported, out of scope, or not joined); it was left out and "
                          "will be resolved when that object joins",
                          u->attr, v.buf, ec->cfg->name);
            cs_object_free(o);
        } else {
            struct cs_object *o = NULL;
            int64_t csid = 0;

            if (map_mv_ref(ctx, ec, u->value, &csid, NULL, &err) != IDS_OK || csid != 0) {
                continue;
            }
            if (store_cs_get_by_mv(ctx->eng->store, ec->id, u->referrer, &o, &err) != IDS_OK) {
                o = NULL;
            }
            strbuf_reset(&why);
            why_unmapped(ctx, ec, u->value, &why);
            erun_error(ctx->r, ec->cfg->name, o ? o->anchor : NULL, o ? o->dn : NULL, u->attr,
                       "reference-unresolved", o ? o->id : 0, u->referrer,
                       "%s of metaverse object %" PRId64 " names metaverse object %s, %s", u->attr,
                       u->referrer, v.buf, why.buf);
            cs_object_free(o);
        }
    }
    strbuf_release(&v);
    strbuf_release(&why);
}

/* ---- the step ------------------------------------------------------------- */

/* A batch of objects is one transaction. The run's counters are kept when
 * it begins and put back when it is rolled back, a failed commit (a full
 * disk) included: the run history counts what the store holds. */
static enum ids_err batch_begin(struct sync_ctx *ctx, struct ids_error *err)
{
    ctx->batch_counters = ctx->r->rec.counters;
    return store_begin(ctx->eng->store, err);
}

static enum ids_err batch_end(struct sync_ctx *ctx, enum ids_err ret, struct ids_error *err)
{
    if (ret == IDS_OK) {
        ret = store_commit(ctx->eng->store, err);
    }
    if (ret != IDS_OK) {
        store_rollback(ctx->eng->store);
        erun_undo_counters(ctx->r, &ctx->batch_counters,
                           ctx->batches_committed > 0
                               ? "The batch being written was rolled back; what was synced "
                                 "before it is kept (the counters say what). Run the sync again "
                                 "to complete it."
                               : "Nothing was synced.");
        return ret;
    }
    ctx->batches_committed++;
    return IDS_OK;
}

typedef enum ids_err (*sync_one_fn)(struct sync_ctx *ctx, int64_t cs_id, struct ids_error *err);

/* Process the ids of one selection of connector `conn` in batches, each
 * object with `one`. */
static enum ids_err sync_selection(struct sync_ctx *ctx, int64_t conn, enum store_sel sel,
                                   sync_one_fn one, bool *stopped, enum ids_err *why,
                                   struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    int64_t *ids = xcalloc(SYNC_BATCH, sizeof(*ids));
    int64_t after = 0;
    size_t n;
    size_t i;

    while (!*stopped) {
        n = 0;
        ret = store_cs_ids(ctx->eng->store, conn, sel, after, ids, SYNC_BATCH, &n, err);
        if (ret != IDS_OK || n == 0) {
            break;
        }
        ret = batch_begin(ctx, err);
        if (ret != IDS_OK) {
            break;
        }
        for (i = 0; i < n && ret == IDS_OK; i++) {
            after = ids[i];
            ret = one(ctx, ids[i], err);
            progress_update(ctx->r->prog, ++ctx->done);
            if (ret == IDS_OK && erun_must_stop(ctx->r, why)) {
                *stopped = true;
                break;
            }
        }
        if (ret == IDS_OK) {
            ret = sync_drain(ctx, err);
        }
        ret = batch_end(ctx, ret, err);
        if (ret != IDS_OK) {
            break;
        }
    }
    free(ids);
    return ret;
}

/* An object of a connector space being dropped, or of an object type the
 * metaverse no longer reads that an import staged as deleted: deleted, and
 * the MV object it was linked to recomputed from the sources the
 * configuration has, or deleted and deprovisioned when none of them is
 * left. */
static enum ids_err drop_one_cs(struct sync_ctx *ctx, int64_t cs_id, struct ids_error *err)
{
    struct cs_object *cs = NULL;
    struct mv_object *m = NULL;
    struct mvt_info *mi;
    int64_t was;
    enum ids_err ret = store_cs_get(ctx->eng->store, cs_id, &cs, err);

    if (ret == IDS_ENOTFOUND) {
        return IDS_OK;
    }
    if (ret != IDS_OK) {
        return ret;
    }
    was = cs->mv_id;
    cs_object_free(cs);
    ret = store_cs_delete(ctx->eng->store, cs_id, err);
    if (ret != IDS_OK || was == 0) {
        return ret;
    }
    ctx->r->rec.counters.disconnected++;
    ret = store_mv_get(ctx->eng->store, was, &m, err);
    if (ret == IDS_ENOTFOUND) {
        return IDS_OK;
    }
    if (ret != IDS_OK) {
        return ret;
    }
    mi = engine_mvt(ctx->eng, m->type);
    mv_object_free(m);
    /* a metaverse type the configuration no longer has: nothing flows */
    return mi == NULL ? IDS_OK : mv_after_unlink(ctx, mi, was, err);
}

enum ids_err sync_drop_space(struct sync_ctx *ctx, int64_t conn, bool *stopped, enum ids_err *why,
                             struct ids_error *err)
{
    ctx->refs = true;
    ctx->outbound = true;
    return sync_selection(ctx, conn, STORE_SEL_ALL, drop_one_cs, stopped, why, err);
}

/* Delta sync: the metaverse objects whose create found their DN held by
 * another one (dn-conflict) and whose DN is free now (its entry deleted,
 * in the directory or by an earlier export, or renamed away) are queued for
 * their outbound and their wait forgotten (a create refused again waits
 * again). A DN still taken, by an entry joined or not (a disabled
 * account), keeps them waiting. */
static enum ids_err dn_waits_due(struct sync_ctx *ctx, struct ids_error *err)
{
    struct strvec keys = STRVEC_INIT;
    int64_t small[64];
    int64_t *ids = small;
    size_t max = ARRAY_SIZE(small);
    size_t n = 0;
    size_t i;
    enum ids_err ret = store_ref_waits_prefix(ctx->eng->store, 0, "dn:", &keys, ids, max, &n, err);

    if (ret == IDS_OK && n > max) {
        max = n;
        ids = xcalloc(max, sizeof(*ids));
        strvec_clear(&keys);
        ret = store_ref_waits_prefix(ctx->eng->store, 0, "dn:", &keys, ids, max, &n, err);
    }
    for (i = 0; ret == IDS_OK && i < keys.nr; i++) {
        const char *k = keys.v[i] + 3;
        char *end = NULL;
        int64_t cid = strtoll(k, &end, 10);
        struct econn *X = end != NULL && *end == ':' ? engine_conn_by_id(ctx->eng, cid) : NULL;
        bool due = X == NULL; /* a connector no longer configured: forgotten */
        struct cs_brief b;

        if (X != NULL) {
            ret = store_cs_brief_by_dn(ctx->eng->store, cid, end + 1, &b, err);
            due = ret == IDS_ENOTFOUND || (ret == IDS_OK && b.import_state == CS_IMPORT_DELETE);
            if (ret == IDS_OK && b.mv_id == ids[i]) {
                ret = store_ref_unwait(ctx->eng->store, 0, keys.v[i], ids[i], err);
                continue; /* it has the DN now */
            }
            ret = ret == IDS_ENOTFOUND ? IDS_OK : ret;
        }
        if (ret == IDS_OK && due) {
            if (X != NULL) {
                queue_mv(ctx, ids[i]);
            }
            ret = store_ref_unwait(ctx->eng->store, 0, keys.v[i], ids[i], err);
        }
    }
    if (ids != small) {
        free(ids);
    }
    strvec_clear(&keys);
    return ret;
}

static enum ids_err sync_mv_all(struct sync_ctx *ctx, bool *stopped, enum ids_err *why,
                                struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    int64_t *ids = xcalloc(SYNC_BATCH, sizeof(*ids));
    int64_t after = 0;
    size_t n;
    size_t i;

    while (!*stopped) {
        n = 0;
        ret = store_mv_ids(ctx->eng->store, NULL, after, ids, SYNC_BATCH, &n, err);
        if (ret != IDS_OK || n == 0) {
            break;
        }
        ret = batch_begin(ctx, err);
        if (ret != IDS_OK) {
            break;
        }
        for (i = 0; i < n && ret == IDS_OK; i++) {
            after = ids[i];
            if (bitmap_test(&ctx->final, ids[i])) {
                continue;
            }
            ret = outbound_mv_id(ctx, ids[i], true, err);
            progress_update(ctx->r->prog, ++ctx->done);
            if (ret == IDS_OK && erun_must_stop(ctx->r, why)) {
                *stopped = true;
                break;
            }
        }
        if (ret == IDS_OK) {
            ret = sync_drain(ctx, err);
        }
        ret = batch_end(ctx, ret, err);
        if (ret != IDS_OK) {
            break;
        }
    }
    free(ids);
    return ret;
}

/* Index the reference values of every MV object of a type with
 * references, when the store has not indexed those (a store written by an
 * older idsync, or a reference flow added to the configuration): who
 * refers to an MV object must be known when it is deleted. */
static enum ids_err ref_keys_ensure(struct engine *eng, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct strbuf sig = STRBUF_INIT;
    struct strbuf have = STRBUF_INIT;
    int64_t *ids = NULL;
    size_t i;
    size_t j;
    size_t k;

    for (i = 0; i < eng->nmvt; i++) {
        const struct mvt_info *mi = &eng->mvt[i];

        if (mi->ref_attrs.nr == 0) {
            continue;
        }
        strbuf_addf(&sig, "%s%s:", sig.len > 0 ? ";" : "", mi->t->name);
        for (j = 0; j < mi->ref_attrs.nr; j++) {
            strbuf_addf(&sig, "%s%s", j > 0 ? "," : "", mi->ref_attrs.v[j]);
        }
    }
    if (sig.len == 0) {
        strbuf_release(&sig);
        return IDS_OK;
    }
    ret = store_meta_get(eng->store, META_REF_KEYS, &have, err);
    if (ret == IDS_OK && strcmp(have.buf, sig.buf) == 0) {
        goto done;
    }
    if (ret != IDS_OK && ret != IDS_ENOTFOUND) {
        goto done;
    }
    ret = IDS_OK;
    ids = xcalloc(REF_KEYS_BATCH, sizeof(*ids));
    for (i = 0; ret == IDS_OK && i < eng->nmvt; i++) {
        struct mvt_info *mi = &eng->mvt[i];
        int64_t after = 0;
        size_t n = 0;

        if (mi->ref_attrs.nr == 0) {
            continue;
        }
        for (;;) {
            ret = store_mv_ids(eng->store, mi->t->name, after, ids, REF_KEYS_BATCH, &n, err);
            if (ret != IDS_OK || n == 0) {
                break;
            }
            ret = store_begin(eng->store, err);
            if (ret != IDS_OK) {
                break;
            }
            for (j = 0; ret == IDS_OK && j < n; j++) {
                struct mv_object *m = NULL;

                after = ids[j];
                ret = store_mv_get(eng->store, ids[j], &m, err);
                if (ret == IDS_ENOTFOUND) {
                    ret = IDS_OK;
                    continue;
                }
                for (k = 0; ret == IDS_OK && m->entry != NULL && k < mi->ref_attrs.nr; k++) {
                    ret = store_mv_refs(eng->store, m->id, mi->ref_attrs.v[k],
                                        entry_attr(m->entry, mi->ref_attrs.v[k]), NULL, err);
                }
                mv_object_free(m);
            }
            if (ret != IDS_OK) {
                store_rollback(eng->store);
                break;
            }
            ret = store_commit(eng->store, err);
            if (ret != IDS_OK) {
                break;
            }
        }
    }
    free(ids);
    if (ret == IDS_OK) {
        ret = store_meta_set(eng->store, META_REF_KEYS, sig.buf, err);
    }
done:
    strbuf_release(&sig);
    strbuf_release(&have);
    return ret;
}

enum ids_err sync_end(struct sync_ctx *ctx, enum ids_err ret, bool stopped, enum ids_err why,
                      const char *again, struct ids_error *err)
{
    if (ret == IDS_OK) {
        sync_report_unresolved(ctx);
    }
    if (ret == IDS_OK && stopped) {
        ret = why;
        if (why == IDS_EINTR) {
            ids_error_set(err, IDS_EINTR,
                          "interrupted; what was done is committed, %s to complete it", again);
        }
    }
    return ret;
}

enum ids_err engine_sync(struct engine *eng, bool full, struct run_record *run,
                         struct ids_error *err)
{
    enum ids_err ret;
    struct erun r;
    struct sync_ctx ctx;
    struct strbuf meta = STRBUF_INIT;
    struct strbuf fp = STRBUF_INIT;
    struct strbuf fp_key = STRBUF_INIT;
    bool stopped = false;
    enum ids_err why = IDS_OK;
    bool forced = false;
    bool fp_first = false;
    bool rules_changed = false;
    bool asked_full = full;
    size_t i;

    engine_fingerprint_key(&fp_key, NULL);
    if (!full) {
        ret = store_meta_get(eng->store, META_FULL_PENDING, &meta, err);
        if (ret == IDS_OK && strcmp(meta.buf, "1") == 0) {
            full = true;
            forced = true;
        } else if (ret != IDS_OK && ret != IDS_ENOTFOUND) {
            goto early;
        }
    }
    ret = IDS_OK;
    if (engine_rules_changed(eng->store, eng->cfg, &fp, &fp_first)) {
        /* rules changed since the last sync: a delta sync would apply them
         * to the changed objects only. None recorded: a store that never
         * synced needs nothing more than a delta sync (everything is
         * staged); one synced before this was kept is synced in full once. */
        long mvs = 0;

        if (fp_first) {
            ret = store_mv_count(eng->store, &mvs, err);
        }
        rules_changed = ret == IDS_OK && (!fp_first || mvs > 0);
    }
    if (ret != IDS_OK) {
        goto early;
    }
    full = full || rules_changed;
    ret = erun_start(eng, &r, full ? "full-sync" : "delta-sync", NULL, err);
    if (ret != IDS_OK) {
        strbuf_release(&meta);
        strbuf_release(&fp);
        strbuf_release(&fp_key);
        return erun_finish(&r, ret, err, run);
    }
    if (forced) {
        erun_message(&r, "The previous full sync did not finish; this sync ran as a full sync.");
    } else if (rules_changed && !asked_full) {
        erun_message(&r, fp_first ? "No fingerprint of the metaverse rules (joins, flows, "
                                    "provisioning) is recorded yet: this sync ran as a full sync, "
                                    "once."
                                  : "The metaverse rules (joins, flows, provisioning) changed "
                                    "since the last sync: this sync ran as a full sync, so that "
                                    "every object follows them.");
    }
    sync_ctx_init(&ctx, eng, &r, full);
    ret = ref_keys_ensure(eng, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (full) {
        long total = 0;
        long n = 0;

        ret = store_meta_set(eng->store, META_FULL_PENDING, "1", err);
        if (ret != IDS_OK) {
            goto done;
        }
        for (i = 0; i < eng->nconns; i++) {
            if (eng->conns[i].is_source &&
                store_cs_count(eng->store, eng->conns[i].id, STORE_SEL_ALL, &n, err) == IDS_OK) {
                total += n;
            }
        }
        progress_set_step(r.prog, "full-sync (inbound)");
        progress_set_total(r.prog, total);
        /* pass 1: join, project and flow what is not a reference, for every
         * object, so that the order of objects does not matter in pass 2 */
        ctx.refs = false;
        ctx.outbound = false;
        for (i = 0; ret == IDS_OK && !stopped && i < eng->nconns; i++) {
            struct econn *ec = &eng->conns[i];

            if (ec->is_source) {
                ret = sync_selection(&ctx, ec->id, STORE_SEL_ALL, sync_one_cs, &stopped, &why, err);
            } else if (ec->is_target) {
                ret = sync_selection(&ctx, ec->id, STORE_SEL_PENDING_IMPORT, sync_one_cs, &stopped,
                                     &why, err);
            }
        }
        /* pass 2: references, then outbound for every MV object */
        ctx.refs = true;
        ctx.outbound = true;
        ctx.done = 0;
        if (store_mv_count(eng->store, &n, err) == IDS_OK) {
            progress_set_total(r.prog, n);
        }
        progress_set_step(r.prog, "full-sync (outbound)");
        if (ret == IDS_OK && !stopped) {
            ret = sync_mv_all(&ctx, &stopped, &why, err);
        }
        if (ret == IDS_OK && !stopped) {
            ret = store_meta_set(eng->store, META_FULL_PENDING, "0", err);
        }
        if (ret == IDS_OK && !stopped) {
            /* every object follows these rules now */
            ret = store_meta_set(eng->store, fp_key.buf, fp.buf, err);
        }
    } else {
        size_t nwaits = 0;
        struct strvec none = STRVEC_INIT;

        for (i = 0; ret == IDS_OK && !stopped && i < eng->nconns; i++) {
            struct econn *ec = &eng->conns[i];

            if (ec->is_source || ec->is_target) {
                ret = sync_selection(&ctx, ec->id, STORE_SEL_PENDING_IMPORT, sync_one_cs, &stopped,
                                     &why, err);
            }
        }
        if (ret == IDS_OK && !stopped) {
            /* a read first: most syncs have no such wait, and need no batch */
            ret = store_ref_waits_prefix(eng->store, 0, "dn:", &none, NULL, 0, &nwaits, err);
        }
        if (ret == IDS_OK && !stopped && nwaits > 0) {
            ret = batch_begin(&ctx, err);
            if (ret == IDS_OK) {
                ret = dn_waits_due(&ctx, err);
                if (ret == IDS_OK) {
                    ret = sync_drain(&ctx, err);
                }
                ret = batch_end(&ctx, ret, err);
            }
        }
    }
    ret = sync_end(&ctx, ret, stopped, why, "run the sync again", err);
    if (ret == IDS_OK && !full && fp_first) {
        /* the first sync of a new store: every object followed these rules */
        ret = store_meta_set(eng->store, fp_key.buf, fp.buf, err);
    }
    if (ret == IDS_OK && r.errlimit) {
        ret = IDS_EERRLIMIT;
    }
done:
    sync_ctx_release(&ctx);
    strbuf_release(&meta);
    strbuf_release(&fp);
    strbuf_release(&fp_key);
    return erun_finish(&r, ret, err, run);
early:
    strbuf_release(&meta);
    strbuf_release(&fp);
    strbuf_release(&fp_key);
    return ret;
}
