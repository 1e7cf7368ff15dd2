/* The DHT node: sockets, transactions, lookups, the answers to other nodes' queries, the peer
 * store, tokens, rate limits and the saved routing table. Everything on the loop thread. */
#include "dht/dht.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bencode/bencode.h"
#include "dht/krpc.h"
#include "dht/table.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/rand.h"
#include "util/sha.h"

#define TICK_MS 250
#define MAX_PENDING 512
#define MAX_SEARCHES 64
#define SEARCH_CANDS 64
#define RATE_SLOTS 256
#define TOKEN_LEN 8
#define MAX_BOOTSTRAP 16
#define DHT_WAIT_MS 30000 /* a lookup started before the table has nodes waits this long */

enum cand_state { C_NEW, C_ASKED, C_REPLIED, C_FAILED };

struct cand {
    uint8_t id[20];
    bool id_known;
    struct peer_addr addr;
    enum cand_state state;
    uint8_t token[KRPC_MAX_TOKEN];
    size_t token_len;
};

struct search {
    bool used;
    unsigned gen;    /* pending queries name their search by index and generation */
    uint8_t target[20];
    int family;
    bool get_peers;  /* get_peers (else find_node, e.g. our own id at bootstrap) */
    bool announce;
    uint16_t port;
    dht_peers_cb cb;
    void *owner;
    struct cand c[SEARCH_CANDS];
    size_t n;
    unsigned inflight;
    uint64_t started_ms;
    bool waiting;    /* started with an empty table: begins when the first node answers */
};

struct pending {
    bool used;
    uint8_t tid[4];
    struct peer_addr addr;
    enum krpc_method method;
    int search;      /* index in searches, -1 for none */
    unsigned gen;
    uint64_t sent_ms;
};

struct stored {
    uint8_t info_hash[20];
    struct peer_addr peers[DHT_MAX_STORED_PEERS];
    uint64_t at[DHT_MAX_STORED_PEERS];
    size_t n;
};

struct rate_slot {
    struct peer_addr addr; /* port 0: the address alone */
    double tokens;
    uint64_t last_ms, limited_ms;
    bool used;
};

struct sock {
    uv_udp_t udp;
    bool open;
    int family;
};

struct dht {
    uv_loop_t *loop;
    struct dht_opts opts;
    char *state_file;
    uint8_t id[20];
    struct dht_table t4, t6;
    struct sock s4, s6;
    uint16_t port;
    uv_timer_t timer;
    struct pending pend[MAX_PENDING];
    uint16_t next_tid;
    struct search searches[MAX_SEARCHES];
    struct stored *store; /* grows to DHT_MAX_STORED_TORRENTS */
    size_t nstore, capstore;
    struct rate_slot rate[RATE_SLOTS];
    uint8_t secret[2][16];
    uint64_t secret_ms;
    struct dht_stats st;
    /* bootstrap names resolved off the loop */
    uv_getaddrinfo_t resolve[MAX_BOOTSTRAP];
    bool resolve_active[MAX_BOOTSTRAP];
    unsigned resolving;
    unsigned next_gen;
    bool closing;
    unsigned open_handles;
    void (*close_done)(void *ud);
    void *close_ud;
    struct peer_addr external;
    bool has_external;
    char rbuf[65536]; /* one datagram at a time */
    /* the routing table written on a worker at close */
    uv_work_t save_work;
    bool saving;
    uint8_t *save_bytes;
    size_t save_len;
};

static uint64_t now_ms(const struct dht *d)
{
    return uv_now(d->loop);
}

/* ---- BEP 42 ---- */

static uint32_t crc32c(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
    }
    return ~crc;
}

static bool is_local(const struct peer_addr *a)
{
    if (a->family == 4)
        return a->ip[0] == 10 || a->ip[0] == 127 || (a->ip[0] == 172 && (a->ip[1] & 0xf0) == 16) ||
               (a->ip[0] == 192 && a->ip[1] == 168) || (a->ip[0] == 169 && a->ip[1] == 254);
    static const uint8_t lo[16] = {[15] = 1};
    return memcmp(a->ip, lo, 16) == 0 || (a->ip[0] & 0xfe) == 0xfc || (a->ip[0] == 0xfe && (a->ip[1] & 0xc0) == 0x80);
}

static uint32_t bep42_crc(const struct peer_addr *a, uint8_t r)
{
    if (a->family == 4) {
        static const uint8_t mask[4] = {0x03, 0x0f, 0x3f, 0xff};
        uint8_t ip[4];
        for (int i = 0; i < 4; i++)
            ip[i] = a->ip[i] & mask[i];
        ip[0] |= (uint8_t)((r & 7) << 5);
        return crc32c(ip, 4);
    }
    static const uint8_t mask[8] = {0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff};
    uint8_t ip[8];
    for (int i = 0; i < 8; i++)
        ip[i] = a->ip[i] & mask[i];
    ip[0] |= (uint8_t)((r & 7) << 5);
    return crc32c(ip, 8);
}

void dht_id_for(const struct peer_addr *addr, uint8_t r, uint8_t id[20])
{
    uint32_t crc = bep42_crc(addr, r);
    rand_bytes(id, 20);
    id[0] = (uint8_t)(crc >> 24);
    id[1] = (uint8_t)(crc >> 16);
    id[2] = (uint8_t)(((crc >> 8) & 0xf8) | (id[2] & 7));
    id[19] = r;
}

