/* space.c - connector spaces as a whole: `idsync space` lists them, drops
 * the space of a connector the configuration no longer has, and gives such a
 * space to a connector renamed in the configuration.
 *
 * A connector removed from the configuration keeps its space in the store:
 * nothing reads, syncs or writes it any more, but what it contributed stays
 * in the metaverse, and a metaverse object it alone projected stays
 * provisioned in every target. Dropping the space is the explicit end of it
 * (MIIS's "delete connector space"): each object is deleted as if its source
 * had deleted it, so the metaverse object is recomputed from the sources the
 * configuration has, or deleted and deprovisioned when none is left; the
 * exports wait for the next export, behind the deletion threshold. Renaming
 * keeps everything (objects, links, pending exports, watermark) under the
 * new name, so a renamed connector does not read its system again from
 * nothing and join it by rules. */
#include "engine/engine_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "connector/connector.h"
#include "util/mem.h"
#include "util/progress.h"
#include "util/banned.h"

void space_info_free(struct space_info *v, size_t n)
{
    size_t i;

    for (i = 0; v != NULL && i < n; i++) {
        free(v[i].name);
    }
    free(v);
}

enum ids_err engine_spaces(struct store *store, const struct config *cfg, struct space_info **out,
                           size_t *nout, struct ids_error *err)
{
    struct space_info *v = NULL;
    size_t n = 0;
    size_t alloc = 0;
    int64_t id = 0;
    enum ids_err ret;

    *out = NULL;
    *nout = 0;
    while ((ret = store_connector_next(store, id, &id, err)) == IDS_OK) {
        struct strbuf name = STRBUF_INIT;
        struct space_info *s;

        ret = store_connector_name(store, id, &name, err);
        if (ret != IDS_OK) {
            strbuf_release(&name);
            break;
        }
        ALLOC_GROW(v, n + 1, alloc);
        s = &v[n++];
        memset(s, 0, sizeof(*s));
        s->name = strbuf_detach(&name, NULL);
        s->configured = config_connector(cfg, s->name) != NULL;
        ret = store_cs_count(store, id, STORE_SEL_ALL, &s->objects, err);
        if (ret == IDS_OK) {
            ret = store_cs_count(store, id, STORE_SEL_JOINED, &s->joined, err);
        }
        if (ret == IDS_OK) {
            ret = store_cs_count(store, id, STORE_SEL_PENDING_EXPORT, &s->pending_exports, err);
        }
        if (ret != IDS_OK) {
            break;
        }
    }
    if (ret != IDS_DONE) {
        space_info_free(v, n);
        return ret;
    }
    *out = v;
    *nout = n;
    return IDS_OK;
}

/* The id of the space called `name`; IDS_EUSAGE naming the spaces the
 * store has when there is none. */
static enum ids_err space_find(struct engine *eng, const char *name, int64_t *id,
                               struct ids_error *err)
{
    struct space_info *v = NULL;
    struct strbuf names = STRBUF_INIT;
    size_t n = 0;
    size_t i;
    enum ids_err ret = store_connector_find(eng->store, name, id, err);

    if (ret != IDS_ENOTFOUND) {
        return ret;
    }
    ret = engine_spaces(eng->store, eng->cfg, &v, &n, err);
    if (ret != IDS_OK) {
        return ret;
    }
    for (i = 0; i < n; i++) {
        strbuf_addf(&names, "%s%s", i > 0 ? ", " : "", v[i].name);
    }
    ret = ids_error_set(err, IDS_EUSAGE, "the store has no connector space called %s (%s%s)", name,
                        n > 0 ? "its spaces: " : "it has none", names.buf);
    strbuf_release(&names);
    space_info_free(v, n);
    return ret;
}

/* The fingerprint of connector `from`'s scope (what its space was read
 * with) kept for connector `to`, or forgotten (to NULL): a space renamed
 * with an unchanged scope goes on with delta imports. */
