/* The public face of the DHT node (include/rivulet/dht.h). */
#include <stdio.h>
#include <string.h>

#include "dht/dht.h"
#include "dht/krpc.h"
#include "rivulet/dht.h"

struct rv_dht; /* a struct dht, seen from outside */

struct api_lookup {
    rv_dht_peers_cb cb;
    void *ud;
};

int rv_dht_new(void *loop, const rv_dht_opts_t *o, rv_dht_t **out, rv_error_t *err)
{
    struct dht_opts opts = {.port = o->port,
                            .bind_addr = o->listen_addr,
                            .bootstrap = o->bootstrap,
                            .bootstrap_count = o->bootstrap_count,
                            .state_file = o->state_file,
                            .enforce_bep42 = o->enforce_bep42};
    struct dht *d;
    int rc = dht_new(loop, &opts, &d, err);
    if (rc == 0)
        *out = (rv_dht_t *)d;
    return rc;
}

/* One lookup at a time per caller context is enough for the tools: the callback and its
 * data ride on the owner pointer. */
static void on_peers(void *owner, const struct peer_addr *peers, size_t n, bool done)
{
    struct api_lookup *l = owner;
    char buf[KRPC_MAX_VALUES][64];
    const char *ptrs[KRPC_MAX_VALUES];
    size_t k = 0;
    for (size_t i = 0; i < n && k < KRPC_MAX_VALUES; i++, k++) {
        peer_addr_format(&peers[i], buf[k], sizeof(buf[k]));
        ptrs[k] = buf[k];
    }
    l->cb(l->ud, ptrs, k, done);
}

int rv_dht_get_peers(rv_dht_t *d, const uint8_t info_hash[20], bool announce, uint16_t port,
                     rv_dht_peers_cb cb, void *ud)
{
    static struct api_lookup lookups[64];
    static size_t next;
    struct api_lookup *l = &lookups[next++ % 64];
    l->cb = cb;
    l->ud = ud;
    return dht_get_peers((struct dht *)d, info_hash, announce, port, on_peers, l);
}

void rv_dht_stats(const rv_dht_t *d, rv_dht_stats_t *st)
{
    struct dht_stats s;
    dht_stats((const struct dht *)d, &s);
    memset(st, 0, sizeof(*st));
    st->nodes4 = s.nodes4;
    st->good4 = s.good4;
    st->nodes6 = s.nodes6;
    st->good6 = s.good6;
    st->verified = s.verified;
    st->searches = s.searches;
    st->stored_torrents = s.stored_torrents;
    st->stored_peers = s.stored_peers;
    st->queries_in = s.queries_in;
    st->queries_out = s.queries_out;
    st->replies_in = s.replies_in;
    st->timeouts = s.timeouts;
    st->rate_limited = s.rate_limited;
    st->limited_sources = s.limited_sources;
    st->bad_packets = s.bad_packets;
    st->port = s.port;
}

void rv_dht_close(rv_dht_t *d, void (*done)(void *ud), void *ud)
{
    dht_close((struct dht *)d, done, ud);
}
