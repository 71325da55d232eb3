/* check.c - `idsync check`: load the configuration, open the store, and
 * create, open and check every connector; one block of findings each. */
#include "cmd/cmd.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connector/connector.h"
#include "engine/engine.h"
#include "util/mem.h"
#include "util/table.h"
#include "util/banned.h"

/* "postgresql://user:secret@host/db" -> "postgresql://user:***@host/db" */
static void mask_url(struct strbuf *out, const char *url)
{
    const char *scheme = strstr(url, "://");
    const char *at;
    const char *colon;

    if (scheme == NULL) {
        strbuf_addstr(out, url);
        return;
    }
    at = strchr(scheme + 3, '@');
    colon = strchr(scheme + 3, ':');
    if (at == NULL || colon == NULL || colon > at) {
        strbuf_addstr(out, url);
        return;
    }
    strbuf_add(out, url, (size_t)(colon - url));
    strbuf_addstr(out, ":***");
    strbuf_addstr(out, at);
}

/* "key: value" lines of a connector report -> JSON array of {key, value}
 * (keys repeat: one group per object type) and/or a table. */
static void report_lines(const char *text, json_t *obj, struct table *t)
{
    struct strvec lines = STRVEC_INIT;
    size_t i;

    strvec_split(&lines, text, '\n', true);
    for (i = 0; i < lines.nr; i++) {
        char *line = lines.v[i];
        char *sep = strstr(line, ": ");
        const char *key = line;
        const char *value = "";

        if (sep != NULL) {
            *sep = '\0';
            value = sep + 2;
        } else if (line[0] != '\0' && line[strlen(line) - 1] == ':') {
            line[strlen(line) - 1] = '\0';
        }
        if (obj != NULL) {
            json_t *pair = json_object();

            json_object_set_new(pair, "key", cli_json_str(key));
            json_object_set_new(pair, "value", cli_json_str(value));
            json_array_append_new(obj, pair);
        }
        if (t != NULL) {
            table_add_row(t);
            table_add_cellf(t, "%s:", key);
            table_add_cell(t, value);
        }
    }
    strvec_clear(&lines);
}

static void print_block_error(const char *what, const struct ids_error *err)
{
    struct strbuf sb = STRBUF_INIT;

    text_sanitize(&sb, err->msg, strlen(err->msg));
    printf("  %s: %s\n", what, sb.buf);
    strbuf_release(&sb);
}

static json_t *error_obj(enum ids_err code, const struct ids_error *err)
{
    json_t *e = json_object();

    json_object_set_new(e, "code", json_string(ids_err_name(code)));
    json_object_set_new(e, "message", cli_json_str(err->msg));
    return e;
}

/* One connector: create, open, check. Returns the exit status it adds. */
static int check_connector(struct cli *cli, struct connector_config *cc, json_t *arr)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct connector *c = NULL;
    struct strbuf report = STRBUF_INIT;
    enum ids_err ret;
    int status = EXIT_OK;
    const char *stage = "create";
    json_t *j = json_object();

    json_object_set_new(j, "name", cli_json_str(cc->name));
    json_object_set_new(j, "type", cli_json_str(cc->type));
    if (!cli->json) {
        printf("\nconnector %s (%s)\n", cc->name, cc->type ? cc->type : "?");
    }
    ret = connector_create(cc, &c, &err);
    if (ret == IDS_OK) {
        stage = "open";
        ret = connector_open(c, &err);
    }
    if (ret == IDS_OK) {
        stage = "check";
        ret = connector_check(c, &report, &err);
    }
    if (ret == IDS_OK) {
        json_t *r = json_array();
        struct table *t = cli->json ? NULL : table_new();

        if (t != NULL) {
            table_add_column(t, "", TABLE_LEFT);
            table_add_column(t, "", TABLE_LEFT);
        }
        report_lines(report.buf, r, t);
        if (t != NULL) {
            if (table_rows(t) == 0) {
                printf("  ok\n");
            } else {
                table_print(t, stdout, 2);
            }
            table_free(t);
        }
        json_object_set_new(j, "ok", json_true());
        json_object_set_new(j, "report", r);
        json_object_set_new(j, "error", json_null());
    } else {
        status = cli_status_for(ret);
        if (status != EXIT_CONFIG) {
            status = EXIT_UNREACHABLE;
        }
        if (!cli->json) {
            print_block_error(status == EXIT_CONFIG ? "configuration error" : "unreachable", &err);
        }
        json_object_set_new(j, "ok", json_false());
        json_object_set_new(j, "stage", json_string(stage));
        json_object_set_new(j, "report", json_array());
        json_object_set_new(j, "error", error_obj(ret, &err));
    }
    json_array_append_new(arr, j);
    connector_close(c);
    strbuf_release(&report);
    return status;
}

