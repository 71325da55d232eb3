/* notify.c - collect a run's problems, keep only the new ones, and report
 * them by e-mail (libcurl SMTP) or webhook (JSON POST). See notify.h. */
#include "notify/notify.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util/codec.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/strvec.h"
#include "util/banned.h"

/* Errors read from the store per call. */
#define PAGE 500
/* Runs scanned to find the steps of a cycle. */
#define CHILD_SCAN_MAX 20000
/* Longest value (anchor, DN, reason) written into a report line. */
#define VALUE_MAX 400
/* Longest reason or run message written into a report. */
#define MESSAGE_MAX 4000
/* Cap of the stored seen set and digest queue (bytes). */
#define META_MAX (16u * 1024u * 1024u)

static int64_t now_us(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

/* ---- report ------------------------------------------------------------- */

void notify_problem_release(struct notify_problem *p)
{
    free(p->fingerprint);
    free(p->kind);
    free(p->step);
    free(p->connector);
    free(p->anchor);
    free(p->dn);
    free(p->attr);
    free(p->message);
    memset(p, 0, sizeof(*p));
}

void notify_report_init(struct notify_report *rep)
{
    memset(rep, 0, sizeof(*rep));
    strbuf_init(&rep->errors_cmd, 0);
    strvec_init(&rep->forget);
}

void notify_report_release(struct notify_report *rep)
{
    size_t i;

    for (i = 0; i < rep->nr; i++) {
        notify_problem_release(&rep->v[i]);
    }
    free(rep->v);
    free(rep->step);
    free(rep->connector);
    free(rep->run_message);
    strbuf_release(&rep->errors_cmd);
    strvec_clear(&rep->forget);
    memset(rep, 0, sizeof(*rep));
}

void notify_fingerprint(struct strbuf *out, bool run_level, const char *kind, const char *connector,
                        const char *anchor_or_step, const char *attr)
{
    struct strbuf key = STRBUF_INIT;
    struct strbuf lattr = STRBUF_INIT;
    uint64_t h;

    strbuf_addstr(&lattr, attr ? attr : "");
    strbuf_tolower(&lattr);
    strbuf_addf(&key, "%s\x1f%s\x1f%s\x1f%s\x1f%s", run_level ? "run" : "object", kind ? kind : "",
                connector ? connector : "", anchor_or_step ? anchor_or_step : "", lattr.buf);
    h = hash64(key.buf, key.len, 0x6e6f74696679ULL);
    strbuf_addf(out, "%016" PRIx64, h);
    strbuf_release(&key);
    strbuf_release(&lattr);
}

static struct notify_problem *report_add(struct notify_report *rep)
{
    struct notify_problem *p;

    ALLOC_GROW(rep->v, rep->nr + 1, rep->alloc);
    p = &rep->v[rep->nr++];
    memset(p, 0, sizeof(*p));
    return p;
}

/* "full-import" -> "import", "delta-sync" -> "sync": a guard stop of a full
 * import is over when any import of that connector succeeds. */
static const char *step_class(const char *step)
{
    if (step == NULL) {
        return "";
    }
    if (strcmp(step, "full-import") == 0 || strcmp(step, "delta-import") == 0) {
        return "import";
    }
    if (strcmp(step, "full-sync") == 0 || strcmp(step, "delta-sync") == 0) {
        return "sync";
    }
    return step;
}

static const char *const run_kinds[] = {"stopped-threshold", "stopped-error-limit", "failed",
                                        "rebuilt-source"};

static bool looks_rebuilt(const char *msg)
{
    return msg != NULL && strstr(msg, "looks rebuilt") != NULL;
}

/* The run-level problem of one run (a step, or a cycle without steps). */
static void collect_run_problem(struct notify_report *rep, const struct run_record *r)
{
    const char *kind = NULL;
    struct notify_problem *p;
    struct strbuf fp = STRBUF_INIT;
    size_t i;

    switch (r->status) {
    case RUN_STOPPED_THRESHOLD:
        kind = looks_rebuilt(r->message) ? "rebuilt-source" : "stopped-threshold";
        break;
    case RUN_STOPPED_ERROR_LIMIT:
        kind = "stopped-error-limit";
        break;
    case RUN_FAILED:
        kind = "failed";
        break;
    case RUN_SUCCESS:
    case RUN_COMPLETED_WITH_ERRORS:
        /* the step works again: its earlier stops may be mailed again */
        for (i = 0; i < ARRAY_SIZE(run_kinds); i++) {
            strbuf_reset(&fp);
            notify_fingerprint(&fp, true, run_kinds[i], r->connector, step_class(r->step), NULL);
            strvec_push(&rep->forget, fp.buf);
        }
        break;
    case RUN_RUNNING:
        break;
    }
    if (kind != NULL && rep->nr < NOTIFY_MAX_PROBLEMS) {
        p = report_add(rep);
        strbuf_reset(&fp);
        notify_fingerprint(&fp, true, kind, r->connector, step_class(r->step), NULL);
        p->fingerprint = xstrdup(fp.buf);
        p->kind = xstrdup(kind);
        p->run_level = true;
        p->run = r->id;
        p->step = xstrdup_or_null(r->step);
        p->connector = xstrdup_or_null(r->connector);
        p->message = xstrdup_or_null(r->message);
        rep->total_problems++;
    }
    strbuf_release(&fp);
}

static enum ids_err collect_errors(struct store *store, int64_t run, struct notify_report *rep,
                                   struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct strbuf fp = STRBUF_INIT;
    size_t offset = 0;

    for (;;) {
        struct run_error *errs = NULL;
        size_t n = 0;
        size_t i;

        ret = store_run_errors(store, run, offset, PAGE, &errs, &n, err);
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
            n = 0;
        }
        if (ret != IDS_OK) {
            break;
        }
        for (i = 0; i < n; i++) {
            struct run_error *e = &errs[i];

            rep->total_problems++;
            if (rep->nr < NOTIFY_MAX_PROBLEMS) {
                struct notify_problem *p = report_add(rep);

                strbuf_reset(&fp);
                notify_fingerprint(&fp, false, e->code, e->connector, e->anchor, e->attr);
                p->fingerprint = xstrdup(fp.buf);
                p->kind = xstrdup(e->code ? e->code : "error");
                p->run = run;
                p->connector = xstrdup_or_null(e->connector);
                p->anchor = xstrdup_or_null(e->anchor);
                p->dn = xstrdup_or_null(e->dn);
                p->attr = xstrdup_or_null(e->attr);
                p->message = xstrdup_or_null(e->message);
            }
            run_error_release(e);
        }
        free(errs);
        if (n < PAGE) {
            break;
        }
        offset += n;
    }
    strbuf_release(&fp);
    return ret;
}

