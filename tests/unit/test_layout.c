/* Unit tests for the file layout (metainfo/layout.c): piece sizes, the file spans of a piece or
 * of any byte range, and the pieces a file covers, at every boundary a torrent can have. A
 * seeded random test checks the iterator against a byte-by-byte model of piece space. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metainfo/layout.h"
#include "rivulet/metainfo.h"

/* ---- helpers ---- */

static rv_file_t F(uint64_t offset, uint64_t length, unsigned attr)
{
    rv_file_t f;
    memset(&f, 0, sizeof(f));
    f.offset = offset;
    f.length = length;
    f.attr = attr;
    return f;
}

#define MAX_SPANS 64

/* Every span of [offset, offset+len), in order. */
static size_t collect_range(const struct layout *l, uint64_t offset, uint64_t len,
                            struct span *out)
{
    struct span_iter it;
    size_t n = 0;
    layout_span_begin(l, offset, len, &it);
    while (n < MAX_SPANS && layout_span_next(&it, &out[n]))
        n++;
    assert_true(n < MAX_SPANS);
    return n;
}

static size_t collect_piece(const struct layout *l, uint32_t piece, struct span *out)
{
    struct span_iter it;
    size_t n = 0;
    layout_piece_begin(l, piece, &it);
    while (n < MAX_SPANS && layout_span_next(&it, &out[n]))
        n++;
    assert_true(n < MAX_SPANS);
    /* once done, the iterator stays done */
    struct span extra;
    assert_false(layout_span_next(&it, &extra));
    return n;
}

static void assert_span(const struct span *s, size_t file, uint64_t file_offset, uint64_t length)
{
    if (s->file != file || s->file_offset != file_offset || s->length != length)
        print_error("span {file %zu, offset %llu, length %llu}, want {%zu, %llu, %llu}\n",
                    s->file, (unsigned long long)s->file_offset, (unsigned long long)s->length,
                    file, (unsigned long long)file_offset, (unsigned long long)length);
    assert_int_equal(s->file, file);
    assert_int_equal(s->file_offset, file_offset);
    assert_int_equal(s->length, length);
}

static void assert_file_pieces(const struct layout *l, size_t file, uint32_t first, uint32_t end)
{
    uint32_t a = 99, b = 99;
    layout_file_pieces(l, file, &a, &b);
    if (a != first || b != end)
        print_error("file %zu covers pieces [%u, %u), want [%u, %u)\n", file, a, b, first, end);
    assert_int_equal(a, first);
    assert_int_equal(b, end);
}

/* ---- single file ---- */

static void single_file_pieces_and_short_last_piece(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 100000, 0)};
    struct layout l;
    struct span s[MAX_SPANS];

    assert_int_equal(layout_init(&l, files, 1, 32768, 100000), 0);
    assert_int_equal(l.piece_count, 4);
    assert_int_equal(layout_piece_size(&l, 0), 32768);
    assert_int_equal(layout_piece_size(&l, 2), 32768);
    assert_int_equal(layout_piece_size(&l, 3), 100000 - 3 * 32768);

    assert_int_equal(collect_piece(&l, 0, s), 1);
    assert_span(&s[0], 0, 0, 32768);
    assert_int_equal(collect_piece(&l, 2, s), 1);
    assert_span(&s[0], 0, 65536, 32768);
    assert_int_equal(collect_piece(&l, 3, s), 1);
    assert_span(&s[0], 0, 98304, 1696);
    assert_file_pieces(&l, 0, 0, 4);
}

static void single_file_exact_multiple_of_piece_length(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 65536, 0)};
    struct layout l;
    struct span s[MAX_SPANS];

    assert_int_equal(layout_init(&l, files, 1, 16384, 65536), 0);
    assert_int_equal(l.piece_count, 4);
    assert_int_equal(layout_piece_size(&l, 3), 16384);
    assert_int_equal(layout_piece_size(&l, 4), 0);
    assert_int_equal(collect_piece(&l, 3, s), 1);
    assert_span(&s[0], 0, 49152, 16384);
    assert_file_pieces(&l, 0, 0, 4);
}

