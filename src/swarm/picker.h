/* Which blocks to ask which peer for. Tracks how many peers have each piece, which pieces we
 * have, and for pieces in progress which 16 KiB blocks are requested (and from whom) and which
 * arrived. Policy (libtorrent's and BEP 3's): partly downloaded pieces first, then the first few
 * pieces at random, then rarest first with random tie-breaks; end-game once every missing block
 * is requested, where blocks are requested from several peers and duplicates cancelled.
 * The number of pieces in progress is bounded (max_active), which bounds memory.
 * Peers are opaque pointers: the picker never dereferences them. */
#ifndef RV_SWARM_PICKER_H
#define RV_SWARM_PICKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/bitfield.h"

#define PICKER_MAX_REQUESTERS 4 /* peers that may hold a request for one block (end-game) */

struct picker_opts {
    uint32_t piece_count;
    uint32_t piece_length;
    uint32_t last_piece_length;
    uint32_t block_size;   /* 0: 16384 */
    uint32_t random_first; /* pieces picked at random before rarest-first; 0: 4 */
    uint32_t max_active;   /* pieces in progress at once; 0: unbounded */
    uint64_t seed;         /* random tie-breaks; 0: from the clock */
};

struct block_ref {
    uint32_t piece;
    uint32_t begin;
    uint32_t length;
};

struct picker;

int picker_new(const struct picker_opts *opts, struct picker **out);
void picker_free(struct picker *p);

/* Availability: a peer announced it has a piece, sent its bitfield, or left. */
void picker_inc(struct picker *p, uint32_t piece);
void picker_dec(struct picker *p, uint32_t piece);
void picker_inc_bitfield(struct picker *p, const struct bitfield *bf);
void picker_dec_bitfield(struct picker *p, const struct bitfield *bf);
uint32_t picker_availability(const struct picker *p, uint32_t piece);

/* Our side. A piece we have is never picked. picker_set_wanted(false) excludes a piece
 * (file selection). */
void picker_set_have(struct picker *p, uint32_t piece);
bool picker_have(const struct picker *p, uint32_t piece);
/* Whether piece is in progress: started and not yet passed, failed, or given back (its last
 * request dropped before any block of it came). */
bool picker_started(const struct picker *p, uint32_t piece);
uint32_t picker_have_count(const struct picker *p);
void picker_set_wanted(struct picker *p, uint32_t piece, bool wanted);
/* True when every wanted piece is had. */
bool picker_is_complete(const struct picker *p);
/* True if the peer has a wanted piece we lack (we should be interested). */
bool picker_is_interesting(const struct picker *p, const struct bitfield *peer_has);

/* Chooses up to max blocks for peer, which has the pieces in peer_has, and records them as
 * requested by peer. Returns how many were written to out. Sets *endgame when it returned
 * blocks other peers also hold requests for. */
size_t picker_pick(struct picker *p, const struct bitfield *peer_has, void *peer,
                   struct block_ref *out, size_t max, bool *endgame);

enum picker_block_result {
    PICKER_BLOCK_NEW,       /* wanted, first copy: keep it */
    PICKER_BLOCK_DUPLICATE, /* already received (end-game): drop it */
    PICKER_BLOCK_UNWANTED   /* not in progress at all (never requested, or piece had) */
};

/* picker_pick for a peer on parole (it shared in a piece that failed its hash): blocks of a
 * piece of its own only, so that the next piece it sends is checked alone. The pieces it
 * started first (oldest first); when none has a block left, one new piece, which no other
 * peer gets blocks of (picker_pick, end-game included) until it is passed, failed, or the
 * owner drops a request of it or goes. No end-game. */
size_t picker_pick_alone(struct picker *p, const struct bitfield *peer_has, void *peer,
                         struct block_ref *out, size_t max);
/* Until called again, picker_pick starts no piece while n or more are in progress (0: no such
 * limit; max_active still holds). For an owner whose memory for pieces shrinks and grows: a
 * piece the picker started and the owner could not hold would be given back at once, and the
 * next pick would start it again. Like max_active, it also holds back end-game. */
void picker_set_start_limit(struct picker *p, uint32_t n);
/* n > 1: picker_pick keeps n pieces in progress where it can and hands out a block of each in
 * turn, so that they arrive side by side (their hashes can then go side by side too); once
 * random_first pieces are had. 0 or 1: partial pieces are finished oldest first. */
void picker_set_spread(struct picker *p, uint32_t n);

/* A block arrived from peer. *piece_done is set when it completed its piece (every block
 * received): the caller then verifies the piece and calls picker_piece_passed or _failed.
 * others[0..*nothers) are the other peers that still hold a request for this block (send them
 * a cancel). */
enum picker_block_result picker_block_received(struct picker *p, uint32_t piece, uint32_t begin,
                                               void *peer, bool *piece_done, void **others,
                                               size_t *nothers);
/* How many peers hold a request for this block, when peer is one of them and it has not
 * arrived yet; else 0. (1: peer's alone, which is what receiving a block in place needs.) */
uint32_t picker_block_requesters(const struct picker *p, uint32_t piece, uint32_t begin,
                                 const void *peer);
/* A request is gone without data (choked, rejected, cancelled, timed out). */
void picker_block_dropped(struct picker *p, uint32_t piece, uint32_t begin, void *peer);
/* Forgets every request peer holds. */
void picker_peer_gone(struct picker *p, void *peer);
/* Verdict on a completed piece: passed marks it had; failed makes all its blocks missing
 * again. */
void picker_piece_passed(struct picker *p, uint32_t piece);
void picker_piece_failed(struct picker *p, uint32_t piece);
/* Pieces in progress (some block requested or received, not yet verified). */
uint32_t picker_active_count(const struct picker *p);
/* Blocks requested and not yet received, over all pieces (for stats). */
uint32_t picker_outstanding(const struct picker *p);

#endif