enum ids_err notify_collect(struct store *store, const struct run_record *run,
                            struct notify_report *rep, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct run_record *kids = NULL;
    size_t nkids = 0;
    size_t akids = 0;
    int64_t before = 0;
    size_t scanned = 0;
    size_t i;

    rep->run = run->id;
    rep->step = xstrdup_or_null(run->step);
    rep->connector = xstrdup_or_null(run->connector);
    rep->status = run->status;
    rep->run_message = xstrdup_or_null(run->message);
    /* the steps of a cycle: runs newer than it whose parent it is */
    while (scanned < CHILD_SCAN_MAX) {
        struct run_record *list = NULL;
        size_t n = 0;
        bool past = false;

        ret = store_runs_list(store, before, PAGE, &list, &n, err);
        if (ret != IDS_OK) {
            goto done;
        }
        for (i = 0; i < n; i++) {
            if (list[i].id <= run->id) {
                past = true;
            } else if (list[i].parent == run->id) {
                ALLOC_GROW(kids, nkids + 1, akids);
                kids[nkids++] = list[i];
                memset(&list[i], 0, sizeof(list[i]));
            }
            before = list[i].id;
            run_record_release(&list[i]);
        }
        free(list);
        scanned += n;
        if (past || n < PAGE) {
            break;
        }
    }
    if (nkids == 0) {
        collect_run_problem(rep, run);
    }
    for (i = nkids; i > 0; i--) { /* oldest first */
        collect_run_problem(rep, &kids[i - 1]);
    }
    ret = collect_errors(store, run->id, rep, err);
    for (i = nkids; i > 0 && ret == IDS_OK; i--) {
        ret = collect_errors(store, kids[i - 1].id, rep, err);
    }
done:
    for (i = 0; i < nkids; i++) {
        run_record_release(&kids[i]);
    }
    free(kids);
    return ret;
}

/* ---- the seen set --------------------------------------------------------- */

struct seen {
    char fp[17];
    int64_t time; /* seconds */
};

static int cmp_seen(const void *pa, const void *pb)
{
    const struct seen *a = pa;
    const struct seen *b = pb;

    return strcmp(a->fp, b->fp);
}

static void seen_parse(const char *text, struct seen **out, size_t *nout)
{
    struct strvec lines = STRVEC_INIT;
    struct seen *v = NULL;
    size_t n = 0;
    size_t alloc = 0;
    size_t i;

    strvec_split(&lines, text, '\n', true);
    for (i = 0; i < lines.nr; i++) {
        const char *l = lines.v[i];
        char *end = NULL;
        long long t;

        if (strlen(l) < 18 || l[16] != ' ') {
            continue; /* not ours: ignore */
        }
        t = strtoll(l + 17, &end, 10);
        if (end == l + 17) {
            continue;
        }
        ALLOC_GROW(v, n + 1, alloc);
        memcpy(v[n].fp, l, 16);
        v[n].fp[16] = '\0';
        v[n].time = t;
        n++;
    }
    strvec_clear(&lines);
    if (n > 1) {
        qsort(v, n, sizeof(*v), cmp_seen);
    }
    *out = v;
    *nout = n;
}

static struct seen *seen_find(struct seen *v, size_t n, const char *fp)
{
    struct seen key;

    if (n == 0 || strlen(fp) != 16) {
        return NULL;
    }
    memcpy(key.fp, fp, 17);
    return bsearch(&key, v, n, sizeof(*v), cmp_seen);
}

struct fp_index {
    const char *fp;
    size_t i;
};

static int cmp_fp_index(const void *pa, const void *pb)
{
    const struct fp_index *a = pa;
    const struct fp_index *b = pb;
    int c = strcmp(a->fp, b->fp);

    if (c != 0) {
        return c;
    }
    return (a->i > b->i) - (a->i < b->i);
}

enum ids_err notify_filter_new(struct store *store, const struct run_record *run,
                               struct notify_report *rep, int64_t now, bool commit,
                               struct ids_error *err)
{
    enum ids_err ret;
    struct strbuf text = STRBUF_INIT;
    struct strbuf out = STRBUF_INIT;
    struct seen *v = NULL;
    struct fp_index *idx = NULL;
    bool *drop = NULL;
    size_t n = 0;
    size_t i;
    size_t k = 0;

