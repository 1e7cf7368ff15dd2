/* The peer connection (peer/conn.c) against scripted fake peers: a libuv TCP server on
 * 127.0.0.1:0 (or [::1]:0) in the same loop as the conn, one script per test. Covers the
 * outgoing connect and the handshake both ways, handshakes for another torrent or in another
 * protocol, the handshake timeout, messages arriving a few bytes at a time, a length prefix no
 * message can have, keep-alives and the idle timeout, a refused connection, conn_close from
 * inside a callback, and closing with 50 MB queued toward a peer that never reads.
 * Every test owns its loop and ends with uv_loop_close() == 0: no handle or request left.
 *
 * Known failures, each an engine bug marked "ENGINE BUG" at its test:
 *   test_keepalive_sent, test_idle_timeout: the active-state timer ticks every 5 s whatever
 *     keepalive_ms and idle_timeout_ms say (each waits about 5 s before failing).
 *   test_close_inside_on_message: conn_close empties a reason set with conn_set_reason. */
/* cmocka.h needs these first */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "peer/conn.h"
#include "peer/wire.h"
#include "rivulet/error.h"
#include "util/buf.h"
#include "util/rcbuf.h"

#define MAX_RECS 64
#define ASKED_MAX 16
#define PIECES 10u
#define PIECE_LEN 32768u
#define LAST_LEN 1000u

static const struct wire_limits limits = {PIECES, PIECE_LEN, LAST_LEN};

/* ---- the scripted peer ---- */

struct ctx;

struct fake {
    struct ctx *x;
    uv_tcp_t server;
    uv_tcp_t peer;    /* the accepted connection */
    uv_timer_t timer; /* paced sends and scripted pauses */
    bool server_open, peer_open, timer_open;
    bool accepted, eof;
    bool answered; /* answer_handshake ran */
    bool no_read;  /* never read: the conn's writes pile up */
    struct buf in; /* everything the conn sent */
    /* Paced output: out[off..len) goes out in chunks of the sizes in chunks[], one per tick. */
    struct buf out;
    size_t off;
    const size_t *chunks;
    size_t nchunks, chunk_i;
    /* Script hooks. */
    void (*on_accept)(struct fake *f);
    void (*on_data)(struct fake *f);
    void (*on_timer)(struct fake *f);
    unsigned ticks;
};

struct rec {
    int type;
    uint32_t index, begin, length;
    uint16_t port;
    uint8_t ext_id;
    uint8_t *data;
    size_t data_len;
};

struct ctx {
    uv_loop_t loop;
    uv_timer_t guard; /* keeps UV_RUN_ONCE from blocking past a deadline */
    struct fake f;
    struct conn *c;
    struct handshake ours;
    struct handshake theirs; /* what the fake sends */
    struct conn_opts opts;
    uint64_t started_ms;
    /* what the handler saw */
    int handshakes;
    uint8_t peer_id[20];
    struct rec recs[MAX_RECS];
    size_t nrecs;
    int closes;
    int close_rc;
    char reason[160];
    uint64_t closed_ms;
    bool running; /* inside uv_run (a failed assertion there leaves it set) */
    /* per-test behaviour */
    int (*msg_hook)(struct ctx *x, struct conn *c, const struct wire_msg *m);
    int handshake_rc;
    const struct conn_handler *handler; /* NULL: handler */
    /* Receiving in place (test_in_place_*): the blocks asked for, in order, each with its
     * home in `home`; gone: arrived or taken back (no longer named by expect); shared: asked
     * of another peer too (never started in place). */
    struct conn_block asked[ASKED_MAX];
    bool gone[ASKED_MAX], shared[ASKED_MAX];
    size_t nasked;
    uint8_t *home;
    size_t homed_in_place; /* PIECE messages whose data was already at home */
};

static void on_fake_write(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
    free(req);
}

static void fake_send(struct fake *f, const void *p, size_t n)
{
    if (!f->peer_open || n == 0)
        return;
    uv_write_t *req = malloc(sizeof(*req));
    uint8_t *copy = malloc(n);
    assert_non_null(req);
    assert_non_null(copy);
    memcpy(copy, p, n);
    req->data = copy;
    uv_buf_t b = uv_buf_init((char *)copy, (unsigned)n);
    int rc = uv_write(req, (uv_stream_t *)&f->peer, &b, 1, on_fake_write);
    if (rc != 0) {
        free(copy);
        free(req);
    }
}

static void fake_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    struct fake *f = h->data;
    (void)suggested;
    assert_int_equal(buf_reserve(&f->in, 65536), 0);
    *out = uv_buf_init((char *)f->in.data + f->in.len, (unsigned)(f->in.cap - f->in.len));
}

static void fake_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct fake *f = s->data;
    (void)b;
    if (nread < 0) {
        f->eof = true;
        uv_read_stop(s);
        return;
    }
    f->in.len += (size_t)nread;
    if (f->on_data != NULL)
        f->on_data(f);
}

static void fake_on_timer(uv_timer_t *t)
{
    struct fake *f = t->data;
    f->ticks++;
    if (f->off < f->out.len) {
        size_t n = f->chunks[f->chunk_i++ % f->nchunks];
        if (n > f->out.len - f->off)
            n = f->out.len - f->off;
        fake_send(f, f->out.data + f->off, n);
        f->off += n;
        return;
    }
    if (f->on_timer != NULL)
        f->on_timer(f);
}

static void fake_on_accept(uv_stream_t *server, int status)
{
    struct fake *f = server->data;
    assert_int_equal(status, 0);
    assert_false(f->accepted); /* one connection per test */
    uv_tcp_init(server->loop, &f->peer);
    f->peer.data = f;
    f->peer_open = true;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&f->peer), 0);
    uv_tcp_nodelay(&f->peer, 1); /* small writes leave as small segments */
    f->accepted = true;
    if (!f->no_read)
        uv_read_start((uv_stream_t *)&f->peer, fake_alloc, fake_read);
    if (f->on_accept != NULL)
        f->on_accept(f);
}

