/* Resume data (storage/resume.c): encode/decode round trips, canonical output, every corrupt,
 * truncated or mismatched input refused with a message naming the field; the state folder's
 * XDG rules with the environment set here; save/load through the atomic write; and
 * files_match marking exactly the pieces of a changed, truncated, missing, replaced or new
 * file, the pieces it shares with its neighbours included. Each test works in its own mkdtemp
 * folder and removes it. */
/* cmocka.h needs these first */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bencode/bencode.h"
#include "metainfo/layout.h"
#include "rivulet/metainfo.h"
#include "storage/resume.h"
#include "util/buf.h"
#include "util/hex.h"

/* ---- files and folders ---- */

static char *make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof(tmpl), "%s/rv_resume_XXXXXX", base && base[0] ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tree(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *join(const char *a, const char *b)
{
    char *s = malloc(strlen(a) + strlen(b) + 2);
    assert_non_null(s);
    sprintf(s, "%s/%s", a, b);
    return s;
}

/* Writes n bytes of a pattern to root/rel, making its folders. */
static void put_file(const char *root, const char *rel, size_t n)
{
    char *path = join(root, rel);
    for (char *q = path + strlen(root) + 1; *q; q++) {
        if (*q == '/') {
            *q = '\0';
            mkdir(path, 0755);
            *q = '/';
        }
    }
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++)
        fputc((int)(i * 7 + 3) & 0xff, f);
    assert_int_equal(fclose(f), 0);
    free(path);
}

/* Sets root/rel's modification time to sec + nsec, without following a symlink. */
static void set_mtime(const char *root, const char *rel, time_t sec, long nsec)
{
    char *path = join(root, rel);
    struct timespec ts[2] = {{sec, nsec}, {sec, nsec}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0);
    free(path);
}

/* ---- torrents ---- */

struct tfile {
    const char *rel;
    uint64_t length;
    bool pad;
};

static struct bv *path_list(const char *rel)
{
    struct bv *list = bv_list();
    assert_non_null(list);
    const char *p = rel;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        assert_int_equal(bv_list_add(list, bv_str(p, n)), 0);
        if (slash == NULL)
            break;
        p = slash + 1;
    }
    return list;
}

/* A v1 torrent of these files (files == NULL: one file of single_len bytes). The piece
 * hashes are arbitrary: nothing here hashes data. */
static rv_torrent_info_t *make_torrent(const char *name, uint32_t piece_length,
                                       const struct tfile *files, size_t nfiles,
                                       uint64_t single_len)
{
    uint64_t size = files == NULL ? single_len : 0;
    for (size_t i = 0; i < nfiles; i++)
        size += files[i].length;
    uint32_t count = (uint32_t)((size + piece_length - 1) / piece_length);
    uint8_t *hashes = calloc(count, 20);
    assert_non_null(hashes);
    for (size_t i = 0; i < (size_t)count * 20; i++)
        hashes[i] = (uint8_t)(i * 13 + size);

    struct bv *info = bv_dict();
    assert_int_equal(bv_dict_set(info, "name", bv_cstr(name)), 0);
    assert_int_equal(bv_dict_set(info, "piece length", bv_int(piece_length)), 0);
    assert_int_equal(bv_dict_set(info, "pieces", bv_str(hashes, (size_t)count * 20)), 0);
    free(hashes);
    if (files == NULL) {
        assert_int_equal(bv_dict_set(info, "length", bv_int((int64_t)size)), 0);
    } else {
        struct bv *list = bv_list();
        for (size_t i = 0; i < nfiles; i++) {
            struct bv *fe = bv_dict();
            assert_int_equal(bv_dict_set(fe, "length", bv_int((int64_t)files[i].length)), 0);
            assert_int_equal(bv_dict_set(fe, "path", path_list(files[i].rel)), 0);
            if (files[i].pad)
                assert_int_equal(bv_dict_set(fe, "attr", bv_cstr("p")), 0);
            assert_int_equal(bv_list_add(list, fe), 0);
        }
        assert_int_equal(bv_dict_set(info, "files", list), 0);
    }
    struct bv *root = bv_dict();
    assert_int_equal(bv_dict_set(root, "info", info), 0);
    struct buf b;
    buf_init(&b, (size_t)1 << 24);
    assert_int_equal(bv_encode(root, &b), 0);
    bv_free(root);
    rv_torrent_info_t *ti;
    rv_error_t err;
    int rc = rv_torrent_parse(b.data, b.len, 0, &ti, &err);
    if (rc != 0)
        print_error("parse: %s\n", err.msg);
    assert_int_equal(rc, 0);
    buf_free(&b);
    return ti;
}

/* Pieces of 16 KiB:
 *   0 [0, 16384)      a.bin | b.bin           (the empty file between them covers nothing)
 *   1 [16384, 32768)  b.bin
 *   2 [32768, 49152)  b.bin | padding
 *   3 [49152, 65536)  c.bin
 *   4 [65536, 81920)  c.bin
 *   5 [81920, 89157)  c.bin | d.bin           (short last piece) */
static const struct tfile multi[] = {
    {"a.bin", 10000, false},   {"empty", 0, false},         {"sub/dir/b.bin", 30000, false},
    {".pad/9152", 9152, true}, {"sub/c.bin", 40000, false}, {"d.bin", 5, false},
    {"e/f/empty2", 0, false},
};
#define NMULTI (sizeof(multi) / sizeof(multi[0]))

static rv_torrent_info_t *multi_torrent(void)
{
    rv_torrent_info_t *ti = make_torrent("name", 16384, multi, NMULTI, 0);
    assert_int_equal(ti->piece_count, 6);
    return ti;
}

/* One file of 150000 bytes in 64 KiB pieces: 4, 4 and 2 blocks. */
static rv_torrent_info_t *blocks_torrent(void)
{
    rv_torrent_info_t *ti = make_torrent("big.bin", 65536, NULL, 0, 150000);
    assert_int_equal(ti->piece_count, 3);
    return ti;
}

/* ---- resume data to play with ---- */