static void file_smaller_than_one_piece(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 10, 0)};
    struct layout l;
    struct span s[MAX_SPANS];

    assert_int_equal(layout_init(&l, files, 1, 16384, 10), 0);
    assert_int_equal(l.piece_count, 1);
    assert_int_equal(layout_piece_size(&l, 0), 10);
    assert_int_equal(collect_piece(&l, 0, s), 1);
    assert_span(&s[0], 0, 0, 10);
    assert_file_pieces(&l, 0, 0, 1);
}

/* ---- several files ---- */

static void piece_covering_four_files(void **state)
{
    (void)state;
    /* piece 0 = [0,128): all of a, b, c and the head of d */
    rv_file_t files[] = {F(0, 100, 0), F(100, 10, 0), F(110, 10, 0), F(120, 180, 0)};
    struct layout l;
    struct span s[MAX_SPANS];

    assert_int_equal(layout_init(&l, files, 4, 128, 300), 0);
    assert_int_equal(l.piece_count, 3);
    assert_int_equal(collect_piece(&l, 0, s), 4);
    assert_span(&s[0], 0, 0, 100);
    assert_span(&s[1], 1, 0, 10);
    assert_span(&s[2], 2, 0, 10);
    assert_span(&s[3], 3, 0, 8);
    assert_int_equal(collect_piece(&l, 1, s), 1);
    assert_span(&s[0], 3, 8, 128);
    assert_int_equal(collect_piece(&l, 2, s), 1);
    assert_span(&s[0], 3, 136, 44);
    assert_int_equal(layout_piece_size(&l, 2), 44);

    assert_file_pieces(&l, 0, 0, 1);
    assert_file_pieces(&l, 1, 0, 1);
    assert_file_pieces(&l, 2, 0, 1);
    assert_file_pieces(&l, 3, 0, 3);
}

static void piece_ending_exactly_at_file_boundary(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 64, 0), F(64, 64, 0), F(128, 1, 0)};
    struct layout l;
    struct span s[MAX_SPANS];

    assert_int_equal(layout_init(&l, files, 3, 64, 129), 0);
    assert_int_equal(l.piece_count, 3);
    /* no zero-length span of the next file at the end of a piece */
    assert_int_equal(collect_piece(&l, 0, s), 1);
    assert_span(&s[0], 0, 0, 64);
    assert_int_equal(collect_piece(&l, 1, s), 1);
    assert_span(&s[0], 1, 0, 64);
    assert_int_equal(collect_piece(&l, 2, s), 1);
    assert_span(&s[0], 2, 0, 1);
    assert_file_pieces(&l, 0, 0, 1);
    assert_file_pieces(&l, 1, 1, 2);
    assert_file_pieces(&l, 2, 2, 3);
}

static void file_spanning_many_pieces_between_others(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 10, 0), F(10, 300, 0), F(310, 2, 0)};
    struct layout l;
    struct span s[MAX_SPANS];

    assert_int_equal(layout_init(&l, files, 3, 64, 312), 0);
    assert_int_equal(l.piece_count, 5);
    assert_file_pieces(&l, 1, 0, 5);
    assert_file_pieces(&l, 2, 4, 5);
    assert_int_equal(collect_piece(&l, 4, s), 2);
    assert_span(&s[0], 1, 246, 54);
    assert_span(&s[1], 2, 0, 2);
    assert_int_equal(layout_piece_size(&l, 4), 56);
}

/* ---- zero-length files ---- */

static void zero_length_files_yield_no_spans(void **state)
{
    (void)state;
    /* zero-length files at the start, in the middle, on a piece boundary and at the end */
    rv_file_t files[] = {F(0, 0, 0),   F(0, 50, 0),    F(50, 0, 0),   F(50, 14, 0),
                         F(64, 0, 0),  F(64, 36, 0),   F(100, 0, 0)};
    struct layout l;
    struct span s[MAX_SPANS];

    assert_int_equal(layout_init(&l, files, 7, 64, 100), 0);
    assert_int_equal(l.piece_count, 2);
    assert_int_equal(collect_piece(&l, 0, s), 2);
    assert_span(&s[0], 1, 0, 50);
    assert_span(&s[1], 3, 0, 14);
    assert_int_equal(collect_piece(&l, 1, s), 1);
    assert_span(&s[0], 5, 0, 36);

    size_t n = collect_range(&l, 0, 100, s);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++)
        assert_true(s[i].length > 0);
}

