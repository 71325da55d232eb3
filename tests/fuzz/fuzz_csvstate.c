/* fuzz_csvstate.c - libFuzzer target: the input is the CSV connector's row
 * tables as a watermark holds them (an index with its blobs after it):
 * parsed, every run's blob checked and its rows read, as a delta read does
 * with tables a crash or a disk may have damaged. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connector/csvstate.h"
#include "util/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct csv_state st;
    const char *why = NULL;
    uint64_t sum = 0;
    size_t ntypes, ti, c, i;
    void *buf;

    if (size < 1) {
        return 0;
    }
    /* the tables are used where they are: 8-aligned, as a watermark
     * decoded into a buffer of malloc or a mapped file gives them */
    buf = malloc(size - 1 + 8);
    if (buf == NULL) {
        abort();
    }
    memcpy(buf, data + 1, size - 1);
    ntypes = 1 + data[0] % 3;
    if (csv_state_open(&st, buf, size - 1, NULL, ntypes, &why)) {
        for (ti = 0; ti < st.ntypes; ti++) {
            for (c = 0; c < st.t[ti].nruns; c++) {
                struct csv_blob b;

                if (!csv_state_blob(&st, &st.t[ti].runs[c], &b)) {
                    continue;
                }
                for (i = 0; i < b.k; i++) {
                    sum += b.hash[i] ^ b.kh[i];
                    if (b.koff[i + 1] > b.koff[i]) {
                        sum += (unsigned char)b.keys[b.koff[i + 1] - 1];
                    }
                }
            }
        }
        csv_state_close(&st);
    } else if (why == NULL) {
        abort(); /* a refusal always says why */
    }
    free(buf);
    return (int)(sum & 0);
}
