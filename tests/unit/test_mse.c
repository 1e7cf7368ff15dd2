/* Unit tests for src/peer/mse: an initiator and a receiver talk through buffers fed in random
 * chunks; crypto_select both ways; the RC4 keys checked against a reference RC4 written here;
 * wrong SKEY, oversize padding, garbage and truncated input fail cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer/mse.h"
#include "rivulet/error.h"
#include "util/buf.h"
#include "util/sha.h"

static const uint8_t hash_a[20] = "aaaaaaaaaaaaaaaaaaaa";
static const uint8_t hash_b[20] = "bbbbbbbbbbbbbbbbbbbb";
static const uint8_t ia_text[] = "\x13"
                                 "BitTorrent protocol and the rest of a handshake....";

/* The receiver holds two torrents. */
static bool find_skey(void *ud, const struct mse *m, uint8_t skey[20])
{
    (void)ud;
    const uint8_t *have[] = {hash_b, hash_a};
    for (size_t i = 0; i < 2; i++) {
        if (mse_skey_matches(m, have[i])) {
            memcpy(skey, have[i], 20);
            return true;
        }
    }
    return false;
}

static bool find_none(void *ud, const struct mse *m, uint8_t skey[20])
{
    (void)ud;
    (void)m;
    (void)skey;
    return false;
}

/* Reference RC4 (the algorithm in 20 lines) to check the codec's keys independently. */
struct ref_rc4 {
    uint8_t s[256];
    uint8_t i, j;
};

static void ref_init(struct ref_rc4 *r, const uint8_t *key, size_t n)
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

static uint8_t ref_next(struct ref_rc4 *r)
{
    r->i = (uint8_t)(r->i + 1);
    r->j = (uint8_t)(r->j + r->s[r->i]);
    uint8_t t = r->s[r->i];
    r->s[r->i] = r->s[r->j];
    r->s[r->j] = t;
    return r->s[(uint8_t)(r->s[r->i] + r->s[r->j])];
}

struct side {
    struct mse m;
    struct buf in; /* everything received so far */
    int rc;
    size_t used;
};

/* Moves up to a random number of bytes of src (from *off) into dst. */
static void deliver(struct buf *src, size_t *off, struct buf *dst, bool random_chunks)
{
    size_t left = src->len - *off;
    if (left == 0)
        return;
    size_t n = random_chunks ? 1 + (size_t)rand() % left : left;
    assert_int_equal(buf_append(dst, src->data + *off, n), 0);
    *off += n;
}

/* Runs both sides to the end. Returns when both are done or one failed. */
static void run_pair(struct side *a, struct side *b, uint32_t offer, uint32_t accept,
                     uint32_t prefer, bool random_chunks)
{
    struct buf a_out, b_out;
    size_t a_off = 0, b_off = 0;
    buf_init(&a_out, 0);
    buf_init(&b_out, 0);
    buf_init(&a->in, 0);
    buf_init(&b->in, 0);
    struct mse_opts ao = {.initiator = true,
                          .crypto = offer,
                          .skey = hash_a,
                          .ia = ia_text,
                          .ia_len = sizeof(ia_text)};
    struct mse_opts bo = {
        .initiator = false, .crypto = accept, .prefer = prefer, .find_skey = find_skey};
    assert_int_equal(mse_init(&a->m, &ao, &a_out), 0);
    assert_int_equal(mse_init(&b->m, &bo, &b_out), 0);
    a->rc = b->rc = 0;
    for (int round = 0; round < 100000 && (a->rc == 0 || b->rc == 0); round++) {
        deliver(&a_out, &a_off, &b->in, random_chunks);
        deliver(&b_out, &b_off, &a->in, random_chunks);
        if (a->rc == 0)
            a->rc = mse_feed(&a->m, a->in.data, a->in.len, &a_out, &a->used);
        if (b->rc == 0)
            b->rc = mse_feed(&b->m, b->in.data, b->in.len, &b_out, &b->used);
        if (a->rc < 0 || b->rc < 0)
            break;
    }
    buf_free(&a_out);
    buf_free(&b_out);
}

static void free_pair(struct side *a, struct side *b)
{
    mse_free(&a->m);
    mse_free(&b->m);
    buf_free(&a->in);
    buf_free(&b->in);
}

