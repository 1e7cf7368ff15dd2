/* BEP 12 scheduling. One timer per torrent; each tick walks the tiers in order and sends what
 * is due, then sleeps until the earliest tracker it is waiting for. */
#include "tracker/announcer.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"

#define MAX_INTERVAL_S (7 * 24 * 3600)
/* A tracker's interval is obeyed down to this: one answering 'interval 1' (misconfigured or
 * hostile) would otherwise get an announce a second from every client it has. libtorrent's
 * min_announce_interval does the same (at 300 s). */
#define MIN_INTERVAL_S 60

struct tier {
    struct tracker_state **t;
    size_t n;
};

struct announcer {
    uv_loop_t *loop;
    uv_timer_t timer;
    struct tier *tiers;
    size_t tier_count;
    size_t total;
    struct announcer_opts opts;
    struct announcer_transport tp;
    struct announcer_config cfg;
    uint64_t rng;
    bool running;
    bool stopping;
    bool completed;
    unsigned stop_waiting;
    void (*stop_done)(void *ud);
    void *stop_ud;
};

static void tick(struct announcer *a);

static int client_announce(void *ctx, const char *url, const struct announce_req *req,
                           tracker_announce_cb cb, void *ud, void **handle)
{
    struct tracker_request *r = NULL;
    int rc = tracker_announce(ctx, url, req, cb, ud, &r);
    *handle = r;
    return rc;
}

static void client_cancel(void *ctx, void *handle)
{
    (void)ctx;
    tracker_cancel(handle);
}

void announcer_transport_client(struct announcer_transport *tp, struct tracker_client *c)
{
    tp->announce = client_announce;
    tp->cancel = client_cancel;
    tp->ctx = c;
}

/* xorshift64*: jitter and shuffling need spread, not secrecy. */
static uint64_t next_rand(struct announcer *a)
{
    a->rng ^= a->rng >> 12;
    a->rng ^= a->rng << 25;
    a->rng ^= a->rng >> 27;
    return a->rng * 2685821657736338717ULL;
}

uint64_t announcer_backoff_ms(const struct announcer_opts *opts, unsigned fails)
{
    uint64_t base = opts->backoff_base_ms ? opts->backoff_base_ms : 15000;
    uint64_t max = opts->backoff_max_ms ? opts->backoff_max_ms : 30u * 60 * 1000;
    if (fails == 0)
        return 0;
    uint64_t d = base;
    for (unsigned i = 1; i < fails && d < max; i++)
        d *= 2;
    return d < max ? d : max;
}

static void tracker_free(struct tracker_state *t)
{
    if (t == NULL)
        return;
    free(t->url);
    free(t->trackerid);
    free(t->warning);
    free(t);
}

static void announcer_destroy(struct announcer *a)
{
    for (size_t i = 0; i < a->tier_count; i++) {
        for (size_t j = 0; j < a->tiers[i].n; j++)
            tracker_free(a->tiers[i].t[j]);
        free(a->tiers[i].t);
    }
    free(a->tiers);
    free(a);
}

