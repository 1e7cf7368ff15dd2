/* The session: a loop (own or borrowed), the tracker client shared by its torrents, and the
 * torrents. rv_session_run returns when every torrent has stopped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peer/conn.h"
#include "rivulet/session.h"
#include "dht/dht.h"
#include "session/torrent.h"
#include "storage/resume.h"
#include "util/err.h"
#include "util/stats.h"

#define MAX_TORRENTS 4096
#define MAX_PENDING 64 /* incoming connections whose handshake has not arrived yet */

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
    /* accepting peers */
    uv_timer_t down_timer, up_timer; /* run the rate-limit queues */
    uv_tcp_t *listeners[2];
    int nlisteners;
    struct conn *pending[MAX_PENDING];
    int npending;
};

static void pending_remove(rv_session_t *s, struct conn *c)
{
    for (int i = 0; i < s->npending; i++) {
        if (s->pending[i] == c) {
            s->pending[i] = s->pending[--s->npending];
            return;
        }
    }
}

/* The peer named an info-hash: hand it to that torrent. */
static int route_handshake(void *owner, struct conn *c, const struct handshake *h)
{
    rv_session_t *s = owner;
    pending_remove(s, c);
    for (size_t i = 0; i < s->count; i++) {
        rv_torrent_t *t = s->torrents[i];
        if (!torrent_is_stopping(t) && memcmp(torrent_info_hash(t), h->info_hash, 20) == 0)
            return torrent_accept(t, c, h);
    }
    conn_set_reason(c, "handshake for a torrent we do not have");
    return RV_EPROTO;
}

static int route_message(void *owner, struct conn *c, const struct wire_msg *m)
{
    (void)owner;
    (void)m;
    conn_set_reason(c, "message before the handshake");
    return RV_EPROTO;
}

/* A peer refused before it named one of our torrents (a wrong info-hash or protocol string, a
 * handshake that never came): one line saying what it did, for the session's event callback. */
static void route_close(void *owner, struct conn *c, int rc, const char *why)
{
    rv_session_t *s = owner;
    pending_remove(s, c);
    if (rc == 0 || rc == RV_ECANCELED || s->ctx.opts.on_event == NULL)
        return;
    char a[64], msg[256];
    peer_addr_format(&c->addr, a, sizeof(a));
    snprintf(msg, sizeof(msg), "%s: %s", a, why);
    rv_event_t ev = {RV_EVENT_PEER_DROPPED, NULL, 0, rc, msg};
    s->ctx.opts.on_event(s->ctx.opts.event_ud, &ev);
}

/* An incoming MSE peer names its torrent only by HASH('req2', info-hash): try each one. */
static bool find_skey(void *ud, const struct mse *m, uint8_t skey[20])
{
    rv_session_t *s = ud;
    for (size_t i = 0; i < s->count; i++) {
        rv_torrent_t *t = s->torrents[i];
        if (!torrent_is_stopping(t) && mse_skey_matches(m, torrent_info_hash(t))) {
            memcpy(skey, torrent_info_hash(t), 20);
            return true;
        }
    }
    return false;
}

bool rv_encryption_rc4_available(void)
{
    return mse_rc4_available();
}

/* What incoming connections accept (see rv_encryption_t); torrents choose what they dial. */
static void set_encryption(rv_session_t *s)
{
    struct conn_opts *co = &s->ctx.conn_opts;
    co->mse_find_skey = find_skey;
    co->mse_ud = s;
    switch (s->ctx.opts.encryption) {
    case RV_ENC_DISABLE:
        co->mse_accept = 0;
        break;
    case RV_ENC_REQUIRE:
        co->mse_accept = MSE_RC4;
        co->mse_prefer = MSE_RC4;
        co->plain_refused = true;
        break;
    case RV_ENC_PREFER:
        co->mse_accept = MSE_PLAIN | MSE_RC4;
        co->mse_prefer = MSE_RC4;
        break;
    case RV_ENC_ALLOW:
    default:
        /* Plaintext when offered: what libtorrent's default connection offers, and the
         * cheaper one. */
        co->mse_accept = MSE_PLAIN | MSE_RC4;
        co->mse_prefer = MSE_PLAIN;
        break;
    }
}

