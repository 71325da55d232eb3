#include "util/codec.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "util/banned.h"

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void base64_encode(struct strbuf *out, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i;

    strbuf_grow(out, (len + 2) / 3 * 4);
    for (i = 0; i + 2 < len; i += 3) {
        strbuf_addch(out, b64chars[p[i] >> 2]);
        strbuf_addch(out, b64chars[((p[i] & 3) << 4) | (p[i + 1] >> 4)]);
        strbuf_addch(out, b64chars[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)]);
        strbuf_addch(out, b64chars[p[i + 2] & 63]);
    }
    if (i < len) {
        strbuf_addch(out, b64chars[p[i] >> 2]);
        if (i + 1 < len) {
            strbuf_addch(out, b64chars[((p[i] & 3) << 4) | (p[i + 1] >> 4)]);
            strbuf_addch(out, b64chars[(p[i + 1] & 15) << 2]);
        } else {
            strbuf_addch(out, b64chars[(p[i] & 3) << 4]);
            strbuf_addch(out, '=');
        }
        strbuf_addch(out, '=');
    }
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

enum ids_err base64_decode(struct strbuf *out, const char *s, size_t len)
{
    unsigned int acc = 0;
    int bits = 0;
    size_t i;
    size_t pad = 0;
    size_t n = 0;
    size_t start = out->len;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int v;

        if (isspace(c)) {
            continue;
        }
        if (c == '=') {
            pad++;
            n++;
            continue;
        }
        if (pad > 0) {
            goto bad;
        }
        v = b64val(c);
        if (v < 0) {
            goto bad;
        }
        n++;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            strbuf_addch(out, (int)((acc >> bits) & 0xff));
        }
    }
    if (pad > 2 || n % 4 != 0) {
        goto bad;
    }
    return IDS_OK;
bad:
    strbuf_setlen(out, start);
    return IDS_EINPUT;
}

void hex_encode(struct strbuf *out, const void *data, size_t len)
{
    static const char hx[] = "0123456789abcdef";
    const unsigned char *p = data;
    size_t i;

    for (i = 0; i < len; i++) {
        strbuf_addch(out, hx[p[i] >> 4]);
        strbuf_addch(out, hx[p[i] & 15]);
    }
}

enum ids_err guid_to_string(struct strbuf *out, const void *bytes, size_t len)
{
    const unsigned char *b = bytes;

    if (len != 16) {
        return IDS_EINPUT;
    }
    strbuf_addf(out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[3],
                b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
                b[14], b[15]);
    return IDS_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

enum ids_err guid_from_string(struct strbuf *out, const char *s)
{
    /* byte order of the string's hex pairs in the 16-byte form */
    static const int order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
    unsigned char raw[16];
    unsigned char b[16];
    size_t i;
    size_t n = 0;
    const char *p = s;

    if (*p == '{') {
        p++;
    }
    while (*p && n < 16) {
        int hi;
        int lo;

        if (*p == '-') {
            p++;
            continue;
        }
        hi = hexval(p[0]);
        lo = hi < 0 ? -1 : hexval(p[1]);
        if (hi < 0 || lo < 0) {
            return IDS_EINPUT;
        }
        raw[n++] = (unsigned char)(hi << 4 | lo);
        p += 2;
    }
    if (*p == '}') {
        p++;
    }
    if (n != 16 || *p != '\0') {
        return IDS_EINPUT;
    }
    for (i = 0; i < 16; i++) {
        b[order[i]] = raw[i];
    }
    strbuf_add(out, b, 16);
    return IDS_OK;
}

enum ids_err sid_to_string(struct strbuf *out, const void *bytes, size_t len)
{
    const unsigned char *b = bytes;
    unsigned long long auth = 0;
    size_t count;
    size_t i;

