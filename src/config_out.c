/* config_out.c - `idsync config dump` (the effective configuration as YAML
 * or JSON, secrets masked) and `idsync config docs` (docs/configuration.md),
 * both driven by the option tables of config.c and the connector types. */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "config_int.h"
#include "connector/connector.h"
#include "expr/expr.h"
#include "util/mem.h"
#include "util/banned.h"

/* ---- dump: build a JSON tree ------------------------------------------------ */

static json_t *jstr(const char *s)
{
    json_t *j;

    if (s == NULL) {
        return json_null();
    }
    j = json_string(s);
    return j != NULL ? j : json_string("(not UTF-8)");
}

static json_t *jlist(const struct strvec *sv)
{
    json_t *a = json_array();
    size_t i;

    for (i = 0; i < sv->nr; i++) {
        json_array_append_new(a, jstr(sv->v[i]));
    }
    return a;
}

static json_t *jduration(long seconds)
{
    struct strbuf sb = STRBUF_INIT;
    json_t *j;

    config_format_duration(&sb, seconds);
    j = jstr(sb.buf);
    strbuf_release(&sb);
    return j;
}

/* A secret as "*** (env:NAME)" or "*** (file:/path)": the source, never the secret. */
static json_t *jsecret(const char *source)
{
    struct strbuf sb = STRBUF_INIT;
    json_t *j;

    strbuf_addf(&sb, "*** (%s)", source);
    j = jstr(sb.buf);
    strbuf_release(&sb);
    return j;
}

static json_t *value_json(const struct config_value *v)
{
    json_t *j;

    switch (v->opt->type) {
    case OPT_INT:
        return json_integer(v->num);
    case OPT_BOOL:
        return json_boolean(v->num != 0);
    case OPT_DURATION:
        return jduration(v->num);
    case OPT_LIST:
        return jlist(&v->list);
    case OPT_SECRET:
        return jsecret(v->str != NULL ? v->str : "?");
    case OPT_MAP:
        j = v->str != NULL ? json_loads(v->str, 0, NULL) : NULL;
        return j != NULL ? j : json_object();
    default:
        return jstr(v->str);
    }
}

/* Values of `vals` in the order of `table`. */
static void add_values(json_t *obj, const struct config_option *table,
                       const struct config_values *vals)
{
    const struct config_option *o;

    for (o = table; o != NULL && o->key != NULL; o++) {
        const struct config_value *v = config_values_get(vals, o->key);

        if (v != NULL) {
            json_object_set_new(obj, o->key, value_json(v));
        }
    }
}

static json_t *rule_items_json(const struct rule_item *items, size_t n)
{
    json_t *o = json_object();
    size_t i;

    for (i = 0; i < n; i++) {
        json_object_set_new(o, items[i].attr, jstr(items[i].source));
    }
    return o;
}

static json_t *flow_json(const struct flow_config *fc, bool inbound)
{
    static const char *const modes[] = {"delete", "disable", "disconnect"};
    json_t *o = json_object();
    json_t *joins;
    size_t i;

    json_object_set_new(o, "connector", jstr(fc->connector));
    json_object_set_new(o, "object", jstr(fc->object));
    if (inbound) {
        json_object_set_new(o, "project", json_boolean(fc->project));
    } else {
        json_object_set_new(o, "provision", json_boolean(fc->provision));
        json_object_set_new(o, "deprovision", jstr(modes[fc->deprovision]));
        if (fc->anchor_carrier != NULL) {
            json_object_set_new(o, "anchor_carrier", jstr(fc->anchor_carrier));
        }
        if (fc->disable_attr != NULL) {
            json_object_set_new(o, "disable_attribute", jstr(fc->disable_attr));
            json_object_set_new(o, "disable_value", jstr(fc->disable_value));
        }
        if (fc->disable_move_to != NULL) {
            json_object_set_new(o, "disable_move_to", jstr(fc->disable_move_to));
        }
    }
    if (fc->scope.source != NULL) {
        json_object_set_new(o, "scope", jstr(fc->scope.source));
    }
    joins = json_array();
    for (i = 0; i < fc->njoins; i++) {
        json_array_append_new(joins, rule_items_json(fc->joins[i].items, fc->joins[i].nitems));
    }
    json_object_set_new(o, "join", joins);
    json_object_set_new(o, "flow", rule_items_json(fc->flows, fc->nflows));
    if (!inbound && fc->ninitial > 0) {
        json_t *ini = json_object();

        for (i = 0; i < fc->ninitial; i++) {
            /* a password written as a literal would be a secret in the file */
            json_object_set_new(
                ini, fc->initial[i].attr,
                jstr(attr_is_password(fc->initial[i].attr) ? "***" : fc->initial[i].source));
        }
        json_object_set_new(o, "initial_flow", ini);
    }
    return o;
}

