/* reconnect.c - planning and applying the re-join of a rebuilt directory
 * (reconnect.h). Only store_*() and connector_*() calls: no SQL. */
#include "engine/reconnect.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "engine/engine_int.h"
#include "expr/expr.h"
#include "util/codec.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/progress.h"
#include "util/banned.h"

#define PLAN_FORMAT 1
/* Mismatches named in the refusal message (all are recorded as run errors). */
#define MISMATCH_LISTED 5

static const char *const action_names[RC_NACTIONS] = {"re-anchor", "already-linked", "ambiguous",
                                                      "no-candidate", "type-mismatch"};

const char *reconnect_action_name(enum reconnect_action a)
{
    return (unsigned)a < RC_NACTIONS ? action_names[a] : "?";
}

static int64_t now_us(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

/* ---- a small hash index: key -> ids --------------------------------------- */

struct kent {
    struct i64vec ids; /* most keys have one id: room for one at first */
    struct kent *next;
    char key[]; /* a million keys: one allocation each, not two */
};

struct kidx {
    struct kent **b;
    size_t nb;
    size_t n;
};

static size_t kidx_slot(const struct kidx *x, const char *key)
{
    return (size_t)(hash64(key, strlen(key), 0x72636f6e) % x->nb);
}

static void kidx_grow(struct kidx *x)
{
    struct kent **old = x->b;
    size_t onb = x->nb;
    size_t i;

    x->nb = onb ? onb * 2 : 1024;
    x->b = xcalloc(x->nb, sizeof(*x->b));
    for (i = 0; i < onb; i++) {
        struct kent *e = old[i];

        while (e != NULL) {
            struct kent *next = e->next;
            size_t s = kidx_slot(x, e->key);

            e->next = x->b[s];
            x->b[s] = e;
            e = next;
        }
    }
    free(old);
}

static struct kent *kidx_find(const struct kidx *x, const char *key)
{
    struct kent *e;

    if (x->nb == 0) {
        return NULL;
    }
    for (e = x->b[kidx_slot(x, key)]; e != NULL; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            return e;
        }
    }
    return NULL;
}

static void kidx_add(struct kidx *x, const char *key, int64_t id)
{
    struct kent *e = kidx_find(x, key);
    size_t s;

    if (e == NULL) {
        size_t len = strlen(key);

        if (x->n >= x->nb * 2) {
            kidx_grow(x);
        }
        e = xcalloc(1, sizeof(*e) + len + 1);
        memcpy(e->key, key, len + 1);
        e->ids.v = xmalloc(sizeof(*e->ids.v));
        e->ids.alloc = 1;
        s = kidx_slot(x, key);
        e->next = x->b[s];
        x->b[s] = e;
        x->n++;
    }
    if (e->ids.nr == 0 || e->ids.v[e->ids.nr - 1] != id) {
        i64vec_push(&e->ids, id);
    }
}

static void kidx_release(struct kidx *x)
{
    size_t i;

    for (i = 0; i < x->nb; i++) {
        struct kent *e = x->b[i];

        while (e != NULL) {
            struct kent *next = e->next;

            i64vec_release(&e->ids);
            free(e);
            e = next;
        }
    }
    free(x->b);
    memset(x, 0, sizeof(*x));
}

/* ---- match keys ----------------------------------------------------------------- */

/* The comparable form of a value: a JSON object with a "value" member
 * (SCIM emails, phoneNumbers) compares on that member; everything else on
 * its normalised text. */
static void match_key(struct strbuf *out, const char *data, size_t len)
{
    if (len > 0 && data[0] == '{') {
        json_error_t jerr;
        json_t *o = json_loadb(data, len, 0, &jerr);
        const char *v = json_string_value(json_object_get(o, "value"));

        if (v != NULL) {
            value_normalize(out, v, strlen(v));
            json_decref(o);
            return;
        }
        json_decref(o);
    }
    value_normalize(out, data, len);
}

/* keys receive "by\x1fkey" for every value (by is lower-cased). */
static void add_keys(struct strvec *keys, const char *by, const struct attr *vals)
{
    struct strbuf k = STRBUF_INIT;
    size_t i;
    size_t base;

    for (i = 0; vals != NULL && i < vals->nvals; i++) {
        strbuf_reset(&k);
        strbuf_addstr(&k, by);
        strbuf_tolower(&k);
        strbuf_addch(&k, '\x1f');
        base = k.len;
        match_key(&k, vals->vals[i].data, vals->vals[i].len);
        if (k.len > base && strvec_find(keys, k.buf, false) < 0) {
            strvec_push(keys, k.buf);
        }
    }
    strbuf_release(&k);
}

/* "mail=ann@example.org, name=sales" */
static char *describe_keys(const struct strvec *keys)
{
    struct strbuf sb = STRBUF_INIT;
    size_t i;

    for (i = 0; i < keys->nr; i++) {
        const char *sep = strchr(keys->v[i], '\x1f');

        if (i) {
            strbuf_addstr(&sb, ", ");
        }
        if (sep != NULL) {
            strbuf_add(&sb, keys->v[i], (size_t)(sep - keys->v[i]));
            strbuf_addch(&sb, '=');
            strbuf_addstr(&sb, sep + 1);
        } else {
            strbuf_addstr(&sb, keys->v[i]);
        }
    }
    return strbuf_detach(&sb, NULL);
}

/* Candidates for keys: the union over each attribute's values, intersected
 * across attributes (keys of one attribute are contiguous). */
static void find_candidates(const struct kidx *x, const struct strvec *keys, struct i64vec *out)
{
    struct i64vec set = {0};
    size_t i = 0;
    bool first = true;

    out->nr = 0;
    while (i < keys->nr) {
        size_t plen = strcspn(keys->v[i], "\x1f");
        size_t j = i;

        set.nr = 0;
        while (j < keys->nr && strcspn(keys->v[j], "\x1f") == plen &&
               strncmp(keys->v[j], keys->v[i], plen) == 0) {
            const struct kent *e = kidx_find(x, keys->v[j]);
            size_t k;

            for (k = 0; e != NULL && k < e->ids.nr; k++) {
                i64vec_push(&set, e->ids.v[k]);
            }
            j++;
        }
        i64vec_sort_unique(&set);
        if (first) {
            size_t k;

            for (k = 0; k < set.nr; k++) {
                i64vec_push(out, set.v[k]);
            }
            first = false;
        } else {
            i64vec_intersect(out, &set);
        }
        i = j;
    }
    i64vec_release(&set);
}

/* Does the expression text use `name` as an identifier? */
static bool expr_uses(const char *src, const char *name)
{
    size_t n = strlen(name);
    const char *p = src;

    if (src == NULL || n == 0) {
        return false;
    }
    while ((p = strstr(p, name)) != NULL) {
        char before = p == src ? ' ' : p[-1];
        char after = p[n];
        bool idb = (before >= 'a' && before <= 'z') || (before >= 'A' && before <= 'Z') ||
                   (before >= '0' && before <= '9') || before == '_' || before == '.';
        bool ida = (after >= 'a' && after <= 'z') || (after >= 'A' && after <= 'Z') ||
                   (after >= '0' && after <= '9') || after == '_';

        if (!idb && !ida) {
            return true;
        }
        p += n;
    }
    return false;
}

/* The inbound flow of metaverse attribute `by` in a `from` element. */
static const struct rule_item *from_item(const struct flow_config *f, const char *by)
{
    size_t i;

    for (i = 0; i < f->nflows; i++) {
        if (strcasecmp(f->flows[i].attr, by) == 0) {
            return &f->flows[i];
        }
    }
    return NULL;
}

/* The outbound flows of a `to` element that use metaverse attribute `by`. */
static size_t to_items(const struct flow_config *t, const char *by, const struct rule_item **items,
                       size_t max)
{
    size_t i;
    size_t n = 0;

    for (i = 0; i < t->nflows && n < max; i++) {
        const struct rule_item *it = &t->flows[i];

        if (it->plain ? (it->source != NULL && strcasecmp(it->source, by) == 0)
                      : expr_uses(it->source, by)) {
            items[n++] = it;
        }
    }
    return n;
}

/* ---- plan rows ------------------------------------------------------------------ */

static void cand_release(struct reconnect_candidate *c)
{
    free(c->type);
    free(c->anchor);
    free(c->dn);
    free(c->carrier);
}

static void target_release(struct reconnect_target *t)
{
    free(t->connector);
    free(t->anchor);
    free(t->dn);
    free(t->carrier);
}

static void row_release(struct reconnect_row *r)
{
    size_t i;

    free(r->connector);
    free(r->type);
    free(r->mv_type);
    free(r->anchor);
    free(r->dn);
    free(r->by);
    free(r->old_anchor);
    free(r->new_anchor);
    free(r->cs_anchor);
    free(r->cs_dn);
    for (i = 0; i < r->ncand; i++) {
        cand_release(&r->cand[i]);
    }
    free(r->cand);
    for (i = 0; i < r->ntargets; i++) {
        target_release(&r->targets[i]);
    }
    free(r->targets);
    free(r->note);
    memset(r, 0, sizeof(*r));
}

void reconnect_plan_init(struct reconnect_plan *p)
{
    memset(p, 0, sizeof(*p));
    strvec_init(&p->by);
}

void reconnect_plan_release(struct reconnect_plan *p)
{
    size_t i;

    for (i = 0; i < p->nr; i++) {
        row_release(&p->v[i]);
    }
    free(p->v);
    free(p->config);
    free(p->store);
    free(p->connector);
    free(p->object);
    free(p->to);
    strvec_clear(&p->by);
    memset(p, 0, sizeof(*p));
}

static struct reconnect_row *plan_add(struct reconnect_plan *p)
{
    struct reconnect_row *r;

    ALLOC_GROW(p->v, p->nr + 1, p->alloc);
    r = &p->v[p->nr++];
    memset(r, 0, sizeof(*r));
    return r;
}

static void row_add_cand(struct reconnect_row *r, int64_t id, const char *type, const char *anchor,
                         const char *dn, const char *carrier)
{
    struct reconnect_candidate *c;

    r->cand = xreallocarray(r->cand, r->ncand + 1, sizeof(*r->cand));
    c = &r->cand[r->ncand++];
    c->id = id;
    c->type = xstrdup_or_null(type);
    c->anchor = xstrdup_or_null(anchor);
    c->dn = xstrdup_or_null(dn);
    c->carrier = xstrdup_or_null(carrier);
}

