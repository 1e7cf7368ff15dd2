/* Unit tests for src/metainfo/select: the --select-file list parser and the wanted and boundary
 * pieces of a selection (padding files, empty files, pieces shared between files). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "metainfo/layout.h"
#include "metainfo/select.h"

static void parse_lists(void **state)
{
    (void)state;
    rv_file_range_t *r;
    size_t n;
    rv_error_t err;
    assert_int_equal(rv_file_select_parse("0,2,5-7", &r, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(r[0].first, 0);
    assert_int_equal(r[0].last, 0);
    assert_int_equal(r[2].first, 5);
    assert_int_equal(r[2].last, 7);
    free(r);
    static const char *const bad[] = {"", ",", "1,", "a", "1-", "-3", "3-1", "1;2", "1 2",
                                      "99999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(rv_file_select_parse(bad[i], &r, &n, &err), RV_EINVAL);
        assert_null(r);
        assert_int_equal(n, 0);
    }
}

/* Files (pieces of 100 bytes): a 250, [pad 50], b 0 (empty), c 120, d 30 -> offsets a 0,
 * pad 250, b 300, c 300, d 420; 450 bytes = 5 pieces. Non-padding indices: a 0, b 1, c 2, d 3. */
static rv_torrent_info_t *fake(void)
{
    static rv_file_t files[5];
    static rv_torrent_info_t ti;
    memset(&ti, 0, sizeof(ti));
    memset(files, 0, sizeof(files));
    const uint64_t len[5] = {250, 50, 0, 120, 30};
    uint64_t off = 0;
    for (int i = 0; i < 5; i++) {
        files[i].length = len[i];
        files[i].offset = off;
        files[i].path = (char *)"x";
        off += len[i];
    }
    files[1].attr = RV_FILE_PAD;
    ti.files = files;
    ti.file_count = 5;
    ti.piece_length = 100;
    ti.piece_count = 5;
    ti.piece_space = 450;
    ti.total_size = 400;
    ti.has_v1 = true;
    return &ti;
}

static void wanted_pieces(void **state)
{
    (void)state;
    rv_torrent_info_t *ti = fake();
    struct layout l;
    assert_int_equal(layout_from_torrent(&l, ti), 0);
    uint8_t sel[5];
    rv_error_t err;
    struct bitfield w, p;
    /* c (index 2): bytes 300..419 -> pieces 3 and 4; piece 4 also holds d: a boundary. */
    rv_file_range_t c = {2, 2};
    assert_int_equal(select_files(ti, &c, 1, sel, &err), 0);
    assert_memory_equal(sel, ((uint8_t[]){0, 0, 0, 1, 0}), 5);
    bitfield_init(&w, 5);
    bitfield_init(&p, 5);
    select_pieces(ti, &l, sel, &w, &p);
    assert_int_equal(w.set, 2);
    assert_true(bitfield_has(&w, 3) && bitfield_has(&w, 4));
    assert_int_equal(p.set, 1);
    assert_true(bitfield_has(&p, 4));
    bitfield_free(&w);
    bitfield_free(&p);
    /* a (index 0): pieces 0-2; piece 2 holds a and padding only: not a boundary. */
    rv_file_range_t a = {0, 0};
    assert_int_equal(select_files(ti, &a, 1, sel, &err), 0);
    bitfield_init(&w, 5);
    bitfield_init(&p, 5);
    select_pieces(ti, &l, sel, &w, &p);
    assert_int_equal(w.set, 3);
    assert_int_equal(p.set, 0);
    bitfield_free(&w);
    bitfield_free(&p);
    /* The empty file b (index 1) alone needs no piece; an index past d is refused. */
    rv_file_range_t b = {1, 1};
    assert_int_equal(select_files(ti, &b, 1, sel, &err), 0);
    bitfield_init(&w, 5);
    bitfield_init(&p, 5);
    select_pieces(ti, &l, sel, &w, &p);
    assert_int_equal(w.set, 0);
    bitfield_free(&w);
    bitfield_free(&p);
    rv_file_range_t past = {2, 4};
    assert_int_equal(select_files(ti, &past, 1, sel, &err), RV_EINVAL);
    assert_non_null(strstr(err.msg, "file 4 is past the last file"));
    /* No ranges: everything but padding. */
    assert_int_equal(select_files(ti, NULL, 0, sel, &err), 0);
    assert_memory_equal(sel, ((uint8_t[]){1, 0, 1, 1, 1}), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_lists),
        cmocka_unit_test(wanted_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
