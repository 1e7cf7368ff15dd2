/* Unit tests for the UDP tracker client (BEP 15, BEP 41): the exact bytes of built requests,
 * parsing of every reply type, and udp.c on a real libuv loop against a scripted fake tracker
 * on 127.0.0.1 / ::1 in the same loop.
 *
 * With RV_TEST_OPENTRACKER_UDP=udp://127.0.0.1:PORT and RV_TEST_OPENTRACKER_HASH=<40 hex> set,
 * one more test announces to and scrapes that (real) tracker; it is skipped otherwise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "tracker/tracker.h"
#include "tracker/udp.h"
#include "util/hex.h"

/* ---- byte helpers ---- */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void sample_req(struct announce_req *r)
{
    memset(r, 0, sizeof(*r));
    for (int i = 0; i < 20; i++) {
        r->info_hash[i] = (uint8_t)(0xa0 + i);
        r->peer_id[i] = (uint8_t)('A' + i);
    }
    r->port = 6881;
    r->uploaded = 0x0102030405060708ULL;
    r->downloaded = 0x1112131415161718ULL;
    r->left = 0x2122232425262728ULL;
    r->event = TR_EVENT_STARTED;
    r->numwant = -1;
    r->key = 0xdeadbeef;
}

/* ---- building ---- */

static void build_connect_bytes(void **state)
{
    (void)state;
    uint8_t out[UDP_MAX_PACKET];
    static const uint8_t want[16] = {0x00, 0x00, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80,
                                     0x00, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56, 0x78};
    assert_int_equal(udp_build_connect(0x12345678, out), 16);
    assert_memory_equal(out, want, 16);
}

static void build_announce_bytes(void **state)
{
    (void)state;
    uint8_t out[UDP_MAX_PACKET], want[98];
    struct announce_req r;

    sample_req(&r);
    put64(want, 0x1122334455667788ULL);
    put32(want + 8, 1);
    put32(want + 12, 0xcafebabe);
    memcpy(want + 16, r.info_hash, 20);
    memcpy(want + 36, r.peer_id, 20);
    put64(want + 56, r.downloaded); /* BEP 15 order: downloaded, left, uploaded */
    put64(want + 64, r.left);
    put64(want + 72, r.uploaded);
    put32(want + 80, 2);
    put32(want + 84, 0);
    put32(want + 88, 0xdeadbeef);
    put32(want + 92, 0xffffffff);
    want[96] = 0x1a;
    want[97] = 0xe1;
    assert_int_equal(udp_build_announce(0x1122334455667788ULL, 0xcafebabe, &r, NULL, out), 98);
    assert_memory_equal(out, want, 98);
    /* empty url data adds nothing */
    assert_int_equal(udp_build_announce(0x1122334455667788ULL, 0xcafebabe, &r, "", out), 98);
    assert_memory_equal(out, want, 98);

    r.numwant = 50;
    r.event = TR_EVENT_NONE;
    assert_int_equal(udp_build_announce(1, 2, &r, NULL, out), 98);
    assert_int_equal(get32(out + 92), 50);
    assert_int_equal(get32(out + 80), 0);
}

static void build_announce_url_data(void **state)
{
    (void)state;
    uint8_t out[UDP_MAX_PACKET];
    struct announce_req r;
    char path[301];

    sample_req(&r);
    assert_int_equal(udp_build_announce(1, 2, &r, "/announce?x=1", out), 98 + 2 + 13);
    assert_int_equal(out[98], 0x2);
    assert_int_equal(out[99], 13);
    assert_memory_equal(out + 100, "/announce?x=1", 13);

    /* BEP 41: longer data is split into options of at most 255 bytes */
    path[0] = '/';
    for (int i = 1; i < 300; i++)
        path[i] = (char)('a' + i % 26);
    path[300] = '\0';
    assert_int_equal(udp_build_announce(1, 2, &r, path, out), 98 + 2 + 255 + 2 + 45);
    assert_int_equal(out[98], 0x2);
    assert_int_equal(out[99], 255);
    assert_memory_equal(out + 100, path, 255);
    assert_int_equal(out[355], 0x2);
    assert_int_equal(out[356], 45);
    assert_memory_equal(out + 357, path + 255, 45);

    /* exactly 255 bytes: one option */
    path[255] = '\0';
    assert_int_equal(udp_build_announce(1, 2, &r, path, out), 98 + 2 + 255);

    /* far too long: cut to the packet, never past it */
    char *huge = malloc(5000);
    assert_non_null(huge);
    memset(huge, 'x', 4999);
    huge[4999] = '\0';
    size_t n = udp_build_announce(1, 2, &r, huge, out);
    assert_true(n <= UDP_MAX_PACKET);
    assert_true(n > UDP_MAX_PACKET - 260);
    free(huge);
}

static void build_scrape_bytes(void **state)
{
    (void)state;
    uint8_t out[UDP_MAX_PACKET], want[36], ih[20];

    for (int i = 0; i < 20; i++)
        ih[i] = (uint8_t)i;
    put64(want, 0x0102030405060708ULL);
    put32(want + 8, 2);
    put32(want + 12, 7);
    memcpy(want + 16, ih, 20);
    assert_int_equal(udp_build_scrape(0x0102030405060708ULL, 7, ih, out), 36);
    assert_memory_equal(out, want, 36);
}

/* ---- parsing ---- */

static int parse(const uint8_t *p, size_t len, int ipv6, struct udp_reply *rep, rv_error_t *err)
{
    memset(err, 0, sizeof(*err));
    return udp_parse_reply(p, len, ipv6, rep, err);
}

static void expect_fail(const uint8_t *p, size_t len, int ipv6, const char *msg)
{
    struct udp_reply rep;
    rv_error_t err;
    int rc = parse(p, len, ipv6, &rep, &err);
    if (rc != RV_ETRACKER || strstr(err.msg, msg) == NULL)
        print_error("len %zu: rc %d, message '%s', expected '%s'\n", len, rc, err.msg, msg);
    assert_int_equal(rc, RV_ETRACKER);
    assert_int_equal(err.code, RV_ETRACKER);
    assert_non_null(strstr(err.msg, msg));
    assert_null(rep.announce.peers);
}

