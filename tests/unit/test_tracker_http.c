/* Unit tests for the HTTP tracker side: announce and scrape URLs, reply parsing (BEP 3, 7, 23,
 * 48), and http.c's libcurl-on-libuv transport against an in-process HTTP server on 127.0.0.1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "tracker/http.h"
#include "tracker/tracker.h"
#include "util/buf.h"
#include "util/err.h"

#define LIT(s) (const uint8_t *)(s), sizeof(s) - 1

/* 20 bytes that exercise the encoder: unreserved characters kept, everything else escaped. */
static const uint8_t HASH[20] = {'A',  'Z',  'a', 'z', '0', '9', '-', '.', '_', '~',
                                 0x00, 0xff, ' ', '%', '&', '=', '?', '+', '/', '#'};
#define HASH_ENC "AZaz09-._~%00%FF%20%25%26%3D%3F%2B%2F%23"

static void make_req(struct announce_req *r)
{
    memset(r, 0, sizeof(*r));
    memcpy(r->info_hash, HASH, 20);
    memcpy(r->peer_id, "-RV0100-abcdefghijkl", 20);
    r->port = 6881;
    r->uploaded = 1;
    r->downloaded = 2;
    r->left = 1234567890123ULL;
    r->event = TR_EVENT_NONE;
    r->numwant = -1;
    r->key = 0x0badf00d;
}

/* The URL built for base and req, as a new C string. */
static char *announce_url(const char *base, const struct announce_req *req, int *rc)
{
    struct buf b;
    buf_init(&b, 0);
    *rc = http_announce_url(base, req, &b);
    if (*rc != 0) {
        buf_free(&b);
        return NULL;
    }
    assert_int_equal(buf_append_byte(&b, 0), 0);
    return (char *)buf_steal(&b, NULL);
}

static char *scrape_url(const char *announce, int *rc)
{
    struct buf b;
    buf_init(&b, 0);
    *rc = http_scrape_url(announce, HASH, &b);
    if (*rc != 0) {
        assert_int_equal(b.len, 0);
        buf_free(&b);
        return NULL;
    }
    assert_int_equal(buf_append_byte(&b, 0), 0);
    return (char *)buf_steal(&b, NULL);
}

#define COMMON                                                                                     \
    "info_hash=" HASH_ENC "&peer_id=-RV0100-abcdefghijkl&port=6881&uploaded=1"                     \
    "&downloaded=2&left=1234567890123&compact=1"

static void url_announce_exact(void **state)
{
    (void)state;
    struct announce_req req;
    int rc;
    make_req(&req);
    char *u = announce_url("http://tracker.test/announce", &req, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(u, "http://tracker.test/announce?" COMMON "&key=0BADF00D");
    free(u);

    req.numwant = 50;
    req.event = TR_EVENT_STARTED;
    u = announce_url("https://tracker.test:8443/a/announce.php", &req, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(u, "https://tracker.test:8443/a/announce.php?" COMMON
                           "&event=started&numwant=50&key=0BADF00D");
    free(u);

    req.numwant = 0; /* 0 is a real request ("no peers, please"), only negative is omitted */
    req.event = TR_EVENT_NONE;
    u = announce_url("http://t/announce", &req, &rc);
    assert_string_equal(u, "http://t/announce?" COMMON "&numwant=0&key=0BADF00D");
    free(u);
}

static void url_announce_events(void **state)
{
    (void)state;
    static const struct {
        enum tracker_event ev;
        const char *want;
    } cases[] = {
        {TR_EVENT_NONE, "http://t/announce?" COMMON "&key=0BADF00D"},
        {TR_EVENT_STARTED, "http://t/announce?" COMMON "&event=started&key=0BADF00D"},
        {TR_EVENT_COMPLETED, "http://t/announce?" COMMON "&event=completed&key=0BADF00D"},
        {TR_EVENT_STOPPED, "http://t/announce?" COMMON "&event=stopped&key=0BADF00D"},
    };
    struct announce_req req;
    int rc;
    make_req(&req);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        req.event = cases[i].ev;
        char *u = announce_url("http://t/announce", &req, &rc);
        assert_int_equal(rc, 0);
        assert_string_equal(u, cases[i].want);
        free(u);
    }
    req.event = (enum tracker_event)7;
    assert_null(announce_url("http://t/announce", &req, &rc));
    assert_int_equal(rc, RV_EINVAL);
}

static void url_announce_query_and_trackerid(void **state)
{
    (void)state;
    struct announce_req req;
    int rc;
    make_req(&req);
    req.key = 0x1234;
    char *u = announce_url("http://t/announce?passkey=abc", &req, &rc);
    assert_string_equal(u, "http://t/announce?passkey=abc&" COMMON "&key=00001234");
    free(u);
    /* A query that already ends in '?' or '&' gets no second separator. */
    u = announce_url("http://t/announce?", &req, &rc);
    assert_string_equal(u, "http://t/announce?" COMMON "&key=00001234");
    free(u);
    u = announce_url("http://t/announce?a=1&", &req, &rc);
    assert_string_equal(u, "http://t/announce?a=1&" COMMON "&key=00001234");
    free(u);
    /* A fragment is never sent, so it is dropped rather than swallowing the parameters. */
    u = announce_url("http://t/announce#frag", &req, &rc);
    assert_string_equal(u, "http://t/announce?" COMMON "&key=00001234");
    free(u);

    req.trackerid = "id 1&x=\xe9";
    u = announce_url("http://t/announce", &req, &rc);
    assert_string_equal(u, "http://t/announce?" COMMON "&key=00001234&trackerid=id%201%26x%3D%E9");
    free(u);

    /* Appends to what the buffer holds; on failure leaves it as it was. */
    struct buf b;
    buf_init(&b, 40);
    assert_int_equal(buf_append_str(&b, "xy"), 0);
    assert_int_equal(http_announce_url("http://t/announce", &req, &b), RV_ETOOBIG);
    assert_int_equal(b.len, 2);
    buf_free(&b);
    assert_int_equal(http_announce_url("", &req, &b), RV_EINVAL);
}

static void url_scrape_rules(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } ok[] = {
        {"http://t/announce", "http://t/scrape?info_hash=" HASH_ENC},
        {"http://t/announce.php", "http://t/scrape.php?info_hash=" HASH_ENC},
        {"http://t/x/announce?passkey=1", "http://t/x/scrape?passkey=1&info_hash=" HASH_ENC},
        {"https://t:8443/announce?", "https://t:8443/scrape?info_hash=" HASH_ENC},
        {"http://t/announce#f", "http://t/scrape?info_hash=" HASH_ENC},
        {"http://t/a/announce?next=/b/c", "http://t/a/scrape?next=/b/c&info_hash=" HASH_ENC},
        {"http://t/announcex", "http://t/scrapex?info_hash=" HASH_ENC},
    };
    int rc;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char *u = scrape_url(ok[i].in, &rc);
        assert_int_equal(rc, 0);
        assert_string_equal(u, ok[i].want);
        free(u);
    }
    /* BEP 48: no scrape URL unless the last path part starts with "announce". */
    static const char *bad[] = {
        "http://t/a",         "http://t/announce/x", "http://t/x?announce", "http://t",
        "http://t?/announce", "http://t/xannounce",  "http://t/",           "t/announce",
        "http://t/announc",   "http://t/Announce",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_null(scrape_url(bad[i], &rc));
        assert_int_equal(rc, RV_EINVAL);
    }
}

