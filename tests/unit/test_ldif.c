/* test_ldif.c - the LDIF connector: parsing (base64, folding, comments,
 * version, changetype add, URLs rejected, bad records with their line),
 * object types by objectClass / filter, anchors, folding of change records
 * in a full read, delta reads of appended records, writing change records
 * (base64, folding, modrdn) and reading them back, exactly-once tags. */
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "connector/connector.h"
#include "connector/ldifparse.h"
#include "entry.h"
#include "util/codec.h"
#include "util/mem.h"
#include "util/strbuf.h"
#include "util/strvec.h"
#include "util/banned.h"

struct fixture {
    char *dir;
    char *path;
    struct connector_config cfg;
    struct object_type_config ot[2];
    struct reference_config refs[1];
    struct connector *c;
};

static const struct config_option *find_opt(const struct config_option *table, const char *key)
{
    size_t i;

    for (i = 0; table[i].key != NULL; i++) {
        if (strcmp(table[i].key, key) == 0) {
            return &table[i];
        }
    }
    fail_msg("no option %s", key);
    return NULL;
}

static void set_opt(struct config_values *vals, const struct config_option *table, const char *key,
                    const char *value)
{
    struct config_value *v;

    vals->v = xreallocarray(vals->v, vals->nr + 1, sizeof(*vals->v));
    v = &vals->v[vals->nr++];
    memset(v, 0, sizeof(*v));
    strvec_init(&v->list);
    v->opt = find_opt(table, key);
    v->str = xstrdup(value);
}

static void free_vals(struct config_values *vals)
{
    size_t i;

    for (i = 0; i < vals->nr; i++) {
        free(vals->v[i].str);
    }
    free(vals->v);
    vals->v = NULL;
    vals->nr = 0;
}

/* connector "dir", type user (objectClass person) and optionally group
 * (objectClass groupOfNames, member is a reference). */
static struct fixture *fixture_new(const char *content, bool two_types)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    struct strbuf sb = STRBUF_INIT;

    f->dir = test_tmpdir();
    if (content != NULL) {
        f->path = test_write_file(f->dir, "dir.ldif", content);
    } else {
        strbuf_addf(&sb, "%s/dir.ldif", f->dir);
        f->path = strbuf_detach(&sb, NULL);
    }
    f->cfg.name = "dir";
    f->cfg.type = "ldif";
    f->cfg.ops = &ldif_connector_ops;
    set_opt(&f->cfg.opts, ldif_connector_ops.options, "path", f->path);
    set_opt(&f->cfg.opts, ldif_connector_ops.options, "settle", "0");
    f->ot[0].name = "user";
    strvec_init(&f->ot[0].attributes);
    f->cfg.nobjects = 1;
    f->cfg.objects = f->ot;
    if (two_types) {
        set_opt(&f->ot[0].opts, ldif_connector_ops.object_options, "object_class", "person");
        f->ot[1].name = "group";
        strvec_init(&f->ot[1].attributes);
        f->ot[1].filter = "(|(objectClass=groupOfNames)(objectClass=group))";
        f->refs[0].attr = "member";
        strvec_init(&f->refs[0].types);
        f->ot[1].nrefs = 1;
        f->ot[1].refs = f->refs;
        f->cfg.nobjects = 2;
    }
    return f;
}

static void fixture_open(struct fixture *f)
{
    struct ids_error err = IDS_ERROR_INIT;

    if (connector_create(&f->cfg, &f->c, &err) != IDS_OK) {
        fail_msg("create: %s", err.msg);
    }
    if (connector_open(f->c, &err) != IDS_OK) {
        fail_msg("open: %s", err.msg);
    }
}

static void fixture_free(struct fixture *f)
{
    size_t i;

    connector_close(f->c);
    free_vals(&f->cfg.opts);
    for (i = 0; i < 2; i++) {
        strvec_clear(&f->ot[i].attributes);
        free_vals(&f->ot[i].opts);
    }
    test_rmtree(f->dir);
    free(f->dir);
    free(f->path);
    free(f);
}

/* Drain a cursor: objects as JSON lines, changes as JSON, errors as ERR. */
static void drain(struct fixture *f, struct connector_cursor *cur, struct strbuf *out,
                  struct strbuf *wm)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct read_item item;
    enum ids_err ret;

    for (;;) {
        ret = connector_cursor_next(f->c, cur, &item, &err);
        if (ret == IDS_DONE) {
            break;
        }
        if (ret == IDS_EINPUT) {
            strbuf_addf(out, "ERR %s\n", err.msg);
            continue;
        }
        if (ret != IDS_OK) {
            fail_msg("next: %s: %s", ids_err_name(ret), err.msg);
        }
        if (item.entry != NULL) {
            entry_canonicalize(item.entry);
            entry_to_json(item.entry, out);
        } else {
            change_to_json(item.change, out);
        }
        strbuf_addch(out, '\n');
        read_item_release(&item);
    }
    if (wm != NULL) {
        assert_int_equal(connector_cursor_watermark(f->c, cur, wm, &err), IDS_OK);
    }
    connector_cursor_free(f->c, cur);
}

