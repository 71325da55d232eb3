/* main.c - the idsync command line: global options, the subcommand table,
 * and dispatch to one cmd_*() (src/cmd/). Global options are accepted
 * before or after the subcommand; they are taken out of the arguments
 * before the subcommand parses its own. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "cmd/version.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/strvec.h"
#include "util/banned.h"

struct command {
    const char *name;
    int (*fn)(struct cli *cli, int argc, char **argv);
    const char *usage;   /* after "idsync [options] " */
    const char *summary; /* one line for `idsync --help` */
    bool own_help;       /* the command handles -h/--help itself */
};

static const struct command commands[] = {
    {"check", cmd_check, "check",
     "validate the configuration, open the store, test each connection", false},
    {"cycle", cmd_cycle, "cycle [--full] [--dry-run]",
     "import every connector, sync, export every target, confirming import", false},
    {"import", cmd_import, "import CONNECTOR [--full] [--allow-deletes N]",
     "import one connector (delta unless --full)", false},
    {"sync", cmd_sync, "sync [--full]", "move data between connector spaces and the metaverse",
     false},
    {"export", cmd_export, "export CONNECTOR [--dry-run] [--allow-deletes N]",
     "send the pending exports of one connector", false},
    {"pending", cmd_pending, "pending CONNECTOR", "what the next export of CONNECTOR would do",
     false},
    {"preview", cmd_preview, "preview CONNECTOR ANCHOR|DN",
     "what a sync would do to one object, rule by rule", false},
    {"show", cmd_show, "show cs CONNECTOR ANCHOR|DN | show mv ID | show mv --where ATTR=VALUE",
     "a connector-space object or a metaverse object, with its links", false},
    {"history", cmd_history, "history [RUN] [--limit N]", "runs with their counters", false},
    {"errors", cmd_errors, "errors [RUN] [--limit N]", "per-object errors of a run", false},
    {"config", cmd_config, "config dump | config docs",
     "print the effective configuration, or the configuration reference", false},
    {"space", cmd_space, "space [list] | space drop NAME [--dry-run] | space rename OLD NEW",
     "connector spaces: list them, drop one a removed connector left, or rename one", false},
    {"reconnect", cmd_reconnect, "reconnect ...", "re-join a rebuilt directory", true},
    {"serve", cmd_serve, "serve ...", "scheduler, HTTP API and console", true},
    {"sync-now", cmd_sync_now, "sync-now ...", "ask a running daemon to start a cycle now", true},
};

static const char global_help[] =
    "Global options (before or after the command):\n"
    "  -c, --config FILE       configuration file (default: $IDSYNC_CONFIG or ./idsync.yaml)\n"
    "      --json              one JSON document on stdout instead of text\n"
    "  -q, --quiet             print only errors; no progress line\n"
    "  -v, --verbose           log more (-v info, -vv debug) on stderr\n"
    "      --log-format FMT    log lines as logfmt (default) or json\n"
    "  -h, --help              this help, or a command's with `idsync COMMAND --help`\n"
    "      --version           print the version\n"
    "\n"
    "Exit status: 0 success, 1 completed with object errors (or the object asked\n"
    "for does not exist), 2 stopped by a guard (deletion threshold, error limit),\n"
    "3 configuration or usage error, 4 a connected system or the store unreachable.\n";

static const struct command *find_command(const char *name)
{
    size_t i;

    for (i = 0; i < ARRAY_SIZE(commands); i++) {
        if (strcmp(commands[i].name, name) == 0) {
            return &commands[i];
        }
    }
    return NULL;
}

static void print_help(FILE *out)
{
    size_t i;

    fprintf(out, "usage: idsync [options] COMMAND [ARGS]\n\n"
                 "idsync keeps directories in step: import -> sync -> export.\n\nCommands:\n");
    for (i = 0; i < ARRAY_SIZE(commands); i++) {
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(out, "\n%s\nSee the idsync(1) manual page or docs/cli.md for every option.\n",
            global_help);
}

static void print_command_help(const struct command *c)
{
    printf("usage: idsync [options] %s\n\n%s.\n\n%s", c->usage, c->summary, global_help);
}

/* A global option at argv[*i]: fills cli and advances *i past its value.
 * Returns 1 when it was one, 0 when not, -1 after a usage error. */
static int take_global(struct cli *cli, int argc, char **argv, int *i, bool *help, bool *version)
{
    const char *a = argv[*i];
    const char *value = NULL;
    bool wants_value = false;
    const char *name = a;

    if (strcmp(a, "--json") == 0) {
        cli->json = true;
        return 1;
    }
    if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
        cli->verbosity = -1;
        cli->quiet = true;
        return 1;
    }
    if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
        cli->verbosity = cli->verbosity < 0 ? 1 : cli->verbosity + 1;
        cli->quiet = false;
        return 1;
    }
    if (strcmp(a, "-vv") == 0) {
        cli->verbosity = 2;
        cli->quiet = false;
        return 1;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
        *help = true;
        return 1;
    }
    if (strcmp(a, "--version") == 0) {
        *version = true;
        return 1;
    }
    if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0 || strcmp(a, "--log-format") == 0) {
        wants_value = true;
    } else if (strncmp(a, "--config=", 9) == 0 || strncmp(a, "--log-format=", 13) == 0) {
        value = strchr(a, '=') + 1;
        name = strncmp(a, "--config=", 9) == 0 ? "--config" : "--log-format";
    } else if (strncmp(a, "-c", 2) == 0 && a[2] != '\0') {
        value = a + 2;
        name = "-c";
    } else {
        return 0;
    }
    if (wants_value) {
        if (*i + 1 >= argc) {
            cli_usage_error(cli, "option %s needs a value", a);
            return -1;
        }
        value = argv[++*i];
    }
    if (strcmp(name, "--log-format") == 0) {
        if (strcmp(value, "logfmt") != 0 && strcmp(value, "json") != 0) {
            cli_usage_error(cli, "--log-format: \"%s\" is not logfmt or json", value);
            return -1;
        }
        cli->log_format = value;
    } else {
        if (value[0] == '\0') {
            cli_usage_error(cli, "option %s needs a file name", name);
            return -1;
        }
        cli->config_path = value;
    }
    return 1;
}

