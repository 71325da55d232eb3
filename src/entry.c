/* entry.c - directory objects and changes: building, canonical form, hash,
 * compact binary encoding for the store, JSON for output. */
#include "entry.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/codec.h"
#include "util/mem.h"
#include "util/banned.h"

/* ---- entries -------------------------------------------------------------- */

struct entry *entry_new(const char *type, const char *anchor, const char *dn)
{
    struct entry *e = xcalloc(1, sizeof(*e));

    e->type = xstrdup_or_null(type);
    e->anchor = xstrdup_or_null(anchor);
    e->dn = xstrdup_or_null(dn);
    return e;
}

void attr_release(struct attr *a)
{
    size_t i;

    for (i = 0; i < a->nvals; i++) {
        free(a->vals[i].data);
    }
    free(a->vals);
    free(a->name);
    memset(a, 0, sizeof(*a));
}

void entry_free(struct entry *e)
{
    size_t i;

    if (e == NULL) {
        return;
    }
    for (i = 0; i < e->nattrs; i++) {
        attr_release(&e->attrs[i]);
    }
    free(e->attrs);
    free(e->type);
    free(e->anchor);
    free(e->dn);
    free(e);
}

void attr_copy(struct attr *dst, const struct attr *src)
{
    size_t i;

    memset(dst, 0, sizeof(*dst));
    dst->name = xstrdup(src->name);
    dst->flags = src->flags;
    dst->source = src->source;
    for (i = 0; i < src->nvals; i++) {
        attr_add_value(dst, src->vals[i].data, src->vals[i].len);
    }
}

struct entry *entry_dup(const struct entry *e)
{
    struct entry *d = entry_new(e->type, e->anchor, e->dn);
    size_t i;

    if (e->nattrs) {
        d->attrs = xcalloc(e->nattrs, sizeof(*d->attrs));
        d->alloc = e->nattrs;
    }
    for (i = 0; i < e->nattrs; i++) {
        attr_copy(&d->attrs[i], &e->attrs[i]);
    }
    d->nattrs = e->nattrs;
    return d;
}

static void replace_str(char **dst, const char *s)
{
    char *n = xstrdup_or_null(s);

    free(*dst);
    *dst = n;
}

void entry_set_anchor(struct entry *e, const char *anchor)
{
    replace_str(&e->anchor, anchor);
}

void entry_set_dn(struct entry *e, const char *dn)
{
    replace_str(&e->dn, dn);
}

void entry_set_type(struct entry *e, const char *type)
{
    replace_str(&e->type, type);
}

struct attr *entry_attr(const struct entry *e, const char *name)
{
    unsigned char c0 = (unsigned char)name[0] | 0x20;
    size_t i;

    for (i = 0; i < e->nattrs; i++) {
        /* names that differ in their first letter (case folded: | 0x20
         * never tells equal letters apart) skip the call: this runs for
         * every attribute of every flow */
        if (((unsigned char)e->attrs[i].name[0] | 0x20) == c0 &&
            strcasecmp(e->attrs[i].name, name) == 0) {
            return &e->attrs[i];
        }
    }
    return NULL;
}

struct attr *entry_attr_add(struct entry *e, const char *name)
{
    struct attr *a = entry_attr(e, name);

    if (a != NULL) {
        return a;
    }
    ALLOC_GROW(e->attrs, e->nattrs + 1, e->alloc);
    a = &e->attrs[e->nattrs++];
    memset(a, 0, sizeof(*a));
    a->name = xstrdup(name);
    a->source = -1;
    return a;
}

void attr_add_value(struct attr *a, const void *data, size_t len)
{
    ALLOC_GROW(a->vals, a->nvals + 1, a->alloc);
    a->vals[a->nvals].data = xmemdup(data, len);
    a->vals[a->nvals].len = len;
    a->nvals++;
}

void entry_add_value(struct entry *e, const char *name, const void *data, size_t len)
{
    attr_add_value(entry_attr_add(e, name), data, len);
}

void entry_add_str(struct entry *e, const char *name, const char *s)
{
    entry_add_value(e, name, s, strlen(s));
}

