/* config.c - the YAML configuration file -> struct config.
 *
 * libyaml's document API gives a node tree with marks (line, column); the
 * option tables below drive parsing, defaults and validation of each
 * section, and the same tables drive config_dump() and config_docs()
 * (config_out.c). See docs/internals/config.md.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <yaml.h>

#include "config_int.h"
#include "connector/connector.h"
#include "expr/expr.h"
#include "util/ldapesc.h"
#include "util/mem.h"
#include "util/banned.h"

#define CONFIG_MAX_FILE   (16u << 20) /* a configuration file larger than this is refused */
#define CONFIG_MAX_SECRET (64u << 10)
#define SCHEDULE_MAX      (7L * 86400)

/* ---- option tables --------------------------------------------------------- */

const struct config_option config_top_options[] = {
    {"store", OPT_STRING, "sqlite:idsync.db", 0, 0, NULL, false,
     "Where connector spaces, the metaverse and run history are kept: `sqlite:PATH` (relative "
     "to the configuration file's folder). `postgresql://...` is reserved for a PostgreSQL "
     "store, not built into this version: it is refused with that message."},
    {"connectors", OPT_MAP, NULL, 0, 0, NULL, true,
     "The connected systems, by connector name (see [connectors](#connectors))."},
    {"metaverse", OPT_MAP, NULL, 0, 0, NULL, false,
     "Metaverse object types with their inbound (`from`) and outbound (`to`) rules (see "
     "[metaverse](#metaverse))."},
    {"safety", OPT_MAP, NULL, 0, 0, NULL, false,
     "Deletion thresholds and error limits (see [safety](#safety))."},
    {"notify", OPT_MAP, NULL, 0, 0, NULL, false,
     "Run reports by e-mail and webhook (see [notify](#notify))."},
    {"schedule", OPT_DURATION, "30m", 10, SCHEDULE_MAX, NULL, false,
     "Interval between two cycles when running `idsync serve`."},
    {"run_history", OPT_DURATION, "30d", 0, 3650L * 86400, NULL, false,
     "How long run history (runs, their counters and per-object errors) is kept: each cycle "
     "first removes the runs that started longer ago than this. 0 keeps everything."},
    {"serve", OPT_MAP, NULL, 0, 0, NULL, false,
     "The daemon's HTTP API and web console (see [serve](#serve))."},
    {"log", OPT_MAP, NULL, 0, 0, NULL, false, "Logging (see [log](#log))."},
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

const struct config_option config_connector_options[] = {
    {"type", OPT_STRING, NULL, 0, 0, NULL, true,
     "Connector type: one of the types below (csv, ldif, ldap, scim, null)."},
    {"objects", OPT_MAP, NULL, 0, 0, NULL, true,
     "Object types of this connector, by name (see [object types](#object-types)); at least "
     "one."},
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

const struct config_option config_object_options[] = {
    {"attributes", OPT_LIST, NULL, 0, 0, NULL, false,
     "Attributes read and written. When given, every rule reading from or writing to this "
     "object type is checked against it at load time."},
    {"filter", OPT_STRING, NULL, 0, 0, NULL, false,
     "Which objects of the connected system belong to this type (an LDAP filter for LDAP, a "
     "SCIM filter for SCIM)."},
    {"references", OPT_MAP, NULL, 0, 0, NULL, false,
     "Reference attributes and the object types their values point to, e.g. "
     "`{ member: [user, group] }`. The types must be object types of the same connector."},
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

const struct config_option config_mv_type_options[] = {
    {"from", OPT_MAP, NULL, 0, 0, NULL, false,
     "Inbound rules: a list of connector object types that feed this metaverse type (see "
     "[from](#from))."},
    {"to", OPT_MAP, NULL, 0, 0, NULL, false,
     "Outbound rules: a list of connector object types this metaverse type is written to (see "
     "[to](#to))."},
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

const struct config_option config_from_options[] = {
    {"connector", OPT_STRING, NULL, 0, 0, NULL, true, "Name of a connector under `connectors`."},
    {"object", OPT_STRING, NULL, 0, 0, NULL, true, "One of that connector's object types."},
    {"project", OPT_BOOL, "false", 0, 0, NULL, false,
     "Create a metaverse object when no join rule matches (projection)."},
    {"scope", OPT_STRING, NULL, 0, 0, NULL, false,
     "Expression over the connector object; only objects for which it is true (not nil or "
     "false) are synchronised. Default: every object."},
    {"join", OPT_MAP, NULL, 0, 0, NULL, false,
     "Ordered list of join rules; each rule is a mapping `MV_ATTRIBUTE: EXPRESSION` whose "
     "conditions must all match; the first rule with exactly one match wins."},
    {"flow", OPT_MAP, NULL, 0, 0, NULL, false,
     "Attribute flows `MV_ATTRIBUTE: EXPRESSION`, the expression read from the connector "
     "object. A bare attribute name is a plain copy."},
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

const struct config_option config_to_options[] = {
    {"connector", OPT_STRING, NULL, 0, 0, NULL, true, "Name of a connector under `connectors`."},
    {"object", OPT_STRING, NULL, 0, 0, NULL, true, "One of that connector's object types."},
    {"provision", OPT_BOOL, "false", 0, 0, NULL, false,
     "Create an object in this connector for a metaverse object that has none."},
    {"deprovision", OPT_ENUM, "disconnect", 0, 0, "delete|disable|disconnect", false,
     "What happens to the target object when its metaverse object goes away: delete it, "
     "disable it, or only unlink it (disconnect)."},
    {"anchor_carrier", OPT_STRING, NULL, 0, 0, NULL, false,
     "Target attribute that keeps the metaverse source anchor (SCIM `externalId`); the "
     "hard-match key, and what a soft match must not contradict."},
    {"disable_attribute", OPT_STRING, NULL, 0, 0, NULL, false,
     "With `deprovision: disable`: the attribute set to disable an object (SCIM: `active`)."},
    {"disable_value", OPT_STRING, NULL, 0, 0, NULL, false,
     "With `deprovision: disable`: the value that means disabled (SCIM: `false`). A disabled "
     "object joined again (a rehire) is enabled, unless a flow sets the attribute: `false` "
     "becomes `true`, AD's `userAccountControl` bit `2` is cleared (`0`), any other value "
     "is removed."},
    {"disable_move_to", OPT_STRING, NULL, 0, 0, NULL, false,
     "With `deprovision: disable` into a directory: the container a disabled account is moved "
     "to, keeping its RDN (`OU=Leavers,DC=corp,DC=example`). The export after the one that "
     "disabled it moves it, so the disable never waits for the move, and the moves do not count "
     "as deletes. The container must be within what the object type reads (else a moved "
     "account would look deleted); an account whose DN is taken there is disabled where it is. "
     "A rehired account is moved back by its `dn` flow."},
    {"scope", OPT_STRING, NULL, 0, 0, NULL, false,
     "Expression over the metaverse object; only objects for which it is true are written "
     "to this connector. Default: every object."},
    {"join", OPT_MAP, NULL, 0, 0, NULL, false,
     "Ordered list of join rules `TARGET_ATTRIBUTE: EXPRESSION`, the expression read from the "
     "metaverse object; used to find an existing target object before provisioning one."},
    {"flow", OPT_MAP, NULL, 0, 0, NULL, false,
     "Attribute flows `TARGET_ATTRIBUTE: EXPRESSION`, the expression read from the metaverse "
     "object. `dn` sets the DN of a new object (a new value renames or moves it). `unicodePwd` "
     "and a SCIM `password`, which are never read back, are refused here: they belong under "
     "`initial_flow`."},
    {"initial_flow", OPT_MAP, NULL, 0, 0, NULL, false,
     "Attribute flows sent with the create only, never compared or sent again (MIIS's "
     "\"initial flow only\"): an initial password (`unicodePwd: random_password(20)`), "
     "`pwdLastSet: '\"0\"'` (change at next logon), `userAccountControl: '\"512\"'` (created "
     "enabled). The attributes need not be in the object type's `attributes` (AD never returns "
     "`unicodePwd`); not allowed: `dn`, `objectClass`, a reference, an attribute also in `flow`, "
     "and for a CSV target anything but a column. The export evaluates them as it sends the "
     "create: they are never written to the store, and passwords are masked in every output."},
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

const struct config_option config_safety_options[] = {
    {"max_deletes", OPT_INT, "500", 0, 100000000, NULL, false,
     "An export that would delete more objects than this in one connector stops before "
     "sending anything; objects deprovisioned by disabling them count as deletes. 0 disables "
     "the check."},
    {"max_delete_percent", OPT_INT, "10", 0, 100, NULL, false,
     "The same as a share of the connector space; 0 disables the check."},
    {"max_errors", OPT_INT, "5000", 0, 1000000000, NULL, false,
     "A run stops after this many object errors; 0 means no limit."},
    {"import_max_delete_percent", OPT_INT, NULL, 0, 100, NULL, false,
     "A full import that would delete more than this share of a connector space stops (an "
     "empty result is more often a broken filter than a fired company). Default: "
     "`max_delete_percent`; 0 disables the check."},
    {"import_max_clear_percent", OPT_INT, NULL, 0, 100, NULL, false,
     "An import that would remove every value of one attribute from more than this share of "
     "a connector space stops and stages nothing: a column renamed in an export, or an "
     "attribute the account can no longer read, would otherwise clear it in every target. "
     "Values removed by idsync's own exports, and attributes no longer in `attributes`, do not "
     "count. Default: `import_max_delete_percent`; 0 disables the check."},
    {"import_min_objects", OPT_INT, "10", 0, 1000000000, NULL, false,
     "The import guards apply to connector spaces with at least this many objects."},
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

const struct config_option config_notify_options[] = {
    {"smtp", OPT_STRING, NULL, 0, 0, NULL, false,
     "Mail server: `smtp://HOST[:PORT]` (STARTTLS when offered) or `smtps://HOST[:PORT]`."},
    {"from", OPT_STRING, NULL, 0, 0, NULL, false, "Sender address of report mails."},
    {"to", OPT_LIST, NULL, 0, 0, NULL, false, "Recipients of report mails."},
    {"username", OPT_STRING, NULL, 0, 0, NULL, false, "SMTP user name, when the server needs one."},
    {"password", OPT_SECRET, NULL, 0, 0, NULL, false, "SMTP password."},
    {"webhook", OPT_STRING, NULL, 0, 0, NULL, false,
     "URL that receives each run report as a JSON POST (`http://` or `https://`)."},
    {"digest", OPT_DURATION, "0s", 0, 7L * 86400, NULL, false,
     "Collect problems and mail them at most once per this interval; 0 mails each new problem "
     "once."},
    {"tls_verify", OPT_BOOL, "true", 0, 0, NULL, false,
     "Verify the TLS certificates of the mail server and the webhook."},
    {"ca_file", OPT_PATH, NULL, 0, 0, NULL, false,
     "CA certificates (PEM) to verify them with, instead of the system's."},
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

const struct config_option config_serve_options[] = {
    {"listen", OPT_STRING, "127.0.0.1:8470", 0, 0, NULL, false,
     "Address and port of the HTTP API and console: `HOST:PORT` or `[IPv6]:PORT`."},
    {"token_file", OPT_PATH, NULL, 0, 0, NULL, false,
     "File holding the bearer token that API clients must send (`Authorization: Bearer "
     "TOKEN`)."},
    {"tls_cert_file", OPT_PATH, NULL, 0, 0, NULL, false,
     "Certificate (PEM) to serve HTTPS with; needs `tls_key_file`."},
    {"tls_key_file", OPT_PATH, NULL, 0, 0, NULL, false, "Private key (PEM) of `tls_cert_file`."},
    {"console", OPT_BOOL, "true", 0, 0, NULL, false, "Serve the web console at `/`."},
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

const struct config_option config_log_options[] = {
    {"level", OPT_ENUM, "info", 0, 0, "debug|info|warn|error", false,
     "Least severe level written to stderr (the command line's --verbose and --quiet win)."},
    {"format", OPT_ENUM, "logfmt", 0, 0, "logfmt|json", false,
     "One line per event as logfmt `key=value` pairs, or as a JSON object."},
    {NULL, OPT_STRING, NULL, 0, 0, NULL, false, NULL},
};

/* ---- small helpers ------------------------------------------------------- */

static bool bounded(const struct config_option *opt)
{
    return !(opt->min == 0 && opt->max == 0);
}

static const char *choices_of(const struct config_option *opt)
{
    return opt->choices != NULL ? opt->choices : "";
}

void config_format_duration(struct strbuf *out, long seconds)
{
    static const struct {
        char unit;
        long secs;
    } units[] = {{'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};
    size_t i;

    if (seconds == 0) {
        strbuf_addstr(out, "0s");
        return;
    }
    for (i = 0; i < ARRAY_SIZE(units); i++) {
        if (seconds >= units[i].secs) {
            strbuf_addf(out, "%ld%c", seconds / units[i].secs, units[i].unit);
            seconds %= units[i].secs;
        }
    }
}

void config_describe_type(struct strbuf *out, const struct config_option *opt)
{
    struct strvec ch = STRVEC_INIT;
    size_t i;

    switch (opt->type) {
    case OPT_STRING:
        strbuf_addstr(out, "a string");
        break;
    case OPT_INT:
        strbuf_addstr(out, "an integer");
        if (bounded(opt)) {
            strbuf_addf(out, " from %ld to %ld", opt->min, opt->max);
        }
        break;
    case OPT_BOOL:
        strbuf_addstr(out, "true or false");
        break;
    case OPT_ENUM:
        strvec_split(&ch, choices_of(opt), '|', true);
        strbuf_addstr(out, "one of ");
        for (i = 0; i < ch.nr; i++) {
            strbuf_addf(out, "%s%s", i ? ", " : "", ch.v[i]);
        }
        strvec_clear(&ch);
        break;
    case OPT_DURATION:
        strbuf_addstr(out, "a duration (30s, 5m, 2h, 1d or seconds)");
        if (bounded(opt)) {
            strbuf_addstr(out, " from ");
            config_format_duration(out, opt->min);
            strbuf_addstr(out, " to ");
            config_format_duration(out, opt->max);
        }
        break;
    case OPT_LIST:
        strbuf_addstr(out, "a list of strings");
        break;
    case OPT_SECRET:
        strbuf_addf(out, "%s_file: PATH or %s: env:NAME", opt->key, opt->key);
        break;
    case OPT_PATH:
        strbuf_addstr(out, "a file path");
        break;
    case OPT_MAP:
        strbuf_addstr(out, "a mapping");
        break;
    }
}

/* ---- the loader ---------------------------------------------------------- */

struct loader {
    struct config *cfg;
    yaml_document_t doc;
    const char *file; /* name in messages */
    struct ids_error *err;
};

static yaml_node_t *node_at(struct loader *ld, int id)
{
    return yaml_document_get_node(&ld->doc, id);
}

static bool is_scalar(const yaml_node_t *n)
{
    return n != NULL && n->type == YAML_SCALAR_NODE;
}

static bool is_map(const yaml_node_t *n)
{
    return n != NULL && n->type == YAML_MAPPING_NODE;
}

static bool is_seq(const yaml_node_t *n)
{
    return n != NULL && n->type == YAML_SEQUENCE_NODE;
}

static const char *scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* An empty value: `key:`, `~`, `null`. */
static bool is_null(const yaml_node_t *n)
{
    const char *s;

    if (n == NULL) {
        return true;
    }
    if (!is_scalar(n) || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return false;
    }
    s = scalar(n);
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static const char *node_kind(const yaml_node_t *n)
{
    if (is_null(n)) {
        return "nothing";
    }
    if (is_map(n)) {
        return "a mapping";
    }
    if (is_seq(n)) {
        return "a list";
    }
    return "a string";
}

static struct config_loc loc_of(struct loader *ld, const yaml_node_t *n)
{
    struct config_loc loc;

    loc.file = ld->cfg->path;
    loc.line = n != NULL ? (int)n->start_mark.line + 1 : 1;
    loc.col = n != NULL ? (int)n->start_mark.column + 1 : 1;
    return loc;
}

__attribute__((format(printf, 3, 4))) static enum ids_err
fail_loc(struct loader *ld, struct config_loc loc, const char *fmt, ...)
{
    char msg[IDS_ERROR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return ids_error_set(ld->err, IDS_ECONFIG, "%s:%d:%d: %s", ld->file, loc.line, loc.col, msg);
}

#define fail(ld, node, ...) fail_loc((ld), loc_of((ld), (node)), __VA_ARGS__)

/* The value node of `key` in mapping `map`, or NULL. */
static yaml_node_t *map_get(struct loader *ld, yaml_node_t *map, const char *key)
{
    yaml_node_pair_t *p;

    if (!is_map(map)) {
        return NULL;
    }
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(ld, p->key);

        if (is_scalar(k) && strcmp(scalar(k), key) == 0) {
            return node_at(ld, p->value);
        }
    }
    return NULL;
}

static size_t map_size(const yaml_node_t *n)
{
    return is_map(n) ? (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start) : 0;
}

static size_t seq_size(const yaml_node_t *n)
{
    return is_seq(n) ? (size_t)(n->data.sequence.items.top - n->data.sequence.items.start) : 0;
}

/* A scalar usable as text: no NUL inside. */
static enum ids_err get_text(struct loader *ld, const char *path, yaml_node_t *n, const char **out)
{
    if (!is_scalar(n) || is_null(n)) {
        return fail(ld, n, "%s: expected a string, got %s", path, node_kind(n));
    }
    if (strlen(scalar(n)) != n->data.scalar.length) {
        return fail(ld, n, "%s: a NUL character is not allowed here (expected text)", path);
    }
    *out = scalar(n);
    return IDS_OK;
}

/* Key of a mapping pair: a non-empty string. */
static enum ids_err get_key(struct loader *ld, const char *path, yaml_node_t *k, const char **out)
{
    if (!is_scalar(k) || is_null(k) || strlen(scalar(k)) != k->data.scalar.length) {
        return fail(ld, k, "%s: expected a key (a non-empty string), got %s", path, node_kind(k));
    }
    *out = scalar(k);
    return IDS_OK;
}

/* Names of connectors, object types, metaverse types. */
static enum ids_err check_name(struct loader *ld, const char *path, yaml_node_t *k,
                               const char *name)
{
    size_t i;
    size_t len = strlen(name);

    if (len > 64 || !isalnum((unsigned char)name[0])) {
        goto bad;
    }
    for (i = 0; i < len; i++) {
        if (!isalnum((unsigned char)name[i]) && strchr("_.-", name[i]) == NULL) {
            goto bad;
        }
    }
    return IDS_OK;

bad:
    return fail(ld, k,
                "%s: `%s` is not a valid name (expected up to 64 letters, digits, '_', '.' or "
                "'-', starting with a letter or digit)",
                path, name);
}

/* Duplicate keys in one mapping: sorted, so that a huge mapping costs
 * n log n; the error is at the second occurrence that comes first in the
 * file. */
struct key_ref {
    const char *key;
    size_t pos; /* index of the pair */
    yaml_node_t *node;
};

static int cmp_key_ref(const void *a, const void *b)
{
    const struct key_ref *x = a;
    const struct key_ref *y = b;
    int c = strcmp(x->key, y->key);

    if (c != 0) {
        return c;
    }
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static enum ids_err check_duplicates(struct loader *ld, const char *path, yaml_node_t *map)
{
    enum ids_err ret = IDS_OK;
    struct key_ref *refs;
    const struct key_ref *dup = NULL;
    const struct key_ref *first = NULL;
    size_t n = 0;
    size_t i;
    yaml_node_pair_t *p;

    if (!is_map(map) || map_size(map) < 2) {
        return IDS_OK;
    }
    refs = xcalloc(map_size(map), sizeof(*refs));
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(ld, p->key);

        if (is_scalar(k)) {
            refs[n].key = scalar(k);
            refs[n].pos = (size_t)(p - map->data.mapping.pairs.start);
            refs[n].node = k;
            n++;
        }
    }
    qsort(refs, n, sizeof(*refs), cmp_key_ref);
    for (i = 1; i < n; i++) {
        if (strcmp(refs[i].key, refs[i - 1].key) == 0 && (dup == NULL || refs[i].pos < dup->pos)) {
            size_t j = i - 1;

            while (j > 0 && strcmp(refs[j - 1].key, refs[i].key) == 0) {
                j--;
            }
            dup = &refs[i];
            first = &refs[j];
        }
    }
    if (dup != NULL) {
        ret = fail(ld, dup->node,
                   "%s: key `%s` is given twice (first at line %d; expected each key once)", path,
                   dup->key, (int)first->node->start_mark.line + 1);
    }
    free(refs);
    return ret;
}

static char *resolve_path(const struct config *cfg, const char *path)
{
    struct strbuf sb = STRBUF_INIT;

    if (path[0] == '/' || cfg->dir == NULL) {
        return xstrdup(path);
    }
    strbuf_addstr(&sb, cfg->dir);
    if (sb.len > 0 && sb.buf[sb.len - 1] != '/') {
        strbuf_addch(&sb, '/');
    }
    strbuf_addstr(&sb, path);
    return strbuf_detach(&sb, NULL);
}

static bool parse_long(const char *s, long *out)
{
    char *end;
    long v;

    if (s[0] == '\0' || isspace((unsigned char)s[0])) {
        return false;
    }
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *out = v;
    return true;
}

static bool parse_bool(const char *s, long *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    size_t i;

    for (i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return true;
        }
    }
    return false;
}

/* "90", "30s", "5m", "2h", "1d", "1h30m" -> seconds. */
static bool parse_duration(const char *s, long *out)
{
    long total = 0;
    const char *p = s;

    if (*p == '\0') {
        return false;
    }
    while (*p) {
        long n = 0;
        long mult;

        if (!isdigit((unsigned char)*p)) {
            return false;
        }
        while (isdigit((unsigned char)*p)) {
            if (n > 100000000L) {
                return false;
            }
            n = n * 10 + (*p - '0');
            p++;
        }
        switch (*p) {
        case '\0':
            if (p != s + strspn(s, "0123456789")) {
                return false; /* "1h30" */
            }
            mult = 1;
            break;
        case 's':
            mult = 1;
            p++;
            break;
        case 'm':
            mult = 60;
            p++;
            break;
        case 'h':
            mult = 3600;
            p++;
            break;
        case 'd':
            mult = 86400;
            p++;
            break;
        default:
            return false;
        }
        if (n > (LONG_MAX / 2 - total) / mult) {
            return false;
        }
        total += n * mult;
    }
    *out = total;
    return true;
}

static bool valid_env_name(const char *s)
{
    size_t i;

    if (!(isalpha((unsigned char)s[0]) || s[0] == '_')) {
        return false;
    }
    for (i = 1; s[i]; i++) {
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_')) {
            return false;
        }
    }
    return true;
}

static bool choice_ok(const struct config_option *opt, const char *s)
{
    struct strvec ch = STRVEC_INIT;
    bool ok;

    strvec_split(&ch, choices_of(opt), '|', true);
    ok = strvec_find(&ch, s, false) >= 0;
    strvec_clear(&ch);
    return ok;
}

/* Parse the text of a scalar option (also defaults) into v (str, num).
 * On failure a reason in why. */
static bool parse_text(const struct config *cfg, const struct config_option *opt, const char *text,
                       struct config_value *v, struct strbuf *why)
{
    long n = 0;

    switch (opt->type) {
    case OPT_STRING:
    case OPT_MAP:
        v->str = xstrdup(text);
        return true;
    case OPT_PATH:
        if (text[0] == '\0') {
            strbuf_addstr(why, "an empty path");
            return false;
        }
        v->str = resolve_path(cfg, text);
        return true;
    case OPT_INT:
        if (!parse_long(text, &n)) {
            strbuf_addf(why, "`%s` is not an integer", text);
            return false;
        }
        if (bounded(opt) && (n < opt->min || n > opt->max)) {
            strbuf_addf(why, "%ld is out of range", n);
            return false;
        }
        break;
    case OPT_BOOL:
        if (!parse_bool(text, &n)) {
            strbuf_addf(why, "`%s` is not a boolean", text);
            return false;
        }
        v->str = xstrdup(n ? "true" : "false");
        v->num = n;
        return true;
    case OPT_ENUM:
        if (!choice_ok(opt, text)) {
            strbuf_addf(why, "`%s` is not a valid choice", text);
            return false;
        }
        v->str = xstrdup(text);
        return true;
    case OPT_DURATION:
        if (!parse_duration(text, &n)) {
            strbuf_addf(why, "`%s` is not a duration", text);
            return false;
        }
        if (bounded(opt) && (n < opt->min || n > opt->max)) {
            strbuf_addf(why, "`%s` is out of range", text);
            return false;
        }
        break;
    case OPT_LIST:
        strvec_split(&v->list, text, ',', true);
        return true;
    case OPT_SECRET:
        if (strncmp(text, "env:", 4) != 0 && strncmp(text, "file:", 5) != 0) {
            strbuf_addstr(why, "a secret must not be written in the configuration");
            return false;
        }
        v->str = xstrdup(text);
        return true;
    }
    v->str = xstrdup(text);
    v->num = n;
    return true;
}

/* One parsed mapping against option tables. */
typedef enum ids_err (*map_handler)(struct loader *ld, const struct config_option *opt,
                                    yaml_node_t *key, yaml_node_t *val, void *data);

static void values_push(struct config_values *vals, struct config_value *v)
{
    vals->v = xreallocarray(vals->v, vals->nr + 1, sizeof(*vals->v));
    vals->v[vals->nr++] = *v;
}

static void value_release(struct config_value *v)
{
    free(v->str);
    strvec_clear(&v->list);
}

static void values_release(struct config_values *vals)
{
    size_t i;

    for (i = 0; i < vals->nr; i++) {
        value_release(&vals->v[i]);
    }
    free(vals->v);
    vals->v = NULL;
    vals->nr = 0;
}

/* Find key in the tables: exact, or `KEY_file` of an OPT_SECRET KEY. */
static const struct config_option *find_option(const struct config_option *const *tables,
                                               size_t ntables, const char *key, size_t *table,
                                               bool *file_form)
{
    size_t t;
    size_t klen = strlen(key);
    const struct config_option *o;

    *file_form = false;
    for (t = 0; t < ntables; t++) {
        for (o = tables[t]; o != NULL && o->key != NULL; o++) {
            if (strcmp(o->key, key) == 0) {
                *table = t;
                return o;
            }
        }
    }
    if (klen > 5 && strcmp(key + klen - 5, "_file") == 0) {
        for (t = 0; t < ntables; t++) {
            for (o = tables[t]; o != NULL && o->key != NULL; o++) {
                if (o->type == OPT_SECRET && strlen(o->key) == klen - 5 &&
                    strncmp(o->key, key, klen - 5) == 0) {
                    *table = t;
                    *file_form = true;
                    return o;
                }
            }
        }
    }
    return NULL;
}

static void allowed_keys(struct strbuf *sb, const struct config_option *const *tables,
                         size_t ntables)
{
    const struct config_option *o;
    size_t t;
    bool any = false;

    for (t = 0; t < ntables; t++) {
        for (o = tables[t]; o != NULL && o->key != NULL; o++) {
            strbuf_addf(sb, "%s%s", any ? ", " : "", o->key);
            if (o->type == OPT_SECRET) {
                strbuf_addf(sb, ", %s_file", o->key);
            }
            any = true;
        }
    }
}

/* Parse one value node for opt into v. */
static enum ids_err parse_value(struct loader *ld, const char *path,
                                const struct config_option *opt, bool file_form, yaml_node_t *k,
                                yaml_node_t *val, struct config_value *v)
{
    enum ids_err ret = IDS_OK;
    struct strbuf why = STRBUF_INIT;
    struct strbuf want = STRBUF_INIT;
    const char *text = NULL;
    yaml_node_item_t *it;

    memset(v, 0, sizeof(*v));
    strvec_init(&v->list);
    v->opt = opt;
    v->loc = loc_of(ld, val);
    config_describe_type(&want, opt);
    if (opt->type == OPT_LIST) {
        if (is_null(val)) {
            goto done;
        }
        if (is_scalar(val)) {
            ret = get_text(ld, path, val, &text);
            if (ret == IDS_OK) {
                strvec_push(&v->list, text);
            }
            goto done;
        }
        if (!is_seq(val)) {
            ret = fail(ld, val, "%s.%s: expected a list of strings, got %s", path, opt->key,
                       node_kind(val));
            goto done;
        }
        for (it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++) {
            yaml_node_t *item = node_at(ld, *it);

            if (!is_scalar(item) || is_null(item) ||
                strlen(scalar(item)) != item->data.scalar.length) {
                ret = fail(ld, item, "%s.%s: expected a list of strings, got %s in the list", path,
                           opt->key, node_kind(item));
                goto done;
            }
            strvec_push(&v->list, scalar(item));
        }
        goto done;
    }
    if (opt == &config_connector_options[0] && is_scalar(val) && scalar(val)[0] != '\0') {
        /* `type: null` names the null connector, not YAML's null */
        v->str = xstrdup(scalar(val));
        goto done;
    }
    if (!is_scalar(val) || is_null(val)) {
        if (opt->type == OPT_SECRET && !file_form) {
            ret = fail(ld, val, "%s.%s: expected %s, got %s", path, opt->key, want.buf,
                       node_kind(val));
        } else {
            ret =
                fail(ld, val, "%s.%s: expected %s, got %s", path, file_form ? scalar(k) : opt->key,
                     file_form ? "a file path" : want.buf, node_kind(val));
        }
        goto done;
    }
    if (strlen(scalar(val)) != val->data.scalar.length) {
        ret = fail(ld, val, "%s.%s: a NUL character is not allowed here (expected %s)", path,
                   scalar(k), want.buf);
        goto done;
    }
    text = scalar(val);
    if (opt->type == OPT_SECRET) {
        if (file_form) {
            char *p;

            if (text[0] == '\0') {
                ret = fail(ld, val, "%s.%s: an empty path (expected a file path)", path, scalar(k));
                goto done;
            }
            p = resolve_path(ld->cfg, text);
            strbuf_addf(&why, "file:%s", p);
            free(p);
            v->str = strbuf_detach(&why, NULL);
            goto done;
        }
        if (strncmp(text, "env:", 4) != 0) {
            ret = fail(ld, val,
                       "%s.%s: a secret must not be written in the configuration file (expected "
                       "%s_file: PATH or %s: env:NAME)",
                       path, opt->key, opt->key, opt->key);
            goto done;
        }
        if (!valid_env_name(text + 4)) {
            ret = fail(ld, val,
                       "%s.%s: `%s` is not a valid environment variable name (expected env:NAME, "
                       "NAME of letters, digits and '_')",
                       path, opt->key, text + 4);
            goto done;
        }
        v->str = xstrdup(text);
        goto done;
    }
    if (!parse_text(ld->cfg, opt, text, v, &why)) {
        ret = fail(ld, val, "%s.%s: %s (expected %s)", path, opt->key, why.buf, want.buf);
        goto done;
    }

done:
    if (ret != IDS_OK) {
        value_release(v);
    }
    strbuf_release(&why);
    strbuf_release(&want);
    return ret;
}

/* Parse mapping `map` (may be a null node: empty) at `path` against
 * tables[i], values into outs[i]. OPT_MAP keys go to on_map (or are kept as
 * JSON text when on_map is NULL). Defaults are filled in and required keys
 * checked. */
static enum ids_err parse_mapping(struct loader *ld, yaml_node_t *map, const char *path,
                                  const struct config_option *const *tables,
                                  struct config_values *const *outs, size_t ntables,
                                  map_handler on_map, void *data)
{
    enum ids_err ret = IDS_OK;
    struct strvec seen = STRVEC_INIT;
    struct strbuf sb = STRBUF_INIT;
    yaml_node_pair_t *p;
    const struct config_option *o;
    size_t t;

    if (!is_null(map) && !is_map(map)) {
        ret = fail(ld, map, "%s: expected a mapping, got %s", path, node_kind(map));
        goto done;
    }
    ret = check_duplicates(ld, path, map);
    if (ret != IDS_OK) {
        goto done;
    }
    for (p = is_map(map) ? map->data.mapping.pairs.start : NULL;
         p != NULL && p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(ld, p->key);
        yaml_node_t *v = node_at(ld, p->value);
        const char *key;
        bool file_form;
        struct config_value cv;

        ret = get_key(ld, path, k, &key);
        if (ret != IDS_OK) {
            goto done;
        }
        o = find_option(tables, ntables, key, &t, &file_form);
        if (o == NULL) {
            strbuf_reset(&sb);
            allowed_keys(&sb, tables, ntables);
            ret = fail(ld, k, "%s: unknown key `%s` (expected one of: %s)", path, key, sb.buf);
            goto done;
        }
        if (strvec_find(&seen, o->key, false) >= 0) {
            if (o->type == OPT_SECRET) {
                ret = fail(ld, k, "%s: `%s` is given twice (expected either %s_file or %s)", path,
                           key, o->key, o->key);
            } else {
                ret = fail(ld, k, "%s: key `%s` is given twice", path, key);
            }
            goto done;
        }
        strvec_push(&seen, o->key);
        if (o->type == OPT_MAP && on_map != NULL) {
            ret = on_map(ld, o, k, v, data);
            if (ret != IDS_OK) {
                goto done;
            }
            continue;
        }
        if (o->type == OPT_MAP) {
            /* a connector type's own nested mapping: kept as JSON text */
            ret = IDS_OK;
            memset(&cv, 0, sizeof(cv));
            strvec_init(&cv.list);
            cv.opt = o;
            cv.loc = loc_of(ld, v);
            if (!is_null(v) && !is_map(v)) {
                ret = fail(ld, v, "%s.%s: expected a mapping, got %s", path, key, node_kind(v));
                goto done;
            }
            strbuf_reset(&sb);
            strbuf_addch(&sb, '{');
            if (is_map(v)) {
                yaml_node_pair_t *q;

                for (q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
                    yaml_node_t *qk = node_at(ld, q->key);
                    yaml_node_t *qv = node_at(ld, q->value);

                    if (!is_scalar(qk) || !is_scalar(qv)) {
                        ret = fail(ld, qv, "%s.%s: expected a mapping of strings", path, key);
                        goto done;
                    }
                    if (q != v->data.mapping.pairs.start) {
                        strbuf_addch(&sb, ',');
                    }
                    strbuf_add_json_str(&sb, scalar(qk), qk->data.scalar.length);
                    strbuf_addch(&sb, ':');
                    strbuf_add_json_str(&sb, scalar(qv), qv->data.scalar.length);
                }
            }
            strbuf_addch(&sb, '}');
            cv.str = xstrdup(sb.buf);
            values_push(outs[t], &cv);
            continue;
        }
        ret = parse_value(ld, path, o, file_form, k, v, &cv);
        if (ret != IDS_OK) {
            goto done;
        }
        values_push(outs[t], &cv);
    }
    for (t = 0; t < ntables; t++) {
        for (o = tables[t]; o != NULL && o->key != NULL; o++) {
            struct config_value cv;

            if (strvec_find(&seen, o->key, false) >= 0) {
                continue;
            }
            if (o->required) {
                strbuf_reset(&sb);
                config_describe_type(&sb, o);
                if (o->type == OPT_SECRET) {
                    ret = fail(ld, map, "%s: missing %s (expected %s)", path, o->key, sb.buf);
                } else {
                    ret = fail(ld, map, "%s: missing required key `%s` (expected %s)", path, o->key,
                               sb.buf);
                }
                goto done;
            }
            if (o->def == NULL || o->type == OPT_MAP || o->type == OPT_SECRET) {
                continue;
            }
            memset(&cv, 0, sizeof(cv));
            strvec_init(&cv.list);
            cv.opt = o;
            cv.is_default = true;
            cv.loc = loc_of(ld, map);
            strbuf_reset(&sb);
            if (!parse_text(ld->cfg, o, o->def, &cv, &sb)) {
                /* a bad default in a table is a programming error; say so */
                value_release(&cv);
                ret = fail(ld, map, "%s.%s: invalid built-in default `%s`: %s", path, o->key,
                           o->def, sb.buf);
                goto done;
            }
            values_push(outs[t], &cv);
        }
    }

done:
    strvec_clear(&seen);
    strbuf_release(&sb);
    return ret;
}

/* ---- accessors ------------------------------------------------------------- */

const struct config_value *config_values_get(const struct config_values *vals, const char *key)
{
    size_t i;

    if (vals == NULL) {
        return NULL;
    }
    for (i = 0; i < vals->nr; i++) {
        if (vals->v[i].opt != NULL && strcmp(vals->v[i].opt->key, key) == 0) {
            return &vals->v[i];
        }
    }
    return NULL;
}

const char *config_get_str(const struct config_values *vals, const char *key)
{
    const struct config_value *v = config_values_get(vals, key);

    return v != NULL ? v->str : NULL;
}

long config_get_int(const struct config_values *vals, const char *key)
{
    const struct config_value *v = config_values_get(vals, key);

    return v != NULL ? v->num : 0;
}

bool config_get_bool(const struct config_values *vals, const char *key)
{
    const struct config_value *v = config_values_get(vals, key);

    return v != NULL && v->num != 0;
}

char *config_path(const struct config *cfg, const char *path)
{
    if (path == NULL) {
        return NULL;
    }
    return resolve_path(cfg, path);
}

struct connector_config *config_connector(const struct config *cfg, const char *name)
{
    size_t i;

    for (i = 0; cfg != NULL && i < cfg->nconnectors; i++) {
        if (strcmp(cfg->connectors[i].name, name) == 0) {
            return &cfg->connectors[i];
        }
    }
    return NULL;
}

bool config_connector_used(const struct config *cfg, const char *name, bool inbound)
{
    size_t i;
    size_t j;

    for (i = 0; i < cfg->nmv_types; i++) {
        const struct mv_type_config *mt = &cfg->mv_types[i];
        size_t n = inbound ? mt->nfrom : mt->nto;
        const struct flow_config *f = inbound ? mt->from : mt->to;

        for (j = 0; j < n; j++) {
            if (strcmp(f[j].connector, name) == 0) {
                return true;
            }
        }
    }
    return false;
}

struct object_type_config *connector_config_object(const struct connector_config *cc,
                                                   const char *type)
{
    size_t i;

    for (i = 0; cc != NULL && i < cc->nobjects; i++) {
        if (strcmp(cc->objects[i].name, type) == 0) {
            return &cc->objects[i];
        }
    }
    return NULL;
}

const struct reference_config *object_type_ref(const struct object_type_config *ot,
                                               const char *attr)
{
    size_t i;

    for (i = 0; ot != NULL && i < ot->nrefs; i++) {
        if (strcasecmp(ot->refs[i].attr, attr) == 0) {
            return &ot->refs[i];
        }
    }
    return NULL;
}

enum ids_err config_secret(const struct config_values *vals, const char *key, struct strbuf *out,
                           struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    const struct config_value *v = config_values_get(vals, key);
    struct strbuf sb = STRBUF_INIT;
    const char *src;

    if (v == NULL || v->str == NULL) {
        ret = ids_error_set(err, IDS_ENOTFOUND,
                            "%s is not configured (expected %s_file: PATH or "
                            "%s: env:NAME)",
                            key, key, key);
        goto done;
    }
    src = v->str;
    if (strncmp(src, "env:", 4) == 0) {
        const char *val = getenv(src + 4);

        if (val == NULL) {
            ret = ids_error_set(err, IDS_ECONFIG,
                                "%s: environment variable %s is not set (at %s:%d:%d)", key,
                                src + 4, v->loc.file ? v->loc.file : "?", v->loc.line, v->loc.col);
            goto done;
        }
        strbuf_addstr(&sb, val);
    } else if (strncmp(src, "file:", 5) == 0) {
        struct ids_error ferr = IDS_ERROR_INIT;

        sb.max = CONFIG_MAX_SECRET;
        ret = strbuf_read_file(&sb, src + 5, &ferr);
        if (ret != IDS_OK) {
            ret = ids_error_set(err, ret == IDS_ETOOBIG ? IDS_ECONFIG : IDS_EIO, "%s_file: %s", key,
                                ferr.msg);
            goto done;
        }
        while (sb.len > 0 && (sb.buf[sb.len - 1] == '\n' || sb.buf[sb.len - 1] == '\r')) {
            strbuf_setlen(&sb, sb.len - 1);
        }
    } else {
        ret = ids_error_set(err, IDS_EINTERNAL, "%s: unknown secret source", key);
        goto done;
    }
    if (sb.len == 0) {
        ret = ids_error_set(err, IDS_ECONFIG, "%s: the secret from %s is empty", key, src);
        goto done;
    }
    strbuf_addbuf(out, &sb);

done:
    /* wipe our copy of the secret */
    if (sb.alloc > 0) {
        memset(sb.buf, 0, sb.alloc);
    }
    strbuf_release(&sb);
    return ret;
}

/* ---- freeing ------------------------------------------------------------- */

static void rule_item_release(struct rule_item *it)
{
    free(it->attr);
    free(it->source);
    /* it->expr belongs to cfg->expr_env, freed with it */
}

static void flow_config_release(struct flow_config *fc)
{
    size_t i;
    size_t j;

    free(fc->connector);
    free(fc->object);
    rule_item_release(&fc->scope);
    for (i = 0; i < fc->njoins; i++) {
        for (j = 0; j < fc->joins[i].nitems; j++) {
            rule_item_release(&fc->joins[i].items[j]);
        }
        free(fc->joins[i].items);
    }
    free(fc->joins);
    for (i = 0; i < fc->nflows; i++) {
        rule_item_release(&fc->flows[i]);
    }
    free(fc->flows);
    for (i = 0; i < fc->ninitial; i++) {
        rule_item_release(&fc->initial[i]);
    }
    free(fc->initial);
    free(fc->anchor_carrier);
    free(fc->disable_attr);
    free(fc->disable_value);
    free(fc->disable_move_to);
}

void config_free(struct config *cfg)
{
    size_t i;
    size_t j;

    if (cfg == NULL) {
        return;
    }
    for (i = 0; i < cfg->nconnectors; i++) {
        struct connector_config *cc = &cfg->connectors[i];

        free(cc->name);
        free(cc->type);
        values_release(&cc->opts);
        for (j = 0; j < cc->nobjects; j++) {
            struct object_type_config *ot = &cc->objects[j];
            size_t k;

            free(ot->name);
            strvec_clear(&ot->attributes);
            free(ot->filter);
            for (k = 0; k < ot->nrefs; k++) {
                free(ot->refs[k].attr);
                strvec_clear(&ot->refs[k].types);
            }
            free(ot->refs);
            values_release(&ot->opts);
        }
        free(cc->objects);
    }
    free(cfg->connectors);
    for (i = 0; i < cfg->nmv_types; i++) {
        struct mv_type_config *mt = &cfg->mv_types[i];

        free(mt->name);
        for (j = 0; j < mt->nfrom; j++) {
            flow_config_release(&mt->from[j]);
        }
        free(mt->from);
        for (j = 0; j < mt->nto; j++) {
            flow_config_release(&mt->to[j]);
        }
        free(mt->to);
    }
    free(cfg->mv_types);
    free(cfg->notify.smtp);
    free(cfg->notify.from);
    strvec_clear(&cfg->notify.to);
    free(cfg->notify.username);
    free(cfg->notify.password_secret);
    free(cfg->notify.webhook);
    free(cfg->notify.ca_file);
    values_release(&cfg->serve);
    values_release(&cfg->log);
    expr_env_free(cfg->expr_env);
    free(cfg->store);
    free(cfg->path);
    free(cfg->dir);
    free(cfg);
}

/* ---- connectors ------------------------------------------------------------ */

struct object_ctx {
    struct connector_config *cc;
    struct object_type_config *ot;
    const char *path;
};

static enum ids_err parse_references(struct loader *ld, const struct config_option *opt,
                                     yaml_node_t *k, yaml_node_t *val, void *data)
{
    enum ids_err ret = IDS_OK;
    struct object_ctx *ctx = data;
    struct object_type_config *ot = ctx->ot;
    yaml_node_pair_t *p;

    (void)opt;
    (void)k;
    if (is_null(val)) {
        return IDS_OK;
    }
    if (!is_map(val)) {
        return fail(ld, val,
                    "%s.references: expected a mapping ATTRIBUTE: [OBJECT_TYPE, ...], got %s",
                    ctx->path, node_kind(val));
    }
    ret = check_duplicates(ld, ctx->path, val);
    if (ret != IDS_OK) {
        return ret;
    }
    ot->refs = xcalloc(map_size(val), sizeof(*ot->refs));
    for (p = val->data.mapping.pairs.start; p < val->data.mapping.pairs.top; p++) {
        yaml_node_t *rk = node_at(ld, p->key);
        yaml_node_t *rv = node_at(ld, p->value);
        struct reference_config *ref = &ot->refs[ot->nrefs];
        const char *attr;
        const char *text;
        yaml_node_item_t *it;

        ret = get_key(ld, ctx->path, rk, &attr);
        if (ret != IDS_OK) {
            return ret;
        }
        ref->attr = xstrdup(attr);
        strvec_init(&ref->types);
        ot->nrefs++;
        if (is_scalar(rv) && !is_null(rv)) {
            ret = get_text(ld, ctx->path, rv, &text);
            if (ret != IDS_OK) {
                return ret;
            }
            strvec_push(&ref->types, text);
            continue;
        }
        if (!is_seq(rv) || seq_size(rv) == 0) {
            return fail(ld, rv, "%s.references.%s: expected a list of object types, got %s",
                        ctx->path, attr, node_kind(rv));
        }
        for (it = rv->data.sequence.items.start; it < rv->data.sequence.items.top; it++) {
            ret = get_text(ld, ctx->path, node_at(ld, *it), &text);
            if (ret != IDS_OK) {
                return ret;
            }
            strvec_push(&ref->types, text);
        }
    }
    return IDS_OK;
}

/* After every object type of cc is known: references point at declared
 * types, and reference attributes are listed attributes. */
static enum ids_err check_references(struct loader *ld, struct connector_config *cc,
                                     yaml_node_t *objects, const char *cpath)
{
    struct strbuf names = STRBUF_INIT;
    enum ids_err ret = IDS_OK;
    size_t i;
    size_t j;
    size_t k;

    for (i = 0; i < cc->nobjects; i++) {
        strbuf_addf(&names, "%s%s", i ? ", " : "", cc->objects[i].name);
    }
    for (i = 0; i < cc->nobjects; i++) {
        struct object_type_config *ot = &cc->objects[i];
        yaml_node_t *onode = node_at(ld, objects->data.mapping.pairs.start[i].value);
        yaml_node_t *rnode = map_get(ld, onode, "references");

        for (j = 0; j < ot->nrefs; j++) {
            yaml_node_pair_t *pair = &rnode->data.mapping.pairs.start[j];
            yaml_node_t *val = node_at(ld, pair->value);

            if (ot->attributes.nr > 0 && strvec_find(&ot->attributes, ot->refs[j].attr, true) < 0) {
                ret = fail(ld, node_at(ld, pair->key),
                           "%s.objects.%s.references: `%s` is not one of this object type's "
                           "attributes (expected it in %s.objects.%s.attributes)",
                           cpath, ot->name, ot->refs[j].attr, cpath, ot->name);
                goto done;
            }
            for (k = 0; k < ot->refs[j].types.nr; k++) {
                yaml_node_t *tn =
                    is_seq(val) ? node_at(ld, val->data.sequence.items.start[k]) : val;

                if (connector_config_object(cc, ot->refs[j].types.v[k]) == NULL) {
                    ret = fail(ld, tn,
                               "%s.objects.%s.references.%s: `%s` is not an object type of "
                               "connector %s (expected one of: %s)",
                               cpath, ot->name, ot->refs[j].attr, ot->refs[j].types.v[k], cc->name,
                               names.buf);
                    goto done;
                }
            }
        }
    }

done:
    strbuf_release(&names);
    return ret;
}

static enum ids_err parse_objects(struct loader *ld, const struct config_option *opt,
                                  yaml_node_t *k, yaml_node_t *val, void *data)
{
    enum ids_err ret = IDS_OK;
    struct connector_config *cc = data;
    struct strbuf path = STRBUF_INIT;
    struct strbuf cpath = STRBUF_INIT;
    yaml_node_pair_t *p;

    (void)opt;
    (void)k;
    strbuf_addf(&cpath, "connectors.%s", cc->name);
    if (!is_map(val) || map_size(val) == 0) {
        ret = fail(ld, val,
                   "%s.objects: expected a mapping of object types (at least one, e.g. "
                   "`objects: { user: { attributes: [...] } }`), got %s",
                   cpath.buf, node_kind(val));
        goto done;
    }
    ret = check_duplicates(ld, cpath.buf, val);
    if (ret != IDS_OK) {
        goto done;
    }
    cc->objects = xcalloc(map_size(val), sizeof(*cc->objects));
    for (p = val->data.mapping.pairs.start; p < val->data.mapping.pairs.top; p++) {
        yaml_node_t *ok = node_at(ld, p->key);
        yaml_node_t *ov = node_at(ld, p->value);
        struct object_type_config *ot = &cc->objects[cc->nobjects];
        struct config_values gen = {0, NULL};
        const struct config_option *tables[2] = {config_object_options, cc->ops->object_options};
        struct config_values *outs[2] = {&gen, &ot->opts};
        struct object_ctx ctx;
        const struct config_value *cv;
        const char *name;

        ret = get_key(ld, cpath.buf, ok, &name);
        if (ret == IDS_OK) {
            ret = check_name(ld, cpath.buf, ok, name);
        }
        if (ret != IDS_OK) {
            goto done;
        }
        ot->name = xstrdup(name);
        strvec_init(&ot->attributes);
        ot->loc = loc_of(ld, ok);
        cc->nobjects++;
        strbuf_reset(&path);
        strbuf_addf(&path, "%s.objects.%s", cpath.buf, name);
        ctx.cc = cc;
        ctx.ot = ot;
        ctx.path = path.buf;
        ret = parse_mapping(ld, ov, path.buf, tables, outs, 2, parse_references, &ctx);
        if (ret == IDS_OK) {
            cv = config_values_get(&gen, "attributes");
            if (cv != NULL) {
                size_t i;

                for (i = 0; i < cv->list.nr; i++) {
                    if (strvec_find(&ot->attributes, cv->list.v[i], true) >= 0) {
                        ret = fail_loc(
                            ld, cv->loc,
                            "%s.attributes: `%s` is listed twice (expected each attribute once)",
                            path.buf, cv->list.v[i]);
                        break;
                    }
                    strvec_push(&ot->attributes, cv->list.v[i]);
                }
            }
            ot->filter = xstrdup_or_null(config_get_str(&gen, "filter"));
        }
        values_release(&gen);
        if (ret != IDS_OK) {
            goto done;
        }
    }
    ret = check_references(ld, cc, val, cpath.buf);

done:
    strbuf_release(&path);
    strbuf_release(&cpath);
    return ret;
}

static enum ids_err parse_connectors(struct loader *ld, yaml_node_t *map)
{
    enum ids_err ret = IDS_OK;
    struct config *cfg = ld->cfg;
    struct strbuf path = STRBUF_INIT;
    struct strbuf types = STRBUF_INIT;
    yaml_node_pair_t *p;
    size_t i;

    for (i = 0; connector_types[i] != NULL; i++) {
        strbuf_addf(&types, "%s%s", i ? ", " : "", connector_types[i]->name);
    }
    if (!is_map(map) || map_size(map) == 0) {
        ret = fail(ld, map,
                   "connectors: expected a mapping of connector names to their settings (at "
                   "least one), got %s",
                   node_kind(map));
        goto done;
    }
    ret = check_duplicates(ld, "connectors", map);
    if (ret != IDS_OK) {
        goto done;
    }
    cfg->connectors = xcalloc(map_size(map), sizeof(*cfg->connectors));
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(ld, p->key);
        yaml_node_t *v = node_at(ld, p->value);
        struct connector_config *cc = &cfg->connectors[cfg->nconnectors];
        struct config_values gen = {0, NULL};
        const struct config_option *tables[2];
        struct config_values *outs[2] = {&gen, &cc->opts};
        yaml_node_t *tnode;
        const char *name;
        const char *type;

        ret = get_key(ld, "connectors", k, &name);
        if (ret == IDS_OK) {
            ret = check_name(ld, "connectors", k, name);
        }
        if (ret != IDS_OK) {
            goto done;
        }
        cc->name = xstrdup(name);
        cc->loc = loc_of(ld, k);
        cfg->nconnectors++;
        strbuf_reset(&path);
        strbuf_addf(&path, "connectors.%s", name);
        if (!is_map(v)) {
            ret = fail(ld, v, "%s: expected a mapping with type and objects, got %s", path.buf,
                       node_kind(v));
            goto done;
        }
        tnode = map_get(ld, v, "type");
        if (tnode == NULL) {
            ret = fail(ld, v, "%s: missing required key `type` (expected one of: %s)", path.buf,
                       types.buf);
            goto done;
        }
        if (!is_scalar(tnode) || scalar(tnode)[0] == '\0') {
            ret =
                fail(ld, tnode, "%s.type: expected a connector type, got %s (expected one of: %s)",
                     path.buf, node_kind(tnode), types.buf);
            goto done;
        }
        type = scalar(tnode);
        cc->ops = connector_type_find(type);
        if (cc->ops == NULL) {
            ret = fail(ld, tnode, "%s.type: unknown connector type `%s` (expected one of: %s)",
                       path.buf, type, types.buf);
            goto done;
        }
        cc->type = xstrdup(type);
        tables[0] = config_connector_options;
        tables[1] = cc->ops->options;
        ret = parse_mapping(ld, v, path.buf, tables, outs, 2, parse_objects, cc);
        values_release(&gen);
        if (ret != IDS_OK) {
            goto done;
        }
    }

done:
    strbuf_release(&path);
    strbuf_release(&types);
    return ret;
}

/* ---- metaverse ------------------------------------------------------------- */

/* Attributes a `from` flow of the MV type produces, and those of `to`. */
struct rule_ctx {
    struct strvec produced; /* MV attributes flowed in by some `from` of this MV type */
    const char *mvpath;     /* "metaverse.person" */
};

struct item_nodes {
    yaml_node_t *join;
    yaml_node_t *flow;
    yaml_node_t *initial;
};

static enum ids_err capture_map(struct loader *ld, const struct config_option *opt, yaml_node_t *k,
                                yaml_node_t *val, void *data)
{
    struct item_nodes *nodes = data;

    (void)ld;
    (void)k;
    if (strcmp(opt->key, "join") == 0) {
        nodes->join = val;
    } else if (strcmp(opt->key, "initial_flow") == 0) {
        nodes->initial = val;
    } else {
        nodes->flow = val;
    }
    return IDS_OK;
}

/* Append up to 30 names of sv to sb. */
static void list_names(struct strbuf *sb, const struct strvec *sv, const char *const *extra)
{
    size_t i;
    size_t n = 0;

    for (i = 0; i < sv->nr && n < 30; i++, n++) {
        strbuf_addf(sb, "%s%s", n ? ", " : "", sv->v[i]);
    }
    for (i = 0; extra != NULL && extra[i] != NULL && n < 30; i++, n++) {
        strbuf_addf(sb, "%s%s", n ? ", " : "", extra[i]);
    }
    if (sv->nr > 30) {
        strbuf_addstr(sb, ", ...");
    }
    if (n == 0) {
        strbuf_addstr(sb, "(none)");
    }
}

/* The attributes an expression reads must be in `allowed` (when
 * check is set). */
static enum ids_err check_reads(struct loader *ld, yaml_node_t *vnode, const struct expr *e,
                                const char *what, const struct strvec *allowed,
                                const char *allowed_desc)
{
    enum ids_err ret = IDS_OK;
    struct strvec names = STRVEC_INIT;
    struct strbuf sb = STRBUF_INIT;
    size_t i;

    expr_names(e, &names);
    for (i = 0; i < names.nr; i++) {
        if (strvec_find(allowed, names.v[i], true) < 0) {
            list_names(&sb, allowed, NULL);
            ret = fail(ld, vnode, "%s reads `%s`, which is not in %s (expected one of: %s)", what,
                       names.v[i], allowed_desc, sb.buf);
            break;
        }
    }
    strvec_clear(&names);
    strbuf_release(&sb);
    return ret;
}

/* Parse `KEY: EXPRESSION` into it, compiled. */
static enum ids_err parse_rule_item(struct loader *ld, yaml_node_t *k, yaml_node_t *v,
                                    const char *path, struct rule_item *it)
{
    enum ids_err ret = IDS_OK;
    struct ids_error eerr = IDS_ERROR_INIT;
    struct strbuf what = STRBUF_INIT;
    const char *key;

    ret = get_key(ld, path, k, &key);
    if (ret != IDS_OK) {
        goto done;
    }
    strbuf_addf(&what, "%s.%s", path, key);
    if (!is_scalar(v) || is_null(v)) {
        ret = fail(ld, v,
                   "%s: expected an expression (a string), got %s; quote expressions that "
                   "start with { or [",
                   what.buf, node_kind(v));
        goto done;
    }
    if (strlen(scalar(v)) != v->data.scalar.length) {
        ret = fail(ld, v, "%s: a NUL character is not allowed in an expression", what.buf);
        goto done;
    }
    it->attr = xstrdup(key);
    it->source = xstrdup(scalar(v));
    it->plain = expr_is_plain(it->source);
    it->loc = loc_of(ld, k);
    if (expr_compile(ld->cfg->expr_env, it->source, what.buf, &it->expr, &eerr) != IDS_OK) {
        ret = fail(ld, v, "%s (expected a Lua expression)", eerr.msg);
        goto done;
    }

done:
    strbuf_release(&what);
    return ret;
}

static enum ids_err parse_scope(struct loader *ld, const struct config_value *sv, const char *path,
                                struct rule_item *it)
{
    enum ids_err ret = IDS_OK;
    struct ids_error eerr = IDS_ERROR_INIT;
    struct strbuf what = STRBUF_INIT;

    strbuf_addf(&what, "%s.scope", path);
    it->attr = xstrdup("scope");
    it->source = xstrdup(sv->str);
    it->loc = sv->loc;
    if (expr_compile(ld->cfg->expr_env, it->source, what.buf, &it->expr, &eerr) != IDS_OK) {
        ret = fail_loc(ld, sv->loc, "%s (expected a Lua expression)", eerr.msg);
    }
    strbuf_release(&what);
    return ret;
}

static bool is_target_attr(const struct object_type_config *ot, const char *attr)
{
    return ot->attributes.nr == 0 || strvec_find(&ot->attributes, attr, true) >= 0;
}

static const char *const target_extra[] = {"dn", "objectClass", NULL};

/* Does the expression text call random_password? (a new value at each
 * evaluation: only an initial flow, evaluated once per create, may) */
static bool calls_random(const char *src)
{
    const char *p = src;
    const size_t n = strlen("random_password");

    while (src != NULL && (p = strstr(p, "random_password")) != NULL) {
        if ((p == src || !(isalnum((unsigned char)p[-1]) || p[-1] == '_')) &&
            !(isalnum((unsigned char)p[n]) || p[n] == '_')) {
            return true;
        }
        p += n;
    }
    return false;
}

static enum ids_err refuse_random(struct loader *ld, yaml_node_t *node, const char *path,
                                  const struct rule_item *ri)
{
    if (!calls_random(ri->source)) {
        return IDS_OK;
    }
    return fail(ld, node,
                "%s: random_password() gives another value at every sync, so this would change "
                "the value at every cycle (expected it under initial_flow of a `to` element, "
                "which is sent with the create only)",
                path);
}

/* One element of from: or to:. */
static enum ids_err parse_flow_item(struct loader *ld, struct rule_ctx *rc, yaml_node_t *item,
                                    bool inbound, int index, struct flow_config *fc)
{
    enum ids_err ret = IDS_OK;
    struct config_values vals = {0, NULL};
    struct item_nodes nodes = {NULL, NULL, NULL};
    const struct config_option *tables[1] = {inbound ? config_from_options : config_to_options};
    struct config_values *outs[1] = {&vals};
    struct strbuf path = STRBUF_INIT;
    struct strbuf sb = STRBUF_INIT;
    struct strbuf desc = STRBUF_INIT;
    struct strbuf ipath = STRBUF_INIT;
    const struct config_value *cv;
    const struct strvec *reads; /* what expressions may read */
    yaml_node_pair_t *p;
    size_t i;

    fc->index = index;
    fc->loc = loc_of(ld, item);
    strbuf_addf(&path, "%s.%s[%d]", rc->mvpath, inbound ? "from" : "to", index);
    if (!is_map(item)) {
        ret =
            fail(ld, item, "%s: expected a mapping with connector, object, join, flow ..., got %s",
                 path.buf, node_kind(item));
        goto done;
    }
    ret = parse_mapping(ld, item, path.buf, tables, outs, 1, capture_map, &nodes);
    if (ret != IDS_OK) {
        goto done;
    }
    cv = config_values_get(&vals, "connector");
    fc->connector = xstrdup(cv->str);
    fc->conn = config_connector(ld->cfg, cv->str);
    if (fc->conn == NULL) {
        for (i = 0; i < ld->cfg->nconnectors; i++) {
            strbuf_addf(&sb, "%s%s", i ? ", " : "", ld->cfg->connectors[i].name);
        }
        ret = fail_loc(ld, cv->loc, "%s.connector: undefined connector `%s` (expected one of: %s)",
                       path.buf, cv->str, sb.buf);
        goto done;
    }
    if (fc->conn->ops->caps != 0 &&
        !(fc->conn->ops->caps & (inbound ? CONN_CAP_READ : CONN_CAP_WRITE))) {
        ret = fail_loc(ld, cv->loc,
                       "%s.connector: a %s connector cannot be %s (expected a "
                       "connector that can)",
                       path.buf, fc->conn->type, inbound ? "read from" : "written to");
        goto done;
    }
    cv = config_values_get(&vals, "object");
    fc->object = xstrdup(cv->str);
    fc->otype = connector_config_object(fc->conn, cv->str);
    if (fc->otype == NULL) {
        for (i = 0; i < fc->conn->nobjects; i++) {
            strbuf_addf(&sb, "%s%s", i ? ", " : "", fc->conn->objects[i].name);
        }
        ret = fail_loc(ld, cv->loc,
                       "%s.object: connector %s has no object type `%s` (expected one of: %s)",
                       path.buf, fc->connector, cv->str, sb.buf);
        goto done;
    }
    if (inbound) {
        fc->project = config_get_bool(&vals, "project");
        reads = fc->otype->attributes.nr > 0 ? &fc->otype->attributes : NULL;
        strbuf_addf(&desc, "connectors.%s.objects.%s.attributes", fc->connector, fc->object);
    } else {
        fc->provision = config_get_bool(&vals, "provision");
        reads = &rc->produced;
        strbuf_addf(&desc, "the attributes that the `from` flows of %s produce", rc->mvpath);
    }

    cv = config_values_get(&vals, "scope");
    if (cv != NULL) {
        ret = parse_scope(ld, cv, path.buf, &fc->scope);
        if (ret == IDS_OK && reads != NULL) {
            ret = check_reads(ld, map_get(ld, item, "scope"), fc->scope.expr,
                              expr_what(fc->scope.expr), reads, desc.buf);
        }
        if (ret != IDS_OK) {
            goto done;
        }
    }

    /* join: ordered list of rules */
    if (nodes.join != NULL && !is_null(nodes.join)) {
        yaml_node_item_t *it;

        if (!is_seq(nodes.join)) {
            ret = fail(ld, nodes.join,
                       "%s.join: expected a list of join rules, got %s (e.g. join: [ { mail: "
                       "mail } ])",
                       path.buf, node_kind(nodes.join));
            goto done;
        }
        fc->joins = xcalloc(seq_size(nodes.join), sizeof(*fc->joins));
        for (it = nodes.join->data.sequence.items.start; it < nodes.join->data.sequence.items.top;
             it++) {
            yaml_node_t *rule = node_at(ld, *it);
            struct join_rule *jr = &fc->joins[fc->njoins];

            strbuf_reset(&ipath);
            strbuf_addf(&ipath, "%s.join[%zu]", path.buf, fc->njoins);
            jr->loc = loc_of(ld, rule);
            fc->njoins++;
            if (!is_map(rule) || map_size(rule) == 0) {
                ret = fail(ld, rule,
                           "%s: expected a join rule, a mapping ATTRIBUTE: EXPRESSION, got %s",
                           ipath.buf, node_kind(rule));
                goto done;
            }
            ret = check_duplicates(ld, ipath.buf, rule);
            if (ret != IDS_OK) {
                goto done;
            }
            jr->items = xcalloc(map_size(rule), sizeof(*jr->items));
            for (p = rule->data.mapping.pairs.start; p < rule->data.mapping.pairs.top; p++) {
                struct rule_item *ri = &jr->items[jr->nitems];
                yaml_node_t *jk = node_at(ld, p->key);
                yaml_node_t *jv = node_at(ld, p->value);

                ret = parse_rule_item(ld, jk, jv, ipath.buf, ri);
                jr->nitems++;
                if (ret == IDS_OK) {
                    strbuf_reset(&sb);
                    strbuf_addf(&sb, "%s.%s", ipath.buf, ri->attr);
                    ret = refuse_random(ld, jv, sb.buf, ri);
                }
                if (ret != IDS_OK) {
                    goto done;
                }
                if (inbound && strvec_find(&rc->produced, ri->attr, true) < 0) {
                    strbuf_reset(&sb);
                    list_names(&sb, &rc->produced, NULL);
                    ret = fail(ld, jk,
                               "%s: joins on metaverse attribute `%s`, which no `from` flow of "
                               "%s produces (expected one of: %s)",
                               ipath.buf, ri->attr, rc->mvpath, sb.buf);
                    goto done;
                }
                if (!inbound && !is_target_attr(fc->otype, ri->attr)) {
                    strbuf_reset(&sb);
                    list_names(&sb, &fc->otype->attributes, NULL);
                    ret = fail(ld, jk,
                               "%s: joins on `%s`, which is not in "
                               "connectors.%s.objects.%s.attributes (expected one of: %s)",
                               ipath.buf, ri->attr, fc->connector, fc->object, sb.buf);
                    goto done;
                }
                if (reads != NULL) {
                    strbuf_reset(&sb);
                    strbuf_addf(&sb, "%s.%s", ipath.buf, ri->attr);
                    ret = check_reads(ld, jv, ri->expr, sb.buf, reads, desc.buf);
                    if (ret != IDS_OK) {
                        goto done;
                    }
                }
            }
        }
    }

    /* flow: KEY -> expression */
    if (nodes.flow != NULL && !is_null(nodes.flow)) {
        if (!is_map(nodes.flow)) {
            ret = fail(ld, nodes.flow, "%s.flow: expected a mapping ATTRIBUTE: EXPRESSION, got %s",
                       path.buf, node_kind(nodes.flow));
            goto done;
        }
        strbuf_reset(&ipath);
        strbuf_addf(&ipath, "%s.flow", path.buf);
        ret = check_duplicates(ld, ipath.buf, nodes.flow);
        if (ret != IDS_OK) {
            goto done;
        }
        fc->flows = xcalloc(map_size(nodes.flow), sizeof(*fc->flows));
        for (p = nodes.flow->data.mapping.pairs.start; p < nodes.flow->data.mapping.pairs.top;
             p++) {
            struct rule_item *ri = &fc->flows[fc->nflows];
            yaml_node_t *fk = node_at(ld, p->key);
            yaml_node_t *fv = node_at(ld, p->value);

            ret = parse_rule_item(ld, fk, fv, ipath.buf, ri);
            fc->nflows++;
            if (ret == IDS_OK) {
                strbuf_reset(&sb);
                strbuf_addf(&sb, "%s.%s", ipath.buf, ri->attr);
                ret = refuse_random(ld, fv, sb.buf, ri);
            }
            if (ret != IDS_OK) {
                goto done;
            }
            if (!inbound &&
                (strcasecmp(ri->attr, "unicodePwd") == 0 ||
                 (strcmp(fc->conn->type, "scim") == 0 && strcasecmp(ri->attr, "password") == 0))) {
                ret = fail(ld, fk,
                           "%s: `%s` is never read back, so a flow would set it again at every "
                           "sync, resetting the password the user chose (expected it under "
                           "initial_flow, which is sent with the create only)",
                           ipath.buf, ri->attr);
                goto done;
            }
            if (!inbound && !is_target_attr(fc->otype, ri->attr) &&
                strcasecmp(ri->attr, "dn") != 0 && strcasecmp(ri->attr, "objectClass") != 0) {
                strbuf_reset(&sb);
                list_names(&sb, &fc->otype->attributes, target_extra);
                ret = fail(ld, fk,
                           "%s: `%s` is not in connectors.%s.objects.%s.attributes (expected "
                           "one of: %s)",
                           ipath.buf, ri->attr, fc->connector, fc->object, sb.buf);
                goto done;
            }
            if (reads != NULL) {
                strbuf_reset(&sb);
                strbuf_addf(&sb, "%s.%s", ipath.buf, ri->attr);
                ret = check_reads(ld, fv, ri->expr, sb.buf, reads, desc.buf);
                if (ret != IDS_OK) {
                    goto done;
                }
            }
        }
    }

    /* initial_flow: KEY -> expression, sent with the create only */
    if (nodes.initial != NULL && !is_null(nodes.initial)) {
        if (!is_map(nodes.initial)) {
            ret = fail(ld, nodes.initial,
                       "%s.initial_flow: expected a mapping ATTRIBUTE: EXPRESSION, got %s",
                       path.buf, node_kind(nodes.initial));
            goto done;
        }
        strbuf_reset(&ipath);
        strbuf_addf(&ipath, "%s.initial_flow", path.buf);
        ret = check_duplicates(ld, ipath.buf, nodes.initial);
        if (ret != IDS_OK) {
            goto done;
        }
        fc->initial = xcalloc(map_size(nodes.initial), sizeof(*fc->initial));
        for (p = nodes.initial->data.mapping.pairs.start; p < nodes.initial->data.mapping.pairs.top;
             p++) {
            struct rule_item *ri = &fc->initial[fc->ninitial];
            yaml_node_t *fk = node_at(ld, p->key);
            yaml_node_t *fv = node_at(ld, p->value);

            ret = parse_rule_item(ld, fk, fv, ipath.buf, ri);
            fc->ninitial++;
            if (ret != IDS_OK) {
                goto done;
            }
            if (strcasecmp(ri->attr, "dn") == 0 || strcasecmp(ri->attr, "objectClass") == 0) {
                ret = fail(ld, fk,
                           "%s: `%s` cannot be an initial flow (expected it under flow: the "
                           "create takes it from there)",
                           ipath.buf, ri->attr);
                goto done;
            }
            for (i = 0; i < fc->nflows; i++) {
                if (strcasecmp(fc->flows[i].attr, ri->attr) == 0) {
                    ret = fail(ld, fk,
                               "%s: `%s` is also in %s.flow (expected each attribute either "
                               "in flow, sent whenever it changes, or in initial_flow, sent "
                               "with the create only)",
                               ipath.buf, ri->attr, path.buf);
                    goto done;
                }
            }
            if (object_type_ref(fc->otype, ri->attr) != NULL) {
                ret = fail(ld, fk,
                           "%s: `%s` is a reference attribute of connectors.%s.objects.%s "
                           "(expected it under flow)",
                           ipath.buf, ri->attr, fc->connector, fc->object);
                goto done;
            }
            if (strcmp(fc->conn->type, "csv") == 0 && !is_target_attr(fc->otype, ri->attr)) {
                strbuf_reset(&sb);
                list_names(&sb, &fc->otype->attributes, NULL);
                ret = fail(ld, fk,
                           "%s: `%s` is not a column of connectors.%s.objects.%s.attributes "
                           "(expected one of: %s)",
                           ipath.buf, ri->attr, fc->connector, fc->object, sb.buf);
                goto done;
            }
            strbuf_reset(&sb);
            strbuf_addf(&sb, "%s.%s", ipath.buf, ri->attr);
            ret = check_reads(ld, fv, ri->expr, sb.buf, reads, desc.buf);
            if (ret != IDS_OK) {
                goto done;
            }
        }
    }

    if (!inbound) {
        const struct config_value *dv = config_values_get(&vals, "deprovision");
        const struct config_value *da = config_values_get(&vals, "disable_attribute");
        const struct config_value *dval = config_values_get(&vals, "disable_value");
        const struct config_value *ac = config_values_get(&vals, "anchor_carrier");
        bool scim = strcmp(fc->conn->type, "scim") == 0;

        fc->deprovision = strcmp(dv->str, "delete") == 0    ? DEPROVISION_DELETE
                          : strcmp(dv->str, "disable") == 0 ? DEPROVISION_DISABLE
                                                            : DEPROVISION_DISCONNECT;
        if (ac != NULL) {
            if (!is_target_attr(fc->otype, ac->str)) {
                strbuf_reset(&sb);
                list_names(&sb, &fc->otype->attributes, NULL);
                ret = fail_loc(ld, ac->loc,
                               "%s.anchor_carrier: `%s` is not in "
                               "connectors.%s.objects.%s.attributes (expected one of: %s)",
                               path.buf, ac->str, fc->connector, fc->object, sb.buf);
                goto done;
            }
            fc->anchor_carrier = xstrdup(ac->str);
        }
        if (fc->deprovision != DEPROVISION_DISABLE && (da != NULL || dval != NULL)) {
            cv = da != NULL ? da : dval;
            ret = fail_loc(ld, cv->loc,
                           "%s.%s: only used with deprovision: disable (expected deprovision: "
                           "disable, or remove this key)",
                           path.buf, cv->opt->key);
            goto done;
        }
        if (fc->deprovision == DEPROVISION_DISABLE) {
            if (da == NULL && !scim) {
                ret = fail_loc(ld, dv->loc,
                               "%s.deprovision: disable needs disable_attribute and "
                               "disable_value for a %s connector (expected disable_attribute: "
                               "ATTRIBUTE and disable_value: VALUE)",
                               path.buf, fc->conn->type);
                goto done;
            }
            if (da != NULL && dval == NULL && !scim) {
                ret = fail_loc(ld, da->loc,
                               "%s.disable_attribute: needs disable_value (expected "
                               "disable_value: VALUE)",
                               path.buf);
                goto done;
            }
            if (da != NULL && !is_target_attr(fc->otype, da->str)) {
                strbuf_reset(&sb);
                list_names(&sb, &fc->otype->attributes, NULL);
                ret = fail_loc(ld, da->loc,
                               "%s.disable_attribute: `%s` is not in "
                               "connectors.%s.objects.%s.attributes (expected one of: %s)",
                               path.buf, da->str, fc->connector, fc->object, sb.buf);
                goto done;
            }
            fc->disable_attr = xstrdup(da != NULL ? da->str : "active");
            fc->disable_value = xstrdup(dval != NULL ? dval->str : "false");
        }
        cv = config_values_get(&vals, "disable_move_to");
        if (cv != NULL) {
            struct strbuf why = STRBUF_INIT;
            struct strbuf probe = STRBUF_INIT;
            struct strbuf norm = STRBUF_INIT;
            const char *problem = NULL;

            strbuf_addf(&probe, "cn=x,%s", cv->str);
            if (fc->deprovision != DEPROVISION_DISABLE) {
                problem = "only used with deprovision: disable (expected deprovision: disable, "
                          "or remove this key)";
            } else if ((fc->conn->ops->caps & (CONN_CAP_RENAME | CONN_CAP_REF_BY_DN)) !=
                           (CONN_CAP_RENAME | CONN_CAP_REF_BY_DN) ||
                       strcmp(fc->conn->type, "ldap") != 0) {
                problem = "only for an ldap connector (expected it on a `to` element of an ldap "
                          "connector)";
            } else if (ldapdn_normalize(cv->str, &norm, NULL) != IDS_OK || norm.len == 0) {
                problem = "not a DN (expected a container such as OU=Leavers,DC=corp,DC=example)";
            } else if (!connector_dn_readable(fc->conn, fc->object, probe.buf, &why)) {
                strbuf_reset(&probe);
                strbuf_addf(&probe,
                            "outside what idsync reads of %s/%s (%s): a moved account would look "
                            "deleted (expected a container within the object type's base)",
                            fc->connector, fc->object, why.buf);
                problem = probe.buf;
            }
            if (problem != NULL) {
                ret = fail_loc(ld, cv->loc, "%s.disable_move_to: %s", path.buf, problem);
            } else {
                fc->disable_move_to = xstrdup(cv->str);
            }
            strbuf_release(&why);
            strbuf_release(&probe);
            strbuf_release(&norm);
            if (ret != IDS_OK) {
                goto done;
            }
        }
        if (fc->provision && (fc->conn->ops->caps & CONN_CAP_REF_BY_DN)) {
            bool has_dn = false;

            for (i = 0; i < fc->nflows; i++) {
                has_dn = has_dn || strcasecmp(fc->flows[i].attr, "dn") == 0;
            }
            if (!has_dn) {
                ret = fail_loc(ld, config_values_get(&vals, "provision")->loc,
                               "%s.provision: provisioning into a %s connector needs a `dn` "
                               "flow (expected flow: { dn: EXPRESSION, ... })",
                               path.buf, fc->conn->type);
                goto done;
            }
        }
    }

done:
    values_release(&vals);
    strbuf_release(&path);
    strbuf_release(&sb);
    strbuf_release(&desc);
    strbuf_release(&ipath);
    return ret;
}

/* Keys of every `from` item's flow mapping (what the MV type gets). */
static void collect_produced(struct loader *ld, yaml_node_t *from, struct strvec *out)
{
    yaml_node_item_t *it;

    if (!is_seq(from)) {
        return;
    }
    for (it = from->data.sequence.items.start; it < from->data.sequence.items.top; it++) {
        yaml_node_t *flow = map_get(ld, node_at(ld, *it), "flow");
        yaml_node_pair_t *p;

        if (!is_map(flow)) {
            continue;
        }
        for (p = flow->data.mapping.pairs.start; p < flow->data.mapping.pairs.top; p++) {
            yaml_node_t *k = node_at(ld, p->key);

            if (is_scalar(k) && !is_null(k) && strvec_find(out, scalar(k), true) < 0) {
                strvec_push(out, scalar(k));
            }
        }
    }
}

static enum ids_err parse_flow_list(struct loader *ld, struct rule_ctx *rc, yaml_node_t *list,
                                    bool inbound, struct flow_config **out, size_t *nout)
{
    enum ids_err ret = IDS_OK;
    yaml_node_item_t *it;
    size_t i;
    size_t j;

    if (list == NULL || is_null(list)) {
        return IDS_OK;
    }
    if (!is_seq(list)) {
        return fail(ld, list,
                    "%s.%s: expected a list of connector object types (- connector: NAME ...), "
                    "got %s",
                    rc->mvpath, inbound ? "from" : "to", node_kind(list));
    }
    *out = xcalloc(seq_size(list), sizeof(**out));
    for (it = list->data.sequence.items.start; it < list->data.sequence.items.top; it++) {
        struct flow_config *fc = &(*out)[*nout];

        ret = parse_flow_item(ld, rc, node_at(ld, *it), inbound, (int)*nout, fc);
        (*nout)++;
        if (ret != IDS_OK) {
            return ret;
        }
    }
    /* one connector object type once per list */
    for (i = 0; i < *nout; i++) {
        for (j = 0; j < i; j++) {
            if ((*out)[i].otype == (*out)[j].otype) {
                return fail_loc(ld, (*out)[i].loc,
                                "%s.%s[%zu]: connector %s object %s is already listed at "
                                "%s[%zu] (expected each connector object type once)",
                                rc->mvpath, inbound ? "from" : "to", i, (*out)[i].connector,
                                (*out)[i].object, inbound ? "from" : "to", j);
            }
        }
    }
    return IDS_OK;
}

struct mv_nodes {
    yaml_node_t *from;
    yaml_node_t *to;
};

static enum ids_err capture_from_to(struct loader *ld, const struct config_option *opt,
                                    yaml_node_t *k, yaml_node_t *val, void *data)
{
    struct mv_nodes *nodes = data;

    (void)ld;
    (void)k;
    if (strcmp(opt->key, "from") == 0) {
        nodes->from = val;
    } else {
        nodes->to = val;
    }
    return IDS_OK;
}

static enum ids_err parse_metaverse(struct loader *ld, yaml_node_t *map)
{
    enum ids_err ret = IDS_OK;
    struct config *cfg = ld->cfg;
    struct strbuf path = STRBUF_INIT;
    yaml_node_pair_t *p;

    if (map == NULL || is_null(map)) {
        return IDS_OK;
    }
    if (!is_map(map)) {
        return fail(ld, map,
                    "metaverse: expected a mapping of metaverse object types (person, group "
                    "...), got %s",
                    node_kind(map));
    }
    ret = check_duplicates(ld, "metaverse", map);
    if (ret != IDS_OK) {
        return ret;
    }
    cfg->mv_types = xcalloc(map_size(map), sizeof(*cfg->mv_types));
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(ld, p->key);
        yaml_node_t *v = node_at(ld, p->value);
        struct mv_type_config *mt = &cfg->mv_types[cfg->nmv_types];
        const struct config_option *tables[1] = {config_mv_type_options};
        struct config_values dummy = {0, NULL};
        struct config_values *outs[1] = {&dummy};
        struct mv_nodes nodes = {NULL, NULL};
        struct rule_ctx rc;
        const char *name;

        ret = get_key(ld, "metaverse", k, &name);
        if (ret == IDS_OK) {
            ret = check_name(ld, "metaverse", k, name);
        }
        if (ret != IDS_OK) {
            break;
        }
        mt->name = xstrdup(name);
        mt->loc = loc_of(ld, k);
        cfg->nmv_types++;
        strbuf_reset(&path);
        strbuf_addf(&path, "metaverse.%s", name);
        ret = parse_mapping(ld, v, path.buf, tables, outs, 1, capture_from_to, &nodes);
        values_release(&dummy);
        if (ret != IDS_OK) {
            break;
        }
        strvec_init(&rc.produced);
        rc.mvpath = path.buf;
        collect_produced(ld, nodes.from, &rc.produced);
        ret = parse_flow_list(ld, &rc, nodes.from, true, &mt->from, &mt->nfrom);
        if (ret == IDS_OK) {
            ret = parse_flow_list(ld, &rc, nodes.to, false, &mt->to, &mt->nto);
        }
        strvec_clear(&rc.produced);
        if (ret != IDS_OK) {
            break;
        }
    }
    strbuf_release(&path);
    return ret;
}

/* ---- other sections ------------------------------------------------------ */

static enum ids_err parse_section(struct loader *ld, yaml_node_t *node, const char *name,
                                  const struct config_option *table, struct config_values *out)
{
    const struct config_option *tables[1] = {table};
    struct config_values *outs[1] = {out};

    return parse_mapping(ld, node, name, tables, outs, 1, NULL, NULL);
}

static enum ids_err parse_safety(struct loader *ld, yaml_node_t *node)
{
    struct config_values vals = {0, NULL};
    struct safety_config *s = &ld->cfg->safety;
    enum ids_err ret;

    ret = parse_section(ld, node, "safety", config_safety_options, &vals);
    if (ret == IDS_OK) {
        s->max_deletes = config_get_int(&vals, "max_deletes");
        s->max_delete_percent = config_get_int(&vals, "max_delete_percent");
        s->max_errors = config_get_int(&vals, "max_errors");
        s->import_max_delete_percent = config_values_get(&vals, "import_max_delete_percent")
                                           ? config_get_int(&vals, "import_max_delete_percent")
                                           : s->max_delete_percent;
        s->import_min_objects = config_get_int(&vals, "import_min_objects");
        s->import_max_clear_percent = config_values_get(&vals, "import_max_clear_percent")
                                          ? config_get_int(&vals, "import_max_clear_percent")
                                          : s->import_max_delete_percent;
    }
    values_release(&vals);
    return ret;
}

static bool has_prefix(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0 && s[strlen(prefix)] != '\0';
}

static enum ids_err parse_notify(struct loader *ld, yaml_node_t *node)
{
    struct config_values vals = {0, NULL};
    struct notify_config *n = &ld->cfg->notify;
    const struct config_value *v;
    enum ids_err ret;

    strvec_init(&n->to);
    ret = parse_section(ld, node, "notify", config_notify_options, &vals);
    if (ret != IDS_OK) {
        goto done;
    }
    n->smtp = xstrdup_or_null(config_get_str(&vals, "smtp"));
    n->from = xstrdup_or_null(config_get_str(&vals, "from"));
    n->username = xstrdup_or_null(config_get_str(&vals, "username"));
    n->password_secret = xstrdup_or_null(config_get_str(&vals, "password"));
    n->webhook = xstrdup_or_null(config_get_str(&vals, "webhook"));
    n->digest_seconds = config_get_int(&vals, "digest");
    n->tls_verify = config_get_bool(&vals, "tls_verify");
    n->ca_file = xstrdup_or_null(config_get_str(&vals, "ca_file"));
    v = config_values_get(&vals, "to");
    if (v != NULL) {
        size_t i;

        for (i = 0; i < v->list.nr; i++) {
            strvec_push(&n->to, v->list.v[i]);
        }
    }
    v = config_values_get(&vals, "smtp");
    if (v != NULL && !has_prefix(v->str, "smtp://") && !has_prefix(v->str, "smtps://")) {
        ret = fail_loc(ld, v->loc,
                       "notify.smtp: `%s` is not a mail server URL (expected "
                       "smtp://HOST[:PORT] or smtps://HOST[:PORT])",
                       v->str);
        goto done;
    }
    if (v != NULL && (n->from == NULL || n->to.nr == 0)) {
        ret = fail_loc(ld, v->loc,
                       "notify: mail needs `from` and `to` as well as `smtp` "
                       "(expected from: ADDRESS and to: [ADDRESS, ...])");
        goto done;
    }
    v = config_values_get(&vals, "webhook");
    if (v != NULL && !has_prefix(v->str, "http://") && !has_prefix(v->str, "https://")) {
        ret = fail_loc(ld, v->loc,
                       "notify.webhook: `%s` is not an HTTP URL (expected http://... or "
                       "https://...)",
                       v->str);
        goto done;
    }

done:
    values_release(&vals);
    return ret;
}

static enum ids_err parse_serve(struct loader *ld, yaml_node_t *node)
{
    struct config_values *vals = &ld->cfg->serve;
    const struct config_value *v;
    const char *colon;
    long port = 0;
    enum ids_err ret;

    ret = parse_section(ld, node, "serve", config_serve_options, vals);
    if (ret != IDS_OK) {
        return ret;
    }
    v = config_values_get(vals, "listen");
    colon = strrchr(v->str, ':');
    if (colon == NULL || colon == v->str || !parse_long(colon + 1, &port) || port < 1 ||
        port > 65535 || (v->str[0] == '[' && colon[-1] != ']')) {
        return fail_loc(ld, v->loc,
                        "serve.listen: `%s` is not an address (expected HOST:PORT, e.g. "
                        "127.0.0.1:8470, or [IPv6]:PORT)",
                        v->str);
    }
    if ((config_values_get(vals, "tls_cert_file") == NULL) !=
        (config_values_get(vals, "tls_key_file") == NULL)) {
        v = config_values_get(vals, "tls_cert_file");
        if (v == NULL) {
            v = config_values_get(vals, "tls_key_file");
        }
        return fail_loc(ld, v->loc,
                        "serve: HTTPS needs both tls_cert_file and tls_key_file (expected both "
                        "or neither)");
    }
    return IDS_OK;
}

/* ---- top level ------------------------------------------------------------- */

struct top_nodes {
    yaml_node_t *connectors;
    yaml_node_t *metaverse;
    yaml_node_t *safety;
    yaml_node_t *notify;
    yaml_node_t *serve;
    yaml_node_t *log;
};

static enum ids_err capture_top(struct loader *ld, const struct config_option *opt, yaml_node_t *k,
                                yaml_node_t *val, void *data)
{
    struct top_nodes *t = data;

    (void)ld;
    (void)k;
    if (strcmp(opt->key, "connectors") == 0) {
        t->connectors = val;
    } else if (strcmp(opt->key, "metaverse") == 0) {
        t->metaverse = val;
    } else if (strcmp(opt->key, "safety") == 0) {
        t->safety = val;
    } else if (strcmp(opt->key, "notify") == 0) {
        t->notify = val;
    } else if (strcmp(opt->key, "serve") == 0) {
        t->serve = val;
    } else {
        t->log = val;
    }
    return IDS_OK;
}

static enum ids_err parse_store(struct loader *ld, const struct config_value *v)
{
    const char *s = v->str;

    if (strncmp(s, "sqlite:", 7) == 0 && s[7] != '\0') {
        if (strcmp(s + 7, ":memory:") == 0 || s[7] == '/') {
            ld->cfg->store = xstrdup(s);
        } else {
            char *p = resolve_path(ld->cfg, s + 7);
            struct strbuf sb = STRBUF_INIT;

            strbuf_addf(&sb, "sqlite:%s", p);
            free(p);
            ld->cfg->store = strbuf_detach(&sb, NULL);
        }
        return IDS_OK;
    }
    if (strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0) {
        ld->cfg->store = xstrdup(s);
        return IDS_OK;
    }
    return fail_loc(ld, v->loc,
                    "store: `%s` is not a store (expected sqlite:PATH or postgresql://...)", s);
}

static enum ids_err load_document(struct loader *ld)
{
    enum ids_err ret = IDS_OK;
    struct config *cfg = ld->cfg;
    struct config_values top = {0, NULL};
    struct top_nodes nodes;
    const struct config_option *tables[1] = {config_top_options};
    struct config_values *outs[1] = {&top};
    yaml_node_t *root = yaml_document_get_root_node(&ld->doc);
    struct ids_error eerr = IDS_ERROR_INIT;

    memset(&nodes, 0, sizeof(nodes));
    if (root == NULL || is_null(root)) {
        ret = fail_loc(ld, loc_of(ld, root),
                       "the configuration is empty (expected a mapping with connectors, "
                       "metaverse ...)");
        goto done;
    }
    if (!is_map(root)) {
        ret = fail(ld, root, "expected a mapping with connectors, metaverse ..., got %s",
                   node_kind(root));
        goto done;
    }
    ret = check_duplicates(ld, "top level", root);
    if (ret != IDS_OK) {
        goto done;
    }
    ret = parse_mapping(ld, root, "top level", tables, outs, 1, capture_top, &nodes);
    if (ret != IDS_OK) {
        goto done;
    }
    ret = parse_store(ld, config_values_get(&top, "store"));
    if (ret != IDS_OK) {
        goto done;
    }
    cfg->schedule_seconds = config_get_int(&top, "schedule");
    cfg->run_history_seconds = config_get_int(&top, "run_history");
    if (expr_env_new(NULL, &cfg->expr_env, &eerr) != IDS_OK) {
        ret = ids_error_set(ld->err, IDS_ECONFIG, "%s: %s", ld->file, eerr.msg);
        goto done;
    }
    ret = parse_connectors(ld, nodes.connectors);
    if (ret == IDS_OK) {
        ret = parse_safety(ld, nodes.safety);
    }
    if (ret == IDS_OK) {
        ret = parse_notify(ld, nodes.notify);
    }
    if (ret == IDS_OK) {
        ret = parse_serve(ld, nodes.serve);
    }
    if (ret == IDS_OK) {
        ret = parse_section(ld, nodes.log, "log", config_log_options, &cfg->log);
    }
    if (ret == IDS_OK) {
        ret = parse_metaverse(ld, nodes.metaverse);
    }

done:
    values_release(&top);
    return ret;
}

static enum ids_err load(struct config *cfg, const char *name, const char *yaml, size_t len,
                         struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct loader ld;
    yaml_parser_t parser;
    yaml_document_t extra;
    bool have_doc = false;

    memset(&ld, 0, sizeof(ld));
    ld.cfg = cfg;
    ld.file = name;
    ld.err = err;
    if (!yaml_parser_initialize(&parser)) {
        return ids_error_set(err, IDS_ENOMEM, "%s: cannot start the YAML parser", name);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &ld.doc)) {
        struct config_loc loc = {cfg->path, (int)parser.problem_mark.line + 1,
                                 (int)parser.problem_mark.column + 1};

        ret = fail_loc(&ld, loc, "YAML syntax error: %s%s%s (expected valid YAML)",
                       parser.problem != NULL ? parser.problem : "unknown problem",
                       parser.context != NULL ? " " : "",
                       parser.context != NULL ? parser.context : "");
        goto done;
    }
    have_doc = true;
    if (yaml_document_get_root_node(&ld.doc) != NULL) {
        /* one document only */
        if (!yaml_parser_load(&parser, &extra)) {
            struct config_loc loc = {cfg->path, (int)parser.problem_mark.line + 1,
                                     (int)parser.problem_mark.column + 1};

            ret = fail_loc(&ld, loc, "YAML syntax error: %s (expected one YAML document)",
                           parser.problem != NULL ? parser.problem : "unknown problem");
            goto done;
        }
        if (yaml_document_get_root_node(&extra) != NULL) {
            struct config_loc loc = {cfg->path, (int)extra.start_mark.line + 1,
                                     (int)extra.start_mark.column + 1};

            yaml_document_delete(&extra);
            ret = fail_loc(&ld, loc, "a second YAML document (expected one document)");
            goto done;
        }
        yaml_document_delete(&extra);
    }
    ret = load_document(&ld);

done:
    if (have_doc) {
        yaml_document_delete(&ld.doc);
    }
    yaml_parser_delete(&parser);
    return ret;
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL) {
        return xstrdup(".");
    }
    if (slash == path) {
        return xstrdup("/");
    }
    return xmemdup(path, (size_t)(slash - path));
}

static char *absolute(const char *path)
{
    char cwd[PATH_MAX];
    struct strbuf sb = STRBUF_INIT;

    if (path[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL) {
        return xstrdup(path);
    }
    strbuf_addf(&sb, "%s/%s", cwd, path);
    return strbuf_detach(&sb, NULL);
}

enum ids_err config_load_string(const char *name, const char *yaml, size_t len, struct config **out,
                                struct ids_error *err)
{
    enum ids_err ret;
    struct config *cfg = xcalloc(1, sizeof(*cfg));
    char *abs;

    *out = NULL;
    strvec_init(&cfg->notify.to);
    cfg->path = xstrdup(name);
    abs = absolute(name);
    cfg->dir = dir_of(abs);
    free(abs);
    ret = load(cfg, name, yaml, len, err);
    if (ret != IDS_OK) {
        config_free(cfg);
        return ret;
    }
    *out = cfg;
    return IDS_OK;
}

enum ids_err config_load(const char *path, struct config **out, struct ids_error *err)
{
    enum ids_err ret;
    struct strbuf sb = STRBUF_INIT;
    struct ids_error rerr = IDS_ERROR_INIT;
    struct config *cfg = NULL;
    char *abs = NULL;

    *out = NULL;
    sb.max = CONFIG_MAX_FILE;
    ret = strbuf_read_file(&sb, path, &rerr);
    if (ret != IDS_OK) {
        ret = ids_error_set(err, IDS_ECONFIG, "%s", rerr.msg);
        goto done;
    }
    cfg = xcalloc(1, sizeof(*cfg));
    strvec_init(&cfg->notify.to);
    abs = absolute(path);
    cfg->path = xstrdup(abs);
    cfg->dir = dir_of(abs);
    ret = load(cfg, path, sb.buf, sb.len, err);
    if (ret != IDS_OK) {
        config_free(cfg);
        goto done;
    }
    *out = cfg;

done:
    free(abs);
    strbuf_release(&sb);
    return ret;
}
