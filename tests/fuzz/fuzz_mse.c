/* libFuzzer target: the MSE handshake codec (src/peer/mse). Random bytes could never get past
 * the Diffie-Hellman step, so a real initiator and receiver exchange public keys and the input
 * becomes what follows, encrypted with the real keys: after HASH('req1', S) and the SKEY hash
 * it is the initiator's VC, crypto_provide, len(PadC), PadC, len(IA), IA as the receiver
 * decrypts them; after the receiver's public key it is VC, crypto_select, len(PadD), PadD as the
 * initiator decrypts them. The first byte picks the methods offered and accepted and the size
 * of the chunks the bytes arrive in. Both sides must end in done, failed or waiting, and never
 * read past what they were given. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "peer/mse.h"
#include "util/buf.h"
#include "util/sha.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t skey[20] = "fuzzfuzzfuzzfuzzfuzz";

static bool find_skey(void *ud, const struct mse *m, uint8_t out[20])
{
    (void)ud;
    if (!mse_skey_matches(m, skey))
        return false;
    memcpy(out, skey, 20);
    return true;
}

static void key_hash(const char *name, const uint8_t s[MSE_KEY_LEN], uint8_t out[20])
{
    struct sha1_ctx h;
    if (sha1_init(&h) != 0)
        abort();
    sha1_update(&h, name, 4);
    sha1_update(&h, s, MSE_KEY_LEN);
    sha1_update(&h, skey, 20);
    sha1_final(&h, out);
}

/* Feeds in[0..len) to m chunk bytes at a time, as a connection would. */
static void feed(struct mse *m, const uint8_t *in, size_t len, size_t chunk, struct buf *out)
{
    size_t used;
    for (size_t n = chunk < len ? chunk : len;; n = n + chunk < len ? n + chunk : len) {
        /* an exact copy, so ASan sees a read past the end */
        uint8_t *copy = malloc(n ? n : 1);
        if (copy == NULL)
            abort();
        memcpy(copy, in, n);
        int rc = mse_feed(m, copy, n, out, &used);
        free(copy);
        if (rc != 0) {
            if (rc == 1 && used > n)
                abort();
            return;
        }
        if (n == len)
            return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 70000 || !mse_rc4_available())
        return 0;
    uint8_t cfg = data[0];
    data++;
    size--;
    uint32_t offer = cfg & 3, accept = (cfg >> 2) & 3;
    size_t chunk = 1 + ((size_t)(cfg >> 4) * 37);
    struct mse a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    struct buf a_out, b_out, to_b, to_a;
    buf_init(&a_out, 0);
    buf_init(&b_out, 0);
    buf_init(&to_b, 0);
    buf_init(&to_a, 0);
    struct mse_opts ao = {.initiator = true, .crypto = offer ? offer : MSE_RC4, .skey = skey};
    struct mse_opts bo = {.crypto = accept ? accept : MSE_RC4,
                          .prefer = cfg & 0x80 ? MSE_PLAIN : MSE_RC4,
                          .find_skey = find_skey};
    if (mse_init(&a, &ao, &a_out) != 0 || mse_init(&b, &bo, &b_out) != 0)
        goto done;
    size_t ya_len = a_out.len, yb_len = b_out.len, used;
    /* A learns S from B's key (and queues its third message, unused here). */
    if (mse_feed(&a, b_out.data, b_out.len, &a_out, &used) != 0)
        goto done;
    uint8_t k[20], h1[20], h2[20], h3[20];
    static const char req1[4] = "req1", req2[4] = "req2", req3[4] = "req3";
    uint8_t tmp[MSE_KEY_LEN + 4];
    memcpy(tmp, req1, 4);
    memcpy(tmp + 4, a.s, MSE_KEY_LEN);
    sha1(tmp, sizeof(tmp), h1);
    memcpy(tmp, req3, 4);
    sha1(tmp, sizeof(tmp), h3);
    uint8_t t2[24];
    memcpy(t2, req2, 4);
    memcpy(t2 + 4, skey, 20);
    sha1(t2, sizeof(t2), h2);
    for (int i = 0; i < 20; i++)
        h2[i] ^= h3[i];

    /* To B: Ya, PadA, the two hashes, then the input encrypted with keyA. */
    buf_append(&to_b, a_out.data, ya_len);
    buf_append(&to_b, h1, 20);
    buf_append(&to_b, h2, 20);
    size_t start = to_b.len;
    buf_append(&to_b, data, size);
    key_hash("keyA", a.s, k);
    void *rc4 = mse_rc4_new(k, 20, 1024);
    if (rc4 == NULL)
        abort();
    mse_rc4_apply(rc4, to_b.data + start, size);
    mse_rc4_free(rc4);
    b_out.len = yb_len;
    feed(&b, to_b.data, to_b.len, chunk, &b_out);

    /* To A: Yb, PadB, then the input encrypted with keyB. */
    buf_append(&to_a, b_out.data, yb_len);
    start = to_a.len;
    buf_append(&to_a, data, size);
    key_hash("keyB", a.s, k);
    rc4 = mse_rc4_new(k, 20, 1024);
    if (rc4 == NULL)
        abort();
    mse_rc4_apply(rc4, to_a.data + start, size);
    mse_rc4_free(rc4);
    /* A has parsed Yb already; feed() hands it the whole stream from the start again. */
    feed(&a, to_a.data, to_a.len, chunk, &a_out);
done:
    mse_free(&a);
    mse_free(&b);
    buf_free(&a_out);
    buf_free(&b_out);
    buf_free(&to_b);
    buf_free(&to_a);
    return 0;
}