    (void)run;
    ret = store_meta_get(store, NOTIFY_META_SEEN, &text, err);
    if (ret == IDS_ENOTFOUND) {
        ret = IDS_OK;
    }
    if (ret != IDS_OK) {
        goto done;
    }
    seen_parse(text.buf, &v, &n);
    /* duplicates inside the run (the same problem recorded twice) and
     * problems already seen are dropped; the seen ones are seen again now */
    idx = xcalloc(rep->nr ? rep->nr : 1, sizeof(*idx));
    drop = xcalloc(rep->nr ? rep->nr : 1, sizeof(*drop));
    for (i = 0; i < rep->nr; i++) {
        idx[i].fp = rep->v[i].fingerprint;
        idx[i].i = i;
    }
    if (rep->nr > 1) {
        qsort(idx, rep->nr, sizeof(*idx), cmp_fp_index);
    }
    for (i = 0; i < rep->nr; i++) {
        struct seen *s;

        if (i > 0 && strcmp(idx[i].fp, idx[i - 1].fp) == 0) {
            drop[idx[i].i] = true;
            continue;
        }
        s = seen_find(v, n, idx[i].fp);
        if (s != NULL) {
            s->time = now;
            drop[idx[i].i] = true;
            rep->already_reported++;
        }
    }
    for (i = 0; i < rep->nr; i++) {
        if (drop[i]) {
            notify_problem_release(&rep->v[i]);
            continue;
        }
        if (k != i) {
            rep->v[k] = rep->v[i];
            memset(&rep->v[i], 0, sizeof(rep->v[i]));
        }
        k++;
    }
    rep->nr = k;
    if (!commit) {
        goto done;
    }
    v = xreallocarray(v, n + rep->nr + 1, sizeof(*v));
    for (i = 0; i < rep->nr; i++) {
        if (strlen(rep->v[i].fingerprint) != 16) {
            continue;
        }
        memcpy(v[n].fp, rep->v[i].fingerprint, 17);
        v[n].time = now;
        n++;
    }
    if (n > 1) {
        qsort(v, n, sizeof(*v), cmp_seen);
    }
    for (i = 0; i < n; i++) {
        bool forget = now - v[i].time > NOTIFY_FORGET_SECONDS;

        if (i > 0 && strcmp(v[i].fp, v[i - 1].fp) == 0) {
            continue;
        }
        if (!forget && strvec_find(&rep->forget, v[i].fp, false) >= 0) {
            forget = true;
        }
        if (forget || out.len > META_MAX) {
            continue;
        }
        strbuf_addf(&out, "%s %" PRId64 "\n", v[i].fp, v[i].time);
    }
    ret = store_meta_set(store, NOTIFY_META_SEEN, out.buf, err);
done:
    free(v);
    free(idx);
    free(drop);
    strbuf_release(&text);
    strbuf_release(&out);
    return ret;
}

/* ---- text ------------------------------------------------------------------ */

/* A value on one line of a mail: control characters become spaces, values
 * longer than max bytes are cut. */
static void add_clean_max(struct strbuf *out, const char *s, size_t max)
{
    size_t i;
    size_t len;

    if (s == NULL) {
        strbuf_addch(out, '-');
        return;
    }
    len = strlen(s);
    if (!utf8_valid(s, len)) {
        for (i = 0; i < len && i < max; i++) {
            unsigned char c = (unsigned char)s[i];

            strbuf_addch(out, c >= 0x20 && c < 0x7f ? (int)c : '?');
        }
        return;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (i >= max && (c & 0xc0) != 0x80) {
            strbuf_addstr(out, "...");
            return;
        }
        strbuf_addch(out, c < 0x20 || c == 0x7f ? ' ' : (int)c);
    }
}

static void add_clean(struct strbuf *out, const char *s)
{
    add_clean_max(out, s, VALUE_MAX);
}

/* Counts per kind, most frequent first. */
struct kind_count {
    const char *kind;
    long n;
};

static int cmp_kind_count(const void *pa, const void *pb)
{
    const struct kind_count *a = pa;
    const struct kind_count *b = pb;

    if (a->n != b->n) {
        return a->n > b->n ? -1 : 1;
    }
    return strcmp(a->kind, b->kind);
}

static struct kind_count *count_kinds(const struct notify_report *rep, size_t *nout)
{
    struct kind_count *v = NULL;
    size_t n = 0;
    size_t alloc = 0;
    size_t i;
    size_t k;

    for (i = 0; i < rep->nr; i++) {
        for (k = 0; k < n; k++) {
            if (strcmp(v[k].kind, rep->v[i].kind) == 0) {
                break;
            }
        }
        if (k == n) {
            ALLOC_GROW(v, n + 1, alloc);
            v[n].kind = rep->v[i].kind;
            v[n].n = 0;
            n++;
        }
        v[k].n++;
    }
    if (n > 1) {
        qsort(v, n, sizeof(*v), cmp_kind_count);
    }
    *nout = n;
    return v;
}

static const struct notify_problem *first_run_problem(const struct notify_report *rep)
{
    const struct notify_problem *best = NULL;
    size_t i;

    for (i = 0; i < rep->nr; i++) {
        if (!rep->v[i].run_level) {
            continue;
        }
        if (best == NULL || strcmp(rep->v[i].kind, "rebuilt-source") == 0) {
            best = &rep->v[i];
        }
    }
    return best;
}

static size_t object_problems(const struct notify_report *rep)
{
    size_t i;
    size_t n = 0;

    for (i = 0; i < rep->nr; i++) {
        n += rep->v[i].run_level ? 0 : 1;
    }
    return n;
}

