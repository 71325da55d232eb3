/* export.c - send pending exports to one target, with the delete
 * threshold, reference ordering (members before their groups) and the
 * in-flight protocol: a batch is marked INFLIGHT and committed before it
 * is sent, and its results are recorded in one transaction after. */
#include "engine/engine_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/fdio.h"
#include "util/ldapesc.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/spool.h"
#include "util/banned.h"

#define EXPORT_BATCH 500

/* What came back for one change: the part of struct export_result that
 * is recorded, without its fixed-size message buffer (a connector that
 * settles at export_end has a whole session of these outstanding). */
struct xres {
    enum ids_err code;
    bool retryable;
    char *anchor; /* see struct export_result */
    char *dn;
    char *msg;             /* the failure, NULL when none */
    struct entry *written; /* see struct export_result */
};

struct xitem {
    int64_t id;           /* the CS object, and the tag */
    struct cs_object *cs; /* as in the store (INFLIGHT once sent); NULL: reloaded to record */
    struct change *sent;  /* the resolved change as sent; NULL while spilled */
    /* a create sent without references to objects that wait for it (a
     * cycle): what becomes its pending export once it succeeded */
    struct change *rest;
    uint64_t spill_off; /* where it was spilled (spill_len > 0) */
    uint32_t spill_len;
    enum cs_export_state prev;
    bool submitted;
    bool done;
    struct xres res;
};

struct xitems {
    struct xitem *v;
    size_t nr;
    size_t alloc;
    bool unsorted;
};

struct export_ctx {
    struct engine *eng;
    struct econn *X;
    struct erun *r;
    bool lost; /* the connection was lost: send nothing more */
    struct ids_error lost_err;
    struct keyset ks;
    struct xitems batch;              /* prepared, not sent yet */
    struct xitems out;                /* sent, result not recorded yet */
    size_t outstanding;               /* items of out submitted and without a result */
    bool in_session;                  /* between export_begin and export_end */
    bool late_results;                /* the connector delivers results at export_end */
    struct strbuf ref_anchor, ref_dn; /* ref_target's look-ups */
    /* the changes of items that wait for export_end, encoded (change_encode)
     * in an unlinked temporary file: a session of a million adds to a CSV
     * file would otherwise hold every change in memory */
    FILE *spill;
    uint64_t spill_end;
    struct strbuf spill_buf;
    /* creates and renames onto the DN of an entry this export deletes:
     * sent after the deletes (deletes_sent) */
    struct i64vec after_deletes;
    bool deletes_sent;
    long deletes; /* pending deletes when the export started */
    /* the last pass over what waits for references: a reference to an
     * object whose create failed is left for later (the change's `rest`)
     * instead of holding the whole change back */
    bool partial;
};

static void xres_release(struct xres *r)
{
    free(r->anchor);
    free(r->dn);
    free(r->msg);
    entry_free(r->written);
    memset(r, 0, sizeof(*r));
}

static void xitem_release(struct xitem *it)
{
    cs_object_free(it->cs);
    change_free(it->sent);
    change_free(it->rest);
    xres_release(&it->res);
    memset(it, 0, sizeof(*it));
}

static void xitems_release(struct xitems *xs)
{
    size_t i;

    for (i = 0; i < xs->nr; i++) {
        xitem_release(&xs->v[i]);
    }
    free(xs->v);
    memset(xs, 0, sizeof(*xs));
}

static struct xitem *xitems_add(struct xitems *xs)
{
    struct xitem *it;

    ALLOC_GROW(xs->v, xs->nr + 1, xs->alloc);
    it = &xs->v[xs->nr++];
    memset(it, 0, sizeof(*it));
    return it;
}

/* The system identifier a reference to CS object `id` is sent as; NULL
 * while that object has no anchor yet, or, when references are DNs, while
 * a rename of it waits to be sent or settled (the group is sent after it,
 * with the new DN: AD refuses a member DN that does not exist yet). *gone
 * when the object no longer exists. */
static enum ids_err ref_target(struct export_ctx *ctx, const char *value, char **out, bool *gone,
                               struct ids_error *err)
{
    enum ids_err ret;
    enum cs_import_state state;
    bool has_anchor;
    bool renaming = false;
    char *end = NULL;
    long long id = strtoll(value, &end, 10);

    *out = NULL;
    *gone = false;
    if (end == value || *end != '\0' || id <= 0) {
        *out = xstrdup(value); /* not a CS id: already a system identifier */
        return IDS_OK;
    }
    /* identifiers only: a group's members are many look-ups */
    ret = store_cs_ident(ctx->eng->store, id, &ctx->ref_anchor, &has_anchor, &ctx->ref_dn, &state,
                         &renaming, err);
    if (ret == IDS_ENOTFOUND) {
        *gone = true;
        return IDS_OK;
    }
    if (ret != IDS_OK) {
        return ret;
    }
    if (has_anchor && state != CS_IMPORT_DELETE) {
        if ((econn_caps(ctx->X) & CONN_CAP_REF_BY_DN) && renaming) {
            return IDS_OK; /* waits for the rename */
        }
        if ((econn_caps(ctx->X) & CONN_CAP_REF_BY_DN) && ctx->ref_dn.len > 0) {
            *out = xstrdup(ctx->ref_dn.buf);
        } else {
            *out = xstrdup(ctx->ref_anchor.buf);
        }
    } else if (has_anchor) {
        *gone = true;
    }
    return IDS_OK;
}

struct normval {
    char *norm; /* value_normalize()d */
    size_t idx; /* index in its attribute */
    bool paired;
};

static int cmp_normval(const void *pa, const void *pb)
{
    return strcmp(((const struct normval *)pa)->norm, ((const struct normval *)pb)->norm);
}

/* Take out of `a` the values whose indexes `drop` marks. */
static void drop_values(struct attr *a, const bool *drop)
{
    size_t i;
    size_t j = 0;

    for (i = 0; i < a->nvals; i++) {
        if (drop[i]) {
            free(a->vals[i].data);
            continue;
        }
        a->vals[j++] = a->vals[i];
    }
    a->nvals = j;
}

/* Values of add equal (normalised) to values of del leave both, one for
 * one: sorted once, each added value found by bisection. */
static void cancel_pairs(struct attr *add, struct attr *del)
{
    struct strbuf sb = STRBUF_INIT;
    size_t nd = del->nvals;
    struct normval *dv = xcalloc(nd ? nd : 1, sizeof(*dv));
    bool *adrop = xcalloc(add->nvals ? add->nvals : 1, sizeof(*adrop));
    bool *ddrop = xcalloc(nd ? nd : 1, sizeof(*ddrop));
    size_t i;

    for (i = 0; i < nd; i++) {
        strbuf_reset(&sb);
        value_normalize(&sb, del->vals[i].data, del->vals[i].len);
        dv[i].norm = xstrdup(sb.buf);
        dv[i].idx = i;
    }
    qsort(dv, nd, sizeof(*dv), cmp_normval);
    for (i = 0; i < add->nvals; i++) {
        struct normval key = {NULL, 0, false};
        struct normval *hit;

        strbuf_reset(&sb);
        value_normalize(&sb, add->vals[i].data, add->vals[i].len);
        key.norm = sb.buf;
        hit = nd > 0 ? bsearch(&key, dv, nd, sizeof(*dv), cmp_normval) : NULL;
        while (hit != NULL && hit > dv && strcmp(hit[-1].norm, sb.buf) == 0) {
            hit--; /* the first of its equals */
        }
        while (hit != NULL && hit < dv + nd && strcmp(hit->norm, sb.buf) == 0 && hit->paired) {
            hit++;
        }
        if (hit != NULL && hit < dv + nd && strcmp(hit->norm, sb.buf) == 0) {
            hit->paired = true;
            ddrop[hit->idx] = true;
            adrop[i] = true;
        }
    }
    drop_values(add, adrop);
    drop_values(del, ddrop);
    for (i = 0; i < nd; i++) {
        free(dv[i].norm);
    }
    free(dv);
    free(adrop);
    free(ddrop);
    strbuf_release(&sb);
}

/* A reference value both added and deleted by one change (a member whose
 * rename failed: the old DN goes, the member resolves to the old DN again)
 * is neither: the pair is dropped, so that the member stays. Mods left
 * without values go. */
