/* HTTP(S) GETs for trackers: libcurl's multi-socket interface on the libuv loop. curl tells us
 * which sockets to watch (socket callback → one uv_poll_t each) and when to wake it (timer
 * callback → one uv_timer_t); we report readiness back with curl_multi_socket_action and collect
 * finished transfers with curl_multi_info_read. Nothing here blocks: curl resolves names on its
 * own thread (the threaded resolver) and does all socket I/O non-blocking. */
#include "tracker/http.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "rivulet/version.h"
#include "util/err.h"

#define DEFAULT_TIMEOUT_MS 30000u
#define MAX_CONNECT_TIMEOUT_MS 15000u

struct sock_ctx;

struct http_tr {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    char *ca_file;
    char *user_agent;
    char *bind_addr;
    long timeout_ms;
    struct http_tr_req *reqs; /* in flight */
    struct sock_ctx *socks;   /* sockets curl asked us to watch */
    unsigned handles_open;    /* uv handles not yet through their close callback */
    bool closing;
    void (*close_cb)(void *ud);
    void *close_ud;
};

struct http_tr_req {
    struct http_tr *h;
    CURL *easy;
    struct buf body;
    http_tr_cb cb;
    void *ud;
    bool too_big;    /* the body passed TRACKER_MAX_BODY */
    bool no_memory;  /* appending the body failed for lack of memory */
    bool delivering; /* its callback is running; freed when that returns */
    struct http_tr_req *prev, *next;
    char errbuf[CURL_ERROR_SIZE];
};

struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct http_tr *h;
    bool closed; /* uv_close called; waiting for the close callback */
    struct sock_ctx *prev, *next;
};

/* ---- closing: every uv handle goes through here, and the last one frees the transport ---- */

static void finish_close(struct http_tr *h)
{
    void (*cb)(void *) = h->close_cb;
    void *ud = h->close_ud;
    free(h->ca_file);
    free(h->user_agent);
    free(h->bind_addr);
    free(h);
    curl_global_cleanup();
    if (cb != NULL)
        cb(ud);
}

static void handle_closed(struct http_tr *h)
{
    h->handles_open--;
    if (h->closing && h->handles_open == 0)
        finish_close(h);
}

static void sock_closed(uv_handle_t *handle)
{
    struct sock_ctx *s = handle->data;
    struct http_tr *h = s->h;
    free(s);
    handle_closed(h);
}

static void timer_closed(uv_handle_t *handle)
{
    handle_closed(handle->data);
}

static void sock_close(struct sock_ctx *s)
{
    struct http_tr *h = s->h;
    if (s->closed)
        return;
    s->closed = true;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        h->socks = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    uv_close((uv_handle_t *)&s->poll, sock_closed);
}

/* ---- requests ---- */