static enum ids_err move_fingerprint(struct store *store, const char *from, const char *to,
                                     struct ids_error *err)
{
    struct strbuf key = STRBUF_INIT;
    struct strbuf value = STRBUF_INIT;
    enum ids_err ret;

    engine_fingerprint_key(&key, from);
    ret = store_meta_get(store, key.buf, &value, err);
    if (ret == IDS_OK) {
        ret = store_meta_set(store, key.buf, NULL, err);
        if (ret == IDS_OK && to != NULL) {
            engine_fingerprint_key(&key, to);
            ret = store_meta_set(store, key.buf, value.buf, err);
        }
    } else if (ret == IDS_ENOTFOUND) {
        ids_error_clear(err);
        ret = IDS_OK;
    }
    strbuf_release(&key);
    strbuf_release(&value);
    return ret;
}

enum ids_err engine_space_drop(struct engine *eng, const char *name, struct run_record *run,
                               struct ids_error *err)
{
    struct erun r;
    struct sync_ctx ctx;
    struct strbuf again = STRBUF_INIT;
    enum ids_err why = IDS_OK;
    enum ids_err ret;
    bool dry = eng->opts.dry_run;
    bool stopped = false;
    int64_t conn = 0;
    long n = 0;
    size_t i;

    if (config_connector(eng->cfg, name) != NULL) {
        return ids_error_set(
            err, IDS_EUSAGE,
            "connector %s is in the configuration (%s): every import of it compares with its "
            "space. Remove it from the configuration first; a connector renamed there keeps "
            "its space with `idsync space rename OLD NEW`",
            name, eng->cfg->path);
    }
    ret = space_find(eng, name, &conn, err);
    if (ret == IDS_OK) {
        ret = store_cs_count(eng->store, conn, STORE_SEL_ALL, &n, err);
    }
    if (ret != IDS_OK) {
        return ret;
    }
    ret = erun_start(eng, &r, "space-drop", name, err);
    if (ret != IDS_OK) {
        return erun_finish(&r, ret, err, run);
    }
    if (dry) {
        ret = store_dry_run_begin(eng->store, err);
        if (ret != IDS_OK) {
            return erun_finish(&r, ret, err, run);
        }
    }
    sync_ctx_init(&ctx, eng, &r, false);
    progress_set_total(r.prog, n);
    ret = sync_drop_space(&ctx, conn, &stopped, &why, err);
    if (ret == IDS_OK && !stopped) {
        /* the space is empty: its name and fingerprint go together */
        ret = store_begin(eng->store, err);
        if (ret == IDS_OK) {
            ret = store_connector_drop(eng->store, conn, err);
            if (ret == IDS_OK) {
                ret = move_fingerprint(eng->store, name, NULL, err);
            }
            if (ret == IDS_OK) {
                ret = store_commit(eng->store, err);
            } else {
                store_rollback(eng->store);
            }
        }
    }
    strbuf_addf(&again, "run `idsync space drop %s` again", name);
    ret = sync_end(&ctx, ret, stopped, why, again.buf, err);
    strbuf_release(&again);
    if (dry) {
        /* what the next export of each target would send, then forget it */
        for (i = 0; ret == IDS_OK && eng->opts.report != NULL && i < eng->nconns; i++) {
            long k = 0;

            if (eng->conns[i].is_target) {
                ret = report_pending(eng, &eng->conns[i], eng->opts.report, &k, err);
            }
        }
        store_dry_run_end(eng->store);
        if (ret == IDS_OK) {
            erun_message(&r,
                         "Dry run, nothing was changed: dropping the space of connector %s would "
                         "delete its %ld object%s. The counters say what the metaverse and the "
                         "targets would get; the report lists what the next export of each target "
                         "would send then.",
                         name, n, n == 1 ? "" : "s");
        }
    } else if (ret == IDS_OK) {
        connector_state_forget(eng->state_dir, name);
        erun_message(
            &r,
            "The space of connector %s is dropped (%ld object%s deleted). What it changes "
            "in the targets is pending: review it with `idsync pending TARGET`; the next "
            "export or cycle sends it, its deletes counted against the deletion threshold.",
            name, n, n == 1 ? "" : "s");
    }
    sync_ctx_release(&ctx);
    return erun_finish(&r, ret, err, run);
}

