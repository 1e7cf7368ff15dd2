/* Resume data: what a torrent had when it last stopped (verified pieces, its files' sizes and
 * modification times, blocks of unfinished pieces already on disk, transfer totals, known
 * peers), one bencoded file per torrent in the state folder, so a restart whose files are as
 * they were skips re-hashing them. Owns the file format and its validation, nothing else.
 *
 * The rule that makes it safe: a piece goes into `have` (and a block into a partial piece)
 * only after its data has been fsync'd, and the file sizes and times are read after that
 * fsync. Then, on start, resume_files_match finds every file changed behind our back and only
 * the pieces of those files are hashed again.
 *
 * Every call that touches the disk (path, save, load, files_*) blocks: run it on a worker. */
#ifndef RV_STORAGE_RESUME_H
#define RV_STORAGE_RESUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metainfo/layout.h"
#include "rivulet/error.h"
#include "rivulet/metainfo.h"
#include "swarm/peers.h"
#include "util/bitfield.h"
#include "util/buf.h"

#define RESUME_VERSION 1
#define RESUME_MAX_SIZE (64u << 20) /* largest resume file read */
#define RESUME_MAX_PEERS 4096u      /* peers written (the first ones) and accepted */

/* One file as it was on disk when the resume data was taken. */
struct resume_file {
    bool exists;      /* a regular file was there; size and mtime_ns are 0 otherwise */
    uint64_t size;    /* st_size */
    int64_t mtime_ns; /* st_mtim in nanoseconds since the epoch */
};

/* A piece not yet verified, some of whose blocks are on disk. */
struct resume_partial {
    uint32_t piece;
    struct bitfield blocks; /* one bit per RV_BLOCK_SIZE block of the piece (the last short) */
};

struct resume_data {
    uint8_t info_hash[RV_SHA1_LEN];
    struct bitfield have;      /* verified pieces whose data was fsync'd */
    struct resume_file *files; /* one per torrent file, padding included (never exists) */
    size_t file_count;
    struct resume_partial *partials; /* no piece twice, none in have */
    size_t partial_count;
    uint64_t uploaded, downloaded; /* payload bytes, over the torrent's life */
    struct peer_addr *peers;
    size_t peer_count;
};

/* Empty resume data for ti: nothing had, every file missing, no partials or peers. Free with
 * resume_free, also after a failure. */
int resume_init(struct resume_data *rd, const rv_torrent_info_t *ti);
void resume_free(struct resume_data *rd);

/* The number of blocks in piece (0 if out of range). */
uint32_t resume_piece_blocks(const struct layout *l, uint32_t piece);

/* Records that the blocks set in blocks (a bitfield of resume_piece_blocks(l, piece)) of
 * piece are on disk. Copies blocks. RV_EINVAL if piece is out of range, already in have or
 * already recorded, or blocks has the wrong size or no bit set; RV_ENOMEM. */
int resume_add_partial(struct resume_data *rd, const struct layout *l, uint32_t piece,
                       const struct bitfield *blocks);

/* Replaces the peers with a copy of peers[0..n) (at most RESUME_MAX_PEERS kept). */
int resume_set_peers(struct resume_data *rd, const struct peer_addr *peers, size_t n);

/* The resume file of a torrent: STATE/<40 hex digits of info_hash>.resume, where STATE is
 * state_dir if it is not NULL or empty (the user's option), else $XDG_STATE_HOME/rivulet if
 * that is an absolute path (the XDG base directory spec ignores relative ones), else
 * $HOME/.local/state/rivulet (HOME, or the password database if HOME is unset or relative).
 * The folders are made as needed, mode 0700. Writes a NUL-terminated path of at most n - 1
 * bytes to out: RV_ETOOBIG if it does not fit, RV_EINVAL if there is no home folder,
 * RV_EIO if a folder cannot be made (err names it). */
int resume_path(const char *state_dir, const uint8_t info_hash[RV_SHA1_LEN], char *out, size_t n,
                rv_error_t *err);
/* STATE/<info-hash hex>.torrent, where a magnet link's metadata is kept (folders made as for
 * resume_path). */
int torrent_state_path(const char *state_dir, const uint8_t info_hash[RV_SHA1_LEN], char *out,
                       size_t n, rv_error_t *err);

/* Appends the canonical bencoding of rd to out. RV_EINVAL (err says why) if rd does not hold
 * together: a partial piece out of range or in have, a block bitmap of the wrong size. */
int resume_encode(const struct resume_data *rd, struct buf *out, rv_error_t *err);

/* Decodes and checks a resume file for ti. Borrows p. Refused: malformed or non-canonical
 * bencode, trailing bytes, a missing key, an unknown version, another info-hash, a bitfield not
 * of ti's piece count or with spare bits set, a file list not of ti's file count, a file with
 * only one of size and mtime, negative sizes or totals, partial pieces out of range, repeated,
 * already had, with no block or with a bitmap of the wrong size, peer strings not a multiple
 * of their entry size or longer than RESUME_MAX_PEERS. Unknown keys are ignored (a later
 * version may add some); peer addresses nobody should dial (port 0, multicast, ...) are
 * dropped, not refused: they are hints. Returns 0, or RV_EBENCODE (malformed bencode) /
 * RV_EINVAL (anything else wrong) with err naming the field and its byte offset, or
 * RV_ENOMEM. On failure out holds nothing (resume_free is still allowed) and the caller
 * re-checks the data. */
int resume_decode(const uint8_t *p, size_t len, const rv_torrent_info_t *ti,
                  struct resume_data *out, rv_error_t *err);

/* resume_encode, then fs_write_atomic(path): a temporary file, fsync, rename, folder fsync. */
int resume_save(const char *path, const struct resume_data *rd, rv_error_t *err);

/* Reads (at most RESUME_MAX_SIZE bytes) and decodes path. A missing file is RV_EIO with
 * err->sys_errno == ENOENT: a first start, not a fault. Messages begin with the path. */
int resume_load(const char *path, const rv_torrent_info_t *ti, struct resume_data *out,
                rv_error_t *err);

/* Fills files[0..ti->file_count) from what is under save_dir now (lstat of each file, no
 * symlink followed anywhere in its path; padding files are recorded as missing). Call it
 * after the data of every piece in have has been fsync'd, never before. A symlink, folder or
 * FIFO where a file should be is recorded as missing. RV_EIO (err names the file) when a file
 * cannot be looked at (EACCES, EIO, ...), since recording it as missing would be a guess. */
int resume_files_from_disk(const rv_torrent_info_t *ti, const char *save_dir,
                           struct resume_file *files, rv_error_t *err);

/* Compares rd's files with what is under save_dir now and sets in suspect (initialised by the
 * caller with ti->piece_count indices; bits are only set, never cleared) every piece of each
 * file whose existence, size or modification time differs, including the pieces it shares
 * with its neighbours. Padding files are never on disk and are not compared; a zero-length
 * file is compared but covers no piece. A file that cannot be looked at (EACCES, a symlink)
 * counts as changed: the check that follows reports it. Returns the number of files
 * that differ (0: the resume data can be trusted as it is), or RV_EINVAL if rd or suspect was
 * made for another torrent, or RV_ENOMEM. */
int resume_files_match(const rv_torrent_info_t *ti, const char *save_dir,
                       const struct resume_data *rd, struct bitfield *suspect, rv_error_t *err);

/* Forgets what rd says about the pieces in suspect: clears them from have and drops their
 * partial pieces. What is left of rd can be trusted; the suspect pieces are to be hashed. */
void resume_drop_suspect(struct resume_data *rd, const struct bitfield *suspect);

#endif
