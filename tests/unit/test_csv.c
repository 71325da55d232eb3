/* test_csv.c - the CSV connector: reading (quoting, multi-values, BOM,
 * references, bad rows with their messages, a huge cell), the delta
 * watermark, and export (add/modify/rename/delete, atomic snapshot,
 * idempotent re-add). Configurations are built by hand. */
#include "testutil.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "connector/connector.h"
#include "connector/csvparse.h"
#include "connector/csvstate.h"
#include "connector/fileio.h"
#include "entry.h"
#include "util/codec.h"
#include "util/mem.h"
#include "util/strbuf.h"
#include "util/strvec.h"
#include "util/banned.h"

/* ---- hand-built configuration ---------------------------------------- */

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

/* A csv connector "hr" with object type "user": key id, attributes given
 * as a space-separated list. */
static struct fixture *fixture_new(const char *attrs, const char *content)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    struct ids_error err = IDS_ERROR_INIT;

    f->dir = test_tmpdir();
    if (content != NULL) {
        f->path = test_write_file(f->dir, "users.csv", content);
    } else {
        struct strbuf sb = STRBUF_INIT;

        strbuf_addf(&sb, "%s/users.csv", f->dir);
        f->path = strbuf_detach(&sb, NULL);
    }
    f->cfg.name = "hr";
    f->cfg.type = "csv";
    f->cfg.ops = &csv_connector_ops;
    set_opt(&f->cfg.opts, csv_connector_ops.options, "path", f->path);
    set_opt(&f->cfg.opts, csv_connector_ops.options, "settle", "0");
    set_opt(&f->cfg.opts, csv_connector_ops.options, "key", "id");
    f->ot[0].name = "user";
    strvec_init(&f->ot[0].attributes);
    strvec_split(&f->ot[0].attributes, attrs, ' ', true);
    f->cfg.nobjects = 1;
    f->cfg.objects = f->ot;
    (void)err;
    return f;
}

static void fixture_ref(struct fixture *f, const char *attr)
{
    f->refs[0].attr = (char *)attr;
    strvec_init(&f->refs[0].types);
    f->ot[0].nrefs = 1;
    f->ot[0].refs = f->refs;
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

/* Read everything: objects as JSON lines into out, errors as "ERR msg"
 * lines; returns the watermark (caller frees). */
static char *read_all(struct fixture *f, struct strbuf *out)
{
    struct connector_cursor *cur = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    struct read_item item;
    struct strbuf wm = STRBUF_INIT;
    enum ids_err ret;

    if (f->c == NULL) {
        fixture_open(f);
    }
    assert_int_equal(connector_read_full(f->c, &cur, &err), IDS_OK);
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
        assert_int_equal(item.op, CHANGE_ADD);
        entry_canonicalize(item.entry);
        entry_to_json(item.entry, out);
        strbuf_addch(out, '\n');
        read_item_release(&item);
    }
    assert_int_equal(connector_cursor_watermark(f->c, cur, &wm, &err), IDS_OK);
    connector_cursor_free(f->c, cur);
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

/* Names in dir, each followed by a space, sorted (static buffer). */
static const char *dir_listing(const char *dir)
{
    static char buf[1024];
    struct strvec names = STRVEC_INIT;
    struct dirent *d;
    DIR *dp = opendir(dir);
    size_t i, off = 0;

    assert_non_null(dp);
    while ((d = readdir(dp)) != NULL) {
        if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0) {
            strvec_push(&names, d->d_name);
        }
    }
    closedir(dp);
    strvec_sort(&names);
    buf[0] = '\0';
    for (i = 0; i < names.nr; i++) {
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s ", names.v[i]);
    }
    strvec_clear(&names);
    return buf;
}

/* ---- reading ---------------------------------------------------------- */

static void test_read_basic(void **state)
{
    struct fixture *f = fixture_new("cn mail", "id,cn,mail,phone\r\n"
                                               "1,Ann,ann@x.org,555\r\n"
                                               "2,\"Smith, Bob\",bob@x.org;b@x.org,\r\n"
                                               "\r\n"
                                               "3,\"Say \"\"hi\"\"\",,\n");
    struct strbuf out = STRBUF_INIT;
    char *wm;

    (void)state;
    wm = read_all(f, &out);
    assert_string_equal(
        out.buf,
        "{\"type\":\"user\",\"anchor\":\"1\",\"dn\":\"1\",\"attributes\":{\"cn\":[\"Ann\"],"
        "\"id\":[\"1\"],\"mail\":[\"ann@x.org\"]}}\n"
        "{\"type\":\"user\",\"anchor\":\"2\",\"dn\":\"2\",\"attributes\":{\"cn\":[\"Smith, "
        "Bob\"],\"id\":[\"2\"],\"mail\":[\"b@x.org\",\"bob@x.org\"]}}\n"
        "{\"type\":\"user\",\"anchor\":\"3\",\"dn\":\"3\",\"attributes\":{\"cn\":[\"Say "
        "\\\"hi\\\"\"],\"id\":[\"3\"]}}\n");
    assert_true(strncmp(wm, "csv4:", 5) == 0);
    free(wm);
    strbuf_release(&out);
    fixture_free(f);
}

static void test_read_multiline_bom_escapes(void **state)
{
    struct fixture *f = fixture_new("cn description member",
                                    "\xEF\xBB\xBFid,cn,description,member\n"
                                    "g1,Group,\"line one\nline two\",u1;u2\\;x;a\\\\b;C:\\d\n"
                                    "g2,Other,,\n");
    struct strbuf out = STRBUF_INIT;
    char *wm;

    (void)state;
    fixture_ref(f, "member");
    wm = read_all(f, &out);
    assert_contains(out.buf, "\"anchor\":\"g1\"");
    assert_contains(out.buf, "\"description\":[{\"base64\":\"bGluZSBvbmUKbGluZSB0d28=\"}]");
    /* escaped separator and backslash; other backslashes kept */
    assert_contains(out.buf, "\"member\":[\"C:\\\\d\",\"a\\\\b\",\"u1\",\"u2;x\"]");
    assert_contains(out.buf, "\"anchor\":\"g2\"");
    assert_not_contains(out.buf, "ERR");
    free(wm);
    strbuf_release(&out);
    fixture_free(f);
}

static void test_read_reference_flag(void **state)
{
    struct fixture *f = fixture_new("member", "id,member\ng1,u1;u2\n");
    struct connector_cursor *cur = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    struct read_item item;
    struct attr *a;

    (void)state;
    fixture_ref(f, "member");
    fixture_open(f);
    assert_int_equal(connector_read_full(f->c, &cur, &err), IDS_OK);
    assert_int_equal(connector_cursor_next(f->c, cur, &item, &err), IDS_OK);
    a = entry_attr(item.entry, "member");
    assert_non_null(a);
    assert_true(a->flags & ATTR_REF);
    assert_int_equal(a->nvals, 2);
    assert_null(entry_attr(item.entry, "id")->flags & ATTR_REF ? "ref" : NULL);
    read_item_release(&item);
    assert_int_equal(connector_cursor_next(f->c, cur, &item, &err), IDS_DONE);
    connector_cursor_free(f->c, cur);
    fixture_free(f);
}

static void test_read_bad_rows(void **state)
{
    struct fixture *f = fixture_new("cn", "id,cn\n"            /* line 1 */
                                          "1,ok\n"             /* 2 */
                                          "2,a,extra\n"        /* 3: too many fields */
                                          "3,\xff\xfe\n"       /* 4: invalid UTF-8 */
                                          ",nokey\n"           /* 5: empty key */
                                          "1,dup\n"            /* 6: duplicate key */
                                          "4,\"x\"y\n"         /* 7: text after quote */
                                          "5,fine\n"           /* 8 */
                                          "6,\"never closed\n" /* 9: unterminated */
                                          "7,after\n");        /* 10 */
    struct strbuf out = STRBUF_INIT;
    struct strbuf exp = STRBUF_INIT;
    char *wm;

    (void)state;
    wm = read_all(f, &out);
    strbuf_addf(
        &exp,
        "{\"type\":\"user\",\"anchor\":\"1\",\"dn\":\"1\",\"attributes\":{\"cn\":[\"ok\"],"
        "\"id\":[\"1\"]}}\n"
        "ERR %s:3: 3 fields, the header has 2\n"
        "ERR %s:4: column \"cn\": invalid UTF-8: the file may be in another encoding, such as "
        "Windows-1252; set `encoding: WINDOWS-1252` on the connector, or export the file as "
        "UTF-8 (Excel: \"CSV UTF-8\"; PowerShell: Export-Csv -Encoding UTF8)\n"
        "ERR %s:5: column \"id\": empty key\n"
        "ERR %s:6: column \"id\": duplicate key \"1\" (first at %s:2)\n"
        "ERR %s:7: column \"cn\": text after the closing quote\n"
        "{\"type\":\"user\",\"anchor\":\"5\",\"dn\":\"5\",\"attributes\":{\"cn\":[\"fine\"],"
        "\"id\":[\"5\"]}}\n"
        "ERR %s:9: column \"cn\": quoted field not terminated (no closing quote)\n"
        "{\"type\":\"user\",\"anchor\":\"7\",\"dn\":\"7\",\"attributes\":{\"cn\":[\"after\"],"
        "\"id\":[\"7\"]}}\n",
        f->path, f->path, f->path, f->path, f->path, f->path, f->path);
    assert_string_equal(out.buf, exp.buf);
    free(wm);
    strbuf_release(&out);
    strbuf_release(&exp);
    fixture_free(f);
}

/* Keys "k" and a number, zero-padded to `width` digits. */
static void duplicates_after_many_rows(int width)
{
    struct strbuf csv = STRBUF_INIT;
    struct strbuf out = STRBUF_INIT;
    struct strbuf exp = STRBUF_INIT;
    char k17[16], k100[16], k4999[16];
    struct fixture *f;
    char *wm;
    int i, n;

    snprintf(k17, sizeof(k17), "k%0*d", width, 17);
    snprintf(k100, sizeof(k100), "k%0*d", width, 100);
    snprintf(k4999, sizeof(k4999), "k%0*d", width, 4999);
    strbuf_addstr(&csv, "id,cn\n");
    for (i = 0; i < 5000; i++) {
        strbuf_addf(&csv, "k%0*d,n%d\n", width, i, i);
        if (i == 100) {
            strbuf_addf(&csv, "%sx,\"two\nlines\"\n\n", k100); /* rows after: 2 lines on */
        }
    }
    strbuf_addf(&csv, "%s,again\n%s,again\n%sx,again\n", k17, k4999, k100);
    f = fixture_new("cn", csv.buf);
    wm = read_all(f, &out);
    strbuf_addf(&exp,
                "ERR %s:5005: column \"id\": duplicate key \"%s\" (first at %s:19)\n"
                "ERR %s:5006: column \"id\": duplicate key \"%s\" (first at %s:5004)\n"
                "ERR %s:5007: column \"id\": duplicate key \"%sx\" (first at %s:103)\n",
                f->path, k17, f->path, f->path, k4999, f->path, f->path, k100, f->path);
    assert_non_null(strstr(out.buf, exp.buf));
    for (i = 0, n = 0; out.buf[i] != '\0'; i++) {
        n += out.buf[i] == '\n';
    }
    assert_int_equal(n, 5004); /* 5,001 objects and the three errors */
    free(wm);
    strbuf_release(&csv);
    strbuf_release(&out);
    strbuf_release(&exp);
    fixture_free(f);
}

