/* Unit tests for magnet links (metainfo/magnet.c) and the helpers they stand on:
 * percent-encoding (util/url.c) and base32 (util/base32.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rivulet/metainfo.h"
#include "util/base32.h"
#include "util/url.h"

/* 0123456789abcdef0123456789abcdef01234567 in base32 */
#define HEX40 "0123456789abcdef0123456789abcdef01234567"
#define B32 "AERUKZ4JVPG66AJDIVTYTK6N54ASGRLH"
#define DIGEST64 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define DIGEST64_B "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define BTIH "xt=urn:btih:" HEX40
#define BTMH "xt=urn:btmh:1220" DIGEST64

static const uint8_t hash1[20] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23,
                                  0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67};
static const uint8_t hash2[32] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa,
                                  0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55,
                                  0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};

/* ---- helpers ---- */

static rv_magnet_t *parse_ok(const char *uri)
{
    rv_magnet_t *m = NULL;
    rv_error_t err;

    memset(&err, 0, sizeof err);
    int rc = rv_magnet_parse(uri, &m, &err);
    if (rc != 0)
        print_error("unexpected failure for %s: %s\n", uri, err.msg);
    assert_int_equal(rc, 0);
    assert_non_null(m);
    return m;
}

/* Expects uri to fail with RV_EMAGNET at the first occurrence of `at` in uri (or at `off`
 * when at is NULL) with a message containing msg. */
static void check_err_off(const char *uri, const char *at, size_t off, const char *msg)
{
    rv_magnet_t *m = (rv_magnet_t *)0x1;
    rv_error_t err;

    memset(&err, 0, sizeof err);
    int rc = rv_magnet_parse(uri, &m, &err);
    assert_int_equal(rc, RV_EMAGNET);
    assert_null(m);
    assert_int_equal(err.code, RV_EMAGNET);
    assert_true(err.has_offset);
    if (at) {
        const char *p = strstr(uri, at);
        assert_non_null(p);
        off = (size_t)(p - uri);
    }
    if (err.offset != off || !strstr(err.msg, msg))
        print_error("uri %s: got offset %zu \"%s\", want %zu \"%s\"\n", uri, err.offset, err.msg,
                    off, msg);
    assert_int_equal(err.offset, off);
    assert_non_null(strstr(err.msg, msg));
}

static void check_err(const char *uri, const char *at, const char *msg)
{
    check_err_off(uri, at, 0, msg);
}

/* The same, with the offset counted back from the end of uri. */
static void check_err_end(const char *uri, size_t back, const char *msg)
{
    check_err_off(uri, NULL, strlen(uri) - back, msg);
}

/* ---- url_decode / url_encode_bytes ---- */

static void test_url_decode_plain(void **state)
{
    (void)state;
    char *s;
    size_t n;
    assert_int_equal(url_decode("hello", 5, 0, &s, &n, NULL), 0);
    assert_string_equal(s, "hello");
    assert_int_equal(n, 5);
    free(s);
}

static void test_url_decode_empty(void **state)
{
    (void)state;
    char *s;
    size_t n = 99;
    assert_int_equal(url_decode("", 0, 0, &s, &n, NULL), 0);
    assert_string_equal(s, "");
    assert_int_equal(n, 0);
    free(s);
}

static void test_url_decode_escapes_either_case(void **state)
{
    (void)state;
    char *s;
    size_t n;
    const char *in = "a%2fb%2Fc%41%7e%C3%A9";
    assert_int_equal(url_decode(in, strlen(in), 0, &s, &n, NULL), 0);
    assert_string_equal(s, "a/b/cA~\xc3\xa9");
    assert_int_equal(n, 9);
    free(s);
}

static void test_url_decode_respects_length(void **state)
{
    (void)state;
    char *s;
    /* Only the first 4 bytes are the input; the escape after them is never looked at. */
    assert_int_equal(url_decode("abcd%zz", 4, 0, &s, NULL, NULL), 0);
    assert_string_equal(s, "abcd");
    free(s);
}

static void test_url_decode_plus(void **state)
{
    (void)state;
    char *s;
    assert_int_equal(url_decode("a+b%2B", 6, URL_PLUS_AS_SPACE, &s, NULL, NULL), 0);
    assert_string_equal(s, "a b+");
    free(s);
    assert_int_equal(url_decode("a+b%2B", 6, 0, &s, NULL, NULL), 0);
    assert_string_equal(s, "a+b+");
    free(s);
}

static void test_url_decode_truncated_escape(void **state)
{
    (void)state;
    char *s = (char *)0x1;
    size_t bad = 0;
    assert_int_equal(url_decode("abc%4", 5, 0, &s, NULL, &bad), RV_EINVAL);
    assert_null(s);
    assert_int_equal(bad, 3);
    assert_int_equal(url_decode("%", 1, 0, &s, NULL, &bad), RV_EINVAL);
    assert_int_equal(bad, 0);
}

static void test_url_decode_nonhex_escape(void **state)
{
    (void)state;
    char *s;
    size_t bad = 0;
    assert_int_equal(url_decode("ab%zz", 5, 0, &s, NULL, &bad), RV_EINVAL);
    assert_int_equal(bad, 2);
    assert_int_equal(url_decode("ab%4g", 5, 0, &s, NULL, &bad), RV_EINVAL);
    assert_int_equal(bad, 2);
    assert_int_equal(url_decode("%+1", 3, URL_PLUS_AS_SPACE, &s, NULL, &bad), RV_EINVAL);
    assert_int_equal(bad, 0);
}

