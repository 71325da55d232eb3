/* api.c - the JSON API under /api/ (see docs/operations.md for the list).
 *
 * Every list is paged on the server: by id cursor (`after`, `before`) or
 * offset for errors, with a `limit` capped at 500, so that a store of a
 * million objects answers as fast as a small one. Handlers run with the
 * configuration read-locked and http_mu held (serve.h) and use only
 * d->http_store.
 */
#include "serve/serve.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "connector/connector.h"
#include "engine/engine.h"
#include "engine/reconnect.h"
#include "serve/serve_version.h"
#include "util/codec.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/spool.h"
#include "util/banned.h"

#define LIMIT_DEFAULT  50
#define LIMIT_MAX      500
#define RUN_SCAN_MAX   20000  /* runs looked at for a filtered list or children */
#define ERROR_SCAN_MAX 200000 /* errors looked at for a filtered error list */
#define MATCH_MAX      10000  /* ids taken from one join-key lookup */

/* ---- small helpers ------------------------------------------------------ */

/* A JSON string that never fails: NULL -> null, invalid UTF-8 -> bytes
 * outside ASCII replaced by '?'. */
static json_t *js(const char *s)
{
    json_t *v;
    char *copy;
    size_t i;
    size_t len;

    if (s == NULL) {
        return json_null();
    }
    len = strlen(s);
    if (utf8_valid(s, len)) {
        return json_stringn(s, len);
    }
    copy = xmemdup(s, len);
    for (i = 0; i < len; i++) {
        if ((unsigned char)copy[i] >= 0x80) {
            copy[i] = '?';
        }
    }
    v = json_stringn(copy, len);
    free(copy);
    return v;
}

static json_t *jtime(int64_t us)
{
    return us > 0 ? json_integer(us / 1000) : json_null();
}

static json_t *jid(int64_t id)
{
    return id > 0 ? json_integer(id) : json_null();
}

static json_t *jvalue(const struct value *v)
{
    struct strbuf b64 = STRBUF_INIT;
    json_t *o;

    if (value_is_text(v->data, v->len)) {
        return json_stringn(v->data, v->len);
    }
    base64_encode(&b64, v->data, v->len);
    o = json_pack("{s:s}", "base64", b64.buf);
    strbuf_release(&b64);
    return o;
}

static json_t *jvalues(const struct attr *a)
{
    json_t *arr = json_array();
    size_t i;

    for (i = 0; i < a->nvals; i++) {
        json_array_append_new(arr, jvalue(&a->vals[i]));
    }
    return arr;
}

/* Parse text produced by one of our *_to_json functions; null if it fails. */
static json_t *jparse(const struct strbuf *sb)
{
    json_t *v = json_loadb(sb->buf, sb->len, 0, NULL);

    return v ? v : json_null();
}

static json_t *jchange(const struct change *c)
{
    struct strbuf sb = STRBUF_INIT;
    json_t *v;

    if (c == NULL) {
        return json_null();
    }
    change_to_json(c, &sb);
    v = jparse(&sb);
    strbuf_release(&sb);
    return v;
}

static void reply_json(struct serve_reply *r, unsigned status, json_t *o)
{
    char *text = json_dumps(o, JSON_COMPACT);

    r->status = status;
    r->ctype = "application/json";
    strbuf_reset(&r->body);
    if (text != NULL) {
        strbuf_addstr(&r->body, text);
    }
    strbuf_addch(&r->body, '\n');
    free(text);
    json_decref(o);
}

static void reply_err(struct serve_reply *r, unsigned status, const char *code, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));
static void reply_err(struct serve_reply *r, unsigned status, const char *code, const char *fmt,
                      ...)
{
    struct strbuf msg = STRBUF_INIT;
    va_list ap;

    va_start(ap, fmt);
    strbuf_vaddf(&msg, fmt, ap);
    va_end(ap);
    reply_json(r, status, json_pack("{s:s,s:o}", "error", code, "message", js(msg.buf)));
    strbuf_release(&msg);
}

/* Store failures: 503 with the store's message. */
static void reply_store(struct serve_reply *r, const struct ids_error *err)
{
    reply_err(r, MHD_HTTP_SERVICE_UNAVAILABLE, ids_err_name(err->code), "%s", err->msg);
}

/* Integer query argument within [min, max]; `def` when absent. false when
 * present but not a number (the reply is then filled). */
static bool arg_long(const struct serve_call *c, struct serve_reply *r, const char *name,
                     long long def, long long min, long long max, long long *out)
{
    const char *s = serve_arg(c, name);
    char *end = NULL;
    long long v;

    *out = def;
    if (s == NULL || s[0] == '\0') {
        return true;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') {
        reply_err(r, MHD_HTTP_BAD_REQUEST, "usage", "parameter %s: not a number: %s", name, s);
        return false;
    }
    if (v < min) {
        v = min;
    }
    if (v > max) {
        v = max;
    }
    *out = v;
    return true;
}

static bool parse_id(const char *s, int64_t *out)
{
    char *end = NULL;
    long long v;

    if (s == NULL || !isdigit((unsigned char)s[0])) {
        return false;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v <= 0) {
        return false;
    }
    *out = v;
    return true;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a;
    int64_t y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* Sort and deduplicate ids; returns the new count. */
static size_t ids_unique(int64_t *ids, size_t n)
{
    size_t i;
    size_t j = 0;

    qsort(ids, n, sizeof(*ids), cmp_i64);
    for (i = 0; i < n; i++) {
        if (j == 0 || ids[j - 1] != ids[i]) {
            ids[j++] = ids[i];
        }
    }
    return j;
}

/* ---- connectors by id ----------------------------------------------------- */

static const char *connector_name(struct serve_daemon *d, int64_t id)
{
    size_t i;
    int64_t cid;

    for (i = 0; i < d->cfg->nconnectors; i++) {
        if (store_connector_id(d->http_store, d->cfg->connectors[i].name, &cid, NULL) == IDS_OK &&
            cid == id) {
            return d->cfg->connectors[i].name;
        }
    }
    return NULL;
}

/* The configured connector `name` and its store id; fills the reply when unknown. */
static struct connector_config *connector_arg(struct serve_daemon *d, const char *name, int64_t *id,
                                              struct serve_reply *r)
{
    struct connector_config *cc = name ? config_connector(d->cfg, name) : NULL;
    struct ids_error err = IDS_ERROR_INIT;

    if (cc == NULL) {
        reply_err(r, MHD_HTTP_NOT_FOUND, "not-found", "no connector called %s",
                  name ? name : "(none given)");
        return NULL;
    }
    if (store_connector_id(d->http_store, cc->name, id, &err) != IDS_OK) {
        reply_store(r, &err);
        return NULL;
    }
    return cc;
}

/* ---- runs -------------------------------------------------------------- */

static json_t *jcounters(const struct run_counters *rc)
{
    json_t *o = json_object();
    size_t i;

    for (i = 0; i < run_counter_count; i++) {
        json_object_set_new(o, run_counter_descs[i].name,
                            json_integer(*run_counter_ptr((struct run_counters *)rc, i)));
    }
    return o;
}

static void counters_add(struct run_counters *sum, const struct run_counters *c)
{
    size_t i;

    for (i = 0; i < run_counter_count; i++) {
        *run_counter_ptr(sum, i) += *run_counter_ptr((struct run_counters *)c, i);
    }
}

static json_t *jrun(const struct run_record *r)
{
    json_t *o = json_object();
    int64_t end = r->end_us;

    json_object_set_new(o, "id", json_integer(r->id));
    json_object_set_new(o, "step", js(r->step));
    json_object_set_new(o, "connector", js(r->connector));
    json_object_set_new(o, "parent", jid(r->parent));
    json_object_set_new(o, "start", jtime(r->start_us));
    json_object_set_new(o, "end", jtime(r->end_us));
    if (end == 0) {
        end = serve_now_us();
    }
    json_object_set_new(o, "duration_ms", json_integer((end - r->start_us) / 1000));
    json_object_set_new(o, "status", json_string(run_status_name(r->status)));
    json_object_set_new(o, "dry_run", json_boolean(r->dry_run));
    json_object_set_new(o, "message", js(r->message));
    json_object_set_new(o, "counters", jcounters(&r->counters));
    return o;
}

static void runs_free(struct run_record *runs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        run_record_release(&runs[i]);
    }
    free(runs);
}

/* The runs whose parent is `id` (they were started after it: newer ids),
 * oldest first, into arr; their counters summed into *sum. */
static enum ids_err run_children(struct store *s, int64_t id, json_t *arr, struct run_counters *sum,
                                 struct ids_error *err)
{
    struct run_record *runs = NULL;
    int64_t before = 0;
    size_t scanned = 0;
    size_t n = 0;
    size_t i;
    json_t *tmp = json_array();
    enum ids_err ret = IDS_OK;
    bool more = true;

