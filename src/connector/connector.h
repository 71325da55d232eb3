/* connector.h - the interface every connected system is reached through.
 *
 * A connector *type* is a `struct connector_ops` table (one per file:
 * csv.c, ldif.c, ldap.c, scim.c, null.c), in the manner of slapd's back-*
 * backends and curl's TLS backends. A connector *instance* is created from
 * one `connectors:` entry of the configuration; its private struct embeds
 * `struct connector` as its FIRST member, so `(struct csv_conn *)c` works.
 *
 * A connector knows nothing of the metaverse or the store: it reads objects
 * as struct entry, and writes struct change. The engine never calls
 * c->ops->x() directly: it calls the connector_*() wrappers at the bottom of
 * this file, which check arguments, count, trace and inject faults in tests.
 *
 * Lifecycle:
 *   connector_create()  from configuration, no I/O
 *   connector_open()    connect / open files (MUST before read or write)
 *   read:   connector_read_full() or connector_read_changes() -> cursor;
 *           connector_cursor_next() until IDS_DONE;
 *           connector_cursor_watermark(); connector_cursor_free()
 *   write:  connector_export_begin(); connector_submit() per change, with
 *           connector_poll() to collect results; connector_export_end();
 *           then connector_poll() until IDS_DONE
 *   connector_close()   disconnect, free the instance
 */
#ifndef IDSYNC_CONNECTOR_H
#define IDSYNC_CONNECTOR_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "entry.h"
#include "util/error.h"
#include "util/strbuf.h"

struct connector_config;   /* config.h */
struct object_type_config; /* config.h */
struct config_option;      /* config.h */

/* Capabilities (connector_ops.caps) */
#define CONN_CAP_READ  0x01u /* can be a source: read_full */
#define CONN_CAP_WRITE 0x02u /* can be a target: export */
#define CONN_CAP_DELTA 0x04u /* read_changes yields real deltas */
#define CONN_CAP_REF_BY_DN                                                                         \
    0x08u                     /* references are DNs (LDAP, LDIF); else anchors (SCIM id, CSV key) */
#define CONN_CAP_RENAME 0x10u /* supports new_dn in MODIFY */
#define CONN_CAP_ANCHOR_ON_ADD                                                                     \
    0x20u /* the system assigns the anchor on add (SCIM id, entryUUID);                            \
             otherwise the anchor is derived from the added object */
#define CONN_CAP_NOOP_VALUES                                                                       \
    0x40u /* adding a value that is there or deleting one that is not is no                        \
             error (LDAP: permissive modify, or the value dropped and the                          \
             modify re-sent); an LDIF file replayed by ldapmodify has no such                      \
             leniency */

/* One item of a read. */
struct read_item {
    enum change_op op;     /* full read: always CHANGE_ADD (a complete object).
                              delta read: CHANGE_ADD = complete object (upsert),
                              CHANGE_MODIFY = value-level change of a known object
                              (in `change`), CHANGE_DELETE = object gone (anchor,
                              maybe dn, in `change`). */
    struct entry *entry;   /* CHANGE_ADD: the object, with type, anchor, dn set */
    struct change *change; /* CHANGE_MODIFY / CHANGE_DELETE */
};
/* Free what the item holds (entry and change) and zero it. */
void read_item_release(struct read_item *item);

/* Result of one exported change. */
struct export_result {
    uint64_t tag;         /* the tag given to connector_submit() */
    enum ids_err code;    /* IDS_OK, or why it failed */
    struct ids_error err; /* message: names the attribute and the system's reason */
    char *anchor;         /* ADD: the anchor the object now has (SCIM id, entryUUID, key);
                             a rename where the anchor is the DN: the new one;
                             owned by the result; NULL when unchanged */
    char *dn;             /* ADD/rename: the DN/identifier it now has; NULL when unchanged */
    bool retryable;       /* temporary failure (timeout, 429 after retries, 503) */
    /* appended, MAY: attributes the system was given other values than the
     * change's (AD: the userAccountControl computed from the disable bit),
     * with the values written; the engine records those as exported, so
     * that the confirming import finds them. NULL: as submitted. */
    struct entry *written;
};
void export_result_release(struct export_result *r);

struct connector_cursor; /* opaque, defined by each connector */

