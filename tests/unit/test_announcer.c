/* Unit tests for src/tracker/announcer: BEP 12 tier order, move-to-front, back-off, events and
 * 'stopped' at shutdown, driven by a scripted fake transport on a real libuv loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "tracker/announcer.h"
#include "util/err.h"

enum outcome { OK, FAIL, HANG };

struct script {
    const char *url;
    enum outcome outcome;
    unsigned delay_ms;
    int64_t interval; /* OK replies: the interval given; 0: 1800 */
};

struct sent {
    char url[64];
    enum tracker_event event;
    uint64_t at;
};

struct fake {
    uv_loop_t *loop;
    const struct script *script;
    size_t nscript;
    struct sent sent[64];
    size_t nsent;
    int open; /* requests not yet finished or canceled */
};

struct fake_req {
    uv_timer_t timer;
    struct fake *f;
    tracker_announce_cb cb;
    void *ud;
    enum outcome outcome;
    int64_t interval;
};

static const struct script *find(struct fake *f, const char *url)
{
    for (size_t i = 0; i < f->nscript; i++)
        if (strcmp(f->script[i].url, url) == 0)
            return &f->script[i];
    return NULL;
}

static void req_closed(uv_handle_t *h)
{
    free(h->data);
}

static void deliver(uv_timer_t *t)
{
    struct fake_req *r = t->data;
    struct fake *f = r->f;
    f->open--;
    uv_close((uv_handle_t *)&r->timer, req_closed);
    if (r->outcome == OK) {
        struct announce_resp resp;
        struct peer_addr peer;
        memset(&resp, 0, sizeof(resp));
        memset(&peer, 0, sizeof(peer));
        peer.family = 4;
        peer.ip[0] = 127, peer.ip[3] = 9;
        peer.port = 7000;
        resp.interval = r->interval ? r->interval : 1800;
        resp.min_interval = -1;
        resp.complete = 3;
        resp.incomplete = 4;
        resp.downloaded = -1;
        resp.peers = &peer;
        resp.peer_count = 1;
        r->cb(r->ud, 0, &resp, NULL);
    } else {
        rv_error_t err;
        err_set(&err, RV_ENET, "connection refused");
        r->cb(r->ud, RV_ENET, NULL, &err);
    }
}

static int fake_announce(void *ctx, const char *url, const struct announce_req *req,
                         tracker_announce_cb cb, void *ud, void **handle)
{
    struct fake *f = ctx;
    const struct script *s = find(f, url);
    if (s == NULL)
        return RV_EINVAL;
    struct sent *x = &f->sent[f->nsent++];
    snprintf(x->url, sizeof(x->url), "%s", url);
    x->event = req->event;
    x->at = uv_now(f->loop);
    struct fake_req *r = calloc(1, sizeof(*r));
    r->f = f;
    r->cb = cb;
    r->ud = ud;
    r->outcome = s->outcome;
    r->interval = s->interval;
    uv_timer_init(f->loop, &r->timer);
    r->timer.data = r;
    if (s->outcome != HANG)
        uv_timer_start(&r->timer, deliver, s->delay_ms, 0);
    f->open++;
    *handle = r;
    return 0;
}

static void fake_cancel(void *ctx, void *handle)
{
    struct fake *f = ctx;
    struct fake_req *r = handle;
    f->open--;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, req_closed);
}

struct world {
    uv_loop_t loop;
    struct fake fake;
    struct peer_set peers;
    struct announcer *a;
    int events;
    int target; /* stop the loop once events reaches it */
    bool stopped;
};

static void on_event(void *ud, const struct tracker_state *t, int rc,
                     const struct announce_resp *resp)
{
    struct world *w = ud;
    (void)t;
    assert_true((rc == 0) == (resp != NULL));
    w->events++;
    if (w->target > 0 && w->events >= w->target)
        uv_stop(&w->loop);
}

static void on_stopped(void *ud)
{
    struct world *w = ud;
    w->stopped = true;
    uv_stop(&w->loop);
}

static void stats(void *ud, uint64_t *up, uint64_t *down, uint64_t *left)
{
    (void)ud;
    *up = 1, *down = 2, *left = 3;
}

