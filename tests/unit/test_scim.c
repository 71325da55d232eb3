/* test_scim.c - the SCIM connector's pure parts (scim_map.c): attribute
 * names and aliases, SCIM resources -> entries (core, sub-attributes, the
 * enterprise extension, complex multi-valued values as JSON, member and
 * manager references), changes -> POST bodies (types from the schema) and
 * PatchOp messages (minimal operations, value filters, chunking of large
 * member changes), applying those operations for the PUT fallback, filter
 * value escaping, error bodies, Retry-After (seconds and HTTP date) and
 * backoff with jitter. The connector against a real service is tested by
 * tests/integration/test_scim*.py. */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "connector/scim_int.h"
#include "entry.h"
#include "util/http.h"
#include "util/mem.h"
#include "util/strbuf.h"
#include "util/strvec.h"
#include "util/banned.h"

struct fixture {
    struct scim_schemas schemas;
    struct object_type_config user_cfg;
    struct object_type_config group_cfg;
    struct reference_config refs[2];
    struct scim_rtype user;
    struct scim_rtype group;
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    static const char *const user_attrs[] = {"userName",
                                             "externalId",
                                             "displayName",
                                             "name.givenName",
                                             "active",
                                             "emails",
                                             "enterprise:department",
                                             "enterprise:manager",
                                             "title",
                                             "phoneNumbers",
                                             NULL};
    size_t i;

    scim_schemas_builtin(&f->schemas);
    f->user_cfg.name = xstrdup("User");
    for (i = 0; user_attrs[i] != NULL; i++) {
        strvec_push(&f->user_cfg.attributes, user_attrs[i]);
    }
    f->refs[0].attr = xstrdup("enterprise:manager");
    strvec_push(&f->refs[0].types, "User");
    f->user_cfg.refs = &f->refs[0];
    f->user_cfg.nrefs = 1;
    f->group_cfg.name = xstrdup("Group");
    strvec_push(&f->group_cfg.attributes, "displayName");
    strvec_push(&f->group_cfg.attributes, "externalId");
    strvec_push(&f->group_cfg.attributes, "members");
    f->refs[1].attr = xstrdup("members");
    strvec_push(&f->refs[1].types, "User");
    f->group_cfg.refs = &f->refs[1];
    f->group_cfg.nrefs = 1;

    f->user.cfg = &f->user_cfg;
    f->user.name = "User";
    f->user.resource_type = xstrdup("User");
    f->user.endpoint = xstrdup("/Users");
    f->user.schema = xstrdup(SCIM_CORE_USER);
    f->user.carrier = xstrdup("externalId");
    f->user.dn_attr = xstrdup("userName");
    f->user.schemas = &f->schemas;
    f->group.cfg = &f->group_cfg;
    f->group.name = "Group";
    f->group.resource_type = xstrdup("Group");
    f->group.endpoint = xstrdup("/Groups");
    f->group.schema = xstrdup(SCIM_CORE_GROUP);
    f->group.carrier = xstrdup("externalId");
    f->group.dn_attr = xstrdup("displayName");
    f->group.schemas = &f->schemas;
    *state = f;
    return 0;
}

static void rtype_free(struct scim_rtype *t)
{
    free(t->resource_type);
    free(t->endpoint);
    free(t->schema);
    free(t->carrier);
    free(t->dn_attr);
    strvec_clear(&t->extensions);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    size_t i;

    rtype_free(&f->user);
    rtype_free(&f->group);
    for (i = 0; i < 2; i++) {
        free(f->refs[i].attr);
        strvec_clear(&f->refs[i].types);
    }
    free(f->user_cfg.name);
    strvec_clear(&f->user_cfg.attributes);
    free(f->group_cfg.name);
    strvec_clear(&f->group_cfg.attributes);
    scim_schemas_release(&f->schemas);
    free(f);
    return 0;
}

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);

    if (j == NULL) {
        fail_msg("bad JSON in the test: %s: %s", jerr.text, text);
    }
    return j;
}

