/* test_ldap.c - pure unit tests of the LDAP connector's string handling:
 * RFC 4515 filter escaping, RFC 4514 DN escaping/parsing/normalising with
 * hostile values, UUID formatting, AD range options, watermarks. No server
 * (the connector against real servers: tests/integration/test_ldap*.py). */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "util/ldapesc.h"
#include "util/strbuf.h"
#include "util/banned.h"

static char *esc_filter(const char *v, size_t len)
{
    struct strbuf sb = STRBUF_INIT;

    ldapesc_filter_value(&sb, v, len);
    return strbuf_detach(&sb, NULL);
}

static char *esc_dn(const char *v, size_t len)
{
    struct strbuf sb = STRBUF_INIT;

    ldapesc_dn_value(&sb, v, len);
    return strbuf_detach(&sb, NULL);
}

static void test_filter_escape(void **state)
{
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {"plain", 5, "plain"},
        {"*", 1, "\\2a"},
        {"a(b)c", 5, "a\\28b\\29c"},
        {"\\", 1, "\\5c"},
        {"a\0b", 3, "a\\00b"},
        {"*)(uid=*))(|(uid=*", 18, "\\2a\\29\\28uid=\\2a\\29\\29\\28|\\28uid=\\2a"},
        {"Jos\xc3\xa9 \xe5\xbc\xa0", 9, "Jos\xc3\xa9 \xe5\xbc\xa0"}, /* UTF-8 kept */
        {"\xff\xfe", 2, "\\ff\\fe"},                                 /* invalid UTF-8 */
        {"\xc3", 1, "\\c3"},                                         /* truncated */
        {"\xed\xa0\x80", 3, "\\ed\\a0\\80"},                         /* surrogate */
        {"\xc0\xaf", 2, "\\c0\\af"},                                 /* overlong */
        {"tab\there\n", 9, "tab\\09here\\0a"},
        {"", 0, ""},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = esc_filter(cases[i].in, cases[i].len);

        assert_string_equal(got, cases[i].out);
        free(got);
    }
}

static void test_filter_escape_guid(void **state)
{
    /* a binary objectGUID is searchable only fully escaped */
    static const unsigned char guid[16] = {0x01, 0x28, 0x2a, 0x29, 0x5c, 0x00, 0x80, 0xff,
                                           0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48};
    char *got = esc_filter((const char *)guid, sizeof(guid));

    (void)state;
    assert_string_equal(got, "\\01\\28\\2a\\29\\5c\\00\\80\\ffABCDEFGH");
    free(got);
}

static void test_dn_escape(void **state)
{
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {"Smith, John", 11, "Smith\\, John"},
        {"#hash", 5, "\\#hash"},
        {" lead", 5, "\\ lead"},
        {"trail ", 6, "trail\\ "},
        {" ", 1, "\\ "},
        {"a#b", 3, "a#b"},
        {",+\"\\<>;=", 8, "\\,\\+\\\"\\\\\\<\\>\\;\\="},
        {"nul\0x", 5, "nul\\00x"},
        {"M\xc3\xbcller", 7, "M\xc3\xbcller"},
        {"\xff", 1, "\\ff"},
        {"*()", 3, "*()"},
        {"", 0, ""},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = esc_dn(cases[i].in, cases[i].len);

        assert_string_equal(got, cases[i].out);
        free(got);
    }
}

/* Every hostile value survives escape -> parse unchanged. */
static void test_dn_roundtrip_hostile(void **state)
{
    static const struct {
        const char *v;
        size_t len;
    } hostile[] = {
        {"*", 1},
        {"(", 1},
        {")", 1},
        {"\\", 1},
        {"a\0b", 3},
        {"#lead", 5},
        {" lead", 5},
        {"trail ", 6},
        {",+\"<>;=", 7},
        {"  both  ", 8},
        {"x\\2cy", 5},
        {"caf\xc3\xa9", 5},
        {"\xe6\x97\xa5", 3},
        {"\xff\x00\x01", 3},
        {"#", 1},
        {" ", 1},
        {"a,b=c+d", 7},
        {"\"quoted\"", 8},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        struct strbuf dn = STRBUF_INIT;
        struct ldapdn parsed = LDAPDN_INIT;
        struct ids_error err = IDS_ERROR_INIT;

        strbuf_addstr(&dn, "cn=");
        ldapesc_dn_value(&dn, hostile[i].v, hostile[i].len);
        strbuf_addstr(&dn, ",ou=People,dc=example,dc=org");
        assert_int_equal(ldapdn_parse(dn.buf, dn.len, &parsed, &err), IDS_OK);
        assert_int_equal(parsed.nrdns, 4);
        assert_int_equal(parsed.rdns[0].navas, 1);
        assert_string_equal(parsed.rdns[0].avas[0].type, "cn");
        assert_int_equal(parsed.rdns[0].avas[0].vlen, hostile[i].len);
        assert_memory_equal(parsed.rdns[0].avas[0].value, hostile[i].v, hostile[i].len);
        assert_string_equal(parsed.rdns[1].avas[0].value, "People");
        ldapdn_release(&parsed);
        strbuf_release(&dn);
    }
}

