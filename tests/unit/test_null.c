/* test_null.c - the null connector: reads nothing, accepts every change,
 * adds get the anchor "null-<tag>", results in submit order. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "connector/connector.h"
#include "entry.h"
#include "util/banned.h"

static struct connector *open_null(struct connector_config *cfg)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct connector *c = NULL;

    memset(cfg, 0, sizeof(*cfg));
    cfg->name = "nowhere";
    cfg->type = "null";
    cfg->ops = connector_type_find("null");
    assert_ptr_equal(cfg->ops, &null_connector_ops);
    assert_int_equal(connector_create(cfg, &c, &err), IDS_OK);
    assert_int_equal(connector_open(c, &err), IDS_OK);
    return c;
}

static void test_caps_and_reads(void **state)
{
    struct connector_config cfg;
    struct connector *c = open_null(&cfg);
    struct ids_error err = IDS_ERROR_INIT;
    struct connector_cursor *cur = NULL;
    struct read_item item;
    struct strbuf wm = STRBUF_INIT;
    struct strbuf report = STRBUF_INIT;

    (void)state;
    assert_true(connector_has_cap(c, CONN_CAP_READ | CONN_CAP_WRITE | CONN_CAP_DELTA));
    assert_false(connector_has_cap(c, CONN_CAP_REF_BY_DN));
    assert_int_equal(connector_read_full(c, &cur, &err), IDS_OK);
    assert_int_equal(connector_cursor_next(c, cur, &item, &err), IDS_DONE);
    assert_int_equal(connector_cursor_watermark(c, cur, &wm, &err), IDS_OK);
    connector_cursor_free(c, cur);
    assert_int_equal(connector_read_changes(c, wm.buf, &cur, &err), IDS_OK);
    assert_int_equal(connector_cursor_next(c, cur, &item, &err), IDS_DONE);
    connector_cursor_free(c, cur);
    assert_int_equal(connector_check(c, &report, &err), IDS_OK);
    assert_non_null(strstr(report.buf, "objects: 0"));
    strbuf_release(&wm);
    strbuf_release(&report);
    connector_close(c);
}

static void test_accepts_every_change(void **state)
{
    struct connector_config cfg;
    struct connector *c = open_null(&cfg);
    struct ids_error err = IDS_ERROR_INIT;
    struct change *add = change_new(CHANGE_ADD, "user", NULL, "cn=a");
    struct change *mod = change_new(CHANGE_MODIFY, "user", "x", "cn=b");
    struct change *del = change_new(CHANGE_DELETE, "user", "y", "cn=c");
    struct export_result res;
    struct entry *e = NULL;

    (void)state;
    mod->new_dn = strdup("cn=b2");
    assert_int_equal(connector_export_begin(c, &err), IDS_OK);
    assert_int_equal(connector_submit(c, add, 41, &err), IDS_OK);
    assert_int_equal(connector_submit(c, mod, 42, &err), IDS_OK);
    assert_int_equal(connector_submit(c, del, 43, &err), IDS_OK);
    assert_int_equal(connector_export_end(c, &err), IDS_OK);

    assert_int_equal(connector_poll(c, false, &res, &err), IDS_OK);
    assert_int_equal(res.tag, 41);
    assert_int_equal(res.code, IDS_OK);
    assert_string_equal(res.anchor, "null-41");
    assert_string_equal(res.dn, "cn=a");
    export_result_release(&res);
    assert_int_equal(connector_poll(c, false, &res, &err), IDS_OK);
    assert_int_equal(res.tag, 42);
    assert_null(res.anchor);
    assert_string_equal(res.dn, "cn=b2");
    export_result_release(&res);
    assert_int_equal(connector_poll(c, false, &res, &err), IDS_OK);
    assert_int_equal(res.tag, 43);
    assert_int_equal(res.code, IDS_OK);
    export_result_release(&res);
    assert_int_equal(connector_poll(c, true, &res, &err), IDS_DONE);
    assert_int_equal(connector_lookup(c, "user", "mail", "a@x", &e, &err), IDS_ENOTFOUND);
    change_free(add);
    change_free(mod);
    change_free(del);
    connector_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_caps_and_reads),
        cmocka_unit_test(test_accepts_every_change),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
