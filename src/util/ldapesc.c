/* ldapesc.c - LDAP filter/DN escaping, DN parsing, small LDAP text formats.
 * See ldapesc.h. Pure functions: no I/O, no global state. */
#include "util/ldapesc.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/mem.h"
#include "util/banned.h"

static const char hexdigits[] = "0123456789abcdef";

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when the bytes at p
 * are not valid UTF-8 (overlong, surrogate, truncated, > U+10FFFF). */
static size_t utf8_seq_len(const unsigned char *p, size_t left)
{
    size_t n;
    size_t i;
    unsigned long cp;

    if (p[0] < 0x80) {
        return 1;
    }
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
        cp = p[0] & 0x1fu;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        cp = p[0] & 0x0fu;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        cp = p[0] & 0x07u;
    } else {
        return 0;
    }
    if (left < n) {
        return 0;
    }
    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0u) != 0x80u) {
            return 0;
        }
        cp = (cp << 6) | (p[i] & 0x3fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return n;
}

static void add_hex_escape(struct strbuf *out, unsigned char c)
{
    strbuf_addch(out, '\\');
    strbuf_addch(out, hexdigits[c >> 4]);
    strbuf_addch(out, hexdigits[c & 0xfu]);
}

void ldapesc_filter_value(struct strbuf *out, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i = 0;
    size_t n;

    strbuf_grow(out, len);
    while (i < len) {
        unsigned char c = p[i];

        if (c < 0x80) {
            if (c == '*' || c == '(' || c == ')' || c == '\\' || c < 0x20 || c == 0x7f) {
                add_hex_escape(out, c);
            } else {
                strbuf_addch(out, c);
            }
            i++;
            continue;
        }
        n = utf8_seq_len(p + i, len - i);
        if (n == 0) {
            add_hex_escape(out, c);
            i++;
        } else {
            strbuf_add(out, p + i, n);
            i += n;
        }
    }
}

void ldapesc_dn_value(struct strbuf *out, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i = 0;
    size_t n;

    strbuf_grow(out, len);
    while (i < len) {
        unsigned char c = p[i];

        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f) {
                add_hex_escape(out, c);
            } else if (strchr("\"+,;<>\\=", c) != NULL || (i == 0 && (c == ' ' || c == '#')) ||
                       (i == len - 1 && c == ' ')) {
                strbuf_addch(out, '\\');
                strbuf_addch(out, c);
            } else {
                strbuf_addch(out, c);
            }
            i++;
            continue;
        }
        n = utf8_seq_len(p + i, len - i);
        if (n == 0) {
            add_hex_escape(out, c);
            i++;
        } else {
            strbuf_add(out, p + i, n);
            i += n;
        }
    }
}

/* ---- DN parsing -------------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static bool is_type_char(int c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_';
}

void ldapdn_release(struct ldapdn *dn)
{
    size_t i;
    size_t j;

    for (i = 0; i < dn->nrdns; i++) {
        for (j = 0; j < dn->rdns[i].navas; j++) {
            free(dn->rdns[i].avas[j].type);
            free(dn->rdns[i].avas[j].value);
        }
        free(dn->rdns[i].avas);
    }
    free(dn->rdns);
    dn->nrdns = 0;
    dn->rdns = NULL;
}

struct dn_parser {
    const char *s;
    size_t len;
    size_t pos;
    struct ids_error *err;
};

static void skip_spaces(struct dn_parser *p)
{
    while (p->pos < p->len && p->s[p->pos] == ' ') {
        p->pos++;
    }
}

static enum ids_err parse_error(struct dn_parser *p, const char *what)
{
    return ids_error_set(p->err, IDS_EINPUT, "malformed DN at offset %zu: %s", p->pos, what);
}

/* Value after '=': #hex, "quoted" or an RFC 4514 string. p->pos ends after
 * the value (before trailing spaces); *end_text is where the text ends. */
static enum ids_err parse_value(struct dn_parser *p, struct ldapdn_ava *ava, size_t *end_text)
{
    enum ids_err ret = IDS_OK;
    struct strbuf v = STRBUF_INIT;
    size_t last_keep = 0; /* length of v up to the last char that is not an unescaped space */
    int h1;
    int h2;