static const struct conn_handler router = {route_handshake, route_message, route_close, NULL, NULL};

static void on_connection(uv_stream_t *server, int status)
{
    rv_session_t *s = server->data;
    struct conn *c;
    if (status < 0)
        return;
    if (s->npending >= MAX_PENDING) {
        /* Accept and drop: leaving it queued would make libuv call us again at once. */
        uv_tcp_t *tmp = malloc(sizeof(*tmp));
        if (tmp != NULL && uv_tcp_init(server->loop, tmp) == 0) {
            uv_accept(server, (uv_stream_t *)tmp);
            uv_close((uv_handle_t *)tmp, (uv_close_cb)free);
        } else {
            free(tmp);
        }
        return;
    }
    if (conn_accept(server->loop, server, &s->ctx.conn_opts, &router, s, ++s->ctx.next_conn_id, &c) == 0 &&
        c->state != CONN_CLOSING)
        s->pending[s->npending++] = c;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

/* Each attempt gets a handle of its own: a failed one is still closing when the next port is
 * tried, and libuv must not see its memory reused before the close completes. */
static int listen_on(rv_session_t *s, uv_tcp_t **out, const struct sockaddr *sa)
{
    uv_tcp_t *tcp = malloc(sizeof(*tcp));
    if (tcp == NULL)
        return UV_ENOMEM;
    uv_tcp_init(s->ctx.loop, tcp);
    tcp->data = s;
    int rc = uv_tcp_bind(tcp, sa, sa->sa_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)tcp, 128, on_connection);
    if (rc != 0) {
        uv_close((uv_handle_t *)tcp, free_handle);
        return rc;
    }
    *out = tcp;
    return 0;
}

/* Listens on port (or the next nine, then any) on listen_addr, or on every IPv4 and IPv6
 * address; the port found is the one announced. */
static int start_listening(rv_session_t *s)
{
    rv_session_opts_t *o = &s->ctx.opts;
    for (int attempt = 0; attempt <= 10; attempt++) {
        uint16_t port = attempt == 10 ? 0 : (uint16_t)(o->port + attempt);
        struct sockaddr_storage a4, a6;
        int rc;
        s->nlisteners = 0;
        if (o->listen_addr != NULL) {
            if (uv_ip4_addr(o->listen_addr, port, (struct sockaddr_in *)&a4) != 0 &&
                uv_ip6_addr(o->listen_addr, port, (struct sockaddr_in6 *)&a4) != 0)
                return RV_EINVAL;
            rc = listen_on(s, &s->listeners[0], (struct sockaddr *)&a4);
            if (rc == 0)
                s->nlisteners = 1;
        } else {
            uv_ip4_addr("0.0.0.0", port, (struct sockaddr_in *)&a4);
            rc = listen_on(s, &s->listeners[0], (struct sockaddr *)&a4);
            if (rc == 0) {
                s->nlisteners = 1;
                /* The same port on IPv6, when the machine has it; IPv4 alone is enough. */
                struct sockaddr_storage got;
                int len = sizeof(got);
                uv_tcp_getsockname(s->listeners[0], (struct sockaddr *)&got, &len);
                uv_ip6_addr("::", ntohs(((struct sockaddr_in *)&got)->sin_port),
                            (struct sockaddr_in6 *)&a6);
                if (listen_on(s, &s->listeners[1], (struct sockaddr *)&a6) == 0)
                    s->nlisteners = 2;
            }
        }
        if (rc == 0) {
            struct sockaddr_storage got;
            int len = sizeof(got);
            uv_tcp_getsockname(s->listeners[0], (struct sockaddr *)&got, &len);
            o->port = got.ss_family == AF_INET6
                          ? ntohs(((struct sockaddr_in6 *)&got)->sin6_port)
                          : ntohs(((struct sockaddr_in *)&got)->sin_port);
            return 0;
        }
        if (rc != UV_EADDRINUSE)
            return RV_ENET;
    }
    return RV_ENET;
}

