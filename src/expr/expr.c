/* expr.c - Lua 5.4 expressions for joins, flows and scopes, in a sandbox.
 *
 * One lua_State per struct expr_env. Each expression is compiled once into
 * a function kept in the registry. An evaluation gives that function a fresh
 * environment table whose metatable resolves globals: helpers first, then
 * `_dn`/`_anchor`/`_type`, then the object's attributes. Everything that can
 * raise a Lua error runs inside lua_pcall; results are converted with calls
 * that cannot raise. See docs/internals/expr.md.
 */
#include "expr/expr.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <strings.h>

#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "util/codec.h"
#include "util/mem.h"
#include "util/strbuf.h"
#include "util/banned.h"

#define EXPR_DEFAULT_INSTRUCTIONS 1000000L
#define EXPR_DEFAULT_MEMORY       ((size_t)64 << 20)
#define EXPR_HOOK_STEP            1000L
#define EXPR_RESULT_DEPTH         32  /* nesting of tables in a result */
#define EXPR_MSG_WHAT_MAX         200 /* bytes of `what` in a message */
#define EXPR_MSG_SRC_MAX          160 /* bytes of source quoted in a message */
#define EXPR_MSG_LUA_MAX          320 /* bytes of the Lua message */
#define EXPR_SCRATCH_KEEP         (1u << 20)

struct expr {
    struct expr_env *env;
    char *src;            /* as written */
    char *what;           /* rule name for messages */
    int ref;              /* registry reference of the compiled function */
    size_t index;         /* position in env->exprs */
    bool is_const;        /* reads no name: its value, computed at compile */
    struct attr constant; /* that value (is_const) */
};

struct expr_env {
    lua_State *L;
    size_t mem_used;
    size_t mem_max;
    long max_instructions;
    long budget;             /* instructions left in the current evaluation */
    bool limit_hit;          /* the instruction limit fired */
    bool mem_error;          /* a memory error was seen (maybe caught by pcall) */
    bool probe;              /* evaluating with an environment that refuses every name */
    const struct entry *obj; /* object of the current evaluation; NULL between */
    int helpers_ref;         /* registry: table name -> helper */
    int meta_ref;            /* registry: metatable of evaluation environments */
    struct strbuf scratch;   /* helpers' work buffer (never leaks on a Lua error) */
    size_t nexprs;
    size_t alloc;
    struct expr **exprs; /* every expr compiled here (NULL after expr_free) */
};

/* ---- names --------------------------------------------------------------- */

static const char *const lua_keywords[] = {
    "and",      "break",  "do",   "else", "elseif", "end",   "false", "for",
    "function", "goto",   "if",   "in",   "local",  "nil",   "not",   "or",
    "repeat",   "return", "then", "true", "until",  "while", NULL,
};

/* Names that are never attributes: helpers, base functions, libraries (also
 * those the sandbox does not offer, so that `os.time()` is not taken for an
 * attribute read), and the object's own fields. */
static const char *const reserved_names[] = {
    /* helpers */
    "attr",
    "values",
    "base64",
    "unbase64",
    "guid",
    "sid",
    "lower",
    "upper",
    "trim",
    "split",
    "join",
    "first",
    "coalesce",
    "replace",
    "left",
    "right",
    "contains",
    "count",
    "dn_rdn",
    "dn_parent",
    "dn_escape",
    "parse_time",
    "format_time",
    "filetime",
    "from_filetime",
    "random_password",
    /* base functions offered */
    "assert",
    "error",
    "ipairs",
    "next",
    "pairs",
    "pcall",
    "select",
    "tonumber",
    "tostring",
    "type",
    "rawequal",
    "rawlen",
    "load",
    /* libraries and functions not offered */
    "string",
    "table",
    "math",
    "utf8",
    "io",
    "os",
    "debug",
    "package",
    "coroutine",
    "require",
    "dofile",
    "loadfile",
    "print",
    "collectgarbage",
    "getmetatable",
    "setmetatable",
    "rawget",
    "rawset",
    "xpcall",
    "_G",
    "_ENV",
    "_VERSION",
    "self",
    /* object fields */
    "_dn",
    "_anchor",
    "_type",
    NULL,
};

static bool in_list(const char *const *list, const char *s, size_t len)
{
    size_t i;

    for (i = 0; list[i] != NULL; i++) {
        if (strlen(list[i]) == len && memcmp(list[i], s, len) == 0) {
            return true;
        }
    }
    return false;
}

static bool is_ident_start(int c)
{
    return isalpha(c) || c == '_';
}

static bool is_ident_char(int c)
{
    return isalnum(c) || c == '_';
}

/* Trimmed view of src. */
static void trim_view(const char *src, const char **s, size_t *len)
{
    const char *p = src;
    const char *end = src + strlen(src);

    while (p < end && isspace((unsigned char)*p)) {
        p++;
    }
    while (end > p && isspace((unsigned char)end[-1])) {
        end--;
    }
    *s = p;
    *len = (size_t)(end - p);
}

/* An LDAP-style attribute name with a hyphen (msDS-ConsistencyGuid): not a
 * Lua identifier, but a bare attribute name all the same. */
static bool is_hyphen_name(const char *s, size_t len)
{
    size_t i;
    bool hyphen = false;

    if (len == 0 || !isalpha((unsigned char)s[0]) || s[len - 1] == '-') {
        return false;
    }
    for (i = 0; i < len; i++) {
        if (s[i] == '-') {
            if (s[i + 1] == '-') {
                return false; /* a Lua comment */
            }
            hyphen = true;
        } else if (!isalnum((unsigned char)s[i])) {
            return false;
        }
    }
    return hyphen;
}

