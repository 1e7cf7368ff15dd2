/* A reference-counted block of bytes: memory several owners share (a cached piece, and the
 * socket writes that send parts of it without copying them), freed by the last unref.
 * Counted on one thread only (the loop's). */
#ifndef RV_UTIL_RCBUF_H
#define RV_UTIL_RCBUF_H

#include <stddef.h>
#include <stdint.h>

struct rcbuf {
    size_t refs;
    size_t size;
    uint8_t data[];
};

/* size bytes, uninitialised, one reference; NULL when out of memory. */
struct rcbuf *rcbuf_new(size_t size);
struct rcbuf *rcbuf_ref(struct rcbuf *b);
/* Drops a reference; the last one frees b. NULL is ignored. */
void rcbuf_unref(struct rcbuf *b);
/* Whether anyone besides the caller's one reference holds b. */
static inline int rcbuf_shared(const struct rcbuf *b)
{
    return b->refs > 1;
}

#endif
