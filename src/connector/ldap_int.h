/* ldap_int.h - private to the LDAP connector (ldap.c: connection and
 * reading; ldap_export.c: the pipelined export). Not for other modules. */
#ifndef IDSYNC_CONNECTOR_LDAP_INT_H
#define IDSYNC_CONNECTOR_LDAP_INT_H

#define LDAP_DEPRECATED 0
#include <ldap.h>
#include <lber.h>
#include <stdbool.h>
#include <stdint.h>

#include "connector/connector.h"
#include "entry.h"
#include "util/strbuf.h"
#include "util/strvec.h"

enum ldap_flavour {
    LDAP_FLAVOUR_AUTO,
    LDAP_FLAVOUR_AD,
    LDAP_FLAVOUR_OPENLDAP,
    LDAP_FLAVOUR_GENERIC
};
enum ldap_delta {
    LDAP_DELTA_AUTO,
    LDAP_DELTA_DIRSYNC,
    LDAP_DELTA_USN,
    LDAP_DELTA_SYNCREPL,
    LDAP_DELTA_NONE
};

/* One configured object type, resolved against the server. */
struct ldap_otype {
    const struct object_type_config *cfg; /* borrowed from the configuration */
    const char *name;                     /* cfg->name */
    char *base_cfg;                       /* objects.T.base, or NULL */
    char *base;                           /* effective base (after open) */
    int scope;                            /* LDAP_SCOPE_* */
    char *filter;                         /* parenthesised filter */
    struct strvec attrs;                  /* attributes requested (anchor included) */
    struct strvec object_classes;         /* objectClass of new objects */
    struct strvec dn_attrs;               /* of attrs: DN syntax, not references */
    char *empty_member;                   /* stand-in member of an empty group, or NULL */
    struct value empty_val;               /* empty_member as a value (borrowed) */
};

struct ldap_pending; /* ldap_export.c */
struct ldap_ready;   /* ldap_export.c */

/* The instance. `conn` MUST stay first (see connector.h). */
struct ldap_conn {
    struct connector conn;
    /* configuration */
    char *url;
    char *bind_dn;
    char *base_cfg;
    enum ldap_delta delta_cfg;
    enum ldap_flavour flavour_cfg;
    char *anchor_cfg;
    char *ca_file;
    bool tls_verify;
    bool starttls;
    long timeout;           /* seconds */
    long reconnect_timeout; /* seconds */
    long page_size;
    long window;
    bool create_parents;
    size_t ntypes;
    struct ldap_otype *types;
    struct strbuf password; /* read at open, kept for reconnects, wiped at close */
    /* connection and what the rootDSE said */
    LDAP *ld;
    enum ldap_flavour flavour_detected;
    enum ldap_flavour flavour; /* effective */
    enum ldap_delta delta;     /* effective */
    char *vendor;
    char *default_nc;
    struct strvec naming_contexts;
    char *base;        /* effective connector base */
    char *anchor_attr; /* objectGUID, entryUUID or the configured one */
    bool anchor_is_guid;
    bool has_paged, has_sync, has_dirsync, has_postread, has_permissive, has_show_deleted;
    bool dn_attrs_known; /* types[].dn_attrs read from the schema (learn_dn_attrs) */
    unsigned long reconnects;
    /* export state (ldap_export.c) */
    struct ldap_pending *pending_head, *pending_tail;
    size_t npending;
    struct ldap_ready *ready_head, *ready_tail;
};

void ldapc_conn_free(struct ldap_conn *c);
bool ldapc_rc_is_conn_error(int rc);
/* Fill err with "<what>: <LDAP error> (<server diagnostic>)"; the code is
 * IDS_EUNREACHABLE for connection errors, IDS_EREJECTED otherwise. */
enum ids_err ldapc_fail(struct ldap_conn *c, int rc, struct ids_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Reconnect and bind again, retrying for reconnect_timeout seconds. */
enum ids_err ldapc_reconnect(struct ldap_conn *c, struct ids_error *err);
/* Build an entry of type t (may be NULL) from a search entry message. */
enum ids_err ldapc_build_entry(struct ldap_conn *c, const struct ldap_otype *t, LDAPMessage *m,
                               struct entry **out, struct ids_error *err);
/* The anchor attribute's value in string form (GUID string for objectGUID). */
enum ids_err ldapc_anchor_string(struct ldap_conn *c, const struct berval *v, struct strbuf *out);
LDAPMessage *ldapc_last_msg(struct ldap_conn *c, LDAPMessage *res);
const char *ldapc_flavour_name(enum ldap_flavour f);
const char *ldapc_delta_name(enum ldap_delta d);

/* ldap_export.c */
enum ids_err ldapc_export_begin(struct connector *conn, struct ids_error *err);
enum ids_err ldapc_submit(struct connector *conn, const struct change *ch, uint64_t tag,
                          struct ids_error *err);
enum ids_err ldapc_poll(struct connector *conn, bool block, struct export_result *res,
                        struct ids_error *err);
enum ids_err ldapc_export_end(struct connector *conn, struct ids_error *err);
void ldapc_export_release(struct ldap_conn *c);

#endif