static void cli_release(struct cli *cli)
{
    if (cli->lock_held && cli->store != NULL) {
        store_lock_release(cli->store);
    }
    store_close(cli->store);
    config_free(cli->cfg);
}

int main(int argc, char **argv)
{
    struct cli cli;
    struct strvec sub = STRVEC_INIT;
    struct strbuf usage = STRBUF_INIT;
    const struct command *cmd = NULL;
    const char *env = getenv("IDSYNC_CONFIG");
    bool help = false;
    bool version = false;
    int status = EXIT_OK;
    int i;
    bool rest = false;

    /* A connected system that closes its socket (an LDAP server restarting,
     * a SCIM proxy dropping a connection) must give a write error that the
     * connector handles, not kill the process with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    memset(&cli, 0, sizeof(cli));
    cli.config_path = env != NULL && env[0] != '\0' ? env : "idsync.yaml";
    cli.usage = "idsync [options] COMMAND [ARGS]";
    log_setup(LOG_WARN, LOG_LOGFMT);

    /* one pass: global options anywhere (until "--"), the first operand
     * is the command, everything else is the command's */
    for (i = 1; i < argc; i++) {
        int r;

        if (!rest && strcmp(argv[i], "--") == 0) {
            rest = true;
            if (cmd != NULL) {
                strvec_push(&sub, argv[i]);
            }
            continue;
        }
        if (!rest && argv[i][0] == '-' && argv[i][1] != '\0') {
            r = take_global(&cli, argc, argv, &i, &help, &version);
            if (r < 0) {
                status = EXIT_CONFIG;
                goto done;
            }
            if (r > 0) {
                continue;
            }
            if (cmd == NULL) {
                status = cli_usage_error(&cli, "unknown option %.*s before the command",
                                         (int)strcspn(argv[i], "="), argv[i]);
                goto done;
            }
            if (cmd->own_help && (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)) {
                strvec_push(&sub, argv[i]);
                continue;
            }
            strvec_push(&sub, argv[i]);
            continue;
        }
        if (cmd == NULL) {
            if (strcmp(argv[i], "help") == 0 && !help) {
                help = true;
                continue;
            }
            cmd = find_command(argv[i]);
            if (cmd == NULL) {
                status = cli_usage_error(&cli, "unknown command \"%s\"", argv[i]);
                goto done;
            }
            cli.command = cmd->name;
            strbuf_reset(&usage);
            strbuf_addf(&usage, "idsync [options] %s", cmd->usage);
            cli.usage = usage.buf;
            strvec_push(&sub, argv[i]);
            continue;
        }
        strvec_push(&sub, argv[i]);
    }
    if (version) {
        printf("idsync %s\n", IDSYNC_VERSION);
        goto done;
    }
    if (cmd == NULL) {
        if (help) {
            print_help(stdout);
            goto done;
        }
        print_help(stderr);
        status = EXIT_CONFIG;
        goto done;
    }
    if (help && !cmd->own_help) {
        print_command_help(cmd);
        goto done;
    }
    if (help) {
        strvec_push(&sub, "--help");
    }
    cli.progress = isatty(STDERR_FILENO) && !cli.json && !cli.quiet;
    if (cli.verbosity != 0 || cli.log_format != NULL) {
        log_setup(cli.verbosity < 0    ? LOG_ERROR
                  : cli.verbosity == 1 ? LOG_INFO
                  : cli.verbosity > 1  ? LOG_DEBUG
                                       : LOG_WARN,
                  cli.log_format != NULL && strcmp(cli.log_format, "json") == 0 ? LOG_JSON
                                                                                : LOG_LOGFMT);
    }
    optind = 0; /* reset getopt for the command */
    status = cmd->fn(&cli, (int)sub.nr, sub.v);
done:
    fflush(stdout);
    cli_release(&cli);
    strbuf_release(&usage);
    strvec_clear(&sub);
    return status;
}
