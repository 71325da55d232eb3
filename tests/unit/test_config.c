/* Unit tests: config (loading, defaults, every class of error with its
 * FILE:LINE:COL, secrets, dump, and docs/configuration.md up to date). */
#include "testutil.h"

#include <dirent.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "connector/connector.h"
#include "entry.h"
#include "expr/expr.h"
#include "util/strbuf.h"

/* The DESIGN.md example, with connector types that exist as files. */
static const char full_yaml[] =
    "store: sqlite:state/idsync.db\n"
    "\n"
    "connectors:\n"
    "  corp:\n"
    "    type: ldif\n"
    "    path: corp.ldif\n"
    "    anchor: objectGUID\n"
    "    objects:\n"
    "      user:\n"
    "        filter: (&(objectClass=user)(objectCategory=person))\n"
    "        attributes: [objectGUID, userPrincipalName, mail, givenName, sn, displayName,\n"
    "                     department]\n"
    "      group:\n"
    "        filter: (objectClass=group)\n"
    "        attributes: [objectGUID, cn, mail, member]\n"
    "        references: { member: [user, group, contact] }\n"
    "      contact:\n"
    "        object_class: contact\n"
    "        attributes: [objectGUID, cn, mail, displayName]\n"
    "  cloud:\n"
    "    type: csv\n"
    "    path: /srv/cloud.csv\n"
    "    key: id\n"
    "    objects:\n"
    "      User:\n"
    "        attributes: [id, externalId, userName, displayName, emails, active]\n"
    "      Group: { attributes: [id, externalId, displayName, members],\n"
    "               references: { members: [User, Group] } }\n"
    "  sink:\n"
    "    type: null\n"
    "    objects:\n"
    "      thing: {}\n"
    "\n"
    "metaverse:\n"
    "  person:\n"
    "    from:\n"
    "      - connector: corp\n"
    "        object: user\n"
    "        project: true\n"
    "        scope: 'mail ~= nil'\n"
    "        join:\n"
    "          - sourceAnchor: base64(objectGUID)\n"
    "          - mail: mail\n"
    "        flow:\n"
    "          sourceAnchor: base64(objectGUID)\n"
    "          mail: mail\n"
    "          upn: userPrincipalName\n"
    "          displayName: 'displayName or (givenName .. \" \" .. sn)'\n"
    "    to:\n"
    "      - connector: cloud\n"
    "        object: User\n"
    "        provision: true\n"
    "        deprovision: disable\n"
    "        disable_attribute: active\n"
    "        disable_value: 'false'\n"
    "        anchor_carrier: externalId\n"
    "        join:\n"
    "          - externalId: sourceAnchor\n"
    "          - userName: upn\n"
    "        flow:\n"
    "          externalId: sourceAnchor\n"
    "          userName: upn\n"
    "          displayName: displayName\n"
    "          emails: '{ {value = mail, type = \"work\", primary = true} }'\n"
    "  group:\n"
    "    from:\n"
    "      - { connector: corp, object: group, project: true,\n"
    "          join: [ { sourceAnchor: base64(objectGUID) } ],\n"
    "          flow: { sourceAnchor: base64(objectGUID), name: cn, members: member } }\n"
    "    to:\n"
    "      - { connector: cloud, object: Group, provision: true, deprovision: delete,\n"
    "          anchor_carrier: externalId,\n"
    "          join: [ { externalId: sourceAnchor }, { displayName: name } ],\n"
    "          flow: { externalId: sourceAnchor, displayName: name, members: members } }\n"
    "\n"
    "safety:\n"
    "  max_deletes: 250\n"
    "  max_delete_percent: 20\n"
    "  max_errors: 100\n"
    "\n"
    "notify:\n"
    "  smtp: smtp://mail.corp.example:587\n"
    "  from: idsync@corp.example\n"
    "  to: [identity-admins@corp.example]\n"
    "  username: idsync\n"
    "  password: env:IDSYNC_TEST_SMTP_PASSWORD\n"
    "\n"
    "schedule: 1h30m\n"
    "\n"
    "serve:\n"
    "  listen: 127.0.0.1:9999\n"
    "  token_file: api.token\n"
    "\n"
    "log: { level: debug, format: json }\n";

static void pos_of(const char *yaml, const char *needle, int from, int *line, int *col);

static struct config *load_ok(const char *yaml)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct config *cfg = NULL;

    if (config_load_string("/etc/idsync/idsync.yaml", yaml, strlen(yaml), &cfg, &err) != IDS_OK) {
        print_error("unexpected error: %s\n", err.msg);
        fail();
    }
    return cfg;
}

