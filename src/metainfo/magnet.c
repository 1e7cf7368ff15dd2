/* Magnet links: BEP 9 (xt=urn:btih, dn, tr, x.pe), BEP 52 (xt=urn:btmh), BEP 19 (ws) and
 * BEP 53 (so). Every value is percent-decoded into a fresh string that the rv_magnet_t owns;
 * every error names the byte offset in the URI where the offending parameter or character
 * is. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rivulet/metainfo.h"
#include "util/base32.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/url.h"

#define MAGNET_MAX_LEN (64u * 1024u) /* far above any real link; bounds all the work below */
#define MAGNET_MAX_TRACKERS 1000
#define MAGNET_MAX_WEB_SEEDS 1000
#define MAGNET_MAX_PEERS 1000
#define MAGNET_MAX_RANGES 10000
#define MAGNET_MAX_HOST 253 /* longest DNS name */

#define BTIH_PREFIX "urn:btih:"
#define BTMH_PREFIX "urn:btmh:"

/* One parameter as found in the URI: its raw value and, once decoded, its text. */
struct param {
    const char *key;
    size_t key_len;
    const char *raw; /* points into the URI */
    size_t raw_len;
    size_t off; /* offset of raw in the URI */
    char *val;  /* decoded, NUL-terminated, owned */
    size_t len;
};

/* Capacities of the arrays in the rv_magnet_t being built. */
struct caps {
    size_t trackers, web_seeds, peers, select;
};

/* The URI offset of byte pos of the decoded value. Exact when decoding changed no lengths
 * (no %XX escapes); otherwise the value's start is the best honest answer. */
static size_t param_offset(const struct param *p, size_t pos)
{
    return p->raw_len == p->len && pos <= p->len ? p->off + pos : p->off;
}

/* Returns arr with room for at least count + 1 elements (reallocated and *cap updated when
 * full), or NULL when out of memory, leaving arr as it was. */
static void *grow(void *arr, size_t *cap, size_t count, size_t elem)
{
    size_t ncap;
    void *n;

    if (count < *cap)
        return arr;
    ncap = *cap ? *cap * 2 : 4;
    n = reallocarray(arr, ncap, elem);
    if (n)
        *cap = ncap;
    return n;
}

/* Appends the decoded value to v unless an equal string is already there. On success p->val
 * has been moved into v or freed as a duplicate (and set to NULL); on failure the caller
 * still owns it. */
static int push_unique(char ***v, size_t *count, size_t *cap, size_t max, struct param *p,
                       const char *what, rv_error_t *err)
{
    char **n;

    for (size_t i = 0; i < *count; i++) {
        if (strcmp((*v)[i], p->val) == 0) {
            free(p->val);
            p->val = NULL;
            return 0;
        }
    }
    if (*count >= max)
        return err_set_at(err, RV_EMAGNET, p->off, "%s: more than %zu entries", what, max);
    n = grow(*v, cap, *count, sizeof *n);
    if (!n)
        return err_set(err, RV_ENOMEM, "out of memory");
    *v = n;
    (*v)[(*count)++] = p->val;
    p->val = NULL;
    return 0;
}

/* Control characters would end up in HTTP requests and in logs; no real URL has them. */
static int check_printable(const struct param *p, const char *what, rv_error_t *err)
{
    for (size_t i = 0; i < p->len; i++) {
        unsigned char c = (unsigned char)p->val[i];
        if (c < 0x20 || c == 0x7f)
            return err_set_at(err, RV_EMAGNET, param_offset(p, i),
                              "%s: control character 0x%02x in value", what, c);
    }
    return 0;
}