/* ---- announce replies ---- */

static int parse_body(const uint8_t *p, size_t n, struct announce_resp *r, rv_error_t *e)
{
    err_clear(e);
    int rc = http_parse_announce(p, n, r, e);
    if (rc != 0) {
        assert_int_equal(e->code, rc);
        assert_null(r->peers);
        assert_int_equal(r->peer_count, 0);
    }
    return rc;
}

/* Builds prefix + "<n>:" + bytes + suffix. */
static void body_with_string(struct buf *b, const char *prefix, const uint8_t *s, size_t n,
                             const char *suffix)
{
    buf_init(b, 0);
    assert_int_equal(buf_printf(b, "%s%zu:", prefix, n), 0);
    assert_int_equal(buf_append(b, s, n), 0);
    assert_int_equal(buf_append_str(b, suffix), 0);
}

static void reply_compact(void **state)
{
    (void)state;
    static const uint8_t peers[] = {127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 80,
                                    /* dropped: port 0, 0.0.0.0, multicast, broadcast */
                                    1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 1, 224, 0, 0, 1, 0, 1, 255,
                                    255, 255, 255, 0, 1};
    struct buf b;
    struct announce_resp r;
    rv_error_t e;
    body_with_string(&b,
                     "d8:completei5e10:downloadedi7e10:incompletei3e8:intervali1800e"
                     "12:min intervali900e5:peers",
                     peers, sizeof(peers), "e");
    assert_int_equal(parse_body(b.data, b.len, &r, &e), 0);
    assert_int_equal(r.interval, 1800);
    assert_int_equal(r.min_interval, 900);
    assert_int_equal(r.complete, 5);
    assert_int_equal(r.incomplete, 3);
    assert_int_equal(r.downloaded, 7);
    assert_null(r.warning);
    assert_null(r.tracker_id);
    assert_int_equal(r.peer_count, 2);
    assert_int_equal(r.peers_dropped, 4);
    assert_int_equal(r.peers[0].family, 4);
    assert_memory_equal(r.peers[0].ip, "\x7f\0\0\x01", 4);
    assert_int_equal(r.peers[0].port, 6881);
    assert_memory_equal(r.peers[1].ip, "\x0a\0\0\x02", 4);
    assert_int_equal(r.peers[1].port, 80);
    announce_resp_free(&r);
    assert_null(r.peers);
    assert_int_equal(r.peer_count, 0);
    buf_free(&b);

    /* Nothing but the interval: counts are -1, no peers, and that is a valid reply. */
    assert_int_equal(parse_body(LIT("d8:intervali60e5:peers0:e"), &r, &e), 0);
    assert_int_equal(r.complete, -1);
    assert_int_equal(r.incomplete, -1);
    assert_int_equal(r.downloaded, -1);
    assert_int_equal(r.min_interval, -1);
    assert_int_equal(r.peer_count, 0);
    announce_resp_free(&r);
    assert_int_equal(parse_body(LIT("d8:intervali60ee"), &r, &e), 0);
    announce_resp_free(&r);
    /* Trailing whitespace from a tracker's template is fine. */
    assert_int_equal(parse_body(LIT("d8:intervali60ee\r\n"), &r, &e), 0);
    announce_resp_free(&r);
}