static void assert_json_eq(json_t *got, const char *want)
{
    json_t *w = parse(want);

    if (!json_equal(got, w)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
        char *ws = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS);

        print_error("got  %s\nwant %s\n", g, ws);
        free(g);
        free(ws);
        json_decref(w);
        fail();
    }
    json_decref(w);
}

static void assert_values(const struct entry *e, const char *name, const char *const *want)
{
    const struct attr *a = entry_attr(e, name);
    size_t n = 0;

    while (want[n] != NULL) {
        n++;
    }
    if (n == 0) {
        assert_true(a == NULL || a->nvals == 0);
        return;
    }
    assert_non_null(a);
    assert_int_equal(a->nvals, n);
    for (n = 0; want[n] != NULL; n++) {
        assert_true(attr_has_value(a, want[n], strlen(want[n])));
    }
}

/* ---- names -------------------------------------------------------------- */

static void test_paths(void **state)
{
    struct scim_path p;
    struct strbuf sb = STRBUF_INIT;

    (void)state;
    scim_path_parse("userName", &p);
    assert_null(p.urn);
    assert_string_equal(p.attr, "userName");
    assert_null(p.sub);
    scim_path_release(&p);

    scim_path_parse("name.givenName", &p);
    assert_string_equal(p.attr, "name");
    assert_string_equal(p.sub, "givenName");
    scim_path_format(&p, &sb);
    assert_string_equal(sb.buf, "name.givenName");
    scim_path_release(&p);

    scim_path_parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", &p);
    assert_string_equal(p.urn, SCIM_ENTERPRISE);
    assert_string_equal(p.attr, "department");
    scim_path_release(&p);

    scim_path_parse("enterprise:manager.value", &p);
    assert_string_equal(p.urn, SCIM_ENTERPRISE);
    assert_string_equal(p.attr, "manager");
    assert_string_equal(p.sub, "value");
    strbuf_reset(&sb);
    scim_path_format(&p, &sb);
    assert_string_equal(sb.buf, SCIM_ENTERPRISE ":manager.value");
    scim_path_release(&p);
    strbuf_release(&sb);
}

static void test_filter_escaping(void **state)
{
    struct strbuf sb = STRBUF_INIT;
    struct strbuf enc = STRBUF_INIT;

    (void)state;
    scim_filter_eq(&sb, "externalId", "a\"b\\c");
    assert_string_equal(sb.buf, "externalId eq \"a\\\"b\\\\c\"");
    strbuf_reset(&sb);
    scim_filter_eq(&sb, "userName", "x\"] or userName pr or [\"");
    /* the value stays one JSON string: nothing of it becomes filter syntax */
    assert_string_equal(sb.buf, "userName eq \"x\\\"] or userName pr or [\\\"\"");
    strbuf_reset(&sb);
    scim_filter_value(&sb, "tab\tnl\n");
    assert_string_equal(sb.buf, "\"tab\\tnl\\n\"");
    strbuf_reset(&sb);
    scim_filter_eq(&sb, "enterprise:department", "R&D");
    assert_string_equal(sb.buf, SCIM_ENTERPRISE ":department eq \"R&D\"");
    http_url_encode(&enc, sb.buf);
    assert_null(strchr(enc.buf, '&'));
    assert_null(strchr(enc.buf, ' '));
    assert_null(strchr(enc.buf, '"'));
    strbuf_release(&sb);
    strbuf_release(&enc);
}

/* ---- resource -> entry ---------------------------------------------------- */

