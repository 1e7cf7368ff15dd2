#include "util/team.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/err.h"

struct team {
    const struct team_opts *o;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned running; /* under mu */
};

struct member {
    struct team *t;
    pthread_t tid;
    void *arg;
};

static void *member_main(void *p)
{
    struct member *m = p;
    m->t->o->work(m->arg);
    pthread_mutex_lock(&m->t->mu);
    m->t->running--;
    pthread_cond_signal(&m->t->cv);
    pthread_mutex_unlock(&m->t->mu);
    return NULL;
}

static void add_ns(struct timespec *t, long ns)
{
    t->tv_nsec += ns;
    while (t->tv_nsec >= 1000000000L) {
        t->tv_nsec -= 1000000000L;
        t->tv_sec++;
    }
}

static int time_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static int team_init(struct team *t, rv_error_t *err)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return err_set(err, RV_ENOMEM, "cannot set up the hashing threads");
    /* CLOCK_MONOTONIC: a clock step must not stretch or skip the ticks */
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int e = pthread_cond_init(&t->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (e != 0)
        return err_set(err, RV_ENOMEM, "cannot set up the hashing threads");
    if (pthread_mutex_init(&t->mu, NULL) != 0) {
        pthread_cond_destroy(&t->cv);
        return err_set(err, RV_ENOMEM, "cannot set up the hashing threads");
    }
    return 0;
}

int team_run(const struct team_opts *o, rv_error_t *err)
{
    struct team t = {.o = o};
    struct member *m = calloc(o->threads, sizeof(*m));
    if (m == NULL)
        return err_set(err, RV_ENOMEM, "out of memory starting the hashing threads");
    int rc = team_init(&t, err);
    if (rc != 0) {
        free(m);
        return rc;
    }
    unsigned started = 0;
    pthread_mutex_lock(&t.mu);
    for (; started < o->threads; started++) {
        m[started].t = &t;
        m[started].arg = (char *)o->args + started * o->stride;
        t.running++;
        int e = pthread_create(&m[started].tid, NULL, member_main, &m[started]);
        if (e != 0) {
            char ebuf[128];
            t.running--;
            atomic_store(o->stop, true);
            rc = err_set(err, RV_EIO, "cannot start a hashing thread: %s",
                         strerror_r(e, ebuf, sizeof(ebuf)));
            break;
        }
    }
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    add_ns(&next, o->tick_ns);
    while (t.running > 0) {
        pthread_cond_timedwait(&t.cv, &t.mu, &next);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (t.running > 0 && !time_before(&now, &next)) {
            next = now;
            add_ns(&next, o->tick_ns);
            if (o->tick != NULL) {
                pthread_mutex_unlock(&t.mu);
                o->tick(o->ud);
                pthread_mutex_lock(&t.mu);
            }
        }
    }
    pthread_mutex_unlock(&t.mu);
    for (unsigned i = 0; i < started; i++)
        pthread_join(m[i].tid, NULL);
    pthread_mutex_destroy(&t.mu);
    pthread_cond_destroy(&t.cv);
    free(m);
    return rc;
}

unsigned team_size(unsigned wanted, uint32_t pieces)
{
    unsigned n = wanted;
    if (n == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        n = ncpu > 0 ? (unsigned)ncpu : 1u;
    }
    if (n > TEAM_MAX_THREADS)
        n = TEAM_MAX_THREADS;
    if (n > pieces)
        n = pieces;
    return n ? n : 1u;
}
