/* KRPC codec (BEP 5, 32, 42, 43). */
#include "dht/krpc.h"

#include <stdio.h>
#include <string.h>

#include "bencode/bencode.h"
#include "util/err.h"

static const char *const method_names[] = {"ping", "find_node", "get_peers", "announce_peer"};

static void addr_from(struct peer_addr *a, const uint8_t *p, int family)
{
    size_t alen = family == 4 ? 4 : 16;
    memset(a, 0, sizeof(*a));
    a->family = (uint8_t)family;
    memcpy(a->ip, p, alen);
    a->port = (uint16_t)(p[alen] << 8 | p[alen + 1]);
}

static int take_nodes(const struct bnode *s, int family, struct krpc_msg *m, rv_error_t *err)
{
    if (s == NULL)
        return 0;
    size_t each = family == 4 ? 26 : 38;
    if (s->slen % each != 0)
        return err_set(err, RV_EPROTO, "'%s' of %zu bytes is not a list of %zu-byte entries",
                       family == 4 ? "nodes" : "nodes6", s->slen, each);
    size_t taken = 0;
    for (size_t i = 0; i < s->slen / each && taken < KRPC_MAX_NODES; i++, taken++) {
        struct krpc_node *n = &m->nodes[m->nnodes++];
        memcpy(n->id, s->s + i * each, 20);
        addr_from(&n->addr, s->s + i * each + 20, family);
    }
    return 0;
}

static int take_values(const struct bnode *list, struct krpc_msg *m, rv_error_t *err)
{
    if (list == NULL)
        return 0;
    const struct bnode *v = bnode_first(list);
    for (uint32_t k = 0; k < list->count; k++, v = bnode_next(v)) {
        if (v->type != BT_STR || (v->slen != 6 && v->slen != 18))
            return err_set(err, RV_EPROTO, "'values' entry %u is not a 6- or 18-byte string", k);
        if (m->nvalues < KRPC_MAX_VALUES)
            addr_from(&m->values[m->nvalues++], v->s, v->slen == 6 ? 4 : 6);
    }
    return 0;
}

static int take_id(const struct bnode *d, uint8_t out[20], const char *what, rv_error_t *err)
{
    const struct bnode *id = bdict_get_type(d, "id", BT_STR);
    if (id == NULL || id->slen != 20)
        return err_set(err, RV_EPROTO, "%s without a 20-byte 'id'", what);
    memcpy(out, id->s, 20);
    return 0;
}

static int parse_query(const struct bnode *root, struct krpc_msg *m, rv_error_t *err)
{
    const struct bnode *q = bdict_get_type(root, "q", BT_STR);
    const struct bnode *a = bdict_get_type(root, "a", BT_DICT);
    if (q == NULL || a == NULL)
        return err_set(err, RV_EPROTO, "query without 'q' or 'a'");
    m->method = KRPC_OTHER;
    for (int i = 0; i < 4; i++)
        if (bstr_eq(q, method_names[i]))
            m->method = (enum krpc_method)i;
    int rc = take_id(a, m->id, "query", err);
    if (rc != 0)
        return rc;
    const char *key = m->method == KRPC_FIND_NODE ? "target" : "info_hash";
    if (m->method == KRPC_FIND_NODE || m->method == KRPC_GET_PEERS ||
        m->method == KRPC_ANNOUNCE_PEER) {
        const struct bnode *t = bdict_get_type(a, key, BT_STR);
        if (t == NULL || t->slen != 20)
            return err_set(err, RV_EPROTO, "%s without a 20-byte '%s'", method_names[m->method],
                           key);
        memcpy(m->target, t->s, 20);
        m->has_target = true;
    }
    if (m->method == KRPC_ANNOUNCE_PEER) {
        const struct bnode *tok = bdict_get_type(a, "token", BT_STR);
        const struct bnode *port = bdict_get_type(a, "port", BT_INT);
        const struct bnode *ip = bdict_get_type(a, "implied_port", BT_INT);
        m->implied_port = ip != NULL && ip->i != 0;
        if (tok == NULL || tok->slen == 0 || tok->slen > KRPC_MAX_TOKEN)
            return err_set(err, RV_EPROTO, "announce_peer without a token of 1..%d bytes",
                           KRPC_MAX_TOKEN);
        if (!m->implied_port && (port == NULL || port->i < 1 || port->i > 65535))
            return err_set(err, RV_EPROTO, "announce_peer without a port of 1..65535");
        memcpy(m->token, tok->s, tok->slen);
        m->token_len = tok->slen;
        m->port = port != NULL && port->i > 0 && port->i <= 65535 ? (uint16_t)port->i : 0;
    }
    const struct bnode *want = bdict_get_type(a, "want", BT_LIST);
    const struct bnode *w = want ? bnode_first(want) : NULL;
    for (uint32_t k = 0; want != NULL && k < want->count; k++, w = bnode_next(w)) {
        if (bstr_eq(w, "n4"))
            m->want4 = true;
        if (bstr_eq(w, "n6"))
            m->want6 = true;
    }
    const struct bnode *ro = bdict_get_type(root, "ro", BT_INT);
    m->read_only = ro != NULL && ro->i == 1;
    return 0;
}

