/* pending.c - `idsync pending CONNECTOR`, and the rendering of the
 * pending-change report (JSON lines from the engine) that dry runs share. */
#include "cmd/cmd.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/engine.h"
#include "util/mem.h"
#include "util/spool.h"
#include "util/table.h"
#include "util/banned.h"

/* Values listed one per line when an attribute has more than this. */
#define INLINE_VALUES 3
/* Added / removed values listed per attribute before "... and N more". */
#define LIST_VALUES 10

struct op_totals {
    char *connector;
    long add;
    long modify;
    long del;
    long other;
};

struct totals {
    size_t nr;
    size_t alloc;
    struct op_totals *v;
};

static struct op_totals *totals_for(struct totals *t, const char *connector)
{
    size_t i;
    struct op_totals *o;

    for (i = 0; i < t->nr; i++) {
        if (strcmp(t->v[i].connector, connector) == 0) {
            return &t->v[i];
        }
    }
    ALLOC_GROW(t->v, t->nr + 1, t->alloc);
    o = &t->v[t->nr++];
    memset(o, 0, sizeof(*o));
    o->connector = xstrdup(connector);
    return o;
}

static void totals_release(struct totals *t)
{
    size_t i;

    for (i = 0; i < t->nr; i++) {
        free(t->v[i].connector);
    }
    free(t->v);
    memset(t, 0, sizeof(*t));
}

/* One value of the report ("text" or {"base64": ...}) for people. */
static void value_text(struct strbuf *out, const char *attr, const json_t *v)
{
    if (json_is_string(v)) {
        cli_value_text(out, attr, json_string_value(v), json_string_length(v));
    } else if (json_is_object(v) && json_is_string(json_object_get(v, "base64"))) {
        size_t n = json_string_length(json_object_get(v, "base64"));

        strbuf_addf(out, "<binary, %zu bytes>", n / 4 * 3);
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

        cli_value_text(out, attr, s ? s : "?", s ? strlen(s) : 1);
        free(s);
    }
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
        value_text(out, attr, v);
    }
}

static void text_list(struct strvec *out, const char *attr, const json_t *arr)
{
    size_t i;
    json_t *v;

    json_array_foreach(arr, i, v)
    {
        struct strbuf sb = STRBUF_INIT;

        value_text(&sb, attr, v);
        strvec_push(out, sb.buf);
        strbuf_release(&sb);
    }
}

/* Values of a that are not in b, printed with `mark`; returns how many. */
static size_t print_diff(const struct strvec *a, const struct strvec *b, const char *mark)
{
    size_t i;
    size_t n = 0;

    for (i = 0; i < a->nr; i++) {
        if (strvec_find(b, a->v[i], false) >= 0) {
            continue;
        }
        if (n < LIST_VALUES) {
            printf("        %s %s\n", mark, a->v[i]);
        }
        n++;
    }
    if (n > LIST_VALUES) {
        printf("        ... and %zu more\n", n - LIST_VALUES);
    }
    return n;
}

static void print_change(const json_t *ch, bool object_add)
{
    const char *attr = json_string_value(json_object_get(ch, "attr"));
    const json_t *old = json_object_get(ch, "old");
    const json_t *now = json_object_get(ch, "new");
    size_t nold = json_is_array(old) ? json_array_size(old) : 0;
    size_t nnew = json_is_array(now) ? json_array_size(now) : 0;
    struct strbuf name = STRBUF_INIT;
    struct strbuf sb = STRBUF_INIT;

    text_sanitize(&name, attr ? attr : "?", attr ? strlen(attr) : 1);
    if (nold <= INLINE_VALUES && nnew <= INLINE_VALUES) {
        if (object_add) {
            values_text(&sb, attr, now);
            printf("    %s: %s\n", name.buf, sb.buf);
        } else {
            values_text(&sb, attr, old);
            strbuf_addstr(&sb, " -> ");
            values_text(&sb, attr, now);
            printf("    %s: %s\n", name.buf, sb.buf);
        }
    } else {
        struct strvec vo = STRVEC_INIT;
        struct strvec vn = STRVEC_INIT;

        if (json_is_array(old)) {
            text_list(&vo, attr, old);
        }
        if (json_is_array(now)) {
            text_list(&vn, attr, now);
        }
        if (object_add) {
            printf("    %s: %zu values\n", name.buf, nnew);
        } else {
            printf("    %s: %zu -> %zu values\n", name.buf, nold, nnew);
        }
        print_diff(&vn, &vo, "+");
        print_diff(&vo, &vn, "-");
        strvec_clear(&vo);
        strvec_clear(&vn);
    }
    strbuf_release(&name);
    strbuf_release(&sb);
}

