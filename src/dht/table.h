/* A Kademlia routing table (BEP 5) for one address family: buckets of K nodes covering the
 * 160-bit id space, split only where our own id lies. Nodes are good (answered within 15
 * minutes), questionable, or bad (several queries unanswered); a full bucket takes a new node
 * only in place of a bad one, or after a questionable one fails its ping. */
#ifndef RV_DHT_TABLE_H
#define RV_DHT_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "swarm/peers.h"

#define DHT_K 8
#define DHT_GOOD_MS (15u * 60 * 1000)
#define DHT_BAD_FAILS 3
#define DHT_MAX_BUCKETS 160

struct dht_node {
    uint8_t id[20];
    struct peer_addr addr;
    uint64_t replied_ms; /* last answer to one of our queries; 0: never */
    uint64_t seen_ms;    /* last packet of any kind */
    unsigned fails;      /* queries unanswered since the last answer */
    bool verified;       /* BEP 42: its id matches its address */
};

struct dht_bucket {
    uint8_t first[20];   /* lowest id in the bucket's range */
    unsigned depth;      /* prefix bits shared by the range */
    size_t n;
    struct dht_node nodes[DHT_K];
    uint64_t changed_ms; /* last time a node was added or answered (refresh after 15 min) */
};

struct dht_table {
    uint8_t self[20];
    int family;
    struct dht_bucket buckets[DHT_MAX_BUCKETS];
    size_t nb;
};

enum table_result { TABLE_UPDATED, TABLE_ADDED, TABLE_REPLACED, TABLE_FULL, TABLE_IGNORED };

void table_init(struct dht_table *t, const uint8_t self[20], int family);
/* A packet from id at addr: replied (it answered our query) makes it good. Returns what
 * happened; with TABLE_FULL and a good newcomer, *ping is a questionable node of the bucket
 * worth pinging (NULL if none). Our own id, or an address of another family, is ignored. */
enum table_result table_update(struct dht_table *t, const uint8_t id[20],
                               const struct peer_addr *addr, bool replied, bool verified,
                               uint64_t now, struct dht_node **ping);
/* A query to addr went unanswered. */
void table_failed(struct dht_table *t, const struct peer_addr *addr);
/* Up to n nodes that are not bad, closest to target first. */
size_t table_closest(const struct dht_table *t, const uint8_t target[20], struct dht_node *out,
                     size_t n);
/* Nodes in the table, and how many are good now. */
size_t table_count(const struct dht_table *t, size_t *good, uint64_t now);
/* The bucket to refresh (none changed for 15 min): 1 with a random target id in its range. */
int table_stale_bucket(struct dht_table *t, uint64_t now, uint8_t target[20]);
/* XOR distance comparison: <0 when a is closer to target than b. */
int dht_closer(const uint8_t target[20], const uint8_t a[20], const uint8_t b[20]);

#endif
