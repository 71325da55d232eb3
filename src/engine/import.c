/* import.c - full and delta import: read a connected system and stage
 * what changed in its connector space; never touches the metaverse.
 * A full import also stages the deletion of what was not seen, guarded by
 * safety.import_max_delete_percent; it runs in one store transaction so
 * that the guard can stage nothing. Confirming import: values idsync
 * exported must come back. */
#include "engine/engine_int.h"
#include "engine/rebuilt.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/codec.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/banned.h"

struct import_ctx {
    struct engine *eng;
    struct econn *ec;
    struct erun *r;
    bool full;
    struct bitmap seen; /* CS ids seen by a full import */
    long unreadable;    /* IDS_EINPUT items */
    struct keyset ks;
    /* objects that lost every value of an attribute, per attribute name
     * (the attribute guard) */
    struct strvec cleared;
    long *ncleared;
    long space; /* objects in the space before this import, -1 until counted */
    /* objects of a directory deleted there, joined to an MV object: their
     * DNs leave the directory's groups (drop_gone_members) */
    struct gone_member {
        int64_t mv;
        char *dn;
    } * gone;
    size_t ngone, agone;
    /* delta import: objects idsync created, not read back yet, for which
     * the feed gave a delete before any record of them (decided at its end) */
    struct i64vec early_deletes;
};

/* The connector space before this import (staged adds are new rows, staged
 * deletions still there), for the guards: counted once, when a guard needs
 * it (a scan of the connector's index). */
static enum ids_err space_before(struct import_ctx *ctx, long *space, struct ids_error *err)
{
    enum ids_err ret;

    if (ctx->space < 0) {
        ret = store_cs_count(ctx->eng->store, ctx->ec->id, STORE_SEL_ALL, &ctx->space, err);
        if (ret != IDS_OK) {
            ctx->space = -1;
            return ret;
        }
        ctx->space -= ctx->r->rec.counters.staged_add;
    }
    *space = ctx->space;
    return IDS_OK;
}

static bool attr_is_read(const struct object_type_config *ot, const char *name)
{
    if (ot == NULL || ot->attributes.nr == 0) {
        return true;
    }
    return strvec_find(&ot->attributes, name, true) >= 0;
}

static bool attr_has_match(const struct attr *a, const struct value *v, unsigned flags)
{
    size_t i;

    if (a == NULL) {
        return false;
    }
    if (attr_has_value(a, v->data, v->len)) {
        return true;
    }
    for (i = 0; i < a->nvals; i++) {
        if (value_matches(&a->vals[i], v, flags | a->flags)) {
            return true;
        }
    }
    return false;
}

/* Values of `want` that are not in `a`: exact comparison of sorted sets
 * first (large groups), the forgiving comparison only for what is left. */
static void values_missing(const struct attr *want, const struct attr *a, struct attr *missing)
{
    struct attr only;
    size_t i;

    memset(&only, 0, sizeof(only));
    attr_value_diff(want, a, &only, NULL);
    for (i = 0; i < only.nvals; i++) {
        if (!attr_has_match(a, &only.vals[i], want->flags)) {
            attr_add_value(missing, only.vals[i].data, only.vals[i].len);
        }
    }
    attr_release(&only);
}

static void confirm_miss(struct import_ctx *ctx, const struct cs_object *cs, const char *attr,
                         const char *what, const struct value *v)
{
    struct strbuf d = STRBUF_INIT;

    if (v != NULL) {
        value_describe(&d, v->data, v->len);
    }
    erun_error_cs(ctx->r, ctx->ec, cs, attr, "exported-change-not-reimported",
                  "the last export %s %s%s%s%s, but the confirming import read %s back; the "
                  "connected system may have rejected or rewritten it",
                  what, attr, v ? " value \"" : "", v ? d.buf : "", v ? "\"" : "",
                  v ? "something else" : "it");
    strbuf_release(&d);
}

/* Check that what was exported last (cs->unconfirmed) is in `imported`. */
static void import_confirm(struct import_ctx *ctx, const struct cs_object *cs,
                           const struct entry *imported)
{
    const struct change *ch = cs->unconfirmed;
    const struct object_type_config *ot = connector_config_object(ctx->ec->cfg, cs->type);
    size_t i;
    size_t k;

    if (ch == NULL || ch->op == CHANGE_DELETE) {
        return;
    }
    for (i = 0; i < ch->nmods; i++) {
        const struct mod *md = &ch->mods[i];
        const struct attr *a = entry_attr(imported, md->attr.name);

        if (!attr_is_read(ot, md->attr.name)) {
            continue; /* not read back by this connector: cannot be confirmed */
        }
        switch (md->op) {
        case MOD_ADD:
        case MOD_REPLACE: {
            struct attr missing;

            if (md->attr.nvals == 0 && md->op == MOD_REPLACE && a != NULL && a->nvals > 0) {
                confirm_miss(ctx, cs, md->attr.name, "removed", NULL);
            }
            memset(&missing, 0, sizeof(missing));
            values_missing(&md->attr, a, &missing);
            for (k = 0; k < missing.nvals; k++) {
                confirm_miss(ctx, cs, md->attr.name, "set", &missing.vals[k]);
            }
            attr_release(&missing);
            break;
        }
        case MOD_DELETE:
            if (md->attr.nvals == 0 && a != NULL && a->nvals > 0) {
                confirm_miss(ctx, cs, md->attr.name, "removed", NULL);
            }
            {
                /* exact comparison: cheap for large groups */
                struct attr held;

                memset(&held, 0, sizeof(held));
                attr_values_held(&md->attr, a, &held);
                for (k = 0; k < held.nvals; k++) {
                    confirm_miss(ctx, cs, md->attr.name, "removed", &held.vals[k]);
                }
                attr_release(&held);
            }
            break;
        }
    }
    if (ch->new_dn != NULL && imported->dn != NULL && !dn_equal(ch->new_dn, imported->dn)) {
        struct value v = {ch->new_dn, strlen(ch->new_dn)};

        confirm_miss(ctx, cs, "dn", "renamed the object to", &v);
    }
    ctx->r->rec.counters.confirmed++;
}

