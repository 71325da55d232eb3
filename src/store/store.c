/* store.c - the store_*() wrappers: pick a backend by URL scheme, then
 * dispatch every call through its ops table. This is the one place for
 * argument checks that hold for every backend. */
#include "store/store.h"

#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/mem.h"
#include "util/banned.h"

const struct run_counter_desc run_counter_descs[] = {
#define X(field, name) {name, offsetof(struct run_counters, field)},
    RUN_COUNTER_LIST
#undef X
};
const size_t run_counter_count = ARRAY_SIZE(run_counter_descs);

/* Backends built into this idsync, by URL scheme. */
static const struct store_ops *const backends[] = {
    &sqlite_store_ops,
};

const char *run_status_name(enum run_status s)
{
    switch (s) {
    case RUN_RUNNING:
        return "running";
    case RUN_SUCCESS:
        return "success";
    case RUN_COMPLETED_WITH_ERRORS:
        return "completed-with-errors";
    case RUN_STOPPED_THRESHOLD:
        return "stopped-threshold";
    case RUN_STOPPED_ERROR_LIMIT:
        return "stopped-error-limit";
    case RUN_FAILED:
        return "failed";
    }
    return "unknown";
}

void cs_object_free(struct cs_object *o)
{
    if (o == NULL) {
        return;
    }
    free(o->type);
    free(o->anchor);
    free(o->dn);
    entry_free(o->entry);
    change_free(o->pending_export);
    free(o->export_error);
    change_free(o->unconfirmed);
    change_free(o->ref_delta);
    free(o);
}

void mv_object_free(struct mv_object *o)
{
    if (o == NULL) {
        return;
    }
    free(o->type);
    entry_free(o->entry);
    free(o);
}

void run_record_release(struct run_record *r)
{
    if (r == NULL) {
        return;
    }
    free(r->step);
    free(r->connector);
    free(r->message);
    r->step = NULL;
    r->connector = NULL;
    r->message = NULL;
}

void run_error_release(struct run_error *e)
{
    if (e == NULL) {
        return;
    }
    free(e->connector);
    free(e->anchor);
    free(e->dn);
    free(e->attr);
    free(e->code);
    free(e->message);
    e->connector = NULL;
    e->anchor = NULL;
    e->dn = NULL;
    e->attr = NULL;
    e->code = NULL;
    e->message = NULL;
}

enum ids_err store_open(const char *url, struct store **out, struct ids_error *err)
{
    const char *colon;
    size_t len;
    size_t i;

    *out = NULL;
    if (url == NULL || *url == '\0') {
        return ids_error_set(err, IDS_ECONFIG, "store: no URL (expected sqlite:PATH)");
    }
    colon = strchr(url, ':');
    if (colon == NULL || colon == url) {
        return ids_error_set(err, IDS_ECONFIG, "store URL '%s': no scheme (expected sqlite:PATH)",
                             url);
    }
    len = (size_t)(colon - url);
    for (i = 0; i < ARRAY_SIZE(backends); i++) {
        if (strlen(backends[i]->scheme) == len && strncasecmp(url, backends[i]->scheme, len) == 0) {
            return backends[i]->open(url, out, err);
        }
    }
    if ((len == 10 && strncasecmp(url, "postgresql", len) == 0) ||
        (len == 8 && strncasecmp(url, "postgres", len) == 0)) {
        return ids_error_set(err, IDS_ECONFIG,
                             "store URL '%.*s:...': the PostgreSQL store is not built into this "
                             "idsync (use sqlite:PATH)",
                             (int)len, url);
    }
    return ids_error_set(err, IDS_ECONFIG, "store URL '%.*s:...': unknown scheme (use sqlite:PATH)",
                         (int)len, url);
}

void store_close(struct store *s)
{
    if (s == NULL) {
        return;
    }
    s->ops->close(s);
}

enum ids_err store_begin(struct store *s, struct ids_error *err)
{
    assert(s != NULL);
    return s->ops->begin(s, err);
}

