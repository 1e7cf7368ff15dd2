/* rv_create: the piece length table (values as libtorrent 2.0's create_torrent picks them),
 * single- and multi-file payloads checked against SHA-1 computed here over the concatenated
 * bytes, thread-count independence, trackers and optional fields, symlinks, errors. */
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
#include "util/sha.h"
#include "util/sha1x.h"

#define PL 16384u

/* ---- payload helpers ---- */

struct pfile {
    const char *rel; /* path inside the folder */
    size_t size;
};

/* The order rv_create must list them in: paths compared component by component. ".hidden"
 * sorts first ('.' < 'a'); folder "b" sorts before file "b-c" because "b" < "b-c", even though
 * the full path "b-c" < "b/..." bytewise. Sizes make pieces cross file boundaries, include an
 * empty file in the middle, and end mid-piece. */
static const struct pfile multi_files[] = {
    {".hidden", 100}, {"a.txt", 5000}, {"b/c/d.bin", 40000},
    {"b/empty", 0},   {"b/z", 16384},  {"b-c", 777},
};
#define MULTI_COUNT (sizeof(multi_files) / sizeof(multi_files[0]))

static void fill_bytes(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

static char *path_join(const char *a, const char *b)
{
    char *s = malloc(strlen(a) + strlen(b) + 2);
    assert_non_null(s);
    sprintf(s, "%s/%s", a, b);
    return s;
}

static void mkdirs_for(const char *root, const char *rel)
{
    char *full = path_join(root, rel);
    for (char *s = full + strlen(root) + 1; (s = strchr(s, '/')) != NULL; s++) {
        *s = '\0';
        if (mkdir(full, 0755) != 0)
            assert_int_equal(errno, EEXIST);
        *s = '/';
    }
    free(full);
}

static void write_file(const char *root, const char *rel, const uint8_t *p, size_t n)
{
    mkdirs_for(root, rel);
    char *full = path_join(root, rel);
    FILE *f = fopen(full, "wb");
    assert_non_null(f);
    if (n)
        assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    free(full);
}

static char *make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof(tmpl), "%s/rv_create_XXXXXX", base && base[0] ? base : "/tmp");
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

