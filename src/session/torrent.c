/* The download engine of one torrent. Owns: the peers (each a conn plus struct peer), the
 * candidates to connect to, the picker, piece buffers (bounded by max_memory), storage and
 * the announcer. Everything here runs on the loop thread. */
#include "session/torrent.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bencode/bencode.h"
#include "dht/dht.h"
#include "metainfo/layout.h"
#include "metainfo/select.h"
#include "peer/conn.h"
#include "peer/ext.h"
#include "storage/resume.h"
#include "storage/storage.h"
#include "swarm/metadata.h"
#include "swarm/peers.h"
#include "swarm/picker.h"
#include "tracker/announcer.h"
#include "util/bitfield.h"
#include "util/copy.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/hex.h"
#include "util/rand.h"
#include "util/sha.h"
#include "util/sha1x.h"
#include "util/stats.h"

#define TICK_MS 1000
#define MAX_PIPELINE 250
/* A peer whose round trip is under NEAR_RTT_US (same host or LAN) refills the pipe within a
 * fraction of a millisecond: NEAR_PIPELINE blocks keep it busy, and each block in flight holds
 * part of a piece buffer, so a deeper queue there only costs memory. */
#ifndef NEAR_PIPELINE
#define NEAR_PIPELINE 32
#endif
#define NEAR_RTT_US 5000
#define MIN_PIPELINE 4
#ifndef REQUEST_BATCH
#define REQUEST_BATCH 8 /* free request slots filled together (at most half the queue) */
#endif
#define START_PIPELINE 32
#ifndef WRITE_QUEUE_BYTES
#define WRITE_QUEUE_BYTES (2u << 20) /* pieces with the disk before no new one is started... */
#endif
#ifndef PIECES_IN_MEMORY_BYTES
#define PIECES_IN_MEMORY_BYTES (6u << 20) /* ...once this much piece data is in memory */
#endif
/* Complete pieces next to a piece still arriving wait for it, up to this many bytes, and go to
 * disk in one job with one write: a direct write costs about as much CPU for 256 KiB as for
 * 1 MiB (dd: 0.21-0.28 s of system time per GiB in 256 KiB writes, 0.08-0.11 in 1 MiB). The
 * job hashes the run's pieces side by side where that gains (sha1x: five or more then):
 * 1 GiB in 256 KiB pieces, rivulet to rivulet, took 0.35-0.39 s of hashing in runs of 2 MiB
 * against 0.68-0.71 in runs of 1 MiB, and the leecher 0.66-0.73 CPU s against 0.97-1.06; runs
 * of 4 MiB saved a little more CPU (0.62-0.63) but took longer (1.0 s against 0.86-0.97). */
#ifndef WRITE_RUN_BYTES
#define WRITE_RUN_BYTES (2u << 20)
#endif
/* Pieces this large go to disk as they complete: runs of them gave nothing (1 MiB pieces in
 * runs of 4 MiB: 1.02-1.07 CPU s/GiB against 0.97-1.08, and a lower rate). */
#define RUN_PIECE_MAX (1u << 20)
/* ...but only while pieces complete less than this far apart, and a held piece waits no
 * longer: slower, a write per piece costs nothing worth waiting for. */
#define RUN_WAIT_MS 10
/* Lockstep: pieces of 1 MiB and more, where sha1x's lanes gain on this CPU, are held in chunks
 * of LOCK_CHUNK and hashed as the chunks arrive, side by side. The picker keeps LOCK_SPREAD
 * pieces in progress and asks for their blocks row by row (picker_set_spread), so that the
 * same chunk of each piece comes in at about the same time; each chunk goes to the disk as
 * soon as it is in, a few to a job (storage_write_chunks), and, once LOCK_LANES chunks are in (or
 * every piece in progress has its next one in, or memory is short), to the lanes with the others
 * (storage_hash_chunks), and its memory goes back to the pool when both are done. One 1 MiB
 * piece alone cannot use the lanes (SHA-1 goes through it in order), and holding five or more
 * whole pieces for them would take the memory the peak RSS goal does not have. 1 GiB in 1 MiB
 * pieces, three rounds alternating with whole pieces (2026-12-06, an Intel Xeon): from one
 * libtorrent seeder 98 % of the bytes in the lanes, the leecher's CPU 0.96, 0.99, 1.04 s
 * against 1.30, 1.46, 1.36; from four 82-84 % in the lanes, 1.10, 1.16, 1.17 s against 1.16,
 * 1.33, 1.55; peak RSS within 0.3 MiB. Chunks of 128 KiB cost more system time in writes than
 * the lanes saved; 256 KiB writes cost little more than 1 MiB ones (dd: 0.23 s of system time
 * per GiB against 0.18). */
#ifndef LOCK_CHUNK
#define LOCK_CHUNK (256u << 10)
#endif
#ifndef LOCK_SPREAD
#define LOCK_SPREAD 8
#endif
#define LOCK_EXTRA 2 /* pieces in progress beyond the spread: the ones finishing */
/* Lockstep's writes are behind when this many write jobs are with the storage: a chunk then
 * waits on the disk long after its hash is done, holding memory the next row of requests
 * needs, so the next batch goes through the page cache unless the disk is idle
 * (storage_write_chunks' hurry). Rivulet to rivulet (where blocks come faster than this
 * virtual disk takes direct writes) 0.72-0.83 s for 1 GiB against 0.88-1.08 (2026-12-06,
 * 2 rounds each), 380 MB of it through the cache; from one libtorrent seeder 0.94 CPU s/GiB
 * against 0.90 (6 rounds alternating; 125 MB through the cache); from four the same
 * (1.13 against 1.16, 3 rounds). Two: as fast, more through the cache; four: slower. */
#ifndef WRITES_BEHIND
#define WRITES_BEHIND 3
#endif
/* Chunks that are in go to the disk LOCK_WRITE_BATCH to a job (storage_write_chunks), and
 * every chunk a hash pass takes is with the disk by then. A job per chunk was 4,670 jobs per
 * GiB; in fours, 1,830, and from one libtorrent seeder 1.05 CPU s/GiB against 1.11 (6 rounds
 * alternating, 2026-12-06; in twos 1.09, in eights no better). */
#ifndef LOCK_WRITE_BATCH
#define LOCK_WRITE_BATCH 4
#endif
_Static_assert(LOCK_WRITE_BATCH <= STORAGE_CHUNKS_MAX, "a batch fits one job");
#ifndef LOCK_LANES
#define LOCK_LANES 8
#endif
#define CHECK_JOBS 4 /* disk jobs checking data already there at once */
#define SNUB_MS 30000
#define RETRY_BASE_MS 3000
#define RETRY_MAX_MS 300000
#define MAX_CONTRIB 16
#define MAX_CANDIDATES 4096
#define MAX_UPLOAD_QUEUE 2048      /* a peer asking more than this at once is flooding (libtorrent
                                      accepts 2000 by default, and asks that many of slow peers) */
#define UPLOAD_BACKLOG (1u << 20)  /* bytes queued toward one peer before we wait for it */
#define LOOKAHEAD_REQUESTS 64      /* queued requests serve() looks through for the next piece */
#define CHOKE_TICKS 10             /* BEP 3 / mainline: rechoke every 10 s */
#define OPTIMISTIC_TICKS 30        /* rotate the optimistic unchoke every 30 s */
#define NEW_PEER_MS 60000          /* peers this new are three times as likely to be picked */
#define TRUST_MAX 8
#define TRUST_BAN (-7)
#define RESUME_SAVE_MS 30000 /* resume data is saved this often while pieces arrive */
#define ALLOWED_FAST_K 5     /* BEP 6 allowed-fast set we grant (libtorrent's default): enough
                                for a new peer to start trading, little traffic to choked peers */
#define MAX_ALLOWED_FAST 32  /* allowed-fast pieces we take from one peer */
#define MAX_SUGGESTED 8      /* suggest-piece hints kept per peer */
#define MAX_EARLY_HAVES 65536 /* haves kept from a peer before the metadata is known */
#define METADATA_PIPELINE 4  /* metadata blocks asked of one peer at once */
#define PEX_INTERVAL_MS 60000 /* BEP 11: at most one PEX message a minute */
#define PEX_FIRST_MS 2000    /* the first one, once the extended handshakes are done */
#define PEX_MAX_SENT 200     /* addresses remembered as told to one peer */
#define DHT_FEW_PEERS 8      /* below this many peers a downloading torrent asks the DHT */
#define DHT_RETRY_MS 60000   /* ... once a minute */
#define DHT_REANNOUNCE_MS (20u * 60 * 1000) /* BEP 5: re-announce every 15-30 minutes */
#define LATE_BLOCKS_MAX (2 * MAX_PIPELINE) /* blocks we may still see after cancelling them */
#define UNREQUESTED_MAX 16   /* blocks never asked for (nor cancelled) before a peer goes */

enum cand_state { CAND_NEW, CAND_CONNECTING, CAND_CONNECTED, CAND_WAIT, CAND_BANNED };

struct candidate {
    struct peer_addr addr;
    enum cand_state state;
    unsigned fails;
    unsigned proto_errs; /* connections it broke the protocol on: never reset by a good
                            handshake, so a peer that handshakes and then misbehaves is
                            retried less and less often like one we cannot reach */
    bool seed;        /* known to be a seed (PEX flag, or it was one when we met): a seed does
                         not dial it */
    int trust;        /* libtorrent's trust points: +1 per good piece it contributed to (up to
                         TRUST_MAX), -2 per failed one; banned at TRUST_BAN */
    uint64_t retry_ms;
    bool alt_next;    /* dial it once with the other handshake (see dial_crypto) */
};

struct peer {
    struct conn *conn;
    bool alt;         /* dialled with the other handshake (dial_crypto) */
    bool parole;      /* it shared in a piece that failed: it gets pieces of its own only
                         (picker_pick_alone) until one of them passes */
    rv_torrent_t *t;
    struct peer *next, *prev;
    struct bitfield have;
    bool handshaked;
    bool got_bitfield;
    bool am_interested, am_choking, peer_choking, peer_interested;
    bool snubbed;
    struct block_ref reqs[MAX_PIPELINE];
    size_t nreqs;
    unsigned depth;
    uint64_t downloaded, uploaded;
    uint64_t window, rate;
    uint64_t last_block_ms;
    uint64_t connected_ms;
    char client[21];
    /* extensions (BEP 6, 10, 9, 11, 21, 54) */
    bool fast, ext;            /* both sides set the bit */
    bool got_eh;               /* its extended handshake arrived */
    struct ext_handshake eh;
    bool upload_only;          /* BEP 21: it will not download */
    uint32_t allowed[MAX_ALLOWED_FAST]; /* pieces it lets us ask for while choking us */
    size_t nallowed;
    uint32_t granted[ALLOWED_FAST_K];   /* pieces we let it ask for while we choke it */
    size_t ngranted;
    uint32_t suggested[MAX_SUGGESTED];
    size_t nsuggested;
    /* before the metadata: what it said it has, checked once the piece count is known */
    uint8_t *early_bits;
    size_t early_bits_len;
    uint32_t *early_haves;
    size_t nearly, capearly;
    bool early_all;
    /* metadata exchange */
    unsigned md_asked;         /* blocks asked of it and not answered */
    bool md_refused;           /* it rejected a request: not asked again */
    /* PEX: the addresses we last told it about */
    struct peer_addr *pex_sent;
    size_t npex_sent;
    uint64_t pex_next_ms;
    uint8_t peer_id[20];
    unsigned late_ok;     /* requests we cancelled or dropped: their blocks may still come */
    unsigned unrequested; /* blocks it sent that we never asked for */
    /* uploading */
    struct block_ref *upq; /* the peer's requests: a ring of MAX_UPLOAD_QUEUE, oldest at uphead */
    size_t uphead, nupq;
    uint64_t up_window, up_rate;
    bool optimistic;
    struct limit_waiter uwait; /* waiting for upload tokens */
    size_t ucredit;            /* upload bytes granted and not yet sent */
};

struct cache_entry {
    uint32_t piece;
    uint32_t size;
    struct rcbuf *rb; /* shared with the writes sending its blocks (conn_put_ref) */
    bool valid;   /* rb holds the piece */
    bool loading; /* a read is in flight into rb */
    uint64_t last_use;
};

/* Resume data work on a worker: a load (path, read, compare the files) or a save (the files'
 * sizes and times, then the atomic write). Owned by the torrent while in flight. */
struct resume_job {
    uv_work_t work;
    rv_torrent_t *t;
    bool late;                   /* load: the download already began (no data was on disk), so
                                    only the path, totals and peers are taken */
    bool take_peers;             /* load: add its peers (not with no_trackers: .peers only) */
    bool final;                  /* the save at stop: written after the storage closed */
    const rv_torrent_info_t *ti; /* the torrent's, read-only while the job runs */
    const char *save_dir, *state_dir;
    char path[4096];         /* load: set by the work (empty if no path could be made) */
    struct resume_data rd;   /* load: what was read; save: the snapshot to write */
    struct bitfield suspect; /* load: pieces of files changed behind our back */
    int rc, changed;
    rv_error_t err;
};

/* Lockstep's chunks of piece memory, page-aligned, each with a count of its holders (the
 * piece, a write, a hash) after its chunk_size + PIECE_ALIGN bytes: handed out on the loop,
 * given back on any thread (a worker that wrote one). They lie side by side in one mapping
 * (the arena), in transparent huge pages where the system gives them (POOL_HUGE): each
 * direct write pins the pages of its chunk, and the receive copy and the lanes walk them;
 * 2 MiB pages make that one page where there were 64 or more. From one libtorrent seeder,
 * 5 rounds alternating (2026-12-06): 1.01 CPU s/GiB against 1.08, system time 0.33 s against
 * 0.44, done in 1.33 s against 1.45, peak RSS the same (a chunk is taken from the arena only
 * when the free ones run out, so the pages touched are the pool's high-water mark). */
#define POOL_HUGE (2u << 20)
struct chunk_pool {
    uv_mutex_t lock; /* guards free, nfree, allocated */
    bool ready;      /* lock initialised */
    size_t bytes;    /* each chunk's memory, before its count */
    size_t stride;   /* from one chunk to the next in the arena */
    uint8_t *arena;  /* cap chunks; arena_len bytes mapped */
    size_t arena_len;
    uint8_t **free;  /* nfree of them, up to cap */
    size_t nfree, cap;
    size_t allocated; /* chunks taken from the arena so far (at most cap) */
};

struct piece_buf {
    bool used;
    bool held; /* complete, waiting for its neighbours to go to disk with them */
    bool writing;
    uint32_t piece;
    uint32_t size;
    uint8_t *mem;  /* piece_length + piece_extra() bytes, page-aligned (not in lockstep) */
    uint8_t *data; /* the piece: mem + its shift (see piece_shift) */
    /* Lockstep: the piece's chunks (NULL until a block of one is asked for, and once it is
     * handed to a hash), the bytes in of each, each chunk's data that far into its memory
     * (piece_shift), the bytes hashed and their SHA-1 state, whether a hash job has the chunk
     * at hashed, its chunk writes in flight, and its verdict (1 until the last chunk is
     * hashed; then 0 or RV_EHASH). */
    uint8_t **chunk;
    uint32_t *filled;
    uint8_t *carried; /* CARRY_HEAD, CARRY_TAIL: a neighbour's bytes around chunk k's */
    uint32_t shift, hashed, writes;
    struct sha1_mid mid;
    bool hashing;
    int verdict;
    struct peer_addr contrib[MAX_CONTRIB];
    size_t ncontrib;
};

struct rv_torrent {
    struct session_ctx *ctx;
    rv_torrent_info_t *ti;      /* NULL while a magnet link's metadata is fetched */
    uint8_t info_hash[20];
    char *name;                 /* a magnet link's dn */
    char hex_name[41];
    bool is_private;
    bool no_resume, no_trackers;
    /* magnet links: the metadata exchange, then the .torrent saved on a worker */
    struct metadata md;
    char **magnet_trackers;
    size_t magnet_tracker_count;
    char *save_torrent;
    bool metadata_only;
    bool md_saving;
    uint64_t rejects_sent, rejects_received, pex_received;
    uint64_t fast_requested, fast_served; /* blocks asked/served under BEP 6 allowed fast */
    uint64_t dht_next_ms;       /* next DHT lookup (and announce) */
    /* file selection: the ranges asked for, per-file flags, wanted and boundary pieces */
    rv_file_range_t *sel;
    size_t nsel;
    uint8_t *file_sel;          /* NULL: every file */
    struct bitfield wanted, partial;
    uint32_t wanted_count, partial_done;
    uint64_t sel_total;         /* bytes of the selected files */
    uint64_t dht_peers;         /* peer addresses the DHT gave */
    bool has_ext_addr;
    struct peer_addr ext_addr;  /* our address as peers report it (BEP 10 yourip) */
    struct layout layout;
    struct picker *picker;
    struct storage *storage;
    struct announcer *announcer;
    struct peer_set known;
    struct candidate *cands;
    size_t ncands, capcands;
    struct peer *peers;
    unsigned npeers;      /* handshaked */
    unsigned nconns;      /* every conn not yet closed, connecting included */
    struct piece_buf *bufs;
    size_t nbufs;
    size_t nwriting;     /* buffers handed to the disk (hash and write), not yet back */
    size_t nheld;        /* complete pieces waiting for a neighbour (piece_buf.held) */
    uint64_t held_ms;    /* when the oldest of them was held */
    uint64_t complete_ms; /* when the last piece completed */
    size_t max_writing;  /* no new piece is started while this many are with the disk... */
    size_t soft_bufs;    /* ...and this many buffers are in use */
    bool lockstep;       /* pieces in chunks, hashed side by side as they arrive (LOCK_CHUNK) */
    uint32_t chunk_size, chunks_per_piece;
    struct chunk_pool pool;
    uint8_t **lock_chunks; /* nbufs * chunks_per_piece: each buffer's chunk array */
    uint32_t *lock_filled; /* ...and filled array */
    uint8_t *lock_carried; /* ...and carried array */
    size_t nlock_jobs;     /* chunk writes and hash passes with the storage */
    size_t nhash_jobs;     /* ...of them, hash passes */
    struct storage_chunk wq[LOCK_WRITE_BATCH]; /* chunks in, not yet with the disk */
    unsigned nwq;
    bool mem_short;        /* a pick found no chunk: one block per pick until one is back */
    /* The fewest chunks a pass hashes side by side while memory is short (sha1x_min_messages:
     * fewer go through libcrypto one at a time). From four libtorrent seeders the pool runs
     * short most of the time, and a pass forced then took what was in, often 1-4 chunks (185
     * of the first 512 passes of one download): 11 % of the bytes went through libcrypto.
     * Forced only when no block is asked for (else the next pass starts once this many are
     * in): every byte in the lanes, 0.74-0.86 CPU s/GiB against 0.74-0.89 and done 2-7 %
     * sooner (bench/download.sh, 4 seeders, 3 alternations of 2 runs, 2026-12-06). */
    unsigned lanes_gain;
    uint32_t *slot_of;    /* piece -> index in bufs, UINT32_MAX when none */
    uint32_t *free_slots; /* stack of unused indices in bufs */
    size_t nfree;
    struct bitfield have;
    struct bitfield mask; /* scratch: the pieces a peer may be asked for now */
    struct wire_limits limits;
    struct handshake hs;
    struct cache_entry *cache; /* read cache for uploads, whole pieces */
    size_t ncache;
    uint64_t uploaded, up_window, up_rate, refused;
    struct limit_bucket down_b, up_b; /* this torrent's rate limits */
    struct limit_chain down_chain, up_chain; /* {torrent, session} */
    unsigned ticks;
    double seed_ratio;
    int64_t seed_seconds;
    uint64_t seeding_since_ms;
    uv_timer_t tick;
    rv_torrent_state_t state;
    uint64_t downloaded, wasted, window, rate, bytes_have;
    unsigned pieces_failed, banned;
    int error_code;
    char error[256];
    /* checking data already on disk */
    uint32_t check_next, check_done;
    unsigned checks_in_flight;
    bool existing;   /* data was on disk at start */
    bool check_some; /* check only the pieces in check_set (resume data trusted) */
    bool checked;    /* the check (or the download without one) has begun downloading */
    struct bitfield check_set;
    uint32_t checks_started, resumed;
    /* resume data: loaded on a worker at start, saved every RESUME_SAVE_MS while pieces
     * arrive, on finishing and at stop; a piece is claimed only after a sync covered it */
    bool resume_on;    /* !no_resume and the load found a usable path */
    bool resume_busy;  /* a resume_job is on a worker: the torrent must not be freed */
    bool save_syncing; /* a storage_sync for save_job is in flight */
    bool save_again;   /* a save was asked while one was in flight */
    bool final_sync_started;
    struct resume_job *save_job;  /* the snapshot waiting for its sync */
    struct resume_job *final_job; /* synced, written once the storage has closed */
    char *save_dir, *state_dir;
    char *resume_file;
    uint32_t added_since_save;
    uint64_t last_save_ms;
    uint64_t base_up, base_down; /* totals of earlier sessions, from the resume data */
    /* a copy of the status for other threads (rv_session_start_thread) */
    pthread_mutex_t snap_lock;
    rv_torrent_status_t snap;
    /* stopping */
    bool stopping, storage_closing, storage_closed, announcer_stopped, tick_closed, stopped;
    uint64_t started_ms;
};

