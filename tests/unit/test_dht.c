/* Unit tests for src/dht: the KRPC codec (every message both ways, hostile packets), the
 * routing table (splits, full buckets, bad nodes, closest), BEP 42 ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dht/dht.h"
#include "dht/krpc.h"
#include "dht/table.h"

static struct peer_addr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port)
{
    struct peer_addr x = {.family = 4, .port = port, .ip = {a, b, c, d}};
    return x;
}

static void krpc_roundtrip(void **state)
{
    (void)state;
    uint8_t id[20], target[20], tid[4] = {1, 2, 3, 4};
    memset(id, 0x11, 20);
    memset(target, 0x22, 20);
    struct krpc_msg *m = malloc(sizeof(*m));
    rv_error_t err;
    static const enum krpc_method methods[] = {KRPC_PING, KRPC_FIND_NODE, KRPC_GET_PEERS,
                                               KRPC_ANNOUNCE_PEER};
    for (int i = 0; i < 4; i++) {
        struct buf b;
        buf_init(&b, KRPC_MAX_PACKET);
        assert_int_equal(krpc_put_query(&b, methods[i], tid, 4, id,
                                        methods[i] == KRPC_PING ? NULL : target,
                                        (const uint8_t *)"tok", 3, 6881, false, true, true), 0);
        assert_int_equal(krpc_parse(b.data, b.len, m, &err), 0);
        assert_int_equal(m->type, KRPC_QUERY);
        assert_int_equal(m->method, methods[i]);
        assert_memory_equal(m->tid, tid, 4);
        assert_memory_equal(m->id, id, 20);
        if (methods[i] != KRPC_PING)
            assert_memory_equal(m->target, target, 20);
        if (methods[i] == KRPC_ANNOUNCE_PEER) {
            assert_int_equal(m->port, 6881);
            assert_int_equal(m->token_len, 3);
        }
        if (methods[i] == KRPC_GET_PEERS)
            assert_true(m->want4 && m->want6);
        buf_free(&b);
    }
    /* A response with both families, values, a token and 'ip'. */
    struct krpc_node nodes[3];
    memset(nodes, 0, sizeof(nodes));
    nodes[0].addr = v4(127, 0, 0, 2, 1000);
    nodes[1].addr = v4(127, 0, 0, 3, 1001);
    nodes[2].addr = (struct peer_addr){.family = 6, .port = 1002, .ip = {[15] = 1}};
    nodes[2].id[0] = 9;
    struct peer_addr vals[2] = {v4(10, 0, 0, 1, 51413), v4(10, 0, 0, 2, 51414)};
    struct peer_addr me = v4(192, 0, 2, 7, 4000);
    struct buf b;
    buf_init(&b, KRPC_MAX_PACKET);
    assert_int_equal(krpc_put_response(&b, tid, 4, id, nodes, 3, vals, 2,
                                       (const uint8_t *)"12345678", 8, &me), 0);
    assert_int_equal(krpc_parse(b.data, b.len, m, &err), 0);
    assert_int_equal(m->type, KRPC_RESPONSE);
    assert_int_equal(m->nnodes, 3);
    assert_int_equal(m->nodes[2].addr.family, 6);
    assert_int_equal(m->nodes[2].id[0], 9);
    assert_int_equal(m->nvalues, 2);
    assert_int_equal(m->values[1].port, 51414);
    assert_int_equal(m->token_len, 8);
    assert_true(m->has_ip);
    assert_int_equal(m->ip.port, 4000);
    buf_free(&b);
    buf_init(&b, KRPC_MAX_PACKET);
    assert_int_equal(krpc_put_error(&b, tid, 4, 203, "bad token"), 0);
    assert_int_equal(krpc_parse(b.data, b.len, m, &err), 0);
    assert_int_equal(m->type, KRPC_ERROR);
    assert_int_equal(m->error_code, 203);
    assert_string_equal(m->error_msg, "bad token");
    buf_free(&b);
    free(m);
}