static void stop_listening(rv_session_t *s)
{
    for (int i = 0; i < s->nlisteners; i++)
        uv_close((uv_handle_t *)s->listeners[i], free_handle);
    s->nlisteners = 0;
    while (s->npending > 0) {
        struct conn *c = s->pending[--s->npending];
        conn_close(c, 0, "the session is stopping");
    }
}

static void stop_now(rv_session_t *s);

void rv_session_stats(const rv_session_t *s, rv_session_stats_t *out)
{
    const rv_session_stats_t *st = &s->ctx.stats;
    *out = *st;
    /* Written by the workers: each read whole. */
    out->hash_bytes = stats_load(&st->hash_bytes);
    out->hash_ns = stats_load(&st->hash_ns);
    out->hash_lane_bytes = stats_load(&st->hash_lane_bytes);
    out->disk_reads = stats_load(&st->disk_reads);
    out->disk_writes = stats_load(&st->disk_writes);
    out->disk_read_bytes = stats_load(&st->disk_read_bytes);
    out->disk_write_bytes = stats_load(&st->disk_write_bytes);
    out->disk_direct_bytes = stats_load(&st->disk_direct_bytes);
    out->disk_overflow_bytes = stats_load(&st->disk_overflow_bytes);
    out->disk_edge_writes = stats_load(&st->disk_edge_writes);
    out->disk_submits = stats_load(&st->disk_submits);
    out->disk_direct_max = __atomic_load_n(&st->disk_direct_max, __ATOMIC_RELAXED);
    out->disk_syncs = stats_load(&st->disk_syncs);
    out->disk_ns = stats_load(&st->disk_ns);
    out->requests_queued = out->uploads_queued = 0;
    for (size_t i = 0; i < s->count; i++)
        torrent_queues(s->torrents[i], &out->requests_queued, &out->uploads_queued);
}

static void on_wake(uv_async_t *h)
{
    stop_now(h->data);
}

static void run_down_q(uv_timer_t *t)
{
    rv_session_t *s = t->data;
    limit_sched_run(&s->ctx.down_q, uv_now(t->loop));
}

static void run_up_q(uv_timer_t *t)
{
    rv_session_t *s = t->data;
    limit_sched_run(&s->ctx.up_q, uv_now(t->loop));
}

static void arm_down(void *ud, uint64_t delay_ms)
{
    rv_session_t *s = ud;
    if (delay_ms == LIMIT_NEVER)
        uv_timer_stop(&s->down_timer);
    else
        uv_timer_start(&s->down_timer, run_down_q, delay_ms, 0);
}

static void arm_up(void *ud, uint64_t delay_ms)
{
    rv_session_t *s = ud;
    if (delay_ms == LIMIT_NEVER)
        uv_timer_stop(&s->up_timer);
    else
        uv_timer_start(&s->up_timer, run_up_q, delay_ms, 0);
}

void rv_session_set_rate_limits(rv_session_t *s, uint64_t download, uint64_t upload)
{
    uint64_t now = uv_now(s->ctx.loop);
    limit_bucket_set_rate(&s->ctx.down_all, download, now);
    limit_bucket_set_rate(&s->ctx.up_all, upload, now);
    limit_sched_run(&s->ctx.down_q, now);
    limit_sched_run(&s->ctx.up_q, now);
}

static void on_trackers_closed(void *ud)
{
    (void)ud;
}

static void close_dht(rv_session_t *s)
{
    if (s->ctx.dht != NULL) {
        dht_close(s->ctx.dht, NULL, NULL);
        s->ctx.dht = NULL;
    }
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
    /* With every torrent stopped nothing else needs the tracker client or the listener;
     * closing them lets the loop run out. */
    if (s->stopped == s->count) {
        close_trackers(s);
        close_dht(s);
        stop_listening(s);
    }
}

/* The DHT on the peer port (UDP), or any port when that one is taken; without it the
 * session goes on (trackers and peers still work). */