/* tiers: NULL-separated groups of URLs, ending with two NULLs. */
static void setup_world(struct world *w, const struct script *s, size_t n, const char **urls,
                        const struct announcer_opts *opts)
{
    memset(w, 0, sizeof(*w));
    uv_loop_init(&w->loop);
    w->fake.loop = &w->loop;
    w->fake.script = s;
    w->fake.nscript = n;
    peers_init(&w->peers, 0, NULL, NULL);

    rv_tier_t tiers[8];
    char *store[8][8];
    size_t nt = 0;
    for (const char **u = urls; *u != NULL; u++) {
        rv_tier_t *t = &tiers[nt];
        t->urls = store[nt];
        t->count = 0;
        for (; *u != NULL; u++)
            t->urls[t->count++] = (char *)*u;
        nt++;
    }
    struct announcer_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.tiers = tiers;
    cfg.tier_count = nt;
    cfg.port = 6881;
    cfg.peers = &w->peers;
    cfg.stats = stats;
    cfg.on_event = on_event;
    cfg.ud = w;
    struct announcer_transport tp = {fake_announce, fake_cancel, &w->fake};
    assert_int_equal(announcer_new(&w->loop, &cfg, opts, &tp, &w->a), 0);
}

static void on_guard(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Runs the loop until `events` announces finished or max_ms passed. uv_stop from the event
 * callback and the guard, since UV_RUN_ONCE may block in poll after a timer delivered the
 * awaited event. */
static void run_until_events(struct world *w, int events, unsigned max_ms)
{
    uv_timer_t guard;
    w->target = events;
    uv_timer_init(&w->loop, &guard);
    uv_timer_start(&guard, on_guard, max_ms, 0);
    if (w->events < events)
        uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&w->loop, UV_RUN_NOWAIT);
    w->target = 0;
    assert_true(w->events >= events);
}

static void teardown_world(struct world *w)
{
    announcer_free(w->a);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    assert_int_equal(w->fake.open, 0);
    assert_int_equal(uv_loop_close(&w->loop), 0);
    peers_free(&w->peers);
}

static const struct tracker_state *state_of(struct world *w, const char *url)
{
    for (size_t i = 0; i < announcer_tracker_count(w->a); i++)
        if (strcmp(announcer_tracker(w->a, i)->url, url) == 0)
            return announcer_tracker(w->a, i);
    return NULL;
}

static void dead_first_tier_falls_through_to_second(void **state)
{
    (void)state;
    static const struct script s[] = {{"http://a/announce", FAIL, 5, 0},
                                      {"udp://b:1/announce", FAIL, 10, 0},
                                      {"http://c/announce", OK, 5, 0},
                                      {"http://d/announce", OK, 5, 0}};
    const char *urls[] = {"http://a/announce", "udp://b:1/announce", NULL, "http://c/announce",
                          NULL, "http://d/announce", NULL, NULL};
    struct announcer_opts o = {.backoff_base_ms = 60000};
    struct world w;
    setup_world(&w, s, 4, urls, &o);
    announcer_start(w.a);
    run_until_events(&w, 3, 2000);
    /* Both tier-1 trackers first, one at a time, then tier 2; tier 3 never. */
    assert_int_equal(w.fake.nsent, 3);
    assert_true(strcmp(w.fake.sent[2].url, "http://c/announce") == 0);
    for (int i = 0; i < 2; i++)
        assert_true(strstr(w.fake.sent[i].url, "a/") || strstr(w.fake.sent[i].url, "b:"));
    assert_int_equal(w.fake.sent[0].event, TR_EVENT_STARTED);
    assert_int_equal(state_of(&w, "http://c/announce")->status, TS_WORKING);
    assert_int_equal(state_of(&w, "http://d/announce")->attempts, 0);
    assert_int_equal(w.peers.count, 1);
    const struct tracker_state *a = state_of(&w, "http://a/announce");
    assert_int_equal(a->status, TS_FAILED);
    assert_int_equal(a->fails, 1);
    assert_true(a->backoff_ms >= 45000 && a->backoff_ms <= 75000);
    assert_non_null(strstr(a->error, "refused"));
    teardown_world(&w);
}

