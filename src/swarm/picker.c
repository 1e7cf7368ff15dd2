/* Block picker: availability, rarest-first order, pieces in progress and end-game.
 *
 * Rarest first without scanning every piece per pick (libtorrent's piece_picker is the model):
 * the pieces we could start (wanted, not had, not in progress) sit in one array, order[],
 * sorted by availability, with start[k] the index where the bucket of availability k begins.
 * Within a bucket the order is random: the array starts as a seeded shuffle and a piece that
 * changes bucket is swapped with a random member of its new bucket. Costs:
 *   - picker_inc/_dec: O(1) (two swaps and a boundary move).
 *   - picker_inc_bitfield/_dec_bitfield: O(set bits); a seed's full bitfield is O(1), counted
 *     in seeds, which raises every piece alike and so leaves the order unchanged.
 *   - a piece entering or leaving order[] (it starts, is had, unwanted, fails): O(buckets),
 *     buckets being about the highest availability.
 *   - picker_pick: O(active) to fill from pieces in progress, which is most picks. Only when
 *     that leaves room: O(pieces/64) word operations to count the candidates the peer has,
 *     then a walk of order[] from the rarest bucket that stops when max blocks are found or
 *     every candidate the peer has was seen: short for a peer that has rare pieces, O(pieces)
 *     in the worst case (a peer holding only the commonest pieces), libtorrent's bound too.
 *     End-game picks scan the blocks of the pieces in progress the peer has.
 *   - picker_is_interesting: O(pieces/64) word ANDs against the set of pieces we still need.
 *   - picker_peer_gone: O(active pieces x blocks per piece), never O(pieces).
 * Pieces in progress get a slot holding per-block state and requesters; slots are pooled, so a
 * slot is allocated only when more pieces are in progress than ever before, never per request.
 *
 * Decisions the header leaves open:
 *   - A block that arrives for a piece in progress, at a block boundary, not yet received, from
 *     a peer that holds no request for it is accepted as PICKER_BLOCK_NEW: the data is as good
 *     as any (a request we dropped and the peer served anyway, or a cancel that crossed the
 *     data); the connection layer is the one that refuses unrequested blocks if it wants to.
 *   - A piece in progress whose last request is dropped with no block received leaves the
 *     in-progress set and goes back to the rarest-first order; so does a failed piece. This
 *     keeps max_active from being filled by pieces no one is downloading.
 *   - picker_set_wanted(false) and picker_set_have on a piece in progress forget it at once;
 *     blocks still arriving for it are UNWANTED.
 *   - Outside end-game a peer is given only unrequested blocks; if max_active stops it from
 *     starting a piece it has, it gets nothing rather than end-game duplicates. End-game is
 *     decided per peer, as asked: once this peer can serve no unrequested block, its free
 *     pipeline slots are filled with blocks others hold, fewest holders first.
 *   - picker_outstanding counts blocks, not requests: an end-game block held by three peers
 *     counts once.
 *   - others[] in picker_block_received must hold PICKER_MAX_REQUESTERS pointers (a block
 *     from a peer that held no request can have that many other holders). */
#include "swarm/picker.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rivulet/error.h"

#define NONE UINT32_MAX
#define DEFAULT_BLOCK_SIZE 16384u
#define DEFAULT_RANDOM_FIRST 4u
/* A piece of 2 GiB in 2 KiB blocks; anything beyond is not a torrent we can hold in memory. */
#define MAX_BLOCKS_PER_PIECE (1u << 20)
#define FIRST_BUCKETS 64u
/* Piece extent affinity (libtorrent's piece_extent_affinity): the piece after the one started
 * last is started next when it is as rare as the rarest-first choice and in the same extent
 * of this many bytes, and an extent is begun at its first piece. Neighbours then complete
 * close together and go to disk in one write; which extent comes next is rarest first with
 * random ties, as before. */
#ifndef EXTENT_BYTES
#define EXTENT_BYTES (4u << 20)
#endif
/* Availability above this shares the top bucket; more peers than this on one torrent is not a
 * case where the order among the commonest pieces matters. */
#define MAX_BUCKETS 65536u

enum block_state { BLOCK_NONE, BLOCK_REQUESTED, BLOCK_RECEIVED };

/* One piece in progress. */
struct active {
    uint32_t piece;
    uint32_t nblocks;
    uint32_t nnone;      /* blocks neither requested nor received */
    uint32_t nrequested; /* blocks requested and not received */
    uint32_t nreceived;
    uint32_t first_none; /* no BLOCK_NONE below this block index */
    void *owner;         /* the peer on parole it was started for (picker_pick_alone), or NULL */
    uint32_t prev, next; /* the in-progress list (slot indices), oldest first; next: free list */
    uint8_t *state;      /* enum block_state per block */
    uint8_t *nreq;       /* requesters per block */
    void **req;          /* PICKER_MAX_REQUESTERS per block */
};

