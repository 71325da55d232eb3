/* config_int.h - shared between config.c (loading) and config_out.c (dump,
 * docs). Not for other modules: they use config.h. */
#ifndef IDSYNC_CONFIG_INT_H
#define IDSYNC_CONFIG_INT_H

#include "config.h"
#include "util/strbuf.h"

/* "30m" for 1800, "1h30m" for 5400, "0s" for 0. */
void config_format_duration(struct strbuf *out, long seconds);
/* Human name of an option's type for messages and docs ("an integer from 0
 * to 100", "one of delete, disable, disconnect"). */
void config_describe_type(struct strbuf *out, const struct config_option *opt);

#endif
