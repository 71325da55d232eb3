/* scim_export.c - the SCIM connector's export: every change becomes an
 * operation (struct scim_op) that runs one or more requests in sequence
 * (POST; PATCH chunks; GET + PUT; DELETE; look-ups after a lost create or a
 * conflict). Up to `concurrency` requests are in flight at once on libcurl's
 * multi handle; the window halves on a 429 and grows back additively.
 * Retries use exponential backoff with jitter, or the service's Retry-After.
 * A POST that may have reached the service is never sent again before the
 * object was looked up by its anchor carrier. */
#include "connector/scim_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/banned.h"

enum op_step {
    OP_POST,
    OP_FIND_CREATED, /* GET ?filter=carrier eq "..." after a lost POST or a 409 */
    OP_HOLDER,       /* GET ?filter=attr eq "..." to name who holds a unique value */
    OP_PATCH,
    OP_GET, /* GET the resource for the PUT fallback */
    OP_PUT,
    OP_DELETE,
};

struct scim_op {
    struct scim_op *next;
    struct scim_op *all_prev, *all_next; /* scim_conn.all_ops */
    struct scim_conn *c;
    uint64_t tag;
    struct change *ch;
    const struct scim_rtype *t;
    enum op_step step;
    int attempt; /* failures of the current step */
    bool auth_retried;
    bool after_conflict; /* OP_FIND_CREATED follows a 409 */
    json_t *bodies;      /* PATCH bodies */
    size_t bi;           /* next PATCH body */
    json_t *put;         /* PUT body */
    struct strbuf post;  /* POST body */
    char *sent_dn;       /* POST: the name (dn_attr) it sends */
    char *carrier;       /* anchor carrier value of an ADD */
    char *conflict_attr; /* 409: the attribute and value in conflict */
    char *conflict_value;
    struct strbuf conflict_msg;
    struct http_request req;
    json_t *answer; /* its part of a /Bulk answer, parsed: op_result takes it
                       instead of parsing req.response */
    long long due_ms;
    struct export_result res;
};

/* ---- queues ------------------------------------------------------------- */

static void queue_push(struct scim_conn *c, struct scim_op *op, bool front)
{
    op->next = NULL;
    if (front) {
        op->next = c->queue_head;
        c->queue_head = op;
        if (c->queue_tail == NULL) {
            c->queue_tail = op;
        }
        return;
    }
    if (c->queue_tail != NULL) {
        c->queue_tail->next = op;
    } else {
        c->queue_head = op;
    }
    c->queue_tail = op;
}

static void ready_push(struct scim_conn *c, struct scim_op *op)
{
    op->next = NULL;
    if (c->ready_tail != NULL) {
        c->ready_tail->next = op;
    } else {
        c->ready_head = op;
    }
    c->ready_tail = op;
}

static void op_free(struct scim_op *op)
{
    if (op == NULL) {
        return;
    }
    if (op->all_prev != NULL) {
        op->all_prev->all_next = op->all_next;
    } else {
        op->c->all_ops = op->all_next;
    }
    if (op->all_next != NULL) {
        op->all_next->all_prev = op->all_prev;
    }
    if (op->req.running) {
        http_cancel(op->c->http, &op->req);
    }
    change_free(op->ch);
    json_decref(op->bodies);
    json_decref(op->put);
    json_decref(op->answer);
    strbuf_release(&op->post);
    free(op->sent_dn);
    free(op->carrier);
    free(op->conflict_attr);
    free(op->conflict_value);
    strbuf_release(&op->conflict_msg);
    http_request_release(&op->req);
    export_result_release(&op->res);
    free(op);
}

static void bulk_free(struct scim_bulk *b);

void scim_export_release(struct scim_conn *c)
{
    while (c->bulks != NULL) {
        bulk_free(c->bulks); /* its operations are in all_ops */
    }
    while (c->all_ops != NULL) {
        op_free(c->all_ops);
    }
    c->queue_head = c->queue_tail = NULL;
    c->ready_head = c->ready_tail = NULL;
    c->active = 0;
    c->outstanding = 0;
}

/* ---- results -------------------------------------------------------------- */

static void finish_ok(struct scim_op *op, const char *anchor, const char *dn)
{
    op->res.code = IDS_OK;
    free(op->res.anchor);
    op->res.anchor = xstrdup_or_null(anchor);
    free(op->res.dn);
    op->res.dn = xstrdup_or_null(dn);
    ready_push(op->c, op);
}

static void finish_err(struct scim_op *op, bool retryable)
{
    op->res.code = op->res.err.code != IDS_OK ? op->res.err.code : IDS_EREJECTED;
    op->res.retryable = retryable;
    ready_push(op->c, op);
}

static const char *op_what(const struct scim_op *op)
{
    switch (op->step) {
    case OP_POST:
        return "create";
    case OP_FIND_CREATED:
        return "checking whether the create succeeded";
    case OP_HOLDER:
        return "looking up the holder of a unique value";
    case OP_PATCH:
        return "update (PATCH)";
    case OP_GET:
        return "reading for an update (PUT)";
    case OP_PUT:
        return "update (PUT)";
    case OP_DELETE:
        return "delete";
    }
    return "request";
}

static const char *mod_value(const struct change *ch, const char *attr)
{
    size_t i;

    for (i = 0; ch != NULL && i < ch->nmods; i++) {
        const struct mod *m = &ch->mods[i];

        if (m->op != MOD_DELETE && m->attr.nvals > 0 && !(m->attr.flags & ATTR_JSON) &&
            strcasecmp(m->attr.name, attr) == 0) {
            return m->attr.vals[0].data;
        }
    }
    return NULL;
}

/* Fill op->res.err from the op's failed request, naming the object and the
 * attribute the service complains about. */