static void rm_tree(char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

/* Writes multi_files under root/name; returns the concatenated payload (caller frees). */
static uint8_t *make_multi(const char *root, const char *name, size_t *total)
{
    size_t sum = 0;
    for (size_t i = 0; i < MULTI_COUNT; i++)
        sum += multi_files[i].size;
    uint8_t *all = malloc(sum);
    assert_non_null(all);
    char *folder = path_join(root, name);
    assert_int_equal(mkdir(folder, 0755), 0);
    size_t off = 0;
    for (size_t i = 0; i < MULTI_COUNT; i++) {
        fill_bytes(all + off, multi_files[i].size, (uint32_t)i + 7);
        write_file(folder, multi_files[i].rel, all + off, multi_files[i].size);
        off += multi_files[i].size;
    }
    free(folder);
    *total = sum;
    return all;
}

static void check_hashes(const rv_torrent_info_t *ti, const uint8_t *all, size_t total)
{
    uint32_t pl = ti->piece_length;
    assert_int_equal(ti->piece_count, (total + pl - 1) / pl);
    assert_non_null(ti->piece_hashes);
    for (uint32_t i = 0; i < ti->piece_count; i++) {
        size_t start = (size_t)i * pl;
        size_t n = total - start < pl ? total - start : pl;
        uint8_t h[20];
        sha1(all + start, n, h);
        assert_memory_equal(h, ti->piece_hashes + (size_t)i * 20, 20);
    }
}

static rv_create_opts_t base_opts(const char *path)
{
    rv_create_opts_t o;
    memset(&o, 0, sizeof(o));
    o.path = path;
    o.piece_length = PL;
    o.creation_date = 1700000000;
    return o;
}

static void create_ok(const rv_create_opts_t *o, uint8_t **data, size_t *len)
{
    rv_error_t err = {0};
    int rc = rv_create(o, data, len, &err);
    if (rc != 0)
        fail_msg("rv_create: %d %s", rc, err.msg);
}

static rv_torrent_info_t *parse_ok(const uint8_t *data, size_t len)
{
    rv_torrent_info_t *ti = NULL;
    rv_error_t err = {0};
    int rc = rv_torrent_parse(data, len, RV_PARSE_STRICT, &ti, &err);
    if (rc != 0)
        fail_msg("rv_torrent_parse: %d %s", rc, err.msg);
    return ti;
}

/* ---- tests ---- */

static void test_auto_piece_length(void **state)
{
    (void)state;
    assert_int_equal(rv_create_auto_piece_length(0), 16384);
    assert_int_equal(rv_create_auto_piece_length(1), 16384);
    assert_int_equal(rv_create_auto_piece_length(2684355), 16384);
    assert_int_equal(rv_create_auto_piece_length(2684356), 32768);
    assert_int_equal(rv_create_auto_piece_length(10737418), 32768);
    assert_int_equal(rv_create_auto_piece_length(10737419), 65536);
    assert_int_equal(rv_create_auto_piece_length(1ULL << 30), 1u << 19); /* 1 GiB -> 512 KiB */
    assert_int_equal(rv_create_auto_piece_length(703687441777ULL), 8u << 20);
    assert_int_equal(rv_create_auto_piece_length(703687441778ULL), 16u << 20);
    assert_int_equal(rv_create_auto_piece_length(UINT64_MAX), 16u << 20);
}

static void test_single_file(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    size_t total = 3 * PL + 1000; /* ends mid-piece */
    uint8_t *all = malloc(total);
    assert_non_null(all);
    fill_bytes(all, total, 42);
    write_file(dir, "data.bin", all, total);
    char *path = path_join(dir, "data.bin");

    rv_create_opts_t o = base_opts(path);
    o.threads = 2;
    uint8_t *data;
    size_t len;
    create_ok(&o, &data, &len);
    rv_torrent_info_t *ti = parse_ok(data, len);
    assert_true(ti->has_v1);
    assert_false(ti->has_v2);
    assert_false(ti->multi_file);
    assert_string_equal(ti->name, "data.bin");
    assert_int_equal(ti->file_count, 1);
    assert_int_equal(ti->files[0].length, total);
    assert_int_equal(ti->total_size, total);
    assert_int_equal(ti->piece_length, PL);
    assert_int_equal(ti->piece_count, 4);
    assert_int_equal(ti->creation_date, 1700000000);
    assert_string_equal(ti->created_by, "rivulet/"
                                        "0.1.0");
    assert_int_equal(ti->tier_count, 0);
    check_hashes(ti, all, total);

    rv_torrent_info_free(ti);
    free(data);
    free(path);
    free(all);
    rm_tree(dir);
}

static void test_multi_file(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    size_t total;
    uint8_t *all = make_multi(dir, "payload", &total);
    char *path = path_join(dir, "payload/"); /* a trailing slash does not change the name */

    rv_create_opts_t o = base_opts(path);
    o.threads = 3;
    uint8_t *data;
    size_t len;
    create_ok(&o, &data, &len);
    rv_torrent_info_t *ti = parse_ok(data, len);
    assert_true(ti->multi_file);
    assert_string_equal(ti->name, "payload");
    assert_int_equal(ti->file_count, MULTI_COUNT);
    assert_int_equal(ti->total_size, total);
    uint64_t off = 0;
    for (size_t i = 0; i < MULTI_COUNT; i++) {
        char want[256];
        snprintf(want, sizeof(want), "payload/%s", multi_files[i].rel);
        assert_string_equal(ti->files[i].path, want);
        assert_int_equal(ti->files[i].length, multi_files[i].size);
        assert_int_equal(ti->files[i].offset, off);
        off += multi_files[i].size;
    }
    check_hashes(ti, all, total);

    /* paths are lists of components in the encoding itself */
    assert_non_null(memmem(data, len, "4:pathl1:b1:c5:d.bine", 21));

    rv_torrent_info_free(ti);
    free(data);
    free(path);
    free(all);
    rm_tree(dir);
}

struct progress_log {
    unsigned calls;
    uint64_t last_hashed, last_total;
};

static void on_progress(void *ud, uint64_t hashed, uint64_t total)
{
    struct progress_log *p = ud;
    p->calls++;
    assert_true(hashed >= p->last_hashed);
    assert_true(hashed <= total);
    p->last_hashed = hashed;
    p->last_total = total;
}

static void test_threads_identical(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    size_t total;
    uint8_t *all = make_multi(dir, "payload", &total);
    char *path = path_join(dir, "payload");

    rv_create_opts_t o = base_opts(path);
    uint8_t *d1, *d4, *d0;
    size_t l1, l4, l0;
    struct progress_log pr = {0};
    o.threads = 1;
    o.progress = on_progress;
    o.progress_ud = &pr;
    create_ok(&o, &d1, &l1);
    assert_true(pr.calls >= 1);
    assert_int_equal(pr.last_hashed, total);
    assert_int_equal(pr.last_total, total);
    o.progress = NULL;
    o.threads = 4;
    create_ok(&o, &d4, &l4);
    o.threads = 0; /* one per core */
    create_ok(&o, &d0, &l0);
    assert_int_equal(l1, l4);
    assert_memory_equal(d1, d4, l1);
    assert_int_equal(l1, l0);
    assert_memory_equal(d1, d0, l1);

    /* more threads than pieces, and the automatic piece length */
    o.threads = 64;
    o.piece_length = 0;
    uint8_t *da;
    size_t la;
    create_ok(&o, &da, &la);
    rv_torrent_info_t *ti = parse_ok(da, la);
    assert_int_equal(ti->piece_length, 16384);
    check_hashes(ti, all, total);
    rv_torrent_info_free(ti);

    free(da);
    free(d0);
    free(d1);
    free(d4);
    free(path);
    free(all);
    rm_tree(dir);
}

static void expect_error(const rv_create_opts_t *o, int code)
{
    rv_error_t err = {0};
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(rv_create(o, &data, &len, &err), code);
    assert_int_equal(err.code, code);
    assert_true(err.msg[0] != '\0');
    assert_null(data);
}

static void test_errors(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    uint8_t bytes[100];
    fill_bytes(bytes, sizeof(bytes), 1);
    write_file(dir, "f", bytes, sizeof(bytes));
    char *file = path_join(dir, "f");

    rv_create_opts_t o = base_opts(file);
    const uint32_t bad[] = {1000, 8192, 16383, 16385, 3 * 16384, 1u << 29, 0x80000000u};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o.piece_length = bad[i];
        expect_error(&o, RV_EINVAL);
    }
    o.piece_length = 1u << 28; /* the largest allowed */
    uint8_t *data;
    size_t len;
    create_ok(&o, &data, &len);
    free(data);

    /* an empty folder, and one holding only an empty folder */
    char *empty = path_join(dir, "empty");
    assert_int_equal(mkdir(empty, 0755), 0);
    o = base_opts(empty);
    expect_error(&o, RV_EINVAL);
    char *nested = path_join(empty, "inner");
    assert_int_equal(mkdir(nested, 0755), 0);
    expect_error(&o, RV_EINVAL);

    /* only zero-length files: nothing to hash */
    write_file(dir, "empty/inner/zero", bytes, 0);
    expect_error(&o, RV_EINVAL);

    /* a path that does not exist */
    char *missing = path_join(dir, "missing");
    o = base_opts(missing);
    rv_error_t err = {0};
    assert_int_equal(rv_create(&o, &data, &len, &err), RV_EIO);
    assert_int_equal(err.sys_errno, ENOENT);
    assert_non_null(strstr(err.msg, "missing"));

    o = base_opts(NULL);
    expect_error(&o, RV_EINVAL);
    o = base_opts(file);
    o.creation_date = -2;
    expect_error(&o, RV_EINVAL);

    free(missing);
    free(nested);
    free(empty);
    free(file);
    rm_tree(dir);
}