static void start_dht(rv_session_t *s)
{
    const rv_session_opts_t *o = &s->ctx.opts;
    char path[4096];
    const char *state = o->dht_state_file;
    if (state == NULL) {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg != NULL && xdg[0] == '/')
            snprintf(path, sizeof(path), "%s/rivulet/dht.dat", xdg);
        else if (home != NULL && home[0] == '/')
            snprintf(path, sizeof(path), "%s/.cache/rivulet/dht.dat", home);
        else
            path[0] = '\0';
        state = path[0] ? path : NULL;
    }
    struct dht_opts d = {.port = o->no_listen ? 0 : o->port,
                         .bind_addr = o->listen_addr,
                         .bootstrap = o->dht_bootstrap,
                         .bootstrap_count = o->dht_bootstrap_count,
                         .state_file = state};
    rv_error_t err;
    if (dht_new(s->ctx.loop, &d, &s->ctx.dht, &err) != 0) {
        d.port = 0;
        if (dht_new(s->ctx.loop, &d, &s->ctx.dht, &err) != 0)
            s->ctx.dht = NULL;
    }
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
    if (o->peer_retries == 0)
        o->peer_retries = 12;
    if (o->port == 0)
        o->port = 6881;
    if (o->encryption == RV_ENC_REQUIRE && !mse_rc4_available()) {
        free(s);
        return RV_EINVAL;
    }
    set_encryption(s);
    s->ctx.conn_opts.bind_addr = o->listen_addr;
    s->ctx.conn_opts.stats = &s->ctx.stats;
    if (o->peer_timeout_ms != 0) {
        unsigned pt = o->peer_timeout_ms;
        s->ctx.conn_opts.idle_timeout_ms = pt;
        s->ctx.conn_opts.send_timeout_ms = pt;
        s->ctx.conn_opts.keepalive_ms = pt / 2 ? pt / 2 : 1;
        if (pt < 10000)
            s->ctx.conn_opts.handshake_timeout_ms = s->ctx.conn_opts.connect_timeout_ms = pt;
    }
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
    if (!o->no_listen && start_listening(s) != 0) {
        if (s->owns_loop) {
            uv_run(&s->own_loop, UV_RUN_DEFAULT);
            uv_loop_close(&s->own_loop);
        }
        free(s);
        return RV_ENET;
    }
    /* Unreferenced: it must not keep the loop alive once every torrent has stopped. */
    uv_async_init(s->ctx.loop, &s->wake, on_wake);
    s->wake.data = s;
    uv_unref((uv_handle_t *)&s->wake);
    uint64_t now = uv_now(s->ctx.loop);
    limit_bucket_init(&s->ctx.down_all, o->max_download_rate, now);
    limit_bucket_init(&s->ctx.up_all, o->max_upload_rate, now);
    limit_sched_init(&s->ctx.down_q, arm_down, s);
    limit_sched_init(&s->ctx.up_q, arm_up, s);
    uv_timer_init(s->ctx.loop, &s->down_timer);
    uv_timer_init(s->ctx.loop, &s->up_timer);
    s->down_timer.data = s->up_timer.data = s;
    uv_unref((uv_handle_t *)&s->down_timer);
    uv_unref((uv_handle_t *)&s->up_timer);
    if (!o->no_dht)
        start_dht(s);
    *out = s;
    return 0;
}

/* A .torrent (ti, owned) or a magnet link (borrowed). */
static int add_torrent(rv_session_t *s, rv_torrent_info_t *ti, const rv_magnet_t *magnet,
                       const rv_add_opts_t *opts, rv_torrent_t **out, rv_error_t *err)
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
    size_t tiers = ti != NULL ? ti->tier_count : magnet->tracker_count;
    if (s->ctx.trackers == NULL && !s->closing_trackers && tiers > 0 &&
        !(opts && opts->no_trackers)) {
        struct tracker_client_opts co;
        memset(&co, 0, sizeof(co));
        co.ca_file = s->ctx.opts.ca_file;
        co.bind_addr = s->ctx.opts.listen_addr; /* trackers record where announces come from */
        int rc = tracker_client_new(s->ctx.loop, &co, &s->ctx.trackers);
        if (rc != 0) {
            rv_torrent_info_free(ti);
            return err_set(err, rc, "cannot start the tracker client");
        }
    }
    rv_torrent_t *t;
    int rc = torrent_start(&s->ctx, ti, magnet, opts, &t, err);
    if (rc != 0)
        return rc;
    s->torrents[s->count++] = t;
    if (out != NULL)
        *out = t;
    return 0;
}

