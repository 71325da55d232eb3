/* report.c - pending exports as JSON lines (dry run, `idsync pending`) and
 * the preview of one object (`idsync preview`). */
#include "engine/engine_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/codec.h"
#include "util/mem.h"
#include "util/progress.h"
#include "util/banned.h"

void preview_add_sep(struct strbuf *sb)
{
    if (sb->len > 0) {
        strbuf_addch(sb, ',');
    }
}

static void json_str_or_null(struct strbuf *sb, const char *s)
{
    if (s == NULL) {
        strbuf_addstr(sb, "null");
    } else {
        strbuf_add_json_str(sb, s, strlen(s));
    }
}

static void json_value(struct strbuf *sb, const char *data, size_t len)
{
    if (value_is_text(data, len)) {
        strbuf_add_json_str(sb, data, len);
    } else {
        strbuf_addstr(sb, "{\"base64\":\"");
        base64_encode(sb, data, len);
        strbuf_addstr(sb, "\"}");
    }
}

static void json_attr_values(struct strbuf *sb, const struct attr *a)
{
    size_t i;

    strbuf_addch(sb, '[');
    for (i = 0; a != NULL && i < a->nvals; i++) {
        if (i) {
            strbuf_addch(sb, ',');
        }
        json_value(sb, a->vals[i].data, a->vals[i].len);
    }
    strbuf_addch(sb, ']');
}

/* Reference values of a pending export are CS ids: show what the
 * connector will receive (DN or anchor), or the DN-to-be of an object not
 * yet created. */
static enum ids_err display_refs(struct engine *eng, struct econn *ec, const struct attr *in,
                                 struct attr *out, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    size_t i;

    for (i = 0; i < in->nvals; i++) {
        struct cs_object *o = NULL;
        char *end = NULL;
        long long id = strtoll(in->vals[i].data, &end, 10);
        struct strbuf sb = STRBUF_INIT;

        if (end == in->vals[i].data || *end != '\0' || id <= 0) {
            attr_add_value(out, in->vals[i].data, in->vals[i].len);
            continue;
        }
        ret = store_cs_get(eng->store, id, &o, err);
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
            strbuf_addf(&sb, "(deleted object %lld)", id);
        } else if (ret != IDS_OK) {
            return ret;
        } else if (o->anchor != NULL && (econn_caps(ec) & CONN_CAP_REF_BY_DN) &&
                   o->pending_export != NULL && o->pending_export->new_dn != NULL) {
            /* renamed by this export before the objects that name it */
            strbuf_addstr(&sb, o->pending_export->new_dn);
        } else if (o->anchor != NULL) {
            strbuf_addstr(&sb,
                          ((econn_caps(ec) & CONN_CAP_REF_BY_DN) && o->dn) ? o->dn : o->anchor);
        } else if (o->dn != NULL) {
            strbuf_addf(&sb, "%s (to be created)", o->dn);
        } else {
            strbuf_addf(&sb, "(object %lld, to be created)", id);
        }
        attr_add_value(out, sb.buf, sb.len);
        strbuf_release(&sb);
        cs_object_free(o);
    }
    return ret;
}

