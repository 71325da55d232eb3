/* serve.c - `idsync serve` (the daemon, src/serve/) and `idsync sync-now`,
 * which asks a running daemon for a cycle through its HTTP API. */
#include "cmd/cmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "serve/serve.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/banned.h"

#define RESPONSE_MAX (16u * 1024u * 1024u)

/* The daemon logs at info by default (the other commands at warn): the
 * configuration's log.level, then --verbose/--quiet, win. */
static void serve_log_setup(struct cli *cli)
{
    const char *lv = config_get_str(&cli->cfg->log, "level");
    const char *fmt = config_get_str(&cli->cfg->log, "format");
    enum log_level level = LOG_INFO;
    enum log_format format = LOG_LOGFMT;

    if (lv != NULL && strcmp(lv, "debug") == 0) {
        level = LOG_DEBUG;
    } else if (lv != NULL && strcmp(lv, "warn") == 0) {
        level = LOG_WARN;
    } else if (lv != NULL && strcmp(lv, "error") == 0) {
        level = LOG_ERROR;
    }
    if (cli->verbosity < 0) {
        level = LOG_ERROR;
    } else if (cli->verbosity > 1) {
        level = LOG_DEBUG;
    } else if (cli->verbosity == 1 && level > LOG_INFO) {
        level = LOG_INFO;
    }
    if (fmt != NULL && strcmp(fmt, "json") == 0) {
        format = LOG_JSON;
    }
    if (cli->log_format != NULL) {
        format = strcmp(cli->log_format, "json") == 0 ? LOG_JSON : LOG_LOGFMT;
    }
    log_setup(level, format);
}

int cmd_serve(struct cli *cli, int argc, char **argv)
{
    struct serve_options opts = {0};
    struct config *cfg;
    int ret;
    int i;

    opts.initial_cycle = true;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--no-initial-cycle") == 0) {
            opts.initial_cycle = false;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("usage: idsync [-c FILE] serve [--no-initial-cycle]\n"
                   "Runs a cycle at start and every `schedule`, and answers the HTTP API, "
                   "/metrics and the\nweb console on serve.listen (default 127.0.0.1:8470).\n"
                   "  --no-initial-cycle  wait one schedule interval before the first cycle\n"
                   "Signals: SIGTERM/SIGINT finish the current batch and exit (a second one "
                   "exits at once);\nSIGHUP reloads the configuration (a bad file is "
                   "rejected and the old one keeps running).\n"
                   "Logs: one line per event on stderr (log.format logfmt|json, "
                   "--log-format).\n");
            return EXIT_OK;
        } else {
            return cli_usage_error(cli, "serve: unknown argument %s", a);
        }
    }
    ret = cli_load_config(cli);
    if (ret != 0) {
        return ret;
    }
    serve_log_setup(cli);
    cfg = cli->cfg;
    cli->cfg = NULL; /* the daemon owns it now, and replaces it on reload */
    opts.config_path = cfg->path ? cfg->path : cli->config_path;
    return serve_main(&opts, cfg);
}

/* ---- sync-now: a small HTTP client ------------------------------------- */

struct client {
    struct cli *cli;
    struct strbuf base; /* http(s)://host:port */
    char *token;        /* bearer token, or NULL */
    char *cafile;       /* the daemon's certificate, to verify it */
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct strbuf *sb = arg;

    if (strbuf_add_checked(sb, data, size * nmemb) != IDS_OK) {
        return 0; /* too big: curl fails the transfer */
    }
    return size * nmemb;
}

/* One request; *out receives the parsed JSON body (caller decrefs). */
static enum ids_err client_call(struct client *cl, const char *method, const char *path,
                                const char *body, long *status, json_t **out, struct ids_error *err)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    struct strbuf url = STRBUF_INIT;
    struct strbuf auth = STRBUF_INIT;
    struct strbuf resp = STRBUF_INIT;
    enum ids_err ret = IDS_OK;
    CURLcode rc;

    *out = NULL;
    *status = 0;
    resp.max = RESPONSE_MAX;
    if (h == NULL) {
        return ids_error_set(err, IDS_EINTERNAL, "curl_easy_init failed");
    }
    strbuf_addbuf(&url, &cl->base);
    strbuf_addstr(&url, path);
    curl_easy_setopt(h, CURLOPT_URL, url.buf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (cl->cafile != NULL) {
        curl_easy_setopt(h, CURLOPT_CAINFO, cl->cafile);
    }
    if (cl->token != NULL) {
        strbuf_addf(&auth, "Authorization: Bearer %s", cl->token);
        hdrs = curl_slist_append(hdrs, auth.buf);
    }
    if (strcmp(method, "POST") == 0) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "{}");
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        ret = ids_error_set(err, IDS_EUNREACHABLE,
                            "cannot reach the idsync daemon at %s: %s (is `idsync serve` "
                            "running with this configuration?)",
                            cl->base.buf, curl_easy_strerror(rc));
        goto done;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    *out = json_loadb(resp.buf, resp.len, 0, NULL);
    if (*out == NULL) {
        ret = ids_error_set(err, IDS_EPROTO, "%s: HTTP %ld with a body that is not JSON", url.buf,
                            *status);
        goto done;
    }
    if (*status >= 400) {
        json_t *m = json_object_get(*out, "message");

        ret = ids_error_set(err, *status == 401 ? IDS_ECONFIG : IDS_EPROTO,
                            "the daemon answered HTTP %ld: %s", *status,
                            json_is_string(m) ? json_string_value(m) : "(no message)");
        json_decref(*out);
        *out = NULL;
    }

