/* Unit tests: expr/ (Lua expressions: helpers, results, names, sandbox). */
#include "testutil.h"

#include <stdlib.h>
#include <ctype.h>
#include <string.h>

#include "entry.h"
#include "expr/expr.h"
#include "util/strvec.h"

struct fixture {
    struct expr_env *env;
    struct entry *obj;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    static const unsigned char guid[16] = {0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66,
                                           0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    /* S-1-5-21-1-2-3-500 */
    static const unsigned char sid[] = {1, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0,    0, 1, 0,
                                        0, 0, 2, 0, 0, 0, 3, 0, 0,  0, 0xf4, 1, 0, 0};
    struct expr_limits limits = {200000, 16u << 20};

    assert_int_equal(expr_env_new(&limits, &f->env, NULL), IDS_OK);
    f->obj = entry_new("user", "anchor-1", "CN=Smith\\, John,OU=Staff,DC=corp,DC=example");
    entry_add_str(f->obj, "givenName", "John");
    entry_add_str(f->obj, "sn", "Smith");
    entry_add_str(f->obj, "mail", "  John.Smith@Corp.Example ");
    entry_add_str(f->obj, "proxyAddresses", "SMTP:john@corp.example");
    entry_add_str(f->obj, "proxyAddresses", "smtp:js@corp.example");
    entry_add_value(f->obj, "objectGUID", guid, sizeof(guid));
    entry_add_value(f->obj, "objectSid", sid, sizeof(sid));
    entry_add_str(f->obj, "msDS-ConsistencyGuid", "cg");
    entry_add_str(f->obj, "city", "Zürich");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    entry_free(f->obj);
    expr_env_free(f->env);
    free(f);
    return 0;
}

/* Evaluate src; the values joined with "|" (or "ERR: message"). Caller frees. */
static char *eval_str(struct fixture *f, const char *src, unsigned *flags)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct attr res;
    struct expr *e = NULL;
    struct strbuf sb = STRBUF_INIT;
    size_t i;

    memset(&res, 0, sizeof(res));
    if (expr_compile(f->env, src, "test.rule", &e, &err) != IDS_OK) {
        strbuf_addf(&sb, "COMPILE: %s", err.msg);
        return strbuf_detach(&sb, NULL);
    }
    if (expr_eval(e, f->obj, &res, &err) != IDS_OK) {
        assert_int_equal(err.code, IDS_EEXPR);
        strbuf_addf(&sb, "ERR: %s", err.msg);
    } else {
        for (i = 0; i < res.nvals; i++) {
            if (i > 0) {
                strbuf_addch(&sb, '|');
            }
            strbuf_add(&sb, res.vals[i].data, res.vals[i].len);
        }
        if (res.nvals == 0) {
            strbuf_addstr(&sb, "<nil>");
        }
    }
    if (flags != NULL) {
        *flags = res.flags;
    }
    attr_release(&res);
    expr_free(e);
    return strbuf_detach(&sb, NULL);
}

#define assert_eval(f, src, expected)                                                              \
    do {                                                                                           \
        char *got_ = eval_str((f), (src), NULL);                                                   \
        if (strcmp(got_, (expected)) != 0) {                                                       \
            print_error("%s\n  expected: %s\n  got:      %s\n", (src), (expected), got_);          \
            free(got_);                                                                            \
            fail();                                                                                \
        }                                                                                          \
        free(got_);                                                                                \
    } while (0)

#define assert_eval_error(f, src, fragment)                                                        \
    do {                                                                                           \
        char *got_ = eval_str((f), (src), NULL);                                                   \
        if (strstr(got_, (fragment)) == NULL || strncmp(got_, "ERR: ", 5) != 0) {                  \
            print_error("%s\n  expected an error with: %s\n  got: %s\n", (src), (fragment), got_); \
            free(got_);                                                                            \
            fail();                                                                                \
        }                                                                                          \
        free(got_);                                                                                \
    } while (0)