void entry_remove_attr(struct entry *e, const char *name)
{
    struct attr *a = entry_attr(e, name);
    size_t idx;

    if (a == NULL) {
        return;
    }
    idx = (size_t)(a - e->attrs);
    attr_release(a);
    memmove(&e->attrs[idx], &e->attrs[idx + 1], (e->nattrs - idx - 1) * sizeof(*a));
    e->nattrs--;
}

/* Attribute `name` of e emptied of its values, with src's flags and
 * source; NULL (and the attribute removed) when src has no values. */
static struct attr *attr_for_set(struct entry *e, const char *name, const struct attr *src)
{
    struct attr *a;
    char *keep_name;

    if (src == NULL || src->nvals == 0) {
        entry_remove_attr(e, name);
        return NULL;
    }
    a = entry_attr_add(e, name);
    keep_name = a->name;
    a->name = NULL;
    attr_release(a);
    a->name = keep_name;
    a->flags = src->flags;
    a->source = src->source;
    return a;
}

void entry_set_attr(struct entry *e, const char *name, const struct attr *src)
{
    struct attr *a = attr_for_set(e, name, src);
    size_t i;

    for (i = 0; a != NULL && i < src->nvals; i++) {
        attr_add_value(a, src->vals[i].data, src->vals[i].len);
    }
}

void attr_take_values(struct attr *dst, struct attr *src)
{
    size_t i;

    for (i = 0; i < dst->nvals; i++) {
        free(dst->vals[i].data);
    }
    free(dst->vals);
    dst->vals = src->vals;
    dst->nvals = src->nvals;
    dst->alloc = src->alloc;
    src->vals = NULL;
    src->nvals = 0;
    src->alloc = 0;
}

void entry_take_attr(struct entry *e, const char *name, struct attr *src)
{
    struct attr *a = attr_for_set(e, name, src);

    if (a != NULL) {
        attr_take_values(a, src);
    }
}

const char *entry_first(const struct entry *e, const char *name)
{
    const struct attr *a = entry_attr(e, name);

    if (a == NULL || a->nvals == 0) {
        return NULL;
    }
    return a->vals[0].data;
}

static bool value_eq(const struct value *v, const void *data, size_t len)
{
    return v->len == len && (len == 0 || memcmp(v->data, data, len) == 0);
}

size_t attr_remove_value(struct attr *a, const void *data, size_t len)
{
    size_t i;
    size_t j = 0;
    size_t removed = 0;

    for (i = 0; i < a->nvals; i++) {
        if (value_eq(&a->vals[i], data, len)) {
            free(a->vals[i].data);
            removed++;
        } else {
            a->vals[j++] = a->vals[i];
        }
    }
    a->nvals = j;
    return removed;
}

bool attr_has_value(const struct attr *a, const void *data, size_t len)
{
    size_t i;

    for (i = 0; i < a->nvals; i++) {
        if (value_eq(&a->vals[i], data, len)) {
            return true;
        }
    }
    return false;
}

int value_cmp(const void *pa, const void *pb)
{
    const struct value *a = pa;
    const struct value *b = pb;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->data, b->data, n) : 0;

    if (c != 0) {
        return c;
    }
    return (a->len > b->len) - (a->len < b->len);
}

static void attr_canonicalize(struct attr *a)
{
    size_t i;
    size_t j;

    if (a->nvals < 2) {
        return;
    }
    /* values read back from the store, or built sorted, are left as they
     * are after one pass (a second canonicalize costs no sort) */
    for (i = 1; i < a->nvals && value_cmp(&a->vals[i - 1], &a->vals[i]) < 0; i++) {
    }
    if (i == a->nvals) {
        return;
    }
    qsort(a->vals, a->nvals, sizeof(*a->vals), value_cmp);
    j = 1;
    for (i = 1; i < a->nvals; i++) {
        if (value_cmp(&a->vals[i], &a->vals[j - 1]) == 0) {
            free(a->vals[i].data);
        } else {
            a->vals[j++] = a->vals[i];
        }
    }
    a->nvals = j;
}

/* ---- large multi-valued attributes ---------------------------------------
 *
 * A group of 100,000 members is one attribute: testing each value of one
 * list against another value by value is quadratic (a full export of such
 * a group spent 12 s in attr_has_value). Past VALUES_LINEAR_MAX pairs, and
 * when more than VALUES_FEW values are looked up (one member added to a
 * group of 100,000 is cheaper by one pass than by a sort), the values are
 * sorted (shallow copies: the data stays where it is) and looked up by
 * bisection. Results are the same as the linear loops', order included. */
