/* Unit tests for src/util: buf, hex, sha, fs, err. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/copy.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/hex.h"
#include "util/rcbuf.h"
#include "util/team.h"
#include "util/sha.h"
#include "util/text.h"

static void buf_grows_and_steals(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(buf_append(&b, "abc", 3), 0);
    assert_int_equal(b.len, 3000);
    assert_int_equal(buf_printf(&b, "%d-%s", 42, "x"), 0);
    assert_memory_equal(b.data + 3000, "42-x", 4);
    size_t len;
    uint8_t *p = buf_steal(&b, &len);
    assert_int_equal(len, 3004);
    assert_null(b.data);
    free(p);
    buf_free(&b);
}

static void buf_respects_max(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 10);
    assert_int_equal(buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(buf_append_byte(&b, 'x'), RV_ETOOBIG);
    assert_int_equal(b.len, 10);
    assert_int_equal(buf_reserve(&b, SIZE_MAX), RV_ETOOBIG);
    buf_free(&b);
}

static void buf_printf_long(void **state)
{
    (void)state;
    struct buf b;
    char big[1000];
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    buf_init(&b, 0);
    assert_int_equal(buf_printf(&b, "<%s>", big), 0);
    assert_int_equal(b.len, 1001);
    assert_int_equal(b.data[0], '<');
    assert_int_equal(b.data[1000], '>');
    buf_free(&b);
}

static void hex_round_trip(void **state)
{
    (void)state;
    uint8_t in[4] = {0x00, 0xab, 0x7f, 0xff}, out[4];
    char s[9];
    hex_encode(in, 4, s);
    assert_string_equal(s, "00ab7fff");
    assert_int_equal(hex_decode("00AB7fFF", 8, out, 4), 0);
    assert_memory_equal(in, out, 4);
    assert_int_equal(hex_decode("00ab7ff", 7, out, 4), -1);
    assert_int_equal(hex_decode("00ab7fgg", 8, out, 4), -1);
}

static void sha_known_vectors(void **state)
{
    (void)state;
    uint8_t d[32];
    char s[65];
    sha1("abc", 3, d);
    hex_encode(d, 20, s);
    assert_string_equal(s, "a9993e364706816aba3e25717850c26c9cd0d89d");
    sha256("abc", 3, d);
    hex_encode(d, 32, s);
    assert_string_equal(s, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    struct sha1_ctx c;
    assert_int_equal(sha1_init(&c), 0);
    sha1_update(&c, "a", 1);
    sha1_update(&c, "bc", 2);
    sha1_final(&c, d);
    hex_encode(d, 20, s);
    assert_string_equal(s, "a9993e364706816aba3e25717850c26c9cd0d89d");
}

static void fs_atomic_write_and_read(void **state)
{
    (void)state;
    char dir[] = "/tmp/rv-util-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/out.bin", dir);
    rv_error_t err;
    assert_int_equal(fs_write_atomic(path, "hello", 5, &err), 0);
    assert_int_equal(fs_write_atomic(path, "world!", 6, &err), 0);
    uint8_t *data;
    size_t len;
    assert_int_equal(fs_read_file(path, 100, &data, &len, &err), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(data, "world!", 6);
    free(data);
    /* Over the cap: refused with the size in the message. */
    assert_int_equal(fs_read_file(path, 3, &data, &len, &err), RV_ETOOBIG);
    assert_non_null(strstr(err.msg, "over the limit"));
    unlink(path);
    /* Missing file: RV_EIO naming the path and errno. */
    assert_int_equal(fs_read_file(path, 100, &data, &len, &err), RV_EIO);
    assert_non_null(strstr(err.msg, "out.bin"));
    assert_int_not_equal(err.sys_errno, 0);
    /* A folder is not a torrent file. */
    assert_int_equal(fs_read_file(dir, 100, &data, &len, &err), RV_EIO);
    /* No temporary file is left behind after a failed write into a missing folder. */
    snprintf(path, sizeof(path), "%s/missing/out.bin", dir);
    assert_int_equal(fs_write_atomic(path, "x", 1, &err), RV_EIO);
    rmdir(dir);
}