static void test_resource_to_entry(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct entry *e = NULL;
    json_t *res =
        parse("{\"schemas\":[\"" SCIM_CORE_USER "\",\"" SCIM_ENTERPRISE "\"],"
              "\"id\":\"u-1\",\"userName\":\"alice\",\"externalId\":\"E1\","
              "\"NAME\":{\"givenName\":\"Alice\",\"familyName\":\"Smith\"},\"active\":false,"
              "\"emails\":[{\"value\":\"a@x.org\",\"type\":\"work\",\"primary\":true},"
              "{\"type\":\"home\",\"value\":\"a@home.org\"}],"
              "\"meta\":{\"resourceType\":\"User\"},\"title\":null,"
              "\"" SCIM_ENTERPRISE "\":{\"department\":\"R&D\",\"manager\":{\"value\":\"u-9\","
              "\"displayName\":\"Boss\"}}}");
    const struct attr *a;

    assert_int_equal(scim_resource_to_entry(&f->user, res, &e, &err), IDS_OK);
    assert_string_equal(e->anchor, "u-1");
    assert_string_equal(e->dn, "alice");
    assert_string_equal(e->type, "User");
    assert_values(e, "userName", (const char *[]){"alice", NULL});
    assert_values(e, "name.givenName", (const char *[]){"Alice", NULL});
    assert_null(entry_attr(e, "name.familyName")); /* not configured */
    assert_values(e, "active", (const char *[]){"false", NULL});
    assert_values(e, "enterprise:department", (const char *[]){"R&D", NULL});
    assert_values(e, "enterprise:manager", (const char *[]){"u-9", NULL});
    assert_true(entry_attr(e, "enterprise:manager")->flags & ATTR_REF);
    assert_null(entry_attr(e, "title"));
    a = entry_attr(e, "emails");
    assert_non_null(a);
    assert_true(a->flags & ATTR_JSON);
    assert_int_equal(a->nvals, 2);
    /* canonical JSON: sorted keys, compact */
    assert_true(
        attr_has_value(a, "{\"primary\":true,\"type\":\"work\",\"value\":\"a@x.org\"}",
                       strlen("{\"primary\":true,\"type\":\"work\",\"value\":\"a@x.org\"}")));
    entry_free(e);
    json_decref(res);

    /* members: ids, as references */
    res = parse("{\"id\":\"g-1\",\"displayName\":\"Team\",\"members\":[{\"value\":\"u-1\","
                "\"$ref\":\"../Users/u-1\"},{\"value\":\"u-2\",\"display\":\"Bob\"}]}");
    assert_int_equal(scim_resource_to_entry(&f->group, res, &e, &err), IDS_OK);
    assert_string_equal(e->dn, "Team");
    assert_values(e, "members", (const char *[]){"u-1", "u-2", NULL});
    assert_true(entry_attr(e, "members")->flags & ATTR_REF);
    entry_free(e);
    json_decref(res);

    /* bad resources are refused, not crashed on */
    res = parse("{\"userName\":\"x\"}");
    assert_int_equal(scim_resource_to_entry(&f->user, res, &e, &err), IDS_EINPUT);
    assert_null(e);
    json_decref(res);
    res = parse("[1,2]");
    assert_int_equal(scim_resource_to_entry(&f->user, res, &e, &err), IDS_EINPUT);
    json_decref(res);
    res = parse("{\"id\":7}");
    assert_int_equal(scim_resource_to_entry(&f->user, res, &e, &err), IDS_EINPUT);
    json_decref(res);
}

static void test_resource_to_entry_all_attributes(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct entry *e = NULL;
    struct object_type_config none;
    struct scim_rtype t = f->user;
    json_t *res = parse("{\"id\":\"u-1\",\"userName\":\"alice\",\"name\":{\"givenName\":\"A\"},"
                        "\"x509Certificates\":[],\"nickName\":\"al\",\"count\":3,"
                        "\"" SCIM_ENTERPRISE "\":{\"department\":\"D\",\"manager\":{\"value\":"
                        "\"u-9\"}},\"meta\":{\"created\":\"2020\"},\"schemas\":[]}");

    memset(&none, 0, sizeof(none));
    none.name = (char *)"User";
    t.cfg = &none;
    assert_int_equal(scim_resource_to_entry(&t, res, &e, &err), IDS_OK);
    assert_values(e, "userName", (const char *[]){"alice", NULL});
    assert_values(e, "name.givenName", (const char *[]){"A", NULL});
    assert_values(e, "nickName", (const char *[]){"al", NULL});
    assert_values(e, "count", (const char *[]){"3", NULL});
    assert_values(e, SCIM_ENTERPRISE ":department", (const char *[]){"D", NULL});
    assert_values(e, SCIM_ENTERPRISE ":manager", (const char *[]){"u-9", NULL});
    assert_null(entry_attr(e, "meta"));
    assert_null(entry_attr(e, "meta.created"));
    assert_null(entry_attr(e, "schemas"));
    assert_null(entry_attr(e, "id"));
    entry_free(e);
    json_decref(res);
}