static void cancel_add_delete(struct change *ch)
{
    bool *emptied = xcalloc(ch->nmods ? ch->nmods : 1, sizeof(*emptied));
    size_t i;
    size_t j;

    for (i = 0; i < ch->nmods; i++) {
        struct mod *add = &ch->mods[i];

        for (j = 0; add->op == MOD_ADD && (add->attr.flags & ATTR_REF) && j < ch->nmods; j++) {
            struct mod *del = &ch->mods[j];

            if (del->op != MOD_DELETE || !(del->attr.flags & ATTR_REF) || del->attr.nvals == 0 ||
                add->attr.nvals == 0 || strcasecmp(del->attr.name, add->attr.name) != 0) {
                continue;
            }
            cancel_pairs(&add->attr, &del->attr);
            emptied[i] = add->attr.nvals == 0;
            emptied[j] = del->attr.nvals == 0;
        }
    }
    for (i = 0, j = 0; i < ch->nmods; i++) {
        if (emptied[i]) {
            attr_release(&ch->mods[i].attr);
            continue;
        }
        ch->mods[j++] = ch->mods[i];
    }
    ch->nmods = j;
    free(emptied);
}

/* A copy of cs's pending export with reference values resolved to the
 * target's identifiers. *unresolved: some referenced object has no anchor
 * yet (the change must wait). With `rest`, the values that do not resolve
 * are added to it (MOD_ADD, as they were: connector-space ids) instead. */
/* Would create `sent` lack an attribute because all its values are in
 * `rest` (a groupOfNames whose every member failed: OpenLDAP refuses a group
 * without members)? */
static bool loses_an_attribute(const struct change *sent, const struct change *rest)
{
    size_t i;

    for (i = 0; i < rest->nmods; i++) {
        const struct attr *have = change_mod_values(sent, MOD_ADD, rest->mods[i].attr.name);

        if (have == NULL || have->nvals == 0) {
            return true;
        }
    }
    return false;
}

/* Is `value` (a CS id) an object whose create was tried and failed (it
 * stays so until its own problem is fixed)? */
static bool create_failed(struct export_ctx *ctx, const char *value)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct cs_object *o = NULL;
    char *end = NULL;
    long long id = strtoll(value, &end, 10);
    bool failed;

    if (end == value || *end != '\0' || id <= 0 ||
        store_cs_get(ctx->eng->store, id, &o, &err) != IDS_OK) {
        return false;
    }
    failed = o->anchor == NULL && o->export_state == CS_EXPORT_FAILED && o->export_attempts > 0;
    cs_object_free(o);
    return failed;
}

static enum ids_err resolve_change(struct export_ctx *ctx, const struct cs_object *cs,
                                   struct change **out, bool *unresolved, struct strbuf *why,
                                   struct change *rest, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct change *ch = change_dup(cs->pending_export);
    size_t i;
    size_t k;
    size_t m = 0;

    *out = NULL;
    *unresolved = false;
    if (ch->op != CHANGE_ADD) {
        free(ch->anchor);
        ch->anchor = xstrdup_or_null(cs->anchor);
        free(ch->dn);
        ch->dn = xstrdup_or_null(cs->dn);
    }
    if (ch->type == NULL) {
        ch->type = xstrdup_or_null(cs->type);
    }
    for (i = 0; i < ch->nmods; i++) {
        struct mod *md = &ch->mods[i];
        struct mod *later = NULL; /* in rest */
        struct attr resolved;
        bool had = md->attr.nvals > 0;

        if (!(md->attr.flags & ATTR_REF)) {
            ch->mods[m++] = *md;
            continue;
        }
        memset(&resolved, 0, sizeof(resolved));
        for (k = 0; k < md->attr.nvals && ret == IDS_OK; k++) {
            char *v = NULL;
            bool gone = false;

            ret = ref_target(ctx, md->attr.vals[k].data, &v, &gone, err);
            if (ret != IDS_OK || gone) {
                continue; /* a referenced object that went away: nothing to send */
            }
            if (v == NULL && ctx->partial && rest != NULL &&
                create_failed(ctx, md->attr.vals[k].data)) {
                if (later == NULL) {
                    later = change_add_mod(rest, MOD_ADD, md->attr.name, md->attr.flags);
                }
                attr_add_value(&later->attr, md->attr.vals[k].data, md->attr.vals[k].len);
                continue;
            }
            if (v == NULL) {
                *unresolved = true;
                if (why != NULL) {
                    strbuf_addf(why, "%s%s -> connector-space object %s", why->len ? ", " : "",
                                md->attr.name, md->attr.vals[k].data);
                }
                if (rest != NULL) {
                    if (later == NULL) {
                        later = change_add_mod(rest, MOD_ADD, md->attr.name, md->attr.flags);
                    }
                    attr_add_value(&later->attr, md->attr.vals[k].data, md->attr.vals[k].len);
                }
                continue;
            }
            attr_add_value(&resolved, v, strlen(v));
            free(v);
        }
        for (k = 0; k < md->attr.nvals; k++) {
            free(md->attr.vals[k].data);
        }
        free(md->attr.vals);
        md->attr.vals = resolved.vals;
        md->attr.nvals = resolved.nvals;
        md->attr.alloc = resolved.alloc;
        if (had && md->attr.nvals == 0) {
            attr_release(&md->attr); /* every value dropped: drop the mod */
            continue;
        }
        ch->mods[m++] = *md;
    }
    ch->nmods = m;
    if (ret != IDS_OK) {
        change_free(ch);
        return ret;
    }
    cancel_add_delete(ch);
    *out = ch;
    return IDS_OK;
}

static const char *carrier_value(const struct change *ch, const char *carrier)
{
    size_t i;

    for (i = 0; i < ch->nmods; i++) {
        if (strcasecmp(ch->mods[i].attr.name, carrier) == 0 && ch->mods[i].attr.nvals > 0) {
            return ch->mods[i].attr.vals[0].data;
        }
    }
    return NULL;
}

/* Does a reference attribute of e hold `dn` (normalised)? */
static bool names_dn(const struct entry *e, const char *dn)
{
    struct strbuf want = STRBUF_INIT;
    struct strbuf v = STRBUF_INIT;
    bool found = false;
    size_t i;
    size_t k;

    value_normalize(&want, dn, strlen(dn));
    for (i = 0; e != NULL && i < e->nattrs && !found; i++) {
        const struct attr *a = &e->attrs[i];

        for (k = 0; (a->flags & ATTR_REF) && k < a->nvals && !found; k++) {
            strbuf_reset(&v);
            value_normalize(&v, a->vals[k].data, a->vals[k].len);
            found = v.len == want.len && memcmp(v.buf, want.buf, v.len) == 0;
        }
    }
    strbuf_release(&want);
    strbuf_release(&v);
    return found;
}

/* cs (linked to MV object `mv`) was renamed from old_dn: the groups of the
 * target that still hold old_dn (the group's change went out before the
 * rename did, in an earlier run) are staged, so that the next sync diffs
 * them again: the old DN goes (a former DN), the new one comes. */
static enum ids_err stage_stale_referrers(struct export_ctx *ctx, int64_t mv, const char *old_dn,
                                          struct ids_error *err)
{
    struct i64vec ids = {0};
    enum ids_err ret = engine_mv_referrers(ctx->eng, mv, &ids, err);
    size_t k;

    for (k = 0; ret == IDS_OK && k < ids.nr; k++) {
        struct cs_object *g = NULL;

        ret = store_cs_get_by_mv(ctx->eng->store, ctx->X->id, ids.v[k], &g, err);
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
            continue;
        }
        if (ret == IDS_OK && g->import_state == CS_IMPORT_NONE && names_dn(g->entry, old_dn)) {
            g->import_state = CS_IMPORT_UPDATE;
            ret = store_cs_put_link(ctx->eng->store, g, err);
        }
        cs_object_free(g);
    }
    i64vec_release(&ids);
    return ret;
}

/* Write cs (whole) with its target keys; a disconnector that holds the
 * same anchor (imported meanwhile) is the same object: it is replaced. */
static enum ids_err put_exported(struct export_ctx *ctx, struct cs_object *cs,
                                 struct ids_error *err)
{
    enum ids_err ret;
    const struct store_keys *keys = NULL;

