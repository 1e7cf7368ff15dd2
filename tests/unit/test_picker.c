/* Unit tests for src/swarm/picker: rarest-first order, random first pieces, partial pieces
 * first, the max_active bound, end-game, releasing requests, verdicts, and a seeded random
 * simulation of five peers checked against a model after every step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rivulet/error.h"
#include "swarm/picker.h"
#include "util/bitfield.h"

#define KIB16 16384u

/* Opaque peers: the picker only compares the pointers. */
static int peer_a, peer_b, peer_c, peer_d, peer_e;
#define A ((void *)&peer_a)
#define B ((void *)&peer_b)
#define C ((void *)&peer_c)
#define D ((void *)&peer_d)
#define E ((void *)&peer_e)

static struct picker *mk(uint32_t n, uint32_t plen, uint32_t last, uint64_t seed,
                         uint32_t random_first, uint32_t max_active)
{
    struct picker_opts o;
    memset(&o, 0, sizeof(o));
    o.piece_count = n;
    o.piece_length = plen;
    o.last_piece_length = last;
    o.seed = seed;
    o.random_first = random_first;
    o.max_active = max_active;
    struct picker *p = NULL;
    assert_int_equal(picker_new(&o, &p), 0);
    assert_non_null(p);
    return p;
}

/* A picker already past the random first phase: random_first 1 and the last piece had, so
 * pieces 0 .. n-2 are picked rarest first. */
static struct picker *mk_rarest(uint32_t n, uint32_t plen, uint64_t seed, uint32_t max_active)
{
    struct picker *p = mk(n, plen, plen, seed, 1, max_active);
    picker_set_have(p, n - 1);
    return p;
}

static void bf_all(struct bitfield *bf, uint32_t n)
{
    assert_int_equal(bitfield_init(bf, n), 0);
    bitfield_set_all(bf);
}

/* Every piece but the last: not a seed's bitfield, so it is counted piece by piece. */
static void bf_all_but_last(struct bitfield *bf, uint32_t n)
{
    assert_int_equal(bitfield_init(bf, n), 0);
    for (uint32_t i = 0; i + 1 < n; i++)
        bitfield_set(bf, i);
}

static void inc_n(struct picker *p, uint32_t piece, uint32_t times)
{
    for (uint32_t i = 0; i < times; i++)
        picker_inc(p, piece);
}

static uint32_t pick1(struct picker *p, const struct bitfield *bf, void *peer)
{
    struct block_ref r;
    bool eg = true;
    size_t n = picker_pick(p, bf, peer, &r, 1, &eg);
    assert_int_equal(n, 1);
    assert_false(eg);
    return r.piece;
}

static void bad_options_refused(void **state)
{
    (void)state;
    struct picker_opts o;
    struct picker *p = (struct picker *)&o;
    memset(&o, 0, sizeof(o));
    assert_int_equal(picker_new(&o, &p), RV_EINVAL);
    assert_null(p);
    o.piece_count = 4;
    o.piece_length = KIB16;
    o.last_piece_length = KIB16 + 1; /* longer than a piece */
    assert_int_equal(picker_new(&o, &p), RV_EINVAL);
    o.last_piece_length = 0;
    assert_int_equal(picker_new(&o, &p), RV_EINVAL);
    o.last_piece_length = 100;
    assert_int_equal(picker_new(&o, &p), 0);
    picker_free(p);
    o.piece_length = 1u << 21;
    o.block_size = 1; /* two million blocks per piece */
    assert_int_equal(picker_new(&o, &p), RV_ETOOBIG);
    assert_null(p);
    picker_free(NULL);
}

static void rarest_first_with_known_availability(void **state)
{
    (void)state;
    /* One block per piece: each pick starts the next rarest piece. */
    static const uint32_t avail[9] = {5, 3, 1, 4, 2, 6, 2, 7, 1};
    struct picker *p = mk_rarest(10, KIB16, 42, 0);
    for (uint32_t i = 0; i < 9; i++)
        inc_n(p, i, avail[i]);
    struct bitfield bf;
    bf_all_but_last(&bf, 10);
    uint32_t last = 0;
    bool seen[9] = {false};
    for (int k = 0; k < 9; k++) {
        uint32_t piece = pick1(p, &bf, A);
        assert_true(piece < 9);
        assert_false(seen[piece]);
        seen[piece] = true;
        assert_true(avail[piece] >= last);
        last = avail[piece];
    }
    assert_int_equal(picker_active_count(p), 9);
    /* Everything is requested by A: end-game, and never the same peer twice. */
    struct block_ref r[4];
    bool eg = true;
    assert_int_equal(picker_pick(p, &bf, A, r, 4, &eg), 0);
    assert_false(eg);
    bitfield_free(&bf);
    picker_free(p);
}

static void rarest_first_follows_changes(void **state)
{
    (void)state;
    struct picker *p = mk_rarest(6, KIB16, 7, 0);
    struct bitfield bf;
    bf_all_but_last(&bf, 6);
    for (uint32_t i = 0; i < 5; i++)
        inc_n(p, i, 3);
    picker_dec(p, 3);
    picker_dec(p, 3); /* 3 is now the rarest */
    assert_int_equal(picker_availability(p, 3), 1);
    assert_int_equal(pick1(p, &bf, A), 3);
    inc_n(p, 0, 2);
    inc_n(p, 1, 1);
    inc_n(p, 4, 2); /* 2 rarest (3), then 1 (4), then 0 and 4 (5) */
    assert_int_equal(pick1(p, &bf, A), 2);
    assert_int_equal(pick1(p, &bf, A), 1);
    uint32_t x = pick1(p, &bf, A), y = pick1(p, &bf, A);
    assert_true((x == 0 && y == 4) || (x == 4 && y == 0));
    bitfield_free(&bf);
    picker_free(p);
}

/* A peer whose pieces were never counted (the caller picked before picker_inc_bitfield) is
 * still served, after every counted candidate was looked at. */
static void uncounted_pieces_still_picked(void **state)
{
    (void)state;
    struct picker *p = mk_rarest(6, KIB16, 7, 0);
    struct bitfield bf;
    assert_int_equal(bitfield_init(&bf, 6), 0);
    bitfield_set(&bf, 1);
    bitfield_set(&bf, 4);
    inc_n(p, 4, 2);
    inc_n(p, 2, 1);
    assert_int_equal(pick1(p, &bf, A), 4);
    assert_int_equal(pick1(p, &bf, A), 1);
    bitfield_free(&bf);
    picker_free(p);
}

static void ties_broken_at_random_among_the_rarest(void **state)
{
    (void)state;
    bool firsts[50] = {false};
    int distinct = 0;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        struct picker *p = mk_rarest(50, KIB16, seed, 0);
        for (uint32_t i = 0; i < 49; i++)
            inc_n(p, i, i >= 10 && i < 20 ? 1 : 2 + i % 3);
        struct bitfield bf;
        bf_all_but_last(&bf, 50);
        bool got[50] = {false};
        for (int k = 0; k < 10; k++) {
            uint32_t piece = pick1(p, &bf, A);
            assert_true(piece >= 10 && piece < 20);
            assert_false(got[piece]);
            got[piece] = true;
            if (k == 0 && !firsts[piece]) {
                firsts[piece] = true;
                distinct++;
            }
        }
        /* The next ones come from availability 2. */
        uint32_t piece = pick1(p, &bf, A);
        assert_int_equal(2 + piece % 3, 2);
        bitfield_free(&bf);
        picker_free(p);
    }
    assert_true(distinct >= 5);
    /* Same seed, same choices. */
    uint32_t first[2];
    for (int t = 0; t < 2; t++) {
        struct picker *p = mk_rarest(50, KIB16, 99, 0);
        for (uint32_t i = 0; i < 49; i++)
            inc_n(p, i, 1);
        struct bitfield bf;
        bf_all_but_last(&bf, 50);
        first[t] = pick1(p, &bf, A);
        bitfield_free(&bf);
        picker_free(p);
    }
    assert_int_equal(first[0], first[1]);
}