struct picker {
    uint32_t n;
    uint32_t piece_length;
    uint32_t last_length;
    uint32_t block_size;
    uint32_t blocks_per_piece;
    uint32_t random_first;
    uint32_t max_active;
    uint32_t start_limit; /* picker_set_start_limit; 0: none */
    uint32_t spread;      /* picker_set_spread; 0: none */
    uint32_t extent;      /* pieces per EXTENT_BYTES extent (1: no affinity) */
    uint32_t last_started; /* the piece started last, NONE before the first */
    uint64_t rng;

    uint32_t *avail; /* per piece, not counting seeds */
    uint32_t seeds;  /* peers counted by a full bitfield: add to every piece */

    uint32_t *order; /* candidates, sorted by min(avail, nbuckets - 1) */
    uint32_t *pos;   /* piece -> index in order, NONE when not a candidate */
    uint32_t order_len;
    uint32_t *start; /* start[k]: first index of bucket k in order */
    uint32_t nbuckets;
    uint32_t max_buckets;

    /* Piece sets in wire layout (high bit of byte 0 is piece 0) so they AND directly with a
     * peer's bitfield; padded to a multiple of 8 bytes, spare bits zero. */
    size_t nbytes;
    uint8_t *have;
    uint8_t *wanted;
    uint8_t *need; /* wanted and not had */
    uint8_t *cand; /* need and not in progress: exactly the pieces in order[] */
    uint32_t have_count;
    uint32_t need_count;

    uint32_t *slot_of; /* piece -> slot, NONE when not in progress */
    struct active *slots;
    uint32_t nslots;
    uint32_t slots_cap;
    uint32_t free_slot;
    uint32_t active_head, active_tail;
    uint32_t active_count;
    uint32_t outstanding;
};

/* ---- small helpers ---- */