/* ---- reference changes ------------------------------------------------------ */

/* The values of reference attribute `name` at the object's last sync: its
 * stored values (e) less what earlier imports recorded as added (d), with
 * what they recorded as removed. */
static void synced_values(const struct entry *e, const struct change *d, const char *name,
                          struct attr *out)
{
    const struct attr *removed = change_mod_values(d, MOD_DELETE, name);
    struct attr back;
    size_t i;

    memset(&back, 0, sizeof(back));
    attr_value_diff(entry_attr(e, name), change_mod_values(d, MOD_ADD, name), out, NULL);
    attr_value_diff(removed, out, &back, NULL);
    for (i = 0; i < back.nvals; i++) {
        attr_add_value(out, back.vals[i].data, back.vals[i].len);
    }
    attr_release(&back);
}

/* Can cs keep a record of its reference changes? Only an object of a type
 * with references, linked to an MV object, and synced since its last
 * import or staged only by updates that kept a record. */
static bool ref_delta_possible(const struct object_type_config *ot, const struct cs_object *cs)
{
    return ot != NULL && ot->nrefs > 0 && cs->mv_id != 0 &&
           (cs->import_state == CS_IMPORT_NONE ||
            (cs->import_state == CS_IMPORT_UPDATE && (cs->flags & CS_REF_DELTA)));
}

/* Record in cs which reference values come and go from its stored entry
 * (old) to the imported one (now), relative to its last sync: merged with
 * what earlier imports since recorded (CS_REF_DELTA); the sync then
 * changes the MV references by these values instead of resolving every
 * value again. An object that cannot keep a record keeps none. */
static void note_ref_delta(struct import_ctx *ctx, struct cs_object *cs, const struct entry *old,
                           const struct entry *now)
{
    const struct object_type_config *ot = connector_config_object(ctx->ec->cfg, cs->type);
    struct change *d = NULL;
    bool keep = ref_delta_possible(ot, cs);
    size_t i, op;

    for (i = 0; keep && i < ot->nrefs; i++) {
        const char *name = ot->refs[i].attr;
        struct attr base;
        struct attr diff[2]; /* added, removed */

        memset(&base, 0, sizeof(base));
        memset(diff, 0, sizeof(diff));
        synced_values(old, (cs->flags & CS_REF_DELTA) ? cs->ref_delta : NULL, name, &base);
        attr_value_diff(entry_attr(now, name), &base, &diff[0], &diff[1]);
        for (op = 0; op < 2; op++) {
            if (diff[op].nvals > 0) {
                if (d == NULL) {
                    d = change_new(CHANGE_MODIFY, NULL, NULL, NULL);
                }
                attr_take_values(
                    &change_add_mod(d, op == 0 ? MOD_ADD : MOD_DELETE, name, ATTR_REF)->attr,
                    &diff[op]);
            }
        }
        attr_release(&base);
        attr_release(&diff[0]);
        attr_release(&diff[1]);
    }
    change_free(cs->ref_delta);
    cs->ref_delta = d;
    if (keep) {
        cs->flags |= CS_REF_DELTA;
    } else {
        cs->flags &= ~CS_REF_DELTA;
    }
}

/* cs is renamed to new_dn: in a connector whose references are DNs, its
 * old DN is kept as a former DN, so that a group value the directory
 * rewrote without reporting it (AD linked values, OpenLDAP refint: no
 * change in DirSync or syncrepl) still resolves to it. */
static enum ids_err note_rename(struct import_ctx *ctx, const struct cs_object *cs,
                                const char *new_dn, struct ids_error *err)
{
    if (cs->dn == NULL || new_dn == NULL || dn_equal(cs->dn, new_dn) ||
        !(econn_caps(ctx->ec) & CONN_CAP_REF_BY_DN)) {
        return IDS_OK;
    }
    return store_cs_dn_alias(ctx->eng->store, ctx->ec->id, cs->dn, cs->id, err);
}

/* The reference attributes of cs's entry, copied before a change is
 * applied to it; NULL when cs cannot keep a record of them anyway (no
 * copy of a big group for nothing). */
static struct entry *ref_attrs_copy(struct import_ctx *ctx, const struct cs_object *cs)
{
    const struct object_type_config *ot = connector_config_object(ctx->ec->cfg, cs->type);
    struct entry *e;
    size_t i;

    if (!ref_delta_possible(ot, cs)) {
        return NULL;
    }
    e = entry_new(NULL, NULL, NULL);
    for (i = 0; i < ot->nrefs; i++) {
        entry_set_attr(e, ot->refs[i].attr, entry_attr(cs->entry, ot->refs[i].attr));
    }
    return e;
}

static const struct store_keys *target_keys(struct import_ctx *ctx, const struct entry *e)
{
    if (ctx->ec->keys.nr == 0) {
        return NULL;
    }
    keyset_build(&ctx->ks, &ctx->ec->keys, e);
    return &ctx->ks.keys;
}

/* cs (a synced object) loses every value of `name`: counted for the
 * attribute guard, unless idsync's own export removed them (its change
 * still awaits confirmation) or the attribute is not read any more. */
