/* The peer wire codec (BEP 3; BEP 5 port; BEP 6 fast extension; BEP 10 extended). Pure byte
 * code: every length is checked against its type before the body is waited for, so a peer can
 * make us buffer at most the largest legal message (btpd's net.c does the same). */
#include "peer/wire.h"

#include <string.h>

#include "util/be.h"
#include "util/bitfield.h"
#include "util/err.h"

#define PREFIX 4u       /* BEP 3: each message starts with a 4-byte big-endian length */
#define PIECE_HEAD 9u   /* id, index, begin */
#define REQUEST_LEN 13u /* id, index, begin, length */
#define INDEX_LEN 5u    /* id, index: have, suggest, allowed fast */
#define PORT_LEN 3u     /* BEP 5: id, 2-byte port */
#define EXTENDED_MIN 2u /* BEP 10: id, extended id, then the payload */

/* BEP 3: pstrlen (19, octal 023) then pstr */
static const char protocol[] = "\023BitTorrent protocol";
#define PROTOCOL_LEN 20u

static const char *type_name(unsigned id)
{
    switch (id) {
    case WIRE_CHOKE:
        return "choke";
    case WIRE_UNCHOKE:
        return "unchoke";
    case WIRE_INTERESTED:
        return "interested";
    case WIRE_NOT_INTERESTED:
        return "not interested";
    case WIRE_HAVE:
        return "have";
    case WIRE_BITFIELD:
        return "bitfield";
    case WIRE_REQUEST:
        return "request";
    case WIRE_PIECE:
        return "piece";
    case WIRE_CANCEL:
        return "cancel";
    case WIRE_PORT:
        return "port";
    case WIRE_SUGGEST:
        return "suggest";
    case WIRE_HAVE_ALL:
        return "have all";
    case WIRE_HAVE_NONE:
        return "have none";
    case WIRE_REJECT:
        return "reject";
    case WIRE_ALLOWED_FAST:
        return "allowed fast";
    case WIRE_EXTENDED:
        return "extended";
    default:
        return "unknown";
    }
}

/* The largest length prefix any message may carry with these limits. */
static size_t max_message(const struct wire_limits *lim)
{
    size_t m = PIECE_HEAD + (size_t)WIRE_MAX_BLOCK;
    size_t bf = 1 + bitfield_bytes(lim->piece_count);
    if (bf > m)
        m = bf;
    if (1 + (size_t)WIRE_MAX_EXTENDED > m)
        m = 1 + (size_t)WIRE_MAX_EXTENDED;
    return m;
}

static uint32_t piece_size(const struct wire_limits *lim, uint32_t index)
{
    return index == lim->piece_count - 1 ? lim->last_piece_length : lim->piece_length;
}

/* Checks a message's length prefix against what its id allows; called as soon as the id byte
 * has arrived, so a wrong size fails before the body is buffered. */
static int check_length(unsigned id, uint32_t mlen, const struct wire_limits *lim, rv_error_t *err)
{
    uint32_t want;
    switch (id) {
    case WIRE_CHOKE:
    case WIRE_UNCHOKE:
    case WIRE_INTERESTED:
    case WIRE_NOT_INTERESTED:
    case WIRE_HAVE_ALL:
    case WIRE_HAVE_NONE:
        want = 1;
        break;
    case WIRE_HAVE:
    case WIRE_SUGGEST:
    case WIRE_ALLOWED_FAST:
        want = INDEX_LEN;
        break;
    case WIRE_REQUEST:
    case WIRE_CANCEL:
    case WIRE_REJECT:
        want = REQUEST_LEN;
        break;
    case WIRE_PORT:
        want = PORT_LEN;
        break;
    case WIRE_BITFIELD: {
        /* Before the metadata (piece_count 0) any size up to the cap is kept for later. */
        if (lim->piece_count == 0) {
            if (mlen - 1 > WIRE_MAX_EXTENDED)
                return err_set(err, RV_EPROTO, "bitfield of %u bytes exceeds the limit (%u)",
                               mlen - 1, WIRE_MAX_EXTENDED);
            return 0;
        }
        /* BEP 3: one bit per piece, rounded up to whole bytes, nothing more or less. */
        size_t bytes = bitfield_bytes(lim->piece_count);
        if ((size_t)mlen - 1 != bytes)
            return err_set(err, RV_EPROTO, "bitfield of %u bytes, expected %zu", mlen - 1, bytes);
        return 0;
    }
    case WIRE_PIECE:
        if (mlen <= PIECE_HEAD || mlen - PIECE_HEAD > WIRE_MAX_BLOCK)
            return err_set(err, RV_EPROTO, "piece message length %u, expected %u..%u", mlen,
                           PIECE_HEAD + 1, PIECE_HEAD + WIRE_MAX_BLOCK);
        return 0;
    case WIRE_EXTENDED:
        if (mlen < EXTENDED_MIN || mlen - 1 > WIRE_MAX_EXTENDED)
            return err_set(err, RV_EPROTO, "extended message length %u, expected %u..%u", mlen,
                           EXTENDED_MIN, 1 + WIRE_MAX_EXTENDED);
        return 0;
    default:
        /* Unknown ids get the extended cap: enough for any extension we might ignore. */
        if (mlen - 1 > WIRE_MAX_EXTENDED)
            return err_set(err, RV_EPROTO, "message id %u of length %u exceeds the limit (%u)", id,
                           mlen, 1 + WIRE_MAX_EXTENDED);
        return 0;
    }
    if (mlen != want)
        return err_set(err, RV_EPROTO, "%s message length %u, expected %u", type_name(id), mlen,
                       want);
    return 0;
}

