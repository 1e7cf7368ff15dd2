/* libFuzzer target: the bencode decoder (default and strict), and re-encoding what decodes. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bencode/bencode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Rebuilds a decoded value with the encoder. */
static struct bv *rebuild(const struct bnode *n)
{
    switch (n->type) {
    case BT_INT:
        return bv_int(n->i);
    case BT_STR:
        return bv_str(n->s, n->slen);
    case BT_LIST: {
        struct bv *l = bv_list();
        const struct bnode *c = bnode_first(n);
        for (uint32_t i = 0; l && i < n->count; i++, c = bnode_next(c))
            bv_list_add(l, rebuild(c));
        return l;
    }
    case BT_DICT: {
        struct bv *d = bv_dict();
        const struct bnode *k = bnode_first(n);
        for (uint32_t i = 0; d && i + 1 < n->count; i += 2) {
            const struct bnode *v = bnode_next(k);
            /* With duplicate keys the last one wins here; either way the output is canonical. */
            bv_dict_setn(d, k->s, k->slen, rebuild(v));
            k = bnode_next(v);
        }
        return d;
    }
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bdoc doc;
    size_t used = 0;
    if (bencode_decode(&doc, data, size, 0, &used, NULL) == 0) {
        const struct bnode *root = bencode_root(&doc);
        if (used != size || root->raw_len != size)
            __builtin_trap();
        struct bv *v = rebuild(root);
        struct buf out;
        buf_init(&out, 0);
        if (v != NULL && bv_encode(v, &out) == 0) {
            /* Canonical output must decode in strict mode. */
            struct bdoc again;
            if (bencode_decode(&again, out.data, out.len, BENCODE_STRICT, NULL, NULL) != 0)
                __builtin_trap();
            bencode_free(&again);
        }
        buf_free(&out);
        bv_free(v);
    }
    bencode_free(&doc);

    /* Strict mode accepts a subset of what the default accepts. */
    if (bencode_decode(&doc, data, size, BENCODE_STRICT, NULL, NULL) == 0) {
        struct bdoc loose;
        if (bencode_decode(&loose, data, size, 0, NULL, NULL) != 0)
            __builtin_trap();
        bencode_free(&loose);
    }
    bencode_free(&doc);
    bencode_decode(&doc, data, size, BENCODE_ALLOW_TRAILING, &used, NULL);
    bencode_free(&doc);
    return 0;
}
