/* HTTP tracker messages (BEP 3, 7, 23, 48): announce and scrape URLs out, bencoded replies in.
 * Pure code: no I/O, no globals, so unit tests and the fuzz target drive it directly. */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bencode/bencode.h"
#include "swarm/peers.h"
#include "tracker/tracker.h"
#include "util/err.h"
#include "util/text.h"
#include "util/url.h"

/* Intervals above a week are clamped: a tracker's huge value would otherwise stop us
 * announcing for years, and seconds * 1000 would overflow a millisecond timer. */
#define MAX_INTERVAL (7 * 86400)
/* Longest tracker text kept ('failure reason' in err->msg, 'warning message'). */
#define MAX_REASON 200
#define MAX_WARNING 512
/* A 'tracker id' is echoed back in every announce URL; a longer one is ignored. */
#define MAX_TRACKER_ID 256

void announce_resp_free(struct announce_resp *r)
{
    if (r == NULL)
        return;
    free(r->warning);
    free(r->tracker_id);
    free(r->peers);
    memset(r, 0, sizeof(*r));
}

/* ---- URLs ---- */

static const char *event_name(enum tracker_event e)
{
    switch (e) {
    case TR_EVENT_STARTED:
        return "started";
    case TR_EVENT_COMPLETED:
        return "completed";
    case TR_EVENT_STOPPED:
        return "stopped";
    case TR_EVENT_NONE:
        return "";
    }
    return NULL;
}

/* The separator before a new query parameter: '?' when there is no query yet, nothing when the
 * query already ends in '?' or '&', else '&'. */
static const char *query_sep(const char *url, size_t len)
{
    const char *q = memchr(url, '?', len);
    if (q == NULL)
        return "?";
    if (url[len - 1] == '?' || url[len - 1] == '&')
        return "";
    return "&";
}

static int append_encoded(struct buf *out, const char *name, const uint8_t *p, size_t n)
{
    char *enc = url_encode_bytes(p, n);
    if (enc == NULL)
        return RV_ENOMEM;
    int rc = buf_printf(out, "%s=%s", name, enc);
    free(enc);
    return rc;
}

int http_announce_url(const char *base, const struct announce_req *req, struct buf *out)
{
    size_t start = out->len;
    int rc;

    if (base == NULL || req == NULL)
        return RV_EINVAL;
    const char *event = event_name(req->event);
    if (event == NULL)
        return RV_EINVAL;
    /* A fragment is never sent to the server; parameters after it would be lost. */
    size_t blen = strcspn(base, "#");
    if (blen == 0)
        return RV_EINVAL;

    rc = buf_append(out, base, blen);
    if (rc == 0)
        rc = buf_append_str(out, query_sep(base, blen));
    /* BEP 3: info_hash and peer_id are the raw 20 bytes, percent-encoded. */
    if (rc == 0)
        rc = append_encoded(out, "info_hash", req->info_hash, 20);
    if (rc == 0)
        rc = append_encoded(out, "&peer_id", req->peer_id, 20);
    /* BEP 23: compact=1 asks for the 6-byte peer list. */
    if (rc == 0)
        rc = buf_printf(out, "&port=%u&uploaded=%llu&downloaded=%llu&left=%llu&compact=1",
                        (unsigned)req->port, (unsigned long long)req->uploaded,
                        (unsigned long long)req->downloaded, (unsigned long long)req->left);
    if (rc == 0 && event[0] != '\0')
        rc = buf_printf(out, "&event=%s", event);
    if (rc == 0 && req->numwant >= 0)
        rc = buf_printf(out, "&numwant=%ld", (long)req->numwant);
    if (rc == 0)
        rc = buf_printf(out, "&key=%08X", (unsigned)req->key);
    if (rc == 0 && req->trackerid != NULL)
        rc = append_encoded(out, "&trackerid", (const uint8_t *)req->trackerid,
                            strlen(req->trackerid));
    if (rc != 0)
        out->len = start;
    return rc;
}

