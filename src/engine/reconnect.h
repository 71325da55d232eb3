/* reconnect.h - re-joining a rebuilt directory (`idsync reconnect`).
 *
 * Two situations, both planned by reconnect_plan_make():
 *
 *   1. Same store, rebuilt SOURCE connector S: the metaverse still links
 *      the old objects of S, whose anchors have vanished. S is read in full
 *      (nothing is staged); every object read whose anchor is not joined is
 *      matched, on the chosen metaverse attributes (--by mail, computed from
 *      the object by the inbound flow of that attribute), against the
 *      metaverse objects whose object in S vanished. Applying a re-anchor
 *      row links the new object to that metaverse object (staged as an add,
 *      so the next sync flows the new source anchor to every target's
 *      anchor carrier) and drops the old connector-space object, without
 *      deprovisioning anything; the watermark of S is cleared so that the
 *      next import of S is a full one. A new object that a delta import
 *      already projected into a metaverse object of its own (which reached
 *      no target: the soft-match guard stopped it) is matched the same way;
 *      applying drops that projection.
 *
 *   2. Fresh store, TARGET connector T: T holds disconnectors anchored to
 *      old values (their anchor carrier names the old source anchor), and
 *      the soft-match guard keeps them from joining. Every metaverse object
 *      with a `to` element for T and no object in T is matched against
 *      those disconnectors on the chosen attributes (the target attribute of
 *      each outbound flow that uses the metaverse attribute; JSON values
 *      such as SCIM emails compare on their "value"). Applying a re-anchor
 *      row joins the target object to the metaverse object and stages it,
 *      so that the next sync writes the new anchor into its carrier; a
 *      create still pending for that metaverse object in T (never
 *      exported) is dropped. No create and no delete reaches any target.
 *
 * Actions: re-anchor, already-linked, ambiguous (several candidates, or
 * one candidate claimed by several objects), no-candidate (a normal cycle
 * would project or provision it), type-mismatch (the only candidate has
 * another object type). Only re-anchor rows are applied.
 *
 * The plan records per row a fingerprint of what it saw: the object read,
 * the metaverse object, the connector-space objects and the target objects
 * involved (ids, anchors, attribute hashes). reconnect_apply() plans again
 * with the same options and applies only when every re-anchor row of the
 * plan is either seen exactly so again, or already done (idempotence);
 * anything else refuses the whole plan and changes nothing. It is recorded
 * in run history as step "reconnect".
 *
 * Memory: a plan holds one row per object examined, and the planning keeps
 * the join values of the objects it matches (a few hundred bytes each);
 * about 1.7 KB an object in all. Plan files are written and read a row at a
 * time; the apply keeps of the plan's rows only what reconnect_plan_scan
 * picks, and the objects it will re-anchor encoded.
 */
#ifndef IDSYNC_ENGINE_RECONNECT_H
#define IDSYNC_ENGINE_RECONNECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/engine.h"
#include "store/store.h"
#include "util/error.h"
#include "util/strbuf.h"
#include "util/strvec.h"

enum reconnect_action {
    RC_REANCHOR = 0,
    RC_ALREADY_LINKED,
    RC_AMBIGUOUS,
    RC_NO_CANDIDATE,
    RC_TYPE_MISMATCH,
    RC_NACTIONS
};
/* "re-anchor", "already-linked", "ambiguous", "no-candidate", "type-mismatch" */
const char *reconnect_action_name(enum reconnect_action a);

/* A candidate: situation 1 a metaverse object (with the vanished object of
 * the source), situation 2 a target connector-space object. */
struct reconnect_candidate {
    int64_t id;    /* MV id (1) or target CS id (2) */
    char *type;    /* MV type (1) or target object type (2) */
    char *anchor;  /* vanished source anchor (1) or target anchor (2) */
    char *dn;      /* its DN, may be NULL */
    char *carrier; /* (2) its anchor carrier value, may be NULL */
};