enum ids_err store_commit(struct store *s, struct ids_error *err)
{
    assert(s != NULL);
    return s->ops->commit(s, err);
}

void store_rollback(struct store *s)
{
    assert(s != NULL);
    s->ops->rollback(s);
}

enum ids_err store_dry_run_begin(struct store *s, struct ids_error *err)
{
    assert(s != NULL);
    return s->ops->dry_run_begin(s, err);
}

void store_dry_run_end(struct store *s)
{
    assert(s != NULL);
    s->ops->dry_run_end(s);
}

enum ids_err store_connector_id(struct store *s, const char *name, int64_t *id,
                                struct ids_error *err)
{
    assert(s != NULL && name != NULL && id != NULL);
    return s->ops->connector_id(s, name, id, err);
}

enum ids_err store_cs_brief(struct store *s, int64_t connector, const char *anchor,
                            struct cs_brief *out, struct ids_error *err)
{
    assert(s != NULL && anchor != NULL && out != NULL);
    return s->ops->cs_brief(s, connector, anchor, out, err);
}

enum ids_err store_cs_get(struct store *s, int64_t id, struct cs_object **out,
                          struct ids_error *err)
{
    assert(s != NULL && out != NULL);
    return s->ops->cs_get(s, id, out, err);
}

enum ids_err store_cs_get_by_anchor(struct store *s, int64_t connector, const char *anchor,
                                    struct cs_object **out, struct ids_error *err)
{
    assert(s != NULL && anchor != NULL && out != NULL);
    return s->ops->cs_get_by_anchor(s, connector, anchor, out, err);
}

enum ids_err store_cs_get_by_dn(struct store *s, int64_t connector, const char *dn,
                                struct cs_object **out, struct ids_error *err)
{
    assert(s != NULL && dn != NULL && out != NULL);
    return s->ops->cs_get_by_dn(s, connector, dn, out, err);
}

enum ids_err store_cs_dn_alias(struct store *s, int64_t connector, const char *old_dn, int64_t id,
                               struct ids_error *err)
{
    assert(s != NULL && old_dn != NULL && id > 0);
    return s->ops->cs_dn_alias(s, connector, old_dn, id, err);
}

enum ids_err store_cs_get_by_former_dn(struct store *s, int64_t connector, const char *dn,
                                       struct cs_object **out, struct ids_error *err)
{
    assert(s != NULL && dn != NULL && out != NULL);
    return s->ops->cs_get_by_former_dn(s, connector, dn, out, err);
}

enum ids_err store_cs_get_by_mv(struct store *s, int64_t connector, int64_t mv_id,
                                struct cs_object **out, struct ids_error *err)
{
    assert(s != NULL && out != NULL);
    return s->ops->cs_get_by_mv(s, connector, mv_id, out, err);
}

enum ids_err store_cs_ref_by_mv(struct store *s, int64_t connector, int64_t mv_id, int64_t *id,
                                struct strbuf *anchor, struct strbuf *dn, struct ids_error *err)
{
    assert(s != NULL && id != NULL && anchor != NULL && dn != NULL);
    return s->ops->cs_ref_by_mv(s, connector, mv_id, id, anchor, dn, err);
}

const char *store_state_dir(struct store *s)
{
    if (s == NULL || s->ops->state_dir == NULL) {
        return NULL;
    }
    return s->ops->state_dir(s);
}

enum ids_err store_cs_put(struct store *s, struct cs_object *o, const struct store_keys *keys,
                          struct ids_error *err)
{
    assert(s != NULL && o != NULL);
    if (o->connector <= 0) {
        return ids_error_set(err, IDS_EINVAL, "store_cs_put: object without a connector");
    }
    return s->ops->cs_put(s, o, keys, err);
}

enum ids_err store_cs_insert_new(struct store *s, struct cs_object *o,
                                 const struct store_keys *keys, struct ids_error *err)
{
    assert(s != NULL && o != NULL && o->id == 0);
    if (o->connector <= 0) {
        return ids_error_set(err, IDS_EINVAL, "store_cs_insert_new: object without a connector");
    }
    return s->ops->cs_insert_new(s, o, keys, err);
}

