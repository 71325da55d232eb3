/* run.c - the engine object, its connectors, run records and run errors,
 * the cycle and exit statuses. */
#include "engine/engine_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "expr/expr.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/banned.h"

/* ---- small containers ------------------------------------------------------ */

void i64vec_push(struct i64vec *vec, int64_t x)
{
    ALLOC_GROW(vec->v, vec->nr + 1, vec->alloc);
    vec->v[vec->nr++] = x;
}

void i64vec_release(struct i64vec *vec)
{
    free(vec->v);
    memset(vec, 0, sizeof(*vec));
}

int i64_cmp(const void *pa, const void *pb)
{
    int64_t a = *(const int64_t *)pa;
    int64_t b = *(const int64_t *)pb;

    return (a > b) - (a < b);
}

void i64vec_sort_unique(struct i64vec *vec)
{
    size_t i;
    size_t j = 0;

    if (vec->nr > 1) {
        qsort(vec->v, vec->nr, sizeof(*vec->v), i64_cmp);
    }
    for (i = 0; i < vec->nr; i++) {
        if (j == 0 || vec->v[j - 1] != vec->v[i]) {
            vec->v[j++] = vec->v[i];
        }
    }
    vec->nr = j;
}

void i64vec_intersect(struct i64vec *a, const struct i64vec *b)
{
    size_t i;
    size_t j = 0;
    size_t k = 0;

    for (i = 0; i < a->nr; i++) {
        while (j < b->nr && b->v[j] < a->v[i]) {
            j++;
        }
        if (j < b->nr && b->v[j] == a->v[i]) {
            a->v[k++] = a->v[i];
        }
    }
    a->nr = k;
}

size_t i64vec_find(const struct i64vec *vec, int64_t x)
{
    const int64_t *p = vec->nr > 0 ? bsearch(&x, vec->v, vec->nr, sizeof(*vec->v), i64_cmp) : NULL;

    return p != NULL ? (size_t)(p - vec->v) : SIZE_MAX;
}

void bitmap_set(struct bitmap *b, int64_t id)
{
    size_t w;

    if (id < 0) {
        return;
    }
    w = (size_t)id / 64;
    if (w >= b->nwords) {
        size_t n = b->nwords ? b->nwords : 64;

        while (n <= w) {
            n *= 2;
        }
        b->w = xreallocarray(b->w, n, sizeof(*b->w));
        memset(b->w + b->nwords, 0, (n - b->nwords) * sizeof(*b->w));
        b->nwords = n;
    }
    b->w[w] |= (uint64_t)1 << ((uint64_t)id % 64);
}

void bitmap_clear(struct bitmap *b, int64_t id)
{
    size_t w;

    if (id < 0) {
        return;
    }
    w = (size_t)id / 64;
    if (w < b->nwords) {
        b->w[w] &= ~((uint64_t)1 << ((uint64_t)id % 64));
    }
}

bool bitmap_test(const struct bitmap *b, int64_t id)
{
    size_t w;

    if (id < 0) {
        return false;
    }
    w = (size_t)id / 64;
    return w < b->nwords && (b->w[w] & ((uint64_t)1 << ((uint64_t)id % 64))) != 0;
}

void bitmap_release(struct bitmap *b)
{
    free(b->w);
    memset(b, 0, sizeof(*b));
}