static void zero_length_files_cover_no_pieces(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 0, 0), F(0, 50, 0), F(50, 0, 0), F(50, 14, 0),
                         F(64, 0, 0), F(64, 36, 0), F(100, 0, 0)};
    struct layout l;
    uint32_t a, b;

    assert_int_equal(layout_init(&l, files, 7, 64, 100), 0);
    for (size_t i = 0; i < 7; i += 2) {
        layout_file_pieces(&l, i, &a, &b);
        assert_int_equal(a, b);
    }
    assert_file_pieces(&l, 1, 0, 1);
    assert_file_pieces(&l, 3, 0, 1);
    assert_file_pieces(&l, 5, 1, 2);
}

static void only_zero_length_files(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 0, 0), F(0, 0, 0)};
    struct layout l;
    struct span s[MAX_SPANS];

    assert_int_equal(layout_init(&l, files, 2, 16384, 0), 0);
    assert_int_equal(l.piece_count, 0);
    assert_int_equal(layout_piece_size(&l, 0), 0);
    assert_int_equal(collect_piece(&l, 0, s), 0);
    assert_int_equal(collect_range(&l, 0, 100, s), 0);
    assert_file_pieces(&l, 0, 0, 0);
}

/* ---- padding files (BEP 47) ---- */

static void padding_files_are_yielded_and_flagged(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 40, 0), F(40, 24, RV_FILE_PAD), F(64, 36, 0)};
    struct layout l;
    struct span s[MAX_SPANS];

    assert_int_equal(layout_init(&l, files, 3, 64, 100), 0);
    assert_int_equal(collect_piece(&l, 0, s), 2);
    assert_span(&s[0], 0, 0, 40);
    assert_span(&s[1], 1, 0, 24);
    assert_false(files[s[0].file].attr & RV_FILE_PAD);
    assert_true(files[s[1].file].attr & RV_FILE_PAD);
    assert_int_equal(collect_piece(&l, 1, s), 1);
    assert_span(&s[0], 2, 0, 36);
    assert_file_pieces(&l, 1, 0, 1);
    assert_file_pieces(&l, 2, 1, 2);
}

/* ---- v2 alignment gaps (BEP 52) ---- */

static void v2_gaps_yield_no_spans(void **state)
{
    (void)state;
    /* a: [0,40) gap [40,64) b: [64,164) gap [164,192) c: [192,200) */
    rv_file_t files[] = {F(0, 40, 0), F(64, 100, 0), F(192, 8, 0)};
    struct layout l;
    struct span s[MAX_SPANS];

    assert_int_equal(layout_init(&l, files, 3, 64, 200), 0);
    assert_int_equal(l.piece_count, 4);
    assert_int_equal(layout_piece_size(&l, 0), 64); /* gap bytes still count in the piece */
    assert_int_equal(layout_piece_size(&l, 3), 8);
    assert_int_equal(collect_piece(&l, 0, s), 1);
    assert_span(&s[0], 0, 0, 40);
    assert_int_equal(collect_piece(&l, 1, s), 1);
    assert_span(&s[0], 1, 0, 64);
    assert_int_equal(collect_piece(&l, 2, s), 1);
    assert_span(&s[0], 1, 64, 36);
    assert_int_equal(collect_piece(&l, 3, s), 1);
    assert_span(&s[0], 2, 0, 8);
    assert_file_pieces(&l, 0, 0, 1);
    assert_file_pieces(&l, 1, 1, 3);
    assert_file_pieces(&l, 2, 3, 4);

    /* a range starting inside a gap skips to the next file */
    assert_int_equal(collect_range(&l, 50, 20, s), 1);
    assert_span(&s[0], 1, 0, 6);
    /* a range wholly inside a gap yields nothing */
    assert_int_equal(collect_range(&l, 170, 20, s), 0);
    /* a range crossing a gap */
    assert_int_equal(collect_range(&l, 150, 50, s), 2);
    assert_span(&s[0], 1, 86, 14);
    assert_span(&s[1], 2, 0, 8);
}

