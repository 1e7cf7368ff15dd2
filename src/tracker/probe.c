/* rv_trackers_probe: one announce (and scrape) round against a torrent's trackers on a private
 * loop, for `rivulet trackers`. Either every tracker at once, or the announcer's own BEP 12
 * order so the user sees exactly what a download would do. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rivulet/tracker.h"
#include "swarm/peers.h"
#include "tracker/announcer.h"
#include "tracker/client.h"
#include "util/err.h"
#include "util/rand.h"

struct probe;

struct probe_req {
    struct probe *p;
    size_t idx;
    struct tracker_request *announce;
    struct tracker_request *scrape;
};

struct probe {
    uv_loop_t loop;
    uv_timer_t deadline;
    uv_timer_t check;
    struct tracker_client *client;
    struct announcer *announcer;
    rv_tracker_report_t *rep;
    const rv_tracker_probe_opts_t *o;
    struct probe_req *reqs;
    struct peer_set peers;
    size_t pending;
    uint64_t start;
    unsigned timeout_ms;
    bool done;
    bool stopping; /* 'stopped' announces: not part of the log */
    bool timed_out;
    int rc;
    size_t events_cap;
};

static void result_set_peers(struct probe *p, rv_tracker_result_t *r, const struct peer_addr *peers,
                             size_t n)
{
    for (size_t i = 0; i < r->peer_count; i++)
        free(r->peers[i]);
    free(r->peers);
    r->peers = NULL;
    r->peer_count = 0;
    if (n == 0)
        return;
    r->peers = calloc(n, sizeof(*r->peers));
    if (r->peers == NULL) {
        p->rc = RV_ENOMEM;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char s[64];
        peer_addr_format(&peers[i], s, sizeof(s));
        if ((r->peers[i] = strdup(s)) == NULL) {
            p->rc = RV_ENOMEM;
            return;
        }
        r->peer_count++;
        peers_add(&p->peers, &peers[i], PEER_SRC_TRACKER);
    }
}

static void fill_announce(struct probe *p, rv_tracker_result_t *r, struct announce_resp *resp)
{
    r->ok = true;
    r->seeders = resp->complete;
    r->leechers = resp->incomplete;
    r->interval = resp->interval;
    r->min_interval = resp->min_interval;
    free(r->warning);
    r->warning = resp->warning ? strdup(resp->warning) : NULL;
    result_set_peers(p, r, resp->peers, resp->peer_count);
}

/* Ends a uv_run: uv_stop, because UV_RUN_ONCE may sleep in poll after a timer callback
 * already set done. */
static void finish_round(struct probe *p)
{
    p->done = true;
    uv_stop(&p->loop);
}

/* ---- every tracker at once ---- */

static void maybe_finish(struct probe *p)
{
    if (p->pending == 0 && !p->done) {
        finish_round(p);
        uv_timer_stop(&p->deadline);
    }
}

static void on_announce(void *ud, int rc, struct announce_resp *resp, const rv_error_t *err)
{
    struct probe_req *q = ud;
    struct probe *p = q->p;
    rv_tracker_result_t *r = &p->rep->results[q->idx];
    q->announce = NULL;
    r->rtt_ms = (int64_t)(uv_now(&p->loop) - p->start);
    if (rc == 0)
        fill_announce(p, r, resp);
    else
        snprintf(r->error, sizeof(r->error), "%s", err && err->msg[0] ? err->msg : rv_strerror(rc));
    p->pending--;
    maybe_finish(p);
}

static void on_scrape(void *ud, int rc, const struct scrape_resp *resp, const rv_error_t *err)
{
    struct probe_req *q = ud;
    struct probe *p = q->p;
    rv_tracker_result_t *r = &p->rep->results[q->idx];
    q->scrape = NULL;
    if (rc == 0) {
        r->scrape_ok = true;
        r->scrape_seeders = resp->complete;
        r->scrape_leechers = resp->incomplete;
        r->scrape_completed = resp->downloaded;
    } else {
        snprintf(r->scrape_error, sizeof(r->scrape_error), "%s",
                 err && err->msg[0] ? err->msg : rv_strerror(rc));
    }
    p->pending--;
    maybe_finish(p);
}

