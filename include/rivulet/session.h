/* Downloading torrents: a session owns a libuv loop (its own or the caller's), the torrents
 * added to it and their peers. Everything runs on the loop thread; callbacks arrive there.
 *
 *   rv_session_t *s;
 *   rv_session_new(NULL, NULL, &s);
 *   rv_torrent_t *t;
 *   rv_session_add(s, "file.torrent", &(rv_add_opts_t){.save_dir = "out"}, &t, &err);
 *   rv_session_run(s);          // returns when every torrent finished or stopped
 *   rv_session_free(s);
 *
 * A program using the library should ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)), as for libcurl:
 * a peer that closes its end while we write would otherwise end the process.
 */
#ifndef RIVULET_SESSION_H
#define RIVULET_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rivulet/error.h"
#include "rivulet/metainfo.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rv_session rv_session_t;
typedef struct rv_torrent rv_torrent_t;

typedef enum rv_event_type {
    RV_EVENT_PIECE_VERIFIED, /* piece: its hash matched and it is on disk */
    RV_EVENT_PIECE_FAILED,   /* piece: its hash did not match; it will be fetched again */
    RV_EVENT_FINISHED,       /* every wanted piece is verified and written */
    RV_EVENT_ERROR,          /* the torrent stopped: code and message say why */
    RV_EVENT_PEER_CONNECTED, /* message: "ip:port" */
    RV_EVENT_PEER_DROPPED,   /* message: "ip:port: why"; torrent is NULL for an incoming peer
                                refused before its handshake named one of our torrents */
    RV_EVENT_PEER_BANNED,    /* message: "ip:port: why" */
    RV_EVENT_TRACKER,        /* message: "url: ok, N peers" or "url: error" */
    RV_EVENT_STOPPED,        /* the torrent stopped after rv_session_stop or finishing */
    RV_EVENT_CHECKED,        /* data on disk checked: piece = pieces hashed, message counts */
    RV_EVENT_RESUME,         /* resume data loaded or saved (code 0), or unusable or not saved
                                (code says why; the data is then checked again) */
    RV_EVENT_METADATA        /* a magnet link's info dictionary arrived and matched the
                                info-hash (code 0; message: size, name, where it was saved), or
                                a peer's metadata was refused (code says why) */
} rv_event_type_t;

typedef struct rv_event {
    rv_event_type_t type;
    rv_torrent_t *torrent;
    uint32_t piece;
    int code;
    const char *message; /* valid during the callback */
} rv_event_t;

typedef void (*rv_event_cb)(void *ud, const rv_event_t *ev);

/* Message Stream Encryption (the "Protocol Encryption" of libtorrent, Vuze, Transmission):
 * RC4 over a Diffie-Hellman handshake. It hides the protocol from traffic shapers; it is not
 * authentication. */
typedef enum rv_encryption {
    RV_ENC_ALLOW = 0, /* accept plaintext and encrypted peers (choosing plaintext when the other
                         side offers both); dial plaintext, and once more encrypted when a peer
                         hangs up before its handshake */
    RV_ENC_PREFER,    /* dial encrypted first (RC4 or plaintext offered), plaintext when that
                         fails; accept both, choosing RC4 when offered */
    RV_ENC_REQUIRE,   /* RC4 only, both directions: plaintext peers are refused */
    RV_ENC_DISABLE    /* plaintext only: encrypted peers are refused */
} rv_encryption_t;

/* True when RC4 can be used (OpenSSL's legacy provider loads): without it MSE still works
 * with plaintext selected, and RV_ENC_REQUIRE cannot (rv_session_new refuses it). */
bool rv_encryption_rc4_available(void);

