/* Token buckets refilled lazily from the time passed in; a queue of waiters served a quantum per
 * turn, level by level, least recently served first; a sliding-window rate meter. Tokens are kept
 * in thousandths of a byte so that a refill of rate * ms / 1000 bytes is exact at every rate and no
 * fraction is ever lost. */
#include "session/limits.h"

#include <string.h>

#define MILLI 1000

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

static uint64_t default_burst(uint64_t rate)
{
    return max_u64(rate * LIMIT_BURST_MS / 1000, LIMIT_BURST_MIN);
}

static int64_t burst_milli(const struct limit_bucket *b)
{
    return (int64_t)(b->burst * MILLI);
}

/* Bytes as thousandths, saturated so that no count from a caller can overflow the tokens. */
static int64_t bytes_milli(uint64_t n)
{
    uint64_t cap = (uint64_t)INT64_MAX / (4 * MILLI);
    return (int64_t)(min_u64(n, cap) * MILLI);
}

static void refill(struct limit_bucket *b, uint64_t now)
{
    if (now <= b->last_ms)
        return; /* the same instant, or a clock that went back: nothing earned */
    uint64_t dt = now - b->last_ms;
    b->last_ms = now;
    if (b->rate == 0)
        return;
    /* rate bytes/s for dt ms is rate * dt thousandths of a byte: exact, nothing rounded away */
    int64_t cap = burst_milli(b);
    uint64_t add;
    if (b->tokens < cap) {
        if (__builtin_mul_overflow(b->rate, dt, &add) || add >= (uint64_t)(cap - b->tokens))
            b->tokens = cap;
        else
            b->tokens += (int64_t)add;
    }
    /* Full: demand fell below the rate, so the queue is no longer needed for fairness. */
    if (b->tokens >= cap && b->waiting == 0)
        b->contended = false;
}

static void take(struct limit_bucket *b, int64_t milli)
{
    /* debt saturates far above INT64_MIN: limit_charge of anything cannot wrap */
    int64_t lowest = -(INT64_MAX / 4);
    b->tokens = b->tokens - milli < lowest ? lowest : b->tokens - milli;
}

static void give(struct limit_bucket *b, int64_t milli)
{
    int64_t cap = burst_milli(b);
    b->tokens = b->tokens > cap - milli ? cap : b->tokens + milli;
}

void limit_bucket_init(struct limit_bucket *b, uint64_t rate, uint64_t now_ms)
{
    memset(b, 0, sizeof(*b));
    b->rate = min_u64(rate, LIMIT_RATE_MAX);
    b->burst = default_burst(b->rate);
    b->last_ms = now_ms;
}

void limit_bucket_set_rate(struct limit_bucket *b, uint64_t rate, uint64_t now_ms)
{
    refill(b, now_ms);
    bool was_limited = b->rate != 0;
    b->rate = min_u64(rate, LIMIT_RATE_MAX);
    if (!b->burst_set)
        b->burst = default_burst(b->rate);
    /* An unlimited bucket's tokens mean nothing: a new limit starts empty, like a new bucket. */
    if (!was_limited)
        b->tokens = 0;
    if (b->tokens > burst_milli(b))
        b->tokens = burst_milli(b);
    if (b->rate == 0)
        b->contended = false;
}

void limit_bucket_set_burst(struct limit_bucket *b, uint64_t burst, uint64_t now_ms)
{
    refill(b, now_ms);
    b->burst_set = burst != 0;
    b->burst = burst != 0 ? min_u64(burst, LIMIT_RATE_MAX) : default_burst(b->rate);
    if (b->tokens > burst_milli(b))
        b->tokens = burst_milli(b);
}

uint64_t limit_bucket_available(struct limit_bucket *b, uint64_t now_ms)
{
    if (b->rate == 0)
        return UINT64_MAX;
    refill(b, now_ms);
    return b->tokens > 0 ? (uint64_t)b->tokens / MILLI : 0;
}

/* ---- chains ---- */

/* Level i of the chain when it limits anything, else NULL. */
static struct limit_bucket *limited(const struct limit_chain *chain, size_t i)
{
    struct limit_bucket *b = chain->level[i];
    return b != NULL && b->rate != 0 ? b : NULL;
}

static uint64_t quantum_of(uint64_t rate)
{
    return max_u64(rate * LIMIT_QUANTUM_MS / 1000, LIMIT_QUANTUM_MIN);
}

/* The outermost limited level sets the size: everyone sharing it gets turns of one size, so
 * turns are fair in bytes. At most half of any level's burst, so that a level keeps filling
 * while its waiter is late for its turn rather than overflow. */