static void parse_short_packets(void **state)
{
    (void)state;
    uint8_t p[8] = {0, 0, 0, 1, 0, 0, 0, 9};
    char msg[64];
    for (size_t n = 0; n < 8; n++) {
        snprintf(msg, sizeof(msg), "reply of %zu bytes is too short", n);
        expect_fail(p, n, 0, msg);
    }
    /* 8 bytes: the head is there, so the action and transaction are known even on failure */
    struct udp_reply rep;
    rv_error_t err;
    assert_int_equal(parse(p, 8, 0, &rep, &err), RV_ETRACKER);
    assert_int_equal(rep.action, 1);
    assert_int_equal(rep.transaction, 9);
}

static void parse_connect(void **state)
{
    (void)state;
    uint8_t p[16];
    struct udp_reply rep;
    rv_error_t err;

    put32(p, 0);
    put32(p + 4, 0xabcdef01);
    put64(p + 8, 0x8877665544332211ULL);
    assert_int_equal(parse(p, 16, 0, &rep, &err), 0);
    assert_int_equal(rep.action, UDP_CONNECT);
    assert_int_equal(rep.transaction, 0xabcdef01);
    assert_true(rep.connection == 0x8877665544332211ULL);
    expect_fail(p, 15, 0, "connect reply of 15 bytes is too short");
    expect_fail(p, 8, 0, "connect reply of 8 bytes is too short");
}

static size_t announce_reply(uint8_t *p, int32_t interval, uint32_t leechers, uint32_t seeders)
{
    put32(p, 1);
    put32(p + 4, 42);
    put32(p + 8, (uint32_t)interval);
    put32(p + 12, leechers);
    put32(p + 16, seeders);
    return 20;
}

static void parse_announce_v4(void **state)
{
    (void)state;
    uint8_t p[64];
    struct udp_reply rep;
    rv_error_t err;
    size_t n = announce_reply(p, 1800, 3, 5);

    assert_int_equal(parse(p, n, 0, &rep, &err), 0);
    assert_int_equal(rep.action, UDP_ANNOUNCE);
    assert_int_equal(rep.announce.interval, 1800);
    assert_int_equal(rep.announce.min_interval, -1);
    assert_int_equal(rep.announce.incomplete, 3);
    assert_int_equal(rep.announce.complete, 5);
    assert_int_equal(rep.announce.downloaded, -1);
    assert_null(rep.announce.warning);
    assert_null(rep.announce.tracker_id);
    assert_int_equal(rep.announce.peer_count, 0);
    assert_null(rep.announce.peers);

    static const uint8_t peers[] = {10,  0,   0, 1, 0x1a, 0xe1, /* good */
                                    0,   0,   0, 0, 0x1a, 0xe1, /* 0.0.0.0: dropped */
                                    10,  0,   0, 2, 0,    0,    /* port 0: dropped */
                                    192, 168, 1, 9, 0xc8, 0xd5};
    memcpy(p + n, peers, sizeof(peers));
    n += sizeof(peers);
    assert_int_equal(parse(p, n, 0, &rep, &err), 0);
    assert_int_equal(rep.announce.peer_count, 2);
    assert_int_equal(rep.announce.peers_dropped, 2);
    assert_int_equal(rep.announce.peers[0].family, 4);
    assert_memory_equal(rep.announce.peers[0].ip, "\x0a\x00\x00\x01", 4);
    assert_int_equal(rep.announce.peers[0].port, 6881);
    assert_memory_equal(rep.announce.peers[1].ip, "\xc0\xa8\x01\x09", 4);
    assert_int_equal(rep.announce.peers[1].port, 51413);
    announce_resp_free(&rep.announce);

    /* a trailing partial entry */
    expect_fail(p, 20 + 6 + 5, 0, "peer list of 11 bytes");
    expect_fail(p, 19, 0, "announce reply of 19 bytes is too short");
    /* opentracker's answer for a torrent it does not list */
    expect_fail(p, 8, 0, "announce reply of 8 bytes is too short, with no interval or peers");
    /* the same 24 bytes of peers are no whole number of IPv6 entries */
    expect_fail(p, 20 + 24, 1, "peer list of 24 bytes");
}