static void start_all(struct probe *p, const uint8_t info_hash[20])
{
    struct announce_req req;
    memset(&req, 0, sizeof(req));
    memcpy(req.info_hash, info_hash, 20);
    rand_peer_id(req.peer_id);
    req.port = p->o->port ? p->o->port : 6881;
    req.left = p->o->left;
    req.event = TR_EVENT_NONE;
    req.numwant = 200;
    req.key = rand_u32();
    for (size_t i = 0; i < p->rep->count; i++) {
        rv_tracker_result_t *r = &p->rep->results[i];
        struct probe_req *q = &p->reqs[i];
        q->p = p;
        q->idx = i;
        r->contacted = true;
        r->attempts = 1;
        int rc = tracker_announce(p->client, r->url, &req, on_announce, q, &q->announce);
        if (rc == 0)
            p->pending++;
        else
            snprintf(r->error, sizeof(r->error), "%s",
                     rc == RV_EINVAL ? "unsupported tracker URL (http, https and udp work)"
                                     : rv_strerror(rc));
        r->scraped = true;
        rc = tracker_scrape(p->client, r->url, info_hash, on_scrape, q, &q->scrape);
        if (rc == 0)
            p->pending++;
        else
            snprintf(r->scrape_error, sizeof(r->scrape_error), "%s",
                     rc == RV_EINVAL ? "the tracker has no scrape URL (BEP 48)" : rv_strerror(rc));
    }
    maybe_finish(p);
}

static void cancel_all(struct probe *p)
{
    for (size_t i = 0; i < p->rep->count; i++) {
        struct probe_req *q = &p->reqs[i];
        rv_tracker_result_t *r = &p->rep->results[i];
        if (q->announce != NULL) {
            tracker_cancel(q->announce);
            q->announce = NULL;
            snprintf(r->error, sizeof(r->error), "no answer within %u ms", p->timeout_ms);
        }
        if (q->scrape != NULL) {
            tracker_cancel(q->scrape);
            q->scrape = NULL;
            snprintf(r->scrape_error, sizeof(r->scrape_error), "no answer within %u ms",
                     p->timeout_ms);
        }
    }
    p->pending = 0;
}

/* ---- BEP 12 order, through the announcer ---- */

static size_t result_index(struct probe *p, const struct tracker_state *t)
{
    for (size_t i = 0; i < p->rep->count; i++)
        if (p->rep->results[i].tier == t->tier && strcmp(p->rep->results[i].url, t->url) == 0)
            return i;
    return 0;
}

static void copy_state(struct probe *p, const struct tracker_state *t)
{
    rv_tracker_result_t *r = &p->rep->results[result_index(p, t)];
    r->contacted = t->attempts > 0;
    r->attempts = t->attempts;
    r->backoff_ms = t->backoff_ms;
    r->ok = t->status == TS_WORKING;
    snprintf(r->error, sizeof(r->error), "%s", t->error);
    r->seeders = t->seeders;
    r->leechers = t->leechers;
    r->interval = t->interval;
    r->min_interval = t->min_interval;
    r->rtt_ms = t->status == TS_WORKING ? (int64_t)t->rtt_ms : -1;
    free(r->warning);
    r->warning = t->warning ? strdup(t->warning) : NULL;
}

static void on_check(uv_timer_t *h);

static void on_tracker_event(void *ud, const struct tracker_state *t, int rc,
                             const struct announce_resp *resp)
{
    struct probe *p = ud;
    rv_tracker_report_t *rep = p->rep;
    if (p->done || p->stopping)
        return;
    if (rep->event_count == p->events_cap) {
        size_t cap = p->events_cap ? p->events_cap * 2 : 16;
        rv_tracker_event_t *e = realloc(rep->events, cap * sizeof(*e));
        if (e == NULL) {
            p->rc = RV_ENOMEM;
            return;
        }
        rep->events = e;
        p->events_cap = cap;
    }
    rv_tracker_event_t *e = &rep->events[rep->event_count++];
    memset(e, 0, sizeof(*e));
    e->at_ms = uv_now(&p->loop) - p->start;
    e->tracker = result_index(p, t);
    e->ok = rc == 0;
    snprintf(e->error, sizeof(e->error), "%s", rc == 0 ? "" : t->error);
    e->backoff_ms = rc == 0 ? 0 : t->backoff_ms;
    e->peer_count = rc == 0 ? t->last_peers : 0;
    copy_state(p, t);
    if (resp != NULL)
        result_set_peers(p, &rep->results[e->tracker], resp->peers, resp->peer_count);
    /* Decide after the announcer has moved on to its next tracker. */
    uv_timer_start(&p->check, on_check, 0, 0);
}