static void random_first_pieces(void **state)
{
    (void)state;
    /* Piece 0 is the rarest, but with nothing had the first pick is random. */
    int not_rarest = 0;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct picker *p = mk(100, KIB16, KIB16, seed, 0, 0);
        struct bitfield bf;
        bf_all_but_last(&bf, 100);
        picker_inc_bitfield(p, &bf);
        picker_inc_bitfield(p, &bf);
        picker_dec(p, 0);
        if (pick1(p, &bf, A) != 0)
            not_rarest++;
        bitfield_free(&bf);
        picker_free(p);
    }
    assert_true(not_rarest >= 15);

    /* Random picks stay among the pieces the peer has; after random_first (4) pieces are had,
     * rarest first takes over. */
    struct picker *p = mk(100, KIB16, KIB16, 5, 0, 0);
    struct bitfield even, all;
    assert_int_equal(bitfield_init(&even, 100), 0);
    for (uint32_t i = 0; i < 100; i += 2)
        bitfield_set(&even, i);
    bf_all_but_last(&all, 100);
    picker_inc_bitfield(p, &all);
    picker_inc_bitfield(p, &all);
    picker_dec(p, 51); /* the rarest, an odd piece */
    for (int k = 0; k < 4; k++) {
        uint32_t piece = pick1(p, &even, A);
        assert_int_equal(piece % 2, 0);
        bool done = false;
        assert_int_equal(picker_block_received(p, piece, 0, A, &done, NULL, NULL),
                         PICKER_BLOCK_NEW);
        assert_true(done);
        picker_piece_passed(p, piece);
    }
    assert_int_equal(picker_have_count(p), 4);
    assert_int_equal(pick1(p, &all, B), 51);
    bitfield_free(&even);
    bitfield_free(&all);
    picker_free(p);
}

static void partial_pieces_before_new_ones(void **state)
{
    (void)state;
    struct picker *p = mk_rarest(8, 4 * KIB16, 3, 0);
    struct bitfield bf;
    bf_all_but_last(&bf, 8);
    for (uint32_t i = 0; i < 7; i++)
        inc_n(p, i, i == 2 ? 2 : 4);
    struct block_ref r[8];
    bool eg;
    assert_int_equal(picker_pick(p, &bf, A, r, 2, &eg), 2);
    assert_int_equal(r[0].piece, 2);
    assert_int_equal(r[0].begin, 0);
    assert_int_equal(r[1].piece, 2);
    assert_int_equal(r[1].begin, KIB16);
    /* Piece 5 becomes rarer than 2, yet 2 is finished first. */
    inc_n(p, 2, 1);
    picker_dec(p, 5);
    picker_dec(p, 5);
    picker_dec(p, 5);
    assert_int_equal(picker_pick(p, &bf, B, r, 3, &eg), 3);
    assert_false(eg);
    assert_int_equal(r[0].piece, 2);
    assert_int_equal(r[0].begin, 2 * KIB16);
    assert_int_equal(r[1].piece, 2);
    assert_int_equal(r[1].begin, 3 * KIB16);
    assert_int_equal(r[2].piece, 5);
    assert_int_equal(r[2].begin, 0);
    /* A peer without piece 2 or 5 does not get their blocks. */
    struct bitfield only1;
    assert_int_equal(bitfield_init(&only1, 8), 0);
    bitfield_set(&only1, 1);
    assert_int_equal(picker_pick(p, &only1, C, r, 8, &eg), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r[i].piece, 1);
    assert_int_equal(picker_active_count(p), 3);
    assert_int_equal(picker_outstanding(p), 9);
    bitfield_free(&only1);
    bitfield_free(&bf);
    picker_free(p);
}

/* picker_set_spread: pieces started up to the spread, then a block of each in turn (rows),
 * the next pick going on where the last stopped; a peer without one of them gets the others';
 * before random_first pieces are had, and with a spread of 1, partial pieces are finished
 * first as ever. */
static void spread_hands_out_rows(void **state)
{
    (void)state;
    struct picker *p = mk_rarest(16, 4 * KIB16, 5, 0);
    picker_set_spread(p, 3);
    struct bitfield bf;
    bf_all_but_last(&bf, 16);
    for (uint32_t i = 0; i < 15; i++)
        inc_n(p, i, i < 3 ? 1 : 3); /* 0, 1, 2 rarest */
    struct block_ref r[16];
    bool eg;
    assert_int_equal(picker_pick(p, &bf, A, r, 5, &eg), 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(r[i].piece, r[i % 3].piece);
        assert_int_equal(r[i].begin, (uint32_t)(i / 3) * KIB16);
    }
    assert_true(r[0].piece < 3 && r[1].piece < 3 && r[2].piece < 3);
    assert_true(r[0].piece != r[1].piece && r[1].piece != r[2].piece && r[0].piece != r[2].piece);
    uint32_t row[3] = {r[0].piece, r[1].piece, r[2].piece};
    assert_int_equal(picker_active_count(p), 3);
    /* B has the first two only: their blocks, a row at a time, and no third piece started */
    struct bitfield two;
    assert_int_equal(bitfield_init(&two, 16), 0);
    bitfield_set(&two, row[0]);
    bitfield_set(&two, row[1]);
    assert_int_equal(picker_pick(p, &bf, B, r, 1, &eg), 1);
    assert_int_equal(r[0].piece, row[2]);
    assert_int_equal(r[0].begin, KIB16);
    assert_int_equal(picker_pick(p, &two, C, r, 4, &eg), 4);
    assert_int_equal(r[0].piece, row[0]);
    assert_int_equal(r[0].begin, 2 * KIB16);
    assert_int_equal(r[1].piece, row[1]);
    assert_int_equal(r[1].begin, 2 * KIB16);
    assert_int_equal(r[2].piece, row[0]);
    assert_int_equal(r[2].begin, 3 * KIB16);
    assert_int_equal(r[3].piece, row[1]);
    assert_int_equal(r[3].begin, 3 * KIB16);
    /* Every block of the three asked for: a fourth piece and more start for what is left */
    assert_int_equal(picker_pick(p, &bf, A, r, 6, &eg), 6);
    assert_int_equal(r[0].piece, row[2]);
    assert_int_equal(r[1].piece, row[2]);
    assert_true(r[2].piece >= 3);
    assert_int_equal(picker_active_count(p), 4);
    bitfield_free(&two);
    picker_free(p);

    /* Before random_first pieces are had, no rows: a piece is finished first. */
    p = mk(16, 4 * KIB16, 4 * KIB16, 5, 4, 0);
    picker_set_spread(p, 3);
    assert_int_equal(picker_pick(p, &bf, A, r, 5, &eg), 5);
    for (int i = 1; i < 4; i++)
        assert_int_equal(r[i].piece, r[0].piece);
    assert_true(r[4].piece != r[0].piece);
    picker_free(p);
    bitfield_free(&bf);
}

/* picker_block_requesters (receiving in place asks it): how many peers hold a request for a
 * block, when the one asking is among them and the block has not arrived; else 0. */
