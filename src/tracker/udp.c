/* UDP tracker client (BEP 15, BEP 41) on a libuv loop. One socket per address family, on an
 * ephemeral port, carries every request; replies are routed by transaction id and source. One
 * timer serves every request's retransmission deadline, so a request owns no handle and can be
 * freed at once when canceled (except while its name lookup runs on the thread pool). */
#include "tracker/udp.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/rand.h>

#include "util/be.h"
#include "util/err.h"

#define UDP_DEFAULT_TIMEOUT_MS 15000 /* BEP 15: 15 * 2^n seconds */
#define UDP_DEFAULT_RETRIES 8        /* BEP 15: n goes up to 8 (3840 s) */
#define UDP_CONN_ID_LIFE_MS 60000    /* BEP 15: a connection id is good for one minute */
#define UDP_CONN_CACHE_MAX 64        /* trackers whose connection ids are remembered */
#define UDP_URL_DATA_MAX 1024        /* BEP 41 path+query; fits one packet with its headers */
#define UDP_RECV_BUF 65536           /* the largest UDP payload, so no reply is cut short */

enum sock_state { SOCK_NONE, SOCK_OPEN, SOCK_CLOSING };

struct udp_sock {
    uv_udp_t h;
    enum sock_state state;
};

struct conn_entry {
    struct sockaddr_storage addr;
    uint64_t id;
    uint64_t obtained; /* uv_now() when the connect reply came */
};

enum req_kind { REQ_ANNOUNCE, REQ_SCRAPE };
enum req_state {
    ST_RESOLVING,  /* the name lookup runs */
    ST_CONNECTING, /* a connect request is out */
    ST_REQUESTING, /* the announce or scrape is out */
    ST_FAILED      /* failed before anything was sent: reported from the timer, never from
                      inside udp_tr_announce/udp_tr_scrape */
};

struct udp_tr_req {
    struct udp_tr *u;
    struct udp_tr_req *prev, *next; /* u->reqs; a canceled lookup is in no list */
    enum req_kind kind;
    enum req_state state;
    bool canceled;    /* canceled while resolving: freed by the lookup's callback */
    bool reconnected; /* already reconnected once after an error reply */
    char *host;       /* for messages and the lookup */
    char port[6];
    char *url_data;           /* BEP 41 path and query, or NULL */
    struct announce_req areq; /* trackerid is NULL: UDP has none */
    uint8_t info_hash[20];
    tracker_announce_cb announce_cb;
    tracker_scrape_cb scrape_cb;
    void *ud;
    uv_getaddrinfo_t gai;
    struct sockaddr_storage addr;
    uint64_t connection;
    bool fresh_connection; /* connection id came from this request's own connect */
    uint32_t transaction;
    unsigned n;          /* BEP 15's n: retransmissions so far */
    unsigned sends;      /* datagrams sent */
    uint64_t waited_ms;  /* sum of the timeouts that expired */
    uint64_t deadline;   /* uv_now() at which the current attempt times out */
    rv_error_t fail_err; /* ST_FAILED: what to report */
};

struct udp_tr {
    uv_loop_t *loop;
    unsigned timeout_ms, max_retries;
    char bind_addr[64]; /* numeric source address, or "" for any */
    struct udp_sock sock4, sock6;
    uv_timer_t timer;
    bool timer_open;
    struct udp_tr_req *reqs;
    unsigned lookups; /* canceled requests whose name lookups have not called back */
    unsigned closing_handles;
    bool closing;
    void (*close_cb)(void *ud);
    void *close_ud;
    struct conn_entry cache[UDP_CONN_CACHE_MAX];
    size_t cache_len;
    uint8_t *rbuf;
};

/* ---- helpers ---- */

