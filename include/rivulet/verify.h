/* Checking data already on disk against a torrent's v1 piece hashes, on every core: which
 * pieces are complete and how much of each file is. rv_verify blocks its caller while worker
 * threads read and hash; it writes nothing. */
#ifndef RIVULET_VERIFY_H
#define RIVULET_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rivulet/error.h"
#include "rivulet/metainfo.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rv_verify_state {
    RV_VERIFY_COMPLETE, /* every piece it lies in verified (an empty file: it exists) */
    RV_VERIFY_PARTIAL,  /* a regular file, but some of its pieces did not verify */
    RV_VERIFY_MISSING,  /* no such file (or a folder on its path is missing) */
    RV_VERIFY_NOT_FILE, /* a symlink, folder, FIFO or device in its place: never followed or read */
    RV_VERIFY_PADDING   /* BEP 47 padding: never on disk, counted as zeros */
} rv_verify_state_t;

typedef struct rv_verify_file {
    rv_verify_state_t state;
    uint64_t size_on_disk; /* bytes, for a regular file; 0 otherwise */
    uint64_t bytes_have;   /* bytes of the file that lie in verified pieces */
} rv_verify_file_t;

typedef struct rv_verify_result {
    uint32_t piece_count;
    uint32_t pieces_have;
    /* Verified pieces as a BEP 3 bitfield: piece 0 is the high bit of byte 0;
     * (piece_count + 7) / 8 bytes. */
    uint8_t *have;
    rv_verify_file_t *files; /* one per torrent file, padding included, in torrent order */
    size_t file_count;
    uint64_t bytes_total; /* the payload (ti->total_size, padding excluded) */
    uint64_t bytes_have;  /* payload bytes in verified pieces */
    uint64_t bytes_read;  /* read from disk and hashed */
    unsigned threads;     /* hashing threads used */
    bool dir_missing;     /* the folder itself does not exist (every file is missing) */
    bool complete;        /* every piece verified and every file there */
} rv_verify_result_t;

/* done of total bytes of piece space checked (read and hashed, or skipped because the data is
 * not on disk). Called on rv_verify's thread a few times a second; return non-zero to stop
 * the check (rv_verify then returns RV_ECANCELED). */
typedef int (*rv_verify_progress_cb)(void *ud, uint64_t done, uint64_t total);

/* Checks the files of ti below dir (the folder a download of ti was saved to: multi-file
 * torrents' paths start with the torrent's name) on threads worker threads (0: one per core),
 * each reading whole pieces with pread and hashing them with SHA-1. No symlink below dir is
 * followed. A missing, short or replaced file only makes its pieces missing; it is not an
 * error. progress may be NULL.
 *
 * Returns 0 with *out filled (free it with rv_verify_result_free), or:
 *   RV_ETORRENT  ti has no v1 piece hashes (v2-only) or an inconsistent file layout
 *   RV_EIO       dir is not a folder, or a file could not be read (EACCES, EIO): err names it
 *   RV_ECANCELED progress asked to stop
 *   RV_ENOMEM
 * On failure *out holds nothing to free. */
int rv_verify(const rv_torrent_info_t *ti, const char *dir, unsigned threads,
              rv_verify_progress_cb progress, void *ud, rv_verify_result_t *out, rv_error_t *err);

void rv_verify_result_free(rv_verify_result_t *r);

#ifdef __cplusplus
}
#endif
#endif