static void add_partial(struct resume_data *rd, const rv_torrent_info_t *ti, uint32_t piece,
                        const uint32_t *blocks, size_t n)
{
    struct layout l;
    struct bitfield b;
    assert_int_equal(layout_from_torrent(&l, ti), 0);
    assert_int_equal(bitfield_init(&b, resume_piece_blocks(&l, piece)), 0);
    for (size_t i = 0; i < n; i++)
        bitfield_set(&b, blocks[i]);
    assert_int_equal(resume_add_partial(rd, &l, piece, &b), 0);
    bitfield_free(&b);
}

static struct peer_addr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port)
{
    struct peer_addr p;
    memset(&p, 0, sizeof(p));
    p.family = 4;
    p.ip[0] = a;
    p.ip[1] = b;
    p.ip[2] = c;
    p.ip[3] = d;
    p.port = port;
    return p;
}

static struct peer_addr v6(uint8_t last, uint16_t port)
{
    struct peer_addr p;
    memset(&p, 0, sizeof(p));
    p.family = 6;
    p.ip[0] = 0x20;
    p.ip[1] = 0x01;
    p.ip[2] = 0x0d;
    p.ip[3] = 0xb8;
    p.ip[15] = last;
    p.port = port;
    return p;
}

/* Resume data for blocks_torrent: piece 0 had, piece 2 partial (block 1), peers, totals. */
static void sample(struct resume_data *rd, const rv_torrent_info_t *ti)
{
    assert_int_equal(resume_init(rd, ti), 0);
    bitfield_set(&rd->have, 0);
    rd->files[0] = (struct resume_file){true, 150000, 1700000000123456789LL};
    uint32_t b1[] = {1};
    add_partial(rd, ti, 2, b1, 1);
    uint32_t b2[] = {0, 3};
    add_partial(rd, ti, 1, b2, 2);
    rd->uploaded = 123456789012ULL;
    rd->downloaded = 5;
    struct peer_addr peers[] = {v4(10, 0, 0, 1, 6881), v6(7, 51413), v4(192, 168, 1, 2, 1)};
    assert_int_equal(resume_set_peers(rd, peers, 3), 0);
}

static void assert_same(const struct resume_data *a, const struct resume_data *b)
{
    assert_memory_equal(a->info_hash, b->info_hash, 20);
    assert_int_equal(a->have.count, b->have.count);
    assert_int_equal(a->have.set, b->have.set);
    assert_memory_equal(a->have.bits, b->have.bits, bitfield_bytes(a->have.count));
    assert_int_equal(a->file_count, b->file_count);
    for (size_t i = 0; i < a->file_count; i++) {
        assert_int_equal(a->files[i].exists, b->files[i].exists);
        assert_int_equal(a->files[i].size, b->files[i].size);
        assert_int_equal(a->files[i].mtime_ns, b->files[i].mtime_ns);
    }
    assert_int_equal(a->partial_count, b->partial_count);
    for (size_t i = 0; i < a->partial_count; i++) {
        assert_int_equal(a->partials[i].piece, b->partials[i].piece);
        assert_int_equal(a->partials[i].blocks.count, b->partials[i].blocks.count);
        assert_memory_equal(a->partials[i].blocks.bits, b->partials[i].blocks.bits,
                            bitfield_bytes(a->partials[i].blocks.count));
    }
    assert_int_equal(a->uploaded, b->uploaded);
    assert_int_equal(a->downloaded, b->downloaded);
    assert_int_equal(a->peer_count, b->peer_count);
}

/* ---- round trips ---- */

static void test_round_trip(void **state)
{
    (void)state;
    rv_torrent_info_t *ti = blocks_torrent();
    struct resume_data rd, back;
    struct buf b1, b2;
    rv_error_t err;

    sample(&rd, ti);
    buf_init(&b1, RESUME_MAX_SIZE);
    buf_init(&b2, RESUME_MAX_SIZE);
    assert_int_equal(resume_encode(&rd, &b1, &err), 0);
    int rc = resume_decode(b1.data, b1.len, ti, &back, &err);
    if (rc != 0)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_same(&rd, &back);
    /* Peers: v4 first, then v6, each with its port. */
    assert_int_equal(back.peer_count, 3);
    assert_int_equal(back.peers[0].family, 4);
    assert_int_equal(back.peers[0].port, 6881);
    assert_int_equal(back.peers[0].ip[0], 10);
    assert_int_equal(back.peers[1].family, 4);
    assert_int_equal(back.peers[1].ip[0], 192);
    assert_int_equal(back.peers[1].port, 1);
    assert_int_equal(back.peers[2].family, 6);
    assert_int_equal(back.peers[2].port, 51413);
    assert_int_equal(back.peers[2].ip[15], 7);
    /* Canonical: encoding what was decoded gives the same bytes. */
    assert_int_equal(resume_encode(&back, &b2, &err), 0);
    assert_int_equal(b1.len, b2.len);
    assert_memory_equal(b1.data, b2.data, b1.len);
    buf_free(&b1);
    buf_free(&b2);
    resume_free(&back);
    resume_free(&rd);
    rv_torrent_info_free(ti);
}

static void test_round_trip_empty_and_full(void **state)
{
    (void)state;
    rv_torrent_info_t *ti = multi_torrent();
    struct resume_data rd, back;
    struct buf b;
    rv_error_t err;

    /* Nothing had, every file missing, no partials, no peers. */
    assert_int_equal(resume_init(&rd, ti), 0);
    buf_init(&b, RESUME_MAX_SIZE);
    assert_int_equal(resume_encode(&rd, &b, &err), 0);
    assert_int_equal(resume_decode(b.data, b.len, ti, &back, &err), 0);
    assert_same(&rd, &back);
    assert_int_equal(back.peer_count, 0);
    resume_free(&back);

    /* Everything had, a negative mtime (before 1970) and a zero-length file that exists. */
    bitfield_set_all(&rd.have);
    rd.files[0] = (struct resume_file){true, 10000, -5};
    rd.files[1] = (struct resume_file){true, 0, 0};
    rd.files[6] = (struct resume_file){true, 0, INT64_MAX};
    b.len = 0;
    assert_int_equal(resume_encode(&rd, &b, &err), 0);
    assert_int_equal(resume_decode(b.data, b.len, ti, &back, &err), 0);
    assert_same(&rd, &back);
    resume_free(&back);
    buf_free(&b);
    resume_free(&rd);
    rv_torrent_info_free(ti);
}

