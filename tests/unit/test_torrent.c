/* Unit tests for .torrent parsing (metainfo/torrent.c). Torrents are built here with the bencode
 * encoder over small deterministic payloads: v1 piece hashes with SHA-1, v2 pieces roots and
 * piece layers with SHA-256 merkle trees computed independently of the parser (BEP 52), and
 * hybrids with BEP 47 padding. Then every field is checked, and every malformed input we could
 * think of is checked to fail with the right code, message and byte offset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <unistd.h>

#include "bencode/bencode.h"
#include "rivulet/metainfo.h"
#include "util/buf.h"
#include "util/sha.h"

#define KIB16 16384u
#define MAX_BUILD_BYTES (16u << 20) /* payloads larger than this get no real piece hashes */

/* ---- payload and hashes ---- */

/* A file's bytes depend on its path (relative to the torrent name) and the offset, so a v1
 * and a v2 description of the same file hash the same content. Padding files are zeros. */
static uint32_t path_seed(const char *path)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *path; path++)
        h = (h ^ (uint8_t)*path) * 16777619u;
    return h;
}

static void fill(uint8_t *dst, uint32_t seed, uint64_t off, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t o = off + i;
        dst[i] = (uint8_t)(seed + o * 131 + (o >> 9) + (seed >> 8) * (o & 7));
    }
}

static size_t pow2_at_least(size_t n)
{
    size_t w = 1;
    while (w < n)
        w *= 2;
    return w;
}

/* Hashes pairs of nodes upward until one is left; count is a power of two. */
static void merkle_reduce(uint8_t *nodes, size_t count, uint8_t out[32])
{
    while (count > 1) {
        for (size_t i = 0; i < count / 2; i++)
            sha256(nodes + 64 * i, 64, nodes + 32 * i);
        count /= 2;
    }
    memcpy(out, nodes, 32);
}

/* BEP 52: 16 KiB blocks hashed with SHA-256 (the last one short), the leaf layer padded with
 * zero hashes to a power of two, the root of that tree is the pieces root. The piece layer is
 * the row of subtree roots at piece size, only for files larger than one piece. */
static void v2_hashes(const char *path, uint64_t len, uint32_t plen, uint8_t root[32],
                      uint8_t **layer, size_t *nlayer)
{
    uint32_t seed = path_seed(path);
    size_t blocks = (size_t)((len + KIB16 - 1) / KIB16);
    size_t width = pow2_at_least(blocks);
    uint8_t *leaves = calloc(width, 32);
    uint8_t *block = malloc(KIB16);
    assert_non_null(leaves);
    assert_non_null(block);
    for (size_t b = 0; b < blocks; b++) {
        uint64_t at = (uint64_t)b * KIB16;
        size_t n = len - at < KIB16 ? (size_t)(len - at) : KIB16;
        fill(block, seed, at, n);
        sha256(block, n, leaves + 32 * b);
    }
    if (layer != NULL) {
        *layer = NULL;
        *nlayer = 0;
        if (len > plen) {
            size_t per = plen / KIB16;
            size_t pieces = (size_t)((len + plen - 1) / plen);
            uint8_t *row = malloc(pieces * 32);
            uint8_t *tmp = malloc(per * 32);
            assert_non_null(row);
            assert_non_null(tmp);
            for (size_t p = 0; p < pieces; p++) {
                memcpy(tmp, leaves + p * per * 32, per * 32);
                merkle_reduce(tmp, per, row + 32 * p);
            }
            free(tmp);
            *layer = row;
            *nlayer = pieces;
        }
    }
    merkle_reduce(leaves, width, root);
    free(block);
    free(leaves);
}

/* ---- building torrents ---- */

struct tf {
    const char *path; /* relative to the torrent name, '/'-separated */
    uint64_t length;
    const char *attr; /* BEP 47 attributes, or NULL */
};

static int is_pad(const struct tf *f)
{
    return f->attr != NULL && strchr(f->attr, 'p') != NULL;
}

static struct bv *path_list(const char *path)
{
    struct bv *l = bv_list();
    const char *p = path;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        assert_int_equal(bv_list_add(l, bv_str(p, n)), 0);
        if (slash == NULL)
            break;
        p = slash + 1;
    }
    return l;
}

/* The v1 'pieces' string over the files' bytes in order (padding files zero). */
static struct bv *v1_pieces(const struct tf *f, size_t n, uint32_t plen)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += f[i].length;
    if (total > MAX_BUILD_BYTES)
        return bv_str("", 0);
    uint8_t *data = calloc(total ? (size_t)total : 1, 1);
    assert_non_null(data);
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_pad(&f[i]))
            fill(data + pos, path_seed(f[i].path), 0, (size_t)f[i].length);
        pos += f[i].length;
    }
    size_t count = (size_t)((total + plen - 1) / plen);
    uint8_t *hashes = malloc(count ? count * 20 : 1);
    assert_non_null(hashes);
    for (size_t p = 0; p < count; p++) {
        uint64_t at = (uint64_t)p * plen;
        size_t len = total - at < plen ? (size_t)(total - at) : plen;
        sha1(data + at, len, hashes + 20 * p);
    }
    struct bv *s = bv_str(hashes, count * 20);
    free(hashes);
    free(data);
    return s;
}

static void set(struct bv *d, const char *key, struct bv *v)
{
    assert_int_equal(bv_dict_set(d, key, v), 0);
}

static struct bv *info_v1_single(const char *name, uint64_t length, uint32_t plen)
{
    struct tf f = {name, length, NULL};
    struct bv *info = bv_dict();
    set(info, "name", bv_cstr(name));
    set(info, "length", bv_int((int64_t)length));
    set(info, "piece length", bv_int(plen));
    set(info, "pieces", v1_pieces(&f, 1, plen));
    return info;
}

static struct bv *v1_file_list(const struct tf *f, size_t n)
{
    struct bv *files = bv_list();
    for (size_t i = 0; i < n; i++) {
        struct bv *e = bv_dict();
        set(e, "length", bv_int((int64_t)f[i].length));
        set(e, "path", path_list(f[i].path));
        if (f[i].attr != NULL)
            set(e, "attr", bv_cstr(f[i].attr));
        assert_int_equal(bv_list_add(files, e), 0);
    }
    return files;
}

static struct bv *info_v1_multi(const char *name, const struct tf *f, size_t n, uint32_t plen)
{
    struct bv *info = bv_dict();
    set(info, "name", bv_cstr(name));
    set(info, "files", v1_file_list(f, n));
    set(info, "piece length", bv_int(plen));
    set(info, "pieces", v1_pieces(f, n, plen));
    return info;
}

/* {"": {length, pieces root}}: a v2 file entry; root_len 0 leaves the root out. */
static struct bv *v2_leaf(uint64_t length, const uint8_t *root, size_t root_len, const char *attr)
{
    struct bv *inner = bv_dict();
    set(inner, "length", bv_int((int64_t)length));
    if (root_len > 0)
        set(inner, "pieces root", bv_str(root, root_len));
    if (attr != NULL)
        set(inner, "attr", bv_cstr(attr));
    struct bv *leaf = bv_dict();
    assert_int_equal(bv_dict_setn(leaf, "", 0, inner), 0);
    return leaf;
}

/* The BEP 52 file tree of files; piece layers of files larger than one piece go into layers
 * (if not NULL), keyed by pieces root. */
static struct bv *v2_tree(const struct tf *f, size_t n, uint32_t plen, struct bv *layers)
{
    struct {
        char prefix[256];
        struct bv *dir;
    } dirs[32];
    size_t ndirs = 0;
    struct bv *tree = bv_dict();

    for (size_t i = 0; i < n; i++) {
        struct bv *dir = tree;
        const char *p = f[i].path;
        const char *slash;
        while ((slash = strchr(p, '/')) != NULL) {
            size_t plen_ = (size_t)(slash - f[i].path);
            struct bv *sub = NULL;
            for (size_t d = 0; d < ndirs && sub == NULL; d++)
                if (strlen(dirs[d].prefix) == plen_ &&
                    memcmp(dirs[d].prefix, f[i].path, plen_) == 0)
                    sub = dirs[d].dir;
            if (sub == NULL) {
                assert_true(ndirs < 32 && plen_ < 256);
                sub = bv_dict();
                assert_int_equal(bv_dict_setn(dir, p, (size_t)(slash - p), sub), 0);
                memcpy(dirs[ndirs].prefix, f[i].path, plen_);
                dirs[ndirs].prefix[plen_] = '\0';
                dirs[ndirs].dir = sub;
                ndirs++;
            }
            dir = sub;
            p = slash + 1;
        }
        uint8_t root[32] = {0};
        uint8_t *layer = NULL;
        size_t nlayer = 0;
        if (f[i].length > 0)
            v2_hashes(f[i].path, f[i].length, plen, root, &layer, &nlayer);
        set(dir, p, v2_leaf(f[i].length, root, f[i].length > 0 ? 32 : 0, f[i].attr));
        if (layers != NULL && layer != NULL)
            assert_int_equal(bv_dict_setn(layers, root, 32, bv_str(layer, nlayer * 32)), 0);
        free(layer);
    }
    return tree;
}

static struct bv *info_v2(const char *name, const struct tf *f, size_t n, uint32_t plen,
                          struct bv *layers)
{
    struct bv *info = bv_dict();
    set(info, "name", bv_cstr(name));
    set(info, "meta version", bv_int(2));
    set(info, "piece length", bv_int(plen));
    set(info, "file tree", v2_tree(f, n, plen, layers));
    return info;
}

/* A hybrid with an explicit v1 file list (padding files included by the caller). A v1 list of
 * one file without '/' is written as a single-file info ('length'). */
static struct bv *info_hybrid_lists(const char *name, const struct tf *v2, size_t n2,
                                    const struct tf *v1, size_t n1, uint32_t plen,
                                    struct bv *layers)
{
    struct bv *info = info_v2(name, v2, n2, plen, layers);
    if (n1 == 1 && strchr(v1[0].path, '/') == NULL)
        set(info, "length", bv_int((int64_t)v1[0].length));
    else
        set(info, "files", v1_file_list(v1, n1));
    set(info, "pieces", v1_pieces(v1, n1, plen));
    return info;
}

#define MAX_HYBRID 16

/* A hybrid as BEP 52 describes it: the v1 list is the v2 files with padding files after every
 * file but the last that does not end on a piece boundary. */
static struct bv *info_hybrid(const char *name, const struct tf *f, size_t n, uint32_t plen,
                              struct bv *layers)
{
    struct tf v1[2 * MAX_HYBRID];
    static char padnames[2 * MAX_HYBRID][32];
    size_t n1 = 0;
    assert_true(n <= MAX_HYBRID);
    for (size_t i = 0; i < n; i++) {
        v1[n1++] = f[i];
        uint64_t rem = f[i].length % plen;
        if (i + 1 < n && rem != 0) {
            snprintf(padnames[n1], sizeof(padnames[n1]), ".pad/%llu",
                     (unsigned long long)(plen - rem));
            v1[n1].path = padnames[n1];
            v1[n1].length = plen - rem;
            v1[n1].attr = "p";
            n1++;
        }
    }
    return info_hybrid_lists(name, f, n, v1, n1, plen, layers);
}

/* The whole torrent: takes ownership of info and layers (either may be NULL). */
static struct bv *wrap(struct bv *info, struct bv *layers)
{
    struct bv *root = bv_dict();
    if (info != NULL)
        set(root, "info", info);
    if (layers != NULL)
        set(root, "piece layers", layers);
    return root;
}

struct enc {
    uint8_t *p;
    size_t n;
};

/* Encodes and frees v. */
static struct enc encode(struct bv *v)
{
    struct buf b;
    struct enc e;
    buf_init(&b, 64u << 20);
    assert_int_equal(bv_encode(v, &b), 0);
    bv_free(v);
    e.p = buf_steal(&b, &e.n);
    return e;
}

