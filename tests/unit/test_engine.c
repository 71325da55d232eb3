/* Unit tests: the engine (import, sync, export, cycle) against the SQLite
 * store and an in-memory connected system (memconn.c). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "engine/engine.h"
#include "memconn.h"
#include "store/store.h"
#include "util/mem.h"
#include "util/progress.h"
#include "util/strbuf.h"

/* ---- a store that counts writes ------------------------------------------ */

static struct store_ops counting_ops;
static const struct store_ops *real_ops;
static long cs_puts;
static long mv_puts;
static long ref_lookups; /* MV object -> target identifiers (group members) */
static long dn_lookups;  /* DN -> CS object (inbound members by DN) */

static enum ids_err counting_cs_put(struct store *s, struct cs_object *o,
                                    const struct store_keys *keys, struct ids_error *err)
{
    cs_puts++;
    return real_ops->cs_put(s, o, keys, err);
}

static enum ids_err counting_cs_put_export(struct store *s, const struct cs_object *o,
                                           struct ids_error *err)
{
    cs_puts++;
    return real_ops->cs_put_export(s, o, err);
}

static enum ids_err counting_cs_ref_by_mv(struct store *s, int64_t connector, int64_t mv_id,
                                          int64_t *id, struct strbuf *anchor, struct strbuf *dn,
                                          struct ids_error *err)
{
    ref_lookups++;
    return real_ops->cs_ref_by_mv(s, connector, mv_id, id, anchor, dn, err);
}

static enum ids_err counting_cs_get_by_dn(struct store *s, int64_t connector, const char *dn,
                                          struct cs_object **out, struct ids_error *err)
{
    dn_lookups++;
    return real_ops->cs_get_by_dn(s, connector, dn, out, err);
}

static enum ids_err counting_mv_put(struct store *s, struct mv_object *o,
                                    const struct store_keys *keys, struct ids_error *err)
{
    mv_puts++;
    return real_ops->mv_put(s, o, keys, err);
}

/* ---- fixture ---------------------------------------------------------------- */

static const char base_yaml[] =
    "store: sqlite:unused.db\n"
    "connectors:\n"
    "  corp:\n"
    "    type: null\n"
    "    objects:\n"
    "      user:\n"
    "        attributes: [uid, mail, cn, department]\n"
    "      group:\n"
    "        attributes: [cn, member]\n"
    "        references: { member: [user, group] }\n"
    "  hr:\n"
    "    type: null\n"
    "    objects:\n"
    "      person:\n"
    "        attributes: [mail, department, title]\n"
    "  cloud:\n"
    "    type: null\n"
    "    objects:\n"
    "      User:\n"
    "        attributes: [externalId, userName, displayName, active]\n"
    "      Group:\n"
    "        attributes: [externalId, displayName, members]\n"
    "        references: { members: [User, Group] }\n"
    "metaverse:\n"
    "  person:\n"
    "    from:\n"
    "      - connector: corp\n"
    "        object: user\n"
    "        project: true\n"
    "        join:\n"
    "          - sourceAnchor: _anchor\n"
    "          - mail: mail\n"
    "        flow:\n"
    "          sourceAnchor: _anchor\n"
    "          mail: mail\n"
    "          name: cn\n"
    "          department: department\n"
    "      - connector: hr\n"
    "        object: person\n"
    "        join:\n"
    "          - mail: mail\n"
    "        flow:\n"
    "          department: department\n"
    "          title: title\n"
    "    to:\n"
    "      - connector: cloud\n"
    "        object: User\n"
    "        provision: true\n"
    "        deprovision: %s\n"
    "%s"
    "        anchor_carrier: externalId\n"
    "        join:\n"
    "          - externalId: sourceAnchor\n"
    "          - userName: mail\n"
    "        flow:\n"
    "          externalId: sourceAnchor\n"
    "          userName: mail\n"
    "          displayName: name\n"
    "  group:\n"
    "    from:\n"
    "      - connector: corp\n"
    "        object: group\n"
    "        project: true\n"
    "        join: [ { sourceAnchor: _anchor } ]\n"
    "        flow: { sourceAnchor: _anchor, name: cn, members: member }\n"
    "    to:\n"
    "      - connector: cloud\n"
    "        object: Group\n"
    "        provision: true\n"
    "        deprovision: delete\n"
    "        anchor_carrier: externalId\n"
    "        join: [ { externalId: sourceAnchor } ]\n"
    "        flow: { externalId: sourceAnchor, displayName: name, members: members }\n"
    "safety:\n"
    "  max_deletes: %ld\n"
    "  max_delete_percent: 0\n"
    "  max_errors: %ld\n"
    "  import_max_delete_percent: 50\n"
    "  import_min_objects: 10\n";

struct fx {
    char *yaml;
    char *dir;
    struct config *cfg;
    struct store *s;
    struct engine *eng;
    struct engine_opts opts;
    struct memdir *corp;
    struct memdir *hr;
    struct memdir *cloud;
    int64_t corp_id;
    int64_t hr_id;
    int64_t cloud_id;
    struct run_record run;
    struct ids_error err;
};

static void fx_engine(struct fx *f)
{
    struct ids_error err = IDS_ERROR_INIT;

    engine_free(f->eng);
    f->eng = NULL;
    if (engine_new(f->cfg, f->s, &f->opts, &f->eng, &err) != IDS_OK) {
        fail_msg("engine_new: %s", err.msg);
    }
}

static struct fx *fx_new_yaml(const char *yaml)
{
    struct fx *f = xcalloc(1, sizeof(*f));
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf sb = STRBUF_INIT;
    size_t i;

    memconn_reset();
    cs_puts = 0;
    mv_puts = 0;
    f->dir = test_tmpdir();
    f->yaml = xstrdup(yaml);
    if (config_load_string("test.yaml", yaml, strlen(yaml), &f->cfg, &err) != IDS_OK) {
        fail_msg("config: %s", err.msg);
    }
    for (i = 0; i < f->cfg->nconnectors; i++) {
        struct connector_config *cc = &f->cfg->connectors[i];

        cc->ops = strncmp(cc->name, "cloud", 5) == 0 ? &memconn_id_ops : &memconn_dn_ops;
    }
    strbuf_addf(&sb, "sqlite:%s/idsync.db", f->dir);
    if (store_open(sb.buf, &f->s, &err) != IDS_OK) {
        fail_msg("store_open: %s", err.msg);
    }
    strbuf_release(&sb);
    real_ops = f->s->ops;
    counting_ops = *real_ops;
    counting_ops.cs_put = counting_cs_put;
    counting_ops.cs_put_export = counting_cs_put_export;
    counting_ops.mv_put = counting_mv_put;
    counting_ops.cs_ref_by_mv = counting_cs_ref_by_mv;
    counting_ops.cs_get_by_dn = counting_cs_get_by_dn;
    f->s->ops = &counting_ops;
    store_connector_id(f->s, "corp", &f->corp_id, &err);
    store_connector_id(f->s, "hr", &f->hr_id, &err);
    store_connector_id(f->s, "cloud", &f->cloud_id, &err);
    f->corp = memdir_get("corp");
    f->hr = memdir_get("hr");
    f->cloud = memdir_get("cloud");
    fx_engine(f);
    return f;
}

static struct fx *fx_new_opts(const char *deprovision, const char *extra, long max_deletes,
                              long max_errors)
{
    struct strbuf y = STRBUF_INIT;
    struct fx *f;

    strbuf_addf(&y, base_yaml, deprovision, extra, max_deletes, max_errors);
    f = fx_new_yaml(y.buf);
    strbuf_release(&y);
    return f;
}

static struct fx *fx_new(void)
{
    return fx_new_opts("delete", "", 500, 1000);
}

static void fx_free(struct fx *f)
{
    engine_free(f->eng);
    run_record_release(&f->run);
    store_close(f->s);
    config_free(f->cfg);
    test_rmtree(f->dir);
    free(f->dir);
    free(f->yaml);
    free(f);
    memconn_reset();
}

static enum ids_err do_import(struct fx *f, const char *conn, bool full)
{
    run_record_release(&f->run);
    ids_error_clear(&f->err);
    return engine_import(f->eng, conn, full, &f->run, &f->err);
}

static enum ids_err do_sync(struct fx *f, bool full)
{
    run_record_release(&f->run);
    ids_error_clear(&f->err);
    return engine_sync(f->eng, full, &f->run, &f->err);
}

static enum ids_err do_export(struct fx *f, const char *conn)
{
    run_record_release(&f->run);
    ids_error_clear(&f->err);
    return engine_export(f->eng, conn, &f->run, &f->err);
}

static enum ids_err do_cycle(struct fx *f, bool full)
{
    run_record_release(&f->run);
    ids_error_clear(&f->err);
    return engine_cycle(f->eng, full, &f->run, &f->err);
}

#define OK(call)                                                                                   \
    do {                                                                                           \
        enum ids_err ok_ret_ = (call);                                                             \
        if (ok_ret_ != IDS_OK) {                                                                   \
            fail_msg("%s: %s: %s (run message: %s)", #call, ids_err_name(ok_ret_), f->err.msg,     \
                     f->run.message ? f->run.message : "");                                        \
        }                                                                                          \
    } while (0)

static struct cs_object *cs_anchor(struct fx *f, int64_t conn, const char *anchor)
{
    struct cs_object *o = NULL;
    struct ids_error err = IDS_ERROR_INIT;

    if (store_cs_get_by_anchor(f->s, conn, anchor, &o, &err) != IDS_OK) {
        return NULL;
    }
    return o;
}

static struct mv_object *mv_of(struct fx *f, int64_t conn, const char *anchor)
{
    struct cs_object *o = cs_anchor(f, conn, anchor);
    struct mv_object *m = NULL;
    struct ids_error err = IDS_ERROR_INIT;