static void test_peers_kept_and_dropped(void **state)
{
    (void)state;
    rv_torrent_info_t *ti = blocks_torrent();
    struct resume_data rd, back;
    struct buf b;
    rv_error_t err;

    assert_int_equal(resume_init(&rd, ti), 0);
    /* More than the limit: only RESUME_MAX_PEERS are kept and written. */
    size_t n = RESUME_MAX_PEERS + 10;
    struct peer_addr *many = calloc(n, sizeof(*many));
    for (size_t i = 0; i < n; i++)
        many[i] = v4(10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i, 1000);
    /* Addresses nobody dials are dropped when read back, not refused. */
    many[0].port = 0;
    many[1] = v4(239, 1, 1, 1, 80);
    assert_int_equal(resume_set_peers(&rd, many, n), 0);
    assert_int_equal(rd.peer_count, RESUME_MAX_PEERS);
    free(many);
    buf_init(&b, RESUME_MAX_SIZE);
    assert_int_equal(resume_encode(&rd, &b, &err), 0);
    assert_int_equal(resume_decode(b.data, b.len, ti, &back, &err), 0);
    assert_int_equal(back.peer_count, RESUME_MAX_PEERS - 2);
    assert_int_equal(back.peers[0].ip[3], 2);
    resume_free(&back);
    buf_free(&b);
    resume_free(&rd);
    rv_torrent_info_free(ti);
}

static void test_add_partial_rules(void **state)
{
    (void)state;
    rv_torrent_info_t *ti = blocks_torrent();
    struct layout l;
    struct resume_data rd;
    struct bitfield b4, b2, empty;

    assert_int_equal(layout_from_torrent(&l, ti), 0);
    assert_int_equal(resume_piece_blocks(&l, 0), 4);
    assert_int_equal(resume_piece_blocks(&l, 2), 2);
    assert_int_equal(resume_piece_blocks(&l, 3), 0);
    assert_int_equal(resume_init(&rd, ti), 0);
    assert_int_equal(bitfield_init(&b4, 4), 0);
    assert_int_equal(bitfield_init(&b2, 2), 0);
    assert_int_equal(bitfield_init(&empty, 4), 0);
    bitfield_set(&b4, 2);
    bitfield_set(&b2, 1);
    bitfield_set(&rd.have, 1);

    assert_int_equal(resume_add_partial(&rd, &l, 3, &b4), RV_EINVAL);    /* out of range */
    assert_int_equal(resume_add_partial(&rd, &l, 1, &b4), RV_EINVAL);    /* had */
    assert_int_equal(resume_add_partial(&rd, &l, 0, &b2), RV_EINVAL);    /* wrong size */
    assert_int_equal(resume_add_partial(&rd, &l, 0, &empty), RV_EINVAL); /* no block */
    assert_int_equal(resume_add_partial(&rd, &l, 0, &b4), 0);
    assert_int_equal(resume_add_partial(&rd, &l, 0, &b4), RV_EINVAL); /* twice */
    assert_int_equal(resume_add_partial(&rd, &l, 2, &b2), 0);
    assert_int_equal(rd.partial_count, 2);
    /* The copy is rd's own. */
    bitfield_set(&b4, 0);
    assert_false(bitfield_has(&rd.partials[0].blocks, 0));

    /* The encoder refuses partial pieces that contradict have. */
    struct buf b;
    rv_error_t err;
    buf_init(&b, RESUME_MAX_SIZE);
    bitfield_set(&rd.have, 2);
    assert_int_equal(resume_encode(&rd, &b, &err), RV_EINVAL);
    assert_non_null(strstr(err.msg, "partial piece 2 is also listed as had"));
    buf_free(&b);
    bitfield_free(&b4);
    bitfield_free(&b2);
    bitfield_free(&empty);
    resume_free(&rd);
    rv_torrent_info_free(ti);
}

/* ---- corrupt input ---- */

/* The lists sample() writes, built by hand. */
static struct bv *good_files(void)
{
    struct bv *l = bv_list(), *d = bv_dict();
    bv_dict_set(d, "mtime", bv_int(1700000000123456789LL));
    bv_dict_set(d, "size", bv_int(150000));
    bv_list_add(l, d);
    return l;
}

static struct bv *partial_entry(int64_t piece, const void *bits, size_t n)
{
    struct bv *d = bv_dict();
    bv_dict_set(d, "piece", bv_int(piece));
    bv_dict_set(d, "blocks", bv_str(bits, n));
    return d;
}

static struct bv *good_partials(void)
{
    struct bv *l = bv_list();
    bv_list_add(l, partial_entry(2, "\x40", 1));
    bv_list_add(l, partial_entry(1, "\x90", 1));
    return l;
}

/* The sample's encoding for blocks_torrent, with changes: omit names keys left out (space
 * separated), and the callback may replace values. */
typedef void (*tweak_fn)(struct bv *root);

static uint8_t *build(const rv_torrent_info_t *ti, const char *omit, tweak_fn tweak, size_t *len)
{
    struct resume_data rd;
    struct buf b;
    rv_error_t err;
    sample(&rd, ti);
    buf_init(&b, RESUME_MAX_SIZE);
    assert_int_equal(resume_encode(&rd, &b, &err), 0);
    resume_free(&rd);

    /* Re-build the dictionary from the decoded document, key by key. */
    struct bdoc doc = {0};
    assert_int_equal(bencode_decode(&doc, b.data, b.len, 0, NULL, &err), 0);
    const struct bnode *root = bencode_root(&doc);
    struct bv *out = bv_dict();
    const struct bnode *k = bnode_first(root);
    for (uint32_t i = 0; i < root->count; i += 2) {
        const struct bnode *v = bnode_next(k);
        char key[32];
        snprintf(key, sizeof(key), " %.*s ", (int)k->slen, (const char *)k->s);
        char spaced[256];
        snprintf(spaced, sizeof(spaced), " %s ", omit ? omit : "");
        if (strstr(spaced, key) == NULL) {
            /* Strings and integers are copied; the two lists are rebuilt as sample made
             * them. */
            struct bv *val;
            if (v->type == BT_INT)
                val = bv_int(v->i);
            else if (v->type == BT_STR)
                val = bv_str(v->s, v->slen);
            else if (bstr_eq(k, "files"))
                val = good_files();
            else
                val = good_partials();
            assert_int_equal(bv_dict_setn(out, k->s, k->slen, val), 0);
        }
        k = bnode_next(v);
    }
    bencode_free(&doc);
    buf_free(&b);
    if (tweak != NULL)
        tweak(out);
    buf_init(&b, RESUME_MAX_SIZE);
    assert_int_equal(bv_encode(out, &b), 0);
    bv_free(out);
    return buf_steal(&b, len);
}

