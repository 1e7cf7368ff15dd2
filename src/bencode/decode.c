/* Bencode decoder: one pass over the input, nodes appended in document order, recursion
 * bounded by BENCODE_MAX_DEPTH. Every error names the byte offset where it was found. */
#include <stdlib.h>
#include <string.h>

#include "bencode/bencode.h"
#include "util/err.h"

struct dec {
    struct bdoc *doc;
    const uint8_t *p;
    size_t len;
    size_t pos;
    unsigned flags;
    rv_error_t *err;
};

static int push_node(struct dec *d, size_t *idx)
{
    struct bdoc *doc = d->doc;
    if (doc->n == BENCODE_MAX_NODES)
        return err_set_at(d->err, RV_EBENCODE, d->pos, "more than %u values", BENCODE_MAX_NODES);
    if (doc->n == doc->cap) {
        size_t cap = doc->cap ? doc->cap * 2 : 64;
        if (cap > BENCODE_MAX_NODES)
            cap = BENCODE_MAX_NODES;
        struct bnode *nodes = realloc(doc->nodes, cap * sizeof(*nodes));
        if (nodes == NULL)
            return err_set(d->err, RV_ENOMEM, "out of memory decoding bencode");
        doc->nodes = nodes;
        doc->cap = cap;
    }
    *idx = doc->n++;
    memset(&doc->nodes[*idx], 0, sizeof(struct bnode));
    return 0;
}

static int is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/* i<digits>e: no leading zeros, no -0, within int64. */
static int parse_int(struct dec *d, int64_t *out)
{
    size_t start = d->pos;
    d->pos++; /* 'i' */
    int neg = 0;
    if (d->pos < d->len && d->p[d->pos] == '-') {
        neg = 1;
        d->pos++;
    }
    size_t digits = d->pos;
    /* Accumulate as a negative number so INT64_MIN fits. */
    int64_t v = 0;
    while (d->pos < d->len && is_digit(d->p[d->pos])) {
        int dig = d->p[d->pos] - '0';
        if (v < (INT64_MIN + dig) / 10)
            return err_set_at(d->err, RV_EBENCODE, start, "integer does not fit in 64 bits");
        v = v * 10 - dig;
        d->pos++;
    }
    if (d->pos >= d->len)
        return err_set_at(d->err, RV_EBENCODE, d->pos, "unexpected end of input inside integer");
    if (d->pos == digits)
        return err_set_at(d->err, RV_EBENCODE, d->pos, "integer has no digits");
    if (d->p[d->pos] != 'e')
        return err_set_at(d->err, RV_EBENCODE, d->pos, "unexpected character in integer");
    if (d->p[digits] == '0' && d->pos - digits > 1)
        return err_set_at(d->err, RV_EBENCODE, digits, "integer has a leading zero");
    if (neg && v == 0)
        return err_set_at(d->err, RV_EBENCODE, start, "negative zero is not a valid integer");
    if (!neg) {
        if (v == INT64_MIN)
            return err_set_at(d->err, RV_EBENCODE, start, "integer does not fit in 64 bits");
        v = -v;
    }
    d->pos++; /* 'e' */
    *out = v;
    return 0;
}