static void note_cleared(struct import_ctx *ctx, const struct cs_object *cs, const char *name)
{
    const struct object_type_config *ot = connector_config_object(ctx->ec->cfg, cs->type);
    long i;

    if (!attr_is_read(ot, name) || strcasecmp(name, "objectClass") == 0) {
        return;
    }
    if (cs->unconfirmed != NULL) {
        size_t j;

        for (j = 0; j < cs->unconfirmed->nmods; j++) {
            if (strcasecmp(cs->unconfirmed->mods[j].attr.name, name) == 0) {
                return;
            }
        }
    }
    i = strvec_find(&ctx->cleared, name, true);
    if (i < 0) {
        strvec_push(&ctx->cleared, name);
        ctx->ncleared = xreallocarray(ctx->ncleared, ctx->cleared.nr, sizeof(*ctx->ncleared));
        i = (long)ctx->cleared.nr - 1;
        ctx->ncleared[i] = 0;
    }
    ctx->ncleared[i]++;
}

/* The attributes that have values in `old` and none in `now`. Only for
 * objects joined to the metaverse, and not a staged add: the others have
 * flowed nothing anywhere. */
static void note_cleared_entry(struct import_ctx *ctx, const struct cs_object *cs,
                               const struct entry *old, const struct entry *now)
{
    size_t i;

    if (cs->mv_id == 0 || cs->import_state == CS_IMPORT_ADD ||
        cs->import_state == CS_IMPORT_DELETE || old == NULL) {
        return;
    }
    for (i = 0; i < old->nattrs; i++) {
        const struct attr *a = &old->attrs[i];
        const struct attr *b;

        if (a->nvals == 0) {
            continue;
        }
        b = entry_attr(now, a->name);
        if (b == NULL || b->nvals == 0) {
            note_cleared(ctx, cs, a->name);
        }
    }
}

/* Stage one complete object (full read, or a delta ADD). Takes e. */
static enum ids_err import_upsert(struct import_ctx *ctx, struct entry *e, struct ids_error *err)
{
    enum ids_err ret;
    struct cs_brief b;
    struct cs_object *cs = NULL;
    uint64_t hash;
    bool changed;

    if (e->anchor == NULL || e->anchor[0] == '\0') {
        erun_error(ctx->r, ctx->ec->cfg->name, NULL, e->dn, NULL, "bad-input", 0, 0,
                   "object without an anchor was skipped");
        entry_free(e);
        return IDS_OK;
    }
    if (e->type == NULL && ctx->ec->cfg->nobjects == 1) {
        entry_set_type(e, ctx->ec->cfg->objects[0].name);
    }
    hash = entry_hash(e);
    ret = store_cs_brief(ctx->eng->store, ctx->ec->id, e->anchor, &b, err);
    if (ret == IDS_ENOTFOUND) {
        cs = xcalloc(1, sizeof(*cs));
        cs->connector = ctx->ec->id;
        cs->type = xstrdup_or_null(e->type);
        cs->anchor = xstrdup(e->anchor);
        cs->dn = xstrdup_or_null(e->dn);
        cs->entry = e;
        cs->hash = hash;
        cs->import_state = CS_IMPORT_ADD;
        /* the lookup above, in this transaction, found the anchor free */
        ret = store_cs_insert_new(ctx->eng->store, cs, target_keys(ctx, e), err);
        if (ret == IDS_OK) {
            bitmap_set(&ctx->seen, cs->id);
            ctx->r->rec.counters.staged_add++;
        }
        cs_object_free(cs);
        return ret;
    }
    if (ret != IDS_OK) {
        entry_free(e);
        return ret;
    }
    bitmap_set(&ctx->seen, b.id);
    if (b.hash == hash && !b.has_unconfirmed && b.import_state != CS_IMPORT_DELETE) {
        ctx->r->rec.counters.unchanged++;
        entry_free(e);
        return IDS_OK; /* unchanged: one lookup, no write */
    }
    ret = store_cs_get(ctx->eng->store, b.id, &cs, err);
    if (ret != IDS_OK) {
        entry_free(e);
        return ret;
    }
    changed = b.hash != hash || cs->import_state == CS_IMPORT_DELETE;
    if (changed) {
        note_cleared_entry(ctx, cs, cs->entry, e);
    }
    if (cs->unconfirmed != NULL) {
        import_confirm(ctx, cs, e);
        change_free(cs->unconfirmed);
        cs->unconfirmed = NULL;
    }
    if (changed) {
        note_ref_delta(ctx, cs, cs->entry, e);
        ret = note_rename(ctx, cs, e->dn, err);
        if (ret != IDS_OK) {
            entry_free(e);
            cs_object_free(cs);
            return ret;
        }
        entry_free(cs->entry);
        cs->entry = e;
        free(cs->dn);
        cs->dn = xstrdup_or_null(e->dn);
        if (e->type != NULL) {
            free(cs->type);
            cs->type = xstrdup(e->type);
        }
        cs->hash = hash;
        cs->import_state = cs->import_state == CS_IMPORT_ADD ? CS_IMPORT_ADD : CS_IMPORT_UPDATE;
        ctx->r->rec.counters.staged_update++;
        ret = store_cs_put(ctx->eng->store, cs, target_keys(ctx, e), err);
    } else {
        entry_free(e);
        ctx->r->rec.counters.unchanged++;
        ret = store_cs_put(ctx->eng->store, cs, NULL, err);
    }
    cs_object_free(cs);
    return ret;
}