/* Expects p[0..len) for ti to be refused with a message containing want. */
static void refused(const rv_torrent_info_t *ti, const uint8_t *p, size_t len, const char *want)
{
    struct resume_data rd;
    rv_error_t err;
    memset(&err, 0, sizeof(err));
    int rc = resume_decode(p, len, ti, &rd, &err);
    if (rc == 0 || (want != NULL && strstr(err.msg, want) == NULL))
        print_error("expected refusal with '%s', got rc %d '%s'\n", want ? want : "", rc, err.msg);
    assert_int_not_equal(rc, 0);
    assert_int_not_equal(err.code, 0);
    assert_true(err.msg[0] != '\0');
    if (want != NULL)
        assert_non_null(strstr(err.msg, want));
    /* Nothing is left behind: resume_free of a refused result is allowed and finds nothing. */
    assert_null(rd.files);
    assert_null(rd.partials);
    assert_null(rd.peers);
    resume_free(&rd);
}

static void refused_build(const rv_torrent_info_t *ti, const char *omit, tweak_fn tweak,
                          const char *want)
{
    size_t len;
    uint8_t *p = build(ti, omit, tweak, &len);
    refused(ti, p, len, want);
    free(p);
}

static void t_version2(struct bv *r)
{
    bv_dict_set(r, "version", bv_int(2));
}
static void t_version_str(struct bv *r)
{
    bv_dict_set(r, "version", bv_cstr("1"));
}
static void t_hash_other(struct bv *r)
{
    bv_dict_set(r, "info-hash", bv_str("01234567890123456789", 20));
}
static void t_hash_short(struct bv *r)
{
    bv_dict_set(r, "info-hash", bv_str("0123456789012345678", 19));
}
static void t_pieces_long(struct bv *r)
{
    bv_dict_set(r, "pieces", bv_str("\x80\x00", 2));
}
static void t_pieces_empty(struct bv *r)
{
    bv_dict_set(r, "pieces", bv_str("", 0));
}
static void t_pieces_spare(struct bv *r)
{
    bv_dict_set(r, "pieces", bv_str("\x90", 1)); /* 3 pieces: bit 3 is spare */
}
static void t_files_two(struct bv *r)
{
    struct bv *l = good_files();
    bv_list_add(l, bv_dict());
    bv_dict_set(r, "files", l);
}
static void t_files_none(struct bv *r)
{
    bv_dict_set(r, "files", bv_list());
}
static void t_files_not_list(struct bv *r)
{
    bv_dict_set(r, "files", bv_dict());
}
static void t_file_not_dict(struct bv *r)
{
    struct bv *l = bv_list();
    bv_list_add(l, bv_int(3));
    bv_dict_set(r, "files", l);
}
static void t_file_size_only(struct bv *r)
{
    struct bv *l = bv_list(), *d = bv_dict();
    bv_dict_set(d, "size", bv_int(150000));
    bv_list_add(l, d);
    bv_dict_set(r, "files", l);
}
static void t_file_mtime_only(struct bv *r)
{
    struct bv *l = bv_list(), *d = bv_dict();
    bv_dict_set(d, "mtime", bv_int(1));
    bv_list_add(l, d);
    bv_dict_set(r, "files", l);
}
static void t_file_negative(struct bv *r)
{
    struct bv *l = bv_list(), *d = bv_dict();
    bv_dict_set(d, "mtime", bv_int(1));
    bv_dict_set(d, "size", bv_int(-1));
    bv_list_add(l, d);
    bv_dict_set(r, "files", l);
}
static void t_file_mtime_str(struct bv *r)
{
    struct bv *l = bv_list(), *d = bv_dict();
    bv_dict_set(d, "mtime", bv_cstr("yesterday"));
    bv_dict_set(d, "size", bv_int(1));
    bv_list_add(l, d);
    bv_dict_set(r, "files", l);
}
static void partial_only(struct bv *r, struct bv *entry)
{
    struct bv *l = bv_list();
    bv_list_add(l, entry);
    bv_dict_set(r, "partial", l);
}
static void t_part_range(struct bv *r)
{
    partial_only(r, partial_entry(3, "\x40", 1));
}
static void t_part_negative(struct bv *r)
{
    partial_only(r, partial_entry(-1, "\x40", 1));
}
static void t_part_had(struct bv *r)
{
    partial_only(r, partial_entry(0, "\x40", 1));
}
static void t_part_twice(struct bv *r)
{
    struct bv *l = good_partials();
    bv_list_add(l, partial_entry(2, "\x80", 1));
    bv_dict_set(r, "partial", l);
}
static void t_part_long(struct bv *r)
{
    partial_only(r, partial_entry(2, "\x40\x00", 2));
}
static void t_part_empty_bits(struct bv *r)
{
    partial_only(r, partial_entry(2, "", 0));
}
static void t_part_spare(struct bv *r)
{
    partial_only(r, partial_entry(2, "\x60", 1)); /* piece 2 has 2 blocks: bit 2 is spare */
}
static void t_part_no_block(struct bv *r)
{
    partial_only(r, partial_entry(1, "\x00", 1));
}
static void t_part_not_dict(struct bv *r)
{
    partial_only(r, bv_int(1));
}
static void t_part_no_piece(struct bv *r)
{
    struct bv *d = bv_dict();
    bv_dict_set(d, "blocks", bv_str("\x40", 1));
    partial_only(r, d);
}
static void t_up_negative(struct bv *r)
{
    bv_dict_set(r, "uploaded", bv_int(-7));
}
static void t_down_str(struct bv *r)
{
    bv_dict_set(r, "downloaded", bv_cstr("5"));
}
static void t_peers_odd(struct bv *r)
{
    bv_dict_set(r, "peers", bv_str("\x0a\x00\x00\x01\x1a\xe1\x0a", 7));
}
static void t_peers6_odd(struct bv *r)
{
    bv_dict_set(r, "peers6", bv_str("0123456789abcdef0", 17));
}
static void t_peers_many(struct bv *r)
{
    size_t n = (RESUME_MAX_PEERS + 1) * 6;
    uint8_t *p = calloc(n, 1);
    for (size_t i = 0; i < n; i += 6) {
        p[i] = 10;
        p[i + 5] = 1;
    }
    bv_dict_set(r, "peers", bv_str(p, n));
    free(p);
}