static bool addr_equal(const struct sockaddr_storage *a, const struct sockaddr *b)
{
    if (a->ss_family != b->sa_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        const struct sockaddr_in *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return false;
}

/* True while r has a datagram out and may take a reply. */
static bool req_waits(const struct udp_tr_req *r)
{
    return r->state == ST_CONNECTING || r->state == ST_REQUESTING;
}

/* BEP 15's timeout * 2^n, saturating rather than overflowing for absurd retry counts. */
static uint64_t attempt_wait(const struct udp_tr *u, unsigned n)
{
    return (uint64_t)u->timeout_ms << (n < 31 ? n : 31);
}

/* ---- URL ---- */

static bool host_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

/* udp://host:port[/path][?query]: host (a name, IPv4 literal or [IPv6] literal), the port
 * as text, and BEP 41's url data (everything from the path on, NULL when empty). */
static int parse_url(const char *url, char **host, char *port, char **url_data, rv_error_t *err)
{
    const char *p, *h, *he;

    *host = *url_data = NULL;
    if (strncasecmp(url, "udp://", 6) != 0)
        return err_set(err, RV_EINVAL, "'%.200s' is not a udp:// URL", url);
    p = url + 6;
    if (*p == '[') {
        h = p + 1;
        he = strchr(h, ']');
        if (he == NULL)
            return err_set(err, RV_EINVAL, "unclosed '[' in tracker URL '%.200s'", url);
        for (const char *q = h; q < he; q++)
            if (!((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f') ||
                  (*q >= 'A' && *q <= 'F') || *q == ':' || *q == '.'))
                return err_set(err, RV_EINVAL, "bad IPv6 address in tracker URL '%.200s'", url);
        p = he + 1;
    } else {
        h = p;
        while (host_char_ok(*p))
            p++;
        he = p;
    }
    if (he == h)
        return err_set(err, RV_EINVAL, "tracker URL '%.200s' has no host", url);
    if (*p != ':' && *p != '\0' && *p != '/' && *p != '?')
        return err_set(err, RV_EINVAL, "unexpected '%c' after the host in tracker URL '%.200s'", *p,
                       url);
    if (*p != ':' || p[1] < '0' || p[1] > '9')
        return err_set(err, RV_EINVAL, "tracker URL '%.200s' has no port", url);
    p++;
    unsigned long v = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 65535)
            return err_set(err, RV_EINVAL, "port out of range in tracker URL '%.200s'", url);
        p++;
    }
    if (v == 0)
        return err_set(err, RV_EINVAL, "tracker URL '%.200s' has port 0", url);
    if (*p != '\0' && *p != '/' && *p != '?')
        return err_set(err, RV_EINVAL, "unexpected '%c' after the port in tracker URL '%.200s'", *p,
                       url);
    /* A fragment is the client's own business and never sent (RFC 3986 section 3.5). */
    size_t dlen = strcspn(p, "#");
    if (dlen > UDP_URL_DATA_MAX)
        return err_set(err, RV_EINVAL,
                       "path and query of %zu bytes in tracker URL are too long (at most %d)", dlen,
                       UDP_URL_DATA_MAX);
    snprintf(port, 6, "%lu", v);
    *host = strndup(h, (size_t)(he - h));
    if (*host == NULL)
        goto nomem;
    if (dlen > 0) {
        *url_data = strndup(p, dlen);
        if (*url_data == NULL)
            goto nomem;
    }
    return 0;
nomem:
    free(*host);
    *host = NULL;
    return err_set(err, RV_ENOMEM, "out of memory");
}

/* ---- connection id cache ---- */

static struct conn_entry *cache_find(struct udp_tr *u, const struct sockaddr_storage *addr)
{
    uint64_t now = uv_now(u->loop);

    for (size_t i = 0; i < u->cache_len; i++) {
        struct conn_entry *e = &u->cache[i];
        if (!addr_equal(&e->addr, (const struct sockaddr *)addr))
            continue;
        if (now - e->obtained < UDP_CONN_ID_LIFE_MS)
            return e;
        *e = u->cache[--u->cache_len];
        return NULL;
    }
    return NULL;
}

