/* Asking trackers about a torrent, for diagnostics (`rivulet trackers`): every tracker at once,
 * or in BEP 12 tier order as a download would. Runs its own event loop and returns when every
 * tracker answered or the deadline passed. */
#ifndef RIVULET_TRACKER_H
#define RIVULET_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rivulet/error.h"
#include "rivulet/metainfo.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rv_tracker_probe_opts {
    const char *ca_file;      /* PEM bundle for HTTPS; NULL: the system's */
    unsigned timeout_ms;      /* overall deadline; 0: 20000 */
    unsigned udp_timeout_ms;  /* first UDP retransmission; 0: a third of timeout_ms, <= 15 s */
    uint16_t port;            /* the port announced; 0: 6881 */
    uint64_t left;            /* bytes left to download, announced as is */
    bool follow_tiers;        /* BEP 12 order: stop at the first tier that answers */
    bool all_tiers;           /* with follow_tiers: every tier at once (libtorrent's option) */
    unsigned backoff_base_ms; /* with follow_tiers: first retry delay after a failure */
} rv_tracker_probe_opts_t;

typedef struct rv_tracker_result {
    char *url;
    unsigned tier;        /* 0-based */
    bool contacted;       /* an announce was sent (follow_tiers may leave lower tiers alone) */
    bool ok;              /* the announce succeeded */
    char error[256];      /* why not, when contacted && !ok */
    char *warning;        /* the tracker's warning message, or NULL */
    int64_t seeders, leechers; /* from the announce reply; -1 unknown */
    int64_t interval, min_interval; /* seconds; -1 unknown */
    int64_t rtt_ms;       /* announce round trip; -1 unknown */
    unsigned attempts;
    uint64_t backoff_ms;  /* the retry delay chosen after the last failure, 0 if none */
    char **peers;         /* "ip:port" / "[ip]:port" */
    size_t peer_count;
    bool scraped;         /* a scrape was attempted */
    bool scrape_ok;
    char scrape_error[256];
    int64_t scrape_seeders, scrape_leechers, scrape_completed; /* -1 unknown */
} rv_tracker_result_t;

/* With follow_tiers: one line of the announce log, in order of completion. */
typedef struct rv_tracker_event {
    uint64_t at_ms;       /* since the probe started */
    size_t tracker;       /* index into results */
    bool ok;
    char error[256];
    uint64_t backoff_ms;
    size_t peer_count;
} rv_tracker_event_t;

typedef struct rv_tracker_report {
    rv_tracker_result_t *results; /* tier by tier, in the torrent's order */
    size_t count;
    rv_tracker_event_t *events;
    size_t event_count;
    size_t unique_peers;  /* after merging every tracker's peers */
} rv_tracker_report_t;

/* Announces (event none) and scrapes. Returns 0 even when trackers fail: each result says. */
int rv_trackers_probe(const rv_tier_t *tiers, size_t tier_count, const uint8_t info_hash[20],
                      const rv_tracker_probe_opts_t *opts, rv_tracker_report_t **out,
                      rv_error_t *err);
void rv_tracker_report_free(rv_tracker_report_t *r);

#ifdef __cplusplus
}
#endif
#endif
