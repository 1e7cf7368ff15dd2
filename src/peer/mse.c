/* MSE handshake, one explicit state per step of the spec (Vuze wiki "Message Stream
 * Encryption"):
 *   A->B: Ya, PadA
 *   B->A: Yb, PadB
 *   A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
 *         ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
 *   B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD)
 * DH over the 768-bit prime with BIGNUM; RC4 keyed with HASH('keyA'|'keyB', S, SKEY), the first
 * 1024 bytes of each keystream discarded. */
#include "peer/mse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <uv.h>

#include "rivulet/error.h"
#include "util/be.h"
#include "util/rand.h"
#include "util/sha.h"

static const char prime_hex[] =
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E34"
    "04DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000"
    "090563";

/* Spec: the receiver finds HASH('req1', S) within 628 bytes after Ya (PadA is at most 512), the
 * initiator B's VC within 616 bytes after Yb (PadB at most 512). */
#define SYNC_REQ1_MAX 628
#define SYNC_VC_MAX 616

/* ---- RC4 from the legacy provider, in a library context of our own ---- */

static uv_once_t rc4_once = UV_ONCE_INIT;
static EVP_CIPHER *rc4_cipher;

static void rc4_load(void)
{
    OSSL_LIB_CTX *lib = OSSL_LIB_CTX_new();
    if (lib == NULL)
        return;
    if (OSSL_PROVIDER_load(lib, "legacy") == NULL) {
        OSSL_LIB_CTX_free(lib);
        return;
    }
    /* lib and the provider live as long as the process: the cipher refers to them. */
    rc4_cipher = EVP_CIPHER_fetch(lib, "RC4", NULL);
}

bool mse_rc4_available(void)
{
    uv_once(&rc4_once, rc4_load);
    return rc4_cipher != NULL;
}

/* One direction's RC4: OpenSSL's, or, when the legacy provider is missing, a plain C one kept
 * for the handshake alone (the MSE handshake is RC4-encrypted whatever crypto_select says, so
 * without it not even plaintext could be negotiated); the stream then stays plaintext. */
struct rc4 {
    EVP_CIPHER_CTX *evp;
    uint8_t s[256];
    uint8_t i, j;
};

static void rc4_plain_init(struct rc4 *r, const uint8_t *key, size_t n)
{
    for (int i = 0; i < 256; i++)
        r->s[i] = (uint8_t)i;
    uint8_t j = 0;
    for (int i = 0; i < 256; i++) {
        j = (uint8_t)(j + r->s[i] + key[(size_t)i % n]);
        uint8_t t = r->s[i];
        r->s[i] = r->s[j];
        r->s[j] = t;
    }
    r->i = r->j = 0;
}

void *mse_rc4_new(const uint8_t *key, size_t keylen, size_t drop)
{
    if (keylen == 0 || keylen > 256)
        return NULL;
    struct rc4 *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    if (mse_rc4_available()) {
        const OSSL_PARAM none[] = {OSSL_PARAM_END};
        r->evp = EVP_CIPHER_CTX_new();
        if (r->evp == NULL || EVP_EncryptInit_ex2(r->evp, rc4_cipher, NULL, NULL, none) != 1 ||
            EVP_CIPHER_CTX_set_key_length(r->evp, (int)keylen) != 1 ||
            EVP_EncryptInit_ex2(r->evp, NULL, key, NULL, NULL) != 1) {
            mse_rc4_free(r);
            return NULL;
        }
    } else {
        rc4_plain_init(r, key, keylen);
    }
    uint8_t spill[1024];
    memset(spill, 0, sizeof(spill));
    while (drop > 0) {
        size_t k = drop < sizeof(spill) ? drop : sizeof(spill);
        mse_rc4_apply(r, spill, k);
        drop -= k;
    }
    return r;
}

void mse_rc4_free(void *rc4)
{
    struct rc4 *r = rc4;
    if (r == NULL)
        return;
    EVP_CIPHER_CTX_free(r->evp);
    free(r);
}

