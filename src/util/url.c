/* Percent-encoding and decoding. */
#include "util/url.h"

#include <stdlib.h>

#include "rivulet/error.h"

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int url_decode(const char *s, size_t len, unsigned flags, char **out, size_t *out_len,
               size_t *bad_off)
{
    size_t i = 0, o = 0, alloc;
    char *d;

    *out = NULL;
    if (out_len)
        *out_len = 0;
    /* Decoding never makes the string longer: len bytes plus the NUL are enough. */
    if (__builtin_add_overflow(len, (size_t)1, &alloc))
        return RV_ENOMEM;
    d = malloc(alloc);
    if (!d)
        return RV_ENOMEM;

    while (i < len) {
        size_t at = i;
        unsigned char c = (unsigned char)s[i];

        if (c == '%') {
            int hi, lo;
            if (len - i < 3)
                goto bad;
            hi = hex_value(s[i + 1]);
            lo = hex_value(s[i + 2]);
            if (hi < 0 || lo < 0)
                goto bad;
            c = (unsigned char)(hi << 4 | lo);
            i += 3;
        } else {
            if (c == '+' && (flags & URL_PLUS_AS_SPACE))
                c = ' ';
            i++;
        }
        /* A NUL would silently cut the C string short (a tracker URL that is not the one
         * shown to the user), so it is an error rather than data. */
        if (c == '\0') {
            i = at;
            goto bad;
        }
        d[o++] = (char)c;
    }
    d[o] = '\0';
    *out = d;
    if (out_len)
        *out_len = o;
    return 0;

bad:
    free(d);
    if (bad_off)
        *bad_off = i;
    return RV_EINVAL;
}

static int is_unreserved(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

char *url_encode_bytes(const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t alloc, o = 0;
    char *s;

    if (__builtin_mul_overflow(n, (size_t)3, &alloc) ||
        __builtin_add_overflow(alloc, (size_t)1, &alloc))
        return NULL;
    s = malloc(alloc);
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (is_unreserved(p[i])) {
            s[o++] = (char)p[i];
        } else {
            s[o++] = '%';
            s[o++] = digits[p[i] >> 4];
            s[o++] = digits[p[i] & 0x0f];
        }
    }
    s[o] = '\0';
    return s;
}
