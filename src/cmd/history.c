/* history.c - `idsync history [RUN]` (run history with counters) and
 * `idsync errors [RUN]` (per-object errors of a run and of its steps). */
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

#define HISTORY_LIMIT 20
#define ERRORS_LIMIT  100

struct list_args {
    int64_t run; /* 0 = none given */
    long limit;
};

static int parse_list(struct cli *cli, int argc, char **argv, long def, struct list_args *a)
{
    static const struct option longopts[] = {{"limit", required_argument, NULL, 'n'},
                                             {NULL, 0, NULL, 0}};
    int c;

    a->run = 0;
    a->limit = def;
    for (;;) {
        c = cli_getopt(cli, argc, argv, "n:", longopts);
        if (c == -1) {
            break;
        }
        if (c != 'n') {
            return EXIT_CONFIG;
        }
        if (!cli_parse_long(cli, "--limit", optarg, 0, 1000000, &a->limit)) {
            return EXIT_CONFIG;
        }
    }
    if (a->limit == 0) {
        a->limit = 1000000;
    }
    if (optind < argc) {
        long id = 0;

        if (!cli_parse_long(cli, "RUN", argv[optind], 1, LONG_MAX, &id)) {
            return EXIT_CONFIG;
        }
        a->run = id;
        optind++;
    }
    if (optind < argc) {
        return cli_usage_error(cli, "unexpected argument \"%s\"", argv[optind]);
    }
    return 0;
}

static void status_text(struct strbuf *sb, const struct run_record *r)
{
    strbuf_addstr(sb, run_status_name(r->status));
    if (r->dry_run) {
        strbuf_addstr(sb, " (dry run)");
    }
}

static void add_run_row(struct table *t, const struct run_record *r)
{
    struct strbuf sb = STRBUF_INIT;

    table_add_row(t);
    table_add_cellf(t, "%" PRId64, r->id);
    table_add_cellf(t, "%s%s", r->parent ? "  " : "", r->step ? r->step : "?");
    table_add_cell(t, r->connector ? r->connector : "");
    fmt_local_time(&sb, r->start_us);
    table_add_cell(t, sb.buf);
    strbuf_reset(&sb);
    fmt_duration(&sb, r->end_us > 0 ? r->end_us - r->start_us : -1);
    table_add_cell(t, sb.buf);
    strbuf_reset(&sb);
    status_text(&sb, r);
    table_add_cell(t, sb.buf);
    strbuf_reset(&sb);
    cli_counters_text(&sb, r, false);
    table_add_cell(t, sb.buf);
    strbuf_release(&sb);
}

static struct table *run_table(void)
{
    struct table *t = table_new();

    table_add_column(t, "RUN", TABLE_RIGHT);
    table_add_column(t, "STEP", TABLE_LEFT);
    table_add_column(t, "CONNECTOR", TABLE_LEFT);
    table_add_column(t, "START", TABLE_LEFT);
    table_add_column(t, "DURATION", TABLE_RIGHT);
    table_add_column(t, "STATUS", TABLE_LEFT);
    table_add_column(t, "COUNTERS", TABLE_LEFT);
    return t;
}

static long error_count(struct cli *cli, int64_t id)
{
    struct ids_error err = IDS_ERROR_INIT;
    long n = 0;

    if (store_run_error_count(cli->store, id, &n, &err) != IDS_OK) {
        return 0;
    }
    return n;
}

static int history_list(struct cli *cli, const struct list_args *a)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct run_record *runs = NULL;
    size_t n = 0;
    size_t i;
    enum ids_err ret;

    ret = store_runs_list(cli->store, 0, (size_t)a->limit, &runs, &n, &err);
    if (ret != IDS_OK) {
        return cli_fail(cli, cli_status_for(ret), &err);
    }
    if (cli->json) {
        json_t *doc = json_object();
        json_t *arr = json_array();

        for (i = 0; i < n; i++) {
            json_array_append_new(arr, cli_run_json(&runs[i]));
        }
        json_object_set_new(doc, "runs", arr);
        cli_json_print(doc);
    } else if (n == 0) {
        printf("No runs yet.\n");
    } else {
        struct table *t = run_table();

        for (i = 0; i < n; i++) {
            add_run_row(t, &runs[i]);
        }
        table_print(t, stdout, 0);
        table_free(t);
    }
    for (i = 0; i < n; i++) {
        run_record_release(&runs[i]);
    }
    free(runs);
    return EXIT_OK;
}