static bool is_lua_name(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || !is_ident_start((unsigned char)s[0])) {
        return false;
    }
    for (i = 1; i < len; i++) {
        if (!is_ident_char((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

bool expr_is_plain(const char *src)
{
    const char *s;
    size_t len;

    if (src == NULL) {
        return false;
    }
    trim_view(src, &s, &len);
    if (is_hyphen_name(s, len)) {
        return true;
    }
    return is_lua_name(s, len) && !in_list(lua_keywords, s, len) &&
           !in_list(reserved_names, s, len);
}

/* ---- tokenizer for expr_names ------------------------------------------- */

enum tok_kind { TK_NAME, TK_STRING, TK_NUMBER, TK_OP };

struct tok {
    enum tok_kind kind;
    const char *s; /* NAME: the name; STRING: the contents; OP: the operator */
    size_t len;
};

struct toks {
    size_t nr;
    size_t alloc;
    struct tok *v;
};

static void tok_push(struct toks *t, enum tok_kind kind, const char *s, size_t len)
{
    ALLOC_GROW(t->v, t->nr + 1, t->alloc);
    t->v[t->nr].kind = kind;
    t->v[t->nr].s = s;
    t->v[t->nr].len = len;
    t->nr++;
}

/* At p == '[': level of a long bracket `[==[`, or -1 when it is not one. */
static long long_bracket_level(const char *p)
{
    long level = 0;

    if (*p != '[') {
        return -1;
    }
    p++;
    while (*p == '=') {
        level++;
        p++;
    }
    return *p == '[' ? level : -1;
}

/* Skip a long bracket of `level` starting at p ('['); returns the position
 * after its end (or the end of the text); contents in *cs and *clen. */
static const char *skip_long(const char *p, long level, const char **cs, size_t *clen)
{
    const char *q = p + level + 2;

    *cs = q;
    while (*q) {
        if (*q == ']') {
            const char *r = q + 1;
            long n = 0;

            while (*r == '=') {
                n++;
                r++;
            }
            if (n == level && *r == ']') {
                *clen = (size_t)(q - *cs);
                return r + 1;
            }
        }
        q++;
    }
    *clen = (size_t)(q - *cs);
    return q;
}

static void tokenize(const char *src, struct toks *out)
{
    static const char *const ops3[] = {"...", NULL};
    static const char *const ops2[] = {"..", "::", "==", "~=", "<=", ">=", "//", "<<", ">>", NULL};
    const char *p = src;

    while (*p) {
        unsigned char c = (unsigned char)*p;

        if (isspace(c)) {
            p++;
        } else if (c == '-' && p[1] == '-') {
            long level = long_bracket_level(p + 2);

            if (level >= 0) {
                const char *cs;
                size_t clen;

                p = skip_long(p + 2, level, &cs, &clen);
            } else {
                while (*p && *p != '\n') {
                    p++;
                }
            }
        } else if (c == '"' || c == '\'') {
            const char *start = ++p;

            while (*p && *p != (char)c && *p != '\n') {
                if (*p == '\\' && p[1] != '\0') {
                    p++;
                }
                p++;
            }
            tok_push(out, TK_STRING, start, (size_t)(p - start));
            if (*p == (char)c) {
                p++;
            }
        } else if (c == '[' && long_bracket_level(p) >= 0) {
            const char *cs;
            size_t clen;

            p = skip_long(p, long_bracket_level(p), &cs, &clen);
            tok_push(out, TK_STRING, cs, clen);
        } else if (isdigit(c) || (c == '.' && isdigit((unsigned char)p[1]))) {
            const char *start = p;

            while (isalnum((unsigned char)*p) || *p == '.' || *p == '_' ||
                   ((*p == '+' || *p == '-') && strchr("eEpP", p[-1]) != NULL)) {
                p++;
            }
            tok_push(out, TK_NUMBER, start, (size_t)(p - start));
        } else if (is_ident_start(c)) {
            const char *start = p;

            while (is_ident_char((unsigned char)*p)) {
                p++;
            }
            tok_push(out, TK_NAME, start, (size_t)(p - start));
        } else {
            size_t n = 1;
            size_t i;

            for (i = 0; ops3[i] != NULL; i++) {
                if (strncmp(p, ops3[i], 3) == 0) {
                    n = 3;
                }
            }
            for (i = 0; n == 1 && ops2[i] != NULL; i++) {
                if (strncmp(p, ops2[i], 2) == 0) {
                    n = 2;
                }
            }
            tok_push(out, TK_OP, p, n);
            p += n;
        }
    }
}

static bool tok_is(const struct toks *t, size_t i, enum tok_kind kind, const char *s)
{
    return i < t->nr && t->v[i].kind == kind && t->v[i].len == strlen(s) &&
           memcmp(t->v[i].s, s, t->v[i].len) == 0;
}

static void push_name_lower(struct strvec *out, const char *s, size_t len)
{
    char *name = xmemdup(s, len);
    size_t i;

    for (i = 0; i < len; i++) {
        name[i] = (char)tolower((unsigned char)name[i]);
    }
    if (len == 0 || strvec_find(out, name, true) >= 0) {
        free(name);
        return;
    }
    strvec_push_nodup(out, name);
}

/* Names declared as locals anywhere in the expression (parameters, for
 * variables, local statements, function names). Scopes are not tracked: a
 * name declared anywhere is taken as local everywhere. */
static void collect_locals(const struct toks *t, struct strvec *locals)
{
    size_t i;
    size_t j;

    for (i = 0; i < t->nr; i++) {
        if (tok_is(t, i, TK_NAME, "local") || tok_is(t, i, TK_NAME, "for")) {
            j = i + 1;
            if (tok_is(t, j, TK_NAME, "function")) {
                continue; /* handled as a function below */
            }
            while (j < t->nr && t->v[j].kind == TK_NAME) {
                strvec_pushn(locals, t->v[j].s, t->v[j].len);
                j++;
                if (tok_is(t, j, TK_OP, "<")) { /* <const>, <close> */
                    j += 3;
                }
                if (!tok_is(t, j, TK_OP, ",")) {
                    break;
                }
                j++;
            }
        } else if (tok_is(t, i, TK_NAME, "function")) {
            j = i + 1;
            /* function a.b:c (params) */
            while (j < t->nr && (t->v[j].kind == TK_NAME || tok_is(t, j, TK_OP, ".") ||
                                 tok_is(t, j, TK_OP, ":"))) {
                if (t->v[j].kind == TK_NAME) {
                    strvec_pushn(locals, t->v[j].s, t->v[j].len);
                }
                j++;
            }
            if (!tok_is(t, j, TK_OP, "(")) {
                continue;
            }
            for (j++; j < t->nr && !tok_is(t, j, TK_OP, ")"); j++) {
                if (t->v[j].kind == TK_NAME) {
                    strvec_pushn(locals, t->v[j].s, t->v[j].len);
                }
            }
        }
    }
}

static void names_of_source(const char *src, struct strvec *out)
{
    struct toks t = {0, 0, NULL};
    struct strvec locals = STRVEC_INIT;
    const char *s;
    size_t len;
    size_t i;

    trim_view(src, &s, &len);
    if (is_hyphen_name(s, len)) {
        push_name_lower(out, s, len);
        return;
    }
    tokenize(src, &t);
    collect_locals(&t, &locals);
    for (i = 0; i < t.nr; i++) {
        const struct tok *k = &t.v[i];
        char *name;
        bool skip;

        if (k->kind != TK_NAME) {
            continue;
        }
        if (i > 0 && (tok_is(&t, i - 1, TK_OP, ".") || tok_is(&t, i - 1, TK_OP, ":") ||
                      tok_is(&t, i - 1, TK_OP, "::") || tok_is(&t, i - 1, TK_NAME, "goto"))) {
            continue; /* field, method or label */
        }
        if ((k->len == 4 && memcmp(k->s, "attr", 4) == 0) ||
            (k->len == 6 && memcmp(k->s, "values", 6) == 0)) {
            size_t j = i + 1;

            if (tok_is(&t, j, TK_OP, "(")) {
                j++;
            }
            if (j < t.nr && t.v[j].kind == TK_STRING) {
                push_name_lower(out, t.v[j].s, t.v[j].len);
            }
            continue;
        }
        if (tok_is(&t, i + 1, TK_OP, "=")) {
            continue; /* assignment target or table field key */
        }
        if (in_list(lua_keywords, k->s, k->len) || in_list(reserved_names, k->s, k->len)) {
            continue;
        }
        name = xmemdup(k->s, k->len);
        skip = strvec_find(&locals, name, false) >= 0;
        free(name);
        if (!skip) {
            push_name_lower(out, k->s, k->len);
        }
    }
    strvec_clear(&locals);
    free(t.v);
}

void expr_names(const struct expr *e, struct strvec *out)
{
    if (e == NULL) {
        return;
    }
    names_of_source(e->src, out);
}

const char *expr_source(const struct expr *e)
{
    return e->src;
}

const char *expr_what(const struct expr *e)
{
    return e->what;
}

/* ---- runtime ------------------------------------------------------------- */

static struct expr_env *env_of(lua_State *L)
{
    return *(struct expr_env **)lua_getextraspace(L);
}

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct expr_env *env = ud;
    size_t old = ptr != NULL ? osize : 0;
    void *p;

    if (nsize == 0) {
        free(ptr);
        env->mem_used -= old;
        return NULL;
    }
    if (nsize > old && env->mem_used + (nsize - old) > env->mem_max) {
        return NULL;
    }
    p = realloc(ptr, nsize);
    if (p == NULL) {
        return NULL;
    }
    env->mem_used = env->mem_used - old + nsize;
    return p;
}

static int panic_handler(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);

    fprintf(stderr, "idsync: fatal error in the expression runtime: %s\n",
            msg != NULL ? msg : "(no message)");
    abort();
    return 0;
}

static void count_hook(lua_State *L, lua_Debug *ar)
{
    struct expr_env *env = env_of(L);

    (void)ar;
    env->budget -= EXPR_HOOK_STEP < env->max_instructions ? EXPR_HOOK_STEP : env->max_instructions;
    if (env->budget <= 0) {
        env->limit_hit = true;
        luaL_error(L, "instruction limit exceeded (%I instructions)",
                   (lua_Integer)env->max_instructions);
    }
}

static void push_env_table(lua_State *L)
{
    struct expr_env *env = env_of(L);

    lua_createtable(L, 0, 4);
    lua_rawgeti(L, LUA_REGISTRYINDEX, env->meta_ref);
    lua_setmetatable(L, -2);
}

/* Push the value of attribute `name` of the current object: nil, a string,
 * or a list of strings. With `as_list` always a list; with `first_only`
 * always a string or nil. */
static void push_attr(lua_State *L, const char *name, bool as_list, bool first_only)
{
    struct expr_env *env = env_of(L);
    const struct attr *a = env->obj != NULL ? entry_attr(env->obj, name) : NULL;
    size_t n = a != NULL ? a->nvals : 0;
    size_t i;

    if (first_only || (!as_list && n <= 1)) {
        if (n == 0) {
            lua_pushnil(L);
        } else {
            lua_pushlstring(L, a->vals[0].data, a->vals[0].len);
        }
        return;
    }
    lua_createtable(L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
    for (i = 0; i < n; i++) {
        lua_pushlstring(L, a->vals[i].data, a->vals[i].len);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* __index of evaluation environments: helpers, object fields, attributes. */
static int env_index(lua_State *L)
{
    struct expr_env *env = env_of(L);
    const char *key;

    if (lua_type(L, 2) != LUA_TSTRING) {
        lua_pushnil(L);
        return 1;
    }
    key = lua_tostring(L, 2);
    lua_rawgeti(L, LUA_REGISTRYINDEX, env->helpers_ref);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, -2) != LUA_TNIL) {
        return 1;
    }
    lua_pop(L, 2);
    if (strcmp(key, "_dn") == 0 || strcmp(key, "_anchor") == 0 || strcmp(key, "_type") == 0) {
        const char *v = NULL;

        if (env->obj != NULL) {
            v = key[1] == 'd' ? env->obj->dn : key[1] == 'a' ? env->obj->anchor : env->obj->type;
        }
        if (v != NULL) {
            lua_pushstring(L, v);
        } else {
            lua_pushnil(L);
        }
        return 1;
    }
    push_attr(L, key, false, false);
    if (!lua_isnil(L, -1)) {
        /* cache for the rest of this evaluation */
        lua_pushvalue(L, 2);
        lua_pushvalue(L, -2);
        lua_rawset(L, 1);
    }
    return 1;
}

static int readonly_newindex(lua_State *L)
{
    return luaL_error(L, "the standard libraries are read-only");
}

/* ---- helpers ------------------------------------------------------------- */

/* One string -> one value (pushed). Extra arguments are at stack index 2... */
typedef void (*str_fn)(lua_State *L, const char *s, size_t len);

/* Apply fn to argument 1: nil -> nil, a string (or number) -> fn's result,
 * a list -> a list of fn's results. */
static int apply_str(lua_State *L, const char *name, str_fn fn)
{
    int t = lua_type(L, 1);
    size_t len;
    const char *s;

    if (t == LUA_TNIL || t == LUA_TNONE) {
        lua_pushnil(L);
        return 1;
    }
    if (t == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
        lua_Integer i;
        lua_Integer j = 1;
        int out;

        lua_createtable(L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
        out = lua_gettop(L);
        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, 1, i);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                continue;
            }
            if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
                return luaL_error(L,
                                  "bad argument #1 to '%s' (list of strings expected, got %s "
                                  "element)",
                                  name, luaL_typename(L, -1));
            }
            s = lua_tolstring(L, -1, &len);
            fn(L, s, len);
            lua_remove(L, -2);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                continue;
            }
            lua_rawseti(L, out, j++);
        }
        return 1;
    }
    if (t != LUA_TSTRING && t != LUA_TNUMBER) {
        return luaL_error(L, "bad argument #1 to '%s' (string expected, got %s)", name,
                          luaL_typename(L, 1));
    }
    s = lua_tolstring(L, 1, &len);
    fn(L, s, len);
    return 1;
}