static void test_url_decode_rejects_nul(void **state)
{
    (void)state;
    char *s;
    size_t bad = 0;
    assert_int_equal(url_decode("ab%00c", 6, 0, &s, NULL, &bad), RV_EINVAL);
    assert_null(s);
    assert_int_equal(bad, 2);
    assert_int_equal(url_decode("ab\0c", 4, 0, &s, NULL, &bad), RV_EINVAL);
    assert_int_equal(bad, 2);
}

static void test_url_encode_bytes(void **state)
{
    (void)state;
    const uint8_t in[] = {'A', 'z', '0', '9', '-', '.', '_', '~', ' ', '/', '%', 0x00, 0xff, 0x1a};
    char *s = url_encode_bytes(in, sizeof in);
    assert_non_null(s);
    assert_string_equal(s, "Az09-._~%20%2F%25%00%FF%1A");
    free(s);
    s = url_encode_bytes(in, 0);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
}

static void test_url_encode_decode_roundtrip(void **state)
{
    (void)state;
    uint8_t all[255];
    char *enc, *dec;
    size_t n;
    for (size_t i = 0; i < sizeof all; i++)
        all[i] = (uint8_t)(i + 1); /* every byte but NUL */
    enc = url_encode_bytes(all, sizeof all);
    assert_non_null(enc);
    assert_int_equal(url_decode(enc, strlen(enc), 0, &dec, &n, NULL), 0);
    assert_int_equal(n, sizeof all);
    assert_memory_equal(dec, all, sizeof all);
    free(enc);
    free(dec);
}

/* ---- base32 ---- */

static void test_base32_rfc4648_vectors(void **state)
{
    (void)state;
    uint8_t out[6];
    assert_int_equal(base32_decode("MY======", 8, out, 1), 0);
    assert_memory_equal(out, "f", 1);
    assert_int_equal(base32_decode("MY", 2, out, 1), 0);
    assert_memory_equal(out, "f", 1);
    assert_int_equal(base32_decode("MZXQ", 4, out, 2), 0);
    assert_memory_equal(out, "fo", 2);
    assert_int_equal(base32_decode("MZXW6YTBOI======", 16, out, 6), 0);
    assert_memory_equal(out, "foobar", 6);
    assert_int_equal(base32_decode("", 0, out, 0), 0);
}

static void test_base32_case_insensitive(void **state)
{
    (void)state;
    uint8_t out[20];
    assert_int_equal(base32_decode("mzxw6ytboi", 10, out, 6), 0);
    assert_memory_equal(out, "foobar", 6);
    assert_int_equal(base32_decode("aeruKZ4JVPG66AJDIVTYTK6N54ASGRLH", 32, out, 20), 0);
    assert_memory_equal(out, hash1, 20);
}

static void test_base32_bad_char(void **state)
{
    (void)state;
    uint8_t out[20];
    assert_int_equal(base32_decode("AERUKZ4JVPG66AJDIVTYTK6N54ASGRL1", 32, out, 20), -1);
    assert_int_equal(base32_decode("AERUKZ4JVPG66AJDIVTYTK6N54ASGRL8", 32, out, 20), -1);
    assert_int_equal(base32_decode("AERUKZ4JVPG66AJD=VTYTK6N54ASGRLH", 32, out, 20), -1);
    assert_int_equal(base32_decode("M0", 2, out, 1), -1);
}

static void test_base32_wrong_length(void **state)
{
    (void)state;
    uint8_t out[20];
    assert_int_equal(base32_decode(B32, 31, out, 20), -1);
    assert_int_equal(base32_decode(B32 "A", 33, out, 20), -1);
    assert_int_equal(base32_decode("MZX", 3, out, 2), -1);
}

static void test_base32_nonzero_spare_bits(void **state)
{
    (void)state;
    uint8_t out[1];
    /* "MZ" decodes to 'f' plus two spare bits 01: a second spelling of "MY". */
    assert_int_equal(base32_decode("MZ", 2, out, 1), -1);
}

static void test_base32_bad_padding(void **state)
{
    (void)state;
    uint8_t out[20];
    assert_int_equal(base32_decode("MY=====", 7, out, 1), -1); /* not a multiple of 8 */
    assert_int_equal(base32_decode("MY==", 4, out, 1), -1);
    assert_int_equal(base32_decode("MY=====A", 8, out, 1), -1);       /* data after padding */
    assert_int_equal(base32_decode(B32 "========", 40, out, 20), -1); /* a whole extra block */
}

static void test_base32_encode(void **state)
{
    (void)state;
    char out[64];
    base32_encode((const uint8_t *)"foobar", 6, out);
    assert_string_equal(out, "MZXW6YTBOI");
    base32_encode((const uint8_t *)"f", 1, out);
    assert_string_equal(out, "MY");
    base32_encode(hash1, 20, out);
    assert_string_equal(out, B32);
    assert_int_equal(BASE32_ENCODED_LEN(20), 32);
}

