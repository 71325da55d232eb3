/* fuzz_drain.h - shared by the connector fuzz targets: read a cursor to
 * its end, bad items skipped, at most 100,000 items. */
#ifndef IDSYNC_FUZZ_DRAIN_H
#define IDSYNC_FUZZ_DRAIN_H

#include "connector/connector.h"

static void fuzz_drain(struct connector *c, struct connector_cursor *cur)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct read_item item;
    enum ids_err ret;
    int budget = 100000;

    while (budget-- > 0) {
        ret = connector_cursor_next(c, cur, &item, &err);
        if (ret == IDS_OK) {
            read_item_release(&item);
        } else if (ret != IDS_EINPUT) {
            break;
        }
    }
}

#endif