/* Connector spaces of the store that no connector of the configuration
 * names (a connector renamed or removed): their objects are no longer read,
 * synced or written, and a renamed connector starts with an empty space. A
 * note each (naming `idsync space rename` and `space drop`), and a JSON
 * array of {connector, objects}. */
static json_t *unconfigured_spaces(struct cli *cli)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf name = STRBUF_INIT;
    json_t *arr = json_array();
    int64_t id = 0;

    while (store_connector_next(cli->store, id, &id, &err) == IDS_OK) {
        long n = 0;

        strbuf_reset(&name);
        if (store_connector_name(cli->store, id, &name, &err) != IDS_OK ||
            config_connector(cli->cfg, name.buf) != NULL ||
            store_cs_count(cli->store, id, STORE_SEL_ALL, &n, &err) != IDS_OK || n == 0) {
            continue;
        }
        if (!cli->json) {
            printf("  note: %ld connector-space object%s of connector %s, which the "
                   "configuration no longer has (renamed or removed): they are no longer read, "
                   "synced or written, but what they contributed stays in the metaverse and in "
                   "the targets. A connector renamed keeps them with `idsync space rename %s "
                   "NEW` (before its first cycle; else it reads everything again and joins by "
                   "its rules); a connector removed for good ends with `idsync space drop %s` "
                   "(try --dry-run first).\n",
                   n, n == 1 ? "" : "s", name.buf, name.buf, name.buf);
        }
        json_array_append_new(
            arr, json_pack("{s:s, s:I}", "connector", name.buf, "objects", (json_int_t)n));
    }
    strbuf_release(&name);
    return arr;
}

/* The steps the next cycle runs in full because the configuration changed
 * since (engine fingerprints): a note each, and a JSON object
 * {"sync": bool, "imports": [connector, ...]}. */
static json_t *full_steps(struct cli *cli, long mv)
{
    struct strbuf fp = STRBUF_INIT;
    struct strbuf wm = STRBUF_INIT;
    struct ids_error err = IDS_ERROR_INIT;
    json_t *imports = json_array();
    bool first = false;
    bool sync;
    size_t i;

    sync = engine_rules_changed(cli->store, cli->cfg, &fp, &first) && mv > 0;
    if (sync && !cli->json) {
        printf("  note: the metaverse rules (joins, flows, provisioning) %s: the next sync runs "
               "in full over the %ld metaverse object%s. `idsync cycle --dry-run` lists what "
               "it will change.\n",
               first ? "were never recorded" : "changed since the last sync", mv,
               mv == 1 ? "" : "s");
    }
    for (i = 0; i < cli->cfg->nconnectors; i++) {
        const struct connector_config *cc = &cli->cfg->connectors[i];
        int64_t id = 0;

        strbuf_reset(&wm);
        if (store_connector_find(cli->store, cc->name, &id, &err) != IDS_OK ||
            store_watermark_get(cli->store, id, &wm, &err) != IDS_OK) {
            ids_error_clear(&err);
            continue; /* never imported: its first import is full anyway */
        }
        if (!engine_scope_changed(cli->store, cc, &fp, &first)) {
            continue;
        }
        json_array_append_new(imports, json_string(cc->name));
        if (!cli->json) {
            bool waits = config_connector_used(cli->cfg, cc->name, false) &&
                         !config_connector_used(cli->cfg, cc->name, true);

            printf("  note: the scope of connector %s (object types, filters, attributes) %s: "
                   "%s\n",
                   cc->name, first ? "was never recorded" : "changed since its last import",
                   waits ? "the next cycle reads it in full after its exports"
                         : "its next import reads it in full");
        }
    }
    strbuf_release(&fp);
    strbuf_release(&wm);
    return json_pack("{s:b, s:o}", "sync", sync, "imports", imports);
}

