/* preview.c - `idsync preview CONNECTOR ANCHOR|DN`: what a sync would do to
 * one object, rule by rule (engine_preview), rendered for people. */
#include "cmd/cmd.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "util/mem.h"
#include "util/table.h"
#include "util/banned.h"

static const char *jstr(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static void add_sanitized(struct strbuf *sb, const char *s)
{
    if (s == NULL) {
        s = "-";
    }
    text_sanitize(sb, s, strlen(s));
}

static void values_text(struct strbuf *out, const char *attr, const json_t *arr)
{
    size_t i;
    json_t *v;

    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        strbuf_addstr(out, "(none)");
        return;
    }
    json_array_foreach(arr, i, v)
    {
        if (i > 0) {
            strbuf_addstr(out, ", ");
        }
        if (i == 5) {
            strbuf_addf(out, "... (%zu values)", json_array_size(arr));
            break;
        }
        if (json_is_string(v)) {
            cli_value_text(out, attr, json_string_value(v), json_string_length(v));
        } else if (json_is_integer(v)) {
            strbuf_addf(out, "%lld", (long long)json_integer_value(v));
        } else {
            strbuf_addstr(out, "<binary>");
        }
    }
}

static const char *flow_source(const struct config *cfg, const char *mv_type, long from,
                               struct strbuf *out)
{
    size_t i;

    strbuf_reset(out);
    if (from < 0) {
        return "";
    }
    for (i = 0; mv_type != NULL && i < cfg->nmv_types; i++) {
        const struct mv_type_config *t = &cfg->mv_types[i];

        if (strcmp(t->name, mv_type) == 0 && (size_t)from < t->nfrom) {
            strbuf_addf(out, "%s/%s", t->from[from].connector, t->from[from].object);
            return out->buf;
        }
    }
    strbuf_addf(out, "from[%ld]", from);
    return out->buf;
}

static void print_join_rules(const json_t *rules)
{
    size_t i;
    size_t k;
    json_t *r;
    json_t *cond;

    if (!json_is_array(rules) || json_array_size(rules) == 0) {
        return;
    }
    printf("join rules:\n");
    json_array_foreach(rules, i, r)
    {
        const json_t *cands = json_object_get(r, "candidates");
        const char *result = jstr(r, "result");
        struct strbuf sb = STRBUF_INIT;

        strbuf_addf(&sb, "  rule %lld:", (long long)json_integer_value(json_object_get(r, "rule")));
        json_array_foreach(json_object_get(r, "conditions"), k, cond)
        {
            if (k > 0) {
                strbuf_addstr(&sb, " and");
            }
            strbuf_addch(&sb, ' ');
            add_sanitized(&sb, jstr(cond, "attr"));
            strbuf_addstr(&sb, " = ");
            values_text(&sb, jstr(cond, "attr"), json_object_get(cond, "values"));
            if (jstr(cond, "expr") != NULL && strcmp(jstr(cond, "expr"), jstr(cond, "attr")) != 0) {
                strbuf_addstr(&sb, " (from ");
                add_sanitized(&sb, jstr(cond, "expr"));
                strbuf_addch(&sb, ')');
            }
        }
        strbuf_addf(&sb, ": %zu candidate%s", json_array_size(cands),
                    json_array_size(cands) == 1 ? "" : "s");
        if (json_array_size(cands) > 0) {
            json_t *id;

            strbuf_addstr(&sb, " (mv");
            json_array_foreach(cands, k, id)
            {
                if (k == 5) {
                    strbuf_addstr(&sb, " ...");
                    break;
                }
                strbuf_addf(&sb, " %lld", (long long)json_integer_value(id));
            }
            strbuf_addch(&sb, ')');
        }
        if (result != NULL) {
            strbuf_addf(&sb, " -> %s", result);
        }
        printf("%s\n", sb.buf);
        strbuf_release(&sb);
    }
}

