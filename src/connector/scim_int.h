/* scim_int.h - private to the SCIM connector (scim.c: instance, discovery,
 * auth, reads, lookup; scim_export.c: the concurrent export; scim_map.c: the
 * pure mapping between SCIM JSON and entries/changes, PATCH generation,
 * filter escaping, Retry-After and backoff, used by the unit tests too).
 * docs/internals/scim.md describes the design. Not for other modules. */
#ifndef IDSYNC_CONNECTOR_SCIM_INT_H
#define IDSYNC_CONNECTOR_SCIM_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "connector/connector.h"
#include "entry.h"
#include "util/http.h"
#include "util/strbuf.h"
#include "util/strvec.h"

#define SCIM_CORE_USER  "urn:ietf:params:scim:schemas:core:2.0:User"
#define SCIM_CORE_GROUP "urn:ietf:params:scim:schemas:core:2.0:Group"
#define SCIM_ENTERPRISE "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
#define SCIM_PATCHOP    "urn:ietf:params:scim:api:messages:2.0:PatchOp"
#define SCIM_LIST       "urn:ietf:params:scim:api:messages:2.0:ListResponse"

/* ---- schema knowledge -------------------------------------------------- */

enum scim_atype {
    SCIM_STRING = 0,
    SCIM_BOOLEAN,
    SCIM_INTEGER,
    SCIM_DECIMAL,
    SCIM_DATETIME,
    SCIM_REFERENCE,
    SCIM_COMPLEX,
    SCIM_BINARY,
};

/* One attribute (or sub-attribute) definition, from /Schemas or built in. */
struct scim_adef {
    char *schema; /* schema URN */
    char *path;   /* "userName", "name.givenName", "emails", "manager" */
    enum scim_atype type;
    bool multi;
    bool ref_value;   /* complex with a `value` that holds an id (members, manager) */
    char *uniqueness; /* "none", "server", "global" or NULL */
};

struct scim_schemas {
    size_t nr;
    size_t alloc;
    struct scim_adef *defs;
    size_t *index; /* open addressing by (schema, path) ignoring case: def + 1, 0 empty */
    size_t nindex; /* slots, a power of two, at least twice nr */
};

/* The built-in definitions of the core User and Group schemas and the
 * enterprise extension (used when /Schemas is unavailable, and for what it
 * does not say). */
void scim_schemas_builtin(struct scim_schemas *s);
/* Add the attributes of one /Schemas resource (with sub-attributes). */
void scim_schemas_add_json(struct scim_schemas *s, json_t *schema);
const struct scim_adef *scim_schemas_find(const struct scim_schemas *s, const char *schema,
                                          const char *path);
void scim_schemas_release(struct scim_schemas *s);

/* ---- attribute names ---------------------------------------------------- */

/* A configured attribute name, resolved:
 *   "userName"                                    -> core, userName
 *   "name.givenName"                              -> core, name, givenName
 *   "urn:...:enterprise:2.0:User:department"      -> that URN, department
 *   "enterprise:department" (alias)               -> the enterprise URN, department
 * `urn` is NULL for the core schema of the resource type. */
struct scim_path {
    char *urn;
    char *attr;
    char *sub;
};
void scim_path_parse(const char *name, struct scim_path *out);
void scim_path_release(struct scim_path *p);
/* The SCIM attribute path: "attr[.sub]" or "urn:attr[.sub]". */
void scim_path_format(const struct scim_path *p, struct strbuf *out);

/* ---- resource types --------------------------------------------------- */