static int parse_btih(rv_magnet_t *m, const struct param *p, rv_error_t *err)
{
    const size_t plen = sizeof(BTIH_PREFIX) - 1;
    const char *h = p->val + plen;
    size_t hlen = p->len - plen, hoff = param_offset(p, plen);
    uint8_t hash[RV_SHA1_LEN];

    if (hlen == 2 * RV_SHA1_LEN) {
        if (hex_decode(h, hlen, hash, sizeof hash) < 0)
            return err_set_at(err, RV_EMAGNET, hoff,
                              "xt: btih of 40 characters must be all hex digits");
    } else if (hlen == BASE32_ENCODED_LEN(RV_SHA1_LEN)) {
        if (base32_decode(h, hlen, hash, sizeof hash) < 0)
            return err_set_at(err, RV_EMAGNET, hoff,
                              "xt: btih of 32 characters must be all base32 (A-Z, 2-7)");
    } else {
        return err_set_at(err, RV_EMAGNET, hoff,
                          "xt: btih must be 40 hex or 32 base32 characters, not %zu", hlen);
    }
    if (m->has_v1 && memcmp(m->info_hash, hash, sizeof hash) != 0)
        return err_set_at(err, RV_EMAGNET, p->off, "xt: two different btih info-hashes");
    memcpy(m->info_hash, hash, sizeof hash);
    m->has_v1 = true;
    return 0;
}

/* BEP 52: the v2 info-hash is a multihash, code 0x12 (sha2-256), length 0x20, digest. */
static int parse_btmh(rv_magnet_t *m, const struct param *p, rv_error_t *err)
{
    const size_t plen = sizeof(BTMH_PREFIX) - 1;
    const char *h = p->val + plen;
    size_t hlen = p->len - plen, hoff = param_offset(p, plen);
    uint8_t head[2], hash[RV_SHA256_LEN];

    if (hlen < 4 || hex_decode(h, 4, head, sizeof head) < 0)
        return err_set_at(err, RV_EMAGNET, hoff,
                          "xt: btmh must be \"1220\" and 64 hex digits (a SHA-256 multihash)");
    if (head[0] != 0x12)
        return err_set_at(err, RV_EMAGNET, hoff,
                          "xt: btmh multihash code 0x%02x is not sha2-256 (0x12)", head[0]);
    if (head[1] != RV_SHA256_LEN)
        return err_set_at(err, RV_EMAGNET, param_offset(p, plen + 2),
                          "xt: btmh multihash length 0x%02x is not 32 (0x20)", head[1]);
    if (hlen - 4 != 2 * RV_SHA256_LEN)
        return err_set_at(err, RV_EMAGNET, param_offset(p, plen + 4),
                          "xt: btmh digest must be 64 hex digits, not %zu", hlen - 4);
    if (hex_decode(h + 4, hlen - 4, hash, sizeof hash) < 0)
        return err_set_at(err, RV_EMAGNET, param_offset(p, plen + 4),
                          "xt: btmh digest must be all hex digits");
    if (m->has_v2 && memcmp(m->info_hash_v2, hash, sizeof hash) != 0)
        return err_set_at(err, RV_EMAGNET, p->off, "xt: two different btmh info-hashes");
    memcpy(m->info_hash_v2, hash, sizeof hash);
    m->has_v2 = true;
    return 0;
}

static int parse_xt(rv_magnet_t *m, const struct param *p, rv_error_t *err)
{
    if (p->len >= sizeof(BTIH_PREFIX) - 1 &&
        strncasecmp(p->val, BTIH_PREFIX, sizeof(BTIH_PREFIX) - 1) == 0)
        return parse_btih(m, p, err);
    if (p->len >= sizeof(BTMH_PREFIX) - 1 &&
        strncasecmp(p->val, BTMH_PREFIX, sizeof(BTMH_PREFIX) - 1) == 0)
        return parse_btmh(m, p, err);
    return 0; /* other networks' urns (ed2k, sha1, ...) are not ours to judge */
}

/* An error about one character of a value; messages reach terminals, so only printable
 * ASCII is shown as itself. */