static void rc4_known_answer(void **state)
{
    (void)state;
    /* The classic vector: key "Key", plaintext "Plaintext" (OpenSSL's RC4, or without the
     * legacy provider the codec's own, see unit_mse_no_legacy). */
    static const uint8_t want[] = {0xBB, 0xF3, 0x16, 0xE8, 0xD9, 0x40, 0xAF, 0x0A, 0xD3};
    uint8_t p[] = "Plaintext";
    void *r = mse_rc4_new((const uint8_t *)"Key", 3, 0);
    assert_non_null(r);
    mse_rc4_apply(r, p, 9);
    assert_memory_equal(p, want, 9);
    mse_rc4_free(r);
    struct ref_rc4 ref;
    uint8_t q[] = "Plaintext";
    ref_init(&ref, (const uint8_t *)"Key", 3);
    for (int i = 0; i < 9; i++)
        q[i] ^= ref_next(&ref);
    assert_memory_equal(q, want, 9);
}

/* Both sides agree; every chunking works; the keys are HASH('keyA'/'keyB', S, SKEY) with
 * 1024 bytes dropped. */
static void handshake_rc4(void **state)
{
    (void)state;
    if (!mse_rc4_available())
        skip();
    for (unsigned seed = 1; seed <= 200; seed++) {
        srand(seed);
        struct side a, b;
        run_pair(&a, &b, MSE_RC4 | MSE_PLAIN, MSE_RC4 | MSE_PLAIN, MSE_RC4, seed % 2 == 0);
        assert_int_equal(a.rc, 1);
        assert_int_equal(b.rc, 1);
        assert_int_equal(a.m.selected, MSE_RC4);
        assert_int_equal(b.m.selected, MSE_RC4);
        assert_int_equal(a.used, a.in.len);
        assert_int_equal(b.used, b.in.len);
        assert_memory_equal(a.m.s, b.m.s, MSE_KEY_LEN);
        assert_memory_equal(b.m.skey, hash_a, 20);
        assert_int_equal(b.m.ia.len, sizeof(ia_text));
        assert_memory_equal(b.m.ia.data, ia_text, sizeof(ia_text));
        /* A -> B after the handshake */
        uint8_t msg[100], copy[100];
        for (size_t i = 0; i < sizeof(msg); i++)
            msg[i] = (uint8_t)(i * 7);
        memcpy(copy, msg, sizeof(msg));
        mse_encrypt(&a.m, msg, sizeof(msg));
        assert_memory_not_equal(msg, copy, sizeof(msg));
        mse_decrypt(&b.m, msg, sizeof(msg));
        assert_memory_equal(msg, copy, sizeof(msg));
        mse_encrypt(&b.m, msg, sizeof(msg));
        mse_decrypt(&a.m, msg, sizeof(msg));
        assert_memory_equal(msg, copy, sizeof(msg));
        if (seed == 1) {
            /* keyB's stream: B encrypted 14 bytes of its answer, then 100 above. */
            uint8_t key[20];
            struct sha1_ctx h;
            assert_int_equal(sha1_init(&h), 0);
            sha1_update(&h, "keyB", 4);
            sha1_update(&h, a.m.s, MSE_KEY_LEN);
            sha1_update(&h, hash_a, 20);
            sha1_final(&h, key);
            struct ref_rc4 ref;
            ref_init(&ref, key, 20);
            for (int i = 0; i < 1024 + 14 + 100; i++)
                (void)ref_next(&ref);
            uint8_t z[16] = {0}, r[16];
            mse_encrypt(&b.m, z, sizeof(z));
            for (size_t i = 0; i < sizeof(r); i++)
                r[i] = ref_next(&ref);
            assert_memory_equal(z, r, sizeof(z));
        }
        free_pair(&a, &b);
    }
}