/* Duplicate keys among many rows name the first row of the key: keys out
 * of order ("k10" < "k9": found through the index, which grows while the
 * file is read) and keys in order (found by bisection, no index). */
static void test_read_duplicate_after_many_rows(void **state)
{
    (void)state;
    duplicates_after_many_rows(0);
    duplicates_after_many_rows(4);
}

/* The set the file connectors keep of change markers written: every key
 * added is found again after the table grew, key 0 included, others not. */
static void test_u64set(void **state)
{
    struct u64set set = {0};
    uint64_t k;

    (void)state;
    assert_false(u64set_has(&set, 0));
    assert_false(u64set_has(&set, 42));
    for (k = 0; k < 100000; k++) {
        u64set_add(&set, k * 0x100000001b3ull);
    }
    u64set_add(&set, 0x100000001b3ull); /* again: no second entry */
    assert_int_equal(set.nr, 99999);    /* key 0 is kept apart */
    for (k = 0; k < 100000; k++) {
        assert_true(u64set_has(&set, k * 0x100000001b3ull));
        assert_false(u64set_has(&set, k * 0x100000001b3ull + 1));
    }
    u64set_release(&set);
    assert_false(u64set_has(&set, 0x100000001b3ull));
}

/* Multi-valued cells: separators split, a backslash escapes a separator
 * or a backslash and is kept before anything else, empty values go. */
static void test_split_values(void **state)
{
    static const struct {
        const char *in;
        const char *out; /* values joined by '|' */
    } cases[] = {
        {"", ""},
        {"a", "a"},
        {"a;b", "a|b"},
        {";a;;b;", "a|b"},
        {"a\\;b;c", "a;b|c"},
        {"a\\\\;b", "a\\|b"},
        {"a\\b", "a\\b"},
        {"\\", "\\"},
        {"x\\;", "x;"},
        {"ab\\", "ab\\"},
        {"one;t\\;wo;three", "one|t;wo|three"},
    };
    size_t i, k;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct strvec v = STRVEC_INIT;
        struct strbuf got = STRBUF_INIT;

        csv_split_values(cases[i].in, strlen(cases[i].in), ';', &v);
        for (k = 0; k < v.nr; k++) {
            strbuf_addf(&got, "%s%s", k > 0 ? "|" : "", v.v[k]);
        }
        assert_string_equal(got.buf, cases[i].out);
        strvec_clear(&v);
        strbuf_release(&got);
    }
}

/* A group of 100,000 members is one cell of about a megabyte: a quoted
 * cell of 1.1 MB and a plain one of 5 MB are read whole (rows were capped
 * at 1 MiB of content, and a plain run past the cap was scanned again for
 * every byte: minutes for one row). */
static void test_read_huge_cell(void **state)
{
    struct fixture *f = fixture_new("cn", NULL);
    struct strbuf content = STRBUF_INIT;
    struct strbuf out = STRBUF_INIT;
    struct strbuf exp = STRBUF_INIT;
    struct strbuf quoted = STRBUF_INIT;
    struct strbuf plain = STRBUF_INIT;
    FILE *fp;
    char *wm;
    size_t i;

    (void)state;
    for (i = 0; i < 1100 * 1024; i++) {
        strbuf_addch(&quoted, i % 100 == 99 ? ',' : 'x');
    }
    for (i = 0; i < 5 * 1024 * 1024; i++) {
        strbuf_addch(&plain, i % 10 == 9 ? ';' : (char)('a' + i % 7));
    }
    strbuf_addf(&content, "id,cn\n1,\"%s\"\n2,%s\n3,small\n", quoted.buf, plain.buf);
    fp = fopen(f->path, "wb");
    assert_non_null(fp);
    fwrite(content.buf, 1, content.len, fp);
    fclose(fp);
    wm = read_all(f, &out);
    strbuf_addf(&exp,
                "{\"type\":\"user\",\"anchor\":\"1\",\"dn\":\"1\",\"attributes\":{\"cn\":[\"%s\"],"
                "\"id\":[\"1\"]}}\n",
                quoted.buf);
    assert_true(out.len > exp.len);
    assert_memory_equal(out.buf, exp.buf, exp.len);
    /* the plain cell is multi-valued (;): 524,288 values of 9 letters */
    assert_non_null(strstr(out.buf + exp.len, "\"anchor\":\"2\""));
    assert_non_null(strstr(out.buf, "\"cn\":[\"small\"]"));
    assert_null(strstr(out.buf, "ERR"));
    free(wm);
    strbuf_release(&quoted);
    strbuf_release(&plain);
    strbuf_release(&content);
    strbuf_release(&out);
    strbuf_release(&exp);
    fixture_free(f);
}

/* Past the record cap (lowered here from its 64 MiB) a row is consumed to
 * its end, flagged, and the rows after it are read with their lines. */
static void test_parse_record_cap(void **state)
{
    char *dir = test_tmpdir();
    struct strbuf content = STRBUF_INIT;
    struct file_reader r;
    struct csv_record rec;
    struct ids_error err = IDS_ERROR_INIT;
    uint64_t line = 1;
    char *path;
    size_t i;

    (void)state;
    strbuf_addstr(&content, "id,cn\n1,");
    for (i = 0; i < 5000; i++) {
        strbuf_addch(&content, 'p');
    }
    strbuf_addstr(&content, "\n2,ok\n3,\"");
    for (i = 0; i < 3000; i++) {
        strbuf_addch(&content, i % 500 == 499 ? '\n' : 'q');
    }
    strbuf_addstr(&content, "\"\n4,");
    for (i = 0; i < 1000; i++) {
        strbuf_addch(&content, 'r'); /* "4," and 1,000 bytes: 2 over */
    }
    strbuf_addstr(&content, "\n5,last\n");
    path = test_write_file(dir, "cap.csv", content.buf);
    assert_int_equal(file_reader_open(&r, path, &err), IDS_OK);
    csv_record_init(&rec);
    rec.max = 1000;
    assert_int_equal(csv_read_record(&r, ',', &line, &rec), CSV_REC_OK); /* header */
    assert_false(rec.too_big);
    assert_int_equal(csv_read_record(&r, ',', &line, &rec), CSV_REC_OK);
    assert_true(rec.too_big);
    assert_int_equal(rec.line, 2);
    assert_int_equal(csv_read_record(&r, ',', &line, &rec), CSV_REC_OK);
    assert_false(rec.too_big);
    assert_int_equal(rec.line, 3);
    assert_string_equal(csv_field_str(&rec, 1), "ok");
    assert_int_equal(csv_read_record(&r, ',', &line, &rec), CSV_REC_OK);
    assert_true(rec.too_big); /* quoted, over several lines */
    assert_int_equal(rec.line, 4);
    assert_int_equal(csv_read_record(&r, ',', &line, &rec), CSV_REC_OK);
    assert_true(rec.too_big);       /* just over */
    assert_int_equal(rec.line, 11); /* the quoted row held 6 line ends */
    assert_int_equal(csv_read_record(&r, ',', &line, &rec), CSV_REC_OK);
    assert_false(rec.too_big);
    assert_int_equal(rec.line, 12);
    assert_string_equal(csv_field_str(&rec, 1), "last");
    assert_int_equal(csv_read_record(&r, ',', &line, &rec), CSV_REC_EOF);
    csv_record_release(&rec);
    file_reader_close(&r);
    free(path);
    strbuf_release(&content);
    test_rmtree(dir);
    free(dir);
}

static void test_read_dn_column_and_missing_key_column(void **state)
{
    struct fixture *f = fixture_new("", "id,dn,cn\n1,\"cn=Ann,o=x\",Ann\n");
    struct fixture *g = fixture_new("", "uid,cn\n1,Ann\n");
    struct strbuf out = STRBUF_INIT;
    struct connector_cursor *cur = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    struct read_item item;
    char *wm;

    (void)state;
    set_opt(&f->cfg.opts, csv_connector_ops.options, "dn_column", "dn");
    wm = read_all(f, &out);
    /* no attributes list: every column kept */
    assert_string_equal(out.buf,
                        "{\"type\":\"user\",\"anchor\":\"1\",\"dn\":\"cn=Ann,o=x\",\"attributes\":{"
                        "\"cn\":[\"Ann\"],\"dn\":[\"cn=Ann,o=x\"],\"id\":[\"1\"]}}\n");
    free(wm);

    fixture_open(g);
    assert_int_equal(connector_read_full(g->c, &cur, &err), IDS_OK);
    assert_int_equal(connector_cursor_next(g->c, cur, &item, &err), IDS_ECONFIG);
    assert_contains(err.msg, ":1: the key column \"id\" is not in the header");
    connector_cursor_free(g->c, cur);
    strbuf_release(&out);
    fixture_free(f);
    fixture_free(g);
}

static void test_missing_file_reads_empty(void **state)
{
    struct fixture *f = fixture_new("cn", NULL);
    struct strbuf out = STRBUF_INIT;
    char *wm;

    (void)state;
    wm = read_all(f, &out);
    assert_string_equal(out.buf, "");
    /* "-" for the file, then an empty row table */
    assert_true(strncmp(wm, "csv4:-\n=", 8) == 0);
    free(wm);
    strbuf_release(&out);
    fixture_free(f);
}

static void test_create_errors(void **state)
{
    struct fixture *f = fixture_new("cn", "id,cn\n");
    struct ids_error err = IDS_ERROR_INIT;
    struct connector *c = NULL;

    (void)state;
    set_opt(&f->cfg.opts, csv_connector_ops.options, "delimiter", ";;");
    assert_int_equal(connector_create(&f->cfg, &c, &err), IDS_ECONFIG);
    assert_contains(err.msg, "delimiter must be one character");
    assert_null(c);
    fixture_free(f);
}

