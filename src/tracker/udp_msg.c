/* UDP tracker messages (BEP 15, BEP 41 url data): building requests and parsing replies. Pure
 * byte code with no I/O, so the unit tests and the fuzz target drive it directly. */
#include <stdlib.h>
#include <string.h>

#include "swarm/peers.h"
#include "tracker/tracker.h"
#include "util/be.h"
#include "util/err.h"

#define UDP_ANNOUNCE_LEN 98 /* BEP 15: the announce request without options */
#define UDP_REPLY_HEAD 8    /* action + transaction id, common to every reply */
#define UDP_CONNECT_REPLY 16
#define UDP_ANNOUNCE_REPLY 20 /* head + interval, leechers, seeders */
#define UDP_SCRAPE_ENTRY 12   /* seeders, completed, leechers */
#define UDP_ERROR_MSG_MAX 200 /* bytes of a tracker's error text kept in rv_error_t */

/* BEP 41 option types */
#define UDP_OPT_URLDATA 0x2
#define UDP_OPT_CHUNK 255 /* an option's length is one byte */

size_t udp_build_connect(uint32_t transaction, uint8_t *out)
{
    be_put64(out, UDP_PROTOCOL_ID);
    be_put32(out + 8, UDP_CONNECT);
    be_put32(out + 12, transaction);
    return 16;
}

size_t udp_build_announce(uint64_t connection, uint32_t transaction, const struct announce_req *req,
                          const char *url_data, uint8_t *out)
{
    be_put64(out, connection);
    be_put32(out + 8, UDP_ANNOUNCE);
    be_put32(out + 12, transaction);
    memcpy(out + 16, req->info_hash, 20);
    memcpy(out + 36, req->peer_id, 20);
    be_put64(out + 56, req->downloaded);
    be_put64(out + 64, req->left);
    be_put64(out + 72, req->uploaded);
    be_put32(out + 80, (uint32_t)req->event);
    be_put32(out + 84, 0); /* IP address: 0, the tracker uses the packet's source */
    be_put32(out + 88, req->key);
    be_put32(out + 92, (uint32_t)req->numwant); /* -1 is 0xffffffff: the tracker's default */
    out[96] = (uint8_t)(req->port >> 8);
    out[97] = (uint8_t)req->port;

    size_t len = UDP_ANNOUNCE_LEN;
    if (url_data == NULL)
        return len;
    /* BEP 41: the path and query go in URLData options of at most 255 bytes each, which the
     * tracker concatenates. Whatever would not fit in one packet is left out; udp.c refuses
     * such URLs before they get here. */
    size_t rest = strlen(url_data);
    const char *s = url_data;
    while (rest > 0 && UDP_MAX_PACKET - len > 2) {
        size_t n = rest < UDP_OPT_CHUNK ? rest : UDP_OPT_CHUNK;
        if (n > UDP_MAX_PACKET - len - 2)
            n = UDP_MAX_PACKET - len - 2;
        out[len] = UDP_OPT_URLDATA;
        out[len + 1] = (uint8_t)n;
        memcpy(out + len + 2, s, n);
        len += 2 + n;
        s += n;
        rest -= n;
    }
    return len;
}

size_t udp_build_scrape(uint64_t connection, uint32_t transaction, const uint8_t info_hash[20],
                        uint8_t *out)
{
    be_put64(out, connection);
    be_put32(out + 8, UDP_SCRAPE);
    be_put32(out + 12, transaction);
    memcpy(out + 16, info_hash, 20);
    return 36;
}

/* The tracker's error text, made safe to show: printable ASCII kept, anything else '?',
 * trailing NULs (some trackers send C strings) dropped, and capped. */