static const char *jstr(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static void print_object(const json_t *o, struct totals *tot)
{
    const char *op = jstr(o, "op");
    const char *type = jstr(o, "type");
    const char *dn = jstr(o, "dn");
    const char *anchor = jstr(o, "anchor");
    const char *new_dn = jstr(o, "new_dn");
    const char *state = jstr(o, "state");
    const char *error = jstr(o, "error");
    const char *connector = jstr(o, "connector");
    const json_t *changes = json_object_get(o, "changes");
    struct op_totals *t = totals_for(tot, connector ? connector : "?");
    struct strbuf sb = STRBUF_INIT;
    bool add = op != NULL && strcmp(op, "add") == 0;
    size_t i;
    json_t *ch;

    if (op == NULL) {
        op = "?";
    }
    if (strcmp(op, "add") == 0) {
        t->add++;
    } else if (strcmp(op, "modify") == 0) {
        t->modify++;
    } else if (strcmp(op, "delete") == 0) {
        t->del++;
    } else {
        t->other++;
    }
    strbuf_addf(&sb, "%s %s ", op, type ? type : "?");
    if (dn != NULL || anchor != NULL) {
        text_sanitize(&sb, dn ? dn : anchor, strlen(dn ? dn : anchor));
    } else {
        strbuf_addstr(&sb, add ? "(new object)" : "(no DN)");
    }
    if (dn != NULL && anchor != NULL && !add && strcasecmp(dn, anchor) != 0) {
        strbuf_addstr(&sb, "  [anchor ");
        text_sanitize(&sb, anchor, strlen(anchor));
        strbuf_addch(&sb, ']');
    }
    printf("%s\n", sb.buf);
    if (new_dn != NULL) {
        strbuf_reset(&sb);
        text_sanitize(&sb, new_dn, strlen(new_dn));
        printf("    rename -> %s\n", sb.buf);
    }
    if (json_is_array(changes)) {
        json_array_foreach(changes, i, ch)
        {
            print_change(ch, add);
        }
    }
    if (state != NULL && strcmp(state, "in-flight") == 0) {
        printf("    (in flight: sent, its result not yet recorded; the next export checks it)\n");
    } else if (state != NULL && strcmp(state, "failed") == 0) {
        long long n = (long long)json_integer_value(json_object_get(o, "attempts"));

        strbuf_reset(&sb);
        if (error != NULL) {
            text_sanitize(&sb, error, strlen(error));
        }
        printf("    (failed %lld time%s%s%s)\n", n, n == 1 ? "" : "s", sb.len ? ": " : "", sb.buf);
    }
    strbuf_release(&sb);
}

static void print_totals(const struct totals *tot, long count)
{
    struct table *t;
    size_t i;

    if (count == 0) {
        printf("No pending exports.\n");
        return;
    }
    t = table_new();
    table_add_column(t, "CONNECTOR", TABLE_LEFT);
    table_add_column(t, "ADD", TABLE_RIGHT);
    table_add_column(t, "MODIFY", TABLE_RIGHT);
    table_add_column(t, "DELETE", TABLE_RIGHT);
    table_add_column(t, "TOTAL", TABLE_RIGHT);
    for (i = 0; i < tot->nr; i++) {
        const struct op_totals *o = &tot->v[i];

        table_add_row(t);
        table_add_cell(t, o->connector);
        table_add_cellf(t, "%ld", o->add);
        table_add_cellf(t, "%ld", o->modify);
        table_add_cellf(t, "%ld", o->del);
        table_add_cellf(t, "%ld", o->add + o->modify + o->del + o->other);
    }
    printf("\n");
    table_print(t, stdout, 0);
    table_free(t);
}

long cli_render_report(struct cli *cli, FILE *spool, bool json)
{
    struct totals tot = {0, 0, NULL};
    struct strbuf line = STRBUF_INIT;
    const char *p;
    long count = 0;
    size_t lineno = 0;

    (void)cli;
    if (json) {
        fputs("[", stdout);
    }
    while ((p = spool_next(spool, &line)) != NULL) {
        json_error_t jerr;
        json_t *o = json_loadb(p, line.len, 0, &jerr);

        lineno++;
        if (o == NULL || !json_is_object(o)) {
            fprintf(stderr, "idsync: line %zu of the pending-change report does not parse: %s\n",
                    lineno, o == NULL ? jerr.text : "not an object");
            json_decref(o);
            continue;
        }
        if (json) {
            fputs(count > 0 ? ",\n" : "\n", stdout);
            json_dumpf(o, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
        } else {
            print_object(o, &tot);
        }
        count++;
        json_decref(o);
    }
    if (json) {
        fputs(count > 0 ? "\n]" : "]", stdout);
        fflush(stdout);
    } else {
        print_totals(&tot, count);
    }
    strbuf_release(&line);
    totals_release(&tot);
    return count;
}

FILE *cli_report_spool(struct cli *cli, int *status)
{
    struct ids_error err = IDS_ERROR_INIT;
    FILE *fp = spool_open(&err);

    *status = fp != NULL ? EXIT_OK : cli_fail(cli, EXIT_UNREACHABLE, &err);
    return fp;
}

int cmd_pending(struct cli *cli, int argc, char **argv)
{
    static const struct option longopts[] = {{NULL, 0, NULL, 0}};
    struct ids_error err = IDS_ERROR_INIT;
    struct engine *eng = NULL;
    struct engine_opts opts;
    const char *connector;
    FILE *fp = NULL;
    enum ids_err ret;
    int status;
    int c;

    c = cli_getopt(cli, argc, argv, "", longopts);
    if (c != -1) {
        return EXIT_CONFIG;
    }
    if (optind >= argc) {
        return cli_usage_error(cli, "pending needs a CONNECTOR");
    }
    connector = argv[optind++];
    if (optind < argc) {
        return cli_usage_error(cli, "unexpected argument \"%s\"", argv[optind]);
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
    opts.progress = cli->progress; /* the report is written before any of it is printed */
    ret = engine_new(cli->cfg, cli->store, &opts, &eng, &err);
    if (ret != IDS_OK) {
        return cli_fail(cli, cli_status_for(ret), &err);
    }
    fp = cli_report_spool(cli, &status);
    if (fp == NULL) {
        engine_free(eng);
        return status;
    }
    ret = engine_pending(eng, connector, fp, &err);
    engine_free(eng);
    if (ret == IDS_OK) {
        ret = spool_finish(fp, &err);
    }
    if (ret != IDS_OK) {
        fclose(fp);
        return cli_fail(cli, cli_status_for(ret), &err);
    }
    cli_render_report(cli, fp, cli->json);
    if (cli->json) {
        fputc('\n', stdout);
    }
    fclose(fp);
    return EXIT_OK;
}