static void test_two_object_types(void **state)
{
    struct fixture *f = fixture_new("cn", NULL);
    struct strbuf out = STRBUF_INIT;
    struct strbuf exp = STRBUF_INIT;
    char *upath = test_write_file(f->dir, "u.csv", "id,cn\nu1,Ann\n");
    char *gpath = test_write_file(f->dir, "g.csv", "gid,cn,member\ng1,Staff,u1\nu1,Clash,\n");
    char *wm;

    (void)state;
    free_vals(&f->cfg.opts);
    set_opt(&f->cfg.opts, csv_connector_ops.options, "key", "id");
    set_opt(&f->ot[0].opts, csv_connector_ops.object_options, "path", upath);
    f->ot[1].name = "group";
    strvec_init(&f->ot[1].attributes);
    strvec_push(&f->ot[1].attributes, "member");
    set_opt(&f->ot[1].opts, csv_connector_ops.object_options, "path", gpath);
    set_opt(&f->ot[1].opts, csv_connector_ops.object_options, "key", "gid");
    f->cfg.nobjects = 2;
    wm = read_all(f, &out);
    strbuf_addf(
        &exp,
        "{\"type\":\"user\",\"anchor\":\"u1\",\"dn\":\"u1\",\"attributes\":{\"cn\":[\"Ann\"],"
        "\"id\":[\"u1\"]}}\n"
        "{\"type\":\"group\",\"anchor\":\"g1\",\"dn\":\"g1\",\"attributes\":{\"gid\":[\"g1\"],"
        "\"member\":[\"u1\"]}}\n"
        "ERR %s:3: column \"gid\": duplicate key \"u1\" (first at %s:2)\n",
        gpath, upath);
    assert_string_equal(out.buf, exp.buf);
    /* one SIZE:HASH per file */
    assert_non_null(strchr(wm, ','));
    free(wm);
    free(upath);
    free(gpath);
    strbuf_release(&out);
    strbuf_release(&exp);
    fixture_free(f);
}

/* ---- delta ------------------------------------------------------------ */

/* Read the changes since wm: items as lines ("add JSON", "delete ANCHOR",
 * "ERR msg") into out; returns the new watermark (caller frees), or NULL
 * with *code when read_changes refused. */
static char *read_delta(struct fixture *f, const char *wm, struct strbuf *out, enum ids_err *code)
{
    struct connector_cursor *cur = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    struct read_item item;
    struct strbuf nwm = STRBUF_INIT;
    enum ids_err ret;

    if (f->c == NULL) {
        fixture_open(f);
    }
    *code = connector_read_changes(f->c, wm, &cur, &err);
    if (*code != IDS_OK) {
        strbuf_addf(out, "REFUSED %s\n", err.msg);
        return NULL;
    }
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
        if (item.op == CHANGE_ADD) {
            entry_canonicalize(item.entry);
            strbuf_addstr(out, "add ");
            entry_to_json(item.entry, out);
        } else {
            assert_int_equal(item.op, CHANGE_DELETE);
            strbuf_addf(out, "delete %s %s", item.change->type, item.change->anchor);
        }
        strbuf_addch(out, '\n');
        read_item_release(&item);
    }
    assert_int_equal(connector_cursor_watermark(f->c, cur, &nwm, &err), IDS_OK);
    connector_cursor_free(f->c, cur);
    return strbuf_detach(&nwm, NULL);
}

/* A watermark with each file's content hash as "-": a delta read does not
 * hash the whole file (its row tables are what the next read compares). */
static char *wm_masked(const char *wm)
{
    struct strbuf sb = STRBUF_INIT;
    const char *nl = strchr(wm, '\n');
    const char *end = nl != NULL ? nl : wm + strlen(wm);
    const char *p = wm;

    /* "csv4" then per file ":" or "," + SIZE:HASH:STAT (or "-") */
    strbuf_add(&sb, p, 4);
    p += 4;
    while (p < end) {
        const char *q = p + 1;
        const char *c1;
        const char *c2;

        while (q < end && *q != ',') {
            q++;
        }
        c1 = memchr(p + 1, ':', (size_t)(q - p - 1));
        c2 = c1 != NULL ? memchr(c1 + 1, ':', (size_t)(q - c1 - 1)) : NULL;
        if (c2 == NULL) {
            strbuf_add(&sb, p, (size_t)(q - p));
        } else {
            strbuf_add(&sb, p, (size_t)(c1 + 1 - p));
            strbuf_addch(&sb, '-');
            strbuf_add(&sb, c2, (size_t)(q - c2));
        }
        p = q;
    }
    strbuf_addstr(&sb, end);
    return strbuf_detach(&sb, NULL);
}

/* The state folder of the watermarks wm_rows() reads (NULL: inline). */
static const char *rows_dir;

/* The rows of a watermark's tables (inline, "\n=" base64, or "\n@NAME HASH
 * LEN" in rows_dir), as text: per table its configuration hash and flags,
 * then per row its hash, key hash and key. Runs are where a read put them;
 * their rows are what counts. */
static char *wm_rows(const char *wm)
{
    const char *p = strchr(wm, '\n');
    struct strbuf raw = STRBUF_INIT;
    struct strbuf out = STRBUF_INIT;
    struct csv_state st;
    const char *why = NULL;
    const void *map = NULL;
    size_t map_len = 0;
    size_t ti, c, i;

    assert_non_null(p);
    if (p[1] == '@') {
        char name[128];
        uint64_t hash;
        unsigned long long len;

        assert_non_null(rows_dir);
        assert_int_equal(sscanf(p + 2, "%127s %" SCNx64 " %llu", name, &hash, &len), 3);
        if (!csv_state_map_index(rows_dir, name, hash, len, &map, &map_len, &why) ||
            !csv_state_open(&st, map, map_len, rows_dir, 1, &why)) {
            fail_msg("tables: %s", why);
        }
    } else {
        assert_int_equal(p[1], '=');
        assert_int_equal(base64_decode(&raw, p + 2, strlen(p + 2)), IDS_OK);
        if (!csv_state_open(&st, raw.buf, raw.len, NULL, 1, &why)) {
            fail_msg("tables: %s", why);
        }
    }
    for (ti = 0; ti < st.ntypes; ti++) {
        strbuf_addf(&out, "table %016" PRIx64 " %" PRIu64 " rows %zu\n", st.t[ti].cfg,
                    st.t[ti].flags, st.t[ti].nrows);
        for (c = 0; c < st.t[ti].nruns; c++) {
            struct csv_blob b;

            assert_true(csv_state_blob(&st, &st.t[ti].runs[c], &b));
            for (i = 0; i < b.k; i++) {
                strbuf_addf(&out, "%016" PRIx64 " %016" PRIx64 " %.*s\n", b.hash[i], b.kh[i],
                            (int)(b.koff[i + 1] - b.koff[i]), b.keys + b.koff[i]);
            }
        }
    }
    csv_state_close(&st);
    file_state_unmap(map, map_len);
    strbuf_release(&raw);
    return strbuf_detach(&out, NULL);
}

/* Two watermarks equal but for the files' content hashes and where the
 * tables put their rows. */
static void assert_wm_equal(const char *a, const char *b)
{
    char *ma = wm_masked(a);
    char *mb = wm_masked(b);
    char *ra = wm_rows(a);
    char *rb = wm_rows(b);

    *strchr(ma, '\n') = '\0';
    *strchr(mb, '\n') = '\0';
    assert_string_equal(ma, mb);
    assert_string_equal(ra, rb);
    free(ma);
    free(mb);
    free(ra);
    free(rb);
}

static void test_delta_watermark(void **state)
{
    struct fixture *f = fixture_new("cn", "id,cn\n1,Ann\n2,Bob\n3,Cy\n");
    struct strbuf out = STRBUF_INIT;
    enum ids_err code;
    char *wm;
    char *wm2;
    char *full;

    (void)state;
    wm = read_all(f, &out);
    /* no watermark, or one of the first format: full import */
    assert_null(read_delta(f, NULL, &out, &code));
    assert_int_equal(code, IDS_EFULLREQUIRED);
    assert_null(read_delta(f, "csv1:13:0123456789abcdef", &out, &code));
    assert_int_equal(code, IDS_EFULLREQUIRED);
    assert_contains(out.buf, "older version");
    /* row tables of version 2 (before runs files): a full import, saying why */
    {
        static const unsigned char v2[32] = {'I', 'D', 'S', 'Y', 'N', 'C', 'R', 'T', 2,
                                             0,   0,   0,   4,   3,   2,   1,   1};
        struct strbuf old = STRBUF_INIT;

        strbuf_addstr(&old, "csv4:23:0123456789abcdef:0\n=");
        base64_encode(&old, v2, sizeof(v2));
        strbuf_reset(&out);
        assert_null(read_delta(f, old.buf, &out, &code));
        assert_int_equal(code, IDS_EFULLREQUIRED);
        assert_contains(out.buf, "row tables of another version of idsync");
        strbuf_release(&old);
    }
    /* same file: nothing, same watermark */
    strbuf_reset(&out);
    wm2 = read_delta(f, wm, &out, &code);
    assert_string_equal(out.buf, "");
    assert_wm_equal(wm2, wm);
    free(wm2);
    /* watermark = size + content hash, then the row table */
    assert_int_equal(strtol(wm + 5, NULL, 10), 23);
    /* changed file: only the changed and new rows, then the deletions */
    free(test_write_file(f->dir, "users.csv", "id,cn\n1,Anne\n3,Cy\n4,Dee\n"));
    wm2 = read_delta(f, wm, &out, &code);
    assert_string_equal(
        out.buf, "add {\"type\":\"user\",\"anchor\":\"1\",\"dn\":\"1\",\"attributes\":{\"cn\":"
                 "[\"Anne\"],\"id\":[\"1\"]}}\n"
                 "add {\"type\":\"user\",\"anchor\":\"4\",\"dn\":\"4\",\"attributes\":{\"cn\":"
                 "[\"Dee\"],\"id\":[\"4\"]}}\n"
                 "delete user 2\n");
    /* the watermark after a delta read is the one a full read gives */
    strbuf_reset(&out);
    full = read_all(f, &out);
    assert_wm_equal(wm2, full);
    assert_non_null(strstr(wm2, "csv4:24:-:"));
    free(wm);
    free(wm2);
    free(full);
    strbuf_release(&out);
    fixture_free(f);
}

/* A row that cannot be read puts the deletions off (the bad row may be the
 * missing object) and keeps them for the next read. */
static void test_delta_bad_row_keeps_deletions(void **state)
{
    struct fixture *f = fixture_new("cn", "id,cn\n1,Ann\n2,Bob\n3,Cy\n");
    struct strbuf out = STRBUF_INIT;
    enum ids_err code;
    char *wm;
    char *wm2;
    char *wm3;

    (void)state;
    wm = read_all(f, &out);
    strbuf_reset(&out);
    free(test_write_file(f->dir, "users.csv", "id,cn\n1,Ann\n3,Cy,extra\n"));
    wm2 = read_delta(f, wm, &out, &code);
    assert_non_null(wm2);
    assert_contains(out.buf, "ERR ");
    assert_not_contains(out.buf, "delete");
    strbuf_reset(&out);
    free(test_write_file(f->dir, "users.csv", "id,cn\n1,Ann\n3,Cy\n"));
    wm3 = read_delta(f, wm2, &out, &code);
    assert_non_null(wm3);
    assert_string_equal(out.buf, "delete user 2\n");
    free(wm);
    free(wm2);
    free(wm3);
    strbuf_release(&out);
    fixture_free(f);
}

