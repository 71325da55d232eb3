/* run.c - the step commands: cycle, import, sync, export, and space (list,
 * drop, rename: connector spaces as a whole). Each step takes the
 * store's run lock, runs one engine step (a recorded run), prints its
 * summary (cmd.c) and exits with engine_exit_code(). Ctrl-C or SIGTERM asks
 * the engine to stop cleanly after the batch it is in; a second one kills. */
#include "cmd/cmd.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "notify/notify.h"
#include "util/mem.h"
#include "util/spool.h"
#include "util/table.h"
#include "util/banned.h"

enum step { STEP_CYCLE, STEP_IMPORT, STEP_SYNC, STEP_EXPORT, STEP_SPACE_DROP, STEP_SPACE_RENAME };

struct step_args {
    enum step step;
    const char *connector; /* space drop/rename: the space, configured or not */
    bool full;
    bool dry_run;
    long allow_deletes;
    const char *to; /* space rename: the new name */
};

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void catch_stop_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = (int)SA_RESETHAND; /* a second signal kills the process */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void default_stop_signals(void)
{
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
}

int cli_require_connector(struct cli *cli, const char *name)
{
    struct strbuf names = STRBUF_INIT;
    size_t i;
    int status;

    if (config_connector(cli->cfg, name) != NULL) {
        return 0;
    }
    for (i = 0; i < cli->cfg->nconnectors; i++) {
        strbuf_addf(&names, "%s%s", i ? ", " : "", cli->cfg->connectors[i].name);
    }
    status = cli_usage_error(cli, "no connector named \"%s\" in %s (connectors: %s)", name,
                             cli->cfg->path, names.len ? names.buf : "none");
    strbuf_release(&names);
    return status;
}

static int run_step(struct cli *cli, const struct step_args *a)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct engine_opts opts;
    struct engine *eng = NULL;
    struct run_record run;
    enum ids_err ret;
    struct ids_error serr = IDS_ERROR_INIT; /* the report spool's */
    FILE *report_fp = NULL;
    int status;

    memset(&run, 0, sizeof(run));
    status = cli_load_config(cli);
    if (status != 0) {
        return status;
    }
    if (a->connector != NULL && a->step < STEP_SPACE_DROP) {
        status = cli_require_connector(cli, a->connector);
        if (status != 0) {
            return status;
        }
    }
    status = cli_open_store(cli);
    if (status != 0) {
        return status;
    }
    status = cli_lock(cli);
    if (status != 0) {
        return status;
    }
    memset(&opts, 0, sizeof(opts));
    opts.dry_run = a->dry_run;
    opts.allow_deletes = a->allow_deletes;
    opts.progress = cli->progress;
    opts.stop = &stop_requested;
    if (a->dry_run && a->step != STEP_SPACE_RENAME) {
        report_fp = cli_report_spool(cli, &status);
        if (report_fp == NULL) {
            return status;
        }
        opts.report = report_fp;
    }
    ret = engine_new(cli->cfg, cli->store, &opts, &eng, &err);
    if (ret != IDS_OK) {
        if (report_fp != NULL) {
            fclose(report_fp);
        }
        return cli_fail(cli, cli_status_for(ret), &err);
    }
    catch_stop_signals();
    switch (a->step) {
    case STEP_CYCLE:
        ret = engine_cycle(eng, a->full, &run, &err);
        break;
    case STEP_IMPORT:
        ret = engine_import(eng, a->connector, a->full, &run, &err);
        break;
    case STEP_SYNC:
        ret = engine_sync(eng, a->full, &run, &err);
        break;
    case STEP_EXPORT:
        ret = engine_export(eng, a->connector, &run, &err);
        break;
    case STEP_SPACE_DROP:
        ret = engine_space_drop(eng, a->connector, &run, &err);
        break;
    case STEP_SPACE_RENAME:
        ret = engine_space_rename(eng, a->connector, a->to, &run, &err);
        break;
    }
    default_stop_signals();
    engine_free(eng);
    if (!a->dry_run && run.id != 0) {
        struct ids_error nerr = IDS_ERROR_INIT;

        /* a failure to notify is logged and recorded by notify itself; it
         * never changes the run's outcome */
        (void)notify_after_run(cli->cfg, cli->store, &run, &nerr);
    }
    if (report_fp != NULL && spool_finish(report_fp, &serr) != IDS_OK) {
        /* the dry run ran; its report is what cannot be shown */
        fclose(report_fp);
        report_fp = NULL;
    }
    cli_report_run(cli, ret, &err, &run, cli->json ? report_fp : NULL);
    if (report_fp != NULL && !cli->json && !cli->quiet) {
        printf("\n");
        cli_render_report(cli, report_fp, false);
    }
    status = engine_exit_code(ret, &run);
    if (serr.code != IDS_OK) {
        /* stderr only: with --json, stdout already holds the run's document */
        fprintf(stderr, "idsync: %s\n", serr.msg);
        status = EXIT_UNREACHABLE;
    }
    if (report_fp != NULL) {
        fclose(report_fp);
    }
    run_record_release(&run);
    return status;
}

