/* show.c - `idsync show cs CONNECTOR ANCHOR|DN` and `idsync show mv ID |
 * --where ATTR=VALUE`: one stored object with its state and links. */
#include "cmd/cmd.h"

#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/mem.h"
#include "util/table.h"
#include "util/banned.h"

/* Most CS objects linked to one MV object that are shown. */
#define MAX_LINKS 256
/* Most MV objects one --where shows. */
#define MAX_MATCHES 50

static const char *const import_states[] = {"none", "add", "update", "delete"};
static const char *const export_states[] = {"none", "pending", "in-flight", "failed"};

static const char *import_state_name(enum cs_import_state s)
{
    return (unsigned)s < ARRAY_SIZE(import_states) ? import_states[s] : "?";
}

static const char *export_state_name(enum cs_export_state s)
{
    return (unsigned)s < ARRAY_SIZE(export_states) ? export_states[s] : "?";
}

/* Name of the connector with store id `id` (configured connectors only). */
static const char *connector_name(struct cli *cli, int64_t id)
{
    struct ids_error err = IDS_ERROR_INIT;
    size_t i;

    for (i = 0; i < cli->cfg->nconnectors; i++) {
        int64_t cid = 0;

        if (store_connector_id(cli->store, cli->cfg->connectors[i].name, &cid, &err) == IDS_OK &&
            cid == id) {
            return cli->cfg->connectors[i].name;
        }
    }
    return NULL;
}

static json_t *attr_values_json(const struct attr *a)
{
    json_t *arr = json_array();
    size_t k;

    for (k = 0; k < a->nvals; k++) {
        if (cli_attr_is_secret(a->name)) {
            json_array_append_new(arr, json_string("***"));
        } else {
            json_array_append_new(arr, cli_json_value(a->vals[k].data, a->vals[k].len));
        }
    }
    return arr;
}

static json_t *attributes_json(const struct entry *e)
{
    json_t *obj = json_object();
    size_t i;

    for (i = 0; e != NULL && i < e->nattrs; i++) {
        struct strbuf name = STRBUF_INIT;

        text_sanitize(&name, e->attrs[i].name, strlen(e->attrs[i].name));
        json_object_set_new(obj, name.buf, attr_values_json(&e->attrs[i]));
        strbuf_release(&name);
    }
    return obj;
}

static json_t *change_json(const struct change *c)
{
    struct strbuf sb = STRBUF_INIT;
    json_t *j;

    if (c == NULL) {
        return json_null();
    }
    change_to_json(c, &sb);
    j = json_loadb(sb.buf, sb.len, 0, NULL);
    strbuf_release(&sb);
    return j != NULL ? j : json_null();
}

/* Attribute rows: name, values (one per line), and a last column. */
static void attr_rows(struct table *t, const struct attr *a, const char *last)
{
    size_t k;

    for (k = 0; k < a->nvals || k == 0; k++) {
        struct strbuf sb = STRBUF_INIT;

        table_add_row(t);
        table_add_cell(t, k == 0 ? a->name : "");
        if (k < a->nvals) {
            cli_value_text(&sb, a->name, a->vals[k].data, a->vals[k].len);
        }
        table_add_cell(t, sb.buf);
        table_add_cell(t, k == 0 ? last : "");
        strbuf_release(&sb);
        if (k == 20 && a->nvals > 22) {
            table_add_row(t);
            table_add_cell(t, "");
            table_add_cellf(t, "... and %zu more values", a->nvals - 21);
            break;
        }
    }
}

static void print_change(const char *title, const struct change *c)
{
    struct strbuf sb = STRBUF_INIT;
    size_t i;
    size_t k;

    strbuf_addf(&sb, "%s: %s", title, change_op_name(c->op));
    if (c->dn != NULL) {
        strbuf_addch(&sb, ' ');
        text_sanitize(&sb, c->dn, strlen(c->dn));
    }
    if (c->new_dn != NULL) {
        strbuf_addstr(&sb, " -> ");
        text_sanitize(&sb, c->new_dn, strlen(c->new_dn));
    }
    printf("%s\n", sb.buf);
    for (i = 0; i < c->nmods; i++) {
        const struct mod *m = &c->mods[i];

        strbuf_reset(&sb);
        strbuf_addstr(&sb, "    ");
        text_sanitize(&sb, m->attr.name, strlen(m->attr.name));
        strbuf_addf(&sb, ": %s", mod_op_name(m->op));
        for (k = 0; k < m->attr.nvals && k < 10; k++) {
            strbuf_addstr(&sb, k ? ", " : " ");
            cli_value_text(&sb, m->attr.name, m->attr.vals[k].data, m->attr.vals[k].len);
        }
        if (m->attr.nvals > 10) {
            strbuf_addf(&sb, ", ... (%zu values)", m->attr.nvals);
        }
        if (m->attr.flags & ATTR_REF) {
            strbuf_addstr(&sb, "  (references: connector-space ids)");
        }
        printf("%s\n", sb.buf);
    }
    strbuf_release(&sb);
}

