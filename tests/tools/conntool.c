/* conntool - drive one connector directly, for connector-level tests.
 *
 *   conntool -c CONFIG CONNECTOR check
 *   conntool -c CONFIG CONNECTOR read-full
 *   conntool -c CONFIG CONNECTOR read-changes [WATERMARK]
 *   conntool -c CONFIG CONNECTOR export < changes.jsonl
 *   conntool -c CONFIG CONNECTOR lookup TYPE ATTR VALUE
 *
 * Output is JSON lines on stdout:
 *   read:   {"op":"add","entry":{...}} | {"op":"modify"|"delete","change":{...}}
 *           | {"error":"bad-input","message":"..."}; last {"watermark":"..."}
 *   export: {"tag":N,"status":"ok"|code,"anchor":..,"dn":..,"message":..,"retryable":b}
 * Input of export: one change per line, as change_to_json() writes it
 * (values are strings or {"base64": "..."}; "reference": true sets ATTR_REF).
 * The tag of line N (1-based) is N. Exit status 0, or 1 with the error on
 * stderr. Not installed; tests only.
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "connector/connector.h"
#include "entry.h"
#include "util/codec.h"
#include "util/mem.h"
#include "util/banned.h"

static void die(const char *what, const struct ids_error *err)
{
    fprintf(stderr, "conntool: %s: %s (%s)\n", what, err->msg, ids_err_name(err->code));
    exit(1);
}

static void print_item(const struct read_item *item)
{
    struct strbuf sb = STRBUF_INIT;

    if (item->entry != NULL) {
        strbuf_addf(&sb, "{\"op\":\"%s\",\"entry\":", change_op_name(item->op));
        entry_to_json(item->entry, &sb);
    } else {
        strbuf_addf(&sb, "{\"op\":\"%s\",\"change\":", change_op_name(item->op));
        change_to_json(item->change, &sb);
    }
    strbuf_addstr(&sb, "}\n");
    fwrite(sb.buf, 1, sb.len, stdout);
    strbuf_release(&sb);
}

static int do_read(struct connector *c, bool full, const char *wm)
{
    struct connector_cursor *cur = NULL;
    struct ids_error err = IDS_ERROR_INIT;
    struct read_item item;
    struct strbuf sb = STRBUF_INIT;
    enum ids_err ret;

    ret = full ? connector_read_full(c, &cur, &err) : connector_read_changes(c, wm, &cur, &err);
    if (ret != IDS_OK) {
        printf("{\"error\":\"%s\",\"message\":", ids_err_name(ret));
        strbuf_add_json_str(&sb, err.msg, strlen(err.msg));
        printf("%s}\n", sb.buf);
        strbuf_release(&sb);
        return ret == IDS_EFULLREQUIRED ? 0 : 1;
    }
    for (;;) {
        ret = connector_cursor_next(c, cur, &item, &err);
        if (ret == IDS_DONE) {
            break;
        }
        if (ret == IDS_EINPUT) {
            strbuf_reset(&sb);
            strbuf_add_json_str(&sb, err.msg, strlen(err.msg));
            printf("{\"error\":\"bad-input\",\"message\":%s}\n", sb.buf);
            continue;
        }
        if (ret != IDS_OK) {
            die("read", &err);
        }
        print_item(&item);
        read_item_release(&item);
    }
    strbuf_reset(&sb);
    if (connector_cursor_watermark(c, cur, &sb, &err) != IDS_OK) {
        die("watermark", &err);
    }
    {
        struct strbuf js = STRBUF_INIT;

        strbuf_add_json_str(&js, sb.buf, sb.len);
        printf("{\"watermark\":%s}\n", js.buf);
        strbuf_release(&js);
    }
    connector_cursor_free(c, cur);
    strbuf_release(&sb);
    return 0;
}

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

static struct change *change_from_json(json_t *o)
{
    const char *op = jstr(o, "op");
    enum change_op cop = CHANGE_NONE;
    struct change *c;
    json_t *mods;
    size_t i;

    if (op == NULL) {
        return NULL;
    }
    if (strcmp(op, "add") == 0) {
        cop = CHANGE_ADD;
    } else if (strcmp(op, "modify") == 0) {
        cop = CHANGE_MODIFY;
    } else if (strcmp(op, "delete") == 0) {
        cop = CHANGE_DELETE;
    } else {
        return NULL;
    }
    c = change_new(cop, jstr(o, "type"), jstr(o, "anchor"), jstr(o, "dn"));
    c->new_dn = xstrdup_or_null(jstr(o, "new_dn"));
    mods = json_object_get(o, "mods");
    for (i = 0; json_is_array(mods) && i < json_array_size(mods); i++) {
        json_t *m = json_array_get(mods, i);
        const char *mop = jstr(m, "op");
        enum mod_op mo = MOD_REPLACE;
        json_t *vals = json_object_get(m, "values");
        struct mod *md;
        size_t k;

        if (mop && strcmp(mop, "add") == 0) {
            mo = MOD_ADD;
        } else if (mop && strcmp(mop, "delete") == 0) {
            mo = MOD_DELETE;
        }
        md = change_add_mod(c, mo, jstr(m, "attr") ? jstr(m, "attr") : "?",
                            json_is_true(json_object_get(m, "reference")) ? ATTR_REF : 0);
        if (json_is_true(json_object_get(m, "json"))) {
            md->attr.flags |= ATTR_JSON;
        }
        for (k = 0; json_is_array(vals) && k < json_array_size(vals); k++) {
            json_t *v = json_array_get(vals, k);

            if (json_is_string(v)) {
                attr_add_value(&md->attr, json_string_value(v), json_string_length(v));
            } else if (json_is_object(v) && jstr(v, "base64")) {
                struct strbuf raw = STRBUF_INIT;

                base64_decode(&raw, jstr(v, "base64"), strlen(jstr(v, "base64")));
                attr_add_value(&md->attr, raw.buf, raw.len);
                strbuf_release(&raw);
            } else if (json_is_object(v) || json_is_array(v)) {
                char *txt = json_dumps(v, JSON_COMPACT);

                attr_add_value(&md->attr, txt, strlen(txt));
                md->attr.flags |= ATTR_JSON;
                free(txt);
            }
        }
    }
    return c;
}

static void print_result(const struct export_result *r)
{
    struct strbuf sb = STRBUF_INIT;

    strbuf_addf(&sb, "{\"tag\":%llu,\"status\":\"%s\",\"anchor\":", (unsigned long long)r->tag,
                r->code == IDS_OK ? "ok" : ids_err_name(r->code));
    if (r->anchor) {
        strbuf_add_json_str(&sb, r->anchor, strlen(r->anchor));
    } else {
        strbuf_addstr(&sb, "null");
    }
    strbuf_addstr(&sb, ",\"dn\":");
    if (r->dn) {
        strbuf_add_json_str(&sb, r->dn, strlen(r->dn));
    } else {
        strbuf_addstr(&sb, "null");
    }
    strbuf_addstr(&sb, ",\"message\":");
    strbuf_add_json_str(&sb, r->err.msg, strlen(r->err.msg));
    strbuf_addf(&sb, ",\"retryable\":%s}\n", r->retryable ? "true" : "false");
    fwrite(sb.buf, 1, sb.len, stdout);
    fflush(stdout);
    strbuf_release(&sb);
}

static void drain(struct connector *c, bool block)
{
    struct export_result res;
    struct ids_error err = IDS_ERROR_INIT;
    enum ids_err ret;

    for (;;) {
        ret = connector_poll(c, block, &res, &err);
        if (ret == IDS_EAGAIN || ret == IDS_DONE) {
            return;
        }
        if (ret != IDS_OK) {
            die("poll", &err);
        }
        print_result(&res);
        export_result_release(&res);
    }
}

static int do_export(struct connector *c)
{
    struct ids_error err = IDS_ERROR_INIT;
    char *line = NULL;
    size_t cap = 0;
    uint64_t tag = 0;

    if (connector_export_begin(c, &err) != IDS_OK) {
        die("export_begin", &err);
    }
    while (getline(&line, &cap, stdin) > 0) {
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        struct change *ch;

        tag++;
        if (o == NULL) {
            fprintf(stderr, "conntool: line %llu: %s\n", (unsigned long long)tag, jerr.text);
            exit(1);
        }
        ch = change_from_json(o);
        json_decref(o);
        if (ch == NULL) {
            fprintf(stderr, "conntool: line %llu: not a change\n", (unsigned long long)tag);
            exit(1);
        }
        if (connector_submit(c, ch, tag, &err) != IDS_OK) {
            struct export_result r = {.tag = tag, .code = err.code, .err = err};

            print_result(&r);
        }
        change_free(ch);
        drain(c, false);
    }
    free(line);
    if (connector_export_end(c, &err) != IDS_OK) {
        die("export_end", &err);
    }
    drain(c, true);
    return 0;
}

int main(int argc, char **argv)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct config *cfg = NULL;
    struct connector_config *cc;
    struct connector *c = NULL;
    const char *path = NULL;
    int opt;
    int status = 0;

    signal(SIGPIPE, SIG_IGN); /* as idsync: a dropped connection is an error, not a kill */

    while ((opt = getopt(argc, argv, "c:")) != -1) {
        if (opt == 'c') {
            path = optarg;
        } else {
            return 2;
        }
    }
    if (path == NULL || argc - optind < 2) {
        fprintf(stderr, "usage: conntool -c CONFIG CONNECTOR check|read-full|read-changes "
                        "[WM]|export|lookup TYPE ATTR VALUE\n");
        return 2;
    }
    if (config_load(path, &cfg, &err) != IDS_OK) {
        die("config", &err);
    }
    cc = config_connector(cfg, argv[optind]);
    if (cc == NULL) {
        fprintf(stderr, "conntool: no connector %s\n", argv[optind]);
        return 1;
    }
    if (connector_create(cc, &c, &err) != IDS_OK) {
        die("create", &err);
    }
    if (connector_open(c, &err) != IDS_OK) {
        die("open", &err);
    }
    if (strcmp(argv[optind + 1], "check") == 0) {
        struct strbuf rep = STRBUF_INIT;

        if (connector_check(c, &rep, &err) != IDS_OK) {
            die("check", &err);
        }
        fwrite(rep.buf, 1, rep.len, stdout);
        strbuf_release(&rep);
    } else if (strcmp(argv[optind + 1], "read-full") == 0) {
        status = do_read(c, true, NULL);
    } else if (strcmp(argv[optind + 1], "read-changes") == 0) {
        status = do_read(c, false, argc - optind > 2 ? argv[optind + 2] : NULL);
    } else if (strcmp(argv[optind + 1], "export") == 0) {
        status = do_export(c);
    } else if (strcmp(argv[optind + 1], "lookup") == 0 && argc - optind == 5) {
        struct entry *e = NULL;
        enum ids_err ret =
            connector_lookup(c, argv[optind + 2], argv[optind + 3], argv[optind + 4], &e, &err);

        if (ret == IDS_ENOTFOUND) {
            printf("null\n");
        } else if (ret != IDS_OK) {
            die("lookup", &err);
        } else {
            struct strbuf sb = STRBUF_INIT;

            entry_to_json(e, &sb);
            printf("%s\n", sb.buf);
            strbuf_release(&sb);
            entry_free(e);
        }
    } else {
        fprintf(stderr, "conntool: unknown action %s\n", argv[optind + 1]);
        status = 2;
    }
    connector_close(c);
    config_free(cfg);
    return status;
}