/* Starts the fake peer listening on ip (127.0.0.1 or ::1) port 0; returns the port. */
static uint16_t fake_listen(struct fake *f, uv_loop_t *loop, const char *ip)
{
    struct sockaddr_storage ss;
    if (strchr(ip, ':') != NULL)
        assert_int_equal(uv_ip6_addr(ip, 0, (struct sockaddr_in6 *)&ss), 0);
    else
        assert_int_equal(uv_ip4_addr(ip, 0, (struct sockaddr_in *)&ss), 0);
    uv_tcp_init(loop, &f->server);
    f->server.data = f;
    f->server_open = true;
    assert_int_equal(uv_tcp_bind(&f->server, (const struct sockaddr *)&ss, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->server, 4, fake_on_accept), 0);
    int len = sizeof(ss);
    assert_int_equal(uv_tcp_getsockname(&f->server, (struct sockaddr *)&ss, &len), 0);
    return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                    : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Sends the queued script out a few bytes per millisecond. */
static void fake_pace(struct fake *f, const size_t *chunks, size_t nchunks)
{
    f->chunks = chunks;
    f->nchunks = nchunks;
    uv_timer_start(&f->timer, fake_on_timer, 1, 1);
}

static void fake_close_peer(struct fake *f)
{
    if (f->peer_open) {
        f->peer_open = false;
        uv_close((uv_handle_t *)&f->peer, NULL);
    }
}

/* ---- the conn's owner ---- */

static int h_handshake(void *owner, struct conn *c, const struct handshake *h)
{
    struct ctx *x = owner;
    assert_ptr_equal(c, x->c);
    x->handshakes++;
    memcpy(x->peer_id, h->peer_id, 20);
    return x->handshake_rc;
}

static int h_message(void *owner, struct conn *c, const struct wire_msg *m)
{
    struct ctx *x = owner;
    assert_ptr_equal(c, x->c);
    assert_true(x->nrecs < MAX_RECS);
    struct rec *r = &x->recs[x->nrecs++];
    r->type = m->type;
    r->index = m->index;
    r->begin = m->begin;
    r->length = m->length;
    r->port = m->port;
    r->ext_id = m->ext_id;
    r->data_len = m->data_len;
    if (m->data_len > 0) {
        r->data = malloc(m->data_len);
        assert_non_null(r->data);
        memcpy(r->data, m->data, m->data_len);
    }
    return x->msg_hook != NULL ? x->msg_hook(x, c, m) : 0;
}

static void h_close(void *owner, struct conn *c, int rc, const char *why)
{
    struct ctx *x = owner;
    assert_ptr_equal(c, x->c);
    x->closes++;
    x->close_rc = rc;
    snprintf(x->reason, sizeof(x->reason), "%s", why ? why : "");
    x->closed_ms = uv_now(&x->loop);
    x->c = NULL; /* freed after we return */
}

static const struct conn_handler handler = {h_handshake, h_message, h_close, NULL, NULL};

/* ---- test scaffolding ---- */

/* The context of the test running now, for the teardown after a failed assertion. */
static struct ctx *current;

static void guard_tick(uv_timer_t *t)
{
    (void)t;
}

static struct ctx *ctx_new(void)
{
    struct ctx *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    assert_int_equal(uv_loop_init(&x->loop), 0);
    uv_timer_init(&x->loop, &x->guard);
    uv_timer_start(&x->guard, guard_tick, 5, 5);
    x->f.x = x;
    uv_timer_init(&x->loop, &x->f.timer);
    x->f.timer.data = &x->f;
    x->f.timer_open = true;
    buf_init(&x->f.in, 0);
    buf_init(&x->f.out, 0);
    memcpy(x->ours.info_hash, "ours-info-hash-12345", 20);
    memcpy(x->ours.peer_id, "-RV0100-ourpeerid123", 20);
    x->theirs = x->ours;
    memcpy(x->theirs.peer_id, "-XX1234-fakepeer0001", 20);
    x->theirs.reserved[5] = 0x10; /* BEP 10 bit: passed through untouched */
    current = x;
    return x;
}

static void ctx_connect(struct ctx *x, const char *ip, uint16_t port)
{
    struct peer_addr a;
    char s[64];
    snprintf(s, sizeof(s), strchr(ip, ':') ? "[%s]:%u" : "%s:%u", ip, (unsigned)port);
    assert_int_equal(peer_addr_parse(s, &a), 0);
    x->started_ms = uv_now(&x->loop);
    assert_int_equal(conn_connect(&x->loop, &a, &x->ours, &limits, &x->opts,
                                  x->handler != NULL ? x->handler : &handler, x, 7, &x->c),
                     0);
    assert_non_null(x->c);
}

static void run_once(struct ctx *x)
{
    x->running = true;
    uv_run(&x->loop, UV_RUN_ONCE);
    x->running = false;
}

/* Runs the loop until *flag or max_ms pass; returns *flag. */
static bool run_until(struct ctx *x, const bool *flag, uint64_t max_ms)
{
    uv_update_time(&x->loop);
    uint64_t end = uv_now(&x->loop) + max_ms;
    while (!*flag && uv_now(&x->loop) < end)
        run_once(x);
    return *flag;
}

static bool run_until_closed(struct ctx *x, uint64_t max_ms)
{
    uv_update_time(&x->loop);
    uint64_t end = uv_now(&x->loop) + max_ms;
    while (x->closes == 0 && uv_now(&x->loop) < end)
        run_once(x);
    return x->closes > 0;
}

static void run_for(struct ctx *x, uint64_t ms)
{
    bool never = false;
    run_until(x, &never, ms);
}

/* Closes whatever is open, runs the loop until every handle is closed and frees x. check: also
 * assert that the conn reported its close exactly once and nothing was left on the loop. */
static void ctx_release(struct ctx *x, bool check)
{
    current = NULL;
    bool running = x->running;
    int closes = x->closes, rc = 0;
    if (!running) {
        if (x->c != NULL)
            conn_close(x->c, 0, "test over");
        fake_close_peer(&x->f);
        if (x->f.server_open)
            uv_close((uv_handle_t *)&x->f.server, NULL);
        if (x->f.timer_open)
            uv_close((uv_handle_t *)&x->f.timer, NULL);
        uv_close((uv_handle_t *)&x->guard, NULL);
        uv_run(&x->loop, UV_RUN_DEFAULT);
        closes = x->closes;
        rc = uv_loop_close(&x->loop);
    } /* else an assertion failed inside a callback: leave the loop alone, leak it */
    for (size_t i = 0; i < x->nrecs; i++)
        free(x->recs[i].data);
    free(x->home);
    buf_free(&x->f.in);
    buf_free(&x->f.out);
    if (!running)
        free(x);
    if (check) {
        /* Exactly one on_close for every conn, whatever happened; nothing left on the loop. */
        assert_int_equal(closes, 1);
        assert_int_equal(rc, 0);
    }
}

static void ctx_free(struct ctx *x)
{
    ctx_release(x, true);
}

static int teardown(void **state)
{
    (void)state;
    if (current != NULL)
        ctx_release(current, false);
    return 0;
}

static void put_handshake(struct buf *b, const struct handshake *h)
{
    uint8_t hs[HANDSHAKE_LEN];
    handshake_build(hs, h);
    assert_int_equal(buf_append(b, hs, sizeof(hs)), 0);
}

static void send_handshake(struct fake *f)
{
    uint8_t hs[HANDSHAKE_LEN];
    handshake_build(hs, &f->x->theirs);
    fake_send(f, hs, sizeof(hs));
}

/* ---- connect and handshake ---- */

static bool fake_got_handshake(struct fake *f)
{
    return f->in.len >= HANDSHAKE_LEN;
}

/* Answers the conn's handshake only once it has arrived whole and is right. */
static void answer_handshake(struct fake *f)
{
    if (f->in.len < HANDSHAKE_LEN || f->answered)
        return;
    f->answered = true;
    uint8_t want[HANDSHAKE_LEN];
    handshake_build(want, &f->x->ours);
    assert_memory_equal(f->in.data, want, HANDSHAKE_LEN);
    send_handshake(f);
    /* Then two messages in one write. */
    struct buf b;
    buf_init(&b, 0);
    uint8_t bits[2] = {0xa5, 0x40}; /* pieces 0 2 5 7 9; 10 pieces, spare bits zero */
    wire_put_bitfield(&b, bits, sizeof(bits));
    wire_put_have(&b, 3);
    fake_send(f, b.data, b.len);
    buf_free(&b);
}

static void handshake_both_ways(const char *ip)
{
    struct ctx *x = ctx_new();
    x->f.on_data = answer_handshake;
    uint16_t port = fake_listen(&x->f, &x->loop, ip);
    ctx_connect(x, ip, port);
    assert_int_equal(x->c->state, CONN_CONNECTING);
    uv_update_time(&x->loop);
    uint64_t end = uv_now(&x->loop) + 2000;
    while (x->nrecs < 2 && x->closes == 0 && uv_now(&x->loop) < end)
        run_once(x);
    assert_int_equal(x->closes, 0);
    assert_true(fake_got_handshake(&x->f));
    assert_int_equal(x->f.in.len, HANDSHAKE_LEN); /* nothing but the handshake from us */
    assert_int_equal(x->handshakes, 1);
    assert_memory_equal(x->peer_id, x->theirs.peer_id, 20);
    assert_int_equal(x->c->state, CONN_ACTIVE);
    assert_memory_equal(x->c->theirs.reserved, x->theirs.reserved, 8);
    assert_memory_equal(x->c->theirs.info_hash, x->ours.info_hash, 20);
    assert_true(x->c->handshake_sent);
    assert_int_equal(x->c->bytes_in, HANDSHAKE_LEN + 4 + 1 + 2 + 4 + 5);
    assert_int_equal(x->c->bytes_out, HANDSHAKE_LEN);
    assert_int_equal(x->nrecs, 2);
    assert_int_equal(x->recs[0].type, WIRE_BITFIELD);
    assert_int_equal(x->recs[0].data_len, 2);
    assert_int_equal(x->recs[0].data[0], 0xa5);
    assert_int_equal(x->recs[0].data[1], 0x40);
    assert_int_equal(x->recs[1].type, WIRE_HAVE);
    assert_int_equal(x->recs[1].index, 3);

    /* Our close: rc 0 and our reason, once, even when asked twice; the peer sees EOF. */
    conn_close(x->c, 0, "done here");
    conn_close(x->c, RV_EPROTO, "second close is ignored");
    assert_true(run_until_closed(x, 1000));
    assert_int_equal(x->close_rc, 0);
    assert_string_equal(x->reason, "done here");
    assert_true(run_until(x, &x->f.eof, 1000));
    ctx_free(x);
}

static void test_handshake_ipv4(void **state)
{
    (void)state;
    handshake_both_ways("127.0.0.1");
}

static void test_handshake_ipv6(void **state)
{
    (void)state;
    /* Skip quietly where ::1 is not configured. */
    uv_loop_t loop;
    uv_tcp_t probe;
    struct sockaddr_in6 sa;
    uv_loop_init(&loop);
    uv_tcp_init(&loop, &probe);
    uv_ip6_addr("::1", 0, &sa);
    int rc = uv_tcp_bind(&probe, (const struct sockaddr *)&sa, 0);
    uv_close((uv_handle_t *)&probe, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (rc != 0)
        skip();
    handshake_both_ways("::1");
}

/* The peer's handshake names another torrent: dropped with EPROTO, on_handshake never runs. */
static void send_wrong_hash(struct fake *f)
{
    struct handshake h = f->x->theirs;
    h.info_hash[0] ^= 1;
    uint8_t hs[HANDSHAKE_LEN];
    handshake_build(hs, &h);
    fake_send(f, hs, sizeof(hs));
}

static void test_wrong_info_hash(void **state)
{
    (void)state;
    struct ctx *x = ctx_new();
    x->f.on_accept = send_wrong_hash;
    ctx_connect(x, "127.0.0.1", fake_listen(&x->f, &x->loop, "127.0.0.1"));
    assert_true(run_until_closed(x, 2000));
    assert_int_equal(x->close_rc, RV_EPROTO);
    assert_non_null(strstr(x->reason, "another torrent"));
    assert_int_equal(x->handshakes, 0);
    assert_int_equal(x->nrecs, 0);
    ctx_free(x);
}

/* Another protocol: refused at the first wrong byte, not after 68 or at the timeout. */
static void send_http(struct fake *f)
{
    fake_send(f, "GET / HTTP/1.1\r\n", 16);
}

static void send_bad_pstr(struct fake *f)
{
    fake_send(f, "\023BitTorrent protocoX", 20); /* 20 bytes: never a whole handshake */
}

static void wrong_protocol(void (*script)(struct fake *f), const char *want)
{
    struct ctx *x = ctx_new();
    x->opts.handshake_timeout_ms = 5000;
    x->f.on_accept = script;
    ctx_connect(x, "127.0.0.1", fake_listen(&x->f, &x->loop, "127.0.0.1"));
    assert_true(run_until_closed(x, 2000));
    assert_int_equal(x->close_rc, RV_EPROTO);
    assert_non_null(strstr(x->reason, want));
    assert_true(x->closed_ms - x->started_ms < 1000);
    assert_int_equal(x->handshakes, 0);
    ctx_free(x);
}

static void test_wrong_protocol(void **state)
{
    (void)state;
    wrong_protocol(send_http, "protocol string length 71");
    wrong_protocol(send_bad_pstr, "not \"BitTorrent protocol\"");
}

/* Nothing, or part of a handshake, and then silence: closed at handshake_timeout_ms. */
static void send_part_handshake(struct fake *f)
{
    uint8_t hs[HANDSHAKE_LEN];
    handshake_build(hs, &f->x->theirs);
    fake_send(f, hs, 40);
}

static void handshake_timeout(void (*script)(struct fake *f))
{
    struct ctx *x = ctx_new();
    x->opts.handshake_timeout_ms = 200;
    x->f.on_accept = script;
    ctx_connect(x, "127.0.0.1", fake_listen(&x->f, &x->loop, "127.0.0.1"));
    assert_true(run_until_closed(x, 3000));
    assert_int_equal(x->close_rc, RV_ETIMEDOUT);
    assert_non_null(strstr(x->reason, "handshake"));
    uint64_t took = x->closed_ms - x->started_ms;
    assert_true(took >= 190);
    assert_true(took < 1000);
    assert_int_equal(x->handshakes, 0);
    assert_true(x->f.accepted);
    ctx_free(x);
}

static void test_handshake_timeout(void **state)
{
    (void)state;
    handshake_timeout(NULL);
    handshake_timeout(send_part_handshake);
}

/* ---- framing ---- */

static const size_t tiny_chunks[] = {1, 2, 1, 3, 5, 1, 7, 4, 11, 2, 64, 1, 300, 6};

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void pace_script(struct fake *f)
{
    fake_pace(f, tiny_chunks, sizeof(tiny_chunks) / sizeof(tiny_chunks[0]));
}

static void test_split_messages(void **state)
{
    (void)state;
    struct ctx *x = ctx_new();
    struct buf *b = &x->f.out;
    put_handshake(b, &x->theirs);
    uint8_t bits[2] = {0xff, 0xc0};
    wire_put_bitfield(b, bits, 2);
    wire_put_have(b, 9);
    wire_put_simple(b, WIRE_UNCHOKE);
    wire_put_keepalive(b);
    uint8_t block[4000];
    for (size_t i = 0; i < sizeof(block); i++)
        block[i] = (uint8_t)(i * 7 + 3);
    wire_put_piece_header(b, 2, 16384, sizeof(block));
    buf_append(b, block, sizeof(block));
    wire_put_request(b, WIRE_REQUEST, 1, 0, 16384);
    wire_put_request(b, WIRE_CANCEL, 1, 0, 16384);
    static const char ext[] = "d1:md11:ut_metadatai3eee";
    wire_put_extended(b, 0, (const uint8_t *)ext, strlen(ext));
    wire_put_port(b, 6881);
    uint8_t unknown[8] = {0, 0, 0, 4, 42, 'a', 'b', 'c'};
    buf_append(b, unknown, sizeof(unknown));
    wire_put_piece_header(b, 9, 0, LAST_LEN); /* the short last piece, whole */
    buf_append(b, block, LAST_LEN);
    wire_put_simple(b, WIRE_CHOKE);
    const size_t total = b->len;

    x->f.on_accept = pace_script;
    ctx_connect(x, "127.0.0.1", fake_listen(&x->f, &x->loop, "127.0.0.1"));
    uv_update_time(&x->loop);
    uint64_t end = uv_now(&x->loop) + 4000;
    while (x->nrecs < 12 && x->closes == 0 && uv_now(&x->loop) < end)
        run_once(x);
    assert_int_equal(x->closes, 0);
    assert_int_equal(x->f.off, total);
    assert_int_equal(x->c->bytes_in, total);
    assert_int_equal(x->handshakes, 1);
    assert_int_equal(x->nrecs, 12);
    struct rec *r = x->recs;
    assert_int_equal(r[0].type, WIRE_BITFIELD);
    assert_int_equal(r[0].data_len, 2);
    assert_memory_equal(r[0].data, bits, 2);
    assert_int_equal(r[1].type, WIRE_HAVE);
    assert_int_equal(r[1].index, 9);
    assert_int_equal(r[2].type, WIRE_UNCHOKE);
    assert_int_equal(r[3].type, WIRE_KEEPALIVE);
    assert_int_equal(r[4].type, WIRE_PIECE);
    assert_int_equal(r[4].index, 2);
    assert_int_equal(r[4].begin, 16384);
    assert_int_equal(r[4].data_len, sizeof(block));
    assert_memory_equal(r[4].data, block, sizeof(block));
    assert_int_equal(r[5].type, WIRE_REQUEST);
    assert_int_equal(r[5].index, 1);
    assert_int_equal(r[5].length, 16384);
    assert_int_equal(r[6].type, WIRE_CANCEL);
    assert_int_equal(r[7].type, WIRE_EXTENDED);
    assert_int_equal(r[7].ext_id, 0);
    assert_int_equal(r[7].data_len, strlen(ext));
    assert_memory_equal(r[7].data, ext, strlen(ext));
    assert_int_equal(r[8].type, WIRE_PORT);
    assert_int_equal(r[8].port, 6881);
    assert_int_equal(r[9].type, 42);
    assert_int_equal(r[9].data_len, 3);
    assert_memory_equal(r[9].data, "abc", 3);
    assert_int_equal(r[10].type, WIRE_PIECE);
    assert_int_equal(r[10].index, 9);
    assert_int_equal(r[10].data_len, LAST_LEN);
    assert_memory_equal(r[10].data, block, LAST_LEN);
    assert_int_equal(r[11].type, WIRE_CHOKE);
    assert_int_equal(x->c->rbuf.len, 0); /* nothing left over */
    ctx_free(x);
}

/* A length prefix of 0xffffffff and no body: dropped on the prefix alone, the reason naming
 * the length. */
static void send_huge_prefix(struct fake *f)
{
    send_handshake(f);
    uint8_t p[4];
    put32(p, 0xffffffffu);
    fake_send(f, p, 4);
}

static void test_huge_length_prefix(void **state)
{
    (void)state;
    struct ctx *x = ctx_new();
    x->opts.handshake_timeout_ms = 5000;
    x->opts.idle_timeout_ms = 5000;
    x->f.on_accept = send_huge_prefix;
    ctx_connect(x, "127.0.0.1", fake_listen(&x->f, &x->loop, "127.0.0.1"));
    assert_true(run_until_closed(x, 2000));
    assert_int_equal(x->close_rc, RV_EPROTO);
    assert_non_null(strstr(x->reason, "4294967295"));
    assert_true(x->closed_ms - x->started_ms < 1000);
    assert_int_equal(x->handshakes, 1);
    assert_int_equal(x->nrecs, 0);
    ctx_free(x);
}

/* ---- keep-alive and idle ---- */

static void test_keepalive_sent(void **state)
{
    (void)state;
    /* ENGINE BUG (conn.c TICK_MS): the active-state timer ticks every 5000 ms whatever
     * keepalive_ms says, so a 200 ms keep-alive leaves after about 5 s. This test asserts the
     * documented behaviour ("send one when nothing was sent this long") and fails until the
     * tick follows the options; see the report. It waits at most 6 s either way. */
    struct ctx *x = ctx_new();
    x->opts.keepalive_ms = 200;
    x->opts.idle_timeout_ms = 60000;
    x->f.on_accept = send_handshake;
    ctx_connect(x, "127.0.0.1", fake_listen(&x->f, &x->loop, "127.0.0.1"));
    uv_update_time(&x->loop);
    uint64_t end = uv_now(&x->loop) + 6000;
    while (x->f.in.len < HANDSHAKE_LEN + 4 && x->closes == 0 && uv_now(&x->loop) < end)
        run_once(x);
    uint64_t took = uv_now(&x->loop) - x->started_ms;
    assert_int_equal(x->closes, 0);
    assert_int_equal(x->handshakes, 1);
    assert_int_equal(x->f.in.len, HANDSHAKE_LEN + 4);
    static const uint8_t zero[4];
    assert_memory_equal(x->f.in.data + HANDSHAKE_LEN, zero, 4);
    if (took >= 1000)
        fail_msg("first keep-alive after %llu ms with keepalive_ms = 200",
                 (unsigned long long)took);
    ctx_free(x);
}

/* The peer sends keep-alives for 600 ms (which must keep the connection up past an idle
 * timeout of 300 ms), then falls silent: closed about 300 ms later. */
static void keepalives_then_silence(struct fake *f)
{
    if (f->ticks > 60) {
        uv_timer_stop(&f->timer);
        return;
    }
    if (f->ticks % 10 == 0) {
        uint8_t zero[4] = {0};
        fake_send(f, zero, 4);
    }
}

static void start_keepalives(struct fake *f)
{
    send_handshake(f);
    f->on_timer = keepalives_then_silence;
    uv_timer_start(&f->timer, fake_on_timer, 10, 10);
}

static void test_idle_timeout(void **state)
{
    (void)state;
    /* ENGINE BUG (conn.c TICK_MS): like test_keepalive_sent, the idle check runs every 5 s,
     * so this fails (closed after ~5 s instead of ~0.9 s) until the tick follows the
     * options. */
    struct ctx *x = ctx_new();
    x->opts.idle_timeout_ms = 300;
    x->opts.keepalive_ms = 60000;
    x->f.on_accept = start_keepalives;
    ctx_connect(x, "127.0.0.1", fake_listen(&x->f, &x->loop, "127.0.0.1"));
    run_for(x, 500);
    assert_int_equal(x->closes, 0); /* the keep-alives count as traffic */
    assert_true(run_until_closed(x, 6000));
    assert_int_equal(x->close_rc, RV_ETIMEDOUT);
    assert_non_null(strstr(x->reason, "nothing received"));
    uint64_t took = x->closed_ms - x->started_ms;
    if (took < 850 || took > 1800)
        fail_msg("idle close after %llu ms; want about 600 + 300 ms", (unsigned long long)took);
    ctx_free(x);
}

/* ---- failures and closes ---- */

static void test_connection_refused(void **state)
{
    (void)state;
    struct ctx *x = ctx_new();
    /* A port that was just free: bound, never listened on, closed. */
    uv_tcp_t probe;
    struct sockaddr_in sa;
    uv_tcp_init(&x->loop, &probe);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_bind(&probe, (const struct sockaddr *)&sa, 0), 0);
    int len = sizeof(sa);
    uv_tcp_getsockname(&probe, (struct sockaddr *)&sa, &len);
    uint16_t port = ntohs(sa.sin_port);
    uv_close((uv_handle_t *)&probe, NULL);
    uv_run(&x->loop, UV_RUN_NOWAIT);
    ctx_connect(x, "127.0.0.1", port);
    assert_true(run_until_closed(x, 2000));
    assert_int_equal(x->close_rc, RV_ENET);
    assert_non_null(strstr(x->reason, "connect failed"));
    assert_int_equal(x->handshakes, 0);
    ctx_free(x);
}

/* The handler closes the conn itself while handling the first of several messages that came
 * in one read: no further message is delivered and on_close runs once, with our code. */
static int close_on_first(struct ctx *x, struct conn *c, const struct wire_msg *m)
{
    (void)x;
    (void)m;
    conn_close(c, RV_ECANCELED, "closed from on_message");
    return 0;
}

static int fail_on_second(struct ctx *x, struct conn *c, const struct wire_msg *m)
{
    (void)m;
    if (x->nrecs < 2)
        return 0;
    conn_set_reason(c, "the owner refused message %zu", x->nrecs);
    return RV_EPROTO;
}

static void send_handshake_and_haves(struct fake *f)
{
    struct buf b;
    buf_init(&b, 0);
    put_handshake(&b, &f->x->theirs);
    for (uint32_t i = 0; i < 5; i++)
        wire_put_have(&b, i);
    fake_send(f, b.data, b.len);
    buf_free(&b);
}

static void test_close_inside_on_message(void **state)
{
    (void)state;
    /* ENGINE BUG (conn.c:44 with conn.c:187): the second part fails until conn_close stops
     * copying close_reason onto itself (the reason arrives empty). */
    struct ctx *x = ctx_new();
    x->msg_hook = close_on_first;
    x->f.on_accept = send_handshake_and_haves;
    ctx_connect(x, "127.0.0.1", fake_listen(&x->f, &x->loop, "127.0.0.1"));
    assert_true(run_until_closed(x, 2000));
    assert_int_equal(x->close_rc, RV_ECANCELED);
    assert_string_equal(x->reason, "closed from on_message");
    assert_int_equal(x->nrecs, 1);
    run_for(x, 50);
    ctx_free(x);

    /* Returning an error instead: the conn closes with that code and the reason set. */
    x = ctx_new();
    x->msg_hook = fail_on_second;
    x->f.on_accept = send_handshake_and_haves;
    ctx_connect(x, "127.0.0.1", fake_listen(&x->f, &x->loop, "127.0.0.1"));
    assert_true(run_until_closed(x, 2000));
    assert_int_equal(x->close_rc, RV_EPROTO);
    assert_string_equal(x->reason, "the owner refused message 2");
    assert_int_equal(x->nrecs, 2);
    ctx_free(x);

    /* And from on_handshake: refused, no message delivered. */
    x = ctx_new();
    x->handshake_rc = RV_EINVAL;
    x->f.on_accept = send_handshake_and_haves;
    ctx_connect(x, "127.0.0.1", fake_listen(&x->f, &x->loop, "127.0.0.1"));
    assert_true(run_until_closed(x, 2000));
    assert_int_equal(x->close_rc, RV_EINVAL);
    assert_int_equal(x->handshakes, 1);
    assert_int_equal(x->nrecs, 0);
    ctx_free(x);
}

/* Connects to a fake peer that never reads and waits for the handshake. */
static struct ctx *connect_non_reader(unsigned send_timeout_ms)
{
    struct ctx *x = ctx_new();
    x->opts.send_timeout_ms = send_timeout_ms;
    x->f.no_read = true;
    x->f.on_accept = send_handshake;
    ctx_connect(x, "127.0.0.1", fake_listen(&x->f, &x->loop, "127.0.0.1"));
    uv_update_time(&x->loop);
    uint64_t end = uv_now(&x->loop) + 2000;
    while (x->handshakes == 0 && x->closes == 0 && uv_now(&x->loop) < end)
        run_once(x);
    assert_int_equal(x->handshakes, 1);
    return x;
}

/* A peer that never reads while we queue 50 MB: once more than CONN_SEND_MAX waits for it, the
 * next flush drops it, so its backlog never holds more than the cap plus one batch; closing
 * frees everything, in-flight writes included. */
static void test_close_with_backlog(void **state)
{
    (void)state;
    struct ctx *x = connect_non_reader(0);
    static uint8_t block[16384];
    memset(block, 0x5a, sizeof(block));
    const size_t total = 50u << 20, batch = 1u << 20;
    size_t most = 0;
    for (size_t sent = 0; sent < total && x->closes == 0 && x->c->state != CONN_CLOSING;
         sent += sizeof(block)) {
        /* Queued in batches, each flushed, with the loop run between them. */
        assert_int_equal(wire_put_piece_header(conn_out(x->c), 0, 0, sizeof(block)), 0);
        assert_int_equal(buf_append(conn_out(x->c), block, sizeof(block)), 0);
        if ((sent + sizeof(block)) % batch == 0) {
            size_t b = conn_send_backlog(x->c);
            most = b > most ? b : most;
            conn_flush(x->c);
            if (x->c->state == CONN_CLOSING)
                break;
            run_once(x);
        }
    }
    print_message("most queued toward a peer that never reads: %zu bytes\n", most);
    assert_true(most <= CONN_SEND_MAX + batch + (batch / 16384) * 13);
    assert_true(run_until_closed(x, 2000));
    assert_int_equal(x->close_rc, RV_EPROTO);
    assert_non_null(strstr(x->reason, "does not read what we send"));
    ctx_free(x);
}

/* Blocks queued by reference (conn_put_ref) go out in their place among the bytes queued in
 * conn_out, in one write, and the connection holds a reference to their buffer only until the
 * kernel has them; short ones are copied. Closing with blocks still queued releases them. */
static void test_send_by_reference(void **state)
{
    (void)state;
    struct ctx *x = ctx_new();
    x->f.on_accept = send_handshake;
    ctx_connect(x, "127.0.0.1", fake_listen(&x->f, &x->loop, "127.0.0.1"));
    uv_update_time(&x->loop);
    uint64_t end = uv_now(&x->loop) + 2000;
    while ((x->handshakes == 0 || x->f.in.len < HANDSHAKE_LEN) && x->closes == 0 &&
           uv_now(&x->loop) < end)
        run_once(x);
    assert_int_equal(x->handshakes, 1);
    assert_int_equal(x->f.in.len, HANDSHAKE_LEN);

    struct rcbuf *rb = rcbuf_new(65536);
    assert_non_null(rb);
    for (size_t i = 0; i < rb->size; i++)
        rb->data[i] = (uint8_t)(i * 7 + i / 251);
    struct buf want;
    buf_init(&want, 0);
    struct buf *out = conn_out(x->c);
    static const struct {
        const char *bytes; /* queued as bytes, or NULL: a block of rb */
        size_t off, len;
    } parts[] = {{"ab", 0, 0},      {NULL, 100, 5000}, {"cd", 0, 0}, {NULL, 20000, 16384},
                 {NULL, 7, 10} /* short: copied */,  {"ef", 0, 0},  {NULL, 40000, 8000}};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        if (parts[i].bytes != NULL) {
            assert_int_equal(buf_append(out, parts[i].bytes, 2), 0);
            assert_int_equal(buf_append(&want, parts[i].bytes, 2), 0);
        } else {
            assert_int_equal(conn_put_ref(x->c, rb, parts[i].off, parts[i].len), 0);
            assert_int_equal(buf_append(&want, rb->data + parts[i].off, parts[i].len), 0);
        }
    }
    assert_int_equal(rb->refs, 4); /* ours and the three long blocks */
    assert_int_equal(conn_send_backlog(x->c), want.len);
    conn_flush(x->c);
    assert_int_equal(conn_send_backlog(x->c), want.len); /* now in flight */
    end = uv_now(&x->loop) + 2000;
    while ((x->f.in.len < HANDSHAKE_LEN + want.len || rb->refs > 1) && x->closes == 0 &&
           uv_now(&x->loop) < end)
        run_once(x);
    assert_int_equal(x->f.in.len, HANDSHAKE_LEN + want.len);
    assert_memory_equal(x->f.in.data + HANDSHAKE_LEN, want.data, want.len);
    assert_int_equal(rb->refs, 1);
    assert_int_equal(conn_send_backlog(x->c), 0);
    assert_int_equal(x->c->bytes_out, HANDSHAKE_LEN + want.len);

    /* Queued, never flushed, then closed: the references go with the connection. */
    assert_int_equal(conn_put_ref(x->c, rb, 0, 16384), 0);
    assert_int_equal(conn_put_ref(x->c, rb, 16384, 16384), 0);
    assert_int_equal(rb->refs, 3);
    conn_close(x->c, 0, "done");
    assert_true(run_until_closed(x, 1000));
    assert_int_equal(rb->refs, 1);
    rcbuf_unref(rb);
    buf_free(&want);
    ctx_free(x);
}