static int history_one(struct cli *cli, int64_t id)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct run_record r;
    struct run_record *kids = NULL;
    size_t nkids = 0;
    size_t i;
    long nerr;
    long kid_errs = 0;
    enum ids_err ret;

    memset(&r, 0, sizeof(r));
    ret = store_run_get(cli->store, id, &r, &err);
    if (ret == IDS_ENOTFOUND) {
        ids_error_set(&err, IDS_ENOTFOUND, "no run %" PRId64 " in the run history", id);
    }
    if (ret != IDS_OK) {
        return cli_fail(cli, cli_status_for(ret), &err);
    }
    cli_run_children(cli->store, id, &kids, &nkids);
    nerr = error_count(cli, id);
    for (i = 0; i < nkids; i++) {
        kid_errs += error_count(cli, kids[i].id);
    }
    if (cli->json) {
        json_t *doc = cli_run_json(&r);
        json_t *arr = json_array();

        for (i = 0; i < nkids; i++) {
            json_t *k = cli_run_json(&kids[i]);

            json_object_set_new(k, "error_count", json_integer(error_count(cli, kids[i].id)));
            json_array_append_new(arr, k);
        }
        json_object_set_new(doc, "children", arr);
        json_object_set_new(doc, "error_count", json_integer(nerr + kid_errs));
        cli_json_print(doc);
    } else {
        struct table *t = table_new();
        struct strbuf sb = STRBUF_INIT;
        struct run_counters c = r.counters;

        printf("run %" PRId64 ": %s%s%s\n", r.id, r.step ? r.step : "?", r.connector ? " " : "",
               r.connector ? r.connector : "");
        table_add_column(t, "", TABLE_LEFT);
        table_add_column(t, "", TABLE_LEFT);
        table_add_row(t);
        table_add_cell(t, "status:");
        status_text(&sb, &r);
        table_add_cell(t, sb.buf);
        if (r.parent != 0) {
            table_add_row(t);
            table_add_cell(t, "part of:");
            table_add_cellf(t, "run %" PRId64, r.parent);
        }
        table_add_row(t);
        table_add_cell(t, "started:");
        strbuf_reset(&sb);
        fmt_local_time(&sb, r.start_us);
        table_add_cell(t, sb.buf);
        table_add_row(t);
        table_add_cell(t, "ended:");
        strbuf_reset(&sb);
        fmt_local_time(&sb, r.end_us);
        table_add_cell(t, r.end_us > 0 ? sb.buf : "(still running, or stopped without a trace)");
        table_add_row(t);
        table_add_cell(t, "duration:");
        strbuf_reset(&sb);
        fmt_duration(&sb, r.end_us > 0 ? r.end_us - r.start_us : -1);
        table_add_cell(t, sb.buf);
        table_add_row(t);
        table_add_cell(t, "errors:");
        if (nerr + kid_errs > 0) {
            table_add_cellf(t, "%ld (see `idsync errors %" PRId64 "`)", nerr + kid_errs, r.id);
        } else {
            table_add_cell(t, "0");
        }
        if (r.message != NULL && r.message[0] != '\0') {
            table_add_row(t);
            table_add_cell(t, "message:");
            table_add_cell(t, r.message);
        }
        table_print(t, stdout, 2);
        table_free(t);
        printf("counters:\n");
        t = table_new();
        table_add_column(t, "", TABLE_LEFT);
        table_add_column(t, "", TABLE_RIGHT);
        for (i = 0; i < run_counter_count; i++) {
            table_add_row(t);
            table_add_cell(t, run_counter_descs[i].name);
            table_add_cellf(t, "%ld", *run_counter_ptr(&c, i));
        }
        table_print(t, stdout, 2);
        table_free(t);
        if (nkids > 0) {
            printf("steps:\n");
            t = run_table();
            for (i = 0; i < nkids; i++) {
                add_run_row(t, &kids[i]);
            }
            table_print(t, stdout, 2);
            table_free(t);
        }
        strbuf_release(&sb);
    }
    for (i = 0; i < nkids; i++) {
        run_record_release(&kids[i]);
    }
    free(kids);
    run_record_release(&r);
    return EXIT_OK;
}

int cmd_history(struct cli *cli, int argc, char **argv)
{
    struct list_args a;
    int status = parse_list(cli, argc, argv, HISTORY_LIMIT, &a);

    if (status == 0) {
        status = cli_open_store(cli);
    }
    if (status != 0) {
        return status;
    }
    return a.run ? history_one(cli, a.run) : history_list(cli, &a);
}

/* ---- errors ------------------------------------------------------------- */

struct error_list {
    size_t nr;
    size_t alloc;
    struct run_error *v;
};

/* Append up to `max` errors of run `id` (0 = the newest run with errors). */
static enum ids_err collect_errors(struct cli *cli, int64_t id, size_t max, struct error_list *l,
                                   struct ids_error *err)
{
    struct run_error *errs = NULL;
    size_t n = 0;
    size_t i;
    enum ids_err ret;

