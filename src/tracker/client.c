/* The tracker client front: picks the transport by URL scheme, builds HTTP URLs and parses
 * HTTP bodies (UDP parses its own datagrams), and gives callers one request handle type. */
#include "tracker/client.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tracker/http.h"
#include "tracker/udp.h"
#include "util/err.h"

struct tracker_client {
    uv_loop_t *loop;
    struct http_tr *http;
    struct udp_tr *udp;
    struct tracker_client_opts opts;
    int closing; /* transports still closing */
    void (*on_closed)(void *ud);
    void *closed_ud;
};

enum req_kind { REQ_HTTP_ANNOUNCE, REQ_HTTP_SCRAPE, REQ_UDP };

struct tracker_request {
    enum req_kind kind;
    struct http_tr_req *http;
    struct udp_tr_req *udp;
    tracker_announce_cb announce_cb;
    tracker_scrape_cb scrape_cb;
    void *ud;
    uint8_t info_hash[20];
};

int tracker_client_new(uv_loop_t *loop, const struct tracker_client_opts *opts,
                       struct tracker_client **out)
{
    struct tracker_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return RV_ENOMEM;
    c->loop = loop;
    if (opts != NULL)
        c->opts = *opts;
    int rc = http_tr_new(loop, &c->opts, &c->http);
    if (rc != 0) {
        free(c);
        return rc;
    }
    rc = udp_tr_new(loop, &c->opts, &c->udp);
    if (rc != 0) {
        http_tr_close(c->http, NULL, NULL);
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static void transport_closed(void *ud)
{
    struct tracker_client *c = ud;
    if (--c->closing > 0)
        return;
    void (*cb)(void *) = c->on_closed;
    void *cud = c->closed_ud;
    free(c);
    if (cb != NULL)
        cb(cud);
}

void tracker_client_close(struct tracker_client *c, void (*on_closed)(void *ud), void *ud)
{
    c->on_closed = on_closed;
    c->closed_ud = ud;
    c->closing = 2;
    http_tr_close(c->http, transport_closed, c);
    udp_tr_close(c->udp, transport_closed, c);
}

static bool has_scheme(const char *url, const char *scheme)
{
    size_t n = strlen(scheme);
    return strncasecmp(url, scheme, n) == 0;
}

static void http_announce_done(void *ud, int rc, long status, const uint8_t *body, size_t len,
                               const rv_error_t *terr)
{
    struct tracker_request *r = ud;
    rv_error_t err;
    struct announce_resp resp;
    memset(&resp, 0, sizeof(resp));
    if (rc != 0) {
        r->announce_cb(r->ud, rc, NULL, terr);
    } else {
        /* A tracker may explain a refusal in a bencoded body whatever the status; try that
         * first so the user sees the tracker's own words. */
        rc = http_parse_announce(body, len, &resp, &err);
        if (rc == 0 && status != 200) {
            announce_resp_free(&resp);
            rc = err_set(&err, RV_ETRACKER, "HTTP status %ld", status);
        } else if (rc != 0 && status != 200 && strstr(err.msg, "tracker said") == NULL) {
            rc = err_set(&err, RV_ETRACKER, "HTTP status %ld", status);
        }
        r->announce_cb(r->ud, rc, rc == 0 ? &resp : NULL, &err);
        announce_resp_free(&resp);
    }
    free(r);
}

static void http_scrape_done(void *ud, int rc, long status, const uint8_t *body, size_t len,
                             const rv_error_t *terr)
{
    struct tracker_request *r = ud;
    rv_error_t err;
    struct scrape_resp resp;
    if (rc != 0) {
        r->scrape_cb(r->ud, rc, NULL, terr);
    } else {
        if (status != 200)
            rc = err_set(&err, RV_ETRACKER, "HTTP status %ld", status);
        else
            rc = http_parse_scrape(body, len, r->info_hash, &resp, &err);
        r->scrape_cb(r->ud, rc, rc == 0 ? &resp : NULL, &err);
    }
    free(r);
}

static void udp_announce_done(void *ud, int rc, struct announce_resp *resp, const rv_error_t *err)
{
    struct tracker_request *r = ud;
    r->announce_cb(r->ud, rc, resp, err);
    free(r);
}

static void udp_scrape_done(void *ud, int rc, const struct scrape_resp *resp,
                            const rv_error_t *err)
{
    struct tracker_request *r = ud;
    r->scrape_cb(r->ud, rc, resp, err);
    free(r);
}

/* Hands r to the caller once its transport has it, or frees it. */
static int started(struct tracker_request *r, int rc, struct tracker_request **req)
{
    if (rc != 0) {
        free(r);
        return rc;
    }
    if (req != NULL)
        *req = r;
    return 0;
}

/* Sends the GET for the URL the caller built into u (build_rc says how building went). */
static int http_start(struct tracker_client *c, struct tracker_request *r, struct buf *u,
                      int build_rc, http_tr_cb done)
{
    int rc = build_rc;
    if (rc == 0)
        rc = buf_append_byte(u, 0);
    if (rc == 0)
        rc = http_tr_get(c->http, (const char *)u->data, done, r, &r->http);
    buf_free(u);
    return rc;
}

int tracker_announce(struct tracker_client *c, const char *url, const struct announce_req *areq,
                     tracker_announce_cb cb, void *ud, struct tracker_request **req)
{
    struct tracker_request *r = calloc(1, sizeof(*r));
    int rc;
    if (r == NULL)
        return RV_ENOMEM;
    r->announce_cb = cb;
    r->ud = ud;
    if (has_scheme(url, "http://") || has_scheme(url, "https://")) {
        struct buf u;
        buf_init(&u, 8192);
        r->kind = REQ_HTTP_ANNOUNCE;
        rc = http_start(c, r, &u, http_announce_url(url, areq, &u), http_announce_done);
    } else if (has_scheme(url, "udp://")) {
        r->kind = REQ_UDP;
        rc = udp_tr_announce(c->udp, url, areq, udp_announce_done, r, &r->udp);
    } else {
        rc = RV_EINVAL;
    }
    return started(r, rc, req);
}

int tracker_scrape(struct tracker_client *c, const char *url, const uint8_t info_hash[20],
                   tracker_scrape_cb cb, void *ud, struct tracker_request **req)
{
    struct tracker_request *r = calloc(1, sizeof(*r));
    int rc;
    if (r == NULL)
        return RV_ENOMEM;
    r->scrape_cb = cb;
    r->ud = ud;
    memcpy(r->info_hash, info_hash, 20);
    if (has_scheme(url, "http://") || has_scheme(url, "https://")) {
        struct buf u;
        buf_init(&u, 8192);
        r->kind = REQ_HTTP_SCRAPE;
        rc = http_start(c, r, &u, http_scrape_url(url, info_hash, &u), http_scrape_done);
    } else if (has_scheme(url, "udp://")) {
        r->kind = REQ_UDP;
        rc = udp_tr_scrape(c->udp, url, info_hash, udp_scrape_done, r, &r->udp);
    } else {
        rc = RV_EINVAL;
    }
    return started(r, rc, req);
}

void tracker_cancel(struct tracker_request *req)
{
    if (req == NULL)
        return;
    if (req->kind == REQ_UDP)
        udp_tr_cancel(req->udp);
    else
        http_tr_cancel(req->http);
    free(req);
}