/* A block (piece, request, cancel, reject) must lie inside an existing piece. */
static int check_block(const char *what, uint32_t index, uint32_t begin, uint32_t length,
                       const struct wire_limits *lim, rv_error_t *err)
{
    if (lim->piece_count == 0)
        return err_set(err, RV_EPROTO, "%s for piece %u before we have the metadata", what, index);
    if (index >= lim->piece_count)
        return err_set(err, RV_EPROTO, "%s for piece %u but the torrent has %u pieces", what, index,
                       lim->piece_count);
    if (length == 0 || length > WIRE_MAX_BLOCK)
        return err_set(err, RV_EPROTO, "%s for piece %u with block length %u, expected 1..%u", what,
                       index, length, WIRE_MAX_BLOCK);
    /* Overflow-safe: begin and length are the peer's, 0xffffffff + 1 must not wrap to 0. */
    uint32_t end, size = piece_size(lim, index);
    if (__builtin_add_overflow(begin, length, &end) || end > size)
        return err_set(err, RV_EPROTO, "%s for piece %u block %u+%u runs past the piece end (%u)",
                       what, index, begin, length, size);
    return 0;
}

static int check_index(unsigned id, uint32_t index, const struct wire_limits *lim, rv_error_t *err)
{
    if (lim->piece_count == 0)
        return 0; /* no metadata yet: the owner checks it once the piece count is known */
    if (index >= lim->piece_count)
        return err_set(err, RV_EPROTO, "%s for piece %u but the torrent has %u pieces",
                       type_name(id), index, lim->piece_count);
    return 0;
}