bool dht_id_verified(const uint8_t id[20], const struct peer_addr *addr)
{
    if (is_local(addr))
        return true; /* BEP 42: local addresses are exempt */
    uint32_t crc = bep42_crc(addr, id[19]);
    return id[0] == (uint8_t)(crc >> 24) && id[1] == (uint8_t)(crc >> 16) &&
           (id[2] & 0xf8) == (uint8_t)((crc >> 8) & 0xf8);
}

/* ---- sending ---- */

struct send_req {
    uv_udp_send_t req;
    uint8_t data[KRPC_MAX_PACKET];
};

static void on_sent(uv_udp_send_t *req, int status)
{
    (void)status;
    free(req->data);
}

static void to_sockaddr(const struct peer_addr *a, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (a->family == 4) {
        struct sockaddr_in *s = (struct sockaddr_in *)ss;
        s->sin_family = AF_INET;
        memcpy(&s->sin_addr, a->ip, 4);
        s->sin_port = htons(a->port);
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
        s->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a->ip, 16);
        s->sin6_port = htons(a->port);
    }
}

static void send_to(struct dht *d, const struct peer_addr *a, const struct buf *b)
{
    struct sock *s = a->family == 4 ? &d->s4 : &d->s6;
    if (!s->open || d->closing || b->len > KRPC_MAX_PACKET)
        return;
    struct send_req *r = malloc(sizeof(*r));
    if (r == NULL)
        return;
    memcpy(r->data, b->data, b->len);
    r->req.data = r;
    uv_buf_t ub = uv_buf_init((char *)r->data, (unsigned)b->len);
    struct sockaddr_storage ss;
    to_sockaddr(a, &ss);
    if (uv_udp_send(&r->req, &s->udp, &ub, 1, (const struct sockaddr *)&ss, on_sent) != 0)
        free(r);
}

/* Sends a query and remembers it; returns false when no slot is free. */
static bool query(struct dht *d, const struct peer_addr *a, enum krpc_method m,
                  const uint8_t *target, int search, const uint8_t *token, size_t token_len,
                  uint16_t port)
{
    struct pending *p = NULL;
    for (size_t i = 0; i < MAX_PENDING && p == NULL; i++)
        if (!d->pend[i].used)
            p = &d->pend[i];
    if (p == NULL || !peer_addr_is_valid(a))
        return false;
    p->used = true;
    uint16_t seq = d->next_tid++;
    p->tid[0] = (uint8_t)(seq >> 8);
    p->tid[1] = (uint8_t)seq;
    rand_bytes(p->tid + 2, 2);
    p->addr = *a;
    p->method = m;
    p->search = search;
    p->gen = search >= 0 ? d->searches[search].gen : 0;
    p->sent_ms = now_ms(d);
    struct buf b;
    buf_init(&b, KRPC_MAX_PACKET);
    bool v6 = d->s6.open, v4 = d->s4.open;
    if (krpc_put_query(&b, m, p->tid, 4, d->id, target, token, token_len, port, false, v4,
                       v6) == 0)
        send_to(d, a, &b);
    buf_free(&b);
    d->st.queries_out++;
    return true;
}

/* ---- lookups ---- */

static void search_add(struct search *s, const uint8_t *id, const struct peer_addr *a)
{
    if (a->family != s->family || !peer_addr_is_valid(a))
        return;
    for (size_t i = 0; i < s->n; i++) {
        if (memcmp(&s->c[i].addr, a, sizeof(*a)) == 0 ||
            (id != NULL && s->c[i].id_known && memcmp(s->c[i].id, id, 20) == 0))
            return;
    }
    struct cand c;
    memset(&c, 0, sizeof(c));
    c.addr = *a;
    if (id != NULL) {
        memcpy(c.id, id, 20);
        c.id_known = true;
    } else {
        for (int i = 0; i < 20; i++)
            c.id[i] = (uint8_t)~s->target[i]; /* unknown: as far as can be */
    }
    /* Sorted by distance; when full, a new candidate only replaces a farther untried one. */
    size_t pos = s->n;
    while (pos > 0 && dht_closer(s->target, c.id, s->c[pos - 1].id) < 0)
        pos--;
    if (s->n == SEARCH_CANDS) {
        if (pos >= SEARCH_CANDS || s->c[SEARCH_CANDS - 1].state == C_ASKED)
            return;
        s->n--;
    }
    memmove(&s->c[pos + 1], &s->c[pos], (s->n - pos) * sizeof(c));
    s->c[pos] = c;
    s->n++;
}

static void search_finish(struct dht *d, struct search *s)
{
    if (s->announce) {
        unsigned sent = 0;
        for (size_t i = 0; i < s->n && sent < DHT_K; i++) {
            struct cand *c = &s->c[i];
            if (c->state != C_REPLIED || c->token_len == 0)
                continue;
            query(d, &c->addr, KRPC_ANNOUNCE_PEER, s->target, -1, c->token, c->token_len,
                  s->port);
            sent++;
        }
    }
    dht_peers_cb cb = s->cb;
    void *owner = s->owner;
    s->used = false;
    if (cb != NULL)
        cb(owner, NULL, 0, true);
}

/* Asks the closest untried candidates while fewer than alpha are out; ends when the k closest
 * that can answer have answered. */