    while (more && scanned < RUN_SCAN_MAX) {
        ret = store_runs_list(s, before, LIMIT_MAX, &runs, &n, err);
        if (ret != IDS_OK) {
            goto done;
        }
        if (n == 0) {
            break;
        }
        for (i = 0; i < n; i++) {
            if (runs[i].id <= id) {
                more = false;
                break;
            }
            if (runs[i].parent == id) {
                json_array_append_new(tmp, jrun(&runs[i]));
                if (sum != NULL) {
                    counters_add(sum, &runs[i].counters);
                }
            }
        }
        before = runs[n - 1].id;
        scanned += n;
        runs_free(runs, n);
        runs = NULL;
    }
    for (i = json_array_size(tmp); i > 0; i--) {
        json_array_append(arr, json_array_get(tmp, i - 1));
    }

done:
    json_decref(tmp);
    return ret;
}

static bool run_matches(const struct run_record *r, const char *step, const char *connector,
                        bool top)
{
    if (top && r->parent != 0) {
        return false;
    }
    if (step != NULL && step[0] && strcmp(r->step, step) != 0) {
        return false;
    }
    if (connector != NULL && connector[0] &&
        (r->connector == NULL || strcmp(r->connector, connector) != 0)) {
        return false;
    }
    return true;
}

/* GET /api/runs?before=&limit=&step=&connector=&top=1 */
static void api_runs(struct serve_daemon *d, const struct serve_call *c, struct serve_reply *r)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct run_record *runs = NULL;
    const char *step = serve_arg(c, "step");
    const char *conn = serve_arg(c, "connector");
    const char *top_s = serve_arg(c, "top");
    bool top = top_s != NULL && strcmp(top_s, "1") == 0;
    long long before;
    long long limit;
    json_t *arr = json_array();
    int64_t next = 0;
    size_t scanned = 0;
    size_t n = 0;
    size_t i;

    if (!arg_long(c, r, "before", 0, 0, INT64_MAX, &before) ||
        !arg_long(c, r, "limit", LIMIT_DEFAULT, 1, LIMIT_MAX, &limit)) {
        json_decref(arr);
        return;
    }
    for (;;) {
        bool full = false;

        if (scanned >= RUN_SCAN_MAX) {
            break; /* next stays at the last run examined */
        }
        if (store_runs_list(d->http_store, before, LIMIT_MAX, &runs, &n, &err) != IDS_OK) {
            json_decref(arr);
            reply_store(r, &err);
            return;
        }
        if (n == 0) {
            next = 0;
            break;
        }
        for (i = 0; i < n; i++) {
            if (json_array_size(arr) == (size_t)limit) {
                full = true;
                break;
            }
            if (run_matches(&runs[i], step, conn, top)) {
                json_array_append_new(arr, jrun(&runs[i]));
            }
            next = runs[i].id;
        }
        before = runs[n - 1].id;
        scanned += n;
        runs_free(runs, n);
        runs = NULL;
        if (full) {
            break;
        }
        if (n < LIMIT_MAX) {
            next = 0; /* the end of history */
            break;
        }
    }
    reply_json(r, MHD_HTTP_OK, json_pack("{s:o,s:o}", "runs", arr, "next_before", jid(next)));
}

/* GET /api/runs/series?limit=N: the newest top-level runs (cycles and
 * steps run alone), oldest first, for the console's chart. A cycle's
 * counters are the sums of its steps' (the engine adds them up). */
static void api_runs_series(struct serve_daemon *d, const struct serve_call *c,
                            struct serve_reply *r)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct run_record *runs = NULL;
    json_t *tmp = json_array();
    json_t *arr = json_array();
    int64_t before = 0;
    size_t scanned = 0;
    long long limit;
    size_t n = 0;
    size_t i;

    if (!arg_long(c, r, "limit", 50, 1, LIMIT_MAX, &limit)) {
        goto done;
    }
    while (scanned < RUN_SCAN_MAX && json_array_size(tmp) < (size_t)limit) {
        if (store_runs_list(d->http_store, before, LIMIT_MAX, &runs, &n, &err) != IDS_OK) {
            reply_store(r, &err);
            goto done;
        }
        if (n == 0) {
            break;
        }
        for (i = 0; i < n && json_array_size(tmp) < (size_t)limit; i++) {
            if (runs[i].parent == 0) {
                json_array_append_new(tmp, jrun(&runs[i]));
            }
        }
        before = runs[n - 1].id;
        scanned += n;
        runs_free(runs, n);
        runs = NULL;
        if (n < LIMIT_MAX) {
            break;
        }
    }
    for (i = json_array_size(tmp); i > 0; i--) {
        json_array_append(arr, json_array_get(tmp, i - 1));
    }
    reply_json(r, MHD_HTTP_OK, json_pack("{s:O}", "series", arr));

done:
    json_decref(tmp);
    json_decref(arr);
}

/* ---- errors ------------------------------------------------------------ */

static json_t *jerror(const struct run_error *e)
{
    json_t *o = json_object();

    json_object_set_new(o, "run", json_integer(e->run));
    json_object_set_new(o, "connector", js(e->connector));
    json_object_set_new(o, "anchor", js(e->anchor));
    json_object_set_new(o, "dn", js(e->dn));
    json_object_set_new(o, "attr", js(e->attr));
    json_object_set_new(o, "code", js(e->code));
    json_object_set_new(o, "message", js(e->message));
    json_object_set_new(o, "cs_id", jid(e->cs_id));
    json_object_set_new(o, "mv_id", jid(e->mv_id));
    json_object_set_new(o, "time", jtime(e->time_us));
    return o;
}

static bool contains_nocase(const char *hay, const char *needle)
{
    return hay != NULL && strcasestr(hay, needle) != NULL;
}

static bool error_matches(const struct run_error *e, const char *conn, const char *code,
                          const char *q)
{
    if (conn != NULL && conn[0] && (e->connector == NULL || strcmp(e->connector, conn) != 0)) {
        return false;
    }
    if (code != NULL && code[0] && (e->code == NULL || strcmp(e->code, code) != 0)) {
        return false;
    }
    if (q != NULL && q[0] && !contains_nocase(e->anchor, q) && !contains_nocase(e->dn, q) &&
        !contains_nocase(e->attr, q) && !contains_nocase(e->message, q)) {
        return false;
    }
    return true;
}

static void errors_free(struct run_error *errs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        run_error_release(&errs[i]);
    }
    free(errs);
}

/* Errors of one run (0 = the newest run with errors), filtered and paged. */
static void api_errors(struct serve_daemon *d, const struct serve_call *c, int64_t run,
                       struct serve_reply *r)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct run_error *errs = NULL;
    const char *conn = serve_arg(c, "connector");
    const char *code = serve_arg(c, "code");
    const char *q = serve_arg(c, "q");
    bool filtered = (conn && conn[0]) || (code && code[0]) || (q && q[0]);
    long long offset;
    long long limit;
    long total = 0;
    long matched = 0;
    size_t pos = 0;
    size_t n = 0;
    size_t i;
    bool complete = true;
    json_t *arr = json_array();

    if (!arg_long(c, r, "offset", 0, 0, ERROR_SCAN_MAX, &offset) ||
        !arg_long(c, r, "limit", LIMIT_DEFAULT, 1, LIMIT_MAX, &limit)) {
        goto fail;
    }
    if (run == 0) {
        if (store_run_errors(d->http_store, 0, 0, 1, &errs, &n, &err) != IDS_OK) {
            goto store_fail;
        }
        run = n > 0 ? errs[0].run : 0;
        errors_free(errs, n);
        errs = NULL;
        if (run == 0) {
            reply_json(r, MHD_HTTP_OK,
                       json_pack("{s:n,s:i,s:I,s:o,s:b}", "run", "total", 0, "offset",
                                 (json_int_t)offset, "errors", arr, "complete", 1));
            return;
        }
    }
    if (store_run_error_count(d->http_store, run, &total, &err) != IDS_OK) {
        goto store_fail;
    }
    if (!filtered) {
        if (store_run_errors(d->http_store, run, (size_t)offset, (size_t)limit, &errs, &n, &err) !=
            IDS_OK) {
            goto store_fail;
        }
        for (i = 0; i < n; i++) {
            json_array_append_new(arr, jerror(&errs[i]));
        }
        errors_free(errs, n);
        reply_json(r, MHD_HTTP_OK,
                   json_pack("{s:I,s:I,s:I,s:I,s:o,s:b}", "run", (json_int_t)run, "total",
                             (json_int_t)total, "run_total", (json_int_t)total, "offset",
                             (json_int_t)offset, "errors", arr, "complete", 1));
        return;
    }
    /* Filtered: scan in pages (capped), count every match, keep one page. */
    for (;;) {
        if (pos >= ERROR_SCAN_MAX) {
            complete = false;
            break;
        }
        if (store_run_errors(d->http_store, run, pos, LIMIT_MAX, &errs, &n, &err) != IDS_OK) {
            goto store_fail;
        }
        for (i = 0; i < n; i++) {
            if (!error_matches(&errs[i], conn, code, q)) {
                continue;
            }
            if (matched >= offset && json_array_size(arr) < (size_t)limit) {
                json_array_append_new(arr, jerror(&errs[i]));
            }
            matched++;
        }
        errors_free(errs, n);
        errs = NULL;
        pos += n;
        if (n < LIMIT_MAX) {
            break;
        }
    }
    reply_json(r, MHD_HTTP_OK,
               json_pack("{s:I,s:I,s:I,s:I,s:o,s:b}", "run", (json_int_t)run, "total",
                         (json_int_t)matched, "run_total", (json_int_t)total, "offset",
                         (json_int_t)offset, "errors", arr, "complete", complete));
    return;