static void block_requesters_counted(void **state)
{
    (void)state;
    struct picker *p = mk_rarest(2, 2 * KIB16, 9, 0); /* piece 1 is had */
    struct bitfield bf;
    bf_all_but_last(&bf, 2);
    inc_n(p, 0, 2);
    struct block_ref r[4];
    bool eg;
    assert_int_equal(picker_block_requesters(p, 0, 0, A), 0); /* not asked yet */
    assert_int_equal(picker_pick(p, &bf, A, r, 2, &eg), 2);
    assert_int_equal(picker_block_requesters(p, 0, r[0].begin, A), 1);
    assert_int_equal(picker_block_requesters(p, 0, r[0].begin, B), 0); /* not B's */
    assert_int_equal(picker_block_requesters(p, 0, 7, A), 0);          /* no such block */
    assert_int_equal(picker_block_requesters(p, 1, 0, A), 0);          /* a piece had */
    assert_int_equal(picker_block_requesters(p, 5, 0, A), 0);          /* no such piece */
    /* End-game: B asks for the same blocks; each now has two askers, for either of them */
    assert_int_equal(picker_pick(p, &bf, B, r, 2, &eg), 2);
    assert_true(eg);
    assert_int_equal(picker_block_requesters(p, 0, 0, A), 2);
    assert_int_equal(picker_block_requesters(p, 0, 0, B), 2);
    /* Arrived: no one's to receive any more */
    bool done;
    assert_int_equal(picker_block_received(p, 0, 0, A, &done, NULL, NULL), PICKER_BLOCK_NEW);
    assert_int_equal(picker_block_requesters(p, 0, 0, A), 0);
    assert_int_equal(picker_block_requesters(p, 0, 0, B), 0);
    /* Dropped: the other asker alone is left */
    picker_block_dropped(p, 0, KIB16, B);
    assert_int_equal(picker_block_requesters(p, 0, KIB16, A), 1);
    assert_int_equal(picker_block_requesters(p, 0, KIB16, B), 0);
    picker_free(p);
    bitfield_free(&bf);
}

/* picker_pick_alone: a peer on parole gets a piece of its own, which others get no block of,
 * end-game included, until its owner drops a request of it. */
static void alone_pieces_are_not_shared(void **state)
{
    (void)state;
    struct picker *p = mk_rarest(4, 4 * KIB16, 9, 0);
    struct bitfield bf;
    bf_all_but_last(&bf, 4);
    for (uint32_t i = 0; i < 3; i++)
        inc_n(p, i, 2);
    struct block_ref r[16];
    bool eg;
    assert_int_equal(picker_pick_alone(p, &bf, A, r, 2), 2);
    uint32_t own = r[0].piece;
    assert_int_equal(r[1].piece, own);
    /* B takes every block of the other two pieces, and none of A's, even in end-game */
    size_t n = picker_pick(p, &bf, B, r, 16, &eg);
    assert_int_equal(n, 8);
    for (size_t i = 0; i < n; i++)
        assert_true(r[i].piece != own);
    assert_int_equal(picker_pick(p, &bf, C, r, 16, &eg), 8);
    for (size_t i = 0; i < 8; i++)
        assert_true(r[i].piece != own);
    /* A goes on with its own piece, then (nothing left of it) starts none other: none left */
    assert_int_equal(picker_pick_alone(p, &bf, A, r, 16), 2);
    assert_int_equal(r[0].piece, own);
    assert_int_equal(r[0].begin, 2 * KIB16);
    assert_int_equal(picker_pick_alone(p, &bf, A, r, 16), 0);
    /* A drops a request: the piece is everyone's again */
    picker_block_dropped(p, own, 0, A);
    assert_int_equal(picker_pick(p, &bf, B, r, 1, &eg), 1);
    assert_int_equal(r[0].piece, own);
    assert_int_equal(r[0].begin, 0);
    bitfield_free(&bf);
    picker_free(p);
}

static void max_active_is_respected(void **state)
{
    (void)state;
    struct picker *p = mk_rarest(11, 2 * KIB16, 1, 2);
    struct bitfield bf;
    bf_all_but_last(&bf, 11);
    picker_inc_bitfield(p, &bf);
    struct block_ref r[16];
    bool eg = true;
    assert_int_equal(picker_pick(p, &bf, A, r, 16, &eg), 4);
    assert_false(eg);
    assert_int_equal(picker_active_count(p), 2);
    /* No room for a third piece, and that is not end-game: nothing for B. */
    assert_int_equal(picker_pick(p, &bf, B, r, 16, &eg), 0);
    assert_false(eg);
    /* A piece completes and passes: room for one more. */
    uint32_t piece = r[0].piece;
    bool done = false;
    assert_int_equal(picker_block_received(p, piece, 0, A, &done, NULL, NULL), PICKER_BLOCK_NEW);
    assert_false(done);
    assert_int_equal(picker_block_received(p, piece, KIB16, A, &done, NULL, NULL),
                     PICKER_BLOCK_NEW);
    assert_true(done);
    /* Still active until the verdict. */
    assert_int_equal(picker_pick(p, &bf, B, r, 16, &eg), 0);
    picker_piece_passed(p, piece);
    assert_int_equal(picker_active_count(p), 1);
    assert_int_equal(picker_pick(p, &bf, B, r, 16, &eg), 2);
    assert_int_equal(picker_active_count(p), 2);
    bitfield_free(&bf);
    picker_free(p);
}

static void start_limit_holds_back_new_pieces(void **state)
{
    (void)state;
    struct picker *p = mk_rarest(11, 2 * KIB16, 1, 4);
    struct bitfield bf;
    bf_all_but_last(&bf, 11);
    picker_inc_bitfield(p, &bf);
    struct block_ref r[16];
    bool eg = true;
    /* One piece started, its second block left unrequested. */
    assert_int_equal(picker_pick(p, &bf, A, r, 1, &eg), 1);
    uint32_t piece = r[0].piece;
    picker_set_start_limit(p, 1);
    /* Under the limit: only the piece in progress gives blocks, and that is not end-game. */
    assert_int_equal(picker_pick(p, &bf, B, r, 16, &eg), 1);
    assert_int_equal(r[0].piece, piece);
    assert_int_equal(r[0].begin, KIB16);
    assert_false(eg);
    assert_int_equal(picker_pick(p, &bf, B, r, 16, &eg), 0);
    assert_false(eg);
    assert_int_equal(picker_active_count(p), 1);
    /* Raised: new pieces again, up to the limit. */
    picker_set_start_limit(p, 2);
    assert_int_equal(picker_pick(p, &bf, B, r, 16, &eg), 2);
    assert_int_equal(picker_active_count(p), 2);
    /* 0: only max_active (4) bounds them. */
    picker_set_start_limit(p, 0);
    assert_int_equal(picker_pick(p, &bf, B, r, 16, &eg), 4);
    assert_int_equal(picker_active_count(p), 4);
    bitfield_free(&bf);
    picker_free(p);
}

/* Piece extent affinity: with every piece as rare as the next, an extent (4 MiB: 16 pieces
 * of 256 KiB) is begun at its first piece and fetched in order; a rarer piece still goes
 * first. */
