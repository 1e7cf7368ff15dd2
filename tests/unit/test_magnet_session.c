/* unit_magnet_session: magnet links in one process. One session seeds a torrent, another is
 * given only a magnet link with x.pe naming the first, on one loop. The metadata (BEP 9 over
 * BEP 10) and then the data (the same connection, BEP 6 have all) must arrive intact; the second
 * session also keeps the .torrent in its state folder, --metadata-only writes the same bytes,
 * and with no x.pe at all the two sessions find each other through a DHT node. Runs under ASan
 * in CI, which is the point: every new code path of the magnet download in one process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "rivulet/dht.h"
#include "rivulet/metainfo.h"
#include "rivulet/session.h"

struct run {
    rv_session_t *seeder, *leecher;
    rv_torrent_t *lt;
    bool finished, metadata;
    int error;
    uv_timer_t watchdog;
    bool timed_out;
};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void on_event(void *ud, const rv_event_t *ev)
{
    struct run *r = ud;
    if (ev->torrent != r->lt)
        return;
    if (ev->type == RV_EVENT_METADATA && ev->code == 0)
        r->metadata = true;
    if (ev->type == RV_EVENT_ERROR)
        r->error = ev->code;
    if (ev->type == RV_EVENT_FINISHED || ev->type == RV_EVENT_STOPPED) {
        r->finished = ev->type == RV_EVENT_FINISHED || r->finished;
        rv_session_stop(r->seeder);
    }
}

static void on_watchdog(uv_timer_t *t)
{
    struct run *r = t->data;
    r->timed_out = true;
    rv_session_stop(r->seeder);
    rv_session_stop(r->leecher);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(1 << 22);
    *len = fread(buf, 1, 1 << 22, f);
    fclose(f);
    return buf;
}

/* Seeds dir/seed/data.bin and fetches the magnet into dir/out (or only its .torrent); with
 * via_dht, the magnet has no x.pe and both sessions find each other through a third DHT node
 * on the same loop. */