static void test_attributes(void **state)
{
    struct fixture *f = *state;

    assert_eval(f, "givenName", "John");
    assert_eval(f, "GIVENNAME", "John"); /* case-insensitive */
    assert_eval(f, "missing", "<nil>");
    assert_eval(f, "proxyAddresses", "SMTP:john@corp.example|smtp:js@corp.example");
    assert_eval(f, "type(proxyAddresses)", "table");
    assert_eval(f, "type(givenName)", "string");
    assert_eval(f, "#proxyAddresses", "2");
    assert_eval(f, "displayName or (givenName .. \" \" .. sn)", "John Smith");
    assert_eval(f, "_dn", "CN=Smith\\, John,OU=Staff,DC=corp,DC=example");
    assert_eval(f, "_anchor", "anchor-1");
    assert_eval(f, "_type", "user");
    assert_eval(f, "attr(\"msDS-ConsistencyGuid\")", "cg");
    assert_eval(f, "msDS-ConsistencyGuid", "cg"); /* bare hyphenated names are attributes */
    assert_eval(f, "attr('proxyAddresses')", "SMTP:john@corp.example");
    assert_eval(f, "#values('givenName')", "1");
    assert_eval(f, "#values('nothing')", "0");
    assert_eval(f, "attr('nothing')", "<nil>");
}

static void test_helpers(void **state)
{
    struct fixture *f = *state;

    assert_eval(f, "base64(sn)", "U21pdGg=");
    assert_eval(f, "unbase64('U21pdGg=')", "Smith");
    assert_eval_error(f, "unbase64('***')", "unbase64: not valid base64");
    assert_eval(f, "guid(objectGUID)", "00112233-4455-6677-8899-aabbccddeeff");
    assert_eval(f, "base64(guid(guid(objectGUID))) == base64(objectGUID)", "true");
    assert_eval(f, "base64(objectGUID)", "MyIRAFVEd2aImaq7zN3u/w==");
    assert_eval_error(f, "guid('nope')", "guid: expected 16 bytes or a GUID string");
    assert_eval(f, "sid(objectSid)", "S-1-5-21-1-2-3-500");
    assert_eval(f, "sid('S-1-5-32-544')", "S-1-5-32-544");
    assert_eval(f, "lower(sn)", "smith");
    assert_eval(f, "upper(city)", "ZÜRICH");
    assert_eval(f, "lower('ÀÉÎ ŁĄ ΣΩ ДЖ')", "àéî łą σω дж");
    assert_eval(f, "lower(proxyAddresses)", "smtp:john@corp.example|smtp:js@corp.example");
    assert_eval(f, "trim(mail)", "John.Smith@Corp.Example");
    assert_eval(f, "lower(trim(mail))", "john.smith@corp.example");
    assert_eval(f, "split('a,b,,c', ',')", "a|b||c");
    assert_eval(f, "#split('a--b', '--')", "2");
    assert_eval(f, "join(proxyAddresses, ';')", "SMTP:john@corp.example;smtp:js@corp.example");
    assert_eval(f, "join(sn, ';')", "Smith");
    assert_eval(f, "join({'a', 1, 'b'})", "a1b");
    assert_eval(f, "first(proxyAddresses)", "SMTP:john@corp.example");
    assert_eval(f, "first(sn)", "Smith");
    assert_eval(f, "coalesce(nothing, '', {}, sn, givenName)", "Smith");
    assert_eval(f, "coalesce(nothing, '')", "<nil>");
    assert_eval(f, "replace('a.b.c', '.', '::')", "a::b::c");
    assert_eval(f, "replace(proxyAddresses, 'corp.example', 'x.test')",
                "SMTP:john@x.test|smtp:js@x.test");
    assert_eval(f, "left(givenName, 2)", "Jo");
    assert_eval(f, "left(givenName, 10)", "John");
    assert_eval(f, "left(givenName, 0)", "");
    assert_eval(f, "right(givenName, 2)", "hn");
    assert_eval(f, "left(city, 2)", "Zü"); /* characters, not bytes */
    assert_eval(f, "right(city, 5)", "ürich");
    assert_eval(f, "contains(proxyAddresses, 'smtp:js@corp.example')", "true");
    assert_eval(f, "contains(proxyAddresses, 'smtp:nobody')", "false");
    assert_eval(f, "contains(mail, 'Smith@')", "true");
    assert_eval(f, "contains(nothing, 'x')", "false");
    assert_eval(f, "count(proxyAddresses)", "2");
    assert_eval(f, "count(sn)", "1");
    assert_eval(f, "count(nothing)", "0");
    assert_eval(f, "dn_rdn(_dn)", "Smith, John");
    assert_eval(f, "dn_rdn('cn=a\\\\2Cb+uid=x,dc=x')", "a,b");
    assert_eval(f, "dn_parent(_dn)", "OU=Staff,DC=corp,DC=example");
    assert_eval(f, "dn_parent('dc=com')", "");
    assert_eval_error(f, "dn_rdn('no equals sign')", "dn_rdn: not a DN");
    assert_eval(f, "dn_escape('Smith, John')", "Smith\\, John");
    assert_eval(f, "dn_escape(' #a+b=c;<d>\"e\\\\ ')", "\\ #a\\+b=c\\;\\<d\\>\\\"e\\\\\\ ");
    assert_eval(f, "dn_escape('#x')", "\\#x");
    assert_eval(f, "'cn=' .. dn_escape(sn) .. ',' .. dn_parent(_dn)",
                "cn=Smith,OU=Staff,DC=corp,DC=example");
    /* helpers given nil return nil */
    assert_eval(f, "base64(nothing)", "<nil>");
    assert_eval(f, "lower(nothing)", "<nil>");
    assert_eval(f, "split(nothing, ',')", "<nil>");
    assert_eval(f, "join(nothing, ',')", "<nil>");
    assert_eval(f, "dn_rdn(nothing)", "<nil>");
    assert_eval(f, "first(nothing)", "<nil>");
    /* safe standard library parts */
    assert_eval(f, "string.format('%s-%03d', sn, 7)", "Smith-007");
    assert_eval(f, "sn:upper()", "SMITH");
    assert_eval(f, "math.max(3, 9)", "9");
    assert_eval(f, "table.concat({'a', 'b'}, '+')", "a+b");
    assert_eval(f, "utf8.len(city)", "6");
}