static uint64_t rng_next(struct picker *p)
{
    /* splitmix64: tiny, seedable, and plenty for tie-breaks. */
    uint64_t z = (p->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform enough in [0, n) for n >= 1 (Lemire's multiply-shift, bias < n / 2^32). */
static uint32_t rng_below(struct picker *p, uint32_t n)
{
    return (uint32_t)(((rng_next(p) >> 32) * (uint64_t)n) >> 32);
}

static bool bit_get(const uint8_t *bits, uint32_t i)
{
    return (bits[i / 8] >> (7 - i % 8)) & 1;
}

static void bit_set(uint8_t *bits, uint32_t i)
{
    bits[i / 8] |= (uint8_t)(0x80u >> (i % 8));
}

static void bit_clear(uint8_t *bits, uint32_t i)
{
    bits[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
}

static bool peer_holds(const struct bitfield *bf, uint32_t i)
{
    return i < bf->count && bf->bits != NULL && bit_get(bf->bits, i);
}

static uint64_t load64(const uint8_t *q)
{
    uint64_t v;
    memcpy(&v, q, sizeof(v));
    return v;
}

/* Bytes of ours and the peer's bitfield that are both valid. */
static size_t common_bytes(const struct picker *p, const struct bitfield *bf)
{
    if (bf == NULL || bf->bits == NULL)
        return 0;
    size_t theirs = bitfield_bytes(bf->count);
    return theirs < p->nbytes ? theirs : p->nbytes;
}

/* Pieces set in both ours and the peer's bitfield. Order of bytes within a word does not
 * matter for a count. */
static uint32_t count_and(const uint8_t *ours, const struct bitfield *bf, size_t n)
{
    uint32_t c = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        c += (uint32_t)__builtin_popcountll(load64(ours + i) & load64(bf->bits + i));
    for (; i < n; i++)
        c += (uint32_t)__builtin_popcount((unsigned)(ours[i] & bf->bits[i]));
    return c;
}

static bool any_and(const uint8_t *ours, const struct bitfield *bf, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        if (load64(ours + i) & load64(bf->bits + i))
            return true;
    for (; i < n; i++)
        if (ours[i] & bf->bits[i])
            return true;
    return false;
}

/* The index of the r-th (from 0) piece set in both, or NONE. */
static uint32_t nth_and(const uint8_t *ours, const struct bitfield *bf, size_t n, uint32_t r)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint32_t c = (uint32_t)__builtin_popcountll(load64(ours + i) & load64(bf->bits + i));
        if (r < c)
            break;
        r -= c;
    }
    for (; i < n; i++) {
        unsigned byte = (unsigned)(ours[i] & bf->bits[i]);
        uint32_t c = (uint32_t)__builtin_popcount(byte);
        if (r >= c) {
            r -= c;
            continue;
        }
        for (unsigned bit = 0; bit < 8; bit++) {
            if (!(byte & (0x80u >> bit)))
                continue;
            if (r == 0)
                return (uint32_t)(i * 8 + bit);
            r--;
        }
    }
    return NONE;
}

static uint32_t piece_size(const struct picker *p, uint32_t piece)
{
    return piece == p->n - 1 ? p->last_length : p->piece_length;
}

static uint32_t piece_blocks(const struct picker *p, uint32_t piece)
{
    uint32_t size = piece_size(p, piece);
    return size / p->block_size + (size % p->block_size != 0);
}

/* ---- the rarest-first order ---- */

static uint32_t key_of(const struct picker *p, uint32_t piece)
{
    uint32_t a = p->avail[piece];
    return a < p->nbuckets ? a : p->nbuckets - 1;
}

static uint32_t bucket_end(const struct picker *p, uint32_t k)
{
    return k + 1 < p->nbuckets ? p->start[k + 1] : p->order_len;
}

static void order_swap(struct picker *p, uint32_t i, uint32_t j)
{
    uint32_t a = p->order[i], b = p->order[j];
    p->order[i] = b;
    p->order[j] = a;
    p->pos[b] = i;
    p->pos[a] = j;
}

/* Swaps the piece at index i with a random member of bucket k, so that ties stay shuffled. */
static void order_mix(struct picker *p, uint32_t i, uint32_t k)
{
    uint32_t lo = p->start[k], hi = bucket_end(p, k);
    if (hi - lo > 1)
        order_swap(p, i, lo + rng_below(p, hi - lo));
}

/* The piece moves from bucket k to k + 1: it becomes the first of k + 1. */
static void order_up(struct picker *p, uint32_t piece, uint32_t k)
{
    uint32_t last = p->start[k + 1] - 1;
    order_swap(p, p->pos[piece], last);
    p->start[k + 1]--;
}

/* The piece moves from bucket k to k - 1: it becomes the last of k - 1. */
static void order_down(struct picker *p, uint32_t piece, uint32_t k)
{
    order_swap(p, p->pos[piece], p->start[k]);
    p->start[k]++;
}

static void order_insert(struct picker *p, uint32_t piece)
{
    uint32_t k = key_of(p, piece);
    uint32_t i = p->order_len++;
    p->order[i] = piece;
    p->pos[piece] = i;
    /* It joined the top bucket; walk it down. */
    for (uint32_t b = p->nbuckets - 1; b > k; b--)
        order_down(p, piece, b);
    order_mix(p, p->pos[piece], k);
    bit_set(p->cand, piece);
}

static void order_remove(struct picker *p, uint32_t piece)
{
    if (p->pos[piece] == NONE)
        return;
    /* Walk it up to the top bucket, where it is last and can be popped. */
    for (uint32_t b = key_of(p, piece); b + 1 < p->nbuckets; b++)
        order_up(p, piece, b);
    order_swap(p, p->pos[piece], p->order_len - 1);
    p->order_len--;
    p->pos[piece] = NONE;
    bit_clear(p->cand, piece);
}

/* Adds buckets before any availability outgrows the top one. On failure or at MAX_BUCKETS the
 * top bucket simply holds every higher availability from then on (and never splits later,
 * which would leave pieces in the wrong bucket). */
static void grow_buckets(struct picker *p)
{
    if (p->nbuckets >= p->max_buckets)
        return;
    uint32_t nb = p->nbuckets * 2;
    if (nb > p->max_buckets)
        nb = p->max_buckets;
    uint32_t *s = realloc(p->start, (size_t)nb * sizeof(*s));
    if (s == NULL) {
        p->max_buckets = p->nbuckets;
        return;
    }
    for (uint32_t k = p->nbuckets; k < nb; k++)
        s[k] = p->order_len;
    p->start = s;
    p->nbuckets = nb;
}

/* ---- pieces in progress ---- */

static size_t slot_bytes(const struct picker *p)
{
    size_t b = p->blocks_per_piece;
    return b * (2 + PICKER_MAX_REQUESTERS * sizeof(void *));
}

static void list_unlink(struct picker *p, uint32_t s)
{
    struct active *a = &p->slots[s];
    if (a->prev != NONE)
        p->slots[a->prev].next = a->next;
    else
        p->active_head = a->next;
    if (a->next != NONE)
        p->slots[a->next].prev = a->prev;
    else
        p->active_tail = a->prev;
}

/* A slot from the pool, growing it only when every slot is in use. */
static int slot_get(struct picker *p, uint32_t *out)
{
    if (p->free_slot != NONE) {
        *out = p->free_slot;
        p->free_slot = p->slots[*out].next;
        return 0;
    }
    if (p->nslots == p->slots_cap) {
        if (p->slots_cap > UINT32_MAX / 2)
            return RV_ENOMEM;
        uint32_t cap = p->slots_cap ? p->slots_cap * 2 : 16;
        if (p->max_active != 0 && cap > p->max_active)
            cap = p->max_active;
        if (cap <= p->nslots)
            return RV_ENOMEM;
        struct active *s = realloc(p->slots, (size_t)cap * sizeof(*s));
        if (s == NULL)
            return RV_ENOMEM;
        p->slots = s;
        p->slots_cap = cap;
    }
    uint8_t *mem = malloc(slot_bytes(p));
    if (mem == NULL)
        return RV_ENOMEM;
    /* The pointers first, where malloc's alignment holds, then the byte arrays. */
    struct active *a = &p->slots[p->nslots];
    size_t b = p->blocks_per_piece;
    a->req = (void **)(void *)mem;
    a->state = mem + b * PICKER_MAX_REQUESTERS * sizeof(void *);
    a->nreq = a->state + b;
    *out = p->nslots++;
    return 0;
}

static int activate(struct picker *p, uint32_t piece, uint32_t *slot)
{
    uint32_t s;
    int rc = slot_get(p, &s);
    if (rc < 0)
        return rc;
    struct active *a = &p->slots[s];
    a->piece = piece;
    a->nblocks = piece_blocks(p, piece);
    a->nnone = a->nblocks;
    a->nrequested = 0;
    a->nreceived = 0;
    a->first_none = 0;
    a->owner = NULL;
    memset(a->state, BLOCK_NONE, a->nblocks);
    memset(a->nreq, 0, a->nblocks);
    a->next = NONE;
    a->prev = p->active_tail;
    if (p->active_tail != NONE)
        p->slots[p->active_tail].next = s;
    else
        p->active_head = s;
    p->active_tail = s;
    p->active_count++;
    p->slot_of[piece] = s;
    p->last_started = piece;
    order_remove(p, piece);
    *slot = s;
    return 0;
}

/* The piece leaves the in-progress set; if still needed it is a candidate again. */
static void deactivate(struct picker *p, uint32_t s)
{
    struct active *a = &p->slots[s];
    uint32_t piece = a->piece;
    p->outstanding -= a->nrequested;
    list_unlink(p, s);
    p->slot_of[piece] = NONE;
    a->next = p->free_slot;
    p->free_slot = s;
    p->active_count--;
    if (bit_get(p->need, piece))
        order_insert(p, piece);
}

static void **requesters(const struct active *a, uint32_t b)
{
    return a->req + (size_t)b * PICKER_MAX_REQUESTERS;
}

static bool requested_by(const struct active *a, uint32_t b, const void *peer)
{
    void **r = requesters(a, b);
    for (uint32_t i = 0; i < a->nreq[b]; i++)
        if (r[i] == peer)
            return true;
    return false;
}

/* Removes peer's request for block b; true if it held one. */
static bool unrequest(struct picker *p, struct active *a, uint32_t b, const void *peer)
{
    void **r = requesters(a, b);
    uint32_t n = a->nreq[b];
    for (uint32_t i = 0; i < n; i++) {
        if (r[i] != peer)
            continue;
        r[i] = r[n - 1];
        a->nreq[b] = (uint8_t)(n - 1);
        if (n == 1) {
            a->state[b] = BLOCK_NONE;
            a->nrequested--;
            a->nnone++;
            p->outstanding--;
            if (b < a->first_none)
                a->first_none = b;
        }
        return true;
    }
    return false;
}

static void fill_ref(const struct picker *p, uint32_t piece, uint32_t b, struct block_ref *out)
{
    uint32_t begin = b * p->block_size;
    uint32_t left = piece_size(p, piece) - begin;
    out->piece = piece;
    out->begin = begin;
    out->length = left < p->block_size ? left : p->block_size;
}

/* Hands the unrequested blocks of slot s to peer, lowest first, up to max in total. */
static size_t take_free_blocks(struct picker *p, uint32_t s, void *peer, struct block_ref *out,
                               size_t count, size_t max)
{
    struct active *a = &p->slots[s];
    uint32_t b = a->first_none;
    for (; b < a->nblocks && a->nnone > 0 && count < max; b++) {
        if (a->state[b] != BLOCK_NONE)
            continue;
        a->state[b] = BLOCK_REQUESTED;
        a->nreq[b] = 1;
        requesters(a, b)[0] = peer;
        a->nnone--;
        a->nrequested++;
        p->outstanding++;
        fill_ref(p, a->piece, b, &out[count++]);
    }
    /* Every block below b was taken or was not free. */
    a->first_none = a->nnone > 0 ? b : a->nblocks;
    return count;
}

/* ---- construction ---- */

static void *alloc_array(size_t n, size_t size)
{
    return calloc(n ? n : 1, size);
}

int picker_new(const struct picker_opts *opts, struct picker **out)
{
    *out = NULL;
    if (opts == NULL || opts->piece_count == 0 || opts->piece_count == NONE ||
        opts->piece_length == 0 || opts->last_piece_length == 0 ||
        opts->last_piece_length > opts->piece_length)
        return RV_EINVAL;
    uint32_t bs = opts->block_size ? opts->block_size : DEFAULT_BLOCK_SIZE;
    uint32_t bpp = opts->piece_length / bs + (opts->piece_length % bs != 0);
    if (bpp > MAX_BLOCKS_PER_PIECE)
        return RV_ETOOBIG;

    struct picker *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return RV_ENOMEM;
    uint32_t n = opts->piece_count;
    p->n = n;
    p->piece_length = opts->piece_length;
    p->last_length = opts->last_piece_length;
    p->block_size = bs;
    p->blocks_per_piece = bpp;
    p->random_first = opts->random_first ? opts->random_first : DEFAULT_RANDOM_FIRST;
    p->max_active = opts->max_active;
    p->rng = opts->seed;
    if (p->rng == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        p->rng = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)p;
    }
    p->free_slot = p->active_head = p->active_tail = p->last_started = NONE;
    p->extent = p->piece_length >= EXTENT_BYTES ? 1 : EXTENT_BYTES / p->piece_length;
    p->nbuckets = FIRST_BUCKETS;
    p->max_buckets = MAX_BUCKETS;
    /* Round up to whole 64-bit words for the word loops; the spare bits stay zero. */
    p->nbytes = bitfield_bytes(n);
    size_t padded = (p->nbytes + 7) & ~(size_t)7;

    p->avail = alloc_array(n, sizeof(uint32_t));
    p->order = alloc_array(n, sizeof(uint32_t));
    p->pos = alloc_array(n, sizeof(uint32_t));
    p->slot_of = alloc_array(n, sizeof(uint32_t));
    p->start = alloc_array(p->nbuckets, sizeof(uint32_t));
    p->have = alloc_array(padded, 1);
    p->wanted = alloc_array(padded, 1);
    p->need = alloc_array(padded, 1);
    p->cand = alloc_array(padded, 1);
    if (!p->avail || !p->order || !p->pos || !p->slot_of || !p->start || !p->have || !p->wanted ||
        !p->need || !p->cand)
        goto fail;

    /* Everything wanted, nothing had, nobody seen: one bucket (availability 0) holding a
     * seeded shuffle of all pieces. */
    for (uint32_t i = 0; i < n; i++) {
        p->order[i] = i;
        p->slot_of[i] = NONE;
    }
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = rng_below(p, i + 1);
        uint32_t t = p->order[i];
        p->order[i] = p->order[j];
        p->order[j] = t;
    }
    for (uint32_t i = 0; i < n; i++)
        p->pos[p->order[i]] = i;
    p->order_len = n;
    p->start[0] = 0;
    for (uint32_t k = 1; k < p->nbuckets; k++)
        p->start[k] = n;
    for (uint32_t i = 0; i < n; i++) {
        bit_set(p->wanted, i);
        bit_set(p->need, i);
        bit_set(p->cand, i);
    }
    p->need_count = n;
    *out = p;
    return 0;

fail:
    picker_free(p);
    return RV_ENOMEM;
}

