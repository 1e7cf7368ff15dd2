/* Unit tests for src/session/limits: token buckets, the waiter queue and the rate meter, on a
 * simulated clock. A small event loop stands in for libuv: consumers take, wait in the queue (or
 * poll with limit_wait_ms), and the sched's timer fires when it asked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session/limits.h"

#define KIB 1024ull
#define MIB (1024ull * 1024)
#define NEVER LIMIT_NEVER
#define MAX_CONSUMERS 16
#define MAX_SECONDS 64

/* ---- the simulation ---- */

struct sim;

struct consumer {
    struct limit_waiter w;
    struct limit_chain chain;
    struct sim *sim;
    uint64_t next; /* when it next tries; NEVER while queued */
    size_t min_want, max_want;
    unsigned think; /* ms between a grant and the next try */
    bool poll;      /* retry after limit_wait_ms instead of queueing */
    uint64_t got;
    uint64_t per_s[MAX_SECONDS];
};

struct sim {
    struct limit_sched q;
    uint64_t now;
    uint64_t timer; /* when the sched asked to run; NEVER */
    struct consumer c[MAX_CONSUMERS];
    size_t n;
    uint64_t rng;
    unsigned runs, idle_runs;
};

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void arm(void *ud, uint64_t delay)
{
    struct sim *s = ud;
    s->timer = delay == NEVER ? NEVER : s->now + delay;
}

static void record(struct consumer *c, size_t n)
{
    c->got += n;
    uint64_t sec = c->sim->now / 1000;
    if (sec < MAX_SECONDS)
        c->per_s[sec] += n;
}

static void on_grant(struct limit_waiter *w, size_t n)
{
    struct consumer *c = w->data;
    assert_int_equal(w->state, LIMIT_IDLE);
    assert_true(n > 0 && n <= w->want && n <= limit_quantum(&w->chain));
    record(c, n);
    c->next = c->sim->now + c->think;
}

static void sim_init(struct sim *s, uint64_t seed)
{
    memset(s, 0, sizeof(*s));
    s->rng = seed;
    s->timer = NEVER;
    limit_sched_init(&s->q, arm, s);
}

static struct consumer *sim_add(struct sim *s, struct limit_bucket *inner,
                                struct limit_bucket *outer, size_t min_want, size_t max_want)
{
    assert_true(s->n < MAX_CONSUMERS);
    struct consumer *c = &s->c[s->n++];
    memset(c, 0, sizeof(*c));
    limit_waiter_init(&c->w);
    c->chain.level[0] = inner;
    c->chain.level[1] = outer;
    c->sim = s;
    c->next = s->now;
    c->min_want = min_want;
    c->max_want = max_want;
    return c;
}

static void step(struct sim *s, struct consumer *c)
{
    size_t want = c->min_want + (size_t)(rnd(&s->rng) % (c->max_want - c->min_want + 1));
    size_t g = limit_take(&c->chain, want, s->now);
    assert_true(g <= want);
    if (g > 0) {
        record(c, g);
        c->next = s->now + c->think;
    } else if (c->poll) {
        uint64_t d = limit_wait_ms(&c->chain, want, s->now);
        c->next = s->now + (d > 0 ? d : 1);
    } else {
        c->next = NEVER;
        limit_wait(&s->q, &c->w, &c->chain, want, s->now, on_grant, c);
    }
}

/* Runs the loop until end (exclusive): the sched's timer first, then every consumer due. */
static void sim_run(struct sim *s, uint64_t end)
{
    for (;;) {
        uint64_t t = s->timer;
        for (size_t i = 0; i < s->n; i++)
            if (s->c[i].next < t)
                t = s->c[i].next;
        if (t >= end)
            break;
        s->now = t;
        if (s->timer <= t) {
            uint64_t before = 0, after = 0;
            for (size_t i = 0; i < s->n; i++)
                before += s->c[i].got;
            s->timer = NEVER;
            limit_sched_run(&s->q, t);
            for (size_t i = 0; i < s->n; i++)
                after += s->c[i].got;
            s->runs++;
            s->idle_runs += after == before;
        }
        for (size_t i = 0; i < s->n; i++)
            if (s->c[i].next <= t)
                step(s, &s->c[i]);
    }
    s->now = end;
}

static uint64_t sim_total(const struct sim *s)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < s->n; i++)
        sum += s->c[i].got;
    return sum;
}

static void sim_cancel_all(struct sim *s)
{
    for (size_t i = 0; i < s->n; i++)
        limit_cancel(&s->q, &s->c[i].w);
}

static double ratio(uint64_t got, uint64_t expected)
{
    return (double)got / (double)expected;
}

/* ---- accuracy ---- */

/* Greedy consumers with random request sizes (1 B .. max_want) saturate one bucket, queueing
 * (or polling with limit_wait_ms) when refused. From a fresh (empty) bucket the total never
 * exceeds rate * T and falls short by at most a quantum; no whole second passes more than
 * rate + burst. */
