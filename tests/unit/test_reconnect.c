/* Unit tests: reconnect planning and apply, and rebuilt-source detection,
 * with an LDIF source (entryUUID anchors), a CSV target and a real SQLite
 * store. */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "engine/engine.h"
#include "engine/rebuilt.h"
#include "engine/reconnect.h"
#include "store/store.h"
#include "util/mem.h"
#include "util/strbuf.h"

#define NPEOPLE 12

struct fixture {
    char *dir;
    struct config *cfg;
    struct store *s;
    struct engine *eng;
};

#define YAML_FMT                                                                                   \
    "store: sqlite:%s/idsync.db\n"                                                                 \
    "connectors:\n"                                                                                \
    "  corp:\n"                                                                                    \
    "    type: ldif\n"                                                                             \
    "    settle: 0\n"                                                                              \
    "    path: %s/corp.ldif\n"                                                                     \
    "    objects:\n"                                                                               \
    "      user: { object_class: inetOrgPerson, attributes: [uid, cn, mail] }\n"                   \
    "      group: { object_class: groupOfNames, attributes: [cn, member],\n"                       \
    "               references: { member: [user] } }\n"                                            \
    "  cloud:\n"                                                                                   \
    "    type: csv\n"                                                                              \
    "    settle: 0\n"                                                                              \
    "    objects:\n"                                                                               \
    "      user: { path: %s/users.csv, key: uid, attributes: [uid, externalId, mail] }\n"          \
    "      group: { path: %s/groups.csv, key: name, attributes: [name, externalId, member],\n"     \
    "               references: { member: [user] } }\n"                                            \
    "metaverse:\n"                                                                                 \
    "  person:\n"                                                                                  \
    "    from:\n"                                                                                  \
    "      - connector: corp\n"                                                                    \
    "        object: user\n"                                                                       \
    "        project: true\n"                                                                      \
    "        join: [ { sourceAnchor: _anchor }, { mail: mail } ]\n"                                \
    "        flow: { sourceAnchor: _anchor, uid: uid, mail: mail }\n"                              \
    "    to:\n"                                                                                    \
    "      - connector: cloud\n"                                                                   \
    "        object: user\n"                                                                       \
    "        provision: true\n"                                                                    \
    "        deprovision: delete\n"                                                                \
    "        anchor_carrier: externalId\n"                                                         \
    "        join: [ { externalId: sourceAnchor }, { mail: mail } ]\n"                             \
    "        flow: { uid: uid, externalId: sourceAnchor, mail: mail }\n"                           \
    "  group:\n"                                                                                   \
    "    from:\n"                                                                                  \
    "      - connector: corp\n"                                                                    \
    "        object: group\n"                                                                      \
    "        project: true\n"                                                                      \
    "        join: [ { sourceAnchor: _anchor } ]\n"                                                \
    "        flow: { sourceAnchor: _anchor, name: cn, members: member }\n"                         \
    "    to:\n"                                                                                    \
    "      - connector: cloud\n"                                                                   \
    "        object: group\n"                                                                      \
    "        provision: true\n"                                                                    \
    "        deprovision: delete\n"                                                                \
    "        anchor_carrier: externalId\n"                                                         \
    "        join: [ { externalId: sourceAnchor }, { name: name } ]\n"                             \
    "        flow: { name: name, externalId: sourceAnchor, member: members }\n"

/* The source: NPEOPLE users and one group, entryUUIDs prefixed by `gen`
 * ("a" or "b": a rebuild). `extra` adds a user with user3's mail. */
static void write_source(struct fixture *f, char gen, bool extra)
{
    struct strbuf sb = STRBUF_INIT;
    char *path;
    int i;

    for (i = 0; i < NPEOPLE; i++) {
        strbuf_addf(&sb,
                    "dn: uid=u%d,ou=People,dc=example,dc=org\n"
                    "objectClass: inetOrgPerson\n"
                    "entryUUID: %c%07d-0000-4000-8000-000000000000\n"
                    "uid: u%d\ncn: User %d\nmail: user%d@example.org\n\n",
                    i, gen, i, i, i, i);
    }
    if (extra) {
        strbuf_addf(&sb,
                    "dn: uid=dup,ou=People,dc=example,dc=org\n"
                    "objectClass: inetOrgPerson\n"
                    "entryUUID: %c9999999-0000-4000-8000-000000000000\n"
                    "uid: dup\ncn: Dup\nmail: user3@example.org\n\n",
                    gen);
    }
    strbuf_addf(&sb,
                "dn: cn=staff,ou=Groups,dc=example,dc=org\n"
                "objectClass: groupOfNames\n"
                "entryUUID: %c0000000-1111-4000-8000-000000000000\n"
                "cn: staff\n",
                gen);
    for (i = 0; i < NPEOPLE; i++) {
        strbuf_addf(&sb, "member: uid=u%d,ou=People,dc=example,dc=org\n", i);
    }
    path = test_write_file(f->dir, "corp.ldif", sb.buf);
    free(path);
    strbuf_release(&sb);
}