static struct strbuf *scratch(lua_State *L)
{
    struct expr_env *env = env_of(L);

    strbuf_reset(&env->scratch);
    return &env->scratch;
}

static void push_scratch(lua_State *L)
{
    struct expr_env *env = env_of(L);

    lua_pushlstring(L, env->scratch.buf, env->scratch.len);
}

static void fn_base64(lua_State *L, const char *s, size_t len)
{
    base64_encode(scratch(L), s, len);
    push_scratch(L);
}

static void fn_unbase64(lua_State *L, const char *s, size_t len)
{
    if (base64_decode(scratch(L), s, len) != IDS_OK) {
        luaL_error(L, "unbase64: not valid base64");
    }
    push_scratch(L);
}

static void fn_guid(lua_State *L, const char *s, size_t len)
{
    enum ids_err rc;

    if (len == 16) {
        rc = guid_to_string(scratch(L), s, len);
    } else {
        rc = strlen(s) == len ? guid_from_string(scratch(L), s) : IDS_EINPUT;
    }
    if (rc != IDS_OK) {
        luaL_error(L, "guid: expected 16 bytes or a GUID string");
    }
    push_scratch(L);
}

static void fn_sid(lua_State *L, const char *s, size_t len)
{
    if (len > 2 && (s[0] == 'S' || s[0] == 's') && s[1] == '-') {
        lua_pushlstring(L, s, len); /* already a string SID */
        return;
    }
    if (sid_to_string(scratch(L), s, len) != IDS_OK) {
        luaL_error(L, "sid: not a binary SID");
    }
    push_scratch(L);
}

/* Case mapping of one code point (ASCII, Latin-1, Latin Extended-A, Greek,
 * Cyrillic); other code points are unchanged. */
static uint32_t map_case(uint32_t cp, bool upper)
{
    if (cp < 0x80) {
        return (uint32_t)(upper ? toupper((int)cp) : tolower((int)cp));
    }
    if (!upper && cp >= 0xc0 && cp <= 0xde && cp != 0xd7) {
        return cp + 0x20;
    }
    if (upper && cp >= 0xe0 && cp <= 0xfe && cp != 0xf7) {
        return cp - 0x20;
    }
    if ((cp >= 0x100 && cp <= 0x137) || (cp >= 0x14a && cp <= 0x177)) {
        return upper ? (cp & ~1u) : (cp | 1u);
    }
    if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17e)) {
        /* odd code points are capitals here */
        if (upper) {
            return (cp & 1u) ? cp : cp - 1;
        }
        return (cp & 1u) ? cp + 1 : cp;
    }
    if (!upper && cp >= 0x391 && cp <= 0x3a9 && cp != 0x3a2) {
        return cp + 0x20;
    }
    if (upper && cp >= 0x3b1 && cp <= 0x3c9 && cp != 0x3c2) {
        return cp - 0x20;
    }
    if (!upper && cp >= 0x410 && cp <= 0x42f) {
        return cp + 0x20;
    }
    if (upper && cp >= 0x430 && cp <= 0x44f) {
        return cp - 0x20;
    }
    if (!upper && cp >= 0x400 && cp <= 0x40f) {
        return cp + 0x50;
    }
    if (upper && cp >= 0x450 && cp <= 0x45f) {
        return cp - 0x50;
    }
    return cp;
}

static void change_case(lua_State *L, const char *s, size_t len, bool upper)
{
    struct strbuf *sb = scratch(L);
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    strbuf_grow(sb, len);
    while (i < len) {
        if (p[i] < 0x80) {
            strbuf_addch(sb, (int)map_case(p[i], upper));
            i++;
        } else if ((p[i] & 0xe0) == 0xc0 && i + 1 < len && (p[i + 1] & 0xc0) == 0x80) {
            /* two-byte sequences map to two-byte sequences in these ranges */
            uint32_t cp = (uint32_t)(p[i] & 0x1f) << 6 | (p[i + 1] & 0x3f);
            uint32_t m = cp >= 0x80 ? map_case(cp, upper) : cp;

            strbuf_addch(sb, (int)(0xc0 | (m >> 6)));
            strbuf_addch(sb, (int)(0x80 | (m & 0x3f)));
            i += 2;
        } else {
            strbuf_addch(sb, p[i]);
            i++;
        }
    }
    push_scratch(L);
}

static void fn_lower(lua_State *L, const char *s, size_t len)
{
    change_case(L, s, len, false);
}

static void fn_upper(lua_State *L, const char *s, size_t len)
{
    change_case(L, s, len, true);
}

static void fn_trim(lua_State *L, const char *s, size_t len)
{
    while (len > 0 && isspace((unsigned char)s[0])) {
        s++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)s[len - 1])) {
        len--;
    }
    lua_pushlstring(L, s, len);
}

static void fn_replace(lua_State *L, const char *s, size_t len)
{
    size_t flen;
    size_t tlen;
    const char *from = luaL_checklstring(L, 2, &flen);
    const char *to = luaL_optlstring(L, 3, "", &tlen);
    struct strbuf *sb;
    size_t i = 0;

    if (flen == 0) {
        lua_pushlstring(L, s, len);
        return;
    }
    sb = scratch(L);
    while (i < len) {
        const char *hit = memmem(s + i, len - i, from, flen);

        if (hit == NULL) {
            strbuf_add(sb, s + i, len - i);
            break;
        }
        strbuf_add(sb, s + i, (size_t)(hit - (s + i)));
        strbuf_add(sb, to, tlen);
        i = (size_t)(hit - s) + flen;
    }
    push_scratch(L);
}

/* Byte offset of the n-th character (UTF-8 when s is valid UTF-8, else bytes). */
static size_t char_offset(const char *s, size_t len, lua_Integer n, bool utf8)
{
    size_t i = 0;

    if (!utf8) {
        return (lua_Integer)len < n ? len : (size_t)n;
    }
    while (i < len && n > 0) {
        i++;
        while (i < len && ((unsigned char)s[i] & 0xc0) == 0x80) {
            i++;
        }
        n--;
    }
    return i;
}

static size_t char_count(const char *s, size_t len, bool utf8)
{
    size_t n = 0;
    size_t i;

    if (!utf8) {
        return len;
    }
    for (i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80) {
            n++;
        }
    }
    return n;
}

static void fn_left(lua_State *L, const char *s, size_t len)
{
    lua_Integer n = luaL_checkinteger(L, 2);

    if (n <= 0) {
        lua_pushliteral(L, "");
        return;
    }
    lua_pushlstring(L, s, char_offset(s, len, n, utf8_valid(s, len)));
}

static void fn_right(lua_State *L, const char *s, size_t len)
{
    lua_Integer n = luaL_checkinteger(L, 2);
    bool utf8 = utf8_valid(s, len);
    size_t total = char_count(s, len, utf8);
    size_t start;

    if (n <= 0) {
        lua_pushliteral(L, "");
        return;
    }
    if ((lua_Integer)total <= n) {
        lua_pushlstring(L, s, len);
        return;
    }
    start = char_offset(s, len, (lua_Integer)total - n, utf8);
    lua_pushlstring(L, s + start, len - start);
}