static void test_full(void **state)
{
    struct config *cfg;
    struct connector_config *corp;
    struct object_type_config *group;
    const struct reference_config *ref;
    struct mv_type_config *person;
    struct flow_config *to;
    struct entry *obj;
    struct attr res;
    struct ids_error err = IDS_ERROR_INIT;
    bool in_scope = false;

    (void)state;
    cfg = load_ok(full_yaml);
    assert_string_equal(cfg->path, "/etc/idsync/idsync.yaml");
    assert_string_equal(cfg->dir, "/etc/idsync");
    assert_string_equal(cfg->store, "sqlite:/etc/idsync/state/idsync.db");
    assert_int_equal(cfg->nconnectors, 3);
    corp = config_connector(cfg, "corp");
    assert_non_null(corp);
    assert_ptr_equal(corp->ops, &ldif_connector_ops);
    assert_string_equal(config_get_str(&corp->opts, "path"), "/etc/idsync/corp.ldif");
    assert_string_equal(config_get_str(&corp->opts, "anchor"), "objectGUID");
    assert_int_equal(corp->nobjects, 3);
    assert_int_equal(corp->loc.line, 4);
    assert_int_equal(corp->loc.col, 3);
    group = connector_config_object(corp, "group");
    assert_non_null(group);
    assert_string_equal(group->filter, "(objectClass=group)");
    assert_int_equal(group->attributes.nr, 4);
    ref = object_type_ref(group, "MEMBER");
    assert_non_null(ref);
    assert_int_equal(ref->types.nr, 3);
    assert_string_equal(ref->types.v[2], "contact");
    assert_string_equal(
        config_get_str(&connector_config_object(corp, "contact")->opts, "object_class"), "contact");
    assert_null(config_connector(cfg, "nope"));
    assert_string_equal(config_get_str(&config_connector(cfg, "cloud")->opts, "path"),
                        "/srv/cloud.csv");

    assert_int_equal(cfg->nmv_types, 2);
    person = &cfg->mv_types[0];
    assert_string_equal(person->name, "person");
    assert_int_equal(person->nfrom, 1);
    assert_true(person->from[0].project);
    assert_ptr_equal(person->from[0].conn, corp);
    assert_ptr_equal(person->from[0].otype, connector_config_object(corp, "user"));
    assert_int_equal(person->from[0].njoins, 2);
    assert_string_equal(person->from[0].joins[1].items[0].attr, "mail");
    assert_true(person->from[0].joins[1].items[0].plain);
    assert_false(person->from[0].joins[0].items[0].plain);
    assert_int_equal(person->from[0].nflows, 4);
    assert_string_equal(person->from[0].flows[3].attr, "displayName");
    assert_string_equal(expr_what(person->from[0].flows[3].expr),
                        "metaverse.person.from[0].flow.displayName");
    {
        int line;
        int col;

        pos_of(full_yaml, "displayName: 'displayName", 1, &line, &col);
        assert_int_equal(person->from[0].flows[3].loc.line, line);
        assert_int_equal(person->from[0].flows[3].loc.col, col);
    }
    assert_non_null(person->from[0].scope.expr);

    to = &person->to[0];
    assert_true(to->provision);
    assert_int_equal(to->deprovision, DEPROVISION_DISABLE);
    assert_string_equal(to->disable_attr, "active");
    assert_string_equal(to->disable_value, "false");
    assert_string_equal(to->anchor_carrier, "externalId");
    assert_int_equal(to->index, 0);
    assert_int_equal(cfg->mv_types[1].to[0].deprovision, DEPROVISION_DELETE);
    assert_int_equal(cfg->mv_types[1].from[0].nflows, 3);
    assert_int_equal(cfg->mv_types[1].to[0].njoins, 2);

    /* the compiled rules run */
    obj = entry_new("user", "a1", "cn=x");
    entry_add_str(obj, "mail", "x@corp.example");
    entry_add_str(obj, "givenName", "Ada");
    entry_add_str(obj, "sn", "Lovelace");
    memset(&res, 0, sizeof(res));
    assert_int_equal(expr_eval(person->from[0].flows[3].expr, obj, &res, &err), IDS_OK);
    assert_string_equal(res.vals[0].data, "Ada Lovelace");
    attr_release(&res);
    assert_int_equal(expr_eval_bool(person->from[0].scope.expr, obj, &in_scope, &err), IDS_OK);
    assert_true(in_scope);
    entry_free(obj);

    assert_int_equal(cfg->safety.max_deletes, 250);
    assert_int_equal(cfg->safety.max_delete_percent, 20);
    assert_int_equal(cfg->safety.import_max_delete_percent, 20); /* follows max_delete_percent */
    assert_int_equal(cfg->safety.max_errors, 100);
    assert_int_equal(cfg->safety.import_min_objects, 10);
    assert_string_equal(cfg->notify.smtp, "smtp://mail.corp.example:587");
    assert_int_equal(cfg->notify.to.nr, 1);
    assert_string_equal(cfg->notify.password_secret, "env:IDSYNC_TEST_SMTP_PASSWORD");
    assert_true(cfg->notify.tls_verify);
    assert_int_equal(cfg->schedule_seconds, 5400);
    assert_string_equal(config_get_str(&cfg->serve, "listen"), "127.0.0.1:9999");
    assert_string_equal(config_get_str(&cfg->serve, "token_file"), "/etc/idsync/api.token");
    assert_true(config_get_bool(&cfg->serve, "console"));
    assert_string_equal(config_get_str(&cfg->log, "level"), "debug");
    assert_string_equal(config_get_str(&cfg->log, "format"), "json");
    config_free(cfg);
}

