/* The whole download engine in one process: rv_session on a loop of ours, a payload made in a
 * mkdtemp folder (several files, one of them empty, a total that is no multiple of the piece
 * size) and described with rv_create, and fake seeders in the same loop that answer the
 * handshake, send a bitfield, unchoke and serve requests from the payload in memory. Each
 * seeder follows a script: honest, a liar (whole pieces, or single blocks it shares with an
 * honest seeder), a choker, or one protocol fault each. Every case checks the files byte for
 * byte against the payload, the events (finished, stopped, piece failed, banned, dropped with
 * the fault named) and the status, and ends with uv_loop_close() == 0. Every case runs with
 * 16 KiB and with 32 KiB pieces, each in well under a second when it passes (CASE_MS bounds a
 * case that does not finish).
 *
 * Known failures, each an engine bug marked "ENGINE BUG" at its test:
 *   test_block_wrong_length: conn_close emptied the owner's reason (fixed).
 *   test_liar_shares_pieces: the two-strikes rule bans the honest seeder too. */
/* cmocka.h needs these first */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "peer/wire.h"
#include "rivulet/metainfo.h"
#include "rivulet/session.h"
#include "session/torrent.h"
#include "swarm/picker.h"
#include "util/bitfield.h"
#include "util/buf.h"
#include "util/sha1x.h"

#define MAX_SEEDERS 3
#define MAX_QUEUE 512
#define MAX_EVENTS 4096
#define CASE_MS 6000 /* a case that has not stopped by then has failed */

/* The payload: files in torrent order (rv_create sorts by path), one empty, sizes chosen so no
 * file boundary and not the total falls on a piece or block boundary. */
static const struct {
    const char *path;
    size_t size;
} files[] = {
    {"a.bin", 100000},
    {"empty", 0},
    {"sub/b.bin", 400001},
    {"sub/c.bin", 177777},
};
#define NFILES (sizeof(files) / sizeof(files[0]))
static size_t file_scale = 1; /* each file is this many times its size above (test_lockstep) */

enum script {
    HONEST,
    LIAR,            /* every block corrupt */
    CHOKER,          /* serves a few blocks, then chokes for good */
    BITFIELD_LEN,    /* a bitfield one byte too long */
    SPARE_BITS,      /* a bitfield with the spare bits set */
    HAVE_PAST_END,   /* have for piece piece_count */
    UNREQUESTED,     /* a block of garbage for a piece never requested (then honest) */
    WRONG_LEN,       /* answers a request with a block one byte short */
    HUGE_PREFIX,     /* answers a request with a length prefix of 0xffffffff */
    PAST_PIECE_END,  /* a block running past the end of the last piece */
    SECOND_BITFIELD, /* two bitfields */
    FRAMER,          /* one corrupt block, then a choke, an unchoke a tick later, again */
    FLAPPER          /* answers requests with a choke, unchokes a tick later; choke_after
                        times, then serves */
};

struct world;
struct sconn;

struct seeder {
    struct world *w;
    int idx;
    uv_tcp_t server;
    bool server_open;
    uv_timer_t timer; /* paced serving */
    bool timer_open;
    enum script script;
    unsigned delay_ms;    /* serve one block per connection this often; 0: at once */
    unsigned choke_after; /* CHOKER: blocks served before the choke */
    unsigned unchoke_ms;  /* unchoke this long after the handshake; 0: at once */
    char addr[32];        /* "ip:port", as the engine names it */
    struct sconn *conns;
    unsigned accepts, served, requests, cancels, faults;
    unsigned bad_msgs; /* messages from the engine our decoder refused */
};

struct sconn {
    struct seeder *s;
    struct sconn *next;
    uv_tcp_t tcp;
    struct buf in;
    bool handshaked, closing, choked;
    bool unchoke_pending;
    uint64_t unchoke_at;
    unsigned served;
    struct block_ref queue[MAX_QUEUE];
    size_t nqueue;
};

struct ev {
    rv_event_type_t type;
    uint32_t piece;
    int code;
    char *msg;
};

struct world {
    uv_loop_t loop;
    uv_timer_t watchdog;
    unsigned watchdog_fires;
    bool timed_out, hung;
    bool running, loop_closed;
    size_t max_memory; /* rv_session_opts.max_memory; 0: the default */
    char root[512], src[600], out[600];
    uint8_t *torrent;
    size_t torrent_len;
    rv_torrent_info_t *info; /* our own parse: paths, sizes, piece hashes */
    uint8_t *payload;        /* the piece space, as the seeders serve it */
    uint64_t total;
    uint32_t plen, npieces, last_len;
    struct wire_limits lim;
    struct seeder seeders[MAX_SEEDERS];
    size_t nseeders;
    rv_session_t *s;
    rv_torrent_t *t;
    struct ev evs[MAX_EVENTS];
    size_t nevs;
    bool *verified;
    unsigned nverified, stop_after;
    bool stop_called, stopped;
    uint64_t started_ms, stop_called_ms, stopped_ms;
    rv_torrent_status_t st;
    rv_session_stats_t ss; /* the session's counters, taken just before it is freed */
};

/* ---- files ---- */

/* The world of the case running now, for the teardown after a failed assertion. */
static struct world *current;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void write_file(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n > 0)
        assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* The piece space as found under base (each file at base/path): missing or short files read
 * as zeros, so a partly downloaded folder can be compared piece by piece. */
static uint8_t *read_space(const struct world *w, const char *base)
{
    uint8_t *space = calloc(1, w->info->piece_space + 1);
    assert_non_null(space);
    char path[1200];
    for (size_t i = 0; i < w->info->file_count; i++) {
        const rv_file_t *f = &w->info->files[i];
        if (f->attr & RV_FILE_PAD)
            continue;
        snprintf(path, sizeof(path), "%s/%s", base, f->path);
        FILE *fp = fopen(path, "rb");
        if (fp == NULL)
            continue;
        size_t n = fread(space + f->offset, 1, f->length, fp);
        (void)n;
        fclose(fp);
    }
    return space;
}

/* ---- the world: payload, torrent, loop ---- */

static uint64_t rng_state;

static uint8_t rng_byte(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint8_t)(rng_state >> 24);
}