void notify_subject(const struct notify_report *rep, struct strbuf *out)
{
    const struct notify_problem *rp = first_run_problem(rep);
    size_t nobj = object_problems(rep);

    strbuf_addstr(out, "idsync: ");
    if (rp != NULL && strcmp(rp->kind, "rebuilt-source") == 0) {
        strbuf_addf(out, "%s%s%s stopped, the source looks rebuilt", rp->step ? rp->step : "run",
                    rp->connector ? " of " : "", rp->connector ? rp->connector : "");
    } else if (rp != NULL) {
        strbuf_addf(out, "%s%s%s %s", rp->step ? rp->step : "run", rp->connector ? " of " : "",
                    rp->connector ? rp->connector : "", rp->kind);
    } else {
        strbuf_addf(out, "%zu new problem%s", nobj, nobj == 1 ? "" : "s");
    }
    if (rp != NULL && nobj > 0) {
        strbuf_addf(out, ", %zu new problem%s", nobj, nobj == 1 ? "" : "s");
    }
    if (rep->digest) {
        strbuf_addstr(out, " (digest)");
    } else {
        strbuf_addf(out, " in run %" PRId64, rep->run);
    }
    if (rep->step != NULL && !rep->digest) {
        strbuf_addf(out, " (%s)", rep->step);
    }
}

static bool is_ascii(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s >= 0x80) {
            return false;
        }
    }
    return true;
}

/* A header value: RFC 2047 B-encoding when not plain ASCII. */
static void add_header_text(struct strbuf *out, const char *s)
{
    struct strbuf clean = STRBUF_INIT;

    add_clean(&clean, s);
    if (is_ascii(clean.buf)) {
        strbuf_addbuf(out, &clean);
    } else {
        strbuf_addstr(out, "=?UTF-8?B?");
        base64_encode(out, clean.buf, clean.len);
        strbuf_addstr(out, "?=");
    }
    strbuf_release(&clean);
}

/* RFC 5322 date in UTC (the C locale's day and month names). */
static void add_date(struct strbuf *out, int64_t us)
{
    char buf[64];
    time_t t = (time_t)(us / 1000000);
    struct tm tm;

    if (us <= 0 || gmtime_r(&t, &tm) == NULL ||
        strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S +0000", &tm) == 0) {
        strbuf_addch(out, '-');
        return;
    }
    strbuf_addstr(out, buf);
}

/* Append text wrapped at about 76 columns: the first line starts with
 * `first`, the others with `indent`. */
static void add_wrapped2(struct strbuf *out, const char *text, const char *first,
                         const char *indent)
{
    struct strbuf clean = STRBUF_INIT;
    struct strvec words = STRVEC_INIT;
    size_t col = 0;
    size_t i;

    add_clean_max(&clean, text, MESSAGE_MAX);
    strvec_split(&words, clean.buf, ' ', true);
    for (i = 0; i < words.nr; i++) {
        size_t w = strlen(words.v[i]);

        if (col == 0) {
            strbuf_addstr(out, first);
            col = strlen(first);
        } else if (col + 1 + w > 76) {
            strbuf_addstr(out, "\r\n");
            strbuf_addstr(out, indent);
            col = strlen(indent);
        } else {
            strbuf_addch(out, ' ');
            col++;
        }
        strbuf_addstr(out, words.v[i]);
        col += w;
    }
    if (col > 0) {
        strbuf_addstr(out, "\r\n");
    }
    strvec_clear(&words);
    strbuf_release(&clean);
}

static void add_wrapped(struct strbuf *out, const char *text, const char *indent)
{
    add_wrapped2(out, text, indent, indent);
}

