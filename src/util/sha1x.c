/* Eight or sixteen SHA-1 digests at once (see sha1x.h). Lane k of every vector belongs to
 * message k: each 64-byte block of the messages is loaded as rows, transposed so that vector t
 * holds word t of every message, and the eighty rounds run once for all of them. The round
 * function is one vpternlogd (choose, parity or majority of b, c, d), the rotations are vprold.
 * Sixteen lanes use 512-bit registers, eight use 256-bit ones (AVX-512VL) for the rounds and
 * 512-bit ones to load and transpose: on an AMD EPYC, which splits 512-bit work in two, eight
 * lanes did 3,400 MB/s and sixteen 4,300; on an Intel Xeon, 2,800-3,170 and 4,300-5,000. */
#include "util/sha1x.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "util/sha.h"
#include "util/stats.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SHA1X_BUILT 1
#include <immintrin.h>
#else
#define SHA1X_BUILT 0
#endif

static atomic_bool disabled;

void sha1x_enable(bool on)
{
    atomic_store(&disabled, !on);
}

bool sha1x_usable(void)
{
#if SHA1X_BUILT
    if (atomic_load(&disabled))
        return false;
    __builtin_cpu_init(); /* also safe before the constructors have run */
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
#else
    return false;
#endif
}

static unsigned min_messages;
static pthread_once_t min_once = PTHREAD_ONCE_INIT;

#define CAL_BYTES (32u << 10)
#define CAL_TRIES 9

static void measure_min_messages(void)
{
    uint8_t *buf = malloc(8 * CAL_BYTES);
    if (buf == NULL)
        return; /* 0: one at a time, as without lanes */
    for (size_t i = 0; i < 8 * CAL_BYTES; i++)
        buf[i] = (uint8_t)(i * 131u);
    const uint8_t *p[SHA1X_LANES];
    for (unsigned k = 0; k < SHA1X_LANES; k++)
        p[k] = buf + (k % 8) * CAL_BYTES;
    uint8_t out[SHA1X_LANES][20];
    uint64_t one = UINT64_MAX, eight = UINT64_MAX;
    for (int i = -1; i < CAL_TRIES; i++) { /* i = -1 warms up, and is not counted */
        uint64_t t0 = stats_now_ns();
        sha1(buf, CAL_BYTES, out[0]);
        uint64_t t1 = stats_now_ns();
        struct sha1x x;
        sha1x_init(&x, 8);
        sha1x_final(&x, p, CAL_BYTES, out);
        uint64_t t2 = stats_now_ns();
        if (i >= 0 && t1 - t0 < one)
            one = t1 - t0;
        if (i >= 0 && t2 - t1 < eight)
            eight = t2 - t1;
    }
    free(buf);
    /* Lanes gain for k messages when eight lanes take less than k one-at-a-time hashes; by a
     * tenth at least, so that a noisy measure near the line does not pick lanes that lose. */
    unsigned k = one > 0 ? (unsigned)(eight * 11 / (one * 10)) + 1 : 9;
    min_messages = k < 2 ? 2 : k > 8 ? 0 : k;
}

unsigned sha1x_min_messages(void)
{
    if (!sha1x_usable())
        return 0;
    pthread_once(&min_once, measure_min_messages);
    return min_messages;
}

static const uint32_t sha1_iv[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u,
                                    0xC3D2E1F0u};

void sha1x_init(struct sha1x *s, unsigned lanes)
{
    for (int w = 0; w < 5; w++)
        for (int k = 0; k < SHA1X_LANES; k++)
            s->h[w][k] = sha1_iv[w];
    s->bytes = 0;
    s->lanes = lanes <= 8 ? 8 : SHA1X_LANES;
}

#if SHA1X_BUILT
#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl")))

/* The first two steps of both transposes, on n rows of vectors of type V (_mm512
 * functions): within each group of four rows, each 128-bit lane's 4 x 4 words transposed. */