static void v2_zero_length_file_after_gap_yields_no_span(void **state)
{
    (void)state;
    /* How parse_v2 lays out "a" (40 bytes), "empty" (0), "b" (36): the empty file sits on the
     * piece boundary after a's alignment gap. A range that crosses the gap must not yield a
     * zero-length span for it. */
    rv_file_t files[] = {F(0, 40, 0), F(64, 0, 0), F(64, 36, 0)};
    struct layout l;
    struct span s[MAX_SPANS];

    assert_int_equal(layout_init(&l, files, 3, 64, 100), 0);
    size_t n = collect_range(&l, 0, 100, s);
    assert_int_equal(n, 2);
    assert_span(&s[0], 0, 0, 40);
    assert_span(&s[1], 2, 0, 36);
    n = collect_range(&l, 50, 20, s);
    assert_int_equal(n, 1);
    assert_span(&s[0], 2, 0, 6);
}

static void trailing_gap_before_piece_space_end(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 10, 0)};
    struct layout l;
    struct span s[MAX_SPANS];

    assert_int_equal(layout_init(&l, files, 1, 64, 100), 0);
    assert_int_equal(l.piece_count, 2);
    assert_int_equal(collect_piece(&l, 1, s), 0);
    assert_int_equal(layout_piece_size(&l, 1), 36);
}

/* ---- arbitrary byte ranges ---- */

static void block_crossing_file_boundary(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 20000, 0), F(20000, 80000, 0)};
    struct layout l;
    struct span s[MAX_SPANS];

    assert_int_equal(layout_init(&l, files, 2, 65536, 100000), 0);
    /* the second 16 KiB block of piece 0 */
    assert_int_equal(collect_range(&l, 16384, 16384, s), 2);
    assert_span(&s[0], 0, 16384, 20000 - 16384);
    assert_span(&s[1], 1, 0, 32768 - 20000);
    /* a block entirely inside one file */
    assert_int_equal(collect_range(&l, 65536, 16384, s), 1);
    assert_span(&s[0], 1, 45536, 16384);
}

static void range_clamped_to_piece_space(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 20000, 0), F(20000, 80000, 0)};
    struct layout l;
    struct span s[MAX_SPANS];

    assert_int_equal(layout_init(&l, files, 2, 65536, 100000), 0);
    assert_int_equal(collect_range(&l, 99000, 16384, s), 1);
    assert_span(&s[0], 1, 79000, 1000);
    assert_int_equal(collect_range(&l, 100000, 16384, s), 0);
    assert_int_equal(collect_range(&l, 200000, 16384, s), 0);
    assert_int_equal(collect_range(&l, 0, UINT64_MAX, s), 2);
    assert_int_equal(collect_range(&l, UINT64_MAX, UINT64_MAX, s), 0);
}

static void empty_range_yields_nothing(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 100, 0)};
    struct layout l;
    struct span s[MAX_SPANS];

    assert_int_equal(layout_init(&l, files, 1, 64, 100), 0);
    assert_int_equal(collect_range(&l, 0, 0, s), 0);
    assert_int_equal(collect_range(&l, 50, 0, s), 0);
    assert_int_equal(collect_range(&l, 100, 0, s), 0);
}

static void range_of_one_byte_at_each_boundary(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 5, 0), F(5, 1, 0), F(6, 10, 0)};
    struct layout l;
    struct span s[MAX_SPANS];

    assert_int_equal(layout_init(&l, files, 3, 16, 16), 0);
    assert_int_equal(collect_range(&l, 4, 1, s), 1);
    assert_span(&s[0], 0, 4, 1);
    assert_int_equal(collect_range(&l, 5, 1, s), 1);
    assert_span(&s[0], 1, 0, 1);
    assert_int_equal(collect_range(&l, 6, 1, s), 1);
    assert_span(&s[0], 2, 0, 1);
    assert_int_equal(collect_range(&l, 15, 1, s), 1);
    assert_span(&s[0], 2, 9, 1);
}

/* ---- layout_init ---- */

static void init_rejects_overlapping_files(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 100, 0), F(99, 10, 0)};
    struct layout l;
    assert_int_equal(layout_init(&l, files, 2, 64, 200), RV_EINVAL);
}