    if (o == NULL || o->mv_id == 0) {
        cs_object_free(o);
        return NULL;
    }
    if (store_mv_get(f->s, o->mv_id, &m, &err) != IDS_OK) {
        m = NULL;
    }
    cs_object_free(o);
    return m;
}

/* The target CS object of the MV object of (conn, anchor) in cloud. */
static struct cs_object *target_of(struct fx *f, int64_t conn, const char *anchor)
{
    struct cs_object *o = cs_anchor(f, conn, anchor);
    struct cs_object *t = NULL;
    struct ids_error err = IDS_ERROR_INIT;

    if (o == NULL || o->mv_id == 0) {
        cs_object_free(o);
        return NULL;
    }
    if (store_cs_get_by_mv(f->s, f->cloud_id, o->mv_id, &t, &err) != IDS_OK) {
        t = NULL;
    }
    cs_object_free(o);
    return t;
}

static long count_sel(struct fx *f, int64_t conn, enum store_sel sel)
{
    long n = -1;
    struct ids_error err = IDS_ERROR_INIT;

    assert_int_equal(store_cs_count(f->s, conn, sel, &n, &err), IDS_OK);
    return n;
}

static long mv_count(struct fx *f)
{
    long n = -1;
    struct ids_error err = IDS_ERROR_INIT;

    assert_int_equal(store_mv_count(f->s, &n, &err), IDS_OK);
    return n;
}

/* Errors of the last run with this code; the first message into msg. */
static long run_errors(struct fx *f, const char *code, struct strbuf *msg)
{
    struct run_error *e = NULL;
    size_t n = 0;
    size_t i;
    long found = 0;
    struct ids_error err = IDS_ERROR_INIT;

    assert_int_equal(store_run_errors(f->s, f->run.id, 0, 1000, &e, &n, &err), IDS_OK);
    for (i = 0; i < n; i++) {
        if (strcmp(e[i].code, code) == 0) {
            if (found == 0 && msg != NULL) {
                strbuf_addf(msg, "%s|%s|%s|%s|%s", e[i].connector ? e[i].connector : "",
                            e[i].anchor ? e[i].anchor : "", e[i].dn ? e[i].dn : "",
                            e[i].attr ? e[i].attr : "", e[i].message);
            }
            found++;
        }
        run_error_release(&e[i]);
    }
    free(e);
    return found;
}

static bool attr_has(const struct entry *e, const char *name, const char *value)
{
    const struct attr *a = entry_attr(e, name);

    return a != NULL && attr_has_value(a, value, strlen(value));
}

static void add_users(struct fx *f, int n)
{
    int i;

    for (i = 1; i <= n; i++) {
        char anchor[32];
        char dn[64];
        char mail[64];
        char cn[32];

        snprintf(anchor, sizeof(anchor), "u%d", i);
        snprintf(dn, sizeof(dn), "uid=u%d,ou=people", i);
        snprintf(mail, sizeof(mail), "mail=user%d@corp.example", i);
        snprintf(cn, sizeof(cn), "cn=User %d", i);
        memdir_add(f->corp, "user", anchor, dn, mail, cn, NULL);
    }
}

/* import corp, sync, export cloud */
static void initial_load(struct fx *f)
{
    OK(do_import(f, "corp", true));
    OK(do_sync(f, false));
    OK(do_export(f, "cloud"));
}

/* ---- import ---------------------------------------------------------------- */

static void test_import_add_update_unchanged(void **state)
{
    struct fx *f = fx_new();
    struct cs_object *o;
    struct change *ch;
    struct mod *m;

    (void)state;
    add_users(f, 3);
    OK(do_import(f, "corp", true));
    assert_string_equal(f->run.step, "full-import");
    assert_int_equal(f->run.counters.read, 3);
    assert_int_equal(f->run.counters.staged_add, 3);
    assert_int_equal(count_sel(f, f->corp_id, STORE_SEL_PENDING_IMPORT), 3);
    o = cs_anchor(f, f->corp_id, "u2");
    assert_non_null(o);
    assert_int_equal(o->import_state, CS_IMPORT_ADD);
    assert_string_equal(o->dn, "uid=u2,ou=people");
    assert_true(attr_has(o->entry, "mail", "user2@corp.example"));
    cs_object_free(o);

    /* unchanged: one lookup per object, no write at all */
    cs_puts = 0;
    OK(do_import(f, "corp", true));
    assert_int_equal(f->run.counters.unchanged, 3);
    assert_int_equal(f->run.counters.staged_add + f->run.counters.staged_update, 0);
    assert_int_equal(cs_puts, 0);

    /* a changed value: update staged, ADD kept while not synced */
    ch = change_new(CHANGE_MODIFY, "user", "u2", NULL);
    m = change_add_mod(ch, MOD_REPLACE, "department", 0);
    attr_add_value(&m->attr, "Sales", 5);
    memdir_modify(f->corp, ch);
    change_free(ch);
    OK(do_import(f, "corp", true));
    assert_int_equal(f->run.counters.staged_update, 1);
    assert_int_equal(f->run.counters.unchanged, 2);
    o = cs_anchor(f, f->corp_id, "u2");
    assert_int_equal(o->import_state, CS_IMPORT_ADD);
    assert_true(attr_has(o->entry, "department", "Sales"));
    cs_object_free(o);

    OK(do_sync(f, false));
    assert_int_equal(count_sel(f, f->corp_id, STORE_SEL_PENDING_IMPORT), 0);
    ch = change_new(CHANGE_MODIFY, "user", "u3", NULL);
    m = change_add_mod(ch, MOD_REPLACE, "department", 0);
    attr_add_value(&m->attr, "IT", 2);
    memdir_modify(f->corp, ch);
    change_free(ch);
    OK(do_import(f, "corp", true));
    o = cs_anchor(f, f->corp_id, "u3");
    assert_int_equal(o->import_state, CS_IMPORT_UPDATE);
    cs_object_free(o);
    fx_free(f);
}

static void test_import_delete_staging(void **state)
{
    struct fx *f = fx_new();
    struct cs_object *o;

    (void)state;
    add_users(f, 3);
    initial_load(f);
    /* the provisioned cloud objects now have anchors; one more is pending */
    memdir_add(f->corp, "user", "u9", "uid=u9,ou=people", "mail=u9@corp.example", "cn=U9", NULL);
    OK(do_import(f, "corp", false));
    OK(do_sync(f, false));
    assert_int_equal(count_sel(f, f->cloud_id, STORE_SEL_PENDING_EXPORT), 1);
    /* a full import of cloud: the provisioned-but-not-exported object has no
     * anchor and must not be staged for deletion */
    OK(do_import(f, "cloud", true));
    assert_int_equal(f->run.counters.staged_delete, 0);
    o = target_of(f, f->corp_id, "u9");
    assert_non_null(o);
    assert_null(o->anchor);
    assert_int_equal(o->import_state, CS_IMPORT_NONE);
    cs_object_free(o);

    memdir_remove(f->corp, "u2");
    OK(do_import(f, "corp", true));
    assert_int_equal(f->run.counters.staged_delete, 1);
    o = cs_anchor(f, f->corp_id, "u2");
    assert_non_null(o);
    assert_int_equal(o->import_state, CS_IMPORT_DELETE);
    cs_object_free(o);
    fx_free(f);
}

static void test_import_guard(void **state)
{
    struct fx *f = fx_new();
    char anchor[16];
    int i;

    (void)state;
    add_users(f, 20);
    OK(do_import(f, "corp", true));
    OK(do_sync(f, false));
    for (i = 1; i <= 15; i++) {
        snprintf(anchor, sizeof(anchor), "u%d", i);
        memdir_remove(f->corp, anchor);
    }
    memdir_add(f->corp, "user", "new1", "uid=new1,ou=people", "mail=n@x", NULL);
    assert_int_equal(do_import(f, "corp", true), IDS_ETHRESHOLD);
    assert_int_equal(f->run.status, RUN_STOPPED_THRESHOLD);
    assert_non_null(f->run.message);
    assert_non_null(strstr(f->run.message, "15 of 20"));
    assert_non_null(strstr(f->run.message, "--allow-deletes 15"));
    assert_int_equal(engine_exit_code(IDS_ETHRESHOLD, &f->run), 2);
    /* nothing at all was staged, not even the new object */
    assert_int_equal(count_sel(f, f->corp_id, STORE_SEL_PENDING_IMPORT), 0);
    assert_null(cs_anchor(f, f->corp_id, "new1"));

    f->opts.allow_deletes = 15;
    fx_engine(f);
    OK(do_import(f, "corp", true));
    assert_int_equal(f->run.counters.staged_delete, 15);
    assert_int_equal(f->run.counters.staged_add, 1);
    fx_free(f);
}

/* The attribute guard: most synced objects lose every value of one
 * attribute (a renamed column, a lost read permission): the import stops
 * and stages nothing, by delta (modify records) and by full read alike,
 * until --allow-deletes covers it. A few real removals pass. */