int http_scrape_url(const char *announce, const uint8_t info_hash[20], struct buf *out)
{
    size_t start = out->len;
    int rc;

    if (announce == NULL || info_hash == NULL)
        return RV_EINVAL;
    const char *auth = strstr(announce, "://");
    if (auth == NULL)
        return RV_EINVAL;
    auth += 3;
    /* The path runs from the first '/' after the authority to the query or fragment, so a
     * '/' inside the query ("?next=/announce") is not mistaken for part of the path. */
    size_t rest = strcspn(auth, "?#");
    const char *path = memchr(auth, '/', rest);
    if (path == NULL)
        return RV_EINVAL;
    const char *path_end = auth + rest;
    const char *slash = path;
    for (const char *p = path; p < path_end; p++)
        if (*p == '/')
            slash = p;
    /* BEP 48: only when the text after the last '/' starts with "announce" does the tracker
     * have a scrape URL: that word becomes "scrape", everything else is kept. */
    static const char word[] = "announce";
    size_t wlen = sizeof(word) - 1;
    if ((size_t)(path_end - slash - 1) < wlen || memcmp(slash + 1, word, wlen) != 0)
        return RV_EINVAL;
    size_t qlen = strcspn(path_end, "#");

    rc = buf_append(out, announce, (size_t)(slash + 1 - announce));
    if (rc == 0)
        rc = buf_append_str(out, "scrape");
    if (rc == 0)
        rc = buf_append(out, slash + 1 + wlen, (size_t)(path_end - (slash + 1 + wlen)));
    if (rc == 0)
        rc = buf_append(out, path_end, qlen);
    if (rc == 0)
        rc = buf_append_str(out, qlen ? query_sep(path_end, qlen) : "?");
    if (rc == 0)
        rc = append_encoded(out, "info_hash", info_hash, 20);
    if (rc != 0)
        out->len = start;
    return rc;
}

/* ---- replies ---- */


static const char *type_name(enum btype t)
{
    switch (t) {
    case BT_INT:
        return "an integer";
    case BT_STR:
        return "a string";
    case BT_LIST:
        return "a list";
    case BT_DICT:
        return "a dictionary";
    }
    return "a value";
}

static bool is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Decodes a reply body into doc and checks that its root is a dictionary. Keys need not be
 * sorted (trackers in the wild do not all sort them), and trailing whitespace, which some
 * trackers' templates append, is allowed; other trailing bytes are an error. */
static int decode_reply(const uint8_t *body, size_t len, struct bdoc *doc, rv_error_t *err)
{
    rv_error_t berr;
    size_t used = 0;

    err_clear(&berr);
    if (body == NULL && len > 0)
        return err_set(err, RV_EINVAL, "reply body is missing");
    int rc = bencode_decode(doc, body, len, BENCODE_ALLOW_TRAILING, &used, &berr);
    if (rc == RV_ENOMEM)
        return err_set(err, RV_ENOMEM, "out of memory decoding the tracker's reply");
    if (rc != 0)
        return err_set_at(err, RV_ETRACKER, berr.offset, "reply is not bencode: %s", berr.msg);
    for (size_t i = used; i < len; i++)
        if (!is_space(body[i]))
            return err_set_at(err, RV_ETRACKER, i, "%zu bytes of trailing data after the reply",
                              len - i);
    const struct bnode *root = bencode_root(doc);
    if (root->type != BT_DICT)
        return err_set_at(err, RV_ETRACKER, 0, "reply is %s, not a dictionary",
                          type_name(root->type));
    return 0;
}

/* BEP 3: a 'failure reason' means the request failed and nothing else in the reply counts. */
static int check_failure(const struct bnode *root, rv_error_t *err)
{
    const struct bnode *f = bdict_get(root, "failure reason");
    if (f == NULL)
        return 0;
    if (f->type != BT_STR)
        return err_set(err, RV_ETRACKER, "tracker failed; its 'failure reason' is %s",
                       type_name(f->type));
    char reason[MAX_REASON];
    text_printable(f->s, f->slen, reason, sizeof(reason));
    return err_set(err, RV_ETRACKER, "tracker said: %s", reason[0] ? reason : "(empty reason)");
}

/* An optional count (complete, incomplete, downloaded): -1 when absent, of another type or
 * negative, since a tracker's odd statistics should not cost us its peer list. */
static int64_t opt_count(const struct bnode *d, const char *key)
{
    const struct bnode *v = bdict_get_type(d, key, BT_INT);
    return v != NULL && v->i >= 0 ? v->i : -1;
}

static void addr_from_v6(struct peer_addr *a, const uint8_t *ip)
{
    /* An IPv4-mapped address (::ffff:a.b.c.d) is dialled as the IPv4 address it names. */
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(a->ip, 0, sizeof(a->ip));
    if (memcmp(ip, mapped, 12) == 0) {
        a->family = 4;
        memcpy(a->ip, ip + 12, 4);
    } else {
        a->family = 6;
        memcpy(a->ip, ip, 16);
    }
}

/* Adds a to the reply if it is dialable and there is room; counts it as dropped otherwise. */
static void add_peer(struct announce_resp *out, const struct peer_addr *a)
{
    if (!peer_addr_is_valid(a) || out->peer_count >= TRACKER_MAX_PEERS) {
        out->peers_dropped++;
        return;
    }
    out->peers[out->peer_count++] = *a;
}

