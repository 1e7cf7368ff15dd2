/* rivulet download: fetch a torrent into a folder, with a live progress line on a terminal,
 * key=value status lines when piped, or NDJSON events with --json. Ctrl+C stops cleanly. */
#include <arpa/inet.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cli.h"
#include "json.h"

static const char usage[] =
    "Usage: rivulet download [OPTIONS] FILE.torrent|MAGNET -o DIR\n"
    "       rivulet FILE.torrent|MAGNET -o DIR\n"
    "       rivulet download --metadata-only MAGNET -o FILE.torrent\n"
    "       rivulet seed [OPTIONS] FILE.torrent|MAGNET... -d DIR\n"
    "\n"
    "download fetches the torrent into DIR (checking what is already there), then seeds it\n"
    "until the seed limits are reached, and exits. seed checks the data in DIR and seeds it\n"
    "(fetching whatever is missing) until stopped; it takes several torrents at once, all\n"
    "with their data in DIR, in one session (one port, resume data for each). A magnet\n"
    "link's metadata comes from peers (x.pe, its trackers, peers they tell of) and is kept\n"
    "in the state folder.\n"
    "\n"
    "  -o, -d, --dir DIR       download folder (created if missing; default: .)\n"
    "      --peer HOST:PORT    add a peer by hand ([IPv6]:PORT too), repeatable\n"
    "      --no-trackers       do not announce; use --peer peers only\n"
    "      --max-peers N       connections at once (default 50)\n"
    "      --max-memory SIZE   piece data held in memory (default 64M; with K/M/G)\n"
    "      --port N            the port to accept peers on and announce (default 6881, or\n"
    "                          the next free one)\n"
    "      --listen ADDR       accept peers on this address only (default: all)\n"
    "      --seed-ratio R      once complete, seed until uploaded/downloaded reaches R\n"
    "                          (default 1.0 for download, unlimited for seed; 0: no limit)\n"
    "      --seed-time MIN     ... or for MIN minutes (default: no limit; 0: do not seed)\n"
    "      --upload-slots N    peers uploaded to at once (default 4)\n"
    "      --peer-timeout SEC  drop a peer silent, or not reading, this long (default: 180\n"
    "                          s silent, 120 s not reading)\n"
    "      --peer-retries N    tries to reach a peer, 3 s apart and doubling up to 5 min,\n"
    "                          before it is given up until a tracker, the DHT or PEX names\n"
    "                          it again (default 12)\n"
    "      --max-download-rate RATE, --max-upload-rate RATE\n"
    "                          bytes per second, with K/M/G (e.g. 2M); 0: unlimited (default)\n"
    "      --ca-file PEM       trust these certificates for HTTPS trackers\n"
    "      --state-dir DIR     keep resume data in DIR (default: $XDG_STATE_HOME/rivulet or\n"
    "                          ~/.local/state/rivulet)\n"
    "      --metadata-only     magnet links: fetch the metadata, save it as the .torrent\n"
    "                          named by -o, and exit\n"
    "      --select-file LIST  download only these files: 0-based indices among the\n"
    "                          non-padding files as `rivulet info` numbers them, ranges too\n"
    "                          (e.g. 0,2,5-7); a magnet link's so= does the same\n"
    "      --no-dht            no DHT node (private torrents never use it)\n"
    "      --dht-bootstrap HOST:PORT\n"
    "                          DHT node to start from, repeatable (default: the well-known\n"
    "                          routers, or the comma-separated $RIVULET_DHT_BOOTSTRAP when set,\n"
    "                          which may be empty)\n"
    "      --on-complete CMD   run CMD with /bin/sh when a torrent has every wanted piece\n"
    "                          verified (before its data is synced and seeding starts), with\n"
    "                          $1 its name, $2 its info-hash (hex; empty before the metadata)\n"
    "                          and $3 the download folder; the exit waits for it\n"
    "      --encryption MODE   Message Stream Encryption (RC4) with peers: allow (default:\n"
    "                          accept both, dial plaintext, redial encrypted a peer that\n"
    "                          hangs up), prefer (dial encrypted first, choose RC4), require\n"
    "                          (RC4 only, both ways), disable (plaintext only)\n"
    "      --cached-writes     write every piece through the OS page cache (default: a\n"
    "                          piece's whole 4 KiB blocks go straight to disk with O_DIRECT\n"
    "                          where the file system allows it, which costs less CPU and\n"
    "                          leaves nothing to flush; through the cache while the disk\n"
    "                          is behind; reads use the cache either way)\n"
    "  -v, --verbose           log peers, trackers and pieces on stderr\n"
    "  -q, --quiet             print only errors\n"
    "  -j, --json              NDJSON events and status on stdout\n"
    "      --stats             at the end, print the session's counters (bytes and calls on\n"
    "                          the sockets and the disk, hash and disk time, queue peaks) and\n"
    "                          the process's CPU time and peak memory on stderr (a 'stats'\n"
    "                          event with --json)\n"
    "  -h, --help              this help\n"
    "  -V, --version           print the version\n"
    "\n"
    "Exit codes: 0 done, 2 usage, 3 unreadable torrent, 4 stopped incomplete, 6 disk (a file\n"
    "could not be read or written), 130 interrupted (after a complete download: 0).\n";

