/* RFC 4648 section 6 base32. */
#include "util/base32.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static int b32_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= '2' && c <= '7')
        return c - '2' + 26;
    return -1;
}

int base32_decode(const char *s, size_t slen, uint8_t *out, size_t n)
{
    size_t need, o = 0;
    unsigned acc = 0, bits = 0;

    if (n > (SIZE_MAX - 4) / 8)
        return -1;
    need = BASE32_ENCODED_LEN(n);
    if (slen < need)
        return -1;
    if (slen > need) {
        /* Only '=' padding may follow, and only up to the next multiple of 8. */
        if (slen % 8 != 0 || slen - need >= 8)
            return -1;
        for (size_t i = need; i < slen; i++)
            if (s[i] != '=')
                return -1;
    }
    for (size_t i = 0; i < need; i++) {
        int v = b32_value(s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 5 | (unsigned)v) & 0xfffu; /* at most 12 live bits */
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* Fewer than 5 bits may remain and they must be zero, so each byte string has one
     * encoding and two different strings never name the same hash. */
    if (acc & ((1u << bits) - 1))
        return -1;
    return o == n ? 0 : -1;
}

void base32_encode(const uint8_t *p, size_t n, char *out)
{
    size_t o = 0;
    unsigned acc = 0, bits = 0;

    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8 | p[i]) & 0xfffu;
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = alphabet[(acc >> bits) & 31];
        }
    }
    if (bits > 0)
        out[o++] = alphabet[(acc << (5 - bits)) & 31];
    out[o] = '\0';
}