static void print_flows(const struct config *cfg, const json_t *doc)
{
    const json_t *flows = json_object_get(doc, "flows");
    const char *mv_type = jstr(doc, "mv_type");
    struct table *t;
    struct strbuf sb = STRBUF_INIT;
    struct strbuf src = STRBUF_INIT;
    size_t i;
    json_t *f;

    if (!json_is_array(flows) || json_array_size(flows) == 0) {
        return;
    }
    printf("metaverse object %lld (%s):\n",
           (long long)json_integer_value(json_object_get(doc, "mv_id")), mv_type ? mv_type : "?");
    t = table_new();
    table_add_column(t, "", TABLE_LEFT);
    table_add_column(t, "ATTRIBUTE", TABLE_LEFT);
    table_add_column(t, "BEFORE", TABLE_LEFT);
    table_add_column(t, "AFTER", TABLE_LEFT);
    table_add_column(t, "FROM", TABLE_LEFT);
    json_array_foreach(flows, i, f)
    {
        const char *attr = jstr(f, "attr");

        table_add_row(t);
        table_add_cell(t, json_is_true(json_object_get(f, "changed")) ? "*" : "");
        table_add_cell(t, attr);
        strbuf_reset(&sb);
        values_text(&sb, attr, json_object_get(f, "old"));
        table_add_cell(t, sb.buf);
        strbuf_reset(&sb);
        values_text(&sb, attr, json_object_get(f, "new"));
        table_add_cell(t, sb.buf);
        table_add_cell(t, flow_source(cfg, mv_type,
                                      (long)json_integer_value(json_object_get(f, "from")), &src));
    }
    table_print(t, stdout, 0);
    table_free(t);
    strbuf_release(&sb);
    strbuf_release(&src);
}

static void print_export(const json_t *ex)
{
    const json_t *mods = json_object_get(ex, "mods");
    struct strbuf sb = STRBUF_INIT;
    size_t i;
    json_t *m;

    strbuf_addf(&sb, "    export: %s %s ", jstr(ex, "op") ? jstr(ex, "op") : "?",
                jstr(ex, "type") ? jstr(ex, "type") : "?");
    add_sanitized(&sb, jstr(ex, "dn") ? jstr(ex, "dn") : jstr(ex, "anchor"));
    if (jstr(ex, "new_dn") != NULL) {
        strbuf_addstr(&sb, " -> ");
        add_sanitized(&sb, jstr(ex, "new_dn"));
    }
    printf("%s\n", sb.buf);
    json_array_foreach(mods, i, m)
    {
        const char *attr = jstr(m, "attr");

        strbuf_reset(&sb);
        strbuf_addstr(&sb, "      ");
        add_sanitized(&sb, attr);
        strbuf_addf(&sb, ": %s ", jstr(m, "op") ? jstr(m, "op") : "?");
        values_text(&sb, attr, json_object_get(m, "values"));
        printf("%s\n", sb.buf);
    }
    strbuf_release(&sb);
}