static int parse_response(const struct bnode *root, struct krpc_msg *m, rv_error_t *err)
{
    const struct bnode *r = bdict_get_type(root, "r", BT_DICT);
    if (r == NULL)
        return err_set(err, RV_EPROTO, "response without 'r'");
    int rc = take_id(r, m->id, "response", err);
    if (rc == 0)
        rc = take_nodes(bdict_get_type(r, "nodes", BT_STR), 4, m, err);
    if (rc == 0)
        rc = take_nodes(bdict_get_type(r, "nodes6", BT_STR), 6, m, err);
    if (rc == 0)
        rc = take_values(bdict_get_type(r, "values", BT_LIST), m, err);
    if (rc != 0)
        return rc;
    const struct bnode *tok = bdict_get_type(r, "token", BT_STR);
    if (tok != NULL) {
        if (tok->slen > KRPC_MAX_TOKEN)
            return err_set(err, RV_EPROTO, "token of %zu bytes (most is %d)", tok->slen,
                           KRPC_MAX_TOKEN);
        memcpy(m->token, tok->s, tok->slen);
        m->token_len = tok->slen;
    }
    const struct bnode *ip = bdict_get_type(root, "ip", BT_STR);
    if (ip != NULL && (ip->slen == 6 || ip->slen == 18)) {
        m->has_ip = true;
        addr_from(&m->ip, ip->s, ip->slen == 6 ? 4 : 6);
    }
    return 0;
}

int krpc_parse(const uint8_t *p, size_t len, struct krpc_msg *m, rv_error_t *err)
{
    memset(m, 0, sizeof(*m));
    struct bdoc doc;
    rv_error_t e;
    memset(&doc, 0, sizeof(doc));
    if (bencode_decode(&doc, p, len, 0, NULL, &e) != 0) {
        bencode_free(&doc);
        return err_set(err, RV_EPROTO, "not bencode: %s", e.msg);
    }
    const struct bnode *root = bencode_root(&doc);
    int rc = 0;
    const struct bnode *t = root && root->type == BT_DICT ? bdict_get_type(root, "t", BT_STR)
                                                          : NULL;
    const struct bnode *y = t ? bdict_get_type(root, "y", BT_STR) : NULL;
    if (root == NULL || root->type != BT_DICT) {
        rc = err_set(err, RV_EPROTO, "not a dictionary");
    } else if (t == NULL || t->slen == 0 || t->slen > KRPC_MAX_TID) {
        rc = err_set(err, RV_EPROTO, "no transaction id of 1..%d bytes", KRPC_MAX_TID);
    } else if (y == NULL || y->slen != 1 || strchr("qre", y->s[0]) == NULL) {
        rc = err_set(err, RV_EPROTO, "no message type 'y' of q, r or e");
    } else {
        memcpy(m->tid, t->s, t->slen);
        m->tid_len = t->slen;
        if (y->s[0] == 'q') {
            m->type = KRPC_QUERY;
            rc = parse_query(root, m, err);
        } else if (y->s[0] == 'r') {
            m->type = KRPC_RESPONSE;
            rc = parse_response(root, m, err);
        } else {
            m->type = KRPC_ERROR;
            const struct bnode *e2 = bdict_get_type(root, "e", BT_LIST);
            const struct bnode *c = e2 && e2->count >= 1 ? bnode_first(e2) : NULL;
            if (c != NULL && c->type == BT_INT)
                m->error_code = (int)(c->i > 100000 || c->i < 0 ? 0 : c->i);
            const struct bnode *s = c && e2->count >= 2 ? bnode_next(c) : NULL;
            if (s != NULL && s->type == BT_STR) {
                size_t n = 0;
                for (size_t i = 0; i < s->slen && n + 1 < sizeof(m->error_msg); i++)
                    m->error_msg[n++] = s->s[i] >= 0x20 && s->s[i] < 0x7f ? (char)s->s[i] : '?';
                m->error_msg[n] = '\0';
            }
        }
    }
    bencode_free(&doc);
    return rc;
}

