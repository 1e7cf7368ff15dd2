/* libFuzzer target: arbitrary bytes into a live connection's state machine. One session, on
 * its own loop, holds three torrents: one seeding (its data on disk), one downloading (an empty
 * folder) and one magnet link still fetching its metadata. Each input is one incoming TCP
 * connection on loopback: the first byte picks the torrent (and whether a proper handshake for
 * it goes first, or the input is the whole byte stream), the next 8 are the handshake's
 * reserved bits (fast extension, extension protocol, DHT), the rest is sent as the peer's
 * messages, then the write side is shut. The loop runs until rivulet closes the connection (or
 * a bound), so every message handler in src/session and src/peer sees the bytes as a real peer
 * would send them, and whatever rivulet answers is read and dropped. The session is made anew
 * every few thousand inputs, so bans earned by one input do not hide the code from the next. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "rivulet/metainfo.h"
#include "rivulet/session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SESSION_INPUTS 4000 /* inputs before the session is made anew */
#define MAX_WAIT_MS 2000    /* per input: rivulet answers within this or the input ends */

static uv_loop_t loop;
static rv_session_t *session;
static rv_torrent_t *torrents[3];
static uint8_t hashes[3][20];
static char root[] = "/tmp/rv-fuzz-peer.XXXXXX";
static char paths[4][300];
static unsigned inputs;
static unsigned next_ip;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_peer: %s\n", what);
    abort();
}

static void write_file(const char *path, size_t len, uint8_t salt)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        die("cannot write the payload");
    for (size_t i = 0; i < len; i++)
        fputc((int)((i * 131 + salt) & 0xff), f);
    fclose(f);
}

static uint8_t *metainfo[2]; /* the two .torrent files, made once */
static size_t metainfo_len[2];

/* A v1 torrent of path, with 16 KiB pieces, kept as metainfo[which]. */
static void make_torrent(const char *path, int which)
{
    rv_create_opts_t co = {.path = path, .piece_length = 16384, .creation_date = -1, .threads = 1};
    rv_error_t err;
    if (rv_create(&co, &metainfo[which], &metainfo_len[which], &err) != 0)
        die(err.msg);
}

static rv_torrent_info_t *parse_torrent(int which)
{
    rv_error_t err;
    rv_torrent_info_t *ti;
    if (rv_torrent_parse(metainfo[which], metainfo_len[which], 0, &ti, &err) != 0)
        die(err.msg);
    memcpy(hashes[which], ti->info_hash, 20);
    return ti;
}

static void run_until(uint64_t ms)
{
    uint64_t end = uv_now(&loop) + ms;
    while (uv_now(&loop) < end) {
        uv_run(&loop, UV_RUN_NOWAIT);
        struct pollfd p = {uv_backend_fd(&loop), POLLIN, 0};
        poll(&p, 1, 5);
        uv_update_time(&loop);
    }
}

static void session_up(void)
{
    rv_session_opts_t so = {0};
    so.listen_addr = "127.0.0.1";
    so.no_dht = true;
    so.max_peers = 200;
    /* a port from the pid, moved along on each restart */
    so.port = (uint16_t)(20000 + (getpid() * 7 + inputs / SESSION_INPUTS * 13) % 30000);
    if (rv_session_new(&loop, &so, &session) != 0)
        die("no session");
    rv_add_opts_t ao = {0};
    ao.no_trackers = true;
    ao.no_resume = true;
    ao.seed_seconds = -1;
    rv_error_t err;
    rv_torrent_info_t *ti = parse_torrent(0);
    ao.save_dir = paths[1]; /* seeding: the folder holding seed.bin */
    if (rv_session_add_info(session, ti, &ao, &torrents[0], &err) != 0)
        die(err.msg);
    ti = parse_torrent(1);
    ao.save_dir = paths[3]; /* downloading: an empty folder */
    if (rv_session_add_info(session, ti, &ao, &torrents[1], &err) != 0)
        die(err.msg);
    /* a magnet link for a third torrent: its metadata is never known to rivulet */
    for (int i = 0; i < 20; i++)
        hashes[2][i] = (uint8_t)(hashes[1][i] ^ 0x5a);
    char uri[128] = "magnet:?xt=urn:btih:";
    for (int i = 0; i < 20; i++)
        snprintf(uri + strlen(uri), 3, "%02x", hashes[2][i]);
    ao.save_dir = paths[3];
    if (rv_session_add_magnet(session, uri, &ao, &torrents[2], &err) != 0)
        die(err.msg);
    /* let the seeding torrent check its data */
    for (int i = 0; i < 400; i++) {
        rv_torrent_status_t st;
        rv_torrent_status(torrents[0], &st);
        if (st.state == RV_STATE_SEEDING)
            return;
        run_until(10);
    }
    die("the seeding torrent never finished its check");
}