static const struct bnode *top_get(const struct bdoc *doc, const char *key)
{
    return bdict_get(bencode_root(doc), key);
}

static void test_trackers_and_fields(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    uint8_t bytes[20000];
    fill_bytes(bytes, sizeof(bytes), 3);
    write_file(dir, "f.bin", bytes, sizeof(bytes));
    char *file = path_join(dir, "f.bin");

    /* tiers given out of order: grouped, ascending, caller's order kept inside a tier */
    const char *const urls[] = {"http://a/1", "http://b/0", "http://c/1", "http://d/0",
                                "udp://e/5"};
    const unsigned tiers[] = {1, 0, 1, 0, 5};
    const char *const seeds[] = {"http://s1/", "http://s2/"};
    rv_create_opts_t o = base_opts(file);
    o.trackers = urls;
    o.tracker_tiers = tiers;
    o.tracker_count = 5;
    o.web_seeds = seeds;
    o.web_seed_count = 2;
    o.is_private = true;
    o.comment = "a comment";
    o.source = "SRC";
    o.created_by = "tester 1.0";
    uint8_t *data;
    size_t len;
    create_ok(&o, &data, &len);
    rv_torrent_info_t *ti = parse_ok(data, len);
    assert_int_equal(ti->tier_count, 3);
    assert_int_equal(ti->tiers[0].count, 2);
    assert_string_equal(ti->tiers[0].urls[0], "http://b/0");
    assert_string_equal(ti->tiers[0].urls[1], "http://d/0");
    assert_int_equal(ti->tiers[1].count, 2);
    assert_string_equal(ti->tiers[1].urls[0], "http://a/1");
    assert_string_equal(ti->tiers[1].urls[1], "http://c/1");
    assert_int_equal(ti->tiers[2].count, 1);
    assert_string_equal(ti->tiers[2].urls[0], "udp://e/5");
    assert_int_equal(ti->web_seed_count, 2);
    assert_string_equal(ti->web_seeds[1], "http://s2/");
    assert_true(ti->is_private);
    assert_string_equal(ti->comment, "a comment");
    assert_string_equal(ti->source, "SRC");
    assert_string_equal(ti->created_by, "tester 1.0");

    struct bdoc doc = {0};
    rv_error_t err = {0};
    assert_int_equal(bencode_decode(&doc, data, len, BENCODE_STRICT, NULL, &err), 0);
    assert_true(bstr_eq(top_get(&doc, "announce"), "http://b/0"));
    assert_non_null(bdict_get_type(top_get(&doc, "info"), "private", BT_INT));
    assert_non_null(bdict_get_type(top_get(&doc, "info"), "source", BT_STR));
    assert_non_null(bdict_get_type(bencode_root(&doc), "url-list", BT_LIST));
    bencode_free(&doc);
    rv_torrent_info_free(ti);
    free(data);

    /* one tracker: announce only; one web seed: url-list as a string; no date, no extras */
    o = base_opts(file);
    o.trackers = urls;
    o.tracker_count = 1;
    o.web_seeds = seeds;
    o.web_seed_count = 1;
    o.creation_date = -1;
    create_ok(&o, &data, &len);
    memset(&doc, 0, sizeof(doc));
    assert_int_equal(bencode_decode(&doc, data, len, BENCODE_STRICT, NULL, &err), 0);
    assert_true(bstr_eq(top_get(&doc, "announce"), "http://a/1"));
    assert_null(top_get(&doc, "announce-list"));
    assert_null(top_get(&doc, "creation date"));
    assert_null(top_get(&doc, "comment"));
    assert_true(bstr_eq(top_get(&doc, "url-list"), "http://s1/"));
    assert_null(bdict_get(top_get(&doc, "info"), "private"));
    assert_null(bdict_get(top_get(&doc, "info"), "source"));
    bencode_free(&doc);
    free(data);

    /* no tiers given: each tracker is its own tier, in order */
    o = base_opts(file);
    o.trackers = urls;
    o.tracker_count = 2;
    create_ok(&o, &data, &len);
    ti = parse_ok(data, len);
    assert_int_equal(ti->tier_count, 2);
    assert_string_equal(ti->tiers[0].urls[0], "http://a/1");
    assert_string_equal(ti->tiers[1].urls[0], "http://b/0");
    rv_torrent_info_free(ti);
    free(data);

    /* creation date 0 means now */
    o = base_opts(file);
    o.creation_date = 0;
    create_ok(&o, &data, &len);
    ti = parse_ok(data, len);
    assert_true(ti->creation_date > 1700000000);
    rv_torrent_info_free(ti);
    free(data);

    free(file);
    rm_tree(dir);
}

