/* sink.c - an HTTP sink that answers every SCIM request at once, to measure
 * idsync's own ceiling (the engine and the connector, not the service).
 * Built and started by bench.py:  cc -O2 sink.c -lmicrohttpd -o sink
 *   ./sink PORT   (127.0.0.1 only; 0 = any free port, printed as "listening PORT")
 * POST answers 201 {"id":"sN"}; PATCH/DELETE 204; GET /ServiceProviderConfig
 * a configuration with PATCH; any other GET an empty list. */
#include <microhttpd.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned long next_id;

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *size, void **state)
{
    static int marker;
    static const char spc[] =
        "{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig\"],"
        "\"patch\":{\"supported\":true},\"bulk\":{\"supported\":false},"
        "\"filter\":{\"supported\":true,\"maxResults\":1000}}";
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
        *state = &marker;
        return MHD_YES;
    }
    if (*size > 0) {
        *size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "POST") == 0) {
        snprintf(buf, sizeof(buf), "{\"id\":\"s%lu\"}", ++next_id);
        body = buf;
        status = 201;
    } else if (strcmp(method, "PATCH") == 0 || strcmp(method, "DELETE") == 0) {
        body = "";
        status = 204;
    } else if (strstr(url, "/ServiceProviderConfig") != NULL) {
        body = spc;
    }
    res = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(res, "Content-Type", "application/scim+json");
    ret = MHD_queue_response(conn, status, res);
    MHD_destroy_response(res);
    return ret;
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
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_TURBO, 0, NULL,
                         NULL, answer, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                         MHD_OPTION_CONNECTION_TIMEOUT, 120u, MHD_OPTION_END);
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