static void parse_announce_v6(void **state)
{
    (void)state;
    uint8_t p[20 + 3 * 18];
    struct udp_reply rep;
    rv_error_t err;
    size_t n = announce_reply(p, 60, 0, 1);

    static const uint8_t a[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    memcpy(p + n, a, 16);
    p[n + 16] = 0x1a;
    p[n + 17] = 0xe2;
    n += 18;
    memset(p + n, 0, 16); /* :: is dropped */
    p[n + 16] = 0;
    p[n + 17] = 80;
    n += 18;
    memcpy(p + n, a, 16);
    p[n] = 0xff; /* multicast: dropped */
    p[n + 16] = 0;
    p[n + 17] = 80;
    n += 18;
    assert_int_equal(parse(p, n, 1, &rep, &err), 0);
    assert_int_equal(rep.announce.peer_count, 1);
    assert_int_equal(rep.announce.peers_dropped, 2);
    assert_int_equal(rep.announce.peers[0].family, 6);
    assert_memory_equal(rep.announce.peers[0].ip, a, 16);
    assert_int_equal(rep.announce.peers[0].port, 6882);
    announce_resp_free(&rep.announce);

    expect_fail(p, 20 + 17, 1, "peer list of 17 bytes");
    /* read as IPv4, 54 bytes are 9 entries */
    assert_int_equal(parse(p, n, 0, &rep, &err), 0);
    assert_int_equal(rep.announce.peer_count + rep.announce.peers_dropped, 9);
    announce_resp_free(&rep.announce);
}

static void parse_announce_interval(void **state)
{
    (void)state;
    uint8_t p[20];

    announce_reply(p, 0, 0, 0);
    expect_fail(p, 20, 0, "interval 0 is not positive");
    announce_reply(p, -1, 0, 0);
    expect_fail(p, 20, 0, "interval -1 is not positive");
    announce_reply(p, INT32_MIN, 0, 0);
    expect_fail(p, 20, 0, "is not positive");

    struct udp_reply rep;
    rv_error_t err;
    announce_reply(p, INT32_MAX, 0xffffffff, 0);
    assert_int_equal(parse(p, 20, 0, &rep, &err), 0);
    assert_int_equal(rep.announce.interval, INT32_MAX);
    assert_true(rep.announce.incomplete == 0xffffffffLL);
}

static void parse_announce_peer_cap(void **state)
{
    (void)state;
    size_t count = TRACKER_MAX_PEERS + 5;
    size_t len = 20 + count * 6;
    uint8_t *p = malloc(len);
    struct udp_reply rep;
    rv_error_t err;

    assert_non_null(p);
    announce_reply(p, 10, 0, 0);
    for (size_t i = 0; i < count; i++) {
        uint8_t *e = p + 20 + i * 6;
        e[0] = 10;
        e[1] = (uint8_t)(i >> 16);
        e[2] = (uint8_t)(i >> 8);
        e[3] = (uint8_t)i;
        e[4] = 0x1a;
        e[5] = 0xe1;
    }
    assert_int_equal(parse(p, len, 0, &rep, &err), 0);
    assert_int_equal(rep.announce.peer_count, TRACKER_MAX_PEERS);
    assert_int_equal(rep.announce.peers_dropped, 5);
    announce_resp_free(&rep.announce);
    free(p);
}

static void parse_scrape(void **state)
{
    (void)state;
    uint8_t p[32];
    struct udp_reply rep;
    rv_error_t err;

    put32(p, 2);
    put32(p + 4, 77);
    put32(p + 8, 11);  /* seeders */
    put32(p + 12, 22); /* completed */
    put32(p + 16, 33); /* leechers */
    assert_int_equal(parse(p, 20, 0, &rep, &err), 0);
    assert_int_equal(rep.action, UDP_SCRAPE);
    assert_int_equal(rep.scrape.complete, 11);
    assert_int_equal(rep.scrape.downloaded, 22);
    assert_int_equal(rep.scrape.incomplete, 33);
    expect_fail(p, 19, 0, "scrape reply of 19 bytes is too short");
    expect_fail(p, 8, 1, "scrape reply of 8 bytes is too short");
}

static void parse_error_reply(void **state)
{
    (void)state;
    uint8_t p[600];
    struct udp_reply rep;
    rv_error_t err;

    put32(p, 3);
    put32(p + 4, 5);
    memcpy(p + 8, "torrent not registered", 22);
    expect_fail(p, 30, 0, "tracker said: torrent not registered");
    assert_int_equal(parse(p, 30, 0, &rep, &err), RV_ETRACKER);
    assert_int_equal(rep.action, UDP_ERROR);
    assert_int_equal(rep.transaction, 5);
    assert_string_equal(err.msg, "tracker said: torrent not registered");

    /* control bytes made harmless, a trailing NUL dropped */
    memcpy(p + 8, "bad\n\x1b[31mred\xff", 13);
    p[21] = '\0';
    assert_int_equal(parse(p, 22, 0, &rep, &err), RV_ETRACKER);
    assert_string_equal(err.msg, "tracker said: bad??[31mred?");

    /* empty */
    assert_int_equal(parse(p, 8, 0, &rep, &err), RV_ETRACKER);
    assert_string_equal(err.msg, "tracker said: (no message)");

    /* long: capped, and marked as cut */
    memset(p + 8, 'z', 500);
    assert_int_equal(parse(p, 508, 0, &rep, &err), RV_ETRACKER);
    assert_true(strlen(err.msg) < sizeof(err.msg) - 1);
    assert_non_null(strstr(err.msg, "zzz..."));
}

static void parse_unknown_action(void **state)
{
    (void)state;
    uint8_t p[20] = {0, 0, 0, 7};
    expect_fail(p, 20, 0, "unknown action 7");
    put32(p, 0xffffffff);
    expect_fail(p, 8, 0, "unknown action 4294967295");
}

/* ---- a scripted fake tracker on the same loop ---- */

enum fake_mode {
    FAKE_NORMAL,
    FAKE_SILENT,      /* counts packets, never answers */
    FAKE_WRONG_TID,   /* announce: a reply with another transaction id first, then the right */
    FAKE_SPOOF,       /* announce: the right transaction id from another port first */
    FAKE_SHORT,       /* announce: a 12-byte reply with the right transaction id */
    FAKE_ERROR,       /* announce: an error reply */
    FAKE_WRONG_ACTION /* connect: answered with an announce reply */
};

#define FAKE_CONN_ID 0x0123456789abcdefULL

struct fake {
    uv_udp_t sock, spoof;
    bool spoof_open;
    int family;
    int port;
    enum fake_mode mode;
    int packets, connects, announces, scrapes, bad_conn_ids;
    uint64_t conn_id;
    bool change_id_after_announce; /* a tracker restart: old ids get an error */
    char url_data[2048];
    size_t url_data_len;
    uint8_t last_info_hash[20];
    uint16_t last_port;
};

static void fake_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    static char mem[65536];
    (void)h;
    (void)suggested;
    *b = uv_buf_init(mem, sizeof(mem));
}

static void fake_send(struct fake *f, uv_udp_t *s, const struct sockaddr *to, const uint8_t *p,
                      size_t n)
{
    (void)f;
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    assert_int_equal(uv_udp_try_send(s, &b, 1, to), (int)n);
}

