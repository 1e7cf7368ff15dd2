/* The peer wire codec (BEP 3, with the BEP 6 and BEP 10 message ids parsed): bytes in,
 * messages out, and messages to bytes. No sockets, no state, no allocation on decode: unit
 * tests and fuzz targets drive it directly. Every length is checked before it is trusted. */
#ifndef RV_PEER_WIRE_H
#define RV_PEER_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rivulet/error.h"
#include "util/buf.h"

enum wire_type {
    WIRE_CHOKE = 0,
    WIRE_UNCHOKE = 1,
    WIRE_INTERESTED = 2,
    WIRE_NOT_INTERESTED = 3,
    WIRE_HAVE = 4,
    WIRE_BITFIELD = 5,
    WIRE_REQUEST = 6,
    WIRE_PIECE = 7,
    WIRE_CANCEL = 8,
    WIRE_PORT = 9,          /* BEP 5 */
    WIRE_SUGGEST = 13,      /* BEP 6 */
    WIRE_HAVE_ALL = 14,
    WIRE_HAVE_NONE = 15,
    WIRE_REJECT = 16,
    WIRE_ALLOWED_FAST = 17,
    WIRE_EXTENDED = 20,     /* BEP 10 */
    WIRE_KEEPALIVE = 256    /* a zero-length message */
};

#define WIRE_MAX_BLOCK (128u * 1024)       /* largest request/piece length accepted */
#define WIRE_MAX_EXTENDED (1u << 20)        /* largest extended message accepted */

/* What the codec checks indices and lengths against. piece_count 0 means the metadata is not
 * known yet (a magnet link): bitfields of any size up to WIRE_MAX_EXTENDED and any index in
 * have, suggest and allowed fast pass, for the owner to check later; blocks are refused. */
struct wire_limits {
    uint32_t piece_count;
    uint32_t piece_length;
    uint32_t last_piece_length; /* size of piece piece_count - 1 */
};

struct wire_msg {
    int type;                   /* enum wire_type, or another id for unknown messages */
    uint32_t index;             /* HAVE, REQUEST, PIECE, CANCEL, SUGGEST, REJECT, ALLOWED_FAST */
    uint32_t begin;             /* REQUEST, PIECE, CANCEL, REJECT */
    uint32_t length;            /* REQUEST, CANCEL, REJECT: the block length; PIECE: data_len */
    uint16_t port;              /* PORT */
    uint8_t ext_id;             /* EXTENDED */
    const uint8_t *data;        /* BITFIELD bytes, PIECE block, EXTENDED payload, unknown body:
                                   points into the input */
    size_t data_len;
};

/* Decodes one message from the start of p[0..len).
 * Returns 1 and fills *msg and *used (bytes consumed) when a whole message is there; 0 when
 * more bytes are needed (*used is then the total the message needs, once the 4-byte length is
 * known, else 4); or RV_EPROTO with err saying exactly what the peer did wrong: a length prefix
 * over the largest legal message, a message of the wrong size for its type, an index at or past
 * piece_count, a block running past its piece's end or over WIRE_MAX_BLOCK, a bitfield of the
 * wrong size or with spare bits set. Unknown message ids up to the legal size are returned with
 * their type and body, for the caller to ignore. */
int wire_decode(const uint8_t *p, size_t len, const struct wire_limits *lim,
                struct wire_msg *msg, size_t *used, rv_error_t *err);

/* Encoders append one whole message to out. Each returns 0, or RV_ENOMEM / RV_ETOOBIG from
 * the buffer with out unchanged, or RV_EINVAL for a type the function does not encode or a
 * piece block outside 1..WIRE_MAX_BLOCK. wire_put_extended refuses (RV_ETOOBIG) a payload over
 * WIRE_MAX_EXTENDED - 1 bytes, which our own decoder would refuse. */
int wire_put_keepalive(struct buf *out);
int wire_put_simple(struct buf *out, enum wire_type type); /* choke .. not interested,
                                                               have all, have none */
int wire_put_have(struct buf *out, uint32_t index);
/* HAVE, SUGGEST or ALLOWED_FAST (BEP 6) */
int wire_put_index(struct buf *out, enum wire_type type, uint32_t index);
int wire_put_bitfield(struct buf *out, const uint8_t *bits, size_t nbytes);
/* REQUEST, CANCEL or REJECT */
int wire_put_request(struct buf *out, enum wire_type type, uint32_t index, uint32_t begin,
                     uint32_t length);
/* A PIECE message's 13-byte header for a block of length bytes; the block follows. */
int wire_put_piece_header(struct buf *out, uint32_t index, uint32_t begin, uint32_t length);
int wire_put_port(struct buf *out, uint16_t port);
int wire_put_extended(struct buf *out, uint8_t ext_id, const uint8_t *payload, size_t len);

/* ---- handshake (BEP 3) ---- */

#define HANDSHAKE_LEN 68

struct handshake {
    uint8_t reserved[8];
    uint8_t info_hash[20];
    uint8_t peer_id[20];
};

/* Writes the 68-byte handshake into out. */
void handshake_build(uint8_t out[HANDSHAKE_LEN], const struct handshake *h);
/* Parses a handshake from p[0..len): 1 when all 68 bytes are there, 0 when more are needed
 * (checking what has arrived so far, so a wrong protocol string fails at once), RV_EPROTO
 * with err when the protocol string is not "\x13BitTorrent protocol". */
int handshake_parse(const uint8_t *p, size_t len, struct handshake *out, rv_error_t *err);

#endif
