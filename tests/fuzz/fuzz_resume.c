/* libFuzzer target: resume files (storage/resume.c) decoded for one fixed torrent. Whatever is
 * accepted must hold together (no partial piece had or repeated, sizes in range) and encode
 * again to bytes that decode to the same thing; every refusal must say what was wrong.
 * The torrent, built below, is the one tests/fuzz/make_resume_corpus.py writes seeds for:
 * "f" with files a (100000 bytes) and b (50000 bytes), pieces of 64 KiB (3 pieces). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bencode/bencode.h"
#include "rivulet/metainfo.h"
#include "storage/resume.h"
#include "util/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct bv *path1(const char *name)
{
    struct bv *l = bv_list();
    bv_list_add(l, bv_cstr(name));
    return l;
}

static struct bv *file_entry(const char *name, int64_t length)
{
    struct bv *d = bv_dict();
    bv_dict_set(d, "length", bv_int(length));
    bv_dict_set(d, "path", path1(name));
    return d;
}

static rv_torrent_info_t *the_torrent(void)
{
    static rv_torrent_info_t *ti;
    if (ti != NULL)
        return ti;
    uint8_t pieces[60];
    for (size_t i = 0; i < sizeof(pieces); i++)
        pieces[i] = (uint8_t)i;
    struct bv *files = bv_list(), *info = bv_dict(), *root = bv_dict();
    bv_list_add(files, file_entry("a", 100000));
    bv_list_add(files, file_entry("b", 50000));
    bv_dict_set(info, "files", files);
    bv_dict_set(info, "name", bv_cstr("f"));
    bv_dict_set(info, "piece length", bv_int(65536));
    bv_dict_set(info, "pieces", bv_str(pieces, sizeof(pieces)));
    bv_dict_set(root, "info", info);
    struct buf b;
    buf_init(&b, 1 << 16);
    if (bv_encode(root, &b) != 0 || rv_torrent_parse(b.data, b.len, 0, &ti, NULL) != 0)
        __builtin_trap();
    bv_free(root);
    buf_free(&b);
    return ti;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const rv_torrent_info_t *ti = the_torrent();
    struct resume_data rd, again;
    rv_error_t err;
    memset(&err, 0, sizeof(err));
    if (resume_decode(data, size, ti, &rd, &err) != 0) {
        if (err.msg[0] == '\0' || rd.files != NULL || rd.partials != NULL || rd.peers != NULL)
            __builtin_trap();
        resume_free(&rd);
        return 0;
    }
    if (rd.have.count != ti->piece_count || rd.file_count != ti->file_count ||
        rd.peer_count > RESUME_MAX_PEERS)
        __builtin_trap();
    for (size_t i = 0; i < rd.partial_count; i++) {
        const struct resume_partial *p = &rd.partials[i];
        if (p->piece >= ti->piece_count || bitfield_has(&rd.have, p->piece) || p->blocks.set == 0)
            __builtin_trap();
        for (size_t k = 0; k < i; k++)
            if (rd.partials[k].piece == p->piece)
                __builtin_trap();
    }
    /* What was accepted encodes, and the encoding decodes to the same bytes again. */
    struct buf b1, b2;
    buf_init(&b1, RESUME_MAX_SIZE);
    buf_init(&b2, RESUME_MAX_SIZE);
    if (resume_encode(&rd, &b1, &err) != 0)
        __builtin_trap();
    if (resume_decode(b1.data, b1.len, ti, &again, &err) != 0)
        __builtin_trap();
    if (resume_encode(&again, &b2, &err) != 0 || b1.len != b2.len ||
        memcmp(b1.data, b2.data, b1.len) != 0)
        __builtin_trap();
    buf_free(&b1);
    buf_free(&b2);
    resume_free(&again);
    resume_free(&rd);
    return 0;
}
