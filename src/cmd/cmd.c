/* cmd.c - what the subcommands share: loading the configuration, opening
 * the store, errors and usage errors, option parsing, JSON output, the run
 * summary printed after a step, and the weak stand-ins for the commands
 * that other files provide (serve.c, reconnect.c). */
#include "cmd/cmd.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/codec.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/table.h"
#include "util/banned.h"

/* How many per-object errors a step summary shows before pointing to
 * `idsync errors RUN`. */
#define SUMMARY_ERRORS 5
/* How many runs are scanned to find the children of a run. */
#define CHILD_SCAN_MAX 20000

/* ---- stand-ins for commands built elsewhere ------------------------------ */

static int not_available(const char *name)
{
    fprintf(stderr, "idsync: %s is not available in this build\n", name);
    return EXIT_CONFIG;
}

__attribute__((weak)) int cmd_serve(struct cli *cli, int argc, char **argv)
{
    return not_available("serve");
}

__attribute__((weak)) int cmd_sync_now(struct cli *cli, int argc, char **argv)
{
    return not_available("sync-now");
}

__attribute__((weak)) int cmd_reconnect(struct cli *cli, int argc, char **argv)
{
    return not_available("reconnect");
}

/* ---- errors ------------------------------------------------------------- */

int cli_status_for(enum ids_err code)
{
    switch (code) {
    case IDS_OK:
    case IDS_DONE:
        return EXIT_OK;
    case IDS_ECONFIG:
    case IDS_EUSAGE:
    case IDS_EINVAL:
    case IDS_EUNSUPPORTED:
        return EXIT_CONFIG;
    case IDS_ENOTFOUND:
    case IDS_EEXIST:
    case IDS_EINPUT:
    case IDS_EREJECTED:
    case IDS_EEXPR:
    case IDS_ETOOBIG:
    case IDS_EINTR:
        return EXIT_OBJECT_ERRORS;
    case IDS_ETHRESHOLD:
    case IDS_EERRLIMIT:
        return EXIT_GUARD;
    default: /* unreachable, store, io, protocol, busy, internal */
        return EXIT_UNREACHABLE;
    }
}

static void print_json_error(const char *code, const char *msg)
{
    json_t *doc = json_object();

    json_object_set_new(doc, "error", json_string(code));
    json_object_set_new(doc, "message", cli_json_str(msg));
    cli_json_print(doc);
}

int cli_fail(struct cli *cli, int status, const struct ids_error *err)
{
    const char *msg = err->msg[0] ? err->msg : ids_err_str(err->code);
    struct strbuf sb = STRBUF_INIT;

    text_sanitize(&sb, msg, strlen(msg));
    fprintf(stderr, "idsync: %s\n", sb.buf);
    strbuf_release(&sb);
    if (cli->json) {
        print_json_error(ids_err_name(err->code), msg);
    }
    return status;
}

int cli_usage_error(struct cli *cli, const char *fmt, ...)
{
    struct strbuf sb = STRBUF_INIT;
    va_list ap;

    va_start(ap, fmt);
    strbuf_vaddf(&sb, fmt, ap);
    va_end(ap);
    fprintf(stderr, "idsync: %s\n", sb.buf);
    if (cli->usage != NULL) {
        fprintf(stderr, "usage: %s\n", cli->usage);
    }
    fprintf(stderr, "Run `idsync %s%s--help` for more.\n", cli->command ? cli->command : "",
            cli->command ? " " : "");
    if (cli->json) {
        print_json_error("usage", sb.buf);
    }
    strbuf_release(&sb);
    return EXIT_CONFIG;
}

int cli_getopt(struct cli *cli, int argc, char **argv, const char *shortopts,
               const struct option *longopts)
{
    char opts[128];
    int c;
    const char *arg;
    size_t n;

    snprintf(opts, sizeof(opts), ":%s", shortopts[0] == ':' ? shortopts + 1 : shortopts);
    opterr = 0;
    c = getopt_long(argc, argv, opts, longopts, NULL);
    if (c != '?' && c != ':') {
        return c;
    }
    arg = optind > 0 && optind <= argc ? argv[optind - 1] : "";
    n = strcspn(arg, "=");
    if (c == ':') {
        if (arg[0] == '-' && arg[1] == '-') {
            cli_usage_error(cli, "option %.*s needs a value", (int)n, arg);
        } else {
            cli_usage_error(cli, "option -%c needs a value", optopt);
        }
    } else if (arg[0] == '-' && arg[1] == '-') {
        if (optopt != 0 && arg[n] == '=') {
            cli_usage_error(cli, "option %.*s takes no value", (int)n, arg);
        } else {
            cli_usage_error(cli, "unknown option %.*s", (int)n, arg);
        }
    } else if (optopt > ' ' && optopt < 127) {
        cli_usage_error(cli, "unknown option -%c", optopt);
    } else {
        cli_usage_error(cli, "unknown option %s", arg);
    }
    return '?';
}

