/* placeholder: the ldap connector is being written (see its issue). */
#include "connector/connector.h"

static enum ids_err ldap_create(const struct connector_config *cfg, struct connector **out,
                              struct ids_error *err)
{
    (void)cfg;
    *out = NULL;
    return ids_error_set(err, IDS_EUNSUPPORTED, "the ldap connector is not built yet");
}

const struct connector_ops ldap_connector_ops = {
    .name = "ldap",
    .create = ldap_create,
};
