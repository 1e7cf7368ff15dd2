#include "util/sha.h"

/* struct sha1_mid needs SHA_CTX, whose words OpenSSL 3 still declares (the EVP interface has
 * no way to start from a given state); its SHA1_* functions are deprecated, not gone. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>

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

void sha1_mid_init(struct sha1_mid *m)
{
    static const uint32_t iv[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    memcpy(m->h, iv, sizeof(iv));
    m->bytes = 0;
}

static void mid_to_ctx(const struct sha1_mid *m, SHA_CTX *c)
{
    SHA1_Init(c);
    c->h0 = m->h[0];
    c->h1 = m->h[1];
    c->h2 = m->h[2];
    c->h3 = m->h[3];
    c->h4 = m->h[4];
    uint64_t bits = m->bytes * 8;
    c->Nl = (SHA_LONG)bits;
    c->Nh = (SHA_LONG)(bits >> 32);
}

void sha1_mid_update(struct sha1_mid *m, const void *p, size_t n)
{
    n &= ~(size_t)63;
    if (n == 0)
        return;
    SHA_CTX c;
    mid_to_ctx(m, &c);
    SHA1_Update(&c, p, n); /* whole blocks: nothing is left buffered in c */
    m->h[0] = c.h0;
    m->h[1] = c.h1;
    m->h[2] = c.h2;
    m->h[3] = c.h3;
    m->h[4] = c.h4;
    m->bytes += n;
}

void sha1_mid_final(const struct sha1_mid *m, const void *p, size_t n, uint8_t out[20])
{
    SHA_CTX c;
    mid_to_ctx(m, &c);
    SHA1_Update(&c, p, n);
    SHA1_Final(out, &c);
}
