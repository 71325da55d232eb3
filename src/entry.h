/* entry.h - one directory object, and one change to one.
 *
 * struct entry is the unit that moves through idsync: a connector yields
 * entries, the store keeps them in connector spaces and the metaverse, and
 * the engine computes struct change values from them that an export sends.
 *
 * Attribute names compare case-insensitively (as in LDAP); the first
 * spelling seen is kept for output. Values are byte strings (binary-safe,
 * always NUL-terminated for convenience); `len` is authoritative.
 *
 * Reference attributes (group members, manager) carry ATTR_REF. What a
 * reference value holds depends on where the entry lives:
 *   - from a connector / in a connector space: the referenced object's
 *     identifier in that system (a DN for LDAP and LDIF, the key for CSV,
 *     the `id` for SCIM);
 *   - in the metaverse: the decimal id of the referenced MV object;
 *   - in a pending export inside the store: the decimal id of the target
 *     connector-space object; the export resolves it to the target's DN or
 *     anchor (connector_ops.caps CONN_CAP_REF_BY_DN) before the connector
 *     sees it, so a connector always receives system identifiers.
 *
 * Ownership: every pointer inside an entry or change is owned by it and
 * freed by entry_free()/change_free().
 */
#ifndef IDSYNC_ENTRY_H
#define IDSYNC_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/strbuf.h"

#define ATTR_REF 0x1u /* values are references, see above */
#define ATTR_JSON                                                                                  \
    0x2u /* each value is a JSON object text (SCIM complex values such as                          \
            emails; what a Lua flow returning a table produces) */
#define ATTR_INITIAL                                                                               \
    0x8u /* a change's values from an initial flow (sent with the create only): not kept as        \
            what the target holds, not confirmed */
#define ATTR_DN                                                                                    \
    0x4u /* values are DNs by the connected directory's schema (not references):                   \
            compared as DNs, as the directory stores the form it prefers */

struct value {
    char *data; /* NUL-terminated copy; may contain NULs (binary) */
    size_t len;
};

struct attr {
    char *name;
    unsigned flags; /* ATTR_* */
    int source;     /* metaverse only: index of the inbound flow that set it
                       (lineage and precedence); -1 elsewhere */
    size_t nvals;
    size_t alloc;
    struct value *vals;
};

struct entry {
    char *type;   /* configured object type name ("user", "User"); may be NULL */
    char *anchor; /* anchor in string form; NULL for an object not yet created */
    char *dn;     /* DN or identifier in its system; may be NULL */
    size_t nattrs;
    size_t alloc;
    struct attr *attrs; /* sorted by lower-cased name once canonicalized */
};

/* Copies type, anchor, dn (each may be NULL). Never fails. */
struct entry *entry_new(const char *type, const char *anchor, const char *dn);
void entry_free(struct entry *e); /* NULL-safe */
struct entry *entry_dup(const struct entry *e);
void entry_set_anchor(struct entry *e, const char *anchor);
void entry_set_dn(struct entry *e, const char *dn);
void entry_set_type(struct entry *e, const char *type);

/* A password attribute (userPassword, unicodePwd, SCIM password, ...):
 * its values are never shown. */
bool attr_is_password(const char *name);

/* Lookup by case-insensitive name; NULL when absent. */
struct attr *entry_attr(const struct entry *e, const char *name);
/* Lookup, adding an empty attribute when absent. */
struct attr *entry_attr_add(struct entry *e, const char *name);
/* Append one value (duplicates allowed until entry_canonicalize). */
void entry_add_value(struct entry *e, const char *name, const void *data, size_t len);
void entry_add_str(struct entry *e, const char *name, const char *s);
/* Replace all values of `name` with those of `src` (copying; flags too).
 * src == NULL or with no values removes the attribute. */
void entry_set_attr(struct entry *e, const char *name, const struct attr *src);
/* dst's values replaced by src's, moved (src is left without values). */
void attr_take_values(struct attr *dst, struct attr *src);
/* entry_set_attr moving src's values instead of copying them: src keeps
 * its name and is left without values (attr_release still frees it). */
void entry_take_attr(struct entry *e, const char *name, struct attr *src);
void entry_remove_attr(struct entry *e, const char *name);
/* First value of `name` as a string, or NULL. */
const char *entry_first(const struct entry *e, const char *name);