static char *read_all(struct fixture *f, struct strbuf *out)
{
    struct connector_cursor *cur = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf wm = STRBUF_INIT;

    if (f->c == NULL) {
        fixture_open(f);
    }
    if (connector_read_full(f->c, &cur, &err) != IDS_OK) {
        fail_msg("read_full: %s", err.msg);
    }
    drain(f, cur, out, &wm);
    return strbuf_detach(&wm, NULL);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL) {
        fail_msg("expected to find:\n%s\nin:\n%s", needle, hay);
    }
}

static void assert_not_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) != NULL) {
        fail_msg("did not expect:\n%s\nin:\n%s", needle, hay);
    }
}

static const char *sample = "version: 1\n"
                            "\n"
                            "# a comment\n"
                            "#  folded comment\n"
                            "dn: uid=ann,ou=People,dc=example,dc=org\n"
                            "objectClass: person\n"
                            "uid: ann\n"
                            "cn: Ann\n"
                            "  Smith\n"
                            "description:: w6lsw6hu\n"
                            "entryUUID: 11111111-2222-3333-4444-555555555555\n"
                            "\n"
                            "\n"
                            "dn: CN=Bob , OU=People,DC=example,DC=org\n"
                            "changetype: add\n"
                            "objectClass: person\n"
                            "cn: Bob\n"
                            "\n"
                            "dn: cn=staff,dc=example,dc=org\n"
                            "objectClass: groupOfNames\n"
                            "member: uid=ann,ou=People,dc=example,dc=org\n"
                            "member: CN=Bob , OU=People,DC=example,DC=org\n"
                            "\n"
                            "dn: cn=printer,dc=example,dc=org\n"
                            "objectClass: device\n"
                            "cn: printer\n";

static void test_parse_content(void **state)
{
    struct fixture *f = fixture_new(sample, true);
    struct strbuf out = STRBUF_INIT;
    char *wm;

    (void)state;
    wm = read_all(f, &out);
    assert_string_equal(
        out.buf,
        "{\"type\":\"user\",\"anchor\":\"11111111-2222-3333-4444-555555555555\","
        "\"dn\":\"uid=ann,ou=People,dc=example,dc=org\",\"attributes\":{\"cn\":[\"Ann "
        "Smith\"],\"description\":[\"\xc3\xa9l\xc3\xa8n\"],\"entryUUID\":[\"11111111-2222-3333-"
        "4444-555555555555\"],\"objectClass\":[\"person\"],\"uid\":[\"ann\"]}}\n"
        "{\"type\":\"user\",\"anchor\":\"cn=bob,ou=people,dc=example,dc=org\",\"dn\":\"CN=Bob , "
        "OU=People,DC=example,DC=org\",\"attributes\":{\"cn\":[\"Bob\"],\"objectClass\":["
        "\"person\"]}}\n"
        "{\"type\":\"group\",\"anchor\":\"cn=staff,dc=example,dc=org\",\"dn\":\"cn=staff,dc="
        "example,dc=org\",\"attributes\":{\"member\":[\"CN=Bob , OU=People,DC=example,DC=org\","
        "\"uid=ann,ou=People,dc=example,dc=org\"],\"objectClass\":[\"groupOfNames\"]}}\n");
    assert_true(strncmp(wm, "ldif2:", 6) == 0);
    free(wm);
    strbuf_release(&out);
    fixture_free(f);
}

static void test_reference_flag_and_attribute_filter(void **state)
{
    struct fixture *f = fixture_new(sample, true);
    struct connector_cursor *cur = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    struct read_item item;
    int groups = 0;

    (void)state;
    strvec_push(&f->ot[0].attributes, "cn");
    fixture_open(f);
    assert_int_equal(connector_read_full(f->c, &cur, &err), IDS_OK);
    while (connector_cursor_next(f->c, cur, &item, &err) == IDS_OK) {
        if (strcmp(item.entry->type, "group") == 0) {
            assert_true(entry_attr(item.entry, "member")->flags & ATTR_REF);
            groups++;
        } else {
            /* only the configured attributes of a user */
            assert_int_equal(item.entry->nattrs, 1);
            assert_non_null(entry_attr(item.entry, "cn"));
        }
        read_item_release(&item);
    }
    assert_int_equal(groups, 1);
    connector_cursor_free(f->c, cur);
    fixture_free(f);
}