done:
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    if (auth.len > 0) {
        explicit_bzero(auth.buf, auth.len);
    }
    strbuf_release(&url);
    strbuf_release(&auth);
    strbuf_release(&resp);
    return ret;
}

/* Where the daemon of this configuration listens, and how to talk to it. */
static enum ids_err client_init(struct client *cl, const char *url_override, struct ids_error *err)
{
    const struct config *cfg = cl->cli->cfg;
    const char *listen = config_get_str(&cfg->serve, "listen");
    const char *cert = config_get_str(&cfg->serve, "tls_cert_file");
    const struct config_value *tf = config_values_get(&cfg->serve, "token_file");
    struct strbuf tok = STRBUF_INIT;
    struct strbuf host = STRBUF_INIT;
    const char *colon;
    char *path = NULL;
    enum ids_err ret = IDS_OK;

    tok.max = 4096;
    if (tf != NULL && tf->str != NULL && tf->str[0] != '\0') {
        path = config_path(cfg, tf->str);
        ret = strbuf_read_file(&tok, path, err);
        if (ret != IDS_OK) {
            goto done;
        }
    } else if (config_secret(&cfg->serve, "token", &tok, err) != IDS_OK) {
        strbuf_reset(&tok); /* no token configured: a loopback daemon needs none */
        ids_error_clear(err);
    }
    strbuf_trim(&tok);
    if (tok.len > 0) {
        cl->token = strbuf_detach(&tok, NULL);
    }
    if (cert != NULL && cert[0] != '\0') {
        cl->cafile = config_path(cfg, cert);
    }
    if (url_override != NULL) {
        strbuf_addstr(&cl->base, url_override);
        while (cl->base.len > 0 && cl->base.buf[cl->base.len - 1] == '/') {
            strbuf_setlen(&cl->base, cl->base.len - 1);
        }
        goto done;
    }
    if (listen == NULL || listen[0] == '\0') {
        listen = "127.0.0.1:8470";
    }
    colon = strrchr(listen, ':');
    if (colon == NULL) {
        ret = ids_error_set(err, IDS_ECONFIG, "serve.listen %s: expected ADDRESS:PORT", listen);
        goto done;
    }
    strbuf_add(&host, listen, (size_t)(colon - listen));
    /* a wildcard address is reached through loopback */
    if (host.len == 0 || strbuf_equals(&host, "0.0.0.0")) {
        strbuf_reset(&host);
        strbuf_addstr(&host, "127.0.0.1");
    } else if (strbuf_equals(&host, "[::]")) {
        strbuf_reset(&host);
        strbuf_addstr(&host, "[::1]");
    }
    strbuf_addf(&cl->base, "%s://%s%s", cl->cafile ? "https" : "http", host.buf, colon);

done:
    free(path);
    strbuf_release(&tok);
    strbuf_release(&host);
    return ret;
}

static void client_release(struct client *cl)
{
    if (cl->token != NULL) {
        explicit_bzero(cl->token, strlen(cl->token));
    }
    free(cl->token);
    free(cl->cafile);
    strbuf_release(&cl->base);
}

static long jint(json_t *o, const char *key)
{
    return (long)json_integer_value(json_object_get(o, key));
}

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s ? s : "";
}

/* Counters worth a line: the non-zero ones, "name=n" separated by spaces. */
static void print_counters(json_t *counters)
{
    const char *k;
    json_t *v;
    bool any = false;

    json_object_foreach(counters, k, v)
    {
        if (json_integer_value(v) != 0) {
            printf(" %s=%lld", k, (long long)json_integer_value(v));
            any = true;
        }
    }
    if (!any) {
        printf(" (no changes)");
    }
}