static void test_attribute_guard(void **state)
{
    struct fx *f = fx_new();
    char anchor[16];
    int i;

    (void)state;
    add_users(f, 20);
    OK(do_import(f, "corp", true));
    OK(do_sync(f, false));
    OK(do_import(f, "corp", false)); /* the watermark after the load */
    for (i = 1; i <= 12; i++) {
        struct change *ch;

        snprintf(anchor, sizeof(anchor), "u%d", i);
        ch = change_new(CHANGE_MODIFY, "user", anchor, NULL);
        change_add_mod(ch, i <= 6 ? MOD_DELETE : MOD_REPLACE, "cn", 0);
        change_add_mod(ch, MOD_ADD, "description", 0);
        attr_add_value(&ch->mods[1].attr, "left", 4);
        memdir_modify(f->corp, ch);
        change_free(ch);
    }
    assert_int_equal(do_import(f, "corp", false), IDS_ETHRESHOLD);
    assert_int_equal(f->run.status, RUN_STOPPED_THRESHOLD);
    assert_non_null(f->run.message);
    assert_non_null(strstr(f->run.message, "The delta import of corp would remove every value of "
                                           "cn from 12 of 20 objects"));
    assert_non_null(strstr(f->run.message, "`idsync import corp --allow-deletes 12`"));
    assert_int_equal(f->run.counters.staged_update, 0);
    assert_int_equal(count_sel(f, f->corp_id, STORE_SEL_PENDING_IMPORT), 0);
    assert_int_equal(engine_exit_code(IDS_ETHRESHOLD, &f->run), 2);
    /* a full read sees the same */
    assert_int_equal(do_import(f, "corp", true), IDS_ETHRESHOLD);
    assert_non_null(strstr(f->run.message, "The full import of corp would remove every value of "
                                           "cn from 12 of 20 objects"));
    assert_int_equal(count_sel(f, f->corp_id, STORE_SEL_PENDING_IMPORT), 0);

    f->opts.allow_deletes = 12;
    fx_engine(f);
    OK(do_import(f, "corp", true));
    assert_int_equal(f->run.counters.staged_update, 12);
    OK(do_sync(f, false));
    /* a few removals are under the share (50 %) */
    f->opts.allow_deletes = 0;
    fx_engine(f);
    for (i = 13; i <= 15; i++) {
        struct change *ch;

        snprintf(anchor, sizeof(anchor), "u%d", i);
        ch = change_new(CHANGE_MODIFY, "user", anchor, NULL);
        change_add_mod(ch, MOD_DELETE, "mail", 0);
        memdir_modify(f->corp, ch);
        change_free(ch);
    }
    OK(do_import(f, "corp", true));
    assert_int_equal(f->run.counters.staged_update, 3);
    fx_free(f);
}

static void test_import_unreadable_blocks_deletes(void **state)
{
    struct fx *f = fx_new();
    struct strbuf msg = STRBUF_INIT;

    (void)state;
    add_users(f, 4);
    OK(do_import(f, "corp", true));
    memdir_remove(f->corp, "u1");
    strvec_push(&f->corp->bad, "u3");
    OK(do_import(f, "corp", true));
    assert_int_equal(f->run.status, RUN_COMPLETED_WITH_ERRORS);
    assert_int_equal(f->run.counters.staged_delete, 0);
    assert_non_null(f->run.message);
    assert_non_null(strstr(f->run.message, "no deletions were staged"));
    assert_int_equal(run_errors(f, "bad-input", &msg), 1);
    assert_non_null(strstr(msg.buf, "u3"));
    strbuf_release(&msg);
    fx_free(f);
}

static void test_delta_import(void **state)
{
    struct fx *f = fx_new();
    struct change *ch;
    struct mod *m;
    struct cs_object *o;

    (void)state;
    add_users(f, 3);
    OK(do_import(f, "corp", false)); /* no watermark yet: full */
    assert_string_equal(f->run.step, "full-import");
    assert_non_null(strstr(f->run.message, "no watermark"));
    OK(do_sync(f, false));
    memdir_add(f->corp, "user", "u4", "uid=u4,ou=people", "mail=u4@x", NULL);
    ch = change_new(CHANGE_MODIFY, "user", "u1", NULL);
    m = change_add_mod(ch, MOD_ADD, "department", 0);
    attr_add_value(&m->attr, "Ops", 3);
    memdir_modify(f->corp, ch);
    change_free(ch);
    memdir_remove(f->corp, "u2");
    OK(do_import(f, "corp", false));
    assert_string_equal(f->run.step, "delta-import");
    assert_int_equal(f->run.counters.read, 3);
    assert_int_equal(f->run.counters.staged_add, 1);
    assert_int_equal(f->run.counters.staged_update, 1);
    assert_int_equal(f->run.counters.staged_delete, 1);
    o = cs_anchor(f, f->corp_id, "u1");
    assert_true(attr_has(o->entry, "department", "Ops"));
    assert_int_equal(o->import_state, CS_IMPORT_UPDATE);
    cs_object_free(o);
    /* nothing new: a delta reads nothing */
    OK(do_import(f, "corp", false));
    assert_int_equal(f->run.counters.read, 0);
    /* the connector asks for a full import */
    f->corp->full_required = true;
    OK(do_import(f, "corp", false));
    assert_string_equal(f->run.step, "full-import");
    assert_non_null(strstr(f->run.message, "change log was reset"));
    fx_free(f);
}

/* ---- sync: join, projection, flow ------------------------------------------ */

static void test_projection_and_provisioning(void **state)
{
    struct fx *f = fx_new();
    struct mv_object *m;
    struct cs_object *t;
    struct entry *e;

    (void)state;
    add_users(f, 3);
    OK(do_import(f, "corp", true));
    OK(do_sync(f, false));
    assert_string_equal(f->run.step, "delta-sync");
    assert_int_equal(f->run.counters.projected, 3);
    assert_int_equal(f->run.counters.provisioned, 3);
    assert_int_equal(f->run.status, RUN_SUCCESS);
    assert_int_equal(mv_count(f), 3);
    m = mv_of(f, f->corp_id, "u1");
    assert_non_null(m);
    assert_string_equal(m->type, "person");
    assert_true(attr_has(m->entry, "mail", "user1@corp.example"));
    assert_true(attr_has(m->entry, "sourceAnchor", "u1"));
    assert_int_equal(entry_attr(m->entry, "name")->source, 0);
    mv_object_free(m);
    t = target_of(f, f->corp_id, "u1");
    assert_non_null(t);
    assert_int_equal(t->flags & CS_PROVISIONED, CS_PROVISIONED);
    assert_int_equal(t->export_state, CS_EXPORT_PENDING);
    assert_int_equal(t->pending_export->op, CHANGE_ADD);
    cs_object_free(t);

    OK(do_export(f, "cloud"));
    assert_int_equal(f->run.counters.export_add, 3);
    assert_int_equal(memdir_count_sent(f->cloud, CHANGE_ADD), 3);
    t = target_of(f, f->corp_id, "u1");
    assert_non_null(t->anchor);
    assert_int_equal(t->export_state, CS_EXPORT_NONE);
    assert_non_null(t->unconfirmed);
    e = memdir_find(f->cloud, t->anchor);
    assert_non_null(e);
    assert_true(attr_has(e, "externalId", "u1"));
    assert_true(attr_has(e, "userName", "user1@corp.example"));
    assert_true(attr_has(e, "displayName", "User 1"));
    cs_object_free(t);

    /* confirming import: everything came back */
    OK(do_import(f, "cloud", false));
    assert_int_equal(f->run.counters.confirmed, 3);
    assert_int_equal(f->run.counters.errors, 0);
    /* and a second sync has nothing to do */
    OK(do_sync(f, false));
    assert_int_equal(count_sel(f, f->cloud_id, STORE_SEL_PENDING_EXPORT), 0);
    fx_free(f);
}

static void test_join_by_mail_and_precedence(void **state)
{
    struct fx *f = fx_new();
    struct mv_object *m;

    (void)state;
    memdir_add(f->corp, "user", "u1", "uid=u1,ou=people", "mail=Ann@Corp.Example", "cn=Ann",
               "department=Corp Dept", NULL);
    memdir_add(f->corp, "user", "u2", "uid=u2,ou=people", "mail=bob@corp.example", "cn=Bob", NULL);
    memdir_add(f->hr, "person", "h1", "h1", "mail=ann@corp.example", "department=HR Dept",
               "title=Engineer", NULL);
    memdir_add(f->hr, "person", "h2", "h2", "mail=BOB@corp.example ", "department=Sales",
               "title=Manager", NULL);
    memdir_add(f->hr, "person", "h3", "h3", "mail=nobody@corp.example", NULL);
    OK(do_import(f, "corp", true));
    OK(do_import(f, "hr", true));
    OK(do_sync(f, true));
    assert_string_equal(f->run.step, "full-sync");
    assert_int_equal(f->run.counters.projected, 2);
    assert_int_equal(f->run.counters.joined, 2); /* hr h1, h2 by normalised mail */
    assert_int_equal(mv_count(f), 2);
    /* corp (from[0]) wins department when it has one; hr fills the gap */
    m = mv_of(f, f->hr_id, "h1");
    assert_non_null(m);
    assert_true(attr_has(m->entry, "department", "Corp Dept"));
    assert_int_equal(entry_attr(m->entry, "department")->source, 0);
    assert_true(attr_has(m->entry, "title", "Engineer"));
    assert_int_equal(entry_attr(m->entry, "title")->source, 1);
    mv_object_free(m);
    m = mv_of(f, f->hr_id, "h2");
    assert_true(attr_has(m->entry, "department", "Sales"));
    assert_int_equal(entry_attr(m->entry, "department")->source, 1);
    mv_object_free(m);
    /* h3 matched nothing and hr does not project */
    assert_null(mv_of(f, f->hr_id, "h3"));
    /* the corp department goes away: hr's value flows in */
    {
        struct change *ch = change_new(CHANGE_MODIFY, "user", "u1", NULL);

        change_add_mod(ch, MOD_DELETE, "department", 0);
        memdir_modify(f->corp, ch);
        change_free(ch);
    }
    OK(do_import(f, "corp", false));
    OK(do_sync(f, false));
    assert_int_equal(f->run.counters.flowed, 1);
    m = mv_of(f, f->corp_id, "u1");
    assert_true(attr_has(m->entry, "department", "HR Dept"));
    mv_object_free(m);
    /* the hr object leaves: the MV object stays (corp still contributes) */
    memdir_remove(f->hr, "h1");
    OK(do_import(f, "hr", true));
    OK(do_sync(f, false));
    assert_int_equal(f->run.counters.disconnected, 1);
    assert_int_equal(f->run.counters.mv_deleted, 0);
    m = mv_of(f, f->corp_id, "u1");
    assert_null(entry_attr(m->entry, "title"));
    assert_null(entry_attr(m->entry, "department"));
    mv_object_free(m);
    fx_free(f);
}

