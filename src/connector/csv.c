/* placeholder: the csv connector is being written (see its issue). */
#include "connector/connector.h"

static enum ids_err csv_create(const struct connector_config *cfg, struct connector **out,
                              struct ids_error *err)
{
    (void)cfg;
    *out = NULL;
    return ids_error_set(err, IDS_EUNSUPPORTED, "the csv connector is not built yet");
}

const struct connector_ops csv_connector_ops = {
    .name = "csv",
    .create = csv_create,
};