/* Under the cap but never read: dropped once the kernel has taken nothing for
 * send_timeout_ms. */
static void test_send_stall_timeout(void **state)
{
    (void)state;
    struct ctx *x = connect_non_reader(300);
    /* A small kernel buffer on our side, so most of what we queue stays with libuv. */
    int sndbuf = 16384;
    uv_send_buffer_size((uv_handle_t *)&x->c->tcp, &sndbuf);
    static uint8_t block[16384];
    memset(block, 0x5a, sizeof(block));
    /* More than loopback's socket buffers take, less than CONN_SEND_MAX. */
    for (size_t sent = 0; sent < (3u << 20); sent += sizeof(block)) {
        assert_int_equal(wire_put_piece_header(conn_out(x->c), 0, 0, sizeof(block)), 0);
        assert_int_equal(buf_append(conn_out(x->c), block, sizeof(block)), 0);
    }
    conn_flush(x->c);
    assert_true(run_until_closed(x, 5000));
    assert_int_equal(x->close_rc, RV_ETIMEDOUT);
    assert_non_null(strstr(x->reason, "read nothing we sent"));
    ctx_free(x);
}

/* ---- MSE: the fake is an MSE receiver (the codec), the conn dials with mse_offer ---- */

static struct mse fake_mse;
static size_t fake_mse_used; /* bytes of f->in the handshake took; 0 while running */
static size_t fake_seen;     /* bytes of f->in after it already decrypted */

