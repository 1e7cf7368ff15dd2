/* Eight or sixteen SHA-1 digests at once: messages of one length hashed side by side, either
 * one per 32-bit lane of the AVX-512 registers, or four at a time with their rounds
 * interleaved on the SHA extensions (SHA-NI), whichever this CPU does faster. OpenSSL hashes
 * one message at a time (with the SHA extensions, about 1.8-2.1 GB/s per core here, the limit
 * bench/verify.sh measures); with eight or sixteen independent messages, such as the pieces of
 * a torrent being checked, one core does 2-2.6 times as much. OpenSSL keeps its multi-buffer
 * SHA-1 for TLS records, and Debian packages no library that offers one, so the rounds are
 * written here (FIPS 180-4, section 6.1.2) and checked against libcrypto by the unit tests and
 * a fuzz target. x86-64 with AVX-512F, BW, VL or with SHA, SSSE3, SSE4.1 only; sha1x_usable()
 * says whether this machine can, and callers keep their libcrypto path for every other case. */
#ifndef RV_UTIL_SHA1X_H
#define RV_UTIL_SHA1X_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/sha.h"

#define SHA1X_LANES 16

/* The state of the lanes, word-major (h[word][lane]), the bytes each has had, how many lanes
 * there are (8: 256-bit registers, lanes 0-7 of every array used; 16: 512-bit), and how many
 * hold messages (the SHA extensions hash only those; AVX-512 hashes every lane). */
struct sha1x {
    uint32_t h[5][SHA1X_LANES];
    uint64_t bytes;
    unsigned lanes;
    unsigned n;
};

/* How the lanes are hashed: none (this CPU has neither), AVX-512 lanes, the SHA extensions. */
enum sha1x_kernel { SHA1X_NONE, SHA1X_AVX512, SHA1X_SHANI };

/* The kernel in use: the only one this CPU runs, or of both the one that hashed eight 32 KiB
 * messages sooner (measured once, on first use, about a millisecond). Thread-safe. */
enum sha1x_kernel sha1x_kernel(void);
/* Tests: use kernel k from now on. False, and nothing changed, when this CPU cannot. */
bool sha1x_use_kernel(enum sha1x_kernel k);
const char *sha1x_kernel_name(enum sha1x_kernel k); /* "avx512", "sha-ni", "none" */

/* True when the CPU and the OS run one of the kernels (AVX-512 F, BW and VL; or SHA, SSSE3
 * and SSE4.1), and sha1x_enable(false) was not called. */
bool sha1x_usable(void);
/* Off: sha1x_usable() says false (tests take the libcrypto paths on a machine that has it). */
void sha1x_enable(bool on);
/* The fewest messages worth hashing side by side rather than one at a time with libcrypto,
 * with a tenth of margin; 0 when never (sha1x_usable() false, or the lanes slower). It depends
 * on the CPU, so it is measured once, on first use (32 KiB messages, best of nine each, about
 * a millisecond): AVX-512 lanes cost as much for one message as for eight, so eight in lanes
 * against one through libcrypto (4.3 times as long on an AMD EPYC, 3.3 to 3.8 on an Intel
 * Xeon: 5 on both, 4 now and then on the Xeon); the SHA extensions cost more with each
 * message, so two side by side against two one at a time (2 when that gains, else 0).
 * Thread-safe. */
unsigned sha1x_min_messages(void);

/* lanes: 8 when up to 8 messages are at hand, else 16 (16 in eight 256-bit lanes would take two
 * passes at 3,400 MB/s each; one 512-bit pass does 4,300 here). The first min(lanes, 16) lanes
 * hold messages (n). */
void sha1x_init(struct sha1x *s, unsigned lanes);
/* Hashes len bytes of each lane's data; len must be a multiple of 64 (any other length is
 * left for sha1x_final). Only when sha1x_usable(). */
void sha1x_update(struct sha1x *s, const uint8_t *const data[SHA1X_LANES], size_t len);
/* Hashes each lane's last len bytes (any length), pads, and writes the lanes' digests. */
void sha1x_final(struct sha1x *s, const uint8_t *const data[SHA1X_LANES], size_t len,
                 uint8_t out[SHA1X_LANES][20]);

/* Advances the n (1..SHA1X_LANES) states mid[k] by len bytes each (a multiple of 64; any
 * rest is ignored), message k's next bytes at data[k], side by side in 8 lanes, or 16 when
 * n > 8: messages at different points go on together. Only when sha1x_usable(). */
void sha1x_advance(struct sha1_mid *const mid[], const uint8_t *const data[], unsigned n,
                   size_t len);

/* Reads message k's bytes [off, off + len) into dst. Returns 0; 1 to give up on message k
 * (it is read no more, and its digest means nothing); -1 to stop everything. */
typedef int (*sha1x_read_fn)(void *ud, size_t k, uint64_t off, size_t len, uint8_t *dst);

/* Digests of n (1..SHA1X_LANES; 8 lanes when n <= 8) messages of size bytes each, read chunk
 * bytes at a time (a multiple of 64) through read into buf, which holds SHA1X_LANES * chunk
 * bytes: lane k reads into buf + k * chunk. The lanes past n hash whatever buf holds there. live[k]
 * tells whether message k was read to its end. Returns 0, or -1 when read said stop. Only when
 * sha1x_usable(). */
int sha1x_digest_chunked(size_t n, uint64_t size, size_t chunk, uint8_t *buf, sha1x_read_fn read,
                         void *ud, bool live[SHA1X_LANES], uint8_t out[SHA1X_LANES][20]);

#endif
