/* fuzz_time.c - libFuzzer target for the time helpers of expressions
 * (parse_time with and without a layout, format_time, filetime,
 * from_filetime): their input is attribute values read from connected
 * systems (an HR export's dates). Checks, besides crashes:
 *   - every evaluation either gives a value or an error naming the rule;
 *   - a time parse_time accepts formats to an ISO string that parses back
 *     to the same time (for years 1 to 9999). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "entry.h"
#include "expr/expr.h"
#include "util/error.h"
#include "util/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const rules[] = {
    "parse_time(v)",
    "parse_time(v, 'DD.MM.YYYY hh:mm')",
    "parse_time(v, 'M/D/YYYY')",
    "filetime(v)",
    "from_filetime(v)",
    "format_time(v, 'YYYY-MM-DDThh:mm:ssZ')",
};

/* true unless a time that parses does not come back from its ISO form */
static const char round_trip[] =
    "local t = parse_time(v)\n"
    "if t == nil or t < -62135596800 or t > 253402300799 then return true end\n"
    "return parse_time(format_time(t, 'YYYY-MM-DDThh:mm:ssZ')) == t";

static struct expr_env *env;
static struct expr *exprs[sizeof(rules) / sizeof(rules[0])];
static struct expr *trip;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct entry *e;
    bool same = true;
    size_t i;

    if (env == NULL) {
        if (expr_env_new(NULL, &env, &err) != IDS_OK) {
            abort();
        }
        for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
            if (expr_compile(env, rules[i], "fuzz", &exprs[i], &err) != IDS_OK) {
                abort();
            }
        }
        if (expr_compile(env, round_trip, "fuzz", &trip, &err) != IDS_OK) {
            abort();
        }
    }
    e = entry_new("user", "a", "a");
    entry_add_value(e, "v", data, size);
    for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        struct attr result;

        memset(&result, 0, sizeof(result));
        result.name = (char *)"r";
        if (expr_eval(exprs[i], e, &result, &err) != IDS_OK && strncmp(err.msg, "fuzz: ", 6) != 0) {
            abort(); /* an error names the rule */
        }
        result.name = NULL;
        attr_release(&result);
    }
    if (expr_eval_bool(trip, e, &same, &err) == IDS_OK && !same) {
        abort();
    }
    entry_free(e);
    return 0;
}