store_fail:
    reply_store(r, &err);
fail:
    json_decref(arr);
}

/* GET /api/runs/ID: the run, its steps, its error count. */
static void api_run(struct serve_daemon *d, int64_t id, struct serve_reply *r)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct run_record run = {0};
    struct run_counters sum = {0};
    long nerr = 0;
    json_t *o;
    json_t *children = json_array();
    enum ids_err ret;

    ret = store_run_get(d->http_store, id, &run, &err);
    if (ret == IDS_ENOTFOUND) {
        reply_err(r, MHD_HTTP_NOT_FOUND, "not-found", "no run %lld", (long long)id);
        goto done;
    }
    if (ret != IDS_OK || run_children(d->http_store, id, children, &sum, &err) != IDS_OK ||
        store_run_error_count(d->http_store, id, &nerr, &err) != IDS_OK) {
        reply_store(r, &err);
        goto done;
    }
    o = jrun(&run);
    json_object_set_new(o, "errors", json_integer(nerr));
    if (json_array_size(children) > 0) {
        size_t i;
        long all = nerr;

        for (i = 0; i < json_array_size(children); i++) {
            json_t *ch = json_array_get(children, i);
            long ne = 0;

            if (store_run_error_count(d->http_store, json_integer_value(json_object_get(ch, "id")),
                                      &ne, &err) == IDS_OK) {
                json_object_set_new(ch, "errors", json_integer(ne));
                all += ne;
            }
        }
        json_object_set_new(o, "total_counters", jcounters(&sum));
        json_object_set_new(o, "total_errors", json_integer(all));
    }
    json_object_set(o, "children", children);
    reply_json(r, MHD_HTTP_OK, o);

done:
    json_decref(children);
    run_record_release(&run);
}

/* ---- objects ----------------------------------------------------------- */

static const char *entry_display(const struct entry *e)
{
    static const char *const names[] = {
        "displayName",    "cn", "name", "userName", "upn", "mail", "uid", "userPrincipalName",
        "sAMAccountName", NULL};
    size_t i;

    for (i = 0; names[i] != NULL; i++) {
        const char *v = entry_first(e, names[i]);

        if (v != NULL && v[0] != '\0' && value_is_text(v, strlen(v))) {
            return v;
        }
    }
    return NULL;
}

static const char *import_state_name(enum cs_import_state s)
{
    static const char *const n[] = {"none", "add", "update", "delete"};

    return (unsigned)s < ARRAY_SIZE(n) ? n[s] : "?";
}

static const char *export_state_name(enum cs_export_state s)
{
    static const char *const n[] = {"none", "pending", "in-flight", "failed"};

    return (unsigned)s < ARRAY_SIZE(n) ? n[s] : "?";
}

static json_t *jcs_summary(struct serve_daemon *d, const struct cs_object *o)
{
    json_t *j = json_object();
    json_t *flags = json_array();

    json_object_set_new(j, "id", json_integer(o->id));
    json_object_set_new(j, "connector", js(connector_name(d, o->connector)));
    json_object_set_new(j, "type", js(o->type));
    json_object_set_new(j, "anchor", js(o->anchor));
    json_object_set_new(j, "dn", js(o->dn));
    json_object_set_new(j, "display", js(o->entry ? entry_display(o->entry) : NULL));
    json_object_set_new(j, "mv_id", jid(o->mv_id));
    json_object_set_new(j, "import_state", json_string(import_state_name(o->import_state)));
    json_object_set_new(j, "export_state", json_string(export_state_name(o->export_state)));
    if (o->flags & CS_PROVISIONED) {
        json_array_append_new(flags, json_string("provisioned"));
    }
    if (o->flags & CS_DISABLED) {
        json_array_append_new(flags, json_string("disabled"));
    }
    if (o->flags & CS_OUT_OF_SCOPE) {
        json_array_append_new(flags, json_string("out-of-scope"));
    }
    json_object_set_new(j, "flags", flags);
    return j;
}

static json_t *jattrs(const struct entry *e, bool with_source)
{
    json_t *arr = json_array();
    size_t i;

    for (i = 0; e != NULL && i < e->nattrs; i++) {
        const struct attr *a = &e->attrs[i];
        json_t *o = json_object();

        json_object_set_new(o, "name", js(a->name));
        json_object_set_new(o, "ref", json_boolean(a->flags & ATTR_REF));
        json_object_set_new(o, "values", jvalues(a));
        if (with_source) {
            json_object_set_new(o, "source_index", json_integer(a->source));
        }
        json_array_append_new(arr, o);
    }
    return arr;
}

static json_t *jcs_detail(struct serve_daemon *d, const struct cs_object *o)
{
    json_t *j = jcs_summary(d, o);
    struct strbuf hash = STRBUF_INIT;

    strbuf_addf(&hash, "%016llx", (unsigned long long)o->hash);
    json_object_set_new(j, "hash", json_string(hash.buf));
    json_object_set_new(j, "attributes", jattrs(o->entry, false));
    json_object_set_new(j, "pending_export", jchange(o->pending_export));
    json_object_set_new(j, "export_attempts", json_integer(o->export_attempts));
    json_object_set_new(j, "export_error", js(o->export_error));
    json_object_set_new(j, "unconfirmed", jchange(o->unconfirmed));
    json_object_set_new(j, "export_run", jid(o->export_run));
    /* group members imported and gone since the last sync (as show cs) */
    json_object_set_new(j, "staged_reference_changes",
                        jchange((o->flags & CS_REF_DELTA) ? o->ref_delta : NULL));
    strbuf_release(&hash);
    return j;
}

static enum store_sel sel_from_name(const char *s, bool *ok)
{
    static const struct {
        const char *name;
        enum store_sel sel;
    } t[] = {
        {"all", STORE_SEL_ALL},
        {"pending-import", STORE_SEL_PENDING_IMPORT},
        {"pending-export", STORE_SEL_PENDING_EXPORT},
        {"inflight", STORE_SEL_INFLIGHT},
        {"disconnectors", STORE_SEL_DISCONNECTORS},
        {"joined", STORE_SEL_JOINED},
    };
    size_t i;

    *ok = true;
    if (s == NULL || s[0] == '\0') {
        return STORE_SEL_ALL;
    }
    for (i = 0; i < ARRAY_SIZE(t); i++) {
        if (strcmp(t[i].name, s) == 0) {
            return t[i].sel;
        }
    }
    *ok = false;
    return STORE_SEL_ALL;
}

/* "attr=value" -> attr (lower-cased) and the normalised value. */
static bool split_attr_value(const char *q, struct strbuf *attr, struct strbuf *norm,
                             struct strbuf *raw)
{
    const char *eq = strchr(q, '=');

    if (eq == NULL || eq == q) {
        return false;
    }
    strbuf_add(attr, q, (size_t)(eq - q));
    strbuf_trim(attr);
    strbuf_addstr(raw, eq + 1);
    strbuf_trim(raw);
    value_normalize(norm, raw->buf, raw->len);
    return attr->len > 0;
}

/* Page `ids[0..n)` (sorted) after `after`: load CS objects into arr. */
static enum ids_err cs_page(struct serve_daemon *d, const int64_t *ids, size_t n, int64_t after,
                            size_t limit, json_t *arr, int64_t *next, struct ids_error *err)
{
    size_t i;
    enum ids_err ret = IDS_OK;

    *next = 0;
    for (i = 0; i < n; i++) {
        struct cs_object *o = NULL;

        if (ids[i] <= after) {
            continue;
        }
        if (json_array_size(arr) == limit) {
            *next = ids[i - 1];
            break;
        }
        ret = store_cs_get(d->http_store, ids[i], &o, err);
        if (ret == IDS_ENOTFOUND) {
            continue; /* deleted by a running cycle since the lookup */
        }
        if (ret != IDS_OK) {
            return ret;
        }
        json_array_append_new(arr, jcs_summary(d, o));
        cs_object_free(o);
    }
    return IDS_OK;
}

