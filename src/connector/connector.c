/* connector.c - registry of connector types and the wrappers the engine
 * calls (the one place for argument checks, tracing and fault injection). */
#include "connector/connector.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "util/codec.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/banned.h"

const struct connector_ops *const connector_types[] = {
    &csv_connector_ops,  &ldif_connector_ops, &ldap_connector_ops,
    &scim_connector_ops, &null_connector_ops, NULL,
};

enum ids_err (*connector_fault_hook)(const char *where, struct ids_error *err);

const struct connector_ops *connector_type_find(const char *name)
{
    size_t i;

    for (i = 0; connector_types[i] != NULL; i++) {
        if (strcmp(connector_types[i]->name, name) == 0) {
            return connector_types[i];
        }
    }
    return NULL;
}

void read_item_release(struct read_item *item)
{
    entry_free(item->entry);
    change_free(item->change);
    memset(item, 0, sizeof(*item));
}

void export_result_release(struct export_result *r)
{
    free(r->anchor);
    free(r->dn);
    entry_free(r->written);
    memset(r, 0, sizeof(*r));
}

/* IDSYNC_FAULT="where:N[,where:N]": SIGKILL ourselves at the N-th call of
 * `where` (crash-safety tests). Counted per process. */
static void fault_kill_point(const char *where)
{
    static long counts[8];
    static const char *const points[] = {"submit", "next", "poll", "store-commit"};
    const char *spec = getenv("IDSYNC_FAULT");
    size_t i;
    size_t wlen = strlen(where);

    if (spec == NULL) {
        return;
    }
    for (i = 0; i < ARRAY_SIZE(points); i++) {
        if (strcmp(points[i], where) == 0) {
            break;
        }
    }
    if (i == ARRAY_SIZE(points)) {
        return;
    }
    counts[i]++;
    while (*spec) {
        if (strncmp(spec, where, wlen) == 0 && spec[wlen] == ':') {
            char *end;
            long n = strtol(spec + wlen + 1, &end, 10);

            if (n == counts[i]) {
                fflush(NULL);
                kill(getpid(), SIGKILL);
            }
        }
        spec = strchr(spec, ',');
        if (spec == NULL) {
            break;
        }
        spec++;
    }
}

void connector_fault_point(const char *where);
void connector_fault_point(const char *where)
{
    fault_kill_point(where);
}

static enum ids_err run_hook(const char *where, struct ids_error *err)
{
    fault_kill_point(where);
    if (connector_fault_hook != NULL) {
        return connector_fault_hook(where, err);
    }
    return IDS_OK;
}

enum ids_err connector_create(const struct connector_config *cfg, struct connector **out,
                              struct ids_error *err)
{
    enum ids_err ret;

    *out = NULL;
    if (cfg->ops == NULL) {
        return ids_error_set(err, IDS_ECONFIG, "connector %s: unknown type %s", cfg->name,
                             cfg->type ? cfg->type : "(none)");
    }
    ret = cfg->ops->create(cfg, out, err);
    if (ret != IDS_OK) {
        ids_error_prefix(err, "connector %s", cfg->name);
        return ret;
    }
    (*out)->ops = cfg->ops;
    (*out)->cfg = cfg;
    (*out)->name = cfg->name;
    return IDS_OK;
}

enum ids_err connector_open(struct connector *c, struct ids_error *err)
{
    enum ids_err ret = c->ops->open(c, err);

    if (ret != IDS_OK) {
        ids_error_prefix(err, "connector %s", c->name);
    } else {
        log_debug("connector-open", "connector=%s type=%s", c->name, c->ops->name);
    }
    return ret;
}

void connector_close(struct connector *c)
{
    if (c != NULL) {
        c->ops->close(c);
    }
}

bool connector_has_cap(const struct connector *c, unsigned cap)
{
    return (c->ops->caps & cap) == cap;
}

enum ids_err connector_check(struct connector *c, struct strbuf *report, struct ids_error *err)
{
    if (c->ops->check == NULL) {
        return IDS_OK;
    }
    return c->ops->check(c, report, err);
}

enum ids_err connector_read_full(struct connector *c, struct connector_cursor **out,
                                 struct ids_error *err)
{
    *out = NULL;
    if (c->ops->read_full == NULL || !(c->ops->caps & CONN_CAP_READ)) {
        return ids_error_set(err, IDS_EUNSUPPORTED, "connector %s (%s) cannot be read", c->name,
                             c->ops->name);
    }
    return c->ops->read_full(c, out, err);
}