static void add_body(const struct notify_report *rep, struct strbuf *out)
{
    struct kind_count *kc;
    size_t nk = 0;
    size_t i;
    size_t listed = 0;
    size_t nobj = object_problems(rep);
    struct strbuf line = STRBUF_INIT;

    if (rep->digest) {
        strbuf_addf(out, "idsync found %zu new problem%s since its last report.\r\n\r\n", rep->nr,
                    rep->nr == 1 ? "" : "s");
    } else {
        strbuf_addf(out, "idsync found %zu new problem%s in run %" PRId64 " (%s, %s).\r\n\r\n",
                    rep->nr, rep->nr == 1 ? "" : "s", rep->run, rep->step ? rep->step : "run",
                    run_status_name(rep->status));
    }
    for (i = 0; i < rep->nr; i++) {
        const struct notify_problem *p = &rep->v[i];

        if (!p->run_level) {
            continue;
        }
        strbuf_reset(&line);
        strbuf_addf(&line, "%s%s%s (run %" PRId64 "): %s.", p->step ? p->step : "run",
                    p->connector ? " of " : "", p->connector ? p->connector : "", p->run,
                    strcmp(p->kind, "rebuilt-source") == 0 ? "stopped, the source looks rebuilt"
                                                           : p->kind);
        add_wrapped(out, line.buf, "");
        if (p->message != NULL) {
            add_wrapped(out, p->message, "  ");
        }
        strbuf_addstr(out, "\r\n");
    }
    if (!rep->digest && rep->already_reported > 0) {
        strbuf_addf(out,
                    "The run had %ld problems in all; %ld of them were reported before and are "
                    "not repeated.\r\n\r\n",
                    rep->total_problems, rep->already_reported);
    }
    if (nobj > 0) {
        kc = count_kinds(rep, &nk);
        strbuf_addstr(out, "New object problems by kind:\r\n");
        for (i = 0; i < nk; i++) {
            bool run_kind = false;
            size_t j;

            for (j = 0; j < rep->nr && !run_kind; j++) {
                run_kind = rep->v[j].run_level && rep->v[j].kind == kc[i].kind;
            }
            if (!run_kind) {
                strbuf_addf(out, "  %-32s %ld\r\n", kc[i].kind, kc[i].n);
            }
        }
        free(kc);
        strbuf_addf(out, "\r\nFirst objects:\r\n");
        for (i = 0; i < rep->nr && listed < NOTIFY_MAX_LISTED; i++) {
            const struct notify_problem *p = &rep->v[i];

            if (p->run_level) {
                continue;
            }
            listed++;
            strbuf_addf(out, "%zu. %s in ", listed, p->kind);
            add_clean(out, p->connector);
            strbuf_addstr(out, "\r\n   anchor:    ");
            add_clean(out, p->anchor);
            strbuf_addstr(out, "\r\n   DN:        ");
            add_clean(out, p->dn);
            strbuf_addstr(out, "\r\n   attribute: ");
            add_clean(out, p->attr);
            strbuf_addstr(out, "\r\n");
            if (p->message != NULL) {
                add_wrapped2(out, p->message, "   reason:    ", "              ");
            }
        }
        if (nobj > listed) {
            strbuf_addf(out, "... and %zu more.\r\n", nobj - listed);
        }
        strbuf_addstr(out, "\r\n");
    }
    if (rep->errors_cmd.len > 0) {
        strbuf_addstr(out, "See every problem of the run with:\r\n\r\n  ");
        strbuf_addbuf(out, &rep->errors_cmd);
        strbuf_addstr(out, "\r\n\r\n");
    }
    strbuf_addstr(out, "Problems already reported are not mailed again while they last.\r\n");
    strbuf_release(&line);
}

/* The address inside "Name <addr>", or the whole text. */
static void mail_address(struct strbuf *out, const char *s)
{
    const char *lt = strrchr(s, '<');
    const char *gt = lt ? strchr(lt, '>') : NULL;

    if (lt != NULL && gt != NULL) {
        strbuf_add(out, lt + 1, (size_t)(gt - lt - 1));
    } else {
        strbuf_addstr(out, s);
    }
    strbuf_trim(out);
}

