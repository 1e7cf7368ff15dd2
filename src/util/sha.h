/* SHA-1 and SHA-256 through OpenSSL's libcrypto. */
#ifndef RV_UTIL_SHA_H
#define RV_UTIL_SHA_H

#include <stddef.h>
#include <stdint.h>

void sha1(const void *p, size_t n, uint8_t out[20]);
void sha256(const void *p, size_t n, uint8_t out[32]);

/* Incremental SHA-1 for data that arrives in parts. */
struct sha1_ctx {
    void *md; /* EVP_MD_CTX */
};
int sha1_init(struct sha1_ctx *c);
void sha1_update(struct sha1_ctx *c, const void *p, size_t n);
void sha1_final(struct sha1_ctx *c, uint8_t out[20]); /* also releases c */

/* A SHA-1 stopped after a whole number of 64-byte blocks: the five words of its state and the
 * bytes hashed so far. A message can be hashed partly side by side with others in sha1x's
 * lanes and finished here, or the other way round. */
struct sha1_mid {
    uint32_t h[5];
    uint64_t bytes;
};
void sha1_mid_init(struct sha1_mid *m);
/* Hashes the next n bytes, n a multiple of 64 (the rest of n is ignored). */
void sha1_mid_update(struct sha1_mid *m, const void *p, size_t n);
/* Hashes the last n bytes (any length), pads, and writes the digest. */
void sha1_mid_final(const struct sha1_mid *m, const void *p, size_t n, uint8_t out[20]);

#endif
