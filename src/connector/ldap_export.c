/* ldap_export.c - the LDAP connector's export: add, modify (value-level),
 * modrdn (rename/move), delete, pipelined.
 *
 * submit() sends a request asynchronously (ldap_add_ext, ldap_modify_ext,
 * ldap_rename, ldap_delete_ext) and keeps it in a list of pending
 * operations, at most `window` of them; poll() reads results with
 * ldap_result(), matches them to their operation by message id, and either
 * finishes the operation (a result with the engine's tag goes to the ready
 * queue) or sends its next stage:
 *
 *   ADD     -> [base search for the anchor, when the server has no post-read]
 *   MODIFY  -> [modrdn when new_dn differs] -> [modify when there are mods]
 *   DELETE
 *
 * Recovery is per result code: an ADD that finds its DN taken looks at the
 * entry and succeeds when it is ours (re-sent after a crash); a missing
 * parent is created when create_parents is set; an object not at its DN is
 * looked up by anchor (moved by someone else). When the connection is lost,
 * the connector reconnects and re-sends every pending operation: each one is
 * idempotent as re-sent (see docs/internals/ldap.md).
 */
#include "connector/ldap_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "util/codec.h"
#include "util/ldapesc.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/banned.h"

enum pstage { PS_ADD, PS_ADD_ANCHOR, PS_RENAME, PS_MODIFY, PS_DELETE };

struct ldap_pending {
    struct ldap_pending *next;
    struct ldap_pending *prev;
    int msgid;
    uint64_t tag;
    struct change *ch; /* owned copy */
    enum pstage stage;
    char *dn;         /* DN the next request acts on */
    char *anchor;     /* ADD: the new object's anchor once known */
    bool renamed;     /* MODIFY: the modrdn is done */
    int parent_tries; /* missing parents created for this operation */
    int lookups;      /* anchor lookups after noSuchObject */
    int fixups;       /* modify re-sent without no-op values */
    char *uac;        /* AD: the userAccountControl sent for a disable bit */
    bool stand_in;    /* MODIFY: the empty_member stand-in was added after a refusal */
};

struct ldap_ready {
    struct ldap_ready *next;
    struct export_result r;
};

#define UAC_ACCOUNTDISABLE 0x2L

/* Attributes the server assigns: never sent. */
static bool never_sent(struct ldap_conn *c, const char *name)
{
    return strcasecmp(name, "dn") == 0 || strcasecmp(name, "entryUUID") == 0 ||
           strcasecmp(name, "objectGUID") == 0 || strcasecmp(name, "objectSid") == 0 ||
           (c->anchor_attr != NULL && strcasecmp(name, c->anchor_attr) == 0 &&
            (c->flavour == LDAP_FLAVOUR_AD || c->flavour == LDAP_FLAVOUR_OPENLDAP));
}

static const struct ldap_otype *find_type(struct ldap_conn *c, const char *name)
{
    size_t i;

    for (i = 0; name != NULL && i < c->ntypes; i++) {
        if (strcasecmp(c->types[i].name, name) == 0) {
            return &c->types[i];
        }
    }
    return NULL;
}

/* ---- LDAPMod arrays ---------------------------------------------------- */

static void mod_free(LDAPMod *m)
{
    if (m == NULL) {
        return;
    }
    if (m->mod_bvalues != NULL) {
        free(m->mod_bvalues[-1]); /* the berval storage, see mod_new() */
        free(m->mod_bvalues - 1);
    }
    free(m);
}

static void mods_free(LDAPMod **mods)
{
    size_t i;

    for (i = 0; mods != NULL && mods[i] != NULL; i++) {
        mod_free(mods[i]);
    }
    free(mods);
}

/* One LDAPMod over the values of `a` (borrowed; they must outlive it).
 * The berval storage hangs at index -1 of mod_bvalues. */
static LDAPMod *mod_new(int op, const char *name, const struct value *vals, size_t n)
{
    LDAPMod *m = xcalloc(1, sizeof(*m));
    struct berval *bv;
    struct berval **arr;
    size_t i;

    m->mod_op = op | LDAP_MOD_BVALUES;
    m->mod_type = (char *)name;
    if (n == 0) {
        m->mod_bvalues = NULL;
        return m;
    }
    bv = xcalloc(n, sizeof(*bv));
    arr = xcalloc(n + 2, sizeof(*arr));
    arr[0] = (struct berval *)bv; /* storage, freed by mods_free */
    for (i = 0; i < n; i++) {
        bv[i].bv_val = vals[i].data;
        bv[i].bv_len = vals[i].len;
        arr[i + 1] = &bv[i];
    }
    m->mod_bvalues = arr + 1;
    return m;
}

struct uac_override {
    bool active;
    struct value v; /* the computed userAccountControl */
    char buf[24];
};

static LDAPMod **build_mods(struct ldap_conn *c, const struct change *ch, bool add,
                            const struct uac_override *uac, struct value *oc_vals)
{
    LDAPMod **mods = xcalloc(ch->nmods + 2, sizeof(*mods));
    const struct ldap_otype *t = find_type(c, ch->type);
    size_t n = 0;
    size_t i;
    bool have_oc = false;

    for (i = 0; i < ch->nmods; i++) {
        const struct mod *md = &ch->mods[i];
        int op;

        if (never_sent(c, md->attr.name)) {
            continue;
        }
        if (strcasecmp(md->attr.name, "objectClass") == 0) {
            have_oc = true;
        }
        if (add) {
            if (md->op == MOD_DELETE || md->attr.nvals == 0) {
                continue;
            }
            op = LDAP_MOD_ADD;
        } else {
            op = md->op == MOD_ADD      ? LDAP_MOD_ADD
                 : md->op == MOD_DELETE ? LDAP_MOD_DELETE
                                        : LDAP_MOD_REPLACE;
            if (md->op == MOD_ADD && md->attr.nvals == 0) {
                continue;
            }
        }
        if (uac != NULL && uac->active && strcasecmp(md->attr.name, "userAccountControl") == 0) {
            mods[n++] = mod_new(LDAP_MOD_REPLACE, md->attr.name, &uac->v, 1);
            continue;
        }
        mods[n++] = mod_new(op, md->attr.name, md->attr.vals, md->attr.nvals);
    }
    if (add && !have_oc && t != NULL && t->object_classes.nr > 0) {
        for (i = 0; i < t->object_classes.nr; i++) {
            oc_vals[i].data = t->object_classes.v[i];
            oc_vals[i].len = strlen(t->object_classes.v[i]);
        }
        mods[n++] = mod_new(LDAP_MOD_ADD, "objectClass", oc_vals, t->object_classes.nr);
    }
    mods[n] = NULL;
    return mods;
}

/* ---- helpers: synchronous reads used during recovery ------------------- */

/* Does `dn` exist? IDS_OK (yes), IDS_ENOTFOUND, or an error. */
static enum ids_err dn_exists(struct ldap_conn *c, const char *dn, struct ids_error *err)
{
    static char *noattrs[] = {LDAP_NO_ATTRS, NULL};
    struct timeval tv = {c->timeout, 0};
    LDAPMessage *res = NULL;
    enum ids_err ret = IDS_OK;
    int rc;