static void print_result(json_t *req)
{
    json_t *run = json_object_get(req, "run_record");
    json_t *steps = json_object_get(req, "steps");
    json_t *st;
    size_t i;

    if (run == NULL) {
        printf("request %ld: %s%s%s\n", jint(req, "id"), jstr(req, "result"),
               json_is_string(json_object_get(req, "message")) ? ": " : "", jstr(req, "message"));
        return;
    }
    printf("cycle run %ld: %s (%.1f s)%s%s\n", jint(run, "id"), jstr(run, "status"),
           (double)jint(run, "duration_ms") / 1000.0,
           json_is_string(json_object_get(run, "message")) ? ": " : "", jstr(run, "message"));
    json_array_foreach(steps, i, st)
    {
        const char *conn = jstr(st, "connector");

        printf("  run %ld %-13s %-10s %-22s", jint(st, "id"), jstr(st, "step"),
               conn[0] ? conn : "-", jstr(st, "status"));
        print_counters(json_object_get(st, "counters"));
        printf("\n");
    }
}

/* Wait for the request to finish: poll its state every half second. */
static enum ids_err wait_done(struct client *cl, long id, long timeout_s, json_t **out,
                              struct ids_error *err)
{
    struct strbuf path = STRBUF_INIT;
    struct timespec pause = {0, 500 * 1000 * 1000};
    time_t deadline = timeout_s > 0 ? time(NULL) + timeout_s : 0;
    enum ids_err ret;
    long status;

    strbuf_addf(&path, "/api/requests/%ld", id);
    for (;;) {
        ret = client_call(cl, "GET", path.buf, NULL, &status, out, err);
        if (ret != IDS_OK) {
            break;
        }
        if (strcmp(jstr(*out, "state"), "done") == 0) {
            break;
        }
        json_decref(*out);
        *out = NULL;
        if (deadline != 0 && time(NULL) >= deadline) {
            ret = ids_error_set(err, IDS_EAGAIN,
                                "request %ld still not finished after %ld s (it goes on in "
                                "the daemon)",
                                id, timeout_s);
            break;
        }
        nanosleep(&pause, NULL);
    }
    strbuf_release(&path);
    return ret;
}

int cmd_sync_now(struct cli *cli, int argc, char **argv)
{
    struct client cl = {cli, STRBUF_INIT, NULL, NULL};
    struct ids_error err = IDS_ERROR_INIT;
    const char *url = getenv("IDSYNC_URL");
    bool full = false;
    bool dry_run = false;
    bool wait = false;
    long timeout_s = 0;
    long status = 0;
    json_t *resp = NULL;
    json_t *final = NULL;
    json_t *req = NULL;
    char *body = NULL;
    int ret = EXIT_OK;
    int i;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--full") == 0) {
            full = true;
        } else if (strcmp(a, "--wait") == 0) {
            wait = true;
        } else if (strcmp(a, "--dry-run") == 0) {
            dry_run = true;
        } else if (strcmp(a, "--url") == 0 && i + 1 < argc) {
            url = argv[++i];
        } else if (strcmp(a, "--timeout") == 0 && i + 1 < argc) {
            char *end = NULL;

            errno = 0;
            timeout_s = strtol(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || timeout_s <= 0) {
                return cli_usage_error(cli, "sync-now: --timeout SECONDS (a positive number)");
            }
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("usage: idsync [-c FILE] sync-now [--full] [--dry-run] [--wait [--timeout "
                   "SECONDS]] [--url URL]\n"
                   "Asks the running daemon (serve.listen) to start a cycle now; with --wait, "
                   "prints its result\nand exits as `idsync cycle` would.\n");
            return EXIT_OK;
        } else {
            return cli_usage_error(cli, "sync-now: unknown argument %s", a);
        }
    }
    ret = cli_load_config(cli);
    if (ret != 0) {
        return ret;
    }
    if (client_init(&cl, url, &err) != IDS_OK) {
        ret = cli_fail(cli, cli_status_for(err.code), &err);
        goto done;
    }
    req = json_pack("{s:b,s:b}", "full", full, "dry_run", dry_run);
    body = json_dumps(req, JSON_COMPACT);
    if (client_call(&cl, "POST", "/api/cycle", body, &status, &resp, &err) != IDS_OK) {
        ret = cli_fail(cli, err.code == IDS_ECONFIG ? EXIT_CONFIG : EXIT_UNREACHABLE, &err);
        goto done;
    }
    if (!wait) {
        if (cli->json) {
            char *t = json_dumps(resp, JSON_COMPACT);

            printf("%s\n", t ? t : "{}");
            free(t);
        } else if (!cli->quiet) {
            printf("cycle requested: request %ld (%s)\n", jint(resp, "id"), jstr(resp, "state"));
        }
        goto done;
    }
    if (wait_done(&cl, jint(resp, "id"), timeout_s, &final, &err) != IDS_OK) {
        ret = cli_fail(cli, EXIT_UNREACHABLE, &err);
        goto done;
    }
    if (cli->json) {
        char *t = json_dumps(final, JSON_COMPACT);

        printf("%s\n", t ? t : "{}");
        free(t);
    } else if (!cli->quiet) {
        print_result(final);
    }
    ret = (int)jint(final, "exit_code");

done:
    free(body);
    json_decref(req);
    json_decref(resp);
    json_decref(final);
    client_release(&cl);
    return ret;
}