/* GET /api/cs?connector=&q=|anchor=|dn=|attr=&value=&sel=&after=&limit= */
static void api_cs_search(struct serve_daemon *d, const struct serve_call *c, struct serve_reply *r)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf attr = STRBUF_INIT;
    struct strbuf norm = STRBUF_INIT;
    struct strbuf raw = STRBUF_INIT;
    const char *q = serve_arg(c, "q");
    const char *anchor = serve_arg(c, "anchor");
    const char *dn = serve_arg(c, "dn");
    const char *a = serve_arg(c, "attr");
    const char *v = serve_arg(c, "value");
    struct cs_object *o = NULL;
    int64_t *ids = NULL;
    int64_t conn = 0;
    int64_t next = 0;
    long long after;
    long long limit;
    long total = -1;
    size_t n = 0;
    bool ok;
    enum store_sel sel = sel_from_name(serve_arg(c, "sel"), &ok);
    json_t *arr = json_array();
    const char *mode = "list";
    enum ids_err ret = IDS_OK;

    if (!ok) {
        reply_err(r, MHD_HTTP_BAD_REQUEST, "usage",
                  "sel: one of all, pending-import, pending-export, inflight, disconnectors, "
                  "joined");
        goto done;
    }
    if (!arg_long(c, r, "after", 0, 0, INT64_MAX, &after) ||
        !arg_long(c, r, "limit", LIMIT_DEFAULT, 1, LIMIT_MAX, &limit)) {
        goto done;
    }
    if (connector_arg(d, serve_arg(c, "connector"), &conn, r) == NULL) {
        goto done;
    }
    if (q != NULL && q[0] != '\0') {
        if (split_attr_value(q, &attr, &norm, &raw)) {
            mode = "attr";
        } else {
            anchor = q;
            dn = q;
            mode = "anchor-or-dn";
        }
    } else if (anchor && anchor[0]) {
        mode = "anchor";
        dn = NULL;
    } else if (dn && dn[0]) {
        mode = "dn";
        anchor = NULL;
    } else if (a && a[0] && v) {
        strbuf_addstr(&attr, a);
        strbuf_addstr(&raw, v);
        value_normalize(&norm, v, strlen(v));
        mode = "attr";
    }
    if (strcmp(mode, "list") == 0) {
        ids = xcalloc((size_t)limit + 1, sizeof(*ids));
        ret = store_cs_ids(d->http_store, conn, sel, after, ids, (size_t)limit + 1, &n, &err);
        if (ret == IDS_OK) {
            ret = store_cs_count(d->http_store, conn, sel, &total, &err);
        }
        if (ret == IDS_OK) {
            ret = cs_page(d, ids, n, after, (size_t)limit, arr, &next, &err);
        }
    } else if (strcmp(mode, "attr") == 0) {
        strbuf_tolower(&attr);
        ids = xcalloc(MATCH_MAX, sizeof(*ids));
        ret = store_cs_find(d->http_store, conn, attr.buf, norm.buf, ids, MATCH_MAX, &n, &err);
        if (ret == IDS_OK) {
            total = (long)n;
            n = ids_unique(ids, n < MATCH_MAX ? n : MATCH_MAX);
            ret = cs_page(d, ids, n, after, (size_t)limit, arr, &next, &err);
        }
    } else {
        ret = IDS_ENOTFOUND;
        if (anchor != NULL && anchor[0]) {
            ret = store_cs_get_by_anchor(d->http_store, conn, anchor, &o, &err);
        }
        if (ret == IDS_ENOTFOUND && dn != NULL && dn[0]) {
            ret = store_cs_get_by_dn(d->http_store, conn, dn, &o, &err);
        }
        if (ret == IDS_OK) {
            json_array_append_new(arr, jcs_summary(d, o));
        }
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
        }
        total = (long)json_array_size(arr);
    }
    if (ret != IDS_OK) {
        reply_store(r, &err);
        goto done;
    }
    reply_json(r, MHD_HTTP_OK,
               json_pack("{s:s,s:o,s:o,s:o}", "mode", mode, "objects", arr, "next_after", jid(next),
                         "total", total >= 0 ? json_integer(total) : json_null()));
    arr = NULL;

done:
    json_decref(arr);
    cs_object_free(o);
    free(ids);
    strbuf_release(&attr);
    strbuf_release(&norm);
    strbuf_release(&raw);
}

static void api_cs_get(struct serve_daemon *d, int64_t id, struct serve_reply *r)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct cs_object *o = NULL;
    struct mv_object *mv = NULL;
    json_t *j;
    enum ids_err ret;

    ret = store_cs_get(d->http_store, id, &o, &err);
    if (ret == IDS_ENOTFOUND) {
        reply_err(r, MHD_HTTP_NOT_FOUND, "not-found", "no connector-space object %lld",
                  (long long)id);
        goto done;
    }
    if (ret != IDS_OK) {
        reply_store(r, &err);
        goto done;
    }
    j = jcs_detail(d, o);
    if (o->mv_id > 0 && store_mv_get(d->http_store, o->mv_id, &mv, &err) == IDS_OK) {
        json_object_set_new(j, "mv",
                            json_pack("{s:I,s:o,s:o}", "id", (json_int_t)mv->id, "type",
                                      js(mv->type), "display", js(entry_display(mv->entry))));
    } else {
        json_object_set_new(j, "mv", json_null());
    }
    reply_json(r, MHD_HTTP_OK, j);

done:
    cs_object_free(o);
    mv_object_free(mv);
}

static const struct mv_type_config *mv_type(const struct config *cfg, const char *name)
{
    size_t i;

    for (i = 0; name != NULL && i < cfg->nmv_types; i++) {
        if (strcmp(cfg->mv_types[i].name, name) == 0) {
            return &cfg->mv_types[i];
        }
    }
    return NULL;
}

static const struct rule_item *flow_for(const struct flow_config *f, const char *attr)
{
    size_t i;

    for (i = 0; i < f->nflows; i++) {
        if (strcasecmp(f->flows[i].attr, attr) == 0) {
            return &f->flows[i];
        }
    }
    return NULL;
}

/* MV attributes used as join keys by inbound rules (bare-value search). */
static void join_key_attrs(const struct config *cfg, struct strvec *out)
{
    size_t i;
    size_t j;
    size_t k;
    size_t m;

    for (i = 0; i < cfg->nmv_types; i++) {
        const struct mv_type_config *mt = &cfg->mv_types[i];

        for (j = 0; j < mt->nfrom; j++) {
            for (k = 0; k < mt->from[j].njoins; k++) {
                for (m = 0; m < mt->from[j].joins[k].nitems; m++) {
                    const char *a = mt->from[j].joins[k].items[m].attr;

                    if (strvec_find(out, a, true) < 0) {
                        strvec_push(out, a);
                    }
                }
            }
        }
    }
}

static json_t *jmv_summary(const struct mv_object *mv)
{
    return json_pack("{s:I,s:o,s:o}", "id", (json_int_t)mv->id, "type", js(mv->type), "display",
                     js(entry_display(mv->entry)));
}

static enum ids_err mv_page(struct serve_daemon *d, const int64_t *ids, size_t n, int64_t after,
                            size_t limit, json_t *arr, int64_t *next, struct ids_error *err)
{
    size_t i;
    enum ids_err ret;

    *next = 0;
    for (i = 0; i < n; i++) {
        struct mv_object *mv = NULL;

        if (ids[i] <= after) {
            continue;
        }
        if (json_array_size(arr) == limit) {
            *next = ids[i - 1];
            break;
        }
        ret = store_mv_get(d->http_store, ids[i], &mv, err);
        if (ret == IDS_ENOTFOUND) {
            continue;
        }
        if (ret != IDS_OK) {
            return ret;
        }
        json_array_append_new(arr, jmv_summary(mv));
        mv_object_free(mv);
    }
    return IDS_OK;
}

/* GET /api/mv?q=|attr=&value=&type=&after=&limit= */
static void api_mv_search(struct serve_daemon *d, const struct serve_call *c, struct serve_reply *r)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf attr = STRBUF_INIT;
    struct strbuf norm = STRBUF_INIT;
    struct strbuf raw = STRBUF_INIT;
    struct strvec keys = STRVEC_INIT;
    const char *q = serve_arg(c, "q");
    const char *a = serve_arg(c, "attr");
    const char *v = serve_arg(c, "value");
    const char *type = serve_arg(c, "type");
    int64_t *ids = NULL;
    int64_t next = 0;
    int64_t id;
    long long after;
    long long limit;
    long total = -1;
    size_t n = 0;
    size_t i;
    json_t *arr = json_array();
    const char *mode = "list";
    enum ids_err ret = IDS_OK;

    if (!arg_long(c, r, "after", 0, 0, INT64_MAX, &after) ||
        !arg_long(c, r, "limit", LIMIT_DEFAULT, 1, LIMIT_MAX, &limit)) {
        goto done;
    }
    if (type != NULL && type[0] == '\0') {
        type = NULL;
    }
    ids = xcalloc(MATCH_MAX + LIMIT_MAX + 1, sizeof(*ids));
    if (q != NULL && q[0] != '\0') {
        if (parse_id(q, &id)) {
            mode = "id";
            ids[0] = id;
            n = 1;
        } else if (split_attr_value(q, &attr, &norm, &raw)) {
            mode = "attr";
        } else {
            /* a bare value: every join key (indexed), in one list */
            mode = "keys";
            strbuf_addstr(&raw, q);
            strbuf_trim(&raw);
            value_normalize(&norm, raw.buf, raw.len);
            join_key_attrs(d->cfg, &keys);
            for (i = 0; i < keys.nr && n < MATCH_MAX; i++) {
                size_t found = 0;

                strbuf_reset(&attr);
                strbuf_addstr(&attr, keys.v[i]);
                strbuf_tolower(&attr);
                ret = store_mv_find(d->http_store, type, attr.buf, norm.buf, ids + n, MATCH_MAX - n,
                                    &found, &err);
                if (ret != IDS_OK) {
                    goto reply;
                }
                n += found < MATCH_MAX - n ? found : MATCH_MAX - n;
            }
            n = ids_unique(ids, n);
            total = (long)n;
        }
    } else if (a && a[0] && v) {
        strbuf_addstr(&attr, a);
        strbuf_addstr(&raw, v);
        value_normalize(&norm, v, strlen(v));
        mode = "attr";
    }
    if (strcmp(mode, "attr") == 0) {
        /* an index lookup when attr is a join key, else a scan (store.h) */
        ret = store_mv_search(d->http_store, attr.buf, raw.buf, after, ids, (size_t)limit + 1, &n,
                              &err);
        if (ret != IDS_OK) {
            goto reply;
        }
    } else if (strcmp(mode, "list") == 0) {
        ret = store_mv_ids(d->http_store, NULL, after, ids, (size_t)limit + 1, &n, &err);
        if (ret == IDS_OK) {
            ret = store_mv_count(d->http_store, &total, &err);
        }
        if (ret != IDS_OK) {
            goto reply;
        }
    }
    ret = mv_page(d, ids, n, after, (size_t)limit, arr, &next, &err);