    rc = ldap_search_ext_s(c->ld, dn, LDAP_SCOPE_BASE, "(objectClass=*)", noattrs, 0, NULL, NULL,
                           &tv, 1, &res);
    if (rc == LDAP_NO_SUCH_OBJECT) {
        ret = IDS_ENOTFOUND;
    } else if (rc != LDAP_SUCCESS) {
        ret = ldapc_fail(c, rc, err, "reading %s", dn);
    } else if (ldap_first_entry(c->ld, res) == NULL) {
        ret = IDS_ENOTFOUND;
    }
    ldap_msgfree(res);
    return ret;
}

/* Current DN of the object with `anchor`; *dn is NULL when there is none. */
static enum ids_err dn_by_anchor(struct ldap_conn *c, const char *anchor, char **dn,
                                 struct ids_error *err)
{
    static char *noattrs[] = {LDAP_NO_ATTRS, NULL};
    struct timeval tv = {c->timeout, 0};
    struct strbuf filter = STRBUF_INIT;
    struct strbuf gdn = STRBUF_INIT;
    LDAPMessage *res = NULL;
    LDAPMessage *m;
    enum ids_err ret = IDS_OK;
    int rc;

    *dn = NULL;
    if (anchor == NULL || c->anchor_attr == NULL) {
        goto done;
    }
    if (c->anchor_is_guid && c->flavour == LDAP_FLAVOUR_AD) {
        strbuf_addf(&gdn, "<GUID=%s>", anchor);
        rc = ldap_search_ext_s(c->ld, gdn.buf, LDAP_SCOPE_BASE, "(objectClass=*)", noattrs, 0, NULL,
                               NULL, &tv, 1, &res);
    } else {
        strbuf_addf(&filter, "(%s=", c->anchor_attr);
        ldapesc_filter_value(&filter, anchor, strlen(anchor));
        strbuf_addch(&filter, ')');
        rc = ldap_search_ext_s(c->ld, c->base, LDAP_SCOPE_SUBTREE, filter.buf, noattrs, 0, NULL,
                               NULL, &tv, 2, &res);
    }
    if (rc == LDAP_NO_SUCH_OBJECT) {
        goto done;
    }
    if (rc != LDAP_SUCCESS) {
        ret = ldapc_fail(c, rc, err, "looking up %s=%s", c->anchor_attr, anchor);
        goto done;
    }
    m = ldap_first_entry(c->ld, res);
    if (m != NULL) {
        char *d = ldap_get_dn(c->ld, m);

        *dn = xstrdup_or_null(d);
        ldap_memfree(d);
    }

done:
    ldap_msgfree(res);
    strbuf_release(&filter);
    strbuf_release(&gdn);
    return ret;
}

static bool value_matches(const struct value *want, struct berval **have)
{
    struct strbuf a = STRBUF_INIT;
    struct strbuf b = STRBUF_INIT;
    bool found = false;
    size_t i;

    value_normalize(&a, want->data, want->len);
    for (i = 0; have != NULL && have[i] != NULL && !found; i++) {
        if (have[i]->bv_len == want->len && memcmp(have[i]->bv_val, want->data, want->len) == 0) {
            found = true;
            break;
        }
        strbuf_reset(&b);
        value_normalize(&b, have[i]->bv_val, have[i]->bv_len);
        if (strbuf_equals(&a, b.buf)) {
            found = true;
            break;
        }
        if (memchr(want->data, '=', want->len) != NULL &&
            memchr(want->data, 0, want->len) == NULL &&
            memchr(have[i]->bv_val, 0, have[i]->bv_len) == NULL &&
            ldapdn_equal(want->data, have[i]->bv_val)) {
            found = true;
        }
    }
    strbuf_release(&a);
    strbuf_release(&b);
    return found;
}

/* After alreadyExists on a (re-sent) ADD: is the entry at p->dn the one we
 * meant to create? Every value the add carried must be there (passwords,
 * which cannot be read back, excepted). *anchor gets its anchor. */
static enum ids_err check_ours(struct ldap_conn *c, struct ldap_pending *p, bool *ours,
                               char **anchor, struct strbuf *why, struct ids_error *err)
{
    struct strvec attrs = STRVEC_INIT;
    struct timeval tv = {c->timeout, 0};
    struct strbuf sb = STRBUF_INIT;
    LDAPMessage *res = NULL;
    LDAPMessage *m;
    enum ids_err ret = IDS_OK;
    size_t i;
    size_t k;
    int rc;

    *ours = false;
    *anchor = NULL;
    strvec_push(&attrs, c->anchor_attr);
    for (i = 0; i < p->ch->nmods; i++) {
        strvec_push(&attrs, p->ch->mods[i].attr.name);
    }
    rc = ldap_search_ext_s(c->ld, p->dn, LDAP_SCOPE_BASE, "(objectClass=*)", attrs.v, 0, NULL, NULL,
                           &tv, 1, &res);
    if (rc != LDAP_SUCCESS) {
        ret = ldapc_fail(c, rc, err, "reading the existing %s", p->dn);
        goto done;
    }
    m = ldap_first_entry(c->ld, res);
    if (m == NULL) {
        goto done;
    }
    *ours = true;
    for (i = 0; i < p->ch->nmods && *ours; i++) {
        const struct mod *md = &p->ch->mods[i];
        struct berval **vals;

        if (md->op == MOD_DELETE || never_sent(c, md->attr.name) ||
            (md->attr.flags & ATTR_INITIAL) || attr_is_password(md->attr.name)) {
            continue;
        }
        vals = ldap_get_values_len(c->ld, m, md->attr.name);
        for (k = 0; k < md->attr.nvals; k++) {
            if (!value_matches(&md->attr.vals[k], vals)) {
                *ours = false;
                strbuf_addf(why, "its %s differs", md->attr.name);
                break;
            }
        }
        ldap_value_free_len(vals);
    }
    if (*ours) {
        struct berval **vals = ldap_get_values_len(c->ld, m, c->anchor_attr);

        if (vals != NULL && vals[0] != NULL && ldapc_anchor_string(c, vals[0], &sb) == IDS_OK) {
            *anchor = strbuf_detach(&sb, NULL);
        }
        ldap_value_free_len(vals);
    }

done:
    ldap_msgfree(res);
    strvec_clear(&attrs);
    strbuf_release(&sb);
    return ret;
}

/* Create the missing ancestors of `dn` (not dn itself). */
static enum ids_err create_parents(struct ldap_conn *c, const char *dn, int depth,
                                   struct ids_error *err)
{
    struct strbuf parent = STRBUF_INIT;
    struct ldapdn pdn = LDAPDN_INIT;
    struct value vals[3];
    LDAPMod *mods[4] = {NULL, NULL, NULL, NULL};
    enum ids_err ret;
    const char *type;
    const char *oc = NULL;
    int rc;
    int i;