    if (ctx->X->keys.nr > 0) {
        keyset_build(&ctx->ks, &ctx->X->keys, cs->entry);
        keys = &ctx->ks.keys;
    }
    ret = store_cs_put(ctx->eng->store, cs, keys, err);
    if (ret == IDS_EEXIST && cs->anchor != NULL) {
        struct cs_object *dup = NULL;

        ret = store_cs_get_by_anchor(ctx->eng->store, cs->connector, cs->anchor, &dup, err);
        if (ret == IDS_OK && dup->id != cs->id && dup->mv_id == 0) {
            ret = store_cs_delete(ctx->eng->store, dup->id, err);
            if (ret == IDS_OK) {
                ret = store_cs_put(ctx->eng->store, cs, keys, err);
            }
        } else if (ret == IDS_OK) {
            ret = ids_error_set(err, IDS_EEXIST,
                                "another object of %s already has anchor %s and is joined",
                                ctx->X->cfg->name, cs->anchor);
        }
        cs_object_free(dup);
    }
    return ret;
}

/* An ADD whose outcome is unknown (in flight in a killed run, or failed
 * before): look for the object by its anchor carrier and adopt it.
 * *adopted when found (and recorded). */
static enum ids_err try_adopt(struct export_ctx *ctx, struct cs_object *cs, bool *adopted,
                              struct ids_error *err)
{
    enum ids_err ret;
    const struct flow_config *t = engine_find_to(ctx->eng, ctx->X, cs->type, NULL);
    const char *value;
    struct entry *found = NULL;
    struct ids_error lerr = IDS_ERROR_INIT;

    *adopted = false;
    if (t == NULL || t->anchor_carrier == NULL || ctx->X->conn->ops->lookup == NULL) {
        return IDS_OK;
    }
    value = carrier_value(cs->pending_export, t->anchor_carrier);
    if (value == NULL) {
        return IDS_OK;
    }
    ret = connector_lookup(ctx->X->conn, cs->type, t->anchor_carrier, value, &found, &lerr);
    if (ret == IDS_ENOTFOUND || ret == IDS_EUNSUPPORTED) {
        return IDS_OK;
    }
    if (ret != IDS_OK) {
        /* cannot tell: do not risk a second create now */
        erun_error_cs(ctx->r, ctx->X, cs, t->anchor_carrier, "export-failed",
                      "cannot check whether an earlier create succeeded: %s; it will be checked "
                      "again by the next export",
                      lerr.msg);
        ctx->r->rec.counters.export_failed++;
        *adopted = true; /* handled: not sent */
        return IDS_OK;
    }
    entry_canonicalize(found);
    entry_set_type(found, cs->type);
    free(cs->anchor);
    cs->anchor = xstrdup_or_null(found->anchor);
    free(cs->dn);
    cs->dn = xstrdup_or_null(found->dn ? found->dn : cs->pending_export->dn);
    entry_free(cs->entry);
    cs->entry = found;
    entry_set_dn(cs->entry, cs->dn);
    cs->hash = entry_hash(cs->entry);
    change_free(cs->pending_export);
    cs->pending_export = NULL;
    cs->export_state = CS_EXPORT_NONE;
    cs->export_attempts = 0;
    free(cs->export_error);
    cs->export_error = NULL;
    ret = put_exported(ctx, cs, err);
    if (ret == IDS_OK) {
        ctx->r->rec.counters.export_add++;
        log_info("export-adopt", "connector=%s anchor=%s: an earlier create had succeeded",
                 ctx->X->cfg->name, cs->anchor ? cs->anchor : "");
        *adopted = true;
    }
    return ret;
}

static int cmp_xitem(const void *pa, const void *pb)
{
    int64_t a = ((const struct xitem *)pa)->id;
    int64_t b = ((const struct xitem *)pb)->id;

    return (a > b) - (a < b);
}

static struct xitem *find_item(struct export_ctx *ctx, uint64_t tag)
{
    struct xitem key;

    if (ctx->out.unsorted) {
        qsort(ctx->out.v, ctx->out.nr, sizeof(*ctx->out.v), cmp_xitem);
        ctx->out.unsorted = false;
    }
    memset(&key, 0, sizeof(key));
    key.id = (int64_t)tag;
    return bsearch(&key, ctx->out.v, ctx->out.nr, sizeof(*ctx->out.v), cmp_xitem);
}

/* Collect results: what is ready, waiting while more than `limit`
 * submitted changes have none (0: wait for all, SIZE_MAX: never wait).
 * Returns IDS_DONE when nothing is outstanding, IDS_EAGAIN when the
 * connector said, while waited on, that results come with export_end,
 * IDS_OK when the limit is reached and nothing more is ready. */
static enum ids_err collect(struct export_ctx *ctx, size_t limit)
{
    long failures = 0;

    for (;;) {
        struct export_result res;
        struct ids_error perr = IDS_ERROR_INIT;
        bool block = ctx->outstanding > limit;
        enum ids_err ret = connector_poll(ctx->X->conn, block, &res, &perr);
        struct xitem *it;

        if (ret == IDS_EAGAIN || ret == IDS_DONE) {
            export_result_release(&res);
            return ret == IDS_EAGAIN && !block ? IDS_OK : ret;
        }
        if (ret != IDS_OK) {
            export_result_release(&res);
            if (!ctx->lost) {
                ctx->lost = true;
                ctx->lost_err = perr;
                if (ctx->lost_err.code == IDS_OK) {
                    ctx->lost_err.code = ret;
                }
            }
            /* later polls report the outstanding changes as failed */
            if (++failures > (long)ctx->out.nr + 8) {
                return ret;
            }
            continue;
        }
        it = find_item(ctx, res.tag);
        if (it == NULL || it->done || !it->submitted) {
            log_warn("export-result", "connector=%s unexpected result tag=%llu", ctx->X->cfg->name,
                     (unsigned long long)res.tag);
            export_result_release(&res);
            continue;
        }
        it->res.code = res.code;
        it->res.retryable = res.retryable;
        it->res.anchor = res.anchor;
        it->res.dn = res.dn;
        it->res.written = res.written;
        res.anchor = NULL;
        res.dn = NULL;
        res.written = NULL;
        if (res.code != IDS_OK) {
            it->res.msg = xstrdup(res.err.msg[0] ? res.err.msg : ids_err_str(res.code));
        }
        export_result_release(&res);
        it->done = true;
        if (ctx->outstanding > 0) {
            ctx->outstanding--;
        }
    }
}

static void count_success(struct export_ctx *ctx, const struct change *ch)
{
    switch (ch->op) {
    case CHANGE_ADD:
        ctx->r->rec.counters.export_add++;
        break;
    case CHANGE_MODIFY:
        if (ch->nmods > 0) {
            ctx->r->rec.counters.export_update++;
        }
        if (ch->new_dn != NULL) {
            ctx->r->rec.counters.export_rename++;
        }
        break;
    case CHANGE_DELETE:
        ctx->r->rec.counters.export_delete++;
        break;
    case CHANGE_NONE:
        break;
    }
}

/* The values of initial flows (an initial password) are sent once and
 * forgotten: not what idsync believes the target holds (AD never returns
 * unicodePwd, and a server may change pwdLastSet), not confirmed, and no
 * secret stays in the store. */
static void drop_initial(struct change *sent)
{
    size_t i;
    size_t j = 0;

    for (i = 0; i < sent->nmods; i++) {
        if (sent->mods[i].attr.flags & ATTR_INITIAL) {
            attr_release(&sent->mods[i].attr);
        } else {
            sent->mods[j++] = sent->mods[i];
        }
    }
    sent->nmods = j;
}

/* Move the change of `it` to the spill file (it waits for export_end). */
static enum ids_err spill_item(struct export_ctx *ctx, struct xitem *it, struct ids_error *err)
{
    if (it->sent == NULL) {
        return IDS_OK;
    }
    if (ctx->spill == NULL) {
        ctx->spill = spool_open(err);
        if (ctx->spill == NULL) {
            return err != NULL ? err->code : IDS_EIO;
        }
    }
    drop_initial(it->sent); /* sent: not written to the temporary file */
    strbuf_reset(&ctx->spill_buf);
    change_encode(it->sent, &ctx->spill_buf);
    if (ctx->spill_buf.len == 0 || ctx->spill_buf.len > UINT32_MAX) {
        return IDS_OK; /* kept in memory */
    }
    if (fwrite(ctx->spill_buf.buf, 1, ctx->spill_buf.len, ctx->spill) != ctx->spill_buf.len) {
        return ids_error_set(err, IDS_EIO, "export to %s: cannot write its temporary file: %s",
                             ctx->X->cfg->name, strerror(errno));
    }
    it->spill_off = ctx->spill_end;
    it->spill_len = (uint32_t)ctx->spill_buf.len;
    ctx->spill_end += ctx->spill_buf.len;
    change_free(it->sent);
    it->sent = NULL;
    return IDS_OK;
}