static void test_bad_records(void **state)
{
    struct fixture *f = fixture_new("dn: cn=a,dc=x\n"           /* 1 */
                                    "cn:< file:///etc/passwd\n" /* 2 */
                                    "\n"
                                    "dn: cn=b,dc=x\n"          /* 4 */
                                    "this line has no colon\n" /* 5 */
                                    "\n"
                                    "dn: cn=c,dc=x\n" /* 7 */
                                    "cn:: ***\n"      /* 8 */
                                    "\n"
                                    "cn: no dn\n" /* 10 */
                                    "\n"
                                    "dn: cn=d,dc=x\n"      /* 12 */
                                    "changetype: rename\n" /* 13 */
                                    "\n"
                                    "dn: cn=e,dc=x\n" /* 15 */
                                    "cn: \xff\n"      /* 16 */
                                    "\n"
                                    "dn: cn=ok,dc=x\n"
                                    "cn: ok\n",
                                    false);
    struct strbuf out = STRBUF_INIT;
    struct strbuf exp = STRBUF_INIT;
    char *wm;

    (void)state;
    wm = read_all(f, &out);
    strbuf_addf(
        &exp,
        "ERR %s:2: attribute cn: URL values (\":<\") are not supported; inline the value "
        "(base64 with \"::\")\n"
        "ERR %s:5: no colon (expected \"attribute: value\")\n"
        "ERR %s:8: attribute cn: invalid base64\n"
        "ERR %s:10: a record must start with dn:\n"
        "ERR %s:13: unknown changetype \"rename\"\n"
        "ERR %s:16: attribute cn: invalid UTF-8 (use base64, \"::\")\n"
        "{\"type\":\"user\",\"anchor\":\"cn=ok,dc=x\",\"dn\":\"cn=ok,dc=x\",\"attributes\":{"
        "\"cn\":[\"ok\"]}}\n",
        f->path, f->path, f->path, f->path, f->path, f->path);
    assert_string_equal(out.buf, exp.buf);
    free(wm);
    strbuf_release(&out);
    strbuf_release(&exp);
    fixture_free(f);
}

/* Lines are read in runs of the read buffer: a 1,200,000-byte value (over
 * the 1 MiB cap lines had: a photo as ldapsearch writes it) spans several
 * buffers and comes back whole; a line over the limit is a bad
 * record, named by its line, and the next record is read. */
static void test_long_lines(void **state)
{
    struct strbuf in = STRBUF_INIT;
    struct strbuf out = STRBUF_INIT;
    struct strbuf want = STRBUF_INIT;
    struct fixture *f;
    char *wm;
    size_t i;

    (void)state;
    strbuf_addstr(&in, "dn: cn=long,dc=x\ncn: ");
    for (i = 0; i < 1200000; i++) {
        strbuf_addch(&in, (char)('a' + i % 26));
    }
    strbuf_addstr(&in, "\r\n\ndn: cn=huge,dc=x\ncn: ");
    for (i = 0; i < LDIF_LINE_MAX + 10; i++) {
        strbuf_addch(&in, 'y');
    }
    strbuf_addstr(&in, "\n\ndn: cn=ok,dc=x\ncn: ok"); /* no newline at the end */
    f = fixture_new(in.buf, false);
    wm = read_all(f, &out);
    strbuf_addstr(&want, "\"cn\":[\"abcdefghijklmnopqrstuvwxyzabc");
    assert_non_null(strstr(out.buf, want.buf));
    strbuf_reset(&want);
    for (i = 1199990; i < 1200000; i++) {
        strbuf_addch(&want, (char)('a' + i % 26));
    }
    strbuf_addstr(&want, "\"]}}\n"); /* the whole value, the CR dropped */
    assert_non_null(strstr(out.buf, want.buf));
    strbuf_reset(&want);
    strbuf_addf(&want, "ERR %s:5: line longer than %u bytes\n", f->path, LDIF_LINE_MAX);
    assert_non_null(strstr(out.buf, want.buf));
    assert_non_null(strstr(out.buf, "\"anchor\":\"cn=ok,dc=x\""));
    free(wm);
    strbuf_release(&in);
    strbuf_release(&out);
    strbuf_release(&want);
    fixture_free(f);
}

