/* Unit tests: util/ (strbuf, strvec, codec, error). */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/codec.h"
#include "util/spool.h"
#include "util/error.h"
#include "util/strbuf.h"
#include "util/strvec.h"

static void test_strbuf(void **state)
{
    struct strbuf sb = STRBUF_INIT;

    (void)state;
    assert_string_equal(sb.buf, "");
    strbuf_addf(&sb, "%s-%d", "abc", 42);
    strbuf_addch(&sb, '!');
    assert_string_equal(sb.buf, "abc-42!");
    sb.max = 8;
    assert_int_equal(strbuf_add_checked(&sb, "x", 1), IDS_OK);
    assert_int_equal(strbuf_add_checked(&sb, "y", 1), IDS_ETOOBIG);
    assert_int_equal(sb.len, 8);
    strbuf_reset(&sb);
    strbuf_add_json_str(&sb, "a\"b\\\n\x01", 6);
    assert_string_equal(sb.buf, "\"a\\\"b\\\\\\n\\u0001\"");
    strbuf_release(&sb);
}

static void test_strvec(void **state)
{
    struct strvec sv = STRVEC_INIT;

    (void)state;
    strvec_split(&sv, "a;;b;c", ';', true);
    assert_int_equal(sv.nr, 3);
    assert_string_equal(sv.v[2], "c");
    assert_null(sv.v[3]);
    assert_int_equal(strvec_find(&sv, "B", true), 1);
    assert_int_equal(strvec_find(&sv, "B", false), -1);
    strvec_clear(&sv);
    assert_int_equal(sv.nr, 0);
}

static void test_base64(void **state)
{
    struct strbuf sb = STRBUF_INIT;
    struct strbuf dec = STRBUF_INIT;
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    size_t i;

    (void)state;
    for (i = 0; i < 7; i++) {
        strbuf_reset(&sb);
        strbuf_reset(&dec);
        base64_encode(&sb, in[i], strlen(in[i]));
        assert_string_equal(sb.buf, out[i]);
        assert_int_equal(base64_decode(&dec, sb.buf, sb.len), IDS_OK);
        assert_string_equal(dec.buf, in[i]);
    }
    strbuf_reset(&dec);
    assert_int_equal(base64_decode(&dec, "Zm9v!", 5), IDS_EINPUT);
    assert_int_equal(base64_decode(&dec, "Zm9", 3), IDS_EINPUT);
    assert_int_equal(dec.len, 0);
    strbuf_release(&sb);
    strbuf_release(&dec);
}