    if (max == 0) {
        return IDS_OK;
    }
    ret = store_run_errors(cli->store, id, 0, max, &errs, &n, err);
    if (ret != IDS_OK) {
        return ret;
    }
    for (i = 0; i < n; i++) {
        ALLOC_GROW(l->v, l->nr + 1, l->alloc);
        l->v[l->nr++] = errs[i]; /* moved */
    }
    free(errs);
    return IDS_OK;
}

int cmd_errors(struct cli *cli, int argc, char **argv)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct list_args a;
    struct error_list l = {0, 0, NULL};
    struct run_record *kids = NULL;
    size_t nkids = 0;
    int64_t run = 0;
    long total = 0;
    size_t i;
    enum ids_err ret = IDS_OK;
    int status = parse_list(cli, argc, argv, ERRORS_LIMIT, &a);

    if (status == 0) {
        status = cli_open_store(cli);
    }
    if (status != 0) {
        return status;
    }
    if (a.run != 0) {
        struct run_record r;

        memset(&r, 0, sizeof(r));
        ret = store_run_get(cli->store, a.run, &r, &err);
        run_record_release(&r);
        if (ret == IDS_ENOTFOUND) {
            ids_error_set(&err, IDS_ENOTFOUND, "no run %" PRId64 " in the run history", a.run);
        }
        if (ret != IDS_OK) {
            return cli_fail(cli, cli_status_for(ret), &err);
        }
        run = a.run;
        ret = collect_errors(cli, run, (size_t)a.limit, &l, &err);
        total = error_count(cli, run);
        cli_run_children(cli->store, run, &kids, &nkids);
        for (i = 0; i < nkids && ret == IDS_OK; i++) {
            total += error_count(cli, kids[i].id);
            ret = collect_errors(cli, kids[i].id, (size_t)a.limit - l.nr, &l, &err);
        }
    } else {
        ret = collect_errors(cli, 0, (size_t)a.limit, &l, &err);
        if (ret == IDS_OK && l.nr > 0) {
            run = l.v[0].run;
            total = error_count(cli, run);
        }
    }
    if (ret != IDS_OK) {
        status = cli_fail(cli, cli_status_for(ret), &err);
        goto done;
    }
    if (cli->json) {
        json_t *doc = json_object();
        json_t *arr = json_array();

        for (i = 0; i < l.nr; i++) {
            json_array_append_new(arr, cli_error_json(&l.v[i]));
        }
        json_object_set_new(doc, "run", run ? json_integer(run) : json_null());
        json_object_set_new(doc, "total", json_integer(total));
        json_object_set_new(doc, "errors", arr);
        cli_json_print(doc);
    } else if (l.nr == 0) {
        if (run != 0) {
            printf("Run %" PRId64 " recorded no errors.\n", run);
        } else {
            printf("No errors recorded.\n");
        }
    } else {
        struct table *t = table_new();
        bool many_runs = nkids > 0;

        printf("errors of run %" PRId64 "%s: %ld\n", run, many_runs ? " and its steps" : "", total);
        table_add_column(t, "RUN", TABLE_RIGHT);
        table_add_column(t, "CONNECTOR", TABLE_LEFT);
        table_add_column(t, "ANCHOR", TABLE_LEFT);
        table_add_column(t, "DN", TABLE_LEFT);
        table_add_column(t, "ATTRIBUTE", TABLE_LEFT);
        table_add_column(t, "CODE", TABLE_LEFT);
        table_add_column(t, "MESSAGE", TABLE_LEFT);
        for (i = 0; i < l.nr; i++) {
            const struct run_error *e = &l.v[i];

            table_add_row(t);
            table_add_cellf(t, "%" PRId64, e->run);
            table_add_cell(t, e->connector ? e->connector : "-");
            table_add_cell(t, e->anchor ? e->anchor : "-");
            table_add_cell(t, e->dn ? e->dn : "-");
            table_add_cell(t, e->attr ? e->attr : "-");
            table_add_cell(t, e->code ? e->code : "-");
            table_add_cell(t, e->message ? e->message : "");
        }
        table_print(t, stdout, 0);
        table_free(t);
        if ((long)l.nr < total) {
            printf("(%zu of %ld shown; use --limit N, 0 for all)\n", l.nr, total);
        }
    }
done:
    for (i = 0; i < l.nr; i++) {
        run_error_release(&l.v[i]);
    }
    free(l.v);
    for (i = 0; i < nkids; i++) {
        run_record_release(&kids[i]);
    }
    free(kids);
    return status;
}