/* <length>:<bytes>; the length must fit in what is left of the input. */
static int parse_str(struct dec *d, const uint8_t **s, size_t *slen)
{
    size_t start = d->pos;
    size_t n = 0;
    while (d->pos < d->len && is_digit(d->p[d->pos])) {
        size_t dig = (size_t)(d->p[d->pos] - '0');
        if (__builtin_mul_overflow(n, 10, &n) || __builtin_add_overflow(n, dig, &n))
            return err_set_at(d->err, RV_EBENCODE, start, "string length overflows");
        d->pos++;
    }
    if (d->pos >= d->len)
        return err_set_at(d->err, RV_EBENCODE, d->pos, "unexpected end of input in string length");
    if (d->p[d->pos] != ':')
        return err_set_at(d->err, RV_EBENCODE, d->pos, "expected ':' after string length");
    if (d->p[start] == '0' && d->pos - start > 1)
        return err_set_at(d->err, RV_EBENCODE, start, "string length has a leading zero");
    d->pos++; /* ':' */
    if (n > d->len - d->pos)
        return err_set_at(d->err, RV_EBENCODE, start,
                          "string length %zu runs past the end of the input (%zu bytes left)", n,
                          d->len - d->pos);
    *s = d->p + d->pos;
    *slen = n;
    d->pos += n;
    return 0;
}

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static int parse_value(struct dec *d, unsigned depth)
{
    if (d->pos >= d->len)
        return err_set_at(d->err, RV_EBENCODE, d->pos, "unexpected end of input, expected a value");
    if (depth > BENCODE_MAX_DEPTH)
        return err_set_at(d->err, RV_EBENCODE, d->pos, "values nested deeper than %d levels",
                          BENCODE_MAX_DEPTH);
    size_t idx = 0, start = d->pos;
    int rc = push_node(d, &idx);
    if (rc != 0)
        return rc;
    uint8_t c = d->p[d->pos];
    uint32_t count = 0;
    struct bnode tmp = {0};

    if (c == 'i') {
        tmp.type = BT_INT;
        rc = parse_int(d, &tmp.i);
    } else if (is_digit(c)) {
        tmp.type = BT_STR;
        rc = parse_str(d, &tmp.s, &tmp.slen);
    } else if (c == 'l') {
        tmp.type = BT_LIST;
        d->pos++;
        while (rc == 0 && d->pos < d->len && d->p[d->pos] != 'e') {
            rc = parse_value(d, depth + 1);
            count++;
        }
    } else if (c == 'd') {
        tmp.type = BT_DICT;
        d->pos++;
        const uint8_t *prev = NULL;
        size_t prev_len = 0;
        while (rc == 0 && d->pos < d->len && d->p[d->pos] != 'e') {
            size_t key_at = d->pos;
            if (!is_digit(d->p[d->pos]))
                return err_set_at(d->err, RV_EBENCODE, d->pos, "dictionary key is not a string");
            rc = parse_value(d, depth + 1);
            if (rc != 0)
                break;
            const struct bnode *key = &d->doc->nodes[d->doc->n - 1];
            if (d->flags & BENCODE_STRICT) {
                if (prev != NULL) {
                    int cmp = key_cmp(prev, prev_len, key->s, key->slen);
                    if (cmp == 0)
                        return err_set_at(d->err, RV_EBENCODE, key_at, "duplicate dictionary key");
                    if (cmp > 0)
                        return err_set_at(d->err, RV_EBENCODE, key_at,
                                          "dictionary keys are not sorted");
                }
                prev = key->s;
                prev_len = key->slen;
            }
            if (d->pos >= d->len || d->p[d->pos] == 'e')
                return err_set_at(d->err, RV_EBENCODE, d->pos, "dictionary key has no value");
            rc = parse_value(d, depth + 1);
            count += 2;
        }
    } else {
        return err_set_at(d->err, RV_EBENCODE, d->pos, "unexpected character 0x%02x", c);
    }
    if (rc != 0)
        return rc;
    if (tmp.type == BT_LIST || tmp.type == BT_DICT) {
        if (d->pos >= d->len)
            return err_set_at(d->err, RV_EBENCODE, start, "%s is not terminated",
                              tmp.type == BT_LIST ? "list" : "dictionary");
        d->pos++; /* 'e' */
    }
    struct bnode *n = &d->doc->nodes[idx];
    *n = tmp;
    n->count = count;
    n->span = (uint32_t)(d->doc->n - idx);
    n->raw = d->p + start;
    n->raw_len = d->pos - start;
    return 0;
}

int bencode_decode(struct bdoc *doc, const uint8_t *p, size_t len, unsigned flags,
                   size_t *consumed, rv_error_t *err)
{
    struct dec d = {.doc = doc, .p = p, .len = len, .pos = 0, .flags = flags, .err = err};
    doc->nodes = NULL;
    doc->n = doc->cap = 0;
    if (len == 0)
        return err_set_at(err, RV_EBENCODE, 0, "empty input");
    int rc = parse_value(&d, 0);
    if (rc != 0)
        return rc;
    if (!(flags & BENCODE_ALLOW_TRAILING) && d.pos != len)
        return err_set_at(err, RV_EBENCODE, d.pos, "%zu bytes of trailing data after the value",
                          len - d.pos);
    if (consumed != NULL)
        *consumed = d.pos;
    return 0;
}

void bencode_free(struct bdoc *doc)
{
    free(doc->nodes);
    doc->nodes = NULL;
    doc->n = doc->cap = 0;
}

bool bstr_eq(const struct bnode *n, const char *s)
{
    size_t sl = strlen(s);
    return n != NULL && n->type == BT_STR && n->slen == sl && (sl == 0 || memcmp(n->s, s, sl) == 0);
}

const struct bnode *bdict_get(const struct bnode *d, const char *key)
{
    if (d == NULL || d->type != BT_DICT)
        return NULL;
    const struct bnode *k = bnode_first(d);
    for (uint32_t i = 0; i + 1 < d->count; i += 2) {
        const struct bnode *v = bnode_next(k);
        if (bstr_eq(k, key))
            return v;
        k = bnode_next(v);
    }
    return NULL;
}

const struct bnode *bdict_get_type(const struct bnode *d, const char *key, enum btype t)
{
    const struct bnode *v = bdict_get(d, key);
    return v != NULL && v->type == t ? v : NULL;
}

char *bstr_dup(const struct bnode *n)
{
    if (n == NULL || n->type != BT_STR)
        return NULL;
    char *s = malloc(n->slen + 1);
    if (s == NULL)
        return NULL;
    if (n->slen)
        memcpy(s, n->s, n->slen);
    s[n->slen] = '\0';
    return s;
}
