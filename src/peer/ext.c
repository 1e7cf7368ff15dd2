/* Extension message codecs (BEP 10, 9, 11, 21, 54) and BEP 6's allowed-fast set. Every value
 * comes from bencode with its type checked; compact address lists are checked to be whole. */
#include "peer/ext.h"

#include <stdio.h>
#include <string.h>

#include "bencode/bencode.h"
#include "peer/wire.h"
#include "rivulet/version.h"
#include "util/be.h"
#include "util/err.h"
#include "util/sha.h"

const char *const ext_names[EXT_KINDS] = {"ut_metadata", "ut_pex", "lt_donthave", "upload_only"};

static int decode_dict(struct bdoc *doc, const uint8_t *p, size_t len, unsigned flags,
                       size_t *used, const char *what, rv_error_t *err)
{
    rv_error_t e;
    memset(doc, 0, sizeof(*doc));
    if (bencode_decode(doc, p, len, flags, used, &e) != 0)
        return err_set(err, RV_EPROTO, "%s is not valid bencode: %s", what, e.msg);
    const struct bnode *root = bencode_root(doc);
    if (root == NULL || root->type != BT_DICT)
        return err_set(err, RV_EPROTO, "%s is not a dictionary", what);
    return 0;
}

int ext_handshake_parse(const uint8_t *p, size_t len, struct ext_handshake *out, rv_error_t *err)
{
    memset(out, 0, sizeof(*out));
    out->metadata_size = -1;
    struct bdoc doc;
    int rc = decode_dict(&doc, p, len, 0, NULL, "extended handshake", err);
    if (rc != 0) {
        bencode_free(&doc);
        return rc;
    }
    const struct bnode *root = bencode_root(&doc);
    const struct bnode *m = bdict_get(root, "m");
    if (m != NULL && m->type != BT_DICT) {
        bencode_free(&doc);
        return err_set(err, RV_EPROTO, "extended handshake: 'm' is not a dictionary");
    }
    for (int k = 0; m != NULL && k < EXT_KINDS; k++) {
        const struct bnode *id = bdict_get_type(m, ext_names[k], BT_INT);
        /* BEP 10: 0 means the peer disabled the extension. */
        if (id != NULL && id->i > 0 && id->i <= 255)
            out->ids[k] = (uint8_t)id->i;
    }
    const struct bnode *v = bdict_get_type(root, "v", BT_STR);
    if (v != NULL) {
        size_t n = 0;
        for (size_t i = 0; i < v->slen && n + 1 < sizeof(out->client); i++)
            out->client[n++] = (v->s[i] >= 0x20 && v->s[i] < 0x7f) ? (char)v->s[i] : '?';
        out->client[n] = '\0';
    }
    const struct bnode *port = bdict_get_type(root, "p", BT_INT);
    if (port != NULL && port->i > 0 && port->i <= 65535)
        out->port = (uint16_t)port->i;
    const struct bnode *reqq = bdict_get_type(root, "reqq", BT_INT);
    if (reqq != NULL && reqq->i > 0)
        out->reqq = reqq->i > 100000 ? 100000 : (uint32_t)reqq->i;
    const struct bnode *ip = bdict_get_type(root, "yourip", BT_STR);
    if (ip != NULL && (ip->slen == 4 || ip->slen == 16)) {
        out->has_yourip = true;
        out->yourip.family = ip->slen == 4 ? 4 : 6;
        memcpy(out->yourip.ip, ip->s, ip->slen);
    }
    const struct bnode *ms = bdict_get_type(root, "metadata_size", BT_INT);
    if (ms != NULL && ms->i >= 0)
        out->metadata_size = ms->i;
    const struct bnode *uo = bdict_get_type(root, "upload_only", BT_INT);
    out->upload_only = uo != NULL && uo->i != 0;
    bencode_free(&doc);
    return 0;
}

static int put_dict(struct buf *out, uint8_t id, struct bv *d, const uint8_t *tail,
                    size_t tail_len)
{
    struct buf b;
    buf_init(&b, WIRE_MAX_EXTENDED);
    int rc = bv_encode(d, &b);
    if (rc == 0 && tail_len > 0)
        rc = buf_append(&b, tail, tail_len);
    if (rc == 0)
        rc = wire_put_extended(out, id, b.data, b.len);
    buf_free(&b);
    return rc;
}