static void emit(rv_torrent_t *t, rv_event_type_t type, uint32_t piece, int code, const char *fmt,
                 ...) __attribute__((format(printf, 5, 6)));

static void emit(rv_torrent_t *t, rv_event_type_t type, uint32_t piece, int code, const char *fmt,
                 ...)
{
    if (t->ctx->opts.on_event == NULL)
        return;
    char msg[320] = "";
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
    }
    rv_event_t ev = {.type = type, .torrent = t, .piece = piece, .code = code, .message = msg};
    t->ctx->opts.on_event(t->ctx->opts.event_ud, &ev);
}

static uint64_t now_ms(const rv_torrent_t *t)
{
    return uv_now(t->ctx->loop);
}

static uint64_t piece_payload(const rv_torrent_t *t, uint32_t piece)
{
    /* Verified bytes exclude padding, so progress reads in the user's terms. */
    struct span_iter it;
    struct span sp;
    uint64_t n = 0;
    layout_piece_begin(&t->layout, piece, &it);
    while (layout_span_next(&it, &sp))
        if (!(t->ti->files[sp.file].attr & RV_FILE_PAD) &&
            (t->file_sel == NULL || t->file_sel[sp.file]))
            n += sp.length;
    return n;
}

/* ---- candidates ---- */

static struct candidate *cand_find(rv_torrent_t *t, const struct peer_addr *a)
{
    for (size_t i = 0; i < t->ncands; i++) {
        const struct peer_addr *b = &t->cands[i].addr;
        if (b->family == a->family && b->port == a->port &&
            memcmp(b->ip, a->ip, a->family == 6 ? 16 : 4) == 0)
            return &t->cands[i];
    }
    return NULL;
}

static bool ip_banned(rv_torrent_t *t, const struct peer_addr *a)
{
    for (size_t i = 0; i < t->ncands; i++) {
        const struct candidate *c = &t->cands[i];
        if (c->state == CAND_BANNED && c->addr.family == a->family &&
            memcmp(c->addr.ip, a->ip, a->family == 6 ? 16 : 4) == 0)
            return true;
    }
    return false;
}

static void on_new_peer(void *ud, const struct peer_addr *addr, unsigned source)
{
    rv_torrent_t *t = ud;
    (void)source;
    if (t->ncands == t->capcands) {
        size_t cap = t->capcands ? t->capcands * 2 : 64;
        if (cap > MAX_CANDIDATES)
            return;
        struct candidate *c = realloc(t->cands, cap * sizeof(*c));
        if (c == NULL)
            return;
        t->cands = c;
        t->capcands = cap;
    }
    struct candidate *c = &t->cands[t->ncands++];
    memset(c, 0, sizeof(*c));
    c->addr = *addr;
    c->state = CAND_NEW;
}

static bool cand_given_up(const rv_torrent_t *t, const struct candidate *c)
{
    return c->fails + c->proto_errs >= t->ctx->opts.peer_retries;
}

/* A tracker, the DHT or PEX names a known address again. One we gave up on because it could
 * not be reached (a seeder away longer than its tries lasted, 35 min by default) gets another
 * round, from now: the source says it is back, or at least still claimed. One that broke the
 * protocol stays given up, and one still in its backoff keeps it. */
static void on_known_peer(void *ud, const struct peer_addr *addr, unsigned source)
{
    rv_torrent_t *t = ud;
    (void)source;
    struct candidate *c = cand_find(t, addr);
    if (c == NULL || c->state != CAND_WAIT || c->proto_errs > 0 || !cand_given_up(t, c))
        return;
    c->fails = 0;
    c->retry_ms = now_ms(t);
}

/* ---- piece buffers ---- */

#define PIECE_ALIGN STORAGE_DIRECT_ALIGN

/* The page a buffer has beyond the piece, to shift it in (piece_shift). Storage writes
 * nothing shorter than STORAGE_DIRECT_MIN directly, so small pieces (16 KiB ones would
 * otherwise take 25 % more memory than --max-memory counts) go unshifted, without it. */
static size_t piece_extra(const rv_torrent_t *t)
{
    return t->ti->piece_length < STORAGE_DIRECT_MIN ? 0 : PIECE_ALIGN;
}

/* Where in its page the piece starts in memory: as far in as the longest file span of the
 * piece starts in its file's page, so that span's whole pages line up in memory and on disk
 * and storage writes them with O_DIRECT straight from the buffer, without a bounce copy. */
static size_t piece_shift(const rv_torrent_t *t, uint32_t piece)
{
    const struct layout *l = &t->layout;
    uint64_t start = (uint64_t)piece * l->piece_length, best = 0;
    size_t shift = 0;
    if (piece_extra(t) == 0)
        return 0;
    struct span_iter it;
    struct span sp;
    layout_piece_begin(l, piece, &it);
    while (layout_span_next(&it, &sp)) {
        if (sp.length <= best || (l->files[sp.file].attr & RV_FILE_PAD))
            continue;
        uint64_t pos = l->files[sp.file].offset + sp.file_offset - start;
        best = sp.length;
        shift = (size_t)((sp.file_offset - pos) & (PIECE_ALIGN - 1));
    }
    return shift;
}

/* ---- lockstep's chunk pool ---- */

bool torrent_lockstep_always;

static int pool_init(struct chunk_pool *p, size_t bytes, size_t cap)
{
    if ((p->free = malloc(cap * sizeof(*p->free))) == NULL)
        return RV_ENOMEM;
    if (uv_mutex_init(&p->lock) != 0) {
        free(p->free);
        p->free = NULL;
        return RV_ENOMEM;
    }
    p->ready = true;
    p->bytes = bytes;
    p->cap = cap;
    /* Mapped with room to start at a huge page boundary; the rest unmapped again. Only the
     * whole huge pages inside are offered for huge pages (madvise fails harmlessly where
     * they are off). */
    p->stride = (bytes + sizeof(atomic_int) + PIECE_ALIGN - 1) & ~(size_t)(PIECE_ALIGN - 1);
    p->arena_len = cap * p->stride;
    uint8_t *m = mmap(NULL, p->arena_len + POOL_HUGE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        free(p->free);
        p->free = NULL;
        uv_mutex_destroy(&p->lock);
        p->ready = false;
        return RV_ENOMEM;
    }
    uint8_t *start = (uint8_t *)(((uintptr_t)m + POOL_HUGE - 1) & ~(uintptr_t)(POOL_HUGE - 1));
    if (start > m)
        munmap(m, (size_t)(start - m));
    munmap(start + p->arena_len, (size_t)(m + POOL_HUGE - start));
    p->arena = start;
    if (p->arena_len >= POOL_HUGE)
        (void)madvise(start, p->arena_len & ~(size_t)(POOL_HUGE - 1), MADV_HUGEPAGE);
    return 0;
}

static void pool_free(struct chunk_pool *p)
{
    if (!p->ready)
        return;
    munmap(p->arena, p->arena_len);
    p->nfree = 0;
    free(p->free);
    uv_mutex_destroy(&p->lock);
    p->ready = false;
}

static atomic_int *chunk_count(const struct chunk_pool *p, uint8_t *mem)
{
    return (atomic_int *)(void *)(mem + p->bytes);
}

/* A chunk with one holder; NULL when cap of them are out. *in_use: the chunks
 * out of the pool now, this one included. On the loop. */
static uint8_t *pool_get(struct chunk_pool *p, size_t *in_use)
{
    uint8_t *mem = NULL;
    uv_mutex_lock(&p->lock);
    if (p->nfree > 0)
        mem = p->free[--p->nfree];
    else if (p->allocated < p->cap)
        mem = p->arena + p->allocated++ * p->stride;
    *in_use = p->allocated - p->nfree;
    uv_mutex_unlock(&p->lock);
    if (mem != NULL)
        atomic_init(chunk_count(p, mem), 1);
    return mem;
}

/* The chunk that data (anywhere in it) is in. */
static uint8_t *chunk_of(const struct chunk_pool *p, const uint8_t *data)
{
    return p->arena + (size_t)(data - p->arena) / p->stride * p->stride;
}

static void chunk_hold(struct chunk_pool *p, const uint8_t *data)
{
    atomic_fetch_add(chunk_count(p, chunk_of(p, data)), 1);
}

/* A holder is done with the chunk data is in; the last gives it back. Any thread. */
static void chunk_drop(struct chunk_pool *p, const uint8_t *data)
{
    uint8_t *mem = chunk_of(p, data);
    if (atomic_fetch_sub(chunk_count(p, mem), 1) != 1)
        return;
    uv_mutex_lock(&p->lock);
    p->free[p->nfree++] = mem; /* room: at most cap chunks exist */
    uv_mutex_unlock(&p->lock);
}

/* storage_release_fn: the storage is done with a chunk (written, or a job that never ran). */
static void on_chunk_released(void *rud, const uint8_t *data)
{
    chunk_drop(rud, data);
}

/* How many pieces may be in progress now: every buffer, or soft_bufs while the disk is behind
 * (max_writing pieces with it). buf_for starts no piece beyond it, and the picker is given it
 * before each pick: without that the picker started pieces buf_for refused; their blocks went
 * back and the next pick started them again (335,000 blocks given back per GiB with four
 * seeders). */
static uint32_t pieces_allowed(const rv_torrent_t *t)
{
    if (t->lockstep) /* the pool bounds the memory; the pieces in progress, the spread's */
        return (uint32_t)(t->nbufs < LOCK_SPREAD + LOCK_EXTRA ? t->nbufs
                                                              : LOCK_SPREAD + LOCK_EXTRA);
    if (t->nwriting >= t->max_writing && t->soft_bufs < t->nbufs)
        return (uint32_t)t->soft_bufs;
    return (uint32_t)t->nbufs;
}

static void write_held(rv_torrent_t *t);

static void buf_release(rv_torrent_t *t, struct piece_buf *b);

/* Frees the buffers of pieces the picker gave back: a piece whose every request was dropped
 * (a choke, a reject, a timeout) before any block of it came holds nothing here, and its
 * buffer would otherwise stay in use until that same piece is started again, counted against
 * pieces_allowed. A peer choking as soon as it is asked could so have used up every buffer. */
static void buf_sweep(rv_torrent_t *t)
{
    for (size_t i = 0; i < t->nbufs; i++) {
        struct piece_buf *b = &t->bufs[i];
        if (b->used && !b->held && !b->writing && b->writes == 0 && !b->hashing &&
            !picker_started(t->picker, b->piece))
            buf_release(t, b);
    }
}

/* Piece -> buffer through slot_of (one index per piece), free buffers on a stack: a block's
 * buffer is found in O(1) however many pieces are in progress. */
static struct piece_buf *buf_for(rv_torrent_t *t, uint32_t piece, bool create)
{
    uint32_t slot = t->slot_of[piece];
    if (slot != UINT32_MAX)
        return &t->bufs[slot];
    if (!create)
        return NULL;
    if (t->nfree == 0 || t->nbufs - t->nfree >= pieces_allowed(t))
        buf_sweep(t);
    if (t->nfree == 0) {
        if (t->nheld > 0)
            write_held(t);
        return NULL;
    }
    /* The disk is behind: more pieces in memory would not make it faster, only the peak RSS
     * larger (on long downloads the kernel's dirty-page throttling slows writes, and the
     * queue would otherwise fill every buffer). Pieces in progress go on. While fewer than
     * soft_bufs buffers are in use the queue may grow anyway: a few pieces being hashed and
     * written at once must not stop the peers (with four seeders, a 2-piece queue alone held
     * 1 GiB at 600-740 MiB/s; this bound, at the same peak RSS, 730-880). */
    if (t->nbufs - t->nfree >= pieces_allowed(t)) {
        if (t->nheld > 0)
            write_held(t); /* held pieces must not wait for buffers they keep from others */
        return NULL;
    }
    struct piece_buf *b = &t->bufs[t->free_slots[t->nfree - 1]];
    size_t bytes = (size_t)t->ti->piece_length + piece_extra(t);
    if (t->lockstep) {
        b->shift = (uint32_t)piece_shift(t, piece); /* memory comes chunk by chunk (buf_at) */
        b->hashed = 0;
        b->writes = 0;
        b->hashing = false;
        b->verdict = 1;
        sha1_mid_init(&b->mid);
        memset(b->filled, 0, t->chunks_per_piece * sizeof(*b->filled));
        memset(b->carried, 0, t->chunks_per_piece * sizeof(*b->carried));
    } else {
        if (b->mem == NULL && posix_memalign((void **)&b->mem, PIECE_ALIGN, bytes) != 0) {
            b->mem = NULL;
            return NULL;
        }
        b->data = b->mem + piece_shift(t, piece);
        stats_peak(&t->ctx->stats.pieces_in_memory_max, t->nbufs - t->nfree + 1);
    }
    t->nfree--;
    t->slot_of[piece] = (uint32_t)(b - t->bufs);
    b->used = true;
    b->held = false;
    b->writing = false;
    b->piece = piece;
    b->size = layout_piece_size(&t->layout, piece);
    b->ncontrib = 0;
    return b;
}

/* Lockstep: where the block at begin of b's piece goes, its chunk taken from the pool when
 * first asked for; NULL when the pool has none. */
static uint8_t *buf_at(rv_torrent_t *t, struct piece_buf *b, uint32_t begin)
{
    uint32_t k = begin / t->chunk_size;
    if (b->chunk[k] == NULL) {
        size_t in_use;
        if ((b->chunk[k] = pool_get(&t->pool, &in_use)) == NULL)
            return NULL;
        uint64_t bytes = (uint64_t)in_use * t->chunk_size;
        stats_peak(&t->ctx->stats.pieces_in_memory_max,
                   (bytes + t->ti->piece_length - 1) / t->ti->piece_length);
    }
    return b->chunk[k] + b->shift + begin % t->chunk_size;
}

static void buf_release(rv_torrent_t *t, struct piece_buf *b)
{
    /* The memory stays for the next piece: no allocation per piece in steady state (in
     * lockstep, the chunks go back to the pool). */
    if (!b->used)
        return;
    for (uint32_t k = 0; t->lockstep && k < t->chunks_per_piece; k++) {
        if (b->chunk[k] != NULL)
            chunk_drop(&t->pool, b->chunk[k]);
        b->chunk[k] = NULL;
    }
    if (b->writing)
        t->nwriting--;
    if (b->held)
        t->nheld--;
    b->used = false;
    b->held = false;
    b->writing = false;
    t->slot_of[b->piece] = UINT32_MAX;
    t->free_slots[t->nfree++] = (uint32_t)(b - t->bufs);
}

static void buf_add_contrib(struct piece_buf *b, const struct peer_addr *a)
{
    for (size_t i = 0; i < b->ncontrib; i++)
        if (memcmp(&b->contrib[i], a, sizeof(*a)) == 0)
            return;
    if (b->ncontrib < MAX_CONTRIB)
        b->contrib[b->ncontrib++] = *a;
}

/* ---- requests ---- */

static void send_interest(struct peer *p, bool want)
{
    if (p->am_interested == want)
        return;
    p->am_interested = want;
    wire_put_simple(conn_out(p->conn), want ? WIRE_INTERESTED : WIRE_NOT_INTERESTED);
}

static void update_interest(struct peer *p)
{
    send_interest(p, picker_is_interesting(p->t->picker, &p->have));
}

static void drop_requests(struct peer *p)
{
    for (size_t i = 0; i < p->nreqs; i++)
        picker_block_dropped(p->t->picker, p->reqs[i].piece, p->reqs[i].begin, p);
    p->late_ok += (unsigned)p->nreqs;
    if (p->late_ok > LATE_BLOCKS_MAX)
        p->late_ok = LATE_BLOCKS_MAX;
    p->nreqs = 0;
}

/* Fills t->mask with the pieces of list the peer has and we still want; false when none. */
static bool mask_of(rv_torrent_t *t, const struct peer *p, const uint32_t *list, size_t n)
{
    bitfield_clear_all(&t->mask);
    for (size_t i = 0; i < n; i++)
        if (bitfield_has(&p->have, list[i]) && !picker_have(t->picker, list[i]))
            bitfield_set(&t->mask, list[i]);
    return t->mask.set > 0;
}

static bool in_list(const uint32_t *list, size_t n, uint32_t piece)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == piece)
            return true;
    return false;
}

static void lanes_kick(rv_torrent_t *t, bool force);

/* Whether any block is asked of a peer now (each has its chunk: it will complete one). */
static bool blocks_asked(const rv_torrent_t *t)
{
    for (const struct peer *p = t->peers; p != NULL; p = p->next)
        if (p->nreqs > 0)
            return true;
    return false;
}

/* Asks the picker for up to max blocks among the pieces in mask and sends the requests. */
static void request_from(struct peer *p, const struct bitfield *mask, unsigned max)
{
    rv_torrent_t *t = p->t;
    struct block_ref picked[MAX_PIPELINE];
    bool endgame = false;
    picker_set_start_limit(t->picker, pieces_allowed(t));
    if (t->mem_short && max > 1)
        max = 1; /* each pick that finds no chunk gives its blocks back: keep those few */
    size_t n = p->parole ? picker_pick_alone(t->picker, mask, p, picked, max)
                         : picker_pick(t->picker, mask, p, picked, max, &endgame);
    for (size_t i = 0; i < n; i++) {
        struct piece_buf *b = buf_for(t, picked[i].piece, true);
        struct piece_buf *out_of_chunks = NULL;
        if (b != NULL && t->lockstep && buf_at(t, b, picked[i].begin) == NULL) {
            /* Out of chunks: the blocks of chunks already there may still be asked for, the
             * others wait until a chunk is back (one block a pick until then). When no hash
             * is on its way to free one, the chunks that are in are hashed now. */
            t->mem_short = true;
            if (t->nhash_jobs == 0)
                lanes_kick(t, !blocks_asked(t));
            out_of_chunks = b;
            b = NULL;
        }
        if (b == NULL) {
            /* Out of piece memory: give the rest back. pieces_allowed keeps the picker from
             * starting a piece buf_for would refuse, so this only happens when allocation
             * fails (or, in lockstep, the pool is out of chunks). */
            for (size_t k = i; k < n; k++)
                picker_block_dropped(t->picker, picked[k].piece, picked[k].begin, p);
            /* A piece started for that block alone holds nothing: its buffer goes now. */
            if (out_of_chunks != NULL && !picker_started(t->picker, out_of_chunks->piece))
                buf_release(t, out_of_chunks);
            break;
        }
        p->reqs[p->nreqs++] = picked[i];
        t->ctx->stats.requests_out++;
        wire_put_request(conn_out(p->conn), WIRE_REQUEST, picked[i].piece, picked[i].begin,
                         picked[i].length);
    }
    if (n > 0 && p->last_block_ms == 0)
        p->last_block_ms = now_ms(t);
    stats_peak(&t->ctx->stats.peer_requests_max, p->nreqs);
}

static void fill_requests(struct peer *p)
{
    rv_torrent_t *t = p->t;
    if (t->stopping || t->state != RV_STATE_DOWNLOADING || !p->am_interested)
        return;
    unsigned depth = p->snubbed ? 1 : p->depth;
    if (p->nreqs >= depth)
        return;
    /* Refill in batches: one message per freed slot meant a write, and a wakeup of the peer,
     * for every block received; waiting until REQUEST_BATCH slots (at most half the queue)
     * are free sends them together, and the queue never runs below half full. */
    unsigned batch = depth / 2 < REQUEST_BATCH ? depth / 2 : REQUEST_BATCH;
    if (p->nreqs > 0 && depth - p->nreqs < batch)
        return;
    if (p->peer_choking) {
        /* BEP 6: the pieces it allowed may be asked for while it chokes us. */
        if (p->fast && p->nallowed > 0 && mask_of(t, p, p->allowed, p->nallowed)) {
            size_t before = p->nreqs;
            request_from(p, &t->mask, depth - (unsigned)p->nreqs);
            t->fast_requested += p->nreqs - before;
        }
        return;
    }
    /* BEP 6 suggest piece: what it has in its cache goes first. */
    if (p->nsuggested > 0 && mask_of(t, p, p->suggested, p->nsuggested))
        request_from(p, &t->mask, depth - (unsigned)p->nreqs);
    if (p->nreqs < depth)
        request_from(p, &p->have, depth - (unsigned)p->nreqs);
}

/* p->reqs stays in the order the requests went out: the order the peer answers in, which
 * receiving in place (peer_expect) relies on. The block that arrives is nearly always the
 * first. */
static void unlist_request(struct peer *p, size_t i)
{
    memmove(&p->reqs[i], &p->reqs[i + 1], (p->nreqs - i - 1) * sizeof(p->reqs[0]));
    p->nreqs--;
}