static int bad_char(rv_error_t *err, size_t off, const char *what, char c, const char *why)
{
    unsigned char u = (unsigned char)c;

    if (u >= 0x20 && u < 0x7f)
        return err_set_at(err, RV_EMAGNET, off, "%s: '%c' %s", what, c, why);
    return err_set_at(err, RV_EMAGNET, off, "%s: byte 0x%02x %s", what, u, why);
}

static int is_host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

/* BEP 9: x.pe is hostname:port, ipv4-literal:port or [ipv6-literal]:port. */
static int check_peer(const struct param *p, rv_error_t *err)
{
    const char *v = p->val;
    size_t colon, port_at;
    unsigned long port = 0;

    if (v[0] == '[') {
        const char *close = memchr(v, ']', p->len);
        char addr[INET6_ADDRSTRLEN + 16];
        struct in6_addr a6;
        size_t alen;

        if (!close)
            return err_set_at(err, RV_EMAGNET, p->off, "x.pe: '[' without a closing ']'");
        alen = (size_t)(close - v) - 1;
        if (alen == 0 || alen >= sizeof addr)
            return err_set_at(err, RV_EMAGNET, p->off, "x.pe: bad IPv6 address in brackets");
        memcpy(addr, v + 1, alen);
        addr[alen] = '\0';
        if (inet_pton(AF_INET6, addr, &a6) != 1)
            return err_set_at(err, RV_EMAGNET, param_offset(p, 1),
                              "x.pe: not an IPv6 address in brackets");
        colon = (size_t)(close - v) + 1;
        if (colon >= p->len || v[colon] != ':')
            return err_set_at(err, RV_EMAGNET, param_offset(p, colon),
                              "x.pe: expected ':port' after ']'");
    } else {
        const char *c = memchr(v, ':', p->len);
        if (!c)
            return err_set_at(err, RV_EMAGNET, p->off, "x.pe: expected host:port");
        colon = (size_t)(c - v);
        if (memchr(c + 1, ':', p->len - colon - 1))
            return err_set_at(err, RV_EMAGNET, p->off,
                              "x.pe: an IPv6 address must be in brackets, [addr]:port");
        if (colon == 0)
            return err_set_at(err, RV_EMAGNET, p->off, "x.pe: empty host");
        if (colon > MAGNET_MAX_HOST)
            return err_set_at(err, RV_EMAGNET, p->off, "x.pe: host longer than %d characters",
                              MAGNET_MAX_HOST);
        for (size_t i = 0; i < colon; i++)
            if (!is_host_char(v[i]))
                return bad_char(err, param_offset(p, i), "x.pe", v[i],
                                "not allowed in a host name");
    }
    port_at = colon + 1;
    if (port_at == p->len || p->len - port_at > 5)
        return err_set_at(err, RV_EMAGNET, param_offset(p, port_at),
                          "x.pe: port must be a number from 1 to 65535");
    for (size_t i = port_at; i < p->len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return err_set_at(err, RV_EMAGNET, param_offset(p, port_at),
                              "x.pe: port must be a number from 1 to 65535");
        port = port * 10 + (unsigned long)(v[i] - '0');
    }
    if (port < 1 || port > 65535)
        return err_set_at(err, RV_EMAGNET, param_offset(p, port_at),
                          "x.pe: port %lu is not from 1 to 65535", port);
    return 0;
}

/* Reads a file index at v[*i]; no sign, no empty number, at most UINT32_MAX. */
static int read_index(const struct param *p, size_t *i, uint32_t *out, rv_error_t *err)
{
    uint64_t n = 0;
    size_t start = *i;

    if (start >= p->len || p->val[start] < '0' || p->val[start] > '9')
        return err_set_at(err, RV_EMAGNET, param_offset(p, start),
                          "so: expected a file index or a range like 4-6");
    while (*i < p->len && p->val[*i] >= '0' && p->val[*i] <= '9') {
        n = n * 10 + (uint64_t)(p->val[*i] - '0');
        if (n > UINT32_MAX)
            return err_set_at(err, RV_EMAGNET, param_offset(p, start), "so: file index too large");
        (*i)++;
    }
    *out = (uint32_t)n;
    return 0;
}

