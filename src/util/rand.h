/* Random bytes from OpenSSL's CSPRNG, and the peer ids built from them. */
#ifndef RV_UTIL_RAND_H
#define RV_UTIL_RAND_H

#include <stddef.h>
#include <stdint.h>

/* Fills p with n random bytes. Returns 0, or -1 if the CSPRNG failed. */
int rand_bytes(void *p, size_t n);
uint32_t rand_u32(void);
/* An Azureus-style peer id: "-RV" + version digits + "-" + 12 random alphanumerics. */
void rand_peer_id(uint8_t out[20]);

#endif