void notify_build_mail(const struct notify_config *nc, const char *config_path,
                       const struct notify_report *rep, int64_t now, struct strbuf *out)
{
    struct strbuf subject = STRBUF_INIT;
    struct strbuf addr = STRBUF_INIT;
    char host[256];
    size_t i;

    (void)config_path;
    if (gethostname(host, sizeof(host)) != 0) {
        snprintf(host, sizeof(host), "localhost");
    }
    host[sizeof(host) - 1] = '\0';
    notify_subject(rep, &subject);
    strbuf_addstr(out, "From: ");
    add_header_text(out, nc->from ? nc->from : "idsync");
    strbuf_addstr(out, "\r\nTo: ");
    for (i = 0; i < nc->to.nr; i++) {
        strbuf_addstr(out, i ? ",\r\n " : "");
        add_header_text(out, nc->to.v[i]);
    }
    strbuf_addstr(out, "\r\nSubject: ");
    add_header_text(out, subject.buf);
    strbuf_addstr(out, "\r\nDate: ");
    add_date(out, now);
    strbuf_addf(out, "\r\nMessage-ID: <idsync.%" PRId64 ".%" PRId64 "@", rep->run, now);
    mail_address(&addr, host);
    for (i = 0; i < addr.len; i++) {
        char c = addr.buf[i];

        strbuf_addch(out, (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                  (c >= '0' && c <= '9') || c == '.' || c == '-'
                              ? c
                              : '-');
    }
    strbuf_addstr(out, ">\r\n");
    strbuf_addstr(out, "MIME-Version: 1.0\r\n"
                       "Content-Type: text/plain; charset=UTF-8\r\n"
                       "Content-Transfer-Encoding: 8bit\r\n"
                       "Auto-Submitted: auto-generated\r\n");
    strbuf_addf(out, "X-Idsync-Run: %" PRId64 "\r\n\r\n", rep->run);
    add_body(rep, out);
    strbuf_release(&subject);
    strbuf_release(&addr);
}

static json_t *jstr(const char *s)
{
    struct strbuf sb = STRBUF_INIT;
    json_t *j;

    if (s == NULL) {
        return json_null();
    }
    if (utf8_valid(s, strlen(s))) {
        return json_string(s);
    }
    add_clean(&sb, s);
    j = json_string(sb.buf);
    strbuf_release(&sb);
    return j;
}

void notify_build_json(const struct notify_report *rep, struct strbuf *out)
{
    json_t *doc = json_object();
    json_t *run = json_object();
    json_t *arr = json_array();
    struct strbuf subject = STRBUF_INIT;
    char *text;
    size_t i;

    notify_subject(rep, &subject);
    json_object_set_new(doc, "event", json_string("idsync.problems"));
    json_object_set_new(doc, "subject", jstr(subject.buf));
    json_object_set_new(run, "id", json_integer(rep->run));
    json_object_set_new(run, "step", jstr(rep->step));
    json_object_set_new(run, "connector", jstr(rep->connector));
    json_object_set_new(run, "status", json_string(run_status_name(rep->status)));
    json_object_set_new(run, "message", jstr(rep->run_message));
    json_object_set_new(doc, "run", run);
    json_object_set_new(doc, "digest", json_boolean(rep->digest));
    json_object_set_new(doc, "total_problems", json_integer(rep->total_problems));
    json_object_set_new(doc, "new_problems", json_integer((json_int_t)rep->nr));
    for (i = 0; i < rep->nr; i++) {
        const struct notify_problem *p = &rep->v[i];
        json_t *o = json_object();

        json_object_set_new(o, "kind", jstr(p->kind));
        json_object_set_new(o, "run_level", json_boolean(p->run_level));
        json_object_set_new(o, "run", json_integer(p->run));
        json_object_set_new(o, "step", jstr(p->step));
        json_object_set_new(o, "connector", jstr(p->connector));
        json_object_set_new(o, "anchor", jstr(p->anchor));
        json_object_set_new(o, "dn", jstr(p->dn));
        json_object_set_new(o, "attr", jstr(p->attr));
        json_object_set_new(o, "message", jstr(p->message));
        json_object_set_new(o, "fingerprint", jstr(p->fingerprint));
        json_array_append_new(arr, o);
    }
    json_object_set_new(doc, "problems", arr);
    json_object_set_new(doc, "command", jstr(rep->errors_cmd.len ? rep->errors_cmd.buf : NULL));
    text = json_dumps(doc, JSON_COMPACT);
    if (text != NULL) {
        strbuf_addstr(out, text);
        free(text);
    }
    json_decref(doc);
    strbuf_release(&subject);
}

/* ---- sending ----------------------------------------------------------------- */

struct upload {
    const char *data;
    size_t len;
    size_t pos;
};

static size_t on_read(char *buf, size_t size, size_t nitems, void *userp)
{
    struct upload *u = userp;
    size_t room = size * nitems;
    size_t n = u->len - u->pos;

    if (n > room) {
        n = room;
    }
    memcpy(buf, u->data + u->pos, n);
    u->pos += n;
    return n;
}

static size_t on_discard(char *buf, size_t size, size_t nitems, void *userp)
{
    (void)buf;
    (void)userp;
    return size * nitems;
}

/* "env:NAME" or "file:PATH" -> the secret (never logged). */
static enum ids_err read_secret(const char *src, struct strbuf *out, struct ids_error *err)
{
    if (strncmp(src, "env:", 4) == 0) {
        const char *v = getenv(src + 4);

        if (v == NULL || *v == '\0') {
            return ids_error_set(err, IDS_ECONFIG,
                                 "notify.password: environment variable %s is not set", src + 4);
        }
        strbuf_addstr(out, v);
        return IDS_OK;
    }
    if (strncmp(src, "file:", 5) == 0) {
        enum ids_err ret;

        out->max = 4096;
        ret = strbuf_read_file(out, src + 5, err);
        while (out->len > 0 && (out->buf[out->len - 1] == '\n' || out->buf[out->len - 1] == '\r')) {
            strbuf_setlen(out, out->len - 1);
        }
        if (ret != IDS_OK) {
            ids_error_prefix(err, "notify.password_file");
        }
        return ret;
    }
    return ids_error_set(err, IDS_ECONFIG, "notify.password: unknown secret source");
}

static void tls_options(CURL *h, const struct notify_config *nc)
{
    if (!nc->tls_verify) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (nc->ca_file != NULL) {
        curl_easy_setopt(h, CURLOPT_CAINFO, nc->ca_file);
    }
}

static enum ids_err send_mail(const struct notify_config *nc, const char *config_path,
                              const struct notify_report *rep, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    CURL *h = NULL;
    CURLcode rc;
    struct curl_slist *rcpt = NULL;
    struct strbuf msg = STRBUF_INIT;
    struct strbuf from = STRBUF_INIT;
    struct strbuf addr = STRBUF_INIT;
    struct strbuf pw = STRBUF_INIT;
    struct upload up;
    char ebuf[CURL_ERROR_SIZE];
    size_t i;

    notify_build_mail(nc, config_path, rep, now_us(), &msg);
    h = curl_easy_init();
    if (h == NULL) {
        ret = ids_error_set(err, IDS_EINTERNAL, "mail: curl_easy_init failed");
        goto done;
    }
    ebuf[0] = '\0';
    strbuf_addch(&from, '<');
    mail_address(&addr, nc->from ? nc->from : "");
    strbuf_addbuf(&from, &addr);
    strbuf_addch(&from, '>');
    for (i = 0; i < nc->to.nr; i++) {
        strbuf_reset(&addr);
        strbuf_addch(&addr, '<');
        {
            struct strbuf a = STRBUF_INIT;

            mail_address(&a, nc->to.v[i]);
            strbuf_addbuf(&addr, &a);
            strbuf_release(&a);
        }
        strbuf_addch(&addr, '>');
        rcpt = curl_slist_append(rcpt, addr.buf);
    }
    up.data = msg.buf;
    up.len = msg.len;
    up.pos = 0;
    curl_easy_setopt(h, CURLOPT_URL, nc->smtp);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(h, CURLOPT_MAIL_FROM, from.buf);
    curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(h, CURLOPT_READDATA, &up);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)msg.len);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
    /* STARTTLS whenever the server offers it; required before a password */
    curl_easy_setopt(h, CURLOPT_USE_SSL,
                     nc->username != NULL ? (long)CURLUSESSL_ALL : (long)CURLUSESSL_TRY);
    tls_options(h, nc);
    if (nc->username != NULL) {
        curl_easy_setopt(h, CURLOPT_USERNAME, nc->username);
        if (nc->password_secret != NULL) {
            ret = read_secret(nc->password_secret, &pw, err);
            if (ret != IDS_OK) {
                goto done;
            }
            curl_easy_setopt(h, CURLOPT_PASSWORD, pw.buf);
        }
    }
    rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        long code = 0;

        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        ret = ids_error_set_detail(err, IDS_EUNREACHABLE, (int)code,
                                   "mail to %s through %s failed: %s%s%s", nc->to.v[0], nc->smtp,
                                   curl_easy_strerror(rc), ebuf[0] ? ": " : "", ebuf);
    }
