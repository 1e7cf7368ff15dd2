/* rv_verify (storage/verify.c): complete data; a corrupt byte, a truncated, a deleted file and
 * an empty file gone, each failing exactly its pieces; padding hashed as zeros; symlinks (to a
 * good copy, even), a symlinked folder and a FIFO in a file's place never followed or read; a
 * missing download folder; every thread count giving the same answer; progress and cancel.
 * Each test works in its own mkdtemp folder and removes it. */
/* cmocka.h needs these first */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bencode/bencode.h"
#include "rivulet/metainfo.h"
#include "rivulet/verify.h"
#include "util/buf.h"
#include "util/sha.h"
#include "util/sha1x.h"

#define PL 16384u

static char *make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof(tmpl), "%s/rv_verify_XXXXXX", base && base[0] ? base : "/tmp");
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

static char *join(const char *a, const char *b)
{
    char *s = malloc(strlen(a) + strlen(b) + 2);
    assert_non_null(s);
    sprintf(s, "%s/%s", a, b);
    return s;
}

static void write_file(const char *path, const uint8_t *p, size_t n)
{
    char *copy = strdup(path);
    for (char *q = copy + 1; *q; q++) {
        if (*q == '/') {
            *q = '\0';
            mkdir(copy, 0755);
            *q = '/';
        }
    }
    free(copy);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n)
        assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void fill_bytes(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

struct tfile {
    const char *rel;
    uint64_t length;
    bool pad;
};

/* Pieces of 16 KiB (the layout test_storage uses):
 *   0 a.bin | b.bin;  1 b.bin;  2 b.bin | padding;  3 c.bin;  4 c.bin;  5 c.bin | d.bin */
static const struct tfile multi[] = {
    {"a.bin", 10000, false},   {"empty", 0, false},         {"sub/dir/b.bin", 30000, false},
    {".pad/9152", 9152, true}, {"sub/c.bin", 40000, false}, {"d.bin", 5, false},
    {"e/f/empty2", 0, false},
};
#define NMULTI (sizeof(multi) / sizeof(multi[0]))

/* 37 pieces, the last short: the first two groups of sixteen go through sha1x's lanes where
 * the CPU has them. x.bin ends inside piece 20, padded to the start of 21. */
static const struct tfile many[] = {
    {"x.bin", 20 * 16384 + 5000, false},
    {".pad/11384", 11384, true},
    {"y.bin", 12 * 16384 + 777, false},
    {"z.bin", 3 * 16384, false},
};
#define NMANY (sizeof(many) / sizeof(many[0]))

struct tt {
    rv_torrent_info_t *ti;
    uint8_t *payload;
    char *root, *dl;
};

static struct bv *path_list(const char *rel)
{
    struct bv *list = bv_list();
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

/* A torrent of files with real hashes, its files written under root/dl/name. */
static void tt_setup_files(struct tt *t, const struct tfile *fl, size_t nf)
{
    uint64_t size = 0;
    for (size_t i = 0; i < nf; i++)
        size += fl[i].length;
    t->payload = calloc(1, size);
    uint64_t off = 0;
    for (size_t i = 0; i < nf; i++) {
        if (!fl[i].pad)
            fill_bytes(t->payload + off, fl[i].length, i + 1);
        off += fl[i].length;
    }
    uint32_t count = (uint32_t)((size + PL - 1) / PL);
    uint8_t *hashes = malloc((size_t)count * 20);
    for (uint32_t p = 0; p < count; p++) {
        uint64_t start = (uint64_t)p * PL;
        sha1(t->payload + start, (size_t)(size - start < PL ? size - start : PL),
             hashes + (size_t)p * 20);
    }
    struct bv *info = bv_dict(), *list = bv_list();
    bv_dict_set(info, "name", bv_cstr("name"));
    bv_dict_set(info, "piece length", bv_int(PL));
    bv_dict_set(info, "pieces", bv_str(hashes, (size_t)count * 20));
    free(hashes);
    for (size_t i = 0; i < nf; i++) {
        struct bv *fe = bv_dict();
        bv_dict_set(fe, "length", bv_int((int64_t)fl[i].length));
        bv_dict_set(fe, "path", path_list(fl[i].rel));
        if (fl[i].pad)
            bv_dict_set(fe, "attr", bv_cstr("p"));
        bv_list_add(list, fe);
    }
    bv_dict_set(info, "files", list);
    struct bv *root = bv_dict();
    bv_dict_set(root, "info", info);
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(bv_encode(root, &b), 0);
    bv_free(root);
    rv_error_t err;
    assert_int_equal(rv_torrent_parse(b.data, b.len, 0, &t->ti, &err), 0);
    buf_free(&b);

    t->root = make_tmpdir();
    t->dl = join(t->root, "dl");
    off = 0;
    for (size_t i = 0; i < nf; i++) {
        if (!fl[i].pad) {
            char rel[128];
            snprintf(rel, sizeof(rel), "name/%s", fl[i].rel);
            char *p = join(t->dl, rel);
            write_file(p, t->payload + off, (size_t)fl[i].length);
            free(p);
        }
        off += fl[i].length;
    }
}

/* The multi torrent: 6 pieces. */
static void tt_setup(struct tt *t)
{
    tt_setup_files(t, multi, NMULTI);
    assert_int_equal(t->ti->piece_count, 6);
}

static void tt_free(struct tt *t)
{
    nftw(t->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(t->root);
    free(t->dl);
    free(t->payload);
    rv_torrent_info_free(t->ti);
}

static char *path_of(const struct tt *t, const char *rel)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "name/%s", rel);
    return join(t->dl, buf);
}

/* Runs rv_verify and returns the pieces as "101111" (1: verified). */
static void run(const struct tt *t, unsigned threads, rv_verify_result_t *r, char *out)
{
    rv_error_t err;
    int rc = rv_verify(t->ti, t->dl, threads, NULL, NULL, r, &err);
    if (rc != 0)
        print_error("rv_verify: %s\n", err.msg);
    assert_int_equal(rc, 0);
    for (uint32_t p = 0; p < r->piece_count; p++)
        out[p] = (r->have[p / 8] >> (7 - p % 8)) & 1 ? '1' : '0';
    out[r->piece_count] = '\0';
}

static void test_complete(void **state)
{
    (void)state;
    struct tt t;
    rv_verify_result_t r;
    char s[8];
    tt_setup(&t);
    for (unsigned threads = 0; threads <= 8; threads++) {
        run(&t, threads, &r, s);
        assert_string_equal(s, "111111");
        assert_true(r.complete);
        assert_false(r.dir_missing);
        assert_int_equal(r.pieces_have, 6);
        assert_int_equal(r.bytes_have, t.ti->total_size);
        assert_int_equal(r.bytes_total, t.ti->total_size);
        assert_int_equal(r.bytes_read, t.ti->total_size); /* padding is never read */
        assert_true(r.threads >= 1 && r.threads <= 6);
        if (threads > 0)
            assert_int_equal(r.threads, threads < 6 ? threads : 6);
        for (size_t i = 0; i < NMULTI; i++) {
            assert_int_equal(r.files[i].state,
                             multi[i].pad ? RV_VERIFY_PADDING : RV_VERIFY_COMPLETE);
            if (!multi[i].pad) {
                assert_int_equal(r.files[i].bytes_have, multi[i].length);
                assert_int_equal(r.files[i].size_on_disk, multi[i].length);
            }
        }
        rv_verify_result_free(&r);
    }
    tt_free(&t);
}

static void test_damage(void **state)
{
    (void)state;
    struct tt t;
    rv_verify_result_t r;
    char s[8];
    tt_setup(&t);

    /* One byte of b.bin in piece 1 (wholly b.bin): only piece 1. */
    char *b = path_of(&t, "sub/dir/b.bin");
    FILE *f = fopen(b, "r+b");
    fseek(f, 20000 - 10000, SEEK_SET);
    fputc(t.payload[20000] ^ 0x01, f);
    fclose(f);
    run(&t, 0, &r, s);
    assert_string_equal(s, "101111");
    assert_false(r.complete);
    assert_int_equal(r.files[2].state, RV_VERIFY_PARTIAL);
    assert_int_equal(r.files[2].bytes_have, 30000 - PL);
    assert_int_equal(r.files[0].state, RV_VERIFY_COMPLETE);
    rv_verify_result_free(&r);

    /* c.bin cut short inside piece 4: pieces 4 and 5 (5 is shared with d.bin). */
    char *c = path_of(&t, "sub/c.bin");
    assert_int_equal(truncate(c, 65536 + 100 - 49152), 0);
    run(&t, 1, &r, s);
    assert_string_equal(s, "101100");
    assert_int_equal(r.files[4].state, RV_VERIFY_PARTIAL);
    assert_int_equal(r.files[4].size_on_disk, 65536 + 100 - 49152);
    assert_int_equal(r.files[5].state, RV_VERIFY_PARTIAL); /* d.bin is there, its piece not */
    assert_int_equal(r.files[5].bytes_have, 0);
    rv_verify_result_free(&r);

    /* a.bin deleted: piece 0, shared with b.bin. */
    char *a = path_of(&t, "a.bin");
    assert_int_equal(unlink(a), 0);
    run(&t, 3, &r, s);
    assert_string_equal(s, "001100");
    assert_int_equal(r.files[0].state, RV_VERIFY_MISSING);
    assert_int_equal(r.files[0].bytes_have, 0);
    rv_verify_result_free(&r);
    free(a);
    free(b);
    free(c);
    tt_free(&t);
}

static void test_empty_file_missing(void **state)
{
    (void)state;
    struct tt t;
    rv_verify_result_t r;
    char s[8];
    tt_setup(&t);
    char *e = path_of(&t, "e/f/empty2");
    assert_int_equal(unlink(e), 0);
    run(&t, 0, &r, s);
    assert_string_equal(s, "111111"); /* every piece, but a file is missing */
    assert_false(r.complete);
    assert_int_equal(r.files[6].state, RV_VERIFY_MISSING);
    rv_verify_result_free(&r);
    free(e);
    tt_free(&t);
}

static void test_no_symlinks(void **state)
{
    (void)state;
    struct tt t;
    rv_verify_result_t r;
    char s[8];
    tt_setup(&t);

    /* a.bin moved out of the folder and linked back: right bytes, never read. */
    char *a = path_of(&t, "a.bin"), *outside = join(t.root, "a-outside");
    assert_int_equal(rename(a, outside), 0);
    assert_int_equal(symlink(outside, a), 0);
    run(&t, 0, &r, s);
    assert_string_equal(s, "011111");
    assert_int_equal(r.files[0].state, RV_VERIFY_NOT_FILE);
    rv_verify_result_free(&r);

    /* The folder sub/ moved out and linked back: b.bin and c.bin are not reached. */
    char *sub = path_of(&t, "sub"), *subout = join(t.root, "sub-outside");
    assert_int_equal(rename(sub, subout), 0);
    assert_int_equal(symlink(subout, sub), 0);
    run(&t, 0, &r, s);
    assert_string_equal(s, "000000");
    assert_int_equal(r.files[2].state, RV_VERIFY_NOT_FILE);
    assert_int_equal(r.files[4].state, RV_VERIFY_NOT_FILE);
    assert_int_equal(r.bytes_read, 0); /* no piece has all its files: nothing is read */
    rv_verify_result_free(&r);

    /* A FIFO in d.bin's place is not opened for reading (it would block) nor read. */
    assert_int_equal(unlink(sub), 0);
    assert_int_equal(rename(subout, sub), 0);
    assert_int_equal(unlink(a), 0);
    assert_int_equal(rename(outside, a), 0);
    char *d = path_of(&t, "d.bin");
    assert_int_equal(unlink(d), 0);
    assert_int_equal(mkfifo(d, 0644), 0);
    run(&t, 0, &r, s);
    assert_string_equal(s, "111110");
    assert_int_equal(r.files[5].state, RV_VERIFY_NOT_FILE);
    rv_verify_result_free(&r);
    free(d);
    free(sub);
    free(subout);
    free(a);
    free(outside);
    tt_free(&t);
}

static void test_folder(void **state)
{
    (void)state;
    struct tt t;
    rv_verify_result_t r;
    rv_error_t err;
    tt_setup(&t);

    /* A missing folder: everything is missing, which is an answer, not an error. */
    char *none = join(t.root, "none");
    assert_int_equal(rv_verify(t.ti, none, 0, NULL, NULL, &r, &err), 0);
    assert_true(r.dir_missing);
    assert_false(r.complete);
    assert_int_equal(r.pieces_have, 0);
    assert_int_equal(r.bytes_read, 0);
    for (size_t i = 0; i < NMULTI; i++)
        assert_int_equal(r.files[i].state, multi[i].pad ? RV_VERIFY_PADDING : RV_VERIFY_MISSING);
    rv_verify_result_free(&r);
    /* A file given as the folder is an error naming it. */
    char *a = path_of(&t, "a.bin");
    assert_int_equal(rv_verify(t.ti, a, 0, NULL, NULL, &r, &err), RV_EIO);
    assert_non_null(strstr(err.msg, "a.bin"));
    assert_int_equal(err.sys_errno, ENOTDIR);
    assert_null(r.files);
    assert_null(r.have);
    /* The folder given through a symlink is the user's choice: followed. */
    char *link = join(t.root, "link");
    assert_int_equal(symlink(t.dl, link), 0);
    assert_int_equal(rv_verify(t.ti, link, 0, NULL, NULL, &r, &err), 0);
    assert_true(r.complete);
    rv_verify_result_free(&r);
    free(link);
    free(a);
    free(none);
    tt_free(&t);
}

static void test_unreadable(void **state)
{
    (void)state;
    if (geteuid() == 0)
        skip(); /* root reads anything */
    struct tt t;
    rv_verify_result_t r;
    rv_error_t err;
    tt_setup(&t);
    char *c = path_of(&t, "sub/c.bin");
    assert_int_equal(chmod(c, 0), 0);
    assert_int_equal(rv_verify(t.ti, t.dl, 0, NULL, NULL, &r, &err), RV_EIO);
    assert_non_null(strstr(err.msg, "sub/c.bin"));
    assert_int_equal(err.sys_errno, EACCES);
    chmod(c, 0644);
    free(c);
    tt_free(&t);
}

struct prog {
    unsigned calls;
    uint64_t last, total;
    bool cancel;
};

static int on_progress(void *ud, uint64_t done, uint64_t total)
{
    struct prog *p = ud;
    p->calls++;
    assert_true(done >= p->last);
    assert_true(done <= total);
    p->last = done;
    p->total = total;
    return p->cancel;
}

/* 512 MiB of zeros in a sparse file, 1 MiB pieces: long enough for progress calls. */
static rv_torrent_info_t *zeros_torrent(const char *dir)
{
    const uint32_t pl = 1u << 20, count = 512;
    uint8_t *zero = calloc(1, pl), *hashes = malloc(count * 20);
    sha1(zero, pl, hashes);
    for (uint32_t i = 1; i < count; i++)
        memcpy(hashes + i * 20, hashes, 20);
    free(zero);
    struct bv *info = bv_dict(), *root = bv_dict();
    bv_dict_set(info, "name", bv_cstr("zeros"));
    bv_dict_set(info, "piece length", bv_int(pl));
    bv_dict_set(info, "pieces", bv_str(hashes, count * 20));
    bv_dict_set(info, "length", bv_int((int64_t)pl * count));
    bv_dict_set(root, "info", info);
    free(hashes);
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(bv_encode(root, &b), 0);
    bv_free(root);
    rv_torrent_info_t *ti;
    rv_error_t err;
    assert_int_equal(rv_torrent_parse(b.data, b.len, 0, &ti, &err), 0);
    buf_free(&b);
    char *p = join(dir, "zeros");
    FILE *f = fopen(p, "wb");
    fclose(f);
    assert_int_equal(truncate(p, (off_t)pl * count), 0);
    free(p);
    return ti;
}

static void test_progress_and_cancel(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    rv_torrent_info_t *ti = zeros_torrent(dir);
    rv_verify_result_t r;
    rv_error_t err;
    struct prog p = {0};

    /* The last call reports everything done. */
    assert_int_equal(rv_verify(ti, dir, 0, on_progress, &p, &r, &err), 0);
    assert_true(r.complete);
    assert_true(p.calls >= 1);
    assert_int_equal(p.last, (uint64_t)512 << 20);
    assert_int_equal(p.total, (uint64_t)512 << 20);
    rv_verify_result_free(&r);

    /* Asked to stop at the first call: RV_ECANCELED, nothing to free. Only if the check
     * takes long enough for a call before the end (over 200 ms). */
    memset(&p, 0, sizeof(p));
    p.cancel = true;
    int rc = rv_verify(ti, dir, 1, on_progress, &p, &r, &err);
    if (rc == RV_ECANCELED) {
        assert_null(r.have);
        assert_true(p.last < p.total);
    } else {
        assert_int_equal(rc, 0);
        rv_verify_result_free(&r);
    }
    rv_torrent_info_free(ti);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

/* The sixteen-lane path and libcrypto's agree piece by piece: on whole data, on a flipped byte
 * in a group of sixteen, and on a file cut short (its pieces fail without a read, which leaves
 * ten of the second group for the lanes). */
static void test_lanes(void **state)
{
    (void)state;
    struct tt t;
    rv_verify_result_t r, plain;
    char s[40], s_plain[40];
    if (!sha1x_usable())
        skip(); /* no AVX-512: test_complete and test_damage cover the only path */
    tt_setup_files(&t, many, NMANY);
    assert_int_equal(t.ti->piece_count, 37);
    for (int round = 0; round < 3; round++) {
        if (round == 1) {
            char *x = path_of(&t, "x.bin");
            FILE *f = fopen(x, "r+b");
            fseek(f, 3 * 16384 + 10, SEEK_SET);
            fputc(t.payload[3 * 16384 + 10] ^ 0x40, f);
            fclose(f);
            free(x);
        } else if (round == 2) {
            char *y = path_of(&t, "y.bin");
            assert_int_equal(truncate(y, 5 * 16384 + 100), 0);
            free(y);
        }
        for (unsigned threads = 1; threads <= 2; threads++) {
            run(&t, threads, &r, s);
            sha1x_enable(false);
            run(&t, threads, &plain, s_plain);
            sha1x_enable(true);
            assert_string_equal(s, s_plain);
            assert_int_equal(r.bytes_read, plain.bytes_read);
            assert_int_equal(r.bytes_have, plain.bytes_have);
            rv_verify_result_free(&r);
            rv_verify_result_free(&plain);
        }
        if (round == 0)
            assert_string_equal(s, "1111111111111111111111111111111111111");
        else if (round == 1)
            assert_string_equal(s, "1110111111111111111111111111111111111");
        else /* y.bin keeps pieces 21-25; 26-33 need its missing bytes */
            assert_string_equal(s, "1110111111111111111111111100000000111");
    }
    tt_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_complete),
        cmocka_unit_test(test_damage),
        cmocka_unit_test(test_empty_file_missing),
        cmocka_unit_test(test_no_symlinks),
        cmocka_unit_test(test_folder),
        cmocka_unit_test(test_unreadable),
        cmocka_unit_test(test_progress_and_cancel),
        cmocka_unit_test(test_lanes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