static void req_unlink(struct http_tr_req *r)
{
    struct http_tr *h = r->h;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        h->reqs = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* Detaches r from curl and frees it. Must not run inside a curl callback. */
static void req_free(struct http_tr_req *r)
{
    req_unlink(r);
    if (r->easy != NULL) {
        curl_multi_remove_handle(r->h->multi, r->easy);
        curl_easy_cleanup(r->easy);
    }
    buf_free(&r->body);
    free(r);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
    struct http_tr_req *r = ud;
    size_t n;
    if (__builtin_mul_overflow(size, nmemb, &n)) { /* curl promises size == 1 */
        r->too_big = true;
        return 0;
    }
    int rc = buf_append(&r->body, data, n);
    if (rc == RV_ETOOBIG) {
        r->too_big = true;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    if (rc != 0) {
        r->no_memory = true;
        return 0;
    }
    return n;
}

/* Turns a finished transfer into the callback's rc and err. */
static int transfer_result(struct http_tr_req *r, CURLcode res, long *status, rv_error_t *err)
{
    *status = 0;
    if (r->too_big || res == CURLE_FILESIZE_EXCEEDED)
        return err_set(err, RV_ETOOBIG, "reply larger than %u bytes", TRACKER_MAX_BODY);
    if (r->no_memory)
        return err_set(err, RV_ENOMEM, "out of memory reading the reply");
    if (res != CURLE_OK) {
        const char *why = r->errbuf[0] ? r->errbuf : curl_easy_strerror(res);
        if (res == CURLE_OPERATION_TIMEDOUT)
            return err_set(err, RV_ETIMEDOUT, "%s", why);
        if (res == CURLE_OUT_OF_MEMORY)
            return err_set(err, RV_ENOMEM, "%s", why);
        return err_set(err, RV_ENET, "%s", why);
    }
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, status);
    err_clear(err);
    return 0;
}

/* Delivers every finished transfer. A callback may start requests, cancel others or close the
 * transport; after a close nothing of the multi handle may be touched. */
static void check_done(struct http_tr *h)
{
    CURLMsg *msg;
    int pending;

    while (!h->closing && (msg = curl_multi_info_read(h->multi, &pending)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        CURLcode res = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        if (priv == NULL)
            continue;
        struct http_tr_req *r = (struct http_tr_req *)(void *)priv;
        rv_error_t err;
        long status;
        int rc = transfer_result(r, res, &status, &err);
        /* Detach before the callback so a cancel or close inside it cannot find r. */
        req_unlink(r);
        curl_multi_remove_handle(h->multi, r->easy);
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
        r->delivering = true;
        r->cb(r->ud, rc, status, rc == 0 ? r->body.data : NULL, rc == 0 ? r->body.len : 0, &err);
        buf_free(&r->body);
        free(r);
    }
}

static void on_timeout(uv_timer_t *t)
{
    struct http_tr *h = t->data;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct sock_ctx *s = p->data;
    struct http_tr *h = s->h;
    int flags = 0, running;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(h->multi, s->fd, flags, &running);
    check_done(h);
}

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching one socket. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct http_tr *h = userp;
    struct sock_ctx *s = socketp;
    (void)easy;

    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            if (!h->closing)
                curl_multi_assign(h->multi, fd, NULL);
            sock_close(s);
        }
        return 0;
    }
    if (h->closing)
        return 0;
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            return -1;
        if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->fd = fd;
        s->h = h;
        s->poll.data = s;
        s->next = h->socks;
        if (h->socks != NULL)
            h->socks->prev = s;
        h->socks = s;
        h->handles_open++;
        curl_multi_assign(h->multi, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    return uv_poll_start(&s->poll, events, on_poll) == 0 ? 0 : -1;
}

/* CURLMOPT_TIMERFUNCTION: curl wants to be woken after timeout_ms (-1: never). It must not call
 * curl_multi_socket_action from here, so even a zero timeout goes through the loop. */
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct http_tr *h = userp;
    (void)multi;
    if (h->closing)
        return 0;
    if (timeout_ms < 0)
        return uv_timer_stop(&h->timer) == 0 ? 0 : -1;
    return uv_timer_start(&h->timer, on_timeout, (uint64_t)timeout_ms, 0) == 0 ? 0 : -1;
}

int http_tr_new(uv_loop_t *loop, const struct tracker_client_opts *opts, struct http_tr **out)
{
    struct http_tr *h;
    int rc = RV_ENOMEM;

    /* Reference-counted and thread-safe since curl 7.84; undone in finish_close. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return RV_ENOMEM;
    h = calloc(1, sizeof(*h));
    if (h == NULL)
        goto fail;
    h->loop = loop;
    h->timeout_ms = (long)DEFAULT_TIMEOUT_MS;
    if (opts != NULL) {
        if (opts->http_timeout_ms != 0)
            h->timeout_ms = opts->http_timeout_ms > (unsigned)INT32_MAX
                                ? (long)INT32_MAX
                                : (long)opts->http_timeout_ms;
        if (opts->ca_file != NULL && (h->ca_file = strdup(opts->ca_file)) == NULL)
            goto fail;
        if (opts->bind_addr != NULL && (h->bind_addr = strdup(opts->bind_addr)) == NULL)
            goto fail;
        if (opts->user_agent != NULL && (h->user_agent = strdup(opts->user_agent)) == NULL)
            goto fail;
    }
    h->multi = curl_multi_init();
    if (h->multi == NULL)
        goto fail;
    if (uv_timer_init(loop, &h->timer) != 0) {
        rc = RV_EINVAL;
        goto fail;
    }
    h->timer.data = h;
    h->handles_open = 1;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    *out = h;
    return 0;

fail:
    if (h != NULL) {
        if (h->multi != NULL)
            curl_multi_cleanup(h->multi);
        free(h->ca_file);
        free(h->user_agent);
        free(h->bind_addr);
        free(h);
    }
    curl_global_cleanup();
    return rc;
}

void http_tr_close(struct http_tr *h, void (*cb)(void *ud), void *ud)
{
    if (h == NULL || h->closing)
        return;
    h->close_cb = cb;
    h->close_ud = ud;
    /* Requests go first while curl may still tell us about their sockets; then our poll
     * handles are stopped before curl closes the descriptors (a watched descriptor closed under
     * epoll could be reused by another handle on this loop); then curl's multi itself. */
    while (h->reqs != NULL)
        req_free(h->reqs);
    h->closing = true;
    while (h->socks != NULL)
        sock_close(h->socks);
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    uv_close((uv_handle_t *)&h->timer, timer_closed);
}

