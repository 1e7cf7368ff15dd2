/* HTTP(S) GETs for trackers through libcurl's multi-socket interface driven by a libuv loop
 * (the shape of curl's multi-uv.c example): no thread per request, no blocking call. Bodies are
 * capped at TRACKER_MAX_BODY, redirects at TRACKER_MAX_REDIRECTS, certificates verified. */
#ifndef RV_TRACKER_HTTP_H
#define RV_TRACKER_HTTP_H

#include <uv.h>

#include "tracker/client.h"

struct http_tr;
struct http_tr_req;

/* rc 0: the server answered (status is its HTTP status, body borrowed for the call); rc < 0:
 * no usable answer (RV_ENET: DNS/connect/TLS, naming curl's reason; RV_ETIMEDOUT; RV_ETOOBIG:
 * body over the cap) with err filled. */
typedef void (*http_tr_cb)(void *ud, int rc, long status, const uint8_t *body, size_t len,
                           const rv_error_t *err);

int http_tr_new(uv_loop_t *loop, const struct tracker_client_opts *opts, struct http_tr **out);
/* Cancels everything in flight without callbacks, closes every handle, then calls cb(ud). */
void http_tr_close(struct http_tr *h, void (*cb)(void *ud), void *ud);
int http_tr_get(struct http_tr *h, const char *url, http_tr_cb cb, void *ud,
                struct http_tr_req **out);
void http_tr_cancel(struct http_tr_req *r);

#endif
