/* Copying a received block into its piece. */
#ifndef RV_UTIL_COPY_H
#define RV_UTIL_COPY_H

#include <stddef.h>
#include <string.h>

/* memcpy for non-overlapping copies of a few KiB and more, in 64-byte steps. glibc's memcpy
 * moves 16 KiB with `rep movsb`, whose speed depends on where source and destination fall
 * relative to each other within a page: a block copied from the receive buffer into a piece
 * that starts 57 bytes into a page (pieces are placed so that their file offsets line up with
 * pages for direct writes) cost 0.27-0.32 CPU s/GiB on an AMD EPYC here, against 0.12 in
 * 64-byte steps, whatever the alignment.
 *
 * The stores are ordinary ones, which leave the piece in this core's caches: a worker hashes
 * it right after its last block, and reads it from there. Non-temporal stores (SSE2
 * _mm_stream_si128, used before 2026-12-06) saved this thread the fetch of each line before
 * overwriting it, but sent the piece to memory, and the worker's SHA-1 then read it from
 * there: on an Intel Xeon here, from one libtorrent seeder (1 GiB in 4 files, bench/download.sh,
 * 3 sets of 3 runs each, alternating), the leecher's user time was 1.12-1.45 s (mean 1.23)
 * against 1.24-1.39 (1.31), and rivulet to rivulet 1.33-1.49 CPU s against 1.40-1.51. */
static inline void copy_block(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        memcpy(d + i, s + i, 64);
    memcpy(d + i, s + i, n - i);
}

#endif
