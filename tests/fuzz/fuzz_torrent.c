/* libFuzzer target: .torrent parsing (v1, v2, hybrid) and the layout of what parses. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "metainfo/layout.h"
#include "rivulet/metainfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rv_torrent_info_t *ti = NULL;
    rv_error_t err;
    if (rv_torrent_parse(data, size, 0, &ti, &err) != 0) {
        if (err.msg[0] == '\0')
            __builtin_trap(); /* every failure must say what was wrong */
        return 0;
    }
    /* Invariants of a parsed torrent. */
    if (ti->piece_count == 0 || ti->file_count == 0 || ti->name == NULL)
        __builtin_trap();
    for (size_t i = 0; i < ti->file_count; i++) {
        const char *p = ti->files[i].path;
        if (p[0] == '/' || strstr(p, "/../") || strncmp(p, "../", 3) == 0 || strstr(p, "//"))
            __builtin_trap();
    }
    struct layout l;
    if (layout_from_torrent(&l, ti) != 0)
        __builtin_trap();
    /* Walk the spans of a few pieces: they must stay inside their files. */
    uint32_t step = ti->piece_count / 8 + 1;
    for (uint32_t piece = 0; piece < ti->piece_count; piece += step) {
        struct span_iter it;
        struct span s;
        uint64_t total = 0;
        layout_piece_begin(&l, piece, &it);
        while (layout_span_next(&it, &s)) {
            if (s.file >= ti->file_count || s.file_offset + s.length > ti->files[s.file].length)
                __builtin_trap();
            total += s.length;
        }
        if (total > layout_piece_size(&l, piece))
            __builtin_trap();
    }
    rv_torrent_info_free(ti);
    /* Strict mode must never accept what the default rejects. */
    if (rv_torrent_parse(data, size, RV_PARSE_STRICT, &ti, &err) == 0)
        rv_torrent_info_free(ti);
    return 0;
}
