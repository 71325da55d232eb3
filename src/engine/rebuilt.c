/* rebuilt.c - rebuilt-source detection for the import guard (rebuilt.h). */
#include "engine/rebuilt.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/banned.h"

bool rebuilt_decide(const struct rebuilt_sample *s)
{
    if (s->vanished <= 0 || s->appeared <= 0 || s->sampled <= 0) {
        return false;
    }
    /* about as many new objects as vanished ones */
    if (s->appeared * 2 < s->vanished || s->appeared > s->vanished * 3) {
        return false;
    }
    return s->matched * 2 >= s->sampled;
}

struct attr_tally {
    char name[64];
    long n;
};

static void tally(struct attr_tally *t, size_t max, size_t *nt, const char *name)
{
    size_t i;

    for (i = 0; i < *nt; i++) {
        if (strcmp(t[i].name, name) == 0) {
            t[i].n++;
            return;
        }
    }
    if (*nt < max) {
        snprintf(t[*nt].name, sizeof(t[*nt].name), "%s", name);
        t[*nt].n = 1;
        (*nt)++;
    }
}

/* Does a join value of the new object cs name an MV object whose object in
 * ec is staged for deletion? *attr receives the join attribute. */
static enum ids_err match_one(struct engine *eng, struct econn *ec, const struct cs_object *cs,
                              const char **attr, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct mvt_info *mi = NULL;
    const struct flow_config *f = engine_find_from(eng, ec, cs->type, &mi);
    struct strbuf name = STRBUF_INIT;
    struct strbuf norm = STRBUF_INIT;
    size_t ri;
    size_t ii;
    size_t v;

    *attr = NULL;
    for (ri = 0; f != NULL && ri < f->njoins && *attr == NULL && ret == IDS_OK; ri++) {
        const struct join_rule *r = &f->joins[ri];

        for (ii = 0; ii < r->nitems && *attr == NULL && ret == IDS_OK; ii++) {
            const struct rule_item *it = &r->items[ii];
            struct attr vals;
            struct ids_error eerr = IDS_ERROR_INIT;

            memset(&vals, 0, sizeof(vals));
            vals.source = -1;
            if (flow_eval(it, cs->entry, &vals, &eerr) != IDS_OK) {
                attr_release(&vals);
                continue; /* an expression error is the sync's to report */
            }
            strbuf_reset(&name);
            strbuf_addstr(&name, it->attr);
            strbuf_tolower(&name);
            for (v = 0; v < vals.nvals && *attr == NULL && ret == IDS_OK; v++) {
                int64_t ids[ENGINE_MAX_CANDIDATES];
                size_t n = 0;
                size_t k;

                strbuf_reset(&norm);
                value_normalize(&norm, vals.vals[v].data, vals.vals[v].len);
                if (norm.len == 0) {
                    continue;
                }
                ret = store_mv_find(eng->store, mi->t->name, name.buf, norm.buf, ids,
                                    ARRAY_SIZE(ids), &n, err);
                if (ret == IDS_ENOTFOUND) {
                    ret = IDS_OK;
                    n = 0;
                }
                for (k = 0; k < n && k < ARRAY_SIZE(ids) && ret == IDS_OK && *attr == NULL; k++) {
                    struct cs_object *old = NULL;

                    ret = store_cs_get_by_mv(eng->store, ec->id, ids[k], &old, err);
                    if (ret == IDS_ENOTFOUND) {
                        ret = IDS_OK;
                    } else if (ret == IDS_OK && old->id != cs->id &&
                               old->import_state == CS_IMPORT_DELETE) {
                        *attr = it->attr;
                    }
                    cs_object_free(old);
                }
            }
            attr_release(&vals);
        }
    }
    strbuf_release(&name);
    strbuf_release(&norm);
    return ret;
}

bool rebuilt_source_suspected(struct engine *eng, const char *connector, long vanished,
                              long appeared, struct rebuilt_sample *out, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct econn *ec = engine_conn(eng, connector);
    struct attr_tally t[16];
    size_t nt = 0;
    int64_t *ids = NULL;
    int64_t after = 0;
    size_t i;

    memset(out, 0, sizeof(*out));
    out->vanished = vanished;
    out->appeared = appeared;
    if (ec == NULL || !ec->is_source || vanished <= 0 || appeared <= 0) {
        return false;
    }
    ids = xcalloc(ENGINE_BATCH, sizeof(*ids));
    while (ret == IDS_OK && out->sampled < REBUILT_SAMPLE) {
        size_t n = 0;

        ret = store_cs_ids(eng->store, ec->id, STORE_SEL_PENDING_IMPORT, after, ids, ENGINE_BATCH,
                           &n, err);
        if (ret != IDS_OK || n == 0) {
            break;
        }
        for (i = 0; i < n && ret == IDS_OK && out->sampled < REBUILT_SAMPLE; i++) {
            struct cs_object *cs = NULL;
            const char *attr = NULL;

            after = ids[i];
            ret = store_cs_get(eng->store, ids[i], &cs, err);
            if (ret == IDS_ENOTFOUND) {
                ret = IDS_OK;
                continue;
            }
            if (ret != IDS_OK) {
                break;
            }
            if (cs->import_state == CS_IMPORT_ADD && cs->mv_id == 0) {
                out->sampled++;
                ret = match_one(eng, ec, cs, &attr, err);
                if (ret == IDS_OK && attr != NULL) {
                    out->matched++;
                    tally(t, ARRAY_SIZE(t), &nt, attr);
                }
            }
            cs_object_free(cs);
        }
    }
    free(ids);
    if (ret != IDS_OK) {
        return false;
    }
    {
        size_t best = 0;

        for (i = 1; i < nt; i++) {
            best = t[i].n > t[best].n ? i : best;
        }
        if (nt > 0) {
            snprintf(out->attr, sizeof(out->attr), "%s", t[best].name);
        }
    }
    return rebuilt_decide(out);
}

void rebuilt_message(const struct rebuilt_sample *s, const char *connector, struct strbuf *out)
{
    long n = s->matched;
    long m = s->appeared;
    const char *by = s->attr[0] ? s->attr : "mail";

    if (out->len > 0) {
        strbuf_addch(out, ' ');
    }
    if (s->sampled < s->appeared) {
        strbuf_addf(out,
                    "The source looks rebuilt: %ld of %ld sampled new objects (%ld new, %ld "
                    "vanished) have new anchors but match old ones on %s;",
                    n, s->sampled, m, s->vanished, by);
    } else {
        strbuf_addf(out,
                    "The source looks rebuilt: %ld of %ld objects have new anchors but match "
                    "old ones on %s (%ld old anchors vanished);",
                    n, m, by, s->vanished);
    }
    strbuf_addf(out, " run `idsync reconnect %s --by %s` to preview re-joining them.", connector,
                by);
}

void rebuilt_note_run(struct erun *r, const char *connector, long vanished, long appeared)
{
    struct rebuilt_sample s;
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf msg = STRBUF_INIT;

    if (!rebuilt_source_suspected(r->eng, connector, vanished, appeared, &s, &err)) {
        if (err.code != IDS_OK) {
            /* the guard still stops; only the diagnosis is lost */
            log_warn("rebuilt", "connector=%s error=\"%s\"", connector, err.msg);
        }
        return;
    }
    rebuilt_message(&s, connector, &msg);
    erun_message(r, "%s", msg.buf);
    log_warn("rebuilt", "connector=%s vanished=%ld appeared=%ld matched=%ld attr=%s", connector,
             vanished, appeared, s.matched, s.attr);
    strbuf_release(&msg);
}