static void flags_text(struct strbuf *sb, unsigned flags, json_t *arr)
{
    static const struct {
        unsigned flag;
        const char *name;
    } names[] = {{CS_PROVISIONED, "provisioned"},
                 {CS_DISABLED, "disabled"},
                 {CS_OUT_OF_SCOPE, "out-of-scope"}};
    size_t i;

    for (i = 0; i < ARRAY_SIZE(names); i++) {
        if (flags & names[i].flag) {
            strbuf_addf(sb, "%s%s", sb->len ? ", " : "", names[i].name);
            json_array_append_new(arr, json_string(names[i].name));
        }
    }
}

static int show_cs(struct cli *cli, const char *connector, const char *id)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct cs_object *o = NULL;
    struct mv_object *mv = NULL;
    struct strbuf sb = STRBUF_INIT;
    json_t *flags = json_array();
    int64_t cid = 0;
    enum ids_err ret;
    int status;

    status = cli_load_config(cli);
    if (status == 0) {
        status = cli_require_connector(cli, connector);
    }
    if (status == 0) {
        status = cli_open_store(cli);
    }
    if (status != 0) {
        json_decref(flags);
        return status;
    }
    ret = store_connector_id(cli->store, connector, &cid, &err);
    if (ret == IDS_OK) {
        ret = store_cs_get_by_anchor(cli->store, cid, id, &o, &err);
        if (ret == IDS_ENOTFOUND) {
            ret = store_cs_get_by_dn(cli->store, cid, id, &o, &err);
        }
        if (ret == IDS_ENOTFOUND) {
            ids_error_set(&err, IDS_ENOTFOUND,
                          "no object with anchor or DN \"%s\" in the connector space of %s", id,
                          connector);
        }
    }
    if (ret != IDS_OK) {
        json_decref(flags);
        return cli_fail(cli, cli_status_for(ret), &err);
    }
    if (o->mv_id != 0 && store_mv_get(cli->store, o->mv_id, &mv, &err) != IDS_OK) {
        mv = NULL; /* a dangling link is shown as such */
    }
    flags_text(&sb, o->flags, flags);
    if (cli->json) {
        json_t *doc = json_object();

        json_object_set_new(doc, "id", json_integer(o->id));
        json_object_set_new(doc, "connector", cli_json_str(connector));
        json_object_set_new(doc, "type", cli_json_str(o->type));
        json_object_set_new(doc, "anchor", cli_json_str(o->anchor));
        json_object_set_new(doc, "dn", cli_json_str(o->dn));
        json_object_set_new(doc, "mv_id", o->mv_id ? json_integer(o->mv_id) : json_null());
        json_object_set_new(doc, "mv_type", cli_json_str(mv ? mv->type : NULL));
        json_object_set_new(doc, "flags", flags);
        flags = NULL;
        json_object_set_new(doc, "import_state", json_string(import_state_name(o->import_state)));
        json_object_set_new(doc, "export_state", json_string(export_state_name(o->export_state)));
        json_object_set_new(doc, "export_attempts", json_integer(o->export_attempts));
        json_object_set_new(doc, "export_error", cli_json_str(o->export_error));
        json_object_set_new(doc, "export_run",
                            o->export_run ? json_integer(o->export_run) : json_null());
        json_object_set_new(doc, "attributes", attributes_json(o->entry));
        json_object_set_new(doc, "pending_export", change_json(o->pending_export));
        json_object_set_new(doc, "unconfirmed_export", change_json(o->unconfirmed));
        /* reference values imported and gone since the last sync (what a
         * delta sync applies), null when none are recorded */
        json_object_set_new(doc, "staged_reference_changes",
                            (o->flags & CS_REF_DELTA) && o->ref_delta != NULL
                                ? change_json(o->ref_delta)
                                : json_null());
        cli_json_print(doc);
    } else {
        struct table *t = table_new();
        struct strbuf v = STRBUF_INIT;
        size_t i;

        printf("connector-space object %" PRId64 " of %s\n", o->id, connector);
        table_add_column(t, "", TABLE_LEFT);
        table_add_column(t, "", TABLE_LEFT);
        table_add_row(t);
        table_add_cell(t, "type:");
        table_add_cell(t, o->type);
        table_add_row(t);
        table_add_cell(t, "anchor:");
        table_add_cell(t, o->anchor ? o->anchor : "(none yet: not created in the system)");
        table_add_row(t);
        table_add_cell(t, "dn:");
        table_add_cell(t, o->dn ? o->dn : "-");
        table_add_row(t);
        table_add_cell(t, "joined to:");
        if (o->mv_id == 0) {
            table_add_cell(t, "(none: disconnector)");
        } else {
            table_add_cellf(t, "metaverse object %" PRId64 " (%s)", o->mv_id,
                            mv ? mv->type : "missing");
        }
        table_add_row(t);
        table_add_cell(t, "import state:");
        table_add_cell(t, import_state_name(o->import_state));
        table_add_row(t);
        table_add_cell(t, "export state:");
        strbuf_addstr(&v, export_state_name(o->export_state));
        if (o->export_attempts > 0) {
            strbuf_addf(&v, " (%d failed attempt%s)", o->export_attempts,
                        o->export_attempts == 1 ? "" : "s");
        }
        table_add_cell(t, v.buf);
        if (o->export_error != NULL) {
            table_add_row(t);
            table_add_cell(t, "export error:");
            table_add_cell(t, o->export_error);
        }
        if (sb.len > 0) {
            table_add_row(t);
            table_add_cell(t, "flags:");
            table_add_cell(t, sb.buf);
        }
        table_print(t, stdout, 2);
        table_free(t);
        printf("attributes:\n");
        t = table_new();
        table_add_column(t, "", TABLE_LEFT);
        table_add_column(t, "", TABLE_LEFT);
        table_add_column(t, "", TABLE_LEFT);
        for (i = 0; i < o->entry->nattrs; i++) {
            attr_rows(t, &o->entry->attrs[i], "");
        }
        if (table_rows(t) == 0) {
            printf("  (none)\n");
        }
        table_print(t, stdout, 2);
        table_free(t);
        if (o->pending_export != NULL) {
            print_change("pending export", o->pending_export);
        }
        if (o->unconfirmed != NULL) {
            print_change("exported, not yet confirmed by an import", o->unconfirmed);
        }
        if ((o->flags & CS_REF_DELTA) && o->ref_delta != NULL) {
            print_change("reference values imported since the last sync", o->ref_delta);
        }
        strbuf_release(&v);
    }
    json_decref(flags);
    strbuf_release(&sb);
    cs_object_free(o);
    mv_object_free(mv);
    return EXIT_OK;
}