static void init_rejects_unsorted_files(void **state)
{
    (void)state;
    rv_file_t files[] = {F(100, 10, 0), F(0, 10, 0)};
    struct layout l;
    assert_int_equal(layout_init(&l, files, 2, 64, 200), RV_EINVAL);
}

static void init_rejects_zero_length_file_inside_another(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 100, 0), F(50, 0, 0)};
    struct layout l;
    assert_int_equal(layout_init(&l, files, 2, 64, 100), RV_EINVAL);
}

static void init_rejects_file_past_piece_space(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 100, 0), F(100, 1, 0)};
    struct layout l;
    assert_int_equal(layout_init(&l, files, 2, 64, 100), RV_EINVAL);
    rv_file_t zero_past[] = {F(0, 100, 0), F(101, 0, 0)};
    assert_int_equal(layout_init(&l, zero_past, 2, 64, 100), RV_EINVAL);
}

static void init_rejects_offset_overflow(void **state)
{
    (void)state;
    rv_file_t files[] = {F(UINT64_MAX - 5, 10, 0)};
    struct layout l;
    assert_int_equal(layout_init(&l, files, 1, 64, UINT64_MAX), RV_EINVAL);
}

static void init_rejects_zero_piece_length(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 100, 0)};
    struct layout l;
    assert_int_equal(layout_init(&l, files, 1, 0, 100), RV_EINVAL);
}

static void init_rejects_too_many_pieces(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, (uint64_t)UINT32_MAX + 1, 0)};
    struct layout l;
    assert_int_equal(layout_init(&l, files, 1, 1, (uint64_t)UINT32_MAX + 1), RV_EINVAL);
    assert_int_equal(layout_init(&l, files, 1, 2, (uint64_t)UINT32_MAX + 1), 0);
    assert_int_equal(l.piece_count, 1u << 31);
}

static void init_accepts_touching_files_and_end_zero_file(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 100, 0), F(100, 0, 0), F(100, 28, 0), F(128, 0, 0)};
    struct layout l;
    assert_int_equal(layout_init(&l, files, 4, 64, 128), 0);
    assert_int_equal(l.piece_count, 2);
    assert_int_equal(l.piece_space, 128);
    assert_int_equal(l.file_count, 4);
}

static void out_of_range_piece_has_size_zero_and_no_spans(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 100, 0)};
    struct layout l;
    struct span s[MAX_SPANS];

    assert_int_equal(layout_init(&l, files, 1, 64, 100), 0);
    assert_int_equal(layout_piece_size(&l, 2), 0);
    assert_int_equal(layout_piece_size(&l, UINT32_MAX), 0);
    assert_int_equal(collect_piece(&l, 2, s), 0);
    assert_int_equal(collect_piece(&l, UINT32_MAX, s), 0);
}

static void out_of_range_file_covers_no_pieces(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 100, 0)};
    struct layout l;
    assert_int_equal(layout_init(&l, files, 1, 64, 100), 0);
    assert_file_pieces(&l, 1, 0, 0);
    assert_file_pieces(&l, SIZE_MAX, 0, 0);
}

static void from_torrent_checks_piece_count(void **state)
{
    (void)state;
    rv_file_t files[] = {F(0, 100, 0)};
    rv_torrent_info_t ti;
    struct layout l;

    memset(&ti, 0, sizeof(ti));
    ti.files = files;
    ti.file_count = 1;
    ti.piece_length = 64;
    ti.piece_space = 100;
    ti.piece_count = 2;
    assert_int_equal(layout_from_torrent(&l, &ti), 0);
    assert_int_equal(l.piece_count, 2);
    ti.piece_count = 3;
    assert_int_equal(layout_from_torrent(&l, &ti), RV_EINVAL);
    ti.piece_count = 2;
    ti.piece_space = 200; /* the file no longer ends the space, but fits: 4 pieces */
    assert_int_equal(layout_from_torrent(&l, &ti), RV_EINVAL);
}