struct connector {
    const struct connector_ops *ops;    /* MUST be set by create */
    const struct connector_config *cfg; /* borrowed from struct config; outlives the instance */
    const char *name;                   /* cfg->name */
    /* appended: a folder beside the store where a connector may keep large
     * read state that its watermark refers to (the CSV row tables), set by
     * the engine after create; NULL: keep everything in the watermark.
     * Such files must be checked (length, hash) when read back, and a
     * missing or damaged one answered with IDS_EFULLREQUIRED. */
    const char *state_dir;
    /* appended: non-zero once the run was asked to stop (SIGTERM, Ctrl-C),
     * set by the engine after create; a connector that waits (a file still
     * being written) gives up when it is set. MAY be NULL. */
    const volatile sig_atomic_t *stop;
};

struct connector_ops {
    const char *name; /* type name in the configuration: "csv", "ldap" */
    unsigned caps;    /* CONN_CAP_* */
    /* Connector-specific configuration keys (under connectors.NAME), and
     * per-object-type keys (under connectors.NAME.objects.TYPE). Terminated by
     * an entry with key == NULL. config.c validates them (unknown key, type,
     * bounds) and generates their documentation; MAY be NULL. */
    const struct config_option *options;
    const struct config_option *object_options;

    /* MUST. Build an instance from cfg: validate what config.c could not
     * (combinations, file readability is NOT checked here), no I/O. */
    enum ids_err (*create)(const struct connector_config *cfg, struct connector **out,
                           struct ids_error *err);
    /* MUST. Connect / open. IDS_EUNREACHABLE when the system cannot be
     * reached, with the address in the message. */
    enum ids_err (*open)(struct connector *c, struct ids_error *err);
    /* MUST. Disconnect and free the instance (also when open failed). */
    void (*close)(struct connector *c);

    /* MAY (`idsync check`): test the connection and describe what was found
     * (server flavour, object counts, SCIM capabilities) into `report`,
     * one "key: value" line each. */
    enum ids_err (*check)(struct connector *c, struct strbuf *report, struct ids_error *err);

    /* MUST if CONN_CAP_READ. Start reading every object of every configured
     * object type. */
    enum ids_err (*read_full)(struct connector *c, struct connector_cursor **out,
                              struct ids_error *err);
    /* MAY. Start reading changes since `watermark` (as returned by a previous
     * cursor's watermark; NULL = none stored). IDS_EFULLREQUIRED when the
     * connector cannot (watermark too old, file replaced): the engine then runs
     * a full import and records why (the message). */
    enum ids_err (*read_changes)(struct connector *c, const char *watermark,
                                 struct connector_cursor **out, struct ids_error *err);
    /* MUST with read_full. Next item: IDS_OK with *item filled (caller
     * releases it), IDS_DONE at the end, IDS_EINPUT for one bad object
     * (err names the object and attribute; the read can go on: call next
     * again), any other code is fatal for this read. */
    enum ids_err (*cursor_next)(struct connector_cursor *cur, struct read_item *item,
                                struct ids_error *err);
    /* MAY. After IDS_DONE: the watermark to store for the next delta read
     * (AD DirSync cookie, syncrepl cookie, a file's hash), appended to out. */
    enum ids_err (*cursor_watermark)(struct connector_cursor *cur, struct strbuf *out,
                                     struct ids_error *err);
    /* MUST with read_full. */
    void (*cursor_free)(struct connector_cursor *cur);

    /* MAY (targets). Called once before the first submit of an export run. */
    enum ids_err (*export_begin)(struct connector *c, struct ids_error *err);
    /* MUST if CONN_CAP_WRITE. Send (or queue) one change. MAY block while the
     * window of outstanding requests is full. Returns IDS_OK when accepted;
     * its result is delivered later by poll, carrying `tag`. A non-OK return
     * means the change was not sent; the engine records the error itself. */
    enum ids_err (*submit)(struct connector *c, const struct change *ch, uint64_t tag,
                           struct ids_error *err);
    /* MUST if CONN_CAP_WRITE. Deliver one finished result: IDS_OK with *res
     * filled (caller releases it), IDS_EAGAIN when none is finished yet and
     * !block, IDS_DONE when nothing is outstanding. With block, waits for
     * one. Other codes: the connection is lost (every outstanding change is
     * then reported by later polls as failed-retryable). */
    enum ids_err (*poll)(struct connector *c, bool block, struct export_result *res,
                         struct ids_error *err);
    /* MAY. Called once after the last submit: flush, commit (CSV writes its
     * snapshot and renames it here). Results still pending are then
     * collected with poll until IDS_DONE. */
    enum ids_err (*export_end)(struct connector *c, struct ids_error *err);

