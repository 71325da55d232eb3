/* fdio.c - whole reads and writes on file descriptors, and the SIGBUS
 * guard of mapped files; see fdio.h. */
#include "util/fdio.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "util/banned.h"

enum ids_err fd_write_all(int fd, const void *data, size_t len, const char *what,
                          struct ids_error *err)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return ids_error_set(err, IDS_EIO, "%s: write: %s", what, strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
    return IDS_OK;
}

enum ids_err fd_pwrite_all(int fd, const void *data, size_t len, uint64_t off, const char *what,
                           struct ids_error *err)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return ids_error_set(err, IDS_EIO, "%s: write: %s", what, strerror(errno));
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return IDS_OK;
}

enum ids_err fd_pread_all(int fd, void *data, size_t len, uint64_t off, const char *what,
                          struct ids_error *err)
{
    char *p = data;

    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return ids_error_set(err, IDS_EIO, "%s: read: %s", what, strerror(errno));
        }
        if (n == 0) {
            return ids_error_set(err, IDS_EIO, "%s: read: unexpected end of file", what);
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return IDS_OK;
}

static _Thread_local sigjmp_buf *bus_env;
static struct sigaction bus_prev;

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
    (void)si;
    (void)ctx;
    if (bus_env != NULL) {
        siglongjmp(*bus_env, 1);
    }
    /* not ours: the handler before, when the fault happens again */
    sigaction(sig, &bus_prev, NULL);
}

void fd_bus_catch(sigjmp_buf *env)
{
    bus_env = env;
}

void fd_bus_install(void)
{
    struct sigaction sa;
    struct sigaction old;

    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &old) == 0 && old.sa_sigaction != on_sigbus) {
        bus_prev = old;
    }
}