static void add_compact(struct announce_resp *out, const uint8_t *p, size_t len, size_t entry)
{
    for (size_t off = 0; off + entry <= len; off += entry) {
        struct peer_addr a;
        if (entry == 6) {
            memset(&a, 0, sizeof(a));
            a.family = 4;
            memcpy(a.ip, p + off, 4);
        } else {
            addr_from_v6(&a, p + off);
        }
        a.port = (uint16_t)(p[off + entry - 2] << 8 | p[off + entry - 1]);
        add_peer(out, &a);
    }
}

/* One entry of the original (non-compact) model: {ip, port, peer id}. BEP 3 also allows a DNS
 * name for 'ip'; resolving it would need a lookup per peer, so such entries are dropped like
 * malformed ones. */
static bool parse_dict_peer(const struct bnode *e, struct peer_addr *a)
{
    char ip[64];
    uint8_t raw[16];
    const struct bnode *ipn = bdict_get_type(e, "ip", BT_STR);
    const struct bnode *port = bdict_get_type(e, "port", BT_INT);

    if (ipn == NULL || port == NULL || port->i < 1 || port->i > 65535)
        return false;
    if (ipn->slen == 0 || ipn->slen >= sizeof(ip) || memchr(ipn->s, 0, ipn->slen) != NULL)
        return false;
    memcpy(ip, ipn->s, ipn->slen);
    ip[ipn->slen] = '\0';
    memset(a, 0, sizeof(*a));
    if (inet_pton(AF_INET, ip, raw) == 1) {
        a->family = 4;
        memcpy(a->ip, raw, 4);
    } else if (inet_pton(AF_INET6, ip, raw) == 1) {
        addr_from_v6(a, raw);
    } else {
        return false;
    }
    a->port = (uint16_t)port->i;
    return true;
}

static int parse_peers(const struct bnode *root, struct announce_resp *out, rv_error_t *err)
{
    const struct bnode *p4 = bdict_get(root, "peers");
    const struct bnode *p6 = bdict_get(root, "peers6");
    size_t total = 0;

    /* BEP 23: compact IPv4 peers are 6 bytes each (address, port, network order). */
    if (p4 != NULL && p4->type == BT_STR) {
        if (p4->slen % 6 != 0)
            return err_set_at(err, RV_ETRACKER, (size_t)(p4->s - root->raw),
                              "compact 'peers' is %zu bytes, not a multiple of 6", p4->slen);
        total = p4->slen / 6;
    } else if (p4 != NULL && p4->type == BT_LIST) {
        total = p4->count;
    } else if (p4 != NULL) {
        return err_set_at(err, RV_ETRACKER, (size_t)(p4->raw - root->raw),
                          "'peers' is %s, not a string or a list", type_name(p4->type));
    }
    /* BEP 7: compact IPv6 peers are 18 bytes each. */
    if (p6 != NULL) {
        if (p6->type != BT_STR)
            return err_set_at(err, RV_ETRACKER, (size_t)(p6->raw - root->raw),
                              "'peers6' is %s, not a string", type_name(p6->type));
        if (p6->slen % 18 != 0)
            return err_set_at(err, RV_ETRACKER, (size_t)(p6->s - root->raw),
                              "'peers6' is %zu bytes, not a multiple of 18", p6->slen);
        total += p6->slen / 18; /* cannot overflow: both counts are at most len / 6 */
    }
    if (total == 0)
        return 0;
    size_t keep = total < TRACKER_MAX_PEERS ? total : TRACKER_MAX_PEERS;
    out->peers = calloc(keep, sizeof(*out->peers));
    if (out->peers == NULL)
        return err_set(err, RV_ENOMEM, "out of memory for %zu peers", keep);

    if (p4 != NULL && p4->type == BT_STR) {
        add_compact(out, p4->s, p4->slen, 6);
    } else if (p4 != NULL) {
        const struct bnode *e = bnode_first(p4);
        for (uint32_t i = 0; i < p4->count; i++, e = bnode_next(e)) {
            struct peer_addr a;
            if (e->type == BT_DICT && parse_dict_peer(e, &a))
                add_peer(out, &a);
            else
                out->peers_dropped++;
        }
    }
    if (p6 != NULL)
        add_compact(out, p6->s, p6->slen, 18);
    return 0;
}