static void test_full_read_folds_changes(void **state)
{
    struct fixture *f = fixture_new("dn: cn=a,dc=x\ncn: a\nmail: a@x\n\n"
                                    "dn: cn=b,dc=x\ncn: b\n\n"
                                    "dn: cn=c,dc=x\ncn: c\n\n"
                                    "dn: cn=a,dc=x\nchangetype: modify\n"
                                    "replace: mail\nmail: new@x\n-\nadd: sn\nsn: A\n-\n\n"
                                    "dn: cn=b,dc=x\nchangetype: modrdn\nnewrdn: cn=bee\n"
                                    "deleteoldrdn: 1\nnewsuperior: ou=moved,dc=x\n\n"
                                    "dn: cn=bee,ou=moved,dc=x\nchangetype: modify\n"
                                    "add: mail\nmail: bee@x\n-\n\n"
                                    "dn: cn=c,dc=x\nchangetype: delete\n\n"
                                    "dn: cn=zz,dc=x\nchangetype: delete\n\n",
                                    false);
    struct strbuf out = STRBUF_INIT;
    struct strbuf exp = STRBUF_INIT;
    char *wm;

    (void)state;
    wm = read_all(f, &out);
    strbuf_addf(
        &exp,
        "{\"type\":\"user\",\"anchor\":\"cn=a,dc=x\",\"dn\":\"cn=a,dc=x\",\"attributes\":{\"cn\":["
        "\"a\"],\"mail\":[\"new@x\"],\"sn\":[\"A\"]}}\n"
        "{\"type\":\"user\",\"anchor\":\"cn=bee,ou=moved,dc=x\",\"dn\":\"cn=bee,ou=moved,dc=x\","
        "\"attributes\":{\"cn\":[\"bee\"],\"mail\":[\"bee@x\"]}}\n"
        "ERR %s:35: change of an entry not added earlier in the file: \"cn=zz,dc=x\"\n",
        f->path);
    assert_string_equal(out.buf, exp.buf);
    free(wm);
    strbuf_release(&out);
    strbuf_release(&exp);
    fixture_free(f);
}

static void test_delta(void **state)
{
    struct fixture *f = fixture_new("dn: cn=a,dc=x\ncn: a\n\n", false);
    struct strbuf out = STRBUF_INIT;
    struct strbuf wm2 = STRBUF_INIT;
    struct connector_cursor *cur = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    char *wm;

    (void)state;
    wm = read_all(f, &out);
    /* unchanged: nothing, same watermark */
    assert_int_equal(connector_read_changes(f->c, wm, &cur, &err), IDS_OK);
    strbuf_reset(&out);
    drain(f, cur, &out, &wm2);
    assert_string_equal(out.buf, "");
    assert_string_equal(wm2.buf, wm);
    /* appended records: yielded; with the default anchor a modify of an
     * entry from before cannot be mapped: full import */
    test_append_file(f->path, "dn: cn=b,dc=x\ncn: b\n\n"
                              "dn: cn=b,dc=x\nchangetype: modify\nreplace: cn\ncn: B\n-\n\n");
    assert_int_equal(connector_read_changes(f->c, wm, &cur, &err), IDS_OK);
    strbuf_reset(&out);
    strbuf_reset(&wm2);
    drain(f, cur, &out, &wm2);
    assert_string_equal(
        out.buf,
        "{\"type\":\"user\",\"anchor\":\"cn=b,dc=x\",\"dn\":\"cn=b,dc=x\",\"attributes\":{\"cn\":["
        "\"b\"]}}\n"
        "{\"op\":\"modify\",\"type\":null,\"anchor\":\"cn=b,dc=x\",\"dn\":\"cn=b,dc=x\","
        "\"new_dn\":null,\"mods\":[{\"op\":\"replace\",\"attr\":\"cn\",\"values\":[\"B\"]}]}\n");
    test_append_file(f->path, "dn: cn=a,dc=x\nchangetype: delete\n\n");
    assert_int_equal(connector_read_changes(f->c, wm2.buf, &cur, &err), IDS_EFULLREQUIRED);
    assert_contains(err.msg, "not their anchor");
    /* the old part changed: full import */
    free(test_write_file(f->dir, "dir.ldif", "dn: cn=a,dc=x\ncn: A\n\n"));
    assert_int_equal(connector_read_changes(f->c, wm, &cur, &err), IDS_EFULLREQUIRED);
    assert_contains(err.msg, "file changed since the last import");
    free(wm);
    strbuf_release(&out);
    strbuf_release(&wm2);
    fixture_free(f);
}

/* A file of several hash blocks: the delta continues after the part read
 * before without hashing it again, and still tells a file that was not
 * only appended to (rewritten from the start, truncated, replaced). */