static bool fake_find_skey(void *ud, const struct mse *m, uint8_t skey[20])
{
    struct ctx *x = ud;
    if (!mse_skey_matches(m, x->ours.info_hash))
        return false;
    memcpy(skey, x->ours.info_hash, 20);
    return true;
}

static void mse_answer(struct fake *f)
{
    struct buf out;
    buf_init(&out, 0);
    if (fake_mse_used == 0) {
        size_t used = 0;
        int rc = mse_feed(&fake_mse, f->in.data, f->in.len, &out, &used);
        assert_true(rc >= 0);
        if (rc == 1) {
            fake_mse_used = fake_seen = used;
            /* The conn's handshake came as the initial payload. */
            uint8_t want[HANDSHAKE_LEN];
            handshake_build(want, &f->x->ours);
            assert_int_equal(fake_mse.ia.len, HANDSHAKE_LEN);
            assert_memory_equal(fake_mse.ia.data, want, HANDSHAKE_LEN);
            /* Our handshake and two messages, encrypted when RC4 was selected. */
            size_t start = out.len;
            put_handshake(&out, &f->x->theirs);
            uint8_t bits[2] = {0xa5, 0x40};
            wire_put_bitfield(&out, bits, sizeof(bits));
            wire_put_have(&out, 3);
            mse_encrypt(&fake_mse, out.data + start, out.len - start);
        }
        if (out.len > 0)
            fake_send(f, out.data, out.len);
    }
    if (fake_mse_used > 0 && f->in.len > fake_seen) {
        mse_decrypt(&fake_mse, f->in.data + fake_seen, f->in.len - fake_seen);
        fake_seen = f->in.len;
    }
    buf_free(&out);
}

