/* Tracker requests and replies shared by the HTTP (BEP 3, 23, 7, 48) and UDP (BEP 15, 41)
 * clients and the announcer. Plain data; the transports own no torrent state. */
#ifndef RV_TRACKER_H
#define RV_TRACKER_H

#include <stddef.h>
#include <stdint.h>

#include "rivulet/error.h"
#include "swarm/peers.h"
#include "util/buf.h"

#define TRACKER_MAX_PEERS 10000      /* peers taken from one reply; the rest are dropped */
#define TRACKER_MAX_BODY (2u << 20)  /* largest HTTP reply body read */
#define TRACKER_MAX_REDIRECTS 5

enum tracker_event {
    TR_EVENT_NONE = 0, /* the UDP protocol's numbering (BEP 15) */
    TR_EVENT_COMPLETED = 1,
    TR_EVENT_STARTED = 2,
    TR_EVENT_STOPPED = 3
};

struct announce_req {
    uint8_t info_hash[20];
    uint8_t peer_id[20];
    uint16_t port;
    uint64_t uploaded, downloaded, left;
    enum tracker_event event;
    int32_t numwant;        /* -1: tracker default */
    uint32_t key;           /* random per session, lets a tracker recognise us across IPs */
    const char *trackerid;  /* echoed from an earlier HTTP reply, or NULL; borrowed */
};

struct announce_resp {
    int64_t interval;     /* seconds, > 0 */
    int64_t min_interval; /* seconds, or -1 */
    int64_t complete, incomplete, downloaded; /* -1 when the tracker did not say */
    char *warning;        /* HTTP 'warning message', or NULL */
    char *tracker_id;     /* HTTP 'tracker id', or NULL */
    struct peer_addr *peers;
    size_t peer_count;
    size_t peers_dropped; /* malformed or over TRACKER_MAX_PEERS */
};

struct scrape_resp {
    int64_t complete, incomplete, downloaded; /* -1 when absent */
};

/* Frees what an announce_resp owns and zeroes it. */
void announce_resp_free(struct announce_resp *r);

/* ---- HTTP (pure message code: no I/O) ---- */

/* Appends base's announce query to out: info_hash and peer_id percent-encoded as raw bytes,
 * port, uploaded, downloaded, left, compact=1, event, numwant, key, trackerid. Keeps a query
 * string already in base. */
int http_announce_url(const char *base, const struct announce_req *req, struct buf *out);
/* BEP 48: the scrape URL of an announce URL whose last path part starts with "announce",
 * with info_hash appended; RV_EINVAL when the tracker has no scrape URL. */
int http_scrape_url(const char *announce, const uint8_t info_hash[20], struct buf *out);
/* Parses an announce reply body. A 'failure reason' gives RV_ETRACKER with the tracker's
 * words in err; malformed replies give RV_ETRACKER naming what was wrong. */
int http_parse_announce(const uint8_t *body, size_t len, struct announce_resp *out,
                        rv_error_t *err);
int http_parse_scrape(const uint8_t *body, size_t len, const uint8_t info_hash[20],
                      struct scrape_resp *out, rv_error_t *err);

/* ---- UDP (BEP 15; pure message code) ---- */

enum { UDP_CONNECT = 0, UDP_ANNOUNCE = 1, UDP_SCRAPE = 2, UDP_ERROR = 3 };
#define UDP_PROTOCOL_ID 0x41727101980ULL
#define UDP_MAX_PACKET 2048

/* Each builder writes into out (UDP_MAX_PACKET bytes) and returns the length. */
size_t udp_build_connect(uint32_t transaction, uint8_t *out);
/* url_data: BEP 41 path and query ("/path?x=y") sent as option 0x2 in 255-byte chunks, or
 * NULL. */
size_t udp_build_announce(uint64_t connection, uint32_t transaction, const struct announce_req *req,
                          const char *url_data, uint8_t *out);
size_t udp_build_scrape(uint64_t connection, uint32_t transaction, const uint8_t info_hash[20],
                        uint8_t *out);

struct udp_reply {
    uint32_t action;
    uint32_t transaction;
    uint64_t connection;         /* UDP_CONNECT */
    struct announce_resp announce; /* UDP_ANNOUNCE (peers owned: announce_resp_free) */
    struct scrape_resp scrape;   /* UDP_SCRAPE */
};

/* Parses a datagram. ipv6 says whether announce peers are 18-byte (IPv6) or 6-byte entries
 * (the reply's family decides, BEP 15). An UDP_ERROR reply returns RV_ETRACKER with the
 * tracker's message in err; short or malformed packets return RV_ETRACKER naming the fault. */
int udp_parse_reply(const uint8_t *p, size_t len, int ipv6, struct udp_reply *out,
                    rv_error_t *err);

#endif