enum ids_err report_pending_object(struct engine *eng, struct econn *ec, const struct cs_object *cs,
                                   struct strbuf *sb, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    const struct change *ch = cs->pending_export;
    static const char *const states[] = {"none", "pending", "in-flight", "failed"};
    size_t i;

    strbuf_addstr(sb, "{\"connector\":");
    json_str_or_null(sb, ec->cfg->name);
    strbuf_addstr(sb, ",\"op\":");
    json_str_or_null(sb, ch ? change_op_name(ch->op) : "none");
    strbuf_addstr(sb, ",\"type\":");
    json_str_or_null(sb, cs->type);
    strbuf_addstr(sb, ",\"anchor\":");
    json_str_or_null(sb, cs->anchor);
    strbuf_addstr(sb, ",\"dn\":");
    json_str_or_null(sb, cs->dn ? cs->dn : (ch ? ch->dn : NULL));
    strbuf_addstr(sb, ",\"new_dn\":");
    json_str_or_null(sb, ch ? ch->new_dn : NULL);
    strbuf_addf(sb, ",\"state\":\"%s\",\"attempts\":%d,\"error\":",
                states[cs->export_state <= CS_EXPORT_FAILED ? cs->export_state : 0],
                cs->export_attempts);
    json_str_or_null(sb, cs->export_error);
    strbuf_addstr(sb, ",\"changes\":[");
    /* one line per attribute, with every mod of it applied (a group's new
     * member DNs added and old ones deleted: old count -> the count after
     * both, not "N -> 0" for the deletes alone) */
    for (i = 0; ch != NULL && ch->op != CHANGE_DELETE && i < ch->nmods && ret == IDS_OK; i++) {
        const struct mod *md = &ch->mods[i];
        const struct attr *cur = entry_attr(cs->entry, md->attr.name);
        struct entry *tmp = entry_new(NULL, NULL, NULL);
        struct change *one = change_new(CHANGE_MODIFY, NULL, NULL, NULL);
        const char *op = mod_op_name(md->op);
        bool seen = false;
        size_t j;

        for (j = 0; j < i && !seen; j++) {
            seen = strcasecmp(ch->mods[j].attr.name, md->attr.name) == 0;
        }
        for (j = i; j < ch->nmods && ret == IDS_OK && !seen; j++) {
            const struct mod *mj = &ch->mods[j];
            struct mod *m2;

            if (strcasecmp(mj->attr.name, md->attr.name) != 0) {
                continue;
            }
            if (mj->op != md->op) {
                op = "modify";
            }
            m2 = change_add_mod(one, mj->op, mj->attr.name, mj->attr.flags);
            if (mj->attr.flags & ATTR_REF) {
                ret = display_refs(eng, ec, &mj->attr, &m2->attr, err);
            } else {
                size_t k;

                for (k = 0; k < mj->attr.nvals; k++) {
                    attr_add_value(&m2->attr, mj->attr.vals[k].data, mj->attr.vals[k].len);
                }
            }
        }
        if (!seen && ret == IDS_OK) {
            if (cur != NULL) {
                entry_set_attr(tmp, md->attr.name, cur);
            }
            change_apply(one, tmp);
            if (sb->buf[sb->len - 1] != '[') {
                strbuf_addch(sb, ',');
            }
            strbuf_addstr(sb, "{\"attr\":");
            json_str_or_null(sb, md->attr.name);
            strbuf_addf(sb, ",\"op\":\"%s\",\"old\":", op);
            json_attr_values(sb, ch->op == CHANGE_ADD ? NULL : cur);
            strbuf_addstr(sb, ",\"new\":");
            json_attr_values(sb, entry_attr(tmp, md->attr.name));
            strbuf_addch(sb, '}');
        }
        change_free(one);
        entry_free(tmp);
    }
    strbuf_addstr(sb, "]}");
    return ret;
}

enum ids_err report_pending(struct engine *eng, struct econn *ec, FILE *out, long *count,
                            struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    int64_t *ids = xcalloc(ENGINE_BATCH, sizeof(*ids));
    int64_t after = 0;
    struct strbuf sb = STRBUF_INIT;
    struct progress *prog = progress_start(eng->opts.progress, "pending report", ec->cfg->name, -1);
    long total = -1;
    long seen = 0;
    size_t n;
    size_t i;

    *count = 0;
    if (prog != NULL &&
        store_cs_count(eng->store, ec->id, STORE_SEL_PENDING_EXPORT, &total, err) == IDS_OK) {
        progress_set_total(prog, total);
    }
    for (;;) {
        n = 0;
        ret = store_cs_ids(eng->store, ec->id, STORE_SEL_PENDING_EXPORT, after, ids, ENGINE_BATCH,
                           &n, err);
        if (ret != IDS_OK || n == 0) {
            break;
        }
        for (i = 0; i < n && ret == IDS_OK; i++) {
            struct cs_object *cs = NULL;

            after = ids[i];
            progress_update(prog, ++seen);
            ret = store_cs_get(eng->store, ids[i], &cs, err);
            if (ret == IDS_ENOTFOUND) {
                ret = IDS_OK;
                continue;
            }
            if (ret == IDS_OK && cs->pending_export != NULL) {
                strbuf_reset(&sb);
                ret = report_pending_object(eng, ec, cs, &sb, err);
                if (ret == IDS_OK) {
                    strbuf_addch(&sb, '\n');
                    fwrite(sb.buf, 1, sb.len, out);
                    (*count)++;
                }
            }
            cs_object_free(cs);
        }
        if (ret != IDS_OK) {
            break;
        }
    }
    fflush(out);
    progress_end(prog);
    strbuf_release(&sb);
    free(ids);
    return ret;
}

