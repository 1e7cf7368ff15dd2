/* Announcing one torrent to its trackers (BEP 12): tiers tried in order, trackers shuffled
 * within a tier, a responding tracker moved to the front of its tier; or every tier and every
 * tracker at once (libtorrent's announce_to_all_tiers / _trackers). Failing trackers back off
 * exponentially with jitter and are retried. Peers from every reply go to one peer_set.
 * Runs on the loop thread; owns its timer and its in-flight requests. */
#ifndef RV_TRACKER_ANNOUNCER_H
#define RV_TRACKER_ANNOUNCER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "rivulet/metainfo.h"
#include "swarm/peers.h"
#include "tracker/client.h"

/* How the announcer reaches trackers: tracker_client by default, a fake in tests. */
struct announcer_transport {
    int (*announce)(void *ctx, const char *url, const struct announce_req *req,
                    tracker_announce_cb cb, void *ud, void **handle);
    void (*cancel)(void *ctx, void *handle);
    void *ctx;
};

struct announcer_opts {
    bool all_tiers;            /* announce to every tier, not only the first that works */
    bool all_trackers;         /* announce to every tracker of a tier */
    unsigned backoff_base_ms;  /* first retry delay after a failure; 0: 15000 */
    unsigned backoff_max_ms;   /* cap on the retry delay; 0: 30 minutes */
    unsigned stop_timeout_ms;  /* how long 'stopped' may take at shutdown; 0: 2000 */
    int32_t numwant;           /* 0: 200 */
};

enum tracker_status { TS_IDLE, TS_ANNOUNCING, TS_WORKING, TS_FAILED };

/* What the announcer knows of one tracker (read-only for callers). */
struct tracker_state {
    char *url;
    unsigned tier;          /* 0-based */
    enum tracker_status status;
    unsigned fails;         /* consecutive failures */
    unsigned attempts;      /* announces sent */
    uint64_t next_ms;       /* loop time of the next announce */
    uint64_t sent_ms;       /* loop time the current/last announce went out */
    uint64_t rtt_ms;        /* of the last successful announce */
    uint64_t backoff_ms;    /* the delay chosen after the last failure */
    int64_t interval, min_interval;
    int64_t seeders, leechers, completed; /* -1: unknown */
    size_t last_peers;
    char *trackerid;
    char *warning;
    char error[256];        /* last failure, or "" */
    bool started_sent;      /* 'started' reached this tracker: it must hear 'stopped' */
    bool completed_sent;    /* 'completed' reached this tracker */
    enum tracker_event sending; /* the event of the announce in flight */
    void *req;              /* in-flight handle */
    struct announcer *owner;
};

/* Called after each announce finishes, in order of completion: rc 0 with the reply (borrowed
 * for the call), or rc < 0 with resp NULL and the reason in t->error. */
typedef void (*announcer_event_cb)(void *ud, const struct tracker_state *t, int rc,
                                   const struct announce_resp *resp);

struct announcer;

/* Transfer totals for the next announce. */
typedef void (*announcer_stats_cb)(void *ud, uint64_t *uploaded, uint64_t *downloaded,
                                   uint64_t *left);

struct announcer_config {
    const rv_tier_t *tiers;     /* borrowed for the call: URLs are copied */
    size_t tier_count;
    uint8_t info_hash[20];
    uint8_t peer_id[20];
    uint16_t port;
    uint32_t key;
    struct peer_set *peers;     /* borrowed; must outlive the announcer */
    announcer_stats_cb stats;
    announcer_event_cb on_event;
    void *ud;
};

int announcer_new(uv_loop_t *loop, const struct announcer_config *cfg,
                  const struct announcer_opts *opts, const struct announcer_transport *transport,
                  struct announcer **out);
/* Sends 'started' to the tier(s) the policy picks, then keeps announcing on schedule. */
void announcer_start(struct announcer *a);
/* Tells the working trackers the download completed (event 'completed'). */
void announcer_completed(struct announcer *a);
/* Cancels what is in flight, sends 'stopped' to every tracker that heard 'started', and calls
 * done once they answered or stop_timeout_ms passed. Then free with announcer_free. */
void announcer_stop(struct announcer *a, void (*done)(void *ud), void *ud);
/* Frees the announcer; its timer closes asynchronously (run the loop once more). */
void announcer_free(struct announcer *a);

size_t announcer_tracker_count(const struct announcer *a);
/* Trackers in their current order: tier by tier, each tier's preferred tracker first. */
const struct tracker_state *announcer_tracker(const struct announcer *a, size_t i);

/* A transport over a tracker_client (which must outlive the announcer). */
void announcer_transport_client(struct announcer_transport *tp, struct tracker_client *c);

/* The retry delay after fails consecutive failures, before jitter: base * 2^(fails-1), capped. */
uint64_t announcer_backoff_ms(const struct announcer_opts *opts, unsigned fails);

#endif