static void reply_dict_model(void **state)
{
    (void)state;
    struct announce_resp r;
    rv_error_t e;
    const char *body = "d8:intervali60e5:peersl"
                       "d2:ip9:127.0.0.17:peer id20:-XX0000-abcdefghijkl4:porti6881ee"
                       "d2:ip3:::14:porti1ee"
                       "d2:ip16:::ffff:127.0.0.94:porti2ee"
                       "d2:ip9:host.name4:porti5ee"     /* names are not resolved */
                       "d2:ip9:127.0.0.24:porti0ee"     /* port 0 */
                       "d2:ip9:127.0.0.24:porti70000ee" /* port too large */
                       "d2:ip9:127.0.0.24:port4:6881e"  /* port of the wrong type */
                       "d4:porti5ee"                    /* no ip */
                       "d2:ip7:0.0.0.04:porti5ee"       /* unspecified */
                       "d2:ip6:ff02::4:porti5ee"        /* multicast */
                       "i5e"                            /* not a dictionary */
                       "ee";
    assert_int_equal(parse_body((const uint8_t *)body, strlen(body), &r, &e), 0);
    assert_int_equal(r.peer_count, 3);
    assert_int_equal(r.peers_dropped, 8);
    assert_int_equal(r.peers[0].family, 4);
    assert_memory_equal(r.peers[0].ip, "\x7f\0\0\x01", 4);
    assert_int_equal(r.peers[0].port, 6881);
    assert_int_equal(r.peers[1].family, 6);
    assert_memory_equal(r.peers[1].ip, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
    assert_int_equal(r.peers[1].port, 1);
    /* An IPv4-mapped IPv6 address is the IPv4 peer it names. */
    assert_int_equal(r.peers[2].family, 4);
    assert_memory_equal(r.peers[2].ip, "\x7f\0\0\x09", 4);
    announce_resp_free(&r);
}

static void reply_peers6(void **state)
{
    (void)state;
    static const uint8_t p6[] = {
        0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    0,    0,   0, 0, 1, 0x1a, 0xe1, /* [::1]:6881 */
        0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 3, 0,    80,   /* mapped v4 */
        0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0,    0,    0,   0, 0, 1, 0,    80,   /* multicast */
        0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    0,    0,   0, 0, 0, 0,    80,   /* :: */
    };
    struct buf b;
    struct announce_resp r;
    rv_error_t e;
    /* one IPv4 peer, 127.0.0.1:1, then the IPv6 list */
    body_with_string(&b, "d8:intervali60e5:peers", (const uint8_t *)"\x7f\0\0\x01\0\x01", 6, "");
    assert_int_equal(buf_printf(&b, "6:peers6%zu:", sizeof(p6)), 0);
    assert_int_equal(buf_append(&b, p6, sizeof(p6)), 0);
    assert_int_equal(buf_append_str(&b, "e"), 0);
    assert_int_equal(parse_body(b.data, b.len, &r, &e), 0);
    assert_int_equal(r.peer_count, 3);
    assert_int_equal(r.peers_dropped, 2);
    assert_int_equal(r.peers[0].family, 4);
    assert_int_equal(r.peers[0].port, 1);
    assert_int_equal(r.peers[1].family, 6);
    assert_int_equal(r.peers[1].ip[15], 1);
    assert_int_equal(r.peers[1].port, 6881);
    assert_int_equal(r.peers[2].family, 4);
    assert_memory_equal(r.peers[2].ip, "\x7f\0\0\x03", 4);
    announce_resp_free(&r);
    buf_free(&b);

    /* Only peers6, no 'peers'. */
    body_with_string(&b, "d8:intervali60e6:peers6", p6, 18, "e");
    assert_int_equal(parse_body(b.data, b.len, &r, &e), 0);
    assert_int_equal(r.peer_count, 1);
    announce_resp_free(&r);
    buf_free(&b);

    body_with_string(&b, "d8:intervali60e6:peers6", p6, 17, "e");
    assert_int_equal(parse_body(b.data, b.len, &r, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "'peers6' is 17 bytes, not a multiple of 18");
    buf_free(&b);
    assert_int_equal(parse_body(LIT("d8:intervali60e6:peers6lee"), &r, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "'peers6' is a list, not a string");
}

static void reply_failure_and_warning(void **state)
{
    (void)state;
    struct announce_resp r;
    rv_error_t e;
    assert_int_equal(parse_body(LIT("d14:failure reason11:bad passkeye"), &r, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "tracker said: bad passkey");
    /* A failure wins over anything else in the reply (BEP 3). */
    assert_int_equal(parse_body(LIT("d14:failure reason4:gone8:intervali60e5:peers0:e"), &r, &e),
                     RV_ETRACKER);
    assert_string_equal(e.msg, "tracker said: gone");
    /* Control bytes (a terminal escape here) and broken UTF-8 are replaced; good UTF-8 stays. */
    assert_int_equal(
        parse_body(LIT("d14:failure reason18:\x1b[31mred\n\xff\xc3\xa9t\xc2\x85\xe2\x82\xac"
                       "e"),
                   &r, &e),
        RV_ETRACKER);
    assert_string_equal(e.msg, "tracker said: ?[31mred??\xc3\xa9t??\xe2\x82\xac");
    assert_int_equal(parse_body(LIT("d14:failure reasoni3ee"), &r, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "tracker failed; its 'failure reason' is an integer");
    assert_int_equal(parse_body(LIT("d14:failure reason0:e"), &r, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "tracker said: (empty reason)");

    /* A long reason is cut, and the cut is shown. */
    struct buf b;
    char longtext[1000];
    memset(longtext, 'x', sizeof(longtext));
    body_with_string(&b, "d14:failure reason", (const uint8_t *)longtext, sizeof(longtext), "e");
    assert_int_equal(parse_body(b.data, b.len, &r, &e), RV_ETRACKER);
    assert_true(strncmp(e.msg, "tracker said: xxxx", 18) == 0);
    assert_true(strlen(e.msg) < sizeof(e.msg) - 1);
    assert_string_equal(e.msg + strlen(e.msg) - 4, "x...");
    buf_free(&b);

    assert_int_equal(parse_body(LIT("d15:warning message6:hello\x01"
                                    "8:intervali60e10:tracker id3:abce"),
                                &r, &e),
                     0);
    assert_string_equal(r.warning, "hello?");
    assert_string_equal(r.tracker_id, "abc");
    announce_resp_free(&r);
    assert_null(r.warning);
    assert_null(r.tracker_id);
    /* A tracker id with a NUL cannot be echoed as a C string: ignored. */
    assert_int_equal(parse_body(LIT("d8:intervali60e10:tracker id3:a\0be"), &r, &e), 0);
    assert_null(r.tracker_id);
    announce_resp_free(&r);
}

static void reply_intervals(void **state)
{
    (void)state;
    struct announce_resp r;
    rv_error_t e;
    assert_int_equal(parse_body(LIT("d5:peers0:e"), &r, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "reply has no 'interval'");
    assert_int_equal(parse_body(LIT("d8:intervali0e5:peers0:e"), &r, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "'interval' is 0, not a positive number of seconds");
    assert_true(e.has_offset);
    assert_int_equal(e.offset, 11);
    assert_int_equal(parse_body(LIT("d8:intervali-30e5:peers0:e"), &r, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "'interval' is -30, not a positive number of seconds");
    assert_int_equal(parse_body(LIT("d8:interval4:1800e"), &r, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "'interval' is a string, not an integer");
    /* Absurd intervals are clamped to a week. */
    assert_int_equal(parse_body(LIT("d8:intervali9223372036854775807e12:min intervali999999999e"
                                    "e"),
                                &r, &e),
                     0);
    assert_int_equal(r.interval, 7 * 86400);
    assert_int_equal(r.min_interval, 7 * 86400);
    announce_resp_free(&r);
    assert_int_equal(parse_body(LIT("d8:intervali1e12:min intervali-5ee"), &r, &e), 0);
    assert_int_equal(r.interval, 1);
    assert_int_equal(r.min_interval, -1);
    announce_resp_free(&r);
}

static void reply_wrong_types(void **state)
{
    (void)state;
    struct announce_resp r;
    rv_error_t e;
    assert_int_equal(parse_body(LIT("d8:intervali60e5:peersi5ee"), &r, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "'peers' is an integer, not a string or a list");
    assert_int_equal(parse_body(LIT("d8:intervali60e5:peersdee"), &r, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "'peers' is a dictionary, not a string or a list");
    /* Optional statistics of the wrong type or sign are treated as absent. */
    assert_int_equal(parse_body(LIT("d8:completei-1e10:incomplete1:38:intervali60e"
                                    "12:min interval2:1015:warning messagei1e10:tracker idi2ee"),
                                &r, &e),
                     0);
    assert_int_equal(r.complete, -1);
    assert_int_equal(r.incomplete, -1);
    assert_int_equal(r.min_interval, -1);
    assert_null(r.warning);
    assert_null(r.tracker_id);
    announce_resp_free(&r);
    assert_int_equal(parse_body(LIT("li1ee"), &r, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "reply is a list, not a dictionary");
    assert_int_equal(parse_body(LIT("i1e"), &r, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "reply is an integer, not a dictionary");
}

static void reply_malformed(void **state)
{
    (void)state;
    struct announce_resp r;
    rv_error_t e;
    assert_int_equal(parse_body(LIT("d8:intervali60e5:peers5:abcdee"), &r, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "compact 'peers' is 5 bytes, not a multiple of 6");
    assert_true(e.has_offset);
    assert_int_equal(e.offset, 24);

    /* Truncated bencode: the decoder's offset is passed on. */
    assert_int_equal(parse_body(LIT("d8:intervali60e5:peers12:abc"), &r, &e), RV_ETRACKER);
    assert_true(e.has_offset);
    assert_non_null(strstr(e.msg, "reply is not bencode"));
    assert_int_equal(parse_body(LIT("d8:intervali60"), &r, &e), RV_ETRACKER);
    assert_true(e.has_offset);
    assert_int_equal(parse_body(LIT("<html><body>502 Bad Gateway</body></html>"), &r, &e),
                     RV_ETRACKER);
    assert_true(e.has_offset);
    assert_int_equal(e.offset, 0);
    assert_non_null(strstr(e.msg, "reply is not bencode"));
    assert_int_equal(parse_body((const uint8_t *)"", 0, &r, &e), RV_ETRACKER);
    assert_int_equal(parse_body(NULL, 0, &r, &e), RV_ETRACKER);
    assert_int_equal(parse_body(LIT("d8:intervali60ee<junk>"), &r, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "6 bytes of trailing data after the reply");
    assert_int_equal(e.offset, 16);
}

static void reply_many_peers_capped(void **state)
{
    (void)state;
    size_t n = TRACKER_MAX_PEERS + 77;
    uint8_t *p = malloc(n * 6);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        p[i * 6] = 10;
        p[i * 6 + 1] = (uint8_t)(i >> 16);
        p[i * 6 + 2] = (uint8_t)(i >> 8);
        p[i * 6 + 3] = (uint8_t)i;
        p[i * 6 + 4] = 0x1a;
        p[i * 6 + 5] = 0xe1;
    }
    struct buf b;
    struct announce_resp r;
    rv_error_t e;
    body_with_string(&b, "d8:intervali60e5:peers", p, n * 6, "6:peers6");
    /* plus 3 IPv6 peers, which all fall past the cap */
    uint8_t p6[54];
    memset(p6, 0x20, sizeof(p6));
    assert_int_equal(buf_printf(&b, "%zu:", sizeof(p6)), 0);
    assert_int_equal(buf_append(&b, p6, sizeof(p6)), 0);
    assert_int_equal(buf_append_str(&b, "e"), 0);
    assert_int_equal(parse_body(b.data, b.len, &r, &e), 0);
    assert_int_equal(r.peer_count, TRACKER_MAX_PEERS);
    assert_int_equal(r.peers_dropped, 80);
    assert_int_equal(r.peers[TRACKER_MAX_PEERS - 1].ip[3], (uint8_t)(TRACKER_MAX_PEERS - 1));
    announce_resp_free(&r);
    buf_free(&b);
    free(p);

    /* The same through the dictionary model. */
    buf_init(&b, 0);
    assert_int_equal(buf_append_str(&b, "d8:intervali60e5:peersl"), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(buf_printf(&b, "d2:ip%zu:10.%zu.%zu.%zu4:porti80ee",
                                    (size_t)snprintf(NULL, 0, "10.%zu.%zu.%zu", i >> 16,
                                                     (i >> 8) & 255, i & 255),
                                    i >> 16, (i >> 8) & 255, i & 255),
                         0);
    assert_int_equal(buf_append_str(&b, "ee"), 0);
    assert_int_equal(parse_body(b.data, b.len, &r, &e), 0);
    assert_int_equal(r.peer_count, TRACKER_MAX_PEERS);
    assert_int_equal(r.peers_dropped, 77);
    announce_resp_free(&r);
    buf_free(&b);
}

/* ---- scrape replies ---- */

static void scrape_replies(void **state)
{
    (void)state;
    static const uint8_t other[20] = {1};
    struct buf b;
    struct scrape_resp s;
    rv_error_t e;

    buf_init(&b, 0);
    assert_int_equal(buf_append_str(&b, "d5:filesd20:"), 0);
    assert_int_equal(buf_append(&b, other, 20), 0);
    assert_int_equal(buf_append_str(&b, "d8:completei1ee20:"), 0);
    assert_int_equal(buf_append(&b, HASH, 20), 0);
    assert_int_equal(buf_append_str(&b, "d8:completei4e10:downloadedi9e10:incompletei2eeee"), 0);
    assert_int_equal(http_parse_scrape(b.data, b.len, HASH, &s, &e), 0);
    assert_int_equal(s.complete, 4);
    assert_int_equal(s.incomplete, 2);
    assert_int_equal(s.downloaded, 9);
    assert_int_equal(http_parse_scrape(b.data, b.len, other, &s, &e), 0);
    assert_int_equal(s.complete, 1);
    assert_int_equal(s.incomplete, -1);
    assert_int_equal(s.downloaded, -1);
    static const uint8_t absent[20] = {2};
    assert_int_equal(http_parse_scrape(b.data, b.len, absent, &s, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "scrape reply does not mention this torrent");
    buf_free(&b);

    assert_int_equal(http_parse_scrape(LIT("d5:filesdee"), HASH, &s, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "scrape reply does not mention this torrent");
    assert_int_equal(http_parse_scrape(LIT("de"), HASH, &s, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "scrape reply has no 'files' dictionary");
    assert_int_equal(http_parse_scrape(LIT("d5:fileslee"), HASH, &s, &e), RV_ETRACKER);
    assert_int_equal(http_parse_scrape(LIT("d14:failure reason7:go awaye"), HASH, &s, &e),
                     RV_ETRACKER);
    assert_string_equal(e.msg, "tracker said: go away");
    assert_int_equal(http_parse_scrape(LIT("d5:filesd"), HASH, &s, &e), RV_ETRACKER);
    assert_true(e.has_offset);
    assert_int_equal(http_parse_scrape(LIT("le"), HASH, &s, &e), RV_ETRACKER);

    buf_init(&b, 0);
    assert_int_equal(buf_append_str(&b, "d5:filesd20:"), 0);
    assert_int_equal(buf_append(&b, HASH, 20), 0);
    assert_int_equal(buf_append_str(&b, "i5eee"), 0);
    assert_int_equal(http_parse_scrape(b.data, b.len, HASH, &s, &e), RV_ETRACKER);
    assert_string_equal(e.msg, "scrape entry for this torrent is an integer, not a dictionary");
    buf_free(&b);
}

/* ---- http.c against an in-process server ---- */

static const uint8_t GZIP_HELLO[] = "\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03\xcb\x48\xcd\xc9\xc9"
                                    "\x57\x48\xaf\xca\x2c\x00\x00\x19\x6a\xd2\xdf\x0a\x00\x00\x00";

struct conn;

struct server {
    uv_tcp_t tcp;
    int port;
    int requests;
    char last_path[128];
    char last_ua[128];
    bool saw_accept_encoding;
    struct conn *conns;
};

struct conn {
    uv_tcp_t tcp;
    struct server *srv;
    char in[8192];
    size_t len;
    bool answered, closing;
    struct conn *next;
};

struct wreq {
    uv_write_t w;
    char *data;
};

static void conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct conn **pp = &c->srv->conns;
    while (*pp != c)
        pp = &(*pp)->next;
    *pp = c->next;
    free(c);
}

static void conn_close(struct conn *c)
{
    if (!c->closing) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
    }
}

static void wrote(uv_write_t *w, int status)
{
    (void)status; /* the client may hang up on a body it does not want */
    struct wreq *wr = (struct wreq *)w;
    conn_close(w->handle->data);
    free(wr->data);
    free(wr);
}

static void send_and_close(struct conn *c, const char *head, const void *body, size_t blen)
{
    size_t hlen = strlen(head);
    struct wreq *wr = malloc(sizeof(*wr));
    assert_non_null(wr);
    wr->data = malloc(hlen + blen + 1);
    assert_non_null(wr->data);
    memcpy(wr->data, head, hlen);
    if (blen)
        memcpy(wr->data + hlen, body, blen);
    uv_buf_t ub = uv_buf_init(wr->data, (unsigned)(hlen + blen));
    assert_int_equal(uv_write(&wr->w, (uv_stream_t *)&c->tcp, &ub, 1, wrote), 0);
}

static void header_value(const char *req, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    const char *p = strcasestr(req, name);
    if (p == NULL)
        return;
    p += strlen(name);
    size_t n = strcspn(p, "\r\n");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

static void answer(struct conn *c)
{
    struct server *s = c->srv;
    char path[128];
    char head[512];
    if (sscanf(c->in, "GET %127s HTTP/1.1", path) != 1) {
        conn_close(c);
        return;
    }
    s->requests++;
    snprintf(s->last_path, sizeof(s->last_path), "%s", path);
    header_value(c->in, "\r\nUser-Agent: ", s->last_ua, sizeof(s->last_ua));
    char enc[128];
    header_value(c->in, "\r\nAccept-Encoding: ", enc, sizeof(enc));
    s->saw_accept_encoding = strstr(enc, "gzip") != NULL;

    if (strcmp(path, "/ok") == 0 || strncmp(path, "/ok?", 4) == 0) {
        send_and_close(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
                       "hello", 5);
    } else if (strcmp(path, "/missing") == 0) {
        send_and_close(c,
                       "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\nConnection: close\r\n\r\n",
                       "nope", 4);
    } else if (strcmp(path, "/redir") == 0) {
        send_and_close(c,
                       "HTTP/1.1 302 Found\r\nLocation: /ok?from=redir\r\nContent-Length: 0\r\n"
                       "Connection: close\r\n\r\n",
                       NULL, 0);
    } else if (strcmp(path, "/loop") == 0) {
        send_and_close(c,
                       "HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n"
                       "Connection: close\r\n\r\n",
                       NULL, 0);
    } else if (strcmp(path, "/tofile") == 0) {
        send_and_close(c,
                       "HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\n"
                       "Content-Length: 0\r\nConnection: close\r\n\r\n",
                       NULL, 0);
    } else if (strcmp(path, "/gzip") == 0) {
        snprintf(head, sizeof(head),
                 "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                 sizeof(GZIP_HELLO) - 1);
        send_and_close(c, head, GZIP_HELLO, sizeof(GZIP_HELLO) - 1);
    } else if (strcmp(path, "/big") == 0 || strcmp(path, "/bigstream") == 0 ||
               strcmp(path, "/exact") == 0) {
        /* /big announces its length; /bigstream is delimited by the close, so only the
         * write callback's cap can stop it; /exact is exactly the cap. */
        size_t n = strcmp(path, "/exact") == 0 ? TRACKER_MAX_BODY : TRACKER_MAX_BODY + 1;
        char *body = malloc(n);
        assert_non_null(body);
        memset(body, 'b', n);
        if (strcmp(path, "/bigstream") == 0)
            snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        else
            snprintf(head, sizeof(head),
                     "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     n);
        send_and_close(c, head, body, n);
        free(body);
    } else {
        /* /hang and anything else: read the request, never answer */
    }
}

static void alloc_in(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    struct conn *c = h->data;
    size_t room = sizeof(c->in) - 1 - c->len;
    *b = uv_buf_init(c->in + c->len, (unsigned)room);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    struct conn *c = st->data;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    c->in[c->len] = '\0';
    if (c->len >= 4 && memcmp(c->in, "GET ", 4) != 0) {
        conn_close(c); /* not HTTP (a TLS hello, say): hang up */
    } else if (!c->answered && strstr(c->in, "\r\n\r\n") != NULL) {
        c->answered = true;
        answer(c);
    } else if (c->len == sizeof(c->in) - 1) {
        conn_close(c);
    }
}

static void on_conn(uv_stream_t *st, int status)
{
    struct server *s = st->data;
    assert_int_equal(status, 0);
    struct conn *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->srv = s;
    assert_int_equal(uv_tcp_init(st->loop, &c->tcp), 0);
    c->tcp.data = c;
    c->next = s->conns;
    s->conns = c;
    if (uv_accept(st, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, alloc_in, on_read);
}

static void server_start(uv_loop_t *loop, struct server *s)
{
    struct sockaddr_in sa;
    struct sockaddr_storage got;
    int len = sizeof(got);
    memset(s, 0, sizeof(*s));
    assert_int_equal(uv_tcp_init(loop, &s->tcp), 0);
    s->tcp.data = s;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    assert_int_equal(uv_tcp_bind(&s->tcp, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->tcp, 16, on_conn), 0);
    assert_int_equal(uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&got, &len), 0);
    s->port = ntohs(((struct sockaddr_in *)&got)->sin_port);
}

static void server_stop(struct server *s)
{
    for (struct conn *c = s->conns; c != NULL; c = c->next)
        conn_close(c);
    uv_close((uv_handle_t *)&s->tcp, NULL);
}

/* One test's loop, server and transport. */
struct fixture {
    uv_loop_t loop;
    struct server srv;
    struct http_tr *h;
    bool close_called;
    int closed;
};

struct result {
    int called;
    int rc;
    long status;
    char body[64];
    size_t len;
    rv_error_t err;
    struct fixture *f;
    struct http_tr_req *other; /* canceled from this callback, if set */
    bool close_in_cb;
};

static void on_closed(void *ud)
{
    struct fixture *f = ud;
    f->closed++;
}

static void got(void *ud, int rc, long status, const uint8_t *body, size_t len,
                const rv_error_t *err)
{
    struct result *r = ud;
    r->called++;
    r->rc = rc;
    r->status = status;
    r->len = len;
    if (rc == 0) {
        assert_true(len == 0 || body != NULL);
        memcpy(r->body, body, len < sizeof(r->body) - 1 ? len : sizeof(r->body) - 1);
    } else {
        assert_null(body);
        assert_int_equal(err->code, rc);
    }
    r->err = *err;
    uv_stop(&r->f->loop);
    if (r->other != NULL)
        http_tr_cancel(r->other);
    if (r->close_in_cb) {
        r->f->close_called = true;
        http_tr_close(r->f->h, on_closed, r->f);
    }
}

static void fixture_start(struct fixture *f, unsigned timeout_ms, const char *ua)
{
    struct tracker_client_opts o;
    memset(f, 0, sizeof(*f));
    memset(&o, 0, sizeof(o));
    o.http_timeout_ms = timeout_ms;
    o.user_agent = ua;
    assert_int_equal(uv_loop_init(&f->loop), 0);
    server_start(&f->loop, &f->srv);
    assert_int_equal(http_tr_new(&f->loop, &o, &f->h), 0);
}

/* Closes the transport (unless a test did) and the server, runs the loop dry and checks that
 * every handle is gone. */
static void fixture_finish(struct fixture *f)
{
    if (!f->close_called)
        http_tr_close(f->h, on_closed, f);
    server_stop(&f->srv);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->closed, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* Starts a GET of path (on the test server) or of a full URL; the result lands in r. */
static void start(struct fixture *f, const char *what, struct result *r, struct http_tr_req **req)
{
    char url[256];
    memset(r, 0, sizeof(*r));
    r->f = f;
    if (what[0] == '/')
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", f->srv.port, what);
    else
        snprintf(url, sizeof(url), "%s", what);
    assert_int_equal(http_tr_get(f->h, url, got, r, req), 0);
}

/* Runs the loop until r's callback has run (got stops the loop; UV_RUN_ONCE could block in
 * the poll after a timer already delivered the result). */
static void wait_for(struct fixture *f, struct result *r)
{
    while (r->called == 0)
        uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(r->called, 1);
}

static void fetch(struct fixture *f, const char *what, struct result *r)
{
    start(f, what, r, NULL);
    wait_for(f, r);
}

static void http_ok_and_redirects(void **state)
{
    (void)state;
    struct fixture f;
    struct result r;
    fixture_start(&f, 5000, NULL);

    fetch(&f, "/ok", &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 5);
    assert_string_equal(r.body, "hello");
    assert_string_equal(f.srv.last_ua, "rivulet/0.1.0");
    assert_true(f.srv.saw_accept_encoding);

    fetch(&f, "/missing", &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "nope");

    fetch(&f, "/redir", &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello");
    assert_string_equal(f.srv.last_path, "/ok?from=redir");

    int before = f.srv.requests;
    fetch(&f, "/loop", &r);
    assert_int_equal(r.rc, RV_ENET);
    assert_non_null(strstr(r.err.msg, "redirects"));
    assert_int_equal(f.srv.requests - before, TRACKER_MAX_REDIRECTS + 1);

    /* A redirect may not leave http/https. */
    fetch(&f, "/tofile", &r);
    assert_int_equal(r.rc, RV_ENET);
    assert_true(r.err.msg[0] != '\0');

    fetch(&f, "/gzip", &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.len, 10);
    assert_string_equal(r.body, "hello gzip");

    fixture_finish(&f);
}

static void http_body_caps(void **state)
{
    (void)state;
    struct fixture f;
    struct result r;
    fixture_start(&f, 10000, "custom-agent/1");

    fetch(&f, "/big", &r);
    assert_int_equal(r.rc, RV_ETOOBIG);
    assert_string_equal(r.err.msg, "reply larger than 2097152 bytes");
    assert_string_equal(f.srv.last_ua, "custom-agent/1");

    fetch(&f, "/bigstream", &r);
    assert_int_equal(r.rc, RV_ETOOBIG);
    assert_string_equal(r.err.msg, "reply larger than 2097152 bytes");

    fetch(&f, "/exact", &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.len, TRACKER_MAX_BODY);

    fixture_finish(&f);
}

static void http_timeout_and_refused(void **state)
{
    (void)state;
    struct fixture f;
    struct result r;
    fixture_start(&f, 300, NULL);

    uint64_t t0 = uv_hrtime();
    fetch(&f, "/hang", &r);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    assert_int_equal(r.rc, RV_ETIMEDOUT);
    assert_true(r.err.msg[0] != '\0');
    assert_true(ms >= 250 && ms < 5000);

    /* A port that was just free: nothing listens there. */
    uv_tcp_t probe;
    struct sockaddr_in sa;
    struct sockaddr_storage gotaddr;
    int len = sizeof(gotaddr);
    assert_int_equal(uv_tcp_init(&f.loop, &probe), 0);
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    assert_int_equal(uv_tcp_bind(&probe, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_tcp_getsockname(&probe, (struct sockaddr *)&gotaddr, &len), 0);
    int port = ntohs(((struct sockaddr_in *)&gotaddr)->sin_port);
    uv_close((uv_handle_t *)&probe, NULL);

    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/announce", port);
    fetch(&f, url, &r);
    assert_int_equal(r.rc, RV_ENET);
    assert_true(r.err.msg[0] != '\0');

    /* TLS against a plain HTTP server fails as a network error, not a hang. */
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/ok", f.srv.port);
    fetch(&f, url, &r);
    assert_int_equal(r.rc, RV_ENET);

    /* Schemes other than http and https are refused. */
    fetch(&f, "file:///etc/passwd", &r);
    assert_int_equal(r.rc, RV_ENET);
    assert_non_null(strstr(r.err.msg, "file"));

    fixture_finish(&f);
}

static void http_cancel(void **state)
{
    (void)state;
    struct fixture f;
    struct result hung, r;
    struct http_tr_req *req;
    fixture_start(&f, 5000, NULL);

    /* Canceled before anything happened. */
    start(&f, "/hang", &hung, &req);
    http_tr_cancel(req);

    /* Canceled once the server holds the connection. */
    start(&f, "/hang", &hung, &req);
    while (f.srv.requests < 1)
        uv_run(&f.loop, UV_RUN_ONCE);
    http_tr_cancel(req);

    /* The transport still works, and the canceled callbacks never ran. */
    fetch(&f, "/ok", &r);
    assert_int_equal(r.rc, 0);

    /* Canceled from another request's callback. */
    start(&f, "/hang", &hung, &req);
    start(&f, "/ok", &r, NULL);
    r.other = req;
    wait_for(&f, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(hung.called, 0);

    fixture_finish(&f);
    assert_int_equal(hung.called, 0);
}

static void http_close_in_flight(void **state)
{
    (void)state;
    struct fixture f;
    struct result hung[4];
    fixture_start(&f, 5000, NULL);
    for (int i = 0; i < 3; i++)
        start(&f, "/hang", &hung[i], NULL);
    while (f.srv.requests < 3)
        uv_run(&f.loop, UV_RUN_ONCE);
    /* One more that has not even connected yet. */
    start(&f, "/hang", &hung[3], NULL);
    f.close_called = true;
    http_tr_close(f.h, on_closed, &f);
    assert_int_equal(f.closed, 0); /* the close callback comes from the loop */
    fixture_finish(&f);
    for (int i = 0; i < 4; i++)
        assert_int_equal(hung[i].called, 0);
}

static void http_close_from_callback(void **state)
{
    (void)state;
    struct fixture f;
    struct result hung, r;
    fixture_start(&f, 5000, NULL);
    start(&f, "/hang", &hung, NULL);
    start(&f, "/ok", &r, NULL);
    r.close_in_cb = true;
    wait_for(&f, &r);
    assert_int_equal(r.rc, 0);
    fixture_finish(&f);
    assert_int_equal(hung.called, 0);
}

static void http_close_idle(void **state)
{
    (void)state;
    struct fixture f;
    fixture_start(&f, 0, NULL);
    fixture_finish(&f);
    /* NULL callback is allowed too. */
    uv_loop_t loop;
    struct http_tr *h;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(http_tr_new(&loop, NULL, &h), 0);
    http_tr_close(h, NULL, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    /* The test server writes to clients that may have hung up. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(url_announce_exact),
        cmocka_unit_test(url_announce_events),
        cmocka_unit_test(url_announce_query_and_trackerid),
        cmocka_unit_test(url_scrape_rules),
        cmocka_unit_test(reply_compact),
        cmocka_unit_test(reply_dict_model),
        cmocka_unit_test(reply_peers6),
        cmocka_unit_test(reply_failure_and_warning),
        cmocka_unit_test(reply_intervals),
        cmocka_unit_test(reply_wrong_types),
        cmocka_unit_test(reply_malformed),
        cmocka_unit_test(reply_many_peers_capped),
        cmocka_unit_test(scrape_replies),
        cmocka_unit_test(http_ok_and_redirects),
        cmocka_unit_test(http_body_caps),
        cmocka_unit_test(http_timeout_and_refused),
        cmocka_unit_test(http_cancel),
        cmocka_unit_test(http_close_in_flight),
        cmocka_unit_test(http_close_from_callback),
        cmocka_unit_test(http_close_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