int announcer_new(uv_loop_t *loop, const struct announcer_config *cfg,
                  const struct announcer_opts *opts, const struct announcer_transport *transport,
                  struct announcer **out)
{
    struct announcer *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return RV_ENOMEM;
    a->loop = loop;
    a->cfg = *cfg;
    a->cfg.tiers = NULL;
    if (opts != NULL)
        a->opts = *opts;
    if (a->opts.numwant == 0)
        a->opts.numwant = 200;
    if (a->opts.stop_timeout_ms == 0)
        a->opts.stop_timeout_ms = 2000;
    a->tp = *transport;
    a->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)a ^ 0x9e3779b97f4a7c15ULL;
    if (cfg->tier_count > 0) {
        a->tiers = calloc(cfg->tier_count, sizeof(*a->tiers));
        if (a->tiers == NULL)
            goto fail;
    }
    for (size_t i = 0; i < cfg->tier_count; i++) {
        const rv_tier_t *src = &cfg->tiers[i];
        struct tier *tier = &a->tiers[a->tier_count++];
        tier->t = calloc(src->count ? src->count : 1, sizeof(*tier->t));
        if (tier->t == NULL)
            goto fail;
        for (size_t j = 0; j < src->count; j++) {
            struct tracker_state *t = calloc(1, sizeof(*t));
            if (t == NULL)
                goto fail;
            tier->t[tier->n++] = t;
            if ((t->url = strdup(src->urls[j])) == NULL)
                goto fail;
            t->tier = (unsigned)i;
            t->owner = a;
            t->interval = t->min_interval = -1;
            t->seeders = t->leechers = t->completed = -1;
            a->total++;
        }
        /* BEP 12: "the URLs within each tier are processed in a randomly chosen order". */
        for (size_t j = tier->n; j > 1; j--) {
            size_t k = (size_t)(next_rand(a) % j);
            struct tracker_state *tmp = tier->t[j - 1];
            tier->t[j - 1] = tier->t[k];
            tier->t[k] = tmp;
        }
    }
    if (uv_timer_init(loop, &a->timer) != 0)
        goto fail;
    a->timer.data = a;
    *out = a;
    return 0;
fail:
    announcer_destroy(a);
    return RV_ENOMEM;
}

size_t announcer_tracker_count(const struct announcer *a)
{
    return a->total;
}

static struct tracker_state *tracker_at(const struct announcer *a, size_t i)
{
    for (size_t k = 0; k < a->tier_count; k++) {
        if (i < a->tiers[k].n)
            return a->tiers[k].t[i];
        i -= a->tiers[k].n;
    }
    return NULL;
}

const struct tracker_state *announcer_tracker(const struct announcer *a, size_t i)
{
    return tracker_at(a, i);
}

static void on_reply(void *ud, int rc, struct announce_resp *resp, const rv_error_t *err);

static enum tracker_event next_event(const struct announcer *a, const struct tracker_state *t)
{
    if (a->stopping)
        return TR_EVENT_STOPPED;
    if (!t->started_sent)
        return TR_EVENT_STARTED;
    if (a->completed && !t->completed_sent)
        return TR_EVENT_COMPLETED;
    return TR_EVENT_NONE;
}

static void set_error(struct tracker_state *t, int rc, const char *msg)
{
    snprintf(t->error, sizeof(t->error), "%s", msg && *msg ? msg : rv_strerror(rc));
}

static void fail_tracker(struct announcer *a, struct tracker_state *t, int rc, const char *msg)
{
    uint64_t now = uv_now(a->loop);
    t->status = TS_FAILED;
    t->fails++;
    uint64_t d = announcer_backoff_ms(&a->opts, t->fails);
    /* Jitter of +-25% so a tracker that comes back is not hit by every client at once. */
    d = d * 3 / 4 + (d ? next_rand(a) % (d / 2 + 1) : 0);
    t->backoff_ms = d;
    t->next_ms = now + d;
    set_error(t, rc, msg);
}

/* Sends one announce; on a synchronous failure (bad URL, no memory) the tracker is marked
 * failed and the caller moves on. Returns true if a request is in flight. */
static bool send_announce(struct announcer *a, struct tracker_state *t)
{
    struct announce_req req;
    memset(&req, 0, sizeof(req));
    memcpy(req.info_hash, a->cfg.info_hash, 20);
    memcpy(req.peer_id, a->cfg.peer_id, 20);
    req.port = a->cfg.port;
    req.key = a->cfg.key;
    req.numwant = a->stopping ? 0 : a->opts.numwant;
    req.trackerid = t->trackerid;
    if (a->cfg.stats != NULL)
        a->cfg.stats(a->cfg.ud, &req.uploaded, &req.downloaded, &req.left);
    req.event = next_event(a, t);
    t->sending = req.event;
    t->sent_ms = uv_now(a->loop);
    t->attempts++;
    int rc = a->tp.announce(a->tp.ctx, t->url, &req, on_reply, t, &t->req);
    if (rc != 0) {
        t->req = NULL;
        fail_tracker(a, t, rc, rc == RV_EINVAL ? "unsupported tracker URL" : NULL);
        if (a->cfg.on_event != NULL)
            a->cfg.on_event(a->cfg.ud, t, rc, NULL);
        return false;
    }
    t->status = TS_ANNOUNCING;
    return true;
}