static void run_accuracy(uint64_t rate, uint64_t seconds, size_t consumers, bool poll,
                         unsigned think, size_t max_want, uint64_t seed)
{
    struct sim s;
    struct limit_bucket b;
    sim_init(&s, seed);
    limit_bucket_init(&b, rate, 0);
    for (size_t i = 0; i < consumers; i++) {
        struct consumer *c = sim_add(&s, &b, NULL, 1, max_want);
        c->poll = poll;
        c->think = think;
    }
    sim_run(&s, seconds * 1000);
    uint64_t expected = rate * seconds;
    uint64_t got = sim_total(&s);
    double r = ratio(got, expected);
    if (r > 1.0 || r < 0.99 || getenv("RV_TEST_VERBOSE"))
        print_message("rate %llu, %llu s, %zu consumers%s: %.4f of the limit\n",
                      (unsigned long long)rate, (unsigned long long)seconds, consumers,
                      poll ? " (polling)" : "", r);
    assert_true(got <= expected);
    assert_true(r >= 0.99);
    for (uint64_t sec = 0; sec < seconds; sec++) {
        uint64_t in_s = 0;
        for (size_t i = 0; i < s.n; i++)
            in_s += s.c[i].per_s[sec];
        assert_true(in_s <= rate + b.burst);
        /* and saturated: each second after the first (what is still in the bucket at a
         * second's end is up to a quantum plus a wake-up's worth) */
        if (sec > 0 && rate >= MIB)
            assert_true(in_s >= rate - rate / 20);
    }
    sim_cancel_all(&s);
    assert_int_equal(b.waiting, 0);
}

static void test_accuracy_10s(void **state)
{
    (void)state;
    const uint64_t rates[] = {100 * KIB, 300 * KIB, MIB, 10 * MIB, 100 * MIB};
    for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
        run_accuracy(rates[i], 10, 1, false, 0, 4 * MIB, 11 + i);
        run_accuracy(rates[i], 10, 4, false, 0, 4 * MIB, 21 + i);
        run_accuracy(rates[i], 10, 3, false, 1, 4 * MIB, 31 + i);
        run_accuracy(rates[i], 10, 3, true, 0, 128 * KIB, 41 + i);
        if (rates[i] <= 10 * MIB) /* small requests: 4 x 32 KiB a turn is 25 MiB/s */
            run_accuracy(rates[i], 10, 4, false, 0, 64 * KIB, 71 + i);
    }
}

static void test_accuracy_30s(void **state)
{
    (void)state;
    const uint64_t rates[] = {100 * KIB, 1 * MIB, 25 * MIB, 100 * MIB};
    for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
        run_accuracy(rates[i], 30, 5, false, 0, 4 * MIB, 51 + i);
        run_accuracy(rates[i], 30, 2, true, 0, 128 * KIB, 61 + i);
    }
}

/* The queue's timer stays cheap: at most one wake-up per LIMIT_WAKE_MIN_MS, few of them idle. */
static void test_wakeups(void **state)
{
    (void)state;
    struct sim s;
    struct limit_bucket b;
    sim_init(&s, 7);
    limit_bucket_init(&b, 100 * MIB, 0);
    for (int i = 0; i < 8; i++)
        sim_add(&s, &b, NULL, 16 * KIB, 4 * MIB);
    sim_run(&s, 10000);
    assert_true(s.runs <= 10000 / LIMIT_WAKE_MIN_MS + 1);
    assert_int_equal(s.idle_runs, 0); /* the sched only wakes when someone can move */
    assert_true(ratio(sim_total(&s), 100 * MIB * 10) >= 0.99);
    sim_cancel_all(&s);
}

/* ---- bursts ---- */

static void test_burst_bounded(void **state)
{
    (void)state;
    struct limit_bucket b;
    struct limit_chain ch = {{&b, NULL}};
    limit_bucket_init(&b, MIB, 0);
    assert_int_equal(b.burst, MIB / 10);
    /* a fresh bucket is empty */
    assert_int_equal(limit_take(&ch, 64 * KIB, 0), 0);
    /* idle for a minute: no more than the burst at once */
    size_t got = 0, g;
    while ((g = limit_take(&ch, 7 * KIB, 60000)) > 0)
        got += g;
    assert_int_equal(got, MIB / 10);
    /* then the rate: over the next second, polling every ms, rate bytes (no more) */
    got = 0;
    for (uint64_t t = 60001; t <= 61000; t++)
        while ((g = limit_take(&ch, 100 * KIB, t)) > 0)
            got += g;
    assert_int_equal(got, MIB);

    /* a small rate keeps a burst of at least LIMIT_BURST_MIN (a few quanta) */
    limit_bucket_init(&b, 1000, 0);
    assert_int_equal(b.burst, LIMIT_BURST_MIN);
    assert_int_equal(limit_take(&ch, SIZE_MAX, 3600000), LIMIT_BURST_MIN);

    /* an explicit burst */
    limit_bucket_init(&b, MIB, 0);
    limit_bucket_set_burst(&b, 10 * KIB, 0);
    assert_int_equal(limit_take(&ch, SIZE_MAX, 5000), 10 * KIB);
    limit_bucket_set_rate(&b, 2 * MIB, 5000); /* a set burst survives a rate change */
    assert_int_equal(b.burst, 10 * KIB);
    limit_bucket_set_burst(&b, 0, 5000);
    assert_int_equal(b.burst, 2 * MIB / 10);
}