static void large_offsets_do_not_overflow(void **state)
{
    (void)state;
    /* a 1 TiB torrent in 16 MiB pieces */
    const uint64_t tib = 1ull << 40;
    const uint32_t plen = 1u << 24;
    rv_file_t files[] = {F(0, tib - 1, 0), F(tib - 1, 1, 0)};
    struct layout l;
    struct span s[MAX_SPANS];

    assert_int_equal(layout_init(&l, files, 2, plen, tib), 0);
    assert_int_equal(l.piece_count, 1u << 16);
    uint32_t last = l.piece_count - 1;
    assert_int_equal(layout_piece_size(&l, last), plen);
    assert_int_equal(collect_piece(&l, last, s), 2);
    assert_span(&s[0], 0, tib - plen, plen - 1);
    assert_span(&s[1], 1, 0, 1);
    assert_file_pieces(&l, 0, 0, 1u << 16);
    assert_file_pieces(&l, 1, last, last + 1);
}

/* ---- randomized consistency ---- */

static uint64_t rng_state;

static uint64_t rng(void)
{
    /* splitmix64: deterministic and good enough to spread the cases */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t n)
{
    return n ? rng() % n : 0;
}

#define RAND_MAX_FILES 12

/* A random file list: lengths around the piece length, zero-length files, padding files,
 * v2-style gaps up to the next piece boundary and sometimes a trailing gap. */
static size_t random_files(rv_file_t *files, uint32_t plen, uint64_t *space)
{
    size_t n = 1 + (size_t)rng_below(RAND_MAX_FILES);
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (rng_below(3) == 0 && pos % plen != 0)
            pos += plen - pos % plen;
        uint64_t len;
        switch (rng_below(6)) {
        case 0: len = 0; break;
        case 1: len = 1; break;
        case 2: len = plen - 1; break;
        case 3: len = plen; break;
        case 4: len = plen + 1; break;
        default: len = rng_below(3 * (uint64_t)plen + 1); break;
        }
        files[i] = F(pos, len, rng_below(5) == 0 ? RV_FILE_PAD : 0);
        pos += len;
    }
    if (rng_below(4) == 0)
        pos += rng_below(2 * (uint64_t)plen);
    *space = pos;
    return n;
}

/* The model: which file owns each byte of piece space (-1: a gap). */
static void fill_owner(const rv_file_t *files, size_t n, uint64_t space, int *owner)
{
    for (uint64_t b = 0; b < space; b++)
        owner[b] = -1;
    for (size_t i = 0; i < n; i++)
        for (uint64_t b = 0; b < files[i].length; b++)
            owner[files[i].offset + b] = (int)i;
}

/* Checks the spans of [start, end) against the model: exactly the maximal runs of owned
 * bytes, in order, never empty, contiguous in piece space except across gap bytes. */
static void check_range_against_model(const struct layout *l, const int *owner, uint64_t start,
                                      uint64_t len, uint64_t space)
{
    struct span_iter it;
    struct span s;
    uint64_t end = start > space ? space : (len > space - start ? space : start + len);
    uint64_t pos = start > space ? space : start; /* next byte the spans must account for */
    uint64_t covered = 0, gaps = 0;

    for (uint64_t b = pos; b < end; b++)
        gaps += owner[b] < 0;
    layout_span_begin(l, start, len, &it);
    while (layout_span_next(&it, &s)) {
        assert_true(s.length > 0);
        assert_true(s.file < l->file_count);
        const rv_file_t *f = &l->files[s.file];
        assert_true(s.file_offset + s.length <= f->length);
        uint64_t at = f->offset + s.file_offset;
        /* everything between the previous span and this one is gap */
        assert_true(at >= pos);
        for (uint64_t b = pos; b < at; b++)
            assert_int_equal(owner[b], -1);
        /* the span's bytes belong to its file, and the span is maximal */
        for (uint64_t b = at; b < at + s.length; b++)
            assert_int_equal(owner[b], (int)s.file);
        uint64_t stop = at + s.length;
        assert_true(stop <= end);
        if (stop < end)
            assert_int_not_equal(owner[stop], (int)s.file);
        covered += s.length;
        pos = stop;
    }
    for (uint64_t b = pos; b < end; b++)
        assert_int_equal(owner[b], -1);
    assert_int_equal(covered + gaps, end - (start > space ? space : start));
}

