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

#endif