/* An object of a target linked to the row's metaverse object (shown, and
 * part of the fingerprint: "the target objects it saw"). */
struct reconnect_target {
    char *connector;
    int64_t cs_id;
    char *anchor; /* SCIM id, entryUUID ... */
    char *dn;
    char *carrier; /* anchor carrier value now */
};

struct reconnect_row {
    int situation; /* 1 or 2 */
    enum reconnect_action action;
    char *connector;  /* the connector examined: source (1) or target (2) */
    char *type;       /* object type in that connector (1: source type, 2: target type) */
    char *mv_type;    /* metaverse type */
    int64_t mv_id;    /* the metaverse object (0 when none chosen) */
    char *anchor;     /* 1: new source anchor; 2: the MV object's source anchor */
    char *dn;         /* 1: new source DN; 2: the MV object's source DN */
    char *by;         /* matching values, "mail=ann@example.org" */
    char *old_anchor; /* 1: vanished source anchor; 2: carrier value in the target */
    char *new_anchor; /* 1: new source anchor; 2: carrier value it will get */
    int64_t cs_id;    /* 1: the vanished CS object; 2: the target CS object */
    char *cs_anchor;  /* 2: the target object's anchor (SCIM id); 1: = old_anchor */
    char *cs_dn;      /* the DN of that CS object */
    int64_t drop_cs;  /* 2: a pending create of the MV object in T to drop; 0 = none */
    int64_t drop_mv;  /* 1: the metaverse object a delta import projected from the new
                         object (no target object exported): dropped, 0 = none */
    size_t ncand;
    struct reconnect_candidate *cand;
    size_t ntargets;
    struct reconnect_target *targets;
    char *note; /* why, for people; may be NULL */
    char fingerprint[17];
};

struct reconnect_opts {
    const char *connector; /* NULL: every source (1) and every target (2) */
    struct strvec by;      /* metaverse attributes to match on (lower or any case) */
    const char *object;    /* one-by-one: the object (anchor or DN), or NULL */
    const char *to;        /* one-by-one: the chosen candidate (anchor, DN or mv:ID) */
};

struct reconnect_plan {
    char *config;    /* configuration file it was made with */
    char *store;     /* store URL */
    char *connector; /* NULL = all */
    struct strvec by;
    char *object;
    char *to;
    int64_t created_us;
    size_t nr;
    size_t alloc;
    struct reconnect_row *v;
    long totals[RC_NACTIONS];
    long read;            /* objects read from sources */
    long unreadable;      /* objects a source could not deliver (IDS_EINPUT) */
    long unmatched_old;   /* 1: vanished objects no new object matched */
    char fingerprint[17]; /* of every row's fingerprint, in order */
};

void reconnect_plan_init(struct reconnect_plan *p);
void reconnect_plan_release(struct reconnect_plan *p);

/* Plan (nothing is written anywhere). Reads the source connectors in
 * situation 1. IDS_EUSAGE for a bad connector, --by attribute or
 * --object/--to; IDS_EUNREACHABLE / IDS_ESTORE as the steps do. */
enum ids_err reconnect_plan_make(struct engine *eng, const struct reconnect_opts *o,
                                 struct reconnect_plan *out, struct ids_error *err);

/* The plan as JSON (the --json output and the --plan file): the header,
 * then one compact line per row. */
void reconnect_plan_to_json(const struct reconnect_plan *p, struct strbuf *out);
void reconnect_plan_write(const struct reconnect_plan *p, FILE *fp);
/* The same with only the rows [offset, offset + limit): a page (the API's
 * preview; the header and totals are the whole plan's). */
void reconnect_plan_page_to_json(const struct reconnect_plan *p, size_t offset, size_t limit,
                                 struct strbuf *out);
/* Read a plan file's text, rows and all. IDS_EINPUT naming what is wrong. */
enum ids_err reconnect_plan_from_json(const char *text, size_t len, struct reconnect_plan *out,
                                      struct ids_error *err);