static size_t fake_announce_reply(struct fake *f, uint32_t tid, int32_t interval, uint8_t *out)
{
    size_t n = 20;
    put32(out, 1);
    put32(out + 4, tid);
    put32(out + 8, (uint32_t)interval);
    put32(out + 12, 3);
    put32(out + 16, 5);
    if (f->family == AF_INET6) {
        static const uint8_t a[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7};
        memcpy(out + n, a, 16);
        out[n + 16] = 0x1a;
        out[n + 17] = 0xe1;
        n += 18;
    } else {
        static const uint8_t e[12] = {10, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0x1a, 0xe2};
        memcpy(out + n, e, sizeof(e));
        n += sizeof(e);
    }
    return n;
}

static void fake_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
                      unsigned flags)
{
    struct fake *f = h->data;
    const uint8_t *p = (const uint8_t *)buf->base;
    uint8_t out[1024];
    (void)flags;

    if (nread <= 0 || from == NULL)
        return;
    size_t len = (size_t)nread;
    f->packets++;
    if (f->mode == FAKE_SILENT || len < 16)
        return;
    uint32_t action = get32(p + 8), tid = get32(p + 12);
    if (action == 0) {
        assert_int_equal(len, 16);
        assert_true(get64(p) == UDP_PROTOCOL_ID);
        f->connects++;
        if (f->mode == FAKE_WRONG_ACTION) {
            fake_send(f, h, from, out, fake_announce_reply(f, tid, 100, out));
            return;
        }
        put32(out, 0);
        put32(out + 4, tid);
        put64(out + 8, f->conn_id);
        fake_send(f, h, from, out, 16);
        return;
    }
    if (get64(p) != f->conn_id) {
        f->bad_conn_ids++;
        put32(out, 3);
        put32(out + 4, tid);
        memcpy(out + 8, "bad connection id", 17);
        fake_send(f, h, from, out, 25);
        return;
    }
    if (action == 2) {
        assert_int_equal(len, 36);
        f->scrapes++;
        memcpy(f->last_info_hash, p + 16, 20);
        put32(out, 2);
        put32(out + 4, tid);
        put32(out + 8, 7);
        put32(out + 12, 9);
        put32(out + 16, 4);
        fake_send(f, h, from, out, 20);
        return;
    }
    assert_int_equal(action, 1);
    assert_true(len >= 98);
    f->announces++;
    memcpy(f->last_info_hash, p + 16, 20);
    f->last_port = (uint16_t)(p[96] << 8 | p[97]);
    /* BEP 41 options: concatenate the URLData ones */
    f->url_data_len = 0;
    for (size_t i = 98; i < len;) {
        if (p[i] == 0)
            break;
        if (p[i] == 1) {
            i++;
            continue;
        }
        assert_true(i + 2 <= len);
        size_t n = p[i + 1];
        assert_true(i + 2 + n <= len);
        if (p[i] == 2) {
            assert_true(f->url_data_len + n < sizeof(f->url_data));
            memcpy(f->url_data + f->url_data_len, p + i + 2, n);
            f->url_data_len += n;
        }
        i += 2 + n;
    }
    f->url_data[f->url_data_len] = '\0';

    switch (f->mode) {
    case FAKE_WRONG_TID:
        fake_send(f, h, from, out, fake_announce_reply(f, tid ^ 1, 111, out));
        break;
    case FAKE_SPOOF:
        fake_send(f, &f->spoof, from, out, fake_announce_reply(f, tid, 222, out));
        break;
    case FAKE_SHORT:
        put32(out, 1);
        put32(out + 4, tid);
        put32(out + 8, 1800);
        fake_send(f, h, from, out, 12);
        return;
    case FAKE_ERROR:
        put32(out, 3);
        put32(out + 4, tid);
        memcpy(out + 8, "torrent not registered", 22);
        fake_send(f, h, from, out, 30);
        return;
    default:
        break;
    }
    fake_send(f, h, from, out, fake_announce_reply(f, tid, 1800, out));
    if (f->change_id_after_announce)
        f->conn_id++;
}

/* Returns 0, or -1 when the address cannot be bound (no IPv6 here). */
static int fake_open(uv_loop_t *loop, struct fake *f, int family, enum fake_mode mode)
{
    struct sockaddr_storage sa;
    int salen = sizeof(sa);

    memset(f, 0, sizeof(*f));
    f->family = family;
    f->mode = mode;
    f->conn_id = FAKE_CONN_ID;
    if (family == AF_INET6)
        uv_ip6_addr("::1", 0, (struct sockaddr_in6 *)&sa);
    else
        uv_ip4_addr("127.0.0.1", 0, (struct sockaddr_in *)&sa);
    assert_int_equal(uv_udp_init(loop, &f->sock), 0);
    f->sock.data = f;
    if (uv_udp_bind(&f->sock, (struct sockaddr *)&sa, 0) != 0) {
        uv_close((uv_handle_t *)&f->sock, NULL);
        return -1;
    }
    assert_int_equal(uv_udp_getsockname(&f->sock, (struct sockaddr *)&sa, &salen), 0);
    f->port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                       : ((struct sockaddr_in *)&sa)->sin_port);
    assert_int_equal(uv_udp_recv_start(&f->sock, fake_alloc, fake_recv), 0);
    if (mode == FAKE_SPOOF) {
        ((struct sockaddr_in *)&sa)->sin_port = 0;
        assert_int_equal(uv_udp_init(loop, &f->spoof), 0);
        assert_int_equal(uv_udp_bind(&f->spoof, (struct sockaddr *)&sa, 0), 0);
        f->spoof_open = true;
    }
    return 0;
}

static void fake_close(struct fake *f)
{
    uv_close((uv_handle_t *)&f->sock, NULL);
    if (f->spoof_open)
        uv_close((uv_handle_t *)&f->spoof, NULL);
    f->spoof_open = false;
}

/* ---- one loop, one fake, one client per test ---- */