/* ---- change -> POST body ---------------------------------------------------- */

static struct mod *mod(struct change *ch, enum mod_op op, const char *name, unsigned flags,
                       const char *const *vals)
{
    struct mod *m = change_add_mod(ch, op, name, flags);
    size_t i;

    for (i = 0; vals != NULL && vals[i] != NULL; i++) {
        attr_add_value(&m->attr, vals[i], strlen(vals[i]));
    }
    return m;
}

static void test_change_to_resource(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct change *ch = change_new(CHANGE_ADD, "User", NULL, NULL);
    json_t *res = NULL;

    mod(ch, MOD_ADD, "userName", 0, (const char *[]){"alice", NULL});
    mod(ch, MOD_ADD, "externalId", 0, (const char *[]){"E\"1", NULL});
    mod(ch, MOD_ADD, "name.givenName", 0, (const char *[]){"Alice", NULL});
    mod(ch, MOD_ADD, "name.familyName", 0, (const char *[]){"Smith", NULL});
    mod(ch, MOD_ADD, "active", 0, (const char *[]){"TRUE", NULL});
    mod(ch, MOD_ADD, "emails", ATTR_JSON,
        (const char *[]){"{\"value\":\"a@x.org\",\"type\":\"work\",\"primary\":true}", NULL});
    mod(ch, MOD_ADD, "enterprise:department", 0, (const char *[]){"R&D", NULL});
    mod(ch, MOD_ADD, "enterprise:manager", ATTR_REF, (const char *[]){"u-9", NULL});
    assert_int_equal(scim_change_to_resource(&f->user, ch, &res, &err), IDS_OK);
    assert_json_eq(res, "{\"schemas\":[\"" SCIM_CORE_USER "\",\"" SCIM_ENTERPRISE "\"],"
                        "\"userName\":\"alice\",\"externalId\":\"E\\\"1\","
                        "\"name\":{\"givenName\":\"Alice\",\"familyName\":\"Smith\"},"
                        "\"active\":true,"
                        "\"emails\":[{\"value\":\"a@x.org\",\"type\":\"work\",\"primary\":true}],"
                        "\"" SCIM_ENTERPRISE "\":{\"department\":\"R&D\","
                        "\"manager\":{\"value\":\"u-9\"}}}");
    json_decref(res);
    change_free(ch);

    /* a group: members as {value} */
    ch = change_new(CHANGE_ADD, "Group", NULL, NULL);
    mod(ch, MOD_ADD, "displayName", 0, (const char *[]){"Team", NULL});
    mod(ch, MOD_ADD, "members", ATTR_REF, (const char *[]){"u-1", "u-2", NULL});
    assert_int_equal(scim_change_to_resource(&f->group, ch, &res, &err), IDS_OK);
    assert_json_eq(res, "{\"schemas\":[\"" SCIM_CORE_GROUP "\"],\"displayName\":\"Team\","
                        "\"members\":[{\"value\":\"u-1\"},{\"value\":\"u-2\"}]}");
    json_decref(res);
    change_free(ch);

    /* values that do not fit: named errors */
    ch = change_new(CHANGE_ADD, "User", NULL, NULL);
    mod(ch, MOD_ADD, "active", 0, (const char *[]){"maybe", NULL});
    assert_int_equal(scim_change_to_resource(&f->user, ch, &res, &err), IDS_EINPUT);
    assert_non_null(strstr(err.msg, "active"));
    assert_non_null(strstr(err.msg, "boolean"));
    change_free(ch);
    ch = change_new(CHANGE_ADD, "User", NULL, NULL);
    mod(ch, MOD_ADD, "userName", 0, (const char *[]){"a", "b", NULL});
    assert_int_equal(scim_change_to_resource(&f->user, ch, &res, &err), IDS_EINPUT);
    assert_non_null(strstr(err.msg, "userName takes one value"));
    change_free(ch);
    ch = change_new(CHANGE_ADD, "User", NULL, NULL);
    mod(ch, MOD_ADD, "emails", ATTR_JSON, (const char *[]){"{not json", NULL});
    assert_int_equal(scim_change_to_resource(&f->user, ch, &res, &err), IDS_EINPUT);
    assert_non_null(strstr(err.msg, "emails"));
    change_free(ch);
    ch = change_new(CHANGE_ADD, "User", NULL, NULL);
    mod(ch, MOD_ADD, "title", 0, (const char *[]){"\xff\xfe", NULL});
    assert_int_equal(scim_change_to_resource(&f->user, ch, &res, &err), IDS_EINPUT);
    assert_non_null(strstr(err.msg, "UTF-8"));
    change_free(ch);
}