static void fail_from_request(struct scim_op *op)
{
    struct scim_conn *c = op->c;
    struct strbuf detail = STRBUF_INIT;
    struct strbuf type = STRBUF_INIT;
    const char *attr;

    const char *who = op->ch->anchor;

    if (who == NULL) {
        who = mod_value(op->ch, op->t->dn_attr);
    }
    if (who == NULL) {
        who = op->carrier != NULL ? op->carrier : "(new)";
    }
    scim_request_error(c, &op->req, &op->res.err, "%s %s: %s", op->t->name, who, op_what(op));
    if (op->req.curl_code == 0 && op->req.status >= 400 && op->req.status < 500) {
        scim_error_parse(op->req.response.buf, op->req.response.len, &detail, &type);
        attr = scim_error_attr(op->ch, detail.buf);
        if (attr != NULL) {
            size_t n = strlen(op->res.err.msg);

            snprintf(op->res.err.msg + n, sizeof(op->res.err.msg) - n, " (attribute %s)", attr);
        }
    }
    strbuf_release(&detail);
    strbuf_release(&type);
}

/* ---- building requests ------------------------------------------------------ */

static bool use_patch(const struct scim_conn *c)
{
    return c->patch_cfg == 1 || (c->patch_cfg == -1 && c->patch_supported);
}

static void resource_path(const struct scim_op *op, struct strbuf *out)
{
    strbuf_addstr(out, op->t->endpoint);
    strbuf_addch(out, '/');
    http_url_encode(out, op->ch->anchor != NULL ? op->ch->anchor : "");
}

static void filter_url(struct scim_op *op, const char *attr, const char *value)
{
    struct strbuf f = STRBUF_INIT;

    scim_filter_eq(&f, attr, value);
    strbuf_addstr(&op->req.url, "?startIndex=1&count=2&filter=");
    http_url_encode(&op->req.url, f.buf);
    if (!op->c->no_projection) {
        strbuf_addstr(&op->req.url, "&attributes=id%2C");
        http_url_encode(&op->req.url, op->t->dn_attr);
        if (strcasecmp(op->t->carrier, op->t->dn_attr) != 0) {
            strbuf_addstr(&op->req.url, "%2C");
            http_url_encode(&op->req.url, op->t->carrier);
        }
    }
    strbuf_release(&f);
}

static void op_done_cb(struct http_request *r);
static bool bulkable(const struct scim_op *op);
static bool bulk_start(struct scim_conn *c, struct scim_op *first);

static enum ids_err op_start(struct scim_op *op, struct ids_error *err)
{
    struct scim_conn *c = op->c;
    struct strbuf path = STRBUF_INIT;
    enum ids_err ret;
    char *text;

    ret = scim_auth_refresh(c, false, err);
    if (ret != IDS_OK) {
        return ret;
    }
    switch (op->step) {
    case OP_POST:
        scim_request_prepare(c, &op->req, "POST", op->t->endpoint);
        strbuf_addbuf(&op->req.body, &op->post);
        op->req.no_resend = true;
        break;
    case OP_FIND_CREATED:
        scim_request_prepare(c, &op->req, "GET", op->t->endpoint);
        filter_url(op, op->t->carrier, op->carrier);
        break;
    case OP_HOLDER:
        scim_request_prepare(c, &op->req, "GET", op->t->endpoint);
        filter_url(op, op->conflict_attr, op->conflict_value);
        break;
    case OP_PATCH:
        resource_path(op, &path);
        scim_request_prepare(c, &op->req, "PATCH", path.buf);
        text = json_dumps(json_array_get(op->bodies, op->bi), JSON_COMPACT);
        strbuf_addstr(&op->req.body, text != NULL ? text : "{}");
        free(text);
        break;
    case OP_GET:
        resource_path(op, &path);
        scim_request_prepare(c, &op->req, "GET", path.buf);
        break;
    case OP_PUT:
        resource_path(op, &path);
        scim_request_prepare(c, &op->req, "PUT", path.buf);
        text = json_dumps(op->put, JSON_COMPACT);
        strbuf_addstr(&op->req.body, text != NULL ? text : "{}");
        free(text);
        break;
    case OP_DELETE:
        resource_path(op, &path);
        scim_request_prepare(c, &op->req, "DELETE", path.buf);
        break;
    }
    strbuf_release(&path);
    op->req.done = op_done_cb;
    op->req.arg = op;
    ret = http_start(c->http, &op->req, err);
    if (ret == IDS_OK) {
        c->active++;
    }
    return ret;
}

/* Does `op` wait: not due yet, or (holding) one that goes in a /Bulk
 * request that is not full yet. */
static bool op_waits(const struct scim_op *op, long long now, bool holding)
{
    return op->due_ms > now || (holding && bulkable(op));
}

/* Hold bulkable operations back? While the engine submits (bulk_hold)
 * and fewer are due than a /Bulk request takes. */
static bool bulk_holding(const struct scim_conn *c, long long now)
{
    const struct scim_op *op;
    long due = 0;

    if (!c->use_bulk || !c->bulk_hold) {
        return false;
    }
    for (op = c->queue_head; op != NULL && due < c->bulk_ops; op = op->next) {
        due += op->due_ms <= now && bulkable(op);
    }
    return due < c->bulk_ops;
}

/* Start queued operations that are due, within the window. Creates and
 * deletes that are due together go in one /Bulk request when the service
 * has it. */
