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
    /* appended by the CLI (issue 4): */
    int verbosity;          /* -1 --quiet, 0 as configured, 1 --verbose */
    const char *log_format; /* --log-format logfmt|json, or NULL: as configured */
    const char *command;    /* the subcommand being run ("import"), for messages */
    const char *usage;      /* its usage line, printed after a usage error */
    bool lock_held;         /* cli_lock() took the store's run lock; main releases it */
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
int cmd_space(struct cli *cli, int argc, char **argv);     /* space [list] | drop | rename */
int cmd_serve(struct cli *cli, int argc, char **argv);     /* issue 6: src/cmd/serve.c */
int cmd_sync_now(struct cli *cli, int argc, char **argv);  /* issue 6: src/cmd/serve.c */

/* ---- helpers shared by the subcommands (cmd.c; appended by the CLI) ------ */

#include <jansson.h>
#include <stdint.h>

#include "entry.h"

struct option; /* <getopt.h> */

/* Print "idsync: <message>" and "usage: <cli->usage>" on stderr (with
 * --json: {"error":"usage","message":...} on stdout) and return EXIT_CONFIG. */
int cli_usage_error(struct cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* getopt_long over a subcommand's arguments (argv[0] is the subcommand).
 * Returns the option's value, -1 after the last option (optind then indexes
 * the first operand), or '?' after printing a usage error naming the
 * option (unknown option, missing argument): the caller returns EXIT_CONFIG. */
int cli_getopt(struct cli *cli, int argc, char **argv, const char *shortopts,
               const struct option *longopts);
/* Parse a decimal integer in [min, max] given to option `name`; on failure
 * print a usage error and return false. */
bool cli_parse_long(struct cli *cli, const char *name, const char *text, long min, long max,
                    long *out);
/* 0 when the loaded configuration has a connector `name`; otherwise a
 * usage error listing the configured connectors (EXIT_CONFIG). */
int cli_require_connector(struct cli *cli, const char *name);
/* Take the store's run lock (one run at a time), named after the command.
 * Prints the holder and returns EXIT_UNREACHABLE when another run holds it. */
int cli_lock(struct cli *cli);

/* JSON output. cli_json_str: a JSON string, null for NULL, invalid UTF-8
 * replaced (never fails). cli_json_value: one attribute value, a string or
 * {"base64": ...} for binary values. cli_json_print prints the document on
 * stdout (indented) and releases it. */
json_t *cli_json_str(const char *s);
json_t *cli_json_value(const char *data, size_t len);
void cli_json_print(json_t *doc);

/* A run record as JSON {"id","step","connector","parent","start","end",
 * "duration_s","status","dry_run","message","counters":{...}}. */
json_t *cli_run_json(const struct run_record *run);
/* One per-object error as JSON {"run","connector","anchor","dn","attr","code",
 * "message","cs_id","mv_id","time"}. */
json_t *cli_error_json(const struct run_error *e);
/* The runs whose parent is `id` (the steps of a cycle), oldest first; the
 * caller releases each and frees the array. Scans the newest runs only
 * (about 20000). */
void cli_run_children(struct store *st, int64_t id, struct run_record **out, size_t *n);
/* "read 10, staged-add 10" (every counter when `all`, else the non-zero
 * ones; "nothing to do" when none). */
void cli_counters_text(struct strbuf *out, const struct run_record *run, bool all);
/* After a step: the run summary (status, duration, non-zero counters,
 * message, child runs, the first errors), or with --json the document
 * {"run":..., "children":[...], "errors":[...], "error": {...}}, with
 * "pending": [...] read from `pending` (a dry run's finished report spool,
 * util/spool.h; NULL for none) — in text the report is the caller's to
 * print. ret/err are the step's result. */
void cli_report_run(struct cli *cli, enum ids_err ret, const struct ids_error *err,
                    const struct run_record *run, FILE *pending);

/* Display a value for people: text sanitized for the terminal, binary as
 * "base64:...", values of secret-looking attributes (userPassword,
 * unicodePwd, ...) as "***". */
void cli_value_text(struct strbuf *out, const char *attr, const char *data, size_t len);
bool cli_attr_is_secret(const char *attr);

/* The dry-run / pending report (JSON lines, engine.h) read from a spool
 * (util/spool.h, finished) one line at a time, so a report of a million
 * objects costs no memory: printed for people (per object "op TYPE DN"
 * with "attr: old -> new" lines, then totals per connector and
 * operation), or with json written to stdout as a JSON array, element by
 * element. Returns the number of objects; lines that do not parse are
 * reported and skipped. */
long cli_render_report(struct cli *cli, FILE *spool, bool json);
/* An empty report spool, or NULL after printing why (cli_fail). */
FILE *cli_report_spool(struct cli *cli, int *status);

#endif
