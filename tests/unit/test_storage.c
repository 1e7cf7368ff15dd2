/* Storage (storage/storage.c) through a real libuv loop: pieces verified and written in random
 * order land byte for byte in single- and multi-file torrents (pieces crossing files, empty
 * files, BEP 47 padding never created); bad pieces write nothing; checks of complete, partial
 * and missing data; block reads across file boundaries; symlinks, "..", a file where a folder
 * should be and write errors refused with the path named; closing with work in flight; a
 * handle cache smaller than the file count; direct (O_DIRECT) writes from aligned and unaligned
 * memory, with the partial blocks at span ends through the cache; the space of a file reserved
 * at its first write. Ends with a throughput
 * measurement (printed only).
 * Every test works in its own mkdtemp folder and removes it. */
/* cmocka.h needs these first */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "bencode/bencode.h"
#include "metainfo/layout.h"
#include "rivulet/metainfo.h"
#include "storage/storage.h"
#include "util/buf.h"
#include "util/sha.h"
#include "util/sha1x.h"

#define PL 16384u
#define MAXP 1024

/* ---- files and folders ---- */

static char *make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof(tmpl), "%s/rv_storage_XXXXXX", base && base[0] ? base : "/tmp");
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

static bool exists(const char *root, const char *rel)
{
    char *p = join(root, rel);
    struct stat st;
    bool ok = lstat(p, &st) == 0;
    free(p);
    return ok;
}

static long long file_size(const char *root, const char *rel)
{
    char *p = join(root, rel);
    struct stat st;
    long long n = stat(p, &st) == 0 ? (long long)st.st_size : -1;
    free(p);
    return n;
}

/* The whole file, or NULL if it cannot be read. */
static uint8_t *slurp(const char *root, const char *rel, size_t *len)
{
    char *p = join(root, rel);
    FILE *f = fopen(p, "rb");
    free(p);
    if (f == NULL)
        return NULL;
    struct buf b;
    buf_init(&b, (size_t)1 << 30);
    uint8_t chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        assert_int_equal(buf_append(&b, chunk, n), 0);
    fclose(f);
    uint8_t *out = buf_steal(&b, len);
    if (out == NULL)
        out = malloc(1);
    return out;
}

static void put_file(const char *root, const char *rel, const void *p, size_t n)
{
    char *path = join(root, rel);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n)
        assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    free(path);
}

static void make_dir(const char *root, const char *rel)
{
    char *p = join(root, rel);
    assert_int_equal(mkdir(p, 0755), 0);
    free(p);
}

static size_t entries_in(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void fill_bytes(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(p + i, &x, 8);
    }
    for (; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

/* ---- torrents built here, payload and all ---- */

struct tfile {
    const char *rel; /* below the torrent's name */
    uint64_t length;
    bool pad;
};

struct tt {
    rv_torrent_info_t *ti;
    struct layout l;
    uint8_t *payload; /* piece space: files' bytes, zeros for padding */
    uint64_t size;
    char *root; /* the mkdtemp folder */
    char *dl;   /* root/dl, the download folder */
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

/* files == NULL: a single-file torrent of single_len bytes called name. */
static void tt_build(struct tt *t, const char *name, uint32_t piece_length,
                     const struct tfile *files, size_t nfiles, uint64_t single_len, uint64_t seed)
{
    memset(t, 0, sizeof(*t));
    uint64_t size = 0;
    if (files == NULL)
        size = single_len;
    for (size_t i = 0; i < nfiles; i++)
        size += files[i].length;
    t->size = size;
    t->payload = calloc(1, size ? size : 1);
    assert_non_null(t->payload);
    if (files == NULL) {
        fill_bytes(t->payload, size, seed);
    } else {
        uint64_t off = 0;
        for (size_t i = 0; i < nfiles; i++) {
            if (!files[i].pad) /* BEP 47: padding is zeros */
                fill_bytes(t->payload + off, files[i].length, seed + i);
            off += files[i].length;
        }
    }
    uint32_t count = (uint32_t)((size + piece_length - 1) / piece_length);
    uint8_t *hashes = malloc((size_t)count * 20);
    assert_non_null(hashes);
    for (uint32_t p = 0; p < count; p++) {
        uint64_t start = (uint64_t)p * piece_length;
        uint64_t n = size - start < piece_length ? size - start : piece_length;
        sha1(t->payload + start, (size_t)n, hashes + (size_t)p * 20);
    }

    struct bv *info = bv_dict();
    assert_non_null(info);
    assert_int_equal(bv_dict_set(info, "name", bv_cstr(name)), 0);
    assert_int_equal(bv_dict_set(info, "piece length", bv_int(piece_length)), 0);
    assert_int_equal(bv_dict_set(info, "pieces", bv_str(hashes, (size_t)count * 20)), 0);
    free(hashes);
    if (files == NULL) {
        assert_int_equal(bv_dict_set(info, "length", bv_int((int64_t)size)), 0);
    } else {
        struct bv *list = bv_list();
        assert_non_null(list);
        for (size_t i = 0; i < nfiles; i++) {
            struct bv *fe = bv_dict();
            assert_non_null(fe);
            assert_int_equal(bv_dict_set(fe, "length", bv_int((int64_t)files[i].length)), 0);
            assert_int_equal(bv_dict_set(fe, "path", path_list(files[i].rel)), 0);
            if (files[i].pad)
                assert_int_equal(bv_dict_set(fe, "attr", bv_cstr("p")), 0);
            assert_int_equal(bv_list_add(list, fe), 0);
        }
        assert_int_equal(bv_dict_set(info, "files", list), 0);
    }
    struct bv *root = bv_dict();
    assert_non_null(root);
    assert_int_equal(bv_dict_set(root, "info", info), 0);
    struct buf b;
    buf_init(&b, (size_t)1 << 26);
    assert_int_equal(bv_encode(root, &b), 0);
    bv_free(root);

    rv_error_t err;
    int rc = rv_torrent_parse(b.data, b.len, 0, &t->ti, &err);
    if (rc != 0)
        print_error("parse: %s\n", err.msg);
    assert_int_equal(rc, 0);
    buf_free(&b);
    assert_int_equal(t->ti->piece_count, count);
    assert_int_equal(layout_from_torrent(&t->l, t->ti), 0);

    t->root = make_tmpdir();
    t->dl = join(t->root, "dl");
}

static void tt_free(struct tt *t)
{
    char *p = join(t->root, "dl");
    chmod(p, 0755); /* in case a test left it read-only */
    free(p);
    rm_tree(t->root);
    free(t->root);
    free(t->dl);
    free(t->payload);
    rv_torrent_info_free(t->ti);
}

/* The torrent most tests use. Pieces of 16 KiB:
 *   0 [0, 16384)      a.bin | b.bin           (the empty file between them yields nothing)
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

static void multi_build(struct tt *t)
{
    tt_build(t, "name", PL, multi, NMULTI, 0, 11);
    assert_int_equal(t->ti->piece_count, 6);
    assert_int_equal(t->ti->file_count, NMULTI);
    assert_true(t->ti->files[3].attr & RV_FILE_PAD);
}

/* ---- the loop ---- */

struct ctx {
    unsigned calls[MAXP];
    int rc[MAXP];
    int sys_errno[MAXP];
    char msg[MAXP][256];
    unsigned total;
    uint32_t seq[32]; /* the first callbacks' pieces and results, in order */
    int seq_rc[32];
    /* for tests that act from inside a callback */
    struct storage *s;
    bool close_in_cb;
    unsigned closed;
};

static void on_closed(void *ud)
{
    struct ctx *c = ud;
    c->closed++;
}

static void on_done(void *ud, uint32_t piece, int rc, const rv_error_t *err)
{
    struct ctx *c = ud;
    assert_true(piece < MAXP);
    assert_non_null(err);
    c->calls[piece]++;
    c->rc[piece] = rc;
    c->sys_errno[piece] = err->sys_errno;
    snprintf(c->msg[piece], sizeof(c->msg[piece]), "%s", err->msg);
    if (c->total < 32) {
        c->seq[c->total] = piece;
        c->seq_rc[c->total] = rc;
    }
    c->total++;
    if (c->close_in_cb && c->s != NULL) {
        struct storage *s = c->s;
        c->s = NULL;
        storage_close(s, on_closed, c);
    }
}

static struct ctx *ctx_new(void)
{
    struct ctx *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    return c;
}

static struct storage *open_storage(uv_loop_t *loop, struct tt *t, unsigned max_open)
{
    struct storage_opts o = {.dir = t->dl, .max_open = max_open};
    struct storage *s = NULL;
    rv_error_t err;
    int rc = storage_new(loop, t->ti, &t->l, &o, &s, &err);
    if (rc != 0)
        print_error("storage_new: %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_non_null(s);
    return s;
}

static void close_storage(uv_loop_t *loop, struct storage *s)
{
    struct ctx *c = ctx_new();
    storage_close(s, on_closed, c);
    assert_int_equal(c->closed, 0); /* always from the loop, never inside storage_close */
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c->closed, 1);
    free(c);
}

static void shuffle(uint32_t *a, uint32_t n, unsigned seed)
{
    srand(seed);
    for (uint32_t i = 0; i < n; i++)
        a[i] = i;
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = (uint32_t)rand() % i;
        uint32_t x = a[i - 1];
        a[i - 1] = a[j];
        a[j] = x;
    }
}

static const uint8_t *piece_data(const struct tt *t, uint32_t p)
{
    return t->payload + (size_t)p * t->ti->piece_length;
}

/* Writes every piece, all queued at once in a random order, and expects success. */
static void write_all(uv_loop_t *loop, struct storage *s, struct tt *t, unsigned seed)
{
    uint32_t n = t->ti->piece_count;
    assert_true(n <= MAXP);
    uint32_t *order = malloc(n * sizeof(*order));
    assert_non_null(order);
    shuffle(order, n, seed);
    struct ctx *c = ctx_new();
    for (uint32_t i = 0; i < n; i++) {
        uint32_t p = order[i];
        assert_int_equal(storage_verify_and_write(s, p, piece_data(t, p),
                                                  layout_piece_size(&t->l, p), on_done, c),
                         0);
    }
    assert_int_equal(storage_pending(s), n);
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(storage_pending(s), 0);
    for (uint32_t p = 0; p < n; p++) {
        if (c->rc[p] != 0)
            print_error("piece %u: %s\n", p, c->msg[p]);
        assert_int_equal(c->calls[p], 1);
        assert_int_equal(c->rc[p], 0);
    }
    free(c);
    free(order);
}

/* One operation on one piece, run to its callback; returns rc and, if msg, the message. */
static int write_one(uv_loop_t *loop, struct storage *s, const struct tt *t, uint32_t p,
                     const uint8_t *data, struct ctx *c)
{
    memset(c->calls, 0, sizeof(c->calls));
    int rc = storage_verify_and_write(s, p, data ? data : piece_data(t, p),
                                      layout_piece_size(&t->l, p), on_done, c);
    assert_int_equal(rc, 0);
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c->calls[p], 1);
    return c->rc[p];
}

static int check_one(uv_loop_t *loop, struct storage *s, uint32_t p, struct ctx *c)
{
    memset(c->calls, 0, sizeof(c->calls));
    assert_int_equal(storage_check(s, p, on_done, c), 0);
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c->calls[p], 1);
    return c->rc[p];
}