/* ---- magnet: what is accepted ---- */

static void test_magnet_btih_hex(void **state)
{
    (void)state;
    rv_magnet_t *m = parse_ok("magnet:?" BTIH);
    assert_true(m->has_v1);
    assert_false(m->has_v2);
    assert_memory_equal(m->info_hash, hash1, 20);
    assert_null(m->name);
    assert_int_equal(m->tracker_count, 0);
    assert_int_equal(m->web_seed_count, 0);
    assert_int_equal(m->peer_count, 0);
    assert_int_equal(m->select_count, 0);
    rv_magnet_free(m);
}

static void test_magnet_btih_hex_uppercase(void **state)
{
    (void)state;
    rv_magnet_t *m = parse_ok("magnet:?xt=urn:btih:0123456789ABCDEF0123456789ABCDEF01234567");
    assert_memory_equal(m->info_hash, hash1, 20);
    rv_magnet_free(m);
}

static void test_magnet_btih_base32(void **state)
{
    (void)state;
    rv_magnet_t *m = parse_ok("magnet:?xt=urn:btih:" B32);
    assert_true(m->has_v1);
    assert_memory_equal(m->info_hash, hash1, 20);
    rv_magnet_free(m);
    m = parse_ok("magnet:?xt=urn:btih:aerukz4jvpg66ajdivtytk6n54asgrlh");
    assert_memory_equal(m->info_hash, hash1, 20);
    rv_magnet_free(m);
}

static void test_magnet_scheme_case_insensitive(void **state)
{
    (void)state;
    rv_magnet_t *m = parse_ok("MAGNET:?XT=URN:BTIH:" HEX40);
    assert_true(m->has_v1);
    rv_magnet_free(m);
    m = parse_ok("Magnet:?xt=urn:BtIh:" HEX40);
    assert_true(m->has_v1);
    rv_magnet_free(m);
}

static void test_magnet_btmh_only(void **state)
{
    (void)state;
    rv_magnet_t *m = parse_ok("magnet:?" BTMH);
    assert_false(m->has_v1);
    assert_true(m->has_v2);
    assert_memory_equal(m->info_hash_v2, hash2, 32);
    rv_magnet_free(m);
}

static void test_magnet_hybrid(void **state)
{
    (void)state;
    rv_magnet_t *m = parse_ok("magnet:?" BTIH "&" BTMH "&dn=x");
    assert_true(m->has_v1);
    assert_true(m->has_v2);
    assert_memory_equal(m->info_hash, hash1, 20);
    assert_memory_equal(m->info_hash_v2, hash2, 32);
    rv_magnet_free(m);
    m = parse_ok("magnet:?" BTMH "&" BTIH); /* either order */
    assert_true(m->has_v1 && m->has_v2);
    rv_magnet_free(m);
}

static void test_magnet_same_btih_twice(void **state)
{
    (void)state;
    /* The same hash spelled in hex and in base32 is one info-hash, not two. */
    rv_magnet_t *m = parse_ok("magnet:?" BTIH "&" BTIH "&xt=urn:btih:" B32);
    assert_memory_equal(m->info_hash, hash1, 20);
    rv_magnet_free(m);
    m = parse_ok("magnet:?" BTMH "&" BTMH);
    assert_true(m->has_v2);
    rv_magnet_free(m);
}

static void test_magnet_indexed_keys(void **state)
{
    (void)state;
    rv_magnet_t *m = parse_ok("magnet:?xt.1=urn:btih:" HEX40 "&xt.2=urn:btmh:1220" DIGEST64
                              "&tr.1=udp://a:1&tr.2=udp://b:2&ws.1=http://w/&x.pe.1=h:1"
                              "&so.1=3&dn.1=n");
    assert_true(m->has_v1 && m->has_v2);
    assert_int_equal(m->tracker_count, 2);
    assert_string_equal(m->trackers[0], "udp://a:1");
    assert_string_equal(m->trackers[1], "udp://b:2");
    assert_int_equal(m->web_seed_count, 1);
    assert_int_equal(m->peer_count, 1);
    assert_int_equal(m->select_count, 1);
    assert_string_equal(m->name, "n");
    rv_magnet_free(m);
}

static void test_magnet_bad_index_suffix_is_unknown_key(void **state)
{
    (void)state;
    /* "tr." "tr.x" "trx" "tr.1a" are keys we do not know, so their values are not read. */
    rv_magnet_t *m = parse_ok("magnet:?" BTIH "&tr.=a&tr.x=b&trx=c&tr.1a=d&xt.=urn:btih:zz");
    assert_int_equal(m->tracker_count, 0);
    rv_magnet_free(m);
}

static void test_magnet_unknown_xt_ignored(void **state)
{
    (void)state;
    rv_magnet_t *m = parse_ok("magnet:?xt=urn:ed2k:31d6cfe0d16ae931b73c59d7e0c089c0&" BTIH
                              "&xt=urn:sha1:XYZ&xt=whatever");
    assert_true(m->has_v1);
    assert_false(m->has_v2);
    rv_magnet_free(m);
}

static void test_magnet_percent_encoded_xt(void **state)
{
    (void)state;
    rv_magnet_t *m = parse_ok("magnet:?xt=urn%3Abtih%3a" HEX40);
    assert_memory_equal(m->info_hash, hash1, 20);
    rv_magnet_free(m);
}

