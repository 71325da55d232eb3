/* config.h - the YAML configuration as typed structs.
 *
 * config_load() parses one YAML file (libyaml) into struct config and
 * validates everything that can be checked without a network: unknown keys,
 * types, bounds, references to undefined connectors / object types /
 * attributes, and expressions that do not compile (they are compiled here,
 * once, and kept in the structs). Every error names FILE:LINE:COLUMN and what
 * was expected. Nothing is fetched and no secret is read at load time.
 *
 * Options are declared once, in tables of struct config_option (top level,
 * safety, notify, and each connector type's ops->options / object_options);
 * the same tables drive parsing, defaults, `idsync config dump` and
 * docs/configuration.md (`idsync config docs` regenerates it; a test checks
 * they agree).
 *
 * Secrets: keys of type OPT_SECRET hold either `env:NAME` or are given as
 * `KEY_file: PATH` (the loader accepts both forms: `password_file: /x` or
 * `password: env:X`); literal secret values in the file are rejected.
 * config_secret() reads the secret at the time it is needed.
 */
#ifndef IDSYNC_CONFIG_H
#define IDSYNC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"
#include "util/strbuf.h"
#include "util/strvec.h"

struct expr;     /* expr/expr.h */
struct expr_env; /* expr/expr.h */
struct connector_ops;

struct config_loc {
    const char *file; /* borrowed from struct config.path */
    int line;         /* 1-based */
    int col;          /* 1-based */
};

enum opt_type {
    OPT_STRING,
    OPT_INT,      /* long, within [min, max] */
    OPT_BOOL,     /* true/false/yes/no */
    OPT_ENUM,     /* one of `choices`, "a|b|c" */
    OPT_DURATION, /* "30s", "5m", "2h", "1d" or seconds -> seconds in `num` */
    OPT_LIST,     /* YAML sequence of strings, or one string */
    OPT_SECRET,   /* `KEY: env:NAME` or `KEY_file: PATH`; never a literal */
    OPT_PATH,     /* a file path, relative to the configuration file's folder */
    OPT_MAP,      /* a nested mapping, parsed by the owner of the table (objects, references) */
};

/* One declared option. Tables end with an entry whose key is NULL. */
struct config_option {
    const char *key;
    enum opt_type type;
    const char *def;     /* default as text, NULL = none */
    long min, max;       /* OPT_INT bounds (ignored when min == max == 0) */
    const char *choices; /* OPT_ENUM: "a|b|c" */
    bool required;
    const char *help; /* one sentence for docs/configuration.md */
};

/* A parsed value of one option (connector-specific and per-object keys). */
struct config_value {
    const struct config_option *opt; /* the declaration it matched */
    char *str;                       /* scalar value (or NULL for lists/maps) */
    long num;                        /* OPT_INT, OPT_BOOL (0/1), OPT_DURATION (seconds) */
    struct strvec list;              /* OPT_LIST */
    bool is_default;                 /* not in the file: filled from opt->def */
    struct config_loc loc;
};

struct config_values {
    size_t nr;
    struct config_value *v;
};

/* references: { member: [user, group, contact] } */
struct reference_config {
    char *attr;          /* the reference attribute of this object type */
    struct strvec types; /* object types its values may point to */
};

struct object_type_config {
    char *name;               /* "user"; the key under objects: */
    struct strvec attributes; /* attributes read and written */
    char *filter;             /* LDAP filter / SCIM filter / NULL */
    size_t nrefs;
    struct reference_config *refs;
    struct config_values opts; /* connector-specific keys (base, scope, object_classes...) */
    struct config_loc loc;
};

struct connector_config {
    char *name;                      /* key under connectors: */
    char *type;                      /* csv | ldif | ldap | scim | null */
    const struct connector_ops *ops; /* resolved from type */
    struct config_values opts;       /* connector-specific keys, validated against ops->options */
    size_t nobjects;
    struct object_type_config *objects;
    struct config_loc loc;
};

/* `mail: mail` in a join list, or `displayName: 'expr'` in a flow. */
struct rule_item {
    char *attr;        /* the key: an MV attribute (from) or a connector attribute (to) */
    char *source;      /* the expression text as written */
    struct expr *expr; /* compiled; owned */
    bool plain;        /* the expression is a bare attribute name (plain copy) */
    struct config_loc loc;
};

/* One join rule: all its conditions must hold (usually there is one). */
struct join_rule {
    size_t nitems;
    struct rule_item *items;
    struct config_loc loc;
};

enum deprovision_mode { DEPROVISION_DELETE, DEPROVISION_DISABLE, DEPROVISION_DISCONNECT };

/* One element of a metaverse type's from: or to: list. */
struct flow_config {
    int index;                     /* position in from/to, 0-based: precedence (from) and lineage */
    char *connector;               /* connector name */
    struct connector_config *conn; /* resolved */
    char *object;                  /* object type name */
    struct object_type_config *otype; /* resolved */
    struct rule_item scope; /* optional scope filter expression (expr NULL = everything) */
    size_t njoins;
    struct join_rule *joins; /* ordered */
    size_t nflows;
    struct rule_item *flows;
    /* from: only */
    bool project;
    /* to: only */
    bool provision;
    enum deprovision_mode deprovision;
    char *anchor_carrier;  /* connector attribute holding the MV source anchor; may be NULL */
    char *disable_attr;    /* deprovision: disable -> set this attribute ... */
    char *disable_value;   /* ... to this value (LDAP/CSV); SCIM uses active=false */
    char *disable_move_to; /* ... and moved into this container (LDAP), or NULL */
    size_t ninitial;
    struct rule_item *initial; /* initial_flow: sent with the create only (passwords) */
    struct config_loc loc;
};