static void test_defaults(void **state)
{
    static const char yaml[] = "connectors:\n"
                               "  a:\n"
                               "    type: csv\n"
                               "    objects: { person: {} }\n"
                               "metaverse:\n"
                               "  person:\n"
                               "    from: [ { connector: a, object: person, flow: { x: y } } ]\n"
                               "    to: [ { connector: a, object: person, flow: { y: x } } ]\n";
    struct ids_error err = IDS_ERROR_INIT;
    struct config *cfg = NULL;
    const struct config_value *v;
    char *cwd = getcwd(NULL, 0);
    struct strbuf want = STRBUF_INIT;

    (void)state;
    assert_int_equal(config_load_string("idsync.yaml", yaml, strlen(yaml), &cfg, &err), IDS_OK);
    strbuf_addf(&want, "sqlite:%s/idsync.db", cwd);
    assert_string_equal(cfg->store, want.buf);
    assert_int_equal(cfg->schedule_seconds, 1800);
    assert_int_equal(cfg->safety.max_deletes, 500);
    assert_int_equal(cfg->safety.max_delete_percent, 10);
    assert_int_equal(cfg->safety.max_errors, 5000);
    assert_int_equal(cfg->safety.import_max_delete_percent, 10);
    assert_int_equal(cfg->safety.import_min_objects, 10);
    assert_null(cfg->notify.smtp);
    assert_true(cfg->notify.tls_verify);
    assert_int_equal(cfg->notify.digest_seconds, 0);
    assert_string_equal(config_get_str(&cfg->serve, "listen"), "127.0.0.1:8470");
    assert_true(config_get_bool(&cfg->serve, "console"));
    assert_null(config_get_str(&cfg->serve, "token_file"));
    assert_string_equal(config_get_str(&cfg->log, "level"), "info");
    assert_string_equal(config_get_str(&cfg->log, "format"), "logfmt");
    /* connector type defaults are filled in and marked */
    v = config_values_get(&cfg->connectors[0].opts, "delimiter");
    assert_non_null(v);
    assert_true(v->is_default);
    assert_string_equal(v->str, ",");
    assert_false(cfg->mv_types[0].from[0].project);
    assert_false(cfg->mv_types[0].to[0].provision);
    assert_int_equal(cfg->mv_types[0].to[0].deprovision, DEPROVISION_DISCONNECT);
    assert_null(cfg->mv_types[0].to[0].scope.expr);
    assert_true(cfg->mv_types[0].to[0].flows[0].plain);
    config_free(cfg);
    strbuf_release(&want);
    free(cwd);
}

/* A small valid base: tests append lines to it or replace parts. */
static const char base_yaml[] = "connectors:\n"                                      /* 1 */
                                "  src:\n"                                           /* 2 */
                                "    type: ldif\n"                                   /* 3 */
                                "    path: src.ldif\n"                               /* 4 */
                                "    objects:\n"                                     /* 5 */
                                "      user:\n"                                      /* 6 */
                                "        attributes: [uid, mail, cn]\n"              /* 7 */
                                "  dst:\n"                                           /* 8 */
                                "    type: csv\n"                                    /* 9 */
                                "    path: dst.csv\n"                                /* 10 */
                                "    objects:\n"                                     /* 11 */
                                "      User:\n"                                      /* 12 */
                                "        attributes: [id, userName, mail, active]\n" /* 13 */
                                "metaverse:\n"                                       /* 14 */
                                "  person:\n"                                        /* 15 */
                                "    from:\n"                                        /* 16 */
                                "      - connector: src\n"                           /* 17 */
                                "        object: user\n"                             /* 18 */
                                "        flow: { uid: uid, mail: mail }\n"           /* 19 */
                                "    to:\n"                                          /* 20 */
                                "      - connector: dst\n"                           /* 21 */
                                "        object: User\n";                            /* 22 */

/* Load yaml (base + extra) and check the error is exactly
 * "t.yaml:LINE:COL: msg", LINE:COL being where `at` first occurs after
 * line `after_line` (or given explicitly when at == NULL). */
static void check_error_at(const char *yaml, int line, int col, const char *msg)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct config *cfg = NULL;
    struct strbuf want = STRBUF_INIT;

    strbuf_addf(&want, "t.yaml:%d:%d: %s", line, col, msg);
    if (config_load_string("t.yaml", yaml, strlen(yaml), &cfg, &err) != IDS_ECONFIG) {
        print_error("expected a configuration error for:\n%s\n", yaml);
        fail();
    }
    assert_null(cfg);
    if (strcmp(err.msg, want.buf) != 0) {
        print_error("expected: %s\ngot:      %s\n", want.buf, err.msg);
        fail();
    }
    strbuf_release(&want);
}

/* Position (1-based) of the first occurrence of needle at or after line `from`. */
static void pos_of(const char *yaml, const char *needle, int from, int *line, int *col)
{
    const char *p = yaml;
    int l = 1;

    while (l < from) {
        p = strchr(p, '\n') + 1;
        l++;
    }
    {
        const char *hit = strstr(p, needle);
        const char *q;

        assert_non_null(hit);
        for (q = p; q < hit; q++) {
            if (*q == '\n') {
                l++;
                p = q + 1;
            }
        }
        *line = l;
        *col = (int)(hit - p) + 1;
    }
}

/* base + extra lines; the error is at `needle` (searched from line 23). */
static void check_extra(const char *extra, const char *needle, const char *msg)
{
    struct strbuf y = STRBUF_INIT;
    int line;
    int col;

    strbuf_addstr(&y, base_yaml);
    strbuf_addstr(&y, extra);
    pos_of(y.buf, needle, 23, &line, &col);
    check_error_at(y.buf, line, col, msg);
    strbuf_release(&y);
}

/* base with `from` replaced by `to` once; the error is at needle. */
static void check_replaced(const char *from, const char *to, const char *needle, int after,
                           const char *msg)
{
    struct strbuf y = STRBUF_INIT;
    const char *hit = strstr(base_yaml, from);
    int line;
    int col;

    assert_non_null(hit);
    strbuf_add(&y, base_yaml, (size_t)(hit - base_yaml));
    strbuf_addstr(&y, to);
    strbuf_addstr(&y, hit + strlen(from));
    pos_of(y.buf, needle, after, &line, &col);
    check_error_at(y.buf, line, col, msg);
    strbuf_release(&y);
}

static void test_base_is_valid(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_ok(base_yaml);
    config_free(cfg);
}

static void test_error_yaml_syntax(void **state)
{
    (void)state;
    check_error_at("connectors:\n  a: [1, 2\n", 3, 1,
                   "YAML syntax error: did not find expected ',' or ']' while parsing a flow "
                   "sequence (expected valid YAML)");
    check_error_at("", 1, 1,
                   "the configuration is empty (expected a mapping with connectors, metaverse "
                   "...)");
    check_error_at("- a\n- b\n", 1, 1,
                   "expected a mapping with connectors, metaverse ..., got a list");
    check_error_at("connectors: {}\n---\nx: 1\n", 2, 1,
                   "a second YAML document (expected one document)");
}