void picker_free(struct picker *p)
{
    if (p == NULL)
        return;
    for (uint32_t s = 0; s < p->nslots; s++)
        free(p->slots[s].req); /* the start of the slot's one allocation */
    free(p->slots);
    free(p->cand);
    free(p->need);
    free(p->wanted);
    free(p->have);
    free(p->start);
    free(p->slot_of);
    free(p->pos);
    free(p->order);
    free(p->avail);
    free(p);
}

/* ---- availability ---- */

void picker_inc(struct picker *p, uint32_t piece)
{
    if (piece >= p->n || p->avail[piece] == UINT32_MAX)
        return;
    if (p->avail[piece] + 1 >= p->nbuckets)
        grow_buckets(p);
    uint32_t k = key_of(p, piece);
    p->avail[piece]++;
    if (p->pos[piece] != NONE && key_of(p, piece) != k) {
        order_up(p, piece, k);
        order_mix(p, p->pos[piece], k + 1);
    }
}

/* A decrement without a matching increment is ignored: a count never wraps. */
void picker_dec(struct picker *p, uint32_t piece)
{
    if (piece >= p->n || p->avail[piece] == 0)
        return;
    uint32_t k = key_of(p, piece);
    p->avail[piece]--;
    if (p->pos[piece] != NONE && key_of(p, piece) != k) {
        order_down(p, piece, k);
        order_mix(p, p->pos[piece], k - 1);
    }
}

