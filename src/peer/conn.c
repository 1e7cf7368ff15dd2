/* Connection state machine: CONNECTING -> HANDSHAKE -> ACTIVE -> CLOSING, every transition
 * here. Received bytes go into rbuf and are decoded in place (blocks, where the owner knows
 * their place, straight into it); queued messages leave in one uv_write per flush. */
#include "peer/conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "util/be.h"

#define RBUF_MAX (512u * 1024)
#define READ_CHUNK (64u * 1024)
#define TICK_MS 5000
#define PIECE_HEADER 13u   /* length prefix, id, index, begin */
#define PLAN_MAX 32u       /* blocks one in-place read may fill (our pipe to one peer) */
#define IN_PLACE_ROUNDS 32 /* reads per wake-up, as libuv's own loop does */
/* The most bytes of headers and payloads one in-place read plans for: a wrong guess sends
 * them back to rbuf, after the READ_CHUNK the read may have put there. */
#define PLAN_BYTES (RBUF_MAX - READ_CHUNK)

struct write_req {
    uv_write_t req;
    struct conn *c;
    uint8_t *data;        /* wbuf's bytes, taken by the flush */
    size_t len;           /* all bytes of the write: data's and the referenced blocks' */
    struct rcbuf **refs;  /* the blocks' buffers, released when the write is done */
    size_t nrefs;
};

static void write_req_free(struct write_req *w)
{
    for (size_t i = 0; i < w->nrefs; i++)
        rcbuf_unref(w->refs[i]);
    free(w->refs);
    free(w->data);
    free(w);
}

static void drop_refs(struct conn *c)
{
    for (size_t i = 0; i < c->nrefs; i++)
        rcbuf_unref(c->refs[i].rb);
    free(c->refs);
    c->refs = NULL;
    c->nrefs = c->refs_cap = c->ref_bytes = 0;
}

static void close_handles(struct conn *c);

static void mse_drop(struct conn *c)
{
    if (c->mse != NULL) {
        mse_free(c->mse);
        free(c->mse);
        c->mse = NULL;
    }
    c->rc4 = false;
}

static uint64_t now_ms(const struct conn *c)
{
    return uv_now(c->tcp.loop);
}

void conn_set_reason(struct conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->close_reason, sizeof(c->close_reason), fmt, ap);
    va_end(ap);
}

