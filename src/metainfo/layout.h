/* File layout: which (file, offset, length) spans a piece or any byte range covers, and which
 * pieces a file covers. Pure arithmetic over the torrent's file list; owns nothing. */
#ifndef RV_METAINFO_LAYOUT_H
#define RV_METAINFO_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rivulet/metainfo.h"

struct layout {
    const rv_file_t *files; /* borrowed; sorted by offset, as torrents list them */
    size_t file_count;
    uint32_t piece_length;
    uint32_t piece_count;
    uint64_t piece_space; /* bytes the pieces cover */
};

struct span {
    size_t file;          /* index into files */
    uint64_t file_offset; /* where in that file */
    uint64_t length;      /* bytes, never 0 */
};

struct span_iter {
    const struct layout *l;
    size_t file;
    uint64_t pos, end; /* remaining range in piece space */
};

/* Fills l from a file list. Returns 0, or RV_EINVAL if the files overlap, run past piece_space
 * or piece_count does not cover piece_space exactly. */
int layout_init(struct layout *l, const rv_file_t *files, size_t file_count, uint32_t piece_length,
                uint64_t piece_space);
/* From a parsed torrent. */
int layout_from_torrent(struct layout *l, const rv_torrent_info_t *ti);

/* Bytes in piece (the last piece may be short). 0 if piece is out of range. */
uint32_t layout_piece_size(const struct layout *l, uint32_t piece);

/* Iterates the file spans of [offset, offset+len) in piece space. Zero-length files yield
 * nothing; bytes that belong to no file (v2 alignment gaps) are skipped. Padding files are
 * yielded: the caller checks RV_FILE_PAD. */
void layout_span_begin(const struct layout *l, uint64_t offset, uint64_t len, struct span_iter *it);
bool layout_span_next(struct span_iter *it, struct span *out);
/* The same for a whole piece. */
void layout_piece_begin(const struct layout *l, uint32_t piece, struct span_iter *it);

/* Pieces that file covers: [*first, *end). Empty (first == end) for zero-length files. */
void layout_file_pieces(const struct layout *l, size_t file, uint32_t *first, uint32_t *end);

#endif