static void test_corrupt_fields(void **state)
{
    (void)state;
    rv_torrent_info_t *ti = blocks_torrent();
    size_t len;
    struct resume_data rd;
    rv_error_t err;

    /* The rebuilt sample itself is accepted: the refusals below are the tweaks' doing. */
    uint8_t *p = build(ti, NULL, NULL, &len);
    assert_int_equal(resume_decode(p, len, ti, &rd, &err), 0);
    assert_int_equal(rd.partial_count, 2);
    resume_free(&rd);
    free(p);

    static const char *const keys[] = {"version",  "info-hash",  "pieces", "files", "partial",
                                       "uploaded", "downloaded", "peers",  "peers6"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char want[64];
        snprintf(want, sizeof(want), "has no '%s'", keys[i]);
        refused_build(ti, keys[i], NULL, want);
    }
    refused_build(ti, NULL, t_version2, "version 2, not 1");
    refused_build(ti, NULL, t_version_str, "'version' in the resume file is not an integer");
    refused_build(ti, NULL, t_hash_other, "is for info-hash 3031323334");
    refused_build(ti, NULL, t_hash_short, "is for info-hash ?");
    refused_build(ti, NULL, t_pieces_long, "'pieces' is 2 bytes; the torrent's 3 pieces need 1");
    refused_build(ti, NULL, t_pieces_empty, "'pieces' is 0 bytes");
    refused_build(ti, NULL, t_pieces_spare, "bits set past the last piece");
    refused_build(ti, NULL, t_files_two, "lists 2 files, the torrent has 1");
    refused_build(ti, NULL, t_files_none, "lists 0 files");
    refused_build(ti, NULL, t_files_not_list, "'files' in the resume file is not a list");
    refused_build(ti, NULL, t_file_not_dict, "file 0 is not a dictionary");
    refused_build(ti, NULL, t_file_size_only, "file 0 has 'size' without 'mtime'");
    refused_build(ti, NULL, t_file_mtime_only, "file 0 has 'mtime' without 'size'");
    refused_build(ti, NULL, t_file_negative, "'size' in file 0 is negative");
    refused_build(ti, NULL, t_file_mtime_str, "'mtime' in file 0 is not an integer");
    refused_build(ti, NULL, t_part_range, "partial piece 3 is out of range (3 pieces)");
    refused_build(ti, NULL, t_part_negative, "partial piece -1 is out of range");
    refused_build(ti, NULL, t_part_had, "partial piece 0 is also listed as had");
    refused_build(ti, NULL, t_part_twice, "partial piece 2 is listed twice");
    refused_build(ti, NULL, t_part_long, "block bitmap of 2 bytes; its 2 blocks need 1");
    refused_build(ti, NULL, t_part_empty_bits, "block bitmap of 0 bytes");
    refused_build(ti, NULL, t_part_spare, "bits set past its 2 blocks");
    refused_build(ti, NULL, t_part_no_block, "partial piece 1 has no block");
    refused_build(ti, NULL, t_part_not_dict, "partial piece entry 0 is not a dictionary");
    refused_build(ti, NULL, t_part_no_piece, "partial piece entry 0 has no 'piece'");
    refused_build(ti, NULL, t_up_negative, "'uploaded' in the resume file is negative (-7)");
    refused_build(ti, NULL, t_down_str, "'downloaded' in the resume file is not an integer");
    refused_build(ti, NULL, t_peers_odd, "'peers' is 7 bytes, not a multiple of 6");
    refused_build(ti, NULL, t_peers6_odd, "'peers6' is 17 bytes, not a multiple of 18");
    refused_build(ti, NULL, t_peers_many, "4098 peers, more than the 4096 written");
    rv_torrent_info_free(ti);
}

static void test_corrupt_bytes(void **state)
{
    (void)state;
    rv_torrent_info_t *ti = blocks_torrent(), *other = multi_torrent();
    struct resume_data rd;
    struct buf b;
    rv_error_t err;

    sample(&rd, ti);
    buf_init(&b, RESUME_MAX_SIZE);
    assert_int_equal(resume_encode(&rd, &b, &err), 0);
    resume_free(&rd);

    /* Every truncation is refused. */
    for (size_t n = 0; n < b.len; n++)
        refused(ti, b.data, n, NULL);
    /* So is trailing data, a list or a string at the top, and unsorted keys. */
    uint8_t *more = malloc(b.len + 3);
    memcpy(more, b.data, b.len);
    memcpy(more + b.len, "i0e", 3);
    refused(ti, more, b.len + 3, "trailing");
    free(more);
    refused(ti, (const uint8_t *)"le", 2, "a resume file is a dictionary");
    refused(ti, (const uint8_t *)"3:abc", 5, "a resume file is a dictionary");
    refused(ti, (const uint8_t *)"d7:versioni1e1:ai1ee", 20, NULL);
    /* The right file for another torrent. */
    refused(other, b.data, b.len, "is for info-hash");

    /* Any one byte changed: refused, or (a flip inside a value) accepted as data that still
     * holds together, which then encodes again. Never a crash: ASan watches. */
    size_t accepted = 0;
    for (size_t i = 0; i < b.len; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            b.data[i] ^= (uint8_t)(1u << bit);
            if (resume_decode(b.data, b.len, ti, &rd, &err) == 0) {
                struct buf again;
                buf_init(&again, RESUME_MAX_SIZE);
                assert_int_equal(resume_encode(&rd, &again, &err), 0);
                buf_free(&again);
                accepted++;
            }
            resume_free(&rd);
            b.data[i] ^= (uint8_t)(1u << bit);
        }
    }
    assert_true(accepted < b.len * 8);
    buf_free(&b);
    rv_torrent_info_free(ti);
    rv_torrent_info_free(other);
}