void attr_add_value(struct attr *a, const void *data, size_t len);
/* Remove every value equal to data (byte-wise); returns how many. */
size_t attr_remove_value(struct attr *a, const void *data, size_t len);
bool attr_has_value(const struct attr *a, const void *data, size_t len);
void attr_release(struct attr *a);
void attr_copy(struct attr *dst, const struct attr *src);
/* Copies of the values of `want` that `a` (may be NULL) holds, byte-wise,
 * in want's order, appended to out. Large lists are compared sorted, not
 * value by value, as are the two below. */
void attr_values_held(const struct attr *want, const struct attr *a, struct attr *out);
/* qsort/bsearch comparator of struct value: bytes, then length. */
int value_cmp(const void *pa, const void *pb);
/* Same set of values (order and duplicates ignored), byte-wise. */
bool attr_values_equal(const struct attr *a, const struct attr *b);

/* Sort attributes by lower-cased name and values byte-wise, drop duplicate
 * values and attributes with no value. Idempotent. */
void entry_canonicalize(struct entry *e);
/* Hash of type, dn and canonical attributes (canonicalizes e first). Two
 * entries with the same hash are taken as unchanged. */
uint64_t entry_hash(struct entry *e);

/* Compact binary form for the store (canonicalizes first). */
void entry_encode(struct entry *e, struct strbuf *out);
/* Decode; IDS_EINPUT on truncated or corrupt data. *out is the caller's. */
enum ids_err entry_decode(const void *data, size_t len, struct entry **out, struct ids_error *err);

/* JSON object {"type","anchor","dn","attributes":{name:[values]}}; binary
 * (non-text) values are written as {"base64": "..."}. */
void entry_to_json(const struct entry *e, struct strbuf *out);

/* ---- changes ---------------------------------------------------------- */

enum change_op {
    CHANGE_NONE = 0,
    CHANGE_ADD,    /* create; mods are MOD_ADD of every attribute */
    CHANGE_MODIFY, /* update attributes and/or rename (new_dn) */
    CHANGE_DELETE,
};

enum mod_op {
    MOD_ADD,     /* add these values */
    MOD_DELETE,  /* delete these values; no values = delete the attribute */
    MOD_REPLACE, /* set exactly these values; no values = delete the attribute */
};

struct mod {
    enum mod_op op;
    struct attr attr;
};

struct change {
    enum change_op op;
    char *type;   /* object type */
    char *anchor; /* the object's anchor in its system; NULL for ADD */
    char *dn;     /* current DN/identifier (for ADD: the DN to create) */
    char *new_dn; /* MODIFY: rename or move to this DN; NULL when not renamed */
    size_t nmods;
    size_t alloc;
    struct mod *mods;
};

struct change *change_new(enum change_op op, const char *type, const char *anchor, const char *dn);
void change_free(struct change *c); /* NULL-safe */
struct change *change_dup(const struct change *c);
/* Append a mod with copies of `vals` (may be NULL with n == 0). */
struct mod *change_add_mod(struct change *c, enum mod_op op, const char *name, unsigned flags);
/* The values of c's first modification `op` of attribute `name` (case
 * ignored); NULL when there is none. c may be NULL. */
const struct attr *change_mod_values(const struct change *c, enum mod_op op, const char *name);
/* Number of mods plus one for a rename: 0 means the change is empty. */
size_t change_size(const struct change *c);

/* Apply c (MODIFY or ADD) to e: values added/removed/replaced, dn renamed.
 * For ADD, e receives every attribute. */
void change_apply(const struct change *c, struct entry *e);

void change_encode(const struct change *c, struct strbuf *out);
/* The operation of an encoded change (enum change_op), without decoding
 * the rest; -1 when data is not an encoded change. */
int change_encoded_op(const void *data, size_t len);
enum ids_err change_decode(const void *data, size_t len, struct change **out,
                           struct ids_error *err);
/* JSON object {"op","type","anchor","dn","new_dn","mods":[{"op","attr","values"}]} */
void change_to_json(const struct change *c, struct strbuf *out);
const char *change_op_name(enum change_op op); /* "add", "modify", "delete" */
const char *mod_op_name(enum mod_op op);       /* "add", "delete", "replace" */

/* Normalised form of a value for joins and comparisons: trimmed and
 * lower-cased (ASCII and UTF-8 aware for Latin letters). Appended to out. */
void value_normalize(struct strbuf *out, const char *data, size_t len);

#endif
