/* libFuzzer target for KRPC (BEP 5) packets as a DHT node receives them: any bytes must parse
 * or fail cleanly, and what a success promises must hold (lengths, caps, families). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dht/krpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct krpc_msg *m = malloc(sizeof(*m));
    rv_error_t err;
    if (m == NULL)
        return 0;
    if (krpc_parse(data, size, m, &err) == 0) {
        if (m->tid_len == 0 || m->tid_len > KRPC_MAX_TID || m->token_len > KRPC_MAX_TOKEN ||
            m->nnodes > 2 * KRPC_MAX_NODES || m->nvalues > KRPC_MAX_VALUES)
            abort();
        for (size_t i = 0; i < m->nnodes; i++)
            if (m->nodes[i].addr.family != 4 && m->nodes[i].addr.family != 6)
                abort();
        if (m->type == KRPC_QUERY && m->method == KRPC_ANNOUNCE_PEER &&
            (m->token_len == 0 || (!m->implied_port && m->port == 0)))
            abort();
        /* What we answer with must encode. */
        struct buf b;
        buf_init(&b, KRPC_MAX_PACKET * 4);
        uint8_t id[20] = {0};
        if (krpc_put_response(&b, m->tid, m->tid_len, id, m->nodes, m->nnodes, m->values,
                              m->nvalues > 8 ? 8 : m->nvalues, m->token, m->token_len,
                              NULL) != 0)
            abort();
        struct krpc_msg *again = malloc(sizeof(*again));
        if (again != NULL && krpc_parse(b.data, b.len, again, &err) != 0)
            abort();
        free(again);
        buf_free(&b);
    }
    free(m);
    return 0;
}
