#include "testutil.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/mem.h"
#include "util/strbuf.h"

char *test_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    struct strbuf sb = STRBUF_INIT;

    strbuf_addf(&sb, "%s/idsync-test-XXXXXX", base ? base : "/tmp");
    if (mkdtemp(sb.buf) == NULL) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        abort();
    }
    return strbuf_detach(&sb, NULL);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void test_rmtree(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *test_write_file(const char *dir, const char *name, const char *content)
{
    struct strbuf path = STRBUF_INIT;
    FILE *f;

    strbuf_addf(&path, "%s/%s", dir, name);
    f = fopen(path.buf, "wb");
    if (f == NULL) {
        abort();
    }
    fputs(content, f);
    fclose(f);
    return strbuf_detach(&path, NULL);
}

void test_append_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "ab");

    if (f == NULL) {
        abort();
    }
    fputs(text, f);
    fclose(f);
}

char *test_read_file(const char *path)
{
    struct strbuf sb = STRBUF_INIT;

    if (strbuf_read_file(&sb, path, NULL) != IDS_OK) {
        strbuf_release(&sb);
        return NULL;
    }
    return strbuf_detach(&sb, NULL);
}

char *test_src_path(const char *rel)
{
    const char *root = getenv("IDSYNC_SRCDIR");
    struct strbuf sb = STRBUF_INIT;

    strbuf_addf(&sb, "%s/%s", root ? root : "../..", rel);
    return strbuf_detach(&sb, NULL);
}