static void row_note(struct reconnect_row *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void row_note(struct reconnect_row *r, const char *fmt, ...)
{
    struct strbuf sb = STRBUF_INIT;
    va_list ap;

    va_start(ap, fmt);
    strbuf_vaddf(&sb, fmt, ap);
    va_end(ap);
    free(r->note);
    r->note = strbuf_detach(&sb, NULL);
}

static void fp_str(struct strbuf *sb, const char *s)
{
    strbuf_addstr(sb, s ? s : "\x01");
    strbuf_addch(sb, '|');
}

/* The row's fingerprint over what it saw; `extra` adds hashes of objects. */
static void row_fingerprint(struct reconnect_row *r, const char *extra)
{
    struct strbuf sb = STRBUF_INIT;
    size_t i;

    strbuf_addf(&sb, "%d|%s|", r->situation, reconnect_action_name(r->action));
    fp_str(&sb, r->connector);
    fp_str(&sb, r->type);
    fp_str(&sb, r->anchor);
    fp_str(&sb, r->dn);
    strbuf_addf(&sb, "%" PRId64 "|%" PRId64 "|%" PRId64 "|%" PRId64 "|", r->mv_id, r->cs_id,
                r->drop_cs, r->drop_mv);
    fp_str(&sb, r->old_anchor);
    fp_str(&sb, r->new_anchor);
    fp_str(&sb, r->cs_anchor);
    for (i = 0; i < r->ncand; i++) {
        strbuf_addf(&sb, "c%" PRId64 "|", r->cand[i].id);
        fp_str(&sb, r->cand[i].anchor);
        fp_str(&sb, r->cand[i].carrier);
    }
    for (i = 0; i < r->ntargets; i++) {
        strbuf_addf(&sb, "t%" PRId64 "|", r->targets[i].cs_id);
        fp_str(&sb, r->targets[i].connector);
        fp_str(&sb, r->targets[i].anchor);
        fp_str(&sb, r->targets[i].carrier);
    }
    fp_str(&sb, extra);
    snprintf(r->fingerprint, sizeof(r->fingerprint), "%016" PRIx64,
             hash64(sb.buf, sb.len, 0x706c616e));
    strbuf_release(&sb);
}

/* Entries kept for apply, by row index. */
/* The objects read for re-anchor rows, kept for the apply in the store's
 * compact form (entry_encode: a third of a decoded entry's memory, which
 * for a million people is the difference of a gigabyte). */
struct kept {
    char **v; /* per row: the encoded entry, NULL when none */
    uint32_t *len;
    size_t n;
    size_t alloc, alloc_len;
    struct strbuf sb;
};

/* Keep `enc` (an encoded entry, taken over) for row `row`. */
static void kept_set(struct kept *k, size_t row, char *enc, uint32_t len)
{
    if (k == NULL || enc == NULL) {
        free(enc);
        return;
    }
    if (row >= k->n) {
        ALLOC_GROW(k->v, row + 1, k->alloc);
        ALLOC_GROW(k->len, row + 1, k->alloc_len);
        memset(k->v + k->n, 0, (row + 1 - k->n) * sizeof(*k->v));
        memset(k->len + k->n, 0, (row + 1 - k->n) * sizeof(*k->len));
        k->n = row + 1;
    }
    free(k->v[row]);
    k->v[row] = enc;
    k->len[row] = len;
}

/* The object kept for row `row`, decoded (the caller's), or NULL. */
static struct entry *kept_get(const struct kept *k, size_t row)
{
    struct entry *e = NULL;

    if (row >= k->n || k->v[row] == NULL ||
        entry_decode(k->v[row], k->len[row], &e, NULL) != IDS_OK) {
        return NULL;
    }
    return e;
}

static void kept_release(struct kept *k)
{
    size_t i;

    for (i = 0; i < k->n; i++) {
        free(k->v[i]);
    }
    free(k->v);
    free(k->len);
    strbuf_release(&k->sb);
    memset(k, 0, sizeof(*k));
}

/* The objects of the targets linked to MV object mv (situation 1). */
static enum ids_err row_targets(struct engine *eng, struct mvt_info *mi, struct reconnect_row *r,
                                struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    size_t i;

    for (i = 0; i < mi->t->nto && ret == IDS_OK; i++) {
        const struct flow_config *t = &mi->t->to[i];
        struct econn *X = engine_flow_conn(eng, t);
        struct cs_object *o = NULL;
        struct reconnect_target *tg;

        if (X == NULL) {
            continue;
        }
        ret = store_cs_get_by_mv(eng->store, X->id, r->mv_id, &o, err);
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
            continue;
        }
        if (ret != IDS_OK) {
            break;
        }
        r->targets = xreallocarray(r->targets, r->ntargets + 1, sizeof(*r->targets));
        tg = &r->targets[r->ntargets++];
        tg->connector = xstrdup(X->cfg->name);
        tg->cs_id = o->id;
        tg->anchor = xstrdup_or_null(o->anchor);
        tg->dn = xstrdup_or_null(o->dn);
        tg->carrier =
            t->anchor_carrier ? xstrdup_or_null(entry_first(o->entry, t->anchor_carrier)) : NULL;
        cs_object_free(o);
    }
    return ret;
}

/* ---- situation 1: a rebuilt source ---------------------------------------------- */

struct newobj {
    char *anchor;
    char *dn;
    char *type;
    struct mvt_info *mi;
    uint64_t hash;
    struct strvec keys;
    char *enc; /* kept for apply (entry_encode), or NULL */
    uint32_t enc_len;
    int64_t proj_mv; /* joined already, to this projection of its own (0: not joined) */
    int64_t cs_id;   /* its connector-space object, 0 when none */
};

/* Is MV object mv_id linked to nothing but CS object cs_id, apart from
 * target objects never exported (pending creates)? Such an object is a
 * projection of cs_id that reached no target. */
static enum ids_err orphan_projection(struct engine *eng, int64_t cs_id, int64_t mv_id,
                                      bool *orphan, struct ids_error *err)
{
    enum ids_err ret;
    int64_t ids[64];
    size_t n = 0;
    size_t i;

    *orphan = false;
    ret = store_cs_links(eng->store, mv_id, ids, ARRAY_SIZE(ids), &n, err);
    if (ret == IDS_ENOTFOUND) {
        return IDS_OK;
    }
    if (ret != IDS_OK || n > ARRAY_SIZE(ids)) {
        return ret;
    }
    for (i = 0; i < n; i++) {
        struct cs_object *o = NULL;
        bool unsent;

        if (ids[i] == cs_id) {
            continue;
        }
        ret = store_cs_get(eng->store, ids[i], &o, err);
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
            continue;
        }
        if (ret != IDS_OK) {
            return ret;
        }
        unsent = o->anchor == NULL && o->export_state != CS_EXPORT_INFLIGHT;
        cs_object_free(o);
        if (!unsent) {
            return IDS_OK;
        }
    }
    *orphan = true;
    return IDS_OK;
}

struct oldobj {
    int64_t mv_id;
    int64_t cs_id;
    char *anchor;
    char *dn;
    char *mv_type;
    uint64_t cs_hash;
    uint64_t mv_hash;
    long claims;
};

static int cmp_old(const void *pa, const void *pb)
{
    const struct oldobj *a = pa;
    const struct oldobj *b = pb;

    return (a->mv_id > b->mv_id) - (a->mv_id < b->mv_id);
}

static struct oldobj *old_find(struct oldobj *v, size_t n, int64_t mv_id)
{
    struct oldobj key;

    memset(&key, 0, sizeof(key));
    key.mv_id = mv_id;
    return n ? bsearch(&key, v, n, sizeof(*v), cmp_old) : NULL;
}

static bool same_id(const char *given, const char *anchor, const char *dn)
{
    return given != NULL &&
           ((anchor != NULL && strcmp(given, anchor) == 0) || (dn != NULL && dn_equal(given, dn)));
}

struct src_ctx {
    struct engine *eng;
    struct econn *ec;
    const struct reconnect_opts *o;
    struct reconnect_plan *p;
    struct kept *kept;
    struct bitmap seen;
    struct newobj *news;
    size_t nnews;
    size_t anews;
    struct oldobj *olds;
    size_t nolds;
    size_t aolds;
    struct kidx idx;
    struct progress *prog; /* objects read so far */
    long nread;
};

static void src_ctx_release(struct src_ctx *c)
{
    size_t i;

    for (i = 0; i < c->nnews; i++) {
        free(c->news[i].anchor);
        free(c->news[i].dn);
        free(c->news[i].type);
        strvec_clear(&c->news[i].keys);
        free(c->news[i].enc);
    }
    free(c->news);
    for (i = 0; i < c->nolds; i++) {
        free(c->olds[i].anchor);
        free(c->olds[i].dn);
        free(c->olds[i].mv_type);
    }
    free(c->olds);
    bitmap_release(&c->seen);
    kidx_release(&c->idx);
}

/* One object read from the source. Takes e. */
static enum ids_err src_read_one(struct src_ctx *c, struct entry *e, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct mvt_info *mi = NULL;
    const struct flow_config *f;
    struct cs_brief b;
    struct newobj *n;
    int64_t proj_mv = 0;
    int64_t cs_id = 0;
    size_t i;

    if (e->anchor == NULL || e->anchor[0] == '\0') {
        goto done;
    }
    if (e->type == NULL && c->ec->cfg->nobjects == 1) {
        entry_set_type(e, c->ec->cfg->objects[0].name);
    }
    f = engine_find_from(c->eng, c->ec, e->type, &mi);
    if (f == NULL) {
        goto done; /* a type the metaverse does not take from this connector */
    }
    c->p->read++;
    ret = store_cs_brief(c->eng->store, c->ec->id, e->anchor, &b, err);
    if (ret == IDS_OK) {
        bitmap_set(&c->seen, b.id);
        if (b.mv_id != 0 && b.import_state != CS_IMPORT_DELETE) {
            bool orphan = false;

            ret = orphan_projection(c->eng, b.id, b.mv_id, &orphan, err);
            if (ret != IDS_OK) {
                goto done;
            }
            if (orphan) {
                proj_mv = b.mv_id;
                cs_id = b.id;
            }
        }
        if (b.mv_id != 0 && b.import_state != CS_IMPORT_DELETE && proj_mv == 0) {
            if (c->o->object == NULL) {
                struct reconnect_row *r = plan_add(c->p);

                r->situation = 1;
                r->action = RC_ALREADY_LINKED;
                r->connector = xstrdup(c->ec->cfg->name);
                r->type = xstrdup_or_null(e->type);
                r->mv_type = xstrdup(mi->t->name);
                r->mv_id = b.mv_id;
                r->anchor = xstrdup(e->anchor);
                r->dn = xstrdup_or_null(e->dn);
                r->cs_id = b.id;
                r->new_anchor = xstrdup(e->anchor);
                row_fingerprint(r, NULL);
            }
            goto done;
        }
    } else if (ret != IDS_ENOTFOUND) {
        goto done;
    }
    ret = IDS_OK;
    ALLOC_GROW(c->news, c->nnews + 1, c->anews);
    n = &c->news[c->nnews++];
    memset(n, 0, sizeof(*n));
    strvec_init(&n->keys);
    n->anchor = xstrdup(e->anchor);
    n->dn = xstrdup_or_null(e->dn);
    n->type = xstrdup_or_null(e->type);
    n->mi = mi;
    n->hash = entry_hash(e);
    n->proj_mv = proj_mv;
    n->cs_id = cs_id;
    for (i = 0; i < c->o->by.nr; i++) {
        const struct rule_item *it = from_item(f, c->o->by.v[i]);
        struct attr vals;
        struct ids_error eerr = IDS_ERROR_INIT;

        if (it == NULL) {
            continue;
        }
        memset(&vals, 0, sizeof(vals));
        vals.source = -1;
        if (flow_eval(it, e, &vals, &eerr) == IDS_OK) {
            add_keys(&n->keys, c->o->by.v[i], &vals);
        }
        attr_release(&vals);
    }
    if (c->kept != NULL && (c->o->object == NULL || same_id(c->o->object, e->anchor, e->dn))) {
        /* a third of the decoded entry's memory, for every new object read */
        strbuf_reset(&c->kept->sb);
        entry_encode(e, &c->kept->sb);
        if (c->kept->sb.len <= UINT32_MAX) {
            n->enc = xmemdup(c->kept->sb.buf, c->kept->sb.len);
            n->enc_len = (uint32_t)c->kept->sb.len;
        }
    }
done:
    entry_free(e);
    return ret;
}

static enum ids_err src_read(struct src_ctx *c, struct ids_error *err)
{
    enum ids_err ret;
    struct connector_cursor *cur = NULL;

    ret = engine_conn_open(c->eng, c->ec, err);
    if (ret == IDS_OK) {
        ret = connector_read_full(c->ec->conn, &cur, err);
    }
    while (ret == IDS_OK) {
        struct read_item item;
        struct ids_error ierr = IDS_ERROR_INIT;

        memset(&item, 0, sizeof(item));
        ret = connector_cursor_next(c->ec->conn, cur, &item, &ierr);
        if (ret == IDS_DONE) {
            ret = IDS_OK;
            break;
        }
        if (ret == IDS_EINPUT) {
            c->p->unreadable++;
            log_warn("reconnect", "connector=%s unreadable=\"%s\"", c->ec->cfg->name, ierr.msg);
            read_item_release(&item);
            ret = IDS_OK;
            continue;
        }
        if (ret != IDS_OK) {
            if (err != NULL) {
                *err = ierr;
            }
            read_item_release(&item);
            break;
        }
        if (item.op == CHANGE_ADD && item.entry != NULL) {
            ret = src_read_one(c, item.entry, err);
            item.entry = NULL;
        }
        read_item_release(&item);
        progress_update(c->prog, ++c->nread);
    }
    if (cur != NULL) {
        connector_cursor_free(c->ec->conn, cur);
    }
    return ret;
}