int ext_handshake_put(struct buf *out, const struct ext_handshake_out *h)
{
    struct bv *d = bv_dict(), *m = bv_dict();
    if (d == NULL || m == NULL) {
        bv_free(d);
        bv_free(m);
        return RV_ENOMEM;
    }
    int rc = 0;
    for (int k = 0; k < EXT_KINDS && rc == 0; k++) {
        if (k == EXT_UT_PEX && !h->pex)
            continue;
        rc = bv_dict_set(m, ext_names[k], bv_int(EXT_OUR_ID(k)));
    }
    if (rc == 0)
        rc = bv_dict_set(d, "m", m);
    else
        bv_free(m);
    if (rc == 0)
        rc = bv_dict_set(d, "v", bv_cstr("rivulet " RV_VERSION_STRING));
    if (rc == 0 && h->port != 0)
        rc = bv_dict_set(d, "p", bv_int(h->port));
    if (rc == 0 && h->reqq != 0)
        rc = bv_dict_set(d, "reqq", bv_int(h->reqq));
    if (rc == 0 && h->yourip != NULL)
        rc = bv_dict_set(d, "yourip", bv_str(h->yourip->ip, h->yourip->family == 6 ? 16 : 4));
    if (rc == 0 && h->metadata_size >= 0)
        rc = bv_dict_set(d, "metadata_size", bv_int(h->metadata_size));
    if (rc == 0 && h->upload_only)
        rc = bv_dict_set(d, "upload_only", bv_int(1));
    if (rc == 0)
        rc = put_dict(out, EXT_HANDSHAKE_ID, d, NULL, 0);
    bv_free(d);
    return rc;
}

int ut_metadata_parse(const uint8_t *p, size_t len, struct ut_metadata_msg *out, rv_error_t *err)
{
    memset(out, 0, sizeof(*out));
    out->total_size = -1;
    struct bdoc doc;
    size_t used = 0;
    int rc = decode_dict(&doc, p, len, BENCODE_ALLOW_TRAILING, &used, "ut_metadata message",
                         err);
    if (rc != 0) {
        bencode_free(&doc);
        return rc;
    }
    const struct bnode *root = bencode_root(&doc);
    const struct bnode *type = bdict_get_type(root, "msg_type", BT_INT);
    const struct bnode *piece = bdict_get_type(root, "piece", BT_INT);
    const struct bnode *total = bdict_get_type(root, "total_size", BT_INT);
    if (type == NULL || type->i < UT_METADATA_REQUEST || type->i > UT_METADATA_REJECT) {
        rc = err_set(err, RV_EPROTO, "ut_metadata message without a known msg_type");
    } else if (piece == NULL || piece->i < 0 ||
               piece->i >= (int64_t)(EXT_MAX_METADATA / EXT_METADATA_BLOCK)) {
        rc = err_set(err, RV_EPROTO, "ut_metadata message without a valid piece");
    } else {
        out->type = (int)type->i;
        out->piece = (uint32_t)piece->i;
        if (total != NULL && total->i >= 0)
            out->total_size = total->i;
        out->data = p + used;
        out->data_len = len - used;
        if (out->type != UT_METADATA_DATA && out->data_len != 0)
            rc = err_set(err, RV_EPROTO, "ut_metadata %s with %zu trailing bytes",
                         out->type == UT_METADATA_REQUEST ? "request" : "reject", out->data_len);
        else if (out->type == UT_METADATA_DATA && out->data_len > EXT_METADATA_BLOCK)
            rc = err_set(err, RV_EPROTO, "ut_metadata block of %zu bytes (most is %u)",
                         out->data_len, EXT_METADATA_BLOCK);
    }
    bencode_free(&doc);
    return rc;
}

int ut_metadata_put(struct buf *out, uint8_t id, int type, uint32_t piece, size_t total,
                    const uint8_t *data, size_t len)
{
    struct bv *d = bv_dict();
    if (d == NULL)
        return RV_ENOMEM;
    int rc = bv_dict_set(d, "msg_type", bv_int(type));
    if (rc == 0)
        rc = bv_dict_set(d, "piece", bv_int(piece));
    if (rc == 0 && type == UT_METADATA_DATA)
        rc = bv_dict_set(d, "total_size", bv_int((int64_t)total));
    if (rc == 0)
        rc = put_dict(out, id, d, type == UT_METADATA_DATA ? data : NULL,
                      type == UT_METADATA_DATA ? len : 0);
    bv_free(d);
    return rc;
}

/* Takes a compact list (6 bytes per IPv4 peer, 18 per IPv6) into the message. */
static int take_compact(const struct bnode *list, const struct bnode *flags, int family,
                        bool dropped, struct pex_msg *out, rv_error_t *err)
{
    if (list == NULL)
        return 0;
    size_t each = family == 4 ? 6 : 18, alen = family == 4 ? 4 : 16;
    if (list->slen % each != 0)
        return err_set(err, RV_EPROTO, "ut_pex: '%s%s' of %zu bytes is not a list of %zu-byte "
                       "entries", dropped ? "dropped" : "added", family == 6 ? "6" : "",
                       list->slen, each);
    size_t n = list->slen / each;
    bool use_flags = flags != NULL && flags->slen == n;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *e = list->s + i * each;
        struct peer_addr a = {.family = (uint8_t)family};
        memcpy(a.ip, e, alen);
        a.port = (uint16_t)(e[alen] << 8 | e[alen + 1]);
        if (dropped) {
            if (out->ndropped == PEX_MAX) {
                out->ignored++;
                continue;
            }
            out->dropped[out->ndropped++] = a;
        } else {
            if (out->nadded == PEX_MAX) {
                out->ignored++;
                continue;
            }
            out->added[out->nadded].addr = a;
            out->added[out->nadded++].flags = use_flags ? flags->s[i] : 0;
        }
    }
    return 0;
}