static void test_error_unknown_key(void **state)
{
    (void)state;
    check_extra("colour: blue\n", "colour",
                "top level: unknown key `colour` (expected one of: store, connectors, metaverse, "
                "safety, notify, schedule, run_history, serve, log)");
    check_replaced("    path: dst.csv\n", "    path: dst.csv\n    pasword: x\n", "pasword", 1,
                   "connectors.dst: unknown key `pasword` (expected one of: type, objects, path, "
                   "key, dn_column, delimiter, separator, encoding, settle)");
    check_replaced("        attributes: [uid, mail, cn]\n",
                   "        attributes: [uid, mail, cn]\n        fliter: (x=y)\n", "fliter", 1,
                   "connectors.src.objects.user: unknown key `fliter` (expected one of: "
                   "attributes, filter, references, object_class)");
    check_extra("        provison: true\n", "provison",
                "metaverse.person.to[0]: unknown key `provison` (expected one of: connector, "
                "object, provision, deprovision, anchor_carrier, disable_attribute, "
                "disable_value, disable_move_to, scope, join, flow, initial_flow)");
    /* a from item does not take to keys */
    check_replaced("        object: user\n", "        object: user\n        provision: true\n",
                   "provision", 17,
                   "metaverse.person.from[0]: unknown key `provision` (expected one of: "
                   "connector, object, project, scope, join, flow)");
    check_extra("safety: { max_deletes: 1, max_delete: 2 }\n", "max_delete:",
                "safety: unknown key `max_delete` (expected one of: max_deletes, "
                "max_delete_percent, max_errors, import_max_delete_percent, "
                "import_max_clear_percent, import_min_objects)");
}

static void test_error_types_and_bounds(void **state)
{
    (void)state;
    check_extra("safety:\n  max_deletes: lots\n", "lots",
                "safety.max_deletes: `lots` is not an integer (expected an integer from 0 to "
                "100000000)");
    check_extra("safety:\n  max_delete_percent: 101\n", "101",
                "safety.max_delete_percent: 101 is out of range (expected an integer from 0 to "
                "100)");
    check_extra("safety:\n  max_errors: [1]\n", "[1]",
                "safety.max_errors: expected an integer from 0 to 1000000000, got a list");
    check_extra("schedule: 5\n", "5",
                "top level.schedule: `5` is out of range (expected a duration (30s, 5m, 2h, 1d "
                "or seconds) from 10s to 7d)");
    check_extra("schedule: soon\n", "soon",
                "top level.schedule: `soon` is not a duration (expected a duration (30s, 5m, "
                "2h, 1d or seconds) from 10s to 7d)");
    check_extra("        provision: maybe\n", "maybe",
                "metaverse.person.to[0].provision: `maybe` is not a boolean (expected true or "
                "false)");
    check_extra("        deprovision: destroy\n", "destroy",
                "metaverse.person.to[0].deprovision: `destroy` is not a valid choice (expected "
                "one of delete, disable, disconnect)");
    check_extra("log: { level: loud }\n", "loud",
                "log.level: `loud` is not a valid choice (expected one of debug, info, warn, "
                "error)");
    check_replaced("[uid, mail, cn]", "{ uid: 1 }", "{ uid", 1,
                   "connectors.src.objects.user.attributes: expected a list of strings, got a "
                   "mapping");
    check_extra("serve: { listen: localhost }\n", "localhost",
                "serve.listen: `localhost` is not an address (expected HOST:PORT, e.g. "
                "127.0.0.1:8470, or [IPv6]:PORT)");
    check_extra("store: mysql://x\n", "mysql",
                "store: `mysql://x` is not a store (expected sqlite:PATH or postgresql://...)");
    check_extra("notify: { smtp: mail.example }\n", "mail.example",
                "notify.smtp: `mail.example` is not a mail server URL (expected "
                "smtp://HOST[:PORT] or smtps://HOST[:PORT])");
}

static void test_error_missing_and_duplicate(void **state)
{
    (void)state;
    check_replaced("    type: csv\n", "", "path: dst.csv", 8,
                   "connectors.dst: missing required key `type` (expected one of: csv, ldif, "
                   "ldap, scim, null)");
    check_replaced("    path: src.ldif\n", "", "type: ldif", 2,
                   "connectors.src: missing required key `path` (expected a file path)");
    check_replaced("      - connector: dst\n        object: User\n", "      - connector: dst\n",
                   "connector: dst", 21,
                   "metaverse.person.to[0]: missing required key `object` (expected a string)");
    check_replaced("    type: csv\n", "    type: csvv\n", "csvv", 1,
                   "connectors.dst.type: unknown connector type `csvv` (expected one of: csv, "
                   "ldif, ldap, scim, null)");
    check_replaced("    path: dst.csv\n", "    path: dst.csv\n    path: other.csv\n", "path: other",
                   1,
                   "connectors.dst: key `path` is given twice (first at line 10; expected each key "
                   "once)");
    check_replaced("      User:\n        attributes: [id, userName, mail, active]\n",
                   "      User:\n        attributes: [id, userName, mail, id]\n", "[id", 12,
                   "connectors.dst.objects.User.attributes: `id` is listed twice (expected each "
                   "attribute once)");
    check_replaced("    objects:\n      User:", "    objects: {}\n    x:\n      User:", "{}", 9,
                   "connectors.dst.objects: expected a mapping of object types (at least one, "
                   "e.g. `objects: { user: { attributes: [...] } }`), got a mapping");
    check_replaced("  dst:\n", "  'd st':\n", "'d st'", 1,
                   "connectors: `d st` is not a valid name (expected up to 64 letters, digits, "
                   "'_', '.' or '-', starting with a letter or digit)");
}