done:
    if (pw.len > 0) {
        memset(pw.buf, 0, pw.len);
    }
    strbuf_release(&pw);
    curl_slist_free_all(rcpt);
    if (h != NULL) {
        curl_easy_cleanup(h);
    }
    strbuf_release(&msg);
    strbuf_release(&from);
    strbuf_release(&addr);
    return ret;
}

static enum ids_err send_webhook(const struct notify_config *nc, const struct notify_report *rep,
                                 struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    CURL *h = NULL;
    CURLcode rc;
    struct curl_slist *hdrs = NULL;
    struct strbuf body = STRBUF_INIT;
    char ebuf[CURL_ERROR_SIZE];
    long status = 0;

    notify_build_json(rep, &body);
    h = curl_easy_init();
    if (h == NULL) {
        ret = ids_error_set(err, IDS_EINTERNAL, "webhook: curl_easy_init failed");
        goto done;
    }
    ebuf[0] = '\0';
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "User-Agent: idsync");
    curl_easy_setopt(h, CURLOPT_URL, nc->webhook);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.buf);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.len);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_discard);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
    tls_options(h, nc);
    rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        ret = ids_error_set(err, IDS_EUNREACHABLE, "webhook %s failed: %s%s%s", nc->webhook,
                            curl_easy_strerror(rc), ebuf[0] ? ": " : "", ebuf);
        goto done;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299) {
        ret = ids_error_set_detail(err, IDS_EREJECTED, (int)status, "webhook %s answered HTTP %ld",
                                   nc->webhook, status);
    }
done:
    curl_slist_free_all(hdrs);
    if (h != NULL) {
        curl_easy_cleanup(h);
    }
    strbuf_release(&body);
    return ret;
}

enum ids_err notify_send(const struct notify_config *nc, const char *config_path,
                         const struct notify_report *rep, struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    enum ids_err r2;
    struct ids_error e2 = IDS_ERROR_INIT;

    if (nc->smtp != NULL && nc->to.nr > 0) {
        ret = send_mail(nc, config_path, rep, err);
    }
    if (nc->webhook != NULL) {
        r2 = send_webhook(nc, rep, &e2);
        if (r2 != IDS_OK && ret == IDS_OK) {
            ret = r2;
            if (err != NULL) {
                *err = e2;
            }
        } else if (r2 != IDS_OK && err != NULL) {
            /* both failed: say both */
            struct strbuf sb = STRBUF_INIT;

            strbuf_addf(&sb, "%s; %s", err->msg, e2.msg);
            ids_error_set(err, ret, "%s", sb.buf);
            strbuf_release(&sb);
        }
    }
    return ret;
}

/* ---- the digest queue ----------------------------------------------------------- */

static void queue_append(struct strbuf *q, const struct notify_report *rep)
{
    size_t i;

    for (i = 0; i < rep->nr && q->len < META_MAX; i++) {
        const struct notify_problem *p = &rep->v[i];
        json_t *o = json_object();
        char *text;

        json_object_set_new(o, "fingerprint", jstr(p->fingerprint));
        json_object_set_new(o, "kind", jstr(p->kind));
        json_object_set_new(o, "run_level", json_boolean(p->run_level));
        json_object_set_new(o, "run", json_integer(p->run));
        json_object_set_new(o, "step", jstr(p->step));
        json_object_set_new(o, "connector", jstr(p->connector));
        json_object_set_new(o, "anchor", jstr(p->anchor));
        json_object_set_new(o, "dn", jstr(p->dn));
        json_object_set_new(o, "attr", jstr(p->attr));
        json_object_set_new(o, "message", jstr(p->message));
        text = json_dumps(o, JSON_COMPACT);
        if (text != NULL) {
            strbuf_addstr(q, text);
            strbuf_addch(q, '\n');
            free(text);
        }
        json_decref(o);
    }
}

static char *jdup(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s ? xstrdup(s) : NULL;
}

static void queue_load(const char *text, struct notify_report *rep)
{
    struct strvec lines = STRVEC_INIT;
    size_t i;

    strvec_split(&lines, text, '\n', true);
    for (i = 0; i < lines.nr && rep->nr < NOTIFY_MAX_PROBLEMS; i++) {
        json_error_t jerr;
        json_t *o = json_loads(lines.v[i], 0, &jerr);
        struct notify_problem *p;

        if (o == NULL || !json_is_object(o)) {
            json_decref(o);
            continue;
        }
        p = report_add(rep);
        p->fingerprint = jdup(o, "fingerprint");
        p->kind = jdup(o, "kind");
        if (p->kind == NULL) {
            p->kind = xstrdup("error");
        }
        p->run_level = json_is_true(json_object_get(o, "run_level"));
        p->run = json_integer_value(json_object_get(o, "run"));
        p->step = jdup(o, "step");
        p->connector = jdup(o, "connector");
        p->anchor = jdup(o, "anchor");
        p->dn = jdup(o, "dn");
        p->attr = jdup(o, "attr");
        p->message = jdup(o, "message");
        rep->total_problems++;
        json_decref(o);
    }
    strvec_clear(&lines);
}