static void on_check(uv_timer_t *h)
{
    struct probe *p = h->data;
    size_t n = announcer_tracker_count(p->announcer);
    bool in_flight = false, all_tried = true, any_ok = false;
    for (size_t i = 0; i < n; i++) {
        const struct tracker_state *t = announcer_tracker(p->announcer, i);
        in_flight |= t->status == TS_ANNOUNCING;
        all_tried &= t->attempts > 0;
        any_ok |= t->status == TS_WORKING;
    }
    if (in_flight)
        return;
    if ((any_ok && !p->o->all_tiers) || all_tried) {
        finish_round(p);
        uv_timer_stop(&p->deadline);
    }
}

static void follow_stats(void *ud, uint64_t *up, uint64_t *down, uint64_t *left)
{
    struct probe *p = ud;
    *up = *down = 0;
    *left = p->o->left;
}

static void stopped(void *ud)
{
    struct probe *p = ud;
    finish_round(p);
}

static int start_follow(struct probe *p, const rv_tier_t *tiers, size_t tier_count,
                        const uint8_t info_hash[20])
{
    struct announcer_config cfg;
    struct announcer_opts ao;
    struct announcer_transport tp;
    memset(&cfg, 0, sizeof(cfg));
    memset(&ao, 0, sizeof(ao));
    cfg.tiers = tiers;
    cfg.tier_count = tier_count;
    memcpy(cfg.info_hash, info_hash, 20);
    rand_peer_id(cfg.peer_id);
    cfg.port = p->o->port ? p->o->port : 6881;
    cfg.key = rand_u32();
    cfg.peers = &p->peers;
    cfg.stats = follow_stats;
    cfg.on_event = on_tracker_event;
    cfg.ud = p;
    ao.all_tiers = p->o->all_tiers;
    ao.backoff_base_ms = p->o->backoff_base_ms;
    announcer_transport_client(&tp, p->client);
    int rc = announcer_new(&p->loop, &cfg, &ao, &tp, &p->announcer);
    if (rc != 0)
        return rc;
    announcer_start(p->announcer);
    return 0;
}

/* ---- the probe ---- */

static void on_deadline(uv_timer_t *h)
{
    struct probe *p = h->data;
    p->timed_out = true;
    finish_round(p);
}

static void client_closed(void *ud)
{
    (void)ud;
}

static int build_results(rv_tracker_report_t *rep, const rv_tier_t *tiers, size_t tier_count)
{
    size_t n = 0;
    for (size_t t = 0; t < tier_count; t++)
        n += tiers[t].count;
    rep->results = calloc(n ? n : 1, sizeof(*rep->results));
    if (rep->results == NULL)
        return RV_ENOMEM;
    for (size_t t = 0; t < tier_count; t++) {
        for (size_t u = 0; u < tiers[t].count; u++) {
            rv_tracker_result_t *r = &rep->results[rep->count++];
            r->tier = (unsigned)t;
            r->seeders = r->leechers = r->interval = r->min_interval = r->rtt_ms = -1;
            r->scrape_seeders = r->scrape_leechers = r->scrape_completed = -1;
            if ((r->url = strdup(tiers[t].urls[u])) == NULL)
                return RV_ENOMEM;
        }
    }
    return 0;
}