static void cache_drop(struct udp_tr *u, const struct sockaddr_storage *addr)
{
    for (size_t i = 0; i < u->cache_len; i++)
        if (addr_equal(&u->cache[i].addr, (const struct sockaddr *)addr)) {
            u->cache[i] = u->cache[--u->cache_len];
            return;
        }
}

static void cache_put(struct udp_tr *u, const struct sockaddr_storage *addr, uint64_t id)
{
    uint64_t now = uv_now(u->loop);
    struct conn_entry *e = NULL;

    for (size_t i = 0; i < u->cache_len && e == NULL; i++)
        if (addr_equal(&u->cache[i].addr, (const struct sockaddr *)addr))
            e = &u->cache[i];
    if (e == NULL && u->cache_len < UDP_CONN_CACHE_MAX)
        e = &u->cache[u->cache_len++];
    if (e == NULL) { /* full: replace the oldest */
        e = &u->cache[0];
        for (size_t i = 1; i < u->cache_len; i++)
            if (u->cache[i].obtained < e->obtained)
                e = &u->cache[i];
    }
    e->addr = *addr;
    e->id = id;
    e->obtained = now;
}

/* ---- request list and timer ---- */

static void list_remove(struct udp_tr *u, struct udp_tr_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else if (u->reqs == r)
        u->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void req_free(struct udp_tr_req *r)
{
    free(r->host);
    free(r->url_data);
    free(r);
}

static void on_timer(uv_timer_t *t);

/* Points the one timer at the earliest deadline of the requests waiting for a reply. */
static void timer_arm(struct udp_tr *u)
{
    uint64_t first = UINT64_MAX, now = uv_now(u->loop);

    if (!u->timer_open)
        return;
    for (struct udp_tr_req *r = u->reqs; r; r = r->next)
        if (r->state != ST_RESOLVING && r->deadline < first)
            first = r->deadline;
    if (first == UINT64_MAX)
        uv_timer_stop(&u->timer);
    else
        uv_timer_start(&u->timer, on_timer, first > now ? first - now : 0, 0);
}

/* Ends r with an error: removes it, calls its callback, frees it. */
static void req_fail(struct udp_tr_req *r, const rv_error_t *err)
{
    list_remove(r->u, r);
    if (r->kind == REQ_ANNOUNCE)
        r->announce_cb(r->ud, err->code, NULL, err);
    else
        r->scrape_cb(r->ud, err->code, NULL, err);
    req_free(r);
}

/* ---- sockets ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct udp_tr *u = h->data;

    (void)suggested;
    /* One datagram is read and handled at a time (no recvmmsg), so one buffer serves both
     * sockets. */
    *b = uv_buf_init((char *)u->rbuf, UDP_RECV_BUF);
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *b, const struct sockaddr *from,
                    unsigned flags);

static void on_sock_closed(uv_handle_t *h);

static uv_udp_t *sock_get(struct udp_tr *u, int family, rv_error_t *err)
{
    struct udp_sock *s = family == AF_INET6 ? &u->sock6 : &u->sock4;
    struct sockaddr_storage any;
    unsigned bind_flags = 0;
    int rc;

    if (s->state == SOCK_OPEN)
        return &s->h;
    if (s->state == SOCK_CLOSING) {
        err_set(err, RV_ENET, "the IPv%c socket is still closing after an error",
                family == AF_INET6 ? '6' : '4');
        return NULL;
    }
    memset(&any, 0, sizeof(any));
    if (family == AF_INET6) {
        /* The source address, when one was asked for and it is of this family. */
        if (u->bind_addr[0] == '\0' ||
            uv_ip6_addr(u->bind_addr, 0, (struct sockaddr_in6 *)&any) != 0)
            uv_ip6_addr("::", 0, (struct sockaddr_in6 *)&any);
        bind_flags = UV_UDP_IPV6ONLY;
    } else {
        if (u->bind_addr[0] == '\0' ||
            uv_ip4_addr(u->bind_addr, 0, (struct sockaddr_in *)&any) != 0)
            uv_ip4_addr("0.0.0.0", 0, (struct sockaddr_in *)&any);
    }
    rc = uv_udp_init_ex(u->loop, &s->h, (unsigned)family);
    if (rc < 0) {
        err_set(err, RV_ENET, "cannot create an IPv%c UDP socket: %s",
                family == AF_INET6 ? '6' : '4', uv_strerror(rc));
        return NULL;
    }
    s->h.data = u;
    s->state = SOCK_OPEN;
    rc = uv_udp_bind(&s->h, (const struct sockaddr *)&any, bind_flags);
    if (rc == 0)
        rc = uv_udp_recv_start(&s->h, on_alloc, on_recv);
    if (rc < 0) {
        err_set(err, RV_ENET, "cannot bind an IPv%c UDP socket: %s", family == AF_INET6 ? '6' : '4',
                uv_strerror(rc));
        s->state = SOCK_CLOSING;
        u->closing_handles++;
        uv_close((uv_handle_t *)&s->h, on_sock_closed);
        return NULL;
    }
    return &s->h;
}