static void set_mtime_past(const char *path)
{
    struct timespec ts[2] = {{.tv_sec = 1700000000, .tv_nsec = 0},
                             {.tv_sec = 1700000000, .tv_nsec = 0}};

    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/* A delta read of files with the size, modification time and inode of the
 * last read opens nothing: shown with bytes changed behind its back (same
 * size, the old time put back) that it does not see; a file changed within
 * two seconds of a read is read again next time. */
static void test_delta_unchanged_by_stat(void **state)
{
    struct fixture *f = fixture_new("cn", "id,cn\n1,Ann\n2,Bob\n");
    struct strbuf out = STRBUF_INIT;
    enum ids_err code;
    char *wm;
    char *wm2;
    FILE *fp;

    (void)state;
    set_mtime_past(f->path);
    wm = read_all(f, &out);
    assert_non_null(strstr(wm, ":1700000000000000000."));
    fp = fopen(f->path, "r+");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 14, SEEK_SET), 0);
    fputs("Bo2", fp);
    fclose(fp);
    set_mtime_past(f->path);
    strbuf_reset(&out);
    wm2 = read_delta(f, wm, &out, &code);
    assert_int_equal(code, IDS_OK);
    assert_string_equal(out.buf, "");
    assert_string_equal(wm2, wm);
    free(wm2);
    /* touched now: read, rows compared; its time is too recent to be trusted */
    free(test_write_file(f->dir, "users.csv", "id,cn\n1,Ann\n2,Bo2\n"));
    wm2 = read_delta(f, wm, &out, &code);
    assert_contains(out.buf, "\"anchor\":\"2\"");
    assert_contains(out.buf, "Bo2");
    assert_not_contains(out.buf, "Ann");
    assert_non_null(strstr(wm2, ":0\n"));
    free(wm);
    free(wm2);
    strbuf_release(&out);
    fixture_free(f);
}

/* How many times needle occurs in hay. */
static size_t count_substr(const char *hay, const char *needle)
{
    size_t n = 0;

    for (hay = strstr(hay, needle); hay != NULL; hay = strstr(hay + 1, needle)) {
        n++;
    }
    return n;
}

/* Files of dir whose name has `part` (NULL: every file). */
static int count_files(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    if (d == NULL) {
        return 0;
    }
    while ((de = readdir(d)) != NULL) {
        n += de->d_name[0] != '.' && (part == NULL || strstr(de->d_name, part) != NULL);
    }
    closedir(d);
    return n;
}

/* A file truncated while a read has it mapped: the read ends with an I/O
 * error naming the file (not a crash), and reads it again in full later. */
static void test_read_truncated_while_read(void **state)
{
    struct strbuf text = STRBUF_INIT;
    struct connector_cursor *cur = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    struct read_item item;
    struct fixture *f;
    enum ids_err ret = IDS_OK;
    int i, n = 0;

    (void)state;
    strbuf_addstr(&text, "id,cn\n");
    for (i = 0; i < 50000; i++) {
        strbuf_addf(&text, "%d,Person number %d\n", i, i);
    }
    f = fixture_new("cn", text.buf);
    fixture_open(f);
    assert_int_equal(connector_read_full(f->c, &cur, &err), IDS_OK);
    for (;;) {
        ret = connector_cursor_next(f->c, cur, &item, &err);
        if (ret != IDS_OK) {
            break;
        }
        read_item_release(&item);
        if (++n == 10) {
            assert_int_equal(truncate(f->path, 100), 0);
        }
    }
    assert_int_equal(ret, IDS_EIO);
    assert_contains(err.msg, "users.csv: the file was truncated while it was read");
    assert_true(n < 50000);
    connector_cursor_free(f->c, cur);
    strbuf_release(&text);
    fixture_free(f);
}

/* 5,000 rows "I,Person I" into text (reset first), row I "I,Changed I"
 * when I is step, 2 * step ... upto * step. */
static void people_text(struct strbuf *text, int step, int upto)
{
    int i;

    strbuf_reset(text);
    strbuf_addstr(text, "id,cn\n");
    for (i = 0; i < 5000; i++) {
        bool changed = i > 0 && i % step == 0 && i / step <= upto;

        strbuf_addf(text, changed ? "%d,Changed %d\n" : "%d,Person %d\n", i, i);
    }
}

/* A file of 5,000 rows (text) read with a state folder (sdir). */
static struct fixture *state_fixture(struct strbuf *text, struct strbuf *sdir)
{
    struct fixture *f;

    people_text(text, 1, 0);
    f = fixture_new("cn", text->buf);
    strbuf_addf(sdir, "%s/idsync.db.state", f->dir);
    fixture_open(f);
    f->c->state_dir = sdir->buf;
    return f;
}

/* Large row tables live in a state file beside the store that the
 * watermark names with its length and hash: deltas work through it, old
 * files are removed, a missing or damaged file asks for a full import. */
static void test_delta_state_file(void **state)
{
    struct strbuf text = STRBUF_INIT;
    struct strbuf out = STRBUF_INIT;
    struct strbuf sdir = STRBUF_INIT;
    struct strbuf spath = STRBUF_INIT;
    enum ids_err code;
    struct fixture *f;
    char *wm;
    char *wm2;
    char *wm3;
    const char *at;

    (void)state;
    f = state_fixture(&text, &sdir);
    wm = read_all(f, &out);
    at = strstr(wm, "\n@csv-");
    assert_non_null(at);
    assert_null(strchr(at + 1, '\n')); /* the table is not in the watermark */
    assert_int_equal(count_files(sdir.buf, ".state"), 1);
    /* one row changed: one add, the table continues in a new file */
    strbuf_reset(&out);
    text.buf[text.len - 2] = 'X';
    free(test_write_file(f->dir, "users.csv", text.buf));
    wm2 = read_delta(f, wm, &out, &code);
    assert_non_null(wm2);
    assert_contains(out.buf, "Person 499X");
    assert_not_contains(out.buf, "Person 1\"");
    assert_int_equal(count_files(sdir.buf, ".state"), 2); /* the new one and the one before */
    strbuf_reset(&out);
    text.buf[text.len - 2] = 'Y';
    free(test_write_file(f->dir, "users.csv", text.buf));
    wm3 = read_delta(f, wm2, &out, &code);
    assert_non_null(wm3);
    assert_int_equal(count_files(sdir.buf, ".state"), 2);
    /* the file named by wm3, damaged: a full import is asked for */
    at = strstr(wm3, "\n@") + 2;
    strbuf_addf(&spath, "%s/%.*s", sdir.buf, (int)(strchr(at, ' ') - at), at);
    test_append_file(spath.buf, "x");
    strbuf_reset(&out);
    assert_null(read_delta(f, wm3, &out, &code));
    assert_int_equal(code, IDS_EFULLREQUIRED);
    assert_contains(out.buf, "not the one written");
    assert_int_equal(unlink(spath.buf), 0);
    strbuf_reset(&out);
    assert_null(read_delta(f, wm3, &out, &code));
    assert_int_equal(code, IDS_EFULLREQUIRED);
    assert_contains(out.buf, "row table file is missing");
    free(wm);
    free(wm2);
    free(wm3);
    strbuf_release(&text);
    strbuf_release(&out);
    strbuf_release(&sdir);
    strbuf_release(&spath);
    fixture_free(f);
}

/* A duplicate key between a row read now and a row of a run that would be
 * kept whole: first in the files wins either way, with the keys in order
 * (found by bisection) or not (through an index of them). */
static void delta_dup_in_runs(bool sorted)
{
    struct strbuf text = STRBUF_INIT;
    struct strbuf out = STRBUF_INIT;
    struct strbuf want = STRBUF_INIT;
    enum ids_err code;
    struct fixture *f;
    char *wm;
    char *wm2;
    int i;

    strbuf_addstr(&text, "id,cn\n");
    for (i = 0; i < 3000; i++) {
        strbuf_addf(&text, "k%05d,Person %d\n", sorted ? i : (i * 7919) % 3000, i);
    }
    f = fixture_new("cn", text.buf);
    wm = read_all(f, &out);
    assert_string_equal(out.buf + strlen(out.buf) - 1, "\n");
    /* a new row at line 3 with the key of the row at line 2002: the row at
     * line 2003 now (unchanged) is the duplicate */
    strbuf_reset(&text);
    strbuf_addstr(&text, "id,cn\n");
    for (i = 0; i < 3000; i++) {
        if (i == 1) {
            strbuf_addf(&text, "k%05d,Early twin\n", sorted ? 2000 : (2000 * 7919) % 3000);
        }
        strbuf_addf(&text, "k%05d,Person %d\n", sorted ? i : (i * 7919) % 3000, i);
    }
    free(test_write_file(f->dir, "users.csv", text.buf));
    strbuf_reset(&out);
    wm2 = read_delta(f, wm, &out, &code);
    assert_int_equal(code, IDS_OK);
    assert_contains(out.buf, "Early twin");
    strbuf_addf(&want, ":2003: column \"id\": duplicate key \"k%05d\" (first at ",
                sorted ? 2000 : (2000 * 7919) % 3000);
    assert_contains(out.buf, want.buf);
    assert_not_contains(out.buf, "delete");
    free(wm2);
    /* a new row at the end with the key of the row at line 2: it is the
     * duplicate (first at line 2) */
    strbuf_reset(&text);
    strbuf_addstr(&text, "id,cn\n");
    for (i = 0; i < 3000; i++) {
        strbuf_addf(&text, "k%05d,Person %d\n", sorted ? i : (i * 7919) % 3000, i);
    }
    strbuf_addf(&text, "k%05d,Late twin\n", 0);
    free(test_write_file(f->dir, "users.csv", text.buf));
    strbuf_reset(&out);
    wm2 = read_delta(f, wm, &out, &code);
    assert_int_equal(code, IDS_OK);
    strbuf_reset(&want);
    strbuf_addstr(&want, ":3002: column \"id\": duplicate key \"k00000\" (first at ");
    assert_contains(out.buf, want.buf);
    assert_contains(out.buf, "users.csv:2)");
    assert_not_contains(out.buf, "add ");
    assert_not_contains(out.buf, "delete");
    free(wm2);
    free(wm);
    strbuf_release(&text);
    strbuf_release(&out);
    strbuf_release(&want);
    fixture_free(f);
}

static void test_delta_dup_in_runs(void **state)
{
    (void)state;
    delta_dup_in_runs(true);
    delta_dup_in_runs(false);
}

/* Many small deltas of a big file: each writes a small runs file and keeps
 * the base; past eight runs files the least used are copied into the next
 * one, so the folder stays small and every run stays readable. */
static void test_delta_runs_files_bounded(void **state)
{
    struct strbuf text = STRBUF_INIT;
    struct strbuf out = STRBUF_INIT;
    struct strbuf sdir = STRBUF_INIT;
    struct strbuf want = STRBUF_INIT;
    enum ids_err code;
    struct fixture *f;
    char *wm;
    char *full;
    int round;

    (void)state;
    f = state_fixture(&text, &sdir);
    rows_dir = sdir.buf;
    wm = read_all(f, &out);
    for (round = 1; round <= 20; round++) {
        char *wm2;

        people_text(&text, 200, round); /* row 200 * r changed in round r, stays changed */
        free(test_write_file(f->dir, "users.csv", text.buf));
        strbuf_reset(&out);
        wm2 = read_delta(f, wm, &out, &code);
        assert_int_equal(code, IDS_OK);
        strbuf_reset(&want);
        strbuf_addf(&want, "Changed %d\"", 200 * round);
        assert_contains(out.buf, want.buf);
        assert_int_equal(count_substr(out.buf, "add "), 1);
        assert_in_range(count_files(sdir.buf, ".runs"), 1, 9);
        free(wm);
        wm = wm2;
    }
    strbuf_reset(&out);
    full = read_all(f, &out);
    assert_wm_equal(wm, full);
    free(full);
    free(wm);
    rows_dir = NULL;
    strbuf_release(&text);
    strbuf_release(&out);
    strbuf_release(&sdir);
    strbuf_release(&want);
    fixture_free(f);
}