/* Where needle first occurs in e, plus skip. */
static size_t find_in(const uint8_t *p, size_t n, const void *needle, size_t nlen)
{
    const uint8_t *at = memmem(p, n, needle, nlen);
    if (at == NULL)
        print_error("'%.*s' not found in the torrent\n", (int)nlen, (const char *)needle);
    assert_non_null(at);
    return (size_t)(at - p);
}

static size_t enc_find(const struct enc *e, const char *needle)
{
    return find_in(e->p, e->n, needle, strlen(needle));
}

/* ---- parsing ---- */

static rv_torrent_info_t *parse_bytes_ok(const uint8_t *p, size_t n, unsigned flags)
{
    rv_torrent_info_t *ti = NULL;
    rv_error_t err;
    memset(&err, 0xab, sizeof(err));
    int rc = rv_torrent_parse(p, n, flags, &ti, &err);
    if (rc != 0)
        print_error("unexpected failure %d: %s (offset %zu)\n", rc, err.msg, err.offset);
    assert_int_equal(rc, 0);
    assert_non_null(ti);
    return ti;
}

static rv_torrent_info_t *parse_enc_ok(const struct enc *e)
{
    return parse_bytes_ok(e->p, e->n, 0);
}

/* Encodes root (taking ownership), parses it and expects success. */
static rv_torrent_info_t *parse_ok(struct bv *root)
{
    struct enc e = encode(root);
    rv_torrent_info_t *ti = parse_bytes_ok(e.p, e.n, 0);
    free(e.p);
    return ti;
}

static rv_error_t fail_bytes(const uint8_t *p, size_t n, unsigned flags, int code, const char *msg)
{
    rv_torrent_info_t *ti = (rv_torrent_info_t *)0x1;
    rv_error_t err;
    memset(&err, 0, sizeof(err));
    int rc = rv_torrent_parse(p, n, flags, &ti, &err);
    if (rc != code || strstr(err.msg, msg) == NULL)
        print_error("got %d \"%s\", want %d \"%s\"\n", rc, err.msg, code, msg);
    if (rc == 0) /* accepted by mistake: free it so the sanitizer reports only the failure */
        rv_torrent_info_free(ti);
    assert_int_equal(rc, code);
    assert_null(ti);
    assert_int_equal(err.code, code);
    assert_non_null(strstr(err.msg, msg));
    return err;
}

#define NO_OFFSET ((size_t)-1)

/* Expects the encoded torrent to fail with code and a message containing msg; the error's
 * offset must be where `at` first occurs in the encoding plus skip (NULL: only that there is
 * an offset). */
static void fail_enc_at(const struct enc *e, unsigned flags, int code, const char *msg,
                        const char *at, size_t skip)
{
    rv_error_t err = fail_bytes(e->p, e->n, flags, code, msg);
    assert_true(err.has_offset);
    if (at != NULL) {
        size_t want = enc_find(e, at) + skip;
        if (err.offset != want)
            print_error("error \"%s\" at %zu, want %zu (%s + %zu)\n", err.msg, err.offset, want,
                        at, skip);
        assert_int_equal(err.offset, want);
    }
}

/* The same for a value tree (taken). `at_value` names a key ("6:pieces") whose value the
 * error must point at, or NULL. */
static void fail_at_value(struct bv *root, int code, const char *msg, const char *at_value)
{
    struct enc e = encode(root);
    fail_enc_at(&e, 0, code, msg, at_value, at_value ? strlen(at_value) : 0);
    free(e.p);
}

/* ... or at `skip` bytes past where `at` begins. */
static void fail_at_skip(struct bv *root, int code, const char *msg, const char *at, size_t skip)
{
    struct enc e = encode(root);
    fail_enc_at(&e, 0, code, msg, at, skip);
    free(e.p);
}

/* ... or at exactly where `at` begins (a key, or a value found by its own bytes). */
static void fail_at(struct bv *root, int code, const char *msg, const char *at)
{
    fail_at_skip(root, code, msg, at, 0);
}

static void fail_raw(const char *s, int code, const char *msg)
{
    fail_bytes((const uint8_t *)s, strlen(s), 0, code, msg);
}

/* ---- v1 single file ---- */

static void v1_single_file_fields(void **state)
{
    (void)state;
    rv_torrent_info_t *ti = parse_ok(wrap(info_v1_single("a.bin", 40000, KIB16), NULL));

    assert_true(ti->has_v1);
    assert_false(ti->has_v2);
    assert_string_equal(ti->name, "a.bin");
    assert_false(ti->multi_file);
    assert_int_equal(ti->total_size, 40000);
    assert_int_equal(ti->piece_space, 40000);
    assert_int_equal(ti->piece_length, KIB16);
    assert_int_equal(ti->piece_count, 3);
    assert_int_equal(ti->file_count, 1);
    assert_string_equal(ti->files[0].path, "a.bin");
    assert_int_equal(ti->files[0].length, 40000);
    assert_int_equal(ti->files[0].offset, 0);
    assert_int_equal(ti->files[0].attr, 0);
    assert_false(ti->files[0].has_pieces_root);
    assert_int_equal(ti->tier_count, 0);
    assert_int_equal(ti->web_seed_count, 0);
    assert_false(ti->is_private);
    assert_null(ti->comment);
    assert_null(ti->created_by);
    assert_null(ti->source);
    assert_int_equal(ti->creation_date, -1);
    assert_int_equal(ti->piece_layer_count, 0);
    static const uint8_t zero[32];
    assert_memory_equal(ti->info_hash_v2, zero, 32);
    rv_torrent_info_free(ti);
}

static void v1_piece_hashes_match_payload(void **state)
{
    (void)state;
    struct tf f = {"a.bin", 40000, NULL};
    struct bv *pieces = v1_pieces(&f, 1, KIB16);
    struct enc pe = encode(pieces);
    rv_torrent_info_t *ti = parse_ok(wrap(info_v1_single("a.bin", 40000, KIB16), NULL));

    assert_non_null(ti->piece_hashes);
    /* "60:" then the 60 hash bytes */
    assert_int_equal(pe.n, 3 + 60);
    assert_memory_equal(ti->piece_hashes, pe.p + 3, 60);
    /* the hashes live inside the copy of the info dictionary */
    assert_true(ti->piece_hashes >= ti->info_bytes &&
                ti->piece_hashes + 60 <= ti->info_bytes + ti->info_len);
    free(pe.p);
    rv_torrent_info_free(ti);
}

static void v1_info_hash_is_sha1_of_info_bytes(void **state)
{
    (void)state;
    struct enc info = encode(info_v1_single("a.bin", 40000, KIB16));
    struct enc whole = encode(wrap(info_v1_single("a.bin", 40000, KIB16), NULL));
    rv_torrent_info_t *ti = parse_enc_ok(&whole);
    uint8_t want[20];

    sha1(info.p, info.n, want);
    assert_memory_equal(ti->info_hash, want, 20);
    assert_int_equal(ti->info_len, info.n);
    assert_memory_equal(ti->info_bytes, info.p, info.n);
    free(info.p);
    free(whole.p);
    rv_torrent_info_free(ti);
}

static void v1_last_piece_short_and_exact_multiple(void **state)
{
    (void)state;
    rv_torrent_info_t *ti = parse_ok(wrap(info_v1_single("a", 3 * KIB16, KIB16), NULL));
    assert_int_equal(ti->piece_count, 3);
    rv_torrent_info_free(ti);
    ti = parse_ok(wrap(info_v1_single("a", 3 * KIB16 + 1, KIB16), NULL));
    assert_int_equal(ti->piece_count, 4);
    rv_torrent_info_free(ti);
    ti = parse_ok(wrap(info_v1_single("a", 1, KIB16), NULL));
    assert_int_equal(ti->piece_count, 1);
    rv_torrent_info_free(ti);
}

static void v1_meta_version_1_is_v1(void **state)
{
    (void)state;
    struct bv *info = info_v1_single("a", 100, KIB16);
    set(info, "meta version", bv_int(1));
    rv_torrent_info_t *ti = parse_ok(wrap(info, NULL));
    assert_true(ti->has_v1);
    assert_false(ti->has_v2);
    rv_torrent_info_free(ti);
}

/* ---- raw bytes: the info-hash is over the bytes as written ---- */

/* d4:infod4:name5:a.bin6:lengthi1000e12:piece lengthi16384e6:pieces20:<h>e8:announce...e:
 * both dictionaries have unsorted keys. */
static size_t unsorted_torrent(uint8_t *out, size_t cap, size_t *info_at, size_t *info_len)
{
    struct tf f = {"a.bin", 1000, NULL};
    struct enc pieces = encode(v1_pieces(&f, 1, KIB16));
    struct buf b;
    buf_init(&b, cap);
    assert_int_equal(buf_append_str(&b, "d4:info"), 0);
    *info_at = b.len;
    assert_int_equal(
        buf_append_str(&b, "d4:name5:a.bin6:lengthi1000e12:piece lengthi16384e6:pieces"), 0);
    assert_int_equal(buf_append(&b, pieces.p, pieces.n), 0);
    assert_int_equal(buf_append_str(&b, "e"), 0);
    *info_len = b.len - *info_at;
    assert_int_equal(buf_append_str(&b, "8:announce17:http://t/announcee"), 0);
    assert_true(b.len <= cap);
    memcpy(out, b.data, b.len);
    size_t n = b.len;
    buf_free(&b);
    free(pieces.p);
    return n;
}

static void info_hash_covers_raw_unsorted_bytes(void **state)
{
    (void)state;
    uint8_t t[512];
    size_t info_at, info_len;
    size_t n = unsorted_torrent(t, sizeof(t), &info_at, &info_len);
    rv_torrent_info_t *ti = parse_bytes_ok(t, n, 0);
    uint8_t want[20];

    sha1(t + info_at, info_len, want);
    assert_memory_equal(ti->info_hash, want, 20);
    assert_int_equal(ti->info_len, info_len);
    assert_memory_equal(ti->info_bytes, t + info_at, info_len);
    assert_string_equal(ti->name, "a.bin");
    assert_int_equal(ti->tier_count, 1);

    /* re-encoding would have sorted the keys and given another hash */
    struct enc canon = encode(info_v1_single("a.bin", 1000, KIB16));
    uint8_t other[20];
    sha1(canon.p, canon.n, other);
    assert_int_equal(canon.n, info_len);
    assert_memory_not_equal(other, want, 20);
    free(canon.p);
    rv_torrent_info_free(ti);
}

static void strict_rejects_unsorted_keys(void **state)
{
    (void)state;
    uint8_t t[512];
    size_t info_at, info_len;
    size_t n = unsorted_torrent(t, sizeof(t), &info_at, &info_len);
    rv_error_t err = fail_bytes(t, n, RV_PARSE_STRICT, RV_EBENCODE, "not sorted");
    assert_true(err.has_offset);
    /* the first key out of order: "length" after "name" in the info dictionary */
    assert_int_equal(err.offset, find_in(t, n, "6:length", 8));
}

static void strict_rejects_duplicate_keys_default_takes_first(void **state)
{
    (void)state;
    struct tf f = {"a", 1000, NULL};
    struct enc pieces = encode(v1_pieces(&f, 1, KIB16));
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(buf_append_str(&b, "d4:infod6:lengthi1000e4:name1:a4:name1:b"
                                        "12:piece lengthi16384e6:pieces"), 0);
    assert_int_equal(buf_append(&b, pieces.p, pieces.n), 0);
    assert_int_equal(buf_append_str(&b, "ee"), 0);

    rv_torrent_info_t *ti = parse_bytes_ok(b.data, b.len, 0);
    assert_string_equal(ti->name, "a");
    rv_torrent_info_free(ti);

    rv_error_t err = fail_bytes(b.data, b.len, RV_PARSE_STRICT, RV_EBENCODE, "duplicate");
    assert_true(err.has_offset);
    assert_int_equal(err.offset, find_in(b.data, b.len, "4:name1:b", 9));
    buf_free(&b);
    free(pieces.p);
}