static void test_error_references(void **state)
{
    (void)state;
    check_replaced("        attributes: [uid, mail, cn]\n",
                   "        attributes: [uid, mail, cn, manager]\n"
                   "        references: { manager: [user, boss] }\n",
                   "boss", 1,
                   "connectors.src.objects.user.references.manager: `boss` is not an object type "
                   "of connector src (expected one of: user)");
    check_replaced("        attributes: [uid, mail, cn]\n",
                   "        attributes: [uid, mail, cn]\n"
                   "        references: { manager: user }\n",
                   "manager", 1,
                   "connectors.src.objects.user.references: `manager` is not one of this object "
                   "type's attributes (expected it in connectors.src.objects.user.attributes)");
}

static void test_error_undefined(void **state)
{
    (void)state;
    check_replaced("      - connector: src\n", "      - connector: source\n", "source", 1,
                   "metaverse.person.from[0].connector: undefined connector `source` (expected "
                   "one of: src, dst)");
    check_replaced("        object: User\n", "        object: user\n", "user", 22,
                   "metaverse.person.to[0].object: connector dst has no object type `user` "
                   "(expected one of: User)");
}

static void test_error_from_reads(void **state)
{
    (void)state;
    check_replaced("flow: { uid: uid, mail: mail }", "flow: { uid: uid, mail: lower(email) }",
                   "lower(email)", 1,
                   "metaverse.person.from[0].flow.mail reads `email`, which is not in "
                   "connectors.src.objects.user.attributes (expected one of: uid, mail, cn)");
    check_replaced("        flow:", "        join: [ { uid: base64(objectGUID) } ]\n        flow:",
                   "base64(objectGUID)", 1,
                   "metaverse.person.from[0].join[0].uid reads `objectguid`, which is not in "
                   "connectors.src.objects.user.attributes (expected one of: uid, mail, cn)");
    check_replaced("        flow:",
                   "        scope: 'contains(_dn, \"ou=x\") and employeeType'\n"
                   "        flow:",
                   "'contains", 1,
                   "metaverse.person.from[0].scope reads `employeetype`, which is not in "
                   "connectors.src.objects.user.attributes (expected one of: uid, mail, cn)");
    check_replaced("        flow:", "        join: [ { upn: mail } ]\n        flow:", "upn", 1,
                   "metaverse.person.from[0].join[0]: joins on metaverse attribute `upn`, which "
                   "no `from` flow of metaverse.person produces (expected one of: uid, mail)");
}

static void test_error_to_rules(void **state)
{
    (void)state;
    /* reads an MV attribute nobody produces */
    check_extra("        flow: { userName: upn }\n", "upn }",
                "metaverse.person.to[0].flow.userName reads `upn`, which is not in the "
                "attributes that the `from` flows of metaverse.person produce (expected one of: "
                "uid, mail)");
    /* a key that is not a target attribute */
    check_extra("        flow: { dn: uid, objectClass: '\"x\"', username: uid, title: mail }\n",
                "title",
                "metaverse.person.to[0].flow: `title` is not in connectors.dst.objects.User."
                "attributes (expected one of: id, userName, mail, active, dn, objectClass)");
    check_extra("        join: [ { id: uid }, { email: mail } ]\n", "email",
                "metaverse.person.to[0].join[1]: joins on `email`, which is not in "
                "connectors.dst.objects.User.attributes (expected one of: id, userName, mail, "
                "active)");
    check_extra("        anchor_carrier: externalId\n", "externalId",
                "metaverse.person.to[0].anchor_carrier: `externalId` is not in "
                "connectors.dst.objects.User.attributes (expected one of: id, userName, mail, "
                "active)");
    check_extra("        deprovision: disable\n", "disable",
                "metaverse.person.to[0].deprovision: disable needs disable_attribute and "
                "disable_value for a csv connector (expected disable_attribute: ATTRIBUTE and "
                "disable_value: VALUE)");
    check_extra("        deprovision: disable\n        disable_attribute: active\n", "active\n",
                "metaverse.person.to[0].disable_attribute: needs disable_value (expected "
                "disable_value: VALUE)");
    check_extra("        disable_value: 'no'\n", "'no'",
                "metaverse.person.to[0].disable_value: only used with deprovision: disable "
                "(expected deprovision: disable, or remove this key)");
    check_extra("        disable_move_to: ou=Leavers\n", "ou=Leavers",
                "metaverse.person.to[0].disable_move_to: only used with deprovision: disable "
                "(expected deprovision: disable, or remove this key)");
    check_extra("        deprovision: disable\n        disable_attribute: active\n"
                "        disable_value: 'no'\n        disable_move_to: ou=Leavers\n",
                "ou=Leavers",
                "metaverse.person.to[0].disable_move_to: only for an ldap connector (expected it "
                "on a `to` element of an ldap connector)");
    check_extra("        join: { id: uid }\n", "{ id",
                "metaverse.person.to[0].join: expected a list of join rules, got a mapping (e.g. "
                "join: [ { mail: mail } ])");
    check_extra("        flow: { mail: { x: 1 } }\n", "{ x",
                "metaverse.person.to[0].flow.mail: expected an expression (a string), got a "
                "mapping; quote expressions that start with { or [");
    check_extra("      - { connector: dst, object: User }\n", "{ connector: dst",
                "metaverse.person.to[1]: connector dst object User is already listed at to[0]"
                " (expected each connector object type once)");
}

