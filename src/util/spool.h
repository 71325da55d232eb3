/* spool.h - output too large to hold in memory, kept in a temporary file.
 *
 * A dry run's pending-change report holds every attribute of every object
 * it would export: a first cycle into an empty directory of a million
 * people is about a gigabyte of JSON lines. The engine writes such a
 * report to a FILE; a spool is that FILE, backed by an unlinked temporary
 * file (mode 0600, in $TMPDIR when it names an absolute directory, else
 * /tmp) so that memory stays flat and nothing is left behind, whatever
 * way the process ends. Its readers take it back a line at a time.
 *
 *   FILE *fp = spool_open(&err);
 *   ... fprintf(fp, ...) ...
 *   if (spool_finish(fp, &err) == IDS_OK)
 *       while ((line = spool_next(fp, &sb)) != NULL) ...
 *   fclose(fp);
 */
#ifndef IDSYNC_UTIL_SPOOL_H
#define IDSYNC_UTIL_SPOOL_H

#include <stdio.h>

#include "util/error.h"
#include "util/strbuf.h"

/* A new, empty spool open for writing and reading; NULL with err set. */
FILE *spool_open(struct ids_error *err);
/* End writing: flush, report a write error (a full disk: IDS_EIO naming
 * the cause), go back to the start for reading. */
enum ids_err spool_finish(FILE *fp, struct ids_error *err);
/* The next non-empty line (without its line end) in sb, NUL-terminated;
 * NULL at the end. */
const char *spool_next(FILE *fp, struct strbuf *sb);

#endif