/* ---- PATCH ------------------------------------------------------------------- */

static void test_patch_minimal(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct change *ch = change_new(CHANGE_MODIFY, "User", "u-1", NULL);
    json_t *bodies = NULL;

    mod(ch, MOD_REPLACE, "userName", 0, (const char *[]){"alice2", NULL});
    mod(ch, MOD_REPLACE, "active", 0, (const char *[]){"false", NULL});
    mod(ch, MOD_DELETE, "title", 0, NULL);
    mod(ch, MOD_REPLACE, "enterprise:department", 0, NULL);
    mod(ch, MOD_REPLACE, "name.givenName", 0, (const char *[]){"Al", NULL});
    mod(ch, MOD_REPLACE, "emails", ATTR_JSON, (const char *[]){"{\"value\":\"n@x\"}", NULL});
    assert_int_equal(scim_change_to_patches(&f->user, ch, 500, &bodies, &err), IDS_OK);
    assert_json_eq(bodies,
                   "[{\"schemas\":[\"" SCIM_PATCHOP "\"],\"Operations\":["
                   "{\"op\":\"replace\",\"path\":\"userName\",\"value\":\"alice2\"},"
                   "{\"op\":\"replace\",\"path\":\"active\",\"value\":false},"
                   "{\"op\":\"remove\",\"path\":\"title\"},"
                   "{\"op\":\"remove\",\"path\":\"" SCIM_ENTERPRISE ":department\"},"
                   "{\"op\":\"replace\",\"path\":\"name.givenName\",\"value\":\"Al\"},"
                   "{\"op\":\"replace\",\"path\":\"emails\",\"value\":[{\"value\":\"n@x\"}]}]}]");
    json_decref(bodies);
    change_free(ch);

    /* an empty change sends nothing */
    ch = change_new(CHANGE_MODIFY, "User", "u-1", NULL);
    assert_int_equal(scim_change_to_patches(&f->user, ch, 500, &bodies, &err), IDS_OK);
    assert_int_equal(json_array_size(bodies), 0);
    json_decref(bodies);
    change_free(ch);
}

