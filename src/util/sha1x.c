/* Eight or sixteen SHA-1 digests at once (see sha1x.h), by one of two kernels, whichever this
 * CPU runs faster (measured once, on first use).
 *
 * AVX-512: lane k of every vector belongs to message k: each 64-byte block of the messages is
 * loaded as rows, transposed so that vector t holds word t of every message, and the eighty
 * rounds run once for all of them. The round function is one vpternlogd (choose, parity or
 * majority of b, c, d), the rotations are vprold. Sixteen lanes use 512-bit registers, eight
 * use 256-bit ones (AVX-512VL) for the rounds and 512-bit ones to load and transpose: on an AMD
 * EPYC, which splits 512-bit work in two, eight lanes did 3,400 MB/s and sixteen 4,300; on an
 * Intel Xeon, 2,800-3,170 and 4,300-5,000.
 *
 * SHA extensions: four messages at a time, their rounds interleaved (sha1rnds4 does four
 * rounds of one message; one message waits on each result, four keep the unit busy). On the
 * AMD EPYC (Zen 4) one message ran at 2,130 MB/s (libcrypto's speed) and four at 5,400; on an
 * Intel Xeon, earlier, two to four did no better than one (its SHA unit is busy with one). */
#include "util/sha1x.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "util/sha.h"
#include "util/stats.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SHA1X_BUILT 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define SHA1X_BUILT 0
#endif

static atomic_bool disabled;
static _Atomic int kernel = SHA1X_NONE; /* enum sha1x_kernel, once chosen */
static pthread_once_t kernel_once = PTHREAD_ONCE_INIT;

void sha1x_enable(bool on)
{
    atomic_store(&disabled, !on);
}

static bool kernel_runs(enum sha1x_kernel k)
{
#if SHA1X_BUILT
    __builtin_cpu_init(); /* also safe before the constructors have run */
    if (k == SHA1X_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl");
    if (k == SHA1X_SHANI) {
        unsigned a, b, c, d; /* CPUID leaf 7: EBX bit 29 is SHA */
        return __builtin_cpu_supports("ssse3") && __builtin_cpu_supports("sse4.1") &&
               __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29)) != 0;
    }
#endif
    (void)k;
    return false;
}

static void choose_kernel(void);

enum sha1x_kernel sha1x_kernel(void)
{
    pthread_once(&kernel_once, choose_kernel);
    return (enum sha1x_kernel)atomic_load(&kernel);
}

bool sha1x_use_kernel(enum sha1x_kernel k)
{
    pthread_once(&kernel_once, choose_kernel);
    if (k != SHA1X_NONE && !kernel_runs(k))
        return false;
    atomic_store(&kernel, k);
    return true;
}

const char *sha1x_kernel_name(enum sha1x_kernel k)
{
    return k == SHA1X_AVX512 ? "avx512" : k == SHA1X_SHANI ? "sha-ni" : "none";
}

bool sha1x_usable(void)
{
    return !atomic_load(&disabled) && sha1x_kernel() != SHA1X_NONE;
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
    s->n = lanes < 1 ? 1 : lanes > SHA1X_LANES ? SHA1X_LANES : lanes;
}

static void blocks_by(enum sha1x_kernel k, struct sha1x *s, const uint8_t *const data[SHA1X_LANES],
                      size_t nblocks);

#define CAL_BYTES (32u << 10)
#define CAL_TRIES 9

static volatile uint32_t cal_sink; /* the timed digests are used: not optimised away */

/* The best of CAL_TRIES timings (after one not counted) of n messages of CAL_BYTES at p[]
 * through kernel k, or of p[0] alone through libcrypto when k is SHA1X_NONE. */
static uint64_t time_kernel(enum sha1x_kernel k, const uint8_t *const p[SHA1X_LANES], unsigned n)
{
    uint64_t best = UINT64_MAX;
    for (int i = -1; i < CAL_TRIES; i++) {
        uint64_t t0 = stats_now_ns();
        if (k == SHA1X_NONE) {
            uint8_t out[20];
            sha1(p[0], CAL_BYTES, out);
            cal_sink ^= out[0];
        } else {
            struct sha1x x;
            sha1x_init(&x, n);
            blocks_by(k, &x, p, CAL_BYTES / 64);
            cal_sink ^= x.h[0][0] ^ x.h[4][n - 1];
        }
        uint64_t t = stats_now_ns() - t0;
        if (i >= 0 && t < best)
            best = t;
    }
    return best;
}

/* Eight messages of CAL_BYTES each (sixteen lanes read them twice), in p[]; NULL when out of
 * memory. */