static void extent_affinity_starts_neighbours(void **state)
{
    (void)state;
    const uint32_t plen = 16 * KIB16, n = 65;
    struct picker *p = mk_rarest(n, plen, 7, 0);
    struct bitfield bf;
    bf_all_but_last(&bf, n);
    picker_inc_bitfield(p, &bf);
    struct block_ref r[16];
    bool eg;
    assert_int_equal(picker_pick(p, &bf, A, r, 16, &eg), 16);
    uint32_t first = r[0].piece, prev = first;
    assert_int_equal(first % 16, 0);
    for (uint32_t i = 1; i < n - 1; i++) {
        assert_int_equal(picker_pick(p, &bf, A, r, 16, &eg), 16);
        for (int k = 0; k < 16; k++)
            assert_int_equal(r[k].piece, r[0].piece);
        if (i % 16 != 0)
            assert_int_equal(r[0].piece, prev + 1);
        else
            assert_int_equal(r[0].piece % 16, 0); /* the next extent, from its start */
        prev = r[0].piece;
    }
    bitfield_free(&bf);
    picker_free(p);

    /* A rarer piece beats the neighbour. */
    p = mk_rarest(n, plen, 8, 0);
    bf_all_but_last(&bf, n);
    picker_inc_bitfield(p, &bf);
    picker_inc_bitfield(p, &bf);
    assert_int_equal(picker_pick(p, &bf, A, r, 16, &eg), 16);
    first = r[0].piece;
    uint32_t rare = (first + 30) % (n - 1);
    picker_dec(p, rare); /* now had by one peer, every other piece by two */
    if (first % 16 != 15 && first + 1 < n - 1)
        picker_inc(p, first + 1); /* and the neighbour by three */
    assert_int_equal(picker_pick(p, &bf, A, r, 16, &eg), 16);
    assert_int_equal(r[0].piece, rare);
    /* then the rare piece's neighbour, as common as the rest */
    assert_int_equal(picker_pick(p, &bf, A, r, 16, &eg), 16);
    if (rare % 16 != 15 && rare + 1 < n - 1 && rare + 1 != first)
        assert_int_equal(r[0].piece, rare + 1);
    bitfield_free(&bf);
    picker_free(p);
}

static void last_piece_has_a_short_last_block(void **state)
{
    (void)state;
    struct block_ref r[32];
    bool eg;
    struct bitfield bf;
    /* 3 pieces of 64 KiB, the last 40000 bytes: 16384 + 16384 + 7232. */
    struct picker *p = mk(3, 4 * KIB16, 40000, 1, 0, 0);
    bf_all(&bf, 3);
    picker_inc_bitfield(p, &bf);
    assert_int_equal(picker_pick(p, &bf, A, r, 32, &eg), 11);
    uint32_t total[3] = {0, 0, 0};
    for (int i = 0; i < 11; i++) {
        assert_int_equal(r[i].begin % KIB16, 0);
        if (r[i].piece == 2 && r[i].begin == 2 * KIB16)
            assert_int_equal(r[i].length, 40000 - 2 * KIB16);
        else
            assert_int_equal(r[i].length, KIB16);
        total[r[i].piece] += r[i].length;
    }
    assert_int_equal(total[0], 4 * KIB16);
    assert_int_equal(total[1], 4 * KIB16);
    assert_int_equal(total[2], 40000);
    /* The short block is a block boundary; one past it is not. */
    bool done;
    assert_int_equal(picker_block_received(p, 2, 2 * KIB16, A, &done, NULL, NULL),
                     PICKER_BLOCK_NEW);
    assert_int_equal(picker_block_received(p, 2, 3 * KIB16, A, &done, NULL, NULL),
                     PICKER_BLOCK_UNWANTED);
    assert_int_equal(picker_block_received(p, 2, 100, A, &done, NULL, NULL), PICKER_BLOCK_UNWANTED);
    assert_int_equal(picker_block_received(p, 3, 0, A, &done, NULL, NULL), PICKER_BLOCK_UNWANTED);
    bitfield_free(&bf);
    picker_free(p);

    /* A last piece that is whole, and pieces smaller than a block. */
    p = mk(2, 2 * KIB16, 2 * KIB16, 1, 0, 0);
    bf_all(&bf, 2);
    assert_int_equal(picker_pick(p, &bf, A, r, 32, &eg), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r[i].length, KIB16);
    bitfield_free(&bf);
    picker_free(p);
    p = mk(3, 10000, 1, 1, 0, 0);
    bf_all(&bf, 3);
    assert_int_equal(picker_pick(p, &bf, A, r, 32, &eg), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r[i].length, r[i].piece == 2 ? 1 : 10000);
    bitfield_free(&bf);
    picker_free(p);
}

static void blocks_never_handed_out_twice_before_endgame(void **state)
{
    (void)state;
    struct picker *p = mk(20, 4 * KIB16, 4 * KIB16, 11, 0, 0);
    struct bitfield bf;
    bf_all(&bf, 20);
    picker_inc_bitfield(p, &bf);
    bool seen[20][4];
    memset(seen, 0, sizeof(seen));
    void *peers[3] = {A, B, C};
    struct block_ref r[8];
    bool eg = true;
    struct block_ref of_b = {0, 0, 0};
    for (int round = 0; round < 10; round++) {
        assert_int_equal(picker_pick(p, &bf, peers[round % 3], r, 8, &eg), 8);
        assert_false(eg);
        for (size_t i = 0; i < 8; i++) {
            assert_false(seen[r[i].piece][r[i].begin / KIB16]);
            seen[r[i].piece][r[i].begin / KIB16] = true;
        }
        if (round == 1)
            of_b = r[0];
    }
    assert_int_equal(picker_outstanding(p), 80);
    /* A free block left over is handed out first, then the pipeline is filled in end-game
     * with blocks B or C hold (A had rounds 0, 3, 6 and 9). */
    picker_block_dropped(p, of_b.piece, of_b.begin, B);
    assert_int_equal(picker_outstanding(p), 79);
    assert_int_equal(picker_pick(p, &bf, A, r, 3, &eg), 3);
    assert_true(eg);
    assert_int_equal(r[0].piece, of_b.piece);
    assert_int_equal(r[0].begin, of_b.begin);
    assert_int_equal(picker_outstanding(p), 80);
    for (int i = 1; i < 3; i++)
        assert_false(r[i].piece == of_b.piece && r[i].begin == of_b.begin);
    bitfield_free(&bf);
    picker_free(p);
}

static bool contains(void **v, size_t n, void *x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return true;
    return false;
}

static void endgame_duplicates_and_cancels(void **state)
{
    (void)state;
    struct picker *p = mk(2, 2 * KIB16, 2 * KIB16, 3, 0, 0);
    struct bitfield bf;
    bf_all(&bf, 2);
    picker_inc_bitfield(p, &bf);
    struct block_ref r[8];
    bool eg = true;
    assert_int_equal(picker_pick(p, &bf, A, r, 8, &eg), 4);
    assert_false(eg);
    assert_int_equal(picker_pick(p, &bf, A, r, 8, &eg), 0); /* never twice to A */
    assert_false(eg);
    assert_int_equal(picker_pick(p, &bf, B, r, 3, &eg), 3);
    assert_true(eg);
    assert_int_equal(picker_pick(p, &bf, B, r, 8, &eg), 1);
    assert_true(eg);
    assert_int_equal(picker_pick(p, &bf, B, r, 8, &eg), 0);
    assert_int_equal(picker_pick(p, &bf, C, r, 8, &eg), 4);
    assert_int_equal(picker_pick(p, &bf, D, r, 8, &eg), 4);
    /* PICKER_MAX_REQUESTERS (4) hold every block now. */
    assert_int_equal(picker_pick(p, &bf, E, r, 8, &eg), 0);
    assert_false(eg);
    assert_int_equal(picker_outstanding(p), 4); /* blocks, not requests */

    void *others[PICKER_MAX_REQUESTERS];
    size_t nothers = 99;
    bool done = true;
    assert_int_equal(picker_block_received(p, 0, 0, B, &done, others, &nothers), PICKER_BLOCK_NEW);
    assert_false(done);
    assert_int_equal(nothers, 3);
    assert_true(contains(others, 3, A) && contains(others, 3, C) && contains(others, 3, D));
    assert_int_equal(picker_outstanding(p), 3);
    assert_int_equal(picker_block_received(p, 0, 0, A, &done, others, &nothers),
                     PICKER_BLOCK_DUPLICATE);
    assert_int_equal(nothers, 0);
    /* A dropped request in end-game frees a requester place: E gets that block. */
    picker_block_dropped(p, 1, KIB16, C);
    assert_int_equal(picker_pick(p, &bf, E, r, 8, &eg), 1);
    assert_true(eg);
    assert_int_equal(r[0].piece, 1);
    assert_int_equal(r[0].begin, KIB16);
    /* A block from someone who never asked for it, while others hold requests. */
    assert_int_equal(picker_block_received(p, 1, KIB16, NULL, &done, others, &nothers),
                     PICKER_BLOCK_NEW);
    assert_int_equal(nothers, 4);
    assert_true(contains(others, 4, E) && !contains(others, 4, C));
    bitfield_free(&bf);
    picker_free(p);
}

