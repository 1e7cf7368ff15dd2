/* One asynchronous interface over HTTP(S) and UDP trackers, on a libuv loop. It dispatches on
 * the URL's scheme to http.c (libcurl multi-socket) or udp.c (BEP 15) and never blocks the loop.
 * Callbacks run on the loop thread, exactly once per request unless the request is canceled. */
#ifndef RV_TRACKER_CLIENT_H
#define RV_TRACKER_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "tracker/tracker.h"

struct tracker_client_opts {
    const char *ca_file;          /* PEM bundle for HTTPS instead of the system's; NULL: system */
    unsigned http_timeout_ms;     /* whole HTTP request; 0: 30000 */
    unsigned udp_timeout_ms;      /* BEP 15 base retransmission timeout; 0: 15000 */
    unsigned udp_max_retries;     /* retransmissions (timeout doubles each time); 0: 8 */
    const char *user_agent;       /* NULL: "rivulet/VERSION" */
    const char *bind_addr;        /* numeric source address for announces; NULL: any. A tracker
                                     records the address an announce comes from. */
};

/* resp is borrowed for the callback's duration (the callee may move its peers out by setting
 * resp->peers = NULL). On failure rc < 0, resp is NULL and err says what went wrong. */
typedef void (*tracker_announce_cb)(void *ud, int rc, struct announce_resp *resp,
                                    const rv_error_t *err);
typedef void (*tracker_scrape_cb)(void *ud, int rc, const struct scrape_resp *resp,
                                  const rv_error_t *err);

struct tracker_client;
struct tracker_request;

int tracker_client_new(uv_loop_t *loop, const struct tracker_client_opts *opts,
                       struct tracker_client **out);
/* Cancels what is in flight (no callbacks), closes every handle, then calls on_closed. */
void tracker_client_close(struct tracker_client *c, void (*on_closed)(void *ud), void *ud);

/* Starts an announce to url (http://, https:// or udp://). *req (may be NULL) can be passed to
 * tracker_cancel until the callback runs. Returns RV_EINVAL for an unsupported URL. */
int tracker_announce(struct tracker_client *c, const char *url, const struct announce_req *areq,
                     tracker_announce_cb cb, void *ud, struct tracker_request **req);
int tracker_scrape(struct tracker_client *c, const char *url, const uint8_t info_hash[20],
                   tracker_scrape_cb cb, void *ud, struct tracker_request **req);
/* The callback of a canceled request is never called. */
void tracker_cancel(struct tracker_request *req);

#endif