/* ---- save and load ---- */

static void test_save_load(void **state)
{
    (void)state;
    rv_torrent_info_t *ti = blocks_torrent();
    char *dir = make_tmpdir();
    char *path = join(dir, "x.resume");
    struct resume_data rd, back;
    rv_error_t err;

    /* No file yet: ENOENT, which the caller reads as a first start. */
    assert_int_equal(resume_load(path, ti, &back, &err), RV_EIO);
    assert_int_equal(err.sys_errno, ENOENT);
    resume_free(&back);

    sample(&rd, ti);
    assert_int_equal(resume_save(path, &rd, &err), 0);
    assert_int_equal(resume_load(path, ti, &back, &err), 0);
    assert_same(&rd, &back);
    resume_free(&back);
    /* Saved again over the old one; no temporary file is left. */
    rd.downloaded = 99;
    assert_int_equal(resume_save(path, &rd, &err), 0);
    assert_int_equal(resume_load(path, ti, &back, &err), 0);
    assert_int_equal(back.downloaded, 99);
    resume_free(&back);
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    assert_int_not_equal(access(tmp, F_OK), 0);

    /* A corrupt file: the message names the file, then what is wrong. */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 3, SEEK_SET);
    fputc('X', f);
    fclose(f);
    assert_int_not_equal(resume_load(path, ti, &back, &err), 0);
    assert_int_equal(strncmp(err.msg, path, strlen(path)), 0);
    resume_free(&back);

    /* A folder where the file should be. */
    char *sub = join(dir, "d.resume");
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(resume_load(sub, ti, &back, &err), RV_EIO);
    resume_free(&back);
    /* Saving into a missing folder fails with RV_EIO naming the path. */
    char *missing = join(dir, "no/such/x.resume");
    assert_int_equal(resume_save(missing, &rd, &err), RV_EIO);
    assert_non_null(strstr(err.msg, "no/such/x.resume"));

    free(missing);
    free(sub);
    resume_free(&rd);
    rm_tree(dir);
    free(dir);
    free(path);
    rv_torrent_info_free(ti);
}

/* ---- the state folder ---- */

static char *saved_home, *saved_xdg;

static int env_setup(void **state)
{
    (void)state;
    const char *h = getenv("HOME"), *x = getenv("XDG_STATE_HOME");
    saved_home = h ? strdup(h) : NULL;
    saved_xdg = x ? strdup(x) : NULL;
    return 0;
}

static int env_teardown(void **state)
{
    (void)state;
    if (saved_home)
        setenv("HOME", saved_home, 1);
    else
        unsetenv("HOME");
    if (saved_xdg)
        setenv("XDG_STATE_HOME", saved_xdg, 1);
    else
        unsetenv("XDG_STATE_HOME");
    free(saved_home);
    free(saved_xdg);
    return 0;
}

static mode_t mode_of(const char *p)
{
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    return st.st_mode & 07777;
}

static void test_state_path(void **state)
{
    (void)state;
    char *root = make_tmpdir();
    uint8_t ih[20];
    char hex[41], out[1024], want[1024];
    rv_error_t err;
    for (int i = 0; i < 20; i++)
        ih[i] = (uint8_t)(0xa0 + i);
    hex_encode(ih, 20, hex);

    /* XDG_STATE_HOME wins over HOME; the rivulet folder is made 0700, whatever the umask. */
    mode_t old = umask(0);
    char *xdg = join(root, "xdg");
    char *home = join(root, "home");
    setenv("XDG_STATE_HOME", xdg, 1);
    setenv("HOME", home, 1);
    assert_int_equal(resume_path(NULL, ih, out, sizeof(out), &err), 0);
    snprintf(want, sizeof(want), "%s/rivulet/%s.resume", xdg, hex);
    assert_string_equal(out, want);
    snprintf(want, sizeof(want), "%s/rivulet", xdg);
    assert_int_equal(mode_of(want), 0700);
    assert_int_equal(mode_of(xdg), 0700); /* made too: it did not exist */

    /* Empty or relative XDG_STATE_HOME is ignored (XDG base directory spec): HOME's
     * .local/state, every folder made 0700. */
    setenv("XDG_STATE_HOME", "", 1);
    assert_int_equal(resume_path(NULL, ih, out, sizeof(out), &err), 0);
    snprintf(want, sizeof(want), "%s/.local/state/rivulet/%s.resume", home, hex);
    assert_string_equal(out, want);
    setenv("XDG_STATE_HOME", "relative/state", 1);
    assert_int_equal(resume_path(NULL, ih, out, sizeof(out), &err), 0);
    assert_string_equal(out, want);
    assert_int_equal(access("relative", F_OK), -1);
    unsetenv("XDG_STATE_HOME");
    assert_int_equal(resume_path(NULL, ih, out, sizeof(out), &err), 0);
    assert_string_equal(out, want);
    snprintf(want, sizeof(want), "%s/.local", home);
    assert_int_equal(mode_of(want), 0700);
    snprintf(want, sizeof(want), "%s/.local/state/rivulet", home);
    assert_int_equal(mode_of(want), 0700);
    /* A folder that exists keeps its mode. */
    assert_int_equal(chmod(want, 0750), 0);
    assert_int_equal(resume_path(NULL, ih, out, sizeof(out), &err), 0);
    assert_int_equal(mode_of(want), 0750);
    /* HOME with a trailing slash gives no double slash. */
    snprintf(want, sizeof(want), "%s/", home);
    setenv("HOME", want, 1);
    assert_int_equal(resume_path(NULL, ih, out, sizeof(out), &err), 0);
    snprintf(want, sizeof(want), "%s/.local/state/rivulet/%s.resume", home, hex);
    assert_string_equal(out, want);

    /* The option: used as it is, made with its parents, trailing slashes dropped. */
    char *opt = join(root, "opt/deep/");
    assert_int_equal(resume_path(opt, ih, out, sizeof(out), &err), 0);
    snprintf(want, sizeof(want), "%s/opt/deep/%s.resume", root, hex);
    assert_string_equal(out, want);
    snprintf(want, sizeof(want), "%s/opt/deep", root);
    assert_int_equal(mode_of(want), 0700);
    umask(old);

    /* Too small a buffer: RV_ETOOBIG and an empty string, nothing made. */
    char small[16];
    assert_int_equal(resume_path(opt, ih, small, sizeof(small), &err), RV_ETOOBIG);
    assert_string_equal(small, "");
    /* A file where a folder should be. */
    char *file = join(root, "plain");
    put_file(root, "plain", 3);
    char *under = join(file, "state");
    assert_int_equal(resume_path(under, ih, out, sizeof(out), &err), RV_EIO);
    assert_non_null(strstr(err.msg, "plain"));
    assert_int_equal(resume_path(file, ih, out, sizeof(out), &err), RV_EIO);
    assert_non_null(strstr(err.msg, "is not a folder"));

    free(under);
    free(file);
    free(opt);
    free(xdg);
    free(home);
    rm_tree(root);
    free(root);
}