static bool is_seed_bitfield(const struct picker *p, const struct bitfield *bf)
{
    return bf->count == p->n && bf->set == bf->count;
}

static void each_set_bit(struct picker *p, const struct bitfield *bf,
                         void (*fn)(struct picker *, uint32_t))
{
    size_t n = common_bytes(p, bf);
    for (size_t i = 0; i < n; i++) {
        unsigned byte = bf->bits[i];
        while (byte) {
            unsigned bit = (unsigned)__builtin_clz(byte) - (unsigned)(8 * (sizeof(unsigned) - 1));
            byte &= ~(0x80u >> bit);
            fn(p, (uint32_t)(i * 8 + bit)); /* >= n is ignored by fn */
        }
    }
}

void picker_inc_bitfield(struct picker *p, const struct bitfield *bf)
{
    if (bf == NULL)
        return;
    if (is_seed_bitfield(p, bf)) {
        if (p->seeds < UINT32_MAX)
            p->seeds++;
        return;
    }
    each_set_bit(p, bf, picker_inc);
}

/* A seed's full bitfield takes one from seeds when there is one. When there is not (the peer
 * became a seed through HAVEs) the pieces are decremented one by one. Either way every piece
 * loses exactly one, so the totals stay right. */
void picker_dec_bitfield(struct picker *p, const struct bitfield *bf)
{
    if (bf == NULL)
        return;
    if (is_seed_bitfield(p, bf) && p->seeds > 0) {
        p->seeds--;
        return;
    }
    each_set_bit(p, bf, picker_dec);
}

