/* Known peers: an open-addressing hash set of addresses, bounded by max. */
#include "swarm/peers.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rivulet/error.h"

void peers_init(struct peer_set *s, size_t max, peers_new_cb on_new, void *ud)
{
    memset(s, 0, sizeof(*s));
    s->max = max ? max : 4096;
    s->on_new = on_new;
    s->ud = ud;
}

void peers_free(struct peer_set *s)
{
    free(s->slots);
    s->slots = NULL;
    s->cap = s->count = 0;
}

static size_t addr_len(const struct peer_addr *a)
{
    return a->family == 6 ? 16 : 4;
}

static bool addr_eq(const struct peer_addr *a, const struct peer_addr *b)
{
    return a->family == b->family && a->port == b->port &&
           memcmp(a->ip, b->ip, addr_len(a)) == 0;
}

/* FNV-1a over the address bytes: cheap, and good enough for a table that peers cannot fill
 * past max. */
static size_t addr_hash(const struct peer_addr *a)
{
    uint64_t h = 1469598103934665603ULL;
    uint8_t bytes[19];
    size_t n = addr_len(a);
    bytes[0] = a->family;
    memcpy(bytes + 1, a->ip, n);
    bytes[n + 1] = (uint8_t)(a->port >> 8);
    bytes[n + 2] = (uint8_t)a->port;
    for (size_t i = 0; i < n + 3; i++) {
        h ^= bytes[i];
        h *= 1099511628211ULL;
    }
    return (size_t)h;
}

bool peer_addr_is_valid(const struct peer_addr *a)
{
    static const uint8_t zero[16];
    if (a->port == 0)
        return false;
    if (a->family == 4) {
        if (memcmp(a->ip, zero, 4) == 0)
            return false; /* 0.0.0.0 */
        if (a->ip[0] >= 224)
            return false; /* multicast, reserved, broadcast */
        if (a->ip[0] == 0)
            return false; /* "this network" */
        return true;
    }
    if (a->family == 6) {
        if (memcmp(a->ip, zero, 16) == 0)
            return false; /* :: */
        if (a->ip[0] == 0xff)
            return false; /* multicast */
        return true;
    }
    return false;
}

static struct known_peer *slot_for(const struct peer_set *s, const struct peer_addr *a)
{
    size_t mask = s->cap - 1;
    for (size_t i = addr_hash(a) & mask;; i = (i + 1) & mask) {
        struct known_peer *k = &s->slots[i];
        if (!k->used || addr_eq(&k->addr, a))
            return k;
    }
}

static int grow(struct peer_set *s)
{
    size_t cap = s->cap ? s->cap * 2 : 64;
    struct known_peer *old = s->slots;
    size_t old_cap = s->cap;
    s->slots = calloc(cap, sizeof(*s->slots));
    if (s->slots == NULL) {
        s->slots = old;
        return RV_ENOMEM;
    }
    s->cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].used)
            *slot_for(s, &old[i].addr) = old[i];
    free(old);
    return 0;
}

const struct known_peer *peers_find(const struct peer_set *s, const struct peer_addr *addr)
{
    if (s->cap == 0)
        return NULL;
    const struct known_peer *k = slot_for(s, addr);
    return k->used ? k : NULL;
}

int peers_add(struct peer_set *s, const struct peer_addr *addr, unsigned source)
{
    if (!peer_addr_is_valid(addr))
        return RV_EINVAL;
    struct peer_addr a = *addr;
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (a.family == 6 && memcmp(a.ip, v4mapped, 12) == 0) {
        /* ::ffff:a.b.c.d is the IPv4 peer a.b.c.d: one peer, one entry. */
        memmove(a.ip, a.ip + 12, 4);
        a.family = 4;
    }
    if (a.family == 4)
        memset(a.ip + 4, 0, 12); /* so equal addresses compare and hash equal */
    if (s->cap) {
        struct known_peer *k = slot_for(s, &a);
        if (k->used) {
            k->sources |= source;
            if (s->on_again != NULL)
                s->on_again(s->ud, &k->addr, source);
            return 0;
        }
    }
    if (s->count >= s->max)
        return RV_EFULL;
    /* Keep the load under 3/4 so probes stay short. */
    if ((s->count + 1) * 4 > s->cap * 3) {
        int rc = grow(s);
        if (rc != 0)
            return rc;
    }
    struct known_peer *k = slot_for(s, &a);
    k->addr = a;
    k->sources = source;
    k->used = true;
    s->count++;
    if (s->on_new != NULL)
        s->on_new(s->ud, &k->addr, source);
    return 1;
}

void peer_addr_format(const struct peer_addr *a, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN];
    if (a->family == 6) {
        inet_ntop(AF_INET6, a->ip, ip, sizeof(ip));
        snprintf(out, outlen, "[%s]:%u", ip, a->port);
    } else {
        inet_ntop(AF_INET, a->ip, ip, sizeof(ip));
        snprintf(out, outlen, "%s:%u", ip, a->port);
    }
}

int peer_addr_parse(const char *s, struct peer_addr *out)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon, *hs = s;
    size_t hl;
    memset(out, 0, sizeof(*out));
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return RV_EINVAL;
        hs = s + 1;
        hl = (size_t)(close - hs);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return RV_EINVAL;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= sizeof(host))
        return RV_EINVAL;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    if (*s != '[' && strchr(host, ':') != NULL)
        return RV_EINVAL; /* an IPv6 address needs brackets, or its port is ambiguous */
    const char *p = colon + 1;
    unsigned long port = 0;
    if (*p == '\0')
        return RV_EINVAL;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return RV_EINVAL;
        port = port * 10 + (unsigned long)(*p - '0');
        if (port > 65535)
            return RV_EINVAL;
    }
    if (port == 0)
        return RV_EINVAL;
    out->port = (uint16_t)port;
    if (inet_pton(AF_INET, host, out->ip) == 1)
        out->family = 4;
    else if (inet_pton(AF_INET6, host, out->ip) == 1)
        out->family = 6;
    else
        return RV_EINVAL;
    return 0;
}