bool cli_parse_long(struct cli *cli, const char *name, const char *text, long min, long max,
                    long *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno != 0 || v < min || v > max) {
        cli_usage_error(cli, "%s: \"%s\" is not a number from %ld to %ld", name, text, min, max);
        return false;
    }
    *out = v;
    return true;
}

/* ---- configuration and store ---------------------------------------------- */

static void apply_log_settings(struct cli *cli)
{
    enum log_level level = LOG_WARN;
    enum log_format format = LOG_LOGFMT;
    const struct config_value *v;

    if (cli->cfg != NULL) {
        v = config_values_get(&cli->cfg->log, "level");
        if (v != NULL && !v->is_default && v->str != NULL) {
            if (strcmp(v->str, "debug") == 0) {
                level = LOG_DEBUG;
            } else if (strcmp(v->str, "info") == 0) {
                level = LOG_INFO;
            } else if (strcmp(v->str, "error") == 0) {
                level = LOG_ERROR;
            }
        }
        v = config_values_get(&cli->cfg->log, "format");
        if (v != NULL && v->str != NULL && strcmp(v->str, "json") == 0) {
            format = LOG_JSON;
        }
    }
    if (cli->verbosity < 0) {
        level = LOG_ERROR;
    } else if (cli->verbosity == 1) {
        level = LOG_INFO;
    } else if (cli->verbosity > 1) {
        level = LOG_DEBUG;
    }
    if (cli->log_format != NULL) {
        format = strcmp(cli->log_format, "json") == 0 ? LOG_JSON : LOG_LOGFMT;
    }
    log_setup(level, format);
}

int cli_load_config(struct cli *cli)
{
    struct ids_error err = IDS_ERROR_INIT;
    enum ids_err ret;

    if (cli->cfg != NULL) {
        return 0;
    }
    if (access(cli->config_path, F_OK) != 0) {
        ids_error_set(&err, IDS_ECONFIG,
                      "%s: no such configuration file (give one with -c FILE or $IDSYNC_CONFIG)",
                      cli->config_path);
        return cli_fail(cli, EXIT_CONFIG, &err);
    }
    ret = config_load(cli->config_path, &cli->cfg, &err);
    if (ret != IDS_OK) {
        cli->cfg = NULL;
        if (err.msg[0] == '\0') {
            ids_error_set(&err, ret, "%s: %s", cli->config_path, ids_err_str(ret));
        }
        return cli_fail(cli, EXIT_CONFIG, &err);
    }
    apply_log_settings(cli);
    return 0;
}

int cli_open_store(struct cli *cli)
{
    struct ids_error err = IDS_ERROR_INIT;
    enum ids_err ret;
    int status;

    if (cli->store != NULL) {
        return 0;
    }
    status = cli_load_config(cli);
    if (status != 0) {
        return status;
    }
    ret = store_open(cli->cfg->store, &cli->store, &err);
    if (ret != IDS_OK) {
        cli->store = NULL;
        return cli_fail(cli, ret == IDS_ECONFIG ? EXIT_CONFIG : EXIT_UNREACHABLE, &err);
    }
    return 0;
}

int cli_lock(struct cli *cli)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf holder = STRBUF_INIT;
    enum ids_err ret;

    if (cli->lock_held) {
        return 0;
    }
    strbuf_addf(&holder, "idsync %s", cli->command ? cli->command : "");
    ret = store_lock_acquire(cli->store, holder.buf, &err);
    strbuf_release(&holder);
    if (ret != IDS_OK) {
        return cli_fail(cli, cli_status_for(ret), &err);
    }
    cli->lock_held = true;
    return 0;
}

/* ---- JSON ------------------------------------------------------------- */

json_t *cli_json_str(const char *s)
{
    struct strbuf sb = STRBUF_INIT;
    json_t *j;

    if (s == NULL) {
        return json_null();
    }
    if (utf8_valid(s, strlen(s))) {
        return json_string(s);
    }
    text_sanitize(&sb, s, strlen(s));
    j = json_string(sb.buf);
    strbuf_release(&sb);
    return j != NULL ? j : json_string("");
}

