/* A team of threads: n workers started together, the calling thread waiting for all of them
 * and ticking meanwhile (progress reports, a cancel check). What create and verify hash with.
 * The workers share their work through the caller's own atomics; the team only starts, waits
 * and joins. */
#ifndef RV_UTIL_TEAM_H
#define RV_UTIL_TEAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rivulet/error.h"

struct team_opts {
    unsigned threads;        /* how many workers (at least 1) */
    void (*work)(void *arg); /* run by each, with arg = args + i * stride */
    void *args;
    size_t stride;
    atomic_bool *stop;       /* set by the team when a worker cannot start, for the others */
    long tick_ns;            /* tick(ud) every tick_ns on the calling thread while any runs */
    void (*tick)(void *ud);
    void *ud;
};

/* Runs the team to its end. 0, or an error (no thread could be set up or started; the
 * workers started before the failure were stopped through *stop and joined). */
int team_run(const struct team_opts *o, rv_error_t *err);

#define TEAM_MAX_THREADS 256u /* whatever the caller asks for */

/* How many threads for `pieces` pieces: wanted (0: one per online CPU), at most
 * TEAM_MAX_THREADS and at most one per piece, at least 1. */
unsigned team_size(unsigned wanted, uint32_t pieces);

#endif
