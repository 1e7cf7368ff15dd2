/* Unit tests for src/peer/wire: every encoder byte for byte and through the decoder, every error
 * the decoder reports (and how early it reports it), partial input at every split point, and the
 * BEP 3 handshake. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer/wire.h"
#include "rivulet/error.h"
#include "util/buf.h"

/* 1000 pieces of 32 KiB, the last one 20000 bytes. */
static const struct wire_limits lim = {1000, 32768, 20000};

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Decodes exactly one whole message from p[0..len) and checks it used all of it. */
static struct wire_msg decode_one(const uint8_t *p, size_t len, const struct wire_limits *l)
{
    struct wire_msg m;
    size_t used = 0;
    rv_error_t err;
    memset(&err, 0, sizeof(err));
    int rc = wire_decode(p, len, l, &m, &used, &err);
    if (rc != 1)
        fail_msg("decode returned %d: %s", rc, err.msg);
    assert_int_equal(used, len);
    return m;
}

/* Expects RV_EPROTO from p[0..len) with msg containing want. */
static void expect_error(const uint8_t *p, size_t len, const struct wire_limits *l,
                         const char *want)
{
    struct wire_msg m;
    size_t used = 12345;
    rv_error_t err;
    memset(&err, 0, sizeof(err));
    int rc = wire_decode(p, len, l, &m, &used, &err);
    if (rc != RV_EPROTO)
        fail_msg("expected RV_EPROTO (\"%s\"), got %d", want, rc);
    assert_int_equal(err.code, RV_EPROTO);
    if (strstr(err.msg, want) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", err.msg, want);
    /* One line, for a log. */
    assert_null(strchr(err.msg, '\n'));
}

/* Expects "need more" from p[0..len) with *used == want_used. */
static void expect_more(const uint8_t *p, size_t len, const struct wire_limits *l, size_t want_used)
{
    struct wire_msg m;
    size_t used = 0;
    rv_error_t err;
    memset(&err, 0, sizeof(err));
    int rc = wire_decode(p, len, l, &m, &used, &err);
    if (rc != 0)
        fail_msg("expected 0 at %zu bytes, got %d: %s", len, rc, err.msg);
    assert_int_equal(used, want_used);
}

/* A message from its length prefix, id and body. */
static size_t make(uint8_t *out, uint32_t mlen, uint8_t id, const uint8_t *body, size_t n)
{
    put32(out, mlen);
    out[4] = id;
    if (n > 0)
        memcpy(out + 5, body, n);
    return 5 + n;
}

static size_t make_req(uint8_t *out, uint8_t id, uint32_t index, uint32_t begin, uint32_t len)
{
    uint8_t body[12];
    put32(body, index);
    put32(body + 4, begin);
    put32(body + 8, len);
    return make(out, 13, id, body, 12);
}

static void keepalive(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(wire_put_keepalive(&b), 0);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "\0\0\0\0", 4);
    struct wire_msg m = decode_one(b.data, 4, &lim);
    assert_int_equal(m.type, WIRE_KEEPALIVE);
    assert_null(m.data);
    assert_int_equal(m.data_len, 0);
    for (size_t k = 0; k < 4; k++)
        expect_more(b.data, k, &lim, 4);
    /* Two keep-alives back to back: the first uses 4 bytes. */
    uint8_t two[8] = {0};
    size_t used;
    assert_int_equal(wire_decode(two, 8, &lim, &m, &used, NULL), 1);
    assert_int_equal(used, 4);
    buf_free(&b);
}