static void search_step(struct dht *d, struct search *s, int idx)
{
    unsigned answered = 0;
    bool pending_close = false;
    for (size_t i = 0; i < s->n && answered < DHT_K; i++) {
        struct cand *c = &s->c[i];
        if (c->state == C_FAILED)
            continue;
        if (c->state == C_REPLIED) {
            answered++;
            continue;
        }
        pending_close = true;
        if (c->state == C_NEW && s->inflight < DHT_ALPHA) {
            enum krpc_method m = s->get_peers ? KRPC_GET_PEERS : KRPC_FIND_NODE;
            if (query(d, &c->addr, m, s->target, idx, NULL, 0, 0)) {
                c->state = C_ASKED;
                s->inflight++;
            }
        }
    }
    if (!pending_close && s->inflight == 0) {
        /* Nothing to ask yet (bootstrap under way): wait for the table rather than end. */
        if (s->n == 0 && now_ms(d) - s->started_ms < DHT_WAIT_MS) {
            s->waiting = true;
            return;
        }
        search_finish(d, s);
    }
}

/* The table just gained nodes: lookups waiting for them begin. */
static void wake_waiting(struct dht *d, int family)
{
    for (int i = 0; i < MAX_SEARCHES; i++) {
        struct search *s = &d->searches[i];
        if (!s->used || !s->waiting || s->family != family)
            continue;
        s->waiting = false;
        struct dht_node close[SEARCH_CANDS];
        size_t n = table_closest(family == 4 ? &d->t4 : &d->t6, s->target, close, SEARCH_CANDS);
        for (size_t k = 0; k < n; k++)
            search_add(s, close[k].id, &close[k].addr);
        search_step(d, s, i);
    }
}

/* A new lookup seeded from the routing table; the caller adds more seeds and steps it. */
static int search_new(struct dht *d, const uint8_t target[20], int family, bool get_peers,
                      bool announce, uint16_t port, dht_peers_cb cb, void *owner)
{
    int idx = -1;
    for (int i = 0; i < MAX_SEARCHES && idx < 0; i++)
        if (!d->searches[i].used)
            idx = i;
    if (idx < 0)
        return -1;
    struct search *s = &d->searches[idx];
    memset(s, 0, sizeof(*s));
    s->used = true;
    s->gen = ++d->next_gen;
    memcpy(s->target, target, 20);
    s->family = family;
    s->get_peers = get_peers;
    s->announce = announce;
    s->port = port;
    s->cb = cb;
    s->owner = owner;
    s->started_ms = now_ms(d);
    struct dht_node close[SEARCH_CANDS];
    size_t n = table_closest(family == 4 ? &d->t4 : &d->t6, target, close, SEARCH_CANDS);
    for (size_t i = 0; i < n; i++)
        search_add(s, close[i].id, &close[i].addr);
    return idx;
}

static int search_start(struct dht *d, const uint8_t target[20], int family, bool get_peers,
                        bool announce, uint16_t port, dht_peers_cb cb, void *owner)
{
    int idx = search_new(d, target, family, get_peers, announce, port, cb, owner);
    if (idx < 0)
        return RV_EFULL;
    search_step(d, &d->searches[idx], idx);
    return 0;
}

int dht_get_peers(struct dht *d, const uint8_t info_hash[20], bool announce, uint16_t port,
                  dht_peers_cb cb, void *owner)
{
    int rc = RV_EINVAL;
    /* Each family searches on its own; the caller hears 'done' once per family. */
    if (d->s4.open)
        rc = search_start(d, info_hash, 4, true, announce, port, cb, owner);
    if (d->s6.open) {
        int rc6 = search_start(d, info_hash, 6, true, announce, port, cb, owner);
        rc = rc == 0 ? 0 : rc6;
    }
    return rc;
}

void dht_cancel(struct dht *d, void *owner)
{
    for (int i = 0; i < MAX_SEARCHES; i++)
        if (d->searches[i].used && d->searches[i].owner == owner) {
            d->searches[i].cb = NULL;
            d->searches[i].owner = NULL;
        }
}

void dht_ping(struct dht *d, const struct peer_addr *addr)
{
    if ((addr->family == 4 && d->s4.open) || (addr->family == 6 && d->s6.open))
        query(d, addr, KRPC_PING, NULL, -1, NULL, 0, 0);
}

/* A lookup for our own id: fills the routing table (bootstrap, refresh). */
static void self_lookup(struct dht *d, int family, const struct peer_addr *seeds, size_t n)
{
    int idx = search_new(d, d->id, family, false, false, 0, NULL, NULL);
    if (idx < 0)
        return;
    struct search *s = &d->searches[idx];
    for (size_t i = 0; i < n; i++)
        search_add(s, NULL, &seeds[i]);
    search_step(d, s, idx);
}

/* ---- tokens, the peer store, rate limits ---- */

static void make_token(const struct dht *d, int which, const struct peer_addr *a, uint8_t out[TOKEN_LEN])
{
    uint8_t buf[32], h[20];
    memcpy(buf, d->secret[which], 16);
    memcpy(buf + 16, a->ip, 16);
    sha1(buf, 16 + (a->family == 4 ? 4 : 16), h);
    memcpy(out, h, TOKEN_LEN);
}

static bool token_ok(const struct dht *d, const struct peer_addr *a, const uint8_t *tok, size_t len)
{
    if (len != TOKEN_LEN)
        return false;
    for (int w = 0; w < 2; w++) {
        uint8_t t[TOKEN_LEN];
        make_token(d, w, a, t);
        if (memcmp(t, tok, TOKEN_LEN) == 0)
            return true;
    }
    return false;
}

