/* A fixed-size set of piece indices, stored as BEP 3 bitfields are on the wire: the high bit
 * of the first byte is piece 0. The size is fixed at creation, so no index from a peer can
 * grow it (Transmission's CVE-2014-4909). */
#ifndef RV_UTIL_BITFIELD_H
#define RV_UTIL_BITFIELD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bitfield {
    uint8_t *bits;
    uint32_t count; /* number of indices */
    uint32_t set;   /* how many are set */
};

static inline size_t bitfield_bytes(uint32_t count)
{
    return ((size_t)count + 7) / 8;
}

int bitfield_init(struct bitfield *b, uint32_t count); /* all clear; RV_ENOMEM */
void bitfield_free(struct bitfield *b);
bool bitfield_has(const struct bitfield *b, uint32_t i); /* false when i >= count */
void bitfield_set(struct bitfield *b, uint32_t i);       /* ignored when i >= count */
void bitfield_clear(struct bitfield *b, uint32_t i);
void bitfield_set_all(struct bitfield *b);
void bitfield_clear_all(struct bitfield *b);
static inline bool bitfield_is_full(const struct bitfield *b)
{
    return b->set == b->count;
}
/* Loads n wire bytes. RV_EPROTO if n is not bitfield_bytes(count) or a spare bit is set
 * (BEP 3: "spare bits at the end are set to zero"). */
int bitfield_load(struct bitfield *b, const uint8_t *p, size_t n);

#endif