typedef struct rv_session_opts {
    unsigned max_peers;       /* connections per torrent; 0: 50 */
    unsigned max_half_open;   /* connection attempts in flight per torrent; 0: 8 */
    size_t max_memory;        /* bytes of piece data held in memory per torrent; 0: 64 MiB */
    uint16_t port;            /* the port to listen on and announce; 0: 6881 (the next nine
                                 are tried when it is taken, then any) */
    const char *listen_addr;  /* a numeric address to accept peers on; NULL: every IPv4 and
                                 IPv6 address */
    bool no_listen;           /* accept no incoming peers */
    unsigned upload_slots;    /* peers unchoked at once (tit-for-tat); 0: 4 */
    size_t read_cache;        /* bytes of pieces kept in memory for uploading; 0: 16 MiB */
    uint64_t max_download_rate; /* bytes/s for the whole session; 0: unlimited */
    uint64_t max_upload_rate;
    const char *ca_file;      /* PEM bundle for HTTPS trackers; NULL: the system's */
    /* The DHT (BEP 5): a node on the peer port (UDP), used by every torrent that is not
     * private and not no_trackers. It starts from dht_bootstrap ("host:port"; none: it waits
     * for peers' PORT messages and .torrent nodes) and keeps its routing table in
     * dht_state_file (NULL: $XDG_CACHE_HOME/rivulet/dht.dat, else ~/.cache/rivulet/dht.dat). */
    bool no_dht;
    const char *const *dht_bootstrap;
    size_t dht_bootstrap_count;
    const char *dht_state_file;
    rv_encryption_t encryption; /* Message Stream Encryption with peers; 0: RV_ENC_ALLOW */
    /* false (default): the whole 4 KiB blocks of each verified piece are written with O_DIRECT
     * where the file system allows it (ext4, XFS, btrfs; a file it is refused for is written
     * through the cache), skipping the copy into the page cache and the writeback and fsync
     * that follow it; the partial blocks at file and piece edges, and pieces under 64 KiB, go
     * through the cache. When the disk is behind (two direct writes running and two more
     * writes waiting for a worker), a write goes through the cache too, so a disk slower than
     * the network delays nothing (stats: disk_overflow_bytes). true: every write goes through
     * the page cache. Reads always use the cache. */
    bool cached_writes;
    unsigned peer_timeout_ms; /* a peer is dropped when it sends nothing this long, or reads
                                 nothing we send this long, or (when under 10 s) has not
                                 handshaken this long; 0: 180 s silent, 120 s not reading */
    /* Tries to reach one peer address (refused, timed out, or a broken handshake or protocol)
     * before it is given up on, 3 s apart and doubling up to 5 min; 0: 12 (the last about
     * 35 min after the first). A tracker, the DHT or PEX naming an address it gave up on for
     * failing to reach it gives it another round of tries. */
    unsigned peer_retries;
    rv_event_cb on_event;
    void *event_ud;
} rv_session_opts_t;

typedef struct rv_add_opts {
    const char *save_dir;          /* where files go (created if missing); required */
    const char *const *peers;      /* "host:port" peers to add by hand (numeric hosts) */
    size_t peer_count;
    bool no_trackers;              /* do not announce (peers from .peers only) */
    /* Seeding once complete: stop when uploaded/downloaded reaches seed_ratio (0: no ratio
     * limit) or after seed_seconds (0: stop at once; negative: no time limit), whichever comes
     * first. A zeroed rv_add_opts_t stops as soon as the download completes. */
    double seed_ratio;
    int64_t seed_seconds;
    uint64_t max_download_rate;    /* bytes/s for this torrent; 0: unlimited */
    uint64_t max_upload_rate;
    /* Resume data (verified pieces, file sizes and times, totals, peers) is kept in
     * STATE/<info-hash>.resume: state_dir, or NULL for $XDG_STATE_HOME/rivulet (else
     * ~/.local/state/rivulet). A zeroed rv_add_opts_t therefore writes there; no_resume
     * neither reads nor writes it (every start checks what is on disk). */
    const char *state_dir;
    bool no_resume;
    /* Magnet links: the .torrent is kept as STATE/<info-hash>.torrent (unless no_resume) so a
     * restart does not fetch it again; save_torrent also writes it there; metadata_only stops
     * the torrent once it is saved, without downloading data. */
    const char *save_torrent;
    bool metadata_only;
    /* Download only these files (0-based among the non-padding files; none: all). A magnet
     * link's so= applies when this is empty. Files not selected are never created; a piece
     * shared with a selected file is verified whole and written only into the selected one. */
    const rv_file_range_t *select;
    size_t select_count;
} rv_add_opts_t;

typedef enum rv_torrent_state {
    RV_STATE_CHECKING,    /* checking data already on disk */
    RV_STATE_DOWNLOADING,
    RV_STATE_SEEDING,     /* complete, uploading until the seed limits are reached */
    RV_STATE_FINISHED,
    RV_STATE_STOPPING,
    RV_STATE_STOPPED,
    RV_STATE_ERROR,
    RV_STATE_METADATA     /* a magnet link: fetching the info dictionary from peers */
} rv_torrent_state_t;

