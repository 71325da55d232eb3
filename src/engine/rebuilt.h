/* rebuilt.h - does a full import look like a rebuilt source directory?
 *
 * When a full import would delete most of a connector space, the import
 * guard stops (import.c). Before it rolls back, it asks here whether the
 * source looks REBUILT rather than broken: about as many new objects as
 * vanished ones, and the new objects' join values (the normalised values of
 * the `from` join rules, such as mail or UPN) equal those of metaverse
 * objects whose object in this connector vanished in the same import. The
 * answer adds a sentence to the run's message naming `idsync reconnect`.
 */
#ifndef IDSYNC_ENGINE_REBUILT_H
#define IDSYNC_ENGINE_REBUILT_H

#include <stdbool.h>

#include "engine/engine.h"
#include "util/error.h"
#include "util/strbuf.h"

/* New objects examined at most (each costs a few index lookups). */
#define REBUILT_SAMPLE 5000

struct rebuilt_sample {
    long vanished; /* anchors of the space not seen by the import */
    long appeared; /* new anchors staged as adds */
    long sampled;  /* new objects examined */
    long matched;  /* of those: same join value as a vanished object's MV object */
    char attr[64]; /* the join attribute (metaverse name) that matched most, "" if none */
};

/* Pure decision on counts: most anchors gone, about as many new ones, and
 * at least half of the sampled new objects matching vanished ones. */
bool rebuilt_decide(const struct rebuilt_sample *s);

/* Examine the staged (not yet committed) result of a full import of
 * `connector`: sample the new objects (import state add) and look their
 * join values up in the metaverse; a match is an MV object whose object in
 * this connector is staged for deletion. Fills *out and returns the
 * decision. Store errors make it answer false (err filled). */
bool rebuilt_source_suspected(struct engine *eng, const char *connector, long vanished,
                              long appeared, struct rebuilt_sample *out, struct ids_error *err);

/* The run-message sentence for a positive answer, appended to out:
 * "The source looks rebuilt: N of M objects have new anchors but match old
 * ones on mail; run `idsync reconnect CONNECTOR --by mail` to preview
 * re-joining them." */
void rebuilt_message(const struct rebuilt_sample *s, const char *connector, struct strbuf *out);

struct erun; /* engine_int.h */

/* For the import guard, in one call: when the source looks rebuilt, append
 * the sentence to the message of run `r`. Call while the import's
 * transaction is still open (before its rollback). */
void rebuilt_note_run(struct erun *r, const char *connector, long vanished, long appeared);

#endif
