/* fuzz_ldif.c - libFuzzer target: the input is an LDIF file read to the
 * end through the ldif connector (full read with folding of change
 * records, a delta read from an empty file), then appended to. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config_value val[2];
    struct connector_config cfg;
    struct object_type_config ot;
    struct reference_config ref;
    struct connector *c = NULL;
    struct connector_cursor *cur = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf path = STRBUF_INIT;
    struct export_result res;
    struct change *ch;
    struct mod *m;
    FILE *f;
    size_t j;

    if (dir[0] == '\0') {
        snprintf(dir, sizeof(dir), "/tmp/fuzz-ldif-XXXXXX");
        if (mkdtemp(dir) == NULL) {
            abort();
        }
        log_setup(LOG_QUIET, LOG_LOGFMT);
    }
    strbuf_addf(&path, "%s/in.ldif", dir);
    f = fopen(path.buf, "wb");
    if (f == NULL) {
        abort();
    }
    if (size > 0 && fwrite(data, 1, size, f) != size) {
        abort();
    }
    fclose(f);

    memset(&cfg, 0, sizeof(cfg));
    memset(&ot, 0, sizeof(ot));
    memset(val, 0, sizeof(val));
    for (j = 0; ldif_connector_ops.options[j].key != NULL; j++) {
        if (strcmp(ldif_connector_ops.options[j].key, "path") == 0) {
            val[0].opt = &ldif_connector_ops.options[j];
        }
        if (strcmp(ldif_connector_ops.options[j].key, "settle") == 0) {
            val[1].opt = &ldif_connector_ops.options[j]; /* num 0: read at once */
        }
    }
    strvec_init(&val[0].list);
    strvec_init(&val[1].list);
    val[0].str = path.buf;
    val[1].str = (char *)"0";
    cfg.name = (char *)"fuzz";
    cfg.type = (char *)"ldif";
    cfg.ops = &ldif_connector_ops;
    cfg.opts.nr = 2;
    cfg.opts.v = val;
    ot.name = (char *)"entry";
    ot.filter = (char *)"(|(objectClass=person)(!(cn=*)))";
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
        connector_cursor_free(c, cur);
    }
    if (connector_read_changes(c, "ldif1:0:0000000000000000", &cur, &err) == IDS_OK) {
        fuzz_drain(c, cur);
        connector_cursor_free(c, cur);
    }
    /* append after whatever the input left at its end */
    if (connector_export_begin(c, &err) == IDS_OK) {
        ch = change_new(CHANGE_MODIFY, "entry", "a", "cn=a,dc=x");
        ch->new_dn = strdup("cn=b,ou=y,dc=x");
        m = change_add_mod(ch, MOD_REPLACE, "cn", 0);
        attr_add_value(&m->attr, " b:", 3);
        connector_submit(c, ch, 1, &err);
        change_free(ch);
        connector_export_end(c, &err);
        while (connector_poll(c, true, &res, &err) == IDS_OK) {
            export_result_release(&res);
        }
        if (connector_read_full(c, &cur, &err) == IDS_OK) {
            fuzz_drain(c, cur);
            connector_cursor_free(c, cur);
        }
    }
done:
    connector_close(c);
    unlink(path.buf);
    strbuf_release(&path);
    return 0;
}