static void test_delta_large(void **state)
{
    struct strbuf text = STRBUF_INIT;
    struct strbuf out = STRBUF_INIT;
    struct strbuf wm2 = STRBUF_INIT;
    struct connector_cursor *cur = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    struct fixture *f;
    char *wm;
    char *tmp;
    int i;

    (void)state;
    for (i = 0; i < 4000; i++) { /* about 3 blocks of 64 KiB */
        strbuf_addf(&text, "dn: cn=u%04d,dc=x\ncn: u%04d\ndescription: some text to fill\n\n", i,
                    i);
    }
    f = fixture_new(text.buf, false);
    set_opt(&f->cfg.opts, ldif_connector_ops.options, "anchor", "dn");
    wm = read_all(f, &out);
    assert_true(strncmp(wm, "ldif2:", 6) == 0);
    /* appended: only the new record comes */
    test_append_file(f->path, "dn: cn=new,dc=x\ncn: new\n\n");
    assert_int_equal(connector_read_changes(f->c, wm, &cur, &err), IDS_OK);
    strbuf_reset(&out);
    drain(f, cur, &out, &wm2);
    assert_string_equal(out.buf, "{\"type\":\"user\",\"anchor\":\"cn=new,dc=x\",\"dn\":\"cn=new,"
                                 "dc=x\",\"attributes\":{\"cn\":[\"new\"]}}\n");
    /* the watermark continued from the old one equals a full read's */
    strbuf_reset(&out);
    free(wm);
    wm = read_all(f, &out);
    assert_string_equal(wm2.buf, wm);
    /* rewritten in place from the start (same size, same file) */
    text.buf[4] = 'C';
    text.buf[5] = 'N';
    strbuf_addstr(&text, "dn: cn=new,dc=x\ncn: new\n\n");
    free(test_write_file(f->dir, "dir.ldif", text.buf));
    assert_int_equal(connector_read_changes(f->c, wm, &cur, &err), IDS_EFULLREQUIRED);
    assert_contains(err.msg, "file changed since the last import (its start differs)");
    /* truncated */
    free(wm);
    strbuf_reset(&out);
    wm = read_all(f, &out);
    text.len -= 20;
    text.buf[text.len] = '\0';
    free(test_write_file(f->dir, "dir.ldif", text.buf));
    assert_int_equal(connector_read_changes(f->c, wm, &cur, &err), IDS_EFULLREQUIRED);
    assert_contains(err.msg, "shorter than at the last read");
    /* replaced by another file with the same content and more */
    free(wm);
    strbuf_reset(&out);
    wm = read_all(f, &out);
    strbuf_addstr(&text, "\n");
    tmp = test_write_file(f->dir, "other.ldif", text.buf);
    assert_int_equal(rename(tmp, f->path), 0);
    free(tmp);
    assert_int_equal(connector_read_changes(f->c, wm, &cur, &err), IDS_EFULLREQUIRED);
    assert_contains(err.msg, "replaced by another file");
    free(wm);
    strbuf_release(&text);
    strbuf_release(&out);
    strbuf_release(&wm2);
    fixture_free(f);
}

/* anchor: dn: the same entry added twice (DN spelt another way) is one
 * object and one error, found without a map of anchors. */
static void test_anchor_dn_added_twice(void **state)
{
    struct fixture *f = fixture_new("dn: cn=a,dc=x\ncn: a\n\ndn: CN=A, DC=X\ncn: again\n\n", false);
    struct strbuf out = STRBUF_INIT;
    char *wm;

    (void)state;
    set_opt(&f->cfg.opts, ldif_connector_ops.options, "anchor", "dn");
    wm = read_all(f, &out);
    assert_contains(out.buf, "\"anchor\":\"cn=a,dc=x\"");
    assert_contains(out.buf, "ERR ");
    assert_contains(out.buf, "added twice");
    assert_not_contains(out.buf, "again");
    free(wm);
    strbuf_release(&out);
    fixture_free(f);
}

static void test_delta_anchor_dn(void **state)
{
    struct fixture *f = fixture_new("dn: cn=a,dc=x\ncn: a\n\n", false);
    struct strbuf out = STRBUF_INIT;
    struct strbuf wm2 = STRBUF_INIT;
    struct connector_cursor *cur = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    char *wm;

    (void)state;
    set_opt(&f->cfg.opts, ldif_connector_ops.options, "anchor", "dn");
    wm = read_all(f, &out);
    test_append_file(f->path, "dn: CN=A,DC=X\nchangetype: delete\n\n");
    assert_int_equal(connector_read_changes(f->c, wm, &cur, &err), IDS_OK);
    strbuf_reset(&out);
    drain(f, cur, &out, &wm2);
    assert_string_equal(out.buf, "{\"op\":\"delete\",\"type\":null,\"anchor\":\"cn=a,dc=x\","
                                 "\"dn\":\"CN=A,DC=X\",\"new_dn\":null,\"mods\":[]}\n");
    free(wm);
    strbuf_release(&out);
    strbuf_release(&wm2);
    fixture_free(f);
}

/* ---- writing ---------------------------------------------------------- */

