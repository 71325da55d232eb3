/* ldifparse.h - streaming RFC 2849 reader and writer helpers (private to
 * ldif.c and its tests/fuzz target).
 *
 * ldif_read_record() reads one record (the lines up to a blank line) from
 * a file_reader: folded lines are joined, comments skipped (a comment that
 * starts with "# idsync:" is kept as the record's marker), `attr:: base64`
 * decoded, `attr:< URL` kept as kind '<' (the caller rejects it), "-" lines
 * kept as separators. A leading `version: 1` is taken and dropped.
 * A malformed line makes the whole record bad (its lines are still consumed
 * so that the next record starts in step); the message names the line.
 * Logical lines are capped at LDIF_LINE_MAX (a value as ldapsearch writes
 * it, folded: a 2 MB jpegPhoto is a 2.7 MB line), records at
 * LDIF_RECORD_MAX.
 */
#ifndef IDSYNC_CONNECTOR_LDIFPARSE_H
#define IDSYNC_CONNECTOR_LDIFPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "connector/fileio.h"
#include "util/strbuf.h"

#define LDIF_LINE_MAX   (16u * 1024u * 1024u)
#define LDIF_RECORD_MAX (64u * 1024u * 1024u)

struct ldif_av {
    char *name;  /* attribute description or keyword as written; "-" for a separator */
    char *value; /* decoded value, NUL-terminated, may hold NULs */
    size_t vlen;
    char kind;     /* ':' text, 'b' base64, '<' URL, '-' separator */
    uint64_t line; /* line it starts on */
};

struct ldif_record {
    uint64_t off;     /* offset of the record's first line (comments included) */
    uint64_t end_off; /* offset after the record */
    uint64_t line;    /* line of its first attribute line (the dn) */
    struct ldif_av *av;
    size_t nav, alloc;
    size_t bytes; /* decoded bytes held */
    char *marker; /* last "# idsync:" comment of the record, or NULL */
    bool bad;     /* malformed: errmsg says why ("line N: ...") */
    char errmsg[512];
};

enum ldif_status {
    LDIF_OK,
    LDIF_EOF,
    LDIF_IOERR,
};

void ldif_record_init(struct ldif_record *rec);
void ldif_record_release(struct ldif_record *rec);
/* Read the next record; *line is the current line number (1-based),
 * advanced. `first`: at the start of the file (version: 1 accepted). */
enum ldif_status ldif_read_record(struct file_reader *r, uint64_t *line, bool first,
                                  struct ldif_record *rec);

/* RFC 2849 SAFE-STRING (written as is); anything else is written base64.
 * A value with a trailing space is written base64 too. */
bool ldif_safe_string(const char *s, size_t len);
/* Append "name: value\n" or "name:: base64\n", folded at 76 columns. */
void ldif_write_attr(struct strbuf *out, const char *name, const char *value, size_t len);

#endif