static enum ids_err find_changed(struct import_ctx *ctx, const struct change *ch,
                                 struct cs_object **out, struct ids_error *err)
{
    if (ch->anchor != NULL) {
        return store_cs_get_by_anchor(ctx->eng->store, ctx->ec->id, ch->anchor, out, err);
    }
    if (ch->dn != NULL) {
        return store_cs_get_by_dn(ctx->eng->store, ctx->ec->id, ch->dn, out, err);
    }
    *out = NULL;
    return IDS_ENOTFOUND;
}

static enum ids_err import_modify(struct import_ctx *ctx, const struct change *ch,
                                  struct ids_error *err)
{
    enum ids_err ret;
    struct cs_object *cs = NULL;
    struct entry *before = NULL;
    struct strvec gone = STRVEC_INIT;
    uint64_t hash;
    size_t i;

    ret = find_changed(ctx, ch, &cs, err);
    if (ret == IDS_ENOTFOUND) {
        erun_error(ctx->r, ctx->ec->cfg->name, ch->anchor, ch->dn, NULL, "bad-input", 0, 0,
                   "a change was read for an object that is not in the connector space; run "
                   "`idsync import %s --full` to read it",
                   ctx->ec->cfg->name);
        return IDS_OK;
    }
    if (ret != IDS_OK) {
        return ret;
    }
    before = ref_attrs_copy(ctx, cs);
    /* the attributes this change empties (the attribute guard) */
    if (cs->mv_id != 0 && cs->import_state != CS_IMPORT_ADD &&
        cs->import_state != CS_IMPORT_DELETE) {
        for (i = 0; i < ch->nmods; i++) {
            const struct mod *m = &ch->mods[i];
            const struct attr *a = entry_attr(cs->entry, m->attr.name);

            if (m->op != MOD_ADD && a != NULL && a->nvals > 0) {
                strvec_push(&gone, m->attr.name);
            }
        }
    }
    change_apply(ch, cs->entry);
    for (i = 0; i < gone.nr; i++) {
        const struct attr *a = entry_attr(cs->entry, gone.v[i]);

        if (a == NULL || a->nvals == 0) {
            note_cleared(ctx, cs, gone.v[i]);
        }
    }
    strvec_clear(&gone);
    if (ch->new_dn != NULL) {
        ret = note_rename(ctx, cs, ch->new_dn, err);
        if (ret != IDS_OK) {
            entry_free(before);
            cs_object_free(cs);
            return ret;
        }
        free(cs->dn);
        cs->dn = xstrdup(ch->new_dn);
    }
    hash = entry_hash(cs->entry);
    if (cs->unconfirmed != NULL) {
        import_confirm(ctx, cs, cs->entry);
        change_free(cs->unconfirmed);
        cs->unconfirmed = NULL;
    }
    if (hash != cs->hash || cs->import_state == CS_IMPORT_DELETE) {
        /* without a copy (no record possible) this drops any record */
        note_ref_delta(ctx, cs, before != NULL ? before : cs->entry, cs->entry);
        cs->hash = hash;
        cs->import_state = cs->import_state == CS_IMPORT_ADD ? CS_IMPORT_ADD : CS_IMPORT_UPDATE;
        ctx->r->rec.counters.staged_update++;
        ret = store_cs_put(ctx->eng->store, cs, target_keys(ctx, cs->entry), err);
    } else {
        ctx->r->rec.counters.unchanged++;
        ret = store_cs_put(ctx->eng->store, cs, NULL, err);
    }
    entry_free(before);
    cs_object_free(cs);
    return ret;
}

/* Created by idsync's export, and no import has read it since? */
static bool created_unread(const struct cs_object *cs)
{
    return cs->unconfirmed != NULL && cs->unconfirmed->op == CHANGE_ADD && cs->mv_id != 0;
}

/* idsync created cs and this import does not read it back: the type does
 * not select what idsync creates. Taken for deleted, it would be created
 * again by every cycle: kept, and reported. */
static enum ids_err report_unread(struct import_ctx *ctx, const struct cs_object *cs)
{
    erun_error_cs(ctx->r, ctx->ec, cs, NULL, "exported-change-not-reimported",
                  "created by an export of idsync, but this import does not read it back: "
                  "the object type's base, scope or filter do not select it (or the account "
                  "may not read it). It is kept as created, not taken for deleted, which "
                  "would create it again at every cycle; fix the object type's `base`, "
                  "`filter` or the flows, or the account's rights");
    return IDS_OK;
}

/* End of a delta read: the early deletes (stage_delete) of objects that no
 * later record read back are reported, once each. */
static enum ids_err settle_early_deletes(struct import_ctx *ctx, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    size_t i;

    i64vec_sort_unique(&ctx->early_deletes);
    for (i = 0; i < ctx->early_deletes.nr && ret == IDS_OK; i++) {
        struct cs_object *cs = NULL;

        ret = store_cs_get(ctx->eng->store, ctx->early_deletes.v[i], &cs, err);
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
        } else if (ret == IDS_OK && created_unread(cs)) {
            ret = report_unread(ctx, cs);
        }
        cs_object_free(cs);
    }
    return ret;
}