/* ---- sending ---- */

static int new_transaction(struct udp_tr *u, struct udp_tr_req *r, rv_error_t *err)
{
    /* Unique among the requests waiting, so that a reply can only be taken by one. */
    for (int tries = 0; tries < 16; tries++) {
        uint8_t b[4];
        bool used = false;

        if (RAND_bytes(b, sizeof(b)) != 1)
            return err_set(err, RV_EIO, "no random bytes for a transaction id");
        uint32_t t = be_get32(b);
        for (struct udp_tr_req *o = u->reqs; o && !used; o = o->next)
            used = o != r && req_waits(o) && o->transaction == t;
        if (!used) {
            r->transaction = t;
            return 0;
        }
    }
    return err_set(err, RV_EIO, "no unused transaction id");
}

/* Sends r's next datagram for its state (a connect, or the request with the connection id)
 * and sets its deadline to timeout * 2^n (BEP 15). Fails r (calling back) on error. */
static void req_send(struct udp_tr_req *r)
{
    struct udp_tr *u = r->u;
    uint8_t pkt[UDP_MAX_PACKET];
    size_t len;
    rv_error_t err;
    uv_udp_t *s;

    if (!r->fresh_connection) {
        /* BEP 15: a connection id serves any request for a minute, then a new one is needed.
         * The cache holds the tracker's id while it is good, whichever request got it. */
        struct conn_entry *e = cache_find(u, &r->addr);
        if (e != NULL) {
            r->connection = e->id;
            r->state = ST_REQUESTING;
        } else {
            r->state = ST_CONNECTING;
        }
    }
    if (new_transaction(u, r, &err) < 0)
        goto fail;
    if (r->state == ST_CONNECTING)
        len = udp_build_connect(r->transaction, pkt);
    else if (r->kind == REQ_ANNOUNCE)
        len = udp_build_announce(r->connection, r->transaction, &r->areq, r->url_data, pkt);
    else
        len = udp_build_scrape(r->connection, r->transaction, r->info_hash, pkt);

    s = sock_get(u, r->addr.ss_family, &err);
    if (s == NULL)
        goto fail;
    uv_buf_t b = uv_buf_init((char *)pkt, (unsigned)len);
    int rc = uv_udp_try_send(s, &b, 1, (const struct sockaddr *)&r->addr);
    /* A full socket buffer is a lost datagram, which retransmission covers. */
    if (rc < 0 && rc != UV_EAGAIN) {
        err_set(&err, RV_ENET, "cannot send to %s port %s: %s", r->host, r->port, uv_strerror(rc));
        goto fail;
    }
    r->sends++;
    r->deadline = uv_now(u->loop) + attempt_wait(u, r->n);
    timer_arm(u);
    return;
fail:
    req_fail(r, &err);
    timer_arm(u);
}