static void strict_accepts_canonical_torrent(void **state)
{
    (void)state;
    struct tf f[] = {{"x", 100, NULL}, {"y/z", 200, NULL}};
    struct bv *layers = bv_dict();
    struct enc e = encode(wrap(info_hybrid("t", f, 2, KIB16, layers), layers));
    rv_torrent_info_t *ti = parse_bytes_ok(e.p, e.n, RV_PARSE_STRICT);
    assert_true(ti->has_v1 && ti->has_v2);
    rv_torrent_info_free(ti);
    free(e.p);
}

/* ---- names and paths ---- */

static void name_utf8_preferred(void **state)
{
    (void)state;
    struct bv *info = info_v1_single("plain", 100, KIB16);
    set(info, "name.utf-8", bv_cstr("caf\xc3\xa9"));
    rv_torrent_info_t *ti = parse_ok(wrap(info, NULL));
    assert_string_equal(ti->name, "caf\xc3\xa9");
    assert_string_equal(ti->files[0].path, "caf\xc3\xa9");
    rv_torrent_info_free(ti);
}

static void name_utf8_not_a_string_falls_back_to_name(void **state)
{
    (void)state;
    struct bv *info = info_v1_single("plain", 100, KIB16);
    set(info, "name.utf-8", bv_int(7));
    rv_torrent_info_t *ti = parse_ok(wrap(info, NULL));
    assert_string_equal(ti->name, "plain");
    rv_torrent_info_free(ti);
}

static struct bv *multi_with_entry(struct bv *entry)
{
    struct tf f = {"a", 100, NULL};
    struct bv *info = info_v1_multi("t", &f, 1, KIB16);
    struct bv *files = bv_list();
    assert_int_equal(bv_list_add(files, entry), 0);
    set(info, "files", files);
    return wrap(info, NULL);
}

static struct bv *file_entry(int64_t length, struct bv *path)
{
    struct bv *e = bv_dict();
    set(e, "length", bv_int(length));
    if (path != NULL)
        set(e, "path", path);
    return e;
}

static void path_utf8_preferred(void **state)
{
    (void)state;
    struct bv *e = file_entry(100, path_list("plain/x"));
    set(e, "path.utf-8", path_list("utf/y"));
    rv_torrent_info_t *ti = parse_ok(multi_with_entry(e));
    assert_string_equal(ti->files[0].path, "t/utf/y");
    rv_torrent_info_free(ti);
}

static void path_utf8_malformed_falls_back_to_path(void **state)
{
    (void)state;
    struct bv *e = file_entry(100, path_list("plain/x"));
    struct bv *bad = bv_list();
    assert_int_equal(bv_list_add(bad, bv_int(1)), 0);
    set(e, "path.utf-8", bad);
    rv_torrent_info_t *ti = parse_ok(multi_with_entry(e));
    assert_string_equal(ti->files[0].path, "t/plain/x");
    rv_torrent_info_free(ti);

    e = file_entry(100, path_list("plain/x"));
    set(e, "path.utf-8", bv_cstr("not a list"));
    ti = parse_ok(multi_with_entry(e));
    assert_string_equal(ti->files[0].path, "t/plain/x");
    rv_torrent_info_free(ti);
}

static void path_utf8_is_checked_too(void **state)
{
    (void)state;
    struct bv *e = file_entry(100, path_list("plain"));
    set(e, "path.utf-8", path_list("../evil"));
    fail_at(multi_with_entry(e), RV_EPATH, "'..'", "2:..");
}

/* ---- v1 multi-file ---- */

static void v1_multi_file_offsets_and_paths(void **state)
{
    (void)state;
    struct tf f[] = {{"a.txt", 10000, NULL}, {"sub/b.bin", 30000, NULL}, {"sub/deep/c", 5, NULL}};
    struct enc pe = encode(v1_pieces(f, 3, KIB16));
    rv_torrent_info_t *ti = parse_ok(wrap(info_v1_multi("top", f, 3, KIB16), NULL));

    assert_true(ti->multi_file);
    assert_string_equal(ti->name, "top");
    assert_int_equal(ti->file_count, 3);
    assert_string_equal(ti->files[0].path, "top/a.txt");
    assert_string_equal(ti->files[1].path, "top/sub/b.bin");
    assert_string_equal(ti->files[2].path, "top/sub/deep/c");
    assert_int_equal(ti->files[0].offset, 0);
    assert_int_equal(ti->files[1].offset, 10000);
    assert_int_equal(ti->files[2].offset, 40000);
    assert_int_equal(ti->total_size, 40005);
    assert_int_equal(ti->piece_space, 40005);
    assert_int_equal(ti->piece_count, 3);
    assert_memory_equal(ti->piece_hashes, pe.p + 3, 60);
    free(pe.p);
    rv_torrent_info_free(ti);
}

static void v1_multi_with_one_file_is_multi_file(void **state)
{
    (void)state;
    struct tf f[] = {{"only", 100, NULL}};
    rv_torrent_info_t *ti = parse_ok(wrap(info_v1_multi("top", f, 1, KIB16), NULL));
    assert_true(ti->multi_file);
    assert_string_equal(ti->files[0].path, "top/only");
    rv_torrent_info_free(ti);
}

static void padding_files_flagged_and_not_counted(void **state)
{
    (void)state;
    struct tf f[] = {{"a", 40000, NULL},
                     {".pad/9152", 9152, "p"},
                     {"b", 1000, "x"},
                     {"c", 10, "h"},
                     {"d", 3, "lxz"}};
    rv_torrent_info_t *ti = parse_ok(wrap(info_v1_multi("t", f, 5, KIB16), NULL));

    assert_int_equal(ti->file_count, 5);
    assert_int_equal(ti->files[1].attr, RV_FILE_PAD);
    assert_string_equal(ti->files[1].path, "t/.pad/9152");
    assert_int_equal(ti->files[1].offset, 40000);
    assert_int_equal(ti->files[2].offset, 49152);
    assert_int_equal(ti->files[2].attr, RV_FILE_EXECUTABLE);
    assert_int_equal(ti->files[3].attr, RV_FILE_HIDDEN);
    assert_int_equal(ti->files[4].attr, RV_FILE_SYMLINK | RV_FILE_EXECUTABLE);
    assert_int_equal(ti->files[0].attr, 0);
    assert_int_equal(ti->total_size, 41013);
    assert_int_equal(ti->piece_space, 50165);
    assert_int_equal(ti->piece_count, 4);
    rv_torrent_info_free(ti);
}

static void padding_files_may_share_a_path(void **state)
{
    (void)state;
    struct tf f[] = {{"a", 100, NULL},  {".pad/16284", 16284, "p"}, {"b", 100, NULL},
                     {".pad/16284", 16284, "p"}, {"c", 1, NULL}};
    rv_torrent_info_t *ti = parse_ok(wrap(info_v1_multi("t", f, 5, KIB16), NULL));
    assert_int_equal(ti->file_count, 5);
    assert_int_equal(ti->files[4].offset, 2 * KIB16);
    rv_torrent_info_free(ti);
}

static void zero_length_files_kept_with_offsets(void **state)
{
    (void)state;
    struct tf f[] = {{"e1", 0, NULL}, {"a", 100, NULL}, {"e2", 0, NULL}, {"b", 50, NULL},
                     {"e3", 0, NULL}};
    rv_torrent_info_t *ti = parse_ok(wrap(info_v1_multi("t", f, 5, KIB16), NULL));
    assert_int_equal(ti->file_count, 5);
    assert_int_equal(ti->files[0].offset, 0);
    assert_int_equal(ti->files[0].length, 0);
    assert_int_equal(ti->files[1].offset, 0);
    assert_int_equal(ti->files[2].offset, 100);
    assert_int_equal(ti->files[3].offset, 100);
    assert_int_equal(ti->files[4].offset, 150);
    assert_int_equal(ti->total_size, 150);
    assert_int_equal(ti->piece_count, 1);
    rv_torrent_info_free(ti);
}

/* ---- trackers (BEP 12) ---- */

static struct bv *strs(const char *const *s, size_t n)
{
    struct bv *l = bv_list();
    for (size_t i = 0; i < n; i++)
        assert_int_equal(bv_list_add(l, bv_cstr(s[i])), 0);
    return l;
}

static void announce_alone_is_one_tier(void **state)
{
    (void)state;
    struct bv *root = wrap(info_v1_single("a", 100, KIB16), NULL);
    set(root, "announce", bv_cstr("http://tracker/announce"));
    rv_torrent_info_t *ti = parse_ok(root);
    assert_int_equal(ti->tier_count, 1);
    assert_int_equal(ti->tiers[0].count, 1);
    assert_string_equal(ti->tiers[0].urls[0], "http://tracker/announce");
    rv_torrent_info_free(ti);
}

static void announce_list_tiers_kept_duplicates_and_junk_dropped(void **state)
{
    (void)state;
    static const char *const t1[] = {"http://a/", "http://b/", "http://a/"};
    static const char *const t4[] = {"udp://d:80"};
    struct bv *list = bv_list();
    assert_int_equal(bv_list_add(list, strs(t1, 3)), 0);
    assert_int_equal(bv_list_add(list, bv_list()), 0);            /* empty tier */
    assert_int_equal(bv_list_add(list, bv_cstr("http://x/")), 0); /* not a list */
    struct bv *t3 = bv_list();
    assert_int_equal(bv_list_add(t3, bv_int(5)), 0);
    assert_int_equal(bv_list_add(t3, bv_cstr("")), 0);
    assert_int_equal(bv_list_add(t3, bv_str("http://n\0ul/", 12)), 0);
    assert_int_equal(bv_list_add(t3, bv_cstr("http://c/")), 0);
    assert_int_equal(bv_list_add(t3, bv_cstr("http://b/")), 0); /* already in tier 0 */
    assert_int_equal(bv_list_add(list, t3), 0);
    struct bv *only_dups = bv_list();
    assert_int_equal(bv_list_add(only_dups, bv_cstr("http://a/")), 0);
    assert_int_equal(bv_list_add(list, only_dups), 0); /* empties, so dropped */
    assert_int_equal(bv_list_add(list, strs(t4, 1)), 0);

    struct bv *root = wrap(info_v1_single("a", 100, KIB16), NULL);
    set(root, "announce-list", list);
    set(root, "announce", bv_cstr("http://ignored/"));
    rv_torrent_info_t *ti = parse_ok(root);

    assert_int_equal(ti->tier_count, 3);
    assert_int_equal(ti->tiers[0].count, 2);
    assert_string_equal(ti->tiers[0].urls[0], "http://a/");
    assert_string_equal(ti->tiers[0].urls[1], "http://b/");
    assert_int_equal(ti->tiers[1].count, 1);
    assert_string_equal(ti->tiers[1].urls[0], "http://c/");
    assert_int_equal(ti->tiers[2].count, 1);
    assert_string_equal(ti->tiers[2].urls[0], "udp://d:80");
    for (size_t t = 0; t < ti->tier_count; t++)
        for (size_t u = 0; u < ti->tiers[t].count; u++)
            assert_string_not_equal(ti->tiers[t].urls[u], "http://ignored/");
    rv_torrent_info_free(ti);
}

/* A hostile announce-list of 100,000 tiers: only the first 1000 distinct URLs are kept (the
 * duplicate check made this take minutes before), and url-list stops at 1000 too. */