size_t limit_quantum(const struct limit_chain *chain)
{
    uint64_t q = UINT64_MAX;
    for (size_t i = LIMIT_LEVELS; i-- > 0;) {
        struct limit_bucket *b = limited(chain, i);
        if (b == NULL)
            continue;
        if (q == UINT64_MAX)
            q = quantum_of(b->rate);
        q = min_u64(q, max_u64(b->burst / 2, 1));
    }
    return q == UINT64_MAX || q > SIZE_MAX ? SIZE_MAX : (size_t)q;
}

size_t limit_take(const struct limit_chain *chain, size_t want, uint64_t now_ms)
{
    uint64_t grant = want;
    for (size_t i = 0; i < LIMIT_LEVELS; i++) {
        struct limit_bucket *b = limited(chain, i);
        if (b == NULL)
            continue;
        refill(b, now_ms);
        if (b->waiting > 0 || b->contended)
            return 0;
        grant = min_u64(grant, b->tokens > 0 ? (uint64_t)b->tokens / MILLI : 0);
    }
    if (grant == 0)
        return 0;
    for (size_t i = 0; i < LIMIT_LEVELS; i++) {
        struct limit_bucket *b = limited(chain, i);
        if (b != NULL)
            take(b, bytes_milli(grant));
    }
    return (size_t)grant;
}

void limit_charge(const struct limit_chain *chain, size_t n, uint64_t now_ms)
{
    for (size_t i = 0; i < LIMIT_LEVELS; i++) {
        struct limit_bucket *b = limited(chain, i);
        if (b == NULL)
            continue;
        refill(b, now_ms);
        take(b, bytes_milli(n));
    }
}

/* Levels [from, to) of chain get n bytes back. */
static void refund_levels(const struct limit_chain *chain, size_t from, size_t to, uint64_t n,
                          uint64_t now)
{
    for (size_t i = from; i < to; i++) {
        struct limit_bucket *b = limited(chain, i);
        if (b == NULL)
            continue;
        refill(b, now);
        give(b, bytes_milli(n));
    }
}

void limit_refund(const struct limit_chain *chain, size_t n, uint64_t now_ms)
{
    refund_levels(chain, 0, LIMIT_LEVELS, n, now_ms);
}

/* What a level must hold before a grant of g: g itself, or the whole bucket when g is larger
 * than the burst (only after the burst was lowered under a waiter; the grant then leaves it in
 * debt rather than waiting forever). */
static int64_t need_milli(const struct limit_bucket *b, uint64_t g)
{
    return bytes_milli(min_u64(g, b->burst));
}

static uint64_t level_wait(const struct limit_bucket *b, int64_t need)
{
    if (b->tokens >= need)
        return 0;
    uint64_t deficit = (uint64_t)(need - b->tokens);
    return (deficit + b->rate - 1) / b->rate;
}

uint64_t limit_wait_ms(const struct limit_chain *chain, size_t want, uint64_t now_ms)
{
    uint64_t g = min_u64(want, limit_quantum(chain));
    uint64_t wait = 0;
    for (size_t i = 0; i < LIMIT_LEVELS && g > 0; i++) {
        struct limit_bucket *b = limited(chain, i);
        if (b == NULL)
            continue;
        refill(b, now_ms);
        wait = max_u64(wait, level_wait(b, need_milli(b, g)));
    }
    return wait;
}

/* ---- the queue ---- */

static void unlink_from(struct limit_waiter **head, struct limit_waiter **tail,
                        struct limit_waiter *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        *head = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    else
        *tail = w->prev;
    w->prev = w->next = NULL;
}

static void append_to(struct limit_waiter **head, struct limit_waiter **tail,
                      struct limit_waiter *w)
{
    w->next = NULL;
    w->prev = *tail;
    if (*tail != NULL)
        (*tail)->next = w;
    else
        *head = w;
    *tail = w;
}

/* Queue order: least recently served first, then by when they were served in that run (or
 * queued, for a waiter never served). A FIFO by time of queueing would let whoever comes back
 * first after a grant go first again, and one a little slower would keep missing turns. */
static bool served_before(const struct limit_waiter *a, const struct limit_waiter *b)
{
    return a->served_run != b->served_run ? a->served_run < b->served_run
                                          : a->served_seq < b->served_seq;
}

static void enqueue(struct limit_sched *s, struct limit_waiter *w)
{
    struct limit_waiter *after = s->tail;
    while (after != NULL && served_before(w, after))
        after = after->prev;
    w->prev = after;
    w->next = after != NULL ? after->next : s->head;
    if (w->next != NULL)
        w->next->prev = w;
    else
        s->tail = w;
    if (after != NULL)
        after->next = w;
    else
        s->head = w;
}