reply:
    if (ret != IDS_OK) {
        reply_store(r, &err);
        goto done;
    }
    reply_json(r, MHD_HTTP_OK,
               json_pack("{s:s,s:o,s:o,s:o}", "mode", mode, "objects", arr, "next_after", jid(next),
                         "total", total >= 0 ? json_integer(total) : json_null()));
    arr = NULL;

done:
    json_decref(arr);
    free(ids);
    strvec_clear(&keys);
    strbuf_release(&attr);
    strbuf_release(&norm);
    strbuf_release(&raw);
}

/* GET /api/mv/ID: the object with lineage. */
static void api_mv_get(struct serve_daemon *d, int64_t id, struct serve_reply *r)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct mv_object *mv = NULL;
    struct cs_object **links = NULL;
    const struct mv_type_config *mt;
    int64_t ids[64];
    size_t nlinks = 0;
    size_t n = 0;
    size_t i;
    size_t j;
    json_t *o = NULL;
    json_t *attrs;
    json_t *jl;
    json_t *outbound;
    json_t *exports;
    enum ids_err ret;

    ret = store_mv_get(d->http_store, id, &mv, &err);
    if (ret == IDS_ENOTFOUND) {
        reply_err(r, MHD_HTTP_NOT_FOUND, "not-found", "no metaverse object %lld", (long long)id);
        goto done;
    }
    if (ret != IDS_OK ||
        store_cs_links(d->http_store, id, ids, ARRAY_SIZE(ids), &n, &err) != IDS_OK) {
        reply_store(r, &err);
        goto done;
    }
    if (n > ARRAY_SIZE(ids)) {
        n = ARRAY_SIZE(ids);
    }
    links = xcalloc(n + 1, sizeof(*links));
    for (i = 0; i < n; i++) {
        if (store_cs_get(d->http_store, ids[i], &links[nlinks], &err) == IDS_OK) {
            nlinks++;
        }
    }
    mt = mv_type(d->cfg, mv->type);
    o = json_object();
    json_object_set_new(o, "id", json_integer(mv->id));
    json_object_set_new(o, "type", js(mv->type));
    json_object_set_new(o, "display", js(entry_display(mv->entry)));
    json_object_set_new(o, "created_run", jid(mv->created_run));
    json_object_set_new(o, "updated_run", jid(mv->updated_run));

    /* attributes, each with the inbound rule and connector object that gave it */
    attrs = jattrs(mv->entry, true);
    for (i = 0; i < json_array_size(attrs); i++) {
        json_t *ja = json_array_get(attrs, i);
        const struct attr *a = &mv->entry->attrs[i];
        const struct flow_config *f;
        const struct rule_item *rule;
        json_t *src;

        if (mt == NULL || a->source < 0 || (size_t)a->source >= mt->nfrom) {
            json_object_set_new(ja, "source", json_null());
            continue;
        }
        f = &mt->from[a->source];
        rule = flow_for(f, a->name);
        src = json_object();
        json_object_set_new(src, "index", json_integer(a->source));
        json_object_set_new(src, "connector", js(f->connector));
        json_object_set_new(src, "object", js(f->object));
        json_object_set_new(src, "rule", js(rule ? rule->source : NULL));
        json_object_set_new(src, "plain", json_boolean(rule ? rule->plain : false));
        json_object_set_new(src, "config_line", json_integer(rule ? rule->loc.line : f->loc.line));
        json_object_set_new(src, "cs_id", json_null());
        for (j = 0; j < nlinks; j++) {
            const char *cn = connector_name(d, links[j]->connector);

            if (cn != NULL && strcmp(cn, f->connector) == 0) {
                json_object_set_new(src, "cs_id", json_integer(links[j]->id));
                json_object_set_new(src, "cs_anchor", js(links[j]->anchor));
                json_object_set_new(src, "cs_dn", js(links[j]->dn));
                break;
            }
        }
        json_object_set_new(ja, "source", src);
    }
    json_object_set_new(o, "attributes", attrs);

    /* linked connector-space objects, with their pending exports */
    jl = json_array();
    exports = json_array();
    for (i = 0; i < nlinks; i++) {
        json_t *l = jcs_summary(d, links[i]);
        const char *cn = connector_name(d, links[i]->connector);
        bool src = false;
        bool tgt = false;

        for (j = 0; mt != NULL && cn != NULL && j < mt->nfrom; j++) {
            src |= strcmp(mt->from[j].connector, cn) == 0;
        }
        for (j = 0; mt != NULL && cn != NULL && j < mt->nto; j++) {
            tgt |= strcmp(mt->to[j].connector, cn) == 0;
        }
        json_object_set_new(l, "role",
                            json_string(src && tgt ? "source+target"
                                        : src      ? "source"
                                        : tgt      ? "target"
                                                   : "none"));
        json_object_set_new(l, "pending_export", jchange(links[i]->pending_export));
        json_object_set_new(l, "export_error", js(links[i]->export_error));
        json_object_set_new(l, "unconfirmed", jchange(links[i]->unconfirmed));
        if (links[i]->export_state != CS_EXPORT_NONE) {
            json_array_append_new(
                exports,
                json_pack("{s:I,s:o,s:s,s:i,s:o,s:o}", "cs_id", (json_int_t)links[i]->id,
                          "connector", js(cn), "state", export_state_name(links[i]->export_state),
                          "attempts", links[i]->export_attempts, "error",
                          js(links[i]->export_error), "change", jchange(links[i]->pending_export)));
        }
        json_array_append_new(jl, l);
    }
    json_object_set_new(o, "links", jl);
    json_object_set_new(o, "exports", exports);

    /* outbound rules: which target attribute each MV attribute feeds */
    outbound = json_array();
    for (i = 0; mt != NULL && i < mt->nto; i++) {
        const struct flow_config *f = &mt->to[i];
        json_t *ob = json_object();
        json_t *flows = json_array();

        json_object_set_new(ob, "connector", js(f->connector));
        json_object_set_new(ob, "object", js(f->object));
        json_object_set_new(ob, "provision", json_boolean(f->provision));
        json_object_set_new(ob, "cs_id", json_null());
        for (j = 0; j < nlinks; j++) {
            const char *cn = connector_name(d, links[j]->connector);

            if (cn != NULL && strcmp(cn, f->connector) == 0) {
                json_object_set_new(ob, "cs_id", json_integer(links[j]->id));
            }
        }
        for (j = 0; j < f->nflows; j++) {
            json_array_append_new(flows, json_pack("{s:o,s:o}", "attr", js(f->flows[j].attr),
                                                   "rule", js(f->flows[j].source)));
        }
        json_object_set_new(ob, "flows", flows);
        json_array_append_new(outbound, ob);
    }
    json_object_set_new(o, "outbound", outbound);
    reply_json(r, MHD_HTTP_OK, o);

done:
    for (i = 0; i < nlinks; i++) {
        cs_object_free(links[i]);
    }
    free(links);
    mv_object_free(mv);
}

/* ---- connectors, pending exports ----------------------------------------- */

/* Does a from: (inbound) or to: (outbound) rule name the connector? */
/* Counting disconnectors scans a connector space (a third of a second per
 * million objects): the answer is kept while the run history is unchanged,
 * and for 5 s at most while a run is going on. */
#define CONN_CACHE_RUNNING_US (5 * 1000000LL)
#define CONN_CACHE_MAX_US     (60 * 1000000LL)