static void test_ambiguous_join(void **state)
{
    struct fx *f = fx_new();
    struct strbuf msg = STRBUF_INIT;
    struct cs_object *o;

    (void)state;
    memdir_add(f->corp, "user", "u1", "uid=u1", "mail=same@x", "cn=A", NULL);
    memdir_add(f->corp, "user", "u2", "uid=u2", "mail=same@x", "cn=B", NULL);
    memdir_add(f->hr, "person", "h1", "h1", "mail=same@x", "title=T", NULL);
    OK(do_import(f, "corp", true));
    OK(do_import(f, "hr", true));
    OK(do_sync(f, false));
    assert_int_equal(f->run.status, RUN_COMPLETED_WITH_ERRORS);
    assert_int_equal(run_errors(f, "ambiguous-join", &msg), 1);
    assert_non_null(strstr(msg.buf, "hr|h1|"));
    assert_non_null(strstr(msg.buf, "MV "));
    assert_int_equal(mv_count(f), 2);
    o = cs_anchor(f, f->hr_id, "h1");
    assert_int_equal(o->mv_id, 0);
    cs_object_free(o);
    assert_int_equal(engine_exit_code(IDS_OK, &f->run), 1);
    strbuf_release(&msg);
    fx_free(f);
}

static void test_join_by_anchor(void **state)
{
    struct fx *f = fx_new();
    struct cs_object *o;
    struct ids_error err = IDS_ERROR_INIT;
    int64_t mv;

    (void)state;
    add_users(f, 2);
    initial_load(f);
    /* the link is lost (e.g. a store restored from an older copy) */
    o = cs_anchor(f, f->corp_id, "u1");
    mv = o->mv_id;
    o->mv_id = 0;
    o->import_state = CS_IMPORT_UPDATE;
    assert_int_equal(store_cs_put(f->s, o, NULL, &err), IDS_OK);
    cs_object_free(o);
    OK(do_sync(f, false));
    assert_int_equal(f->run.counters.joined, 1); /* by sourceAnchor, the first rule */
    assert_int_equal(f->run.counters.projected, 0);
    assert_int_equal(mv_count(f), 2);
    o = cs_anchor(f, f->corp_id, "u1");
    assert_int_equal(o->mv_id, mv);
    cs_object_free(o);
    /* nothing to export: the target object was already right */
    assert_int_equal(count_sel(f, f->cloud_id, STORE_SEL_PENDING_EXPORT), 0);
    fx_free(f);
}

/* ---- references ------------------------------------------------------------ */

static void test_references_and_order(void **state)
{
    struct fx *f = fx_new();
    struct mv_object *g;
    struct cs_object *t;
    struct entry *cg;
    size_t i;
    size_t group_at = 0;
    size_t last_user = 0;

    (void)state;
    /* the group comes first in the directory: order must not matter */
    memdir_add(f->corp, "group", "g1", "cn=staff,ou=groups", "cn=staff", "member=uid=u1,ou=people",
               "member=UID=U2,ou=people", NULL);
    add_users(f, 3);
    OK(do_import(f, "corp", true));
    OK(do_sync(f, true));
    assert_int_equal(f->run.counters.errors, 0);
    g = mv_of(f, f->corp_id, "g1");
    assert_non_null(g);
    assert_non_null(entry_attr(g->entry, "members"));
    assert_int_equal(entry_attr(g->entry, "members")->nvals, 2);
    assert_true(entry_attr(g->entry, "members")->flags & ATTR_REF);
    mv_object_free(g);
    OK(do_export(f, "cloud"));
    assert_int_equal(f->run.counters.export_add, 4);
    /* the group was sent after its members */
    for (i = 0; i < f->cloud->nsent; i++) {
        if (strcmp(f->cloud->sent[i]->type, "Group") == 0) {
            group_at = i;
        } else {
            last_user = i;
        }
    }
    assert_true(group_at > last_user);
    t = target_of(f, f->corp_id, "g1");
    cg = memdir_find(f->cloud, t->anchor);
    assert_non_null(cg);
    assert_int_equal(entry_attr(cg, "members")->nvals, 2);
    {
        struct cs_object *u1 = target_of(f, f->corp_id, "u1");

        /* a SCIM-like target receives anchors */
        assert_true(attr_has(cg, "members", u1->anchor));
        cs_object_free(u1);
    }
    cs_object_free(t);
    fx_free(f);
}

/* A target that answers only at export_end (like CSV): the members'
 * anchors come with the end of a session, so the group goes in a second
 * session of the same export run. */
static void test_late_results_target(void **state)
{
    struct fx *f = fx_new();
    struct cs_object *t;
    struct entry *cg;

    (void)state;
    memdir_add(f->corp, "group", "g1", "cn=staff,ou=groups", "cn=staff", "member=uid=u1,ou=people",
               "member=uid=u2,ou=people", NULL);
    add_users(f, 2);
    f->cloud->late_results = true;
    OK(do_import(f, "corp", true));
    OK(do_sync(f, false));
    OK(do_export(f, "cloud"));
    assert_int_equal(f->run.counters.export_add, 3);
    assert_int_equal(f->run.counters.errors, 0);
    assert_int_equal(f->cloud->sessions, 2);
    assert_int_equal(count_sel(f, f->cloud_id, STORE_SEL_PENDING_EXPORT), 0);
    t = target_of(f, f->corp_id, "g1");
    cg = memdir_find(f->cloud, t->anchor);
    assert_non_null(cg);
    assert_int_equal(entry_attr(cg, "members")->nvals, 2);
    cs_object_free(t);
    fx_free(f);
}

/* A target that answers only at export_end, with more objects than a
 * batch: the changes waiting for their answer are spilled to a temporary
 * file and read back to record them. Each object records the change that
 * was sent as unconfirmed (a confirming import confirms all of them), and
 * the one the system refused keeps its pending add and the refusal. */
static void test_late_results_many(void **state)
{
    struct fx *f = fx_new();
    struct cs_object *t;
    struct cs_object *bad;
    int i;

    (void)state;
    add_users(f, 1200);
    f->cloud->late_results = true;
    OK(do_import(f, "corp", true));
    OK(do_sync(f, false));
    bad = target_of(f, f->corp_id, "u700");
    assert_non_null(bad->pending_export);
    f->cloud->fail_value = xstrdup("user700@corp.example");
    assert_int_equal(do_export(f, "cloud"), IDS_OK);
    assert_int_equal(f->run.counters.export_add, 1199);
    assert_int_equal(f->run.counters.export_failed, 1);
    assert_int_equal(memdir_count_sent(f->cloud, CHANGE_ADD), 1200);
    for (i = 1; i <= 1200; i += 37) {
        char anchor[16];

        snprintf(anchor, sizeof(anchor), "u%d", i);
        t = target_of(f, f->corp_id, anchor);
        assert_non_null(t);
        if (i == 700) {
            cs_object_free(t);
            continue;
        }
        assert_int_equal(t->export_state, CS_EXPORT_NONE);
        assert_non_null(t->anchor);
        assert_non_null(t->unconfirmed);
        assert_int_equal(t->unconfirmed->op, CHANGE_ADD);
        assert_true(change_mod_values(t->unconfirmed, MOD_ADD, "externalId") != NULL);
        assert_string_equal(change_mod_values(t->unconfirmed, MOD_ADD, "externalId")->vals[0].data,
                            anchor);
        assert_non_null(memdir_find(f->cloud, t->anchor));
        cs_object_free(t);
    }
    cs_object_free(bad);
    bad = target_of(f, f->corp_id, "u700");
    assert_int_equal(bad->export_state, CS_EXPORT_FAILED);
    assert_null(bad->anchor);
    assert_non_null(bad->pending_export);
    assert_non_null(strstr(bad->export_error, "rejected by the test"));
    cs_object_free(bad);
    /* what was sent is what the system holds: all confirmed */
    OK(do_import(f, "cloud", false));
    assert_int_equal(f->run.counters.confirmed, 1199);
    assert_int_equal(f->run.counters.errors, 0);
    fx_free(f);
}

static void test_reference_resolved_later(void **state)
{
    struct fx *f = fx_new();
    struct strbuf msg = STRBUF_INIT;
    struct mv_object *g;
    struct mv_object *u;
    char idbuf[32];

    (void)state;
    memdir_add(f->corp, "group", "g1", "cn=staff,ou=groups", "cn=staff", "member=uid=u1,ou=people",
               "member=uid=late,ou=people", NULL);
    add_users(f, 1);
    OK(do_import(f, "corp", true));
    OK(do_sync(f, false));
    assert_int_equal(run_errors(f, "reference-unresolved", &msg), 1);
    assert_non_null(strstr(msg.buf, "uid=late,ou=people"));
    assert_non_null(strstr(msg.buf, "corp|g1|"));
    g = mv_of(f, f->corp_id, "g1");
    assert_int_equal(entry_attr(g->entry, "members")->nvals, 1);
    mv_object_free(g);
    OK(do_export(f, "cloud"));

    /* the member arrives; the group itself does not change */
    memdir_add(f->corp, "user", "late", "uid=late,ou=people", "mail=late@x", "cn=Late", NULL);
    OK(do_import(f, "corp", false));
    assert_int_equal(f->run.counters.staged_add, 1);
    OK(do_sync(f, false));
    assert_int_equal(f->run.counters.errors, 0);
    g = mv_of(f, f->corp_id, "g1");
    u = mv_of(f, f->corp_id, "late");
    snprintf(idbuf, sizeof(idbuf), "%lld", (long long)u->id);
    assert_true(attr_has(g->entry, "members", idbuf));
    mv_object_free(g);
    mv_object_free(u);
    /* the group's export waits for the new member's create, then goes */
    OK(do_export(f, "cloud"));
    assert_int_equal(f->run.counters.export_add, 1);
    assert_int_equal(f->run.counters.export_update, 1);
    assert_int_equal(count_sel(f, f->cloud_id, STORE_SEL_PENDING_EXPORT), 0);
    strbuf_release(&msg);
    fx_free(f);
}