static struct stored *store_find(struct dht *d, const uint8_t ih[20], bool create)
{
    for (size_t i = 0; i < d->nstore; i++)
        if (memcmp(d->store[i].info_hash, ih, 20) == 0)
            return &d->store[i];
    if (!create || d->nstore == DHT_MAX_STORED_TORRENTS)
        return NULL;
    if (d->nstore == d->capstore) {
        size_t cap = d->capstore ? d->capstore * 2 : 8;
        if (cap > DHT_MAX_STORED_TORRENTS)
            cap = DHT_MAX_STORED_TORRENTS;
        struct stored *g = realloc(d->store, cap * sizeof(*g));
        if (g == NULL)
            return NULL;
        d->store = g;
        d->capstore = cap;
    }
    struct stored *s = &d->store[d->nstore++];
    memset(s, 0, sizeof(*s));
    memcpy(s->info_hash, ih, 20);
    return s;
}

static void store_add(struct dht *d, const uint8_t ih[20], const struct peer_addr *a)
{
    struct stored *s = store_find(d, ih, true);
    if (s == NULL)
        return;
    uint64_t now = now_ms(d);
    size_t oldest = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (memcmp(&s->peers[i], a, sizeof(*a)) == 0) {
            s->at[i] = now;
            return;
        }
        if (s->at[i] < s->at[oldest])
            oldest = i;
    }
    size_t slot = s->n < DHT_MAX_STORED_PEERS ? s->n++ : oldest;
    s->peers[slot] = *a;
    s->at[slot] = now;
}

static void store_expire(struct dht *d, uint64_t now)
{
    for (size_t i = 0; i < d->nstore;) {
        struct stored *s = &d->store[i];
        for (size_t k = 0; k < s->n;) {
            if (now - s->at[k] > DHT_PEER_TTL_MS) {
                s->peers[k] = s->peers[s->n - 1];
                s->at[k] = s->at[s->n - 1];
                s->n--;
            } else {
                k++;
            }
        }
        if (s->n == 0)
            d->store[i] = d->store[--d->nstore];
        else
            i++;
    }
}

/* Token bucket per source address (the port is not part of it: one host, one budget). */
static bool rate_ok(struct dht *d, const struct peer_addr *a, uint64_t now)
{
    struct peer_addr key = *a;
    key.port = 0;
    struct rate_slot *slot = NULL, *victim = NULL;
    for (size_t i = 0; i < RATE_SLOTS && slot == NULL; i++) {
        struct rate_slot *r = &d->rate[i];
        if (r->used && memcmp(&r->addr, &key, sizeof(key)) == 0)
            slot = r;
        else if (victim == NULL || (victim->used && (!r->used || r->last_ms < victim->last_ms)))
            victim = r; /* a free slot, else the one idle longest */
    }
    if (slot == NULL) {
        slot = victim;
        memset(slot, 0, sizeof(*slot));
        slot->used = true;
        slot->addr = key;
        slot->tokens = DHT_RATE_BURST;
        slot->last_ms = now;
    }
    slot->tokens += (double)(now - slot->last_ms) * DHT_RATE_PER_SEC / 1000.0;
    if (slot->tokens > DHT_RATE_BURST)
        slot->tokens = DHT_RATE_BURST;
    slot->last_ms = now;
    if (slot->tokens < 1) {
        d->st.rate_limited++;
        slot->limited_ms = now;
        return false;
    }
    slot->tokens -= 1;
    return true;
}

/* ---- answering ---- */

static void reply_nodes(struct dht *d, const struct krpc_msg *m, const struct peer_addr *from,
                        const uint8_t *token, const struct peer_addr *values, size_t nvalues)
{
    struct krpc_node nodes[2 * DHT_K];
    size_t n = 0;
    bool want4 = m->want4 || (!m->want4 && !m->want6 && from->family == 4);
    bool want6 = m->want6 || (!m->want4 && !m->want6 && from->family == 6);
    struct dht_node close[DHT_K];
    const uint8_t *target = m->has_target ? m->target : m->id;
    if (want4) {
        size_t k = table_closest(&d->t4, target, close, DHT_K);
        for (size_t i = 0; i < k; i++) {
            memcpy(nodes[n].id, close[i].id, 20);
            nodes[n++].addr = close[i].addr;
        }
    }
    if (want6) {
        size_t k = table_closest(&d->t6, target, close, DHT_K);
        for (size_t i = 0; i < k; i++) {
            memcpy(nodes[n].id, close[i].id, 20);
            nodes[n++].addr = close[i].addr;
        }
    }
    struct buf b;
    buf_init(&b, KRPC_MAX_PACKET);
    if (krpc_put_response(&b, m->tid, m->tid_len, d->id, nodes, n, values, nvalues, token,
                          token ? TOKEN_LEN : 0, from) == 0)
        send_to(d, from, &b);
    buf_free(&b);
}

/* An answer with our id only (ping, announce_peer). */
static void reply_plain(struct dht *d, const struct krpc_msg *m, const struct peer_addr *from)
{
    struct buf b;
    buf_init(&b, KRPC_MAX_PACKET);
    if (krpc_put_response(&b, m->tid, m->tid_len, d->id, NULL, 0, NULL, 0, NULL, 0, from) == 0)
        send_to(d, from, &b);
    buf_free(&b);
}

static void send_error(struct dht *d, const struct krpc_msg *m, const struct peer_addr *from,
                       int code, const char *msg)
{
    struct buf b;
    buf_init(&b, KRPC_MAX_PACKET);
    if (krpc_put_error(&b, m->tid, m->tid_len, code, msg) == 0)
        send_to(d, from, &b);
    buf_free(&b);
}