/* initial_flow: what it may hold, and random_password only there */
static void test_initial_flow(void **state)
{
    struct config *cfg;
    struct strbuf y = STRBUF_INIT;
    struct strbuf dump = STRBUF_INIT;

    (void)state;
    check_extra("        flow: { id: uid, mail: 'random_password(12)' }\n", "'random",
                "metaverse.person.to[0].flow.mail: random_password() gives another value at "
                "every sync, so this would change the value at every cycle (expected it under "
                "initial_flow of a `to` element, which is sent with the create only)");
    check_extra("        join: [ { userName: 'uid .. random_password()' } ]\n", "'uid ..",
                "metaverse.person.to[0].join[0].userName: random_password() gives another value "
                "at every sync, so this would change the value at every cycle (expected it under "
                "initial_flow of a `to` element, which is sent with the create only)");
    check_extra("        flow: { id: uid, mail: mail }\n        initial_flow: { mail: uid }\n",
                "mail: uid",
                "metaverse.person.to[0].initial_flow: `mail` is also in metaverse.person.to[0]."
                "flow (expected each attribute either in flow, sent whenever it changes, or in "
                "initial_flow, sent with the create only)");
    check_extra("        flow: { id: uid, unicodePwd: uid }\n", "unicodePwd",
                "metaverse.person.to[0].flow: `unicodePwd` is never read back, so a flow would "
                "set it again at every sync, resetting the password the user chose (expected it "
                "under initial_flow, which is sent with the create only)");
    check_extra("        initial_flow: { dn: uid }\n", "dn: uid",
                "metaverse.person.to[0].initial_flow: `dn` cannot be an initial flow (expected it "
                "under flow: the create takes it from there)");
    check_extra("        initial_flow: { secret: uid }\n", "secret",
                "metaverse.person.to[0].initial_flow: `secret` is not a column of "
                "connectors.dst.objects.User.attributes (expected one of: id, userName, mail, "
                "active)");
    check_extra("        initial_flow: { active: cn }\n", "cn }",
                "metaverse.person.to[0].initial_flow.active reads `cn`, which is not in the "
                "attributes that the `from` flows of metaverse.person produce (expected one of: "
                "uid, mail)");
    check_extra("        initial_flow: [ active ]\n", "[ active",
                "metaverse.person.to[0].initial_flow: expected a mapping ATTRIBUTE: EXPRESSION, "
                "got a list");
    /* the first `from` may not have one */
    check_replaced("        flow: { uid: uid, mail: mail }\n",
                   "        flow: { uid: uid, mail: mail }\n        initial_flow: { uid: uid }\n",
                   "initial_flow", 1,
                   "metaverse.person.from[0]: unknown key `initial_flow` (expected one of: "
                   "connector, object, project, scope, join, flow)");

    /* valid: a password and a flag, the password masked in the dump */
    strbuf_addstr(&y, base_yaml);
    strbuf_addstr(&y, "        flow: { id: uid }\n"
                      "        initial_flow: { active: '\"true\"', userName: "
                      "'random_password(20)' }\n");
    cfg = load_ok(y.buf);
    assert_int_equal(cfg->mv_types[0].to[0].ninitial, 2);
    config_dump(cfg, true, &dump);
    assert_non_null(strstr(dump.buf, "\"initial_flow\""));
    assert_non_null(strstr(dump.buf, "random_password(20)"));
    config_free(cfg);
    strbuf_release(&dump);
    strbuf_release(&y);
}

static void test_error_expression(void **state)
{
    (void)state;
    check_extra("        flow: { mail: 'lower(mail' }\n", "'lower",
                "metaverse.person.to[0].flow.mail: `lower(mail`: ')' expected near <eof> "
                "(expected a Lua expression)");
}

static void test_ldif_target_needs_dn(void **state)
{
    static const char yaml[] = "connectors:\n"
                               "  a: { type: csv, objects: { u: { attributes: [id, cn] } } }\n"
                               "  b: { type: ldif, path: out.ldif, objects: { u: {} } }\n"
                               "metaverse:\n"
                               "  p:\n"
                               "    from: [ { connector: a, object: u, flow: { cn: cn } } ]\n"
                               "    to: [ { connector: b, object: u, provision: true,\n"
                               "            flow: { cn: cn } } ]\n";
    int line;
    int col;

    (void)state;
    pos_of(yaml, "true", 7, &line, &col);
    check_error_at(yaml, line, col,
                   "metaverse.p.to[0].provision: provisioning into a ldif connector needs a `dn` "
                   "flow (expected flow: { dn: EXPRESSION, ... })");
}