/* Index the metaverse objects whose object in the source vanished. */
static enum ids_err src_index_vanished(struct src_ctx *c, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    int64_t *ids = xcalloc(ENGINE_BATCH, sizeof(*ids));
    int64_t after = 0;
    struct strvec keys = STRVEC_INIT;
    size_t n;
    size_t i;
    size_t k;

    for (;;) {
        n = 0;
        ret = store_cs_ids(c->eng->store, c->ec->id, STORE_SEL_JOINED, after, ids, ENGINE_BATCH, &n,
                           err);
        if (ret != IDS_OK || n == 0) {
            break;
        }
        for (i = 0; i < n && ret == IDS_OK; i++) {
            struct cs_object *cs = NULL;
            struct mv_object *m = NULL;
            struct oldobj *o;

            after = ids[i];
            if (bitmap_test(&c->seen, ids[i])) {
                continue;
            }
            ret = store_cs_get(c->eng->store, ids[i], &cs, err);
            if (ret == IDS_OK && cs->mv_id != 0) {
                ret = store_mv_get(c->eng->store, cs->mv_id, &m, err);
            }
            if (ret == IDS_ENOTFOUND) {
                ret = IDS_OK;
            }
            if (ret == IDS_OK && m != NULL) {
                strvec_clear(&keys);
                for (k = 0; k < c->o->by.nr; k++) {
                    add_keys(&keys, c->o->by.v[k], entry_attr(m->entry, c->o->by.v[k]));
                }
                for (k = 0; k < keys.nr; k++) {
                    kidx_add(&c->idx, keys.v[k], m->id);
                }
                ALLOC_GROW(c->olds, c->nolds + 1, c->aolds);
                o = &c->olds[c->nolds++];
                memset(o, 0, sizeof(*o));
                o->mv_id = m->id;
                o->cs_id = cs->id;
                o->anchor = xstrdup_or_null(cs->anchor);
                o->dn = xstrdup_or_null(cs->dn);
                o->mv_type = xstrdup_or_null(m->type);
                o->cs_hash = cs->hash;
                o->mv_hash = entry_hash(m->entry);
            }
            mv_object_free(m);
            cs_object_free(cs);
        }
        if (ret != IDS_OK) {
            break;
        }
    }
    strvec_clear(&keys);
    free(ids);
    if (c->nolds > 1) {
        qsort(c->olds, c->nolds, sizeof(*c->olds), cmp_old);
    }
    return ret;
}

static void old_extra(struct strbuf *sb, const struct newobj *n, const struct oldobj *o)
{
    strbuf_reset(sb);
    strbuf_addf(sb, "%016" PRIx64 "|", n->hash);
    if (o != NULL) {
        strbuf_addf(sb, "%016" PRIx64 "|%016" PRIx64, o->cs_hash, o->mv_hash);
    }
}

static void src_row_for(struct src_ctx *c, struct newobj *n, const struct i64vec *cands,
                        bool forced)
{
    struct reconnect_row *r = plan_add(c->p);
    size_t k;

    r->situation = 1;
    r->connector = xstrdup(c->ec->cfg->name);
    r->type = xstrdup_or_null(n->type);
    r->mv_type = xstrdup(n->mi->t->name);
    r->anchor = xstrdup(n->anchor);
    r->dn = xstrdup_or_null(n->dn);
    r->by = describe_keys(&n->keys);
    r->new_anchor = xstrdup(n->anchor);
    for (k = 0; k < cands->nr; k++) {
        struct oldobj *o = old_find(c->olds, c->nolds, cands->v[k]);

        if (o != NULL) {
            row_add_cand(r, o->mv_id, o->mv_type, o->anchor, o->dn, NULL);
        }
    }
    if (n->keys.nr == 0 && !forced) {
        r->action = RC_NO_CANDIDATE;
        row_note(r, "no value for the chosen attributes; a normal cycle would project it");
    } else if (r->ncand == 0) {
        r->action = RC_NO_CANDIDATE;
        row_note(r, "no vanished object matches; a normal cycle would project it");
    } else if (r->ncand > 1) {
        r->action = RC_AMBIGUOUS;
        row_note(r, "%zu vanished objects match; resolve with --object %s --to ANCHOR", r->ncand,
                 n->anchor);
    } else if (r->cand[0].type == NULL || strcmp(r->cand[0].type, n->mi->t->name) != 0) {
        r->action = RC_TYPE_MISMATCH;
        row_note(r, "the only match is a %s, this object would be a %s",
                 r->cand[0].type ? r->cand[0].type : "?", n->mi->t->name);
    } else {
        struct oldobj *o = old_find(c->olds, c->nolds, r->cand[0].id);

        r->action = RC_REANCHOR;
        r->mv_id = o->mv_id;
        r->cs_id = o->cs_id;
        r->old_anchor = xstrdup_or_null(o->anchor);
        r->cs_anchor = xstrdup_or_null(o->anchor);
        r->cs_dn = xstrdup_or_null(o->dn);
        o->claims++;
    }
    if (n->proj_mv != 0 && r->action == RC_NO_CANDIDATE) {
        /* joined to its own projection, and nothing vanished matches: fine */
        r->action = RC_ALREADY_LINKED;
        r->mv_id = n->proj_mv;
        r->cs_id = n->cs_id;
        free(r->note);
        r->note = NULL;
    } else if (n->proj_mv != 0 && r->action == RC_REANCHOR) {
        r->drop_mv = n->proj_mv;
        row_note(r,
                 "replaces metaverse object %" PRId64 ", projected from it by an import, "
                 "which reached no target",
                 n->proj_mv);
    }
    if (c->kept != NULL) {
        kept_set(c->kept, c->p->nr - 1, n->enc, n->enc_len);
        n->enc = NULL;
    }
}

static enum ids_err plan_source(struct engine *eng, struct econn *ec,
                                const struct reconnect_opts *o, struct reconnect_plan *p,
                                struct kept *kept, struct progress *prog, struct ids_error *err)
{
    enum ids_err ret;
    struct src_ctx c;
    struct i64vec cands = {0};
    struct kidx news_by_anchor = {NULL, 0, 0};
    struct strbuf extra = STRBUF_INIT;
    size_t first = p->nr;
    size_t i;

    memset(&c, 0, sizeof(c));
    c.eng = eng;
    c.ec = ec;
    c.o = o;
    c.p = p;
    c.kept = kept;
    c.prog = prog;
    progress_set_step(prog, "reconnect: reading");
    ret = src_read(&c, err);
    if (ret == IDS_OK) {
        ret = src_index_vanished(&c, err);
    }
    if (ret != IDS_OK) {
        goto done;
    }
    if (o->object != NULL) {
        /* one object, one chosen candidate */
        struct newobj *n = NULL;
        struct cs_object *old = NULL;
        struct oldobj *od = NULL;

        for (i = 0; i < c.nnews && n == NULL; i++) {
            if (same_id(o->object, c.news[i].anchor, c.news[i].dn)) {
                n = &c.news[i];
            }
        }
        if (n == NULL) {
            ret = ids_error_set(err, IDS_EUSAGE,
                                "%s has no object %s that is not joined already (expected the "
                                "anchor or DN of a new object of %s)",
                                ec->cfg->name, o->object, ec->cfg->name);
            goto done;
        }
        if (strncmp(o->to, "mv:", 3) == 0) {
            od = old_find(c.olds, c.nolds, strtoll(o->to + 3, NULL, 10));
        } else {
            ret = store_cs_get_by_anchor(eng->store, ec->id, o->to, &old, err);
            if (ret == IDS_ENOTFOUND) {
                ret = store_cs_get_by_dn(eng->store, ec->id, o->to, &old, err);
            }
            if (ret == IDS_OK) {
                od = old_find(c.olds, c.nolds, old->mv_id);
                if (od != NULL && od->cs_id != old->id) {
                    od = NULL;
                }
            }
            cs_object_free(old);
            if (ret != IDS_OK && ret != IDS_ENOTFOUND) {
                goto done;
            }
            ret = IDS_OK;
        }
        if (od == NULL) {
            ret = ids_error_set(err, IDS_EUSAGE,
                                "--to %s names no vanished object of %s (expected the old anchor "
                                "or DN of an object of %s that the source no longer has, or "
                                "mv:ID of its metaverse object)",
                                o->to, ec->cfg->name, ec->cfg->name);
            goto done;
        }
        cands.nr = 0;
        i64vec_push(&cands, od->mv_id);
        src_row_for(&c, n, &cands, true);
        if (p->v[p->nr - 1].action == RC_REANCHOR) {
            row_note(&p->v[p->nr - 1], "chosen with --object/--to");
        }
    } else {
        progress_set_step(prog, "reconnect: matching");
        progress_set_total(prog, (long)c.nnews);
        for (i = 0; i < c.nnews; i++) {
            find_candidates(&c.idx, &c.news[i].keys, &cands);
            src_row_for(&c, &c.news[i], &cands, false);
            progress_update(prog, (long)i + 1);
        }
        progress_set_total(prog, -1);
    }
    /* a vanished object claimed by several new ones is ambiguous for all */
    for (i = first; i < p->nr; i++) {
        struct reconnect_row *r = &p->v[i];
        struct oldobj *od;

        if (r->situation != 1 || r->action != RC_REANCHOR) {
            continue;
        }
        od = old_find(c.olds, c.nolds, r->mv_id);
        if (od != NULL && od->claims > 1) {
            r->action = RC_AMBIGUOUS;
            row_note(r,
                     "metaverse object %" PRId64 " (old anchor %s) matches %ld new objects; "
                     "resolve with --object %s --to ANCHOR",
                     r->mv_id, od->anchor ? od->anchor : "?", od->claims, r->anchor);
            r->mv_id = 0;
            r->cs_id = 0;
            r->drop_mv = 0;
            free(r->old_anchor);
            r->old_anchor = NULL;
            free(r->cs_anchor);
            r->cs_anchor = NULL;
            free(r->cs_dn);
            r->cs_dn = NULL;
        }
    }
    /* each row's new object by its anchor (was a scan of every new object
     * per row: 50,000 rows, 1.25 G comparisons) */
    for (i = 0; i < c.nnews; i++) {
        kidx_add(&news_by_anchor, c.news[i].anchor, (int64_t)i);
    }
    for (i = first; i < p->nr && ret == IDS_OK; i++) {
        struct reconnect_row *r = &p->v[i];
        struct newobj *n = NULL;
        struct oldobj *od = NULL;
        struct kent *ke;
        struct mvt_info *mi = engine_mvt(eng, r->mv_type);

        if (r->situation != 1 || (r->action == RC_ALREADY_LINKED && r->fingerprint[0] != '\0')) {
            continue;
        }
        ke = r->anchor != NULL ? kidx_find(&news_by_anchor, r->anchor) : NULL;
        if (ke != NULL && ke->ids.nr > 0) {
            n = &c.news[ke->ids.v[0]]; /* the first one read, as before */
        }
        if (r->action == RC_REANCHOR) {
            od = old_find(c.olds, c.nolds, r->mv_id);
            if (mi != NULL) {
                ret = row_targets(eng, mi, r, err);
            }
        }
        old_extra(&extra, n, od);
        row_fingerprint(r, extra.buf);
    }
    for (i = 0; i < c.nolds; i++) {
        p->unmatched_old += c.olds[i].claims == 0 ? 1 : 0;
    }
done:
    i64vec_release(&cands);
    strbuf_release(&extra);
    kidx_release(&news_by_anchor);
    src_ctx_release(&c);
    return ret;
}

/* ---- situation 2: targets anchored to old values ---------------------------------- */

struct tobj {
    int64_t id;
    char *type;
    char *anchor;
    char *dn;
    char *carrier;
    uint64_t hash;
    long claims;
};