static void mse_dial(uint32_t offer, uint32_t accept, uint32_t prefer, uint32_t want)
{
    struct ctx *x = ctx_new();
    struct buf out;
    buf_init(&out, 0);
    struct mse_opts o = {.crypto = accept, .prefer = prefer, .find_skey = fake_find_skey,
                         .ud = x};
    assert_int_equal(mse_init(&fake_mse, &o, &out), 0);
    fake_mse_used = fake_seen = 0;
    x->f.on_data = mse_answer;
    uint16_t port = fake_listen(&x->f, &x->loop, "127.0.0.1");
    x->opts.mse_offer = offer;
    ctx_connect(x, "127.0.0.1", port);
    /* The receiver's public key goes out as soon as the conn's arrives. */
    uv_update_time(&x->loop);
    uint64_t end = uv_now(&x->loop) + 2000;
    bool sent = false;
    while (x->nrecs < 2 && x->closes == 0 && uv_now(&x->loop) < end) {
        if (!sent && x->f.accepted && x->f.in.len > 0) {
            fake_send(&x->f, out.data, out.len);
            sent = true;
        }
        run_once(x);
    }
    assert_int_equal(x->closes, 0);
    assert_int_equal(fake_mse.selected, want);
    assert_int_equal(x->handshakes, 1);
    assert_int_equal(x->c->state, CONN_ACTIVE);
    assert_int_equal(x->c->rc4, want == MSE_RC4);
    assert_int_equal(x->nrecs, 2);
    assert_int_equal(x->recs[0].type, WIRE_BITFIELD);
    assert_int_equal(x->recs[0].data[0], 0xa5);
    assert_int_equal(x->recs[1].type, WIRE_HAVE);
    assert_int_equal(x->recs[1].index, 3);
    /* And back: a have from the conn arrives whole (decrypted by the fake when RC4). */
    wire_put_have(conn_out(x->c), 9);
    conn_flush(x->c);
    size_t before = fake_seen;
    end = uv_now(&x->loop) + 1000;
    while (fake_seen < before + 9 && uv_now(&x->loop) < end)
        run_once(x);
    assert_int_equal(fake_seen, before + 9);
    static const uint8_t have9[9] = {0, 0, 0, 5, 4, 0, 0, 0, 9};
    assert_memory_equal(x->f.in.data + before, have9, 9);
    mse_free(&fake_mse);
    buf_free(&out);
    ctx_free(x);
}