#define VALUES_LINEAR_MAX 4096u
#define VALUES_FEW        16u
#define VALUES_SORTED(looked_up, among)                                                            \
    ((looked_up) > VALUES_FEW && (looked_up) * (among) > VALUES_LINEAR_MAX)

/* Shallow copies of the values of a, sorted (already sorted: one pass). */
static struct value *values_sorted(const struct attr *a)
{
    struct value *v = xcalloc(a->nvals > 0 ? a->nvals : 1, sizeof(*v));
    size_t i;

    if (a->nvals > 0) {
        memcpy(v, a->vals, a->nvals * sizeof(*v));
    }
    for (i = 1; i < a->nvals && value_cmp(&v[i - 1], &v[i]) <= 0; i++) {
    }
    if (i < a->nvals) {
        qsort(v, a->nvals, sizeof(*v), value_cmp);
    }
    return v;
}

static bool values_find(const struct value *sorted, size_t n, const void *data, size_t len)
{
    struct value key = {(char *)data, len};

    return n > 0 && bsearch(&key, sorted, n, sizeof(*sorted), value_cmp) != NULL;
}

/* The values of sorted a[0..na) and b[0..nb) are the same set. */
static bool sorted_sets_equal(const struct value *a, size_t na, const struct value *b, size_t nb)
{
    size_t i = 0;
    size_t j = 0;

    while (i < na && j < nb) {
        if (value_cmp(&a[i], &b[j]) != 0) {
            return false;
        }
        /* past the run of this value in both */
        for (i++; i < na && value_cmp(&a[i - 1], &a[i]) == 0; i++) {
        }
        for (j++; j < nb && value_cmp(&b[j - 1], &b[j]) == 0; j++) {
        }
    }
    return i == na && j == nb;
}

/* Add to a the values of m that it does not hold, in m's order, each
 * once. */
struct vpos {
    struct value v;
    size_t pos;
};

static int cmp_vpos(const void *pa, const void *pb)
{
    const struct vpos *a = pa;
    const struct vpos *b = pb;
    int c = value_cmp(&a->v, &b->v);

    return c != 0 ? c : (a->pos > b->pos) - (a->pos < b->pos);
}

static void attr_add_values(struct attr *a, const struct attr *m)
{
    struct value *old;
    struct vpos *nv;
    bool *skip;
    size_t n0 = a->nvals;
    size_t k;

    if (!VALUES_SORTED(m->nvals, n0 + m->nvals)) {
        for (k = 0; k < m->nvals; k++) {
            if (!attr_has_value(a, m->vals[k].data, m->vals[k].len)) {
                attr_add_value(a, m->vals[k].data, m->vals[k].len);
            }
        }
        return;
    }
    old = values_sorted(a);
    nv = xcalloc(m->nvals, sizeof(*nv));
    skip = xcalloc(m->nvals, sizeof(*skip));
    for (k = 0; k < m->nvals; k++) {
        nv[k].v = m->vals[k];
        nv[k].pos = k;
    }
    qsort(nv, m->nvals, sizeof(*nv), cmp_vpos);
    for (k = 0; k < m->nvals; k++) {
        /* a later copy of a value of m, or a value a holds already */
        skip[nv[k].pos] = (k > 0 && value_cmp(&nv[k - 1].v, &nv[k].v) == 0) ||
                          values_find(old, n0, nv[k].v.data, nv[k].v.len);
    }
    for (k = 0; k < m->nvals; k++) {
        if (!skip[k]) {
            attr_add_value(a, m->vals[k].data, m->vals[k].len);
        }
    }
    free(skip);
    free(nv);
    free(old);
}

/* Remove from a every value equal to one of m. */
static void attr_remove_values(struct attr *a, const struct attr *m)
{
    struct value *del;
    size_t i;
    size_t j = 0;

    if (!VALUES_SORTED(m->nvals, a->nvals)) {
        for (i = 0; i < m->nvals; i++) {
            attr_remove_value(a, m->vals[i].data, m->vals[i].len);
        }
        return;
    }
    del = values_sorted(m);
    for (i = 0; i < a->nvals; i++) {
        if (values_find(del, m->nvals, a->vals[i].data, a->vals[i].len)) {
            free(a->vals[i].data);
        } else {
            a->vals[j++] = a->vals[i];
        }
    }
    a->nvals = j;
    free(del);
}

