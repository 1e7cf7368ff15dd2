/* Counters shared by the loop and the workers (rv_session_stats_t): workers add with relaxed
 * atomics, so a reader sees each counter whole; the figures need no ordering between them. */
#ifndef RV_UTIL_STATS_H
#define RV_UTIL_STATS_H

#include <stdint.h>
#include <time.h>

#include "rivulet/session.h"

static inline void stats_add(uint64_t *counter, uint64_t n)
{
    __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

static inline uint64_t stats_load(const uint64_t *counter)
{
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

/* Raises *peak to v if v is larger (loop thread only). */
static inline void stats_peak(uint32_t *peak, uint64_t v)
{
    if (v > *peak)
        *peak = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* Raises *peak to v if v is larger, from any thread. */
static inline void stats_peak_atomic(uint32_t *peak, uint32_t v)
{
    uint32_t cur = __atomic_load_n(peak, __ATOMIC_RELAXED);
    while (v > cur &&
           !__atomic_compare_exchange_n(peak, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

static inline uint64_t stats_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