static void select_plaintext(void **state)
{
    (void)state;
    struct side a, b;
    /* The receiver prefers plaintext when both are offered (allow mode). */
    run_pair(&a, &b, MSE_RC4 | MSE_PLAIN, MSE_RC4 | MSE_PLAIN, MSE_PLAIN, true);
    assert_int_equal(a.rc, 1);
    assert_int_equal(b.rc, 1);
    assert_int_equal(a.m.selected, MSE_PLAIN);
    assert_int_equal(b.m.selected, MSE_PLAIN);
    uint8_t msg[4] = {1, 2, 3, 4};
    mse_encrypt(&a.m, msg, 4); /* no-op after plaintext */
    assert_int_equal(msg[0], 1);
    assert_memory_equal(b.m.ia.data, ia_text, sizeof(ia_text));
    free_pair(&a, &b);
    /* Only plaintext offered: selected even by a receiver preferring RC4. */
    run_pair(&a, &b, MSE_PLAIN, MSE_RC4 | MSE_PLAIN, MSE_RC4, false);
    assert_int_equal(a.rc, 1);
    assert_int_equal(b.m.selected, MSE_PLAIN);
    free_pair(&a, &b);
    /* RC4 required by the receiver, plaintext only offered: refused. */
    if (mse_rc4_available()) {
        run_pair(&a, &b, MSE_PLAIN, MSE_RC4, MSE_RC4, false);
        assert_int_equal(b.rc, RV_EPROTO);
        assert_non_null(strstr(b.m.err, "offers crypto"));
        free_pair(&a, &b);
        /* Only RC4 offered, receiver preferring plaintext: RC4. */
        run_pair(&a, &b, MSE_RC4, MSE_RC4 | MSE_PLAIN, MSE_PLAIN, true);
        assert_int_equal(a.rc, 1);
        assert_int_equal(a.m.selected, MSE_RC4);
        free_pair(&a, &b);
    }
}

/* Without OpenSSL's RC4 (unit_mse_no_legacy) the handshake still works, plaintext selected;
 * an offer of RC4 alone has nothing to offer. */
static void without_rc4(void **state)
{
    (void)state;
    if (mse_rc4_available())
        skip();
    struct side a, b;
    run_pair(&a, &b, MSE_RC4 | MSE_PLAIN, MSE_RC4 | MSE_PLAIN, MSE_RC4, true);
    assert_int_equal(a.rc, 1);
    assert_int_equal(b.rc, 1);
    assert_int_equal(a.m.selected, MSE_PLAIN);
    assert_int_equal(b.m.selected, MSE_PLAIN);
    assert_memory_equal(b.m.ia.data, ia_text, sizeof(ia_text));
    free_pair(&a, &b);
    struct mse m;
    struct buf out;
    buf_init(&out, 0);
    struct mse_opts o = {.initiator = true, .crypto = MSE_RC4, .skey = hash_a};
    assert_int_equal(mse_init(&m, &o, &out), RV_EINVAL);
    assert_non_null(strstr(m.err, "RC4 unavailable"));
    mse_free(&m);
    buf_free(&out);
}

static void wrong_skey(void **state)
{
    (void)state;
    struct buf out, in;
    buf_init(&out, 0);
    buf_init(&in, 0);
    struct mse a, b;
    struct mse_opts ao = {.initiator = true, .crypto = MSE_PLAIN | MSE_RC4, .skey = hash_a};
    struct mse_opts bo = {.crypto = MSE_PLAIN | MSE_RC4, .find_skey = find_none};
    struct buf a_out, b_out;
    buf_init(&a_out, 0);
    buf_init(&b_out, 0);
    assert_int_equal(mse_init(&a, &ao, &a_out), 0);
    assert_int_equal(mse_init(&b, &bo, &b_out), 0);
    size_t used;
    assert_int_equal(mse_feed(&a, b_out.data, b_out.len, &a_out, &used), 0);
    int rc = mse_feed(&b, a_out.data, a_out.len, &b_out, &used);
    assert_int_equal(rc, RV_EPROTO);
    assert_non_null(strstr(b.err, "torrent we do not have"));
    mse_free(&a);
    mse_free(&b);
    buf_free(&a_out);
    buf_free(&b_out);
    buf_free(&out);
    buf_free(&in);
}

