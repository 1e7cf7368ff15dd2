/* Percent-encoding (RFC 3986 section 2.1) for magnet links and tracker URLs.
 * Both directions allocate their result; the caller owns and frees it. Inputs are borrowed
 * as (pointer, length) and never read past the length. */
#ifndef RV_UTIL_URL_H
#define RV_UTIL_URL_H

#include <stddef.h>
#include <stdint.h>

enum {
    URL_PLUS_AS_SPACE = 1 << 0 /* form-style query values: '+' decodes to a space */
};

/* Decodes s[0..len): each %XX (hex digits in either case) becomes one byte, and with
 * URL_PLUS_AS_SPACE each '+' becomes a space; every other byte is copied. Borrows s.
 * On success returns 0, *out is a new NUL-terminated string the caller frees, and *out_len
 * (if not NULL) its length. Returns RV_EINVAL if a '%' is not followed by two hex digits or
 * the result would hold a NUL byte (decoded or raw) -- *bad_off (if not NULL) is then the
 * offset in s of that '%' or byte -- or RV_ENOMEM; *out is NULL on failure. */
int url_decode(const char *s, size_t len, unsigned flags, char **out, size_t *out_len,
               size_t *bad_off);

/* Percent-encodes n raw bytes for a URL query (info_hash, peer_id): the unreserved
 * characters A-Z a-z 0-9 - . _ ~ are kept, every other byte becomes %XX in uppercase hex.
 * Borrows p. Returns a new NUL-terminated string the caller frees, or NULL when out of
 * memory or n is too large to encode. */
char *url_encode_bytes(const uint8_t *p, size_t n);

#endif