static int cmp_tobj(const void *pa, const void *pb)
{
    const struct tobj *a = pa;
    const struct tobj *b = pb;

    return (a->id > b->id) - (a->id < b->id);
}

struct tgt_ctx {
    struct engine *eng;
    struct econn *X;
    const struct reconnect_opts *o;
    struct reconnect_plan *p;
    struct tobj *objs;
    size_t nobjs;
    size_t aobjs;
    struct kidx idx;
};

static struct tobj *tobj_find(struct tgt_ctx *c, int64_t id)
{
    struct tobj key;

    memset(&key, 0, sizeof(key));
    key.id = id;
    return c->nobjs ? bsearch(&key, c->objs, c->nobjs, sizeof(*c->objs), cmp_tobj) : NULL;
}

static void tgt_ctx_release(struct tgt_ctx *c)
{
    size_t i;

    for (i = 0; i < c->nobjs; i++) {
        free(c->objs[i].type);
        free(c->objs[i].anchor);
        free(c->objs[i].dn);
        free(c->objs[i].carrier);
    }
    free(c->objs);
    kidx_release(&c->idx);
}

static bool deleting(const struct cs_object *o)
{
    return o->import_state == CS_IMPORT_DELETE ||
           (o->pending_export != NULL && o->pending_export->op == CHANGE_DELETE);
}

/* Index the disconnectors of the target by the chosen attributes. */
static enum ids_err tgt_index(struct tgt_ctx *c, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    int64_t *ids = xcalloc(ENGINE_BATCH, sizeof(*ids));
    int64_t after = 0;
    struct strvec keys = STRVEC_INIT;
    const struct rule_item *items[16];
    size_t n;
    size_t i;
    size_t k;
    size_t j;

    for (;;) {
        n = 0;
        ret = store_cs_ids(c->eng->store, c->X->id, STORE_SEL_DISCONNECTORS, after, ids,
                           ENGINE_BATCH, &n, err);
        if (ret != IDS_OK || n == 0) {
            break;
        }
        for (i = 0; i < n && ret == IDS_OK; i++) {
            struct cs_object *cs = NULL;
            const struct flow_config *t;
            struct mvt_info *mi = NULL;
            struct tobj *to;

            after = ids[i];
            ret = store_cs_get(c->eng->store, ids[i], &cs, err);
            if (ret == IDS_ENOTFOUND) {
                ret = IDS_OK;
                continue;
            }
            if (ret != IDS_OK) {
                break;
            }
            t = engine_find_to(c->eng, c->X, cs->type, &mi);
            if (t == NULL || cs->anchor == NULL || cs->mv_id != 0 || deleting(cs)) {
                cs_object_free(cs);
                continue;
            }
            strvec_clear(&keys);
            for (k = 0; k < c->o->by.nr; k++) {
                size_t ni = to_items(t, c->o->by.v[k], items, ARRAY_SIZE(items));

                for (j = 0; j < ni; j++) {
                    if (strcasecmp(items[j]->attr, "dn") == 0) {
                        struct attr a;

                        memset(&a, 0, sizeof(a));
                        if (cs->dn != NULL) {
                            attr_add_value(&a, cs->dn, strlen(cs->dn));
                        }
                        add_keys(&keys, c->o->by.v[k], &a);
                        attr_release(&a);
                    } else {
                        add_keys(&keys, c->o->by.v[k], entry_attr(cs->entry, items[j]->attr));
                    }
                }
            }
            for (k = 0; k < keys.nr; k++) {
                kidx_add(&c->idx, keys.v[k], cs->id);
            }
            ALLOC_GROW(c->objs, c->nobjs + 1, c->aobjs);
            to = &c->objs[c->nobjs++];
            memset(to, 0, sizeof(*to));
            to->id = cs->id;
            to->type = xstrdup_or_null(cs->type);
            to->anchor = xstrdup_or_null(cs->anchor);
            to->dn = xstrdup_or_null(cs->dn);
            to->carrier = t->anchor_carrier
                              ? xstrdup_or_null(entry_first(cs->entry, t->anchor_carrier))
                              : NULL;
            to->hash = cs->hash;
            cs_object_free(cs);
        }
        if (ret != IDS_OK) {
            break;
        }
    }
    strvec_clear(&keys);
    free(ids);
    return ret; /* ids ascend: objs is sorted by id */
}

/* The MV object's source anchor and DN: its first object in a source. */
static enum ids_err mv_source(struct engine *eng, int64_t mv_id, char **anchor, char **dn,
                              struct ids_error *err)
{
    enum ids_err ret;
    int64_t ids[64];
    size_t n = 0;
    size_t i;

    *anchor = NULL;
    *dn = NULL;
    ret = store_cs_links(eng->store, mv_id, ids, ARRAY_SIZE(ids), &n, err);
    if (ret == IDS_ENOTFOUND) {
        return IDS_OK;
    }
    for (i = 0; ret == IDS_OK && i < n && i < ARRAY_SIZE(ids) && *anchor == NULL; i++) {
        struct cs_object *o = NULL;
        struct econn *ec;

        ret = store_cs_get(eng->store, ids[i], &o, err);
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
            continue;
        }
        ec = ret == IDS_OK ? engine_conn_by_id(eng, o->connector) : NULL;
        if (ec != NULL && ec->is_source && engine_find_from(eng, ec, o->type, NULL) != NULL) {
            *anchor = xstrdup_or_null(o->anchor);
            *dn = xstrdup_or_null(o->dn);
        }
        cs_object_free(o);
    }
    return ret;
}

/* The value the anchor carrier of t gets from MV object m. */
static char *carrier_value(const struct flow_config *t, const struct mv_object *m)
{
    size_t i;
    char *v = NULL;

    if (t->anchor_carrier == NULL) {
        return NULL;
    }
    for (i = 0; i < t->nflows && v == NULL; i++) {
        struct attr a;
        struct ids_error err = IDS_ERROR_INIT;

        if (strcasecmp(t->flows[i].attr, t->anchor_carrier) != 0) {
            continue;
        }
        memset(&a, 0, sizeof(a));
        if (flow_eval(&t->flows[i], m->entry, &a, &err) == IDS_OK && a.nvals > 0) {
            v = xstrdup(a.vals[0].data);
        }
        attr_release(&a);
    }
    return v;
}

/* One MV object for target element t of connector X. */
static enum ids_err tgt_one(struct tgt_ctx *c, const struct flow_config *t, struct mv_object *m,
                            int64_t forced, struct ids_error *err)
{
    enum ids_err ret;
    struct cs_object *linked = NULL;
    struct strvec keys = STRVEC_INIT;
    struct i64vec cands = {0};
    const struct rule_item *items[16];
    struct reconnect_row *r;
    int64_t drop = 0;
    size_t k;
    size_t j;
    bool in = true;

    if (t->scope.expr != NULL) {
        ret = expr_eval_bool(t->scope.expr, m->entry, &in, err);
        if (ret == IDS_EEXPR) {
            return IDS_OK; /* the sync reports it */
        }
        if (ret != IDS_OK || !in) {
            return ret;
        }
    }
    ret = store_cs_get_by_mv(c->eng->store, c->X->id, m->id, &linked, err);
    if (ret == IDS_ENOTFOUND) {
        ret = IDS_OK;
        linked = NULL;
    }
    if (ret != IDS_OK) {
        goto done;
    }
    if (linked != NULL && (linked->type == NULL || strcasecmp(linked->type, t->object) != 0)) {
        goto done; /* the object of another `to` element */
    }
    if (linked != NULL && (linked->anchor != NULL || linked->export_state == CS_EXPORT_INFLIGHT)) {
        if (c->o->object == NULL) {
            r = plan_add(c->p);
            r->situation = 2;
            r->action = RC_ALREADY_LINKED;
            r->connector = xstrdup(c->X->cfg->name);
            r->type = xstrdup(t->object);
            r->mv_type = xstrdup(m->type);
            r->mv_id = m->id;
            ret = mv_source(c->eng, m->id, &r->anchor, &r->dn, err);
            r->cs_id = linked->id;
            r->cs_anchor = xstrdup_or_null(linked->anchor);
            r->cs_dn = xstrdup_or_null(linked->dn);
            r->old_anchor = t->anchor_carrier
                                ? xstrdup_or_null(entry_first(linked->entry, t->anchor_carrier))
                                : NULL;
            r->new_anchor = carrier_value(t, m);
            row_fingerprint(r, NULL);
        }
        goto done;
    }
    if (linked != NULL) {
        drop = linked->id; /* a create never sent: re-anchoring replaces it */
    }
    for (k = 0; k < c->o->by.nr; k++) {
        size_t ni = to_items(t, c->o->by.v[k], items, ARRAY_SIZE(items));

        for (j = 0; j < ni; j++) {
            struct attr a;
            struct ids_error eerr = IDS_ERROR_INIT;

            memset(&a, 0, sizeof(a));
            if (flow_eval(items[j], m->entry, &a, &eerr) == IDS_OK) {
                add_keys(&keys, c->o->by.v[k], &a);
            }
            attr_release(&a);
        }
    }
    if (forced != 0) {
        i64vec_push(&cands, forced);
    } else {
        find_candidates(&c->idx, &keys, &cands);
    }
    r = plan_add(c->p);
    r->situation = 2;
    r->connector = xstrdup(c->X->cfg->name);
    r->type = xstrdup(t->object);
    r->mv_type = xstrdup(m->type);
    r->mv_id = m->id;
    r->drop_cs = drop;
    ret = mv_source(c->eng, m->id, &r->anchor, &r->dn, err);
    if (ret != IDS_OK) {
        goto done;
    }
    r->by = describe_keys(&keys);
    r->new_anchor = carrier_value(t, m);
    for (k = 0; k < cands.nr; k++) {
        struct tobj *to = tobj_find(c, cands.v[k]);

        if (to != NULL) {
            row_add_cand(r, to->id, to->type, to->anchor, to->dn, to->carrier);
        }
    }
    if (keys.nr == 0 && forced == 0) {
        r->action = RC_NO_CANDIDATE;
        row_note(r, "no value for the chosen attributes; a normal cycle would provision it");
    } else if (r->ncand == 0) {
        r->action = RC_NO_CANDIDATE;
        row_note(r, "no object of %s matches; a normal cycle would provision it", c->X->cfg->name);
    } else if (r->ncand > 1) {
        r->action = RC_AMBIGUOUS;
        row_note(r, "%zu objects of %s match; resolve with --object %s --to ID", r->ncand,
                 c->X->cfg->name, r->anchor ? r->anchor : "ANCHOR");
    } else if (r->cand[0].type == NULL || strcasecmp(r->cand[0].type, t->object) != 0) {
        r->action = RC_TYPE_MISMATCH;
        row_note(r, "the only match is a %s, this object would be a %s",
                 r->cand[0].type ? r->cand[0].type : "?", t->object);
    } else {
        struct tobj *to = tobj_find(c, r->cand[0].id);

        r->action = RC_REANCHOR;
        r->cs_id = to->id;
        r->cs_anchor = xstrdup_or_null(to->anchor);
        r->cs_dn = xstrdup_or_null(to->dn);
        r->old_anchor = xstrdup_or_null(to->carrier);
        to->claims++;
        if (drop != 0) {
            row_note(r, "replaces a create that was never exported");
        }
    }
    {
        struct strbuf extra = STRBUF_INIT;

        strbuf_addf(&extra, "%016" PRIx64, entry_hash(m->entry));
        if (r->action == RC_REANCHOR) {
            strbuf_addf(&extra, "|%016" PRIx64, tobj_find(c, r->cs_id)->hash);
        }
        row_fingerprint(r, extra.buf);
        strbuf_release(&extra);
    }
done:
    cs_object_free(linked);
    strvec_clear(&keys);
    i64vec_release(&cands);
    return ret;
}