/* BEP 53: so=0,2,4-6 -- comma-separated indices and inclusive ranges, in any order. */
static int parse_so(rv_magnet_t *m, struct caps *caps, const struct param *p, rv_error_t *err)
{
    size_t i = 0;
    int rc;

    for (;;) {
        size_t item = i;
        rv_file_range_t r, *sel;

        rc = read_index(p, &i, &r.first, err);
        if (rc < 0)
            return rc;
        r.last = r.first;
        if (i < p->len && p->val[i] == '-') {
            i++;
            rc = read_index(p, &i, &r.last, err);
            if (rc < 0)
                return rc;
            if (r.last < r.first)
                return err_set_at(err, RV_EMAGNET, param_offset(p, item),
                                  "so: range %u-%u ends before it starts", r.first, r.last);
        }
        if (m->select_count >= MAGNET_MAX_RANGES)
            return err_set_at(err, RV_EMAGNET, param_offset(p, item), "so: more than %d ranges",
                              MAGNET_MAX_RANGES);
        sel = grow(m->select, &caps->select, m->select_count, sizeof *sel);
        if (!sel)
            return err_set(err, RV_ENOMEM, "out of memory");
        m->select = sel;
        m->select[m->select_count++] = r;
        if (i == p->len)
            return 0;
        if (p->val[i] != ',')
            return bad_char(err, param_offset(p, i), "so", p->val[i],
                            "unexpected (expected ',' or '-')");
        i++;
    }
}

enum key { K_UNKNOWN, K_XT, K_DN, K_TR, K_WS, K_PE, K_SO, K_COUNT };

static const char *const key_names[K_COUNT] = {
    [K_UNKNOWN] = "?", [K_XT] = "xt",   [K_DN] = "dn", [K_TR] = "tr",
    [K_WS] = "ws",     [K_PE] = "x.pe", [K_SO] = "so",
};

/* Matches "xt", "xt.1", "xt.2"... (BEP 9 numbers repeated parameters); any other suffix
 * makes it a key we do not know. */
static enum key classify(const char *k, size_t n)
{
    for (int i = K_XT; i < K_COUNT; i++) {
        const char *name = key_names[i];
        size_t kl = strlen(name), j = kl + 1;

        if (n < kl || strncasecmp(k, name, kl) != 0)
            continue;
        if (n == kl)
            return (enum key)i;
        if (k[kl] != '.' || n == j)
            continue;
        while (j < n && k[j] >= '0' && k[j] <= '9')
            j++;
        if (j == n)
            return (enum key)i;
    }
    return K_UNKNOWN;
}