enum ids_err connector_read_changes(struct connector *c, const char *watermark,
                                    struct connector_cursor **out, struct ids_error *err)
{
    *out = NULL;
    if (c->ops->read_changes == NULL) {
        return ids_error_set(err, IDS_EFULLREQUIRED, "connector type %s has no delta import",
                             c->ops->name);
    }
    return c->ops->read_changes(c, watermark, out, err);
}

enum ids_err connector_cursor_next(struct connector *c, struct connector_cursor *cur,
                                   struct read_item *item, struct ids_error *err)
{
    enum ids_err ret;

    memset(item, 0, sizeof(*item));
    ret = run_hook("next", err);
    if (ret != IDS_OK) {
        return ret;
    }
    ret = c->ops->cursor_next(cur, item, err);
    if (ret == IDS_OK && item->entry == NULL && item->change == NULL) {
        return ids_error_set(err, IDS_EINTERNAL, "connector %s returned an empty item", c->name);
    }
    return ret;
}

enum ids_err connector_cursor_watermark(struct connector *c, struct connector_cursor *cur,
                                        struct strbuf *out, struct ids_error *err)
{
    if (c->ops->cursor_watermark == NULL) {
        return IDS_OK;
    }
    return c->ops->cursor_watermark(cur, out, err);
}

void connector_cursor_free(struct connector *c, struct connector_cursor *cur)
{
    if (cur != NULL) {
        c->ops->cursor_free(cur);
    }
}

enum ids_err connector_export_begin(struct connector *c, struct ids_error *err)
{
    if (!(c->ops->caps & CONN_CAP_WRITE) || c->ops->submit == NULL) {
        return ids_error_set(err, IDS_EUNSUPPORTED, "connector %s (%s) cannot be written to",
                             c->name, c->ops->name);
    }
    if (c->ops->export_begin == NULL) {
        return IDS_OK;
    }
    return c->ops->export_begin(c, err);
}

enum ids_err connector_submit(struct connector *c, const struct change *ch, uint64_t tag,
                              struct ids_error *err)
{
    enum ids_err ret = run_hook("submit", err);

    if (ret != IDS_OK) {
        return ret;
    }
    log_debug("export-submit", "connector=%s op=%s dn=\"%s\"", c->name, change_op_name(ch->op),
              ch->dn ? ch->dn : "");
    return c->ops->submit(c, ch, tag, err);
}

enum ids_err connector_poll(struct connector *c, bool block, struct export_result *res,
                            struct ids_error *err)
{
    memset(res, 0, sizeof(*res));
    fault_kill_point("poll");
    return c->ops->poll(c, block, res, err);
}

enum ids_err connector_export_end(struct connector *c, struct ids_error *err)
{
    if (c->ops->export_end == NULL) {
        return IDS_OK;
    }
    return c->ops->export_end(c, err);
}

enum ids_err connector_lookup(struct connector *c, const char *type, const char *attr,
                              const char *value, struct entry **out, struct ids_error *err)
{
    *out = NULL;
    if (c->ops->lookup == NULL) {
        return ids_error_set(err, IDS_EUNSUPPORTED, "connector %s cannot look objects up", c->name);
    }
    return c->ops->lookup(c, type, attr, value, out, err);
}

bool connector_dn_readable(const struct connector_config *cfg, const char *type, const char *dn,
                           struct strbuf *why)
{
    if (cfg->ops == NULL || cfg->ops->dn_readable == NULL || dn == NULL) {
        return true;
    }
    return cfg->ops->dn_readable(cfg, type, dn, why);
}

enum ids_err connector_ad_passwords(const struct change *ch, struct change **out,
                                    struct ids_error *err)
{
    size_t i;
    size_t k;

    *out = NULL;
    for (i = 0; i < ch->nmods; i++) {
        struct attr *a;

        if (strcasecmp(ch->mods[i].attr.name, "unicodePwd") != 0) {
            continue;
        }
        if (*out == NULL) {
            *out = change_dup(ch);
        }
        a = &(*out)->mods[i].attr;
        for (k = 0; k < a->nvals; k++) {
            struct strbuf sb = STRBUF_INIT;

            if (!ad_password_value(a->vals[k].data, a->vals[k].len, &sb)) {
                strbuf_release(&sb);
                change_free(*out);
                *out = NULL;
                return ids_error_set(err, IDS_EINPUT,
                                     "%s: unicodePwd: the password is not valid UTF-8",
                                     ch->dn ? ch->dn : (ch->anchor ? ch->anchor : "(new object)"));
            }
            free(a->vals[k].data);
            a->vals[k].len = sb.len;
            a->vals[k].data = strbuf_detach(&sb, NULL);
        }
    }
    return IDS_OK;
}

void connector_state_forget(const char *state_dir, const char *name)
{
    if (state_dir != NULL) {
        csv_state_forget(state_dir, name);
    }
}
