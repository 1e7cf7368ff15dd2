/* A mainline DHT node (BEP 5, IPv6 per BEP 32, node ids per BEP 42) on the libuv loop: KRPC
 * over UDP, a routing table per family, iterative lookups (alpha 3, k 8), announce_peer with
 * tokens from a secret rotated every five minutes, a store of announced peers with caps and
 * expiry, and a rate limit per source address so the node cannot amplify a flood. */
#ifndef RV_DHT_DHT_H
#define RV_DHT_DHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rivulet/error.h"
#include "swarm/peers.h"

#define DHT_ALPHA 3
#define DHT_QUERY_TIMEOUT_MS 2000
#define DHT_MAX_STORED_TORRENTS 2000
#define DHT_MAX_STORED_PEERS 100  /* per info-hash */
#define DHT_PEER_TTL_MS (30u * 60 * 1000)
#define DHT_TOKEN_ROTATE_MS (5u * 60 * 1000)
#define DHT_RATE_PER_SEC 25       /* queries answered per source address per second */
#define DHT_RATE_BURST 50

struct dht;

struct dht_opts {
    uint16_t port;            /* UDP port (the peer port by default); 0: any */
    const char *bind_addr;    /* numeric address, or NULL for every IPv4 and IPv6 address */
    const char *const *bootstrap; /* "host:port" (names resolved off the loop) */
    size_t bootstrap_count;
    const char *state_file;   /* routing table saved at close, reloaded at start; NULL: none */
    bool enforce_bep42;       /* refuse nodes whose id does not match their address */
};

struct dht_stats {
    size_t nodes4, good4, nodes6, good6, verified;
    size_t searches;          /* lookups in flight */
    size_t stored_torrents, stored_peers;
    uint64_t queries_in, queries_out, replies_in, timeouts;
    uint64_t rate_limited;    /* queries dropped by the per-source limit */
    size_t limited_sources;   /* sources limited in the last minute */
    uint64_t bad_packets;
    uint16_t port;
};

/* Peers found by a lookup (may be called several times); done when the lookup ended (then n is
 * 0 and peers NULL). */
typedef void (*dht_peers_cb)(void *ud, const struct peer_addr *peers, size_t n, bool done);

int dht_new(uv_loop_t *loop, const struct dht_opts *opts, struct dht **out, rv_error_t *err);
/* Saves the routing table (if state_file), closes the sockets; done runs once they are. */
void dht_close(struct dht *d, void (*done)(void *ud), void *ud);
/* Looks for peers of info_hash in both families, then announces port to the closest nodes
 * (announce true). cb gets the peers as they come; owner identifies the caller for
 * dht_cancel. Returns 0 or RV_EFULL (too many lookups). */
int dht_get_peers(struct dht *d, const uint8_t info_hash[20], bool announce, uint16_t port,
                  dht_peers_cb cb, void *owner);
/* Forgets every lookup of owner (its callbacks will not run again). */
void dht_cancel(struct dht *d, void *owner);
/* Starts from one more node, "host:port" (a .torrent's nodes): like the bootstrap list. */
void dht_bootstrap_node(struct dht *d, const char *hostport);
/* Pings a node we heard of (a peer's PORT message). */
void dht_ping(struct dht *d, const struct peer_addr *addr);
void dht_stats(const struct dht *d, struct dht_stats *st);
uint16_t dht_port(const struct dht *d);

/* BEP 42: does id match addr (IPv4 or IPv6)? */
bool dht_id_verified(const uint8_t id[20], const struct peer_addr *addr);
/* BEP 42: a node id for external address addr with random byte r. */
void dht_id_for(const struct peer_addr *addr, uint8_t r, uint8_t id[20]);

#endif