void attr_values_held(const struct attr *want, const struct attr *a, struct attr *out)
{
    struct value *sorted = NULL;
    size_t k;

    if (a == NULL) {
        return;
    }
    if (VALUES_SORTED(want->nvals, a->nvals)) {
        sorted = values_sorted(a);
    }
    for (k = 0; k < want->nvals; k++) {
        const struct value *v = &want->vals[k];

        if (sorted != NULL ? values_find(sorted, a->nvals, v->data, v->len)
                           : attr_has_value(a, v->data, v->len)) {
            attr_add_value(out, v->data, v->len);
        }
    }
    free(sorted);
}

bool attr_values_equal(const struct attr *a, const struct attr *b)
{
    size_t i;

    if (VALUES_SORTED(a->nvals < b->nvals ? a->nvals : b->nvals, a->nvals + b->nvals)) {
        struct value *sa = values_sorted(a);
        struct value *sb = values_sorted(b);
        bool eq = sorted_sets_equal(sa, a->nvals, sb, b->nvals);

        free(sa);
        free(sb);
        return eq;
    }
    for (i = 0; i < a->nvals; i++) {
        if (!attr_has_value(b, a->vals[i].data, a->vals[i].len)) {
            return false;
        }
    }
    for (i = 0; i < b->nvals; i++) {
        if (!attr_has_value(a, b->vals[i].data, b->vals[i].len)) {
            return false;
        }
    }
    return true;
}

static int cmp_attr(const void *pa, const void *pb)
{
    const struct attr *a = pa;
    const struct attr *b = pb;

    return strcasecmp(a->name, b->name);
}

void entry_canonicalize(struct entry *e)
{
    size_t i;
    size_t j;

    for (i = 1; i < e->nattrs && cmp_attr(&e->attrs[i - 1], &e->attrs[i]) < 0; i++) {
    }
    if (i < e->nattrs) {
        qsort(e->attrs, e->nattrs, sizeof(*e->attrs), cmp_attr);
    }
    /* merge attributes that differ only in case */
    j = 0;
    for (i = 0; i < e->nattrs; i++) {
        if (j > 0 && strcasecmp(e->attrs[j - 1].name, e->attrs[i].name) == 0) {
            struct attr *dst = &e->attrs[j - 1];
            size_t k;

            for (k = 0; k < e->attrs[i].nvals; k++) {
                attr_add_value(dst, e->attrs[i].vals[k].data, e->attrs[i].vals[k].len);
            }
            dst->flags |= e->attrs[i].flags;
            attr_release(&e->attrs[i]);
            continue;
        }
        if (j != i) {
            e->attrs[j] = e->attrs[i];
        }
        j++;
    }
    e->nattrs = j;
    j = 0;
    for (i = 0; i < e->nattrs; i++) {
        attr_canonicalize(&e->attrs[i]);
        if (e->attrs[i].nvals == 0) {
            attr_release(&e->attrs[i]);
            continue;
        }
        if (j != i) {
            e->attrs[j] = e->attrs[i];
        }
        j++;
    }
    e->nattrs = j;
}

/* ---- binary encoding -------------------------------------------------- */

#define ENTRY_MAGIC  0xE1
#define CHANGE_MAGIC 0xC1

/* NULL is encoded as 0, a string of length L as L+1 */
static void put_str(struct strbuf *out, const char *s, size_t len)
{
    if (s == NULL) {
        varint_put(out, 0);
        return;
    }
    varint_put(out, (uint64_t)len + 1);
    strbuf_add(out, s, len);
}

static void put_cstr(struct strbuf *out, const char *s)
{
    put_str(out, s, s ? strlen(s) : 0);
}

static void put_attr(struct strbuf *out, const struct attr *a)
{
    size_t i;
    int64_t src = a->source;

    put_cstr(out, a->name);
    varint_put(out, a->flags);
    varint_put(out, ((uint64_t)src << 1) ^ (uint64_t)(src >> 63));
    varint_put(out, a->nvals);
    for (i = 0; i < a->nvals; i++) {
        varint_put(out, a->vals[i].len);
        strbuf_add(out, a->vals[i].data, a->vals[i].len);
    }
}