enum ids_err store_cs_set_export_state(struct store *s, int64_t id, enum cs_export_state state,
                                       int64_t run, struct ids_error *err)
{
    assert(s != NULL && id > 0);
    return s->ops->cs_set_export_state(s, id, state, run, err);
}

enum ids_err store_read_begin(struct store *s, struct ids_error *err)
{
    assert(s != NULL);
    return s->ops->read_begin(s, err);
}

void store_read_end(struct store *s)
{
    if (s != NULL) {
        s->ops->read_end(s);
    }
}

enum ids_err store_cs_brief_by_dn(struct store *s, int64_t connector, const char *dn,
                                  struct cs_brief *out, struct ids_error *err)
{
    assert(s != NULL && dn != NULL && out != NULL);
    return s->ops->cs_brief_by_dn(s, connector, dn, out, err);
}

enum ids_err store_cs_ident(struct store *s, int64_t id, struct strbuf *anchor, bool *has_anchor,
                            struct strbuf *dn, enum cs_import_state *state, bool *renaming,
                            struct ids_error *err)
{
    assert(s != NULL && anchor != NULL && has_anchor != NULL && dn != NULL && state != NULL);
    if (renaming != NULL) {
        *renaming = false;
    }
    return s->ops->cs_ident(s, id, anchor, has_anchor, dn, state, renaming, err);
}

enum ids_err store_cs_put_link(struct store *s, const struct cs_object *o, struct ids_error *err)
{
    assert(s != NULL && o != NULL && o->id > 0);
    return s->ops->cs_put_link(s, o, err);
}

enum ids_err store_cs_put_export(struct store *s, const struct cs_object *o, struct ids_error *err)
{
    assert(s != NULL && o != NULL);
    return s->ops->cs_put_export(s, o, err);
}

enum ids_err store_cs_delete(struct store *s, int64_t id, struct ids_error *err)
{
    assert(s != NULL);
    return s->ops->cs_delete(s, id, err);
}

enum ids_err store_cs_ids(struct store *s, int64_t connector, enum store_sel sel, int64_t after,
                          int64_t *ids, size_t max, size_t *n, struct ids_error *err)
{
    assert(s != NULL && n != NULL && (ids != NULL || max == 0));
    return s->ops->cs_ids(s, connector, sel, after, ids, max, n, err);
}

enum ids_err store_cs_count(struct store *s, int64_t connector, enum store_sel sel, long *n,
                            struct ids_error *err)
{
    assert(s != NULL && n != NULL);
    return s->ops->cs_count(s, connector, sel, n, err);
}

enum ids_err store_runs_prune(struct store *s, int64_t before_us, long *runs, long *errors,
                              struct ids_error *err)
{
    assert(s != NULL && runs != NULL && errors != NULL);
    return s->ops->runs_prune(s, before_us, runs, errors, err);
}

enum ids_err store_cs_count_exports(struct store *s, int64_t connector, long *pending,
                                    long *deletes, long *disables, struct ids_error *err)
{
    assert(s != NULL && pending != NULL && deletes != NULL && disables != NULL);
    return s->ops->cs_count_exports(s, connector, pending, deletes, disables, err);
}

enum ids_err store_cs_find(struct store *s, int64_t connector, const char *attr, const char *value,
                           int64_t *ids, size_t max, size_t *n, struct ids_error *err)
{
    assert(s != NULL && attr != NULL && value != NULL && n != NULL && (ids != NULL || max == 0));
    return s->ops->cs_find(s, connector, attr, value, ids, max, n, err);
}

enum ids_err store_cs_links(struct store *s, int64_t mv_id, int64_t *ids, size_t max, size_t *n,
                            struct ids_error *err)
{
    assert(s != NULL && n != NULL && (ids != NULL || max == 0));
    return s->ops->cs_links(s, mv_id, ids, max, n, err);
}

