#include "util/sha.h"

#include <openssl/evp.h>

void sha1(const void *p, size_t n, uint8_t out[20])
{
    EVP_Digest(p, n, out, NULL, EVP_sha1(), NULL);
}

void sha256(const void *p, size_t n, uint8_t out[32])
{
    EVP_Digest(p, n, out, NULL, EVP_sha256(), NULL);
}

int sha1_init(struct sha1_ctx *c)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL)
        return -1;
    if (EVP_DigestInit_ex(md, EVP_sha1(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return -1;
    }
    c->md = md;
    return 0;
}

void sha1_update(struct sha1_ctx *c, const void *p, size_t n)
{
    EVP_DigestUpdate(c->md, p, n);
}

void sha1_final(struct sha1_ctx *c, uint8_t out[20])
{
    EVP_DigestFinal_ex(c->md, out, NULL);
    EVP_MD_CTX_free(c->md);
    c->md = NULL;
}