enum { OPT_FULL = 1000, OPT_DRY_RUN, OPT_ALLOW_DELETES };

/* Parse the options every step command shares; `allowed` says which. */
static int parse_step(struct cli *cli, int argc, char **argv, bool want_connector, unsigned allowed,
                      struct step_args *a)
{
    static const struct option longopts[] = {
        {"full", no_argument, NULL, OPT_FULL},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"allow-deletes", required_argument, NULL, OPT_ALLOW_DELETES},
        {NULL, 0, NULL, 0},
    };
    int c;

    for (;;) {
        c = cli_getopt(cli, argc, argv, "", longopts);
        if (c == -1) {
            break;
        }
        if (c == '?') {
            return EXIT_CONFIG;
        }
        if (!(allowed & (1u << (c - OPT_FULL)))) {
            return cli_usage_error(cli, "%s does not take %s", argv[0], argv[optind - 1]);
        }
        switch (c) {
        case OPT_FULL:
            a->full = true;
            break;
        case OPT_DRY_RUN:
            a->dry_run = true;
            break;
        case OPT_ALLOW_DELETES:
            if (!cli_parse_long(cli, "--allow-deletes", optarg, 0, 1000000000L,
                                &a->allow_deletes)) {
                return EXIT_CONFIG;
            }
            break;
        default:
            return cli_usage_error(cli, "unexpected option");
        }
    }
    if (want_connector) {
        if (optind >= argc) {
            return cli_usage_error(cli, "%s needs a CONNECTOR", argv[0]);
        }
        a->connector = argv[optind++];
    }
    if (a->step == STEP_SPACE_RENAME) {
        if (optind >= argc) {
            return cli_usage_error(cli, "space rename needs the new name: OLD NEW");
        }
        a->to = argv[optind++];
    }
    if (optind < argc) {
        return cli_usage_error(cli, "unexpected argument \"%s\"", argv[optind]);
    }
    return 0;
}

#define ALLOW(o) (1u << ((o)-OPT_FULL))

int cmd_cycle(struct cli *cli, int argc, char **argv)
{
    struct step_args a = {STEP_CYCLE, NULL, false, false, 0, NULL};
    int status = parse_step(cli, argc, argv, false, ALLOW(OPT_FULL) | ALLOW(OPT_DRY_RUN), &a);

    return status != 0 ? status : run_step(cli, &a);
}

int cmd_import(struct cli *cli, int argc, char **argv)
{
    struct step_args a = {STEP_IMPORT, NULL, false, false, 0, NULL};
    int status = parse_step(cli, argc, argv, true, ALLOW(OPT_FULL) | ALLOW(OPT_ALLOW_DELETES), &a);

    return status != 0 ? status : run_step(cli, &a);
}