static void open_all(struct fixture *f)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf yaml = STRBUF_INIT;
    struct strbuf url = STRBUF_INIT;

    strbuf_addf(&yaml, YAML_FMT, f->dir, f->dir, f->dir, f->dir);
    if (config_load_string("test.yaml", yaml.buf, yaml.len, &f->cfg, &err) != IDS_OK) {
        fail_msg("config: %s", err.msg);
    }
    strbuf_addf(&url, "sqlite:%s/idsync.db", f->dir);
    if (store_open(url.buf, &f->s, &err) != IDS_OK) {
        fail_msg("store_open: %s", err.msg);
    }
    if (engine_new(f->cfg, f->s, NULL, &f->eng, &err) != IDS_OK) {
        fail_msg("engine_new: %s", err.msg);
    }
    strbuf_release(&yaml);
    strbuf_release(&url);
}

static void close_all(struct fixture *f)
{
    engine_free(f->eng);
    store_close(f->s);
    config_free(f->cfg);
    f->eng = NULL;
    f->s = NULL;
    f->cfg = NULL;
}

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));

    f->dir = test_tmpdir();
    write_source(f, 'a', false);
    open_all(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    close_all(f);
    test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static enum ids_err cycle(struct fixture *f, struct run_record *run)
{
    struct ids_error err = IDS_ERROR_INIT;
    enum ids_err ret;

    memset(run, 0, sizeof(*run));
    ret = engine_cycle(f->eng, false, run, &err);
    return ret;
}

static char *users_csv(struct fixture *f)
{
    struct strbuf p = STRBUF_INIT;
    char *text;

    strbuf_addf(&p, "%s/users.csv", f->dir);
    text = test_read_file(p.buf);
    strbuf_release(&p);
    return text;
}

static void plan_by_mail(struct fixture *f, const char *connector, struct reconnect_plan *p)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct reconnect_opts o;

    memset(&o, 0, sizeof(o));
    strvec_init(&o.by);
    strvec_push(&o.by, "mail");
    strvec_push(&o.by, "name");
    o.connector = connector;
    reconnect_plan_init(p);
    if (reconnect_plan_make(f->eng, &o, p, &err) != IDS_OK) {
        fail_msg("plan: %s", err.msg);
    }
    strvec_clear(&o.by);
}

static const struct reconnect_row *row_for(const struct reconnect_plan *p, const char *dn)
{
    size_t i;

    for (i = 0; i < p->nr; i++) {
        if (p->v[i].dn != NULL && strcmp(p->v[i].dn, dn) == 0) {
            return &p->v[i];
        }
    }
    return NULL;
}