    /* MAY. Find the object of `type` whose attribute `attr` equals `value`
     * (an anchor carrier after a lost create response; a parent container).
     * IDS_OK with *out (caller frees), IDS_ENOTFOUND, or an error. */
    enum ids_err (*lookup)(struct connector *c, const char *type, const char *attr,
                           const char *value, struct entry **out, struct ids_error *err);

    /* MAY (appended). From the configuration alone, without a connection:
     * would a read of object type `type` see an object at `dn` (LDAP: the
     * type's base and scope)? false, with *why naming the base, when it
     * would not: an object created or moved there is never read back.
     * Not implemented, or not known from the configuration: true. */
    bool (*dn_readable)(const struct connector_config *cfg, const char *type, const char *dn,
                        struct strbuf *why);
};

/* Registry of connector types, NULL-terminated; used by config.c. */
extern const struct connector_ops *const connector_types[];
const struct connector_ops *connector_type_find(const char *name);

extern const struct connector_ops csv_connector_ops;
extern const struct connector_ops ldif_connector_ops;
extern const struct connector_ops null_connector_ops;
extern const struct connector_ops ldap_connector_ops;
extern const struct connector_ops scim_connector_ops;

/* ---- wrappers: the only way the engine calls a connector --------------- */

enum ids_err connector_create(const struct connector_config *cfg, struct connector **out,
                              struct ids_error *err);
enum ids_err connector_open(struct connector *c, struct ids_error *err);
void connector_close(struct connector *c); /* NULL-safe */
enum ids_err connector_check(struct connector *c, struct strbuf *report, struct ids_error *err);
bool connector_has_cap(const struct connector *c, unsigned cap);
enum ids_err connector_read_full(struct connector *c, struct connector_cursor **out,
                                 struct ids_error *err);
enum ids_err connector_read_changes(struct connector *c, const char *watermark,
                                    struct connector_cursor **out, struct ids_error *err);
enum ids_err connector_cursor_next(struct connector *c, struct connector_cursor *cur,
                                   struct read_item *item, struct ids_error *err);
enum ids_err connector_cursor_watermark(struct connector *c, struct connector_cursor *cur,
                                        struct strbuf *out, struct ids_error *err);
void connector_cursor_free(struct connector *c, struct connector_cursor *cur);
enum ids_err connector_export_begin(struct connector *c, struct ids_error *err);
enum ids_err connector_submit(struct connector *c, const struct change *ch, uint64_t tag,
                              struct ids_error *err);
enum ids_err connector_poll(struct connector *c, bool block, struct export_result *res,
                            struct ids_error *err);
enum ids_err connector_export_end(struct connector *c, struct ids_error *err);
enum ids_err connector_lookup(struct connector *c, const char *type, const char *attr,
                              const char *value, struct entry **out, struct ids_error *err);
bool connector_dn_readable(const struct connector_config *cfg, const char *type, const char *dn,
                           struct strbuf *why);

/* For directories that take AD's passwords (LDAP export, an LDIF made for
 * AD): *out is a copy of ch with its unicodePwd values in AD's form (the
 * quoted password in UTF-16LE, util/codec ad_password_value), or NULL when
 * ch has none. IDS_EINPUT names the object for a password that is not
 * valid UTF-8. */
enum ids_err connector_ad_passwords(const struct change *ch, struct change **out,
                                    struct ids_error *err);

/* Forget the read state connector `name` keeps in the store's state folder
 * (the CSV connector's row tables): its files removed. For a connector
 * space dropped or renamed (`idsync space`); state_dir NULL: nothing. */
void connector_state_forget(const char *state_dir, const char *name);
/* The CSV connector's part of it (csv.c). */
void csv_state_forget(const char *state_dir, const char *name);

/* Test hook: when set, connector_submit() and connector_cursor_next() call
 * it first; a non-OK return is returned as if the connector had failed.
 * Environment IDSYNC_FAULT="submit:N" / "next:N" makes the N-th call (1-based)
 * kill the process with SIGKILL (crash tests). */
extern enum ids_err (*connector_fault_hook)(const char *where, struct ids_error *err);

#endif