static void fs_read_buffer_is_page_aligned(void **state)
{
    (void)state;
    /* malloc's large blocks start 16 bytes past a page: the copy into those is the slow one */
    size_t sizes[] = {0, 100, 1u << 20};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *p = fs_read_buffer(sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 4096, 0);
        if (sizes[i] > 0)
            memset(p, 0xab, sizes[i]); /* all of it is ours (ASan checks) */
        free(p);
    }
}

static void copy_block_copies_any_length_and_offset(void **state)
{
    (void)state;
    static uint8_t src[20000], dst[20100], want[20100];
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (uint8_t)(i * 7 + 3);
    /* around 256 bytes (the vector path) and the 16-byte boundaries its stores start at */
    size_t lens[] = {0, 1, 63, 64, 65, 127, 255, 256, 257, 319, 16384, 16384 + 13, 19990};
    size_t offs[] = {0, 1, 8, 13, 15, 16, 57, 64};
    size_t froms[] = {0, 3};
    for (size_t a = 0; a < sizeof(lens) / sizeof(lens[0]); a++) {
        for (size_t b = 0; b < sizeof(offs) / sizeof(offs[0]); b++) {
            for (size_t c = 0; c < sizeof(froms) / sizeof(froms[0]); c++) {
                size_t n = lens[a], o = offs[b], f = froms[c];
                memset(dst, 0xee, sizeof(dst));
                memset(want, 0xee, sizeof(want));
                memcpy(want + o, src + f, n);
                copy_block(dst + o, src + f, n);
                /* the bytes, and nothing either side of them */
                assert_memory_equal(dst, want, sizeof(dst));
            }
        }
    }
}

static void err_format_names_offset(void **state)
{
    (void)state;
    rv_error_t err;
    char line[300];
    err_set_at(&err, RV_EBENCODE, 17, "string length %d runs past the end", 99);
    rv_error_format(&err, line, sizeof(line));
    assert_string_equal(line, "malformed bencode at byte 17: string length 99 runs past the end");
    err_set(&err, RV_EIO, "cannot open x");
    rv_error_format(&err, line, sizeof(line));
    assert_string_equal(line, "input/output error: cannot open x");
    assert_string_equal(rv_strerror(RV_EPATH), "unsafe file path");
    assert_string_equal(rv_strerror(12345), "unknown error");
    assert_int_equal(err_set(NULL, RV_EINVAL, "ignored"), RV_EINVAL);
}

/* Outside text shown on a terminal: controls and broken UTF-8 become '?', good UTF-8 stays. */
static void text_printable_cleans(void **state)
{
    (void)state;
    char out[64];
    /* ESC, BEL, CR, LF, a C1 control (U+009B, CSI) and DEL */
    const char bad[] = "a\x1b[2J\x07\r\nb\xc2\x9b\x7f";
    assert_int_equal(text_printable((const uint8_t *)bad, sizeof(bad) - 1, out, sizeof(out)), 12);
    assert_string_equal(out, "a?[2J???b???");
    /* UTF-8 kept; overlong '/', a surrogate, a truncated sequence and 0xff are not */
    const char mixed[] = "\xc3\xa9\xe2\x82\xac|\xc0\xaf|\xed\xa0\x80|\xe2\x82";
    text_printable((const uint8_t *)mixed, sizeof(mixed) - 1, out, sizeof(out));
    assert_string_equal(out, "\xc3\xa9\xe2\x82\xac|??|???|??");
    /* a NUL inside is a byte like any other; rv_printable stops at it (C strings) */
    assert_int_equal(text_printable((const uint8_t *)"x\0y", 3, out, sizeof(out)), 3);
    assert_string_equal(out, "x?y");
    rv_printable("x\0y", 3, out, sizeof(out));
    assert_string_equal(out, "x");
    /* too long: cut with "...", never past cap */
    char big[100];
    memset(big, 'z', sizeof(big));
    assert_int_equal(text_printable((const uint8_t *)big, sizeof(big), out, 16), 15);
    assert_string_equal(out, "zzzzzzzzzzzz...");
    assert_int_equal(rv_printable("abc", 3, out, 2), 0);
    assert_string_equal(out, "");
}