static void encodings_are_byte_exact(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    static const struct {
        enum wire_type t;
        uint8_t id;
    } simple[] = {{WIRE_CHOKE, 0},          {WIRE_UNCHOKE, 1},   {WIRE_INTERESTED, 2},
                  {WIRE_NOT_INTERESTED, 3}, {WIRE_HAVE_ALL, 14}, {WIRE_HAVE_NONE, 15}};
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        b.len = 0;
        assert_int_equal(wire_put_simple(&b, simple[i].t), 0);
        uint8_t want[5] = {0, 0, 0, 1, simple[i].id};
        assert_int_equal(b.len, 5);
        assert_memory_equal(b.data, want, 5);
    }

    b.len = 0;
    assert_int_equal(wire_put_have(&b, 0x01020304), 0);
    assert_int_equal(b.len, 9);
    assert_memory_equal(b.data, "\0\0\0\x05\x04\x01\x02\x03\x04", 9);

    b.len = 0;
    const uint8_t bits[2] = {0xaa, 0x50};
    assert_int_equal(wire_put_bitfield(&b, bits, 2), 0);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "\0\0\0\x03\x05\xaa\x50", 7);

    static const struct {
        enum wire_type t;
        uint8_t id;
    } req[] = {{WIRE_REQUEST, 6}, {WIRE_CANCEL, 8}, {WIRE_REJECT, 16}};
    for (size_t i = 0; i < 3; i++) {
        b.len = 0;
        assert_int_equal(wire_put_request(&b, req[i].t, 1, 0x4000, 0x8000), 0);
        uint8_t want[17] = {0, 0, 0, 13, req[i].id, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x80, 0};
        assert_int_equal(b.len, 17);
        assert_memory_equal(b.data, want, 17);
    }

    b.len = 0;
    assert_int_equal(wire_put_piece_header(&b, 2, 0x8000, 0x4000), 0);
    assert_int_equal(b.len, 13);
    assert_memory_equal(b.data, "\0\0\x40\x09\x07\0\0\0\x02\0\0\x80\0", 13);

    b.len = 0;
    assert_int_equal(wire_put_port(&b, 6881), 0);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "\0\0\0\x03\x09\x1a\xe1", 7);

    b.len = 0;
    const char *hs = "d1:md11:ut_metadatai1eee";
    assert_int_equal(wire_put_extended(&b, 0, (const uint8_t *)hs, strlen(hs)), 0);
    assert_int_equal(b.len, 6 + strlen(hs));
    assert_memory_equal(b.data, "\0\0\0\x1a\x14\x00", 6);
    assert_memory_equal(b.data + 6, hs, strlen(hs));

    /* Encoders append. */
    b.len = 0;
    assert_int_equal(wire_put_keepalive(&b), 0);
    assert_int_equal(wire_put_simple(&b, WIRE_UNCHOKE), 0);
    assert_int_equal(b.len, 9);
    assert_memory_equal(b.data, "\0\0\0\0\0\0\0\x01\x01", 9);
    buf_free(&b);
}