/* A fast peer that chokes us keeps our requests for the pieces it allowed; the others are
 * gone (it rejects them, or sends nothing). */
static void drop_requests_not_allowed(struct peer *p)
{
    for (size_t i = 0; i < p->nreqs;) {
        if (in_list(p->allowed, p->nallowed, p->reqs[i].piece)) {
            i++;
            continue;
        }
        picker_block_dropped(p->t->picker, p->reqs[i].piece, p->reqs[i].begin, p);
        unlist_request(p, i);
    }
}

static bool remove_request(struct peer *p, uint32_t piece, uint32_t begin, uint32_t *length)
{
    for (size_t i = 0; i < p->nreqs; i++) {
        if (p->reqs[i].piece == piece && p->reqs[i].begin == begin) {
            *length = p->reqs[i].length;
            unlist_request(p, i);
            return true;
        }
    }
    return false;
}

/* ---- pieces ---- */

static void finish(rv_torrent_t *t);
static void stop_if_done(rv_torrent_t *t);
static void save_begin(rv_torrent_t *t);
static void fail_torrent(rv_torrent_t *t, int rc, const char *msg);

static void ban_peer(rv_torrent_t *t, struct candidate *c, const char *why)
{
    if (c->state == CAND_BANNED)
        return;
    c->state = CAND_BANNED;
    t->banned++;
    char a[64];
    peer_addr_format(&c->addr, a, sizeof(a));
    emit(t, RV_EVENT_PEER_BANNED, 0, RV_EHASH, "%s: %s", a, why);
    for (struct peer *p = t->peers; p != NULL; p = p->next) {
        if (p->conn->addr.family == c->addr.family &&
            memcmp(p->conn->addr.ip, c->addr.ip, c->addr.family == 6 ? 16 : 4) == 0)
            conn_close(p->conn, RV_EHASH, why);
    }
}

/* A disk error stops the torrent; what is verified stays on disk. */
static void fail_torrent(rv_torrent_t *t, int rc, const char *msg)
{
    if (t->error_code != 0)
        return;
    t->error_code = rc;
    snprintf(t->error, sizeof(t->error), "%s", msg);
    t->state = RV_STATE_ERROR;
    emit(t, RV_EVENT_ERROR, 0, rc, "%s", t->error);
    torrent_stop(t);
}

/* After a piece: new requests go out now, and the HAVE with them. A HAVE alone waits for
 * the flush after the next read when the peer is sending to us (each write to a peer on the
 * same host wakes it: one per piece and peer is a wakeup per 256 KiB); the tick flushes it at
 * the latest. */
static void refill_soon(struct peer *p)
{
    size_t before = p->nreqs;
    bool sending = before > 0 && !p->snubbed && !p->peer_choking;
    fill_requests(p);
    if (!sending || p->nreqs != before)
        conn_flush(p->conn);
}

/* The connected peer at addr, or NULL. */
static struct peer *peer_at(rv_torrent_t *t, const struct peer_addr *addr)
{
    for (struct peer *p = t->peers; p != NULL; p = p->next)
        if (p->conn != NULL && memcmp(&p->conn->addr, addr, sizeof(*addr)) == 0)
            return p;
    return NULL;
}

static void piece_stored(rv_torrent_t *t, uint32_t piece, int rc, const rv_error_t *err)
{
    struct piece_buf *b = buf_for(t, piece, false);
    bool boundary = t->file_sel != NULL && bitfield_has(&t->partial, piece);
    if (rc == 0 && boundary) {
        /* Verified, but only its selected part is on disk: it counts, and is never offered. */
        picker_piece_passed(t->picker, piece);
        t->partial_done++;
        t->bytes_have += piece_payload(t, piece);
        if (b != NULL)
            buf_release(t, b);
        torrent_snapshot(t);
        emit(t, RV_EVENT_PIECE_VERIFIED, piece, 0, NULL);
        /* A stop waits for the pieces with the disk; the last of them does not make it a
         * finish (no hook, no seeding): the resume data records them all the same. */
        if (!t->stopping && picker_is_complete(t->picker)) {
            finish(t);
            return;
        }
        for (struct peer *p = t->peers; p != NULL; p = p->next) {
            refill_soon(p);
        }
        return;
    }
    if (rc == 0) {
        picker_piece_passed(t->picker, piece);
        bitfield_set(&t->have, piece);
        t->bytes_have += piece_payload(t, piece);
        t->added_since_save++;
        for (size_t i = 0; b != NULL && i < b->ncontrib; i++) {
            struct candidate *c = cand_find(t, &b->contrib[i]);
            if (c != NULL && c->trust < TRUST_MAX)
                c->trust++;
            struct peer *pp = b->ncontrib == 1 ? peer_at(t, &b->contrib[i]) : NULL;
            if (pp != NULL)
                pp->parole = false; /* a piece of its own passed */
        }
        for (struct peer *p = t->peers; p != NULL; p = p->next) {
            wire_put_have(conn_out(p->conn), piece);
            update_interest(p);
        }
        if (b != NULL)
            buf_release(t, b);
        torrent_snapshot(t);
        emit(t, RV_EVENT_PIECE_VERIFIED, piece, 0, NULL);
        if (!t->stopping && picker_is_complete(t->picker)) {
            finish(t);
            return;
        }
    } else if (rc == RV_EHASH) {
        picker_piece_failed(t->picker, piece);
        t->pieces_failed++;
        t->wasted += b ? b->size : 0;
        emit(t, RV_EVENT_PIECE_FAILED, piece, rc, "piece %u failed its hash check", piece);
        /* A peer that alone sent a bad piece lied. Among several, any one may have: each
         * loses trust and goes on parole (libtorrent's): from then on it gets pieces of its
         * own only, so its next bad piece is its alone. Pieces shared before that (the
         * lockstep asks several peers for blocks of the same pieces) cost a peer on parole
         * nothing more. Only a peer whose bad pieces outweigh its good ones is banned for
         * shared ones, so a liar cannot get an honest peer banned by sharing pieces with it. */
        for (size_t i = 0; b != NULL && i < b->ncontrib; i++) {
            struct candidate *c = cand_find(t, &b->contrib[i]);
            struct peer *pp = peer_at(t, &b->contrib[i]);
            if (b->ncontrib > 1 && pp != NULL) {
                if (pp->parole)
                    continue;
                pp->parole = true;
            }
            if (c == NULL)
                continue;
            c->trust -= 2;
            if (b->ncontrib == 1 || c->trust <= TRUST_BAN)
                ban_peer(t, c, "sent data that failed the hash check");
        }
        if (b != NULL)
            buf_release(t, b);
    } else {
        if (b != NULL)
            buf_release(t, b);
        fail_torrent(t, rc, err ? err->msg : rv_strerror(rc));
        return;
    }
    if (t->stopping)
        return;
    for (struct peer *p = t->peers; p != NULL; p = p->next) {
        refill_soon(p);
    }
}

/* A stop waits for the pieces with the disk (their verdicts go in the final resume data): each
 * one back may be the last. Storage is open here, so the stop cannot complete within. */
static void on_piece_stored(void *ud, uint32_t piece, int rc, const rv_error_t *err)
{
    rv_torrent_t *t = ud;
    piece_stored(t, piece, rc, err);
    if (t->stopping)
        stop_if_done(t);
}

/* ---- complete pieces to the disk, neighbours together ---- */

static struct piece_buf *held_buf(rv_torrent_t *t, uint32_t piece)
{
    if (piece >= t->ti->piece_count || t->slot_of[piece] == UINT32_MAX)
        return NULL;
    struct piece_buf *b = &t->bufs[t->slot_of[piece]];
    return b->held ? b : NULL;
}

/* A piece whose blocks are arriving: its neighbours may wait for it. */
static bool arriving(const rv_torrent_t *t, uint32_t piece)
{
    if (piece >= t->ti->piece_count || t->slot_of[piece] == UINT32_MAX)
        return false;
    const struct piece_buf *b = &t->bufs[t->slot_of[piece]];
    return !b->held && !b->writing;
}

/* The held pieces around piece (held itself), *lo..*hi, and their bytes. */
static uint64_t held_run(rv_torrent_t *t, uint32_t piece, uint32_t *lo, uint32_t *hi)
{
    uint64_t bytes = t->bufs[t->slot_of[piece]].size;
    *lo = *hi = piece;
    while (*hi - *lo + 1 < STORAGE_RUN_MAX && *lo > 0 && held_buf(t, *lo - 1) != NULL)
        bytes += held_buf(t, --*lo)->size;
    while (*hi - *lo + 1 < STORAGE_RUN_MAX && held_buf(t, *hi + 1) != NULL)
        bytes += held_buf(t, ++*hi)->size;
    return bytes;
}

/* Hands the held pieces lo..hi to the disk in one job. */
static void write_run(rv_torrent_t *t, uint32_t lo, uint32_t hi)
{
    const uint8_t *data[STORAGE_RUN_MAX] = {NULL};
    for (uint32_t x = lo; x <= hi; x++) {
        struct piece_buf *b = held_buf(t, x);
        b->held = false;
        t->nheld--;
        b->writing = true;
        t->nwriting++;
        data[x - lo] = b->data;
    }
    int rc = storage_verify_and_write_run(t->storage, lo, hi - lo + 1, data, on_piece_stored, t);
    for (uint32_t x = lo; rc != 0 && x <= hi; x++) {
        rv_error_t e;
        err_set(&e, rc, "cannot queue piece %u for writing", x);
        on_piece_stored(t, x, rc, &e);
    }
}

/* Every held piece to the disk now, with the held neighbours it has. */
static void write_held(rv_torrent_t *t)
{
    for (size_t i = 0; i < t->nbufs && t->nheld > 0; i++) {
        if (!t->bufs[i].used || !t->bufs[i].held)
            continue;
        uint32_t lo, hi;
        held_run(t, t->bufs[i].piece, &lo, &hi);
        write_run(t, lo, hi);
    }
}

/* Every block of b's piece is in. While pieces complete within RUN_WAIT_MS of each other it
 * waits if a neighbour is still arriving and the run it would join is short of WRITE_RUN_BYTES;
 * else it goes to the disk with the held neighbours it has. Waiting is bounded: RUN_WAIT_MS
 * (checked as blocks arrive), the tick when none do, a stop, and a lack of piece buffers send
 * held pieces on. */
static void piece_complete(rv_torrent_t *t, struct piece_buf *b)
{
    uint32_t lo, hi;
    uint64_t now = now_ms(t);
    bool fast = now - t->complete_ms <= RUN_WAIT_MS;
    t->complete_ms = now;
    if (t->nheld == 0)
        t->held_ms = now;
    b->held = true;
    t->nheld++;
    uint64_t bytes = held_run(t, b->piece, &lo, &hi);
    bool grows = (lo > 0 && arriving(t, lo - 1)) || arriving(t, hi + 1);
    if (!fast || !grows || bytes >= WRITE_RUN_BYTES || hi - lo + 1 >= STORAGE_RUN_MAX ||
        t->ti->piece_length >= RUN_PIECE_MAX || t->stopping)
        write_run(t, lo, hi);
}

/* ---- lockstep: pieces hashed chunk by chunk as they arrive, side by side ---- */

struct lock_job {
    rv_torrent_t *t;
    struct storage_step steps[STORAGE_STEPS_MAX];
};

/* A storage_write_chunks job's callbacks still to come. */
struct lock_write {
    rv_torrent_t *t;
    unsigned left;
};

/* A chunk came back from the disk, or a hash pass did: a piece with its verdict and nothing
 * left with the disk is done; memory short, requests held back may go now. */
static void lock_job_done(rv_torrent_t *t, struct piece_buf *b)
{
    if (b != NULL && b->verdict != 1 && b->writes == 0 && !b->hashing)
        on_piece_stored(t, b->piece, b->verdict, NULL);
    if (t->stopping) {
        stop_if_done(t);
        return;
    }
    if (t->mem_short) {
        t->mem_short = false;
        for (struct peer *p = t->peers; p != NULL; p = p->next)
            refill_soon(p);
    }
}

/* storage_write_chunks' callback, once per chunk; a job is done with its last. A write error
 * fails the torrent (as for whole pieces). */
static void on_chunk_written(void *ud, uint32_t piece, int rc, const rv_error_t *err)
{
    struct lock_write *w = ud;
    rv_torrent_t *t = w->t;
    bool last = --w->left == 0;
    if (last) {
        t->nlock_jobs--;
        free(w);
    }
    struct piece_buf *b = buf_for(t, piece, false);
    if (b != NULL)
        b->writes--;
    if (rc != 0) {
        on_piece_stored(t, piece, rc, err);
        return;
    }
    lock_job_done(t, b);
}

/* The chunks waiting in t->wq to the disk, in one job. */
static void write_flush(rv_torrent_t *t)
{
    if (t->nwq == 0)
        return;
    unsigned n = t->nwq;
    t->nwq = 0;
    struct lock_write *w = malloc(sizeof(*w));
    int rc = RV_ENOMEM;
    if (w != NULL) {
        w->t = t;
        w->left = n;
        bool behind = t->nlock_jobs - t->nhash_jobs >= WRITES_BEHIND;
        rc = storage_write_chunks(t->storage, t->wq, n, behind, on_chunk_released, &t->pool,
                                  on_chunk_written, w);
    }
    if (rc == 0) {
        t->nlock_jobs++;
        return;
    }
    free(w);
    for (unsigned i = 0; i < n; i++) {
        chunk_drop(&t->pool, t->wq[i].data);
        struct piece_buf *b = buf_for(t, t->wq[i].piece, false);
        if (b != NULL)
            b->writes--;
        rv_error_t e;
        err_set(&e, rc, "cannot queue piece %u for writing", t->wq[i].piece);
        on_piece_stored(t, t->wq[i].piece, rc, &e);
    }
}

static void on_chunks_hashed(void *ud, struct storage_step *steps, unsigned n)
{
    struct lock_job *j = ud;
    rv_torrent_t *t = j->t;
    t->nlock_jobs--;
    t->nhash_jobs--;
    for (unsigned i = 0; i < n; i++) {
        chunk_drop(&t->pool, steps[i].data);
        struct piece_buf *b = buf_for(t, steps[i].piece, false);
        if (b == NULL) /* a write failed meanwhile and the torrent with it */
            continue;
        b->hashing = false;
        b->hashed += steps[i].len;
        b->verdict = steps[i].verdict;
        if (b->verdict != 1)
            lock_job_done(t, b);
    }
    free(j);
    lock_job_done(t, NULL);
    if (!t->stopping)
        lanes_kick(t, false);
}

/* The bytes of chunk k of b's piece (the last one may be short). */
static uint32_t chunk_len(const rv_torrent_t *t, const struct piece_buf *b, uint32_t k)
{
    uint32_t left = b->size - k * t->chunk_size;
    return left < t->chunk_size ? left : t->chunk_size;
}

/* Whether the chunk at b's hash is all in and no hash has it. */
static bool lane_ready(const rv_torrent_t *t, const struct piece_buf *b)
{
    if (!b->used || b->hashing || b->hashed >= b->size)
        return false;
    uint32_t k = b->hashed / t->chunk_size;
    return b->chunk[k] != NULL && b->filled[k] == chunk_len(t, b, k);
}

/* Hands the chunks that are in to the lanes together once LOCK_LANES of them are, or every
 * piece in progress has its next chunk in or in a hash already (none will come sooner), or
 * memory is short and enough are in for the lanes to gain, or force (memory is short, no hash
 * is on its way and no block is asked for; the tick). */
static void lanes_kick(rv_torrent_t *t, bool force)
{
    if (!t->lockstep || t->storage == NULL || t->stopping)
        return;
    for (;;) {
        struct piece_buf *ready[STORAGE_STEPS_MAX];
        unsigned n = 0;
        size_t waiting = 0;
        for (size_t i = 0; i < t->nbufs; i++) {
            struct piece_buf *b = &t->bufs[i];
            if (lane_ready(t, b)) {
                if (n < STORAGE_STEPS_MAX)
                    ready[n++] = b;
            } else if (b->used && b->hashed < b->size) {
                waiting++; /* its chunk is coming, or with a hash and the next one behind it */
            }
        }
        if (n == 0 ||
            (n < LOCK_LANES && !force && waiting > 0 && !(t->mem_short && n >= t->lanes_gain)))
            return;
        write_flush(t); /* the pass's chunks are with the disk before their verdict can come */
        struct lock_job *j = malloc(sizeof(*j));
        if (j == NULL)
            return;
        j->t = t;
        for (unsigned i = 0; i < n; i++) {
            struct piece_buf *b = ready[i];
            uint32_t k = b->hashed / t->chunk_size;
            j->steps[i] = (struct storage_step){
                b->piece, b->hashed, chunk_len(t, b, k), b->chunk[k] + b->shift, &b->mid, 1};
        }
        if (storage_hash_chunks(t->storage, j->steps, n, t->chunk_size, on_chunk_released, &t->pool,
                                on_chunks_hashed, j) != 0) {
            free(j); /* only when closing: the chunks stay with their pieces */
            return;
        }
        t->nlock_jobs++;
        t->nhash_jobs++;
        for (unsigned i = 0; i < n; i++) {
            ready[i]->hashing = true;
            ready[i]->chunk[ready[i]->hashed / t->chunk_size] = NULL; /* the hash holds it */
        }
        force = false;
        if (n < STORAGE_STEPS_MAX)
            return;
    }
}

/* Lockstep writes each chunk as it comes in. Where a piece does not start on a page of its
 * file, each chunk's write began and ended with a partial page, which went through the cache:
 * three writes a chunk, and the fsync at the end wrote those pages back one by one. So the
 * page two chunks share goes with whichever of them comes in last: the first to come in copies
 * its part into the room the other's memory has beside its data (b->shift bytes before it,
 * PIECE_ALIGN - b->shift after it: exactly the page's parts, since a chunk's memory lines up
 * with its file's pages) and writes up to the page. 1 GiB in four files none of which starts on
 * a page, from one libtorrent seeder: 5,160-5,260 writes against 8,380-9,290, 0.68 and 0.95
 * CPU s/GiB against 0.72 and 0.99 (two sets of 6 rounds alternating, 2026-12-06); from four,
 * 5,280 writes against 6,360 (1,760 of them partial pages against 2,790 with the page left
 * only to the next chunk: there chunks often come in out of order). */
#define CARRY_HEAD 1 /* the chunk's memory starts with the end of the chunk before it */
#define CARRY_TAIL 2 /* ...ends with the start of the chunk after it */

/* Whether the page chunks k - 1 and k of b share may go with one of them: both are there, the
 * other has not come in (its memory is had now when it has none), and the page lines up with
 * the memory in one selected file (not across a file's boundary, padding, a file after the
 * one the piece is aligned to). */
static bool carry_ok(rv_torrent_t *t, struct piece_buf *b, uint32_t k, uint32_t other)
{
    uint32_t at = k * t->chunk_size;
    if (b->shift == 0 || k == 0 || at >= b->size || b->size - at <= PIECE_ALIGN - b->shift)
        return false;
    if (b->filled[other] == chunk_len(t, b, other))
        return false;
    struct span_iter it;
    struct span sp;
    layout_span_begin(&t->layout, (uint64_t)b->piece * t->layout.piece_length + at - b->shift,
                      PIECE_ALIGN, &it);
    if (!layout_span_next(&it, &sp) || sp.length < PIECE_ALIGN ||
        sp.file_offset % PIECE_ALIGN != 0 || (t->layout.files[sp.file].attr & RV_FILE_PAD) ||
        (t->file_sel != NULL && !t->file_sel[sp.file]))
        return false;
    return b->chunk[other] != NULL || buf_at(t, b, other * t->chunk_size) != NULL;
}

/* The write of chunk k of b (clen bytes), just in: with the parts of the pages it shares that
 * its neighbours left to it, without those it leaves to them. */
static struct storage_chunk chunk_write(rv_torrent_t *t, struct piece_buf *b, uint32_t k,
                                        uint32_t clen)
{
    uint32_t at = k * t->chunk_size, head = b->shift, tail = PIECE_ALIGN - b->shift;
    uint8_t *data = b->chunk[k] + b->shift;
    struct storage_chunk c = {b->piece, at, clen, data};
    if (b->carried[k] & CARRY_HEAD) {
        c.off -= head, c.len += head, c.data -= head;
    } else if (carry_ok(t, b, k, k - 1)) {
        memcpy(b->chunk[k - 1] + b->shift + t->chunk_size, data, tail);
        b->carried[k - 1] |= CARRY_TAIL;
        c.off += tail, c.len -= tail, c.data += tail;
    }
    if (b->carried[k] & CARRY_TAIL) {
        c.len += tail;
    } else if (carry_ok(t, b, k + 1, k + 1)) {
        memcpy(b->chunk[k + 1], data + clen - head, head);
        b->carried[k + 1] |= CARRY_HEAD;
        c.len -= head;
    }
    return c;
}

/* Lockstep: the block at begin (len bytes) of b's piece is in; a chunk now complete goes to the
 * disk with the next batch (it is written before the piece is verified, which its hash tells
 * later) and to the lanes when they go. */