struct ctx {
    uv_loop_t loop;
    struct fake fake;
    struct udp_tr *u;
    uv_timer_t guard, step;
    bool finished, closed, guard_fired;
    bool manual; /* no fake, no timers: the test closes the client itself */
    int calls;
    int rc;
    rv_error_t err;
    int64_t interval, complete, incomplete, downloaded;
    struct peer_addr *peers;
    size_t peer_count, peers_dropped;
    char url[600];
    struct announce_req areq;
    /* called from the callback instead of finishing, when set */
    void (*next)(struct ctx *c);
    int packets_at_cancel;
    uint64_t started;
    uint64_t elapsed;
};

static void on_closed(void *ud)
{
    struct ctx *c = ud;
    c->closed = true;
}

static void finish(struct ctx *c)
{
    if (c->finished || c->manual)
        return;
    c->finished = true;
    c->elapsed = uv_now(&c->loop) - c->started;
    udp_tr_close(c->u, on_closed, c);
    fake_close(&c->fake);
    uv_close((uv_handle_t *)&c->guard, NULL);
    uv_close((uv_handle_t *)&c->step, NULL);
}

static void on_guard(uv_timer_t *t)
{
    struct ctx *c = t->data;
    c->guard_fired = true;
    finish(c);
}

static void on_announce(void *ud, int rc, struct announce_resp *resp, const rv_error_t *err)
{
    struct ctx *c = ud;
    c->calls++;
    c->rc = rc;
    if (rc == 0) {
        assert_non_null(resp);
        assert_null(err);
        c->interval = resp->interval;
        c->complete = resp->complete;
        c->incomplete = resp->incomplete;
        c->downloaded = resp->downloaded;
        assert_int_equal(resp->min_interval, -1);
        assert_null(resp->warning);
        assert_null(resp->tracker_id);
        free(c->peers);
        c->peers = resp->peers; /* moved out, as client.h allows */
        c->peer_count = resp->peer_count;
        c->peers_dropped = resp->peers_dropped;
        resp->peers = NULL;
    } else {
        assert_null(resp);
        assert_non_null(err);
        assert_int_equal(err->code, rc);
        c->err = *err;
    }
    if (c->next) {
        void (*next)(struct ctx *) = c->next;
        c->next = NULL;
        next(c);
        return;
    }
    finish(c);
}

static void on_scrape(void *ud, int rc, const struct scrape_resp *resp, const rv_error_t *err)
{
    struct ctx *c = ud;
    c->calls++;
    c->rc = rc;
    if (rc == 0) {
        c->complete = resp->complete;
        c->incomplete = resp->incomplete;
        c->downloaded = resp->downloaded;
    } else {
        c->err = *err;
    }
    finish(c);
}

/* Returns false (after cleaning up) when the fake's address cannot be bound. */
static bool ctx_start(struct ctx *c, int family, enum fake_mode mode, unsigned timeout_ms,
                      unsigned retries, const char *path)
{
    struct tracker_client_opts o;

    memset(c, 0, sizeof(*c));
    assert_int_equal(uv_loop_init(&c->loop), 0);
    if (fake_open(&c->loop, &c->fake, family, mode) < 0) {
        uv_run(&c->loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&c->loop), 0);
        return false;
    }
    memset(&o, 0, sizeof(o));
    o.udp_timeout_ms = timeout_ms;
    o.udp_max_retries = retries;
    assert_int_equal(udp_tr_new(&c->loop, &o, &c->u), 0);
    assert_int_equal(uv_timer_init(&c->loop, &c->guard), 0);
    assert_int_equal(uv_timer_init(&c->loop, &c->step), 0);
    c->guard.data = c->step.data = c;
    assert_int_equal(uv_timer_start(&c->guard, on_guard, 5000, 0), 0);
    snprintf(c->url, sizeof(c->url),
             family == AF_INET6 ? "udp://[::1]:%d%s" : "udp://127.0.0.1:%d%s", c->fake.port,
             path ? path : "");
    sample_req(&c->areq);
    c->started = uv_now(&c->loop);
    return true;
}

static void ctx_run(struct ctx *c)
{
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_true(c->closed);
    assert_false(c->guard_fired);
    assert_int_equal(uv_loop_close(&c->loop), 0);
}

static void ctx_free(struct ctx *c)
{
    free(c->peers);
    c->peers = NULL;
}

static void announce(struct ctx *c)
{
    assert_int_equal(udp_tr_announce(c->u, c->url, &c->areq, on_announce, c, NULL), 0);
}

static void loop_announce_ok(void **state)
{
    (void)state;
    struct ctx c;

    ctx_start(&c, AF_INET, FAKE_NORMAL, 1000, 2, NULL);
    announce(&c);
    ctx_run(&c);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.interval, 1800);
    assert_int_equal(c.incomplete, 3);
    assert_int_equal(c.complete, 5);
    assert_int_equal(c.downloaded, -1);
    assert_int_equal(c.peer_count, 2);
    assert_int_equal(c.peers[0].family, 4);
    assert_memory_equal(c.peers[0].ip, "\x0a\x00\x00\x01", 4);
    assert_int_equal(c.peers[0].port, 6881);
    assert_int_equal(c.peers[1].port, 6882);
    assert_int_equal(c.fake.connects, 1);
    assert_int_equal(c.fake.announces, 1);
    assert_int_equal(c.fake.bad_conn_ids, 0);
    assert_memory_equal(c.fake.last_info_hash, c.areq.info_hash, 20);
    assert_int_equal(c.fake.last_port, 6881);
    assert_int_equal(c.fake.url_data_len, 0); /* no path: no BEP 41 option */
    ctx_free(&c);
}

static void second_announce(struct ctx *c)
{
    assert_int_equal(c->rc, 0);
    announce(c);
}

