/* File layout arithmetic. Files are sorted by offset and never overlap, so the file holding a
 * byte is found by binary search and the rest of a range follows by walking forward. */
#include "metainfo/layout.h"

int layout_init(struct layout *l, const rv_file_t *files, size_t file_count, uint32_t piece_length,
                uint64_t piece_space)
{
    if (piece_length == 0)
        return RV_EINVAL;
    uint64_t end = 0;
    for (size_t i = 0; i < file_count; i++) {
        uint64_t fend;
        if (files[i].offset < end ||
            __builtin_add_overflow(files[i].offset, files[i].length, &fend) || fend > piece_space)
            return RV_EINVAL;
        end = fend;
    }
    uint64_t count = piece_space / piece_length + (piece_space % piece_length != 0);
    if (count > UINT32_MAX)
        return RV_EINVAL;
    l->files = files;
    l->file_count = file_count;
    l->piece_length = piece_length;
    l->piece_count = (uint32_t)count;
    l->piece_space = piece_space;
    return 0;
}

int layout_from_torrent(struct layout *l, const rv_torrent_info_t *ti)
{
    int rc = layout_init(l, ti->files, ti->file_count, ti->piece_length, ti->piece_space);
    if (rc == 0 && l->piece_count != ti->piece_count)
        return RV_EINVAL;
    return rc;
}

uint32_t layout_piece_size(const struct layout *l, uint32_t piece)
{
    if (piece >= l->piece_count)
        return 0;
    uint64_t start = (uint64_t)piece * l->piece_length;
    uint64_t left = l->piece_space - start;
    return left < l->piece_length ? (uint32_t)left : l->piece_length;
}

/* The first file whose end lies past pos (zero-length files never qualify). */
static size_t file_at(const struct layout *l, uint64_t pos)
{
    size_t lo = 0, hi = l->file_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->files[mid].offset + l->files[mid].length <= pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void layout_span_begin(const struct layout *l, uint64_t offset, uint64_t len, struct span_iter *it)
{
    it->l = l;
    if (offset > l->piece_space)
        offset = l->piece_space;
    if (len > l->piece_space - offset)
        len = l->piece_space - offset;
    it->pos = offset;
    it->end = offset + len;
    it->file = file_at(l, offset);
}

bool layout_span_next(struct span_iter *it, struct span *out)
{
    const struct layout *l = it->l;
    while (it->pos < it->end && it->file < l->file_count) {
        const rv_file_t *f = &l->files[it->file];
        uint64_t fend = f->offset + f->length;
        if (f->length == 0 || fend <= it->pos) { /* nothing to yield, or already passed */
            it->file++;
            continue;
        }
        if (f->offset >= it->end)
            break;
        if (f->offset > it->pos)
            it->pos = f->offset; /* a gap that belongs to no file */
        uint64_t stop = fend < it->end ? fend : it->end;
        out->file = it->file;
        out->file_offset = it->pos - f->offset;
        out->length = stop - it->pos;
        it->pos = stop;
        if (stop == fend)
            it->file++;
        return true;
    }
    it->pos = it->end;
    return false;
}

void layout_piece_begin(const struct layout *l, uint32_t piece, struct span_iter *it)
{
    uint64_t start = (uint64_t)piece * l->piece_length;
    layout_span_begin(l, start, layout_piece_size(l, piece), it);
}

void layout_file_pieces(const struct layout *l, size_t file, uint32_t *first, uint32_t *end)
{
    *first = *end = 0;
    if (file >= l->file_count)
        return;
    const rv_file_t *f = &l->files[file];
    uint32_t a = (uint32_t)(f->offset / l->piece_length);
    if (f->length == 0) {
        *first = *end = a;
        return;
    }
    uint64_t last = (f->offset + f->length - 1) / l->piece_length;
    *first = a;
    *end = (uint32_t)(last + 1);
}