static json_t *config_json(const struct config *cfg)
{
    json_t *root = json_object();
    json_t *conns = json_object();
    json_t *mv = json_object();
    json_t *o;
    size_t i;
    size_t j;
    size_t k;

    json_object_set_new(root, "store", jstr(cfg->store));
    json_object_set_new(root, "schedule", jduration(cfg->schedule_seconds));
    for (i = 0; i < cfg->nconnectors; i++) {
        const struct connector_config *cc = &cfg->connectors[i];
        json_t *c = json_object();
        json_t *objs = json_object();

        json_object_set_new(c, "type", jstr(cc->type));
        add_values(c, cc->ops != NULL ? cc->ops->options : NULL, &cc->opts);
        for (j = 0; j < cc->nobjects; j++) {
            const struct object_type_config *ot = &cc->objects[j];
            json_t *t = json_object();

            if (ot->attributes.nr > 0) {
                json_object_set_new(t, "attributes", jlist(&ot->attributes));
            }
            if (ot->filter != NULL) {
                json_object_set_new(t, "filter", jstr(ot->filter));
            }
            if (ot->nrefs > 0) {
                json_t *refs = json_object();

                for (k = 0; k < ot->nrefs; k++) {
                    json_object_set_new(refs, ot->refs[k].attr, jlist(&ot->refs[k].types));
                }
                json_object_set_new(t, "references", refs);
            }
            add_values(t, cc->ops != NULL ? cc->ops->object_options : NULL, &ot->opts);
            json_object_set_new(objs, ot->name, t);
        }
        json_object_set_new(c, "objects", objs);
        json_object_set_new(conns, cc->name, c);
    }
    json_object_set_new(root, "connectors", conns);
    for (i = 0; i < cfg->nmv_types; i++) {
        const struct mv_type_config *mt = &cfg->mv_types[i];
        json_t *t = json_object();
        json_t *from = json_array();
        json_t *to = json_array();

        for (j = 0; j < mt->nfrom; j++) {
            json_array_append_new(from, flow_json(&mt->from[j], true));
        }
        for (j = 0; j < mt->nto; j++) {
            json_array_append_new(to, flow_json(&mt->to[j], false));
        }
        json_object_set_new(t, "from", from);
        json_object_set_new(t, "to", to);
        json_object_set_new(mv, mt->name, t);
    }
    json_object_set_new(root, "metaverse", mv);

    o = json_object();
    json_object_set_new(o, "max_deletes", json_integer(cfg->safety.max_deletes));
    json_object_set_new(o, "max_delete_percent", json_integer(cfg->safety.max_delete_percent));
    json_object_set_new(o, "max_errors", json_integer(cfg->safety.max_errors));
    json_object_set_new(o, "import_max_delete_percent",
                        json_integer(cfg->safety.import_max_delete_percent));
    json_object_set_new(o, "import_max_clear_percent",
                        json_integer(cfg->safety.import_max_clear_percent));
    json_object_set_new(o, "import_min_objects", json_integer(cfg->safety.import_min_objects));
    json_object_set_new(root, "safety", o);

    o = json_object();
    if (cfg->notify.smtp != NULL) {
        json_object_set_new(o, "smtp", jstr(cfg->notify.smtp));
    }
    if (cfg->notify.from != NULL) {
        json_object_set_new(o, "from", jstr(cfg->notify.from));
    }
    if (cfg->notify.to.nr > 0) {
        json_object_set_new(o, "to", jlist(&cfg->notify.to));
    }
    if (cfg->notify.username != NULL) {
        json_object_set_new(o, "username", jstr(cfg->notify.username));
    }
    if (cfg->notify.password_secret != NULL) {
        json_object_set_new(o, "password", jsecret(cfg->notify.password_secret));
    }
    if (cfg->notify.webhook != NULL) {
        json_object_set_new(o, "webhook", jstr(cfg->notify.webhook));
    }
    json_object_set_new(o, "digest", jduration(cfg->notify.digest_seconds));
    json_object_set_new(o, "tls_verify", json_boolean(cfg->notify.tls_verify));
    if (cfg->notify.ca_file != NULL) {
        json_object_set_new(o, "ca_file", jstr(cfg->notify.ca_file));
    }
    json_object_set_new(root, "notify", o);

    o = json_object();
    add_values(o, config_serve_options, &cfg->serve);
    json_object_set_new(root, "serve", o);
    o = json_object();
    add_values(o, config_log_options, &cfg->log);
    json_object_set_new(root, "log", o);
    return root;
}