static void test_secrets(void **state)
{
    struct config *cfg = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf sb = STRBUF_INIT;
    struct strbuf y = STRBUF_INIT;
    char *dir = test_tmpdir();
    char *secret_path = test_write_file(dir, "smtp.secret", "s3cret-from-file\n");

    (void)state;
    /* a literal secret is refused */
    check_extra("notify: { password: hunter2 }\n", "hunter2",
                "notify.password: a secret must not be written in the configuration file "
                "(expected password_file: PATH or password: env:NAME)");
    check_extra("notify: { password: 'env:1X' }\n", "'env",
                "notify.password: `1X` is not a valid environment variable name (expected "
                "env:NAME, NAME of letters, digits and '_')");
    check_extra("notify: { password: env:A, password_file: /x }\n", "password_file",
                "notify: `password_file` is given twice (expected either password_file or "
                "password)");

    /* from the environment */
    strbuf_addf(&y, "%snotify: { password: env:IDSYNC_TEST_PW }\n", base_yaml);
    assert_int_equal(config_load_string("t.yaml", y.buf, y.len, &cfg, &err), IDS_OK);
    unsetenv("IDSYNC_TEST_PW");
    {
        struct config_values vals = {0, NULL};
        struct config_value v;

        memset(&v, 0, sizeof(v));
        v.opt = &config_notify_options[4];
        assert_string_equal(v.opt->key, "password");
        v.str = cfg->notify.password_secret;
        v.loc.file = "t.yaml";
        vals.nr = 1;
        vals.v = &v;
        assert_int_equal(config_secret(&vals, "password", &sb, &err), IDS_ECONFIG);
        assert_non_null(strstr(err.msg, "environment variable IDSYNC_TEST_PW is not set"));
        setenv("IDSYNC_TEST_PW", "s3cret-from-env", 1);
        assert_int_equal(config_secret(&vals, "password", &sb, &err), IDS_OK);
        assert_string_equal(sb.buf, "s3cret-from-env");
        assert_int_equal(config_secret(&vals, "token", &sb, &err), IDS_ENOTFOUND);
    }
    config_free(cfg);
    cfg = NULL;

    /* from a file, relative to the configuration's folder, on an ldap connector */
    strbuf_reset(&y);
    strbuf_addstr(&y, "connectors:\n"
                      "  corp:\n"
                      "    type: ldap\n"
                      "    url: ldap://127.0.0.1:3890\n"
                      "    password_file: smtp.secret\n"
                      "    objects: { user: {} }\n");
    {
        struct strbuf name = STRBUF_INIT;
        struct strbuf want = STRBUF_INIT;
        const struct config_value *pv;

        strbuf_addf(&name, "%s/idsync.yaml", dir);
        assert_int_equal(config_load_string(name.buf, y.buf, y.len, &cfg, &err), IDS_OK);
        pv = config_values_get(&cfg->connectors[0].opts, "password");
        assert_non_null(pv);
        strbuf_addf(&want, "file:%s", secret_path);
        assert_string_equal(pv->str, want.buf);
        strbuf_reset(&sb);
        assert_int_equal(config_secret(&cfg->connectors[0].opts, "password", &sb, &err), IDS_OK);
        assert_string_equal(sb.buf, "s3cret-from-file");

        /* the dump shows where the secret comes from, never the secret */
        strbuf_reset(&sb);
        config_dump(cfg, false, &sb);
        assert_null(strstr(sb.buf, "s3cret"));
        strbuf_reset(&want);
        strbuf_addf(&want, "    password: \"*** (file:%s)\"\n", secret_path);
        assert_non_null(strstr(sb.buf, want.buf));
        strbuf_reset(&sb);
        config_dump(cfg, true, &sb);
        assert_null(strstr(sb.buf, "s3cret"));
        assert_non_null(strstr(sb.buf, "\"password\": \"*** (file:"));
        config_free(cfg);
        cfg = NULL;

        /* a missing file is an I/O error naming the file */
        unlink(secret_path);
        assert_int_equal(config_load_string(name.buf, y.buf, y.len, &cfg, &err), IDS_OK);
        strbuf_reset(&sb);
        assert_int_equal(config_secret(&cfg->connectors[0].opts, "password", &sb, &err), IDS_EIO);
        assert_non_null(strstr(err.msg, secret_path));
        config_free(cfg);
        strbuf_release(&name);
        strbuf_release(&want);
    }
    strbuf_release(&sb);
    strbuf_release(&y);
    test_rmtree(dir);
    free(dir);
    free(secret_path);
}

static void test_dump(void **state)
{
    struct config *cfg;
    struct config *again = NULL;
    struct strbuf sb = STRBUF_INIT;
    struct ids_error err = IDS_ERROR_INIT;

    (void)state;
    setenv("IDSYNC_TEST_SMTP_PASSWORD", "do-not-print-me", 1);
    cfg = load_ok(full_yaml);
    config_dump(cfg, false, &sb);
    assert_null(strstr(sb.buf, "do-not-print-me"));
    assert_non_null(strstr(sb.buf, "  password: \"*** (env:IDSYNC_TEST_SMTP_PASSWORD)\"\n"));
    assert_non_null(strstr(sb.buf, "store: \"sqlite:/etc/idsync/state/idsync.db\"\n"));
    assert_non_null(strstr(sb.buf, "schedule: \"1h30m\"\n"));
    assert_non_null(strstr(sb.buf, "      displayName: \"displayName or (givenName .. \\\" \\\" "
                                   ".. sn)\"\n"));
    assert_non_null(strstr(sb.buf, "    delimiter: \",\"\n")); /* a default */
    assert_non_null(strstr(sb.buf, "  import_max_delete_percent: 20\n"));
    /* without secrets (shown masked) the YAML dump is itself a valid
     * configuration with the same meaning */
    config_free(cfg);
    {
        struct strbuf y = STRBUF_INIT;
        const char *pw = strstr(full_yaml, "  password: env:");

        strbuf_add(&y, full_yaml, (size_t)(pw - full_yaml));
        strbuf_addstr(&y, strchr(pw, '\n') + 1);
        cfg = load_ok(y.buf);
        strbuf_release(&y);
    }
    strbuf_reset(&sb);
    config_dump(cfg, false, &sb);
    if (config_load_string("/etc/idsync/dump.yaml", sb.buf, sb.len, &again, &err) != IDS_OK) {
        print_error("%s\n%s\n", err.msg, sb.buf);
        fail();
    }
    {
        struct strbuf sb2 = STRBUF_INIT;
        const char *a;
        const char *b;

        config_dump(again, false, &sb2);
        /* identical apart from the header line naming the file */
        a = strchr(sb.buf, '\n');
        b = strchr(sb2.buf, '\n');
        assert_string_equal(a, b);
        strbuf_release(&sb2);
    }
    config_free(again);
    config_free(cfg);
    cfg = load_ok(full_yaml);
    strbuf_reset(&sb);
    config_dump(cfg, true, &sb);
    assert_null(strstr(sb.buf, "do-not-print-me"));
    assert_non_null(strstr(sb.buf, "\"password\": \"*** (env:IDSYNC_TEST_SMTP_PASSWORD)\""));
    assert_non_null(strstr(sb.buf, "\"max_deletes\": 250"));
    assert_non_null(strstr(sb.buf, "\"deprovision\": \"disable\""));
    strbuf_release(&sb);
    config_free(cfg);
}