uint32_t picker_availability(const struct picker *p, uint32_t piece)
{
    if (piece >= p->n)
        return 0;
    uint64_t a = (uint64_t)p->avail[piece] + p->seeds;
    return a > UINT32_MAX ? UINT32_MAX : (uint32_t)a;
}

/* ---- our side ---- */

void picker_set_have(struct picker *p, uint32_t piece)
{
    if (piece >= p->n || bit_get(p->have, piece))
        return;
    bit_set(p->have, piece);
    p->have_count++;
    if (bit_get(p->need, piece)) {
        bit_clear(p->need, piece);
        p->need_count--;
    }
    /* need is clear now, so neither path puts it back among the candidates. */
    if (p->slot_of[piece] != NONE)
        deactivate(p, p->slot_of[piece]);
    else
        order_remove(p, piece);
}

bool picker_have(const struct picker *p, uint32_t piece)
{
    return piece < p->n && bit_get(p->have, piece);
}

bool picker_started(const struct picker *p, uint32_t piece)
{
    return piece < p->n && p->slot_of[piece] != NONE;
}

uint32_t picker_have_count(const struct picker *p)
{
    return p->have_count;
}

void picker_set_wanted(struct picker *p, uint32_t piece, bool wanted)
{
    if (piece >= p->n || bit_get(p->wanted, piece) == wanted)
        return;
    if (wanted) {
        bit_set(p->wanted, piece);
        if (!bit_get(p->have, piece)) {
            bit_set(p->need, piece);
            p->need_count++;
            /* An unwanted piece is never in progress (see below), so it is a candidate. */
            order_insert(p, piece);
        }
        return;
    }
    bit_clear(p->wanted, piece);
    if (bit_get(p->need, piece)) {
        bit_clear(p->need, piece);
        p->need_count--;
    }
    if (p->slot_of[piece] != NONE)
        deactivate(p, p->slot_of[piece]);
    else
        order_remove(p, piece);
}

void picker_set_spread(struct picker *p, uint32_t n)
{
    p->spread = n;
}

void picker_set_start_limit(struct picker *p, uint32_t n)
{
    p->start_limit = n;
}

bool picker_is_complete(const struct picker *p)
{
    return p->need_count == 0;
}

bool picker_is_interesting(const struct picker *p, const struct bitfield *peer_has)
{
    return p->need_count > 0 && any_and(p->need, peer_has, common_bytes(p, peer_has));
}

/* ---- picking ---- */

/* Walks order[] from the rarest bucket that can hold a piece some peer has: availability 1
 * up, then bucket 0 (which only a seed, counted apart, or an uncounted peer can serve). With
 * seeds, bucket 0 holds pieces only seeds have: the rarest, so the walk starts there. */
struct walk {
    uint32_t i;
    bool wrapped;
};

static uint32_t walk_next(struct picker *p, struct walk *w, const struct bitfield *peer)
{
    for (;;) {
        uint32_t end = w->wrapped ? bucket_end(p, 0) : p->order_len;
        if (w->i >= end) {
            if (w->wrapped || p->seeds > 0)
                return NONE;
            w->wrapped = true;
            w->i = 0;
            continue;
        }
        uint32_t piece = p->order[w->i];
        if (peer_holds(peer, piece))
            return piece; /* not advanced: if it starts, an unvisited piece takes index i */
        w->i++;
    }
}

/* Whether piece can be started for the peer instead of rarest (its rarest-first choice): a
 * candidate it has, in the same bucket (none of the peer's is in a rarer one, and bucket 0,
 * pieces no peer announced, is left out unless seeds are counted). */
static bool as_good(const struct picker *p, const struct bitfield *peer_has, uint32_t piece,
                    uint32_t rarest)
{
    return p->pos[piece] != NONE && peer_holds(peer_has, piece) &&
           key_of(p, piece) == key_of(p, rarest);
}

/* Piece extent affinity: the piece after the one started last while in the same extent; else
 * the first piece of rarest's extent, so that an extent is fetched from its start; each only
 * when as good as rarest. Else rarest. */
static uint32_t extent_next(const struct picker *p, const struct bitfield *peer_has,
                            uint32_t rarest)
{
    uint32_t last = p->last_started;
    if (rarest == NONE || p->extent == 1)
        return rarest;
    if (last != NONE && last + 1 < p->n && (last + 1) / p->extent == last / p->extent &&
        as_good(p, peer_has, last + 1, rarest))
        return last + 1;
    uint32_t first = rarest - rarest % p->extent;
    return as_good(p, peer_has, first, rarest) ? first : rarest;
}