#define TRANSPOSE_4X4(V, r, t, n)                                                                  \
    do {                                                                                           \
        for (int i = 0; i < (n); i += 2) {                                                         \
            t[i] = V##_unpacklo_epi32(r[i], r[i + 1]);                                             \
            t[i + 1] = V##_unpackhi_epi32(r[i], r[i + 1]);                                         \
        }                                                                                          \
        for (int i = 0; i < (n); i += 4) {                                                         \
            r[i] = V##_unpacklo_epi64(t[i], t[i + 2]);                                             \
            r[i + 1] = V##_unpackhi_epi64(t[i], t[i + 2]);                                         \
            r[i + 2] = V##_unpacklo_epi64(t[i + 1], t[i + 3]);                                     \
            r[i + 3] = V##_unpackhi_epi64(t[i + 1], t[i + 3]);                                     \
        }                                                                                          \
    } while (0)

/* r[k] holds the sixteen words of message k; afterwards r[t] holds word t of every message. */
TARGET static inline void transpose16(__m512i r[16])
{
    __m512i t[16];
    TRANSPOSE_4X4(_mm512, r, t, 16);
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xDD);
        t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xDD);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xDD);
        r[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xDD);
    }
}

/* One round t (0..79) on vectors of type V (_mm512 or _mm256 functions): f is the vpternlogd
 * table of the round's function of b, c, d. For t >= 16 the schedule word
 * W[t] = rol1(W[t-3] ^ W[t-8] ^ W[t-14] ^ W[t-16]) replaces W[t-16] in the ring w. */
#define ROUND(V, t, f, k)                                                                          \
    do {                                                                                           \
        if ((t) >= 16) {                                                                           \
            w[(t)&15] = V##_rol_epi32(                                                             \
                V##_ternarylogic_epi32(V##_ternarylogic_epi32(w[((t)-3) & 15], w[((t)-8) & 15],    \
                                                              w[((t)-14) & 15], 0x96),             \
                                       w[(t)&15], w[(t)&15], 0x3C),                                \
                1);                                                                                \
        }                                                                                          \
        fx = V##_ternarylogic_epi32(b, c, d, (f));                                                 \
        ex = V##_add_epi32(e, V##_add_epi32(V##_set1_epi32((int)(k)), w[(t)&15]));                 \
        e = d;                                                                                     \
        d = c;                                                                                     \
        c = V##_rol_epi32(b, 30);                                                                  \
        b = a;                                                                                     \
        a = V##_add_epi32(V##_add_epi32(V##_rol_epi32(a, 5), fx), ex);                             \
    } while (0)

/* The eighty rounds on a, b, c, d, e with the sixteen schedule words in w. */
#define ROUNDS(V)                                                                                  \
    do {                                                                                           \
        _Pragma("GCC unroll 20") for (int t = 0; t < 20; t++)                                      \
            ROUND(V, t, 0xCA, 0x5A827999u); /* (b & c) | (~b & d) */                               \
        _Pragma("GCC unroll 20") for (int t = 20; t < 40; t++)                                     \
            ROUND(V, t, 0x96, 0x6ED9EBA1u); /* b ^ c ^ d */                                        \
        _Pragma("GCC unroll 20") for (int t = 40; t < 60; t++)                                     \
            ROUND(V, t, 0xE8, 0x8F1BBCDCu); /* majority */                                         \
        _Pragma("GCC unroll 20") for (int t = 60; t < 80; t++) ROUND(V, t, 0x96, 0xCA62C1D6u);     \
    } while (0)

/* One 64-byte block of every lane, its big-endian words w[0..15] transposed (vectors of type
 * T): the eighty rounds, added to the state a..e. */
#define COMPRESS(V, T)                                                                             \
    do {                                                                                           \
        T a0 = a, b0 = b, c0 = c, d0 = d, e0 = e;                                                  \
        ROUNDS(V);                                                                                 \
        a = V##_add_epi32(a, a0);                                                                  \
        b = V##_add_epi32(b, b0);                                                                  \
        c = V##_add_epi32(c, c0);                                                                  \
        d = V##_add_epi32(d, d0);                                                                  \
        e = V##_add_epi32(e, e0);                                                                  \
    } while (0)

/* The same from words still in memory order: each byte-swapped first. */
#define BLOCK(V, T, bswap)                                                                         \
    do {                                                                                           \
        for (int t = 0; t < 16; t++)                                                               \
            w[t] = V##_shuffle_epi8(w[t], bswap);                                                  \
        COMPRESS(V, T);                                                                            \
    } while (0)