static void test_load_file(void **state)
{
    char *dir = test_tmpdir();
    char *path = test_write_file(dir, "idsync.yaml", base_yaml);
    struct config *cfg = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf want = STRBUF_INIT;
    struct strbuf missing = STRBUF_INIT;

    (void)state;
    assert_int_equal(config_load(path, &cfg, &err), IDS_OK);
    assert_string_equal(cfg->path, path);
    strbuf_addf(&want, "%s/src.ldif", dir);
    assert_string_equal(config_get_str(&cfg->connectors[0].opts, "path"), want.buf);
    {
        char *p = config_path(cfg, "x/y.csv");

        strbuf_reset(&want);
        strbuf_addf(&want, "%s/x/y.csv", dir);
        assert_string_equal(p, want.buf);
        free(p);
        p = config_path(cfg, "/abs");
        assert_string_equal(p, "/abs");
        free(p);
    }
    config_free(cfg);
    strbuf_addf(&missing, "%s/nope.yaml", dir);
    assert_int_equal(config_load(missing.buf, &cfg, &err), IDS_ECONFIG);
    assert_null(cfg);
    assert_non_null(strstr(err.msg, "nope.yaml"));
    config_free(NULL);
    strbuf_release(&want);
    strbuf_release(&missing);
    test_rmtree(dir);
    free(dir);
    free(path);
}

/* docs/configuration.md must be what config_docs() prints. */
static void test_docs_up_to_date(void **state)
{
    struct strbuf sb = STRBUF_INIT;
    char *path = test_src_path("docs/configuration.md");
    char *have;

    (void)state;
    config_docs(&sb);
    assert_non_null(strstr(sb.buf, "| `max_deletes` | integer (0 to 100000000) | `500` |"));
    assert_non_null(strstr(sb.buf, "### Connector type `csv`"));
    assert_non_null(strstr(sb.buf, "| `listen` | string | `127.0.0.1:8470` |"));
    if (getenv("IDSYNC_REGEN_DOCS") != NULL) {
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        assert_int_equal(fwrite(sb.buf, 1, sb.len, f), sb.len);
        assert_int_equal(fclose(f), 0);
    }
    have = test_read_file(path);
    if (have == NULL || strcmp(have, sb.buf) != 0) {
        print_error("docs/configuration.md is not what config_docs() prints; regenerate it "
                    "with `IDSYNC_REGEN_DOCS=1 meson test -C BUILD config` (or `idsync config "
                    "docs > docs/configuration.md`) and commit it\n");
        fail();
    }
    free(have);
    free(path);
    strbuf_release(&sb);
}

/* Every configuration under examples/ loads (an administrator starts from
 * them): the demo templates with their placeholders filled in as
 * examples/demo/run.py fills them. */
static void test_examples_load(void **state)
{
    static const char *const files[] = {
        "examples/ad-to-openldap.yaml",  "examples/csv-to-scim.yaml",
        "examples/hr-to-ad.yaml",        "examples/openldap-to-openldap.yaml",
        "examples/reconnect.yaml",       "examples/demo/hr-to-ldap.yaml",
        "examples/demo/hr-to-ldif.yaml", NULL,
    };
    char *dir = test_src_path("examples");
    size_t i, listed = 0;
    DIR *d;
    struct dirent *de;

    (void)state;
    /* a new example is added to the list above */
    d = opendir(dir);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);

        if (n > 5 && strcmp(de->d_name + n - 5, ".yaml") == 0) {
            listed++;
        }
    }
    closedir(d);
    assert_int_equal(listed, 5);
    for (i = 0; files[i] != NULL; i++) {
        char *path = test_src_path(files[i]);
        char *text = test_read_file(path);
        struct strbuf yaml = STRBUF_INIT;
        struct config *cfg = NULL;
        struct ids_error err = IDS_ERROR_INIT;
        const char *p;

        assert_non_null(text);
        for (p = text; *p != '\0'; p++) {
            if (strncmp(p, "@PORT@", 6) == 0) {
                strbuf_addstr(&yaml, "389");
                p += 5;
            } else if (strncmp(p, "@SECRET@", 8) == 0) {
                strbuf_addstr(&yaml, "/etc/idsync/secret");
                p += 7;
            } else {
                strbuf_addch(&yaml, *p);
            }
        }
        if (config_load_string(path, yaml.buf, yaml.len, &cfg, &err) != IDS_OK) {
            fail_msg("%s does not load: %s", files[i], err.msg);
        }
        config_free(cfg);
        strbuf_release(&yaml);
        free(text);
        free(path);
    }
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_examples_load),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_base_is_valid),
        cmocka_unit_test(test_error_yaml_syntax),
        cmocka_unit_test(test_error_unknown_key),
        cmocka_unit_test(test_error_types_and_bounds),
        cmocka_unit_test(test_error_missing_and_duplicate),
        cmocka_unit_test(test_error_references),
        cmocka_unit_test(test_error_undefined),
        cmocka_unit_test(test_error_from_reads),
        cmocka_unit_test(test_error_to_rules),
        cmocka_unit_test(test_error_expression),
        cmocka_unit_test(test_initial_flow),
        cmocka_unit_test(test_ldif_target_needs_dn),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_dump),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_docs_up_to_date),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