static void dropped_and_gone_release_blocks(void **state)
{
    (void)state;
    struct picker *p = mk(1, 4 * KIB16, 4 * KIB16, 3, 0, 0);
    struct bitfield bf;
    bf_all(&bf, 1);
    picker_inc_bitfield(p, &bf);
    struct block_ref r[8];
    bool eg;
    assert_int_equal(picker_pick(p, &bf, A, r, 3, &eg), 3);
    assert_int_equal(picker_outstanding(p), 3);
    picker_block_dropped(p, 0, KIB16, A);
    picker_block_dropped(p, 0, KIB16, A); /* twice is harmless */
    picker_block_dropped(p, 0, 0, B);     /* B held nothing */
    assert_int_equal(picker_outstanding(p), 2);
    assert_int_equal(picker_pick(p, &bf, B, r, 2, &eg), 2);
    assert_false(eg);
    assert_int_equal(r[0].begin, KIB16);
    assert_int_equal(r[1].begin, 3 * KIB16);
    picker_peer_gone(p, A);
    assert_int_equal(picker_outstanding(p), 2);
    assert_int_equal(picker_pick(p, &bf, C, r, 2, &eg), 2);
    assert_false(eg);
    assert_int_equal(r[0].begin, 0);
    assert_int_equal(r[1].begin, 2 * KIB16);
    /* C has room for more: nothing free is left, so it joins B's two blocks (end-game). */
    assert_int_equal(picker_pick(p, &bf, C, r, 8, &eg), 2);
    assert_true(eg);
    assert_int_equal(r[0].begin, KIB16);
    assert_int_equal(r[1].begin, 3 * KIB16);
    assert_int_equal(picker_outstanding(p), 4);
    /* Everyone leaves before a block arrived: the piece is no longer in progress. */
    picker_peer_gone(p, B);
    picker_peer_gone(p, C);
    assert_int_equal(picker_outstanding(p), 0);
    assert_int_equal(picker_active_count(p), 0);
    bool done;
    assert_int_equal(picker_block_received(p, 0, 0, B, &done, NULL, NULL), PICKER_BLOCK_UNWANTED);
    /* With a block received the piece stays in progress. */
    assert_int_equal(picker_pick(p, &bf, A, r, 8, &eg), 4);
    assert_int_equal(picker_block_received(p, 0, 0, A, &done, NULL, NULL), PICKER_BLOCK_NEW);
    picker_peer_gone(p, A);
    assert_int_equal(picker_active_count(p), 1);
    assert_int_equal(picker_pick(p, &bf, B, r, 8, &eg), 3);
    assert_int_equal(r[0].begin, KIB16);
    bitfield_free(&bf);
    picker_free(p);
}

static void failed_piece_is_picked_again(void **state)
{
    (void)state;
    struct picker *p = mk(2, 2 * KIB16, 2 * KIB16, 3, 0, 0);
    struct bitfield bf;
    bf_all(&bf, 2);
    picker_inc_bitfield(p, &bf);
    picker_set_have(p, 1);
    struct block_ref r[4];
    bool eg, done;
    assert_int_equal(picker_pick(p, &bf, A, r, 4, &eg), 2);
    assert_int_equal(picker_block_received(p, 0, 0, A, &done, NULL, NULL), PICKER_BLOCK_NEW);
    assert_int_equal(picker_block_received(p, 0, KIB16, A, &done, NULL, NULL), PICKER_BLOCK_NEW);
    assert_true(done);
    assert_int_equal(picker_pick(p, &bf, B, r, 4, &eg), 0); /* waiting for the hash */
    picker_piece_failed(p, 0);
    assert_int_equal(picker_active_count(p), 0);
    assert_false(picker_is_complete(p));
    assert_int_equal(picker_pick(p, &bf, B, r, 4, &eg), 2);
    assert_false(eg);
    assert_int_equal(r[0].begin, 0);
    assert_int_equal(r[1].begin, KIB16);
    assert_int_equal(picker_block_received(p, 0, 0, B, &done, NULL, NULL), PICKER_BLOCK_NEW);
    assert_int_equal(picker_block_received(p, 0, KIB16, B, &done, NULL, NULL), PICKER_BLOCK_NEW);
    assert_true(done);
    picker_piece_passed(p, 0);
    assert_true(picker_have(p, 0));
    assert_true(picker_is_complete(p));
    assert_int_equal(picker_active_count(p), 0);
    assert_int_equal(picker_pick(p, &bf, C, r, 4, &eg), 0);
    assert_int_equal(picker_block_received(p, 0, 0, B, &done, NULL, NULL), PICKER_BLOCK_UNWANTED);
    bitfield_free(&bf);
    picker_free(p);
}

static void have_and_wanted_exclude_pieces(void **state)
{
    (void)state;
    struct picker *p = mk(6, KIB16, KIB16, 3, 0, 0);
    struct bitfield bf;
    bf_all(&bf, 6);
    picker_inc_bitfield(p, &bf);
    picker_set_have(p, 0);
    picker_set_wanted(p, 1, false);
    struct block_ref r[8];
    bool eg;
    assert_int_equal(picker_pick(p, &bf, A, r, 8, &eg), 4);
    for (int i = 0; i < 4; i++)
        assert_true(r[i].piece >= 2);
    picker_set_wanted(p, 1, true);
    assert_int_equal(picker_pick(p, &bf, A, r, 8, &eg), 1);
    assert_false(eg);
    assert_int_equal(r[0].piece, 1);
    /* Unwanting a piece in progress forgets its requests. */
    assert_int_equal(picker_outstanding(p), 5);
    picker_set_wanted(p, 1, false);
    assert_int_equal(picker_outstanding(p), 4);
    assert_int_equal(picker_active_count(p), 4);
    bool done;
    assert_int_equal(picker_block_received(p, 1, 0, A, &done, NULL, NULL), PICKER_BLOCK_UNWANTED);
    /* Having a piece in progress (say, from resume data) does the same. */
    picker_set_have(p, 2);
    assert_int_equal(picker_outstanding(p), 3);
    assert_int_equal(picker_block_received(p, 2, 0, A, &done, NULL, NULL), PICKER_BLOCK_UNWANTED);
    assert_int_equal(picker_have_count(p), 2);
    picker_set_have(p, 2); /* twice counts once */
    assert_int_equal(picker_have_count(p), 2);
    bitfield_free(&bf);
    picker_free(p);
}

static void interesting_peers(void **state)
{
    (void)state;
    struct picker *p = mk(1000, KIB16, KIB16, 3, 0, 0);
    struct bitfield bf;
    assert_int_equal(bitfield_init(&bf, 1000), 0);
    assert_false(picker_is_interesting(p, &bf));
    bitfield_set(&bf, 0);
    assert_true(picker_is_interesting(p, &bf));
    picker_set_have(p, 0);
    assert_false(picker_is_interesting(p, &bf));
    bitfield_set(&bf, 999); /* in the tail past the last whole word */
    picker_set_wanted(p, 999, false);
    assert_false(picker_is_interesting(p, &bf));
    picker_set_wanted(p, 999, true);
    assert_true(picker_is_interesting(p, &bf));
    bitfield_clear(&bf, 999);
    bitfield_set(&bf, 517);
    assert_true(picker_is_interesting(p, &bf));
    /* A piece in progress or awaiting its hash is still needed. */
    struct block_ref r;
    bool eg;
    assert_int_equal(picker_pick(p, &bf, A, &r, 1, &eg), 1);
    assert_int_equal(r.piece, 517);
    assert_true(picker_is_interesting(p, &bf));
    picker_piece_passed(p, 517);
    assert_false(picker_is_interesting(p, &bf));
    bitfield_free(&bf);
    picker_free(p);
}