/* --object for a target: "mv:ID", or the anchor or DN of a source object. */
static enum ids_err resolve_mv(struct engine *eng, const char *given, int64_t *mv_id,
                               struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    size_t i;

    *mv_id = 0;
    if (strncmp(given, "mv:", 3) == 0) {
        *mv_id = strtoll(given + 3, NULL, 10);
        return IDS_OK;
    }
    for (i = 0; i < eng->nconns && *mv_id == 0; i++) {
        struct econn *ec = &eng->conns[i];
        struct cs_object *o = NULL;

        if (!ec->is_source) {
            continue;
        }
        ret = store_cs_get_by_anchor(eng->store, ec->id, given, &o, err);
        if (ret == IDS_ENOTFOUND) {
            ret = store_cs_get_by_dn(eng->store, ec->id, given, &o, err);
        }
        if (ret == IDS_OK) {
            *mv_id = o->mv_id;
        }
        cs_object_free(o);
        if (ret != IDS_OK && ret != IDS_ENOTFOUND) {
            return ret;
        }
        ret = IDS_OK;
    }
    return ret;
}

static enum ids_err plan_target(struct engine *eng, struct econn *X, const struct reconnect_opts *o,
                                struct progress *prog, struct reconnect_plan *p,
                                struct ids_error *err)
{
    enum ids_err ret;
    struct tgt_ctx c;
    int64_t *ids = NULL;
    int64_t after = 0;
    int64_t only = 0;
    int64_t forced = 0;
    size_t first = p->nr;
    size_t n;
    size_t i;
    size_t k;
    long seen = 0;

    memset(&c, 0, sizeof(c));
    c.eng = eng;
    c.X = X;
    c.o = o;
    c.p = p;
    progress_set_step(prog, "reconnect: matching");
    ret = tgt_index(&c, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (o->object != NULL) {
        struct cs_object *to = NULL;

        ret = resolve_mv(eng, o->object, &only, err);
        if (ret != IDS_OK) {
            goto done;
        }
        if (only == 0) {
            ret = ids_error_set(err, IDS_EUSAGE,
                                "--object %s names no joined source object (expected the anchor "
                                "or DN of a source object, or mv:ID)",
                                o->object);
            goto done;
        }
        ret = store_cs_get_by_anchor(eng->store, X->id, o->to, &to, err);
        if (ret == IDS_ENOTFOUND) {
            ret = store_cs_get_by_dn(eng->store, X->id, o->to, &to, err);
        }
        if (ret == IDS_OK) {
            forced = tobj_find(&c, to->id) != NULL ? to->id : 0;
        }
        cs_object_free(to);
        if (ret != IDS_OK && ret != IDS_ENOTFOUND) {
            goto done;
        }
        ret = IDS_OK;
        if (forced == 0) {
            ret = ids_error_set(err, IDS_EUSAGE,
                                "--to %s names no unjoined object of %s (expected the anchor or DN "
                                "of an object of %s that no metaverse object is joined to)",
                                o->to, X->cfg->name, X->cfg->name);
            goto done;
        }
    }
    ids = xcalloc(ENGINE_BATCH, sizeof(*ids));
    for (;;) {
        n = 0;
        if (only != 0) {
            ids[0] = only;
            n = after == 0 ? 1 : 0;
            after = only;
        } else {
            ret = store_mv_ids(eng->store, NULL, after, ids, ENGINE_BATCH, &n, err);
        }
        if (ret != IDS_OK || n == 0) {
            break;
        }
        for (i = 0; i < n && ret == IDS_OK; i++) {
            struct mv_object *m = NULL;
            struct mvt_info *mi;

            after = ids[i];
            ret = store_mv_get(eng->store, ids[i], &m, err);
            if (ret == IDS_ENOTFOUND) {
                ret = IDS_OK;
                continue;
            }
            if (ret != IDS_OK) {
                break;
            }
            mi = engine_mvt(eng, m->type);
            for (k = 0; mi != NULL && k < mi->t->nto && ret == IDS_OK; k++) {
                if (engine_flow_conn(eng, &mi->t->to[k]) == X) {
                    ret = tgt_one(&c, &mi->t->to[k], m, forced, err);
                }
            }
            mv_object_free(m);
            progress_update(prog, ++seen);
        }
        if (ret != IDS_OK) {
            break;
        }
    }
    if (ret != IDS_OK) {
        goto done;
    }
    if (only != 0 && p->nr == first) {
        ret = ids_error_set(err, IDS_EUSAGE,
                            "metaverse object %" PRId64 " of --object %s has no `to` element for "
                            "%s, or is joined there already",
                            only, o->object, X->cfg->name);
        goto done;
    }
    for (i = first; i < p->nr; i++) {
        struct reconnect_row *r = &p->v[i];
        struct tobj *to;

        if (r->action != RC_REANCHOR) {
            continue;
        }
        to = tobj_find(&c, r->cs_id);
        if (to != NULL && to->claims > 1) {
            r->action = RC_AMBIGUOUS;
            row_note(r,
                     "object %s of %s matches %ld metaverse objects; resolve with --object "
                     "ANCHOR --to %s",
                     to->anchor ? to->anchor : "?", X->cfg->name, to->claims,
                     to->anchor ? to->anchor : "ID");
            r->cs_id = 0;
            row_fingerprint(r, "ambiguous");
        }
    }
done:
    free(ids);
    tgt_ctx_release(&c);
    return ret;
}

/* ---- the plan ------------------------------------------------------------------- */

/* Is `by` a metaverse attribute that flows in from some source, or out to
 * some target? */
static bool by_known(struct engine *eng, const char *by)
{
    const struct rule_item *items[4];
    size_t i;
    size_t j;

    for (i = 0; i < eng->nmvt; i++) {
        const struct mv_type_config *t = eng->mvt[i].t;

        for (j = 0; j < t->nfrom; j++) {
            if (from_item(&t->from[j], by) != NULL) {
                return true;
            }
        }
        for (j = 0; j < t->nto; j++) {
            if (to_items(&t->to[j], by, items, ARRAY_SIZE(items)) > 0) {
                return true;
            }
        }
    }
    return false;
}

static enum ids_err plan_make(struct engine *eng, const struct reconnect_opts *o,
                              struct reconnect_plan *p, struct kept *kept, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct econn *only = NULL;
    struct strbuf sb = STRBUF_INIT;
    struct progress *prog = NULL;
    bool snapshot = false;
    size_t i;

    p->config = xstrdup_or_null(eng->cfg->path);
    p->store = xstrdup_or_null(eng->cfg->store);
    p->connector = xstrdup_or_null(o->connector);
    p->object = xstrdup_or_null(o->object);
    p->to = xstrdup_or_null(o->to);
    p->created_us = now_us();
    for (i = 0; i < o->by.nr; i++) {
        strvec_push(&p->by, o->by.v[i]);
        if (!by_known(eng, o->by.v[i])) {
            ret = ids_error_set(err, IDS_EUSAGE,
                                "--by %s: no metaverse type has an attribute `%s` that flows in "
                                "from a source or out to a target (expected a metaverse "
                                "attribute such as mail or upn)",
                                o->by.v[i], o->by.v[i]);
            goto done;
        }
    }
    if (o->by.nr == 0 && o->object == NULL) {
        ret = ids_error_set(err, IDS_EUSAGE,
                            "say which attributes to match on (expected --by ATTRIBUTE, e.g. "
                            "--by mail)");
        goto done;
    }
    if ((o->object == NULL) != (o->to == NULL)) {
        ret = ids_error_set(err, IDS_EUSAGE, "--object and --to go together");
        goto done;
    }
    if (o->connector != NULL) {
        only = engine_conn(eng, o->connector);
        if (only == NULL) {
            ret = ids_error_set(err, IDS_EUSAGE, "no connector named %s in the configuration",
                                o->connector);
            goto done;
        }
        if (!only->is_source && !only->is_target) {
            ret = ids_error_set(err, IDS_EUSAGE,
                                "connector %s is neither a source nor a target of the metaverse",
                                o->connector);
            goto done;
        }
    } else if (o->object != NULL) {
        ret = ids_error_set(err, IDS_EUSAGE,
                            "--object needs the connector: the source (rebuilt source) or the "
                            "target (fresh store) the object is in");
        goto done;
    }
    /* planning only reads: one snapshot, one point in time, and no lock
     * taken and dropped by each of its million reads (8 % of an apply) */
    ret = store_read_begin(eng->store, err);
    if (ret != IDS_OK) {
        goto done;
    }
    snapshot = true;
    prog = progress_start(eng->opts.progress, "reconnect: reading", o->connector, -1);
    for (i = 0; i < eng->nconns && ret == IDS_OK; i++) {
        struct econn *ec = &eng->conns[i];

        if ((only == NULL || only == ec) && ec->is_source && (econn_caps(ec) & CONN_CAP_READ)) {
            ret = plan_source(eng, ec, o, p, kept, prog, err);
            if (o->object != NULL) {
                goto done; /* a source names the situation */
            }
        }
    }
    for (i = 0; i < eng->nconns && ret == IDS_OK; i++) {
        struct econn *ec = &eng->conns[i];

        if ((only == NULL || only == ec) && ec->is_target) {
            ret = plan_target(eng, ec, o, prog, p, err);
        }
    }
done:
    progress_end(prog);
    if (snapshot) {
        store_read_end(eng->store);
    }
    for (i = 0; i < p->nr; i++) {
        p->totals[p->v[i].action]++;
        strbuf_addstr(&sb, p->v[i].fingerprint);
    }
    snprintf(p->fingerprint, sizeof(p->fingerprint), "%016" PRIx64,
             hash64(sb.buf, sb.len, 0x706c616e));
    strbuf_release(&sb);
    return ret;
}

enum ids_err reconnect_plan_make(struct engine *eng, const struct reconnect_opts *o,
                                 struct reconnect_plan *out, struct ids_error *err)
{
    return plan_make(eng, o, out, NULL, err);
}

/* ---- JSON ------------------------------------------------------------------------- */

static json_t *js(const char *s)
{
    struct strbuf sb = STRBUF_INIT;
    json_t *j;
    size_t i;

    if (s == NULL) {
        return json_null();
    }
    if (utf8_valid(s, strlen(s))) {
        return json_string(s);
    }
    for (i = 0; s[i]; i++) {
        unsigned char ch = (unsigned char)s[i];

        strbuf_addch(&sb, ch < 0x80 ? (int)ch : '?');
    }
    j = json_string(sb.buf);
    strbuf_release(&sb);
    return j;
}

/* One row of the plan as a JSON object (the caller's). */
static json_t *row_to_json(const struct reconnect_row *r)
{
    json_t *o = json_object();
    json_t *cands = json_array();
    json_t *tg = json_array();
    size_t k;

    json_object_set_new(o, "situation", json_integer(r->situation));
    json_object_set_new(o, "action", json_string(reconnect_action_name(r->action)));
    json_object_set_new(o, "connector", js(r->connector));
    json_object_set_new(o, "type", js(r->type));
    json_object_set_new(o, "mv_type", js(r->mv_type));
    json_object_set_new(o, "mv_id", r->mv_id ? json_integer(r->mv_id) : json_null());
    json_object_set_new(o, "anchor", js(r->anchor));
    json_object_set_new(o, "dn", js(r->dn));
    json_object_set_new(o, "by", js(r->by));
    json_object_set_new(o, "old_anchor", js(r->old_anchor));
    json_object_set_new(o, "new_anchor", js(r->new_anchor));
    json_object_set_new(o, "cs_id", r->cs_id ? json_integer(r->cs_id) : json_null());
    json_object_set_new(o, "cs_anchor", js(r->cs_anchor));
    json_object_set_new(o, "cs_dn", js(r->cs_dn));
    json_object_set_new(o, "drop_cs", r->drop_cs ? json_integer(r->drop_cs) : json_null());
    json_object_set_new(o, "drop_mv", r->drop_mv ? json_integer(r->drop_mv) : json_null());
    for (k = 0; k < r->ncand; k++) {
        json_t *c = json_object();

        json_object_set_new(c, "id", json_integer(r->cand[k].id));
        json_object_set_new(c, "type", js(r->cand[k].type));
        json_object_set_new(c, "anchor", js(r->cand[k].anchor));
        json_object_set_new(c, "dn", js(r->cand[k].dn));
        json_object_set_new(c, "carrier", js(r->cand[k].carrier));
        json_array_append_new(cands, c);
    }
    json_object_set_new(o, "candidates", cands);
    for (k = 0; k < r->ntargets; k++) {
        json_t *t = json_object();

        json_object_set_new(t, "connector", js(r->targets[k].connector));
        json_object_set_new(t, "cs_id", json_integer(r->targets[k].cs_id));
        json_object_set_new(t, "anchor", js(r->targets[k].anchor));
        json_object_set_new(t, "dn", js(r->targets[k].dn));
        json_object_set_new(t, "carrier", js(r->targets[k].carrier));
        json_array_append_new(tg, t);
    }
    json_object_set_new(o, "targets", tg);
    json_object_set_new(o, "note", js(r->note));
    json_object_set_new(o, "fingerprint", json_string(r->fingerprint));
    return o;
}

/* The plan as JSON, a piece at a time through put(): the header, then one
 * compact line per row where the header's empty "rows" array closes (a
 * plan of a million rows is never one JSON tree, nor its text, in memory). */
static void plan_emit(const struct reconnect_plan *p, size_t first, size_t count,
                      void (*put)(void *, const char *, size_t), void *arg)
{
    size_t end = first < p->nr ? first + (count < p->nr - first ? count : p->nr - first) : first;
    json_t *doc = json_object();
    json_t *by = json_array();
    json_t *totals = json_object();
    char *text;
    char *close;
    size_t i;

    json_object_set_new(doc, "idsync_reconnect_plan", json_integer(PLAN_FORMAT));
    json_object_set_new(doc, "created_us", json_integer(p->created_us));
    json_object_set_new(doc, "config", js(p->config));
    json_object_set_new(doc, "store", js(p->store));
    json_object_set_new(doc, "connector", js(p->connector));
    for (i = 0; i < p->by.nr; i++) {
        json_array_append_new(by, js(p->by.v[i]));
    }
    json_object_set_new(doc, "by", by);
    json_object_set_new(doc, "object", js(p->object));
    json_object_set_new(doc, "to", js(p->to));
    json_object_set_new(doc, "fingerprint", json_string(p->fingerprint));
    for (i = 0; i < RC_NACTIONS; i++) {
        json_object_set_new(totals, action_names[i], json_integer(p->totals[i]));
    }
    json_object_set_new(doc, "totals", totals);
    json_object_set_new(doc, "read", json_integer(p->read));
    json_object_set_new(doc, "unreadable", json_integer(p->unreadable));
    json_object_set_new(doc, "unmatched_old", json_integer(p->unmatched_old));
    json_object_set_new(doc, "rows", json_array());
    text = json_dumps(doc, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(doc);
    close = text != NULL ? strrchr(text, ']') : NULL;
    if (close == NULL) {
        free(text);
        return;
    }
    put(arg, text, (size_t)(close - text)); /* up to "rows": [ */
    for (i = first; i < end; i++) {
        json_t *o = row_to_json(&p->v[i]);
        /* a row a line: half the bytes of an indented row, and the reader
         * and grep take a row at a time */
        char *row = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);

        put(arg, i > first ? ",\n" : "\n", i > first ? 2 : 1);
        if (row != NULL) {
            put(arg, row, strlen(row));
            free(row);
        }
        json_decref(o);
    }
    if (end > first) {
        put(arg, "\n", 1);
    }
    put(arg, close, strlen(close)); /* ]\n} */
    put(arg, "\n", 1);
    free(text);
}

static void put_strbuf(void *arg, const char *s, size_t n)
{
    strbuf_add(arg, s, n);
}

static void put_file(void *arg, const char *s, size_t n)
{
    fwrite(s, 1, n, arg);
}

void reconnect_plan_to_json(const struct reconnect_plan *p, struct strbuf *out)
{
    plan_emit(p, 0, p->nr, put_strbuf, out);
}

void reconnect_plan_page_to_json(const struct reconnect_plan *p, size_t offset, size_t limit,
                                 struct strbuf *out)
{
    plan_emit(p, offset, limit, put_strbuf, out);
}

void reconnect_plan_write(const struct reconnect_plan *p, FILE *fp)
{
    plan_emit(p, 0, p->nr, put_file, fp);
}

static char *jget(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s ? xstrdup(s) : NULL;
}

/* ---- reading a plan, a row at a time ------------------------------------------------
 *
 * jansson reads a whole document into one tree: for a plan of a million
 * rows that is gigabytes. The reader walks the top-level object and the
 * "rows" array itself, finding where each value ends (the bracket nesting,
 * strings skipped whole), and hands each value's exact bytes to jansson:
 * the header's values once, each row when it is asked for. Every byte of a
 * value is parsed by jansson; the walk only looks at the structure
 * between values ({ } [ ] , : and white space). */

static size_t ws(const char *t, size_t len, size_t pos)
{
    while (pos < len && (t[pos] == ' ' || t[pos] == '\t' || t[pos] == '\n' || t[pos] == '\r')) {
        pos++;
    }
    return pos;
}

/* The offset just after the JSON value starting at t[pos], or 0 when it
 * does not end inside the text (a truncated file). Not a validation:
 * jansson parses the bytes found. rd, when given, is told as the scan goes
 * (the rows of a mapped plan: its pages are given back as they are passed). */
static size_t value_end(const char *t, size_t len, size_t pos, struct reconnect_plan_reader *rd)
{
    size_t told = pos;

    size_t depth = 0;
    bool in_str = false;

    if (pos >= len) {
        return 0;
    }
    if (t[pos] != '{' && t[pos] != '[' && t[pos] != '"') {
        /* number, true, false, null: up to the next structural byte */
        while (pos < len && !strchr(",}] \t\r\n", t[pos])) {
            pos++;
        }
        return pos;
    }
    for (; pos < len; pos++) {
        char c = t[pos];

        if (rd != NULL && rd->consumed != NULL && pos - told >= (4u << 20)) {
            rd->consumed(rd->consumed_arg, pos);
            told = pos;
        }
        if (in_str) {
            if (c == '\\') {
                pos++;
            } else if (c == '"') {
                in_str = false;
                if (depth == 0) {
                    return pos + 1;
                }
            }
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0) {
                return 0; /* unbalanced: jansson says what */
            }
            if (--depth == 0) {
                return pos + 1;
            }
        }
    }
    return 0;
}