/* ---- files on disk ---- */

struct disk {
    rv_torrent_info_t *ti;
    char *root; /* the mkdtemp folder */
    char *dl;   /* root/dl, the download folder */
    struct resume_data rd;
};

/* multi_torrent's files on disk (padding never is), recorded in rd with old mtimes so any
 * touch of a file is seen. */
static void disk_setup(struct disk *d)
{
    rv_error_t err;
    d->ti = multi_torrent();
    d->root = make_tmpdir();
    d->dl = join(d->root, "dl");
    assert_int_equal(mkdir(d->dl, 0755), 0);
    for (size_t i = 0; i < NMULTI; i++) {
        if (multi[i].pad)
            continue;
        char rel[128];
        snprintf(rel, sizeof(rel), "name/%s", multi[i].rel);
        put_file(d->dl, rel, (size_t)multi[i].length);
        set_mtime(d->dl, rel, 1600000000, (long)(i * 1000 + 1));
    }
    assert_int_equal(resume_init(&d->rd, d->ti), 0);
    bitfield_set_all(&d->rd.have);
    assert_int_equal(resume_files_from_disk(d->ti, d->dl, d->rd.files, &err), 0);
}

static void disk_free(struct disk *d)
{
    resume_free(&d->rd);
    rm_tree(d->root);
    free(d->root);
    free(d->dl);
    rv_torrent_info_free(d->ti);
}

/* files_match's verdict as a string of piece flags ("110000": pieces 0 and 1 suspect). */
static int suspects(struct disk *d, char out[8])
{
    struct bitfield s;
    rv_error_t err;
    assert_int_equal(bitfield_init(&s, d->ti->piece_count), 0);
    int n = resume_files_match(d->ti, d->dl, &d->rd, &s, &err);
    assert_true(n >= 0);
    for (uint32_t p = 0; p < d->ti->piece_count; p++)
        out[p] = bitfield_has(&s, p) ? '1' : '0';
    out[d->ti->piece_count] = '\0';
    bitfield_free(&s);
    return n;
}

static void test_files_from_disk(void **state)
{
    (void)state;
    struct disk d;
    disk_setup(&d);
    /* Every real file recorded with its size and the mtime set above; padding as missing. */
    for (size_t i = 0; i < NMULTI; i++) {
        const struct resume_file *f = &d.rd.files[i];
        if (multi[i].pad) {
            assert_false(f->exists);
            continue;
        }
        assert_true(f->exists);
        assert_int_equal(f->size, multi[i].length);
        assert_int_equal(f->mtime_ns, 1600000000LL * 1000000000LL + (int64_t)(i * 1000 + 1));
    }
    /* A symlink in place of a file, or of a folder on its path, is recorded as missing;
     * a missing download folder leaves every file missing. */
    char *a = join(d.dl, "name/a.bin"), *sub = join(d.dl, "name/sub"), *moved = join(d.dl, "moved");
    assert_int_equal(unlink(a), 0);
    assert_int_equal(symlink("/etc/passwd", a), 0);
    assert_int_equal(rename(sub, moved), 0);
    assert_int_equal(symlink(moved, sub), 0);
    struct resume_file files[NMULTI];
    rv_error_t err;
    assert_int_equal(resume_files_from_disk(d.ti, d.dl, files, &err), 0);
    assert_false(files[0].exists);
    assert_true(files[1].exists);
    assert_false(files[2].exists); /* name/sub/dir/b.bin through the symlinked folder */
    assert_false(files[4].exists);
    assert_true(files[5].exists);
    char *gone = join(d.root, "gone");
    assert_int_equal(resume_files_from_disk(d.ti, gone, files, &err), 0);
    for (size_t i = 0; i < NMULTI; i++)
        assert_false(files[i].exists);
    /* A download folder that is a file is an error. */
    assert_int_equal(resume_files_from_disk(d.ti, a, files, &err), RV_EIO);
    free(gone);
    free(a);
    free(sub);
    free(moved);
    disk_free(&d);
}