enum ids_err store_mv_get(struct store *s, int64_t id, struct mv_object **out,
                          struct ids_error *err)
{
    assert(s != NULL && out != NULL);
    return s->ops->mv_get(s, id, out, err);
}

enum ids_err store_mv_put(struct store *s, struct mv_object *o, const struct store_keys *keys,
                          struct ids_error *err)
{
    assert(s != NULL && o != NULL);
    return s->ops->mv_put(s, o, keys, err);
}

enum ids_err store_mv_delete(struct store *s, int64_t id, struct ids_error *err)
{
    assert(s != NULL);
    return s->ops->mv_delete(s, id, err);
}

enum ids_err store_mv_refs(struct store *s, int64_t mv, const char *attr, const struct attr *add,
                           const struct attr *del, struct ids_error *err)
{
    assert(s != NULL && mv > 0 && attr != NULL);
    return s->ops->mv_refs(s, mv, attr, add, del, err);
}

enum ids_err store_mv_find(struct store *s, const char *type, const char *attr, const char *value,
                           int64_t *ids, size_t max, size_t *n, struct ids_error *err)
{
    assert(s != NULL && attr != NULL && value != NULL && n != NULL && (ids != NULL || max == 0));
    return s->ops->mv_find(s, type, attr, value, ids, max, n, err);
}

enum ids_err store_mv_ids(struct store *s, const char *type, int64_t after, int64_t *ids,
                          size_t max, size_t *n, struct ids_error *err)
{
    assert(s != NULL && n != NULL && (ids != NULL || max == 0));
    return s->ops->mv_ids(s, type, after, ids, max, n, err);
}

enum ids_err store_mv_count(struct store *s, long *n, struct ids_error *err)
{
    assert(s != NULL && n != NULL);
    return s->ops->mv_count(s, n, err);
}

enum ids_err store_mv_search(struct store *s, const char *attr, const char *value, int64_t after,
                             int64_t *ids, size_t max, size_t *n, struct ids_error *err)
{
    assert(s != NULL && attr != NULL && value != NULL && n != NULL && (ids != NULL || max == 0));
    return s->ops->mv_search(s, attr, value, after, ids, max, n, err);
}

enum ids_err store_ref_wait(struct store *s, int64_t space, const char *key, int64_t referrer,
                            struct ids_error *err)
{
    assert(s != NULL && key != NULL);
    return s->ops->ref_wait(s, space, key, referrer, err);
}

enum ids_err store_ref_waiters(struct store *s, int64_t space, const char *key, int64_t *ids,
                               size_t max, size_t *n, struct ids_error *err)
{
    assert(s != NULL && key != NULL && n != NULL && (ids != NULL || max == 0));
    return s->ops->ref_waiters(s, space, key, ids, max, n, err);
}

enum ids_err store_ref_clear(struct store *s, int64_t space, int64_t referrer,
                             struct ids_error *err)
{
    assert(s != NULL);
    return s->ops->ref_clear(s, space, referrer, err);
}

enum ids_err store_watermark_get(struct store *s, int64_t connector, struct strbuf *out,
                                 struct ids_error *err)
{
    assert(s != NULL && out != NULL);
    return s->ops->watermark_get(s, connector, out, err);
}

enum ids_err store_watermark_set(struct store *s, int64_t connector, const char *value,
                                 struct ids_error *err)
{
    assert(s != NULL);
    return s->ops->watermark_set(s, connector, value, err);
}

enum ids_err store_meta_get(struct store *s, const char *key, struct strbuf *out,
                            struct ids_error *err)
{
    assert(s != NULL && key != NULL && out != NULL);
    return s->ops->meta_get(s, key, out, err);
}

enum ids_err store_meta_set(struct store *s, const char *key, const char *value,
                            struct ids_error *err)
{
    assert(s != NULL && key != NULL);
    return s->ops->meta_set(s, key, value, err);
}

