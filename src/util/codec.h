/* codec.h - encodings the field needs: base64, hex, GUIDs, SIDs, hashing. */
#ifndef IDSYNC_UTIL_CODEC_H
#define IDSYNC_UTIL_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/strbuf.h"

/* RFC 4648 base64 with padding, appended to out. */
void base64_encode(struct strbuf *out, const void *data, size_t len);
/* Decode (whitespace ignored); IDS_EINPUT on a bad character or length. */
enum ids_err base64_decode(struct strbuf *out, const char *s, size_t len);

/* Lower-case hex. */
void hex_encode(struct strbuf *out, const void *data, size_t len);

/* AD objectGUID: 16 bytes (first three fields little-endian) <->
 * "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (lower case). */
enum ids_err guid_to_string(struct strbuf *out, const void *bytes, size_t len);
enum ids_err guid_from_string(struct strbuf *out, const char *s);

/* Binary objectSid -> "S-1-5-21-..." */
enum ids_err sid_to_string(struct strbuf *out, const void *bytes, size_t len);

/* 64-bit non-cryptographic hash (FNV-1a variant with a final mix);
 * stable across runs and machines: it is stored. */
uint64_t hash64(const void *data, size_t len, uint64_t seed);

/* 64-bit non-cryptographic hash for bulk content (file blocks, CSV rows):
 * 16 bytes a step with 64x64->128 multiplies, about ten times the speed of
 * hash64 on long input. Stable across runs and machines: it is stored (in
 * watermarks), so changing it means changing the watermark version. */
uint64_t hash64_bulk(const void *data, size_t len, uint64_t seed);

/* True when s[0..len) is valid UTF-8 (no overlongs, no surrogates). */
bool utf8_valid(const char *s, size_t len);
/* A password as AD takes it in unicodePwd: the UTF-16LE bytes of the
 * password in double quotes, appended to out; a value already in that form
 * is copied. false for invalid UTF-8. */
bool ad_password_value(const char *data, size_t len, struct strbuf *out);

/* True when every byte is printable UTF-8 text (no control characters other
 * than tab); binary values are shown as base64 by the output code. */
bool value_is_text(const char *s, size_t len);

/* LEB128-style unsigned varints (7 bits a byte, low first): the compact
 * encodings of entries, changes and join keys in the store. */
struct varint_reader {
    const unsigned char *p;   /* next byte */
    const unsigned char *end; /* one past the last byte */
    bool bad;                 /* set on truncation or overflow; reads then return 0 */
};
void varint_put(struct strbuf *out, uint64_t v);
uint64_t varint_get(struct varint_reader *r);

#endif