static void test_files_match(void **state)
{
    (void)state;
    struct disk d;
    char s[8];
    disk_setup(&d);

    /* Untouched: nothing suspect. */
    assert_int_equal(suspects(&d, s), 0);
    assert_string_equal(s, "000000");

    /* b.bin (pieces 0-2, piece 0 shared with a.bin, 2 with the padding) touched: same size,
     * new mtime, even by one nanosecond. */
    set_mtime(d.dl, "name/sub/dir/b.bin", 1600000000, 2001 + 1);
    assert_int_equal(suspects(&d, s), 1);
    assert_string_equal(s, "111000");
    set_mtime(d.dl, "name/sub/dir/b.bin", 1600000000, 2001);
    assert_int_equal(suspects(&d, s), 0);

    /* d.bin (piece 5, shared with c.bin) truncated, its mtime put back: the size tells. */
    char *dbin = join(d.dl, "name/d.bin");
    assert_int_equal(truncate(dbin, 4), 0);
    set_mtime(d.dl, "name/d.bin", 1600000000, 5001);
    assert_int_equal(suspects(&d, s), 1);
    assert_string_equal(s, "000001");
    /* Deleted. */
    assert_int_equal(unlink(dbin), 0);
    assert_int_equal(suspects(&d, s), 1);
    assert_string_equal(s, "000001");
    /* Replaced by a symlink to a file of the same size and time: still a change. */
    put_file(d.root, "elsewhere", 5);
    set_mtime(d.root, "elsewhere", 1600000000, 5001);
    char *elsewhere = join(d.root, "elsewhere");
    assert_int_equal(symlink(elsewhere, dbin), 0);
    assert_int_equal(suspects(&d, s), 1);
    assert_string_equal(s, "000001");
    assert_int_equal(unlink(dbin), 0);
    put_file(d.dl, "name/d.bin", 5);
    set_mtime(d.dl, "name/d.bin", 1600000000, 5001);
    assert_int_equal(suspects(&d, s), 0);

    /* a.bin (piece 0 only) and c.bin (3-5) both changed: their union. */
    set_mtime(d.dl, "name/a.bin", 1700000000, 0);
    set_mtime(d.dl, "name/sub/c.bin", 1700000000, 0);
    assert_int_equal(suspects(&d, s), 2);
    assert_string_equal(s, "100111");
    set_mtime(d.dl, "name/a.bin", 1600000000, 1);
    set_mtime(d.dl, "name/sub/c.bin", 1600000000, 4001);

    /* An empty file gone: counted, but it covers no piece. */
    char *empty = join(d.dl, "name/empty");
    assert_int_equal(unlink(empty), 0);
    assert_int_equal(suspects(&d, s), 1);
    assert_string_equal(s, "000000");
    put_file(d.dl, "name/empty", 0);
    set_mtime(d.dl, "name/empty", 1600000000, 1001);

    /* Padding is never looked at, even if something sits at its path. */
    put_file(d.dl, "name/.pad/9152", 10);
    assert_int_equal(suspects(&d, s), 0);

    /* A file recorded as missing that is there now: its pieces may hold data to find. */
    d.rd.files[2].exists = false;
    d.rd.files[2].size = 0;
    d.rd.files[2].mtime_ns = 0;
    assert_int_equal(suspects(&d, s), 1);
    assert_string_equal(s, "111000");
    /* ... and one missing in both: no change. */
    char *b = join(d.dl, "name/sub/dir/b.bin");
    assert_int_equal(unlink(b), 0);
    assert_int_equal(suspects(&d, s), 0);

    /* The whole download folder gone: every file that was there is suspect. */
    char *moved = join(d.root, "moved");
    assert_int_equal(rename(d.dl, moved), 0);
    assert_int_equal(suspects(&d, s), 5);
    assert_string_equal(s, "100111");
    assert_int_equal(rename(moved, d.dl), 0);

    /* A folder on the path replaced by a symlink to the same files: changed. */
    char *sub = join(d.dl, "name/sub"), *subm = join(d.root, "subm");
    assert_int_equal(rename(sub, subm), 0);
    assert_int_equal(symlink(subm, sub), 0);
    assert_int_equal(suspects(&d, s), 1); /* c.bin; b.bin is recorded missing */
    assert_string_equal(s, "000111");

    free(sub);
    free(subm);
    free(moved);
    free(b);
    free(empty);
    free(elsewhere);
    free(dbin);
    disk_free(&d);
}

static void test_files_match_unreadable_folder(void **state)
{
    (void)state;
    if (geteuid() == 0) {
        /* root reads any folder: nothing to test. */
        skip();
    }
    struct disk d;
    char s[8];
    disk_setup(&d);
    char *sub = join(d.dl, "name/sub");
    assert_int_equal(chmod(sub, 0), 0);
    assert_int_equal(suspects(&d, s), 2); /* b.bin and c.bin cannot be looked at */
    assert_string_equal(s, "111111");
    struct resume_file files[NMULTI];
    rv_error_t err;
    assert_int_equal(resume_files_from_disk(d.ti, d.dl, files, &err), RV_EIO);
    assert_non_null(strstr(err.msg, "sub/dir/b.bin"));
    assert_int_equal(chmod(sub, 0755), 0);
    free(sub);
    disk_free(&d);
}

static void test_files_match_wrong_torrent(void **state)
{
    (void)state;
    struct disk d;
    disk_setup(&d);
    rv_torrent_info_t *other = blocks_torrent();
    struct bitfield s, s3;
    rv_error_t err;
    assert_int_equal(bitfield_init(&s, d.ti->piece_count), 0);
    assert_int_equal(bitfield_init(&s3, 3), 0);
    assert_int_equal(resume_files_match(other, d.dl, &d.rd, &s3, &err), RV_EINVAL);
    assert_int_equal(resume_files_match(d.ti, d.dl, &d.rd, &s3, &err), RV_EINVAL);
    /* Bits set before the call stay set. */
    bitfield_set(&s, 4);
    assert_int_equal(resume_files_match(d.ti, d.dl, &d.rd, &s, &err), 0);
    assert_true(bitfield_has(&s, 4));
    assert_int_equal(s.set, 1);
    bitfield_free(&s);
    bitfield_free(&s3);
    rv_torrent_info_free(other);
    disk_free(&d);
}

static void test_drop_suspect(void **state)
{
    (void)state;
    rv_torrent_info_t *ti = blocks_torrent();
    struct resume_data rd;
    struct bitfield s;
    sample(&rd, ti); /* have {0}, partial 2 and 1 */
    assert_int_equal(bitfield_init(&s, 3), 0);

    resume_drop_suspect(&rd, &s); /* nothing suspect: nothing changes */
    assert_true(bitfield_has(&rd.have, 0));
    assert_int_equal(rd.partial_count, 2);

    bitfield_set(&s, 0);
    bitfield_set(&s, 2);
    resume_drop_suspect(&rd, &s);
    assert_int_equal(rd.have.set, 0);
    assert_int_equal(rd.partial_count, 1);
    assert_int_equal(rd.partials[0].piece, 1);
    bitfield_free(&s);
    resume_free(&rd);
    rv_torrent_info_free(ti);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_round_trip_empty_and_full),
        cmocka_unit_test(test_peers_kept_and_dropped),
        cmocka_unit_test(test_add_partial_rules),
        cmocka_unit_test(test_corrupt_fields),
        cmocka_unit_test(test_corrupt_bytes),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test_setup_teardown(test_state_path, env_setup, env_teardown),
        cmocka_unit_test(test_files_from_disk),
        cmocka_unit_test(test_files_match),
        cmocka_unit_test(test_files_match_unreadable_folder),
        cmocka_unit_test(test_files_match_wrong_torrent),
        cmocka_unit_test(test_drop_suspect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
