/* libFuzzer target for magnet links: any bytes, NUL-terminated, must parse or fail cleanly
 * (no crash, no leak, no read past the end). Also checks what a success promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rivulet/metainfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rv_magnet_t *m = NULL;
    rv_error_t err;
    char *s = malloc(size + 1);

    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (rv_magnet_parse(s, &m, &err) == 0) {
        if (!m->has_v1 && !m->has_v2)
            abort();
        for (size_t i = 0; i < m->select_count; i++)
            if (m->select[i].first > m->select[i].last)
                abort();
        for (size_t i = 0; i < m->tracker_count; i++)
            for (size_t j = 0; j < i; j++)
                if (strcmp(m->trackers[i], m->trackers[j]) == 0)
                    abort();
        rv_magnet_free(m);
    } else {
        if (m != NULL || err.code == 0 || (err.has_offset && err.offset > size))
            abort();
    }
    free(s);
    return 0;
}
