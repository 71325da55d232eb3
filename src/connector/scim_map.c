/* scim_map.c - pure functions of the SCIM connector: schema knowledge,
 * attribute names, SCIM JSON <-> entries and changes, PATCH generation and
 * application, filter values, error bodies, Retry-After and backoff.
 * No I/O here: tests/unit/test_scim.c and the fuzz target call these. */
#include "connector/scim_int.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "util/codec.h"
#include "util/mem.h"
#include "util/banned.h"

/* ---- schema knowledge -------------------------------------------------- */

struct builtin_def {
    const char *schema;
    const char *path;
    enum scim_atype type;
    bool multi;
    bool ref_value;
    const char *uniqueness;
};

static const struct builtin_def builtin_defs[] = {
    {SCIM_CORE_USER, "userName", SCIM_STRING, false, false, "server"},
    {SCIM_CORE_USER, "name", SCIM_COMPLEX, false, false, NULL},
    {SCIM_CORE_USER, "name.formatted", SCIM_STRING, false, false, NULL},
    {SCIM_CORE_USER, "name.familyName", SCIM_STRING, false, false, NULL},
    {SCIM_CORE_USER, "name.givenName", SCIM_STRING, false, false, NULL},
    {SCIM_CORE_USER, "name.middleName", SCIM_STRING, false, false, NULL},
    {SCIM_CORE_USER, "name.honorificPrefix", SCIM_STRING, false, false, NULL},
    {SCIM_CORE_USER, "name.honorificSuffix", SCIM_STRING, false, false, NULL},
    {SCIM_CORE_USER, "displayName", SCIM_STRING, false, false, NULL},
    {SCIM_CORE_USER, "nickName", SCIM_STRING, false, false, NULL},
    {SCIM_CORE_USER, "profileUrl", SCIM_REFERENCE, false, false, NULL},
    {SCIM_CORE_USER, "title", SCIM_STRING, false, false, NULL},
    {SCIM_CORE_USER, "userType", SCIM_STRING, false, false, NULL},
    {SCIM_CORE_USER, "preferredLanguage", SCIM_STRING, false, false, NULL},
    {SCIM_CORE_USER, "locale", SCIM_STRING, false, false, NULL},
    {SCIM_CORE_USER, "timezone", SCIM_STRING, false, false, NULL},
    {SCIM_CORE_USER, "active", SCIM_BOOLEAN, false, false, NULL},
    {SCIM_CORE_USER, "password", SCIM_STRING, false, false, NULL},
    {SCIM_CORE_USER, "emails", SCIM_COMPLEX, true, false, NULL},
    {SCIM_CORE_USER, "phoneNumbers", SCIM_COMPLEX, true, false, NULL},
    {SCIM_CORE_USER, "ims", SCIM_COMPLEX, true, false, NULL},
    {SCIM_CORE_USER, "photos", SCIM_COMPLEX, true, false, NULL},
    {SCIM_CORE_USER, "addresses", SCIM_COMPLEX, true, false, NULL},
    {SCIM_CORE_USER, "groups", SCIM_COMPLEX, true, true, NULL},
    {SCIM_CORE_USER, "entitlements", SCIM_COMPLEX, true, false, NULL},
    {SCIM_CORE_USER, "roles", SCIM_COMPLEX, true, false, NULL},
    {SCIM_CORE_USER, "x509Certificates", SCIM_COMPLEX, true, false, NULL},
    {SCIM_CORE_GROUP, "displayName", SCIM_STRING, false, false, NULL},
    {SCIM_CORE_GROUP, "members", SCIM_COMPLEX, true, true, NULL},
    {SCIM_ENTERPRISE, "employeeNumber", SCIM_STRING, false, false, NULL},
    {SCIM_ENTERPRISE, "costCenter", SCIM_STRING, false, false, NULL},
    {SCIM_ENTERPRISE, "organization", SCIM_STRING, false, false, NULL},
    {SCIM_ENTERPRISE, "division", SCIM_STRING, false, false, NULL},
    {SCIM_ENTERPRISE, "department", SCIM_STRING, false, false, NULL},
    {SCIM_ENTERPRISE, "manager", SCIM_COMPLEX, false, true, NULL},
    {SCIM_ENTERPRISE, "manager.value", SCIM_STRING, false, false, NULL},
    {SCIM_ENTERPRISE, "manager.displayName", SCIM_STRING, false, false, NULL},
};