static unsigned line_at(const char *t, size_t pos)
{
    unsigned line = 1;
    const char *p = t;
    const char *end = t + pos;

    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        line++;
        p++;
    }
    return line;
}

/* The value at t[pos] (JSON_DECODE_ANY), *end after it; NULL with err. */
static json_t *value_at(const char *t, size_t len, size_t pos, size_t *end, const char *what,
                        struct ids_error *err)
{
    json_error_t jerr;
    json_t *v;
    size_t e = value_end(t, len, pos, NULL);

    if (e == 0) {
        e = len; /* let jansson say what is wrong, where */
    }
    v = json_loadb(t + pos, e - pos, JSON_DECODE_ANY, &jerr);
    if (v == NULL) {
        ids_error_set(err, IDS_EINPUT, "not a reconnect plan: line %u: %s%s%s",
                      line_at(t, pos) + (jerr.line > 1 ? (unsigned)jerr.line - 1 : 0), what,
                      what[0] ? ": " : "", jerr.text);
        return NULL;
    }
    *end = e;
    return v;
}

/* The header of a plan: every member but "rows". */
static enum ids_err read_header(struct reconnect_plan_reader *rd, json_t *doc,
                                struct ids_error *err)
{
    const char *t = rd->text;
    size_t len = rd->len;
    size_t pos = ws(t, len, 0);
    bool first = true;

    if (pos >= len || t[pos] != '{') {
        return ids_error_set(err, IDS_EINPUT,
                             "not a reconnect plan: line %u: a JSON object "
                             "expected",
                             line_at(t, pos < len ? pos : len));
    }
    pos++;
    for (;;) {
        json_t *k;
        json_t *v;
        size_t end;
        const char *key;

        pos = ws(t, len, pos);
        if (pos < len && t[pos] == '}') {
            pos++;
            break;
        }
        if (!first) {
            if (pos >= len || t[pos] != ',') {
                return ids_error_set(
                    err, IDS_EINPUT, "not a reconnect plan: line %u: ',' or '}' expected%s",
                    line_at(t, pos < len ? pos : len), pos >= len ? " (the file ends early)" : "");
            }
            pos = ws(t, len, pos + 1);
        }
        first = false;
        if (pos >= len || t[pos] != '"') {
            return ids_error_set(
                err, IDS_EINPUT, "not a reconnect plan: line %u: a member name expected%s",
                line_at(t, pos < len ? pos : len), pos >= len ? " (the file ends early)" : "");
        }
        k = value_at(t, len, pos, &end, "", err);
        if (k == NULL) {
            return IDS_EINPUT;
        }
        pos = ws(t, len, end);
        if (pos >= len || t[pos] != ':') {
            json_decref(k);
            return ids_error_set(err, IDS_EINPUT, "not a reconnect plan: line %u: ':' expected",
                                 line_at(t, pos < len ? pos : len));
        }
        pos = ws(t, len, pos + 1);
        key = json_string_value(k);
        if (strcmp(key, "rows") == 0) {
            if (pos >= len || t[pos] != '[') {
                json_decref(k);
                return ids_error_set(err, IDS_EINPUT,
                                     "not a reconnect plan: line %u: \"rows\" is not an array",
                                     line_at(t, pos < len ? pos : len));
            }
            end = value_end(t, len, pos, rd);
            if (end == 0) {
                json_decref(k);
                return ids_error_set(err, IDS_EINPUT,
                                     "not a reconnect plan: line %u: its \"rows\" do not end "
                                     "(the file is cut short?)",
                                     line_at(t, pos));
            }
            rd->rows = pos + 1;
            rd->rows_end = end - 1; /* its ']' */
            rd->have_rows = true;
            json_decref(k);
            pos = end;
            continue;
        }
        v = value_at(t, len, pos, &end, key, err);
        if (v == NULL) {
            json_decref(k);
            return IDS_EINPUT;
        }
        json_object_set_new(doc, key, v);
        json_decref(k);
        pos = end;
    }
    pos = ws(t, len, pos);
    if (pos < len) {
        return ids_error_set(err, IDS_EINPUT,
                             "not a reconnect plan: line %u: text after the plan's end",
                             line_at(t, pos));
    }
    return IDS_OK;
}