json_t *cli_json_value(const char *data, size_t len)
{
    struct strbuf sb = STRBUF_INIT;
    json_t *j;

    if (value_is_text(data, len)) {
        j = json_stringn(data, len);
        if (j != NULL) {
            return j;
        }
    }
    base64_encode(&sb, data, len);
    j = json_object();
    json_object_set_new(j, "base64", json_string(sb.buf));
    strbuf_release(&sb);
    return j;
}

void cli_json_print(json_t *doc)
{
    json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
    fputc('\n', stdout);
    fflush(stdout);
    json_decref(doc);
}

static json_t *json_time(int64_t us)
{
    struct strbuf sb = STRBUF_INIT;
    json_t *j;

    if (us <= 0) {
        return json_null();
    }
    fmt_iso_time(&sb, us);
    j = json_string(sb.buf);
    strbuf_release(&sb);
    return j;
}

json_t *cli_run_json(const struct run_record *run)
{
    json_t *j = json_object();
    json_t *c = json_object();
    struct run_counters counters = run->counters;
    size_t i;

    json_object_set_new(j, "id", json_integer(run->id));
    json_object_set_new(j, "step", cli_json_str(run->step));
    json_object_set_new(j, "connector", cli_json_str(run->connector));
    json_object_set_new(j, "parent", run->parent ? json_integer(run->parent) : json_null());
    json_object_set_new(j, "start", json_time(run->start_us));
    json_object_set_new(j, "end", json_time(run->end_us));
    json_object_set_new(j, "start_us", json_integer(run->start_us));
    json_object_set_new(j, "end_us", json_integer(run->end_us));
    if (run->end_us > 0 && run->start_us > 0) {
        json_object_set_new(j, "duration_s",
                            json_real((double)(run->end_us - run->start_us) / 1e6));
    } else {
        json_object_set_new(j, "duration_s", json_null());
    }
    json_object_set_new(j, "status", json_string(run_status_name(run->status)));
    json_object_set_new(j, "dry_run", json_boolean(run->dry_run));
    json_object_set_new(j, "message", cli_json_str(run->message));
    for (i = 0; i < run_counter_count; i++) {
        json_object_set_new(c, run_counter_descs[i].name,
                            json_integer(*run_counter_ptr(&counters, i)));
    }
    json_object_set_new(j, "counters", c);
    return j;
}

/* ---- values for people ------------------------------------------------- */

bool cli_attr_is_secret(const char *attr)
{
    return attr_is_password(attr);
}

void cli_value_text(struct strbuf *out, const char *attr, const char *data, size_t len)
{
    const size_t max = 256;

    if (cli_attr_is_secret(attr)) {
        strbuf_addstr(out, "***");
        return;
    }
    if (!value_is_text(data, len)) {
        strbuf_addf(out, "<binary, %zu bytes>", len);
        return;
    }
    if (len > max) {
        size_t cut = max;

        while (cut > 0 && ((unsigned char)data[cut] & 0xc0u) == 0x80u) {
            cut--;
        }
        text_sanitize(out, data, cut);
        strbuf_addf(out, "... (%zu bytes)", len);
        return;
    }
    text_sanitize(out, data, len);
}

/* ---- the summary after a step ------------------------------------------ */

/* Children of run `id` (ascending ids), found by scanning the newest runs. */
static void run_children(struct store *st, int64_t id, struct run_record **out, size_t *nout)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct run_record *kids = NULL;
    size_t nkids = 0;
    size_t alloc = 0;
    int64_t before = 0;
    size_t scanned = 0;

    while (scanned < CHILD_SCAN_MAX) {
        struct run_record *page = NULL;
        size_t n = 0;
        size_t i;
        bool older = false;

        if (store_runs_list(st, before, 200, &page, &n, &err) != IDS_OK || n == 0) {
            free(page);
            break;
        }
        for (i = 0; i < n; i++) {
            if (page[i].id <= id) {
                older = true;
            }
            if (page[i].parent == id) {
                ALLOC_GROW(kids, nkids + 1, alloc);
                kids[nkids++] = page[i]; /* moved: not released here */
            } else {
                run_record_release(&page[i]);
            }
        }
        before = page[n - 1].id;
        scanned += n;
        free(page);
        if (older) {
            break;
        }
    }
    /* newest first -> ascending */
    for (size_t i = 0; i < nkids / 2; i++) {
        struct run_record tmp = kids[i];

        kids[i] = kids[nkids - 1 - i];
        kids[nkids - 1 - i] = tmp;
    }
    *out = kids;
    *nout = nkids;
}

void cli_run_children(struct store *st, int64_t id, struct run_record **out, size_t *nout)
{
    run_children(st, id, out, nout);
}