static uint8_t *cal_messages(const uint8_t *p[SHA1X_LANES])
{
    uint8_t *buf = malloc(8 * CAL_BYTES);
    if (buf == NULL)
        return NULL;
    for (size_t i = 0; i < 8 * CAL_BYTES; i++)
        buf[i] = (uint8_t)(i * 131u);
    for (unsigned k = 0; k < SHA1X_LANES; k++)
        p[k] = buf + (k % 8) * CAL_BYTES;
    return buf;
}

/* Where the CPU runs both kernels, the one that hashes eight messages sooner (their usual
 * number: a row of lockstep's chunks, a run of pieces). About a millisecond. */
static void choose_kernel(void)
{
    bool avx = kernel_runs(SHA1X_AVX512), ni = kernel_runs(SHA1X_SHANI);
    enum sha1x_kernel k = avx ? SHA1X_AVX512 : ni ? SHA1X_SHANI : SHA1X_NONE;
    const uint8_t *p[SHA1X_LANES];
    uint8_t *buf;
    if (avx && ni && (buf = cal_messages(p)) != NULL) {
        if (time_kernel(SHA1X_SHANI, p, 8) < time_kernel(SHA1X_AVX512, p, 8))
            k = SHA1X_SHANI;
        free(buf);
    }
    atomic_store(&kernel, k);
}

static unsigned min_messages;
static pthread_once_t min_once = PTHREAD_ONCE_INIT;

static void measure_min_messages(void)
{
    const uint8_t *p[SHA1X_LANES];
    uint8_t *buf = cal_messages(p);
    if (buf == NULL)
        return; /* 0: one at a time, as without lanes */
    enum sha1x_kernel k = sha1x_kernel();
    uint64_t one = time_kernel(SHA1X_NONE, p, 1);
    if (k == SHA1X_SHANI) {
        /* Its cost grows with the messages: it gains from two on, or never. */
        uint64_t two = time_kernel(k, p, 2);
        min_messages = two * 11 < 2 * one * 10 ? 2 : 0; /* by a tenth, as below */
    } else {
        /* Eight lanes cost as much as one: they gain for k messages when they take less than k
         * one-at-a-time hashes; by a tenth at least, so that a noisy measure near the line does
         * not pick lanes that lose. */
        uint64_t eight = time_kernel(k, p, 8);
        unsigned m = one > 0 ? (unsigned)(eight * 11 / (one * 10)) + 1 : 9;
        min_messages = m < 2 ? 2 : m > 8 ? 0 : m;
    }
    free(buf);
}