static size_t export_changes(struct fixture *f, struct change **chs, const uint64_t *tags, size_t n,
                             struct export_result *rs)
{
    struct ids_error err = IDS_ERROR_INIT;
    size_t i, got = 0;
    enum ids_err ret;

    if (f->c == NULL) {
        fixture_open(f);
    }
    assert_int_equal(connector_export_begin(f->c, &err), IDS_OK);
    for (i = 0; i < n; i++) {
        if (connector_submit(f->c, chs[i], tags[i], &err) != IDS_OK) {
            fail_msg("submit: %s", err.msg);
        }
    }
    assert_int_equal(connector_export_end(f->c, &err), IDS_OK);
    for (;;) {
        struct export_result res;

        ret = connector_poll(f->c, true, &res, &err);
        if (ret == IDS_DONE) {
            break;
        }
        assert_int_equal(ret, IDS_OK);
        assert_true(got < n);
        rs[got++] = res;
    }
    return got;
}

static void release_results(struct export_result *rs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        export_result_release(&rs[i]);
    }
}

/* The hash in a marker ("# idsync: tag=T hash=H"), computed as the first
 * files were written: markers in existing files must keep matching. */
static uint64_t marker_hash(const struct change *ch)
{
    struct strbuf sb = STRBUF_INIT;
    uint64_t h;
    size_t i, j;

    strbuf_addf(&sb, "%d%c%s%c%s%c", (int)ch->op, '\0', ch->dn ? ch->dn : "", '\0',
                ch->new_dn ? ch->new_dn : "", '\0');
    for (i = 0; i < ch->nmods; i++) {
        const struct mod *m = &ch->mods[i];

        strbuf_addf(&sb, "%d%s%c%zu", (int)m->op, m->attr.name, '\0', m->attr.nvals);
        for (j = 0; j < m->attr.nvals; j++) {
            strbuf_addf(&sb, ":%zu:", m->attr.vals[j].len);
            strbuf_add(&sb, m->attr.vals[j].data, m->attr.vals[j].len);
        }
    }
    h = hash64(sb.buf, sb.len, 0);
    strbuf_release(&sb);
    return h;
}