static void test_patch_members_chunked(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct change *ch = change_new(CHANGE_MODIFY, "Group", "g-1", NULL);
    json_t *bodies = NULL;

    mod(ch, MOD_ADD, "members", ATTR_REF, (const char *[]){"a", "b", "c", "d", "e", NULL});
    mod(ch, MOD_DELETE, "members", ATTR_REF, (const char *[]){"x\"y", "z", NULL});
    assert_int_equal(scim_change_to_patches(&f->group, ch, 2, &bodies, &err), IDS_OK);
    /* 5 adds in 2+2+1, then 2 removals: at most 2 values per request */
    assert_json_eq(
        bodies,
        "[{\"schemas\":[\"" SCIM_PATCHOP "\"],\"Operations\":[{\"op\":\"add\",\"path\":\"members\","
        "\"value\":[{\"value\":\"a\"},{\"value\":\"b\"}]}]},"
        "{\"schemas\":[\"" SCIM_PATCHOP "\"],\"Operations\":[{\"op\":\"add\",\"path\":\"members\","
        "\"value\":[{\"value\":\"c\"},{\"value\":\"d\"}]}]},"
        "{\"schemas\":[\"" SCIM_PATCHOP "\"],\"Operations\":[{\"op\":\"add\",\"path\":\"members\","
        "\"value\":[{\"value\":\"e\"}]},"
        "{\"op\":\"remove\",\"path\":\"members[value eq \\\"x\\\\\\\"y\\\"]\"}]},"
        "{\"schemas\":[\"" SCIM_PATCHOP "\"],\"Operations\":["
        "{\"op\":\"remove\",\"path\":\"members[value eq \\\"z\\\"]\"}]}]");
    json_decref(bodies);

    /* one request when it fits */
    assert_int_equal(scim_change_to_patches(&f->group, ch, 500, &bodies, &err), IDS_OK);
    assert_int_equal(json_array_size(bodies), 1);
    assert_int_equal(json_array_size(json_object_get(json_array_get(bodies, 0), "Operations")), 3);
    json_decref(bodies);
    change_free(ch);

    /* a replace of many members: replace with the first chunk, add the rest */
    ch = change_new(CHANGE_MODIFY, "Group", "g-1", NULL);
    mod(ch, MOD_REPLACE, "members", ATTR_REF, (const char *[]){"a", "b", "c", NULL});
    assert_int_equal(scim_change_to_patches(&f->group, ch, 2, &bodies, &err), IDS_OK);
    assert_json_eq(bodies, "[{\"schemas\":[\"" SCIM_PATCHOP
                           "\"],\"Operations\":[{\"op\":\"replace\",\"path\":"
                           "\"members\",\"value\":[{\"value\":\"a\"},{\"value\":\"b\"}]}]},"
                           "{\"schemas\":[\"" SCIM_PATCHOP
                           "\"],\"Operations\":[{\"op\":\"add\",\"path\":\"members\","
                           "\"value\":[{\"value\":\"c\"}]}]}]");
    json_decref(bodies);
    change_free(ch);

    /* removing a complex value: filter on value and type */
    ch = change_new(CHANGE_MODIFY, "User", "u-1", NULL);
    mod(ch, MOD_DELETE, "emails", ATTR_JSON,
        (const char *[]){"{\"value\":\"a@x\",\"type\":\"work\"}", NULL});
    assert_int_equal(scim_change_to_patches(&f->user, ch, 10, &bodies, &err), IDS_OK);
    assert_json_eq(bodies, "[{\"schemas\":[\"" SCIM_PATCHOP "\"],\"Operations\":[{\"op\":"
                           "\"remove\",\"path\":\"emails[value eq \\\"a@x\\\" and type eq "
                           "\\\"work\\\"]\"}]}]");
    json_decref(bodies);
    change_free(ch);
}

