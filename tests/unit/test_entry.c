/* Unit tests: entry.c (objects, changes, encoding, normalisation). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "entry.h"
#include "util/mem.h"

static struct entry *sample(void)
{
    struct entry *e = entry_new("user", "a-1", "cn=Ann,ou=People,dc=x");

    entry_add_str(e, "mail", "ann@x.example");
    entry_add_str(e, "Member", "cn=b");
    entry_add_str(e, "member", "cn=a");
    entry_add_str(e, "member", "cn=a");
    entry_add_value(e, "photo", "\0\1\2", 3);
    return e;
}

static void test_canonical_and_hash(void **state)
{
    struct entry *a = sample();
    struct entry *b = entry_new("user", "a-1", "cn=Ann,ou=People,dc=x");
    struct attr *m;

    (void)state;
    entry_add_value(b, "photo", "\0\1\2", 3);
    entry_add_str(b, "member", "cn=a");
    entry_add_str(b, "MEMBER", "cn=b");
    entry_add_str(b, "mail", "ann@x.example");
    assert_int_equal(entry_hash(a), entry_hash(b));
    m = entry_attr(a, "MEMBER");
    assert_non_null(m);
    assert_int_equal(m->nvals, 2); /* duplicate dropped, case-merged */
    entry_add_str(b, "sn", "x");
    assert_int_not_equal(entry_hash(a), entry_hash(b));
    entry_remove_attr(b, "sn");
    entry_set_dn(b, "cn=Other");
    assert_int_not_equal(entry_hash(a), entry_hash(b));
    entry_free(a);
    entry_free(b);
}

static void test_encode_roundtrip(void **state)
{
    struct entry *a = sample();
    struct entry *d = NULL;
    struct strbuf sb = STRBUF_INIT;
    struct ids_error err = IDS_ERROR_INIT;
    size_t cut;

    (void)state;
    entry_attr(a, "member")->flags = ATTR_REF;
    entry_attr(a, "mail")->source = 2;
    entry_encode(a, &sb);
    assert_int_equal(entry_decode(sb.buf, sb.len, &d, &err), IDS_OK);
    assert_string_equal(d->dn, a->dn);
    assert_string_equal(d->anchor, "a-1");
    assert_int_equal(entry_attr(d, "member")->flags, ATTR_REF);
    assert_int_equal(entry_attr(d, "mail")->source, 2);
    assert_int_equal(entry_attr(d, "photo")->vals[0].len, 3);
    assert_int_equal(entry_hash(a), entry_hash(d));
    entry_free(d);
    /* every truncation is a clean error */
    for (cut = 0; cut < sb.len; cut++) {
        d = NULL;
        assert_int_equal(entry_decode(sb.buf, cut, &d, &err), IDS_EINPUT);
        assert_null(d);
    }
    strbuf_release(&sb);
    entry_free(a);
}

static void test_change_apply_and_codec(void **state)
{
    struct entry *e = sample();
    struct change *c = change_new(CHANGE_MODIFY, "user", "a-1", e->dn);
    struct change *d = NULL;
    struct strbuf sb = STRBUF_INIT;
    struct mod *m;

    (void)state;
    m = change_add_mod(c, MOD_ADD, "member", ATTR_REF);
    attr_add_value(&m->attr, "cn=c", 4);
    m = change_add_mod(c, MOD_DELETE, "member", ATTR_REF);
    attr_add_value(&m->attr, "cn=a", 4);
    m = change_add_mod(c, MOD_REPLACE, "mail", 0);
    attr_add_value(&m->attr, "new@x", 5);
    change_add_mod(c, MOD_DELETE, "photo", 0);
    c->new_dn = xstrdup("cn=Ann2,ou=People,dc=x");
    assert_int_equal(change_size(c), 5);
    change_encode(c, &sb);
    assert_int_equal(change_decode(sb.buf, sb.len, &d, NULL), IDS_OK);
    change_apply(d, e);
    assert_string_equal(e->dn, "cn=Ann2,ou=People,dc=x");
    assert_string_equal(entry_first(e, "mail"), "new@x");
    assert_null(entry_attr(e, "photo"));
    assert_true(attr_has_value(entry_attr(e, "member"), "cn=c", 4));
    assert_false(attr_has_value(entry_attr(e, "member"), "cn=a", 4));
    assert_true(attr_has_value(entry_attr(e, "member"), "cn=b", 4));
    strbuf_release(&sb);
    change_to_json(d, &sb);
    assert_non_null(strstr(sb.buf, "\"op\":\"modify\""));
    assert_non_null(strstr(sb.buf, "\"reference\":true"));
    strbuf_release(&sb);
    change_free(c);
    change_free(d);
    entry_free(e);
}