static int read_one(uv_loop_t *loop, struct storage *s, uint32_t p, uint32_t begin, uint32_t len,
                    uint8_t *out, struct ctx *c)
{
    memset(c->calls, 0, sizeof(c->calls));
    assert_int_equal(storage_read(s, p, begin, len, out, on_done, c), 0);
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c->calls[p], 1);
    return c->rc[p];
}

static void assert_contains(const char *msg, const char *want)
{
    if (strstr(msg, want) == NULL)
        print_error("message \"%s\" does not mention \"%s\"\n", msg, want);
    assert_non_null(strstr(msg, want));
}

/* Each non-padding file under dl equals its part of the payload. */
static void assert_files_match(const struct tt *t)
{
    for (size_t i = 0; i < t->ti->file_count; i++) {
        const rv_file_t *f = &t->ti->files[i];
        if (f->attr & RV_FILE_PAD) {
            assert_false(exists(t->dl, f->path));
            continue;
        }
        size_t len = 0;
        uint8_t *got = slurp(t->dl, f->path, &len);
        if (got == NULL)
            print_error("%s is missing\n", f->path);
        assert_non_null(got);
        assert_int_equal(len, f->length);
        assert_memory_equal(got, t->payload + f->offset, len);
        free(got);
    }
}

static void check_all(uv_loop_t *loop, struct storage *s, const struct tt *t, int want)
{
    struct ctx *c = ctx_new();
    for (uint32_t p = 0; p < t->ti->piece_count; p++)
        assert_int_equal(storage_check(s, p, on_done, c), 0);
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    for (uint32_t p = 0; p < t->ti->piece_count; p++) {
        assert_int_equal(c->calls[p], 1);
        if (c->rc[p] != want)
            print_error("check piece %u: rc %d (%s)\n", p, c->rc[p], c->msg[p]);
        assert_int_equal(c->rc[p], want);
    }
    free(c);
}

static void check_all_some(uv_loop_t *loop, struct storage *s, const uint32_t *pieces, size_t n)
{
    struct ctx *c = ctx_new();
    for (size_t i = 0; i < n; i++)
        assert_int_equal(check_one(loop, s, pieces[i], c), 0);
    free(c);
}

/* ---- tests ---- */

static void test_single_file(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tt t;
    tt_build(&t, "single.bin", PL, NULL, 0, 3 * PL + 123, 5);
    /* the download folder is created with its missing parents */
    free(t.dl);
    t.dl = join(t.root, "x/y/dl");
    struct storage *s = open_storage(&loop, &t, 0);
    assert_false(exists(t.dl, "single.bin")); /* made by the first write, not before */

    write_all(&loop, s, &t, 1);
    assert_files_match(&t);
    check_all(&loop, s, &t, 0);
    close_storage(&loop, s);

    /* a new storage on the same folder finds the data */
    s = open_storage(&loop, &t, 0);
    check_all(&loop, s, &t, 0);
    close_storage(&loop, s);
    assert_int_equal(uv_loop_close(&loop), 0);
    tt_free(&t);
}

/* Whether the file system under dir reserves space with fallocate(2). */
static bool can_fallocate(const char *dir)
{
    char *p = join(dir, "probe");
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
    bool ok = fd >= 0 && fallocate(fd, 0, 0, 4096) == 0;
    if (fd >= 0)
        close(fd);
    unlink(p);
    free(p);
    return ok;
}

/* The first write to a file reserves its whole length where the file system can (ext4 takes
 * direct writes into reserved blocks side by side; into a sparse file it serialised them),
 * and gives it its final size either way; the data already there stays. */
static void test_space_reserved(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tt t;
    tt_build(&t, "single.bin", PL, NULL, 0, 64 * PL + 123, 5);
    struct storage *s = open_storage(&loop, &t, 0);
    struct ctx *c = ctx_new();
    assert_int_equal(write_one(&loop, s, &t, 3, NULL, c), 0);
    char *path = join(t.dl, "single.bin");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 64 * PL + 123);
    bool reserved = can_fallocate(t.dl);
    if (reserved)
        assert_true((uint64_t)st.st_blocks * 512 >= 64 * PL + 123);
    else
        print_message("(the file system here cannot reserve space: only the size checked)\n");
    uint8_t got[PL];
    assert_int_equal(read_one(&loop, s, 3, 0, PL, got, c), 0);
    assert_memory_equal(got, t.payload + 3 * PL, PL);
    close_storage(&loop, s);

    /* a shorter file already there (another client's, cut short) grows and keeps its bytes */
    int fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, t.payload, PL), (ssize_t)PL);
    close(fd);
    s = open_storage(&loop, &t, 0);
    assert_int_equal(write_one(&loop, s, &t, 5, NULL, c), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 64 * PL + 123);
    if (reserved)
        assert_true((uint64_t)st.st_blocks * 512 >= 64 * PL + 123);
    assert_int_equal(check_one(&loop, s, 0, c), 0);
    assert_int_equal(check_one(&loop, s, 5, c), 0);
    close_storage(&loop, s);
    free(path);
    free(c);
    assert_int_equal(uv_loop_close(&loop), 0);
    tt_free(&t);
}

static void test_multi_file(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tt t;
    multi_build(&t);
    struct storage *s = open_storage(&loop, &t, 0);
    /* zero-length files exist from the start; nothing else does */
    assert_int_equal(file_size(t.dl, "name/empty"), 0);
    assert_int_equal(file_size(t.dl, "name/e/f/empty2"), 0);
    assert_false(exists(t.dl, "name/a.bin"));
    assert_false(exists(t.dl, "name/sub"));

    write_all(&loop, s, &t, 2);
    assert_files_match(&t);
    assert_false(exists(t.dl, "name/.pad"));
    assert_int_equal(file_size(t.dl, "name/empty"), 0);
    assert_int_equal(file_size(t.dl, "name/e/f/empty2"), 0);
    check_all(&loop, s, &t, 0);

    /* writing a piece again (a re-download) changes nothing */
    struct ctx *c = ctx_new();
    assert_int_equal(write_one(&loop, s, &t, 2, NULL, c), 0);
    assert_files_match(&t);
    free(c);
    close_storage(&loop, s);
    assert_int_equal(uv_loop_close(&loop), 0);
    tt_free(&t);
}

static void test_hash_mismatch(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tt t;
    multi_build(&t);
    struct storage *s = open_storage(&loop, &t, 0);
    struct ctx *c = ctx_new();

    uint8_t *bad = malloc(PL);
    assert_non_null(bad);
    for (uint32_t p = 0; p < 3; p++) {
        memcpy(bad, piece_data(&t, p), PL);
        bad[(p * 7919) % PL] ^= 0x01;
        assert_int_equal(write_one(&loop, s, &t, p, bad, c), RV_EHASH);
        char want[32];
        snprintf(want, sizeof(want), "piece %u", p);
        assert_contains(c->msg[p], want);
    }
    /* nothing was created for the bad pieces */
    assert_false(exists(t.dl, "name/a.bin"));
    assert_false(exists(t.dl, "name/sub"));
    assert_false(exists(t.dl, "name/.pad"));

    /* length other than the piece's: refused at once */
    assert_int_equal(storage_verify_and_write(s, 0, bad, PL - 1, on_done, c), RV_EINVAL);
    assert_int_equal(storage_verify_and_write(s, 6, bad, PL, on_done, c), RV_EINVAL);
    assert_int_equal(storage_verify_and_write(s, 5, bad, PL, on_done, c), RV_EINVAL);
    assert_int_equal(storage_pending(s), 0);

    /* the good piece then goes in */
    assert_int_equal(write_one(&loop, s, &t, 1, NULL, c), 0);
    assert_int_equal(file_size(t.dl, "name/sub/dir/b.bin"), 30000); /* final size at once */
    free(bad);
    free(c);
    close_storage(&loop, s);
    assert_int_equal(uv_loop_close(&loop), 0);
    tt_free(&t);
}