static void dequeue(struct limit_sched *s, struct limit_waiter *w)
{
    unlink_from(&s->head, &s->tail, w);
    s->queued--;
    /* counted on every level, limited or not: a limit may be set or lifted while it waits */
    for (size_t i = 0; i < LIMIT_LEVELS; i++)
        if (w->chain.level[i] != NULL && w->chain.level[i]->waiting > 0)
            w->chain.level[i]->waiting--;
}

static bool is_marked(const struct limit_sched *s, const struct limit_bucket *b)
{
    return b->mark_sched == s && b->mark_pass == s->pass;
}

/* Asks for a run in delay ms, but not sooner than LIMIT_WAKE_MIN_MS after the last one. */
static void arm(struct limit_sched *s, uint64_t now, uint64_t delay)
{
    if (delay != LIMIT_NEVER && s->has_run && s->last_run_ms + LIMIT_WAKE_MIN_MS > now + delay)
        delay = s->last_run_ms + LIMIT_WAKE_MIN_MS - now;
    s->deadline = delay == LIMIT_NEVER ? LIMIT_NEVER : now + delay;
    if (s->arm != NULL)
        s->arm(s->ud, delay);
}

void limit_waiter_init(struct limit_waiter *w)
{
    memset(w, 0, sizeof(*w));
}

void limit_sched_init(struct limit_sched *s, limit_arm_fn *arm_fn, void *ud)
{
    memset(s, 0, sizeof(*s));
    s->deadline = LIMIT_NEVER;
    s->arm = arm_fn;
    s->ud = ud;
}

void limit_wait(struct limit_sched *s, struct limit_waiter *w, const struct limit_chain *chain,
                size_t want, uint64_t now_ms, limit_grant_fn *on_grant, void *data)
{
    if (w->state != LIMIT_IDLE || want == 0)
        return;
    w->chain = *chain;
    w->want = want;
    w->granted = 0;
    w->stage = 0;
    w->taken = 0;
    w->on_grant = on_grant;
    w->data = data;
    w->state = LIMIT_QUEUED;
    if (!w->served) {
        w->served_run = s->runs;
        w->served_seq = ++s->seq;
    }
    enqueue(s, w);
    s->queued++;
    for (size_t i = 0; i < LIMIT_LEVELS; i++) {
        struct limit_bucket *b = w->chain.level[i];
        if (b != NULL) {
            b->waiting++;
            b->contended = b->rate != 0;
        }
    }
    if (s->running)
        return; /* the run in progress arms when its callbacks are done */
    uint64_t d = limit_sched_next_ms(s, now_ms);
    if (d != LIMIT_NEVER && now_ms + d < s->deadline)
        arm(s, now_ms, d);
}

void limit_cancel(struct limit_sched *s, struct limit_waiter *w)
{
    if (w->state == LIMIT_QUEUED) {
        dequeue(s, w);
        /* the levels it already took from get their tokens back */
        for (size_t i = 0; i < LIMIT_LEVELS; i++)
            if (w->taken & (1u << i))
                refund_levels(&w->chain, i, i + 1, w->granted, s->now_ms);
        if (s->queued == 0 && !s->running && s->deadline != LIMIT_NEVER)
            arm(s, 0, LIMIT_NEVER);
    } else if (w->state == LIMIT_GRANTING) {
        unlink_from(&s->ghead, &s->gtail, w);
        refund_levels(&w->chain, 0, LIMIT_LEVELS, w->granted, s->now_ms);
    }
    w->state = LIMIT_IDLE;
}

/* Where a waiter stands in a pass over the queue. */
enum step { STEP_WAIT, STEP_MOVED, STEP_DONE };

/* A waiter goes through its limited levels innermost first: it takes a level's share as soon as
 * that level holds it and no one ahead is short there, then waits on the next. Taking the
 * torrent's tokens before the global ones come lets the torrent bucket refill meanwhile (a
 * torrent held back by the global queue would otherwise lose what overflows its burst), and
 * waiting on one level at a time means a waiter reserves only the level it waits on: nobody
 * behind it takes from that level first (so a large request cannot starve), while a torrent
 * held by its own low limit does not hold back the global bucket for everyone else.
 *
 * With commit, takes every level it can and returns STEP_DONE when all are taken; without,
 * only reports. STEP_MOVED: a level could be (or was) taken. STEP_WAIT: *wait is the ms until
 * this waiter can move, barring grants to others: its level's refill, and if waiters ahead are
 * short there, until none of them is (mark_release). The level it waits on is then marked. */