static void api_connectors(struct serve_daemon *d, struct serve_reply *r)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct run_record *runs = NULL;
    size_t nruns = 0;
    size_t i;
    size_t j;
    long mvn = 0;
    json_t *arr = json_array();
    int64_t now = serve_now_us();
    int64_t key;

    if (store_runs_list(d->http_store, 0, LIMIT_MAX, &runs, &nruns, &err) != IDS_OK) {
        reply_store(r, &err);
        goto done;
    }
    /* the newest run, negated while it runs */
    key = nruns == 0 ? 0 : runs[0].status == RUN_RUNNING ? -runs[0].id : runs[0].id;
    if (d->conn_cache != NULL && key == d->conn_cache_run &&
        now - d->conn_cache_us < (key < 0 ? CONN_CACHE_RUNNING_US : CONN_CACHE_MAX_US)) {
        json_t *o = json_deep_copy(d->conn_cache);

        json_object_set_new(o, "cached", json_integer((now - d->conn_cache_us) / 1000));
        reply_json(r, MHD_HTTP_OK, o);
        goto done;
    }
    if (store_mv_count(d->http_store, &mvn, &err) != IDS_OK) {
        reply_store(r, &err);
        goto done;
    }
    for (i = 0; i < d->cfg->nconnectors; i++) {
        const struct connector_config *cc = &d->cfg->connectors[i];
        unsigned caps = cc->ops ? cc->ops->caps : 0;
        json_t *o = json_object();
        json_t *objs = json_array();
        json_t *last = json_object();
        int64_t id = 0;
        long all = 0;
        long pend = 0;
        long disc = 0;

        if (store_connector_id(d->http_store, cc->name, &id, &err) != IDS_OK ||
            store_cs_count(d->http_store, id, STORE_SEL_ALL, &all, &err) != IDS_OK ||
            store_cs_count(d->http_store, id, STORE_SEL_PENDING_EXPORT, &pend, &err) != IDS_OK ||
            store_cs_count(d->http_store, id, STORE_SEL_DISCONNECTORS, &disc, &err) != IDS_OK) {
            json_decref(o);
            json_decref(objs);
            json_decref(last);
            reply_store(r, &err);
            goto done;
        }
        for (j = 0; j < cc->nobjects; j++) {
            json_array_append_new(objs, js(cc->objects[j].name));
        }
        for (j = 0; j < nruns; j++) {
            if (runs[j].connector != NULL && strcmp(runs[j].connector, cc->name) == 0 &&
                json_object_get(last, runs[j].step) == NULL) {
                json_object_set_new(last, runs[j].step, jrun(&runs[j]));
            }
        }
        json_object_set_new(o, "name", js(cc->name));
        json_object_set_new(o, "type", js(cc->type));
        json_object_set_new(o, "id", json_integer(id));
        json_object_set_new(o, "objects", objs);
        /* its role comes from the rules: read by a from:, written by a to: */
        json_object_set_new(o, "source",
                            json_boolean(config_connector_used(d->cfg, cc->name, true)));
        json_object_set_new(o, "target",
                            json_boolean(config_connector_used(d->cfg, cc->name, false)));
        json_object_set_new(o, "caps",
                            json_pack("{s:b,s:b,s:b}", "read", caps & CONN_CAP_READ, "write",
                                      caps & CONN_CAP_WRITE, "delta", caps & CONN_CAP_DELTA));
        json_object_set_new(o, "cs_objects", json_integer(all));
        json_object_set_new(o, "pending_exports", json_integer(pend));
        json_object_set_new(o, "disconnectors", json_integer(disc));
        json_object_set_new(o, "last_runs", last);
        json_array_append_new(arr, o);
    }
    json_decref(d->conn_cache);
    d->conn_cache = json_pack("{s:o,s:I}", "connectors", arr, "mv_objects", (json_int_t)mvn);
    d->conn_cache_run = key;
    d->conn_cache_us = now;
    arr = NULL;
    reply_json(r, MHD_HTTP_OK, json_deep_copy(d->conn_cache));

done:
    json_decref(arr);
    runs_free(runs, nruns);
}

/* GET /api/pending?connector=&after=&limit=: pending exports from the store. */
static void api_pending(struct serve_daemon *d, const struct serve_call *c, struct serve_reply *r)
{
    struct ids_error err = IDS_ERROR_INIT;
    const char *name = serve_arg(c, "connector");
    int64_t *ids = NULL;
    int64_t conn = 0;
    int64_t next = 0;
    long long after;
    long long limit;
    long total = 0;
    size_t n = 0;
    size_t i;
    json_t *arr = json_array();

    if (!arg_long(c, r, "after", 0, 0, INT64_MAX, &after) ||
        !arg_long(c, r, "limit", LIMIT_DEFAULT, 1, LIMIT_MAX, &limit)) {
        goto done;
    }
    if (name != NULL && name[0] != '\0' && connector_arg(d, name, &conn, r) == NULL) {
        goto done;
    }
    ids = xcalloc((size_t)limit + 1, sizeof(*ids));
    if (store_cs_ids(d->http_store, conn, STORE_SEL_PENDING_EXPORT, after, ids, (size_t)limit + 1,
                     &n, &err) != IDS_OK ||
        store_cs_count(d->http_store, conn, STORE_SEL_PENDING_EXPORT, &total, &err) != IDS_OK) {
        reply_store(r, &err);
        goto done;
    }
    for (i = 0; i < n && i < (size_t)limit; i++) {
        struct cs_object *o = NULL;
        json_t *j;

        if (store_cs_get(d->http_store, ids[i], &o, &err) != IDS_OK) {
            continue; /* gone since the id list was read */
        }
        j = jcs_summary(d, o);
        json_object_set_new(j, "attempts", json_integer(o->export_attempts));
        json_object_set_new(j, "error", js(o->export_error));
        json_object_set_new(j, "change", jchange(o->pending_export));
        json_array_append_new(arr, j);
        cs_object_free(o);
    }
    if (n > (size_t)limit) {
        next = ids[limit - 1];
    }
    reply_json(r, MHD_HTTP_OK,
               json_pack("{s:o,s:I,s:o,s:o}", "connector", js(name), "total", (json_int_t)total,
                         "objects", arr, "next_after", jid(next)));
    arr = NULL;

done:
    json_decref(arr);
    free(ids);
}

/* A finished report spool's JSON lines -> array (skipping `offset` lines,
 * at most `limit`); *total counts every line. Memory: the page only. */
static json_t *lines_to_array(FILE *spool, size_t offset, size_t limit, size_t *total)
{
    json_t *arr = json_array();
    struct strbuf line = STRBUF_INIT;
    const char *p;
    size_t idx = 0;

    while ((p = spool_next(spool, &line)) != NULL) {
        if (idx >= offset && json_array_size(arr) < limit) {
            json_t *v = json_loadb(p, line.len, 0, NULL);

            json_array_append_new(arr, v ? v : json_stringn_nocheck(p, line.len));
        }
        idx++;
    }
    strbuf_release(&line);
    *total = idx;
    return arr;
}

/* GET /api/pending/report?connector=&offset=&limit=: engine_pending's report. */
static void api_pending_report(struct serve_daemon *d, const struct serve_call *c,
                               struct serve_reply *r)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct engine_opts eopts = {0};
    struct engine *eng = NULL;
    const char *name = serve_arg(c, "connector");
    size_t total = 0;
    long long offset;
    long long limit;
    int64_t conn;
    FILE *fp = NULL;
    json_t *arr;
    enum ids_err ret;

    if (!arg_long(c, r, "offset", 0, 0, INT64_MAX, &offset) ||
        !arg_long(c, r, "limit", 1000, 1, 10000, &limit)) {
        return;
    }
    if (connector_arg(d, name, &conn, r) == NULL) {
        return;
    }
    fp = spool_open(&err);
    if (fp == NULL) {
        reply_err(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "io", "%s", err.msg);
        return;
    }
    ret = engine_new(d->cfg, d->http_store, &eopts, &eng, &err);
    if (ret == IDS_OK) {
        ret = engine_pending(eng, name, fp, &err);
    }
    engine_free(eng);
    if (ret == IDS_OK) {
        ret = spool_finish(fp, &err);
    }
    if (ret != IDS_OK) {
        reply_err(r, MHD_HTTP_SERVICE_UNAVAILABLE, ids_err_name(ret), "%s", err.msg);
        fclose(fp);
        return;
    }
    arr = lines_to_array(fp, (size_t)offset, (size_t)limit, &total);
    fclose(fp);
    reply_json(r, MHD_HTTP_OK,
               json_pack("{s:s,s:I,s:I,s:o}", "connector", name, "total", (json_int_t)total,
                         "offset", (json_int_t)offset, "report", arr));
}

/* ---- reconnect preview (issue 5) ----------------------------------------- */

/* GET /api/reconnect/preview?by=mail[,upn][&connector=NAME][&offset=&limit=]:
 * the plan `idsync reconnect --by ...` would show, its rows a page at a time
 * (a rebuilt directory of a million people is a million rows: the reply
 * holds `limit` of them, `rows_total` says how many there are); nothing is
 * written. Applying stays a command-line step (`idsync reconnect --apply
 * FILE`), with its plan file. */
