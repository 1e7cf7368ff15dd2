/* Storage of one torrent's files under a download folder: verified pieces written with
 * pwrite (one call per file span), pieces read and checked against their SHA-1, all on
 * libuv's worker threads so the loop never waits for the disk. Paths come from the parsed torrent (already sanitised) and are
 * opened relative to the download folder without following symlinks, so no file is created or
 * written outside it. Padding files are never written. A bounded cache keeps file handles open. */
#ifndef RV_STORAGE_H
#define RV_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "metainfo/layout.h"
#include "rivulet/metainfo.h"
#include "rivulet/session.h"
#include "util/sha.h"

/* Direct writes (storage_opts.direct): whole blocks of STORAGE_DIRECT_ALIGN, in memory and in
 * the file, go to disk with O_DIRECT; 4096 is a multiple of every logical block size Linux
 * file systems ask for. A span whose aligned middle is under STORAGE_DIRECT_MIN goes through
 * the cache, so a piece shorter than that never needs to be aligned in memory. */
#define STORAGE_DIRECT_ALIGN 4096u
#define STORAGE_DIRECT_MIN (64u << 10)
/* When the disk is behind: a write that finds STORAGE_DIRECT_BUSY direct writes running (by
 * default: half of libuv's four workers, the other half hashing) and STORAGE_WRITES_QUEUED
 * more write jobs waiting for a worker goes through the page cache instead (a copy, and the
 * kernel writes it back later), so the download does not wait for the disk. Where the disk
 * keeps up, every write goes direct. */
#ifndef STORAGE_DIRECT_BUSY
#define STORAGE_DIRECT_BUSY 2u
#endif
#ifndef STORAGE_WRITES_QUEUED
#define STORAGE_WRITES_QUEUED 2u
#endif

/* What the storages of one session share about the disk, as they share libuv's workers
 * (atomics). */
struct storage_disk {
    unsigned running; /* direct writes waiting on the disk */
    unsigned queued;  /* write jobs queued for a worker, not started yet */
};

struct storage_opts {
    const char *dir;        /* the download folder (created if missing) */
    unsigned max_open;      /* open file handles kept; 0: 64 */
    const uint8_t *file_sel; /* per file: 0 = not selected, never created or written (the
                                caller's, outlives the storage); NULL: every file */
    rv_session_stats_t *stats; /* counters to add to (disk, hash, queue), or NULL; borrowed */
    bool direct; /* write the whole 4 KiB blocks of each piece with O_DIRECT, bypassing the
                    page cache, where the file system allows it (else, and for the partial
                    blocks at span ends, through the cache). Data 4 KiB-aligned in memory is
                    written as it is; other data is copied through a bounce buffer. */
    unsigned direct_max;       /* direct writes running before writes may go through the cache
                                  (STORAGE_DIRECT_BUSY); 0: STORAGE_DIRECT_BUSY */
    struct storage_disk *disk; /* shared by the session's storages (borrowed); NULL: this
                                  storage's own */
};

struct storage;

/* rc 0: done; RV_EHASH: the data did not match the piece's hash (nothing written);
 * RV_EIO: err names the file and the system's reason. err is borrowed for the call. */
typedef void (*storage_cb)(void *ud, uint32_t piece, int rc, const rv_error_t *err);

/* Borrows ti and l, which must outlive the storage. Creates the download folder and the
 * zero-length files. */
int storage_new(uv_loop_t *loop, const rv_torrent_info_t *ti, const struct layout *l,
                const struct storage_opts *opts, struct storage **out, rv_error_t *err);

/* On a worker: hashes data[0..len) (the whole piece) with SHA-1 and, if it matches the
 * torrent's hash for piece, writes it to its files. data is borrowed until cb runs. */
int storage_verify_and_write(struct storage *s, uint32_t piece, const uint8_t *data, uint32_t len,
                             storage_cb cb, void *ud);
/* The most pieces storage_verify_and_write_run takes at once. */
#define STORAGE_RUN_MAX 16
/* storage_verify_and_write for the n (1..STORAGE_RUN_MAX) consecutive pieces first..first+n-1,
 * data[i] holding piece first+i, in one job: each piece is hashed, and the pieces that match
 * and follow each other go to disk together, with one direct write per file for their whole
 * pages (a page two pieces share is copied out of both). Fewer, larger writes: each direct
 * write costs about as much CPU whether it carries 256 KiB or 1 MiB. cb runs once per piece,
 * in order, as for storage_verify_and_write (a cb that closes the storage ends the calls, as
 * for any work in flight); after a write error, that piece and every later matching one
 * report it. data[] is copied; the buffers are borrowed until their cb. */
int storage_verify_and_write_run(struct storage *s, uint32_t first, uint32_t n,
                                 const uint8_t *const *data, storage_cb cb, void *ud);
/* Pieces hashed as their chunks arrive, side by side (the download's lockstep): the caller
 * holds each piece in chunks of memory, hands chunks to storage_write_chunks as soon as they are
 * in and to storage_hash_chunks once the chunks at the same point of other pieces are in too,
 * and gets the piece's verdict from the hash of its last chunk. A piece is so on disk before
 * it is verified; one that fails is not counted, and its next download overwrites it. */

/* Gives back a chunk of memory handed to the storage; called on a worker thread (or, for a
 * job canceled before it ran, on the loop), so it must be thread-safe. */