static void round_trips(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    struct wire_msg m;

    enum wire_type simple[] = {WIRE_CHOKE,          WIRE_UNCHOKE,  WIRE_INTERESTED,
                               WIRE_NOT_INTERESTED, WIRE_HAVE_ALL, WIRE_HAVE_NONE};
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        b.len = 0;
        assert_int_equal(wire_put_simple(&b, simple[i]), 0);
        m = decode_one(b.data, b.len, &lim);
        assert_int_equal(m.type, simple[i]);
        assert_int_equal(m.data_len, 0);
    }

    b.len = 0;
    assert_int_equal(wire_put_have(&b, 999), 0);
    m = decode_one(b.data, b.len, &lim);
    assert_int_equal(m.type, WIRE_HAVE);
    assert_int_equal(m.index, 999);

    /* BEP 6 single-index messages share the have layout. */
    uint8_t raw[64];
    uint8_t idx[4];
    put32(idx, 7);
    size_t n = make(raw, 5, WIRE_SUGGEST, idx, 4);
    m = decode_one(raw, n, &lim);
    assert_int_equal(m.type, WIRE_SUGGEST);
    assert_int_equal(m.index, 7);
    n = make(raw, 5, WIRE_ALLOWED_FAST, idx, 4);
    m = decode_one(raw, n, &lim);
    assert_int_equal(m.type, WIRE_ALLOWED_FAST);
    assert_int_equal(m.index, 7);

    uint8_t bits[125];
    memset(bits, 0x5a, sizeof(bits));
    b.len = 0;
    assert_int_equal(wire_put_bitfield(&b, bits, sizeof(bits)), 0);
    m = decode_one(b.data, b.len, &lim);
    assert_int_equal(m.type, WIRE_BITFIELD);
    assert_int_equal(m.data_len, 125);
    assert_ptr_equal(m.data, b.data + 5);
    assert_memory_equal(m.data, bits, 125);

    enum wire_type req[] = {WIRE_REQUEST, WIRE_CANCEL, WIRE_REJECT};
    for (size_t i = 0; i < 3; i++) {
        b.len = 0;
        assert_int_equal(wire_put_request(&b, req[i], 998, 16384, 16384), 0);
        m = decode_one(b.data, b.len, &lim);
        assert_int_equal(m.type, req[i]);
        assert_int_equal(m.index, 998);
        assert_int_equal(m.begin, 16384);
        assert_int_equal(m.length, 16384);
        /* The last piece is shorter: 20000 bytes. */
        b.len = 0;
        assert_int_equal(wire_put_request(&b, req[i], 999, 16384, 20000 - 16384), 0);
        m = decode_one(b.data, b.len, &lim);
        assert_int_equal(m.index, 999);
        assert_int_equal(m.length, 20000 - 16384);
        /* The largest block the codec accepts, in a piece big enough for it. */
        const struct wire_limits big = {4, 1u << 20, 1u << 20};
        b.len = 0;
        assert_int_equal(wire_put_request(&b, req[i], 0, 0, WIRE_MAX_BLOCK), 0);
        m = decode_one(b.data, b.len, &big);
        assert_int_equal(m.length, WIRE_MAX_BLOCK);
    }

    /* A piece: header plus block; the block is a span of the input. */
    uint8_t block[16384];
    for (size_t i = 0; i < sizeof(block); i++)
        block[i] = (uint8_t)(i * 7);
    b.len = 0;
    assert_int_equal(wire_put_piece_header(&b, 5, 16384, sizeof(block)), 0);
    assert_int_equal(buf_append(&b, block, sizeof(block)), 0);
    m = decode_one(b.data, b.len, &lim);
    assert_int_equal(m.type, WIRE_PIECE);
    assert_int_equal(m.index, 5);
    assert_int_equal(m.begin, 16384);
    assert_int_equal(m.length, 16384);
    assert_int_equal(m.data_len, 16384);
    assert_ptr_equal(m.data, b.data + 13);
    assert_memory_equal(m.data, block, sizeof(block));
    /* A one-byte block at the very end of the last piece. */
    b.len = 0;
    assert_int_equal(wire_put_piece_header(&b, 999, 19999, 1), 0);
    assert_int_equal(buf_append_byte(&b, 0xee), 0);
    m = decode_one(b.data, b.len, &lim);
    assert_int_equal(m.index, 999);
    assert_int_equal(m.begin, 19999);
    assert_int_equal(m.data_len, 1);
    assert_int_equal(m.data[0], 0xee);

    b.len = 0;
    assert_int_equal(wire_put_port(&b, 65535), 0);
    m = decode_one(b.data, b.len, &lim);
    assert_int_equal(m.type, WIRE_PORT);
    assert_int_equal(m.port, 65535);

    b.len = 0;
    assert_int_equal(wire_put_extended(&b, 3, (const uint8_t *)"abc", 3), 0);
    m = decode_one(b.data, b.len, &lim);
    assert_int_equal(m.type, WIRE_EXTENDED);
    assert_int_equal(m.ext_id, 3);
    assert_int_equal(m.data_len, 3);
    assert_memory_equal(m.data, "abc", 3);
    /* An extended message with an empty payload is legal (length 2). */
    b.len = 0;
    assert_int_equal(wire_put_extended(&b, 1, NULL, 0), 0);
    m = decode_one(b.data, b.len, &lim);
    assert_int_equal(m.ext_id, 1);
    assert_int_equal(m.data_len, 0);
    buf_free(&b);
}

static void encoder_errors_leave_buffer_alone(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(wire_put_simple(&b, WIRE_UNCHOKE), 0);
    assert_int_equal(wire_put_simple(&b, WIRE_HAVE), RV_EINVAL);
    assert_int_equal(wire_put_simple(&b, WIRE_KEEPALIVE), RV_EINVAL);
    assert_int_equal(wire_put_request(&b, WIRE_PIECE, 0, 0, 16384), RV_EINVAL);
    assert_int_equal(wire_put_request(&b, WIRE_HAVE, 0, 0, 16384), RV_EINVAL);
    assert_int_equal(wire_put_piece_header(&b, 0, 0, 0), RV_EINVAL);
    assert_int_equal(wire_put_piece_header(&b, 0, 0, WIRE_MAX_BLOCK + 1), RV_EINVAL);
    static const uint8_t big[WIRE_MAX_EXTENDED];
    assert_int_equal(wire_put_extended(&b, 1, big, WIRE_MAX_EXTENDED), RV_ETOOBIG);
    assert_int_equal(b.len, 5);
    /* The largest extended message fits, and decodes. */
    b.len = 0;
    assert_int_equal(wire_put_extended(&b, 1, big, WIRE_MAX_EXTENDED - 1), 0);
    struct wire_msg m = decode_one(b.data, b.len, &lim);
    assert_int_equal(m.data_len, WIRE_MAX_EXTENDED - 1);
    buf_free(&b);

    /* A buffer at its maximum refuses the whole message, not part of it. */
    buf_init(&b, 8);
    assert_int_equal(wire_put_have(&b, 1), RV_ETOOBIG);
    uint8_t bits[4] = {0};
    assert_int_equal(wire_put_bitfield(&b, bits, 4), RV_ETOOBIG);
    assert_int_equal(wire_put_extended(&b, 1, bits, 4), RV_ETOOBIG);
    assert_int_equal(b.len, 0);
    assert_int_equal(wire_put_port(&b, 1), 0);
    assert_int_equal(b.len, 7);
    buf_free(&b);
}