/* Debt: bytes charged after the fact hold back later grants until paid. */
static void test_charge_and_refund(void **state)
{
    (void)state;
    struct limit_bucket b;
    struct limit_chain ch = {{&b, NULL}};
    limit_bucket_init(&b, 100 * KIB, 0);
    limit_charge(&ch, 300 * KIB, 0);                      /* three seconds' worth */
    assert_int_equal(limit_wait_ms(&ch, 1, 0), 3000 + 1); /* 1 byte = 10 ms / 1024 */
    assert_int_equal(limit_bucket_available(&b, 2999), 0);
    assert_int_equal(limit_take(&ch, KIB, 3000), 0);
    assert_int_equal(limit_take(&ch, KIB, 3010), KIB);
    /* a refund comes back, up to the burst */
    limit_refund(&ch, KIB, 3010);
    assert_int_equal(limit_bucket_available(&b, 3010), KIB);
    limit_refund(&ch, 10 * MIB, 3010);
    assert_int_equal(limit_bucket_available(&b, 3010), b.burst);
    /* absurd charges saturate rather than wrap */
    limit_charge(&ch, SIZE_MAX, 3010);
    limit_charge(&ch, SIZE_MAX, 3010);
    assert_int_equal(limit_bucket_available(&b, 100000000000000ull), b.burst);
}

/* ---- unlimited ---- */

static int grants_seen;
static size_t last_grant;

static void count_grant(struct limit_waiter *w, size_t n)
{
    (void)w;
    grants_seen++;
    last_grant = n;
}

static void test_unlimited(void **state)
{
    (void)state;
    struct limit_bucket t, g;
    limit_bucket_init(&t, 0, 0);
    limit_bucket_init(&g, 0, 0);
    const struct limit_chain none = {{NULL, NULL}}, zero = {{&t, &g}}, half = {{NULL, &g}};
    const struct limit_chain *chains[] = {&none, &zero, &half};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(limit_take(chains[i], SIZE_MAX, 0), SIZE_MAX);
        assert_int_equal(limit_take(chains[i], 123456789, 1), 123456789);
        assert_int_equal(limit_wait_ms(chains[i], SIZE_MAX, 1), 0);
        assert_int_equal(limit_quantum(chains[i]), SIZE_MAX);
        limit_charge(chains[i], 1u << 30, 1); /* no effect */
        assert_int_equal(limit_take(chains[i], 1u << 30, 1), 1u << 30);
    }
    assert_int_equal(limit_bucket_available(&g, 5), UINT64_MAX);
    /* a waiter on an unlimited chain is served on the next run, in full */
    struct sim s;
    sim_init(&s, 1);
    struct limit_waiter w;
    limit_waiter_init(&w);
    grants_seen = 0;
    limit_wait(&s.q, &w, &zero, 5 * MIB, 0, count_grant, NULL);
    assert_true(limit_waiter_is_queued(&w));
    assert_int_equal(s.timer, 0);
    assert_int_equal(limit_sched_run(&s.q, 0), NEVER);
    assert_int_equal(grants_seen, 1);
    assert_int_equal(last_grant, 5 * MIB);
    assert_false(limit_waiter_is_queued(&w));
    assert_int_equal(s.timer, NEVER);
    /* and greedy consumers on an unlimited chain get everything they ask for */
    sim_init(&s, 2);
    for (int i = 0; i < 3; i++)
        sim_add(&s, &t, &g, 64 * KIB, 64 * KIB)->think = 1;
    sim_run(&s, 1000);
    assert_int_equal(sim_total(&s), 3 * 1000 * 64 * KIB);
}

/* ---- hierarchy ---- */

static uint64_t saturate(struct limit_bucket *inner, struct limit_bucket *outer, size_t n,
                         uint64_t ms)
{
    struct sim s;
    sim_init(&s, 99);
    for (size_t i = 0; i < n; i++)
        sim_add(&s, inner, outer, 1, 64 * KIB);
    sim_run(&s, ms);
    sim_cancel_all(&s);
    return sim_total(&s);
}