static int hexdigit(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = tolower(c);
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

/* End of the first RDN of dn (offset of its ',' or ';' separator, or len). */
static size_t rdn_end(const char *s, size_t len)
{
    size_t i;
    bool quoted = false;

    for (i = 0; i < len; i++) {
        if (s[i] == '\\' && i + 1 < len) {
            i++;
        } else if (s[i] == '"') {
            quoted = !quoted;
        } else if (!quoted && (s[i] == ',' || s[i] == ';')) {
            return i;
        }
    }
    return len;
}

static void fn_dn_rdn(lua_State *L, const char *s, size_t len)
{
    struct strbuf *sb;
    size_t end = rdn_end(s, len);
    size_t i = 0;
    bool quoted = false;

    while (i < end && s[i] != '=') {
        if (s[i] == '\\') {
            i++;
        }
        i++;
    }
    if (i >= end) {
        luaL_error(L, "dn_rdn: not a DN");
    }
    i++;
    while (i < end && s[i] == ' ') {
        i++;
    }
    sb = scratch(L);
    for (; i < end; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '\\' && i + 1 < end) {
            int hi = hexdigit((unsigned char)s[i + 1]);
            int lo = i + 2 < end ? hexdigit((unsigned char)s[i + 2]) : -1;

            if (hi >= 0 && lo >= 0) {
                strbuf_addch(sb, hi << 4 | lo);
                i += 2;
            } else {
                strbuf_addch(sb, (unsigned char)s[i + 1]);
                i++;
            }
        } else if (c == '"') {
            quoted = !quoted;
        } else if (c == '+' && !quoted) {
            break; /* multi-valued RDN: the first value */
        } else {
            strbuf_addch(sb, c);
        }
    }
    /* unescaped trailing spaces are not part of the value */
    while (sb->len > 0 && sb->buf[sb->len - 1] == ' ' &&
           !(sb->len >= 2 && sb->buf[sb->len - 2] == '\\')) {
        strbuf_setlen(sb, sb->len - 1);
    }
    push_scratch(L);
}

static void fn_dn_parent(lua_State *L, const char *s, size_t len)
{
    size_t end = rdn_end(s, len);

    if (end >= len) {
        lua_pushliteral(L, "");
        return;
    }
    end++;
    while (end < len && s[end] == ' ') {
        end++;
    }
    lua_pushlstring(L, s + end, len - end);
}

static void fn_dn_escape(lua_State *L, const char *s, size_t len)
{
    struct strbuf *sb = scratch(L);
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '\0') {
            strbuf_addstr(sb, "\\00");
        } else if (strchr("\"+,;<>\\", c) != NULL || (i == 0 && (c == ' ' || c == '#')) ||
                   (i == len - 1 && c == ' ')) {
            strbuf_addch(sb, '\\');
            strbuf_addch(sb, c);
        } else {
            strbuf_addch(sb, c);
        }
    }
    push_scratch(L);
}

static int h_base64(lua_State *L)
{
    return apply_str(L, "base64", fn_base64);
}

static int h_unbase64(lua_State *L)
{
    return apply_str(L, "unbase64", fn_unbase64);
}

static int h_guid(lua_State *L)
{
    return apply_str(L, "guid", fn_guid);
}

static int h_sid(lua_State *L)
{
    return apply_str(L, "sid", fn_sid);
}

static int h_lower(lua_State *L)
{
    return apply_str(L, "lower", fn_lower);
}

static int h_upper(lua_State *L)
{
    return apply_str(L, "upper", fn_upper);
}

static int h_trim(lua_State *L)
{
    return apply_str(L, "trim", fn_trim);
}

static int h_replace(lua_State *L)
{
    return apply_str(L, "replace", fn_replace);
}

static int h_left(lua_State *L)
{
    return apply_str(L, "left", fn_left);
}

static int h_right(lua_State *L)
{
    return apply_str(L, "right", fn_right);
}

static int h_dn_rdn(lua_State *L)
{
    return apply_str(L, "dn_rdn", fn_dn_rdn);
}

static int h_dn_parent(lua_State *L)
{
    return apply_str(L, "dn_parent", fn_dn_parent);
}

static int h_dn_escape(lua_State *L)
{
    return apply_str(L, "dn_escape", fn_dn_escape);
}

static int h_split(lua_State *L)
{
    size_t len;
    size_t seplen;
    const char *s;
    const char *sep;
    size_t i = 0;
    lua_Integer n = 1;

    if (lua_isnoneornil(L, 1)) {
        lua_pushnil(L);
        return 1;
    }
    s = luaL_checklstring(L, 1, &len);
    sep = luaL_checklstring(L, 2, &seplen);
    luaL_argcheck(L, seplen > 0, 2, "empty separator");
    lua_newtable(L);
    for (;;) {
        const char *hit = memmem(s + i, len - i, sep, seplen);
        size_t end = hit != NULL ? (size_t)(hit - s) : len;

        lua_pushlstring(L, s + i, end - i);
        lua_rawseti(L, -2, n++);
        if (hit == NULL) {
            break;
        }
        i = end + seplen;
    }
    return 1;
}

static int h_join(lua_State *L)
{
    size_t seplen;
    const char *sep = luaL_optlstring(L, 2, "", &seplen);
    luaL_Buffer b;
    lua_Integer n;
    lua_Integer i;
    bool any = false;

    switch (lua_type(L, 1)) {
    case LUA_TNIL:
    case LUA_TNONE:
        lua_pushnil(L);
        return 1;
    case LUA_TSTRING:
    case LUA_TNUMBER:
        luaL_tolstring(L, 1, NULL);
        return 1;
    case LUA_TTABLE:
        break;
    default:
        return luaL_error(L, "bad argument #1 to 'join' (list expected, got %s)",
                          luaL_typename(L, 1));
    }
    n = (lua_Integer)lua_rawlen(L, 1);
    luaL_buffinit(L, &b);
    for (i = 1; i <= n; i++) {
        int t = lua_rawgeti(L, 1, i);

        if (t == LUA_TNIL) {
            lua_pop(L, 1);
            continue;
        }
        if (t != LUA_TSTRING && t != LUA_TNUMBER) {
            return luaL_error(L,
                              "bad argument #1 to 'join' (list of strings expected, got %s "
                              "element)",
                              lua_typename(L, t));
        }
        if (any) {
            luaL_addlstring(&b, sep, seplen);
        }
        luaL_addvalue(&b);
        any = true;
    }
    luaL_pushresult(&b);
    return 1;
}

static int h_first(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TTABLE) {
        lua_rawgeti(L, 1, 1);
        return 1;
    }
    lua_settop(L, 1);
    return 1;
}

static bool is_empty_value(lua_State *L, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
    case LUA_TNONE:
        return true;
    case LUA_TSTRING:
        return lua_rawlen(L, idx) == 0;
    case LUA_TTABLE:
        lua_pushnil(L);
        if (lua_next(L, idx) == 0) {
            return true;
        }
        lua_pop(L, 2);
        return false;
    default:
        return false;
    }
}

static int h_coalesce(lua_State *L)
{
    int n = lua_gettop(L);
    int i;

    for (i = 1; i <= n; i++) {
        if (!is_empty_value(L, i)) {
            lua_pushvalue(L, i);
            return 1;
        }
    }
    lua_pushnil(L);
    return 1;
}

static int h_contains(lua_State *L)
{
    size_t xlen;
    size_t len;
    const char *x;
    const char *s;
    lua_Integer n;
    lua_Integer i;

    if (lua_isnoneornil(L, 1) || lua_isnoneornil(L, 2)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    x = luaL_checklstring(L, 2, &xlen);
    if (lua_type(L, 1) == LUA_TTABLE) {
        n = (lua_Integer)lua_rawlen(L, 1);
        for (i = 1; i <= n; i++) {
            int t = lua_rawgeti(L, 1, i);

            if (t == LUA_TSTRING || t == LUA_TNUMBER) {
                s = lua_tolstring(L, -1, &len);
                if (len == xlen && memcmp(s, x, len) == 0) {
                    lua_pushboolean(L, 1);
                    return 1;
                }
            }
            lua_pop(L, 1);
        }
        lua_pushboolean(L, 0);
        return 1;
    }
    s = luaL_checklstring(L, 1, &len);
    lua_pushboolean(L, xlen == 0 || memmem(s, len, x, xlen) != NULL);
    return 1;
}

static int h_count(lua_State *L)
{
    switch (lua_type(L, 1)) {
    case LUA_TNIL:
    case LUA_TNONE:
        lua_pushinteger(L, 0);
        break;
    case LUA_TTABLE:
        lua_pushinteger(L, (lua_Integer)lua_rawlen(L, 1));
        break;
    default:
        lua_pushinteger(L, 1);
        break;
    }
    return 1;
}

static int h_attr(lua_State *L)
{
    push_attr(L, luaL_checkstring(L, 1), false, true);
    return 1;
}

static int h_values(lua_State *L)
{
    push_attr(L, luaL_checkstring(L, 1), true, false);
    return 1;
}

/* ---- times: seconds since 1970-01-01T00:00:00Z -------------------------
 * UTC only (no time zone database in the sandbox); an offset written in
 * the input (Z, +02:00) is applied. Dates are proleptic Gregorian. */

/* Days since 1970-01-01 of year y, month m (1-12), day d. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era;
    int64_t yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int month_days(int64_t y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return m == 2 && leap ? 29 : days[m - 1];
}

struct time_parts {
    int64_t year;
    int mon, day, hour, min, sec;
    int off; /* seconds east of UTC */
};

