/* Unit tests for src/peer/ext (BEP 10 handshake, BEP 9 ut_metadata, BEP 11 ut_pex, BEP 6
 * allowed-fast set) and src/swarm/metadata (assembly, hash check, blame). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer/ext.h"
#include "peer/wire.h"
#include "rivulet/version.h"
#include "swarm/metadata.h"
#include "util/sha.h"

static const struct wire_limits lim = {10, 16384, 16384};

/* Decodes the single extended message in b; returns its payload. */
static struct wire_msg one_ext(const struct buf *b)
{
    struct wire_msg m;
    size_t used;
    rv_error_t err;
    assert_int_equal(wire_decode(b->data, b->len, &lim, &m, &used, &err), 1);
    assert_int_equal(used, b->len);
    assert_int_equal(m.type, WIRE_EXTENDED);
    return m;
}

static void handshake_roundtrip(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1 << 20);
    struct peer_addr you = {.family = 4, .ip = {127, 0, 0, 9}};
    struct ext_handshake_out o = {.pex = true, .port = 6881, .reqq = 2048, .yourip = &you,
                                  .metadata_size = 12345, .upload_only = true};
    assert_int_equal(ext_handshake_put(&b, &o), 0);
    struct wire_msg m = one_ext(&b);
    assert_int_equal(m.ext_id, EXT_HANDSHAKE_ID);
    struct ext_handshake h;
    rv_error_t err;
    assert_int_equal(ext_handshake_parse(m.data, m.data_len, &h, &err), 0);
    for (int k = 0; k < EXT_KINDS; k++)
        assert_int_equal(h.ids[k], EXT_OUR_ID(k));
    assert_int_equal(h.port, 6881);
    assert_int_equal(h.reqq, 2048);
    assert_int_equal(h.metadata_size, 12345);
    assert_true(h.upload_only);
    assert_true(h.has_yourip);
    assert_memory_equal(h.yourip.ip, you.ip, 4);
    assert_string_equal(h.client, "rivulet " RV_VERSION_STRING);
    /* Private torrents: no ut_pex offered (BEP 27). */
    buf_free(&b);
    buf_init(&b, 1 << 20);
    o.pex = false;
    o.metadata_size = -1;
    assert_int_equal(ext_handshake_put(&b, &o), 0);
    m = one_ext(&b);
    assert_int_equal(ext_handshake_parse(m.data, m.data_len, &h, &err), 0);
    assert_int_equal(h.ids[EXT_UT_PEX], 0);
    assert_int_equal(h.metadata_size, -1);
    buf_free(&b);
}

static void handshake_hostile(void **state)
{
    (void)state;
    struct ext_handshake h;
    rv_error_t err;
    const char *bad[] = {"", "i3e", "le", "d1:mi3ee", "d1:m", "4:spam"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ext_handshake_parse((const uint8_t *)bad[i], strlen(bad[i]), &h, &err),
                         RV_EPROTO);
    /* Out-of-range ids and sizes are ignored; a 'v' with control bytes is made printable. */
    const char *odd = "d1:md11:ut_metadatai300e6:ut_pexi-1e11:lt_donthavei0ee13:metadata_size"
                      "i-5e1:pi70000e1:v3:a\x01" "be";
    assert_int_equal(ext_handshake_parse((const uint8_t *)odd, strlen(odd), &h, &err), 0);
    assert_int_equal(h.ids[EXT_UT_METADATA], 0);
    assert_int_equal(h.ids[EXT_UT_PEX], 0);
    assert_int_equal(h.ids[EXT_LT_DONTHAVE], 0);
    assert_int_equal(h.metadata_size, -1);
    assert_int_equal(h.port, 0);
    assert_string_equal(h.client, "a?b");
}

static void ut_metadata_messages(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1 << 20);
    uint8_t block[300];
    memset(block, 7, sizeof(block));
    assert_int_equal(ut_metadata_put(&b, 3, UT_METADATA_DATA, 2, 33068, block, sizeof(block)), 0);
    struct wire_msg m = one_ext(&b);
    assert_int_equal(m.ext_id, 3);
    struct ut_metadata_msg um;
    rv_error_t err;
    assert_int_equal(ut_metadata_parse(m.data, m.data_len, &um, &err), 0);
    assert_int_equal(um.type, UT_METADATA_DATA);
    assert_int_equal(um.piece, 2);
    assert_int_equal(um.total_size, 33068);
    assert_int_equal(um.data_len, sizeof(block));
    assert_memory_equal(um.data, block, sizeof(block));
    buf_free(&b);
    const char *req = "d8:msg_typei0e5:piecei0ee";
    assert_int_equal(ut_metadata_parse((const uint8_t *)req, strlen(req), &um, &err), 0);
    assert_int_equal(um.type, UT_METADATA_REQUEST);
    const char *bad[] = {"d8:msg_typei9e5:piecei0ee", "d5:piecei0ee", "d8:msg_typei0e5:piecei-1ee",
                         "d8:msg_typei0e5:piecei0eexx", "d8:msg_typei1e5:piecei99999ee", "x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ut_metadata_parse((const uint8_t *)bad[i], strlen(bad[i]), &um, &err),
                         RV_EPROTO);
}