/* Times: parse_time, format_time, filetime, from_filetime. The expected
 * numbers are Python's datetime (UTC). */
static void test_time_helpers(void **state)
{
    struct fixture *f = *state;

    assert_eval(f, "parse_time('2026-12-31')", "1798675200");
    assert_eval(f, "parse_time('2026-12-31T23:59:59Z')", "1798761599");
    assert_eval(f, "parse_time('2026-12-31 08:00:00+02:00')", "1798696800");
    assert_eval(f, "parse_time('2026-12-31T23:59:59.250Z')", "1798761599");
    assert_eval(f, "parse_time('20261231235959Z')", "1798761599");
    assert_eval(f, "parse_time('202612312359Z')", "1798761540");
    assert_eval(f, "parse_time('2026123123Z')", "1798758000");
    assert_eval(f, "parse_time('20261231235959.0Z')", "1798761599");
    assert_eval(f, "parse_time('20261231235959+0100')", "1798757999");
    assert_eval(f, "parse_time('31.12.2026', 'DD.MM.YYYY')", "1798675200");
    assert_eval(f, "parse_time('3/7/2026', 'M/D/YYYY')", "1772841600");
    assert_eval(f, "parse_time('12/31/2026 23:59', 'MM/DD/YYYY hh:mm')", "1798761540");
    assert_eval(f, "parse_time('2024-02-29')", "1709164800");
    assert_eval(f, "parse_time('2000-02-29')", "951782400");
    assert_eval(f, "parse_time('1969-12-31T23:59:59Z')", "-1");
    assert_eval(f, "parse_time('1601-01-01')", "-11644473600");
    assert_eval(f, "parse_time({'2026-12-31', '2000-02-29'})", "1798675200|951782400");
    assert_eval(f, "parse_time(nothing)", "<nil>");
    assert_eval(f, "parse_time('')", "<nil>");
    assert_eval_error(f, "parse_time('2023-02-29')",
                      "parse_time: \"2023-02-29\" is not an ISO 8601");
    assert_eval_error(f, "parse_time('1900-02-29')", "is not an ISO 8601");
    assert_eval_error(f, "parse_time('2026-12-31T24:00')", "is not an ISO 8601");
    assert_eval_error(f, "parse_time('20261231')", "is not an ISO 8601");
    assert_eval_error(f, "parse_time('2026-12-31x')", "is not an ISO 8601");
    assert_eval_error(f, "parse_time('31.02.2026', 'DD.MM.YYYY')",
                      "parse_time: \"31.02.2026\" is not a time of layout \"DD.MM.YYYY\"");
    assert_eval_error(f, "parse_time('31.12.26', 'DD.MM.YYYY')", "is not a time of layout");

    assert_eval(f, "format_time(1798761599, 'YYYYMMDDhhmmssZ')", "20261231235959Z");
    assert_eval(f, "format_time('1798761599', 'YYYY-MM-DDThh:mm:ssZ')", "2026-12-31T23:59:59Z");
    assert_eval(f, "format_time(-1, 'YYYY-MM-DD hh:mm:ss')", "1969-12-31 23:59:59");
    assert_eval(f, "format_time(0, 'D.M.YYYY h')", "1.1.1970 0");
    /* an Excel serial date, as the documentation shows */
    assert_eval(f, "format_time((tonumber('46022') - 25569) * 86400, 'YYYY-MM-DD')", "2025-12-31");
    assert_eval(f, "format_time(nothing, 'YYYY')", "<nil>");
    assert_eval_error(f, "format_time('soon', 'YYYY')", "format_time: \"soon\" is not a time");
    /* the two directions agree, across four centuries and leap days */
    assert_eval(f,
                "local ok = true\n"
                "for t = -12219292800, 32503680000, 8640061 do\n"
                "  local s = format_time(t, 'YYYY-MM-DDThh:mm:ssZ')\n"
                "  ok = ok and parse_time(s) == t and parse_time(format_time(t, 'YYYYMMDDhhmmss') "
                ".. 'Z') == t\n"
                "end\n"
                "return ok",
                "true");

    assert_eval(f, "filetime(parse_time('2027-01-01'))", "134432352000000000");
    /* a time kept in the metaverse is text: arithmetic still works on it */
    assert_eval(f, "filetime('1798675200' + 86400)", "134432352000000000");
    assert_eval(f, "from_filetime('134432352000000000')", "1798761600");
    assert_eval(f, "from_filetime('0')", "<nil>");
    assert_eval(f, "from_filetime('9223372036854775807')", "<nil>");
    assert_eval(f, "filetime(nothing)", "<nil>");
    assert_eval_error(f, "from_filetime('never')", "from_filetime: \"never\" is not a FILETIME");
    assert_eval_error(f, "filetime(-11644473601)", "is not a time");
}

