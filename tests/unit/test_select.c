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

/* A seeded random check against a byte model of piece space: a piece is wanted when some byte
 * in it belongs to a selected file, a boundary piece when some byte also belongs to a file not
 * selected (padding never counts either way), over random files (empty and padding ones too),
 * selections and piece lengths that do not divide the sizes. */
static void random_against_byte_model(void **state)
{
    (void)state;
    uint64_t seed = 0x2545f4914f6cdd1dULL;
    for (int round = 0; round < 400; round++) {
        rv_file_t files[12];
        memset(files, 0, sizeof(files));
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t nf = 1 + (size_t)((seed >> 33) % 12);
        uint64_t off = 0;
        for (size_t i = 0; i < nf; i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            files[i].offset = off;
            files[i].length = (seed >> 33) % 250;
            files[i].attr = (seed >> 20) % 5 == 0 ? RV_FILE_PAD : 0;
            files[i].path = (char *)"x";
            off += files[i].length;
        }
        if (off == 0)
            continue;
        uint32_t plen = 64;
        rv_torrent_info_t ti;
        memset(&ti, 0, sizeof(ti));
        ti.files = files;
        ti.file_count = nf;
        ti.piece_length = plen;
        ti.piece_space = off;
        ti.piece_count = (uint32_t)((off + plen - 1) / plen);
        struct layout l;
        assert_int_equal(layout_from_torrent(&l, &ti), 0);
        /* a random selection of the non-padding indices, as ranges of one */
        rv_file_range_t r[12];
        size_t n = 0;
        uint32_t user = 0;
        for (size_t i = 0; i < nf; i++) {
            if (files[i].attr & RV_FILE_PAD)
                continue;
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            if ((seed >> 40) & 1)
                r[n].first = r[n].last = user, n++;
            user++;
        }
        if (n == 0)
            continue;
        uint8_t sel[12];
        rv_error_t err;
        assert_int_equal(select_files(&ti, r, n, sel, &err), 0);
        struct bitfield w, p;
        assert_int_equal(bitfield_init(&w, ti.piece_count), 0);
        assert_int_equal(bitfield_init(&p, ti.piece_count), 0);
        select_pieces(&ti, &l, sel, &w, &p);
        for (uint32_t piece = 0; piece < ti.piece_count; piece++) {
            bool any = false, other = false;
            for (uint64_t b = (uint64_t)piece * plen; b < (uint64_t)(piece + 1) * plen && b < off;
                 b++) {
                for (size_t i = 0; i < nf; i++) {
                    if (b < files[i].offset || b >= files[i].offset + files[i].length ||
                        (files[i].attr & RV_FILE_PAD))
                        continue;
                    if (sel[i])
                        any = true;
                    else
                        other = true;
                }
            }
            if (bitfield_has(&w, piece) != any || bitfield_has(&p, piece) != (any && other))
                fail_msg("round %d piece %u: wanted %d boundary %d, the bytes say %d %d", round,
                         piece, bitfield_has(&w, piece), bitfield_has(&p, piece), any,
                         any && other);
        }
        /* every selected non-padding file is selected, nothing else */
        user = 0;
        for (size_t i = 0; i < nf; i++) {
            if (files[i].attr & RV_FILE_PAD) {
                assert_int_equal(sel[i], 0);
                continue;
            }
            bool want = false;
            for (size_t k = 0; k < n; k++)
                want = want || r[k].first == user;
            assert_int_equal(sel[i], want);
            user++;
        }
        bitfield_free(&w);
        bitfield_free(&p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_lists),
        cmocka_unit_test(wanted_pieces),
        cmocka_unit_test(random_against_byte_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
