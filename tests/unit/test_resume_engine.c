/* Resume data end to end: storage_sync (callbacks, one at a time, refused once closing, a
 * failure kept for the next sync), and the engine (session + torrent) over a payload already on
 * disk: the first start hashes every piece and writes the resume file; the next trusts it and
 * hashes nothing; a file touched behind our back gets only its pieces hashed; a changed byte is
 * found and the resume file then claims only what passed; a corrupt resume file is reported and
 * everything is hashed; no_resume neither reads nor writes it. Everything lives in one mkdtemp
 * folder (state_dir included), removed at the end. */
/* cmocka.h needs these first */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "metainfo/layout.h"
#include "rivulet/rivulet.h"
#include "storage/storage.h"

#define PL 16384u
#define A_LEN 100000u
#define B_LEN 60000u
#define NPIECES 10u /* (A_LEN + B_LEN) / PL rounded up; b.bin covers pieces 6..9 */

struct fx {
    char root[64];
    char pl[128], a[160], b[160], state[128];
    uint8_t *torrent;
    size_t torrent_len;
};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void fill(const char *path, size_t n, unsigned seed)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++)
        fputc((int)((i * 31 + seed) & 0xff), f);
    assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    snprintf(f->root, sizeof(f->root), "/tmp/rv-resume-engine-XXXXXX");
    if (mkdtemp(f->root) == NULL)
        return -1;
    snprintf(f->pl, sizeof(f->pl), "%s/pl", f->root);
    snprintf(f->a, sizeof(f->a), "%s/a.bin", f->pl);
    snprintf(f->b, sizeof(f->b), "%s/b.bin", f->pl);
    snprintf(f->state, sizeof(f->state), "%s/state", f->root);
    if (mkdir(f->pl, 0755) != 0)
        return -1;
    fill(f->a, A_LEN, 1);
    fill(f->b, B_LEN, 2);
    rv_create_opts_t o = {.path = f->pl, .piece_length = PL, .creation_date = -1};
    rv_error_t err;
    if (rv_create(&o, &f->torrent, &f->torrent_len, &err) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f->torrent);
    free(f);
    return 0;
}

static rv_torrent_info_t *parse(const struct fx *f)
{
    rv_torrent_info_t *ti;
    rv_error_t err;
    assert_int_equal(rv_torrent_parse(f->torrent, f->torrent_len, 0, &ti, &err), 0);
    return ti;
}

/* ---- storage_sync ---- */

struct sync_state {
    int calls, rc;
    int writes;
};

static void on_sync(void *ud, uint32_t piece, int rc, const rv_error_t *err)
{
    (void)piece;
    (void)err;
    struct sync_state *s = ud;
    s->calls++;
    s->rc = rc;
}

static void on_write(void *ud, uint32_t piece, int rc, const rv_error_t *err)
{
    (void)piece;
    (void)err;
    struct sync_state *s = ud;
    assert_int_equal(rc, 0);
    s->writes++;
}

static void on_closed(void *ud)
{
    *(bool *)ud = true;
}

static uint8_t *read_all(const char *path, size_t n)
{
    uint8_t *p = malloc(n);
    assert_non_null(p);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fread(p, 1, n, fp), n);
    fclose(fp);
    return p;
}