static void test_rebuilt_detection_and_plan(void **state)
{
    struct fixture *f = *state;
    struct run_record run;
    struct reconnect_plan p;
    const struct reconnect_row *r;
    char *before;
    char *after;

    assert_int_equal(cycle(f, &run), IDS_OK);
    run_record_release(&run);
    before = users_csv(f);
    assert_non_null(strstr(before, "u3,a0000003-0000-4000-8000-000000000000,user3@example.org"));

    write_source(f, 'b', true);
    assert_int_equal(cycle(f, &run), IDS_ETHRESHOLD);
    assert_non_null(run.message);
    assert_non_null(strstr(run.message, "The source looks rebuilt: "));
    assert_non_null(strstr(run.message, "match old ones on mail"));
    assert_non_null(strstr(run.message, "`idsync reconnect corp --by mail`"));
    run_record_release(&run);
    after = users_csv(f);
    assert_string_equal(before, after); /* nothing reached the target */
    free(after);

    plan_by_mail(f, "corp", &p);
    assert_int_equal(p.totals[RC_REANCHOR], NPEOPLE - 1 + 1); /* people but u3, and the group */
    assert_int_equal(p.totals[RC_AMBIGUOUS], 2);              /* u3 and dup claim the same one */
    assert_int_equal(p.totals[RC_NO_CANDIDATE], 0);
    r = row_for(&p, "uid=u5,ou=People,dc=example,dc=org");
    assert_non_null(r);
    assert_int_equal(r->action, RC_REANCHOR);
    assert_string_equal(r->old_anchor, "a0000005-0000-4000-8000-000000000000");
    assert_string_equal(r->new_anchor, "b0000005-0000-4000-8000-000000000000");
    assert_int_equal(r->ntargets, 1);
    assert_string_equal(r->targets[0].anchor, "u5");
    r = row_for(&p, "uid=dup,ou=People,dc=example,dc=org");
    assert_int_equal(r->action, RC_AMBIGUOUS);
    assert_int_equal(r->ncand, 1);
    assert_string_equal(r->cand[0].anchor, "a0000003-0000-4000-8000-000000000000");
    r = row_for(&p, "cn=staff,ou=Groups,dc=example,dc=org");
    assert_int_equal(r->action, RC_REANCHOR);

    /* the same store state plans the same fingerprints */
    {
        struct reconnect_plan q;

        plan_by_mail(f, "corp", &q);
        assert_string_equal(p.fingerprint, q.fingerprint);
        reconnect_plan_release(&q);
    }
    reconnect_plan_release(&p);
    free(before);
}

static void test_plan_json_roundtrip(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct run_record run;
    struct reconnect_plan p;
    struct reconnect_plan q;
    struct strbuf text = STRBUF_INIT;
    size_t i;

    assert_int_equal(cycle(f, &run), IDS_OK);
    run_record_release(&run);
    write_source(f, 'b', false);
    plan_by_mail(f, "corp", &p);
    reconnect_plan_to_json(&p, &text);
    reconnect_plan_init(&q);
    assert_int_equal(reconnect_plan_from_json(text.buf, text.len, &q, &err), IDS_OK);
    assert_int_equal(q.nr, p.nr);
    assert_string_equal(q.fingerprint, p.fingerprint);
    assert_string_equal(q.connector, "corp");
    assert_int_equal(q.by.nr, 2);
    for (i = 0; i < p.nr; i++) {
        assert_string_equal(q.v[i].fingerprint, p.v[i].fingerprint);
        assert_int_equal(q.v[i].action, p.v[i].action);
        assert_int_equal(q.v[i].mv_id, p.v[i].mv_id);
    }
    reconnect_plan_release(&q);
    reconnect_plan_init(&q);
    assert_int_equal(reconnect_plan_from_json("{\"rows\":[]}", 11, &q, &err), IDS_EINPUT);
    assert_non_null(strstr(err.msg, "not a reconnect plan"));
    reconnect_plan_release(&q);
    reconnect_plan_release(&p);
    strbuf_release(&text);
}

/* Expect text to be refused as a plan, with `want` in the message. */
static void refused(const char *text, const char *want)
{
    struct reconnect_plan q;
    struct ids_error err = IDS_ERROR_INIT;

    reconnect_plan_init(&q);
    assert_int_equal(reconnect_plan_from_json(text, strlen(text), &q, &err), IDS_EINPUT);
    if (strstr(err.msg, want) == NULL) {
        fail_msg("refusal \"%s\" does not say \"%s\"", err.msg, want);
    }
    reconnect_plan_release(&q);
}

/* The plan reader takes rows one at a time: the same rows however the file
 * is laid out (an administrator's jq), header members after the rows, and
 * a file cut short or edited into nonsense refused with the line. */
