/* http.c - libcurl multi wrapper, see http.h. */
#include "util/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/mem.h"
#include "util/banned.h"

#define HTTP_DEFAULT_MAX_RESPONSE ((size_t)256 << 20)

struct http_client {
    CURLM *multi;
    int epfd;           /* sockets libcurl asks us to watch */
    long long timer_at; /* when libcurl wants curl_multi_socket_action(TIMEOUT); -1 none */
    struct http_options opts;
    char *ca_file;
    CURL **idle; /* pool of easy handles */
    size_t nidle;
    size_t aidle;
    size_t running;
};

static bool curl_ready;

long long http_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void http_url_encode(struct strbuf *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p;

    for (p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            strbuf_addch(out, *p);
        } else {
            strbuf_addch(out, '%');
            strbuf_addch(out, hex[*p >> 4]);
            strbuf_addch(out, hex[*p & 15]);
        }
    }
}

/* libcurl's socket interface: it tells which sockets to watch for what,
 * epoll watches them, and only the ready ones are handed back (no poll over
 * every connection for every request). */
static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct http_client *c = userp;
    struct epoll_event ev;

    (void)e;
    memset(&ev, 0, sizeof(ev));
    ev.data.fd = s;
    if (what == CURL_POLL_REMOVE) {
        if (socketp != NULL) {
            /* ignored: the socket may be closed already */
            epoll_ctl(c->epfd, EPOLL_CTL_DEL, s, NULL);
            curl_multi_assign(c->multi, s, NULL);
        }
        return 0;
    }
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    if (socketp != NULL) {
        if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT) {
            epoll_ctl(c->epfd, EPOLL_CTL_ADD, s, &ev);
        }
    } else {
        if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST) {
            epoll_ctl(c->epfd, EPOLL_CTL_MOD, s, &ev);
        }
        curl_multi_assign(c->multi, s, c); /* marks the socket as watched */
    }
    return 0;
}

static int on_timer(CURLM *m, long timeout_ms, void *userp)
{
    struct http_client *c = userp;

    (void)m;
    c->timer_at = timeout_ms < 0 ? -1 : http_now_ms() + timeout_ms;
    return 0;
}

enum ids_err http_client_new(const struct http_options *opts, struct http_client **out,
                             struct ids_error *err)
{
    struct http_client *c;

    *out = NULL;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            return ids_error_set(err, IDS_EINTERNAL, "libcurl initialisation failed");
        }
        curl_ready = true;
    }
    c = xcalloc(1, sizeof(*c));
    c->opts = *opts;
    c->ca_file = xstrdup_or_null(opts->ca_file);
    c->opts.ca_file = c->ca_file;
    if (c->opts.max_response == 0) {
        c->opts.max_response = HTTP_DEFAULT_MAX_RESPONSE;
    }
    c->multi = curl_multi_init();
    if (c->multi == NULL) {
        free(c->ca_file);
        free(c);
        return ids_error_set(err, IDS_EINTERNAL, "libcurl: cannot create a multi handle");
    }
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (c->epfd < 0) {
        curl_multi_cleanup(c->multi);
        free(c->ca_file);
        free(c);
        return ids_error_set(err, IDS_EINTERNAL, "epoll_create1: %s", strerror(errno));
    }
    c->timer_at = -1;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    if (opts->max_host_connections > 0) {
        curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, opts->max_host_connections);
        /* keep every connection of the window in the cache between bursts */
        curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, opts->max_host_connections + 4);
    }
    *out = c;
    return IDS_OK;
}

void http_client_free(struct http_client *c)
{
    size_t i;

    if (c == NULL) {
        return;
    }
    for (i = 0; i < c->nidle; i++) {
        curl_easy_cleanup(c->idle[i]);
    }
    free(c->idle);
    curl_multi_cleanup(c->multi);
    close(c->epfd);
    free(c->ca_file);
    free(c);
}

void http_request_init(struct http_request *r)
{
    memset(r, 0, sizeof(*r));
    strbuf_init(&r->url, 0);
    strbuf_init(&r->body, 0);
    strbuf_init(&r->auth, 0);
    strbuf_init(&r->response, 0);
    strbuf_init(&r->retry_after, 0);
}

static void reset_out(struct http_request *r)
{
    r->finished = false;
    r->curl_code = 0;
    r->status = 0;
    r->http_version = 0;
    r->maybe_processed = false;
    r->error[0] = '\0';
    strbuf_reset(&r->response);
    strbuf_reset(&r->retry_after);
    r->seconds = 0;
    r->attempts_sent = 0;
}

