/* test_serve.c - what decides the daemon's automatic full steps: the
 * fingerprints of a connector's scope and of the metaverse rules. (The
 * daemon itself, its API and console are tested end to end by
 * tests/integration/test_serve*.py.) */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "engine/engine.h"
#include "serve/serve.h"
#include "util/strbuf.h"
#include "util/banned.h"

/* %s: the attribute list of corp.user, the rest of corp's options, and
 * the displayName flow. */
static const char *const TEMPLATE =
    "store: sqlite:idsync.db\n"
    "connectors:\n"
    "  corp:\n"
    "    type: ldap\n"
    "    url: %s\n"
    "    base: dc=example,dc=com\n"
    "    timeout: %s\n"
    "    objects:\n"
    "      user:\n"
    "        filter: '%s'\n"
    "        attributes: [%s]\n"
    "  out:\n"
    "    type: csv\n"
    "    objects:\n"
    "      user:\n"
    "        path: out.csv\n"
    "        key: id\n"
    "        attributes: [id, displayName, mail]\n"
    "metaverse:\n"
    "  person:\n"
    "    from:\n"
    "      - connector: corp\n"
    "        object: user\n"
    "        project: true\n"
    "        join: [ { uid: uid } ]\n"
    "        flow:\n"
    "          uid: uid\n"
    "          mail: mail\n"
    "          displayName: '%s'\n"
    "    to:\n"
    "      - connector: out\n"
    "        object: user\n"
    "        provision: true\n"
    "        flow: { id: uid, displayName: displayName, mail: mail }\n";

struct fp {
    char corp[32];
    char out[32];
    char rules[32];
};

static void fingerprints(const char *url, const char *timeout, const char *filter,
                         const char *attrs, const char *display, struct fp *fp)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct config *cfg = NULL;
    struct strbuf yaml = STRBUF_INIT;
    struct strbuf sb = STRBUF_INIT;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    strbuf_addf(&yaml, TEMPLATE, url, timeout, filter, attrs, display);
#pragma GCC diagnostic pop
    if (config_load_string("t.yaml", yaml.buf, yaml.len, &cfg, &err) != IDS_OK) {
        fail_msg("config: %s", err.msg);
    }
    engine_fingerprint_connector(config_connector(cfg, "corp"), &sb);
    assert_int_equal(sb.len, 16);
    snprintf(fp->corp, sizeof(fp->corp), "%s", sb.buf);
    strbuf_reset(&sb);
    engine_fingerprint_connector(config_connector(cfg, "out"), &sb);
    snprintf(fp->out, sizeof(fp->out), "%s", sb.buf);
    strbuf_reset(&sb);
    engine_fingerprint_rules(cfg, &sb);
    snprintf(fp->rules, sizeof(fp->rules), "%s", sb.buf);
    config_free(cfg);
    strbuf_release(&sb);
    strbuf_release(&yaml);
}

#define URL     "ldap://127.0.0.1:3890"
#define FILTER  "(objectClass=person)"
#define ATTRS   "uid, mail, cn"
#define DISPLAY "cn or uid"

static void test_same_configuration_same_fingerprints(void **state)
{
    struct fp a;
    struct fp b;

    fingerprints(URL, "30s", FILTER, ATTRS, DISPLAY, &a);
    fingerprints(URL, "30s", FILTER, ATTRS, DISPLAY, &b);
    assert_string_equal(a.corp, b.corp);
    assert_string_equal(a.out, b.out);
    assert_string_equal(a.rules, b.rules);
    assert_string_not_equal(a.corp, a.out);
}

static void test_scope_changes_change_only_that_connector(void **state)
{
    struct fp a;
    struct fp b;

    fingerprints(URL, "30s", FILTER, ATTRS, DISPLAY, &a);
    /* one more attribute read */
    fingerprints(URL, "30s", FILTER, ATTRS ", sn", DISPLAY, &b);
    assert_string_not_equal(a.corp, b.corp);
    assert_string_equal(a.out, b.out);
    assert_string_equal(a.rules, b.rules);
    /* another filter */
    fingerprints(URL, "30s", "(objectClass=inetOrgPerson)", ATTRS, DISPLAY, &b);
    assert_string_not_equal(a.corp, b.corp);
    assert_string_equal(a.rules, b.rules);
}

static void test_attribute_order_and_connection_options_do_not_count(void **state)
{
    struct fp a;
    struct fp b;

    fingerprints(URL, "30s", FILTER, ATTRS, DISPLAY, &a);
    fingerprints(URL, "30s", FILTER, "cn, uid, mail", DISPLAY, &b);
    assert_string_equal(a.corp, b.corp);
    /* where and how to connect is not what is read */
    fingerprints("ldaps://127.0.0.1:6360", "2m", FILTER, ATTRS, DISPLAY, &b);
    assert_string_equal(a.corp, b.corp);
    assert_string_equal(a.rules, b.rules);
}

static void test_rule_changes_change_the_rules_fingerprint(void **state)
{
    struct fp a;
    struct fp b;

    fingerprints(URL, "30s", FILTER, ATTRS, DISPLAY, &a);
    fingerprints(URL, "30s", FILTER, ATTRS, "uid or cn", &b);
    assert_string_not_equal(a.rules, b.rules);
    assert_string_equal(a.corp, b.corp);
    assert_string_equal(a.out, b.out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_configuration_same_fingerprints),
        cmocka_unit_test(test_scope_changes_change_only_that_connector),
        cmocka_unit_test(test_attribute_order_and_connection_options_do_not_count),
        cmocka_unit_test(test_rule_changes_change_the_rules_fingerprint),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