static void loop_connection_id_reused(void **state)
{
    (void)state;
    struct ctx c;

    ctx_start(&c, AF_INET, FAKE_NORMAL, 1000, 2, "/announce");
    c.next = second_announce;
    announce(&c);
    ctx_run(&c);
    assert_int_equal(c.calls, 2);
    assert_int_equal(c.rc, 0);
    /* BEP 15: one connection id serves every request for a minute */
    assert_int_equal(c.fake.connects, 1);
    assert_int_equal(c.fake.announces, 2);
    ctx_free(&c);
}

static void loop_stale_connection_id(void **state)
{
    (void)state;
    struct ctx c;

    /* The tracker forgets the id after the first announce (a restart): the second request's
     * cached id draws an error reply, and the client connects again once. */
    ctx_start(&c, AF_INET, FAKE_NORMAL, 1000, 2, NULL);
    c.fake.change_id_after_announce = true;
    c.next = second_announce;
    announce(&c);
    ctx_run(&c);
    assert_int_equal(c.calls, 2);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.fake.bad_conn_ids, 1);
    assert_int_equal(c.fake.connects, 2);
    assert_int_equal(c.fake.announces, 2);
    ctx_free(&c);
}

static void loop_wrong_transaction_ignored(void **state)
{
    (void)state;
    struct ctx c;

    ctx_start(&c, AF_INET, FAKE_WRONG_TID, 1000, 2, NULL);
    announce(&c);
    ctx_run(&c);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.interval, 1800); /* not 111, from the stray reply */
    assert_int_equal(c.fake.announces, 1);
    ctx_free(&c);
}

static void loop_other_source_ignored(void **state)
{
    (void)state;
    struct ctx c;

    ctx_start(&c, AF_INET, FAKE_SPOOF, 1000, 2, NULL);
    announce(&c);
    ctx_run(&c);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.interval, 1800); /* not 222, from the other port */
    ctx_free(&c);
}

static void loop_short_reply(void **state)
{
    (void)state;
    struct ctx c;

    ctx_start(&c, AF_INET, FAKE_SHORT, 1000, 2, NULL);
    announce(&c);
    ctx_run(&c);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.rc, RV_ETRACKER);
    assert_string_equal(c.err.msg, "announce reply of 12 bytes is too short (BEP 15: at least 20)");
    assert_int_equal(c.fake.announces, 1); /* failed at once, not retransmitted */
    ctx_free(&c);
}

static void loop_error_reply(void **state)
{
    (void)state;
    struct ctx c;

    ctx_start(&c, AF_INET, FAKE_ERROR, 1000, 2, NULL);
    announce(&c);
    ctx_run(&c);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.rc, RV_ETRACKER);
    assert_string_equal(c.err.msg, "tracker said: torrent not registered");
    /* the connection id was fresh, so the error is believed without reconnecting */
    assert_int_equal(c.fake.connects, 1);
    ctx_free(&c);
}

static void loop_wrong_action(void **state)
{
    (void)state;
    struct ctx c;

    ctx_start(&c, AF_INET, FAKE_WRONG_ACTION, 1000, 2, NULL);
    announce(&c);
    ctx_run(&c);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.rc, RV_ETRACKER);
    assert_non_null(strstr(c.err.msg, "expected action 0"));
    ctx_free(&c);
}

static void loop_timeout(void **state)
{
    (void)state;
    struct ctx c;

    ctx_start(&c, AF_INET, FAKE_SILENT, 50, 2, NULL);
    announce(&c);
    ctx_run(&c);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.rc, RV_ETIMEDOUT);
    /* BEP 15 retransmission: 50 + 100 + 200 ms over 3 sends */
    assert_int_equal(c.fake.packets, 3);
    assert_non_null(strstr(c.err.msg, "no reply after 3 attempts (350 ms)"));
    assert_true(c.elapsed >= 340);
    assert_true(c.elapsed < 2000);
    ctx_free(&c);
}

static void loop_url_data(void **state)
{
    (void)state;
    struct ctx c;
    char path[400];

    ctx_start(&c, AF_INET, FAKE_NORMAL, 1000, 2, "/announce?passkey=s3cr3t&x=%20#frag");
    announce(&c);
    ctx_run(&c);
    assert_int_equal(c.rc, 0);
    /* BEP 41: path and query, as written; never the fragment */
    assert_string_equal(c.fake.url_data, "/announce?passkey=s3cr3t&x=%20");
    ctx_free(&c);

    /* longer than one option */
    strcpy(path, "/a");
    for (int i = 0; i < 30; i++)
        strcat(path, "/0123456789");
    ctx_start(&c, AF_INET, FAKE_NORMAL, 1000, 2, path);
    announce(&c);
    ctx_run(&c);
    assert_int_equal(c.rc, 0);
    assert_string_equal(c.fake.url_data, path);
    ctx_free(&c);
}

static void loop_scrape(void **state)
{
    (void)state;
    struct ctx c;
    uint8_t ih[20];

    memset(ih, 0x5a, sizeof(ih));
    ctx_start(&c, AF_INET, FAKE_NORMAL, 1000, 2, "/announce");
    assert_int_equal(udp_tr_scrape(c.u, c.url, ih, on_scrape, &c, NULL), 0);
    ctx_run(&c);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.complete, 7);
    assert_int_equal(c.downloaded, 9);
    assert_int_equal(c.incomplete, 4);
    assert_int_equal(c.fake.scrapes, 1);
    assert_memory_equal(c.fake.last_info_hash, ih, 20);
    ctx_free(&c);
}

static void loop_ipv6(void **state)
{
    (void)state;
    struct ctx c;

    if (!ctx_start(&c, AF_INET6, FAKE_NORMAL, 1000, 2, "/announce")) {
        print_message("::1 cannot be bound here: skipped\n");
        skip();
    }
    announce(&c);
    ctx_run(&c);
    assert_int_equal(c.calls, 1);
    if (c.rc != 0)
        print_error("%s\n", c.err.msg);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.peer_count, 1);
    assert_int_equal(c.peers[0].family, 6);
    assert_int_equal(c.peers[0].ip[15], 7);
    assert_int_equal(c.fake.url_data_len, 9);
    ctx_free(&c);
}