enum ids_err store_run_start(struct store *s, struct run_record *r, struct ids_error *err)
{
    assert(s != NULL && r != NULL);
    return s->ops->run_start(s, r, err);
}

enum ids_err store_run_finish(struct store *s, const struct run_record *r, struct ids_error *err)
{
    assert(s != NULL && r != NULL);
    return s->ops->run_finish(s, r, err);
}

enum ids_err store_run_add_error(struct store *s, const struct run_error *e, struct ids_error *err)
{
    assert(s != NULL && e != NULL);
    return s->ops->run_add_error(s, e, err);
}

enum ids_err store_run_get(struct store *s, int64_t id, struct run_record *out,
                           struct ids_error *err)
{
    assert(s != NULL && out != NULL);
    return s->ops->run_get(s, id, out, err);
}

enum ids_err store_runs_list(struct store *s, int64_t before, size_t max, struct run_record **out,
                             size_t *n, struct ids_error *err)
{
    assert(s != NULL && out != NULL && n != NULL);
    return s->ops->runs_list(s, before, max, out, n, err);
}

enum ids_err store_run_errors(struct store *s, int64_t run, size_t offset, size_t max,
                              struct run_error **out, size_t *n, struct ids_error *err)
{
    assert(s != NULL && out != NULL && n != NULL);
    return s->ops->run_errors(s, run, offset, max, out, n, err);
}

enum ids_err store_run_error_count(struct store *s, int64_t run, long *n, struct ids_error *err)
{
    assert(s != NULL && n != NULL);
    return s->ops->run_error_count(s, run, n, err);
}

enum ids_err store_lock_acquire(struct store *s, const char *holder, struct ids_error *err)
{
    assert(s != NULL);
    return s->ops->lock_acquire(s, holder, err);
}

void store_lock_release(struct store *s)
{
    assert(s != NULL);
    s->ops->lock_release(s);
}

enum ids_err store_connector_name(struct store *s, int64_t id, struct strbuf *name,
                                  struct ids_error *err)
{
    assert(s != NULL && name != NULL);
    return s->ops->connector_name(s, id, name, err);
}

enum ids_err store_connector_next(struct store *s, int64_t after, int64_t *id,
                                  struct ids_error *err)
{
    assert(s != NULL && id != NULL);
    return s->ops->connector_next(s, after, id, err);
}

enum ids_err store_ref_waits_prefix(struct store *s, int64_t space, const char *prefix,
                                    struct strvec *keys, int64_t *ids, size_t max, size_t *n,
                                    struct ids_error *err)
{
    assert(s != NULL && prefix != NULL && keys != NULL && n != NULL);
    return s->ops->ref_waits_prefix(s, space, prefix, keys, ids, max, n, err);
}

enum ids_err store_ref_unwait(struct store *s, int64_t space, const char *key, int64_t referrer,
                              struct ids_error *err)
{
    assert(s != NULL && key != NULL);
    return s->ops->ref_unwait(s, space, key, referrer, err);
}

enum ids_err store_cs_brief_by_dn_other(struct store *s, int64_t connector, const char *dn,
                                        int64_t not_id, struct cs_brief *out, struct ids_error *err)
{
    assert(s != NULL && dn != NULL && out != NULL);
    return s->ops->cs_brief_by_dn_other(s, connector, dn, not_id, out, err);
}

enum ids_err store_connector_find(struct store *s, const char *name, int64_t *id,
                                  struct ids_error *err)
{
    assert(s != NULL && name != NULL && id != NULL);
    return s->ops->connector_find(s, name, id, err);
}

enum ids_err store_connector_drop(struct store *s, int64_t id, struct ids_error *err)
{
    assert(s != NULL);
    return s->ops->connector_drop(s, id, err);
}

enum ids_err store_connector_rename(struct store *s, int64_t id, const char *name,
                                    struct ids_error *err)
{
    assert(s != NULL && name != NULL);
    return s->ops->connector_rename(s, id, name, err);
}