/* Up to `max` (at least `min`) digits at *p. */
static bool take_digits(const char **p, const char *end, int min, int max, int *out)
{
    int n = 0;
    int v = 0;

    while (*p < end && n < max && **p >= '0' && **p <= '9') {
        v = v * 10 + (**p - '0');
        (*p)++;
        n++;
    }
    *out = v;
    return n >= min;
}

/* The time of valid parts, or false. */
static bool parts_time(const struct time_parts *t, int64_t *out)
{
    if (t->mon < 1 || t->mon > 12 || t->day < 1 || t->day > month_days(t->year, t->mon) ||
        t->hour > 23 || t->min > 59 || t->sec > 60) {
        return false;
    }
    *out = days_from_civil(t->year, t->mon, t->day) * 86400 + t->hour * 3600 + t->min * 60 +
           (t->sec == 60 ? 59 : t->sec) - t->off;
    return true;
}

/* A layout's tokens: YYYY, MM, DD, hh, mm, ss (zero-padded), M, D, h (one
 * or two digits); any other character stands for itself. */
static const char *layout_token(const char *l)
{
    static const char *const tokens[] = {"YYYY", "MM", "DD", "hh", "mm", "ss", "M", "D", "h", NULL};
    size_t i;

    for (i = 0; tokens[i] != NULL; i++) {
        if (strncmp(l, tokens[i], strlen(tokens[i])) == 0) {
            return tokens[i];
        }
    }
    return NULL;
}

static bool parse_layout(const char *s, size_t len, const char *layout, int64_t *out)
{
    struct time_parts t = {1970, 1, 1, 0, 0, 0, 0};
    const char *p = s;
    const char *end = s + len;
    const char *l = layout;

    while (*l != '\0') {
        const char *tok = layout_token(l);
        int v;
        int *dst;

        if (tok == NULL) {
            if (p == end || *p != *l) {
                return false;
            }
            p++;
            l++;
            continue;
        }
        l += strlen(tok);
        if (strcmp(tok, "YYYY") == 0) {
            if (!take_digits(&p, end, 4, 4, &v)) {
                return false;
            }
            t.year = v;
            continue;
        }
        dst = tok[0] == 'M'   ? &t.mon
              : tok[0] == 'D' ? &t.day
              : tok[0] == 'h' ? &t.hour
              : tok[0] == 'm' ? &t.min
                              : &t.sec;
        if (!take_digits(&p, end, tok[1] != '\0' ? 2 : 1, 2, dst)) {
            return false;
        }
    }
    return p == end && parts_time(&t, out);
}

/* Z, +hh, +hhmm, +hh:mm (and -) at p, to the end. */
static bool parse_offset(const char *p, const char *end, int *off)
{
    int sign, h, m = 0;

    *off = 0;
    if (p == end) {
        return true;
    }
    if (*p == 'Z' || *p == 'z') {
        return p + 1 == end;
    }
    if (*p != '+' && *p != '-') {
        return false;
    }
    sign = *p++ == '-' ? -1 : 1;
    if (!take_digits(&p, end, 2, 2, &h) || h > 23) {
        return false;
    }
    if (p < end && *p == ':') {
        p++;
    }
    if (p < end && (!take_digits(&p, end, 2, 2, &m) || m > 59)) {
        return false;
    }
    *off = sign * (h * 3600 + m * 60);
    return p == end;
}

static void skip_fraction(const char **p, const char *end)
{
    if (*p < end && (**p == '.' || **p == ',')) {
        (*p)++;
        while (*p < end && **p >= '0' && **p <= '9') {
            (*p)++;
        }
    }
}

/* ISO 8601 (YYYY-MM-DD[Thh:mm[:ss[.f]]][offset], a space for the T) or
 * LDAP generalized time (YYYYMMDDhh[mm[ss]][.f](Z|offset)). */
static bool parse_auto(const char *s, size_t len, int64_t *out)
{
    struct time_parts t = {0, 1, 1, 0, 0, 0, 0};
    const char *p = s;
    const char *end = s + len;
    int y;

    if (!take_digits(&p, end, 4, 4, &y)) {
        return false;
    }
    t.year = y;
    if (p < end && *p == '-') {
        p++;
        if (!take_digits(&p, end, 2, 2, &t.mon) || p == end || *p++ != '-' ||
            !take_digits(&p, end, 2, 2, &t.day)) {
            return false;
        }
        if (p < end && (*p == 'T' || *p == 't' || *p == ' ')) {
            p++;
            if (!take_digits(&p, end, 2, 2, &t.hour) || p == end || *p++ != ':' ||
                !take_digits(&p, end, 2, 2, &t.min)) {
                return false;
            }
            if (p < end && *p == ':') {
                p++;
                if (!take_digits(&p, end, 2, 2, &t.sec)) {
                    return false;
                }
                skip_fraction(&p, end);
            }
        }
    } else {
        if (!take_digits(&p, end, 2, 2, &t.mon) || !take_digits(&p, end, 2, 2, &t.day) ||
            !take_digits(&p, end, 2, 2, &t.hour)) {
            return false;
        }
        /* minutes and seconds are optional */
        if (take_digits(&p, end, 2, 2, &t.min)) {
            (void)take_digits(&p, end, 2, 2, &t.sec);
        }
        skip_fraction(&p, end);
        if (p == end) {
            return false; /* generalized time needs Z or an offset */
        }
    }
    return parse_offset(p, end, &t.off) && parts_time(&t, out);
}

static void bad_time(lua_State *L, const char *what, const char *s, size_t len, const char *how)
{
    struct strbuf *sb = scratch(L);

    strbuf_addf(sb, "%s: \"", what);
    strbuf_add(sb, s, len > 64 ? 64 : len);
    strbuf_addf(sb, "%s\" %s", len > 64 ? "..." : "", how);
    luaL_error(L, "%s", sb->buf);
}

static void fn_parse_time(lua_State *L, const char *s, size_t len)
{
    const char *layout = luaL_optstring(L, 2, NULL);
    int64_t t = 0;

    if (len == 0) {
        lua_pushnil(L);
        return;
    }
    if (layout != NULL ? !parse_layout(s, len, layout, &t) : !parse_auto(s, len, &t)) {
        struct strbuf how = STRBUF_INIT;

        if (layout != NULL) {
            strbuf_addf(&how, "is not a time of layout \"%s\"", layout);
        } else {
            strbuf_addstr(&how, "is not an ISO 8601 date or time, nor an LDAP generalized time "
                                "(give a layout: parse_time(s, \"DD.MM.YYYY\"))");
        }
        /* the message is copied before the error unwinds: how is freed
         * first so that nothing leaks */
        lua_pushstring(L, how.buf);
        strbuf_release(&how);
        bad_time(L, "parse_time", s, len, lua_tostring(L, -1));
    }
    lua_pushinteger(L, (lua_Integer)t);
}

/* An integer time from a string or number argument. */
static bool time_arg(const char *s, size_t len, int64_t *out)
{
    char *end;
    long long v;

    if (len == 0 || len > 24 || strlen(s) != len) {
        return false;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        double d = strtod(s, &end);

        if (*end != '\0' || !(d > -1e17 && d < 1e17)) {
            return false;
        }
        v = (long long)floor(d);
    }
    *out = v;
    return true;
}

static void fn_format_time(lua_State *L, const char *s, size_t len)
{
    const char *layout = luaL_checkstring(L, 2);
    struct strbuf *sb;
    int64_t t = 0, days, y;
    int mon, day, secs;
    const char *l;

    if (len == 0) {
        lua_pushnil(L);
        return;
    }
    if (!time_arg(s, len, &t) || t < -62135596800LL || t > 253402300799LL) {
        bad_time(L, "format_time", s, len,
                 "is not a time (seconds since 1970, years 1 to 9999: see parse_time)");
    }
    days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
    secs = (int)(t - days * 86400);
    civil_from_days(days, &y, &mon, &day);
    sb = scratch(L);
    for (l = layout; *l != '\0';) {
        const char *tok = layout_token(l);
        int v;

        if (tok == NULL) {
            strbuf_addch(sb, *l++);
            continue;
        }
        l += strlen(tok);
        if (strcmp(tok, "YYYY") == 0) {
            strbuf_addf(sb, "%04d", (int)y);
            continue;
        }
        v = tok[0] == 'M'   ? mon
            : tok[0] == 'D' ? day
            : tok[0] == 'h' ? secs / 3600
            : tok[0] == 'm' ? secs / 60 % 60
                            : secs % 60;
        strbuf_addf(sb, tok[1] != '\0' ? "%02d" : "%d", v);
    }
    push_scratch(L);
}

#define FILETIME_EPOCH 11644473600LL /* seconds from 1601-01-01 to 1970-01-01 */

static void fn_filetime(lua_State *L, const char *s, size_t len)
{
    int64_t t = 0;

    if (len == 0) {
        lua_pushnil(L);
        return;
    }
    if (!time_arg(s, len, &t) || t < -FILETIME_EPOCH || t > INT64_MAX / 10000000 - FILETIME_EPOCH) {
        bad_time(L, "filetime", s, len, "is not a time (seconds since 1970: see parse_time)");
    }
    lua_pushfstring(L, "%I", (lua_Integer)((t + FILETIME_EPOCH) * 10000000));
}