    ret = ldapdn_parent(dn, &parent, err);
    if (ret != IDS_OK || parent.len == 0) {
        goto done;
    }
    ret = dn_exists(c, parent.buf, err);
    if (ret != IDS_ENOTFOUND) {
        goto done;
    }
    if (depth > 32 || ldapdn_depth_under(parent.buf, c->base) < 0) {
        ret = ids_error_set(err, IDS_EREJECTED, "parent %s is outside the base %s", parent.buf,
                            c->base);
        goto done;
    }
    ret = create_parents(c, parent.buf, depth + 1, err);
    if (ret != IDS_OK) {
        goto done;
    }
    ret = ldapdn_parse(parent.buf, parent.len, &pdn, err);
    if (ret != IDS_OK) {
        goto done;
    }
    type = pdn.rdns[0].avas[0].type;
    if (strcasecmp(type, "ou") == 0) {
        oc = "organizationalUnit";
    } else if (strcasecmp(type, "cn") == 0) {
        oc = c->flavour == LDAP_FLAVOUR_AD ? "container" : "organizationalRole";
    } else if (strcasecmp(type, "dc") == 0) {
        oc = "domain";
    } else if (strcasecmp(type, "o") == 0) {
        oc = "organization";
    } else if (strcasecmp(type, "l") == 0) {
        oc = "locality";
    }
    if (oc == NULL || pdn.rdns[0].navas != 1) {
        ret = ids_error_set(err, IDS_EREJECTED,
                            "parent %s does not exist and idsync cannot create a %s= container",
                            parent.buf, type);
        goto done;
    }
    vals[0].data = (char *)oc;
    vals[0].len = strlen(oc);
    vals[1].data = pdn.rdns[0].avas[0].value;
    vals[1].len = pdn.rdns[0].avas[0].vlen;
    mods[0] = mod_new(LDAP_MOD_ADD, "objectClass", &vals[0], 1);
    mods[1] = mod_new(LDAP_MOD_ADD, type, &vals[1], 1);
    rc = ldap_add_ext_s(c->ld, parent.buf, mods, NULL, NULL);
    if (rc != LDAP_SUCCESS && rc != LDAP_ALREADY_EXISTS) {
        ret = ldapc_fail(c, rc, err, "creating parent %s", parent.buf);
        goto done;
    }
    log_info("ldap-parent-created", "connector=%s dn=\"%s\"", c->conn.name, parent.buf);
    ret = IDS_OK;

done:
    for (i = 0; mods[i] != NULL; i++) {
        mod_free(mods[i]);
    }
    ldapdn_release(&pdn);
    strbuf_release(&parent);
    return ret;
}

/* AD: the new userAccountControl when a change sets it to 2 (disable) or
 * 0 (enable): only ACCOUNTDISABLE changes, every other bit is kept. */
static enum ids_err ad_uac(struct ldap_conn *c, struct ldap_pending *p, struct uac_override *uac,
                           struct ids_error *err)
{
    static char *attrs[] = {"userAccountControl", NULL};
    struct timeval tv = {c->timeout, 0};
    LDAPMessage *res = NULL;
    LDAPMessage *m;
    struct berval **vals = NULL;
    enum ids_err ret = IDS_OK;
    const struct mod *md = NULL;
    long want;
    long cur;
    char *end;
    size_t i;
    int rc;

    uac->active = false;
    if (c->flavour != LDAP_FLAVOUR_AD) {
        return IDS_OK;
    }
    for (i = 0; i < p->ch->nmods; i++) {
        if (strcasecmp(p->ch->mods[i].attr.name, "userAccountControl") == 0 &&
            p->ch->mods[i].op != MOD_DELETE && p->ch->mods[i].attr.nvals == 1) {
            md = &p->ch->mods[i];
        }
    }
    if (md == NULL) {
        return IDS_OK;
    }
    want = strtol(md->attr.vals[0].data, &end, 10);
    if (*end != '\0' || (want & ~UAC_ACCOUNTDISABLE) != 0) {
        return IDS_OK; /* a full value: sent as given */
    }
    rc = ldap_search_ext_s(c->ld, p->dn, LDAP_SCOPE_BASE, "(objectClass=*)", attrs, 0, NULL, NULL,
                           &tv, 1, &res);
    if (rc != LDAP_SUCCESS) {
        ret = ldapc_fail(c, rc, err, "%s: reading userAccountControl", p->dn);
        goto done;
    }
    m = ldap_first_entry(c->ld, res);
    vals = m != NULL ? ldap_get_values_len(c->ld, m, "userAccountControl") : NULL;
    cur = vals != NULL && vals[0] != NULL ? strtol(vals[0]->bv_val, &end, 10) : 0x200;
    cur = (cur & ~UAC_ACCOUNTDISABLE) | (want & UAC_ACCOUNTDISABLE);
    snprintf(uac->buf, sizeof(uac->buf), "%ld", cur);
    uac->v.data = uac->buf;
    uac->v.len = strlen(uac->buf);
    uac->active = true;

done:
    ldap_value_free_len(vals);
    ldap_msgfree(res);
    return ret;
}

/* ---- sending ----------------------------------------------------------- */

static enum ids_err postread_control(struct ldap_conn *c, LDAPControl *ctrl, struct ids_error *err)
{
    char *attrs[2] = {c->anchor_attr, NULL};
    BerElement *ber = ber_alloc_t(LBER_USE_DER);

    memset(ctrl, 0, sizeof(*ctrl));
    if (ber == NULL || ber_printf(ber, "{v}", attrs) < 0 ||
        ber_flatten2(ber, &ctrl->ldctl_value, 1) < 0) {
        if (ber != NULL) {
            ber_free(ber, 1);
        }
        return ids_error_set(err, IDS_EINTERNAL, "cannot encode the post-read control");
    }
    ber_free(ber, 1);
    ctrl->ldctl_oid = LDAP_CONTROL_POST_READ;
    ctrl->ldctl_iscritical = 0;
    return IDS_OK;
}

static enum ids_err send_stage(struct ldap_conn *c, struct ldap_pending *p, struct ids_error *err)
{
    static char *noattrs[] = {NULL, NULL};
    LDAPControl postread;
    LDAPControl permissive;
    LDAPControl *ctrls[2] = {NULL, NULL};
    struct uac_override uac;
    struct strbuf rdn = STRBUF_INIT;
    struct strbuf parent = STRBUF_INIT;
    struct strbuf newparent = STRBUF_INIT;
    struct value *oc_vals = NULL;
    LDAPMod **mods = NULL;
    enum ids_err ret = IDS_OK;
    int rc = LDAP_SUCCESS;
    const struct ldap_otype *t;