int rv_trackers_probe(const rv_tier_t *tiers, size_t tier_count, const uint8_t info_hash[20],
                      const rv_tracker_probe_opts_t *opts, rv_tracker_report_t **out,
                      rv_error_t *err)
{
    rv_tracker_probe_opts_t defaults;
    struct probe p;
    int rc;

    memset(&defaults, 0, sizeof(defaults));
    if (opts == NULL)
        opts = &defaults;
    memset(&p, 0, sizeof(p));
    p.o = opts;
    p.timeout_ms = opts->timeout_ms ? opts->timeout_ms : 20000;
    *out = NULL;
    if ((p.rep = calloc(1, sizeof(*p.rep))) == NULL)
        return err_set(err, RV_ENOMEM, "out of memory");
    if ((rc = build_results(p.rep, tiers, tier_count)) != 0) {
        rv_tracker_report_free(p.rep);
        return err_set(err, rc, "out of memory");
    }
    if (p.rep->count == 0) {
        rv_tracker_report_free(p.rep);
        return err_set(err, RV_EINVAL, "the torrent names no trackers");
    }
    if ((p.reqs = calloc(p.rep->count, sizeof(*p.reqs))) == NULL) {
        rv_tracker_report_free(p.rep);
        return err_set(err, RV_ENOMEM, "out of memory");
    }
    peers_init(&p.peers, 0, NULL, NULL);
    uv_loop_init(&p.loop);
    uv_timer_init(&p.loop, &p.deadline);
    uv_timer_init(&p.loop, &p.check);
    p.deadline.data = p.check.data = &p;

    struct tracker_client_opts co;
    memset(&co, 0, sizeof(co));
    co.ca_file = opts->ca_file;
    co.http_timeout_ms = p.timeout_ms;
    co.udp_timeout_ms = opts->udp_timeout_ms;
    if (co.udp_timeout_ms == 0)
        co.udp_timeout_ms = p.timeout_ms / 3 < 15000 ? p.timeout_ms / 3 : 15000;
    /* BEP 15 doubles the wait after each retransmission; keep all of them within three
     * quarters of the deadline so that, in tier order, later tiers still get their turn. */
    co.udp_max_retries = 0;
    for (uint64_t total = co.udp_timeout_ms * 3ULL; total <= p.timeout_ms * 3ULL / 4;
         total = total * 2 + co.udp_timeout_ms)
        co.udp_max_retries++;
    if (co.udp_max_retries == 0)
        co.udp_max_retries = 1; /* 0 would mean the default of 8 */
    rc = tracker_client_new(&p.loop, &co, &p.client);
    if (rc != 0) {
        err_set(err, rc, "cannot start the tracker client");
        goto out;
    }
    uv_update_time(&p.loop);
    p.start = uv_now(&p.loop);
    uv_timer_start(&p.deadline, on_deadline, p.timeout_ms, 0);
    if (opts->follow_tiers) {
        if ((rc = start_follow(&p, tiers, tier_count, info_hash)) != 0) {
            err_set(err, rc, "cannot start the announcer");
            goto out;
        }
    } else {
        start_all(&p, info_hash);
    }
    while (!p.done && uv_run(&p.loop, UV_RUN_DEFAULT) != 0)
        ;
    if (opts->follow_tiers) {
        for (size_t i = 0; i < announcer_tracker_count(p.announcer); i++)
            copy_state(&p, announcer_tracker(p.announcer, i));
        if (p.timed_out) {
            for (size_t i = 0; i < announcer_tracker_count(p.announcer); i++) {
                const struct tracker_state *t = announcer_tracker(p.announcer, i);
                if (t->status == TS_ANNOUNCING)
                    snprintf(p.rep->results[result_index(&p, t)].error, 256,
                             "no answer within %u ms", p.timeout_ms);
            }
        }
        /* Say goodbye to whoever heard 'started', within the announcer's short deadline. */
        p.done = false;
        p.stopping = true;
        uv_timer_stop(&p.check);
        announcer_stop(p.announcer, stopped, &p);
        while (!p.done && uv_run(&p.loop, UV_RUN_DEFAULT) != 0)
            ;
        announcer_free(p.announcer);
        p.announcer = NULL;
    } else {
        cancel_all(&p);
    }
    p.rep->unique_peers = p.peers.count;
    rc = p.rc;
    if (rc != 0)
        err_set(err, rc, "out of memory");
out:
    if (p.announcer != NULL)
        announcer_free(p.announcer);
    if (p.client != NULL)
        tracker_client_close(p.client, client_closed, NULL);
    uv_close((uv_handle_t *)&p.deadline, NULL);
    uv_close((uv_handle_t *)&p.check, NULL);
    uv_run(&p.loop, UV_RUN_DEFAULT);
    uv_loop_close(&p.loop);
    peers_free(&p.peers);
    free(p.reqs);
    if (rc != 0) {
        rv_tracker_report_free(p.rep);
        return rc;
    }
    *out = p.rep;
    return 0;
}

void rv_tracker_report_free(rv_tracker_report_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->count; i++) {
        rv_tracker_result_t *t = &r->results[i];
        free(t->url);
        free(t->warning);
        for (size_t j = 0; j < t->peer_count; j++)
            free(t->peers[j]);
        free(t->peers);
    }
    free(r->results);
    free(r->events);
    free(r);
}