static void fn_from_filetime(lua_State *L, const char *s, size_t len)
{
    char *end;
    long long v;

    if (len == 0) {
        lua_pushnil(L);
        return;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (strlen(s) != len || *end != '\0' || v < 0 || (errno != 0 && v != LLONG_MAX)) {
        bad_time(L, "from_filetime", s, len, "is not a FILETIME (100 ns intervals since 1601)");
    }
    if (v == 0 || v == LLONG_MAX) {
        lua_pushnil(L); /* AD: the account never expires */
        return;
    }
    lua_pushinteger(L, (lua_Integer)(v / 10000000 - FILETIME_EPOCH));
}

/* (the layout stays argument 2: apply_str builds a list above it) */
static int h_parse_time(lua_State *L)
{
    lua_settop(L, 2);
    return apply_str(L, "parse_time", fn_parse_time);
}

static int h_format_time(lua_State *L)
{
    lua_settop(L, 2);
    return apply_str(L, "format_time", fn_format_time);
}

static int h_filetime(lua_State *L)
{
    return apply_str(L, "filetime", fn_filetime);
}

static int h_from_filetime(lua_State *L)
{
    return apply_str(L, "from_filetime", fn_from_filetime);
}

/* random_password([n]): n (default 16, 8 to 128) characters drawn from
 * the system's random source, with at least one capital, small letter,
 * digit and symbol (AD's complexity rule); letters and digits that look
 * alike (I l 1 O 0) are left out, so that it can be read out. Only for
 * initial_flow (config.c refuses it elsewhere). */
static int h_random_password(lua_State *L)
{
    static const char upper_set[] = "ABCDEFGHJKLMNPQRSTUVWXYZ";
    static const char lower_set[] = "abcdefghijkmnopqrstuvwxyz";
    static const char digit_set[] = "23456789";
    static const char symbol_set[] = "!#%+-.=?@_~";
    static const char *const sets[] = {upper_set, lower_set, digit_set, symbol_set};
    char all[128];
    char out[129];
    lua_Integer n = luaL_optinteger(L, 1, 16);
    size_t nall = 0;
    size_t i;
    int tries;

    if (n < 8 || n > 128) {
        return luaL_error(L, "random_password: length %d is not between 8 and 128", (int)n);
    }
    for (i = 0; i < 4; i++) {
        memcpy(all + nall, sets[i], strlen(sets[i]));
        nall += strlen(sets[i]);
    }
    for (tries = 0; tries < 1000; tries++) {
        unsigned char buf[256];
        size_t have = 0;
        size_t used = 0;
        bool seen[4] = {false, false, false, false};
        const unsigned limit = 256 - 256 % (unsigned)nall;

        while (have < (size_t)n) {
            if (used == 0 || used >= sizeof(buf)) {
                ssize_t got = getrandom(buf, sizeof(buf), 0);

                if (got != (ssize_t)sizeof(buf)) {
                    return luaL_error(L, "random_password: the system's random source failed");
                }
                used = 0;
            }
            if (buf[used] < limit) {
                out[have++] = all[buf[used] % nall];
            }
            used++;
        }
        out[n] = '\0';
        for (i = 0; i < (size_t)n; i++) {
            size_t k;

            for (k = 0; k < 4; k++) {
                seen[k] = seen[k] || strchr(sets[k], out[i]) != NULL;
            }
        }
        if (seen[0] && seen[1] && seen[2] && seen[3]) {
            lua_pushlstring(L, out, (size_t)n);
            explicit_bzero(out, sizeof(out));
            explicit_bzero(buf, sizeof(buf));
            return 1;
        }
    }
    return luaL_error(L, "random_password: no password with every kind of character");
}

/* pcall that cannot swallow the instruction or memory limit. */
static int h_pcall(lua_State *L)
{
    struct expr_env *env = env_of(L);
    int status;

    luaL_checkany(L, 1);
    status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    if (status == LUA_ERRMEM) {
        env->mem_error = true;
    }
    if (status != LUA_OK && (env->limit_hit || env->mem_error)) {
        return lua_error(L);
    }
    lua_pushboolean(L, status == LUA_OK);
    lua_insert(L, 1);
    return lua_gettop(L);
}

/* load(text [, name]): text chunks only, in a fresh sandbox environment. */
static int h_load(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, "=load");
    int status = luaL_loadbufferx(L, s, len, name, "t");

    if (status != LUA_OK) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    push_env_table(L);
    if (lua_setupvalue(L, -2, 1) == NULL) {
        lua_pop(L, 1);
    }
    return 1;
}

static const luaL_Reg helper_funcs[] = {
    {"base64", h_base64},
    {"unbase64", h_unbase64},
    {"guid", h_guid},
    {"sid", h_sid},
    {"lower", h_lower},
    {"upper", h_upper},
    {"trim", h_trim},
    {"split", h_split},
    {"join", h_join},
    {"first", h_first},
    {"coalesce", h_coalesce},
    {"replace", h_replace},
    {"left", h_left},
    {"right", h_right},
    {"contains", h_contains},
    {"count", h_count},
    {"dn_rdn", h_dn_rdn},
    {"dn_parent", h_dn_parent},
    {"dn_escape", h_dn_escape},
    {"attr", h_attr},
    {"values", h_values},
    {"pcall", h_pcall},
    {"parse_time", h_parse_time},
    {"format_time", h_format_time},
    {"filetime", h_filetime},
    {"from_filetime", h_from_filetime},
    {"random_password", h_random_password},
    {"load", h_load},
    {NULL, NULL},
};

static const char *const base_copied[] = {
    "assert",   "error",    "ipairs", "next",     "pairs",  "select",
    "tonumber", "tostring", "type",   "rawequal", "rawlen", NULL,
};

/* Build the helper table and the environment metatable. Protected. */
static int setup_protected(lua_State *L)
{
    struct expr_env *env = lua_touserdata(L, 1);
    static const char *const libs[] = {LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME,
                                       LUA_UTF8LIBNAME, NULL};
    static const lua_CFunction openers[] = {luaopen_string, luaopen_table, luaopen_math,
                                            luaopen_utf8};
    int helpers;
    size_t i;

    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    lua_newtable(L);
    helpers = lua_gettop(L);
    for (i = 0; base_copied[i] != NULL; i++) {
        lua_getfield(L, -2, base_copied[i]);
        lua_setfield(L, helpers, base_copied[i]);
    }
    for (i = 0; libs[i] != NULL; i++) {
        luaL_requiref(L, libs[i], openers[i], 1);
        if (i == 0) {
            /* the string metatable's __index is this same table */
            lua_pushnil(L);
            lua_setfield(L, -2, "dump");
        }
        /* read-only proxy */
        lua_newtable(L);
        lua_newtable(L);
        lua_pushvalue(L, -3);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, readonly_newindex);
        lua_setfield(L, -2, "__newindex");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_setmetatable(L, -2);
        lua_setfield(L, helpers, libs[i]);
        lua_pop(L, 1);
    }
    luaL_setfuncs(L, helper_funcs, 0);
    lua_pushvalue(L, helpers);
    env->helpers_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_newtable(L);
    lua_pushcfunction(L, env_index);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    env->meta_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

enum ids_err expr_env_new(const struct expr_limits *limits, struct expr_env **out,
                          struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct expr_env *env = xcalloc(1, sizeof(*env));
    int status;

    *out = NULL;
    env->max_instructions = EXPR_DEFAULT_INSTRUCTIONS;
    env->mem_max = EXPR_DEFAULT_MEMORY;
    if (limits != NULL && limits->max_instructions > 0) {
        env->max_instructions = limits->max_instructions;
    }
    if (limits != NULL && limits->max_memory > 0) {
        env->mem_max = limits->max_memory;
    }
    strbuf_init(&env->scratch, 0);
    env->L = lua_newstate(limited_alloc, env);
    if (env->L == NULL) {
        ret = ids_error_set(err, IDS_EEXPR,
                            "expression runtime: memory limit (%zu bytes) too "
                            "small to start",
                            env->mem_max);
        goto done;
    }
    *(struct expr_env **)lua_getextraspace(env->L) = env;
    lua_atpanic(env->L, panic_handler);
    lua_pushcfunction(env->L, setup_protected);
    lua_pushlightuserdata(env->L, env);
    status = lua_pcall(env->L, 1, 0, 0);
    if (status != LUA_OK) {
        ret = ids_error_set(err, IDS_EEXPR, "expression runtime: cannot start: %s",
                            lua_tostring(env->L, -1) != NULL ? lua_tostring(env->L, -1) : "error");
        goto done;
    }
    lua_settop(env->L, 0);
    *out = env;
    env = NULL;

done:
    expr_env_free(env);
    return ret;
}

void expr_free(struct expr *e)
{
    if (e == NULL) {
        return;
    }
    if (e->env != NULL) {
        struct expr_env *env = e->env;

        env->exprs[e->index] = NULL;
        while (env->nexprs > 0 && env->exprs[env->nexprs - 1] == NULL) {
            env->nexprs--; /* reuse trailing slots */
        }
        luaL_unref(env->L, LUA_REGISTRYINDEX, e->ref);
    }
    attr_release(&e->constant);
    free(e->src);
    free(e->what);
    free(e);
}