    memset(&postread, 0, sizeof(postread));
    memset(&permissive, 0, sizeof(permissive));
    memset(&uac, 0, sizeof(uac));
    switch (p->stage) {
    case PS_ADD:
        t = find_type(c, p->ch->type);
        oc_vals = xcalloc(t != NULL ? t->object_classes.nr + 1 : 1, sizeof(*oc_vals));
        mods = build_mods(c, p->ch, true, NULL, oc_vals);
        if (c->has_postread) {
            ret = postread_control(c, &postread, err);
            if (ret != IDS_OK) {
                goto done;
            }
            ctrls[0] = &postread;
        }
        rc = ldap_add_ext(c->ld, p->dn, mods, ctrls[0] ? ctrls : NULL, NULL, &p->msgid);
        break;
    case PS_ADD_ANCHOR:
        noattrs[0] = c->anchor_attr;
        rc = ldap_search_ext(c->ld, p->dn, LDAP_SCOPE_BASE, "(objectClass=*)", noattrs, 0, NULL,
                             NULL, NULL, 1, &p->msgid);
        break;
    case PS_RENAME: {
        const char *sup = NULL;

        ret = ldapdn_rdn(p->ch->new_dn, &rdn, err);
        if (ret == IDS_OK) {
            ret = ldapdn_parent(p->ch->new_dn, &newparent, err);
        }
        if (ret == IDS_OK) {
            ret = ldapdn_parent(p->dn, &parent, err);
        }
        if (ret != IDS_OK) {
            ids_error_prefix(err, "rename %s to %s", p->dn, p->ch->new_dn);
            goto done;
        }
        if (!ldapdn_equal(parent.buf, newparent.buf)) {
            sup = newparent.buf;
        }
        rc = ldap_rename(c->ld, p->dn, rdn.buf, sup, 1, NULL, NULL, &p->msgid);
        break;
    }
    case PS_MODIFY:
        ret = ad_uac(c, p, &uac, err);
        if (ret != IDS_OK) {
            goto done;
        }
        free(p->uac);
        p->uac = uac.active ? xstrdup(uac.buf) : NULL;
        mods = build_mods(c, p->ch, false, &uac, NULL);
        if (mods[0] == NULL) {
            p->msgid = -1; /* nothing to send: finished by the caller */
            goto done;
        }
        if (c->has_permissive) {
            permissive.ldctl_oid = LDAP_CONTROL_X_PERMISSIVE_MODIFY;
            permissive.ldctl_iscritical = 0;
            ctrls[0] = &permissive;
        }
        rc = ldap_modify_ext(c->ld, p->dn, mods, ctrls[0] ? ctrls : NULL, NULL, &p->msgid);
        break;
    case PS_DELETE:
        rc = ldap_delete_ext(c->ld, p->dn, NULL, NULL, &p->msgid);
        break;
    }
    if (rc != LDAP_SUCCESS) {
        p->msgid = -1;
        ret = ldapc_fail(c, rc, err, "%s", p->dn);
    }

done:
    mods_free(mods);
    free(oc_vals);
    ber_memfree(postread.ldctl_value.bv_val);
    strbuf_release(&rdn);
    strbuf_release(&parent);
    strbuf_release(&newparent);
    return ret;
}

/* Does ch (owned) add values to, or delete values of, `attr`? */
static bool change_touches(const struct change *ch, const char *attr, enum mod_op op)
{
    size_t i;

    for (i = 0; i < ch->nmods; i++) {
        if (ch->mods[i].op == op && ch->mods[i].attr.nvals > 0 &&
            strcasecmp(ch->mods[i].attr.name, attr) == 0) {
            return true;
        }
    }
    return false;
}

/* The empty_member stand-in of a group type (groupOfNames needs a member):
 * a create without members gets it; a modify that adds members takes it
 * out (absent: permissive modify, or drop_noop_values, absorb that). A
 * modify that empties the group gets it after the server's refusal
 * (stand_in_after_refusal): only the server knows what is left. */
static void stand_in_prepare(struct ldap_conn *c, struct change *ch)
{
    const struct ldap_otype *t = find_type(c, ch->type);
    size_t i;

    if (t == NULL || t->empty_member == NULL || ch->op == CHANGE_DELETE) {
        return;
    }
    for (i = 0; i < t->cfg->nrefs; i++) {
        const char *attr = t->cfg->refs[i].attr;

        if (ch->op == CHANGE_ADD && !change_touches(ch, attr, MOD_ADD)) {
            change_add_mod(ch, MOD_ADD, attr, ATTR_REF);
            attr_add_value(&ch->mods[ch->nmods - 1].attr, t->empty_member, strlen(t->empty_member));
        } else if (ch->op == CHANGE_MODIFY && change_touches(ch, attr, MOD_ADD)) {
            change_add_mod(ch, MOD_DELETE, attr, ATTR_REF);
            attr_add_value(&ch->mods[ch->nmods - 1].attr, t->empty_member, strlen(t->empty_member));
        }
    }
}

/* An object class violation on a modify that deletes members of a type
 * with empty_member: the group would be left empty; add the stand-in in
 * the same modify. Whether it was added (then send again). */
static bool stand_in_after_refusal(struct ldap_conn *c, struct ldap_pending *p)
{
    const struct ldap_otype *t = find_type(c, p->ch->type);
    bool added = false;
    size_t i;

    if (t == NULL || t->empty_member == NULL || p->stand_in) {
        return false;
    }
    for (i = 0; i < t->cfg->nrefs; i++) {
        const char *attr = t->cfg->refs[i].attr;

        if (change_touches(p->ch, attr, MOD_DELETE) && !change_touches(p->ch, attr, MOD_ADD)) {
            change_add_mod(p->ch, MOD_ADD, attr, ATTR_REF);
            attr_add_value(&p->ch->mods[p->ch->nmods - 1].attr, t->empty_member,
                           strlen(t->empty_member));
            added = true;
        }
    }
    p->stand_in = added;
    return added;
}

/* ---- finishing --------------------------------------------------------- */

static void pending_unlink(struct ldap_conn *c, struct ldap_pending *p)
{
    if (p->prev != NULL) {
        p->prev->next = p->next;
    } else {
        c->pending_head = p->next;
    }
    if (p->next != NULL) {
        p->next->prev = p->prev;
    } else {
        c->pending_tail = p->prev;
    }
    c->npending--;
}

static void pending_free(struct ldap_pending *p)
{
    change_free(p->ch);
    free(p->dn);
    free(p->anchor);
    free(p->uac);
    free(p);
}

static void push_ready(struct ldap_conn *c, struct ldap_ready *r)
{
    r->next = NULL;
    if (c->ready_tail != NULL) {
        c->ready_tail->next = r;
    } else {
        c->ready_head = r;
    }
    c->ready_tail = r;
}

/* Finish p with `code` (err's message when not OK) and free it. */
static void finish(struct ldap_conn *c, struct ldap_pending *p, enum ids_err code,
                   const struct ids_error *err, bool retryable)
{
    struct ldap_ready *r = xcalloc(1, sizeof(*r));

    r->r.tag = p->tag;
    r->r.code = code;
    if (code != IDS_OK && err != NULL) {
        r->r.err = *err;
        r->r.err.code = code;
    }
    r->r.retryable = retryable;
    if (code == IDS_OK) {
        if (p->ch->op == CHANGE_ADD) {
            r->r.anchor = p->anchor;
            p->anchor = NULL;
            r->r.dn = xstrdup(p->dn);
        } else if (p->renamed) {
            r->r.dn = xstrdup(p->dn);
        }
        if (p->uac != NULL) {
            r->r.written = entry_new(NULL, NULL, NULL);
            entry_add_str(r->r.written, "userAccountControl", p->uac);
        }
    }
    push_ready(c, r);
    if (p->msgid >= 0 && c->ld != NULL && code != IDS_OK) {
        ldap_abandon_ext(c->ld, p->msgid, NULL, NULL);
    }
    pending_unlink(c, p);
    pending_free(p);
}

static bool rc_retryable(int rc)
{
    return ldapc_rc_is_conn_error(rc) || rc == LDAP_BUSY || rc == LDAP_TIMELIMIT_EXCEEDED ||
           rc == LDAP_ADMINLIMIT_EXCEEDED;
}

