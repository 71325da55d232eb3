/* null.c - the null connector: reads nothing, accepts every change.
 *
 * Like slapd's back-null, it is both the smallest complete connector (a
 * template: every slot of struct connector_ops is filled) and a test double
 * for engine tests: a full read yields no object, a delta read nothing, and
 * every submitted change succeeds; an add gets the anchor "null-<tag>".
 * Results are delivered by poll in submit order.
 */
#include "connector/connector.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "util/mem.h"
#include "util/banned.h"

static const struct config_option null_options[] = {
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

struct null_result {
    uint64_t tag;
    enum change_op op;
    char *dn; /* ADD: the DN it was created with; MODIFY: new_dn */
};

struct null_conn {
    struct connector base; /* MUST be first */
    struct null_result *res;
    size_t nres, alloc, next;
    long submitted;
};

struct null_cursor {
    struct strbuf watermark;
};

static enum ids_err null_create(const struct connector_config *cfg, struct connector **out,
                                struct ids_error *err)
{
    struct null_conn *nc = xcalloc(1, sizeof(*nc));

    (void)err;
    nc->base.cfg = cfg;
    *out = &nc->base;
    return IDS_OK;
}

static enum ids_err null_open(struct connector *c, struct ids_error *err)
{
    (void)c;
    (void)err;
    return IDS_OK;
}

static void null_clear(struct null_conn *nc)
{
    size_t i;

    for (i = 0; i < nc->nres; i++) {
        free(nc->res[i].dn);
    }
    nc->nres = 0;
    nc->next = 0;
}

static void null_close(struct connector *c)
{
    struct null_conn *nc = (struct null_conn *)c;

    null_clear(nc);
    free(nc->res);
    free(nc);
}

static enum ids_err null_check(struct connector *c, struct strbuf *report, struct ids_error *err)
{
    (void)c;
    (void)err;
    strbuf_addstr(report, "type: null (reads nothing, accepts every change)\n");
    strbuf_addstr(report, "objects: 0\n");
    return IDS_OK;
}

static enum ids_err null_read_full(struct connector *c, struct connector_cursor **out,
                                   struct ids_error *err)
{
    struct null_cursor *cur = xcalloc(1, sizeof(*cur));

    (void)c;
    (void)err;
    strbuf_init(&cur->watermark, 0);
    strbuf_addstr(&cur->watermark, "null");
    *out = (struct connector_cursor *)cur;
    return IDS_OK;
}

static enum ids_err null_read_changes(struct connector *c, const char *watermark,
                                      struct connector_cursor **out, struct ids_error *err)
{
    (void)watermark;
    return null_read_full(c, out, err);
}

static enum ids_err null_cursor_next(struct connector_cursor *cur, struct read_item *item,
                                     struct ids_error *err)
{
    (void)cur;
    (void)err;
    memset(item, 0, sizeof(*item));
    return IDS_DONE;
}

static enum ids_err null_cursor_watermark(struct connector_cursor *c, struct strbuf *out,
                                          struct ids_error *err)
{
    struct null_cursor *cur = (struct null_cursor *)c;

    (void)err;
    strbuf_addbuf(out, &cur->watermark);
    return IDS_OK;
}

static void null_cursor_free(struct connector_cursor *c)
{
    struct null_cursor *cur = (struct null_cursor *)c;

    strbuf_release(&cur->watermark);
    free(cur);
}

static enum ids_err null_export_begin(struct connector *c, struct ids_error *err)
{
    (void)err;
    null_clear((struct null_conn *)c);
    return IDS_OK;
}

static enum ids_err null_submit(struct connector *c, const struct change *ch, uint64_t tag,
                                struct ids_error *err)
{
    struct null_conn *nc = (struct null_conn *)c;
    struct null_result *r;

    (void)err;
    ALLOC_GROW(nc->res, nc->nres + 1, nc->alloc);
    r = &nc->res[nc->nres++];
    r->tag = tag;
    r->op = ch->op;
    r->dn = NULL;
    if (ch->op == CHANGE_ADD) {
        r->dn = xstrdup_or_null(ch->dn);
    } else if (ch->op == CHANGE_MODIFY) {
        r->dn = xstrdup_or_null(ch->new_dn);
    }
    nc->submitted++;
    return IDS_OK;
}

static enum ids_err null_poll(struct connector *c, bool block, struct export_result *res,
                              struct ids_error *err)
{
    struct null_conn *nc = (struct null_conn *)c;
    struct null_result *r;
    struct strbuf anchor = STRBUF_INIT;

    (void)block;
    (void)err;
    memset(res, 0, sizeof(*res));
    if (nc->next == nc->nres) {
        null_clear(nc);
        return IDS_DONE;
    }
    r = &nc->res[nc->next++];
    res->tag = r->tag;
    res->code = IDS_OK;
    if (r->op == CHANGE_ADD) {
        strbuf_addf(&anchor, "null-%" PRIu64, r->tag);
        res->anchor = strbuf_detach(&anchor, NULL);
    }
    res->dn = r->dn;
    r->dn = NULL;
    return IDS_OK;
}

static enum ids_err null_export_end(struct connector *c, struct ids_error *err)
{
    (void)c;
    (void)err;
    return IDS_OK;
}

static enum ids_err null_lookup(struct connector *c, const char *type, const char *attr,
                                const char *value, struct entry **out, struct ids_error *err)
{
    (void)c;
    *out = NULL;
    return ids_error_set(err, IDS_ENOTFOUND, "null connector: no %s with %s=%s",
                         type ? type : "object", attr, value);
}

const struct connector_ops null_connector_ops = {
    .name = "null",
    .caps = CONN_CAP_READ | CONN_CAP_WRITE | CONN_CAP_DELTA,
    .options = null_options,
    .object_options = NULL,
    .create = null_create,
    .open = null_open,
    .close = null_close,
    .check = null_check,
    .read_full = null_read_full,
    .read_changes = null_read_changes,
    .cursor_next = null_cursor_next,
    .cursor_watermark = null_cursor_watermark,
    .cursor_free = null_cursor_free,
    .export_begin = null_export_begin,
    .submit = null_submit,
    .poll = null_poll,
    .export_end = null_export_end,
    .lookup = null_lookup,
};