/* ---- dump: YAML from the JSON tree ----------------------------------------- */

static bool yaml_plain_ok(const char *s)
{
    static const char *const words[] = {"true", "false", "yes", "no", "on",
                                        "off",  "null",  "y",   "n"};
    size_t i;

    if (s[0] == '\0' || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == '/')) {
        return false;
    }
    for (i = 0; s[i]; i++) {
        if (!isalnum((unsigned char)s[i]) && strchr("_./@+-", s[i]) == NULL) {
            return false;
        }
    }
    for (i = 0; i < ARRAY_SIZE(words); i++) {
        if (strcasecmp(s, words[i]) == 0) {
            return false;
        }
    }
    return true;
}

static void yaml_string(struct strbuf *out, const char *s, size_t len)
{
    if (strlen(s) == len && yaml_plain_ok(s)) {
        strbuf_addstr(out, s);
    } else {
        /* a JSON string is a valid YAML double-quoted scalar */
        strbuf_add_json_str(out, s, len);
    }
}

static void yaml_scalar(struct strbuf *out, json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_STRING:
        yaml_string(out, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        strbuf_addf(out, "%lld", (long long)json_integer_value(j));
        break;
    case JSON_REAL:
        strbuf_addf(out, "%.17g", json_real_value(j));
        break;
    case JSON_TRUE:
        strbuf_addstr(out, "true");
        break;
    case JSON_FALSE:
        strbuf_addstr(out, "false");
        break;
    case JSON_OBJECT:
        strbuf_addstr(out, "{}");
        break;
    case JSON_ARRAY:
        strbuf_addstr(out, "[]");
        break;
    default:
        strbuf_addstr(out, "null");
        break;
    }
}

static bool is_scalar_json(json_t *j)
{
    return !(json_is_object(j) && json_object_size(j) > 0) &&
           !(json_is_array(j) && json_array_size(j) > 0);
}

static bool all_scalars(json_t *a)
{
    size_t i;
    json_t *v;

    json_array_foreach(a, i, v)
    {
        if (!is_scalar_json(v) || json_is_object(v) || json_is_array(v)) {
            return false;
        }
    }
    return true;
}

static void yaml_object(struct strbuf *out, json_t *o, int indent, bool first_inline);

static void yaml_array(struct strbuf *out, json_t *a, int indent)
{
    size_t i;
    json_t *v;

    json_array_foreach(a, i, v)
    {
        strbuf_addf(out, "%*s- ", indent, "");
        if (json_is_object(v) && json_object_size(v) > 0) {
            yaml_object(out, v, indent + 2, true);
        } else if (json_is_array(v) && json_array_size(v) > 0) {
            strbuf_addch(out, '\n');
            yaml_array(out, v, indent + 2);
        } else {
            yaml_scalar(out, v);
            strbuf_addch(out, '\n');
        }
    }
}