static struct world *world_new(uint32_t plen)
{
    struct world *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    const char *base = getenv("TMPDIR");
    snprintf(w->root, sizeof(w->root), "%s/rv_download_XXXXXX", base && base[0] ? base : "/tmp");
    assert_non_null(mkdtemp(w->root));
    snprintf(w->src, sizeof(w->src), "%s/payload", w->root);
    snprintf(w->out, sizeof(w->out), "%s/out", w->root);
    assert_int_equal(mkdir(w->src, 0755), 0);
    char path[1200];
    snprintf(path, sizeof(path), "%s/sub", w->src);
    assert_int_equal(mkdir(path, 0755), 0);
    rng_state = 0x9e3779b97f4a7c15ull ^ plen;
    for (size_t i = 0; i < NFILES; i++) {
        size_t size = files[i].size * file_scale;
        uint8_t *data = malloc(size + 1);
        assert_non_null(data);
        for (size_t k = 0; k < size; k++)
            data[k] = rng_byte();
        snprintf(path, sizeof(path), "%s/%s", w->src, files[i].path);
        write_file(path, data, size);
        free(data);
    }

    rv_create_opts_t co = {.path = w->src, .piece_length = plen, .creation_date = -1, .threads = 1};
    rv_error_t err;
    int rc = rv_create(&co, &w->torrent, &w->torrent_len, &err);
    if (rc != 0)
        fail_msg("rv_create: %s", err.msg);
    rc = rv_torrent_parse(w->torrent, w->torrent_len, 0, &w->info, &err);
    if (rc != 0)
        fail_msg("rv_torrent_parse: %s", err.msg);
    assert_int_equal(w->info->piece_length, plen);
    assert_int_equal(w->info->file_count, NFILES);
    w->plen = plen;
    w->npieces = w->info->piece_count;
    w->total = w->info->total_size;
    assert_int_equal(w->info->piece_space, w->total);
    assert_true(w->total % plen != 0);
    w->last_len = (uint32_t)(w->total - (uint64_t)(w->npieces - 1) * plen);
    w->lim = (struct wire_limits){w->npieces, plen, w->last_len};
    /* read_space names files by torrent path ("payload/a.bin"), so read from the root. */
    w->payload = read_space(w, w->root);
    w->verified = calloc(w->npieces, sizeof(bool));
    assert_non_null(w->verified);
    assert_int_equal(uv_loop_init(&w->loop), 0);
    current = w;
    return w;
}

/* Removes the folder and frees w. A world whose session is still there failed inside the
 * loop: its loop and session are left alone (leaked), only the folder goes. */
static void world_free(struct world *w)
{
    current = NULL;
    if (w->s != NULL) {
        nftw(w->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        return;
    }
    for (size_t i = 0; i < w->nevs; i++)
        free(w->evs[i].msg);
    nftw(w->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    rv_torrent_info_free(w->info);
    free(w->torrent);
    free(w->payload);
    free(w->verified);
    free(w);
}

/* ---- the fake seeders ---- */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void on_sent(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
    free(req);
}

/* Sends b's bytes and empties b. */
static void sc_send(struct sconn *sc, struct buf *b)
{
    if (sc->closing || b->len == 0) {
        b->len = 0;
        return;
    }
    uv_write_t *req = malloc(sizeof(*req));
    assert_non_null(req);
    size_t len;
    uint8_t *data = buf_steal(b, &len);
    req->data = data;
    uv_buf_t ub = uv_buf_init((char *)data, (unsigned)len);
    if (uv_write(req, (uv_stream_t *)&sc->tcp, &ub, 1, on_sent) != 0) {
        free(data);
        free(req);
    }
}

static void sc_closed(uv_handle_t *h)
{
    struct sconn *sc = h->data;
    struct seeder *s = sc->s;
    for (struct sconn **pp = &s->conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == sc) {
            *pp = sc->next;
            break;
        }
    }
    buf_free(&sc->in);
    free(sc);
}

static void sc_close(struct sconn *sc)
{
    if (sc->closing)
        return;
    sc->closing = true;
    uv_close((uv_handle_t *)&sc->tcp, sc_closed);
}

static void put_full_bitfield(const struct world *w, struct buf *b)
{
    size_t n = bitfield_bytes(w->npieces);
    uint8_t *bits = malloc(n);
    assert_non_null(bits);
    memset(bits, 0xff, n);
    if (w->npieces % 8)
        bits[n - 1] = (uint8_t)(0xff << (8 - w->npieces % 8));
    wire_put_bitfield(b, bits, n);
    free(bits);
}

/* What a seeder says right after its handshake. */
static void sc_opening(struct sconn *sc, struct buf *b)
{
    struct seeder *s = sc->s;
    struct world *w = s->w;
    size_t n = bitfield_bytes(w->npieces);
    switch (s->script) {
    case BITFIELD_LEN: {
        uint8_t *bits = calloc(1, n + 1);
        assert_non_null(bits);
        memset(bits, 0xff, n - 1);
        wire_put_bitfield(b, bits, n + 1);
        free(bits);
        s->faults++;
        break;
    }
    case SPARE_BITS: {
        uint8_t *bits = malloc(n);
        assert_non_null(bits);
        memset(bits, 0xff, n);
        wire_put_bitfield(b, bits, n);
        free(bits);
        s->faults++;
        break;
    }
    case SECOND_BITFIELD:
        put_full_bitfield(w, b);
        put_full_bitfield(w, b);
        s->faults++;
        break;
    case UNREQUESTED: {
        /* Sent while we still choke it, so the engine cannot have asked for it yet. */
        put_full_bitfield(w, b);
        uint32_t len = w->last_len < RV_BLOCK_SIZE ? w->last_len : RV_BLOCK_SIZE;
        wire_put_piece_header(b, w->npieces - 1, 0, len);
        for (uint32_t i = 0; i < len; i++)
            buf_append_byte(b, 0xee);
        s->faults++;
        break;
    }
    default:
        put_full_bitfield(w, b);
        break;
    }
    if (s->unchoke_ms > 0) {
        sc->unchoke_pending = true;
        sc->unchoke_at = uv_now(&w->loop) + s->unchoke_ms;
        return;
    }
    wire_put_simple(b, WIRE_UNCHOKE);
    if (s->script == HAVE_PAST_END) {
        wire_put_have(b, w->npieces);
        s->faults++;
    } else if (s->script == PAST_PIECE_END) {
        wire_put_piece_header(b, w->npieces - 1, 0, w->last_len + 1);
        for (uint32_t i = 0; i <= w->last_len; i++)
            buf_append_byte(b, 0x11);
        s->faults++;
    }
}

/* Answers one request, following the script. */
static void sc_serve(struct sconn *sc, const struct block_ref *r, struct buf *b)
{
    struct seeder *s = sc->s;
    struct world *w = s->w;
    if (sc->choked)
        return; /* BEP 3: a choke drops every pending request */
    uint64_t off = (uint64_t)r->piece * w->plen + r->begin;
    assert_true(off + r->length <= w->total);
    uint32_t len = r->length;
    switch (s->script) {
    case CHOKER:
        if (sc->served >= s->choke_after) {
            wire_put_simple(b, WIRE_CHOKE);
            sc->choked = true;
            return;
        }
        break;
    case WRONG_LEN:
        if (len > 1) {
            len--;
            s->faults++;
        }
        break;
    case FRAMER:
        /* Its block goes into a piece the honest seeder completes: the liar makes the
         * failure look shared. */
        sc->choked = true;
        break;
    case FLAPPER:
        if (s->faults < s->choke_after) {
            s->faults++;
            wire_put_simple(b, WIRE_CHOKE);
            sc->choked = true;
            return;
        }
        break;
    case HUGE_PREFIX: {
        uint8_t p[4];
        put32(p, 0xffffffffu);
        buf_append(b, p, 4);
        s->faults++;
        sc->choked = true; /* nothing more from this one */
        return;
    }
    default:
        break;
    }
    wire_put_piece_header(b, r->piece, r->begin, len);
    size_t at = b->len;
    buf_append(b, w->payload + off, len);
    if (s->script == LIAR || s->script == FRAMER) {
        for (uint32_t i = 0; i < len; i++)
            b->data[at + i] ^= 0xa5;
        s->faults++;
    }
    sc->served++;
    s->served++;
    if (s->script == FRAMER)
        wire_put_simple(b, WIRE_CHOKE);
}

static void sc_handle(struct sconn *sc, const struct wire_msg *m, struct buf *b)
{
    struct seeder *s = sc->s;
    switch (m->type) {
    case WIRE_REQUEST: {
        s->requests++;
        struct block_ref r = {m->index, m->begin, m->length};
        if (s->delay_ms == 0) {
            sc_serve(sc, &r, b);
        } else {
            assert_true(sc->nqueue < MAX_QUEUE);
            sc->queue[sc->nqueue++] = r;
        }
        break;
    }
    case WIRE_CANCEL:
        s->cancels++;
        for (size_t i = 0; i < sc->nqueue; i++) {
            if (sc->queue[i].piece == m->index && sc->queue[i].begin == m->begin) {
                memmove(&sc->queue[i], &sc->queue[i + 1],
                        (sc->nqueue - i - 1) * sizeof(sc->queue[0]));
                sc->nqueue--;
                break;
            }
        }
        break;
    default:
        break; /* interested, have, keep-alive: nothing to do */
    }
}

static void sc_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    struct sconn *sc = h->data;
    (void)suggested;
    assert_int_equal(buf_reserve(&sc->in, 65536), 0);
    *out = uv_buf_init((char *)sc->in.data + sc->in.len, (unsigned)(sc->in.cap - sc->in.len));
}

