/* http.c - the daemon's HTTP server (libmicrohttpd): address, TLS, bearer
 * token, Host check, request bodies, the embedded console, and dispatch to
 * api.c and metrics.c.
 *
 * Security model: bound to loopback by default, where any local user may
 * read it (as with the store file, protect the host). Any other address
 * needs a bearer token (serve.token_file), and TLS when tls_cert_file and
 * tls_key_file are set. Without a token the Host header must name a
 * loopback address (DNS rebinding), and every POST must carry
 * Content-Type: application/json (a cross-site form cannot trigger a cycle).
 */
#include "serve/serve.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "util/log.h"
#include "util/mem.h"
#include "util/banned.h"

#define BODY_MAX (64u * 1024u)

struct http_req {
    struct strbuf body;
    bool too_big;
};

const char *serve_arg(const struct serve_call *c, const char *name)
{
    return MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, name);
}

static void reply_text(struct serve_reply *r, unsigned status, const char *ctype, const char *text)
{
    r->status = status;
    r->ctype = ctype;
    strbuf_reset(&r->body);
    strbuf_addstr(&r->body, text);
}

static void reply_error(struct serve_reply *r, unsigned status, const char *code, const char *msg)
{
    r->status = status;
    r->ctype = "application/json";
    strbuf_reset(&r->body);
    strbuf_addstr(&r->body, "{\"error\":");
    strbuf_add_json_str(&r->body, code, strlen(code));
    strbuf_addstr(&r->body, ",\"message\":");
    strbuf_add_json_str(&r->body, msg, strlen(msg));
    strbuf_addstr(&r->body, "}\n");
}

/* Constant-time comparison of the presented token. */
static bool token_ok(const struct serve_daemon *d, struct MHD_Connection *conn)
{
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    size_t tlen = strlen(d->token);
    size_t hlen;
    unsigned char diff = 0;
    size_t i;

    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        return false;
    }
    h += 7;
    hlen = strlen(h);
    for (i = 0; i < tlen; i++) {
        diff |= (unsigned char)(d->token[i] ^ (i < hlen ? h[i] : 0));
    }
    return diff == 0 && hlen == tlen;
}

/* Without a token, only loopback names in Host (or no Host: HTTP/1.0). */
static bool host_ok(struct MHD_Connection *conn)
{
    static const char *const names[] = {"127.0.0.1", "localhost", "[::1]", NULL};
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    size_t i;

    if (h == NULL) {
        return true;
    }
    for (i = 0; names[i] != NULL; i++) {
        size_t n = strlen(names[i]);

        if (strncasecmp(h, names[i], n) == 0 && (h[n] == '\0' || h[n] == ':')) {
            return true;
        }
    }
    return false;
}

