/* One peer connection: the TCP socket, the handshake, message framing and decoding, the
 * outgoing queue, keep-alives and timeouts. It owns the socket and the wire-level state and
 * hands every decoded message to its owner (the torrent), which makes all swarm decisions.
 * Handles close asynchronously: after conn_close the owner's on_close runs exactly once, and
 * the conn is freed after it returns. */
#ifndef RV_PEER_CONN_H
#define RV_PEER_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "peer/mse.h"
#include "peer/wire.h"
#include "rivulet/session.h"
#include "session/limits.h"
#include "swarm/peers.h"
#include "util/bitfield.h"
#include "util/buf.h"
#include "util/rcbuf.h"

struct conn;

/* A block to receive in place: the payload of the piece message for (index, begin, length)
 * goes from the socket straight to p, not through the receive buffer. */
struct conn_block {
    uint32_t index, begin, length;
    uint8_t *p;
};

struct conn_handler {
    /* The peer's handshake arrived and matched our info-hash. Return 0 to go on, or a negative
     * code to drop the peer (e.g. a connection to ourselves, a banned peer id). */
    int (*on_handshake)(void *owner, struct conn *c, const struct handshake *h);
    /* One decoded message. Return 0, or a negative code to drop the peer (the conn then closes
     * with that code and the reason the owner put in conn_set_reason). */
    int (*on_message)(void *owner, struct conn *c, const struct wire_msg *m);
    /* Called once, when the connection is gone. rc 0 for a close we asked for. */
    void (*on_close)(void *owner, struct conn *c, int rc, const char *why);
    /* Optional: a write to the kernel finished (room to queue more uploads). */
    void (*on_sent)(void *owner, struct conn *c);
    /* Optional: receiving blocks in place. Fills out[0..max) with the blocks the peer should
     * send next, in the order they were asked for, starting with `from` (with the oldest block
     * asked for when from is NULL), each with where its payload may be written as it arrives;
     * stops at the first that may not be (not asked of this peer alone, or nowhere to put it
     * yet). started: from's payload is already arriving at from->p; it only needs to be still
     * asked of this peer and not arrived. Returns how many were filled, 0 when from may not
     * be. The memory named stays the owner's until that block's on_message (data == p), or
     * until this function no longer names it. Blocks received in place (or handed on from
     * where a wrong guess put them) reach on_message in the order sent, like every message;
     * the owner copies a block whose data is not at its home. */
    size_t (*expect)(void *owner, struct conn *c, const struct conn_block *from, bool started,
                     struct conn_block *out, size_t max);
};

struct conn_opts {
    unsigned connect_timeout_ms;   /* 0: 10000 */
    unsigned handshake_timeout_ms; /* 0: 10000 */
    unsigned keepalive_ms;         /* send one when nothing was sent this long; 0: 120000 */
    unsigned idle_timeout_ms;      /* drop when nothing was received this long; 0: 180000 */
    unsigned send_timeout_ms;      /* drop when bytes wait for the peer to read them and none
                                      were taken this long; 0: 120000 */
    const char *bind_addr;         /* numeric source address for outgoing connections (the
                                      address we listen on, so peers see one address); NULL:
                                      the system's choice */
    rv_session_stats_t *stats;     /* counters to add to (bytes, reads, writes), or NULL */
    /* Message Stream Encryption. Outgoing: mse_offer is the crypto_provide of an MSE
     * handshake (MSE_PLAIN | MSE_RC4), 0 for the plaintext BitTorrent handshake. Incoming: a
     * first byte that does not start "\x13BitTorrent protocol" is taken for MSE, accepted with
     * the methods in mse_accept (0: refused) and mse_prefer chosen when both are offered;
     * plain_refused refuses plaintext BitTorrent handshakes. mse_find_skey names the torrent
     * an incoming MSE peer asks for (see mse.h). */
    uint32_t mse_offer;
    uint32_t mse_accept, mse_prefer;
    bool plain_refused;
    mse_find_skey_cb mse_find_skey;
    void *mse_ud;
};

/* CONN_MSE: the encryption handshake, before the BitTorrent one (CONN_HANDSHAKE). */
enum conn_state { CONN_CONNECTING, CONN_MSE, CONN_HANDSHAKE, CONN_ACTIVE, CONN_CLOSING };

/* A block to send from memory shared with its owner (a cached piece): it goes out after the
 * first `at` bytes queued in wbuf, without being copied into it. */
struct conn_ref {
    size_t at;
    const uint8_t *p;
    size_t len;
    struct rcbuf *rb;
};