static void loop_bad_urls(void **state)
{
    (void)state;
    static const struct {
        const char *url, *msg;
    } cases[] = {
        {"udp://127.0.0.1/announce", "tracker URL 'udp://127.0.0.1/announce' has no port"},
        {"udp://127.0.0.1", "tracker URL 'udp://127.0.0.1' has no port"},
        {"udp://127.0.0.1:", "has no port"},
        {"udp://127.0.0.1:0/announce", "tracker URL 'udp://127.0.0.1:0/announce' has port 0"},
        {"udp://127.0.0.1:65536", "port out of range"},
        {"udp://:80", "has no host"},
        {"udp://[::1:80", "unclosed '['"},
        {"udp://[zz]:80", "bad IPv6 address"},
        {"udp://user@host:80", "unexpected '@'"},
        {"udp://host:80x", "unexpected 'x'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ctx c;
        ctx_start(&c, AF_INET, FAKE_NORMAL, 1000, 2, NULL);
        /* a malformed udp:// URL is reported through the callback, naming it */
        assert_int_equal(udp_tr_announce(c.u, cases[i].url, &c.areq, on_announce, &c, NULL), 0);
        assert_int_equal(c.calls, 0);
        ctx_run(&c);
        assert_int_equal(c.calls, 1);
        assert_int_equal(c.rc, RV_EINVAL);
        if (strstr(c.err.msg, cases[i].msg) == NULL)
            print_error("%s: '%s'\n", cases[i].url, c.err.msg);
        assert_non_null(strstr(c.err.msg, cases[i].msg));
        assert_int_equal(c.fake.packets, 0);
        ctx_free(&c);
    }

    /* another scheme is refused at once */
    struct ctx c;
    ctx_start(&c, AF_INET, FAKE_NORMAL, 1000, 2, NULL);
    assert_int_equal(udp_tr_announce(c.u, "http://127.0.0.1:80/", &c.areq, on_announce, &c, NULL),
                     RV_EINVAL);
    finish(&c);
    ctx_run(&c);
    assert_int_equal(c.calls, 0);
}

static void on_never(void *ud, int rc, struct announce_resp *resp, const rv_error_t *err)
{
    (void)ud;
    (void)rc;
    (void)resp;
    (void)err;
    fail_msg("a canceled or closed request called back");
}

static void on_never_scrape(void *ud, int rc, const struct scrape_resp *resp, const rv_error_t *err)
{
    (void)ud;
    (void)rc;
    (void)resp;
    (void)err;
    fail_msg("a canceled or closed scrape called back");
}

static struct udp_tr_req *cancel_later;

static void cancel_finish(uv_timer_t *t)
{
    struct ctx *c = t->data;
    /* nothing was sent after the cancel, though the 50 ms timeout has passed several times */
    assert_int_equal(c->fake.packets, c->packets_at_cancel);
    finish(c);
}

static void cancel_step(uv_timer_t *t)
{
    struct ctx *c = t->data;
    if (c->fake.packets < 1)
        return; /* the request is not out yet: look again in 10 ms */
    uv_timer_stop(t);
    udp_tr_cancel(cancel_later);
    cancel_later = NULL;
    c->packets_at_cancel = c->fake.packets;
    uv_timer_start(&c->step, cancel_finish, 300, 0);
}

static void loop_cancel(void **state)
{
    (void)state;
    struct ctx c;
    struct udp_tr_req *r = NULL;

    ctx_start(&c, AF_INET, FAKE_SILENT, 50, 8, NULL);
    /* canceled while its name lookup runs */
    assert_int_equal(udp_tr_announce(c.u, c.url, &c.areq, on_never, &c, &r), 0);
    assert_non_null(r);
    udp_tr_cancel(r);
    /* canceled after its first datagram went out */
    assert_int_equal(udp_tr_announce(c.u, c.url, &c.areq, on_never, &c, &cancel_later), 0);
    uv_timer_start(&c.step, cancel_step, 10, 10);
    ctx_run(&c);
    assert_int_equal(c.calls, 0);
    assert_true(c.fake.packets >= 1);
}

static void close_step(uv_timer_t *t)
{
    struct ctx *c = t->data;
    uint8_t ih[20] = {1};
    if (c->fake.packets < 3)
        return; /* not all out yet: look again in 10 ms */
    uv_timer_stop(t);
    /* one more still looking up its name when the client closes */
    assert_int_equal(udp_tr_announce(c->u, c->url, &c->areq, on_never, c, NULL), 0);
    assert_int_equal(udp_tr_scrape(c->u, c->url, ih, on_never_scrape, c, NULL), 0);
    /* and one whose URL failure is not yet reported */
    assert_int_equal(udp_tr_announce(c->u, "udp://x:0", &c->areq, on_never, c, NULL), 0);
    finish(c);
    /* after close, nothing new is taken */
    assert_int_equal(udp_tr_announce(c->u, c->url, &c->areq, on_never, c, NULL), RV_EINVAL);
}

static void loop_close_in_flight(void **state)
{
    (void)state;
    struct ctx c;
    uint8_t ih[20] = {2};

    ctx_start(&c, AF_INET, FAKE_SILENT, 50, 8, NULL);
    assert_int_equal(udp_tr_announce(c.u, c.url, &c.areq, on_never, &c, NULL), 0);
    assert_int_equal(udp_tr_announce(c.u, c.url, &c.areq, on_never, &c, NULL), 0);
    assert_int_equal(udp_tr_scrape(c.u, c.url, ih, on_never_scrape, &c, NULL), 0);
    uv_timer_start(&c.step, close_step, 10, 10);
    ctx_run(&c);
    assert_int_equal(c.calls, 0);
    assert_true(c.fake.packets >= 3);
}

static void count_done(void *ud, int rc, struct announce_resp *resp, const rv_error_t *err)
{
    struct ctx *c = ud;
    (void)err;
    assert_int_equal(rc, 0);
    assert_int_equal(resp->interval, 1800);
    if (++c->calls == 6)
        finish(c);
}

static void count_done_scrape(void *ud, int rc, const struct scrape_resp *resp,
                              const rv_error_t *err)
{
    struct ctx *c = ud;
    (void)err;
    assert_int_equal(rc, 0);
    assert_int_equal(resp->complete, 7);
    if (++c->calls == 6)
        finish(c);
}

static void loop_concurrent(void **state)
{
    (void)state;
    struct ctx c;
    uint8_t ih[20] = {3};

    /* replies are routed by transaction id to the one request each answers */
    ctx_start(&c, AF_INET, FAKE_NORMAL, 1000, 2, "/announce");
    for (int i = 0; i < 4; i++)
        assert_int_equal(udp_tr_announce(c.u, c.url, &c.areq, count_done, &c, NULL), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(udp_tr_scrape(c.u, c.url, ih, count_done_scrape, &c, NULL), 0);
    ctx_run(&c);
    assert_int_equal(c.calls, 6);
    assert_int_equal(c.fake.announces, 4);
    assert_int_equal(c.fake.scrapes, 2);
    assert_true(c.fake.connects >= 1 && c.fake.connects <= 6);
}

static void loop_close_idle(void **state)
{
    (void)state;
    struct ctx c;

    ctx_start(&c, AF_INET, FAKE_NORMAL, 1000, 2, NULL);
    finish(&c);
    ctx_run(&c);
}

/* ---- a real tracker, when the environment names one ---- */

static void opentracker(void **state)
{
    (void)state;
    const char *url = getenv("RV_TEST_OPENTRACKER_UDP");
    const char *hash = getenv("RV_TEST_OPENTRACKER_HASH");
    struct ctx c;
    struct tracker_client_opts o;

    if (url == NULL || hash == NULL) {
        skip();
        return;
    }
    memset(&c, 0, sizeof(c));
    c.manual = true;
    assert_int_equal(uv_loop_init(&c.loop), 0);
    memset(&o, 0, sizeof(o));
    o.udp_timeout_ms = 500;
    o.udp_max_retries = 2;
    assert_int_equal(udp_tr_new(&c.loop, &o, &c.u), 0);
    sample_req(&c.areq);
    assert_int_equal(hex_decode(hash, strlen(hash), c.areq.info_hash, 20), 0);
    c.areq.left = 100;

    /* announce (started); scrape, where the tracker must count us; announce again on the
     * cached connection id; an info-hash the tracker does not list */
    for (int round = 0; round < 4; round++) {
        c.calls = 0;
        if (round == 1) {
            assert_int_equal(udp_tr_scrape(c.u, url, c.areq.info_hash, on_scrape, &c, NULL), 0);
        } else {
            if (round == 3)
                memset(c.areq.info_hash, 0xee, 20);
            c.areq.event = round == 0 ? TR_EVENT_STARTED : TR_EVENT_NONE;
            assert_int_equal(udp_tr_announce(c.u, url, &c.areq, on_announce, &c, NULL), 0);
        }
        while (c.calls == 0)
            uv_run(&c.loop, UV_RUN_ONCE);
        if (round == 3) {
            print_message("round 3 (unlisted info-hash): rc %d: %s\n", c.rc, c.err.msg);
            assert_true(c.rc == RV_ETRACKER || c.rc == RV_ETIMEDOUT);
            break;
        }
        if (c.rc != 0)
            print_error("round %d: %s\n", round, c.err.msg);
        assert_int_equal(c.rc, 0);
        if (round == 1) {
            print_message("round 1 (scrape): complete %lld incomplete %lld downloaded %lld\n",
                          (long long)c.complete, (long long)c.incomplete, (long long)c.downloaded);
            assert_true(c.incomplete >= 1);
        } else {
            print_message("round %d (announce): interval %lld complete %lld incomplete %lld "
                          "peers %zu (dropped %zu)\n",
                          round, (long long)c.interval, (long long)c.complete,
                          (long long)c.incomplete, c.peer_count, c.peers_dropped);
            assert_true(c.interval > 0);
        }
    }
    udp_tr_close(c.u, on_closed, &c);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    assert_true(c.closed);
    assert_int_equal(uv_loop_close(&c.loop), 0);
    ctx_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(build_connect_bytes),
        cmocka_unit_test(build_announce_bytes),
        cmocka_unit_test(build_announce_url_data),
        cmocka_unit_test(build_scrape_bytes),
        cmocka_unit_test(parse_short_packets),
        cmocka_unit_test(parse_connect),
        cmocka_unit_test(parse_announce_v4),
        cmocka_unit_test(parse_announce_v6),
        cmocka_unit_test(parse_announce_interval),
        cmocka_unit_test(parse_announce_peer_cap),
        cmocka_unit_test(parse_scrape),
        cmocka_unit_test(parse_error_reply),
        cmocka_unit_test(parse_unknown_action),
        cmocka_unit_test(loop_announce_ok),
        cmocka_unit_test(loop_connection_id_reused),
        cmocka_unit_test(loop_stale_connection_id),
        cmocka_unit_test(loop_wrong_transaction_ignored),
        cmocka_unit_test(loop_other_source_ignored),
        cmocka_unit_test(loop_short_reply),
        cmocka_unit_test(loop_error_reply),
        cmocka_unit_test(loop_wrong_action),
        cmocka_unit_test(loop_timeout),
        cmocka_unit_test(loop_url_data),
        cmocka_unit_test(loop_scrape),
        cmocka_unit_test(loop_ipv6),
        cmocka_unit_test(loop_bad_urls),
        cmocka_unit_test(loop_cancel),
        cmocka_unit_test(loop_close_in_flight),
        cmocka_unit_test(loop_concurrent),
        cmocka_unit_test(loop_close_idle),
        cmocka_unit_test(opentracker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
