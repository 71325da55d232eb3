/* fdio.h - whole reads and writes on file descriptors, and the SIGBUS
 * guard of mapped files (file connectors, the reconnect plan reader, the
 * export's spill file).
 *
 * A mapped file that another process shortens raises SIGBUS when a page
 * past its new end is touched. Code that reads a mapping calls
 * fd_bus_install() once the file is mapped (a test framework or another
 * library may have put its own handler since), then reads between
 * fd_bus_catch(&env) and fd_bus_catch(NULL) after sigsetjmp(env, 1): the
 * signal returns there with 1. A SIGBUS outside such a window goes to the
 * handler that was there before.
 */
#ifndef IDSYNC_UTIL_FDIO_H
#define IDSYNC_UTIL_FDIO_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

/* write() all; IDS_EIO on failure (the message names `what`). */
enum ids_err fd_write_all(int fd, const void *data, size_t len, const char *what,
                          struct ids_error *err);
/* pwrite() all at `off`: a side file whose records are found by offset
 * stays consistent after a failed write (the next record overwrites it). */
enum ids_err fd_pwrite_all(int fd, const void *data, size_t len, uint64_t off, const char *what,
                           struct ids_error *err);
/* pread() all at `off`; IDS_EIO on failure or at an unexpected end of file. */
enum ids_err fd_pread_all(int fd, void *data, size_t len, uint64_t off, const char *what,
                          struct ids_error *err);

void fd_bus_install(void);
void fd_bus_catch(sigjmp_buf *env);

#endif