static void test_json_binary(void **state)
{
    struct entry *e = sample();
    struct strbuf sb = STRBUF_INIT;

    (void)state;
    entry_to_json(e, &sb);
    assert_non_null(strstr(sb.buf, "{\"base64\":\"AAEC\"}"));
    assert_non_null(strstr(sb.buf, "\"mail\":[\"ann@x.example\"]"));
    strbuf_release(&sb);
    entry_free(e);
}

static void test_normalize(void **state)
{
    struct strbuf sb = STRBUF_INIT;

    (void)state;
    value_normalize(&sb, "  Ann.Lee@X.Example \t", 21);
    assert_string_equal(sb.buf, "ann.lee@x.example");
    strbuf_reset(&sb);
    value_normalize(&sb, "\xc3\x89LODIE \xd0\x90\xd0\xbd\xd0\xbd\xc5\x81", 16);
    assert_string_equal(sb.buf, "\xc3\xa9lodie \xd0\xb0\xd0\xbd\xd0\xbd\xc5\x82");
    strbuf_release(&sb);
}

/* entry_take_attr: the values move (the entry equals what entry_set_attr
 * makes), the source keeps only its name; no values removes. */
static void test_take_attr(void **state)
{
    struct entry *a = entry_new("user", "1", "cn=a");
    struct entry *b = entry_new("user", "1", "cn=a");
    struct attr src;

    (void)state;
    entry_add_str(a, "mail", "old@x.example");
    entry_add_str(b, "mail", "old@x.example");
    memset(&src, 0, sizeof(src));
    src.name = xstrdup("member");
    src.flags = ATTR_REF;
    attr_add_value(&src, "u1", 2);
    attr_add_value(&src, "u2", 2);
    entry_set_attr(a, "member", &src);
    entry_take_attr(b, "member", &src);
    assert_int_equal(src.nvals, 0);
    assert_null(src.vals);
    assert_string_equal(src.name, "member");
    assert_true(entry_hash(a) == entry_hash(b));
    assert_int_equal(entry_attr(b, "member")->nvals, 2);
    assert_true(entry_attr(b, "member")->flags & ATTR_REF);
    entry_take_attr(b, "mail", &src); /* no values: removed */
    assert_null(entry_attr(b, "mail"));
    attr_release(&src);
    entry_free(a);
    entry_free(b);
}

/* ---- large multi-valued attributes: the sorted paths ---------------------- */

static void add_m(struct attr *a, unsigned i)
{
    char buf[16];

    snprintf(buf, sizeof(buf), "m%05u", i);
    attr_add_value(a, buf, strlen(buf));
}

/* What the value-by-value loops give: v[0..n) after adding (in order,
 * each once, none already there) or removing the values of m. */
static size_t model_add(char **v, size_t n, const struct attr *m)
{
    size_t i, k;

    for (k = 0; k < m->nvals; k++) {
        for (i = 0; i < n && strcmp(v[i], m->vals[k].data) != 0; i++) {
        }
        if (i == n) {
            v[n++] = m->vals[k].data;
        }
    }
    return n;
}

static size_t model_del(char **v, size_t n, const struct attr *m)
{
    size_t i, j = 0, k;

    for (i = 0; i < n; i++) {
        for (k = 0; k < m->nvals && strcmp(v[i], m->vals[k].data) != 0; k++) {
        }
        if (k == m->nvals) {
            v[j++] = v[i];
        }
    }
    return j;
}

static void assert_values(const struct attr *a, char **v, size_t n)
{
    size_t i;

    assert_int_equal(a->nvals, n);
    for (i = 0; i < n; i++) {
        assert_string_equal(a->vals[i].data, v[i]);
    }
}