/* An RC4 state keyed with HASH(name, S, SKEY), its first 1024 bytes of keystream spent. */
static void *rc4_new(const char *name, const uint8_t s[MSE_KEY_LEN], const uint8_t skey[20])
{
    uint8_t key[20];
    struct sha1_ctx h;
    if (sha1_init(&h) != 0)
        return NULL;
    sha1_update(&h, name, 4);
    sha1_update(&h, s, MSE_KEY_LEN);
    sha1_update(&h, skey, 20);
    sha1_final(&h, key);
    return mse_rc4_new(key, sizeof(key), 1024);
}

void mse_rc4_apply(void *rc4, uint8_t *p, size_t n)
{
    struct rc4 *r = rc4;
    if (r->evp == NULL) {
        for (size_t k = 0; k < n; k++) {
            r->i = (uint8_t)(r->i + 1);
            r->j = (uint8_t)(r->j + r->s[r->i]);
            uint8_t t = r->s[r->i];
            r->s[r->i] = r->s[r->j];
            r->s[r->j] = t;
            p[k] ^= r->s[(uint8_t)(r->s[r->i] + r->s[r->j])];
        }
        return;
    }
    /* RC4 is a stream cipher: output length equals input length, in place is allowed. */
    while (n > 0) {
        int chunk = n > (1u << 30) ? 1 << 30 : (int)n;
        int outl = 0;
        EVP_EncryptUpdate(r->evp, p, &outl, p, chunk);
        p += chunk;
        n -= (size_t)chunk;
    }
}

void mse_encrypt(struct mse *m, uint8_t *p, size_t n)
{
    if (m->enc != NULL)
        mse_rc4_apply(m->enc, p, n);
}

void mse_decrypt(struct mse *m, uint8_t *p, size_t n)
{
    if (m->dec != NULL)
        mse_rc4_apply(m->dec, p, n);
}

/* ---- helpers ---- */

static int failf(struct mse *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int failf(struct mse *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof(m->err), fmt, ap);
    va_end(ap);
    m->state = MSE_FAILED;
    return RV_EPROTO;
}

static void hash3(const char *name, const uint8_t *a, size_t alen, uint8_t out[20])
{
    struct sha1_ctx h;
    if (sha1_init(&h) != 0) {
        memset(out, 0, 20);
        return;
    }
    sha1_update(&h, name, 4);
    sha1_update(&h, a, alen);
    sha1_final(&h, out);
}

/* y = 2^x mod P (public), or s = y^x mod P (secret); out is 96 bytes big-endian. */
static int dh_modexp(const uint8_t *base, size_t blen, const uint8_t x[20], uint8_t out[96],
                     bool check_base)
{
    int rc = RV_ENOMEM;
    BN_CTX *bc = BN_CTX_new();
    BIGNUM *p = NULL, *b = BN_new(), *e = BN_new(), *r = BN_new(), *pm1 = BN_new();
    if (bc == NULL || b == NULL || e == NULL || r == NULL || pm1 == NULL ||
        BN_hex2bn(&p, prime_hex) == 0)
        goto done;
    if (BN_bin2bn(base, (int)blen, b) == NULL || BN_bin2bn(x, 20, e) == NULL ||
        BN_copy(pm1, p) == NULL || BN_sub_word(pm1, 1) != 1)
        goto done;
    /* A peer's key of 0, 1 or P-1 (or beyond P) would force a known secret. */
    if (check_base && (BN_cmp(b, BN_value_one()) <= 0 || BN_cmp(b, pm1) >= 0)) {
        rc = RV_EPROTO;
        goto done;
    }
    BN_set_flags(e, BN_FLG_CONSTTIME);
    if (BN_mod_exp(r, b, e, p, bc) != 1 || BN_bn2binpad(r, out, 96) != 96)
        goto done;
    rc = 0;
done:
    BN_clear_free(e);
    BN_free(b);
    BN_free(r);
    BN_free(p);
    BN_free(pm1);
    BN_CTX_free(bc);
    return rc;
}