static void test_plan_reader(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct run_record run;
    struct reconnect_plan p;
    struct reconnect_plan hdr;
    struct reconnect_plan_reader rd;
    const struct reconnect_row *row;
    struct strbuf text = STRBUF_INIT;
    struct strbuf cut = STRBUF_INIT;
    json_t *doc;
    char *sorted;
    size_t i;
    const char *second;

    assert_int_equal(cycle(f, &run), IDS_OK);
    run_record_release(&run);
    write_source(f, 'b', false);
    plan_by_mail(f, "corp", &p);
    assert_true(p.nr > 2);
    reconnect_plan_to_json(&p, &text);

    /* indented, keys sorted: "rows" before "store" and "to" */
    doc = json_loads(text.buf, 0, NULL);
    assert_non_null(doc);
    json_object_set_new(json_array_get(json_object_get(doc, "rows"), 0), "note",
                        json_string("a ] and a } and a \" in a value, \\"));
    sorted = json_dumps(doc, JSON_INDENT(3) | JSON_SORT_KEYS);
    json_decref(doc);
    reconnect_plan_init(&hdr);
    memset(&rd, 0, sizeof(rd));
    assert_int_equal(reconnect_plan_open(&rd, sorted, strlen(sorted), &hdr, &err), IDS_OK);
    assert_string_equal(hdr.connector, "corp");
    assert_string_equal(hdr.fingerprint, p.fingerprint);
    assert_int_equal(hdr.nr, 0);
    for (i = 0; reconnect_plan_next(&rd, &row, &err) == IDS_OK; i++) {
        assert_true(i < p.nr);
        assert_string_equal(row->fingerprint, p.v[i].fingerprint);
        assert_int_equal(row->action, p.v[i].action);
        assert_int_equal(row->mv_id, p.v[i].mv_id);
        if (i == 0) {
            assert_string_equal(row->note, "a ] and a } and a \" in a value, \\");
        }
    }
    assert_int_equal(i, p.nr);
    assert_int_equal(reconnect_plan_next(&rd, &row, &err), IDS_DONE);
    reconnect_plan_reader_release(&rd);
    reconnect_plan_release(&hdr);
    free(sorted);

    /* cut in the middle of the second row: refused, saying where */
    second = strstr(text.buf, "\n{");
    assert_non_null(second);
    second = strstr(second + 1, "\n{");
    assert_non_null(second);
    strbuf_add(&cut, text.buf, (size_t)(second - text.buf) + 20);
    refused(cut.buf, "cut short");
    /* cut after a whole row: the rows array does not end either */
    strbuf_reset(&cut);
    strbuf_add(&cut, text.buf, (size_t)(second - text.buf));
    refused(cut.buf, "cut short");
    /* a row that is not JSON: its number and line */
    strbuf_reset(&cut);
    strbuf_add(&cut, text.buf, (size_t)(second - text.buf) + 2);
    strbuf_addstr(&cut, "\"situation\": one}\n]\n}\n");
    refused(cut.buf, "row 2");
    refused(cut.buf, "line ");
    /* a comma with no row after it (the text before `second` ends with one) */
    strbuf_reset(&cut);
    strbuf_add(&cut, text.buf, (size_t)(second - text.buf) - 1);
    strbuf_addstr(&cut, ",\n]\n}\n");
    refused(cut.buf, "a row expected after ','");
    /* text after the plan */
    strbuf_reset(&cut);
    strbuf_addbuf(&cut, &text);
    strbuf_addstr(&cut, "{}\n");
    refused(cut.buf, "text after the plan's end");
    refused("", "a JSON object expected");
    refused("[1]", "a JSON object expected");
    refused("{\"by\": [], \"idsync_reconnect_plan\": 1}", "without \"rows\"");
    refused("{\"rows\": [], \"by\" []}", "':' expected");

    strbuf_release(&cut);
    strbuf_release(&text);
    reconnect_plan_release(&p);
}

