/* Hex encoding and decoding of binary strings such as info-hashes. */
#ifndef RV_UTIL_HEX_H
#define RV_UTIL_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Writes 2*n lowercase hex digits and a NUL to out (which holds 2*n+1 bytes). */
void hex_encode(const uint8_t *p, size_t n, char *out);
/* Decodes exactly 2*n hex digits (either case) from s into out. Returns 0 or -1. */
int hex_decode(const char *s, size_t slen, uint8_t *out, size_t n);

#endif
