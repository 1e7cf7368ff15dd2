/* Bencode (BEP 3). The decoder keeps every value as a span of the input, so a dictionary's
 * exact bytes can be hashed (the info-hash); nodes live in one array in document order.
 * The encoder builds a small value tree and writes it canonically (keys sorted). */
#ifndef RV_BENCODE_H
#define RV_BENCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rivulet/error.h"
#include "util/buf.h"

#define BENCODE_MAX_DEPTH 64
/* Most values one document may hold (libtorrent's default max_decode_tokens). Each costs a
 * 56-byte node, so a 64 MiB .torrent of "i0e"s would otherwise take over a gigabyte; with the
 * cap a decode never holds more than about 170 MB of nodes. */
#define BENCODE_MAX_NODES 3000000u

enum btype { BT_INT, BT_STR, BT_LIST, BT_DICT };

/* One decoded value. Children of a list or dict follow their parent in the node array; a
 * dict's children alternate key (always BT_STR), value. Valid while the decoded document
 * and its input buffer live. */
struct bnode {
    enum btype type;
    uint32_t count;     /* children: list items, or 2 * dict entries */
    uint32_t span;      /* nodes in this subtree, itself included: the next sibling is this+span */
    const uint8_t *raw; /* the value's whole encoding in the input */
    size_t raw_len;
    int64_t i;          /* BT_INT */
    const uint8_t *s;   /* BT_STR: the string's bytes (not NUL-terminated) */
    size_t slen;
};

struct bdoc {
    struct bnode *nodes;
    size_t n, cap;
};

enum {
    BENCODE_STRICT = 1 << 0,   /* reject unsorted or duplicate dictionary keys */
    BENCODE_ALLOW_TRAILING = 1 << 1 /* stop after the first value (used for messages in a stream) */
};

/* Decodes one value from p[0..len). Borrows p, which must outlive doc. On success returns 0
 * and, if consumed is not NULL, the number of bytes used. On failure returns RV_EBENCODE (also
 * for more than BENCODE_MAX_NODES values) or RV_ENOMEM, and err names the byte offset. Free
 * doc with bencode_free either way. */
int bencode_decode(struct bdoc *doc, const uint8_t *p, size_t len, unsigned flags,
                   size_t *consumed, rv_error_t *err);
void bencode_free(struct bdoc *doc);

static inline const struct bnode *bencode_root(const struct bdoc *doc)
{
    return doc->n ? &doc->nodes[0] : NULL;
}

/* Navigation. Children: for (c = bnode_first(n), k = 0; k < n->count; k++, c = bnode_next(c)). */
static inline const struct bnode *bnode_first(const struct bnode *n)
{
    return n->count ? n + 1 : NULL;
}
static inline const struct bnode *bnode_next(const struct bnode *n)
{
    return n + n->span;
}

/* The value for key in a dict, or NULL (also NULL if d is not a dict). With duplicate keys,
 * the first wins. */
const struct bnode *bdict_get(const struct bnode *d, const char *key);
/* Typed lookups: NULL when absent or of another type. */
const struct bnode *bdict_get_type(const struct bnode *d, const char *key, enum btype t);
/* True if the string node equals the C string. */
bool bstr_eq(const struct bnode *n, const char *s);
/* A malloc'd NUL-terminated copy of a string node, or NULL. */
char *bstr_dup(const struct bnode *n);

/* ---- encoding ---- */

/* A value to encode. Build with bv_* and free the root with bv_free (which frees children). */
struct bv;

struct bv *bv_int(int64_t i);
struct bv *bv_str(const void *p, size_t n);
struct bv *bv_cstr(const char *s);
struct bv *bv_list(void);
struct bv *bv_dict(void);
/* Appends item to list, taking ownership of item. Returns 0 or RV_ENOMEM (item freed). */
int bv_list_add(struct bv *list, struct bv *item);
/* Sets key in dict, replacing an earlier value; takes ownership of val. */
int bv_dict_set(struct bv *dict, const char *key, struct bv *val);
int bv_dict_setn(struct bv *dict, const void *key, size_t keylen, struct bv *val);
void bv_free(struct bv *v);

/* Appends the canonical encoding of v (dict keys sorted as raw bytes) to out. Sorts v's
 * dictionaries in place, which changes nothing a caller can observe. */
int bv_encode(struct bv *v, struct buf *out);

#endif