static void test_magnet_dn_decoded(void **state)
{
    (void)state;
    rv_magnet_t *m = parse_ok("magnet:?" BTIH "&dn=Big+Buck%20Bunny%2B%C3%A9");
    assert_string_equal(m->name, "Big Buck Bunny+\xc3\xa9");
    rv_magnet_free(m);
}

static void test_magnet_first_dn_wins(void **state)
{
    (void)state;
    rv_magnet_t *m = parse_ok("magnet:?dn=&dn=first&" BTIH "&dn=second");
    assert_string_equal(m->name, "first");
    rv_magnet_free(m);
}

static void test_magnet_trackers_in_order(void **state)
{
    (void)state;
    rv_magnet_t *m = parse_ok("magnet:?" BTIH "&tr=udp%3A%2F%2Ftracker.example%3A1337%2Fannounce"
                              "&tr=http://b.example/announce?x=1+2&tr=wss://c.example");
    assert_int_equal(m->tracker_count, 3);
    assert_string_equal(m->trackers[0], "udp://tracker.example:1337/announce");
    assert_string_equal(m->trackers[1], "http://b.example/announce?x=1+2"); /* '+' kept */
    assert_string_equal(m->trackers[2], "wss://c.example");
    rv_magnet_free(m);
}

static void test_magnet_trackers_deduplicated(void **state)
{
    (void)state;
    rv_magnet_t *m = parse_ok("magnet:?tr=udp://b:1&" BTIH "&tr=udp://a:1&tr=udp%3A//b:1"
                              "&tr.5=udp://a:1&tr=udp://c:1&tr=");
    assert_int_equal(m->tracker_count, 3);
    assert_string_equal(m->trackers[0], "udp://b:1");
    assert_string_equal(m->trackers[1], "udp://a:1");
    assert_string_equal(m->trackers[2], "udp://c:1");
    rv_magnet_free(m);
}

static void test_magnet_web_seeds(void **state)
{
    (void)state;
    rv_magnet_t *m = parse_ok("magnet:?" BTIH "&ws=http%3A%2F%2Fw.example%2Fa%20b&ws=http://x/"
                              "&ws=http://x/&ws=");
    assert_int_equal(m->web_seed_count, 2);
    assert_string_equal(m->web_seeds[0], "http://w.example/a b");
    assert_string_equal(m->web_seeds[1], "http://x/");
    rv_magnet_free(m);
}

static void test_magnet_peers(void **state)
{
    (void)state;
    rv_magnet_t *m = parse_ok("magnet:?" BTIH "&x.pe=10.0.0.1:6881&x.pe=peer.example:1"
                              "&x.pe=%5B2001:db8::1%5D:65535&x.pe=[::ffff:1.2.3.4]:80"
                              "&x.pe=10.0.0.1:6881&x.pe=");
    assert_int_equal(m->peer_count, 4);
    assert_string_equal(m->peers[0], "10.0.0.1:6881");
    assert_string_equal(m->peers[1], "peer.example:1");
    assert_string_equal(m->peers[2], "[2001:db8::1]:65535");
    assert_string_equal(m->peers[3], "[::ffff:1.2.3.4]:80");
    rv_magnet_free(m);
}

static void test_magnet_select_only(void **state)
{
    (void)state;
    rv_magnet_t *m = parse_ok("magnet:?" BTIH "&so=0,2,4-6");
    assert_int_equal(m->select_count, 3);
    assert_int_equal(m->select[0].first, 0);
    assert_int_equal(m->select[0].last, 0);
    assert_int_equal(m->select[1].first, 2);
    assert_int_equal(m->select[1].last, 2);
    assert_int_equal(m->select[2].first, 4);
    assert_int_equal(m->select[2].last, 6);
    rv_magnet_free(m);
}

static void test_magnet_select_unsorted_and_split(void **state)
{
    (void)state;
    /* Order is kept as given; several so parameters add up; commas may be escaped. */
    rv_magnet_t *m = parse_ok("magnet:?so=9-12%2C1&" BTIH "&so=5-5,4294967295&so=");
    assert_int_equal(m->select_count, 4);
    assert_int_equal(m->select[0].first, 9);
    assert_int_equal(m->select[0].last, 12);
    assert_int_equal(m->select[1].first, 1);
    assert_int_equal(m->select[1].last, 1);
    assert_int_equal(m->select[2].first, 5);
    assert_int_equal(m->select[2].last, 5);
    assert_int_equal(m->select[3].first, 4294967295u);
    assert_int_equal(m->select[3].last, 4294967295u);
    rv_magnet_free(m);
}

static void test_magnet_unknown_and_empty_params_ignored(void **state)
{
    (void)state;
    rv_magnet_t *m = parse_ok("magnet:?&&foo=bar&" BTIH "&kt=a+b&xl=100&bare&=x&x.foo=%zz&");
    assert_true(m->has_v1);
    assert_int_equal(m->tracker_count, 0);
    rv_magnet_free(m);
}