/* A runs file damaged behind the engine's back (same size: a crash before
 * it reached the disk): the runs a delta read needs are told damaged, its
 * rows are read as they are now (nothing deleted), and the read leaves no
 * row tables, so the next one is a full read. */
static void test_delta_damaged_runs(void **state)
{
    struct strbuf text = STRBUF_INIT;
    struct strbuf out = STRBUF_INIT;
    struct strbuf sdir = STRBUF_INIT;
    struct strbuf spath = STRBUF_INIT;
    enum ids_err code;
    struct fixture *f;
    struct dirent *de;
    struct stat st;
    char *zero;
    char *wm;
    char *wm2;
    DIR *d;
    int fd;

    (void)state;
    f = state_fixture(&text, &sdir);
    wm = read_all(f, &out);
    d = opendir(sdir.buf);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        if (strstr(de->d_name, ".runs") != NULL) {
            strbuf_addf(&spath, "%s/%s", sdir.buf, de->d_name);
        }
    }
    closedir(d);
    assert_true(spath.len > 0);
    assert_int_equal(stat(spath.buf, &st), 0);
    zero = xcalloc(1, (size_t)st.st_size);
    fd = open(spath.buf, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, zero, (size_t)st.st_size), st.st_size);
    close(fd);
    free(zero);
    /* a row in the middle changed: its run is needed */
    people_text(&text, 2500, 1);
    free(test_write_file(f->dir, "users.csv", text.buf));
    strbuf_reset(&out);
    wm2 = read_delta(f, wm, &out, &code);
    assert_int_equal(code, IDS_OK);
    assert_contains(out.buf, "Changed 2500");
    assert_not_contains(out.buf, "delete");
    assert_null(strchr(wm2, '\n')); /* no tables */
    strbuf_reset(&out);
    assert_null(read_delta(f, wm2, &out, &code));
    assert_int_equal(code, IDS_EFULLREQUIRED);
    free(wm);
    free(wm2);
    strbuf_release(&text);
    strbuf_release(&out);
    strbuf_release(&sdir);
    strbuf_release(&spath);
    fixture_free(f);
}

/* CRLF line ends (RFC 4180): unchanged rows are recognised without being
 * parsed, with the same hashes the parser gives them. */
static void test_delta_crlf(void **state)
{
    struct fixture *f = fixture_new("cn", "id,cn\r\n1,Ann\r\n2,Bob\r\n3,\"Cy, Jr\"\r\n");
    struct strbuf out = STRBUF_INIT;
    enum ids_err code;
    char *wm;
    char *wm2;

    (void)state;
    wm = read_all(f, &out);
    strbuf_reset(&out);
    free(test_write_file(f->dir, "users.csv", "id,cn\r\n1,Ann\r\n2,Bo2\r\n3,\"Cy, Jr\"\r\n"));
    wm2 = read_delta(f, wm, &out, &code);
    assert_int_equal(code, IDS_OK);
    assert_contains(out.buf, "Bo2");
    assert_not_contains(out.buf, "Ann");
    assert_not_contains(out.buf, "Cy");
    assert_not_contains(out.buf, "delete");
    free(wm);
    free(wm2);
    strbuf_release(&out);
    fixture_free(f);
}

/* A full read with an unreadable row leaves no row table: the next change
 * is read in full (it stages deletions against the store). */
static void test_full_bad_row_then_full(void **state)
{
    struct fixture *f = fixture_new("cn", "id,cn\n1,Ann\n2,Bob,x\n");
    struct strbuf out = STRBUF_INIT;
    enum ids_err code;
    char *wm;
    char *wm2;

    (void)state;
    wm = read_all(f, &out);
    assert_null(strchr(wm, '\n'));
    strbuf_reset(&out);
    /* unchanged: nothing */
    wm2 = read_delta(f, wm, &out, &code);
    assert_string_equal(out.buf, "");
    free(wm2);
    free(test_write_file(f->dir, "users.csv", "id,cn\n1,Ann\n"));
    assert_null(read_delta(f, wm, &out, &code));
    assert_int_equal(code, IDS_EFULLREQUIRED);
    assert_contains(out.buf, "could not read every row");
    free(wm);
    strbuf_release(&out);
    fixture_free(f);
}

/* A duplicate key against an unchanged row is reported as in a full read;
 * a changed header yields every row again. */
static void test_delta_duplicates_and_header(void **state)
{
    struct fixture *f = fixture_new("cn", "id,cn\n1,Ann\n2,Bob\n");
    struct strbuf out = STRBUF_INIT;
    enum ids_err code;
    char *wm;
    char *wm2;

    (void)state;
    wm = read_all(f, &out);
    strbuf_reset(&out);
    free(test_write_file(f->dir, "users.csv", "id,cn\n1,Ann\n2,Bob\n1,Again\n"));
    wm2 = read_delta(f, wm, &out, &code);
    assert_contains(out.buf, "ERR ");
    assert_contains(out.buf, "duplicate key \"1\"");
    assert_not_contains(out.buf, "add ");
    assert_not_contains(out.buf, "delete");
    free(wm2);
    /* the changed row first: it wins, the unchanged row after it is the
     * duplicate (first wins, as in a full read) */
    strbuf_reset(&out);
    free(test_write_file(f->dir, "users.csv", "id,cn\n1,Changed\n1,Ann\n2,Bob\n"));
    wm2 = read_delta(f, wm, &out, &code);
    assert_contains(out.buf, "Changed");
    assert_contains(out.buf, ":3: column \"id\": duplicate key \"1\" (first at ");
    assert_not_contains(out.buf, "delete");
    free(wm2);
    /* rows in another order: nothing changed */
    strbuf_reset(&out);
    free(test_write_file(f->dir, "users.csv", "id,cn\n2,Bob\n1,Ann\n"));
    wm2 = read_delta(f, wm, &out, &code);
    assert_string_equal(out.buf, "");
    free(wm2);
    strbuf_reset(&out);
    free(test_write_file(f->dir, "users.csv", "id,cn,mail\n1,Ann,a@x\n2,Bob,b@x\n"));
    wm2 = read_delta(f, wm, &out, &code);
    assert_contains(out.buf, "\"anchor\":\"1\"");
    assert_contains(out.buf, "\"anchor\":\"2\"");
    assert_not_contains(out.buf, "delete");
    free(wm2);
    free(wm);
    strbuf_release(&out);
    fixture_free(f);
}

/* ---- delta reads over runs of rows -------------------------------------- */

struct model {
    struct strvec *pool; /* every string made (rows share them) */
    char **key, **val;
    unsigned char *crlf; /* row ends with CRLF */
    size_t n, alloc;
    uint64_t rng;
    unsigned next_key;
};

static uint64_t model_rand(struct model *m, uint64_t bound)
{
    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    return m->rng % bound;
}

static void model_insert(struct model *m, size_t at, char *key, char *val, bool crlf)
{
    if (m->n == m->alloc) {
        m->alloc = m->alloc ? 2 * m->alloc : 64;
        m->key = xreallocarray(m->key, m->alloc, sizeof(*m->key));
        m->val = xreallocarray(m->val, m->alloc, sizeof(*m->val));
        m->crlf = xreallocarray(m->crlf, m->alloc, 1);
    }
    memmove(m->key + at + 1, m->key + at, (m->n - at) * sizeof(*m->key));
    memmove(m->val + at + 1, m->val + at, (m->n - at) * sizeof(*m->val));
    memmove(m->crlf + at + 1, m->crlf + at, m->n - at);
    m->key[at] = key;
    m->val[at] = val;
    m->crlf[at] = crlf;
    m->n++;
}

static void model_remove(struct model *m, size_t at, char **key, char **val, bool *crlf)
{
    *key = m->key[at];
    *val = m->val[at];
    *crlf = m->crlf[at];
    m->n--;
    memmove(m->key + at, m->key + at + 1, (m->n - at) * sizeof(*m->key));
    memmove(m->val + at, m->val + at + 1, (m->n - at) * sizeof(*m->val));
    memmove(m->crlf + at, m->crlf + at + 1, m->n - at);
}

static char *model_value(struct model *m)
{
    struct strbuf sb = STRBUF_INIT;

    /* now and then a value of two lines (a quoted row of two lines) */
    strbuf_addf(&sb, model_rand(m, 400) == 0 ? "v%u\nline two" : "v%u",
                (unsigned)model_rand(m, 1000000));
    strvec_push_nodup(m->pool, strbuf_detach(&sb, NULL));
    return m->pool->v[m->pool->nr - 1];
}

static char *model_key(struct model *m)
{
    struct strbuf sb = STRBUF_INIT;

    strbuf_addf(&sb, "k%05u", m->next_key++);
    strvec_push_nodup(m->pool, strbuf_detach(&sb, NULL));
    return m->pool->v[m->pool->nr - 1];
}

static void model_file(const struct model *m, bool last_eol, struct strbuf *out)
{
    size_t i;

    strbuf_addstr(out, "id,cn\n");
    for (i = 0; i < m->n; i++) {
        bool quote = strchr(m->val[i], '\n') != NULL;

        strbuf_addf(out, quote ? "%s,\"%s\"" : "%s,%s", m->key[i], m->val[i]);
        if (i + 1 < m->n || last_eol) {
            strbuf_addstr(out, m->crlf[i] ? "\r\n" : "\n");
        }
    }
}

/* The value of key in m, NULL when m has no such row. */
static const char *model_get(const struct model *m, const char *key)
{
    size_t i;

    for (i = 0; i < m->n; i++) {
        if (strcmp(m->key[i], key) == 0) {
            return m->val[i];
        }
    }
    return NULL;
}

/* Anchors in a read's output: "add" rows and deletions, each sorted. */
static void read_anchors(const char *out, struct strbuf *adds, struct strbuf *dels)
{
    struct strvec lines, a, d;
    size_t i;

    strvec_init(&lines);
    strvec_init(&a);
    strvec_init(&d);
    strvec_split(&lines, out, '\n', true);
    for (i = 0; i < lines.nr; i++) {
        const char *p = strstr(lines.v[i], "\"anchor\":\"");

        if (strncmp(lines.v[i], "add ", 4) == 0 && p != NULL) {
            p += 10;
            strvec_push_nodup(&a, xmemdup(p, strcspn(p, "\"")));
        } else if (strncmp(lines.v[i], "delete user ", 12) == 0) {
            strvec_push(&d, lines.v[i] + 12);
        } else {
            fail_msg("unexpected output: %s", lines.v[i]);
        }
    }
    strvec_sort(&a);
    strvec_sort(&d);
    for (i = 0; i < a.nr; i++) {
        strbuf_addf(adds, "%s ", a.v[i]);
    }
    for (i = 0; i < d.nr; i++) {
        strbuf_addf(dels, "%s ", d.v[i]);
    }
    strvec_clear(&lines);
    strvec_clear(&a);
    strvec_clear(&d);
}