static void krpc_hostile(void **state)
{
    (void)state;
    struct krpc_msg *m = malloc(sizeof(*m));
    rv_error_t err;
    static const char *const bad[] = {
        "",                                        /* empty */
        "d1:t2:aa1:y1:qe",                         /* query without q/a */
        "d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe",  /* short id */
        "d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:y1:qe", /* no tid */
        "d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t17:aaaaaaaaaaaaaaaaa1:y1:qe", /* long tid */
        "d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:xe", /* unknown y */
        "d1:rd2:id20:0123456789abcdefghij5:nodes5:abcdee1:t2:aa1:y1:re", /* ragged nodes */
        "d1:rd2:id20:0123456789abcdefghij6:valuesl3:abcee1:t2:aa1:y1:re", /* bad value */
        ("d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti0e"
         "5:token2:aae1:q13:announce_peer1:t2:aa1:y1:qe"), /* port 0 */
        "li1ei2ee", "d1:t2:aa1:y1:q", /* a list, truncated */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(krpc_parse((const uint8_t *)bad[i], strlen(bad[i]), m, &err), RV_EPROTO);
    /* A huge 'nodes' string: whole entries, but only KRPC_MAX_NODES are taken. */
    size_t n = 200 * 26;
    char *big = malloc(n + 128);
    int h = snprintf(big, 128, "d1:rd2:id20:0123456789abcdefghij5:nodes%zu:", n);
    memset(big + h, 'x', n);
    memcpy(big + h + n, "e1:t2:aa1:y1:re", 15);
    assert_int_equal(krpc_parse((const uint8_t *)big, (size_t)h + n + 15, m, &err), 0);
    assert_int_equal(m->nnodes, KRPC_MAX_NODES);
    free(big);
    free(m);
}

static void table_behaviour(void **state)
{
    (void)state;
    uint8_t self[20] = {0};
    struct dht_table *t = malloc(sizeof(*t));
    table_init(t, self, 4);
    uint8_t id[20];
    /* 8 far nodes (first bit 1) fill the one bucket; the 9th far one splits it (our side is
     * 0...) and then finds its half full: refused. */
    for (int i = 0; i < 9; i++) {
        memset(id, 0, 20);
        id[0] = 0x80;
        id[19] = (uint8_t)(i + 1);
        struct peer_addr a = v4(127, 0, 0, (uint8_t)(i + 2), 6881);
        enum table_result r = table_update(t, id, &a, true, true, 1000, NULL);
        assert_int_equal(r, i < 8 ? TABLE_ADDED : TABLE_FULL);
    }
    assert_int_equal(t->nb, 2);
    /* Close nodes (near our id) still go in: their bucket splits as needed. */
    for (int i = 0; i < 20; i++) {
        memset(id, 0, 20);
        id[1] = (uint8_t)(1 + i);
        struct peer_addr a = v4(127, 0, 1, (uint8_t)(i + 2), 6881);
        assert_int_not_equal(table_update(t, id, &a, true, true, 1000, NULL), TABLE_IGNORED);
    }
    size_t good;
    assert_true(table_count(t, &good, 1000) >= 20);
    assert_int_equal(good, table_count(t, NULL, 1000));
    /* Our own id, another family, the same id from another address: ignored. */
    struct peer_addr a6 = {.family = 6, .port = 1, .ip = {[15] = 1}};
    assert_int_equal(table_update(t, self, &a6, true, true, 1000, NULL), TABLE_IGNORED);
    memset(id, 0, 20);
    id[0] = 0x80;
    id[19] = 1;
    struct peer_addr other = v4(127, 9, 9, 9, 1);
    assert_int_equal(table_update(t, id, &other, true, true, 1000, NULL), TABLE_IGNORED);
    /* A node that fails three times is bad and gives way to a newcomer. */
    struct peer_addr first = v4(127, 0, 0, 2, 6881);
    for (int k = 0; k < DHT_BAD_FAILS; k++)
        table_failed(t, &first);
    memset(id, 0, 20);
    id[0] = 0x80;
    id[19] = 99;
    struct peer_addr newcomer = v4(127, 0, 3, 1, 6881);
    assert_int_equal(table_update(t, id, &newcomer, true, true, 2000, NULL), TABLE_REPLACED);
    /* Closest: sorted by XOR distance, bad ones left out. */
    struct dht_node out[8];
    uint8_t target[20] = {0};
    target[1] = 3;
    size_t k = table_closest(t, target, out, 8);
    assert_int_equal(k, 8);
    assert_int_equal(out[0].id[1], 3);
    for (size_t i = 1; i < k; i++)
        assert_true(dht_closer(target, out[i - 1].id, out[i].id) <= 0);
    /* After 15 minutes nodes are no longer good; a stale bucket asks for a refresh target. */
    table_count(t, &good, 2000 + DHT_GOOD_MS + 1);
    assert_int_equal(good, 0);
    assert_int_equal(table_stale_bucket(t, 2000 + DHT_GOOD_MS + 1, target), 1);
    free(t);
}

/* BEP 42's test vectors (IPv4). */
static void bep42_ids(void **state)
{
    (void)state;
    static const struct {
        uint8_t ip[4];
        uint8_t r;
        uint8_t prefix[3];
    } v[] = {{{124, 31, 75, 21}, 1, {0x5f, 0xbf, 0xbf}},
             {{21, 75, 31, 124}, 6, {0x5a, 0x3c, 0xe9}},
             {{65, 23, 51, 170}, 6, {0xa5, 0xd4, 0x32}},
             {{84, 124, 73, 14}, 1, {0x1b, 0x03, 0x21}},
             {{43, 213, 53, 83}, 2, {0xe5, 0x6f, 0x6c}}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct peer_addr a = v4(v[i].ip[0], v[i].ip[1], v[i].ip[2], v[i].ip[3], 1);
        uint8_t id[20];
        dht_id_for(&a, v[i].r, id);
        assert_int_equal(id[0], v[i].prefix[0]);
        assert_int_equal(id[1], v[i].prefix[1]);
        assert_int_equal(id[2] & 0xf8, v[i].prefix[2] & 0xf8);
        assert_int_equal(id[19], v[i].r);
        assert_true(dht_id_verified(id, &a));
        id[0] ^= 0x40;
        assert_false(dht_id_verified(id, &a));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(krpc_roundtrip),
        cmocka_unit_test(krpc_hostile),
        cmocka_unit_test(table_behaviour),
        cmocka_unit_test(bep42_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