void entry_encode(struct entry *e, struct strbuf *out)
{
    size_t i;

    entry_canonicalize(e);
    strbuf_addch(out, ENTRY_MAGIC);
    put_cstr(out, e->type);
    put_cstr(out, e->anchor);
    put_cstr(out, e->dn);
    varint_put(out, e->nattrs);
    for (i = 0; i < e->nattrs; i++) {
        put_attr(out, &e->attrs[i]);
    }
}

uint64_t entry_hash(struct entry *e)
{
    struct strbuf sb;
    uint64_t h;
    size_t i;

    strbuf_init(&sb, 512); /* most entries: no growth on the way */
    entry_canonicalize(e);
    put_cstr(&sb, e->type);
    put_cstr(&sb, e->dn);
    varint_put(&sb, e->nattrs);
    for (i = 0; i < e->nattrs; i++) {
        struct attr a = e->attrs[i];
        char lname[256];
        size_t k;

        /* names compare case-insensitively; lineage is not content */
        for (k = 0; k + 1 < sizeof(lname) && a.name[k]; k++) {
            lname[k] = (char)tolower((unsigned char)a.name[k]);
        }
        lname[k] = '\0';
        a.name = lname;
        a.source = -1;
        put_attr(&sb, &a);
    }
    h = hash64(sb.buf, sb.len, 0);
    strbuf_release(&sb);
    return h;
}

static const unsigned char *get_bytes(struct varint_reader *r, uint64_t len)
{
    const unsigned char *p = r->p;

    if (r->bad || len > (uint64_t)(r->end - r->p)) {
        r->bad = true;
        return NULL;
    }
    r->p += len;
    return p;
}

static char *get_str(struct varint_reader *r)
{
    uint64_t n = varint_get(r);
    const unsigned char *p;

    if (r->bad || n == 0) {
        return NULL;
    }
    p = get_bytes(r, n - 1);
    if (p == NULL) {
        return NULL;
    }
    return xmemdup(p, (size_t)(n - 1));
}

static void get_attr(struct varint_reader *r, struct attr *a)
{
    uint64_t n;
    uint64_t i;
    uint64_t zz;

    memset(a, 0, sizeof(*a));
    a->name = get_str(r);
    if (a->name == NULL) {
        r->bad = true;
        return;
    }
    a->flags = (unsigned)varint_get(r);
    zz = varint_get(r);
    a->source = (int)(int64_t)((zz >> 1) ^ (~(zz & 1) + 1));
    n = varint_get(r);
    if (n > (uint64_t)(r->end - r->p)) {
        r->bad = true;
        return;
    }
    for (i = 0; i < n && !r->bad; i++) {
        uint64_t len = varint_get(r);
        const unsigned char *p = get_bytes(r, len);

        if (p != NULL) {
            attr_add_value(a, p, (size_t)len);
        }
    }
}

enum ids_err entry_decode(const void *data, size_t len, struct entry **out, struct ids_error *err)
{
    struct varint_reader r = {data, (const unsigned char *)data + len, false};
    struct entry *e = NULL;
    uint64_t n;
    uint64_t i;

    *out = NULL;
    if (len < 1 || r.p[0] != ENTRY_MAGIC) {
        return ids_error_set(err, IDS_EINPUT, "stored object: unknown encoding");
    }
    r.p++;
    e = xcalloc(1, sizeof(*e));
    e->type = get_str(&r);
    e->anchor = get_str(&r);
    e->dn = get_str(&r);
    n = varint_get(&r);
    if (!r.bad && n > (uint64_t)(r.end - r.p)) {
        r.bad = true;
    }
    if (!r.bad && n > 0) {
        e->attrs = xcalloc((size_t)n, sizeof(*e->attrs));
        e->alloc = (size_t)n;
    }
    for (i = 0; i < n && !r.bad; i++) {
        get_attr(&r, &e->attrs[i]);
        e->nattrs++;
    }
    if (r.bad || r.p != r.end) {
        entry_free(e);
        return ids_error_set(err, IDS_EINPUT, "stored object: truncated or corrupt data");
    }
    *out = e;
    return IDS_OK;
}

/* ---- JSON ----------------------------------------------------------------- */