static void test_write_and_read_back(void **state)
{
    struct fixture *f = fixture_new(NULL, false);
    struct change *chs[4];
    uint64_t tags[4] = {11, 12, 13, 14};
    struct export_result rs[4];
    struct strbuf longv = STRBUF_INIT;
    struct strbuf out = STRBUF_INIT;
    struct mod *m;
    char *txt;
    char *wm;
    const char *p;
    size_t i;

    (void)state;
    for (i = 0; i < 100; i++) {
        strbuf_addch(&longv, (char)('a' + i % 26));
    }
    chs[0] = change_new(CHANGE_ADD, "user", NULL, "cn=Ann,ou=People,dc=x");
    m = change_add_mod(chs[0], MOD_ADD, "cn", 0);
    attr_add_value(&m->attr, "Ann", 3);
    m = change_add_mod(chs[0], MOD_ADD, "description", 0);
    attr_add_value(&m->attr, longv.buf, longv.len);
    attr_add_value(&m->attr, " leading space", 14);
    attr_add_value(&m->attr, "Jos\xc3\xa9", 5);
    attr_add_value(&m->attr, ":colon", 6);
    m = change_add_mod(chs[0], MOD_ADD, "photo", 0);
    attr_add_value(&m->attr, "\x00\x01\x02", 3);
    chs[1] = change_new(CHANGE_ADD, "user", NULL, "cn=Bob,ou=People,dc=x");
    m = change_add_mod(chs[1], MOD_ADD, "cn", 0);
    attr_add_value(&m->attr, "Bob", 3);
    m = change_add_mod(chs[1], MOD_ADD, "mail", 0);
    attr_add_value(&m->attr, "bob@x", 5);
    chs[2] = change_new(CHANGE_MODIFY, "user", "cn=ann,ou=people,dc=x", "cn=Ann,ou=People,dc=x");
    chs[2]->new_dn = xstrdup("cn=Anne,ou=Staff,dc=x");
    m = change_add_mod(chs[2], MOD_REPLACE, "description", 0);
    attr_add_value(&m->attr, "short", 5);
    m = change_add_mod(chs[2], MOD_DELETE, "photo", 0);
    m = change_add_mod(chs[2], MOD_ADD, "mail", 0);
    attr_add_value(&m->attr, "anne@x", 6);
    chs[3] = change_new(CHANGE_DELETE, "user", "cn=bob,ou=people,dc=x", "cn=Bob,ou=People,dc=x");
    assert_int_equal(export_changes(f, chs, tags, 4, rs), 4);
    assert_int_equal(rs[0].tag, 11);
    assert_int_equal(rs[0].code, IDS_OK);
    assert_string_equal(rs[0].anchor, "cn=ann,ou=people,dc=x");
    assert_string_equal(rs[2].dn, "cn=Anne,ou=Staff,dc=x");
    release_results(rs, 4);

    txt = test_read_file(f->path);
    assert_true(strncmp(txt, "version: 1\n\n# idsync: tag=11 hash=", 34) == 0);
    for (i = 0; i < 4; i++) {
        char marker[80];

        snprintf(marker, sizeof(marker), "# idsync: tag=%llu hash=%016llx",
                 (unsigned long long)tags[i], (unsigned long long)marker_hash(chs[i]));
        assert_contains(txt, marker);
    }
    assert_contains(txt,
                    "dn: cn=Ann,ou=People,dc=x\nchangetype: add\ncn: Ann\n"
                    "description: abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk\n"
                    " lmnopqrstuvwxyzabcdefghijklmnopqrstuv\n"
                    "description:: IGxlYWRpbmcgc3BhY2U=\n"
                    "description:: Sm9zw6k=\n"
                    "description:: OmNvbG9u\n"
                    "photo:: AAEC\n\n");
    assert_contains(txt, "records=2\ndn: cn=Ann,ou=People,dc=x\nchangetype: modrdn\n"
                         "newrdn: cn=Anne\ndeleteoldrdn: 1\nnewsuperior: ou=Staff,dc=x\n\n"
                         "dn: cn=Anne,ou=Staff,dc=x\nchangetype: modify\n"
                         "replace: description\ndescription: short\n-\n"
                         "delete: photo\n-\nadd: mail\nmail: anne@x\n-\n\n");
    assert_contains(txt, "dn: cn=Bob,ou=People,dc=x\nchangetype: delete\n\n");
    /* every line folded at 76 */
    for (p = txt; *p;) {
        const char *e = strchr(p, '\n');

        assert_non_null(e);
        assert_true(e - p <= 76);
        p = e + 1;
    }
    free(txt);

    /* parsed back: the state the changes describe */
    connector_close(f->c);
    f->c = NULL;
    wm = read_all(f, &out);
    assert_string_equal(
        out.buf,
        "{\"type\":\"user\",\"anchor\":\"cn=anne,ou=staff,dc=x\",\"dn\":\"cn=Anne,ou=Staff,dc=x\","
        "\"attributes\":{\"cn\":[\"Anne\"],\"description\":[\"short\"],\"mail\":[\"anne@x\"]}}"
        "\n");
    free(wm);
    for (i = 0; i < 4; i++) {
        change_free(chs[i]);
    }
    strbuf_release(&longv);
    strbuf_release(&out);
    fixture_free(f);
}

static void test_exactly_once(void **state)
{
    struct fixture *f = fixture_new(NULL, false);
    struct change *ch = change_new(CHANGE_ADD, "user", NULL, "cn=a,dc=x");
    struct change *del = change_new(CHANGE_DELETE, "user", "cn=a,dc=x", "cn=a,dc=x");
    struct export_result rs[2];
    uint64_t tag1 = 7, tag2 = 8;
    struct mod *m = change_add_mod(ch, MOD_ADD, "cn", 0);
    struct change *chs[2];
    uint64_t tags[2];
    char *before;
    char *after;
    size_t cut;

    (void)state;
    attr_add_value(&m->attr, "a", 1);
    chs[0] = ch;
    tags[0] = tag1;
    assert_int_equal(export_changes(f, chs, tags, 1, rs), 1);
    release_results(rs, 1);
    before = test_read_file(f->path);
    /* the same (tag, change) again, as after a crash: success, not written */
    connector_close(f->c);
    f->c = NULL;
    assert_int_equal(export_changes(f, chs, tags, 1, rs), 1);
    assert_int_equal(rs[0].code, IDS_OK);
    assert_string_equal(rs[0].anchor, "cn=a,dc=x");
    release_results(rs, 1);
    after = test_read_file(f->path);
    assert_string_equal(before, after);
    free(after);
    /* a different tag is a different change: written */
    tags[0] = tag2;
    assert_int_equal(export_changes(f, chs, tags, 1, rs), 1);
    release_results(rs, 1);
    after = test_read_file(f->path);
    assert_true(strlen(after) > strlen(before));
    free(after);

    /* a crash in the middle of writing a change: export_begin cuts it off
     * and the retry writes it whole */
    chs[0] = del;
    tags[0] = 9;
    connector_close(f->c);
    f->c = NULL;
    assert_int_equal(export_changes(f, chs, tags, 1, rs), 1);
    release_results(rs, 1);
    after = test_read_file(f->path);
    cut = strlen(after) - 5; /* inside "changetype: delete\n\n" */
    assert_int_equal(truncate(f->path, (off_t)cut), 0);
    free(after);
    connector_close(f->c);
    f->c = NULL;
    assert_int_equal(export_changes(f, chs, tags, 1, rs), 1);
    assert_int_equal(rs[0].code, IDS_OK);
    release_results(rs, 1);
    after = test_read_file(f->path);
    assert_true(strstr(after, "# idsync: tag=9 ") != NULL);
    assert_true(strstr(strstr(after, "# idsync: tag=9 ") + 1, "# idsync: tag=9 ") == NULL);
    assert_contains(after, "dn: cn=a,dc=x\nchangetype: delete\n\n");
    assert_not_contains(after, "changetype: del\n");
    free(after);
    free(before);
    change_free(ch);
    change_free(del);
    fixture_free(f);
}

