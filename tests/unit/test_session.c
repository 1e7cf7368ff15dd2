/* Unit tests for the session API around the engine: its own thread, stopping from another
 * thread, status copies for other threads, and errors when adding torrents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "rivulet/rivulet.h"

struct fixture {
    char dir[64];
    char payload[128];
    char out[128];
    uint8_t *torrent;
    size_t torrent_len;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/rv-session-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->payload, sizeof(f->payload), "%s/payload.bin", f->dir);
    snprintf(f->out, sizeof(f->out), "%s/out", f->dir);
    FILE *fp = fopen(f->payload, "wb");
    for (int i = 0; i < 100000; i++)
        fputc(i * 7 & 0xff, fp);
    fclose(fp);
    rv_create_opts_t o = {.path = f->payload, .piece_length = 16384, .creation_date = -1};
    rv_error_t err;
    if (rv_create(&o, &f->torrent, &f->torrent_len, &err) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f->torrent);
    free(f);
    return 0;
}

static rv_torrent_info_t *parse(struct fixture *f)
{
    rv_torrent_info_t *ti;
    rv_error_t err;
    assert_int_equal(rv_torrent_parse(f->torrent, f->torrent_len, 0, &ti, &err), 0);
    return ti;
}

/* A closed port on loopback: the torrent waits for peers that never come. */
static const char *const no_peer[] = {"127.0.0.1:1"};

static void runs_on_its_own_thread_and_stops_from_another(void **state)
{
    struct fixture *f = *state;
    rv_session_t *s;
    rv_torrent_t *t;
    rv_error_t err;
    assert_int_equal(rv_session_new(NULL, NULL, &s), 0);
    rv_add_opts_t ao = {.save_dir = f->out, .peers = no_peer, .peer_count = 1, .no_trackers = true};
    assert_int_equal(rv_session_add_info(s, parse(f), &ao, &t, &err), 0);
    assert_int_equal(rv_session_start_thread(s), 0);
    assert_int_equal(rv_session_start_thread(s), RV_EINVAL); /* once */

    rv_torrent_status_t st;
    rv_torrent_status(t, &st); /* from this thread: the copy */
    assert_int_equal(st.state, RV_STATE_DOWNLOADING);
    assert_int_equal(st.pieces_total, 7);
    assert_int_equal(st.bytes_total, 100000);
    assert_int_equal(st.pieces_have, 0);

    usleep(50 * 1000);
    rv_session_stop(s); /* crosses threads through the loop's async handle */
    assert_int_equal(rv_session_wait(s), 0);
    rv_torrent_status(t, &st);
    assert_int_equal(st.state, RV_STATE_STOPPED);
    rv_session_free(s);
}

static void borrowed_loop_cannot_get_a_thread(void **state)
{
    struct fixture *f = *state;
    uv_loop_t loop;
    rv_session_t *s;
    rv_torrent_t *t;
    rv_error_t err;
    uv_loop_init(&loop);
    assert_int_equal(rv_session_new(&loop, NULL, &s), 0);
    assert_int_equal(rv_session_start_thread(s), RV_EINVAL);
    assert_int_equal(rv_session_wait(s), RV_EINVAL);
    rv_add_opts_t ao = {.save_dir = f->out, .peers = no_peer, .peer_count = 1, .no_trackers = true};
    assert_int_equal(rv_session_add_info(s, parse(f), &ao, &t, &err), 0);
    rv_session_stop(s); /* on the loop's thread: at once */
    assert_int_equal(rv_session_run(s), 0);
    rv_torrent_status_t st;
    rv_torrent_status(t, &st);
    assert_int_equal(st.state, RV_STATE_STOPPED);
    rv_session_free(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void add_errors_name_the_problem(void **state)
{
    struct fixture *f = *state;
    rv_session_t *s;
    rv_torrent_t *t;
    rv_error_t err;
    assert_int_equal(rv_session_new(NULL, NULL, &s), 0);
    rv_add_opts_t none = {0};
    assert_int_equal(rv_session_add_info(s, parse(f), &none, &t, &err), RV_EINVAL);
    assert_non_null(strstr(err.msg, "folder"));
    static const char *const bad_peer[] = {"not-an-address"};
    rv_add_opts_t ao = {.save_dir = f->out, .peers = bad_peer, .peer_count = 1};
    assert_int_equal(rv_session_add_info(s, parse(f), &ao, &t, &err), RV_EINVAL);
    assert_non_null(strstr(err.msg, "not-an-address"));
    assert_int_equal(rv_session_add(s, "/nonexistent.torrent", &ao, &t, &err), RV_EIO);
    rv_session_free(s);
}

int main(void)
{
    /* As session.h asks of programs using the library: a peer or server that hangs up while
     * we write is an error on that connection (EPIPE), not the end of this process. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(runs_on_its_own_thread_and_stops_from_another, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(borrowed_loop_cannot_get_a_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(add_errors_name_the_problem, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
