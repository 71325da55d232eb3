/* ldif.c - the LDIF connector (RFC 2849 files), source and target.
 *
 * Source: content records and `changetype: add` records are objects; a
 * full read folds the later change records of the file (modify, modrdn,
 * delete) into the objects they address, in two streaming passes (an index
 * of DN hashes, then the objects), so a file written by the target side
 * reads back as the state it describes. A delta read yields the records
 * appended since the watermark (the file must only have grown).
 *
 * Target: every change is appended as change records, preceded by a
 * comment "# idsync: tag=T hash=H" that makes a retried change (same tag
 * and hash after a crash) a no-op; export_begin reads the file's tail to
 * learn which were written. See docs/internals/connectors.md.
 */
#include "connector/connector.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "connector/fileio.h"
#include "connector/ldifparse.h"
#include "util/codec.h"
#include "util/ldapesc.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/strvec.h"
#include "util/banned.h"

#define TAIL_SCAN (4u * 1024u * 1024u)
#define TOMBSTONE UINT64_MAX

static const struct config_option ldif_options[] = {
    {"path", OPT_PATH, NULL, 0, 0, NULL, true,
     "LDIF file (RFC 2849) read, or appended to as a target; relative to the configuration "
     "file."},
    {"anchor", OPT_STRING, NULL, 0, 0, NULL, false,
     "Attribute whose value is the anchor of each entry, or `dn` for the normalised DN. "
     "Default: entryUUID when the entry has one, else the normalised DN."},
    {"settle", OPT_DURATION, "2s", 0, 0, NULL, false,
     "A file changed less than this long ago may still be being written (a copy, an export "
     "job): the import waits until it has stayed unchanged this long, and fails, reading "
     "nothing, if it keeps changing for ten times as long. A file this connector wrote itself, "
     "or one of the size the last import read to its end, is read at once. `0` reads at once."},
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

static const struct config_option ldif_object_options[] = {
    {"object_class", OPT_STRING, NULL, 0, 0, NULL, false,
     "An objectClass value that selects the entries of this object type (case-insensitive). "
     "The generic `filter` may be used instead or as well: (attr=value), (attr=*), &, |, !."},
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

/* ---- a small LDAP filter: (&..)(|..)(!..)(a=v)(a=*) ------------------- */

enum lf_op { LF_AND, LF_OR, LF_NOT, LF_EQ, LF_PRESENT };

struct lfilter {
    enum lf_op op;
    char *attr;
    struct strbuf norm; /* LF_EQ: normalised value */
    size_t nsub;
    struct lfilter **sub;
};

static void lfilter_free(struct lfilter *f)
{
    size_t i;

    if (f == NULL) {
        return;
    }
    for (i = 0; i < f->nsub; i++) {
        lfilter_free(f->sub[i]);
    }
    free(f->sub);
    free(f->attr);
    strbuf_release(&f->norm);
    free(f);
}

static int hexval(char c)
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

static struct lfilter *lfilter_parse(const char *s, size_t *pos, int depth, const char **why)
{
    struct lfilter *f = NULL;
    size_t i = *pos;

    if (depth > 32) {
        *why = "nested too deeply";
        return NULL;
    }
    if (s[i] != '(') {
        *why = "expected '('";
        return NULL;
    }
    i++;
    f = xcalloc(1, sizeof(*f));
    strbuf_init(&f->norm, 0);
    if (s[i] == '&' || s[i] == '|' || s[i] == '!') {
        f->op = s[i] == '&' ? LF_AND : (s[i] == '|' ? LF_OR : LF_NOT);
        i++;
        while (s[i] == '(') {
            struct lfilter *sub = lfilter_parse(s, &i, depth + 1, why);

            if (sub == NULL) {
                goto fail;
            }
            f->sub = xreallocarray(f->sub, f->nsub + 1, sizeof(*f->sub));
            f->sub[f->nsub++] = sub;
        }
        if (f->nsub == 0 || (f->op == LF_NOT && f->nsub != 1)) {
            *why = "bad operand list";
            goto fail;
        }
    } else {
        struct strbuf raw = STRBUF_INIT;
        size_t a = i;

        while (s[i] != '\0' && s[i] != '=' && s[i] != ')' && s[i] != '(') {
            i++;
        }
        if (s[i] != '=' || i == a || strchr("<>~:", s[i - 1]) != NULL) {
            *why = "only (attr=value) and (attr=*) are supported";
            goto fail;
        }
        f->attr = xmemdup(s + a, i - a);
        i++;
        while (s[i] != '\0' && s[i] != ')' && s[i] != '(') {
            if (s[i] == '\\' && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
                strbuf_addch(&raw, hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
                i += 3;
                continue;
            }
            if (s[i] == '*' && !(raw.len == 0 && s[i + 1] == ')')) {
                strbuf_release(&raw);
                *why = "substring filters are not supported";
                goto fail;
            }
            strbuf_addch(&raw, s[i]);
            i++;
        }
        if (strcmp(raw.buf, "*") == 0) {
            f->op = LF_PRESENT;
        } else {
            f->op = LF_EQ;
            value_normalize(&f->norm, raw.buf, raw.len);
        }
        strbuf_release(&raw);
    }
    if (s[i] != ')') {
        *why = "expected ')'";
        goto fail;
    }
    *pos = i + 1;
    return f;
fail:
    lfilter_free(f);
    return NULL;
}

static bool lfilter_match(const struct lfilter *f, const struct entry *e)
{
    const struct attr *a;
    size_t i;

    switch (f->op) {
    case LF_AND:
        for (i = 0; i < f->nsub; i++) {
            if (!lfilter_match(f->sub[i], e)) {
                return false;
            }
        }
        return true;
    case LF_OR:
        for (i = 0; i < f->nsub; i++) {
            if (lfilter_match(f->sub[i], e)) {
                return true;
            }
        }
        return false;
    case LF_NOT:
        return !lfilter_match(f->sub[0], e);
    case LF_PRESENT:
        a = entry_attr(e, f->attr);
        return a != NULL && a->nvals > 0;
    case LF_EQ:
        a = entry_attr(e, f->attr);
        for (i = 0; a != NULL && i < a->nvals; i++) {
            struct strbuf n = STRBUF_INIT;
            bool eq;

            value_normalize(&n, a->vals[i].data, a->vals[i].len);
            eq = n.len == f->norm.len && memcmp(n.buf, f->norm.buf, n.len) == 0;
            strbuf_release(&n);
            if (eq) {
                return true;
            }
        }
        return false;
    }
    return false;
}

/* ---- the connector -------------------------------------------------- */

struct ldif_type {
    const struct object_type_config *ot;
    struct lfilter *filter; /* NULL: every entry */
};

struct ldif_result {
    struct export_result r;
};

struct ldif_conn {
    struct connector base; /* MUST be first */
    char *path;
    const char *anchor_attr; /* NULL: entryUUID when present, else DN */
    bool anchor_dn;          /* anchor: dn */
    long settle_ms;          /* file_settle */
    struct file_stamp own;   /* the version of the file this instance last wrote */
    size_t ntypes;
    struct ldif_type *types;
    /* export */
    int fd;                  /* append descriptor, -1 when not exporting */
    struct u64set written;   /* hash(tag, change hash): the file's tail, this session's */
    struct ldif_result *res; /* results not yet polled */
    size_t nres, resalloc, rnext;
};

static void ldif_free(struct ldif_conn *lc)
{
    size_t i;

    if (lc == NULL) {
        return;
    }
    for (i = 0; i < lc->ntypes; i++) {
        lfilter_free(lc->types[i].filter);
    }
    free(lc->types);
    free(lc->path);
    if (lc->fd >= 0) {
        close(lc->fd);
    }
    u64set_release(&lc->written);
    for (i = lc->rnext; i < lc->nres; i++) {
        export_result_release(&lc->res[i].r);
    }
    free(lc->res);
    free(lc);
}

static enum ids_err ldif_create(const struct connector_config *cfg, struct connector **out,
                                struct ids_error *err)
{
    struct ldif_conn *lc = xcalloc(1, sizeof(*lc));
    const char *path = file_opt(&cfg->opts, "path");
    const char *anchor = file_opt(&cfg->opts, "anchor");
    const struct config_value *v;
    enum ids_err ret = IDS_OK;
    size_t i;

    *out = NULL;
    lc->fd = -1;
    lc->base.cfg = cfg;
    if (path == NULL || path[0] == '\0') {
        ret = ids_error_set(err, IDS_ECONFIG, "no path");
        goto done;
    }
    lc->path = file_resolve_path(cfg, path);
    v = config_values_get(&cfg->opts, "settle");
    lc->settle_ms = (v != NULL ? v->num : 2) * 1000;
    if (anchor != NULL && strcasecmp(anchor, "dn") == 0) {
        lc->anchor_dn = true;
    } else if (anchor != NULL && anchor[0] != '\0') {
        lc->anchor_attr = anchor;
    }
    if (cfg->nobjects == 0) {
        ret = ids_error_set(err, IDS_ECONFIG, "an ldif connector needs an object type (objects:)");
        goto done;
    }
    lc->ntypes = cfg->nobjects;
    lc->types = xcalloc(lc->ntypes, sizeof(*lc->types));
    for (i = 0; i < lc->ntypes; i++) {
        struct ldif_type *t = &lc->types[i];
        const char *oc;
        struct strbuf f = STRBUF_INIT;
        const char *why = NULL;
        size_t pos = 0;

        t->ot = &cfg->objects[i];
        oc = file_opt(&t->ot->opts, "object_class");
        if (oc != NULL && t->ot->filter != NULL) {
            strbuf_addstr(&f, "(&(objectClass=");
            ldapesc_filter_value(&f, oc, strlen(oc));
            strbuf_addf(&f, ")%s)", t->ot->filter);
        } else if (oc != NULL) {
            strbuf_addstr(&f, "(objectClass=");
            ldapesc_filter_value(&f, oc, strlen(oc));
            strbuf_addstr(&f, ")");
        } else if (t->ot->filter != NULL) {
            strbuf_addstr(&f, t->ot->filter);
        } else if (lc->ntypes > 1) {
            ret = ids_error_set(err, IDS_ECONFIG,
                                "object type %s: object_class or filter needed to tell the "
                                "types apart",
                                t->ot->name);
            goto done;
        }
        if (f.len > 0) {
            t->filter = lfilter_parse(f.buf, &pos, 0, &why);
            if (t->filter == NULL || f.buf[pos] != '\0') {
                ret = ids_error_set(err, IDS_ECONFIG, "object type %s: filter %s: %s", t->ot->name,
                                    f.buf, why ? why : "trailing text");
                strbuf_release(&f);
                goto done;
            }
        }
        strbuf_release(&f);
    }
    *out = &lc->base;
    lc = NULL;
done:
    ldif_free(lc);
    return ret;
}

static enum ids_err ldif_open(struct connector *c, struct ids_error *err)
{
    struct ldif_conn *lc = (struct ldif_conn *)c;
    struct stat st;

    if (stat(lc->path, &st) == 0) {
        if (!S_ISREG(st.st_mode) || access(lc->path, R_OK) != 0) {
            return ids_error_set(err, IDS_EUNREACHABLE, "%s: not a readable file", lc->path);
        }
        return IDS_OK;
    }
    if (errno != ENOENT) {
        return ids_error_set(err, IDS_EUNREACHABLE, "%s: %s", lc->path, strerror(errno));
    }
    {
        const char *slash = strrchr(lc->path, '/');

        if (slash != NULL) {
            char *dir = xmemdup(lc->path, slash == lc->path ? 1 : (size_t)(slash - lc->path));
            int rc = stat(dir, &st);

            free(dir);
            if (rc != 0 || !S_ISDIR(st.st_mode)) {
                return ids_error_set(err, IDS_EUNREACHABLE, "%s: its folder does not exist",
                                     lc->path);
            }
        }
    }
    return IDS_OK;
}

static void ldif_close(struct connector *c)
{
    ldif_free((struct ldif_conn *)c);
}

/* ---- records -> entries and changes ---------------------------------- */

enum rec_kind { K_ADD, K_MODIFY, K_DELETE, K_MODRDN };

/* What a (good) record is: kind, DN, index of its first attribute line. */
static bool rec_kind(const struct ldif_record *rec, enum rec_kind *kind, size_t *first, char *why,
                     size_t whylen)
{
    const struct ldif_av *av = rec->av;

    if (rec->nav == 0 || strcasecmp(av[0].name, "dn") != 0) {
        snprintf(why, whylen, "line %" PRIu64 ": a record must start with dn:", rec->line);
        return false;
    }
    if (av[0].kind == '<' || memchr(av[0].value, '\0', av[0].vlen) != NULL ||
        !utf8_valid(av[0].value, av[0].vlen)) {
        snprintf(why, whylen, "line %" PRIu64 ": the DN is not UTF-8 text", rec->line);
        return false;
    }
    *kind = K_ADD;
    *first = 1;
    if (rec->nav > 1 && strcasecmp(av[1].name, "control") == 0) {
        snprintf(why, whylen, "line %" PRIu64 ": controls are not supported", av[1].line);
        return false;
    }
    if (rec->nav > 1 && strcasecmp(av[1].name, "changetype") == 0) {
        const char *ct = av[1].value;

        *first = 2;
        if (strcasecmp(ct, "add") == 0) {
            *kind = K_ADD;
        } else if (strcasecmp(ct, "modify") == 0) {
            *kind = K_MODIFY;
        } else if (strcasecmp(ct, "delete") == 0) {
            *kind = K_DELETE;
        } else if (strcasecmp(ct, "modrdn") == 0 || strcasecmp(ct, "moddn") == 0) {
            *kind = K_MODRDN;
        } else {
            snprintf(why, whylen, "line %" PRIu64 ": unknown changetype \"%s\"", av[1].line, ct);
            return false;
        }
    }
    return true;
}

static bool check_no_url(const struct ldif_record *rec, char *why, size_t whylen)
{
    size_t i;

    for (i = 0; i < rec->nav; i++) {
        if (rec->av[i].kind == '<') {
            snprintf(why, whylen,
                     "line %" PRIu64 ": attribute %s: URL values (\":<\") are not supported; "
                     "inline the value (base64 with \"::\")",
                     rec->av[i].line, rec->av[i].name);
            return false;
        }
    }
    return true;
}

/* Every attribute of an add/content record. */
static struct entry *rec_entry(const struct ldif_record *rec, size_t first, char *why,
                               size_t whylen)
{
    struct entry *e = entry_new(NULL, NULL, rec->av[0].value);
    size_t i;

    for (i = first; i < rec->nav; i++) {
        if (rec->av[i].kind == '-') {
            snprintf(why, whylen, "line %" PRIu64 ": unexpected \"-\" in an add record",
                     rec->av[i].line);
            entry_free(e);
            return NULL;
        }
        entry_add_value(e, rec->av[i].name, rec->av[i].value, rec->av[i].vlen);
    }
    return e;
}

/* The change of a modify / modrdn / delete record. For modrdn, *deleteoldrdn
 * is set and change->new_dn is the new DN. */
static struct change *rec_change(const struct ldif_record *rec, enum rec_kind kind, size_t first,
                                 bool *deleteoldrdn, char *why, size_t whylen)
{
    const char *dn = rec->av[0].value;
    struct change *ch =
        change_new(kind == K_DELETE ? CHANGE_DELETE : CHANGE_MODIFY, NULL, NULL, dn);
    size_t i = first;

    *deleteoldrdn = false;
    if (kind == K_DELETE) {
        if (rec->nav > first) {
            snprintf(why, whylen, "line %" PRIu64 ": a delete record has no attributes",
                     rec->av[first].line);
            goto fail;
        }
        return ch;
    }
    if (kind == K_MODRDN) {
        const char *newrdn = NULL;
        const char *newsup = NULL;
        struct strbuf parent = STRBUF_INIT;
        struct strbuf nd = STRBUF_INIT;

        for (; i < rec->nav; i++) {
            const struct ldif_av *av = &rec->av[i];

            if (strcasecmp(av->name, "newrdn") == 0) {
                newrdn = av->value;
            } else if (strcasecmp(av->name, "deleteoldrdn") == 0) {
                *deleteoldrdn = strcmp(av->value, "1") == 0;
            } else if (strcasecmp(av->name, "newsuperior") == 0) {
                newsup = av->value;
            } else {
                snprintf(why, whylen, "line %" PRIu64 ": unexpected \"%s\" in a modrdn record",
                         av->line, av->name);
                goto fail;
            }
        }
        if (newrdn == NULL || newrdn[0] == '\0') {
            snprintf(why, whylen, "line %" PRIu64 ": modrdn without newrdn", rec->line);
            goto fail;
        }
        if (newsup == NULL && ldapdn_parent(dn, &parent, NULL) != IDS_OK) {
            strbuf_reset(&parent);
        }
        strbuf_addstr(&nd, newrdn);
        if (newsup != NULL ? newsup[0] != '\0' : parent.len > 0) {
            strbuf_addch(&nd, ',');
            strbuf_addstr(&nd, newsup != NULL ? newsup : parent.buf);
        }
        ch->new_dn = strbuf_detach(&nd, NULL);
        strbuf_release(&parent);
        return ch;
    }
    /* modify: (add|delete|replace): attr, values, "-" */
    while (i < rec->nav) {
        const struct ldif_av *op = &rec->av[i];
        enum mod_op mop;
        struct mod *m;

        if (strcasecmp(op->name, "add") == 0) {
            mop = MOD_ADD;
        } else if (strcasecmp(op->name, "delete") == 0) {
            mop = MOD_DELETE;
        } else if (strcasecmp(op->name, "replace") == 0) {
            mop = MOD_REPLACE;
        } else {
            snprintf(why, whylen,
                     "line %" PRIu64 ": expected add:, delete: or replace: in a modify record",
                     op->line);
            goto fail;
        }
        m = change_add_mod(ch, mop, op->value, 0);
        for (i++; i < rec->nav && rec->av[i].kind != '-'; i++) {
            if (strcasecmp(rec->av[i].name, op->value) != 0) {
                snprintf(why, whylen, "line %" PRIu64 ": attribute %s inside the %s: %s block",
                         rec->av[i].line, rec->av[i].name, op->name, op->value);
                goto fail;
            }
            attr_add_value(&m->attr, rec->av[i].value, rec->av[i].vlen);
        }
        if (i < rec->nav) {
            i++; /* the "-" */
        }
    }
    return ch;
fail:
    change_free(ch);
    return NULL;
}

/* Apply a modrdn to an entry: new DN, new RDN values added, old removed. */
static void apply_modrdn(struct entry *e, const char *new_dn, bool deleteoldrdn)
{
    struct ldapdn oldp = LDAPDN_INIT;
    struct ldapdn newp = LDAPDN_INIT;
    size_t i;

    if (deleteoldrdn && e->dn != NULL &&
        ldapdn_parse(e->dn, strlen(e->dn), &oldp, NULL) == IDS_OK && oldp.nrdns > 0) {
        for (i = 0; i < oldp.rdns[0].navas; i++) {
            struct attr *a = entry_attr(e, oldp.rdns[0].avas[i].type);

            if (a != NULL) {
                attr_remove_value(a, oldp.rdns[0].avas[i].value, oldp.rdns[0].avas[i].vlen);
            }
        }
    }
    if (ldapdn_parse(new_dn, strlen(new_dn), &newp, NULL) == IDS_OK && newp.nrdns > 0) {
        for (i = 0; i < newp.rdns[0].navas; i++) {
            struct attr *a = entry_attr_add(e, newp.rdns[0].avas[i].type);

            if (!attr_has_value(a, newp.rdns[0].avas[i].value, newp.rdns[0].avas[i].vlen)) {
                attr_add_value(a, newp.rdns[0].avas[i].value, newp.rdns[0].avas[i].vlen);
            }
        }
    }
    entry_set_dn(e, new_dn);
    ldapdn_release(&oldp);
    ldapdn_release(&newp);
}

static uint64_t dn_hash(const char *dn)
{
    struct strbuf n = STRBUF_INIT;
    uint64_t h;

    if (ldapdn_normalize(dn, &n, NULL) != IDS_OK) {
        strbuf_reset(&n);
        strbuf_addstr(&n, dn);
        strbuf_tolower(&n);
    }
    h = file_key_hash(n.buf, n.len);
    strbuf_release(&n);
    return h;
}

/* Anchor of an entry; false (why set) when the configured attribute is missing. */
static bool entry_anchor(const struct ldif_conn *lc, const struct entry *e, struct strbuf *out,
                         char *why, size_t whylen)
{
    const char *attr = lc->anchor_dn ? NULL : (lc->anchor_attr ? lc->anchor_attr : "entryUUID");
    const struct attr *a = attr ? entry_attr(e, attr) : NULL;

    if (a != NULL && a->nvals > 0) {
        if (!value_is_text(a->vals[0].data, a->vals[0].len)) {
            base64_encode(out, a->vals[0].data, a->vals[0].len);
        } else {
            strbuf_add(out, a->vals[0].data, a->vals[0].len);
        }
        return true;
    }
    if (lc->anchor_attr != NULL) {
        snprintf(why, whylen, "no value for the anchor attribute %s", lc->anchor_attr);
        return false;
    }
    if (ldapdn_normalize(e->dn ? e->dn : "", out, NULL) != IDS_OK) {
        snprintf(why, whylen, "malformed DN \"%s\"", e->dn ? e->dn : "");
        return false;
    }
    return true;
}

/* Type, anchor, attribute selection. IDS_ENOTFOUND when no type matches. */
static enum ids_err finish_entry(const struct ldif_conn *lc, struct entry *e, char *why,
                                 size_t whylen)
{
    const struct ldif_type *t = NULL;
    struct strbuf anchor = STRBUF_INIT;
    size_t i;

    for (i = 0; i < lc->ntypes; i++) {
        if (lc->types[i].filter == NULL || lfilter_match(lc->types[i].filter, e)) {
            t = &lc->types[i];
            break;
        }
    }
    if (t == NULL) {
        return IDS_ENOTFOUND;
    }
    if (!entry_anchor(lc, e, &anchor, why, whylen)) {
        strbuf_release(&anchor);
        return IDS_EINPUT;
    }
    entry_set_type(e, t->ot->name);
    entry_set_anchor(e, anchor.buf);
    strbuf_release(&anchor);
    /* keep only the configured attributes (all when none are listed) */
    if (t->ot->attributes.nr > 0) {
        i = 0;
        while (i < e->nattrs) {
            if (strvec_find(&t->ot->attributes, e->attrs[i].name, true) < 0) {
                entry_remove_attr(e, e->attrs[i].name);
            } else {
                i++;
            }
        }
    }
    for (i = 0; i < t->ot->nrefs; i++) {
        struct attr *a = entry_attr(e, t->ot->refs[i].attr);

        if (a != NULL) {
            a->flags |= ATTR_REF;
        }
    }
    return IDS_OK;
}

/* ---- reading --------------------------------------------------------- */

struct chain_link {
    uint64_t off; /* offset of a change record */
    size_t next;  /* index + 1 of the next link, 0 = end */
};

/* Why a record is reported in pass 2 (bad map values). */
#define BAD_ORPHAN 1u /* change of a DN not added earlier in the file */
#define BAD_DUP_DN 2u /* add of a DN that exists already (line << 2) */

struct ldif_cursor {
    struct ldif_conn *lc;
    struct file_reader r;
    bool open;
    uint64_t line;
    bool first;
    struct ldif_record rec;
    bool delta;
    bool done;
    /* full read */
    struct u64map live; /* DN hash -> add record offset, TOMBSTONE after delete (pass 1) */
    struct u64map head; /* add offset -> index + 1 of its first link */
    struct chain_link *links;
    size_t nlinks, lalloc;
    struct u64map bad;      /* record offset -> BAD_* */
    struct u64map anchors;  /* anchor hash -> line */
    struct file_reader aux; /* random access to change records */
    bool aux_open;
    uint64_t size; /* bytes covered by this read */
    uint64_t hash; /* their content hash (pass 1) */
    /* delta read */
    struct u64map delta_adds; /* DN hash -> index + 1 in anchors_v */
    struct strvec anchors_v;
    struct strbuf wm;
};

static void ldif_cursor_free(struct connector_cursor *c)
{
    struct ldif_cursor *cur = (struct ldif_cursor *)c;

    if (cur == NULL) {
        return;
    }
    if (cur->open) {
        file_reader_close(&cur->r);
    }
    if (cur->aux_open) {
        file_reader_close(&cur->aux);
    }
    ldif_record_release(&cur->rec);
    u64map_release(&cur->live);
    u64map_release(&cur->head);
    u64map_release(&cur->bad);
    u64map_release(&cur->anchors);
    u64map_release(&cur->delta_adds);
    strvec_clear(&cur->anchors_v);
    free(cur->links);
    strbuf_release(&cur->wm);
    free(cur);
}

static struct ldif_cursor *cursor_new(struct ldif_conn *lc)
{
    struct ldif_cursor *cur = xcalloc(1, sizeof(*cur));

    cur->lc = lc;
    ldif_record_init(&cur->rec);
    strvec_init(&cur->anchors_v);
    strbuf_init(&cur->wm, 0);
    return cur;
}

static void chain_append(struct ldif_cursor *cur, uint64_t lineage, uint64_t off)
{
    uint64_t v;

    ALLOC_GROW(cur->links, cur->nlinks + 1, cur->lalloc);
    cur->links[cur->nlinks].off = off;
    cur->links[cur->nlinks].next = 0;
    cur->nlinks++;
    if (!u64map_get(&cur->head, lineage, &v)) {
        u64map_put(&cur->head, lineage, cur->nlinks);
        return;
    }
    while (cur->links[v - 1].next != 0) {
        v = cur->links[v - 1].next;
    }
    cur->links[v - 1].next = cur->nlinks;
}

/* Pass 1 of a full read: index DNs and chain change records to their add. */
static enum ids_err index_pass(struct ldif_cursor *cur, struct ids_error *err)
{
    struct file_reader r;
    struct ldif_record rec;
    uint64_t line = 0;
    bool first = true;
    enum ids_err ret;
    char why[256];

    ldif_record_init(&rec);
    ret = file_reader_open(&r, cur->lc->path, err);
    if (ret != IDS_OK) {
        return ret;
    }
    for (;;) {
        enum ldif_status st = ldif_read_record(&r, &line, first, &rec);
        enum rec_kind kind;
        size_t fi;
        uint64_t h, v;

        first = false;
        if (st == LDIF_IOERR) {
            ret = ids_error_set(err, IDS_EIO, "%s: %s", cur->lc->path, strerror(r.err));
            goto done;
        }
        if (st == LDIF_EOF) {
            break;
        }
        if (rec.bad || !rec_kind(&rec, &kind, &fi, why, sizeof(why))) {
            continue; /* reported in pass 2 */
        }
        h = dn_hash(rec.av[0].value);
        if (kind == K_ADD) {
            if (u64map_get(&cur->live, h, &v) && v != TOMBSTONE) {
                u64map_put(&cur->bad, rec.off, BAD_DUP_DN);
            } else {
                u64map_put(&cur->live, h, rec.off);
            }
            continue;
        }
        if (!u64map_get(&cur->live, h, &v) || v == TOMBSTONE) {
            u64map_put(&cur->bad, rec.off, BAD_ORPHAN);
            continue;
        }
        chain_append(cur, v, rec.off);
        if (kind == K_DELETE) {
            u64map_put(&cur->live, h, TOMBSTONE);
        } else if (kind == K_MODRDN) {
            bool del;
            struct change *ch = rec_change(&rec, kind, fi, &del, why, sizeof(why));

            if (ch != NULL) {
                u64map_put(&cur->live, h, TOMBSTONE);
                u64map_put(&cur->live, dn_hash(ch->new_dn), v);
                change_free(ch);
            }
        }
    }
    ret = file_reader_drain(&r, err);
    cur->size = r.hasher.size;
    cur->hash = file_hasher_value(&r.hasher);
done:
    /* pass 2 needs the chains and the bad records, not the DNs: a million
     * of them are freed before it fills the store's cache */
    u64map_release(&cur->live);
    ldif_record_release(&rec);
    file_reader_close(&r);
    return ret;
}

static enum ids_err ldif_read_full(struct connector *c, struct connector_cursor **out,
                                   struct ids_error *err)
{
    struct ldif_conn *lc = (struct ldif_conn *)c;
    struct ldif_cursor *cur = cursor_new(lc);
    enum ids_err ret;

    *out = NULL;
    ret = file_settle(c->name, lc->path, lc->settle_ms, &lc->own, c->stop, err);
    if (ret == IDS_OK) {
        ret = index_pass(cur, err);
    }
    if (ret == IDS_ENOTFOUND) {
        log_warn("ldif-no-file", "connector=%s file=%s (read as empty)", c->name, lc->path);
        strbuf_addstr(&cur->wm, "ldif2:-");
        cur->done = true;
        *out = (struct connector_cursor *)cur;
        return IDS_OK;
    }
    if (ret != IDS_OK) {
        ldif_cursor_free((struct connector_cursor *)cur);
        return ret;
    }
    ret = file_reader_open(&cur->r, lc->path, err);
    if (ret == IDS_OK) {
        cur->open = true;
        cur->r.limit = cur->size;
        ret = file_reader_open(&cur->aux, lc->path, err);
        cur->aux_open = ret == IDS_OK;
    }
    if (ret != IDS_OK) {
        ldif_cursor_free((struct connector_cursor *)cur);
        return ret;
    }
    cur->first = true;
    *out = (struct connector_cursor *)cur;
    return IDS_OK;
}

/* Read the record at `off` through the aux reader. */
static enum ids_err read_at(struct ldif_cursor *cur, uint64_t off, struct ldif_record *rec,
                            struct ids_error *err)
{
    uint64_t line = 0;
    enum ldif_status st;

    file_reader_seek(&cur->aux, off);
    st = ldif_read_record(&cur->aux, &line, false, rec);
    if (st != LDIF_OK || rec->bad) {
        return ids_error_set(err, IDS_EIO, "%s: the record at offset %" PRIu64 " changed",
                             cur->lc->path, off);
    }
    return IDS_OK;
}

/* Apply the chained change records of the add at `off`; *gone when deleted. */
static enum ids_err apply_chain(struct ldif_cursor *cur, uint64_t off, struct entry *e, bool *gone,
                                struct ids_error *err)
{
    struct ldif_record rec;
    enum ids_err ret = IDS_OK;
    uint64_t v;
    char why[256];

    *gone = false;
    if (!u64map_get(&cur->head, off, &v)) {
        return IDS_OK;
    }
    ldif_record_init(&rec);
    while (v != 0 && !*gone) {
        enum rec_kind kind;
        size_t fi;
        bool del;
        struct change *ch;

        ret = read_at(cur, cur->links[v - 1].off, &rec, err);
        if (ret != IDS_OK) {
            break;
        }
        v = cur->links[v - 1].next;
        if (!rec_kind(&rec, &kind, &fi, why, sizeof(why))) {
            continue;
        }
        if (kind == K_DELETE) {
            *gone = true;
            break;
        }
        ch = rec_change(&rec, kind, fi, &del, why, sizeof(why));
        if (ch == NULL) {
            continue; /* reported when pass 2 reaches it */
        }
        if (kind == K_MODRDN) {
            apply_modrdn(e, ch->new_dn, del);
        } else {
            change_apply(ch, e);
        }
        change_free(ch);
    }
    ldif_record_release(&rec);
    return ret;
}

/* End of a read: "ldif2:" and the mark of what was read (fileio.h). */
static void put_watermark(struct ldif_cursor *cur)
{
    struct file_mark m;

    file_reader_mark(&cur->r, &m);
    strbuf_addstr(&cur->wm, "ldif2:");
    file_mark_format(&m, &cur->wm);
}

static enum ids_err report(struct ldif_cursor *cur, const struct ldif_record *rec, const char *why,
                           struct ids_error *err)
{
    return ids_error_set(err, IDS_EINPUT, "%s:%s%s", cur->lc->path,
                         strncmp(why, "line ", 5) == 0 ? why + 5 : "",
                         strncmp(why, "line ", 5) == 0 ? "" : why);
}

static enum ids_err full_next(struct ldif_cursor *cur, struct read_item *item,
                              struct ids_error *err)
{
    struct ldif_record *rec = &cur->rec;
    char why[512];

    for (;;) {
        enum ldif_status st = ldif_read_record(&cur->r, &cur->line, cur->first, rec);
        enum rec_kind kind;
        size_t fi;
        uint64_t v;
        struct entry *e;
        bool gone;
        enum ids_err ret;

        cur->first = false;
        if (st == LDIF_IOERR) {
            cur->done = true;
            return ids_error_set(err, IDS_EIO, "%s: %s", cur->lc->path, strerror(cur->r.err));
        }
        if (st == LDIF_EOF) {
            cur->done = true;
            if (cur->r.hasher.size != cur->size || file_hasher_value(&cur->r.hasher) != cur->hash) {
                return ids_error_set(err, IDS_EIO, "%s: the file changed while it was read",
                                     cur->lc->path);
            }
            put_watermark(cur);
            return IDS_DONE;
        }
        if (rec->bad) {
            return report(cur, rec, rec->errmsg, err);
        }
        if (!rec_kind(rec, &kind, &fi, why, sizeof(why)) || !check_no_url(rec, why, sizeof(why))) {
            return report(cur, rec, why, err);
        }
        if (u64map_get(&cur->bad, rec->off, &v)) {
            snprintf(why, sizeof(why), "line %" PRIu64 ": %s \"%s\"", rec->line,
                     v == BAD_ORPHAN ? "change of an entry not added earlier in the file:"
                                     : "entry added twice:",
                     rec->av[0].value);
            return report(cur, rec, why, err);
        }
        if (kind != K_ADD) {
            if (kind != K_DELETE) {
                struct change *ch = rec_change(rec, kind, fi, &gone, why, sizeof(why));

                if (ch == NULL) {
                    return report(cur, rec, why, err);
                }
                change_free(ch);
            }
            continue; /* folded into its entry */
        }
        e = rec_entry(rec, fi, why, sizeof(why));
        if (e == NULL) {
            return report(cur, rec, why, err);
        }
        ret = apply_chain(cur, rec->off, e, &gone, err);
        if (ret != IDS_OK || gone) {
            entry_free(e);
            if (ret != IDS_OK) {
                cur->done = true;
                return ret;
            }
            continue;
        }
        ret = finish_entry(cur->lc, e, why, sizeof(why));
        if (ret == IDS_ENOTFOUND) {
            entry_free(e);
            continue; /* of no configured object type */
        }
        if (ret != IDS_OK) {
            char msg[600];

            snprintf(msg, sizeof(msg), "line %" PRIu64 ": %s: %s", rec->line, e->dn ? e->dn : "",
                     why);
            entry_free(e);
            return report(cur, rec, msg, err);
        }
        /* anchor: dn is the normalised DN, whose duplicates the index pass
         * reports ("entry added twice"): no second map of a million keys */
        if (!cur->lc->anchor_dn) {
            uint64_t h = file_key_hash(e->anchor, strlen(e->anchor));

            if (u64map_get(&cur->anchors, h, &v)) {
                snprintf(why, sizeof(why),
                         "line %" PRIu64 ": %s: duplicate anchor \"%s\" (first at line %" PRIu64
                         ")",
                         rec->line, e->dn ? e->dn : "", e->anchor, v);
                entry_free(e);
                return report(cur, rec, why, err);
            }
            u64map_put(&cur->anchors, h, rec->line);
        }
        item->op = CHANGE_ADD;
        item->entry = e;
        return IDS_OK;
    }
}

/* ---- delta ----------------------------------------------------------- */

/* The anchor a change record addresses, from the adds of the delta or the
 * DN; false when it cannot be known without a full import. */
static bool delta_anchor(struct ldif_cursor *cur, const char *dn, struct strbuf *out)
{
    uint64_t v;

    if (u64map_get(&cur->delta_adds, dn_hash(dn), &v) && v != TOMBSTONE) {
        strbuf_addstr(out, cur->anchors_v.v[v - 1]);
        return true;
    }
    if (cur->lc->anchor_dn) {
        return ldapdn_normalize(dn, out, NULL) == IDS_OK;
    }
    return false;
}

/* Pre-scan of the appended records: anchors of the adds, and whether every
 * change record can be mapped to an anchor. */
static enum ids_err delta_prescan(struct ldif_cursor *cur, uint64_t from, uint64_t to,
                                  struct ids_error *err)
{
    struct file_reader r;
    struct ldif_record rec;
    uint64_t line = 0;
    enum ids_err ret;
    char why[256];
    struct strbuf a = STRBUF_INIT;

    ldif_record_init(&rec);
    ret = file_reader_open(&r, cur->lc->path, err);
    if (ret != IDS_OK) {
        return ret;
    }
    r.limit = to;
    file_reader_seek(&r, from);
    for (;;) {
        enum ldif_status st = ldif_read_record(&r, &line, from == 0, &rec);
        enum rec_kind kind;
        size_t fi;
        bool del;
        struct change *ch = NULL;
        uint64_t h;

        if (st == LDIF_IOERR) {
            ret = ids_error_set(err, IDS_EIO, "%s: %s", cur->lc->path, strerror(r.err));
            break;
        }
        if (st == LDIF_EOF) {
            break;
        }
        if (rec.bad || !rec_kind(&rec, &kind, &fi, why, sizeof(why))) {
            continue; /* reported while reading */
        }
        h = dn_hash(rec.av[0].value);
        strbuf_reset(&a);
        if (kind == K_ADD) {
            struct entry *e = rec_entry(&rec, fi, why, sizeof(why));

            if (e != NULL && finish_entry(cur->lc, e, why, sizeof(why)) == IDS_OK) {
                strvec_push(&cur->anchors_v, e->anchor);
                u64map_put(&cur->delta_adds, h, cur->anchors_v.nr);
            }
            entry_free(e);
            continue;
        }
        if (!delta_anchor(cur, rec.av[0].value, &a)) {
            ret = ids_error_set(err, IDS_EFULLREQUIRED,
                                "%s: appended change records address entries by DN, which "
                                "is not their anchor (set anchor: dn)",
                                cur->lc->path);
            break;
        }
        if (kind == K_DELETE) {
            u64map_put(&cur->delta_adds, h, TOMBSTONE);
            continue;
        }
        if (kind == K_MODRDN) {
            ch = rec_change(&rec, kind, fi, &del, why, sizeof(why));
            if (ch != NULL && cur->lc->anchor_dn) {
                ret = ids_error_set(err, IDS_EFULLREQUIRED, "%s: a modrdn changes a DN anchor (%s)",
                                    cur->lc->path, rec.av[0].value);
                change_free(ch);
                break;
            }
            if (ch != NULL) {
                uint64_t v = 0;

                u64map_get(&cur->delta_adds, h, &v);
                u64map_put(&cur->delta_adds, h, TOMBSTONE);
                u64map_put(&cur->delta_adds, dn_hash(ch->new_dn), v);
            }
            change_free(ch);
        }
    }
    strbuf_release(&a);
    ldif_record_release(&rec);
    file_reader_close(&r);
    return ret;
}

static enum ids_err ldif_read_changes(struct connector *c, const char *watermark,
                                      struct connector_cursor **out, struct ids_error *err)
{
    struct ldif_conn *lc = (struct ldif_conn *)c;
    struct ldif_cursor *cur = NULL;
    struct file_mark old;
    struct stat st;
    uint64_t old_size = 0, now_size;
    bool old_absent;
    bool same;
    const char *why = NULL;
    enum ids_err ret;
    char tail[2];

    *out = NULL;
    if (watermark == NULL || strncmp(watermark, "ldif2:", 6) != 0) {
        ret = ids_error_set(err, IDS_EFULLREQUIRED, "%s: %s", lc->path,
                            watermark == NULL ? "no watermark: never imported"
                                              : "the watermark was written by an older version");
        goto done;
    }
    old_absent = strcmp(watermark + 6, "-") == 0;
    if (!old_absent && !file_mark_parse(watermark + 6, strlen(watermark + 6), &old)) {
        ret = ids_error_set(err, IDS_EFULLREQUIRED, "%s: unreadable watermark", lc->path);
        goto done;
    }
    cur = cursor_new(lc);
    cur->delta = true;
    if (!old_absent && stat(lc->path, &st) == 0 && (uint64_t)st.st_dev == old.dev &&
        (uint64_t)st.st_ino == old.ino && (uint64_t)st.st_size == old.size) {
        ret = IDS_OK; /* as the last import left it (a target idsync wrote in an
                         earlier process): nothing is being written */
    } else {
        ret = file_settle(c->name, lc->path, lc->settle_ms, &lc->own, c->stop, err);
    }
    if (ret == IDS_OK) {
        ret = file_reader_open(&cur->r, lc->path, err);
    }
    if (ret == IDS_ENOTFOUND) {
        if (old_absent) {
            strbuf_addstr(&cur->wm, "ldif2:-");
            cur->done = true;
            ret = IDS_OK;
            goto done;
        }
        ret = ids_error_set(err, IDS_EFULLREQUIRED, "%s: file removed since the last import",
                            lc->path);
        goto done;
    }
    if (ret != IDS_OK) {
        goto done;
    }
    cur->open = true;
    /* the old part must be unchanged: the file is append-only (idsync's own
     * change log, or an export that only grows); identity, the first and
     * the last block read before are checked, and continued from there
     * without hashing the rest again */
    if (!old_absent) {
        ret = file_reader_resume(&cur->r, &old, &same, &why, err);
        if (ret != IDS_OK) {
            goto done;
        }
        if (!same) {
            ret = ids_error_set(err, IDS_EFULLREQUIRED,
                                "%s: file changed since the last import (%s)", lc->path, why);
            goto done;
        }
        old_size = old.size;
    }
    cur->r.limit = old_size;
    ret = file_reader_advance(&cur->r, old_size, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (cur->r.hasher.size != old_size) {
        ret = ids_error_set(err, IDS_EFULLREQUIRED, "%s: file changed since the last import",
                            lc->path);
        goto done;
    }
    if (old_size >= 2) {
        ret = fd_pread_all(cur->r.fd, tail, 2, old_size - 2, lc->path, err);
        if (ret != IDS_OK) {
            goto done;
        }
    }
    /* how far this read goes: what is there now */
    ret = file_reader_size(&cur->r, &now_size, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (now_size > old_size && old_size >= 2 && tail[1] != '\n') {
        ret = ids_error_set(err, IDS_EFULLREQUIRED,
                            "%s: the last record was extended (no line end before the "
                            "appended text)",
                            lc->path);
        goto done;
    }
    if (now_size > old_size && old_size >= 2 && tail[0] != '\n') {
        char c1 = 0;

        ret = fd_pread_all(cur->r.fd, &c1, 1, old_size, lc->path, err);
        if (ret != IDS_OK) {
            goto done;
        }
        if (c1 != '\n' && c1 != '\r' && c1 != '#') {
            ret =
                ids_error_set(err, IDS_EFULLREQUIRED, "%s: the last record was extended", lc->path);
            goto done;
        }
    }
    ret = delta_prescan(cur, old_size, now_size, err);
    if (ret != IDS_OK) {
        goto done;
    }
    cur->r.limit = now_size;
    cur->first = old_size == 0;
    ret = IDS_OK;
done:
    if (ret != IDS_OK) {
        ldif_cursor_free((struct connector_cursor *)cur);
        return ret;
    }
    *out = (struct connector_cursor *)cur;
    return IDS_OK;
}

static enum ids_err delta_next(struct ldif_cursor *cur, struct read_item *item,
                               struct ids_error *err)
{
    struct ldif_record *rec = &cur->rec;
    char why[512];
    struct strbuf a = STRBUF_INIT;
    enum ids_err ret;

    for (;;) {
        enum ldif_status st = ldif_read_record(&cur->r, &cur->line, cur->first, rec);
        enum rec_kind kind;
        size_t fi;
        bool del;
        struct change *ch;
        struct entry *e;

        cur->first = false;
        if (st == LDIF_IOERR) {
            cur->done = true;
            ret = ids_error_set(err, IDS_EIO, "%s: %s", cur->lc->path, strerror(cur->r.err));
            goto done;
        }
        if (st == LDIF_EOF) {
            cur->done = true;
            put_watermark(cur);
            ret = IDS_DONE;
            goto done;
        }
        if (rec->bad) {
            ret = report(cur, rec, rec->errmsg, err);
            goto done;
        }
        if (!rec_kind(rec, &kind, &fi, why, sizeof(why)) || !check_no_url(rec, why, sizeof(why))) {
            ret = report(cur, rec, why, err);
            goto done;
        }
        if (kind == K_ADD) {
            e = rec_entry(rec, fi, why, sizeof(why));
            if (e == NULL) {
                ret = report(cur, rec, why, err);
                goto done;
            }
            ret = finish_entry(cur->lc, e, why, sizeof(why));
            if (ret == IDS_ENOTFOUND) {
                entry_free(e);
                continue;
            }
            if (ret != IDS_OK) {
                char msg[600];

                snprintf(msg, sizeof(msg), "line %" PRIu64 ": %s: %s", rec->line,
                         e->dn ? e->dn : "", why);
                entry_free(e);
                ret = report(cur, rec, msg, err);
                goto done;
            }
            item->op = CHANGE_ADD;
            item->entry = e;
            ret = IDS_OK;
            goto done;
        }
        ch = rec_change(rec, kind, fi, &del, why, sizeof(why));
        if (ch == NULL) {
            ret = report(cur, rec, why, err);
            goto done;
        }
        strbuf_reset(&a);
        if (!delta_anchor(cur, ch->dn, &a)) {
            change_free(ch);
            snprintf(why, sizeof(why), "line %" PRIu64 ": no anchor known for \"%s\"", rec->line,
                     rec->av[0].value);
            ret = report(cur, rec, why, err);
            goto done;
        }
        ch->anchor = strbuf_detach(&a, NULL);
        if (kind == K_MODRDN) {
            uint64_t h = dn_hash(ch->dn);
            uint64_t v = 0;

            u64map_get(&cur->delta_adds, h, &v);
            u64map_put(&cur->delta_adds, dn_hash(ch->new_dn), v);
        } else if (kind == K_DELETE) {
            u64map_put(&cur->delta_adds, dn_hash(ch->dn), TOMBSTONE);
        }
        item->op = ch->op;
        item->change = ch;
        ret = IDS_OK;
        goto done;
    }
done:
    strbuf_release(&a);
    return ret;
}

static enum ids_err ldif_cursor_next(struct connector_cursor *c, struct read_item *item,
                                     struct ids_error *err)
{
    struct ldif_cursor *cur = (struct ldif_cursor *)c;

    memset(item, 0, sizeof(*item));
    if (cur->done) {
        return IDS_DONE;
    }
    if (cur->delta) {
        return delta_next(cur, item, err);
    }
    return full_next(cur, item, err);
}

static enum ids_err ldif_cursor_watermark(struct connector_cursor *c, struct strbuf *out,
                                          struct ids_error *err)
{
    struct ldif_cursor *cur = (struct ldif_cursor *)c;

    if (!cur->done || cur->wm.len == 0) {
        return ids_error_set(err, IDS_EINVAL, "ldif: watermark asked before the end of the read");
    }
    strbuf_addbuf(out, &cur->wm);
    return IDS_OK;
}

static enum ids_err ldif_check(struct connector *c, struct strbuf *report_out,
                               struct ids_error *err)
{
    struct ldif_conn *lc = (struct ldif_conn *)c;
    struct connector_cursor *cur = NULL;
    struct read_item item;
    struct ids_error rerr = IDS_ERROR_INIT;
    long *counts = xcalloc(lc->ntypes, sizeof(*counts));
    long bad = 0;
    struct stat st;
    enum ids_err ret;
    size_t i;

    strbuf_addf(report_out, "path: %s\n", lc->path);
    if (stat(lc->path, &st) == 0) {
        strbuf_addf(report_out, "size: %lld bytes\n", (long long)st.st_size);
    } else {
        strbuf_addstr(report_out, "size: (no file yet)\n");
    }
    ret = ldif_read_full(c, &cur, err);
    if (ret != IDS_OK) {
        goto done;
    }
    for (;;) {
        ret = ldif_cursor_next(cur, &item, &rerr);
        if (ret == IDS_DONE) {
            ret = IDS_OK;
            break;
        }
        if (ret == IDS_EINPUT) {
            if (bad++ == 0) {
                strbuf_addf(report_out, "first bad record: %s\n", rerr.msg);
            }
            continue;
        }
        if (ret != IDS_OK) {
            ids_error_set(err, ret, "%s", rerr.msg);
            goto done;
        }
        for (i = 0; i < lc->ntypes; i++) {
            if (strcmp(lc->types[i].ot->name, item.entry->type) == 0) {
                counts[i]++;
            }
        }
        read_item_release(&item);
    }
    for (i = 0; i < lc->ntypes; i++) {
        strbuf_addf(report_out, "objects: %ld %s\n", counts[i], lc->types[i].ot->name);
    }
    if (bad > 0) {
        strbuf_addf(report_out, "bad records: %ld\n", bad);
    }
done:
    ldif_cursor_free(cur);
    free(counts);
    return ret;
}

/* ---- writing --------------------------------------------------------- */

/* Append v in decimal (what "%zu" would print, without the call). */
static void add_dec(struct strbuf *sb, uint64_t v)
{
    char d[20];
    size_t n = sizeof(d);

    do {
        d[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    strbuf_add(sb, d + n, sizeof(d) - n);
}

/* Hash of a change as written (what makes a retry recognisable). The
 * bytes hashed are those of the markers already in files: op, DN and new
 * DN, then per modification op, name, NUL, number of values and
 * ":LEN:VALUE" per value (decimal numbers). */
static uint64_t change_hash(const struct change *ch)
{
    struct strbuf sb;
    uint64_t h;
    size_t i, j;

    strbuf_init(&sb, 256);
    add_dec(&sb, (uint64_t)ch->op);
    strbuf_addch(&sb, '\0');
    strbuf_addstr(&sb, ch->dn ? ch->dn : "");
    strbuf_addch(&sb, '\0');
    strbuf_addstr(&sb, ch->new_dn ? ch->new_dn : "");
    strbuf_addch(&sb, '\0');
    for (i = 0; i < ch->nmods; i++) {
        const struct mod *m = &ch->mods[i];

        add_dec(&sb, (uint64_t)m->op);
        strbuf_addstr(&sb, m->attr.name);
        strbuf_addch(&sb, '\0');
        add_dec(&sb, m->attr.nvals);
        for (j = 0; j < m->attr.nvals; j++) {
            strbuf_addch(&sb, ':');
            add_dec(&sb, m->attr.vals[j].len);
            strbuf_addch(&sb, ':');
            strbuf_add(&sb, m->attr.vals[j].data, m->attr.vals[j].len);
        }
    }
    h = hash64(sb.buf, sb.len, 0);
    strbuf_release(&sb);
    return h;
}

static uint64_t written_key(uint64_t tag, uint64_t hash)
{
    return hash64(&tag, sizeof(tag), hash);
}

/* Parse "# idsync: tag=T hash=H [records=N]". */
static bool parse_marker(const char *s, uint64_t *tag, uint64_t *hash, unsigned *nrec)
{
    const char *p;
    char *end;

    *nrec = 1;
    if (strncmp(s, "# idsync: tag=", 14) != 0) {
        return false;
    }
    errno = 0;
    *tag = strtoull(s + 14, &end, 10);
    if (errno != 0 || strncmp(end, " hash=", 6) != 0) {
        return false;
    }
    *hash = strtoull(end + 6, &end, 16);
    if (errno != 0) {
        return false;
    }
    p = strstr(end, "records=");
    if (p != NULL) {
        *nrec = (unsigned)strtoul(p + 8, NULL, 10);
    }
    return *nrec >= 1 && *nrec <= 2;
}

/* Learn which changes the file's tail already holds; cut off a group that
 * a crash left incomplete (it starts with our marker). */
static enum ids_err scan_tail(struct ldif_conn *lc, struct ids_error *err)
{
    struct stat st;
    char *buf = NULL;
    size_t len, i, start;
    uint64_t from;
    enum ids_err ret = IDS_OK;
    /* the group being checked */
    bool in_group = false;
    size_t group_off = 0;
    unsigned need = 0, got = 0;
    uint64_t tag = 0, hash = 0;
    bool in_record = false;

    if (fstat(lc->fd, &st) != 0) {
        return ids_error_set(err, IDS_EIO, "%s: %s", lc->path, strerror(errno));
    }
    if (st.st_size == 0) {
        return IDS_OK;
    }
    from = (uint64_t)st.st_size > TAIL_SCAN ? (uint64_t)st.st_size - TAIL_SCAN : 0;
    len = (size_t)((uint64_t)st.st_size - from);
    buf = xmalloc(len + 1);
    ret = fd_pread_all(lc->fd, buf, len, from, lc->path, err);
    if (ret != IDS_OK) {
        goto done;
    }
    buf[len] = '\0';
    i = 0;
    if (from > 0) {
        /* start at a blank line: a record boundary */
        const char *p = strstr(buf, "\n\n");

        i = p ? (size_t)(p - buf) + 2 : len;
    }
    while (i < len) {
        size_t e = i;
        bool blank;

        while (e < len && buf[e] != '\n') {
            e++;
        }
        start = i;
        blank = e == i || (e == i + 1 && buf[i] == '\r');
        if (!blank && buf[i] == '#' && strncmp(buf + i, "# idsync: tag=", 14) == 0 && !in_record) {
            char line[200];
            size_t n = e - i < sizeof(line) - 1 ? e - i : sizeof(line) - 1;
            unsigned nrec;

            memcpy(line, buf + i, n);
            line[n] = '\0';
            if (parse_marker(line, &tag, &hash, &nrec)) {
                in_group = true;
                group_off = start;
                need = nrec;
                got = 0;
            }
        } else if (blank) {
            if (in_record && in_group) {
                got++;
                if (got == need) {
                    u64set_add(&lc->written, written_key(tag, hash));
                    in_group = false;
                }
            }
            in_record = false;
        } else if (buf[i] != '#') {
            in_record = true;
        }
        i = e + 1;
    }
    if (in_group) {
        /* a group a crash cut short: remove it, it will be written again */
        log_warn("ldif-truncate", "file=%s offset=%" PRIu64 " (incomplete change from a crash)",
                 lc->path, from + group_off);
        if (ftruncate(lc->fd, (off_t)(from + group_off)) != 0) {
            ret = ids_error_set(err, IDS_EIO, "%s: truncate: %s", lc->path, strerror(errno));
            goto done;
        }
    } else if (len > 0 && buf[len - 1] != '\n') {
        ret = fd_write_all(lc->fd, "\n\n", 2, lc->path, err);
    } else if (len > 0 && in_record) {
        ret = fd_write_all(lc->fd, "\n", 1, lc->path, err);
    }
done:
    free(buf);
    return ret;
}

static enum ids_err ldif_export_begin(struct connector *c, struct ids_error *err)
{
    struct ldif_conn *lc = (struct ldif_conn *)c;
    struct stat st;
    enum ids_err ret;

    if (lc->fd >= 0) {
        close(lc->fd);
    }
    u64set_release(&lc->written);
    lc->fd = open(lc->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (lc->fd < 0) {
        return ids_error_set(err, IDS_EIO, "%s: %s", lc->path, strerror(errno));
    }
    ret = scan_tail(lc, err);
    if (ret != IDS_OK) {
        return ret;
    }
    if (fstat(lc->fd, &st) == 0 && st.st_size == 0) {
        ret = fd_write_all(lc->fd, "version: 1\n\n", 12, lc->path, err);
    }
    return ret;
}

static void write_values(struct strbuf *out, const struct attr *a)
{
    size_t i;

    for (i = 0; i < a->nvals; i++) {
        ldif_write_attr(out, a->name, a->vals[i].data, a->vals[i].len);
    }
}

/* Format the records of one change; *nrec = how many. */
static enum ids_err format_change(const struct change *ch, struct strbuf *out, unsigned *nrec,
                                  struct ids_error *err)
{
    struct strbuf rdn = STRBUF_INIT;
    struct strbuf oldp = STRBUF_INIT;
    struct strbuf newp = STRBUF_INIT;
    const char *dn = ch->dn;
    enum ids_err ret = IDS_OK;
    size_t i;

    *nrec = 0;
    if (ch->op == CHANGE_ADD) {
        ldif_write_attr(out, "dn", dn, strlen(dn));
        strbuf_addstr(out, "changetype: add\n");
        for (i = 0; i < ch->nmods; i++) {
            if (ch->mods[i].op != MOD_DELETE) {
                write_values(out, &ch->mods[i].attr);
            }
        }
        strbuf_addch(out, '\n');
        *nrec = 1;
        goto done;
    }
    if (ch->op == CHANGE_DELETE) {
        ldif_write_attr(out, "dn", dn, strlen(dn));
        strbuf_addstr(out, "changetype: delete\n\n");
        *nrec = 1;
        goto done;
    }
    if (ch->new_dn != NULL && !ldapdn_equal(ch->new_dn, dn)) {
        ret = ldapdn_rdn(ch->new_dn, &rdn, err);
        if (ret == IDS_OK) {
            enum ids_err r1 = ldapdn_parent(dn, &oldp, NULL);
            enum ids_err r2 = ldapdn_parent(ch->new_dn, &newp, NULL);

            ldif_write_attr(out, "dn", dn, strlen(dn));
            strbuf_addstr(out, "changetype: modrdn\n");
            ldif_write_attr(out, "newrdn", rdn.buf, rdn.len);
            strbuf_addstr(out, "deleteoldrdn: 1\n");
            if (r2 == IDS_OK && (r1 != IDS_OK || !ldapdn_equal(oldp.buf, newp.buf))) {
                ldif_write_attr(out, "newsuperior", newp.buf, newp.len);
            }
            strbuf_addch(out, '\n');
            (*nrec)++;
            dn = ch->new_dn;
        } else {
            ids_error_prefix(err, "new DN %s", ch->new_dn);
            ret = IDS_EREJECTED;
            goto done;
        }
    }
    if (ch->nmods > 0) {
        ldif_write_attr(out, "dn", dn, strlen(dn));
        strbuf_addstr(out, "changetype: modify\n");
        for (i = 0; i < ch->nmods; i++) {
            const struct mod *m = &ch->mods[i];

            strbuf_addf(out, "%s: %s\n", mod_op_name(m->op), m->attr.name);
            write_values(out, &m->attr);
            strbuf_addstr(out, "-\n");
        }
        strbuf_addch(out, '\n');
        (*nrec)++;
    }
done:
    strbuf_release(&rdn);
    strbuf_release(&oldp);
    strbuf_release(&newp);
    return ret;
}

static bool valid_attr_name(const char *s)
{
    size_t i;

    if (s == NULL || s[0] == '\0') {
        return false;
    }
    for (i = 0; s[i] != '\0'; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == ';' || c == '.' || c == '_')) {
            return false;
        }
    }
    return true;
}

/* The hash that recognises a change already written (a create sent again
 * after a crash): without its initial flows, whose random password is
 * drawn again for each send. */
static uint64_t hash_without_initial(const struct change *ch)
{
    struct change view = *ch;
    struct mod *mods = xcalloc(ch->nmods ? ch->nmods : 1, sizeof(*mods));
    uint64_t h;
    size_t i;

    view.nmods = 0;
    for (i = 0; i < ch->nmods; i++) {
        if (!(ch->mods[i].attr.flags & ATTR_INITIAL)) {
            mods[view.nmods++] = ch->mods[i];
        }
    }
    view.mods = mods;
    h = change_hash(&view);
    free(mods);
    return h;
}

static enum ids_err ldif_submit(struct connector *c, const struct change *ch, uint64_t tag,
                                struct ids_error *err)
{
    struct ldif_conn *lc = (struct ldif_conn *)c;
    struct strbuf out = STRBUF_INIT;
    struct strbuf body = STRBUF_INIT;
    struct strbuf norm = STRBUF_INIT;
    struct ldif_result *res;
    struct change *owned = NULL;
    uint64_t h;
    unsigned nrec = 0;
    enum ids_err ret = IDS_OK;
    size_t i;

    if (lc->fd < 0) {
        return ids_error_set(err, IDS_EINVAL, "ldif: submit outside export_begin/export_end");
    }
    if (ch->dn == NULL || ch->dn[0] == '\0' || ldapdn_normalize(ch->dn, &norm, NULL) != IDS_OK) {
        ret = ids_error_set(err, IDS_EREJECTED, "%s: %s needs a valid DN",
                            ch->dn ? ch->dn : (ch->anchor ? ch->anchor : "(no DN)"),
                            change_op_name(ch->op));
        goto done;
    }
    for (i = 0; i < ch->nmods; i++) {
        if (!valid_attr_name(ch->mods[i].attr.name)) {
            ret = ids_error_set(err, IDS_EREJECTED, "%s: invalid attribute name \"%s\"", ch->dn,
                                ch->mods[i].attr.name);
            goto done;
        }
    }
    if (ch->new_dn != NULL && ldapdn_normalize(ch->new_dn, &body, NULL) != IDS_OK) {
        ret = ids_error_set(err, IDS_EREJECTED, "%s: invalid new DN \"%s\"", ch->dn, ch->new_dn);
        goto done;
    }
    strbuf_reset(&body);
    h = hash_without_initial(ch);
    /* an LDIF for AD carries unicodePwd as AD takes it (ldapmodify sends
     * the bytes as they are) */
    ret = connector_ad_passwords(ch, &owned, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (owned != NULL) {
        ch = owned;
    }
    if (!u64set_has(&lc->written, written_key(tag, h))) {
        ret = format_change(ch, &body, &nrec, err);
        if (ret != IDS_OK) {
            goto done;
        }
        if (nrec > 0) {
            strbuf_addf(&out, "# idsync: tag=%" PRIu64 " hash=%016" PRIx64, tag, h);
            if (nrec > 1) {
                strbuf_addf(&out, " records=%u", nrec);
            }
            strbuf_addch(&out, '\n');
            strbuf_addbuf(&out, &body);
            ret = fd_write_all(lc->fd, out.buf, out.len, lc->path, err);
            if (ret != IDS_OK) {
                goto done;
            }
            u64set_add(&lc->written, written_key(tag, h));
        }
    }
    ALLOC_GROW(lc->res, lc->nres + 1, lc->resalloc);
    res = &lc->res[lc->nres++];
    memset(res, 0, sizeof(*res));
    res->r.tag = tag;
    res->r.code = IDS_OK;
    if (ch->op == CHANGE_ADD) {
        const char *attr = lc->anchor_dn ? NULL : (lc->anchor_attr ? lc->anchor_attr : "entryUUID");
        const char *val = NULL;

        for (i = 0; attr != NULL && i < ch->nmods; i++) {
            if (strcasecmp(ch->mods[i].attr.name, attr) == 0 && ch->mods[i].attr.nvals > 0) {
                val = ch->mods[i].attr.vals[0].data;
            }
        }
        res->r.anchor = xstrdup(val != NULL ? val : norm.buf);
        res->r.dn = xstrdup(ch->dn);
    } else if (ch->op == CHANGE_MODIFY && ch->new_dn != NULL) {
        res->r.dn = xstrdup(ch->new_dn);
        /* the anchor is the DN (anchor: dn, or no entryUUID to be the
         * anchor): it moves with the rename, or the next read would take
         * the entry for a new one and the old for deleted */
        if (lc->anchor_dn ||
            (lc->anchor_attr == NULL && ch->anchor != NULL && strcmp(ch->anchor, norm.buf) == 0)) {
            strbuf_reset(&norm);
            ldapdn_normalize(ch->new_dn, &norm, NULL);
            res->r.anchor = xstrdup(norm.buf);
        }
    }
done:
    change_free(owned);
    strbuf_release(&out);
    strbuf_release(&body);
    strbuf_release(&norm);
    return ret;
}

static enum ids_err ldif_poll(struct connector *c, bool block, struct export_result *res,
                              struct ids_error *err)
{
    struct ldif_conn *lc = (struct ldif_conn *)c;

    (void)block;
    (void)err;
    memset(res, 0, sizeof(*res));
    if (lc->rnext == lc->nres) {
        lc->rnext = 0;
        lc->nres = 0;
        return IDS_DONE;
    }
    *res = lc->res[lc->rnext++].r;
    return IDS_OK;
}

static enum ids_err ldif_export_end(struct connector *c, struct ids_error *err)
{
    struct ldif_conn *lc = (struct ldif_conn *)c;
    enum ids_err ret = IDS_OK;
    struct stat st;

    if (lc->fd < 0) {
        return IDS_OK;
    }
    if (fsync(lc->fd) != 0) {
        ret = ids_error_set(err, IDS_EIO, "%s: fsync: %s", lc->path, strerror(errno));
    } else if (fstat(lc->fd, &st) == 0) {
        file_stamp_of(&st, &lc->own);
    }
    close(lc->fd);
    lc->fd = -1;
    if (ret == IDS_OK) {
        ret = file_sync_dir(lc->path, err);
    }
    return ret;
}

const struct connector_ops ldif_connector_ops = {
    .name = "ldif",
    .caps = CONN_CAP_READ | CONN_CAP_WRITE | CONN_CAP_DELTA | CONN_CAP_REF_BY_DN | CONN_CAP_RENAME,
    .options = ldif_options,
    .object_options = ldif_object_options,
    .create = ldif_create,
    .open = ldif_open,
    .close = ldif_close,
    .check = ldif_check,
    .read_full = ldif_read_full,
    .read_changes = ldif_read_changes,
    .cursor_next = ldif_cursor_next,
    .cursor_watermark = ldif_cursor_watermark,
    .cursor_free = ldif_cursor_free,
    .export_begin = ldif_export_begin,
    .submit = ldif_submit,
    .poll = ldif_poll,
    .export_end = ldif_export_end,
};