/* Finish with the server's refusal: names the DN, the operation and the
 * server's message (which names the attribute for schema errors). */
static void finish_ldap_error(struct ldap_conn *c, struct ldap_pending *p, int rcode,
                              const char *text, const char *what)
{
    struct ids_error e = IDS_ERROR_INIT;
    const char *hint = "";
    size_t i;

    if (rcode == LDAP_OBJECT_CLASS_VIOLATION) {
        const struct ldap_otype *t = find_type(c, p->ch->type);

        if (t != NULL && t->cfg->nrefs > 0 && t->empty_member == NULL) {
            hint = " (a group that must have a member, such as groupOfNames, cannot be empty: "
                   "give the object type an empty_member, a DN that stands in for the members "
                   "of an empty group)";
        }
    }
    for (i = 0; i < p->ch->nmods; i++) {
        if (strcasecmp(p->ch->mods[i].attr.name, "unicodePwd") == 0 &&
            (rcode == LDAP_UNWILLING_TO_PERFORM || rcode == LDAP_CONSTRAINT_VIOLATION)) {
            hint = c->starttls || strncasecmp(c->url, "ldaps://", 8) == 0
                       ? " (unicodePwd: the password may not meet the domain's password policy)"
                       : " (unicodePwd: AD sets a password only over an encrypted connection: "
                         "ldaps:// or starttls: true; and only one its password policy accepts)";
        }
    }
    ids_error_set_detail(&e, rc_retryable(rcode) ? IDS_EUNREACHABLE : IDS_EREJECTED, rcode,
                         "%s %s: %s%s%s%s", what, p->dn, ldap_err2string(rcode),
                         text != NULL && *text ? ": " : "", text != NULL ? text : "", hint);
    finish(c, p, e.code, &e, rc_retryable(rcode));
}

/* Anchor from a post-read response control, if any. */
static void postread_anchor(struct ldap_conn *c, LDAPControl **ctrls, struct ldap_pending *p)
{
    struct strbuf sb = STRBUF_INIT;
    size_t i;

    for (i = 0; ctrls != NULL && ctrls[i] != NULL; i++) {
        BerElement *ber;
        struct berval bv;

        if (strcmp(ctrls[i]->ldctl_oid, LDAP_CONTROL_POST_READ) != 0) {
            continue;
        }
        ber = ber_init(&ctrls[i]->ldctl_value);
        if (ber == NULL) {
            continue;
        }
        if (ber_scanf(ber, "{m{", &bv) != LBER_ERROR) {
            while (ber_scanf(ber, "{m", &bv) != LBER_ERROR) {
                BerVarray vals = NULL;

                if (ber_scanf(ber, "[W]", &vals) == LBER_ERROR || vals == NULL) {
                    break;
                }
                if (strlen(c->anchor_attr) == bv.bv_len &&
                    strncasecmp(bv.bv_val, c->anchor_attr, bv.bv_len) == 0 &&
                    vals[0].bv_val != NULL) {
                    strbuf_reset(&sb);
                    if (ldapc_anchor_string(c, &vals[0], &sb) == IDS_OK) {
                        free(p->anchor);
                        p->anchor = strbuf_detach(&sb, NULL);
                    }
                }
                ber_bvarray_free(vals);
            }
        }
        ber_free(ber, 1);
    }
    strbuf_release(&sb);
}

/* Move p to its next stage, or finish it. */
static enum ids_err advance(struct ldap_conn *c, struct ldap_pending *p, struct ids_error *err)
{
    enum ids_err ret;

    if (p->stage == PS_RENAME) {
        p->renamed = true;
        free(p->dn);
        p->dn = xstrdup(p->ch->new_dn);
        if (p->ch->nmods > 0) {
            p->stage = PS_MODIFY;
            ret = send_stage(c, p, err);
            if (ret == IDS_OK && p->msgid < 0) {
                finish(c, p, IDS_OK, NULL, false);
            }
            return ret;
        }
    }
    finish(c, p, IDS_OK, NULL, false);
    return IDS_OK;
}

/* Re-send p's current stage (after a recovery step changed its DN or
 * created its parent). Local errors finish it. */
static enum ids_err resend(struct ldap_conn *c, struct ldap_pending *p, struct ids_error *err)
{
    enum ids_err ret = send_stage(c, p, err);

    if (ret == IDS_EUNREACHABLE) {
        return ret;
    }
    if (ret != IDS_OK) {
        finish(c, p, ret, err, false);
        return IDS_OK;
    }
    if (p->msgid < 0) {
        finish(c, p, IDS_OK, NULL, false);
    }
    return IDS_OK;
}

/* The object is not at p->dn: find it by anchor (someone moved it). */
static enum ids_err relocate(struct ldap_conn *c, struct ldap_pending *p, bool *moved,
                             struct ids_error *err)
{
    char *dn = NULL;
    enum ids_err ret;

    *moved = false;
    if (p->lookups > 0 || p->ch->anchor == NULL) {
        return IDS_OK;
    }
    p->lookups++;
    ret = dn_by_anchor(c, p->ch->anchor, &dn, err);
    if (ret != IDS_OK) {
        return ret;
    }
    if (dn != NULL && !ldapdn_equal(dn, p->dn)) {
        log_info("ldap-object-moved", "connector=%s anchor=%s from=\"%s\" to=\"%s\"", c->conn.name,
                 p->ch->anchor, p->dn, dn);
        free(p->dn);
        p->dn = dn;
        dn = NULL;
        *moved = true;
    }
    free(dn);
    return IDS_OK;
}

/* The values of `name` in m; *ranged when the server sent them in ranges
 * instead (AD, over 1,500 values: `member;range=0-1499`), so that they
 * are not all in m. */
static struct berval **values_of(struct ldap_conn *c, LDAPMessage *m, const char *name,
                                 bool *ranged)
{
    struct berval **vals = ldap_get_values_len(c->ld, m, name);
    BerElement *ber = NULL;
    char *a;
    size_t len = strlen(name);

    *ranged = false;
    if (vals != NULL) {
        return vals;
    }
    for (a = ldap_first_attribute(c->ld, m, &ber); a != NULL && !*ranged;
         a = ldap_next_attribute(c->ld, m, ber)) {
        *ranged = strncasecmp(a, name, len) == 0 && strncasecmp(a + len, ";range=", 7) == 0;
        ldap_memfree(a);
    }
    ber_free(ber, 0);
    return NULL;
}

/* Does the entry at dn hold value v of attr? Asked of the server (an LDAP
 * compare): for a reference (a DN, which the server compares as a DN — AD
 * writes back its own form and rewrote a renamed member itself), and where
 * the values came in ranges. */
static enum ids_err value_held(struct ldap_conn *c, const char *dn, const char *attr,
                               const struct value *v, bool *held, struct ids_error *err)
{
    struct berval bv = {(ber_len_t)v->len, v->data};
    int rc = ldap_compare_ext_s(c->ld, dn, attr, &bv, NULL, NULL);

    *held = rc == LDAP_COMPARE_TRUE;
    if (rc == LDAP_COMPARE_TRUE || rc == LDAP_COMPARE_FALSE || rc == LDAP_NO_SUCH_ATTRIBUTE ||
        rc == LDAP_UNWILLING_TO_PERFORM || rc == LDAP_NO_SUCH_OBJECT) {
        return IDS_OK; /* the last two: AD, for a DN value it cannot find */
    }
    return ldapc_fail(c, rc, err, "comparing %s of %s", attr, dn);
}