static void print_preview(const struct config *cfg, const json_t *doc)
{
    const json_t *scope = json_object_get(doc, "scope");
    const json_t *targets = json_object_get(doc, "targets");
    const json_t *errors = json_object_get(doc, "errors");
    const json_t *referrers = json_object_get(doc, "referrers");
    long long joined = (long long)json_integer_value(json_object_get(doc, "joined_to"));
    struct strbuf sb = STRBUF_INIT;
    size_t i;
    json_t *x;

    strbuf_addstr(&sb, "preview of ");
    add_sanitized(&sb, jstr(doc, "connector"));
    strbuf_addch(&sb, ' ');
    add_sanitized(&sb, jstr(doc, "anchor") ? jstr(doc, "anchor") : jstr(doc, "dn"));
    strbuf_addf(&sb, " (connector-space object %lld, %s)",
                (long long)json_integer_value(json_object_get(doc, "cs_id")),
                jstr(doc, "type") ? jstr(doc, "type") : "?");
    printf("%s\n", sb.buf);
    strbuf_reset(&sb);
    add_sanitized(&sb, jstr(doc, "dn"));
    printf("  dn:            %s\n", sb.buf);
    printf("  import state:  %s\n", jstr(doc, "import_state") ? jstr(doc, "import_state") : "-");
    printf("  scope:         %s\n", json_is_true(scope)    ? "in scope"
                                    : json_is_false(scope) ? "out of scope"
                                                           : "(no scope filter)");
    if (joined > 0) {
        printf("  joined to:     metaverse object %lld\n", joined);
    } else {
        printf("  joined to:     (none: disconnector)\n");
    }
    printf("  action:        %s\n", jstr(doc, "action") ? jstr(doc, "action") : "none");
    print_join_rules(json_object_get(doc, "join_rules"));
    print_flows(cfg, doc);
    if (json_is_array(targets) && json_array_size(targets) > 0) {
        printf("targets:\n");
        json_array_foreach(targets, i, x)
        {
            strbuf_reset(&sb);
            add_sanitized(&sb, jstr(x, "connector"));
            if (jstr(x, "object") != NULL) {
                strbuf_addch(&sb, '/');
                add_sanitized(&sb, jstr(x, "object"));
            }
            printf("  %s: %s\n", sb.buf, jstr(x, "action") ? jstr(x, "action") : "?");
            if (json_is_object(json_object_get(x, "export"))) {
                print_export(json_object_get(x, "export"));
            }
        }
    }
    if (json_is_array(referrers) && json_array_size(referrers) > 0) {
        printf("metaverse objects that name it, synced again with it (their members in the "
               "targets):\n");
        json_array_foreach(referrers, i, x)
        {
            strbuf_reset(&sb);
            add_sanitized(&sb, jstr(x, "mv_type"));
            printf("  %lld (%s): %s\n", (long long)json_integer_value(json_object_get(x, "mv_id")),
                   sb.buf,
                   jstr(x, "why") && strcmp(jstr(x, "why"), "recompute") == 0
                       ? "recomputed (this object leaves the metaverse)"
                       : "outbound again (this object's target object goes or is renamed)");
        }
    }
    if (json_is_array(errors) && json_array_size(errors) > 0) {
        printf("errors:\n");
        json_array_foreach(errors, i, x)
        {
            strbuf_reset(&sb);
            add_sanitized(&sb, jstr(x, "code"));
            if (jstr(x, "attr") != NULL) {
                strbuf_addstr(&sb, " [");
                add_sanitized(&sb, jstr(x, "attr"));
                strbuf_addch(&sb, ']');
            }
            strbuf_addstr(&sb, ": ");
            add_sanitized(&sb, jstr(x, "message"));
            printf("  %s\n", sb.buf);
        }
    }
    strbuf_release(&sb);
}

int cmd_preview(struct cli *cli, int argc, char **argv)
{
    static const struct option longopts[] = {{NULL, 0, NULL, 0}};
    struct ids_error err = IDS_ERROR_INIT;
    struct engine *eng = NULL;
    struct engine_opts opts;
    struct strbuf out = STRBUF_INIT;
    const char *connector;
    const char *id;
    json_error_t jerr;
    json_t *doc;
    enum ids_err ret;
    int status;

    if (cli_getopt(cli, argc, argv, "", longopts) != -1) {
        return EXIT_CONFIG;
    }
    if (argc - optind < 2) {
        return cli_usage_error(cli, "preview needs a CONNECTOR and an ANCHOR or DN");
    }
    connector = argv[optind];
    id = argv[optind + 1];
    if (argc - optind > 2) {
        return cli_usage_error(cli, "unexpected argument \"%s\"", argv[optind + 2]);
    }
    status = cli_load_config(cli);
    if (status == 0) {
        status = cli_require_connector(cli, connector);
    }
    if (status == 0) {
        status = cli_open_store(cli);
    }
    if (status != 0) {
        return status;
    }
    memset(&opts, 0, sizeof(opts));
    ret = engine_new(cli->cfg, cli->store, &opts, &eng, &err);
    if (ret == IDS_OK) {
        ret = engine_preview(eng, connector, id, &out, &err);
    }
    engine_free(eng);
    if (ret != IDS_OK) {
        strbuf_release(&out);
        return cli_fail(cli, cli_status_for(ret), &err);
    }
    doc = json_loadb(out.buf, out.len, 0, &jerr);
    if (doc == NULL) {
        ids_error_set(&err, IDS_EINTERNAL, "the preview of %s %s does not parse: %s", connector, id,
                      jerr.text);
        strbuf_release(&out);
        return cli_fail(cli, EXIT_UNREACHABLE, &err);
    }
    if (cli->json) {
        cli_json_print(doc);
    } else {
        print_preview(cli->cfg, doc);
        json_decref(doc);
    }
    strbuf_release(&out);
    return EXIT_OK;
}
