/* File selection (--select-file, magnet so=): which files of a torrent to download, by their
 * 0-based index among the non-padding files (the index column of rivulet info), and which
 * pieces that makes wanted. BEP 53 says nothing about padding files. libtorrent 2.0 (file
 * indices, file_priorities, the so= it writes) and aria2 1.36 (--select-file, from 1) count
 * padding files as files, so for a torrent with BEP 47 padding files their numbers differ from
 * ours after the first padding file; without padding files ours are libtorrent's, and aria2's
 * minus one (tests/interop/select_files_more.sh shows both). */
#ifndef RV_METAINFO_SELECT_H
#define RV_METAINFO_SELECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metainfo/layout.h"
#include "rivulet/metainfo.h"
#include "util/bitfield.h"

/* Per file of ti (padding files included, never selected): 1 if selected. ranges[0..n) of
 * 0-based non-padding indices; n 0 selects every file. RV_EINVAL with err naming the first
 * index past the torrent's last file. out must hold ti->file_count bytes. */
int select_files(const rv_torrent_info_t *ti, const rv_file_range_t *ranges, size_t n,
                 uint8_t *out, rv_error_t *err);

/* wanted: pieces that hold bytes of a selected file. partial: wanted pieces that also hold
 * bytes of an unselected file (boundary pieces: verified in memory, written only into the
 * selected files, so they cannot be re-read whole from disk). Both must be initialized with
 * ti->piece_count bits. */
void select_pieces(const rv_torrent_info_t *ti, const struct layout *l, const uint8_t *file_sel,
                   struct bitfield *wanted, struct bitfield *partial);

#endif