/* random_password: length, the four kinds of character, never twice the
 * same, never a constant (it would be one password for everyone). */
static void test_random_password(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct expr *e = NULL;
    char *prev = NULL;
    int round;

    assert_int_equal(expr_compile(f->env, "random_password(12)", "test.rule", &e, &err), IDS_OK);
    assert_false(expr_is_constant(e));
    expr_free(e);
    for (round = 0; round < 50; round++) {
        char *pw = eval_str(f, round % 2 ? "random_password()" : "random_password(8)", NULL);
        size_t n = strlen(pw);
        bool up = false, low = false, dig = false, sym = false;
        size_t i;

        assert_int_equal(n, round % 2 ? 16 : 8);
        for (i = 0; i < n; i++) {
            up = up || isupper((unsigned char)pw[i]);
            low = low || islower((unsigned char)pw[i]);
            dig = dig || isdigit((unsigned char)pw[i]);
            sym = sym || strchr("!#%+-.=?@_~", pw[i]) != NULL;
            assert_null(strchr("Il1O0", pw[i]));
        }
        assert_true(up && low && dig && sym);
        if (prev != NULL && strlen(prev) == n) {
            assert_string_not_equal(prev, pw);
        }
        free(prev);
        prev = pw;
    }
    free(prev);
    assert_eval_error(f, "random_password(7)", "length 7 is not between 8 and 128");
    assert_eval_error(f, "random_password(129)", "length 129 is not between 8 and 128");
}

