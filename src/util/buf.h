/* A growable byte buffer with a hard maximum, so no input can make it grow without bound
 * (the shape of curl's dynbuf). */
#ifndef RV_UTIL_BUF_H
#define RV_UTIL_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max; /* appends that would pass this fail with RV_ETOOBIG */
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_str(struct buf *b, const char *s);
int buf_append_byte(struct buf *b, uint8_t c);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the bytes to the caller (who frees them) and leaves b empty. */
uint8_t *buf_steal(struct buf *b, size_t *len);

#endif