static void sc_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *ub)
{
    struct sconn *sc = st->data;
    struct seeder *s = sc->s;
    struct world *w = s->w;
    (void)ub;
    if (sc->closing)
        return;
    if (nread < 0) {
        sc_close(sc);
        return;
    }
    sc->in.len += (size_t)nread;
    struct buf out;
    buf_init(&out, 0);
    size_t off = 0;
    if (!sc->handshaked) {
        if (sc->in.len < HANDSHAKE_LEN)
            return;
        struct handshake h;
        rv_error_t err;
        if (handshake_parse(sc->in.data, sc->in.len, &h, &err) != 1 ||
            memcmp(h.info_hash, w->info->info_hash, 20) != 0) {
            s->bad_msgs++;
            sc_close(sc);
            return;
        }
        struct handshake ours;
        memset(&ours, 0, sizeof(ours));
        memcpy(ours.info_hash, w->info->info_hash, 20);
        memcpy(ours.peer_id, "-FK0001-seeder00000", 20);
        ours.peer_id[19] = (uint8_t)('0' + s->idx);
        uint8_t hs[HANDSHAKE_LEN];
        handshake_build(hs, &ours);
        buf_append(&out, hs, sizeof(hs));
        sc_opening(sc, &out);
        sc->handshaked = true;
        off = HANDSHAKE_LEN;
    }
    for (;;) {
        struct wire_msg m;
        size_t used;
        rv_error_t err;
        int rc = wire_decode(sc->in.data + off, sc->in.len - off, &w->lim, &m, &used, &err);
        if (rc < 0) {
            print_message("seeder %d: the engine sent something wrong: %s\n", s->idx, err.msg);
            s->bad_msgs++;
            sc_send(sc, &out);
            buf_free(&out);
            sc_close(sc);
            return;
        }
        if (rc == 0)
            break;
        sc_handle(sc, &m, &out);
        off += used;
    }
    memmove(sc->in.data, sc->in.data + off, sc->in.len - off);
    sc->in.len -= off;
    sc_send(sc, &out);
    buf_free(&out);
}

static void seeder_accept(uv_stream_t *server, int status)
{
    struct seeder *s = server->data;
    if (status != 0)
        return;
    struct sconn *sc = calloc(1, sizeof(*sc));
    assert_non_null(sc);
    sc->s = s;
    buf_init(&sc->in, 0);
    uv_tcp_init(server->loop, &sc->tcp);
    sc->tcp.data = sc;
    sc->next = s->conns;
    s->conns = sc;
    if (uv_accept(server, (uv_stream_t *)&sc->tcp) != 0) {
        sc_close(sc);
        return;
    }
    s->accepts++;
    uv_read_start((uv_stream_t *)&sc->tcp, sc_alloc, sc_read);
}