int wire_decode(const uint8_t *p, size_t len, const struct wire_limits *lim, struct wire_msg *msg,
                size_t *used, rv_error_t *err)
{
    if (len < PREFIX) {
        *used = PREFIX;
        return 0;
    }
    uint32_t mlen = be_get32(p);
    if (mlen == 0) {
        /* BEP 3: a zero length prefix is a keep-alive. */
        memset(msg, 0, sizeof(*msg));
        msg->type = WIRE_KEEPALIVE;
        *used = PREFIX;
        return 1;
    }
    /* Fail on the prefix alone, before the body arrives, so no peer can make us buffer 4 GiB. */
    size_t max = max_message(lim);
    if (mlen > max)
        return err_set(err, RV_EPROTO, "message length %u exceeds the largest legal message (%zu)",
                       mlen, max);
    size_t total = PREFIX + (size_t)mlen;
    if (len < PREFIX + 1) {
        *used = total;
        return 0;
    }
    unsigned id = p[PREFIX];
    const uint8_t *b = p + PREFIX + 1; /* the body after the id */
    int rc = check_length(id, mlen, lim, err);
    if (rc < 0)
        return rc;
    if (id == WIRE_PIECE && len >= PREFIX + PIECE_HEAD) {
        /* Judge a piece by its header before waiting for up to WIRE_MAX_BLOCK more bytes. */
        rc = check_block("piece message", be_get32(b), be_get32(b + 4), mlen - PIECE_HEAD, lim, err);
        if (rc < 0)
            return rc;
    }
    if (len < total) {
        *used = total;
        return 0;
    }

    memset(msg, 0, sizeof(*msg));
    msg->type = (int)id;
    switch (id) {
    case WIRE_CHOKE:
    case WIRE_UNCHOKE:
    case WIRE_INTERESTED:
    case WIRE_NOT_INTERESTED:
    case WIRE_HAVE_ALL:
    case WIRE_HAVE_NONE:
        break;
    case WIRE_HAVE:
    case WIRE_SUGGEST:
    case WIRE_ALLOWED_FAST:
        msg->index = be_get32(b);
        rc = check_index(id, msg->index, lim, err);
        break;
    case WIRE_REQUEST:
    case WIRE_CANCEL:
    case WIRE_REJECT:
        msg->index = be_get32(b);
        msg->begin = be_get32(b + 4);
        msg->length = be_get32(b + 8);
        rc = check_block(type_name(id), msg->index, msg->begin, msg->length, lim, err);
        break;
    case WIRE_PIECE:
        /* The block was checked above, when the header arrived. */
        msg->index = be_get32(b);
        msg->begin = be_get32(b + 4);
        msg->length = mlen - PIECE_HEAD;
        msg->data = b + 8;
        msg->data_len = msg->length;
        break;
    case WIRE_BITFIELD: {
        msg->data = b;
        msg->data_len = mlen - 1;
        /* BEP 3: "Spare bits at the end are set to zero." */
        uint32_t tail = lim->piece_count % 8;
        if (tail != 0 && msg->data_len > 0 && (b[msg->data_len - 1] & (0xffu >> tail)))
            rc =
                err_set(err, RV_EPROTO, "bitfield has spare bits set (last byte 0x%02x, %u pieces)",
                        (unsigned)b[msg->data_len - 1], lim->piece_count);
        break;
    }
    case WIRE_PORT:
        msg->port = (uint16_t)(b[0] << 8 | b[1]);
        break;
    case WIRE_EXTENDED:
        msg->ext_id = b[0];
        msg->data = b + 1;
        msg->data_len = mlen - EXTENDED_MIN;
        break;
    default:
        msg->data = b;
        msg->data_len = mlen - 1;
        break;
    }
    if (rc < 0)
        return rc;
    *used = total;
    return 1;
}

/* Appends a message of at most 17 bytes (prefix, id, up to three 32-bit fields). */
static int put_small(struct buf *out, enum wire_type id, const uint32_t *fields, size_t n)
{
    uint8_t m[PREFIX + REQUEST_LEN];
    uint32_t mlen = 1 + 4 * (uint32_t)n;
    be_put32(m, mlen);
    m[PREFIX] = (uint8_t)id;
    for (size_t i = 0; i < n; i++)
        be_put32(m + PREFIX + 1 + 4 * i, fields[i]);
    return buf_append(out, m, PREFIX + mlen);
}

int wire_put_keepalive(struct buf *out)
{
    static const uint8_t zero[PREFIX];
    return buf_append(out, zero, sizeof(zero));
}

int wire_put_simple(struct buf *out, enum wire_type type)
{
    switch (type) {
    case WIRE_CHOKE:
    case WIRE_UNCHOKE:
    case WIRE_INTERESTED:
    case WIRE_NOT_INTERESTED:
    case WIRE_HAVE_ALL:
    case WIRE_HAVE_NONE:
        return put_small(out, type, NULL, 0);
    default:
        return RV_EINVAL;
    }
}

int wire_put_have(struct buf *out, uint32_t index)
{
    return put_small(out, WIRE_HAVE, &index, 1);
}

int wire_put_index(struct buf *out, enum wire_type type, uint32_t index)
{
    if (type != WIRE_HAVE && type != WIRE_SUGGEST && type != WIRE_ALLOWED_FAST)
        return RV_EINVAL;
    return put_small(out, type, &index, 1);
}