static void pex_messages(void **state)
{
    (void)state;
    struct pex_peer added[3] = {{{.family = 4, .port = 6881, .ip = {10, 0, 0, 1}}, PEX_FLAG_SEED},
                                {{.family = 6, .port = 51413, .ip = {0x20, 1, 0xd, 0xb8}}, 0},
                                {{.family = 4, .port = 1, .ip = {127, 0, 0, 2}}, PEX_FLAG_REACHABLE}};
    struct peer_addr dropped[1] = {{.family = 4, .port = 99, .ip = {192, 168, 1, 1}}};
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(pex_put(&b, 1, added, 3, dropped, 1), 0);
    struct wire_msg m = one_ext(&b);
    struct pex_msg *pm = malloc(sizeof(*pm));
    rv_error_t err;
    assert_int_equal(pex_parse(m.data, m.data_len, pm, &err), 0);
    assert_int_equal(pm->nadded, 3);
    assert_int_equal(pm->ndropped, 1);
    /* IPv4 first, then IPv6, flags kept with their peers. */
    assert_int_equal(pm->added[0].addr.port, 6881);
    assert_int_equal(pm->added[0].flags, PEX_FLAG_SEED);
    assert_int_equal(pm->added[1].addr.port, 1);
    assert_int_equal(pm->added[1].flags, PEX_FLAG_REACHABLE);
    assert_int_equal(pm->added[2].addr.family, 6);
    assert_int_equal(pm->added[2].addr.port, 51413);
    assert_int_equal(pm->dropped[0].port, 99);
    buf_free(&b);
    /* A list that is not whole entries is refused; more than PEX_MAX are counted, not taken. */
    const char *ragged = "d5:added7:abcdefge";
    assert_int_equal(pex_parse((const uint8_t *)ragged, strlen(ragged), pm, &err), RV_EPROTO);
    char big[16 + 6 * 60];
    int n = snprintf(big, sizeof(big), "d5:added%d:", 6 * 60);
    memset(big + n, 'x', 6 * 60);
    big[n + 6 * 60] = 'e';
    assert_int_equal(pex_parse((const uint8_t *)big, (size_t)n + 6 * 60 + 1, pm, &err), 0);
    assert_int_equal(pm->nadded, PEX_MAX);
    assert_int_equal(pm->ignored, 10);
    free(pm);
}

/* The worked example of BEP 6: 80.4.4.200, an info-hash of 0xaa bytes, 1313 pieces. */
static void allowed_fast_bep6_example(void **state)
{
    (void)state;
    uint8_t ip[4] = {80, 4, 4, 200}, ih[20];
    memset(ih, 0xaa, sizeof(ih));
    uint32_t out[9];
    static const uint32_t want7[] = {1059, 431, 808, 1217, 287, 376, 1188};
    static const uint32_t want9[] = {1059, 431, 808, 1217, 287, 376, 1188, 353, 508};
    assert_int_equal(fast_allowed_set(ip, ih, 1313, 7, out), 7);
    assert_memory_equal(out, want7, sizeof(want7));
    assert_int_equal(fast_allowed_set(ip, ih, 1313, 9, out), 9);
    assert_memory_equal(out, want9, sizeof(want9));
    /* Fewer pieces than k: every piece, once. */
    assert_int_equal(fast_allowed_set(ip, ih, 3, 9, out), 3);
    assert_int_equal(fast_allowed_set(ip, ih, 0, 9, out), 0);
}