static void counters_text(struct strbuf *out, const struct run_record *run, bool all)
{
    struct run_counters counters = run->counters;
    size_t i;
    bool first = true;

    for (i = 0; i < run_counter_count; i++) {
        long v = *run_counter_ptr(&counters, i);

        if (v == 0 && !all) {
            continue;
        }
        strbuf_addf(out, "%s%s %ld", first ? "" : ", ", run_counter_descs[i].name, v);
        first = false;
    }
    if (first) {
        strbuf_addstr(out, "nothing to do");
    }
}

void cli_counters_text(struct strbuf *out, const struct run_record *run, bool all)
{
    counters_text(out, run, all);
}

static void run_title(struct strbuf *out, const struct run_record *run)
{
    strbuf_addstr(out, run->step ? run->step : "run");
    if (run->connector != NULL) {
        strbuf_addf(out, " %s", run->connector);
    }
}

static json_t *error_json(const struct run_error *e)
{
    json_t *j = json_object();

    json_object_set_new(j, "run", json_integer(e->run));
    json_object_set_new(j, "connector", cli_json_str(e->connector));
    json_object_set_new(j, "anchor", cli_json_str(e->anchor));
    json_object_set_new(j, "dn", cli_json_str(e->dn));
    json_object_set_new(j, "attr", cli_json_str(e->attr));
    json_object_set_new(j, "code", cli_json_str(e->code));
    json_object_set_new(j, "message", cli_json_str(e->message));
    json_object_set_new(j, "cs_id", e->cs_id ? json_integer(e->cs_id) : json_null());
    json_object_set_new(j, "mv_id", e->mv_id ? json_integer(e->mv_id) : json_null());
    json_object_set_new(j, "time", json_time(e->time_us));
    return j;
}

json_t *cli_error_json(const struct run_error *e)
{
    return error_json(e);
}

/* Up to `max` errors of run `id` appended to `arr` (JSON) or printed. */
static size_t show_errors(struct cli *cli, int64_t id, size_t max, json_t *arr)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct run_error *errs = NULL;
    size_t n = 0;
    size_t i;

    if (max == 0 || store_run_errors(cli->store, id, 0, max, &errs, &n, &err) != IDS_OK) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        const struct run_error *e = &errs[i];

        if (arr != NULL) {
            json_array_append_new(arr, error_json(e));
        } else {
            struct strbuf sb = STRBUF_INIT;

            strbuf_addstr(&sb, e->connector ? e->connector : "-");
            if (e->dn != NULL || e->anchor != NULL) {
                strbuf_addf(&sb, " %s", e->dn ? e->dn : e->anchor);
            }
            if (e->attr != NULL) {
                strbuf_addf(&sb, " [%s]", e->attr);
            }
            strbuf_addf(&sb, ": %s: %s", e->code ? e->code : "error", e->message ? e->message : "");
            {
                struct strbuf clean = STRBUF_INIT;

                text_sanitize(&clean, sb.buf, sb.len);
                printf("  %s\n", clean.buf);
                strbuf_release(&clean);
            }
            strbuf_release(&sb);
        }
        run_error_release(&errs[i]);
    }
    free(errs);
    return n;
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

