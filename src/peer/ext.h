/* Extension messages carried in BEP 10's extended message (id 20): the extended handshake,
 * ut_metadata (BEP 9), ut_pex (BEP 11), upload_only (BEP 21) and lt_donthave (BEP 54), plus
 * BEP 6's allowed-fast set. Pure codecs: bytes in, values out; every length and type is checked
 * before it is trusted, and nothing here touches a socket. */
#ifndef RV_PEER_EXT_H
#define RV_PEER_EXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rivulet/error.h"
#include "swarm/peers.h"
#include "util/buf.h"

/* Reserved bits of the handshake (BEP 3 numbering from the left: byte 5 0x10 is BEP 10,
 * byte 7 0x04 is BEP 6, byte 7 0x01 is BEP 5). */
#define EXT_RESERVED_BYTE 5
#define EXT_RESERVED_BIT 0x10
#define FAST_RESERVED_BYTE 7
#define FAST_RESERVED_BIT 0x04
#define DHT_RESERVED_BYTE 7
#define DHT_RESERVED_BIT 0x01

/* The extensions we know. Our own message ids (what peers must use toward us) are the enum
 * value + 1; 0 is the extended handshake itself. */
enum ext_kind { EXT_UT_METADATA, EXT_UT_PEX, EXT_LT_DONTHAVE, EXT_UPLOAD_ONLY, EXT_KINDS };

#define EXT_HANDSHAKE_ID 0
#define EXT_OUR_ID(kind) ((uint8_t)((kind) + 1))

extern const char *const ext_names[EXT_KINDS];

#define EXT_MAX_METADATA (8u << 20) /* largest info dictionary we fetch or accept (libtorrent's
                                       default cap is 3 MiB; real torrents stay far below) */
#define EXT_METADATA_BLOCK 16384u   /* BEP 9 */
#define PEX_MAX 50                  /* peers added or dropped per PEX message, each way
                                       (Transmission's and libtorrent's cap) */

/* A peer's extended handshake: what it told us. */
struct ext_handshake {
    uint8_t ids[EXT_KINDS];  /* the peer's message id for each extension; 0: not supported */
    char client[64];         /* 'v', printable characters only, "" when absent */
    uint16_t port;           /* 'p': its listen port, 0 when absent */
    uint32_t reqq;           /* 'reqq': requests it queues, 0 when absent */
    bool has_yourip;
    struct peer_addr yourip; /* 'yourip': our address as the peer sees it (port 0) */
    int64_t metadata_size;   /* 'metadata_size', -1 when absent */
    bool upload_only;        /* 'upload_only' non-zero (BEP 21) */
};

/* What we say in ours. */
struct ext_handshake_out {
    bool pex;                      /* offer ut_pex (never for private torrents, BEP 27) */
    uint16_t port;                 /* 0: none */
    uint32_t reqq;
    const struct peer_addr *yourip; /* the peer's address, or NULL */
    int64_t metadata_size;         /* -1: we have no metadata yet */
    bool upload_only;
};

/* Parses the payload of an extended handshake (after the extended id). Unknown keys and
 * extensions are ignored; a payload that is not a bencoded dictionary, or whose 'm' is not
 * a dictionary, is RV_EPROTO with err saying so. Ids over 255 or negative are ignored. */
int ext_handshake_parse(const uint8_t *p, size_t len, struct ext_handshake *out,
                        rv_error_t *err);
/* Appends a whole extended-handshake wire message to out. */
int ext_handshake_put(struct buf *out, const struct ext_handshake_out *h);

/* ut_metadata (BEP 9). */
enum { UT_METADATA_REQUEST = 0, UT_METADATA_DATA = 1, UT_METADATA_REJECT = 2 };

struct ut_metadata_msg {
    int type;               /* UT_METADATA_* (others are RV_EPROTO) */
    uint32_t piece;
    int64_t total_size;     /* DATA: 'total_size', -1 when absent */
    const uint8_t *data;    /* DATA: the bytes after the dictionary (points into the input) */
    size_t data_len;
};

int ut_metadata_parse(const uint8_t *p, size_t len, struct ut_metadata_msg *out,
                      rv_error_t *err);
/* Appends a whole wire message to out: id is the peer's ut_metadata id; data and total are
 * used by DATA only. */
int ut_metadata_put(struct buf *out, uint8_t id, int type, uint32_t piece, size_t total,
                    const uint8_t *data, size_t len);

/* ut_pex (BEP 11). Flags: 0x01 prefers encryption, 0x02 seed or upload only, 0x04 uTP,
 * 0x08 holepunch, 0x10 reachable (we connected out to it). */
#define PEX_FLAG_SEED 0x02
#define PEX_FLAG_REACHABLE 0x10

struct pex_peer {
    struct peer_addr addr;
    uint8_t flags;
};

struct pex_msg {
    struct pex_peer added[PEX_MAX];
    size_t nadded;
    struct peer_addr dropped[PEX_MAX];
    size_t ndropped;
    size_t ignored; /* entries over the cap, not taken */
};

/* Parses a ut_pex payload: 'added'/'added.f', 'added6'/'added6.f', 'dropped', 'dropped6'.
 * Compact lists whose length is not a multiple of 6 (18 for IPv6) are RV_EPROTO; at most
 * PEX_MAX of each kind are taken (the rest counted in ignored). */
int pex_parse(const uint8_t *p, size_t len, struct pex_msg *out, rv_error_t *err);
/* Appends a whole ut_pex wire message (id: the peer's) with both families' lists. */
int pex_put(struct buf *out, uint8_t id, const struct pex_peer *added, size_t nadded,
            const struct peer_addr *dropped, size_t ndropped);

/* upload_only (BEP 21 as libtorrent sends it): a one-byte payload. */
int upload_only_put(struct buf *out, uint8_t id, bool upload_only);
/* lt_donthave (BEP 54): a 4-byte piece index. */
int donthave_put(struct buf *out, uint8_t id, uint32_t piece);
/* Reads a 4-byte big-endian index payload; RV_EPROTO for another length. */
int ext_get_index(const uint8_t *p, size_t len, uint32_t *index, rv_error_t *err);

/* BEP 6's canonical allowed-fast set for a peer at IPv4 address ip (network order): up to k
 * distinct piece indices of piece_count, in the order the algorithm yields them. Returns how
 * many were written to out (min(k, piece_count)). */
size_t fast_allowed_set(const uint8_t ip[4], const uint8_t info_hash[20], uint32_t piece_count,
                        size_t k, uint32_t *out);

#endif
