/* flow.c - evaluating rule items (plain copies natively, expressions
 * through expr.h), join keys, value comparison and value-set differences. */
#include "engine/engine_int.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "expr/expr.h"
#include "util/codec.h"
#include "util/ldapesc.h"
#include "util/mem.h"
#include "util/banned.h"

/* ---- evaluation ------------------------------------------------------------ */

static void add_special(struct attr *out, const char *s)
{
    if (s != NULL) {
        attr_add_value(out, s, strlen(s));
    }
}

enum ids_err flow_eval(const struct rule_item *it, const struct entry *e, struct attr *out,
                       struct ids_error *err)
{
    const struct attr *a;
    size_t i;

    if (it->plain && it->source != NULL) {
        /* a plain copy: no need to enter Lua */
        if (strcmp(it->source, "_dn") == 0) {
            add_special(out, e->dn);
            return IDS_OK;
        }
        if (strcmp(it->source, "_anchor") == 0) {
            add_special(out, e->anchor);
            return IDS_OK;
        }
        if (strcmp(it->source, "_type") == 0) {
            add_special(out, e->type);
            return IDS_OK;
        }
        a = entry_attr(e, it->source);
        if (a != NULL) {
            out->flags |= a->flags;
            for (i = 0; i < a->nvals; i++) {
                attr_add_value(out, a->vals[i].data, a->vals[i].len);
            }
        }
        return IDS_OK;
    }
    if (it->expr == NULL) {
        return ids_error_set(err, IDS_EEXPR, "%s: expression `%s` is not compiled",
                             it->attr ? it->attr : "?", it->source ? it->source : "");
    }
    return expr_eval(it->expr, e, out, err);
}

enum ids_err flow_initial(const struct flow_config *t, const struct entry *mv, bool dry_run,
                          struct change *ch, struct ids_error *err)
{
    size_t i;

    for (i = 0; i < t->ninitial; i++) {
        const struct rule_item *it = &t->initial[i];
        struct attr a;
        enum ids_err ret;

        memset(&a, 0, sizeof(a));
        a.name = xstrdup(it->attr);
        a.source = -1;
        if (dry_run && attr_is_password(it->attr)) {
            attr_add_value(&a, "(drawn when sent)", strlen("(drawn when sent)"));
            ret = IDS_OK;
        } else {
            ret = flow_eval(it, mv, &a, err);
        }
        if (ret != IDS_OK) {
            attr_release(&a);
            return ret;
        }
        attr_remove_value(&a, "", 0);
        if (a.nvals > 0) {
            struct mod *md =
                change_add_mod(ch, MOD_ADD, it->attr, ATTR_INITIAL | (a.flags & ATTR_JSON));

            attr_take_values(&md->attr, &a);
        }
        attr_release(&a);
    }
    return IDS_OK;
}

bool reference_attr(const struct object_type_config *ot, const char *attr)
{
    size_t i;

    if (ot == NULL || attr == NULL) {
        return false;
    }
    for (i = 0; i < ot->nrefs; i++) {
        if (strcasecmp(ot->refs[i].attr, attr) == 0) {
            return true;
        }
    }
    return false;
}

bool flow_in_is_ref(const struct flow_config *f, const struct rule_item *it)
{
    return it->plain && it->source != NULL && reference_attr(f->otype, it->source);
}

bool flow_out_is_ref(const struct flow_config *t, const struct rule_item *it,
                     const struct entry *mv)
{
    const struct attr *a;

    if (strcasecmp(it->attr, "dn") == 0) {
        return false;
    }
    if (it->plain && it->source != NULL) {
        a = entry_attr(mv, it->source);
        if (a != NULL && (a->flags & ATTR_REF)) {
            return true;
        }
        if (a != NULL) {
            return false;
        }
    }
    return reference_attr(t->otype, it->attr) && it->plain;
}

/* ---- keys ------------------------------------------------------------------ */

void keyset_init(struct keyset *ks)
{
    memset(ks, 0, sizeof(*ks));
    strvec_init(&ks->strs);
}

void keyset_release(struct keyset *ks)
{
    strvec_clear(&ks->strs);
    free(ks->k);
    memset(ks, 0, sizeof(*ks));
    strvec_init(&ks->strs);
}

static int cmp_key(const void *pa, const void *pb)
{
    const struct store_key *a = pa;
    const struct store_key *b = pb;
    int c = strcmp(a->attr, b->attr);

    return c != 0 ? c : strcmp(a->value, b->value);
}

void keyset_build(struct keyset *ks, const struct strvec *attrs, const struct entry *e)
{
    struct strbuf norm = STRBUF_INIT;
    size_t i;
    size_t j;
    size_t n;

    strvec_clear(&ks->strs);
    for (i = 0; i < attrs->nr; i++) {
        const struct attr *a = entry_attr(e, attrs->v[i]);

        if (a == NULL) {
            continue;
        }
        for (j = 0; j < a->nvals; j++) {
            strbuf_reset(&norm);
            value_normalize(&norm, a->vals[j].data, a->vals[j].len);
            if (norm.len == 0) {
                continue;
            }
            strvec_push(&ks->strs, attrs->v[i]);
            strvec_push(&ks->strs, norm.buf);
        }
    }
    n = ks->strs.nr / 2;
    ALLOC_GROW(ks->k, n + 1, ks->alloc);
    for (i = 0; i < n; i++) {
        ks->k[i].attr = ks->strs.v[2 * i];
        ks->k[i].value = ks->strs.v[2 * i + 1];
    }
    if (n > 1) {
        qsort(ks->k, n, sizeof(*ks->k), cmp_key);
    }
    /* drop duplicates */
    j = 0;
    for (i = 0; i < n; i++) {
        if (j > 0 && cmp_key(&ks->k[j - 1], &ks->k[i]) == 0) {
            continue;
        }
        ks->k[j++] = ks->k[i];
    }
    ks->keys.nr = j;
    ks->keys.k = ks->k;
    strbuf_release(&norm);
}