static void test_mse_rc4(void **state)
{
    (void)state;
    if (!mse_rc4_available())
        skip();
    mse_dial(MSE_RC4, MSE_RC4 | MSE_PLAIN, MSE_RC4, MSE_RC4);
    mse_dial(MSE_RC4 | MSE_PLAIN, MSE_RC4 | MSE_PLAIN, MSE_RC4, MSE_RC4);
}

static void test_mse_plaintext(void **state)
{
    (void)state;
    mse_dial(MSE_RC4 | MSE_PLAIN, MSE_RC4 | MSE_PLAIN, MSE_PLAIN, MSE_PLAIN);
}

/* ---- receiving blocks in place ---- */

/* Block k of the in-place tests: piece k / 2, offset (k % 2) * 16 KiB (PIECE_LEN is two). */
#define IP_BLOCK 16384u
static uint8_t ip_byte(uint32_t index, uint32_t begin, size_t i)
{
    return (uint8_t)(index * 31 + begin / IP_BLOCK * 7 + i * 13 + i / 251);
}

static size_t ip_find(const struct ctx *x, uint32_t index, uint32_t begin)
{
    for (size_t i = 0; i < x->nasked; i++)
        if (!x->gone[i] && x->asked[i].index == index && x->asked[i].begin == begin)
            return i;
    return SIZE_MAX;
}