/* A fingerprint as idsync writes it: 16 lower-case hex digits. */
static bool fingerprint_ok(const char *s)
{
    size_t i;

    for (i = 0; i < 16; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return s[16] == '\0';
}

enum ids_err reconnect_plan_open(struct reconnect_plan_reader *rd, const char *text, size_t len,
                                 struct reconnect_plan *hdr, struct ids_error *err)
{
    enum ids_err ret;
    json_t *doc = json_object();
    json_t *by;
    const char *fp;
    size_t i;
    void (*consumed)(void *, size_t) = rd->consumed;
    void *consumed_arg = rd->consumed_arg;
    const char *name = rd->name;

    memset(rd, 0, sizeof(*rd));
    rd->consumed = consumed; /* the caller's, set before */
    rd->consumed_arg = consumed_arg;
    rd->name = name;
    rd->text = text;
    rd->len = len;
    ret = read_header(rd, doc, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (json_integer_value(json_object_get(doc, "idsync_reconnect_plan")) != PLAN_FORMAT) {
        ret = ids_error_set(err, IDS_EINPUT,
                            "not a reconnect plan of this version (expected "
                            "\"idsync_reconnect_plan\": %d)",
                            PLAN_FORMAT);
        goto done;
    }
    by = json_object_get(doc, "by");
    if (!rd->have_rows || !json_is_array(by)) {
        ret = ids_error_set(err, IDS_EINPUT, "reconnect plan without \"rows\" or \"by\"");
        goto done;
    }
    hdr->config = jget(doc, "config");
    hdr->store = jget(doc, "store");
    hdr->connector = jget(doc, "connector");
    hdr->object = jget(doc, "object");
    hdr->to = jget(doc, "to");
    hdr->created_us = json_integer_value(json_object_get(doc, "created_us"));
    fp = json_string_value(json_object_get(doc, "fingerprint"));
    if (fp == NULL || !fingerprint_ok(fp)) {
        ret = ids_error_set(err, IDS_EINPUT,
                            "reconnect plan: its \"fingerprint\" is not 16 hex digits");
        goto done;
    }
    snprintf(hdr->fingerprint, sizeof(hdr->fingerprint), "%s", fp);
    for (i = 0; i < json_array_size(by); i++) {
        const char *s = json_string_value(json_array_get(by, i));

        if (s != NULL) {
            strvec_push(&hdr->by, s);
        }
    }
    rd->pos = rd->rows;
done:
    json_decref(doc);
    if (ret != IDS_OK) {
        rd->done = true;
    }
    return ret;
}

/* Row number n (from 1) of a plan from its JSON object. */
static enum ids_err row_from_json(json_t *o, size_t n, struct reconnect_row *r,
                                  struct ids_error *err)
{
    const char *action = json_string_value(json_object_get(o, "action"));
    const char *rfp = json_string_value(json_object_get(o, "fingerprint"));
    size_t a;

    if (!json_is_object(o) || action == NULL || rfp == NULL) {
        return ids_error_set(err, IDS_EINPUT, "reconnect plan row %zu is incomplete", n);
    }
    if (!fingerprint_ok(rfp)) {
        return ids_error_set(err, IDS_EINPUT,
                             "reconnect plan row %zu: its fingerprint is not 16 hex digits", n);
    }
    r->situation = (int)json_integer_value(json_object_get(o, "situation"));
    r->action = RC_NACTIONS;
    for (a = 0; a < RC_NACTIONS; a++) {
        if (strcmp(action, action_names[a]) == 0) {
            r->action = (enum reconnect_action)a;
        }
    }
    if (r->action == RC_NACTIONS || (r->situation != 1 && r->situation != 2)) {
        r->action = RC_NO_CANDIDATE;
        return ids_error_set(err, IDS_EINPUT, "reconnect plan row %zu: unknown action or situation",
                             n);
    }
    r->connector = jget(o, "connector");
    r->type = jget(o, "type");
    r->mv_type = jget(o, "mv_type");
    r->mv_id = json_integer_value(json_object_get(o, "mv_id"));
    r->anchor = jget(o, "anchor");
    r->dn = jget(o, "dn");
    r->by = jget(o, "by");
    r->old_anchor = jget(o, "old_anchor");
    r->new_anchor = jget(o, "new_anchor");
    r->cs_id = json_integer_value(json_object_get(o, "cs_id"));
    r->cs_anchor = jget(o, "cs_anchor");
    r->cs_dn = jget(o, "cs_dn");
    r->drop_cs = json_integer_value(json_object_get(o, "drop_cs"));
    r->drop_mv = json_integer_value(json_object_get(o, "drop_mv"));
    r->note = jget(o, "note");
    snprintf(r->fingerprint, sizeof(r->fingerprint), "%s", rfp);
    return IDS_OK;
}

enum ids_err reconnect_plan_next(struct reconnect_plan_reader *rd, const struct reconnect_row **row,
                                 struct ids_error *err)
{
    const char *t = rd->text;
    size_t pos;
    size_t end;
    json_t *o;
    enum ids_err ret;

    *row = NULL;
    row_release(&rd->row);
    if (rd->done) {
        return IDS_DONE;
    }
    if (rd->mem != NULL) {
        if (rd->n >= rd->mem->nr) {
            rd->done = true;
            return IDS_DONE;
        }
        rd->at = rd->n;
        *row = &rd->mem->v[rd->n++];
        return IDS_OK;
    }
    pos = ws(t, rd->rows_end, rd->pos);
    if (rd->n > 0 && pos < rd->rows_end) {
        if (t[pos] != ',') {
            rd->done = true;
            return ids_error_set(err, IDS_EINPUT,
                                 "not a reconnect plan: line %u: ',' expected after row %zu",
                                 line_at(t, pos), rd->n);
        }
        pos = ws(t, rd->rows_end, pos + 1);
        if (pos >= rd->rows_end) {
            rd->done = true;
            return ids_error_set(err, IDS_EINPUT,
                                 "not a reconnect plan: line %u: a row expected after ','",
                                 line_at(t, pos));
        }
    }
    if (pos >= rd->rows_end) {
        rd->done = true;
        return IDS_DONE;
    }
    {
        char what[32];

        snprintf(what, sizeof(what), "row %zu", rd->n + 1);
        o = value_at(t, rd->rows_end, pos, &end, what, err);
    }
    if (o == NULL) {
        rd->done = true;
        return IDS_EINPUT;
    }
    ret = row_from_json(o, rd->n + 1, &rd->row, err);
    json_decref(o);
    if (ret != IDS_OK) {
        row_release(&rd->row);
        rd->done = true;
        return ret;
    }
    rd->at = pos;
    rd->at_len = end - pos;
    rd->n++;
    rd->pos = end;
    if (rd->consumed != NULL) {
        rd->consumed(rd->consumed_arg, end);
    }
    *row = &rd->row;
    return IDS_OK;
}

enum ids_err reconnect_plan_row_at(struct reconnect_plan_reader *rd, size_t at, size_t len,
                                   const struct reconnect_row **row, struct ids_error *err)
{
    json_t *o;
    json_error_t jerr;
    size_t end;
    enum ids_err ret;

    *row = NULL;
    row_release(&rd->row);
    if (rd->mem != NULL) {
        if (at >= rd->mem->nr) {
            return ids_error_set(err, IDS_EINTERNAL, "reconnect plan: no row %zu", at + 1);
        }
        *row = &rd->mem->v[at];
        return IDS_OK;
    }
    if (at < rd->rows || at >= rd->rows_end || len > rd->rows_end - at) {
        return ids_error_set(err, IDS_EINTERNAL, "reconnect plan: no row at byte %zu", at);
    }
    if (rd->fetch != NULL) {
        /* the caller reads the bytes (from the file, not its mapping) */
        char *buf = xmalloc(len ? len : 1);

        ret = rd->fetch(rd->consumed_arg, at, len, buf, err);
        o = ret == IDS_OK ? json_loadb(buf, len, 0, &jerr) : NULL;
        free(buf);
        if (ret != IDS_OK) {
            return ret;
        }
        if (o == NULL) {
            return ids_error_set(err, IDS_EINPUT,
                                 "the plan file changed while it was applied (row at byte %zu: "
                                 "%s)",
                                 at, jerr.text);
        }
    } else {
        o = value_at(rd->text, rd->rows_end, at, &end, "row", err);
        if (o == NULL) {
            return IDS_EINPUT;
        }
    }
    ret = row_from_json(o, 0, &rd->row, err);
    json_decref(o);
    if (ret != IDS_OK) {
        row_release(&rd->row);
        return ret;
    }
    *row = &rd->row;
    return IDS_OK;
}

void reconnect_plan_reader_release(struct reconnect_plan_reader *rd)
{
    row_release(&rd->row);
    memset(rd, 0, sizeof(*rd));
    rd->done = true;
}

enum ids_err reconnect_plan_from_json(const char *text, size_t len, struct reconnect_plan *out,
                                      struct ids_error *err)
{
    struct reconnect_plan_reader rd;
    const struct reconnect_row *row;
    enum ids_err ret;

    memset(&rd, 0, sizeof(rd));
    ret = reconnect_plan_open(&rd, text, len, out, err);

    while (ret == IDS_OK && (ret = reconnect_plan_next(&rd, &row, err)) == IDS_OK) {
        struct reconnect_row *r = plan_add(out);

        *r = *row; /* taken over */
        memset(&rd.row, 0, sizeof(rd.row));
        out->totals[r->action]++;
    }
    reconnect_plan_reader_release(&rd);
    return ret == IDS_DONE ? IDS_OK : ret;
}
/* ---- apply ------------------------------------------------------------------------ */

/* The key that pairs a plan row with the row of the same object planned
 * again: the source and its new anchor (1), the metaverse object and the
 * target type (2). */
static void row_key(struct strbuf *key, const struct reconnect_row *r)
{
    strbuf_reset(key);
    strbuf_addf(key, "%d\x1f%s\x1f", r->situation, r->connector ? r->connector : "");
    if (r->situation == 1) {
        strbuf_addstr(key, r->anchor ? r->anchor : "");
    } else {
        strbuf_addf(key, "%" PRId64 "\x1f%s", r->mv_id, r->type ? r->type : "");
    }
}

/* The row of `now` with this key, or NULL. */
static const struct reconnect_row *row_by_key(const struct reconnect_plan *now,
                                              const struct kidx *where, const char *key,
                                              size_t *index)
{
    const struct kent *e = kidx_find(where, key);

    if (e == NULL || e->ids.nr == 0) {
        return NULL;
    }
    *index = (size_t)e->ids.v[0];
    return &now->v[*index];
}

static void index_rows(const struct reconnect_plan *now, struct kidx *where)
{
    struct strbuf key = STRBUF_INIT;
    size_t i;

    for (i = 0; i < now->nr; i++) {
        row_key(&key, &now->v[i]);
        kidx_add(where, key.buf, (int64_t)i);
    }
    strbuf_release(&key);
}

/* ---- what the apply needs of a plan ---------------------------------------------- */

void reconnect_picks_release(struct reconnect_picks *pk)
{
    size_t i;

    for (i = 0; i < pk->n; i++) {
        free(pk->v[i].key);
    }
    free(pk->v);
    memset(pk, 0, sizeof(*pk));
}

enum ids_err reconnect_plan_scan(struct reconnect_plan_reader *rd, struct reconnect_picks *pk,
                                 struct ids_error *err)
{
    struct strbuf key = STRBUF_INIT;
    const struct reconnect_row *row;
    enum ids_err ret;

    while ((ret = reconnect_plan_next(rd, &row, err)) == IDS_OK) {
        struct reconnect_pick *k;

        pk->totals[row->action]++;
        pk->rows++;
        if (row->action != RC_REANCHOR) {
            continue;
        }
        ALLOC_GROW(pk->v, pk->n + 1, pk->alloc);
        k = &pk->v[pk->n++];
        row_key(&key, row);
        k->key = xstrdup(key.buf);
        k->at = rd->at;
        k->len = rd->at_len;
        k->mv_id = row->mv_id;
        k->cs_id = row->cs_id;
        k->situation = row->situation;
        memcpy(k->fingerprint, row->fingerprint, sizeof(k->fingerprint));
    }
    strbuf_release(&key);
    return ret == IDS_DONE ? IDS_OK : ret;
}

/* Delete MV object mv_id, a projection of CS object keep (now linked
 * elsewhere), with its target objects that were never exported. */
static enum ids_err drop_projection(struct engine *eng, struct erun *r, int64_t mv_id, int64_t keep,
                                    struct ids_error *err)
{
    enum ids_err ret;
    int64_t ids[64];
    size_t n = 0;
    size_t i;

    ret = store_cs_links(eng->store, mv_id, ids, ARRAY_SIZE(ids), &n, err);
    if (ret == IDS_ENOTFOUND) {
        ret = IDS_OK;
        n = 0;
    }
    for (i = 0; ret == IDS_OK && i < n && i < ARRAY_SIZE(ids); i++) {
        struct cs_object *o = NULL;

        if (ids[i] == keep) {
            continue;
        }
        ret = store_cs_get(eng->store, ids[i], &o, err);
        if (ret == IDS_OK && (o->anchor != NULL || o->export_state == CS_EXPORT_INFLIGHT)) {
            ret = ids_error_set(err, IDS_EINTERNAL,
                                "metaverse object %" PRId64 " reached a target meanwhile", mv_id);
        } else if (ret == IDS_OK) {
            ret = store_cs_delete(eng->store, o->id, err); /* a create never sent */
        }
        cs_object_free(o);
    }
    if (ret == IDS_OK) {
        ret = store_ref_clear(eng->store, 0, mv_id, err);
    }
    if (ret == IDS_OK) {
        ret = store_mv_delete(eng->store, mv_id, err);
    }
    if (ret == IDS_ENOTFOUND) {
        ret = IDS_OK;
    }
    if (ret == IDS_OK) {
        r->rec.counters.mv_deleted++;
    }
    return ret;
}

/* Re-anchor: the new object `e` (taken over) replaces the vanished one. */
static enum ids_err apply_source_row(struct engine *eng, struct erun *r,
                                     const struct reconnect_row *row, struct entry *e,
                                     struct ids_error *err)
{
    enum ids_err ret;
    struct econn *ec = engine_conn(eng, row->connector);
    struct cs_object *cs = NULL;
    struct keyset ks;
    const struct store_keys *keys = NULL;

    keyset_init(&ks);
    if (ec == NULL || e == NULL) {
        ret = ids_error_set(err, IDS_EINTERNAL, "reconnect: object %s was not kept for apply",
                            row->anchor ? row->anchor : "?");
        goto done;
    }
    /* drop the vanished object first: the new one often has its DN */
    ret = store_cs_delete(eng->store, row->cs_id, err);
    if (ret != IDS_OK) {
        goto done;
    }
    r->rec.counters.disconnected++;
    ret = store_cs_get_by_anchor(eng->store, ec->id, row->anchor, &cs, err);
    if (ret == IDS_ENOTFOUND) {
        cs = xcalloc(1, sizeof(*cs));
        cs->connector = ec->id;
        cs->import_state = CS_IMPORT_ADD;
        ret = IDS_OK;
    } else if (ret == IDS_OK) {
        entry_free(cs->entry);
        cs->entry = NULL;
        cs->import_state = cs->import_state == CS_IMPORT_ADD ? CS_IMPORT_ADD : CS_IMPORT_UPDATE;
    } else {
        goto done;
    }
    free(cs->type);
    free(cs->anchor);
    free(cs->dn);
    cs->type = xstrdup_or_null(e->type);
    cs->anchor = xstrdup(e->anchor);
    cs->dn = xstrdup_or_null(e->dn);
    cs->entry = e; /* decoded for this row alone */
    e = NULL;
    cs->hash = entry_hash(cs->entry);
    cs->mv_id = row->mv_id;
    cs->flags &= ~CS_OUT_OF_SCOPE;
    if (ec->keys.nr > 0) {
        keyset_build(&ks, &ec->keys, cs->entry);
        keys = &ks.keys;
    }
    ret = store_cs_put(eng->store, cs, keys, err);
    if (ret == IDS_OK) {
        r->rec.counters.joined++;
    }
    if (ret == IDS_OK && row->drop_mv != 0) {
        ret = drop_projection(eng, r, row->drop_mv, cs->id, err);
    }
done:
    keyset_release(&ks);
    cs_object_free(cs);
    entry_free(e);
    return ret;
}

static enum ids_err apply_target_row(struct engine *eng, struct erun *r,
                                     const struct reconnect_row *row, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct cs_object *cs = NULL;

    if (row->drop_cs != 0) {
        ret = store_cs_delete(eng->store, row->drop_cs, err);
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
        }
        if (ret != IDS_OK) {
            return ret;
        }
    }
    ret = store_cs_get(eng->store, row->cs_id, &cs, err);
    if (ret != IDS_OK) {
        return ret;
    }
    cs->mv_id = row->mv_id;
    cs->flags &= ~(CS_DISABLED | CS_LEAVER_MOVE);
    /* staged: the next sync runs the outbound flows of its metaverse object
     * and writes the new anchor into the carrier */
    if (cs->import_state == CS_IMPORT_NONE) {
        cs->import_state = CS_IMPORT_UPDATE;
    }
    ret = store_cs_put(eng->store, cs, NULL, err);
    if (ret == IDS_OK) {
        r->rec.counters.joined++;
    }
    cs_object_free(cs);
    return ret;
}

enum ids_err reconnect_apply(struct engine *eng, const struct reconnect_plan *plan,
                             struct run_record *run, struct ids_error *err)
{
    struct reconnect_plan_reader rd;
    enum ids_err ret;

    struct reconnect_picks pk;

    memset(&rd, 0, sizeof(rd));
    memset(&pk, 0, sizeof(pk));
    rd.mem = plan;
    ret = reconnect_plan_scan(&rd, &pk, err);
    if (ret == IDS_OK) {
        ret = reconnect_apply_picks(eng, plan, &pk, &rd, run, err);
    }
    reconnect_picks_release(&pk);
    reconnect_plan_reader_release(&rd);
    return ret;
}

enum ids_err reconnect_apply_picks(struct engine *eng, const struct reconnect_plan *plan,
                                   const struct reconnect_picks *pk,
                                   struct reconnect_plan_reader *rd, struct run_record *run,
                                   struct ids_error *err)
{
    enum ids_err ret;
    struct erun r;
    struct reconnect_opts o;
    struct reconnect_plan now;
    struct kept kept;
    struct kidx where;
    struct i64vec todo = {0};
    struct strbuf first = STRBUF_INIT;
    struct strvec sources = STRVEC_INIT;
    long mismatches = 0;
    long done_already = 0;
    bool in_tx = false;
    struct run_counters before;
    size_t i;

    memset(&kept, 0, sizeof(kept));
    memset(&before, 0, sizeof(before));
    strbuf_init(&kept.sb, 0);
    memset(&where, 0, sizeof(where));
    memset(&o, 0, sizeof(o));
    reconnect_plan_init(&now);
    ret = erun_start(eng, &r, "reconnect", plan->connector, err);
    if (ret != IDS_OK) {
        return erun_finish(&r, ret, err, run);
    }
    if (plan->store != NULL && eng->cfg->store != NULL && strcmp(plan->store, eng->cfg->store)) {
        ret = ids_error_set(err, IDS_EREJECTED,
                            "the plan was made for store %s, this configuration uses %s; "
                            "nothing was changed",
                            plan->store, eng->cfg->store);
        goto done;
    }
    o.connector = plan->connector;
    o.object = plan->object;
    o.to = plan->to;
    strvec_init(&o.by);
    for (i = 0; i < plan->by.nr; i++) {
        strvec_push(&o.by, plan->by.v[i]);
    }
    ret = plan_make(eng, &o, &now, &kept, err);
    strvec_clear(&o.by);
    if (ret != IDS_OK) {
        goto done;
    }
    r.rec.counters.read = now.read;
    index_rows(&now, &where);
    /* every re-anchor row of the plan is compared before anything changes */
    for (i = 0; i < pk->n; i++) {
        const struct reconnect_pick *k = &pk->v[i];
        const struct reconnect_row *pr = NULL;
        const struct reconnect_row *nr;
        size_t j = 0;

        nr = row_by_key(&now, &where, k->key, &j);
        if (nr != NULL && nr->action == RC_REANCHOR &&
            strcmp(nr->fingerprint, k->fingerprint) == 0) {
            i64vec_push(&todo, (int64_t)j);
            continue;
        }
        if (nr != NULL && nr->action == RC_ALREADY_LINKED && nr->mv_id == k->mv_id &&
            (k->situation == 1 || nr->cs_id == k->cs_id)) {
            done_already++;
            continue;
        }
        mismatches++;
        {
            struct strbuf why = STRBUF_INIT;

            if (nr == NULL) {
                strbuf_addstr(&why, "the object is not there any more");
            } else if (nr->action != RC_REANCHOR) {
                strbuf_addf(&why, "it is now %s%s%s", reconnect_action_name(nr->action),
                            nr->note ? ": " : "", nr->note ? nr->note : "");
            } else {
                strbuf_addstr(&why, "the object, its metaverse object or the objects linked to "
                                    "it changed since the plan was made");
            }
            /* the plan's row, read again to name it (read once already) */
            ret = reconnect_plan_row_at(rd, k->at, k->len, &pr, err);
            if (ret != IDS_OK) {
                strbuf_release(&why);
                goto done;
            }
            erun_error(&r, pr->connector, pr->situation == 1 ? pr->anchor : pr->cs_anchor,
                       pr->situation == 1 ? pr->dn : pr->cs_dn, NULL, "plan-mismatch", pr->cs_id,
                       pr->mv_id, "re-anchor of %s (%s): %s",
                       pr->dn ? pr->dn : (pr->anchor ? pr->anchor : "?"),
                       pr->situation == 1 ? "rebuilt source" : "target", why.buf);
            if (mismatches <= MISMATCH_LISTED) {
                strbuf_addf(&first, "%s%s: %s", first.len ? "; " : "",
                            pr->dn ? pr->dn : (pr->anchor ? pr->anchor : "?"), why.buf);
            }
            strbuf_release(&why);
        }
    }
    if (mismatches > 0) {
        /* erun_finish puts err's text into the run's message */
        ret = ids_error_set(err, IDS_EREJECTED,
                            "Refused: the plan no longer matches %ld object%s (%s%s). Nothing was "
                            "changed. Make a new plan with `idsync reconnect%s%s --by ... --plan "
                            "FILE`.",
                            mismatches, mismatches == 1 ? "" : "s", first.buf,
                            mismatches > MISMATCH_LISTED ? "; ..." : "", plan->connector ? " " : "",
                            plan->connector ? plan->connector : "");
        goto done;
    }
    ret = store_begin(eng->store, err);
    if (ret != IDS_OK) {
        goto done;
    }
    in_tx = true;
    before = r.rec.counters;
    progress_set_step(r.prog, "reconnect: applying");
    progress_set_total(r.prog, (long)todo.nr);
    for (i = 0; i < todo.nr && ret == IDS_OK; i++) {
        size_t j = (size_t)todo.v[i];
        const struct reconnect_row *row = &now.v[j];

        progress_update(r.prog, (long)i + 1);
        if (row->situation == 1) {
            ret = apply_source_row(eng, &r, row, kept_get(&kept, j), err);
            if (strvec_find(&sources, row->connector, false) < 0) {
                strvec_push(&sources, row->connector);
            }
        } else {
            ret = apply_target_row(eng, &r, row, err);
        }
    }
    /* the next import of a re-anchored source is a full one */
    for (i = 0; i < sources.nr && ret == IDS_OK; i++) {
        struct econn *ec = engine_conn(eng, sources.v[i]);

        ret = store_watermark_set(eng->store, ec->id, NULL, err);
    }
    if (ret != IDS_OK) {
        goto done;
    }
    ret = store_commit(eng->store, err);
    in_tx = ret != IDS_OK; /* a failed commit is rolled back below */
    if (ret != IDS_OK) {
        goto done;
    }
    r.rec.counters.unchanged = done_already;
    {
        long left = pk->totals[RC_AMBIGUOUS] + pk->totals[RC_TYPE_MISMATCH];

        erun_message(&r, "Re-anchored %zu object%s (%ld done already).", todo.nr,
                     todo.nr == 1 ? "" : "s", done_already);
        if (left > 0) {
            erun_message(&r,
                         "%ld ambiguous or type-mismatched object%s left untouched: resolve "
                         "them one by one with `idsync reconnect CONNECTOR --object ANCHOR --to "
                         "ID` before the next cycle.",
                         left, left == 1 ? " was" : "s were");
        }
        if (todo.nr > 0) {
            erun_message(&r, "The next cycle writes the new anchors into the targets' anchor "
                             "carriers (no create, no delete); `idsync cycle --dry-run` shows it.");
        }
    }
done:
    if (in_tx) {
        store_rollback(eng->store);
        erun_undo_counters(&r, &before,
                           "Nothing was re-anchored: the store is as it was before this run.");
    }
    kidx_release(&where);
    kept_release(&kept);
    i64vec_release(&todo);
    strbuf_release(&first);
    strvec_clear(&sources);
    reconnect_plan_release(&now);
    return erun_finish(&r, ret, err, run);
}