/* Paced seeders serve one queued block per connection per tick; a framer unchokes again. */
static void seeder_tick(uv_timer_t *t)
{
    struct seeder *s = t->data;
    for (struct sconn *sc = s->conns; sc != NULL; sc = sc->next) {
        if ((s->script == FRAMER || s->script == FLAPPER) && sc->choked && !sc->closing &&
            sc->handshaked) {
            sc->choked = false;
            sc->nqueue = 0;
            struct buf out;
            buf_init(&out, 0);
            wire_put_simple(&out, WIRE_UNCHOKE);
            sc_send(sc, &out);
            buf_free(&out);
            continue;
        }
        if (sc->unchoke_pending && uv_now(t->loop) >= sc->unchoke_at && !sc->closing) {
            sc->unchoke_pending = false;
            struct buf out;
            buf_init(&out, 0);
            wire_put_simple(&out, WIRE_UNCHOKE);
            sc_send(sc, &out);
            buf_free(&out);
        }
        if (sc->closing || sc->nqueue == 0)
            continue;
        struct block_ref r = sc->queue[0];
        memmove(&sc->queue[0], &sc->queue[1], (sc->nqueue - 1) * sizeof(sc->queue[0]));
        sc->nqueue--;
        struct buf out;
        buf_init(&out, 0);
        sc_serve(sc, &r, &out);
        sc_send(sc, &out);
        buf_free(&out);
    }
}

static struct seeder *add_seeder(struct world *w, const char *ip, enum script script)
{
    assert_true(w->nseeders < MAX_SEEDERS);
    struct seeder *s = &w->seeders[w->nseeders];
    s->w = w;
    s->idx = (int)w->nseeders++;
    s->script = script;
    s->choke_after = 3;
    struct sockaddr_in sa;
    assert_int_equal(uv_ip4_addr(ip, 0, &sa), 0);
    uv_tcp_init(&w->loop, &s->server);
    s->server.data = s;
    s->server_open = true;
    assert_int_equal(uv_tcp_bind(&s->server, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->server, 8, seeder_accept), 0);
    int len = sizeof(sa);
    assert_int_equal(uv_tcp_getsockname(&s->server, (struct sockaddr *)&sa, &len), 0);
    snprintf(s->addr, sizeof(s->addr), "%s:%u", ip, (unsigned)ntohs(sa.sin_port));
    uv_timer_init(&w->loop, &s->timer);
    s->timer.data = s;
    s->timer_open = true;
    return s;
}

static void close_seeders(struct world *w)
{
    for (size_t i = 0; i < w->nseeders; i++) {
        struct seeder *s = &w->seeders[i];
        if (s->server_open) {
            s->server_open = false;
            uv_close((uv_handle_t *)&s->server, NULL);
        }
        if (s->timer_open) {
            s->timer_open = false;
            uv_close((uv_handle_t *)&s->timer, NULL);
        }
        for (struct sconn *sc = s->conns; sc != NULL; sc = sc->next)
            sc_close(sc);
    }
}

/* ---- the session ---- */

static void on_event(void *ud, const rv_event_t *ev)
{
    struct world *w = ud;
    assert_true(w->nevs < MAX_EVENTS);
    struct ev *e = &w->evs[w->nevs++];
    e->type = ev->type;
    e->piece = ev->piece;
    e->code = ev->code;
    e->msg = strdup(ev->message ? ev->message : "");
    assert_false(w->stopped); /* nothing after 'stopped' */
    switch (ev->type) {
    case RV_EVENT_PIECE_VERIFIED:
        assert_true(ev->piece < w->npieces);
        assert_false(w->verified[ev->piece]);
        w->verified[ev->piece] = true;
        w->nverified++;
        if (w->stop_after != 0 && w->nverified == w->stop_after && !w->stop_called) {
            /* From inside the callback, as a program reacting to progress would. */
            w->stop_called = true;
            w->stop_called_ms = uv_now(&w->loop);
            rv_session_stop(w->s);
        }
        break;
    case RV_EVENT_STOPPED:
        w->stopped = true;
        w->stopped_ms = uv_now(&w->loop);
        close_seeders(w);
        uv_close((uv_handle_t *)&w->watchdog, NULL);
        break;
    default:
        break;
    }
}

static void on_watchdog(uv_timer_t *t)
{
    struct world *w = t->data;
    if (w->watchdog_fires++ == 0) {
        w->timed_out = true;
        rv_session_stop(w->s);
        uv_timer_start(t, on_watchdog, 3000, 0);
    } else {
        w->hung = true;
        uv_stop(&w->loop);
    }
}

/* Runs the session against the seeders until the torrent stops (finished, stopped or the
 * watchdog), then frees the session. Returns with the loop closed. */
static void world_run(struct world *w)
{
    for (size_t i = 0; i < w->nseeders; i++) {
        struct seeder *s = &w->seeders[i];
        unsigned period = s->delay_ms ? s->delay_ms : s->unchoke_ms || s->script == FLAPPER ? 5 : 0;
        if (period > 0)
            uv_timer_start(&s->timer, seeder_tick, period, period);
    }
    rv_session_opts_t so = {.on_event = on_event, .event_ud = w, .max_memory = w->max_memory};
    assert_int_equal(rv_session_new(&w->loop, &so, &w->s), 0);
    const char *peers[MAX_SEEDERS];
    for (size_t i = 0; i < w->nseeders; i++)
        peers[i] = w->seeders[i].addr;
    rv_add_opts_t ao = {
        .save_dir = w->out, .peers = peers, .peer_count = w->nseeders, .no_trackers = true};
    rv_torrent_info_t *ti;
    rv_error_t err;
    assert_int_equal(rv_torrent_parse(w->torrent, w->torrent_len, 0, &ti, &err), 0);
    int rc = rv_session_add_info(w->s, ti, &ao, &w->t, &err);
    if (rc != 0)
        fail_msg("rv_session_add_info: %s", err.msg);
    uv_timer_init(&w->loop, &w->watchdog);
    w->watchdog.data = w;
    uv_timer_start(&w->watchdog, on_watchdog, CASE_MS, 0);
    w->started_ms = uv_now(&w->loop);
    w->running = true;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    w->running = false;
    if (w->hung)
        fail_msg("the torrent did not stop within 3 s of rv_session_stop");
    assert_true(w->stopped);
    rv_torrent_status(w->t, &w->st);
    rv_session_stats(w->s, &w->ss);
    rv_session_free(w->s);
    w->s = NULL;
    w->loop_closed = true;
    assert_int_equal(uv_loop_close(&w->loop), 0);
    if (w->timed_out)
        print_message("case timed out after %d ms: %u of %u pieces\n", CASE_MS, w->nverified,
                      w->npieces);
}

