/* memconn.c - the in-memory connected system of the engine tests. */
#include "memconn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "util/mem.h"
#include "util/banned.h"

struct memlog {
    long seq;
    enum change_op op; /* ADD (upsert of the current object), MODIFY, DELETE */
    char *anchor;
    struct change *mod; /* MODIFY */
};

struct memres {
    uint64_t tag;
    enum ids_err code;
    char *msg;
    char *anchor;
    char *dn;
    bool retryable;
};

struct memconn {
    struct connector base; /* MUST be first */
    struct memdir *d;
};

struct memcursor {
    struct memdir *d;
    bool delta;
    size_t i;
    long from_seq;
    long end_seq;
};

static struct memdir **dirs;
static size_t ndirs;
static size_t adirs;

static void log_add(struct memdir *d, enum change_op op, const char *anchor, struct change *mod)
{
    struct memlog *l;

    ALLOC_GROW(d->log, d->nlog + 1, d->alog);
    l = &d->log[d->nlog++];
    l->seq = ++d->seq;
    l->op = op;
    l->anchor = xstrdup(anchor);
    l->mod = mod;
}

static void res_clear(struct memdir *d)
{
    size_t i;

    for (i = 0; i < d->nres; i++) {
        free(d->res[i].msg);
        free(d->res[i].anchor);
        free(d->res[i].dn);
    }
    d->nres = 0;
    d->nextres = 0;
}

static void memdir_free(struct memdir *d)
{
    size_t i;

    for (i = 0; i < d->nobjs; i++) {
        entry_free(d->objs[i]);
    }
    for (i = 0; i < d->nlog; i++) {
        free(d->log[i].anchor);
        change_free(d->log[i].mod);
    }
    memdir_clear_sent(d);
    res_clear(d);
    free(d->sent);
    free(d->res);
    free(d->objs);
    free(d->log);
    free(d->name);
    free(d->fail_dn);
    free(d->fail_value);
    free(d->drop_attr);
    strvec_clear(&d->bad);
    free(d);
}

void memconn_reset(void)
{
    size_t i;

    for (i = 0; i < ndirs; i++) {
        memdir_free(dirs[i]);
    }
    free(dirs);
    dirs = NULL;
    ndirs = 0;
    adirs = 0;
}

struct memdir *memdir_get(const char *name)
{
    struct memdir *d;
    size_t i;

    for (i = 0; i < ndirs; i++) {
        if (strcmp(dirs[i]->name, name) == 0) {
            return dirs[i];
        }
    }
    d = xcalloc(1, sizeof(*d));
    d->name = xstrdup(name);
    strvec_init(&d->bad);
    ALLOC_GROW(dirs, ndirs + 1, adirs);
    dirs[ndirs++] = d;
    return d;
}

static long find_index(struct memdir *d, const char *anchor)
{
    size_t i;

    for (i = 0; i < d->nobjs; i++) {
        if (d->objs[i]->anchor != NULL && strcmp(d->objs[i]->anchor, anchor) == 0) {
            return (long)i;
        }
    }
    return -1;
}

struct entry *memdir_find(struct memdir *d, const char *anchor)
{
    long i = find_index(d, anchor);

    return i < 0 ? NULL : d->objs[i];
}

struct entry *memdir_find_dn(struct memdir *d, const char *dn)
{
    size_t i;

    for (i = 0; i < d->nobjs; i++) {
        if (d->objs[i]->dn != NULL && strcasecmp(d->objs[i]->dn, dn) == 0) {
            return d->objs[i];
        }
    }
    return NULL;
}

void memdir_put(struct memdir *d, struct entry *e)
{
    long i = find_index(d, e->anchor);

    if (i >= 0) {
        entry_free(d->objs[i]);
        d->objs[i] = e;
    } else {
        ALLOC_GROW(d->objs, d->nobjs + 1, d->aobjs);
        d->objs[d->nobjs++] = e;
    }
    log_add(d, CHANGE_ADD, e->anchor, NULL);
}