/* Delta reads of a file of 3,000 rows edited at random between reads
 * (values changed, rows inserted, deleted and moved, rows of two lines,
 * CRLF and LF line ends, a last line without one) yield exactly the rows a
 * comparison of the two files finds, and leave the rows a full read of the
 * same file leaves: runs of rows kept whole (where they were, or taken into
 * a short run before them) and runs built row by row agree. With state
 * files (files_dir), runs kept whole stay in the runs files they were in,
 * and the folder keeps a bounded number of files. */
static void delta_runs_random(bool files)
{
    struct fixture *f = fixture_new("cn", NULL);
    struct strbuf sdir = STRBUF_INIT;
    struct strvec pool;
    struct model m = {.rng = 0x9e3779b97f4a7c15ull, .pool = &pool};
    struct model old = {0};
    struct strbuf file = STRBUF_INIT;
    struct strbuf out = STRBUF_INIT;
    struct strbuf got_a = STRBUF_INIT, got_d = STRBUF_INIT;
    struct strbuf want_a = STRBUF_INIT, want_d = STRBUF_INIT;
    enum ids_err code;
    char *wm;
    size_t i, round;

    strvec_init(&pool);
    for (i = 0; i < 3000; i++) {
        model_insert(&m, m.n, model_key(&m), model_value(&m), model_rand(&m, 50) == 0);
    }
    model_file(&m, true, &file);
    free(test_write_file(f->dir, "users.csv", file.buf));
    if (files) {
        strbuf_addf(&sdir, "%s/idsync.db.state", f->dir);
        fixture_open(f);
        f->c->state_dir = sdir.buf;
        rows_dir = sdir.buf;
    }
    wm = read_all(f, &out);
    assert_non_null(strstr(wm, files ? "\n@csv-" : "\n="));
    for (round = 0; round < 30; round++) {
        size_t edits = round % 7 == 3 ? 0 : 1 + (size_t)model_rand(&m, 6);
        bool last_eol = round % 5 != 4;
        char *full;
        char *wm2;

        /* the rows as read last (values only: keys and values are kept by m) */
        free(old.key);
        free(old.val);
        old.n = m.n;
        old.key = (char **)(void *)xmemdup(m.key, m.n * sizeof(*m.key));
        old.val = (char **)(void *)xmemdup(m.val, m.n * sizeof(*m.val));
        for (i = 0; i < edits; i++) {
            size_t at = (size_t)model_rand(&m, m.n);
            char *k;
            char *v;
            bool crlf;

            switch (model_rand(&m, 4)) {
            case 0: /* changed value (the old string stays in old) */
                m.val[at] = model_value(&m);
                break;
            case 1: /* new row */
                model_insert(&m, at, model_key(&m), model_value(&m), false);
                break;
            case 2: /* row removed */
                model_remove(&m, at, &k, &v, &crlf);
                break;
            default: /* row moved */
                model_remove(&m, at, &k, &v, &crlf);
                model_insert(&m, (size_t)model_rand(&m, m.n + 1), k, v, crlf);
                break;
            }
        }
        if (round % 10 == 5) {
            /* the first row: the first run is built, the runs after it kept */
            m.val[0] = model_value(&m);
        }
        strbuf_reset(&file);
        model_file(&m, last_eol, &file);
        free(test_write_file(f->dir, "users.csv", file.buf));
        strbuf_reset(&out);
        wm2 = read_delta(f, wm, &out, &code);
        assert_int_equal(code, IDS_OK);
        strbuf_reset(&got_a);
        strbuf_reset(&got_d);
        read_anchors(out.buf, &got_a, &got_d);
        strbuf_reset(&want_a);
        strbuf_reset(&want_d);
        {
            struct strvec a, d;

            strvec_init(&a);
            strvec_init(&d);
            for (i = 0; i < m.n; i++) {
                const char *was = model_get(&old, m.key[i]);

                if (was == NULL || strcmp(was, m.val[i]) != 0) {
                    strvec_push(&a, m.key[i]);
                }
            }
            for (i = 0; i < old.n; i++) {
                if (model_get(&m, old.key[i]) == NULL) {
                    strvec_push(&d, old.key[i]);
                }
            }
            strvec_sort(&a);
            strvec_sort(&d);
            for (i = 0; i < a.nr; i++) {
                strbuf_addf(&want_a, "%s ", a.v[i]);
            }
            for (i = 0; i < d.nr; i++) {
                strbuf_addf(&want_d, "%s ", d.v[i]);
            }
            strvec_clear(&a);
            strvec_clear(&d);
        }
        assert_string_equal(got_a.buf, want_a.buf);
        assert_string_equal(got_d.buf, want_d.buf);
        /* the tables a full read of this file leaves */
        strbuf_reset(&out);
        full = read_all(f, &out);
        assert_wm_equal(wm2, full);
        free(full);
        free(wm);
        wm = wm2;
        if (files) {
            /* two indexes (this read's and the one before), a runs file
             * each for most reads, at most eight runs files per index */
            assert_in_range(count_files(sdir.buf, NULL), 2, 2 + 2 * 9);
        }
    }
    free(wm);
    strvec_clear(&pool);
    free(m.key);
    free(m.val);
    free(m.crlf);
    free(old.key);
    free(old.val);
    strbuf_release(&file);
    strbuf_release(&out);
    strbuf_release(&got_a);
    strbuf_release(&got_d);
    strbuf_release(&want_a);
    strbuf_release(&want_d);
    strbuf_release(&sdir);
    rows_dir = NULL;
    fixture_free(f);
}

static void test_delta_runs_random(void **state)
{
    (void)state;
    delta_runs_random(false);
}

static void test_delta_runs_random_files(void **state)
{
    (void)state;
    delta_runs_random(true);
}

/* ---- export ----------------------------------------------------------- */

struct result_line {
    uint64_t tag;
    enum ids_err code;
    char anchor[64];
    char dn[128];
    char msg[IDS_ERROR_MSG_MAX];
};

/* Collect every result (after export_end) into rs, sorted by tag. */
static size_t export_run(struct fixture *f, struct change **chs, size_t n, bool end,
                         struct result_line *rs)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct export_result res;
    size_t i, got = 0;
    enum ids_err ret;

    if (f->c == NULL) {
        fixture_open(f);
    }
    assert_int_equal(connector_export_begin(f->c, &err), IDS_OK);
    for (i = 0; i < n; i++) {
        ret = connector_submit(f->c, chs[i], i + 1, &err);
        if (ret != IDS_OK) {
            fail_msg("submit %zu: %s", i + 1, err.msg);
        }
    }
    if (n > 0) {
        assert_int_equal(connector_poll(f->c, false, &res, &err), IDS_EAGAIN);
    }
    if (!end) {
        return 0;
    }
    assert_int_equal(connector_export_end(f->c, &err), IDS_OK);
    for (;;) {
        ret = connector_poll(f->c, true, &res, &err);
        if (ret == IDS_DONE) {
            break;
        }
        assert_int_equal(ret, IDS_OK);
        assert_true(res.tag >= 1 && res.tag <= n);
        rs[res.tag - 1].tag = res.tag;
        rs[res.tag - 1].code = res.code;
        snprintf(rs[res.tag - 1].anchor, sizeof(rs[0].anchor), "%s", res.anchor ? res.anchor : "");
        snprintf(rs[res.tag - 1].dn, sizeof(rs[0].dn), "%s", res.dn ? res.dn : "");
        snprintf(rs[res.tag - 1].msg, sizeof(rs[0].msg), "%s", res.err.msg);
        export_result_release(&res);
        got++;
    }
    return got;
}

static struct change *add_change(const char *id, const char *cn, const char *mail1,
                                 const char *mail2)
{
    struct change *ch = change_new(CHANGE_ADD, "user", NULL, id);
    struct mod *m;

    m = change_add_mod(ch, MOD_ADD, "id", 0);
    attr_add_value(&m->attr, id, strlen(id));
    m = change_add_mod(ch, MOD_ADD, "cn", 0);
    attr_add_value(&m->attr, cn, strlen(cn));
    if (mail1 != NULL) {
        m = change_add_mod(ch, MOD_ADD, "mail", 0);
        attr_add_value(&m->attr, mail1, strlen(mail1));
        if (mail2 != NULL) {
            attr_add_value(&m->attr, mail2, strlen(mail2));
        }
    }
    return ch;
}

static void free_changes(struct change **chs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        change_free(chs[i]);
    }
}

static void test_export_new_file(void **state)
{
    struct fixture *f = fixture_new("cn mail", NULL);
    struct change *chs[3];
    struct result_line rs[3];
    char *txt;

    (void)state;
    memset(rs, 0, sizeof(rs));
    chs[0] = add_change("1", "Ann", "ann@x.org", "a;b@x.org");
    chs[1] = add_change("2", "Smith, \"Bob\"", NULL, NULL);
    chs[2] = add_change("3", "C:\\dir", NULL, NULL);
    assert_int_equal(export_run(f, chs, 3, true, rs), 3);
    assert_int_equal(rs[0].code, IDS_OK);
    assert_string_equal(rs[0].anchor, "1");
    assert_string_equal(rs[1].anchor, "2");
    txt = test_read_file(f->path);
    assert_string_equal(txt, "id,cn,mail\r\n"
                             "1,Ann,ann@x.org;a\\;b@x.org\r\n"
                             "2,\"Smith, \"\"Bob\"\"\",\r\n"
                             "3,C:\\dir,\r\n");
    free(txt);
    free_changes(chs, 3);
    fixture_free(f);
}