int http_parse_announce(const uint8_t *body, size_t len, struct announce_resp *out, rv_error_t *err)
{
    struct bdoc doc = {0};
    int rc;

    memset(out, 0, sizeof(*out));
    out->min_interval = out->complete = out->incomplete = out->downloaded = -1;
    rc = decode_reply(body, len, &doc, err);
    if (rc != 0)
        goto fail;
    const struct bnode *root = bencode_root(&doc);
    rc = check_failure(root, err);
    if (rc != 0)
        goto fail;

    /* BEP 3: 'interval' is how long to wait before the next regular announce. */
    const struct bnode *iv = bdict_get(root, "interval");
    if (iv == NULL) {
        rc = err_set(err, RV_ETRACKER, "reply has no 'interval'");
        goto fail;
    }
    if (iv->type != BT_INT) {
        rc = err_set_at(err, RV_ETRACKER, (size_t)(iv->raw - root->raw),
                        "'interval' is %s, not an integer", type_name(iv->type));
        goto fail;
    }
    if (iv->i <= 0) {
        rc = err_set_at(err, RV_ETRACKER, (size_t)(iv->raw - root->raw),
                        "'interval' is %lld, not a positive number of seconds", (long long)iv->i);
        goto fail;
    }
    out->interval = iv->i < MAX_INTERVAL ? iv->i : MAX_INTERVAL;
    /* 'min interval' is optional advice; a value we cannot use is treated as absent. */
    const struct bnode *miv = bdict_get_type(root, "min interval", BT_INT);
    if (miv != NULL && miv->i > 0)
        out->min_interval = miv->i < MAX_INTERVAL ? miv->i : MAX_INTERVAL;
    out->complete = opt_count(root, "complete");
    out->incomplete = opt_count(root, "incomplete");
    out->downloaded = opt_count(root, "downloaded");

    const struct bnode *w = bdict_get_type(root, "warning message", BT_STR);
    if (w != NULL) {
        char text[MAX_WARNING];
        size_t n = text_printable(w->s, w->slen, text, sizeof(text));
        out->warning = malloc(n + 1);
        if (out->warning == NULL) {
            rc = err_set(err, RV_ENOMEM, "out of memory for the tracker's warning");
            goto fail;
        }
        memcpy(out->warning, text, n + 1);
    }
    /* The tracker id is sent back verbatim (percent-encoded) in later announces; one with a
     * NUL byte cannot be a C string and one past the cap only bloats every URL. */
    const struct bnode *tid = bdict_get_type(root, "tracker id", BT_STR);
    if (tid != NULL && tid->slen > 0 && tid->slen <= MAX_TRACKER_ID &&
        memchr(tid->s, 0, tid->slen) == NULL) {
        out->tracker_id = bstr_dup(tid);
        if (out->tracker_id == NULL) {
            rc = err_set(err, RV_ENOMEM, "out of memory for the tracker id");
            goto fail;
        }
    }
    rc = parse_peers(root, out, err);
    if (rc != 0)
        goto fail;
    bencode_free(&doc);
    return 0;

fail:
    bencode_free(&doc);
    announce_resp_free(out);
    return rc;
}

int http_parse_scrape(const uint8_t *body, size_t len, const uint8_t info_hash[20],
                      struct scrape_resp *out, rv_error_t *err)
{
    struct bdoc doc = {0};
    int rc;

    out->complete = out->incomplete = out->downloaded = -1;
    rc = decode_reply(body, len, &doc, err);
    if (rc != 0)
        goto fail;
    const struct bnode *root = bencode_root(&doc);
    rc = check_failure(root, err);
    if (rc != 0)
        goto fail;
    const struct bnode *files = bdict_get(root, "files");
    if (files == NULL || files->type != BT_DICT) {
        rc = err_set(err, RV_ETRACKER, "scrape reply has no 'files' dictionary");
        goto fail;
    }
    /* BEP 48: 'files' is keyed by the raw 20-byte info-hash, which may hold NUL bytes, so the
     * keys are compared as bytes rather than through bdict_get. */
    const struct bnode *k = bnode_first(files), *entry = NULL;
    for (uint32_t i = 0; i + 1 < files->count; i += 2) {
        const struct bnode *v = bnode_next(k);
        if (k->slen == 20 && memcmp(k->s, info_hash, 20) == 0) {
            entry = v;
            break;
        }
        k = bnode_next(v);
    }
    if (entry == NULL) {
        rc = err_set(err, RV_ETRACKER, "scrape reply does not mention this torrent");
        goto fail;
    }
    if (entry->type != BT_DICT) {
        rc = err_set_at(err, RV_ETRACKER, (size_t)(entry->raw - root->raw),
                        "scrape entry for this torrent is %s, not a dictionary",
                        type_name(entry->type));
        goto fail;
    }
    out->complete = opt_count(entry, "complete");
    out->incomplete = opt_count(entry, "incomplete");
    out->downloaded = opt_count(entry, "downloaded");
    bencode_free(&doc);
    return 0;

fail:
    bencode_free(&doc);
    return rc;
}