/* A shared buffer lives until its last reference goes (ASan reports a leak or a double free). */
static void rcbuf_counts_references(void **state)
{
    (void)state;
    struct rcbuf *b = rcbuf_new(100);
    assert_non_null(b);
    assert_int_equal(b->refs, 1);
    assert_int_equal(b->size, 100);
    assert_false(rcbuf_shared(b));
    memset(b->data, 0xab, b->size);
    assert_ptr_equal(rcbuf_ref(b), b);
    assert_true(rcbuf_shared(b));
    rcbuf_unref(b);
    assert_int_equal(b->refs, 1);
    assert_int_equal(b->data[99], 0xab);
    rcbuf_unref(b);
    rcbuf_unref(NULL);
    assert_null(rcbuf_new(SIZE_MAX)); /* the header would not fit */
}

/* ---- team: workers started together, waited for with ticks ---- */

struct team_arg {
    atomic_uint *sum;
    unsigned id;
    unsigned seen; /* written by its worker only */
    unsigned sleep_ms;
};

static void team_work(void *p)
{
    struct team_arg *a = p;
    struct timespec ts = {0, (long)a->sleep_ms * 1000000L};
    nanosleep(&ts, NULL);
    a->seen = a->id + 100;
    atomic_fetch_add(a->sum, a->id);
}

static void team_tick(void *ud)
{
    (*(unsigned *)ud)++;
}

/* Each worker runs once with its own argument; the calling thread ticks while they run (a
 * worker that sleeps 200 ms with ticks every 5 ms: several, even on a loaded machine). */
static void team_runs_each_worker_once(void **state)
{
    (void)state;
    atomic_uint sum;
    atomic_init(&sum, 0);
    atomic_bool stop;
    atomic_init(&stop, false);
    struct team_arg a[5];
    for (unsigned i = 0; i < 5; i++)
        a[i] = (struct team_arg){&sum, i + 1, 0, i == 4 ? 200 : 0};
    unsigned ticks = 0;
    struct team_opts o = {.threads = 5, .work = team_work, .args = a, .stride = sizeof(a[0]),
                          .stop = &stop, .tick_ns = 5000000L, .tick = team_tick, .ud = &ticks};
    rv_error_t err;
    assert_int_equal(team_run(&o, &err), 0);
    assert_int_equal(atomic_load(&sum), 1 + 2 + 3 + 4 + 5);
    for (unsigned i = 0; i < 5; i++)
        assert_int_equal(a[i].seen, i + 101);
    assert_true(ticks >= 3);
    assert_false(atomic_load(&stop));

    assert_int_equal(team_size(3, 1000), 3);
    assert_int_equal(team_size(300, 1000), 256);
    assert_int_equal(team_size(8, 5), 5);
    assert_int_equal(team_size(8, 0), 1);
    assert_true(team_size(0, 1000) >= 1); /* one per online CPU */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_grows_and_steals),   cmocka_unit_test(buf_respects_max),
        cmocka_unit_test(buf_printf_long),        cmocka_unit_test(hex_round_trip),
        cmocka_unit_test(rcbuf_counts_references),
        cmocka_unit_test(team_runs_each_worker_once),
        cmocka_unit_test(sha_known_vectors),      cmocka_unit_test(fs_atomic_write_and_read),
        cmocka_unit_test(fs_read_buffer_is_page_aligned),
        cmocka_unit_test(copy_block_copies_any_length_and_offset),
        cmocka_unit_test(err_format_names_offset), cmocka_unit_test(text_printable_cleans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