/* ---- preview --------------------------------------------------------------- */

static void preview_flows(struct strbuf *sb, const struct entry *old, const struct entry *now)
{
    struct strvec names = STRVEC_INIT;
    size_t i;
    bool first = true;

    for (i = 0; old != NULL && i < old->nattrs; i++) {
        if (strvec_find(&names, old->attrs[i].name, true) < 0) {
            strvec_push(&names, old->attrs[i].name);
        }
    }
    for (i = 0; now != NULL && i < now->nattrs; i++) {
        if (strvec_find(&names, now->attrs[i].name, true) < 0) {
            strvec_push(&names, now->attrs[i].name);
        }
    }
    strvec_sort(&names);
    strbuf_addch(sb, '[');
    for (i = 0; i < names.nr; i++) {
        const struct attr *o = old ? entry_attr(old, names.v[i]) : NULL;
        const struct attr *n = now ? entry_attr(now, names.v[i]) : NULL;
        bool changed = (o == NULL) != (n == NULL) || (o != NULL && !attr_values_equal(o, n));

        if (!first) {
            strbuf_addch(sb, ',');
        }
        first = false;
        strbuf_addstr(sb, "{\"attr\":");
        json_str_or_null(sb, names.v[i]);
        strbuf_addstr(sb, ",\"old\":");
        json_attr_values(sb, o);
        strbuf_addstr(sb, ",\"new\":");
        json_attr_values(sb, n);
        strbuf_addf(sb, ",\"changed\":%s,\"from\":%d}", changed ? "true" : "false",
                    n != NULL ? n->source : -1);
    }
    strbuf_addch(sb, ']');
    strvec_clear(&names);
}

static enum ids_err find_cs(struct engine *eng, struct econn *ec, const char *id,
                            struct cs_object **out, struct ids_error *err)
{
    enum ids_err ret = store_cs_get_by_anchor(eng->store, ec->id, id, out, err);

    if (ret == IDS_ENOTFOUND) {
        ret = store_cs_get_by_dn(eng->store, ec->id, id, out, err);
    }
    if (ret == IDS_ENOTFOUND) {
        ret = ids_error_set(err, IDS_ENOTFOUND,
                            "no object with anchor or DN \"%s\" in the connector space of %s "
                            "(import it first)",
                            id, ec->cfg->name);
    }
    return ret;
}

/* JSON array items: the MV objects that name the previewed one and that
 * the sync queued because of it (a deleted member: recomputed; a member
 * deprovisioned from or renamed in a target: their outbound again). */
static enum ids_err preview_referrers(struct engine *eng, const struct sync_ctx *ctx,
                                      struct strbuf *out, struct ids_error *err)
{
    const struct i64vec *q[2] = {&ctx->qre, &ctx->qmv};
    enum ids_err ret = IDS_OK;
    size_t i;
    size_t k;

    for (k = 0; k < 2; k++) {
        for (i = 0; ret == IDS_OK && i < q[k]->nr; i++) {
            struct mv_object *m = NULL;
            int64_t id = q[k]->v[i];

            if (k == 1 && bitmap_test(&ctx->qre_set, id)) {
                continue; /* already listed as recomputed */
            }
            ret = store_mv_get(eng->store, id, &m, err);
            if (ret == IDS_ENOTFOUND) {
                ret = IDS_OK;
                continue;
            }
            if (ret != IDS_OK) {
                break;
            }
            preview_add_sep(out);
            strbuf_addf(out, "{\"mv_id\":%" PRId64 ",\"mv_type\":", id);
            json_str_or_null(out, m->type);
            strbuf_addf(out, ",\"why\":\"%s\"}", k == 0 ? "recompute" : "outbound");
            mv_object_free(m);
        }
    }
    return ret;
}

