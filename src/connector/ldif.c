/* placeholder: the ldif connector is being written (see its issue). */
#include "connector/connector.h"

static enum ids_err ldif_create(const struct connector_config *cfg, struct connector **out,
                              struct ids_error *err)
{
    (void)cfg;
    *out = NULL;
    return ids_error_set(err, IDS_EUNSUPPORTED, "the ldif connector is not built yet");
}

const struct connector_ops ldif_connector_ops = {
    .name = "ldif",
    .create = ldif_create,
};