static void random_layouts_match_byte_model(void **state)
{
    (void)state;
    static const uint32_t plens[] = {1, 2, 3, 7, 8, 16, 64, 100};
    rv_file_t files[RAND_MAX_FILES];
    rng_state = 0x5eed5eedull;

    for (int round = 0; round < 3000; round++) {
        uint32_t plen = plens[rng_below(sizeof(plens) / sizeof(plens[0]))];
        uint64_t space;
        size_t n = random_files(files, plen, &space);
        struct layout l;
        assert_int_equal(layout_init(&l, files, n, plen, space), 0);
        assert_int_equal(l.piece_count, space / plen + (space % plen != 0));

        int *owner = malloc((space ? space : 1) * sizeof(*owner));
        assert_non_null(owner);
        fill_owner(files, n, space, owner);

        /* every piece: sizes add up to piece space, spans match the model */
        uint64_t total = 0;
        for (uint32_t p = 0; p < l.piece_count; p++) {
            uint32_t size = layout_piece_size(&l, p);
            assert_true(size > 0 && size <= plen);
            total += size;
            check_range_against_model(&l, owner, (uint64_t)p * plen, size, space);

            uint64_t sum = 0, gap = 0;
            struct span_iter it;
            struct span s;
            layout_piece_begin(&l, p, &it);
            while (layout_span_next(&it, &s))
                sum += s.length;
            for (uint64_t b = (uint64_t)p * plen; b < (uint64_t)p * plen + size; b++)
                gap += owner[b] < 0;
            assert_int_equal(sum, size - gap);
        }
        assert_int_equal(total, space);
        assert_int_equal(layout_piece_size(&l, l.piece_count), 0);

        /* every file: the pieces it covers are exactly those holding its bytes */
        for (size_t i = 0; i < n; i++) {
            uint32_t a, b;
            layout_file_pieces(&l, i, &a, &b);
            if (files[i].length == 0) {
                assert_int_equal(a, b);
                continue;
            }
            assert_int_equal(a, files[i].offset / plen);
            assert_int_equal(b, (files[i].offset + files[i].length - 1) / plen + 1);
            assert_true(b <= l.piece_count);
        }

        /* random ranges, some past the end */
        for (int k = 0; k < 20; k++) {
            uint64_t start = rng_below(space + 8);
            uint64_t len = rng_below(space + 8);
            check_range_against_model(&l, owner, start, len, space);
        }
        free(owner);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(single_file_pieces_and_short_last_piece),
        cmocka_unit_test(single_file_exact_multiple_of_piece_length),
        cmocka_unit_test(file_smaller_than_one_piece),
        cmocka_unit_test(piece_covering_four_files),
        cmocka_unit_test(piece_ending_exactly_at_file_boundary),
        cmocka_unit_test(file_spanning_many_pieces_between_others),
        cmocka_unit_test(zero_length_files_yield_no_spans),
        cmocka_unit_test(zero_length_files_cover_no_pieces),
        cmocka_unit_test(only_zero_length_files),
        cmocka_unit_test(padding_files_are_yielded_and_flagged),
        cmocka_unit_test(v2_gaps_yield_no_spans),
        cmocka_unit_test(v2_zero_length_file_after_gap_yields_no_span),
        cmocka_unit_test(trailing_gap_before_piece_space_end),
        cmocka_unit_test(block_crossing_file_boundary),
        cmocka_unit_test(range_clamped_to_piece_space),
        cmocka_unit_test(empty_range_yields_nothing),
        cmocka_unit_test(range_of_one_byte_at_each_boundary),
        cmocka_unit_test(init_rejects_overlapping_files),
        cmocka_unit_test(init_rejects_unsorted_files),
        cmocka_unit_test(init_rejects_zero_length_file_inside_another),
        cmocka_unit_test(init_rejects_file_past_piece_space),
        cmocka_unit_test(init_rejects_offset_overflow),
        cmocka_unit_test(init_rejects_zero_piece_length),
        cmocka_unit_test(init_rejects_too_many_pieces),
        cmocka_unit_test(init_accepts_touching_files_and_end_zero_file),
        cmocka_unit_test(out_of_range_piece_has_size_zero_and_no_spans),
        cmocka_unit_test(out_of_range_file_covers_no_pieces),
        cmocka_unit_test(from_torrent_checks_piece_count),
        cmocka_unit_test(large_offsets_do_not_overflow),
        cmocka_unit_test(random_layouts_match_byte_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