typedef struct rv_torrent_status {
    rv_torrent_state_t state;
    uint32_t pieces_have, pieces_total;
    uint32_t pieces_wanted;                 /* pieces the file selection needs (all: total) */
    uint64_t bytes_have, bytes_total;       /* verified payload bytes (padding excluded) */
    uint64_t downloaded, uploaded;          /* payload bytes this session */
    uint64_t wasted;                        /* bytes of failed pieces and duplicates */
    uint64_t download_rate, upload_rate;    /* bytes per second, smoothed */
    unsigned peers_connected, peers_known, peers_connecting;
    unsigned pieces_failed, peers_banned;
    unsigned peers_unchoked;                /* peers we upload to */
    uint64_t requests_refused;              /* peer requests we did not serve */
    uint64_t rejects_sent, rejects_received; /* BEP 6 reject-request messages */
    uint64_t fast_requested;                /* blocks we asked for while choked (allowed fast) */
    uint64_t fast_served;                   /* blocks we sent to peers we choke (allowed fast) */
    uint64_t dht_peers;                     /* peer addresses found through the DHT */
    uint64_t pex_received;                  /* new peer addresses learnt through PEX */
    uint32_t metadata_have, metadata_total; /* magnet: metadata blocks received, of */
    int64_t eta_seconds;                    /* -1 unknown */
    int error_code;
    char error[256];
} rv_torrent_status_t;

typedef struct rv_peer_info {
    char address[64];
    char client[21];       /* the peer id's printable prefix */
    uint64_t downloaded, uploaded;
    uint64_t download_rate;
    unsigned requests;     /* outstanding */
    bool choked, interested, snubbed;
    bool am_choking, peer_interested, optimistic; /* our side of the choke */
    uint64_t upload_rate;
    uint32_t pieces;       /* pieces the peer has */
    bool fast, extended;   /* BEP 6 / BEP 10 negotiated with it */
    unsigned allowed_fast; /* pieces it allowed us to ask for while choked (BEP 6) */
} rv_peer_info_t;

/* Counters of the whole session since rv_session_new, to explain a benchmark's figures rather
 * than only report them: what crossed the sockets and in how many calls, what the workers spent
 * hashing and in the disk, how deep the queues got. */
typedef struct rv_session_stats {
    uint64_t net_bytes_in, net_bytes_out;  /* wire bytes, every peer */
    uint64_t net_reads;                    /* socket reads that returned data */
    uint64_t net_writes;                   /* writes handed to the socket (uv_write calls) */
    uint64_t blocks_in, blocks_out;        /* PIECE messages received and sent */
    uint64_t blocks_in_place;              /* of blocks_in, those read from the socket straight
                                              into their piece (no copy out of a receive
                                              buffer) */
    uint64_t requests_out;                 /* REQUEST messages sent */
    uint64_t hash_bytes, hash_ns;          /* SHA-1 on the workers: bytes and time */
    uint64_t hash_lane_bytes;              /* of hash_bytes, those hashed several pieces side
                                              by side (sha1x, where that gains) */
    uint64_t disk_reads, disk_writes;      /* reads and writes done: pread and pwrite
                                              calls, and direct writes done through AIO */
    uint64_t disk_read_bytes, disk_write_bytes;
    uint64_t disk_direct_bytes;            /* of disk_write_bytes, those written with O_DIRECT
                                              (see rv_session_opts.cached_writes) */
    uint64_t disk_overflow_bytes;          /* of the rest, those that would have gone with
                                              O_DIRECT but found the disk behind (two direct
                                              writes running, two more writes queued) and
                                              went through the page cache */
    uint64_t disk_edge_writes;             /* writes through the cache of the partial pages
                                              at the ends of a direct write (pieces that do
                                              not start on a page of their file) */
    uint64_t disk_submits;                 /* system calls that started direct writes: one
                                              per pwritev, or one for all the direct writes
                                              of a job submitted together (Linux AIO) */
    uint32_t disk_direct_max;              /* most direct writes waiting on the disk at once */
    uint64_t disk_syncs;                   /* fsync calls */
    uint64_t disk_ns;                      /* time in pread, pwrite and fsync: wall time,
                                              summed over the workers (a direct write waits
                                              for the device, without CPU) */
    uint64_t disk_jobs;                    /* storage jobs done (write, check, read, sync) */
    uint32_t disk_queue, disk_queue_max;   /* storage jobs queued or running: now, peak */
    uint32_t requests_queued;              /* our requests outstanding, every peer, now */
    uint32_t peer_requests_max;            /* most requests outstanding to one peer */
    uint32_t uploads_queued;               /* peers' requests waiting to be served, now */
    uint32_t peer_uploads_max;             /* most requests one peer had waiting */
    uint32_t pieces_in_memory_max;         /* most piece buffers in use at once, any torrent */
    uint64_t mse_ok, mse_failed;           /* encryption handshakes (MSE) done, and failed */
    uint64_t mse_rc4;                      /* of mse_ok, those that selected RC4 (the others
                                              go on in plaintext) */
    uint32_t read_cache_pieces_max;        /* most pieces held in one torrent's upload read
                                              cache (rv_session_opts.read_cache is the bound) */
} rv_session_stats_t;