static void yaml_value(struct strbuf *out, json_t *v, int indent)
{
    size_t i;
    json_t *x;

    if (json_is_object(v) && json_object_size(v) > 0) {
        strbuf_addch(out, '\n');
        yaml_object(out, v, indent + 2, false);
    } else if (json_is_array(v) && json_array_size(v) > 0 && all_scalars(v)) {
        strbuf_addstr(out, " [");
        json_array_foreach(v, i, x)
        {
            if (i > 0) {
                strbuf_addstr(out, ", ");
            }
            yaml_scalar(out, x);
        }
        strbuf_addstr(out, "]\n");
    } else if (json_is_array(v) && json_array_size(v) > 0) {
        strbuf_addch(out, '\n');
        yaml_array(out, v, indent + 2);
    } else {
        strbuf_addch(out, ' ');
        yaml_scalar(out, v);
        strbuf_addch(out, '\n');
    }
}

static void yaml_object(struct strbuf *out, json_t *o, int indent, bool first_inline)
{
    const char *key;
    json_t *v;
    bool first = true;

    json_object_foreach(o, key, v)
    {
        if (!(first && first_inline)) {
            strbuf_addf(out, "%*s", indent, "");
        }
        first = false;
        yaml_string(out, key, strlen(key));
        strbuf_addch(out, ':');
        yaml_value(out, v, indent);
    }
}

void config_dump(const struct config *cfg, bool as_json, struct strbuf *out)
{
    json_t *root = config_json(cfg);

    if (as_json) {
        char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

        if (text != NULL) {
            strbuf_addstr(out, text);
            strbuf_addch(out, '\n');
            free(text);
        }
    } else {
        strbuf_addf(out, "# effective configuration of %s (defaults filled in, secrets masked)\n",
                    cfg->path);
        yaml_object(out, root, 0, false);
    }
    json_decref(root);
}

/* ---- docs ----------------------------------------------------------------- */

static void md_text(struct strbuf *out, const char *s)
{
    for (; s != NULL && *s; s++) {
        if (*s == '|') {
            strbuf_addstr(out, "\\|");
        } else if (*s == '\n') {
            strbuf_addch(out, ' ');
        } else {
            strbuf_addch(out, *s);
        }
    }
}

static void md_type(struct strbuf *out, const struct config_option *o)
{
    struct strvec ch = STRVEC_INIT;
    size_t i;

    switch (o->type) {
    case OPT_STRING:
        strbuf_addstr(out, "string");
        break;
    case OPT_INT:
        strbuf_addstr(out, "integer");
        if (!(o->min == 0 && o->max == 0)) {
            strbuf_addf(out, " (%ld to %ld)", o->min, o->max);
        }
        break;
    case OPT_BOOL:
        strbuf_addstr(out, "boolean");
        break;
    case OPT_ENUM:
        strvec_split(&ch, o->choices != NULL ? o->choices : "", '|', true);
        for (i = 0; i < ch.nr; i++) {
            strbuf_addf(out, "%s`%s`", i ? " \\| " : "", ch.v[i]);
        }
        strvec_clear(&ch);
        break;
    case OPT_DURATION:
        strbuf_addstr(out, "duration");
        if (!(o->min == 0 && o->max == 0)) {
            strbuf_addstr(out, " (");
            config_format_duration(out, o->min);
            strbuf_addstr(out, " to ");
            config_format_duration(out, o->max);
            strbuf_addch(out, ')');
        }
        break;
    case OPT_LIST:
        strbuf_addstr(out, "list of strings");
        break;
    case OPT_SECRET:
        strbuf_addstr(out, "secret");
        break;
    case OPT_PATH:
        strbuf_addstr(out, "path");
        break;
    case OPT_MAP:
        if (strcmp(o->key, "join") == 0 || strcmp(o->key, "from") == 0 ||
            strcmp(o->key, "to") == 0) {
            strbuf_addstr(out, "list of mappings");
        } else {
            strbuf_addstr(out, "mapping");
        }
        break;
    }
}