static enum ids_err stage_delete(struct import_ctx *ctx, struct cs_object *cs,
                                 struct ids_error *err)
{
    if (cs->anchor == NULL || cs->import_state == CS_IMPORT_DELETE) {
        return IDS_OK; /* provisioned, not yet exported; or already staged */
    }
    if (created_unread(cs)) {
        if (!ctx->full) {
            /* a feed that gives the delete of the entry idsync's export
             * removed at this DN before the create it wrote after it (an
             * LDIF target anchored by DN: a leaver and a joiner of one
             * name): the create's own record, later in this read, settles
             * it; only a delete with nothing after it is reported */
            i64vec_push(&ctx->early_deletes, cs->id);
            return IDS_OK;
        }
        return report_unread(ctx, cs);
    }
    cs->import_state = CS_IMPORT_DELETE;
    ctx->r->rec.counters.staged_delete++;
    if (cs->mv_id != 0 && cs->dn != NULL && (econn_caps(ctx->ec) & CONN_CAP_REF_BY_DN)) {
        ALLOC_GROW(ctx->gone, ctx->ngone + 1, ctx->agone);
        ctx->gone[ctx->ngone].mv = cs->mv_id;
        ctx->gone[ctx->ngone].dn = xstrdup(cs->dn);
        ctx->ngone++;
    }
    return store_cs_put(ctx->eng->store, cs, NULL, err);
}

struct gone_pair {
    int64_t group; /* CS id of a group of this connector */
    size_t gone;   /* index in ctx->gone */
};

static int cmp_gone_pair(const void *a, const void *b)
{
    const struct gone_pair *x = a;
    const struct gone_pair *y = b;

    return x->group < y->group ? -1 : x->group > y->group ? 1 : 0;
}

/* Take the value naming `dn` out of e's reference attributes; whether one was. */
static bool drop_dn_value(struct entry *e, const char *dn)
{
    bool dropped = false;
    size_t i;
    size_t k;

    for (i = 0; i < e->nattrs; i++) {
        struct attr *a = &e->attrs[i];
        size_t j = 0;

        if (!(a->flags & ATTR_REF)) {
            continue;
        }
        for (k = 0; k < a->nvals; k++) {
            if (dn_equal(a->vals[k].data, dn)) {
                free(a->vals[k].data);
                dropped = true;
            } else {
                a->vals[j++] = a->vals[k];
            }
        }
        a->nvals = j;
    }
    return dropped;
}

/* Objects deleted in a directory are no longer members of its groups: AD
 * removes the links and OpenLDAP's refint the values, often without a delta
 * import hearing of the groups' change (slapd's refint writes them after
 * the delete, past syncprov). The groups of this connector that the store
 * believes hold such a DN drop it (each group read and written once), and
 * are staged, so that a member provisioned again is added back by the next
 * export instead of being believed there. A directory that kept the value
 * (no refint) answers the add with "value exists", which the export
 * absorbs. */
static enum ids_err drop_gone_members(struct import_ctx *ctx, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct gone_pair *pairs = NULL;
    size_t npairs = 0;
    size_t apairs = 0;
    size_t i;
    size_t k;

    for (i = 0; i < ctx->ngone && ret == IDS_OK; i++) {
        struct i64vec ids = {0};

        ret = engine_mv_referrers(ctx->eng, ctx->gone[i].mv, &ids, err);
        for (k = 0; k < ids.nr && ret == IDS_OK; k++) {
            struct cs_object *g = NULL;

            ret = store_cs_get_by_mv(ctx->eng->store, ctx->ec->id, ids.v[k], &g, err);
            if (ret == IDS_ENOTFOUND) {
                ret = IDS_OK;
                continue;
            }
            if (ret == IDS_OK && g->anchor != NULL && g->import_state != CS_IMPORT_DELETE) {
                ALLOC_GROW(pairs, npairs + 1, apairs);
                pairs[npairs].group = g->id;
                pairs[npairs].gone = i;
                npairs++;
            }
            cs_object_free(g);
        }
        i64vec_release(&ids);
    }
    if (npairs > 1) {
        qsort(pairs, npairs, sizeof(*pairs), cmp_gone_pair);
    }
    for (i = 0; i < npairs && ret == IDS_OK; i = k) {
        struct cs_object *g = NULL;
        bool dropped = false;

        for (k = i; k < npairs && pairs[k].group == pairs[i].group; k++) {
        }
        ret = store_cs_get(ctx->eng->store, pairs[i].group, &g, err);
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
            continue;
        }
        for (size_t j = i; ret == IDS_OK && j < k; j++) {
            dropped = drop_dn_value(g->entry, ctx->gone[pairs[j].gone].dn) || dropped;
        }
        if (ret == IDS_OK && dropped) {
            g->hash = entry_hash(g->entry);
            if (g->import_state == CS_IMPORT_NONE) {
                g->import_state = CS_IMPORT_UPDATE;
            }
            ret = store_cs_put(ctx->eng->store, g, NULL, err);
        }
        cs_object_free(g);
    }
    free(pairs);
    return ret;
}

static enum ids_err import_delete(struct import_ctx *ctx, const struct change *ch,
                                  struct ids_error *err)
{
    enum ids_err ret;
    struct cs_object *cs = NULL;

    ret = find_changed(ctx, ch, &cs, err);
    if (ret == IDS_ENOTFOUND) {
        return IDS_OK; /* never seen: nothing to stage */
    }
    if (ret == IDS_OK) {
        ret = stage_delete(ctx, cs, err);
    }
    cs_object_free(cs);
    return ret;
}