enum ids_err engine_preview(struct engine *eng, const char *connector, const char *id,
                            struct strbuf *out, struct ids_error *err)
{
    enum ids_err ret;
    struct econn *ec = engine_conn(eng, connector);
    struct cs_object *cs = NULL;
    struct mv_object *before = NULL;
    struct mv_object *after = NULL;
    struct preview pv;
    struct erun r;
    struct sync_ctx ctx;
    struct strbuf refs = STRBUF_INIT;
    static const char *const istates[] = {"none", "add", "update", "delete"};

    if (ec == NULL) {
        return ids_error_set(err, IDS_EUSAGE, "no connector named %s in the configuration",
                             connector);
    }
    memset(&pv, 0, sizeof(pv));
    strbuf_init(&pv.joins, 0);
    strbuf_init(&pv.targets, 0);
    strbuf_init(&pv.errors, 0);
    memset(&r, 0, sizeof(r));
    r.eng = eng;
    r.record = false;
    r.pv = &pv;
    strbuf_init(&r.msg, 0);
    ret = store_dry_run_begin(eng->store, err);
    if (ret != IDS_OK) {
        goto out;
    }
    ret = find_cs(eng, ec, id, &cs, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (cs->mv_id != 0 && store_mv_get(eng->store, cs->mv_id, &before, err) != IDS_OK) {
        before = NULL;
    }
    sync_ctx_init(&ctx, eng, &r, true);
    ret = sync_one_cs(&ctx, cs->id, err);
    if (ret == IDS_OK) {
        sync_report_unresolved(&ctx);
        ret = preview_referrers(eng, &ctx, &refs, err);
    }
    sync_ctx_release(&ctx);
    if (ret != IDS_OK) {
        goto done;
    }
    if (pv.mv_id != 0 && store_mv_get(eng->store, pv.mv_id, &after, err) != IDS_OK) {
        after = NULL;
    }
    strbuf_addstr(out, "{\"connector\":");
    json_str_or_null(out, ec->cfg->name);
    strbuf_addf(out, ",\"cs_id\":%" PRId64 ",\"anchor\":", cs->id);
    json_str_or_null(out, cs->anchor);
    strbuf_addstr(out, ",\"dn\":");
    json_str_or_null(out, cs->dn);
    strbuf_addstr(out, ",\"type\":");
    json_str_or_null(out, cs->type);
    strbuf_addf(out, ",\"import_state\":\"%s\"",
                istates[cs->import_state <= CS_IMPORT_DELETE ? cs->import_state : 0]);
    strbuf_addstr(out, ",\"scope\":");
    if (pv.scope_known) {
        strbuf_addstr(out, pv.in_scope ? "true" : "false");
    } else {
        strbuf_addstr(out, "null");
    }
    strbuf_addf(out, ",\"joined_to\":%" PRId64 ",\"action\":", cs->mv_id);
    json_str_or_null(out, pv.action ? pv.action : "none");
    strbuf_addstr(out, ",\"join_rules\":[");
    strbuf_addbuf(out, &pv.joins);
    strbuf_addf(out, "],\"mv_id\":%" PRId64 ",\"mv_type\":", after ? after->id : pv.mv_id);
    json_str_or_null(out, after ? after->type : (before ? before->type : NULL));
    strbuf_addstr(out, ",\"flows\":");
    preview_flows(out, before ? before->entry : NULL, after ? after->entry : NULL);
    strbuf_addstr(out, ",\"targets\":[");
    strbuf_addbuf(out, &pv.targets);
    strbuf_addstr(out, "],\"referrers\":[");
    strbuf_addbuf(out, &refs);
    strbuf_addstr(out, "],\"errors\":[");
    strbuf_addbuf(out, &pv.errors);
    strbuf_addstr(out, "]}");
done:
    store_dry_run_end(eng->store);
out:
    cs_object_free(cs);
    mv_object_free(before);
    mv_object_free(after);
    strbuf_release(&pv.joins);
    strbuf_release(&pv.targets);
    strbuf_release(&pv.errors);
    strbuf_release(&refs);
    strbuf_release(&r.msg);
    return ret;
}