/* One configured object type, resolved against the service. */
struct scim_rtype {
    const struct object_type_config *cfg; /* borrowed */
    const char *name;                     /* cfg->name */
    char *resource_type;                  /* SCIM resource type name ("User") */
    char *endpoint;                       /* "/Users" */
    char *schema;                         /* core schema URN */
    struct strvec extensions;             /* extension schema URNs the service declares */
    char *carrier;                        /* anchor carrier attribute (externalId) */
    char *dn_attr;                        /* what `dn` is taken from (userName, displayName) */
    char *filter;                         /* SCIM filter of the listing, or NULL */
    bool members_in_listing;              /* read members with the listing */
    bool has_members;                     /* `members` is a configured attribute */
    const struct scim_schemas *schemas;   /* borrowed from the instance */
};

/* Is attribute `name` of t a reference (configured `references:`, or a
 * complex whose value is an id: members, manager)? */
bool scim_is_ref(const struct scim_rtype *t, const char *name);
/* Does a schema of t (the service's, or the built-in core and enterprise
 * definitions) define attribute `name` (the common id, externalId and meta
 * count as defined)? For `check`: a misspelt name reads as absent. */
bool scim_attr_known(const struct scim_rtype *t, const char *name);

/* ---- mapping ------------------------------------------------------------ */

/* A SCIM resource -> entry of type t: anchor = id, dn = dn_attr's value,
 * the configured attributes (every attribute when none is configured).
 * IDS_EINPUT when the resource has no id or is not an object. */
enum ids_err scim_resource_to_entry(const struct scim_rtype *t, json_t *res, struct entry **out,
                                    struct ids_error *err);
/* The body of a POST (or PUT) for an ADD change (every mod's values).
 * IDS_EINPUT naming the attribute when a value does not fit its type. */
enum ids_err scim_change_to_resource(const struct scim_rtype *t, const struct change *ch,
                                     json_t **out, struct ids_error *err);
/* PatchOp bodies for a MODIFY: a JSON array of PatchOp messages, each with at
 * most `chunk` values (member adds and value removals counted one each).
 * An empty array when there is nothing to send. */
enum ids_err scim_change_to_patches(const struct scim_rtype *t, const struct change *ch,
                                    size_t chunk, json_t **out, struct ids_error *err);
/* Apply PatchOp operations (as scim_change_to_patches writes them) to a
 * resource in place: the PUT fallback. */
enum ids_err scim_patch_apply(json_t *res, json_t *ops, struct ids_error *err);

/* `"value"` as a SCIM filter comparison value (a JSON string: quotes,
 * backslashes and control characters escaped). */
void scim_filter_value(struct strbuf *out, const char *value);
/* "attr eq \"value\"" for attribute name `name` (configured spelling). */
void scim_filter_eq(struct strbuf *out, const char *name, const char *value);

/* ---- errors and retries ------------------------------------------------- */

/* The service's error body: `detail` and `scimType` (either may stay empty);
 * a non-JSON body gives its first line as the detail. */
void scim_error_parse(const char *body, size_t len, struct strbuf *detail,
                      struct strbuf *scim_type);
/* The attribute of ch that a service message names (case-insensitive word
 * match), or NULL. */
const char *scim_error_attr(const struct change *ch, const char *detail);
/* Retry-After: delta-seconds or an HTTP date, relative to `now`. false when
 * absent or unreadable; a past date gives 0. */
bool scim_retry_after_ms(const char *value, time_t now, long long *ms);
/* Exponential backoff with jitter for the n-th retry (n >= 1): a uniform
 * value in [d/2, d] with d = min(cap, base * 2^(n-1)); `rnd` is a random
 * 64-bit number. */
long long scim_backoff_ms(int n, long long base_ms, long long cap_ms, uint64_t rnd);
/* Is the HTTP status worth a retry (408, 429, 500, 502, 503, 504)? */
bool scim_status_retryable(long status);

/* ---- the instance ------------------------------------------------------- */

enum scim_auth { SCIM_AUTH_NONE, SCIM_AUTH_BEARER, SCIM_AUTH_BASIC, SCIM_AUTH_OAUTH };

struct scim_op;
struct scim_bulk;