static void tracker_and_web_seed_counts_capped(void **state)
{
    (void)state;
    char u[64];
    struct bv *list = bv_list();
    struct bv *t0 = bv_list();
    assert_int_equal(bv_list_add(t0, bv_cstr("http://t0/")), 0);
    assert_int_equal(bv_list_add(t0, bv_cstr("http://t0/")), 0); /* a duplicate is not counted */
    assert_int_equal(bv_list_add(list, t0), 0);
    for (int i = 1; i < 100000; i++) {
        snprintf(u, sizeof(u), "http://t%d/", i);
        struct bv *t = bv_list();
        assert_int_equal(bv_list_add(t, bv_cstr(u)), 0);
        assert_int_equal(bv_list_add(list, t), 0);
    }
    struct bv *seeds = bv_list();
    for (int i = 0; i < 5000; i++) {
        snprintf(u, sizeof(u), "http://s%d/", i);
        assert_int_equal(bv_list_add(seeds, bv_cstr(u)), 0);
    }
    struct bv *root = wrap(info_v1_single("a", 100, KIB16), NULL);
    set(root, "announce-list", list);
    set(root, "url-list", seeds);
    rv_torrent_info_t *ti = parse_ok(root);
    size_t urls = 0;
    for (size_t t = 0; t < ti->tier_count; t++)
        urls += ti->tiers[t].count;
    assert_int_equal(urls, 1000);
    assert_int_equal(ti->tier_count, 1000);
    assert_int_equal(ti->tiers[0].count, 1);
    assert_string_equal(ti->tiers[0].urls[0], "http://t0/");
    assert_string_equal(ti->tiers[999].urls[0], "http://t999/");
    assert_int_equal(ti->web_seed_count, 1000);
    assert_string_equal(ti->web_seeds[999], "http://s999/");
    rv_torrent_info_free(ti);
}

static void announce_used_when_announce_list_has_no_url(void **state)
{
    (void)state;
    struct bv *list = bv_list();
    struct bv *tier = bv_list();
    assert_int_equal(bv_list_add(tier, bv_int(1)), 0);
    assert_int_equal(bv_list_add(list, tier), 0);
    struct bv *root = wrap(info_v1_single("a", 100, KIB16), NULL);
    set(root, "announce-list", list);
    set(root, "announce", bv_cstr("http://fallback/"));
    rv_torrent_info_t *ti = parse_ok(root);
    assert_int_equal(ti->tier_count, 1);
    assert_string_equal(ti->tiers[0].urls[0], "http://fallback/");
    rv_torrent_info_free(ti);
}

static void announce_list_of_wrong_type_ignored(void **state)
{
    (void)state;
    struct bv *root = wrap(info_v1_single("a", 100, KIB16), NULL);
    set(root, "announce-list", bv_cstr("http://x/"));
    set(root, "announce", bv_int(3));
    rv_torrent_info_t *ti = parse_ok(root);
    assert_int_equal(ti->tier_count, 0);
    assert_null(ti->tiers);
    rv_torrent_info_free(ti);
}

/* ---- web seeds (BEP 19) ---- */

static void url_list_as_string(void **state)
{
    (void)state;
    struct bv *root = wrap(info_v1_single("a", 100, KIB16), NULL);
    set(root, "url-list", bv_cstr("http://seed/a"));
    rv_torrent_info_t *ti = parse_ok(root);
    assert_int_equal(ti->web_seed_count, 1);
    assert_string_equal(ti->web_seeds[0], "http://seed/a");
    rv_torrent_info_free(ti);
}

static void url_list_as_list_skips_junk(void **state)
{
    (void)state;
    struct bv *l = bv_list();
    assert_int_equal(bv_list_add(l, bv_cstr("http://s1/")), 0);
    assert_int_equal(bv_list_add(l, bv_int(4)), 0);
    assert_int_equal(bv_list_add(l, bv_cstr("")), 0);
    assert_int_equal(bv_list_add(l, bv_list()), 0);
    assert_int_equal(bv_list_add(l, bv_cstr("http://s2/")), 0);
    struct bv *root = wrap(info_v1_single("a", 100, KIB16), NULL);
    set(root, "url-list", l);
    rv_torrent_info_t *ti = parse_ok(root);
    assert_int_equal(ti->web_seed_count, 2);
    assert_string_equal(ti->web_seeds[0], "http://s1/");
    assert_string_equal(ti->web_seeds[1], "http://s2/");
    rv_torrent_info_free(ti);
}

static void url_list_empty_string_or_int_ignored(void **state)
{
    (void)state;
    struct bv *root = wrap(info_v1_single("a", 100, KIB16), NULL);
    set(root, "url-list", bv_cstr(""));
    rv_torrent_info_t *ti = parse_ok(root);
    assert_int_equal(ti->web_seed_count, 0);
    rv_torrent_info_free(ti);
    root = wrap(info_v1_single("a", 100, KIB16), NULL);
    set(root, "url-list", bv_int(1));
    ti = parse_ok(root);
    assert_int_equal(ti->web_seed_count, 0);
    rv_torrent_info_free(ti);
}

/* ---- private and descriptive fields ---- */

static int private_flag(struct bv *value, int in_info)
{
    struct bv *info = info_v1_single("a", 100, KIB16);
    struct bv *root = wrap(info, NULL);
    set(in_info ? info : root, "private", value);
    rv_torrent_info_t *ti = parse_ok(root);
    int p = ti->is_private;
    rv_torrent_info_free(ti);
    return p;
}

static void private_only_when_info_private_is_1(void **state)
{
    (void)state;
    assert_true(private_flag(bv_int(1), 1));
    assert_false(private_flag(bv_int(0), 1));
    assert_false(private_flag(bv_int(2), 1));
    assert_false(private_flag(bv_cstr("1"), 1));
    assert_false(private_flag(bv_int(1), 0)); /* outside info it is not part of the hash */
}

static void private_changes_info_hash(void **state)
{
    (void)state;
    struct bv *info = info_v1_single("a", 100, KIB16);
    set(info, "private", bv_int(1));
    rv_torrent_info_t *p = parse_ok(wrap(info, NULL));
    rv_torrent_info_t *q = parse_ok(wrap(info_v1_single("a", 100, KIB16), NULL));
    assert_memory_not_equal(p->info_hash, q->info_hash, 20);
    rv_torrent_info_free(p);
    rv_torrent_info_free(q);
}

static void descriptive_fields(void **state)
{
    (void)state;
    struct bv *info = info_v1_single("a", 100, KIB16);
    set(info, "source", bv_cstr("SRC"));
    struct bv *root = wrap(info, NULL);
    set(root, "comment", bv_cstr("a comment"));
    set(root, "created by", bv_cstr("rivulet-test"));
    set(root, "creation date", bv_int(1700000000));
    rv_torrent_info_t *ti = parse_ok(root);
    assert_string_equal(ti->comment, "a comment");
    assert_string_equal(ti->created_by, "rivulet-test");
    assert_string_equal(ti->source, "SRC");
    assert_int_equal(ti->creation_date, 1700000000);
    rv_torrent_info_free(ti);
}

static void comment_utf8_preferred_and_wrong_types_ignored(void **state)
{
    (void)state;
    struct bv *root = wrap(info_v1_single("a", 100, KIB16), NULL);
    set(root, "comment", bv_cstr("plain"));
    set(root, "comment.utf-8", bv_cstr("utf"));
    set(root, "created by", bv_int(5));
    set(root, "creation date", bv_cstr("yesterday"));
    rv_torrent_info_t *ti = parse_ok(root);
    assert_string_equal(ti->comment, "utf");
    assert_null(ti->created_by);
    assert_int_equal(ti->creation_date, -1);
    rv_torrent_info_free(ti);
}

static void source_outside_info_ignored(void **state)
{
    (void)state;
    struct bv *root = wrap(info_v1_single("a", 100, KIB16), NULL);
    set(root, "source", bv_cstr("SRC"));
    rv_torrent_info_t *ti = parse_ok(root);
    assert_null(ti->source);
    rv_torrent_info_free(ti);
}

/* ---- v2 ---- */

static void v2_small_file_root_is_block_hash(void **state)
{
    (void)state;
    /* a one-block file: the merkle tree is a single leaf */
    uint8_t data[1000], want[32], root[32];
    fill(data, path_seed("s"), 0, sizeof(data));
    sha256(data, sizeof(data), want);
    v2_hashes("s", sizeof(data), KIB16, root, NULL, NULL);
    assert_memory_equal(root, want, 32);

    struct tf f = {"s", 1000, NULL};
    rv_torrent_info_t *ti = parse_ok(wrap(info_v2("s", &f, 1, KIB16, NULL), NULL));
    assert_true(ti->files[0].has_pieces_root);
    assert_memory_equal(ti->files[0].pieces_root, want, 32);
    rv_torrent_info_free(ti);
}

static void v2_single_file_fields(void **state)
{
    (void)state;
    struct tf f = {"file.bin", 100000, NULL};
    uint8_t root[32];
    v2_hashes(f.path, f.length, 32768, root, NULL, NULL);
    struct bv *layers = bv_dict();
    struct enc info = encode(info_v2("file.bin", &f, 1, 32768, NULL));
    rv_torrent_info_t *ti = parse_ok(wrap(info_v2("file.bin", &f, 1, 32768, layers), layers));
    uint8_t want[32];
    static const uint8_t zero[20];

    assert_false(ti->has_v1);
    assert_true(ti->has_v2);
    sha256(info.p, info.n, want);
    assert_memory_equal(ti->info_hash_v2, want, 32);
    assert_memory_equal(ti->info_hash, zero, 20);
    assert_null(ti->piece_hashes);
    assert_false(ti->multi_file);
    assert_string_equal(ti->name, "file.bin");
    assert_int_equal(ti->file_count, 1);
    assert_string_equal(ti->files[0].path, "file.bin");
    assert_int_equal(ti->files[0].length, 100000);
    assert_int_equal(ti->files[0].offset, 0);
    assert_true(ti->files[0].has_pieces_root);
    assert_memory_equal(ti->files[0].pieces_root, root, 32);
    assert_int_equal(ti->total_size, 100000);
    assert_int_equal(ti->piece_space, 100000);
    assert_int_equal(ti->piece_length, 32768);
    assert_int_equal(ti->piece_count, 4);
    assert_int_equal(ti->piece_layer_count, 1);
    free(info.p);
    rv_torrent_info_free(ti);
}

static void v2_single_file_path_is_the_torrent_name(void **state)
{
    (void)state;
    /* The parser names a lone top-level file after 'name', not after its tree key. */
    struct tf f = {"key.bin", 100, NULL};
    rv_torrent_info_t *ti = parse_ok(wrap(info_v2("display", &f, 1, KIB16, NULL), NULL));
    assert_false(ti->multi_file);
    assert_string_equal(ti->files[0].path, "display");
    rv_torrent_info_free(ti);
}

static void v2_multi_file_naming_alignment_and_layers(void **state)
{
    (void)state;
    struct tf f[] = {{"a.txt", 40000, NULL}, {"dir/b.bin", 100000, NULL}, {"dir/c", 0, NULL},
                     {"z", 5, NULL}};
    struct bv *layers = bv_dict();
    rv_torrent_info_t *ti = parse_ok(wrap(info_v2("tor", f, 4, 32768, layers), layers));

    assert_true(ti->multi_file);
    assert_int_equal(ti->file_count, 4);
    assert_string_equal(ti->files[0].path, "tor/a.txt");
    assert_string_equal(ti->files[1].path, "tor/dir/b.bin");
    assert_string_equal(ti->files[2].path, "tor/dir/c");
    assert_string_equal(ti->files[3].path, "tor/z");
    /* every file starts on a piece boundary */
    assert_int_equal(ti->files[0].offset, 0);
    assert_int_equal(ti->files[1].offset, 65536);
    assert_int_equal(ti->files[2].offset, 196608);
    assert_int_equal(ti->files[3].offset, 196608);
    assert_int_equal(ti->piece_space, 196613);
    assert_int_equal(ti->piece_count, 7);
    assert_int_equal(ti->total_size, 140005);
    assert_int_equal(ti->piece_layer_count, 2);
    assert_true(ti->files[0].has_pieces_root);
    assert_false(ti->files[2].has_pieces_root);
    for (size_t i = 0; i < 4; i++) {
        if (f[i].length == 0)
            continue;
        uint8_t root[32];
        v2_hashes(f[i].path, f[i].length, 32768, root, NULL, NULL);
        assert_memory_equal(ti->files[i].pieces_root, root, 32);
    }
    rv_torrent_info_free(ti);
}