unsigned sha1x_min_messages(void)
{
    if (!sha1x_usable())
        return 0;
    pthread_once(&min_once, measure_min_messages);
    return min_messages;
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

#define TARGET_NI __attribute__((target("sha,sse4.1,ssse3")))

/* Four rounds (group i, 1..19; function f) of each of the NS messages: the schedule's next four
 * words from the last sixteen (sha1msg1, xor, sha1msg2), e from four rounds before (sha1nexte),
 * then the rounds (sha1rnds4). The messages' steps alternate, so each waits on its own last
 * result while the others' go through. */
#define NI_GROUP(i, f)                                                                             \
    do {                                                                                           \
        _Pragma("GCC unroll 4") for (int m = 0; m < NS; m++)                                       \
        {                                                                                          \
            if ((i) >= 4) {                                                                        \
                __m128i x = _mm_sha1msg1_epu32(w[m][(i)&3], w[m][((i) + 1) & 3]);                  \
                x = _mm_xor_si128(x, w[m][((i) + 2) & 3]);                                         \
                w[m][(i)&3] = _mm_sha1msg2_epu32(x, w[m][((i) + 3) & 3]);                          \
            }                                                                                      \
            __m128i ex = _mm_sha1nexte_epu32(prev[m], w[m][(i)&3]);                                \
            prev[m] = abcd[m];                                                                     \
            abcd[m] = _mm_sha1rnds4_epu32(abcd[m], ex, (f));                                       \
        }                                                                                          \
    } while (0)

/* nblocks 64-byte blocks of N messages (data[m]) on their states h[m] (a, b, c, d, e). */
#define NI_BLOCKS(N)                                                                               \
    TARGET_NI static void ni_blocks##N(uint32_t h[][5], const uint8_t *const data[],               \
                                       size_t nblocks)                                             \
    {                                                                                              \
        enum { NS = N };                                                                           \
        /* The bytes of the block reversed: its words big-endian, word 0 in the high lane. */      \
        const __m128i rev = _mm_set_epi64x(0x0001020304050607LL, 0x08090a0b0c0d0e0fLL);            \
        __m128i abcd[NS], e[NS];                                                                   \
        for (int m = 0; m < NS; m++) {                                                             \
            abcd[m] = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)h[m]), 0x1B);             \
            e[m] = _mm_set_epi32((int)h[m][4], 0, 0, 0);                                           \
        }                                                                                          \
        for (size_t n = 0; n < nblocks; n++) {                                                     \
            __m128i w[NS][4], abcd0[NS], prev[NS];                                                 \
            _Pragma("GCC unroll 4") for (int m = 0; m < NS; m++)                                   \
            {                                                                                      \
                for (int j = 0; j < 4; j++)                                                        \
                    w[m][j] = _mm_shuffle_epi8(                                                    \
                        _mm_loadu_si128((const __m128i *)(data[m] + n * 64 + 16 * (size_t)j)),     \
                        rev);                                                                      \
                abcd0[m] = prev[m] = abcd[m];                                                      \
                abcd[m] = _mm_sha1rnds4_epu32(abcd[m], _mm_add_epi32(e[m], w[m][0]), 0);           \
            }                                                                                      \
            NI_GROUP(1, 0);                                                                        \
            NI_GROUP(2, 0);                                                                        \
            NI_GROUP(3, 0);                                                                        \
            NI_GROUP(4, 0);                                                                        \
            NI_GROUP(5, 1);                                                                        \
            NI_GROUP(6, 1);                                                                        \
            NI_GROUP(7, 1);                                                                        \
            NI_GROUP(8, 1);                                                                        \
            NI_GROUP(9, 1);                                                                        \
            NI_GROUP(10, 2);                                                                       \
            NI_GROUP(11, 2);                                                                       \
            NI_GROUP(12, 2);                                                                       \
            NI_GROUP(13, 2);                                                                       \
            NI_GROUP(14, 2);                                                                       \
            NI_GROUP(15, 3);                                                                       \
            NI_GROUP(16, 3);                                                                       \
            NI_GROUP(17, 3);                                                                       \
            NI_GROUP(18, 3);                                                                       \
            NI_GROUP(19, 3);                                                                       \
            _Pragma("GCC unroll 4") for (int m = 0; m < NS; m++)                                   \
            {                                                                                      \
                e[m] = _mm_sha1nexte_epu32(prev[m], e[m]); /* e0 + rol(a of round 76, 30) */       \
                abcd[m] = _mm_add_epi32(abcd[m], abcd0[m]);                                        \
            }                                                                                      \
        }                                                                                          \
        for (int m = 0; m < NS; m++) {                                                             \
            _mm_storeu_si128((__m128i *)h[m], _mm_shuffle_epi32(abcd[m], 0x1B));                   \
            h[m][4] = (uint32_t)_mm_extract_epi32(e[m], 3);                                        \
        }                                                                                          \
    }

NI_BLOCKS(1)
NI_BLOCKS(2)
NI_BLOCKS(3)
NI_BLOCKS(4)

/* The SHA extensions on the s->n messages in use, four at a time (the rest three, two or one). */
static void blocks_ni(struct sha1x *s, const uint8_t *const data[SHA1X_LANES], size_t nblocks)
{
    uint32_t h[SHA1X_LANES][5];
    unsigned n = s->n;
    for (unsigned k = 0; k < n; k++)
        for (int w = 0; w < 5; w++)
            h[k][w] = s->h[w][k];
    for (unsigned k = 0; k < n;) {
        unsigned m = n - k < 4 ? n - k : 4;
        if (m == 4)
            ni_blocks4(h + k, data + k, nblocks);
        else if (m == 3)
            ni_blocks3(h + k, data + k, nblocks);
        else if (m == 2)
            ni_blocks2(h + k, data + k, nblocks);
        else
            ni_blocks1(h + k, data + k, nblocks);
        k += m;
    }
    for (unsigned k = 0; k < n; k++)
        for (int w = 0; w < 5; w++)
            s->h[w][k] = h[k][w];
}

static void blocks_by(enum sha1x_kernel k, struct sha1x *s, const uint8_t *const data[SHA1X_LANES],
                      size_t nblocks)
{
    if (k == SHA1X_SHANI)
        blocks_ni(s, data, nblocks);
    else if (s->lanes == 8)
        blocks8(s, data, nblocks);
    else
        blocks16(s, data, nblocks);
}
#else
static void blocks_by(enum sha1x_kernel k, struct sha1x *s, const uint8_t *const data[SHA1X_LANES],
                      size_t nblocks)
{
    (void)k, (void)s, (void)data, (void)nblocks; /* sha1x_usable() is false: never called */
}
#endif

static void blocks(struct sha1x *s, const uint8_t *const data[SHA1X_LANES], size_t nblocks)
{
    blocks_by(sha1x_kernel(), s, data, nblocks);
}

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
