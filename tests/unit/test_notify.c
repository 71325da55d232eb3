/* Unit tests: notify (problem collection, fingerprint dedupe, mail and
 * webhook bodies, digest, failure recording) with a real SQLite store. */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "notify/notify.h"
#include "store/store.h"
#include "util/mem.h"
#include "util/strbuf.h"

struct fixture {
    char *dir;
    struct store *s;
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    struct strbuf url = STRBUF_INIT;
    struct ids_error err = IDS_ERROR_INIT;

    f->dir = test_tmpdir();
    strbuf_addf(&url, "sqlite:%s/idsync.db", f->dir);
    if (store_open(url.buf, &f->s, &err) != IDS_OK) {
        fprintf(stderr, "store_open: %s\n", err.msg);
        return -1;
    }
    strbuf_release(&url);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    store_close(f->s);
    test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Record a finished run with `nerr` anchor-mismatch errors (anchors A0..). */
static int64_t add_run(struct store *s, const char *step, const char *connector, int64_t parent,
                       enum run_status status, const char *message, int nerr, int first)
{
    struct run_record r;
    struct ids_error err = IDS_ERROR_INIT;
    int i;

    memset(&r, 0, sizeof(r));
    r.step = xstrdup(step);
    r.connector = xstrdup_or_null(connector);
    r.parent = parent;
    assert_int_equal(store_run_start(s, &r, &err), IDS_OK);
    for (i = 0; i < nerr; i++) {
        struct run_error e;
        struct strbuf anchor = STRBUF_INIT;
        struct strbuf dn = STRBUF_INIT;

        strbuf_addf(&anchor, "A%d", first + i);
        strbuf_addf(&dn, "uid=u%d,ou=People,dc=example,dc=org", first + i);
        memset(&e, 0, sizeof(e));
        e.run = r.id;
        e.connector = (char *)"cloud";
        e.anchor = anchor.buf;
        e.dn = dn.buf;
        e.attr = (char *)"userName";
        e.code = (char *)"anchor-mismatch";
        e.message = (char *)"soft match by userName found an object with another externalId";
        assert_int_equal(store_run_add_error(s, &e, &err), IDS_OK);
        r.counters.errors++;
        strbuf_release(&anchor);
        strbuf_release(&dn);
    }
    r.status = status;
    r.message = xstrdup_or_null(message);
    r.end_us = r.start_us + 1000;
    assert_int_equal(store_run_finish(s, &r, &err), IDS_OK);
    {
        int64_t id = r.id;

        run_record_release(&r);
        return id;
    }
}

static void get_run(struct store *s, int64_t id, struct run_record *r)
{
    struct ids_error err = IDS_ERROR_INIT;

    memset(r, 0, sizeof(*r));
    assert_int_equal(store_run_get(s, id, r, &err), IDS_OK);
}

static void test_fingerprint(void **state)
{
    struct strbuf a = STRBUF_INIT;
    struct strbuf b = STRBUF_INIT;
    struct strbuf c = STRBUF_INIT;
    struct strbuf d = STRBUF_INIT;

    (void)state;
    notify_fingerprint(&a, false, "anchor-mismatch", "cloud", "A1", "userName");
    notify_fingerprint(&b, false, "anchor-mismatch", "cloud", "A1", "USERNAME");
    notify_fingerprint(&c, false, "anchor-mismatch", "cloud", "A2", "userName");
    notify_fingerprint(&d, true, "anchor-mismatch", "cloud", "A1", "userName");
    assert_int_equal(a.len, 16);
    assert_string_equal(a.buf, b.buf); /* attribute names are case-insensitive */
    assert_string_not_equal(a.buf, c.buf);
    assert_string_not_equal(a.buf, d.buf);
    strbuf_release(&a);
    strbuf_release(&b);
    strbuf_release(&c);
    strbuf_release(&d);
}

/* A cycle's problems are its steps' problems; an unchanged problem is new
 * only once; a new object comes out alone the next time. */
static void test_collect_and_dedupe(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct notify_report rep;
    struct run_record run;
    int64_t cyc;
    int64_t cyc2;

    cyc = add_run(f->s, "cycle", NULL, 0, RUN_COMPLETED_WITH_ERRORS, NULL, 0, 0);
    add_run(f->s, "full-import", "corp", cyc, RUN_SUCCESS, NULL, 0, 0);
    add_run(f->s, "full-sync", NULL, cyc, RUN_COMPLETED_WITH_ERRORS, NULL, 3, 0);

    get_run(f->s, cyc, &run);
    notify_report_init(&rep);
    assert_int_equal(notify_collect(f->s, &run, &rep, &err), IDS_OK);
    assert_int_equal(rep.nr, 3);
    assert_int_equal(rep.total_problems, 3);
    assert_string_equal(rep.v[0].kind, "anchor-mismatch");
    assert_string_equal(rep.v[0].anchor, "A0");
    /* without commit the seen set is untouched: the same problems stay new */
    assert_int_equal(notify_filter_new(f->s, &run, &rep, 1000, false, &err), IDS_OK);
    assert_int_equal(rep.nr, 3);
    notify_report_release(&rep);
    notify_report_init(&rep);
    assert_int_equal(notify_collect(f->s, &run, &rep, &err), IDS_OK);
    assert_int_equal(notify_filter_new(f->s, &run, &rep, 1000, true, &err), IDS_OK);
    assert_int_equal(rep.nr, 3);
    notify_report_release(&rep);
    run_record_release(&run);

    /* the next cycle: the same three problems and one more */
    cyc2 = add_run(f->s, "cycle", NULL, 0, RUN_COMPLETED_WITH_ERRORS, NULL, 0, 0);
    add_run(f->s, "delta-sync", NULL, cyc2, RUN_COMPLETED_WITH_ERRORS, NULL, 4, 0);
    get_run(f->s, cyc2, &run);
    notify_report_init(&rep);
    assert_int_equal(notify_collect(f->s, &run, &rep, &err), IDS_OK);
    assert_int_equal(rep.total_problems, 4);
    assert_int_equal(notify_filter_new(f->s, &run, &rep, 2000, true, &err), IDS_OK);
    assert_int_equal(rep.nr, 1);
    assert_string_equal(rep.v[0].anchor, "A3");
    notify_report_release(&rep);

    /* the same again: nothing new */
    notify_report_init(&rep);
    assert_int_equal(notify_collect(f->s, &run, &rep, &err), IDS_OK);
    assert_int_equal(notify_filter_new(f->s, &run, &rep, 3000, true, &err), IDS_OK);
    assert_int_equal(rep.nr, 0);
    notify_report_release(&rep);

    /* forgotten after NOTIFY_FORGET_SECONDS without being seen */
    notify_report_init(&rep);
    assert_int_equal(notify_collect(f->s, &run, &rep, &err), IDS_OK);
    assert_int_equal(
        notify_filter_new(f->s, &run, &rep, 3000 + NOTIFY_FORGET_SECONDS + 10, false, &err),
        IDS_OK);
    assert_int_equal(rep.nr, 0); /* filtering compares; expiry happens on write */
    notify_report_release(&rep);
    run_record_release(&run);
}

/* A guard stop is mailed once; it is new again after the step succeeded. */
static void test_run_problem_lifecycle(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct notify_report rep;
    struct run_record run;
    int64_t id;
    const char *msg = "The full import of corp would delete 10 of 10 objects. The source looks "
                      "rebuilt: 10 of 10 objects have new anchors but match old ones on mail; "
                      "run `idsync reconnect corp --by mail` to preview re-joining them.";

    id = add_run(f->s, "full-import", "corp", 0, RUN_STOPPED_THRESHOLD, msg, 0, 0);
    get_run(f->s, id, &run);
    notify_report_init(&rep);
    assert_int_equal(notify_collect(f->s, &run, &rep, &err), IDS_OK);
    assert_int_equal(notify_filter_new(f->s, &run, &rep, 100, true, &err), IDS_OK);
    assert_int_equal(rep.nr, 1);
    assert_true(rep.v[0].run_level);
    assert_string_equal(rep.v[0].kind, "rebuilt-source");
    notify_report_release(&rep);
    run_record_release(&run);

    /* stopped again (a delta import this time: same step class) */
    id = add_run(f->s, "full-import", "corp", 0, RUN_STOPPED_THRESHOLD, msg, 0, 0);
    get_run(f->s, id, &run);
    notify_report_init(&rep);
    assert_int_equal(notify_collect(f->s, &run, &rep, &err), IDS_OK);
    assert_int_equal(notify_filter_new(f->s, &run, &rep, 200, true, &err), IDS_OK);
    assert_int_equal(rep.nr, 0);
    notify_report_release(&rep);
    run_record_release(&run);

    /* an import of corp succeeds: the stop is over */
    id = add_run(f->s, "delta-import", "corp", 0, RUN_SUCCESS, NULL, 0, 0);
    get_run(f->s, id, &run);
    notify_report_init(&rep);
    assert_int_equal(notify_collect(f->s, &run, &rep, &err), IDS_OK);
    assert_int_equal(notify_filter_new(f->s, &run, &rep, 300, true, &err), IDS_OK);
    assert_int_equal(rep.nr, 0);
    notify_report_release(&rep);
    run_record_release(&run);

    /* and when it stops again it is news again */
    id = add_run(f->s, "full-import", "corp", 0, RUN_STOPPED_THRESHOLD, "would delete", 0, 0);
    get_run(f->s, id, &run);
    notify_report_init(&rep);
    assert_int_equal(notify_collect(f->s, &run, &rep, &err), IDS_OK);
    assert_int_equal(notify_filter_new(f->s, &run, &rep, 400, true, &err), IDS_OK);
    assert_int_equal(rep.nr, 1);
    assert_string_equal(rep.v[0].kind, "stopped-threshold");
    notify_report_release(&rep);
    run_record_release(&run);
}

static void test_mail_text(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct notify_report rep;
    struct notify_config nc;
    struct run_record run;
    struct strbuf mail = STRBUF_INIT;
    int64_t cyc;

    cyc = add_run(f->s, "cycle", NULL, 0, RUN_COMPLETED_WITH_ERRORS, NULL, 0, 0);
    add_run(f->s, "full-sync", NULL, cyc, RUN_COMPLETED_WITH_ERRORS, NULL, 25, 100);
    get_run(f->s, cyc, &run);
    notify_report_init(&rep);
    assert_int_equal(notify_collect(f->s, &run, &rep, &err), IDS_OK);
    strbuf_addstr(&rep.errors_cmd, "idsync -c /etc/idsync.yaml errors 1");
    memset(&nc, 0, sizeof(nc));
    nc.from = (char *)"idsync <idsync@example.org>";
    strvec_init(&nc.to);
    strvec_push(&nc.to, "admins@example.org");
    strvec_push(&nc.to, "Zoë <zoe@example.org>");
    notify_build_mail(&nc, "/etc/idsync.yaml", &rep, 1700000000000000LL, &mail);

    assert_non_null(strstr(mail.buf, "From: idsync <idsync@example.org>\r\n"));
    assert_non_null(strstr(mail.buf, "To: admins@example.org,\r\n =?UTF-8?B?"));
    assert_non_null(strstr(mail.buf, "Subject: idsync: 25 new problems in run"));
    assert_non_null(strstr(mail.buf, "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"));
    assert_non_null(strstr(mail.buf, "Content-Type: text/plain; charset=UTF-8\r\n"));
    assert_non_null(strstr(mail.buf, "anchor-mismatch                  25"));
    /* the first objects with anchor, DN, attribute and reason */
    assert_non_null(strstr(mail.buf, "1. anchor-mismatch in cloud\r\n"
                                     "   anchor:    A100\r\n"
                                     "   DN:        uid=u100,ou=People,dc=example,dc=org\r\n"
                                     "   attribute: userName\r\n"
                                     "   reason:    soft match by userName"));
    assert_non_null(strstr(mail.buf, "20. anchor-mismatch in cloud\r\n   anchor:    A119\r\n"));
    assert_null(strstr(mail.buf, "anchor A120"));
    assert_non_null(strstr(mail.buf, "... and 5 more."));
    assert_non_null(strstr(mail.buf, "idsync -c /etc/idsync.yaml errors 1"));
    /* headers end with an empty line; no bare LF anywhere */
    assert_non_null(strstr(mail.buf, "\r\n\r\nidsync found 25 new problems"));
    {
        size_t i;

        for (i = 0; i < mail.len; i++) {
            if (mail.buf[i] == '\n') {
                assert_true(i > 0 && mail.buf[i - 1] == '\r');
            }
        }
    }
    strvec_clear(&nc.to);
    strbuf_release(&mail);
    notify_report_release(&rep);
    run_record_release(&run);
}

static void test_webhook_json(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct notify_report rep;
    struct run_record run;
    struct strbuf body = STRBUF_INIT;
    json_error_t jerr;
    json_t *doc;
    json_t *p;
    int64_t id;

    id = add_run(f->s, "full-import", "corp", 0, RUN_STOPPED_THRESHOLD,
                 "The source looks rebuilt: 2 of 2 objects", 2, 0);
    get_run(f->s, id, &run);
    notify_report_init(&rep);
    assert_int_equal(notify_collect(f->s, &run, &rep, &err), IDS_OK);
    strbuf_addstr(&rep.errors_cmd, "idsync errors 7");
    notify_build_json(&rep, &body);
    doc = json_loads(body.buf, 0, &jerr);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "event")), "idsync.problems");
    assert_int_equal(json_integer_value(json_object_get(doc, "new_problems")), 3);
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "run"), "status")),
                        "stopped-threshold");
    assert_string_equal(json_string_value(json_object_get(doc, "command")), "idsync errors 7");
    assert_non_null(strstr(json_string_value(json_object_get(doc, "subject")),
                           "full-import of corp stopped, the source looks rebuilt"));
    p = json_array_get(json_object_get(doc, "problems"), 0);
    assert_string_equal(json_string_value(json_object_get(p, "kind")), "rebuilt-source");
    assert_true(json_is_true(json_object_get(p, "run_level")));
    p = json_array_get(json_object_get(doc, "problems"), 1);
    assert_string_equal(json_string_value(json_object_get(p, "anchor")), "A0");
    assert_string_equal(json_string_value(json_object_get(p, "attr")), "userName");
    assert_string_equal(json_string_value(json_object_get(p, "dn")),
                        "uid=u0,ou=People,dc=example,dc=org");
    json_decref(doc);
    strbuf_release(&body);
    notify_report_release(&rep);
    run_record_release(&run);
}

