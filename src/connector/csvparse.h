/* csvparse.h - streaming RFC 4180 record parser and writer (private to
 * csv.c and its tests/fuzz target).
 *
 * csv_read_record() reads one record from a file_reader: fields separated
 * by `delim`, records ended by CRLF, LF or a lone CR; a field that starts
 * with `"` is quoted and may hold delimiters, CR, LF and doubled quotes. A
 * quote inside an unquoted field is kept as a literal character. The record
 * is capped (csv_record.max bytes as in the file, CSV_RECORD_MAX unless set
 * after csv_record_init; as LDIF_RECORD_MAX: a group of millions of members
 * is one cell): a longer record is consumed to its end and flagged too_big.
 * Runs of plain bytes are taken at once, so a record costs time linear in
 * its length, too long or not.
 */
#ifndef IDSYNC_CONNECTOR_CSVPARSE_H
#define IDSYNC_CONNECTOR_CSVPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "connector/fileio.h"
#include "util/strbuf.h"
#include "util/strvec.h"

#define CSV_RECORD_MAX (64u * 1024u * 1024u)

struct csv_field {
    size_t off; /* offset in csv_record.data */
    size_t len;
};

struct csv_record {
    struct strbuf data;  /* field contents, each followed by a NUL */
    struct csv_field *f; /* fields */
    size_t nf, falloc;
    struct strbuf raw;      /* the record's bytes as in the file, without the line end */
    uint64_t line;          /* line the record starts on (1-based) */
    size_t max;             /* cap of raw.len (CSV_RECORD_MAX) */
    bool too_big;           /* longer than max: fields are not usable */
    bool unterminated;      /* end of file inside a quoted field */
    size_t bad_quote_field; /* SIZE_MAX, or a field with text after its closing quote */
    size_t unterminated_field;
    uint64_t restart_off; /* unterminated: offset of the line after `line` */
    uint64_t restart_line;
    char eol[3]; /* the line end that ended the record ("" at end of file) */
};

enum csv_status {
    CSV_REC_OK,
    CSV_REC_EOF,
    CSV_REC_IOERR,
};

void csv_record_init(struct csv_record *rec);
void csv_record_release(struct csv_record *rec);
/* Read one record. *line is the current line number, advanced past the
 * record. An unterminated record has its reader positioned at restart_off
 * (the caller reports it and goes on with the next line). */
enum csv_status csv_read_record(struct file_reader *r, char delim, uint64_t *line,
                                struct csv_record *rec);
/* True for an empty line (one empty, unquoted field). */
bool csv_record_blank(const struct csv_record *rec);
static inline const char *csv_field_str(const struct csv_record *rec, size_t i)
{
    return rec->data.buf + rec->f[i].off;
}

/* Append one field, quoted when it holds the delimiter, a quote, CR, LF or
 * leading/trailing space. */
void csv_write_field(struct strbuf *out, const char *s, size_t len, char delim);

/* Split a multi-valued cell on `sep`: `\sep` is a literal separator, `\\` a
 * backslash, any other backslash is kept; empty values are dropped. */
void csv_split_values(const char *s, size_t len, char sep, struct strvec *out);
/* The reverse: values joined by sep, with `\` and sep escaped. */
void csv_join_values(struct strbuf *out, const struct strvec *vals, char sep);

#endif