/* `conn` MUST stay first (see connector.h). */
struct scim_conn {
    struct connector conn;
    /* configuration */
    char *url; /* base URL without trailing slash */
    enum scim_auth auth;
    char *username;
    char *token_url;
    char *client_id;
    char *scope;
    char *ca_file;
    bool tls_verify;
    bool http2;
    long concurrency;
    long page_size;
    long timeout_ms;
    long connect_timeout_ms;
    long max_retries;
    long long retry_max_wait_ms;
    long long backoff_base_ms;
    long patch_chunk;
    int patch_cfg;  /* -1 auto, 0 no (PUT), 1 yes */
    int bulk_cfg;   /* -1 auto, 0 no */
    long bulk_size; /* operations per /Bulk request (creates and deletes) */
    size_t ntypes;
    struct scim_rtype *types;
    /* secrets, read at open */
    struct strbuf secret;      /* bearer token / password / client secret */
    struct strbuf auth_header; /* current Authorization value */
    long long token_expiry_ms; /* OAuth: when to fetch a new token (0 = never) */
    unsigned long tokens_fetched;
    /* discovery */
    bool opened;
    bool spc_found, rt_found, schemas_found;
    bool patch_supported, bulk_supported, filter_supported, etag_supported, sort_supported;
    long bulk_max_ops, bulk_max_payload, filter_max_results;
    struct strvec auth_schemes;
    struct scim_schemas schemas;
    long http_version;  /* of the last response */
    bool no_projection; /* the service refused `attributes=`: ask for whole resources */
    /* transport */
    struct http_client *http;
    uint64_t rnd;
    /* export state (scim_export.c) */
    struct scim_op *queue_head, *queue_tail; /* waiting to be (re)sent */
    struct scim_op *ready_head, *ready_tail; /* finished, not yet polled */
    struct scim_op *all_ops;                 /* every live operation (freed at close) */
    struct scim_bulk *bulks;                 /* /Bulk requests on the wire (freed at close) */
    size_t active;                           /* requests on the wire */
    size_t outstanding;                      /* submitted, not yet polled */
    double window;                           /* adaptive concurrency (<= concurrency) */
    bool use_bulk;                           /* creates and deletes go in /Bulk requests */
    long bulk_ops;                           /* effective operations per /Bulk request */
    bool bulk_hold; /* more submissions are coming: due creates and deletes wait until they
                       fill a /Bulk request (a fast service answers each one before the next
                       is submitted, and would get one request per change) */
    unsigned long bulk_requests;
    long long pause_until_ms; /* after a 429: send nothing before */
    unsigned long throttled, retried, adopted;
};

/* scim.c */
uint64_t scim_random(struct scim_conn *c);
/* Are /Bulk requests used for creates and deletes? */
bool scim_use_bulk(const struct scim_conn *c);
/* Make sure the Authorization value is current (OAuth: fetch/refresh). */
enum ids_err scim_auth_refresh(struct scim_conn *c, bool force, struct ids_error *err);
/* Prepare a request for c: url = base + path (+ query), auth header set. */
void scim_request_prepare(struct scim_conn *c, struct http_request *r, const char *method,
                          const char *path);
/* Fill err from a finished request that failed (transport or HTTP >= 400):
 * "<what>: HTTP 409 uniqueness: detail" or "<what>: <transport error> [url]". */
enum ids_err scim_request_error(struct scim_conn *c, const struct http_request *r,
                                struct ids_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const struct scim_rtype *scim_type_find(struct scim_conn *c, const char *name);

/* scim_export.c */
enum ids_err scim_export_begin(struct connector *conn, struct ids_error *err);
enum ids_err scim_submit(struct connector *conn, const struct change *ch, uint64_t tag,
                         struct ids_error *err);
enum ids_err scim_poll(struct connector *conn, bool block, struct export_result *res,
                       struct ids_error *err);
enum ids_err scim_export_end(struct connector *conn, struct ids_error *err);
void scim_export_release(struct scim_conn *c);

#endif