TARGET static void blocks16(struct sha1x *s, const uint8_t *const data[SHA1X_LANES], size_t nblocks)
{
    /* Bytes of each 32-bit word reversed: SHA-1 reads big-endian words. */
    const __m512i bswap =
        _mm512_broadcast_i32x4(_mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3));
    __m512i a = _mm512_loadu_si512(s->h[0]), b = _mm512_loadu_si512(s->h[1]);
    __m512i c = _mm512_loadu_si512(s->h[2]), d = _mm512_loadu_si512(s->h[3]);
    __m512i e = _mm512_loadu_si512(s->h[4]), fx, ex;

    for (size_t n = 0; n < nblocks; n++) {
        __m512i w[16];
        for (int k = 0; k < 16; k++)
            w[k] = _mm512_loadu_si512(data[k] + n * 64);
        transpose16(w);
        BLOCK(_mm512, __m512i, bswap);
    }
    _mm512_storeu_si512(s->h[0], a);
    _mm512_storeu_si512(s->h[1], b);
    _mm512_storeu_si512(s->h[2], c);
    _mm512_storeu_si512(s->h[3], d);
    _mm512_storeu_si512(s->h[4], e);
}

TARGET static void blocks8(struct sha1x *s, const uint8_t *const data[SHA1X_LANES], size_t nblocks)
{
    const __m512i bswap =
        _mm512_broadcast_i32x4(_mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3));
    /* 64-bit indices: 128-bit lanes 0 and 2 (1 and 3) of the first source and the second,
     * interleaved */
    const __m512i lanes02 = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
    const __m512i lanes13 = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
    __m256i a = _mm256_loadu_si256((const __m256i *)s->h[0]);
    __m256i b = _mm256_loadu_si256((const __m256i *)s->h[1]);
    __m256i c = _mm256_loadu_si256((const __m256i *)s->h[2]);
    __m256i d = _mm256_loadu_si256((const __m256i *)s->h[3]);
    __m256i e = _mm256_loadu_si256((const __m256i *)s->h[4]), fx, ex;

    for (size_t n = 0; n < nblocks; n++) {
        /* Row k: message k's block in one 512-bit register, its words byte-swapped. Within
         * each group of four rows, the 4 x 4 words of each 128-bit lane transposed: lane L of
         * row 4g + j then holds word 4L + j of messages 4g..4g+3. Two-source permutes put
         * lanes a and a + 2 of rows j and j + 4 together: words 4a + j and 4a + j + 8 of all
         * eight messages, one in each half. Half the shuffles of two 8 x 8 transposes in
         * 256-bit registers (+15 % for the whole block here: 2,800-3,170 MB/s against
         * 2,420-2,730). */
        __m512i r[8], tmp[8];
        __m256i w[16];
        for (int k = 0; k < 8; k++)
            r[k] = _mm512_shuffle_epi8(_mm512_loadu_si512(data[k] + n * 64), bswap);
        TRANSPOSE_4X4(_mm512, r, tmp, 8);
        for (int j = 0; j < 4; j++) {
            __m512i z0 = _mm512_permutex2var_epi64(r[j], lanes02, r[j + 4]);
            __m512i z1 = _mm512_permutex2var_epi64(r[j], lanes13, r[j + 4]);
            w[j] = _mm512_castsi512_si256(z0);
            w[j + 8] = _mm512_extracti64x4_epi64(z0, 1);
            w[j + 4] = _mm512_castsi512_si256(z1);
            w[j + 12] = _mm512_extracti64x4_epi64(z1, 1);
        }
        COMPRESS(_mm256, __m256i);
    }
    _mm256_storeu_si256((__m256i *)s->h[0], a);
    _mm256_storeu_si256((__m256i *)s->h[1], b);
    _mm256_storeu_si256((__m256i *)s->h[2], c);
    _mm256_storeu_si256((__m256i *)s->h[3], d);
    _mm256_storeu_si256((__m256i *)s->h[4], e);
}