static void sync_covers_writes_one_at_a_time(void **state)
{
    struct fx *f = *state;
    rv_torrent_info_t *ti = parse(f);
    struct layout l;
    assert_int_equal(layout_from_torrent(&l, ti), 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    char dl[160];
    snprintf(dl, sizeof(dl), "%s/dl", f->root);
    /* one handle for two files: a.bin's is closed when b.bin is written */
    struct storage_opts so = {.dir = dl, .max_open = 1};
    struct storage *st;
    rv_error_t err;
    assert_int_equal(storage_new(&loop, ti, &l, &so, &st, &err), 0);

    /* nothing written: a sync has nothing to do and says so */
    struct sync_state s = {0};
    assert_int_equal(storage_sync(st, on_sync, &s), 0);
    assert_int_equal(storage_sync(st, on_sync, &s), RV_EFULL); /* one at a time */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.rc, 0);

    /* every piece written, then synced */
    uint8_t *a = read_all(f->a, A_LEN), *b = read_all(f->b, B_LEN);
    uint8_t *space = malloc(NPIECES * PL);
    assert_non_null(space);
    memset(space, 0, NPIECES * PL);
    memcpy(space, a, A_LEN);
    memcpy(space + A_LEN, b, B_LEN);
    for (uint32_t i = 0; i < NPIECES; i++)
        assert_int_equal(storage_verify_and_write(st, i, space + (size_t)i * PL,
                                                  layout_piece_size(&l, i), on_write, &s),
                         0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(s.writes, (int)NPIECES);
    assert_int_equal(storage_sync(st, on_sync, &s), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(s.calls, 2);
    assert_int_equal(s.rc, 0);

    /* a file written and then removed behind our back: the sync fails, and keeps failing
     * (its mark stays) until the file is there again */
    assert_int_equal(storage_verify_and_write(st, 0, space, PL, on_write, &s), 0);
    uv_run(&loop, UV_RUN_DEFAULT); /* a.bin first, so b.bin's write evicts its handle */
    assert_int_equal(
        storage_verify_and_write(st, 9, space + 9 * PL, layout_piece_size(&l, 9), on_write, &s), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    char a_dl[200];
    snprintf(a_dl, sizeof(a_dl), "%s/pl/a.bin", dl);
    char a_aside[200];
    snprintf(a_aside, sizeof(a_aside), "%s/a.aside", f->root);
    assert_int_equal(rename(a_dl, a_aside), 0);
    assert_int_equal(storage_sync(st, on_sync, &s), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(s.calls, 3);
    assert_int_equal(s.rc, RV_EIO);
    assert_int_equal(storage_sync(st, on_sync, &s), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(s.calls, 4);
    assert_int_equal(s.rc, RV_EIO);
    assert_int_equal(rename(a_aside, a_dl), 0);
    assert_int_equal(storage_sync(st, on_sync, &s), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(s.calls, 5);
    assert_int_equal(s.rc, 0);

    /* the downloaded files are the payload */
    uint8_t *a2 = read_all(a_dl, A_LEN);
    assert_memory_equal(a, a2, A_LEN);

    /* once closing: refused */
    bool closed = false;
    storage_close(st, on_closed, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(closed);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(a);
    free(a2);
    free(b);
    free(space);
    rv_torrent_info_free(ti);
}

static void sync_refused_while_closing(void **state)
{
    struct fx *f = *state;
    rv_torrent_info_t *ti = parse(f);
    struct layout l;
    assert_int_equal(layout_from_torrent(&l, ti), 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    char dl[160];
    snprintf(dl, sizeof(dl), "%s/dl2", f->root);
    struct storage_opts so = {.dir = dl};
    struct storage *st;
    rv_error_t err;
    assert_int_equal(storage_new(&loop, ti, &l, &so, &st, &err), 0);
    struct sync_state s = {0};
    assert_int_equal(storage_sync(st, on_sync, &s), 0);
    bool closed = false;
    storage_close(st, on_closed, &closed); /* the sync in flight is not called back */
    assert_int_equal(storage_sync(st, on_sync, &s), RV_ECANCELED);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(closed);
    assert_int_equal(s.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    rv_torrent_info_free(ti);
}

/* ---- the engine ---- */

struct run {
    rv_session_t *s;
    int checked;      /* pieces hashed, from RV_EVENT_CHECKED; -1: no such event */
    int resume_loads; /* RV_EVENT_RESUME with code 0 naming a load */
    int resume_saves;
    int resume_errors;
    bool stop_on_checked;
    rv_torrent_status_t st;
};

static void on_event(void *ud, const rv_event_t *ev)
{
    struct run *r = ud;
    if (ev->type == RV_EVENT_CHECKED) {
        r->checked = (int)ev->piece;
        if (r->stop_on_checked)
            rv_session_stop(r->s);
    } else if (ev->type == RV_EVENT_RESUME) {
        if (ev->code != 0)
            r->resume_errors++;
        else if (strstr(ev->message, "saved") != NULL)
            r->resume_saves++;
        else
            r->resume_loads++;
    } else if (ev->type == RV_EVENT_STOPPED) {
        rv_torrent_status(ev->torrent, &r->st);
    }
}

static struct run run_once(const struct fx *f, bool no_resume, bool stop_on_checked)
{
    struct run r = {.checked = -1, .stop_on_checked = stop_on_checked};
    rv_session_opts_t so = {.no_listen = true, .on_event = on_event, .event_ud = &r};
    assert_int_equal(rv_session_new(NULL, &so, &r.s), 0);
    /* no peer anywhere: only what is on disk counts */
    rv_add_opts_t ao = {
        .save_dir = f->root, .no_trackers = true, .state_dir = f->state, .no_resume = no_resume};
    rv_torrent_t *t;
    rv_error_t err;
    assert_int_equal(rv_session_add_info(r.s, parse(f), &ao, &t, &err), 0);
    assert_int_equal(rv_session_run(r.s), 0);
    rv_session_free(r.s);
    return r;
}

/* The one file in the state folder. */
static void resume_file(const struct fx *f, char *out, size_t n)
{
    DIR *d = opendir(f->state);
    assert_non_null(d);
    struct dirent *de;
    out[0] = '\0';
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".resume") != NULL)
            snprintf(out, n, "%s/%s", f->state, de->d_name);
    closedir(d);
    assert_true(out[0] != '\0');
}

static void touch_later(const char *path)
{
    struct timespec ts[2] = {{.tv_sec = 1000000000, .tv_nsec = 0},
                             {.tv_sec = 1000000000, .tv_nsec = 0}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void engine_trusts_resume_data_and_rechecks_changed_files(void **state)
{
    struct fx *f = *state;

    /* first start: everything hashed, the resume file written */
    struct run r = run_once(f, false, false);
    assert_int_equal(r.checked, (int)NPIECES);
    assert_int_equal(r.resume_loads, 0);
    assert_int_equal(r.resume_errors, 0);
    assert_true(r.resume_saves >= 1);
    assert_int_equal(r.st.pieces_have, NPIECES);
    char rf[512];
    resume_file(f, rf, sizeof(rf));

    /* files as they were: nothing hashed */
    r = run_once(f, false, false);
    assert_int_equal(r.resume_loads, 1);
    assert_int_equal(r.checked, 0);
    assert_int_equal(r.st.pieces_have, NPIECES);

    /* b.bin touched: only its pieces (6..9) are hashed, and pass */
    touch_later(f->b);
    r = run_once(f, false, false);
    assert_int_equal(r.checked, 4);
    assert_int_equal(r.st.pieces_have, NPIECES);
    /* ... and the new times were recorded */
    r = run_once(f, false, false);
    assert_int_equal(r.checked, 0);

    /* no_resume: everything hashed, the resume file left alone */
    struct stat before, after;
    assert_int_equal(stat(rf, &before), 0);
    r = run_once(f, true, false);
    assert_int_equal(r.checked, (int)NPIECES);
    assert_int_equal(r.resume_loads + r.resume_saves + r.resume_errors, 0);
    assert_int_equal(stat(rf, &after), 0);
    assert_true(before.st_mtim.tv_sec == after.st_mtim.tv_sec &&
                before.st_mtim.tv_nsec == after.st_mtim.tv_nsec);

    /* a corrupt resume file: reported, everything hashed, then rewritten */
    FILE *fp = fopen(rf, "wb");
    assert_non_null(fp);
    fputs("d7:garbage", fp);
    fclose(fp);
    r = run_once(f, false, false);
    assert_int_equal(r.resume_errors, 1);
    assert_int_equal(r.checked, (int)NPIECES);
    r = run_once(f, false, false);
    assert_int_equal(r.resume_errors, 0);
    assert_int_equal(r.checked, 0);

    /* the last byte of b.bin changed: its pieces hashed, piece 9 fails; with no peer the
     * download cannot go on, so stop once checked. The resume file then claims 9 pieces. */
    int fd = open(f->b, O_WRONLY);
    assert_true(fd >= 0);
    uint8_t x = 0x5a;
    assert_int_equal(pwrite(fd, &x, 1, B_LEN - 1), 1);
    close(fd);
    r = run_once(f, false, true);
    assert_int_equal(r.checked, 4);
    assert_int_equal(r.st.pieces_have, NPIECES - 1);
    r = run_once(f, false, true);
    assert_int_equal(r.checked, 0);
    assert_int_equal(r.st.pieces_have, NPIECES - 1);
}

int main(void)
{
    /* As session.h asks of programs using the library: a peer or server that hangs up while
     * we write is an error on that connection (EPIPE), not the end of this process. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(sync_covers_writes_one_at_a_time, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_refused_while_closing, setup, teardown),
        cmocka_unit_test_setup_teardown(engine_trusts_resume_data_and_rechecks_changed_files, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