static void test_results(void **state)
{
    struct fixture *f = *state;
    unsigned flags = 0;
    char *got;

    assert_eval(f, "nil", "<nil>");
    assert_eval(f, "true", "true");
    assert_eval(f, "1 == 2", "false");
    assert_eval(f, "40 + 2", "42");
    assert_eval(f, "7 / 2", "3.5");
    assert_eval(f, "6 / 2", "3");
    assert_eval(f, "{ 'a', nil, 'c' }", "a|c");
    assert_eval(f, "{ sn, { 'x', 'y' } }", "Smith|x|y");
    assert_eval(f, "{}", "<nil>");
    assert_eval(f, "{ missing }", "<nil>");
    /* chunk with locals and its own return */
    assert_eval(f, "local n = lower(givenName)\nreturn n .. '.' .. lower(sn)", "john.smith");
    assert_eval(f, "if sn then return 'has sn' end return 'none'", "has sn");

    got = eval_str(f, "{ {value = trim(mail), type = \"work\", primary = true} }", &flags);
    assert_string_equal(
        got, "{\"primary\":true,\"type\":\"work\",\"value\":\"John.Smith@Corp.Example\"}");
    assert_true(flags & ATTR_JSON);
    free(got);
    got = eval_str(f, "{ givenName = givenName, familyName = sn, n = 1.5, tags = {'a', 'b'} }",
                   &flags);
    assert_string_equal(
        got, "{\"familyName\":\"Smith\",\"givenName\":\"John\",\"n\":1.5,\"tags\":[\"a\",\"b\"]}");
    assert_true(flags & ATTR_JSON);
    free(got);
    flags = 0;
    got = eval_str(f, "sn", &flags);
    assert_false(flags & ATTR_JSON);
    free(got);

    assert_eval_error(f, "function() end", "not a string, number, boolean or table");
    assert_eval_error(f, "{ x = objectGUID }", "not UTF-8");
}

static void test_eval_bool(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct expr *e = NULL;
    bool b = true;

    assert_int_equal(expr_compile(f->env, "nothing", "scope", &e, &err), IDS_OK);
    assert_int_equal(expr_eval_bool(e, f->obj, &b, &err), IDS_OK);
    assert_false(b);
    assert_int_equal(expr_compile(f->env, "contains(_dn, 'OU=Staff')", "scope", &e, &err), IDS_OK);
    assert_int_equal(expr_eval_bool(e, f->obj, &b, &err), IDS_OK);
    assert_true(b);
    assert_int_equal(expr_compile(f->env, "false", "scope", &e, &err), IDS_OK);
    assert_int_equal(expr_eval_bool(e, f->obj, &b, &err), IDS_OK);
    assert_false(b);
    assert_int_equal(expr_compile(f->env, "''", "scope", &e, &err), IDS_OK);
    assert_int_equal(expr_eval_bool(e, f->obj, &b, &err), IDS_OK);
    assert_true(b); /* Lua truth: only nil and false are false */
    /* an evaluation with a NULL-free, empty object */
    assert_int_equal(expr_compile(f->env, "sn == nil", "scope", &e, &err), IDS_OK);
    {
        struct entry *empty = entry_new(NULL, NULL, NULL);

        assert_int_equal(expr_eval_bool(e, empty, &b, &err), IDS_OK);
        assert_true(b);
        entry_free(empty);
    }
}