/* "connector/object" of inbound flow `source` of metaverse type `type`. */
static const struct flow_config *lineage(const struct config *cfg, const char *type, int source)
{
    size_t i;

    if (source < 0 || type == NULL) {
        return NULL;
    }
    for (i = 0; i < cfg->nmv_types; i++) {
        const struct mv_type_config *t = &cfg->mv_types[i];

        if (strcmp(t->name, type) == 0 && (size_t)source < t->nfrom) {
            return &t->from[source];
        }
    }
    return NULL;
}

static json_t *mv_json(struct cli *cli, const struct mv_object *m,
                       const struct cs_object *const *links, size_t nlinks)
{
    json_t *doc = json_object();
    json_t *lin = json_object();
    json_t *arr = json_array();
    size_t i;

    json_object_set_new(doc, "id", json_integer(m->id));
    json_object_set_new(doc, "type", cli_json_str(m->type));
    json_object_set_new(doc, "created_run", json_integer(m->created_run));
    json_object_set_new(doc, "updated_run", json_integer(m->updated_run));
    json_object_set_new(doc, "attributes", attributes_json(m->entry));
    for (i = 0; i < m->entry->nattrs; i++) {
        const struct attr *a = &m->entry->attrs[i];
        const struct flow_config *f = lineage(cli->cfg, m->type, a->source);
        json_t *l = json_object();

        json_object_set_new(l, "from", a->source >= 0 ? json_integer(a->source) : json_null());
        json_object_set_new(l, "connector", cli_json_str(f ? f->connector : NULL));
        json_object_set_new(l, "object", cli_json_str(f ? f->object : NULL));
        json_object_set_new(lin, a->name, l);
    }
    json_object_set_new(doc, "lineage", lin);
    for (i = 0; i < nlinks; i++) {
        const struct cs_object *o = links[i];
        json_t *l = json_object();

        json_object_set_new(l, "connector", cli_json_str(connector_name(cli, o->connector)));
        json_object_set_new(l, "cs_id", json_integer(o->id));
        json_object_set_new(l, "type", cli_json_str(o->type));
        json_object_set_new(l, "anchor", cli_json_str(o->anchor));
        json_object_set_new(l, "dn", cli_json_str(o->dn));
        json_object_set_new(l, "export_state", json_string(export_state_name(o->export_state)));
        json_array_append_new(arr, l);
    }
    json_object_set_new(doc, "links", arr);
    return doc;
}

