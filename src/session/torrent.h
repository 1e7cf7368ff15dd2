/* One torrent being downloaded: its peers, picker, storage and announcer, glued together on the
 * session's loop. The data path: conn (wire message) -> torrent_on_message -> picker -> piece
 * buffer -> storage (hash + write on a worker) -> have to every peer. */
#ifndef RV_SESSION_TORRENT_H
#define RV_SESSION_TORRENT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "peer/conn.h"
#include "rivulet/session.h"
#include "session/limits.h"
#include "storage/storage.h"
#include "tracker/client.h"

struct session_ctx {
    uv_loop_t *loop;
    bool threaded;            /* the loop runs on a thread of the session's own */
    uv_thread_t loop_thread;
    struct tracker_client *trackers; /* may be NULL when no torrent announces */
    struct dht *dht;                 /* NULL without a DHT */
    rv_session_opts_t opts;
    struct conn_opts conn_opts; /* for every peer connection, from opts */
    /* session-wide rate limits: buckets and the queues that wait on them */
    struct limit_bucket down_all, up_all;
    struct limit_sched down_q, up_q;
    uint32_t next_conn_id;
    rv_session_stats_t stats; /* workers add to the disk and hash counters atomically */
    struct storage_disk disk; /* the disk's state, shared by every torrent's storage */
    void (*on_stopped)(void *ud, rv_torrent_t *t);
    void *ud;
};

/* Starts a torrent from ti (ownership taken), or, with ti NULL, from a magnet link (borrowed:
 * its metadata is fetched from peers first). */
int torrent_start(struct session_ctx *ctx, rv_torrent_info_t *ti, const rv_magnet_t *magnet,
                  const rv_add_opts_t *opts, rv_torrent_t **out, rv_error_t *err);
/* Begins a clean stop; ctx->on_stopped follows once peers, storage and trackers are done. */
void torrent_stop(rv_torrent_t *t);
/* Frees a stopped torrent (its handles must be closed: after on_stopped, run the loop once). */
void torrent_free(rv_torrent_t *t);
/* Tests: lockstep hashing (torrent.c, LOCK_CHUNK) for every torrent of 1 MiB pieces and more
 * started from now on, also where sha1x's lanes do not gain (there its chunks are hashed one
 * at a time), so that its paths run under the sanitizers and on any CPU. */
extern bool torrent_lockstep_always;
int torrent_error(const rv_torrent_t *t);
struct conn;
struct handshake;
/* An incoming connection whose handshake names this torrent: takes it over (conn_attach).
 * Returns 0, or an error (with the reason set on c) to refuse it. */
int torrent_accept(rv_torrent_t *t, struct conn *c, const struct handshake *h);
const uint8_t *torrent_info_hash(const rv_torrent_t *t);
bool torrent_is_stopping(const rv_torrent_t *t);
/* Adds the requests this torrent's peers have outstanding (ours) and waiting (theirs). */
void torrent_queues(const rv_torrent_t *t, uint32_t *requests, uint32_t *uploads);
/* Copies the status for readers on other threads. */
void torrent_snapshot(rv_torrent_t *t);

/* True unless the session runs its loop on its own thread and the caller is another thread. */
static inline bool session_on_loop_thread(const struct session_ctx *ctx)
{
    if (!ctx->threaded)
        return true;
    uv_thread_t self = uv_thread_self();
    return uv_thread_equal(&self, &ctx->loop_thread) != 0;
}

#endif