/* ---- checks ---- */

static size_t count_events(const struct world *w, rv_event_type_t type)
{
    size_t n = 0;
    for (size_t i = 0; i < w->nevs; i++)
        n += w->evs[i].type == type;
    return n;
}

/* The first event of type whose message starts with "addr:" or "addr " (connected events
 * name the client after a space); NULL if none. */
static const struct ev *event_for(const struct world *w, rv_event_type_t type, const char *addr)
{
    size_t n = strlen(addr);
    for (size_t i = 0; i < w->nevs; i++) {
        const struct ev *e = &w->evs[i];
        if (e->type == type && strncmp(e->msg, addr, n) == 0 &&
            (e->msg[n] == ':' || e->msg[n] == ' '))
            return e;
    }
    return NULL;
}

static void dump_events(const struct world *w)
{
    static const char *names[] = {"verified", "failed", "finished", "error",  "connected",
                                  "dropped",  "banned", "tracker",  "stopped"};
    for (size_t i = 0; i < w->nevs; i++) {
        if (w->evs[i].type == RV_EVENT_PIECE_VERIFIED)
            continue;
        print_message("  event %zu: %s piece %u code %d '%s'\n", i, names[w->evs[i].type],
                      w->evs[i].piece, w->evs[i].code, w->evs[i].msg);
    }
}

/* Finished, stopped last, every file byte-identical (the empty one too), status at 100%. */
static void assert_complete(struct world *w)
{
    if (count_events(w, RV_EVENT_FINISHED) != 1 || w->timed_out) {
        dump_events(w);
        fail_msg("not finished: %u of %u pieces verified", w->nverified, w->npieces);
    }
    size_t fin = 0;
    for (size_t i = 0; i < w->nevs; i++)
        if (w->evs[i].type == RV_EVENT_FINISHED)
            fin = i;
    assert_int_equal(w->evs[w->nevs - 1].type, RV_EVENT_STOPPED);
    assert_int_equal(w->evs[w->nevs - 1].code, 0);
    assert_true(fin < w->nevs - 1);
    assert_int_equal(count_events(w, RV_EVENT_STOPPED), 1);
    assert_int_equal(count_events(w, RV_EVENT_ERROR), 0);
    assert_int_equal(w->nverified, w->npieces);

    uint8_t *got = read_space(w, w->out);
    for (uint32_t p = 0; p < w->npieces; p++) {
        uint64_t off = (uint64_t)p * w->plen;
        uint32_t len = p == w->npieces - 1 ? w->last_len : w->plen;
        if (memcmp(got + off, w->payload + off, len) != 0)
            fail_msg("piece %u differs from the payload", p);
    }
    free(got);
    char path[1200];
    for (size_t i = 0; i < w->info->file_count; i++) {
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", w->out, w->info->files[i].path);
        if (stat(path, &st) != 0)
            fail_msg("%s missing", w->info->files[i].path);
        assert_int_equal((uint64_t)st.st_size, w->info->files[i].length);
    }

    assert_int_equal(w->st.state, RV_STATE_STOPPED);
    assert_int_equal(w->st.pieces_have, w->npieces);
    assert_int_equal(w->st.pieces_total, w->npieces);
    assert_int_equal(w->st.bytes_have, w->total);
    assert_int_equal(w->st.bytes_total, w->total);
    assert_true(w->st.downloaded >= w->total);
    assert_int_equal(w->st.peers_connected, 0);
    assert_int_equal(w->st.peers_connecting, 0);
    assert_int_equal(w->st.error_code, 0);
    for (size_t i = 0; i < w->nseeders; i++)
        assert_int_equal(w->seeders[i].bad_msgs, 0);
}

/* Blocks in the torrent: blocks never cross a piece boundary. */
static unsigned block_count(const struct world *w)
{
    unsigned per = (w->plen + RV_BLOCK_SIZE - 1) / RV_BLOCK_SIZE;
    return (w->npieces - 1) * per + (w->last_len + RV_BLOCK_SIZE - 1) / RV_BLOCK_SIZE;
}

static const uint32_t piece_sizes[] = {16384, 32768};
#define NSIZES (sizeof(piece_sizes) / sizeof(piece_sizes[0]))

/* ---- (a) one honest seeder ---- */

static void test_one_seeder(void **state)
{
    (void)state;
    for (size_t k = 0; k < NSIZES; k++) {
        struct world *w = world_new(piece_sizes[k]);
        struct seeder *s = add_seeder(w, "127.0.0.1", HONEST);
        world_run(w);
        assert_complete(w);
        assert_int_equal(count_events(w, RV_EVENT_PIECE_FAILED), 0);
        assert_int_equal(count_events(w, RV_EVENT_PEER_BANNED), 0);
        assert_int_equal(count_events(w, RV_EVENT_PEER_DROPPED), 0);
        assert_non_null(event_for(w, RV_EVENT_PEER_CONNECTED, s->addr));
        assert_int_equal(s->accepts, 1);
        /* One seeder: no end-game duplicates, every block asked once. */
        assert_int_equal(w->st.downloaded, w->total);
        assert_int_equal(w->st.wasted, 0);
        assert_int_equal(s->served, block_count(w));
        /* Pieces completing together go to disk together (piece_complete holds a piece
         * whose neighbour is arriving): fewer disk jobs than pieces, the final sync and
         * resume work included. One job per piece would be npieces and more. */
        print_message("%u-byte pieces: %u pieces in %llu disk jobs\n", w->plen, w->npieces,
                      (unsigned long long)w->ss.disk_jobs);
        assert_true(w->ss.disk_jobs < w->npieces);
        world_free(w);
    }
}

