/* fingerprint.c - hashes of the parts of the configuration whose change
 * needs a full import (a connector's scope) or a full sync (the rules).
 *
 * The text hashed is a canonical dump: every field named, in configuration
 * order (order matters for join rules and flow precedence), each value
 * length-prefixed so that no two configurations produce the same text.
 */
#include "engine/engine.h"

#include <inttypes.h>
#include <string.h>

#include "util/codec.h"
#include "util/log.h"
#include "util/banned.h"

static void put(struct strbuf *sb, const char *key, const char *val)
{
    size_t len = val ? strlen(val) : 0;

    strbuf_addf(sb, "%s:%c%zu:", key, val ? 's' : 'n', len);
    if (val) {
        strbuf_add(sb, val, len);
    }
    strbuf_addch(sb, '\n');
}

static void put_long(struct strbuf *sb, const char *key, long n)
{
    strbuf_addf(sb, "%s:i%ld\n", key, n);
}

/* Options that choose how to reach a system, not what is read from it. */
static bool connection_option(const struct config_option *opt)
{
    static const char *const words[] = {"url",  "uri",       "password",       "token", "secret",
                                        "bind", "timeout",   "retr",           "tls",   "ca_file",
                                        "cert", "key_file",  "window",         "page",  "batch",
                                        "rate", "username",  "concurrency",    "http2", "patch",
                                        "auth", "client_id", "create_parents", NULL};
    size_t i;

    if (opt == NULL || opt->type == OPT_SECRET) {
        return true;
    }
    for (i = 0; words[i] != NULL; i++) {
        if (strstr(opt->key, words[i]) != NULL) {
            return true;
        }
    }
    return false;
}

static void put_values(struct strbuf *sb, const struct config_values *vals)
{
    size_t i;
    size_t j;

    for (i = 0; i < vals->nr; i++) {
        const struct config_value *v = &vals->v[i];

        if (connection_option(v->opt)) {
            continue;
        }
        put(sb, "opt", v->opt->key);
        put(sb, "str", v->str);
        put_long(sb, "num", v->num);
        for (j = 0; j < v->list.nr; j++) {
            put(sb, "item", v->list.v[j]);
        }
    }
}

static void finish(struct strbuf *text, struct strbuf *out)
{
    strbuf_addf(out, "%016" PRIx64, hash64(text->buf, text->len, 0x1d5c));
}

void engine_fingerprint_connector(const struct connector_config *cc, struct strbuf *out)
{
    struct strbuf text = STRBUF_INIT;
    struct strvec attrs = STRVEC_INIT;
    size_t i;
    size_t j;
    size_t k;

    put(&text, "type", cc->type);
    put_values(&text, &cc->opts);
    for (i = 0; i < cc->nobjects; i++) {
        const struct object_type_config *ot = &cc->objects[i];

        put(&text, "object", ot->name);
        put(&text, "filter", ot->filter);
        /* the attribute list is a set: its order does not change what is read */
        for (j = 0; j < ot->attributes.nr; j++) {
            strvec_push(&attrs, ot->attributes.v[j]);
        }
        strvec_sort(&attrs);
        for (j = 0; j < attrs.nr; j++) {
            put(&text, "attr", attrs.v[j]);
        }
        strvec_clear(&attrs);
        for (j = 0; j < ot->nrefs; j++) {
            put(&text, "ref", ot->refs[j].attr);
            for (k = 0; k < ot->refs[j].types.nr; k++) {
                put(&text, "to", ot->refs[j].types.v[k]);
            }
        }
        put_values(&text, &ot->opts);
    }
    finish(&text, out);
    strbuf_release(&text);
}

static void put_item(struct strbuf *sb, const char *what, const struct rule_item *it)
{
    put(sb, what, it->attr);
    put(sb, "expr", it->source);
}

static void put_flow(struct strbuf *sb, const char *dir, const struct flow_config *f)
{
    size_t i;
    size_t j;

    put(sb, dir, f->connector);
    put(sb, "object", f->object);
    put(sb, "scope", f->scope.source);
    for (i = 0; i < f->njoins; i++) {
        put_long(sb, "join", (long)i);
        for (j = 0; j < f->joins[i].nitems; j++) {
            put_item(sb, "cond", &f->joins[i].items[j]);
        }
    }
    for (i = 0; i < f->nflows; i++) {
        put_item(sb, "flow", &f->flows[i]);
    }
    put_long(sb, "project", f->project);
    put_long(sb, "provision", f->provision);
    put_long(sb, "deprovision", (long)f->deprovision);
    put(sb, "carrier", f->anchor_carrier);
    put(sb, "disable_attr", f->disable_attr);
    put(sb, "disable_value", f->disable_value);
    put(sb, "disable_move_to", f->disable_move_to);
    /* initial flows are left out: they act on creates only, and a change
     * of them needs no object synced again */
}

void engine_fingerprint_rules(const struct config *cfg, struct strbuf *out)
{
    struct strbuf text = STRBUF_INIT;
    size_t i;
    size_t j;

    for (i = 0; i < cfg->nmv_types; i++) {
        const struct mv_type_config *mt = &cfg->mv_types[i];

        put(&text, "mv", mt->name);
        for (j = 0; j < mt->nfrom; j++) {
            put_flow(&text, "from", &mt->from[j]);
        }
        for (j = 0; j < mt->nto; j++) {
            put_flow(&text, "to", &mt->to[j]);
        }
    }
    finish(&text, out);
    strbuf_release(&text);
}

void engine_fingerprint_key(struct strbuf *key, const char *connector)
{
    strbuf_reset(key);
    if (connector == NULL) {
        strbuf_addstr(key, ENGINE_META_RULES);
    } else {
        strbuf_addstr(key, ENGINE_META_CONNECTOR);
        strbuf_addstr(key, connector);
    }
}

/* Does the fingerprint stored under `key` differ from `now`? *first: none
 * is stored yet (that counts as a change). */
static bool fingerprint_changed(struct store *s, const char *key, const char *now, bool *first)
{
    struct strbuf old = STRBUF_INIT;
    struct ids_error err = IDS_ERROR_INIT;
    bool changed = true;

    *first = true;
    if (store_meta_get(s, key, &old, &err) == IDS_OK) {
        changed = strcmp(old.buf, now) != 0;
        *first = false;
    }
    strbuf_release(&old);
    return changed;
}

void engine_fingerprint_save(struct store *s, const char *key, const char *value)
{
    struct ids_error err = IDS_ERROR_INIT;

    if (store_meta_set(s, key, value, &err) != IDS_OK) {
        /* not fatal: the next step runs in full again */
        log_warn("fingerprint-save", "key=%s error=\"%s\"", key, err.msg);
    }
}

bool engine_scope_changed(struct store *s, const struct connector_config *cc, struct strbuf *fp,
                          bool *first)
{
    struct strbuf key = STRBUF_INIT;
    bool changed;

    strbuf_reset(fp);
    engine_fingerprint_connector(cc, fp);
    engine_fingerprint_key(&key, cc->name);
    changed = fingerprint_changed(s, key.buf, fp->buf, first);
    strbuf_release(&key);
    return changed;
}

bool engine_rules_changed(struct store *s, const struct config *cfg, struct strbuf *fp, bool *first)
{
    strbuf_reset(fp);
    engine_fingerprint_rules(cfg, fp);
    return fingerprint_changed(s, ENGINE_META_RULES, fp->buf, first);
}