enum ids_err engine_space_rename(struct engine *eng, const char *from, const char *to,
                                 struct run_record *run, struct ids_error *err)
{
    struct erun r;
    enum ids_err ret;
    int64_t conn = 0;
    int64_t other = 0;
    bool has_other = false;
    long n = 0;
    long held = 0;

    if (strcmp(from, to) == 0) {
        return ids_error_set(err, IDS_EUSAGE, "the space of %s is already called %s", from, to);
    }
    if (config_connector(eng->cfg, from) != NULL) {
        return ids_error_set(err, IDS_EUSAGE,
                             "connector %s is still in the configuration (%s): rename it there "
                             "first, then give its space the new name",
                             from, eng->cfg->path);
    }
    if (config_connector(eng->cfg, to) == NULL) {
        return ids_error_set(err, IDS_EUSAGE,
                             "no connector called %s in the configuration (%s): a space is given "
                             "to a connector of the configuration",
                             to, eng->cfg->path);
    }
    ret = space_find(eng, from, &conn, err);
    if (ret == IDS_OK) {
        ret = store_cs_count(eng->store, conn, STORE_SEL_ALL, &n, err);
    }
    if (ret == IDS_OK) {
        ret = store_connector_find(eng->store, to, &other, err);
        has_other = ret == IDS_OK;
        if (ret == IDS_ENOTFOUND) {
            ids_error_clear(err);
            ret = IDS_OK;
        }
    }
    if (ret == IDS_OK && has_other) {
        ret = store_cs_count(eng->store, other, STORE_SEL_ALL, &held, err);
    }
    if (ret != IDS_OK) {
        return ret;
    }
    if (held > 0) {
        return ids_error_set(
            err, IDS_EUSAGE,
            "connector %s already has a space of %ld object%s: it was imported since the rename, "
            "and its join rules linked what they could. That space is the one to keep; drop the "
            "old one with `idsync space drop %s`",
            to, held, held == 1 ? "" : "s", from);
    }
    ret = erun_start(eng, &r, "space-rename", to, err);
    if (ret != IDS_OK) {
        return erun_finish(&r, ret, err, run);
    }
    if (eng->opts.dry_run) {
        erun_message(&r,
                     "Dry run, nothing was changed: the space of %s (%ld object%s) would be "
                     "connector %s's.",
                     from, n, n == 1 ? "" : "s", to);
        return erun_finish(&r, IDS_OK, err, run);
    }
    ret = store_begin(eng->store, err);
    if (ret == IDS_OK) {
        if (has_other) {
            /* an empty space of the new name (an import that found nothing) */
            ret = store_connector_drop(eng->store, other, err);
        }
        if (ret == IDS_OK) {
            ret = store_connector_rename(eng->store, conn, to, err);
        }
        if (ret == IDS_OK) {
            ret = move_fingerprint(eng->store, from, to, err);
        }
        if (ret == IDS_OK) {
            ret = store_commit(eng->store, err);
        } else {
            store_rollback(eng->store);
        }
    }
    if (ret == IDS_OK) {
        /* the CSV row tables are named after the connector: the next
         * import reads its files once in full, and goes on from there */
        connector_state_forget(eng->state_dir, from);
        connector_state_forget(eng->state_dir, to);
        erun_message(&r,
                     "The space of %s (%ld object%s, with their links, pending exports and "
                     "watermark) is now connector %s's: its next import compares with it.",
                     from, n, n == 1 ? "" : "s", to);
    }
    return erun_finish(&r, ret, err, run);
}