static void v2_lone_file_in_folder_is_multi_file(void **state)
{
    (void)state;
    struct tf f = {"dir/f", 100, NULL};
    rv_torrent_info_t *ti = parse_ok(wrap(info_v2("n", &f, 1, KIB16, NULL), NULL));
    assert_true(ti->multi_file);
    assert_string_equal(ti->files[0].path, "n/dir/f");
    rv_torrent_info_free(ti);
}

static void v2_without_piece_layers_accepted(void **state)
{
    (void)state;
    struct tf f = {"big", 100000, NULL};
    rv_torrent_info_t *ti = parse_ok(wrap(info_v2("big", &f, 1, KIB16, NULL), NULL));
    assert_int_equal(ti->piece_layer_count, 0);
    assert_int_equal(ti->piece_count, 7);
    rv_torrent_info_free(ti);
}

static void v2_layer_of_last_partial_piece_padded(void **state)
{
    (void)state;
    /* 5 pieces of 64 KiB (4 blocks each): the layer pads to 8 with zero-piece hashes, and the
     * last piece holds one short block */
    struct tf f = {"f", 4 * 65536 + 100, NULL};
    struct bv *layers = bv_dict();
    rv_torrent_info_t *ti = parse_ok(wrap(info_v2("f", &f, 1, 65536, layers), layers));
    assert_int_equal(ti->piece_layer_count, 1);
    assert_int_equal(ti->piece_count, 5);
    rv_torrent_info_free(ti);
}

static void v2_layer_of_whole_pieces_needs_no_padding(void **state)
{
    (void)state;
    /* exactly 4 pieces of 32 KiB: a full tree, nothing padded at either level */
    struct tf f = {"f", 4 * 32768, NULL};
    struct bv *layers = bv_dict();
    rv_torrent_info_t *ti = parse_ok(wrap(info_v2("f", &f, 1, 32768, layers), layers));
    assert_int_equal(ti->piece_layer_count, 1);
    assert_int_equal(ti->piece_count, 4);
    rv_torrent_info_free(ti);
}

static void v2_piece_layers_only_for_files_over_one_piece(void **state)
{
    (void)state;
    struct tf f[] = {{"exact", 32768, NULL}, {"over", 32769, NULL}, {"under", 100, NULL}};
    struct bv *layers = bv_dict();
    rv_torrent_info_t *ti = parse_ok(wrap(info_v2("t", f, 3, 32768, layers), layers));
    assert_int_equal(ti->piece_layer_count, 1);
    assert_int_equal(ti->files[1].offset, 32768);
    assert_int_equal(ti->files[2].offset, 3 * 32768);
    rv_torrent_info_free(ti);
}

/* ---- hybrid ---- */

static void hybrid_multi_file(void **state)
{
    (void)state;
    struct tf f[] = {{"a", 40000, NULL}, {"b", 20000, NULL}, {"c", 100, NULL}};
    struct bv *layers = bv_dict();
    struct enc info = encode(info_hybrid("hyb", f, 3, KIB16, NULL));
    rv_torrent_info_t *ti = parse_ok(wrap(info_hybrid("hyb", f, 3, KIB16, layers), layers));
    uint8_t h1[20], h2[32];

    assert_true(ti->has_v1);
    assert_true(ti->has_v2);
    sha1(info.p, info.n, h1);
    sha256(info.p, info.n, h2);
    assert_memory_equal(ti->info_hash, h1, 20);
    assert_memory_equal(ti->info_hash_v2, h2, 32);
    assert_true(ti->multi_file);
    /* the v1 list, padding included */
    assert_int_equal(ti->file_count, 5);
    assert_string_equal(ti->files[0].path, "hyb/a");
    assert_true(ti->files[1].attr & RV_FILE_PAD);
    assert_string_equal(ti->files[2].path, "hyb/b");
    assert_int_equal(ti->files[2].offset, 49152);
    assert_true(ti->files[3].attr & RV_FILE_PAD);
    assert_int_equal(ti->files[4].offset, 81920);
    assert_int_equal(ti->total_size, 60100);
    assert_int_equal(ti->piece_space, 82020);
    assert_int_equal(ti->piece_count, 6);
    assert_int_equal(ti->piece_layer_count, 2);
    /* v2 roots copied onto the v1 files */
    uint8_t root[32];
    v2_hashes("b", 20000, KIB16, root, NULL, NULL);
    assert_true(ti->files[2].has_pieces_root);
    assert_memory_equal(ti->files[2].pieces_root, root, 32);
    assert_false(ti->files[1].has_pieces_root);
    free(info.p);
    rv_torrent_info_free(ti);
}

static void hybrid_single_file(void **state)
{
    (void)state;
    struct tf f = {"one.bin", 50000, NULL};
    struct bv *layers = bv_dict();
    rv_torrent_info_t *ti = parse_ok(wrap(info_hybrid("one.bin", &f, 1, KIB16, layers), layers));
    assert_true(ti->has_v1 && ti->has_v2);
    assert_false(ti->multi_file);
    assert_int_equal(ti->file_count, 1);
    assert_string_equal(ti->files[0].path, "one.bin");
    assert_true(ti->files[0].has_pieces_root);
    assert_int_equal(ti->piece_count, 4);
    assert_int_equal(ti->piece_layer_count, 1);
    rv_torrent_info_free(ti);
}

static void hybrid_length_mismatch_rejected(void **state)
{
    (void)state;
    struct tf v2[] = {{"a", 100, NULL}, {"b", 200, NULL}};
    struct tf v1[] = {{"a", 100, NULL}, {".pad/16284", 16284, "p"}, {"b", 201, NULL}};
    fail_at_value(wrap(info_hybrid_lists("t", v2, 2, v1, 3, KIB16, NULL), NULL), RV_ETORRENT,
                  "hybrid torrent: v1 file t/b does not match", "4:info");
}

static void hybrid_path_mismatch_rejected(void **state)
{
    (void)state;
    struct tf v2[] = {{"a", 100, NULL}, {"b", 200, NULL}};
    struct tf v1[] = {{"a", 100, NULL}, {".pad/16284", 16284, "p"}, {"c", 200, NULL}};
    fail_at_value(wrap(info_hybrid_lists("t", v2, 2, v1, 3, KIB16, NULL), NULL), RV_ETORRENT,
                  "does not match v2 file b", "4:info");
}

static void hybrid_single_name_must_match_tree_key(void **state)
{
    (void)state;
    struct tf v2 = {"key", 100, NULL};
    struct tf v1 = {"other", 100, NULL};
    fail_at_value(wrap(info_hybrid_lists("other", &v2, 1, &v1, 1, KIB16, NULL), NULL),
                  RV_ETORRENT, "hybrid torrent", "4:info");
}

static void hybrid_extra_v1_file_rejected(void **state)
{
    (void)state;
    struct tf v2[] = {{"a", 100, NULL}};
    struct tf v1[] = {{"a", 100, NULL}, {".pad/16284", 16284, "p"}, {"b", 1, NULL}};
    fail_at_value(wrap(info_hybrid_lists("t", v2, 1, v1, 3, KIB16, NULL), NULL), RV_ETORRENT,
                  "v1 file list has more files", "4:info");
}

static void hybrid_extra_v2_file_rejected(void **state)
{
    (void)state;
    struct tf v2[] = {{"a", 100, NULL}, {"b", 1, NULL}};
    struct tf v1[] = {{"a", 100, NULL}, {".pad/16284", 16284, "p"}};
    fail_at_value(wrap(info_hybrid_lists("t", v2, 2, v1, 2, KIB16, NULL), NULL), RV_ETORRENT,
                  "v2 file tree has more files", "4:info");
}

static void hybrid_without_padding_rejected(void **state)
{
    (void)state;
    /* Same files, same order, but the v1 list has no padding: b starts at 100 in v1 piece
     * space and at 16384 in v2's, so a piece means different bytes to v1 and v2 peers. */
    struct tf v2[] = {{"a", 100, NULL}, {"b", 200, NULL}};
    fail_at_value(wrap(info_hybrid_lists("t", v2, 2, v2, 2, KIB16, NULL), NULL), RV_ETORRENT,
                  "hybrid torrent", "4:info");
}

static void hybrid_wrong_padding_rejected(void **state)
{
    (void)state;
    struct tf v2[] = {{"a", 100, NULL}, {"b", 200, NULL}};
    struct tf v1[] = {{"a", 100, NULL}, {".pad/100", 100, "p"}, {"b", 200, NULL}};
    fail_at_value(wrap(info_hybrid_lists("t", v2, 2, v1, 3, KIB16, NULL), NULL), RV_ETORRENT,
                  "hybrid torrent", "4:info");
}

static void hybrid_zero_length_file_needs_no_padding(void **state)
{
    (void)state;
    struct tf f[] = {{"a", 100, NULL}, {"e", 0, NULL}, {"z", 10, NULL}};
    struct bv *layers = bv_dict();
    rv_torrent_info_t *ti = parse_ok(wrap(info_hybrid("t", f, 3, KIB16, layers), layers));
    assert_int_equal(ti->file_count, 4); /* a, padding, e, z */
    assert_int_equal(ti->files[2].offset, KIB16);
    assert_int_equal(ti->files[3].offset, KIB16);
    assert_int_equal(ti->total_size, 110);
    rv_torrent_info_free(ti);
}

static void hybrid_tail_padding_tolerated(void **state)
{
    (void)state;
    /* some creators pad the last file too */
    struct tf v2[] = {{"a", 100, NULL}, {"b", 100, NULL}};
    struct tf v1[] = {{"a", 100, NULL}, {".pad/16284", 16284, "p"}, {"b", 100, NULL},
                      {".pad/16284", 16284, "p"}};
    rv_torrent_info_t *ti =
        parse_ok(wrap(info_hybrid_lists("t", v2, 2, v1, 4, KIB16, NULL), NULL));
    assert_int_equal(ti->piece_space, 2 * KIB16);
    assert_int_equal(ti->piece_count, 2);
    assert_int_equal(ti->total_size, 200);
    rv_torrent_info_free(ti);
}

/* ---- loading from disk ---- */

static void load_missing_file_is_eio(void **state)
{
    (void)state;
    rv_torrent_info_t *ti = (rv_torrent_info_t *)0x1;
    rv_error_t err;
    memset(&err, 0, sizeof(err));
    int rc = rv_torrent_load("/nonexistent/rivulet-test/none.torrent", 0, &ti, &err);
    assert_int_equal(rc, RV_EIO);
    assert_null(ti);
    assert_int_equal(err.code, RV_EIO);
    assert_int_equal(err.sys_errno, ENOENT);
    assert_non_null(strstr(err.msg, "none.torrent"));
}

static void load_reads_and_parses(void **state)
{
    (void)state;
    char path[] = "/tmp/rivulet-test-torrent-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    struct enc e = encode(wrap(info_v1_single("a", 100, KIB16), NULL));
    assert_int_equal(write(fd, e.p, e.n), (ssize_t)e.n);
    close(fd);
    rv_torrent_info_t *ti = NULL;
    rv_error_t err;
    int rc = rv_torrent_load(path, 0, &ti, &err);
    unlink(path);
    assert_int_equal(rc, 0);
    assert_string_equal(ti->name, "a");
    rv_torrent_info_free(ti);
    free(e.p);
}

/* ---- malformed: the document ---- */

static void empty_input_rejected(void **state)
{
    (void)state;
    rv_error_t err = fail_bytes((const uint8_t *)"", 0, 0, RV_EBENCODE, "empty");
    assert_true(err.has_offset);
}

static void bad_bencode_rejected_with_offset(void **state)
{
    (void)state;
    rv_error_t err = fail_bytes((const uint8_t *)"d4:infod4:name", 14, 0, RV_EBENCODE, "");
    assert_true(err.has_offset);
    err = fail_bytes((const uint8_t *)"d4:infoi1ee" "x", 12, 0, RV_EBENCODE, "trailing");
    assert_int_equal(err.offset, 11);
}

