#include "util/text.h"

#include <string.h>

#include "rivulet/error.h"

size_t text_utf8_seq(const uint8_t *p, size_t n)
{
    size_t len;
    uint32_t c;
    if (n == 0)
        return 0;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;
        c = p[0] & 0x1fu;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3;
        c = p[0] & 0x0fu;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        c = p[0] & 0x07u;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (p[i] & 0x3fu);
    }
    if ((len == 3 && c < 0x800) || (len == 4 && c < 0x10000) || c > 0x10ffff ||
        (c >= 0xd800 && c <= 0xdfff) || (c >= 0x80 && c <= 0x9f))
        return 0;
    return len;
}

size_t text_printable(const uint8_t *p, size_t n, char *out, size_t cap)
{
    size_t o = 0, i = 0;
    size_t room = cap - 4; /* "..." and the NUL */
    while (i < n) {
        size_t k = p[i] >= 0x20 && p[i] < 0x7f ? 1 : text_utf8_seq(p + i, n - i);
        size_t w = k ? k : 1;
        if (o + w > room) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (k)
            memcpy(out + o, p + i, k);
        else
            out[o] = '?';
        o += w;
        i += w;
    }
    out[o] = '\0';
    return o;
}

size_t rv_printable(const char *s, size_t n, char *out, size_t cap)
{
    if (cap < 4) {
        if (cap > 0)
            out[0] = '\0';
        return 0;
    }
    return text_printable((const uint8_t *)s, strnlen(s, n), out, cap);
}