/* End-game: blocks others requested, fewest requesters first, never one peer holds. */
static size_t take_busy_blocks(struct picker *p, const struct bitfield *peer_has, void *peer,
                               struct block_ref *out, size_t count, size_t max)
{
    for (uint32_t level = 1; level < PICKER_MAX_REQUESTERS && count < max; level++) {
        for (uint32_t s = p->active_head; s != NONE && count < max; s = p->slots[s].next) {
            struct active *a = &p->slots[s];
            if (a->nrequested == 0 || !peer_holds(peer_has, a->piece) || a->owner != NULL)
                continue;
            for (uint32_t b = 0; b < a->nblocks && count < max; b++) {
                if (a->state[b] != BLOCK_REQUESTED || a->nreq[b] != level ||
                    requested_by(a, b, peer))
                    continue;
                requesters(a, b)[level] = peer;
                a->nreq[b] = (uint8_t)(level + 1);
                fill_ref(p, a->piece, b, &out[count++]);
            }
        }
    }
    return count;
}

/* Starts pieces the peer has, taking up to per blocks of each, until count reaches max, no
 * candidate is left, or the pieces in progress reach upto (0: no bound of its own) or a bound
 * of the picker's (then *blocked). */
static size_t start_pieces(struct picker *p, const struct bitfield *peer_has, void *peer,
                           struct block_ref *out, size_t count, size_t max, size_t per,
                           uint32_t upto, size_t nbytes, uint32_t *left, bool *blocked,
                           struct walk *w)
{
    while (count < max && left[0] > 0) {
        if ((p->max_active != 0 && p->active_count >= p->max_active) ||
            (p->start_limit != 0 && p->active_count >= p->start_limit)) {
            *blocked = true;
            break;
        }
        if (upto != 0 && p->active_count >= upto)
            break;
        uint32_t piece;
        if (p->have_count < p->random_first)
            piece = nth_and(p->cand, peer_has, nbytes, rng_below(p, *left));
        else
            piece = extent_next(p, peer_has, walk_next(p, w, peer_has));
        uint32_t s;
        if (piece == NONE || activate(p, piece, &s) < 0) {
            *blocked = true; /* out of memory (or a broken invariant): not end-game */
            break;
        }
        (*left)--;
        count = take_free_blocks(p, s, peer, out, count, count + per < max ? count + per : max);
    }
    return count;
}

size_t picker_pick(struct picker *p, const struct bitfield *peer_has, void *peer,
                   struct block_ref *out, size_t max, bool *endgame)
{
    size_t count = 0;
    if (endgame != NULL)
        *endgame = false;
    if (max == 0 || peer_has == NULL || peer_has->bits == NULL || p->need_count == 0)
        return 0;
    bool spread = p->spread > 1 && p->have_count >= p->random_first;

    /* (1) Finish what is started: partial pieces, oldest first. */
    for (uint32_t s = p->active_head; !spread && s != NONE && count < max; s = p->slots[s].next) {
        if (p->slots[s].nnone > 0 && (p->slots[s].owner == NULL || p->slots[s].owner == peer) &&
            peer_holds(peer_has, p->slots[s].piece))
            count = take_free_blocks(p, s, peer, out, count, max);
    }

    if (count == max)
        return count;

    /* (2) and (3) Start pieces: at random while we have fewer than random_first (a complete
     * piece soon, to have something to trade), then rarest first. left counts the candidates
     * the peer has that were not yet started, which bounds the walk. */
    size_t nbytes = common_bytes(p, peer_has);
    uint32_t left = count_and(p->cand, peer_has, nbytes);
    bool blocked = false;
    struct walk w = {p->seeds > 0 ? 0 : bucket_end(p, 0), false};

    /* (1) with a spread: pieces started up to that many in progress, then a block of each
     * piece in progress in turn, so that they arrive side by side. */
    if (spread) {
        count = start_pieces(p, peer_has, peer, out, count, max, 1, p->spread, nbytes, &left,
                             &blocked, &w);
        /* The block furthest behind first (the oldest piece among equals): a pick goes on
         * row by row where the last one stopped, whatever its size. */
        while (count < max) {
            uint32_t best = NONE;
            for (uint32_t s = p->active_head; s != NONE; s = p->slots[s].next) {
                const struct active *a = &p->slots[s];
                if (a->nnone > 0 && (a->owner == NULL || a->owner == peer) &&
                    peer_holds(peer_has, a->piece) &&
                    (best == NONE || a->first_none < p->slots[best].first_none))
                    best = s;
            }
            if (best == NONE)
                break;
            count = take_free_blocks(p, best, peer, out, count, count + 1);
        }
    }

    if (count < max)
        count =
            start_pieces(p, peer_has, peer, out, count, max, max, 0, nbytes, &left, &blocked, &w);

    /* (4) End-game, as libtorrent does it: only once every wanted piece is started (no
     * candidate left anywhere) and nothing unrequested is left that this peer could serve.
     * Earlier, duplicates would only steal bandwidth from pieces nobody has begun. */
    if (count < max && !blocked && left == 0 && p->order_len == 0) {
        size_t before = count;
        count = take_busy_blocks(p, peer_has, peer, out, count, max);
        if (count > before && endgame != NULL)
            *endgame = true;
    }
    return count;
}