static void md_table(struct strbuf *out, const struct config_option *table, const char *none)
{
    const struct config_option *o;

    if (table == NULL || table->key == NULL) {
        strbuf_addf(out, "_%s_\n\n", none);
        return;
    }
    strbuf_addstr(out, "| Key | Type | Default | Description |\n");
    strbuf_addstr(out, "| --- | --- | --- | --- |\n");
    for (o = table; o->key != NULL; o++) {
        strbuf_addstr(out, "| ");
        if (o->type == OPT_SECRET) {
            strbuf_addf(out, "`%s_file` / `%s`", o->key, o->key);
        } else {
            strbuf_addf(out, "`%s`", o->key);
        }
        strbuf_addstr(out, " | ");
        md_type(out, o);
        strbuf_addstr(out, " | ");
        if (o->required) {
            strbuf_addstr(out, "**required**");
        } else if (o->def != NULL) {
            strbuf_addstr(out, "`");
            md_text(out, o->def);
            strbuf_addstr(out, "`");
        } else {
            strbuf_addstr(out, "—");
        }
        strbuf_addstr(out, " | ");
        md_text(out, o->help);
        if (o->type == OPT_SECRET && (o->help == NULL || strstr(o->help, "_file") == NULL)) {
            strbuf_addf(out,
                        " Give `%s_file: PATH` (a file holding it) or `%s: env:NAME` (an "
                        "environment variable).",
                        o->key, o->key);
        }
        strbuf_addstr(out, " |\n");
    }
    strbuf_addch(out, '\n');
}

static const char docs_intro[] =
    "# Configuration reference\n"
    "\n"
    "<!-- Generated by config_docs() from the option tables (src/config.c and each\n"
    "     connector type in src/connector/). Do not edit by hand: regenerate with\n"
    "     `idsync config docs > docs/configuration.md` or\n"
    "     `IDSYNC_REGEN_DOCS=1 meson test -C BUILD config`. -->\n"
    "\n"
    "idsync reads one YAML file: `-c FILE`, else `$IDSYNC_CONFIG`, else `./idsync.yaml`.\n"
    "`idsync check` loads and validates it and tests every connection; `idsync config dump`\n"
    "prints the effective configuration with every default filled in.\n"
    "\n"
    "## General rules\n"
    "\n"
    "- **Everything is checked when the file is loaded**: unknown keys, wrong types, values\n"
    "  out of bounds, connectors and object types that are not defined, rules that read\n"
    "  attributes nobody provides, and expressions that do not compile. Every error names\n"
    "  `FILE:LINE:COLUMN`, what is wrong, and what was expected:\n"
    "\n"
    "  ```\n"
    "  idsync.yaml:14:9: connectors.corp: unknown key `pasword` (expected one of: type, "
    "objects, ...)\n"
    "  ```\n"
    "- **Paths** (type *path*) are relative to the folder of the configuration file.\n"
    "- **Durations**: `30s`, `5m`, `2h`, `1d`, combinations such as `1h30m`, or a plain number\n"
    "  of seconds.\n"
    "- **Booleans**: `true`/`false` (also `yes`/`no`, `on`/`off`).\n"
    "- **Lists** may be written as a YAML sequence or, for one element, as a plain string.\n"
    "- **Secrets** (type *secret*) are never written in the file. For a secret key `password`\n"
    "  give either `password_file: /etc/idsync/corp.secret` (a file holding the secret; one\n"
    "  trailing newline is ignored) or `password: env:CORP_PASSWORD` (an environment\n"
    "  variable). A literal `password: hunter2` is refused. Secrets are read when they are\n"
    "  needed, never at load time, and `config dump` shows only where they come from.\n"
    "- YAML anchors and aliases may be used to share blocks; merge keys (`<<`) are not\n"
    "  supported.\n"
    "\n"
    "## Example\n"
    "\n"
    "```yaml\n"
    "store: sqlite:/var/lib/idsync/idsync.db\n"
    "\n"
    "connectors:\n"
    "  corp:\n"
    "    type: ldap\n"
    "    url: ldaps://dc1.corp.example\n"
    "    bind_dn: sync@corp.example\n"
    "    password_file: /etc/idsync/corp.secret\n"
    "    base: DC=corp,DC=example\n"
    "    objects:\n"
    "      user:\n"
    "        filter: (&(objectClass=user)(objectCategory=person))\n"
    "        attributes: [objectGUID, userPrincipalName, mail, givenName, sn, displayName]\n"
    "      group:\n"
    "        filter: (objectClass=group)\n"
    "        attributes: [objectGUID, cn, mail, member]\n"
    "        references: { member: [user, group] }\n"
    "  cloud:\n"
    "    type: scim\n"
    "    url: https://directory.example.net/scim/v2\n"
    "    token_file: /etc/idsync/cloud.token\n"
    "    objects:\n"
    "      User: {}\n"
    "      Group: { references: { members: [User, Group] } }\n"
    "\n"
    "metaverse:\n"
    "  person:\n"
    "    from:\n"
    "      - connector: corp\n"
    "        object: user\n"
    "        project: true\n"
    "        join:\n"
    "          - sourceAnchor: base64(objectGUID)\n"
    "          - mail: mail\n"
    "        flow:\n"
    "          sourceAnchor: base64(objectGUID)\n"
    "          mail: mail\n"
    "          upn: userPrincipalName\n"
    "          displayName: 'displayName or (givenName .. \" \" .. sn)'\n"
    "    to:\n"
    "      - connector: cloud\n"
    "        object: User\n"
    "        provision: true\n"
    "        deprovision: disable\n"
    "        anchor_carrier: externalId\n"
    "        join:\n"
    "          - externalId: sourceAnchor\n"
    "          - userName: upn\n"
    "        flow:\n"
    "          externalId: sourceAnchor\n"
    "          userName: upn\n"
    "          displayName: displayName\n"
    "          emails: '{ {value = mail, type = \"work\", primary = true} }'\n"
    "\n"
    "safety:\n"
    "  max_deletes: 500\n"
    "\n"
    "schedule: 30m\n"
    "```\n"
    "\n";

