/* fuzz_entry.c - libFuzzer target for the store's binary forms of an entry
 * and of a change (entry_decode, change_decode, change_encoded_op): a store
 * file damaged on disk, or written by another build, must give an error
 * naming the object, never a crash. Checks the invariants, not just crashes:
 *   - what decodes encodes to bytes that decode to the same encoding
 *     (encode(decode(encode(decode(x)))) == encode(decode(x)));
 *   - change_encoded_op agrees with the operation change_decode finds;
 *   - JSON rendering of anything decoded does not fail. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "entry.h"
#include "util/error.h"
#include "util/strbuf.h"
#include "util/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_entry(const uint8_t *data, size_t size)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct entry *e = NULL;
    struct entry *again = NULL;
    struct strbuf one = STRBUF_INIT;
    struct strbuf two = STRBUF_INIT;

    if (entry_decode(data, size, &e, &err) != IDS_OK) {
        if (e != NULL || err.msg[0] == '\0') {
            abort(); /* an error leaves nothing behind and says why */
        }
        return;
    }
    entry_encode(e, &one);
    if (entry_decode(one.buf, one.len, &again, &err) != IDS_OK) {
        abort();
    }
    entry_encode(again, &two);
    if (one.len != two.len || memcmp(one.buf, two.buf, one.len) != 0) {
        abort();
    }
    strbuf_reset(&one);
    entry_to_json(e, &one);
    entry_free(e);
    entry_free(again);
    strbuf_release(&one);
    strbuf_release(&two);
}

static void check_change(const uint8_t *data, size_t size)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct change *c = NULL;
    struct change *again = NULL;
    struct strbuf one = STRBUF_INIT;
    struct strbuf two = STRBUF_INIT;
    int op = change_encoded_op(data, size);

    if (change_decode(data, size, &c, &err) != IDS_OK) {
        if (c != NULL || err.msg[0] == '\0') {
            abort();
        }
        return;
    }
    if (op != (int)c->op) {
        abort();
    }
    change_encode(c, &one);
    if (change_decode(one.buf, one.len, &again, &err) != IDS_OK) {
        abort();
    }
    change_encode(again, &two);
    if (one.len != two.len || memcmp(one.buf, two.buf, one.len) != 0) {
        abort();
    }
    strbuf_reset(&one);
    change_to_json(c, &one);
    change_free(c);
    change_free(again);
    strbuf_release(&one);
    strbuf_release(&two);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) {
        return 0;
    }
    check_entry(data, size);
    check_change(data, size);
    return 0;
}