void engine_mv_origin(struct engine *eng, const char *type, int64_t mv_id, struct strbuf *out)
{
    struct mv_object *m = NULL;
    const struct mvt_info *mi;
    struct strbuf anchor = STRBUF_INIT;
    struct strbuf dn = STRBUF_INIT;
    size_t j;

    if (type == NULL) {
        struct ids_error err = IDS_ERROR_INIT;

        if (mv_id == 0 || store_mv_get(eng->store, mv_id, &m, &err) != IDS_OK) {
            return;
        }
        type = m->type;
    }
    mi = engine_mvt(eng, type);
    for (j = 0; mi != NULL && j < mi->t->nfrom; j++) {
        struct econn *ec = engine_flow_conn(eng, &mi->t->from[j]);
        struct ids_error err = IDS_ERROR_INIT;
        int64_t id = 0;

        if (ec != NULL &&
            store_cs_ref_by_mv(eng->store, ec->id, mv_id, &id, &anchor, &dn, &err) == IDS_OK &&
            (anchor.len > 0 || dn.len > 0)) {
            strbuf_addf(out, " (from %s %s)", ec->cfg->name, anchor.len > 0 ? anchor.buf : dn.buf);
            break;
        }
    }
    strbuf_release(&anchor);
    strbuf_release(&dn);
    mv_object_free(m);
}

/* ---- engine ------------------------------------------------------------------ */

static void strvec_push_unique_lower(struct strvec *sv, const char *s)
{
    struct strbuf sb = STRBUF_INIT;

    strbuf_addstr(&sb, s);
    strbuf_tolower(&sb);
    if (strvec_find(sv, sb.buf, false) < 0) {
        strvec_push(sv, sb.buf);
    }
    strbuf_release(&sb);
}

static bool same_connector(const struct flow_config *f, const struct connector_config *cc)
{
    if (f->conn != NULL) {
        return f->conn == cc;
    }
    return f->connector != NULL && strcmp(f->connector, cc->name) == 0;
}

struct econn *engine_flow_conn(struct engine *eng, const struct flow_config *f)
{
    size_t i;

    for (i = 0; i < eng->nconns; i++) {
        if (same_connector(f, eng->conns[i].cfg)) {
            return &eng->conns[i];
        }
    }
    return NULL;
}

static void engine_derive(struct engine *eng)
{
    size_t i;
    size_t j;
    size_t k;
    size_t m;

    eng->nmvt = eng->cfg->nmv_types;
    eng->mvt = xcalloc(eng->nmvt ? eng->nmvt : 1, sizeof(*eng->mvt));
    for (i = 0; i < eng->nmvt; i++) {
        struct mvt_info *mi = &eng->mvt[i];
        struct mv_type_config *t = &eng->cfg->mv_types[i];

        mi->t = t;
        strvec_init(&mi->keys);
        strvec_init(&mi->ref_attrs);
        for (j = 0; j < t->nfrom; j++) {
            const struct flow_config *f = &t->from[j];
            struct econn *ec = engine_flow_conn(eng, f);

            if (ec != NULL) {
                ec->is_source = true;
            }
            for (k = 0; k < f->njoins; k++) {
                for (m = 0; m < f->joins[k].nitems; m++) {
                    strvec_push_unique_lower(&mi->keys, f->joins[k].items[m].attr);
                }
            }
            for (k = 0; k < f->nflows; k++) {
                if (flow_in_is_ref(f, &f->flows[k])) {
                    mi->in_refs = true;
                    strvec_push_unique_lower(&mi->ref_attrs, f->flows[k].attr);
                }
            }
        }
        for (j = 0; j < t->nto; j++) {
            const struct flow_config *f = &t->to[j];
            struct econn *ec = engine_flow_conn(eng, f);

            if (ec == NULL) {
                continue;
            }
            ec->is_target = true;
            for (k = 0; k < f->njoins; k++) {
                for (m = 0; m < f->joins[k].nitems; m++) {
                    strvec_push_unique_lower(&ec->keys, f->joins[k].items[m].attr);
                }
            }
            if (f->anchor_carrier != NULL) {
                strvec_push_unique_lower(&ec->keys, f->anchor_carrier);
            }
            for (k = 0; k < f->nflows; k++) {
                const struct rule_item *it = &f->flows[k];

                struct strbuf lower = STRBUF_INIT;

                strbuf_addstr(&lower, it->source ? it->source : "");
                strbuf_tolower(&lower);
                if (reference_attr(f->otype, it->attr) ||
                    (it->plain && strvec_find(&mi->ref_attrs, lower.buf, false) >= 0)) {
                    mi->out_refs = true;
                }
                strbuf_release(&lower);
            }
        }
    }
}