static void blocks(struct sha1x *s, const uint8_t *const data[SHA1X_LANES], size_t nblocks)
{
    if (s->lanes == 8)
        blocks8(s, data, nblocks);
    else
        blocks16(s, data, nblocks);
}
#else
static void blocks(struct sha1x *s, const uint8_t *const data[SHA1X_LANES], size_t nblocks)
{
    (void)s, (void)data, (void)nblocks; /* sha1x_usable() is false: never called */
}
#endif

void sha1x_update(struct sha1x *s, const uint8_t *const data[SHA1X_LANES], size_t len)
{
    size_t n = len / 64;
    if (n == 0)
        return;
    blocks(s, data, n);
    s->bytes += (uint64_t)n * 64;
}

void sha1x_final(struct sha1x *s, const uint8_t *const data[SHA1X_LANES], size_t len,
                 uint8_t out[SHA1X_LANES][20])
{
    /* Whole blocks first, then the rest with the padding: 0x80, zeros, the length in bits
     * (big-endian) at the end of one or two blocks. */
    size_t whole = len & ~(size_t)63, rest = len - whole;
    sha1x_update(s, data, whole);
    uint64_t bits = (s->bytes + rest) * 8;
    size_t tail = rest < 56 ? 64 : 128;
    uint8_t pad[SHA1X_LANES][128];
    const uint8_t *p[SHA1X_LANES];
    for (unsigned k = 0; k < SHA1X_LANES; k++)
        p[k] = pad[k]; /* only the first s->lanes are read */
    for (unsigned k = 0; k < s->lanes; k++) {
        memset(pad[k], 0, tail);
        if (rest > 0)
            memcpy(pad[k], data[k] + whole, rest);
        pad[k][rest] = 0x80;
        for (int i = 0; i < 8; i++)
            pad[k][tail - 1 - (size_t)i] = (uint8_t)(bits >> (8 * i));
    }
    blocks(s, p, tail / 64);
    for (unsigned k = 0; k < s->lanes; k++)
        for (int w = 0; w < 5; w++) {
            uint32_t v = s->h[w][k];
            out[k][4 * w] = (uint8_t)(v >> 24);
            out[k][4 * w + 1] = (uint8_t)(v >> 16);
            out[k][4 * w + 2] = (uint8_t)(v >> 8);
            out[k][4 * w + 3] = (uint8_t)v;
        }
}

void sha1x_advance(struct sha1_mid *const mid[], const uint8_t *const data[], unsigned n,
                   size_t len)
{
    struct sha1x x;
    const uint8_t *p[SHA1X_LANES];
    len &= ~(size_t)63;
    if (n == 0 || len == 0)
        return;
    sha1x_init(&x, n);
    for (unsigned k = 0; k < SHA1X_LANES; k++) {
        unsigned from = k < n ? k : 0; /* lanes past n hash message 0 again, unused */
        p[k] = data[from];
        for (int w = 0; w < 5; w++)
            x.h[w][k] = mid[from]->h[w];
    }
    sha1x_update(&x, p, len);
    for (unsigned k = 0; k < n; k++) {
        for (int w = 0; w < 5; w++)
            mid[k]->h[w] = x.h[w][k];
        mid[k]->bytes += len;
    }
}

int sha1x_digest_chunked(size_t n, uint64_t size, size_t chunk, uint8_t *buf, sha1x_read_fn read,
                         void *ud, bool live[SHA1X_LANES], uint8_t out[SHA1X_LANES][20])
{
    const uint8_t *p[SHA1X_LANES];
    struct sha1x s;

    for (size_t k = 0; k < SHA1X_LANES; k++) {
        p[k] = buf + k * chunk;
        live[k] = k < n;
    }
    sha1x_init(&s, (unsigned)n);
    for (uint64_t off = 0; off < size || off == 0; off += chunk) {
        size_t len = size - off < chunk ? (size_t)(size - off) : chunk;
        for (size_t k = 0; k < n; k++) {
            if (!live[k])
                continue;
            int rc = read(ud, k, off, len, buf + k * chunk);
            if (rc < 0)
                return -1;
            if (rc > 0)
                live[k] = false;
        }
        if (off + len < size) {
            sha1x_update(&s, p, len);
        } else {
            sha1x_final(&s, p, len, out);
            break;
        }
    }
    return 0;
}
