/* UDP tracker client (BEP 15, BEP 41) on a libuv loop: asynchronous name lookup, connect with
 * connection ids reused for their one-minute life, transaction ids checked, retransmission at
 * timeout * 2^n up to a bound, IPv4 and IPv6. */
#ifndef RV_TRACKER_UDP_H
#define RV_TRACKER_UDP_H

#include <uv.h>

#include "tracker/client.h"

struct udp_tr;
struct udp_tr_req;

int udp_tr_new(uv_loop_t *loop, const struct tracker_client_opts *opts, struct udp_tr **out);
/* Cancels everything in flight without callbacks, closes the sockets, then calls cb(ud). */
void udp_tr_close(struct udp_tr *u, void (*cb)(void *ud), void *ud);
int udp_tr_announce(struct udp_tr *u, const char *url, const struct announce_req *req,
                    tracker_announce_cb cb, void *ud, struct udp_tr_req **out);
int udp_tr_scrape(struct udp_tr *u, const char *url, const uint8_t info_hash[20],
                  tracker_scrape_cb cb, void *ud, struct udp_tr_req **out);
void udp_tr_cancel(struct udp_tr_req *r);

#endif
