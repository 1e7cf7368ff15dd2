/* Unit tests for src/util/bitfield: wire order, counting, loading a peer's bitfield. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "rivulet/error.h"
#include "util/bitfield.h"

static void set_clear_has_count(void **state)
{
    (void)state;
    struct bitfield b;
    assert_int_equal(bitfield_init(&b, 20), 0);
    assert_int_equal(b.count, 20);
    assert_int_equal(b.set, 0);
    assert_false(bitfield_has(&b, 0));
    bitfield_set(&b, 0);
    bitfield_set(&b, 9);
    bitfield_set(&b, 19);
    bitfield_set(&b, 9); /* setting twice counts once */
    assert_int_equal(b.set, 3);
    assert_true(bitfield_has(&b, 0));
    assert_true(bitfield_has(&b, 9));
    assert_true(bitfield_has(&b, 19));
    assert_false(bitfield_has(&b, 1));
    assert_false(bitfield_has(&b, 18));
    /* BEP 3 wire order: the high bit of the first byte is piece 0. */
    assert_int_equal(b.bits[0], 0x80);
    assert_int_equal(b.bits[1], 0x40);
    assert_int_equal(b.bits[2], 0x10);
    bitfield_clear(&b, 9);
    bitfield_clear(&b, 9); /* clearing twice counts once */
    bitfield_clear(&b, 5); /* never set */
    assert_int_equal(b.set, 2);
    assert_false(bitfield_has(&b, 9));
    assert_false(bitfield_is_full(&b));
    bitfield_free(&b);
    assert_null(b.bits);
}

static void out_of_range_ignored(void **state)
{
    (void)state;
    struct bitfield b;
    assert_int_equal(bitfield_init(&b, 10), 0);
    bitfield_set(&b, 10);
    bitfield_set(&b, 15); /* a spare bit of the last byte */
    bitfield_set(&b, UINT32_MAX);
    assert_int_equal(b.set, 0);
    assert_int_equal(b.bits[0], 0);
    assert_int_equal(b.bits[1], 0);
    assert_false(bitfield_has(&b, 10));
    assert_false(bitfield_has(&b, 15));
    assert_false(bitfield_has(&b, UINT32_MAX));
    bitfield_set_all(&b);
    bitfield_clear(&b, 10);
    bitfield_clear(&b, UINT32_MAX);
    assert_int_equal(b.set, 10);
    assert_false(bitfield_has(&b, 10));
    bitfield_free(&b);
}

static void set_all_keeps_spare_bits_zero(void **state)
{
    (void)state;
    struct bitfield b;
    assert_int_equal(bitfield_init(&b, 11), 0);
    bitfield_set_all(&b);
    assert_true(bitfield_is_full(&b));
    assert_int_equal(b.set, 11);
    assert_int_equal(b.bits[0], 0xff);
    assert_int_equal(b.bits[1], 0xe0);
    for (uint32_t i = 0; i < 11; i++)
        assert_true(bitfield_has(&b, i));
    bitfield_clear_all(&b);
    assert_int_equal(b.set, 0);
    assert_int_equal(b.bits[0], 0);
    assert_int_equal(b.bits[1], 0);
    bitfield_free(&b);

    /* A multiple of 8 has no spare bits. */
    assert_int_equal(bitfield_init(&b, 16), 0);
    bitfield_set_all(&b);
    assert_int_equal(b.set, 16);
    assert_int_equal(b.bits[1], 0xff);
    bitfield_free(&b);
}

static void empty_bitfield(void **state)
{
    (void)state;
    struct bitfield b;
    assert_int_equal(bitfield_init(&b, 0), 0);
    assert_int_equal(bitfield_bytes(0), 0);
    assert_true(bitfield_is_full(&b)); /* nothing is missing */
    assert_false(bitfield_has(&b, 0));
    bitfield_set(&b, 0);
    assert_int_equal(b.set, 0);
    bitfield_set_all(&b);
    bitfield_clear_all(&b);
    assert_int_equal(b.set, 0);
    assert_int_equal(bitfield_load(&b, NULL, 0), 0);
    const uint8_t one = 0;
    assert_int_equal(bitfield_load(&b, &one, 1), RV_EPROTO);
    bitfield_free(&b);
}