static void test_patch_apply(void **state)
{
    struct fixture *f = *state;
    struct ids_error err = IDS_ERROR_INIT;
    struct change *ch = change_new(CHANGE_MODIFY, "Group", "g-1", NULL);
    json_t *bodies = NULL;
    json_t *res = parse("{\"id\":\"g-1\",\"displayName\":\"T\",\"members\":[{\"value\":\"x\\\"y\"},"
                        "{\"value\":\"keep\"},{\"value\":\"a\"}]}");
    size_t i;

    mod(ch, MOD_ADD, "members", ATTR_REF, (const char *[]){"a", "b", NULL});
    mod(ch, MOD_DELETE, "members", ATTR_REF, (const char *[]){"x\"y", NULL});
    mod(ch, MOD_REPLACE, "displayName", 0, (const char *[]){"Team", NULL});
    assert_int_equal(scim_change_to_patches(&f->group, ch, 1, &bodies, &err), IDS_OK);
    for (i = 0; i < json_array_size(bodies); i++) {
        assert_int_equal(
            scim_patch_apply(res, json_object_get(json_array_get(bodies, i), "Operations"), &err),
            IDS_OK);
    }
    assert_json_eq(res, "{\"id\":\"g-1\",\"displayName\":\"Team\",\"members\":["
                        "{\"value\":\"keep\"},{\"value\":\"a\"},{\"value\":\"b\"}]}");
    json_decref(res);
    json_decref(bodies);
    change_free(ch);

    /* user: sub-attribute, extension, removal */
    ch = change_new(CHANGE_MODIFY, "User", "u-1", NULL);
    mod(ch, MOD_REPLACE, "name.givenName", 0, (const char *[]){"Al", NULL});
    mod(ch, MOD_REPLACE, "enterprise:department", 0, (const char *[]){"D2", NULL});
    mod(ch, MOD_DELETE, "title", 0, NULL);
    mod(ch, MOD_REPLACE, "active", 0, (const char *[]){"false", NULL});
    res = parse("{\"id\":\"u-1\",\"schemas\":[\"" SCIM_CORE_USER "\"],\"userName\":\"a\","
                "\"Title\":\"t\",\"name\":{\"familyName\":\"S\"},\"active\":true}");
    assert_int_equal(scim_change_to_patches(&f->user, ch, 100, &bodies, &err), IDS_OK);
    assert_int_equal(
        scim_patch_apply(res, json_object_get(json_array_get(bodies, 0), "Operations"), &err),
        IDS_OK);
    assert_json_eq(res,
                   "{\"id\":\"u-1\",\"schemas\":[\"" SCIM_CORE_USER "\",\"" SCIM_ENTERPRISE
                   "\"],\"userName\":\"a\",\"name\":{\"familyName\":\"S\",\"givenName\":"
                   "\"Al\"},\"active\":false,\"" SCIM_ENTERPRISE "\":{\"department\":\"D2\"}}");
    json_decref(res);
    json_decref(bodies);
    change_free(ch);

    /* what it cannot apply is refused with a message */
    res = parse("{\"id\":\"x\"}");
    bodies = parse("[{\"op\":\"remove\",\"path\":\"members[value co \\\"a\\\"]\"}]");
    assert_int_equal(scim_patch_apply(res, bodies, &err), IDS_EINPUT);
    json_decref(bodies);
    bodies = parse("[{\"op\":\"move\",\"path\":\"a\",\"value\":1}]");
    assert_int_equal(scim_patch_apply(res, bodies, &err), IDS_EINPUT);
    json_decref(bodies);
    json_decref(res);
}

/* ---- errors, Retry-After, backoff ------------------------------------------ */

static void test_error_parse(void **state)
{
    struct strbuf d = STRBUF_INIT;
    struct strbuf t = STRBUF_INIT;
    struct change *ch = change_new(CHANGE_ADD, "User", NULL, NULL);
    const char *body = "{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:Error\"],"
                       "\"status\":\"409\",\"scimType\":\"uniqueness\","
                       "\"detail\":\"userName 'a' is already in use\"}";

    (void)state;
    scim_error_parse(body, strlen(body), &d, &t);
    assert_string_equal(d.buf, "userName 'a' is already in use");
    assert_string_equal(t.buf, "uniqueness");
    strbuf_reset(&d);
    strbuf_reset(&t);
    scim_error_parse("<html>Bad gateway</html>\nmore", 30, &d, &t);
    assert_string_equal(d.buf, "<html>Bad gateway</html>");
    assert_int_equal(t.len, 0);
    strbuf_reset(&d);
    scim_error_parse("", 0, &d, &t);
    assert_int_equal(d.len, 0);

    mod(ch, MOD_ADD, "displayName", 0, (const char *[]){"A", NULL});
    mod(ch, MOD_ADD, "userName", 0, (const char *[]){"a", NULL});
    mod(ch, MOD_ADD, "name.givenName", 0, (const char *[]){"a", NULL});
    assert_string_equal(scim_error_attr(ch, "userName 'a' is already in use"), "userName");
    assert_string_equal(scim_error_attr(ch, "Attribute 'USERNAME' is required"), "userName");
    assert_string_equal(scim_error_attr(ch, "givenName too long"), "name.givenName");
    /* a word inside another word does not count */
    assert_null(scim_error_attr(ch, "displayNames are many"));
    assert_null(scim_error_attr(ch, "something else"));
    strbuf_release(&d);
    strbuf_release(&t);
    change_free(ch);
}

