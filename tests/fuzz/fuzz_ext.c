/* libFuzzer target for the extension codecs: the first byte picks the parser (BEP 10
 * extended handshake, BEP 9 ut_metadata, BEP 11 ut_pex, BEP 54 index), the rest is the
 * payload a peer sent. Each must succeed or fail cleanly, and a success keeps its promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "peer/ext.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    rv_error_t err;
    switch (data[0] % 4) {
    case 0: {
        struct ext_handshake h;
        if (ext_handshake_parse(p, n, &h, &err) == 0 &&
            (strlen(h.client) >= sizeof(h.client) || h.metadata_size < -1))
            abort();
        break;
    }
    case 1: {
        struct ut_metadata_msg m;
        if (ut_metadata_parse(p, n, &m, &err) == 0 &&
            (m.data + m.data_len != p + n || m.data_len > EXT_METADATA_BLOCK ||
             m.type < UT_METADATA_REQUEST || m.type > UT_METADATA_REJECT))
            abort();
        break;
    }
    case 2: {
        struct pex_msg *m = malloc(sizeof(*m));
        if (m == NULL)
            return 0;
        if (pex_parse(p, n, m, &err) == 0 && (m->nadded > PEX_MAX || m->ndropped > PEX_MAX))
            abort();
        free(m);
        break;
    }
    default: {
        uint32_t index;
        if (ext_get_index(p, n, &index, &err) == 0 && n != 4)
            abort();
        break;
    }
    }
    return 0;
}