size_t picker_pick_alone(struct picker *p, const struct bitfield *peer_has, void *peer,
                         struct block_ref *out, size_t max)
{
    size_t count = 0;
    if (max == 0 || peer_has == NULL || peer_has->bits == NULL || p->need_count == 0)
        return 0;
    for (uint32_t s = p->active_head; s != NONE && count < max; s = p->slots[s].next) {
        if (p->slots[s].owner == peer && p->slots[s].nnone > 0)
            count = take_free_blocks(p, s, peer, out, count, max);
    }
    if (count > 0)
        return count;
    size_t nbytes = common_bytes(p, peer_has);
    uint32_t left = count_and(p->cand, peer_has, nbytes);
    bool blocked = false;
    struct walk w = {p->seeds > 0 ? 0 : bucket_end(p, 0), false};
    uint32_t tail = p->active_tail;
    count = start_pieces(p, peer_has, peer, out, 0, max, max, p->active_count + 1, nbytes, &left,
                         &blocked, &w);
    if (p->active_tail != tail && p->active_tail != NONE)
        p->slots[p->active_tail].owner = peer;
    return count;
}

/* ---- blocks coming back ---- */

/* The slot and block index for (piece, begin), or false if it names no block in progress. */
static bool find_block(const struct picker *p, uint32_t piece, uint32_t begin, uint32_t *slot,
                       uint32_t *block)
{
    if (piece >= p->n || p->slot_of[piece] == NONE || begin % p->block_size != 0)
        return false;
    uint32_t s = p->slot_of[piece];
    uint32_t b = begin / p->block_size;
    if (b >= p->slots[s].nblocks)
        return false;
    *slot = s;
    *block = b;
    return true;
}

enum picker_block_result picker_block_received(struct picker *p, uint32_t piece, uint32_t begin,
                                               void *peer, bool *piece_done, void **others,
                                               size_t *nothers)
{
    uint32_t s, b;
    if (piece_done != NULL)
        *piece_done = false;
    if (nothers != NULL)
        *nothers = 0;
    if (!find_block(p, piece, begin, &s, &b))
        return PICKER_BLOCK_UNWANTED;
    struct active *a = &p->slots[s];
    if (a->state[b] == BLOCK_RECEIVED)
        return PICKER_BLOCK_DUPLICATE;
    if (a->state[b] == BLOCK_REQUESTED) {
        void **r = requesters(a, b);
        size_t n = 0;
        for (uint32_t i = 0; i < a->nreq[b]; i++)
            if (r[i] != peer && others != NULL)
                others[n++] = r[i];
        if (nothers != NULL)
            *nothers = n;
        a->nrequested--;
        p->outstanding--;
    } else {
        /* Unrequested but wanted: kept (see the top of this file). */
        a->nnone--;
    }
    a->state[b] = BLOCK_RECEIVED;
    a->nreq[b] = 0;
    a->nreceived++;
    if (piece_done != NULL)
        *piece_done = a->nreceived == a->nblocks;
    return PICKER_BLOCK_NEW;
}

uint32_t picker_block_requesters(const struct picker *p, uint32_t piece, uint32_t begin,
                                 const void *peer)
{
    uint32_t s, b;
    if (!find_block(p, piece, begin, &s, &b))
        return 0;
    const struct active *a = &p->slots[s];
    if (a->state[b] != BLOCK_REQUESTED || !requested_by(a, b, peer))
        return 0;
    return a->nreq[b];
}

void picker_block_dropped(struct picker *p, uint32_t piece, uint32_t begin, void *peer)
{
    uint32_t s, b;
    if (!find_block(p, piece, begin, &s, &b))
        return;
    struct active *a = &p->slots[s];
    if (a->state[b] != BLOCK_REQUESTED || !unrequest(p, a, b, peer))
        return;
    if (a->owner == peer)
        a->owner = NULL; /* its owner let it go: anyone may finish it */
    if (a->nrequested == 0 && a->nreceived == 0)
        deactivate(p, s);
}

void picker_peer_gone(struct picker *p, void *peer)
{
    uint32_t s = p->active_head;
    while (s != NONE) {
        struct active *a = &p->slots[s];
        uint32_t next = a->next;
        if (a->owner == peer)
            a->owner = NULL;
        for (uint32_t b = 0; b < a->nblocks && a->nrequested > 0; b++)
            if (a->state[b] == BLOCK_REQUESTED)
                unrequest(p, a, b, peer);
        if (a->nrequested == 0 && a->nreceived == 0)
            deactivate(p, s);
        s = next;
    }
}

void picker_piece_passed(struct picker *p, uint32_t piece)
{
    picker_set_have(p, piece);
}

/* The piece leaves the in-progress set with all its blocks forgotten, and is a candidate
 * again (still rarest-first, so it may well be started again at once). */
void picker_piece_failed(struct picker *p, uint32_t piece)
{
    if (piece < p->n && p->slot_of[piece] != NONE)
        deactivate(p, p->slot_of[piece]);
}

uint32_t picker_active_count(const struct picker *p)
{
    return p->active_count;
}

uint32_t picker_outstanding(const struct picker *p)
{
    return p->outstanding;
}
