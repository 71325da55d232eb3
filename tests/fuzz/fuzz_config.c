/* libFuzzer target: the configuration loader (YAML, option tables,
 * references, expressions compiled in the sandbox) must never crash or leak,
 * whatever the file holds.
 *
 *   CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined
 *   ninja -C build-fuzz tests/fuzz/fuzz_config
 *   build-fuzz/tests/fuzz/fuzz_config -max_len=4096 tests/fuzz/corpus/config
 */
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "util/strbuf.h"
#include "util/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct config *cfg = NULL;

    if (config_load_string("fuzz.yaml", (const char *)data, size, &cfg, &err) == IDS_OK) {
        struct strbuf sb = STRBUF_INIT;

        /* what `idsync config dump` does with a configuration that loaded */
        config_dump(cfg, false, &sb);
        config_dump(cfg, true, &sb);
        strbuf_release(&sb);
    }
    config_free(cfg);
    return 0;
}