static void pump(struct scim_conn *c)
{
    for (;;) {
        long long now = http_now_ms();
        bool holding = bulk_holding(c, now);
        struct scim_op *prev = NULL;
        struct scim_op *op = c->queue_head;
        struct ids_error err = IDS_ERROR_INIT;

        if (now < c->pause_until_ms || (double)c->active >= (c->window >= 1.0 ? c->window : 1.0)) {
            return;
        }
        while (op != NULL && op_waits(op, now, holding)) {
            prev = op;
            op = op->next;
        }
        if (op == NULL) {
            return;
        }
        if (c->use_bulk && bulkable(op) && bulk_start(c, op)) {
            continue;
        }
        /* bulk_start may have put operations back: find op again */
        prev = NULL;
        for (op = c->queue_head; op != NULL && op_waits(op, now, holding); op = op->next) {
            prev = op;
        }
        if (op == NULL) {
            return;
        }
        if (prev != NULL) {
            prev->next = op->next;
        } else {
            c->queue_head = op->next;
        }
        if (c->queue_tail == op) {
            c->queue_tail = prev;
        }
        op->next = NULL;
        if (op_start(op, &err) != IDS_OK) {
            op->res.err = err;
            finish_err(op, true);
        }
    }
}

/* Run the transfers once, waiting at most wait_ms when nothing is ready. */
static enum ids_err run_once(struct scim_conn *c, long wait_ms, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;

    if (c->active > 0) {
        ret = http_run(c->http, wait_ms, err);
    } else if (wait_ms > 0) {
        struct timespec ts = {wait_ms / 1000, (wait_ms % 1000) * 1000000L};

        nanosleep(&ts, NULL);
    }
    pump(c);
    return ret;
}

/* How long to wait for I/O before something queued becomes due: operations
 * that are due already wait for a free slot, which only I/O brings (waiting
 * 0 for them would spin). */
static long next_wait(struct scim_conn *c)
{
    long long now = http_now_ms();
    long long w = 1000;
    bool slot = (double)c->active < (c->window >= 1.0 ? c->window : 1.0);
    struct scim_op *op;

    for (op = c->queue_head; op != NULL; op = op->next) {
        long long d = op->due_ms > c->pause_until_ms ? op->due_ms : c->pause_until_ms;

        if (d <= now && !slot) {
            continue;
        }
        if (d - now < w) {
            w = d - now;
        }
    }
    return w < 0 ? 0 : (long)w;
}

/* ---- handling answers ------------------------------------------------------- */

/* Queue op again: a retry (count) goes to the back, behind what waits
 * already (a throttled service gets everyone's turn in order); the next
 * step of an operation in progress goes to the front. */
static void requeue(struct scim_op *op, long long wait_ms, bool count)
{
    if (count) {
        op->attempt++;
        op->c->retried++;
    }
    op->due_ms = http_now_ms() + wait_ms;
    queue_push(op->c, op, !count);
}

static long long backoff(struct scim_op *op)
{
    struct scim_conn *c = op->c;
    long long ra = 0;

    if (op->req.curl_code == 0 && op->req.retry_after.len > 0 &&
        scim_retry_after_ms(op->req.retry_after.buf, time(NULL), &ra)) {
        return ra < c->retry_max_wait_ms ? ra : c->retry_max_wait_ms;
    }
    return scim_backoff_ms(op->attempt + 1, c->backoff_base_ms, c->retry_max_wait_ms,
                           scim_random(c));
}

static bool transient(const struct http_request *r)
{
    return r->curl_code != 0 || scim_status_retryable(r->status);
}

static char *json_str_at(json_t *res, const char *key)
{
    json_t *v = json_object_get(res, key);

    if (v == NULL) {
        const char *k;
        json_t *x;

        json_object_foreach(res, k, x)
        {
            if (strcasecmp(k, key) == 0) {
                v = x;
                break;
            }
        }
    }
    return json_is_string(v) ? xstrdup(json_string_value(v)) : NULL;
}

/* A 409: note the service's message, the attribute in conflict and its
 * value (conflict_msg, conflict_attr, conflict_value). */
static void conflict_note(struct scim_op *op)
{
    struct strbuf detail = STRBUF_INIT;
    struct strbuf type = STRBUF_INIT;
    const char *attr;
    const char *value;

    fail_from_request(op);
    scim_error_parse(op->req.response.buf, op->req.response.len, &detail, &type);
    attr = scim_error_attr(op->ch, detail.buf);
    if (attr == NULL && mod_value(op->ch, op->t->dn_attr) != NULL) {
        attr = op->t->dn_attr;
    }
    value = attr != NULL ? mod_value(op->ch, attr) : NULL;
    strbuf_reset(&op->conflict_msg);
    strbuf_addstr(&op->conflict_msg, op->res.err.msg);
    free(op->conflict_attr);
    free(op->conflict_value);
    op->conflict_attr = value != NULL ? xstrdup(attr) : NULL;
    op->conflict_value = xstrdup_or_null(value);
    strbuf_release(&detail);
    strbuf_release(&type);
}

/* After conflict_note: look up who holds the value, or report. */
static void conflict_next(struct scim_op *op)
{
    if (op->conflict_value != NULL && op->c->filter_supported) {
        op->step = OP_HOLDER;
        op->attempt = 0;
        requeue(op, 0, false);
        return;
    }
    ids_error_set_detail(&op->res.err, IDS_EEXIST, 409, "%s", op->conflict_msg.buf);
    finish_err(op, false);
}

static void conflict(struct scim_op *op)
{
    conflict_note(op);
    conflict_next(op);
}