int wire_put_bitfield(struct buf *out, const uint8_t *bits, size_t nbytes)
{
    if (nbytes > UINT32_MAX - 1)
        return RV_ETOOBIG;
    /* Reserve the whole message first, so a failure leaves out as it was. */
    int rc = buf_reserve(out, PREFIX + 1 + nbytes);
    if (rc != 0)
        return rc;
    uint8_t head[PREFIX + 1];
    be_put32(head, (uint32_t)nbytes + 1);
    head[PREFIX] = WIRE_BITFIELD;
    buf_append(out, head, sizeof(head));
    buf_append(out, bits, nbytes);
    return 0;
}

int wire_put_request(struct buf *out, enum wire_type type, uint32_t index, uint32_t begin,
                     uint32_t length)
{
    if (type != WIRE_REQUEST && type != WIRE_CANCEL && type != WIRE_REJECT)
        return RV_EINVAL;
    uint32_t f[3] = {index, begin, length};
    return put_small(out, type, f, 3);
}

int wire_put_piece_header(struct buf *out, uint32_t index, uint32_t begin, uint32_t length)
{
    /* A block the decoder on the other side would refuse (ours would) is a bug of ours. */
    if (length == 0 || length > WIRE_MAX_BLOCK)
        return RV_EINVAL;
    uint8_t m[PREFIX + PIECE_HEAD];
    be_put32(m, PIECE_HEAD + length);
    m[PREFIX] = WIRE_PIECE;
    be_put32(m + PREFIX + 1, index);
    be_put32(m + PREFIX + 5, begin);
    return buf_append(out, m, sizeof(m));
}

int wire_put_port(struct buf *out, uint16_t port)
{
    uint8_t m[PREFIX + PORT_LEN];
    be_put32(m, PORT_LEN);
    m[PREFIX] = WIRE_PORT;
    m[PREFIX + 1] = (uint8_t)(port >> 8);
    m[PREFIX + 2] = (uint8_t)port;
    return buf_append(out, m, sizeof(m));
}

int wire_put_extended(struct buf *out, uint8_t ext_id, const uint8_t *payload, size_t len)
{
    /* Never send what our own decoder would refuse: ext_id and payload within the cap. */
    if (len > WIRE_MAX_EXTENDED - 1)
        return RV_ETOOBIG;
    int rc = buf_reserve(out, PREFIX + EXTENDED_MIN + len);
    if (rc != 0)
        return rc;
    uint8_t head[PREFIX + EXTENDED_MIN];
    be_put32(head, EXTENDED_MIN + (uint32_t)len);
    head[PREFIX] = WIRE_EXTENDED;
    head[PREFIX + 1] = ext_id;
    buf_append(out, head, sizeof(head));
    buf_append(out, payload, len);
    return 0;
}

void handshake_build(uint8_t out[HANDSHAKE_LEN], const struct handshake *h)
{
    memcpy(out, protocol, PROTOCOL_LEN);
    memcpy(out + PROTOCOL_LEN, h->reserved, 8);
    memcpy(out + PROTOCOL_LEN + 8, h->info_hash, 20);
    memcpy(out + PROTOCOL_LEN + 28, h->peer_id, 20);
}

int handshake_parse(const uint8_t *p, size_t len, struct handshake *out, rv_error_t *err)
{
    /* Check what has arrived so far, so a peer speaking another protocol (HTTP, an encrypted
     * MSE handshake) is refused at its first byte rather than after 68. */
    if (len >= 1 && p[0] != PROTOCOL_LEN - 1)
        return err_set(err, RV_EPROTO,
                       "handshake protocol string length %u, expected %u (not a plain "
                       "BitTorrent handshake: an encrypted one, or another protocol)",
                       (unsigned)p[0], PROTOCOL_LEN - 1);
    size_t n = len < PROTOCOL_LEN ? len : PROTOCOL_LEN;
    if (n > 1 && memcmp(p + 1, protocol + 1, n - 1) != 0)
        return err_set(err, RV_EPROTO, "handshake protocol string is not \"BitTorrent protocol\"");
    if (len < HANDSHAKE_LEN)
        return 0;
    memcpy(out->reserved, p + PROTOCOL_LEN, 8);
    memcpy(out->info_hash, p + PROTOCOL_LEN + 8, 20);
    memcpy(out->peer_id, p + PROTOCOL_LEN + 28, 20);
    return 1;
}