/* Take the change of `it` back from the spill file. */
static enum ids_err unspill_item(struct export_ctx *ctx, struct xitem *it, struct ids_error *err)
{
    enum ids_err ret;

    if (it->sent != NULL || it->spill_len == 0) {
        return IDS_OK;
    }
    if (fflush(ctx->spill) != 0) { /* what fwrite buffered, before reading under it */
        return ids_error_set(err, IDS_EIO, "export to %s: cannot write its temporary file: %s",
                             ctx->X->cfg->name, strerror(errno));
    }
    strbuf_reset(&ctx->spill_buf);
    strbuf_grow(&ctx->spill_buf, it->spill_len);
    ret = fd_pread_all(fileno(ctx->spill), ctx->spill_buf.buf, it->spill_len, it->spill_off,
                       "the export's temporary file", err);
    if (ret != IDS_OK) {
        return ret;
    }
    ret = change_decode(ctx->spill_buf.buf, it->spill_len, &it->sent, err);
    if (ret != IDS_OK) {
        return ret;
    }
    it->spill_len = 0;
    return IDS_OK;
}

/* The values the connector wrote in place of those of the change (AD's
 * userAccountControl for a disable bit) become the values it exported. */
static void sent_as_written(struct change *sent, const struct entry *written)
{
    size_t i;
    size_t k;

    for (i = 0; i < written->nattrs; i++) {
        const struct attr *w = &written->attrs[i];

        for (k = 0; k < sent->nmods; k++) {
            struct mod *md = &sent->mods[k];

            if (md->op != MOD_DELETE && strcasecmp(md->attr.name, w->name) == 0) {
                struct attr copy = {0};

                attr_copy(&copy, w);
                attr_take_values(&md->attr, &copy);
                attr_release(&copy);
            }
        }
    }
}

/* A disable of a deprovisioned account just succeeded (CS_DISABLED, no MV
 * link, the change set the disable attribute): with disable_move_to, its
 * next pending change moves it there, keeping its RDN. Sent by the next
 * export, so that a move that fails never holds the disable back; flagged
 * CS_LEAVER_MOVE, so that the delete threshold does not count it again. A
 * DN taken there: disabled where it is (reported). */
static void plan_disable_move(struct export_ctx *ctx, struct cs_object *cs,
                              const struct change *sent)
{
    const struct flow_config *t;
    struct strbuf rdn = STRBUF_INIT;
    struct strbuf parent = STRBUF_INIT;
    struct strbuf dn = STRBUF_INIT;
    struct ids_error e = IDS_ERROR_INIT;
    struct cs_brief b;
    bool disables = false;
    size_t i;

    if (sent->op != CHANGE_MODIFY || !(cs->flags & CS_DISABLED) || cs->mv_id != 0 ||
        cs->dn == NULL || cs->anchor == NULL || cs->pending_export != NULL) {
        return;
    }
    t = engine_find_to(ctx->eng, ctx->X, cs->type, NULL);
    if (t == NULL || t->disable_move_to == NULL || t->disable_attr == NULL) {
        return;
    }
    for (i = 0; i < sent->nmods; i++) {
        disables = disables || strcasecmp(sent->mods[i].attr.name, t->disable_attr) == 0;
    }
    if (!disables || ldapdn_rdn(cs->dn, &rdn, &e) != IDS_OK ||
        ldapdn_parent(cs->dn, &parent, &e) != IDS_OK || dn_equal(parent.buf, t->disable_move_to)) {
        goto done;
    }
    strbuf_addf(&dn, "%s,%s", rdn.buf, t->disable_move_to);
    if (store_cs_brief_by_dn_other(ctx->eng->store, ctx->X->id, dn.buf, cs->id, &b, &e) == IDS_OK &&
        b.import_state != CS_IMPORT_DELETE) {
        erun_error_cs(ctx->r, ctx->X, cs, NULL, "dn-conflict",
                      "disabled where it is: %s, where disable_move_to would move it, is already "
                      "another entry's DN",
                      dn.buf);
        goto done;
    }
    cs->pending_export = change_new(CHANGE_MODIFY, cs->type, cs->anchor, cs->dn);
    cs->pending_export->new_dn = strbuf_detach(&dn, NULL);
    cs->export_state = CS_EXPORT_PENDING;
    cs->export_attempts = 0;
    cs->flags |= CS_LEAVER_MOVE;
done:
    strbuf_release(&rdn);
    strbuf_release(&parent);
    strbuf_release(&dn);
}

static enum ids_err record_one(struct export_ctx *ctx, struct xitem *it, struct cs_object *cs,
                               struct ids_error *err)
{
    struct xres *res = &it->res;
    struct strbuf what = STRBUF_INIT;

    if (res->code == IDS_OK) {
        count_success(ctx, it->sent);
        if (it->sent->op == CHANGE_DELETE) {
            return store_cs_delete(ctx->eng->store, cs->id, err);
        }
        if (res->written != NULL) {
            sent_as_written(it->sent, res->written);
        }
        drop_initial(it->sent);
        change_apply(it->sent, cs->entry);
        if (res->anchor != NULL) {
            /* a create, or a rename where the anchor is the DN */
            free(cs->anchor);
            cs->anchor = xstrdup(res->anchor);
        } else if (it->sent->op == CHANGE_ADD && cs->anchor == NULL) {
            log_warn("export-add", "connector=%s dn=\"%s\": no anchor returned for a create",
                     ctx->X->cfg->name, it->sent->dn ? it->sent->dn : "");
        }
        if (it->sent->op == CHANGE_MODIFY && cs->dn != NULL &&
            (econn_caps(ctx->X) & CONN_CAP_REF_BY_DN)) {
            const char *now = res->dn != NULL ? res->dn : it->sent->new_dn;

            if (now != NULL && !dn_equal(cs->dn, now)) {
                /* a group of the target that kept the old DN (no referential
                 * integrity, its own change not sent) names it still */
                enum ids_err ret =
                    store_cs_dn_alias(ctx->eng->store, ctx->X->id, cs->dn, cs->id, err);

                if (ret == IDS_OK && cs->mv_id != 0) {
                    ret = stage_stale_referrers(ctx, cs->mv_id, cs->dn, err);
                }
                if (ret != IDS_OK) {
                    return ret;
                }
            }
        }
        if (res->dn != NULL) {
            free(cs->dn);
            cs->dn = xstrdup(res->dn);
        } else if (it->sent->new_dn != NULL) {
            free(cs->dn);
            cs->dn = xstrdup(it->sent->new_dn);
        } else if (it->sent->op == CHANGE_ADD && it->sent->dn != NULL) {
            free(cs->dn);
            cs->dn = xstrdup(it->sent->dn);
        }
        entry_set_anchor(cs->entry, cs->anchor);
        entry_set_dn(cs->entry, cs->dn);
        entry_set_type(cs->entry, cs->type);
        /* what we believe the system holds now: a confirming import that
         * reads exactly this stages nothing */
        cs->hash = entry_hash(cs->entry);
        change_free(cs->unconfirmed);
        cs->unconfirmed = it->sent;
        it->sent = NULL;
        change_free(cs->pending_export);
        cs->pending_export = NULL;
        cs->export_state = CS_EXPORT_NONE;
        if (it->rest != NULL) {
            /* created without the references that waited for it: they
             * follow as a modify, sent by the next export */
            cs->pending_export = it->rest;
            it->rest = NULL;
            cs->export_state = CS_EXPORT_PENDING;
        }
        cs->export_attempts = 0;
        free(cs->export_error);
        cs->export_error = NULL;
        if (it->sent == NULL && cs->unconfirmed != NULL) {
            if (cs->unconfirmed->new_dn != NULL) {
                cs->flags &= ~CS_LEAVER_MOVE; /* moved */
            }
            plan_disable_move(ctx, cs, cs->unconfirmed);
        }
        return put_exported(ctx, cs, err);
    }
    cs->export_state = CS_EXPORT_FAILED;
    cs->export_attempts++;
    free(cs->export_error);
    cs->export_error = xstrdup(res->msg ? res->msg : ids_err_str(res->code));
    ctx->r->rec.counters.export_failed++;
    if (cs->dn != NULL || cs->anchor != NULL) {
        strbuf_addstr(&what, cs->dn ? cs->dn : cs->anchor);
    } else {
        /* a create into a system without DNs (a CSV file, SCIM): name the
         * metaverse object and where it comes from */
        strbuf_addf(&what, "of metaverse object %" PRId64, cs->mv_id);
        engine_mv_origin(ctx->eng, NULL, cs->mv_id, &what);
    }
    erun_error_cs(ctx->r, ctx->X, cs, NULL, "export-failed", "%s %s failed%s: %s",
                  change_op_name(it->sent->op), what.buf,
                  res->retryable ? " (temporary; retried by the next export)" : "",
                  cs->export_error);
    strbuf_release(&what);
    return store_cs_put_export(ctx->eng->store, cs, err);
}