static void test_create_errors(void **state)
{
    struct fixture *f = fixture_new(NULL, true);
    struct ids_error err = IDS_ERROR_INIT;
    struct connector *c = NULL;

    (void)state;
    f->ot[1].filter = "(cn=a*b)";
    assert_int_equal(connector_create(&f->cfg, &c, &err), IDS_ECONFIG);
    assert_contains(err.msg, "substring filters are not supported");
    f->ot[1].filter = NULL;
    assert_int_equal(connector_create(&f->cfg, &c, &err), IDS_ECONFIG);
    assert_contains(err.msg, "object_class or filter needed");
    fixture_free(f);
}

/* A file changed a moment ago may still be being written: the reads wait
 * (here they stop at once, as on SIGTERM); the file the connector wrote
 * itself is read at once. */
static void test_settle(void **state)
{
    struct fixture *f = fixture_new("dn: cn=a,dc=x\nobjectClass: person\ncn: a\n", false);
    volatile sig_atomic_t stop = 1;
    struct ids_error err = IDS_ERROR_INIT;
    struct connector_cursor *cur = NULL;
    struct change *ch = change_new(CHANGE_ADD, "user", NULL, "cn=b,dc=x");
    uint64_t tag = 7;
    struct export_result rs[1];
    struct strbuf out = STRBUF_INIT;
    struct strbuf wm = STRBUF_INIT;
    size_t i;

    (void)state;
    for (i = 0; i < f->cfg.opts.nr; i++) {
        if (strcmp(f->cfg.opts.v[i].opt->key, "settle") == 0) {
            f->cfg.opts.v[i].num = 3600;
        }
    }
    fixture_open(f);
    f->c->stop = &stop;
    assert_int_equal(connector_read_full(f->c, &cur, &err), IDS_EINTR);
    assert_non_null(strstr(err.msg, "dir.ldif: stopped while waiting for the file to settle"));
    assert_int_equal(connector_read_changes(f->c, "ldif2:-", &cur, &err), IDS_EINTR);
    /* the connector appends a record: that version is its own */
    attr_add_value(&change_add_mod(ch, MOD_ADD, "cn", 0)->attr, "b", 1);
    assert_int_equal(export_changes(f, &ch, &tag, 1, rs), 1);
    assert_int_equal(rs[0].code, IDS_OK);
    release_results(rs, 1);
    assert_int_equal(connector_read_full(f->c, &cur, &err), IDS_OK);
    drain(f, cur, &out, &wm); /* frees the cursor */
    assert_non_null(strstr(out.buf, "cn=b,dc=x"));
    /* another process (a new instance, no own version): the file is as the
     * watermark left it, so its delta read does not wait; a file that grew
     * since does */
    connector_close(f->c);
    fixture_open(f);
    f->c->stop = &stop;
    assert_int_equal(connector_read_changes(f->c, wm.buf, &cur, &err), IDS_OK);
    connector_cursor_free(f->c, cur);
    test_append_file(f->path, "\ndn: cn=c,dc=x\nobjectClass: person\ncn: c\n");
    assert_int_equal(connector_read_changes(f->c, wm.buf, &cur, &err), IDS_EINTR);
    change_free(ch);
    strbuf_release(&out);
    strbuf_release(&wm);
    fixture_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_content),
        cmocka_unit_test(test_reference_flag_and_attribute_filter),
        cmocka_unit_test(test_bad_records),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_full_read_folds_changes),
        cmocka_unit_test(test_delta),
        cmocka_unit_test(test_delta_large),
        cmocka_unit_test(test_anchor_dn_added_twice),
        cmocka_unit_test(test_delta_anchor_dn),
        cmocka_unit_test(test_write_and_read_back),
        cmocka_unit_test(test_settle),
        cmocka_unit_test(test_exactly_once),
        cmocka_unit_test(test_create_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