/* ---- (b) two honest seeders ---- */

static void test_two_seeders(void **state)
{
    (void)state;
    for (size_t k = 0; k < NSIZES; k++) {
        struct world *w = world_new(piece_sizes[k]);
        struct seeder *a = add_seeder(w, "127.0.0.1", HONEST);
        struct seeder *b = add_seeder(w, "127.0.0.1", HONEST);
        world_run(w);
        assert_complete(w);
        assert_int_equal(count_events(w, RV_EVENT_PIECE_FAILED), 0);
        assert_int_equal(count_events(w, RV_EVENT_PEER_BANNED), 0);
        print_message("%u-byte pieces: seeder A served %u blocks, B %u (%u cancels)\n", w->plen,
                      a->served, b->served, a->cancels + b->cancels);
        assert_true(a->served > 0);
        assert_true(b->served > 0);
        world_free(w);
    }
}

/* ---- a peer that chokes whenever it is asked ---- */

/* Its first requests each time are answered with a choke and no block, an unchoke follows a
 * tick later; after eight such flaps it serves. With memory for two pieces, each flap leaves
 * the pieces it was asked for started here with nothing in them: their buffers must come
 * back, or they keep every other piece from starting (the download then stalls until the
 * picker happens to start those very pieces again). */
static void test_flapper(void **state)
{
    (void)state;
    for (size_t k = 0; k < NSIZES; k++) {
        struct world *w = world_new(piece_sizes[k]);
        w->max_memory = 2 * (size_t)piece_sizes[k];
        struct seeder *s = add_seeder(w, "127.0.0.1", FLAPPER);
        s->choke_after = 8;
        world_run(w);
        assert_complete(w);
        assert_int_equal(s->faults, 8);
        assert_int_equal(count_events(w, RV_EVENT_PIECE_FAILED), 0);
        print_message("%u-byte pieces: %u flaps, then %u blocks served\n", w->plen, s->faults,
                      s->served);
        world_free(w);
    }
}

/* ---- (c) a liar and an honest seeder ---- */

static void test_liar_banned(void **state)
{
    (void)state;
    for (size_t k = 0; k < NSIZES; k++) {
        struct world *w = world_new(piece_sizes[k]);
        /* Bans are per IP address: the liar has an address of its own. */
        struct seeder *liar = add_seeder(w, "127.0.0.2", LIAR);
        struct seeder *good = add_seeder(w, "127.0.0.1", HONEST);
        world_run(w);
        if (event_for(w, RV_EVENT_PEER_BANNED, good->addr) != NULL) {
            dump_events(w);
            fail_msg("%u-byte pieces: the honest seeder was banned", w->plen);
        }
        assert_complete(w);
        assert_true(count_events(w, RV_EVENT_PIECE_FAILED) >= 1);
        const struct ev *e = event_for(w, RV_EVENT_PEER_BANNED, liar->addr);
        if (e == NULL) {
            dump_events(w);
            fail_msg("the liar was not banned");
        }
        assert_non_null(strstr(e->msg, "hash"));
        assert_int_equal(count_events(w, RV_EVENT_PEER_BANNED), 1);
        assert_int_equal(w->st.peers_banned, 1);
        assert_int_equal(w->st.pieces_failed, count_events(w, RV_EVENT_PIECE_FAILED));
        assert_true(w->st.wasted > 0);
        /* Banned: never connected again. */
        assert_int_equal(liar->accepts, 1);
        print_message("%u-byte pieces: liar served %u blocks, %zu pieces failed\n", w->plen,
                      liar->served, count_events(w, RV_EVENT_PIECE_FAILED));
        world_free(w);
    }
}

/* A liar that never sends a whole piece: one corrupt block, then a choke (the rest of its
 * requests go to the honest seeder), an unchoke 20 ms later, and again. Every failed piece
 * then has two contributors. Only the liar may be banned. */
static void test_liar_shares_pieces(void **state)
{
    (void)state;
    /* ENGINE BUG (torrent.c on_piece_stored, "a second strike bans"): every contributor to a
     * failed piece gets a strike, so after two shared failures the honest seeder is banned
     * with the liar and the download stalls (this case then waits CASE_MS). Fails until the
     * ban rule weighs good pieces too; see the report. */
    for (size_t k = 0; k < NSIZES; k++) {
        struct world *w = world_new(piece_sizes[k]);
        struct seeder *liar = add_seeder(w, "127.0.0.2", FRAMER);
        liar->delay_ms = 20;
        struct seeder *good = add_seeder(w, "127.0.0.1", HONEST);
        good->delay_ms = 4; /* slow enough for the liar to get several turns */
        world_run(w);
        print_message("%u-byte pieces: liar served %u blocks, %zu pieces failed\n", w->plen,
                      liar->served, count_events(w, RV_EVENT_PIECE_FAILED));
        if (event_for(w, RV_EVENT_PEER_BANNED, good->addr) != NULL) {
            dump_events(w);
            fail_msg("%u-byte pieces: the honest seeder was banned", w->plen);
        }
        assert_complete(w);
        assert_true(count_events(w, RV_EVENT_PIECE_FAILED) >= 1);
        world_free(w);
    }
}

/* ---- (d) one protocol fault each, beside an honest seeder ---- */

static void hostile(enum script script, const char *want)
{
    for (size_t k = 0; k < NSIZES; k++) {
        struct world *w = world_new(piece_sizes[k]);
        struct seeder *bad = add_seeder(w, "127.0.0.2", script);
        struct seeder *good = add_seeder(w, "127.0.0.1", HONEST);
        world_run(w);
        assert_true(bad->faults > 0);
        assert_null(event_for(w, RV_EVENT_PEER_DROPPED, good->addr));
        const struct ev *e = event_for(w, RV_EVENT_PEER_DROPPED, bad->addr);
        if (want == NULL) {
            /* Tolerated (see the case): never dropped, its bytes never used. */
            assert_null(e);
        } else if (e == NULL || strstr(e->msg, want) == NULL) {
            dump_events(w);
            fail_msg("%u-byte pieces: no drop of %s naming \"%s\"", w->plen, bad->addr, want);
        } else {
            assert_int_equal(e->code, RV_EPROTO);
        }
        assert_complete(w);
        assert_int_equal(count_events(w, RV_EVENT_PIECE_FAILED), 0);
        assert_int_equal(count_events(w, RV_EVENT_PEER_BANNED), 0);
        world_free(w);
    }
}