    if (p->pos < p->len && p->s[p->pos] == '#') {
        p->pos++;
        while (p->pos < p->len && hexval(p->s[p->pos]) >= 0) {
            if (p->pos + 1 >= p->len || hexval(p->s[p->pos + 1]) < 0) {
                ret = parse_error(p, "odd number of hex digits");
                goto done;
            }
            strbuf_addch(&v, hexval(p->s[p->pos]) * 16 + hexval(p->s[p->pos + 1]));
            p->pos += 2;
        }
        if (v.len == 0) {
            ret = parse_error(p, "empty #hex value");
            goto done;
        }
        ava->hex = true;
        *end_text = p->pos;
        goto done;
    }
    if (p->pos < p->len && p->s[p->pos] == '"') {
        p->pos++;
        for (;;) {
            if (p->pos >= p->len) {
                ret = parse_error(p, "unterminated quoted value");
                goto done;
            }
            if (p->s[p->pos] == '"') {
                p->pos++;
                break;
            }
            if (p->s[p->pos] == '\\') {
                if (p->pos + 1 >= p->len) {
                    ret = parse_error(p, "escape at end");
                    goto done;
                }
                h1 = hexval(p->s[p->pos + 1]);
                h2 = p->pos + 2 < p->len ? hexval(p->s[p->pos + 2]) : -1;
                if (h1 >= 0 && h2 >= 0) {
                    strbuf_addch(&v, h1 * 16 + h2);
                    p->pos += 3;
                } else {
                    strbuf_addch(&v, p->s[p->pos + 1]);
                    p->pos += 2;
                }
                continue;
            }
            strbuf_addch(&v, p->s[p->pos]);
            p->pos++;
        }
        *end_text = p->pos;
        goto done;
    }
    *end_text = p->pos;
    while (p->pos < p->len) {
        unsigned char c = (unsigned char)p->s[p->pos];

        if (c == ',' || c == ';' || c == '+') {
            break;
        }
        if (c == '\\') {
            if (p->pos + 1 >= p->len) {
                ret = parse_error(p, "escape at end");
                goto done;
            }
            h1 = hexval(p->s[p->pos + 1]);
            h2 = p->pos + 2 < p->len ? hexval(p->s[p->pos + 2]) : -1;
            if (h1 >= 0 && h2 >= 0) {
                strbuf_addch(&v, h1 * 16 + h2);
                p->pos += 3;
            } else if (strchr("\\\"+,;<> #=", p->s[p->pos + 1]) != NULL) {
                strbuf_addch(&v, p->s[p->pos + 1]);
                p->pos += 2;
            } else {
                ret = parse_error(p, "bad escape");
                goto done;
            }
            last_keep = v.len;
            *end_text = p->pos;
            continue;
        }
        if (c == '"' || c == '<' || c == '>' || c == '\0') {
            ret = parse_error(p, "character must be escaped");
            goto done;
        }
        strbuf_addch(&v, c);
        p->pos++;
        if (c != ' ') {
            last_keep = v.len;
            *end_text = p->pos;
        }
    }
    strbuf_setlen(&v, last_keep);

done:
    if (ret == IDS_OK) {
        ava->vlen = v.len;
        ava->value = strbuf_detach(&v, NULL);
    }
    strbuf_release(&v);
    return ret;
}

static enum ids_err parse_ava(struct dn_parser *p, struct ldapdn_ava *ava, size_t *end_text)
{
    size_t start;

    skip_spaces(p);
    start = p->pos;
    while (p->pos < p->len && is_type_char((unsigned char)p->s[p->pos])) {
        p->pos++;
    }
    if (p->pos == start) {
        return parse_error(p, "expected an attribute type");
    }
    ava->type = xmemdup(p->s + start, p->pos - start);
    skip_spaces(p);
    if (p->pos >= p->len || p->s[p->pos] != '=') {
        return parse_error(p, "expected '='");
    }
    p->pos++;
    skip_spaces(p);
    return parse_value(p, ava, end_text);
}

