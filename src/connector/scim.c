/* scim.c - the SCIM 2.0 connector (RFC 7643, RFC 7644): cloud directories
 * (Entra ID, Okta, AWS IAM Identity Center, most SaaS) as targets and
 * sources, through libcurl's multi interface (util/http.h) and jansson.
 *
 * This file holds the instance and its options, authentication (bearer
 * token, HTTP basic, OAuth 2.0 client credentials), discovery
 * (/ServiceProviderConfig, /ResourceTypes, /Schemas), `check`, the full
 * read (paged listing with pages fetched ahead, members of groups fetched
 * per group) and lookup. The concurrent export is in scim_export.c, the pure
 * mapping in scim_map.c. docs/internals/scim.md describes the design.
 */
#include "connector/scim_int.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "util/codec.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/banned.h"

/* ---- options ----------------------------------------------------------- */

static const struct config_option scim_options[] = {
    {"url", OPT_STRING, NULL, 0, 0, NULL, true,
     "Base URL of the SCIM service, e.g. https://HOST/scim/v2 (http:// only for tests)."},
    {"auth", OPT_ENUM, "auto", 0, 0, "auto|bearer|basic|oauth|none", false,
     "Authentication: bearer (`token`), basic (`username` + `password`), oauth (client "
     "credentials: `token_url`, `client_id`, `client_secret`) or none; auto picks from what is "
     "configured."},
    {"token", OPT_SECRET, NULL, 0, 0, NULL, false,
     "Bearer token: `token_file: PATH` or `token: env:NAME`."},
    {"username", OPT_STRING, NULL, 0, 0, NULL, false, "User name for HTTP basic authentication."},
    {"password", OPT_SECRET, NULL, 0, 0, NULL, false,
     "Password for HTTP basic authentication: `password_file: PATH` or `password: env:NAME`."},
    {"token_url", OPT_STRING, NULL, 0, 0, NULL, false,
     "OAuth 2.0 token endpoint (client credentials grant); the token is fetched at open and "
     "refreshed before it expires or when the service answers 401."},
    {"client_id", OPT_STRING, NULL, 0, 0, NULL, false, "OAuth 2.0 client id."},
    {"client_secret", OPT_SECRET, NULL, 0, 0, NULL, false,
     "OAuth 2.0 client secret: `client_secret_file: PATH` or `client_secret: env:NAME`."},
    {"scope", OPT_STRING, NULL, 0, 0, NULL, false, "OAuth 2.0 scope to ask for, if any."},
    {"ca_file", OPT_PATH, NULL, 0, 0, NULL, false,
     "PEM file of the certificate authorities that sign the service's certificate."},
    {"tls_verify", OPT_BOOL, "true", 0, 0, NULL, false,
     "Verify the service's TLS certificate and name; false only in so many words."},
    {"http2", OPT_BOOL, "true", 0, 0, NULL, false,
     "Offer HTTP/2 over TLS (requests are then multiplexed on one connection)."},
    {"concurrency", OPT_INT, "8", 1, 256, NULL, false,
     "Largest number of requests in flight at once (export, page and member reads)."},
    {"page_size", OPT_INT, "100", 1, 10000, NULL, false,
     "Resources per page of a listing (`count`); the service may return fewer."},
    {"timeout", OPT_DURATION, "30s", 0, 0, NULL, false,
     "Longest time for one request; a request that takes longer is retried."},
    {"connect_timeout", OPT_DURATION, "10s", 0, 0, NULL, false, "Longest time to connect."},
    {"max_retries", OPT_INT, "5", 0, 100, NULL, false,
     "Retries of one request after a 429, a 5xx, a timeout or a lost connection."},
    {"retry_max_wait", OPT_DURATION, "60s", 0, 0, NULL, false,
     "Cap of one backoff wait and of an honoured Retry-After."},
    {"patch", OPT_ENUM, "auto", 0, 0, "auto|yes|no", false,
     "Update with PATCH (auto: when /ServiceProviderConfig says it is supported) or with GET + "
     "PUT of the whole resource (no)."},
    {"bulk", OPT_ENUM, "auto", 0, 0, "auto|no", false,
     "Send creates and deletes in /Bulk requests when /ServiceProviderConfig says bulk is "
     "supported (auto), or always one request per change (no)."},
    {"bulk_size", OPT_INT, "50", 1, 10000, NULL, false,
     "Largest number of operations in one /Bulk request (also capped by the service's "
     "maxOperations and maxPayloadSize)."},
    {"patch_chunk", OPT_INT, "500", 1, 100000, NULL, false,
     "Largest number of values (members added or removed) in one PATCH request; larger changes "
     "are sent as several requests."},
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

static const struct config_option scim_object_options[] = {
    {"resource_type", OPT_STRING, NULL, 0, 0, NULL, false,
     "SCIM resource type name (as /ResourceTypes lists it); default: the object type's name."},
    {"endpoint", OPT_STRING, NULL, 0, 0, NULL, false,
     "Endpoint of the resource type (/Users); default: from /ResourceTypes."},
    {"schema", OPT_STRING, NULL, 0, 0, NULL, false,
     "Core schema URN of the resource type; default: from /ResourceTypes."},
    {"anchor_carrier", OPT_STRING, "externalId", 0, 0, NULL, false,
     "Attribute holding the metaverse source anchor: a create whose response was lost is "
     "looked up by it before it is sent again."},
    {"dn_attribute", OPT_STRING, NULL, 0, 0, NULL, false,
     "Attribute shown as the object's name (DN column); default userName for users, "
     "displayName otherwise."},
    {"members_in_listing", OPT_BOOL, "false", 0, 0, NULL, false,
     "Read `members` with the group listing; default: list with excludedAttributes=members "
     "and fetch the members of each group with its own request."},
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

/* ---- create / close ---------------------------------------------------- */

static void scim_close(struct connector *conn);

static long long option_ms(const struct config_values *vals, const char *key, long def)
{
    const struct config_value *v = config_values_get(vals, key);

    return (long long)(v != NULL ? v->num : def) * 1000;
}

static enum ids_err scim_create(const struct connector_config *cfg, struct connector **out,
                                struct ids_error *err)
{
    struct scim_conn *c = xcalloc(1, sizeof(*c));
    const char *s;
    size_t i;

    *out = NULL;
    s = config_get_str(&cfg->opts, "url");
    if (s == NULL || (strncasecmp(s, "http://", 7) != 0 && strncasecmp(s, "https://", 8) != 0)) {
        free(c);
        return ids_error_set(err, IDS_ECONFIG, "url must be https://HOST/PATH (or http://)");
    }
    c->url = xstrdup(s);
    while (strlen(c->url) > 8 && c->url[strlen(c->url) - 1] == '/') {
        c->url[strlen(c->url) - 1] = '\0';
    }
    c->username = xstrdup_or_null(config_get_str(&cfg->opts, "username"));
    c->token_url = xstrdup_or_null(config_get_str(&cfg->opts, "token_url"));
    c->client_id = xstrdup_or_null(config_get_str(&cfg->opts, "client_id"));
    c->scope = xstrdup_or_null(config_get_str(&cfg->opts, "scope"));
    c->ca_file = xstrdup_or_null(config_get_str(&cfg->opts, "ca_file"));
    c->tls_verify = config_get_bool(&cfg->opts, "tls_verify");
    c->http2 = config_get_bool(&cfg->opts, "http2");
    c->concurrency = config_get_int(&cfg->opts, "concurrency");
    c->page_size = config_get_int(&cfg->opts, "page_size");
    c->timeout_ms = (long)option_ms(&cfg->opts, "timeout", 30);
    c->connect_timeout_ms = (long)option_ms(&cfg->opts, "connect_timeout", 10);
    c->max_retries = config_get_int(&cfg->opts, "max_retries");
    c->retry_max_wait_ms = option_ms(&cfg->opts, "retry_max_wait", 60);
    c->backoff_base_ms = 200;
    c->patch_chunk = config_get_int(&cfg->opts, "patch_chunk");
    if (c->concurrency <= 0) {
        c->concurrency = 8;
    }
    if (c->page_size <= 0) {
        c->page_size = 100;
    }
    if (c->patch_chunk <= 0) {
        c->patch_chunk = 500;
    }
    if (getenv("IDSYNC_SCIM_BACKOFF_MS") != NULL) {
        /* tests: short backoffs */
        c->backoff_base_ms = strtol(getenv("IDSYNC_SCIM_BACKOFF_MS"), NULL, 10);
    }
    s = config_get_str(&cfg->opts, "bulk");
    c->bulk_cfg = s != NULL && strcmp(s, "no") == 0 ? 0 : -1;
    c->bulk_size = config_get_int(&cfg->opts, "bulk_size");
    if (c->bulk_size <= 0) {
        c->bulk_size = 50;
    }
    s = config_get_str(&cfg->opts, "patch");
    c->patch_cfg = s == NULL || strcmp(s, "auto") == 0 ? -1 : strcmp(s, "yes") == 0 ? 1 : 0;

    s = config_get_str(&cfg->opts, "auth");
    if (s == NULL || strcmp(s, "auto") == 0) {
        c->auth = config_values_get(&cfg->opts, "token") != NULL ? SCIM_AUTH_BEARER
                  : c->token_url != NULL                         ? SCIM_AUTH_OAUTH
                  : c->username != NULL                          ? SCIM_AUTH_BASIC
                                                                 : SCIM_AUTH_NONE;
    } else {
        c->auth = strcmp(s, "bearer") == 0  ? SCIM_AUTH_BEARER
                  : strcmp(s, "basic") == 0 ? SCIM_AUTH_BASIC
                  : strcmp(s, "oauth") == 0 ? SCIM_AUTH_OAUTH
                                            : SCIM_AUTH_NONE;
    }
    if (c->auth == SCIM_AUTH_BEARER && config_values_get(&cfg->opts, "token") == NULL) {
        scim_close(&c->conn);
        return ids_error_set(err, IDS_ECONFIG,
                             "auth: bearer needs `token_file: PATH` or `token: env:NAME`");
    }
    if (c->auth == SCIM_AUTH_BASIC &&
        (c->username == NULL || config_values_get(&cfg->opts, "password") == NULL)) {
        scim_close(&c->conn);
        return ids_error_set(err, IDS_ECONFIG,
                             "auth: basic needs `username` and `password_file: PATH` or "
                             "`password: env:NAME`");
    }
    if (c->auth == SCIM_AUTH_OAUTH && (c->token_url == NULL || c->client_id == NULL ||
                                       config_values_get(&cfg->opts, "client_secret") == NULL)) {
        scim_close(&c->conn);
        return ids_error_set(err, IDS_ECONFIG,
                             "auth: oauth needs `token_url`, `client_id` and "
                             "`client_secret_file: PATH` or `client_secret: env:NAME`");
    }
    scim_schemas_builtin(&c->schemas);
    c->ntypes = cfg->nobjects;
    c->types = xcalloc(cfg->nobjects ? cfg->nobjects : 1, sizeof(*c->types));
    for (i = 0; i < cfg->nobjects; i++) {
        struct scim_rtype *t = &c->types[i];
        const struct object_type_config *ot = &cfg->objects[i];
        const char *rt = config_get_str(&ot->opts, "resource_type");

        t->cfg = ot;
        t->name = ot->name;
        t->resource_type = xstrdup(rt != NULL ? rt : ot->name);
        t->endpoint = xstrdup_or_null(config_get_str(&ot->opts, "endpoint"));
        t->schema = xstrdup_or_null(config_get_str(&ot->opts, "schema"));
        s = config_get_str(&ot->opts, "anchor_carrier");
        t->carrier = xstrdup(s != NULL ? s : "externalId");
        t->dn_attr = xstrdup_or_null(config_get_str(&ot->opts, "dn_attribute"));
        t->filter = ot->filter != NULL && ot->filter[0] != '\0' ? xstrdup(ot->filter) : NULL;
        t->members_in_listing = config_get_bool(&ot->opts, "members_in_listing");
        t->has_members = strvec_find(&ot->attributes, "members", true) >= 0;
        t->schemas = &c->schemas;
    }
    c->rnd = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)c;
    *out = &c->conn;
    return IDS_OK;
}

static void rtype_release(struct scim_rtype *t)
{
    free(t->resource_type);
    free(t->endpoint);
    free(t->schema);
    strvec_clear(&t->extensions);
    free(t->carrier);
    free(t->dn_attr);
    free(t->filter);
}

static void scim_close(struct connector *conn)
{
    struct scim_conn *c = (struct scim_conn *)conn;
    size_t i;

    if (c == NULL) {
        return;
    }
    scim_export_release(c);
    http_client_free(c->http);
    for (i = 0; i < c->ntypes; i++) {
        rtype_release(&c->types[i]);
    }
    free(c->types);
    scim_schemas_release(&c->schemas);
    strvec_clear(&c->auth_schemes);
    if (c->secret.alloc) {
        memset(c->secret.buf, 0, c->secret.len);
    }
    strbuf_release(&c->secret);
    if (c->auth_header.alloc) {
        memset(c->auth_header.buf, 0, c->auth_header.len);
    }
    strbuf_release(&c->auth_header);
    free(c->url);
    free(c->username);
    free(c->token_url);
    free(c->client_id);
    free(c->scope);
    free(c->ca_file);
    free(c);
}

/* ---- helpers ------------------------------------------------------------ */

uint64_t scim_random(struct scim_conn *c)
{
    /* xorshift64*: jitter only, not security */
    c->rnd ^= c->rnd >> 12;
    c->rnd ^= c->rnd << 25;
    c->rnd ^= c->rnd >> 27;
    return c->rnd * 2685821657736338717ULL;
}

const struct scim_rtype *scim_type_find(struct scim_conn *c, const char *name)
{
    size_t i;

    for (i = 0; name != NULL && i < c->ntypes; i++) {
        if (strcasecmp(c->types[i].name, name) == 0) {
            return &c->types[i];
        }
    }
    return NULL;
}

void scim_request_prepare(struct scim_conn *c, struct http_request *r, const char *method,
                          const char *path)
{
    http_request_reset(r);
    r->method = method;
    if (strncasecmp(path, "http://", 7) == 0 || strncasecmp(path, "https://", 8) == 0) {
        strbuf_addstr(&r->url, path);
    } else {
        strbuf_addstr(&r->url, c->url);
        strbuf_addstr(&r->url, path);
    }
    strbuf_addbuf(&r->auth, &c->auth_header);
}

static enum ids_err status_code(long status)
{
    if (status == 404) {
        return IDS_ENOTFOUND;
    }
    if (status == 409) {
        return IDS_EEXIST;
    }
    if (status >= 500 || status == 429 || status == 408) {
        return IDS_EIO;
    }
    return IDS_EREJECTED;
}

enum ids_err scim_request_error(struct scim_conn *c, const struct http_request *r,
                                struct ids_error *err, const char *fmt, ...)
{
    struct strbuf sb = STRBUF_INIT;
    struct strbuf detail = STRBUF_INIT;
    struct strbuf type = STRBUF_INIT;
    enum ids_err code;
    va_list ap;

    va_start(ap, fmt);
    strbuf_vaddf(&sb, fmt, ap);
    va_end(ap);
    if (r->curl_code != 0 || r->status == 0) {
        strbuf_addf(&sb, ": %s [%s]", r->error[0] ? r->error : "no response", c->url);
        code = IDS_EUNREACHABLE;
        ids_error_set(err, code, "%s", sb.buf);
        goto done;
    }
    scim_error_parse(r->response.buf, r->response.len, &detail, &type);
    strbuf_addf(&sb, ": HTTP %ld", r->status);
    if (type.len > 0) {
        strbuf_addf(&sb, " %s", type.buf);
    }
    if (detail.len > 0) {
        strbuf_addf(&sb, ": %s", detail.buf);
    }
    if (r->status == 401 || r->status == 403) {
        strbuf_addstr(&sb, " (check the credentials and their rights)");
    }
    code = status_code(r->status);
    ids_error_set_detail(err, code, (int)r->status, "%s", sb.buf);

done:
    strbuf_release(&sb);
    strbuf_release(&detail);
    strbuf_release(&type);
    return code;
}

static void sleep_ms(struct scim_conn *c, long long ms)
{
    long long until = http_now_ms() + ms;

    while (http_now_ms() < until) {
        long long left = until - http_now_ms();

        if (c->http != NULL && http_running(c->http) > 0) {
            http_run(c->http, (long)left, NULL);
        } else {
            struct timespec ts = {(time_t)(left / 1000), (long)(left % 1000) * 1000000L};

            nanosleep(&ts, NULL);
        }
    }
}

/* Should a finished (idempotent) request be sent again, and after how long? */
static bool want_retry(struct scim_conn *c, const struct http_request *r, int attempt,
                       long long *wait_ms)
{
    long long ra = 0;

    if (attempt > c->max_retries) {
        return false;
    }
    if (r->curl_code == 0 && !scim_status_retryable(r->status)) {
        return false;
    }
    *wait_ms = scim_backoff_ms(attempt, c->backoff_base_ms, c->retry_max_wait_ms, scim_random(c));
    if (r->curl_code == 0 && r->retry_after.len > 0 &&
        scim_retry_after_ms(r->retry_after.buf, time(NULL), &ra)) {
        *wait_ms = ra < c->retry_max_wait_ms ? ra : c->retry_max_wait_ms;
    }
    if (r->status == 429) {
        c->throttled++;
    }
    c->retried++;
    return true;
}

/* Perform an idempotent request with retries (discovery, reads, lookups).
 * IDS_OK when a final answer arrived (check r->status), else the transport
 * error. */
static enum ids_err perform(struct scim_conn *c, struct http_request *r, struct ids_error *err)
{
    enum ids_err ret;
    int attempt = 0;
    bool refreshed = false;

    for (;;) {
        long long wait = 0;

        ret = scim_auth_refresh(c, false, err);
        if (ret != IDS_OK) {
            return ret;
        }
        strbuf_reset(&r->auth);
        strbuf_addbuf(&r->auth, &c->auth_header);
        ret = http_perform(c->http, r, err);
        if (ret != IDS_OK) {
            return ret;
        }
        if (r->http_version != 0) {
            c->http_version = r->http_version;
        }
        if (r->status == 401 && c->auth == SCIM_AUTH_OAUTH && !refreshed) {
            refreshed = true;
            ret = scim_auth_refresh(c, true, err);
            if (ret != IDS_OK) {
                return ret;
            }
            continue;
        }
        attempt++;
        if (!want_retry(c, r, attempt, &wait)) {
            return IDS_OK;
        }
        log_info("scim-retry", "connector=%s method=%s status=%ld error=\"%s\" wait_ms=%lld",
                 c->conn.name, r->method, r->status, r->error, wait);
        sleep_ms(c, wait);
    }
}

static json_t *parse_body(const struct http_request *r)
{
    json_error_t jerr;

    return json_loadb(r->response.buf, r->response.len, 0, &jerr);
}

/* ---- authentication ----------------------------------------------------- */

static enum ids_err fetch_token(struct scim_conn *c, struct ids_error *err)
{
    enum ids_err ret;
    struct http_request r;
    struct strbuf cred = STRBUF_INIT;
    json_t *body = NULL;
    json_t *tok;
    json_t *exp;

    http_request_init(&r);
    http_request_reset(&r);
    r.method = "POST";
    strbuf_addstr(&r.url, c->token_url);
    r.content_type = "application/x-www-form-urlencoded";
    r.accept = "application/json";
    strbuf_addstr(&r.body, "grant_type=client_credentials");
    if (c->scope != NULL) {
        strbuf_addstr(&r.body, "&scope=");
        http_url_encode(&r.body, c->scope);
    }
    /* RFC 6749 2.3.1: client_secret_basic, with form-encoded id and secret */
    http_url_encode(&cred, c->client_id);
    strbuf_addch(&cred, ':');
    http_url_encode(&cred, c->secret.buf);
    strbuf_addstr(&r.auth, "Basic ");
    base64_encode(&r.auth, cred.buf, cred.len);
    memset(cred.buf, 0, cred.len);
    ret = http_perform(c->http, &r, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (r.curl_code != 0 || r.status != 200) {
        ret = scim_request_error(c, &r, err, "OAuth token request to %s", c->token_url);
        if (ret == IDS_EREJECTED || ret == IDS_ENOTFOUND) {
            ret = IDS_EREJECTED;
        }
        goto done;
    }
    body = parse_body(&r);
    tok = json_object_get(body, "access_token");
    if (!json_is_string(tok)) {
        ret = ids_error_set(err, IDS_EPROTO,
                            "OAuth token endpoint %s: no access_token in the answer", c->token_url);
        goto done;
    }
    strbuf_reset(&c->auth_header);
    strbuf_addf(&c->auth_header, "Bearer %s", json_string_value(tok));
    exp = json_object_get(body, "expires_in");
    c->token_expiry_ms = 0;
    if (json_is_integer(exp) && json_integer_value(exp) > 0) {
        long long life = json_integer_value(exp) * 1000;

        /* refresh when 90% of its life is gone, at least 5 s before */
        life = life - (life / 10 > 5000 ? life / 10 : 5000);
        c->token_expiry_ms = http_now_ms() + (life > 1000 ? life : 1000);
    }
    c->tokens_fetched++;
    log_debug("scim-token", "connector=%s expires_ms=%lld", c->conn.name, c->token_expiry_ms);

done:
    strbuf_release(&cred);
    json_decref(body);
    http_request_release(&r);
    return ret;
}

enum ids_err scim_auth_refresh(struct scim_conn *c, bool force, struct ids_error *err)
{
    if (c->auth != SCIM_AUTH_OAUTH) {
        return IDS_OK;
    }
    if (!force && c->auth_header.len > 0 &&
        (c->token_expiry_ms == 0 || http_now_ms() < c->token_expiry_ms)) {
        return IDS_OK;
    }
    return fetch_token(c, err);
}

static enum ids_err read_secrets(struct scim_conn *c, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    const struct config_values *o = &c->conn.cfg->opts;

    strbuf_reset(&c->secret);
    strbuf_reset(&c->auth_header);
    switch (c->auth) {
    case SCIM_AUTH_BEARER:
        ret = config_secret(o, "token", &c->secret, err);
        if (ret == IDS_OK) {
            strbuf_addf(&c->auth_header, "Bearer %s", c->secret.buf);
        }
        break;
    case SCIM_AUTH_BASIC: {
        struct strbuf cred = STRBUF_INIT;

        ret = config_secret(o, "password", &c->secret, err);
        if (ret == IDS_OK) {
            strbuf_addf(&cred, "%s:%s", c->username, c->secret.buf);
            strbuf_addstr(&c->auth_header, "Basic ");
            base64_encode(&c->auth_header, cred.buf, cred.len);
            memset(cred.buf, 0, cred.len);
        }
        strbuf_release(&cred);
        break;
    }
    case SCIM_AUTH_OAUTH:
        ret = config_secret(o, "client_secret", &c->secret, err);
        break;
    case SCIM_AUTH_NONE:
        break;
    }
    return ret;
}

/* ---- discovery ---------------------------------------------------------- */

static json_t *list_resources(json_t *body)
{
    if (json_is_array(body)) {
        return body;
    }
    return json_object_get(body, "Resources");
}

static void read_spc(struct scim_conn *c, json_t *spc)
{
    json_t *v;
    size_t i;

    c->spc_found = true;
    c->patch_supported = json_is_true(json_object_get(json_object_get(spc, "patch"), "supported"));
    v = json_object_get(spc, "bulk");
    c->bulk_supported = json_is_true(json_object_get(v, "supported"));
    c->bulk_max_ops = (long)json_integer_value(json_object_get(v, "maxOperations"));
    c->bulk_max_payload = (long)json_integer_value(json_object_get(v, "maxPayloadSize"));
    v = json_object_get(spc, "filter");
    c->filter_supported = json_is_true(json_object_get(v, "supported"));
    c->filter_max_results = (long)json_integer_value(json_object_get(v, "maxResults"));
    c->etag_supported = json_is_true(json_object_get(json_object_get(spc, "etag"), "supported"));
    c->sort_supported = json_is_true(json_object_get(json_object_get(spc, "sort"), "supported"));
    strvec_clear(&c->auth_schemes);
    v = json_object_get(spc, "authenticationSchemes");
    for (i = 0; json_is_array(v) && i < json_array_size(v); i++) {
        json_t *t = json_object_get(json_array_get(v, i), "type");

        if (json_is_string(t)) {
            strvec_push(&c->auth_schemes, json_string_value(t));
        }
    }
}

static bool name_matches(const char *want, const char *name, const char *endpoint)
{
    if (name != NULL && strcasecmp(want, name) == 0) {
        return true;
    }
    if (endpoint != NULL) {
        const char *e = endpoint[0] == '/' ? endpoint + 1 : endpoint;
        size_t wl = strlen(want);

        if (strcasecmp(e, want) == 0 ||
            (strlen(e) == wl + 1 && strncasecmp(e, want, wl) == 0 && tolower(e[wl]) == 's')) {
            return true;
        }
    }
    return false;
}

static enum ids_err resolve_types(struct scim_conn *c, json_t *rts, struct ids_error *err)
{
    size_t i;
    size_t k;

    for (i = 0; i < c->ntypes; i++) {
        struct scim_rtype *t = &c->types[i];
        json_t *found = NULL;
        json_t *ext;

        for (k = 0; json_is_array(rts) && k < json_array_size(rts); k++) {
            json_t *rt = json_array_get(rts, k);

            if (name_matches(t->resource_type, json_string_value(json_object_get(rt, "name")),
                             json_string_value(json_object_get(rt, "endpoint")))) {
                found = rt;
                break;
            }
        }
        if (found != NULL) {
            const char *ep = json_string_value(json_object_get(found, "endpoint"));
            const char *sc = json_string_value(json_object_get(found, "schema"));
            const char *nm = json_string_value(json_object_get(found, "name"));

            if (nm != NULL) {
                free(t->resource_type);
                t->resource_type = xstrdup(nm);
            }
            if (t->endpoint == NULL && ep != NULL) {
                t->endpoint = xstrdup(ep);
            }
            if (t->schema == NULL && sc != NULL) {
                t->schema = xstrdup(sc);
            }
            strvec_clear(&t->extensions);
            ext = json_object_get(found, "schemaExtensions");
            for (k = 0; json_is_array(ext) && k < json_array_size(ext); k++) {
                const char *u =
                    json_string_value(json_object_get(json_array_get(ext, k), "schema"));

                if (u != NULL) {
                    strvec_push(&t->extensions, u);
                }
            }
        } else if (name_matches(t->resource_type, "User", "/Users")) {
            if (t->endpoint == NULL) {
                t->endpoint = xstrdup("/Users");
            }
            if (t->schema == NULL) {
                t->schema = xstrdup(SCIM_CORE_USER);
            }
        } else if (name_matches(t->resource_type, "Group", "/Groups")) {
            if (t->endpoint == NULL) {
                t->endpoint = xstrdup("/Groups");
            }
            if (t->schema == NULL) {
                t->schema = xstrdup(SCIM_CORE_GROUP);
            }
        }
        if (t->endpoint == NULL || t->schema == NULL) {
            struct strbuf have = STRBUF_INIT;

            for (k = 0; json_is_array(rts) && k < json_array_size(rts); k++) {
                const char *nm = json_string_value(json_object_get(json_array_get(rts, k), "name"));

                strbuf_addf(&have, "%s%s", have.len ? ", " : "", nm ? nm : "?");
            }
            ids_error_set(err, IDS_ECONFIG,
                          "object type %s: the service declares no resource type %s (it has: "
                          "%s); set resource_type, or endpoint and schema",
                          t->name, t->resource_type, have.len ? have.buf : "none");
            strbuf_release(&have);
            return IDS_ECONFIG;
        }
        if (t->endpoint[0] != '/') {
            char *e = xmalloc(strlen(t->endpoint) + 2);

            e[0] = '/';
            memcpy(e + 1, t->endpoint, strlen(t->endpoint) + 1);
            free(t->endpoint);
            t->endpoint = e;
        }
        if (t->dn_attr == NULL) {
            t->dn_attr =
                xstrdup(strcasecmp(t->schema, SCIM_CORE_USER) == 0 ? "userName" : "displayName");
        }
        if (t->cfg->attributes.nr == 0 && strcasecmp(t->schema, SCIM_CORE_GROUP) == 0) {
            t->has_members = true;
        }
    }
    return IDS_OK;
}

/* GET one discovery endpoint: *out the parsed body, or NULL when the
 * service does not have it (404/501). */
static enum ids_err discover(struct scim_conn *c, const char *path, json_t **out,
                             struct ids_error *err)
{
    enum ids_err ret;
    struct http_request r;

    *out = NULL;
    http_request_init(&r);
    scim_request_prepare(c, &r, "GET", path);
    ret = perform(c, &r, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (r.curl_code != 0) {
        ret = scim_request_error(c, &r, err, "GET %s", path);
        goto done;
    }
    if (r.status == 404 || r.status == 501 || r.status == 400) {
        goto done;
    }
    if (r.status != 200) {
        ret = scim_request_error(c, &r, err, "GET %s", path);
        if (r.status == 401 || r.status == 403) {
            ret = IDS_EREJECTED;
        }
        goto done;
    }
    *out = parse_body(&r);
    if (*out == NULL) {
        ret = ids_error_set(err, IDS_EPROTO, "GET %s: the answer is not JSON", path);
    }

done:
    http_request_release(&r);
    return ret;
}

static enum ids_err scim_open(struct connector *conn, struct ids_error *err)
{
    struct scim_conn *c = (struct scim_conn *)conn;
    struct http_options ho;
    enum ids_err ret;
    json_t *spc = NULL;
    json_t *rts = NULL;
    json_t *schemas = NULL;
    size_t i;

    if (c->opened) {
        return IDS_OK;
    }
    memset(&ho, 0, sizeof(ho));
    ho.timeout_ms = c->timeout_ms;
    ho.connect_timeout_ms = c->connect_timeout_ms;
    ho.ca_file = c->ca_file;
    ho.tls_verify = c->tls_verify;
    ho.http2 = c->http2;
    ho.max_host_connections = c->concurrency;
    if (c->http == NULL) {
        ret = http_client_new(&ho, &c->http, err);
        if (ret != IDS_OK) {
            return ret;
        }
    }
    ret = read_secrets(c, err);
    if (ret != IDS_OK) {
        return ret;
    }
    ret = scim_auth_refresh(c, true, err);
    if (ret != IDS_OK) {
        return ret;
    }
    ret = discover(c, "/ServiceProviderConfig", &spc, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (spc != NULL) {
        read_spc(c, spc);
    } else {
        /* no discovery: assume what nearly every service has */
        c->patch_supported = true;
        c->filter_supported = true;
    }
    ret = discover(c, "/ResourceTypes", &rts, err);
    if (ret != IDS_OK) {
        goto done;
    }
    c->rt_found = rts != NULL;
    ret = resolve_types(c, list_resources(rts), err);
    if (ret != IDS_OK) {
        goto done;
    }
    ret = discover(c, "/Schemas", &schemas, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (schemas != NULL) {
        json_t *list = list_resources(schemas);

        c->schemas_found = true;
        for (i = 0; json_is_array(list) && i < json_array_size(list); i++) {
            scim_schemas_add_json(&c->schemas, json_array_get(list, i));
        }
    }
    c->opened = true;
    log_debug("scim-open",
              "connector=%s patch=%d bulk=%d filter=%d resource_types=%d schemas=%d http=%ld",
              c->conn.name, c->patch_supported, c->bulk_supported, c->filter_supported, c->rt_found,
              c->schemas_found, c->http_version);

done:
    json_decref(spc);
    json_decref(rts);
    json_decref(schemas);
    return ret;
}

/* ---- check -------------------------------------------------------------- */

static enum ids_err count_type(struct scim_conn *c, const struct scim_rtype *t, long *n,
                               struct ids_error *err)
{
    enum ids_err ret;
    struct http_request r;
    json_t *body = NULL;

    *n = -1;
    http_request_init(&r);
    scim_request_prepare(c, &r, "GET", t->endpoint);
    strbuf_addstr(&r.url, "?startIndex=1&count=1&attributes=id");
    if (t->filter != NULL) {
        strbuf_addstr(&r.url, "&filter=");
        http_url_encode(&r.url, t->filter);
    }
    ret = perform(c, &r, err);
    if (ret == IDS_OK && r.status != 200) {
        ret = scim_request_error(c, &r, err, "GET %s", t->endpoint);
    }
    if (ret == IDS_OK) {
        body = parse_body(&r);
        if (json_is_integer(json_object_get(body, "totalResults"))) {
            *n = (long)json_integer_value(json_object_get(body, "totalResults"));
        }
    }
    json_decref(body);
    http_request_release(&r);
    return ret;
}

bool scim_use_bulk(const struct scim_conn *c)
{
    return c->bulk_cfg != 0 && c->bulk_supported;
}

static bool use_patch(const struct scim_conn *c)
{
    return c->patch_cfg == 1 || (c->patch_cfg == -1 && c->patch_supported);
}

/* Configured attributes no schema defines: a misspelt name reads as
 * absent on every object. */
static void unknown_attributes(const struct scim_rtype *t, struct strbuf *report)
{
    struct strbuf unknown = STRBUF_INIT;
    size_t i;

    for (i = 0; t->cfg != NULL && i < t->cfg->attributes.nr; i++) {
        if (!scim_attr_known(t, t->cfg->attributes.v[i])) {
            strbuf_addf(&unknown, "%s%s", unknown.len ? ", " : "", t->cfg->attributes.v[i]);
        }
    }
    if (unknown.len > 0) {
        strbuf_addf(report,
                    "unknown attributes.%s: %s (in no schema of the service: misspelt? every "
                    "object would have none)\n",
                    t->name, unknown.buf);
    }
    strbuf_release(&unknown);
}

static enum ids_err scim_check(struct connector *conn, struct strbuf *report, struct ids_error *err)
{
    struct scim_conn *c = (struct scim_conn *)conn;
    enum ids_err ret;
    size_t i;
    size_t k;

    ret = scim_open(conn, err);
    if (ret != IDS_OK) {
        return ret;
    }
    strbuf_addf(report, "url: %s\n", c->url);
    strbuf_addf(report, "auth: %s\n",
                c->auth == SCIM_AUTH_BEARER  ? "bearer token: ok"
                : c->auth == SCIM_AUTH_BASIC ? "basic: ok"
                : c->auth == SCIM_AUTH_OAUTH ? "oauth client credentials: token obtained"
                                             : "none");
    strbuf_addf(report, "http_version: %s\n", c->http_version == 2 ? "HTTP/2" : "HTTP/1.1");
    strbuf_addf(report, "service_provider_config: %s\n", c->spc_found ? "found" : "absent");
    strbuf_addf(report, "patch: %s\n", c->patch_supported ? "supported" : "not supported");
    strbuf_addf(report, "updates: %s\n",
                use_patch(c) ? "PATCH" : "GET + PUT of the whole resource (PATCH not used)");
    if (c->bulk_supported) {
        strbuf_addf(report, "bulk: supported (maxOperations %ld, maxPayloadSize %ld)\n",
                    c->bulk_max_ops, c->bulk_max_payload);
        strbuf_addf(report, "creates_deletes: %s\n",
                    scim_use_bulk(c) ? "in /Bulk requests" : "one request each (bulk: no)");
    } else {
        strbuf_addstr(report, "bulk: not supported\n");
    }
    strbuf_addf(report, "filter: %s", c->filter_supported ? "supported" : "not supported");
    if (c->filter_max_results > 0) {
        strbuf_addf(report, " (maxResults %ld)", c->filter_max_results);
    }
    strbuf_addch(report, '\n');
    strbuf_addf(report, "etag: %s\n", c->etag_supported ? "supported" : "not supported");
    strbuf_addf(report, "sort: %s\n", c->sort_supported ? "supported" : "not supported");
    strbuf_addstr(report, "authentication_schemes:");
    for (i = 0; i < c->auth_schemes.nr; i++) {
        strbuf_addf(report, "%s%s", i ? ", " : " ", c->auth_schemes.v[i]);
    }
    strbuf_addch(report, '\n');
    strbuf_addf(report, "resource_types: %s\n",
                c->rt_found ? "found" : "absent (built-in User and Group assumed)");
    strbuf_addf(report, "schemas: %s (%zu attribute definitions known)\n",
                c->schemas_found ? "found" : "absent (built-in)", c->schemas.nr);
    for (i = 0; i < c->ntypes; i++) {
        const struct scim_rtype *t = &c->types[i];
        long n = -1;

        strbuf_addf(report, "objects.%s: resource type %s, endpoint %s, schema %s", t->name,
                    t->resource_type, t->endpoint, t->schema);
        for (k = 0; k < t->extensions.nr; k++) {
            strbuf_addf(report, "%s%s", k ? ", " : ", extensions ", t->extensions.v[k]);
        }
        strbuf_addch(report, '\n');
        ret = count_type(c, t, &n, err);
        if (ret != IDS_OK) {
            return ret;
        }
        strbuf_addf(report, "objects.%s.count: %ld\n", t->name, n);
        unknown_attributes(t, report);
    }
    return IDS_OK;
}

/* ---- reading ------------------------------------------------------------ */

#define MAX_PAGES_AHEAD 4

struct page_req {
    struct http_request req;
    long start;
    long count;
    bool busy;
    int attempt;
};

struct ritem {
    json_t *res;
    struct http_request *mreq; /* members fetch, or NULL */
    bool mstarted;
    int attempt;
};

struct connector_cursor {
    struct scim_conn *c;
    size_t ti;       /* current type */
    long next_start; /* next startIndex to ask for */
    long total;      /* totalResults, -1 until known */
    long step;       /* resources per page the service really gives */
    bool exhausted;  /* no more pages of this type to ask for */
    bool sequential; /* the service paged unexpectedly: one page at a time */
    struct page_req pages[MAX_PAGES_AHEAD];
    size_t npages_ahead;
    struct ritem *items; /* FIFO */
    size_t ihead, itail, ialloc;
    size_t mrunning;
};

static const struct scim_rtype *cur_type(struct connector_cursor *cur)
{
    return cur->ti < cur->c->ntypes ? &cur->c->types[cur->ti] : NULL;
}

static bool separate_members(const struct scim_rtype *t)
{
    return t->has_members && !t->members_in_listing;
}

/* ?attributes=... (or excludedAttributes=members) of a listing: the
 * top-level attributes configured (sub-attributes select their parent, which
 * every service understands). */
static void listing_attrs(const struct scim_conn *c, const struct scim_rtype *t, bool with_members,
                          struct strbuf *q)
{
    struct strbuf list = STRBUF_INIT;
    struct strvec seen = STRVEC_INIT;
    size_t i;

    if (t->cfg->attributes.nr == 0 || c->no_projection) {
        if (t->has_members && !with_members) {
            strbuf_addstr(q, "&excludedAttributes=members");
        }
        return;
    }
    for (i = 0; i <= t->cfg->attributes.nr; i++) {
        const char *n = i < t->cfg->attributes.nr ? t->cfg->attributes.v[i] : t->dn_attr;
        struct scim_path p;

        if (n == NULL || (strcasecmp(n, "members") == 0 && !with_members)) {
            continue;
        }
        scim_path_parse(n, &p);
        free(p.sub);
        p.sub = NULL;
        strbuf_reset(&list);
        scim_path_format(&p, &list);
        scim_path_release(&p);
        if (strvec_find(&seen, list.buf, true) < 0) {
            strvec_push(&seen, list.buf);
        }
    }
    strbuf_reset(&list);
    for (i = 0; i < seen.nr; i++) {
        strbuf_addf(&list, "%s%s", i ? "," : "", seen.v[i]);
    }
    if (list.len > 0) {
        strbuf_addstr(q, "&attributes=");
        http_url_encode(q, list.buf);
    }
    strbuf_release(&list);
    strvec_clear(&seen);
}

/* A 400 to a request with `attributes=`: some services (SCIMMY) cannot
 * project extension or sub-attributes. Ask for whole resources from now on;
 * true when the request should be sent again. */
static bool projection_refused(struct scim_conn *c, const struct http_request *r)
{
    if (r->curl_code != 0 || r->status != 400 || c->no_projection ||
        strstr(r->url.buf, "&attributes=") == NULL) {
        return false;
    }
    c->no_projection = true;
    log_info("scim-attributes",
             "connector=%s: the service refused an `attributes` selection (HTTP 400); whole "
             "resources are read from now on",
             c->conn.name);
    return true;
}

static enum ids_err page_start(struct connector_cursor *cur, struct page_req *p, long start,
                               struct ids_error *err)
{
    struct scim_conn *c = cur->c;
    const struct scim_rtype *t = cur_type(cur);
    enum ids_err ret;

    ret = scim_auth_refresh(c, false, err);
    if (ret != IDS_OK) {
        return ret;
    }
    scim_request_prepare(c, &p->req, "GET", t->endpoint);
    strbuf_addf(&p->req.url, "?startIndex=%ld&count=%ld", start, c->page_size);
    if (t->filter != NULL) {
        strbuf_addstr(&p->req.url, "&filter=");
        http_url_encode(&p->req.url, t->filter);
    }
    listing_attrs(c, t, !separate_members(t), &p->req.url);
    p->start = start;
    p->count = c->page_size;
    p->busy = true;
    return http_start(c->http, &p->req, err);
}

/* Ask for more pages while there is room ahead. */
static enum ids_err pages_fill(struct connector_cursor *cur, struct ids_error *err)
{
    size_t ahead = cur->sequential || cur->total < 0 ? 1 : MAX_PAGES_AHEAD;
    size_t i;
    size_t busy = 0;

    if ((long)ahead > cur->c->concurrency) {
        ahead = (size_t)cur->c->concurrency;
    }
    for (i = 0; i < MAX_PAGES_AHEAD; i++) {
        busy += cur->pages[i].busy;
    }
    for (i = 0; i < MAX_PAGES_AHEAD && busy < ahead && !cur->exhausted; i++) {
        enum ids_err ret;

        if (cur->pages[i].busy) {
            continue;
        }
        if (cur->total >= 0 && cur->next_start > cur->total) {
            cur->exhausted = true;
            break;
        }
        ret = page_start(cur, &cur->pages[i], cur->next_start, err);
        if (ret != IDS_OK) {
            return ret;
        }
        cur->pages[i].attempt = 0;
        cur->next_start += cur->step;
        busy++;
    }
    return IDS_OK;
}

static void items_push(struct connector_cursor *cur, json_t *res)
{
    struct ritem *it;

    if (cur->itail == cur->ialloc && cur->ihead > 0) {
        memmove(cur->items, cur->items + cur->ihead, (cur->itail - cur->ihead) * sizeof(*it));
        cur->itail -= cur->ihead;
        cur->ihead = 0;
    }
    ALLOC_GROW(cur->items, cur->itail + 1, cur->ialloc);
    it = &cur->items[cur->itail++];
    memset(it, 0, sizeof(*it));
    it->res = json_incref(res);
}

static void item_release(struct connector_cursor *cur, struct ritem *it)
{
    if (it->mreq != NULL) {
        if (it->mreq->running) {
            http_cancel(cur->c->http, it->mreq);
            cur->mrunning--;
        }
        http_request_release(it->mreq);
        free(it->mreq);
    }
    json_decref(it->res);
    memset(it, 0, sizeof(*it));
}

static void pages_cancel(struct connector_cursor *cur)
{
    size_t i;

    for (i = 0; i < MAX_PAGES_AHEAD; i++) {
        if (cur->pages[i].busy) {
            http_cancel(cur->c->http, &cur->pages[i].req);
            cur->pages[i].busy = false;
        }
    }
}

/* The busy page with the lowest start (the one to consume next). */
static struct page_req *pages_first(struct connector_cursor *cur)
{
    struct page_req *best = NULL;
    size_t i;

    for (i = 0; i < MAX_PAGES_AHEAD; i++) {
        if (cur->pages[i].busy && (best == NULL || cur->pages[i].start < best->start)) {
            best = &cur->pages[i];
        }
    }
    return best;
}

/* Wait for the next page of the current type and queue its resources.
 * *none when the type has no more. */
static enum ids_err next_page(struct connector_cursor *cur, bool *none, struct ids_error *err)
{
    struct scim_conn *c = cur->c;
    const struct scim_rtype *t = cur_type(cur);
    enum ids_err ret;
    struct page_req *p;
    json_t *body = NULL;
    json_t *list;
    json_t *total;
    size_t i;
    long got;

    *none = false;
    ret = pages_fill(cur, err);
    if (ret != IDS_OK) {
        return ret;
    }
    p = pages_first(cur);
    if (p == NULL) {
        *none = true;
        return IDS_OK;
    }
    while (!p->req.finished) {
        ret = http_run(c->http, 1000, err);
        if (ret != IDS_OK) {
            return ret;
        }
    }
    if (p->req.status == 401 && c->auth == SCIM_AUTH_OAUTH && p->attempt == 0) {
        p->attempt = 1;
        ret = scim_auth_refresh(c, true, err);
        if (ret == IDS_OK) {
            ret = page_start(cur, p, p->start, err);
        }
        return ret;
    }
    {
        long long wait = 0;

        if (want_retry(c, &p->req, ++p->attempt, &wait)) {
            log_info("scim-retry", "connector=%s read page start=%ld status=%ld wait_ms=%lld",
                     c->conn.name, p->start, p->req.status, wait);
            sleep_ms(c, wait);
            ret = page_start(cur, p, p->start, err);
            return ret;
        }
    }
    if (projection_refused(c, &p->req)) {
        return page_start(cur, p, p->start, err);
    }
    p->busy = false;
    if (p->req.curl_code != 0 || p->req.status != 200) {
        return scim_request_error(c, &p->req, err, "object type %s: GET %s startIndex=%ld", t->name,
                                  t->endpoint, p->start);
    }
    if (p->req.http_version != 0) {
        c->http_version = p->req.http_version;
    }
    body = parse_body(&p->req);
    list = list_resources(body);
    if (body == NULL || (list != NULL && !json_is_array(list))) {
        json_decref(body);
        return ids_error_set(err, IDS_EPROTO,
                             "object type %s: GET %s startIndex=%ld: not a SCIM list response",
                             t->name, t->endpoint, p->start);
    }
    got = (long)json_array_size(list);
    total = json_object_get(body, "totalResults");
    if (cur->total < 0) {
        cur->total = json_is_integer(total) ? (long)json_integer_value(total) : -1;
        if (cur->total < 0) {
            cur->sequential = true; /* no total: page until an empty one */
        }
        if (got > 0 && got < cur->step && (cur->total < 0 || p->start + got - 1 < cur->total)) {
            cur->step = got; /* the service caps pages (maxResults) */
            cur->next_start = p->start + got;
        }
    }
    for (i = 0; i < (size_t)got; i++) {
        items_push(cur, json_array_get(list, i));
    }
    if (got == 0) {
        cur->exhausted = true;
        pages_cancel(cur);
    } else if (got != cur->step && (cur->total < 0 || p->start + got - 1 < cur->total)) {
        /* a short page in the middle: continue right after it, one by one */
        pages_cancel(cur);
        cur->sequential = true;
        cur->next_start = p->start + got;
    } else if (cur->sequential && cur->total < 0) {
        cur->next_start = p->start + got;
    }
    json_decref(body);
    return IDS_OK;
}

static enum ids_err member_start(struct connector_cursor *cur, struct ritem *it,
                                 struct ids_error *err)
{
    struct scim_conn *c = cur->c;
    const struct scim_rtype *t = cur_type(cur);
    enum ids_err ret;
    const char *id = json_string_value(json_object_get(it->res, "id"));

    ret = scim_auth_refresh(c, false, err);
    if (ret != IDS_OK) {
        return ret;
    }
    if (it->mreq == NULL) {
        it->mreq = xmalloc(sizeof(*it->mreq));
        http_request_init(it->mreq);
    }
    scim_request_prepare(c, it->mreq, "GET", t->endpoint);
    strbuf_addch(&it->mreq->url, '/');
    http_url_encode(&it->mreq->url, id != NULL ? id : "");
    strbuf_addstr(&it->mreq->url, "?attributes=members");
    it->mstarted = true;
    cur->mrunning++;
    return http_start(c->http, it->mreq, err);
}

/* Start member fetches for queued groups, up to `concurrency` at once. */
static enum ids_err members_fill(struct connector_cursor *cur, struct ids_error *err)
{
    size_t i;

    for (i = cur->ihead; i < cur->itail && cur->mrunning < (size_t)cur->c->concurrency; i++) {
        struct ritem *it = &cur->items[i];

        if (!it->mstarted && json_is_string(json_object_get(it->res, "id"))) {
            enum ids_err ret = member_start(cur, it, err);

            if (ret != IDS_OK) {
                return ret;
            }
        }
    }
    return IDS_OK;
}

static enum ids_err member_wait(struct connector_cursor *cur, struct ritem *it,
                                struct ids_error *err)
{
    struct scim_conn *c = cur->c;
    enum ids_err ret;

    for (;;) {
        long long wait = 0;
        json_t *body;

        if (!it->mstarted) {
            ret = member_start(cur, it, err);
            if (ret != IDS_OK) {
                return ret;
            }
        }
        while (!it->mreq->finished) {
            ret = http_run(c->http, 1000, err);
            if (ret != IDS_OK) {
                return ret;
            }
        }
        cur->mrunning--;
        it->mstarted = false;
        if (want_retry(c, it->mreq, ++it->attempt, &wait)) {
            sleep_ms(c, wait);
            continue;
        }
        if (it->mreq->status == 404) {
            /* deleted since the listing: yield it without members; the next
             * import sees it gone */
            return IDS_OK;
        }
        if (it->mreq->curl_code != 0 || it->mreq->status != 200) {
            return scim_request_error(c, it->mreq, err, "members of %s",
                                      json_string_value(json_object_get(it->res, "id")));
        }
        body = parse_body(it->mreq);
        if (json_is_object(body) && json_object_get(body, "members") != NULL) {
            json_object_set(it->res, "members", json_object_get(body, "members"));
        }
        json_decref(body);
        return IDS_OK;
    }
}

static enum ids_err type_begin(struct connector_cursor *cur)
{
    size_t i;

    pages_cancel(cur);
    for (i = cur->ihead; i < cur->itail; i++) {
        item_release(cur, &cur->items[i]);
    }
    cur->ihead = cur->itail = 0;
    cur->mrunning = 0;
    cur->next_start = 1;
    cur->total = -1;
    cur->step = cur->c->page_size;
    cur->exhausted = false;
    cur->sequential = false;
    return IDS_OK;
}

static enum ids_err scim_read_full(struct connector *conn, struct connector_cursor **out,
                                   struct ids_error *err)
{
    struct scim_conn *c = (struct scim_conn *)conn;
    struct connector_cursor *cur;
    enum ids_err ret;
    size_t i;

    *out = NULL;
    ret = scim_open(conn, err);
    if (ret != IDS_OK) {
        return ret;
    }
    cur = xcalloc(1, sizeof(*cur));
    cur->c = c;
    for (i = 0; i < MAX_PAGES_AHEAD; i++) {
        http_request_init(&cur->pages[i].req);
    }
    type_begin(cur);
    *out = cur;
    return IDS_OK;
}

static enum ids_err scim_cursor_next(struct connector_cursor *cur, struct read_item *item,
                                     struct ids_error *err)
{
    enum ids_err ret;

    for (;;) {
        const struct scim_rtype *t = cur_type(cur);
        struct ritem *it;
        struct entry *e = NULL;

        if (t == NULL) {
            return IDS_DONE;
        }
        if (cur->ihead == cur->itail) {
            bool none = false;

            ret = next_page(cur, &none, err);
            if (ret != IDS_OK) {
                return ret;
            }
            if (none) {
                cur->ti++;
                type_begin(cur);
            }
            continue;
        }
        it = &cur->items[cur->ihead];
        if (separate_members(t)) {
            ret = members_fill(cur, err);
            if (ret == IDS_OK && json_is_string(json_object_get(it->res, "id"))) {
                ret = member_wait(cur, it, err);
            }
            if (ret != IDS_OK) {
                return ret;
            }
        }
        /* keep the next pages coming while this one is consumed */
        ret = pages_fill(cur, err);
        if (ret != IDS_OK) {
            return ret;
        }
        ret = scim_resource_to_entry(t, it->res, &e, err);
        item_release(cur, it);
        cur->ihead++;
        if (ret != IDS_OK) {
            ids_error_prefix(err, "connector %s", cur->c->conn.name);
            return ret; /* IDS_EINPUT: one bad object, the read goes on */
        }
        item->op = CHANGE_ADD;
        item->entry = e;
        return IDS_OK;
    }
}

static void scim_cursor_free(struct connector_cursor *cur)
{
    size_t i;

    if (cur == NULL) {
        return;
    }
    pages_cancel(cur);
    for (i = 0; i < MAX_PAGES_AHEAD; i++) {
        http_request_release(&cur->pages[i].req);
    }
    for (i = cur->ihead; i < cur->itail; i++) {
        item_release(cur, &cur->items[i]);
    }
    free(cur->items);
    free(cur);
}

/* ---- lookup ------------------------------------------------------------- */

static enum ids_err scim_lookup(struct connector *conn, const char *type, const char *attr,
                                const char *value, struct entry **out, struct ids_error *err)
{
    struct scim_conn *c = (struct scim_conn *)conn;
    const struct scim_rtype *t;
    struct http_request r;
    struct strbuf f = STRBUF_INIT;
    enum ids_err ret;
    json_t *body = NULL;
    json_t *res = NULL;

    *out = NULL;
    ret = scim_open(conn, err);
    if (ret != IDS_OK) {
        return ret;
    }
    t = scim_type_find(c, type);
    if (t == NULL) {
        return ids_error_set(err, IDS_EINVAL, "unknown object type %s", type ? type : "(null)");
    }
    http_request_init(&r);
    do {
        scim_request_prepare(c, &r, "GET", t->endpoint);
        strbuf_reset(&f);
        if (strcasecmp(attr, "id") == 0) {
            strbuf_addch(&r.url, '/');
            http_url_encode(&r.url, value);
            strbuf_addch(&r.url, '?');
        } else {
            scim_filter_eq(&f, attr, value);
            strbuf_addstr(&r.url, "?startIndex=1&count=2&filter=");
            http_url_encode(&r.url, f.buf);
        }
        listing_attrs(c, t, true, &r.url);
        ret = perform(c, &r, err);
        if (ret != IDS_OK) {
            goto done;
        }
    } while (projection_refused(c, &r));
    if (r.status == 404) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "no %s with %s=%s", t->name, attr, value);
        goto done;
    }
    if (r.curl_code != 0 || r.status != 200) {
        ret = scim_request_error(c, &r, err, "looking up %s %s=%s", t->name, attr, value);
        goto done;
    }
    body = parse_body(&r);
    if (strcasecmp(attr, "id") == 0) {
        res = json_incref(body);
    } else {
        json_t *list = list_resources(body);

        if (json_array_size(list) > 1) {
            ret =
                ids_error_set(err, IDS_EINPUT, "more than one %s with %s=%s", t->name, attr, value);
            goto done;
        }
        res = json_incref(json_array_get(list, 0));
    }
    if (res == NULL) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "no %s with %s=%s", t->name, attr, value);
        goto done;
    }
    ret = scim_resource_to_entry(t, res, out, err);

done:
    json_decref(res);
    json_decref(body);
    strbuf_release(&f);
    http_request_release(&r);
    return ret;
}

const struct connector_ops scim_connector_ops = {
    .name = "scim",
    .caps = CONN_CAP_READ | CONN_CAP_WRITE | CONN_CAP_ANCHOR_ON_ADD,
    .options = scim_options,
    .object_options = scim_object_options,
    .create = scim_create,
    .open = scim_open,
    .close = scim_close,
    .check = scim_check,
    .read_full = scim_read_full,
    .cursor_next = scim_cursor_next,
    .cursor_free = scim_cursor_free,
    .export_begin = scim_export_begin,
    .submit = scim_submit,
    .poll = scim_poll,
    .export_end = scim_export_end,
    .lookup = scim_lookup,
};