static void test_bad_bitfield_length(void **state)
{
    (void)state;
    hostile(BITFIELD_LEN, "bitfield of");
}

static void test_bitfield_spare_bits(void **state)
{
    (void)state;
    hostile(SPARE_BITS, "spare bits");
}

static void test_second_bitfield(void **state)
{
    (void)state;
    /* A later bitfield is taken as haves (aria2 sends one instead of several haves, and
     * libtorrent accepts it): the peer stays, and the download still completes. */
    hostile(SECOND_BITFIELD, NULL);
}

static void test_have_past_end(void **state)
{
    (void)state;
    hostile(HAVE_PAST_END, "have for piece");
}

static void test_block_past_piece_end(void **state)
{
    (void)state;
    hostile(PAST_PIECE_END, "runs past the piece end");
}

static void test_block_wrong_length(void **state)
{
    (void)state;
    /* ENGINE BUG: as test_second_bitfield, the reason "sent N bytes for a M-byte block" is
     * lost in conn_close; fails until that is fixed. */
    hostile(WRONG_LEN, "bytes for a");
}

static void test_oversize_prefix(void **state)
{
    (void)state;
    hostile(HUGE_PREFIX, "4294967295");
}

static void test_unrequested_block(void **state)
{
    (void)state;
    /* A block we never asked for is ignored and counted as waste, by design (torrent.c
     * handle_block: it may be a late answer to a cancelled request); the garbage in it must
     * never reach the files. See the report for a policy that would drop such peers. */
    for (size_t k = 0; k < NSIZES; k++) {
        struct world *w = world_new(piece_sizes[k]);
        add_seeder(w, "127.0.0.2", UNREQUESTED);
        add_seeder(w, "127.0.0.1", HONEST);
        world_run(w);
        assert_complete(w);
        assert_int_equal(count_events(w, RV_EVENT_PIECE_FAILED), 0);
        assert_true(w->st.wasted > 0);
        world_free(w);
    }
}

/* ---- (e) a seeder that chokes for good ---- */

/* The choker gets the first requests (the honest seeder unchokes 100 ms later), serves three
 * blocks and chokes. BEP 3: its other requests are void, so they must go to the honest seeder
 * as plain requests: nothing is cancelled at the choker, nothing arrives twice. */
static void test_choke_midway(void **state)
{
    (void)state;
    for (size_t k = 0; k < NSIZES; k++) {
        struct world *w = world_new(piece_sizes[k]);
        struct seeder *choker = add_seeder(w, "127.0.0.2", CHOKER);
        struct seeder *good = add_seeder(w, "127.0.0.1", HONEST);
        good->unchoke_ms = 100;
        world_run(w);
        assert_complete(w);
        assert_int_equal(choker->served, choker->choke_after);
        assert_true(choker->requests > choker->choke_after);
        assert_int_equal(choker->cancels, 0);
        assert_int_equal(good->served, block_count(w) - choker->choke_after);
        assert_int_equal(w->st.downloaded, w->total);
        assert_int_equal(count_events(w, RV_EVENT_PIECE_FAILED), 0);
        print_message("%u-byte pieces: choker served %u, honest %u; finished in %llu ms\n", w->plen,
                      choker->served, good->served,
                      (unsigned long long)(w->stopped_ms - w->started_ms));
        world_free(w);
    }
}

/* ---- (f) stopping halfway ---- */

static void test_stop_midway(void **state)
{
    (void)state;
    for (size_t k = 0; k < NSIZES; k++) {
        struct world *w = world_new(piece_sizes[k]);
        /* Slow, one block per 10 ms, and choking for good after half the blocks: the stop
         * lands with most of the torrent missing even when a loaded machine delays the disk
         * callbacks until every piece served has arrived (the stop waits for those). */
        struct seeder *s = add_seeder(w, "127.0.0.1", CHOKER);
        s->delay_ms = 10;
        s->choke_after = block_count(w) / 2;
        w->stop_after = 3;
        world_run(w);
        assert_true(w->stop_called);
        assert_false(w->timed_out);
        assert_int_equal(count_events(w, RV_EVENT_FINISHED), 0);
        assert_int_equal(count_events(w, RV_EVENT_ERROR), 0);
        assert_int_equal(w->evs[w->nevs - 1].type, RV_EVENT_STOPPED);
        assert_int_equal(w->evs[w->nevs - 1].code, 0);
        assert_true(w->stopped_ms - w->stop_called_ms < 1000);
        assert_int_equal(w->st.state, RV_STATE_STOPPED);
        assert_int_equal(w->st.pieces_have, w->nverified);
        assert_true(w->nverified >= 3);
        assert_true(w->nverified < w->npieces);

        /* Every piece on disk is either exactly the payload or not there at all (zeros), and
         * every piece reported verified is there. A stop waits for the pieces with the disk
         * (and sends complete pieces waiting for a neighbour to it), so every piece on disk
         * was reported. */
        uint8_t *got = read_space(w, w->out);
        unsigned unreported = 0;
        for (uint32_t p = 0; p < w->npieces; p++) {
            uint64_t off = (uint64_t)p * w->plen;
            uint32_t len = p == w->npieces - 1 ? w->last_len : w->plen;
            bool same = memcmp(got + off, w->payload + off, len) == 0;
            bool zero = true;
            for (uint32_t i = 0; i < len && zero; i++)
                zero = got[off + i] == 0;
            if (w->verified[p] && !same)
                fail_msg("piece %u was reported verified but differs on disk", p);
            if (!w->verified[p] && !zero) {
                if (!same)
                    fail_msg("piece %u was never verified, yet other data is on disk", p);
                unreported++;
            }
        }
        free(got);
        assert_int_equal(unreported, 0);
        print_message("%u-byte pieces: stopped with %u of %u pieces verified, %u blocks "
                      "served\n",
                      w->plen, w->nverified, w->npieces, s->served);
        world_free(w);
    }
}