static void test_export_modify_rename_delete(void **state)
{
    struct fixture *f = fixture_new("cn mail member", "id,cn,mail,member,other\n"
                                                      "1,Ann,a@x.org;a2@x.org,,keep me\n"
                                                      "2,Bob,b@x.org,,\n"
                                                      "bad,row\n"
                                                      "3,Cid,,,\"quoted, kept\"\n");
    struct change *chs[6];
    struct result_line rs[6];
    struct mod *m;
    char *txt;
    struct strbuf out = STRBUF_INIT;
    char *wm;

    (void)state;
    memset(rs, 0, sizeof(rs));
    chs[0] = change_new(CHANGE_MODIFY, "user", "1", "1");
    m = change_add_mod(chs[0], MOD_DELETE, "mail", 0);
    attr_add_value(&m->attr, "a2@x.org", 8);
    m = change_add_mod(chs[0], MOD_ADD, "member", ATTR_REF);
    attr_add_value(&m->attr, "2", 1);
    attr_add_value(&m->attr, "3", 1);
    chs[1] = change_new(CHANGE_DELETE, "user", "2", "2");
    chs[2] = change_new(CHANGE_MODIFY, "user", "3", "3");
    chs[2]->new_dn = xstrdup("30"); /* no dn_column: the key changes */
    m = change_add_mod(chs[2], MOD_REPLACE, "cn", 0);
    attr_add_value(&m->attr, "Cyd", 3);
    chs[3] = change_new(CHANGE_DELETE, "user", "99", "99"); /* absent: success */
    chs[4] = change_new(CHANGE_MODIFY, "user", "98", "98"); /* absent: not found */
    m = change_add_mod(chs[4], MOD_REPLACE, "cn", 0);
    attr_add_value(&m->attr, "x", 1);
    chs[5] = add_change("4", "Dee", NULL, NULL);
    assert_int_equal(export_run(f, chs, 6, true, rs), 6);
    assert_int_equal(rs[0].code, IDS_OK);
    assert_int_equal(rs[1].code, IDS_OK);
    assert_int_equal(rs[2].code, IDS_OK);
    assert_string_equal(rs[2].anchor, "30");
    assert_string_equal(rs[2].dn, "30");
    assert_int_equal(rs[3].code, IDS_OK);
    assert_int_equal(rs[4].code, IDS_ENOTFOUND);
    assert_contains(rs[4].msg, "no row with key \"98\"");
    assert_int_equal(rs[5].code, IDS_OK);
    txt = test_read_file(f->path);
    assert_string_equal(txt, "id,cn,mail,member,other\n"
                             "1,Ann,a@x.org,2;3,keep me\n"
                             "bad,row\n"
                             "30,Cyd,,,\"quoted, kept\"\n"
                             "4,Dee,,,\n");
    free(txt);
    /* and it reads back */
    wm = read_all(f, &out);
    assert_contains(out.buf, "\"anchor\":\"30\"");
    assert_contains(out.buf, "\"member\":[\"2\",\"3\"]");
    free(wm);
    strbuf_release(&out);
    free_changes(chs, 6);
    fixture_free(f);
}

static void test_export_atomic_without_end(void **state)
{
    const char *orig = "id,cn\n1,Ann\n";
    struct fixture *f = fixture_new("cn", orig);
    struct change *chs[2];
    char *txt;
    struct result_line rs[2];

    (void)state;
    chs[0] = add_change("2", "Bob", NULL, NULL);
    chs[1] = change_new(CHANGE_DELETE, "user", "1", "1");
    export_run(f, chs, 2, false, rs);
    /* export_end never called: the original is intact, no temp file left */
    connector_close(f->c);
    f->c = NULL;
    txt = test_read_file(f->path);
    assert_string_equal(txt, orig);
    free(txt);
    assert_string_equal(dir_listing(f->dir), "users.csv ");
    free_changes(chs, 2);
    fixture_free(f);
}

static void test_export_idempotent_readd(void **state)
{
    struct fixture *f = fixture_new("cn mail", NULL);
    struct change *chs[2];
    struct result_line rs[2];
    char *before;
    char *after;

    (void)state;
    memset(rs, 0, sizeof(rs));
    chs[0] = add_change("1", "Ann", "a@x.org", "b@x.org");
    chs[1] = add_change("2", "Bob", NULL, NULL);
    assert_int_equal(export_run(f, chs, 2, true, rs), 2);
    before = test_read_file(f->path);
    /* the engine reruns the same adds after a crash: success, no duplicate */
    memset(rs, 0, sizeof(rs));
    assert_int_equal(export_run(f, chs, 2, true, rs), 2);
    assert_int_equal(rs[0].code, IDS_OK);
    assert_string_equal(rs[0].anchor, "1");
    assert_int_equal(rs[1].code, IDS_OK);
    after = test_read_file(f->path);
    assert_string_equal(before, after);
    free(after);
    /* the same key with other values is a conflict */
    change_free(chs[1]);
    chs[1] = add_change("2", "Robert", NULL, NULL);
    memset(rs, 0, sizeof(rs));
    assert_int_equal(export_run(f, chs + 1, 1, true, rs), 1);
    assert_int_equal(rs[0].code, IDS_EEXIST);
    assert_contains(rs[0].msg, ":3: key \"2\" already exists with other values");
    after = test_read_file(f->path);
    assert_string_equal(before, after);
    free(before);
    free(after);
    free_changes(chs, 2);
    fixture_free(f);
}

static void test_export_rejects(void **state)
{
    struct fixture *f = fixture_new("cn", NULL);
    struct ids_error err = IDS_ERROR_INIT;
    struct change *ch = add_change("1", "Ann", "a@x.org", NULL);
    struct change *nokey = change_new(CHANGE_ADD, "user", NULL, NULL);
    struct mod *m = change_add_mod(nokey, MOD_ADD, "cn", 0);

    (void)state;
    attr_add_value(&m->attr, "x", 1);
    fixture_open(f);
    assert_int_equal(connector_export_begin(f->c, &err), IDS_OK);
    /* mail is not a configured attribute */
    assert_int_equal(connector_submit(f->c, ch, 1, &err), IDS_EREJECTED);
    assert_contains(err.msg, "attribute \"mail\" is not a column");
    assert_int_equal(connector_submit(f->c, nokey, 2, &err), IDS_EREJECTED);
    assert_contains(err.msg, "add without a value for the key column \"id\"");
    assert_int_equal(connector_export_end(f->c, &err), IDS_OK);
    {
        struct export_result res;

        assert_int_equal(connector_poll(f->c, true, &res, &err), IDS_DONE);
    }
    change_free(ch);
    change_free(nokey);
    fixture_free(f);
}

/* The side file of queued modifies cannot be written (a full disk; here a
 * file size limit): the submit that hits it fails, later ones fail with
 * the same error, every queued change to the file is answered as a
 * retryable failure, and the file is left as it was. */
static void test_export_side_file_full(void **state)
{
    const char *content = "id,cn\n1,Ann\n2,Bob\n";
    struct fixture *f = fixture_new("cn", content);
    struct ids_error err = IDS_ERROR_INIT;
    struct rlimit old;
    struct rlimit lim;
    struct strbuf big = STRBUF_INIT;
    struct change *ch;
    struct mod *m;
    struct export_result res;
    uint64_t tag;
    uint64_t failed_at = 0;
    size_t nres = 0;
    char *txt;

    (void)state;
    fixture_open(f);
    while (big.len < 80 * 1024) {
        strbuf_addstr(&big, "0123456789abcdef");
    }
    ch = change_new(CHANGE_MODIFY, "user", "1", "1");
    m = change_add_mod(ch, MOD_REPLACE, "cn", 0);
    attr_add_value(&m->attr, big.buf, big.len);
    assert_int_equal(connector_export_begin(f->c, &err), IDS_OK);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 128 * 1024;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    for (tag = 1; tag <= 8 && failed_at == 0; tag++) {
        if (connector_submit(f->c, ch, tag, &err) != IDS_OK) {
            failed_at = tag;
        }
    }
    assert_true(failed_at > 1); /* the first changes were buffered */
    assert_int_equal(err.code, IDS_EIO);
    assert_contains(err.msg, "csv side file");
    err = (struct ids_error)IDS_ERROR_INIT;
    assert_int_equal(connector_submit(f->c, ch, 99, &err), IDS_EIO); /* sticky */
    assert_int_equal(connector_export_end(f->c, &err), IDS_OK);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    while (connector_poll(f->c, true, &res, &err) == IDS_OK) {
        assert_true(res.tag < failed_at);
        assert_int_equal(res.code, IDS_EIO);
        assert_true(res.retryable);
        assert_contains(res.err.msg, "csv side file");
        export_result_release(&res);
        nres++;
    }
    assert_int_equal(nres, failed_at - 1);
    txt = test_read_file(f->path);
    assert_string_equal(txt, content);
    free(txt);
    change_free(ch);
    strbuf_release(&big);
    fixture_free(f);
}

/* What an administrator gets for a file in another encoding or with
 * another delimiter than configured: what is wrong and how to fix it. */
#define LIT(s) s, sizeof(s) - 1 /* a literal with NUL bytes, and its length */