void expr_env_free(struct expr_env *env)
{
    size_t i;

    if (env == NULL) {
        return;
    }
    for (i = 0; i < env->nexprs; i++) {
        if (env->exprs[i] != NULL) {
            env->exprs[i]->env = NULL;
            expr_free(env->exprs[i]);
        }
    }
    free(env->exprs);
    if (env->L != NULL) {
        lua_close(env->L);
    }
    strbuf_release(&env->scratch);
    free(env);
}

/* ---- messages ------------------------------------------------------------ */

/* Append s, at most max bytes, whitespace runs folded into one space (one
 * line), "..." when cut. */
static void add_clipped(struct strbuf *sb, const char *s, size_t max)
{
    size_t n = 0;
    bool space = false;

    while (*s && n < max) {
        if (isspace((unsigned char)*s)) {
            space = true;
            s++;
            continue;
        }
        if (space && n > 0) {
            strbuf_addch(sb, ' ');
            n++;
        }
        space = false;
        strbuf_addch(sb, *s);
        n++;
        s++;
    }
    while (*s && isspace((unsigned char)*s)) {
        s++;
    }
    if (*s) {
        strbuf_addstr(sb, "...");
    }
}

/* "WHAT: `SRC`: MSG" where a leading "expr:N: " of MSG becomes "line N: "
 * for multi-line sources and disappears for one-line ones. */
static enum ids_err expr_error(struct ids_error *err, const char *what, const char *src,
                               const char *msg)
{
    struct strbuf sb = STRBUF_INIT;
    const char *m = msg != NULL ? msg : "unknown error";

    add_clipped(&sb, what, EXPR_MSG_WHAT_MAX);
    strbuf_addstr(&sb, ": `");
    add_clipped(&sb, src, EXPR_MSG_SRC_MAX);
    strbuf_addstr(&sb, "`: ");
    if (strncmp(m, "expr:", 5) == 0 && isdigit((unsigned char)m[5])) {
        const char *p = m + 5;
        const char *num = p;

        while (isdigit((unsigned char)*p)) {
            p++;
        }
        if (*p == ':') {
            if (strchr(src, '\n') != NULL) {
                strbuf_addstr(&sb, "line ");
                strbuf_add(&sb, num, (size_t)(p - num));
                strbuf_addstr(&sb, ": ");
            }
            m = p + 1;
            while (*m == ' ') {
                m++;
            }
        }
    }
    add_clipped(&sb, m, EXPR_MSG_LUA_MAX);
    ids_error_set(err, IDS_EEXPR, "%s", sb.buf);
    strbuf_release(&sb);
    return IDS_EEXPR;
}

/* ---- compile ------------------------------------------------------------- */

struct compile_job {
    const char *as_expr; /* "return SRC" */
    size_t as_expr_len;
    const char *as_chunk;
    size_t as_chunk_len;
    bool prefer_chunk_msg;
    int ref;
    bool ok;
    char msg[EXPR_MSG_LUA_MAX + 1];
};

static int compile_protected(lua_State *L)
{
    struct compile_job *job = lua_touserdata(L, 1);
    int st;

    st = luaL_loadbufferx(L, job->as_expr, job->as_expr_len, "=expr", "t");
    if (st == LUA_ERRMEM) {
        return lua_error(L);
    }
    if (st != LUA_OK) {
        int st2 = luaL_loadbufferx(L, job->as_chunk, job->as_chunk_len, "=expr", "t");

        if (st2 == LUA_ERRMEM) {
            return lua_error(L);
        }
        if (st2 != LUA_OK) {
            const char *m = lua_tostring(L, job->prefer_chunk_msg ? -1 : -2);

            snprintf(job->msg, sizeof(job->msg), "%s", m != NULL ? m : "syntax error");
            return 0;
        }
        lua_remove(L, -2);
    }
    job->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    job->ok = true;
    return 0;
}

/* True when src uses `return` as a word (then a chunk's error message is the
 * relevant one). */
static bool mentions_return(const char *src)
{
    const char *p = src;

    for (;;) {
        p = strstr(p, "return");
        if (p == NULL) {
            return false;
        }
        if ((p == src || !is_ident_char((unsigned char)p[-1])) &&
            !is_ident_char((unsigned char)p[6])) {
            return true;
        }
        p += 6;
    }
}

static enum ids_err run(struct expr *e, const struct entry *obj, struct ids_error *err);
static enum ids_err convert(lua_State *L, int idx, int depth, struct attr *result,
                            const char **why);

/* An expression that reads no name at all (no attribute, no helper: `{
 * "inetOrgPerson" }`, `"Staff"`) is evaluated once, here, with an
 * environment that refuses every name; evaluations copy the value. */
static void probe_constant(struct expr *e)
{
    struct ids_error perr = IDS_ERROR_INIT;
    const char *why = NULL;

    e->env->probe = true;
    if (run(e, NULL, &perr) == IDS_OK) {
        e->is_const = convert(e->env->L, lua_gettop(e->env->L), 0, &e->constant, &why) == IDS_OK;
        if (!e->is_const) {
            attr_release(&e->constant);
        }
    }
    lua_settop(e->env->L, 0);
    e->env->probe = false;
}

bool expr_is_constant(const struct expr *e)
{
    return e != NULL && e->is_const;
}

enum ids_err expr_compile(struct expr_env *env, const char *src, const char *what,
                          struct expr **out, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct strbuf code = STRBUF_INIT;
    struct compile_job job;
    struct expr *e = NULL;
    const char *s;
    size_t len;
    int status;

    *out = NULL;
    memset(&job, 0, sizeof(job));
    if (what == NULL) {
        what = "expression";
    }
    if (src == NULL || strlen(src) == 0) {
        ret = expr_error(err, what, "", "empty expression");
        goto done;
    }
    trim_view(src, &s, &len);
    strbuf_addstr(&code, "return ");
    if (is_hyphen_name(s, len)) {
        strbuf_addstr(&code, "_ENV[\"");
        strbuf_add(&code, s, len);
        strbuf_addstr(&code, "\"]");
    } else {
        strbuf_addstr(&code, src);
    }
    job.as_expr = code.buf;
    job.as_expr_len = code.len;
    job.as_chunk = src;
    job.as_chunk_len = strlen(src);
    job.prefer_chunk_msg = mentions_return(src);
    lua_pushcfunction(env->L, compile_protected);
    lua_pushlightuserdata(env->L, &job);
    status = lua_pcall(env->L, 1, 0, 0);
    if (status != LUA_OK) {
        lua_settop(env->L, 0);
        lua_gc(env->L, LUA_GCCOLLECT);
        ret = expr_error(err, what, src, "memory limit exceeded while compiling");
        goto done;
    }
    lua_settop(env->L, 0);
    if (!job.ok) {
        ret = expr_error(err, what, src, job.msg);
        goto done;
    }
    e = xcalloc(1, sizeof(*e));
    e->env = env;
    e->src = xstrdup(src);
    e->what = xstrdup(what);
    e->ref = job.ref;
    ALLOC_GROW(env->exprs, env->nexprs + 1, env->alloc);
    e->index = env->nexprs;
    env->exprs[env->nexprs++] = e;
    probe_constant(e);
    *out = e;

done:
    strbuf_release(&code);
    return ret;
}

/* ---- evaluate ------------------------------------------------------------ */

/* __index/__newindex of the probe's environment: any name is refused. */
static int probe_refuse(lua_State *L)
{
    return luaL_error(L, "not a constant");
}

static int eval_protected(lua_State *L)
{
    struct expr *e = lua_touserdata(L, 1);

    lua_rawgeti(L, LUA_REGISTRYINDEX, e->ref);
    if (e->env->probe) {
        lua_createtable(L, 0, 0);
        lua_createtable(L, 0, 2);
        lua_pushcfunction(L, probe_refuse);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, probe_refuse);
        lua_setfield(L, -2, "__newindex");
        lua_setmetatable(L, -2);
    } else {
        push_env_table(L);
    }
    if (lua_setupvalue(L, -2, 1) == NULL) {
        lua_pop(L, 1);
    }
    lua_call(L, 0, 1);
    return 1;
}

/* Run e against obj; on IDS_OK its result is on top of the stack. */
static enum ids_err run(struct expr *e, const struct entry *obj, struct ids_error *err)
{
    struct expr_env *env = e->env;
    lua_State *L = env->L;
    int status;

