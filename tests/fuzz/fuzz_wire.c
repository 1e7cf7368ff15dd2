/* libFuzzer target: the peer wire codec. The first 4 bytes choose the limits (piece count from
 * 2 bytes, piece length a power of two, the last piece's length); the rest is decoded as a
 * stream of messages, checking what wire.h promises about each one, re-encoding every known
 * message byte for byte, and checking that every shorter prefix asks for more. The same bytes
 * also go to handshake_parse. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "peer/wire.h"
#include "util/bitfield.h"
#include "util/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

static uint32_t piece_size(const struct wire_limits *lim, uint32_t index)
{
    return index == lim->piece_count - 1 ? lim->last_piece_length : lim->piece_length;
}

static void check_block(const struct wire_limits *lim, const struct wire_msg *m)
{
    CHECK(m->index < lim->piece_count);
    CHECK(m->length >= 1 && m->length <= WIRE_MAX_BLOCK);
    CHECK((uint64_t)m->begin + m->length <= piece_size(lim, m->index));
}

/* Encodes m again; 0 when the type has no encoder (unknown ids). */
static int reencode(const struct wire_msg *m, struct buf *out)
{
    switch (m->type) {
    case WIRE_KEEPALIVE:
        return wire_put_keepalive(out) == 0;
    case WIRE_CHOKE:
    case WIRE_UNCHOKE:
    case WIRE_INTERESTED:
    case WIRE_NOT_INTERESTED:
    case WIRE_HAVE_ALL:
    case WIRE_HAVE_NONE:
        return wire_put_simple(out, (enum wire_type)m->type) == 0;
    case WIRE_HAVE:
        return wire_put_have(out, m->index) == 0;
    case WIRE_BITFIELD:
        return wire_put_bitfield(out, m->data, m->data_len) == 0;
    case WIRE_REQUEST:
    case WIRE_CANCEL:
    case WIRE_REJECT:
        return wire_put_request(out, (enum wire_type)m->type, m->index, m->begin, m->length) == 0;
    case WIRE_PIECE:
        return wire_put_piece_header(out, m->index, m->begin, m->length) == 0 &&
               buf_append(out, m->data, m->data_len) == 0;
    case WIRE_PORT:
        return wire_put_port(out, m->port) == 0;
    case WIRE_EXTENDED:
        return wire_put_extended(out, m->ext_id, m->data, m->data_len) == 0;
    default:
        return 0;
    }
}

/* What decoding must say about a message once it is whole. */
static void check_message(const struct wire_limits *lim, const struct wire_msg *m, const uint8_t *p,
                          size_t used, struct bitfield *bf)
{
    CHECK(used >= 4);
    if (m->data_len > 0) {
        CHECK(m->data >= p && m->data + m->data_len <= p + used);
    }
    switch (m->type) {
    case WIRE_KEEPALIVE:
        CHECK(used == 4);
        break;
    case WIRE_HAVE:
    case WIRE_SUGGEST:
    case WIRE_ALLOWED_FAST:
        CHECK(used == 9);
        /* piece_count 0: no metadata yet, any index is kept for the owner to check */
        CHECK(lim->piece_count == 0 || m->index < lim->piece_count);
        break;
    case WIRE_REQUEST:
    case WIRE_CANCEL:
    case WIRE_REJECT:
        CHECK(used == 17);
        check_block(lim, m);
        break;
    case WIRE_PIECE:
        CHECK(m->length == m->data_len && used == 13 + m->data_len);
        CHECK(m->data == p + 13);
        check_block(lim, m);
        break;
    case WIRE_BITFIELD:
        if (lim->piece_count == 0) {
            CHECK(m->data_len <= WIRE_MAX_EXTENDED);
            break;
        }
        CHECK(m->data_len == bitfield_bytes(lim->piece_count));
        CHECK(bitfield_load(bf, m->data, m->data_len) == 0);
        CHECK(bf->set <= bf->count);
        break;
    case WIRE_PORT:
        CHECK(used == 7);
        break;
    case WIRE_EXTENDED:
        CHECK(used >= 6 && m->data_len == used - 6 && m->data_len < WIRE_MAX_EXTENDED);
        break;
    case WIRE_CHOKE:
    case WIRE_UNCHOKE:
    case WIRE_INTERESTED:
    case WIRE_NOT_INTERESTED:
    case WIRE_HAVE_ALL:
    case WIRE_HAVE_NONE:
        CHECK(used == 5 && m->data_len == 0);
        break;
    default:
        CHECK(m->type >= 0 && m->type < 256);
        CHECK(m->data_len == used - 5 && m->data_len <= WIRE_MAX_EXTENDED);
        break;
    }

    /* Every known message encodes back to exactly the bytes it came from. */
    struct buf out;
    buf_init(&out, 0);
    if (reencode(m, &out)) {
        CHECK(out.len == used);
        CHECK(memcmp(out.data, p, used) == 0);
    }
    buf_free(&out);

    /* A shorter prefix never fails nor completes: it asks for the rest (4 bytes until the
     * length prefix is in). Checked for the first bytes and the last one. */
    for (size_t k = 0; k < used; k++) {
        if (k == 24 && used > 25)
            k = used - 1;
        struct wire_msg again;
        size_t need = 0;
        CHECK(wire_decode(p, k, lim, &again, &need, NULL) == 0);
        CHECK(need == (k < 4 ? 4 : used));
    }
}