static void json_str_or_null(struct strbuf *out, const char *s)
{
    if (s == NULL) {
        strbuf_addstr(out, "null");
    } else {
        strbuf_add_json_str(out, s, strlen(s));
    }
}

static void json_value(struct strbuf *out, const struct value *v)
{
    if (value_is_text(v->data, v->len)) {
        strbuf_add_json_str(out, v->data, v->len);
    } else {
        strbuf_addstr(out, "{\"base64\":\"");
        base64_encode(out, v->data, v->len);
        strbuf_addstr(out, "\"}");
    }
}

static void json_values(struct strbuf *out, const struct attr *a)
{
    size_t i;

    strbuf_addch(out, '[');
    for (i = 0; i < a->nvals; i++) {
        if (i) {
            strbuf_addch(out, ',');
        }
        json_value(out, &a->vals[i]);
    }
    strbuf_addch(out, ']');
}

void entry_to_json(const struct entry *e, struct strbuf *out)
{
    size_t i;

    strbuf_addstr(out, "{\"type\":");
    json_str_or_null(out, e->type);
    strbuf_addstr(out, ",\"anchor\":");
    json_str_or_null(out, e->anchor);
    strbuf_addstr(out, ",\"dn\":");
    json_str_or_null(out, e->dn);
    strbuf_addstr(out, ",\"attributes\":{");
    for (i = 0; i < e->nattrs; i++) {
        if (i) {
            strbuf_addch(out, ',');
        }
        strbuf_add_json_str(out, e->attrs[i].name, strlen(e->attrs[i].name));
        strbuf_addch(out, ':');
        json_values(out, &e->attrs[i]);
    }
    strbuf_addstr(out, "}}");
}

/* ---- changes -------------------------------------------------------------- */

struct change *change_new(enum change_op op, const char *type, const char *anchor, const char *dn)
{
    struct change *c = xcalloc(1, sizeof(*c));

    c->op = op;
    c->type = xstrdup_or_null(type);
    c->anchor = xstrdup_or_null(anchor);
    c->dn = xstrdup_or_null(dn);
    return c;
}

void change_free(struct change *c)
{
    size_t i;

    if (c == NULL) {
        return;
    }
    for (i = 0; i < c->nmods; i++) {
        attr_release(&c->mods[i].attr);
    }
    free(c->mods);
    free(c->type);
    free(c->anchor);
    free(c->dn);
    free(c->new_dn);
    free(c);
}

struct change *change_dup(const struct change *c)
{
    struct change *d = change_new(c->op, c->type, c->anchor, c->dn);
    size_t i;

    d->new_dn = xstrdup_or_null(c->new_dn);
    for (i = 0; i < c->nmods; i++) {
        struct mod *m = change_add_mod(d, c->mods[i].op, c->mods[i].attr.name, 0);

        attr_release(&m->attr);
        attr_copy(&m->attr, &c->mods[i].attr);
    }
    return d;
}

const struct attr *change_mod_values(const struct change *c, enum mod_op op, const char *name)
{
    size_t i;

    for (i = 0; c != NULL && i < c->nmods; i++) {
        if (c->mods[i].op == op && strcasecmp(c->mods[i].attr.name, name) == 0) {
            return &c->mods[i].attr;
        }
    }
    return NULL;
}

struct mod *change_add_mod(struct change *c, enum mod_op op, const char *name, unsigned flags)
{
    struct mod *m;

    ALLOC_GROW(c->mods, c->nmods + 1, c->alloc);
    m = &c->mods[c->nmods++];
    memset(m, 0, sizeof(*m));
    m->op = op;
    m->attr.name = xstrdup(name);
    m->attr.flags = flags;
    m->attr.source = -1;
    return m;
}

size_t change_size(const struct change *c)
{
    return c->nmods + (c->new_dn != NULL ? 1 : 0);
}