static void handle_post(struct scim_op *op, json_t *body)
{
    struct http_request *r = &op->req;

    if (r->status == 200 || r->status == 201) {
        char *id = json_str_at(body, "id");
        char *dn = json_str_at(body, op->t->dn_attr);

        if (id == NULL) {
            ids_error_set(&op->res.err, IDS_EPROTO,
                          "%s create: the service answered %ld without an id", op->t->name,
                          r->status);
            finish_err(op, false);
        } else {
            finish_ok(op, id, dn);
        }
        free(id);
        free(dn);
        return;
    }
    if (r->status == 409) {
        if (op->carrier != NULL && op->c->filter_supported) {
            /* ours, created by an earlier attempt? */
            conflict_note(op);
            op->after_conflict = true;
            op->step = OP_FIND_CREATED;
            op->attempt = 0;
            requeue(op, 0, false);
            return;
        }
        conflict(op);
        return;
    }
    if (transient(r) && op->attempt < op->c->max_retries) {
        long long wait = backoff(op);

        if (r->status == 429 || r->status == 503 || (r->curl_code != 0 && !r->maybe_processed)) {
            requeue(op, wait, true); /* not processed: send again */
            return;
        }
        if (op->carrier != NULL && op->c->filter_supported) {
            op->after_conflict = false;
            op->step = OP_FIND_CREATED;
            requeue(op, wait, true);
            return;
        }
        fail_from_request(op);
        {
            size_t n = strlen(op->res.err.msg);

            snprintf(op->res.err.msg + n, sizeof(op->res.err.msg) - n,
                     "; not sent again: the create may have succeeded and has no %s to check it",
                     op->t->carrier);
        }
        finish_err(op, true);
        return;
    }
    fail_from_request(op);
    finish_err(op, transient(r));
}

static void handle_find(struct scim_op *op, json_t *body)
{
    struct http_request *r = &op->req;
    json_t *list;

    if (r->status != 200) {
        if (transient(r) && op->attempt < op->c->max_retries) {
            requeue(op, backoff(op), true);
            return;
        }
        fail_from_request(op);
        finish_err(op, transient(r));
        return;
    }
    list = json_object_get(body, "Resources");
    if (json_array_size(list) > 0) {
        json_t *res = json_array_get(list, 0);
        char *id = json_str_at(res, "id");
        char *dn = json_str_at(res, op->t->dn_attr);

        if (json_array_size(list) > 1) {
            log_warn("scim-adopt",
                     "connector=%s type=%s %s=\"%s\": more than one object; the first is kept",
                     op->c->conn.name, op->t->name, op->t->carrier, op->carrier);
        }
        if (id != NULL) {
            op->c->adopted++;
            log_info("scim-adopt",
                     "connector=%s type=%s id=%s: an earlier create had succeeded (found by %s)",
                     op->c->conn.name, op->t->name, id, op->t->carrier);
            finish_ok(op, id, dn);
        } else {
            ids_error_set(&op->res.err, IDS_EPROTO, "%s: a found object without an id",
                          op->t->name);
            finish_err(op, true);
        }
        free(id);
        free(dn);
        return;
    }
    if (op->after_conflict) {
        conflict_next(op);
        return;
    }
    /* not created: send it again */
    op->step = OP_POST;
    requeue(op, 0, false);
}

static void handle_holder(struct scim_op *op, json_t *body)
{
    json_t *list = json_object_get(body, "Resources");
    json_t *res = json_array_get(list, 0);
    struct strbuf sb = STRBUF_INIT;

    strbuf_addbuf(&sb, &op->conflict_msg);
    if (op->req.status == 200 && res != NULL) {
        char *id = json_str_at(res, "id");
        char *dn = json_str_at(res, op->t->dn_attr);
        char *carrier = json_str_at(res, op->t->carrier);

        strbuf_addf(&sb, "; %s \"%s\" is held by %s id=%s", op->conflict_attr, op->conflict_value,
                    op->t->resource_type, id ? id : "?");
        if (dn != NULL) {
            strbuf_addf(&sb, " (%s %s", op->t->dn_attr, dn);
            if (carrier != NULL) {
                strbuf_addf(&sb, ", %s %s", op->t->carrier, carrier);
            } else {
                strbuf_addf(&sb, ", no %s: not managed by idsync", op->t->carrier);
            }
            strbuf_addch(&sb, ')');
        }
        free(id);
        free(dn);
        free(carrier);
    } else {
        strbuf_addf(&sb, "; the holder of %s \"%s\" was not found", op->conflict_attr,
                    op->conflict_value);
    }
    ids_error_set_detail(&op->res.err, IDS_EEXIST, 409, "%s", sb.buf);
    strbuf_release(&sb);
    finish_err(op, false);
}

static void vanished(struct scim_op *op)
{
    fail_from_request(op);
    ids_error_set_detail(&op->res.err, IDS_ENOTFOUND, 404,
                         "%s %s vanished in the target (404 on %s); a full import stages its "
                         "deletion and the next sync provisions it again",
                         op->t->name, op->ch->anchor ? op->ch->anchor : "", op_what(op));
    finish_err(op, false);
}

static char *dn_after(struct scim_op *op, json_t *body)
{
    char *dn = json_is_object(body) ? json_str_at(body, op->t->dn_attr) : NULL;
    const char *v;

    if (dn != NULL) {
        return dn;
    }
    v = mod_value(op->ch, op->t->dn_attr);
    return v != NULL ? xstrdup(v) : NULL;
}

