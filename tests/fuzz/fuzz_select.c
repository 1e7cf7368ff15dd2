/* libFuzzer target for the --select-file list parser (rv_file_select_parse): any bytes,
 * NUL-terminated, must parse or fail cleanly (no crash, no leak, no read past the end), and a
 * success must keep its promises: at least one range, none ending before it starts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rivulet/metainfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    rv_file_range_t *r = NULL;
    size_t n = 0;
    rv_error_t err;
    memset(&err, 0, sizeof(err));
    if (rv_file_select_parse(s, &r, &n, &err) == 0) {
        if (n == 0 || r == NULL)
            abort();
        for (size_t i = 0; i < n; i++)
            if (r[i].first > r[i].last)
                abort();
        free(r);
    } else {
        if (r != NULL || n != 0 || err.code == 0 || (err.has_offset && err.offset > size))
            abort();
    }
    free(s);
    return 0;
}