static const struct console_asset *find_asset(const char *path)
{
    size_t i;

    if (strcmp(path, "/") == 0) {
        path = "/index.html";
    }
    for (i = 0; console_assets[i].path != NULL; i++) {
        if (strcmp(console_assets[i].path, path) == 0) {
            return &console_assets[i];
        }
    }
    return NULL;
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, struct serve_reply *r,
                                  bool cacheable)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;
    size_t len = 0;
    char *body = strbuf_detach(&r->body, &len);

    resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", r->ctype ? r->ctype : "application/json");
    MHD_add_response_header(resp, "Cache-Control", cacheable ? "max-age=300" : "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                            "form-action 'self'; base-uri 'none'");
    if (r->status == MHD_HTTP_UNAUTHORIZED) {
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"idsync\"");
    }
    ret = MHD_queue_response(conn, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_asset(struct MHD_Connection *conn, const struct console_asset *a)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", a->ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                            "form-action 'self'; base-uri 'none'");
    ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static bool json_content(struct MHD_Connection *conn)
{
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");

    return ct != NULL && strncasecmp(ct, "application/json", 16) == 0;
}

static void dispatch(struct serve_daemon *d, struct serve_call *c, struct serve_reply *r)
{
    bool is_get = strcmp(c->method, "GET") == 0 || strcmp(c->method, "HEAD") == 0;
    bool is_api = strncmp(c->path, "/api/", 5) == 0;
    bool is_metrics = strcmp(c->path, "/metrics") == 0;

    if (d->token == NULL && !host_ok(c->conn)) {
        reply_error(r, MHD_HTTP_MISDIRECTED_REQUEST, "host-not-allowed",
                    "without a token only loopback host names are served");
        return;
    }
    if (strcmp(c->path, "/healthz") == 0) {
        reply_text(r, MHD_HTTP_OK, "text/plain; charset=utf-8", "ok\n");
        return;
    }
    if (!is_api && !is_metrics) {
        reply_error(r, MHD_HTTP_NOT_FOUND, "not-found", "no such page");
        return;
    }
    if (d->token != NULL && !token_ok(d, c->conn)) {
        reply_error(r, MHD_HTTP_UNAUTHORIZED, "unauthorized",
                    "this daemon needs \"Authorization: Bearer TOKEN\" (serve.token_file)");
        return;
    }
    if (!is_get && strcmp(c->method, "POST") != 0) {
        reply_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, "method", "GET or POST only");
        return;
    }
    if (!is_get && !json_content(c->conn)) {
        reply_error(r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "content-type",
                    "POST needs Content-Type: application/json");
        return;
    }
    pthread_rwlock_rdlock(&d->cfg_lock);
    pthread_mutex_lock(&d->http_mu);
    if (is_metrics) {
        serve_metrics(d, r);
    } else {
        serve_api(d, c, r);
    }
    pthread_mutex_unlock(&d->http_mu);
    pthread_rwlock_unlock(&d->cfg_lock);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct serve_daemon *d = cls;
    struct http_req *hr = *req_cls;
    struct serve_reply reply = {200, "application/json", STRBUF_INIT};
    struct serve_call call = {0};
    const struct console_asset *asset;
    enum MHD_Result ret;

    if (hr == NULL) {
        hr = xcalloc(1, sizeof(*hr));
        strbuf_init(&hr->body, 0);
        hr->body.max = BODY_MAX;
        *req_cls = hr;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (strbuf_add_checked(&hr->body, upload_data, *upload_data_size) != IDS_OK) {
            hr->too_big = true;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if ((strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) &&
        strncmp(url, "/api/", 5) != 0) {
        asset = d->console ? find_asset(url) : NULL;
        if (asset != NULL) {
            if (d->token == NULL && !host_ok(conn)) {
                reply_error(&reply, MHD_HTTP_MISDIRECTED_REQUEST, "host-not-allowed",
                            "without a token only loopback host names are served");
                return send_reply(conn, &reply, false);
            }
            return send_asset(conn, asset);
        }
    }
    call.conn = conn;
    call.method = method;
    call.path = url;
    call.body = hr->body.buf;
    call.body_len = hr->body.len;
    if (hr->too_big) {
        reply_error(&reply, MHD_HTTP_CONTENT_TOO_LARGE, "too-big", "request body over 64 KiB");
    } else {
        dispatch(d, &call, &reply);
    }
    if (reply.status >= 500) {
        log_warn("http", "method=%s path=%s status=%u", method, url, reply.status);
    } else if (strcmp(method, "POST") == 0) {
        log_info("http", "method=%s path=%s status=%u", method, url, reply.status);
    } else {
        log_debug("http", "method=%s path=%s status=%u", method, url, reply.status);
    }
    ret = send_reply(conn, &reply, false);
    strbuf_release(&reply.body);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_req *hr = *req_cls;

    if (hr != NULL) {
        strbuf_release(&hr->body);
        free(hr);
        *req_cls = NULL;
    }
}

static void on_mhd_log(void *cls, const char *fm, va_list ap)
{
    struct strbuf msg = STRBUF_INIT;
    struct strbuf q = STRBUF_INIT;

    strbuf_vaddf(&msg, fm, ap);
    strbuf_trim(&msg);
    log_warn("http-server", "message=%s", serve_logq(&q, msg.buf));
    strbuf_release(&msg);
    strbuf_release(&q);
}

static bool addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    }
    return false;
}

/* "host:port", "[v6]:port" -> host, port (strings owned by the caller). */
static enum ids_err split_listen(const char *listen, struct strbuf *host, struct strbuf *port,
                                 struct ids_error *err)
{
    const char *colon;

    if (listen[0] == '[') {
        const char *end = strchr(listen, ']');

        if (end == NULL || end[1] != ':') {
            return ids_error_set(err, IDS_ECONFIG, "serve.listen %s: expected [ADDRESS]:PORT",
                                 listen);
        }
        strbuf_add(host, listen + 1, (size_t)(end - listen - 1));
        strbuf_addstr(port, end + 2);
    } else {
        colon = strrchr(listen, ':');
        if (colon == NULL) {
            return ids_error_set(err, IDS_ECONFIG, "serve.listen %s: expected ADDRESS:PORT",
                                 listen);
        }
        strbuf_add(host, listen, (size_t)(colon - listen));
        strbuf_addstr(port, colon + 1);
    }
    if (host->len == 0) {
        strbuf_addstr(host, "127.0.0.1");
    }
    if (port->len == 0 || strspn(port->buf, "0123456789") != port->len || port->len > 5) {
        return ids_error_set(err, IDS_ECONFIG, "serve.listen %s: bad port", listen);
    }
    return IDS_OK;
}

