/* ldapesc.h - LDAP string forms: filter and DN escaping, DN parsing and
 * normalising, and the small textual formats of the LDAP connector (UUIDs,
 * range options, watermarks).
 *
 * Every value idsync puts into an LDAP filter goes through
 * ldapesc_filter_value() (RFC 4515) and every value put into a DN through
 * ldapesc_dn_value() (RFC 4514). Nothing here does I/O or needs a server:
 * the functions are pure and fuzzed (tests/fuzz/fuzz_ldap_filter.c).
 *
 * Values are byte strings with an explicit length (they may hold NUL).
 */
#ifndef IDSYNC_UTIL_LDAPESC_H
#define IDSYNC_UTIL_LDAPESC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/strbuf.h"

/* ---- escaping ---------------------------------------------------------- */

/* RFC 4515 assertion value: `*`, `(`, `)`, `\` and NUL become \2a \28 \29
 * \5c \00; so does every byte that is not part of valid UTF-8 and every
 * control character, so that binary values (objectGUID) can be searched.
 * Appended to out. */
void ldapesc_filter_value(struct strbuf *out, const void *data, size_t len);

/* RFC 4514 attribute value of an RDN: `"`, `+`, `,`, `;`, `<`, `>`, `\`
 * become \" \+ ..., a leading space or `#` and a trailing space are escaped,
 * NUL, control characters and bytes of invalid UTF-8 become \XX. Valid
 * non-ASCII UTF-8 is kept as is. An empty value stays empty. Appended. */
void ldapesc_dn_value(struct strbuf *out, const void *data, size_t len);

/* ---- DNs --------------------------------------------------------------- */

/* One attribute type and value of an RDN, unescaped. */
struct ldapdn_ava {
    char *type;  /* as written (not lower-cased); owned */
    char *value; /* unescaped value; NUL-terminated, may contain NULs; owned */
    size_t vlen;
    bool hex; /* written as #hex (BER); value holds the decoded bytes */
};

struct ldapdn_rdn {
    size_t navas; /* >= 1; more for a multi-valued RDN (a+b) */
    struct ldapdn_ava *avas;
    size_t off; /* offset of this RDN in the parsed string */
    size_t len; /* length of its text (without the separator) */
};

/* A parsed DN: rdns[0] is the leftmost (most specific) RDN. */
struct ldapdn {
    size_t nrdns; /* 0 for the empty (root) DN */
    struct ldapdn_rdn *rdns;
};

#define LDAPDN_INIT                                                                                \
    {                                                                                              \
        0, NULL                                                                                    \
    }

/* Parse s[0..len) (RFC 4514; also accepts `;` separators, quoted values and
 * spaces around separators as in RFC 2253/1779). IDS_EINPUT with the
 * offending offset in the message on a malformed DN; *dn is then empty.
 * Release with ldapdn_release(). */
enum ids_err ldapdn_parse(const char *s, size_t len, struct ldapdn *dn, struct ids_error *err);
void ldapdn_release(struct ldapdn *dn);

/* Write dn in RFC 4514 form, values escaped with ldapesc_dn_value(), from
 * RDN `first` on (0 = the whole DN; 1 = its parent). With normalize: types
 * lower-cased, values lower-cased (ASCII), multi-valued RDNs sorted, so that
 * two spellings of one DN compare equal byte-wise. Appended to out. */
void ldapdn_format(const struct ldapdn *dn, size_t first, bool normalize, struct strbuf *out);

/* Parse and write the normalised form (see ldapdn_format). IDS_EINPUT on a
 * malformed DN. Appended to out. */
enum ids_err ldapdn_normalize(const char *s, struct strbuf *out, struct ids_error *err);

/* True when the normalised forms of a and b are equal (false when either
 * is malformed). */
bool ldapdn_equal(const char *a, const char *b);

/* Parent of `s` (its text after the first RDN and its separator, as
 * written). IDS_EINPUT on a malformed DN, IDS_ENOTFOUND for the empty DN. */
enum ids_err ldapdn_parent(const char *s, struct strbuf *out, struct ids_error *err);

/* The first RDN of `s` as written ("cn=a\,b"). IDS_EINPUT / IDS_ENOTFOUND. */
enum ids_err ldapdn_rdn(const char *s, struct strbuf *out, struct ids_error *err);

/* Relation of `dn` to `base` for a search scope: 0 = dn is base, 1 = a child,
 * 2 = deeper, -1 = not under base (or either is malformed). */
int ldapdn_depth_under(const char *dn, const char *base);

/* ---- small formats ----------------------------------------------------- */

/* 16 bytes in RFC 4122 order (entryUUID, syncUUID) -> lower-case
 * "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx". IDS_EINPUT unless len == 16. */
enum ids_err ldapesc_uuid_to_string(struct strbuf *out, const void *bytes, size_t len);

/* AD range option of an attribute description: "member;range=0-1499" ->
 * base "member", lo 0, hi 1499; "member;range=1500-*" -> hi -1. Other
 * options are kept in `base` ("member;binary;range=0-9" -> "member;binary").
 * Returns false (base untouched) when there is no valid range option. */
bool ldap_range_parse(const char *desc, struct strbuf *base, long *lo, long *hi);

/* Watermarks kept in the store, one per connector:
 *   "dirsync:HEX"      AD DirSync cookie (bytes as hex)
 *   "usn:N"            highest uSNChanged seen (AD without DirSync rights)
 *   "syncrepl:HEX"     RFC 4533 cookie (bytes as hex)
 * kind is "dirsync", "usn" or "syncrepl". */
void ldap_watermark_format(struct strbuf *out, const char *kind, const void *data, size_t len);
/* Split a stored watermark into kind (NUL-terminated, "dirsync"...) and
 * decoded data (cookie bytes, or the decimal text of the USN).
 * IDS_EINPUT naming the problem when malformed. */
enum ids_err ldap_watermark_parse(const char *wm, struct strbuf *kind, struct strbuf *data,
                                  struct ids_error *err);

#endif