static int append_pad(struct buf *out, size_t max)
{
    uint8_t pad[MSE_PAD_MAX];
    size_t n = max ? rand_u32() % (max + 1) : 0;
    if (n > 0 && rand_bytes(pad, n) != 0)
        return RV_ENOMEM;
    return buf_append(out, pad, n);
}

/* Finds needle (n bytes) in p[from..to). */
static bool find(const uint8_t *p, size_t from, size_t to, const uint8_t *needle, size_t n,
                 size_t *at)
{
    for (size_t i = from; i + n <= to; i++) {
        if (memcmp(p + i, needle, n) == 0) {
            *at = i;
            return true;
        }
    }
    return false;
}

/* Both sides' RC4 states from S and SKEY: the initiator encrypts with keyA. */
static int make_ciphers(struct mse *m)
{
    bool a = m->opts.initiator;
    m->enc = rc4_new(a ? "keyA" : "keyB", m->s, m->skey);
    m->dec = rc4_new(a ? "keyB" : "keyA", m->s, m->skey);
    return m->enc != NULL && m->dec != NULL ? 0 : RV_ENOMEM;
}

/* ---- the two sides ---- */

int mse_init(struct mse *m, const struct mse_opts *o, struct buf *out)
{
    memset(m, 0, sizeof(*m));
    m->opts = *o;
    m->opts.ia = NULL;
    m->state = o->initiator ? MSE_A_WAIT_YB : MSE_B_WAIT_YA;
    buf_init(&m->ia, 65535);
    if (o->initiator) {
        memcpy(m->skey, o->skey, 20);
        if (o->ia_len > 0 && buf_append(&m->ia, o->ia, o->ia_len) != 0)
            return RV_ENOMEM;
    }
    /* Without RC4 only plaintext can be offered or accepted. */
    if (!mse_rc4_available())
        m->opts.crypto &= ~MSE_RC4;
    if ((m->opts.crypto & (MSE_PLAIN | MSE_RC4)) == 0) {
        snprintf(m->err, sizeof(m->err), "no crypto method left to offer (RC4 unavailable)");
        m->state = MSE_FAILED;
        return RV_EINVAL;
    }
    if (rand_bytes(m->x, sizeof(m->x)) != 0)
        return RV_ENOMEM;
    static const uint8_t two = 2;
    int rc = dh_modexp(&two, 1, m->x, m->y, false);
    if (rc != 0)
        return rc;
    if ((rc = buf_append(out, m->y, sizeof(m->y))) != 0)
        return rc;
    return append_pad(out, MSE_PAD_MAX);
}

void mse_free(struct mse *m)
{
    mse_rc4_free(m->enc);
    mse_rc4_free(m->dec);
    m->enc = m->dec = NULL;
    buf_free(&m->ia);
    memset(m->x, 0, sizeof(m->x));
}

bool mse_skey_matches(const struct mse *m, const uint8_t skey[20])
{
    uint8_t h[20];
    hash3("req2", skey, 20, h);
    return memcmp(h, m->req2x, 20) == 0;
}

