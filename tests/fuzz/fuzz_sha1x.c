/* libFuzzer target for util/sha1x: the lanes against libcrypto. The first byte picks the
 * kernel (its top bit: AVX-512 or the SHA extensions, the other where this CPU runs only one),
 * the lanes (8 or 16) and how the messages are fed (one sha1x_final, or whole blocks first in
 * parts of 64 x (1 + bits 2-6)); the rest is cut into that many messages of one length. Every
 * lane's digest must be libcrypto's for the same bytes. Nothing to do where the CPU runs
 * neither kernel. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/sha.h"
#include "util/sha1x.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || !sha1x_usable())
        return 0;
    enum sha1x_kernel k = (data[0] & 0x80) ? SHA1X_SHANI : SHA1X_AVX512;
    if (!sha1x_use_kernel(k))
        sha1x_use_kernel(k == SHA1X_SHANI ? SHA1X_AVX512 : SHA1X_SHANI);
    unsigned lanes = (data[0] & 1) ? 16 : 8;
    size_t part = (data[0] & 2) ? 64 * (size_t)(1 + ((data[0] >> 2) & 31)) : 0;
    size_t len = (size - 1) / lanes;
    const uint8_t *p[SHA1X_LANES];
    uint8_t out[SHA1X_LANES][20], want[20];
    struct sha1x s;
    size_t done = 0;

    sha1x_init(&s, lanes);
    while (part > 0 && len - done >= part) {
        for (unsigned k = 0; k < SHA1X_LANES; k++)
            p[k] = data + 1 + (k < lanes ? k : 0) * len + done;
        sha1x_update(&s, p, part);
        done += part;
    }
    for (unsigned k = 0; k < SHA1X_LANES; k++)
        p[k] = data + 1 + (k < lanes ? k : 0) * len + done;
    sha1x_final(&s, p, len - done, out);
    for (unsigned k = 0; k < lanes; k++) {
        sha1(data + 1 + k * len, len, want);
        if (memcmp(out[k], want, 20) != 0)
            abort();
    }
    return 0;
}