    if (len < 8) {
        return IDS_EINPUT;
    }
    count = b[1];
    if (len != 8 + 4 * count) {
        return IDS_EINPUT;
    }
    for (i = 2; i < 8; i++) {
        auth = (auth << 8) | b[i];
    }
    strbuf_addf(out, "S-%u-%llu", b[0], auth);
    for (i = 0; i < count; i++) {
        const unsigned char *q = b + 8 + 4 * i;
        unsigned long v = (unsigned long)q[0] | (unsigned long)q[1] << 8 |
                          (unsigned long)q[2] << 16 | (unsigned long)q[3] << 24;

        strbuf_addf(out, "-%lu", v);
    }
    return IDS_OK;
}

/* final avalanche (splitmix64) */
static inline uint64_t mix64(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

uint64_t hash64(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return mix64(h);
}

static inline uint64_t rd64le(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

/* 64x64 -> 128 multiply, folded to 64 bits */
static inline uint64_t mum64(uint64_t a, uint64_t b)
{
    __extension__ typedef unsigned __int128 u128;
    u128 r = (u128)a * b;

    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

#define HB_P1 0xa0761d6478bd642fULL
#define HB_P2 0xe7037ed1a0b428dbULL
#define HB_P3 0x8ebc6af09c88c6e3ULL

uint64_t hash64_bulk(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = seed ^ HB_P3;
    size_t n = len;
    unsigned char tail[16] = {0};
    uint64_t a;
    uint64_t b;

    /* the state is multiplied by an odd constant after each block, which is
     * a bijection: no block can make two different histories equal */
    while (n >= 16) {
        h = (h ^ mum64(rd64le(p) ^ HB_P1, rd64le(p + 8) ^ HB_P2)) * HB_P3;
        p += 16;
        n -= 16;
    }
    /* the last 0-15 bytes, zero-padded: two loads instead of a loop */
    if (n > 0) {
        memcpy(tail, p, n);
    }
    a = rd64le(tail);
    b = rd64le(tail + 8);
    h = (h ^ mum64(a ^ HB_P1, b ^ HB_P2 ^ (uint64_t)len)) * HB_P3;
    return mix64(h);
}

bool utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        unsigned char c = p[i];
        size_t n;
        uint32_t cp;
        size_t k;

        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= n) {
            return false;
        }
        for (k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += n + 1;
    }
    return true;
}

bool value_is_text(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return false;
        }
    }
    return utf8_valid(s, len);
}

void varint_put(struct strbuf *out, uint64_t v)
{
    unsigned char buf[10];
    size_t n = 0;

    do {
        unsigned char b = v & 0x7f;

        v >>= 7;
        if (v) {
            b |= 0x80;
        }
        buf[n++] = b;
    } while (v);
    if (out->alloc > out->len + n) {
        /* room (with the NUL): no call; entries encode a varint per value */
        memcpy(out->buf + out->len, buf, n);
        out->len += n;
        out->buf[out->len] = '\0';
        return;
    }
    strbuf_add(out, buf, n);
}

uint64_t varint_get(struct varint_reader *r)
{
    uint64_t v = 0;
    int shift = 0;

    while (!r->bad) {
        unsigned char b;

        if (r->p >= r->end || shift > 63) {
            r->bad = true;
            break;
        }
        b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            return v;
        }
        shift += 7;
    }
    return 0;
}

/* AD takes a password in unicodePwd as the UTF-16LE bytes of the password
 * in double quotes (MS-ADTS 3.1.1.3.1.5). A value already in that form
 * (from an LDIF made for AD) is left alone. Invalid UTF-8: false. */
bool ad_password_value(const char *data, size_t len, struct strbuf *out)
{
    const unsigned char *p = (const unsigned char *)data;
    size_t i = 0;

    if (len >= 4 && len % 2 == 0 && p[0] == '"' && p[1] == 0 && p[len - 2] == '"' &&
        p[len - 1] == 0) {
        strbuf_add(out, data, len);
        return true;
    }
    if (!utf8_valid(data, len)) {
        return false;
    }
    strbuf_add(out, "\"\0", 2);
    while (i < len) {
        uint32_t cp;
        unsigned char u[4];
        size_t n = p[i] < 0x80 ? 1 : p[i] < 0xe0 ? 2 : p[i] < 0xf0 ? 3 : 4;

        cp = n == 1 ? p[i] : n == 2 ? p[i] & 0x1fu : n == 3 ? p[i] & 0x0fu : p[i] & 0x07u;
        for (size_t k = 1; k < n; k++) {
            cp = (cp << 6) | (p[i + k] & 0x3fu);
        }
        i += n;
        if (cp >= 0x10000) {
            uint32_t v = cp - 0x10000;
            uint32_t hi = 0xd800 + (v >> 10);
            uint32_t lo = 0xdc00 + (v & 0x3ff);

            u[0] = hi & 0xff;
            u[1] = hi >> 8;
            u[2] = lo & 0xff;
            u[3] = lo >> 8;
            strbuf_add(out, u, 4);
        } else {
            u[0] = cp & 0xff;
            u[1] = cp >> 8;
            strbuf_add(out, u, 2);
        }
    }
    strbuf_add(out, "\"\0", 2);
    return true;
}