/* The initiator's third message, once S is known. */
static int send_a_step2(struct mse *m, struct buf *out)
{
    uint8_t h1[20], h2[20], h3[20], fixed[14 + 2];
    hash3("req1", m->s, sizeof(m->s), h1);
    hash3("req2", m->skey, 20, h2);
    hash3("req3", m->s, sizeof(m->s), h3);
    for (int i = 0; i < 20; i++)
        h2[i] ^= h3[i];
    if (make_ciphers(m) != 0)
        return RV_ENOMEM;
    /* B's VC is 8 zero bytes through keyB: what we scan for. */
    void *probe = rc4_new("keyB", m->s, m->skey);
    if (probe == NULL)
        return RV_ENOMEM;
    memset(m->sync, 0, 8);
    mse_rc4_apply(probe, m->sync, 8);
    mse_rc4_free(probe);
    memset(fixed, 0, 8);                       /* VC */
    be_put32(fixed + 8, m->opts.crypto);       /* crypto_provide */
    be_put16(fixed + 12, 0);                   /* len(PadC): none */
    be_put16(fixed + 14, (uint16_t)m->ia.len); /* len(IA) */
    size_t start = out->len;
    if (buf_append(out, h1, 20) != 0 || buf_append(out, h2, 20) != 0 ||
        buf_append(out, fixed, sizeof(fixed)) != 0 || buf_append(out, m->ia.data, m->ia.len) != 0)
        return RV_ENOMEM;
    mse_encrypt(m, out->data + start + 40, out->len - start - 40);
    buf_free(&m->ia);
    buf_init(&m->ia, 65535);
    return 0;
}

/* The receiver's answer once crypto_provide is read. */
static int send_b_step(struct mse *m, struct buf *out)
{
    uint8_t msg[14];
    memset(msg, 0, 8);
    be_put32(msg + 8, m->selected);
    be_put16(msg + 12, 0); /* len(PadD): none */
    size_t start = out->len;
    if (buf_append(out, msg, sizeof(msg)) != 0)
        return RV_ENOMEM;
    mse_encrypt(m, out->data + start, sizeof(msg));
    return 0;
}

/* Decrypts n bytes starting at p[m->pos] into dst (or discards them) and moves on. */
static void take(struct mse *m, const uint8_t *p, size_t n, uint8_t *dst)
{
    uint8_t scratch[MSE_PAD_MAX];
    while (n > 0) {
        size_t k = n < sizeof(scratch) ? n : sizeof(scratch);
        uint8_t *d = dst != NULL ? dst : scratch;
        memcpy(d, p + m->pos, k);
        mse_decrypt(m, d, k);
        m->pos += k;
        n -= k;
        if (dst != NULL)
            dst += k;
    }
}