static void move_to_front(struct announcer *a, struct tracker_state *t)
{
    struct tier *tier = &a->tiers[t->tier];
    size_t i = 0;
    while (i < tier->n && tier->t[i] != t)
        i++;
    for (; i > 0; i--)
        tier->t[i] = tier->t[i - 1];
    tier->t[0] = t;
}

static void finish_stop(struct announcer *a)
{
    uv_timer_stop(&a->timer);
    void (*done)(void *) = a->stop_done;
    a->stop_done = NULL;
    if (done != NULL)
        done(a->stop_ud);
}

static void on_reply(void *ud, int rc, struct announce_resp *resp, const rv_error_t *err)
{
    struct tracker_state *t = ud;
    struct announcer *a = t->owner;
    uint64_t now = uv_now(a->loop);
    t->req = NULL;

    if (rc == 0) {
        t->status = TS_WORKING;
        t->fails = 0;
        t->backoff_ms = 0;
        t->error[0] = '\0';
        t->rtt_ms = now - t->sent_ms;
        if (t->sending == TR_EVENT_STARTED)
            t->started_sent = true;
        if (t->sending == TR_EVENT_COMPLETED)
            t->completed_sent = true;
        if (t->sending == TR_EVENT_STOPPED)
            t->started_sent = false;
        int64_t iv = resp->interval > MAX_INTERVAL_S ? MAX_INTERVAL_S : resp->interval;
        if (resp->min_interval > iv)
            iv = resp->min_interval > MAX_INTERVAL_S ? MAX_INTERVAL_S : resp->min_interval;
        if (iv < MIN_INTERVAL_S)
            iv = MIN_INTERVAL_S;
        t->interval = resp->interval;
        t->min_interval = resp->min_interval;
        t->next_ms = now + (uint64_t)iv * 1000;
        t->seeders = resp->complete;
        t->leechers = resp->incomplete;
        t->completed = resp->downloaded;
        t->last_peers = resp->peer_count;
        if (resp->tracker_id != NULL) {
            free(t->trackerid);
            t->trackerid = strdup(resp->tracker_id);
        }
        free(t->warning);
        t->warning = resp->warning ? strdup(resp->warning) : NULL;
        for (size_t i = 0; a->cfg.peers != NULL && i < resp->peer_count; i++)
            peers_add(a->cfg.peers, &resp->peers[i], PEER_SRC_TRACKER);
        /* BEP 12: a tracker that answers moves to the front of its tier. */
        move_to_front(a, t);
    } else {
        fail_tracker(a, t, rc, err ? err->msg : NULL);
    }
    if (a->cfg.on_event != NULL)
        a->cfg.on_event(a->cfg.ud, t, rc, rc == 0 ? resp : NULL);
    if (a->stopping) {
        if (a->stop_waiting > 0 && --a->stop_waiting == 0)
            finish_stop(a);
        return;
    }
    tick(a);
}

static void on_timer(uv_timer_t *timer)
{
    struct announcer *a = timer->data;
    if (a->stopping) {
        /* The stop deadline passed: give up on trackers that did not answer. */
        for (size_t i = 0; i < a->total; i++) {
            struct tracker_state *t = tracker_at(a, i);
            if (t->req != NULL) {
                a->tp.cancel(a->tp.ctx, t->req);
                t->req = NULL;
                t->status = TS_FAILED;
                set_error(t, RV_ETIMEDOUT, "no answer to 'stopped' before the deadline");
            }
        }
        a->stop_waiting = 0;
        finish_stop(a);
        return;
    }
    tick(a);
}

