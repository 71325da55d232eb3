/* placeholder: the null connector is being written (see its issue). */
#include "connector/connector.h"

static enum ids_err null_create(const struct connector_config *cfg, struct connector **out,
                              struct ids_error *err)
{
    (void)cfg;
    *out = NULL;
    return ids_error_set(err, IDS_EUNSUPPORTED, "the null connector is not built yet");
}

const struct connector_ops null_connector_ops = {
    .name = "null",
    .create = null_create,
};