/* loop: a uv_loop_t * to run on, or NULL for a loop of the session's own. */
int rv_session_new(void *loop, const rv_session_opts_t *opts, rv_session_t **out);
/* Adds a torrent from a .torrent path. The torrent starts at once. */
int rv_session_add(rv_session_t *s, const char *torrent_path, const rv_add_opts_t *opts,
                   rv_torrent_t **out, rv_error_t *err);
/* The same with an already parsed torrent; takes ownership of ti. */
int rv_session_add_info(rv_session_t *s, rv_torrent_info_t *ti, const rv_add_opts_t *opts,
                        rv_torrent_t **out, rv_error_t *err);
/* Adds a magnet link (BEP 9): the info dictionary is fetched from peers (x.pe, the trackers
 * in tr, peers they give), checked against the info-hash, then the download goes on as for a
 * .torrent. When STATE/<info-hash>.torrent exists from an earlier run it is used at once. */
int rv_session_add_magnet(rv_session_t *s, const char *uri, const rv_add_opts_t *opts,
                          rv_torrent_t **out, rv_error_t *err);
/* Runs the session's own loop until every torrent has finished or stopped. Returns 0, or the
 * first torrent error code. */
int rv_session_run(rv_session_t *s);
/* Runs the session's own loop on a new thread and returns at once; events then arrive on that
 * thread. Only for sessions made with loop NULL; add torrents before starting it.
 * rv_session_wait joins it. */
int rv_session_start_thread(rv_session_t *s);
/* Waits for the thread of rv_session_start_thread to end (every torrent stopped); returns
 * what rv_session_run would. */
int rv_session_wait(rv_session_t *s);
/* Stops every torrent cleanly: peers closed, data flushed, 'stopped' sent to trackers within
 * a short deadline. From the loop's thread (a callback), or any thread when the session runs
 * on its own thread; never from a signal handler. */
void rv_session_stop(rv_session_t *s);
void rv_session_free(rv_session_t *s);
/* The port the session accepts peers on (and announces), 0 with no_listen. */
uint16_t rv_session_port(const rv_session_t *s);
/* The session's DHT node (see rivulet/dht.h), or NULL with no_dht or when it could not start. */
struct rv_dht *rv_session_dht(const rv_session_t *s);
/* Changes the rate limits (bytes/s, 0: unlimited) of the session or of one torrent. Loop thread
 * only (or in a callback). */
void rv_session_set_rate_limits(rv_session_t *s, uint64_t download, uint64_t upload);
void rv_torrent_set_rate_limits(rv_torrent_t *t, uint64_t download, uint64_t upload);

/* The session's counters. Loop thread only (or in a callback), or after the loop ended. */
void rv_session_stats(const rv_session_t *s, rv_session_stats_t *out);

/* Any thread: on the loop's thread the live figures, elsewhere a copy at most a second old. */
void rv_torrent_status(const rv_torrent_t *t, rv_torrent_status_t *st);
/* Fills up to max peers; returns how many are connected. Loop thread only (or in a callback). */
size_t rv_torrent_peers(const rv_torrent_t *t, rv_peer_info_t *out, size_t max);
/* The torrent's metadata, or NULL while a magnet link's is being fetched. Loop thread only. */
const rv_torrent_info_t *rv_torrent_info(const rv_torrent_t *t);
/* Its name: the torrent's, else the magnet link's dn, else the info-hash in hex. */
const char *rv_torrent_name(const rv_torrent_t *t);

#ifdef __cplusplus
}
#endif
#endif
