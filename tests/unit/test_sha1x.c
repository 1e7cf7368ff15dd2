/* Unit tests for src/util/sha1x: the lanes against libcrypto's SHA-1, at every length around
 * the padding's edges, whole and in parts, through each kernel this CPU runs (AVX-512 lanes,
 * the SHA extensions four messages at a time). */
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

/* The lanes (n messages, 1 to 16) over len bytes, given in parts of part bytes (a multiple of
 * 64; 0: one sha1x_final), each message against sha1(). Lanes start at different offsets of
 * their buffers, so no two see the same bytes and none is aligned alike. */
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

/* The kernels this CPU runs, into ks; returns how many (0: callers use libcrypto alone). The
 * kernel chosen on first use is put back by restore_kernel. */
static enum sha1x_kernel chosen;

static unsigned kernels(enum sha1x_kernel ks[2])
{
    unsigned n = 0;
    chosen = sha1x_kernel();
    const enum sha1x_kernel all[] = {SHA1X_AVX512, SHA1X_SHANI};
    for (int i = 0; i < 2; i++)
        if (sha1x_use_kernel(all[i]))
            ks[n++] = all[i];
    assert_true(sha1x_use_kernel(chosen));
    return n;
}

static void restore_kernel(void)
{
    assert_true(sha1x_use_kernel(chosen));
}

static void lanes_match_libcrypto(void **state)
{
    (void)state;
    enum sha1x_kernel ks[2];
    unsigned nk = kernels(ks);
    if (nk == 0 || !sha1x_usable())
        skip(); /* neither AVX-512 nor SHA-NI here: callers use libcrypto alone */
    for (unsigned i = 0; i < nk; i++) {
        assert_true(sha1x_use_kernel(ks[i]));
        /* 8 and 16: every lane; the others leave lanes empty (the SHA extensions hash the
         * messages four at a time, then three, two or one) */
        const unsigned counts[] = {8, 16, 1, 2, 3, 5, 6, 7, 9, 11};
        for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
            unsigned lanes = counts[c];
            for (size_t len = 0; len <= (c < 2 ? 200u : 130u); len++)
                check(lanes, len, 0); /* every padding case: one block, two, the edges 55/56/64 */
            const size_t lens[] = {1000,       4096,  16384,          16384 + 55,
                                   16384 + 56, 65536, 64 * 1024 + 199};
            for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
                check(lanes, lens[l], 0);
                check(lanes, lens[l], 64);
                check(lanes, lens[l], 4096);
            }
        }
        print_message("%s: lanes match libcrypto\n", sha1x_kernel_name(ks[i]));
    }
    restore_kernel();
}

/* The kernel chosen is one this CPU runs, the same on every call; a kernel it cannot run is
 * refused and changes nothing. */
static void picks_a_kernel_it_runs(void **state)
{
    (void)state;
    enum sha1x_kernel k = sha1x_kernel();
    assert_int_equal(sha1x_kernel(), k);
    assert_true(sha1x_use_kernel(k));
    if (k == SHA1X_NONE) {
        assert_false(sha1x_usable()); /* none is chosen only where neither runs */
        assert_false(sha1x_use_kernel(SHA1X_AVX512));
        assert_false(sha1x_use_kernel(SHA1X_SHANI));
        return;
    }
    assert_true(sha1x_usable());
    enum sha1x_kernel other = k == SHA1X_AVX512 ? SHA1X_SHANI : SHA1X_AVX512;
    if (!sha1x_use_kernel(other))
        assert_int_equal(sha1x_kernel(), k); /* refused: unchanged */
    assert_true(sha1x_use_kernel(k));
    assert_int_equal(sha1x_kernel(), k);
    print_message("kernel: %s\n", sha1x_kernel_name(k));
}

static void a_known_vector(void **state)
{
    (void)state;
    enum sha1x_kernel ks[2];
    unsigned nk = kernels(ks);
    if (nk == 0 || !sha1x_usable())
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
    for (unsigned i = 0; i < nk; i++) {
        assert_true(sha1x_use_kernel(ks[i]));
        for (unsigned lanes = 8; lanes <= 16; lanes += 8) {
            sha1x_init(&s, lanes);
            sha1x_final(&s, p, 3, out);
            for (unsigned k = 0; k < lanes; k++)
                assert_memory_equal(out[k], abc_sha1, 20);
        }
    }
    restore_kernel();
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
static void staggered(unsigned n)
{
    enum { STEP = 4096, LEN = 16 * 4096 + 100 };
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

static void staggered_states_match_libcrypto(void **state)
{
    (void)state;
    enum sha1x_kernel ks[2];
    unsigned nk = kernels(ks);
    if (nk == 0 || !sha1x_usable())
        skip();
    for (unsigned i = 0; i < nk; i++) {
        assert_true(sha1x_use_kernel(ks[i]));
        staggered(6);
        staggered(11);
    }
    restore_kernel();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lanes_match_libcrypto),
        cmocka_unit_test(a_known_vector),
        cmocka_unit_test(picks_a_kernel_it_runs),
        cmocka_unit_test(can_be_switched_off),
        cmocka_unit_test(says_when_lanes_gain),
        cmocka_unit_test(saved_states_match_libcrypto),
        cmocka_unit_test(staggered_states_match_libcrypto),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