int cmd_sync(struct cli *cli, int argc, char **argv)
{
    struct step_args a = {STEP_SYNC, NULL, false, false, 0, NULL};
    int status = parse_step(cli, argc, argv, false, ALLOW(OPT_FULL), &a);

    return status != 0 ? status : run_step(cli, &a);
}

int cmd_export(struct cli *cli, int argc, char **argv)
{
    struct step_args a = {STEP_EXPORT, NULL, false, false, 0, NULL};
    int status =
        parse_step(cli, argc, argv, true, ALLOW(OPT_DRY_RUN) | ALLOW(OPT_ALLOW_DELETES), &a);

    return status != 0 ? status : run_step(cli, &a);
}

/* space: one line per connector space of the store, configured or not. */
static int space_list(struct cli *cli)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct space_info *v = NULL;
    size_t n = 0;
    size_t i;
    int status = cli_open_store(cli);
    enum ids_err ret;

    if (status != 0) {
        return status;
    }
    ret = engine_spaces(cli->store, cli->cfg, &v, &n, &err);
    if (ret != IDS_OK) {
        return cli_fail(cli, cli_status_for(ret), &err);
    }
    if (cli->json) {
        json_t *arr = json_array();

        for (i = 0; i < n; i++) {
            json_array_append_new(
                arr, json_pack("{s:o, s:b, s:I, s:I, s:I}", "connector", cli_json_str(v[i].name),
                               "configured", v[i].configured, "objects", (json_int_t)v[i].objects,
                               "joined", (json_int_t)v[i].joined, "pending_exports",
                               (json_int_t)v[i].pending_exports));
        }
        cli_json_print(json_pack("{s:o}", "spaces", arr));
    } else {
        struct table *t = table_new();
        bool stray = false;

        table_add_column(t, "CONNECTOR", TABLE_LEFT);
        table_add_column(t, "OBJECTS", TABLE_RIGHT);
        table_add_column(t, "JOINED", TABLE_RIGHT);
        table_add_column(t, "PENDING-EXPORTS", TABLE_RIGHT);
        table_add_column(t, "CONFIGURED", TABLE_LEFT);

        for (i = 0; i < n; i++) {
            table_add_row(t);
            table_add_cell(t, v[i].name);
            table_add_cellf(t, "%ld", v[i].objects);
            table_add_cellf(t, "%ld", v[i].joined);
            table_add_cellf(t, "%ld", v[i].pending_exports);
            table_add_cell(t, v[i].configured ? "yes" : "no");
            stray |= !v[i].configured && v[i].objects > 0;
        }
        if (n == 0) {
            printf("no connector space yet: nothing was imported\n");
        } else {
            table_print(t, stdout, 0);
        }
        table_free(t);
        if (stray) {
            printf("\nA space whose connector is not configured is no longer read, synced or "
                   "written, but what it contributed stays in the metaverse and in the "
                   "targets. Give it to a renamed connector with `idsync space rename OLD NEW`, "
                   "or drop it with `idsync space drop NAME` (try `--dry-run` first).\n");
        }
    }
    space_info_free(v, n);
    return EXIT_OK;
}

int cmd_space(struct cli *cli, int argc, char **argv)
{
    struct step_args a = {STEP_SPACE_DROP, NULL, false, false, 0, NULL};
    const char *sub = argc > 1 ? argv[1] : "list";
    int status;

    if (strcmp(sub, "list") == 0) {
        if (argc > 2) {
            return cli_usage_error(cli, "unexpected argument \"%s\"", argv[2]);
        }
        status = cli_load_config(cli);
        return status != 0 ? status : space_list(cli);
    }
    if (strcmp(sub, "drop") == 0) {
        a.step = STEP_SPACE_DROP;
    } else if (strcmp(sub, "rename") == 0) {
        a.step = STEP_SPACE_RENAME;
    } else {
        return cli_usage_error(cli, "unknown space command \"%s\" (list, drop, rename)", sub);
    }
    status = parse_step(cli, argc - 1, argv + 1, true, ALLOW(OPT_DRY_RUN), &a);
    return status != 0 ? status : run_step(cli, &a);
}