static void on_query(struct dht *d, const struct krpc_msg *m, const struct peer_addr *from,
                     uint64_t now)
{
    d->st.queries_in++;
    if (!rate_ok(d, from, now))
        return;
    /* BEP 43 read-only nodes do not go in the table. */
    if (!m->read_only) {
        bool ver = dht_id_verified(m->id, from);
        if (ver || !d->opts.enforce_bep42)
            table_update(from->family == 4 ? &d->t4 : &d->t6, m->id, from, false, ver, now, NULL);
    }
    switch (m->method) {
    case KRPC_PING:
        reply_plain(d, m, from);
        break;
    case KRPC_FIND_NODE:
        reply_nodes(d, m, from, NULL, NULL, 0);
        break;
    case KRPC_GET_PEERS: {
        uint8_t tok[TOKEN_LEN];
        make_token(d, 0, from, tok);
        struct stored *s = store_find(d, m->target, false);
        struct peer_addr vals[50];
        size_t nv = 0;
        for (size_t i = 0; s != NULL && i < s->n && nv < 50; i++)
            if (s->peers[i].family == from->family)
                vals[nv++] = s->peers[i];
        reply_nodes(d, m, from, tok, vals, nv);
        break;
    }
    case KRPC_ANNOUNCE_PEER: {
        if (!token_ok(d, from, m->token, m->token_len)) {
            send_error(d, m, from, 203, "bad token");
            return;
        }
        struct peer_addr p = *from;
        if (!m->implied_port)
            p.port = m->port;
        store_add(d, m->target, &p);
        reply_plain(d, m, from);
        break;
    }
    default:
        send_error(d, m, from, 204, "method unknown");
        break;
    }
}

static void on_response(struct dht *d, const struct krpc_msg *m, const struct peer_addr *from,
                        uint64_t now)
{
    struct pending *p = NULL;
    for (size_t i = 0; i < MAX_PENDING && p == NULL; i++)
        if (d->pend[i].used && m->tid_len == 4 && memcmp(d->pend[i].tid, m->tid, 4) == 0 &&
            memcmp(&d->pend[i].addr, from, sizeof(*from)) == 0)
            p = &d->pend[i];
    if (p == NULL)
        return; /* not ours, or from another address than asked: ignored */
    p->used = false;
    if (m->type == KRPC_ERROR) {
        /* An error answers nothing: for a lookup, the node failed. */
        struct search *s = p->search >= 0 ? &d->searches[p->search] : NULL;
        if (s == NULL || !s->used || s->gen != p->gen)
            return;
        if (s->inflight > 0)
            s->inflight--;
        for (size_t k = 0; k < s->n; k++)
            if (memcmp(&s->c[k].addr, from, sizeof(*from)) == 0 && s->c[k].state == C_ASKED)
                s->c[k].state = C_FAILED;
        search_step(d, s, p->search);
        return;
    }
    d->st.replies_in++;
    if (m->has_ip && !is_local(&m->ip)) {
        d->external = m->ip;
        d->has_external = true;
    }
    bool ver = dht_id_verified(m->id, from);
    struct dht_node *ping = NULL;
    enum table_result tr = TABLE_IGNORED;
    if (ver || !d->opts.enforce_bep42)
        tr = table_update(from->family == 4 ? &d->t4 : &d->t6, m->id, from, true, ver, now, &ping);
    if (ping != NULL)
        dht_ping(d, &ping->addr);
    if (tr == TABLE_ADDED || tr == TABLE_REPLACED)
        wake_waiting(d, from->family);
    if (p->search < 0)
        return;
    struct search *s = &d->searches[p->search];
    if (!s->used || s->gen != p->gen)
        return;
    if (s->inflight > 0)
        s->inflight--;
    for (size_t i = 0; i < s->n; i++) {
        struct cand *c = &s->c[i];
        if (memcmp(&c->addr, from, sizeof(*from)) != 0)
            continue;
        c->state = C_REPLIED;
        if (!c->id_known) {
            /* Its real id places it: take it out and add it again. */
            struct cand keep = *c;
            memmove(&s->c[i], &s->c[i + 1], (s->n - i - 1) * sizeof(*c));
            s->n--;
            memcpy(keep.id, m->id, 20);
            keep.id_known = true;
            size_t pos = s->n;
            while (pos > 0 && dht_closer(s->target, keep.id, s->c[pos - 1].id) < 0)
                pos--;
            memmove(&s->c[pos + 1], &s->c[pos], (s->n - pos) * sizeof(keep));
            s->c[pos] = keep;
            s->n++;
            c = &s->c[pos];
        }
        memcpy(c->token, m->token, m->token_len);
        c->token_len = m->token_len;
        break;
    }
    for (size_t i = 0; i < m->nnodes; i++)
        if (m->nodes[i].addr.family == s->family)
            search_add(s, m->nodes[i].id, &m->nodes[i].addr);
    if (m->nvalues > 0 && s->cb != NULL)
        s->cb(s->owner, m->values, m->nvalues, false);
    if (s->used)
        search_step(d, s, p->search);
}

static void on_packet(struct dht *d, const uint8_t *data, size_t len, const struct sockaddr *sa)
{
    struct peer_addr from;
    memset(&from, 0, sizeof(from));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
        from.family = 4;
        memcpy(from.ip, &s->sin_addr, 4);
        from.port = ntohs(s->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
        from.family = 6;
        memcpy(from.ip, &s->sin6_addr, 16);
        from.port = ntohs(s->sin6_port);
    } else {
        return;
    }
    struct krpc_msg *m = malloc(sizeof(*m));
    rv_error_t err;
    if (m == NULL)
        return;
    uint64_t now = now_ms(d);
    if (krpc_parse(data, len, m, &err) != 0) {
        d->st.bad_packets++;
        free(m);
        return;
    }
    if (m->type == KRPC_QUERY)
        on_query(d, m, &from, now);
    else
        on_response(d, m, &from, now);
    free(m);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    struct dht *d = h->data;
    *b = uv_buf_init(d->rbuf, sizeof(d->rbuf));
}