static void complete_ignores_unwanted_pieces(void **state)
{
    (void)state;
    struct picker *p = mk(3, KIB16, KIB16, 3, 0, 0);
    assert_false(picker_is_complete(p));
    picker_set_wanted(p, 2, false);
    picker_set_have(p, 0);
    assert_false(picker_is_complete(p));
    picker_set_have(p, 1);
    assert_true(picker_is_complete(p));
    assert_int_equal(picker_have_count(p), 2);
    picker_set_wanted(p, 2, true);
    assert_false(picker_is_complete(p));
    picker_set_wanted(p, 0, false); /* had and unwanted: still complete once 2 is had */
    picker_set_have(p, 2);
    assert_true(picker_is_complete(p));
    picker_set_wanted(p, 0, true);
    assert_true(picker_is_complete(p));
    picker_free(p);
}

static void availability_counts(void **state)
{
    (void)state;
    struct picker *p = mk(10, KIB16, KIB16, 3, 0, 0);
    struct bitfield seed, part, grown;
    bf_all(&seed, 10);
    assert_int_equal(bitfield_init(&part, 10), 0);
    bitfield_set(&part, 1);
    bitfield_set(&part, 9);
    picker_inc(p, 3);
    picker_inc(p, 3);
    picker_inc(p, 10); /* out of range: ignored */
    picker_dec(p, 4);  /* below zero: ignored */
    assert_int_equal(picker_availability(p, 3), 2);
    assert_int_equal(picker_availability(p, 4), 0);
    assert_int_equal(picker_availability(p, 10), 0);
    picker_inc_bitfield(p, &seed);
    picker_inc_bitfield(p, &part);
    assert_int_equal(picker_availability(p, 0), 1);
    assert_int_equal(picker_availability(p, 1), 2);
    assert_int_equal(picker_availability(p, 3), 3);
    assert_int_equal(picker_availability(p, 9), 2);
    /* A peer that became a seed through HAVEs leaves with a full bitfield. */
    assert_int_equal(bitfield_init(&grown, 10), 0);
    bitfield_set(&grown, 5);
    picker_inc_bitfield(p, &grown);
    for (uint32_t i = 0; i < 10; i++) {
        if (i != 5) {
            bitfield_set(&grown, i);
            picker_inc(p, i);
        }
    }
    assert_int_equal(picker_availability(p, 0), 2);
    picker_dec_bitfield(p, &grown);
    picker_dec_bitfield(p, &seed);
    assert_int_equal(picker_availability(p, 0), 0);
    assert_int_equal(picker_availability(p, 1), 1);
    assert_int_equal(picker_availability(p, 3), 2);
    assert_int_equal(picker_availability(p, 5), 0);
    picker_dec_bitfield(p, &part);
    for (uint32_t i = 0; i < 10; i++)
        assert_int_equal(picker_availability(p, i), i == 3 ? 2 : 0);
    /* Many peers: past the first buckets the counts and the order still hold. */
    for (int k = 0; k < 300; k++)
        picker_inc_bitfield(p, &part);
    assert_int_equal(picker_availability(p, 1), 300);
    picker_set_have(p, 8); /* past random first (random_first 4 needs 4 had) */
    picker_set_have(p, 7);
    picker_set_have(p, 6);
    picker_set_have(p, 5);
    assert_int_equal(pick1(p, &seed, A), 3);
    bitfield_free(&grown);
    bitfield_free(&part);
    bitfield_free(&seed);
    picker_free(p);
}

static void seeds_only_pieces_are_rarest(void **state)
{
    (void)state;
    struct picker *p = mk_rarest(11, KIB16, 5, 0);
    struct bitfield seed, half;
    bf_all(&seed, 11);
    assert_int_equal(bitfield_init(&half, 11), 0);
    for (uint32_t i = 0; i < 5; i++)
        bitfield_set(&half, i);
    picker_inc_bitfield(p, &seed);
    picker_inc_bitfield(p, &half);
    for (int k = 0; k < 5; k++) {
        uint32_t piece = pick1(p, &seed, A);
        assert_true(piece >= 5 && piece < 10);
    }
    assert_true(pick1(p, &seed, A) < 5);
    bitfield_free(&half);
    bitfield_free(&seed);
    picker_free(p);
}

/* ---- randomized simulation against a model ---- */

#define SIM_N 64
#define SIM_BLOCKS 3 /* piece 48 KiB; the last piece 40000 bytes: 3 blocks, the last short */
#define SIM_PEERS 5
#define SIM_PIPE 24

struct sim_req {
    uint32_t piece, block;
};

struct sim_peer {
    bool connected;
    struct bitfield bf;
    struct sim_req out[SIM_PIPE];
    int nout;
    struct sim_req stale[64]; /* cancelled, but the data crosses the cancel */
    int nstale;
};

struct sim {
    struct picker *p;
    uint64_t rng;
    uint32_t max_active;
    struct sim_peer peer[SIM_PEERS];
    /* model */
    uint8_t state[SIM_N][SIM_BLOCKS]; /* 0 none, 1 requested, 2 received */
    uint8_t mask[SIM_N][SIM_BLOCKS];  /* requesters, one bit per peer */
    uint8_t got[SIM_N][SIM_BLOCKS];   /* NEW copies this verification round */
    bool active[SIM_N], have[SIM_N], wanted[SIM_N], hashing[SIM_N];
    uint32_t queue[SIM_N];
    int nqueue;
    long picks, endgame_picks, dups, fails, news;
};

static uint32_t sim_rand(struct sim *s, uint32_t n)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return (uint32_t)((s->rng >> 11) % n);
}

static uint32_t sim_len(uint32_t piece, uint32_t block)
{
    uint32_t size = piece == SIM_N - 1 ? 40000 : SIM_BLOCKS * KIB16;
    uint32_t left = size - block * KIB16;
    return left < KIB16 ? left : KIB16;
}

static uint32_t sim_nblocks(uint32_t piece)
{
    return piece == SIM_N - 1 ? 3 : SIM_BLOCKS;
}

static void *sim_ptr(struct sim *s, int i)
{
    return &s->peer[i];
}

static int sim_index(struct sim *s, void *ptr)
{
    for (int i = 0; i < SIM_PEERS; i++)
        if (ptr == &s->peer[i])
            return i;
    fail_msg("unknown peer pointer");
    return -1;
}

static void sim_remove_req(struct sim_req *v, int *n, uint32_t piece, uint32_t block)
{
    for (int i = 0; i < *n; i++) {
        if (v[i].piece == piece && v[i].block == block) {
            v[i] = v[--*n];
            return;
        }
    }
}

/* A piece with nothing requested or received leaves the in-progress set. */
static void sim_settle(struct sim *s, uint32_t piece)
{
    if (!s->active[piece] || s->hashing[piece])
        return;
    for (uint32_t b = 0; b < sim_nblocks(piece); b++)
        if (s->state[piece][b] != 0)
            return;
    s->active[piece] = false;
}