enum ids_err ldapdn_parse(const char *s, size_t len, struct ldapdn *dn, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct dn_parser p = {s, len, 0, err};
    size_t alloc_rdns = 0;
    size_t alloc_avas = 0;
    struct ldapdn_rdn *rdn = NULL;
    size_t end_text = 0;

    dn->nrdns = 0;
    dn->rdns = NULL;
    skip_spaces(&p);
    if (p.pos == len) {
        goto done;
    }
    for (;;) {
        if (rdn == NULL) {
            ALLOC_GROW(dn->rdns, dn->nrdns + 1, alloc_rdns);
            rdn = &dn->rdns[dn->nrdns++];
            memset(rdn, 0, sizeof(*rdn));
            alloc_avas = 0;
            skip_spaces(&p);
            rdn->off = p.pos;
        }
        ALLOC_GROW(rdn->avas, rdn->navas + 1, alloc_avas);
        memset(&rdn->avas[rdn->navas], 0, sizeof(rdn->avas[0]));
        rdn->navas++;
        ret = parse_ava(&p, &rdn->avas[rdn->navas - 1], &end_text);
        if (ret != IDS_OK) {
            goto done;
        }
        rdn->len = end_text - rdn->off;
        skip_spaces(&p);
        if (p.pos >= len) {
            break;
        }
        if (s[p.pos] == '+') {
            p.pos++;
            continue;
        }
        if (s[p.pos] == ',' || s[p.pos] == ';') {
            p.pos++;
            skip_spaces(&p);
            if (p.pos >= len) {
                ret = parse_error(&p, "trailing separator");
                goto done;
            }
            rdn = NULL;
            continue;
        }
        ret = parse_error(&p, "expected ',' or '+'");
        goto done;
    }

done:
    if (ret != IDS_OK) {
        ldapdn_release(dn);
    }
    return ret;
}

static void ava_format(const struct ldapdn_ava *ava, bool normalize, struct strbuf *out)
{
    size_t start = out->len;
    size_t i;

    strbuf_addstr(out, ava->type);
    if (normalize) {
        for (i = start; i < out->len; i++) {
            out->buf[i] = (char)tolower((unsigned char)out->buf[i]);
        }
    }
    strbuf_addch(out, '=');
    start = out->len;
    if (ava->hex) {
        strbuf_addch(out, '#');
        for (i = 0; i < ava->vlen; i++) {
            strbuf_addch(out, hexdigits[(unsigned char)ava->value[i] >> 4]);
            strbuf_addch(out, hexdigits[(unsigned char)ava->value[i] & 0xfu]);
        }
    } else {
        ldapesc_dn_value(out, ava->value, ava->vlen);
    }
    if (normalize) {
        for (i = start; i < out->len; i++) {
            if ((unsigned char)out->buf[i] < 0x80) {
                out->buf[i] = (char)tolower((unsigned char)out->buf[i]);
            }
        }
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void rdn_format(const struct ldapdn_rdn *rdn, bool normalize, struct strbuf *out)
{
    struct strbuf one = STRBUF_INIT;
    char **parts = NULL;
    size_t i;

    if (!normalize || rdn->navas == 1) {
        for (i = 0; i < rdn->navas; i++) {
            if (i > 0) {
                strbuf_addch(out, '+');
            }
            ava_format(&rdn->avas[i], normalize, out);
        }
        return;
    }
    parts = xcalloc(rdn->navas, sizeof(*parts));
    for (i = 0; i < rdn->navas; i++) {
        strbuf_reset(&one);
        ava_format(&rdn->avas[i], true, &one);
        parts[i] = xstrdup(one.buf);
    }
    qsort(parts, rdn->navas, sizeof(*parts), cmp_str);
    for (i = 0; i < rdn->navas; i++) {
        if (i > 0) {
            strbuf_addch(out, '+');
        }
        strbuf_addstr(out, parts[i]);
        free(parts[i]);
    }
    free(parts);
    strbuf_release(&one);
}

void ldapdn_format(const struct ldapdn *dn, size_t first, bool normalize, struct strbuf *out)
{
    size_t i;

    for (i = first; i < dn->nrdns; i++) {
        if (i > first) {
            strbuf_addch(out, ',');
        }
        rdn_format(&dn->rdns[i], normalize, out);
    }
}

static bool is_plain_value_char(int c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '@';
}

/* True when s[0..len) is a DN of single-valued RDNs whose types and values
 * hold only ASCII letters, digits and - . _ (values @ too): nothing to
 * unescape, trim or escape, so its normalised form is itself lower-cased
 * ("uid=jdoe,ou=People,dc=example,dc=com"; most DNs of a directory). */
static bool dn_plain(const char *s, size_t len)
{
    size_t i = 0;
    size_t t;

    while (i < len) {
        for (t = i; i < len && is_type_char((unsigned char)s[i]); i++) {
        }
        if (i == t || i >= len || s[i] != '=') {
            return false;
        }
        for (t = ++i; i < len && is_plain_value_char((unsigned char)s[i]); i++) {
        }
        if (i == t) {
            return false;
        }
        if (i < len && (s[i] != ',' || ++i == len)) {
            return false;
        }
    }
    return true;
}

enum ids_err ldapdn_normalize(const char *s, struct strbuf *out, struct ids_error *err)
{
    struct ldapdn dn = LDAPDN_INIT;
    size_t len = strlen(s);
    enum ids_err ret;
    size_t i;

    if (dn_plain(s, len)) {
        strbuf_grow(out, len);
        for (i = 0; i < len; i++) {
            out->buf[out->len + i] = (char)tolower((unsigned char)s[i]);
        }
        strbuf_setlen(out, out->len + len);
        return IDS_OK;
    }
    ret = ldapdn_parse(s, len, &dn, err);

    if (ret == IDS_OK) {
        ldapdn_format(&dn, 0, true, out);
    }
    ldapdn_release(&dn);
    return ret;
}

bool ldapdn_equal(const char *a, const char *b)
{
    struct strbuf na = STRBUF_INIT;
    struct strbuf nb = STRBUF_INIT;
    bool eq = false;

    if (ldapdn_normalize(a, &na, NULL) == IDS_OK && ldapdn_normalize(b, &nb, NULL) == IDS_OK) {
        eq = na.len == nb.len && memcmp(na.buf, nb.buf, na.len) == 0;
    }
    strbuf_release(&na);
    strbuf_release(&nb);
    return eq;
}

enum ids_err ldapdn_parent(const char *s, struct strbuf *out, struct ids_error *err)
{
    struct ldapdn dn = LDAPDN_INIT;
    enum ids_err ret = ldapdn_parse(s, strlen(s), &dn, err);

    if (ret != IDS_OK) {
        goto done;
    }
    if (dn.nrdns == 0) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "the root DN has no parent");
        goto done;
    }
    if (dn.nrdns > 1) {
        strbuf_addstr(out, s + dn.rdns[1].off);
    }

done:
    ldapdn_release(&dn);
    return ret;
}