static void test_magnet_value_may_contain_equals(void **state)
{
    (void)state;
    rv_magnet_t *m = parse_ok("magnet:?" BTIH "&tr=http://t/a?k=v");
    assert_string_equal(m->trackers[0], "http://t/a?k=v");
    rv_magnet_free(m);
}

static void test_magnet_free_null(void **state)
{
    (void)state;
    rv_magnet_free(NULL);
}

static void test_magnet_null_err_is_allowed(void **state)
{
    (void)state;
    rv_magnet_t *m = NULL;
    assert_int_equal(rv_magnet_parse("magnet:?dn=x", &m, NULL), RV_EMAGNET);
    assert_null(m);
    assert_int_equal(rv_magnet_parse("magnet:?" BTIH, &m, NULL), 0);
    rv_magnet_free(m);
}

static void test_magnet_longest_accepted(void **state)
{
    (void)state;
    const size_t max = 64 * 1024;
    char *uri = malloc(max + 1);
    size_t n = (size_t)snprintf(uri, max + 1, "magnet:?" BTIH "&dn=");
    memset(uri + n, 'a', max - n);
    uri[max] = '\0';
    rv_magnet_t *m = parse_ok(uri);
    assert_int_equal(strlen(m->name), max - n);
    rv_magnet_free(m);
    free(uri);
}

/* ---- magnet: what is rejected, and where ---- */

static void test_magnet_err_null_args(void **state)
{
    (void)state;
    rv_magnet_t *m = (rv_magnet_t *)0x1;
    rv_error_t err;
    assert_int_equal(rv_magnet_parse(NULL, &m, &err), RV_EINVAL);
    assert_null(m);
    assert_int_equal(err.code, RV_EINVAL);
    assert_int_equal(rv_magnet_parse("magnet:?" BTIH, NULL, &err), RV_EINVAL);
}

static void test_magnet_err_wrong_scheme(void **state)
{
    (void)state;
    check_err("http://example.com/?" BTIH, NULL, "not a magnet link");
    check_err("magnet:" BTIH, NULL, "not a magnet link");
    check_err("magnet:", NULL, "not a magnet link");
    check_err("", NULL, "not a magnet link");
    check_err(" magnet:?" BTIH, NULL, "not a magnet link");
}

static void test_magnet_err_too_long(void **state)
{
    (void)state;
    const size_t max = 64 * 1024;
    char *uri = malloc(max + 2);
    size_t n = (size_t)snprintf(uri, max + 2, "magnet:?" BTIH "&dn=");
    memset(uri + n, 'a', max + 1 - n);
    uri[max + 1] = '\0';
    check_err_off(uri, NULL, max, "longer than 65536 bytes");
    free(uri);
}

static void test_magnet_err_no_info_hash(void **state)
{
    (void)state;
    check_err_off("magnet:?dn=x&tr=udp://a:1", NULL, 8, "no info-hash");
    check_err_off("magnet:?", NULL, 8, "no info-hash");
    check_err_off("magnet:?xt=urn:ed2k:abc", NULL, 8, "no info-hash");
    check_err_off("magnet:?xt.x=urn:btih:" HEX40, NULL, 8, "no info-hash");
}

static void test_magnet_err_known_key_without_value(void **state)
{
    (void)state;
    check_err("magnet:?" BTIH "&tr&dn=x", "tr&", "tr: parameter has no '='");
    check_err("magnet:?xt", "xt", "xt: parameter has no '='");
}

static void test_magnet_err_btih_bad_hex(void **state)
{
    (void)state;
    check_err("magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef0123456g", "0123",
              "btih of 40 characters must be all hex digits");
}

static void test_magnet_err_btih_short(void **state)
{
    (void)state;
    check_err("magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef0123456", "0123",
              "xt: btih must be 40 hex or 32 base32 characters, not 39");
    check_err_end("magnet:?xt=urn:btih:", 0, "not 0");
}

static void test_magnet_err_btih_long(void **state)
{
    (void)state;
    check_err("magnet:?xt=urn:btih:" HEX40 "0", "0123", "not 41");
}

static void test_magnet_err_btih_bad_base32(void **state)
{
    (void)state;
    check_err("magnet:?xt=urn:btih:AERUKZ4JVPG66AJDIVTYTK6N54ASGRL1", "AERU",
              "btih of 32 characters must be all base32");
}

static void test_magnet_err_two_btih(void **state)
{
    (void)state;
    check_err("magnet:?" BTIH "&xt=urn:btih:ffffffffffffffffffffffffffffffffffffffff",
              "urn:btih:ffff", "two different btih");
}

static void test_magnet_err_two_btmh(void **state)
{
    (void)state;
    check_err("magnet:?" BTMH "&xt=urn:btmh:1220" DIGEST64_B, "urn:btmh:1220ff",
              "two different btmh");
}

static void test_magnet_err_btmh_wrong_code(void **state)
{
    (void)state;
    check_err("magnet:?xt=urn:btmh:1120" DIGEST64, "1120", "multihash code 0x11 is not sha2-256");
    check_err("magnet:?xt=urn:btmh:1114" DIGEST64, "1114", "multihash code 0x11");
}

static void test_magnet_err_btmh_wrong_length_byte(void **state)
{
    (void)state;
    check_err("magnet:?xt=urn:btmh:1214" DIGEST64, "14" DIGEST64,
              "multihash length 0x14 is not 32");
}

