/* Unit tests for src/util/sha1x: sixteen lanes against libcrypto's SHA-1, at every length
 * around the padding's edges, whole and in parts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/sha.h"
#include "util/sha1x.h"

#define MAXLEN (64 * 1024 + 256) /* the longest message, 64 KiB + 199, from offset 15 */

static uint8_t *msgs[SHA1X_LANES];

static int setup(void **state)
{
    (void)state;
    srand(7);
    for (int k = 0; k < SHA1X_LANES; k++) {
        msgs[k] = malloc(MAXLEN);
        if (msgs[k] == NULL)
            return -1;
        for (size_t i = 0; i < MAXLEN; i++)
            msgs[k][i] = (uint8_t)rand();
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int k = 0; k < SHA1X_LANES; k++)
        free(msgs[k]);
    return 0;
}

/* The lanes (8 or 16) over len bytes, given in parts of part bytes (a multiple of 64; 0: one
 * sha1x_final), each lane against sha1(). Lanes start at different offsets of their buffers,
 * so no two see the same bytes and none is aligned alike. */
static void check(unsigned lanes, size_t len, size_t part)
{
    struct sha1x s;
    const uint8_t *p[SHA1X_LANES];
    uint8_t out[SHA1X_LANES][20], want[20];
    size_t done = 0;
    sha1x_init(&s, lanes);
    if (part > 0) {
        while (len - done >= part) {
            for (int k = 0; k < SHA1X_LANES; k++)
                p[k] = msgs[k] + k + done;
            sha1x_update(&s, p, part);
            done += part;
        }
    }
    for (int k = 0; k < SHA1X_LANES; k++)
        p[k] = msgs[k] + k + done;
    sha1x_final(&s, p, len - done, out);
    for (int k = 0; k < (int)lanes; k++) {
        sha1(msgs[k] + k, len, want);
        if (memcmp(out[k], want, 20) != 0)
            fail_msg("lane %d of %u differs from libcrypto at length %zu (parts of %zu)", k, lanes,
                     len, part);
    }
}

static void lanes_match_libcrypto(void **state)
{
    (void)state;
    if (!sha1x_usable())
        skip(); /* no AVX-512 here: callers use libcrypto alone */
    for (unsigned lanes = 8; lanes <= 16; lanes += 8) {
        for (size_t len = 0; len <= 200; len++)
            check(lanes, len, 0); /* every padding case: one block, two, the edges at 55/56/64 */
        const size_t lens[] = {1000, 4096, 16384, 16384 + 55, 16384 + 56, 65536, 64 * 1024 + 199};
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            check(lanes, lens[i], 0);
            check(lanes, lens[i], 64);
            check(lanes, lens[i], 4096);
        }
    }
}

static void a_known_vector(void **state)
{
    (void)state;
    if (!sha1x_usable())
        skip();
    /* FIPS 180-2 appendix A.1: SHA-1("abc") in every lane. */
    static const uint8_t abc_sha1[20] = {0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81,
                                         0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50,
                                         0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d};
    struct sha1x s;
    const uint8_t *p[SHA1X_LANES];
    uint8_t out[SHA1X_LANES][20];
    for (int k = 0; k < SHA1X_LANES; k++)
        p[k] = (const uint8_t *)"abc";
    for (unsigned lanes = 8; lanes <= 16; lanes += 8) {
        sha1x_init(&s, lanes);
        sha1x_final(&s, p, 3, out);
        for (unsigned k = 0; k < lanes; k++)
            assert_memory_equal(out[k], abc_sha1, 20);
    }
}

static void can_be_switched_off(void **state)
{
    (void)state;
    bool had = sha1x_usable();
    sha1x_enable(false);
    assert_false(sha1x_usable());
    sha1x_enable(true);
    assert_int_equal(sha1x_usable(), had);
}

/* The fewest messages worth the lanes: measured once, between 2 and 8 (or 0: never), the same
 * on every call; 0 while the lanes are switched off. */
static void says_when_lanes_gain(void **state)
{
    (void)state;
    unsigned m = sha1x_min_messages();
    if (!sha1x_usable()) {
        assert_int_equal(m, 0);
        return;
    }
    assert_true(m == 0 || (m >= 2 && m <= 8));
    assert_int_equal(sha1x_min_messages(), m);
    sha1x_enable(false);
    assert_int_equal(sha1x_min_messages(), 0);
    sha1x_enable(true);
    assert_int_equal(sha1x_min_messages(), m);
    print_message("lanes gain from %u messages on\n", m);
}

/* sha1_mid alone (libcrypto from a saved state): a message hashed in parts of whole blocks
 * and finished with any tail equals sha1() of it, for every tail length around a block. */
static void saved_states_match_libcrypto(void **state)
{
    (void)state;
    for (size_t len = 0; len <= 3 * 64 + 1; len += (len < 130 ? 1 : 63)) {
        struct sha1_mid m;
        uint8_t got[20], want[20];
        sha1_mid_init(&m);
        size_t whole = len / 64 * 64;
        sha1_mid_update(&m, msgs[0], whole / 2 / 64 * 64);
        sha1_mid_update(&m, msgs[0] + m.bytes, whole - m.bytes);
        sha1_mid_update(&m, msgs[0] + whole, 63); /* less than a block: ignored */
        assert_int_equal(m.bytes, whole);
        sha1_mid_final(&m, msgs[0] + whole, len - whole, got);
        sha1(msgs[0], len, want);
        assert_memory_equal(got, want, 20);
    }
}

/* sha1_mid and sha1x_advance: messages at different offsets advanced together, finished from
 * their saved state, equal libcrypto's digests; for 6 messages (8 lanes) and 11 (16). */
static void staggered_states_match_libcrypto(void **state)
{
    (void)state;
    if (!sha1x_usable())
        skip();
    enum { STEP = 4096, LEN = 16 * 4096 + 100 };
    for (unsigned n = 6; n <= 11; n += 5) {
        struct sha1_mid m[SHA1X_LANES];
        struct sha1_mid *mp[SHA1X_LANES];
        const uint8_t *d[SHA1X_LANES];
        size_t off[SHA1X_LANES];
        for (unsigned k = 0; k < n; k++) {
            sha1_mid_init(&m[k]);
            sha1_mid_update(&m[k], msgs[k], (size_t)(k % 4) * STEP); /* k % 4 steps in */
            off[k] = (size_t)(k % 4) * STEP;
            mp[k] = &m[k];
        }
        for (int pass = 0; pass < 12; pass++) {
            for (unsigned k = 0; k < n; k++)
                d[k] = msgs[k] + off[k];
            sha1x_advance(mp, d, n, STEP);
            for (unsigned k = 0; k < n; k++)
                off[k] += STEP;
        }
        for (unsigned k = 0; k < n; k++) {
            uint8_t got[20], want[20];
            assert_int_equal(m[k].bytes, off[k]);
            sha1_mid_final(&m[k], msgs[k] + off[k], LEN - off[k], got);
            sha1(msgs[k], LEN, want);
            assert_memory_equal(got, want, 20);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lanes_match_libcrypto),
        cmocka_unit_test(a_known_vector),
        cmocka_unit_test(can_be_switched_off),
        cmocka_unit_test(says_when_lanes_gain),
        cmocka_unit_test(saved_states_match_libcrypto),
        cmocka_unit_test(staggered_states_match_libcrypto),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