enum ids_err ldapdn_rdn(const char *s, struct strbuf *out, struct ids_error *err)
{
    struct ldapdn dn = LDAPDN_INIT;
    enum ids_err ret = ldapdn_parse(s, strlen(s), &dn, err);

    if (ret != IDS_OK) {
        goto done;
    }
    if (dn.nrdns == 0) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "the root DN has no RDN");
        goto done;
    }
    strbuf_add(out, s + dn.rdns[0].off, dn.rdns[0].len);

done:
    ldapdn_release(&dn);
    return ret;
}

int ldapdn_depth_under(const char *dn, const char *base)
{
    struct ldapdn d = LDAPDN_INIT;
    struct ldapdn b = LDAPDN_INIT;
    struct strbuf x = STRBUF_INIT;
    struct strbuf y = STRBUF_INIT;
    int ret = -1;
    size_t i;

    if (ldapdn_parse(dn, strlen(dn), &d, NULL) != IDS_OK ||
        ldapdn_parse(base, strlen(base), &b, NULL) != IDS_OK || b.nrdns > d.nrdns) {
        goto done;
    }
    for (i = 0; i < b.nrdns; i++) {
        strbuf_reset(&x);
        strbuf_reset(&y);
        rdn_format(&d.rdns[d.nrdns - 1 - i], true, &x);
        rdn_format(&b.rdns[b.nrdns - 1 - i], true, &y);
        if (!strbuf_equals(&x, y.buf)) {
            goto done;
        }
    }
    ret = d.nrdns - b.nrdns > 2 ? 2 : (int)(d.nrdns - b.nrdns);

done:
    ldapdn_release(&d);
    ldapdn_release(&b);
    strbuf_release(&x);
    strbuf_release(&y);
    return ret;
}

/* ---- small formats ----------------------------------------------------- */

enum ids_err ldapesc_uuid_to_string(struct strbuf *out, const void *bytes, size_t len)
{
    const unsigned char *b = bytes;
    size_t i;