static void test_hierarchy_lower_wins(void **state)
{
    (void)state;
    struct limit_bucket t, g;
    limit_bucket_init(&t, 300 * KIB, 0);
    limit_bucket_init(&g, MIB, 0);
    double r = ratio(saturate(&t, &g, 3, 10000), 300 * KIB * 10);
    assert_true(r >= 0.99 && r <= 1.0);
    limit_bucket_init(&t, 2 * MIB, 0);
    limit_bucket_init(&g, MIB, 0);
    r = ratio(saturate(&t, &g, 3, 10000), MIB * 10);
    assert_true(r >= 0.99 && r <= 1.0);
    /* either order of levels, either level NULL */
    limit_bucket_init(&g, 700 * KIB, 0);
    r = ratio(saturate(NULL, &g, 2, 10000), 700 * KIB * 10);
    assert_true(r >= 0.99 && r <= 1.0);
    limit_bucket_init(&t, 700 * KIB, 0);
    r = ratio(saturate(&t, NULL, 2, 10000), 700 * KIB * 10);
    assert_true(r >= 0.99 && r <= 1.0);
    /* a grant takes from both levels at once */
    limit_bucket_init(&t, 100 * KIB, 0); /* burst 10 KiB */
    limit_bucket_init(&g, MIB, 0);
    struct limit_chain ch = {{&t, &g}};
    assert_int_equal(limit_take(&ch, SIZE_MAX, 1000), 10 * KIB);
    assert_int_equal(limit_bucket_available(&t, 1000), 0);
    assert_int_equal(limit_bucket_available(&g, 1000), MIB / 10 - 10 * KIB);
}

/* Two torrents under one global limit: equal shares when both saturate with as many peers;
 * a torrent held down by its own limit leaves the rest to the other. */
static void test_two_torrents_share(void **state)
{
    (void)state;
    struct limit_bucket ta, tb, g;
    limit_bucket_init(&ta, 0, 0);
    limit_bucket_init(&tb, 0, 0);
    limit_bucket_init(&g, MIB, 0);
    struct sim s;
    sim_init(&s, 5);
    for (int i = 0; i < 3; i++) {
        sim_add(&s, &ta, &g, 1, 64 * KIB);
        sim_add(&s, &tb, &g, 1, 64 * KIB);
    }
    sim_run(&s, 10000);
    uint64_t a = s.c[0].got + s.c[2].got + s.c[4].got, b = s.c[1].got + s.c[3].got + s.c[5].got;
    assert_true(ratio(a + b, 10 * MIB) >= 0.99 && a + b <= 10 * MIB);
    assert_true(ratio(a, (a + b) / 2) >= 0.95 && ratio(a, (a + b) / 2) <= 1.05);
    sim_cancel_all(&s);

    /* A limited to 200 KiB/s by its own bucket, B not: B gets the other 824 KiB/s */
    limit_bucket_init(&ta, 200 * KIB, 0);
    limit_bucket_init(&tb, 0, 0);
    limit_bucket_init(&g, MIB, 0);
    sim_init(&s, 6);
    for (int i = 0; i < 4; i++) {
        sim_add(&s, &ta, &g, 1, 64 * KIB);
        sim_add(&s, &tb, &g, 1, 64 * KIB);
    }
    sim_run(&s, 10000);
    a = s.c[0].got + s.c[2].got + s.c[4].got + s.c[6].got;
    b = s.c[1].got + s.c[3].got + s.c[5].got + s.c[7].got;
    assert_true(ratio(a, 200 * KIB * 10) >= 0.99 && a <= 200 * KIB * 10);
    assert_true(ratio(b, (MIB - 200 * KIB) * 10) >= 0.98);
    assert_true(a + b <= 10 * MIB);
    sim_cancel_all(&s);
    assert_int_equal(ta.waiting + tb.waiting + g.waiting, 0);

    /* shares are per connection: 8 peers against 2 take 80 % */
    limit_bucket_init(&ta, 0, 0);
    limit_bucket_init(&tb, 0, 0);
    limit_bucket_init(&g, MIB, 0);
    sim_init(&s, 8);
    for (int i = 0; i < 10; i++)
        sim_add(&s, i < 8 ? &ta : &tb, &g, 16 * KIB, 8 * MIB);
    sim_run(&s, 10000);
    b = s.c[8].got + s.c[9].got;
    a = sim_total(&s) - b;
    assert_true(ratio(a, 8 * MIB) >= 0.98 && ratio(a, 8 * MIB) <= 1.0);
    assert_true(ratio(b, 2 * MIB) >= 0.98 && ratio(b, 2 * MIB) <= 1.02);
    sim_cancel_all(&s);
}

/* ---- fairness ---- */

static void check_fair(struct sim *s, double tolerance)
{
    uint64_t sum = sim_total(s);
    double mean = (double)sum / (double)s->n, worst = 0;
    for (size_t i = 0; i < s->n; i++) {
        double d = (double)s->c[i].got / mean - 1.0;
        if (d < 0)
            d = -d;
        if (d > worst)
            worst = d;
    }
    if (worst > tolerance || getenv("RV_TEST_VERBOSE"))
        print_message("worst consumer %.1f %% from the mean\n", worst * 100);
    assert_true(worst <= tolerance);
}

/* Ten greedy consumers on one bucket, of mixed speeds: some come back for more at once, some
 * 1 or 2 ms after a grant. Each asks for a random size of at least a turn (the recipe asks for
 * SIZE_MAX): turns are equal, so shares are equal within a couple of percent. */