static void test_retry_after(void **state)
{
    long long ms = -1;
    time_t now = 1700000000; /* Tue, 14 Nov 2023 22:13:20 GMT */

    (void)state;
    assert_true(scim_retry_after_ms("120", now, &ms));
    assert_int_equal(ms, 120000);
    assert_true(scim_retry_after_ms(" 0 ", now, &ms));
    assert_int_equal(ms, 0);
    assert_true(scim_retry_after_ms("Tue, 14 Nov 2023 22:13:50 GMT", now, &ms));
    assert_int_equal(ms, 30000);
    /* a date in the past: at once */
    assert_true(scim_retry_after_ms("Tue, 14 Nov 2023 22:00:00 GMT", now, &ms));
    assert_int_equal(ms, 0);
    assert_false(scim_retry_after_ms("", now, &ms));
    assert_false(scim_retry_after_ms("soon", now, &ms));
    assert_false(scim_retry_after_ms("12abc", now, &ms));
    assert_false(scim_retry_after_ms(NULL, now, &ms));
    /* absurd values stay bounded */
    assert_true(scim_retry_after_ms("99999999999999999999", now, &ms));
    assert_true(ms > 0 && ms <= 100000000LL * 1000);
}

static void test_backoff(void **state)
{
    int n;
    uint64_t r;

    (void)state;
    for (n = 1; n <= 12; n++) {
        long long d = 100;
        int i;

        for (i = 1; i < n && d < 5000; i++) {
            d *= 2;
        }
        if (d > 5000) {
            d = 5000;
        }
        for (r = 0; r < 2000; r += 97) {
            long long w = scim_backoff_ms(n, 100, 5000, r * 0x9E3779B97F4A7C15ULL);

            assert_true(w >= d / 2);
            assert_true(w <= d);
        }
    }
    /* jitter: not always the same */
    assert_true(scim_backoff_ms(3, 100, 5000, 1) != scim_backoff_ms(3, 100, 5000, 150));
    assert_true(scim_status_retryable(429));
    assert_true(scim_status_retryable(503));
    assert_true(scim_status_retryable(500));
    assert_false(scim_status_retryable(400));
    assert_false(scim_status_retryable(409));
    assert_false(scim_status_retryable(404));
}

static void test_schemas_from_service(void **state)
{
    struct scim_schemas s;
    const struct scim_adef *d;
    json_t *schema = parse(
        "{\"id\":\"urn:example:Device\",\"attributes\":["
        "{\"name\":\"serial\",\"type\":\"integer\",\"multiValued\":false,\"uniqueness\":"
        "\"server\"},"
        "{\"name\":\"owners\",\"type\":\"complex\",\"multiValued\":true,\"subAttributes\":["
        "{\"name\":\"value\",\"type\":\"string\"},{\"name\":\"$ref\",\"type\":\"reference\"}]},"
        "{\"name\":\"tags\",\"type\":\"string\",\"multiValued\":true},"
        "{\"type\":\"string\"}]}");

    (void)state;
    memset(&s, 0, sizeof(s));
    scim_schemas_add_json(&s, schema);
    d = scim_schemas_find(&s, "urn:example:Device", "SERIAL");
    assert_non_null(d);
    assert_int_equal(d->type, SCIM_INTEGER);
    assert_string_equal(d->uniqueness, "server");
    d = scim_schemas_find(&s, "urn:example:Device", "owners");
    assert_true(d->multi && d->ref_value);
    d = scim_schemas_find(&s, "urn:example:Device", "owners.value");
    assert_non_null(d);
    d = scim_schemas_find(&s, "urn:example:Device", "tags");
    assert_true(d->multi && !d->ref_value);
    assert_null(scim_schemas_find(&s, "urn:other", "tags"));
    json_decref(schema);
    scim_schemas_release(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_filter_escaping),
        cmocka_unit_test_setup_teardown(test_resource_to_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resource_to_entry_all_attributes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_to_resource, setup, teardown),
        cmocka_unit_test_setup_teardown(test_patch_minimal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_patch_members_chunked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_patch_apply, setup, teardown),
        cmocka_unit_test(test_error_parse),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_schemas_from_service),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