int rv_session_add_info(rv_session_t *s, rv_torrent_info_t *ti, const rv_add_opts_t *opts,
                        rv_torrent_t **out, rv_error_t *err)
{
    return add_torrent(s, ti, NULL, opts, out, err);
}

int rv_session_add_magnet(rv_session_t *s, const char *uri, const rv_add_opts_t *opts,
                          rv_torrent_t **out, rv_error_t *err)
{
    rv_magnet_t *m;
    int rc = rv_magnet_parse(uri, &m, err);
    if (rc != 0)
        return rc;
    if (!m->has_v1) {
        rv_magnet_free(m);
        return err_set(err, RV_EINVAL, "magnet link without a v1 (btih) info-hash: v2-only "
                       "magnet links cannot be downloaded yet");
    }
    /* The metadata of an earlier run, kept in the state folder: no need to fetch it again. */
    char path[4096];
    rv_error_t e;
    rv_torrent_info_t *ti = NULL;
    if (opts != NULL && !opts->no_resume && !opts->metadata_only &&
        torrent_state_path(opts->state_dir, m->info_hash, path, sizeof(path), &e) == 0 &&
        access(path, F_OK) == 0 && rv_torrent_load(path, 0, &ti, &e) == 0 &&
        memcmp(ti->info_hash, m->info_hash, 20) != 0) {
        rv_torrent_info_free(ti);
        ti = NULL;
    }
    if (ti == NULL) {
        rc = add_torrent(s, NULL, m, opts, out, err);
        rv_magnet_free(m);
        return rc;
    }
    /* x.pe peers join those given by hand. */
    rv_add_opts_t o = *opts;
    const char **peers = calloc(opts->peer_count + m->peer_count + 1, sizeof(*peers));
    if (peers == NULL) {
        rv_torrent_info_free(ti);
        rv_magnet_free(m);
        return err_set(err, RV_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < opts->peer_count; i++)
        peers[i] = opts->peers[i];
    o.peer_count = opts->peer_count;
    for (size_t i = 0; i < m->peer_count; i++)
        peers[o.peer_count++] = m->peers[i];
    o.peers = peers;
    if (o.select_count == 0) {
        o.select = m->select; /* so= applies to the kept .torrent as well */
        o.select_count = m->select_count;
    }
    rc = add_torrent(s, ti, NULL, &o, out, err);
    free(peers);
    rv_magnet_free(m);
    return rc;
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
    if (s->count == 0) {
        close_trackers(s);
        stop_listening(s);
    }
    uv_run(s->ctx.loop, UV_RUN_DEFAULT);
    return s->first_error;
}

static void stop_now(rv_session_t *s)
{
    for (size_t i = 0; i < s->count; i++)
        torrent_stop(s->torrents[i]);
    if (s->count == 0 || s->stopped == s->count) {
        close_trackers(s);
        close_dht(s);
        stop_listening(s);
    }
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
    uv_close((uv_handle_t *)&s->down_timer, NULL);
    uv_close((uv_handle_t *)&s->up_timer, NULL);
    /* Let every close callback run before the memory goes. */
    uv_run(s->ctx.loop, UV_RUN_DEFAULT);
    for (size_t i = 0; i < s->count; i++)
        torrent_free(s->torrents[i]);
    free(s->torrents);
    if (s->owns_loop)
        uv_loop_close(&s->own_loop);
    free(s);
}

uint16_t rv_session_port(const rv_session_t *s)
{
    return s->ctx.opts.no_listen ? 0 : s->ctx.opts.port;
}

struct rv_dht *rv_session_dht(const rv_session_t *s)
{
    return (struct rv_dht *)s->ctx.dht;
}