static void test_large_attributes(void **state)
{
    struct entry *e = entry_new("group", "g", "cn=g");
    struct change *c = change_new(CHANGE_MODIFY, "group", "g", "cn=g");
    struct mod *add;
    struct mod *del;
    struct attr *a;
    struct attr other;
    struct attr held;
    struct attr want;
    char **model = xcalloc(8000, sizeof(*model));
    struct entry *copy;
    size_t n = 0;
    unsigned i;

    (void)state;
    /* 3,000 members out of order, one twice */
    a = entry_attr_add(e, "member");
    for (i = 0; i < 3000; i++) {
        add_m(a, (i * 7) % 3000);
    }
    add_m(a, 21);
    copy = entry_dup(e);
    for (i = 0; i < a->nvals; i++) {
        model[n++] = copy->attrs[0].vals[i].data;
    }
    /* add 3,000, half of them there already, every tenth given twice */
    add = change_add_mod(c, MOD_ADD, "member", 0);
    for (i = 4499; i >= 1500; i--) {
        add_m(&add->attr, i);
        if (i % 10 == 0) {
            add_m(&add->attr, i);
        }
    }
    n = model_add(model, n, &add->attr);
    change_apply(c, e);
    a = entry_attr(e, "member");
    assert_values(a, model, n);
    assert_int_equal(a->nvals, 4501); /* 4,500 members and the old duplicate */

    /* remove every third of 0..5999 (most there, some not) */
    change_free(c);
    c = change_new(CHANGE_MODIFY, "group", "g", "cn=g");
    del = change_add_mod(c, MOD_DELETE, "member", 0);
    for (i = 0; i < 6000; i += 3) {
        add_m(&del->attr, i);
    }
    {
        /* the model's strings must outlive the values change_apply frees */
        struct entry *before = entry_dup(e);

        n = 0;
        for (i = 0; i < before->attrs[0].nvals; i++) {
            model[n++] = before->attrs[0].vals[i].data;
        }
        n = model_del(model, n, &del->attr);
        change_apply(c, e);
        assert_values(entry_attr(e, "member"), model, n);
        assert_int_equal(n, 3000);
        entry_free(before);
    }

    /* the same set in another order with duplicates; then one value off */
    a = entry_attr(e, "member");
    memset(&other, 0, sizeof(other));
    for (i = a->nvals; i-- > 0;) {
        attr_add_value(&other, a->vals[i].data, a->vals[i].len);
        if (i % 100 == 0) {
            attr_add_value(&other, a->vals[i].data, a->vals[i].len);
        }
    }
    assert_true(attr_values_equal(a, &other));
    assert_true(attr_values_equal(&other, a));
    free(other.vals[17].data);
    other.vals[17].data = xstrdup("m99999");
    other.vals[17].len = 6;
    assert_false(attr_values_equal(a, &other));
    assert_false(attr_values_equal(&other, a));
    attr_release(&other);

    /* held: the wanted values a holds, in the wanted order, repeats kept */
    memset(&want, 0, sizeof(want));
    memset(&held, 0, sizeof(held));
    for (i = 6000; i-- > 0;) {
        add_m(&want, i);
    }
    add_m(&want, 1);
    add_m(&want, 3);
    attr_values_held(&want, a, &held);
    n = 0;
    for (i = 0; i < want.nvals; i++) {
        if (attr_has_value(a, want.vals[i].data, want.vals[i].len)) {
            model[n++] = want.vals[i].data;
        }
    }
    assert_values(&held, model, n);
    assert_string_equal(held.vals[held.nvals - 1].data, "m00001"); /* 3 was removed */
    attr_release(&held);
    attr_values_held(&want, NULL, &held);
    assert_int_equal(held.nvals, 0);
    attr_release(&want);

    free(model);
    change_free(c);
    entry_free(copy);
    entry_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_and_hash), cmocka_unit_test(test_take_attr),
        cmocka_unit_test(test_encode_roundtrip),   cmocka_unit_test(test_change_apply_and_codec),
        cmocka_unit_test(test_json_binary),        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_large_attributes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
