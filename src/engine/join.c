/* join.c - finding the MV object a CS object belongs to (inbound), and the
 * target CS object an MV object belongs to (outbound), by index lookups on
 * normalised join keys. */
#include "engine/engine_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/mem.h"
#include "util/banned.h"

static void lower_name(struct strbuf *sb, const char *s)
{
    strbuf_reset(sb);
    strbuf_addstr(sb, s);
    strbuf_tolower(sb);
}

static void json_values(struct strbuf *sb, const struct attr *a)
{
    size_t i;

    strbuf_addch(sb, '[');
    for (i = 0; i < a->nvals; i++) {
        struct strbuf d = STRBUF_INIT;

        if (i) {
            strbuf_addch(sb, ',');
        }
        value_describe(&d, a->vals[i].data, a->vals[i].len);
        strbuf_add_json_str(sb, d.buf, d.len);
        strbuf_release(&d);
    }
    strbuf_addch(sb, ']');
}

static void json_ids(struct strbuf *sb, const struct i64vec *v)
{
    size_t i;

    strbuf_addch(sb, '[');
    for (i = 0; i < v->nr; i++) {
        strbuf_addf(sb, "%s%" PRId64, i ? "," : "", v->v[i]);
    }
    strbuf_addch(sb, ']');
}

/* Ids found for every value of `vals` (union, sorted, unique). */
static enum ids_err find_ids(struct sync_ctx *ctx, bool mv_side, const char *mv_type,
                             int64_t connector, const char *attr, const struct attr *vals,
                             struct i64vec *out, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct strbuf name = STRBUF_INIT;
    struct strbuf norm = STRBUF_INIT;
    int64_t ids[ENGINE_MAX_CANDIDATES];
    size_t i;
    size_t k;
    size_t n;

    lower_name(&name, attr);
    for (i = 0; i < vals->nvals; i++) {
        strbuf_reset(&norm);
        value_normalize(&norm, vals->vals[i].data, vals->vals[i].len);
        if (norm.len == 0) {
            continue;
        }
        n = 0;
        if (mv_side) {
            ret = store_mv_find(ctx->eng->store, mv_type, name.buf, norm.buf, ids, ARRAY_SIZE(ids),
                                &n, err);
        } else {
            ret = store_cs_find(ctx->eng->store, connector, name.buf, norm.buf, ids,
                                ARRAY_SIZE(ids), &n, err);
        }
        if (ret != IDS_OK) {
            goto done;
        }
        for (k = 0; k < n && k < ARRAY_SIZE(ids); k++) {
            i64vec_push(out, ids[k]);
        }
    }
    i64vec_sort_unique(out);
done:
    strbuf_release(&name);
    strbuf_release(&norm);
    return ret;
}

static void describe_rule(struct strbuf *sb, const struct join_rule *r, const struct attr *vals,
                          size_t nvals)
{
    size_t i;

    for (i = 0; i < r->nitems && i < nvals; i++) {
        if (i) {
            strbuf_addstr(sb, " and ");
        }
        strbuf_addf(sb, "%s=", r->items[i].attr);
        if (vals[i].nvals > 0) {
            value_describe(sb, vals[i].vals[0].data, vals[i].vals[0].len);
        }
    }
}