static void magnet_run(const char *dir, bool metadata_only, bool via_dht)
{
    char path[800], tpath[256], out[256], state[256], saved[256];
    snprintf(path, sizeof(path), "%s/seed", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/seed/data.bin", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int i = 0; i < 700000; i++)
        fputc((int)(((unsigned)i * 7919u) >> 3 & 0xffu), f);
    fclose(f);
    snprintf(tpath, sizeof(tpath), "%s/t.torrent", dir);
    rv_error_t err;
    rv_create_opts_t co = {.path = path, .piece_length = 32768, .creation_date = -1};
    assert_int_equal(rv_create_file(&co, tpath, &err), 0);
    rv_torrent_info_t *ti;
    assert_int_equal(rv_torrent_load(tpath, 0, &ti, &err), 0);
    char hex[41];
    for (int i = 0; i < 20; i++)
        snprintf(hex + 2 * i, 3, "%02x", ti->info_hash[i]);

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct run r;
    memset(&r, 0, sizeof(r));
    rv_dht_t *node = NULL;
    char boot[64];
    const char *boots[1] = {boot};
    if (via_dht) {
        rv_dht_opts_t dopt = {.listen_addr = "127.0.0.1"};
        assert_int_equal(rv_dht_new(&loop, &dopt, &node, &err), 0);
        rv_dht_stats_t ds;
        rv_dht_stats(node, &ds);
        snprintf(boot, sizeof(boot), "127.0.0.1:%u", (unsigned)ds.port);
    }
    char cache[300];
    snprintf(cache, sizeof(cache), "%s/dht-a.dat", dir);
    rv_session_opts_t so = {.listen_addr = "127.0.0.1", .port = 20000 + (uint16_t)(getpid() % 20000),
                            .on_event = on_event, .event_ud = &r, .dht_state_file = cache,
                            .dht_bootstrap = via_dht ? boots : NULL,
                            .dht_bootstrap_count = via_dht ? 1 : 0};
    assert_int_equal(rv_session_new(&loop, &so, &r.seeder), 0);
    so.port = 0;
    snprintf(cache, sizeof(cache), "%s/dht-b.dat", dir);
    assert_int_equal(rv_session_new(&loop, &so, &r.leecher), 0);
    snprintf(path, sizeof(path), "%s/seed", dir);
    rv_add_opts_t ao = {.save_dir = path, .seed_seconds = -1, .no_trackers = !via_dht,
                        .no_resume = true};
    assert_int_equal(rv_session_add_info(r.seeder, ti, &ao, NULL, &err), 0);
    char uri[256];
    if (via_dht)
        snprintf(uri, sizeof(uri), "magnet:?xt=urn:btih:%s&dn=data", hex);
    else
        snprintf(uri, sizeof(uri), "magnet:?xt=urn:btih:%s&dn=data&x.pe=127.0.0.1:%u", hex,
                 (unsigned)rv_session_port(r.seeder));
    snprintf(out, sizeof(out), "%s/out", dir);
    snprintf(state, sizeof(state), "%s/state", dir);
    snprintf(saved, sizeof(saved), "%s/saved.torrent", dir);
    rv_add_opts_t mo = {.save_dir = out, .state_dir = state, .no_trackers = !via_dht,
                        .metadata_only = metadata_only,
                        .save_torrent = metadata_only ? saved : NULL};
    assert_int_equal(rv_session_add_magnet(r.leecher, uri, &mo, &r.lt, &err), 0);
    assert_null(rv_torrent_info(r.lt));
    assert_string_equal(rv_torrent_name(r.lt), "data");
    uv_timer_init(&loop, &r.watchdog);
    r.watchdog.data = &r;
    uv_timer_start(&r.watchdog, on_watchdog, 30000, 0);
    uv_unref((uv_handle_t *)&r.watchdog);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_false(r.timed_out);
    assert_int_equal(r.error, 0);
    assert_true(r.metadata);
    assert_true(r.finished);
    assert_non_null(rv_torrent_info(r.lt));
    size_t a, b;
    char *want = slurp(tpath, &a);
    rv_torrent_info_t *orig;
    assert_int_equal(rv_torrent_load(tpath, 0, &orig, &err), 0);
    if (metadata_only) {
        rv_torrent_info_t *got;
        assert_int_equal(rv_torrent_load(saved, 0, &got, &err), 0);
        assert_memory_equal(got->info_hash, orig->info_hash, 20);
        rv_torrent_info_free(got);
        snprintf(path, sizeof(path), "%s/data.bin", out);
        assert_int_not_equal(access(path, F_OK), 0); /* no data */
    } else {
        snprintf(path, sizeof(path), "%s/seed/data.bin", dir);
        char *x = slurp(path, &a);
        snprintf(path, sizeof(path), "%s/data.bin", out);
        char *y = slurp(path, &b);
        assert_non_null(y);
        assert_int_equal(a, b);
        assert_memory_equal(x, y, a);
        free(x);
        free(y);
        snprintf(path, sizeof(path), "%s/%s.torrent", state, hex);
        rv_torrent_info_t *kept;
        assert_int_equal(rv_torrent_load(path, 0, &kept, &err), 0);
        assert_memory_equal(kept->info_hash, orig->info_hash, 20);
        rv_torrent_info_free(kept);
    }
    rv_torrent_info_free(orig);
    free(want);
    uv_close((uv_handle_t *)&r.watchdog, NULL);
    rv_session_free(r.leecher);
    rv_session_free(r.seeder);
    if (node != NULL)
        rv_dht_close(node, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void with_dir(bool metadata_only, bool via_dht)
{
    char dir[64] = "/tmp/rv-test-magnet.XXXXXX";
    assert_non_null(mkdtemp(dir));
    magnet_run(dir, metadata_only, via_dht);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_magnet_download(void **state)
{
    (void)state;
    with_dir(false, false);
}

static void test_metadata_only(void **state)
{
    (void)state;
    with_dir(true, false);
}

static void test_magnet_via_dht(void **state)
{
    (void)state;
    with_dir(false, true);
}

int main(void)
{
    /* As session.h asks of programs using the library: a peer or server that hangs up while
     * we write is an error on that connection (EPIPE), not the end of this process. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_magnet_download),
        cmocka_unit_test(test_metadata_only),
        cmocka_unit_test(test_magnet_via_dht),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
