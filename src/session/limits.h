/* Rate limits (--max-download-rate, --max-upload-rate) as hierarchical token buckets, and a rate
 * meter for statistics. Pure: no libuv, no clock; every call takes the loop time in ms, so tests
 * drive it with a fake clock. The session owns a global bucket per direction, each torrent one
 * per direction; a connection is charged to the chain [torrent bucket, global bucket] of its
 * direction, and one limit_sched per direction queues the connections waiting for tokens.
 *
 * Fairness. limit_take is the fast path while a bucket is uncontended. Once anyone has had to
 * queue on a bucket it is contended until it fills up again (demand fell below the rate), and
 * limit_take grants nothing there: everyone goes through the queue. limit_sched_run serves the
 * queue at most every LIMIT_WAKE_MIN_MS, least recently served first, one turn per waiter per
 * run; a turn grants min(want, quantum), the quantum being 20 ms of the outermost limit, the
 * same for everyone under it. So greedy connections get equal shares, including those a little
 * slower than others to come back for more. Shares are per connection, as in libtorrent: a
 * torrent with more peers gets more of a global limit unless its own limit bounds it. A waiter
 * takes its levels innermost first and, while short on one, reserves it: nobody behind takes
 * from that level first, so no request starves, yet a torrent held by its own low limit never
 * holds back the global bucket for the others.
 *
 * Integration (conn.c / torrent.c):
 *
 *   session:  struct limit_bucket down_all, up_all; struct limit_sched down_q, up_q; one
 *             uv_timer_t per sched. limit_sched_init(&down_q, arm_down, ctx), where
 *             arm_down(ctx, ms) is ms == LIMIT_NEVER ? uv_timer_stop(&tm)
 *             : uv_timer_start(&tm, on_down_timer, ms, 0), and on_down_timer calls
 *             limit_sched_run(&down_q, uv_now(loop)).
 *   torrent:  struct limit_bucket down, up; a conn's chain is {{&t->down, &ctx->down_all}}.
 *   set rate: limit_bucket_set_rate(b, rate, now), then limit_sched_run(q, now) to serve and
 *             re-arm under the new rate. Before freeing a torrent, its conns cancel their waits.
 *
 *   download (conn.c): the conn holds read credit, bytes granted and not yet read.
 *     on_alloc: if credit == 0: credit = limit_take(chain, READ_CHUNK, now); if still 0:
 *               limit_wait(q, &c->rwait, chain, SIZE_MAX, now, on_read_grant, c) and hand
 *               libuv an empty buffer (on_read then gets UV_ENOBUFS: uv_read_stop, paused for
 *               rate, not an error); else hand out min(credit, room) bytes of rbuf.
 *     on_read:  credit -= nread when nread > 0 (credit left over stays for the next read).
 *     on_read_grant(w, n): if closing, limit_refund(chain, n, now); else credit += n and
 *               uv_read_start again.
 *     conn_close: limit_cancel(q, &c->rwait); limit_refund(chain, credit, now).
 *     SIZE_MAX asks for a whole turn (one quantum): a waiter has one turn per run, so a smaller
 *     want would cap the conn at want per LIMIT_WAKE_MIN_MS. Reading no more than was granted
 *     leaves the rest in the kernel, whose TCP window then slows the sender. A conn whose peer
 *     goes quiet keeps at most one quantum (20 ms of the limit) of credit.
 *
 *   upload (torrent.c serve): a PIECE (13 + length bytes) is queued only against credit.
 *     need = 13 + length; if credit < need: credit += limit_take(chain, need - credit, now);
 *     if still credit < need: limit_wait(q, &p->uwait, chain, queued - credit, now,
 *     on_up_grant, p) and stop, where queued is 13 + length summed over the peer's queued
 *     requests (a smaller want caps the peer as above); else credit -= need, queue the block.
 *     on_up_grant(w, n): credit += n; serve(p). Choke or close: limit_cancel, limit_refund the
 *     credit.
 *   Other messages are small; limit_charge counts them if wanted (it may go into debt).
 *
 *   All of it on the loop thread: a rate set from another thread goes through the loop first.
 *   statistics: a struct limit_meter per conn and per torrent and direction, limit_meter_add
 *   where bytes_in/bytes_out grow, limit_meter_rate for the status. */
#ifndef RV_SESSION_LIMITS_H
#define RV_SESSION_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LIMIT_LEVELS 2              /* [torrent, global]; a per-peer level would make 3 */
#define LIMIT_NEVER UINT64_MAX      /* no wake-up needed */
#define LIMIT_RATE_MAX (1ull << 40) /* 1 TiB/s: larger rates are clamped (no overflow) */

