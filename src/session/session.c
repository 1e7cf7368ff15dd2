/* The session: a loop (own or borrowed), the tracker client shared by its torrents, and the
 * torrents. rv_session_run returns when every torrent has stopped. */
#include <stdlib.h>
#include <string.h>

#include "rivulet/session.h"
#include "session/torrent.h"
#include "util/err.h"

#define MAX_TORRENTS 4096

struct rv_session {
    struct session_ctx ctx;
    uv_loop_t own_loop;
    bool owns_loop;
    rv_torrent_t **torrents;
    size_t count, cap;
    size_t stopped;
    int first_error;
    bool closing_trackers;
    uv_async_t wake;      /* rv_session_stop from another thread */
    uv_thread_t thread;
    uv_sem_t started;
    bool thread_running;
};

static void stop_now(rv_session_t *s);

static void on_wake(uv_async_t *h)
{
    stop_now(h->data);
}

static void on_trackers_closed(void *ud)
{
    (void)ud;
}

static void close_trackers(rv_session_t *s)
{
    if (s->ctx.trackers != NULL && !s->closing_trackers) {
        s->closing_trackers = true;
        tracker_client_close(s->ctx.trackers, on_trackers_closed, s);
        s->ctx.trackers = NULL;
    }
}

static void on_torrent_stopped(void *ud, rv_torrent_t *t)
{
    rv_session_t *s = ud;
    s->stopped++;
    if (s->first_error == 0)
        s->first_error = torrent_error(t);
    /* With every torrent stopped nothing else needs the tracker client; closing it lets the
     * loop run out. */
    if (s->stopped == s->count)
        close_trackers(s);
}

int rv_session_new(void *loop, const rv_session_opts_t *opts, rv_session_t **out)
{
    rv_session_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return RV_ENOMEM;
    if (opts != NULL)
        s->ctx.opts = *opts;
    rv_session_opts_t *o = &s->ctx.opts;
    if (o->max_peers == 0)
        o->max_peers = 50;
    if (o->max_half_open == 0)
        o->max_half_open = 8;
    if (o->max_memory == 0)
        o->max_memory = 64u << 20;
    if (o->port == 0)
        o->port = 6881;
    if (loop != NULL) {
        s->ctx.loop = loop;
    } else {
        if (uv_loop_init(&s->own_loop) != 0) {
            free(s);
            return RV_ENOMEM;
        }
        s->ctx.loop = &s->own_loop;
        s->owns_loop = true;
    }
    s->ctx.on_stopped = on_torrent_stopped;
    s->ctx.ud = s;
    /* Unreferenced: it must not keep the loop alive once every torrent has stopped. */
    uv_async_init(s->ctx.loop, &s->wake, on_wake);
    s->wake.data = s;
    uv_unref((uv_handle_t *)&s->wake);
    *out = s;
    return 0;
}

int rv_session_add_info(rv_session_t *s, rv_torrent_info_t *ti, const rv_add_opts_t *opts,
                        rv_torrent_t **out, rv_error_t *err)
{
    if (s->count == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4;
        if (cap > MAX_TORRENTS) {
            rv_torrent_info_free(ti);
            return err_set(err, RV_EFULL, "too many torrents in one session");
        }
        rv_torrent_t **t = realloc(s->torrents, cap * sizeof(*t));
        if (t == NULL) {
            rv_torrent_info_free(ti);
            return err_set(err, RV_ENOMEM, "out of memory");
        }
        s->torrents = t;
        s->cap = cap;
    }
    if (s->ctx.trackers == NULL && !s->closing_trackers && ti->tier_count > 0 &&
        !(opts && opts->no_trackers)) {
        struct tracker_client_opts co;
        memset(&co, 0, sizeof(co));
        co.ca_file = s->ctx.opts.ca_file;
        int rc = tracker_client_new(s->ctx.loop, &co, &s->ctx.trackers);
        if (rc != 0) {
            rv_torrent_info_free(ti);
            return err_set(err, rc, "cannot start the tracker client");
        }
    }
    rv_torrent_t *t;
    int rc = torrent_start(&s->ctx, ti, opts, &t, err);
    if (rc != 0)
        return rc;
    s->torrents[s->count++] = t;
    if (out != NULL)
        *out = t;
    return 0;
}

int rv_session_add(rv_session_t *s, const char *torrent_path, const rv_add_opts_t *opts,
                   rv_torrent_t **out, rv_error_t *err)
{
    rv_torrent_info_t *ti;
    int rc = rv_torrent_load(torrent_path, 0, &ti, err);
    if (rc != 0)
        return rc;
    return rv_session_add_info(s, ti, opts, out, err);
}

int rv_session_run(rv_session_t *s)
{
    if (s->count == 0)
        close_trackers(s);
    uv_run(s->ctx.loop, UV_RUN_DEFAULT);
    return s->first_error;
}

static void stop_now(rv_session_t *s)
{
    for (size_t i = 0; i < s->count; i++)
        torrent_stop(s->torrents[i]);
    if (s->count == 0)
        close_trackers(s);
}

void rv_session_stop(rv_session_t *s)
{
    if (session_on_loop_thread(&s->ctx))
        stop_now(s);
    else
        uv_async_send(&s->wake);
}

static void loop_thread(void *arg)
{
    rv_session_t *s = arg;
    s->ctx.loop_thread = uv_thread_self();
    uv_sem_post(&s->started);
    rv_session_run(s);
}

int rv_session_start_thread(rv_session_t *s)
{
    if (!s->owns_loop || s->thread_running)
        return RV_EINVAL;
    if (uv_sem_init(&s->started, 0) != 0)
        return RV_ENOMEM;
    s->ctx.threaded = true;
    if (uv_thread_create(&s->thread, loop_thread, s) != 0) {
        s->ctx.threaded = false;
        uv_sem_destroy(&s->started);
        return RV_ENOMEM;
    }
    /* The thread's id must be known before anyone asks which thread is the loop's. */
    uv_sem_wait(&s->started);
    uv_sem_destroy(&s->started);
    s->thread_running = true;
    return 0;
}

int rv_session_wait(rv_session_t *s)
{
    if (!s->thread_running)
        return RV_EINVAL;
    uv_thread_join(&s->thread);
    s->thread_running = false;
    s->ctx.threaded = false;
    return s->first_error;
}

void rv_session_free(rv_session_t *s)
{
    if (s == NULL)
        return;
    if (s->thread_running) {
        rv_session_stop(s);
        rv_session_wait(s);
    }
    stop_now(s);
    uv_close((uv_handle_t *)&s->wake, NULL);
    /* Let every close callback run before the memory goes. */
    uv_run(s->ctx.loop, UV_RUN_DEFAULT);
    for (size_t i = 0; i < s->count; i++)
        torrent_free(s->torrents[i]);
    free(s->torrents);
    if (s->owns_loop)
        uv_loop_close(&s->own_loop);
    free(s);
}
