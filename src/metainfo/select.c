/* File selection: indices to per-file flags, flags to wanted and boundary pieces. */
#include "metainfo/select.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"

int select_files(const rv_torrent_info_t *ti, const rv_file_range_t *ranges, size_t n,
                 uint8_t *out, rv_error_t *err)
{
    size_t real = 0;
    for (size_t i = 0; i < ti->file_count; i++)
        real += !(ti->files[i].attr & RV_FILE_PAD);
    for (size_t k = 0; k < n; k++) {
        if (ranges[k].first > ranges[k].last)
            return err_set(err, RV_EINVAL, "file range %u-%u ends before it starts",
                           ranges[k].first, ranges[k].last);
        if (ranges[k].last >= real)
            return err_set(err, RV_EINVAL, "file %u is past the last file (the torrent has %zu "
                           "files, 0-%zu)", ranges[k].last, real, real ? real - 1 : 0);
    }
    size_t index = 0;
    for (size_t i = 0; i < ti->file_count; i++) {
        if (ti->files[i].attr & RV_FILE_PAD) {
            out[i] = 0;
            continue;
        }
        bool sel = n == 0;
        for (size_t k = 0; k < n && !sel; k++)
            sel = index >= ranges[k].first && index <= ranges[k].last;
        out[i] = sel;
        index++;
    }
    return 0;
}

void select_pieces(const rv_torrent_info_t *ti, const struct layout *l, const uint8_t *file_sel,
                   struct bitfield *wanted, struct bitfield *partial)
{
    for (uint32_t p = 0; p < ti->piece_count; p++) {
        struct span_iter it;
        struct span sp;
        bool any = false, other = false;
        layout_piece_begin(l, p, &it);
        while (layout_span_next(&it, &sp)) {
            if (sp.length == 0 || (ti->files[sp.file].attr & RV_FILE_PAD))
                continue;
            if (file_sel[sp.file])
                any = true;
            else
                other = true;
        }
        if (any)
            bitfield_set(wanted, p);
        if (any && other)
            bitfield_set(partial, p);
    }
}

int rv_file_select_parse(const char *list, rv_file_range_t **out, size_t *n, rv_error_t *err)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    const char *p = list;
    if (list == NULL || *list == '\0')
        return err_set(err, RV_EINVAL, "empty file list (expected indices like 0,2,5-7)");
    while (*p != '\0') {
        rv_file_range_t r;
        const char *start = p;
        unsigned long v = 0;
        if (*p < '0' || *p > '9')
            goto bad;
        while (*p >= '0' && *p <= '9') {
            v = v * 10 + (unsigned long)(*p++ - '0');
            if (v > 10000000)
                goto bad;
        }
        r.first = r.last = (uint32_t)v;
        if (*p == '-') {
            p++;
            v = 0;
            if (*p < '0' || *p > '9')
                goto bad;
            while (*p >= '0' && *p <= '9') {
                v = v * 10 + (unsigned long)(*p++ - '0');
                if (v > 10000000)
                    goto bad;
            }
            r.last = (uint32_t)v;
            if (r.last < r.first) {
                free(*out);
                *out = NULL;
                *n = 0;
                return err_set(err, RV_EINVAL, "file range %u-%u ends before it starts", r.first,
                               r.last);
            }
        }
        if (*p != ',' && *p != '\0')
            goto bad;
        if (*n == cap) {
            size_t c = cap ? cap * 2 : 8;
            rv_file_range_t *g = realloc(*out, c * sizeof(*g));
            if (g == NULL) {
                free(*out);
                *out = NULL;
                *n = 0;
                return err_set(err, RV_ENOMEM, "out of memory");
            }
            *out = g;
            cap = c;
        }
        (*out)[(*n)++] = r;
        if (*p == ',') {
            p++;
            if (*p == '\0')
                goto bad;
        }
        (void)start;
    }
    return 0;
bad:
    free(*out);
    *out = NULL;
    *n = 0;
    return err_set(err, RV_EINVAL, "'%s' is not a file list like 0,2,5-7 (at offset %zu)", list,
                   (size_t)(p - list));
}