static void test_dn_parse_forms(void **state)
{
    struct ldapdn dn = LDAPDN_INIT;
    struct ids_error err = IDS_ERROR_INIT;
    const char *s = " CN = Smith\\, J ; OU=a+ uid = b ,DC=\"x,y\",dc=#04024869";

    (void)state;
    assert_int_equal(ldapdn_parse(s, strlen(s), &dn, &err), IDS_OK);
    assert_int_equal(dn.nrdns, 4);
    assert_string_equal(dn.rdns[0].avas[0].type, "CN");
    assert_string_equal(dn.rdns[0].avas[0].value, "Smith, J");
    assert_int_equal(dn.rdns[1].navas, 2);
    assert_string_equal(dn.rdns[1].avas[1].type, "uid");
    assert_string_equal(dn.rdns[1].avas[1].value, "b");
    assert_string_equal(dn.rdns[2].avas[0].value, "x,y");
    assert_true(dn.rdns[3].avas[0].hex);
    assert_int_equal(dn.rdns[3].avas[0].vlen, 4);
    assert_memory_equal(dn.rdns[3].avas[0].value, "\x04\x02Hi", 4);
    ldapdn_release(&dn);

    assert_int_equal(ldapdn_parse("", 0, &dn, &err), IDS_OK);
    assert_int_equal(dn.nrdns, 0);
    ldapdn_release(&dn);
}

static void test_dn_parse_errors(void **state)
{
    static const char *bad[] = {
        "cn",        "=x",    "cn=a,",  "cn=a,,dc=b", "cn=a\\",           "cn=a\\zz",
        "cn=\"open", "cn=#0", "cn=#zz", "cn=a<b",     "cn=a b c,dc=x\"y", ",cn=a",
        "cn=a\"b",   "cn=a+", "cn=a;",  "cn=\"x\"y",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ldapdn dn = LDAPDN_INIT;
        struct ids_error err = IDS_ERROR_INIT;

        assert_int_equal(ldapdn_parse(bad[i], strlen(bad[i]), &dn, &err), IDS_EINPUT);
        assert_non_null(strstr(err.msg, "malformed DN"));
        assert_int_equal(dn.nrdns, 0);
    }
}