enum ids_err engine_new(struct config *cfg, struct store *store, const struct engine_opts *opts,
                        struct engine **out, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct engine *eng = xcalloc(1, sizeof(*eng));
    size_t i;

    *out = NULL;
    eng->cfg = cfg;
    eng->store = store;
    eng->state_dir = store_state_dir(store);
    if (opts != NULL) {
        eng->opts = *opts;
    }
    eng->nconns = cfg->nconnectors;
    eng->conns = xcalloc(eng->nconns ? eng->nconns : 1, sizeof(*eng->conns));
    for (i = 0; i < eng->nconns; i++) {
        struct econn *ec = &eng->conns[i];

        ec->cfg = &cfg->connectors[i];
        strvec_init(&ec->keys);
        ret = store_connector_id(store, ec->cfg->name, &ec->id, err);
        if (ret != IDS_OK) {
            goto done;
        }
    }
    engine_derive(eng);
    *out = eng;
    eng = NULL;
done:
    engine_free(eng);
    return ret;
}

void engine_free(struct engine *eng)
{
    size_t i;

    if (eng == NULL) {
        return;
    }
    for (i = 0; i < eng->nconns; i++) {
        connector_close(eng->conns[i].conn);
        strvec_clear(&eng->conns[i].keys);
    }
    for (i = 0; i < eng->nmvt; i++) {
        strvec_clear(&eng->mvt[i].keys);
        strvec_clear(&eng->mvt[i].ref_attrs);
    }
    free(eng->conns);
    free(eng->mvt);
    free(eng);
}

struct econn *engine_conn(struct engine *eng, const char *name)
{
    size_t i;

    for (i = 0; i < eng->nconns; i++) {
        if (strcmp(eng->conns[i].cfg->name, name) == 0) {
            return &eng->conns[i];
        }
    }
    return NULL;
}

struct econn *engine_conn_by_id(struct engine *eng, int64_t id)
{
    size_t i;

    for (i = 0; i < eng->nconns; i++) {
        if (eng->conns[i].id == id) {
            return &eng->conns[i];
        }
    }
    return NULL;
}

struct econn *engine_conn_by_cfg(struct engine *eng, const struct connector_config *cfg)
{
    size_t i;

    for (i = 0; i < eng->nconns; i++) {
        if (eng->conns[i].cfg == cfg) {
            return &eng->conns[i];
        }
    }
    return NULL;
}

unsigned econn_caps(const struct econn *ec)
{
    return ec->cfg->ops != NULL ? ec->cfg->ops->caps : 0;
}

enum ids_err engine_dn_holder(struct engine *eng, const struct econn *X, const char *dn,
                              int64_t self_cs, int64_t self_mv, struct cs_object **holder,
                              bool *deleting, struct ids_error *err)
{
    struct cs_brief b;
    struct cs_object *o = NULL;
    enum ids_err ret;

    *holder = NULL;
    if (deleting != NULL) {
        *deleting = false;
    }
    if (dn == NULL || !(econn_caps(X) & CONN_CAP_REF_BY_DN)) {
        return IDS_OK;
    }
    ret = self_cs != 0 ? store_cs_brief_by_dn_other(eng->store, X->id, dn, self_cs, &b, err)
                       : store_cs_brief_by_dn(eng->store, X->id, dn, &b, err);
    if (ret == IDS_ENOTFOUND) {
        return IDS_OK;
    }
    if (ret != IDS_OK) {
        return ret;
    }
    if (b.id == self_cs || b.import_state == CS_IMPORT_DELETE ||
        ((b.mv_id == 0 || b.mv_id == self_mv) && deleting == NULL)) {
        return IDS_OK; /* ours, one that is gone, or no other MV object's */
    }
    ret = store_cs_get(eng->store, b.id, &o, err);
    if (ret == IDS_ENOTFOUND) {
        return IDS_OK;
    }
    if (ret != IDS_OK) {
        return ret;
    }
    if (o->pending_export != NULL && o->pending_export->op == CHANGE_DELETE) {
        if (deleting != NULL) {
            *deleting = true; /* free once its delete is sent */
        }
    } else if (o->mv_id != 0 && o->mv_id != self_mv &&
               !(o->anchor == NULL && self_cs != 0 && o->id > self_cs)) {
        /* (two creates of one DN, staged by an older idsync: the first keeps it) */
        *holder = o;
        return IDS_OK;
    }
    cs_object_free(o);
    return IDS_OK;
}

