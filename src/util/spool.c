/* spool.c - see spool.h. */
#include "util/spool.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/banned.h"

FILE *spool_open(struct ids_error *err)
{
    const char *dir = getenv("TMPDIR");
    struct strbuf path = STRBUF_INIT;
    mode_t old;
    FILE *fp;
    int fd;

    if (dir == NULL || dir[0] != '/') {
        dir = "/tmp";
    }
    strbuf_addf(&path, "%s/idsync-report-XXXXXX", dir);
    old = umask(077);
    fd = mkstemp(path.buf); /* 0600 */
    umask(old);
    if (fd < 0) {
        ids_error_set(err, IDS_EIO, "cannot create a temporary file in %s for the report: %s", dir,
                      strerror(errno));
        strbuf_release(&path);
        return NULL;
    }
    (void)unlink(path.buf); /* gone with the last descriptor, however the process ends */
    fp = fdopen(fd, "w+");
    if (fp == NULL) {
        ids_error_set(err, IDS_EIO, "cannot open the report's temporary file: %s", strerror(errno));
        close(fd);
    }
    strbuf_release(&path);
    return fp;
}

enum ids_err spool_finish(FILE *fp, struct ids_error *err)
{
    if (fflush(fp) != 0 || ferror(fp)) {
        return ids_error_set(err, IDS_EIO, "cannot write the report to its temporary file: %s",
                             strerror(errno ? errno : EIO));
    }
    rewind(fp);
    return IDS_OK;
}

const char *spool_next(FILE *fp, struct strbuf *sb)
{
    char chunk[16384];

    for (;;) {
        bool ended = false;

        strbuf_reset(sb);
        while (fgets(chunk, sizeof(chunk), fp) != NULL) {
            size_t n = strlen(chunk); /* a report line holds no NUL: JSON escapes it */

            if (n > 0 && chunk[n - 1] == '\n') {
                strbuf_add(sb, chunk, n - 1);
                ended = true;
                break;
            }
            strbuf_add(sb, chunk, n);
        }
        if (sb->len > 0) {
            return sb->buf;
        }
        if (!ended) {
            return NULL;
        }
    }
}