static void handle_update(struct scim_op *op, json_t *body)
{
    struct http_request *r = &op->req;
    struct strbuf detail = STRBUF_INIT;
    struct strbuf type = STRBUF_INIT;

    if (r->status >= 200 && r->status < 300) {
        if (op->step == OP_PATCH && op->bi + 1 < json_array_size(op->bodies)) {
            op->bi++;
            op->attempt = 0;
            requeue(op, 0, false);
            goto done;
        }
        {
            char *dn = dn_after(op, body);

            finish_ok(op, NULL, dn);
            free(dn);
        }
        goto done;
    }
    if (r->status == 404) {
        vanished(op);
        goto done;
    }
    if (r->status == 409) {
        conflict(op);
        goto done;
    }
    scim_error_parse(r->response.buf, r->response.len, &detail, &type);
    if (op->step == OP_PATCH && r->status == 400 && op->attempt > 0 &&
        strcasecmp(type.buf, "noTarget") == 0) {
        /* a retried PATCH whose removals were done by the lost attempt */
        op->bi++;
        if (op->bi < json_array_size(op->bodies)) {
            op->attempt = 0;
            requeue(op, 0, false);
        } else {
            char *dn = dn_after(op, NULL);

            finish_ok(op, NULL, dn);
            free(dn);
        }
        goto done;
    }
    if (op->step == OP_PATCH && (r->status == 501 || r->status == 405)) {
        /* PATCH refused despite discovery: whole-resource updates from now on */
        log_warn("scim-patch", "connector=%s: PATCH answered %ld; using GET + PUT",
                 op->c->conn.name, r->status);
        op->c->patch_cfg = 0;
        op->step = OP_GET;
        op->attempt = 0;
        requeue(op, 0, false);
        goto done;
    }
    if (transient(r) && op->attempt < op->c->max_retries) {
        if (op->step == OP_PUT) {
            op->step = OP_GET; /* read it again: it may have changed meanwhile */
        }
        requeue(op, backoff(op), true);
        goto done;
    }
    fail_from_request(op);
    finish_err(op, transient(r));

done:
    strbuf_release(&detail);
    strbuf_release(&type);
}

static void handle_get(struct scim_op *op, json_t *body)
{
    struct http_request *r = &op->req;
    struct ids_error err = IDS_ERROR_INIT;
    size_t i;

    if (r->status == 404) {
        vanished(op);
        return;
    }
    if (r->status != 200 || !json_is_object(body)) {
        if (transient(r) && op->attempt < op->c->max_retries) {
            requeue(op, backoff(op), true);
            return;
        }
        fail_from_request(op);
        finish_err(op, transient(r));
        return;
    }
    json_decref(op->put);
    op->put = json_deep_copy(body);
    json_object_del(op->put, "meta");
    for (i = 0; i < json_array_size(op->bodies); i++) {
        if (scim_patch_apply(op->put, json_object_get(json_array_get(op->bodies, i), "Operations"),
                             &err) != IDS_OK) {
            op->res.err = err;
            finish_err(op, false);
            return;
        }
    }
    op->step = OP_PUT;
    requeue(op, 0, false);
}

static void handle_delete(struct scim_op *op)
{
    struct http_request *r = &op->req;

    if ((r->status >= 200 && r->status < 300) || r->status == 404) {
        finish_ok(op, NULL, NULL); /* 404: already gone */
        return;
    }
    if (transient(r) && op->attempt < op->c->max_retries) {
        requeue(op, backoff(op), true);
        return;
    }
    fail_from_request(op);
    finish_err(op, transient(r));
}

/* Throttled (429): pause all sending, halve the window. */
static void throttle(struct scim_conn *c, long long wait)
{
    c->throttled++;
    c->window = c->window / 2 >= 1.0 ? c->window / 2 : 1.0;
    if (http_now_ms() + wait > c->pause_until_ms) {
        c->pause_until_ms = http_now_ms() + wait;
    }
    log_info("scim-throttled", "connector=%s wait_ms=%lld window=%.0f", c->conn.name, wait,
             c->window);
}

/* The answer to op's current request is in op->req: decide what next. */
static void op_result(struct scim_op *op)
{
    struct http_request *r = &op->req;
    struct scim_conn *c = op->c;
    json_t *body = NULL;

    if (r->status == 401 && c->auth == SCIM_AUTH_OAUTH && !op->auth_retried) {
        struct ids_error err = IDS_ERROR_INIT;

        op->auth_retried = true;
        if (scim_auth_refresh(c, true, &err) != IDS_OK) {
            op->res.err = err;
            finish_err(op, true);
            return;
        }
        requeue(op, 0, false);
        return;
    }
    if (r->status == 429) {
        long long wait = backoff(op);

        throttle(c, wait);
        if (op->attempt < c->max_retries) {
            requeue(op, wait, true);
            return;
        }
    } else if (r->curl_code == 0 && r->status > 0 && r->status < 500 &&
               c->window < (double)c->concurrency) {
        c->window += 1.0 / c->window; /* additive increase */
        if (c->window > (double)c->concurrency) {
            c->window = (double)c->concurrency;
        }
    }
    if (op->answer != NULL) {
        body = op->answer;
        op->answer = NULL;
    } else if (r->response.len > 0) {
        json_error_t jerr;

        body = json_loadb(r->response.buf, r->response.len, 0, &jerr);
    }
    switch (op->step) {
    case OP_POST:
        handle_post(op, body);
        break;
    case OP_FIND_CREATED:
        handle_find(op, body);
        break;
    case OP_HOLDER:
        handle_holder(op, body);
        break;
    case OP_PATCH:
    case OP_PUT:
        handle_update(op, body);
        break;
    case OP_GET:
        handle_get(op, body);
        break;
    case OP_DELETE:
        handle_delete(op);
        break;
    }
    json_decref(body);
}

static void op_done_cb(struct http_request *r)
{
    struct scim_op *op = r->arg;

    op->c->active--;
    if (r->http_version != 0) {
        op->c->http_version = r->http_version;
    }
    op_result(op);
}

/* ---- /Bulk ----------------------------------------------------------------- */

#define SCIM_BULK_REQUEST "urn:ietf:params:scim:api:messages:2.0:BulkRequest"