enum ids_err engine_mv_referrers(struct engine *eng, int64_t mv, struct i64vec *out,
                                 struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    char key[32];
    int64_t small[64];
    size_t i;
    size_t j;
    size_t k;

    snprintf(key, sizeof(key), "%" PRId64, mv);
    for (i = 0; ret == IDS_OK && i < eng->nmvt; i++) {
        const struct mvt_info *mi = &eng->mvt[i];

        for (j = 0; ret == IDS_OK && j < mi->ref_attrs.nr; j++) {
            int64_t *ids = small;
            size_t max = ARRAY_SIZE(small);
            size_t n = 0;

            ret =
                store_mv_find(eng->store, mi->t->name, mi->ref_attrs.v[j], key, ids, max, &n, err);
            if (ret == IDS_OK && n > max) {
                max = n; /* named by many: all of them */
                ids = xcalloc(max, sizeof(*ids));
                ret = store_mv_find(eng->store, mi->t->name, mi->ref_attrs.v[j], key, ids, max, &n,
                                    err);
            }
            if (ret == IDS_ENOTFOUND) {
                ret = IDS_OK;
                n = 0;
            }
            for (k = 0; ret == IDS_OK && k < n && k < max; k++) {
                i64vec_push(out, ids[k]);
            }
            if (ids != small) {
                free(ids);
            }
        }
    }
    return ret;
}

enum ids_err engine_conn_open(struct engine *eng, struct econn *ec, struct ids_error *err)
{
    enum ids_err ret;
    struct connector *c = NULL;

    if (ec->conn != NULL) {
        return IDS_OK;
    }
    ret = connector_create(ec->cfg, &c, err);
    if (ret != IDS_OK) {
        return ret;
    }
    c->state_dir = eng->state_dir;
    c->stop = eng->opts.stop;
    ret = connector_open(c, err);
    if (ret != IDS_OK) {
        connector_close(c);
        return ret;
    }
    ec->conn = c;
    return IDS_OK;
}

struct mvt_info *engine_mvt(struct engine *eng, const char *type)
{
    size_t i;

    if (type == NULL) {
        return NULL;
    }
    for (i = 0; i < eng->nmvt; i++) {
        if (strcmp(eng->mvt[i].t->name, type) == 0) {
            return &eng->mvt[i];
        }
    }
    return NULL;
}

static bool same_type(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcasecmp(a, b) == 0;
}

const struct flow_config *engine_find_from(struct engine *eng, const struct econn *ec,
                                           const char *type, struct mvt_info **mi)
{
    size_t i;
    size_t j;

    for (i = 0; i < eng->nmvt; i++) {
        const struct mv_type_config *t = eng->mvt[i].t;

        for (j = 0; j < t->nfrom; j++) {
            if (same_connector(&t->from[j], ec->cfg) && same_type(t->from[j].object, type)) {
                if (mi != NULL) {
                    *mi = &eng->mvt[i];
                }
                return &t->from[j];
            }
        }
    }
    return NULL;
}