static void test_check_states(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tt t;
    multi_build(&t);
    struct storage *s = open_storage(&loop, &t, 0);
    struct ctx *c = ctx_new();

    /* nothing downloaded: every piece is a mismatch, not an error, and nothing is created */
    check_all(&loop, s, &t, RV_EHASH);
    assert_int_equal(check_one(&loop, s, 0, c), RV_EHASH);
    assert_contains(c->msg[0], "name/a.bin is missing");
    assert_false(exists(t.dl, "name/a.bin"));
    assert_false(exists(t.dl, "name/sub"));

    /* partial: pieces 0 and 3 only. b.bin now exists at full size, but pieces 1 and 2 read
     * zeros there */
    assert_int_equal(write_one(&loop, s, &t, 0, NULL, c), 0);
    assert_int_equal(write_one(&loop, s, &t, 3, NULL, c), 0);
    int want[6] = {0, RV_EHASH, RV_EHASH, 0, RV_EHASH, RV_EHASH};
    for (uint32_t p = 0; p < 6; p++) {
        int rc = check_one(&loop, s, p, c);
        if (rc != want[p])
            print_error("piece %u: %d (%s)\n", p, rc, c->msg[p]);
        assert_int_equal(rc, want[p]);
    }
    assert_contains(c->msg[1], "does not match");
    assert_contains(c->msg[5], "name/d.bin is missing");

    /* complete, then damaged on disk */
    write_all(&loop, s, &t, 3);
    check_all(&loop, s, &t, 0);
    char *cpath = join(t.dl, "name/sub/c.bin");
    int fd = open(cpath, O_WRONLY);
    assert_true(fd >= 0);
    uint8_t x = (uint8_t)(t.payload[65536 + 100] ^ 0xff); /* piece 4, in c.bin */
    assert_int_equal(pwrite(fd, &x, 1, 65536 + 100 - 49152), 1);
    close(fd);
    free(cpath);
    assert_int_equal(check_one(&loop, s, 4, c), RV_EHASH);
    assert_int_equal(check_one(&loop, s, 3, c), 0);

    /* a file shorter than the torrent says */
    char *dpath = join(t.dl, "name/d.bin");
    assert_int_equal(truncate(dpath, 2), 0);
    free(dpath);
    assert_int_equal(check_one(&loop, s, 5, c), RV_EHASH);
    assert_contains(c->msg[5], "shorter");

    /* a file the user deleted (seen by a new storage: a cached handle would still read the
     * unlinked file) */
    close_storage(&loop, s);
    assert_int_equal(unlink(cpath = join(t.dl, "name/a.bin")), 0);
    free(cpath);
    s = open_storage(&loop, &t, 0);
    assert_int_equal(check_one(&loop, s, 0, c), RV_EHASH);
    assert_contains(c->msg[0], "missing");
    assert_int_equal(check_one(&loop, s, 1, c), 0);

    assert_int_equal(storage_check(s, 6, on_done, c), RV_EINVAL);
    free(c);
    close_storage(&loop, s);
    assert_int_equal(uv_loop_close(&loop), 0);
    tt_free(&t);
}

static void test_read_blocks(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tt t;
    multi_build(&t);
    struct storage *s = open_storage(&loop, &t, 0);
    struct ctx *c = ctx_new();
    write_all(&loop, s, &t, 4);

    struct {
        uint32_t piece, begin, len;
    } cases[] = {
        {0, 0, PL},      /* a.bin | b.bin */
        {0, 9000, 4000}, /* across a.bin, the empty file, b.bin */
        {2, 7000, 9384}, /* end of b.bin and the padding (zeros) */
        {2, 8000, 100},  /* padding only */
        {3, 0, PL},      /* c.bin */
        {5, 0, 7237},    /* the short last piece: c.bin | d.bin */
        {5, 7230, 7},    /* the last bytes */
        {4, 16383, 1},   /* one byte */
        {1, 16384 - 4096, 4096},
    };
    uint8_t *out = malloc(PL + 16);
    assert_non_null(out);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(out, 0xAA, PL + 16);
        int rc = read_one(&loop, s, cases[i].piece, cases[i].begin, cases[i].len, out, c);
        if (rc != 0)
            print_error("read %zu: %s\n", i, c->msg[cases[i].piece]);
        assert_int_equal(rc, 0);
        assert_memory_equal(out, piece_data(&t, cases[i].piece) + cases[i].begin, cases[i].len);
        assert_int_equal(out[cases[i].len], 0xAA); /* nothing past len */
    }
    /* out of range */
    assert_int_equal(storage_read(s, 0, 0, 0, out, on_done, c), RV_EINVAL);
    assert_int_equal(storage_read(s, 0, 1, PL, out, on_done, c), RV_EINVAL);
    assert_int_equal(storage_read(s, 5, 7000, 238, out, on_done, c), RV_EINVAL);
    assert_int_equal(storage_read(s, 6, 0, 1, out, on_done, c), RV_EINVAL);
    assert_int_equal(storage_read(s, 0, UINT32_MAX, 2, out, on_done, c), RV_EINVAL);
    assert_int_equal(storage_pending(s), 0);

    /* a file gone or cut short is an error for a read (seeding only reads verified data) */
    close_storage(&loop, s);
    char *p = join(t.dl, "name/d.bin");
    assert_int_equal(unlink(p), 0);
    free(p);
    p = join(t.dl, "name/sub/c.bin");
    assert_int_equal(truncate(p, 100), 0);
    free(p);
    s = open_storage(&loop, &t, 0);
    assert_int_equal(read_one(&loop, s, 5, 7232, 5, out, c), RV_EIO); /* d.bin only */
    assert_contains(c->msg[5], "name/d.bin");
    assert_int_equal(c->sys_errno[5], ENOENT);
    assert_int_equal(read_one(&loop, s, 3, 0, 200, out, c), RV_EIO);
    assert_contains(c->msg[3], "name/sub/c.bin");
    assert_contains(c->msg[3], "shorter");

    free(out);
    free(c);
    close_storage(&loop, s);
    assert_int_equal(uv_loop_close(&loop), 0);
    tt_free(&t);
}

static void test_symlink_outside(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tt t;
    multi_build(&t);
    char *outside = join(t.root, "outside");
    assert_int_equal(mkdir(outside, 0755), 0);
    assert_int_equal(mkdir(t.dl, 0755), 0);
    make_dir(t.dl, "name");
    char *link = join(t.dl, "name/sub");
    assert_int_equal(symlink(outside, link), 0);

    struct storage *s = open_storage(&loop, &t, 0);
    struct ctx *c = ctx_new();

    /* a folder in the path is a symlink out */
    assert_int_equal(write_one(&loop, s, &t, 1, NULL, c), RV_EPATH);
    assert_contains(c->msg[1], "name/sub");
    assert_contains(c->msg[1], "symbolic link");
    assert_int_equal(check_one(&loop, s, 3, c), RV_EPATH);
    uint8_t block[16];
    assert_int_equal(read_one(&loop, s, 3, 0, sizeof(block), block, c), RV_EPATH);
    assert_int_equal(entries_in(outside), 0);

    /* the file itself is a symlink to a file outside */
    assert_int_equal(unlink(link), 0);
    free(link);
    char *victim = join(outside, "victim");
    put_file(outside, "victim", "keep", 4);
    link = join(t.dl, "name/a.bin");
    assert_int_equal(symlink(victim, link), 0);
    assert_int_equal(write_one(&loop, s, &t, 0, NULL, c), RV_EPATH);
    assert_contains(c->msg[0], "name/a.bin");
    size_t len;
    uint8_t *got = slurp(outside, "victim", &len);
    assert_non_null(got);
    assert_int_equal(len, 4);
    assert_memory_equal(got, "keep", 4);
    free(got);
    assert_int_equal(check_one(&loop, s, 0, c), RV_EPATH);

    /* a dangling symlink: O_CREAT must not create its target */
    free(link);
    link = join(t.dl, "name/d.bin");
    char *target = join(outside, "new");
    assert_int_equal(symlink(target, link), 0);
    assert_int_equal(write_one(&loop, s, &t, 5, NULL, c), RV_EPATH);
    assert_contains(c->msg[5], "name/d.bin");
    assert_false(exists(outside, "new"));
    assert_int_equal(entries_in(outside), 1); /* victim only */
    close_storage(&loop, s);

    /* the torrent's top folder is a symlink: even storage_new (the empty files) refuses */
    rm_tree(t.dl);
    assert_int_equal(mkdir(t.dl, 0755), 0);
    free(link);
    link = join(t.dl, "name");
    assert_int_equal(symlink(outside, link), 0);
    struct storage_opts o = {.dir = t.dl};
    rv_error_t err;
    s = NULL;
    assert_int_equal(storage_new(&loop, t.ti, &t.l, &o, &s, &err), RV_EPATH);
    assert_null(s);
    assert_contains(err.msg, "name");
    assert_int_equal(entries_in(outside), 1);

    free(target);
    free(victim);
    free(link);
    free(outside);
    free(c);
    assert_int_equal(uv_loop_close(&loop), 0);
    tt_free(&t);
}

/* Paths the parser would refuse, put into the parsed torrent by hand. */
static void test_unsafe_components(void **state)
{
    (void)state;
    const char *bad[] = {"name/../escape", "name//a.bin", "name/./a.bin", "../escape",
                         "name/a.bin/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uv_loop_t loop;
        assert_int_equal(uv_loop_init(&loop), 0);
        struct tt t;
        multi_build(&t);
        free(t.ti->files[0].path);
        t.ti->files[0].path = strdup(bad[i]);
        assert_non_null(t.ti->files[0].path);
        struct storage *s = open_storage(&loop, &t, 0);
        struct ctx *c = ctx_new();
        assert_int_equal(write_one(&loop, s, &t, 0, NULL, c), RV_EPATH);
        assert_contains(c->msg[0], bad[i]);
        assert_false(exists(t.root, "escape"));
        assert_false(exists(t.dl, "escape"));
        assert_false(exists(t.dl, "name/a.bin"));
        assert_int_equal(check_one(&loop, s, 0, c), RV_EPATH);
        free(c);
        close_storage(&loop, s);
        assert_int_equal(uv_loop_close(&loop), 0);
        tt_free(&t);
    }
}

static void test_not_a_folder(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tt t;
    multi_build(&t);
    assert_int_equal(mkdir(t.dl, 0755), 0);
    make_dir(t.dl, "name");
    put_file(t.dl, "name/sub", "x", 1);
    struct storage *s = open_storage(&loop, &t, 0);
    struct ctx *c = ctx_new();
    assert_int_equal(write_one(&loop, s, &t, 1, NULL, c), RV_EIO);
    assert_int_equal(c->sys_errno[1], ENOTDIR);
    assert_contains(c->msg[1], "name/sub");
    assert_contains(c->msg[1], strerror(ENOTDIR));
    /* a folder where a file should be */
    char *sub = join(t.dl, "name/sub");
    assert_int_equal(unlink(sub), 0);
    free(sub);
    make_dir(t.dl, "name/d.bin");
    assert_int_equal(write_one(&loop, s, &t, 5, NULL, c), RV_EIO);
    assert_int_equal(c->sys_errno[5], EISDIR);
    assert_contains(c->msg[5], "name/d.bin");
    free(c);
    close_storage(&loop, s);

    /* storage_new fails when the download folder cannot be a folder */
    put_file(t.root, "plain", "x", 1);
    char *p = join(t.root, "plain/dl");
    struct storage_opts o = {.dir = p};
    rv_error_t err;
    s = NULL;
    assert_int_equal(storage_new(&loop, t.ti, &t.l, &o, &s, &err), RV_EIO);
    assert_null(s);
    assert_contains(err.msg, "plain");
    assert_int_equal(err.sys_errno, ENOTDIR);
    free(p);
    assert_int_equal(uv_loop_close(&loop), 0);
    tt_free(&t);
}