static void oversized_prefix_fails_at_once(void **state)
{
    (void)state;
    /* 1 + WIRE_MAX_EXTENDED is the largest legal message with these limits. */
    const uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
    expect_error(huge, 4, &lim,
                 "message length 4294967295 exceeds the largest legal message (1048577)");
    uint8_t p[4];
    put32(p, 1 + WIRE_MAX_EXTENDED + 1);
    expect_error(p, 4, &lim, "message length 1048578 exceeds the largest legal message");
    put32(p, 1 + WIRE_MAX_EXTENDED);
    expect_more(p, 4, &lim, 4 + 1 + WIRE_MAX_EXTENDED);

    /* A torrent with 2^24 pieces has a 2 MiB bitfield: that is now the largest message. */
    const struct wire_limits many = {1u << 24, 16384, 16384};
    put32(p, 1 + (1u << 21));
    expect_more(p, 4, &many, 4 + 1 + (1u << 21));
    put32(p, 2 + (1u << 21));
    expect_error(p, 4, &many, "message length 2097154 exceeds the largest legal message (2097153)");
    /* ... but only a bitfield may be that long. */
    uint8_t q[5];
    put32(q, 1 + (1u << 21));
    q[4] = 42;
    expect_error(q, 5, &many, "message id 42 of length 2097153 exceeds the limit (1048577)");
    q[4] = WIRE_EXTENDED;
    expect_error(q, 5, &many, "extended message length 2097153, expected 2..1048577");
    q[4] = WIRE_PIECE;
    expect_error(q, 5, &many, "piece message length 2097153, expected 10..131081");
    q[4] = WIRE_BITFIELD;
    expect_more(q, 5, &many, 4 + 1 + (1u << 21));
}

static void wrong_sizes_fail_at_the_id(void **state)
{
    (void)state;
    static const struct {
        uint8_t id;
        uint32_t right;
        const char *name;
    } fixed[] = {
        {WIRE_CHOKE, 1, "choke"},
        {WIRE_UNCHOKE, 1, "unchoke"},
        {WIRE_INTERESTED, 1, "interested"},
        {WIRE_NOT_INTERESTED, 1, "not interested"},
        {WIRE_HAVE_ALL, 1, "have all"},
        {WIRE_HAVE_NONE, 1, "have none"},
        {WIRE_HAVE, 5, "have"},
        {WIRE_SUGGEST, 5, "suggest"},
        {WIRE_ALLOWED_FAST, 5, "allowed fast"},
        {WIRE_REQUEST, 13, "request"},
        {WIRE_CANCEL, 13, "cancel"},
        {WIRE_REJECT, 13, "reject"},
        {WIRE_PORT, 3, "port"},
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        uint8_t p[5];
        char want[80];
        const uint32_t wrong[] = {fixed[i].right - 1, fixed[i].right + 1, 1000};
        for (size_t j = 0; j < 3; j++) {
            if (wrong[j] == 0)
                continue;
            put32(p, wrong[j]);
            p[4] = fixed[i].id;
            snprintf(want, sizeof(want), "%s message length %u, expected %u", fixed[i].name,
                     wrong[j], fixed[i].right);
            expect_error(p, 5, &lim, want);
        }
        /* The right size waits for the body. */
        put32(p, fixed[i].right);
        p[4] = fixed[i].id;
        if (fixed[i].right > 1)
            expect_more(p, 5, &lim, 4 + fixed[i].right);
    }

    /* Bitfield: exactly 1 + ceil(piece_count / 8); 100 pieces need 13 bytes. */
    const struct wire_limits l100 = {100, 16384, 16384};
    uint8_t p[5];
    put32(p, 13);
    p[4] = WIRE_BITFIELD;
    expect_error(p, 5, &l100, "bitfield of 12 bytes, expected 13");
    put32(p, 15);
    expect_error(p, 5, &l100, "bitfield of 14 bytes, expected 13");
    put32(p, 1);
    expect_error(p, 5, &l100, "bitfield of 0 bytes, expected 13");
    put32(p, 14);
    expect_more(p, 5, &l100, 18);

    /* Piece: 1..WIRE_MAX_BLOCK bytes of block. */
    p[4] = WIRE_PIECE;
    put32(p, 9);
    expect_error(p, 5, &lim, "piece message length 9, expected 10..131081");
    put32(p, 1);
    expect_error(p, 5, &lim, "piece message length 1, expected 10..131081");
    put32(p, 9 + WIRE_MAX_BLOCK + 1);
    expect_error(p, 5, &lim, "piece message length 131082, expected 10..131081");

    /* Extended: at least the extended id. */
    p[4] = WIRE_EXTENDED;
    put32(p, 1);
    expect_error(p, 5, &lim, "extended message length 1, expected 2..1048577");
}