static void test_apply_refuses_then_applies(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct run_record run;
    struct reconnect_plan p;
    struct cs_object *o = NULL;
    int64_t corp = 0;
    char *text;

    assert_int_equal(cycle(f, &run), IDS_OK);
    run_record_release(&run);
    write_source(f, 'b', false);
    plan_by_mail(f, "corp", &p);
    assert_int_equal(p.totals[RC_REANCHOR], NPEOPLE + 1);

    /* a new object with user3's mail: u3's re-anchor is no longer certain */
    write_source(f, 'b', true);
    memset(&run, 0, sizeof(run));
    assert_int_equal(reconnect_apply(f->eng, &p, &run, &err), IDS_EREJECTED);
    assert_int_equal(run.status, RUN_FAILED);
    assert_non_null(strstr(run.message, "no longer matches 1 object"));
    assert_int_equal(run.counters.errors, 1);
    run_record_release(&run);
    assert_int_equal(store_connector_id(f->s, "corp", &corp, &err), IDS_OK);
    assert_int_equal(
        store_cs_get_by_anchor(f->s, corp, "b0000000-0000-4000-8000-000000000000", &o, &err),
        IDS_ENOTFOUND); /* nothing changed */

    write_source(f, 'b', false);
    memset(&run, 0, sizeof(run));
    assert_int_equal(reconnect_apply(f->eng, &p, &run, &err), IDS_OK);
    assert_string_equal(run.step, "reconnect");
    assert_int_equal(run.counters.joined, NPEOPLE + 1);
    assert_int_equal(run.counters.disconnected, NPEOPLE + 1);
    run_record_release(&run);
    assert_int_equal(
        store_cs_get_by_anchor(f->s, corp, "b0000000-0000-4000-8000-000000000000", &o, &err),
        IDS_OK);
    assert_int_not_equal(o->mv_id, 0);
    cs_object_free(o);
    o = NULL;
    assert_int_equal(
        store_cs_get_by_anchor(f->s, corp, "a0000000-0000-4000-8000-000000000000", &o, &err),
        IDS_ENOTFOUND);

    /* idempotent */
    memset(&run, 0, sizeof(run));
    assert_int_equal(reconnect_apply(f->eng, &p, &run, &err), IDS_OK);
    assert_int_equal(run.counters.joined, 0);
    assert_int_equal(run.counters.unchanged, NPEOPLE + 1);
    run_record_release(&run);

    /* the next cycle re-anchors the targets: same rows, new carrier */
    assert_int_equal(cycle(f, &run), IDS_OK);
    assert_int_equal(run.counters.export_add, 0);
    assert_int_equal(run.counters.export_delete, 0);
    assert_int_equal(run.counters.export_update, NPEOPLE + 1);
    run_record_release(&run);
    text = users_csv(f);
    assert_non_null(strstr(text, "u3,b0000003-0000-4000-8000-000000000000,user3@example.org"));
    assert_null(strstr(text, "a0000"));
    free(text);
    reconnect_plan_release(&p);
}

static void test_fresh_store_target(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct run_record run;
    struct reconnect_plan p;
    struct strbuf db = STRBUF_INIT;
    char *before;
    char *text;

    assert_int_equal(cycle(f, &run), IDS_OK);
    run_record_release(&run);
    before = users_csv(f);
    /* the sync server is rebuilt too */
    close_all(f);
    strbuf_addf(&db, "%s/idsync.db", f->dir);
    unlink(db.buf);
    strbuf_addstr(&db, "-wal");
    unlink(db.buf);
    strbuf_setlen(&db, db.len - 4);
    strbuf_addstr(&db, "-shm");
    unlink(db.buf);
    write_source(f, 'b', false);
    open_all(f);
    assert_int_equal(cycle(f, &run), IDS_OK);
    assert_true(run.counters.errors >= NPEOPLE + 1); /* anchor-mismatch */
    assert_int_equal(run.counters.export_add, 0);
    run_record_release(&run);
    text = users_csv(f);
    assert_string_equal(text, before);
    free(text);

    plan_by_mail(f, "cloud", &p);
    assert_int_equal(p.totals[RC_REANCHOR], NPEOPLE + 1);
    assert_int_equal(p.totals[RC_AMBIGUOUS], 0);
    memset(&run, 0, sizeof(run));
    assert_int_equal(reconnect_apply(f->eng, &p, &run, &err), IDS_OK);
    assert_int_equal(run.counters.joined, NPEOPLE + 1);
    run_record_release(&run);
    assert_int_equal(cycle(f, &run), IDS_OK);
    assert_int_equal(run.counters.export_add, 0);
    assert_int_equal(run.counters.export_delete, 0);
    assert_int_equal(run.counters.export_update, NPEOPLE + 1);
    run_record_release(&run);
    text = users_csv(f);
    assert_non_null(strstr(text, "u7,b0000007-0000-4000-8000-000000000000,user7@example.org"));
    free(text);
    reconnect_plan_release(&p);
    free(before);
    strbuf_release(&db);
}

static void test_rebuilt_decide(void **state)
{
    struct rebuilt_sample s;

    (void)state;
    memset(&s, 0, sizeof(s));
    s.vanished = 100;
    s.appeared = 100;
    s.sampled = 100;
    s.matched = 90;
    assert_true(rebuilt_decide(&s));
    s.matched = 10; /* new people: not a rebuild, a broken filter or a new company */
    assert_false(rebuilt_decide(&s));
    s.matched = 90;
    s.appeared = 0; /* an empty read: the classic broken filter */
    assert_false(rebuilt_decide(&s));
    s.appeared = 30;
    s.sampled = 30;
    s.matched = 30; /* far fewer new objects than vanished ones */
    assert_false(rebuilt_decide(&s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rebuilt_decide),
        cmocka_unit_test_setup_teardown(test_rebuilt_detection_and_plan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plan_json_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plan_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_refuses_then_applies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fresh_store_target, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