int cmd_check(struct cli *cli, int argc, char **argv)
{
    static const struct option longopts[] = {{NULL, 0, NULL, 0}};
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf url = STRBUF_INIT;
    json_t *doc = NULL;
    json_t *conns = NULL;
    json_t *sj = NULL;
    enum ids_err ret;
    int status = EXIT_OK;
    int c;
    size_t i;
    bool config_error = false;
    bool unreachable = false;

    c = cli_getopt(cli, argc, argv, "", longopts);
    if (c != -1) {
        return c == '?' ? EXIT_CONFIG : cli_usage_error(cli, "unexpected option");
    }
    if (optind < argc) {
        return cli_usage_error(cli, "unexpected argument \"%s\"", argv[optind]);
    }
    status = cli_load_config(cli);
    if (status != 0) {
        return status;
    }
    doc = json_object();
    conns = json_array();
    sj = json_object();
    {
        json_t *cj = json_object();

        json_object_set_new(cj, "path", cli_json_str(cli->cfg->path));
        json_object_set_new(cj, "ok", json_true());
        json_object_set_new(cj, "connectors", json_integer((json_int_t)cli->cfg->nconnectors));
        json_object_set_new(cj, "metaverse_types", json_integer((json_int_t)cli->cfg->nmv_types));
        json_object_set_new(doc, "config", cj);
    }
    if (!cli->json) {
        printf("configuration %s\n  ok: %zu connector%s, %zu metaverse type%s\n", cli->cfg->path,
               cli->cfg->nconnectors, cli->cfg->nconnectors == 1 ? "" : "s", cli->cfg->nmv_types,
               cli->cfg->nmv_types == 1 ? "" : "s");
    }

    /* the store */
    mask_url(&url, cli->cfg->store ? cli->cfg->store : "");
    json_object_set_new(sj, "url", cli_json_str(url.buf));
    if (!cli->json) {
        printf("\nstore %s\n", url.buf);
    }
    ret = store_open(cli->cfg->store, &cli->store, &err);
    if (ret != IDS_OK) {
        cli->store = NULL;
        if (ret == IDS_ECONFIG) {
            config_error = true;
        } else {
            unreachable = true;
        }
        if (!cli->json) {
            print_block_error(ret == IDS_ECONFIG ? "configuration error" : "unreachable", &err);
        }
        json_object_set_new(sj, "ok", json_false());
        json_object_set_new(sj, "error", error_obj(ret, &err));
    } else {
        long mv = 0;
        long cs = 0;

        ret = store_mv_count(cli->store, &mv, &err);
        if (ret == IDS_OK) {
            ret = store_cs_count(cli->store, 0, STORE_SEL_ALL, &cs, &err);
        }
        if (ret != IDS_OK) {
            unreachable = true;
            if (!cli->json) {
                print_block_error("unreadable", &err);
            }
            json_object_set_new(sj, "ok", json_false());
            json_object_set_new(sj, "error", error_obj(ret, &err));
        } else {
            if (!cli->json) {
                printf("  ok: %ld metaverse object%s, %ld connector-space object%s\n", mv,
                       mv == 1 ? "" : "s", cs, cs == 1 ? "" : "s");
            }
            json_object_set_new(sj, "ok", json_true());
            json_object_set_new(sj, "metaverse_objects", json_integer(mv));
            json_object_set_new(sj, "connector_space_objects", json_integer(cs));
            json_object_set_new(sj, "error", json_null());
            json_object_set_new(sj, "unconfigured_spaces", unconfigured_spaces(cli));
            json_object_set_new(sj, "full_steps", full_steps(cli, mv));
        }
    }
    json_object_set_new(doc, "store", sj);

    /* every connector */
    for (i = 0; i < cli->cfg->nconnectors; i++) {
        int s = check_connector(cli, &cli->cfg->connectors[i], conns);

        if (s == EXIT_CONFIG) {
            config_error = true;
        } else if (s != EXIT_OK) {
            unreachable = true;
        }
    }
    json_object_set_new(doc, "connectors", conns);
    status = config_error ? EXIT_CONFIG : unreachable ? EXIT_UNREACHABLE : EXIT_OK;
    json_object_set_new(doc, "ok", json_boolean(status == EXIT_OK));
    if (cli->json) {
        cli_json_print(doc);
        doc = NULL;
    } else {
        printf("\n%s\n", status == EXIT_OK       ? "everything is reachable"
                         : status == EXIT_CONFIG ? "configuration errors (see above)"
                                                 : "some systems are unreachable (see above)");
    }
    if (status != EXIT_OK) {
        fprintf(stderr, "idsync: check failed: %s\n",
                status == EXIT_CONFIG ? "configuration errors" : "unreachable systems");
    }
    json_decref(doc);
    strbuf_release(&url);
    return status;
}