static enum step advance(struct limit_sched *s, struct limit_waiter *w, uint64_t now, bool commit,
                         uint64_t *wait)
{
    enum step r = STEP_WAIT;
    /* the size is fixed once a level has paid for it */
    uint64_t g = w->taken != 0 ? w->granted : min_u64(w->want, limit_quantum(&w->chain));
    *wait = 0;
    for (size_t i = w->stage; i < LIMIT_LEVELS; i++) {
        struct limit_bucket *b = limited(&w->chain, i);
        if (b == NULL)
            continue;
        refill(b, now);
        uint64_t own = level_wait(b, need_milli(b, g));
        if (is_marked(s, b)) {
            *wait = max_u64(own, b->mark_release);
            b->mark_release = max_u64(own, b->mark_release);
            return r;
        }
        if (own > 0) {
            *wait = own;
            b->mark_sched = s;
            b->mark_pass = s->pass;
            b->mark_release = own;
            return r;
        }
        if (!commit)
            return STEP_MOVED;
        take(b, bytes_milli(g));
        w->granted = (size_t)g;
        w->taken |= 1u << i;
        w->stage = (unsigned)i + 1;
        r = STEP_MOVED;
    }
    w->granted = (size_t)g;
    return STEP_DONE;
}

uint64_t limit_sched_next_ms(struct limit_sched *s, uint64_t now_ms)
{
    uint64_t best = LIMIT_NEVER;
    s->pass++;
    for (struct limit_waiter *w = s->head; w != NULL; w = w->next) {
        uint64_t wait;
        if (advance(s, w, now_ms, false, &wait) != STEP_WAIT)
            return 0;
        best = min_u64(best, wait);
    }
    return best;
}

uint64_t limit_sched_run(struct limit_sched *s, uint64_t now_ms)
{
    s->running = true;
    s->runs++;
    s->now_ms = now_ms;
    s->pass++;
    for (struct limit_waiter *w = s->head, *next; w != NULL; w = next) {
        next = w->next;
        uint64_t wait;
        if (advance(s, w, now_ms, true, &wait) != STEP_DONE)
            continue;
        dequeue(s, w);
        w->state = LIMIT_GRANTING;
        w->served = true;
        w->served_run = s->runs;
        w->served_seq = ++s->seq;
        append_to(&s->ghead, &s->gtail, w);
    }
    /* Callbacks last: they may queue (at the back), take or cancel without disturbing the walk. */
    while (s->ghead != NULL) {
        struct limit_waiter *w = s->ghead;
        unlink_from(&s->ghead, &s->gtail, w);
        w->state = LIMIT_IDLE;
        w->on_grant(w, w->granted);
    }
    s->running = false;
    s->has_run = true;
    s->last_run_ms = now_ms;
    arm(s, now_ms, limit_sched_next_ms(s, now_ms));
    return s->deadline == LIMIT_NEVER ? LIMIT_NEVER : s->deadline - now_ms;
}

/* ---- the meter ---- */

void limit_meter_init(struct limit_meter *m, uint64_t now_ms)
{
    memset(m, 0, sizeof(*m));
    m->slot_ms = m->start_ms = now_ms;
}

/* Slots the current one is behind now (LIMIT_METER_SLOTS or more: all expired). */
static uint64_t slots_behind(const struct limit_meter *m, uint64_t now)
{
    return now > m->slot_ms ? (now - m->slot_ms) / LIMIT_METER_SLOT_MS : 0;
}

void limit_meter_add(struct limit_meter *m, uint64_t bytes, uint64_t now_ms)
{
    uint64_t k = slots_behind(m, now_ms);
    if (k >= LIMIT_METER_SLOTS) {
        memset(m->slot, 0, sizeof(m->slot));
    } else {
        for (uint64_t i = 0; i < k; i++) {
            m->cur = (m->cur + 1) % LIMIT_METER_SLOTS;
            m->slot[m->cur] = 0;
        }
    }
    m->slot_ms += k * LIMIT_METER_SLOT_MS;
    m->slot[m->cur] += bytes;
    m->total += bytes;
}

uint64_t limit_meter_rate(const struct limit_meter *m, uint64_t now_ms)
{
    uint64_t k = slots_behind(m, now_ms);
    if (k >= LIMIT_METER_SLOTS)
        return 0;
    /* Slots still in the window: the current one back to the oldest not yet overwritten. */
    uint64_t sum = 0;
    for (uint64_t i = 0; i < LIMIT_METER_SLOTS - k; i++)
        sum += m->slot[(m->cur + LIMIT_METER_SLOTS - i) % LIMIT_METER_SLOTS];
    uint64_t cur_start = m->slot_ms + k * LIMIT_METER_SLOT_MS;
    uint64_t span = (LIMIT_METER_SLOTS - 1) * LIMIT_METER_SLOT_MS + (now_ms - cur_start);
    span = now_ms > m->start_ms ? min_u64(span, now_ms - m->start_ms) : 0;
    /* A meter younger than one slot would report wild rates from a handful of bytes. */
    span = max_u64(span, LIMIT_METER_SLOT_MS);
    return sum * 1000 / span;
}