static void not_a_dict_rejected(void **state)
{
    (void)state;
    rv_error_t err =
        fail_bytes((const uint8_t *)"i5e", 3, 0, RV_ETORRENT, "not a bencoded dictionary");
    assert_true(err.has_offset);
    assert_int_equal(err.offset, 0);
    fail_raw("le", RV_ETORRENT, "not a bencoded dictionary");
    fail_raw("4:spam", RV_ETORRENT, "not a bencoded dictionary");
}

static void no_info_rejected(void **state)
{
    (void)state;
    struct bv *root = wrap(NULL, NULL);
    set(root, "announce", bv_cstr("http://t/"));
    struct enc e = encode(root);
    fail_enc_at(&e, 0, RV_ETORRENT, "no 'info'", NULL, 0);
    free(e.p);
    fail_raw("de", RV_ETORRENT, "no 'info'");
}

static void info_not_a_dict_rejected(void **state)
{
    (void)state;
    struct bv *root = bv_dict();
    set(root, "info", bv_list());
    fail_at_value(root, RV_ETORRENT, "'info' is not a dictionary", "4:info");
    root = bv_dict();
    set(root, "info", bv_cstr("d4:name1:ae"));
    fail_at_value(root, RV_ETORRENT, "'info' is not a dictionary", "4:info");
}

/* ---- malformed: v1 pieces and piece length ---- */

static void pieces_not_multiple_of_20(void **state)
{
    (void)state;
    struct bv *info = info_v1_single("a", 100, KIB16);
    set(info, "pieces", bv_str("0123456789012345678901", 21));
    fail_at_value(wrap(info, NULL), RV_ETORRENT, "21 bytes, not a multiple of 20", "6:pieces");
}

static void pieces_wrong_count(void **state)
{
    (void)state;
    uint8_t h[60] = {0};
    struct bv *info = info_v1_single("a", 40000, KIB16); /* needs 3 */
    set(info, "pieces", bv_str(h, 40));
    fail_at_value(wrap(info, NULL), RV_ETORRENT, "holds 2 hashes", "6:pieces");
    info = info_v1_single("a", 100, KIB16); /* needs 1 */
    set(info, "pieces", bv_str(h, 60));
    fail_at_value(wrap(info, NULL), RV_ETORRENT, "holds 3 hashes", "6:pieces");
    info = info_v1_single("a", 100, KIB16);
    set(info, "pieces", bv_str(h, 0));
    fail_at_value(wrap(info, NULL), RV_ETORRENT, "holds 0 hashes", "6:pieces");
}

static void pieces_not_a_string(void **state)
{
    (void)state;
    struct bv *info = info_v1_single("a", 100, KIB16);
    set(info, "pieces", bv_int(20));
    fail_at_value(wrap(info, NULL), RV_ETORRENT, "'pieces' is not a string", "6:pieces");
}

static void piece_length_checked(int64_t plen, const char *msg)
{
    struct bv *info = info_v1_single("a", 100, KIB16);
    set(info, "piece length", bv_int(plen));
    fail_at_value(wrap(info, NULL), RV_ETORRENT, msg, "12:piece length");
}

static void piece_length_invalid(void **state)
{
    (void)state;
    piece_length_checked(0, "piece length 0 is outside");
    piece_length_checked(-16384, "piece length -16384 is outside");
    piece_length_checked(8192, "piece length 8192 is outside"); /* a power of two, too small */
    piece_length_checked(16383, "outside");
    piece_length_checked(49152, "piece length 49152 is not a power of two");
    piece_length_checked(16385, "not a power of two");
    piece_length_checked((int64_t)RV_MAX_PIECE_LEN * 2, "outside");
    piece_length_checked(INT64_MAX, "outside");
}

static void piece_length_missing_or_not_int(void **state)
{
    (void)state;
    struct bv *info = info_v1_single("a", 100, KIB16);
    set(info, "piece length", bv_cstr("16384"));
    fail_at_value(wrap(info, NULL), RV_ETORRENT, "'piece length' is not an integer",
                  "12:piece length");

    struct bv *root = bv_dict();
    info = bv_dict();
    set(info, "name", bv_cstr("a"));
    set(info, "length", bv_int(100));
    set(info, "pieces", bv_str("01234567890123456789", 20));
    set(root, "info", info);
    fail_at_value(root, RV_ETORRENT, "no 'piece length'", "4:info");
}

static void piece_length_limits_accepted(void **state)
{
    (void)state;
    struct bv *info = info_v1_single("a", 100, KIB16);
    set(info, "piece length", bv_int(RV_MAX_PIECE_LEN));
    rv_torrent_info_t *ti = parse_ok(wrap(info, NULL));
    assert_int_equal(ti->piece_length, RV_MAX_PIECE_LEN);
    rv_torrent_info_free(ti);
}

/* ---- malformed: lengths and file lists ---- */

static void negative_length_rejected(void **state)
{
    (void)state;
    struct bv *info = info_v1_single("a", 100, KIB16);
    set(info, "length", bv_int(-1));
    fail_at_value(wrap(info, NULL), RV_ETORRENT, "'length' is negative", "6:length");
    fail_at_value(multi_with_entry(file_entry(-5, path_list("x"))), RV_ETORRENT,
                  "'length' is negative (-5)", "6:length");
}

static void length_not_integer_rejected(void **state)
{
    (void)state;
    struct bv *info = info_v1_single("a", 100, KIB16);
    set(info, "length", bv_cstr("100"));
    fail_at_value(wrap(info, NULL), RV_ETORRENT, "'length' is not an integer", "6:length");
}

static void both_length_and_files_rejected(void **state)
{
    (void)state;
    struct tf f = {"x", 100, NULL};
    struct bv *info = info_v1_multi("t", &f, 1, KIB16);
    set(info, "length", bv_int(100));
    fail_at_value(wrap(info, NULL), RV_ETORRENT, "both 'length'", "4:info");
}

static void neither_length_nor_files_rejected(void **state)
{
    (void)state;
    struct bv *info = bv_dict();
    set(info, "name", bv_cstr("a"));
    set(info, "piece length", bv_int(KIB16));
    set(info, "pieces", bv_str("", 0));
    fail_at_value(wrap(info, NULL), RV_ETORRENT, "neither 'length' nor 'files'", "4:info");
}

static void files_not_a_list_rejected(void **state)
{
    (void)state;
    struct tf f = {"x", 100, NULL};
    struct bv *info = info_v1_multi("t", &f, 1, KIB16);
    set(info, "files", bv_dict());
    fail_at_value(wrap(info, NULL), RV_ETORRENT, "'files' is not a list", "5:files");
}

static void empty_files_list_rejected(void **state)
{
    (void)state;
    struct tf f = {"x", 100, NULL};
    struct bv *info = info_v1_multi("t", &f, 1, KIB16);
    set(info, "files", bv_list());
    fail_at_value(wrap(info, NULL), RV_ETORRENT, "'files' is empty", "5:files");
}

static void files_entry_not_a_dict_rejected(void **state)
{
    (void)state;
    fail_at_value(multi_with_entry(bv_cstr("x")), RV_ETORRENT,
                  "entry 0 of 'files' is not a dictionary", "5:filesl");
}

static void files_entry_without_length_or_path_rejected(void **state)
{
    (void)state;
    struct bv *e = bv_dict();
    set(e, "path", path_list("x"));
    fail_at_value(multi_with_entry(e), RV_ETORRENT, "file has no 'length'", "5:filesl");
    fail_at_value(multi_with_entry(file_entry(100, NULL)), RV_ETORRENT,
                  "entry 0 of 'files' has no 'path'", "5:filesl");
}

static void path_not_a_list_or_empty_rejected(void **state)
{
    (void)state;
    fail_at_value(multi_with_entry(file_entry(100, bv_cstr("x"))), RV_ETORRENT,
                  "'path' is not a list", "4:path");
    fail_at_value(multi_with_entry(file_entry(100, bv_list())), RV_EPATH, "'path' is empty",
                  "4:path");
}

static void path_component_not_a_string_rejected(void **state)
{
    (void)state;
    struct bv *p = bv_list();
    assert_int_equal(bv_list_add(p, bv_cstr("dir")), 0);
    assert_int_equal(bv_list_add(p, bv_int(7)), 0);
    fail_at(multi_with_entry(file_entry(100, p)), RV_ETORRENT, "file path is not a string", "i7e");
}

/* The path ["ok", comp]: the error must name comp, just past "l2:ok". */
static void path_component_checked(const char *comp, size_t n, const char *msg)
{
    struct bv *p = bv_list();
    assert_int_equal(bv_list_add(p, bv_cstr("ok")), 0);
    assert_int_equal(bv_list_add(p, bv_str(comp, n)), 0);
    fail_at_skip(multi_with_entry(file_entry(100, p)), RV_EPATH, msg, "l2:ok", 5);
}

static void unsafe_path_components_rejected(void **state)
{
    (void)state;
    path_component_checked("..", 2, "file path has a '..' path component");
    path_component_checked(".", 1, "'.' path component");
    path_component_checked("", 0, "empty path component");
    path_component_checked("a/b", 3, "'/' inside a path component");
    path_component_checked("/etc", 4, "'/' inside a path component");
    path_component_checked("a\0b", 3, "NUL byte");
    char longname[257];
    memset(longname, 'x', 256);
    longname[256] = '\0';
    path_component_checked(longname, 256, "path component of 256 bytes");
}

static void dotted_names_that_are_safe_accepted(void **state)
{
    (void)state;
    struct bv *p = bv_list();
    assert_int_equal(bv_list_add(p, bv_cstr("...")), 0);
    assert_int_equal(bv_list_add(p, bv_cstr("..x")), 0);
    assert_int_equal(bv_list_add(p, bv_cstr(".hidden")), 0);
    rv_torrent_info_t *ti = parse_ok(multi_with_entry(file_entry(100, p)));
    assert_string_equal(ti->files[0].path, "t/.../..x/.hidden");
    rv_torrent_info_free(ti);
}

static void long_path_rejected(void **state)
{
    (void)state;
    /* 20 components of 250 bytes: each is fine, together they pass 4096 */
    char comp[251];
    memset(comp, 'y', 250);
    comp[250] = '\0';
    struct bv *p = bv_list();
    for (int i = 0; i < 20; i++)
        assert_int_equal(bv_list_add(p, bv_cstr(comp)), 0);
    struct enc e = encode(multi_with_entry(file_entry(100, p)));
    fail_enc_at(&e, 0, RV_ETORRENT, "longer than 4096", NULL, 0);
    free(e.p);
}

static void name_checked(struct bv *name, int code, const char *msg)
{
    struct bv *info = info_v1_single("a", 100, KIB16);
    set(info, "name", name);
    fail_at_value(wrap(info, NULL), code, msg, "4:name");
}

static void unsafe_names_rejected(void **state)
{
    (void)state;
    name_checked(bv_cstr(".."), RV_EPATH, "name has a '..' path component");
    name_checked(bv_cstr("."), RV_EPATH, "'.' path component");
    name_checked(bv_cstr(""), RV_EPATH, "empty path component");
    name_checked(bv_cstr("a/b"), RV_EPATH, "'/' inside");
    name_checked(bv_cstr("/abs"), RV_EPATH, "'/' inside");
    name_checked(bv_str("a\0", 2), RV_EPATH, "NUL byte");
    name_checked(bv_int(1), RV_ETORRENT, "name is not a string");
}

static void unsafe_name_utf8_rejected(void **state)
{
    (void)state;
    struct bv *info = info_v1_single("fine", 100, KIB16);
    set(info, "name.utf-8", bv_cstr(".."));
    fail_at_value(wrap(info, NULL), RV_EPATH, "'..'", "10:name.utf-8");
}

static void missing_name_rejected(void **state)
{
    (void)state;
    struct bv *root = bv_dict();
    struct bv *info = bv_dict();
    set(info, "length", bv_int(100));
    set(info, "piece length", bv_int(KIB16));
    set(info, "pieces", bv_str("01234567890123456789", 20));
    set(root, "info", info);
    fail_at_value(root, RV_ETORRENT, "info has no 'name'", "4:info");
}