static void print_summary(struct cli *cli, const struct run_record *run,
                          const struct run_record *kids, size_t nkids)
{
    struct strbuf sb = STRBUF_INIT;
    struct strbuf clean = STRBUF_INIT;
    long nerr = error_count(cli, run->id);
    size_t shown = 0;
    size_t i;
    int64_t err_run = nerr > 0 ? run->id : 0;

    run_title(&sb, run);
    strbuf_addf(&sb, ": %s%s in ", run_status_name(run->status), run->dry_run ? " (dry run)" : "");
    fmt_duration(&sb, run->end_us > 0 ? run->end_us - run->start_us : -1);
    strbuf_addf(&sb, " (run %" PRId64 ")", run->id);
    printf("%s\n", sb.buf);
    strbuf_reset(&sb);
    if (nkids > 0) {
        struct table *t = table_new();

        table_add_column(t, "", TABLE_RIGHT);
        table_add_column(t, "", TABLE_LEFT);
        table_add_column(t, "", TABLE_LEFT);
        table_add_column(t, "", TABLE_RIGHT);
        table_add_column(t, "", TABLE_LEFT);
        for (i = 0; i < nkids; i++) {
            table_add_row(t);
            table_add_cellf(t, "%" PRId64, kids[i].id);
            strbuf_reset(&sb);
            run_title(&sb, &kids[i]);
            table_add_cell(t, sb.buf);
            table_add_cell(t, run_status_name(kids[i].status));
            strbuf_reset(&sb);
            fmt_duration(&sb, kids[i].end_us > 0 ? kids[i].end_us - kids[i].start_us : -1);
            table_add_cell(t, sb.buf);
            strbuf_reset(&sb);
            counters_text(&sb, &kids[i], false);
            table_add_cell(t, sb.buf);
            if (err_run == 0 && error_count(cli, kids[i].id) > 0) {
                err_run = kids[i].id;
            }
        }
        table_print(t, stdout, 2);
        table_free(t);
    } else {
        strbuf_reset(&sb);
        counters_text(&sb, run, false);
        printf("  %s\n", sb.buf);
    }
    if (run->message != NULL && run->message[0] != '\0') {
        strbuf_reset(&clean);
        text_sanitize(&clean, run->message, strlen(run->message));
        printf("  %s\n", clean.buf);
    }
    /* the first errors: of the run itself, then of its children */
    if (nerr > 0 || err_run != 0) {
        long total = nerr;

        for (i = 0; i < nkids; i++) {
            total += error_count(cli, kids[i].id);
        }
        printf("errors (%ld):\n", total);
        shown += show_errors(cli, run->id, SUMMARY_ERRORS, NULL);
        for (i = 0; i < nkids && shown < SUMMARY_ERRORS; i++) {
            shown += show_errors(cli, kids[i].id, SUMMARY_ERRORS - shown, NULL);
        }
        if ((long)shown < total) {
            printf("  ... and %ld more\n", total - (long)shown);
        }
        printf("  see `idsync errors %" PRId64 "`\n", nkids > 0 ? run->id : err_run);
    }
    strbuf_release(&sb);
    strbuf_release(&clean);
}

void cli_report_run(struct cli *cli, enum ids_err ret, const struct ids_error *err,
                    const struct run_record *run, FILE *pending)
{
    struct run_record *kids = NULL;
    size_t nkids = 0;
    size_t i;
    bool failed = ret != IDS_OK;

    if (run->id > 0 && cli->store != NULL) {
        run_children(cli->store, run->id, &kids, &nkids);
    }
    if (cli->json) {
        json_t *doc = json_object();
        json_t *arr = json_array();
        json_t *errs = json_array();
        size_t shown = 0;

        if (run->id > 0) {
            json_object_set_new(doc, "run", cli_run_json(run));
        } else {
            json_object_set_new(doc, "run", json_null());
        }
        for (i = 0; i < nkids; i++) {
            json_array_append_new(arr, cli_run_json(&kids[i]));
        }
        json_object_set_new(doc, "children", arr);
        if (run->id > 0) {
            shown += show_errors(cli, run->id, SUMMARY_ERRORS * 20, errs);
        }
        for (i = 0; i < nkids && shown < SUMMARY_ERRORS * 20; i++) {
            shown += show_errors(cli, kids[i].id, SUMMARY_ERRORS * 20 - shown, errs);
        }
        json_object_set_new(doc, "errors", errs);
        if (failed) {
            json_t *e = json_object();

            json_object_set_new(e, "code", json_string(ids_err_name(ret)));
            json_object_set_new(e, "message", cli_json_str(err->msg[0] ? err->msg : NULL));
            json_object_set_new(doc, "error", e);
        } else {
            json_object_set_new(doc, "error", json_null());
        }
        if (pending != NULL) {
            /* the document, then its "pending" member streamed from the
             * spool (a million objects are never one JSON value in memory) */
            char *text = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
            char *close = text != NULL ? strrchr(text, '}') : NULL;
            size_t n = close != NULL ? (size_t)(close - text) : 0;

            while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' ')) {
                n--;
            }
            if (n > 0) {
                fwrite(text, 1, n, stdout);
                fputs(",\n  \"pending\": ", stdout);
                cli_render_report(cli, pending, true);
                fputs("\n}\n", stdout);
                fflush(stdout);
            }
            free(text);
            json_decref(doc);
        } else {
            cli_json_print(doc);
        }
    } else {
        if (run->id > 0 && (!cli->quiet || failed || run->status != RUN_SUCCESS)) {
            print_summary(cli, run, kids, nkids);
        }
    }
    if (failed) {
        const char *msg = err->msg[0] ? err->msg : ids_err_str(ret);
        struct strbuf sb = STRBUF_INIT;

        /* the run message usually says the same; print the error anyway:
         * a failure is never silent on stderr */
        text_sanitize(&sb, msg, strlen(msg));
        fprintf(stderr, "idsync: %s\n", sb.buf);
        strbuf_release(&sb);
    }
    for (i = 0; i < nkids; i++) {
        run_record_release(&kids[i]);
    }
    free(kids);
    fflush(stdout);
}