/* A channel that cannot be reached: logged, written into the run's message,
 * the problems stay new for the next attempt. */
static void test_failure_recorded(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct config cfg;
    struct run_record run;
    struct run_record after;
    struct notify_report rep;
    int64_t id;

    memset(&cfg, 0, sizeof(cfg));
    strvec_init(&cfg.notify.to);
    cfg.notify.webhook = (char *)"http://127.0.0.1:1/hook"; /* nothing listens on port 1 */
    cfg.notify.tls_verify = true;
    id = add_run(f->s, "delta-sync", NULL, 0, RUN_COMPLETED_WITH_ERRORS, "Sync done.", 2, 0);
    get_run(f->s, id, &run);
    assert_int_not_equal(notify_after_run(&cfg, f->s, &run, &err), IDS_OK);
    assert_non_null(strstr(err.msg, "webhook http://127.0.0.1:1/hook failed"));
    get_run(f->s, id, &after);
    assert_int_equal(after.status, RUN_COMPLETED_WITH_ERRORS);
    assert_non_null(strstr(after.message, "Sync done. Notifying the administrators failed: "));
    /* not marked as notified */
    notify_report_init(&rep);
    assert_int_equal(notify_collect(f->s, &run, &rep, &err), IDS_OK);
    assert_int_equal(notify_filter_new(f->s, &run, &rep, 100, false, &err), IDS_OK);
    assert_int_equal(rep.nr, 2);
    notify_report_release(&rep);
    run_record_release(&after);
    run_record_release(&run);
    /* a dry run, or no channel: nothing at all */
    memset(&cfg, 0, sizeof(cfg));
    strvec_init(&cfg.notify.to);
    get_run(f->s, id, &run);
    assert_int_equal(notify_after_run(&cfg, f->s, &run, &err), IDS_OK);
    run_record_release(&run);
}

