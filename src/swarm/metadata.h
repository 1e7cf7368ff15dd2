/* Fetching a torrent's info dictionary from peers (BEP 9) for a magnet link: which 16 KiB
 * block to ask which peer for, the blocks as they arrive, and the SHA-1 check against the
 * info-hash before anyone parses a byte. Peers are opaque keys here (the torrent's struct peer).
 *
 * Several peers fill one attempt at once. When the assembled bytes fail the hash, a lone
 * contributor is blamed; with several, the next attempt takes every block from one peer at a
 * time, so the liar is found by elimination. A peer whose advertised size differs from the
 * attempt's is not asked until an attempt of its size. */
#ifndef RV_SWARM_METADATA_H
#define RV_SWARM_METADATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rivulet/error.h"

#define METADATA_TIMEOUT_MS 10000 /* a block asked this long ago is asked of someone else */
#define METADATA_MAX_BLAME 16

struct metadata {
    uint8_t info_hash[20];
    size_t max_size;
    size_t size;            /* of the current attempt; 0 before the first peer said */
    uint32_t nblocks;
    uint8_t *data;
    uint8_t *state;         /* per block: 0 missing, 1 asked, 2 received */
    void **owner;           /* per block: the peer asked or that sent it */
    uint64_t *asked_ms;
    uint32_t received;
    bool single_source;     /* after a failed attempt with several contributors */
    void *source;           /* single_source: the one peer this attempt uses */
    bool done;
    unsigned attempts, failures;
};

void metadata_init(struct metadata *md, const uint8_t info_hash[20], size_t max_size);
void metadata_free(struct metadata *md);

/* The next block to ask peer for (it advertised peer_size bytes, -1 when unknown): 1 with
 * *block set, 0 when nothing is to be asked of it now. Starts an attempt of peer_size bytes
 * when none is running. Sizes of 0 or over max_size are never used. */
int metadata_pick(struct metadata *md, void *peer, int64_t peer_size, uint64_t now_ms,
                  uint32_t *block);

enum metadata_result {
    METADATA_OK = 0,       /* stored; more to come */
    METADATA_COMPLETE = 1, /* every block is in and the SHA-1 matches the info-hash */
    METADATA_IGNORED = 2   /* not asked of this peer (late, or after a reset): dropped */
};

/* A DATA message from peer. Returns enum metadata_result, or RV_EPROTO when the peer lied in
 * a way it alone answers for (a block of the wrong length, a total_size other than it
 * advertised), or RV_EHASH when the attempt failed its hash: blame[0..*nblame) are the
 * contributors to hold responsible (with one, it lied; with several, the next attempt sorts
 * them out) and the attempt starts over. err says what was wrong. */
int metadata_received(struct metadata *md, void *peer, uint32_t block, int64_t total,
                      const uint8_t *data, size_t len, void **blame, size_t *nblame,
                      rv_error_t *err);
/* The peer rejected a request, or is gone: its blocks are asked of others. With
 * single_source, the attempt moves to another peer. */
void metadata_peer_gone(struct metadata *md, void *peer);
/* Frees requests older than METADATA_TIMEOUT_MS; returns how many. */
unsigned metadata_expire(struct metadata *md, uint64_t now_ms);

#endif