typedef void (*storage_release_fn)(void *rud, const uint8_t *data);
/* One chunk of a piece: its bytes [off, off + len) at data, and the piece's SHA-1 of its first
 * off bytes (mid->bytes == off, a multiple of 64 unless the piece ends with this chunk). */
struct storage_step {
    uint32_t piece;
    uint32_t off, len;
    const uint8_t *data;
    struct sha1_mid *mid; /* advanced by len */
    int verdict;          /* out: 1 while the piece goes on past this chunk; else 0 (its hash
                             matches) or RV_EHASH */
};
typedef void (*storage_steps_cb)(void *ud, struct storage_step *steps, unsigned n);
#define STORAGE_STEPS_MAX 16
/* On a worker: advances each step's hash by its chunk, the ones chunk bytes long side by side
 * in sha1x's lanes when enough of them gain (sha1x_min_messages), and finishes the hash of
 * each piece that ends there. Nothing is written. cb(ud, steps, n) on the loop; the steps and
 * their data stay the caller's (release is called only for a job that never runs: closing,
 * canceled). steps is borrowed until then. RV_EINVAL for a step that does not fit its piece,
 * a chunk longer than chunk, or mid not at off. */
int storage_hash_chunks(struct storage *s, struct storage_step *steps, unsigned n, uint32_t chunk,
                        storage_release_fn release, void *rud, storage_steps_cb cb, void *ud);
/* One chunk of a piece to write: its bytes [off, off + len) at data. */
struct storage_chunk {
    uint32_t piece;
    uint32_t off, len;
    const uint8_t *data;
};
#define STORAGE_CHUNKS_MAX 8
/* On a worker, in one job: writes the n (1..STORAGE_CHUNKS_MAX) chunks in order, chunks that
 * follow each other in a file in one write (direct where it lines up, as for whole pieces;
 * the job's direct writes submitted together where the kernel has Linux AIO), then hands each
 * chunk's data to release. A job per chunk cost a worker's wake-up, a context
 * switch and a callback for every 256 KiB. cb(ud, piece, rc, err) runs once per chunk, in
 * order, as for storage_read; after a write error the job stops, and the chunks of that write
 * and every later one report it. Nothing is checked. c[] is copied. When it returns an error,
 * the data stays the caller's. hurry: the caller's writes are behind, so these go through the
 * page cache unless no other direct write is running (besides STORAGE_DIRECT_BUSY's rule for
 * every write). */
int storage_write_chunks(struct storage *s, const struct storage_chunk *c, unsigned n, bool hurry,
                         storage_release_fn release, void *rud, storage_cb cb, void *ud);
/* Off: storage_write_chunks writes one direct write at a time, as where the kernel refuses
 * Linux AIO (tests take both paths). Process-wide; set it while no job runs. */
void storage_aio_enable(bool on);
/* Tests: what the kernel is given of each gathered write and what it is taken to answer:
 * all of it (REAL); its first page, answered as such (SHORT_PAGE: the rest goes out in one
 * more direct write); its first page, answered as 100 bytes (SHORT_ODD: the rest goes through
 * the page cache); nothing, answered EINVAL (REFUSED: the file is written through the page
 * cache from then on). What the kernel was not given is written by those fallbacks alone.
 * Process-wide; set it while no job runs. */
enum storage_aio_fake {
    STORAGE_AIO_REAL,
    STORAGE_AIO_SHORT_PAGE,
    STORAGE_AIO_SHORT_ODD,
    STORAGE_AIO_REFUSED
};
void storage_aio_fake(enum storage_aio_fake f);

/* On a worker: reads piece from disk and checks its hash (rc 0 match, RV_EHASH mismatch or
 * missing data, RV_EIO). Used to check data already there. */
int storage_check(struct storage *s, uint32_t piece, storage_cb cb, void *ud);
/* storage_check for the n (1..STORAGE_RUN_MAX) consecutive pieces first..first+n-1 in one job,
 * hashed side by side where the CPU has AVX-512 or SHA-NI (sha1x). cb runs once per piece, in
 * order; an error other than RV_EHASH (a read failing) stops the job, and that piece and every
 * later one report it. */
int storage_check_run(struct storage *s, uint32_t first, uint32_t n, storage_cb cb, void *ud);
/* On a worker: reads [begin, begin+len) of piece into out (borrowed until cb). */
int storage_read(struct storage *s, uint32_t piece, uint32_t begin, uint32_t len, uint8_t *out,
                 storage_cb cb, void *ud);
/* On a worker: fsyncs every file written since the last successful sync, then the folders that
 * may have got new names (files or folders made for them), and calls cb (piece 0) on the loop
 * with rc 0 or RV_EIO (err names the file; the marks stay, so the next sync retries them).
 * Pieces whose write callback ran before this call are durable once cb reports 0; a write
 * running meanwhile marks its file again for the next sync. One at a time: RV_EFULL while one
 * is in flight; RV_ECANCELED once closing (and, like other work, a sync in flight when the
 * storage closes is not called back: storage_close fsyncs everything itself). */
int storage_sync(struct storage *s, storage_cb cb, void *ud);
/* Work queued and not yet called back. */
unsigned storage_pending(const struct storage *s);
/* Waits (on the loop) for queued work to finish, without calling its callbacks; fsyncs and
 * closes every file, then calls cb(ud). The storage is freed. */
void storage_close(struct storage *s, void (*cb)(void *ud), void *ud);

#endif