static void lock_block_in(rv_torrent_t *t, struct piece_buf *b, uint32_t begin, uint32_t len)
{
    uint32_t k = begin / t->chunk_size, clen = chunk_len(t, b, k);
    b->filled[k] += len;
    if (b->filled[k] != clen)
        return;
    struct storage_chunk c = chunk_write(t, b, k, clen);
    chunk_hold(&t->pool, c.data);
    t->wq[t->nwq++] = c;
    b->writes++;
    if (t->nwq == LOCK_WRITE_BATCH || t->stopping)
        write_flush(t);
    lanes_kick(t, false);
}

static int handle_block(struct peer *p, const struct wire_msg *m)
{
    rv_torrent_t *t = p->t;
    uint32_t want_len;
    if (!remove_request(p, m->index, m->begin, &want_len)) {
        /* Not asked of this peer: late after a cancel or a choke is fair and ignored; a peer
         * pushing blocks nobody asked for (or at offsets nobody asked for) wastes our
         * bandwidth and goes. */
        t->wasted += m->data_len;
        if (p->late_ok > 0) {
            p->late_ok--;
            return 0;
        }
        if (++p->unrequested > UNREQUESTED_MAX) {
            conn_set_reason(p->conn, "sent %u blocks we never asked for (last: piece %u at %u, "
                            "%zu bytes)", p->unrequested, m->index, m->begin, m->data_len);
            return RV_EPROTO;
        }
        return 0;
    }
    if (want_len != m->data_len) {
        conn_set_reason(p->conn, "sent %zu bytes for a %u-byte block of piece %u", m->data_len,
                        want_len, m->index);
        picker_block_dropped(t->picker, m->index, m->begin, p);
        return RV_EPROTO;
    }
    p->last_block_ms = now_ms(t);
    p->snubbed = false;
    t->ctx->stats.blocks_in++;
    p->downloaded += m->data_len;
    p->window += m->data_len;
    t->downloaded += m->data_len;
    t->window += m->data_len;
    bool done = false;
    void *others[PICKER_MAX_REQUESTERS];
    size_t nothers = 0;
    enum picker_block_result r =
        picker_block_received(t->picker, m->index, m->begin, p, &done, others, &nothers);
    if (r != PICKER_BLOCK_NEW) {
        t->wasted += m->data_len;
        fill_requests(p);
        return 0;
    }
    struct piece_buf *b = buf_for(t, m->index, true);
    uint8_t *dst = NULL;
    if (b != NULL && !t->lockstep)
        dst = b->data + m->begin;
    else if (b != NULL && m->begin % t->chunk_size + m->data_len <= t->chunk_size)
        dst = buf_at(t, b, m->begin); /* blocks we ask for never straddle chunks */
    if (dst == NULL) {
        picker_block_dropped(t->picker, m->index, m->begin, p);
        return 0;
    }
    if (dst != m->data) /* else it was received in place (peer_expect) */
        copy_block(dst, m->data, m->data_len);
    buf_add_contrib(b, &p->conn->addr);
    /* End-game: the others asked for the same block; tell them we have it. */
    for (size_t i = 0; i < nothers; i++) {
        struct peer *o = others[i];
        uint32_t len;
        if (remove_request(o, m->index, m->begin, &len)) {
            if (o->late_ok < LATE_BLOCKS_MAX)
                o->late_ok++;
            wire_put_request(conn_out(o->conn), WIRE_CANCEL, m->index, m->begin, len);
            conn_flush(o->conn);
        }
    }
    if (t->nheld > 0 && now_ms(t) - t->held_ms > RUN_WAIT_MS)
        write_held(t); /* a neighbour is slow: do not wait for it */
    if (t->lockstep)
        lock_block_in(t, b, m->begin, (uint32_t)m->data_len);
    else if (done)
        piece_complete(t, b);
    /* Keep the pipe full: each block that arrives makes room for another request. */
    fill_requests(p);
    return 0;
}

/* Where the block asked for in r goes, when its memory is there already (never allocated
 * here: a guess must not take a buffer or a chunk). */
static uint8_t *block_home(rv_torrent_t *t, const struct block_ref *r)
{
    struct piece_buf *b = buf_for(t, r->piece, false);
    if (b == NULL)
        return NULL;
    if (!t->lockstep)
        return b->data + r->begin;
    uint32_t k = r->begin / t->chunk_size;
    if (b->chunk[k] == NULL || r->begin % t->chunk_size + r->length > t->chunk_size)
        return NULL;
    return b->chunk[k] + b->shift + r->begin % t->chunk_size;
}

/* conn_handler.expect: our requests to this peer in the order they went out, from `from` on,
 * with where each block goes. A block may be received in place only while it is asked of this
 * peer alone and has not arrived: then no other peer writes there (end-game asks a second
 * peer only later, and that one then gets it through its receive buffer), and nothing reads
 * it before it arrives. One already arriving (started) needs only to be still asked of it. */
static size_t peer_expect(void *owner, struct conn *c, const struct conn_block *from, bool started,
                          struct conn_block *out, size_t max)
{
    rv_torrent_t *t = owner;
    struct peer *p = c->data;
    if (p == NULL || t->stopping || t->bufs == NULL)
        return 0;
    size_t i = 0;
    if (from != NULL) {
        while (i < p->nreqs && (p->reqs[i].piece != from->index || p->reqs[i].begin != from->begin))
            i++;
        if (i == p->nreqs || p->reqs[i].length != from->length)
            return 0;
    }
    size_t n = 0;
    for (; i < p->nreqs && n < max; i++) {
        const struct block_ref *r = &p->reqs[i];
        uint32_t askers = picker_block_requesters(t->picker, r->piece, r->begin, p);
        bool going = started && n == 0;
        if (going ? askers == 0 : askers != 1)
            break;
        uint8_t *home = block_home(t, r);
        if (home == NULL || (going && home != from->p))
            break;
        out[n++] = (struct conn_block){r->piece, r->begin, r->length, home};
    }
    return n;
}

/* ---- uploading: a read cache of whole pieces, each peer's request queue ---- */

static void serve(struct peer *p);

static void on_cache_read(void *ud, uint32_t piece, int rc, const rv_error_t *err)
{
    rv_torrent_t *t = ud;
    struct cache_entry *e = NULL;
    for (size_t i = 0; i < t->ncache && e == NULL; i++)
        if (t->cache[i].loading && t->cache[i].piece == piece)
            e = &t->cache[i];
    if (e == NULL)
        return;
    e->loading = false;
    if (rc != 0) {
        /* Verified data that cannot be read back: the disk changed under us. */
        fail_torrent(t, rc, err ? err->msg : rv_strerror(rc));
        return;
    }
    e->valid = true;
    for (struct peer *p = t->peers; p != NULL; p = p->next)
        if (p->nupq > 0)
            serve(p);
}

/* The pieces p's next QUEUE_WINDOW queued requests name, up to max: one or two for a leecher
 * taking pieces in order (libtorrent's queue spans many pieces, but in order), more for one
 * asking for several side by side. */
#define QUEUE_WINDOW 32
static size_t queued_pieces(const struct peer *p, size_t max)
{
    uint32_t seen[QUEUE_WINDOW];
    size_t n = 0;
    for (size_t i = 0; i < p->nupq && i < QUEUE_WINDOW && n < max; i++) {
        uint32_t x = p->upq[(p->uphead + i) % MAX_UPLOAD_QUEUE].piece;
        size_t k = 0;
        while (k < n && seen[k] != x)
            k++;
        if (k == n)
            seen[n++] = x;
    }
    return n;
}

/* How many cache entries to fill before reusing the least recently used one: a peer being
 * served needs the piece it is on and the one read ahead (serve_queue), so two per peer
 * asking, and two more; a peer asking for several pieces row by row (rivulet's lockstep asks
 * for a block of each of eight in turn) needs those the head of its queue names, and one
 * more (with four, each piece was read again for every few blocks sent). The cache
 * (--read-cache) is the most; one leecher taking pieces in order takes 4 MiB of it in 1 MiB
 * pieces, not all 16: each new entry is pages the kernel must hand over and zero, and the read
 * cache had been half of a seeder's peak RSS. */
static size_t cache_want(const rv_torrent_t *t)
{
    size_t want = 2;
    for (const struct peer *p = t->peers; p != NULL && want < t->ncache; p = p->next) {
        if (p->nupq > 0) {
            size_t q = queued_pieces(p, t->ncache) + 1;
            want += q > 2 ? q : 2;
        }
    }
    return want < t->ncache ? want : t->ncache;
}

/* Whether e is a better entry to load a new piece into than v: first one no write still sends
 * from (rcbuf_shared), then one holding no piece, then the least recently used. */
static bool cache_better_victim(const struct cache_entry *e, const struct cache_entry *v)
{
    bool shared = e->rb != NULL && rcbuf_shared(e->rb);
    bool vshared = v->rb != NULL && rcbuf_shared(v->rb);
    if (shared != vshared)
        return !shared;
    if (e->valid != v->valid)
        return !e->valid;
    return e->last_use < v->last_use;
}

/* The cached piece, or NULL after starting to load it (serve runs again when it is in). One
 * read of a whole piece serves every peer asking for its blocks. */
static struct cache_entry *cache_get(rv_torrent_t *t, uint32_t piece)
{
    struct cache_entry *victim = NULL;
    size_t filled = 0;
    for (size_t i = 0; i < t->ncache; i++) {
        struct cache_entry *e = &t->cache[i];
        if ((e->valid || e->loading) && e->piece == piece)
            return e->valid ? e : NULL;
        filled += e->rb != NULL;
    }
    bool grow = filled < cache_want(t);
    for (size_t i = 0; i < t->ncache; i++) {
        struct cache_entry *e = &t->cache[i];
        if (e->loading || (e->rb == NULL && !grow))
            continue;
        if (victim == NULL || cache_better_victim(e, victim))
            victim = e;
    }
    if (victim == NULL)
        return NULL; /* every entry is loading: wait for one */
    if (victim->rb != NULL && rcbuf_shared(victim->rb)) {
        /* Writes still send from it: they keep the old buffer, the piece gets a new one. */
        rcbuf_unref(victim->rb);
        victim->rb = NULL;
        filled--;
    }
    if (victim->rb == NULL) {
        if ((victim->rb = rcbuf_new(t->ti->piece_length)) == NULL)
            return NULL;
        stats_peak(&t->ctx->stats.read_cache_pieces_max, (uint32_t)filled + 1);
    }
    victim->valid = false;
    victim->loading = true;
    victim->last_use = now_ms(t); /* read ahead, not yet used: not the next to go */
    victim->piece = piece;
    victim->size = layout_piece_size(&t->layout, piece);
    if (storage_read(t->storage, piece, 0, victim->size, victim->rb->data, on_cache_read, t) != 0) {
        victim->loading = false;
        return NULL;
    }
    return NULL;
}

static void on_up_grant(struct limit_waiter *w, size_t n)
{
    struct peer *p = w->data;
    p->ucredit += n;
    serve(p);
}

/* Gives back upload tokens a peer no longer needs (choked, gone). */
static void release_upload(struct peer *p)
{
    rv_torrent_t *t = p->t;
    limit_cancel(&t->ctx->up_q, &p->uwait);
    limit_refund(&t->up_chain, p->ucredit, now_ms(t));
    p->ucredit = 0;
}

/* A request we will not serve: BEP 6 peers are told, others find out by its absence. */
static void reject(struct peer *p, const struct block_ref *r)
{
    p->t->refused++;
    if (!p->fast)
        return;
    wire_put_request(conn_out(p->conn), WIRE_REJECT, r->piece, r->begin, r->length);
    p->t->rejects_sent++;
}

/* Queues what the peer asked for while its connection has room; BEP 3 pieces in request
 * order. The caller flushes (serve does): a REQUEST handler leaves that to the end of the
 * read, so the blocks asked for in one read go out in one write, not one write per block. */
static void serve_queue(struct peer *p)
{
    rv_torrent_t *t = p->t;
    if (t->stopping || t->storage == NULL)
        return;
    while (p->nupq > 0 && conn_send_backlog(p->conn) < UPLOAD_BACKLOG) {
        struct block_ref r = p->upq[p->uphead];
        if (p->am_choking && !in_list(p->granted, p->ngranted, r.piece)) {
            /* Choked since it asked, and not an allowed-fast piece. */
            reject(p, &r);
            p->uphead = (p->uphead + 1) % MAX_UPLOAD_QUEUE;
            p->nupq--;
            continue;
        }
        struct cache_entry *e = cache_get(t, r.piece);
        if (e == NULL)
            break;
        /* The upload limit: a PIECE goes out only when its bytes are paid for. */
        size_t need = 13 + (size_t)r.length;
        if (p->ucredit < need)
            p->ucredit += limit_take(&t->up_chain, need - p->ucredit, now_ms(t));
        if (p->ucredit < need) {
            /* Ask for all that is queued (limits.h): a waiter gets one turn per run of the
             * queue, so asking for one block capped a peer at one block per
             * LIMIT_WAKE_MIN_MS, about 3.3 MB/s, whatever --max-upload-rate said. */
            size_t queued = 0;
            for (size_t i = 0; i < p->nupq; i++)
                queued += 13 + (size_t)p->upq[(p->uphead + i) % MAX_UPLOAD_QUEUE].length;
            limit_wait(&t->ctx->up_q, &p->uwait, &t->up_chain, queued - p->ucredit, now_ms(t),
                       on_up_grant, p);
            break;
        }
        p->ucredit -= need;
        e->last_use = now_ms(t);
        struct buf *out = conn_out(p->conn);
        if (wire_put_piece_header(out, r.piece, r.begin, r.length) != 0 ||
            conn_put_ref(p->conn, e->rb, r.begin, r.length) != 0) {
            conn_close(p->conn, RV_ENOMEM, "out of memory queueing a block");
            return;
        }
        p->uphead = (p->uphead + 1) % MAX_UPLOAD_QUEUE;
        p->nupq--;
        if (p->am_choking)
            t->fast_served++; /* an allowed-fast piece, served while choked */
        t->ctx->stats.blocks_out++;
        p->uploaded += r.length;
        p->up_window += r.length;
        t->uploaded += r.length;
        t->up_window += r.length;
    }
    /* Look ahead: the next piece the peer asked for is read from disk while this one goes
     * out, so a shallow request queue crossing into a new piece finds it loaded. */
    for (size_t i = 1; i < p->nupq && i < LOOKAHEAD_REQUESTS; i++) {
        uint32_t next = p->upq[(p->uphead + i) % MAX_UPLOAD_QUEUE].piece;
        if (next != p->upq[p->uphead].piece) {
            (void)cache_get(t, next);
            break;
        }
    }
}

static void serve(struct peer *p)
{
    serve_queue(p);
    conn_flush(p->conn);
}

static void on_sent(void *owner, struct conn *c)
{
    (void)owner;
    struct peer *p = c->data;
    if (p != NULL && p->nupq > 0)
        serve(p);
}

static void set_choke(struct peer *p, bool choke)
{
    if (p->am_choking == choke)
        return;
    p->am_choking = choke;
    wire_put_simple(conn_out(p->conn), choke ? WIRE_CHOKE : WIRE_UNCHOKE);
    /* BEP 3: choking discards the peer's pending requests. BEP 6 peers hear a reject for
     * each, and keep those for the pieces we allowed them. */
    if (choke) {
        size_t kept = 0;
        for (size_t i = 0; i < p->nupq; i++) {
            struct block_ref r = p->upq[(p->uphead + i) % MAX_UPLOAD_QUEUE];
            if (p->fast && in_list(p->granted, p->ngranted, r.piece))
                p->upq[(p->uphead + kept++) % MAX_UPLOAD_QUEUE] = r;
            else
                reject(p, &r);
        }
        p->nupq = kept;
        if (kept == 0)
            release_upload(p);
    }
    conn_flush(p->conn);
}

static int by_rate_desc(const void *a, const void *b)
{
    const struct peer *x = *(const struct peer *const *)a, *y = *(const struct peer *const *)b;
    /* Leeching: who gives us most; seeding: who takes most (fastest uploads first). */
    bool seeding = x->t->state == RV_STATE_SEEDING;
    uint64_t rx = seeding ? x->up_rate : x->rate, ry = seeding ? y->up_rate : y->rate;
    return rx < ry ? 1 : rx > ry ? -1 : 0;
}

/* A peer's chance of the optimistic slot: none for skip (the peer that just had it) or, when
 * choked_only, for a peer we do not choke now; three times the others' for a new peer. */
static uint64_t optimistic_weight(const struct peer *p, const struct peer *skip, bool choked_only,
                                  uint64_t now)
{
    if (p == skip || (choked_only && !p->am_choking))
        return 0;
    return now - p->connected_ms < NEW_PEER_MS ? 3 : 1;
}

/* Tit-for-tat (BEP 3, mainline): the upload_slots - 1 interested peers that upload to us fastest
 * (or, seeding, that we upload to fastest) are unchoked, plus one optimistic unchoke rotated
 * every 30 s, three times as likely to go to a new peer so it gets something to trade. */
static void choke_round(rv_torrent_t *t, bool rotate)
{
    struct peer *list[512];
    size_t n = 0;
    unsigned slots = t->ctx->opts.upload_slots ? t->ctx->opts.upload_slots : 4;
    struct peer *optimistic = NULL, *previous = NULL;
    for (struct peer *p = t->peers; p != NULL; p = p->next) {
        if (!p->handshaked)
            continue;
        if (p->optimistic) {
            if (!rotate && p->peer_interested)
                optimistic = p;
            previous = p;
            p->optimistic = false;
        }
        if (p->peer_interested && n < sizeof(list) / sizeof(list[0]))
            list[n++] = p;
    }
    qsort(list, n, sizeof(list[0]), by_rate_desc);
    size_t regular = slots > 1 ? slots - 1 : 1;
    if (regular > n)
        regular = n;
    bool keep[512] = {false};
    for (size_t i = 0; i < regular; i++)
        keep[i] = true;
    if (optimistic == NULL && n > regular) {
        /* A rotation moves the slot to another peer when there is one (as mainline does), and
         * to a peer we choke now when there is one (as libtorrent does): one that just lost
         * its regular slot was served already, a choked one waits to show what it gives. So
         * the peers choked now are drawn from first (pass 0), the others only without one. */
        const struct peer *skip = n - regular > 1 ? previous : NULL;
        uint64_t now = now_ms(t);
        for (int pass = 0; pass < 2 && optimistic == NULL; pass++) {
            uint64_t total = 0;
            for (size_t i = regular; i < n; i++)
                total += optimistic_weight(list[i], skip, pass == 0, now);
            if (total == 0)
                continue;
            uint64_t pick = rand_u32() % total;
            for (size_t i = regular; i < n && optimistic == NULL; i++) {
                uint64_t w = optimistic_weight(list[i], skip, pass == 0, now);
                if (w == 0)
                    continue;
                if (pick < w)
                    optimistic = list[i];
                else
                    pick -= w;
            }
        }
    }
    if (optimistic != NULL)
        optimistic->optimistic = true;
    for (struct peer *p = t->peers; p != NULL; p = p->next) {
        if (!p->handshaked)
            continue;
        bool unchoke = p->optimistic;
        for (size_t i = 0; i < n && !unchoke; i++)
            unchoke = keep[i] && list[i] == p;
        set_choke(p, !unchoke);
    }
}

/* A peer became interested: with a slot free, unchoke it now rather than at the next round. */
static void maybe_unchoke(rv_torrent_t *t, struct peer *p)
{
    unsigned slots = t->ctx->opts.upload_slots ? t->ctx->opts.upload_slots : 4, open = 0;
    for (struct peer *o = t->peers; o != NULL; o = o->next)
        open += o->handshaked && !o->am_choking;
    if (open < slots && !t->stopping)
        set_choke(p, false);
}

/* ---- extensions: BEP 10 handshake, BEP 9 metadata, BEP 11 PEX, BEP 6 allowed fast ---- */

static void metadata_ready(rv_torrent_t *t);

static bool data_ready(const rv_torrent_t *t)
{
    return t->picker != NULL;
}

static void send_ext_handshake(rv_torrent_t *t, struct peer *p)
{
    struct ext_handshake_out h = {
        .pex = !t->is_private,
        .port = t->ctx->opts.no_listen ? 0 : t->ctx->opts.port,
        .reqq = MAX_UPLOAD_QUEUE,
        .yourip = &p->conn->addr,
        .metadata_size = t->ti != NULL ? (int64_t)t->ti->info_len : -1,
        .upload_only = t->state == RV_STATE_SEEDING,
    };
    ext_handshake_put(conn_out(p->conn), &h);
}

/* BEP 6: the canonical allowed-fast set of an IPv4 peer; we announce the pieces of it we have
 * and serve them while it is choked. Only a peer that starts with (almost) nothing gets it, as
 * BEP 6 intends: it bootstraps a newcomer; a peer with pieces can trade. */
