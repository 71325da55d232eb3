/* fuzz_csv.c - libFuzzer target: the input is a CSV file read to the end
 * through the csv connector (header, quoting, multi-values, bad rows),
 * then used as the existing file of an export (streamed rewrite). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "connector/connector.h"
#include "entry.h"
#include "util/log.h"
#include "util/strbuf.h"
#include "util/strvec.h"
#include "fuzz_drain.h"
#include "util/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

static void write_input(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");

    if (f == NULL) {
        abort();
    }
    if (size > 0 && fwrite(data, 1, size, f) != size) {
        abort();
    }
    fclose(f);
}

/* The input with the rows after its first line rotated by half. */
static void write_rotated(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    const uint8_t *nl = memchr(data, '\n', size);
    size_t head = nl != NULL ? (size_t)(nl - data) + 1 : size;
    size_t rest = size - head;
    size_t h = rest / 2;

    if (f == NULL) {
        abort();
    }
    if ((head > 0 && fwrite(data, 1, head, f) != head) ||
        (rest > h && fwrite(data + head + h, 1, rest - h, f) != rest - h) ||
        (h > 0 && fwrite(data + head, 1, h, f) != h)) {
        abort();
    }
    fclose(f);
}

/* The input with a row after it. */
static void write_appended(const char *path, const uint8_t *data, size_t size)
{
    static const char row[] = "new;x\r\n";
    FILE *f = fopen(path, "wb");

    if (f == NULL) {
        abort();
    }
    if ((size > 0 && fwrite(data, 1, size, f) != size) ||
        fwrite(row, 1, sizeof(row) - 1, f) != sizeof(row) - 1) {
        abort();
    }
    fclose(f);
}

static const struct config_option *find_option(const char *key)
{
    size_t j;

    for (j = 0; csv_connector_ops.options[j].key != NULL; j++) {
        if (strcmp(csv_connector_ops.options[j].key, key) == 0) {
            return &csv_connector_ops.options[j];
        }
    }
    abort();
}

/* One input: a full read, two delta reads of changed copies, an export, a
 * read as UTF-16. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const keys[] = {"path", "key", "separator", "settle"};
    struct config_value vals[5];
    struct connector_config cfg;
    struct object_type_config ot;
    struct reference_config ref;
    struct connector *c = NULL;
    struct connector_cursor *cur = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf path = STRBUF_INIT;
    struct strbuf wm = STRBUF_INIT;
    struct export_result res;
    struct change *ch;
    struct mod *m;
    size_t i;

    if (dir[0] == '\0') {
        snprintf(dir, sizeof(dir), "/tmp/fuzz-csv-XXXXXX");
        if (mkdtemp(dir) == NULL) {
            abort();
        }
        log_setup(LOG_QUIET, LOG_LOGFMT);
    }
    strbuf_addf(&path, "%s/in.csv", dir);
    write_input(path.buf, data, size);

    memset(&cfg, 0, sizeof(cfg));
    memset(&ot, 0, sizeof(ot));
    memset(vals, 0, sizeof(vals));
    for (i = 0; i < 4; i++) {
        vals[i].opt = find_option(keys[i]);
        strvec_init(&vals[i].list);
    }
    vals[0].str = path.buf;
    vals[1].str = (char *)"id";
    vals[2].str = (char *)";";
    vals[3].str = (char *)"0"; /* num 0: read at once */
    cfg.name = (char *)"fuzz";
    cfg.type = (char *)"csv";
    cfg.ops = &csv_connector_ops;
    cfg.opts.nr = 4;
    cfg.opts.v = vals;
    ot.name = (char *)"user";
    strvec_init(&ot.attributes);
    ref.attr = (char *)"member";
    strvec_init(&ref.types);
    ot.nrefs = 1;
    ot.refs = &ref;
    cfg.nobjects = 1;
    cfg.objects = &ot;

    if (connector_create(&cfg, &c, &err) != IDS_OK || connector_open(c, &err) != IDS_OK) {
        goto done;
    }
    if (connector_read_full(c, &cur, &err) == IDS_OK) {
        fuzz_drain(c, cur);
        if (connector_cursor_watermark(c, cur, &wm, &err) == IDS_OK) {
            connector_cursor_free(c, cur);
            cur = NULL;
            /* a delta read of the file with its halves swapped: rows kept,
             * moved, changed where they were, new, gone, duplicated */
            write_rotated(path.buf, data, size);
            if (connector_read_changes(c, wm.buf, &cur, &err) == IDS_OK) {
                fuzz_drain(c, cur);
                connector_cursor_free(c, cur);
                cur = NULL;
            }
            /* the file with a row added at its end: its runs of rows are
             * found where they were and kept whole (a run split, a run
             * that ends without a line end) */
            write_appended(path.buf, data, size);
            if (connector_read_changes(c, wm.buf, &cur, &err) == IDS_OK) {
                fuzz_drain(c, cur);
                connector_cursor_free(c, cur);
                cur = NULL;
            }
            write_input(path.buf, data, size);
        }
        connector_cursor_free(c, cur);
        cur = NULL;
    }
    /* the input as the existing file of an export */
    if (connector_export_begin(c, &err) == IDS_OK) {
        ch = change_new(CHANGE_MODIFY, "user", "1", "1");
        m = change_add_mod(ch, MOD_ADD, "member", ATTR_REF);
        attr_add_value(&m->attr, "x;y\\", 4);
        connector_submit(c, ch, 1, &err);
        change_free(ch);
        ch = change_new(CHANGE_ADD, "user", NULL, "2");
        m = change_add_mod(ch, MOD_ADD, "id", 0);
        attr_add_value(&m->attr, "2", 1);
        connector_submit(c, ch, 2, &err);
        change_free(ch);
        connector_export_end(c, &err);
        while (connector_poll(c, true, &res, &err) == IDS_OK) {
            export_result_release(&res);
        }
    }
    /* the input read as UTF-16 (converted before it is parsed: characters
     * cut by a read, bytes that are not UTF-16, a byte order mark) */
    connector_close(c);
    c = NULL;
    write_input(path.buf, data, size);
    vals[4] = vals[0];
    vals[4].opt = find_option("encoding");
    vals[4].str = (char *)"UTF-16";
    cfg.opts.nr = 5;
    if (connector_create(&cfg, &c, &err) == IDS_OK && connector_open(c, &err) == IDS_OK &&
        connector_read_full(c, &cur, &err) == IDS_OK) {
        fuzz_drain(c, cur);
        connector_cursor_free(c, cur);
        cur = NULL;
    }
done:
    connector_close(c);
    strbuf_release(&wm);
    unlink(path.buf);
    strbuf_release(&path);
    return 0;
}