void http_request_reset(struct http_request *r)
{
    reset_out(r);
    strbuf_reset(&r->url);
    strbuf_reset(&r->body);
    strbuf_reset(&r->auth);
    r->content_type = NULL;
    r->accept = NULL;
    r->no_resend = false;
}

void http_request_release(struct http_request *r)
{
    strbuf_release(&r->url);
    strbuf_release(&r->body);
    if (r->auth.alloc) {
        memset(r->auth.buf, 0, r->auth.len);
    }
    strbuf_release(&r->auth);
    strbuf_release(&r->response);
    strbuf_release(&r->retry_after);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct http_request *r = arg;
    size_t n = size * nmemb;

    if (r->response.len + n > r->client->opts.max_response) {
        snprintf(r->error, sizeof(r->error), "response larger than %zu bytes",
                 r->client->opts.max_response);
        return 0;
    }
    strbuf_add(&r->response, data, n);
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct http_request *r = arg;
    size_t n = size * nmemb;

    if (n > 12 && strncasecmp(data, "Retry-After:", 12) == 0) {
        strbuf_reset(&r->retry_after);
        strbuf_add(&r->retry_after, data + 12, n - 12 < 200 ? n - 12 : 200);
        strbuf_trim(&r->retry_after);
    }
    return n;
}

/* Called before each attempt to send the request: a second call for the
 * same request is libcurl resending it on a fresh connection because the
 * reused one died (after the server may have acted on it). */
static int on_prereq(void *arg, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port)
{
    struct http_request *r = arg;

    (void)conn_primary_ip;
    (void)conn_local_ip;
    (void)conn_primary_port;
    (void)conn_local_port;
    r->attempts_sent++;
    if (r->no_resend && r->attempts_sent > 1) {
        r->maybe_processed = true;
        snprintf(r->error, sizeof(r->error),
                 "the connection closed before an answer; not sent again");
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

static CURL *easy_get(struct http_client *c)
{
    if (c->nidle > 0) {
        CURL *e = c->idle[--c->nidle];

        curl_easy_reset(e);
        return e;
    }
    return curl_easy_init();
}

static void easy_put(struct http_client *c, CURL *e)
{
    if (c->nidle >= 64) {
        curl_easy_cleanup(e);
        return;
    }
    ALLOC_GROW(c->idle, c->nidle + 1, c->aidle);
    c->idle[c->nidle++] = e;
}

enum ids_err http_start(struct http_client *c, struct http_request *r, struct ids_error *err)
{
    CURL *e;
    struct curl_slist *h = NULL;
    struct strbuf line = STRBUF_INIT;
    bool has_body;

    reset_out(r);
    r->client = c;
    e = easy_get(c);
    if (e == NULL) {
        return ids_error_set(err, IDS_EINTERNAL, "libcurl: cannot create a request");
    }
    has_body = strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0 ||
               strcmp(r->method, "PATCH") == 0;
    curl_easy_setopt(e, CURLOPT_URL, r->url.buf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->error);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    /* no Accept-Encoding: SCIM bodies are small */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     c->opts.http2 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
    if (c->opts.http2 && strncasecmp(r->url.buf, "https:", 6) == 0) {
        /* wait for a connection that may multiplex (HTTP/2 is offered over
         * TLS only) rather than opening one per request */
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    }
    if (c->opts.timeout_ms > 0) {
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->opts.timeout_ms);
    }
    if (c->opts.connect_timeout_ms > 0) {
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->opts.connect_timeout_ms);
    }
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, c->opts.tls_verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, c->opts.tls_verify ? 2L : 0L);
    if (c->opts.ca_file != NULL) {
        curl_easy_setopt(e, CURLOPT_CAINFO, c->opts.ca_file);
    }
    if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "POST") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    }
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, r);
    if (has_body) {
        /* headers and body leave in one send */
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body.len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body.buf);
        strbuf_addf(&line, "Content-Type: %s",
                    r->content_type ? r->content_type : "application/scim+json");
        h = curl_slist_append(h, line.buf);
        /* no "100 continue" round trip */
        h = curl_slist_append(h, "Expect:");
    }
    strbuf_reset(&line);
    strbuf_addf(&line, "Accept: %s",
                r->accept ? r->accept : "application/scim+json, application/json");
    h = curl_slist_append(h, line.buf);
    if (r->auth.len > 0) {
        strbuf_reset(&line);
        strbuf_addstr(&line, "Authorization: ");
        strbuf_addbuf(&line, &r->auth);
        h = curl_slist_append(h, line.buf);
        memset(line.buf, 0, line.len);
    }
    h = curl_slist_append(h, "User-Agent: idsync");
    strbuf_release(&line);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    r->headers = h;
    r->easy = e;
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        curl_slist_free_all(h);
        r->headers = NULL;
        r->easy = NULL;
        curl_easy_cleanup(e);
        return ids_error_set(err, IDS_EINTERNAL, "libcurl: cannot start a request");
    }
    r->running = true;
    c->running++;
    return IDS_OK;
}