void change_apply(const struct change *c, struct entry *e)
{
    size_t i;

    if (c->op == CHANGE_ADD && c->dn != NULL) {
        entry_set_dn(e, c->dn);
    }
    if (c->new_dn != NULL) {
        entry_set_dn(e, c->new_dn);
    }
    for (i = 0; i < c->nmods; i++) {
        const struct mod *m = &c->mods[i];
        struct attr *a;

        switch (m->op) {
        case MOD_ADD:
            a = entry_attr_add(e, m->attr.name);
            a->flags |= m->attr.flags;
            attr_add_values(a, &m->attr);
            break;
        case MOD_DELETE:
            a = entry_attr(e, m->attr.name);
            if (a == NULL) {
                break;
            }
            if (m->attr.nvals == 0) {
                entry_remove_attr(e, m->attr.name);
                break;
            }
            attr_remove_values(a, &m->attr);
            if (a->nvals == 0) {
                entry_remove_attr(e, m->attr.name);
            }
            break;
        case MOD_REPLACE:
            entry_set_attr(e, m->attr.name, &m->attr);
            break;
        }
    }
}

void change_encode(const struct change *c, struct strbuf *out)
{
    size_t i;

    strbuf_addch(out, CHANGE_MAGIC);
    varint_put(out, (uint64_t)c->op);
    put_cstr(out, c->type);
    put_cstr(out, c->anchor);
    put_cstr(out, c->dn);
    put_cstr(out, c->new_dn);
    varint_put(out, c->nmods);
    for (i = 0; i < c->nmods; i++) {
        varint_put(out, (uint64_t)c->mods[i].op);
        put_attr(out, &c->mods[i].attr);
    }
}

int change_encoded_op(const void *data, size_t len)
{
    struct varint_reader r = {data, (const unsigned char *)data + len, false};
    uint64_t op;

    if (len < 1 || r.p[0] != CHANGE_MAGIC) {
        return -1;
    }
    r.p++;
    op = varint_get(&r);
    return r.bad || op > CHANGE_DELETE ? -1 : (int)op;
}

enum ids_err change_decode(const void *data, size_t len, struct change **out, struct ids_error *err)
{
    struct varint_reader r = {data, (const unsigned char *)data + len, false};
    struct change *c;
    uint64_t n;
    uint64_t i;
    uint64_t op;

    *out = NULL;
    if (len < 1 || r.p[0] != CHANGE_MAGIC) {
        return ids_error_set(err, IDS_EINPUT, "stored change: unknown encoding");
    }
    r.p++;
    c = xcalloc(1, sizeof(*c));
    op = varint_get(&r);
    if (op > CHANGE_DELETE) {
        r.bad = true;
    }
    c->op = (enum change_op)op;
    c->type = get_str(&r);
    c->anchor = get_str(&r);
    c->dn = get_str(&r);
    c->new_dn = get_str(&r);
    n = varint_get(&r);
    if (!r.bad && n > (uint64_t)(r.end - r.p)) {
        r.bad = true;
    }
    if (!r.bad && n > 0) {
        c->mods = xcalloc((size_t)n, sizeof(*c->mods));
        c->alloc = (size_t)n;
    }
    for (i = 0; i < n && !r.bad; i++) {
        uint64_t mop = varint_get(&r);

        if (mop > MOD_REPLACE) {
            r.bad = true;
            break;
        }
        c->mods[i].op = (enum mod_op)mop;
        get_attr(&r, &c->mods[i].attr);
        c->nmods++;
    }
    if (r.bad || r.p != r.end) {
        change_free(c);
        return ids_error_set(err, IDS_EINPUT, "stored change: truncated or corrupt data");
    }
    *out = c;
    return IDS_OK;
}

const char *change_op_name(enum change_op op)
{
    switch (op) {
    case CHANGE_ADD:
        return "add";
    case CHANGE_MODIFY:
        return "modify";
    case CHANGE_DELETE:
        return "delete";
    case CHANGE_NONE:
        break;
    }
    return "none";
}

const char *mod_op_name(enum mod_op op)
{
    switch (op) {
    case MOD_ADD:
        return "add";
    case MOD_DELETE:
        return "delete";
    case MOD_REPLACE:
        return "replace";
    }
    return "unknown";
}

