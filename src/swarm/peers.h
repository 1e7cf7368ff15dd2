/* Known peers of one torrent. Every source (trackers, and later DHT, PEX, LSD, incoming
 * connections and --peer) adds addresses here; duplicates are merged and each address
 * remembers which sources named it. The peer layer learns of new addresses through on_new. */
#ifndef RV_SWARM_PEERS_H
#define RV_SWARM_PEERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum peer_source {
    PEER_SRC_TRACKER = 1 << 0,
    PEER_SRC_DHT = 1 << 1,
    PEER_SRC_PEX = 1 << 2,
    PEER_SRC_LSD = 1 << 3,
    PEER_SRC_MANUAL = 1 << 4,
    PEER_SRC_INCOMING = 1 << 5,
    PEER_SRC_MAGNET = 1 << 6 /* x.pe */
};

/* An IPv4 or IPv6 address and port, in network byte order in ip[], host order in port. */
struct peer_addr {
    uint8_t family; /* 4 or 6 */
    uint16_t port;
    uint8_t ip[16]; /* IPv4 uses ip[0..3] */
};

struct known_peer {
    struct peer_addr addr;
    unsigned sources; /* PEER_SRC_* bits */
    bool used;        /* slot in use (open addressing) */
};

typedef void (*peers_new_cb)(void *ud, const struct peer_addr *addr, unsigned source);

struct peer_set {
    struct known_peer *slots;
    size_t cap;   /* power of two */
    size_t count;
    size_t max;   /* never more than this many addresses */
    peers_new_cb on_new;
    peers_new_cb on_again; /* a source names a known address again (NULL: nobody asks) */
    void *ud;
};

/* max: the most addresses kept (0: 4096). on_new may be NULL. */
void peers_init(struct peer_set *s, size_t max, peers_new_cb on_new, void *ud);
void peers_free(struct peer_set *s);

/* Adds addr from source. Returns 1 if it was new (and on_new was called), 0 if already known
 * (its source bits are merged and on_again is called), RV_EINVAL for an address no one should dial
 * (port 0, unspecified, multicast, broadcast), RV_EFULL when the set is at max, RV_ENOMEM. */
int peers_add(struct peer_set *s, const struct peer_addr *addr, unsigned source);
const struct known_peer *peers_find(const struct peer_set *s, const struct peer_addr *addr);

/* True if addr can be dialled at all (see peers_add). */
bool peer_addr_is_valid(const struct peer_addr *addr);
/* "1.2.3.4:5" or "[::1]:5" into out (at least 56 bytes). */
void peer_addr_format(const struct peer_addr *addr, char *out, size_t outlen);
/* Parses "host:port" or "[v6]:port" with a numeric host. Returns 0 or RV_EINVAL. */
int peer_addr_parse(const char *s, struct peer_addr *out);

#endif