static void req_timed_out(struct udp_tr_req *r)
{
    struct udp_tr *u = r->u;

    if (r->state == ST_FAILED) {
        req_fail(r, &r->fail_err);
        return;
    }
    r->waited_ms += attempt_wait(u, r->n);
    if (r->n >= u->max_retries) {
        rv_error_t err;
        err_set(&err, RV_ETIMEDOUT, "no reply after %u attempts (%llu ms) from %s port %s",
                r->sends, (unsigned long long)r->waited_ms, r->host, r->port);
        req_fail(r, &err);
        return;
    }
    r->n++;
    /* From here on the id is taken from the cache, which lets it go a minute after it came. */
    r->fresh_connection = false;
    req_send(r);
}

static void on_timer(uv_timer_t *t)
{
    struct udp_tr *u = t->data;
    uint64_t now = uv_now(u->loop);

    /* A callback may cancel other requests, so look for the next expired one afresh each
     * time; each one handled either leaves the list or gets a later deadline. */
    for (;;) {
        struct udp_tr_req *r = u->reqs;
        while (r && (r->state == ST_RESOLVING || r->deadline > now))
            r = r->next;
        if (r == NULL || u->closing)
            break;
        req_timed_out(r);
    }
    timer_arm(u);
}

/* ---- replies ---- */

static void req_done_announce(struct udp_tr_req *r, struct announce_resp *a)
{
    list_remove(r->u, r);
    r->announce_cb(r->ud, 0, a, NULL);
    announce_resp_free(a);
    req_free(r);
}

static void req_done_scrape(struct udp_tr_req *r, const struct scrape_resp *s)
{
    list_remove(r->u, r);
    r->scrape_cb(r->ud, 0, s, NULL);
    req_free(r);
}

static void handle_reply(struct udp_tr_req *r, const uint8_t *p, size_t len, bool ipv6)
{
    struct udp_tr *u = r->u;
    struct udp_reply rep;
    rv_error_t err;
    uint32_t want;
    int rc;

    err_clear(&err);
    rc = udp_parse_reply(p, len, ipv6, &rep, &err);
    if (rc < 0 && rep.action == UDP_ERROR && r->state == ST_REQUESTING && !r->fresh_connection &&
        !r->reconnected) {
        /* The connection id we reused from the cache may have gone stale at the tracker (it
         * restarted, or counts the minute differently): get a new one once before
         * believing the error. */
        cache_drop(u, &r->addr);
        r->reconnected = true;
        r->state = ST_CONNECTING;
        req_send(r);
        return;
    }
    if (rc < 0)
        goto fail;
    want = r->state == ST_CONNECTING ? UDP_CONNECT
           : r->kind == REQ_ANNOUNCE ? UDP_ANNOUNCE
                                     : UDP_SCRAPE;
    if (rep.action != want) {
        err_set(&err, RV_ETRACKER, "expected action %lu in reply, got action %lu",
                (unsigned long)want, (unsigned long)rep.action);
        announce_resp_free(&rep.announce);
        goto fail;
    }
    switch (rep.action) {
    case UDP_CONNECT:
        cache_put(u, &r->addr, rep.connection);
        r->connection = rep.connection;
        r->fresh_connection = true;
        r->state = ST_REQUESTING;
        req_send(r);
        return;
    case UDP_ANNOUNCE:
        req_done_announce(r, &rep.announce);
        break;
    default:
        req_done_scrape(r, &rep.scrape);
        break;
    }
    timer_arm(u);
    return;
fail:
    /* An error reply, or a malformed reply carrying this request's transaction id, answers
     * this request: it ends here rather than waiting out the retransmissions. */
    req_fail(r, &err);
    timer_arm(u);
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *b, const struct sockaddr *from,
                    unsigned flags)
{
    struct udp_tr *u = h->data;

    /* Read errors on an unconnected socket (ICMP reports) say nothing certain about any one
     * request: the retransmission timers deal with silence. */
    if (nread < 8 || from == NULL || u->closing || (flags & UV_UDP_PARTIAL))
        return;
    const uint8_t *p = (const uint8_t *)b->base;
    uint32_t t = be_get32(p + 4);
    for (struct udp_tr_req *r = u->reqs; r; r = r->next) {
        /* BEP 15: check the transaction id; and the reply must come from the tracker asked,
         * or anyone could answer for it. */
        if (!req_waits(r) || r->transaction != t || !addr_equal(&r->addr, from))
            continue;
        handle_reply(r, p, (size_t)nread, from->sa_family == AF_INET6);
        return;
    }
}