void change_to_json(const struct change *c, struct strbuf *out)
{
    size_t i;

    strbuf_addstr(out, "{\"op\":");
    json_str_or_null(out, change_op_name(c->op));
    strbuf_addstr(out, ",\"type\":");
    json_str_or_null(out, c->type);
    strbuf_addstr(out, ",\"anchor\":");
    json_str_or_null(out, c->anchor);
    strbuf_addstr(out, ",\"dn\":");
    json_str_or_null(out, c->dn);
    strbuf_addstr(out, ",\"new_dn\":");
    json_str_or_null(out, c->new_dn);
    strbuf_addstr(out, ",\"mods\":[");
    for (i = 0; i < c->nmods; i++) {
        const struct mod *m = &c->mods[i];

        if (i) {
            strbuf_addch(out, ',');
        }
        strbuf_addf(out, "{\"op\":\"%s\",\"attr\":", mod_op_name(m->op));
        strbuf_add_json_str(out, m->attr.name, strlen(m->attr.name));
        if (m->attr.flags & ATTR_REF) {
            strbuf_addstr(out, ",\"reference\":true");
        }
        strbuf_addstr(out, ",\"values\":");
        json_values(out, &m->attr);
        strbuf_addch(out, '}');
    }
    strbuf_addstr(out, "]}");
}

/* ---- normalisation ----------------------------------------------------- */

/* Lower-case one code point for the scripts directories commonly hold
 * (Latin-1, Latin Extended-A, Greek, Cyrillic); others are unchanged. */
static uint32_t fold_cp(uint32_t cp)
{
    if (cp < 0x80) {
        return (uint32_t)tolower((int)cp);
    }
    if ((cp >= 0xc0 && cp <= 0xde && cp != 0xd7)) {
        return cp + 0x20;
    }
    if (cp >= 0x100 && cp <= 0x17f && cp != 0x130 && cp != 0x131 && cp != 0x138 && cp != 0x149 &&
        cp != 0x17f) {
        /* pairs: even upper / odd lower, except 0x139-0x148 and 0x179-0x17e (odd upper) */
        if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17e)) {
            return (cp & 1) ? cp + 1 : cp;
        }
        return (cp & 1) ? cp : cp + 1;
    }
    if (cp >= 0x391 && cp <= 0x3a9 && cp != 0x3a2) {
        return cp + 0x20;
    }
    if (cp >= 0x410 && cp <= 0x42f) {
        return cp + 0x20;
    }
    if (cp >= 0x400 && cp <= 0x40f) {
        return cp + 0x50;
    }
    return cp;
}

static void put_utf8(struct strbuf *out, uint32_t cp)
{
    if (cp < 0x80) {
        strbuf_addch(out, (int)cp);
    } else if (cp < 0x800) {
        strbuf_addch(out, (int)(0xc0 | (cp >> 6)));
        strbuf_addch(out, (int)(0x80 | (cp & 0x3f)));
    } else {
        strbuf_addch(out, (int)(0xe0 | (cp >> 12)));
        strbuf_addch(out, (int)(0x80 | ((cp >> 6) & 0x3f)));
        strbuf_addch(out, (int)(0x80 | (cp & 0x3f)));
    }
}

void value_normalize(struct strbuf *out, const char *data, size_t len)
{
    const unsigned char *p = (const unsigned char *)data;
    size_t start = 0;
    size_t end = len;
    size_t i;

    while (start < end && isspace(p[start])) {
        start++;
    }
    while (end > start && isspace(p[end - 1])) {
        end--;
    }
    for (i = start; i < end;) {
        unsigned char c = p[i];

        if (c < 0x80) {
            /* a run of ASCII, lower-cased into room made once */
            size_t n;

            strbuf_grow(out, end - i);
            n = out->len;
            do {
                out->buf[n++] = (char)tolower(p[i++]);
            } while (i < end && p[i] < 0x80);
            strbuf_setlen(out, n);
        } else if ((c & 0xe0) == 0xc0 && i + 1 < end && (p[i + 1] & 0xc0) == 0x80) {
            uint32_t cp = ((uint32_t)(c & 0x1f) << 6) | (p[i + 1] & 0x3f);

            put_utf8(out, cp >= 0x80 ? fold_cp(cp) : cp);
            i += 2;
        } else {
            strbuf_addch(out, c);
            i++;
        }
    }
}

bool attr_is_password(const char *name)
{
    static const char *const names[] = {"userPassword", "unicodePwd",      "password",
                                        "clientSecret", "sambaNTPassword", "sambaLMPassword"};
    size_t i;

    for (i = 0; name != NULL && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(name, names[i]) == 0) {
            return true;
        }
    }
    return false;
}