static void on_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *b, const struct sockaddr *sa,
                    unsigned flags)
{
    struct dht *d = h->data;
    if (n <= 0 || sa == NULL || (flags & UV_UDP_PARTIAL) || d->closing)
        return;
    on_packet(d, (const uint8_t *)b->base, (size_t)n, sa);
}

/* ---- the timer: timeouts, lookups, maintenance ---- */

static void on_tick(uv_timer_t *h)
{
    struct dht *d = h->data;
    uint64_t now = now_ms(d);
    for (size_t i = 0; i < MAX_PENDING; i++) {
        struct pending *p = &d->pend[i];
        if (!p->used || now - p->sent_ms < DHT_QUERY_TIMEOUT_MS)
            continue;
        p->used = false;
        d->st.timeouts++;
        table_failed(p->addr.family == 4 ? &d->t4 : &d->t6, &p->addr);
        if (p->search < 0 || !d->searches[p->search].used ||
            d->searches[p->search].gen != p->gen)
            continue;
        struct search *s = &d->searches[p->search];
        if (s->inflight > 0)
            s->inflight--;
        for (size_t k = 0; k < s->n; k++)
            if (memcmp(&s->c[k].addr, &p->addr, sizeof(p->addr)) == 0 && s->c[k].state == C_ASKED)
                s->c[k].state = C_FAILED;
        search_step(d, s, (int)p->search);
    }
    for (int i = 0; i < MAX_SEARCHES; i++) {
        struct search *s = &d->searches[i];
        if (s->used && s->waiting && now - s->started_ms >= DHT_WAIT_MS) {
            s->waiting = false;
            search_finish(d, s);
        }
    }
    if (now - d->secret_ms >= DHT_TOKEN_ROTATE_MS) {
        memcpy(d->secret[1], d->secret[0], 16);
        rand_bytes(d->secret[0], 16);
        d->secret_ms = now;
    }
    static const int fam[2] = {4, 6};
    for (int f = 0; f < 2; f++) {
        struct dht_table *t = fam[f] == 4 ? &d->t4 : &d->t6;
        if (!(fam[f] == 4 ? d->s4.open : d->s6.open) || table_count(t, NULL, now) == 0)
            continue;
        uint8_t target[20];
        if (table_stale_bucket(t, now, target))
            search_start(d, target, fam[f], false, false, 0, NULL, NULL);
    }
    if (now % 60000 < TICK_MS)
        store_expire(d, now);
}

/* ---- the saved routing table ---- */

/* id_only: take the saved node id (before the tables exist); else seed a lookup for our id
 * with the saved nodes, so a restart is warm. */
static void load_state(struct dht *d, bool id_only)
{
    uint8_t *data;
    size_t len;
    rv_error_t err;
    if (d->state_file == NULL || fs_read_file(d->state_file, 1 << 20, &data, &len, &err) != 0)
        return;
    struct bdoc doc;
    memset(&doc, 0, sizeof(doc));
    if (bencode_decode(&doc, data, len, 0, NULL, &err) == 0) {
        const struct bnode *r = bencode_root(&doc);
        const struct bnode *id = bdict_get_type(r, "id", BT_STR);
        if (id != NULL && id->slen == 20 && id_only)
            memcpy(d->id, id->s, 20);
        /* BEP 42: where our external address is known, our id is derived from it. */
        const struct bnode *ip = bdict_get_type(r, "ip", BT_STR);
        if (id_only && ip != NULL && (ip->slen == 4 || ip->slen == 16)) {
            struct peer_addr ext = {.family = (uint8_t)(ip->slen == 4 ? 4 : 6)};
            memcpy(ext.ip, ip->s, ip->slen);
            d->external = ext;
            d->has_external = true;
            if (!dht_id_verified(d->id, &ext))
                dht_id_for(&ext, (uint8_t)(rand_u32() & 7), d->id);
        }
        static const char *const keys[2] = {"nodes", "nodes6"};
        for (int f = 0; !id_only && f < 2; f++) {
            const struct bnode *n = bdict_get_type(r, keys[f], BT_STR);
            size_t each = f == 0 ? 26 : 38, alen = f == 0 ? 4 : 16;
            struct peer_addr seeds[64];
            size_t ns = 0;
            for (size_t i = 0; n != NULL && i + each <= n->slen && ns < 64; i += each) {
                struct peer_addr a = {.family = (uint8_t)(f == 0 ? 4 : 6)};
                memcpy(a.ip, n->s + i + 20, alen);
                a.port = (uint16_t)(n->s[i + 20 + alen] << 8 | n->s[i + 21 + alen]);
                seeds[ns++] = a;
            }
            if (ns > 0 && (f == 0 ? d->s4.open : d->s6.open))
                self_lookup(d, f == 0 ? 4 : 6, seeds, ns);
        }
    }
    bencode_free(&doc);
    free(data);
}

static void save_run(uv_work_t *w)
{
    struct dht *d = w->data;
    rv_error_t err;
    /* The cache folder may not exist yet. */
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", d->state_file);
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        for (char *q = dir + 1; *q; q++) {
            if (*q == '/') {
                *q = '\0';
                mkdir(dir, 0700);
                *q = '/';
            }
        }
        mkdir(dir, 0700);
    }
    (void)fs_write_atomic(d->state_file, d->save_bytes, d->save_len, &err); /* best effort */
}