static void test_dn_normalize(void **state)
{
    struct strbuf a = STRBUF_INIT;
    struct ids_error err = IDS_ERROR_INIT;

    (void)state;
    assert_int_equal(ldapdn_normalize("CN=John Smith , OU=People;DC=Example,DC=ORG", &a, &err),
                     IDS_OK);
    assert_string_equal(a.buf, "cn=john smith,ou=people,dc=example,dc=org");
    strbuf_reset(&a);
    assert_int_equal(ldapdn_normalize("uid=b+CN=a,dc=x", &a, &err), IDS_OK);
    assert_string_equal(a.buf, "cn=a+uid=b,dc=x");
    strbuf_reset(&a);
    assert_int_equal(ldapdn_normalize("cn=\\53mith\\2c J,dc=x", &a, &err), IDS_OK);
    assert_string_equal(a.buf, "cn=smith\\, j,dc=x");
    strbuf_reset(&a);
    /* plain DNs (no parse needed) and DNs that only look plain */
    assert_int_equal(ldapdn_normalize("uid=E0000001,OU=People,dc=Example,dc=com", &a, &err),
                     IDS_OK);
    assert_string_equal(a.buf, "uid=e0000001,ou=people,dc=example,dc=com");
    strbuf_reset(&a);
    assert_int_equal(ldapdn_normalize("mail=J.Doe@Example.COM,o=x_y-z", &a, &err), IDS_OK);
    assert_string_equal(a.buf, "mail=j.doe@example.com,o=x_y-z");
    strbuf_reset(&a);
    assert_int_equal(ldapdn_normalize("", &a, &err), IDS_OK);
    assert_string_equal(a.buf, "");
    assert_int_equal(ldapdn_normalize("cn=a,", &a, &err), IDS_EINPUT);
    assert_int_equal(ldapdn_normalize("cn=a,,dc=x", &a, &err), IDS_EINPUT);
    assert_int_equal(ldapdn_normalize("=a,dc=x", &a, &err), IDS_EINPUT);
    assert_int_equal(ldapdn_normalize("cn,dc=x", &a, &err), IDS_EINPUT);
    strbuf_reset(&a);
    assert_int_equal(ldapdn_normalize("cn=,dc=X", &a, &err), IDS_OK);
    assert_string_equal(a.buf, "cn=,dc=x");
    strbuf_reset(&a);
    assert_int_equal(ldapdn_normalize("cn=a=b,dc=x", &a, &err), IDS_OK);
    assert_string_equal(a.buf, "cn=a\\=b,dc=x");
    strbuf_release(&a);

    assert_true(ldapdn_equal("cn=A\\,B,dc=X", "CN=a\\2cb, DC=x"));
    assert_true(ldapdn_equal("cn=x+sn=y,dc=z", "sn=Y+cn=X,dc=z"));
    assert_false(ldapdn_equal("cn=a,dc=x", "cn=a,dc=y"));
    assert_false(ldapdn_equal("cn=a,dc=x", "cn=a,,"));
}

static void test_dn_parent_rdn_depth(void **state)
{
    struct strbuf sb = STRBUF_INIT;
    struct ids_error err = IDS_ERROR_INIT;

    (void)state;
    assert_int_equal(ldapdn_parent("cn=a\\,b,ou=People, dc=x", &sb, &err), IDS_OK);
    assert_string_equal(sb.buf, "ou=People, dc=x");
    strbuf_reset(&sb);
    assert_int_equal(ldapdn_parent("dc=x", &sb, &err), IDS_OK);
    assert_string_equal(sb.buf, "");
    assert_int_equal(ldapdn_parent("", &sb, &err), IDS_ENOTFOUND);
    assert_int_equal(ldapdn_parent("cn=a,", &sb, &err), IDS_EINPUT);
    strbuf_reset(&sb);
    assert_int_equal(ldapdn_rdn("cn=a\\,b ,ou=People,dc=x", &sb, &err), IDS_OK);
    assert_string_equal(sb.buf, "cn=a\\,b");
    strbuf_release(&sb);

    assert_int_equal(ldapdn_depth_under("dc=x", "DC=X"), 0);
    assert_int_equal(ldapdn_depth_under("ou=p,dc=x", "dc=x"), 1);
    assert_int_equal(ldapdn_depth_under("cn=a,ou=p,dc=x", "dc=x"), 2);
    assert_int_equal(ldapdn_depth_under("cn=a,ou=p,dc=y", "dc=x"), -1);
    assert_int_equal(ldapdn_depth_under("dc=x", "ou=p,dc=x"), -1);
    assert_int_equal(ldapdn_depth_under("cn=a,dc=xdc=x", "dc=x"), -1);
    assert_int_equal(ldapdn_depth_under("cn=(bad", "dc=x"), -1);
    assert_int_equal(ldapdn_depth_under("cn=a,dc=x", ""), 2);
}

static void test_uuid(void **state)
{
    static const unsigned char b[16] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
                                        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
    struct strbuf sb = STRBUF_INIT;

    (void)state;
    assert_int_equal(ldapesc_uuid_to_string(&sb, b, 16), IDS_OK);
    assert_string_equal(sb.buf, "12345678-9abc-def0-0123-456789abcdef");
    assert_int_equal(ldapesc_uuid_to_string(&sb, b, 15), IDS_EINPUT);
    strbuf_release(&sb);
}