static void indices_and_blocks_checked(void **state)
{
    (void)state;
    uint8_t p[64];
    uint8_t idx[4];
    size_t n;

    put32(idx, 1234);
    n = make(p, 5, WIRE_HAVE, idx, 4);
    expect_error(p, n, &lim, "have for piece 1234 but the torrent has 1000 pieces");
    put32(idx, 1000);
    n = make(p, 5, WIRE_HAVE, idx, 4);
    expect_error(p, n, &lim, "have for piece 1000 but the torrent has 1000 pieces");
    n = make(p, 5, WIRE_SUGGEST, idx, 4);
    expect_error(p, n, &lim, "suggest for piece 1000 but the torrent has 1000 pieces");
    n = make(p, 5, WIRE_ALLOWED_FAST, idx, 4);
    expect_error(p, n, &lim, "allowed fast for piece 1000 but the torrent has 1000 pieces");
    put32(idx, UINT32_MAX);
    n = make(p, 5, WIRE_HAVE, idx, 4);
    expect_error(p, n, &lim, "have for piece 4294967295 but the torrent has 1000 pieces");
    /* Before the metadata (piece_count 0) any index passes, for the owner to check later,
     * a bitfield of any size is kept, and blocks are refused. */
    const struct wire_limits none = {0, 16384, 16384};
    put32(idx, 123456);
    n = make(p, 5, WIRE_HAVE, idx, 4);
    struct wire_msg m = decode_one(p, n, &none);
    assert_int_equal(m.type, WIRE_HAVE);
    assert_int_equal(m.index, 123456);
    n = make(p, 5, WIRE_ALLOWED_FAST, idx, 4);
    m = decode_one(p, n, &none);
    assert_int_equal(m.type, WIRE_ALLOWED_FAST);
    uint8_t bits[7] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    n = make(p, 1 + sizeof(bits), WIRE_BITFIELD, bits, sizeof(bits));
    m = decode_one(p, n, &none);
    assert_int_equal(m.data_len, 7);
    n = make_req(p, WIRE_REQUEST, 0, 0, 16384);
    expect_error(p, n, &none, "request for piece 0 before we have the metadata");

    static const struct {
        uint8_t id;
        const char *name;
    } req[] = {{WIRE_REQUEST, "request"}, {WIRE_CANCEL, "cancel"}, {WIRE_REJECT, "reject"}};
    char want[128];
    for (size_t i = 0; i < 3; i++) {
        const char *name = req[i].name;
        n = make_req(p, req[i].id, 1000, 0, 16384);
        snprintf(want, sizeof(want), "%s for piece 1000 but the torrent has 1000 pieces", name);
        expect_error(p, n, &lim, want);
        n = make_req(p, req[i].id, 3, 0, 0);
        snprintf(want, sizeof(want), "%s for piece 3 with block length 0, expected 1..131072",
                 name);
        expect_error(p, n, &lim, want);
        n = make_req(p, req[i].id, 3, 0, WIRE_MAX_BLOCK + 1);
        snprintf(want, sizeof(want), "%s for piece 3 with block length 131073, expected 1..131072",
                 name);
        expect_error(p, n, &lim, want);
        n = make_req(p, req[i].id, 3, 16384, 16385);
        snprintf(want, sizeof(want),
                 "%s for piece 3 block 16384+16385 runs past the piece end (32768)", name);
        expect_error(p, n, &lim, want);
        n = make_req(p, req[i].id, 999, 16384, 16384);
        snprintf(want, sizeof(want),
                 "%s for piece 999 block 16384+16384 runs past the piece end (20000)", name);
        expect_error(p, n, &lim, want);
        /* begin + length wraps around 2^32: must not pass as a small end. */
        n = make_req(p, req[i].id, 3, UINT32_MAX, 1);
        snprintf(want, sizeof(want),
                 "%s for piece 3 block 4294967295+1 runs past the piece end (32768)", name);
        expect_error(p, n, &lim, want);
        n = make_req(p, req[i].id, 3, UINT32_MAX - 16383, 16384);
        expect_error(p, n, &lim, "runs past the piece end (32768)");
        /* Exactly to the end is fine. */
        n = make_req(p, req[i].id, 3, 16384, 16384);
        struct wire_msg m = decode_one(p, n, &lim);
        assert_int_equal(m.begin + m.length, 32768);
    }
}

