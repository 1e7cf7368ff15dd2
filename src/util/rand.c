#include "util/rand.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "rivulet/version.h"

int rand_bytes(void *p, size_t n)
{
    if (n > INT32_MAX)
        return -1;
    return RAND_bytes(p, (int)n) == 1 ? 0 : -1;
}

uint32_t rand_u32(void)
{
    uint32_t v = 0;
    rand_bytes(&v, sizeof(v));
    return v;
}

void rand_peer_id(uint8_t out[20])
{
    static const char alnum[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    char prefix[9];
    uint8_t r[12];
    /* Azureus style, one digit each for major, minor, patch and a build digit, as
     * libtorrent 2.0.8 sends -LT2080-: rivulet 0.1.0 is -RV0100-. */
    snprintf(prefix, sizeof(prefix), "-RV%d%d%d0-", RV_VERSION_MAJOR % 10, RV_VERSION_MINOR % 10,
             RV_VERSION_PATCH % 10);
    memcpy(out, prefix, 8);
    rand_bytes(r, sizeof(r));
    for (size_t i = 0; i < sizeof(r); i++)
        out[8 + i] = (uint8_t)alnum[r[i] % (sizeof(alnum) - 1)];
}
