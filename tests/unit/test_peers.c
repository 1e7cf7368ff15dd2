/* Unit tests for src/swarm/peers: merging and de-duplicating peers from every source. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "rivulet/error.h"
#include "swarm/peers.h"

static struct peer_addr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port)
{
    struct peer_addr p;
    memset(&p, 0, sizeof(p));
    p.family = 4;
    p.ip[0] = a, p.ip[1] = b, p.ip[2] = c, p.ip[3] = d;
    p.port = port;
    return p;
}

static int seen;
static unsigned last_source;

static void on_new(void *ud, const struct peer_addr *a, unsigned source)
{
    (void)ud;
    (void)a;
    seen++;
    last_source = source;
}

static void merges_duplicates_across_sources(void **state)
{
    (void)state;
    struct peer_set s;
    seen = 0;
    peers_init(&s, 0, on_new, NULL);
    struct peer_addr a = v4(127, 0, 0, 2, 6881);
    assert_int_equal(peers_add(&s, &a, PEER_SRC_TRACKER), 1);
    assert_int_equal(peers_add(&s, &a, PEER_SRC_TRACKER), 0);
    assert_int_equal(peers_add(&s, &a, PEER_SRC_MANUAL), 0);
    assert_int_equal(seen, 1);
    assert_int_equal(last_source, PEER_SRC_TRACKER);
    const struct known_peer *k = peers_find(&s, &a);
    assert_non_null(k);
    assert_int_equal(k->sources, PEER_SRC_TRACKER | PEER_SRC_MANUAL);
    /* Another port is another peer. */
    struct peer_addr b = v4(127, 0, 0, 2, 6882);
    assert_int_equal(peers_add(&s, &b, PEER_SRC_DHT), 1);
    assert_int_equal(s.count, 2);
    peers_free(&s);
}

static int again;
static struct peer_addr again_addr;

static void on_again(void *ud, const struct peer_addr *a, unsigned source)
{
    (void)ud;
    again++;
    again_addr = *a;
    last_source = source;
}

/* A known address named again reaches on_again (the torrent gives a peer it gave up on another
 * round then), with the source that named it; a new one only on_new. */
static void tells_of_known_addresses_named_again(void **state)
{
    (void)state;
    struct peer_set s;
    seen = again = 0;
    peers_init(&s, 0, on_new, NULL);
    s.on_again = on_again;
    struct peer_addr a = v4(127, 0, 0, 2, 6881), m;
    assert_int_equal(peers_add(&s, &a, PEER_SRC_TRACKER), 1);
    assert_int_equal(seen, 1);
    assert_int_equal(again, 0);
    assert_int_equal(peers_add(&s, &a, PEER_SRC_TRACKER), 0);
    assert_int_equal(again, 1);
    assert_int_equal(last_source, PEER_SRC_TRACKER);
    /* the same peer as ::ffff:127.0.0.2, from PEX: reported as the IPv4 address */
    memset(&m, 0, sizeof(m));
    m.family = 6;
    m.ip[10] = m.ip[11] = 0xff;
    m.ip[12] = 127, m.ip[15] = 2;
    m.port = 6881;
    assert_int_equal(peers_add(&s, &m, PEER_SRC_PEX), 0);
    assert_int_equal(again, 2);
    assert_int_equal(last_source, PEER_SRC_PEX);
    assert_int_equal(again_addr.family, 4);
    assert_memory_equal(again_addr.ip, a.ip, 4);
    assert_int_equal(again_addr.port, 6881);
    struct peer_addr b = v4(127, 0, 0, 3, 6881);
    assert_int_equal(peers_add(&s, &b, PEER_SRC_DHT), 1);
    assert_int_equal(seen, 2);
    assert_int_equal(again, 2);
    peers_free(&s);
}

static void v4_mapped_v6_is_the_v4_peer(void **state)
{
    (void)state;
    struct peer_set s;
    peers_init(&s, 0, NULL, NULL);
    struct peer_addr a = v4(10, 1, 2, 3, 80), m;
    memset(&m, 0, sizeof(m));
    m.family = 6;
    m.ip[10] = m.ip[11] = 0xff;
    m.ip[12] = 10, m.ip[13] = 1, m.ip[14] = 2, m.ip[15] = 3;
    m.port = 80;
    assert_int_equal(peers_add(&s, &a, PEER_SRC_TRACKER), 1);
    assert_int_equal(peers_add(&s, &m, PEER_SRC_PEX), 0);
    assert_int_equal(s.count, 1);
    peers_free(&s);
}

