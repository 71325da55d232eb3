/* replay.c - runs a fuzz target's corpus through it once, without libFuzzer:
 * linked with fuzz_<name>.c into replay_<name> for the test build (ASan +
 * UBSan), so that every input kept in tests/fuzz/corpus stays a regression
 * test. Arguments: files or directories of inputs. */
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/strbuf.h"
#include "util/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    struct strbuf sb = STRBUF_INIT;
    char buf[65536];
    size_t n;
    FILE *f = fopen(path, "rb");

    if (f == NULL) {
        fprintf(stderr, "replay: %s: cannot open\n", path);
        return 1;
    }
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        strbuf_add(&sb, buf, n);
    }
    fclose(f);
    LLVMFuzzerTestOneInput((const uint8_t *)sb.buf, sb.len);
    strbuf_release(&sb);
    return 0;
}

int main(int argc, char **argv)
{
    int i;
    int failed = 0;
    int ran = 0;

    for (i = 1; i < argc; i++) {
        struct stat st;
        DIR *d;
        struct dirent *de;

        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: not found\n", argv[i]);
            failed++;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            failed += run_file(argv[i]);
            ran++;
            continue;
        }
        d = opendir(argv[i]);
        if (d == NULL) {
            failed++;
            continue;
        }
        while ((de = readdir(d)) != NULL) {
            struct strbuf p = STRBUF_INIT;

            if (de->d_name[0] == '.') {
                continue;
            }
            strbuf_addf(&p, "%s/%s", argv[i], de->d_name);
            failed += run_file(p.buf);
            ran++;
            strbuf_release(&p);
        }
        closedir(d);
    }
    printf("replay: %d inputs, %d unreadable\n", ran, failed);
    return failed == 0 && ran > 0 ? 0 : 1;
}
