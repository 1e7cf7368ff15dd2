/* Kademlia routing table (BEP 5). */
#include "dht/table.h"

#include <stdlib.h>
#include <string.h>

#include "util/rand.h"

int dht_closer(const uint8_t target[20], const uint8_t a[20], const uint8_t b[20])
{
    for (int i = 0; i < 20; i++) {
        uint8_t x = a[i] ^ target[i], y = b[i] ^ target[i];
        if (x != y)
            return x < y ? -1 : 1;
    }
    return 0;
}

void table_init(struct dht_table *t, const uint8_t self[20], int family)
{
    memset(t, 0, sizeof(*t));
    memcpy(t->self, self, 20);
    t->family = family;
    t->nb = 1; /* one bucket, depth 0, covering everything */
}

static bool bit(const uint8_t id[20], unsigned i)
{
    return (id[i / 8] >> (7 - i % 8)) & 1;
}

/* Does id share bucket b's prefix? */
static bool in_bucket(const struct dht_bucket *b, const uint8_t id[20])
{
    for (unsigned i = 0; i < b->depth; i++)
        if (bit(id, i) != bit(b->first, i))
            return false;
    return true;
}

static struct dht_bucket *bucket_of(struct dht_table *t, const uint8_t id[20])
{
    for (size_t i = 0; i < t->nb; i++)
        if (in_bucket(&t->buckets[i], id))
            return &t->buckets[i];
    return &t->buckets[0]; /* not reached: the buckets cover the space */
}

static bool is_good(const struct dht_node *n, uint64_t now)
{
    return n->fails == 0 && n->replied_ms != 0 && now - n->replied_ms < DHT_GOOD_MS;
}

/* Splits b in two (prefix + 0 stays in b, prefix + 1 goes to a new bucket). */
static bool split(struct dht_table *t, struct dht_bucket *b)
{
    if (t->nb == DHT_MAX_BUCKETS || b->depth >= 159)
        return false;
    struct dht_bucket *nb = &t->buckets[t->nb++];
    memset(nb, 0, sizeof(*nb));
    memcpy(nb->first, b->first, 20);
    nb->first[b->depth / 8] |= (uint8_t)(0x80 >> (b->depth % 8));
    nb->depth = b->depth + 1;
    nb->changed_ms = b->changed_ms;
    b->depth++;
    size_t keep = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (in_bucket(nb, b->nodes[i].id))
            nb->nodes[nb->n++] = b->nodes[i];
        else
            b->nodes[keep++] = b->nodes[i];
    }
    b->n = keep;
    return true;
}

enum table_result table_update(struct dht_table *t, const uint8_t id[20],
                               const struct peer_addr *addr, bool replied, bool verified,
                               uint64_t now, struct dht_node **ping)
{
    if (ping != NULL)
        *ping = NULL;
    if (addr->family != t->family || memcmp(id, t->self, 20) == 0 || !peer_addr_is_valid(addr))
        return TABLE_IGNORED;
    for (int attempt = 0; attempt < 160; attempt++) {
        struct dht_bucket *b = bucket_of(t, id);
        for (size_t i = 0; i < b->n; i++) {
            struct dht_node *n = &b->nodes[i];
            if (memcmp(n->id, id, 20) != 0)
                continue;
            /* The same id from another address is not believed (it would let anyone move
             * a node); the node's own address keeps it fresh. */
            if (memcmp(&n->addr, addr, sizeof(*addr)) != 0)
                return TABLE_IGNORED;
            n->seen_ms = now;
            if (replied) {
                n->replied_ms = now;
                n->fails = 0;
                b->changed_ms = now;
            }
            return TABLE_UPDATED;
        }
        struct dht_node fresh;
        memset(&fresh, 0, sizeof(fresh));
        memcpy(fresh.id, id, 20);
        fresh.addr = *addr;
        fresh.seen_ms = now;
        fresh.replied_ms = replied ? now : 0;
        fresh.verified = verified;
        if (b->n < DHT_K) {
            b->nodes[b->n++] = fresh;
            b->changed_ms = now;
            return TABLE_ADDED;
        }
        /* A bad node gives way; then, with BEP 42, an unverified one to a verified one. */
        for (size_t i = 0; i < b->n; i++) {
            if (b->nodes[i].fails >= DHT_BAD_FAILS) {
                b->nodes[i] = fresh;
                b->changed_ms = now;
                return TABLE_REPLACED;
            }
        }
        if (in_bucket(b, t->self) && split(t, b))
            continue;
        /* BEP 42: a verified newcomer that answered takes the place of an unverified node
         * that is no longer good. */
        for (size_t i = 0; replied && verified && i < b->n; i++) {
            if (!b->nodes[i].verified && !is_good(&b->nodes[i], now)) {
                b->nodes[i] = fresh;
                b->changed_ms = now;
                return TABLE_REPLACED;
            }
        }
        if (replied && ping != NULL) {
            for (size_t i = 0; i < b->n; i++) {
                if (!is_good(&b->nodes[i], now)) {
                    *ping = &b->nodes[i];
                    break;
                }
            }
        }
        return TABLE_FULL;
    }
    return TABLE_FULL;
}

void table_failed(struct dht_table *t, const struct peer_addr *addr)
{
    for (size_t i = 0; i < t->nb; i++)
        for (size_t k = 0; k < t->buckets[i].n; k++)
            if (memcmp(&t->buckets[i].nodes[k].addr, addr, sizeof(*addr)) == 0)
                t->buckets[i].nodes[k].fails++;
}

size_t table_closest(const struct dht_table *t, const uint8_t target[20], struct dht_node *out,
                     size_t n)
{
    size_t got = 0;
    for (size_t i = 0; i < t->nb; i++) {
        for (size_t k = 0; k < t->buckets[i].n; k++) {
            const struct dht_node *c = &t->buckets[i].nodes[k];
            if (c->fails >= DHT_BAD_FAILS)
                continue;
            /* Insertion into the sorted top n. */
            size_t pos = got;
            while (pos > 0 && dht_closer(target, c->id, out[pos - 1].id) < 0)
                pos--;
            if (pos >= n)
                continue;
            size_t last = got < n ? got : n - 1;
            memmove(&out[pos + 1], &out[pos], (last - pos) * sizeof(*out));
            out[pos] = *c;
            if (got < n)
                got++;
        }
    }
    return got;
}

size_t table_count(const struct dht_table *t, size_t *good, uint64_t now)
{
    size_t n = 0, g = 0;
    for (size_t i = 0; i < t->nb; i++) {
        n += t->buckets[i].n;
        for (size_t k = 0; k < t->buckets[i].n; k++)
            g += is_good(&t->buckets[i].nodes[k], now);
    }
    if (good != NULL)
        *good = g;
    return n;
}

int table_stale_bucket(struct dht_table *t, uint64_t now, uint8_t target[20])
{
    for (size_t i = 0; i < t->nb; i++) {
        struct dht_bucket *b = &t->buckets[i];
        if (now - b->changed_ms < DHT_GOOD_MS)
            continue;
        b->changed_ms = now;
        rand_bytes(target, 20);
        for (unsigned k = 0; k < b->depth; k++) {
            uint8_t m = (uint8_t)(0x80 >> (k % 8));
            target[k / 8] = (uint8_t)((target[k / 8] & ~m) | (b->first[k / 8] & m));
        }
        return 1;
    }
    return 0;
}
