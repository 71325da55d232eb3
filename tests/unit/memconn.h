/* memconn.h - an in-memory connected system for engine tests.
 *
 * A configuration loads with `type: null`; the test then points the
 * connector's ops at one of the tables below (cc->ops = &memconn_dn_ops).
 * Instances find their directory by connector name (memdir_get), so the
 * test can fill a directory before the engine opens it and inspect it after.
 *
 *   memconn_dn_ops  like LDAP: references are DNs, renames supported
 *   memconn_id_ops  like SCIM: references are anchors, anchors assigned on add
 *
 * Reads: a full read yields every object (objects whose anchor is in
 * `bad` yield IDS_EINPUT instead); a delta read yields what the change log
 * holds after the watermark (a decimal sequence number). Writes apply to the
 * directory at submit and are delivered by poll in submit order.
 */
#ifndef IDSYNC_TEST_MEMCONN_H
#define IDSYNC_TEST_MEMCONN_H

#include <stdbool.h>
#include <stddef.h>

#include "connector/connector.h"
#include "entry.h"
#include "util/strvec.h"

extern struct connector_ops memconn_dn_ops;
extern struct connector_ops memconn_id_ops;

struct memlog; /* change log entry */
struct memres; /* queued export result */

struct memdir {
    char *name;
    struct entry **objs; /* the directory */
    size_t nobjs, aobjs;
    long seq; /* last change number */
    struct memlog *log;
    size_t nlog, alog;
    struct strvec bad;  /* anchors that read as malformed */
    bool full_required; /* read_changes answers IDS_EFULLREQUIRED */
    /* export side */
    struct change **sent; /* every change submitted, as received */
    size_t nsent, asent;
    char *fail_dn;    /* a change for this DN fails (rejected) */
    char *fail_value; /* a change carrying this value (any attribute) fails */
    long lose_after;  /* > 0: submits after this many are lost with the connection */
    char *drop_attr;  /* attribute the system silently ignores on write */
    long next_anchor;
    struct memres *res;
    size_t nres, ares, nextres;
    bool lost_reported;
    bool late_results; /* like CSV: results only after export_end */
    bool ended;        /* export_end was called */
    long sessions;     /* export_begin calls */
    long opens;
};

void memconn_reset(void); /* forget every directory */
struct memdir *memdir_get(const char *name);
/* Add or replace (by anchor) an object: takes e. Logged for delta reads. */
void memdir_put(struct memdir *d, struct entry *e);
/* Convenience: attrs are "name=value" strings, NULL-terminated. */
void memdir_add(struct memdir *d, const char *type, const char *anchor, const char *dn, ...);
void memdir_remove(struct memdir *d, const char *anchor);
/* Apply a modify to a stored object and log it as a delta MODIFY. */
void memdir_modify(struct memdir *d, const struct change *ch);
struct entry *memdir_find(struct memdir *d, const char *anchor);
struct entry *memdir_find_dn(struct memdir *d, const char *dn);
size_t memdir_count_sent(struct memdir *d, enum change_op op);
void memdir_clear_sent(struct memdir *d);

#endif