/* The object of `it` as the store holds it: the copy kept since it was
 * marked in flight (nothing else writes it during the export step), else
 * read again. IDS_ENOTFOUND when it is gone. */
static enum ids_err item_cs(struct export_ctx *ctx, struct xitem *it, struct cs_object **cs,
                            struct ids_error *err)
{
    if (it->cs != NULL) {
        *cs = it->cs;
        it->cs = NULL;
        return IDS_OK;
    }
    return store_cs_get(ctx->eng->store, it->id, cs, err);
}

static enum ids_err record_result(struct export_ctx *ctx, struct xitem *it, struct ids_error *err)
{
    enum ids_err ret;
    struct cs_object *cs = NULL;

    ret = item_cs(ctx, it, &cs, err);
    if (ret == IDS_ENOTFOUND) {
        return IDS_OK;
    }
    if (ret == IDS_OK) {
        ret = unspill_item(ctx, it, err);
    }
    if (ret == IDS_OK) {
        ret = record_one(ctx, it, cs, err);
    }
    cs_object_free(cs);
    return ret;
}

/* Record what came back: results, and changes never sent (back to their
 * previous state). Items sent without a result stay in ctx->out while the
 * connector promises them for later (keep), else they stay INFLIGHT in the
 * store for the next export to settle. */
static enum ids_err record_out(struct export_ctx *ctx, bool keep, struct ids_error *err)
{
    enum ids_err ret;
    size_t i;
    size_t k = 0;

    if (ctx->out.nr == 0) {
        return IDS_OK;
    }
    ret = store_begin(ctx->eng->store, err);
    if (ret != IDS_OK) {
        return ret;
    }
    for (i = 0; i < ctx->out.nr && ret == IDS_OK; i++) {
        struct xitem *it = &ctx->out.v[i];

        if (it->done) {
            ret = record_result(ctx, it, err);
        } else if (!it->submitted) {
            struct cs_object *cs = NULL;

            ret = item_cs(ctx, it, &cs, err);
            if (ret == IDS_OK) {
                cs->export_state = it->prev; /* never left: as before */
                ret = store_cs_put_export(ctx->eng->store, cs, err);
            } else if (ret == IDS_ENOTFOUND) {
                ret = IDS_OK;
            }
            cs_object_free(cs);
        } else if (keep) {
            if (ctx->late_results) {
                /* results come with export_end: memory for a session's
                 * worth of objects would grow with it, they are read again */
                cs_object_free(it->cs);
                it->cs = NULL;
                ret = spill_item(ctx, it, err);
            }
            if (k != i) {
                ctx->out.v[k] = *it;
                memset(it, 0, sizeof(*it)); /* not released twice */
            }
            k++;
            continue;
        }
        xitem_release(it);
    }
    if (ret != IDS_OK) {
        store_rollback(ctx->eng->store);
        return ret;
    }
    ctx->out.nr = k;
    ctx->outstanding = k; /* what is kept has been submitted without a result */
    return store_commit(ctx->eng->store, err);
}

/* Collect results, waiting while more than `limit` are outstanding (0:
 * all), and record them in one transaction; what has no result yet stays
 * outstanding unless everything was waited for. */
static enum ids_err settle(struct export_ctx *ctx, size_t limit, struct ids_error *err)
{
    enum ids_err last = collect(ctx, limit);

    if (last == IDS_EAGAIN) {
        ctx->late_results = true; /* they come with export_end */
    }
    return record_out(ctx, last == IDS_EAGAIN || (limit > 0 && last == IDS_OK), err);
}

/* A create carries the values of the initial flows of its type (an initial
 * password), evaluated now from its metaverse object: they are never
 * written to the store, and a create sent again (after a failure) draws a
 * random password again. drop_initial takes them out once sent. */
static enum ids_err add_initial(struct export_ctx *ctx, struct xitem *it, struct ids_error *err)
{
    const struct flow_config *t = engine_find_to(ctx->eng, ctx->X, it->sent->type, NULL);
    struct mv_object *m = NULL;
    enum ids_err ret;

    if (t == NULL || t->ninitial == 0 || it->cs == NULL || it->cs->mv_id == 0) {
        return IDS_OK;
    }
    ret = store_mv_get(ctx->eng->store, it->cs->mv_id, &m, err);
    if (ret == IDS_ENOTFOUND) {
        return ids_error_set(err, IDS_EINPUT,
                             "metaverse object %" PRId64 " is gone: no initial flow for it",
                             it->cs->mv_id);
    }
    if (ret == IDS_OK) {
        ret = flow_initial(t, m->entry, false, it->sent, err);
    }
    mv_object_free(m);
    return ret;
}

/* Send the prepared batch: in-flight protocol. Unless `drain`, the results
 * of this batch may still be outstanding on return (recorded by a later
 * call), so that the connector has work while the next batch is prepared;
 * the previous batch's are all in. */
static enum ids_err send_batch(struct export_ctx *ctx, bool drain, struct ids_error *err)
{
    enum ids_err ret;
    size_t first = ctx->out.nr;
    size_t nsent = ctx->batch.nr;
    size_t i;

    if (ctx->batch.nr == 0) {
        return drain && ctx->out.nr > 0 ? settle(ctx, 0, err) : IDS_OK;
    }
    /* 1. mark in flight, and commit before anything leaves */
    ret = store_begin(ctx->eng->store, err);
    if (ret != IDS_OK) {
        return ret;
    }
    for (i = 0; i < ctx->batch.nr && ret == IDS_OK; i++) {
        struct cs_object *cs = ctx->batch.v[i].cs;

        ctx->batch.v[i].prev = cs->export_state;
        cs->export_state = CS_EXPORT_INFLIGHT;
        cs->export_run = ctx->r->rec.id;
        ret = store_cs_set_export_state(ctx->eng->store, cs->id, cs->export_state, cs->export_run,
                                        err);
    }
    if (ret != IDS_OK) {
        store_rollback(ctx->eng->store);
        return ret;
    }
    ret = store_commit(ctx->eng->store, err);
    if (ret != IDS_OK) {
        return ret;
    }
    /* the batch is now outstanding, each with its object as stored */
    for (i = 0; i < ctx->batch.nr; i++) {
        struct xitem *it = xitems_add(&ctx->out);

        *it = ctx->batch.v[i];
        if (ctx->out.nr > 1 && ctx->out.v[ctx->out.nr - 2].id > it->id) {
            ctx->out.unsorted = true;
        }
    }
    ctx->batch.nr = 0;
    /* 2. submit, collecting what is ready on the way */
    for (i = first; i < ctx->out.nr && !ctx->lost; i++) {
        struct xitem *it = &ctx->out.v[i];
        struct ids_error serr = IDS_ERROR_INIT;
        enum ids_err sret = IDS_OK;

        if (it->sent->op == CHANGE_ADD) {
            sret = add_initial(ctx, it, &serr);
        }
        if (sret == IDS_OK) {
            sret = connector_submit(ctx->X->conn, it->sent, (uint64_t)it->id, &serr);
        }

        it->submitted = true;
        if (sret == IDS_OK) {
            ctx->outstanding++;
        } else {
            /* not sent */
            it->done = true;
            it->res.code = sret;
            it->res.msg = xstrdup(serr.msg[0] ? serr.msg : ids_err_str(sret));
            it->res.retryable = sret == IDS_EUNREACHABLE || sret == IDS_EIO;
            if (sret == IDS_EUNREACHABLE) {
                ctx->lost = true;
                ctx->lost_err = serr;
            }
            continue;
        }
        collect(ctx, SIZE_MAX);
    }
    /* 3. wait for the rest, or for the previous batch's, and record */
    return settle(ctx, drain || ctx->lost ? 0 : nsent, err);
}

/* End the connector's export session (late results come then), record
 * everything, and begin a new session when `again`. */
static enum ids_err session_flush(struct export_ctx *ctx, bool again, struct ids_error *err)
{
    enum ids_err ret;
    enum ids_err r2;
    struct ids_error eerr = IDS_ERROR_INIT;
    struct ids_error rerr = IDS_ERROR_INIT;

