/* libFuzzer target for HTTP tracker replies (BEP 3, 7, 23, 48): any bytes must parse or fail
 * cleanly as an announce reply and as a scrape reply (no crash, no leak, no read past the end),
 * and a success must keep what tracker.h promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tracker/tracker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error(int rc, const rv_error_t *err, size_t size)
{
    if (err->code != rc || err->msg[0] == '\0' || (err->has_offset && err->offset > size))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes, so ASan catches any read past the end. */
    uint8_t *p = malloc(size ? size : 1);
    if (p == NULL)
        return 0;
    if (size)
        memcpy(p, data, size);

    struct announce_resp r;
    rv_error_t err;
    int rc = http_parse_announce(p, size, &r, &err);
    if (rc == 0) {
        if (r.interval <= 0 || r.interval > 7 * 86400 || r.min_interval == 0 ||
            r.min_interval < -1 || r.peer_count > TRACKER_MAX_PEERS ||
            (r.peer_count > 0 && r.peers == NULL) || r.complete < -1 || r.incomplete < -1 ||
            r.downloaded < -1)
            abort();
        for (size_t i = 0; i < r.peer_count; i++)
            if ((r.peers[i].family != 4 && r.peers[i].family != 6) || r.peers[i].port == 0)
                abort();
        if (r.warning != NULL && strlen(r.warning) >= 512)
            abort();
        announce_resp_free(&r);
    } else {
        check_error(rc, &err, size);
        if (r.peers != NULL || r.warning != NULL || r.tracker_id != NULL)
            abort();
    }

    /* Seeds key their scrape entries by this hash, so both the found and missing paths run. */
    static const uint8_t hash[20] = "aaaaaaaaaaaaaaaaaaaa";
    struct scrape_resp s;
    rc = http_parse_scrape(p, size, hash, &s, &err);
    if (rc == 0) {
        if (s.complete < -1 || s.incomplete < -1 || s.downloaded < -1)
            abort();
    } else {
        check_error(rc, &err, size);
    }
    free(p);
    return 0;
}