static void responding_tracker_moves_to_front(void **state)
{
    (void)state;
    static const struct script s[] = {{"http://a/announce", FAIL, 1, 0},
                                      {"http://b/announce", OK, 1, 0}};
    const char *urls[] = {"http://a/announce", "http://b/announce", NULL, NULL};
    struct announcer_opts o = {.backoff_base_ms = 60000};
    struct world w;
    setup_world(&w, s, 2, urls, &o);
    announcer_start(w.a);
    run_until_events(&w, 1, 2000);
    if (strcmp(w.fake.sent[0].url, "http://a/announce") == 0)
        run_until_events(&w, 2, 2000);
    assert_string_equal(announcer_tracker(w.a, 0)->url, "http://b/announce");
    assert_int_equal(announcer_tracker(w.a, 0)->status, TS_WORKING);
    teardown_world(&w);
}

static void working_first_tier_keeps_lower_tiers_idle_unless_all_tiers(void **state)
{
    (void)state;
    static const struct script s[] = {{"http://a/announce", OK, 1, 0},
                                      {"http://b/announce", OK, 1, 0}};
    const char *urls[] = {"http://a/announce", NULL, "http://b/announce", NULL, NULL};
    struct world w;
    setup_world(&w, s, 2, urls, NULL);
    announcer_start(w.a);
    run_until_events(&w, 1, 2000);
    uv_run(&w.loop, UV_RUN_NOWAIT);
    assert_int_equal(w.fake.nsent, 1);
    teardown_world(&w);

    struct announcer_opts o = {.all_tiers = true};
    setup_world(&w, s, 2, urls, &o);
    announcer_start(w.a);
    run_until_events(&w, 2, 2000);
    assert_int_equal(w.fake.nsent, 2);
    teardown_world(&w);
}

static void failed_tracker_is_retried_after_backoff(void **state)
{
    (void)state;
    static const struct script s[] = {{"http://a/announce", FAIL, 1, 0}};
    const char *urls[] = {"http://a/announce", NULL, NULL};
    struct announcer_opts o = {.backoff_base_ms = 40};
    struct world w;
    setup_world(&w, s, 1, urls, &o);
    announcer_start(w.a);
    run_until_events(&w, 3, 3000);
    assert_int_equal(w.fake.nsent, 3);
    /* Gaps grow: 40 ms then 80 ms, each within +-25%. Only the lower bounds are checked (a
     * loaded machine makes timers late, never early); the second's (60 ms) is above the
     * first's upper bound (50 ms), so a backoff that did not double fails. */
    uint64_t g1 = w.fake.sent[1].at - w.fake.sent[0].at, g2 = w.fake.sent[2].at - w.fake.sent[1].at;
    assert_true(g1 >= 29);
    assert_true(g2 >= 59);
    /* Still 'started': the tracker never heard it. */
    assert_int_equal(w.fake.sent[2].event, TR_EVENT_STARTED);
    assert_int_equal(state_of(&w, "http://a/announce")->fails, 3);
    teardown_world(&w);
}

static void backoff_doubles_and_caps(void **state)
{
    (void)state;
    struct announcer_opts o = {.backoff_base_ms = 1000, .backoff_max_ms = 5000};
    assert_int_equal(announcer_backoff_ms(&o, 0), 0);
    assert_int_equal(announcer_backoff_ms(&o, 1), 1000);
    assert_int_equal(announcer_backoff_ms(&o, 2), 2000);
    assert_int_equal(announcer_backoff_ms(&o, 3), 4000);
    assert_int_equal(announcer_backoff_ms(&o, 4), 5000);
    assert_int_equal(announcer_backoff_ms(&o, 400), 5000);
    struct announcer_opts d = {0};
    assert_int_equal(announcer_backoff_ms(&d, 1), 15000);
    assert_int_equal(announcer_backoff_ms(&d, 30), 30u * 60 * 1000);
}

