/* testutil.h - helpers shared by the cmocka unit tests. */
#ifndef IDSYNC_TESTUTIL_H
#define IDSYNC_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

/* A fresh temporary directory (mkdtemp under $TMPDIR); removed with
 * test_rmtree. Caller frees the string. */
char *test_tmpdir(void);
void test_rmtree(const char *path);
/* Write `content` to dir/name; returns the malloc'ed path. */
char *test_write_file(const char *dir, const char *name, const char *content);
/* Append text to the file at path (aborts when it cannot). */
void test_append_file(const char *path, const char *text);
/* Read a whole file (NUL-terminated); caller frees. NULL if absent. */
char *test_read_file(const char *path);
/* Path of a file in the source tree: $IDSYNC_SRCDIR/rel. Caller frees. */
char *test_src_path(const char *rel);

#endif