/* With a digest interval, new problems are queued and nothing is sent
 * before the interval has passed. */
static void test_digest_queues(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct config cfg;
    struct run_record run;
    struct strbuf q = STRBUF_INIT;
    struct strbuf last = STRBUF_INIT;
    int64_t id;

    memset(&cfg, 0, sizeof(cfg));
    strvec_init(&cfg.notify.to);
    cfg.notify.webhook = (char *)"http://127.0.0.1:1/hook";
    cfg.notify.digest_seconds = 3600;
    /* pretend a digest went out just now */
    assert_int_equal(store_meta_set(f->s, NOTIFY_META_LAST_SENT, "99999999999", &err), IDS_OK);
    id = add_run(f->s, "delta-sync", NULL, 0, RUN_COMPLETED_WITH_ERRORS, NULL, 2, 0);
    get_run(f->s, id, &run);
    assert_int_equal(notify_after_run(&cfg, f->s, &run, &err), IDS_OK); /* queued, not sent */
    assert_int_equal(store_meta_get(f->s, NOTIFY_META_DIGEST, &q, &err), IDS_OK);
    assert_non_null(strstr(q.buf, "\"anchor\":\"A0\""));
    assert_non_null(strstr(q.buf, "\"anchor\":\"A1\""));
    /* the same run again adds nothing to the queue */
    strbuf_reset(&q);
    assert_int_equal(notify_after_run(&cfg, f->s, &run, &err), IDS_OK);
    assert_int_equal(store_meta_get(f->s, NOTIFY_META_DIGEST, &q, &err), IDS_OK);
    assert_non_null(strstr(q.buf, "\"anchor\":\"A1\""));
    assert_null(strstr(strstr(q.buf, "\"anchor\":\"A1\"") + 1, "\"anchor\":\"A1\""));
    /* interval over: the send is attempted (and fails here), the queue kept */
    assert_int_equal(store_meta_set(f->s, NOTIFY_META_LAST_SENT, "0", &err), IDS_OK);
    assert_int_not_equal(notify_after_run(&cfg, f->s, &run, &err), IDS_OK);
    strbuf_reset(&q);
    assert_int_equal(store_meta_get(f->s, NOTIFY_META_DIGEST, &q, &err), IDS_OK);
    assert_non_null(strstr(q.buf, "\"anchor\":\"A0\""));
    strbuf_release(&q);
    strbuf_release(&last);
    run_record_release(&run);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test_setup_teardown(test_collect_and_dedupe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_problem_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mail_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_recorded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_queues, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