/* Root ignores permissions, so this one runs only for other users; the write error path is
 * covered for everyone by test_write_error below. */
static void test_readonly_folder(void **state)
{
    (void)state;
    if (geteuid() == 0) {
        skip();
        return;
    }
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tt t;
    multi_build(&t);
    struct storage *s = open_storage(&loop, &t, 0); /* makes name/ for the empty files */
    assert_int_equal(chmod(t.dl, 0555), 0);
    char *name = join(t.dl, "name");
    assert_int_equal(chmod(name, 0555), 0);
    struct ctx *c = ctx_new();
    assert_int_equal(write_one(&loop, s, &t, 0, NULL, c), RV_EIO);
    assert_int_equal(c->sys_errno[0], EACCES);
    assert_contains(c->msg[0], "name/a.bin");
    chmod(name, 0755);
    free(name);
    free(c);
    close_storage(&loop, s);
    assert_int_equal(uv_loop_close(&loop), 0);
    tt_free(&t);
}

/* storage_release_fn for test data the test keeps: counts the calls. */
static void on_kept(void *rud, const uint8_t *data)
{
    (void)data;
    __atomic_fetch_add((unsigned *)rud, 1, __ATOMIC_RELAXED);
}

/* A write the kernel refuses (EFBIG past RLIMIT_FSIZE, which binds root as well): RV_EIO,
 * the file and the reason named. */
static void test_write_error(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tt t;
    multi_build(&t);
    struct storage *s = open_storage(&loop, &t, 0);
    struct ctx *c = ctx_new();
    /* c.bin already at its full size, so only the write can fail */
    assert_int_equal(write_one(&loop, s, &t, 3, NULL, c), 0);
    assert_int_equal(file_size(t.dl, "name/sub/c.bin"), 40000);

    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 20000; /* inside piece 4's part of c.bin: [16384, 32768) */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = write_one(&loop, s, &t, 4, NULL, c);
    /* nor can b.bin (30000 bytes) be given its final size */
    int rc1 = write_one(&loop, s, &t, 1, NULL, c);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, oldsig);

    assert_int_equal(rc, RV_EIO);
    assert_int_equal(c->sys_errno[4], EFBIG);
    char want[512];
    snprintf(want, sizeof(want), "cannot write %s/name/sub/c.bin: %s", t.dl, strerror(EFBIG));
    assert_contains(c->msg[4], want);
    assert_int_equal(rc1, RV_EIO);
    assert_int_equal(c->sys_errno[1], EFBIG);
    snprintf(want, sizeof(want), "cannot set the size of %s/name/sub/dir/b.bin", t.dl);
    assert_contains(c->msg[1], want);

    /* Chunks in one job: the first two fit under the limit, the third does not; the job stops
     * there, and the fourth (piece 0, elsewhere) reports the same error unwritten. */
    unsigned released = 0;
    const struct storage_chunk ch[] = {{3, 0, PL, piece_data(&t, 3)},
                                       {4, 0, 3000, piece_data(&t, 4)},
                                       {4, 4000, 8000, piece_data(&t, 4) + 4000},
                                       {0, 0, PL, piece_data(&t, 0)}};
    struct ctx *wc = ctx_new();
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    oldsig = signal(SIGXFSZ, SIG_IGN);
    rc = storage_write_chunks(s, ch, 4, false, on_kept, &released, on_done, wc);
    if (rc == 0)
        assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, oldsig);
    assert_int_equal(rc, 0);
    assert_int_equal(wc->total, 4);
    assert_int_equal(released, 4);
    const uint32_t want_seq[] = {3, 4, 4, 0};
    const int want_rc[] = {0, 0, RV_EIO, RV_EIO};
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(wc->seq[i], want_seq[i]);
        assert_int_equal(wc->seq_rc[i], want_rc[i]);
    }
    snprintf(want, sizeof(want), "cannot write %s/name/sub/c.bin: %s", t.dl, strerror(EFBIG));
    assert_contains(wc->msg[0], want); /* piece 0's call names c.bin: the write that failed */
    assert_int_equal(wc->sys_errno[0], EFBIG);
    assert_int_equal(check_one(&loop, s, 0, c), RV_EHASH); /* never written */
    free(wc);

    /* with the limit gone the same pieces go through */
    assert_int_equal(write_one(&loop, s, &t, 4, NULL, c), 0);
    assert_int_equal(write_one(&loop, s, &t, 1, NULL, c), 0);
    check_all_some(&loop, s, (uint32_t[]){1, 3, 4}, 3);
    free(c);
    close_storage(&loop, s);
    assert_int_equal(uv_loop_close(&loop), 0);
    tt_free(&t);
}

static void test_close_in_flight(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tt t;
    tt_build(&t, "big.bin", 256u << 10, NULL, 0, 64u * (256u << 10), 9); /* 64 pieces */
    uint32_t n = t.ti->piece_count;

    /* closed right after queueing everything: no callback at all, the close callback once */
    struct storage *s = open_storage(&loop, &t, 0);
    struct ctx *c = ctx_new();
    for (uint32_t p = 0; p < n; p++)
        assert_int_equal(storage_verify_and_write(s, p, piece_data(&t, p), 256u << 10, on_done, c),
                         0);
    assert_int_equal(storage_pending(s), n);
    storage_close(s, on_closed, c);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c->total, 0);
    assert_int_equal(c->closed, 1);
    free(c);

    /* mixed work, closed from inside the first callback: exactly one callback */
    s = open_storage(&loop, &t, 3);
    c = ctx_new();
    c->s = s;
    c->close_in_cb = true;
    uint8_t *blocks = malloc((size_t)n * 16384);
    assert_non_null(blocks);
    for (uint32_t p = 0; p < n; p++) {
        assert_int_equal(storage_verify_and_write(s, p, piece_data(&t, p), 256u << 10, on_done, c),
                         0);
        assert_int_equal(storage_check(s, p, on_done, c), 0);
        assert_int_equal(storage_read(s, p, 0, 16384, blocks + (size_t)p * 16384, on_done, c), 0);
    }
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c->total, 1);
    assert_int_equal(c->closed, 1);
    free(blocks);
    free(c);

    /* nothing pending: closes (on the loop, later) all the same */
    s = open_storage(&loop, &t, 0);
    close_storage(&loop, s);
    /* after close was called, new work is refused */
    s = open_storage(&loop, &t, 0);
    c = ctx_new();
    storage_close(s, on_closed, c);
    assert_int_equal(storage_check(s, 0, on_done, c), RV_ECANCELED);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c->closed, 1);
    free(c);

    assert_int_equal(uv_loop_close(&loop), 0);
    tt_free(&t);
}