static void piece_header_checked_before_the_block(void **state)
{
    (void)state;
    /* 4 pieces of 32 KiB, the last 20000 bytes: piece 3 is the last one. */
    const struct wire_limits l4 = {4, 32768, 20000};
    uint8_t p[13];
    put32(p, 9 + 16384);
    p[4] = WIRE_PIECE;
    put32(p + 5, 3);
    put32(p + 9, 16384);
    /* Only the 13-byte header is in; the error comes before the 16 KiB block. */
    expect_error(p, 13, &l4, "piece 3 block 16384+16384 runs past the piece end (20000)");
    for (size_t k = 5; k < 13; k++)
        expect_more(p, k, &l4, 4 + 9 + 16384);
    put32(p + 5, 4);
    put32(p + 9, 0);
    expect_error(p, 13, &l4, "piece message for piece 4 but the torrent has 4 pieces");
    put32(p + 5, 2);
    put32(p + 9, UINT32_MAX - 100);
    expect_error(p, 13, &l4, "piece message for piece 2 block 4294967195+16384 runs past");
    put32(p + 9, 16384);
    expect_more(p, 13, &l4, 4 + 9 + 16384);
}

static void bitfield_spare_bits(void **state)
{
    (void)state;
    const struct wire_limits l10 = {10, 16384, 16384};
    uint8_t p[7] = {0, 0, 0, 3, WIRE_BITFIELD, 0xff, 0xc0};
    struct wire_msg m = decode_one(p, 7, &l10);
    assert_int_equal(m.data_len, 2);
    for (int bit = 0; bit < 6; bit++) {
        p[6] = (uint8_t)(0xc0 | 1u << bit);
        expect_error(p, 7, &l10, "bitfield has spare bits set");
    }
    /* A multiple of 8 has no spare bits: every bit is a piece. */
    const struct wire_limits l16 = {16, 16384, 16384};
    p[5] = 0xff;
    p[6] = 0xff;
    m = decode_one(p, 7, &l16);
    assert_int_equal(m.data[1], 0xff);
    /* No pieces: an empty bitfield. */
    const struct wire_limits none = {0, 16384, 16384};
    uint8_t e[5] = {0, 0, 0, 1, WIRE_BITFIELD};
    m = decode_one(e, 5, &none);
    assert_int_equal(m.type, WIRE_BITFIELD);
    assert_int_equal(m.data_len, 0);
}

static void unknown_ids_returned(void **state)
{
    (void)state;
    uint8_t p[16];
    size_t n = make(p, 4, 42, (const uint8_t *)"xyz", 3);
    struct wire_msg m = decode_one(p, n, &lim);
    assert_int_equal(m.type, 42);
    assert_int_equal(m.data_len, 3);
    assert_ptr_equal(m.data, p + 5);
    assert_memory_equal(m.data, "xyz", 3);
    /* Ids between the known ones, with no body. */
    const uint8_t ids[] = {10, 11, 12, 18, 19, 21, 255};
    for (size_t i = 0; i < sizeof(ids); i++) {
        n = make(p, 1, ids[i], NULL, 0);
        m = decode_one(p, n, &lim);
        assert_int_equal(m.type, ids[i]);
        assert_int_equal(m.data_len, 0);
    }
    /* The largest unknown message is 1 + WIRE_MAX_EXTENDED. */
    size_t big = 4 + 1 + WIRE_MAX_EXTENDED;
    uint8_t *q = calloc(1, big);
    assert_non_null(q);
    put32(q, 1 + WIRE_MAX_EXTENDED);
    q[4] = 99;
    expect_more(q, 5, &lim, big);
    expect_more(q, big - 1, &lim, big);
    m = decode_one(q, big, &lim);
    assert_int_equal(m.type, 99);
    assert_int_equal(m.data_len, WIRE_MAX_EXTENDED);
    free(q);
}