static void test_magnet_err_btmh_short_digest(void **state)
{
    (void)state;
    check_err("magnet:?xt=urn:btmh:1220" HEX40, HEX40, "digest must be 64 hex digits, not 40");
    check_err_end("magnet:?xt=urn:btmh:1220", 0, "btmh digest must be 64 hex digits, not 0");
}

static void test_magnet_err_btmh_bad_hex(void **state)
{
    (void)state;
    check_err("magnet:?xt=urn:btmh:1220"
              "00112233445566778899aabbccddeeff00112233445566778899aabbccddeexx",
              "0011", "btmh digest must be all hex digits");
    check_err("magnet:?xt=urn:btmh:zz", "zz", "btmh must be \"1220\" and 64 hex digits");
    check_err_end("magnet:?xt=urn:btmh:", 0, "btmh must be \"1220\"");
}

static void test_magnet_err_bad_percent_escape(void **state)
{
    (void)state;
    check_err("magnet:?" BTIH "&dn=a%2", "%2", "dn: bad percent escape");
    check_err("magnet:?" BTIH "&tr=udp%3a%2x//a", "%2x", "tr: bad percent escape");
    check_err("magnet:?xt=urn:btih:%GG", "%GG", "xt: bad percent escape");
    check_err("magnet:?" BTIH "&so=1%", "%", "so: bad percent escape");
}

static void test_magnet_err_decoded_nul(void **state)
{
    (void)state;
    check_err("magnet:?" BTIH "&dn=a%00b", "%00", "dn: value holds a NUL byte");
    check_err("magnet:?" BTIH "&ws=http://x/%00", "%00", "ws: value holds a NUL byte");
}

static void test_magnet_err_control_char_in_url(void **state)
{
    (void)state;
    /* escapes before it: the offset is the value's start */
    check_err("magnet:?" BTIH "&tr=http://a/b%0D%0AHost:x", "http://a/b",
              "tr: control character 0x0d");
    check_err("magnet:?" BTIH "&ws=http://a/\x7f", "\x7f", "ws: control character 0x7f");
}

static void test_magnet_err_peer_no_port(void **state)
{
    (void)state;
    check_err("magnet:?" BTIH "&x.pe=10.0.0.1", "10.0", "x.pe: expected host:port");
    check_err_end("magnet:?" BTIH "&x.pe=10.0.0.1:", 0, "port must be a number");
    check_err_end("magnet:?" BTIH "&x.pe=10.0.0.1:&", 1, "port must be a number");
}

static void test_magnet_err_peer_port_out_of_range(void **state)
{
    (void)state;
    check_err_end("magnet:?" BTIH "&x.pe=h:0", 1, "port 0 is not from 1 to 65535");
    check_err("magnet:?" BTIH "&x.pe=h:65536", "65536", "port 65536 is not from 1 to 65535");
    check_err_end("magnet:?" BTIH "&x.pe=h:123456", 6, "port must be a number");
}

static void test_magnet_err_peer_port_not_number(void **state)
{
    (void)state;
    check_err("magnet:?" BTIH "&x.pe=h:8a", "8a", "port must be a number from 1 to 65535");
    check_err("magnet:?" BTIH "&x.pe=h:+80", "+80", "port must be a number");
    check_err("magnet:?" BTIH "&x.pe=h:-1", "-1", "port must be a number");
}

static void test_magnet_err_peer_bare_ipv6(void **state)
{
    (void)state;
    check_err("magnet:?" BTIH "&x.pe=2001:db8::1:80", "2001", "IPv6 address must be in brackets");
}

static void test_magnet_err_peer_bad_ipv6(void **state)
{
    (void)state;
    check_err("magnet:?" BTIH "&x.pe=[2001:zz8::1]:80", "2001", "not an IPv6 address in brackets");
    check_err("magnet:?" BTIH "&x.pe=[1.2.3.4]:80", "1.2", "not an IPv6 address in brackets");
    check_err("magnet:?" BTIH "&x.pe=[]:80", "[]", "bad IPv6 address in brackets");
}

static void test_magnet_err_peer_unclosed_bracket(void **state)
{
    (void)state;
    check_err("magnet:?" BTIH "&x.pe=[::1:80", "[::", "'[' without a closing ']'");
}

static void test_magnet_err_peer_no_port_after_bracket(void **state)
{
    (void)state;
    check_err_end("magnet:?" BTIH "&x.pe=[::1]80", 2, "expected ':port' after ']'");
    check_err_end("magnet:?" BTIH "&x.pe=[::1]", 0, "expected ':port' after ']'");
    check_err_end("magnet:?" BTIH "&x.pe=[::1]:", 0, "port must be a number");
}

static void test_magnet_err_peer_bad_host(void **state)
{
    (void)state;
    check_err("magnet:?" BTIH "&x.pe=ho/st:80", "/st", "x.pe: '/' not allowed in a host name");
    check_err("magnet:?" BTIH "&x.pe=ho%20st:80", "ho%20", "x.pe: ' ' not allowed");
    check_err("magnet:?" BTIH "&x.pe=h%C3%A9:80", "h%C3", "x.pe: byte 0xc3 not allowed");
}