bool keyset_equal(const struct keyset *a, const struct keyset *b)
{
    size_t i;

    if (a->keys.nr != b->keys.nr) {
        return false;
    }
    for (i = 0; i < a->keys.nr; i++) {
        if (cmp_key(&a->keys.k[i], &b->keys.k[i]) != 0) {
            return false;
        }
    }
    return true;
}

/* ---- values ---------------------------------------------------------------- */

static bool json_values_equal(const struct value *a, const struct value *b)
{
    json_error_t jerr;
    json_t *ja = json_loadb(a->data, a->len, 0, &jerr);
    json_t *jb = json_loadb(b->data, b->len, 0, &jerr);
    bool eq = ja != NULL && jb != NULL && json_equal(ja, jb);

    json_decref(ja);
    json_decref(jb);
    return eq;
}

bool dn_equal(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    if (strcasecmp(a, b) == 0) {
        return true;
    }
    return ldapdn_equal(a, b);
}

bool value_matches(const struct value *a, const struct value *b, unsigned flags)
{
    struct strbuf na = STRBUF_INIT;
    struct strbuf nb = STRBUF_INIT;
    bool eq;

    if (a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0)) {
        return true;
    }
    if ((flags & ATTR_JSON) || (a->len > 0 && a->data[0] == '{')) {
        if (json_values_equal(a, b)) {
            return true;
        }
    }
    if ((flags & (ATTR_REF | ATTR_DN)) && dn_equal(a->data, b->data)) {
        return true;
    }
    value_normalize(&na, a->data, a->len);
    value_normalize(&nb, b->data, b->len);
    eq = na.len == nb.len && memcmp(na.buf, nb.buf, na.len) == 0;
    strbuf_release(&na);
    strbuf_release(&nb);
    return eq;
}

void value_describe(struct strbuf *out, const char *data, size_t len)
{
    if (!value_is_text(data, len)) {
        strbuf_addstr(out, "base64:");
        base64_encode(out, data, len > 96 ? 96 : len);
        if (len > 96) {
            strbuf_addstr(out, "...");
        }
        return;
    }
    if (len > 200) {
        strbuf_add(out, data, 200);
        strbuf_addstr(out, "...");
        return;
    }
    strbuf_add(out, data, len);
}

bool change_equal(const struct change *c, const struct change *d)
{
    struct strbuf a = STRBUF_INIT;
    struct strbuf b = STRBUF_INIT;
    bool eq;

    if (c == NULL || d == NULL) {
        return c == d;
    }
    change_encode(c, &a);
    change_encode(d, &b);
    eq = a.len == b.len && memcmp(a.buf, b.buf, a.len) == 0;
    strbuf_release(&a);
    strbuf_release(&b);
    return eq;
}

/* ---- value-set differences (sorted, so big groups stay cheap) --------------- */

static int cmp_valp(const void *pa, const void *pb)
{
    return value_cmp(*(const struct value *const *)pa, *(const struct value *const *)pb);
}

static const struct value **sorted_values(const struct attr *a)
{
    const struct value **v;
    size_t i;

    if (a == NULL || a->nvals == 0) {
        return NULL;
    }
    v = xcalloc(a->nvals, sizeof(*v));
    for (i = 0; i < a->nvals; i++) {
        v[i] = &a->vals[i];
    }
    qsort(v, a->nvals, sizeof(*v), cmp_valp);
    return v;
}

void attr_value_diff(const struct attr *a, const struct attr *b, struct attr *only_a,
                     struct attr *only_b)
{
    const struct value **va = sorted_values(a);
    const struct value **vb = sorted_values(b);
    size_t na = a ? a->nvals : 0;
    size_t nb = b ? b->nvals : 0;
    size_t i = 0;
    size_t j = 0;

    while (i < na || j < nb) {
        int c;

        if (i >= na) {
            c = 1;
        } else if (j >= nb) {
            c = -1;
        } else {
            c = cmp_valp(&va[i], &vb[j]);
        }
        if (c == 0) {
            /* skip duplicates on both sides */
            const struct value *v = va[i];

            while (i < na && cmp_valp(&va[i], &v) == 0) {
                i++;
            }
            while (j < nb && cmp_valp(&vb[j], &v) == 0) {
                j++;
            }
        } else if (c < 0) {
            if (only_a != NULL && (i == 0 || cmp_valp(&va[i - 1], &va[i]) != 0)) {
                attr_add_value(only_a, va[i]->data, va[i]->len);
            }
            i++;
        } else {
            if (only_b != NULL && (j == 0 || cmp_valp(&vb[j - 1], &vb[j]) != 0)) {
                attr_add_value(only_b, vb[j]->data, vb[j]->len);
            }
            j++;
        }
    }
    free(va);
    free(vb);
}
