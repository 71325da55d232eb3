/* fuzz_ldap_filter.c - libFuzzer target for util/ldapesc: the input is used
 * as a DN (parse, normalise, parent, RDN, depth), as a value escaped into a
 * filter and a DN (which must parse back to the same bytes), as an AD range
 * option and as a stored watermark. Checks the invariants, not just crashes:
 *   - escape(value) -> parse gives back value exactly;
 *   - normalising is idempotent, and its shortcut for plain DNs gives what
 *     parsing and formatting give;
 *   - an escaped filter value contains no unescaped * ( ) \ or NUL. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/ldapesc.h"
#include "util/strbuf.h"
#include "util/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_filter_escape(const uint8_t *data, size_t size)
{
    struct strbuf f = STRBUF_INIT;
    size_t i;

    ldapesc_filter_value(&f, data, size);
    for (i = 0; i < f.len; i++) {
        char ch = f.buf[i];

        if (ch == '*' || ch == '(' || ch == ')' || ch == '\0') {
            abort();
        }
        if (ch == '\\') {
            if (i + 2 >= f.len || !strchr("0123456789abcdef", f.buf[i + 1]) ||
                !strchr("0123456789abcdef", f.buf[i + 2])) {
                abort();
            }
            i += 2;
        }
    }
    strbuf_release(&f);
}

static void check_dn_roundtrip(const uint8_t *data, size_t size)
{
    struct strbuf dn = STRBUF_INIT;
    struct ldapdn parsed = LDAPDN_INIT;

    strbuf_addstr(&dn, "cn=");
    ldapesc_dn_value(&dn, data, size);
    strbuf_addstr(&dn, ",dc=example,dc=org");
    if (ldapdn_parse(dn.buf, dn.len, &parsed, NULL) != IDS_OK || parsed.nrdns != 3 ||
        parsed.rdns[0].navas != 1 || parsed.rdns[0].avas[0].vlen != size ||
        memcmp(parsed.rdns[0].avas[0].value, data, size) != 0) {
        abort();
    }
    ldapdn_release(&parsed);
    strbuf_release(&dn);
}

static void check_dn_parse(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    struct strbuf n1 = STRBUF_INIT;
    struct strbuf n2 = STRBUF_INIT;
    struct strbuf other = STRBUF_INIT;

    memcpy(s, data, size);
    s[size] = '\0';
    if (strlen(s) == size && ldapdn_normalize(s, &n1, NULL) == IDS_OK) {
        /* the normalised form parses and normalises to itself */
        if (ldapdn_normalize(n1.buf, &n2, NULL) != IDS_OK || !strbuf_equals(&n1, n2.buf)) {
            abort();
        }
        if (!ldapdn_equal(s, n1.buf)) {
            abort();
        }
        {
            /* the plain-DN shortcut of ldapdn_normalize gives what parsing
             * and formatting give */
            struct ldapdn dn = LDAPDN_INIT;
            struct strbuf n3 = STRBUF_INIT;

            if (ldapdn_parse(s, size, &dn, NULL) != IDS_OK) {
                abort();
            }
            ldapdn_format(&dn, 0, true, &n3);
            if (!strbuf_equals(&n1, n3.buf) || n1.len != n3.len) {
                abort();
            }
            ldapdn_release(&dn);
            strbuf_release(&n3);
        }
        (void)ldapdn_parent(s, &other, NULL);
        strbuf_reset(&other);
        (void)ldapdn_rdn(s, &other, NULL);
        (void)ldapdn_depth_under(s, "dc=example,dc=org");
        (void)ldapdn_depth_under("cn=x,dc=example,dc=org", s);
    }
    {
        struct strbuf base = STRBUF_INIT;
        struct strbuf kind = STRBUF_INIT;
        struct strbuf wm = STRBUF_INIT;
        long lo;
        long hi;

        if (strlen(s) == size && ldap_range_parse(s, &base, &lo, &hi) &&
            (lo < 0 || (hi >= 0 && hi < lo))) {
            abort();
        }
        if (strlen(s) == size) {
            (void)ldap_watermark_parse(s, &kind, &wm, NULL);
        }
        strbuf_release(&base);
        strbuf_release(&kind);
        strbuf_release(&wm);
    }
    free(s);
    strbuf_release(&n1);
    strbuf_release(&n2);
    strbuf_release(&other);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) {
        return 0;
    }
    check_filter_escape(data, size);
    check_dn_roundtrip(data, size);
    check_dn_parse(data, size);
    return 0;
}