int pex_parse(const uint8_t *p, size_t len, struct pex_msg *out, rv_error_t *err)
{
    memset(out, 0, sizeof(*out));
    struct bdoc doc;
    int rc = decode_dict(&doc, p, len, 0, NULL, "ut_pex message", err);
    if (rc == 0) {
        const struct bnode *r = bencode_root(&doc);
        rc = take_compact(bdict_get_type(r, "added", BT_STR), bdict_get_type(r, "added.f", BT_STR),
                          4, false, out, err);
        if (rc == 0)
            rc = take_compact(bdict_get_type(r, "added6", BT_STR),
                              bdict_get_type(r, "added6.f", BT_STR), 6, false, out, err);
        if (rc == 0)
            rc = take_compact(bdict_get_type(r, "dropped", BT_STR), NULL, 4, true, out, err);
        if (rc == 0)
            rc = take_compact(bdict_get_type(r, "dropped6", BT_STR), NULL, 6, true, out, err);
    }
    bencode_free(&doc);
    return rc;
}

static struct bv *compact(const struct peer_addr *const *a, size_t n, int family)
{
    uint8_t tmp[PEX_MAX * 18];
    size_t len = 0, alen = family == 4 ? 4 : 16;
    for (size_t i = 0; i < n; i++) {
        if (a[i]->family != family)
            continue;
        memcpy(tmp + len, a[i]->ip, alen);
        tmp[len + alen] = (uint8_t)(a[i]->port >> 8);
        tmp[len + alen + 1] = (uint8_t)a[i]->port;
        len += alen + 2;
    }
    return bv_str(tmp, len);
}

int pex_put(struct buf *out, uint8_t id, const struct pex_peer *added, size_t nadded,
            const struct peer_addr *dropped, size_t ndropped)
{
    if (nadded > PEX_MAX)
        nadded = PEX_MAX;
    if (ndropped > PEX_MAX)
        ndropped = PEX_MAX;
    const struct peer_addr *ap[PEX_MAX], *dp[PEX_MAX];
    uint8_t f4[PEX_MAX], f6[PEX_MAX];
    size_t n4 = 0, n6 = 0;
    for (size_t i = 0; i < nadded; i++) {
        ap[i] = &added[i].addr;
        if (added[i].addr.family == 4)
            f4[n4++] = added[i].flags;
        else
            f6[n6++] = added[i].flags;
    }
    for (size_t i = 0; i < ndropped; i++)
        dp[i] = &dropped[i];
    struct bv *d = bv_dict();
    if (d == NULL)
        return RV_ENOMEM;
    int rc = bv_dict_set(d, "added", compact(ap, nadded, 4));
    if (rc == 0)
        rc = bv_dict_set(d, "added.f", bv_str(f4, n4));
    if (rc == 0)
        rc = bv_dict_set(d, "added6", compact(ap, nadded, 6));
    if (rc == 0)
        rc = bv_dict_set(d, "added6.f", bv_str(f6, n6));
    if (rc == 0)
        rc = bv_dict_set(d, "dropped", compact(dp, ndropped, 4));
    if (rc == 0)
        rc = bv_dict_set(d, "dropped6", compact(dp, ndropped, 6));
    if (rc == 0)
        rc = put_dict(out, id, d, NULL, 0);
    bv_free(d);
    return rc;
}

int upload_only_put(struct buf *out, uint8_t id, bool upload_only)
{
    uint8_t b = upload_only ? 1 : 0;
    return wire_put_extended(out, id, &b, 1);
}

int donthave_put(struct buf *out, uint8_t id, uint32_t piece)
{
    uint8_t b[4];
    be_put32(b, piece);
    return wire_put_extended(out, id, b, 4);
}

int ext_get_index(const uint8_t *p, size_t len, uint32_t *index, rv_error_t *err)
{
    if (len != 4)
        return err_set(err, RV_EPROTO, "lt_donthave message of %zu bytes, expected 4", len);
    *index = be_get32(p);
    return 0;
}

size_t fast_allowed_set(const uint8_t ip[4], const uint8_t info_hash[20], uint32_t piece_count,
                        size_t k, uint32_t *out)
{
    if (piece_count == 0)
        return 0;
    if (k > piece_count)
        k = piece_count;
    /* BEP 6: x = (ip & 0xffffff00) . info_hash; repeatedly x = SHA1(x), each 4-byte word of x
     * modulo the piece count is the next index unless already taken. */
    uint8_t x[24];
    memcpy(x, ip, 3);
    x[3] = 0;
    memcpy(x + 4, info_hash, 20);
    uint8_t h[20];
    sha1(x, sizeof(x), h);
    size_t n = 0;
    for (;;) {
        for (int i = 0; i < 5 && n < k; i++) {
            const uint8_t *w = h + 4 * i;
            uint32_t y = be_get32(w);
            uint32_t index = y % piece_count;
            bool seen = false;
            for (size_t j = 0; j < n && !seen; j++)
                seen = out[j] == index;
            if (!seen)
                out[n++] = index;
        }
        if (n == k)
            return n;
        uint8_t again[20];
        memcpy(again, h, 20);
        sha1(again, 20, h);
    }
}
