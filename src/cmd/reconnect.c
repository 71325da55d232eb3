/* reconnect.c - `idsync reconnect`: preview, plan and apply the re-join of
 * a rebuilt directory (engine/reconnect.h).
 *
 *   idsync reconnect [CONNECTOR] --by ATTR [--by ATTR ...] [--plan FILE] [--all]
 *   idsync reconnect CONNECTOR --object ANCHOR|DN --to TARGET-ID [--plan FILE]
 *   idsync reconnect --apply FILE
 */
#include "cmd/cmd.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <setjmp.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/reconnect.h"
#include "notify/notify.h"
#include "util/fdio.h"
#include "util/mem.h"
#include "util/progress.h"
#include "util/table.h"
#include "util/banned.h"

/* A plan file is mapped and its rows read one at a time; pages read are
 * given back every PLAN_GIVE_BACK bytes (a million rows are ~590 MB). */
#define PLAN_GIVE_BACK (8u * 1024u * 1024u)

struct rc_args {
    const char *connector;
    struct strvec by;
    const char *plan;
    const char *apply;
    const char *object;
    const char *to;
    bool all;
};

enum { OPT_BY = 1000, OPT_PLAN, OPT_APPLY, OPT_OBJECT, OPT_TO, OPT_ALL, OPT_HELP };

/* Returned by parse_args after printing the help: exit 0. */
#define RC_HELP_SHOWN (-1)

static void print_reconnect_help(void)
{
    fputs("usage: idsync [options] reconnect [CONNECTOR] --by ATTR [--by ATTR ...] "
          "[--plan FILE]\n"
          "       idsync [options] reconnect --apply FILE\n"
          "       idsync [options] reconnect [CONNECTOR] --object ANCHOR|DN --to TARGET\n"
          "\n"
          "Re-join a rebuilt directory (new anchors, same people) to what idsync already\n"
          "manages, instead of deleting and re-creating. Without --apply it only previews:\n"
          "per object the action (re-anchor, already-linked, ambiguous, no-candidate,\n"
          "type-mismatch) and the totals; --plan FILE records exactly that preview.\n"
          "--apply FILE applies that plan and nothing else; it refuses when the store or\n"
          "a connected system changed since. See docs/reconnect.md.\n"
          "\n"
          "  --by ATTR         metaverse attribute to match on (mail, upn, name; repeatable)\n"
          "  --plan FILE       write the preview to FILE (JSON)\n"
          "  --apply FILE      apply a plan written by --plan\n"
          "  --object ID       one object (anchor or DN) to re-join by hand ...\n"
          "  --to TARGET       ... to this candidate (anchor, DN or mv:ID)\n"
          "  --all             list every object, not only those that need attention\n",
          stdout);
}

