/* A fixed-size set of piece indices in BEP 3 wire order (see bitfield.h). */
#include "util/bitfield.h"

#include <stdlib.h>
#include <string.h>

#include "rivulet/error.h"

/* The bits of the last byte that belong to no index: BEP 3 wants them zero. */
static uint8_t spare_mask(uint32_t count)
{
    uint32_t used = count % 8;
    return used == 0 ? 0 : (uint8_t)(0xffu >> used);
}

int bitfield_init(struct bitfield *b, uint32_t count)
{
    size_t n = bitfield_bytes(count);
    /* calloc(0) may return NULL; one byte keeps bits valid for an empty torrent. */
    b->bits = calloc(n ? n : 1, 1);
    b->count = 0;
    b->set = 0;
    if (b->bits == NULL)
        return RV_ENOMEM;
    b->count = count;
    return 0;
}

void bitfield_free(struct bitfield *b)
{
    free(b->bits);
    b->bits = NULL;
    b->count = 0;
    b->set = 0;
}

bool bitfield_has(const struct bitfield *b, uint32_t i)
{
    if (i >= b->count)
        return false;
    return (b->bits[i / 8] >> (7 - i % 8)) & 1;
}

void bitfield_set(struct bitfield *b, uint32_t i)
{
    if (i >= b->count)
        return;
    uint8_t bit = (uint8_t)(0x80u >> (i % 8));
    if (!(b->bits[i / 8] & bit)) {
        b->bits[i / 8] |= bit;
        b->set++;
    }
}

void bitfield_clear(struct bitfield *b, uint32_t i)
{
    if (i >= b->count)
        return;
    uint8_t bit = (uint8_t)(0x80u >> (i % 8));
    if (b->bits[i / 8] & bit) {
        b->bits[i / 8] &= (uint8_t)~bit;
        b->set--;
    }
}

void bitfield_set_all(struct bitfield *b)
{
    size_t n = bitfield_bytes(b->count);
    if (n == 0)
        return;
    memset(b->bits, 0xff, n);
    b->bits[n - 1] &= (uint8_t)~spare_mask(b->count);
    b->set = b->count;
}

void bitfield_clear_all(struct bitfield *b)
{
    memset(b->bits, 0, bitfield_bytes(b->count));
    b->set = 0;
}

int bitfield_load(struct bitfield *b, const uint8_t *p, size_t n)
{
    size_t want = bitfield_bytes(b->count);
    if (n != want)
        return RV_EPROTO;
    if (n == 0) {
        b->set = 0;
        return 0;
    }
    /* BEP 3: "spare bits at the end are set to zero"; a set one is a broken peer. */
    if (p[n - 1] & spare_mask(b->count))
        return RV_EPROTO;
    memcpy(b->bits, p, n);
    uint32_t set = 0;
    for (size_t i = 0; i < n; i++)
        set += (uint32_t)__builtin_popcount(p[i]);
    b->set = set;
    return 0;
}
