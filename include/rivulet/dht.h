/* A standalone mainline DHT node (BEP 5, BEP 32 IPv6, BEP 42 node ids) on a libuv loop, for
 * diagnostics and tools; sessions run one of their own (rv_session_opts_t.no_dht). */
#ifndef RIVULET_DHT_H
#define RIVULET_DHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rivulet/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rv_dht rv_dht_t;

typedef struct rv_dht_opts {
    uint16_t port;                 /* UDP port; 0: any */
    const char *listen_addr;       /* numeric; NULL: every IPv4 and IPv6 address */
    const char *const *bootstrap;  /* "host:port" nodes to start from (names resolved off the
                                      loop); none: the node waits to be contacted */
    size_t bootstrap_count;
    const char *state_file;        /* routing table kept here between runs; NULL: none */
    bool enforce_bep42;            /* refuse nodes whose id does not match their address */
} rv_dht_opts_t;

typedef struct rv_dht_stats {
    size_t nodes4, good4, nodes6, good6, verified; /* routing tables */
    size_t searches;               /* lookups in flight */
    size_t stored_torrents, stored_peers; /* what others announced to us */
    uint64_t queries_in, queries_out, replies_in, timeouts;
    uint64_t rate_limited;         /* queries dropped by the per-source limit */
    size_t limited_sources;        /* sources limited in the last minute */
    uint64_t bad_packets;          /* malformed KRPC received */
    uint16_t port;
} rv_dht_stats_t;

/* peers: "ip:port" / "[ip6]:port" strings, valid during the call; done: the lookup ended. */
typedef void (*rv_dht_peers_cb)(void *ud, const char *const *peers, size_t n, bool done);

/* loop: the uv_loop_t * to run on. */
int rv_dht_new(void *loop, const rv_dht_opts_t *opts, rv_dht_t **out, rv_error_t *err);
/* Looks up peers of info_hash (and announces port to the closest nodes when announce). */
int rv_dht_get_peers(rv_dht_t *d, const uint8_t info_hash[20], bool announce, uint16_t port,
                     rv_dht_peers_cb cb, void *ud);
void rv_dht_stats(const rv_dht_t *d, rv_dht_stats_t *st);
/* Saves the routing table, closes the sockets; done (may be NULL) runs when they are. */
void rv_dht_close(rv_dht_t *d, void (*done)(void *ud), void *ud);

#ifdef __cplusplus
}
#endif
#endif