static void metadata_assembly(void **state)
{
    (void)state;
    size_t size = 40000; /* three blocks, the last 7232 bytes */
    uint8_t *info = malloc(size), ih[20];
    for (size_t i = 0; i < size; i++)
        info[i] = (uint8_t)(i * 31);
    sha1(info, size, ih);
    struct metadata md;
    metadata_init(&md, ih, EXT_MAX_METADATA);
    int a, b, liar;
    void *blame[METADATA_MAX_BLAME];
    size_t nblame;
    rv_error_t err;
    uint32_t blk;
    /* Oversized or absent sizes are never used. */
    assert_int_equal(metadata_pick(&md, &a, (int64_t)EXT_MAX_METADATA + 1, 0, &blk), 0);
    assert_int_equal(metadata_pick(&md, &a, -1, 0, &blk), 0);
    /* Two honest peers share the blocks. */
    assert_int_equal(metadata_pick(&md, &a, (int64_t)size, 0, &blk), 1);
    assert_int_equal(blk, 0);
    assert_int_equal(metadata_pick(&md, &b, (int64_t)size, 0, &blk), 1);
    assert_int_equal(blk, 1);
    /* A peer advertising another size is not asked during this attempt. */
    assert_int_equal(metadata_pick(&md, &liar, (int64_t)size + 1, 0, &blk), 0);
    /* A wrong block length is the sender's lie. */
    assert_int_equal(metadata_received(&md, &a, 0, (int64_t)size, info, 100, blame, &nblame, &err),
                     RV_EPROTO);
    assert_int_equal(metadata_pick(&md, &a, (int64_t)size, 0, &blk), 1);
    assert_int_equal(blk, 0);
    assert_int_equal(metadata_received(&md, &a, 0, (int64_t)size, info, 16384, blame, &nblame, &err),
                     METADATA_OK);
    /* Not asked of this peer: ignored. */
    assert_int_equal(metadata_received(&md, &a, 1, (int64_t)size, info + 16384, 16384, blame,
                                       &nblame, &err), METADATA_IGNORED);
    assert_int_equal(metadata_received(&md, &b, 1, (int64_t)size, info + 16384, 16384, blame,
                                       &nblame, &err), METADATA_OK);
    /* b leaves with nothing outstanding; a takes the last block; timeouts free requests. */
    assert_int_equal(metadata_pick(&md, &a, (int64_t)size, 1000, &blk), 1);
    assert_int_equal(blk, 2);
    assert_int_equal(metadata_expire(&md, 1000 + METADATA_TIMEOUT_MS), 1);
    assert_int_equal(metadata_pick(&md, &b, (int64_t)size, 20000, &blk), 1);
    assert_int_equal(blk, 2);
    assert_int_equal(metadata_received(&md, &b, 2, (int64_t)size, info + 32768, size - 32768, blame,
                                       &nblame, &err), METADATA_COMPLETE);
    assert_true(md.done);
    assert_memory_equal(md.data, info, size);
    metadata_free(&md);

    /* A liar among two: the failed attempt blames both; the next ones take one source each,
     * and the liar alone is blamed. */
    uint8_t *lie = malloc(size);
    memcpy(lie, info, size);
    lie[20000] ^= 1;
    metadata_init(&md, ih, EXT_MAX_METADATA);
    for (uint32_t i = 0; i < 3; i++) {
        void *who = i == 1 ? (void *)&liar : (void *)&a;
        assert_int_equal(metadata_pick(&md, who, (int64_t)size, 0, &blk), 1);
        assert_int_equal(blk, i);
        const uint8_t *src = i == 1 ? lie : info;
        size_t len = i == 2 ? size - 32768 : 16384;
        int rc = metadata_received(&md, who, i, (int64_t)size, src + i * 16384, len, blame,
                                   &nblame, &err);
        assert_int_equal(rc, i == 2 ? RV_EHASH : METADATA_OK);
    }
    assert_int_equal(nblame, 2);
    assert_true(md.single_source);
    /* The liar picks first now and gets every block... */
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(metadata_pick(&md, &liar, (int64_t)size, 0, &blk), 1);
        assert_int_equal(metadata_pick(&md, &a, (int64_t)size, 0, &blk), 0);
    }
    for (uint32_t i = 0; i < 3; i++) {
        size_t len = i == 2 ? size - 32768 : 16384;
        int rc = metadata_received(&md, &liar, i, (int64_t)size, lie + i * 16384, len, blame,
                                   &nblame, &err);
        assert_int_equal(rc, i == 2 ? RV_EHASH : METADATA_OK);
    }
    assert_int_equal(nblame, 1);
    assert_ptr_equal(blame[0], &liar);
    /* ... and the honest peer completes the next attempt alone. */
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(metadata_pick(&md, &a, (int64_t)size, 0, &blk), 1);
        size_t len = i == 2 ? size - 32768 : 16384;
        int rc = metadata_received(&md, &a, blk, (int64_t)size, info + blk * 16384, len, blame,
                                   &nblame, &err);
        assert_int_equal(rc, i == 2 ? METADATA_COMPLETE : METADATA_OK);
    }
    metadata_free(&md);
    free(lie);
    free(info);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(handshake_roundtrip),  cmocka_unit_test(handshake_hostile),
        cmocka_unit_test(ut_metadata_messages), cmocka_unit_test(pex_messages),
        cmocka_unit_test(allowed_fast_bep6_example), cmocka_unit_test(metadata_assembly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