static void completed_then_stopped_events(void **state)
{
    (void)state;
    static const struct script s[] = {{"http://a/announce", OK, 1, 0},
                                      {"http://b/announce", HANG, 0, 0}};
    const char *urls[] = {"http://a/announce", NULL, "http://b/announce", NULL, NULL};
    struct announcer_opts o = {.all_tiers = true, .stop_timeout_ms = 50};
    struct world w;
    setup_world(&w, s, 2, urls, &o);
    announcer_start(w.a);
    run_until_events(&w, 1, 2000);
    assert_true(state_of(&w, "http://a/announce")->started_sent);
    announcer_completed(w.a);
    run_until_events(&w, 2, 2000);
    assert_int_equal(w.fake.sent[w.fake.nsent - 1].event, TR_EVENT_COMPLETED);
    assert_true(state_of(&w, "http://a/announce")->completed_sent);
    /* b hangs: stop cancels it, sends 'stopped' only to a, and finishes. */
    size_t before = w.fake.nsent;
    announcer_stop(w.a, on_stopped, &w);
    while (!w.stopped)
        uv_run(&w.loop, UV_RUN_DEFAULT);
    assert_int_equal(w.fake.nsent, before + 1);
    assert_string_equal(w.fake.sent[before].url, "http://a/announce");
    assert_int_equal(w.fake.sent[before].event, TR_EVENT_STOPPED);
    teardown_world(&w);
}

static void stop_deadline_when_tracker_never_answers(void **state)
{
    (void)state;
    static const struct script s[] = {{"http://a/announce", OK, 1, 0}};
    static struct script hang[] = {{"http://a/announce", HANG, 0, 0}};
    const char *urls[] = {"http://a/announce", NULL, NULL};
    struct announcer_opts o = {.stop_timeout_ms = 60};
    struct world w;
    setup_world(&w, s, 1, urls, &o);
    announcer_start(w.a);
    run_until_events(&w, 1, 2000);
    w.fake.script = hang; /* 'stopped' will never be answered */
    uint64_t t0 = uv_now(&w.loop);
    announcer_stop(w.a, on_stopped, &w);
    while (!w.stopped)
        uv_run(&w.loop, UV_RUN_DEFAULT);
    uint64_t took = uv_now(&w.loop) - t0;
    assert_true(took >= 55 && took < 1000);
    assert_non_null(strstr(state_of(&w, "http://a/announce")->error, "deadline"));
    teardown_world(&w);
}

/* A tracker answering 'interval 1' is not announced to every second: the next announce is at
 * least a minute away, and none goes out in the next 2.5 s. */
static void tiny_interval_is_raised(void **state)
{
    (void)state;
    static const struct script s[] = {{"http://a/announce", OK, 5, 1}};
    const char *urls[] = {"http://a/announce", NULL, NULL};
    struct announcer_opts o = {0};
    struct world w;
    setup_world(&w, s, 1, urls, &o);
    announcer_start(w.a);
    run_until_events(&w, 1, 2000);
    const struct tracker_state *a = state_of(&w, "http://a/announce");
    assert_int_equal(a->status, TS_WORKING);
    assert_int_equal(a->interval, 1);
    assert_true(a->next_ms >= a->sent_ms + 60000);
    /* nothing more in 2.5 s (with interval 1 that would be two or three announces) */
    w.target = 0;
    uv_timer_t guard;
    uv_timer_init(&w.loop, &guard);
    uv_timer_start(&guard, on_guard, 2500, 0);
    uv_run(&w.loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&w.loop, UV_RUN_NOWAIT);
    assert_int_equal(w.fake.nsent, 1);
    assert_int_equal(w.events, 1);
    teardown_world(&w);
}

static void unsupported_url_fails_fast_and_moves_on(void **state)
{
    (void)state;
    static const struct script s[] = {{"http://b/announce", OK, 1, 0}};
    const char *urls[] = {"wss://a/announce", NULL, "http://b/announce", NULL, NULL};
    struct world w;
    setup_world(&w, s, 1, urls, NULL);
    announcer_start(w.a);
    run_until_events(&w, 2, 2000);
    assert_int_equal(state_of(&w, "http://b/announce")->status, TS_WORKING);
    assert_non_null(strstr(state_of(&w, "wss://a/announce")->error, "unsupported"));
    teardown_world(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dead_first_tier_falls_through_to_second),
        cmocka_unit_test(responding_tracker_moves_to_front),
        cmocka_unit_test(working_first_tier_keeps_lower_tiers_idle_unless_all_tiers),
        cmocka_unit_test(failed_tracker_is_retried_after_backoff),
        cmocka_unit_test(backoff_doubles_and_caps),
        cmocka_unit_test(completed_then_stopped_events),
        cmocka_unit_test(stop_deadline_when_tracker_never_answers),
        cmocka_unit_test(unsupported_url_fails_fast_and_moves_on),
        cmocka_unit_test(tiny_interval_is_raised),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