static void test_guid_sid(void **state)
{
    /* objectGUID bytes as AD stores them, and the canonical string */
    const unsigned char g[16] = {0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66,
                                 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    const unsigned char sid[] = {1, 4, 0, 0, 0, 0, 0, 5, 21,   0, 0, 0,
                                 1, 0, 0, 0, 2, 0, 0, 0, 0xe9, 3, 0, 0};
    struct strbuf sb = STRBUF_INIT;
    struct strbuf back = STRBUF_INIT;

    (void)state;
    assert_int_equal(guid_to_string(&sb, g, 16), IDS_OK);
    assert_string_equal(sb.buf, "00112233-4455-6677-8899-aabbccddeeff");
    assert_int_equal(guid_from_string(&back, sb.buf), IDS_OK);
    assert_int_equal(back.len, 16);
    assert_memory_equal(back.buf, g, 16);
    assert_int_equal(guid_to_string(&sb, g, 15), IDS_EINPUT);
    strbuf_reset(&back);
    assert_int_equal(guid_from_string(&back, "0011-zz"), IDS_EINPUT);
    strbuf_reset(&sb);
    assert_int_equal(sid_to_string(&sb, sid, sizeof(sid)), IDS_OK);
    assert_string_equal(sb.buf, "S-1-5-21-1-2-1001");
    assert_int_equal(sid_to_string(&sb, sid, 10), IDS_EINPUT);
    strbuf_release(&sb);
    strbuf_release(&back);
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(utf8_valid("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15));
    assert_false(utf8_valid("\xc0\xaf", 2));     /* overlong */
    assert_false(utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
    assert_false(utf8_valid("\xe2\x82", 2));     /* truncated */
    assert_false(value_is_text("a\0b", 3));
    assert_true(value_is_text("a\tb", 3));
}

/* unicodePwd as AD takes it: the quoted password in UTF-16LE, surrogate
 * pairs for characters beyond the BMP; a value already in that form is
 * copied; invalid UTF-8 is refused. */
static void test_ad_password(void **state)
{
    /* "Pä€😀" -> "\"" P ä € U+1F600 (D83D DE00) "\"" */
    static const unsigned char want[] = {'"',  0,    'P',  0,    0xe4, 0,   0xac,
                                         0x20, 0x3d, 0xd8, 0x00, 0xde, '"', 0};
    static const char in[] = "P\xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80";
    struct strbuf sb = STRBUF_INIT;
    struct strbuf again = STRBUF_INIT;

    (void)state;
    assert_true(ad_password_value(in, strlen(in), &sb));
    assert_int_equal(sb.len, sizeof(want));
    assert_memory_equal(sb.buf, want, sizeof(want));
    assert_true(ad_password_value(sb.buf, sb.len, &again)); /* already encoded */
    assert_int_equal(again.len, sb.len);
    assert_memory_equal(again.buf, sb.buf, sb.len);
    strbuf_reset(&sb);
    assert_false(ad_password_value("a\xff", 2, &sb));
    assert_false(ad_password_value("\xc3", 1, &sb));
    strbuf_release(&sb);
    strbuf_release(&again);
}

static void test_error(void **state)
{
    struct ids_error err = IDS_ERROR_INIT;

    (void)state;
    assert_int_equal(ids_error_set(&err, IDS_EINPUT, "row %d", 3), IDS_EINPUT);
    ids_error_prefix(&err, "file %s", "a.csv");
    assert_string_equal(err.msg, "file a.csv: row 3");
    assert_string_equal(ids_err_name(IDS_ETHRESHOLD), "threshold");
    assert_int_equal(hash64("abc", 3, 0), hash64("abc", 3, 0));
    assert_int_not_equal(hash64("abc", 3, 0), hash64("abd", 3, 0));
}

/* hash64_bulk is stored in watermarks: the same bytes give the same hash
 * in every process, every byte and every length counts, and blocks are not
 * interchangeable. */
static void test_hash64_bulk(void **state)
{
    unsigned char buf[200];
    uint64_t seen[sizeof(buf) + 1];
    size_t i, j;

    (void)state;
    for (i = 0; i < sizeof(buf); i++) {
        buf[i] = (unsigned char)(i * 7 + 1);
    }
    /* every prefix length gives another hash (zero padding is not free) */
    for (i = 0; i <= sizeof(buf); i++) {
        seen[i] = hash64_bulk(buf, i, 0);
        for (j = 0; j < i; j++) {
            assert_int_not_equal(seen[i], seen[j]);
        }
    }
    memset(buf, 0, sizeof(buf));
    assert_int_not_equal(hash64_bulk(buf, 16, 0), hash64_bulk(buf, 17, 0));
    /* one flipped bit anywhere changes the hash */
    for (i = 0; i < 64; i++) {
        uint64_t h0 = hash64_bulk(buf, 64, 5);

        buf[i] ^= 0x10;
        assert_int_not_equal(hash64_bulk(buf, 64, 5), h0);
        buf[i] ^= 0x10;
    }
    /* swapping two 16-byte blocks changes the hash; so does the seed */
    memcpy(buf, "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB", 32);
    memcpy(buf + 32, "BBBBBBBBBBBBBBBBAAAAAAAAAAAAAAAA", 32);
    assert_int_not_equal(hash64_bulk(buf, 32, 0), hash64_bulk(buf + 32, 32, 0));
    assert_int_not_equal(hash64_bulk(buf, 32, 0), hash64_bulk(buf, 32, 1));
    /* stable: the value of a fixed input is part of the stored format */
    assert_true(hash64_bulk("idsync", 6, 0) == 0x26b35056afb9eec8ULL);
    /* ... and of every length from 0 to 200 (every tail of 0-15 bytes
     * after 0-12 blocks), each with its own seed */
    {
        uint64_t acc = 0;

        for (i = 0; i < sizeof(buf); i++) {
            buf[i] = (unsigned char)(i * 7 + 1);
        }
        for (i = 0; i <= sizeof(buf); i++) {
            acc = (acc ^ hash64_bulk(buf, i, (uint64_t)i)) * 0x100000001b3ULL;
        }
        assert_true(acc == 0x70cb66a5f7bb3f60ULL);
    }
}

static size_t dir_entries(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    size_t n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    }
    closedir(d);
    return n;
}

/* A report spool: in $TMPDIR, 0600, already unlinked; lines come back
 * whole (longer than the reader's chunk too), blank ones skipped. */
static void test_spool(void **state)
{
    struct ids_error err = IDS_ERROR_INIT;
    struct strbuf sb = STRBUF_INIT;
    char *dir = test_tmpdir();
    char *old = getenv("TMPDIR") ? strdup(getenv("TMPDIR")) : NULL;
    struct stat st;
    FILE *fp;
    size_t i;

    (void)state;
    setenv("TMPDIR", dir, 1);
    fp = spool_open(&err);
    assert_non_null(fp);
    assert_int_equal(dir_entries(dir), 0); /* nothing left behind, ever */
    assert_int_equal(fstat(fileno(fp), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_nlink, 0);
    fputs("{\"a\":1}\n\n", fp);
    for (i = 0; i < 40000; i++) {
        fputc('x', fp);
    }
    fputs("\nlast without end", fp);
    assert_int_equal(spool_finish(fp, &err), IDS_OK);
    assert_string_equal(spool_next(fp, &sb), "{\"a\":1}");
    assert_non_null(spool_next(fp, &sb));
    assert_int_equal(sb.len, 40000);
    assert_string_equal(spool_next(fp, &sb), "last without end");
    assert_null(spool_next(fp, &sb));
    fclose(fp);

    /* a TMPDIR that is not an absolute path is not used */
    setenv("TMPDIR", "relative/dir", 1);
    fp = spool_open(&err);
    assert_non_null(fp);
    assert_int_equal(spool_finish(fp, &err), IDS_OK);
    assert_null(spool_next(fp, &sb));
    fclose(fp);
    /* a TMPDIR that does not exist: the error says where */
    strbuf_reset(&sb);
    strbuf_addf(&sb, "%s/gone", dir);
    setenv("TMPDIR", sb.buf, 1);
    assert_null(spool_open(&err));
    assert_int_equal(err.code, IDS_EIO);
    assert_non_null(strstr(err.msg, sb.buf));

    if (old != NULL) {
        setenv("TMPDIR", old, 1);
        free(old);
    } else {
        unsetenv("TMPDIR");
    }
    strbuf_release(&sb);
    test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strbuf),      cmocka_unit_test(test_strvec),
        cmocka_unit_test(test_base64),      cmocka_unit_test(test_guid_sid),
        cmocka_unit_test(test_utf8),        cmocka_unit_test(test_error),
        cmocka_unit_test(test_ad_password), cmocka_unit_test(test_hash64_bulk),
        cmocka_unit_test(test_spool),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