static struct bv *compact_addr(const struct peer_addr *a)
{
    uint8_t b[18];
    size_t alen = a->family == 6 ? 16 : 4;
    memcpy(b, a->ip, alen);
    b[alen] = (uint8_t)(a->port >> 8);
    b[alen + 1] = (uint8_t)a->port;
    return bv_str(b, alen + 2);
}

static int finish(struct buf *out, struct bv *d)
{
    int rc = bv_encode(d, out);
    bv_free(d);
    return rc;
}

int krpc_put_query(struct buf *out, enum krpc_method m, const uint8_t *tid, size_t tid_len,
                   const uint8_t id[20], const uint8_t *target, const uint8_t *token,
                   size_t token_len, uint16_t port, bool implied_port, bool want4, bool want6)
{
    if (m > KRPC_ANNOUNCE_PEER)
        return RV_EINVAL;
    struct bv *d = bv_dict(), *a = bv_dict();
    if (d == NULL || a == NULL) {
        bv_free(d);
        bv_free(a);
        return RV_ENOMEM;
    }
    int rc = bv_dict_set(a, "id", bv_str(id, 20));
    if (rc == 0 && target != NULL)
        rc = bv_dict_set(a, m == KRPC_FIND_NODE ? "target" : "info_hash", bv_str(target, 20));
    if (rc == 0 && m == KRPC_ANNOUNCE_PEER) {
        rc = bv_dict_set(a, "token", bv_str(token, token_len));
        if (rc == 0)
            rc = bv_dict_set(a, "port", bv_int(port));
        if (rc == 0 && implied_port)
            rc = bv_dict_set(a, "implied_port", bv_int(1));
    }
    if (rc == 0 && (want4 || want6) && (m == KRPC_FIND_NODE || m == KRPC_GET_PEERS)) {
        struct bv *w = bv_list();
        if (w == NULL)
            rc = RV_ENOMEM;
        if (rc == 0 && want4)
            rc = bv_list_add(w, bv_cstr("n4"));
        if (rc == 0 && want6)
            rc = bv_list_add(w, bv_cstr("n6"));
        if (rc == 0)
            rc = bv_dict_set(a, "want", w);
        else
            bv_free(w);
    }
    if (rc == 0)
        rc = bv_dict_set(d, "a", a);
    else
        bv_free(a);
    if (rc == 0)
        rc = bv_dict_set(d, "q", bv_cstr(method_names[m]));
    if (rc == 0)
        rc = bv_dict_set(d, "t", bv_str(tid, tid_len));
    if (rc == 0)
        rc = bv_dict_set(d, "v", bv_str("RV\x01\x00", 4));
    if (rc == 0)
        rc = bv_dict_set(d, "y", bv_cstr("q"));
    if (rc != 0) {
        bv_free(d);
        return rc;
    }
    return finish(out, d);
}