static const char docs_connectors[] =
    "## connectors\n"
    "\n"
    "`connectors` maps a connector name (letters, digits, `_`, `.`, `-`) to its settings.\n"
    "Every connector has the keys below, plus the keys of its type.\n"
    "\n";

static const char docs_objects[] =
    "### Object types\n"
    "\n"
    "`connectors.NAME.objects` maps an object type name (`user`, `User`, `group`) to its\n"
    "settings. These keys are common to every connector type; each type adds its own\n"
    "(listed with the type below). An object type without `attributes` is not checked\n"
    "against the rules that use it (the connector decides what it reads and writes).\n"
    "\n";

static const char docs_metaverse[] =
    "## metaverse\n"
    "\n"
    "`metaverse` maps a metaverse object type name (`person`, `group`) to two lists:\n"
    "`from` (inbound: connector object types that feed it) and `to` (outbound: connector\n"
    "object types it is written to). Items may be written as block or flow mappings.\n"
    "\n";

static const char docs_from[] =
    "### from\n"
    "\n"
    "The position of an item in `from` is its precedence: when two items flow the same\n"
    "metaverse attribute, the earlier one wins. Expressions in `scope`, `join` and `flow`\n"
    "read the connector object; every attribute they read must be listed in the object\n"
    "type's `attributes` (when that list is given). A join rule's keys must be metaverse\n"
    "attributes that some `from` flow of the same metaverse type produces.\n"
    "\n";