/* Stage the deletion of every object of the connector not seen. */
static enum ids_err stage_unseen(struct import_ctx *ctx, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    int64_t *ids = xcalloc(ENGINE_BATCH, sizeof(*ids));
    int64_t after = 0;
    size_t n;
    size_t i;

    for (;;) {
        n = 0;
        ret = store_cs_ids(ctx->eng->store, ctx->ec->id, STORE_SEL_ALL, after, ids, ENGINE_BATCH,
                           &n, err);
        if (ret != IDS_OK || n == 0) {
            break;
        }
        for (i = 0; i < n && ret == IDS_OK; i++) {
            struct cs_object *cs = NULL;

            after = ids[i];
            if (bitmap_test(&ctx->seen, ids[i])) {
                continue;
            }
            ret = store_cs_get(ctx->eng->store, ids[i], &cs, err);
            if (ret == IDS_OK) {
                ret = stage_delete(ctx, cs, err);
            } else if (ret == IDS_ENOTFOUND) {
                ret = IDS_OK;
            }
            cs_object_free(cs);
        }
        if (ret != IDS_OK) {
            break;
        }
    }
    free(ids);
    return ret;
}

/* Read the cursor to its end, staging every item. */
/* The attribute guard: an import that would remove every value of one
 * attribute from more than safety.import_max_clear_percent of the
 * connector space (`space` objects before it) is stopped, before its
 * commit: a column renamed in an HR export, or an attribute the service
 * account may no longer read, looks exactly like this, and would clear it
 * in every target. Returns true when it stops the import (the caller
 * rolls back). */
static bool clear_guard(struct import_ctx *ctx, const char *connector, long space,
                        struct ids_error *err)
{
    const struct safety_config *sc = &ctx->eng->cfg->safety;
    long pct = sc->import_max_clear_percent;
    long worst = -1;
    struct strbuf names = STRBUF_INIT;
    size_t i, n = 0;

    if (pct <= 0 || space < sc->import_min_objects || space <= 0) {
        return false;
    }
    for (i = 0; i < ctx->cleared.nr; i++) {
        long c = ctx->ncleared[i];

        if (c * 100 > pct * space && ctx->eng->opts.allow_deletes < c) {
            if (worst < 0 || c > ctx->ncleared[worst]) {
                worst = (long)i;
            }
            strbuf_addf(&names, "%s%s (%ld)", names.len ? ", " : "", ctx->cleared.v[i], c);
            n++;
        }
    }
    if (worst < 0) {
        strbuf_release(&names);
        return false;
    }
    erun_message(ctx->r,
                 "The %s import of %s would remove every value of %s from %ld of %ld objects "
                 "(more than safety.import_max_clear_percent = %ld%%%s%s); nothing was staged. "
                 "A column renamed in an export, or an attribute the account can no longer "
                 "read, looks like this, and would clear the attribute in every target. Check "
                 "the source and the connector's attributes, and if the removals are real run "
                 "`idsync import %s%s --allow-deletes %ld`.",
                 ctx->full ? "full" : "delta", connector, ctx->cleared.v[worst],
                 ctx->ncleared[worst], space, pct, n > 1 ? "; attributes: " : "",
                 n > 1 ? names.buf : "", connector, ctx->full ? " --full" : "",
                 ctx->ncleared[worst]);
    ids_error_set(err, IDS_ETHRESHOLD,
                  "import of %s would remove %s from %ld of %ld objects; nothing was staged",
                  connector, ctx->cleared.v[worst], ctx->ncleared[worst], space);
    strbuf_release(&names);
    return true;
}

/* IDS_ETHRESHOLD when the attribute guard stops the import (the caller
 * rolls back). */
static enum ids_err check_cleared(struct import_ctx *ctx, const char *connector,
                                  struct ids_error *err)
{
    long space = 0;
    enum ids_err ret;

    if (ctx->cleared.nr == 0) {
        return IDS_OK;
    }
    ret = space_before(ctx, &space, err);
    if (ret != IDS_OK) {
        return ret;
    }
    return clear_guard(ctx, connector, space, err) ? IDS_ETHRESHOLD : IDS_OK;
}

static enum ids_err import_read(struct import_ctx *ctx, struct connector_cursor *cur, bool *stopped,
                                enum ids_err *why, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct connector *c = ctx->ec->conn;

    for (;;) {
        struct read_item item;
        struct ids_error ierr = IDS_ERROR_INIT;

        ret = connector_cursor_next(c, cur, &item, &ierr);
        if (ret == IDS_DONE) {
            ret = IDS_OK;
            break;
        }
        if (ret == IDS_EINPUT) {
            ctx->unreadable++;
            erun_error(ctx->r, ctx->ec->cfg->name, NULL, NULL, NULL, "bad-input", 0, 0, "%s",
                       ierr.msg);
            read_item_release(&item);
            ret = IDS_OK;
            if (erun_must_stop(ctx->r, why)) {
                *stopped = true;
                break;
            }
            continue;
        }
        if (ret != IDS_OK) {
            if (err != NULL) {
                *err = ierr;
            }
            read_item_release(&item);
            break;
        }
        ctx->r->rec.counters.read++;
        switch (item.op) {
        case CHANGE_ADD:
            if (item.entry != NULL) {
                ret = import_upsert(ctx, item.entry, err);
                item.entry = NULL;
            }
            break;
        case CHANGE_MODIFY:
            if (item.change != NULL) {
                ret = import_modify(ctx, item.change, err);
            }
            break;
        case CHANGE_DELETE:
            if (item.change != NULL) {
                ret = import_delete(ctx, item.change, err);
            }
            break;
        case CHANGE_NONE:
            break;
        }
        read_item_release(&item);
        if (ret != IDS_OK) {
            break;
        }
        progress_update(ctx->r->prog, ctx->r->rec.counters.read);
        if (erun_must_stop(ctx->r, why)) {
            *stopped = true;
            break;
        }
    }
    if (ret == IDS_OK && !*stopped) {
        ret = settle_early_deletes(ctx, err);
    }
    return ret;
}

