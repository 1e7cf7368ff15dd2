/* libFuzzer target for UDP tracker replies (BEP 15): any datagram, read both as an IPv4 and as
 * an IPv6 reply, must parse or fail cleanly (no crash, no leak, no read past the end), and a
 * success must keep what udp_parse_reply promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "swarm/peers.h"
#include "tracker/tracker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *data, size_t size, int ipv6)
{
    struct udp_reply rep;
    rv_error_t err;

    memset(&err, 0, sizeof(err));
    int rc = udp_parse_reply(data, size, ipv6, &rep, &err);
    if (rc != 0) {
        if (rc != RV_ETRACKER && rc != RV_ENOMEM)
            abort();
        if (err.code != rc || err.msg[0] == '\0' || memchr(err.msg, '\0', sizeof(err.msg)) == NULL)
            abort();
        if (rep.announce.peers != NULL || rep.announce.peer_count != 0)
            abort();
        if (err.has_offset && err.offset > size)
            abort();
        /* an error reply's text is made printable */
        for (const char *m = err.msg; *m; m++)
            if ((unsigned char)*m < 0x20 || (unsigned char)*m >= 0x7f)
                abort();
        return;
    }
    if (size < 8)
        abort();
    switch (rep.action) {
    case UDP_CONNECT:
        if (size < 16)
            abort();
        break;
    case UDP_ANNOUNCE: {
        const struct announce_resp *a = &rep.announce;
        size_t entry = ipv6 ? 18 : 6;
        if (size < 20 || (size - 20) % entry != 0 || a->interval <= 0)
            abort();
        if (a->peer_count > TRACKER_MAX_PEERS || (a->peers == NULL) != (a->peer_count == 0))
            abort();
        if (a->peer_count + a->peers_dropped != (size - 20) / entry)
            abort();
        if (a->warning != NULL || a->tracker_id != NULL || a->min_interval != -1)
            abort();
        for (size_t i = 0; i < a->peer_count; i++)
            if (!peer_addr_is_valid(&a->peers[i]) || a->peers[i].family != (ipv6 ? 6 : 4))
                abort();
        announce_resp_free(&rep.announce);
        break;
    }
    case UDP_SCRAPE:
        if (size < 20 || rep.scrape.complete < 0 || rep.scrape.incomplete < 0 ||
            rep.scrape.downloaded < 0)
            abort();
        break;
    default:
        abort(); /* errors and unknown actions never succeed */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size, 0);
    check(data, size, 1);
    return 0;
}
