/* fuzz_plan.c - libFuzzer target for a reconnect plan file (`idsync
 * reconnect --apply FILE`): written by idsync, but a file an administrator
 * may edit, truncate or mix up. The input is parsed as a plan; a plan that
 * parses is written again and must parse to the same rows (the file a
 * preview writes is the file an apply reads). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/reconnect.h"
#include "util/strbuf.h"
#include "util/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reconnect_plan p;
    struct reconnect_plan again;
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf text = STRBUF_INIT;
    struct strbuf text2 = STRBUF_INIT;

    reconnect_plan_init(&p);
    reconnect_plan_init(&again);
    if (reconnect_plan_from_json((const char *)data, size, &p, &err) == IDS_OK) {
        reconnect_plan_to_json(&p, &text);
        err = (struct ids_error)IDS_ERROR_INIT;
        if (reconnect_plan_from_json(text.buf, text.len, &again, &err) != IDS_OK) {
            abort(); /* what idsync writes, idsync must read */
        }
        if (again.nr != p.nr) {
            abort();
        }
        reconnect_plan_to_json(&again, &text2);
        if (text.len != text2.len || memcmp(text.buf, text2.buf, text.len) != 0) {
            abort(); /* written, read and written again: the same file */
        }
    } else if (err.msg[0] == '\0') {
        abort(); /* a refusal always says why */
    }
    strbuf_release(&text);
    strbuf_release(&text2);
    reconnect_plan_release(&p);
    reconnect_plan_release(&again);
    return 0;
}