static void fuzz_handshake(const uint8_t *p, size_t n)
{
    static const char protocol[] = "\023BitTorrent protocol";
    struct handshake h;
    rv_error_t err;
    int rc = handshake_parse(p, n, &h, &err);
    size_t head = n < 20 ? n : 20;
    int match = memcmp(p, protocol, head) == 0;
    if (rc == 1) {
        CHECK(n >= HANDSHAKE_LEN && match);
        uint8_t again[HANDSHAKE_LEN];
        handshake_build(again, &h);
        CHECK(memcmp(again, p, HANDSHAKE_LEN) == 0);
    } else if (rc == 0) {
        CHECK(n < HANDSHAKE_LEN && match);
    } else {
        CHECK(rc == RV_EPROTO && !match && err.msg[0] != '\0');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    /* Limits from the first 4 bytes: up to 65535 pieces of 1 B .. 8 MiB; the last piece
     * 1..piece_length bytes. */
    struct wire_limits lim;
    lim.piece_count = (uint32_t)data[0] << 8 | data[1];
    lim.piece_length = 1u << (data[2] % 24);
    lim.last_piece_length =
        lim.piece_length - (uint32_t)((uint64_t)lim.piece_length * data[3] / 256);
    const uint8_t *p = data + 4;
    size_t n = size - 4;

    struct bitfield bf;
    if (bitfield_init(&bf, lim.piece_count) != 0)
        return 0;
    size_t off = 0;
    for (;;) {
        struct wire_msg m;
        size_t used = 0;
        rv_error_t err;
        memset(&err, 0, sizeof(err));
        int rc = wire_decode(p + off, n - off, &lim, &m, &used, &err);
        if (rc == 1) {
            CHECK(used <= n - off);
            check_message(&lim, &m, p + off, used, &bf);
            off += used;
            continue;
        }
        if (rc == 0) {
            /* More is needed: never less than what is there, never over the largest legal
             * message. */
            CHECK(used > n - off);
            size_t largest = 1 + (size_t)WIRE_MAX_EXTENDED;
            if (9 + (size_t)WIRE_MAX_BLOCK > largest)
                largest = 9 + (size_t)WIRE_MAX_BLOCK;
            if (1 + bitfield_bytes(lim.piece_count) > largest)
                largest = 1 + bitfield_bytes(lim.piece_count);
            CHECK(used >= 4 && used <= 4 + largest);
        } else {
            CHECK(rc == RV_EPROTO && err.code == RV_EPROTO && err.msg[0] != '\0');
            CHECK(strchr(err.msg, '\n') == NULL);
        }
        break;
    }
    bitfield_free(&bf);

    fuzz_handshake(p, n);
    fuzz_handshake(data, size);
    return 0;
}