static const char docs_to[] =
    "### to\n"
    "\n"
    "Expressions in `scope`, `join` and `flow` read the metaverse object: they may read\n"
    "the attributes that the `from` flows of the same metaverse type produce (and `_dn`,\n"
    "`_anchor`, `_type`). Flow keys, join keys, `anchor_carrier` and `disable_attribute`\n"
    "must be in the target object type's `attributes` (when that list is given); `dn` and\n"
    "`objectClass` are always allowed as flow keys. An empty string from a flow (`title or\n"
    "\"\"`) is no value, and a value a flow gives twice is sent once (for LDAP and LDIF,\n"
    "ignoring case, as directories compare). An `objectClass` flow into LDAP or LDIF\n"
    "adds the classes an entry lacks and never removes one (the server keeps the\n"
    "structural chain); when the type's `attributes` leave `objectClass` out, it is set by\n"
    "the create only. Provisioning into an LDAP or LDIF\n"
    "connector needs a `dn` flow. `deprovision: disable` needs `disable_attribute` and\n"
    "`disable_value`, except for SCIM targets, where they default to `active` and `false`.\n"
    "\n"
    "One entry of a directory (LDAP, LDIF) is never two objects: a create or rename onto a\n"
    "DN that another metaverse object's entry has is a `dn-conflict` error, and nothing is\n"
    "written for that object. An entry already at the DN that idsync does not manage is\n"
    "joined when it holds every value of the create (a store started again), and is\n"
    "otherwise a `dn-conflict` naming the value that differs. A create or move to a DN\n"
    "that the target would not read back (LDAP: outside the object type's `base` and\n"
    "`scope`) is a `dn-out-of-scope` error: the entry would look deleted at every full\n"
    "import. A `dn` flow may give a list of\n"
    "DNs to try in order: the first that is free names a new entry (its RDN attributes,\n"
    "such as `cn`, take that DN's values), and an entry keeps its DN while the list still\n"
    "offers it (no rename when a colleague of the same name leaves):\n"
    "\n"
    "```yaml\n"
    "dn: |\n"
    "  local name = dn_escape(givenName .. \" \" .. sn)\n"
    "  return { \"CN=\" .. name .. \",OU=People,DC=corp,DC=example\",\n"
    "           \"CN=\" .. name .. \" (\" .. employeeId .. \"),OU=People,DC=corp,DC=example\" }\n"
    "```\n"
    "\n";

static const char docs_expressions[] =
    "## Expressions\n"
    "\n"
    "Values of `join`, `flow` and `scope` are expressions in Lua 5.4, run in a sandbox (no\n"
    "files, no processes, no modules; a limit on instructions and memory per evaluation).\n"
    "A bare attribute name (`mail`, also `msDS-ConsistencyGuid`) is a plain copy. An\n"
    "expression is compiled as `return EXPR`; when that fails, as a block with its own\n"
    "`return`, so longer rules can use `local` variables:\n"
    "\n"
    "```yaml\n"
    "displayName: 'displayName or (givenName .. \" \" .. sn)'\n"
    "upn: |\n"
    "  local user = lower(sAMAccountName)\n"
    "  return user .. \"@corp.example\"\n"
    "```\n"
    "\n"
    "Quote expressions that start with `{` or `[` (YAML would read them as a mapping or a\n"
    "list), and expressions that contain `: ` or ` #`.\n"
    "\n"
    "A name that is not a helper reads the object's attribute of that name,\n"
    "case-insensitively: `nil` when absent, a string when it has one value, a list of\n"
    "strings when it has several. `attr(\"name\")` reads attributes whose names are not Lua\n"
    "names (first value or `nil`); `values(\"name\")` always gives a list. `_dn`, `_anchor`\n"
    "and `_type` are the object's DN, anchor and type.\n"
    "\n"
    "| Helper | Result |\n"
    "| --- | --- |\n"
    "| `base64(s)`, `unbase64(s)` | RFC 4648 base64 encoding / decoding |\n"
    "| `guid(s)` | 16 `objectGUID` bytes to the GUID string, or a GUID string to the 16 bytes "
    "|\n"
    "| `sid(s)` | binary `objectSid` to `S-1-5-...` |\n"
    "| `lower(s)`, `upper(s)`, `trim(s)` | case (ASCII, Latin, Greek, Cyrillic) and "
    "whitespace |\n"
    "| `split(s, sep)`, `join(list, sep)` | split on / join with a plain separator |\n"
    "| `first(v)` | first value of a list, or `v` |\n"
    "| `coalesce(a, b, ...)` | first argument that is not `nil`, empty or an empty list |\n"
    "| `replace(s, from, to)` | replace every occurrence of plain text |\n"
    "| `left(s, n)`, `right(s, n)` | first / last `n` characters |\n"
    "| `contains(list_or_s, x)` | `x` is a value of the list, or a substring of `s` |\n"
    "| `count(v)` | number of values (0 for `nil`) |\n"
    "| `dn_rdn(dn)`, `dn_parent(dn)` | value of the first RDN, the DN without it |\n"
    "| `dn_escape(s)` | RFC 4514 escaping of an RDN value |\n"
    "| `parse_time(s)`, `parse_time(s, layout)` | a date or time to seconds since "
    "1970-01-01T00:00:00Z: ISO 8601 (`2026-12-31`, `2026-12-31T17:00:00+01:00`) or LDAP "
    "generalized time (`20261231160000Z`) without a layout; with one, `YYYY` `MM` `DD` `hh` "
    "`mm` `ss` (two digits), `M` `D` `h` (one or two) and any other character as itself: "
    "`parse_time(hireDate, \"DD.MM.YYYY\")`. A value that is not such a time is an error |\n"
    "| `format_time(t, layout)` | seconds to text in a layout: `format_time(t, "
    "\"YYYYMMDDhhmmssZ\")` (generalized time), `\"YYYY-MM-DDThh:mm:ssZ\"` (SCIM, ISO) |\n"
    "| `filetime(t)`, `from_filetime(s)` | seconds to an Active Directory FILETIME (100 ns "
    "since 1601: `accountExpires`, `pwdLastSet`) and back; `0` and `9223372036854775807` "
    "(never) give `nil` |\n"
    "| `random_password(n)` | `n` (default 16, 8 to 128) random characters from the "
    "system's random source, with at least one capital, small letter, digit and symbol (AD's "
    "complexity rule), without the look-alikes `I l 1 O 0`. A new value at every call: only "
    "allowed under `initial_flow` |\n"
    "\n"
    "Times are UTC: an offset in the text is applied, and a date alone is its midnight UTC. "
    "AD shows `accountExpires` as the end of the day before it: an account that may be used "
    "through 31.12.2026 expires at `filetime(parse_time(endDate, \"DD.MM.YYYY\") + 86400)`. "
    "Days since 1970 (`shadowExpire`) are `t // 86400`; an Excel serial date (`46022`) is "
    "`(tonumber(d) - 25569) * 86400`.\n"
    "\n"
    "Helpers given `nil` return `nil` (so an absent attribute gives no value, not an\n"
    "error); `contains` then gives `false` and `count` 0. Helpers of one string, given a\n"
    "list, apply to each value. The safe parts of `string`, `table`, `math` and `utf8` are\n"
    "available too.\n"
    "\n"
    "Results: `nil` is no value; a string, number or boolean is one value; a list is one\n"
    "value per element; a table with keys (`{value = mail, type = \"work\"}`) is one value\n"
    "holding its JSON text (SCIM complex attributes such as `emails`).\n";