/* What the torrent's peer_expect does, over x->asked. */
static size_t ip_expect(void *owner, struct conn *c, const struct conn_block *from, bool started,
                        struct conn_block *out, size_t max)
{
    struct ctx *x = owner;
    assert_ptr_equal(c, x->c);
    size_t i = 0;
    if (from != NULL) {
        i = ip_find(x, from->index, from->begin);
        if (i == SIZE_MAX || x->asked[i].length != from->length)
            return 0;
    }
    size_t n = 0;
    for (; i < x->nasked && n < max; i++) {
        if (x->gone[i])
            continue;
        if (x->shared[i] && !(started && n == 0))
            break;
        out[n++] = x->asked[i];
    }
    return n;
}

/* What handle_block does: a block asked for goes home (copied unless it is there already);
 * one that is gone is late and dropped. */
static int ip_message(void *owner, struct conn *c, const struct wire_msg *m)
{
    struct ctx *x = owner;
    int rc = h_message(owner, c, m);
    if (m->type != WIRE_PIECE)
        return rc;
    size_t i = ip_find(x, m->index, m->begin);
    if (i == SIZE_MAX)
        return rc;
    assert_int_equal(m->data_len, x->asked[i].length);
    x->gone[i] = true;
    if (m->data == x->asked[i].p)
        x->homed_in_place++;
    else
        memcpy(x->asked[i].p, m->data, m->data_len);
    return rc;
}

static const struct conn_handler ip_handler = {h_handshake, ip_message, h_close, NULL, ip_expect};

/* Asks for blocks 0..n-1 (pieces 0..n/2), their homes side by side in x->home. */
static void ip_ask(struct ctx *x, size_t n)
{
    x->handler = &ip_handler;
    x->home = calloc(n, IP_BLOCK);
    assert_non_null(x->home);
    for (size_t k = 0; k < n; k++)
        x->asked[k] = (struct conn_block){(uint32_t)(k / 2), (uint32_t)(k % 2) * IP_BLOCK, IP_BLOCK,
                                          x->home + k * IP_BLOCK};
    x->nasked = n;
}

static void ip_put_block(struct buf *b, size_t k)
{
    uint32_t index = (uint32_t)(k / 2), begin = (uint32_t)(k % 2) * IP_BLOCK;
    wire_put_piece_header(b, index, begin, IP_BLOCK);
    assert_int_equal(buf_reserve(b, IP_BLOCK), 0);
    for (size_t i = 0; i < IP_BLOCK; i++)
        b->data[b->len + i] = ip_byte(index, begin, i);
    b->len += IP_BLOCK;
}

static void ip_check_homes(const struct ctx *x, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        const uint8_t *h = x->home + k * IP_BLOCK;
        for (size_t i = 0; i < IP_BLOCK; i++)
            if (h[i] != ip_byte((uint32_t)(k / 2), (uint32_t)(k % 2) * IP_BLOCK, i))
                fail_msg("block %zu byte %zu: %u", k, i, h[i]);
    }
}

static void ip_connect(struct ctx *x)
{
    x->f.on_data = answer_handshake;
    ctx_connect(x, "127.0.0.1", fake_listen(&x->f, &x->loop, "127.0.0.1"));
}

static void ip_run_until_recs(struct ctx *x, size_t n)
{
    uv_update_time(&x->loop);
    uint64_t end = uv_now(&x->loop) + 4000;
    while (x->nrecs < n && x->closes == 0 && uv_now(&x->loop) < end)
        run_once(x);
    assert_int_equal(x->closes, 0);
    assert_int_equal(x->nrecs, n);
}

/* A connection asking for blocks 0..n-1 (shared: those asked of another peer too), active
 * (the handshake's bitfield and have received), counting into st. */
static struct ctx *ip_start(rv_session_stats_t *st, size_t n, size_t shared)
{
    struct ctx *x = ctx_new();
    x->opts.stats = st;
    ip_ask(x, n);
    if (shared < n)
        x->shared[shared] = true;
    ip_connect(x);
    ip_run_until_recs(x, 2);
    return x;
}

/* Eight blocks in the order asked, in one write after the handshake: every one read from the
 * socket straight to its home, none through the receive buffer. */