/* A stream holding one of every message. */
static void sample_stream(struct buf *b, size_t *offs, size_t *count)
{
    static uint8_t block[300];
    for (size_t i = 0; i < sizeof(block); i++)
        block[i] = (uint8_t)i;
    uint8_t bits[125];
    memset(bits, 0xf0, sizeof(bits));
    uint8_t raw[32], idx[4];
    size_t n = 0;
/* Each message starts where the stream ends so far. */
#define ADD(call)                                                                                  \
    do {                                                                                           \
        offs[n++] = b->len;                                                                        \
        assert_int_equal(call, 0);                                                                 \
    } while (0)
    ADD(wire_put_keepalive(b));
    ADD(wire_put_bitfield(b, bits, sizeof(bits)));
    ADD(wire_put_simple(b, WIRE_CHOKE));
    ADD(wire_put_simple(b, WIRE_UNCHOKE));
    ADD(wire_put_simple(b, WIRE_INTERESTED));
    ADD(wire_put_simple(b, WIRE_NOT_INTERESTED));
    ADD(wire_put_simple(b, WIRE_HAVE_ALL));
    ADD(wire_put_simple(b, WIRE_HAVE_NONE));
    ADD(wire_put_have(b, 17));
    ADD(wire_put_request(b, WIRE_REQUEST, 1, 0, 16384));
    ADD(wire_put_request(b, WIRE_CANCEL, 1, 0, 16384));
    ADD(wire_put_request(b, WIRE_REJECT, 1, 0, 16384));
    ADD(wire_put_piece_header(b, 2, 100, sizeof(block)));
    assert_int_equal(buf_append(b, block, sizeof(block)), 0);
    ADD(wire_put_port(b, 6881));
    ADD(wire_put_extended(b, 0, (const uint8_t *)"de", 2));
    put32(idx, 5);
    ADD(buf_append(b, raw, make(raw, 5, WIRE_SUGGEST, idx, 4)));
    put32(idx, 6);
    ADD(buf_append(b, raw, make(raw, 5, WIRE_ALLOWED_FAST, idx, 4)));
    ADD(buf_append(b, raw, make(raw, 3, 77, (const uint8_t *)"hi", 2)));
    ADD(wire_put_keepalive(b));
#undef ADD
    offs[n] = b->len;
    *count = n;
}

static const int stream_types[] = {WIRE_KEEPALIVE, WIRE_BITFIELD,     WIRE_CHOKE,
                                   WIRE_UNCHOKE,   WIRE_INTERESTED,   WIRE_NOT_INTERESTED,
                                   WIRE_HAVE_ALL,  WIRE_HAVE_NONE,    WIRE_HAVE,
                                   WIRE_REQUEST,   WIRE_CANCEL,       WIRE_REJECT,
                                   WIRE_PIECE,     WIRE_PORT,         WIRE_EXTENDED,
                                   WIRE_SUGGEST,   WIRE_ALLOWED_FAST, 77,
                                   WIRE_KEEPALIVE};

static void partial_input_at_every_split(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    size_t offs[32], count;
    sample_stream(&b, offs, &count);
    assert_int_equal(count, sizeof(stream_types) / sizeof(stream_types[0]));

    /* Every message, cut at every point: 0 (need more) with the right total, then 1. */
    for (size_t i = 0; i < count; i++) {
        const uint8_t *m = b.data + offs[i];
        size_t size = offs[i + 1] - offs[i];
        for (size_t k = 0; k < size; k++)
            expect_more(m, k, &lim, k < 4 ? 4 : size);
        struct wire_msg msg;
        size_t used;
        /* With the rest of the stream after it, it still uses only its own bytes. */
        rv_error_t err;
        int rc = wire_decode(m, b.len - offs[i], &lim, &msg, &used, &err);
        if (rc != 1)
            fail_msg("message %zu: %d %s", i, rc, err.msg);
        assert_int_equal(used, size);
        assert_int_equal(msg.type, stream_types[i]);
    }

    /* A receiver that gets the stream in chunks of every size sees the same messages. */
    for (size_t chunk = 1; chunk <= b.len; chunk++) {
        size_t have = 0, pos = 0, got = 0;
        while (pos < b.len) {
            struct wire_msg msg;
            size_t used = 0;
            int rc = wire_decode(b.data + pos, have - pos, &lim, &msg, &used, NULL);
            assert_true(rc >= 0);
            if (rc == 1) {
                assert_int_equal(msg.type, stream_types[got]);
                assert_int_equal(pos, offs[got]);
                got++;
                pos += used;
                continue;
            }
            assert_true(used > have - pos);
            assert_true(have < b.len);
            have = have + chunk < b.len ? have + chunk : b.len;
        }
        assert_int_equal(got, count);
    }
    buf_free(&b);
}