    if (!ctx->in_session) {
        return IDS_OK;
    }
    ctx->in_session = false;
    ret = connector_export_end(ctx->X->conn, &eerr);
    collect(ctx, 0);
    r2 = record_out(ctx, false, &rerr);
    if (ret == IDS_OK && r2 != IDS_OK) {
        ret = r2;
        eerr = rerr;
    }
    if (ret != IDS_OK) {
        if (err != NULL) {
            *err = eerr;
        }
        return ret;
    }
    if (again && !ctx->lost) {
        ret = connector_export_begin(ctx->X->conn, err);
        ctx->in_session = ret == IDS_OK;
    }
    return ret;
}

static void add_item(struct export_ctx *ctx, struct cs_object *cs, struct change *sent)
{
    struct xitem *it = xitems_add(&ctx->batch);

    it->id = cs->id;
    it->cs = cs;
    it->sent = sent;
}

/* Do all the values of `rest` (connector-space ids) name objects of the
 * sorted set `s`? */
static bool rest_within(const struct change *rest, const struct i64vec *s)
{
    size_t i, k;

    for (i = 0; i < rest->nmods; i++) {
        for (k = 0; k < rest->mods[i].attr.nvals; k++) {
            if (i64vec_find(s, strtoll(rest->mods[i].attr.vals[k].data, NULL, 10)) == SIZE_MAX) {
                return false;
            }
        }
    }
    return rest->nmods > 0;
}

/* Load one pending object and queue it for sending if it can be sent now.
 * *deferred: waits for referenced objects. With `cycle`, a create that
 * waits only for objects of `cycle` is sent without those references,
 * which become its pending export once it succeeded. */
/* A create or rename of cs in a directory whose DN another metaverse
 * object's entry holds (a store synced before dn-conflict was checked, or a
 * DN taken since the sync): not sent, failed with dn-conflict (*taken), and
 * tried again by every export, so that it goes once the DN is free. */
static enum ids_err dn_taken(struct export_ctx *ctx, struct cs_object *cs, bool *taken,
                             struct ids_error *err)
{
    const struct change *ch = cs->pending_export;
    const char *dn = ch->op == CHANGE_ADD ? (ch->dn ? ch->dn : cs->dn) : ch->new_dn;
    struct cs_object *h = NULL;
    struct strbuf msg = STRBUF_INIT;
    bool deleting = false;
    enum ids_err ret;

    *taken = false;
    if (ch->op == CHANGE_DELETE || dn == NULL || ctx->deletes_sent) {
        return IDS_OK;
    }
    ret = engine_dn_holder(ctx->eng, ctx->X, dn, cs->id, cs->mv_id, &h, &deleting, err);
    if (ret == IDS_OK && h == NULL && deleting) {
        /* the entry there now is deleted by this export's last pass (a
         * leaver and a joiner of the same name): sent after it */
        i64vec_push(&ctx->after_deletes, cs->id);
        *taken = true;
        return IDS_OK;
    }
    if (ret != IDS_OK || h == NULL) {
        return ret;
    }
    *taken = true;
    strbuf_addf(&msg,
                "%s %s%s%s not sent: that DN is the DN of connector-space object %" PRId64
                " (joined to metaverse object %" PRId64
                "), and one entry cannot be two objects; it is sent by the export after the DN "
                "is free. Make the dn flow give each object its own DN",
                ch->op == CHANGE_ADD ? "create of" : "rename of",
                ch->op == CHANGE_ADD ? dn : (cs->dn ? cs->dn : "?"),
                ch->op == CHANGE_ADD ? "" : " to ", ch->op == CHANGE_ADD ? "" : dn, h->id,
                h->mv_id);
    cs->export_state = CS_EXPORT_FAILED;
    cs->export_attempts++;
    free(cs->export_error);
    cs->export_error = strbuf_detach(&msg, NULL);
    ctx->r->rec.counters.export_failed++;
    erun_error_cs(ctx->r, ctx->X, cs, "dn", "dn-conflict", "%s", cs->export_error);
    cs_object_free(h);
    return store_cs_put_export(ctx->eng->store, cs, err);
}

static enum ids_err prepare(struct export_ctx *ctx, int64_t id, bool deletes, bool *deferred,
                            const struct i64vec *cycle, struct strbuf *why, struct ids_error *err)
{
    enum ids_err ret;
    struct cs_object *cs = NULL;
    struct change *sent = NULL;
    struct change *rest = NULL;
    bool unresolved = false;
    bool adopted = false;

    *deferred = false;
    ret = store_cs_get(ctx->eng->store, id, &cs, err);
    if (ret == IDS_ENOTFOUND) {
        return IDS_OK;
    }
    if (ret != IDS_OK) {
        return ret;
    }
    if (cs->pending_export == NULL || cs->export_state == CS_EXPORT_NONE ||
        (cs->pending_export->op == CHANGE_DELETE) != deletes) {
        cs_object_free(cs);
        return IDS_OK;
    }
    if (cs->pending_export->op == CHANGE_ADD && cs->anchor == NULL &&
        (cs->export_state == CS_EXPORT_INFLIGHT || cs->export_attempts > 0)) {
        /* the caller's transaction holds the adoption */
        ret = try_adopt(ctx, cs, &adopted, err);
        if (ret != IDS_OK || adopted) {
            cs_object_free(cs);
            return ret;
        }
    }
    if (!deletes) {
        bool taken = false;

        ret = dn_taken(ctx, cs, &taken, err);
        if (ret != IDS_OK || taken) {
            cs_object_free(cs);
            return ret;
        }
    }
    if ((cycle != NULL && cs->pending_export->op == CHANGE_ADD) || ctx->partial) {
        rest = change_new(CHANGE_MODIFY, cs->type, cs->anchor, cs->dn);
    }
    ret = resolve_change(ctx, cs, &sent, &unresolved, why, rest, err);
    if (ret != IDS_OK) {
        change_free(rest);
        cs_object_free(cs);
        return ret;
    }
    if (unresolved && rest != NULL && i64vec_find(cycle, cs->id) != SIZE_MAX &&
        rest_within(rest, cycle)) {
        add_item(ctx, cs, sent);
        ctx->batch.v[ctx->batch.nr - 1].rest = rest;
        log_info("export-cycle",
                 "connector=%s dn=\"%s\": created without its references to objects that wait "
                 "for it (a cycle); the next export adds them",
                 ctx->X->cfg->name, cs->dn ? cs->dn : "");
        return IDS_OK;
    }
    if (!unresolved && ctx->partial && rest != NULL && rest->nmods > 0) {
        if ((sent->nmods == 0 && sent->new_dn == NULL && sent->op == CHANGE_MODIFY) ||
            (sent->op == CHANGE_ADD && loses_an_attribute(sent, rest))) {
            /* nothing but those references: it waits, pending, for them */
            change_free(rest);
            change_free(sent);
            cs_object_free(cs);
            return IDS_OK;
        }
        log_info("export-partial",
                 "connector=%s dn=\"%s\": sent without its references to objects whose create "
                 "failed; they follow once those exist",
                 ctx->X->cfg->name, cs->dn ? cs->dn : "");
        add_item(ctx, cs, sent);
        ctx->batch.v[ctx->batch.nr - 1].rest = rest;
        return IDS_OK;
    }
    change_free(rest);
    if (unresolved) {
        *deferred = true;
        change_free(sent);
        cs_object_free(cs);
        return IDS_OK;
    }
    add_item(ctx, cs, sent);
    return IDS_OK;
}

static bool must_stop(struct export_ctx *ctx, enum ids_err *why)
{
    return ctx->lost || erun_must_stop(ctx->r, why);
}

/* Prepare the objects `ids` (reads in one transaction each batch) and
 * send them in batches. Ids that must wait go to `deferred`. */
static enum ids_err prepare_and_send(struct export_ctx *ctx, const int64_t *ids, size_t n,
                                     bool deletes, struct i64vec *deferred,
                                     const struct i64vec *cycle, bool *stopped, enum ids_err *why,
                                     struct ids_error *err)
{
    enum ids_err ret;
    size_t i;
    bool in_tx;