/* Where the CPU has AVX-512, groups of sixteen full-length pieces are hashed side by side
 * (sha1x): every piece's hash still matches libcrypto's, with pieces that cross files, pieces
 * larger than the lanes' read step (128 KiB), and a short last piece; and the torrent is the
 * same byte for byte as with the lanes switched off. */
static void test_lanes(void **state)
{
    (void)state;
    static const struct pfile files[] = {
        {"p/a", 9 * 16384 + 5}, {"p/b", 20 * 16384}, {"p/c", 7 * 16384 + 999}};
    if (!sha1x_usable())
        skip(); /* no AVX-512: the other tests cover the only path */
    char *dir = make_tmpdir();
    size_t total = 0;
    for (size_t i = 0; i < 3; i++)
        total += files[i].size;
    uint8_t *all = malloc(total);
    assert_non_null(all);
    size_t off = 0;
    for (size_t i = 0; i < 3; i++) {
        fill_bytes(all + off, files[i].size, (uint32_t)i + 1);
        write_file(dir, files[i].rel, all + off, files[i].size);
        off += files[i].size;
    }
    char *path = path_join(dir, "p");
    const uint32_t lengths[] = {16384, 32768}; /* 37 and 19 pieces: 2 groups and 1 */
    for (size_t i = 0; i < 2; i++) {
        rv_create_opts_t o = base_opts(path);
        uint8_t *d, *dp;
        size_t l, lp;
        o.piece_length = lengths[i];
        o.threads = 2;
        create_ok(&o, &d, &l);
        sha1x_enable(false);
        create_ok(&o, &dp, &lp);
        sha1x_enable(true);
        assert_int_equal(l, lp);
        assert_memory_equal(d, dp, l);
        rv_torrent_info_t *ti = parse_ok(d, l);
        check_hashes(ti, all, total);
        rv_torrent_info_free(ti);
        free(d);
        free(dp);
    }
    /* Pieces of 512 KiB: each lane is read in four steps. 10 pieces, the last short. */
    free(all);
    rm_tree(dir);
    dir = make_tmpdir();
    total = 9 * 524288 + 4321;
    all = malloc(total);
    assert_non_null(all);
    fill_bytes(all, total, 99);
    write_file(dir, "p/big", all, total);
    rv_create_opts_t o = base_opts(path_join(dir, "p"));
    uint8_t *d;
    size_t l;
    o.piece_length = 524288;
    o.threads = 1;
    create_ok(&o, &d, &l);
    rv_torrent_info_t *ti = parse_ok(d, l);
    check_hashes(ti, all, total);
    rv_torrent_info_free(ti);
    free(d);
    free((char *)o.path);
    free(path);
    free(all);
    rm_tree(dir);
}