static char lower_ascii(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static uint64_t def_hash(const char *schema, const char *path)
{
    uint64_t h = 1469598103934665603ULL;
    const char *p;

    for (p = schema; *p != '\0'; p++) {
        h = (h ^ (unsigned char)lower_ascii(*p)) * 1099511628211ULL;
    }
    h = (h ^ 0xffu) * 1099511628211ULL;
    for (p = path; *p != '\0'; p++) {
        h = (h ^ (unsigned char)lower_ascii(*p)) * 1099511628211ULL;
    }
    return h;
}

/* The slot of (schema, path) in s->index: the one holding it, or the empty
 * one where it goes. s->nindex > 0. */
static size_t def_slot(const struct scim_schemas *s, const char *schema, const char *path)
{
    size_t mask = s->nindex - 1;
    size_t i = (size_t)def_hash(schema, path) & mask;

    while (s->index[i] != 0) {
        const struct scim_adef *d = &s->defs[s->index[i] - 1];

        if (strcasecmp(d->path, path) == 0 && strcasecmp(d->schema, schema) == 0) {
            break;
        }
        i = (i + 1) & mask;
    }
    return i;
}

static void index_grow(struct scim_schemas *s)
{
    size_t i;

    if (s->nindex >= 2 * (s->nr + 1)) {
        return;
    }
    free(s->index);
    s->nindex = s->nindex == 0 ? 256 : s->nindex * 2;
    while (s->nindex < 2 * (s->nr + 1)) {
        s->nindex *= 2;
    }
    s->index = xcalloc(s->nindex, sizeof(*s->index));
    for (i = 0; i < s->nr; i++) {
        s->index[def_slot(s, s->defs[i].schema, s->defs[i].path)] = i + 1;
    }
}

static void schemas_put(struct scim_schemas *s, const char *schema, const char *path,
                        enum scim_atype type, bool multi, bool ref_value, const char *uniq)
{
    struct scim_adef *d;
    size_t slot;

    index_grow(s);
    slot = def_slot(s, schema, path);
    if (s->index[slot] != 0) {
        d = &s->defs[s->index[slot] - 1];
        free(d->schema);
        free(d->path);
        free(d->uniqueness);
    } else {
        ALLOC_GROW(s->defs, s->nr + 1, s->alloc);
        d = &s->defs[s->nr++];
        s->index[slot] = s->nr;
    }
    d->schema = xstrdup(schema);
    d->path = xstrdup(path);
    d->type = type;
    d->multi = multi;
    d->ref_value = ref_value;
    d->uniqueness = xstrdup_or_null(uniq);
}

void scim_schemas_builtin(struct scim_schemas *s)
{
    size_t i;

    for (i = 0; i < ARRAY_SIZE(builtin_defs); i++) {
        const struct builtin_def *b = &builtin_defs[i];

        schemas_put(s, b->schema, b->path, b->type, b->multi, b->ref_value, b->uniqueness);
    }
}

static enum scim_atype type_from_str(const char *s)
{
    if (s == NULL) {
        return SCIM_STRING;
    }
    if (strcasecmp(s, "boolean") == 0) {
        return SCIM_BOOLEAN;
    }
    if (strcasecmp(s, "integer") == 0) {
        return SCIM_INTEGER;
    }
    if (strcasecmp(s, "decimal") == 0) {
        return SCIM_DECIMAL;
    }
    if (strcasecmp(s, "dateTime") == 0) {
        return SCIM_DATETIME;
    }
    if (strcasecmp(s, "reference") == 0) {
        return SCIM_REFERENCE;
    }
    if (strcasecmp(s, "complex") == 0) {
        return SCIM_COMPLEX;
    }
    if (strcasecmp(s, "binary") == 0) {
        return SCIM_BINARY;
    }
    return SCIM_STRING;
}

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void add_attr_json(struct scim_schemas *s, const char *schema, const char *prefix, json_t *a)
{
    const char *name = jstr(a, "name");
    json_t *subs = json_object_get(a, "subAttributes");
    struct strbuf path = STRBUF_INIT;
    bool has_ref = false;
    bool has_value = false;
    size_t i;

    if (name == NULL || name[0] == '\0') {
        return;
    }
    if (prefix != NULL) {
        strbuf_addf(&path, "%s.", prefix);
    }
    strbuf_addstr(&path, name);
    for (i = 0; json_is_array(subs) && i < json_array_size(subs); i++) {
        const char *sn = jstr(json_array_get(subs, i), "name");

        has_ref = has_ref || (sn != NULL && strcmp(sn, "$ref") == 0);
        has_value = has_value || (sn != NULL && strcmp(sn, "value") == 0);
    }
    schemas_put(s, schema, path.buf, type_from_str(jstr(a, "type")),
                json_is_true(json_object_get(a, "multiValued")), has_ref && has_value,
                jstr(a, "uniqueness"));
    if (prefix == NULL) {
        for (i = 0; json_is_array(subs) && i < json_array_size(subs); i++) {
            add_attr_json(s, schema, name, json_array_get(subs, i));
        }
    }
    strbuf_release(&path);
}

void scim_schemas_add_json(struct scim_schemas *s, json_t *schema)
{
    const char *id = jstr(schema, "id");
    json_t *attrs = json_object_get(schema, "attributes");
    size_t i;

    if (id == NULL || !json_is_array(attrs)) {
        return;
    }
    for (i = 0; i < json_array_size(attrs); i++) {
        json_t *a = json_array_get(attrs, i);

        if (json_is_object(a)) {
            add_attr_json(s, id, NULL, a);
        }
    }
}

const struct scim_adef *scim_schemas_find(const struct scim_schemas *s, const char *schema,
                                          const char *path)
{
    size_t i;

    if (s == NULL || schema == NULL || path == NULL || s->nindex == 0) {
        return NULL;
    }
    i = s->index[def_slot(s, schema, path)];
    return i != 0 ? &s->defs[i - 1] : NULL;
}

void scim_schemas_release(struct scim_schemas *s)
{
    size_t i;

    for (i = 0; i < s->nr; i++) {
        free(s->defs[i].schema);
        free(s->defs[i].path);
        free(s->defs[i].uniqueness);
    }
    free(s->defs);
    free(s->index);
    memset(s, 0, sizeof(*s));
}

/* ---- attribute names ---------------------------------------------------- */

void scim_path_parse(const char *name, struct scim_path *out)
{
    const char *rest = name;
    const char *dot;

    memset(out, 0, sizeof(*out));
    if (strncasecmp(name, "enterprise:", 11) == 0) {
        out->urn = xstrdup(SCIM_ENTERPRISE);
        rest = name + 11;
    } else if (strncasecmp(name, "urn:", 4) == 0) {
        const char *colon = strrchr(name, ':');

        out->urn = xmemdup(name, (size_t)(colon - name));
        rest = colon + 1;
    }
    dot = strchr(rest, '.');
    if (dot != NULL) {
        out->attr = xmemdup(rest, (size_t)(dot - rest));
        out->sub = xstrdup(dot + 1);
    } else {
        out->attr = xstrdup(rest);
    }
}

void scim_path_release(struct scim_path *p)
{
    free(p->urn);
    free(p->attr);
    free(p->sub);
    memset(p, 0, sizeof(*p));
}

void scim_path_format(const struct scim_path *p, struct strbuf *out)
{
    if (p->urn != NULL) {
        strbuf_addf(out, "%s:", p->urn);
    }
    strbuf_addstr(out, p->attr);
    if (p->sub != NULL) {
        strbuf_addf(out, ".%s", p->sub);
    }
}

static const struct scim_adef *path_def(const struct scim_rtype *t, const struct scim_path *p)
{
    struct strbuf sb = STRBUF_INIT;
    const struct scim_adef *d;

    if (p->sub == NULL) {
        return scim_schemas_find(t->schemas, p->urn ? p->urn : t->schema, p->attr);
    }
    strbuf_addf(&sb, "%s.%s", p->attr, p->sub);
    d = scim_schemas_find(t->schemas, p->urn ? p->urn : t->schema, sb.buf);
    strbuf_release(&sb);
    return d;
}

bool scim_attr_known(const struct scim_rtype *t, const char *name)
{
    struct scim_path p;
    bool known;

    scim_path_parse(name, &p);
    /* the common attributes of every resource (RFC 7643 3.1) are in no schema */
    known =
        (p.urn == NULL && (strcasecmp(p.attr, "id") == 0 || strcasecmp(p.attr, "externalId") == 0 ||
                           strcasecmp(p.attr, "meta") == 0 || strcasecmp(p.attr, "dn") == 0)) ||
        path_def(t, &p) != NULL;
    scim_path_release(&p);
    return known;
}

/* scim_is_ref() of `name`, parsed as p, with d = path_def(t, p). */
static bool is_ref(const struct scim_rtype *t, const char *name, const struct scim_path *p,
                   const struct scim_adef *d)
{
    return (t->cfg != NULL && object_type_ref(t->cfg, name) != NULL) ||
           (p->sub == NULL && d != NULL && d->ref_value);
}

bool scim_is_ref(const struct scim_rtype *t, const char *name)
{
    struct scim_path p;
    bool ref;

    scim_path_parse(name, &p);
    ref = is_ref(t, name, &p, p.sub == NULL ? path_def(t, &p) : NULL);
    scim_path_release(&p);
    return ref;
}

/* ---- JSON -> entry ------------------------------------------------------ */

/* Case-insensitive member lookup (SCIM attribute names are). */
static json_t *get_ci(json_t *o, const char *key)
{
    const char *k;
    json_t *v;
    json_t *exact;

    if (!json_is_object(o)) {
        return NULL;
    }
    exact = json_object_get(o, key);
    if (exact != NULL) {
        return exact;
    }
    json_object_foreach(o, k, v)
    {
        if (strcasecmp(k, key) == 0) {
            return v;
        }
    }
    return NULL;
}

static bool scalar_text(json_t *v, struct strbuf *out)
{
    strbuf_reset(out);
    switch (json_typeof(v)) {
    case JSON_STRING:
        strbuf_add(out, json_string_value(v), json_string_length(v));
        return true;
    case JSON_INTEGER:
        strbuf_addf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return true;
    case JSON_REAL:
        strbuf_addf(out, "%.15g", json_real_value(v));
        return true;
    case JSON_TRUE:
        strbuf_addstr(out, "true");
        return true;
    case JSON_FALSE:
        strbuf_addstr(out, "false");
        return true;
    default:
        return false;
    }
}

static void add_json_value(struct entry *e, const char *name, json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    struct attr *a;

    if (text == NULL) {
        return;
    }
    a = entry_attr_add(e, name);
    a->flags |= ATTR_JSON;
    attr_add_value(a, text, strlen(text));
    free(text);
}

static void add_ref_value(struct entry *e, const char *name, json_t *v, struct strbuf *sb)
{
    json_t *val = json_is_object(v) ? get_ci(v, "value") : v;

    if (val != NULL && scalar_text(val, sb)) {
        entry_add_value(e, name, sb->buf, sb->len);
    }
}

/* One configured attribute's node -> values of `name`. */
static void add_node(struct entry *e, const char *name, json_t *node, bool ref, bool flatten,
                     struct strbuf *sb)
{
    size_t i;
    json_t *v;

    if (node == NULL || json_is_null(node)) {
        return;
    }
    if (json_is_array(node)) {
        json_array_foreach(node, i, v)
        {
            if (ref) {
                add_ref_value(e, name, v, sb);
            } else if (json_is_object(v) || json_is_array(v)) {
                add_json_value(e, name, v);
            } else if (scalar_text(v, sb)) {
                entry_add_value(e, name, sb->buf, sb->len);
            }
        }
        return;
    }
    if (json_is_object(node)) {
        if (ref) {
            add_ref_value(e, name, node, sb);
        } else if (flatten) {
            const char *k;
            struct strbuf sub = STRBUF_INIT;

            json_object_foreach(node, k, v)
            {
                if (json_is_object(v) || json_is_array(v)) {
                    continue;
                }
                strbuf_reset(&sub);
                strbuf_addf(&sub, "%s.%s", name, k);
                add_node(e, sub.buf, v, false, false, sb);
            }
            strbuf_release(&sub);
        } else {
            add_json_value(e, name, node);
        }
        return;
    }
    if (scalar_text(node, sb)) {
        entry_add_value(e, name, sb->buf, sb->len);
    }
}

/* The node of a resolved path (sub-attributes of a multi-valued attribute
 * are collected into a temporary array, returned with a reference). */
static json_t *path_node(json_t *res, const struct scim_path *p)
{
    json_t *base = p->urn != NULL ? get_ci(res, p->urn) : res;
    json_t *node = get_ci(base, p->attr);
    json_t *out;
    json_t *v;
    size_t i;

    if (node == NULL || p->sub == NULL) {
        return node == NULL ? NULL : json_incref(node);
    }
    if (json_is_object(node)) {
        v = get_ci(node, p->sub);
        return v == NULL ? NULL : json_incref(v);
    }
    if (!json_is_array(node)) {
        return NULL;
    }
    out = json_array();
    json_array_foreach(node, i, v)
    {
        json_t *s = get_ci(v, p->sub);

        if (s != NULL) {
            json_array_append(out, s);
        }
    }
    return out;
}

enum ids_err scim_resource_to_entry(const struct scim_rtype *t, json_t *res, struct entry **out,
                                    struct ids_error *err)
{
    struct entry *e;
    struct strbuf sb = STRBUF_INIT;
    json_t *id = json_object_get(res, "id");
    json_t *dn;
    size_t i;

    *out = NULL;
    if (!json_is_object(res)) {
        return ids_error_set(err, IDS_EINPUT, "%s: a resource that is not a JSON object", t->name);
    }
    if (!json_is_string(id) || json_string_length(id) == 0 ||
        strlen(json_string_value(id)) != json_string_length(id)) {
        return ids_error_set(err, IDS_EINPUT, "%s: a resource without a usable id", t->name);
    }
    e = entry_new(t->name, json_string_value(id), NULL);
    dn = t->dn_attr != NULL ? get_ci(res, t->dn_attr) : NULL;
    if (json_is_string(dn) && strlen(json_string_value(dn)) == json_string_length(dn)) {
        entry_set_dn(e, json_string_value(dn));
    }
    if (t->cfg != NULL && t->cfg->attributes.nr > 0) {
        for (i = 0; i < t->cfg->attributes.nr; i++) {
            const char *name = t->cfg->attributes.v[i];
            struct scim_path p;
            json_t *node;

            scim_path_parse(name, &p);
            node = path_node(res, &p);
            add_node(e, name, node, p.sub == NULL && scim_is_ref(t, name), false, &sb);
            json_decref(node);
            scim_path_release(&p);
        }
    } else {
        const char *k;
        json_t *v;

        json_object_foreach(res, k, v)
        {
            if (strcmp(k, "schemas") == 0 || strcmp(k, "meta") == 0 || strcmp(k, "id") == 0) {
                continue;
            }
            if (strncasecmp(k, "urn:", 4) == 0 && json_is_object(v)) {
                const char *k2;
                json_t *v2;
                struct strbuf name = STRBUF_INIT;

                json_object_foreach(v, k2, v2)
                {
                    strbuf_reset(&name);
                    strbuf_addf(&name, "%s:%s", k, k2);
                    add_node(e, name.buf, v2, scim_is_ref(t, name.buf), true, &sb);
                }
                strbuf_release(&name);
                continue;
            }
            add_node(e, k, v, scim_is_ref(t, k), !json_is_array(v) && !scim_is_ref(t, k), &sb);
        }
    }
    for (i = 0; i < e->nattrs; i++) {
        if (t->cfg != NULL && object_type_ref(t->cfg, e->attrs[i].name) != NULL) {
            e->attrs[i].flags |= ATTR_REF;
        }
    }
    strbuf_release(&sb);
    *out = e;
    return IDS_OK;
}

/* ---- entry values -> JSON ----------------------------------------------- */

static bool parse_bool(const char *s, bool *out)
{
    if (strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0 || strcasecmp(s, "yes") == 0) {
        *out = true;
        return true;
    }
    if (strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0 || strcasecmp(s, "no") == 0) {
        *out = false;
        return true;
    }
    return false;
}

static enum ids_err value_json(const struct scim_adef *d, bool ref, unsigned flags,
                               const struct value *v, const char *name, json_t **out,
                               struct ids_error *err)
{
    json_error_t jerr;

    *out = NULL;
    if (flags & ATTR_JSON) {
        *out = json_loadb(v->data, v->len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
        if (*out == NULL) {
            return ids_error_set(err, IDS_EINPUT, "attribute %s: a value is not JSON: %s", name,
                                 jerr.text);
        }
        return IDS_OK;
    }
    if (!utf8_valid(v->data, v->len) || memchr(v->data, '\0', v->len) != NULL) {
        return ids_error_set(err, IDS_EINPUT, "attribute %s: a value is not UTF-8 text", name);
    }
    if (ref) {
        *out = json_pack("{s:s%}", "value", v->data, v->len);
        return IDS_OK;
    }
    switch (d != NULL ? d->type : SCIM_STRING) {
    case SCIM_BOOLEAN: {
        bool b;

        if (!parse_bool(v->data, &b)) {
            return ids_error_set(err, IDS_EINPUT,
                                 "attribute %s: \"%.64s\" is not a boolean (true or false)", name,
                                 v->data);
        }
        *out = json_boolean(b);
        return IDS_OK;
    }
    case SCIM_INTEGER: {
        char *end = NULL;
        long long n;

        errno = 0;
        n = strtoll(v->data, &end, 10);
        if (v->len == 0 || end == v->data || *end != '\0' || errno != 0) {
            return ids_error_set(err, IDS_EINPUT, "attribute %s: \"%.64s\" is not an integer", name,
                                 v->data);
        }
        *out = json_integer(n);
        return IDS_OK;
    }
    case SCIM_DECIMAL: {
        char *end = NULL;
        double x = strtod(v->data, &end);

        if (v->len == 0 || end == v->data || *end != '\0') {
            return ids_error_set(err, IDS_EINPUT, "attribute %s: \"%.64s\" is not a number", name,
                                 v->data);
        }
        *out = json_real(x);
        return IDS_OK;
    }
    default:
        *out = json_stringn(v->data, v->len);
        return IDS_OK;
    }
}

/* Values of one attribute as the JSON a PATCH value or a resource holds:
 * an array when multi, else one value. */
static enum ids_err attr_json(const struct scim_rtype *t, const char *name, const struct attr *a,
                              size_t from, size_t to, json_t **out, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct scim_path p;
    const struct scim_adef *d;
    bool ref;
    bool multi;
    size_t i;

    *out = NULL;
    scim_path_parse(name, &p);
    d = path_def(t, &p);
    ref = p.sub == NULL && ((a->flags & ATTR_REF) || is_ref(t, name, &p, d));
    multi = d != NULL ? d->multi : ((a->flags & ATTR_JSON) != 0 || a->nvals > 1);
    if (!multi) {
        if (a->nvals > 1) {
            ret = ids_error_set(err, IDS_EINPUT, "attribute %s takes one value, got %zu", name,
                                a->nvals);
        } else if (a->nvals == 1) {
            ret = value_json(d, ref, a->flags, &a->vals[0], name, out, err);
        }
        goto done;
    }
    *out = json_array();
    for (i = from; i < to && i < a->nvals; i++) {
        json_t *v = NULL;

        ret = value_json(d, ref, a->flags, &a->vals[i], name, &v, err);
        if (ret != IDS_OK) {
            json_decref(*out);
            *out = NULL;
            goto done;
        }
        if (json_is_array(v)) {
            json_array_extend(*out, v);
            json_decref(v);
        } else {
            json_array_append_new(*out, v);
        }
    }

done:
    scim_path_release(&p);
    return ret;
}

static bool attr_is_multi(const struct scim_rtype *t, const char *name, const struct attr *a)
{
    struct scim_path p;
    const struct scim_adef *d;
    bool multi;

    scim_path_parse(name, &p);
    d = path_def(t, &p);
    multi = d != NULL ? d->multi : ((a->flags & ATTR_JSON) != 0 || a->nvals > 1);
    scim_path_release(&p);
    return multi;
}

static bool skip_attr(const char *name)
{
    return strcasecmp(name, "id") == 0 || strcasecmp(name, "meta") == 0 ||
           strcasecmp(name, "schemas") == 0 || strcasecmp(name, "dn") == 0;
}

static void schemas_add(json_t *res, const char *urn)
{
    json_t *schemas = json_object_get(res, "schemas");
    size_t i;

    for (i = 0; i < json_array_size(schemas); i++) {
        if (strcasecmp(json_string_value(json_array_get(schemas, i)), urn) == 0) {
            return;
        }
    }
    json_array_append_new(schemas, json_string(urn));
}

/* Set (replace) the value at path p in res. */
static void set_at(json_t *res, const struct scim_path *p, json_t *value)
{
    json_t *base = res;
    const char *key = p->attr;
    const char *k;
    json_t *v;

    if (p->urn != NULL) {
        base = get_ci(res, p->urn);
        if (!json_is_object(base)) {
            base = json_object();
            json_object_set_new(res, p->urn, base);
        }
        schemas_add(res, p->urn);
    }
    if (p->sub != NULL) {
        json_t *c = get_ci(base, p->attr);

        if (!json_is_object(c)) {
            c = json_object();
            json_object_set_new(base, p->attr, c);
        }
        base = c;
        key = p->sub;
    }
    /* keep the spelling already there */
    json_object_foreach(base, k, v)
    {
        if (strcasecmp(k, key) == 0) {
            key = k;
            break;
        }
    }
    json_object_set_new(base, key, value);
}

enum ids_err scim_change_to_resource(const struct scim_rtype *t, const struct change *ch,
                                     json_t **out, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    json_t *res = json_object();
    size_t i;

    *out = NULL;
    json_object_set_new(res, "schemas", json_pack("[s]", t->schema));
    for (i = 0; i < ch->nmods; i++) {
        const struct mod *m = &ch->mods[i];
        struct scim_path p;
        json_t *v = NULL;

        if (skip_attr(m->attr.name) || m->op == MOD_DELETE || m->attr.nvals == 0) {
            continue;
        }
        ret = attr_json(t, m->attr.name, &m->attr, 0, m->attr.nvals, &v, err);
        if (ret != IDS_OK) {
            goto done;
        }
        if (v == NULL) {
            continue;
        }
        scim_path_parse(m->attr.name, &p);
        set_at(res, &p, v);
        scim_path_release(&p);
    }
    *out = res;
    res = NULL;

done:
    json_decref(res);
    return ret;
}

/* ---- PATCH --------------------------------------------------------------- */

struct patch_builder {
    json_t *bodies;
    json_t *ops;
    size_t units;
    size_t chunk;
};

static void pb_flush(struct patch_builder *pb)
{
    if (pb->ops != NULL && json_array_size(pb->ops) > 0) {
        json_array_append_new(
            pb->bodies, json_pack("{s:[s],s:O}", "schemas", SCIM_PATCHOP, "Operations", pb->ops));
    }
    json_decref(pb->ops);
    pb->ops = json_array();
    pb->units = 0;
}

static void pb_add(struct patch_builder *pb, json_t *op, size_t units)
{
    if (pb->units > 0 && pb->units + units > pb->chunk) {
        pb_flush(pb);
    }
    json_array_append_new(pb->ops, op);
    pb->units += units;
}

void scim_filter_value(struct strbuf *out, const char *value)
{
    strbuf_add_json_str(out, value, strlen(value));
}

void scim_filter_eq(struct strbuf *out, const char *name, const char *value)
{
    struct scim_path p;

    scim_path_parse(name, &p);
    scim_path_format(&p, out);
    strbuf_addstr(out, " eq ");
    scim_filter_value(out, value);
    scim_path_release(&p);
}

/* The path that removes one value of a multi-valued attribute. */
static enum ids_err value_filter_path(const char *path, const struct value *v, unsigned flags,
                                      struct strbuf *out, const char *name, struct ids_error *err)
{
    strbuf_addf(out, "%s[value eq ", path);
    if (flags & ATTR_JSON) {
        json_error_t jerr;
        json_t *o = json_loadb(v->data, v->len, 0, &jerr);
        json_t *val = get_ci(o, "value");
        json_t *type = get_ci(o, "type");
        struct strbuf sb = STRBUF_INIT;

        if (val == NULL || !scalar_text(val, &sb)) {
            json_decref(o);
            strbuf_release(&sb);
            return ids_error_set(err, IDS_EINPUT,
                                 "attribute %s: cannot remove a value that has no `value`", name);
        }
        scim_filter_value(out, sb.buf);
        if (json_is_string(type)) {
            strbuf_addstr(out, " and type eq ");
            scim_filter_value(out, json_string_value(type));
        }
        json_decref(o);
        strbuf_release(&sb);
    } else {
        scim_filter_value(out, v->data);
    }
    strbuf_addch(out, ']');
    return IDS_OK;
}

enum ids_err scim_change_to_patches(const struct scim_rtype *t, const struct change *ch,
                                    size_t chunk, json_t **out, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct patch_builder pb = {json_array(), json_array(), 0, chunk > 0 ? chunk : 1};
    struct strbuf path = STRBUF_INIT;
    struct strbuf vpath = STRBUF_INIT;
    size_t i;
    size_t k;

    *out = NULL;
    for (i = 0; i < ch->nmods && ret == IDS_OK; i++) {
        const struct mod *m = &ch->mods[i];
        const struct attr *a = &m->attr;
        struct scim_path p;
        bool multi;
        json_t *v = NULL;

        if (skip_attr(a->name)) {
            continue;
        }
        multi = attr_is_multi(t, a->name, a);
        scim_path_parse(a->name, &p);
        strbuf_reset(&path);
        scim_path_format(&p, &path);
        scim_path_release(&p);
        if (a->nvals == 0 && m->op != MOD_ADD) {
            pb_add(&pb, json_pack("{s:s,s:s}", "op", "remove", "path", path.buf), 1);
            continue;
        }
        if (m->op == MOD_REPLACE || (m->op == MOD_ADD && !multi)) {
            size_t first = multi && a->nvals > pb.chunk ? pb.chunk : a->nvals;

            ret = attr_json(t, a->name, a, 0, first, &v, err);
            if (ret != IDS_OK || v == NULL) {
                break;
            }
            pb_add(&pb, json_pack("{s:s,s:s,s:o}", "op", "replace", "path", path.buf, "value", v),
                   multi ? first : 1);
            for (k = first; k < a->nvals && ret == IDS_OK; k += pb.chunk) {
                ret = attr_json(t, a->name, a, k, k + pb.chunk, &v, err);
                if (ret == IDS_OK) {
                    pb_add(&pb,
                           json_pack("{s:s,s:s,s:o}", "op", "add", "path", path.buf, "value", v),
                           json_array_size(v));
                }
            }
            continue;
        }
        if (m->op == MOD_ADD) {
            for (k = 0; k < a->nvals && ret == IDS_OK; k += pb.chunk) {
                ret = attr_json(t, a->name, a, k, k + pb.chunk, &v, err);
                if (ret == IDS_OK) {
                    pb_add(&pb,
                           json_pack("{s:s,s:s,s:o}", "op", "add", "path", path.buf, "value", v),
                           json_array_size(v));
                }
            }
            continue;
        }
        /* MOD_DELETE of values */
        if (!multi) {
            pb_add(&pb, json_pack("{s:s,s:s}", "op", "remove", "path", path.buf), 1);
            continue;
        }
        for (k = 0; k < a->nvals && ret == IDS_OK; k++) {
            strbuf_reset(&vpath);
            ret = value_filter_path(path.buf, &a->vals[k], a->flags, &vpath, a->name, err);
            if (ret == IDS_OK) {
                pb_add(&pb, json_pack("{s:s,s:s}", "op", "remove", "path", vpath.buf), 1);
            }
        }
    }
    if (ret == IDS_OK) {
        pb_flush(&pb);
        *out = pb.bodies;
        pb.bodies = NULL;
    }
    json_decref(pb.ops);
    json_decref(pb.bodies);
    strbuf_release(&path);
    strbuf_release(&vpath);
    return ret;
}

/* ---- PATCH application (PUT fallback) ----------------------------------- */

struct vfilter {
    size_t n;
    char *sub[4];
    json_t *val[4];
};

static void vfilter_release(struct vfilter *f)
{
    size_t i;

    for (i = 0; i < f->n; i++) {
        free(f->sub[i]);
        json_decref(f->val[i]);
    }
    f->n = 0;
}

/* "value eq \"x\" and type eq \"work\"" -> pairs. Only what
 * scim_change_to_patches writes (eq, joined by and). */
static bool vfilter_parse(const char *s, size_t len, struct vfilter *f)
{
    size_t i = 0;

    memset(f, 0, sizeof(*f));
    for (;;) {
        size_t st;
        size_t q;
        json_error_t jerr;

        while (i < len && s[i] == ' ') {
            i++;
        }
        st = i;
        while (i < len && (isalnum((unsigned char)s[i]) || s[i] == '$' || s[i] == '_')) {
            i++;
        }
        if (i == st || f->n == ARRAY_SIZE(f->sub) || len - i < 5 ||
            strncasecmp(s + i, " eq \"", 5) != 0) {
            vfilter_release(f);
            return false;
        }
        f->sub[f->n] = xmemdup(s + st, i - st);
        i += 4;
        q = i + 1;
        while (q < len && s[q] != '"') {
            q += s[q] == '\\' ? 2 : 1;
        }
        if (q >= len) {
            free(f->sub[f->n]);
            vfilter_release(f);
            return false;
        }
        f->val[f->n] = json_loadb(s + i, q + 1 - i, JSON_DECODE_ANY, &jerr);
        if (f->val[f->n] == NULL) {
            free(f->sub[f->n]);
            vfilter_release(f);
            return false;
        }
        f->n++;
        i = q + 1;
        while (i < len && s[i] == ' ') {
            i++;
        }
        if (i == len) {
            return true;
        }
        if (len - i < 4 || strncasecmp(s + i, "and ", 4) != 0) {
            vfilter_release(f);
            return false;
        }
        i += 4;
    }
}

static bool vfilter_match(const struct vfilter *f, json_t *elem)
{
    size_t i;

    for (i = 0; i < f->n; i++) {
        json_t *v = json_is_object(elem)              ? get_ci(elem, f->sub[i])
                    : strcmp(f->sub[i], "value") == 0 ? elem
                                                      : NULL;

        if (v == NULL || !json_equal(v, f->val[i])) {
            return false;
        }
    }
    return true;
}

static bool array_has(json_t *arr, json_t *v)
{
    size_t i;
    json_t *e;
    json_t *vv = json_is_object(v) ? get_ci(v, "value") : NULL;

    json_array_foreach(arr, i, e)
    {
        if (json_equal(e, v)) {
            return true;
        }
        if (vv != NULL && json_is_object(e) && json_equal(get_ci(e, "value"), vv) &&
            json_object_size(v) == 1) {
            return true;
        }
    }
    return false;
}

static enum ids_err apply_one(json_t *res, json_t *op, struct ids_error *err)
{
    const char *name = jstr(op, "op");
    const char *path = jstr(op, "path");
    json_t *value = json_object_get(op, "value");
    const char *br;
    struct scim_path p;
    struct vfilter f;
    bool has_filter = false;
    json_t *base;
    json_t *cur;
    const char *key;
    enum ids_err ret = IDS_OK;

    if (name == NULL || path == NULL) {
        return ids_error_set(err, IDS_EINPUT, "a PATCH operation without op or path");
    }
    br = strchr(path, '[');
    if (br != NULL) {
        char *head = xmemdup(path, (size_t)(br - path));
        size_t flen = strlen(br + 1);

        if (flen == 0 || br[flen] != ']' || !vfilter_parse(br + 1, flen - 1, &f)) {
            free(head);
            return ids_error_set(err, IDS_EINPUT, "PATCH path %s: unsupported filter", path);
        }
        has_filter = true;
        scim_path_parse(head, &p);
        free(head);
    } else {
        scim_path_parse(path, &p);
    }
    base = p.urn != NULL ? get_ci(res, p.urn) : res;
    if (base == NULL && strcasecmp(name, "remove") != 0) {
        base = json_object();
        json_object_set_new(res, p.urn, base);
        schemas_add(res, p.urn);
    }
    key = p.attr;
    if (p.sub != NULL && base != NULL) {
        json_t *c = get_ci(base, p.attr);

        if (c == NULL && strcasecmp(name, "remove") != 0) {
            c = json_object();
            json_object_set_new(base, p.attr, c);
        }
        base = c;
        key = p.sub;
    }
    if (!json_is_object(base)) {
        goto done; /* nothing to remove */
    }
    {
        const char *k;
        json_t *v;

        json_object_foreach(base, k, v)
        {
            if (strcasecmp(k, key) == 0) {
                key = k;
                break;
            }
        }
    }
    cur = json_object_get(base, key);
    if (strcasecmp(name, "remove") == 0) {
        if (has_filter && json_is_array(cur)) {
            size_t i = 0;

            while (i < json_array_size(cur)) {
                if (vfilter_match(&f, json_array_get(cur, i))) {
                    json_array_remove(cur, i);
                } else {
                    i++;
                }
            }
        } else if (!has_filter) {
            json_object_del(base, key);
        }
    } else if (strcasecmp(name, "add") == 0 && json_is_array(value)) {
        size_t i;
        json_t *v;

        if (!json_is_array(cur)) {
            cur = json_array();
            json_object_set_new(base, key, cur);
        }
        json_array_foreach(value, i, v)
        {
            if (!array_has(cur, v)) {
                json_array_append(cur, v);
            }
        }
    } else if (strcasecmp(name, "add") == 0 || strcasecmp(name, "replace") == 0) {
        if (value == NULL) {
            ret = ids_error_set(err, IDS_EINPUT, "PATCH %s %s without a value", name, path);
            goto done;
        }
        json_object_set(base, key, value);
    } else {
        ret = ids_error_set(err, IDS_EINPUT, "unknown PATCH operation %s", name);
    }

done:
    if (has_filter) {
        vfilter_release(&f);
    }
    scim_path_release(&p);
    return ret;
}

enum ids_err scim_patch_apply(json_t *res, json_t *ops, struct ids_error *err)
{
    size_t i;
    json_t *op;

    json_array_foreach(ops, i, op)
    {
        enum ids_err ret = apply_one(res, op, err);

        if (ret != IDS_OK) {
            return ret;
        }
    }
    return IDS_OK;
}

/* ---- errors and retries ------------------------------------------------- */

void scim_error_parse(const char *body, size_t len, struct strbuf *detail, struct strbuf *scim_type)
{
    json_error_t jerr;
    json_t *o = len > 0 ? json_loadb(body, len, 0, &jerr) : NULL;

    if (json_is_object(o)) {
        const char *d = jstr(o, "detail");
        const char *t = jstr(o, "scimType");

        if (d != NULL) {
            strbuf_addstr(detail, d);
        } else if (jstr(o, "error_description") != NULL) {
            strbuf_addstr(detail, jstr(o, "error_description"));
        } else if (jstr(o, "error") != NULL) {
            strbuf_addstr(detail, jstr(o, "error"));
        } else if (jstr(o, "message") != NULL) {
            strbuf_addstr(detail, jstr(o, "message"));
        }
        if (t != NULL) {
            strbuf_addstr(scim_type, t);
        }
    } else if (len > 0) {
        size_t n = 0;

        while (n < len && n < 200 && body[n] != '\n' && body[n] != '\r' && body[n] != '\0') {
            n++;
        }
        strbuf_add(detail, body, n);
    }
    json_decref(o);
}

static bool word_in(const char *hay, const char *word)
{
    size_t wl = strlen(word);
    const char *p = hay;

    if (wl == 0) {
        return false;
    }
    while (*p) {
        if (strncasecmp(p, word, wl) == 0 && (p == hay || !isalnum((unsigned char)p[-1])) &&
            !isalnum((unsigned char)p[wl])) {
            return true;
        }
        p++;
    }
    return false;
}

const char *scim_error_attr(const struct change *ch, const char *detail)
{
    size_t i;

    if (ch == NULL || detail == NULL) {
        return NULL;
    }
    for (i = 0; i < ch->nmods; i++) {
        const char *n = ch->mods[i].attr.name;
        struct scim_path p;
        bool hit;

        scim_path_parse(n, &p);
        hit = word_in(detail, n) || word_in(detail, p.sub != NULL ? p.sub : p.attr);
        scim_path_release(&p);
        if (hit) {
            return n;
        }
    }
    return NULL;
}

bool scim_retry_after_ms(const char *value, time_t now, long long *ms)
{
    const char *p = value;
    time_t t;

    *ms = 0;
    if (value == NULL) {
        return false;
    }
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    if (*p == '\0') {
        return false;
    }
    if (isdigit((unsigned char)*p)) {
        long long s = 0;

        while (isdigit((unsigned char)*p)) {
            if (s < 100000000) {
                s = s * 10 + (*p - '0');
            }
            p++;
        }
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p != '\0') {
            return false;
        }
        if (s > 100000000) {
            s = 100000000;
        }
        *ms = s * 1000;
        return true;
    }
    t = curl_getdate(p, NULL);
    if (t == (time_t)-1) {
        return false;
    }
    *ms = t > now ? (long long)(t - now) * 1000 : 0;
    return true;
}

long long scim_backoff_ms(int n, long long base_ms, long long cap_ms, uint64_t rnd)
{
    long long d = base_ms > 0 ? base_ms : 1;
    int i;

    for (i = 1; i < n && d < cap_ms; i++) {
        d *= 2;
    }
    if (d > cap_ms) {
        d = cap_ms;
    }
    if (d <= 1) {
        return d;
    }
    return d / 2 + (long long)(rnd % (uint64_t)(d - d / 2 + 1));
}

bool scim_status_retryable(long status)
{
    return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
           status == 504;
}
