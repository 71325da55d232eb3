/* fuzz_scim_json.c - libFuzzer target for what a SCIM service sends back:
 * the input is taken as a response body and fed to every parser of the
 * SCIM connector: a resource -> entry (configured attributes, and every
 * attribute), an error body, a /Schemas resource, PatchOp operations applied
 * to a resource (the PUT fallback), and a Retry-After header value. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "connector/scim_int.h"
#include "entry.h"
#include "util/strbuf.h"
#include "util/strvec.h"
#include "util/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void to_entry(struct scim_rtype *t, json_t *res)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct entry *e = NULL;

    if (scim_resource_to_entry(t, res, &e, &err) == IDS_OK) {
        struct strbuf sb = STRBUF_INIT;

        entry_hash(e);
        entry_to_json(e, &sb);
        strbuf_release(&sb);
        entry_free(e);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const attrs[] = {
        "userName", "name.givenName", "emails",           "enterprise:manager",
        "members",  "emails.value",   "urn:x:y:attr.sub", NULL};
    struct scim_schemas schemas;
    struct object_type_config ot;
    struct object_type_config none;
    struct reference_config ref;
    struct scim_rtype t;
    struct strbuf detail = STRBUF_INIT;
    struct strbuf type = STRBUF_INIT;
    struct strbuf text = STRBUF_INIT;
    struct ids_error err = IDS_ERROR_INIT;
    json_error_t jerr;
    json_t *j;
    long long ms;
    size_t i;

    scim_error_parse((const char *)data, size, &detail, &type);
    strbuf_add(&text, data, size < 256 ? size : 256);
    scim_retry_after_ms(text.buf, time(NULL), &ms);

    memset(&schemas, 0, sizeof(schemas));
    scim_schemas_builtin(&schemas);
    memset(&ot, 0, sizeof(ot));
    memset(&none, 0, sizeof(none));
    memset(&ref, 0, sizeof(ref));
    memset(&t, 0, sizeof(t));
    ot.name = (char *)"User";
    for (i = 0; attrs[i] != NULL; i++) {
        strvec_push(&ot.attributes, attrs[i]);
    }
    ref.attr = (char *)"members";
    ot.refs = &ref;
    ot.nrefs = 1;
    none.name = (char *)"User";
    t.cfg = &ot;
    t.name = "User";
    t.schema = (char *)SCIM_CORE_USER;
    t.dn_attr = (char *)"userName";
    t.carrier = (char *)"externalId";
    t.schemas = &schemas;

    j = json_loadb((const char *)data, size, JSON_DECODE_ANY, &jerr);
    if (j != NULL) {
        json_t *list = json_object_get(j, "Resources");
        json_t *res = json_object();

        to_entry(&t, j);
        for (i = 0; json_is_array(list) && i < json_array_size(list); i++) {
            to_entry(&t, json_array_get(list, i));
        }
        t.cfg = &none;
        to_entry(&t, j);
        scim_schemas_add_json(&schemas, j);
        json_object_set_new(res, "id", json_string("x"));
        json_object_set_new(res, "members", json_pack("[{s:s}]", "value", "a"));
        if (json_is_array(j)) {
            scim_patch_apply(res, j, &err);
        } else if (json_is_array(json_object_get(j, "Operations"))) {
            scim_patch_apply(res, json_object_get(j, "Operations"), &err);
        }
        json_decref(res);
        json_decref(j);
    }
    strvec_clear(&ot.attributes);
    scim_schemas_release(&schemas);
    strbuf_release(&detail);
    strbuf_release(&type);
    strbuf_release(&text);
    return 0;
}