enum ids_err join_inbound(struct sync_ctx *ctx, struct econn *ec, const struct cs_object *cs,
                          struct mvt_info *mi, const struct flow_config *f, int64_t *mv_id,
                          bool *stop, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct preview *pv = ctx->r->pv;
    struct attr *vals = NULL;
    struct i64vec cands = {0};
    struct i64vec set = {0};
    size_t ri;
    size_t i;
    size_t nv = 0;

    *mv_id = 0;
    *stop = false;
    for (ri = 0; ri < f->njoins && *mv_id == 0 && !*stop; ri++) {
        const struct join_rule *r = &f->joins[ri];
        bool novalue = false;
        size_t k;

        vals = xcalloc(r->nitems ? r->nitems : 1, sizeof(*vals));
        nv = r->nitems;
        cands.nr = 0;
        if (pv != NULL) {
            preview_add_sep(&pv->joins);
            strbuf_addf(&pv->joins, "{\"rule\":%zu,\"conditions\":[", ri);
        }
        for (i = 0; i < r->nitems; i++) {
            const struct rule_item *it = &r->items[i];

            vals[i].name = xstrdup(it->attr);
            vals[i].source = -1;
            ret = flow_eval(it, cs->entry, &vals[i], err);
            if (ret == IDS_EEXPR) {
                erun_error_cs(ctx->r, ec, cs, it->attr, "expression-error", "%s", err->msg);
                ret = IDS_OK;
                *stop = true;
                break;
            }
            if (ret != IDS_OK) {
                goto done;
            }
            set.nr = 0;
            if (vals[i].nvals == 0) {
                novalue = true;
            } else {
                ret = find_ids(ctx, true, mi->t->name, 0, it->attr, &vals[i], &set, err);
                if (ret != IDS_OK) {
                    goto done;
                }
                if (i == 0) {
                    cands.nr = 0;
                    for (k = 0; k < set.nr; k++) {
                        i64vec_push(&cands, set.v[k]);
                    }
                } else {
                    i64vec_intersect(&cands, &set);
                }
            }
            if (pv != NULL) {
                strbuf_addf(&pv->joins, "%s{\"attr\":", i ? "," : "");
                strbuf_add_json_str(&pv->joins, it->attr, strlen(it->attr));
                strbuf_addstr(&pv->joins, ",\"expr\":");
                strbuf_add_json_str(&pv->joins, it->source ? it->source : "",
                                    it->source ? strlen(it->source) : 0);
                strbuf_addstr(&pv->joins, ",\"values\":");
                json_values(&pv->joins, &vals[i]);
                strbuf_addstr(&pv->joins, ",\"candidates\":");
                json_ids(&pv->joins, &set);
                strbuf_addch(&pv->joins, '}');
            }
            if (novalue) {
                break;
            }
        }
        if (novalue || *stop) {
            cands.nr = 0;
        }
        /* drop candidates already joined to another object of this connector */
        k = 0;
        for (i = 0; i < cands.nr; i++) {
            struct cs_object *other = NULL;
            enum ids_err r2 = store_cs_get_by_mv(ctx->eng->store, ec->id, cands.v[i], &other, err);

            if (r2 != IDS_OK && r2 != IDS_ENOTFOUND) {
                ret = r2;
                goto done;
            }
            if (r2 == IDS_OK && other->id != cs->id) {
                cs_object_free(other);
                continue;
            }
            cs_object_free(other);
            cands.v[k++] = cands.v[i];
        }
        cands.nr = k;
        if (pv != NULL) {
            strbuf_addstr(&pv->joins, "],\"candidates\":");
            json_ids(&pv->joins, &cands);
            strbuf_addf(&pv->joins, ",\"result\":\"%s\"}",
                        *stop           ? "error"
                        : cands.nr == 1 ? "joined"
                        : cands.nr > 1  ? "ambiguous"
                                        : "no-match");
        }
        if (cands.nr == 1) {
            *mv_id = cands.v[0];
        } else if (cands.nr > 1) {
            struct strbuf msg = STRBUF_INIT;

            strbuf_addf(&msg, "join rule %zu (", ri + 1);
            describe_rule(&msg, r, vals, nv);
            strbuf_addstr(&msg, ") matches several metaverse objects: ");
            for (i = 0; i < cands.nr; i++) {
                strbuf_addf(&msg, "%sMV %" PRId64, i ? ", " : "", cands.v[i]);
            }
            strbuf_addstr(&msg, "; the object was neither joined nor projected. Make the key "
                                "unique or add a more specific rule first.");
            erun_error_cs(ctx->r, ec, cs, r->nitems ? r->items[0].attr : NULL, "ambiguous-join",
                          "%s", msg.buf);
            strbuf_release(&msg);
            *stop = true;
        }
        for (i = 0; i < nv; i++) {
            attr_release(&vals[i]);
        }
        free(vals);
        vals = NULL;
    }
done:
    if (vals != NULL) {
        for (i = 0; i < nv; i++) {
            attr_release(&vals[i]);
        }
        free(vals);
    }
    i64vec_release(&cands);
    i64vec_release(&set);
    return ret;
}