/* After typeOrValueExists / noSuchAttribute on a modify (a server without
 * permissive modify, or slapd deleting an absent value), or what AD answers
 * for a DN value it has already rewritten or removed itself ("already
 * exists" for a link it holds, unwillingToPerform for a DN it cannot find):
 * drop the value adds already present and the value deletes already absent,
 * so that a re-sent change is a no-op rather than an error. *changed says
 * whether anything was dropped (if not, the error is real). */
static enum ids_err drop_noop_values(struct ldap_conn *c, struct ldap_pending *p, bool *changed,
                                     struct ids_error *err)
{
    struct strvec attrs = STRVEC_INIT;
    struct timeval tv = {c->timeout, 0};
    LDAPMessage *res = NULL;
    LDAPMessage *m;
    struct change *nc = NULL;
    enum ids_err ret = IDS_OK;
    size_t i;
    size_t k;
    int rc;

    *changed = false;
    for (i = 0; i < p->ch->nmods; i++) {
        strvec_push(&attrs, p->ch->mods[i].attr.name);
    }
    rc = ldap_search_ext_s(c->ld, p->dn, LDAP_SCOPE_BASE, "(objectClass=*)", attrs.v, 0, NULL, NULL,
                           &tv, 1, &res);
    if (rc == LDAP_NO_SUCH_OBJECT) {
        goto done; /* gone since the modify: its error stands */
    }
    if (rc != LDAP_SUCCESS) {
        ret = ldapc_fail(c, rc, err, "reading %s", p->dn);
        goto done;
    }
    m = ldap_first_entry(c->ld, res);
    if (m == NULL) {
        goto done;
    }
    nc = change_new(p->ch->op, p->ch->type, p->ch->anchor, p->ch->dn);
    nc->new_dn = xstrdup_or_null(p->ch->new_dn);
    for (i = 0; i < p->ch->nmods && ret == IDS_OK; i++) {
        const struct mod *md = &p->ch->mods[i];
        struct berval **vals;
        struct mod *nm;
        bool ranged;

        if (md->op == MOD_REPLACE || md->attr.nvals == 0) {
            if (md->op == MOD_DELETE && md->attr.nvals == 0) {
                vals = values_of(c, m, md->attr.name, &ranged);
                if (vals == NULL && !ranged) {
                    *changed = true; /* deleting an absent attribute */
                    continue;
                }
                ldap_value_free_len(vals);
            }
            nm = change_add_mod(nc, md->op, md->attr.name, md->attr.flags);
            for (k = 0; k < md->attr.nvals; k++) {
                attr_add_value(&nm->attr, md->attr.vals[k].data, md->attr.vals[k].len);
            }
            continue;
        }
        vals = values_of(c, m, md->attr.name, &ranged);
        nm = NULL;
        for (k = 0; k < md->attr.nvals && ret == IDS_OK; k++) {
            struct berval **one = vals;
            bool present = false;
            size_t q;

            if (ranged || (md->attr.flags & ATTR_REF)) {
                ret = value_held(c, p->dn, md->attr.name, &md->attr.vals[k], &present, err);
                if (ret != IDS_OK) {
                    break;
                }
                one = NULL;
            }
            for (q = 0; one != NULL && one[q] != NULL && !present; q++) {
                present = one[q]->bv_len == md->attr.vals[k].len &&
                          memcmp(one[q]->bv_val, md->attr.vals[k].data, one[q]->bv_len) == 0;
            }
            if (present == (md->op == MOD_ADD)) {
                *changed = true;
                continue;
            }
            if (nm == NULL) {
                nm = change_add_mod(nc, md->op, md->attr.name, md->attr.flags);
            }
            attr_add_value(&nm->attr, md->attr.vals[k].data, md->attr.vals[k].len);
        }
        ldap_value_free_len(vals);
    }
    if (ret == IDS_OK && *changed) {
        change_free(p->ch);
        p->ch = nc;
        nc = NULL;
    }

done:
    change_free(nc);
    ldap_msgfree(res);
    strvec_clear(&attrs);
    return ret;
}

/* A rename into a container that does not exist (create_parents): create
 * it, then send the rename again; else the rename fails with why. */
static enum ids_err move_into_new_parent(struct ldap_conn *c, struct ldap_pending *p,
                                         struct ids_error *err)
{
    struct ids_error e = IDS_ERROR_INIT;
    enum ids_err ret;

    p->parent_tries++;
    ret = create_parents(c, p->ch->new_dn, 0, &e);
    if (ret == IDS_OK) {
        return resend(c, p, err);
    }
    if (ret == IDS_EUNREACHABLE) {
        *err = e;
        return ret;
    }
    finish(c, p, ret, &e, false);
    return IDS_OK;
}

/* One result message for p. Returns IDS_EUNREACHABLE when the connection
 * broke while handling it (the caller reconnects and re-sends). */
static enum ids_err handle_result(struct ldap_conn *c, struct ldap_pending *p, LDAPMessage *msg,
                                  struct ids_error *err)
{
    LDAPControl **ctrls = NULL;
    char *text = NULL;
    char *matched = NULL;
    struct strbuf why = STRBUF_INIT;
    struct strbuf parent = STRBUF_INIT;
    struct ids_error e = IDS_ERROR_INIT;
    enum ids_err ret = IDS_OK;
    int rcode = LDAP_SUCCESS;
    int rc;
    bool moved = false;