struct conn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_timer_t timer;
    enum conn_state state;
    struct peer_addr addr;
    uint32_t id;                 /* unique per session, never reused */
    const struct conn_handler *handler;
    void *owner;
    void *data;                  /* the owner's per-peer state */
    struct wire_limits limits;
    struct handshake ours;
    struct handshake theirs;
    struct buf rbuf;             /* bytes received, not yet decoded */
    struct buf wbuf;             /* messages queued, not yet handed to the kernel */
    struct conn_ref *refs;       /* blocks queued by reference (conn_put_ref), in order */
    size_t nrefs, refs_cap, ref_bytes;
    size_t writing;              /* bytes handed to uv_write and not yet done */
    uint64_t send_progress_ms;   /* last time the kernel took bytes (or writing began) */
    size_t send_queued;          /* libuv's write queue at the last tick */
    uint64_t last_recv_ms, last_send_ms, connected_ms;
    uint64_t bytes_in, bytes_out;     /* wire bytes, all messages */
    struct conn_opts opts;
    int close_rc;
    char close_reason[160];
    bool handshake_sent;
    bool incoming;
    bool read_paused;   /* stopped reading until the rate limit grants more */
    bool sniffed;       /* incoming: the first bytes told plaintext from MSE */
    bool rc4;           /* MSE selected RC4: every byte in and out goes through mse */
    struct mse *mse;    /* during the MSE handshake, and after it while rc4 */
    /* download rate limit: reads are paid for from rchain before they happen */
    struct limit_sched *rsched;
    struct limit_chain rchain;
    struct limit_waiter rwait;
    size_t rcredit;     /* bytes granted and not yet read */
    /* Receiving in place (handler->expect): the piece message whose header was taken and
     * whose payload is arriving at cur.p, cur_got bytes of it so far. */
    struct conn_block cur;
    uint32_t cur_got;
    bool has_cur;
    bool read_self; /* on_alloc gave libuv no buffer: on_read reads (read_in_place) */
};

/* Starts an outgoing connection to addr; the handshake (ours) is sent once connected. */
int conn_connect(uv_loop_t *loop, const struct peer_addr *addr, const struct handshake *ours,
                 const struct wire_limits *limits, const struct conn_opts *opts,
                 const struct conn_handler *handler, void *owner, uint32_t id,
                 struct conn **out);

/* Accepts a connection waiting on server. The peer speaks first: its handshake goes to
 * handler->on_handshake (with owner), which must call conn_attach to hand the connection to the
 * torrent the info-hash names (or return an error to refuse it). */
int conn_accept(uv_loop_t *loop, uv_stream_t *server, const struct conn_opts *opts,
                const struct conn_handler *handler, void *owner, uint32_t id, struct conn **out);
/* For an incoming connection, inside on_handshake: from now on the connection belongs to owner
 * with handler; ours is queued at once, ahead of anything the new owner sends. */
void conn_attach(struct conn *c, const struct handshake *ours, const struct wire_limits *limits,
                 const struct conn_handler *handler, void *owner);

/* Charges what this connection reads to chain (its torrent's and the session's download
 * buckets), waiting in sched when they are empty. Both must outlive the connection. */
void conn_set_read_limit(struct conn *c, struct limit_sched *sched,
                         const struct limit_chain *chain);

/* Queues bytes (whole messages) for sending; conn_flush hands them to the kernel. Queued
 * writes are flushed automatically after each batch of received data. */
struct buf *conn_out(struct conn *c);
/* Queues len bytes of rb from off, after what conn_out holds: sent from rb itself (the
 * connection holds a reference until the kernel has them), or copied when the stream is
 * encrypted. RV_ENOMEM when out of memory. */
int conn_put_ref(struct conn *c, struct rcbuf *rb, size_t off, size_t len);
void conn_flush(struct conn *c);
/* The most bytes queued or in flight toward one peer: a peer that lets more pile up (one that
 * never reads) is dropped at the next flush, so it cannot make our memory grow. */
#define CONN_SEND_MAX (4u << 20)
/* Bytes queued or in flight toward the peer (for back-pressure). */
size_t conn_send_backlog(const struct conn *c);

/* The kernel's smoothed round-trip time to the peer in microseconds (TCP_INFO), or 0 when it
 * is not known (not connected yet, or no TCP_INFO on this system). */
unsigned conn_rtt_us(struct conn *c);

/* Sets the reason reported by on_close when a handler returns an error. */
void conn_set_reason(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Closes (idempotent); on_close follows asynchronously with rc and the reason given. */
void conn_close(struct conn *c, int rc, const char *why);

#endif