static void print_mv(struct cli *cli, const struct mv_object *m,
                     const struct cs_object *const *links, size_t nlinks)
{
    struct table *t = table_new();
    struct strbuf sb = STRBUF_INIT;
    size_t i;

    printf("metaverse object %" PRId64 " (%s)\n", m->id, m->type ? m->type : "?");
    printf("  created by run %" PRId64 ", last changed by run %" PRId64 "\n", m->created_run,
           m->updated_run);
    printf("attributes:\n");
    table_add_column(t, "ATTRIBUTE", TABLE_LEFT);
    table_add_column(t, "VALUE", TABLE_LEFT);
    table_add_column(t, "FROM", TABLE_LEFT);
    for (i = 0; i < m->entry->nattrs; i++) {
        const struct attr *a = &m->entry->attrs[i];
        const struct flow_config *f = lineage(cli->cfg, m->type, a->source);

        strbuf_reset(&sb);
        if (f != NULL) {
            strbuf_addf(&sb, "%s/%s", f->connector, f->object);
        } else if (a->source >= 0) {
            strbuf_addf(&sb, "from[%d]", a->source);
        }
        attr_rows(t, a, sb.buf);
    }
    table_print(t, stdout, 2);
    table_free(t);
    printf("connectors:\n");
    if (nlinks == 0) {
        printf("  (no connector-space object is linked)\n");
    } else {
        t = table_new();
        table_add_column(t, "CONNECTOR", TABLE_LEFT);
        table_add_column(t, "CS", TABLE_RIGHT);
        table_add_column(t, "TYPE", TABLE_LEFT);
        table_add_column(t, "ANCHOR", TABLE_LEFT);
        table_add_column(t, "EXPORT", TABLE_LEFT);
        table_add_column(t, "DN", TABLE_LEFT);
        for (i = 0; i < nlinks; i++) {
            const struct cs_object *o = links[i];
            const char *name = connector_name(cli, o->connector);

            table_add_row(t);
            if (name != NULL) {
                table_add_cell(t, name);
            } else {
                /* a connector renamed or removed in the configuration */
                struct strbuf old = STRBUF_INIT;
                struct ids_error lerr = IDS_ERROR_INIT;

                if (store_connector_name(cli->store, o->connector, &old, &lerr) == IDS_OK) {
                    table_add_cellf(t, "%s (not configured)", old.buf);
                } else {
                    table_add_cellf(t, "#%" PRId64, o->connector);
                }
                strbuf_release(&old);
            }
            table_add_cellf(t, "%" PRId64, o->id);
            table_add_cell(t, o->type);
            table_add_cell(t, o->anchor ? o->anchor : "(to be created)");
            table_add_cell(t, export_state_name(o->export_state));
            table_add_cell(t, o->dn ? o->dn : "");
        }
        table_print(t, stdout, 2);
        table_free(t);
    }
    strbuf_release(&sb);
}

/* Load MV object `id` with its links; JSON into arr or printed. */
static enum ids_err show_one_mv(struct cli *cli, int64_t id, json_t *arr, struct ids_error *err)
{
    struct mv_object *m = NULL;
    struct cs_object **links = NULL;
    int64_t *ids = xcalloc(MAX_LINKS, sizeof(*ids));
    size_t n = 0;
    size_t nlinks = 0;
    size_t i;
    enum ids_err ret;

    ret = store_mv_get(cli->store, id, &m, err);
    if (ret == IDS_ENOTFOUND) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "no metaverse object %" PRId64, id);
    }
    if (ret != IDS_OK) {
        goto done;
    }
    ret = store_cs_links(cli->store, id, ids, MAX_LINKS, &n, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (n > MAX_LINKS) {
        n = MAX_LINKS;
    }
    links = xcalloc(n ? n : 1, sizeof(*links));
    for (i = 0; i < n; i++) {
        struct cs_object *o = NULL;

        if (store_cs_get(cli->store, ids[i], &o, err) == IDS_OK) {
            links[nlinks++] = o;
        }
    }
    if (arr != NULL) {
        json_array_append_new(arr, mv_json(cli, m, (const struct cs_object *const *)links, nlinks));
    } else {
        print_mv(cli, m, (const struct cs_object *const *)links, nlinks);
    }
done:
    for (i = 0; i < nlinks; i++) {
        cs_object_free(links[i]);
    }
    free(links);
    free(ids);
    mv_object_free(m);
    return ret;
}