enum output { OUT_TTY, OUT_PLAIN, OUT_JSON, OUT_QUIET };

struct ui {
    enum output out;
    bool verbose;
    rv_session_t *session;
    rv_torrent_t *torrent;   /* the first (download: the only one) */
    rv_torrent_t **torrents; /* seed: every torrent given */
    size_t ntorrents;
    uv_timer_t timer;
    uv_signal_t sigint, sigterm;
    bool interrupted;
    bool line_drawn;
    struct timespec start;
    uint64_t last_plain;
    int exit_code;
    const char *on_complete; /* --on-complete CMD, or NULL */
    bool *hooked;            /* per torrent: its --on-complete ran (once: the first FINISHED,
                                not the later "seeding done") */
    bool metadata_only;
    const char *save_dir;
    uv_loop_t *loop;
};

static double since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static unsigned term_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10)
        return ws.ws_col;
    return 80;
}

static void clear_line(struct ui *u)
{
    if (u->out == OUT_TTY && u->line_drawn) {
        fputs("\r\033[K", stderr);
        u->line_drawn = false;
    }
}

static void fmt_eta(int64_t s, char *out, size_t n)
{
    if (s < 0)
        snprintf(out, n, "--");
    else if (s >= 3600)
        snprintf(out, n, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
    else
        snprintf(out, n, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
}

/* Who sent what, while the peers are still connected: scripts check that every seeder
 * contributed. */
static void json_peer_list(struct json *j, rv_torrent_t *const *ts, size_t nts)
{
    rv_peer_info_t info[64];
    size_t n = 0;
    for (size_t k = 0; k < nts && n < 64; k++) {
        size_t got = rv_torrent_peers(ts[k], info + n, 64 - n);
        n += got < 64 - n ? got : 64 - n;
    }
    json_key(j, "peers");
    json_array_begin(j);
    for (size_t i = 0; i < n; i++) {
        json_object_begin(j);
        json_key(j, "address");
        json_string(j, info[i].address);
        json_key(j, "client");
        json_string(j, info[i].client);
        json_key(j, "downloaded");
        json_uint(j, info[i].downloaded);
        json_key(j, "uploaded");
        json_uint(j, info[i].uploaded);
        json_key(j, "choked_by_us");
        json_bool(j, info[i].am_choking);
        json_key(j, "choking_us");
        json_bool(j, info[i].choked);
        json_key(j, "fast");
        json_bool(j, info[i].fast);
        json_key(j, "allowed_fast");
        json_uint(j, info[i].allowed_fast);
        json_key(j, "optimistic");
        json_bool(j, info[i].optimistic);
        json_key(j, "interested_in_us");
        json_bool(j, info[i].peer_interested);
        json_object_end(j);
    }
    json_array_end(j);
}

static void json_peers(struct json *j, rv_torrent_t *t)
{
    json_peer_list(j, &t, 1);
}

/* The status of the one torrent, or the sum over several (seed): seeding only when all are. */
static void status_all(const struct ui *u, rv_torrent_status_t *st)
{
    rv_torrent_status(u->torrents[0], st);
    for (size_t i = 1; i < u->ntorrents; i++) {
        rv_torrent_status_t o;
        rv_torrent_status(u->torrents[i], &o);
        st->pieces_have += o.pieces_have;
        st->pieces_total += o.pieces_total;
        st->pieces_wanted += o.pieces_wanted;
        st->bytes_have += o.bytes_have;
        st->bytes_total += o.bytes_total;
        st->downloaded += o.downloaded;
        st->uploaded += o.uploaded;
        st->wasted += o.wasted;
        st->download_rate += o.download_rate;
        st->upload_rate += o.upload_rate;
        st->peers_connected += o.peers_connected;
        st->peers_known += o.peers_known;
        st->pieces_failed += o.pieces_failed;
        st->peers_banned += o.peers_banned;
        if (o.state != RV_STATE_SEEDING && st->state == RV_STATE_SEEDING)
            st->state = o.state;
        if (st->error_code == 0 && o.error_code != 0) {
            st->error_code = o.error_code;
            memcpy(st->error, o.error, sizeof(st->error));
        }
        if (o.eta_seconds < 0 || o.eta_seconds > st->eta_seconds)
            st->eta_seconds = o.eta_seconds;
    }
}

static void draw(struct ui *u, bool final)
{
    rv_torrent_status_t st;
    if (u->ntorrents == 0)
        return;
    status_all(u, &st);
    double pct = st.bytes_total ? 100.0 * (double)st.bytes_have / (double)st.bytes_total : 100.0;
    char have[32], total[32], down[32], up[32], eta[32];
    cli_human_size(st.bytes_have, have, sizeof(have));
    cli_human_size(st.bytes_total, total, sizeof(total));
    cli_human_size(st.download_rate, down, sizeof(down));
    cli_human_size(st.upload_rate, up, sizeof(up));
    fmt_eta(st.eta_seconds, eta, sizeof(eta));
    if (u->out == OUT_TTY) {
        char line[512];
        if (st.state == RV_STATE_METADATA)
            snprintf(line, sizeof(line), "[metadata] %s  blocks %u/%u  peers %u/%u",
                     cli_safe(rv_torrent_name(u->torrent)), st.metadata_have, st.metadata_total,
                     st.peers_connected, st.peers_known);
        else if (st.state == RV_STATE_SEEDING)
            snprintf(line, sizeof(line), "[seeding] %s  up %s/s  uploaded %llu MiB  peers %u/%u",
                     total, up, (unsigned long long)(st.uploaded >> 20), st.peers_connected,
                     st.peers_known);
        else
            snprintf(line, sizeof(line),
                     "[%5.1f%%] %s/%s  down %s/s  up %s/s  peers %u/%u  ETA %s", pct, have, total,
                     down, up, st.peers_connected, st.peers_known, eta);
        unsigned w = term_width() - 1;
        if (strlen(line) > w)
            line[w] = '\0';
        fprintf(stderr, "\r\033[K%s", line);
        u->line_drawn = true;
        if (final) {
            fputc('\n', stderr);
            u->line_drawn = false;
        }
    } else if (u->out == OUT_PLAIN) {
        fprintf(stderr,
                "status progress=%.1f have=%llu total=%llu down_rate=%llu up_rate=%llu "
                "uploaded=%llu peers=%u known=%u eta=%lld\n",
                pct, (unsigned long long)st.bytes_have, (unsigned long long)st.bytes_total,
                (unsigned long long)st.download_rate, (unsigned long long)st.upload_rate,
                (unsigned long long)st.uploaded, st.peers_connected, st.peers_known,
                (long long)st.eta_seconds);
    } else if (u->out == OUT_JSON) {
        struct json j;
        json_init(&j, stdout);
        json_object_begin(&j);
        json_key(&j, "event");
        json_string(&j, "status");
        json_key(&j, "have");
        json_uint(&j, st.bytes_have);
        json_key(&j, "total");
        json_uint(&j, st.bytes_total);
        json_key(&j, "pieces");
        json_uint(&j, st.pieces_have);
        json_key(&j, "download_rate");
        json_uint(&j, st.download_rate);
        json_key(&j, "uploaded");
        json_uint(&j, st.uploaded);
        json_key(&j, "upload_rate");
        json_uint(&j, st.upload_rate);
        json_key(&j, "peers_connected");
        json_uint(&j, st.peers_connected);
        json_key(&j, "peers_known");
        json_uint(&j, st.peers_known);
        json_key(&j, "pex_received");
        json_uint(&j, st.pex_received);
        json_key(&j, "rejects_received");
        json_uint(&j, st.rejects_received);
        json_key(&j, "rejects_sent");
        json_uint(&j, st.rejects_sent);
        json_key(&j, "fast_requested");
        json_uint(&j, st.fast_requested);
        json_key(&j, "fast_served");
        json_uint(&j, st.fast_served);
        json_key(&j, "dht_peers");
        json_uint(&j, st.dht_peers);
        rv_dht_t *dht = rv_session_dht(u->session);
        if (dht != NULL) {
            rv_dht_stats_t ds;
            rv_dht_stats(dht, &ds);
            json_key(&j, "dht_nodes");
            json_uint(&j, ds.nodes4 + ds.nodes6);
        }
        if (u->ntorrents > 1) {
            json_key(&j, "torrents");
            json_uint(&j, u->ntorrents);
        }
        json_peer_list(&j, u->torrents, u->ntorrents);
        json_object_end(&j);
        fflush(stdout);
    }
}

/* --stats: the session's counters and the process's CPU and memory, one line of key=value (or
 * a JSON event), so a benchmark can explain a ratio: bytes per socket call, hash and disk time
 * against the wall time, how deep the queues got. */
static void print_stats(const struct ui *u, double secs)
{
    rv_session_stats_t st;
    struct rusage ru;
    rv_session_stats(u->session, &st);
    getrusage(RUSAGE_SELF, &ru);
    struct {
        const char *key;
        double v;
    } kv[] = {
        {"wall_s", secs},
        {"cpu_user_s", (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6},
        {"cpu_sys_s", (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6},
        {"max_rss_kib", (double)ru.ru_maxrss},
        {"net_bytes_in", (double)st.net_bytes_in},
        {"net_bytes_out", (double)st.net_bytes_out},
        {"net_reads", (double)st.net_reads},
        {"net_writes", (double)st.net_writes},
        {"blocks_in", (double)st.blocks_in},
        {"blocks_out", (double)st.blocks_out},
        {"blocks_in_place", (double)st.blocks_in_place},
        {"requests_out", (double)st.requests_out},
        {"hash_bytes", (double)st.hash_bytes},
        {"hash_s", (double)st.hash_ns / 1e9},
        {"hash_lane_bytes", (double)st.hash_lane_bytes},
        {"disk_reads", (double)st.disk_reads},
        {"disk_writes", (double)st.disk_writes},
        {"disk_read_bytes", (double)st.disk_read_bytes},
        {"disk_write_bytes", (double)st.disk_write_bytes},
        {"disk_direct_bytes", (double)st.disk_direct_bytes},
        {"disk_overflow_bytes", (double)st.disk_overflow_bytes},
        {"disk_edge_writes", (double)st.disk_edge_writes},
        {"disk_submits", (double)st.disk_submits},
        {"disk_direct_max", (double)st.disk_direct_max},
        {"disk_syncs", (double)st.disk_syncs},
        {"disk_s", (double)st.disk_ns / 1e9},
        {"disk_jobs", (double)st.disk_jobs},
        {"disk_queue_max", (double)st.disk_queue_max},
        {"peer_requests_max", (double)st.peer_requests_max},
        {"peer_uploads_max", (double)st.peer_uploads_max},
        {"pieces_in_memory_max", (double)st.pieces_in_memory_max},
        {"read_cache_pieces_max", (double)st.read_cache_pieces_max},
        {"mse_ok", (double)st.mse_ok},
        {"mse_failed", (double)st.mse_failed},
        {"mse_rc4", (double)st.mse_rc4},
        {"vol_ctx_switches", (double)ru.ru_nvcsw},
        {"invol_ctx_switches", (double)ru.ru_nivcsw},
    };
    size_t n = sizeof(kv) / sizeof(kv[0]);
    if (u->out == OUT_JSON) {
        struct json j;
        json_init(&j, stdout);
        json_object_begin(&j);
        json_key(&j, "event");
        json_string(&j, "stats");
        for (size_t i = 0; i < n; i++) {
            json_key(&j, kv[i].key);
            json_double(&j, kv[i].v);
        }
        json_object_end(&j);
        fflush(stdout);
        return;
    }
    fputs("stats", stderr);
    for (size_t i = 0; i < n; i++) {
        double v = kv[i].v;
        if (v == (double)(uint64_t)v && v < 1e18)
            fprintf(stderr, " %s=%llu", kv[i].key, (unsigned long long)v);
        else
            fprintf(stderr, " %s=%.3f", kv[i].key, v);
    }
    fputc('\n', stderr);
}

static const char *event_name(rv_event_type_t t)
{
    switch (t) {
    case RV_EVENT_PIECE_VERIFIED:
        return "piece_verified";
    case RV_EVENT_PIECE_FAILED:
        return "piece_failed";
    case RV_EVENT_FINISHED:
        return "finished";
    case RV_EVENT_ERROR:
        return "error";
    case RV_EVENT_PEER_CONNECTED:
        return "peer_connected";
    case RV_EVENT_PEER_DROPPED:
        return "peer_dropped";
    case RV_EVENT_PEER_BANNED:
        return "peer_banned";
    case RV_EVENT_TRACKER:
        return "tracker";
    case RV_EVENT_STOPPED:
        return "stopped";
    case RV_EVENT_CHECKED:
        return "checked";
    case RV_EVENT_RESUME:
        return "resume";
    case RV_EVENT_METADATA:
        return "metadata";
    }
    return "unknown";
}

/* --on-complete: the command runs in a child of its own; the loop is not held up by it, and
 * its handle keeps the loop (and so the exit) waiting until it is done. */
static void on_hook_closed(uv_handle_t *h)
{
    free(h);
}

static void on_hook_exit(uv_process_t *p, int64_t status, int sig)
{
    if (status != 0 || sig != 0)
        cli_error("--on-complete: the command %s %d", sig ? "was killed by signal" : "exited with",
                  sig ? sig : (int)status);
    uv_close((uv_handle_t *)p, on_hook_closed);
}

static void run_hook(struct ui *u, rv_torrent_t *t)
{
    char hash[2 * RV_SHA1_LEN + 1] = "";
    const rv_torrent_info_t *ti = rv_torrent_info(t);
    if (ti != NULL)
        for (size_t i = 0; i < RV_SHA1_LEN; i++)
            snprintf(hash + 2 * i, 3, "%02x", ti->info_hash[i]);
    const char *name = rv_torrent_name(t);
    char *args[] = {"/bin/sh",          "-c", (char *)u->on_complete, "rivulet-on-complete",
                    (char *)(name ? name : ""), hash, (char *)u->save_dir, NULL};
    uv_process_options_t po;
    memset(&po, 0, sizeof(po));
    po.file = args[0];
    po.args = args;
    po.exit_cb = on_hook_exit;
    uv_stdio_container_t io[3] = {{.flags = UV_IGNORE},
                                  {.flags = UV_INHERIT_FD, .data.fd = STDERR_FILENO},
                                  {.flags = UV_INHERIT_FD, .data.fd = STDERR_FILENO}};
    po.stdio = io;
    po.stdio_count = 3;
    uv_process_t *p = malloc(sizeof(*p));
    int rc = p == NULL ? UV_ENOMEM : uv_spawn(u->loop, p, &po);
    if (rc != 0) {
        cli_error("--on-complete: cannot run /bin/sh: %s", uv_strerror(rc));
        if (p != NULL && rc != UV_ENOMEM)
            uv_close((uv_handle_t *)p, on_hook_closed);
        else
            free(p);
    }
}

static void on_event(void *ud, const rv_event_t *ev)
{
    struct ui *u = ud;
    if (ev->type == RV_EVENT_FINISHED && u->on_complete != NULL && !u->metadata_only) {
        for (size_t i = 0; i < u->ntorrents; i++) {
            if (u->torrents[i] == ev->torrent && !u->hooked[i]) {
                u->hooked[i] = true;
                run_hook(u, ev->torrent);
            }
        }
    }
    if (u->out == OUT_JSON) {
        struct json j;
        json_init(&j, stdout);
        json_object_begin(&j);
        json_key(&j, "event");
        json_string(&j, event_name(ev->type));
        if (ev->type == RV_EVENT_PIECE_VERIFIED || ev->type == RV_EVENT_PIECE_FAILED) {
            json_key(&j, "piece");
            json_uint(&j, ev->piece);
        }
        if (ev->code != 0) {
            json_key(&j, "code");
            json_int(&j, ev->code);
        }
        if (ev->message && ev->message[0]) {
            json_key(&j, "message");
            json_string(&j, ev->message);
        }
        if (ev->type == RV_EVENT_FINISHED)
            json_peers(&j, ev->torrent);
        json_object_end(&j);
        fflush(stdout);
        return;
    }
    bool important = ev->type == RV_EVENT_ERROR || ev->type == RV_EVENT_FINISHED ||
                     ev->type == RV_EVENT_PEER_BANNED || ev->type == RV_EVENT_PIECE_FAILED ||
                     ev->type == RV_EVENT_METADATA;
    if (ev->type == RV_EVENT_ERROR) {
        clear_line(u);
        cli_error("%s", ev->message);
        return;
    }
    if (u->out == OUT_QUIET || ev->type == RV_EVENT_STOPPED)
        return;
    if (!important && !u->verbose)
        return;
    if (ev->type == RV_EVENT_PIECE_VERIFIED && u->out == OUT_TTY)
        return; /* the progress line says it */
    clear_line(u);
    if (ev->type == RV_EVENT_PIECE_VERIFIED)
        fprintf(stderr, "%s piece=%u\n", event_name(ev->type), ev->piece);
    else
        fprintf(stderr, "%s %s\n", event_name(ev->type), ev->message ? cli_safe(ev->message) : "");
}

static void on_timer(uv_timer_t *t)
{
    struct ui *u = t->data;
    if (u->out == OUT_TTY) {
        draw(u, false);
    } else if (u->out == OUT_PLAIN || u->out == OUT_JSON) {
        uint64_t now = uv_now(t->loop);
        if (now - u->last_plain >= 5000) {
            u->last_plain = now;
            draw(u, false);
        }
    }
}

static void on_signal(uv_signal_t *h, int sig)
{
    struct ui *u = h->data;
    (void)sig;
    if (u->interrupted) {
        /* A second Ctrl+C: the user means it. */
        clear_line(u);
        _exit(130);
    }
    u->interrupted = true;
    rv_session_stop(u->session);
}

/* --peer HOST:PORT or [IPv6]:PORT: a host name is looked up here, before the loop starts,
 * and the first address used; the session takes numeric addresses only. */
static char *resolve_peer(const char *arg)
{
    char host[256];
    const char *port;
    if (arg[0] == '[') {
        const char *close = strchr(arg, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - arg - 1) >= sizeof(host))
            return NULL;
        memcpy(host, arg + 1, (size_t)(close - arg - 1));
        host[close - arg - 1] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(arg, ':');
        if (colon == NULL || (size_t)(colon - arg) >= sizeof(host))
            return NULL;
        memcpy(host, arg, (size_t)(colon - arg));
        host[colon - arg] = '\0';
        port = colon + 1;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (host[0] == '\0' || getaddrinfo(host, port, &hints, &res) != 0 || res == NULL)
        return NULL;
    char ip[INET6_ADDRSTRLEN], *out = malloc(INET6_ADDRSTRLEN + 16);
    if (out != NULL) {
        if (res->ai_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)res->ai_addr;
            inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
            snprintf(out, INET6_ADDRSTRLEN + 16, "[%s]:%u", ip, ntohs(a->sin6_port));
        } else {
            const struct sockaddr_in *a = (const struct sockaddr_in *)res->ai_addr;
            inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
            snprintf(out, INET6_ADDRSTRLEN + 16, "%s:%u", ip, ntohs(a->sin_port));
        }
    }
    freeaddrinfo(res);
    return out;
}

static int run(int argc, char **argv, bool seed_mode);

int cmd_download(int argc, char **argv)
{
    return run(argc, argv, false);
}

int cmd_seed(int argc, char **argv)
{
    return run(argc, argv, true);
}

static int parse_minutes(const char *s, int64_t *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || v < 0 || v > 1e7)
        return -1;
    *out = (int64_t)(v * 60);
    return 0;
}

static int run(int argc, char **argv, bool seed_mode)
{
    enum {
        OPT_PEER = 256,
        OPT_NO_TRACKERS,
        OPT_MAX_PEERS,
        OPT_MAX_MEMORY,
        OPT_PORT,
        OPT_CA,
        OPT_LISTEN,
        OPT_SEED_RATIO,
        OPT_SEED_TIME,
        OPT_SLOTS,
        OPT_MAX_DOWN,
        OPT_MAX_UP,
        OPT_STATE_DIR,
        OPT_METADATA_ONLY,
        OPT_NO_DHT,
        OPT_DHT_BOOT,
        OPT_SELECT,
        OPT_PEER_TIMEOUT,
        OPT_PEER_RETRIES,
        OPT_ENCRYPTION,
        OPT_STATS,
        OPT_ON_COMPLETE,
        OPT_CACHED_WRITES
    };
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'o'},
        {"output", required_argument, NULL, 'o'},
        {"peer", required_argument, NULL, OPT_PEER},
        {"no-trackers", no_argument, NULL, OPT_NO_TRACKERS},
        {"max-peers", required_argument, NULL, OPT_MAX_PEERS},
        {"max-memory", required_argument, NULL, OPT_MAX_MEMORY},
        {"port", required_argument, NULL, OPT_PORT},
        {"ca-file", required_argument, NULL, OPT_CA},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"seed-ratio", required_argument, NULL, OPT_SEED_RATIO},
        {"seed-time", required_argument, NULL, OPT_SEED_TIME},
        {"upload-slots", required_argument, NULL, OPT_SLOTS},
        {"max-download-rate", required_argument, NULL, OPT_MAX_DOWN},
        {"max-upload-rate", required_argument, NULL, OPT_MAX_UP},
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {"metadata-only", no_argument, NULL, OPT_METADATA_ONLY},
        {"no-dht", no_argument, NULL, OPT_NO_DHT},
        {"select-file", required_argument, NULL, OPT_SELECT},
        {"dht-bootstrap", required_argument, NULL, OPT_DHT_BOOT},
        {"peer-timeout", required_argument, NULL, OPT_PEER_TIMEOUT},
        {"peer-retries", required_argument, NULL, OPT_PEER_RETRIES},
        {"encryption", required_argument, NULL, OPT_ENCRYPTION},
        {"stats", no_argument, NULL, OPT_STATS},
        {"cached-writes", no_argument, NULL, OPT_CACHED_WRITES},
        {"on-complete", required_argument, NULL, OPT_ON_COMPLETE},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    rv_session_opts_t so;
    rv_add_opts_t ao;
    const char *boot[16];
    size_t nboot = 0;
    rv_file_range_t *selection = NULL;
    char **peers = NULL;
    size_t npeers = 0;
    struct ui u;
    int c, ret = EXIT_USAGE;
    uint64_t v;
    bool json = false, quiet = false, stats = false;

    memset(&so, 0, sizeof(so));
    memset(&ao, 0, sizeof(ao));
    memset(&u, 0, sizeof(u));
    ao.save_dir = ".";
    /* aria2's defaults for download (seed to a ratio of 1.0); seed runs until stopped. */
    ao.seed_ratio = seed_mode ? 0 : 1.0;
    ao.seed_seconds = -1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:d:vqjhV", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
        case 'd':
            ao.save_dir = optarg;
            break;
        case OPT_PEER: {
            char *addr = resolve_peer(optarg);
            if (addr == NULL) {
                cli_error("--peer %s: not HOST:PORT or [IPv6]:PORT, or the host is unknown",
                          optarg);
                goto done;
            }
            char **p = realloc(peers, (npeers + 1) * sizeof(*p));
            if (p == NULL) {
                free(addr);
                goto done;
            }
            peers = p;
            peers[npeers++] = addr;
            break;
        }
        case OPT_NO_TRACKERS:
            ao.no_trackers = true;
            break;
        case OPT_STATE_DIR:
            ao.state_dir = optarg;
            break;
        case OPT_METADATA_ONLY:
            ao.metadata_only = true;
            break;
        case OPT_NO_DHT:
            so.no_dht = true;
            break;
        case OPT_SELECT: {
            rv_error_t e;
            size_t n;
            free(selection);
            selection = NULL;
            if (rv_file_select_parse(optarg, &selection, &n, &e) != 0) {
                cli_error("--select-file: %s", e.msg);
                goto done;
            }
            ao.select = selection;
            ao.select_count = n;
            break;
        }
        case OPT_DHT_BOOT:
            if (nboot == sizeof(boot) / sizeof(boot[0])) {
                cli_error("--dht-bootstrap: at most %zu", sizeof(boot) / sizeof(boot[0]));
                goto done;
            }
            boot[nboot++] = optarg;
            break;
        case OPT_STATS:
            stats = true;
            break;
        case OPT_CACHED_WRITES:
            so.cached_writes = true;
            break;
        case OPT_ON_COMPLETE:
            u.on_complete = optarg;
            break;
        case OPT_MAX_PEERS:
            if (cli_parse_size(optarg, &v) != 0 || v < 1 || v > 10000) {
                cli_error("--max-peers: '%s' is not a number from 1 to 10000", optarg);
                goto done;
            }
            so.max_peers = (unsigned)v;
            break;
        case OPT_MAX_MEMORY:
            if (cli_parse_size(optarg, &v) != 0 || v < (1u << 20)) {
                cli_error("--max-memory: '%s' is not a size of at least 1M", optarg);
                goto done;
            }
            so.max_memory = (size_t)v;
            break;
        case OPT_PORT:
            if (cli_parse_size(optarg, &v) != 0 || v < 1 || v > 65535) {
                cli_error("--port: '%s' is not a port number", optarg);
                goto done;
            }
            so.port = (uint16_t)v;
            break;
        case OPT_CA:
            so.ca_file = optarg;
            break;
        case OPT_LISTEN:
            so.listen_addr = optarg;
            break;
        case OPT_SEED_RATIO: {
            char *end;
            ao.seed_ratio = strtod(optarg, &end);
            if (end == optarg || *end != '\0' || ao.seed_ratio < 0 || ao.seed_ratio > 1e6) {
                cli_error("--seed-ratio: '%s' is not a ratio such as 1.0", optarg);
                goto done;
            }
            break;
        }
        case OPT_SEED_TIME:
            if (parse_minutes(optarg, &ao.seed_seconds) != 0) {
                cli_error("--seed-time: '%s' is not a number of minutes", optarg);
                goto done;
            }
            break;
        case OPT_MAX_DOWN:
        case OPT_MAX_UP:
            if (cli_parse_size(optarg, &v) != 0) {
                cli_error("--max-%s-rate: '%s' is not a rate such as 500K or 2M",
                          c == OPT_MAX_DOWN ? "download" : "upload", optarg);
                goto done;
            }
            if (c == OPT_MAX_DOWN)
                so.max_download_rate = v;
            else
                so.max_upload_rate = v;
            break;
        case OPT_SLOTS:
            if (cli_parse_size(optarg, &v) != 0 || v < 1 || v > 1000) {
                cli_error("--upload-slots: '%s' is not a number from 1 to 1000", optarg);
                goto done;
            }
            so.upload_slots = (unsigned)v;
            break;
        case OPT_PEER_TIMEOUT:
            if (cli_parse_size(optarg, &v) != 0 || v < 1 || v > 86400) {
                cli_error("--peer-timeout: '%s' is not a number of seconds from 1 to 86400",
                          optarg);
                goto done;
            }
            so.peer_timeout_ms = (unsigned)v * 1000;
            break;
        case OPT_PEER_RETRIES:
            if (cli_parse_size(optarg, &v) != 0 || v < 1 || v > 1000) {
                cli_error("--peer-retries: '%s' is not a number from 1 to 1000", optarg);
                goto done;
            }
            so.peer_retries = (unsigned)v;
            break;
        case OPT_ENCRYPTION:
            if (strcmp(optarg, "allow") == 0) {
                so.encryption = RV_ENC_ALLOW;
            } else if (strcmp(optarg, "prefer") == 0) {
                so.encryption = RV_ENC_PREFER;
            } else if (strcmp(optarg, "require") == 0) {
                so.encryption = RV_ENC_REQUIRE;
            } else if (strcmp(optarg, "disable") == 0) {
                so.encryption = RV_ENC_DISABLE;
            } else {
                cli_error("--encryption: '%s' is not one of allow, prefer, require, disable",
                          optarg);
                goto done;
            }
            break;
        case 'v':
            u.verbose = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            fputs(usage, stdout);
            ret = EXIT_OK;
            goto done;
        case 'V':
            printf("rivulet %s\n", RV_VERSION_STRING);
            ret = EXIT_OK;
            goto done;
        default:
            fputs(usage, stderr);
            goto done;
        }
    }
    if (seed_mode ? optind >= argc : optind + 1 != argc) {
        cli_error("%s needs %s FILE.torrent (try rivulet %s --help)",
                  seed_mode ? "seed" : "download", seed_mode ? "at least one" : "exactly one",
                  seed_mode ? "seed" : "download");
        goto done;
    }
    u.torrents = calloc((size_t)(argc - optind), sizeof(*u.torrents));
    u.hooked = calloc((size_t)(argc - optind), sizeof(*u.hooked));
    if (u.torrents == NULL || u.hooked == NULL) {
        cli_error("out of memory");
        ret = EXIT_FAIL;
        goto done;
    }
    bool magnet = strncasecmp(argv[optind], "magnet:", 7) == 0;
    if (ao.metadata_only) {
        if (!magnet) {
            cli_error("--metadata-only needs a magnet link");
            goto done;
        }
        /* -o names the .torrent to write; no data is downloaded. */
        ao.save_torrent = ao.save_dir;
        ao.save_dir = ".";
        if (strcmp(ao.save_torrent, ".") == 0) {
            cli_error("--metadata-only needs -o FILE.torrent");
            goto done;
        }
    }
    ao.peers = (const char *const *)peers;
    ao.peer_count = npeers;
    /* DHT bootstrap: --dht-bootstrap, else $RIVULET_DHT_BOOTSTRAP (tests set it empty), else
     * the well-known routers. */
    static const char *const routers[] = {"router.bittorrent.com:6881",
                                          "dht.transmissionbt.com:6881",
                                          "router.utorrent.com:6881", "dht.libtorrent.org:25401"};
    char envboot[1024];
    const char *env = getenv("RIVULET_DHT_BOOTSTRAP");
    if (nboot == 0 && env != NULL) {
        snprintf(envboot, sizeof(envboot), "%s", env);
        for (char *tok = strtok(envboot, ", "); tok != NULL && nboot < 16; tok = strtok(NULL, ", "))
            boot[nboot++] = tok;
        so.dht_bootstrap = boot;
        so.dht_bootstrap_count = nboot;
    } else if (nboot == 0) {
        so.dht_bootstrap = routers;
        so.dht_bootstrap_count = sizeof(routers) / sizeof(routers[0]);
    } else {
        so.dht_bootstrap = boot;
        so.dht_bootstrap_count = nboot;
    }
    u.out = json ? OUT_JSON : quiet ? OUT_QUIET : isatty(STDERR_FILENO) ? OUT_TTY : OUT_PLAIN;

    if (!rv_encryption_rc4_available()) {
        if (so.encryption == RV_ENC_REQUIRE) {
            cli_error("--encryption require: RC4 is unavailable (OpenSSL's legacy provider "
                      "cannot be loaded)");
            ret = EXIT_USAGE;
            goto done;
        }
        if (so.encryption != RV_ENC_DISABLE && !quiet)
            fprintf(stderr, "rivulet: RC4 is unavailable (OpenSSL's legacy provider cannot be "
                            "loaded): encrypted peers get plaintext after the MSE handshake\n");
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    u.loop = &loop;
    u.save_dir = ao.save_dir;
    u.metadata_only = ao.metadata_only;
    so.on_event = on_event;
    so.event_ud = &u;
    if (rv_session_new(&loop, &so, &u.session) != 0) {
        cli_error("cannot start: no port to accept peers on%s%s (try --port or --listen)",
                  so.listen_addr ? " at " : "", so.listen_addr ? so.listen_addr : "");
        ret = EXIT_NET;
        uv_loop_close(&loop);
        goto done;
    }
    rv_error_t err;
    int rc = 0;
    const char *failed = NULL;
    for (int i = optind; i < argc && rc == 0; i++) {
        bool mag = strncasecmp(argv[i], "magnet:", 7) == 0;
        rv_torrent_t **slot = &u.torrents[u.ntorrents];
        rc = mag ? rv_session_add_magnet(u.session, argv[i], &ao, slot, &err)
                 : rv_session_add(u.session, argv[i], &ao, slot, &err);
        if (rc == 0)
            u.ntorrents++;
        else
            failed = argv[i];
    }
    u.torrent = u.torrents[0];
    if (rc != 0) {
        /* Those already added stop with the session. */
        cli_report(failed, &err);
        ret = rc == RV_EIO || rc == RV_EPATH ? EXIT_DISK : rc == RV_EINVAL ? EXIT_USAGE
                                                                          : EXIT_TORRENT;
        rv_session_free(u.session);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        goto done;
    }
    clock_gettime(CLOCK_MONOTONIC, &u.start);
    /* The UI's handles must not keep the loop alive: the run ends when the torrent stops. */
    uv_timer_init(&loop, &u.timer);
    u.timer.data = &u;
    uv_timer_start(&u.timer, on_timer, 250, 250);
    uv_unref((uv_handle_t *)&u.timer);
    uv_signal_init(&loop, &u.sigint);
    uv_signal_init(&loop, &u.sigterm);
    u.sigint.data = u.sigterm.data = &u;
    uv_signal_start(&u.sigint, on_signal, SIGINT);
    uv_signal_start(&u.sigterm, on_signal, SIGTERM);
    uv_unref((uv_handle_t *)&u.sigint);
    uv_unref((uv_handle_t *)&u.sigterm);

    rv_session_run(u.session);

    rv_torrent_status_t st;
    status_all(&u, &st);
    draw(&u, true);
    double secs = since(&u.start);
    if (stats)
        print_stats(&u, secs);
    bool have_info = true;
    for (size_t i = 0; i < u.ntorrents; i++)
        have_info = have_info && rv_torrent_info(u.torrents[i]) != NULL;
    bool disk_error = st.error_code == RV_EIO || st.error_code == RV_EPATH;
    if (seed_mode && disk_error && !u.interrupted) {
        /* A seed stopped by its data (a file gone, shorter, unreadable) failed, complete or
         * not: the error event has named the file. */
        ret = EXIT_DISK;
    } else if (ao.metadata_only && have_info && st.error_code == 0) {
        ret = EXIT_OK;
        if (u.out != OUT_QUIET && u.out != OUT_JSON)
            fprintf(stderr, "done: metadata of %s saved to %s in %.1f s\n",
                    cli_safe(rv_torrent_name(u.torrent)), ao.save_torrent, secs);
    } else if (have_info && !ao.metadata_only && st.pieces_have >= st.pieces_wanted) {
        ret = EXIT_OK;
        if (u.out != OUT_QUIET && u.out != OUT_JSON) {
            char size[32];
            cli_human_size(st.bytes_total, size, sizeof(size));
            fprintf(stderr,
                    "done: %s%s in %.1f s (%.1f MiB/s), %u pieces, %u failed, %u banned\n",
                    size, u.ntorrents > 1 ? " (all torrents)" : "", secs,
                    secs > 0 ? (double)st.downloaded / 1048576.0 / secs : 0.0, st.pieces_have,
                    st.pieces_failed, st.peers_banned);
        }
    } else if (u.interrupted) {
        ret = 130;
    } else if (disk_error) {
        ret = EXIT_DISK;
    } else {
        ret = EXIT_INCOMPLETE;
    }
    uv_close((uv_handle_t *)&u.timer, NULL);
    uv_close((uv_handle_t *)&u.sigint, NULL);
    uv_close((uv_handle_t *)&u.sigterm, NULL);
    rv_session_free(u.session);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
done:
    free(u.torrents);
    free(u.hooked);
    for (size_t i = 0; i < npeers; i++)
        free(peers[i]);
    free(peers);
    free(selection);
    return ret;
}