static int parse_error(const uint8_t *p, size_t len, rv_error_t *err)
{
    char msg[UDP_ERROR_MSG_MAX + 4];
    size_t n = 0;

    while (len > 0 && p[len - 1] == '\0')
        len--;
    for (size_t i = 0; i < len && n < UDP_ERROR_MSG_MAX; i++)
        msg[n++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    if (len > UDP_ERROR_MSG_MAX) {
        memcpy(msg + n, "...", 3);
        n += 3;
    }
    msg[n] = '\0';
    if (n == 0)
        return err_set(err, RV_ETRACKER, "tracker said: (no message)");
    return err_set(err, RV_ETRACKER, "tracker said: %s", msg);
}

static int parse_announce(const uint8_t *p, size_t len, int ipv6, struct announce_resp *a,
                          rv_error_t *err)
{
    /* opentracker answers an announce for a torrent it does not serve (not whitelisted) with
     * the bare 8-byte head: say what that probably means. */
    if (len == UDP_REPLY_HEAD)
        return err_set(err, RV_ETRACKER,
                       "announce reply of 8 bytes is too short, with no interval or peers (the "
                       "tracker may not serve this torrent)");
    if (len < UDP_ANNOUNCE_REPLY)
        return err_set(err, RV_ETRACKER,
                       "announce reply of %zu bytes is too short (BEP 15: at least %d)", len,
                       UDP_ANNOUNCE_REPLY);
    /* BEP 15 gives interval, leechers and seeders as 32-bit integers. */
    int32_t interval = (int32_t)be_get32(p + 8);
    if (interval <= 0)
        return err_set_at(err, RV_ETRACKER, 8, "announce interval %ld is not positive",
                          (long)interval);
    a->interval = interval;
    a->min_interval = -1;
    a->incomplete = be_get32(p + 12);
    a->complete = be_get32(p + 16);
    a->downloaded = -1;

    /* BEP 15: the address family of the reply decides the size of a peer entry. */
    size_t entry = ipv6 ? 18 : 6;
    size_t body = len - UDP_ANNOUNCE_REPLY;
    if (body % entry != 0)
        return err_set_at(err, RV_ETRACKER, UDP_ANNOUNCE_REPLY,
                          "peer list of %zu bytes is not a whole number of %zu-byte %s entries",
                          body, entry, ipv6 ? "IPv6" : "IPv4");
    size_t count = body / entry;
    size_t keep = count < TRACKER_MAX_PEERS ? count : TRACKER_MAX_PEERS;
    if (keep == 0)
        return 0;
    a->peers = calloc(keep, sizeof(*a->peers));
    if (a->peers == NULL)
        return err_set(err, RV_ENOMEM, "out of memory for %zu peers", keep);
    for (size_t i = 0; i < count; i++) {
        const uint8_t *e = p + UDP_ANNOUNCE_REPLY + i * entry;
        struct peer_addr pa;

        memset(&pa, 0, sizeof(pa));
        pa.family = ipv6 ? 6 : 4;
        memcpy(pa.ip, e, entry - 2);
        pa.port = (uint16_t)(e[entry - 2] << 8 | e[entry - 1]);
        if (a->peer_count == keep || !peer_addr_is_valid(&pa)) {
            a->peers_dropped++;
            continue;
        }
        a->peers[a->peer_count++] = pa;
    }
    if (a->peer_count == 0) {
        free(a->peers);
        a->peers = NULL;
    }
    return 0;
}

int udp_parse_reply(const uint8_t *p, size_t len, int ipv6, struct udp_reply *out, rv_error_t *err)
{
    memset(out, 0, sizeof(*out));
    out->announce.complete = out->announce.incomplete = out->announce.downloaded = -1;
    out->announce.min_interval = -1;
    out->scrape.complete = out->scrape.incomplete = out->scrape.downloaded = -1;
    if (len < UDP_REPLY_HEAD)
        return err_set(err, RV_ETRACKER, "reply of %zu bytes is too short", len);
    /* Filled before any further check so that the caller can route even a malformed reply
     * to the request it answers. */
    out->action = be_get32(p);
    out->transaction = be_get32(p + 4);

    switch (out->action) {
    case UDP_CONNECT:
        if (len < UDP_CONNECT_REPLY)
            return err_set(err, RV_ETRACKER,
                           "connect reply of %zu bytes is too short (BEP 15: at least %d)", len,
                           UDP_CONNECT_REPLY);
        out->connection = be_get64(p + 8);
        return 0;
    case UDP_ANNOUNCE: {
        int rc = parse_announce(p, len, ipv6, &out->announce, err);
        if (rc < 0) {
            free(out->announce.peers);
            out->announce.peers = NULL;
            out->announce.peer_count = 0;
        }
        return rc;
    }
    case UDP_SCRAPE:
        if (len < UDP_REPLY_HEAD + UDP_SCRAPE_ENTRY)
            return err_set(err, RV_ETRACKER,
                           "scrape reply of %zu bytes is too short (BEP 15: at least %d)", len,
                           UDP_REPLY_HEAD + UDP_SCRAPE_ENTRY);
        /* One info-hash was asked for: the first entry answers it. */
        out->scrape.complete = be_get32(p + 8);
        out->scrape.downloaded = be_get32(p + 12);
        out->scrape.incomplete = be_get32(p + 16);
        return 0;
    case UDP_ERROR:
        return parse_error(p + UDP_REPLY_HEAD, len - UDP_REPLY_HEAD, err);
    default:
        return err_set_at(err, RV_ETRACKER, 0, "unknown action %lu in reply",
                          (unsigned long)out->action);
    }
}
