/* table.h - aligned text tables and small formatting helpers for terminals.
 *
 *   struct table *t = table_new();
 *   table_add_column(t, "RUN", TABLE_RIGHT);
 *   table_add_column(t, "STEP", TABLE_LEFT);
 *   table_add_row(t);
 *   table_add_cellf(t, "%lld", id);
 *   table_add_cell(t, "full-import");
 *   table_print(t, stdout);
 *   table_free(t);
 *
 * Columns are separated by two spaces and sized to their widest cell,
 * counted in display columns (UTF-8 code points); the last column is not
 * padded, so long messages do not drag trailing blanks. Every cell passes
 * through text_sanitize(): a value read from a directory can never move
 * the cursor or colour the terminal.
 *
 * Ownership: the table copies every string it is given; table_free frees it.
 */
#ifndef IDSYNC_UTIL_TABLE_H
#define IDSYNC_UTIL_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/strbuf.h"

enum table_align { TABLE_LEFT, TABLE_RIGHT };

struct table;

struct table *table_new(void);
void table_free(struct table *t); /* NULL-safe */
/* Columns must be declared before the first row. */
void table_add_column(struct table *t, const char *header, enum table_align align);
/* Start a new row; its cells are filled left to right. Missing cells print
 * empty; cells beyond the last column are ignored. */
void table_add_row(struct table *t);
void table_add_cell(struct table *t, const char *text); /* NULL prints as "" */
void table_add_cellf(struct table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
size_t table_rows(const struct table *t);
/* Print the header line (when any column has a header) and the rows. With
 * `indent` > 0 every line starts with that many spaces. */
void table_print(const struct table *t, FILE *out, size_t indent);

/* Append s[0..len) to out for display on a terminal: valid UTF-8 text is
 * copied; control characters are written as \n, \t, \r or \xNN, and bytes
 * that are not valid UTF-8 as \xNN. */
void text_sanitize(struct strbuf *out, const char *s, size_t len);
/* Display width of a (sanitized) UTF-8 string: its number of code points. */
size_t text_width(const char *s);

/* A duration in microseconds for people: "0.35 s", "1.2 s", "42 s",
 * "3 m 05 s", "2 h 03 m". Negative values print as "-". */
void fmt_duration(struct strbuf *out, int64_t us);
/* Microseconds since the epoch as local time "2024-05-01 14:03:22" (0 -> "-"). */
void fmt_local_time(struct strbuf *out, int64_t us);
/* The same as UTC in ISO 8601 "2024-05-01T12:03:22.123Z", for JSON. */
void fmt_iso_time(struct strbuf *out, int64_t us);

#endif
