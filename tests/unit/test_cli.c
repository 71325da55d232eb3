/* test_cli.c - the terminal output helpers of the command line
 * (util/table): sanitizing, widths, durations, times and table layout.
 * The commands themselves are tested end to end in
 * tests/integration/test_cli.py. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/strbuf.h"
#include "util/table.h"
#include "util/banned.h"

static char *sanitized(const char *s, size_t len)
{
    struct strbuf sb = STRBUF_INIT;

    text_sanitize(&sb, s, len);
    return strbuf_detach(&sb, NULL);
}

static void test_sanitize_keeps_text_and_escapes_controls(void **state)
{
    char *s;

    (void)state;
    s = sanitized("Zoë Ångström", strlen("Zoë Ångström"));
    assert_string_equal(s, "Zoë Ångström");
    free(s);
    /* a terminal escape, a newline, a tab and a NUL */
    s = sanitized("a\x1b[31mb\nc\td\0e", 13);
    assert_string_equal(s, "a\\x1b[31mb\\nc\\td\\x00e");
    free(s);
    /* invalid UTF-8: a lone continuation byte, a truncated sequence, an
     * overlong form and a C1 control */
    s = sanitized("x\x80y\xc3", 4);
    assert_string_equal(s, "x\\x80y\\xc3");
    free(s);
    s = sanitized("\xc0\xaf", 2);
    assert_string_equal(s, "\\xc0\\xaf");
    free(s);
    s = sanitized("\xc2\x9b", 2);
    assert_string_equal(s, "\\xc2\\x9b");
    free(s);
}

static void test_width_counts_code_points(void **state)
{
    (void)state;
    assert_int_equal(text_width(""), 0);
    assert_int_equal(text_width("abc"), 3);
    assert_int_equal(text_width("Zoë"), 3);
    assert_int_equal(text_width("日本"), 2);
}

static void test_durations(void **state)
{
    static const struct {
        long long us;
        const char *text;
    } cases[] = {
        {-1, "-"},          {0, "0.00 s"},           {350000, "0.35 s"},         {1200000, "1.2 s"},
        {42000000, "42 s"}, {185000000, "3 m 05 s"}, {7380000000LL, "2 h 03 m"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct strbuf sb = STRBUF_INIT;

        fmt_duration(&sb, cases[i].us);
        assert_string_equal(sb.buf, cases[i].text);
        strbuf_release(&sb);
    }
}

static void test_times(void **state)
{
    struct strbuf sb = STRBUF_INIT;

    (void)state;
    fmt_iso_time(&sb, 1714564402123456LL);
    assert_string_equal(sb.buf, "2024-05-01T11:53:22.123Z");
    strbuf_reset(&sb);
    fmt_local_time(&sb, 0);
    assert_string_equal(sb.buf, "-");
    strbuf_reset(&sb);
    setenv("TZ", "UTC", 1);
    fmt_local_time(&sb, 1714564402123456LL);
    assert_string_equal(sb.buf, "2024-05-01 11:53:22");
    strbuf_release(&sb);
}

static char *print_table(const struct table *t, size_t indent)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);

    assert_non_null(fp);
    table_print(t, fp, indent);
    fclose(fp);
    return buf;
}

static void test_table_layout(void **state)
{
    struct table *t = table_new();
    char *out;

    (void)state;
    table_add_column(t, "RUN", TABLE_RIGHT);
    table_add_column(t, "STEP", TABLE_LEFT);
    table_add_column(t, "MESSAGE", TABLE_LEFT);
    table_add_row(t);
    table_add_cellf(t, "%d", 7);
    table_add_cell(t, "full-import");
    table_add_cell(t, "Zoë\nsecond line");
    table_add_row(t);
    table_add_cell(t, "123");
    table_add_cell(t, "sync");
    table_add_cell(t, NULL); /* empty last cell: no trailing blanks */
    table_add_row(t);
    table_add_cell(t, "9");
    table_add_cell(t, "x");
    table_add_cell(t, "y");
    table_add_cell(t, "beyond the last column: ignored");
    assert_int_equal(table_rows(t), 3);
    out = print_table(t, 2);
    assert_string_equal(out, "  RUN  STEP         MESSAGE\n"
                             "    7  full-import  Zoë\\nsecond line\n"
                             "  123  sync\n"
                             "    9  x            y\n");
    free(out);
    table_free(t);
    table_free(NULL);
}

static void test_table_without_headers(void **state)
{
    struct table *t = table_new();
    char *out;

    (void)state;
    table_add_column(t, "", TABLE_LEFT);
    table_add_column(t, "", TABLE_LEFT);
    table_add_cell(t, "type:"); /* a first cell starts a row by itself */
    table_add_cell(t, "person");
    table_add_row(t);
    table_add_cell(t, "import state:");
    table_add_cell(t, "none");
    out = print_table(t, 0);
    assert_string_equal(out, "type:          person\n"
                             "import state:  none\n");
    free(out);
    table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sanitize_keeps_text_and_escapes_controls),
        cmocka_unit_test(test_width_counts_code_points),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_table_layout),
        cmocka_unit_test(test_table_without_headers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