/* ---- name lookup ---- */

/* Frees u and calls the close callback once udp_tr_close was called and nothing is left
 * that could call into u. */
static void maybe_finish_close(struct udp_tr *u)
{
    if (!u->closing || u->closing_handles > 0 || u->lookups > 0)
        return;
    void (*cb)(void *) = u->close_cb;
    void *ud = u->close_ud;
    free(u->rbuf);
    free(u);
    if (cb)
        cb(ud);
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    struct udp_tr_req *r = g->data;
    struct udp_tr *u = r->u;
    rv_error_t err;

    if (r->canceled) {
        uv_freeaddrinfo(res);
        req_free(r);
        u->lookups--;
        maybe_finish_close(u);
        return;
    }
    if (status < 0 || res == NULL) {
        err_set(&err, RV_ENET, "cannot resolve tracker host %s: %s", r->host,
                status < 0 ? uv_strerror(status) : "no address");
        goto fail;
    }
    /* The first address the resolver gives, whichever its family. */
    if ((res->ai_family != AF_INET && res->ai_family != AF_INET6) ||
        res->ai_addrlen > sizeof(r->addr)) {
        err_set(&err, RV_ENET, "tracker host %s has no IPv4 or IPv6 address", r->host);
        goto fail;
    }
    memset(&r->addr, 0, sizeof(r->addr));
    memcpy(&r->addr, res->ai_addr, res->ai_addrlen);
    uv_freeaddrinfo(res);
    res = NULL;
    r->state = ST_CONNECTING; /* or straight to the request if the cache has an id */
    req_send(r);
    return;
fail:
    uv_freeaddrinfo(res);
    req_fail(r, &err);
}

/* ---- public ---- */

int udp_tr_new(uv_loop_t *loop, const struct tracker_client_opts *opts, struct udp_tr **out)
{
    struct udp_tr *u = calloc(1, sizeof(*u));
    int rc;

    *out = NULL;
    if (u == NULL)
        return RV_ENOMEM;
    u->rbuf = malloc(UDP_RECV_BUF);
    if (u->rbuf == NULL) {
        rc = RV_ENOMEM;
        goto fail;
    }
    u->loop = loop;
    u->timeout_ms = opts && opts->udp_timeout_ms ? opts->udp_timeout_ms : UDP_DEFAULT_TIMEOUT_MS;
    u->max_retries = opts && opts->udp_max_retries ? opts->udp_max_retries : UDP_DEFAULT_RETRIES;
    if (opts != NULL && opts->bind_addr != NULL)
        snprintf(u->bind_addr, sizeof(u->bind_addr), "%s", opts->bind_addr);
    if (uv_timer_init(loop, &u->timer) < 0) {
        rc = RV_ENET;
        goto fail;
    }
    u->timer.data = u;
    u->timer_open = true;
    *out = u;
    return 0;
fail:
    free(u->rbuf);
    free(u);
    return rc;
}

static void on_sock_closed(uv_handle_t *h)
{
    struct udp_tr *u = h->data;

    if (h == (uv_handle_t *)&u->sock4.h)
        u->sock4.state = SOCK_NONE;
    else
        u->sock6.state = SOCK_NONE;
    u->closing_handles--;
    maybe_finish_close(u);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct udp_tr *u = h->data;

    u->closing_handles--;
    maybe_finish_close(u);
}

static void req_cancel_lookup(struct udp_tr_req *r)
{
    r->canceled = true;
    r->u->lookups++;
    /* The lookup's callback runs either way (UV_ECANCELED or its result) and frees r. */
    uv_cancel((uv_req_t *)&r->gai);
}