static void api_reconnect_preview(struct serve_daemon *d, const struct serve_call *c,
                                  struct serve_reply *r)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct engine_opts eopts = {0};
    struct engine *eng = NULL;
    struct reconnect_opts o;
    struct reconnect_plan plan;
    struct strbuf sb = STRBUF_INIT;
    const char *by = serve_arg(c, "by");
    long long offset;
    long long limit;
    json_t *j;
    enum ids_err ret;

    memset(&o, 0, sizeof(o));
    strvec_init(&o.by);
    reconnect_plan_init(&plan);
    if (!arg_long(c, r, "offset", 0, 0, INT64_MAX, &offset) ||
        !arg_long(c, r, "limit", 500, 1, 10000, &limit)) {
        goto done;
    }
    if (by == NULL || *by == '\0') {
        reply_err(r, MHD_HTTP_BAD_REQUEST, "usage",
                  "by=ATTR[,ATTR] names the metaverse attributes to match on (e.g. by=mail)");
        goto done;
    }
    strvec_split(&o.by, by, ',', true);
    o.connector = serve_arg(c, "connector");
    ret = engine_new(d->cfg, d->http_store, &eopts, &eng, &err);
    if (ret == IDS_OK) {
        ret = reconnect_plan_make(eng, &o, &plan, &err);
    }
    if (ret != IDS_OK) {
        reply_err(r, ret == IDS_EUSAGE ? MHD_HTTP_BAD_REQUEST : MHD_HTTP_SERVICE_UNAVAILABLE,
                  ids_err_name(ret), "%s", err.msg);
        goto done;
    }
    reconnect_plan_page_to_json(&plan, (size_t)offset, (size_t)limit, &sb);
    j = json_loadb(sb.buf, sb.len, 0, NULL);
    if (j == NULL) {
        reply_err(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "reconnect plan is not JSON");
        goto done;
    }
    json_object_set_new(j, "rows_total", json_integer((json_int_t)plan.nr));
    json_object_set_new(j, "offset", json_integer((json_int_t)offset));
    json_object_set_new(j, "limit", json_integer((json_int_t)limit));
    reply_json(r, MHD_HTTP_OK, j);
done:
    engine_free(eng);
    reconnect_plan_release(&plan);
    strvec_clear(&o.by);
    strbuf_release(&sb);
}

/* ---- requests (sync now) --------------------------------------------------- */

static const char *req_state_name(enum serve_req_state s)
{
    return s == SERVE_REQ_QUEUED ? "queued" : s == SERVE_REQ_RUNNING ? "running" : "done";
}

/* mu held */
static json_t *jrequest(const struct serve_request *q)
{
    json_t *o = json_object();

    json_object_set_new(o, "id", json_integer(q->id));
    json_object_set_new(o, "state", json_string(req_state_name(q->state)));
    json_object_set_new(o, "origin", json_string(q->origin));
    json_object_set_new(o, "full", json_boolean(q->full));
    json_object_set_new(o, "dry_run", json_boolean(q->dry_run));
    json_object_set_new(o, "queued", jtime(q->queued_us));
    json_object_set_new(o, "started", jtime(q->started_us));
    json_object_set_new(o, "done", jtime(q->done_us));
    json_object_set_new(o, "run", jid(q->run));
    if (q->nauto > 0) {
        json_t *a = json_array();
        size_t i;

        for (i = 0; i < q->nauto; i++) {
            json_array_append_new(a, json_integer(q->auto_runs[i]));
        }
        json_object_set_new(o, "automatic_runs", a);
    }
    if (q->state == SERVE_REQ_DONE) {
        json_object_set_new(o, "result", json_string(ids_err_name(q->code)));
        json_object_set_new(o, "status", json_string(run_status_name(q->status)));
        json_object_set_new(o, "exit_code", json_integer(q->exit_code));
        json_object_set_new(o, "message", js(q->message));
        if (q->dry_run) {
            json_object_set_new(o, "report_bytes", json_integer((json_int_t)q->report.len));
        }
    }
    return o;
}

static struct serve_request *find_request(struct serve_daemon *d, int64_t id)
{
    size_t i;

    for (i = 0; i < d->nreqs; i++) {
        if (d->reqs[i]->id == id) {
            return d->reqs[i];
        }
    }
    return NULL;
}

static void api_cycle(struct serve_daemon *d, const struct serve_call *c, struct serve_reply *r)
{
    json_error_t jerr;
    json_t *body = NULL;
    int full = 0;
    int dry = 0;
    int64_t id;

    if (c->body_len > 0) {
        body = json_loadb(c->body, c->body_len, 0, &jerr);
        if (body == NULL || !json_is_object(body) ||
            json_unpack_ex(body, &jerr, 0, "{s?b,s?b}", "full", &full, "dry_run", &dry) != 0) {
            reply_err(r, MHD_HTTP_BAD_REQUEST, "usage",
                      "body: expected {\"full\": bool, \"dry_run\": bool}: %s", jerr.text);
            json_decref(body);
            return;
        }
        json_decref(body);
    }
    id = serve_enqueue(d, full, dry, "api");
    if (id == 0) {
        reply_err(r, MHD_HTTP_SERVICE_UNAVAILABLE, "busy",
                  "the daemon is stopping or too many cycles are queued");
        return;
    }
    pthread_mutex_lock(&d->mu);
    reply_json(r, MHD_HTTP_ACCEPTED, jrequest(find_request(d, id)));
    pthread_mutex_unlock(&d->mu);
}

static void api_request(struct serve_daemon *d, int64_t id, const char *sub,
                        const struct serve_call *c, struct serve_reply *r)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct serve_request *q;
    struct run_record run = {0};
    int64_t autos[ARRAY_SIZE(q->auto_runs)];
    size_t nauto;
    json_t *o;
    int64_t run_id;
    long long offset;
    long long limit;

    if (sub != NULL && (!arg_long(c, r, "offset", 0, 0, INT64_MAX, &offset) ||
                        !arg_long(c, r, "limit", 1000, 1, 10000, &limit))) {
        return;
    }
    pthread_mutex_lock(&d->mu);
    q = find_request(d, id);
    if (q == NULL) {
        pthread_mutex_unlock(&d->mu);
        reply_err(r, MHD_HTTP_NOT_FOUND, "not-found", "no request %lld (kept: the last %d)",
                  (long long)id, SERVE_REQUESTS_KEPT);
        return;
    }
    if (sub != NULL) {
        size_t total = 0;
        FILE *fp = q->report.len > 0 ? fmemopen(q->report.buf, q->report.len, "r") : NULL;
        json_t *arr =
            fp != NULL ? lines_to_array(fp, (size_t)offset, (size_t)limit, &total) : json_array();

        if (fp != NULL) {
            fclose(fp);
        }
        o = json_pack("{s:I,s:I,s:I,s:o}", "request", (json_int_t)id, "total", (json_int_t)total,
                      "offset", (json_int_t)offset, "report", arr);
        pthread_mutex_unlock(&d->mu);
        reply_json(r, MHD_HTTP_OK, o);
        return;
    }
    o = jrequest(q);
    run_id = q->state == SERVE_REQ_DONE ? q->run : 0;
    nauto = q->state == SERVE_REQ_DONE ? q->nauto : 0;
    memcpy(autos, q->auto_runs, sizeof(autos));
    pthread_mutex_unlock(&d->mu);
    if (run_id > 0 && store_run_get(d->http_store, run_id, &run, &err) == IDS_OK) {
        json_t *children = json_array();
        struct run_counters sum = {0};
        size_t i;

        json_object_set_new(o, "run_record", jrun(&run));
        /* the automatic full steps first, then the cycle's steps */
        for (i = 0; i < nauto; i++) {
            struct run_record ar = {0};

            if (store_run_get(d->http_store, autos[i], &ar, &err) == IDS_OK) {
                json_t *j = jrun(&ar);

                json_object_set_new(j, "automatic", json_true());
                json_array_append_new(children, j);
                counters_add(&sum, &ar.counters);
                run_record_release(&ar);
            }
        }
        if (run_children(d->http_store, run_id, children, &sum, &err) == IDS_OK) {
            json_object_set_new(o, "steps", children);
            json_object_set_new(o, "total_counters", jcounters(&sum));
        } else {
            json_decref(children);
        }
        run_record_release(&run);
    }
    reply_json(r, MHD_HTTP_OK, o);
}

static void api_requests(struct serve_daemon *d, struct serve_reply *r)
{
    json_t *arr = json_array();
    size_t i;

    pthread_mutex_lock(&d->mu);
    for (i = d->nreqs; i > 0; i--) {
        json_array_append_new(arr, jrequest(d->reqs[i - 1]));
    }
    pthread_mutex_unlock(&d->mu);
    reply_json(r, MHD_HTTP_OK, json_pack("{s:o}", "requests", arr));
}

/* ---- status --------------------------------------------------------------- */