int mse_feed(struct mse *m, const uint8_t *p, size_t len, struct buf *out, size_t *used)
{
    for (;;) {
        size_t avail = len > m->pos ? len - m->pos : 0;
        switch (m->state) {
        case MSE_A_WAIT_YB:
        case MSE_B_WAIT_YA: {
            if (avail < MSE_KEY_LEN)
                return 0;
            int rc = dh_modexp(p, MSE_KEY_LEN, m->x, m->s, true);
            if (rc == RV_EPROTO)
                return failf(m, "MSE: the peer's public key is out of range");
            if (rc != 0)
                return rc;
            m->pos = MSE_KEY_LEN;
            if (m->state == MSE_A_WAIT_YB) {
                if ((rc = send_a_step2(m, out)) != 0)
                    return rc;
                m->state = MSE_A_SYNC_VC;
            } else {
                hash3("req1", m->s, sizeof(m->s), m->sync);
                m->state = MSE_B_SYNC_REQ1;
            }
            break;
        }
        case MSE_A_SYNC_VC:
        case MSE_B_SYNC_REQ1: {
            bool a = m->state == MSE_A_SYNC_VC;
            size_t n = a ? 8 : 20, max = a ? SYNC_VC_MAX : SYNC_REQ1_MAX;
            size_t end = len < MSE_KEY_LEN + max ? len : MSE_KEY_LEN + max, at;
            if (!find(p, MSE_KEY_LEN, end, m->sync, n, &at)) {
                if (len >= MSE_KEY_LEN + max)
                    return failf(m, "MSE: no %s within %zu bytes of padding",
                                 a ? "verification constant" : "req1 hash", max);
                return 0;
            }
            m->pos = at;
            if (a) {
                uint8_t vc[8];
                take(m, p, 8, vc); /* keeps the keystream in step */
                m->state = MSE_A_SELECT;
            } else {
                m->pos += 20;
                m->state = MSE_B_SKEY;
            }
            break;
        }
        case MSE_A_SELECT: {
            uint8_t b[6];
            if (avail < sizeof(b))
                return 0;
            take(m, p, sizeof(b), b);
            uint32_t sel = be_get32(b);
            m->need = be_get16(b + 4);
            if ((sel != MSE_PLAIN && sel != MSE_RC4) || (sel & m->opts.crypto) == 0)
                return failf(m, "MSE: the peer selected crypto 0x%x, we offered 0x%x",
                             (unsigned)sel, (unsigned)m->opts.crypto);
            if (m->need > MSE_PAD_MAX)
                return failf(m, "MSE: padding of %zu bytes (at most %d)", m->need, MSE_PAD_MAX);
            m->selected = sel;
            m->state = MSE_A_PADD;
            break;
        }
        case MSE_A_PADD:
        case MSE_B_PADC:
            if (avail < m->need)
                return 0;
            take(m, p, m->need, NULL);
            m->state = m->state == MSE_A_PADD ? MSE_DONE : MSE_B_IALEN;
            break;
        case MSE_B_SKEY: {
            uint8_t h3[20];
            if (avail < 20)
                return 0;
            hash3("req3", m->s, sizeof(m->s), h3);
            for (int i = 0; i < 20; i++)
                m->req2x[i] = p[m->pos + (size_t)i] ^ h3[i];
            m->pos += 20;
            if (m->opts.find_skey == NULL || !m->opts.find_skey(m->opts.ud, m, m->skey))
                return failf(m, "MSE: the peer asked for a torrent we do not have");
            if (make_ciphers(m) != 0)
                return RV_ENOMEM;
            m->state = MSE_B_VC;
            break;
        }
        case MSE_B_VC: {
            uint8_t b[14];
            static const uint8_t zero[8];
            if (avail < sizeof(b))
                return 0;
            take(m, p, sizeof(b), b);
            if (memcmp(b, zero, 8) != 0)
                return failf(m, "MSE: wrong verification constant");
            uint32_t provide = be_get32(b + 8), both = provide & m->opts.crypto;
            m->need = be_get16(b + 12);
            if (m->need > MSE_PAD_MAX)
                return failf(m, "MSE: padding of %zu bytes (at most %d)", m->need, MSE_PAD_MAX);
            if (both == 0)
                return failf(m, "MSE: the peer offers crypto 0x%x, we accept 0x%x",
                             (unsigned)provide, (unsigned)m->opts.crypto);
            if ((both & (MSE_PLAIN | MSE_RC4)) == (MSE_PLAIN | MSE_RC4))
                m->selected = m->opts.prefer == MSE_PLAIN ? MSE_PLAIN : MSE_RC4;
            else
                m->selected = both & MSE_RC4 ? MSE_RC4 : MSE_PLAIN;
            int rc = send_b_step(m, out);
            if (rc != 0)
                return rc;
            m->state = MSE_B_PADC;
            break;
        }
        case MSE_B_IALEN: {
            uint8_t b[2];
            if (avail < 2)
                return 0;
            take(m, p, 2, b);
            m->need = be_get16(b);
            m->state = MSE_B_IA;
            break;
        }
        case MSE_B_IA:
            if (avail < m->need)
                return 0;
            if (buf_reserve(&m->ia, m->need) != 0)
                return RV_ENOMEM;
            take(m, p, m->need, m->ia.data);
            m->ia.len = m->need;
            m->state = MSE_DONE;
            break;
        case MSE_DONE:
            if (m->selected == MSE_PLAIN) {
                /* Only the handshake itself was encrypted. */
                mse_rc4_free(m->enc);
                mse_rc4_free(m->dec);
                m->enc = m->dec = NULL;
            }
            *used = m->pos;
            return 1;
        case MSE_FAILED:
        default:
            return RV_EPROTO;
        }
    }
}