/* Burst: the bucket holds at most LIMIT_BURST_MS worth of tokens (and at least LIMIT_BURST_MIN
 * bytes). In any window of W ms at most rate*W + burst bytes pass, so over 10 s the excess is at
 * most 1 %, while 100 ms absorbs the loop's timer jitter and lets a whole quantum accumulate, so
 * nothing is lost between wake-ups. A fresh bucket starts empty: from its start the total never
 * exceeds rate * elapsed. */
#define LIMIT_BURST_MS 100
#define LIMIT_BURST_MIN 4096u
/* Quantum: the most one waiter gets per turn: LIMIT_QUANTUM_MS worth of the outermost limited
 * level, at least LIMIT_QUANTUM_MIN, at most half the burst of any level. Four times what a run
 * every LIMIT_WAKE_MIN_MS releases, so a single waiter can still take the whole rate; small
 * enough that turns are fine-grained (the tail of a 10 s transfer loses at most 0.2 %). */
#define LIMIT_QUANTUM_MS 20
#define LIMIT_QUANTUM_MIN 1024u
/* Runs of the queue are at least this far apart: a waiter gets one turn per run, so one that
 * comes back a few ms after its grant does not lose its turns to those that came back at once;
 * the burst holds 100 ms, so nothing overflows in between; at most 200 wake-ups a second. */
#define LIMIT_WAKE_MIN_MS 5

struct limit_sched;

struct limit_bucket {
    uint64_t rate;    /* bytes per second, 0: unlimited */
    uint64_t burst;   /* bytes */
    int64_t tokens;   /* in thousandths of a byte, so refills lose nothing; < 0: debt */
    uint64_t last_ms; /* when tokens was brought up to date */
    bool burst_set;   /* burst chosen by limit_bucket_set_burst, not derived from the rate */
    unsigned waiting; /* queued waiters whose chain holds this bucket */
    bool contended;   /* waiters queued here, and the bucket has not been full since */
    /* limit_sched's scratch: reserved in pass mark_pass of mark_sched by waiters short of
     * tokens here, who all have enough in mark_release ms (barring grants) */
    const struct limit_sched *mark_sched;
    uint64_t mark_pass;
    uint64_t mark_release;
};

/* The buckets one transfer is charged to, innermost first; NULL levels are unlimited. */
struct limit_chain {
    struct limit_bucket *level[LIMIT_LEVELS];
};

/* rate in bytes/s, 0 for unlimited. The bucket starts empty. */
void limit_bucket_init(struct limit_bucket *b, uint64_t rate, uint64_t now_ms);
/* Changes the rate from now on (tokens earned so far at the old rate are kept, up to the new
 * burst). Queued waiters are not told: call limit_sched_run afterwards. */
void limit_bucket_set_rate(struct limit_bucket *b, uint64_t rate, uint64_t now_ms);
/* Overrides the burst (bytes); 0 returns to the default derived from the rate. */
void limit_bucket_set_burst(struct limit_bucket *b, uint64_t burst, uint64_t now_ms);
/* Whole bytes available now (0 when in debt); UINT64_MAX when unlimited. */
uint64_t limit_bucket_available(struct limit_bucket *b, uint64_t now_ms);
static inline bool limit_bucket_is_limited(const struct limit_bucket *b)
{
    return b != NULL && b->rate != 0;
}

/* Takes up to want bytes from every level at once: the grant is the least any level allows
 * (want when all are unlimited). 0 while any limited level is contended (see Fairness): then
 * the caller queues with limit_wait. */
size_t limit_take(const struct limit_chain *chain, size_t want, uint64_t now_ms);
/* Takes n bytes from every limited level even if that puts them into debt (bytes already sent
 * or received that must count); later grants wait until the debt is paid. */
void limit_charge(const struct limit_chain *chain, size_t n, uint64_t now_ms);
/* Returns n granted bytes that will not be used (up to each level's burst). */
void limit_refund(const struct limit_chain *chain, size_t n, uint64_t now_ms);
/* The most one waiter on this chain is granted per turn (see LIMIT_QUANTUM_MS); SIZE_MAX when
 * every level is unlimited. */
size_t limit_quantum(const struct limit_chain *chain);
/* Milliseconds until every level holds min(want, quantum, burst) bytes, i.e. until limit_take
 * would grant that much if no one else takes first: 0 when it would now. Ignores the queue: for
 * a caller that polls with a timer of its own instead of queueing. */
uint64_t limit_wait_ms(const struct limit_chain *chain, size_t want, uint64_t now_ms);

/* ---- waiting in turn ---- */

struct limit_waiter;
/* A grant: n bytes (0 < n <= want) already taken from every level of the waiter's chain. The
 * waiter is idle again and may queue itself anew from here. */