void memdir_add(struct memdir *d, const char *type, const char *anchor, const char *dn, ...)
{
    struct entry *e = entry_new(type, anchor, dn);
    va_list ap;
    const char *kv;

    va_start(ap, dn);
    while ((kv = va_arg(ap, const char *)) != NULL) {
        const char *eq = strchr(kv, '=');
        char *name;

        if (eq == NULL) {
            continue;
        }
        name = xmemdup(kv, (size_t)(eq - kv));
        entry_add_str(e, name, eq + 1);
        free(name);
    }
    va_end(ap);
    memdir_put(d, e);
}

void memdir_remove(struct memdir *d, const char *anchor)
{
    long i = find_index(d, anchor);

    if (i < 0) {
        return;
    }
    entry_free(d->objs[i]);
    memmove(&d->objs[i], &d->objs[i + 1], (d->nobjs - (size_t)i - 1) * sizeof(*d->objs));
    d->nobjs--;
    log_add(d, CHANGE_DELETE, anchor, NULL);
}

void memdir_modify(struct memdir *d, const struct change *ch)
{
    struct entry *e = memdir_find(d, ch->anchor);

    if (e != NULL) {
        change_apply(ch, e);
    }
    log_add(d, CHANGE_MODIFY, ch->anchor, change_dup(ch));
}

size_t memdir_count_sent(struct memdir *d, enum change_op op)
{
    size_t i;
    size_t n = 0;

    for (i = 0; i < d->nsent; i++) {
        if (d->sent[i]->op == op) {
            n++;
        }
    }
    return n;
}

void memdir_clear_sent(struct memdir *d)
{
    size_t i;

    for (i = 0; i < d->nsent; i++) {
        change_free(d->sent[i]);
    }
    d->nsent = 0;
}

/* ---- ops ------------------------------------------------------------------ */

static enum ids_err mc_create(const struct connector_config *cfg, struct connector **out,
                              struct ids_error *err)
{
    struct memconn *mc = xcalloc(1, sizeof(*mc));

    (void)err;
    mc->base.cfg = cfg;
    mc->d = memdir_get(cfg->name);
    *out = &mc->base;
    return IDS_OK;
}

static enum ids_err mc_open(struct connector *c, struct ids_error *err)
{
    (void)err;
    ((struct memconn *)c)->d->opens++;
    return IDS_OK;
}

static void mc_close(struct connector *c)
{
    free(c);
}

static enum ids_err mc_read_full(struct connector *c, struct connector_cursor **out,
                                 struct ids_error *err)
{
    struct memcursor *cur = xcalloc(1, sizeof(*cur));

    (void)err;
    cur->d = ((struct memconn *)c)->d;
    cur->end_seq = cur->d->seq;
    *out = (struct connector_cursor *)cur;
    return IDS_OK;
}

static enum ids_err mc_read_changes(struct connector *c, const char *watermark,
                                    struct connector_cursor **out, struct ids_error *err)
{
    struct memdir *d = ((struct memconn *)c)->d;
    struct memcursor *cur;

    if (d->full_required || watermark == NULL) {
        return ids_error_set(err, IDS_EFULLREQUIRED, "memconn: the change log was reset");
    }
    cur = xcalloc(1, sizeof(*cur));
    cur->d = d;
    cur->delta = true;
    cur->from_seq = strtol(watermark, NULL, 10);
    cur->end_seq = d->seq;
    *out = (struct connector_cursor *)cur;
    return IDS_OK;
}

static enum ids_err mc_next(struct connector_cursor *c, struct read_item *item,
                            struct ids_error *err)
{
    struct memcursor *cur = (struct memcursor *)c;
    struct memdir *d = cur->d;

    memset(item, 0, sizeof(*item));
    if (!cur->delta) {
        struct entry *e;

        if (cur->i >= d->nobjs) {
            return IDS_DONE;
        }
        e = d->objs[cur->i++];
        if (strvec_find(&d->bad, e->anchor, false) >= 0) {
            return ids_error_set(err, IDS_EINPUT, "memconn %s: object %s: malformed value", d->name,
                                 e->anchor);
        }
        item->op = CHANGE_ADD;
        item->entry = entry_dup(e);
        return IDS_OK;
    }
    while (cur->i < d->nlog) {
        struct memlog *l = &d->log[cur->i++];
        struct entry *e;

        if (l->seq <= cur->from_seq || l->seq > cur->end_seq) {
            continue;
        }
        switch (l->op) {
        case CHANGE_ADD:
            e = memdir_find(d, l->anchor);
            if (e == NULL) {
                continue;
            }
            item->op = CHANGE_ADD;
            item->entry = entry_dup(e);
            return IDS_OK;
        case CHANGE_MODIFY:
            item->op = CHANGE_MODIFY;
            item->change = change_dup(l->mod);
            return IDS_OK;
        case CHANGE_DELETE:
            item->op = CHANGE_DELETE;
            item->change = change_new(CHANGE_DELETE, NULL, l->anchor, NULL);
            return IDS_OK;
        case CHANGE_NONE:
            break;
        }
    }
    return IDS_DONE;
}