void config_docs(struct strbuf *out)
{
    size_t i;

    strbuf_addstr(out, docs_intro);
    strbuf_addstr(out, "## Top level\n\n");
    md_table(out, config_top_options, "No options.");
    strbuf_addstr(out, docs_connectors);
    md_table(out, config_connector_options, "No options.");
    strbuf_addstr(out, docs_objects);
    md_table(out, config_object_options, "No options.");
    for (i = 0; connector_types[i] != NULL; i++) {
        const struct connector_ops *ops = connector_types[i];

        strbuf_addf(out, "### Connector type `%s`\n\n", ops->name);
        strbuf_addf(out, "Keys of `connectors.NAME` with `type: %s`:\n\n", ops->name);
        md_table(out, ops->options, "No keys of its own.");
        strbuf_addf(out, "Keys of `connectors.NAME.objects.TYPE` with `type: %s`:\n\n", ops->name);
        md_table(out, ops->object_options, "No keys of its own.");
    }
    strbuf_addstr(out, docs_metaverse);
    md_table(out, config_mv_type_options, "No options.");
    strbuf_addstr(out, docs_from);
    md_table(out, config_from_options, "No options.");
    strbuf_addstr(out, docs_to);
    md_table(out, config_to_options, "No options.");
    strbuf_addstr(out, "## safety\n\n");
    md_table(out, config_safety_options, "No options.");
    strbuf_addstr(out, "## notify\n\nMail needs `smtp`, `from` and `to`; the webhook works "
                       "alone.\n\n");
    md_table(out, config_notify_options, "No options.");
    strbuf_addstr(out, "## serve\n\nUsed by `idsync serve`; cycles run every `schedule`.\n\n");
    md_table(out, config_serve_options, "No options.");
    strbuf_addstr(out, "## log\n\n");
    md_table(out, config_log_options, "No options.");
    strbuf_addstr(out, docs_expressions);
}
