/* RFC 4648 base32 (alphabet A-Z 2-7), used by the 32-character btih form of magnet links.
 * No allocation: callers pass buffers of the documented size. */
#ifndef RV_UTIL_BASE32_H
#define RV_UTIL_BASE32_H

#include <stddef.h>
#include <stdint.h>

/* Characters that encode n bytes without padding: ceil(8n / 5). */
#define BASE32_ENCODED_LEN(n) (((n)*8 + 4) / 5)

/* Decodes s[0..slen) into exactly n bytes at out. Letters may be either case; '=' padding
 * to a multiple of 8 characters is allowed but not needed. Returns 0, or -1 if s holds a
 * character outside the alphabet, does not encode exactly n bytes, or has non-zero bits
 * after the last byte (a non-canonical encoding). out may be partly written on failure. */
int base32_decode(const char *s, size_t slen, uint8_t *out, size_t n);

/* Writes BASE32_ENCODED_LEN(n) uppercase characters (no padding) and a NUL to out. */
void base32_encode(const uint8_t *p, size_t n, char *out);

#endif
