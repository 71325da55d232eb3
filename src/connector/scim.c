/* placeholder: the scim connector is being written (see its issue). */
#include "connector/connector.h"

static enum ids_err scim_create(const struct connector_config *cfg, struct connector **out,
                              struct ids_error *err)
{
    (void)cfg;
    *out = NULL;
    return ids_error_set(err, IDS_EUNSUPPORTED, "the scim connector is not built yet");
}

const struct connector_ops scim_connector_ops = {
    .name = "scim",
    .create = scim_create,
};