void udp_tr_cancel(struct udp_tr_req *r)
{
    struct udp_tr *u;

    if (r == NULL || r->canceled)
        return;
    u = r->u;
    list_remove(u, r);
    if (r->state == ST_RESOLVING) {
        req_cancel_lookup(r);
        return;
    }
    req_free(r);
    timer_arm(u);
}

void udp_tr_close(struct udp_tr *u, void (*cb)(void *ud), void *ud)
{
    if (u->closing)
        return;
    u->closing = true;
    u->close_cb = cb;
    u->close_ud = ud;
    while (u->reqs) {
        struct udp_tr_req *r = u->reqs;
        list_remove(u, r);
        if (r->state == ST_RESOLVING)
            req_cancel_lookup(r);
        else
            req_free(r);
    }
    u->timer_open = false;
    u->closing_handles++;
    uv_close((uv_handle_t *)&u->timer, on_timer_closed);
    if (u->sock4.state == SOCK_OPEN) {
        u->sock4.state = SOCK_CLOSING;
        u->closing_handles++;
        uv_close((uv_handle_t *)&u->sock4.h, on_sock_closed);
    }
    if (u->sock6.state == SOCK_OPEN) {
        u->sock6.state = SOCK_CLOSING;
        u->closing_handles++;
        uv_close((uv_handle_t *)&u->sock6.h, on_sock_closed);
    }
}

static int req_start(struct udp_tr *u, const char *url, struct udp_tr_req *r,
                     struct udp_tr_req **out)
{
    struct addrinfo hints;
    int rc;

    r->u = u;
    r->state = ST_RESOLVING;
    /* Another scheme is the caller's mistake; a malformed udp:// URL is the user's, and is
     * reported through the callback so that the message can name it. */
    if (strncasecmp(url, "udp://", 6) != 0) {
        rc = RV_EINVAL;
        goto fail;
    }
    rc = parse_url(url, &r->host, r->port, &r->url_data, &r->fail_err);
    if (rc < 0) {
        r->state = ST_FAILED;
        r->deadline = uv_now(u->loop);
        goto add;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_protocol = IPPROTO_UDP;
    hints.ai_flags = AI_NUMERICSERV;
    r->gai.data = r;
    rc = uv_getaddrinfo(u->loop, &r->gai, on_resolved, r->host, r->port, &hints);
    if (rc < 0) {
        err_set(&r->fail_err, RV_ENET, "cannot look up tracker host %s: %s", r->host,
                uv_strerror(rc));
        r->state = ST_FAILED;
        r->deadline = uv_now(u->loop);
    }
add:
    r->next = u->reqs;
    if (u->reqs)
        u->reqs->prev = r;
    u->reqs = r;
    if (out)
        *out = r;
    timer_arm(u);
    return 0;
fail:
    req_free(r);
    return rc;
}

int udp_tr_announce(struct udp_tr *u, const char *url, const struct announce_req *req,
                    tracker_announce_cb cb, void *ud, struct udp_tr_req **out)
{
    struct udp_tr_req *r;

    if (out)
        *out = NULL;
    if (u->closing || cb == NULL)
        return RV_EINVAL;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return RV_ENOMEM;
    r->kind = REQ_ANNOUNCE;
    r->areq = *req;
    r->areq.trackerid = NULL;
    r->announce_cb = cb;
    r->ud = ud;
    return req_start(u, url, r, out);
}

int udp_tr_scrape(struct udp_tr *u, const char *url, const uint8_t info_hash[20],
                  tracker_scrape_cb cb, void *ud, struct udp_tr_req **out)
{
    struct udp_tr_req *r;

    if (out)
        *out = NULL;
    if (u->closing || cb == NULL)
        return RV_EINVAL;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return RV_ENOMEM;
    r->kind = REQ_SCRAPE;
    memcpy(r->info_hash, info_hash, 20);
    r->scrape_cb = cb;
    r->ud = ud;
    return req_start(u, url, r, out);
}