static void grant_allowed_fast(rv_torrent_t *t, struct peer *p)
{
    if (!p->fast || p->conn->addr.family != 4 || !data_ready(t) || p->ngranted > 0 ||
        p->have.set >= ALLOWED_FAST_K)
        return;
    p->ngranted = fast_allowed_set(p->conn->addr.ip, t->info_hash, t->ti->piece_count,
                                   ALLOWED_FAST_K, p->granted);
    for (size_t i = 0; i < p->ngranted; i++)
        if (bitfield_has(&t->have, p->granted[i]))
            wire_put_index(conn_out(p->conn), WIRE_ALLOWED_FAST, p->granted[i]);
}

/* Two seeds have nothing to trade (BEP 21): a seed drops a peer that has everything or says
 * it only uploads, and will not dial it again. */
static bool drop_if_both_seeds(rv_torrent_t *t, struct peer *p)
{
    if (t->state != RV_STATE_SEEDING)
        return false;
    if (!p->upload_only && !(data_ready(t) && bitfield_is_full(&p->have)))
        return false;
    struct candidate *c = cand_find(t, &p->conn->addr);
    if (c != NULL)
        c->seed = true;
    conn_close(p->conn, 0, "both sides are seeds");
    return true;
}

/* Asks the peer for metadata blocks while it has them and we lack them. */
static void request_metadata(rv_torrent_t *t, struct peer *p)
{
    if (t->ti != NULL || t->stopping || !p->got_eh || p->md_refused ||
        p->eh.ids[EXT_UT_METADATA] == 0 || p->conn->state != CONN_ACTIVE)
        return;
    if (p->eh.metadata_size > (int64_t)EXT_MAX_METADATA) {
        p->md_refused = true;
        char a[64];
        peer_addr_format(&p->conn->addr, a, sizeof(a));
        emit(t, RV_EVENT_METADATA, 0, RV_ETOOBIG,
             "%s: advertises metadata of %lld bytes, over the %u-byte limit: not asked", a,
             (long long)p->eh.metadata_size, EXT_MAX_METADATA);
        return;
    }
    uint32_t block;
    while (p->md_asked < METADATA_PIPELINE &&
           metadata_pick(&t->md, p, p->eh.metadata_size, now_ms(t), &block) == 1) {
        ut_metadata_put(conn_out(p->conn), p->eh.ids[EXT_UT_METADATA], UT_METADATA_REQUEST, block,
                        0, NULL, 0);
        p->md_asked++;
    }
    conn_flush(p->conn);
}

static void request_metadata_all(rv_torrent_t *t)
{
    for (struct peer *p = t->peers; p != NULL; p = p->next)
        request_metadata(t, p);
}

static int on_ut_metadata(rv_torrent_t *t, struct peer *p, const struct wire_msg *m)
{
    struct ut_metadata_msg um;
    rv_error_t e;
    if (ut_metadata_parse(m->data, m->data_len, &um, &e) != 0) {
        conn_set_reason(p->conn, "%s", e.msg);
        return RV_EPROTO;
    }
    if (um.type == UT_METADATA_REQUEST) {
        uint8_t id = p->eh.ids[EXT_UT_METADATA];
        if (id == 0)
            return 0; /* it never said how to answer */
        size_t off = (size_t)um.piece * EXT_METADATA_BLOCK;
        if (t->ti == NULL || off >= t->ti->info_len) {
            ut_metadata_put(conn_out(p->conn), id, UT_METADATA_REJECT, um.piece, 0, NULL, 0);
        } else {
            size_t len = t->ti->info_len - off;
            if (len > EXT_METADATA_BLOCK)
                len = EXT_METADATA_BLOCK;
            ut_metadata_put(conn_out(p->conn), id, UT_METADATA_DATA, um.piece, t->ti->info_len,
                            t->ti->info_bytes + off, len);
        }
        conn_flush(p->conn);
        return 0;
    }
    if (um.type == UT_METADATA_REJECT) {
        p->md_refused = true;
        p->md_asked = 0;
        metadata_peer_gone(&t->md, p);
        request_metadata_all(t);
        return 0;
    }
    if (p->md_asked > 0)
        p->md_asked--;
    void *blame[METADATA_MAX_BLAME];
    size_t nblame = 0;
    int rc = metadata_received(&t->md, p, um.piece, um.total_size, um.data, um.data_len, blame,
                               &nblame, &e);
    char a[64];
    peer_addr_format(&p->conn->addr, a, sizeof(a));
    if (rc == RV_EPROTO) {
        emit(t, RV_EVENT_METADATA, 0, rc, "%s: %s", a, e.msg);
        struct candidate *c = cand_find(t, &p->conn->addr);
        if (c != NULL)
            ban_peer(t, c, e.msg);
        conn_set_reason(p->conn, "%s", e.msg);
        return RV_EPROTO;
    }
    if (rc == RV_EHASH) {
        emit(t, RV_EVENT_METADATA, 0, rc, "%s", e.msg);
        if (nblame == 1) {
            struct peer *liar = blame[0];
            struct candidate *c = cand_find(t, &liar->conn->addr);
            if (c != NULL)
                ban_peer(t, c, "sent metadata that does not match the info-hash");
            else
                conn_close(liar->conn, RV_EHASH, "sent metadata that does not match the info-hash");
        }
        for (struct peer *o = t->peers; o != NULL; o = o->next)
            o->md_asked = 0; /* the attempt is gone; late answers are ignored */
        request_metadata_all(t);
        return 0;
    }
    if (rc == METADATA_COMPLETE) {
        metadata_ready(t);
        return 0;
    }
    request_metadata(t, p);
    return 0;
}

static bool is_our_address(const rv_torrent_t *t, const struct peer_addr *a)
{
    if (a->port != t->ctx->opts.port)
        return false;
    if (t->has_ext_addr && t->ext_addr.family == a->family &&
        memcmp(t->ext_addr.ip, a->ip, a->family == 6 ? 16 : 4) == 0)
        return true;
    struct peer_addr l;
    if (t->ctx->opts.listen_addr != NULL) {
        char buf[80];
        snprintf(buf, sizeof(buf), strchr(t->ctx->opts.listen_addr, ':') ? "[%s]:%u" : "%s:%u",
                 t->ctx->opts.listen_addr, (unsigned)a->port);
        if (peer_addr_parse(buf, &l) == 0 && l.family == a->family &&
            memcmp(l.ip, a->ip, a->family == 6 ? 16 : 4) == 0)
            return true;
    }
    return false;
}

static void connect_peers(rv_torrent_t *t);

static int on_pex(rv_torrent_t *t, struct peer *p, const struct wire_msg *m)
{
    if (t->is_private)
        return 0; /* BEP 27: peers come from the private tracker only */
    struct pex_msg *pm = malloc(sizeof(*pm));
    if (pm == NULL)
        return RV_ENOMEM;
    rv_error_t e;
    if (pex_parse(m->data, m->data_len, pm, &e) != 0) {
        free(pm);
        conn_set_reason(p->conn, "%s", e.msg);
        return RV_EPROTO;
    }
    for (size_t i = 0; i < pm->nadded; i++) {
        const struct peer_addr *a = &pm->added[i].addr;
        if (is_our_address(t, a))
            continue;
        if (peers_add(&t->known, a, PEER_SRC_PEX) == 1)
            t->pex_received++;
        struct candidate *c = cand_find(t, a);
        if (c != NULL && (pm->added[i].flags & PEX_FLAG_SEED))
            c->seed = true;
    }
    free(pm);
    if (!t->stopping && (t->state == RV_STATE_DOWNLOADING || t->state == RV_STATE_METADATA))
        connect_peers(t);
    return 0;
}

/* The address a peer accepts connections on: where we dialled it, or its 'p'. */
static bool listen_addr_of(const struct peer *p, struct peer_addr *out)
{
    *out = p->conn->addr;
    if (!p->conn->incoming)
        return true;
    if (!p->got_eh || p->eh.port == 0)
        return false;
    out->port = p->eh.port;
    return true;
}

static bool addr_eq(const struct peer_addr *a, const struct peer_addr *b)
{
    return a->family == b->family && a->port == b->port &&
           memcmp(a->ip, b->ip, a->family == 6 ? 16 : 4) == 0;
}

/* BEP 11: tells each peer, at most once a minute, which of our peers came and went. */
static void pex_tick(rv_torrent_t *t, uint64_t now)
{
    if (t->is_private)
        return;
    for (struct peer *p = t->peers; p != NULL; p = p->next) {
        if (!p->handshaked || !p->got_eh || p->eh.ids[EXT_UT_PEX] == 0 || now < p->pex_next_ms)
            continue;
        p->pex_next_ms = now + PEX_INTERVAL_MS;
        struct pex_peer added[PEX_MAX];
        struct peer_addr dropped[PEX_MAX], cur[PEX_MAX_SENT];
        uint8_t curflags[PEX_MAX_SENT];
        size_t nadded = 0, ndropped = 0, ncur = 0;
        for (struct peer *o = t->peers; o != NULL && ncur < PEX_MAX_SENT; o = o->next) {
            if (o == p || !o->handshaked || !listen_addr_of(o, &cur[ncur]))
                continue;
            bool seed = o->early_all || (data_ready(t) && bitfield_is_full(&o->have)) ||
                        o->upload_only;
            curflags[ncur++] = (uint8_t)((seed ? PEX_FLAG_SEED : 0) |
                                         (o->conn->incoming ? 0 : PEX_FLAG_REACHABLE));
        }
        for (size_t i = 0; i < ncur && nadded < PEX_MAX; i++) {
            bool known = false;
            for (size_t k = 0; k < p->npex_sent && !known; k++)
                known = addr_eq(&p->pex_sent[k], &cur[i]);
            if (!known)
                added[nadded++] = (struct pex_peer){cur[i], curflags[i]};
        }
        for (size_t k = 0; k < p->npex_sent && ndropped < PEX_MAX; k++) {
            bool still = false;
            for (size_t i = 0; i < ncur && !still; i++)
                still = addr_eq(&p->pex_sent[k], &cur[i]);
            if (!still)
                dropped[ndropped++] = p->pex_sent[k];
        }
        if (nadded == 0 && ndropped == 0)
            continue;
        if (pex_put(conn_out(p->conn), p->eh.ids[EXT_UT_PEX], added, nadded, dropped,
                    ndropped) != 0)
            continue;
        conn_flush(p->conn);
        /* What it knows now: what it knew, less the dropped, plus the added. */
        if (p->pex_sent == NULL &&
            (p->pex_sent = malloc(PEX_MAX_SENT * sizeof(*p->pex_sent))) == NULL)
            continue;
        size_t n = 0;
        for (size_t k = 0; k < p->npex_sent; k++) {
            bool gone = false;
            for (size_t d = 0; d < ndropped && !gone; d++)
                gone = addr_eq(&p->pex_sent[k], &dropped[d]);
            if (!gone)
                p->pex_sent[n++] = p->pex_sent[k];
        }
        for (size_t i = 0; i < nadded && n < PEX_MAX_SENT; i++)
            p->pex_sent[n++] = added[i].addr;
        p->npex_sent = n;
    }
}

static int on_extended(rv_torrent_t *t, struct peer *p, const struct wire_msg *m)
{
    rv_error_t e;
    if (!p->ext) {
        conn_set_reason(p->conn, "sent an extended message without offering BEP 10");
        return RV_EPROTO;
    }
    if (m->ext_id == EXT_HANDSHAKE_ID) {
        if (ext_handshake_parse(m->data, m->data_len, &p->eh, &e) != 0) {
            conn_set_reason(p->conn, "%s", e.msg);
            return RV_EPROTO;
        }
        p->got_eh = true;
        p->upload_only = p->eh.upload_only;
        if (p->eh.has_yourip) {
            t->has_ext_addr = true;
            t->ext_addr = p->eh.yourip;
        }
        if (p->pex_next_ms == 0)
            p->pex_next_ms = now_ms(t) + PEX_FIRST_MS;
        if (drop_if_both_seeds(t, p))
            return 0;
        request_metadata(t, p);
        return 0;
    }
    if (m->ext_id == EXT_OUR_ID(EXT_UT_METADATA))
        return on_ut_metadata(t, p, m);
    if (m->ext_id == EXT_OUR_ID(EXT_UT_PEX))
        return on_pex(t, p, m);
    if (m->ext_id == EXT_OUR_ID(EXT_UPLOAD_ONLY)) {
        p->upload_only = m->data_len >= 1 && m->data[0] != 0;
        drop_if_both_seeds(t, p);
        return 0;
    }
    if (m->ext_id == EXT_OUR_ID(EXT_LT_DONTHAVE)) {
        uint32_t index;
        if (ext_get_index(m->data, m->data_len, &index, &e) != 0) {
            conn_set_reason(p->conn, "%s", e.msg);
            return RV_EPROTO;
        }
        if (!data_ready(t))
            return 0;
        if (index >= t->ti->piece_count) {
            conn_set_reason(p->conn, "lt_donthave for piece %u but the torrent has %u pieces",
                            index, t->ti->piece_count);
            return RV_EPROTO;
        }
        if (bitfield_has(&p->have, index)) {
            bitfield_clear(&p->have, index);
            picker_dec(t->picker, index);
            update_interest(p);
        }
        return 0;
    }
    return 0; /* an extension we did not offer: ignored (BEP 10) */
}

/* Before the metadata: what a peer says it has is kept until the piece count is known. */
static int early_message(rv_torrent_t *t, struct peer *p, const struct wire_msg *m)
{
    switch (m->type) {
    case WIRE_CHOKE:
        p->peer_choking = true;
        break;
    case WIRE_UNCHOKE:
        p->peer_choking = false;
        break;
    case WIRE_INTERESTED:
        p->peer_interested = true;
        break;
    case WIRE_NOT_INTERESTED:
        p->peer_interested = false;
        break;
    case WIRE_HAVE:
        if (p->nearly == p->capearly && p->capearly < MAX_EARLY_HAVES) {
            size_t cap = p->capearly ? p->capearly * 2 : 64;
            uint32_t *n = realloc(p->early_haves, cap * sizeof(*n));
            if (n == NULL)
                return RV_ENOMEM;
            p->early_haves = n;
            p->capearly = cap;
        }
        if (p->nearly < p->capearly)
            p->early_haves[p->nearly++] = m->index;
        break;
    case WIRE_BITFIELD: {
        uint8_t *bits = malloc(m->data_len ? m->data_len : 1);
        if (bits == NULL)
            return RV_ENOMEM;
        memcpy(bits, m->data, m->data_len);
        free(p->early_bits);
        p->early_bits = bits;
        p->early_bits_len = m->data_len;
        break;
    }
    case WIRE_HAVE_ALL:
    case WIRE_HAVE_NONE:
    case WIRE_ALLOWED_FAST:
    case WIRE_SUGGEST:
    case WIRE_REJECT:
        if (!p->fast) {
            conn_set_reason(p->conn, "sent a fast-extension message without offering BEP 6");
            return RV_EPROTO;
        }
        if (m->type == WIRE_HAVE_ALL)
            p->early_all = true;
        if (m->type == WIRE_ALLOWED_FAST && p->nallowed < MAX_ALLOWED_FAST &&
            !in_list(p->allowed, p->nallowed, m->index))
            p->allowed[p->nallowed++] = m->index;
        break;
    default:
        break; /* requests and pieces cannot reach here (the codec refuses them) */
    }
    (void)t;
    return 0;
}

/* ---- the DHT (BEP 5) ---- */

static bool uses_dht(const rv_torrent_t *t)
{
    return t->ctx->dht != NULL && !t->is_private && !t->no_trackers;
}

static void on_dht_peers(void *owner, const struct peer_addr *peers, size_t n, bool done)
{
    rv_torrent_t *t = owner;
    (void)done;
    for (size_t i = 0; i < n; i++)
        if (!is_our_address(t, &peers[i]) && peers_add(&t->known, &peers[i], PEER_SRC_DHT) == 1)
            t->dht_peers++;
    if (n > 0 && !t->stopping &&
        (t->state == RV_STATE_DOWNLOADING || t->state == RV_STATE_METADATA))
        connect_peers(t);
}

/* Looks the torrent up (and announces it) when due: at start, every 20 minutes, and every
 * minute while a download has few peers. */
static void dht_tick(rv_torrent_t *t, uint64_t now)
{
    if (!uses_dht(t) || now < t->dht_next_ms || t->stopping)
        return;
    bool wanting = t->state == RV_STATE_METADATA || t->state == RV_STATE_DOWNLOADING;
    if (!wanting && t->state != RV_STATE_SEEDING)
        return;
    bool listening = !t->ctx->opts.no_listen;
    if (dht_get_peers(t->ctx->dht, t->info_hash, listening, t->ctx->opts.port, on_dht_peers, t) != 0)
        return;
    t->dht_next_ms = now + (wanting && t->npeers < DHT_FEW_PEERS ? DHT_RETRY_MS : DHT_REANNOUNCE_MS);
}

/* BEP 6 messages once the metadata is known. */
static int fast_message(rv_torrent_t *t, struct peer *p, const struct wire_msg *m)
{
    switch (m->type) {
    case WIRE_HAVE_ALL:
        picker_dec_bitfield(t->picker, &p->have);
        bitfield_set_all(&p->have);
        picker_inc_bitfield(t->picker, &p->have);
        p->got_bitfield = true;
        update_interest(p);
        if (drop_if_both_seeds(t, p))
            return 0;
        fill_requests(p);
        break;
    case WIRE_HAVE_NONE:
        p->got_bitfield = true;
        grant_allowed_fast(t, p);
        conn_flush(p->conn);
        break;
    case WIRE_ALLOWED_FAST:
        if (p->nallowed < MAX_ALLOWED_FAST && !in_list(p->allowed, p->nallowed, m->index))
            p->allowed[p->nallowed++] = m->index;
        update_interest(p);
        fill_requests(p);
        break;
    case WIRE_SUGGEST:
        /* The newest hints replace the oldest. */
        if (!in_list(p->suggested, p->nsuggested, m->index)) {
            if (p->nsuggested == MAX_SUGGESTED) {
                memmove(p->suggested, p->suggested + 1,
                        (MAX_SUGGESTED - 1) * sizeof(p->suggested[0]));
                p->nsuggested--;
            }
            p->suggested[p->nsuggested++] = m->index;
        }
        break;
    case WIRE_REJECT: {
        /* The block goes back to the picker; the peer is asked again at the next tick, not at
         * once, so a peer that keeps refusing does not make us spin. */
        uint32_t len;
        if (remove_request(p, m->index, m->begin, &len)) {
            picker_block_dropped(t->picker, m->index, m->begin, p);
            t->rejects_received++;
        }
        break;
    }
    default:
        break;
    }
    return 0;
}

/* ---- connection callbacks ---- */