static void test_magnet_err_peer_empty_host(void **state)
{
    (void)state;
    const char *uri = "magnet:?" BTIH "&x.pe=:80";
    check_err(uri, ":80", "x.pe: empty host");
}

static void test_magnet_err_peer_host_too_long(void **state)
{
    (void)state;
    char uri[512];
    int n = snprintf(uri, sizeof uri, "magnet:?" BTIH "&x.pe=");
    memset(uri + n, 'a', 254);
    strcpy(uri + n + 254, ":80");
    check_err_off(uri, NULL, (size_t)n, "host longer than 253 characters");
    uri[n + 253] = ':'; /* 253 characters is fine */
    uri[n + 254] = '8';
    uri[n + 255] = '0';
    uri[n + 256] = '\0';
    rv_magnet_free(parse_ok(uri));
}

static void test_magnet_err_so_garbage(void **state)
{
    (void)state;
    check_err_end("magnet:?" BTIH "&so=abc", 3, "so: expected a file index or a range");
    check_err_end("magnet:?" BTIH "&so=1,x", 1, "so: expected a file index");
    check_err_end("magnet:?" BTIH "&so=-1", 2, "so: expected a file index");
    check_err_end("magnet:?" BTIH "&so=+1", 2, "so: expected a file index");
    check_err_end("magnet:?" BTIH "&so=1 2", 2, "so: ' ' unexpected");
}

static void test_magnet_err_so_reversed_range(void **state)
{
    (void)state;
    check_err_end("magnet:?" BTIH "&so=1,6-4", 3, "so: range 6-4 ends before it starts");
}

static void test_magnet_err_so_empty_item(void **state)
{
    (void)state;
    check_err_end("magnet:?" BTIH "&so=1,", 0, "so: expected a file index");
    check_err_end("magnet:?" BTIH "&so=1,,2", 2, "so: expected a file index");
    check_err_end("magnet:?" BTIH "&so=,1", 2, "so: expected a file index");
    check_err_end("magnet:?" BTIH "&so=3-", 0, "so: expected a file index");
}

static void test_magnet_err_so_bad_separator(void **state)
{
    (void)state;
    check_err_end("magnet:?" BTIH "&so=1-2-3", 2, "so: '-' unexpected (expected ',' or '-')");
    check_err_end("magnet:?" BTIH "&so=1;2", 2, "so: ';' unexpected");
    check_err_end("magnet:?" BTIH "&so=1+2", 2, "so: '+' unexpected");
    check_err_end("magnet:?" BTIH "&so=1\x01", 1, "so: byte 0x01 unexpected");
}

static void test_magnet_err_so_index_too_large(void **state)
{
    (void)state;
    check_err_end("magnet:?" BTIH "&so=4294967296", 10, "so: file index too large");
    check_err_end("magnet:?" BTIH "&so=0-99999999999999999999999", 23, "file index too large");
}

static void test_magnet_err_so_escaped_offset(void **state)
{
    (void)state;
    /* With escapes in the value, offsets inside it are not exact: the value's start is. */
    check_err_end("magnet:?" BTIH "&so=1%2Cx", 5, "so: expected a file index");
}

static void test_magnet_err_too_many_trackers(void **state)
{
    (void)state;
    size_t cap = 1100 * 24 + 128, n;
    char *uri = malloc(cap);
    n = (size_t)snprintf(uri, cap, "magnet:?" BTIH);
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(uri + n, cap - n, "&tr=udp://t%d:1", i);
    rv_magnet_t *m = parse_ok(uri);
    assert_int_equal(m->tracker_count, 1000);
    rv_magnet_free(m);
    /* Repeating one already known costs nothing... */
    n += (size_t)snprintf(uri + n, cap - n, "&tr=udp://t7:1");
    rv_magnet_free(parse_ok(uri));
    /* ...but a new one is past the limit. */
    size_t at = n + 4;
    n += (size_t)snprintf(uri + n, cap - n, "&tr=udp://new:1");
    check_err_off(uri, NULL, at, "tr: more than 1000 entries");
    free(uri);
}

static void test_magnet_err_too_many_ranges(void **state)
{
    (void)state;
    size_t cap = 64 * 1024, n;
    char *uri = malloc(cap);
    n = (size_t)snprintf(uri, cap, "magnet:?" BTIH "&so=0");
    for (int i = 1; i < 10000; i++)
        n += (size_t)snprintf(uri + n, cap - n, ",%d", i % 10);
    rv_magnet_t *m = parse_ok(uri);
    assert_int_equal(m->select_count, 10000);
    rv_magnet_free(m);
    size_t at = n + 1;
    snprintf(uri + n, cap - n, ",1");
    check_err_off(uri, NULL, at, "so: more than 10000 ranges");
    free(uri);
}