static void test_plain(void **state)
{
    (void)state;
    assert_true(expr_is_plain("mail"));
    assert_true(expr_is_plain("  userPrincipalName "));
    assert_true(expr_is_plain("msDS-ConsistencyGuid"));
    assert_true(expr_is_plain("employee_id"));
    assert_false(expr_is_plain("base64(objectGUID)"));
    assert_false(expr_is_plain("a .. b"));
    assert_false(expr_is_plain("a--b"));
    assert_false(expr_is_plain("nil"));
    assert_false(expr_is_plain("true"));
    assert_false(expr_is_plain("lower"));
    assert_false(expr_is_plain("_dn"));
    assert_false(expr_is_plain("'mail'"));
    assert_false(expr_is_plain(""));
    assert_false(expr_is_plain("mail.x"));
}

static void check_names(struct fixture *f, const char *src, const char *expected)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct strvec names = STRVEC_INIT;
    struct strbuf sb = STRBUF_INIT;
    struct expr *e = NULL;
    size_t i;

    if (expr_compile(f->env, src, "names", &e, &err) != IDS_OK) {
        print_error("%s: %s\n", src, err.msg);
        fail();
    }
    expr_names(e, &names);
    for (i = 0; i < names.nr; i++) {
        strbuf_addf(&sb, "%s%s", i ? "," : "", names.v[i]);
    }
    if (strcmp(sb.buf, expected) != 0) {
        print_error("%s\n  expected names: %s\n  got:            %s\n", src, expected, sb.buf);
        fail();
    }
    strbuf_release(&sb);
    strvec_clear(&names);
    expr_free(e);
}

static void test_names(void **state)
{
    struct fixture *f = *state;

    check_names(f, "mail", "mail");
    check_names(f, "base64(objectGUID)", "objectguid");
    check_names(f, "displayName or (givenName .. \" \" .. sn)", "displayname,givenname,sn");
    check_names(f, "{ {value = mail, type = \"work\", primary = true} }", "mail");
    check_names(f, "string.lower(sn) .. x:upper() .. t.field", "sn,x,t");
    check_names(f, "'not_a_name' .. [[nor this]] .. [==[nor ]] this]==] -- comment name\n .. a",
                "a");
    check_names(f, "--[[ long\ncomment b ]] c", "c");
    check_names(f, "local n = lower(givenName)\nreturn n .. sn", "givenname,sn");
    check_names(f, "local function f(p, q) return p .. q end\nreturn f(a, b)", "a,b");
    check_names(f, "for i, v in ipairs(members) do end return x", "members,x");
    check_names(f, "attr(\"msDS-ConsistencyGuid\") .. values 'Other-Attr'[1]",
                "msds-consistencyguid,other-attr");
    check_names(f, "msDS-ConsistencyGuid", "msds-consistencyguid");
    check_names(f, "_dn .. _anchor .. _type .. os.time()", "");
    check_names(f, "mail == MAIL and Mail", "mail");
    check_names(f, "0x1F + 1e+5 + a", "a");
}