    p->msgid = -1;
    if (p->stage == PS_ADD_ANCHOR) {
        LDAPMessage *m = ldap_first_entry(c->ld, msg);
        struct berval **vals = m != NULL ? ldap_get_values_len(c->ld, m, c->anchor_attr) : NULL;

        if (vals != NULL && vals[0] != NULL) {
            ldapc_anchor_string(c, vals[0], &why);
            free(p->anchor);
            p->anchor = strbuf_detach(&why, NULL);
        }
        ldap_value_free_len(vals);
        finish(c, p, IDS_OK, NULL, false);
        goto done;
    }
    rc = ldap_parse_result(c->ld, msg, &rcode, &matched, &text, NULL, &ctrls, 0);
    if (rc != LDAP_SUCCESS) {
        ret = ldapc_fail(c, rc, err, "reading the result for %s", p->dn);
        goto done;
    }
    if (ldapc_rc_is_conn_error(rcode)) {
        ret = ids_error_set_detail(err, IDS_EUNREACHABLE, rcode, "%s", ldap_err2string(rcode));
        goto done;
    }
    switch (p->stage) {
    case PS_ADD:
        if (rcode == LDAP_SUCCESS) {
            postread_anchor(c, ctrls, p);
            if (p->anchor == NULL) {
                p->stage = PS_ADD_ANCHOR;
                ret = send_stage(c, p, err);
                goto done;
            }
            finish(c, p, IDS_OK, NULL, false);
        } else if (rcode == LDAP_ALREADY_EXISTS) {
            bool ours = false;
            char *anchor = NULL;

            ret = check_ours(c, p, &ours, &anchor, &why, err);
            if (ret != IDS_OK) {
                goto done;
            }
            if (ours) {
                log_info("ldap-add-exists-ours", "connector=%s dn=\"%s\"", c->conn.name, p->dn);
                free(p->anchor);
                p->anchor = anchor;
                finish(c, p, IDS_OK, NULL, false);
            } else {
                free(anchor);
                ids_error_set_detail(&e, IDS_EEXIST, rcode,
                                     "add %s: an entry with this DN already exists and is not "
                                     "the one idsync created (%s)",
                                     p->dn, why.len ? why.buf : "not readable");
                finish(c, p, IDS_EEXIST, &e, false);
            }
        } else if (rcode == LDAP_NO_SUCH_OBJECT) {
            ldapdn_parent(p->dn, &parent, NULL);
            if (c->create_parents && p->parent_tries == 0) {
                p->parent_tries++;
                ret = create_parents(c, p->dn, 0, &e);
                if (ret == IDS_EUNREACHABLE) {
                    *err = e;
                    goto done;
                }
                if (ret != IDS_OK) {
                    finish(c, p, ret, &e, false);
                    ret = IDS_OK;
                    goto done;
                }
                ret = resend(c, p, err);
                goto done;
            }
            ids_error_set_detail(
                &e, IDS_EREJECTED, rcode, "add %s: parent %s does not exist%s", p->dn, parent.buf,
                c->create_parents ? "" : " (set create_parents: true to create it)");
            finish(c, p, IDS_EREJECTED, &e, false);
        } else {
            finish_ldap_error(c, p, rcode, text, "add");
        }
        break;
    case PS_RENAME:
        if (rcode == LDAP_SUCCESS) {
            ret = advance(c, p, err);
            goto done;
        }
        if (rcode == LDAP_NO_SUCH_OBJECT || rcode == LDAP_ALREADY_EXISTS) {
            /* re-sent after a crash? the object is at new_dn and not at dn */
            enum ids_err at_new = dn_exists(c, p->ch->new_dn, err);
            enum ids_err at_old =
                at_new == IDS_OK || at_new == IDS_ENOTFOUND ? dn_exists(c, p->dn, err) : at_new;

            if (at_new == IDS_EUNREACHABLE || at_old == IDS_EUNREACHABLE) {
                ret = IDS_EUNREACHABLE;
                goto done;
            }
            if (at_new == IDS_OK && at_old == IDS_ENOTFOUND) {
                ret = advance(c, p, err);
                goto done;
            }
            if (rcode == LDAP_NO_SUCH_OBJECT && at_old == IDS_OK) {
                /* the new parent is missing */
                ldapdn_parent(p->ch->new_dn, &parent, NULL);
                if (c->create_parents && p->parent_tries == 0) {
                    ret = move_into_new_parent(c, p, err);
                    goto done;
                }
                ids_error_set_detail(
                    &e, IDS_EREJECTED, rcode, "move %s to %s: parent %s does not exist%s", p->dn,
                    p->ch->new_dn, parent.buf,
                    c->create_parents ? "" : " (set create_parents: true to create it)");
                finish(c, p, IDS_EREJECTED, &e, false);
                goto done;
            }
            if (rcode == LDAP_NO_SUCH_OBJECT) {
                ret = relocate(c, p, &moved, err);
                if (ret != IDS_OK) {
                    goto done;
                }
                if (moved) {
                    ret = resend(c, p, err);
                    goto done;
                }
                ids_error_set_detail(&e, IDS_ENOTFOUND, rcode, "rename %s: no such object", p->dn);
                finish(c, p, IDS_ENOTFOUND, &e, false);
                goto done;
            }
        }
        if (rcode == LDAP_OTHER && c->create_parents && p->parent_tries == 0) {
            /* Samba answers a move into a missing container with "other"
             * ("00002095: ... parent does not exist!"), not noSuchObject */
            enum ids_err there;

            strbuf_reset(&parent);
            ldapdn_parent(p->ch->new_dn, &parent, NULL);
            there = parent.len > 0 ? dn_exists(c, parent.buf, err) : IDS_OK;
            if (there == IDS_EUNREACHABLE) {
                ret = IDS_EUNREACHABLE;
                goto done;
            }
            if (there == IDS_ENOTFOUND) {
                ret = move_into_new_parent(c, p, err);
                goto done;
            }
        }
        finish_ldap_error(c, p, rcode, text, "rename");
        break;
    case PS_MODIFY:
        if (rcode == LDAP_SUCCESS) {
            finish(c, p, IDS_OK, NULL, false);
            goto done;
        }
        if (rcode == LDAP_NO_SUCH_OBJECT) {
            ret = relocate(c, p, &moved, err);
            if (ret != IDS_OK) {
                goto done;
            }
            if (moved) {
                p->renamed = true; /* the result carries its current DN */
                ret = resend(c, p, err);
                goto done;
            }
            ids_error_set_detail(&e, IDS_ENOTFOUND, rcode, "modify %s: no such object", p->dn);
            finish(c, p, IDS_ENOTFOUND, &e, false);
            goto done;
        }
        if (rcode == LDAP_OBJECT_CLASS_VIOLATION && stand_in_after_refusal(c, p)) {
            ret = resend(c, p, err);
            goto done;
        }
        /* a value already there or already gone (see drop_noop_values) */
        if ((rcode == LDAP_TYPE_OR_VALUE_EXISTS || rcode == LDAP_NO_SUCH_ATTRIBUTE ||
             rcode == LDAP_ALREADY_EXISTS || rcode == LDAP_UNWILLING_TO_PERFORM) &&
            p->fixups == 0) {
            bool changed = false;

            p->fixups++;
            ret = drop_noop_values(c, p, &changed, err);
            if (ret != IDS_OK) {
                goto done;
            }
            if (changed) {
                ret = resend(c, p, err);
                goto done;
            }
        }
        finish_ldap_error(c, p, rcode, text, "modify");
        break;
    case PS_DELETE:
        if (rcode == LDAP_SUCCESS) {
            finish(c, p, IDS_OK, NULL, false);
            goto done;
        }
        if (rcode == LDAP_NO_SUCH_OBJECT) {
            ret = relocate(c, p, &moved, err);
            if (ret != IDS_OK) {
                goto done;
            }
            if (moved) {
                ret = resend(c, p, err);
                goto done;
            }
            /* already gone: what a delete wants */
            finish(c, p, IDS_OK, NULL, false);
            goto done;
        }
        finish_ldap_error(c, p, rcode, text, "delete");
        break;
    case PS_ADD_ANCHOR:
        break;
    }

done:
    ldap_controls_free(ctrls);
    ldap_memfree(text);
    ldap_memfree(matched);
    strbuf_release(&why);
    strbuf_release(&parent);
    return ret;
}

/* ---- connection loss --------------------------------------------------- */

static void fail_all_pending(struct ldap_conn *c, const struct ids_error *why)
{
    while (c->pending_head != NULL) {
        struct ldap_pending *p = c->pending_head;

        p->msgid = -1;
        finish(c, p, IDS_EUNREACHABLE, why, true);
    }
}