static void dht_free_now(struct dht *d);

static void save_done(uv_work_t *w, int status)
{
    (void)status;
    struct dht *d = w->data;
    d->saving = false;
    if (d->open_handles == 0 && d->resolving == 0)
        dht_free_now(d);
}

/* Encodes the closest nodes of each family and writes them on a worker. */
static void save_state(struct dht *d)
{
    if (d->state_file == NULL)
        return;
    struct bv *root = bv_dict();
    if (root == NULL)
        return;
    int rc = bv_dict_set(root, "id", bv_str(d->id, 20));
    if (rc == 0 && d->has_external)
        rc = bv_dict_set(root, "ip", bv_str(d->external.ip, d->external.family == 4 ? 4 : 16));
    for (int f = 0; rc == 0 && f < 2; f++) {
        struct dht_table *t = f == 0 ? &d->t4 : &d->t6;
        struct dht_node all[64];
        size_t n = table_closest(t, d->id, all, 64);
        uint8_t buf[64 * 38];
        size_t len = 0, alen = f == 0 ? 4 : 16;
        for (size_t i = 0; i < n; i++) {
            memcpy(buf + len, all[i].id, 20);
            memcpy(buf + len + 20, all[i].addr.ip, alen);
            buf[len + 20 + alen] = (uint8_t)(all[i].addr.port >> 8);
            buf[len + 21 + alen] = (uint8_t)all[i].addr.port;
            len += 22 + alen;
        }
        rc = bv_dict_set(root, f == 0 ? "nodes" : "nodes6", bv_str(buf, len));
    }
    struct buf b;
    buf_init(&b, 1 << 20);
    if (rc == 0 && bv_encode(root, &b) == 0) {
        d->save_bytes = buf_steal(&b, &d->save_len);
        d->save_work.data = d;
        d->saving = uv_queue_work(d->loop, &d->save_work, save_run, save_done) == 0;
    }
    buf_free(&b);
    bv_free(root);
}

/* ---- bootstrap ---- */

static void dht_free_now(struct dht *d)
{
    void (*done)(void *) = d->close_done;
    void *ud = d->close_ud;
    free(d->save_bytes);
    free(d->store);
    free(d->state_file);
    free(d);
    if (done != NULL)
        done(ud);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct dht *d = req->data;
    d->resolving--;
    d->resolve_active[req - d->resolve] = false;
    struct peer_addr seeds4[8], seeds6[8];
    size_t n4 = 0, n6 = 0;
    for (struct addrinfo *ai = res; status == 0 && ai != NULL; ai = ai->ai_next) {
        struct peer_addr a;
        memset(&a, 0, sizeof(a));
        if (ai->ai_family == AF_INET && n4 < 8) {
            const struct sockaddr_in *s = (const struct sockaddr_in *)ai->ai_addr;
            a.family = 4;
            memcpy(a.ip, &s->sin_addr, 4);
            a.port = ntohs(s->sin_port);
            seeds4[n4++] = a;
        } else if (ai->ai_family == AF_INET6 && n6 < 8) {
            const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ai->ai_addr;
            a.family = 6;
            memcpy(a.ip, &s->sin6_addr, 16);
            a.port = ntohs(s->sin6_port);
            seeds6[n6++] = a;
        }
    }
    if (res != NULL)
        uv_freeaddrinfo(res);
    if (d->closing) {
        if (d->resolving == 0 && d->open_handles == 0 && !d->saving)
            dht_free_now(d);
        return;
    }
    if (n4 > 0 && d->s4.open)
        self_lookup(d, 4, seeds4, n4);
    if (n6 > 0 && d->s6.open)
        self_lookup(d, 6, seeds6, n6);
}

void dht_bootstrap_node(struct dht *d, const char *hp)
{
    struct peer_addr a;
    if (d->closing)
        return;
    if (peer_addr_parse(hp, &a) == 0) {
        if ((a.family == 4 && d->s4.open) || (a.family == 6 && d->s6.open))
            self_lookup(d, a.family, &a, 1);
        return;
    }
    /* A name: resolved on a libuv worker, never on the loop. */
    int slot = -1;
    for (int i = 0; i < MAX_BOOTSTRAP && slot < 0; i++)
        if (!d->resolve_active[i])
            slot = i;
    char host[256];
    const char *colon = strrchr(hp, ':');
    if (slot < 0 || colon == NULL || (size_t)(colon - hp) >= sizeof(host))
        return;
    memcpy(host, hp, (size_t)(colon - hp));
    host[colon - hp] = '\0';
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV;
    d->resolve[slot].data = d;
    if (uv_getaddrinfo(d->loop, &d->resolve[slot], on_resolved, host, colon + 1, &hints) == 0) {
        d->resolving++;
        d->resolve_active[slot] = true;
    }
}

static void bootstrap(struct dht *d)
{
    for (size_t i = 0; i < d->opts.bootstrap_count && i < MAX_BOOTSTRAP; i++)
        dht_bootstrap_node(d, d->opts.bootstrap[i]);
}

/* ---- life cycle ---- */