int http_tr_get(struct http_tr *h, const char *url, http_tr_cb cb, void *ud,
                struct http_tr_req **out)
{
    struct http_tr_req *r;
    CURLcode cc = CURLE_OK;

    if (h == NULL || url == NULL || cb == NULL || h->closing)
        return RV_EINVAL;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return RV_ENOMEM;
    r->h = h;
    r->cb = cb;
    r->ud = ud;
    buf_init(&r->body, TRACKER_MAX_BODY);
    r->easy = curl_easy_init();
    if (r->easy == NULL)
        goto nomem;

    long connect_ms =
        h->timeout_ms < (long)MAX_CONNECT_TIMEOUT_MS ? h->timeout_ms : (long)MAX_CONNECT_TIMEOUT_MS;
    CURL *e = r->easy;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(e, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PRIVATE, (void *)r);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, (void *)r);
    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_HTTPGET, 1L);
    /* Trackers move (BEP 3 says nothing against redirects), but a loop must end and a redirect
     * must not lead to file://, gopher:// or any other protocol curl knows. */
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, (long)TRACKER_MAX_REDIRECTS);
    /* A body announced as too long is refused before it is read; one that grows past the cap
     * (chunked, or inflated from gzip) is stopped in on_write. */
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)TRACKER_MAX_BODY);
    SET(CURLOPT_ACCEPT_ENCODING, "");
    /* Trackers are reached directly, like peers: an http_proxy/https_proxy variable meant for
     * other programs must not silently route announces (and our address) elsewhere. */
    SET(CURLOPT_PROXY, "");
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (h->ca_file != NULL) {
        /* The given bundle replaces the system's trust store, not adds to it. */
        SET(CURLOPT_CAINFO, h->ca_file);
        SET(CURLOPT_CAPATH, (char *)NULL);
    }
    SET(CURLOPT_TIMEOUT_MS, h->timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    if (h->bind_addr != NULL)
        SET(CURLOPT_INTERFACE, h->bind_addr);
    SET(CURLOPT_USERAGENT, h->user_agent != NULL ? h->user_agent : "rivulet/" RV_VERSION_STRING);
#undef SET
    if (cc == CURLE_OUT_OF_MEMORY)
        goto nomem;
    if (cc != CURLE_OK)
        goto invalid;
    if (curl_multi_add_handle(h->multi, r->easy) != CURLM_OK)
        goto invalid;
    r->next = h->reqs;
    if (h->reqs != NULL)
        h->reqs->prev = r;
    h->reqs = r;
    if (out != NULL)
        *out = r;
    return 0;

nomem:
    if (r->easy != NULL)
        curl_easy_cleanup(r->easy);
    free(r);
    return RV_ENOMEM;
invalid:
    curl_easy_cleanup(r->easy);
    free(r);
    return RV_EINVAL;
}

void http_tr_cancel(struct http_tr_req *r)
{
    /* Canceling the request whose callback is running is harmless: it is freed when the
     * callback returns. */
    if (r == NULL || r->delivering)
        return;
    req_free(r);
}