static bool rule_uses(const struct join_rule *r, const char *attr)
{
    size_t i;

    if (attr == NULL) {
        return false;
    }
    for (i = 0; i < r->nitems; i++) {
        if (strcasecmp(r->items[i].attr, attr) == 0) {
            return true;
        }
    }
    return false;
}

static bool change_deletes(const struct cs_object *o)
{
    return o->pending_export != NULL && o->pending_export->op == CHANGE_DELETE;
}

enum ids_err join_outbound(struct sync_ctx *ctx, struct econn *X, const struct flow_config *t,
                           const struct mv_object *m, const struct entry *des,
                           struct cs_object **out, bool *stop, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct attr *vals = NULL;
    struct i64vec cands = {0};
    struct i64vec set = {0};
    struct cs_object **kept = NULL;
    size_t nkept = 0;
    size_t nv = 0;
    size_t ri;
    size_t i;

    *out = NULL;
    *stop = false;
    for (ri = 0; ri < t->njoins && *out == NULL && !*stop; ri++) {
        const struct join_rule *r = &t->joins[ri];
        bool novalue = false;
        size_t k;

        nv = r->nitems;
        vals = xcalloc(nv ? nv : 1, sizeof(*vals));
        cands.nr = 0;
        for (i = 0; i < r->nitems && !novalue; i++) {
            const struct rule_item *it = &r->items[i];

            vals[i].name = xstrdup(it->attr);
            vals[i].source = -1;
            ret = flow_eval(it, m->entry, &vals[i], err);
            if (ret == IDS_EEXPR) {
                struct strbuf origin = STRBUF_INIT;

                sync_mv_origin(ctx, m, &origin);
                erun_error(ctx->r, X->cfg->name, NULL, NULL, it->attr, "expression-error", 0, m->id,
                           "metaverse object %" PRId64 "%s: %s", m->id, origin.buf, err->msg);
                strbuf_release(&origin);
                ret = IDS_OK;
                *stop = true;
                break;
            }
            if (ret != IDS_OK) {
                goto done;
            }
            if (vals[i].nvals == 0) {
                novalue = true;
                break;
            }
            set.nr = 0;
            ret = find_ids(ctx, false, NULL, X->id, it->attr, &vals[i], &set, err);
            if (ret != IDS_OK) {
                goto done;
            }
            if (i == 0) {
                for (k = 0; k < set.nr; k++) {
                    i64vec_push(&cands, set.v[k]);
                }
            } else {
                i64vec_intersect(&cands, &set);
            }
        }
        if (novalue || *stop) {
            cands.nr = 0;
        }
        /* disconnectors of the right type that are not going away */
        kept = xcalloc(cands.nr ? cands.nr : 1, sizeof(*kept));
        nkept = 0;
        for (i = 0; i < cands.nr; i++) {
            struct cs_object *o = NULL;
            enum ids_err r2 = store_cs_get(ctx->eng->store, cands.v[i], &o, err);

            if (r2 == IDS_ENOTFOUND) {
                continue;
            }
            if (r2 != IDS_OK) {
                ret = r2;
                goto done;
            }
            if (o->mv_id != 0 && o->mv_id != m->id && o->type != NULL &&
                strcasecmp(o->type, t->object) == 0 && o->import_state != CS_IMPORT_DELETE &&
                !change_deletes(o) && t->anchor_carrier != NULL &&
                !rule_uses(r, t->anchor_carrier)) {
                /* soft-match guard, also for objects already joined to another
                 * metaverse object: a rebuilt source whose new objects were
                 * projected (a delta import the guard did not see) must not
                 * get duplicates created next to the old objects */
                const char *have = entry_first(o->entry, t->anchor_carrier);
                const char *want = entry_first(des, t->anchor_carrier);

                if (have != NULL && *have != '\0' && (want == NULL || strcmp(have, want) != 0)) {
                    erun_error(ctx->r, X->cfg->name, o->anchor, o->dn,
                               r->nitems ? r->items[0].attr : NULL, "anchor-mismatch", o->id, m->id,
                               "soft match found %s, joined to metaverse object %" PRId64
                               " with %s %s, while metaverse object %" PRId64
                               " would set %s; nothing was exported for this object (no "
                               "create). Use `idsync reconnect`.",
                               o->dn ? o->dn : (o->anchor ? o->anchor : "?"), o->mv_id,
                               t->anchor_carrier, have, m->id, want ? want : "(no value)");
                    *stop = true;
                }
            }
            if (o->mv_id != 0 || o->type == NULL || strcasecmp(o->type, t->object) != 0 ||
                o->import_state == CS_IMPORT_DELETE || change_deletes(o)) {
                cs_object_free(o);
                continue;
            }
            kept[nkept++] = o;
        }
        if (nkept > 0 && t->anchor_carrier != NULL && !rule_uses(r, t->anchor_carrier)) {
            /* soft-match guard: never take over an object that carries
             * another source anchor */
            const char *want = entry_first(des, t->anchor_carrier);

            for (i = 0; i < nkept && !*stop; i++) {
                const char *have = entry_first(kept[i]->entry, t->anchor_carrier);
                struct strbuf msg = STRBUF_INIT;

                if (have == NULL || *have == '\0' || (want != NULL && strcmp(have, want) == 0)) {
                    continue;
                }
                strbuf_addf(&msg, "soft match by ");
                describe_rule(&msg, r, vals, nv);
                strbuf_addf(&msg,
                            " found %s, but its %s is %s while metaverse object %" PRId64
                            " would set %s; nothing was exported for this object (no create). "
                            "If they are the same identity, fix %s in the target or use "
                            "`idsync reconnect`.",
                            kept[i]->dn ? kept[i]->dn : (kept[i]->anchor ? kept[i]->anchor : "?"),
                            t->anchor_carrier, have, m->id, want ? want : "(no value)",
                            t->anchor_carrier);
                erun_error(ctx->r, X->cfg->name, kept[i]->anchor, kept[i]->dn,
                           r->nitems ? r->items[0].attr : NULL, "anchor-mismatch", kept[i]->id,
                           m->id, "%s", msg.buf);
                strbuf_release(&msg);
                *stop = true;
            }
        }
        if (!*stop && nkept > 1) {
            struct strbuf msg = STRBUF_INIT;

            strbuf_addf(&msg, "join rule %zu (", ri + 1);
            describe_rule(&msg, r, vals, nv);
            strbuf_addf(&msg,
                        ") for metaverse object %" PRId64 " matches several objects: ", m->id);
            for (i = 0; i < nkept; i++) {
                strbuf_addf(&msg, "%s%s", i ? ", " : "",
                            kept[i]->dn ? kept[i]->dn : (kept[i]->anchor ? kept[i]->anchor : "?"));
            }
            strbuf_addstr(&msg, "; nothing was exported for this object.");
            erun_error(ctx->r, X->cfg->name, NULL, NULL, r->nitems ? r->items[0].attr : NULL,
                       "ambiguous-join", 0, m->id, "%s", msg.buf);
            strbuf_release(&msg);
            *stop = true;
        }
        if (!*stop && nkept == 1) {
            *out = kept[0];
            kept[0] = NULL;
        }
        for (i = 0; i < nkept; i++) {
            cs_object_free(kept[i]);
        }
        free(kept);
        kept = NULL;
        nkept = 0;
        for (i = 0; i < nv; i++) {
            attr_release(&vals[i]);
        }
        free(vals);
        vals = NULL;
    }
done:
    if (kept != NULL) {
        for (i = 0; i < nkept; i++) {
            cs_object_free(kept[i]);
        }
        free(kept);
    }
    if (vals != NULL) {
        for (i = 0; i < nv; i++) {
            attr_release(&vals[i]);
        }
        free(vals);
    }
    i64vec_release(&cands);
    i64vec_release(&set);
    return ret;
}