static void load_counts_and_copies(void **state)
{
    (void)state;
    struct bitfield b;
    assert_int_equal(bitfield_init(&b, 13), 0);
    const uint8_t wire[2] = {0xa5, 0xf0}; /* 1010 0101 1111 0... */
    assert_int_equal(bitfield_load(&b, wire, 2), 0);
    assert_int_equal(b.set, 8);
    assert_true(bitfield_has(&b, 0));
    assert_false(bitfield_has(&b, 1));
    assert_true(bitfield_has(&b, 7));
    assert_true(bitfield_has(&b, 11));
    assert_false(bitfield_has(&b, 12));
    /* Loading replaces, it does not merge. */
    const uint8_t full[2] = {0xff, 0xf8};
    assert_int_equal(bitfield_load(&b, full, 2), 0);
    assert_true(bitfield_is_full(&b));
    const uint8_t none[2] = {0, 0};
    assert_int_equal(bitfield_load(&b, none, 2), 0);
    assert_int_equal(b.set, 0);
    bitfield_free(&b);
}

static void load_multiple_of_8(void **state)
{
    (void)state;
    struct bitfield b;
    assert_int_equal(bitfield_init(&b, 24), 0);
    const uint8_t wire[3] = {0xff, 0x01, 0x80};
    assert_int_equal(bitfield_load(&b, wire, 3), 0);
    assert_int_equal(b.set, 10);
    assert_true(bitfield_has(&b, 15));
    assert_true(bitfield_has(&b, 16));
    assert_true(bitfield_has(&b, 23) == false);
    const uint8_t all[3] = {0xff, 0xff, 0xff};
    assert_int_equal(bitfield_load(&b, all, 3), 0);
    assert_true(bitfield_is_full(&b));
    bitfield_free(&b);
}

static void load_refuses_bad_input(void **state)
{
    (void)state;
    struct bitfield b;
    assert_int_equal(bitfield_init(&b, 13), 0);
    bitfield_set(&b, 3);
    const uint8_t wire[3] = {0xff, 0xf8, 0x00};
    /* Wrong sizes: one byte short, one byte over. */
    assert_int_equal(bitfield_load(&b, wire, 1), RV_EPROTO);
    assert_int_equal(bitfield_load(&b, wire, 3), RV_EPROTO);
    /* BEP 3: spare bits must be zero; each of the three spare bits alone is refused. */
    for (int bit = 0; bit < 3; bit++) {
        const uint8_t bad[2] = {0x00, (uint8_t)(1u << bit)};
        assert_int_equal(bitfield_load(&b, bad, 2), RV_EPROTO);
    }
    /* A failed load leaves the bitfield as it was. */
    assert_int_equal(b.set, 1);
    assert_true(bitfield_has(&b, 3));
    assert_int_equal(b.bits[0], 0x10);
    assert_int_equal(b.bits[1], 0);
    bitfield_free(&b);
}

static void large_count(void **state)
{
    (void)state;
    struct bitfield b;
    assert_int_equal(bitfield_init(&b, 100001), 0);
    assert_int_equal(bitfield_bytes(100001), 12501);
    bitfield_set_all(&b);
    assert_int_equal(b.set, 100001);
    bitfield_clear(&b, 100000);
    assert_false(bitfield_is_full(&b));
    assert_int_equal(b.bits[12500], 0);
    bitfield_free(&b);
    assert_int_equal(bitfield_bytes(UINT32_MAX), 536870912u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(set_clear_has_count),           cmocka_unit_test(out_of_range_ignored),
        cmocka_unit_test(set_all_keeps_spare_bits_zero), cmocka_unit_test(empty_bitfield),
        cmocka_unit_test(load_counts_and_copies),        cmocka_unit_test(load_multiple_of_8),
        cmocka_unit_test(load_refuses_bad_input),        cmocka_unit_test(large_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