static void handshake_round_trip(void **state)
{
    (void)state;
    struct handshake h, back;
    for (int i = 0; i < 8; i++)
        h.reserved[i] = (uint8_t)i;
    for (int i = 0; i < 20; i++) {
        h.info_hash[i] = (uint8_t)(0xa0 + i);
        h.peer_id[i] = (uint8_t)('A' + i);
    }
    uint8_t out[HANDSHAKE_LEN + 4];
    memset(out, 0xcc, sizeof(out));
    handshake_build(out, &h);
    assert_int_equal(out[0], 19);
    assert_memory_equal(out + 1, "BitTorrent protocol", 19);
    assert_memory_equal(out + 20, h.reserved, 8);
    assert_memory_equal(out + 28, h.info_hash, 20);
    assert_memory_equal(out + 48, h.peer_id, 20);
    assert_int_equal(out[HANDSHAKE_LEN], 0xcc); /* nothing past 68 bytes */

    rv_error_t err;
    memset(&back, 0, sizeof(back));
    for (size_t k = 0; k < HANDSHAKE_LEN; k++)
        assert_int_equal(handshake_parse(out, k, &back, &err), 0);
    assert_int_equal(handshake_parse(out, HANDSHAKE_LEN, &back, &err), 1);
    assert_memory_equal(&back, &h, sizeof(h));
    /* The first message may follow in the same read. */
    memset(&back, 0, sizeof(back));
    assert_int_equal(handshake_parse(out, sizeof(out), &back, &err), 1);
    assert_memory_equal(&back, &h, sizeof(h));
}

static void handshake_wrong_protocol(void **state)
{
    (void)state;
    struct handshake h;
    memset(&h, 0, sizeof(h));
    uint8_t good[HANDSHAKE_LEN];
    handshake_build(good, &h);
    rv_error_t err;

    /* A wrong pstrlen fails on the first byte. */
    uint8_t p[HANDSHAKE_LEN];
    memcpy(p, good, sizeof(p));
    p[0] = 18;
    memset(&err, 0, sizeof(err));
    assert_int_equal(handshake_parse(p, 1, &h, &err), RV_EPROTO);
    assert_non_null(strstr(err.msg, "handshake protocol string length 18, expected 19"));
    assert_int_equal(handshake_parse(p, HANDSHAKE_LEN, &h, &err), RV_EPROTO);

    /* A wrong byte anywhere in "BitTorrent protocol" fails as soon as it arrives. */
    for (size_t i = 1; i < 20; i++) {
        memcpy(p, good, sizeof(p));
        p[i] ^= 0x20;
        for (size_t k = 0; k <= i; k++)
            assert_int_equal(handshake_parse(p, k, &h, &err), 0);
        memset(&err, 0, sizeof(err));
        assert_int_equal(handshake_parse(p, i + 1, &h, &err), RV_EPROTO);
        assert_string_equal(err.msg, "handshake protocol string is not \"BitTorrent protocol\"");
    }

    /* Someone speaking HTTP: 'G' is 71. */
    memset(&err, 0, sizeof(err));
    assert_int_equal(handshake_parse((const uint8_t *)"GET / HTTP/1.1\r\n", 16, &h, &err),
                     RV_EPROTO);
    assert_non_null(strstr(err.msg, "handshake protocol string length 71, expected 19"));
    /* NULL err is allowed. */
    assert_int_equal(handshake_parse((const uint8_t *)"\x00", 1, &h, NULL), RV_EPROTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keepalive),
        cmocka_unit_test(encodings_are_byte_exact),
        cmocka_unit_test(round_trips),
        cmocka_unit_test(encoder_errors_leave_buffer_alone),
        cmocka_unit_test(oversized_prefix_fails_at_once),
        cmocka_unit_test(wrong_sizes_fail_at_the_id),
        cmocka_unit_test(indices_and_blocks_checked),
        cmocka_unit_test(piece_header_checked_before_the_block),
        cmocka_unit_test(bitfield_spare_bits),
        cmocka_unit_test(unknown_ids_returned),
        cmocka_unit_test(partial_input_at_every_split),
        cmocka_unit_test(handshake_round_trip),
        cmocka_unit_test(handshake_wrong_protocol),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