struct mv_type_config {
    char *name; /* "person" */
    size_t nfrom;
    struct flow_config *from;
    size_t nto;
    struct flow_config *to;
    struct config_loc loc;
};

struct safety_config {
    long max_deletes;               /* per export per connector; 0 disables; default 500 */
    long max_delete_percent;        /* of the connector space; 0 disables; default 10 */
    long max_errors;                /* per run; 0 = unlimited; default 5000 */
    long import_max_delete_percent; /* full import guard; default = max_delete_percent */
    long import_min_objects; /* the import guard applies to spaces at least this big; default 10 */
    long import_max_clear_percent; /* attribute guard; default = import_max_delete_percent */
};

struct notify_config {
    char *smtp; /* smtp:// or smtps:// URL, or NULL */
    char *from;
    struct strvec to;
    char *username;
    char *password_secret; /* "env:NAME" or "file:PATH", NULL = none */
    char *webhook;         /* URL for a JSON POST, or NULL */
    long digest_seconds;   /* 0 = mail each new problem once */
    bool tls_verify;
    char *ca_file;
};

struct config {
    char *path;  /* the file loaded (absolute) */
    char *dir;   /* its folder: relative paths resolve against it */
    char *store; /* "sqlite:PATH" or "postgresql://..." */
    size_t nconnectors;
    struct connector_config *connectors;
    size_t nmv_types;
    struct mv_type_config *mv_types;
    struct safety_config safety;
    struct notify_config notify;
    long schedule_seconds;      /* default 1800 */
    long run_history_seconds;   /* runs older are removed by each cycle; 0: kept (default 30d) */
    struct config_values serve; /* serve: listen, token_file, tls_cert_file ... (issue 6) */
    struct expr_env *expr_env;  /* the expression runtime the rules were compiled in; owned */
    struct config_values log;   /* log: level (debug|info|warn|error), format (logfmt|json) */
};

/* Parse and validate. On error returns IDS_ECONFIG with err->msg
 * "FILE:LINE:COL: what is wrong (expected ...)". *out is freed with config_free. */
enum ids_err config_load(const char *path, struct config **out, struct ids_error *err);
/* The same from a string (tests, fuzzing); `name` is used in messages. */
enum ids_err config_load_string(const char *name, const char *yaml, size_t len, struct config **out,
                                struct ids_error *err);
void config_free(struct config *cfg); /* NULL-safe */

struct connector_config *config_connector(const struct config *cfg, const char *name);
/* Is connector `name` in some metaverse `from` (inbound: a source), or in
 * some `to` (a target)? */
bool config_connector_used(const struct config *cfg, const char *name, bool inbound);
struct object_type_config *connector_config_object(const struct connector_config *cc,
                                                   const char *type);
const struct reference_config *object_type_ref(const struct object_type_config *ot,
                                               const char *attr);

/* Value of a connector (or object type) option, with its default. NULL when
 * unset and without default. */
const struct config_value *config_values_get(const struct config_values *vals, const char *key);
const char *config_get_str(const struct config_values *vals, const char *key);
long config_get_int(const struct config_values *vals, const char *key);
bool config_get_bool(const struct config_values *vals, const char *key);
/* Resolve an OPT_PATH value against the configuration's folder. Caller frees. */
char *config_path(const struct config *cfg, const char *path);

/* Read the secret of option `key` (OPT_SECRET): from the file named by
 * KEY_file, or the environment variable of `env:NAME`. Trailing newline
 * stripped. IDS_ENOTFOUND when not configured; IDS_EIO/IDS_ECONFIG naming
 * the file or variable (never the secret). */
enum ids_err config_secret(const struct config_values *vals, const char *key, struct strbuf *out,
                           struct ids_error *err);

/* `idsync config dump`: the effective configuration (defaults filled in) as
 * YAML, or JSON with as_json; secrets shown as "***" with their source. */
void config_dump(const struct config *cfg, bool as_json, struct strbuf *out);
/* docs/configuration.md, generated from the option tables. */
void config_docs(struct strbuf *out);

/* The option tables of the configuration's own sections (each connector
 * type's tables are in its connector_ops). Read cfg->serve and cfg->log with
 * config_get_str()/config_get_bool() and these keys. OPT_PATH values are
 * stored already resolved against the configuration's folder. */
extern const struct config_option config_top_options[];       /* store, connectors, ... */
extern const struct config_option config_connector_options[]; /* type, objects */
extern const struct config_option config_object_options[];    /* attributes, filter, references */
extern const struct config_option config_mv_type_options[];   /* from, to */
extern const struct config_option config_from_options[];
extern const struct config_option config_to_options[];
extern const struct config_option config_safety_options[];
extern const struct config_option config_notify_options[];
extern const struct config_option config_serve_options[]; /* listen, token_file, tls_cert_file,
                                                             tls_key_file, console */
extern const struct config_option config_log_options[];   /* level, format */

#endif