static void test_range(void **state)
{
    struct strbuf base = STRBUF_INIT;
    long lo = -5;
    long hi = -5;

    (void)state;
    assert_true(ldap_range_parse("member;range=0-1499", &base, &lo, &hi));
    assert_string_equal(base.buf, "member");
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 1499);
    strbuf_reset(&base);
    assert_true(ldap_range_parse("member;Range=1500-*", &base, &lo, &hi));
    assert_string_equal(base.buf, "member");
    assert_int_equal(lo, 1500);
    assert_int_equal(hi, -1);
    strbuf_reset(&base);
    assert_true(ldap_range_parse("member;binary;range=1-1", &base, &lo, &hi));
    assert_string_equal(base.buf, "member;binary");
    assert_int_equal(lo, 1);
    assert_int_equal(hi, 1);
    strbuf_reset(&base);
    assert_false(ldap_range_parse("member", &base, &lo, &hi));
    assert_false(ldap_range_parse("member;binary", &base, &lo, &hi));
    assert_false(ldap_range_parse("member;range=", &base, &lo, &hi));
    assert_false(ldap_range_parse("member;range=5-1", &base, &lo, &hi));
    assert_false(ldap_range_parse("member;range=a-*", &base, &lo, &hi));
    assert_false(ldap_range_parse("member;range=1-2;range=3-4", &base, &lo, &hi));
    assert_false(ldap_range_parse("member;range=-1", &base, &lo, &hi));
    assert_false(ldap_range_parse("member;range=99999999999999999999-*", &base, &lo, &hi));
    assert_string_equal(base.buf, "");
    strbuf_release(&base);
}

static void test_watermark(void **state)
{
    struct strbuf wm = STRBUF_INIT;
    struct strbuf kind = STRBUF_INIT;
    struct strbuf data = STRBUF_INIT;
    struct ids_error err = IDS_ERROR_INIT;

    (void)state;
    ldap_watermark_format(&wm, "dirsync", "\x00\x01\xffMSDS", 7);
    assert_string_equal(wm.buf, "dirsync:0001ff4d534453");
    assert_int_equal(ldap_watermark_parse(wm.buf, &kind, &data, &err), IDS_OK);
    assert_string_equal(kind.buf, "dirsync");
    assert_int_equal(data.len, 7);
    assert_memory_equal(data.buf, "\x00\x01\xffMSDS", 7);

    strbuf_reset(&wm);
    ldap_watermark_format(&wm, "usn", "12345", 5);
    assert_string_equal(wm.buf, "usn:12345");
    assert_int_equal(ldap_watermark_parse(wm.buf, &kind, &data, &err), IDS_OK);
    assert_string_equal(kind.buf, "usn");
    assert_string_equal(data.buf, "12345");

    strbuf_reset(&wm);
    ldap_watermark_format(&wm, "syncrepl", "rid=000,csn=2024", 16);
    assert_int_equal(ldap_watermark_parse(wm.buf, &kind, &data, &err), IDS_OK);
    assert_string_equal(data.buf, "rid=000,csn=2024");

    assert_int_equal(ldap_watermark_parse("nonsense", &kind, &data, &err), IDS_EINPUT);
    assert_int_equal(ldap_watermark_parse("usn:12a", &kind, &data, &err), IDS_EINPUT);
    assert_int_equal(ldap_watermark_parse("usn:", &kind, &data, &err), IDS_EINPUT);
    assert_int_equal(ldap_watermark_parse("dirsync:abc", &kind, &data, &err), IDS_EINPUT);
    assert_int_equal(ldap_watermark_parse("dirsync:zz", &kind, &data, &err), IDS_EINPUT);
    assert_int_equal(ldap_watermark_parse("csv:0011", &kind, &data, &err), IDS_EINPUT);
    assert_non_null(strstr(err.msg, "unknown watermark kind"));
    strbuf_release(&wm);
    strbuf_release(&kind);
    strbuf_release(&data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filter_escape),  cmocka_unit_test(test_filter_escape_guid),
        cmocka_unit_test(test_dn_escape),      cmocka_unit_test(test_dn_roundtrip_hostile),
        cmocka_unit_test(test_dn_parse_forms), cmocka_unit_test(test_dn_parse_errors),
        cmocka_unit_test(test_dn_normalize),   cmocka_unit_test(test_dn_parent_rdn_depth),
        cmocka_unit_test(test_uuid),           cmocka_unit_test(test_range),
        cmocka_unit_test(test_watermark),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