/* ---- the hook ----------------------------------------------------------------- */

/* Append a sentence to the run's message in run history. */
static void note_in_run(struct store *store, int64_t id, const char *text)
{
    struct run_record r;
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf msg = STRBUF_INIT;

    memset(&r, 0, sizeof(r));
    if (store_run_get(store, id, &r, &err) != IDS_OK) {
        log_error("notify", "run=%" PRId64 " error=\"cannot read the run: %s\"", id, err.msg);
        return;
    }
    if (r.message != NULL && r.message[0] != '\0') {
        strbuf_addf(&msg, "%s ", r.message);
    }
    strbuf_addstr(&msg, text);
    free(r.message);
    r.message = strbuf_detach(&msg, NULL);
    if (store_run_finish(store, &r, &err) != IDS_OK) {
        log_error("notify", "run=%" PRId64 " error=\"cannot update the run: %s\"", id, err.msg);
    }
    run_record_release(&r);
}

static void errors_command(const struct config *cfg, int64_t run, struct strbuf *out)
{
    strbuf_reset(out);
    strbuf_addstr(out, "idsync ");
    if (cfg->path != NULL) {
        strbuf_addf(out, "-c %s ", cfg->path);
    }
    strbuf_addf(out, "errors %" PRId64, run);
}

enum ids_err notify_after_run(struct config *cfg, struct store *store, const struct run_record *run,
                              struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    const struct notify_config *nc = &cfg->notify;
    struct notify_report rep;
    struct notify_report digest;
    struct strbuf q = STRBUF_INIT;
    struct strbuf last = STRBUF_INIT;
    struct strbuf note = STRBUF_INIT;
    struct ids_error serr = IDS_ERROR_INIT;
    int64_t now = now_us();
    bool send_now = false;
    const struct notify_report *to_send = &rep;

    notify_report_init(&rep);
    notify_report_init(&digest);
    if (run == NULL || run->id == 0 || run->dry_run ||
        ((nc->smtp == NULL || nc->to.nr == 0) && nc->webhook == NULL)) {
        goto done;
    }
    ret = notify_collect(store, run, &rep, err);
    if (ret != IDS_OK) {
        goto done;
    }
    errors_command(cfg, run->id, &rep.errors_cmd);
    ret = notify_filter_new(store, run, &rep, now / 1000000, nc->digest_seconds > 0, err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (nc->digest_seconds <= 0) {
        if (rep.nr == 0) {
            goto done; /* nothing new: the seen set was not even rewritten */
        }
        send_now = true;
    } else {
        /* queue the new problems; send everything queued once per interval */
        int64_t last_sent = 0;

        ret = store_meta_get(store, NOTIFY_META_DIGEST, &q, err);
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
        }
        if (ret == IDS_OK) {
            ret = store_meta_get(store, NOTIFY_META_LAST_SENT, &last, err);
        }
        if (ret == IDS_ENOTFOUND) {
            ret = IDS_OK;
        }
        if (ret != IDS_OK) {
            goto done;
        }
        last_sent = strtoll(last.buf, NULL, 10);
        queue_append(&q, &rep);
        if (q.len > 0 && now / 1000000 - last_sent >= nc->digest_seconds) {
            queue_load(q.buf, &digest);
            digest.run = run->id;
            digest.step = xstrdup_or_null(run->step);
            digest.status = run->status;
            digest.digest = true;
            strbuf_addbuf(&digest.errors_cmd, &rep.errors_cmd);
            to_send = &digest;
            send_now = digest.nr > 0;
        }
        if (!send_now) {
            ret = store_meta_set(store, NOTIFY_META_DIGEST, q.buf, err);
            goto done;
        }
    }
    ret = notify_send(nc, cfg->path, to_send, &serr);
    if (ret != IDS_OK) {
        log_error("notify", "run=%" PRId64 " error=\"%s\"", run->id, serr.msg);
        strbuf_addf(&note, "Notifying the administrators failed: %s.", serr.msg);
        note_in_run(store, run->id, note.buf);
        if (err != NULL) {
            *err = serr;
        }
        if (nc->digest_seconds > 0) {
            /* keep the queue for the next attempt */
            struct ids_error e3 = IDS_ERROR_INIT;

            if (store_meta_set(store, NOTIFY_META_DIGEST, q.buf, &e3) != IDS_OK) {
                log_error("notify", "error=\"cannot keep the digest queue: %s\"", e3.msg);
            }
        }
        goto done;
    }
    log_info("notify", "run=%" PRId64 " problems=%zu", run->id, to_send->nr);
    if (nc->digest_seconds > 0) {
        strbuf_reset(&last);
        strbuf_addf(&last, "%" PRId64, now / 1000000);
        ret = store_meta_set(store, NOTIFY_META_DIGEST, "", err);
        if (ret == IDS_OK) {
            ret = store_meta_set(store, NOTIFY_META_LAST_SENT, last.buf, err);
        }
    } else {
        /* sent: remember these problems (a failed send leaves them new) */
        notify_report_release(&rep);
        notify_report_init(&rep);
        ret = notify_collect(store, run, &rep, err);
        if (ret == IDS_OK) {
            ret = notify_filter_new(store, run, &rep, now / 1000000, true, err);
        }
    }
done:
    notify_report_release(&rep);
    notify_report_release(&digest);
    strbuf_release(&q);
    strbuf_release(&last);
    strbuf_release(&note);
    return ret;
}