static int on_handshake(void *owner, struct conn *c, const struct handshake *h)
{
    rv_torrent_t *t = owner;
    struct peer *p = c->data;
    if (memcmp(h->peer_id, t->hs.peer_id, 20) == 0) {
        conn_set_reason(c, "connected to ourselves");
        return RV_EPROTO;
    }
    if (t->stopping)
        return RV_ECANCELED;
    /* One connection per peer id: a second one is the same peer dialling twice or someone
     * claiming its identity; either way it gets nothing the first does not. */
    for (struct peer *o = t->peers; o != NULL; o = o->next) {
        if (o != p && o->handshaked && memcmp(o->peer_id, h->peer_id, 20) == 0) {
            char oa[64];
            peer_addr_format(&o->conn->addr, oa, sizeof(oa));
            conn_set_reason(c, "peer id already connected from %s", oa);
            return RV_EPROTO;
        }
    }
    memcpy(p->peer_id, h->peer_id, 20);
    p->handshaked = true;
    p->connected_ms = now_ms(t);
    for (size_t i = 0; i < 20 && i < sizeof(p->client) - 1; i++) {
        uint8_t ch = h->peer_id[i];
        p->client[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '.';
    }
    t->npeers++;
    struct candidate *cand = cand_find(t, &c->addr);
    if (cand != NULL) {
        cand->state = CAND_CONNECTED;
        cand->fails = 0;
    }
    /* An extension is on only when both handshakes offer it. */
    p->ext = (h->reserved[EXT_RESERVED_BYTE] & t->hs.reserved[EXT_RESERVED_BYTE] &
              EXT_RESERVED_BIT) != 0;
    p->fast = (h->reserved[FAST_RESERVED_BYTE] & t->hs.reserved[FAST_RESERVED_BYTE] &
               FAST_RESERVED_BIT) != 0;
    /* BEP 6 peers hear have all / have none instead of a full or empty bitfield. */
    if (p->fast && (t->have.set == 0 || !data_ready(t)))
        wire_put_simple(conn_out(c), WIRE_HAVE_NONE);
    else if (p->fast && bitfield_is_full(&t->have))
        wire_put_simple(conn_out(c), WIRE_HAVE_ALL);
    else if (t->have.set > 0)
        wire_put_bitfield(conn_out(c), t->have.bits, bitfield_bytes(t->have.count));
    if (p->ext)
        send_ext_handshake(t, p);
    /* BEP 5: both sides run a DHT node: tell it our UDP port. */
    if (t->ctx->dht != NULL && (h->reserved[DHT_RESERVED_BYTE] & DHT_RESERVED_BIT))
        wire_put_port(conn_out(c), dht_port(t->ctx->dht));
    char a[64];
    peer_addr_format(&c->addr, a, sizeof(a));
    emit(t, RV_EVENT_PEER_CONNECTED, 0, 0, "%s %s", a, p->client);
    return 0;
}

static int on_message(void *owner, struct conn *c, const struct wire_msg *m)
{
    rv_torrent_t *t = owner;
    struct peer *p = c->data;
    if (m->type == WIRE_EXTENDED)
        return on_extended(t, p, m);
    if (m->type == WIRE_PORT) {
        /* BEP 5: its DHT node; a ping adds it to the routing table if it answers. */
        if (t->ctx->dht != NULL && m->port != 0) {
            struct peer_addr node = c->addr;
            node.port = m->port;
            dht_ping(t->ctx->dht, &node);
        }
        return 0;
    }
    if (!data_ready(t))
        return early_message(t, p, m);
    switch (m->type) {
    case WIRE_KEEPALIVE:
        break;
    case WIRE_CHOKE:
        /* BEP 3: when a peer chokes, it drops our pending requests; a BEP 6 peer keeps those
         * for allowed-fast pieces and rejects the rest. */
        p->peer_choking = true;
        if (p->fast)
            drop_requests_not_allowed(p);
        else
            drop_requests(p);
        break;
    case WIRE_UNCHOKE:
        p->peer_choking = false;
        fill_requests(p);
        break;
    case WIRE_INTERESTED:
        p->peer_interested = true;
        maybe_unchoke(t, p);
        break;
    case WIRE_NOT_INTERESTED:
        p->peer_interested = false;
        break;
    case WIRE_HAVE:
        if (!bitfield_has(&p->have, m->index)) {
            bitfield_set(&p->have, m->index);
            picker_inc(t->picker, m->index);
            if (!p->am_interested && !picker_have(t->picker, m->index))
                update_interest(p);
            if (drop_if_both_seeds(t, p))
                break;
            fill_requests(p);
        }
        break;
    case WIRE_BITFIELD: {
        /* BEP 3 sends the bitfield once, first; aria2 sends a fresh one instead of several
         * haves, and libtorrent accepts that: its new bits count as haves. */
        if (p->got_bitfield || p->have.set > 0) {
            struct bitfield nb;
            if (bitfield_init(&nb, t->ti->piece_count) != 0)
                return RV_ENOMEM;
            if (bitfield_load(&nb, m->data, m->data_len) != 0) {
                bitfield_free(&nb);
                conn_set_reason(c, "sent an invalid bitfield");
                return RV_EPROTO;
            }
            for (uint32_t i = 0; i < nb.count; i++) {
                if (bitfield_has(&nb, i) && !bitfield_has(&p->have, i)) {
                    bitfield_set(&p->have, i);
                    picker_inc(t->picker, i);
                }
            }
            bitfield_free(&nb);
            update_interest(p);
            fill_requests(p);
            break;
        }
        p->got_bitfield = true;
        int rc = bitfield_load(&p->have, m->data, m->data_len);
        if (rc != 0) {
            conn_set_reason(c, "sent an invalid bitfield");
            return RV_EPROTO;
        }
        picker_inc_bitfield(t->picker, &p->have);
        update_interest(p);
        if (drop_if_both_seeds(t, p))
            break;
        grant_allowed_fast(t, p);
        fill_requests(p);
        conn_flush(c);
        break;
    }
    case WIRE_HAVE_ALL:
    case WIRE_HAVE_NONE:
    case WIRE_ALLOWED_FAST:
    case WIRE_SUGGEST:
    case WIRE_REJECT:
        if (!p->fast) {
            conn_set_reason(c, "sent a fast-extension message without offering BEP 6");
            return RV_EPROTO;
        }
        return fast_message(t, p, m);
    case WIRE_REQUEST: {
        /* BEP 3: a choked peer's requests are ignored (BEP 6: rejected), unless for a piece we
         * allowed it. Pieces we do not have and blocks over 16 KiB (what every client asks
         * for) are refused; a peer queueing more than we would ever serve at once is flooding
         * us and goes. */
        struct block_ref r = {m->index, m->begin, m->length};
        if ((p->am_choking && !(p->fast && in_list(p->granted, p->ngranted, m->index))) ||
            !bitfield_has(&t->have, m->index) || m->length > RV_BLOCK_SIZE) {
            reject(p, &r);
            conn_flush(c);
            break;
        }
        if (p->nupq == MAX_UPLOAD_QUEUE) {
            conn_set_reason(c, "flooded us with more than %d outstanding requests",
                            MAX_UPLOAD_QUEUE);
            return RV_EPROTO;
        }
        if (p->upq == NULL && (p->upq = malloc(MAX_UPLOAD_QUEUE * sizeof(*p->upq))) == NULL)
            return RV_ENOMEM;
        p->upq[(p->uphead + p->nupq++) % MAX_UPLOAD_QUEUE] = r;
        stats_peak(&t->ctx->stats.peer_uploads_max, p->nupq);
        serve_queue(p); /* the connection flushes once the whole read is handled */
        break;
    }
    case WIRE_CANCEL:
        for (size_t i = 0; i < p->nupq; i++) {
            struct block_ref *r = &p->upq[(p->uphead + i) % MAX_UPLOAD_QUEUE];
            if (r->piece == m->index && r->begin == m->begin && r->length == m->length) {
                /* Close the gap: later requests move one place toward the head. */
                for (size_t k = i; k + 1 < p->nupq; k++)
                    p->upq[(p->uphead + k) % MAX_UPLOAD_QUEUE] =
                        p->upq[(p->uphead + k + 1) % MAX_UPLOAD_QUEUE];
                p->nupq--;
                break;
            }
        }
        break;
    case WIRE_PIECE:
        return handle_block(p, m);
    default:
        /* port, extension messages and ids we did not negotiate: ignored. */
        break;
    }
    return 0;
}

static void peer_unlink(rv_torrent_t *t, struct peer *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else if (t->peers == p)
        t->peers = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->next = p->prev = NULL;
}

/* allow: plaintext first, MSE when a peer hung up on our plaintext handshake (a peer that
 * requires encryption). prefer: MSE first, plaintext when the MSE handshake failed.
 * require: MSE with RC4 only. disable: plaintext only. */
static uint32_t dial_crypto(const rv_torrent_t *t, bool alt)
{
    uint32_t both = MSE_PLAIN | (mse_rc4_available() ? MSE_RC4 : 0);
    switch (t->ctx->opts.encryption) {
    case RV_ENC_DISABLE:
        return 0;
    case RV_ENC_REQUIRE:
        return MSE_RC4;
    case RV_ENC_PREFER:
        return alt ? 0 : both;
    case RV_ENC_ALLOW:
    default:
        return alt ? both : 0;
    }
}

static bool wants_alt(const rv_torrent_t *t, const struct conn *c, int rc)
{
    switch (t->ctx->opts.encryption) {
    case RV_ENC_ALLOW:
        /* closed by the peer before its handshake arrived */
        return c->opts.mse_offer == 0 && rc == RV_ENET;
    case RV_ENC_PREFER:
        return c->opts.mse_offer != 0 && rc != RV_ECANCELED;
    default:
        return false;
    }
}

static void on_close(void *owner, struct conn *c, int rc, const char *why)
{
    rv_torrent_t *t = owner;
    struct peer *p = c->data;
    char a[64];
    peer_addr_format(&c->addr, a, sizeof(a));
    if (p->handshaked) {
        t->npeers--;
        if (data_ready(t)) {
            drop_requests(p);
            picker_peer_gone(t->picker, p);
            picker_dec_bitfield(t->picker, &p->have);
        } else if (t->ti == NULL) {
            metadata_peer_gone(&t->md, p);
        }
        if (!t->stopping)
            emit(t, RV_EVENT_PEER_DROPPED, 0, rc, "%s: %s", a, why);
    } else if (!t->stopping && c->connected_ms != 0) {
        /* Connected but no good handshake (a wrong info-hash or protocol string, none in
         * time, ourselves): say what went wrong; plain connect failures stay quiet. */
        emit(t, RV_EVENT_PEER_DROPPED, 0, rc, "%s: %s", a, why);
    }
    struct candidate *cand = cand_find(t, &c->addr);
    bool redial = false;
    if (cand != NULL && cand->state != CAND_BANNED && !c->incoming && !p->handshaked &&
        c->connected_ms != 0 && !p->alt && !t->stopping && wants_alt(t, c, rc)) {
        /* The handshake we tried was refused: the other one at once, before counting a
         * failure. */
        cand->alt_next = true;
        cand->state = CAND_WAIT;
        cand->retry_ms = now_ms(t);
        redial = true;
    } else if (cand != NULL && cand->state != CAND_BANNED) {
        /* A peer we could not reach, or that broke the protocol, is retried less and less
         * often and given up on after peer_retries tries (on_known_peer). */
        if (!p->handshaked || rc == RV_EPROTO)
            cand->fails++;
        if (p->handshaked && rc == RV_EPROTO)
            cand->proto_errs++;
        /* Retry later, twice as long after each failed attempt (3 s, 6 s, 12 s ... 5 min): a
         * seeder that restarts comes back, one that is gone costs little. */
        cand->state = CAND_WAIT;
        uint64_t delay = RETRY_BASE_MS;
        for (unsigned k = 1; k < cand->fails + cand->proto_errs && delay < RETRY_MAX_MS; k++)
            delay *= 2;
        cand->retry_ms = now_ms(t) + (delay < RETRY_MAX_MS ? delay : RETRY_MAX_MS);
    }
    release_upload(p);
    peer_unlink(t, p);
    bitfield_free(&p->have);
    free(p->upq);
    free(p->early_bits);
    free(p->early_haves);
    free(p->pex_sent);
    free(p);
    t->nconns--;
    if (t->stopping) {
        stop_if_done(t);
        return;
    }
    if (redial)
        connect_peers(t); /* the other handshake now, not at the next tick */
    if (!data_ready(t)) {
        request_metadata_all(t);
        return;
    }
    /* Requests this peer held go to the others. */
    for (struct peer *o = t->peers; o != NULL; o = o->next) {
        fill_requests(o);
        conn_flush(o->conn);
    }
}

static const struct conn_handler handler = {on_handshake, on_message, on_close, on_sent,
                                            peer_expect};

int torrent_accept(rv_torrent_t *t, struct conn *c, const struct handshake *h)
{
    if (t->stopping) {
        conn_set_reason(c, "the torrent is stopping");
        return RV_ECANCELED;
    }
    if (t->nconns >= t->ctx->opts.max_peers) {
        conn_set_reason(c, "already %u peers", t->nconns);
        return RV_EFULL;
    }
    if (ip_banned(t, &c->addr)) {
        conn_set_reason(c, "banned");
        return RV_EPROTO;
    }
    struct peer *p = calloc(1, sizeof(*p));
    if (p == NULL || (data_ready(t) && bitfield_init(&p->have, t->ti->piece_count) != 0)) {
        free(p);
        return RV_ENOMEM;
    }
    p->t = t;
    p->am_choking = p->peer_choking = true;
    p->depth = START_PIPELINE;
    limit_waiter_init(&p->uwait);
    p->conn = c;
    c->data = p;
    conn_set_read_limit(c, &t->ctx->down_q, &t->down_chain);
    p->next = t->peers;
    if (t->peers)
        t->peers->prev = p;
    t->peers = p;
    t->nconns++;
    /* From here the connection is ours: our handshake goes out first, then our bitfield. */
    conn_attach(c, &t->hs, &t->limits, &handler, t);
    return on_handshake(t, c, h);
}

void rv_torrent_set_rate_limits(rv_torrent_t *t, uint64_t download, uint64_t upload)
{
    uint64_t now = now_ms(t);
    limit_bucket_set_rate(&t->down_b, download, now);
    limit_bucket_set_rate(&t->up_b, upload, now);
    limit_sched_run(&t->ctx->down_q, now);
    limit_sched_run(&t->ctx->up_q, now);
}

const uint8_t *torrent_info_hash(const rv_torrent_t *t)
{
    return t->info_hash;
}

bool torrent_is_stopping(const rv_torrent_t *t)
{
    return t->stopping;
}

static void connect_peers(rv_torrent_t *t)
{
    rv_session_opts_t *o = &t->ctx->opts;
    uint64_t now = now_ms(t);
    unsigned connecting = t->nconns - t->npeers;
    for (size_t i = 0; i < t->ncands && t->nconns < o->max_peers &&
                       connecting < o->max_half_open;
         i++) {
        struct candidate *c = &t->cands[i];
        if (c->state == CAND_WAIT && c->retry_ms <= now && !cand_given_up(t, c))
            c->state = CAND_NEW;
        if (c->state != CAND_NEW || ip_banned(t, &c->addr))
            continue;
        if (c->seed && t->state == RV_STATE_SEEDING)
            continue; /* seeds do not dial seeds */
        struct peer *p = calloc(1, sizeof(*p));
        if (p == NULL || (data_ready(t) && bitfield_init(&p->have, t->ti->piece_count) != 0)) {
            free(p);
            return;
        }
        p->t = t;
        p->am_choking = p->peer_choking = true;
        p->depth = START_PIPELINE;
        struct conn *conn;
        struct conn_opts co = t->ctx->conn_opts;
        p->alt = c->alt_next;
        c->alt_next = false;
        co.mse_offer = dial_crypto(t, p->alt);
        int rc = conn_connect(t->ctx->loop, &c->addr, &t->hs, &t->limits, &co, &handler, t,
                              ++t->ctx->next_conn_id, &conn);
        if (rc != 0) {
            bitfield_free(&p->have);
            free(p);
            c->state = CAND_WAIT;
            c->fails++;
            c->retry_ms = now + RETRY_BASE_MS;
            continue;
        }
        conn->data = p;
        p->conn = conn;
        limit_waiter_init(&p->uwait);
        conn_set_read_limit(conn, &t->ctx->down_q, &t->down_chain);
        p->next = t->peers;
        if (t->peers)
            t->peers->prev = p;
        t->peers = p;
        t->nconns++;
        connecting++;
        c->state = CAND_CONNECTING;
    }
}

/* ---- the tick: rates, pipelines, snubs, choking, new connections ---- */

/* aria2's rule: the ratio is uploaded over downloaded, or over the size when we downloaded
 * nothing (seeding data we had). */
static bool seed_limit_reached(const rv_torrent_t *t)
{
    if (t->seed_seconds >= 0 &&
        now_ms(t) - t->seeding_since_ms >= (uint64_t)t->seed_seconds * 1000)
        return true;
    if (t->seed_ratio > 0) {
        uint64_t base = t->downloaded ? t->downloaded : t->ti->total_size;
        if ((double)t->uploaded >= t->seed_ratio * (double)base)
            return true;
    }
    return false;
}

static void on_tick(uv_timer_t *h)
{
    rv_torrent_t *t = h->data;
    uint64_t now = now_ms(t);
    t->ticks++;
    write_held(t); /* a piece waits for a neighbour a tick at most */
    lanes_kick(t, true); /* ...and a chunk for others to go side by side with */
    t->rate = (t->rate * 3 + t->window * 7) / 10;
    t->window = 0;
    t->up_rate = (t->up_rate * 3 + t->up_window * 7) / 10;
    t->up_window = 0;
    for (struct peer *p = t->peers; p != NULL; p = p->next) {
        p->rate = (p->rate * 3 + p->window * 7) / 10;
        p->window = 0;
        p->up_rate = (p->up_rate * 3 + p->up_window * 7) / 10;
        p->up_window = 0;
        /* Two seeds have nothing to trade (BEP 21): free the slot. */
        if (p->handshaked && drop_if_both_seeds(t, p))
            continue;
        /* Keep about three seconds of data in flight (libtorrent's request_queue_time). */
        uint64_t d = p->rate * 3 / RV_BLOCK_SIZE;
        unsigned cap = MAX_PIPELINE;
        unsigned rtt = conn_rtt_us(p->conn);
        if (rtt != 0 && rtt < NEAR_RTT_US)
            cap = NEAR_PIPELINE;
        p->depth = d < MIN_PIPELINE ? MIN_PIPELINE : d > cap ? cap : (unsigned)d;
        if (p->depth < START_PIPELINE && p->downloaded == 0)
            p->depth = START_PIPELINE;
        if (p->nreqs > 0 && p->last_block_ms && now - p->last_block_ms > SNUB_MS && !p->snubbed) {
            /* Snubbed: asked and got nothing for a while. Its blocks go to others. */
            p->snubbed = true;
            drop_requests(p);
        }
        if (p->handshaked) {
            fill_requests(p);
            conn_flush(p->conn);
        }
    }
    if (data_ready(t) && t->ticks % CHOKE_TICKS == 0)
        choke_round(t, t->ticks % OPTIMISTIC_TICKS == 0);
    pex_tick(t, now);
    dht_tick(t, now);
    if (t->state == RV_STATE_METADATA && metadata_expire(&t->md, now) > 0) {
        for (struct peer *p = t->peers; p != NULL; p = p->next)
            p->md_asked = 0; /* the late ones are asked again, of whoever has room */
        request_metadata_all(t);
    }
    if (t->added_since_save > 0 && now - t->last_save_ms >= RESUME_SAVE_MS)
        save_begin(t);
    if (t->state == RV_STATE_SEEDING && seed_limit_reached(t)) {
        emit(t, RV_EVENT_FINISHED, 0, 0, "seeding done: uploaded %llu bytes",
             (unsigned long long)t->uploaded);
        torrent_stop(t);
        return;
    }
    if (t->state == RV_STATE_DOWNLOADING || t->state == RV_STATE_SEEDING ||
        t->state == RV_STATE_METADATA)
        connect_peers(t);
    torrent_snapshot(t);
}

/* ---- checking what is already on disk ---- */

static void start_download(rv_torrent_t *t);

static void check_more(rv_torrent_t *t);

static void on_checked(void *ud, uint32_t piece, int rc, const rv_error_t *err)
{
    rv_torrent_t *t = ud;
    t->checks_in_flight--;
    t->check_done++;
    if (rc == 0) {
        picker_piece_passed(t->picker, piece);
        bitfield_set(&t->have, piece);
        t->bytes_have += piece_payload(t, piece);
        /* Peers met before the check (a magnet link's) hear of it. */
        for (struct peer *p = t->peers; p != NULL; p = p->next)
            if (p->handshaked)
                wire_put_have(conn_out(p->conn), piece);
    } else if (rc != RV_EHASH && t->error_code == 0) {
        t->error_code = rc;
        snprintf(t->error, sizeof(t->error), "%s", err ? err->msg : rv_strerror(rc));
    }
    if (t->stopping) {
        stop_if_done(t);
        return;
    }
    check_more(t);
}

/* Checking is over (or was not needed): says what it did, then downloads or finishes. */
static void check_finished(rv_torrent_t *t)
{
    t->checked = true;
    t->last_save_ms = now_ms(t);
    if (t->existing || t->resumed > 0)
        emit(t, RV_EVENT_CHECKED, t->checks_started, 0,
             "checked %u pieces, %u trusted from resume data, %u of %u had", t->checks_started,
             t->resumed, t->have.set, t->ti->piece_count);
    if (t->checks_started > 0)
        save_begin(t); /* what was hashed need not be hashed again after a crash */
}

/* Whether the check reads piece: not had already, asked for (check_some), and in the selected
 * files only (a boundary piece cannot be read back whole). */
static bool needs_check(const rv_torrent_t *t, uint32_t piece)
{
    if (bitfield_has(&t->have, piece) || (t->check_some && !bitfield_has(&t->check_set, piece)))
        return false;
    return t->file_sel == NULL ||
           (bitfield_has(&t->wanted, piece) && !bitfield_has(&t->partial, piece));
}

static void check_more(rv_torrent_t *t)
{
    /* Stretches of up to STORAGE_RUN_MAX consecutive pieces go to the disk as one job each
     * (hashed side by side where the CPU allows), CHECK_JOBS of them at a time. */
    while (t->checks_in_flight <= (CHECK_JOBS - 1) * STORAGE_RUN_MAX &&
           t->check_next < t->ti->piece_count) {
        uint32_t first = t->check_next, n = 0;
        while (t->check_next < t->ti->piece_count && n < STORAGE_RUN_MAX) {
            if (needs_check(t, t->check_next)) {
                if (n++ == 0)
                    first = t->check_next;
            } else if (n > 0) {
                break; /* a piece not read ends the stretch */
            }
            t->check_next++;
        }
        if (n == 0 || storage_check_run(t->storage, first, n, on_checked, t) != 0)
            continue;
        t->checks_started += n;
        t->checks_in_flight += n;
    }
    if (t->checks_in_flight == 0 && t->check_next >= t->ti->piece_count) {
        check_finished(t);
        if (t->error_code != 0) {
            t->state = RV_STATE_ERROR;
            emit(t, RV_EVENT_ERROR, 0, t->error_code, "%s", t->error);
            torrent_stop(t);
            return;
        }
        if (picker_is_complete(t->picker)) {
            finish(t);
            return;
        }
        start_download(t);
    }
}

/* After the resume data was looked at: checks what it does not vouch for, if anything. */
static void check_start(rv_torrent_t *t)
{
    if (t->existing && (!t->check_some || t->check_set.set > 0)) {
        check_more(t);
        return;
    }
    check_finished(t);
    if (picker_is_complete(t->picker))
        finish(t);
    else
        start_download(t);
}

static bool data_on_disk(const rv_torrent_t *t, const char *dir)
{
    char path[4096];
    for (size_t i = 0; i < t->ti->file_count; i++) {
        const rv_file_t *f = &t->ti->files[i];
        struct stat st;
        if ((f->attr & RV_FILE_PAD) || f->length == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, f->path);
        if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
            return true;
    }
    return false;
}

/* ---- resume data ---- */

static void job_free(struct resume_job *j)
{
    if (j == NULL)
        return;
    resume_free(&j->rd);
    bitfield_free(&j->suspect);
    free(j);
}

/* On a worker: where the file is, what it says, and which pieces it can no longer vouch for. */
static void load_run(uv_work_t *w)
{
    struct resume_job *j = w->data;
    j->rc = resume_path(j->state_dir, j->ti->info_hash, j->path, sizeof(j->path), &j->err);
    if (j->rc != 0) {
        j->path[0] = '\0';
        return;
    }
    if ((j->rc = resume_load(j->path, j->ti, &j->rd, &j->err)) != 0)
        return;
    if (bitfield_init(&j->suspect, j->ti->piece_count) != 0) {
        j->rc = err_set(&j->err, RV_ENOMEM, "out of memory");
        return;
    }
    j->changed = resume_files_match(j->ti, j->save_dir, &j->rd, &j->suspect, &j->err);
    if (j->changed < 0) {
        j->rc = j->changed;
        return;
    }
    resume_drop_suspect(&j->rd, &j->suspect);
}

static void load_done(uv_work_t *w, int status)
{
    (void)status; /* never canceled */
    struct resume_job *j = w->data;
    rv_torrent_t *t = j->t;
    t->resume_busy = false;
    if (j->path[0] != '\0')
        t->resume_file = strdup(j->path);
    t->resume_on = t->resume_file != NULL;
    if (t->stopping) {
        job_free(j);
        stop_if_done(t);
        return;
    }
    if (j->rc == 0 && j->late) {
        t->base_up = j->rd.uploaded;
        t->base_down = j->rd.downloaded;
        for (size_t i = 0; j->take_peers && i < j->rd.peer_count; i++)
            peers_add(&t->known, &j->rd.peers[i], PEER_SRC_MANUAL);
    } else if (j->rc == 0) {
        for (uint32_t i = 0; i < t->ti->piece_count; i++) {
            if (!bitfield_has(&j->rd.have, i))
                continue;
            picker_piece_passed(t->picker, i);
            bitfield_set(&t->have, i);
            t->bytes_have += piece_payload(t, i);
            t->resumed++;
        }
        t->base_up = j->rd.uploaded;
        t->base_down = j->rd.downloaded;
        for (size_t i = 0; j->take_peers && i < j->rd.peer_count; i++)
            peers_add(&t->known, &j->rd.peers[i], PEER_SRC_MANUAL);
        t->check_set = j->suspect;
        j->suspect = (struct bitfield){0};
        t->check_some = true;
        emit(t, RV_EVENT_RESUME, 0, 0, "%s: %u pieces trusted, %d files changed", j->path,
             t->resumed, j->changed);
    } else if (!(j->rc == RV_EIO && j->err.sys_errno == ENOENT) && !j->late) {
        /* Corrupt, for another torrent, unreadable: check everything, as without one. */
        emit(t, RV_EVENT_RESUME, 0, j->rc, "resume data not used, checking everything: %s",
             j->err.msg);
    }
    bool late = j->late;
    job_free(j);
    if (!late)
        check_start(t);
}

/* A copy of what may be claimed now: pieces whose write callback has run (all in have),
 * totals and peers. The files' sizes and times are read on the worker after the sync. */
static struct resume_job *save_snapshot(rv_torrent_t *t)
{
    struct resume_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    j->t = t;
    j->ti = t->ti;
    j->save_dir = t->save_dir;
    if (resume_init(&j->rd, t->ti) != 0 ||
        bitfield_load(&j->rd.have, t->have.bits, bitfield_bytes(t->have.count)) != 0) {
        job_free(j);
        return NULL;
    }
    j->rd.uploaded = t->base_up + t->uploaded;
    j->rd.downloaded = t->base_down + t->downloaded;
    struct peer_addr *pa = malloc((t->ncands ? t->ncands : 1) * sizeof(*pa));
    size_t n = 0;
    for (size_t i = 0; pa != NULL && i < t->ncands && n < RESUME_MAX_PEERS; i++)
        if (t->cands[i].state != CAND_BANNED)
            pa[n++] = t->cands[i].addr;
    if (pa == NULL || resume_set_peers(&j->rd, pa, n) != 0) {
        free(pa);
        job_free(j);
        return NULL;
    }
    free(pa);
    t->added_since_save = 0;
    t->last_save_ms = now_ms(t);
    return j;
}

static void save_run(uv_work_t *w)
{
    struct resume_job *j = w->data;
    j->rc = resume_files_from_disk(j->ti, j->save_dir, j->rd.files, &j->err);
    if (j->rc == 0)
        j->rc = resume_save(j->path, &j->rd, &j->err);
}

static void save_done(uv_work_t *w, int status)
{
    (void)status; /* never canceled */
    struct resume_job *j = w->data;
    rv_torrent_t *t = j->t;
    t->resume_busy = false;
    if (j->rc != 0)
        emit(t, RV_EVENT_RESUME, 0, j->rc, "resume data not saved: %s", j->err.msg);
    else
        emit(t, RV_EVENT_RESUME, 0, 0, "saved %u pieces to %s", j->rd.have.set, j->path);
    job_free(j);
    if (t->stopping) {
        stop_if_done(t);
        return;
    }
    if (t->save_again) {
        t->save_again = false;
        save_begin(t);
    }
}

/* Writes a synced snapshot on a worker. */
static void save_queue(rv_torrent_t *t, struct resume_job *j)
{
    snprintf(j->path, sizeof(j->path), "%s", t->resume_file);
    j->work.data = j;
    t->resume_busy = true;
    /* uv_queue_work fails only without a work callback */
    (void)uv_queue_work(t->ctx->loop, &j->work, save_run, save_done);
}

static void on_save_synced(void *ud, uint32_t piece, int rc, const rv_error_t *err)
{
    (void)piece;
    rv_torrent_t *t = ud;
    struct resume_job *j = t->save_job;
    t->save_job = NULL;
    t->save_syncing = false;
    if (rc != 0) {
        /* Nothing is claimed that a sync did not cover; the old file stays true. */
        emit(t, RV_EVENT_RESUME, 0, rc, "resume data not saved: %s",
             err != NULL ? err->msg : rv_strerror(rc));
        job_free(j);
    } else if (j->final) {
        t->final_job = j; /* written once the storage has closed */
    } else if (t->resume_busy) {
        job_free(j);
        t->save_again = true;
    } else {
        save_queue(t, j);
    }
    if (t->stopping)
        stop_if_done(t);
}

/* Snapshot, sync the data it claims, then save (save_queue). */
static void save_begin(rv_torrent_t *t)
{
    if (!t->resume_on || !t->checked || t->stopping || t->storage == NULL)
        return;
    if (t->resume_busy || t->save_syncing) {
        t->save_again = true;
        return;
    }
    struct resume_job *j = save_snapshot(t);
    if (j == NULL)
        return;
    if (storage_sync(t->storage, on_save_synced, t) != 0) {
        job_free(j);
        return;
    }
    t->save_job = j;
    t->save_syncing = true;
}

/* ---- lifecycle ---- */

static void announce_stats(void *ud, uint64_t *up, uint64_t *down, uint64_t *left)
{
    rv_torrent_t *t = ud;
    *up = t->uploaded;
    *down = t->downloaded;
    /* Before the metadata the size is unknown, but we are no seed: one block is left. */
    if (!data_ready(t))
        *left = RV_BLOCK_SIZE;
    else
        *left = t->sel_total > t->bytes_have ? t->sel_total - t->bytes_have : 0;
}

static void on_tracker_event(void *ud, const struct tracker_state *ts, int rc,
                             const struct announce_resp *resp)
{
    rv_torrent_t *t = ud;
    if (rc == 0)
        emit(t, RV_EVENT_TRACKER, 0, 0, "%s: ok, %zu peers", ts->url, resp->peer_count);
    else
        emit(t, RV_EVENT_TRACKER, 0, rc, "%s: %s", ts->url, ts->error);
    if (!t->stopping && (t->state == RV_STATE_DOWNLOADING || t->state == RV_STATE_METADATA))
        connect_peers(t);
}

static void dht_tick(rv_torrent_t *t, uint64_t now);

static void start_download(rv_torrent_t *t)
{
    t->state = RV_STATE_DOWNLOADING;
    if (t->announcer != NULL)
        announcer_start(t->announcer);
    connect_peers(t);
    dht_tick(t, now_ms(t)); /* the first lookup now: it waits inside the DHT for its nodes */
}

static void finish(rv_torrent_t *t)
{
    if (t->state == RV_STATE_FINISHED)
        return;
    bool downloaded_now = t->state == RV_STATE_DOWNLOADING;
    t->state = RV_STATE_FINISHED;
    /* A download that just completed says 'completed'; data complete from the start was never
     * announced at all: 'started' with left 0 makes us a seed in the tracker's eyes. */
    if (t->announcer != NULL) {
        if (downloaded_now)
            announcer_completed(t->announcer);
        else
            announcer_start(t->announcer);
    }
    emit(t, RV_EVENT_FINISHED, 0, 0, "downloaded %llu bytes in %.1f s",
         (unsigned long long)t->downloaded, (double)(now_ms(t) - t->started_ms) / 1000);
    t->seeding_since_ms = now_ms(t);
    save_begin(t);
    if (t->seed_seconds == 0 || t->stopping) {
        torrent_stop(t);
        return;
    }
    /* Seed: no longer interested in anyone, choke by upload rate from now on. */
    t->state = RV_STATE_SEEDING;
    for (struct peer *p = t->peers; p != NULL; p = p->next) {
        if (p->handshaked) {
            send_interest(p, false);
            conn_flush(p->conn);
        }
    }
    if (t->announcer == NULL && t->ncands == 0 && t->ctx->opts.no_listen) {
        torrent_stop(t); /* nobody could ever reach us */
        return;
    }
    torrent_snapshot(t);
}

static void on_storage_closed(void *ud)
{
    rv_torrent_t *t = ud;
    t->storage = NULL;
    t->storage_closed = true;
    stop_if_done(t);
}

static void on_announcer_stopped(void *ud)
{
    rv_torrent_t *t = ud;
    t->announcer_stopped = true;
    stop_if_done(t);
}

static void on_tick_closed(uv_handle_t *h)
{
    rv_torrent_t *t = h->data;
    t->tick_closed = true;
    stop_if_done(t);
}

static void stop_if_done(rv_torrent_t *t)
{
    if (!t->stopping || t->stopped)
        return;
    /* Peers first; then storage, which finishes queued disk work (piece buffers stay alive
     * until it is closed) and fsyncs; then trackers and the timer. */
    if (t->nconns > 0)
        return;
    if (!t->storage_closed) {
        if (t->storage != NULL && !t->storage_closing) {
            /* A sync in flight calls back (the storage is not closing yet). Then the final
             * snapshot is synced before the close and written after it. Pieces being written
             * come back first, so that it counts them. */
            if (t->save_syncing || t->nwriting > 0 || t->nlock_jobs > 0)
                return;
            if (t->resume_on && t->checked && !t->final_sync_started) {
                t->final_sync_started = true;
                struct resume_job *j = save_snapshot(t);
                if (j != NULL && storage_sync(t->storage, on_save_synced, t) == 0) {
                    j->final = true;
                    t->save_job = j;
                    t->save_syncing = true;
                    return;
                }
                job_free(j);
            }
            t->storage_closing = true;
            storage_close(t->storage, on_storage_closed, t);
        }
        return;
    }
    /* Resume work on a worker (a load, or a save) borrows the torrent: wait for it. */
    if (t->resume_busy || t->md_saving)
        return;
    if (t->final_job != NULL) {
        struct resume_job *j = t->final_job;
        t->final_job = NULL;
        save_queue(t, j);
        return;
    }
    if (!t->announcer_stopped || !t->tick_closed)
        return;
    t->stopped = true;
    if (t->state != RV_STATE_ERROR)
        t->state = RV_STATE_STOPPED;
    torrent_snapshot(t);
    emit(t, RV_EVENT_STOPPED, 0, t->error_code, NULL);
    if (t->ctx->on_stopped != NULL)
        t->ctx->on_stopped(t->ctx->ud, t);
}

void torrent_stop(rv_torrent_t *t)
{
    if (t->stopping)
        return;
    t->stopping = true;
    write_held(t); /* what is complete goes to disk */
    write_flush(t);
    if (t->ctx->dht != NULL)
        dht_cancel(t->ctx->dht, t);
    if (t->state != RV_STATE_ERROR && t->state != RV_STATE_FINISHED)
        t->state = RV_STATE_STOPPING;
    uv_timer_stop(&t->tick);
    uv_close((uv_handle_t *)&t->tick, on_tick_closed);
    for (struct peer *p = t->peers; p != NULL; p = p->next)
        conn_close(p->conn, 0, "stopping");
    if (t->announcer != NULL)
        announcer_stop(t->announcer, on_announcer_stopped, t);
    else
        t->announcer_stopped = true;
    if (t->storage == NULL)
        t->storage_closed = true;
    stop_if_done(t);
}

int torrent_error(const rv_torrent_t *t)
{
    return t->error_code;
}

void torrent_free(rv_torrent_t *t)
{
    if (t == NULL)
        return;
    if (t->announcer != NULL)
        announcer_free(t->announcer);
    picker_free(t->picker);
    peers_free(&t->known);
    free(t->cands);
    for (size_t i = 0; t->bufs != NULL && i < t->nbufs; i++) {
        free(t->bufs[i].mem);
        /* lockstep's chunks are in the pool's arena, unmapped by pool_free */
    }
    pool_free(&t->pool);
    free(t->lock_chunks);
    free(t->lock_filled);
    free(t->lock_carried);
    free(t->bufs);
    free(t->slot_of);
    free(t->free_slots);
    for (size_t i = 0; i < t->ncache; i++)
        rcbuf_unref(t->cache[i].rb);
    free(t->cache);
    bitfield_free(&t->have);
    bitfield_free(&t->mask);
    bitfield_free(&t->wanted);
    bitfield_free(&t->partial);
    free(t->file_sel);
    free(t->sel);
    bitfield_free(&t->check_set);
    metadata_free(&t->md);
    for (size_t i = 0; i < t->magnet_tracker_count; i++)
        free(t->magnet_trackers[i]);
    free(t->magnet_trackers);
    free(t->name);
    free(t->save_torrent);
    job_free(t->save_job);
    job_free(t->final_job);
    free(t->save_dir);
    free(t->state_dir);
    free(t->resume_file);
    rv_torrent_info_free(t->ti);
    pthread_mutex_destroy(&t->snap_lock);
    free(t);
}

/* Everything that needs the metadata: layout, picker, piece memory, storage, then the check
 * of what is on disk or the resume data. At start for a .torrent, when the metadata arrives
 * for a magnet link. Takes ownership of ti. */
static int data_init(rv_torrent_t *t, rv_torrent_info_t *ti, rv_error_t *err)
{
    struct session_ctx *ctx = t->ctx;
    if (!ti->has_v1) {
        rv_torrent_info_free(ti);
        return err_set(err, RV_ETORRENT, "v2-only torrents cannot be downloaded yet");
    }
    rv_torrent_info_free(t->ti);
    t->ti = ti;
    t->is_private = ti->is_private;
    if (layout_from_torrent(&t->layout, ti) != 0)
        return err_set(err, RV_ETORRENT, "inconsistent file layout");
    if (bitfield_init(&t->wanted, ti->piece_count) != 0 ||
        bitfield_init(&t->partial, ti->piece_count) != 0)
        return err_set(err, RV_ENOMEM, "out of memory");
    t->sel_total = ti->total_size;
    t->wanted_count = ti->piece_count;
    if (t->nsel > 0) {
        if ((t->file_sel = malloc(ti->file_count ? ti->file_count : 1)) == NULL)
            return err_set(err, RV_ENOMEM, "out of memory");
        rv_error_t e;
        int rc = select_files(ti, t->sel, t->nsel, t->file_sel, &e);
        if (rc != 0)
            return err_set(err, rc, "file selection: %s", e.msg);
        select_pieces(ti, &t->layout, t->file_sel, &t->wanted, &t->partial);
        t->wanted_count = t->wanted.set;
        t->sel_total = 0;
        for (size_t i = 0; i < ti->file_count; i++)
            if (t->file_sel[i])
                t->sel_total += ti->files[i].length;
    }
    t->limits.piece_count = ti->piece_count;
    t->limits.piece_length = ti->piece_length;
    t->limits.last_piece_length = layout_piece_size(&t->layout, ti->piece_count - 1);
    if (bitfield_init(&t->have, ti->piece_count) != 0 ||
        bitfield_init(&t->mask, ti->piece_count) != 0)
        return err_set(err, RV_ENOMEM, "out of memory");
    /* Memory bound: whole pieces are held until verified, so the number in progress is
     * max_memory / piece_length (at least two, so there is always one to fill). */
    size_t active = ctx->opts.max_memory / ti->piece_length;
    if (active < 2)
        active = 2;
    if (active > ti->piece_count)
        active = ti->piece_count;
    size_t cache_bytes = ctx->opts.read_cache ? ctx->opts.read_cache : 16u << 20;
    t->ncache = cache_bytes / ti->piece_length;
    if (t->ncache < 2)
        t->ncache = 2;
    t->cache = calloc(t->ncache, sizeof(*t->cache));
    t->nbufs = active;
    t->max_writing = (WRITE_QUEUE_BYTES) / ti->piece_length;
    if (t->max_writing < 2)
        t->max_writing = 2;
    t->soft_bufs = (PIECES_IN_MEMORY_BYTES) / ti->piece_length;
    if (t->soft_bufs < t->max_writing)
        t->soft_bufs = t->max_writing;
    t->bufs = calloc(active, sizeof(*t->bufs));
    /* Lockstep where it gains (LOCK_CHUNK): with memory for two rows of the spread at least. */
    size_t pool_bytes = ctx->opts.max_memory < (PIECES_IN_MEMORY_BYTES) ? ctx->opts.max_memory
                                                                        : (PIECES_IN_MEMORY_BYTES);
    if (t->bufs != NULL && ti->piece_hashes != NULL && ti->piece_length >= RUN_PIECE_MAX &&
        ti->piece_length % LOCK_CHUNK == 0 && pool_bytes / LOCK_CHUNK >= 2 * LOCK_SPREAD &&
        (sha1x_min_messages() > 0 || torrent_lockstep_always)) {
        t->chunk_size = LOCK_CHUNK;
        t->chunks_per_piece = ti->piece_length / LOCK_CHUNK;
        t->lock_chunks = calloc(active * t->chunks_per_piece, sizeof(*t->lock_chunks));
        t->lock_filled = calloc(active * t->chunks_per_piece, sizeof(*t->lock_filled));
        t->lock_carried = calloc(active * t->chunks_per_piece, sizeof(*t->lock_carried));
        if (t->lock_chunks == NULL || t->lock_filled == NULL || t->lock_carried == NULL ||
            pool_init(&t->pool, LOCK_CHUNK + piece_extra(t), pool_bytes / LOCK_CHUNK) != 0)
            return err_set(err, RV_ENOMEM, "out of memory");
        for (size_t i = 0; i < active; i++) {
            t->bufs[i].chunk = t->lock_chunks + i * t->chunks_per_piece;
            t->bufs[i].filled = t->lock_filled + i * t->chunks_per_piece;
            t->bufs[i].carried = t->lock_carried + i * t->chunks_per_piece;
        }
        t->lockstep = true;
        t->lanes_gain = sha1x_min_messages() > 0 ? sha1x_min_messages() : 1;
    }
    t->slot_of = malloc(ti->piece_count * sizeof(*t->slot_of));
    t->free_slots = malloc(active * sizeof(*t->free_slots));
    if (t->slot_of != NULL)
        memset(t->slot_of, 0xff, ti->piece_count * sizeof(*t->slot_of));
    for (size_t i = 0; t->free_slots != NULL && i < active; i++)
        t->free_slots[t->nfree++] = (uint32_t)(active - 1 - i);
    struct picker_opts po = {.piece_count = ti->piece_count,
                             .piece_length = ti->piece_length,
                             .last_piece_length = t->limits.last_piece_length,
                             .max_active = (uint32_t)active};
    struct picker *picker = NULL;
    if (t->bufs == NULL || t->slot_of == NULL || t->free_slots == NULL || t->cache == NULL ||
        picker_new(&po, &picker) != 0)
        return err_set(err, RV_ENOMEM, "out of memory");
    for (uint32_t i = 0; t->file_sel != NULL && i < ti->piece_count; i++)
        if (!bitfield_has(&t->wanted, i))
            picker_set_wanted(picker, i, false);
    if (t->lockstep)
        picker_set_spread(picker, LOCK_SPREAD);
    /* Storage last: it closes asynchronously, so nothing after it may fail. */
    struct storage_opts so = {.dir = t->save_dir,
                              .file_sel = t->file_sel,
                              .stats = &t->ctx->stats,
                              .direct = !t->ctx->opts.cached_writes,
                              .disk = &t->ctx->disk};
    t->existing = data_on_disk(t, t->save_dir);
    int rc = storage_new(ctx->loop, ti, &t->layout, &so, &t->storage, err);
    if (rc != 0) {
        picker_free(picker);
        return rc;
    }
    t->picker = picker; /* from here data_ready(t) */
    t->state = RV_STATE_CHECKING;
    return 0;
}

/* Checking (or the resume data's load) begins; may finish or start downloading at once. */
static void data_start(rv_torrent_t *t)
{
    /* BEP 5: a .torrent's nodes are where its DHT search may start. */
    for (size_t i = 0; uses_dht(t) && i < t->ti->dht_node_count; i++)
        dht_bootstrap_node(t->ctx->dht, t->ti->dht_nodes[i]);
    /* Without data on disk there is nothing to check or trust: the download starts now, and
     * the resume file only brings its path, totals and peers when the worker is done. */
    if (!t->existing)
        check_start(t);
    struct resume_job *j = t->no_resume ? NULL : calloc(1, sizeof(*j));
    if (j != NULL) {
        /* The state folder and file are looked at on a worker; checking waits for them. */
        j->t = t;
        j->late = !t->existing;
        j->take_peers = !t->no_trackers;
        j->ti = t->ti;
        j->save_dir = t->save_dir;
        j->state_dir = t->state_dir;
        j->work.data = j;
        t->resume_busy = true;
        (void)uv_queue_work(t->ctx->loop, &j->work, load_run, load_done);
    } else if (t->existing) {
        check_start(t);
    }
}

/* The metadata is in: what each peer said it had is checked against the piece count now. */
static void adopt_peer(rv_torrent_t *t, struct peer *p)
{
    uint32_t n = t->ti->piece_count;
    p->conn->limits = t->limits;
    if (bitfield_init(&p->have, n) != 0) {
        conn_close(p->conn, RV_ENOMEM, "out of memory");
        return;
    }
    const char *bad = NULL;
    char why[160];
    if (p->early_all) {
        bitfield_set_all(&p->have);
    } else if (p->early_bits != NULL &&
               bitfield_load(&p->have, p->early_bits, p->early_bits_len) != 0) {
        snprintf(why, sizeof(why), "sent a bitfield of %zu bytes (or with spare bits set) for %u "
                 "pieces", p->early_bits_len, n);
        bad = why;
    }
    for (size_t i = 0; bad == NULL && i < p->nearly; i++) {
        if (p->early_haves[i] >= n) {
            snprintf(why, sizeof(why), "sent have for piece %u but the torrent has %u pieces",
                     p->early_haves[i], n);
            bad = why;
        } else {
            bitfield_set(&p->have, p->early_haves[i]);
        }
    }
    free(p->early_bits);
    free(p->early_haves);
    p->early_bits = NULL;
    p->early_haves = NULL;
    p->nearly = p->capearly = 0;
    size_t k = 0;
    for (size_t i = 0; i < p->nallowed; i++)
        if (p->allowed[i] < n)
            p->allowed[k++] = p->allowed[i];
    p->nallowed = k;
    if (bad != NULL) {
        bitfield_clear_all(&p->have);
        conn_close(p->conn, RV_EPROTO, bad);
        return;
    }
    p->got_bitfield = p->have.set > 0;
    picker_inc_bitfield(t->picker, &p->have);
    if (p->ext)
        send_ext_handshake(t, p); /* now with metadata_size: it may fetch from us */
    grant_allowed_fast(t, p);
    update_interest(p);
    fill_requests(p);
    conn_flush(p->conn);
}

/* The .torrent of a magnet link, written on a worker: to the state folder (so a restart need
 * not fetch it again) and where the caller asked. */
struct torrent_save_job {
    uv_work_t work;
    rv_torrent_t *t;
    uint8_t *bytes;
    size_t len;
    char *state_dir;    /* NULL: $XDG_STATE_HOME/rivulet */
    bool to_state;
    char *out;          /* save_torrent, or NULL */
    uint8_t info_hash[20];
    char state_path[4096];
    int rc;
    rv_error_t err;
};

static void save_torrent_run(uv_work_t *w)
{
    struct torrent_save_job *j = w->data;
    j->rc = 0;
    if (j->out != NULL && (j->rc = fs_write_atomic(j->out, j->bytes, j->len, &j->err)) != 0)
        return;
    if (j->to_state && torrent_state_path(j->state_dir, j->info_hash, j->state_path,
                                          sizeof(j->state_path), &j->err) == 0)
        (void)fs_write_atomic(j->state_path, j->bytes, j->len, &j->err); /* a cache: best effort */
}

static void save_torrent_done(uv_work_t *w, int status)
{
    (void)status;
    struct torrent_save_job *j = w->data;
    rv_torrent_t *t = j->t;
    t->md_saving = false;
    if (j->rc != 0) {
        fail_torrent(t, j->rc, j->err.msg);
    } else if (t->metadata_only) {
        emit(t, RV_EVENT_FINISHED, 0, 0, "metadata saved to %s", j->out ? j->out : j->state_path);
        torrent_stop(t);
    }
    free(j->bytes);
    free(j->state_dir);
    free(j->out);
    free(j);
    if (t->stopping)
        stop_if_done(t);
}

/* The info dictionary arrived and matched the info-hash: make it a .torrent (the magnet's
 * trackers as tiers), save it, and go on into the data with the peers we have. */
static void metadata_ready(rv_torrent_t *t)
{
    if (t->stopping)
        return; /* no storage may start once the stop has begun */
    struct buf b;
    rv_error_t e;
    buf_init(&b, t->md.size + (1u << 20));
    int rc = buf_append_str(&b, "d");
    if (t->magnet_tracker_count > 0) {
        const char *first = t->magnet_trackers[0];
        rc = rc ? rc : buf_printf(&b, "8:announce%zu:%s13:announce-listl", strlen(first), first);
        for (size_t i = 0; rc == 0 && i < t->magnet_tracker_count; i++)
            rc = buf_printf(&b, "l%zu:%se", strlen(t->magnet_trackers[i]), t->magnet_trackers[i]);
        rc = rc ? rc : buf_append_str(&b, "e");
    }
    rc = rc ? rc : buf_append_str(&b, "4:info");
    rc = rc ? rc : buf_append(&b, t->md.data, t->md.size);
    rc = rc ? rc : buf_append_str(&b, "e");
    rv_torrent_info_t *ti = NULL;
    if (rc == 0 && (rc = rv_torrent_parse(b.data, b.len, 0, &ti, &e)) != 0) {
        char msg[256];
        snprintf(msg, sizeof(msg), "the metadata matches the info-hash but is not a usable "
                 "torrent: %.180s", e.msg);
        buf_free(&b);
        fail_torrent(t, RV_ETORRENT, msg);
        return;
    }
    if (rc != 0) {
        buf_free(&b);
        fail_torrent(t, rc, "out of memory");
        return;
    }
    size_t size = t->md.size;
    unsigned attempts = t->md.attempts;
    metadata_free(&t->md);
    struct torrent_save_job *j = calloc(1, sizeof(*j));
    if (j != NULL) {
        j->t = t;
        j->len = b.len;
        j->bytes = buf_steal(&b, &j->len);
        j->to_state = !t->no_resume;
        j->state_dir = t->state_dir ? strdup(t->state_dir) : NULL;
        j->out = t->save_torrent ? strdup(t->save_torrent) : NULL;
        memcpy(j->info_hash, t->info_hash, 20);
        j->work.data = j;
        t->md_saving = true;
        (void)uv_queue_work(t->ctx->loop, &j->work, save_torrent_run, save_torrent_done);
    }
    buf_free(&b);
    emit(t, RV_EVENT_METADATA, 0, 0, "metadata: %zu bytes from peers (%u attempt%s), \"%s\", "
         "%u pieces", size, attempts, attempts == 1 ? "" : "s", ti->name, ti->piece_count);
    if (t->metadata_only) {
        rv_torrent_info_free(t->ti);
        t->ti = ti; /* no data: the torrent stops once the .torrent is saved */
        if (j == NULL)
            fail_torrent(t, RV_ENOMEM, "out of memory");
        return;
    }
    if ((rc = data_init(t, ti, &e)) != 0) {
        fail_torrent(t, rc, e.msg);
        return;
    }
    for (struct peer *p = t->peers, *next; p != NULL; p = next) {
        next = p->next;
        if (p->conn->state == CONN_CLOSING)
            continue;
        if (p->handshaked) {
            adopt_peer(t, p);
            continue;
        }
        /* Still connecting or in the handshake: it speaks with the real limits from now. */
        p->conn->limits = t->limits;
        if (bitfield_init(&p->have, t->ti->piece_count) != 0)
            conn_close(p->conn, RV_ENOMEM, "out of memory");
    }
    data_start(t);
    torrent_snapshot(t);
}

int torrent_start(struct session_ctx *ctx, rv_torrent_info_t *ti, const rv_magnet_t *magnet,
                  const rv_add_opts_t *opts, rv_torrent_t **out, rv_error_t *err)
{
    int rc;
    if (opts == NULL || opts->save_dir == NULL) {
        rv_torrent_info_free(ti);
        return err_set(err, RV_EINVAL, "no download folder given");
    }
    if (ti == NULL && (magnet == NULL || !magnet->has_v1))
        return err_set(err, RV_EINVAL, "magnet link without a v1 (btih) info-hash: v2-only "
                       "magnet links cannot be downloaded yet");
    rv_torrent_t *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        rv_torrent_info_free(ti);
        return err_set(err, RV_ENOMEM, "out of memory");
    }
    t->ctx = ctx;
    t->state = RV_STATE_CHECKING;
    pthread_mutex_init(&t->snap_lock, NULL);
    t->started_ms = uv_now(ctx->loop);
    memcpy(t->info_hash, ti != NULL ? ti->info_hash : magnet->info_hash, 20);
    hex_encode(t->info_hash, 20, t->hex_name);
    memcpy(t->hs.info_hash, t->info_hash, 20);
    rand_peer_id(t->hs.peer_id);
    t->hs.reserved[EXT_RESERVED_BYTE] |= EXT_RESERVED_BIT;
    t->hs.reserved[FAST_RESERVED_BYTE] |= FAST_RESERVED_BIT;
    if (ctx->dht != NULL)
        t->hs.reserved[DHT_RESERVED_BYTE] |= DHT_RESERVED_BIT;
    t->no_resume = opts->no_resume;
    t->no_trackers = opts->no_trackers;
    t->metadata_only = opts->metadata_only;
    t->save_dir = strdup(opts->save_dir);
    if (opts->state_dir != NULL)
        t->state_dir = strdup(opts->state_dir);
    if (opts->save_torrent != NULL)
        t->save_torrent = strdup(opts->save_torrent);
    if (magnet != NULL && magnet->name != NULL)
        t->name = strdup(magnet->name);
    if (t->save_dir == NULL || (opts->state_dir != NULL && t->state_dir == NULL) ||
        (opts->save_torrent != NULL && t->save_torrent == NULL)) {
        rc = err_set(err, RV_ENOMEM, "out of memory");
        goto fail;
    }
    const rv_file_range_t *sel = opts->select;
    size_t nsel = opts->select_count;
    if (nsel == 0 && magnet != NULL) {
        sel = magnet->select;
        nsel = magnet->select_count;
    }
    if (nsel > 0) {
        if ((t->sel = malloc(nsel * sizeof(*t->sel))) == NULL) {
            rc = err_set(err, RV_ENOMEM, "out of memory");
            goto fail;
        }
        memcpy(t->sel, sel, nsel * sizeof(*t->sel));
        t->nsel = nsel;
    }
    t->seed_ratio = opts->seed_ratio;
    t->seed_seconds = opts->seed_seconds;
    limit_bucket_init(&t->down_b, opts->max_download_rate, t->started_ms);
    limit_bucket_init(&t->up_b, opts->max_upload_rate, t->started_ms);
    t->down_chain = (struct limit_chain){{&t->down_b, &ctx->down_all}};
    t->up_chain = (struct limit_chain){{&t->up_b, &ctx->up_all}};
    peers_init(&t->known, MAX_CANDIDATES, on_new_peer, t);
    t->known.on_again = on_known_peer;
    for (size_t i = 0; i < opts->peer_count; i++) {
        struct peer_addr a;
        if (peer_addr_parse(opts->peers[i], &a) != 0) {
            rc = err_set(err, RV_EINVAL, "--peer %s is not IP:PORT or [IPv6]:PORT",
                         opts->peers[i]);
            goto fail;
        }
        peers_add(&t->known, &a, PEER_SRC_MANUAL);
    }
    /* A magnet link's tr= are tiers of one tracker each, as libtorrent reads them. */
    rv_tier_t *tiers = ti != NULL ? ti->tiers : NULL;
    size_t tier_count = ti != NULL ? ti->tier_count : 0;
    rv_tier_t *mtiers = NULL;
    if (magnet != NULL) {
        for (size_t i = 0; i < magnet->peer_count; i++) {
            struct peer_addr a;
            if (peer_addr_parse(magnet->peers[i], &a) == 0)
                peers_add(&t->known, &a, PEER_SRC_MAGNET);
        }
        t->magnet_trackers = calloc(magnet->tracker_count + 1, sizeof(char *));
        mtiers = calloc(magnet->tracker_count + 1, sizeof(*mtiers));
        if (t->magnet_trackers == NULL || mtiers == NULL) {
            free(mtiers);
            rc = err_set(err, RV_ENOMEM, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < magnet->tracker_count; i++) {
            if ((t->magnet_trackers[i] = strdup(magnet->trackers[i])) == NULL)
                break;
            t->magnet_tracker_count++;
            mtiers[i].urls = &t->magnet_trackers[i];
            mtiers[i].count = 1;
        }
        tiers = mtiers;
        tier_count = t->magnet_tracker_count;
    }
    if (!opts->no_trackers && tier_count > 0 && ctx->trackers != NULL) {
        struct announcer_config cfg;
        struct announcer_transport tp;
        memset(&cfg, 0, sizeof(cfg));
        cfg.tiers = tiers;
        cfg.tier_count = tier_count;
        memcpy(cfg.info_hash, t->info_hash, 20);
        memcpy(cfg.peer_id, t->hs.peer_id, 20);
        cfg.port = ctx->opts.port;
        cfg.key = rand_u32();
        cfg.peers = &t->known;
        cfg.stats = announce_stats;
        cfg.on_event = on_tracker_event;
        cfg.ud = t;
        announcer_transport_client(&tp, ctx->trackers);
        if (announcer_new(ctx->loop, &cfg, NULL, &tp, &t->announcer) != 0) {
            free(mtiers);
            rc = err_set(err, RV_ENOMEM, "out of memory");
            goto fail;
        }
    }
    free(mtiers);
    if (ti != NULL) {
        rv_torrent_info_t *own = ti;
        ti = NULL; /* data_init owns it now, failing or not */
        if ((rc = data_init(t, own, err)) != 0)
            goto fail;
    } else {
        metadata_init(&t->md, t->info_hash, EXT_MAX_METADATA);
        t->state = RV_STATE_METADATA;
    }
    uv_timer_init(ctx->loop, &t->tick);
    t->tick.data = t;
    uv_timer_start(&t->tick, on_tick, TICK_MS, TICK_MS);
    *out = t;
    if (t->state == RV_STATE_METADATA) {
        if (t->announcer != NULL)
            announcer_start(t->announcer);
        connect_peers(t);
        dht_tick(t, now_ms(t));
    } else {
        data_start(t);
    }
    torrent_snapshot(t);
    return 0;
fail:
    rv_torrent_info_free(ti);
    torrent_free(t); /* data_init fails only before it makes the storage */
    return rc;
}

/* ---- status ---- */

void torrent_queues(const rv_torrent_t *t, uint32_t *requests, uint32_t *uploads)
{
    for (const struct peer *p = t->peers; p != NULL; p = p->next) {
        *requests += (uint32_t)p->nreqs;
        *uploads += (uint32_t)p->nupq;
    }
}

static void status_compute(const rv_torrent_t *t, rv_torrent_status_t *st)
{
    memset(st, 0, sizeof(*st));
    st->state = t->state;
    st->pieces_have = t->have.set;
    st->pieces_have = t->have.set + t->partial_done;
    st->pieces_total = t->ti != NULL ? t->ti->piece_count : 0;
    st->pieces_wanted = data_ready(t) ? t->wanted_count : st->pieces_total;
    st->bytes_have = t->bytes_have;
    st->bytes_total = data_ready(t) ? t->sel_total : t->ti != NULL ? t->ti->total_size : 0;
    st->rejects_sent = t->rejects_sent;
    st->rejects_received = t->rejects_received;
    st->pex_received = t->pex_received;
    st->fast_requested = t->fast_requested;
    st->dht_peers = t->dht_peers;
    st->fast_served = t->fast_served;
    st->metadata_have = t->md.received;
    st->metadata_total = t->md.nblocks;
    st->downloaded = t->downloaded;
    st->wasted = t->wasted;
    st->download_rate = t->rate;
    st->peers_connected = t->npeers;
    st->peers_connecting = t->nconns - t->npeers;
    st->peers_known = (unsigned)t->ncands;
    st->pieces_failed = t->pieces_failed;
    st->peers_banned = t->banned;
    st->uploaded = t->uploaded;
    st->upload_rate = t->up_rate;
    st->requests_refused = t->refused;
    for (const struct peer *p = t->peers; p != NULL; p = p->next)
        st->peers_unchoked += p->handshaked && !p->am_choking;
    st->eta_seconds = -1;
    if (t->rate > 0 && st->bytes_total >= st->bytes_have)
        st->eta_seconds = (int64_t)((st->bytes_total - st->bytes_have) / t->rate);
    st->error_code = t->error_code;
    snprintf(st->error, sizeof(st->error), "%s", t->error);
}

void torrent_snapshot(rv_torrent_t *t)
{
    rv_torrent_status_t st;
    status_compute(t, &st);
    pthread_mutex_lock(&t->snap_lock);
    t->snap = st;
    pthread_mutex_unlock(&t->snap_lock);
}

void rv_torrent_status(const rv_torrent_t *t, rv_torrent_status_t *st)
{
    /* On the loop thread the live fields are exact; elsewhere only the copy taken each tick
     * and at every state change may be read. */
    if (session_on_loop_thread(t->ctx)) {
        status_compute(t, st);
        return;
    }
    pthread_mutex_lock((pthread_mutex_t *)&t->snap_lock);
    *st = t->snap;
    pthread_mutex_unlock((pthread_mutex_t *)&t->snap_lock);
}

size_t rv_torrent_peers(const rv_torrent_t *t, rv_peer_info_t *out, size_t max)
{
    size_t n = 0;
    for (const struct peer *p = t->peers; p != NULL; p = p->next) {
        if (!p->handshaked)
            continue;
        if (n < max) {
            rv_peer_info_t *i = &out[n];
            memset(i, 0, sizeof(*i));
            peer_addr_format(&p->conn->addr, i->address, sizeof(i->address));
            memcpy(i->client, p->client, sizeof(i->client));
            i->downloaded = p->downloaded;
            i->download_rate = p->rate;
            i->requests = (unsigned)p->nreqs;
            i->choked = p->peer_choking;
            i->interested = p->am_interested;
            i->snubbed = p->snubbed;
            i->uploaded = p->uploaded;
            i->upload_rate = p->up_rate;
            i->am_choking = p->am_choking;
            i->peer_interested = p->peer_interested;
            i->optimistic = p->optimistic;
            i->pieces = p->have.set;
            i->fast = p->fast;
            i->extended = p->ext;
            i->allowed_fast = (unsigned)p->nallowed;
        }
        n++;
    }
    return n;
}

const rv_torrent_info_t *rv_torrent_info(const rv_torrent_t *t)
{
    return t->ti;
}

const char *rv_torrent_name(const rv_torrent_t *t)
{
    if (t->ti != NULL && t->ti->name != NULL)
        return t->ti->name;
    return t->name != NULL ? t->name : t->hex_name;
}