    lua_settop(L, 0);
    env->obj = obj;
    env->budget = env->max_instructions;
    env->limit_hit = false;
    env->mem_error = false;
    lua_sethook(
        L, count_hook, LUA_MASKCOUNT,
        (int)(EXPR_HOOK_STEP < env->max_instructions ? EXPR_HOOK_STEP : env->max_instructions));
    lua_pushcfunction(L, eval_protected);
    lua_pushlightuserdata(L, e);
    status = lua_pcall(L, 1, 1, 0);
    lua_sethook(L, NULL, 0, 0);
    env->obj = NULL;
    if (env->scratch.alloc > EXPR_SCRATCH_KEEP) {
        strbuf_release(&env->scratch);
    }
    if (status == LUA_OK) {
        return IDS_OK;
    }
    if (status == LUA_ERRMEM || env->mem_error) {
        char msg[96];

        lua_settop(L, 0);
        lua_gc(L, LUA_GCCOLLECT);
        snprintf(msg, sizeof(msg), "memory limit exceeded (%zu bytes)", env->mem_max);
        return expr_error(err, e->what, e->src, msg);
    }
    if (lua_type(L, -1) == LUA_TSTRING) {
        char msg[EXPR_MSG_LUA_MAX + 1];

        snprintf(msg, sizeof(msg), "%s", lua_tostring(L, -1));
        lua_settop(L, 0);
        return expr_error(err, e->what, e->src, msg);
    } else {
        char msg[96];

        snprintf(msg, sizeof(msg), "error object is a %s value", luaL_typename(L, -1));
        lua_settop(L, 0);
        return expr_error(err, e->what, e->src, msg);
    }
}

/* Number as text: integers (also integral floats) without ".0". */
static void number_text(lua_State *L, int idx, char *buf, size_t size)
{
    if (lua_isinteger(L, idx)) {
        snprintf(buf, size, "%lld", (long long)lua_tointeger(L, idx));
    } else {
        double d = (double)lua_tonumber(L, idx);

        if (isfinite(d) && d == floor(d) && fabs(d) < 9.0e15) {
            snprintf(buf, size, "%lld", (long long)d);
        } else {
            snprintf(buf, size, "%.14g", d);
        }
    }
}

struct key_list {
    size_t nr;
    size_t alloc;
    lua_Integer *v;
};

static int cmp_int(const void *a, const void *b)
{
    lua_Integer x = *(const lua_Integer *)a;
    lua_Integer y = *(const lua_Integer *)b;

    return x < y ? -1 : x > y;
}

/* True (with its keys, sorted) when every key of the table at idx is a
 * positive integer. */
static bool table_is_sequence(lua_State *L, int idx, struct key_list *keys)
{
    bool ret = true;

    keys->nr = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_Integer k;
        int isnum = 0;

        lua_pop(L, 1);
        k = lua_tointegerx(L, -1, &isnum);
        if (lua_type(L, -1) != LUA_TNUMBER || !isnum || k < 1) {
            ret = false;
            lua_pop(L, 1);
            break;
        }
        ALLOC_GROW(keys->v, keys->nr + 1, keys->alloc);
        keys->v[keys->nr++] = k;
    }
    if (ret && keys->nr > 1) {
        qsort(keys->v, keys->nr, sizeof(*keys->v), cmp_int);
    }
    return ret;
}

static json_t *to_json(lua_State *L, int idx, int depth, const char **why);

static json_t *table_to_json(lua_State *L, int idx, int depth, const char **why)
{
    struct key_list keys = {0, 0, NULL};
    json_t *j = NULL;
    size_t i;

    if (depth > EXPR_RESULT_DEPTH || !lua_checkstack(L, 4)) {
        *why = "tables nested too deeply";
        goto done;
    }
    if (table_is_sequence(L, idx, &keys)) {
        j = json_array();
        for (i = 0; i < keys.nr; i++) {
            json_t *v;

            lua_rawgeti(L, idx, keys.v[i]);
            v = to_json(L, lua_gettop(L), depth + 1, why);
            lua_pop(L, 1);
            if (v == NULL) {
                json_decref(j);
                j = NULL;
                goto done;
            }
            json_array_append_new(j, v);
        }
        goto done;
    }
    j = json_object();
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        char kbuf[64];
        const char *k;
        size_t klen;
        json_t *v;

        if (lua_type(L, -2) == LUA_TSTRING) {
            k = lua_tolstring(L, -2, &klen);
        } else if (lua_type(L, -2) == LUA_TNUMBER) {
            number_text(L, -2, kbuf, sizeof(kbuf));
            k = kbuf;
            klen = strlen(kbuf);
        } else {
            *why = "a table key is neither a string nor a number";
            lua_pop(L, 2);
            json_decref(j);
            j = NULL;
            goto done;
        }
        v = to_json(L, lua_gettop(L), depth + 1, why);
        if (v == NULL || json_object_setn_new(j, k, klen, v) != 0) {
            if (v != NULL) {
                *why = "a table key is not UTF-8 text";
            }
            lua_pop(L, 2);
            json_decref(j);
            j = NULL;
            goto done;
        }
        lua_pop(L, 1);
    }

done:
    free(keys.v);
    return j;
}

static json_t *to_json(lua_State *L, int idx, int depth, const char **why)
{
    json_t *j = NULL;
    size_t len;
    const char *s;

    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        j = json_stringn(s, len);
        if (j == NULL) {
            *why = "a value in a table is not UTF-8 text";
        }
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            j = json_integer((json_int_t)lua_tointeger(L, idx));
        } else {
            double d = (double)lua_tonumber(L, idx);

            j = isfinite(d) ? json_real(d) : json_null();
        }
        break;
    case LUA_TBOOLEAN:
        j = json_boolean(lua_toboolean(L, idx));
        break;
    case LUA_TTABLE:
        j = table_to_json(L, idx, depth, why);
        break;
    default:
        *why = "a table holds a value that is not a string, number, boolean or table";
        break;
    }
    return j;
}

static void add_json_value(struct attr *result, json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);

    attr_add_value(result, text, strlen(text));
    result->flags |= ATTR_JSON;
    free(text);
}

/* Convert the value at idx into values of result. Cannot raise. */
static enum ids_err convert(lua_State *L, int idx, int depth, struct attr *result, const char **why)
{
    enum ids_err ret = IDS_OK;
    struct key_list keys = {0, 0, NULL};
    char num[64];
    const char *s;
    size_t len;
    size_t i;
    json_t *j;

    switch (lua_type(L, idx)) {
    case LUA_TNIL:
    case LUA_TNONE:
        break;
    case LUA_TBOOLEAN:
        s = lua_toboolean(L, idx) ? "true" : "false";
        attr_add_value(result, s, strlen(s));
        break;
    case LUA_TNUMBER:
        number_text(L, idx, num, sizeof(num));
        attr_add_value(result, num, strlen(num));
        break;
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        attr_add_value(result, s, len);
        break;
    case LUA_TTABLE:
        if (depth > EXPR_RESULT_DEPTH || !lua_checkstack(L, 4)) {
            *why = "tables nested too deeply";
            ret = IDS_EEXPR;
            goto done;
        }
        if (!table_is_sequence(L, idx, &keys)) {
            j = table_to_json(L, idx, depth, why);
            if (j == NULL) {
                ret = IDS_EEXPR;
                goto done;
            }
            add_json_value(result, j);
            json_decref(j);
            goto done;
        }
        for (i = 0; i < keys.nr; i++) {
            lua_rawgeti(L, idx, keys.v[i]);
            if (lua_type(L, -1) == LUA_TTABLE) {
                struct key_list inner = {0, 0, NULL};
                bool seq = table_is_sequence(L, lua_gettop(L), &inner);

                free(inner.v);
                if (seq) {
                    /* nested lists are flattened */
                    ret = convert(L, lua_gettop(L), depth + 1, result, why);
                } else {
                    j = table_to_json(L, lua_gettop(L), depth + 1, why);
                    if (j == NULL) {
                        ret = IDS_EEXPR;
                    } else {
                        add_json_value(result, j);
                        json_decref(j);
                    }
                }
            } else {
                ret = convert(L, lua_gettop(L), depth + 1, result, why);
            }
            lua_pop(L, 1);
            if (ret != IDS_OK) {
                goto done;
            }
        }
        break;
    default:
        *why = "the result is not a string, number, boolean or table";
        ret = IDS_EEXPR;
        break;
    }

done:
    free(keys.v);
    return ret;
}

enum ids_err expr_eval(struct expr *e, const struct entry *obj, struct attr *result,
                       struct ids_error *err)
{
    enum ids_err ret;
    size_t start = result->nvals;
    unsigned flags = result->flags;
    const char *why = NULL;
    size_t i;

    if (e->is_const) {
        for (i = 0; i < e->constant.nvals; i++) {
            attr_add_value(result, e->constant.vals[i].data, e->constant.vals[i].len);
        }
        result->flags |= e->constant.flags;
        return IDS_OK;
    }
    ret = run(e, obj, err);
    if (ret != IDS_OK) {
        goto done;
    }
    ret = convert(e->env->L, lua_gettop(e->env->L), 0, result, &why);
    lua_settop(e->env->L, 0);
    if (ret != IDS_OK) {
        for (i = start; i < result->nvals; i++) {
            free(result->vals[i].data);
        }
        result->nvals = start;
        result->flags = flags;
        ret = expr_error(err, e->what, e->src, why != NULL ? why : "cannot convert the result");
    }

done:
    return ret;
}

enum ids_err expr_eval_bool(struct expr *e, const struct entry *obj, bool *result,
                            struct ids_error *err)
{
    enum ids_err ret;

    *result = false;
    ret = run(e, obj, err);
    if (ret != IDS_OK) {
        goto done;
    }
    *result = lua_toboolean(e->env->L, -1) != 0;
    lua_settop(e->env->L, 0);

done:
    return ret;
}