static void tick(struct announcer *a)
{
    if (!a->running || a->stopping)
        return;
    uint64_t now = uv_now(a->loop);
    uint64_t wake = UINT64_MAX;
    for (size_t ti = 0; ti < a->tier_count; ti++) {
        struct tier *tier = &a->tiers[ti];
        bool busy = false;
        if (a->opts.all_trackers) {
            for (size_t j = 0; j < tier->n; j++) {
                struct tracker_state *t = tier->t[j];
                if (t->status != TS_ANNOUNCING && t->next_ms <= now)
                    send_announce(a, t);
                if (t->status == TS_WORKING || t->status == TS_ANNOUNCING)
                    busy = true;
                if (t->status != TS_ANNOUNCING && t->next_ms < wake)
                    wake = t->next_ms;
            }
        } else {
            struct tracker_state *cur = NULL;
            for (size_t j = 0; j < tier->n && cur == NULL; j++)
                if (tier->t[j]->status == TS_WORKING || tier->t[j]->status == TS_ANNOUNCING)
                    cur = tier->t[j];
            if (cur != NULL) {
                busy = true;
                if (cur->status == TS_WORKING && cur->next_ms <= now)
                    send_announce(a, cur);
                if (cur->status == TS_WORKING && cur->next_ms < wake)
                    wake = cur->next_ms;
            } else {
                /* Nothing working: the first tracker never tried or whose back-off ended;
                 * a synchronous failure moves on to the next. */
                for (size_t j = 0; j < tier->n && !busy; j++) {
                    struct tracker_state *t = tier->t[j];
                    if (t->status == TS_IDLE || t->next_ms <= now)
                        busy = send_announce(a, t);
                }
                for (size_t j = 0; j < tier->n; j++)
                    if (tier->t[j]->status == TS_FAILED && tier->t[j]->next_ms < wake)
                        wake = tier->t[j]->next_ms;
            }
        }
        /* BEP 12: a lower tier is used only when every tracker of this one failed. */
        if (busy && !a->opts.all_tiers)
            break;
    }
    uv_timer_stop(&a->timer);
    if (wake != UINT64_MAX)
        uv_timer_start(&a->timer, on_timer, wake > now ? wake - now : 0, 0);
}

void announcer_start(struct announcer *a)
{
    a->running = true;
    tick(a);
}

void announcer_completed(struct announcer *a)
{
    a->completed = true;
    /* Working trackers hear 'completed' now rather than at their next interval. */
    for (size_t i = 0; i < a->total; i++) {
        struct tracker_state *t = tracker_at(a, i);
        if (t->status == TS_WORKING && t->started_sent)
            t->next_ms = 0;
    }
    tick(a);
}

void announcer_stop(struct announcer *a, void (*done)(void *ud), void *ud)
{
    a->stopping = true;
    a->running = false;
    a->stop_done = done;
    a->stop_ud = ud;
    a->stop_waiting = 0;
    uv_timer_stop(&a->timer);
    for (size_t i = 0; i < a->total; i++) {
        struct tracker_state *t = tracker_at(a, i);
        if (t->req != NULL) {
            a->tp.cancel(a->tp.ctx, t->req);
            t->req = NULL;
            t->status = t->started_sent ? TS_WORKING : TS_IDLE;
        }
    }
    for (size_t i = 0; i < a->total; i++) {
        struct tracker_state *t = tracker_at(a, i);
        if (t->started_sent && send_announce(a, t))
            a->stop_waiting++;
    }
    if (a->stop_waiting == 0) {
        finish_stop(a);
        return;
    }
    uv_timer_start(&a->timer, on_timer, a->opts.stop_timeout_ms, 0);
}

static void on_timer_closed(uv_handle_t *h)
{
    announcer_destroy(h->data);
}

void announcer_free(struct announcer *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->total; i++) {
        struct tracker_state *t = tracker_at(a, i);
        if (t->req != NULL) {
            a->tp.cancel(a->tp.ctx, t->req);
            t->req = NULL;
        }
    }
    uv_timer_stop(&a->timer);
    uv_close((uv_handle_t *)&a->timer, on_timer_closed);
}