static void duplicate_paths_rejected(void **state)
{
    (void)state;
    struct tf f[] = {{"x/a", 100, NULL}, {"b", 1, NULL}, {"x/a", 50, NULL}};
    fail_at_value(wrap(info_v1_multi("t", f, 3, KIB16), NULL), RV_EPATH,
                  "two files have the same path t/x/a", "4:info");
}

static void file_and_folder_with_same_path_rejected(void **state)
{
    (void)state;
    struct tf f[] = {{"a", 100, NULL}, {"a-b", 1, NULL}, {"a/b", 50, NULL}};
    fail_at_value(wrap(info_v1_multi("t", f, 3, KIB16), NULL), RV_EPATH,
                  "t/a is both a file and a folder", "4:info");
    struct tf g[] = {{"d/e/f", 100, NULL}, {"d/e", 1, NULL}};
    fail_at_value(wrap(info_v1_multi("t", g, 2, KIB16), NULL), RV_EPATH,
                  "t/d/e is both a file and a folder", "4:info");
}

static void similar_paths_accepted(void **state)
{
    (void)state;
    struct tf f[] = {{"a", 1, NULL}, {"ab", 1, NULL}, {"a b", 1, NULL}, {"b/a", 1, NULL},
                     {"a.b/c", 1, NULL}, {"A", 1, NULL}};
    rv_torrent_info_t *ti = parse_ok(wrap(info_v1_multi("t", f, 6, KIB16), NULL));
    assert_int_equal(ti->file_count, 6);
    rv_torrent_info_free(ti);
}

static void total_size_overflow_rejected(void **state)
{
    (void)state;
    struct tf f[] = {{"a", (uint64_t)INT64_MAX, NULL}, {"b", 1, NULL}};
    struct bv *info = info_v1_multi("t", f, 2, KIB16);
    fail_at(wrap(info, NULL), RV_ETORRENT, "total size overflows", "d6:lengthi1e");
    struct tf g[] = {{"a", (uint64_t)INT64_MAX, NULL}, {"b", (uint64_t)INT64_MAX, NULL}};
    info = info_v1_multi("t", g, 2, KIB16);
    /* the entry that overflows: b, just after the end of a's ("4:pathl1:aee") */
    fail_at_skip(wrap(info, NULL), RV_ETORRENT, "total size overflows", "4:pathl1:aee", 12);
}

static void huge_single_file_needs_matching_pieces(void **state)
{
    (void)state;
    struct bv *info = info_v1_single("a", (uint64_t)INT64_MAX, KIB16);
    fail_at_value(wrap(info, NULL), RV_ETORRENT, "holds 0 hashes", "6:pieces");
}

static void all_files_empty_rejected(void **state)
{
    (void)state;
    struct tf f[] = {{"a", 0, NULL}, {"b", 0, NULL}};
    fail_at_value(wrap(info_v1_multi("t", f, 2, KIB16), NULL), RV_ETORRENT, "holds no data",
                  "4:info");
    fail_at_value(wrap(info_v1_single("a", 0, KIB16), NULL), RV_ETORRENT, "holds no data",
                  "4:info");
}

/* ---- malformed: versions ---- */

static void meta_version_3_rejected(void **state)
{
    (void)state;
    struct tf f = {"a", 100, NULL};
    struct bv *info = info_v2("a", &f, 1, KIB16, NULL);
    set(info, "meta version", bv_int(3));
    fail_at_value(wrap(info, NULL), RV_ETORRENT, "unsupported 'meta version' 3",
                  "12:meta version");
}

static void meta_version_not_integer_rejected(void **state)
{
    (void)state;
    struct tf f = {"a", 100, NULL};
    struct bv *info = info_v2("a", &f, 1, KIB16, NULL);
    set(info, "meta version", bv_cstr("2"));
    fail_at_value(wrap(info, NULL), RV_ETORRENT, "'meta version' is not an integer",
                  "12:meta version");
}

static void neither_v1_nor_v2_rejected(void **state)
{
    (void)state;
    struct bv *info = bv_dict();
    set(info, "name", bv_cstr("a"));
    set(info, "length", bv_int(100));
    set(info, "piece length", bv_int(KIB16));
    fail_at_value(wrap(info, NULL), RV_ETORRENT, "neither 'pieces'", "4:info");
}

/* ---- malformed: v2 ---- */

static struct bv *v2_info_with_tree(struct bv *tree)
{
    struct bv *info = bv_dict();
    set(info, "name", bv_cstr("n"));
    set(info, "meta version", bv_int(2));
    set(info, "piece length", bv_int(KIB16));
    if (tree != NULL)
        set(info, "file tree", tree);
    return info;
}

static struct bv *tree_of(const char *key, struct bv *leaf)
{
    struct bv *t = bv_dict();
    set(t, key, leaf);
    return t;
}

static void v2_file_tree_missing_or_wrong_rejected(void **state)
{
    (void)state;
    fail_at_value(wrap(v2_info_with_tree(NULL), NULL), RV_ETORRENT, "has no 'file tree'",
                  "4:info");
    fail_at_value(wrap(v2_info_with_tree(bv_list()), NULL), RV_ETORRENT,
                  "'file tree' is not a non-empty dictionary", "9:file tree");
    fail_at_value(wrap(v2_info_with_tree(bv_dict()), NULL), RV_ETORRENT,
                  "'file tree' is not a non-empty dictionary", "9:file tree");
}

static void v2_empty_folder_rejected(void **state)
{
    (void)state;
    fail_at_value(wrap(v2_info_with_tree(tree_of("dir", bv_dict())), NULL), RV_ETORRENT,
                  "empty folder", "3:dir");
}

static void v2_entry_not_a_dict_rejected(void **state)
{
    (void)state;
    fail_at_value(wrap(v2_info_with_tree(tree_of("f", bv_int(1))), NULL), RV_ETORRENT,
                  "entry is not a dictionary", "1:f");
}

static void v2_file_entry_malformed_rejected(void **state)
{
    (void)state;
    uint8_t root[32] = {1};
    struct bv *leaf = v2_leaf(100, root, 32, NULL);
    set(leaf, "extra", bv_dict()); /* a file that is also a folder */
    fail_at_value(wrap(v2_info_with_tree(tree_of("f", leaf)), NULL), RV_ETORRENT,
                  "file entry is malformed", "1:f");
    leaf = bv_dict();
    assert_int_equal(bv_dict_setn(leaf, "", 0, bv_int(100)), 0);
    fail_at_value(wrap(v2_info_with_tree(tree_of("f", leaf)), NULL), RV_ETORRENT,
                  "file entry is malformed", "1:f");
}

static void v2_empty_key_at_top_rejected(void **state)
{
    (void)state;
    uint8_t root[32] = {1};
    struct bv *t = bv_dict();
    struct bv *inner = bv_dict();
    set(inner, "length", bv_int(100));
    set(inner, "pieces root", bv_str(root, 32));
    assert_int_equal(bv_dict_setn(t, "", 0, inner), 0);
    fail_at_skip(wrap(v2_info_with_tree(t), NULL), RV_EPATH, "empty path component",
                 "9:file treed", 12);
}

static void v2_unsafe_tree_key_rejected(void **state)
{
    (void)state;
    uint8_t root[32] = {1};
    struct bv *dir = tree_of("f", v2_leaf(100, root, 32, NULL));
    fail_at(wrap(v2_info_with_tree(tree_of("..", dir)), NULL), RV_EPATH, "'..' path component",
            "2:..");
    fail_at(wrap(v2_info_with_tree(tree_of("a/b", v2_leaf(100, root, 32, NULL))), NULL), RV_EPATH,
            "'/' inside", "3:a/b");
}

static void v2_missing_pieces_root_rejected(void **state)
{
    (void)state;
    fail_at(wrap(v2_info_with_tree(tree_of("f", v2_leaf(100, NULL, 0, NULL))), NULL),
            RV_ETORRENT, "file of 100 bytes has no 'pieces root'", "d6:lengthi100e");
}

static void v2_empty_file_needs_no_pieces_root(void **state)
{
    (void)state;
    uint8_t root[32];
    v2_hashes("g", 10, KIB16, root, NULL, NULL);
    struct bv *t = bv_dict();
    set(t, "e", v2_leaf(0, NULL, 0, NULL));
    set(t, "g", v2_leaf(10, root, 32, NULL));
    rv_torrent_info_t *ti = parse_ok(wrap(v2_info_with_tree(t), NULL));
    assert_int_equal(ti->file_count, 2);
    assert_false(ti->files[0].has_pieces_root);
    assert_int_equal(ti->files[1].offset, 0);
    rv_torrent_info_free(ti);
}

static void v2_pieces_root_wrong_length_rejected(void **state)
{
    (void)state;
    uint8_t root[33] = {1};
    fail_at_value(wrap(v2_info_with_tree(tree_of("f", v2_leaf(100, root, 31, NULL))), NULL),
                  RV_ETORRENT, "'pieces root' is not 32 bytes", "11:pieces root");
    fail_at_value(wrap(v2_info_with_tree(tree_of("f", v2_leaf(100, root, 33, NULL))), NULL),
                  RV_ETORRENT, "'pieces root' is not 32 bytes", "11:pieces root");
}

static void v2_negative_length_rejected(void **state)
{
    (void)state;
    uint8_t root[32] = {1};
    struct bv *inner = bv_dict();
    set(inner, "length", bv_int(-100));
    set(inner, "pieces root", bv_str(root, 32));
    struct bv *leaf = bv_dict();
    assert_int_equal(bv_dict_setn(leaf, "", 0, inner), 0);
    fail_at_value(wrap(v2_info_with_tree(tree_of("f", leaf)), NULL), RV_ETORRENT,
                  "'length' is negative", "6:length");
}

static void v2_total_size_overflow_rejected(void **state)
{
    (void)state;
    uint8_t root[32] = {1};
    struct bv *t = bv_dict();
    set(t, "a", v2_leaf((uint64_t)INT64_MAX - 1, root, 32, NULL));
    set(t, "b", v2_leaf(1, root, 32, NULL));
    fail_at_value(wrap(v2_info_with_tree(t), NULL), RV_ETORRENT, "total size overflows",
                  "9:file tree");
}

static void v2_too_many_pieces_rejected(void **state)
{
    (void)state;
    /* 2^46 bytes in 16 KiB pieces: 2^32 pieces, one more than a uint32_t counts */
    uint8_t root[32] = {1};
    fail_at_value(wrap(v2_info_with_tree(tree_of("f", v2_leaf(1ull << 46, root, 32, NULL))), NULL),
                  RV_ETORRENT, "too many pieces (4294967296)", "4:info");
    rv_torrent_info_t *ti = parse_ok(
        wrap(v2_info_with_tree(tree_of("f", v2_leaf((1ull << 46) - KIB16, root, 32, NULL))), NULL));
    assert_int_equal(ti->piece_count, UINT32_MAX);
    rv_torrent_info_free(ti);
}

static void v2_all_files_empty_rejected(void **state)
{
    (void)state;
    struct bv *t = bv_dict();
    set(t, "a", v2_leaf(0, NULL, 0, NULL));
    set(t, "b", v2_leaf(0, NULL, 0, NULL));
    fail_at_value(wrap(v2_info_with_tree(t), NULL), RV_ETORRENT, "holds no data", "4:info");
}

static void v2_piece_length_checked(void **state)
{
    (void)state;
    struct tf f = {"a", 100, NULL};
    struct bv *info = info_v2("a", &f, 1, KIB16, NULL);
    set(info, "piece length", bv_int(8192));
    fail_at_value(wrap(info, NULL), RV_ETORRENT, "piece length 8192 is outside",
                  "12:piece length");
}

/* The value of the only 'piece layers' entry: past the dict's 'd' and the 35-byte key. */
#define LAYER_AT "12:piece layersd", (16 + 35)