static void test_max_open(void **state)
{
    (void)state;
    static const struct tfile five[] = {
        {"f1", 20000, false}, {"d/f2", 7000, false}, {"d/e/f3", 33333, false},
        {"f4", 1, false},     {"f5", 40000, false},
    };
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tt t;
    tt_build(&t, "five", PL, five, 5, 0, 21);
    struct storage *s = open_storage(&loop, &t, 2);
    for (unsigned round = 0; round < 3; round++)
        write_all(&loop, s, &t, 40 + round);
    assert_files_match(&t);
    check_all(&loop, s, &t, 0);

    /* reads of every block, all at once, through the two handles */
    uint32_t n = t.ti->piece_count;
    uint8_t *out = malloc((size_t)n * PL);
    assert_non_null(out);
    struct ctx *c = ctx_new();
    for (uint32_t p = 0; p < n; p++)
        assert_int_equal(
            storage_read(s, p, 0, layout_piece_size(&t.l, p), out + (size_t)p * PL, on_done, c), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    for (uint32_t p = 0; p < n; p++)
        assert_int_equal(c->rc[p], 0);
    assert_memory_equal(out, t.payload, t.size);
    free(out);
    free(c);
    close_storage(&loop, s);
    assert_int_equal(uv_loop_close(&loop), 0);
    tt_free(&t);
}

/* ---- throughput ---- */

struct bench {
    struct tt *t;
    struct storage *s;
    uint32_t next, done, failed;
};

static void bench_done(void *ud, uint32_t piece, int rc, const rv_error_t *err)
{
    struct bench *b = ud;
    (void)piece;
    if (rc != 0) {
        print_error("bench piece %u: %s\n", piece, err->msg);
        b->failed++;
    }
    b->done++;
    if (b->next < b->t->ti->piece_count) {
        uint32_t p = b->next++;
        int r = storage_verify_and_write(b->s, p, piece_data(b->t, p),
                                         layout_piece_size(&b->t->l, p), bench_done, b);
        if (r != 0)
            b->failed++;
    }
}

/* Whether this folder's file system takes O_DIRECT (ext4, XFS, btrfs do). */
static bool direct_supported(const char *dir)
{
    char *p = join(dir, "probe");
    int fd = open(p, O_CREAT | O_WRONLY | O_DIRECT | O_CLOEXEC, 0644);
    bool ok = fd >= 0;
    if (fd >= 0)
        close(fd);
    unlink(p);
    free(p);
    return ok;
}

/* direct_max: storage_opts.direct_max (0: the default) */
static struct storage *open_direct_max(uv_loop_t *loop, struct tt *t, bool direct,
                                       rv_session_stats_t *st, unsigned direct_max)
{
    struct storage_opts o = {.dir = t->dl, .direct = direct, .stats = st, .direct_max = direct_max};
    struct storage *s = NULL;
    rv_error_t err;
    assert_int_equal(storage_new(loop, t->ti, &t->l, &o, &s, &err), 0);
    return s;
}

static struct storage *open_direct(uv_loop_t *loop, struct tt *t, bool direct,
                                   rv_session_stats_t *st)
{
    return open_direct_max(loop, t, direct, st, 0);
}

/* Writes every piece from a copy starting shift bytes into a page-aligned buffer. */
static void write_all_shifted(uv_loop_t *loop, struct storage *s, struct tt *t, size_t shift)
{
    struct ctx *c = ctx_new();
    uint8_t *mem = NULL;
    assert_int_equal(posix_memalign((void **)&mem, 4096, t->ti->piece_length + 4096), 0);
    for (uint32_t p = 0; p < t->ti->piece_count; p++) {
        uint32_t n = layout_piece_size(&t->l, p);
        memcpy(mem + shift, piece_data(t, p), n);
        assert_int_equal(write_one(loop, s, t, p, mem + shift, c), 0);
    }
    free(mem);
    free(c);
}

static void test_direct_writes(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);

    /* One file, pieces of 256 KiB from page-aligned memory: the three whole pieces go with
     * O_DIRECT as they are, the 777-byte last piece (under 64 KiB) through the cache. */
    struct tt t;
    tt_build(&t, "one.bin", 256u << 10, NULL, 0, (768u << 10) + 777, 21);
    bool direct = direct_supported(t.root);
    rv_session_stats_t st = {0};
    struct storage *s = open_direct(&loop, &t, true, &st);
    write_all_shifted(&loop, s, &t, 0);
    close_storage(&loop, s);
    assert_files_match(&t);
    assert_int_equal(st.disk_write_bytes, t.size);
    assert_int_equal(st.disk_direct_bytes, direct ? 768u << 10 : 0);
    if (!direct)
        print_message("O_DIRECT is refused in %s: only the fallback was tested\n", t.root);

    /* The same with the data 100 bytes into its page: through a bounce buffer, same bytes. */
    rm_tree(t.dl);
    memset(&st, 0, sizeof(st));
    s = open_direct(&loop, &t, true, &st);
    write_all_shifted(&loop, s, &t, 100);
    check_all(&loop, s, &t, 0);
    close_storage(&loop, s);
    assert_files_match(&t);
    assert_int_equal(st.disk_direct_bytes, direct ? 768u << 10 : 0);

    /* cached_writes: nothing direct */
    rm_tree(t.dl);
    memset(&st, 0, sizeof(st));
    s = open_direct(&loop, &t, false, &st);
    write_all_shifted(&loop, s, &t, 0);
    close_storage(&loop, s);
    assert_files_match(&t);
    assert_int_equal(st.disk_direct_bytes, 0);
    tt_free(&t);

    /* Several files at offsets that are not page-aligned, pieces written in random order
     * from unaligned memory: the pages shared by two pieces or two files go through the
     * cache, each written from both sides; every byte lands, and a check reads it back. */
    static const struct tfile odd[] = {
        {"a.bin", 5000, false}, {"b.bin", 700001, false}, {"c.bin", 300000, false},
        {"d.bin", 70000, false},
    };
    tt_build(&t, "odd", 256u << 10, odd, 4, 0, 33);
    memset(&st, 0, sizeof(st));
    s = open_direct(&loop, &t, true, &st);
    write_all(&loop, s, &t, 5);
    check_all(&loop, s, &t, 0);
    close_storage(&loop, s);
    assert_files_match(&t);
    assert_int_equal(st.disk_write_bytes, t.size);
    /* The whole pages inside each span of 64 KiB or more: b.bin's parts of pieces 0-2
     * (253952 + 258048 + 176128), c.bin's of pieces 2-3 (77824 + 217088); d.bin's 43575
     * bytes in piece 3 (40960 in whole pages) and the 26425-byte last piece are cached;
     * written side by side, a piece may find the disk behind (two direct writes running, two
     * more queued) and go through the cache as well (test_direct_overflow). */
    assert_int_equal(st.disk_direct_bytes + st.disk_overflow_bytes, direct ? 983040 : 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    tt_free(&t);
}

/* A write that finds direct_max direct writes running and two more writes queued goes
 * through the cache: 48 pieces queued together on four workers, direct_max 1, some overflow;
 * every byte lands either way. */
static void test_direct_overflow(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tt t;
    tt_build(&t, "over.bin", 256u << 10, NULL, 0, 12u << 20, 45);
    if (!direct_supported(t.root)) {
        print_message("O_DIRECT is refused in %s: nothing to test\n", t.root);
        tt_free(&t);
        assert_int_equal(uv_loop_close(&loop), 0);
        return;
    }
    rv_session_stats_t st = {0};
    /* Four workers writing at once nearly always overlap; a run where they happened not to
     * is tried again, a few times. */
    for (int attempt = 0; attempt < 5 && st.disk_overflow_bytes == 0; attempt++) {
        rm_tree(t.dl);
        memset(&st, 0, sizeof(st));
        struct storage *s = open_direct_max(&loop, &t, true, &st, 1);
        write_all(&loop, s, &t, 9);
        close_storage(&loop, s);
        assert_files_match(&t);
        assert_int_equal(st.disk_write_bytes, t.size);
        assert_int_equal(st.disk_direct_bytes + st.disk_overflow_bytes, t.size);
        assert_true(st.disk_direct_max >= 1);
    }
    assert_true(st.disk_overflow_bytes > 0);
    assert_true(st.disk_direct_bytes > 0);

    /* One at a time (each write waits for the one before): every one direct. */
    rm_tree(t.dl);
    memset(&st, 0, sizeof(st));
    struct storage *s = open_direct_max(&loop, &t, true, &st, 1);
    write_all_shifted(&loop, s, &t, 0);
    close_storage(&loop, s);
    assert_files_match(&t);
    assert_int_equal(st.disk_direct_bytes, t.size);
    assert_int_equal(st.disk_overflow_bytes, 0);
    assert_int_equal(st.disk_direct_max, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    tt_free(&t);
}

/* storage_write_chunks(hurry): through the cache when another direct write is running, here
 * one the test pretends to run through the shared storage_disk; direct when the disk is idle,
 * and without hurry while no more than direct_max run. */
static void test_write_chunks_hurry(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tt t;
    tt_build(&t, "hurry.bin", 1u << 20, NULL, 0, 4u << 20, 46);
    if (!direct_supported(t.root)) {
        print_message("O_DIRECT is refused in %s: nothing to test\n", t.root);
        tt_free(&t);
        assert_int_equal(uv_loop_close(&loop), 0);
        return;
    }
    struct storage_disk disk = {0};
    rv_session_stats_t st = {0};
    struct storage_opts o = {.dir = t.dl, .direct = true, .stats = &st, .disk = &disk};
    struct storage *s = NULL;
    rv_error_t err;
    assert_int_equal(storage_new(&loop, t.ti, &t.l, &o, &s, &err), 0);
    uint8_t *mem;
    assert_int_equal(posix_memalign((void **)&mem, 4096, t.size), 0);
    unsigned released = 0;
    struct ctx *c = ctx_new();
    /* piece p: {hurry, direct writes running besides} */
    static const struct {
        bool hurry;
        unsigned running;
        bool direct;
    } cases[] = {{true, 1, false}, {true, 0, true}, {false, 1, true}, {true, 2, false}};
    for (uint32_t p = 0; p < 4; p++) {
        memcpy(mem + (size_t)p * (1u << 20), piece_data(&t, p), 1u << 20);
        struct storage_chunk ch = {p, 0, 1u << 20, mem + (size_t)p * (1u << 20)};
        uint64_t direct0 = st.disk_direct_bytes, over0 = st.disk_overflow_bytes;
        disk.running = cases[p].running;
        assert_int_equal(
            storage_write_chunks(s, &ch, 1, cases[p].hurry, on_kept, &released, on_done, c), 0);
        assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(disk.running, cases[p].running); /* the write's own count undone */
        assert_int_equal(c->rc[p], 0);
        assert_int_equal(st.disk_direct_bytes - direct0, cases[p].direct ? 1u << 20 : 0);
        assert_int_equal(st.disk_overflow_bytes - over0, cases[p].direct ? 0 : 1u << 20);
    }
    disk.running = 0;
    close_storage(&loop, s);
    assert_files_match(&t);
    assert_int_equal(released, 4);
    free(mem);
    free(c);
    tt_free(&t);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Writes pieces first..first+n-1 as one run, each from its own buffer starting shift bytes
 * into a page, piece bad (when in the run) with one bit flipped; every callback must come,
 * once. */
static void write_run(uv_loop_t *loop, struct storage *s, const struct tt *t, uint32_t first,
                      uint32_t n, uint32_t bad, size_t shift, struct ctx *c)
{
    uint8_t *mem[STORAGE_RUN_MAX];
    const uint8_t *data[STORAGE_RUN_MAX];
    assert_true(n <= STORAGE_RUN_MAX);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(posix_memalign((void **)&mem[i], 4096, t->ti->piece_length + 4096), 0);
        memcpy(mem[i] + shift, piece_data(t, first + i), layout_piece_size(&t->l, first + i));
        if (first + i == bad)
            mem[i][shift + 7] ^= 1;
        data[i] = mem[i] + shift;
    }
    memset(c->calls, 0, sizeof(c->calls));
    assert_int_equal(storage_verify_and_write_run(s, first, n, data, on_done, c), 0);
    assert_int_equal(storage_pending(s), 1); /* one job for the run */
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(c->calls[first + i], 1);
        free(mem[i]);
    }
}

static void test_write_runs(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct ctx *c = ctx_new();

    /* One file, 256 KiB pieces from page-aligned memory, in two runs: 0-3, then 4-7 and the
     * 777-byte last piece. Each run's whole pages are one write; the last piece's partial
     * page a second: 3 writes where piece by piece took 9. */
    struct tt t;
    tt_build(&t, "run.bin", 256u << 10, NULL, 0, (2u << 20) + 777, 41);
    assert_int_equal(t.ti->piece_count, 9);
    bool direct = direct_supported(t.root);
    rv_session_stats_t st = {0};
    struct storage *s = open_direct(&loop, &t, true, &st);
    write_run(&loop, s, &t, 0, 4, UINT32_MAX, 0, c);
    write_run(&loop, s, &t, 4, 5, UINT32_MAX, 0, c);
    for (uint32_t p = 0; p < 9; p++)
        assert_int_equal(c->rc[p], 0);
    close_storage(&loop, s);
    assert_files_match(&t);
    assert_int_equal(st.disk_write_bytes, t.size);
    assert_int_equal(st.disk_direct_bytes, direct ? 2u << 20 : 0);
    /* Each run's four full-length pieces went through the lanes together where four gain. */
    unsigned min = sha1x_min_messages();
    assert_int_equal(st.hash_bytes, t.size);
    assert_int_equal(st.hash_lane_bytes, min > 0 && min <= 4 ? 2u << 20 : 0);
    if (direct)
        assert_int_equal(st.disk_writes, 3);
    else
        print_message("O_DIRECT is refused in %s: only the fallback was tested\n", t.root);

    /* Bad input: no pieces, too many, past the last piece, a missing buffer. */
    s = open_direct(&loop, &t, true, NULL);
    const uint8_t *none[STORAGE_RUN_MAX + 1] = {0};
    const uint8_t *one[1] = {piece_data(&t, 0)};
    assert_int_equal(storage_verify_and_write_run(s, 0, 0, one, on_done, c), RV_EINVAL);
    assert_int_equal(storage_verify_and_write_run(s, 0, STORAGE_RUN_MAX + 1, none, on_done, c),
                     RV_EINVAL);
    assert_int_equal(storage_verify_and_write_run(s, 8, 2, none, on_done, c), RV_EINVAL);
    assert_int_equal(storage_verify_and_write_run(s, 9, 1, one, on_done, c), RV_EINVAL);
    assert_int_equal(storage_verify_and_write_run(s, 0, 1, none, on_done, c), RV_EINVAL);
    assert_int_equal(storage_pending(s), 0);
    close_storage(&loop, s);
    tt_free(&t);

    /* b.bin starts 5000 bytes into the torrent, so every piece boundary falls 3192 bytes into
     * a page of it. Each piece's buffer starts 3192 bytes into a page (as the torrent places
     * it), so each piece's whole pages are aligned in memory, and the pages two pieces share
     * are copied together: a.bin (cached), b.bin's whole pages in one write, its last partial
     * page (cached). */
    static const struct tfile two[] = {{"a.bin", 5000, false},
                                       {"b.bin", (2u << 20) - 5000 + 1000, false}};
    tt_build(&t, "two", 256u << 10, two, 2, 0, 42);
    assert_int_equal(t.ti->piece_count, 9);
    memset(&st, 0, sizeof(st));
    s = open_direct(&loop, &t, true, &st);
    write_run(&loop, s, &t, 0, 9, UINT32_MAX, 3192, c);
    close_storage(&loop, s);
    assert_files_match(&t);
    assert_int_equal(st.disk_write_bytes, t.size);
    if (direct) {
        assert_int_equal(st.disk_direct_bytes, two[1].length & ~4095ull);
        assert_int_equal(st.disk_writes, 3);
    }

    /* The same from memory 100 bytes into its page, which no file page lines up with: each
     * piece is written on its own, as storage_verify_and_write would. Same bytes. */
    rm_tree(t.dl);
    memset(&st, 0, sizeof(st));
    s = open_direct(&loop, &t, true, &st);
    write_run(&loop, s, &t, 0, 9, UINT32_MAX, 100, c);
    check_all(&loop, s, &t, 0);
    close_storage(&loop, s);
    assert_files_match(&t);

    /* A bad piece in the middle: it alone fails, with its number; the stretches on either
     * side are written, and a check finds them and not it. */
    rm_tree(t.dl);
    s = open_direct(&loop, &t, true, NULL);
    write_run(&loop, s, &t, 0, 9, 4, 3192, c);
    for (uint32_t p = 0; p < 9; p++)
        assert_int_equal(c->rc[p], p == 4 ? RV_EHASH : 0);
    assert_contains(c->msg[4], "piece 4 does not match");
    for (uint32_t p = 0; p < 9; p++)
        assert_int_equal(check_one(&loop, s, p, c), p == 4 ? RV_EHASH : 0);
    close_storage(&loop, s);
    tt_free(&t);
    free(c);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- pieces hashed and written chunk by chunk (storage_hash_chunks) ---- */

struct steps_ctx {
    unsigned calls, released;
    int verdict[MAXP];
};

static void on_step_released(void *rud, const uint8_t *chunk)
{
    struct steps_ctx *c = rud;
    __atomic_fetch_add(&c->released, 1, __ATOMIC_RELAXED);
    free((void *)(uintptr_t)chunk);
}

static void on_steps(void *ud, struct storage_step *st, unsigned n)
{
    struct steps_ctx *c = ud;
    c->calls++;
    for (unsigned i = 0; i < n; i++) {
        assert_true(st[i].piece < MAXP);
        if (st[i].verdict != 1)
            c->verdict[st[i].piece] = st[i].verdict;
    }
}

/* storage_write_chunks: 128 KiB chunks, each in memory of its own placed as the torrent
 * places pieces (3192 bytes into a page, where b.bin's pages start), are written together
 * wherever they follow each other in the file, whatever their order in the job. */
static void test_write_chunks_merged(void **state)
{
    (void)state;
    const uint32_t chunk = 128u << 10, shift = 3192;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    static const struct tfile two[] = {{"a.bin", 5000, false},
                                       {"b.bin", (2u << 20) - 5000 + 777, false}};
    struct tt t;
    tt_build(&t, "merge", 1u << 20, two, 2, 0, 43);
    assert_int_equal(t.ti->piece_count, 3);
    bool direct = direct_supported(t.root);
    rv_session_stats_t st = {0};
    struct storage *s = open_direct(&loop, &t, true, &st);
    unsigned released = 0;
    struct ctx *c = ctx_new();
    /* piece 0 in order; piece 1 in adjacent pairs, out of order; piece 2 (777 bytes) alone */
    static const uint32_t order[2][8] = {{0, 1, 2, 3, 4, 5, 6, 7}, {0, 1, 4, 5, 2, 3, 6, 7}};
    uint8_t *mem[17];
    unsigned nmem = 0;
    for (uint32_t p = 0; p < 3; p++) {
        struct storage_chunk ch[STORAGE_CHUNKS_MAX];
        unsigned n = 0;
        uint32_t size = layout_piece_size(&t.l, p);
        for (uint32_t i = 0; i < 8 && i * chunk < size; i++) {
            uint32_t off = (p < 2 ? order[p][i] : i) * chunk;
            uint32_t len = size - off < chunk ? size - off : chunk;
            assert_int_equal(posix_memalign((void **)&mem[nmem], 4096, chunk + 4096), 0);
            memcpy(mem[nmem] + shift, piece_data(&t, p) + off, len);
            ch[n++] = (struct storage_chunk){p, off, len, mem[nmem++] + shift};
        }
        assert_int_equal(storage_write_chunks(s, ch, n, false, on_kept, &released, on_done, c), 0);
    }
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c->total, 17);
    assert_int_equal(released, 17);
    for (uint32_t p = 0; p < 3; p++)
        assert_int_equal(c->rc[p], 0);
    close_storage(&loop, s);
    assert_files_match(&t);
    assert_int_equal(st.disk_write_bytes, t.size);
    /* Piece 0: a.bin, then b.bin's part as one run (its whole pages direct, its last partial
     * page cached); piece 1: four runs of two chunks, each with a partial page at either end;
     * piece 2: one. Chunk by chunk it was 3 + 3 * 7 + 3 * 8 + 1 = 49. */
    assert_int_equal(st.disk_writes, direct ? 3 + 4 * 3 + 1 : 2 + 4 + 1);
    assert_int_equal(st.disk_edge_writes, direct ? 1 + 4 * 2 : 0); /* the partial pages */
    for (unsigned i = 0; i < nmem; i++)
        free(mem[i]);
    free(c);
    tt_free(&t);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Lockstep's rows for a torrent of four 1 MiB pieces: job k writes chunk k (256 KiB, from
 * page-aligned memory kept in mem[]) of all four pieces. Runs the loop; every chunk is called
 * back and released once. */
static struct ctx *write_rows(uv_loop_t *loop, struct storage *s, struct tt *t, uint8_t *mem[16])
{
    const uint32_t chunk = 256u << 10;
    unsigned released = 0;
    struct ctx *c = ctx_new();
    for (uint32_t k = 0; k < 4; k++) {
        struct storage_chunk ch[4];
        for (uint32_t p = 0; p < 4; p++) {
            uint8_t **m = &mem[k * 4 + p];
            assert_int_equal(posix_memalign((void **)m, 4096, chunk), 0);
            memcpy(*m, piece_data(t, p) + k * chunk, chunk);
            ch[p] = (struct storage_chunk){p, k * chunk, chunk, *m};
        }
        assert_int_equal(storage_write_chunks(s, ch, 4, false, on_kept, &released, on_done, c), 0);
    }
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c->total, 16);
    assert_int_equal(released, 16);
    return c;
}