static void test_fairness(void **state)
{
    (void)state;
    const uint64_t rates[] = {100 * KIB, 2 * MIB, 50 * MIB, 100 * MIB};
    for (size_t r = 0; r < 4; r++) {
        struct limit_bucket b;
        struct sim s;
        limit_bucket_init(&b, rates[r], 0);
        sim_init(&s, 1000 + r);
        for (int i = 0; i < 10; i++) {
            struct consumer *c = sim_add(&s, &b, NULL, 0, 8 * MIB);
            c->min_want = limit_quantum(&c->chain);
            c->think = (unsigned)(i % 3);
        }
        sim_run(&s, 10000);
        assert_true(ratio(sim_total(&s), rates[r] * 10) >= 0.99);
        check_fair(&s, 0.03);
        sim_cancel_all(&s);
    }
    /* small random requests (1 B .. 64 KiB, a read's worth): a turn grants the request, so
     * shares even out over the many turns of 10 s */
    struct limit_bucket b;
    struct sim s;
    limit_bucket_init(&b, 50 * MIB, 0);
    sim_init(&s, 1002);
    for (int i = 0; i < 10; i++)
        sim_add(&s, &b, NULL, 1, 64 * KIB)->think = (unsigned)(i % 3);
    sim_run(&s, 10000);
    assert_true(ratio(sim_total(&s), 50 * MIB * 10) >= 0.99);
    check_fair(&s, 0.10);
    sim_cancel_all(&s);

    /* under a global limit, ten consumers over two torrents (one with a looser limit of its
     * own) */
    struct limit_bucket ta, tb, g;
    limit_bucket_init(&ta, 0, 0);
    limit_bucket_init(&tb, 4 * MIB, 0);
    limit_bucket_init(&g, MIB, 0);
    sim_init(&s, 77);
    for (int i = 0; i < 10; i++)
        sim_add(&s, i % 2 ? &ta : &tb, &g, 16 * KIB, 8 * MIB)->think = (unsigned)(i % 3);
    sim_run(&s, 10000);
    assert_true(ratio(sim_total(&s), MIB * 10) >= 0.99);
    check_fair(&s, 0.03);
    sim_cancel_all(&s);
}

/* ---- runtime changes ---- */

static void test_rate_change(void **state)
{
    (void)state;
    struct limit_bucket b;
    struct sim s;
    limit_bucket_init(&b, MIB, 0);
    sim_init(&s, 3);
    for (int i = 0; i < 4; i++)
        sim_add(&s, &b, NULL, 1, 64 * KIB);
    sim_run(&s, 10000);
    uint64_t p1 = sim_total(&s);
    assert_true(ratio(p1, 10 * MIB) >= 0.99 && p1 <= 10 * MIB);

    /* slower: the new rate from now on (plus at most one burst carried over) */
    limit_bucket_set_rate(&b, 256 * KIB, s.now);
    limit_sched_run(&s.q, s.now);
    sim_run(&s, 20000);
    uint64_t p2 = sim_total(&s) - p1;
    assert_true(ratio(p2, 2560 * KIB) >= 0.99 && p2 <= 2560 * KIB + b.burst);

    /* lifted: the queue drains at once and everything passes */
    limit_bucket_set_rate(&b, 0, s.now);
    assert_int_equal(limit_quantum(&s.c[0].chain), SIZE_MAX);
    limit_sched_run(&s.q, s.now);
    for (size_t i = 0; i < s.n; i++) {
        assert_false(limit_waiter_is_queued(&s.c[i].w));
        s.c[i].think = 1;
    }
    sim_run(&s, 21000);
    uint64_t p3 = sim_total(&s) - p1 - p2;
    assert_true(p3 >= 4 * 999 * KIB); /* at least 1 KiB per ms each */
    assert_int_equal(b.waiting, 0);

    /* limited again: starts empty, holds the new rate */
    limit_bucket_set_rate(&b, 512 * KIB, s.now);
    for (size_t i = 0; i < s.n; i++)
        s.c[i].think = 0;
    sim_run(&s, 31000);
    uint64_t p4 = sim_total(&s) - p1 - p2 - p3;
    assert_true(ratio(p4, 5120 * KIB) >= 0.99 && p4 <= 5120 * KIB);

    /* faster, with waiters queued: they get the new quantum at once */
    limit_bucket_set_rate(&b, 8 * MIB, s.now);
    limit_sched_run(&s.q, s.now);
    sim_run(&s, 41000);
    uint64_t p5 = sim_total(&s) - p1 - p2 - p3 - p4;
    assert_true(ratio(p5, 80 * MIB) >= 0.99 && p5 <= 80 * MIB);
    sim_cancel_all(&s);
}

/* ---- wait_ms ---- */