static int open_sock(struct dht *d, struct sock *s, int family, const char *addr, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    int rc = family == 4 ? uv_ip4_addr(addr ? addr : "0.0.0.0", port, (struct sockaddr_in *)&ss)
                         : uv_ip6_addr(addr ? addr : "::", port, (struct sockaddr_in6 *)&ss);
    if (rc != 0)
        return rc;
    uv_udp_init(d->loop, &s->udp);
    s->udp.data = d;
    d->open_handles++;
    rc = uv_udp_bind(&s->udp, (const struct sockaddr *)&ss, family == 6 ? UV_UDP_IPV6ONLY : 0);
    if (rc == 0)
        rc = uv_udp_recv_start(&s->udp, on_alloc, on_recv);
    s->family = family;
    s->open = rc == 0;
    if (rc == 0) {
        struct sockaddr_storage got;
        int len = sizeof(got);
        if (uv_udp_getsockname(&s->udp, (struct sockaddr *)&got, &len) == 0)
            d->port = ntohs(family == 4 ? ((struct sockaddr_in *)&got)->sin_port
                                        : ((struct sockaddr_in6 *)&got)->sin6_port);
    }
    return rc;
}

int dht_new(uv_loop_t *loop, const struct dht_opts *opts, struct dht **out, rv_error_t *err)
{
    struct dht *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return err_set(err, RV_ENOMEM, "out of memory");
    d->loop = loop;
    d->opts = *opts;
    if (opts->state_file != NULL)
        d->state_file = strdup(opts->state_file);
    rand_bytes(d->id, 20);
    rand_bytes(d->secret[0], 16);
    memcpy(d->secret[1], d->secret[0], 16);
    d->secret_ms = uv_now(loop);
    uint16_t port = opts->port;
    bool want4 = true, want6 = true;
    if (opts->bind_addr != NULL) {
        want4 = strchr(opts->bind_addr, ':') == NULL;
        want6 = !want4;
    }
    int rc4 = -1, rc6 = -1;
    if (want4)
        rc4 = open_sock(d, &d->s4, 4, opts->bind_addr, port);
    if (want4 && rc4 == 0)
        port = d->port; /* IPv6 on the same port */
    if (want6)
        rc6 = open_sock(d, &d->s6, 6, opts->bind_addr, port);
    if (!d->s4.open && !d->s6.open) {
        struct dht *tmp = d;
        dht_close(tmp, NULL, NULL); /* frees once the handles are closed */
        return err_set(err, RV_ENET, "cannot open the DHT's UDP port %u: %s", (unsigned)opts->port,
                       uv_strerror(want4 ? rc4 : rc6));
    }
    load_state(d, true); /* the saved id, before any query */
    table_init(&d->t4, d->id, 4);
    table_init(&d->t6, d->id, 6);
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    d->open_handles++;
    uv_timer_start(&d->timer, on_tick, TICK_MS, TICK_MS);
    uv_unref((uv_handle_t *)&d->timer);
    if (d->s4.open)
        uv_unref((uv_handle_t *)&d->s4.udp);
    if (d->s6.open)
        uv_unref((uv_handle_t *)&d->s6.udp);
    load_state(d, false); /* the saved nodes seed a lookup for our id */
    bootstrap(d);
    *out = d;
    return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct dht *d = h->data;
    if (--d->open_handles > 0 || d->resolving > 0 || d->saving)
        return;
    dht_free_now(d);
}

void dht_close(struct dht *d, void (*done)(void *ud), void *ud)
{
    if (d->closing)
        return;
    d->closing = true;
    if (d->s4.open || d->s6.open)
        save_state(d);
    d->close_done = done;
    d->close_ud = ud;
    for (int i = 0; i < MAX_SEARCHES; i++)
        d->searches[i].used = false;
    for (int i = 0; i < MAX_BOOTSTRAP; i++)
        if (d->resolve_active[i])
            uv_cancel((uv_req_t *)&d->resolve[i]);
    if (d->open_handles == 0) {
        if (d->resolving == 0 && !d->saving)
            dht_free_now(d);
        return;
    }
    if (d->timer.data == d && !uv_is_closing((uv_handle_t *)&d->timer))
        uv_close((uv_handle_t *)&d->timer, on_handle_closed);
    if (d->s4.udp.type == UV_UDP && !uv_is_closing((uv_handle_t *)&d->s4.udp))
        uv_close((uv_handle_t *)&d->s4.udp, on_handle_closed);
    if (d->s6.udp.type == UV_UDP && !uv_is_closing((uv_handle_t *)&d->s6.udp))
        uv_close((uv_handle_t *)&d->s6.udp, on_handle_closed);
}

void dht_stats(const struct dht *d, struct dht_stats *st)
{
    *st = d->st;
    uint64_t now = now_ms(d);
    st->nodes4 = table_count(&d->t4, &st->good4, now);
    st->nodes6 = table_count(&d->t6, &st->good6, now);
    st->verified = 0;
    for (int f = 0; f < 2; f++) {
        const struct dht_table *t = f == 0 ? &d->t4 : &d->t6;
        for (size_t i = 0; i < t->nb; i++)
            for (size_t k = 0; k < t->buckets[i].n; k++)
                st->verified += t->buckets[i].nodes[k].verified;
    }
    st->searches = 0;
    for (int i = 0; i < MAX_SEARCHES; i++)
        st->searches += d->searches[i].used;
    st->stored_torrents = d->nstore;
    st->stored_peers = 0;
    for (size_t i = 0; i < d->nstore; i++)
        st->stored_peers += d->store[i].n;
    st->limited_sources = 0;
    for (int i = 0; i < RATE_SLOTS; i++)
        st->limited_sources += d->rate[i].used && d->rate[i].limited_ms != 0 &&
                               now - d->rate[i].limited_ms < 60000;
    st->port = d->port;
}

uint16_t dht_port(const struct dht *d)
{
    return d->port;
}