/* One /Bulk request carrying the first attempt of several creates and
 * deletes. Its answer is handed to each operation as if it had been its own
 * request (op->req's out fields), so retries, look-ups after a lost create
 * and error messages are the same as for single requests. */
struct scim_bulk {
    struct scim_bulk *next; /* scim_conn.bulks */
    struct scim_conn *c;
    struct http_request req;
    struct scim_op **ops;
    size_t n;
};

static bool bulkable(const struct scim_op *op)
{
    return op->attempt == 0 && !op->auth_retried &&
           (op->step == OP_POST || (op->step == OP_DELETE && op->ch->anchor != NULL));
}

static void bulk_free(struct scim_bulk *b)
{
    struct scim_bulk **pp;

    for (pp = &b->c->bulks; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    }
    if (b->req.running) {
        http_cancel(b->c->http, &b->req);
    }
    http_request_release(&b->req);
    free(b->ops);
    free(b);
}

/* Give op the outcome of its part of the bulk request. */
static void op_set_outcome(struct scim_op *op, const struct http_request *from, long status,
                           json_t *response, const char *error)
{
    struct http_request *r = &op->req;
    char *text;

    r->finished = true;
    /* no result for it in an answer: as if the answer had been cut */
    r->curl_code = from->curl_code != 0 ? from->curl_code : (status == 0 ? 18 : 0);
    r->status = r->curl_code != 0 ? 0 : status;
    r->maybe_processed = from->maybe_processed || (from->curl_code == 0 && status == 0);
    snprintf(r->error, sizeof(r->error), "%s", error != NULL ? error : from->error);
    strbuf_reset(&r->response);
    strbuf_reset(&r->retry_after);
    strbuf_addbuf(&r->retry_after, &from->retry_after);
    json_decref(op->answer);
    op->answer = NULL;
    if (response != NULL) {
        op->answer = json_incref(response);
        if (status < 200 || status >= 300) {
            /* error messages are read from the text */
            text = json_dumps(response, JSON_COMPACT);
            strbuf_addstr(&r->response, text != NULL ? text : "");
            free(text);
        }
    } else if (status == 0 || from->curl_code != 0 || from->status != 200) {
        strbuf_addbuf(&r->response, &from->response);
    }
}

static void bulk_done_cb(struct http_request *r)
{
    struct scim_bulk *b = r->arg;
    struct scim_conn *c = b->c;
    json_error_t jerr;
    json_t *body = NULL;
    json_t *results;
    size_t i;

    c->active--;
    if (r->http_version != 0) {
        c->http_version = r->http_version;
    }
    if (r->curl_code == 0 && r->status == 429) {
        struct scim_op *op0 = b->ops[0];

        op0->req.curl_code = 0;
        strbuf_reset(&op0->req.retry_after);
        strbuf_addbuf(&op0->req.retry_after, &r->retry_after);
        throttle(c, backoff(op0));
        for (i = 0; i < b->n; i++) {
            requeue(b->ops[i], c->pause_until_ms - http_now_ms(), true);
        }
        bulk_free(b);
        return;
    }
    if (r->curl_code == 0 && r->status == 401 && c->auth == SCIM_AUTH_OAUTH) {
        struct ids_error err = IDS_ERROR_INIT;
        bool ok = scim_auth_refresh(c, true, &err) == IDS_OK;

        for (i = 0; i < b->n; i++) {
            b->ops[i]->auth_retried = true; /* not bulked again */
            if (ok) {
                requeue(b->ops[i], 0, false);
            } else {
                b->ops[i]->res.err = err;
                finish_err(b->ops[i], true);
            }
        }
        bulk_free(b);
        return;
    }
    if (r->curl_code == 0 && r->status >= 400 && r->status < 500 && r->status != 408) {
        /* the service refuses the /Bulk request itself (size, syntax, not
         * there after all): one request per change from now on */
        log_warn("scim-bulk", "connector=%s: /Bulk answered HTTP %ld; sending single requests",
                 c->conn.name, r->status);
        c->use_bulk = false;
        for (i = 0; i < b->n; i++) {
            requeue(b->ops[i], 0, false);
        }
        bulk_free(b);
        return;
    }
    if (r->curl_code == 0 && r->status == 200) {
        body = json_loadb(r->response.buf, r->response.len, 0, &jerr);
    }
    results = json_object_get(body, "Operations");
    if (!json_is_array(results)) {
        /* the whole request failed: each operation failed the same way */
        for (i = 0; i < b->n; i++) {
            op_set_outcome(b->ops[i], r, r->status, NULL, NULL);
            op_result(b->ops[i]);
        }
        json_decref(body);
        bulk_free(b);
        return;
    }
    c->bulk_requests++;
    for (i = 0; i < b->n; i++) {
        struct scim_op *op = b->ops[i];
        json_t *res = NULL;
        json_t *resp;
        long status;
        const char *st;
        size_t k;
        char bulk_id[32];

        snprintf(bulk_id, sizeof(bulk_id), "%llu", (unsigned long long)op->tag);
        /* services answer in the order of the request: look there first */
        for (k = 0; k <= json_array_size(results) && res == NULL; k++) {
            size_t at = k == 0 ? i : k - 1;
            json_t *x = json_array_get(results, at);
            const char *bid = json_string_value(json_object_get(x, "bulkId"));

            if (x != NULL && (k == 0 || at != i) &&
                (op->step == OP_POST ? (bid != NULL && strcmp(bid, bulk_id) == 0)
                                     : (at == i && bid == NULL))) {
                res = x;
            }
        }
        if (res == NULL) {
            op_set_outcome(op, r, 0, NULL, "no result for this operation in the /Bulk answer");
            op_result(op);
            continue;
        }
        st = json_string_value(json_object_get(res, "status"));
        status = st != NULL ? strtol(st, NULL, 10)
                            : (long)json_integer_value(json_object_get(res, "status"));
        resp = json_object_get(res, "response");
        if (op->step == OP_POST && status >= 200 && status < 300 && !json_is_object(resp)) {
            /* the id is the last segment of the location */
            const char *loc = json_string_value(json_object_get(res, "location"));
            const char *slash = loc != NULL ? strrchr(loc, '/') : NULL;
            json_t *made = json_object();

            if (slash != NULL && slash[1] != '\0') {
                json_object_set_new(made, "id", json_string(slash + 1));
            }
            /* no resource in the answer: the name is the one sent, as a
             * single POST's answer would have it */
            if (op->sent_dn != NULL) {
                json_object_set_new(made, op->t->dn_attr, json_string(op->sent_dn));
            }
            op_set_outcome(op, r, status, made, NULL);
            json_decref(made);
        } else {
            op_set_outcome(op, r, status, resp, NULL);
        }
        op_result(op);
    }
    json_decref(body);
    bulk_free(b);
}