static enum ids_err read_pem(struct serve_daemon *d, const char *key, char **out,
                             struct ids_error *err)
{
    const char *val = config_get_str(&d->cfg->serve, key);
    struct strbuf sb = STRBUF_INIT;
    char *path = NULL;
    enum ids_err ret = IDS_OK;

    *out = NULL;
    if (val == NULL || val[0] == '\0') {
        goto done;
    }
    path = config_path(d->cfg, val);
    sb.max = 1024 * 1024;
    ret = strbuf_read_file(&sb, path, err);
    if (ret != IDS_OK) {
        ids_error_prefix(err, "serve.%s", key);
        goto done;
    }
    *out = strbuf_detach(&sb, NULL);

done:
    free(path);
    strbuf_release(&sb);
    return ret;
}

enum ids_err serve_http_start(struct serve_daemon *d, struct ids_error *err)
{
    struct strbuf host = STRBUF_INIT;
    struct strbuf port = STRBUF_INIT;
    struct addrinfo hints = {0};
    struct addrinfo *ai = NULL;
    const union MHD_DaemonInfo *info;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
    char addrtext[INET6_ADDRSTRLEN] = "";
    enum ids_err ret;
    int rc;

    ret = split_listen(d->listen, &host, &port, err);
    if (ret != IDS_OK) {
        goto done;
    }
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host.buf, port.buf, &hints, &ai);
    if (rc != 0 || ai == NULL) {
        ret = ids_error_set(err, IDS_ECONFIG, "serve.listen %s: %s", d->listen, gai_strerror(rc));
        goto done;
    }
    d->loopback = addr_is_loopback(ai->ai_addr);
    if (!d->loopback && d->token == NULL) {
        ret = ids_error_set(err, IDS_ECONFIG,
                            "serve.listen %s is not a loopback address: set serve.token_file "
                            "(a bearer token) and preferably tls_cert_file/tls_key_file",
                            d->listen);
        goto done;
    }
    ret = read_pem(d, "tls_cert_file", &d->tls_cert, err);
    if (ret == IDS_OK) {
        ret = read_pem(d, "tls_key_file", &d->tls_key, err);
    }
    if (ret != IDS_OK) {
        goto done;
    }
    if ((d->tls_cert == NULL) != (d->tls_key == NULL)) {
        ret = ids_error_set(err, IDS_ECONFIG, "serve: tls_cert_file and tls_key_file go together");
        goto done;
    }
    if (d->tls_cert != NULL) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            ret =
                ids_error_set(err, IDS_ECONFIG, "serve: this libmicrohttpd was built without TLS");
            goto done;
        }
        flags |= MHD_USE_TLS;
        d->tls = true;
    }
    if (ai->ai_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    if (!d->loopback && !d->tls) {
        log_warn("serve-start",
                 "listen=%s note=\"not loopback and no TLS: the bearer token "
                 "travels in clear text\"",
                 d->listen);
    }
    d->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, d, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, d,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, d,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)64, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)60, d->tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, d->tls_cert,
        MHD_OPTION_HTTPS_MEM_KEY, d->tls_key, MHD_OPTION_END);
    if (d->mhd == NULL) {
        ret =
            ids_error_set(err, IDS_EUNREACHABLE, "serve.listen %s: cannot listen there", d->listen);
        goto done;
    }
    info = MHD_get_daemon_info(d->mhd, MHD_DAEMON_INFO_BIND_PORT);
    if (ai->ai_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, addrtext,
                  sizeof(addrtext));
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, addrtext,
                  sizeof(addrtext));
    }
    {
        struct strbuf b = STRBUF_INIT;

        strbuf_addf(&b, ai->ai_family == AF_INET6 ? "[%s]:%u" : "%s:%u", addrtext,
                    info ? (unsigned)info->port : 0u);
        d->bound = strbuf_detach(&b, NULL);
    }

done:
    if (ai != NULL) {
        freeaddrinfo(ai);
    }
    strbuf_release(&host);
    strbuf_release(&port);
    return ret;
}

void serve_http_stop(struct serve_daemon *d)
{
    if (d->mhd != NULL) {
        MHD_stop_daemon(d->mhd);
        d->mhd = NULL;
    }
}