void conn_close(struct conn *c, int rc, const char *why)
{
    if (c->state == CONN_CLOSING)
        return;
    c->state = CONN_CLOSING;
    if (c->rsched != NULL) {
        /* Bytes granted and never read go back to the buckets for the others. */
        limit_cancel(c->rsched, &c->rwait);
        limit_refund(&c->rchain, c->rcredit, now_ms(c));
        c->rcredit = 0;
    }
    c->close_rc = rc;
    /* why may be close_reason itself (a reason the owner set): copying it onto itself with
     * snprintf is undefined and glibc leaves it empty. */
    if (why != NULL && why != c->close_reason)
        snprintf(c->close_reason, sizeof(c->close_reason), "%s", why);
    close_handles(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    /* Both the timer and the socket report here; the second one frees. */
    if (h == (uv_handle_t *)&c->timer) {
        c->timer.data = NULL;
    } else {
        c->tcp.data = NULL;
    }
    if (c->timer.data != NULL || c->tcp.data != NULL)
        return;
    c->handler->on_close(c->owner, c, c->close_rc, c->close_reason);
    mse_drop(c);
    buf_free(&c->rbuf);
    buf_free(&c->wbuf);
    drop_refs(c);
    free(c);
}

static void close_handles(struct conn *c)
{
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void fail(struct conn *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(struct conn *c, int rc, const char *fmt, ...)
{
    char why[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    conn_close(c, rc, why);
}

struct buf *conn_out(struct conn *c)
{
    return &c->wbuf;
}

/* Blocks shorter than this are copied: a reference costs an iovec and a count. */
#define REF_MIN 4096

int conn_put_ref(struct conn *c, struct rcbuf *rb, size_t off, size_t len)
{
    if (len < REF_MIN || c->rc4) /* RC4 encrypts wbuf in place at the flush */
        return buf_append(&c->wbuf, rb->data + off, len);
    if (c->nrefs == c->refs_cap) {
        size_t cap = c->refs_cap ? c->refs_cap * 2 : 16;
        struct conn_ref *r = realloc(c->refs, cap * sizeof(*r));
        if (r == NULL)
            return RV_ENOMEM;
        c->refs = r;
        c->refs_cap = cap;
    }
    c->refs[c->nrefs++] = (struct conn_ref){c->wbuf.len, rb->data + off, len, rcbuf_ref(rb)};
    c->ref_bytes += len;
    return 0;
}

size_t conn_send_backlog(const struct conn *c)
{
    return c->wbuf.len + c->ref_bytes + c->writing;
}

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct conn *c = w->c;
    c->writing -= w->len;
    if (status == 0)
        c->send_progress_ms = now_ms(c);
    write_req_free(w);
    if (status < 0 && status != UV_ECANCELED && c->state != CONN_CLOSING)
        fail(c, RV_ENET, "send failed: %s", uv_strerror(status));
    else if (status == 0 && c->state == CONN_ACTIVE && c->handler->on_sent != NULL)
        c->handler->on_sent(c->owner, c);
}

void conn_flush(struct conn *c)
{
    if ((c->wbuf.len == 0 && c->nrefs == 0) || c->state == CONN_CLOSING ||
        c->state == CONN_CONNECTING)
        return;
    if (conn_send_backlog(c) > CONN_SEND_MAX) {
        fail(c, RV_EPROTO, "does not read what we send (%zu bytes waiting)",
             conn_send_backlog(c));
        return;
    }
    struct write_req *w = calloc(1, sizeof(*w));
    uv_buf_t one, *bufs = &one;
    size_t nbufs = 1;
    if (w != NULL && c->nrefs > 0) {
        w->refs = malloc(c->nrefs * sizeof(*w->refs));
        bufs = malloc((2 * c->nrefs + 1) * sizeof(*bufs));
    }
    if (w == NULL || (c->nrefs > 0 && (w->refs == NULL || bufs == NULL))) {
        if (w != NULL)
            free(w->refs);
        if (bufs != &one)
            free(bufs);
        free(w);
        fail(c, RV_ENOMEM, "out of memory");
        return;
    }
    w->c = c;
    size_t wlen;
    w->len = c->wbuf.len + c->ref_bytes;
    w->data = buf_steal(&c->wbuf, &wlen);
    /* Once RC4 is on, every byte is encrypted exactly once, here, in the order it leaves
     * (what uv_write already holds was encrypted by an earlier flush). No block is queued
     * by reference then (conn_put_ref copies). */
    if (c->rc4)
        mse_encrypt(c->mse, w->data, wlen);
    if (c->nrefs == 0) {
        one = uv_buf_init((char *)w->data, (unsigned)wlen);
    } else {
        /* wbuf's bytes cut at each block's place, the blocks in between: one writev. */
        size_t prev = 0;
        nbufs = 0;
        for (size_t i = 0; i < c->nrefs; i++) {
            const struct conn_ref *r = &c->refs[i];
            if (r->at > prev)
                bufs[nbufs++] = uv_buf_init((char *)w->data + prev, (unsigned)(r->at - prev));
            prev = r->at;
            bufs[nbufs++] = uv_buf_init((char *)r->p, (unsigned)r->len);
            w->refs[w->nrefs++] = r->rb; /* the reference moves to the write */
        }
        if (wlen > prev)
            bufs[nbufs++] = uv_buf_init((char *)w->data + prev, (unsigned)(wlen - prev));
        c->nrefs = 0;
        c->ref_bytes = 0;
    }
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, (unsigned)nbufs, on_write);
    if (bufs != &one)
        free(bufs); /* uv_write keeps its own copy of the list */
    if (rc != 0) {
        write_req_free(w);
        fail(c, RV_ENET, "send failed: %s", uv_strerror(rc));
        return;
    }
    if (c->writing == 0)
        c->send_progress_ms = now_ms(c);
    c->writing += w->len;
    c->bytes_out += w->len;
    if (c->opts.stats != NULL) {
        c->opts.stats->net_writes++;
        c->opts.stats->net_bytes_out += w->len;
    }
    c->last_send_ms = now_ms(c);
}

static void on_read_grant(struct limit_waiter *w, size_t n);
static void read_in_place(struct conn *c);

static bool in_place_ok(const struct conn *c)
{
    return c->handler != NULL && c->handler->expect != NULL && c->state == CONN_ACTIVE && !c->rc4;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    struct conn *c = h->data;
    (void)suggested;
    if (in_place_ok(c) || c->has_cur) {
        /* on_read reads (read_in_place): libuv reads into one buffer, and a callback that
         * closes the connection must not run inside this one (libuv calls on_read next). */
        c->read_self = true;
        *out = uv_buf_init(NULL, 0);
        return;
    }
    size_t allow = SIZE_MAX;
    if (c->rsched != NULL) {
        if (c->rcredit == 0)
            c->rcredit = limit_take(&c->rchain, READ_CHUNK, now_ms(c));
        if (c->rcredit == 0) {
            /* Out of tokens: read nothing (on_read sees UV_ENOBUFS and pauses) until the
             * scheduler grants more. */
            limit_wait(c->rsched, &c->rwait, &c->rchain, SIZE_MAX, now_ms(c), on_read_grant, c);
            *out = uv_buf_init(NULL, 0);
            return;
        }
        allow = c->rcredit;
    }
    if (buf_reserve(&c->rbuf, READ_CHUNK) != 0) {
        /* Full: the decoder refuses any message this large long before, so this is a peer
         * we stopped reading. Hand libuv nothing; on_read sees UV_ENOBUFS. */
        *out = uv_buf_init(NULL, 0);
        return;
    }
    size_t room = c->rbuf.cap - c->rbuf.len;
    *out = uv_buf_init((char *)c->rbuf.data + c->rbuf.len, (unsigned)(room < allow ? room : allow));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

static void on_read_grant(struct limit_waiter *w, size_t n)
{
    struct conn *c = w->data;
    c->rcredit += n;
    if (c->read_paused && c->state != CONN_CLOSING) {
        c->read_paused = false;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

void conn_set_read_limit(struct conn *c, struct limit_sched *sched,
                         const struct limit_chain *chain)
{
    limit_waiter_init(&c->rwait);
    c->rchain = *chain;
    c->rsched = sched;
}

static void consume(struct conn *c, size_t n)
{
    memmove(c->rbuf.data, c->rbuf.data + n, c->rbuf.len - n);
    c->rbuf.len -= n;
}

static void on_tick(uv_timer_t *t);

/* Often enough to honour the shortest keep-alive or idle period the owner asked for. */
static uint64_t tick_ms(const struct conn *c)
{
    uint64_t t = TICK_MS;
    if (c->opts.keepalive_ms < t)
        t = c->opts.keepalive_ms;
    if (c->opts.idle_timeout_ms < t)
        t = c->opts.idle_timeout_ms;
    if (c->opts.send_timeout_ms < t)
        t = c->opts.send_timeout_ms;
    return t;
}

static const char bt_proto[] = "\x13" "BitTorrent protocol";

static int mse_start(struct conn *c, bool initiator)
{
    struct mse_opts o = {.initiator = initiator};
    uint8_t hs[HANDSHAKE_LEN];
    if (initiator) {
        handshake_build(hs, &c->ours);
        o.crypto = c->opts.mse_offer;
        o.skey = c->ours.info_hash;
        o.ia = hs;
        o.ia_len = sizeof(hs);
    } else {
        o.crypto = c->opts.mse_accept;
        o.prefer = c->opts.mse_prefer;
        o.find_skey = c->opts.mse_find_skey;
        o.ud = c->opts.mse_ud;
    }
    c->mse = malloc(sizeof(*c->mse));
    if (c->mse == NULL)
        return RV_ENOMEM;
    int rc = mse_init(c->mse, &o, &c->wbuf);
    if (rc != 0) {
        conn_set_reason(c, "MSE: %s", c->mse->err[0] ? c->mse->err : rv_strerror(rc));
        return rc;
    }
    c->state = CONN_MSE;
    if (initiator)
        c->handshake_sent = true; /* it travels inside the MSE handshake (IA) */
    return 0;
}

/* The MSE handshake, fed everything received so far. Returns 1 when done (the BitTorrent
 * stream, decrypted, now starts at rbuf's front), 0 when more is needed, < 0 closed. */
static int mse_step(struct conn *c)
{
    size_t used = 0;
    int rc = mse_feed(c->mse, c->rbuf.data, c->rbuf.len, &c->wbuf, &used);
    if (rc < 0) {
        if (c->opts.stats != NULL)
            c->opts.stats->mse_failed++;
        fail(c, rc, "%s", c->mse->err[0] ? c->mse->err : "MSE handshake failed");
        return rc;
    }
    if (rc == 0)
        return 0;
    if (c->opts.stats != NULL)
        c->opts.stats->mse_ok++;
    /* What the codec queued was encrypted by it: out before RC4 applies to wbuf. */
    conn_flush(c);
    if (c->state == CONN_CLOSING)
        return RV_ENET;
    consume(c, used);
    if (c->mse->selected == MSE_RC4) {
        c->rc4 = true;
        if (c->opts.stats != NULL)
            c->opts.stats->mse_rc4++;
        mse_decrypt(c->mse, c->rbuf.data, c->rbuf.len);
    }
    if (c->mse->ia.len > 0) {
        /* The receiver's initial payload (the peer's BitTorrent handshake) goes first. */
        struct buf *ia = &c->mse->ia;
        if (buf_reserve(&c->rbuf, ia->len) != 0) {
            fail(c, RV_ENOMEM, "out of memory");
            return RV_ENOMEM;
        }
        memmove(c->rbuf.data + ia->len, c->rbuf.data, c->rbuf.len);
        memcpy(c->rbuf.data, ia->data, ia->len);
        c->rbuf.len += ia->len;
        ia->len = 0;
    }
    if (!c->rc4)
        mse_drop(c); /* plaintext from here: the hot path stays copy-free */
    c->state = CONN_HANDSHAKE;
    return 1;
}

/* Incoming: the first bytes tell a BitTorrent handshake from an MSE public key. Returns 1 to
 * go on, 0 to wait for more, < 0 closed. */
static int sniff(struct conn *c)
{
    /* Eight bytes decide: a public key starts with them once in 2^64, and a mangled protocol
     * string further on still gets the plaintext parser's error, not an MSE one. */
    size_t n = c->rbuf.len < 8 ? c->rbuf.len : 8;
    if (n == 0)
        return 0;
    if (memcmp(c->rbuf.data, bt_proto, n) == 0) {
        if (n < 8)
            return 0;
        c->sniffed = true;
        if (c->opts.plain_refused) {
            fail(c, RV_EPROTO, "plaintext handshake refused (encryption required)");
            return RV_EPROTO;
        }
        return 1;
    }
    c->sniffed = true;
    if (c->opts.mse_accept == 0) {
        /* Encryption disabled: the plaintext parser names what is wrong. */
        return 1;
    }
    int rc = mse_start(c, false);
    if (rc != 0) {
        conn_close(c, rc, c->close_reason);
        return rc;
    }
    return 1;
}

/* n bytes came from the socket: counted, and paid for under a rate limit. */
static void count_read(struct conn *c, size_t n)
{
    c->bytes_in += (uint64_t)n;
    if (c->opts.stats != NULL) {
        c->opts.stats->net_reads++;
        c->opts.stats->net_bytes_in += (uint64_t)n;
    }
    if (c->rsched != NULL)
        c->rcredit -= n < c->rcredit ? n : c->rcredit;
    c->last_recv_ms = now_ms(c);
}

/* Hands one message to the owner. 0 to go on, < 0 when the connection is closing (the owner
 * refused the message, or closed it). */
static int deliver(struct conn *c, const struct wire_msg *m)
{
    int rc = c->handler->on_message(c->owner, c, m);
    if (rc != 0) {
        conn_close(c, rc, c->close_reason[0] ? c->close_reason : rv_strerror(rc));
        return rc;
    }
    return c->state == CONN_CLOSING ? RV_ENET : 0;
}

static void process(struct conn *c)
{
    rv_error_t err;
    size_t off = 0;
    if (c->state == CONN_HANDSHAKE && c->incoming && !c->sniffed && sniff(c) <= 0)
        return;
    if (c->state == CONN_MSE && mse_step(c) <= 0)
        return;
    if (c->state == CONN_HANDSHAKE) {
        int rc = handshake_parse(c->rbuf.data, c->rbuf.len, &c->theirs, &err);
        if (rc < 0) {
            fail(c, RV_EPROTO, "bad handshake: %s", err.msg);
            return;
        }
        if (rc == 0)
            return;
        if (!c->incoming && memcmp(c->theirs.info_hash, c->ours.info_hash, 20) != 0) {
            fail(c, RV_EPROTO, "handshake for another torrent");
            return;
        }
        off = HANDSHAKE_LEN;
        c->state = CONN_ACTIVE;
        uv_timer_start(&c->timer, on_tick, tick_ms(c), tick_ms(c));
        /* Incoming: on_handshake routes the connection by info-hash (conn_attach). */
        rc = c->handler->on_handshake(c->owner, c, &c->theirs);
        if (rc == 0 && c->incoming && !c->handshake_sent)
            rc = RV_EPROTO;
        if (rc != 0) {
            conn_close(c, rc, c->close_reason[0] ? c->close_reason : "refused after handshake");
            return;
        }
    }
    while (c->state == CONN_ACTIVE) {
        struct wire_msg m;
        size_t used = 0;
        int rc = wire_decode(c->rbuf.data + off, c->rbuf.len - off, &c->limits, &m, &used, &err);
        if (rc < 0) {
            fail(c, RV_EPROTO, "%s", err.msg);
            return;
        }
        if (rc == 0)
            break;
        if (deliver(c, &m) != 0)
            return;
        off += used;
    }
    if (c->state != CONN_CLOSING && off > 0)
        consume(c, off);
}

/* ---- receiving blocks in place ----
 *
 * A piece message's payload is read from the socket straight into its piece, where the owner
 * says it goes (handler->expect), instead of into rbuf and then copied: one pass over the
 * data fewer (the copy was a tenth of a download's CPU). One readv takes the rest of the
 * message in progress, then the headers and payloads of the blocks the peer should send next
 * (in the order we asked), then whatever follows into rbuf. Peers answer nearly in order:
 * libtorrent sends blocks as its disk reads finish. A header for another block of the same
 * size is handed on from where it landed, or traded into its home when that is a later slot
 * of the same read; anything else (another message between blocks) sends everything from it
 * on back to rbuf, decoded as usual. Either way the messages are handed on in the order sent,
 * and the payload areas a wrong guess wrote into belong to blocks asked of this peer alone
 * and not yet arrived, which nothing else reads or writes. */

static void piece_header(uint8_t h[PIECE_HEADER], const struct conn_block *b)
{
    be_put32(h, 9 + b->length);
    h[4] = WIRE_PIECE;
    be_put32(h + 5, b->index);
    be_put32(h + 9, b->begin);
}

/* The piece message at rbuf's front whose header is all there and whose payload is not. */
static bool partial_piece(const struct conn *c, struct conn_block *b)
{
    const uint8_t *p = c->rbuf.data;
    if (c->rbuf.len < PIECE_HEADER || p[4] != WIRE_PIECE)
        return false;
    uint32_t mlen = be_get32(p);
    if (mlen <= 9 || mlen - 9 > WIRE_MAX_BLOCK || c->rbuf.len >= 4 + (size_t)mlen)
        return false;
    b->index = be_get32(p + 5);
    b->begin = be_get32(p + 9);
    b->length = mlen - 9;
    b->p = NULL;
    return true;
}

/* The message in progress goes back to rbuf, to be finished and decoded there: its header
 * and what arrived of its payload. When the owner no longer expects it here (it arrived from
 * another peer, the request was dropped), its memory may be someone else's: the block will be
 * discarded as late whatever it holds, so zeros stand in for what arrived. */
static int cur_to_rbuf(struct conn *c)
{
    struct conn_block check;
    bool ours = c->handler->expect != NULL &&
                c->handler->expect(c->owner, c, &c->cur, true, &check, 1) == 1 &&
                check.p == c->cur.p;
    c->has_cur = false;
    if (buf_reserve(&c->rbuf, PIECE_HEADER + c->cur_got) != 0)
        return RV_ENOMEM;
    uint8_t *at = c->rbuf.data + c->rbuf.len;
    piece_header(at, &c->cur);
    if (ours)
        memcpy(at + PIECE_HEADER, c->cur.p, c->cur_got);
    else
        memset(at + PIECE_HEADER, 0, c->cur_got);
    c->rbuf.len += PIECE_HEADER + c->cur_got;
    return 0;
}

static bool header_is(const uint8_t h[PIECE_HEADER], const struct conn_block *b)
{
    uint8_t want[PIECE_HEADER];
    piece_header(want, b);
    return memcmp(h, want, PIECE_HEADER) == 0;
}

/* A guess was wrong: everything from iov[j] on (left bytes: in iov[j..end), then at rbuf's
 * front) is decoded as usual, in the order it arrived. It goes through a buffer of its own,
 * freed after, so that rbuf, which every connection keeps, does not grow to a whole plan (four
 * seeders' connections held 2 MiB more so). */
static void spill(struct conn *c, const struct iovec *iov, int j, int end, size_t left)
{
    size_t f = 0;
    for (int i = j; i < end && f < left; i++)
        f += left - f < iov[i].iov_len ? left - f : iov[i].iov_len;
    struct buf stream;
    buf_init(&stream, RBUF_MAX);
    if (buf_reserve(&stream, left) != 0) {
        buf_free(&stream);
        fail(c, RV_ENOMEM, "out of memory");
        return;
    }
    for (; stream.len < f; j++) {
        size_t m = f - stream.len < iov[j].iov_len ? f - stream.len : iov[j].iov_len;
        memcpy(stream.data + stream.len, iov[j].iov_base, m);
        stream.len += m;
    }
    memcpy(stream.data + f, c->rbuf.data, left - f);
    stream.len = left;
    struct buf keep = c->rbuf;
    c->rbuf = stream;
    process(c);
    stream = c->rbuf; /* what is left: the start of a message */
    c->rbuf = keep;
    c->rbuf.len = 0;
    if (c->state != CONN_CLOSING && buf_append(&c->rbuf, stream.data, stream.len) != 0)
        fail(c, RV_ENOMEM, "out of memory");
    buf_free(&stream);
}

static int dispatch_in_place(struct conn *c, const struct conn_block *b)
{
    struct wire_msg m = {.type = WIRE_PIECE,
                         .index = b->index,
                         .begin = b->begin,
                         .length = b->length,
                         .data = b->p,
                         .data_len = b->length};
    if (c->opts.stats != NULL)
        c->opts.stats->blocks_in_place++;
    return deliver(c, &m);
}

/* What one in-place read brought, message by message. Slot s is where plan[s]'s header and
 * payload were to land (hdr[s], plan[s].p); message r of the read (in the order sent) starts
 * at byte off[r] and is the size of slot r, and its bytes are in slot loc[r] (at[] is the
 * reverse): slots of the same size trade contents when the peer answered out of order. */
struct walk {
    struct conn_block *plan;
    uint8_t (*hdr)[PIECE_HEADER];
    struct iovec *iov;
    size_t first, n, got;
    size_t off[PLAN_MAX + 1], loc[PLAN_MAX], at[PLAN_MAX];
    bool home[PLAN_MAX]; /* slot s holds plan[s]'s own block, handed on */
};

/* 1 when slot s holds a piece message's header with a payload of len bytes, 0 when it holds
 * something else, < 0 when that header breaks the protocol (the connection is closed). */
static int holds_piece(struct conn *c, const struct walk *w, size_t s, uint32_t len)
{
    struct wire_msg m;
    size_t used = 0;
    rv_error_t err;
    int rc = wire_decode(w->hdr[s], PIECE_HEADER, &c->limits, &m, &used, &err);
    if (rc < 0) {
        fail(c, RV_EPROTO, "%s", err.msg);
        return RV_EPROTO;
    }
    return rc == 0 && w->hdr[s][4] == WIRE_PIECE && used == PIECE_HEADER + (size_t)len;
}

/* Message r is out of order: it carries plan[t]'s block, and message p = at[t] (all there,
 * later in this read) sits in slot t. When every message from r to p is a piece message the
 * size of its slot (so they were cut where the plan cut them), the two slots trade contents:
 * r's block lands at its home. Returns 1 when traded, 0 when not, < 0 when closed. */
static int trade(struct conn *c, struct walk *w, size_t r, size_t t)
{
    size_t s = w->loc[r], p = w->at[t];
    if (w->plan[t].length != w->plan[s].length || w->got < w->off[p + 1])
        return 0;
    for (size_t q = r + 1; q <= p; q++) {
        int rc = holds_piece(c, w, w->loc[q], w->plan[q].length);
        if (rc <= 0)
            return rc;
    }
    uint8_t h[PIECE_HEADER], tmp[4096];
    memcpy(h, w->hdr[s], PIECE_HEADER);
    memcpy(w->hdr[s], w->hdr[t], PIECE_HEADER);
    memcpy(w->hdr[t], h, PIECE_HEADER);
    for (size_t o = 0; o < w->plan[s].length; o += sizeof(tmp)) {
        size_t len = w->plan[s].length - o < sizeof(tmp) ? w->plan[s].length - o : sizeof(tmp);
        memcpy(tmp, w->plan[s].p + o, len);
        memcpy(w->plan[s].p + o, w->plan[t].p + o, len);
        memcpy(w->plan[t].p + o, tmp, len);
    }
    w->loc[r] = t, w->at[t] = r;
    w->loc[p] = s, w->at[s] = p;
    /* The iovecs follow the messages, for a spill later in the walk. */
    size_t jr = 2 * r - w->first, jp = 2 * p - w->first;
    w->iov[jr] = (struct iovec){w->hdr[t], PIECE_HEADER};
    w->iov[jr + 1] = (struct iovec){w->plan[t].p, w->plan[t].length};
    w->iov[jp] = (struct iovec){w->hdr[s], PIECE_HEADER};
    w->iov[jp + 1] = (struct iovec){w->plan[s].p, w->plan[s].length};
    return 1;
}

/* Message r, all there, is a piece message for a block other than its slot's: traded into
 * its home when that is a later slot of this read, else handed on from the slot it is in
 * (the owner copies it home, or drops it as late). Returns 1 when handed on, 0 when its bytes
 * are to go back to rbuf, < 0 when closed. */
static int out_of_order(struct conn *c, struct walk *w, size_t r)
{
    size_t s = w->loc[r];
    uint32_t index = be_get32(w->hdr[s] + 5), begin = be_get32(w->hdr[s] + 9);
    size_t t = w->first;
    while (t < w->n && (w->plan[t].index != index || w->plan[t].begin != begin))
        t++;
    if (t < w->n && !w->home[t] && w->at[t] > r) {
        /* Its home holds a message not handed on yet: trade, or give up. */
        int rc = trade(c, w, r, t);
        if (rc <= 0)
            return rc;
        w->home[t] = true;
        return dispatch_in_place(c, &w->plan[t]) == 0 ? 1 : RV_ENET;
    }
    struct wire_msg m = {.type = WIRE_PIECE,
                         .index = index,
                         .begin = begin,
                         .length = w->plan[s].length,
                         .data = w->plan[s].p,
                         .data_len = w->plan[s].length};
    return deliver(c, &m) == 0 ? 1 : RV_ENET;
}

/* The download rate limit: the read is paid for before it happens, as in on_alloc; the
 * iovecs are cut to the bytes granted. False when none are. Without a limit, true at once
 * (a grant smaller than the plan would only cut reads short). */
static bool in_place_credit(struct conn *c, struct iovec *iov, int *k)
{
    bool limited = false;
    for (int i = 0; i < LIMIT_LEVELS; i++)
        limited = limited || limit_bucket_is_limited(c->rchain.level[i]);
    if (!limited)
        return true;
    size_t want = 0;
    for (int i = 0; i < *k; i++)
        want += iov[i].iov_len;
    if (c->rcredit == 0)
        c->rcredit = limit_take(&c->rchain, want, now_ms(c));
    if (c->rcredit == 0)
        return false;
    size_t room = c->rcredit;
    for (int i = 0; i < *k; i++) {
        if (iov[i].iov_len >= room) {
            iov[i].iov_len = room;
            *k = i + 1;
            break;
        }
        room -= iov[i].iov_len;
    }
    return true;
}

/* One readv: into the plan when there is one, else into rbuf as libuv would. Returns 0 to
 * read again, 1 when the socket is empty or reading waits for the rate limit, < 0 when the
 * connection closed. *full: the read filled all it was offered (more may be waiting). */
static int in_place_round(struct conn *c, bool *full)
{
    struct conn_block plan[PLAN_MAX], from;
    size_t n = 0;
    bool started = false;
    if (c->has_cur) {
        /* Still ours? (Another peer may have sent it meanwhile, the request may be gone.) */
        n = c->handler->expect(c->owner, c, &c->cur, true, plan, PLAN_MAX);
        if (n > 0 && plan[0].p == c->cur.p) {
            started = true;
        } else if (cur_to_rbuf(c) != 0) {
            fail(c, RV_ENOMEM, "out of memory");
            return RV_ENOMEM;
        } else {
            n = 0;
        }
    } else if (partial_piece(c, &from)) {
        n = c->handler->expect(c->owner, c, &from, false, plan, PLAN_MAX);
        if (n > 0) {
            /* The payload so far moves to its place; the header is spent. */
            c->cur = plan[0];
            c->cur_got = (uint32_t)(c->rbuf.len - PIECE_HEADER);
            memcpy(c->cur.p, c->rbuf.data + PIECE_HEADER, c->cur_got);
            c->rbuf.len = 0;
            c->has_cur = started = true;
        }
    } else if (c->rbuf.len == 0) {
        n = c->handler->expect(c->owner, c, NULL, false, plan, PLAN_MAX);
    }
    if (buf_reserve(&c->rbuf, READ_CHUNK) != 0) {
        /* The decoder refuses any message this large long before: not reached. */
        fail(c, RV_ENOMEM, "receive buffer full");
        return RV_ENOMEM;
    }
    uint8_t hdr[PLAN_MAX][PIECE_HEADER];
    struct iovec iov[2 * PLAN_MAX + 1];
    int k = 0;
    size_t first = 0;
    if (started) {
        iov[k++] = (struct iovec){c->cur.p + c->cur_got, c->cur.length - c->cur_got};
        first = 1;
    }
    size_t planned = 0;
    for (size_t i = first; i < n; i++) {
        if (planned + PIECE_HEADER + plan[i].length > PLAN_BYTES) {
            n = i;
            break;
        }
        planned += PIECE_HEADER + plan[i].length;
        iov[k++] = (struct iovec){hdr[i], PIECE_HEADER};
        iov[k++] = (struct iovec){plan[i].p, plan[i].length};
    }
    int plan_end = k; /* iov[plan_end], when there, is rbuf's (empty when there is a plan) */
    iov[k++] = (struct iovec){c->rbuf.data + c->rbuf.len, READ_CHUNK};
    if (c->rsched != NULL && !in_place_credit(c, iov, &k)) {
        /* Out of tokens: nothing is read until the scheduler grants more. */
        limit_wait(c->rsched, &c->rwait, &c->rchain, SIZE_MAX, now_ms(c), on_read_grant, c);
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->read_paused = true;
        return 1;
    }
    if (k < plan_end)
        plan_end = k;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) {
        fail(c, RV_ENET, "receive failed: no socket");
        return RV_ENET;
    }
    size_t offered = 0;
    for (int i = 0; i < k; i++)
        offered += iov[i].iov_len;
    ssize_t got;
    do
        got = readv(fd, iov, k);
    while (got < 0 && errno == EINTR);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 1;
    if (got < 0) {
        fail(c, RV_ENET, "receive failed: %s", strerror(errno));
        return RV_ENET;
    }
    if (got == 0) {
        fail(c, RV_ENET, "the peer closed the connection");
        return RV_ENET;
    }
    count_read(c, (size_t)got);
    *full = (size_t)got == offered;

    struct walk w = {
        .plan = plan, .hdr = hdr, .iov = iov, .first = first, .n = n, .got = (size_t)got};
    if (started) {
        size_t take = w.got < iov[0].iov_len ? w.got : iov[0].iov_len;
        c->cur_got += (uint32_t)take;
        if (c->cur_got < c->cur.length)
            return 0;
        c->has_cur = false;
        if (dispatch_in_place(c, &c->cur) != 0)
            return RV_ENET;
        w.off[first] = take;
    } else {
        w.off[first] = 0;
    }
    for (size_t r = first; r < n; r++) {
        w.loc[r] = w.at[r] = r;
        w.off[r + 1] = w.off[r] + PIECE_HEADER + plan[r].length;
    }
    size_t r = first;
    for (; r < n && w.off[r] < w.got; r++) {
        size_t s = w.loc[r];
        int rc = 0;
        if (w.got >= w.off[r] + PIECE_HEADER && header_is(hdr[s], &plan[s])) {
            if (w.got < w.off[r + 1]) {
                /* The rest of it comes with the next read (never traded: s is r). */
                c->cur = plan[s];
                c->cur_got = (uint32_t)(w.got - w.off[r] - PIECE_HEADER);
                c->has_cur = true;
                return 0;
            }
            w.home[s] = true;
            if (dispatch_in_place(c, &plan[s]) != 0)
                return RV_ENET;
            continue;
        }
        if (w.got >= w.off[r + 1]) {
            rc = holds_piece(c, &w, s, plan[s].length);
            if (rc > 0)
                rc = out_of_order(c, &w, r);
            if (rc < 0 || c->state == CONN_CLOSING)
                return RV_ENET;
        }
        if (rc == 0) {
            spill(c, iov, (int)(2 * r - first), plan_end, w.got - w.off[r]);
            return c->state == CONN_CLOSING ? RV_ENET : 0;
        }
    }
    if (r == n && w.off[n] < w.got) {
        /* Past the plan (or no plan): in rbuf, decoded as usual. */
        c->rbuf.len += w.got - w.off[n];
        process(c);
        if (c->state == CONN_CLOSING)
            return RV_ENET;
    }
    return 0;
}

/* on_read for connections that receive in place: up to IN_PLACE_ROUNDS reads per wake-up,
 * as libuv's own loop does (its poll is level-triggered: what is left wakes it again). */
static void read_in_place(struct conn *c)
{
    for (int round = 0; round < IN_PLACE_ROUNDS; round++) {
        bool full = false;
        int rc = in_place_round(c, &full);
        if (c->state == CONN_CLOSING)
            return;
        conn_flush(c); /* the requests the blocks made room for */
        /* A short read emptied the socket: asking again would only return EAGAIN (libuv's
         * loop stops there too; its poll wakes us when more comes). */
        if (rc != 0 || !full || !(in_place_ok(c) || c->has_cur))
            return;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct conn *c = s->data;
    (void)b;
    if (c->state == CONN_CLOSING)
        return;
    if (nread == UV_ENOBUFS && c->read_self) {
        c->read_self = false;
        read_in_place(c);
        return;
    }
    if (nread == UV_ENOBUFS && c->rsched != NULL) {
        /* The rate limit said wait: on_read_grant starts reading again. */
        uv_read_stop(s);
        c->read_paused = true;
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF)
            fail(c, RV_ENET, "the peer closed the connection");
        else
            fail(c, RV_ENET, "receive failed: %s", uv_strerror((int)nread));
        return;
    }
    if (nread == 0)
        return;
    if (c->rc4)
        mse_decrypt(c->mse, c->rbuf.data + c->rbuf.len, (size_t)nread);
    c->rbuf.len += (size_t)nread;
    count_read(c, (size_t)nread);
    process(c);
    if (c->state != CONN_CLOSING)
        conn_flush(c);
}

static void on_tick(uv_timer_t *t)
{
    struct conn *c = t->data;
    uint64_t now = now_ms(c);
    if (c->state == CONN_CONNECTING) {
        fail(c, RV_ETIMEDOUT, "connect timed out after %u ms", c->opts.connect_timeout_ms);
        return;
    }
    if (c->state == CONN_HANDSHAKE || c->state == CONN_MSE) {
        fail(c, RV_ETIMEDOUT, "no %shandshake within %u ms", c->state == CONN_MSE ? "MSE " : "",
             c->opts.handshake_timeout_ms);
        return;
    }
    if (c->state != CONN_ACTIVE)
        return;
    /* BEP 3: peers drop connections silent for two minutes; we wait a little longer. */
    if (now - c->last_recv_ms >= c->opts.idle_timeout_ms) {
        fail(c, RV_ETIMEDOUT, "nothing received for %llu ms",
             (unsigned long long)(now - c->last_recv_ms));
        return;
    }
    /* A peer that keeps the connection alive but never reads would hold our send buffers
     * (and the blocks queued behind them) for ever. */
    /* Progress: a write finished, or libuv's queue shrank since the last tick (a slow reader
     * takes part of a large write at a time). */
    size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    if (queued < c->send_queued)
        c->send_progress_ms = now;
    c->send_queued = queued;
    if (c->writing > 0 && now - c->send_progress_ms >= c->opts.send_timeout_ms) {
        fail(c, RV_ETIMEDOUT, "read nothing we sent for %llu ms (%zu bytes waiting)",
             (unsigned long long)(now - c->send_progress_ms), conn_send_backlog(c));
        return;
    }
    if (now - c->last_send_ms >= c->opts.keepalive_ms && c->wbuf.len == 0 && c->nrefs == 0) {
        wire_put_keepalive(&c->wbuf);
        conn_flush(c);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->state == CONN_CLOSING)
        return;
    if (status < 0) {
        fail(c, RV_ENET, "connect failed: %s", uv_strerror(status));
        return;
    }
    c->state = CONN_HANDSHAKE;
    c->connected_ms = c->last_recv_ms = now_ms(c);
    if (c->opts.mse_offer != 0) {
        int rc = mse_start(c, true);
        if (rc != 0) {
            conn_close(c, rc, c->close_reason);
            return;
        }
    } else {
        uint8_t hs[HANDSHAKE_LEN];
        handshake_build(hs, &c->ours);
        buf_append(&c->wbuf, hs, sizeof(hs));
        c->handshake_sent = true;
    }
    conn_flush(c);
    uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) {
        fail(c, RV_ENET, "cannot read: %s", uv_strerror(rc));
        return;
    }
    uv_timer_start(&c->timer, on_tick, c->opts.handshake_timeout_ms, 0);
}

static void set_defaults(struct conn *c, const struct conn_opts *opts)
{
    if (opts != NULL)
        c->opts = *opts;
    if (!c->opts.connect_timeout_ms)
        c->opts.connect_timeout_ms = 10000;
    if (!c->opts.handshake_timeout_ms)
        c->opts.handshake_timeout_ms = 10000;
    if (!c->opts.keepalive_ms)
        c->opts.keepalive_ms = 120000;
    if (!c->opts.idle_timeout_ms)
        c->opts.idle_timeout_ms = 180000;
    if (!c->opts.send_timeout_ms)
        c->opts.send_timeout_ms = 120000;
}

int conn_accept(uv_loop_t *loop, uv_stream_t *server, const struct conn_opts *opts,
                const struct conn_handler *handler, void *owner, uint32_t id, struct conn **out)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return RV_ENOMEM;
    c->id = id;
    c->handler = handler;
    c->owner = owner;
    c->incoming = true;
    set_defaults(c, opts);
    buf_init(&c->rbuf, RBUF_MAX);
    buf_init(&c->wbuf, 0);
    if (uv_tcp_init(loop, &c->tcp) != 0) {
        free(c);
        return RV_ENET;
    }
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    int rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    if (rc == 0)
        rc = uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen);
    if (rc != 0) {
        *out = c;
        c->state = CONN_HANDSHAKE;
        conn_close(c, RV_ENET, "accept failed");
        return 0;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        c->addr.family = 6;
        memcpy(c->addr.ip, &a->sin6_addr, 16);
        c->addr.port = ntohs(a->sin6_port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        c->addr.family = 4;
        memcpy(c->addr.ip, &a->sin_addr, 4);
        c->addr.port = ntohs(a->sin_port);
    }
    c->state = CONN_HANDSHAKE;
    c->connected_ms = c->last_recv_ms = c->last_send_ms = now_ms(c);
    uv_tcp_nodelay(&c->tcp, 1);
    *out = c;
    rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) {
        fail(c, RV_ENET, "cannot read: %s", uv_strerror(rc));
        return 0;
    }
    uv_timer_start(&c->timer, on_tick, c->opts.handshake_timeout_ms, 0);
    return 0;
}

void conn_attach(struct conn *c, const struct handshake *ours, const struct wire_limits *limits,
                 const struct conn_handler *handler, void *owner)
{
    c->ours = *ours;
    c->limits = *limits;
    c->handler = handler;
    c->owner = owner;
    uint8_t hs[HANDSHAKE_LEN];
    handshake_build(hs, &c->ours);
    /* Ahead of anything already queued: the handshake is the first thing on the wire. */
    struct buf b;
    buf_init(&b, 0);
    if (buf_append(&b, hs, sizeof(hs)) == 0 && buf_append(&b, c->wbuf.data, c->wbuf.len) == 0) {
        buf_free(&c->wbuf);
        c->wbuf = b;
    } else {
        buf_free(&b);
    }
    c->handshake_sent = true;
}

int conn_connect(uv_loop_t *loop, const struct peer_addr *addr, const struct handshake *ours,
                 const struct wire_limits *limits, const struct conn_opts *opts,
                 const struct conn_handler *handler, void *owner, uint32_t id,
                 struct conn **out)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return RV_ENOMEM;
    c->addr = *addr;
    c->id = id;
    c->handler = handler;
    c->owner = owner;
    c->limits = *limits;
    c->ours = *ours;
    set_defaults(c, opts);
    buf_init(&c->rbuf, RBUF_MAX);
    buf_init(&c->wbuf, 0);
    c->state = CONN_CONNECTING;

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (addr->family == 4) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(addr->port);
        memcpy(&sin->sin_addr, addr->ip, 4);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(addr->port);
        memcpy(&sin6->sin6_addr, addr->ip, 16);
    }
    int rc = uv_tcp_init(loop, &c->tcp);
    if (rc != 0) {
        free(c);
        return RV_ENET;
    }
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->connect_req.data = c;
    if (c->opts.bind_addr != NULL) {
        struct sockaddr_storage src;
        memset(&src, 0, sizeof(src));
        /* Only an address of the peer's family can be the source. */
        if ((addr->family == 4 &&
             uv_ip4_addr(c->opts.bind_addr, 0, (struct sockaddr_in *)&src) == 0) ||
            (addr->family == 6 &&
             uv_ip6_addr(c->opts.bind_addr, 0, (struct sockaddr_in6 *)&src) == 0))
            uv_tcp_bind(&c->tcp, (const struct sockaddr *)&src, 0);
    }
    rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&ss, on_connect);
    if (rc != 0) {
        /* Report through on_close like any other failure, so the owner has one path. */
        char why[96];
        snprintf(why, sizeof(why), "connect failed: %s", uv_strerror(rc));
        *out = c;
        conn_close(c, RV_ENET, why);
        return 0;
    }
    uv_timer_start(&c->timer, on_tick, c->opts.connect_timeout_ms, 0);
    *out = c;
    return 0;
}

unsigned conn_rtt_us(struct conn *c)
{
#ifdef TCP_INFO
    uv_os_fd_t fd;
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (c->state == CONN_CONNECTING || c->state == CONN_CLOSING ||
        uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0 ||
        getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_rtt) + sizeof(ti.tcpi_rtt))
        return 0;
    return ti.tcpi_rtt;
#else
    (void)c;
    return 0;
#endif
}