static void sim_check(struct sim *s)
{
    uint32_t outstanding = 0, active = 0, have = 0;
    bool complete = true;
    for (uint32_t i = 0; i < SIM_N; i++) {
        active += s->active[i];
        have += s->have[i];
        if (s->wanted[i] && !s->have[i])
            complete = false;
        for (uint32_t b = 0; b < sim_nblocks(i); b++)
            outstanding += s->state[i][b] == 1;
        uint32_t avail = 0;
        for (int k = 0; k < SIM_PEERS; k++)
            avail += s->peer[k].connected && bitfield_has(&s->peer[k].bf, i);
        assert_int_equal(picker_availability(s->p, i), avail);
        assert_int_equal(picker_have(s->p, i), s->have[i]);
    }
    assert_int_equal(picker_outstanding(s->p), outstanding);
    assert_int_equal(picker_active_count(s->p), active);
    assert_int_equal(picker_have_count(s->p), have);
    assert_int_equal(picker_is_complete(s->p), complete);
    if (s->max_active)
        assert_true(active <= s->max_active);
}

static void sim_pick(struct sim *s, int pi)
{
    struct sim_peer *pe = &s->peer[pi];
    if (pe->nout >= SIM_PIPE)
        return;
    size_t max = 1 + sim_rand(s, (uint32_t)(SIM_PIPE - pe->nout));
    struct block_ref r[SIM_PIPE];
    bool eg = false;
    size_t n = picker_pick(s->p, &pe->bf, sim_ptr(s, pi), r, max, &eg);
    assert_true(n <= max);
    s->picks++;
    size_t busy = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t piece = r[i].piece, b = r[i].begin / KIB16;
        assert_true(piece < SIM_N);
        assert_true(bitfield_has(&pe->bf, piece));
        assert_false(s->have[piece]);
        assert_true(s->wanted[piece]);
        assert_false(s->hashing[piece]);
        assert_int_equal(r[i].begin % KIB16, 0);
        assert_true(b < sim_nblocks(piece));
        assert_int_equal(r[i].length, sim_len(piece, b));
        assert_true(s->state[piece][b] != 2);
        assert_false(s->mask[piece][b] & (1u << pi)); /* never twice to one peer */
        if (s->state[piece][b] == 1) {
            busy++;
            assert_true(__builtin_popcount(s->mask[piece][b]) < PICKER_MAX_REQUESTERS);
        }
        if (!s->active[piece] && s->max_active)
            assert_true(picker_active_count(s->p) <= s->max_active);
        s->active[piece] = true;
        s->state[piece][b] = 1;
        s->mask[piece][b] |= (uint8_t)(1u << pi);
        pe->out[pe->nout++] = (struct sim_req){piece, b};
    }
    /* end-game is reported exactly when duplicates were handed out */
    assert_int_equal(eg, busy > 0);
    s->endgame_picks += eg;
}

static void sim_deliver(struct sim *s, int pi, uint32_t piece, uint32_t b)
{
    void *others[PICKER_MAX_REQUESTERS];
    size_t nothers = 99;
    bool done = true;
    enum picker_block_result want;
    if (!s->active[piece])
        want = PICKER_BLOCK_UNWANTED;
    else if (s->state[piece][b] == 2)
        want = PICKER_BLOCK_DUPLICATE;
    else
        want = PICKER_BLOCK_NEW;
    enum picker_block_result got =
        picker_block_received(s->p, piece, b * KIB16, sim_ptr(s, pi), &done, others, &nothers);
    assert_int_equal(got, want);
    if (got != PICKER_BLOCK_NEW) {
        assert_false(done);
        assert_int_equal(nothers, 0);
        s->dups += got == PICKER_BLOCK_DUPLICATE;
        return;
    }
    s->news++;
    uint8_t expect = (uint8_t)(s->mask[piece][b] & ~(1u << pi));
    uint8_t seen = 0;
    assert_true(nothers <= PICKER_MAX_REQUESTERS);
    for (size_t i = 0; i < nothers; i++) {
        int k = sim_index(s, others[i]);
        assert_false(seen & (1u << k));
        seen |= (uint8_t)(1u << k);
        /* Cancel it; a quarter of the time the data is already on its way. */
        sim_remove_req(s->peer[k].out, &s->peer[k].nout, piece, b);
        if (sim_rand(s, 4) == 0 && s->peer[k].nstale < 64)
            s->peer[k].stale[s->peer[k].nstale++] = (struct sim_req){piece, b};
    }
    assert_int_equal(seen, expect);
    s->state[piece][b] = 2;
    s->mask[piece][b] = 0;
    s->got[piece][b]++;
    bool all = true;
    for (uint32_t k = 0; k < sim_nblocks(piece); k++)
        all = all && s->state[piece][k] == 2;
    assert_int_equal(done, all);
    if (done) {
        for (uint32_t k = 0; k < sim_nblocks(piece); k++)
            assert_int_equal(s->got[piece][k], 1); /* each block exactly once per round */
        s->hashing[piece] = true;
        s->queue[s->nqueue++] = piece;
    }
}

static void sim_verdict(struct sim *s)
{
    int qi = (int)sim_rand(s, (uint32_t)s->nqueue);
    uint32_t piece = s->queue[qi];
    s->queue[qi] = s->queue[--s->nqueue];
    s->hashing[piece] = false;
    s->active[piece] = false;
    memset(s->state[piece], 0, sizeof(s->state[piece]));
    memset(s->got[piece], 0, sizeof(s->got[piece]));
    if (sim_rand(s, 7) == 0) {
        s->fails++;
        picker_piece_failed(s->p, piece);
    } else {
        s->have[piece] = true;
        picker_piece_passed(s->p, piece);
    }
}

static void sim_drop(struct sim *s, int pi)
{
    struct sim_peer *pe = &s->peer[pi];
    int i = (int)sim_rand(s, (uint32_t)pe->nout);
    struct sim_req q = pe->out[i];
    pe->out[i] = pe->out[--pe->nout];
    picker_block_dropped(s->p, q.piece, q.block * KIB16, sim_ptr(s, pi));
    s->mask[q.piece][q.block] &= (uint8_t) ~(1u << pi);
    if (s->mask[q.piece][q.block] == 0 && s->state[q.piece][q.block] == 1)
        s->state[q.piece][q.block] = 0;
    sim_settle(s, q.piece);
}

static void sim_leave(struct sim *s, int pi)
{
    struct sim_peer *pe = &s->peer[pi];
    picker_peer_gone(s->p, sim_ptr(s, pi));
    picker_dec_bitfield(s->p, &pe->bf);
    pe->connected = false;
    pe->nout = 0;
    pe->nstale = 0;
    for (uint32_t i = 0; i < SIM_N; i++) {
        for (uint32_t b = 0; b < sim_nblocks(i); b++) {
            s->mask[i][b] &= (uint8_t) ~(1u << pi);
            if (s->mask[i][b] == 0 && s->state[i][b] == 1)
                s->state[i][b] = 0;
        }
        sim_settle(s, i);
    }
}