static void test_symlinks_and_file_output(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    size_t total;
    uint8_t *all = make_multi(dir, "payload", &total);
    char *outside = path_join(dir, "outside.bin");
    uint8_t extra[3000];
    fill_bytes(extra, sizeof(extra), 99);
    write_file(dir, "outside.bin", extra, sizeof(extra));

    /* a symlink to a file is followed (it sorts last: 'z' > 'b'); one to a folder (here,
     * a loop back to the payload itself) and a dangling one are skipped */
    char *payload = path_join(dir, "payload");
    char *l1 = path_join(payload, "zlink");
    char *l2 = path_join(payload, "loop");
    char *l3 = path_join(payload, "dangling");
    assert_int_equal(symlink(outside, l1), 0);
    assert_int_equal(symlink(payload, l2), 0);
    assert_int_equal(symlink("/nonexistent/rivulet", l3), 0);

    char *out = path_join(dir, "out.torrent");
    rv_create_opts_t o = base_opts(payload);
    rv_error_t err = {0};
    assert_int_equal(rv_create_file(&o, out, &err), 0);
    rv_torrent_info_t *ti = NULL;
    assert_int_equal(rv_torrent_load(out, 0, &ti, &err), 0);
    assert_int_equal(ti->file_count, MULTI_COUNT + 1);
    assert_string_equal(ti->files[MULTI_COUNT].path, "payload/zlink");
    assert_int_equal(ti->files[MULTI_COUNT].length, sizeof(extra));

    uint8_t *both = malloc(total + sizeof(extra));
    assert_non_null(both);
    memcpy(both, all, total);
    memcpy(both + total, extra, sizeof(extra));
    check_hashes(ti, both, total + sizeof(extra));
    rv_torrent_info_free(ti);

    free(both);
    free(out);
    free(l3);
    free(l2);
    free(l1);
    free(payload);
    free(outside);
    free(all);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auto_piece_length),
        cmocka_unit_test(test_single_file),
        cmocka_unit_test(test_multi_file),
        cmocka_unit_test(test_threads_identical),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_trackers_and_fields),
        cmocka_unit_test(test_symlinks_and_file_output),
        cmocka_unit_test(test_lanes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