static enum ids_err mc_watermark(struct connector_cursor *c, struct strbuf *out,
                                 struct ids_error *err)
{
    (void)err;
    strbuf_addf(out, "%ld", ((struct memcursor *)c)->end_seq);
    return IDS_OK;
}

static void mc_cursor_free(struct connector_cursor *c)
{
    free(c);
}

static enum ids_err mc_export_begin(struct connector *c, struct ids_error *err)
{
    struct memdir *d = ((struct memconn *)c)->d;

    (void)err;
    res_clear(d);
    d->ended = false;
    d->sessions++;
    return IDS_OK;
}

static enum ids_err mc_export_end(struct connector *c, struct ids_error *err)
{
    (void)err;
    ((struct memconn *)c)->d->ended = true;
    return IDS_OK;
}

static struct memres *res_add(struct memdir *d, uint64_t tag, enum ids_err code, const char *msg)
{
    struct memres *r;

    ALLOC_GROW(d->res, d->nres + 1, d->ares);
    r = &d->res[d->nres++];
    memset(r, 0, sizeof(*r));
    r->tag = tag;
    r->code = code;
    r->msg = xstrdup_or_null(msg);
    return r;
}

static void drop_attr(struct memdir *d, struct entry *e)
{
    if (d->drop_attr != NULL) {
        entry_remove_attr(e, d->drop_attr);
    }
}

static enum ids_err mc_submit(struct connector *c, const struct change *ch, uint64_t tag,
                              struct ids_error *err)
{
    struct memconn *mc = (struct memconn *)c;
    struct memdir *d = mc->d;
    struct memres *r;
    struct entry *e;
    char buf[32];

    (void)err;
    ALLOC_GROW(d->sent, d->nsent + 1, d->asent);
    d->sent[d->nsent++] = change_dup(ch);
    if (d->lose_after > 0 && (long)d->nsent > d->lose_after) {
        r = res_add(d, tag, IDS_EUNREACHABLE, "memconn: connection lost");
        r->retryable = true;
        return IDS_OK;
    }
    if (d->fail_dn != NULL && ch->dn != NULL && strcasecmp(ch->dn, d->fail_dn) == 0) {
        res_add(d, tag, IDS_EREJECTED, "memconn: rejected by the test");
        return IDS_OK;
    }
    if (d->fail_value != NULL) {
        size_t i, k;

        for (i = 0; i < ch->nmods; i++) {
            for (k = 0; k < ch->mods[i].attr.nvals; k++) {
                const struct value *v = &ch->mods[i].attr.vals[k];

                if (v->len == strlen(d->fail_value) &&
                    memcmp(v->data, d->fail_value, v->len) == 0) {
                    res_add(d, tag, IDS_EREJECTED, "memconn: rejected by the test");
                    return IDS_OK;
                }
            }
        }
    }
    switch (ch->op) {
    case CHANGE_ADD:
        snprintf(buf, sizeof(buf), "gen-%ld", ++d->next_anchor);
        e = entry_new(ch->type, buf, ch->dn);
        change_apply(ch, e);
        drop_attr(d, e);
        r = res_add(d, tag, IDS_OK, NULL);
        r->anchor = xstrdup(buf);
        r->dn = xstrdup_or_null(ch->dn);
        memdir_put(d, e);
        break;
    case CHANGE_MODIFY:
        e = ch->anchor ? memdir_find(d, ch->anchor) : NULL;
        if (e == NULL) {
            res_add(d, tag, IDS_ENOTFOUND, "memconn: no such object");
            break;
        }
        {
            struct change *copy = change_dup(ch);
            size_t i;

            if (d->drop_attr != NULL) {
                for (i = 0; i < copy->nmods; i++) {
                    if (strcasecmp(copy->mods[i].attr.name, d->drop_attr) == 0) {
                        copy->mods[i].op = MOD_ADD;
                        attr_release(&copy->mods[i].attr);
                        copy->mods[i].attr.name = xstrdup("x-dropped");
                    }
                }
            }
            change_apply(copy, e);
            entry_remove_attr(e, "x-dropped");
            change_free(copy);
        }
        log_add(d, CHANGE_ADD, e->anchor, NULL);
        r = res_add(d, tag, IDS_OK, NULL);
        r->dn = xstrdup_or_null(ch->new_dn);
        break;
    case CHANGE_DELETE:
        if (ch->anchor == NULL || memdir_find(d, ch->anchor) == NULL) {
            res_add(d, tag, IDS_ENOTFOUND, "memconn: no such object");
            break;
        }
        memdir_remove(d, ch->anchor);
        res_add(d, tag, IDS_OK, NULL);
        break;
    case CHANGE_NONE:
        res_add(d, tag, IDS_OK, NULL);
        break;
    }
    return IDS_OK;
}

