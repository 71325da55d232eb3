/* http.h - a small wrapper around libcurl's multi interface.
 *
 * One struct http_client holds a curl multi handle (its connection cache:
 * connections are kept alive and reused, HTTP/2 streams are multiplexed when
 * the server offers HTTP/2 over TLS) and a pool of easy handles. Requests are
 * struct http_request values owned by the caller: fill method, url, body and
 * headers, http_start() them, and drive the transfers with http_run(), which
 * calls each finished request's `done` callback. http_perform() is the
 * blocking form for one request (other running requests progress meanwhile
 * and their callbacks are called as usual).
 *
 * No request is ever resent by this layer. When `no_resend` is set, libcurl's
 * own silent resend of a request on a fresh connection after the reused one
 * died without an answer (it does that for POST too) is refused: the request
 * fails with `maybe_processed` set, so that the caller can check whether the
 * server acted on it before sending it again. Response bodies are capped (options.max_response).
 */
#ifndef IDSYNC_UTIL_HTTP_H
#define IDSYNC_UTIL_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"
#include "util/strbuf.h"

struct http_options {
    long timeout_ms;           /* whole request, 0 = none */
    long connect_timeout_ms;   /* 0 = libcurl's default */
    const char *ca_file;       /* PEM bundle; NULL = the system store (copied) */
    bool tls_verify;           /* verify peer certificate and host name */
    bool http2;                /* offer HTTP/2 (ALPN over TLS); HTTP/1.1 otherwise */
    long max_host_connections; /* 0 = unlimited */
    size_t max_response;       /* cap of one response body; 0 = 256 MiB */
};

struct http_client;

struct http_request {
    /* ---- in (set by the caller before http_start) ---- */
    const char *method;       /* "GET", "POST", "PUT", "PATCH", "DELETE"; static string */
    struct strbuf url;        /* absolute URL */
    struct strbuf body;       /* request body (sent for POST/PUT/PATCH) */
    const char *content_type; /* of the body; NULL = application/scim+json */
    const char *accept;       /* NULL = application/scim+json, application/json */
    struct strbuf auth;       /* Authorization header value, or empty; never logged */
    bool no_resend;           /* see the file comment */
    void (*done)(struct http_request *req); /* called by http_run when finished; MAY be NULL */
    void *arg;                              /* for the callback */

    /* ---- out (valid once `finished`) ---- */
    bool finished;
    int curl_code;             /* CURLcode; 0 when an HTTP response arrived */
    long status;               /* HTTP status; 0 when none */
    long http_version;         /* 1 (1.x), 2, 3 or 0 */
    bool maybe_processed;      /* transport failure after (part of) the request was sent */
    char error[256];           /* transport error text (curl's) */
    struct strbuf response;    /* body, capped */
    struct strbuf retry_after; /* Retry-After header, trimmed; empty when absent */
    double seconds;            /* total time */

    /* ---- private ---- */
    void *easy;
    struct http_client *client;
    void *headers;     /* struct curl_slist * */
    int attempts_sent; /* times libcurl started sending it (see no_resend) */
    bool running;
};

/* Create a client. IDS_EINTERNAL when libcurl cannot be set up. */
enum ids_err http_client_new(const struct http_options *opts, struct http_client **out,
                             struct ids_error *err);
/* Abort running requests (their callbacks are not called) and free. NULL-safe. */
void http_client_free(struct http_client *c);

void http_request_init(struct http_request *r);
/* Clear the out fields and the in buffers for reuse (method, done, arg kept). */
void http_request_reset(struct http_request *r);
/* Free the buffers. The request MUST NOT be running. */
void http_request_release(struct http_request *r);

/* Start a request (its buffers must stay untouched until it finishes). */
enum ids_err http_start(struct http_client *c, struct http_request *r, struct ids_error *err);
/* Abort a running request without calling its callback. */
void http_cancel(struct http_client *c, struct http_request *r);
/* Number of running requests. */
size_t http_running(const struct http_client *c);
/* Progress every transfer; when none finishes at once, wait up to wait_ms
 * for one. Calls the callbacks of the finished requests. */
enum ids_err http_run(struct http_client *c, long wait_ms, struct ids_error *err);
/* Start r and run until it finished. */
enum ids_err http_perform(struct http_client *c, struct http_request *r, struct ids_error *err);

/* Percent-encode s for a URL query value (RFC 3986 unreserved kept). */
void http_url_encode(struct strbuf *out, const char *s);
/* Milliseconds of a monotonic clock. */
long long http_now_ms(void);

#endif
