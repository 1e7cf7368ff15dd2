/* BEP 9 metadata assembly: blocks asked of peers, received, checked against the info-hash. */
#include "swarm/metadata.h"

#include <stdlib.h>
#include <string.h>

#include "peer/ext.h"
#include "util/err.h"
#include "util/sha.h"

void metadata_init(struct metadata *md, const uint8_t info_hash[20], size_t max_size)
{
    memset(md, 0, sizeof(*md));
    memcpy(md->info_hash, info_hash, 20);
    md->max_size = max_size;
}

static void attempt_free(struct metadata *md)
{
    free(md->data);
    free(md->state);
    free(md->owner);
    free(md->asked_ms);
    md->data = NULL;
    md->state = NULL;
    md->owner = NULL;
    md->asked_ms = NULL;
    md->size = 0;
    md->nblocks = 0;
    md->received = 0;
}

void metadata_free(struct metadata *md)
{
    attempt_free(md);
}

static int attempt_start(struct metadata *md, size_t size)
{
    uint32_t n = (uint32_t)((size + EXT_METADATA_BLOCK - 1) / EXT_METADATA_BLOCK);
    md->data = malloc(size);
    md->state = calloc(n, 1);
    md->owner = calloc(n, sizeof(*md->owner));
    md->asked_ms = calloc(n, sizeof(*md->asked_ms));
    if (md->data == NULL || md->state == NULL || md->owner == NULL || md->asked_ms == NULL) {
        attempt_free(md);
        return RV_ENOMEM;
    }
    md->size = size;
    md->nblocks = n;
    md->attempts++;
    return 0;
}

static size_t block_len(const struct metadata *md, uint32_t block)
{
    return block + 1 < md->nblocks ? EXT_METADATA_BLOCK
                                   : md->size - (size_t)block * EXT_METADATA_BLOCK;
}

int metadata_pick(struct metadata *md, void *peer, int64_t peer_size, uint64_t now_ms,
                  uint32_t *block)
{
    if (md->done || peer_size <= 0 || (uint64_t)peer_size > md->max_size)
        return 0;
    if (md->size == 0 && attempt_start(md, (size_t)peer_size) != 0)
        return 0;
    if ((size_t)peer_size != md->size)
        return 0;
    if (md->single_source) {
        if (md->source == NULL)
            md->source = peer;
        if (md->source != peer)
            return 0;
    }
    for (uint32_t i = 0; i < md->nblocks; i++) {
        if (md->state[i] == 0) {
            md->state[i] = 1;
            md->owner[i] = peer;
            md->asked_ms[i] = now_ms;
            *block = i;
            return 1;
        }
    }
    return 0;
}

/* The attempt failed its hash: who took part, and a fresh start. */
static int attempt_failed(struct metadata *md, void **blame, size_t *nblame, rv_error_t *err)
{
    size_t n = 0;
    for (uint32_t i = 0; i < md->nblocks; i++) {
        bool seen = false;
        for (size_t k = 0; k < n && !seen; k++)
            seen = blame[k] == md->owner[i];
        if (!seen && n < METADATA_MAX_BLAME)
            blame[n++] = md->owner[i];
    }
    *nblame = n;
    md->failures++;
    size_t size = md->size;
    attempt_free(md);
    /* Several contributors: one of them lied. Take the next attempts from one peer each. */
    if (n > 1)
        md->single_source = true;
    md->source = NULL;
    return err_set(err, RV_EHASH,
                   "metadata of %zu bytes from %zu peer%s does not match the info-hash", size, n,
                   n == 1 ? "" : "s");
}

int metadata_received(struct metadata *md, void *peer, uint32_t block, int64_t total,
                      const uint8_t *data, size_t len, void **blame, size_t *nblame,
                      rv_error_t *err)
{
    *nblame = 0;
    if (md->done || block >= md->nblocks || md->state[block] != 1 || md->owner[block] != peer)
        return METADATA_IGNORED;
    if (total != (int64_t)md->size) {
        md->state[block] = 0;
        md->owner[block] = NULL;
        return err_set(err, RV_EPROTO, "sent metadata with total_size %lld after advertising %zu",
                       (long long)total, md->size);
    }
    size_t want = block_len(md, block);
    if (len != want) {
        md->state[block] = 0;
        md->owner[block] = NULL;
        return err_set(err, RV_EPROTO, "sent metadata block %u of %zu bytes, expected %zu", block,
                       len, want);
    }
    memcpy(md->data + (size_t)block * EXT_METADATA_BLOCK, data, len);
    md->state[block] = 2;
    md->received++;
    if (md->received < md->nblocks)
        return METADATA_OK;
    uint8_t h[20];
    sha1(md->data, md->size, h);
    if (memcmp(h, md->info_hash, 20) != 0)
        return attempt_failed(md, blame, nblame, err);
    md->done = true;
    return METADATA_COMPLETE;
}

void metadata_peer_gone(struct metadata *md, void *peer)
{
    if (md->done || md->nblocks == 0)
        return;
    bool restart = md->single_source && md->source == peer;
    for (uint32_t i = 0; i < md->nblocks; i++) {
        /* Blocks it sent stay, unless the attempt was this peer's alone. */
        if (!restart && (md->owner[i] != peer || md->state[i] != 1))
            continue;
        if (md->state[i] == 2)
            md->received--;
        md->state[i] = 0;
        md->owner[i] = NULL;
    }
    if (restart)
        md->source = NULL;
    /* Nobody holds a block of this attempt any more: the next peer may bring another size. */
    bool any = false;
    for (uint32_t i = 0; i < md->nblocks && !any; i++)
        any = md->state[i] != 0;
    if (!any)
        attempt_free(md);
}

unsigned metadata_expire(struct metadata *md, uint64_t now_ms)
{
    unsigned n = 0;
    for (uint32_t i = 0; !md->done && i < md->nblocks; i++) {
        if (md->state[i] == 1 && now_ms - md->asked_ms[i] >= METADATA_TIMEOUT_MS) {
            void *slow = md->owner[i];
            md->state[i] = 0;
            md->owner[i] = NULL;
            n++;
            if (md->single_source && md->source == slow) {
                metadata_peer_gone(md, slow);
                return n;
            }
        }
    }
    return n;
}