const struct flow_config *engine_find_to(struct engine *eng, const struct econn *ec,
                                         const char *type, struct mvt_info **mi)
{
    size_t i;
    size_t j;

    for (i = 0; i < eng->nmvt; i++) {
        const struct mv_type_config *t = eng->mvt[i].t;

        for (j = 0; j < t->nto; j++) {
            if (same_connector(&t->to[j], ec->cfg) && same_type(t->to[j].object, type)) {
                if (mi != NULL) {
                    *mi = &eng->mvt[i];
                }
                return &t->to[j];
            }
        }
    }
    return NULL;
}

/* ---- runs ------------------------------------------------------------------ */

static int64_t now_us(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

enum ids_err erun_start(struct engine *eng, struct erun *r, const char *step, const char *connector,
                        struct ids_error *err)
{
    enum ids_err ret = IDS_OK;

    memset(r, 0, sizeof(*r));
    r->eng = eng;
    r->record = true;
    strbuf_init(&r->msg, 0);
    r->rec.step = xstrdup(step);
    r->rec.connector = xstrdup_or_null(connector);
    r->rec.parent = eng->parent;
    r->rec.start_us = now_us();
    r->rec.status = RUN_RUNNING;
    r->rec.dry_run = eng->opts.dry_run;
    ret = store_run_start(eng->store, &r->rec, err);
    if (ret != IDS_OK) {
        ids_error_prefix(err, "cannot record the %s run", step);
    }
    r->prog = progress_start(eng->opts.progress, step, connector, -1);
    return ret;
}

void erun_message(struct erun *r, const char *fmt, ...)
{
    va_list ap;

    if (r->msg.len > 0) {
        strbuf_addch(&r->msg, ' ');
    }
    va_start(ap, fmt);
    strbuf_vaddf(&r->msg, fmt, ap);
    va_end(ap);
}

enum ids_err erun_finish(struct erun *r, enum ids_err ret, const struct ids_error *err,
                         struct run_record *out)
{
    struct ids_error ferr = IDS_ERROR_INIT;

    progress_end(r->prog);
    r->prog = NULL;
    switch (ret) {
    case IDS_OK:
        r->rec.status = r->rec.counters.errors > 0 ? RUN_COMPLETED_WITH_ERRORS : RUN_SUCCESS;
        break;
    case IDS_ETHRESHOLD:
        r->rec.status = RUN_STOPPED_THRESHOLD;
        break;
    case IDS_EERRLIMIT:
        r->rec.status = RUN_STOPPED_ERROR_LIMIT;
        erun_message(r, "Stopped after %ld errors (safety.max_errors is %ld); see `idsync errors`.",
                     r->rec.counters.errors, r->eng->cfg->safety.max_errors);
        break;
    default:
        r->rec.status = RUN_FAILED;
        if (err != NULL && err->msg[0] != '\0') {
            erun_message(r, "%s", err->msg);
        } else if (r->msg.len == 0) {
            /* (a cycle's message already holds its failed steps' messages) */
            erun_message(r, "%s", ids_err_str(ret));
        }
        if (r->undo_note != NULL) {
            erun_message(r, "%s", r->undo_note);
        }
        break;
    }
    r->rec.end_us = now_us();
    free(r->rec.message);
    r->rec.message = r->msg.len ? xstrdup(r->msg.buf) : NULL;
    strbuf_release(&r->msg);
    if (r->record && r->rec.id != 0 && store_run_finish(r->eng->store, &r->rec, &ferr) != IDS_OK) {
        log_error("run-finish", "run=%lld error=\"%s\"", (long long)r->rec.id, ferr.msg);
    }
    log_info("run", "id=%lld step=%s connector=%s status=%s errors=%ld", (long long)r->rec.id,
             r->rec.step, r->rec.connector ? r->rec.connector : "-", run_status_name(r->rec.status),
             r->rec.counters.errors);
    if (out != NULL) {
        run_record_release(out);
        *out = r->rec;
    } else {
        run_record_release(&r->rec);
    }
    memset(&r->rec, 0, sizeof(r->rec));
    return ret;
}

void erun_undo_counters(struct erun *r, const struct run_counters *before, const char *note)
{
    long read = r->rec.counters.read;
    long errors = r->rec.counters.errors;

    r->rec.counters = *before;
    r->rec.counters.read = read;
    r->rec.counters.errors = errors;
    r->undo_note = note;
}

static void json_str_field(struct strbuf *sb, const char *key, const char *v)
{
    strbuf_addf(sb, "\"%s\":", key);
    if (v == NULL) {
        strbuf_addstr(sb, "null");
    } else {
        strbuf_add_json_str(sb, v, strlen(v));
    }
}

void erun_error(struct erun *r, const char *connector, const char *anchor, const char *dn,
                const char *attr, const char *code, int64_t cs_id, int64_t mv_id, const char *fmt,
                ...)
{
    struct run_error e;
    struct strbuf msg = STRBUF_INIT;
    struct ids_error err = IDS_ERROR_INIT;
    va_list ap;
    long max = r->eng->cfg->safety.max_errors;

    va_start(ap, fmt);
    strbuf_vaddf(&msg, fmt, ap);
    va_end(ap);
    r->rec.counters.errors++;
    if (max > 0 && r->rec.counters.errors > max) {
        r->errlimit = true;
    }
    if (r->pv != NULL) {
        preview_add_sep(&r->pv->errors);
        strbuf_addch(&r->pv->errors, '{');
        json_str_field(&r->pv->errors, "code", code);
        strbuf_addch(&r->pv->errors, ',');
        json_str_field(&r->pv->errors, "connector", connector);
        strbuf_addch(&r->pv->errors, ',');
        json_str_field(&r->pv->errors, "attr", attr);
        strbuf_addch(&r->pv->errors, ',');
        json_str_field(&r->pv->errors, "message", msg.buf);
        strbuf_addch(&r->pv->errors, '}');
    }
    log_debug("run-error", "code=%s connector=%s anchor=\"%s\" dn=\"%s\"", code,
              connector ? connector : "-", anchor ? anchor : "", dn ? dn : "");
    if (r->record && r->rec.id != 0) {
        memset(&e, 0, sizeof(e));
        e.run = r->rec.id;
        e.connector = (char *)connector;
        e.anchor = (char *)anchor;
        e.dn = (char *)dn;
        e.attr = (char *)attr;
        e.code = (char *)code;
        e.message = msg.buf;
        e.cs_id = cs_id;
        e.mv_id = mv_id;
        e.time_us = now_us();
        if (store_run_add_error(r->eng->store, &e, &err) != IDS_OK) {
            /* the error is still counted; losing its text must not stop the run */
            log_error("run-error", "cannot record error: %s", err.msg);
        }
    }
    strbuf_release(&msg);
}

void erun_error_cs(struct erun *r, const struct econn *ec, const struct cs_object *o,
                   const char *attr, const char *code, const char *fmt, ...)
{
    struct strbuf msg = STRBUF_INIT;
    va_list ap;

    va_start(ap, fmt);
    strbuf_vaddf(&msg, fmt, ap);
    va_end(ap);
    erun_error(r, ec ? ec->cfg->name : NULL, o ? o->anchor : NULL, o ? o->dn : NULL, attr, code,
               o ? o->id : 0, o ? o->mv_id : 0, "%s", msg.buf);
    strbuf_release(&msg);
}

bool erun_must_stop(struct erun *r, enum ids_err *why)
{
    if (r->errlimit) {
        *why = IDS_EERRLIMIT;
        return true;
    }
    if (r->eng->opts.stop != NULL && *r->eng->opts.stop) {
        *why = IDS_EINTR;
        return true;
    }
    return false;
}

/* ---- cycle ------------------------------------------------------------------- */

static int status_rank(enum run_status s)
{
    switch (s) {
    case RUN_SUCCESS:
    case RUN_RUNNING:
        return 0;
    case RUN_COMPLETED_WITH_ERRORS:
        return 1;
    case RUN_STOPPED_THRESHOLD:
    case RUN_STOPPED_ERROR_LIMIT:
        return 2;
    case RUN_FAILED:
        return 3;
    }
    return 3;
}

struct cycle_state {
    int worst_rank;
    enum ids_err worst_ret;
    struct ids_error worst_err;
    struct run_counters sum;
};

static void cycle_note(struct cycle_state *cs, struct erun *cr, enum ids_err ret,
                       const struct run_record *child, const struct ids_error *err)
{
    size_t i;
    int rank = status_rank(child->status);

    for (i = 0; i < run_counter_count; i++) {
        *run_counter_ptr(&cs->sum, i) +=
            *run_counter_ptr((struct run_counters *)&child->counters, i);
    }
    if (ret != IDS_OK && rank < 2) {
        rank = 3; /* failed before its run was recorded */
    }
    if (child->step != NULL && child->status != RUN_SUCCESS) {
        erun_message(cr, "%s%s%s: %s%s%s", child->step, child->connector ? " " : "",
                     child->connector ? child->connector : "", run_status_name(child->status),
                     child->message ? ": " : ".", child->message ? child->message : "");
    } else if (child->step == NULL && ret != IDS_OK) {
        erun_message(cr, "%s", err->msg);
    }
    if (rank > cs->worst_rank) {
        cs->worst_rank = rank;
        cs->worst_ret = ret;
        cs->worst_err = *err;
    }
}

static bool stop_requested(struct engine *eng)
{
    return eng->opts.stop != NULL && *eng->opts.stop;
}

enum ids_err engine_cycle(struct engine *eng, bool full, struct run_record *run,
                          struct ids_error *err)
{
    enum ids_err ret;
    struct erun r;
    struct cycle_state cs;
    struct bitmap exported = {0};
    bool dry = eng->opts.dry_run;
    bool in_dry = false;
    size_t i;
    int64_t saved_parent = eng->parent;

    memset(&cs, 0, sizeof(cs));
    if (!dry && eng->cfg->run_history_seconds > 0) {
        /* run history kept for run_history: the oldest runs go first */
        struct ids_error perr = IDS_ERROR_INIT;
        long runs = 0;
        long errors = 0;

        if (store_runs_prune(eng->store,
                             now_us() - (int64_t)eng->cfg->run_history_seconds * 1000000, &runs,
                             &errors, &perr) != IDS_OK) {
            log_warn("history-prune", "error=\"%s\" (the runs stay; the next cycle tries again)",
                     perr.msg);
        } else if (runs > 0) {
            log_info("history-prune", "runs=%ld errors=%ld older-than=%lds", runs, errors,
                     eng->cfg->run_history_seconds);
        }
    }
    ret = erun_start(eng, &r, "cycle", NULL, err);
    if (ret != IDS_OK) {
        return erun_finish(&r, ret, err, run);
    }
    eng->parent = r.rec.id;
    if (dry) {
        ret = store_dry_run_begin(eng->store, err);
        if (ret != IDS_OK) {
            goto done;
        }
        in_dry = true;
    }
    /* 1. import every connector of the metaverse that can be read */
    for (i = 0; i < eng->nconns && !stop_requested(eng); i++) {
        struct econn *ec = &eng->conns[i];
        struct run_record child = {0};
        struct ids_error cerr = IDS_ERROR_INIT;
        enum ids_err cret;

        if (!(ec->is_source || ec->is_target) || !(econn_caps(ec) & CONN_CAP_READ)) {
            continue;
        }
        cret = engine_import(eng, ec->cfg->name, full, &child, &cerr);
        cycle_note(&cs, &r, cret, &child, &cerr);
        run_record_release(&child);
    }
    /* 2. sync */
    if (!stop_requested(eng)) {
        struct run_record child = {0};
        struct ids_error cerr = IDS_ERROR_INIT;
        enum ids_err cret = engine_sync(eng, full, &child, &cerr);

        cycle_note(&cs, &r, cret, &child, &cerr);
        run_record_release(&child);
    }
    if (dry) {
        /* 3'. report what the exports would do, then forget everything */
        for (i = 0; i < eng->nconns; i++) {
            struct econn *ec = &eng->conns[i];
            long n = 0;

            if (!ec->is_target || eng->opts.report == NULL) {
                continue;
            }
            ret = report_pending(eng, ec, eng->opts.report, &n, err);
            if (ret != IDS_OK) {
                goto done;
            }
        }
        store_dry_run_end(eng->store);
        in_dry = false;
        goto done;
    }
    /* 3. export every target with pending exports */
    for (i = 0; i < eng->nconns && !stop_requested(eng); i++) {
        struct econn *ec = &eng->conns[i];
        struct run_record child = {0};
        struct ids_error cerr = IDS_ERROR_INIT;
        enum ids_err cret;
        long n = 0;

        if (!ec->is_target || !(econn_caps(ec) & CONN_CAP_WRITE)) {
            continue;
        }
        ret = store_cs_count(eng->store, ec->id, STORE_SEL_PENDING_EXPORT, &n, err);
        if (ret != IDS_OK) {
            goto done;
        }
        if (n == 0) {
            continue;
        }
        cret = engine_export(eng, ec->cfg->name, &child, &cerr);
        if (child.counters.export_add + child.counters.export_update +
                child.counters.export_rename + child.counters.export_delete >
            0) {
            bitmap_set(&exported, (int64_t)i);
        }
        cycle_note(&cs, &r, cret, &child, &cerr);
        run_record_release(&child);
    }
    /* 4. confirming import of every exported-to connector that can be read,
     * and of every target whose scope changed (read in full now, after the
     * exports that may have moved its entries into the new scope) */
    for (i = 0; i < eng->nconns && !stop_requested(eng); i++) {
        struct econn *ec = &eng->conns[i];
        struct run_record child = {0};
        struct ids_error cerr = IDS_ERROR_INIT;
        enum ids_err cret;

        if (!(econn_caps(ec) & CONN_CAP_READ) ||
            !(bitmap_test(&exported, (int64_t)i) || engine_scope_waits(eng, ec))) {
            continue;
        }
        eng->confirming = true;
        cret = engine_import(eng, ec->cfg->name, false, &child, &cerr);
        eng->confirming = false;
        cycle_note(&cs, &r, cret, &child, &cerr);
        run_record_release(&child);
    }
    ret = IDS_OK;
done:
    if (in_dry) {
        store_dry_run_end(eng->store);
    }
    bitmap_release(&exported);
    eng->parent = saved_parent;
    r.rec.counters = cs.sum;
    if (ret == IDS_OK && stop_requested(eng)) {
        ret =
            ids_error_set(err, IDS_EINTR, "the cycle was interrupted; run it again to complete it");
    }
    if (ret == IDS_OK && cs.worst_ret != IDS_OK) {
        /* the children's messages (in the cycle message) say what happened */
        ret = cs.worst_ret;
        if (err != NULL) {
            *err = cs.worst_err;
        }
        if (ret != IDS_ETHRESHOLD && ret != IDS_EERRLIMIT) {
            struct ids_error none = IDS_ERROR_INIT;

            none.msg[0] = '\0';
            return erun_finish(&r, ret, r.msg.len ? &none : err, run);
        }
        return erun_finish(&r, ret, err, run);
    }
    return erun_finish(&r, ret, err, run);
}

int engine_exit_code(enum ids_err ret, const struct run_record *run)
{
    switch (ret) {
    case IDS_OK:
        if (run != NULL && (run->status == RUN_COMPLETED_WITH_ERRORS || run->counters.errors > 0)) {
            return 1;
        }
        return 0;
    case IDS_ETHRESHOLD:
    case IDS_EERRLIMIT:
        return 2;
    case IDS_ECONFIG:
    case IDS_EUSAGE:
        return 3;
    case IDS_EINTR:
        return 1;
    default:
        return 4;
    }
}