static int parse_args(struct cli *cli, int argc, char **argv, struct rc_args *a)
{
    static const struct option longopts[] = {
        {"by", required_argument, NULL, OPT_BY},
        {"plan", required_argument, NULL, OPT_PLAN},
        {"apply", required_argument, NULL, OPT_APPLY},
        {"object", required_argument, NULL, OPT_OBJECT},
        {"to", required_argument, NULL, OPT_TO},
        {"all", no_argument, NULL, OPT_ALL},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    int c;

    for (;;) {
        c = cli_getopt(cli, argc, argv, "", longopts);
        if (c == -1) {
            break;
        }
        switch (c) {
        case OPT_BY: {
            struct strvec parts = STRVEC_INIT;
            size_t i;

            strvec_split(&parts, optarg, ',', true);
            for (i = 0; i < parts.nr; i++) {
                strvec_push(&a->by, parts.v[i]);
            }
            strvec_clear(&parts);
            break;
        }
        case OPT_PLAN:
            a->plan = optarg;
            break;
        case OPT_APPLY:
            a->apply = optarg;
            break;
        case OPT_OBJECT:
            a->object = optarg;
            break;
        case OPT_TO:
            a->to = optarg;
            break;
        case OPT_ALL:
            a->all = true;
            break;
        case OPT_HELP:
            print_reconnect_help();
            return RC_HELP_SHOWN;
        default:
            return EXIT_CONFIG;
        }
    }
    if (optind < argc) {
        a->connector = argv[optind++];
    }
    if (optind < argc) {
        return cli_usage_error(cli, "unexpected argument \"%s\"", argv[optind]);
    }
    if (a->apply != NULL &&
        (a->connector != NULL || a->by.nr > 0 || a->plan != NULL || a->object != NULL)) {
        return cli_usage_error(cli, "--apply FILE takes nothing else: the plan says it all");
    }
    if (a->apply == NULL && a->by.nr == 0 && a->object == NULL) {
        return cli_usage_error(cli, "say which attributes to match on (--by mail), or give "
                                    "--object ANCHOR|DN --to TARGET-ID, or --apply FILE");
    }
    if ((a->object == NULL) != (a->to == NULL)) {
        return cli_usage_error(cli, "--object and --to go together");
    }
    if (a->object != NULL && a->connector == NULL) {
        return cli_usage_error(cli, "--object needs the connector it is in");
    }
    return 0;
}

/* Write the plan atomically: FILE.tmp, then rename. */
/* Write the plan to path: a temp file beside it, fsync, rename; the rows
 * are written as they are turned into text. */
static enum ids_err write_plan(const char *path, const struct reconnect_plan *p,
                               struct ids_error *err)
{
    struct strbuf tmp = STRBUF_INIT;
    FILE *fp;
    enum ids_err ret = IDS_OK;

    strbuf_addf(&tmp, "%s.tmp", path);
    fp = fopen(tmp.buf, "w");
    if (fp == NULL) {
        ret = ids_error_set(err, IDS_EIO, "cannot write the plan %s: %s", tmp.buf, strerror(errno));
        goto done;
    }
    reconnect_plan_write(p, fp);
    if (ferror(fp) || fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
        ret = ids_error_set(err, IDS_EIO, "cannot write the plan %s: %s", tmp.buf,
                            errno ? strerror(errno) : "write error");
        fclose(fp);
        unlink(tmp.buf);
        goto done;
    }
    if (fclose(fp) != 0 || rename(tmp.buf, path) != 0) {
        ret = ids_error_set(err, IDS_EIO, "cannot write the plan %s: %s", path, strerror(errno));
        unlink(tmp.buf);
    }
done:
    strbuf_release(&tmp);
    return ret;
}

/* A plan file mapped for reading. */
struct plan_map {
    char *base;
    size_t len;
    int fd; /* kept open: rows named in a refusal are read again with pread */
    const char *path;
    size_t released; /* pages before this were given back */
    size_t page;     /* the page size */
    struct progress *prog;
    long calls;
};

static enum ids_err plan_map_open(struct plan_map *m, const char *path, struct ids_error *err)
{
    struct stat st;
    long pg;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    memset(m, 0, sizeof(*m));
    m->fd = -1;
    m->path = path;
    pg = sysconf(_SC_PAGESIZE);
    m->page = pg > 0 ? (size_t)pg : 4096u;
    if (fd < 0) {
        return ids_error_set(err, errno == ENOENT ? IDS_ENOTFOUND : IDS_EIO, "%s: %s", path,
                             strerror(errno));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ids_error_set(err, IDS_EINPUT, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return ids_error_set(err, IDS_EINPUT, "%s: empty file, not a reconnect plan", path);
    }
    m->len = (size_t)st.st_size;
    m->base = mmap(NULL, m->len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m->base == MAP_FAILED) {
        m->base = NULL;
        close(fd);
        return ids_error_set(err, IDS_EIO, "%s: %s", path, strerror(errno));
    }
    m->fd = fd;
    madvise(m->base, m->len, MADV_SEQUENTIAL);
    return IDS_OK;
}

/* The reader has read the rows up to `upto`: give those pages back (they
 * would otherwise stay in the process's memory until the end). */
static void plan_map_consumed(void *arg, size_t upto)
{
    struct plan_map *m = arg;
    size_t end = upto / m->page * m->page;

    progress_update(m->prog, ++m->calls); /* about one a row */
    if (upto < m->released) {
        m->released = 0; /* read again from the start */
    }
    if (end >= m->released + PLAN_GIVE_BACK) {
        madvise(m->base + m->released, end - m->released, MADV_DONTNEED);
        m->released = end;
    }
}

/* A row read again (to name it in a refusal), from the file: the mapping of
 * a file that shrank meanwhile would raise SIGBUS, a read reports it. */
static enum ids_err plan_map_fetch(void *arg, size_t at, size_t len, char *buf,
                                   struct ids_error *err)
{
    struct plan_map *m = arg;

    return fd_pread_all(m->fd, buf, len, at, m->path, err);
}

static void plan_map_close(struct plan_map *m)
{
    if (m->base != NULL) {
        munmap(m->base, m->len);
    }
    if (m->fd >= 0) {
        close(m->fd);
    }
    memset(m, 0, sizeof(*m));
}

static const char *or_dash(const char *s)
{
    return s != NULL && *s != '\0' ? s : "-";
}

static void print_plan(struct cli *cli, const struct reconnect_plan *p, bool all)
{
    struct table *t = table_new();
    struct strbuf sb = STRBUF_INIT;
    size_t i;
    size_t k;
    long hidden = 0;

    table_add_column(t, "ACTION", TABLE_LEFT);
    table_add_column(t, "CONNECTOR", TABLE_LEFT);
    table_add_column(t, "TYPE", TABLE_LEFT);
    table_add_column(t, "OBJECT", TABLE_LEFT);
    table_add_column(t, "BY", TABLE_LEFT);
    table_add_column(t, "OLD ANCHOR", TABLE_LEFT);
    table_add_column(t, "NEW ANCHOR", TABLE_LEFT);
    table_add_column(t, "TARGET OBJECT / CANDIDATES", TABLE_LEFT);
    for (i = 0; i < p->nr; i++) {
        const struct reconnect_row *r = &p->v[i];

        if (r->action == RC_ALREADY_LINKED && !all) {
            hidden++;
            continue;
        }
        table_add_row(t);
        table_add_cell(t, reconnect_action_name(r->action));
        table_add_cell(t, r->connector);
        table_add_cell(t, r->type);
        table_add_cell(t, or_dash(r->dn ? r->dn : r->anchor));
        table_add_cell(t, or_dash(r->by));
        table_add_cell(t, or_dash(r->old_anchor));
        table_add_cell(t, or_dash(r->new_anchor));
        strbuf_reset(&sb);
        if (r->action == RC_REANCHOR || r->action == RC_ALREADY_LINKED) {
            if (r->situation == 1) {
                strbuf_addf(&sb, "mv %" PRId64, r->mv_id);
                for (k = 0; k < r->ntargets; k++) {
                    strbuf_addf(
                        &sb, ", %s %s", r->targets[k].connector,
                        or_dash(r->targets[k].dn ? r->targets[k].dn : r->targets[k].anchor));
                }
            } else {
                strbuf_addf(&sb, "%s (mv %" PRId64 ")", or_dash(r->cs_dn ? r->cs_dn : r->cs_anchor),
                            r->mv_id);
            }
        } else if (r->note != NULL) {
            strbuf_addstr(&sb, r->note);
        }
        table_add_cell(t, sb.buf);
        for (k = 0; k < r->ncand && r->action != RC_REANCHOR; k++) {
            const struct reconnect_candidate *c = &r->cand[k];

            table_add_row(t);
            table_add_cell(t, "");
            table_add_cell(t, "");
            table_add_cell(t, "");
            table_add_cell(t, "");
            table_add_cell(t, "");
            table_add_cell(t, "");
            table_add_cell(t, "");
            strbuf_reset(&sb);
            strbuf_addf(&sb, "candidate %s %s%s%s", or_dash(c->type), or_dash(c->anchor),
                        c->dn ? " " : "", c->dn ? c->dn : "");
            if (r->situation == 1) {
                strbuf_addf(&sb, " (mv %" PRId64 ")", c->id);
            } else if (c->carrier != NULL) {
                strbuf_addf(&sb, " (carrier %s)", c->carrier);
            }
            table_add_cell(t, sb.buf);
        }
    }
    if (table_rows(t) > 0) {
        table_print(t, stdout, 0);
        printf("\n");
    }
    if (hidden > 0) {
        printf("%ld object%s already linked (not listed; --all lists them).\n", hidden,
               hidden == 1 ? "" : "s");
    }
    printf("Totals: ");
    for (i = 0; i < RC_NACTIONS; i++) {
        printf("%s%s %ld", i ? ", " : "", reconnect_action_name((enum reconnect_action)i),
               p->totals[i]);
    }
    printf(".\n");
    if (p->read > 0 || p->unreadable > 0) {
        printf("Read %ld source object%s", p->read, p->read == 1 ? "" : "s");
        if (p->unreadable > 0) {
            printf(" (%ld could not be read)", p->unreadable);
        }
        if (p->unmatched_old > 0) {
            printf("; %ld vanished object%s matched no new one", p->unmatched_old,
                   p->unmatched_old == 1 ? "" : "s");
        }
        printf(".\n");
    }
    (void)cli;
    table_free(t);
    strbuf_release(&sb);
}

static int preview(struct cli *cli, struct rc_args *a)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct engine_opts opts;
    struct engine *eng = NULL;
    struct reconnect_opts o;
    struct reconnect_plan p;
    enum ids_err ret;
    int status = 0;

    reconnect_plan_init(&p);
    memset(&opts, 0, sizeof(opts));
    opts.progress = cli->progress;
    memset(&o, 0, sizeof(o));
    o.connector = a->connector;
    o.by = a->by;
    o.object = a->object;
    o.to = a->to;
    ret = engine_new(cli->cfg, cli->store, &opts, &eng, &err);
    if (ret == IDS_OK) {
        ret = reconnect_plan_make(eng, &o, &p, &err);
    }
    engine_free(eng);
    if (ret != IDS_OK) {
        status = ret == IDS_EUSAGE ? cli_usage_error(cli, "%s", err.msg)
                                   : cli_fail(cli, cli_status_for(ret), &err);
        goto done;
    }
    if (a->plan != NULL) {
        ret = write_plan(a->plan, &p, &err);
        if (ret != IDS_OK) {
            status = cli_fail(cli, EXIT_UNREACHABLE, &err);
            goto done;
        }
    }
    if (cli->json) {
        reconnect_plan_write(&p, stdout);
        goto done;
    }
    if (cli->quiet) {
        goto done;
    }
    print_plan(cli, &p, a->all);
    if (a->plan != NULL) {
        printf("Plan written to %s (fingerprint %s). Nothing was changed.\n"
               "Apply exactly this plan with: idsync reconnect --apply %s\n",
               a->plan, p.fingerprint, a->plan);
    } else {
        printf("Nothing was changed. Record this preview with --plan FILE, then apply it with "
               "--apply FILE.\n");
    }
done:
    reconnect_plan_release(&p);
    return status;
}

/* Read the plan's header and every row (reconnect_plan_open and
 * reconnect_plan_scan) from its mapping. A file cut short while it is read
 * raises SIGBUS when the mapping past its new end is touched: that is
 * reported as an error (what the interrupted parse held is not freed: the
 * command ends). */
static enum ids_err plan_read_guarded(struct reconnect_plan_reader *rd, struct plan_map *map,
                                      struct reconnect_plan *hdr, struct reconnect_picks *pk,
                                      struct ids_error *err)
{
    sigjmp_buf env;
    volatile enum ids_err ret = IDS_OK;

    if (sigsetjmp(env, 1) != 0) {
        fd_bus_catch(NULL);
        rd->done = true;
        return ids_error_set(err, IDS_EIO, "the file was cut short while it was read");
    }
    fd_bus_install();
    fd_bus_catch(&env);
    ret = reconnect_plan_open(rd, map->base, map->len, hdr, err);
    if (ret == IDS_OK) {
        ret = reconnect_plan_scan(rd, pk, err);
    }
    fd_bus_catch(NULL);
    return ret;
}

static int apply(struct cli *cli, struct rc_args *a)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct ids_error nerr = IDS_ERROR_INIT;
    struct engine_opts opts;
    struct engine *eng = NULL;
    struct reconnect_plan p;
    struct reconnect_plan_reader rd;
    struct plan_map map;
    struct reconnect_picks pk;
    struct run_record run;
    enum ids_err ret;
    int status;

    memset(&run, 0, sizeof(run));
    memset(&rd, 0, sizeof(rd));
    memset(&pk, 0, sizeof(pk));
    reconnect_plan_init(&p);
    /* the plan is read once, every row of it, before the store is locked:
     * a plan cut short or edited into nonsense is refused at once */
    ret = plan_map_open(&map, a->apply, &err);
    if (ret == IDS_OK) {
        rd.consumed = plan_map_consumed;
        rd.consumed_arg = &map;
        rd.fetch = plan_map_fetch;
        rd.name = a->apply;
        map.prog = progress_start(cli->progress, "reconnect: reading the plan", NULL, -1);
        ret = plan_read_guarded(&rd, &map, &p, &pk, &err);
        progress_end(map.prog);
        map.prog = NULL;
    }
    if (ret != IDS_OK) {
        if (map.base != NULL) {
            ids_error_prefix(&err, "%s", a->apply);
        }
        status = cli_fail(cli, EXIT_CONFIG, &err);
        goto done;
    }
    status = cli_lock(cli);
    if (status != 0) {
        goto done;
    }
    memset(&opts, 0, sizeof(opts));
    opts.progress = cli->progress;
    ret = engine_new(cli->cfg, cli->store, &opts, &eng, &err);
    if (ret != IDS_OK) {
        status = cli_fail(cli, cli_status_for(ret), &err);
        goto done;
    }
    ret = reconnect_apply_picks(eng, &p, &pk, &rd, &run, &err);
    engine_free(eng);
    /* a failure to notify is logged and noted in the run; it never fails it */
    if (run.id != 0 && notify_after_run(cli->cfg, cli->store, &run, &nerr) != IDS_OK) {
        struct run_record again;

        memset(&again, 0, sizeof(again));
        if (store_run_get(cli->store, run.id, &again, &nerr) == IDS_OK) {
            run_record_release(&run);
            run = again;
        }
    }
    cli_report_run(cli, ret, &err, &run, NULL);
    status = ret == IDS_EREJECTED ? EXIT_GUARD : engine_exit_code(ret, &run);
done:
    run_record_release(&run);
    reconnect_plan_reader_release(&rd);
    reconnect_picks_release(&pk);
    plan_map_close(&map);
    reconnect_plan_release(&p);
    return status;
}

int cmd_reconnect(struct cli *cli, int argc, char **argv)
{
    struct rc_args a;
    int status;

    memset(&a, 0, sizeof(a));
    strvec_init(&a.by);
    status = parse_args(cli, argc, argv, &a);
    if (status == RC_HELP_SHOWN) {
        strvec_clear(&a.by);
        return EXIT_OK;
    }
    if (status == 0) {
        status = cli_open_store(cli);
    }
    if (status == 0 && a.connector != NULL) {
        status = cli_require_connector(cli, a.connector);
    }
    if (status == 0) {
        status = a.apply != NULL ? apply(cli, &a) : preview(cli, &a);
    }
    strvec_clear(&a.by);
    return status;
}