typedef void limit_grant_fn(struct limit_waiter *w, size_t n);
/* Asks the owner to call limit_sched_run in delay_ms (0: on the next loop turn), replacing any
 * earlier request; LIMIT_NEVER cancels it. */
typedef void limit_arm_fn(void *ud, uint64_t delay_ms);

enum limit_waiter_state { LIMIT_IDLE, LIMIT_QUEUED, LIMIT_GRANTING };

/* Embedded in its owner (a conn), set up by limit_waiter_init; the sched only links it. */
struct limit_waiter {
    struct limit_waiter *prev, *next;
    struct limit_chain chain;
    size_t want;
    size_t granted; /* the size of this turn's grant, once a level has paid for it */
    unsigned stage; /* levels below this one are taken (or were unlimited) */
    unsigned taken; /* bit i: level i paid granted */
    bool served;    /* served_run and served_seq tell when it was last granted */
    uint64_t served_run, served_seq;
    limit_grant_fn *on_grant;
    void *data; /* the owner's */
    enum limit_waiter_state state;
};

struct limit_sched {
    struct limit_waiter *head, *tail;   /* queued, least recently served first */
    struct limit_waiter *ghead, *gtail; /* granted, callbacks pending (inside run) */
    uint64_t pass;
    uint64_t runs, seq; /* counters ordering the queue */
    uint64_t deadline;  /* when arm last asked to run; LIMIT_NEVER */
    uint64_t now_ms;    /* of the last run */
    uint64_t last_run_ms;
    bool has_run;
    bool running;
    size_t queued;
    limit_arm_fn *arm;
    void *ud;
};

void limit_waiter_init(struct limit_waiter *w);
static inline bool limit_waiter_is_queued(const struct limit_waiter *w)
{
    return w->state != LIMIT_IDLE;
}

/* arm may be NULL (the owner then calls limit_sched_run on a timer of its own). */
void limit_sched_init(struct limit_sched *s, limit_arm_fn *arm, void *ud);
/* Queues w behind every waiter served less recently (one never served goes to the back):
 * on_grant(w, n) runs from limit_sched_run once n = min(want, quantum) bytes have been taken
 * from every level of chain (copied; the buckets must outlive the wait).
 * Arms the sched if w can move sooner than it was to run. Borrows w until it is granted or
 * cancelled. A waiter already queued keeps its place and its first request. want 0 does
 * nothing. */
void limit_wait(struct limit_sched *s, struct limit_waiter *w, const struct limit_chain *chain,
                size_t want, uint64_t now_ms, limit_grant_fn *on_grant, void *data);
/* Leaves the queue (idempotent); what its levels already paid is refunded. A grant made in the
 * run in progress whose callback has not run yet is refunded too and its callback never runs:
 * safe to call from another waiter's callback. */
void limit_cancel(struct limit_sched *s, struct limit_waiter *w);
/* Serves the queue in order at now_ms, one turn per waiter, then calls the grant callbacks,
 * then arms the next run (LIMIT_WAKE_MIN_MS away at least). Returns the delay it armed
 * (LIMIT_NEVER when nothing is queued). Not re-entrant: callbacks may call limit_take,
 * limit_wait and limit_cancel but not limit_sched_run. */
uint64_t limit_sched_run(struct limit_sched *s, uint64_t now_ms);
/* Milliseconds until limit_sched_run would move a waiter on (take one of its levels or grant
 * it); exact while nobody takes or queues meanwhile. LIMIT_NEVER: the queue is empty. */
uint64_t limit_sched_next_ms(struct limit_sched *s, uint64_t now_ms);

/* ---- measuring ---- */

/* Bytes over a sliding window of LIMIT_METER_SLOTS slots of LIMIT_METER_SLOT_MS: the rate is
 * what the window saw over the time it covers (the oldest slots plus the current partial one),
 * exact for a steady stream; after the stream stops it falls to 0 within the window (5 s). */
#define LIMIT_METER_SLOTS 10
#define LIMIT_METER_SLOT_MS 500

struct limit_meter {
    uint64_t slot[LIMIT_METER_SLOTS];
    uint64_t slot_ms;  /* start of the current slot */
    uint64_t start_ms; /* of the meter: a young meter divides by its age, not the window */
    uint64_t total;
    unsigned cur;
};

void limit_meter_init(struct limit_meter *m, uint64_t now_ms);
void limit_meter_add(struct limit_meter *m, uint64_t bytes, uint64_t now_ms);
/* Bytes per second over the window ending now. */
uint64_t limit_meter_rate(const struct limit_meter *m, uint64_t now_ms);

#endif
