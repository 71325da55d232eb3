/* sink.c - an HTTP sink that answers every SCIM request at once, to measure
 * idsync's own ceiling (the engine and the connector, not the service).
 * Built and started by bench.py:  cc -O2 sink.c -lmicrohttpd -ljansson -o sink
 *   ./sink PORT [bulk]  (127.0.0.1 only; 0 = any free port, printed as "listening PORT")
 * POST answers 201 {"id":"sN"}; PATCH/DELETE 204; GET /ServiceProviderConfig
 * a configuration with PATCH (and bulk with `bulk`); POST /Bulk a result per
 * operation; any other GET an empty list. */
#include <jansson.h>
#include <microhttpd.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned long next_id;
static int with_bulk;

struct upload {
    char *buf;
    size_t len;
};

static char *bulk_answer(const struct upload *u)
{
    json_error_t jerr;
    json_t *req = json_loadb(u->buf, u->len, 0, &jerr);
    json_t *ops = json_object_get(req, "Operations");
    json_t *out = json_array();
    json_t *op;
    size_t i;
    char *text;
    char loc[64];

    json_array_foreach(ops, i, op)
    {
        const char *m = json_string_value(json_object_get(op, "method"));
        json_t *r = json_pack("{s:s}", "method", m ? m : "");

        if (m != NULL && strcmp(m, "POST") == 0) {
            snprintf(loc, sizeof(loc), "/Users/s%lu", ++next_id);
            json_object_set(r, "bulkId", json_object_get(op, "bulkId"));
            json_object_set_new(r, "location", json_string(loc));
            json_object_set_new(r, "status", json_string("201"));
        } else {
            json_object_set_new(r, "status", json_string("204"));
        }
        json_array_append_new(out, r);
    }
    text = json_dumps(json_pack("{s:[s],s:o}", "schemas",
                                "urn:ietf:params:scim:api:messages:2.0:BulkResponse",
                                "Operations", out),
                      JSON_COMPACT);
    json_decref(req);
    return text;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *size, void **state)
{
    static const char spc[] =
        "{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig\"],"
        "\"patch\":{\"supported\":true},\"bulk\":{\"supported\":false},"
        "\"filter\":{\"supported\":true,\"maxResults\":1000}}";
    static const char spc_bulk[] =
        "{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig\"],"
        "\"patch\":{\"supported\":true},\"bulk\":{\"supported\":true,\"maxOperations\":1000,"
        "\"maxPayloadSize\":4194304},\"filter\":{\"supported\":true,\"maxResults\":1000}}";
    struct upload *u;
    char *dyn = NULL;
    static const char empty[] = "{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:"
                                "ListResponse\"],\"totalResults\":0,\"startIndex\":1,"
                                "\"itemsPerPage\":0,\"Resources\":[]}";
    char buf[64];
    const char *body = empty;
    unsigned status = 200;
    struct MHD_Response *res;
    enum MHD_Result ret;

    (void)cls;
    (void)version;
    (void)data;
    if (*state == NULL) {
        *state = calloc(1, sizeof(struct upload));
        return MHD_YES;
    }
    u = *state;
    if (*size > 0) {
        u->buf = realloc(u->buf, u->len + *size);
        memcpy(u->buf + u->len, data, *size);
        u->len += *size;
        *size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "POST") == 0 && strstr(url, "/Bulk") != NULL) {
        dyn = bulk_answer(u);
        body = dyn;
    } else if (strcmp(method, "POST") == 0) {
        snprintf(buf, sizeof(buf), "{\"id\":\"s%lu\"}", ++next_id);
        body = buf;
        status = 201;
    } else if (strcmp(method, "PATCH") == 0 || strcmp(method, "DELETE") == 0) {
        body = "";
        status = 204;
    } else if (strstr(url, "/ServiceProviderConfig") != NULL) {
        body = with_bulk ? spc_bulk : spc;
    }
    res = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(res, "Content-Type", "application/scim+json");
    ret = MHD_queue_response(conn, status, res);
    MHD_destroy_response(res);
    free(dyn);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *conn, void **state,
                      enum MHD_RequestTerminationCode why)
{
    struct upload *u = *state;

    (void)cls;
    (void)conn;
    (void)why;
    if (u != NULL) {
        free(u->buf);
        free(u);
        *state = NULL;
    }
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa;
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *info;
    sigset_t set;
    int sig;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)(argc > 1 ? atoi(argv[1]) : 0));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    with_bulk = argc > 2 && strcmp(argv[2], "bulk") == 0;
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_TURBO, 0, NULL,
                         NULL, answer, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                         MHD_OPTION_CONNECTION_TIMEOUT, 120u,
                         MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "sink: cannot listen\n");
        return 1;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("listening %u\n", (unsigned)info->port);
    fflush(stdout);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    return 0;
}