static void detach(struct http_client *c, struct http_request *r)
{
    curl_multi_remove_handle(c->multi, r->easy);
    easy_put(c, r->easy);
    curl_slist_free_all(r->headers);
    r->headers = NULL;
    r->easy = NULL;
    r->running = false;
    c->running--;
}

void http_cancel(struct http_client *c, struct http_request *r)
{
    if (r->running) {
        detach(c, r);
    }
}

size_t http_running(const struct http_client *c)
{
    return c->running;
}

static void finish(struct http_client *c, CURL *e, CURLcode code)
{
    struct http_request *r = NULL;
    long ver = 0;

    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r);
    if (r == NULL) {
        return;
    }
    r->curl_code = (int)code;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(e, CURLINFO_TOTAL_TIME, &r->seconds);
    curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &ver);
    r->http_version = ver == CURL_HTTP_VERSION_2_0 ? 2
                      : ver == CURL_HTTP_VERSION_3 ? 3
                      : ver                        ? 1
                                                   : 0;
    if (code != CURLE_OK) {
        if (r->error[0] == '\0') {
            snprintf(r->error, sizeof(r->error), "%s", curl_easy_strerror(code));
        }
        /* sent (or partly sent), and no complete answer: the server may have
         * acted on it. Never-connected failures are safe to resend. */
        if (code != CURLE_COULDNT_CONNECT && code != CURLE_COULDNT_RESOLVE_HOST &&
            code != CURLE_SSL_CONNECT_ERROR && code != CURLE_PEER_FAILED_VERIFICATION &&
            r->attempts_sent > 0) {
            r->maybe_processed = true;
        }
        r->status = 0;
    }
    detach(c, r);
    r->finished = true;
    if (r->done != NULL) {
        r->done(r);
    }
}

static int collect(struct http_client *c)
{
    CURLMsg *msg;
    int left = 0;
    int finished = 0;

    for (;;) {
        msg = curl_multi_info_read(c->multi, &left);
        if (msg == NULL) {
            break;
        }
        if (msg->msg == CURLMSG_DONE) {
            finish(c, msg->easy_handle, msg->data.result);
            finished++;
        }
    }
    return finished;
}

enum ids_err http_run(struct http_client *c, long wait_ms, struct ids_error *err)
{
    struct epoll_event ev[64];
    CURLMcode mc;
    int still = 0;
    int finished = 0;
    int round;

    for (round = 0; round < 2; round++) {
        long long now = http_now_ms();
        long timeout = wait_ms > 0 ? wait_ms : 0;
        int n;
        int i;

        if (c->timer_at >= 0 && c->timer_at <= now) {
            c->timer_at = -1;
            mc = curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &still);
            if (mc != CURLM_OK) {
                return ids_error_set(err, IDS_EINTERNAL, "libcurl: %s", curl_multi_strerror(mc));
            }
            finished += collect(c);
            if (finished > 0) {
                break;
            }
        }
        if (c->timer_at >= 0 && c->timer_at - now < timeout) {
            timeout = c->timer_at > now ? (long)(c->timer_at - now) : 0;
        }
        if (c->running == 0) {
            break;
        }
        n = epoll_wait(c->epfd, ev, (int)ARRAY_SIZE(ev), (int)timeout);
        if (n < 0 && errno != EINTR) {
            return ids_error_set(err, IDS_EINTERNAL, "epoll_wait: %s", strerror(errno));
        }
        for (i = 0; i < n; i++) {
            int flags = (ev[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                        (ev[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                        (ev[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);

            mc = curl_multi_socket_action(c->multi, ev[i].data.fd, flags, &still);
            if (mc != CURLM_OK) {
                return ids_error_set(err, IDS_EINTERNAL, "libcurl: %s", curl_multi_strerror(mc));
            }
        }
        finished += collect(c);
        if (finished > 0 || n > 0 || wait_ms <= 0) {
            break;
        }
    }
    return IDS_OK;
}

enum ids_err http_perform(struct http_client *c, struct http_request *r, struct ids_error *err)
{
    enum ids_err ret = http_start(c, r, err);

    while (ret == IDS_OK && !r->finished) {
        ret = http_run(c, 1000, err);
    }
    return ret;
}