static void test_errors_name_rule(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct attr res;
    struct expr *e = NULL;

    memset(&res, 0, sizeof(res));
    assert_int_equal(
        expr_compile(f->env, "givenName ..", "metaverse.person.from[0].flow.displayName", &e, &err),
        IDS_EEXPR);
    assert_null(e);
    assert_string_equal(err.msg, "metaverse.person.from[0].flow.displayName: `givenName ..`: "
                                 "unexpected symbol near <eof>");
    assert_int_equal(expr_compile(f->env, "", "rule.x", &e, &err), IDS_EEXPR);
    assert_string_equal(err.msg, "rule.x: ``: empty expression");

    /* multi-line chunks keep their line number */
    assert_int_equal(expr_compile(f->env, "local a = 1\nreturn a +", "rule.y", &e, &err),
                     IDS_EEXPR);
    assert_string_equal(err.msg, "rule.y: `local a = 1 return a +`: line 2: unexpected symbol "
                                 "near <eof>");

    assert_int_equal(
        expr_compile(f->env, "employeeNumber + 1", "metaverse.person.to[1].flow.x", &e, &err),
        IDS_OK);
    assert_string_equal(expr_what(e), "metaverse.person.to[1].flow.x");
    assert_string_equal(expr_source(e), "employeeNumber + 1");
    assert_int_equal(expr_eval(e, f->obj, &res, &err), IDS_EEXPR);
    assert_int_equal(res.nvals, 0);
    assert_string_equal(err.msg, "metaverse.person.to[1].flow.x: `employeeNumber + 1`: attempt to "
                                 "perform arithmetic on a nil value (global 'employeeNumber')");
    /* the caller's prefix (connector, anchor, DN) still fits */
    assert_true(strlen(err.msg) < IDS_ERROR_MSG_MAX - 300);

    /* a long source is clipped so that messages stay one short line */
    {
        struct strbuf src = STRBUF_INIT;
        int i;

        for (i = 0; i < 100; i++) {
            strbuf_addstr(&src, "sn .. ");
        }
        strbuf_addstr(&src, "nil");
        assert_int_equal(expr_compile(f->env, src.buf, "rule.long", &e, &err), IDS_OK);
        assert_int_equal(expr_eval(e, f->obj, &res, &err), IDS_EEXPR);
        assert_non_null(strstr(err.msg, "...`: attempt to concatenate a nil value"));
        assert_true(strlen(err.msg) < 700);
        strbuf_release(&src);
    }
    assert_eval_error(f, "error('custom failure')",
                      "test.rule: `error('custom failure')`: "
                      "custom failure");
    assert_eval_error(f, "error({})", "error object is a table value");
    attr_release(&res);
}

/* Expressions that read no name are computed once: the same values every
 * time, for any object; anything that reads a name (an attribute, a
 * helper) or fails is evaluated each time, with its error each time. */
static void test_constants(void **state)
{
    static const struct {
        const char *src;
        bool constant;
        const char *value;
    } cases[] = {
        {"{ \"inetOrgPerson\", \"top\" }", true, "inetOrgPerson|top"},
        {"\"Staff\"", true, "Staff"},
        {"\"a\" .. \"b\"", true, "ab"},
        {"nil", true, "<nil>"},
        {"lower(\"ABC\")", false, "abc"},
        {"sn", false, "Smith"},
        {"givenName .. \" \" .. sn", false, "John Smith"},
        {"error(\"boom\")", false, "ERR: "},
    };
    struct fixture *f = *state;
    struct entry *other = entry_new("user", "a2", "cn=other");
    size_t i;

    entry_add_str(other, "sn", "Other");
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ids_error err = IDS_ERROR_INIT;
        struct expr *e = NULL;
        char *got;

        assert_int_equal(expr_compile(f->env, cases[i].src, "test.rule", &e, &err), IDS_OK);
        assert_int_equal(expr_is_constant(e), cases[i].constant);
        expr_free(e);
        got = eval_str(f, cases[i].src, NULL);
        assert_true(strncmp(got, cases[i].value, strlen(cases[i].value)) == 0);
        free(got);
        if (cases[i].constant) {
            struct attr a;
            struct attr b;

            memset(&a, 0, sizeof(a));
            memset(&b, 0, sizeof(b));
            assert_int_equal(expr_compile(f->env, cases[i].src, "test.rule", &e, &err), IDS_OK);
            assert_int_equal(expr_eval(e, f->obj, &a, &err), IDS_OK);
            assert_int_equal(expr_eval(e, other, &b, &err), IDS_OK);
            assert_int_equal(a.nvals, b.nvals);
            attr_release(&a);
            attr_release(&b);
            expr_free(e);
        }
    }
    assert_eval_error(f, "error(\"boom\")", "boom"); /* each time */
    entry_free(other);
}