/* A plan read a row at a time: its header once, then each row parsed when
 * asked for, so that applying a plan of a million rows never holds them
 * all (the text may be a mapped file; consumed(), when set, is told how
 * far the rows have been read, to give pages back). Or the rows of a plan
 * in memory (mem). */
struct reconnect_plan_reader {
    const struct reconnect_plan *mem;
    const char *text;
    size_t len;
    size_t rows, rows_end; /* the "rows" array: after its '[', its ']' */
    bool have_rows;
    size_t pos;    /* where the next row is looked for */
    size_t at;     /* where the last row returned starts (in mem: its index) */
    size_t at_len; /* and its length in bytes */
    size_t n;      /* rows returned */
    bool done;
    struct reconnect_row row; /* the last row read from text */
    void (*consumed)(void *arg, size_t upto);
    void *consumed_arg;
    const char *name; /* the plan file, for messages; may be NULL */
    /* reconnect_plan_row_at reads len bytes at `at` through this when set
     * (a mapped file that shrank would raise SIGBUS; a read reports it) */
    enum ids_err (*fetch)(void *arg, size_t at, size_t len, char *buf, struct ids_error *err);
};

/* Read the header of the plan in text (everything but the rows) into hdr
 * (no rows) and make rd ready for its first row. IDS_EINPUT naming the
 * line when the text is not a plan. rd's consumed, consumed_arg and name
 * are kept (set them before, or zero rd); the rest is set here. */
enum ids_err reconnect_plan_open(struct reconnect_plan_reader *rd, const char *text, size_t len,
                                 struct reconnect_plan *hdr, struct ids_error *err);
/* The next row in *row (valid until the next call): IDS_OK, IDS_DONE after
 * the last, IDS_EINPUT naming the row and line. */
enum ids_err reconnect_plan_next(struct reconnect_plan_reader *rd, const struct reconnect_row **row,
                                 struct ids_error *err);
/* The row that starts at `at` and is `len` bytes long (a reader's `at` and
 * `at_len` after it was returned), read again; valid until the next call. */
enum ids_err reconnect_plan_row_at(struct reconnect_plan_reader *rd, size_t at, size_t len,
                                   const struct reconnect_row **row, struct ids_error *err);
void reconnect_plan_reader_release(struct reconnect_plan_reader *rd);

/* What the apply needs of a plan, from one pass over its rows (which
 * checks every one of them): per re-anchor row its pairing key, ids,
 * fingerprint and where it is (to name it in a refusal); totals per
 * action. About 100 bytes a row: a plan of a million rows is read once
 * and never held. */
struct reconnect_pick {
    char *key;
    size_t at;
    size_t len;
    int64_t mv_id;
    int64_t cs_id;
    int situation;
    char fingerprint[17];
};
struct reconnect_picks {
    struct reconnect_pick *v;
    size_t n, alloc;
    size_t rows;
    long totals[RC_NACTIONS];
};
/* Read every remaining row of rd into pk. IDS_EINPUT naming the row. */
enum ids_err reconnect_plan_scan(struct reconnect_plan_reader *rd, struct reconnect_picks *pk,
                                 struct ids_error *err);
void reconnect_picks_release(struct reconnect_picks *pk);

/* Apply `plan` (see above). *run receives the run record (step
 * "reconnect"); IDS_EREJECTED when the plan no longer matches (err says
 * which objects; nothing was changed), IDS_OK when applied (or nothing was
 * left to do). */
enum ids_err reconnect_apply(struct engine *eng, const struct reconnect_plan *plan,
                             struct run_record *run, struct ids_error *err);
/* The same for a plan read by reconnect_plan_scan (hdr its header, pk its
 * rows): every re-anchor row is compared before anything is changed; rd
 * is read again only for the rows a refusal names. */
enum ids_err reconnect_apply_picks(struct engine *eng, const struct reconnect_plan *hdr,
                                   const struct reconnect_picks *pk,
                                   struct reconnect_plan_reader *rd, struct run_record *run,
                                   struct ids_error *err);

#endif