static void sim_run(uint64_t seed, uint32_t max_active, uint32_t random_first)
{
    struct sim *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->rng = seed * 0x9e3779b97f4a7c15ULL + 1;
    s->max_active = max_active;
    s->p = mk(SIM_N, SIM_BLOCKS * KIB16, 40000, seed, random_first, max_active);
    for (uint32_t i = 0; i < SIM_N; i++)
        s->wanted[i] = true;
    /* A few unwanted pieces (file selection). */
    for (int k = 0; k < 3; k++) {
        uint32_t i = sim_rand(s, SIM_N);
        s->wanted[i] = false;
        picker_set_wanted(s->p, i, false);
    }
    for (int k = 0; k < SIM_PEERS; k++) {
        assert_int_equal(bitfield_init(&s->peer[k].bf, SIM_N), 0);
        if (k == SIM_PEERS - 1 && seed % 2 == 0)
            bitfield_set_all(&s->peer[k].bf); /* a seed now and then */
        for (uint32_t i = 0; i < SIM_N; i++)
            if (sim_rand(s, 3) == 0)
                bitfield_set(&s->peer[k].bf, i);
    }
    /* Everything wanted is somewhere. */
    for (uint32_t i = 0; i < SIM_N; i++)
        bitfield_set(&s->peer[sim_rand(s, SIM_PEERS)].bf, i);
    for (int k = 0; k < SIM_PEERS; k++) {
        s->peer[k].connected = true;
        picker_inc_bitfield(s->p, &s->peer[k].bf);
    }
    sim_check(s);

    long steps = 0;
    while (!(picker_is_complete(s->p) && s->nqueue == 0)) {
        assert_true(++steps < 400000);
        int pi = (int)sim_rand(s, SIM_PEERS);
        struct sim_peer *pe = &s->peer[pi];
        uint32_t what = sim_rand(s, 100);
        if (!pe->connected) {
            if (what < 10) {
                pe->connected = true;
                picker_inc_bitfield(s->p, &pe->bf);
            }
        } else if (what < 35) {
            sim_pick(s, pi);
        } else if (what < 70) {
            if (pe->nout > 0) {
                int i = (int)sim_rand(s, (uint32_t)pe->nout);
                struct sim_req q = pe->out[i];
                pe->out[i] = pe->out[--pe->nout];
                sim_deliver(s, pi, q.piece, q.block);
            }
        } else if (what < 75) {
            if (pe->nstale > 0) {
                struct sim_req q = pe->stale[--pe->nstale];
                sim_deliver(s, pi, q.piece, q.block);
            }
        } else if (what < 83) {
            if (pe->nout > 0)
                sim_drop(s, pi);
        } else if (what < 86) {
            sim_leave(s, pi);
        } else if (what < 89) {
            uint32_t i = sim_rand(s, SIM_N);
            if (!bitfield_has(&pe->bf, i)) {
                bitfield_set(&pe->bf, i);
                picker_inc(s->p, i);
            }
        } else {
            if (s->nqueue > 0)
                sim_verdict(s);
        }
        sim_check(s);
    }
    for (uint32_t i = 0; i < SIM_N; i++)
        assert_true(s->have[i] == s->wanted[i]);
    assert_int_equal(picker_outstanding(s->p), 0);
    if (seed == 1 && max_active == 0 && random_first == 0)
        print_message("      sim seed %llu: %ld steps, %ld picks (%ld end-game), %ld new, %ld "
                      "dup, %ld failed\n",
                      (unsigned long long)seed, steps, s->picks, s->endgame_picks, s->news, s->dups,
                      s->fails);
    for (int k = 0; k < SIM_PEERS; k++)
        bitfield_free(&s->peer[k].bf);
    picker_free(s->p);
    free(s);
}

static void randomized_simulation(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        sim_run(seed, 0, 0);
        sim_run(seed, 3, 0);
        sim_run(seed, 0, 1);
    }
}

/* ---- performance, printed only ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void perf_picks(uint32_t density_pct, const char *what)
{
    enum { N = 20000, PEERS = 50, PICKS = 100000 };
    struct picker *p = mk(N, 16 * KIB16, 16 * KIB16, 77, 0, 0);
    uint64_t rng = 12345;
    struct bitfield *bf = calloc(PEERS, sizeof(*bf));
    assert_non_null(bf);
    for (int k = 0; k < PEERS; k++) {
        assert_int_equal(bitfield_init(&bf[k], N), 0);
        for (uint32_t i = 0; i < N; i++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            if ((rng >> 33) % 100 < density_pct)
                bitfield_set(&bf[k], i);
        }
        picker_inc_bitfield(p, &bf[k]);
    }
    double t0 = now_s();
    size_t blocks = 0;
    for (int i = 0; i < PICKS; i++) {
        struct block_ref r[2];
        bool eg;
        int k = i % PEERS;
        size_t n = picker_pick(p, &bf[k], &bf[k], r, 2, &eg);
        for (size_t j = 0; j < n; j++) {
            bool done;
            picker_block_received(p, r[j].piece, r[j].begin, &bf[k], &done, NULL, NULL);
            if (done)
                picker_piece_passed(p, r[j].piece);
        }
        blocks += n;
    }
    double t = now_s() - t0;
    print_message("      perf (%s): %d picks on %d pieces: %.1f ms (%.2f us/pick), %zu blocks, "
                  "%u pieces had\n",
                  what, PICKS, N, t * 1e3, t * 1e6 / PICKS, blocks, picker_have_count(p));
    for (int k = 0; k < PEERS; k++)
        bitfield_free(&bf[k]);
    free(bf);
    picker_free(p);
}

/* The slow case: the peer holds only the commonest pieces, so every pick walks past all the
 * rarer candidates it lacks. */
static void perf_worst(void)
{
    enum { N = 20000, COMMON = 1000, PICKS = 5000 };
    struct picker *p = mk(N, 16 * KIB16, 16 * KIB16, 77, 0, 0);
    struct bitfield common, rare;
    assert_int_equal(bitfield_init(&common, N), 0);
    assert_int_equal(bitfield_init(&rare, N), 0);
    for (uint32_t i = 0; i < N; i++)
        bitfield_set(i < COMMON ? &common : &rare, i);
    for (int k = 0; k < 40; k++)
        picker_inc_bitfield(p, &common);
    picker_inc_bitfield(p, &rare);
    for (uint32_t i = 0; i < 4; i++)
        picker_set_have(p, COMMON + i); /* past random first */
    double t0 = now_s();
    size_t blocks = 0;
    for (int i = 0; i < PICKS; i++) {
        struct block_ref r[2];
        bool eg;
        size_t n = picker_pick(p, &common, &common, r, 2, &eg);
        for (size_t j = 0; j < n; j++) {
            bool done;
            picker_block_received(p, r[j].piece, r[j].begin, &common, &done, NULL, NULL);
            if (done)
                picker_piece_passed(p, r[j].piece);
        }
        blocks += n;
    }
    double t = now_s() - t0;
    assert_int_equal(blocks, 2 * PICKS);
    print_message("      perf (peer has only the %d commonest of %d pieces): %d picks: %.1f ms "
                  "(%.2f us/pick)\n",
                  COMMON, N, PICKS, t * 1e3, t * 1e6 / PICKS);
    bitfield_free(&rare);
    bitfield_free(&common);
    picker_free(p);
}

static void performance_check(void **state)
{
    (void)state;
    perf_picks(50, "peers 50% full");
    perf_picks(5, "peers 5% full");
    perf_worst();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_options_refused),
        cmocka_unit_test(block_requesters_counted),
        cmocka_unit_test(rarest_first_with_known_availability),
        cmocka_unit_test(rarest_first_follows_changes),
        cmocka_unit_test(uncounted_pieces_still_picked),
        cmocka_unit_test(ties_broken_at_random_among_the_rarest),
        cmocka_unit_test(random_first_pieces),
        cmocka_unit_test(partial_pieces_before_new_ones),
        cmocka_unit_test(spread_hands_out_rows),
        cmocka_unit_test(alone_pieces_are_not_shared),
        cmocka_unit_test(max_active_is_respected),
        cmocka_unit_test(start_limit_holds_back_new_pieces),
        cmocka_unit_test(extent_affinity_starts_neighbours),
        cmocka_unit_test(last_piece_has_a_short_last_block),
        cmocka_unit_test(blocks_never_handed_out_twice_before_endgame),
        cmocka_unit_test(endgame_duplicates_and_cancels),
        cmocka_unit_test(dropped_and_gone_release_blocks),
        cmocka_unit_test(failed_piece_is_picked_again),
        cmocka_unit_test(have_and_wanted_exclude_pieces),
        cmocka_unit_test(interesting_peers),
        cmocka_unit_test(complete_ignores_unwanted_pieces),
        cmocka_unit_test(availability_counts),
        cmocka_unit_test(seeds_only_pieces_are_rarest),
        cmocka_unit_test(randomized_simulation),
        cmocka_unit_test(performance_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