static void test_sandbox(void **state)
{
    struct fixture *f = *state;

    assert_eval_error(f, "io.open('/etc/passwd')", "attempt to index a nil value (global 'io')");
    assert_eval_error(f, "os.execute('touch /tmp/idsync-pwned')", "global 'os'");
    assert_eval_error(f, "require('os')", "attempt to call a nil value (global 'require')");
    assert_eval_error(f, "dofile('/etc/passwd')", "global 'dofile'");
    assert_eval_error(f, "loadfile('/etc/passwd')", "global 'loadfile'");
    assert_eval_error(f, "debug.getinfo(1)", "global 'debug'");
    assert_eval_error(f, "package.loaded", "global 'package'");
    assert_eval_error(f, "collectgarbage()", "global 'collectgarbage'");
    assert_eval_error(f, "string.dump(function() end)", "field 'dump'");
    assert_eval_error(f, "('x').dump(print)", "field 'dump'");
    assert_eval_error(f, "getmetatable('').__index.dump", "global 'getmetatable'");
    assert_eval_error(f, "rawset(_ENV, 'x', 1)", "global 'rawset'");
    /* load: text only, and the loaded chunk is sandboxed too */
    assert_eval(f, "select(2, load('\\27Lua\\84\\0'))",
                "attempt to load a binary chunk (mode is 't')");
    assert_eval(f, "load('return lower(sn)')()", "smith");
    assert_eval(f, "load('return os')()", "<nil>");
    /* the libraries cannot be changed for other rules */
    assert_eval_error(f, "function string.upper() return 'pwned' end", "read-only");
    assert_eval_error(f, "(function() string.upper = nil end)()", "read-only");
    assert_eval(f, "sn:upper()", "SMITH");
    /* globals set by one evaluation do not leak into the next */
    assert_eval(f, "leaked = 'yes' return leaked", "yes");
    assert_eval(f, "leaked", "<nil>");
}

static void test_limits(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct expr *e = NULL;
    struct attr res;

    memset(&res, 0, sizeof(res));
    assert_eval_error(f, "while true do end", "instruction limit exceeded (200000 instructions)");
    /* pcall cannot swallow the limits */
    assert_eval_error(f, "while true do pcall(function() while true do end end) end",
                      "instruction limit exceeded");
    assert_eval_error(f, "local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(1000) .. i end",
                      "memory limit exceeded");
    assert_eval_error(f, "('x'):rep(1 << 40)", "");
    assert_eval_error(f, "pcall(string.rep, 'x', 1 << 30) return 'survived'",
                      "memory limit exceeded");
    /* stack overflow, memory or instruction limit: whichever comes first */
    assert_eval_error(f, "local function r() return 1 + r() end return r()", "test.rule: `");
    /* deep nesting in the source is a compile error, not a crash */
    {
        struct strbuf src = STRBUF_INIT;
        int i;

        for (i = 0; i < 100000; i++) {
            strbuf_addch(&src, '(');
        }
        assert_int_equal(expr_compile(f->env, src.buf, "deep", &e, &err), IDS_EEXPR);
        strbuf_release(&src);
    }
    /* a result nested too deeply */
    assert_eval_error(f, "local t = {} local c = t for i = 1, 100 do c.x = {} c = c.x end return t",
                      "nested too deeply");
    /* after all that the runtime still works */
    assert_eval(f, "lower(sn)", "smith");
    assert_int_equal(expr_compile(f->env, "upper(sn)", "after", &e, &err), IDS_OK);
    assert_int_equal(expr_eval(e, f->obj, &res, &err), IDS_OK);
    assert_string_equal(res.vals[0].data, "SMITH");
    attr_release(&res);
}

static void test_tiny_memory(void **state)
{
    struct expr_env *env = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    struct expr_limits limits = {0, 1024};

    (void)state;
    assert_int_equal(expr_env_new(&limits, &env, &err), IDS_EEXPR);
    assert_null(env);
    assert_non_null(strstr(err.msg, "expression runtime"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_attributes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_helpers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_time_helpers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_results, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eval_bool, setup, teardown),
        cmocka_unit_test(test_plain),
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_name_rule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_constants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sandbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test(test_tiny_memory),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
