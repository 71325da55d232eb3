/* expr.h - expressions of join rules, attribute flows and scope filters.
 *
 * The language is Lua 5.4, embedded. An expression is compiled once per
 * rule (at configuration load) and run per object in a sandbox: no io, os,
 * require, debug, package, dofile, loadfile, string.dump, no loading of
 * bytecode; a bounded number of VM instructions per evaluation and a bounded
 * memory for the whole runtime. Exceeding either is an IDS_EEXPR error for
 * that object, never a crash.
 *
 * Source text is an expression, as written in YAML: `mail`,
 * `displayName or (givenName .. " " .. sn)`, `base64(objectGUID)`,
 * `{ {value = mail, type = "work", primary = true} }`. It is compiled as
 * `return <source>`; when that does not compile it is compiled as a chunk
 * (a block with its own `return`) so that longer rules can use locals.
 *
 * Names: a global name that is not a helper resolves to the object's
 * attribute of that name (case-insensitive): nil when absent, a string when
 * it has one value, a list (Lua sequence) of strings when it has several.
 * Attribute names that are not Lua identifiers are read with attr("name")
 * (which always returns a string or nil: the first value), and values("name")
 * always returns a list (possibly empty). `_dn`, `_anchor` and `_type` are
 * the object's DN, anchor and type.
 *
 * Helpers: base64(s), unbase64(s), guid(s) (16 objectGUID bytes -> GUID
 * string, or GUID string -> 16 bytes), sid(s) (binary SID -> S-1-5-...),
 * lower, upper, trim, split(s, sep) -> list, join(list, sep), first(v)
 * (first value of a list, or v), coalesce(a, b, ...) (first non-nil,
 * non-empty), replace(s, from, to) (plain text, every occurrence),
 * left(s, n), right(s, n), contains(list_or_s, x), count(v),
 * dn_rdn(dn) -> value of the first RDN, dn_parent(dn), dn_escape(s)
 * (RFC 4514 value escaping), parse_time(s[, layout]) -> seconds since 1970
 * UTC (ISO 8601 or generalized time; layout tokens YYYY MM DD hh mm ss M D
 * h), format_time(t, layout), filetime(t) / from_filetime(s) (AD
 * FILETIME), random_password([n]) (getrandom; never constant, only for
 * initial flows), plus the safe parts of string, table, math,
 * utf8. A helper given nil returns nil (so flows of absent attributes give
 * no value instead of failing).
 *
 * Results: nil -> no value; string/number/boolean -> one value (booleans as
 * "true"/"false", integers without ".0"); a sequence -> one value per
 * element (nils skipped); a table with string keys -> one value holding its
 * JSON text, and the result attr gets ATTR_JSON.
 */
#ifndef IDSYNC_EXPR_H
#define IDSYNC_EXPR_H

#include <stdbool.h>

#include "entry.h"
#include "util/error.h"
#include "util/strvec.h"

struct expr_env;
struct expr;

/* Limits of one runtime; 0 = default. */
struct expr_limits {
    long max_instructions; /* per evaluation; default 1,000,000 */
    size_t max_memory;     /* bytes for the whole runtime; default 64 MiB */
};

enum ids_err expr_env_new(const struct expr_limits *limits, struct expr_env **out,
                          struct ids_error *err);
void expr_env_free(struct expr_env *env); /* NULL-safe; frees every expr compiled in it */

/* Compile `src`. `what` names the rule in error messages
 * ("metaverse.person.from[0].flow.displayName"). IDS_EEXPR with the Lua
 * message on a syntax error. The expr belongs to env. */
enum ids_err expr_compile(struct expr_env *env, const char *src, const char *what,
                          struct expr **out, struct ids_error *err);
/* NULL-safe; optional (env frees all). */
void expr_free(struct expr *e);

/* True when src is a bare attribute name (a plain copy). */
bool expr_is_plain(const char *src);
/* Free names the expression reads (attribute names, lower-cased, without
 * helpers, keywords, locals and the `_dn`-style names; names given to
 * attr()/values() with a literal string are included). Appended to out. */
void expr_names(const struct expr *e, struct strvec *out);
const char *expr_source(const struct expr *e);
const char *expr_what(const struct expr *e);
/* Reads no name (no attribute, no helper): its value was computed once at
 * compile time and every evaluation copies it. */
bool expr_is_constant(const struct expr *e);

/* Evaluate against `obj` (read only). The result values are appended to
 * `result` (an attr the caller initialised, e.g. zeroed with a name), with
 * ATTR_JSON set for table results. IDS_EEXPR on a runtime error or limit,
 * message "WHAT: `SRC`: lua message". */
enum ids_err expr_eval(struct expr *e, const struct entry *obj, struct attr *result,
                       struct ids_error *err);
/* Evaluate as a condition (scope filters): nil and false are false, anything
 * else true. */
enum ids_err expr_eval_bool(struct expr *e, const struct entry *obj, bool *result,
                            struct ids_error *err);

#endif