    if (len != 16) {
        return IDS_EINPUT;
    }
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            strbuf_addch(out, '-');
        }
        strbuf_addch(out, hexdigits[b[i] >> 4]);
        strbuf_addch(out, hexdigits[b[i] & 0xfu]);
    }
    return IDS_OK;
}

/* Parse a non-negative decimal in s[0..len) into *out; false on error. */
static bool parse_ulong(const char *s, size_t len, long *out)
{
    long v = 0;
    size_t i;

    if (len == 0 || len > 18) {
        return false;
    }
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

bool ldap_range_parse(const char *desc, struct strbuf *base, long *lo, long *hi)
{
    const char *p = strchr(desc, ';');
    const char *opt;
    const char *end;
    const char *dash;
    bool found = false;
    long l = 0;
    long h = -1;
    size_t keep;

    if (p == NULL) {
        return false;
    }
    /* first pass: find and validate the range option */
    for (opt = p + 1; opt != NULL && *opt; opt = end ? end + 1 : NULL) {
        end = strchr(opt, ';');
        keep = end ? (size_t)(end - opt) : strlen(opt);
        if (keep > 6 && strncasecmp(opt, "range=", 6) == 0) {
            dash = memchr(opt + 6, '-', keep - 6);
            if (dash == NULL || found || !parse_ulong(opt + 6, dash - (opt + 6), &l)) {
                return false;
            }
            if ((size_t)(dash + 1 - opt) == keep - 1 && dash[1] == '*') {
                h = -1;
            } else if (!parse_ulong(dash + 1, keep - (dash + 1 - opt), &h) || h < l) {
                return false;
            }
            found = true;
        }
    }
    if (!found) {
        return false;
    }
    strbuf_add(base, desc, p - desc);
    for (opt = p + 1; opt != NULL && *opt; opt = end ? end + 1 : NULL) {
        end = strchr(opt, ';');
        keep = end ? (size_t)(end - opt) : strlen(opt);
        if (!(keep > 6 && strncasecmp(opt, "range=", 6) == 0)) {
            strbuf_addch(base, ';');
            strbuf_add(base, opt, keep);
        }
    }
    *lo = l;
    *hi = h;
    return true;
}

void ldap_watermark_format(struct strbuf *out, const char *kind, const void *data, size_t len)
{
    const unsigned char *b = data;
    size_t i;

    strbuf_addstr(out, kind);
    strbuf_addch(out, ':');
    if (strcmp(kind, "usn") == 0) {
        strbuf_add(out, data, len);
        return;
    }
    for (i = 0; i < len; i++) {
        strbuf_addch(out, hexdigits[b[i] >> 4]);
        strbuf_addch(out, hexdigits[b[i] & 0xfu]);
    }
}

enum ids_err ldap_watermark_parse(const char *wm, struct strbuf *kind, struct strbuf *data,
                                  struct ids_error *err)
{
    const char *colon = strchr(wm, ':');
    const char *v;
    size_t vlen;
    size_t i;
    long n;

    if (colon == NULL) {
        return ids_error_set(err, IDS_EINPUT, "watermark without a kind: \"%.40s\"", wm);
    }
    strbuf_reset(kind);
    strbuf_reset(data);
    strbuf_add(kind, wm, colon - wm);
    v = colon + 1;
    vlen = strlen(v);
    if (strbuf_equals(kind, "usn")) {
        if (!parse_ulong(v, vlen, &n)) {
            return ids_error_set(err, IDS_EINPUT, "watermark usn: not a number: \"%.40s\"", v);
        }
        strbuf_add(data, v, vlen);
        return IDS_OK;
    }
    if (!strbuf_equals(kind, "dirsync") && !strbuf_equals(kind, "syncrepl")) {
        return ids_error_set(err, IDS_EINPUT, "unknown watermark kind \"%.20s\"", kind->buf);
    }
    if (vlen % 2 != 0) {
        return ids_error_set(err, IDS_EINPUT, "watermark %s: odd number of hex digits", kind->buf);
    }
    for (i = 0; i < vlen; i += 2) {
        if (hexval(v[i]) < 0 || hexval(v[i + 1]) < 0) {
            return ids_error_set(err, IDS_EINPUT, "watermark %s: not hex at %zu", kind->buf, i);
        }
        strbuf_addch(data, hexval(v[i]) * 16 + hexval(v[i + 1]));
    }
    return IDS_OK;
}