/* Garbage after a public key: no sync within 628 bytes. The key itself out of range. */
static void garbage(void **state)
{
    (void)state;
    struct mse b;
    struct buf out;
    uint8_t junk[2000];
    size_t used;
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 31 + 5);
    buf_init(&out, 0);
    struct mse_opts bo = {.crypto = MSE_PLAIN | MSE_RC4, .find_skey = find_skey};
    assert_int_equal(mse_init(&b, &bo, &out), 0);
    /* fewer than 96 + 628: still waiting */
    assert_int_equal(mse_feed(&b, junk, 96 + 600, &out, &used), 0);
    assert_int_equal(mse_feed(&b, junk, sizeof(junk), &out, &used), RV_EPROTO);
    assert_non_null(strstr(b.err, "req1"));
    mse_free(&b);
    /* Ya = 1 */
    out.len = 0;
    assert_int_equal(mse_init(&b, &bo, &out), 0);
    uint8_t one[96] = {0};
    one[95] = 1;
    assert_int_equal(mse_feed(&b, one, sizeof(one), &out, &used), RV_EPROTO);
    assert_non_null(strstr(b.err, "public key"));
    mse_free(&b);
    /* the initiator: garbage instead of B's VC */
    struct mse a;
    out.len = 0;
    struct mse_opts ao = {.initiator = true, .crypto = MSE_PLAIN | MSE_RC4, .skey = hash_a};
    assert_int_equal(mse_init(&a, &ao, &out), 0);
    assert_int_equal(mse_feed(&a, junk, sizeof(junk), &out, &used), RV_EPROTO);
    assert_non_null(strstr(a.err, "verification constant"));
    mse_free(&a);
    buf_free(&out);
}

/* Truncated input: every prefix of a valid exchange asks for more, never fails or reads past. */
static void truncated(void **state)
{
    (void)state;
    struct side a, b;
    srand(7);
    run_pair(&a, &b, MSE_PLAIN | MSE_RC4, MSE_PLAIN | MSE_RC4, MSE_RC4, false);
    assert_int_equal(b.rc, 1);
    /* Replay what B received into a fresh receiver with B's key: exact copies of the heap
     * buffer so ASan sees any read past the end. */
    for (size_t n = 0; n < b.in.len; n++) {
        struct mse r = b.m;
        r.state = MSE_B_WAIT_YA;
        r.pos = 0;
        r.enc = r.dec = NULL;
        buf_init(&r.ia, 65535);
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, b.in.data, n);
        struct buf out;
        buf_init(&out, 0);
        size_t used;
        assert_int_equal(mse_feed(&r, copy, n, &out, &used), 0);
        free(copy);
        buf_free(&out);
        mse_free(&r);
    }
    free_pair(&a, &b);
}

/* A crafted initiator message with PadC of 513 bytes: refused. */
static void oversize_padding(void **state)
{
    (void)state;
    struct mse b;
    struct buf out, in;
    buf_init(&out, 0);
    buf_init(&in, 0);
    struct mse_opts bo = {.crypto = MSE_PLAIN | MSE_RC4, .find_skey = find_skey};
    assert_int_equal(mse_init(&b, &bo, &out), 0);
    /* Play A by hand: a public key, then the hashes and an encrypted header. */
    struct mse a;
    struct buf a_out;
    buf_init(&a_out, 0);
    struct mse_opts ao = {.initiator = true, .crypto = MSE_PLAIN | MSE_RC4, .skey = hash_a};
    assert_int_equal(mse_init(&a, &ao, &a_out), 0);
    size_t used;
    assert_int_equal(mse_feed(&a, out.data, out.len, &a_out, &used), 0);
    /* a_out: Ya, PadA, req1, req2^req3, enc(VC, provide, padClen=0, IAlen=0). Rewrite the
     * encrypted len(PadC): xor the plaintext difference into the ciphertext. */
    size_t hdr = a_out.len - 16;  /* VC(8) provide(4) padC(2) IAlen(2) */
    a_out.data[hdr + 12] ^= 0x02; /* 0x0000 -> 0x0201 */
    a_out.data[hdr + 13] ^= 0x01;
    int rc = mse_feed(&b, a_out.data, a_out.len, &out, &used);
    assert_int_equal(rc, RV_EPROTO);
    assert_non_null(strstr(b.err, "padding of 513"));
    mse_free(&a);
    mse_free(&b);
    buf_free(&a_out);
    buf_free(&out);
    buf_free(&in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rc4_known_answer), cmocka_unit_test(handshake_rc4),
        cmocka_unit_test(select_plaintext), cmocka_unit_test(wrong_skey),
        cmocka_unit_test(garbage),          cmocka_unit_test(truncated),
        cmocka_unit_test(oversize_padding), cmocka_unit_test(without_rc4),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