/* The newest run that recorded errors: {run, step, connector, start, count}. */
static json_t *latest_errors(struct serve_daemon *d)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct run_error *errs = NULL;
    struct run_record run = {0};
    json_t *o = json_null();
    long count = 0;
    size_t n = 0;

    if (store_run_errors(d->http_store, 0, 0, 1, &errs, &n, &err) != IDS_OK || n == 0) {
        goto done;
    }
    if (store_run_get(d->http_store, errs[0].run, &run, &err) != IDS_OK ||
        store_run_error_count(d->http_store, run.id, &count, &err) != IDS_OK) {
        goto done;
    }
    o = json_pack("{s:I,s:o,s:o,s:o,s:I}", "run", (json_int_t)run.id, "step", js(run.step),
                  "connector", js(run.connector), "start", jtime(run.start_us), "count",
                  (json_int_t)count);

done:
    errors_free(errs, n);
    run_record_release(&run);
    return o;
}

static void api_status(struct serve_daemon *d, struct serve_reply *r)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct run_record *runs = NULL;
    size_t n = 0;
    size_t i;
    json_t *o = json_object();
    json_t *cur = json_null();
    json_t *queue = json_array();
    json_t *conf;
    const struct run_record *cycle = NULL;
    const struct run_record *step = NULL;
    const struct run_record *last = NULL;
    const char *state;

    pthread_mutex_lock(&d->mu);
    state = d->stopping ? "stopping" : d->current ? "running" : "idle";
    if (d->current != NULL) {
        json_decref(cur);
        cur = jrequest(d->current);
    }
    for (i = 0; i < d->nreqs; i++) {
        if (d->reqs[i]->state == SERVE_REQ_QUEUED) {
            json_array_append_new(queue, jrequest(d->reqs[i]));
        }
    }
    json_object_set_new(o, "state", json_string(state));
    json_object_set_new(o, "next_run", jtime(d->stopping ? 0 : d->next_run_us));
    json_object_set_new(o, "last_success", jtime(d->last_success_us));
    conf = json_pack("{s:s,s:o,s:I,s:o,s:o}", "path", d->config_path, "loaded",
                     jtime(d->config_loaded_us), "schedule_seconds",
                     (json_int_t)d->cfg->schedule_seconds, "reload_error", js(d->reload_error),
                     "reload_error_time", jtime(d->reload_error ? d->reload_error_us : 0));
    pthread_mutex_unlock(&d->mu);

    json_object_set_new(o, "version", json_string(IDSYNC_VERSION));
    json_object_set_new(o, "pid", json_integer((json_int_t)getpid()));
    json_object_set_new(o, "started", jtime(d->started_us));
    json_object_set_new(o, "listen", js(d->bound));
    json_object_set_new(o, "tls", json_boolean(d->tls));
    json_object_set_new(o, "auth", json_boolean(d->token != NULL));
    json_object_set_new(o, "config", conf);
    json_object_set_new(o, "current", cur);
    json_object_set_new(o, "queue", queue);

    if (store_runs_list(d->http_store, 0, 100, &runs, &n, &err) != IDS_OK) {
        json_object_set_new(o, "store_error", js(err.msg));
        n = 0;
    }
    for (i = 0; i < n; i++) {
        if (runs[i].status == RUN_RUNNING && strcmp(runs[i].step, "cycle") == 0 && cycle == NULL) {
            cycle = &runs[i];
        } else if (runs[i].status == RUN_RUNNING && step == NULL) {
            step = &runs[i];
        } else if (runs[i].status != RUN_RUNNING && strcmp(runs[i].step, "cycle") == 0 &&
                   last == NULL) {
            last = &runs[i];
        }
    }
    json_object_set_new(o, "running_cycle", cycle ? jrun(cycle) : json_null());
    json_object_set_new(o, "running_step", step ? jrun(step) : json_null());
    if (step != NULL && step->connector != NULL && strcmp(step->step, "export") == 0) {
        /* what an export has left, as committed so far (batch by batch) */
        int64_t cid = 0;
        long left = 0;

        if (store_connector_id(d->http_store, step->connector, &cid, &err) == IDS_OK &&
            store_cs_count(d->http_store, cid, STORE_SEL_PENDING_EXPORT, &left, &err) == IDS_OK) {
            json_object_set_new(json_object_get(o, "running_step"), "pending_exports_left",
                                json_integer(left));
        }
    }
    if (last != NULL) {
        json_t *lj = jrun(last);
        struct run_counters sum = {0};
        long nerr = 0;
        bool any = false;

        for (i = 0; i < n; i++) {
            if (runs[i].parent == last->id) {
                long ne = 0;

                counters_add(&sum, &runs[i].counters);
                if (store_run_error_count(d->http_store, runs[i].id, &ne, &err) == IDS_OK) {
                    nerr += ne;
                }
                any = true;
            }
        }
        if (any) {
            json_object_set_new(lj, "total_counters", jcounters(&sum));
        }
        json_object_set_new(lj, "total_errors", json_integer(nerr));
        json_object_set_new(o, "last_cycle", lj);
    } else {
        json_object_set_new(o, "last_cycle", json_null());
    }
    runs_free(runs, n);
    json_object_set_new(o, "latest_errors", latest_errors(d));
    reply_json(r, MHD_HTTP_OK, o);
}

/* ---- routing ---------------------------------------------------------------- */

void serve_api(struct serve_daemon *d, const struct serve_call *c, struct serve_reply *r)
{
    struct strvec seg = STRVEC_INIT;
    bool get = strcmp(c->method, "GET") == 0 || strcmp(c->method, "HEAD") == 0;
    const char *s0;
    const char *s1;
    const char *s2;
    int64_t id = 0;

    strvec_split(&seg, c->path + 5, '/', true); /* after "/api/" */
    s0 = seg.nr > 0 ? seg.v[0] : "";
    s1 = seg.nr > 1 ? seg.v[1] : NULL;
    s2 = seg.nr > 2 ? seg.v[2] : NULL;
    if (seg.nr > 3) {
        goto not_found;
    }
    if (get && strcmp(s0, "status") == 0 && s1 == NULL) {
        api_status(d, r);
    } else if (get && strcmp(s0, "runs") == 0 && s1 == NULL) {
        api_runs(d, c, r);
    } else if (get && strcmp(s0, "runs") == 0 && strcmp(s1, "series") == 0 && s2 == NULL) {
        api_runs_series(d, c, r);
    } else if (get && strcmp(s0, "runs") == 0 && parse_id(s1, &id) && s2 == NULL) {
        api_run(d, id, r);
    } else if (get && strcmp(s0, "runs") == 0 && parse_id(s1, &id) && strcmp(s2, "errors") == 0) {
        api_errors(d, c, id, r);
    } else if (get && strcmp(s0, "errors") == 0 && s1 == NULL) {
        long long run;

        if (arg_long(c, r, "run", 0, 0, INT64_MAX, &run)) {
            api_errors(d, c, run, r);
        }
    } else if (get && strcmp(s0, "connectors") == 0 && s1 == NULL) {
        api_connectors(d, r);
    } else if (get && strcmp(s0, "cs") == 0 && s1 == NULL) {
        api_cs_search(d, c, r);
    } else if (get && strcmp(s0, "cs") == 0 && parse_id(s1, &id) && s2 == NULL) {
        api_cs_get(d, id, r);
    } else if (get && strcmp(s0, "mv") == 0 && s1 == NULL) {
        api_mv_search(d, c, r);
    } else if (get && strcmp(s0, "mv") == 0 && parse_id(s1, &id) && s2 == NULL) {
        api_mv_get(d, id, r);
    } else if (get && strcmp(s0, "pending") == 0 && s1 == NULL) {
        api_pending(d, c, r);
    } else if (get && strcmp(s0, "pending") == 0 && strcmp(s1, "report") == 0 && s2 == NULL) {
        api_pending_report(d, c, r);
    } else if (!get && strcmp(s0, "cycle") == 0 && s1 == NULL) {
        api_cycle(d, c, r);
    } else if (get && strcmp(s0, "requests") == 0 && s1 == NULL) {
        api_requests(d, r);
    } else if (get && strcmp(s0, "requests") == 0 && parse_id(s1, &id) &&
               (s2 == NULL || strcmp(s2, "report") == 0)) {
        api_request(d, id, s2, c, r);
    } else if (!get && strcmp(s0, "reload") == 0 && s1 == NULL) {
        serve_request_reload(d);
        reply_json(r, MHD_HTTP_ACCEPTED, json_pack("{s:s}", "reload", "requested"));
    } else if (get && strcmp(s0, "reconnect") == 0 && s1 != NULL && strcmp(s1, "preview") == 0 &&
               s2 == NULL) {
        api_reconnect_preview(d, c, r);
    } else {
        goto not_found;
    }
    strvec_clear(&seg);
    return;

not_found:
    reply_err(r, MHD_HTTP_NOT_FOUND, "not-found", "no API endpoint %s %s", c->method, c->path);
    strvec_clear(&seg);
}