static enum ids_err mc_poll(struct connector *c, bool block, struct export_result *res,
                            struct ids_error *err)
{
    struct memdir *d = ((struct memconn *)c)->d;
    struct memres *r;

    (void)block;
    memset(res, 0, sizeof(*res));
    if (d->nextres >= d->nres) {
        return IDS_DONE;
    }
    if (d->late_results && !d->ended) {
        return IDS_EAGAIN; /* results come with export_end */
    }
    r = &d->res[d->nextres];
    if (r->code == IDS_EUNREACHABLE && !d->lost_reported) {
        d->lost_reported = true;
        return ids_error_set(err, IDS_EUNREACHABLE, "memconn %s: connection lost", d->name);
    }
    d->nextres++;
    res->tag = r->tag;
    res->code = r->code;
    res->retryable = r->retryable;
    if (r->msg != NULL) {
        ids_error_set(&res->err, r->code, "%s", r->msg);
    }
    res->anchor = r->anchor;
    res->dn = r->dn;
    r->anchor = NULL;
    r->dn = NULL;
    return IDS_OK;
}

static enum ids_err mc_lookup(struct connector *c, const char *type, const char *attr,
                              const char *value, struct entry **out, struct ids_error *err)
{
    struct memdir *d = ((struct memconn *)c)->d;
    size_t i;

    *out = NULL;
    for (i = 0; i < d->nobjs; i++) {
        const char *v = entry_first(d->objs[i], attr);

        if (v != NULL && strcmp(v, value) == 0 &&
            (type == NULL || d->objs[i]->type == NULL || strcasecmp(type, d->objs[i]->type) == 0)) {
            *out = entry_dup(d->objs[i]);
            return IDS_OK;
        }
    }
    return ids_error_set(err, IDS_ENOTFOUND, "memconn: no %s with %s=%s", type ? type : "object",
                         attr, value);
}

#define MEMCONN_OPS(caps_)                                                                         \
    {                                                                                              \
        .name = "null", .caps = (caps_), .create = mc_create, .open = mc_open, .close = mc_close,  \
        .read_full = mc_read_full, .read_changes = mc_read_changes, .cursor_next = mc_next,        \
        .cursor_watermark = mc_watermark, .cursor_free = mc_cursor_free,                           \
        .export_begin = mc_export_begin, .submit = mc_submit, .poll = mc_poll,                     \
        .export_end = mc_export_end, .lookup = mc_lookup,                                          \
    }

struct connector_ops memconn_dn_ops = MEMCONN_OPS(CONN_CAP_READ | CONN_CAP_WRITE | CONN_CAP_DELTA |
                                                  CONN_CAP_REF_BY_DN | CONN_CAP_RENAME);
struct connector_ops memconn_id_ops =
    MEMCONN_OPS(CONN_CAP_READ | CONN_CAP_WRITE | CONN_CAP_DELTA | CONN_CAP_ANCHOR_ON_ADD);