static void refuses_addresses_no_one_should_dial(void **state)
{
    (void)state;
    struct peer_set s;
    peers_init(&s, 0, NULL, NULL);
    struct peer_addr bad[] = {v4(1, 2, 3, 4, 0), v4(0, 0, 0, 0, 1), v4(224, 0, 0, 1, 1),
                              v4(255, 255, 255, 255, 1), v4(0, 1, 2, 3, 1)};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(peers_add(&s, &bad[i], PEER_SRC_TRACKER), RV_EINVAL);
    struct peer_addr v6;
    memset(&v6, 0, sizeof(v6));
    v6.family = 6;
    v6.port = 1;
    assert_int_equal(peers_add(&s, &v6, PEER_SRC_TRACKER), RV_EINVAL); /* :: */
    v6.ip[0] = 0xff;
    assert_int_equal(peers_add(&s, &v6, PEER_SRC_TRACKER), RV_EINVAL); /* multicast */
    v6.ip[0] = 0x20;
    assert_int_equal(peers_add(&s, &v6, PEER_SRC_TRACKER), 1);
    struct peer_addr weird = v4(1, 2, 3, 4, 5);
    weird.family = 9;
    assert_int_equal(peers_add(&s, &weird, PEER_SRC_TRACKER), RV_EINVAL);
    peers_free(&s);
}

static void bounded_by_max_and_grows(void **state)
{
    (void)state;
    struct peer_set s;
    peers_init(&s, 1000, NULL, NULL);
    for (unsigned i = 0; i < 1000; i++) {
        struct peer_addr a = v4(10, (uint8_t)(i >> 8), (uint8_t)i, 1, 6881);
        assert_int_equal(peers_add(&s, &a, PEER_SRC_TRACKER), 1);
    }
    struct peer_addr extra = v4(11, 0, 0, 1, 6881);
    assert_int_equal(peers_add(&s, &extra, PEER_SRC_TRACKER), RV_EFULL);
    /* Known peers still merge when full. */
    struct peer_addr first = v4(10, 0, 0, 1, 6881);
    assert_int_equal(peers_add(&s, &first, PEER_SRC_PEX), 0);
    for (unsigned i = 0; i < 1000; i++) {
        struct peer_addr a = v4(10, (uint8_t)(i >> 8), (uint8_t)i, 1, 6881);
        assert_non_null(peers_find(&s, &a));
    }
    assert_null(peers_find(&s, &extra));
    peers_free(&s);
}

static void parses_and_formats(void **state)
{
    (void)state;
    struct peer_addr a;
    char out[64];
    assert_int_equal(peer_addr_parse("127.0.0.1:6881", &a), 0);
    assert_int_equal(a.family, 4);
    assert_int_equal(a.port, 6881);
    peer_addr_format(&a, out, sizeof(out));
    assert_string_equal(out, "127.0.0.1:6881");
    assert_int_equal(peer_addr_parse("[::1]:51413", &a), 0);
    assert_int_equal(a.family, 6);
    peer_addr_format(&a, out, sizeof(out));
    assert_string_equal(out, "[::1]:51413");
    static const char *bad[] = {"",         "127.0.0.1",   "127.0.0.1:",  "127.0.0.1:0",
                                "1.2.3.4:65536", "host:80", "[::1]80",    "::1:80",
                                "1.2.3.4:8x", "[::1:80",   ":80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (peer_addr_parse(bad[i], &a) != RV_EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(merges_duplicates_across_sources),
        cmocka_unit_test(tells_of_known_addresses_named_again),
        cmocka_unit_test(v4_mapped_v6_is_the_v4_peer),
        cmocka_unit_test(refuses_addresses_no_one_should_dial),
        cmocka_unit_test(bounded_by_max_and_grows),
        cmocka_unit_test(parses_and_formats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