static void test_magnet_err_offsets_and_format(void **state)
{
    (void)state;
    rv_magnet_t *m = NULL;
    rv_error_t err;
    char line[400];
    assert_int_equal(rv_magnet_parse("magnet:?xt=urn:btih:1234", &m, &err), RV_EMAGNET);
    rv_error_format(&err, line, sizeof line);
    assert_string_equal(line, "malformed magnet link at byte 20: xt: btih must be 40 hex or 32 "
                              "base32 characters, not 4");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_decode_plain),
        cmocka_unit_test(test_url_decode_empty),
        cmocka_unit_test(test_url_decode_escapes_either_case),
        cmocka_unit_test(test_url_decode_respects_length),
        cmocka_unit_test(test_url_decode_plus),
        cmocka_unit_test(test_url_decode_truncated_escape),
        cmocka_unit_test(test_url_decode_nonhex_escape),
        cmocka_unit_test(test_url_decode_rejects_nul),
        cmocka_unit_test(test_url_encode_bytes),
        cmocka_unit_test(test_url_encode_decode_roundtrip),

        cmocka_unit_test(test_base32_rfc4648_vectors),
        cmocka_unit_test(test_base32_case_insensitive),
        cmocka_unit_test(test_base32_bad_char),
        cmocka_unit_test(test_base32_wrong_length),
        cmocka_unit_test(test_base32_nonzero_spare_bits),
        cmocka_unit_test(test_base32_bad_padding),
        cmocka_unit_test(test_base32_encode),

        cmocka_unit_test(test_magnet_btih_hex),
        cmocka_unit_test(test_magnet_btih_hex_uppercase),
        cmocka_unit_test(test_magnet_btih_base32),
        cmocka_unit_test(test_magnet_scheme_case_insensitive),
        cmocka_unit_test(test_magnet_btmh_only),
        cmocka_unit_test(test_magnet_hybrid),
        cmocka_unit_test(test_magnet_same_btih_twice),
        cmocka_unit_test(test_magnet_indexed_keys),
        cmocka_unit_test(test_magnet_bad_index_suffix_is_unknown_key),
        cmocka_unit_test(test_magnet_unknown_xt_ignored),
        cmocka_unit_test(test_magnet_percent_encoded_xt),
        cmocka_unit_test(test_magnet_dn_decoded),
        cmocka_unit_test(test_magnet_first_dn_wins),
        cmocka_unit_test(test_magnet_trackers_in_order),
        cmocka_unit_test(test_magnet_trackers_deduplicated),
        cmocka_unit_test(test_magnet_web_seeds),
        cmocka_unit_test(test_magnet_peers),
        cmocka_unit_test(test_magnet_select_only),
        cmocka_unit_test(test_magnet_select_unsorted_and_split),
        cmocka_unit_test(test_magnet_unknown_and_empty_params_ignored),
        cmocka_unit_test(test_magnet_value_may_contain_equals),
        cmocka_unit_test(test_magnet_free_null),
        cmocka_unit_test(test_magnet_null_err_is_allowed),
        cmocka_unit_test(test_magnet_longest_accepted),

        cmocka_unit_test(test_magnet_err_null_args),
        cmocka_unit_test(test_magnet_err_wrong_scheme),
        cmocka_unit_test(test_magnet_err_too_long),
        cmocka_unit_test(test_magnet_err_no_info_hash),
        cmocka_unit_test(test_magnet_err_known_key_without_value),
        cmocka_unit_test(test_magnet_err_btih_bad_hex),
        cmocka_unit_test(test_magnet_err_btih_short),
        cmocka_unit_test(test_magnet_err_btih_long),
        cmocka_unit_test(test_magnet_err_btih_bad_base32),
        cmocka_unit_test(test_magnet_err_two_btih),
        cmocka_unit_test(test_magnet_err_two_btmh),
        cmocka_unit_test(test_magnet_err_btmh_wrong_code),
        cmocka_unit_test(test_magnet_err_btmh_wrong_length_byte),
        cmocka_unit_test(test_magnet_err_btmh_short_digest),
        cmocka_unit_test(test_magnet_err_btmh_bad_hex),
        cmocka_unit_test(test_magnet_err_bad_percent_escape),
        cmocka_unit_test(test_magnet_err_decoded_nul),
        cmocka_unit_test(test_magnet_err_control_char_in_url),
        cmocka_unit_test(test_magnet_err_peer_no_port),
        cmocka_unit_test(test_magnet_err_peer_port_out_of_range),
        cmocka_unit_test(test_magnet_err_peer_port_not_number),
        cmocka_unit_test(test_magnet_err_peer_bare_ipv6),
        cmocka_unit_test(test_magnet_err_peer_bad_ipv6),
        cmocka_unit_test(test_magnet_err_peer_unclosed_bracket),
        cmocka_unit_test(test_magnet_err_peer_no_port_after_bracket),
        cmocka_unit_test(test_magnet_err_peer_bad_host),
        cmocka_unit_test(test_magnet_err_peer_empty_host),
        cmocka_unit_test(test_magnet_err_peer_host_too_long),
        cmocka_unit_test(test_magnet_err_so_garbage),
        cmocka_unit_test(test_magnet_err_so_reversed_range),
        cmocka_unit_test(test_magnet_err_so_empty_item),
        cmocka_unit_test(test_magnet_err_so_bad_separator),
        cmocka_unit_test(test_magnet_err_so_index_too_large),
        cmocka_unit_test(test_magnet_err_so_escaped_offset),
        cmocka_unit_test(test_magnet_err_too_many_trackers),
        cmocka_unit_test(test_magnet_err_too_many_ranges),
        cmocka_unit_test(test_magnet_err_offsets_and_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