/* What write_rows left, freed once its storage is closed; the loop closed too. */
static void rows_free(uv_loop_t *loop, struct tt *t, uint8_t *mem[16], struct ctx *c)
{
    for (unsigned i = 0; i < 16; i++)
        free(mem[i]);
    free(c);
    tt_free(t);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* Lockstep's rows: chunk k of four pieces in one job, none next to another in the file. Their
 * direct writes go to the kernel in one io_submit (disk_submits 1 per job), or one pwritev each
 * with storage_aio_enable(false); the files are the same either way. */
static void test_write_chunks_together(void **state)
{
    (void)state;
    for (int aio = 1; aio >= 0; aio--) {
        storage_aio_enable(aio != 0);
        uv_loop_t loop;
        assert_int_equal(uv_loop_init(&loop), 0);
        static const struct tfile one[] = {{"rows.bin", 4u << 20, false}};
        struct tt t;
        tt_build(&t, "rows", 1u << 20, one, 1, 0, 51);
        assert_int_equal(t.ti->piece_count, 4);
        bool direct = direct_supported(t.root);
        rv_session_stats_t st = {0};
        /* direct_max 16: no write finds the disk behind (the page cache would take it) */
        struct storage *s = open_direct_max(&loop, &t, true, &st, 16);
        uint8_t *mem[16];
        struct ctx *c = write_rows(&loop, s, &t, mem);
        for (uint32_t p = 0; p < 4; p++)
            assert_int_equal(c->rc[p], 0);
        close_storage(&loop, s);
        assert_files_match(&t);
        assert_int_equal(st.disk_write_bytes, t.size);
        assert_int_equal(st.disk_writes, 16);
        assert_int_equal(st.disk_direct_bytes, direct ? t.size : 0);
        assert_int_equal(st.disk_submits, !direct ? 0 : aio ? 4 : 16);
        rows_free(&loop, &t, mem, c);
    }
    storage_aio_enable(true);
}

/* What the kernel may answer a gathered write besides "all of it", faked (storage_aio_fake:
 * the kernel is given a page of it at most, so the rest reaches the file through the fallbacks
 * alone): its first page (the rest goes out in one more direct write each), 100
 * bytes (the rest through the page cache), or EINVAL (refused: the file is written through the
 * page cache, this write and every later one). Each way the pieces are called back without
 * error and the files are whole. */
static void test_write_chunks_answers(void **state)
{
    (void)state;
    static const enum storage_aio_fake ways[] = {STORAGE_AIO_SHORT_PAGE, STORAGE_AIO_SHORT_ODD,
                                                 STORAGE_AIO_REFUSED};
    for (size_t w = 0; w < sizeof(ways) / sizeof(ways[0]); w++) {
        uv_loop_t loop;
        assert_int_equal(uv_loop_init(&loop), 0);
        static const struct tfile one[] = {{"answers.bin", 4u << 20, false}};
        struct tt t;
        tt_build(&t, "answers", 1u << 20, one, 1, 0, 53 + w);
        if (!direct_supported(t.root)) {
            tt_free(&t);
            assert_int_equal(uv_loop_close(&loop), 0);
            skip(); /* no direct writes here: nothing is gathered */
        }
        rv_session_stats_t st = {0};
        struct storage *s = open_direct_max(&loop, &t, true, &st, 16);
        storage_aio_fake(ways[w]);
        uint8_t *mem[16];
        struct ctx *c = write_rows(&loop, s, &t, mem);
        storage_aio_fake(STORAGE_AIO_REAL);
        for (uint32_t p = 0; p < 4; p++) {
            assert_int_equal(c->calls[p], 4);
            assert_int_equal(c->rc[p], 0);
        }
        close_storage(&loop, s);
        assert_files_match(&t);
        print_message("answer %d: %llu writes, %llu submits, %llu direct bytes\n", (int)ways[w],
                      (unsigned long long)st.disk_writes, (unsigned long long)st.disk_submits,
                      (unsigned long long)st.disk_direct_bytes);
        if (ways[w] == STORAGE_AIO_SHORT_PAGE) {
            /* 16 gathered writes, each followed by one pwritev of the rest */
            assert_int_equal(st.disk_submits, 4 + 16);
            assert_int_equal(st.disk_writes, 32);
            assert_int_equal(st.disk_direct_bytes, t.size);
        } else if (ways[w] == STORAGE_AIO_SHORT_ODD) {
            assert_int_equal(st.disk_submits, 4);
            assert_int_equal(st.disk_direct_bytes, 16 * 100);
        } else {
            /* refused: nothing counts as direct; jobs already running when the first heard
             * of it had gathered theirs too */
            assert_int_equal(st.disk_direct_bytes, 0);
            assert_true(st.disk_submits >= 1 && st.disk_submits <= 4);
        }
        rows_free(&loop, &t, mem, c);
    }
}

/* A disk that fills up under the gathered direct writes (a 1 MiB tmpfs, which takes O_DIRECT
 * since Linux 6.6; root only, skipped otherwise): the writes the kernel fails in the batch
 * report ENOSPC for their pieces, and every chunk is released and called back once. */
static void test_write_chunks_full(void **state)
{
    (void)state;
    uv_loop_t loop;
    static const struct tfile one[] = {{"full.bin", 4u << 20, false}};
    struct tt t;
    tt_build(&t, "full", 1u << 20, one, 1, 0, 52);
    (void)mkdir(t.dl, 0755);
    if (getuid() != 0 || mount("tmpfs", t.dl, "tmpfs", 0, "size=1m") != 0) {
        tt_free(&t);
        skip();
    }
    assert_int_equal(uv_loop_init(&loop), 0);
    rv_session_stats_t st = {0};
    struct storage *s = open_direct_max(&loop, &t, true, &st, 16);
    uint8_t *mem[16];
    struct ctx *c = write_rows(&loop, s, &t, mem);
    unsigned failed = 0;
    for (uint32_t p = 0; p < 4; p++) {
        assert_int_equal(c->calls[p], 4);
        if (c->rc[p] != 0) {
            failed++;
            assert_int_equal(c->sys_errno[p], ENOSPC);
            assert_non_null(strstr(c->msg[p], "cannot write"));
        }
    }
    assert_true(failed > 0);
    assert_true(st.disk_write_bytes <= 1u << 20);
    assert_int_equal(st.disk_submits, 4); /* one io_submit a job, failing writes and all */
    print_message("full: %u of 4 pieces' last chunks failed; %llu bytes written, %llu direct, "
                  "%llu submits\n",
                  failed, (unsigned long long)st.disk_write_bytes,
                  (unsigned long long)st.disk_direct_bytes, (unsigned long long)st.disk_submits);
    close_storage(&loop, s);
    assert_int_equal(umount(t.dl), 0);
    rows_free(&loop, &t, mem, c);
}

static void test_hash_chunks(void **state)
{
    (void)state;
    const uint32_t chunk = 256u << 10;
    for (int lanes = 1; lanes >= 0; lanes--) {
        sha1x_enable(lanes != 0);
        uv_loop_t loop;
        assert_int_equal(uv_loop_init(&loop), 0);
        /* 8 full pieces of 1 MiB and a 777-byte one, over two files (b.bin starts 5000 bytes
         * in, so chunks straddle the boundary and none lines up with a page) */
        static const struct tfile two[] = {{"a.bin", 5000, false},
                                           {"b.bin", (8u << 20) - 5000 + 777, false}};
        struct tt t;
        tt_build(&t, "steps", 1u << 20, two, 2, 0, 77);
        assert_int_equal(t.ti->piece_count, 9);
        rv_session_stats_t st = {0};
        struct storage *s = open_direct(&loop, &t, true, &st);
        struct steps_ctx *c = calloc(1, sizeof(*c));
        assert_non_null(c);
        for (uint32_t p = 0; p < MAXP; p++)
            c->verdict[p] = 1;
        struct sha1_mid mid[9];
        for (uint32_t p = 0; p < 9; p++)
            sha1_mid_init(&mid[p]);
        /* Row by row, as pieces arriving side by side: chunk r of every piece in one job.
         * Piece 2 has a byte wrong in its second chunk. */
        unsigned chunks = 0;
        for (uint32_t r = 0; r < 4; r++) {
            struct storage_step steps[STORAGE_STEPS_MAX];
            unsigned n = 0;
            for (uint32_t p = 0; p < 9; p++) {
                uint32_t size = layout_piece_size(&t.l, p), off = r * chunk;
                if (off >= size)
                    continue;
                uint32_t len = size - off < chunk ? size - off : chunk;
                uint8_t *m;
                assert_int_equal(posix_memalign((void **)&m, 4096, chunk), 0);
                memcpy(m, piece_data(&t, p) + off, len);
                if (p == 2 && r == 1)
                    m[100] ^= 1;
                steps[n++] = (struct storage_step){p, off, len, m, &mid[p], 1};
            }
            chunks += n;
            assert_int_equal(
                storage_hash_chunks(s, steps, n, chunk, on_step_released, c, on_steps, c), 0);
            assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
            assert_int_equal(c->calls, r + 1);
            /* written three to a job: one callback per chunk */
            struct ctx *wc = ctx_new();
            for (unsigned i = 0; i < n; i += 3) {
                struct storage_chunk ch[3];
                unsigned m = n - i < 3 ? n - i : 3;
                for (unsigned k = 0; k < m; k++)
                    ch[k] = (struct storage_chunk){steps[i + k].piece, steps[i + k].off,
                                                   steps[i + k].len, steps[i + k].data};
                assert_int_equal(
                    storage_write_chunks(s, ch, m, false, on_step_released, c, on_done, wc), 0);
            }
            assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
            /* jobs finish in any order, each job's chunks together and in order */
            assert_int_equal(wc->total, n);
            for (unsigned i = 0; i < n; i += 3) {
                unsigned at = 0;
                while (at < n && wc->seq[at] != steps[i].piece)
                    at++;
                for (unsigned k = 0; k < 3 && i + k < n; k++) {
                    assert_true(at + k < n);
                    assert_int_equal(wc->seq[at + k], steps[i + k].piece);
                    assert_int_equal(wc->seq_rc[at + k], 0);
                }
            }
            free(wc);
        }
        for (uint32_t p = 0; p < 9; p++)
            assert_int_equal(c->verdict[p], p == 2 ? RV_EHASH : 0);
        assert_int_equal(c->released, chunks);
        assert_int_equal(st.hash_bytes, t.size);
        /* eight full chunks a row: side by side wherever eight gain */
        unsigned min = sha1x_min_messages();
        assert_int_equal(st.hash_lane_bytes, lanes && min > 0 && min <= 8 ? 8u << 20 : 0);
        /* Written before verified: every piece is on disk, piece 2 as it came. */
        struct ctx *cc = ctx_new();
        for (uint32_t p = 0; p < 9; p++)
            assert_int_equal(check_one(&loop, s, p, cc), p == 2 ? RV_EHASH : 0);
        free(cc);

        /* Bad input: none, too many, an offset not a multiple of 64, past the piece. */
        struct storage_step bad = {0, 0, chunk, piece_data(&t, 0), &mid[0], 1};
        struct storage_step many[STORAGE_STEPS_MAX + 1];
        for (unsigned i = 0; i <= STORAGE_STEPS_MAX; i++)
            many[i] = bad;
        assert_int_equal(storage_hash_chunks(s, &bad, 0, chunk, on_step_released, c, on_steps, c),
                         RV_EINVAL);
        assert_int_equal(storage_hash_chunks(s, many, STORAGE_STEPS_MAX + 1, chunk,
                                             on_step_released, c, on_steps, c),
                         RV_EINVAL);
        bad.len = chunk - 100; /* short, and not the end of the piece */
        assert_int_equal(storage_hash_chunks(s, &bad, 1, chunk, on_step_released, c, on_steps, c),
                         RV_EINVAL);
        bad.len = chunk;
        bad.off = chunk; /* mid is at 0 */
        sha1_mid_init(&mid[0]);
        assert_int_equal(storage_hash_chunks(s, &bad, 1, chunk, on_step_released, c, on_steps, c),
                         RV_EINVAL);
        bad.off = 100;
        assert_int_equal(storage_hash_chunks(s, &bad, 1, chunk, on_step_released, c, on_steps, c),
                         RV_EINVAL);
        bad.off = (1u << 20) - 4096;
        assert_int_equal(storage_hash_chunks(s, &bad, 1, chunk, on_step_released, c, on_steps, c),
                         RV_EINVAL);
        /* ...and for writes: none, too many, past the piece (the last one is 777 bytes), no
         * data, no piece 9 */
        struct storage_chunk wbad[STORAGE_CHUNKS_MAX + 1];
        for (unsigned i = 0; i <= STORAGE_CHUNKS_MAX; i++)
            wbad[i] = (struct storage_chunk){0, 0, chunk, piece_data(&t, 0)};
        struct ctx *wc = ctx_new();
        assert_int_equal(storage_write_chunks(s, wbad, 0, false, on_step_released, c, on_done, wc),
                         RV_EINVAL);
        assert_int_equal(storage_write_chunks(s, wbad, STORAGE_CHUNKS_MAX + 1, false,
                                              on_step_released, c, on_done, wc),
                         RV_EINVAL);
        wbad[1] = (struct storage_chunk){8, 512, 300, piece_data(&t, 8)};
        assert_int_equal(storage_write_chunks(s, wbad, 2, false, on_step_released, c, on_done, wc),
                         RV_EINVAL);
        wbad[1] = (struct storage_chunk){7, 0, chunk, NULL};
        assert_int_equal(storage_write_chunks(s, wbad, 2, false, on_step_released, c, on_done, wc),
                         RV_EINVAL);
        wbad[1] = (struct storage_chunk){9, 0, 1, piece_data(&t, 0)};
        assert_int_equal(storage_write_chunks(s, wbad, 2, false, on_step_released, c, on_done, wc),
                         RV_EINVAL);
        assert_int_equal(wc->total, 0);
        free(wc);
        assert_int_equal(storage_pending(s), 0);
        close_storage(&loop, s);
        free(c);
        tt_free(&t);
        assert_int_equal(uv_loop_close(&loop), 0);
    }
    sha1x_enable(true);
}

/* verify + write of 256 MiB in 1 MiB pieces, 4 in flight, into the page cache. Printed, not
 * asserted: the number depends on the machine. RV_STORAGE_BENCH_MIB changes the size (0:
 * skip). */
static void test_throughput(void **state)
{
    (void)state;
    const char *env = getenv("RV_STORAGE_BENCH_MIB");
    uint64_t mib = env != NULL ? strtoull(env, NULL, 10) : 256;
    if (mib == 0) {
        skip();
        return;
    }
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tt t;
    tt_build(&t, "bench.bin", 1u << 20, NULL, 0, mib << 20, 77);
    struct storage *s = open_storage(&loop, &t, 0);
    struct bench b = {.t = &t, .s = s};
    uint64_t t0 = uv_hrtime();
    for (int i = 0; i < 4 && b.next < t.ti->piece_count; i++) {
        uint32_t p = b.next++;
        assert_int_equal(storage_verify_and_write(s, p, piece_data(&t, p),
                                                  layout_piece_size(&t.l, p), bench_done, &b),
                         0);
    }
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    uint64_t t1 = uv_hrtime();
    assert_int_equal(b.failed, 0);
    assert_int_equal(b.done, t.ti->piece_count);
    close_storage(&loop, s); /* includes the fsync of everything written */
    uint64_t t2 = uv_hrtime();
    double secs = (double)(t1 - t0) / 1e9;
    printf("[ BENCH    ] verify+write %llu MiB, 1 MiB pieces, 4 in flight: %.2f s, %.0f MiB/s "
           "(close with fsync: %.2f s)\n",
           (unsigned long long)mib, secs, (double)mib / secs, (double)(t2 - t1) / 1e9);
    assert_files_match(&t);
    assert_int_equal(uv_loop_close(&loop), 0);
    tt_free(&t);
}

/* storage_check_run over stretches of pieces, checked against storage_check piece by piece:
 * whole data; then a flipped byte, a file cut short and a file deleted. 37 pieces: the first
 * two stretches of sixteen go through sha1x's lanes where the CPU has them; the test runs once
 * more with the lanes off. */
static void check_run(uv_loop_t *loop, struct storage *s, uint32_t first, uint32_t n, struct ctx *c)
{
    memset(c->calls, 0, sizeof(c->calls));
    assert_int_equal(storage_check_run(s, first, n, on_done, c), 0);
    assert_int_equal(storage_pending(s), 1); /* one job for the stretch */
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(c->calls[first + i], 1);
}

static void check_runs_match(uv_loop_t *loop, struct storage *s, uint32_t count, const char *want)
{
    struct ctx *c = ctx_new(), *one = ctx_new();
    for (uint32_t first = 0; first < count; first += STORAGE_RUN_MAX) {
        uint32_t n = count - first < STORAGE_RUN_MAX ? count - first : STORAGE_RUN_MAX;
        check_run(loop, s, first, n, c);
    }
    for (uint32_t p = 0; p < count; p++) {
        int rc = check_one(loop, s, p, one);
        if (c->rc[p] != rc || (want[p] == '1') != (rc == 0))
            print_error("piece %u: run %d (%s), alone %d (%s), want %c\n", p, c->rc[p], c->msg[p],
                        rc, one->msg[p], want[p]);
        assert_int_equal(c->rc[p], rc);
        assert_int_equal(rc == 0, want[p] == '1');
    }
    free(c);
    free(one);
}

static void test_check_runs(void **state)
{
    (void)state;
    static const struct tfile files[] = {{"x.bin", 20 * 16384 + 5000, false},
                                         {".pad/11384", 11384, true},
                                         {"y.bin", 12 * 16384 + 777, false},
                                         {"z.bin", 3 * 16384, false}};
    for (int lanes = 1; lanes >= 0; lanes--) {
        if (lanes && !sha1x_usable())
            continue;
        sha1x_enable(lanes == 1);
        uv_loop_t loop;
        assert_int_equal(uv_loop_init(&loop), 0);
        struct tt t;
        tt_build(&t, "runs", PL, files, 4, 0, 77);
        assert_int_equal(t.ti->piece_count, 37);
        struct storage *s = open_storage(&loop, &t, 0);
        write_all(&loop, s, &t, 5);
        check_runs_match(&loop, s, 37, "1111111111111111111111111111111111111");

        char *x = join(t.dl, "runs/x.bin"), *y = join(t.dl, "runs/y.bin");
        char *z = join(t.dl, "runs/z.bin");
        int fd = open(x, O_WRONLY);
        assert_true(fd >= 0);
        uint8_t b = (uint8_t)(t.payload[3 * PL + 10] ^ 0x40);
        assert_int_equal(pwrite(fd, &b, 1, 3 * PL + 10), 1);
        close(fd);
        assert_int_equal(truncate(y, 5 * PL + 100), 0); /* y.bin starts piece 21 */
        close_storage(&loop, s); /* a cached handle would still read z.bin once unlinked */
        assert_int_equal(unlink(z), 0);
        s = open_storage(&loop, &t, 0);
        check_runs_match(&loop, s, 37, "1110111111111111111111111100000000000");

        struct ctx *c = ctx_new();
        assert_int_equal(storage_check_run(s, 0, 0, on_done, c), RV_EINVAL);
        assert_int_equal(storage_check_run(s, 0, STORAGE_RUN_MAX + 1, on_done, c), RV_EINVAL);
        assert_int_equal(storage_check_run(s, 36, 2, on_done, c), RV_EINVAL);
        assert_int_equal(storage_check_run(s, 37, 1, on_done, c), RV_EINVAL);
        assert_int_equal(storage_pending(s), 0);
        free(c);
        free(x);
        free(y);
        free(z);
        close_storage(&loop, s);
        assert_int_equal(uv_loop_close(&loop), 0);
        tt_free(&t);
    }
    sha1x_enable(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_file),
        cmocka_unit_test(test_space_reserved),
        cmocka_unit_test(test_multi_file),
        cmocka_unit_test(test_hash_mismatch),
        cmocka_unit_test(test_check_states),
        cmocka_unit_test(test_read_blocks),
        cmocka_unit_test(test_symlink_outside),
        cmocka_unit_test(test_unsafe_components),
        cmocka_unit_test(test_not_a_folder),
        cmocka_unit_test(test_readonly_folder),
        cmocka_unit_test(test_write_error),
        cmocka_unit_test(test_close_in_flight),
        cmocka_unit_test(test_max_open),
        cmocka_unit_test(test_direct_writes),
        cmocka_unit_test(test_direct_overflow),
        cmocka_unit_test(test_write_runs),
        cmocka_unit_test(test_check_runs),
        cmocka_unit_test(test_throughput),
        cmocka_unit_test(test_hash_chunks),
        cmocka_unit_test(test_write_chunks_merged),
        cmocka_unit_test(test_write_chunks_hurry),
        cmocka_unit_test(test_write_chunks_together),
        cmocka_unit_test(test_write_chunks_answers),
        cmocka_unit_test(test_write_chunks_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