/* Group g1 of corp loses member `out` and gains `in`; delta import. */
static void swap_member(struct fx *f, const char *out, const char *in)
{
    struct change *ch = change_new(CHANGE_MODIFY, "group", "g1", NULL);
    struct mod *m;

    m = change_add_mod(ch, MOD_DELETE, "member", 0);
    attr_add_value(&m->attr, out, strlen(out));
    m = change_add_mod(ch, MOD_ADD, "member", 0);
    attr_add_value(&m->attr, in, strlen(in));
    memdir_modify(f->corp, ch);
    change_free(ch);
    OK(do_import(f, "corp", false));
}

static void test_minimal_member_diff(void **state)
{
    struct fx *f = fx_new();
    struct cs_object *t;
    size_t i;

    (void)state;
    memdir_add(f->corp, "group", "g1", "cn=staff,ou=groups", "cn=staff", "member=uid=u1,ou=people",
               "member=uid=u2,ou=people", NULL);
    add_users(f, 3);
    initial_load(f);
    OK(do_import(f, "cloud", false));
    swap_member(f, "uid=u1,ou=people", "uid=u3,ou=people");
    OK(do_sync(f, false));
    t = target_of(f, f->corp_id, "g1");
    assert_non_null(t->pending_export);
    assert_int_equal(t->pending_export->op, CHANGE_MODIFY);
    assert_int_equal(t->pending_export->nmods, 2);
    for (i = 0; i < t->pending_export->nmods; i++) {
        const struct mod *md = &t->pending_export->mods[i];

        assert_string_equal(md->attr.name, "members");
        assert_int_not_equal(md->op, MOD_REPLACE);
        assert_int_equal(md->attr.nvals, 1);
    }
    cs_object_free(t);
    memdir_clear_sent(f->cloud);
    OK(do_export(f, "cloud"));
    assert_int_equal(f->cloud->nsent, 1);
    {
        struct cs_object *g = target_of(f, f->corp_id, "g1");
        struct cs_object *u1 = target_of(f, f->corp_id, "u1");
        struct cs_object *u3 = target_of(f, f->corp_id, "u3");
        struct entry *cg = memdir_find(f->cloud, g->anchor);

        assert_false(attr_has(cg, "members", u1->anchor));
        assert_true(attr_has(cg, "members", u3->anchor));
        assert_int_equal(entry_attr(cg, "members")->nvals, 2);
        cs_object_free(g);
        cs_object_free(u1);
        cs_object_free(u3);
    }
    fx_free(f);
}

/* A delta sync of a big group resolves only the members its import saw
 * come and go (inbound), and maps only those into a target in step
 * (outbound); the export still makes the group right. */
static void test_member_delta_maps_only_changes(void **state)
{
    struct fx *f = fx_new();
    struct entry *g = entry_new("group", "g1", "cn=big,ou=groups");
    struct cs_object *t;
    struct cs_object *u1;
    struct cs_object *u21;
    char dn[64];
    int i;

    (void)state;
    entry_add_str(g, "cn", "big");
    for (i = 1; i <= 20; i++) {
        snprintf(dn, sizeof(dn), "uid=u%d,ou=people", i);
        entry_add_str(g, "member", dn);
    }
    memdir_put(f->corp, g);
    add_users(f, 21);
    initial_load(f);
    OK(do_import(f, "cloud", false));
    OK(do_sync(f, false)); /* the confirmed state: nothing pending */
    swap_member(f, "uid=u1,ou=people", "uid=u21,ou=people");
    ref_lookups = 0;
    dn_lookups = 0;
    OK(do_sync(f, false));
    /* u1 (checked, then taken out) and u21: not the 19 others, either way */
    assert_true(dn_lookups <= 3);
    assert_true(ref_lookups <= 3);
    t = target_of(f, f->corp_id, "g1");
    u1 = target_of(f, f->corp_id, "u1");
    u21 = target_of(f, f->corp_id, "u21");
    assert_non_null(t->pending_export);
    assert_int_equal(t->pending_export->nmods, 2);
    for (i = 0; i < (int)t->pending_export->nmods; i++) {
        const struct mod *md = &t->pending_export->mods[i];
        char id[32];

        snprintf(id, sizeof(id), "%lld", (long long)(md->op == MOD_ADD ? u21->id : u1->id));
        assert_string_equal(md->attr.name, "members");
        assert_int_equal(md->attr.nvals, 1);
        assert_string_equal(md->attr.vals[0].data, id);
    }
    OK(do_export(f, "cloud"));
    {
        struct entry *cg = memdir_find(f->cloud, t->anchor);

        assert_int_equal(entry_attr(cg, "members")->nvals, 20);
        assert_false(attr_has(cg, "members", u1->anchor));
        assert_true(attr_has(cg, "members", u21->anchor));
    }
    cs_object_free(t);
    cs_object_free(u1);
    cs_object_free(u21);
    fx_free(f);
}

/* Changes imported twice before a sync add up: a member taken out and put
 * back again is no change; one taken out stays out. */
static void test_member_changes_merge_between_syncs(void **state)
{
    struct fx *f = fx_new();
    struct cs_object *t;
    struct cs_object *u2;
    struct entry *cg;

    (void)state;
    memdir_add(f->corp, "group", "g1", "cn=staff,ou=groups", "cn=staff", "member=uid=u1,ou=people",
               "member=uid=u2,ou=people", "member=uid=u3,ou=people", NULL);
    add_users(f, 4);
    initial_load(f);
    OK(do_import(f, "cloud", false));
    OK(do_sync(f, false));
    swap_member(f, "uid=u1,ou=people", "uid=u4,ou=people");
    swap_member(f, "uid=u4,ou=people", "uid=u1,ou=people");
    OK(do_sync(f, false));
    t = target_of(f, f->corp_id, "g1");
    assert_null(t->pending_export); /* out and back: nothing to do */
    cs_object_free(t);
    swap_member(f, "uid=u2,ou=people", "uid=u4,ou=people");
    swap_member(f, "uid=u4,ou=people", "uid=u3,ou=people"); /* u3 was there: stays */
    OK(do_sync(f, false));
    OK(do_export(f, "cloud"));
    t = target_of(f, f->corp_id, "g1");
    u2 = target_of(f, f->corp_id, "u2");
    cg = memdir_find(f->cloud, t->anchor);
    assert_int_equal(entry_attr(cg, "members")->nvals, 2); /* u1 and u3 */
    assert_false(attr_has(cg, "members", u2->anchor));
    cs_object_free(t);
    cs_object_free(u2);
    fx_free(f);
}

/* ---- outbound: join guard, rename, deprovisioning ---------------------------- */

static void test_anchor_mismatch_guard(void **state)
{
    struct fx *f = fx_new();
    struct strbuf msg = STRBUF_INIT;
    struct cs_object *t;

    (void)state;
    /* the cloud has an object with u1's mail, managed for another identity */
    memdir_add(f->cloud, "User", "c1", "c1", "userName=user1@corp.example",
               "externalId=someone-else", NULL);
    /* and one with u2's mail that nobody manages yet (soft match allowed) */
    memdir_add(f->cloud, "User", "c2", "c2", "userName=user2@corp.example", NULL);
    OK(do_import(f, "cloud", true));
    add_users(f, 2);
    OK(do_import(f, "corp", true));
    OK(do_sync(f, false));
    assert_int_equal(run_errors(f, "anchor-mismatch", &msg), 1);
    assert_non_null(strstr(msg.buf, "someone-else"));
    assert_non_null(strstr(msg.buf, "cloud|c1|"));
    assert_int_equal(f->run.counters.provisioned, 0);
    assert_null(target_of(f, f->corp_id, "u1"));
    t = target_of(f, f->corp_id, "u2");
    assert_non_null(t);
    assert_string_equal(t->anchor, "c2");
    assert_int_equal(t->pending_export->op, CHANGE_MODIFY);
    cs_object_free(t);
    OK(do_export(f, "cloud"));
    assert_int_equal(memdir_count_sent(f->cloud, CHANGE_ADD), 0);
    assert_true(attr_has(memdir_find(f->cloud, "c2"), "externalId", "u2"));
    strbuf_release(&msg);
    fx_free(f);
}

static const char rename_yaml[] =
    "store: sqlite:unused.db\n"
    "connectors:\n"
    "  corp:\n"
    "    type: null\n"
    "    objects:\n"
    "      user: { attributes: [mail, cn] }\n"
    "  ldap:\n"
    "    type: null\n"
    "    objects:\n"
    "      person: { attributes: [cn, mail, carrier] }\n"
    "metaverse:\n"
    "  person:\n"
    "    from:\n"
    "      - { connector: corp, object: user, project: true, join: [ { sa: _anchor } ],\n"
    "          flow: { sa: _anchor, mail: mail, name: cn } }\n"
    "    to:\n"
    "      - connector: ldap\n"
    "        object: person\n"
    "        provision: true\n"
    "        deprovision: disconnect\n"
    "        anchor_carrier: carrier\n"
    "        join: [ { carrier: sa } ]\n"
    "        flow:\n"
    "          dn: '\"cn=\" .. name .. \",ou=people\"'\n"
    "          cn: name\n"
    "          mail: mail\n"
    "          carrier: sa\n";