/* ---- (g) 1 MiB pieces: lockstep, where sha1x's lanes gain here ---- */

/* The files forty times as large: 27 MB in 26 pieces of 1 MiB, their chunks straddling the
 * files' boundaries. From one honest seeder (most bytes in the lanes where they gain), from
 * a liar beside an honest one (its pieces fail their hash when their last chunk is hashed,
 * after the chunks were written; it is banned, the pieces come again), from a peer choking
 * whenever asked, and stopped halfway: every verified piece is on disk, and nothing but the
 * payload or zeros is anywhere (chunks of pieces not yet verified may be there). */
static void test_lockstep(void **state)
{
    (void)state;
    const uint32_t plen = 1u << 20;
    file_scale = 40;
    torrent_lockstep_always = true; /* also where the lanes do not gain, and under ASan */
    for (int c = 0; c < 4; c++) {
        struct world *w = world_new(plen);
        struct seeder *liar = NULL, *s = NULL;
        if (c == 1)
            liar = add_seeder(w, "127.0.0.2", LIAR);
        if (c == 3) {
            s = add_seeder(w, "127.0.0.1", CHOKER);
            s->delay_ms = 1;
            s->choke_after = block_count(w) / 2;
            w->stop_after = 4;
        } else {
            s = add_seeder(w, "127.0.0.1", c == 2 ? FLAPPER : HONEST);
            s->choke_after = c == 2 ? 8 : 0;
        }
        world_run(w);
        if (c == 3) {
            assert_true(w->stop_called);
            assert_int_equal(w->evs[w->nevs - 1].type, RV_EVENT_STOPPED);
            assert_true(w->nverified >= 4 && w->nverified < w->npieces);
            uint8_t *got = read_space(w, w->out);
            for (uint32_t p = 0; p < w->npieces; p++) {
                uint64_t off = (uint64_t)p * w->plen;
                uint32_t len = p == w->npieces - 1 ? w->last_len : w->plen;
                if (w->verified[p] && memcmp(got + off, w->payload + off, len) != 0)
                    fail_msg("piece %u was reported verified but differs on disk", p);
                for (uint32_t i = 0; i < len; i++)
                    if (got[off + i] != 0 && got[off + i] != w->payload[off + i])
                        fail_msg("piece %u: byte %u is neither the payload's nor zero", p, i);
            }
            free(got);
        } else {
            assert_complete(w);
        }
        if (c == 1) {
            assert_true(count_events(w, RV_EVENT_PIECE_FAILED) >= 1);
            assert_non_null(event_for(w, RV_EVENT_PEER_BANNED, liar->addr));
        } else {
            assert_int_equal(count_events(w, RV_EVENT_PIECE_FAILED), 0);
        }
        /* lockstep: pieces in 256 KiB chunks, a write job for every few; chunks that follow
         * each other in a file (and, since chunk_write, meet on a page) may share a write */
        assert_true(w->ss.disk_writes >= (uint64_t)w->nverified);
        assert_true(w->ss.disk_jobs >= (uint64_t)w->nverified);
        if (c == 0) {
            assert_int_equal(w->ss.hash_bytes, w->total);
            if (sha1x_min_messages() > 0)
                assert_true(w->ss.hash_lane_bytes > w->total / 2);
            /* the seeder answers in the order asked: most blocks go straight to their chunk */
            assert_true(w->ss.blocks_in_place > w->ss.blocks_in / 2);
            /* no piece starts on a page of its file, yet the page two chunks share goes with
             * one of them (chunk_write): the direct writes' partial pages are at piece edges
             * mostly, two a MiB, where each of its four chunks had two (4.9 a MiB here) */
            assert_true(w->ss.disk_edge_writes * (1u << 20) <= 3 * w->ss.disk_direct_bytes + 4);
        }
        print_message(
            "%s: %u of %u pieces, %llu of %llu bytes hashed in lanes, %llu of %llu "
            "blocks received in place, %llu partial pages around %llu bytes written "
            "direct\n",
            c == 0   ? "honest"
            : c == 1 ? "liar and honest"
            : c == 2 ? "flapper"
                     : "stopped halfway",
            w->nverified, w->npieces, (unsigned long long)w->ss.hash_lane_bytes,
            (unsigned long long)w->ss.hash_bytes, (unsigned long long)w->ss.blocks_in_place,
            (unsigned long long)w->ss.blocks_in, (unsigned long long)w->ss.disk_edge_writes,
            (unsigned long long)w->ss.disk_direct_bytes);
        world_free(w);
    }
    file_scale = 1;
    torrent_lockstep_always = false;
}

static int teardown(void **state)
{
    (void)state;
    if (current != NULL) {
        /* A world that never ran still has an open (empty) loop: close it. */
        if (current->s == NULL && !current->loop_closed && !current->running)
            uv_loop_close(&current->loop);
        world_free(current);
    }
    return 0;
}

int main(void)
{
    /* As session.h asks of programs using the library: a peer or server that hangs up while
     * we write is an error on that connection (EPIPE), not the end of this process. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_one_seeder, teardown),
        cmocka_unit_test_teardown(test_two_seeders, teardown),
        cmocka_unit_test_teardown(test_flapper, teardown),
        cmocka_unit_test_teardown(test_liar_banned, teardown),
        cmocka_unit_test_teardown(test_liar_shares_pieces, teardown),
        cmocka_unit_test_teardown(test_bad_bitfield_length, teardown),
        cmocka_unit_test_teardown(test_bitfield_spare_bits, teardown),
        cmocka_unit_test_teardown(test_second_bitfield, teardown),
        cmocka_unit_test_teardown(test_have_past_end, teardown),
        cmocka_unit_test_teardown(test_block_past_piece_end, teardown),
        cmocka_unit_test_teardown(test_block_wrong_length, teardown),
        cmocka_unit_test_teardown(test_oversize_prefix, teardown),
        cmocka_unit_test_teardown(test_unrequested_block, teardown),
        cmocka_unit_test_teardown(test_choke_midway, teardown),
        cmocka_unit_test_teardown(test_stop_midway, teardown),
        cmocka_unit_test_teardown(test_lockstep, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