    ret = store_begin(ctx->eng->store, err);
    if (ret != IDS_OK) {
        return ret;
    }
    in_tx = true;
    for (i = 0; i < n && ret == IDS_OK && !*stopped; i++) {
        bool def = false;

        ret = prepare(ctx, ids[i], deletes, &def, cycle, NULL, err);
        if (ret != IDS_OK) {
            break;
        }
        if (def && deferred != NULL) {
            i64vec_push(deferred, ids[i]);
        }
        if (ctx->batch.nr >= EXPORT_BATCH) {
            ret = store_commit(ctx->eng->store, err);
            in_tx = false;
            if (ret == IDS_OK) {
                ret = send_batch(ctx, false, err);
            }
            progress_update(ctx->r->prog, ctx->r->rec.counters.export_add +
                                              ctx->r->rec.counters.export_update +
                                              ctx->r->rec.counters.export_delete);
            if (must_stop(ctx, why)) {
                *stopped = true;
            }
            if (ret == IDS_OK && i + 1 < n && !*stopped) {
                ret = store_begin(ctx->eng->store, err);
                in_tx = ret == IDS_OK;
            }
        }
    }
    if (in_tx) {
        if (ret == IDS_OK) {
            ret = store_commit(ctx->eng->store, err);
        } else {
            store_rollback(ctx->eng->store);
        }
    }
    return ret;
}

/* One pass over the pending exports (deletes or the rest). */
static enum ids_err export_pass(struct export_ctx *ctx, bool deletes, struct i64vec *deferred,
                                bool *stopped, enum ids_err *why, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    int64_t *ids = xcalloc(ENGINE_BATCH, sizeof(*ids));
    int64_t after = 0;
    size_t n;

    while (!*stopped) {
        n = 0;
        ret = store_cs_ids(ctx->eng->store, ctx->X->id, STORE_SEL_PENDING_EXPORT, after, ids,
                           ENGINE_BATCH, &n, err);
        if (ret != IDS_OK || n == 0) {
            break;
        }
        after = ids[n - 1];
        ret = prepare_and_send(ctx, ids, n, deletes, deferred, NULL, stopped, why, err);
        if (ret != IDS_OK) {
            break;
        }
    }
    if (ret == IDS_OK && !*stopped) {
        ret = send_batch(ctx, true, err);
        if (must_stop(ctx, why)) {
            *stopped = true;
        }
    }
    free(ids);
    return ret;
}

/* Of the creates in `stuck` (none of which can be sent), those on a cycle
 * of objects waiting for each other: each waits only for objects of the
 * set and is waited for by one of them (a group that only waits for a
 * member of a cycle is left out: it follows once the cycle is created). */
static enum ids_err cycle_members(struct export_ctx *ctx, const struct i64vec *stuck,
                                  struct i64vec *out, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct change **waits = xcalloc(stuck->nr + 1, sizeof(*waits));
    struct i64vec all = {0};
    bool *in = xcalloc(stuck->nr + 1, sizeof(*in));
    size_t *indeg = xcalloc(stuck->nr + 1, sizeof(*indeg));
    size_t *todo = xcalloc(stuck->nr + 1, sizeof(*todo));
    size_t ntodo = 0;
    size_t i, m, k;

    for (i = 0; i < stuck->nr; i++) {
        i64vec_push(&all, stuck->v[i]);
    }
    i64vec_sort_unique(&all);
    out->nr = 0;
    for (i = 0; ret == IDS_OK && i < all.nr; i++) {
        struct cs_object *cs = NULL;
        struct change *sent = NULL;
        bool unresolved = false;

        ret = store_cs_get(ctx->eng->store, all.v[i], &cs, err);
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
            continue;
        }
        if (ret == IDS_OK && cs->pending_export != NULL && cs->pending_export->op == CHANGE_ADD) {
            waits[i] = change_new(CHANGE_MODIFY, NULL, NULL, NULL);
            ret = resolve_change(ctx, cs, &sent, &unresolved, NULL, waits[i], err);
            in[i] = ret == IDS_OK && unresolved && rest_within(waits[i], &all);
        }
        change_free(sent);
        cs_object_free(cs);
    }
    /* drop what no member waits for, and again what only the dropped
     * waited for (in-degrees, linear in the references) */
    for (i = 0; ret == IDS_OK && i < all.nr; i++) {
        for (m = 0; in[i] && m < waits[i]->nmods; m++) {
            const struct attr *a = &waits[i]->mods[m].attr;

            for (k = 0; k < a->nvals; k++) {
                /* in the set: rest_within said so */
                size_t t = i64vec_find(&all, strtoll(a->vals[k].data, NULL, 10));

                indeg[t]++;
            }
        }
    }
    for (i = 0; ret == IDS_OK && i < all.nr; i++) {
        if (in[i] && indeg[i] == 0) {
            todo[ntodo++] = i;
        }
    }
    while (ntodo > 0) {
        i = todo[--ntodo];
        in[i] = false;
        for (m = 0; m < waits[i]->nmods; m++) {
            const struct attr *a = &waits[i]->mods[m].attr;

            for (k = 0; k < a->nvals; k++) {
                size_t t = i64vec_find(&all, strtoll(a->vals[k].data, NULL, 10));

                if (in[t] && --indeg[t] == 0) {
                    todo[ntodo++] = t;
                }
            }
        }
    }
    for (i = 0; i < all.nr; i++) {
        if (in[i]) {
            i64vec_push(out, all.v[i]); /* sorted, as all */
        }
        change_free(waits[i]);
    }
    free(waits);
    i64vec_release(&all);
    free(in);
    free(indeg);
    free(todo);
    return ret;
}

/* The exports that waited for referenced objects: retry while progress is made. */
static enum ids_err export_deferred(struct export_ctx *ctx, struct i64vec *deferred, bool report,
                                    bool *stopped, enum ids_err *why, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct i64vec again = {0};
    struct i64vec rest = {0};
    bool broke = false;
    size_t i;

    while (ret == IDS_OK && deferred->nr > 0 && !*stopped) {
        if (ctx->late_results) {
            /* the anchors of what was just sent come with export_end */
            ret = session_flush(ctx, true, err);
            if (ret != IDS_OK || !ctx->in_session) {
                break;
            }
        }
        again.nr = 0;
        ret = prepare_and_send(ctx, deferred->v, deferred->nr, false, &again, NULL, stopped, why,
                               err);
        if (ret == IDS_OK) {
            ret = send_batch(ctx, true, err);
        }
        if (must_stop(ctx, why)) {
            *stopped = true;
        }
        if (again.nr == deferred->nr) {
            struct i64vec cycle = {0};

            if (broke || ret != IDS_OK || *stopped) {
                break; /* no progress */
            }
            /* no progress: objects that wait for each other (groups nested
             * in a cycle, a group member of itself) are created without
             * the references among them, which follow as modifies sent by
             * the next export (one export sends one change per object:
             * a confirming import reads each back as it was sent) */
            broke = true;
            ret = cycle_members(ctx, &again, &cycle, err);
            if (ret != IDS_OK || cycle.nr == 0) {
                i64vec_release(&cycle);
                break; /* no cycle: they wait for objects not created yet */
            }
            rest.nr = 0;
            ret = prepare_and_send(ctx, deferred->v, deferred->nr, false, &rest, &cycle, stopped,
                                   why, err);
            if (ret == IDS_OK) {
                ret = send_batch(ctx, true, err);
            }
            i64vec_release(&cycle);
            if (must_stop(ctx, why)) {
                *stopped = true;
            }
            if (ret != IDS_OK || rest.nr == deferred->nr) {
                break; /* nothing could be created */
            }
            /* what still waits may wait for the objects just created */
            deferred->nr = 0;
            for (i = 0; i < rest.nr; i++) {
                i64vec_push(deferred, rest.v[i]);
            }
            continue;
        }
        broke = false;
        deferred->nr = 0;
        for (i = 0; i < again.nr; i++) {
            i64vec_push(deferred, again.v[i]);
        }
    }
    if (ret == IDS_OK && report && !*stopped && deferred->nr > 0 && ctx->in_session) {
        /* the last pass: references to objects whose create failed do not
         * hold the rest of a change (a group of everyone) back */
        again.nr = 0;
        ctx->partial = true;
        ret = prepare_and_send(ctx, deferred->v, deferred->nr, false, &again, NULL, stopped, why,
                               err);
        if (ret == IDS_OK) {
            ret = send_batch(ctx, true, err);
        }
        ctx->partial = false;
        if (must_stop(ctx, why)) {
            *stopped = true;
        }
        deferred->nr = 0;
        for (i = 0; i < again.nr; i++) {
            i64vec_push(deferred, again.v[i]);
        }
    }
    /* what still cannot resolve stays pending, with an error (unless it
     * is tried again after the deletes: report false) */
    for (i = 0; ret == IDS_OK && report && !*stopped && i < deferred->nr; i++) {
        struct cs_object *cs = NULL;
        struct change *sent = NULL;
        struct strbuf why_s = STRBUF_INIT;
        bool unresolved = false;

        ret = store_cs_get(ctx->eng->store, deferred->v[i], &cs, err);
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
            continue;
        }
        if (ret == IDS_OK && cs->pending_export != NULL) {
            ret = resolve_change(ctx, cs, &sent, &unresolved, &why_s, NULL, err);
        }
        if (ret == IDS_OK && unresolved) {
            erun_error_cs(ctx->r, ctx->X, cs, NULL, "reference-unresolved",
                          "not exported yet: it references objects that do not exist in %s yet "
                          "(%s); it stays pending until they are exported",
                          ctx->X->cfg->name, why_s.buf);
        }
        change_free(sent);
        strbuf_release(&why_s);
        cs_object_free(cs);
    }
    i64vec_release(&again);
    i64vec_release(&rest);
    return ret;
}