/* Start a /Bulk request with up to bulk_ops due bulkable operations from
 * the queue (op first). Returns false when op should go alone. */
static bool bulk_start(struct scim_conn *c, struct scim_op *first)
{
    struct scim_bulk *b;
    struct scim_op *prev = NULL;
    struct scim_op *op;
    struct ids_error err = IDS_ERROR_INIT;
    long long now = http_now_ms();
    size_t bytes = 200;
    size_t cap = c->bulk_max_payload > 0 ? (size_t)c->bulk_max_payload * 9 / 10 : 1048576;
    size_t i;

    b = xcalloc(1, sizeof(*b));
    b->c = c;
    b->next = c->bulks;
    c->bulks = b;
    b->ops = xcalloc((size_t)c->bulk_ops, sizeof(*b->ops));
    http_request_init(&b->req);
    /* take `first` and the due bulkable operations behind it */
    op = c->queue_head;
    while (op != NULL && b->n < (size_t)c->bulk_ops) {
        struct scim_op *next = op->next;
        size_t need = op->step == OP_POST ? op->post.len + 120 : 120;

        if ((op == first || (op->due_ms <= now && bulkable(op))) && bytes + need < cap) {
            if (prev != NULL) {
                prev->next = next;
            } else {
                c->queue_head = next;
            }
            if (c->queue_tail == op) {
                c->queue_tail = prev;
            }
            op->next = NULL;
            b->ops[b->n++] = op;
            bytes += need;
        } else {
            prev = op;
        }
        op = next;
    }
    if (b->n < 2) {
        /* nothing to group: put it back, it goes alone */
        for (i = 0; i < b->n; i++) {
            queue_push(c, b->ops[i], true);
        }
        bulk_free(b);
        return false;
    }
    if (scim_auth_refresh(c, false, &err) != IDS_OK) {
        for (i = 0; i < b->n; i++) {
            b->ops[i]->res.err = err;
            finish_err(b->ops[i], true);
        }
        bulk_free(b);
        return true;
    }
    scim_request_prepare(c, &b->req, "POST", "/Bulk");
    /* the body is put together as text: each create's resource is already
     * JSON (op->post), parsing it back to serialise it again was a third
     * of a bulk export's CPU */
    strbuf_addstr(&b->req.body, "{\"schemas\":[");
    strbuf_add_json_str(&b->req.body, SCIM_BULK_REQUEST, strlen(SCIM_BULK_REQUEST));
    strbuf_addstr(&b->req.body, "],\"Operations\":[");
    for (i = 0; i < b->n; i++) {
        struct scim_op *o = b->ops[i];
        struct strbuf path = STRBUF_INIT;

        if (i > 0) {
            strbuf_addch(&b->req.body, ',');
        }
        if (o->step == OP_POST) {
            strbuf_addf(&b->req.body, "{\"method\":\"POST\",\"bulkId\":\"%llu\",\"path\":",
                        (unsigned long long)o->tag);
            strbuf_add_json_str(&b->req.body, o->t->endpoint, strlen(o->t->endpoint));
            strbuf_addstr(&b->req.body, ",\"data\":");
            strbuf_addbuf(&b->req.body, &o->post);
            strbuf_addch(&b->req.body, '}');
        } else {
            strbuf_addstr(&path, o->t->endpoint);
            strbuf_addch(&path, '/');
            strbuf_addstr(&path, o->ch->anchor);
            strbuf_addstr(&b->req.body, "{\"method\":\"DELETE\",\"path\":");
            strbuf_add_json_str(&b->req.body, path.buf, path.len);
            strbuf_addch(&b->req.body, '}');
        }
        strbuf_release(&path);
    }
    strbuf_addstr(&b->req.body, "]}");
    b->req.no_resend = true;
    b->req.done = bulk_done_cb;
    b->req.arg = b;
    if (http_start(c->http, &b->req, &err) != IDS_OK) {
        for (i = 0; i < b->n; i++) {
            b->ops[i]->res.err = err;
            finish_err(b->ops[i], true);
        }
        bulk_free(b);
        return true;
    }
    c->active++;
    return true;
}

/* ---- the connector entry points ------------------------------------------- */

enum ids_err scim_export_begin(struct connector *conn, struct ids_error *err)
{
    struct scim_conn *c = (struct scim_conn *)conn;
    enum ids_err ret = conn->ops->open(conn, err);

    if (ret != IDS_OK) {
        return ret;
    }
    c->window = (double)c->concurrency;
    c->pause_until_ms = 0;
    c->use_bulk = scim_use_bulk(c);
    c->bulk_ops = c->bulk_size;
    if (c->bulk_max_ops > 0 && c->bulk_max_ops < c->bulk_ops) {
        c->bulk_ops = c->bulk_max_ops;
    }
    if (c->bulk_ops < 2) {
        c->use_bulk = false;
    }
    return IDS_OK;
}