static int handle_param(rv_magnet_t *m, struct caps *caps, enum key k, struct param *p,
                        rv_error_t *err)
{
    size_t bad = 0;
    int rc;

    /* '+' is a space only in dn: a name is display text, while a '+' in a URL or an
     * address is meant literally. */
    rc = url_decode(p->raw, p->raw_len, k == K_DN ? URL_PLUS_AS_SPACE : 0, &p->val, &p->len, &bad);
    if (rc == RV_EINVAL) {
        /* url_decode stops at a '%' that starts no escape, or at a NUL (raw or %00). */
        bool nul = p->raw[bad] == '\0' ||
                   (p->raw_len - bad >= 3 && p->raw[bad + 1] == '0' && p->raw[bad + 2] == '0');
        return err_set_at(err, RV_EMAGNET, p->off + bad,
                          nul ? "%s: value holds a NUL byte"
                              : "%s: bad percent escape (expected '%%' and two hex digits)",
                          key_names[k]);
    }
    if (rc < 0)
        return err_set(err, rc, "out of memory");

    switch (k) {
    case K_XT:
        return parse_xt(m, p, err);
    case K_DN:
        if (!m->name && p->len > 0) {
            m->name = p->val; /* the first dn wins */
            p->val = NULL;
        }
        return 0;
    case K_TR:
        if (p->len == 0)
            return 0;
        if ((rc = check_printable(p, "tr", err)) < 0)
            return rc;
        return push_unique(&m->trackers, &m->tracker_count, &caps->trackers, MAGNET_MAX_TRACKERS, p,
                           "tr", err);
    case K_WS:
        if (p->len == 0)
            return 0;
        if ((rc = check_printable(p, "ws", err)) < 0)
            return rc;
        return push_unique(&m->web_seeds, &m->web_seed_count, &caps->web_seeds,
                           MAGNET_MAX_WEB_SEEDS, p, "ws", err);
    case K_PE:
        if (p->len == 0)
            return 0;
        if ((rc = check_peer(p, err)) < 0)
            return rc;
        return push_unique(&m->peers, &m->peer_count, &caps->peers, MAGNET_MAX_PEERS, p, "x.pe",
                           err);
    case K_SO:
        if (p->len == 0)
            return 0;
        return parse_so(m, caps, p, err);
    case K_UNKNOWN:
    case K_COUNT:
        break;
    }
    return 0;
}

int rv_magnet_parse(const char *uri, rv_magnet_t **out, rv_error_t *err)
{
    static const char scheme[] = "magnet:?";
    const size_t slen = sizeof scheme - 1;
    struct caps caps = {0};
    rv_magnet_t *m = NULL;
    size_t len, pos;
    int rc;

    if (out)
        *out = NULL;
    if (!uri || !out)
        return err_set(err, RV_EINVAL, "no magnet link given");
    len = strnlen(uri, MAGNET_MAX_LEN + 1);
    if (len > MAGNET_MAX_LEN)
        return err_set_at(err, RV_EMAGNET, MAGNET_MAX_LEN, "magnet link longer than %u bytes",
                          MAGNET_MAX_LEN);
    if (len < slen || strncasecmp(uri, scheme, slen) != 0)
        return err_set_at(err, RV_EMAGNET, 0, "not a magnet link (expected \"magnet:?\")");

    m = calloc(1, sizeof *m);
    if (!m)
        return err_set(err, RV_ENOMEM, "out of memory");

    for (pos = slen; pos < len;) {
        const char *start = uri + pos, *amp, *eq;
        size_t plen;
        struct param p = {0};
        enum key k;

        amp = memchr(start, '&', len - pos);
        plen = amp ? (size_t)(amp - start) : len - pos;
        eq = memchr(start, '=', plen);
        p.key = start;
        p.key_len = eq ? (size_t)(eq - start) : plen;
        k = classify(p.key, p.key_len);
        if (k != K_UNKNOWN) {
            if (!eq) {
                rc = err_set_at(err, RV_EMAGNET, pos, "%s: parameter has no '=' and value",
                                key_names[k]);
                goto fail;
            }
            p.raw = eq + 1;
            p.raw_len = plen - p.key_len - 1;
            p.off = pos + p.key_len + 1;
            rc = handle_param(m, &caps, k, &p, err);
            free(p.val);
            if (rc < 0)
                goto fail;
        }
        pos += plen + 1; /* past the '&' (or past the end) */
    }

    if (!m->has_v1 && !m->has_v2) {
        rc = err_set_at(err, RV_EMAGNET, slen,
                        "no info-hash: expected xt=urn:btih:... or xt=urn:btmh:...");
        goto fail;
    }
    *out = m;
    return 0;

fail:
    rv_magnet_free(m);
    return rc;
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void rv_magnet_free(rv_magnet_t *m)
{
    if (!m)
        return;
    free(m->name);
    free_strv(m->trackers, m->tracker_count);
    free_strv(m->web_seeds, m->web_seed_count);
    free_strv(m->peers, m->peer_count);
    free(m->select);
    free(m);
}