static void test_wait_ms(void **state)
{
    (void)state;
    struct limit_bucket t, g;
    struct limit_chain ch = {{&t, &g}};
    limit_bucket_init(&t, 1000, 0); /* 1 byte per ms; quantum LIMIT_QUANTUM_MIN */
    limit_bucket_init(&g, 0, 0);
    assert_int_equal(limit_quantum(&ch), LIMIT_QUANTUM_MIN);
    assert_int_equal(limit_wait_ms(&ch, 500, 0), 500);
    assert_int_equal(limit_wait_ms(&ch, 500, 200), 300);
    assert_int_equal(limit_take(&ch, 500, 499), 499);
    assert_int_equal(limit_wait_ms(&ch, 500, 499), 500);
    assert_int_equal(limit_wait_ms(&ch, 1, 500), 0);
    /* capped at a quantum: a 1 MiB request waits for 1 KiB, not for 1 MiB (or the burst) */
    assert_int_equal(limit_wait_ms(&ch, MIB, 500), LIMIT_QUANTUM_MIN - 1);
    assert_int_equal(limit_wait_ms(&ch, 0, 500), 0);
    /* the slowest level decides */
    limit_bucket_set_rate(&g, 250, 499); /* a new limit starts empty: 4 ms per byte */
    assert_int_equal(limit_wait_ms(&ch, 100, 499), 400);
    assert_int_equal(limit_take(&ch, 100, 898), 99);
    assert_int_equal(limit_wait_ms(&ch, 100, 898), 397); /* 99.25 bytes at 0.25 B/ms */
    /* fractions are kept: 3 bytes/s gives exactly 3 bytes per second, a byte each 334 ms */
    limit_bucket_init(&t, 3, 0);
    struct limit_chain one = {{&t, NULL}};
    assert_int_equal(limit_wait_ms(&one, 1, 0), 334);
    size_t got = 0;
    for (uint64_t ms = 1; ms <= 10000; ms++)
        got += limit_take(&one, 1, ms);
    assert_int_equal(got, 30);
    /* the quantum: 20 ms of the outermost limit, at most half of any level's burst */
    limit_bucket_init(&t, MIB, 0);
    assert_int_equal(limit_quantum(&one), MIB * LIMIT_QUANTUM_MS / 1000);
    limit_bucket_init(&t, 100 * MIB, 0);
    assert_int_equal(limit_quantum(&one), 100 * MIB * LIMIT_QUANTUM_MS / 1000);
    assert_int_equal(limit_wait_ms(&one, SIZE_MAX, 0), LIMIT_QUANTUM_MS);
    limit_bucket_init(&g, MIB, 0);
    struct limit_chain two = {{&t, &g}};
    limit_bucket_init(&t, 10 * MIB, 0); /* inner faster than outer: the outer sets it */
    assert_int_equal(limit_quantum(&two), MIB * LIMIT_QUANTUM_MS / 1000);
    limit_bucket_init(&t, 100 * KIB, 0); /* inner burst 10 KiB: 5 KiB */
    assert_int_equal(limit_quantum(&two), 5 * KIB);
    limit_bucket_set_burst(&t, 1, 0);
    assert_int_equal(limit_quantum(&two), 1);
}

/* ---- the queue ---- */

/* limit_sched_next_ms is exact: a run at that time grants something, a run before it would
 * not. Random chains over several buckets, waiters of random sizes. */
static int pool_granted;

static void pool_grant(struct limit_waiter *w, size_t n)
{
    (void)w;
    (void)n;
    pool_granted++;
}

static unsigned snap_taken[64];
static enum limit_waiter_state snap_state[64];

static void snapshot(const struct limit_waiter *ws, int n)
{
    for (int i = 0; i < n; i++) {
        snap_taken[i] = ws[i].taken;
        snap_state[i] = ws[i].state;
    }
}

/* A level taken or a grant made since the snapshot. */
static bool moved(const struct limit_waiter *ws, int n)
{
    for (int i = 0; i < n; i++)
        if (snap_state[i] == LIMIT_QUEUED &&
            (ws[i].state != LIMIT_QUEUED || ws[i].taken != snap_taken[i]))
            return true;
    return false;
}