static void session_down(void)
{
    rv_session_free(session);
    uv_run(&loop, UV_RUN_DEFAULT);
    session = NULL;
}

static void cleanup(void)
{
    if (session != NULL)
        session_down();
    for (int i = 0; i < 4; i++) {
        char p[400];
        snprintf(p, sizeof(p), "%s/dl.bin", paths[i]);
        unlink(p);
    }
    unlink(paths[0]);
    unlink(paths[2]);
    rmdir(paths[3]);
    rmdir(paths[1]);
    rmdir(root);
    free(metainfo[0]);
    free(metainfo[1]);
}

static void setup(void)
{
    if (mkdtemp(root) == NULL)
        die("mkdtemp");
    snprintf(paths[1], sizeof(paths[1]), "%s", root);
    snprintf(paths[0], sizeof(paths[0]), "%s/seed.bin", root);
    snprintf(paths[2], sizeof(paths[2]), "%s/dl.bin", root);
    snprintf(paths[3], sizeof(paths[3]), "%s/down", root);
    write_file(paths[0], 3 * 16384 + 1000, 1); /* 4 pieces, the last short */
    write_file(paths[2], 5 * 16384 + 77, 2);   /* 6 pieces */
    mkdir(paths[3], 0700);
    make_torrent(paths[0], 0);
    make_torrent(paths[2], 1);
    /* dl.bin was only needed to make its torrent: the download starts from nothing */
    unlink(paths[2]);
    uv_loop_init(&loop);
    session_up();
    atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (session == NULL)
        setup();
    if (size < 9)
        return 0;
    if (++inputs % SESSION_INPUTS == 0) {
        session_down();
        session_up();
    }
    unsigned pick = data[0] % 3;
    bool raw = (data[0] & 0x80) != 0;
    uint8_t msg[68];
    msg[0] = 19;
    memcpy(msg + 1, "BitTorrent protocol", 19);
    memcpy(msg + 20, data + 1, 8);
    memcpy(msg + 28, hashes[pick], 20);
    memcpy(msg + 48, "-FZ0001-fuzzfuzzfuzz", 20);
    data += 9;
    size -= 9;

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        die("socket");
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000002u + next_ip++ % 250); /* 127.0.0.2 .. 127.0.0.251 */
    bind(fd, (struct sockaddr *)&src, sizeof(src));
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(rv_session_port(session))};
    dst.sin_addr.s_addr = htonl(0x7f000001u);
    if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) != 0 && errno != EINPROGRESS)
        die("connect");
    size_t hs_left = raw ? 0 : sizeof(msg), left = size;
    bool shut = false;
    uint64_t end = uv_now(&loop) + MAX_WAIT_MS;
    for (;;) {
        uv_run(&loop, UV_RUN_NOWAIT);
        while (hs_left > 0) {
            ssize_t n = send(fd, msg + sizeof(msg) - hs_left, hs_left, MSG_NOSIGNAL);
            if (n <= 0)
                break;
            hs_left -= (size_t)n;
        }
        while (hs_left == 0 && left > 0) {
            ssize_t n = send(fd, data + size - left, left, MSG_NOSIGNAL);
            if (n <= 0)
                break;
            left -= (size_t)n;
        }
        if (hs_left == 0 && left == 0 && !shut) {
            shutdown(fd, SHUT_WR);
            shut = true;
        }
        char sink[65536];
        ssize_t n = recv(fd, sink, sizeof(sink), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN))
            break; /* rivulet closed the connection */
        uv_update_time(&loop);
        if (uv_now(&loop) >= end)
            break;
        struct pollfd p[2] = {{fd, POLLIN, 0}, {uv_backend_fd(&loop), POLLIN, 0}};
        poll(p, 2, 5);
    }
    close(fd);
    /* let rivulet see the close and free the connection */
    for (int i = 0; i < 4; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    return 0;
}