static int show_mv(struct cli *cli, const char *id_text, const char *where)
{
    struct ids_error err = IDS_ERROR_INIT;
    enum ids_err ret = IDS_OK;
    json_t *arr = cli->json ? json_array() : NULL;
    int status;

    status = cli_open_store(cli);
    if (status != 0) {
        json_decref(arr);
        return status;
    }
    if (id_text != NULL) {
        long id = 0;

        if (!cli_parse_long(cli, "ID", id_text, 1, LONG_MAX, &id)) {
            json_decref(arr);
            return EXIT_CONFIG;
        }
        ret = show_one_mv(cli, id, arr, &err);
        if (ret == IDS_OK && arr != NULL) {
            cli_json_print(json_incref(json_array_get(arr, 0)));
        }
    } else {
        const char *eq = strchr(where, '=');
        char *attr;
        int64_t ids[MAX_MATCHES + 1];
        size_t n = 0;
        size_t i;

        if (eq == NULL || eq == where) {
            json_decref(arr);
            return cli_usage_error(cli, "--where takes ATTR=VALUE, not \"%s\"", where);
        }
        attr = xmemdup(where, (size_t)(eq - where));
        ret = store_mv_search(cli->store, attr, eq + 1, 0, ids, MAX_MATCHES + 1, &n, &err);
        if (ret == IDS_OK && n == 0) {
            ret = ids_error_set(&err, IDS_ENOTFOUND, "no metaverse object has %s = \"%s\"", attr,
                                eq + 1);
        }
        if (n > MAX_MATCHES) {
            n = MAX_MATCHES;
            if (!cli->json) {
                printf("(more than %d objects match; the first %d are shown)\n\n", MAX_MATCHES,
                       MAX_MATCHES);
            }
        }
        for (i = 0; i < n && ret == IDS_OK; i++) {
            if (i > 0 && arr == NULL) {
                printf("\n");
            }
            ret = show_one_mv(cli, ids[i], arr, &err);
        }
        if (ret == IDS_OK && arr != NULL) {
            cli_json_print(json_incref(arr));
        }
        free(attr);
    }
    json_decref(arr);
    if (ret != IDS_OK) {
        return cli_fail(cli, cli_status_for(ret), &err);
    }
    return EXIT_OK;
}

int cmd_show(struct cli *cli, int argc, char **argv)
{
    static const struct option cs_opts[] = {{NULL, 0, NULL, 0}};
    static const struct option mv_opts[] = {{"where", required_argument, NULL, 'w'},
                                            {NULL, 0, NULL, 0}};
    const char *what;
    const char *where = NULL;
    int c;

    if (argc < 2) {
        return cli_usage_error(cli, "show needs cs or mv");
    }
    what = argv[1];
    argc--;
    argv++;
    optind = 0;
    if (strcmp(what, "cs") == 0) {
        if (cli_getopt(cli, argc, argv, "", cs_opts) != -1) {
            return EXIT_CONFIG;
        }
        if (argc - optind < 2) {
            return cli_usage_error(cli, "show cs needs a CONNECTOR and an ANCHOR or DN");
        }
        if (argc - optind > 2) {
            return cli_usage_error(cli, "unexpected argument \"%s\"", argv[optind + 2]);
        }
        return show_cs(cli, argv[optind], argv[optind + 1]);
    }
    if (strcmp(what, "mv") == 0) {
        for (;;) {
            c = cli_getopt(cli, argc, argv, "", mv_opts);
            if (c == -1) {
                break;
            }
            if (c != 'w') {
                return EXIT_CONFIG;
            }
            where = optarg;
        }
        if (where != NULL && optind < argc) {
            return cli_usage_error(cli, "show mv takes an ID or --where, not both");
        }
        if (where == NULL && optind >= argc) {
            return cli_usage_error(cli, "show mv needs an ID or --where ATTR=VALUE");
        }
        if (optind + 1 < argc) {
            return cli_usage_error(cli, "unexpected argument \"%s\"", argv[optind + 1]);
        }
        return show_mv(cli, where ? NULL : argv[optind], where);
    }
    return cli_usage_error(cli, "show: unknown object kind \"%s\" (expected cs or mv)", what);
}