static void test_in_place_in_order(void **state)
{
    (void)state;
    rv_session_stats_t st = {0};
    struct ctx *x = ip_start(&st, 8, SIZE_MAX);
    struct buf b;
    buf_init(&b, 0);
    for (size_t k = 0; k < 8; k++)
        ip_put_block(&b, k);
    fake_send(&x->f, b.data, b.len);
    buf_free(&b);
    ip_run_until_recs(x, 10);
    for (size_t k = 0; k < 8; k++) {
        assert_int_equal(x->recs[2 + k].type, WIRE_PIECE);
        assert_int_equal(x->recs[2 + k].index, k / 2);
        assert_int_equal(x->recs[2 + k].begin, (k % 2) * IP_BLOCK);
        assert_true(x->gone[k]);
    }
    ip_check_homes(x, 8);
    assert_int_equal(x->homed_in_place, 8);
    assert_int_equal(st.blocks_in_place, 8);
    assert_int_equal(x->c->rbuf.len, 0);
    assert_int_equal(x->c->bytes_in, HANDSHAKE_LEN + 7 + 9 + 8 * (13 + IP_BLOCK));
    ctx_free(x);
}

/* Out of order, as libtorrent sends when its disk reads finish out of order: two swapped, a
 * have between blocks, a block asked of another peer too (never started in place) ahead of
 * its turn. Every block reaches its home intact, the messages come in the order sent; sent
 * at once, or a few bytes at a time (headers and payloads split anywhere). */
static const size_t ip_order[] = {1, 0, 2, SIZE_MAX, 3, 5, 4, 7, 6};

static void in_place_out_of_order(const size_t *chunks, size_t nchunks)
{
    rv_session_stats_t st = {0};
    struct ctx *x = ip_start(&st, 8, 7);
    for (size_t i = 0; i < sizeof(ip_order) / sizeof(ip_order[0]); i++) {
        if (ip_order[i] == SIZE_MAX)
            wire_put_have(&x->f.out, 5);
        else
            ip_put_block(&x->f.out, ip_order[i]);
    }
    if (chunks == NULL) {
        fake_send(&x->f, x->f.out.data, x->f.out.len);
        x->f.off = x->f.out.len;
    } else {
        fake_pace(&x->f, chunks, nchunks);
    }
    ip_run_until_recs(x, 2 + sizeof(ip_order) / sizeof(ip_order[0]));
    for (size_t i = 0; i < sizeof(ip_order) / sizeof(ip_order[0]); i++) {
        const struct rec *r = &x->recs[2 + i];
        if (ip_order[i] == SIZE_MAX) {
            assert_int_equal(r->type, WIRE_HAVE);
            assert_int_equal(r->index, 5);
            continue;
        }
        assert_int_equal(r->type, WIRE_PIECE);
        assert_int_equal(r->index, ip_order[i] / 2);
        assert_int_equal(r->begin, (ip_order[i] % 2) * IP_BLOCK);
        assert_int_equal(r->data_len, IP_BLOCK);
    }
    for (size_t k = 0; k < 8; k++)
        assert_true(x->gone[k]);
    ip_check_homes(x, 8);
    assert_int_equal(x->homed_in_place, st.blocks_in_place);
    assert_true(st.blocks_in_place >= 1); /* at least the first planned read went home */
    assert_true(st.blocks_in_place <= 7); /* never block 7 */
    assert_int_equal(x->c->rbuf.len, 0);
    ctx_free(x);
}

static void test_in_place_out_of_order(void **state)
{
    (void)state;
    in_place_out_of_order(NULL, 0);
}

static void test_in_place_out_of_order_split(void **state)
{
    (void)state;
    static const size_t chunks[] = {1, 7, 13, 100, 4000, 16397, 3, 12, 9000, 5};
    in_place_out_of_order(chunks, sizeof(chunks) / sizeof(chunks[0]));
}

/* A block arriving in place is taken back halfway (another peer delivered it): not one more
 * byte lands in its home, and the message still comes, finished through the receive buffer
 * with zeros for the half that went home (it is late: its owner drops it). */
static void test_in_place_taken_back(void **state)
{
    (void)state;
    rv_session_stats_t st = {0};
    struct ctx *x = ip_start(&st, 2, SIZE_MAX);
    struct buf b;
    buf_init(&b, 0);
    ip_put_block(&b, 0);
    ip_put_block(&b, 1);
    const size_t half = 13 + IP_BLOCK / 2;
    fake_send(&x->f, b.data, half);
    uv_update_time(&x->loop);
    uint64_t end = uv_now(&x->loop) + 2000;
    while (!(x->c->has_cur && x->c->cur_got == IP_BLOCK / 2) && uv_now(&x->loop) < end)
        run_once(x);
    assert_true(x->c->has_cur);
    assert_ptr_equal(x->c->cur.p, x->home);
    x->gone[0] = true; /* arrived from elsewhere: */
    memset(x->home, 0xee, IP_BLOCK);
    fake_send(&x->f, b.data + half, b.len - half);
    buf_free(&b);
    ip_run_until_recs(x, 4);
    const struct rec *r = &x->recs[2];
    assert_int_equal(r->type, WIRE_PIECE);
    assert_int_equal(r->index, 0);
    assert_int_equal(r->data_len, IP_BLOCK);
    for (size_t i = 0; i < IP_BLOCK; i++) {
        assert_int_equal(x->home[i], 0xee);
        assert_int_equal(r->data[i], i < IP_BLOCK / 2 ? 0 : ip_byte(0, 0, i));
    }
    assert_int_equal(x->recs[3].type, WIRE_PIECE);
    assert_int_equal(x->recs[3].begin, IP_BLOCK);
    assert_true(x->gone[1]);
    for (size_t i = 0; i < IP_BLOCK; i++)
        assert_int_equal(x->home[IP_BLOCK + i], ip_byte(0, IP_BLOCK, i));
    ctx_free(x);
}

int main(void)
{
    /* As session.h asks of programs using the library: a peer or server that hangs up while
     * we write is an error on that connection (EPIPE), not the end of this process. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_handshake_ipv4, teardown),
        cmocka_unit_test_teardown(test_handshake_ipv6, teardown),
        cmocka_unit_test_teardown(test_wrong_info_hash, teardown),
        cmocka_unit_test_teardown(test_wrong_protocol, teardown),
        cmocka_unit_test_teardown(test_handshake_timeout, teardown),
        cmocka_unit_test_teardown(test_split_messages, teardown),
        cmocka_unit_test_teardown(test_huge_length_prefix, teardown),
        cmocka_unit_test_teardown(test_keepalive_sent, teardown),
        cmocka_unit_test_teardown(test_idle_timeout, teardown),
        cmocka_unit_test_teardown(test_connection_refused, teardown),
        cmocka_unit_test_teardown(test_close_inside_on_message, teardown),
        cmocka_unit_test_teardown(test_close_with_backlog, teardown),
        cmocka_unit_test_teardown(test_send_by_reference, teardown),
        cmocka_unit_test_teardown(test_send_stall_timeout, teardown),
        cmocka_unit_test_teardown(test_mse_rc4, teardown),
        cmocka_unit_test_teardown(test_mse_plaintext, teardown),
        cmocka_unit_test_teardown(test_in_place_in_order, teardown),
        cmocka_unit_test_teardown(test_in_place_out_of_order, teardown),
        cmocka_unit_test_teardown(test_in_place_out_of_order_split, teardown),
        cmocka_unit_test_teardown(test_in_place_taken_back, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
