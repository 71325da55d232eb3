/* cmd.h - the subcommands of the idsync command line.
 *
 * main.c parses the global options into struct cli, finds the subcommand
 * in its table and calls cmd_NAME(cli, argc, argv) with argv[0] = the
 * subcommand name and the rest of the arguments after it. Each cmd_*
 * returns the process exit status (DESIGN.md): 0 success, 1 completed with
 * object errors, 2 stopped by a guard, 3 configuration or usage error, 4 a
 * connected system or the store unreachable.
 */
#ifndef IDSYNC_CMD_H
#define IDSYNC_CMD_H

#include <stdbool.h>

#include "config.h"
#include "store/store.h"
#include "util/error.h"

#define EXIT_OK            0
#define EXIT_OBJECT_ERRORS 1
#define EXIT_GUARD         2
#define EXIT_CONFIG        3
#define EXIT_UNREACHABLE   4

struct cli {
    const char *config_path; /* -c FILE, $IDSYNC_CONFIG, or ./idsync.yaml */
    bool json;               /* --json: machine output on stdout */
    bool quiet;
    bool progress;       /* stderr is a terminal and not --json/--quiet */
    struct config *cfg;  /* loaded by cli_load_config(), freed by main */
    struct store *store; /* opened by cli_open_store(), closed by main */
};

/* Load cli->config_path into cli->cfg (once). On error prints the message
 * (text or JSON) to stderr and returns EXIT_CONFIG; 0 on success. */
int cli_load_config(struct cli *cli);
/* Load the configuration and open its store (once). EXIT_CONFIG or
 * EXIT_UNREACHABLE after printing the error; 0 on success. */
int cli_open_store(struct cli *cli);
/* Print an error for the user: "idsync: <msg>" on stderr, or with --json a
 * JSON object {"error": code-name, "message": ...} on stdout. Returns `status`. */
int cli_fail(struct cli *cli, int status, const struct ids_error *err);
/* Exit status for an error code (config -> 3, unreachable/store -> 4, ...). */
int cli_status_for(enum ids_err code);

int cmd_check(struct cli *cli, int argc, char **argv);
int cmd_cycle(struct cli *cli, int argc, char **argv);
int cmd_import(struct cli *cli, int argc, char **argv);
int cmd_sync(struct cli *cli, int argc, char **argv);
int cmd_export(struct cli *cli, int argc, char **argv);
int cmd_pending(struct cli *cli, int argc, char **argv);
int cmd_preview(struct cli *cli, int argc, char **argv);
int cmd_show(struct cli *cli, int argc, char **argv);
int cmd_history(struct cli *cli, int argc, char **argv);
int cmd_errors(struct cli *cli, int argc, char **argv);
int cmd_config(struct cli *cli, int argc, char **argv);    /* config dump | config docs */
int cmd_reconnect(struct cli *cli, int argc, char **argv); /* issue 5: src/cmd/reconnect.c */
int cmd_serve(struct cli *cli, int argc, char **argv);     /* issue 6: src/cmd/serve.c */
int cmd_sync_now(struct cli *cli, int argc, char **argv);  /* issue 6: src/cmd/serve.c */

#endif