/* An outbound rule that fails for an object not yet in the target (its
 * join rule, or a flow when it would be provisioned) names the source
 * object it comes from, not only the metaverse object's number. */
static void test_outbound_errors_name_the_source(void **state)
{
    static const char *const variants[][2] = {
        {"        join: [ { carrier: sa } ]\n",
         "        join: [ { carrier: 'parse_time(mail)' } ]\n"},
        {"          cn: name\n", "          cn: 'parse_time(mail)'\n"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < 2; i++) {
        struct strbuf y = STRBUF_INIT;
        struct strbuf msg = STRBUF_INIT;
        struct ids_error err = IDS_ERROR_INIT;
        int64_t ldap_id = 0;
        const char *at;
        struct fx *f;

        at = strstr(rename_yaml, variants[i][0]);
        assert_non_null(at);
        strbuf_add(&y, rename_yaml, (size_t)(at - rename_yaml));
        strbuf_addstr(&y, variants[i][1]);
        strbuf_addstr(&y, at + strlen(variants[i][0]));
        f = fx_new_yaml(y.buf);
        memdir_add(f->corp, "user", "u1", "u1", "mail=a@x", "cn=Ann", NULL);
        OK(do_import(f, "corp", true));
        OK(do_sync(f, false));
        assert_int_equal(run_errors(f, "expression-error", &msg), 1);
        assert_non_null(strstr(msg.buf, " (from corp u1): metaverse.person.to[0]."));
        assert_non_null(strstr(msg.buf, "parse_time: \"a@x\" is not an ISO 8601"));
        /* and nothing is provisioned for it while its rule fails */
        assert_int_equal(store_connector_id(f->s, "ldap", &ldap_id, &err), IDS_OK);
        assert_int_equal(count_sel(f, ldap_id, STORE_SEL_PENDING_EXPORT), 0);
        strbuf_release(&msg);
        strbuf_release(&y);
        fx_free(f);
    }
}

static void test_rename_and_disconnect(void **state)
{
    struct fx *f = fx_new_yaml(rename_yaml);
    struct memdir *ldap = memdir_get("ldap");
    int64_t ldap_id = 0;
    struct ids_error err = IDS_ERROR_INIT;
    struct cs_object *o;
    struct cs_object *t = NULL;
    struct change *ch;
    struct mod *m;

    (void)state;
    store_connector_id(f->s, "ldap", &ldap_id, &err);
    memdir_add(f->corp, "user", "u1", "u1", "mail=a@x", "cn=Ann", NULL);
    OK(do_import(f, "corp", true));
    OK(do_sync(f, false));
    OK(do_export(f, "ldap"));
    assert_non_null(memdir_find_dn(ldap, "cn=Ann,ou=people"));
    ch = change_new(CHANGE_MODIFY, "user", "u1", NULL);
    m = change_add_mod(ch, MOD_REPLACE, "cn", 0);
    attr_add_value(&m->attr, "Anna", 4);
    memdir_modify(f->corp, ch);
    change_free(ch);
    OK(do_import(f, "corp", false));
    OK(do_sync(f, false));
    o = cs_anchor(f, f->corp_id, "u1");
    assert_int_equal(store_cs_get_by_mv(f->s, ldap_id, o->mv_id, &t, &err), IDS_OK);
    assert_non_null(t->pending_export);
    assert_string_equal(t->pending_export->new_dn, "cn=Anna,ou=people");
    cs_object_free(t);
    cs_object_free(o);
    OK(do_export(f, "ldap"));
    assert_int_equal(f->run.counters.export_rename, 1);
    assert_non_null(memdir_find_dn(ldap, "cn=Anna,ou=people"));
    /* deprovision: disconnect only unlinks */
    memdir_remove(f->corp, "u1");
    OK(do_import(f, "corp", true));
    OK(do_sync(f, false));
    assert_int_equal(f->run.counters.mv_deleted, 1);
    assert_int_equal(f->run.counters.deprovisioned, 1);
    assert_int_equal(count_sel(f, ldap_id, STORE_SEL_PENDING_EXPORT), 0);
    assert_int_equal(count_sel(f, ldap_id, STORE_SEL_DISCONNECTORS), 1);
    fx_free(f);
}

static const char rename_group_yaml[] =
    "store: sqlite:unused.db\n"
    "connectors:\n"
    "  corp:\n"
    "    type: null\n"
    "    objects:\n"
    "      user: { attributes: [cn] }\n"
    "      group: { attributes: [cn, member], references: { member: [user] } }\n"
    "  ldap:\n"
    "    type: null\n"
    "    objects:\n"
    "      person: { attributes: [cn] }\n"
    "      team: { attributes: [cn, member], references: { member: [person] } }\n"
    "metaverse:\n"
    "  person:\n"
    "    from:\n"
    "      - { connector: corp, object: user, project: true, join: [ { sa: _anchor } ],\n"
    "          flow: { sa: _anchor, name: cn } }\n"
    "    to:\n"
    "      - { connector: ldap, object: person, provision: true, deprovision: delete,\n"
    "          flow: { dn: '\"cn=\" .. name .. \",ou=people\"', cn: name } }\n"
    "  group:\n"
    "    from:\n"
    "      - { connector: corp, object: group, project: true, join: [ { sa: _anchor } ],\n"
    "          flow: { sa: _anchor, name: cn, members: member } }\n"
    "    to:\n"
    "      - { connector: ldap, object: team, provision: true, deprovision: delete,\n"
    "          flow: { dn: '\"cn=\" .. name .. \",ou=groups\"', cn: name, member: members } }\n";

/* A renamed member's group waits for the rename; when the rename fails,
 * the group keeps the member under the DN it still has (the old DN taken
 * out and the member put in again as the same DN cancel), and once the
 * rename goes through the object has its new DN. */
static void test_group_member_rename_fails(void **state)
{
    struct fx *f = fx_new_yaml(rename_group_yaml);
    struct memdir *ldap = memdir_get("ldap");
    struct entry *team;
    struct change *ch;
    struct mod *m;

    (void)state;
    memdir_add(f->corp, "user", "u1", "uid=u1,ou=people", "cn=Ann", NULL);
    memdir_add(f->corp, "user", "u2", "uid=u2,ou=people", "cn=Bob", NULL);
    memdir_add(f->corp, "group", "g1", "cn=staff,ou=groups", "cn=staff", "member=uid=u1,ou=people",
               "member=uid=u2,ou=people", NULL);
    OK(do_import(f, "corp", true));
    OK(do_sync(f, true));
    OK(do_export(f, "ldap"));
    team = memdir_find_dn(ldap, "cn=staff,ou=groups");
    assert_non_null(team);
    assert_true(attr_has(team, "member", "cn=Ann,ou=people"));

    ch = change_new(CHANGE_MODIFY, "user", "u1", NULL);
    m = change_add_mod(ch, MOD_REPLACE, "cn", 0);
    attr_add_value(&m->attr, "Anna", 4);
    memdir_modify(f->corp, ch);
    change_free(ch);
    ldap->fail_dn = xstrdup("cn=Ann,ou=people"); /* the rename is refused */
    OK(do_import(f, "corp", false));
    OK(do_sync(f, false));
    OK(do_export(f, "ldap"));
    assert_int_equal(f->run.counters.export_failed, 1);
    assert_non_null(memdir_find_dn(ldap, "cn=Ann,ou=people"));
    team = memdir_find_dn(ldap, "cn=staff,ou=groups");
    assert_true(attr_has(team, "member", "cn=Ann,ou=people"));
    assert_true(attr_has(team, "member", "cn=Bob,ou=people"));

    free(ldap->fail_dn);
    ldap->fail_dn = NULL;
    OK(do_export(f, "ldap"));
    assert_non_null(memdir_find_dn(ldap, "cn=Anna,ou=people"));
    /* the group still names the old DN (this target has no referential
     * integrity): the rename staged it, and the next (delta) sync diffs it
     * again, knowing the old DN for a former DN of the member: the old DN
     * goes, the new one comes */
    team = memdir_find_dn(ldap, "cn=staff,ou=groups");
    assert_true(attr_has(team, "member", "cn=Ann,ou=people"));
    OK(do_sync(f, false));
    OK(do_export(f, "ldap"));
    team = memdir_find_dn(ldap, "cn=staff,ou=groups");
    assert_false(attr_has(team, "member", "cn=Ann,ou=people"));
    assert_true(attr_has(team, "member", "cn=Anna,ou=people"));
    assert_true(attr_has(team, "member", "cn=Bob,ou=people"));
    fx_free(f);
}

static void test_deprovision_delete(void **state)
{
    struct fx *f = fx_new();
    struct cs_object *t;
    char anchor[32];

    (void)state;
    add_users(f, 2);
    initial_load(f);
    t = target_of(f, f->corp_id, "u1");
    snprintf(anchor, sizeof(anchor), "%s", t->anchor);
    cs_object_free(t);
    memdir_remove(f->corp, "u1");
    OK(do_import(f, "corp", true));
    OK(do_sync(f, false));
    assert_int_equal(f->run.counters.mv_deleted, 1);
    assert_int_equal(f->run.counters.deprovisioned, 1);
    t = cs_anchor(f, f->cloud_id, anchor);
    assert_non_null(t);
    assert_int_equal(t->mv_id, 0);
    assert_int_equal(t->pending_export->op, CHANGE_DELETE);
    cs_object_free(t);
    OK(do_export(f, "cloud"));
    assert_int_equal(f->run.counters.export_delete, 1);
    assert_null(memdir_find(f->cloud, anchor));
    assert_null(cs_anchor(f, f->cloud_id, anchor));
    fx_free(f);
}

static void test_deprovision_disable(void **state)
{
    struct fx *f = fx_new_opts("disable",
                               "        disable_attribute: active\n"
                               "        disable_value: \"false\"\n",
                               500, 1000);
    struct cs_object *t;
    char anchor[32];

    (void)state;
    add_users(f, 2);
    initial_load(f);
    t = target_of(f, f->corp_id, "u1");
    snprintf(anchor, sizeof(anchor), "%s", t->anchor);
    cs_object_free(t);
    memdir_remove(f->corp, "u1");
    OK(do_import(f, "corp", true));
    OK(do_sync(f, false));
    t = cs_anchor(f, f->cloud_id, anchor);
    assert_int_equal(t->mv_id, 0);
    assert_int_equal(t->pending_export->op, CHANGE_MODIFY);
    assert_string_equal(t->pending_export->mods[0].attr.name, "active");
    assert_int_equal(t->pending_export->mods[0].op, MOD_REPLACE);
    assert_true(t->flags & CS_DISABLED);
    cs_object_free(t);
    OK(do_export(f, "cloud"));
    assert_true(attr_has(memdir_find(f->cloud, anchor), "active", "false"));
    fx_free(f);
}

/* ---- export ---------------------------------------------------------------- */

static void test_export_threshold(void **state)
{
    struct fx *f = fx_new_opts("delete", "", 2, 1000);

    (void)state;
    add_users(f, 4);
    initial_load(f);
    memdir_remove(f->corp, "u1");
    memdir_remove(f->corp, "u2");
    memdir_remove(f->corp, "u3");
    /* and one change that is not a delete */
    memdir_add(f->corp, "user", "u4", "uid=u4,ou=people", "mail=user4@corp.example", "cn=Renamed",
               NULL);
    OK(do_import(f, "corp", true));
    OK(do_sync(f, false));
    memdir_clear_sent(f->cloud);
    assert_int_equal(do_export(f, "cloud"), IDS_ETHRESHOLD);
    assert_int_equal(f->run.status, RUN_STOPPED_THRESHOLD);
    assert_int_equal(f->cloud->nsent, 0); /* nothing at all, not even the modify */
    assert_non_null(strstr(f->run.message, "would delete 3 objects"));
    assert_non_null(strstr(f->run.message, "idsync export cloud --allow-deletes 3"));
    assert_int_equal(count_sel(f, f->cloud_id, STORE_SEL_PENDING_EXPORT), 4);

    f->opts.allow_deletes = 3;
    fx_engine(f);
    OK(do_export(f, "cloud"));
    assert_int_equal(f->run.counters.export_delete, 3);
    assert_int_equal(f->run.counters.export_update, 1);
    /* deletes go last */
    assert_int_equal(f->cloud->sent[0]->op, CHANGE_MODIFY);
    fx_free(f);
}

static void test_failed_export_retried(void **state)
{
    struct fx *f;
    struct strbuf msg = STRBUF_INIT;

    (void)state;
    /* a rejected change stays pending and is retried */
    f = fx_new_yaml(rename_yaml);
    memdir_add(f->corp, "user", "u1", "u1", "mail=a@x", "cn=Ann", NULL);
    memdir_add(f->corp, "user", "u2", "u2", "mail=b@x", "cn=Bob", NULL);
    memdir_get("ldap")->fail_dn = xstrdup("cn=Bob,ou=people");
    OK(do_import(f, "corp", true));
    OK(do_sync(f, false));
    OK(do_export(f, "ldap"));
    assert_int_equal(f->run.status, RUN_COMPLETED_WITH_ERRORS);
    assert_int_equal(f->run.counters.export_add, 1);
    assert_int_equal(f->run.counters.export_failed, 1);
    assert_int_equal(run_errors(f, "export-failed", &msg), 1);
    assert_non_null(strstr(msg.buf, "rejected by the test"));
    assert_non_null(strstr(msg.buf, "cn=Bob,ou=people"));
    {
        int64_t ldap_id = 0;
        struct ids_error err = IDS_ERROR_INIT;

        store_connector_id(f->s, "ldap", &ldap_id, &err);
        assert_int_equal(count_sel(f, ldap_id, STORE_SEL_PENDING_EXPORT), 1);
        free(memdir_get("ldap")->fail_dn);
        memdir_get("ldap")->fail_dn = NULL;
        OK(do_export(f, "ldap"));
        assert_int_equal(f->run.counters.export_add, 1);
        assert_int_equal(f->run.status, RUN_SUCCESS);
        assert_int_equal(count_sel(f, ldap_id, STORE_SEL_PENDING_EXPORT), 0);
        assert_non_null(memdir_find_dn(memdir_get("ldap"), "cn=Bob,ou=people"));
    }
    strbuf_release(&msg);
    fx_free(f);
}

static void test_confirming_import_error(void **state)
{
    struct fx *f = fx_new();
    struct strbuf msg = STRBUF_INIT;

    (void)state;
    add_users(f, 1);
    f->cloud->drop_attr = xstrdup("displayName");
    initial_load(f);
    OK(do_import(f, "cloud", false));
    assert_int_equal(f->run.counters.confirmed, 1);
    assert_int_equal(run_errors(f, "exported-change-not-reimported", &msg), 1);
    assert_non_null(strstr(msg.buf, "cloud|gen-1|"));
    assert_non_null(strstr(msg.buf, "|displayName|"));
    assert_non_null(strstr(msg.buf, "User 1"));
    /* confirmed once: the next import does not complain again */
    OK(do_import(f, "cloud", true));
    assert_int_equal(f->run.counters.errors, 0);
    strbuf_release(&msg);
    fx_free(f);
}

static void test_error_limit(void **state)
{
    struct fx *f = fx_new_opts("delete", "", 500, 2);
    int i;

    (void)state;
    memdir_add(f->corp, "user", "u1", "uid=u1", "mail=same@x", NULL);
    memdir_add(f->corp, "user", "u2", "uid=u2", "mail=same@x", NULL);
    for (i = 0; i < 6; i++) {
        char anchor[8];

        snprintf(anchor, sizeof(anchor), "h%d", i);
        memdir_add(f->hr, "person", anchor, anchor, "mail=same@x", NULL);
    }
    OK(do_import(f, "corp", true));
    OK(do_import(f, "hr", true));
    assert_int_equal(do_sync(f, false), IDS_EERRLIMIT);
    assert_int_equal(f->run.status, RUN_STOPPED_ERROR_LIMIT);
    assert_int_equal(f->run.counters.errors, 3);
    assert_int_equal(engine_exit_code(IDS_EERRLIMIT, &f->run), 2);
    fx_free(f);
}

static void test_dry_run_cycle(void **state)
{
    struct fx *f = fx_new();
    char *path;
    char *text;
    FILE *fp;

    (void)state;
    add_users(f, 2);
    path = test_write_file(f->dir, "report.jsonl", "");
    fp = fopen(path, "w");
    f->opts.dry_run = true;
    f->opts.report = fp;
    fx_engine(f);
    OK(do_cycle(f, false));
    fclose(fp);
    assert_string_equal(f->run.step, "cycle");
    assert_true(f->run.dry_run);
    text = test_read_file(path);
    assert_non_null(strstr(text, "\"op\":\"add\""));
    assert_non_null(strstr(text, "\"connector\":\"cloud\""));
    assert_non_null(strstr(text, "user1@corp.example"));
    free(text);
    free(path);
    /* nothing stayed in the store, nothing was sent */
    assert_int_equal(count_sel(f, f->corp_id, STORE_SEL_ALL), 0);
    assert_int_equal(count_sel(f, f->cloud_id, STORE_SEL_ALL), 0);
    assert_int_equal(mv_count(f), 0);
    assert_int_equal(f->cloud->nsent, 0);
    fx_free(f);
}

static void test_export_dry_run(void **state)
{
    struct fx *f = fx_new();
    char *path;
    char *text;
    FILE *fp;

    (void)state;
    add_users(f, 2);
    OK(do_import(f, "corp", true));
    OK(do_sync(f, false));
    path = test_write_file(f->dir, "dry.jsonl", "");
    fp = fopen(path, "w");
    f->opts.dry_run = true;
    f->opts.report = fp;
    fx_engine(f);
    OK(do_export(f, "cloud"));
    fclose(fp);
    assert_true(f->run.dry_run);
    assert_int_equal(f->cloud->nsent, 0);
    assert_int_equal(count_sel(f, f->cloud_id, STORE_SEL_PENDING_EXPORT), 2);
    text = test_read_file(path);
    assert_non_null(strstr(text, "\"attr\":\"userName\",\"op\":\"add\",\"old\":[],"
                                 "\"new\":[\"user1@corp.example\"]"));
    assert_non_null(strchr(strchr(text, '\n') + 1, '\n')); /* two lines */
    free(text);
    free(path);
    fx_free(f);
}

static void test_progress_line(void **state)
{
    struct progress *p;
    char *dir = test_tmpdir();
    char *path = test_write_file(dir, "progress.txt", "");
    char *text;
    FILE *fp = fopen(path, "w");
    long i;

    (void)state;
    assert_null(progress_start(false, "full-import", "corp", -1)); /* off: nothing */
    p = progress_start(true, "full-sync", NULL, 1000);
    progress_set_output(p, fp, 5000);
    for (i = 1; i <= 200; i++) {
        progress_update(p, i);
    }
    /* a new phase counts from 0, and its rate from now: not ~60 objects in
     * the 5 seconds since the step began (12/s, ETA 1m20s) */
    progress_set_step(p, "full-sync (outbound)");
    for (i = 1; i <= 64; i++) {
        progress_update(p, i);
    }
    progress_end(p);
    fclose(fp);
    text = test_read_file(path);
    assert_non_null(strstr(text, "full-sync: 1/1000 objects"));
    assert_non_null(strstr(text, "ETA"));
    {
        const char *line = strstr(text, "full-sync (outbound): ");
        long done = 0;
        double rate = -1;

        assert_non_null(line);
        assert_int_equal(
            sscanf(line, "full-sync (outbound): %ld/1000 objects, %lf/s", &done, &rate), 2);
        assert_true(done > 0 && done <= 64);
        /* counted over this phase (well under a second), not over 5 s */
        assert_true(rate == 0 || rate > 50);
    }
    /* erased at the end: the last thing written is a carriage return */
    assert_int_equal(text[strlen(text) - 1], '\r');
    free(text);
    free(path);
    test_rmtree(dir);
    free(dir);
}

static void test_inflight_add_adopted(void **state)
{
    struct fx *f = fx_new();
    struct cs_object *t;
    struct ids_error err = IDS_ERROR_INIT;

    (void)state;
    add_users(f, 2);
    OK(do_import(f, "corp", true));
    OK(do_sync(f, false));
    /* a killed export: u1's create was in flight and did reach the target */
    t = target_of(f, f->corp_id, "u1");
    t->export_state = CS_EXPORT_INFLIGHT;
    assert_int_equal(store_cs_put_export(f->s, t, &err), IDS_OK);
    cs_object_free(t);
    memdir_add(f->cloud, "User", "made-before", "made-before", "externalId=u1",
               "userName=user1@corp.example", "displayName=User 1", NULL);
    OK(do_export(f, "cloud"));
    assert_int_equal(f->run.counters.export_add, 2);
    assert_int_equal(memdir_count_sent(f->cloud, CHANGE_ADD), 1); /* only u2 */
    t = target_of(f, f->corp_id, "u1");
    assert_string_equal(t->anchor, "made-before");
    assert_int_equal(t->export_state, CS_EXPORT_NONE);
    cs_object_free(t);
    fx_free(f);
}

static void test_connection_lost(void **state)
{
    struct fx *f = fx_new();

    (void)state;
    add_users(f, 4);
    OK(do_import(f, "corp", true));
    OK(do_sync(f, false));
    f->cloud->lose_after = 2;
    assert_int_equal(do_export(f, "cloud"), IDS_EUNREACHABLE);
    assert_int_equal(f->run.status, RUN_FAILED);
    assert_int_equal(f->run.counters.export_add, 2);
    assert_non_null(strstr(f->run.message, "lost"));
    assert_int_equal(count_sel(f, f->cloud_id, STORE_SEL_PENDING_EXPORT), 2);
    assert_int_equal(count_sel(f, f->cloud_id, STORE_SEL_INFLIGHT), 0);
    f->cloud->lose_after = 0;
    OK(do_export(f, "cloud"));
    assert_int_equal(f->run.counters.export_add, 2);
    assert_int_equal(count_sel(f, f->cloud_id, STORE_SEL_PENDING_EXPORT), 0);
    fx_free(f);
}

/* The child process: a second engine on the same store file, killed at
 * its second submit. */
static void crash_child(struct fx *f)
{
    struct config *cfg = NULL;
    struct store *s = NULL;
    struct engine *eng = NULL;
    struct engine_opts opts;
    struct ids_error err = IDS_ERROR_INIT;
    struct run_record run = {0};
    struct strbuf sb = STRBUF_INIT;
    size_t i;

    memset(&opts, 0, sizeof(opts));
    if (config_load_string("test.yaml", f->yaml, strlen(f->yaml), &cfg, &err) != IDS_OK) {
        _exit(3);
    }
    for (i = 0; i < cfg->nconnectors; i++) {
        cfg->connectors[i].ops =
            strncmp(cfg->connectors[i].name, "cloud", 5) == 0 ? &memconn_id_ops : &memconn_dn_ops;
    }
    strbuf_addf(&sb, "sqlite:%s/idsync.db", f->dir);
    if (store_open(sb.buf, &s, &err) != IDS_OK || engine_new(cfg, s, &opts, &eng, &err) != IDS_OK) {
        _exit(4);
    }
    setenv("IDSYNC_FAULT", "submit:2", 1);
    engine_export(eng, "cloud", &run, &err);
    _exit(0); /* not reached: killed at the second submit */
}

static void test_crash_during_export(void **state)
{
    struct fx *f = fx_new();
    pid_t pid;
    int status = 0;

    (void)state;
    add_users(f, 3);
    OK(do_import(f, "corp", true));
    OK(do_sync(f, false));
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        crash_child(f);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    /* the batch was committed as in flight before anything was sent */
    assert_int_equal(count_sel(f, f->cloud_id, STORE_SEL_INFLIGHT), 3);
    /* the rerun settles it: nothing lost, nothing left in flight */
    OK(do_export(f, "cloud"));
    assert_int_equal(f->run.counters.export_add, 3);
    assert_int_equal(count_sel(f, f->cloud_id, STORE_SEL_PENDING_EXPORT), 0);
    assert_int_equal(count_sel(f, f->cloud_id, STORE_SEL_INFLIGHT), 0);
    fx_free(f);
}

static void test_cycle_and_reports(void **state)
{
    struct fx *f = fx_new();
    struct strbuf sb = STRBUF_INIT;
    struct ids_error err = IDS_ERROR_INIT;
    char *path;
    char *text;
    FILE *fp;

    (void)state;
    add_users(f, 3);
    OK(do_cycle(f, false));
    assert_string_equal(f->run.step, "cycle");
    assert_int_equal(f->run.status, RUN_SUCCESS);
    assert_int_equal(f->run.counters.export_add, 3);
    assert_int_equal(f->run.counters.confirmed, 3);
    assert_int_equal(engine_exit_code(IDS_OK, &f->run), 0);
    {
        struct run_record *runs = NULL;
        size_t n = 0;
        size_t i;
        long children = 0;

        assert_int_equal(store_runs_list(f->s, 0, 20, &runs, &n, &err), IDS_OK);
        for (i = 0; i < n; i++) {
            if (runs[i].parent == f->run.id) {
                children++;
            }
            run_record_release(&runs[i]);
        }
        free(runs);
        /* import corp, hr and cloud, sync, export cloud, confirming import cloud */
        assert_int_equal(children, 6);
    }
    /* a second cycle: nothing to do */
    OK(do_cycle(f, false));
    assert_int_equal(f->run.counters.export_add + f->run.counters.export_update, 0);

    /* pending and preview */
    memdir_add(f->corp, "user", "u9", "uid=u9,ou=people", "mail=u9@x", "cn=Nine", NULL);
    OK(do_import(f, "corp", false));
    assert_int_equal(engine_preview(f->eng, "corp", "u9", &sb, &err), IDS_OK);
    assert_non_null(strstr(sb.buf, "\"action\":\"project\""));
    assert_non_null(strstr(sb.buf, "\"action\":\"provision\""));
    assert_non_null(strstr(sb.buf, "u9@x"));
    /* preview wrote nothing */
    assert_int_equal(mv_count(f), 3);
    OK(do_sync(f, false));
    path = test_write_file(f->dir, "pending.jsonl", "");
    fp = fopen(path, "w");
    assert_int_equal(engine_pending(f->eng, "cloud", fp, &err), IDS_OK);
    fclose(fp);
    text = test_read_file(path);
    assert_non_null(strstr(text, "\"op\":\"add\""));
    assert_non_null(strstr(text, "\"new\":[\"Nine\"]"));
    assert_non_null(strchr(text, '\n'));
    free(text);
    free(path);
    strbuf_release(&sb);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_import_add_update_unchanged),
        cmocka_unit_test(test_import_delete_staging),
        cmocka_unit_test(test_import_guard),
        cmocka_unit_test(test_attribute_guard),
        cmocka_unit_test(test_import_unreadable_blocks_deletes),
        cmocka_unit_test(test_delta_import),
        cmocka_unit_test(test_projection_and_provisioning),
        cmocka_unit_test(test_join_by_mail_and_precedence),
        cmocka_unit_test(test_ambiguous_join),
        cmocka_unit_test(test_join_by_anchor),
        cmocka_unit_test(test_references_and_order),
        cmocka_unit_test(test_late_results_target),
        cmocka_unit_test(test_late_results_many),
        cmocka_unit_test(test_reference_resolved_later),
        cmocka_unit_test(test_minimal_member_diff),
        cmocka_unit_test(test_member_delta_maps_only_changes),
        cmocka_unit_test(test_member_changes_merge_between_syncs),
        cmocka_unit_test(test_anchor_mismatch_guard),
        cmocka_unit_test(test_rename_and_disconnect),
        cmocka_unit_test(test_outbound_errors_name_the_source),
        cmocka_unit_test(test_group_member_rename_fails),
        cmocka_unit_test(test_deprovision_delete),
        cmocka_unit_test(test_deprovision_disable),
        cmocka_unit_test(test_export_threshold),
        cmocka_unit_test(test_failed_export_retried),
        cmocka_unit_test(test_confirming_import_error),
        cmocka_unit_test(test_error_limit),
        cmocka_unit_test(test_dry_run_cycle),
        cmocka_unit_test(test_export_dry_run),
        cmocka_unit_test(test_progress_line),
        cmocka_unit_test(test_inflight_add_adopted),
        cmocka_unit_test(test_connection_lost),
        cmocka_unit_test(test_crash_during_export),
        cmocka_unit_test(test_cycle_and_reports),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