/* A v2 single-file torrent "big" of 100000 bytes in 16 KiB pieces, with layers as given. */
static struct bv *v2_big_with_layers(struct bv *layers)
{
    struct tf f = {"big", 100000, NULL};
    return wrap(info_v2("big", &f, 1, KIB16, NULL), layers);
}

static void v2_piece_layer_wrong_length_rejected(void **state)
{
    (void)state;
    uint8_t root[32], *layer;
    size_t n;
    v2_hashes("big", 100000, KIB16, root, &layer, &n);
    assert_int_equal(n, 7);

    struct bv *layers = bv_dict();
    assert_int_equal(bv_dict_setn(layers, root, 32, bv_str(layer, n * 32 - 1)), 0);
    fail_at_skip(v2_big_with_layers(layers), RV_ETORRENT, "not a multiple of 32 bytes", LAYER_AT);

    layers = bv_dict();
    assert_int_equal(bv_dict_setn(layers, root, 32, bv_str(layer, (n - 1) * 32)), 0);
    fail_at_skip(v2_big_with_layers(layers), RV_ETORRENT,
                 "piece layer of big holds 6 hashes, its 100000 bytes need 7", LAYER_AT);

    uint8_t *longer = calloc(n + 1, 32);
    memcpy(longer, layer, n * 32);
    layers = bv_dict();
    assert_int_equal(bv_dict_setn(layers, root, 32, bv_str(longer, (n + 1) * 32)), 0);
    fail_at_skip(v2_big_with_layers(layers), RV_ETORRENT, "holds 8 hashes", LAYER_AT);
    free(longer);
    free(layer);
}

static void v2_piece_layer_not_hashing_to_root_rejected(void **state)
{
    (void)state;
    uint8_t root[32], *layer;
    size_t n;
    v2_hashes("big", 100000, KIB16, root, &layer, &n);
    layer[5 * 32 + 7] ^= 1;
    struct bv *layers = bv_dict();
    assert_int_equal(bv_dict_setn(layers, root, 32, bv_str(layer, n * 32)), 0);
    fail_at_skip(v2_big_with_layers(layers), RV_ETORRENT, "does not hash to its pieces root",
                 LAYER_AT);
    free(layer);
}

static void v2_piece_layer_swapped_hashes_rejected(void **state)
{
    (void)state;
    uint8_t root[32], *layer, tmp[32];
    size_t n;
    v2_hashes("big", 100000, KIB16, root, &layer, &n);
    memcpy(tmp, layer, 32);
    memcpy(layer, layer + 32, 32);
    memcpy(layer + 32, tmp, 32);
    struct bv *layers = bv_dict();
    assert_int_equal(bv_dict_setn(layers, root, 32, bv_str(layer, n * 32)), 0);
    fail_at_skip(v2_big_with_layers(layers), RV_ETORRENT, "does not hash", LAYER_AT);
    free(layer);
}

static void v2_piece_layers_malformed_rejected(void **state)
{
    (void)state;
    fail_at_value(v2_big_with_layers(bv_list()), RV_ETORRENT, "'piece layers' is not a dictionary",
                  "12:piece layers");

    struct bv *layers = bv_dict();
    set(layers, "short key", bv_str("", 0));
    fail_at(v2_big_with_layers(layers), RV_ETORRENT, "key is not a 32-byte pieces root",
            "9:short key");

    uint8_t other[32];
    memset(other, 'Z', 32);
    layers = bv_dict();
    assert_int_equal(bv_dict_setn(layers, other, 32, bv_str("", 0)), 0);
    fail_at(v2_big_with_layers(layers), RV_ETORRENT, "'piece layers' has an entry for no file",
            "32:ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ");
}

static void v2_duplicate_tree_paths_rejected(void **state)
{
    (void)state;
    /* In default mode dictionaries may repeat keys; two files "n/d/x" must still be refused. */
    uint8_t r[32];
    v2_hashes("x", 10, KIB16, r, NULL, NULL);
    struct enc leaf = encode(v2_leaf(10, r, 32, NULL));
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(buf_append_str(&b, "d4:infod9:file treed1:dd1:x"), 0);
    assert_int_equal(buf_append(&b, leaf.p, leaf.n), 0);
    assert_int_equal(buf_append_str(&b, "1:x"), 0);
    assert_int_equal(buf_append(&b, leaf.p, leaf.n), 0);
    assert_int_equal(buf_append_str(&b, "ee12:meta versioni2e4:name1:n12:piece lengthi16384eee"),
                     0);
    rv_error_t err = fail_bytes(b.data, b.len, 0, RV_EPATH, "two files have the same path n/d/x");
    assert_true(err.has_offset);
    err = fail_bytes(b.data, b.len, RV_PARSE_STRICT, RV_EBENCODE, "duplicate");
    buf_free(&b);
    free(leaf.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v1_single_file_fields),
        cmocka_unit_test(v1_piece_hashes_match_payload),
        cmocka_unit_test(v1_info_hash_is_sha1_of_info_bytes),
        cmocka_unit_test(v1_last_piece_short_and_exact_multiple),
        cmocka_unit_test(v1_meta_version_1_is_v1),
        cmocka_unit_test(info_hash_covers_raw_unsorted_bytes),
        cmocka_unit_test(strict_rejects_unsorted_keys),
        cmocka_unit_test(strict_rejects_duplicate_keys_default_takes_first),
        cmocka_unit_test(strict_accepts_canonical_torrent),
        cmocka_unit_test(name_utf8_preferred),
        cmocka_unit_test(name_utf8_not_a_string_falls_back_to_name),
        cmocka_unit_test(path_utf8_preferred),
        cmocka_unit_test(path_utf8_malformed_falls_back_to_path),
        cmocka_unit_test(path_utf8_is_checked_too),
        cmocka_unit_test(v1_multi_file_offsets_and_paths),
        cmocka_unit_test(v1_multi_with_one_file_is_multi_file),
        cmocka_unit_test(padding_files_flagged_and_not_counted),
        cmocka_unit_test(padding_files_may_share_a_path),
        cmocka_unit_test(zero_length_files_kept_with_offsets),
        cmocka_unit_test(announce_alone_is_one_tier),
        cmocka_unit_test(announce_list_tiers_kept_duplicates_and_junk_dropped),
        cmocka_unit_test(tracker_and_web_seed_counts_capped),
        cmocka_unit_test(announce_used_when_announce_list_has_no_url),
        cmocka_unit_test(announce_list_of_wrong_type_ignored),
        cmocka_unit_test(url_list_as_string),
        cmocka_unit_test(url_list_as_list_skips_junk),
        cmocka_unit_test(url_list_empty_string_or_int_ignored),
        cmocka_unit_test(private_only_when_info_private_is_1),
        cmocka_unit_test(private_changes_info_hash),
        cmocka_unit_test(descriptive_fields),
        cmocka_unit_test(comment_utf8_preferred_and_wrong_types_ignored),
        cmocka_unit_test(source_outside_info_ignored),
        cmocka_unit_test(v2_small_file_root_is_block_hash),
        cmocka_unit_test(v2_single_file_fields),
        cmocka_unit_test(v2_single_file_path_is_the_torrent_name),
        cmocka_unit_test(v2_multi_file_naming_alignment_and_layers),
        cmocka_unit_test(v2_lone_file_in_folder_is_multi_file),
        cmocka_unit_test(v2_without_piece_layers_accepted),
        cmocka_unit_test(v2_layer_of_last_partial_piece_padded),
        cmocka_unit_test(v2_layer_of_whole_pieces_needs_no_padding),
        cmocka_unit_test(v2_piece_layers_only_for_files_over_one_piece),
        cmocka_unit_test(hybrid_multi_file),
        cmocka_unit_test(hybrid_single_file),
        cmocka_unit_test(hybrid_length_mismatch_rejected),
        cmocka_unit_test(hybrid_path_mismatch_rejected),
        cmocka_unit_test(hybrid_single_name_must_match_tree_key),
        cmocka_unit_test(hybrid_extra_v1_file_rejected),
        cmocka_unit_test(hybrid_extra_v2_file_rejected),
        cmocka_unit_test(hybrid_without_padding_rejected),
        cmocka_unit_test(hybrid_wrong_padding_rejected),
        cmocka_unit_test(hybrid_zero_length_file_needs_no_padding),
        cmocka_unit_test(hybrid_tail_padding_tolerated),
        cmocka_unit_test(load_missing_file_is_eio),
        cmocka_unit_test(load_reads_and_parses),
        cmocka_unit_test(empty_input_rejected),
        cmocka_unit_test(bad_bencode_rejected_with_offset),
        cmocka_unit_test(not_a_dict_rejected),
        cmocka_unit_test(no_info_rejected),
        cmocka_unit_test(info_not_a_dict_rejected),
        cmocka_unit_test(pieces_not_multiple_of_20),
        cmocka_unit_test(pieces_wrong_count),
        cmocka_unit_test(pieces_not_a_string),
        cmocka_unit_test(piece_length_invalid),
        cmocka_unit_test(piece_length_missing_or_not_int),
        cmocka_unit_test(piece_length_limits_accepted),
        cmocka_unit_test(negative_length_rejected),
        cmocka_unit_test(length_not_integer_rejected),
        cmocka_unit_test(both_length_and_files_rejected),
        cmocka_unit_test(neither_length_nor_files_rejected),
        cmocka_unit_test(files_not_a_list_rejected),
        cmocka_unit_test(empty_files_list_rejected),
        cmocka_unit_test(files_entry_not_a_dict_rejected),
        cmocka_unit_test(files_entry_without_length_or_path_rejected),
        cmocka_unit_test(path_not_a_list_or_empty_rejected),
        cmocka_unit_test(path_component_not_a_string_rejected),
        cmocka_unit_test(unsafe_path_components_rejected),
        cmocka_unit_test(dotted_names_that_are_safe_accepted),
        cmocka_unit_test(long_path_rejected),
        cmocka_unit_test(unsafe_names_rejected),
        cmocka_unit_test(unsafe_name_utf8_rejected),
        cmocka_unit_test(missing_name_rejected),
        cmocka_unit_test(duplicate_paths_rejected),
        cmocka_unit_test(file_and_folder_with_same_path_rejected),
        cmocka_unit_test(similar_paths_accepted),
        cmocka_unit_test(total_size_overflow_rejected),
        cmocka_unit_test(huge_single_file_needs_matching_pieces),
        cmocka_unit_test(all_files_empty_rejected),
        cmocka_unit_test(meta_version_3_rejected),
        cmocka_unit_test(meta_version_not_integer_rejected),
        cmocka_unit_test(neither_v1_nor_v2_rejected),
        cmocka_unit_test(v2_file_tree_missing_or_wrong_rejected),
        cmocka_unit_test(v2_empty_folder_rejected),
        cmocka_unit_test(v2_entry_not_a_dict_rejected),
        cmocka_unit_test(v2_file_entry_malformed_rejected),
        cmocka_unit_test(v2_empty_key_at_top_rejected),
        cmocka_unit_test(v2_unsafe_tree_key_rejected),
        cmocka_unit_test(v2_missing_pieces_root_rejected),
        cmocka_unit_test(v2_empty_file_needs_no_pieces_root),
        cmocka_unit_test(v2_pieces_root_wrong_length_rejected),
        cmocka_unit_test(v2_negative_length_rejected),
        cmocka_unit_test(v2_total_size_overflow_rejected),
        cmocka_unit_test(v2_too_many_pieces_rejected),
        cmocka_unit_test(v2_all_files_empty_rejected),
        cmocka_unit_test(v2_piece_length_checked),
        cmocka_unit_test(v2_piece_layer_wrong_length_rejected),
        cmocka_unit_test(v2_piece_layer_not_hashing_to_root_rejected),
        cmocka_unit_test(v2_piece_layer_swapped_hashes_rejected),
        cmocka_unit_test(v2_piece_layers_malformed_rejected),
        cmocka_unit_test(v2_duplicate_tree_paths_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
