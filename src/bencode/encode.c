/* Bencode encoder: a small value tree written canonically, dictionary keys sorted as raw
 * bytes (BEP 3), so the same value always encodes to the same bytes. */
#include <stdlib.h>
#include <string.h>

#include "bencode/bencode.h"

struct bv_entry {
    uint8_t *key;
    size_t keylen;
    struct bv *val;
};

struct bv {
    enum btype type;
    int64_t i;
    uint8_t *s;
    size_t slen;
    struct bv **items; /* list */
    struct bv_entry *entries; /* dict */
    size_t n, cap;
};

static struct bv *bv_new(enum btype t)
{
    struct bv *v = calloc(1, sizeof(*v));
    if (v != NULL)
        v->type = t;
    return v;
}

struct bv *bv_int(int64_t i)
{
    struct bv *v = bv_new(BT_INT);
    if (v != NULL)
        v->i = i;
    return v;
}

struct bv *bv_str(const void *p, size_t n)
{
    struct bv *v = bv_new(BT_STR);
    if (v == NULL)
        return NULL;
    v->s = malloc(n ? n : 1);
    if (v->s == NULL) {
        free(v);
        return NULL;
    }
    if (n)
        memcpy(v->s, p, n);
    v->slen = n;
    return v;
}

struct bv *bv_cstr(const char *s)
{
    return bv_str(s, strlen(s));
}

struct bv *bv_list(void)
{
    return bv_new(BT_LIST);
}

struct bv *bv_dict(void)
{
    return bv_new(BT_DICT);
}

static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 8;
    void *p = realloc(*arr, c * elem);
    if (p == NULL)
        return RV_ENOMEM;
    *arr = p;
    *cap = c;
    return 0;
}

int bv_list_add(struct bv *list, struct bv *item)
{
    if (item == NULL)
        return RV_ENOMEM;
    if (list == NULL || list->type != BT_LIST) {
        bv_free(item);
        return RV_EINVAL;
    }
    if (grow((void **)&list->items, &list->cap, list->n, sizeof(*list->items)) != 0) {
        bv_free(item);
        return RV_ENOMEM;
    }
    list->items[list->n++] = item;
    return 0;
}

int bv_dict_setn(struct bv *dict, const void *key, size_t keylen, struct bv *val)
{
    if (val == NULL)
        return RV_ENOMEM;
    if (dict == NULL || dict->type != BT_DICT) {
        bv_free(val);
        return RV_EINVAL;
    }
    for (size_t i = 0; i < dict->n; i++) {
        struct bv_entry *e = &dict->entries[i];
        if (e->keylen == keylen && (keylen == 0 || memcmp(e->key, key, keylen) == 0)) {
            bv_free(e->val);
            e->val = val;
            return 0;
        }
    }
    if (grow((void **)&dict->entries, &dict->cap, dict->n, sizeof(*dict->entries)) != 0)
        goto fail;
    uint8_t *k = malloc(keylen ? keylen : 1);
    if (k == NULL)
        goto fail;
    if (keylen)
        memcpy(k, key, keylen);
    dict->entries[dict->n++] = (struct bv_entry){k, keylen, val};
    return 0;
fail:
    bv_free(val);
    return RV_ENOMEM;
}

int bv_dict_set(struct bv *dict, const char *key, struct bv *val)
{
    return bv_dict_setn(dict, key, strlen(key), val);
}

void bv_free(struct bv *v)
{
    if (v == NULL)
        return;
    free(v->s);
    for (size_t i = 0; v->type == BT_LIST && i < v->n; i++)
        bv_free(v->items[i]);
    for (size_t i = 0; v->type == BT_DICT && i < v->n; i++) {
        free(v->entries[i].key);
        bv_free(v->entries[i].val);
    }
    free(v->items);
    free(v->entries);
    free(v);
}

static int entry_cmp(const void *a, const void *b)
{
    const struct bv_entry *x = a, *y = b;
    size_t n = x->keylen < y->keylen ? x->keylen : y->keylen;
    int c = n ? memcmp(x->key, y->key, n) : 0;
    if (c != 0)
        return c;
    return x->keylen < y->keylen ? -1 : x->keylen > y->keylen;
}

static int encode_str(const uint8_t *s, size_t n, struct buf *out)
{
    int rc = buf_printf(out, "%zu:", n);
    return rc ? rc : buf_append(out, s, n);
}

static int encode(struct bv *v, struct buf *out, unsigned depth)
{
    int rc = 0;
    if (depth > BENCODE_MAX_DEPTH)
        return RV_EINVAL;
    switch (v->type) {
    case BT_INT:
        return buf_printf(out, "i%llde", (long long)v->i);
    case BT_STR:
        return encode_str(v->s, v->slen, out);
    case BT_LIST:
        rc = buf_append_byte(out, 'l');
        for (size_t i = 0; rc == 0 && i < v->n; i++)
            rc = encode(v->items[i], out, depth + 1);
        return rc ? rc : buf_append_byte(out, 'e');
    case BT_DICT:
        /* Sorting in place is invisible to callers: lookups go by key, not position. */
        if (v->n > 1)
            qsort(v->entries, v->n, sizeof(*v->entries), entry_cmp);
        rc = buf_append_byte(out, 'd');
        for (size_t i = 0; rc == 0 && i < v->n; i++) {
            rc = encode_str(v->entries[i].key, v->entries[i].keylen, out);
            if (rc == 0)
                rc = encode(v->entries[i].val, out, depth + 1);
        }
        return rc ? rc : buf_append_byte(out, 'e');
    }
    return RV_EINVAL;
}

int bv_encode(struct bv *v, struct buf *out)
{
    if (v == NULL)
        return RV_EINVAL;
    return encode(v, out, 0);
}