static void test_next_ms_exact(void **state)
{
    (void)state;
    enum { NB = 5, NW = 40 };
    struct limit_bucket b[NB];
    struct limit_waiter ws[NW];
    struct limit_chain ch[NW];
    const uint64_t rates[NB] = {0, 3 * KIB, 50 * KIB, 700 * KIB, 13 * MIB};
    uint64_t rng = 12345, now = 0;
    struct limit_sched q;
    limit_sched_init(&q, NULL, NULL);
    for (int i = 0; i < NB; i++)
        limit_bucket_init(&b[i], rates[i], 0);
    for (int i = 0; i < NW; i++) {
        limit_waiter_init(&ws[i]);
        uint64_t x = rnd(&rng);
        ch[i].level[0] = x % 3 == 0 ? NULL : &b[1 + x % 4];
        ch[i].level[1] = x % 5 == 0 ? NULL : &b[(x >> 8) % NB];
    }
    for (int round = 0; round < 3000; round++) {
        /* top the queue up */
        for (int i = 0; i < NW; i++)
            if (!limit_waiter_is_queued(&ws[i]) && rnd(&rng) % 4 == 0)
                limit_wait(&q, &ws[i], &ch[i], 1 + (size_t)(rnd(&rng) % (200 * KIB)), now,
                           pool_grant, NULL);
        uint64_t d = limit_sched_next_ms(&q, now);
        if (d == NEVER) {
            assert_int_equal(q.queued, 0);
            continue;
        }
        if (d > 0) {
            /* a millisecond early: nothing moves */
            snapshot(ws, NW);
            limit_sched_run(&q, now + d - 1);
            assert_false(moved(ws, NW));
        }
        now += d;
        snapshot(ws, NW);
        limit_sched_run(&q, now);
        assert_true(moved(ws, NW));
        /* sometimes someone leaves */
        if (rnd(&rng) % 3 == 0)
            limit_cancel(&q, &ws[rnd(&rng) % NW]);
    }
    for (int i = 0; i < NW; i++)
        limit_cancel(&q, &ws[i]);
    assert_int_equal(q.queued, 0);
    for (int i = 0; i < NB; i++)
        assert_int_equal(b[i].waiting, 0);
}

/* Waiters never served are served in the order they came; a large one is not overtaken. */
static int order[8], norder;

static void note_order(struct limit_waiter *w, size_t n)
{
    (void)n;
    order[norder++] = *(int *)w->data;
}

static void test_fifo(void **state)
{
    (void)state;
    struct limit_bucket b;
    struct limit_chain ch = {{&b, NULL}};
    struct limit_sched q;
    struct limit_waiter w[4];
    int id[4] = {0, 1, 2, 3};
    limit_bucket_init(&b, 10 * KIB, 0); /* quantum 1 KiB, burst 4 KiB */
    limit_sched_init(&q, NULL, NULL);
    norder = 0;
    for (int i = 0; i < 4; i++) {
        limit_waiter_init(&w[i]);
        limit_wait(&q, &w[i], &ch, i == 0 ? 900 : 100, 0, note_order, &id[i]);
    }
    /* queued waiters close the fast path */
    assert_int_equal(limit_take(&ch, 1, 0), 0);
    /* at 60 ms the bucket holds 614 bytes: enough for 1..3 but 0 comes first */
    assert_int_equal(limit_sched_run(&q, 60), 88 - 60); /* 900 bytes at 10.24 B/ms */
    assert_int_equal(norder, 0);
    limit_sched_run(&q, 88);
    assert_int_equal(norder, 1);
    assert_int_equal(order[0], 0);
    limit_sched_run(&q, 88 + 30);
    assert_int_equal(norder, 4);
    assert_int_equal(order[1], 1);
    assert_int_equal(order[2], 2);
    assert_int_equal(order[3], 3);
    assert_int_equal(limit_sched_run(&q, 200), NEVER);
    assert_int_equal(b.waiting, 0);
    /* contended until the bucket fills again: the fast path stays closed till then */
    assert_int_equal(limit_take(&ch, 1, 300), 0);
    assert_true(limit_take(&ch, 1, 1000) > 0);

    /* least recently served first: 0 (granted at 88) goes before 3 (granted at 118) */
    limit_wait(&q, &w[3], &ch, 100, 1000, note_order, &id[3]);
    limit_wait(&q, &w[0], &ch, 100, 1000, note_order, &id[0]);
    assert_ptr_equal(q.head, &w[0]);
    assert_ptr_equal(q.tail, &w[3]);
    limit_cancel(&q, &w[3]);
    limit_cancel(&q, &w[0]);

    /* a waiter already queued keeps its place and its request */
    limit_wait(&q, &w[0], &ch, 100, 200, note_order, &id[0]);
    limit_wait(&q, &w[1], &ch, 100, 200, note_order, &id[1]);
    limit_wait(&q, &w[0], &ch, 5000, 200, note_order, &id[0]);
    assert_int_equal(w[0].want, 100);
    assert_int_equal(q.queued, 2);
    assert_int_equal(b.waiting, 2);
    limit_cancel(&q, &w[0]);
    limit_cancel(&q, &w[0]);
    limit_cancel(&q, &w[1]);
    assert_int_equal(b.waiting, 0);
    assert_int_equal(q.queued, 0);
}

/* A callback that cancels a waiter granted in the same run: the grant is refunded and the
 * cancelled waiter's callback never runs. One that queues again goes to the back. */
static struct limit_sched *cq;
static struct limit_waiter cw[3];
static int ccalls[3];

static void cancel_next(struct limit_waiter *w, size_t n)
{
    (void)n;
    int i = (int)(w - cw);
    ccalls[i]++;
    if (i == 0)
        limit_cancel(cq, &cw[1]);
}