enum ids_err engine_export(struct engine *eng, const char *connector, struct run_record *run,
                           struct ids_error *err)
{
    enum ids_err ret;
    struct export_ctx ctx;
    struct erun r;
    struct i64vec deferred = {0};
    bool stopped = false;
    enum ids_err why = IDS_OK;
    long dels = 0;
    long disables = 0;
    long gone;
    long pending = 0;
    long space = 0;
    long max = eng->cfg->safety.max_deletes;
    long pct = eng->cfg->safety.max_delete_percent;

    memset(&ctx, 0, sizeof(ctx));
    keyset_init(&ctx.ks);
    strbuf_init(&ctx.ref_anchor, 0);
    strbuf_init(&ctx.ref_dn, 0);
    strbuf_init(&ctx.spill_buf, 0);
    ctx.eng = eng;
    ctx.X = engine_conn(eng, connector);
    if (ctx.X == NULL) {
        return ids_error_set(err, IDS_EUSAGE, "no connector named %s in the configuration",
                             connector);
    }
    if (!(econn_caps(ctx.X) & CONN_CAP_WRITE)) {
        return ids_error_set(err, IDS_EUSAGE, "connector %s (%s) cannot be written to", connector,
                             ctx.X->cfg->type ? ctx.X->cfg->type : "?");
    }
    ret = erun_start(eng, &r, "export", connector, err);
    if (ret != IDS_OK) {
        return erun_finish(&r, ret, err, run);
    }
    ctx.r = &r;
    if (eng->opts.dry_run) {
        long n = 0;

        if (eng->opts.report != NULL) {
            ret = report_pending(eng, ctx.X, eng->opts.report, &n, err);
        }
        erun_message(&r, "Dry run: %ld pending export%s reported, nothing was sent.", n,
                     n == 1 ? "" : "s");
        goto done;
    }
    /* deprovisioning by disabling locks people out as surely as deleting
     * them: both count against the threshold */
    ret = store_cs_count_exports(eng->store, ctx.X->id, &pending, &dels, &disables, err);
    ctx.deletes = dels;
    gone = dels + disables;
    if (ret == IDS_OK && gone > 0) {
        ret = store_cs_count(eng->store, ctx.X->id, STORE_SEL_ALL, &space, err);
    }
    if (ret != IDS_OK) {
        goto done;
    }
    progress_set_total(r.prog, pending);
    if (gone > 0 && eng->opts.allow_deletes < gone &&
        ((max > 0 && gone > max) || (pct > 0 && gone * 100 > pct * space))) {
        struct strbuf th = STRBUF_INIT;
        struct strbuf what = STRBUF_INIT;

        if (max > 0) {
            strbuf_addf(&th, "%ld", max);
        }
        if (pct > 0) {
            strbuf_addf(&th, "%s%ld%% of %ld", max > 0 ? " or " : "", pct, space);
        }
        if (dels > 0) {
            strbuf_addf(&what, "delete %ld", dels);
        }
        if (disables > 0) {
            strbuf_addf(&what, "%sdisable %ld", dels > 0 ? " and " : "", disables);
        }
        erun_message(&r,
                     "export to %s would %s objects (threshold %s); nothing was "
                     "exported. Review with `idsync pending %s`, then run `idsync export %s "
                     "--allow-deletes %ld`.",
                     connector, what.buf, th.buf, connector, connector, gone);
        ret = ids_error_set(err, IDS_ETHRESHOLD, "export to %s would %s objects", connector,
                            what.buf);
        strbuf_release(&th);
        strbuf_release(&what);
        goto done;
    }
    if (pending == 0) {
        goto done;
    }
    ret = engine_conn_open(eng, ctx.X, err);
    if (ret == IDS_OK) {
        ret = connector_export_begin(ctx.X->conn, err);
    }
    if (ret != IDS_OK) {
        goto done;
    }
    ctx.in_session = true;
    /* adds and modifies first (a group waits for its members), deletes last */
    ret = export_pass(&ctx, false, &deferred, &stopped, &why, err);
    if (ret == IDS_OK && !stopped) {
        ret = export_deferred(&ctx, &deferred, ctx.after_deletes.nr == 0, &stopped, &why, err);
    }
    if (ret == IDS_OK && !stopped) {
        ret = export_pass(&ctx, true, &deferred, &stopped, &why, err);
    }
    if (ret == IDS_OK && !stopped && ctx.after_deletes.nr > 0) {
        ctx.deletes_sent = true;
        if (ctx.late_results) {
            ret = session_flush(&ctx, true, err);
        }
        if (ret == IDS_OK && ctx.in_session) {
            ret = prepare_and_send(&ctx, ctx.after_deletes.v, ctx.after_deletes.nr, false,
                                   &deferred, NULL, &stopped, &why, err);
        }
        if (ret == IDS_OK && ctx.in_session) {
            ret = send_batch(&ctx, true, err);
        }
        if (ret == IDS_OK && ctx.in_session && !stopped) {
            /* the groups that wait for what was just created */
            ret = export_deferred(&ctx, &deferred, true, &stopped, &why, err);
        }
    }
done:
    if (ctx.in_session) {
        /* send nothing more; collect and record what is outstanding */
        struct ids_error ferr = IDS_ERROR_INIT;
        enum ids_err r2;

        xitems_release(&ctx.batch);
        r2 = session_flush(&ctx, false, &ferr);
        if (r2 != IDS_OK && ret == IDS_OK) {
            ret = r2;
            if (err != NULL) {
                *err = ferr;
            }
        }
    }
    if (ret == IDS_OK && ctx.lost) {
        ret = ctx.lost_err.code != IDS_OK ? ctx.lost_err.code : IDS_EUNREACHABLE;
        if (err != NULL) {
            *err = ctx.lost_err;
            ids_error_prefix(err,
                             "connection to %s lost during the export; what was not "
                             "confirmed stays pending",
                             connector);
        }
    }
    if (ret == IDS_OK && stopped) {
        ret = why;
        if (why == IDS_EINTR) {
            ids_error_set(err, IDS_EINTR, "interrupted; run the export again to complete it");
        }
    }
    if (ret == IDS_OK && r.errlimit) {
        ret = IDS_EERRLIMIT;
    }
    xitems_release(&ctx.batch);
    xitems_release(&ctx.out);
    keyset_release(&ctx.ks);
    if (ctx.spill != NULL) {
        fclose(ctx.spill);
    }
    strbuf_release(&ctx.spill_buf);
    strbuf_release(&ctx.ref_anchor);
    strbuf_release(&ctx.ref_dn);
    i64vec_release(&deferred);
    i64vec_release(&ctx.after_deletes);
    return erun_finish(&r, ret, err, run);
}

enum ids_err engine_pending(struct engine *eng, const char *connector, FILE *out,
                            struct ids_error *err)
{
    struct econn *ec = engine_conn(eng, connector);
    long n = 0;
    enum ids_err ret;

    if (ec == NULL) {
        return ids_error_set(err, IDS_EUSAGE, "no connector named %s in the configuration",
                             connector);
    }
    /* one snapshot: the report is one point in time even while a cycle
     * runs, and its million reads take no lock each */
    ret = store_read_begin(eng->store, err);
    if (ret == IDS_OK) {
        ret = report_pending(eng, ec, out, &n, err);
        store_read_end(eng->store);
    }
    return ret;
}
