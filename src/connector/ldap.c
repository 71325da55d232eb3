/* ldap.c - the LDAP connector: Active Directory, OpenLDAP and other LDAPv3
 * directories as sources and targets, through OpenLDAP's libldap (no
 * hand-written protocol code).
 *
 * This file holds the instance, its options, connecting/binding/reconnecting,
 * the rootDSE facts, entry building (binary attributes, AD range retrieval)
 * and the readers (full import with paged results; delta import with AD
 * DirSync, AD uSNChanged polling, OpenLDAP RFC 4533 refreshOnly). The
 * pipelined export lives in ldap_export.c; both share ldap_int.h.
 * docs/internals/ldap.md describes the design.
 */
#include "connector/ldap_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <ldap_schema.h>

#include "config.h"
#include "util/codec.h"
#include "util/ldapesc.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/banned.h"

/* ---- options ----------------------------------------------------------- */

static const struct config_option ldap_options[] = {
    {"url", OPT_STRING, NULL, 0, 0, NULL, true,
     "Server address: ldap://HOST[:PORT] or ldaps://HOST[:PORT]."},
    {"bind_dn", OPT_STRING, NULL, 0, 0, NULL, false,
     "DN or userPrincipalName (user@domain) to bind as with a simple bind; anonymous when "
     "absent."},
    {"password", OPT_SECRET, NULL, 0, 0, NULL, false,
     "Bind password: `password_file: PATH` or `password: env:NAME`."},
    {"base", OPT_STRING, NULL, 0, 0, NULL, false,
     "Search base of every object type that sets none, and of delta reads; default: the "
     "server's default naming context."},
    {"delta", OPT_ENUM, "auto", 0, 0, "auto|dirsync|usn|syncrepl|none", false,
     "Delta import method: auto (dirsync for AD, syncrepl for OpenLDAP), dirsync, usn "
     "(uSNChanged polling), syncrepl (RFC 4533 refreshOnly) or none (every import is full)."},
    {"flavour", OPT_ENUM, "auto", 0, 0, "auto|ad|openldap|generic", false,
     "Directory flavour; auto detects it from the rootDSE."},
    {"anchor", OPT_STRING, NULL, 0, 0, NULL, false,
     "Anchor attribute; default objectGUID (AD) or entryUUID (OpenLDAP); required for generic "
     "directories."},
    {"ca_file", OPT_PATH, NULL, 0, 0, NULL, false,
     "PEM file of the certificate authorities that sign the server's certificate."},
    {"tls_verify", OPT_BOOL, "true", 0, 0, NULL, false,
     "Verify the server's TLS certificate and name; false only in so many words."},
    {"starttls", OPT_BOOL, "false", 0, 0, NULL, false,
     "Upgrade an ldap:// connection with StartTLS before binding."},
    {"timeout", OPT_DURATION, "30s", 0, 0, NULL, false,
     "Connect timeout and the longest wait for one server response."},
    {"reconnect_timeout", OPT_DURATION, "60s", 0, 0, NULL, false,
     "How long to keep reconnecting when the connection is lost mid-run (0: fail at once)."},
    {"page_size", OPT_INT, "500", 1, 100000, NULL, false,
     "Entries per page of paged searches (RFC 2696)."},
    {"window", OPT_INT, "64", 1, 4096, NULL, false,
     "Export: largest number of outstanding (pipelined) requests."},
    {"create_parents", OPT_BOOL, "false", 0, 0, NULL, false,
     "Export: create missing parent containers (ou=, cn=) of a new object."},
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

static const struct config_option ldap_object_options[] = {
    {"base", OPT_STRING, NULL, 0, 0, NULL, false,
     "Search base of this object type; default: the connector's base."},
    {"scope", OPT_ENUM, "sub", 0, 0, "sub|one|base", false, "Search scope below base."},
    {"object_classes", OPT_LIST, NULL, 0, 0, NULL, false,
     "objectClass values of a new object, used when the export does not set objectClass."},
    {"empty_member", OPT_STRING, NULL, 0, 0, NULL, false,
     "A DN that stands in for the members of a group that has none: `groupOfNames` requires a "
     "`member`, so an empty department could neither be created nor emptied (slapd: \"object "
     "class violation\"). It is written to the type's reference attributes when they would have "
     "no value, taken out when a member comes, and never read as a member. Example: "
     "`cn=empty-membership-placeholder`."},
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

/* ---- errors -------------------------------------------------------------- */

bool ldapc_rc_is_conn_error(int rc)
{
    return rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR || rc == LDAP_TIMEOUT ||
           rc == LDAP_UNAVAILABLE;
}

enum ids_err ldapc_fail(struct ldap_conn *c, int rc, struct ids_error *err, const char *fmt, ...)
{
    struct strbuf sb = STRBUF_INIT;
    char *diag = NULL;
    va_list ap;
    enum ids_err code = ldapc_rc_is_conn_error(rc) ? IDS_EUNREACHABLE : IDS_EREJECTED;

    va_start(ap, fmt);
    strbuf_vaddf(&sb, fmt, ap);
    va_end(ap);
    strbuf_addf(&sb, ": %s", ldap_err2string(rc));
    if (c->ld != NULL && ldap_get_option(c->ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag) == 0 &&
        diag != NULL && diag[0] != '\0') {
        strbuf_addf(&sb, " (%s)", diag);
    }
    if (code == IDS_EUNREACHABLE) {
        strbuf_addf(&sb, " [%s]", c->url);
    }
    ldap_memfree(diag);
    ids_error_set_detail(err, code, rc, "%s", sb.buf);
    strbuf_release(&sb);
    return code;
}

/* ---- create / close ---------------------------------------------------- */

static int scope_from_str(const char *s)
{
    if (s != NULL && strcmp(s, "one") == 0) {
        return LDAP_SCOPE_ONELEVEL;
    }
    if (s != NULL && strcmp(s, "base") == 0) {
        return LDAP_SCOPE_BASE;
    }
    return LDAP_SCOPE_SUBTREE;
}

static enum ids_err ldapc_create(const struct connector_config *cfg, struct connector **out,
                                 struct ids_error *err)
{
    struct ldap_conn *c = xcalloc(1, sizeof(*c));
    const char *s;
    const struct config_value *v;
    size_t i;

    c->url = xstrdup_or_null(config_get_str(&cfg->opts, "url"));
    if (c->url == NULL ||
        (strncasecmp(c->url, "ldap://", 7) != 0 && strncasecmp(c->url, "ldaps://", 8) != 0)) {
        free(c->url);
        free(c);
        return ids_error_set(err, IDS_ECONFIG, "url must be ldap://HOST[:PORT] or ldaps://...");
    }
    c->bind_dn = xstrdup_or_null(config_get_str(&cfg->opts, "bind_dn"));
    c->base_cfg = xstrdup_or_null(config_get_str(&cfg->opts, "base"));
    s = config_get_str(&cfg->opts, "delta");
    c->delta_cfg = s == NULL || strcmp(s, "auto") == 0 ? LDAP_DELTA_AUTO
                   : strcmp(s, "dirsync") == 0         ? LDAP_DELTA_DIRSYNC
                   : strcmp(s, "usn") == 0             ? LDAP_DELTA_USN
                   : strcmp(s, "syncrepl") == 0        ? LDAP_DELTA_SYNCREPL
                                                       : LDAP_DELTA_NONE;
    s = config_get_str(&cfg->opts, "flavour");
    c->flavour_cfg = s == NULL || strcmp(s, "auto") == 0 ? LDAP_FLAVOUR_AUTO
                     : strcmp(s, "ad") == 0              ? LDAP_FLAVOUR_AD
                     : strcmp(s, "openldap") == 0        ? LDAP_FLAVOUR_OPENLDAP
                                                         : LDAP_FLAVOUR_GENERIC;
    c->anchor_cfg = xstrdup_or_null(config_get_str(&cfg->opts, "anchor"));
    if (c->flavour_cfg == LDAP_FLAVOUR_GENERIC && c->anchor_cfg == NULL) {
        ldapc_conn_free(c);
        return ids_error_set(err, IDS_ECONFIG, "flavour: generic needs an `anchor` attribute");
    }
    c->ca_file = xstrdup_or_null(config_get_str(&cfg->opts, "ca_file"));
    c->tls_verify = config_get_bool(&cfg->opts, "tls_verify");
    c->starttls = config_get_bool(&cfg->opts, "starttls");
    if (c->starttls && strncasecmp(c->url, "ldaps://", 8) == 0) {
        ldapc_conn_free(c);
        return ids_error_set(err, IDS_ECONFIG, "starttls: true needs an ldap:// url, not ldaps://");
    }
    v = config_values_get(&cfg->opts, "timeout");
    c->timeout = v != NULL && v->num > 0 ? v->num : 30;
    v = config_values_get(&cfg->opts, "reconnect_timeout");
    c->reconnect_timeout = v != NULL ? v->num : 60;
    c->page_size = config_get_int(&cfg->opts, "page_size");
    if (c->page_size <= 0) {
        c->page_size = 500;
    }
    c->window = config_get_int(&cfg->opts, "window");
    if (c->window <= 0) {
        c->window = 64;
    }
    c->create_parents = config_get_bool(&cfg->opts, "create_parents");

    c->ntypes = cfg->nobjects;
    c->types = xcalloc(cfg->nobjects ? cfg->nobjects : 1, sizeof(*c->types));
    for (i = 0; i < cfg->nobjects; i++) {
        struct ldap_otype *t = &c->types[i];
        const struct object_type_config *ot = &cfg->objects[i];

        t->cfg = ot;
        t->name = ot->name;
        t->base_cfg = xstrdup_or_null(config_get_str(&ot->opts, "base"));
        t->scope = scope_from_str(config_get_str(&ot->opts, "scope"));
        t->filter =
            xstrdup(ot->filter != NULL && ot->filter[0] != '\0' ? ot->filter : "(objectClass=*)");
        if (t->filter[0] != '(') {
            /* accept "objectClass=person" as users often write it */
            char *f = xmalloc(strlen(t->filter) + 3);

            snprintf(f, strlen(t->filter) + 3, "(%s)", t->filter);
            free(t->filter);
            t->filter = f;
        }
        t->empty_member = xstrdup_or_null(config_get_str(&ot->opts, "empty_member"));
        if (t->empty_member != NULL) {
            struct ids_error derr = IDS_ERROR_INIT;
            struct strbuf norm = STRBUF_INIT;

            if (ldapdn_normalize(t->empty_member, &norm, &derr) != IDS_OK || ot->nrefs == 0) {
                /* t is freed with c: the message from the configuration */
                const char *why = ot->nrefs == 0 ? "the type has no references" : "not a DN";

                strbuf_release(&norm);
                ldapc_conn_free(c);
                return ids_error_set(err, IDS_ECONFIG,
                                     "objects.%s.empty_member: %s (expected the DN that stands "
                                     "in for the members of a group with references:)",
                                     ot->name, why);
            }
            strbuf_release(&norm);
            t->empty_val.data = t->empty_member;
            t->empty_val.len = strlen(t->empty_member);
        }
        v = config_values_get(&ot->opts, "object_classes");
        if (v != NULL) {
            size_t k;

            for (k = 0; k < v->list.nr; k++) {
                strvec_push(&t->object_classes, v->list.v[k]);
            }
            if (v->list.nr == 0 && v->str != NULL) {
                strvec_split(&t->object_classes, v->str, ',', true);
            }
        }
    }
    *out = &c->conn;
    return IDS_OK;
}

static void otype_release(struct ldap_otype *t)
{
    free(t->base_cfg);
    free(t->base);
    free(t->filter);
    strvec_clear(&t->attrs);
    strvec_clear(&t->dn_attrs);
    free(t->empty_member);
    strvec_clear(&t->object_classes);
}

void ldapc_conn_free(struct ldap_conn *c)
{
    size_t i;

    if (c == NULL) {
        return;
    }
    ldapc_export_release(c);
    if (c->ld != NULL) {
        ldap_unbind_ext_s(c->ld, NULL, NULL);
    }
    for (i = 0; i < c->ntypes; i++) {
        otype_release(&c->types[i]);
    }
    free(c->types);
    free(c->url);
    free(c->bind_dn);
    free(c->base_cfg);
    free(c->base);
    free(c->anchor_cfg);
    free(c->anchor_attr);
    free(c->ca_file);
    free(c->vendor);
    free(c->default_nc);
    strvec_clear(&c->naming_contexts);
    if (c->password.alloc) {
        memset(c->password.buf, 0, c->password.len);
    }
    strbuf_release(&c->password);
    free(c);
}

static void ldapc_close(struct connector *conn)
{
    ldapc_conn_free((struct ldap_conn *)conn);
}

/* ---- connecting -------------------------------------------------------- */

/* The rootDSE: flavour, naming contexts, controls. */
static enum ids_err read_root_dse(struct ldap_conn *c, struct ids_error *err)
{
    static char *attrs[] = {"namingContexts",     "defaultNamingContext",
                            "supportedControl",   "supportedCapabilities",
                            "vendorName",         "vendorVersion",
                            "objectClass",        "structuralObjectClass",
                            "supportedExtension", NULL};
    struct timeval tv = {c->timeout, 0};
    LDAPMessage *res = NULL;
    LDAPMessage *e;
    struct berval **vals = NULL;
    enum ids_err ret = IDS_OK;
    bool is_openldap = false;
    bool is_ad = false;
    size_t i;
    int rc;

    rc = ldap_search_ext_s(c->ld, "", LDAP_SCOPE_BASE, "(objectClass=*)", attrs, 0, NULL, NULL, &tv,
                           0, &res);
    if (rc != LDAP_SUCCESS) {
        ret = ldapc_fail(c, rc, err, "reading the rootDSE");
        goto done;
    }
    e = ldap_first_entry(c->ld, res);
    c->has_paged = c->has_sync = c->has_dirsync = c->has_postread = false;
    c->has_permissive = c->has_show_deleted = false;
    strvec_clear(&c->naming_contexts);
    free(c->vendor);
    c->vendor = NULL;
    free(c->default_nc);
    c->default_nc = NULL;
    if (e == NULL) {
        goto flavour;
    }
    vals = ldap_get_values_len(c->ld, e, "supportedControl");
    for (i = 0; vals != NULL && vals[i] != NULL; i++) {
        const char *oid = vals[i]->bv_val;

        if (strcmp(oid, LDAP_CONTROL_PAGEDRESULTS) == 0) {
            c->has_paged = true;
        } else if (strcmp(oid, LDAP_CONTROL_SYNC) == 0) {
            c->has_sync = true;
        } else if (strcmp(oid, LDAP_CONTROL_X_DIRSYNC) == 0) {
            c->has_dirsync = true;
        } else if (strcmp(oid, LDAP_CONTROL_POST_READ) == 0) {
            c->has_postread = true;
        } else if (strcmp(oid, LDAP_CONTROL_X_PERMISSIVE_MODIFY) == 0) {
            c->has_permissive = true;
        } else if (strcmp(oid, LDAP_CONTROL_X_SHOW_DELETED) == 0) {
            c->has_show_deleted = true;
        }
    }
    ldap_value_free_len(vals);
    vals = ldap_get_values_len(c->ld, e, "supportedCapabilities");
    for (i = 0; vals != NULL && vals[i] != NULL; i++) {
        if (strcmp(vals[i]->bv_val, "1.2.840.113556.1.4.800") == 0) {
            is_ad = true;
        }
    }
    ldap_value_free_len(vals);
    vals = ldap_get_values_len(c->ld, e, "objectClass");
    for (i = 0; vals != NULL && vals[i] != NULL; i++) {
        if (strcasecmp(vals[i]->bv_val, "OpenLDAProotDSE") == 0) {
            is_openldap = true;
        }
    }
    ldap_value_free_len(vals);
    vals = ldap_get_values_len(c->ld, e, "structuralObjectClass");
    for (i = 0; vals != NULL && vals[i] != NULL; i++) {
        if (strcasecmp(vals[i]->bv_val, "OpenLDAProotDSE") == 0) {
            is_openldap = true;
        }
    }
    ldap_value_free_len(vals);
    vals = ldap_get_values_len(c->ld, e, "namingContexts");
    for (i = 0; vals != NULL && vals[i] != NULL; i++) {
        strvec_push(&c->naming_contexts, vals[i]->bv_val);
    }
    ldap_value_free_len(vals);
    vals = ldap_get_values_len(c->ld, e, "defaultNamingContext");
    if (vals != NULL && vals[0] != NULL) {
        c->default_nc = xstrdup(vals[0]->bv_val);
    }
    ldap_value_free_len(vals);
    vals = ldap_get_values_len(c->ld, e, "vendorName");
    if (vals != NULL && vals[0] != NULL) {
        c->vendor = xstrdup(vals[0]->bv_val);
    }
    ldap_value_free_len(vals);
    vals = NULL;

flavour:
    c->flavour_detected = is_ad         ? LDAP_FLAVOUR_AD
                          : is_openldap ? LDAP_FLAVOUR_OPENLDAP
                                        : LDAP_FLAVOUR_GENERIC;
    if (c->vendor == NULL && is_openldap) {
        c->vendor = xstrdup("OpenLDAP");
    }
    c->flavour = c->flavour_cfg != LDAP_FLAVOUR_AUTO ? c->flavour_cfg : c->flavour_detected;
    if (c->flavour_detected == LDAP_FLAVOUR_OPENLDAP) {
        /* slapd implements permissive modify without announcing it */
        c->has_permissive = true;
    }

done:
    ldap_value_free_len(vals);
    ldap_msgfree(res);
    return ret;
}

const char *ldapc_flavour_name(enum ldap_flavour f)
{
    switch (f) {
    case LDAP_FLAVOUR_AD:
        return "ad";
    case LDAP_FLAVOUR_OPENLDAP:
        return "openldap";
    case LDAP_FLAVOUR_GENERIC:
        return "generic";
    default:
        return "auto";
    }
}

const char *ldapc_delta_name(enum ldap_delta d)
{
    switch (d) {
    case LDAP_DELTA_DIRSYNC:
        return "dirsync";
    case LDAP_DELTA_USN:
        return "usn";
    case LDAP_DELTA_SYNCREPL:
        return "syncrepl";
    case LDAP_DELTA_NONE:
        return "none";
    default:
        return "auto";
    }
}

/* Everything that depends on the rootDSE: anchor, bases, attribute lists,
 * delta method. Called after the first successful bind. */
static enum ids_err resolve_settings(struct ldap_conn *c, struct ids_error *err)
{
    size_t i;
    size_t k;

    free(c->anchor_attr);
    if (c->anchor_cfg != NULL) {
        c->anchor_attr = xstrdup(c->anchor_cfg);
    } else if (c->flavour == LDAP_FLAVOUR_AD) {
        c->anchor_attr = xstrdup("objectGUID");
    } else if (c->flavour == LDAP_FLAVOUR_OPENLDAP) {
        c->anchor_attr = xstrdup("entryUUID");
    } else {
        c->anchor_attr = NULL;
        return ids_error_set(err, IDS_ECONFIG,
                             "the server at %s looks like a generic directory (no AD or OpenLDAP "
                             "rootDSE): set `anchor` (or `flavour`)",
                             c->url);
    }
    c->anchor_is_guid = strcasecmp(c->anchor_attr, "objectGUID") == 0;
    free(c->base);
    c->base = xstrdup_or_null(c->base_cfg != NULL     ? c->base_cfg
                              : c->default_nc != NULL ? c->default_nc
                              : c->naming_contexts.nr ? c->naming_contexts.v[0]
                                                      : NULL);
    if (c->base == NULL) {
        return ids_error_set(err, IDS_ECONFIG,
                             "no `base` configured and the server announces no naming context");
    }
    for (i = 0; i < c->ntypes; i++) {
        struct ldap_otype *t = &c->types[i];
        const struct strvec *want = &t->cfg->attributes;

        free(t->base);
        t->base = xstrdup(t->base_cfg != NULL ? t->base_cfg : c->base);
        strvec_clear(&t->attrs);
        if (want->nr == 0) {
            strvec_push(&t->attrs, "*");
        }
        for (k = 0; k < want->nr; k++) {
            if (strcasecmp(want->v[k], "dn") != 0) {
                strvec_push(&t->attrs, want->v[k]);
            }
        }
        if (strvec_find(&t->attrs, c->anchor_attr, true) < 0) {
            strvec_push(&t->attrs, c->anchor_attr);
        }
    }
    c->delta = c->delta_cfg;
    if (c->delta == LDAP_DELTA_AUTO) {
        c->delta = c->flavour == LDAP_FLAVOUR_AD
                       ? (c->has_dirsync ? LDAP_DELTA_DIRSYNC : LDAP_DELTA_USN)
                   : c->flavour == LDAP_FLAVOUR_OPENLDAP && c->has_sync ? LDAP_DELTA_SYNCREPL
                                                                        : LDAP_DELTA_NONE;
    }
    return IDS_OK;
}

/* libldap reads a TCP connection a message at a time: a read() for the
 * tag and length, another for the rest, and a poll() before each message;
 * a full read of a large directory made these a fifth of idsync's time.
 * liblber's read-ahead layer, put right above the socket (below TLS), reads
 * in large blocks and tells libldap when a message is already buffered. */
static void read_ahead(struct ldap_conn *c)
{
    Sockbuf *sb = NULL;
    int size = 256 * 1024;

    if (ldap_get_option(c->ld, LDAP_OPT_SOCKBUF, &sb) == LDAP_OPT_SUCCESS && sb != NULL &&
        !ber_sockbuf_ctrl(sb, LBER_SB_OPT_HAS_IO, &ber_sockbuf_io_readahead)) {
        ber_sockbuf_add_io(sb, &ber_sockbuf_io_readahead, LBER_SBIOD_LEVEL_PROVIDER, &size);
    }
}

/* Open one connection and bind; no retries. */
static enum ids_err connect_once(struct ldap_conn *c, struct ids_error *err)
{
    struct timeval tv = {c->timeout, 0};
    int version = LDAP_VERSION3;
    int reqcert = c->tls_verify ? LDAP_OPT_X_TLS_DEMAND : LDAP_OPT_X_TLS_NEVER;
    int newctx = 0;
    struct berval cred;
    enum ids_err ret = IDS_OK;
    int rc;

    if (c->ld != NULL) {
        ldap_unbind_ext_s(c->ld, NULL, NULL);
        c->ld = NULL;
    }
    rc = ldap_initialize(&c->ld, c->url);
    if (rc != LDAP_SUCCESS) {
        return ids_error_set_detail(err, IDS_ECONFIG, rc, "bad url %s: %s", c->url,
                                    ldap_err2string(rc));
    }
    ldap_set_option(c->ld, LDAP_OPT_PROTOCOL_VERSION, &version);
    ldap_set_option(c->ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
    ldap_set_option(c->ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
    ldap_set_option(c->ld, LDAP_OPT_TIMEOUT, &tv);
    ldap_set_option(c->ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &reqcert);
    if (c->ca_file != NULL) {
        ldap_set_option(c->ld, LDAP_OPT_X_TLS_CACERTFILE, c->ca_file);
    }
    rc = ldap_set_option(c->ld, LDAP_OPT_X_TLS_NEWCTX, &newctx);
    if (rc != LDAP_OPT_SUCCESS) {
        ret = ldapc_fail(c, rc, err, "setting up TLS (ca_file %s)",
                         c->ca_file ? c->ca_file : "system default");
        ret = IDS_ECONFIG;
        err->code = IDS_ECONFIG;
        goto done;
    }
    if (c->starttls) {
        rc = ldap_start_tls_s(c->ld, NULL, NULL);
        if (rc != LDAP_SUCCESS) {
            ret = ldapc_fail(c, rc, err, "StartTLS with %s", c->url);
            ret = IDS_EUNREACHABLE;
            err->code = ret;
            goto done;
        }
    }
    cred.bv_val = c->password.buf;
    cred.bv_len = c->password.len;
    rc = ldap_sasl_bind_s(c->ld, c->bind_dn != NULL ? c->bind_dn : "", LDAP_SASL_SIMPLE, &cred,
                          NULL, NULL, NULL);
    if (rc != LDAP_SUCCESS) {
        if (ldapc_rc_is_conn_error(rc)) {
            ret = ldapc_fail(c, rc, err, "connecting to %s", c->url);
        } else {
            ret = ldapc_fail(c, rc, err, "bind as %s to %s refused",
                             c->bind_dn != NULL ? c->bind_dn : "(anonymous)", c->url);
        }
        goto done;
    }
    read_ahead(c);
    ret = read_root_dse(c, err);

done:
    if (ret != IDS_OK && c->ld != NULL) {
        ldap_unbind_ext_s(c->ld, NULL, NULL);
        c->ld = NULL;
    }
    return ret;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        continue;
    }
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum ids_err ldapc_reconnect(struct ldap_conn *c, struct ids_error *err)
{
    double deadline = now_s() + (double)c->reconnect_timeout;
    long backoff = 100;
    enum ids_err ret;

    log_warn("ldap-reconnect", "connector=%s url=%s reason=%s", c->conn.name, c->url,
             "connection lost");
    for (;;) {
        ret = connect_once(c, err);
        if (ret != IDS_EUNREACHABLE || now_s() >= deadline) {
            break;
        }
        sleep_ms(backoff);
        backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
    }
    if (ret == IDS_OK) {
        c->reconnects++;
        log_info("ldap-reconnected", "connector=%s url=%s", c->conn.name, c->url);
    }
    return ret;
}

static enum ids_err ldapc_open(struct connector *conn, struct ids_error *err)
{
    struct ldap_conn *c = (struct ldap_conn *)conn;
    enum ids_err ret;

    strbuf_reset(&c->password);
    if (c->bind_dn != NULL) {
        ret = config_secret(&conn->cfg->opts, "password", &c->password, err);
        if (ret == IDS_ENOTFOUND) {
            return ids_error_set(err, IDS_ECONFIG,
                                 "bind_dn is set but no password (password_file: or "
                                 "password: env:NAME)");
        }
        if (ret != IDS_OK) {
            return ret;
        }
    }
    ret = connect_once(c, err);
    if (ret != IDS_OK) {
        return ret;
    }
    return resolve_settings(c, err);
}

/* ---- entries ----------------------------------------------------------- */

/* Add the values of attribute `name` to e (objectSid as its string form). */
static void add_bervals(struct entry *e, const char *name, const struct berval *vals, size_t n)
{
    struct strbuf sb = STRBUF_INIT;
    struct attr *a = entry_attr_add(e, name);
    bool sid = strcasecmp(name, "objectSid") == 0;
    size_t i;

    for (i = 0; i < n; i++) {
        if (sid && sid_to_string(&sb, vals[i].bv_val, vals[i].bv_len) == IDS_OK) {
            attr_add_value(a, sb.buf, sb.len);
            strbuf_reset(&sb);
            continue;
        }
        attr_add_value(a, vals[i].bv_val, vals[i].bv_len);
    }
    strbuf_release(&sb);
}

/* The next attribute of an entry read with ldap_get_dn_ber(): its name
 * into `name`, its values (in place: ber_memfree(*vals) after) and their
 * number. False after the last one. One pass over the message, where
 * ldap_get_values_len() searches it from the start for each attribute. */
static bool next_attr(struct ldap_conn *c, LDAPMessage *m, BerElement *ber, struct strbuf *name,
                      struct berval **vals, size_t *n)
{
    struct berval bname;

    *vals = NULL;
    *n = 0;
    if (ldap_get_attribute_ber(c->ld, m, ber, &bname, vals) != LDAP_SUCCESS ||
        bname.bv_val == NULL) {
        ber_memfree(*vals);
        *vals = NULL;
        return false;
    }
    strbuf_reset(name);
    strbuf_add(name, bname.bv_val, bname.bv_len);
    while (*vals != NULL && (*vals)[*n].bv_val != NULL) {
        (*n)++;
    }
    return true;
}

/* AD range retrieval: fetch `base;range=LO-*` until the server says `*`. */
static enum ids_err fetch_range(struct ldap_conn *c, struct entry *e, const char *dn,
                                const char *base, long next, struct ids_error *err)
{
    struct strbuf want = STRBUF_INIT;
    struct strbuf got = STRBUF_INIT;
    struct strbuf name = STRBUF_INIT;
    struct timeval tv = {c->timeout, 0};
    LDAPMessage *res = NULL;
    enum ids_err ret = IDS_OK;
    long lo;
    long hi;
    int rc;

    for (;;) {
        char *attrs[2];
        LDAPMessage *m;
        BerElement *ber = NULL;
        struct berval bdn;
        struct berval *vals = NULL;
        size_t n;
        bool found = false;

        strbuf_reset(&want);
        strbuf_addf(&want, "%s;range=%ld-*", base, next);
        attrs[0] = want.buf;
        attrs[1] = NULL;
        ldap_msgfree(res);
        res = NULL;
        rc = ldap_search_ext_s(c->ld, dn, LDAP_SCOPE_BASE, "(objectClass=*)", attrs, 0, NULL, NULL,
                               &tv, 0, &res);
        if (rc != LDAP_SUCCESS) {
            ret = ldapc_fail(c, rc, err, "%s: range retrieval of %s", dn, base);
            goto done;
        }
        m = ldap_first_entry(c->ld, res);
        if (m == NULL) {
            break;
        }
        if (ldap_get_dn_ber(c->ld, m, &ber, &bdn) != LDAP_SUCCESS) {
            break;
        }
        while (next_attr(c, m, ber, &name, &vals, &n)) {
            strbuf_reset(&got);
            if (ldap_range_parse(name.buf, &got, &lo, &hi) && strcasecmp(got.buf, base) == 0) {
                add_bervals(e, base, vals, n);
                found = true;
                next = hi < 0 ? -1 : hi + 1;
            }
            ber_memfree(vals);
        }
        ber_free(ber, 0);
        if (!found || next < 0) {
            break;
        }
    }

done:
    ldap_msgfree(res);
    strbuf_release(&want);
    strbuf_release(&got);
    strbuf_release(&name);
    return ret;
}

enum ids_err ldapc_anchor_string(struct ldap_conn *c, const struct berval *v, struct strbuf *out)
{
    if (c->anchor_is_guid) {
        return guid_to_string(out, v->bv_val, v->bv_len);
    }
    if (!value_is_text(v->bv_val, v->bv_len)) {
        base64_encode(out, v->bv_val, v->bv_len);
        return IDS_OK;
    }
    strbuf_add(out, v->bv_val, v->bv_len);
    return IDS_OK;
}

enum ids_err ldapc_build_entry(struct ldap_conn *c, const struct ldap_otype *t, LDAPMessage *m,
                               struct entry **out, struct ids_error *err)
{
    struct strbuf anchor = STRBUF_INIT;
    struct strbuf rbase = STRBUF_INIT;
    struct strbuf name = STRBUF_INIT;
    struct entry *e = NULL;
    BerElement *ber = NULL;
    struct berval bdn = {0, NULL};
    struct berval *vals = NULL;
    size_t n;
    char *dn = NULL;
    enum ids_err ret = IDS_OK;
    size_t i;

    *out = NULL;
    if (ldap_get_dn_ber(c->ld, m, &ber, &bdn) != LDAP_SUCCESS || bdn.bv_val == NULL) {
        ret = ids_error_set(err, IDS_EINPUT, "an entry without a DN");
        goto done;
    }
    dn = xmemdup(bdn.bv_val, bdn.bv_len);
    e = entry_new(t != NULL ? t->name : NULL, NULL, dn);
    while (next_attr(c, m, ber, &name, &vals, &n)) {
        const char *desc = name.buf;
        long lo;
        long hi;

        strbuf_reset(&rbase);
        if (ldap_range_parse(desc, &rbase, &lo, &hi)) {
            add_bervals(e, rbase.buf, vals, n);
            if (hi >= 0 && ret == IDS_OK) {
                ret = fetch_range(c, e, dn, rbase.buf, hi + 1, err);
            }
        } else if (n > 0 && strcasecmp(desc, c->anchor_attr) == 0) {
            strbuf_reset(&anchor);
            if (ldapc_anchor_string(c, &vals[0], &anchor) != IDS_OK) {
                ret = ids_error_set(err, IDS_EINPUT, "%s: %s is not a 16-byte GUID", dn, desc);
            }
            add_bervals(e, desc, vals, n);
        } else {
            add_bervals(e, desc, vals, n);
        }
        ber_memfree(vals);
    }
    if (ret != IDS_OK) {
        goto done;
    }
    if (anchor.len == 0) {
        ret =
            ids_error_set(err, IDS_EINPUT, "%s: no %s (the anchor attribute)", dn, c->anchor_attr);
        goto done;
    }
    entry_set_anchor(e, anchor.buf);
    if (t != NULL) {
        for (i = 0; i < t->cfg->nrefs; i++) {
            struct attr *a = entry_attr(e, t->cfg->refs[i].attr);

            if (a != NULL) {
                a->flags |= ATTR_REF;
            }
        }
        for (i = 0; i < t->dn_attrs.nr; i++) {
            struct attr *a = entry_attr(e, t->dn_attrs.v[i]);

            if (a != NULL) {
                a->flags |= ATTR_DN;
            }
        }
        for (i = 0; t->empty_member != NULL && i < t->cfg->nrefs; i++) {
            struct attr *a = entry_attr(e, t->cfg->refs[i].attr);
            size_t k;
            size_t j = 0;

            for (k = 0; a != NULL && k < a->nvals; k++) {
                if (ldapdn_equal(a->vals[k].data, t->empty_member)) {
                    free(a->vals[k].data); /* the stand-in is no member */
                } else {
                    a->vals[j++] = a->vals[k];
                }
            }
            if (a != NULL) {
                a->nvals = j;
            }
        }
    }
    *out = e;
    e = NULL;

done:
    if (ret == IDS_EUNREACHABLE) {
        ids_error_prefix(err, "reading %s", dn ? dn : "?");
    }
    ber_free(ber, 0);
    free(dn);
    entry_free(e);
    strbuf_release(&anchor);
    strbuf_release(&rbase);
    strbuf_release(&name);
    return ret;
}

/* A filter that matches no entry, used to obtain a fresh cookie cheaply. */
#define MATCH_NOTHING "(&(objectClass=idsyncNoSuchClass)(!(objectClass=*)))"

/* ---- cursors ----------------------------------------------------------- */

enum cursor_kind { CUR_FULL, CUR_SYNCREPL, CUR_DIRSYNC, CUR_USN };

struct connector_cursor {
    struct ldap_conn *c;
    enum cursor_kind kind;
    size_t type_index;       /* CUR_FULL: the object type being read */
    int msgid;               /* the running search; -1 when none */
    bool started;            /* a search was sent for the current step */
    bool finished;           /* IDS_DONE reached */
    struct strbuf page;      /* paged-results cookie of the next page */
    struct strbuf cookie;    /* DirSync / syncrepl cookie (bytes) of the running step */
    struct strbuf newcookie; /* DirSync / syncrepl cookie received so far */
    struct strbuf wm;        /* watermark to hand out after IDS_DONE */
    struct strvec deletes;   /* syncrepl: entryUUIDs of deleted entries still to yield */
    size_t ndel_done;
    bool dirsync_more;        /* DirSync: the server has more for this cookie */
    long long usn_from;       /* CUR_USN: changes with uSNChanged >= usn_from */
    bool usn_deleted_pass;    /* CUR_USN: the show-deleted pass is running */
    unsigned long items;      /* yielded so far */
    struct strvec sync_dns;   /* syncrepl: DNs of added/changed entries, read ahead */
    struct strvec sync_uuids; /* ... and their entryUUIDs */
    size_t sync_pos;
};

static void cursor_abandon(struct connector_cursor *cur)
{
    if (cur->msgid >= 0 && cur->c->ld != NULL) {
        ldap_abandon_ext(cur->c->ld, cur->msgid, NULL, NULL);
    }
    cur->msgid = -1;
}

static void ldapc_cursor_free(struct connector_cursor *cur)
{
    if (cur == NULL) {
        return;
    }
    cursor_abandon(cur);
    strbuf_release(&cur->page);
    strbuf_release(&cur->cookie);
    strbuf_release(&cur->newcookie);
    strbuf_release(&cur->wm);
    strvec_clear(&cur->deletes);
    strvec_clear(&cur->sync_dns);
    strvec_clear(&cur->sync_uuids);
    free(cur);
}

static struct connector_cursor *cursor_new(struct ldap_conn *c, enum cursor_kind kind)
{
    struct connector_cursor *cur = xcalloc(1, sizeof(*cur));

    cur->c = c;
    cur->kind = kind;
    cur->msgid = -1;
    strbuf_init(&cur->page, 0);
    strbuf_init(&cur->cookie, 0);
    strbuf_init(&cur->newcookie, 0);
    strbuf_init(&cur->wm, 0);
    strvec_init(&cur->deletes);
    strvec_init(&cur->sync_dns);
    strvec_init(&cur->sync_uuids);
    return cur;
}

/* A syncrepl request control (RFC 4533), refreshOnly, with cookie. */
static enum ids_err sync_control(struct ldap_conn *c, const struct strbuf *cookie,
                                 LDAPControl *ctrl, struct ids_error *err)
{
    BerElement *ber = ber_alloc_t(LBER_USE_DER);
    struct berval bv;
    int rc;

    memset(ctrl, 0, sizeof(*ctrl));
    if (ber == NULL) {
        return ids_error_set(err, IDS_ENOMEM, "ber_alloc_t");
    }
    if (cookie->len > 0) {
        bv.bv_val = cookie->buf;
        bv.bv_len = cookie->len;
        rc = ber_printf(ber, "{eON}", (ber_int_t)LDAP_SYNC_REFRESH_ONLY, &bv);
    } else {
        rc = ber_printf(ber, "{eN}", (ber_int_t)LDAP_SYNC_REFRESH_ONLY);
    }
    if (rc < 0 || ber_flatten2(ber, &ctrl->ldctl_value, 1) < 0) {
        ber_free(ber, 1);
        return ids_error_set(err, IDS_EINTERNAL, "cannot encode the sync request control");
    }
    ber_free(ber, 1);
    ctrl->ldctl_oid = LDAP_CONTROL_SYNC;
    ctrl->ldctl_iscritical = 1;
    (void)c;
    return IDS_OK;
}

static char **attr_array(const struct strvec *sv)
{
    return sv->nr ? sv->v : NULL;
}

/* Union of every object type's attributes (+ extra), for delta reads. */
static void all_attrs(struct ldap_conn *c, struct strvec *out, const char *const *extra)
{
    size_t i;
    size_t k;

    for (i = 0; i < c->ntypes; i++) {
        for (k = 0; k < c->types[i].attrs.nr; k++) {
            if (strvec_find(out, c->types[i].attrs.v[k], true) < 0) {
                strvec_push(out, c->types[i].attrs.v[k]);
            }
        }
    }
    for (k = 0; extra != NULL && extra[k] != NULL; k++) {
        if (strvec_find(out, extra[k], true) < 0) {
            strvec_push(out, extra[k]);
        }
    }
}

/* Send the search of the cursor's current step. */
static enum ids_err cursor_send(struct connector_cursor *cur, struct ids_error *err)
{
    struct ldap_conn *c = cur->c;
    LDAPControl *ctrls[3] = {NULL, NULL, NULL};
    LDAPControl *page = NULL;
    LDAPControl *dirsync = NULL;
    LDAPControl *showdel = NULL;
    LDAPControl sync;
    struct strvec attrs = STRVEC_INIT;
    struct strbuf filter = STRBUF_INIT;
    struct berval bv;
    enum ids_err ret = IDS_OK;
    const char *base = c->base;
    int scope = LDAP_SCOPE_SUBTREE;
    int rc = LDAP_SUCCESS;

    memset(&sync, 0, sizeof(sync));
    switch (cur->kind) {
    case CUR_FULL: {
        const struct ldap_otype *t = &c->types[cur->type_index];

        base = t->base;
        scope = t->scope;
        strbuf_addstr(&filter, t->filter);
        for (size_t k = 0; k < t->attrs.nr; k++) {
            strvec_push(&attrs, t->attrs.v[k]);
        }
        if (c->has_paged) {
            bv.bv_val = cur->page.buf;
            bv.bv_len = cur->page.len;
            rc = ldap_create_page_control(c->ld, (ber_int_t)c->page_size, &bv, 0, &page);
            ctrls[0] = page;
        }
        break;
    }
    case CUR_SYNCREPL: {
        static const char *const extra[] = {"entryUUID", "objectClass", NULL};

        strbuf_addstr(&filter, "(objectClass=*)");
        /* only what resolving needs: the DN and entryUUID come with every entry */
        strvec_push(&attrs, "entryUUID");
        (void)extra;
        ret = sync_control(c, &cur->cookie, &sync, err);
        if (ret != IDS_OK) {
            goto done;
        }
        ctrls[0] = &sync;
        break;
    }
    case CUR_DIRSYNC: {
        static const char *const extra[] = {"objectGUID", "isDeleted", "objectClass", "name", NULL};

        strbuf_addstr(&filter, "(objectClass=*)");
        all_attrs(c, &attrs, extra);
        bv.bv_val = cur->cookie.buf;
        bv.bv_len = cur->cookie.len;
        rc = ldap_create_dirsync_control(c->ld, (int)LDAP_CONTROL_X_DIRSYNC_INCREMENTAL_VALUES, 0,
                                         &bv, &dirsync);
        ctrls[0] = dirsync;
        /* DirSync reads from the root of the naming context */
        base = c->default_nc != NULL ? c->default_nc : c->base;
        break;
    }
    case CUR_USN:
        strbuf_addf(&filter, "(&(uSNChanged>=%lld)%s)", cur->usn_from,
                    cur->usn_deleted_pass ? "(isDeleted=TRUE)" : "");
        strvec_push(&attrs, "objectGUID");
        strvec_push(&attrs, "isDeleted");
        if (cur->usn_deleted_pass) {
            /* tombstones live in CN=Deleted Objects at the naming context root */
            rc = ldap_create_show_deleted_control(c->ld, &showdel);
            ctrls[0] = showdel;
            base = c->default_nc != NULL ? c->default_nc : c->base;
        }
        if (rc == LDAP_SUCCESS && c->has_paged) {
            bv.bv_val = cur->page.buf;
            bv.bv_len = cur->page.len;
            rc = ldap_create_page_control(c->ld, (ber_int_t)c->page_size, &bv, 0, &page);
            ctrls[ctrls[0] ? 1 : 0] = page;
        }
        break;
    }
    if (rc != LDAP_SUCCESS) {
        ret = ldapc_fail(c, rc, err, "building a search control");
        goto done;
    }
    rc = ldap_search_ext(c->ld, base, scope, filter.buf, attr_array(&attrs), 0, ctrls, NULL, NULL,
                         0, &cur->msgid);
    if (rc != LDAP_SUCCESS) {
        cur->msgid = -1;
        ret = ldapc_fail(c, rc, err, "search %s %s", base, filter.buf);
        goto done;
    }
    cur->started = true;

done:
    ldap_control_free(page);
    ldap_control_free(dirsync);
    ldap_control_free(showdel);
    ber_memfree(sync.ldctl_value.bv_val);
    strvec_clear(&attrs);
    strbuf_release(&filter);
    return ret;
}

/* ---- resolving a changed object to its type (delta reads) --------------- */

/* Base search of `dn` (a DN or AD's <GUID=...>) as each object type; the
 * first type whose base, scope and filter hold wins: *item gets a complete
 * object (CHANGE_ADD). When no type holds, the object left every scope (or
 * was never in one): CHANGE_DELETE of `anchor`. */
static enum ids_err resolve_object(struct ldap_conn *c, const char *dn, const char *anchor,
                                   struct read_item *item, struct ids_error *err)
{
    struct timeval tv = {c->timeout, 0};
    LDAPMessage *res = NULL;
    LDAPMessage *m;
    struct entry *e = NULL;
    enum ids_err ret = IDS_OK;
    size_t i;
    int depth;
    int rc;

    for (i = 0; i < c->ntypes; i++) {
        const struct ldap_otype *t = &c->types[i];

        if (dn[0] != '<') {
            depth = ldapdn_depth_under(dn, t->base);
            if (depth < 0 || (t->scope == LDAP_SCOPE_BASE && depth != 0) ||
                (t->scope == LDAP_SCOPE_ONELEVEL && depth != 1)) {
                continue;
            }
        }
        ldap_msgfree(res);
        res = NULL;
        rc = ldap_search_ext_s(c->ld, dn, LDAP_SCOPE_BASE, t->filter, attr_array(&t->attrs), 0,
                               NULL, NULL, &tv, 0, &res);
        if (rc == LDAP_NO_SUCH_OBJECT) {
            break;
        }
        if (rc != LDAP_SUCCESS) {
            ret = ldapc_fail(c, rc, err, "reading changed object %s", dn);
            goto done;
        }
        m = ldap_first_entry(c->ld, res);
        if (m == NULL) {
            continue;
        }
        ret = ldapc_build_entry(c, t, m, &e, err);
        if (ret != IDS_OK) {
            goto done;
        }
        depth = ldapdn_depth_under(e->dn, t->base);
        if (depth < 0 || (t->scope == LDAP_SCOPE_BASE && depth != 0) ||
            (t->scope == LDAP_SCOPE_ONELEVEL && depth != 1)) {
            entry_free(e);
            e = NULL;
            continue;
        }
        item->op = CHANGE_ADD;
        item->entry = e;
        e = NULL;
        goto done;
    }
    item->op = CHANGE_DELETE;
    item->change = change_new(CHANGE_DELETE, NULL, anchor, dn[0] == '<' ? NULL : dn);

done:
    entry_free(e);
    ldap_msgfree(res);
    return ret;
}

/* Which object type (if any) holds the object `dn`; for incremental member
 * changes, which need no attributes. NULL when none. */
static const struct ldap_otype *resolve_type(struct ldap_conn *c, const char *dn,
                                             struct ids_error *err, enum ids_err *ret)
{
    static char *noattrs[] = {LDAP_NO_ATTRS, NULL};
    struct timeval tv = {c->timeout, 0};
    LDAPMessage *res = NULL;
    const struct ldap_otype *found = NULL;
    size_t i;
    int rc;

    *ret = IDS_OK;
    for (i = 0; i < c->ntypes && found == NULL; i++) {
        ldap_msgfree(res);
        res = NULL;
        rc = ldap_search_ext_s(c->ld, dn, LDAP_SCOPE_BASE, c->types[i].filter, noattrs, 0, NULL,
                               NULL, &tv, 0, &res);
        if (rc == LDAP_NO_SUCH_OBJECT) {
            break;
        }
        if (rc != LDAP_SUCCESS) {
            *ret = ldapc_fail(c, rc, err, "reading changed object %s", dn);
            break;
        }
        if (ldap_first_entry(c->ld, res) != NULL) {
            found = &c->types[i];
        }
    }
    ldap_msgfree(res);
    return found;
}

/* ---- reading: one message at a time ------------------------------------ */

static enum ids_err cursor_restart_after_loss(struct connector_cursor *cur, struct ids_error *err)
{
    enum ids_err ret;

    cur->msgid = -1;
    ret = ldapc_reconnect(cur->c, err);
    if (ret != IDS_OK) {
        return ret;
    }
    /* A paged-results cookie is bound to its connection: the current step
     * restarts from its beginning. Entries already yielded come again; the
     * engine sees an unchanged hash and does nothing for them. DirSync and
     * syncrepl restart from the cookie the step started with. */
    strbuf_reset(&cur->page);
    strbuf_reset(&cur->newcookie);
    strvec_clear(&cur->deletes);
    strvec_clear(&cur->sync_dns);
    strvec_clear(&cur->sync_uuids);
    cur->ndel_done = 0;
    return cursor_send(cur, err);
}

/* Parse the end of a step (searchResultDone) and decide what comes next.
 * Returns IDS_OK when another search was sent, IDS_DONE at the end. */
static enum ids_err cursor_step_done(struct connector_cursor *cur, LDAPMessage *m,
                                     struct ids_error *err)
{
    struct ldap_conn *c = cur->c;
    LDAPControl **ctrls = NULL;
    char *matched = NULL;
    char *text = NULL;
    enum ids_err ret = IDS_OK;
    int rcode = LDAP_SUCCESS;
    int rc;
    size_t i;

    rc = ldap_parse_result(c->ld, m, &rcode, &matched, &text, NULL, &ctrls, 0);
    if (rc != LDAP_SUCCESS) {
        ret = ldapc_fail(c, rc, err, "reading a search result");
        goto done;
    }
    cur->msgid = -1;
    if (cur->kind == CUR_SYNCREPL && rcode == LDAP_SYNC_REFRESH_REQUIRED) {
        ret = ids_error_set_detail(err, IDS_EFULLREQUIRED, rcode,
                                   "the server requires a full refresh (e-syncRefreshRequired"
                                   "%s%s): the syncrepl cookie is older than its session log",
                                   text && *text ? ": " : "", text ? text : "");
        goto done;
    }
    if (rcode != LDAP_SUCCESS) {
        if (cur->kind == CUR_FULL && rcode == LDAP_NO_SUCH_OBJECT) {
            /* An empty container that does not exist yet (a target whose
             * OUs are created by the export): no objects of this type. The
             * engine's import guard stops a run that would delete many. */
            log_warn("ldap-base-missing", "connector=%s type=%s base=\"%s\"", c->conn.name,
                     c->types[cur->type_index].name, c->types[cur->type_index].base);
            strbuf_reset(&cur->page);
            cur->type_index++;
            ret = cur->type_index < c->ntypes ? cursor_send(cur, err) : IDS_DONE;
            goto done;
        }
        ret = ids_error_set_detail(err,
                                   ldapc_rc_is_conn_error(rcode) ? IDS_EUNREACHABLE : IDS_EREJECTED,
                                   rcode, "search failed: %s%s%s", ldap_err2string(rcode),
                                   text && *text ? ": " : "", text ? text : "");
        goto done;
    }
    for (i = 0; ctrls != NULL && ctrls[i] != NULL; i++) {
        const char *oid = ctrls[i]->ldctl_oid;

        if (strcmp(oid, LDAP_CONTROL_PAGEDRESULTS) == 0) {
            struct berval ck = {0, NULL};
            ber_int_t count = 0;

            strbuf_reset(&cur->page);
            if (ldap_parse_pageresponse_control(c->ld, ctrls[i], &count, &ck) == LDAP_SUCCESS) {
                strbuf_add(&cur->page, ck.bv_val, ck.bv_len);
                ber_memfree(ck.bv_val);
            }
        } else if (strcmp(oid, LDAP_CONTROL_X_DIRSYNC) == 0) {
            struct berval ck = {0, NULL};
            int more = 0;

            if (ldap_parse_dirsync_control(c->ld, ctrls[i], &more, &ck) == LDAP_SUCCESS) {
                strbuf_reset(&cur->newcookie);
                strbuf_add(&cur->newcookie, ck.bv_val, ck.bv_len);
                ber_memfree(ck.bv_val);
                cur->dirsync_more = more != 0;
            }
        } else if (strcmp(oid, LDAP_CONTROL_SYNC_DONE) == 0) {
            BerElement *ber = ber_init(&ctrls[i]->ldctl_value);
            struct berval ck = {0, NULL};
            ber_len_t len;

            if (ber != NULL) {
                if (ber_scanf(ber, "{") != LBER_ERROR &&
                    ber_peek_tag(ber, &len) == LBER_OCTETSTRING &&
                    ber_scanf(ber, "m", &ck) != LBER_ERROR) {
                    strbuf_reset(&cur->newcookie);
                    strbuf_add(&cur->newcookie, ck.bv_val, ck.bv_len);
                }
                ber_free(ber, 1);
            }
        }
    }
    switch (cur->kind) {
    case CUR_FULL:
        if (cur->page.len > 0) {
            ret = cursor_send(cur, err);
            goto done;
        }
        cur->type_index++;
        if (cur->type_index < c->ntypes) {
            ret = cursor_send(cur, err);
            goto done;
        }
        ret = IDS_DONE;
        break;
    case CUR_DIRSYNC:
        if (cur->newcookie.len > 0) {
            strbuf_reset(&cur->cookie);
            strbuf_addbuf(&cur->cookie, &cur->newcookie);
        }
        if (cur->dirsync_more) {
            cur->dirsync_more = false;
            ret = cursor_send(cur, err);
            goto done;
        }
        strbuf_reset(&cur->wm);
        ldap_watermark_format(&cur->wm, "dirsync", cur->cookie.buf, cur->cookie.len);
        ret = IDS_DONE;
        break;
    case CUR_SYNCREPL:
        if (cur->newcookie.len > 0) {
            strbuf_reset(&cur->cookie);
            strbuf_addbuf(&cur->cookie, &cur->newcookie);
        }
        strbuf_reset(&cur->wm);
        ldap_watermark_format(&cur->wm, "syncrepl", cur->cookie.buf, cur->cookie.len);
        ret = IDS_DONE;
        break;
    case CUR_USN:
        if (cur->page.len > 0) {
            ret = cursor_send(cur, err);
            goto done;
        }
        if (!cur->usn_deleted_pass && c->has_show_deleted) {
            cur->usn_deleted_pass = true;
            ret = cursor_send(cur, err);
            goto done;
        }
        ret = IDS_DONE; /* cur->wm was set when the read started */
        break;
    }

done:
    ldap_controls_free(ctrls);
    ldap_memfree(matched);
    ldap_memfree(text);
    return ret;
}

/* syncInfo intermediate message (RFC 4533 2.5): new cookies, and the
 * syncIdSet of deleted entries. */
static enum ids_err handle_sync_info(struct connector_cursor *cur, LDAPMessage *m,
                                     struct ids_error *err)
{
    struct ldap_conn *c = cur->c;
    struct berval *data = NULL;
    char *oid = NULL;
    BerElement *ber = NULL;
    struct berval ck = {0, NULL};
    struct strbuf uuid = STRBUF_INIT;
    enum ids_err ret = IDS_OK;
    ber_tag_t tag;
    ber_len_t len;
    ber_int_t refresh_deletes = 0;
    BerVarray uuids = NULL;
    size_t i;

    if (ldap_parse_intermediate(c->ld, m, &oid, &data, NULL, 0) != LDAP_SUCCESS || oid == NULL ||
        strcmp(oid, LDAP_SYNC_INFO) != 0 || data == NULL) {
        goto done; /* not ours: ignored */
    }
    ber = ber_init(data);
    if (ber == NULL) {
        ret = ids_error_set(err, IDS_EPROTO, "unreadable syncInfo message");
        goto done;
    }
    tag = ber_peek_tag(ber, &len);
    switch (tag) {
    case LDAP_TAG_SYNC_NEW_COOKIE:
        if (ber_scanf(ber, "m", &ck) != LBER_ERROR) {
            strbuf_reset(&cur->newcookie);
            strbuf_add(&cur->newcookie, ck.bv_val, ck.bv_len);
        }
        break;
    case LDAP_TAG_SYNC_REFRESH_DELETE:
    case LDAP_TAG_SYNC_REFRESH_PRESENT:
        if (ber_scanf(ber, "{") == LBER_ERROR) {
            break;
        }
        if (ber_peek_tag(ber, &len) == LDAP_TAG_SYNC_COOKIE &&
            ber_scanf(ber, "m", &ck) != LBER_ERROR) {
            strbuf_reset(&cur->newcookie);
            strbuf_add(&cur->newcookie, ck.bv_val, ck.bv_len);
        }
        if (tag == LDAP_TAG_SYNC_REFRESH_PRESENT) {
            ret = ids_error_set(err, IDS_EFULLREQUIRED,
                                "the server answered with a present phase (its session log does "
                                "not cover the stored cookie): a full import finds the deletes");
        }
        break;
    case LDAP_TAG_SYNC_ID_SET:
        if (ber_scanf(ber, "{") == LBER_ERROR) {
            ret = ids_error_set(err, IDS_EPROTO, "malformed syncIdSet");
            break;
        }
        if (ber_peek_tag(ber, &len) == LDAP_TAG_SYNC_COOKIE &&
            ber_scanf(ber, "m", &ck) != LBER_ERROR) {
            strbuf_reset(&cur->newcookie);
            strbuf_add(&cur->newcookie, ck.bv_val, ck.bv_len);
        }
        if (ber_peek_tag(ber, &len) == LDAP_TAG_REFRESHDELETES) {
            ber_scanf(ber, "b", &refresh_deletes);
        }
        if (ber_scanf(ber, "[W]", &uuids) == LBER_ERROR) {
            ret = ids_error_set(err, IDS_EPROTO, "malformed syncIdSet UUID list");
            break;
        }
        if (!refresh_deletes) {
            ret = ids_error_set(err, IDS_EFULLREQUIRED,
                                "the server answered with a present list (its session log does not "
                                "cover the stored cookie): a full import finds the deletes");
            break;
        }
        for (i = 0; uuids != NULL && uuids[i].bv_val != NULL; i++) {
            strbuf_reset(&uuid);
            if (ldapesc_uuid_to_string(&uuid, uuids[i].bv_val, uuids[i].bv_len) == IDS_OK) {
                strvec_push(&cur->deletes, uuid.buf);
            }
        }
        break;
    default:
        break;
    }

done:
    ber_bvarray_free(uuids);
    if (ber != NULL) {
        ber_free(ber, 1);
    }
    ber_bvfree(data);
    ldap_memfree(oid);
    strbuf_release(&uuid);
    return ret;
}

/* The syncState control of a syncrepl entry: state and entryUUID. */
static bool sync_state(struct ldap_conn *c, LDAPMessage *m, int *state, struct strbuf *uuid)
{
    LDAPControl **ctrls = NULL;
    bool ok = false;
    size_t i;

    if (ldap_get_entry_controls(c->ld, m, &ctrls) != LDAP_SUCCESS) {
        return false;
    }
    for (i = 0; ctrls != NULL && ctrls[i] != NULL; i++) {
        if (strcmp(ctrls[i]->ldctl_oid, LDAP_CONTROL_SYNC_STATE) == 0) {
            BerElement *ber = ber_init(&ctrls[i]->ldctl_value);
            struct berval u = {0, NULL};
            ber_int_t st = 0;

            if (ber != NULL) {
                if (ber_scanf(ber, "{em", &st, &u) != LBER_ERROR &&
                    ldapesc_uuid_to_string(uuid, u.bv_val, u.bv_len) == IDS_OK) {
                    *state = st;
                    ok = true;
                }
                ber_free(ber, 1);
            }
        }
    }
    ldap_controls_free(ctrls);
    return ok;
}

/* One entry of a delta read -> one item. */
static enum ids_err delta_entry(struct connector_cursor *cur, LDAPMessage *m,
                                struct read_item *item, struct ids_error *err)
{
    struct ldap_conn *c = cur->c;
    struct strbuf anchor = STRBUF_INIT;
    struct strbuf gdn = STRBUF_INIT;
    struct strbuf rbase = STRBUF_INIT;
    struct berval **vals = NULL;
    BerElement *ber = NULL;
    char *dn = ldap_get_dn(c->ld, m);
    char *desc;
    enum ids_err ret = IDS_OK;
    bool deleted = false;
    bool only_ranges = true;
    bool any_range = false;
    int state = 0;

    if (dn == NULL) {
        ret = ids_error_set(err, IDS_EINPUT, "a changed entry without a DN");
        goto done;
    }
    if (cur->kind == CUR_SYNCREPL) {
        if (!sync_state(c, m, &state, &anchor)) {
            ret = ids_error_set(err, IDS_EINPUT, "%s: no syncState control", dn);
            goto done;
        }
        if (state == LDAP_SYNC_PRESENT) {
            ret = ids_error_set(err, IDS_EFULLREQUIRED,
                                "the server answered with a present phase (its session log does "
                                "not cover the stored cookie): a full import finds the deletes");
            goto done;
        }
        if (state == LDAP_SYNC_DELETE) {
            item->op = CHANGE_DELETE;
            item->change = change_new(CHANGE_DELETE, NULL, anchor.buf, dn);
            goto done;
        }
        ret = resolve_object(c, dn, anchor.buf, item, err);
        goto done;
    }

    /* AD: DirSync or uSNChanged; the anchor is objectGUID */
    vals = ldap_get_values_len(c->ld, m, "objectGUID");
    if (vals == NULL || vals[0] == NULL ||
        guid_to_string(&anchor, vals[0]->bv_val, vals[0]->bv_len) != IDS_OK) {
        ret = ids_error_set(err, IDS_EINPUT, "%s: changed entry without a valid objectGUID", dn);
        goto done;
    }
    ldap_value_free_len(vals);
    vals = ldap_get_values_len(c->ld, m, "isDeleted");
    deleted = vals != NULL && vals[0] != NULL && strcasecmp(vals[0]->bv_val, "TRUE") == 0;
    ldap_value_free_len(vals);
    vals = NULL;
    if (deleted) {
        item->op = CHANGE_DELETE;
        item->change = change_new(CHANGE_DELETE, NULL, anchor.buf, NULL);
        goto done;
    }
    strbuf_addf(&gdn, "<GUID=%s>", anchor.buf);
    if (cur->kind == CUR_DIRSYNC) {
        /* incremental values only (member;range=1-1 adds, ;range=0-0 removes)? */
        for (desc = ldap_first_attribute(c->ld, m, &ber); desc != NULL;
             desc = ldap_next_attribute(c->ld, m, ber)) {
            long lo;
            long hi;

            strbuf_reset(&rbase);
            if (ldap_range_parse(desc, &rbase, &lo, &hi)) {
                any_range = true;
            } else if (strcasecmp(desc, "objectGUID") != 0 &&
                       strcasecmp(desc, "instanceType") != 0) {
                only_ranges = false;
            }
            ldap_memfree(desc);
        }
        ber_free(ber, 0);
        ber = NULL;
    }
    if (cur->kind == CUR_DIRSYNC && any_range && only_ranges) {
        const struct ldap_otype *t = resolve_type(c, gdn.buf, err, &ret);
        struct change *ch;

        if (ret != IDS_OK) {
            goto done;
        }
        if (t == NULL) {
            ret = resolve_object(c, gdn.buf, anchor.buf, item, err);
            goto done;
        }
        ch = change_new(CHANGE_MODIFY, t->name, anchor.buf, dn);
        for (desc = ldap_first_attribute(c->ld, m, &ber); desc != NULL;
             desc = ldap_next_attribute(c->ld, m, ber)) {
            long lo;
            long hi;

            strbuf_reset(&rbase);
            if (ldap_range_parse(desc, &rbase, &lo, &hi)) {
                struct berval **v = ldap_get_values_len(c->ld, m, desc);
                struct mod *mod = change_add_mod(ch, lo == 0 ? MOD_DELETE : MOD_ADD, rbase.buf,
                                                 object_type_ref(t->cfg, rbase.buf) ? ATTR_REF : 0);
                size_t k;

                for (k = 0; v != NULL && v[k] != NULL; k++) {
                    attr_add_value(&mod->attr, v[k]->bv_val, v[k]->bv_len);
                }
                ldap_value_free_len(v);
            }
            ldap_memfree(desc);
        }
        item->op = CHANGE_MODIFY;
        item->change = ch;
        goto done;
    }
    ret = resolve_object(c, gdn.buf, anchor.buf, item, err);

done:
    ber_free(ber, 0);
    ldap_value_free_len(vals);
    ldap_memfree(dn);
    strbuf_release(&anchor);
    strbuf_release(&gdn);
    strbuf_release(&rbase);
    return ret;
}

/* syncrepl: run the whole refresh first, keeping only what changed (DN and
 * entryUUID of changed entries, entryUUIDs of deleted ones), so that a
 * "full refresh required" answer or a present phase is known before the
 * first item is handed out (read_changes then returns IDS_EFULLREQUIRED and
 * the engine runs a full import). Memory grows with the number of changes,
 * not with the directory. */
static enum ids_err sync_prefetch(struct connector_cursor *cur, struct ids_error *err)
{
    struct ldap_conn *c = cur->c;
    struct timeval tv = {c->timeout, 0};
    struct strbuf uuid = STRBUF_INIT;
    LDAPMessage *m = NULL;
    enum ids_err ret = IDS_OK;
    int state;
    int rc;

    for (;;) {
        ldap_msgfree(m);
        m = NULL;
        if (cur->msgid < 0) {
            ret = cursor_send(cur, err);
            if (ret == IDS_EUNREACHABLE) {
                ret = cursor_restart_after_loss(cur, err);
            }
            if (ret != IDS_OK) {
                goto done;
            }
        }
        rc = ldap_result(c->ld, cur->msgid, LDAP_MSG_ONE, &tv, &m);
        if (rc <= 0) {
            ret = cursor_restart_after_loss(cur, err);
            if (ret != IDS_OK) {
                goto done;
            }
            continue;
        }
        if (rc == LDAP_RES_SEARCH_ENTRY) {
            char *dn = ldap_get_dn(c->ld, m);

            strbuf_reset(&uuid);
            state = 0;
            if (dn == NULL || !sync_state(c, m, &state, &uuid)) {
                ldap_memfree(dn);
                continue;
            }
            if (state == LDAP_SYNC_PRESENT) {
                ldap_memfree(dn);
                ret = ids_error_set(err, IDS_EFULLREQUIRED,
                                    "the server answered with a present phase (its session log "
                                    "does not cover the stored cookie): a full import finds the "
                                    "deletes");
                goto done;
            }
            if (state == LDAP_SYNC_DELETE) {
                strvec_push(&cur->deletes, uuid.buf);
            } else {
                strvec_push(&cur->sync_dns, dn);
                strvec_push(&cur->sync_uuids, uuid.buf);
            }
            ldap_memfree(dn);
        } else if (rc == LDAP_RES_INTERMEDIATE) {
            ret = handle_sync_info(cur, m, err);
            if (ret != IDS_OK) {
                goto done;
            }
        } else if (rc == LDAP_RES_SEARCH_RESULT) {
            ret = cursor_step_done(cur, m, err);
            if (ret == IDS_EUNREACHABLE) {
                ret = cursor_restart_after_loss(cur, err);
                if (ret != IDS_OK) {
                    goto done;
                }
                continue;
            }
            if (ret == IDS_DONE) {
                ret = IDS_OK;
            }
            goto done;
        }
    }

done:
    ldap_msgfree(m);
    strbuf_release(&uuid);
    return ret;
}

static enum ids_err ldapc_cursor_next(struct connector_cursor *cur, struct read_item *item,
                                      struct ids_error *err)
{
    struct ldap_conn *c = cur->c;
    struct timeval tv = {c->timeout, 0};
    LDAPMessage *m = NULL;
    enum ids_err ret = IDS_OK;
    int rc;

    if (cur->finished) {
        return IDS_DONE;
    }
    for (;;) {
        if (cur->ndel_done < cur->deletes.nr) {
            item->op = CHANGE_DELETE;
            item->change = change_new(CHANGE_DELETE, NULL, cur->deletes.v[cur->ndel_done++], NULL);
            goto done;
        }
        if (cur->kind == CUR_SYNCREPL) {
            if (cur->sync_pos < cur->sync_dns.nr) {
                ret = resolve_object(c, cur->sync_dns.v[cur->sync_pos],
                                     cur->sync_uuids.v[cur->sync_pos], item, err);
                if (ret == IDS_EUNREACHABLE) {
                    ret = ldapc_reconnect(c, err);
                    if (ret != IDS_OK) {
                        goto done;
                    }
                    continue; /* the same object again */
                }
                cur->sync_pos++;
                goto done;
            }
            cur->finished = true;
            ret = IDS_DONE;
            goto done;
        }
        if (cur->ndel_done > 0) {
            strvec_clear(&cur->deletes);
            cur->ndel_done = 0;
        }
        if (cur->msgid < 0) {
            ret = cursor_send(cur, err);
            if (ret == IDS_EUNREACHABLE) {
                ret = cursor_restart_after_loss(cur, err);
            }
            if (ret != IDS_OK) {
                goto done;
            }
        }
        ldap_msgfree(m);
        m = NULL;
        rc = ldap_result(c->ld, cur->msgid, LDAP_MSG_ONE, &tv, &m);
        if (rc == 0) {
            /* no answer within the timeout: treat as a lost connection */
            rc = -1;
        }
        if (rc < 0) {
            ret = cursor_restart_after_loss(cur, err);
            if (ret != IDS_OK) {
                goto done;
            }
            continue;
        }
        switch (rc) {
        case LDAP_RES_SEARCH_ENTRY:
            if (cur->kind == CUR_FULL) {
                ret = ldapc_build_entry(c, &c->types[cur->type_index], m, &item->entry, err);
                if (ret == IDS_EUNREACHABLE) {
                    ret = cursor_restart_after_loss(cur, err);
                    if (ret != IDS_OK) {
                        goto done;
                    }
                    continue;
                }
                item->op = CHANGE_ADD;
                goto done;
            }
            ret = delta_entry(cur, m, item, err);
            if (ret == IDS_EUNREACHABLE) {
                ret = cursor_restart_after_loss(cur, err);
                if (ret != IDS_OK) {
                    goto done;
                }
                continue;
            }
            goto done;
        case LDAP_RES_INTERMEDIATE:
            ret = handle_sync_info(cur, m, err);
            if (ret != IDS_OK) {
                goto done;
            }
            continue;
        case LDAP_RES_SEARCH_REFERENCE:
            continue; /* referrals are not followed (AD's ForestDnsZones ...) */
        case LDAP_RES_SEARCH_RESULT:
            ret = cursor_step_done(cur, m, err);
            if (ret == IDS_EUNREACHABLE) {
                ret = cursor_restart_after_loss(cur, err);
                if (ret != IDS_OK) {
                    goto done;
                }
                continue;
            }
            if (ret == IDS_DONE) {
                cur->finished = true;
                goto done;
            }
            if (ret != IDS_OK) {
                goto done;
            }
            continue;
        default:
            continue;
        }
    }

done:
    ldap_msgfree(m);
    if (ret == IDS_OK) {
        cur->items++;
    }
    return ret;
}

static enum ids_err ldapc_cursor_watermark(struct connector_cursor *cur, struct strbuf *out,
                                           struct ids_error *err)
{
    (void)err;
    strbuf_addbuf(out, &cur->wm);
    return IDS_OK;
}

/* highestCommittedUSN of the rootDSE (AD). */
static enum ids_err read_highest_usn(struct ldap_conn *c, struct strbuf *out, struct ids_error *err)
{
    static char *attrs[] = {"highestCommittedUSN", NULL};
    struct timeval tv = {c->timeout, 0};
    LDAPMessage *res = NULL;
    struct berval **vals = NULL;
    LDAPMessage *e;
    enum ids_err ret = IDS_OK;
    int rc;

    rc = ldap_search_ext_s(c->ld, "", LDAP_SCOPE_BASE, "(objectClass=*)", attrs, 0, NULL, NULL, &tv,
                           0, &res);
    if (rc != LDAP_SUCCESS) {
        ret = ldapc_fail(c, rc, err, "reading highestCommittedUSN");
        goto done;
    }
    e = ldap_first_entry(c->ld, res);
    vals = e != NULL ? ldap_get_values_len(c->ld, e, "highestCommittedUSN") : NULL;
    if (vals == NULL || vals[0] == NULL) {
        ret = ids_error_set(err, IDS_EPROTO, "the rootDSE has no highestCommittedUSN");
        goto done;
    }
    strbuf_add(out, vals[0]->bv_val, vals[0]->bv_len);

done:
    ldap_value_free_len(vals);
    ldap_msgfree(res);
    return ret;
}

/* A fresh DirSync or syncrepl cookie for "now", without reading entries:
 * the same control with a filter that matches nothing. */
static enum ids_err fresh_cookie(struct ldap_conn *c, bool dirsync, struct strbuf *cookie,
                                 struct ids_error *err)
{
    struct connector_cursor *cur = cursor_new(c, dirsync ? CUR_DIRSYNC : CUR_SYNCREPL);
    struct timeval tv = {c->timeout, 0};
    LDAPControl *ctrls[2] = {NULL, NULL};
    LDAPControl *dctrl = NULL;
    LDAPControl sync;
    LDAPMessage *res = NULL;
    LDAPMessage *m;
    static char *noattrs[] = {LDAP_NO_ATTRS, NULL};
    enum ids_err ret = IDS_OK;
    int rc;

    memset(&sync, 0, sizeof(sync));
    for (;;) {
        if (dirsync) {
            struct berval bv = {cur->cookie.len, cur->cookie.buf};

            rc = ldap_create_dirsync_control(c->ld, (int)LDAP_CONTROL_X_DIRSYNC_INCREMENTAL_VALUES,
                                             0, &bv, &dctrl);
            if (rc != LDAP_SUCCESS) {
                ret = ldapc_fail(c, rc, err, "building the DirSync control");
                goto done;
            }
            ctrls[0] = dctrl;
        } else {
            ret = sync_control(c, &cur->cookie, &sync, err);
            if (ret != IDS_OK) {
                goto done;
            }
            ctrls[0] = &sync;
        }
        rc = ldap_search_ext_s(c->ld, dirsync && c->default_nc != NULL ? c->default_nc : c->base,
                               LDAP_SCOPE_SUBTREE, MATCH_NOTHING, noattrs, 0, ctrls, NULL, &tv, 0,
                               &res);
        ldap_control_free(dctrl);
        dctrl = NULL;
        ber_memfree(sync.ldctl_value.bv_val);
        memset(&sync, 0, sizeof(sync));
        if (rc != LDAP_SUCCESS) {
            ret = ldapc_fail(c, rc, err, "%s", dirsync ? "DirSync" : "syncrepl refresh");
            goto done;
        }
        for (m = ldap_first_message(c->ld, res); m != NULL; m = ldap_next_message(c->ld, m)) {
            if (ldap_msgtype(m) == LDAP_RES_INTERMEDIATE) {
                ret = handle_sync_info(cur, m, err);
            } else if (ldap_msgtype(m) == LDAP_RES_SEARCH_RESULT) {
                ret = cursor_step_done(cur, m, err);
                if (ret == IDS_DONE) {
                    ret = IDS_OK;
                }
                /* cursor_step_done may have sent a next page: not here */
                if (cur->msgid >= 0) {
                    ldap_abandon_ext(c->ld, cur->msgid, NULL, NULL);
                    cur->msgid = -1;
                }
            }
            if (ret != IDS_OK) {
                goto done;
            }
        }
        ldap_msgfree(res);
        res = NULL;
        if (!dirsync || !cur->dirsync_more) {
            break;
        }
    }
    strbuf_addbuf(cookie, &cur->cookie);

done:
    ldap_msgfree(res);
    ldap_control_free(dctrl);
    ber_memfree(sync.ldctl_value.bv_val);
    ldapc_cursor_free(cur);
    return ret;
}

/* The watermark a full read hands out: taken BEFORE reading, so that a
 * change made during the read is read again by the next delta. */
static enum ids_err start_watermark(struct ldap_conn *c, struct strbuf *wm, struct ids_error *err)
{
    struct strbuf data = STRBUF_INIT;
    enum ids_err ret = IDS_OK;

    if (c->delta == LDAP_DELTA_DIRSYNC) {
        ret = fresh_cookie(c, true, &data, err);
        if (ret == IDS_OK) {
            ldap_watermark_format(wm, "dirsync", data.buf, data.len);
            goto done;
        }
        if (err->detail != LDAP_INSUFFICIENT_ACCESS &&
            err->detail != LDAP_UNAVAILABLE_CRITICAL_EXTENSION &&
            err->detail != LDAP_UNWILLING_TO_PERFORM && err->detail != LDAP_STRONG_AUTH_REQUIRED) {
            goto done;
        }
        /* not permitted (insufficientAccessRights, unavailableCritical ...) */
        log_warn("ldap-dirsync-refused",
                 "connector=%s fallback=usn reason=\"DirSync is not permitted for this "
                 "account; reading changes by uSNChanged with show-deleted (%s)\"",
                 c->conn.name, err->msg);
        ids_error_clear(err);
        c->delta = LDAP_DELTA_USN;
        strbuf_reset(&data);
    }
    if (c->delta == LDAP_DELTA_USN) {
        ret = read_highest_usn(c, &data, err);
        if (ret == IDS_OK) {
            ldap_watermark_format(wm, "usn", data.buf, data.len);
        }
    } else if (c->delta == LDAP_DELTA_SYNCREPL) {
        ret = fresh_cookie(c, false, &data, err);
        if (ret == IDS_OK) {
            ldap_watermark_format(wm, "syncrepl", data.buf, data.len);
        }
    }

done:
    strbuf_release(&data);
    return ret;
}

static enum ids_err learn_dn_attrs(struct ldap_conn *c, struct ids_error *err);

static enum ids_err ldapc_read_full(struct connector *conn, struct connector_cursor **out,
                                    struct ids_error *err)
{
    struct ldap_conn *c = (struct ldap_conn *)conn;
    struct connector_cursor *cur = NULL;
    enum ids_err ret;

    *out = NULL;
    if (c->ntypes == 0) {
        return ids_error_set(err, IDS_ECONFIG, "no object types configured (objects:)");
    }
    cur = cursor_new(c, CUR_FULL);
    ret = start_watermark(c, &cur->wm, err);
    if (ret == IDS_EUNREACHABLE) {
        ret = ldapc_reconnect(c, err);
        if (ret == IDS_OK) {
            ret = start_watermark(c, &cur->wm, err);
        }
    }
    if (ret != IDS_OK) {
        goto done;
    }
    ret = learn_dn_attrs(c, err);
    if (ret != IDS_OK) {
        goto done;
    }
    ret = cursor_send(cur, err);
    if (ret == IDS_EUNREACHABLE) {
        ret = cursor_restart_after_loss(cur, err);
    }

done:
    if (ret != IDS_OK) {
        ldapc_cursor_free(cur);
        return ret;
    }
    *out = cur;
    return IDS_OK;
}

static enum ids_err ldapc_read_changes(struct connector *conn, const char *watermark,
                                       struct connector_cursor **out, struct ids_error *err)
{
    struct ldap_conn *c = (struct ldap_conn *)conn;
    struct connector_cursor *cur = NULL;
    struct strbuf kind = STRBUF_INIT;
    struct strbuf data = STRBUF_INIT;
    enum ids_err ret;
    char *end = NULL;

    *out = NULL;
    if (c->delta == LDAP_DELTA_NONE) {
        return ids_error_set(err, IDS_EFULLREQUIRED, "delta: none (or not available on %s)",
                             c->url);
    }
    if (watermark == NULL || watermark[0] == '\0') {
        return ids_error_set(err, IDS_EFULLREQUIRED, "no watermark stored yet");
    }
    ret = ldap_watermark_parse(watermark, &kind, &data, err);
    if (ret != IDS_OK) {
        ret = ids_error_set(err, IDS_EFULLREQUIRED, "stored watermark unusable: %s", err->msg);
        goto done;
    }
    if (strbuf_equals(&kind, "syncrepl")) {
        if (c->delta != LDAP_DELTA_SYNCREPL) {
            ret = ids_error_set(err, IDS_EFULLREQUIRED,
                                "the stored watermark is a syncrepl cookie, delta is now %s",
                                ldapc_delta_name(c->delta));
            goto done;
        }
        cur = cursor_new(c, CUR_SYNCREPL);
        strbuf_addbuf(&cur->cookie, &data);
    } else if (strbuf_equals(&kind, "dirsync")) {
        if (c->delta != LDAP_DELTA_DIRSYNC) {
            ret = ids_error_set(err, IDS_EFULLREQUIRED,
                                "the stored watermark is a DirSync cookie, delta is now %s",
                                ldapc_delta_name(c->delta));
            goto done;
        }
        cur = cursor_new(c, CUR_DIRSYNC);
        strbuf_addbuf(&cur->cookie, &data);
    } else {
        if (c->flavour != LDAP_FLAVOUR_AD &&
            !(c->delta == LDAP_DELTA_USN || c->delta == LDAP_DELTA_DIRSYNC)) {
            ret = ids_error_set(err, IDS_EFULLREQUIRED,
                                "the stored watermark is a uSNChanged, delta is now %s",
                                ldapc_delta_name(c->delta));
            goto done;
        }
        if (c->delta == LDAP_DELTA_DIRSYNC) {
            /* DirSync was refused earlier in this connector's life: stay on usn */
            c->delta = LDAP_DELTA_USN;
        }
        cur = cursor_new(c, CUR_USN);
        cur->usn_from = strtoll(data.buf, &end, 10) + 1;
        ret = read_highest_usn(c, &data, err);
        if (ret != IDS_OK) {
            goto done;
        }
        strbuf_reset(&cur->wm);
        ldap_watermark_format(&cur->wm, "usn", data.buf, data.len);
    }
    ret = learn_dn_attrs(c, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (cur->kind == CUR_SYNCREPL) {
        ret = sync_prefetch(cur, err);
        goto done;
    }
    ret = cursor_send(cur, err);
    if (ret == IDS_EUNREACHABLE) {
        ret = cursor_restart_after_loss(cur, err);
    }
    if (ret == IDS_EREJECTED && cur->kind == CUR_DIRSYNC) {
        ret = ids_error_set(err, IDS_EFULLREQUIRED, "DirSync refused: %s", err->msg);
    }

done:
    strbuf_release(&kind);
    strbuf_release(&data);
    if (ret != IDS_OK) {
        ldapc_cursor_free(cur);
        return ret;
    }
    *out = cur;
    return IDS_OK;
}

/* ---- check ------------------------------------------------------------- */

static enum ids_err count_objects(struct ldap_conn *c, const struct ldap_otype *t, long *n,
                                  struct ids_error *err)
{
    static char *noattrs[] = {LDAP_NO_ATTRS, NULL};
    struct strbuf page = STRBUF_INIT;
    struct timeval tv = {c->timeout, 0};
    LDAPMessage *res = NULL;
    LDAPControl *pctrl = NULL;
    LDAPControl *ctrls[2] = {NULL, NULL};
    LDAPControl **rctrls = NULL;
    enum ids_err ret = IDS_OK;
    int rc;
    int rcode;

    *n = 0;
    for (;;) {
        struct berval bv = {page.len, page.buf};
        size_t i;

        if (c->has_paged) {
            rc = ldap_create_page_control(c->ld, 1000, &bv, 0, &pctrl);
            if (rc != LDAP_SUCCESS) {
                ret = ldapc_fail(c, rc, err, "paged control");
                goto done;
            }
            ctrls[0] = pctrl;
        }
        rc = ldap_search_ext_s(c->ld, t->base, t->scope, t->filter, noattrs, 0, ctrls, NULL, &tv, 0,
                               &res);
        ldap_control_free(pctrl);
        pctrl = NULL;
        if (rc != LDAP_SUCCESS) {
            ret =
                ldapc_fail(c, rc, err, "object type %s: search %s %s", t->name, t->base, t->filter);
            goto done;
        }
        *n += ldap_count_entries(c->ld, res);
        strbuf_reset(&page);
        if (ldap_parse_result(c->ld, ldap_first_message(c->ld, res) ? ldapc_last_msg(c, res) : res,
                              &rcode, NULL, NULL, NULL, &rctrls, 0) == LDAP_SUCCESS) {
            for (i = 0; rctrls != NULL && rctrls[i] != NULL; i++) {
                struct berval ck = {0, NULL};
                ber_int_t cnt;

                if (strcmp(rctrls[i]->ldctl_oid, LDAP_CONTROL_PAGEDRESULTS) == 0 &&
                    ldap_parse_pageresponse_control(c->ld, rctrls[i], &cnt, &ck) == LDAP_SUCCESS) {
                    strbuf_add(&page, ck.bv_val, ck.bv_len);
                    ber_memfree(ck.bv_val);
                }
            }
            ldap_controls_free(rctrls);
            rctrls = NULL;
        }
        ldap_msgfree(res);
        res = NULL;
        if (page.len == 0) {
            break;
        }
    }

done:
    ldap_msgfree(res);
    strbuf_release(&page);
    return ret;
}

LDAPMessage *ldapc_last_msg(struct ldap_conn *c, LDAPMessage *res)
{
    LDAPMessage *m;
    LDAPMessage *last = res;

    for (m = ldap_first_message(c->ld, res); m != NULL; m = ldap_next_message(c->ld, m)) {
        last = m;
    }
    return last;
}

static int cmp_lower(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The attribute types of the server's schema (the subschema entry the
 * rootDSE names), parsed by libldap; free with schema_free. IDS_ENOTFOUND
 * when the schema cannot be read (no subschemaSubentry, no permission): not
 * an error of the connection. */
struct ldap_schema {
    LDAPAttributeType **at;
    size_t nr, alloc;
    LDAPObjectClass **oc;
    size_t noc, aoc;
};

static void schema_free(struct ldap_schema *s)
{
    size_t i;

    for (i = 0; i < s->nr; i++) {
        ldap_attributetype_free(s->at[i]);
    }
    free(s->at);
    s->at = NULL;
    s->nr = s->alloc = 0;
    for (i = 0; i < s->noc; i++) {
        ldap_objectclass_free(s->oc[i]);
    }
    free(s->oc);
    s->oc = NULL;
    s->noc = s->aoc = 0;
}

static enum ids_err schema_read(struct ldap_conn *c, struct ldap_schema *out, struct ids_error *err)
{
    static char *root_attrs[] = {"subschemaSubentry", NULL};
    static char *schema_attrs[] = {"attributeTypes", "objectClasses", NULL};
    struct timeval tv = {c->timeout, 0};
    LDAPMessage *res = NULL;
    LDAPMessage *e;
    struct berval **vals = NULL;
    char *dn = NULL;
    enum ids_err ret = IDS_ENOTFOUND;
    size_t i;
    int rc;

    rc = ldap_search_ext_s(c->ld, "", LDAP_SCOPE_BASE, "(objectClass=*)", root_attrs, 0, NULL, NULL,
                           &tv, 0, &res);
    if (rc == LDAP_SUCCESS && (e = ldap_first_entry(c->ld, res)) != NULL &&
        (vals = ldap_get_values_len(c->ld, e, "subschemaSubentry")) != NULL && vals[0] != NULL) {
        dn = xmemdup(vals[0]->bv_val, vals[0]->bv_len);
    }
    ldap_value_free_len(vals);
    vals = NULL;
    ldap_msgfree(res);
    res = NULL;
    if (rc != LDAP_SUCCESS && ldapc_rc_is_conn_error(rc)) {
        return ldapc_fail(c, rc, err, "reading the rootDSE");
    }
    if (dn == NULL) {
        return IDS_ENOTFOUND;
    }
    rc = ldap_search_ext_s(c->ld, dn, LDAP_SCOPE_BASE, "(objectClass=*)", schema_attrs, 0, NULL,
                           NULL, &tv, 0, &res);
    if (rc != LDAP_SUCCESS) {
        ret = ldapc_rc_is_conn_error(rc) ? ldapc_fail(c, rc, err, "reading the schema")
                                         : IDS_ENOTFOUND;
        goto done;
    }
    e = ldap_first_entry(c->ld, res);
    vals = e != NULL ? ldap_get_values_len(c->ld, e, "attributeTypes") : NULL;
    for (i = 0; vals != NULL && vals[i] != NULL; i++) {
        char *text = xmemdup(vals[i]->bv_val, vals[i]->bv_len);
        const char *where = NULL;
        int code = 0;
        LDAPAttributeType *at = ldap_str2attributetype(text, &code, &where, LDAP_SCHEMA_ALLOW_ALL);

        if (at != NULL) {
            ALLOC_GROW(out->at, out->nr + 1, out->alloc);
            out->at[out->nr++] = at;
        }
        free(text);
    }
    ldap_value_free_len(vals);
    vals = e != NULL ? ldap_get_values_len(c->ld, e, "objectClasses") : NULL;
    for (i = 0; vals != NULL && vals[i] != NULL; i++) {
        char *text = xmemdup(vals[i]->bv_val, vals[i]->bv_len);
        const char *where = NULL;
        int code = 0;
        LDAPObjectClass *oc = ldap_str2objectclass(text, &code, &where, LDAP_SCHEMA_ALLOW_ALL);

        if (oc != NULL) {
            ALLOC_GROW(out->oc, out->noc + 1, out->aoc);
            out->oc[out->noc++] = oc;
        }
        free(text);
    }
    if (out->nr > 0) {
        ret = IDS_OK;
    }
done:
    ldap_value_free_len(vals);
    ldap_msgfree(res);
    free(dn);
    return ret;
}

/* The names (lower-cased, sorted) of every attribute type of the schema. */
static void schema_names(const struct ldap_schema *s, struct strvec *out)
{
    size_t i, j;

    for (i = 0; i < s->nr; i++) {
        const LDAPAttributeType *at = s->at[i];

        for (j = 0; at->at_names != NULL && at->at_names[j] != NULL; j++) {
            struct strbuf low = STRBUF_INIT;

            strbuf_addstr(&low, at->at_names[j]);
            strbuf_tolower(&low);
            strvec_push(out, low.buf);
            strbuf_release(&low);
        }
    }
    qsort(out->v, out->nr, sizeof(*out->v), cmp_lower);
}

/* The type of the schema named `name` (a name or an OID), or NULL. */
static const LDAPAttributeType *schema_find(const struct ldap_schema *s, const char *name,
                                            size_t len)
{
    size_t i, j;

    for (i = 0; i < s->nr; i++) {
        const LDAPAttributeType *at = s->at[i];

        if (at->at_oid != NULL && strlen(at->at_oid) == len && memcmp(at->at_oid, name, len) == 0) {
            return at;
        }
        for (j = 0; at->at_names != NULL && at->at_names[j] != NULL; j++) {
            if (strlen(at->at_names[j]) == len && strncasecmp(at->at_names[j], name, len) == 0) {
                return at;
            }
        }
    }
    return NULL;
}

static bool name_in(char **names, const char *name)
{
    size_t i;

    for (i = 0; names != NULL && names[i] != NULL; i++) {
        if (strcasecmp(names[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/* Does object class `oc_name` (or one of its superclasses) require `attr`? */
static bool schema_class_requires(const struct ldap_schema *s, const char *oc_name,
                                  const char *attr, int depth)
{
    size_t i;

    for (i = 0; depth < 8 && i < s->noc; i++) {
        const LDAPObjectClass *oc = s->oc[i];
        size_t k;

        if (!name_in(oc->oc_names, oc_name) &&
            (oc->oc_oid == NULL || strcmp(oc->oc_oid, oc_name) != 0)) {
            continue;
        }
        if (name_in(oc->oc_at_oids_must, attr)) {
            return true;
        }
        for (k = 0; oc->oc_sup_oids != NULL && oc->oc_sup_oids[k] != NULL; k++) {
            if (schema_class_requires(s, oc->oc_sup_oids[k], attr, depth + 1)) {
                return true;
            }
        }
        return false;
    }
    return false;
}

#define LDAP_SYNTAX_DN "1.3.6.1.4.1.1466.115.121.1.12"

/* Whether attribute `name` (options after ';' ignored) has the DN syntax,
 * its own or its supertype's (manager: SUP distinguishedName). */
static bool schema_is_dn(const struct ldap_schema *s, const char *name)
{
    const LDAPAttributeType *at = schema_find(s, name, strcspn(name, ";"));
    int depth;

    for (depth = 0; at != NULL && depth < 16; depth++) {
        if (at->at_syntax_oid != NULL) {
            return strcmp(at->at_syntax_oid, LDAP_SYNTAX_DN) == 0;
        }
        if (at->at_sup_oid == NULL) {
            return false;
        }
        at = schema_find(s, at->at_sup_oid, strlen(at->at_sup_oid));
    }
    return false;
}

/* Which attributes of each object type hold DNs by the server's schema
 * (references excepted: they carry ATTR_REF), read once a connection. The
 * entries read mark them ATTR_DN, so that the engine compares their values
 * as DNs: a server stores the form it prefers ("cn=Boss,ou=People" for
 * "CN=Boss, OU=People"), and the same DN is not sent again at every sync.
 * A schema that cannot be read leaves none marked. */
static enum ids_err learn_dn_attrs(struct ldap_conn *c, struct ids_error *err)
{
    struct ldap_schema s = {0};
    enum ids_err ret;
    size_t i, j;

    if (c->dn_attrs_known) {
        return IDS_OK;
    }
    ret = schema_read(c, &s, err);
    if (ret == IDS_ENOTFOUND) {
        c->dn_attrs_known = true;
        return IDS_OK;
    }
    if (ret != IDS_OK) {
        return ret;
    }
    for (i = 0; i < c->ntypes; i++) {
        struct ldap_otype *t = &c->types[i];

        strvec_clear(&t->dn_attrs);
        for (j = 0; j < t->attrs.nr; j++) {
            const char *a = t->attrs.v[j];

            if (strcasecmp(a, c->anchor_attr) != 0 && !object_type_ref(t->cfg, a) &&
                schema_is_dn(&s, a)) {
                strvec_push(&t->dn_attrs, a);
            }
        }
    }
    schema_free(&s);
    c->dn_attrs_known = true;
    return IDS_OK;
}

/* Configured attributes the server's schema does not know (a misspelt name
 * reads as absent on every object), one report line per object type. */
static enum ids_err check_schema(struct ldap_conn *c, struct strbuf *report, struct ids_error *err)
{
    struct strvec names = STRVEC_INIT;
    struct ldap_schema s = {0};
    enum ids_err ret = schema_read(c, &s, err);
    size_t i, j;

    if (ret == IDS_ENOTFOUND) {
        strbuf_addstr(report, "schema: not readable (configured attribute names not checked)\n");
        return IDS_OK;
    }
    if (ret != IDS_OK) {
        return ret;
    }
    schema_names(&s, &names);
    for (i = 0; i < c->ntypes; i++) {
        const struct ldap_otype *t = &c->types[i];

        for (j = 0; t->empty_member == NULL && j < t->cfg->nrefs; j++) {
            size_t k;

            for (k = 0; k < t->object_classes.nr; k++) {
                if (schema_class_requires(&s, t->object_classes.v[k], t->cfg->refs[j].attr, 0)) {
                    strbuf_addf(report,
                                "empty groups.%s: %s requires %s, so a group without members "
                                "can be neither created nor emptied (set "
                                "objects.%s.empty_member to a DN that stands in for them)\n",
                                t->name, t->object_classes.v[k], t->cfg->refs[j].attr, t->name);
                    break;
                }
            }
        }
    }
    schema_free(&s);
    strbuf_addf(report, "schema: %zu attribute names\n", names.nr);
    for (i = 0; i < c->ntypes; i++) {
        struct strbuf unknown = STRBUF_INIT;

        for (j = 0; j < c->types[i].attrs.nr; j++) {
            const char *a = c->types[i].attrs.v[j];
            struct strbuf low = STRBUF_INIT;
            const char *key;

            strbuf_add(&low, a, strcspn(a, ";")); /* without options: ;binary, ;range= */
            strbuf_tolower(&low);
            key = low.buf;
            if (low.len > 0 && strspn(key, "0123456789.") != low.len &&
                bsearch(&key, names.v, names.nr, sizeof(*names.v), cmp_lower) == NULL) {
                strbuf_addf(&unknown, "%s%s", unknown.len ? ", " : "", a);
            }
            strbuf_release(&low);
        }
        if (unknown.len > 0) {
            strbuf_addf(report,
                        "unknown attributes.%s: %s (not in the server's schema: misspelt? "
                        "every object would have none)\n",
                        c->types[i].name, unknown.buf);
        }
        strbuf_release(&unknown);
    }
    strvec_clear(&names);
    return IDS_OK;
}

static enum ids_err ldapc_check(struct connector *conn, struct strbuf *report,
                                struct ids_error *err)
{
    struct ldap_conn *c = (struct ldap_conn *)conn;
    enum ids_err ret = IDS_OK;
    size_t i;

    if (c->ld == NULL) {
        ret = ldapc_open(conn, err);
        if (ret != IDS_OK) {
            return ret;
        }
    }
    strbuf_addf(report, "url: %s\n", c->url);
    strbuf_addf(report, "bind: ok (%s)\n", c->bind_dn != NULL ? c->bind_dn : "anonymous");
    strbuf_addf(report, "vendor: %s\n", c->vendor != NULL ? c->vendor : "unknown");
    strbuf_addf(report, "flavour: %s (%s)\n", ldapc_flavour_name(c->flavour),
                c->flavour_cfg == LDAP_FLAVOUR_AUTO ? "detected from the rootDSE"
                                                    : "from the configuration");
    strbuf_addstr(report, "naming_contexts:");
    for (i = 0; i < c->naming_contexts.nr; i++) {
        strbuf_addf(report, "%s%s", i ? "; " : " ", c->naming_contexts.v[i]);
    }
    strbuf_addch(report, '\n');
    strbuf_addf(report, "base: %s\n", c->base);
    strbuf_addf(report, "anchor: %s\n", c->anchor_attr);
    strbuf_addf(report,
                "controls: paged_results=%s syncrepl=%s dirsync=%s post_read=%s "
                "permissive_modify=%s show_deleted=%s\n",
                c->has_paged ? "yes" : "no", c->has_sync ? "yes" : "no",
                c->has_dirsync ? "yes" : "no", c->has_postread ? "yes" : "no",
                c->has_permissive ? "yes" : "no", c->has_show_deleted ? "yes" : "no");
    strbuf_addf(report, "delta: %s\n", ldapc_delta_name(c->delta));
    for (i = 0; i < c->ntypes; i++) {
        long n = 0;

        ret = count_objects(c, &c->types[i], &n, err);
        if (ret != IDS_OK) {
            return ret;
        }
        strbuf_addf(report, "objects.%s: %ld\n", c->types[i].name, n);
    }
    return check_schema(c, report, err);
}

/* ---- lookup ------------------------------------------------------------ */

static enum ids_err ldapc_lookup(struct connector *conn, const char *type, const char *attr,
                                 const char *value, struct entry **out, struct ids_error *err)
{
    struct ldap_conn *c = (struct ldap_conn *)conn;
    const struct ldap_otype *t = NULL;
    struct strbuf filter = STRBUF_INIT;
    struct strbuf bin = STRBUF_INIT;
    struct timeval tv = {c->timeout, 0};
    LDAPMessage *res = NULL;
    LDAPMessage *m;
    enum ids_err ret = IDS_OK;
    size_t i;
    int rc;
    int tries;

    *out = NULL;
    for (i = 0; i < c->ntypes; i++) {
        if (type != NULL && strcasecmp(c->types[i].name, type) == 0) {
            t = &c->types[i];
        }
    }
    if (t == NULL) {
        return ids_error_set(err, IDS_EINVAL, "unknown object type %s", type ? type : "(null)");
    }
    ret = learn_dn_attrs(c, err);
    if (ret != IDS_OK) {
        return ret;
    }
    if (strcasecmp(attr, "dn") != 0) {
        strbuf_addf(&filter, "(&%s(%s=", t->filter ? t->filter : "(objectClass=*)", attr);
        if (strcasecmp(attr, "objectGUID") == 0 && guid_from_string(&bin, value) == IDS_OK) {
            ldapesc_filter_value(&filter, bin.buf, bin.len);
        } else {
            ldapesc_filter_value(&filter, value, strlen(value));
        }
        strbuf_addstr(&filter, "))");
    }
    for (tries = 0; tries < 2; tries++) {
        if (strcasecmp(attr, "dn") == 0) {
            rc = ldap_search_ext_s(c->ld, value, LDAP_SCOPE_BASE, t->filter, attr_array(&t->attrs),
                                   0, NULL, NULL, &tv, 2, &res);
        } else {
            rc = ldap_search_ext_s(c->ld, t->base, t->scope, filter.buf, attr_array(&t->attrs), 0,
                                   NULL, NULL, &tv, 2, &res);
        }
        if (ldapc_rc_is_conn_error(rc) && tries == 0) {
            ldap_msgfree(res);
            res = NULL;
            ret = ldapc_reconnect(c, err);
            if (ret != IDS_OK) {
                goto done;
            }
            continue;
        }
        break;
    }
    if (rc == LDAP_NO_SUCH_OBJECT) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "no %s with %s=%s", t->name, attr, value);
        goto done;
    }
    if (rc == LDAP_SIZELIMIT_EXCEEDED ||
        (rc == LDAP_SUCCESS && ldap_count_entries(c->ld, res) > 1)) {
        ret = ids_error_set(err, IDS_EINPUT, "more than one %s with %s=%s", t->name, attr, value);
        goto done;
    }
    if (rc != LDAP_SUCCESS) {
        ret = ldapc_fail(c, rc, err, "looking up %s %s=%s", t->name, attr, value);
        goto done;
    }
    m = ldap_first_entry(c->ld, res);
    if (m == NULL) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "no %s with %s=%s", t->name, attr, value);
        goto done;
    }
    ret = ldapc_build_entry(c, t, m, out, err);

done:
    ldap_msgfree(res);
    strbuf_release(&filter);
    strbuf_release(&bin);
    return ret;
}

/* connector_ops.dn_readable: under the type's base (or the connector's)
 * within its scope. A base left to the server's naming context is not known
 * here: true. */
static bool ldapc_dn_readable(const struct connector_config *cfg, const char *type, const char *dn,
                              struct strbuf *why)
{
    const struct object_type_config *ot = connector_config_object(cfg, type);
    const char *base = ot != NULL ? config_get_str(&ot->opts, "base") : NULL;
    const char *scope = ot != NULL ? config_get_str(&ot->opts, "scope") : NULL;
    int sc = scope_from_str(scope);
    int depth;

    if (base == NULL) {
        base = config_get_str(&cfg->opts, "base");
    }
    if (base == NULL) {
        return true;
    }
    depth = ldapdn_depth_under(dn, base);
    if (depth >= 0 && (sc == LDAP_SCOPE_SUBTREE || (sc == LDAP_SCOPE_ONELEVEL && depth == 1) ||
                       (sc == LDAP_SCOPE_BASE && depth == 0))) {
        return true;
    }
    strbuf_addf(why, "base %s, scope %s", base,
                sc == LDAP_SCOPE_ONELEVEL ? "one"
                : sc == LDAP_SCOPE_BASE   ? "base"
                                          : "sub");
    return false;
}

const struct connector_ops ldap_connector_ops = {
    .name = "ldap",
    .caps = CONN_CAP_READ | CONN_CAP_WRITE | CONN_CAP_DELTA | CONN_CAP_REF_BY_DN | CONN_CAP_RENAME |
            CONN_CAP_ANCHOR_ON_ADD | CONN_CAP_NOOP_VALUES,
    .options = ldap_options,
    .object_options = ldap_object_options,
    .create = ldapc_create,
    .open = ldapc_open,
    .close = ldapc_close,
    .check = ldapc_check,
    .read_full = ldapc_read_full,
    .read_changes = ldapc_read_changes,
    .cursor_next = ldapc_cursor_next,
    .cursor_watermark = ldapc_cursor_watermark,
    .cursor_free = ldapc_cursor_free,
    .export_begin = ldapc_export_begin,
    .submit = ldapc_submit,
    .poll = ldapc_poll,
    .export_end = ldapc_export_end,
    .lookup = ldapc_lookup,
    .dn_readable = ldapc_dn_readable,
};