static void test_cancel_in_callback(void **state)
{
    (void)state;
    struct limit_bucket b;
    struct limit_chain ch = {{&b, NULL}};
    struct limit_sched q;
    struct sim s; /* for its arm hook */
    sim_init(&s, 1);
    limit_bucket_init(&b, 100 * KIB, 0); /* quantum 2 KiB */
    limit_sched_init(&q, arm, &s);
    cq = &q;
    memset(ccalls, 0, sizeof(ccalls));
    for (int i = 0; i < 3; i++) {
        limit_waiter_init(&cw[i]);
        limit_wait(&q, &cw[i], &ch, 1000, 0, cancel_next, NULL);
    }
    /* the timer was armed for the first waiter: 1000 bytes at 102.4 B/ms */
    assert_int_equal(s.timer, 10);
    s.now = 1000;
    limit_sched_run(&q, 1000); /* plenty for all three */
    assert_int_equal(ccalls[0], 1);
    assert_int_equal(ccalls[1], 0);
    assert_int_equal(ccalls[2], 1);
    assert_int_equal(limit_bucket_available(&b, 1000), b.burst - 2000);
    assert_int_equal(s.timer, NEVER);
    /* cancelling the last waiter disarms the timer */
    assert_int_equal(limit_take(&ch, SIZE_MAX, 1000), 0);       /* contended */
    assert_int_equal(limit_take(&ch, SIZE_MAX, 1100), b.burst); /* full: open again */
    s.now = 1100;
    limit_wait(&q, &cw[0], &ch, 1000, 1100, cancel_next, NULL);
    assert_int_equal(s.timer, 1110);
    assert_int_equal(limit_take(&ch, SIZE_MAX, 5000), 0); /* closed while queued */
    limit_cancel(&q, &cw[0]);
    assert_int_equal(s.timer, NEVER);
    assert_int_equal(b.waiting, 0);
}

/* ---- the meter ---- */

static void stream(struct limit_meter *m, uint64_t rate, uint64_t chunk, uint64_t from, uint64_t to,
                   uint64_t sample_from)
{
    /* chunk bytes at exact times: byte k is sent at from + k * 1000 / rate ms */
    uint64_t sent = 0;
    for (uint64_t t = from; t < to; t++) {
        uint64_t due = (t - from + 1) * rate / 1000;
        while (sent + chunk <= due) {
            limit_meter_add(m, chunk, t);
            sent += chunk;
        }
        if (t >= sample_from && t % 100 == 0) {
            double r = (double)limit_meter_rate(m, t) / (double)rate;
            if (r < 0.98 || r > 1.02)
                print_message("at %llu ms: %.4f of the true rate\n", (unsigned long long)t, r);
            assert_true(r >= 0.98 && r <= 1.02);
        }
    }
}

static void test_meter(void **state)
{
    (void)state;
    struct limit_meter m;
    const uint64_t rates[] = {50 * KIB, MIB, 100 * MIB};
    const uint64_t chunks[] = {KIB, 16 * KIB, 64 * KIB};
    for (int i = 0; i < 3; i++) {
        limit_meter_init(&m, 1000);
        stream(&m, rates[i], chunks[i], 1000, 21000, 2000);
        assert_true(m.total >= rates[i] * 20 - chunks[i]);
        /* stopped: falls, never rises, reaches 0 when the window has passed */
        uint64_t prev = limit_meter_rate(&m, 21000);
        uint64_t half = limit_meter_rate(&m, 21000 + LIMIT_METER_SLOTS * LIMIT_METER_SLOT_MS / 2);
        assert_true(half > rates[i] / 3 && half < rates[i] * 2 / 3);
        for (uint64_t t = 21000; t <= 30000; t += 50) {
            uint64_t r = limit_meter_rate(&m, t);
            assert_true(r <= prev);
            prev = r;
        }
        assert_int_equal(limit_meter_rate(&m, 21000 + LIMIT_METER_SLOTS * LIMIT_METER_SLOT_MS), 0);
        /* starts again after a long pause */
        limit_meter_add(&m, 1000, 100000);
        assert_true(limit_meter_rate(&m, 100000) > 0);
        stream(&m, rates[i], chunks[i], 100000, 110000, 100000 + 6000);
    }
    /* a young meter divides by its age, not by the whole window */
    limit_meter_init(&m, 0);
    stream(&m, MIB, 16 * KIB, 0, 3000, 1000);
    /* nothing at all */
    limit_meter_init(&m, 0);
    assert_int_equal(limit_meter_rate(&m, 0), 0);
    assert_int_equal(limit_meter_rate(&m, 123456), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accuracy_10s),
        cmocka_unit_test(test_accuracy_30s),
        cmocka_unit_test(test_wakeups),
        cmocka_unit_test(test_burst_bounded),
        cmocka_unit_test(test_charge_and_refund),
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_hierarchy_lower_wins),
        cmocka_unit_test(test_two_torrents_share),
        cmocka_unit_test(test_fairness),
        cmocka_unit_test(test_rate_change),
        cmocka_unit_test(test_wait_ms),
        cmocka_unit_test(test_next_ms_exact),
        cmocka_unit_test(test_fifo),
        cmocka_unit_test(test_cancel_in_callback),
        cmocka_unit_test(test_meter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