static void test_read_wrong_encoding_or_delimiter(void **state)
{
    static const struct {
        const char *content;
        size_t len;
        const char *want;
    } cases[] = {
        {LIT("\xff\xfei\0d\0,\0c\0n\0\r\0\n\0"),
         "users.csv: the file is UTF-16 (it starts with a UTF-16 byte order mark); idsync reads "
         "CSV files as UTF-8 unless told otherwise: set `encoding: UTF-16` on the connector, or "
         "export the file as "
         "UTF-8 (Excel: \"CSV UTF-8\"; PowerShell: Export-Csv -Encoding UTF8)"},
        {LIT("i\0d\0,\0c\0n\0\n\0"),
         "users.csv:1: header column 1 contains NUL bytes: the file looks like UTF-16"},
        {LIT("id;cn\n1;Ann\n"),
         "users.csv:1: the key column \"id\" is not in the header, which is one column: the file "
         "looks delimited by \";\" (set `delimiter: \";\"` on the connector)"},
        {LIT("id\tcn\n1\tAnn\n"),
         "the file looks delimited by tab (set `delimiter: tab` on the connector)"},
        {LIT("name,cn\n1,Ann\n"), "users.csv:1: the key column \"id\" is not in the header"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fixture *f = fixture_new("cn", NULL);
        struct connector_cursor *cur = NULL;
        struct ids_error err = IDS_ERROR_INIT;
        struct read_item item;
        FILE *fp = fopen(f->path, "wb");

        assert_non_null(fp);
        assert_int_equal(fwrite(cases[i].content, 1, cases[i].len, fp), cases[i].len);
        fclose(fp);
        fixture_open(f);
        assert_int_equal(connector_read_full(f->c, &cur, &err), IDS_OK);
        assert_int_not_equal(connector_cursor_next(f->c, cur, &item, &err), IDS_OK);
        assert_contains(err.msg, cases[i].want);
        if (i == 4) {
            assert_not_contains(err.msg, "delimited");
        }
        connector_cursor_free(f->c, cur);
        fixture_free(f);
    }
}

/* Files in another encoding (`encoding`): converted as they are read, a
 * delta compares the converted rows, a byte not of the encoding fails the
 * read naming its line, an unknown name is a configuration error, and the
 * connector is not written to. */
static void test_read_encoding(void **state)
{
    struct fixture *f = fixture_new("cn", NULL);
    struct fixture *g = fixture_new("cn", NULL);
    struct connector *c = NULL;
    struct connector_cursor *cur = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    struct read_item item;
    struct strbuf out = STRBUF_INIT;
    enum ids_err code;
    char *wm;
    char *wm2;
    FILE *fp;

    (void)state;
    fp = fopen(f->path, "wb");
    assert_non_null(fp);
    fputs("id,cn\r\n1,M\xfcller\r\n2,\x80 and \x9e\r\n3,Cy\r\n", fp); /* ü, euro, ž */
    fclose(fp);
    set_opt(&f->cfg.opts, csv_connector_ops.options, "encoding", "windows-1252");
    wm = read_all(f, &out);
    assert_contains(out.buf, "\"cn\":[\"M\xc3\xbcller\"]");
    assert_contains(out.buf, "\"cn\":[\"\xe2\x82\xac and \xc5\xbe\"]");
    /* a delta: only the changed row */
    fp = fopen(f->path, "wb");
    fputs("id,cn\r\n1,M\xfcller\r\n2,\x80 and \x9e\r\n3,C\xe9line\r\n", fp);
    fclose(fp);
    strbuf_reset(&out);
    wm2 = read_delta(f, wm, &out, &code);
    assert_non_null(wm2);
    assert_string_equal(out.buf,
                        "add {\"type\":\"user\",\"anchor\":\"3\",\"dn\":\"3\",\"attributes\":{"
                        "\"cn\":[\"C\xc3\xa9line\"],\"id\":[\"3\"]}}\n");
    /* 0x81 is no Windows-1252 character: the read fails, naming the line */
    fp = fopen(f->path, "wb");
    fputs("id,cn\r\n1,ok\r\n2,b\x81\x64\r\n", fp);
    fclose(fp);
    assert_int_equal(connector_read_full(f->c, &cur, &err), IDS_OK);
    assert_int_equal(connector_cursor_next(f->c, cur, &item, &err), IDS_EPROTO);
    assert_contains(err.msg, "users.csv:3: byte 0x81 is not windows-1252 text");
    connector_cursor_free(f->c, cur);
    /* not written to */
    assert_int_equal(connector_export_begin(f->c, &err), IDS_ECONFIG);
    assert_contains(err.msg, "encoding windows-1252 is for reading: idsync writes CSV files only "
                             "in UTF-8");

    /* UTF-16 with its byte order mark, and a character cut at the end */
    fp = fopen(g->path, "wb");
    fwrite("\xff\xfei\0d\0,\0c\0n\0\r\0\n\0"
           "1\0,\0\xfc\0\r\0\n\0",
           1, 26, fp);
    fclose(fp);
    set_opt(&g->cfg.opts, csv_connector_ops.options, "encoding", "UTF-16");
    strbuf_reset(&out);
    free(read_all(g, &out));
    assert_string_equal(out.buf, "{\"type\":\"user\",\"anchor\":\"1\",\"dn\":\"1\",\"attributes\":{"
                                 "\"cn\":[\"\xc3\xbc\"],\"id\":[\"1\"]}}\n");
    fp = fopen(g->path, "ab");
    fwrite("2", 1, 1, fp);
    fclose(fp);
    assert_int_equal(connector_read_full(g->c, &cur, &err), IDS_OK);
    assert_int_equal(connector_cursor_next(g->c, cur, &item, &err), IDS_EPROTO);
    assert_contains(err.msg, "users.csv:3: the file ends in the middle of a UTF-16 character");
    connector_cursor_free(g->c, cur);

    /* a name iconv does not know */
    free_vals(&g->cfg.opts);
    set_opt(&g->cfg.opts, csv_connector_ops.options, "path", g->path);
    set_opt(&g->cfg.opts, csv_connector_ops.options, "key", "id");
    set_opt(&g->cfg.opts, csv_connector_ops.options, "encoding", "klingon");
    assert_int_equal(connector_create(&g->cfg, &c, &err), IDS_ECONFIG);
    assert_contains(err.msg, "encoding: \"klingon\" is not an encoding iconv knows");
    free(wm);
    free(wm2);
    strbuf_release(&out);
    fixture_free(f);
    fixture_free(g);
}

/* ---- a file that another process is still writing --------------------- */

static void set_settle(struct fixture *f, long seconds)
{
    size_t i;

    for (i = 0; i < f->cfg.opts.nr; i++) {
        if (strcmp(f->cfg.opts.v[i].opt->key, "settle") == 0) {
            f->cfg.opts.v[i].num = seconds;
        }
    }
}

static size_t count_lines(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++) {
        n += *s == '\n';
    }
    return n;
}

/* A child that appends `rows` rows "kN,vN" from `first` on, `per` at a
 * time, `gap_ms` apart; returns its pid. */
static pid_t slow_writer(const char *path, int first, int rows, int per, long gap_ms)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(path, O_WRONLY | O_APPEND);
        int i;

        for (i = 0; fd >= 0 && i < rows; i++) {
            char row[64];
            int n = snprintf(row, sizeof(row), "k%d,v%d\n", first + i, first + i);

            if (write(fd, row, (size_t)n) != n) {
                _exit(1);
            }
            if ((i + 1) % per == 0) {
                struct timespec ts = {gap_ms / 1000, (gap_ms % 1000) * 1000000L};

                nanosleep(&ts, NULL);
            }
        }
        _exit(fd >= 0 ? 0 : 1);
    }
    return pid;
}

/* The import of a file being written waits for the writer to finish:
 * without `settle` it reads the rows written so far, and the rest would
 * be staged as deletes. */
static void test_settle_waits_for_writer(void **state)
{
    struct fixture *f = fixture_new("cn", "id,cn\nk0,v0\n");
    struct strbuf out = STRBUF_INIT;
    char *wm;
    pid_t pid;
    int status;

    (void)state;
    set_settle(f, 2);
    fixture_open(f);
    /* 60 more rows over 0.6 s, while the read starts */
    pid = slow_writer(f->path, 1, 60, 5, 50);
    wm = read_all(f, &out);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(count_lines(out.buf), 61);
    assert_contains(out.buf, "\"k60\"");
    free(wm);
    strbuf_release(&out);
    fixture_free(f);
}

/* A file that keeps changing: file_settle gives up after ten times the
 * settle time, naming the file. */
static void test_settle_gives_up(void **state)
{
    char *dir = test_tmpdir();
    char *path = test_write_file(dir, "hr.csv", "id,cn\n");
    struct ids_error err = IDS_ERROR_INIT;
    pid_t pid;
    int status;

    (void)state;
    pid = slow_writer(path, 0, 400, 1, 20); /* 8 s of changes */
    assert_int_equal(file_settle("hr", path, 150, NULL, NULL, &err), IDS_EIO);
    assert_non_null(strstr(err.msg, "hr.csv: still being written: it kept changing for 1.5 s"));
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    test_rmtree(dir);
    free(path);
    free(dir);
}

/* Settled at once: a missing file, an old file, the file this connector
 * wrote itself; a fresh file written by someone else waits (here: stops,
 * as a SIGTERM would make it). */
static void test_settle_own_old_missing(void **state)
{
    char *dir = test_tmpdir();
    char *path = test_write_file(dir, "hr.csv", "id,cn\n");
    char *gone = test_write_file(dir, "gone.csv", "");
    volatile sig_atomic_t stop = 1;
    struct ids_error err = IDS_ERROR_INIT;
    struct file_stamp own = {0};
    struct timespec old[2];
    struct stat st;

    (void)state;
    assert_int_equal(file_settle("hr", path, 3600000, NULL, &stop, &err), IDS_EINTR);
    assert_non_null(strstr(err.msg, "hr.csv: stopped while waiting for the file to settle"));
    assert_int_equal(stat(path, &st), 0);
    file_stamp_of(&st, &own);
    assert_int_equal(file_settle("hr", path, 3600000, &own, &stop, &err), IDS_OK);
    /* written again after this connector's write: not its own any more */
    free(test_write_file(dir, "hr.csv", "id,cn\nk1,v1\n"));
    assert_int_equal(file_settle("hr", path, 3600000, &own, &stop, &err), IDS_EINTR);
    clock_gettime(CLOCK_REALTIME, &old[0]);
    old[0].tv_sec -= 7200;
    old[1] = old[0];
    assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);
    assert_int_equal(file_settle("hr", path, 3600000, NULL, &stop, &err), IDS_OK);
    unlink(gone);
    assert_int_equal(file_settle("hr", gone, 3600000, NULL, &stop, &err), IDS_OK);
    test_rmtree(dir);
    free(gone);
    free(path);
    free(dir);
}

/* A file written to during the read: the read fails at its end instead
 * of ending with the rows of a file cut short. */
static void test_read_changed_while_read(void **state)
{
    struct fixture *f = fixture_new("cn", "id,cn\nk0,v0\nk1,v1\n");
    struct connector_cursor *cur = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    struct read_item item;
    FILE *fp;
    enum ids_err ret;

    (void)state;
    fixture_open(f);
    assert_int_equal(connector_read_full(f->c, &cur, &err), IDS_OK);
    assert_int_equal(connector_cursor_next(f->c, cur, &item, &err), IDS_OK);
    read_item_release(&item);
    fp = fopen(f->path, "a");
    assert_non_null(fp);
    fputs("k2,v2\n", fp);
    fclose(fp);
    while ((ret = connector_cursor_next(f->c, cur, &item, &err)) == IDS_OK) {
        read_item_release(&item);
    }
    assert_int_equal(ret, IDS_EIO);
    assert_non_null(strstr(err.msg, "users.csv: the file changed while it was read (18 bytes "
                                    "when opened, 24 now): it is still being written."));
    connector_cursor_free(f->c, cur);
    fixture_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_basic),
        cmocka_unit_test(test_read_multiline_bom_escapes),
        cmocka_unit_test(test_read_reference_flag),
        cmocka_unit_test(test_read_bad_rows),
        cmocka_unit_test(test_read_duplicate_after_many_rows),
        cmocka_unit_test(test_u64set),
        cmocka_unit_test(test_split_values),
        cmocka_unit_test(test_read_huge_cell),
        cmocka_unit_test(test_parse_record_cap),
        cmocka_unit_test(test_read_dn_column_and_missing_key_column),
        cmocka_unit_test(test_missing_file_reads_empty),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_two_object_types),
        cmocka_unit_test(test_delta_watermark),
        cmocka_unit_test(test_delta_bad_row_keeps_deletions),
        cmocka_unit_test(test_delta_unchanged_by_stat),
        cmocka_unit_test(test_delta_state_file),
        cmocka_unit_test(test_delta_crlf),
        cmocka_unit_test(test_full_bad_row_then_full),
        cmocka_unit_test(test_delta_duplicates_and_header),
        cmocka_unit_test(test_read_truncated_while_read),
        cmocka_unit_test(test_delta_damaged_runs),
        cmocka_unit_test(test_delta_runs_files_bounded),
        cmocka_unit_test(test_delta_dup_in_runs),
        cmocka_unit_test(test_delta_runs_random),
        cmocka_unit_test(test_delta_runs_random_files),
        cmocka_unit_test(test_export_new_file),
        cmocka_unit_test(test_export_modify_rename_delete),
        cmocka_unit_test(test_export_atomic_without_end),
        cmocka_unit_test(test_export_idempotent_readd),
        cmocka_unit_test(test_export_rejects),
        cmocka_unit_test(test_export_side_file_full),
        cmocka_unit_test(test_read_wrong_encoding_or_delimiter),
        cmocka_unit_test(test_read_encoding),
        cmocka_unit_test(test_settle_waits_for_writer),
        cmocka_unit_test(test_settle_gives_up),
        cmocka_unit_test(test_settle_own_old_missing),
        cmocka_unit_test(test_read_changed_while_read),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