/* A connector the metaverse only writes to. */
static bool pure_target(const struct econn *ec)
{
    return ec->is_target && !ec->is_source;
}

bool engine_scope_waits(struct engine *eng, const struct econn *ec)
{
    struct strbuf fp = STRBUF_INIT;
    struct strbuf wm = STRBUF_INIT;
    struct ids_error err = IDS_ERROR_INIT;
    bool first = false;
    bool waits = pure_target(ec) && store_watermark_get(eng->store, ec->id, &wm, &err) == IDS_OK &&
                 engine_scope_changed(eng->store, ec->cfg, &fp, &first);

    strbuf_release(&fp);
    strbuf_release(&wm);
    return waits;
}

bool engine_connector_scope_waits(struct engine *eng, const char *connector)
{
    struct econn *ec = engine_conn(eng, connector);

    return ec != NULL && engine_scope_waits(eng, ec);
}

enum ids_err engine_import(struct engine *eng, const char *connector, bool full,
                           struct run_record *run, struct ids_error *err)
{
    enum ids_err ret;
    struct import_ctx ctx;
    struct erun r;
    struct strbuf wm = STRBUF_INIT;
    struct strbuf why_full = STRBUF_INIT;
    struct strbuf fp = STRBUF_INIT;
    struct strbuf fp_key = STRBUF_INIT;
    bool fp_first = false;
    struct connector_cursor *cur = NULL;
    struct ids_error cerr = IDS_ERROR_INIT;
    bool in_tx = false;
    bool have_wm = false;
    uint64_t old_wm_hash = 0; /* the stored watermark (hash64 + length): */
    size_t old_wm_len = 0;    /* an unchanged one is not written again */
    bool stopped = false;
    enum ids_err why = IDS_OK;
    long space = 0;
    struct run_counters before;