int krpc_put_response(struct buf *out, const uint8_t *tid, size_t tid_len, const uint8_t id[20],
                      const struct krpc_node *nodes, size_t nnodes,
                      const struct peer_addr *values, size_t nvalues, const uint8_t *token,
                      size_t token_len, const struct peer_addr *requester)
{
    struct bv *d = bv_dict(), *r = bv_dict();
    if (d == NULL || r == NULL) {
        bv_free(d);
        bv_free(r);
        return RV_ENOMEM;
    }
    int rc = bv_dict_set(r, "id", bv_str(id, 20));
    uint8_t n4[KRPC_MAX_NODES * 26], n6[KRPC_MAX_NODES * 38];
    size_t l4 = 0, l6 = 0;
    for (size_t i = 0; i < nnodes; i++) {
        const struct krpc_node *n = &nodes[i];
        if (n->addr.family == 4 && l4 + 26 <= sizeof(n4)) {
            memcpy(n4 + l4, n->id, 20);
            memcpy(n4 + l4 + 20, n->addr.ip, 4);
            n4[l4 + 24] = (uint8_t)(n->addr.port >> 8);
            n4[l4 + 25] = (uint8_t)n->addr.port;
            l4 += 26;
        } else if (n->addr.family == 6 && l6 + 38 <= sizeof(n6)) {
            memcpy(n6 + l6, n->id, 20);
            memcpy(n6 + l6 + 20, n->addr.ip, 16);
            n6[l6 + 36] = (uint8_t)(n->addr.port >> 8);
            n6[l6 + 37] = (uint8_t)n->addr.port;
            l6 += 38;
        }
    }
    if (rc == 0 && l4 > 0)
        rc = bv_dict_set(r, "nodes", bv_str(n4, l4));
    if (rc == 0 && l6 > 0)
        rc = bv_dict_set(r, "nodes6", bv_str(n6, l6));
    if (rc == 0 && nvalues > 0) {
        struct bv *v = bv_list();
        rc = v ? 0 : RV_ENOMEM;
        for (size_t i = 0; rc == 0 && i < nvalues; i++)
            rc = bv_list_add(v, compact_addr(&values[i]));
        if (rc == 0)
            rc = bv_dict_set(r, "values", v);
        else
            bv_free(v);
    }
    if (rc == 0 && token != NULL)
        rc = bv_dict_set(r, "token", bv_str(token, token_len));
    if (rc == 0)
        rc = bv_dict_set(d, "r", r);
    else
        bv_free(r);
    if (rc == 0 && requester != NULL)
        rc = bv_dict_set(d, "ip", compact_addr(requester));
    if (rc == 0)
        rc = bv_dict_set(d, "t", bv_str(tid, tid_len));
    if (rc == 0)
        rc = bv_dict_set(d, "v", bv_str("RV\x01\x00", 4));
    if (rc == 0)
        rc = bv_dict_set(d, "y", bv_cstr("r"));
    if (rc != 0) {
        bv_free(d);
        return rc;
    }
    return finish(out, d);
}

int krpc_put_error(struct buf *out, const uint8_t *tid, size_t tid_len, int code, const char *msg)
{
    struct bv *d = bv_dict(), *e = bv_list();
    if (d == NULL || e == NULL) {
        bv_free(d);
        bv_free(e);
        return RV_ENOMEM;
    }
    int rc = bv_list_add(e, bv_int(code));
    if (rc == 0)
        rc = bv_list_add(e, bv_cstr(msg));
    if (rc == 0)
        rc = bv_dict_set(d, "e", e);
    else
        bv_free(e);
    if (rc == 0)
        rc = bv_dict_set(d, "t", bv_str(tid, tid_len));
    if (rc == 0)
        rc = bv_dict_set(d, "y", bv_cstr("e"));
    if (rc != 0) {
        bv_free(d);
        return rc;
    }
    return finish(out, d);
}
