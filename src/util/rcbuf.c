#include "util/rcbuf.h"

#include <stdlib.h>

struct rcbuf *rcbuf_new(size_t size)
{
    if (size > SIZE_MAX - sizeof(struct rcbuf))
        return NULL;
    struct rcbuf *b = malloc(sizeof(*b) + size);
    if (b == NULL)
        return NULL;
    b->refs = 1;
    b->size = size;
    return b;
}

struct rcbuf *rcbuf_ref(struct rcbuf *b)
{
    b->refs++;
    return b;
}

void rcbuf_unref(struct rcbuf *b)
{
    if (b != NULL && --b->refs == 0)
        free(b);
}