static const char *carrier_of(const struct change *ch, const char *carrier)
{
    size_t i;

    for (i = 0; i < ch->nmods; i++) {
        if (ch->mods[i].op != MOD_DELETE && ch->mods[i].attr.nvals > 0 &&
            strcasecmp(ch->mods[i].attr.name, carrier) == 0) {
            return ch->mods[i].attr.vals[0].data;
        }
    }
    return NULL;
}

enum ids_err scim_submit(struct connector *conn, const struct change *ch, uint64_t tag,
                         struct ids_error *err)
{
    struct scim_conn *c = (struct scim_conn *)conn;
    struct scim_op *op;
    enum ids_err ret = IDS_OK;
    json_t *res = NULL;

    if (c->http == NULL || c->window < 1.0) {
        ret = scim_export_begin(conn, err);
        if (ret != IDS_OK) {
            return ret;
        }
    }
    op = xcalloc(1, sizeof(*op));
    op->c = c;
    op->all_next = c->all_ops;
    if (c->all_ops != NULL) {
        c->all_ops->all_prev = op;
    }
    c->all_ops = op;
    op->tag = tag;
    op->res.tag = tag;
    op->ch = change_dup(ch);
    op->t = scim_type_find(c, ch->type);
    strbuf_init(&op->post, 0);
    strbuf_init(&op->conflict_msg, 0);
    http_request_init(&op->req);
    c->outstanding++;
    if (op->t == NULL) {
        ids_error_set(&op->res.err, IDS_EINVAL, "unknown object type %s",
                      ch->type ? ch->type : "(none)");
        finish_err(op, false);
        return IDS_OK;
    }
    switch (ch->op) {
    case CHANGE_ADD: {
        const char *cv = carrier_of(ch, op->t->carrier);
        char *text;

        op->step = OP_POST;
        op->carrier = xstrdup_or_null(cv);
        if (scim_change_to_resource(op->t, ch, &res, &op->res.err) != IDS_OK) {
            finish_err(op, false);
            return IDS_OK;
        }
        text = json_dumps(res, JSON_COMPACT);
        strbuf_addstr(&op->post, text != NULL ? text : "{}");
        free(text);
        op->sent_dn = xstrdup_or_null(json_string_value(json_object_get(res, op->t->dn_attr)));
        json_decref(res);
        break;
    }
    case CHANGE_MODIFY:
        if (ch->anchor == NULL) {
            ids_error_set(&op->res.err, IDS_EINVAL, "%s update without an id", op->t->name);
            finish_err(op, false);
            return IDS_OK;
        }
        if (scim_change_to_patches(op->t, ch, (size_t)c->patch_chunk, &op->bodies, &op->res.err) !=
            IDS_OK) {
            finish_err(op, false);
            return IDS_OK;
        }
        if (json_array_size(op->bodies) == 0) {
            finish_ok(op, NULL, NULL); /* nothing to send */
            return IDS_OK;
        }
        op->step = use_patch(c) ? OP_PATCH : OP_GET;
        break;
    case CHANGE_DELETE:
        if (ch->anchor == NULL) {
            finish_ok(op, NULL, NULL); /* never created */
            return IDS_OK;
        }
        op->step = OP_DELETE;
        break;
    default:
        ids_error_set(&op->res.err, IDS_EINVAL, "unknown change");
        finish_err(op, false);
        return IDS_OK;
    }
    queue_push(c, op, false);
    c->bulk_hold = true;
    pump(c);
    /* block while the window is full and more operations wait than one
     * request takes (one, or a /Bulk request's worth) */
    for (;;) {
        struct scim_op *q;
        size_t due = 0;
        size_t limit = c->use_bulk ? (size_t)c->bulk_ops : 1;
        long long now = http_now_ms();

        for (q = c->queue_head; q != NULL && due < limit; q = q->next) {
            due += q->due_ms <= now;
        }
        if (due < limit || ret != IDS_OK) {
            break; /* room, or only delayed retries wait: go on accepting */
        }
        ret = run_once(c, next_wait(c), err);
    }
    return ret;
}

enum ids_err scim_poll(struct connector *conn, bool block, struct export_result *res,
                       struct ids_error *err)
{
    struct scim_conn *c = (struct scim_conn *)conn;
    enum ids_err ret;

    memset(res, 0, sizeof(*res));
    if (block && c->bulk_hold) {
        c->bulk_hold = false; /* the engine waits: send what is held */
        pump(c);
    }
    for (;;) {
        if (c->ready_head != NULL) {
            struct scim_op *op = c->ready_head;

            c->ready_head = op->next;
            if (c->ready_head == NULL) {
                c->ready_tail = NULL;
            }
            *res = op->res;
            memset(&op->res, 0, sizeof(op->res));
            op_free(op);
            c->outstanding--;
            return IDS_OK;
        }
        if (c->outstanding == 0) {
            return IDS_DONE;
        }
        ret = run_once(c, block ? next_wait(c) : 0, err);
        if (ret != IDS_OK) {
            return ret;
        }
        if (!block && c->ready_head == NULL) {
            return IDS_EAGAIN;
        }
    }
}

enum ids_err scim_export_end(struct connector *conn, struct ids_error *err)
{
    struct scim_conn *c = (struct scim_conn *)conn;

    c->bulk_hold = false;
    pump(c);
    if (c->throttled || c->retried || c->adopted) {
        log_info("scim-export", "connector=%s throttled=%lu retried=%lu adopted=%lu", conn->name,
                 c->throttled, c->retried, c->adopted);
    }
    return IDS_OK;
}