    memset(&ctx, 0, sizeof(ctx));
    ctx.space = -1;
    memset(&before, 0, sizeof(before));
    keyset_init(&ctx.ks);
    ctx.eng = eng;
    ctx.ec = engine_conn(eng, connector);
    if (ctx.ec == NULL) {
        return ids_error_set(err, IDS_EUSAGE, "no connector named %s in the configuration",
                             connector);
    }
    if (!(econn_caps(ctx.ec) & CONN_CAP_READ)) {
        return ids_error_set(err, IDS_EUSAGE, "connector %s (%s) cannot be read", connector,
                             ctx.ec->cfg->type ? ctx.ec->cfg->type : "?");
    }
    /* decide between delta and full before the run starts, so that the run
     * carries the step it really is */
    if (!full) {
        ret = store_watermark_get(eng->store, ctx.ec->id, &wm, err);
        if (ret == IDS_OK) {
            have_wm = true;
        } else if (ret == IDS_ENOTFOUND) {
            strbuf_addstr(&why_full, "Full import: no watermark stored yet.");
        } else {
            goto early_fail;
        }
        if (have_wm && ctx.ec->cfg->ops->read_changes == NULL) {
            have_wm = false;
            strbuf_addf(&why_full, "Full import: connector type %s has no delta import.",
                        ctx.ec->cfg->type ? ctx.ec->cfg->type : "?");
        }
    }
    /* a delta import reads what changed in what the last import read: a
     * scope changed since (object types, filters, attributes) needs the
     * whole of it read again */
    engine_fingerprint_key(&fp_key, connector);
    if (engine_scope_changed(eng->store, ctx.ec->cfg, &fp, &fp_first) && have_wm) {
        if (pure_target(ctx.ec) && !eng->confirming) {
            /* read in full by the confirming import, after the exports */
            log_info("scope-full-waits",
                     "connector=%s (its scope changed: the confirming import of a cycle reads it "
                     "in full, after the exports)",
                     connector);
        } else {
            have_wm = false;
            strbuf_addf(&why_full,
                        fp_first ? "Full import: no fingerprint of the scope of connector %s "
                                   "(object types, filters, attributes) is recorded yet; this "
                                   "happens once."
                                 : "Full import: the scope of connector %s (object types, "
                                   "filters, attributes) changed since its last import.",
                        connector);
        }
    }
    ret = engine_conn_open(eng, ctx.ec, &cerr);
    if (ret == IDS_OK && have_wm) {
        old_wm_hash = hash64(wm.buf, wm.len, 0);
        old_wm_len = wm.len;
        ret = connector_read_changes(ctx.ec->conn, wm.buf, &cur, &cerr);
        /* a file connector's watermark can be large (CSV: a hash and key per
         * row): not kept during the read */
        strbuf_release(&wm);
        if (ret == IDS_EFULLREQUIRED || ret == IDS_EUNSUPPORTED) {
            strbuf_addf(&why_full, "Full import: %s.", cerr.msg);
            have_wm = false;
            ret = IDS_OK;
        }
    }
    ctx.full = !have_wm;
    if (ret == IDS_OK && ctx.full) {
        ret = connector_read_full(ctx.ec->conn, &cur, &cerr);
    }
    if (erun_start(eng, &r, ctx.full ? "full-import" : "delta-import", connector, err) != IDS_OK) {
        connector_cursor_free(ctx.ec->conn, cur);
        keyset_release(&ctx.ks);
        strbuf_release(&wm);
        strbuf_release(&why_full);
        strbuf_release(&fp);
        strbuf_release(&fp_key);
        return erun_finish(&r, err ? err->code : IDS_ESTORE, err, run);
    }
    ctx.r = &r;
    if (why_full.len > 0 && !full) {
        erun_message(&r, "%s", why_full.buf);
    }
    if (ret != IDS_OK) {
        if (err != NULL) {
            *err = cerr;
        }
        goto done;
    }
    if (!ctx.full) {
        progress_set_total(r.prog, -1);
    }
    ret = store_begin(eng->store, err);
    if (ret != IDS_OK) {
        goto done;
    }
    in_tx = true;
    before = r.rec.counters;
    ret = import_read(&ctx, cur, &stopped, &why, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (stopped) {
        /* keep what was staged; no deletions, no watermark: the next import
         * reads again */
        ret = check_cleared(&ctx, connector, err);
        if (ret != IDS_OK) {
            goto guarded;
        }
        erun_message(&r, "The import stopped before the end of the read: no deletions were "
                         "staged and the watermark was kept.");
        ret = store_commit(eng->store, err);
        in_tx = ret != IDS_OK; /* a failed commit is rolled back below */
        if (ret == IDS_OK) {
            ret = why;
            if (why == IDS_EINTR) {
                ids_error_set(err, IDS_EINTR, "interrupted");
            }
        }
        goto done;
    }
    if (ctx.full && ctx.unreadable > 0) {
        erun_message(&r,
                     "%ld object%s could not be read, so no deletions were staged (a missing "
                     "object may be one of the unreadable ones). Fix them and import again.",
                     ctx.unreadable, ctx.unreadable == 1 ? "" : "s");
    } else {
        long pct = eng->cfg->safety.import_max_delete_percent;
        long dels;

        /* the guard holds for delta imports too: a file connector's delta
         * (CSV) computes deletions from what the last import read, so an
         * emptied file arrives as deletions */
        if (ctx.full) {
            ret = stage_unseen(&ctx, err);
            if (ret != IDS_OK) {
                goto done;
            }
        }
        dels = r.rec.counters.staged_delete;
        if (dels > 0 && pct > 0) {
            ret = space_before(&ctx, &space, err);
            if (ret != IDS_OK) {
                goto done;
            }
        }
        if (pct > 0 && space >= eng->cfg->safety.import_min_objects && space > 0 &&
            dels * 100 > pct * space && eng->opts.allow_deletes < dels) {
            rebuilt_note_run(&r, connector, dels, r.rec.counters.staged_add); /* issue 5 */
            store_rollback(eng->store);
            in_tx = false;
            erun_message(&r,
                         "The %s import of %s would delete %ld of %ld objects (more than "
                         "safety.import_max_delete_percent = %ld%%); nothing was staged. An "
                         "empty or much smaller result is usually a broken filter, a wrong base "
                         "or lost read permission, not real deletions. Check the connector, and "
                         "if the deletions are real run `idsync import %s --full --allow-deletes "
                         "%ld`.",
                         ctx.full ? "full" : "delta", connector, dels, space, pct, connector, dels);
            r.rec.counters.staged_add = 0;
            r.rec.counters.staged_update = 0;
            r.rec.counters.confirmed = 0;
            ret = ids_error_set(err, IDS_ETHRESHOLD,
                                "import of %s would delete %ld of %ld objects; nothing was staged",
                                connector, dels, space);
            goto done;
        }
    }
    ret = check_cleared(&ctx, connector, err);
    if (ret != IDS_OK) {
        goto guarded;
    }
    ret = drop_gone_members(&ctx, err);
    if (ret != IDS_OK) {
        goto done;
    }
    strbuf_reset(&wm);
    ret = connector_cursor_watermark(ctx.ec->conn, cur, &wm, &cerr);
    if (ret != IDS_OK) {
        if (err != NULL) {
            *err = cerr;
        }
        goto done;
    }
    if (wm.len > 0 &&
        (!have_wm || wm.len != old_wm_len || hash64(wm.buf, wm.len, 0) != old_wm_hash)) {
        ret = store_watermark_set(eng->store, ctx.ec->id, wm.buf, err);
        if (ret != IDS_OK) {
            goto done;
        }
    }
    if (ctx.full) {
        /* the space is what this scope reads now */
        ret = store_meta_set(eng->store, fp_key.buf, fp.buf, err);
        if (ret != IDS_OK) {
            goto done;
        }
    }
    ret = store_commit(eng->store, err);
    in_tx = ret != IDS_OK;
    if (ret == IDS_OK && r.errlimit) {
        ret = IDS_EERRLIMIT;
    }
guarded:
    if (ret == IDS_ETHRESHOLD && in_tx) {
        /* stopped by the attribute guard: nothing staged, and the next
         * import reads the same again */
        store_rollback(eng->store);
        in_tx = false;
        erun_undo_counters(&r, &before, NULL);
    }
done:
    if (in_tx) {
        /* a failure inside the transaction (a full disk at the commit):
         * nothing of this import is in the store */
        store_rollback(eng->store);
        erun_undo_counters(&r, &before, "Nothing was staged; the next import reads again.");
    }
    connector_cursor_free(ctx.ec->conn, cur);
    bitmap_release(&ctx.seen);
    keyset_release(&ctx.ks);
    for (size_t i = 0; i < ctx.ngone; i++) {
        free(ctx.gone[i].dn);
    }
    free(ctx.gone);
    i64vec_release(&ctx.early_deletes);
    strvec_clear(&ctx.cleared);
    free(ctx.ncleared);
    strbuf_release(&wm);
    strbuf_release(&why_full);
    strbuf_release(&fp);
    strbuf_release(&fp_key);
    return erun_finish(&r, ret, err, run);
early_fail:
    keyset_release(&ctx.ks);
    strbuf_release(&wm);
    strbuf_release(&why_full);
    strbuf_release(&fp);
    strbuf_release(&fp_key);
    return ret;
}