/* Reconnect and re-send every pending operation at its current stage. */
static enum ids_err recover(struct ldap_conn *c, struct ids_error *err)
{
    struct ldap_pending *p;
    struct ldap_pending *next;
    enum ids_err ret;
    int attempts;

    for (attempts = 0; attempts < 5; attempts++) {
        ret = ldapc_reconnect(c, err);
        if (ret != IDS_OK) {
            break;
        }
        for (p = c->pending_head; p != NULL; p = next) {
            next = p->next;
            p->msgid = -1;
            ret = resend(c, p, err);
            if (ret != IDS_OK) {
                break;
            }
        }
        if (ret == IDS_OK) {
            return IDS_OK;
        }
    }
    fail_all_pending(c, err);
    return ret;
}

/* Wait for (block) or look for one result and handle it. IDS_OK when one
 * message was handled, IDS_EAGAIN when none was ready, other codes when the
 * connection is gone for good. */
static enum ids_err pump(struct ldap_conn *c, bool block, struct ids_error *err)
{
    struct timeval tv = {block ? c->timeout : 0, 0};
    LDAPMessage *msg = NULL;
    struct ldap_pending *p;
    enum ids_err ret = IDS_OK;
    int rc;
    int id;

    if (c->ld == NULL) {
        return recover(c, err);
    }
    rc = ldap_result(c->ld, LDAP_RES_ANY, LDAP_MSG_ALL, &tv, &msg);
    if (rc == 0) {
        if (!block) {
            return IDS_EAGAIN;
        }
        log_warn("ldap-timeout", "connector=%s pending=%zu seconds=%ld", c->conn.name, c->npending,
                 c->timeout);
        return recover(c, err);
    }
    if (rc < 0) {
        return recover(c, err);
    }
    id = ldap_msgid(msg);
    for (p = c->pending_head; p != NULL; p = p->next) {
        if (p->msgid == id) {
            break;
        }
    }
    if (p != NULL) {
        ret = handle_result(c, p, msg, err);
    }
    ldap_msgfree(msg);
    if (ret == IDS_EUNREACHABLE) {
        ret = recover(c, err);
    }
    return ret;
}

/* ---- the ops ----------------------------------------------------------- */

enum ids_err ldapc_export_begin(struct connector *conn, struct ids_error *err)
{
    struct ldap_conn *c = (struct ldap_conn *)conn;

    if (c->ld == NULL) {
        return ldapc_reconnect(c, err);
    }
    return IDS_OK;
}

enum ids_err ldapc_submit(struct connector *conn, const struct change *ch, uint64_t tag,
                          struct ids_error *err)
{
    struct ldap_conn *c = (struct ldap_conn *)conn;
    struct ldap_pending *p;
    enum ids_err ret = IDS_OK;

    if (ch->op != CHANGE_ADD && ch->op != CHANGE_MODIFY && ch->op != CHANGE_DELETE) {
        return ids_error_set(err, IDS_EINVAL, "unknown change operation");
    }
    if (ch->op == CHANGE_ADD && (ch->dn == NULL || ch->dn[0] == '\0')) {
        return ids_error_set(err, IDS_EINPUT, "add of a %s without a DN (flow a `dn` value)",
                             ch->type ? ch->type : "object");
    }
    while (c->npending >= (size_t)c->window) {
        ret = pump(c, true, err);
        if (ret != IDS_OK) {
            return ret;
        }
    }
    p = xcalloc(1, sizeof(*p));
    p->msgid = -1;
    p->tag = tag;
    ret = connector_ad_passwords(ch, &p->ch, err);
    if (ret != IDS_OK) {
        pending_free(p);
        return ret;
    }
    if (p->ch == NULL) {
        p->ch = change_dup(ch);
    }
    stand_in_prepare(c, p->ch);
    if (ch->dn != NULL && ch->dn[0] != '\0') {
        p->dn = xstrdup(ch->dn);
    } else {
        ret = dn_by_anchor(c, ch->anchor, &p->dn, err);
        if (ret != IDS_OK || p->dn == NULL) {
            pending_free(p);
            if (ret == IDS_OK) {
                if (ch->op == CHANGE_DELETE) {
                    /* deleting what is not there: done */
                    struct ldap_ready *r = xcalloc(1, sizeof(*r));

                    r->r.tag = tag;
                    push_ready(c, r);
                    return IDS_OK;
                }
                ret = ids_error_set(err, IDS_ENOTFOUND, "no object with %s=%s", c->anchor_attr,
                                    ch->anchor ? ch->anchor : "(none)");
            }
            return ret;
        }
    }
    if (ch->op == CHANGE_ADD) {
        p->stage = PS_ADD;
    } else if (ch->op == CHANGE_DELETE) {
        p->stage = PS_DELETE;
    } else if (ch->new_dn != NULL && ch->new_dn[0] != '\0' && !ldapdn_equal(ch->new_dn, p->dn)) {
        p->stage = PS_RENAME;
    } else {
        p->stage = PS_MODIFY;
    }
    /* link at the tail */
    p->prev = c->pending_tail;
    if (c->pending_tail != NULL) {
        c->pending_tail->next = p;
    } else {
        c->pending_head = p;
    }
    c->pending_tail = p;
    c->npending++;
    ret = send_stage(c, p, err);
    if (ret == IDS_EUNREACHABLE) {
        /* Reconnected: p was re-sent with the others. Not reconnected:
         * every pending change, p too, is reported failed by poll. Either
         * way the change is in the engine's hands through poll. */
        ret = recover(c, err);
        (void)ret;
        return IDS_OK;
    }
    if (ret != IDS_OK) {
        pending_unlink(c, p);
        pending_free(p);
        return ret;
    }
    if (p->msgid < 0) {
        finish(c, p, IDS_OK, NULL, false); /* an empty modify */
    }
    return IDS_OK;
}

enum ids_err ldapc_poll(struct connector *conn, bool block, struct export_result *res,
                        struct ids_error *err)
{
    struct ldap_conn *c = (struct ldap_conn *)conn;
    enum ids_err ret;

    for (;;) {
        if (c->ready_head != NULL) {
            struct ldap_ready *r = c->ready_head;

            c->ready_head = r->next;
            if (c->ready_head == NULL) {
                c->ready_tail = NULL;
            }
            *res = r->r;
            free(r);
            return IDS_OK;
        }
        if (c->npending == 0) {
            return IDS_DONE;
        }
        ret = pump(c, block, err);
        if (ret == IDS_EAGAIN) {
            return IDS_EAGAIN;
        }
        if (ret != IDS_OK && c->ready_head == NULL) {
            return ret;
        }
    }
}

enum ids_err ldapc_export_end(struct connector *conn, struct ids_error *err)
{
    (void)conn;
    (void)err;
    return IDS_OK;
}

void ldapc_export_release(struct ldap_conn *c)
{
    while (c->pending_head != NULL) {
        struct ldap_pending *p = c->pending_head;

        pending_unlink(c, p);
        pending_free(p);
    }
    while (c->ready_head != NULL) {
        struct ldap_ready *r = c->ready_head;

        c->ready_head = r->next;
        export_result_release(&r->r);
        free(r);
    }
    c->ready_tail = NULL;
}
