/* Unit tests for src/bencode: decoding (spans, limits, errors with offsets) and encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bencode/bencode.h"

static int decode(struct bdoc *doc, const char *s, unsigned flags, rv_error_t *err)
{
    return bencode_decode(doc, (const uint8_t *)s, strlen(s), flags, NULL, err);
}

/* Expects s to fail at offset with a message containing needle. */
static void expect_error(const char *s, unsigned flags, size_t offset, const char *needle)
{
    struct bdoc doc;
    rv_error_t err;
    int rc = decode(&doc, s, flags, &err);
    bencode_free(&doc);
    if (rc != RV_EBENCODE || err.offset != offset || strstr(err.msg, needle) == NULL)
        fail_msg("input '%s': rc %d offset %zu msg '%s' (wanted offset %zu, '%s')", s, rc,
                 err.offset, err.msg, offset, needle);
    assert_true(err.has_offset);
}

static void decodes_integers(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t v;
    } ok[] = {{"i0e", 0},
              {"i42e", 42},
              {"i-7e", -7},
              {"i9223372036854775807e", INT64_MAX},
              {"i-9223372036854775808e", INT64_MIN}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct bdoc doc;
        assert_int_equal(decode(&doc, ok[i].in, 0, NULL), 0);
        assert_int_equal(bencode_root(&doc)->type, BT_INT);
        assert_true(bencode_root(&doc)->i == ok[i].v);
        bencode_free(&doc);
    }
}

static void rejects_bad_integers(void **state)
{
    (void)state;
    expect_error("i03e", 0, 1, "leading zero");
    expect_error("i-0e", 0, 0, "negative zero");
    expect_error("i-03e", 0, 2, "leading zero");
    expect_error("ie", 0, 1, "no digits");
    expect_error("i-e", 0, 2, "no digits");
    expect_error("i9223372036854775808e", 0, 0, "64 bits");
    expect_error("i-9223372036854775809e", 0, 0, "64 bits");
    expect_error("i99999999999999999999999e", 0, 0, "64 bits");
    expect_error("i12", 0, 3, "end of input");
    expect_error("i1x2e", 0, 2, "unexpected character");
    expect_error("i+1e", 0, 1, "no digits");
}

static void decodes_strings_as_spans(void **state)
{
    (void)state;
    struct bdoc doc;
    const char *in = "5:hello";
    assert_int_equal(decode(&doc, in, 0, NULL), 0);
    const struct bnode *n = bencode_root(&doc);
    assert_int_equal(n->type, BT_STR);
    assert_int_equal(n->slen, 5);
    assert_ptr_equal(n->s, (const uint8_t *)in + 2); /* a span, not a copy */
    assert_int_equal(n->raw_len, 7);
    bencode_free(&doc);

    assert_int_equal(decode(&doc, "0:", 0, NULL), 0);
    assert_int_equal(bencode_root(&doc)->slen, 0);
    bencode_free(&doc);

    /* Binary bytes, NUL included, are kept as they are. */
    const uint8_t bin[] = {'3', ':', 0, 0xff, 'a'};
    assert_int_equal(bencode_decode(&doc, bin, sizeof(bin), 0, NULL, NULL), 0);
    assert_memory_equal(bencode_root(&doc)->s, bin + 2, 3);
    bencode_free(&doc);
}

static void rejects_bad_strings(void **state)
{
    (void)state;
    expect_error("5:abc", 0, 0, "past the end");
    expect_error("05:abcde", 0, 0, "leading zero");
    expect_error("99999999999999999999999999:x", 0, 0, "overflows");
    expect_error("18446744073709551615:x", 0, 0, "past the end");
    expect_error("3abc", 0, 1, "expected ':'");
    expect_error("12", 0, 2, "end of input");
}

static void decodes_nested_and_navigates(void **state)
{
    (void)state;
    struct bdoc doc;
    const char *in = "d1:ali1ei2eli3eee1:bd1:c1:xe1:d0:e";
    assert_int_equal(decode(&doc, in, BENCODE_STRICT, NULL), 0);
    const struct bnode *root = bencode_root(&doc);
    assert_int_equal(root->type, BT_DICT);
    assert_int_equal(root->count, 6);
    assert_int_equal(root->raw_len, strlen(in));
    const struct bnode *a = bdict_get_type(root, "a", BT_LIST);
    assert_non_null(a);
    assert_int_equal(a->count, 3);
    const struct bnode *x = bnode_first(a);
    assert_int_equal(x->i, 1);
    x = bnode_next(x);
    assert_int_equal(x->i, 2);
    x = bnode_next(x);
    assert_int_equal(x->type, BT_LIST);
    assert_int_equal(bnode_first(x)->i, 3);
    const struct bnode *b = bdict_get_type(root, "b", BT_DICT);
    assert_non_null(b);
    /* The raw span of a nested dict is exactly its bytes in the input. */
    assert_int_equal(b->raw_len, strlen("d1:c1:xe"));
    assert_memory_equal(b->raw, "d1:c1:xe", b->raw_len);
    assert_true(bstr_eq(bdict_get(b, "c"), "x"));
    assert_true(bstr_eq(bdict_get(root, "d"), ""));
    assert_null(bdict_get(root, "zz"));
    assert_null(bdict_get_type(root, "a", BT_DICT));
    assert_null(bdict_get(a, "a")); /* not a dict */
    char *dup = bstr_dup(bdict_get(b, "c"));
    assert_string_equal(dup, "x");
    free(dup);
    bencode_free(&doc);
}

static void empty_containers(void **state)
{
    (void)state;
    struct bdoc doc;
    assert_int_equal(decode(&doc, "le", 0, NULL), 0);
    assert_int_equal(bencode_root(&doc)->count, 0);
    assert_null(bnode_first(bencode_root(&doc)));
    bencode_free(&doc);
    assert_int_equal(decode(&doc, "de", 0, NULL), 0);
    bencode_free(&doc);
}

static void rejects_structural_errors(void **state)
{
    (void)state;
    expect_error("", 0, 0, "empty input");
    expect_error("l", 0, 0, "not terminated");
    expect_error("li1e", 0, 0, "not terminated");
    expect_error("d1:a", 0, 4, "no value");
    expect_error("d1:ae", 0, 4, "no value");
    expect_error("di1ei2ee", 0, 1, "key is not a string");
    expect_error("x", 0, 0, "unexpected character");
    expect_error("i1ei2e", 0, 3, "trailing data");
    expect_error("lee", 0, 2, "trailing data");
}

static void bounds_nesting_depth(void **state)
{
    (void)state;
    size_t depth = 10000;
    char *s = malloc(2 * depth + 1);
    memset(s, 'l', depth);
    memset(s + depth, 'e', depth);
    s[2 * depth] = '\0';
    struct bdoc doc;
    rv_error_t err;
    assert_int_equal(decode(&doc, s, 0, &err), RV_EBENCODE);
    assert_non_null(strstr(err.msg, "nested deeper"));
    assert_int_equal(err.offset, BENCODE_MAX_DEPTH + 1);
    bencode_free(&doc);
    /* Up to the limit is fine. */
    s[BENCODE_MAX_DEPTH + 1] = '\0';
    memset(s, 'l', BENCODE_MAX_DEPTH + 1);
    char *ok = malloc(2 * (BENCODE_MAX_DEPTH + 1) + 1);
    memset(ok, 'l', BENCODE_MAX_DEPTH + 1);
    memset(ok + BENCODE_MAX_DEPTH + 1, 'e', BENCODE_MAX_DEPTH + 1);
    ok[2 * (BENCODE_MAX_DEPTH + 1)] = '\0';
    assert_int_equal(decode(&doc, ok, 0, NULL), 0);
    bencode_free(&doc);
    free(ok);
    free(s);
}

/* A list of n "i0e" items: n + 1 values in 3n + 2 bytes. */
static uint8_t *many_ints(size_t n, size_t *len)
{
    *len = 3 * n + 2;
    uint8_t *s = malloc(*len);
    assert_non_null(s);
    s[0] = 'l';
    for (size_t i = 0; i < n; i++)
        memcpy(s + 1 + 3 * i, "i0e", 3);
    s[*len - 1] = 'e';
    return s;
}

/* A hostile .torrent of 64 MiB of "i0e"s would need 22 million nodes (over a gigabyte): the
 * value count is capped, exactly at BENCODE_MAX_NODES. */
static void bounds_value_count(void **state)
{
    (void)state;
    size_t len;
    struct bdoc doc;
    rv_error_t err;
    uint8_t *s = many_ints(BENCODE_MAX_NODES - 1, &len);
    assert_int_equal(bencode_decode(&doc, s, len, 0, NULL, &err), 0);
    assert_int_equal(doc.n, BENCODE_MAX_NODES);
    assert_true(doc.cap <= BENCODE_MAX_NODES);
    assert_int_equal(bencode_root(&doc)->count, BENCODE_MAX_NODES - 1);
    bencode_free(&doc);
    free(s);
    s = many_ints(BENCODE_MAX_NODES, &len);
    assert_int_equal(bencode_decode(&doc, s, len, 0, NULL, &err), RV_EBENCODE);
    assert_non_null(strstr(err.msg, "more than 3000000 values"));
    assert_int_equal(err.offset, 1 + 3 * (size_t)(BENCODE_MAX_NODES - 1));
    bencode_free(&doc);
    free(s);
}

static void strict_mode_checks_key_order(void **state)
{
    (void)state;
    struct bdoc doc;
    /* Real torrents sometimes have unsorted keys: accepted by default. */
    assert_int_equal(decode(&doc, "d1:bi1e1:ai2ee", 0, NULL), 0);
    assert_int_equal(bdict_get(bencode_root(&doc), "a")->i, 2);
    bencode_free(&doc);
    /* Duplicates: the first wins by default. */
    assert_int_equal(decode(&doc, "d1:ai1e1:ai2ee", 0, NULL), 0);
    assert_int_equal(bdict_get(bencode_root(&doc), "a")->i, 1);
    bencode_free(&doc);
    expect_error("d1:bi1e1:ai2ee", BENCODE_STRICT, 7, "not sorted");
    expect_error("d1:ai1e1:ai2ee", BENCODE_STRICT, 7, "duplicate");
    /* A prefix sorts first. */
    assert_int_equal(decode(&doc, "d1:ai1e2:aai2ee", BENCODE_STRICT, NULL), 0);
    bencode_free(&doc);
    expect_error("d2:aai1e1:ai2ee", BENCODE_STRICT, 8, "not sorted");
}

static void allow_trailing_reports_consumed(void **state)
{
    (void)state;
    struct bdoc doc;
    size_t used = 0;
    const char *in = "d1:ai1ee<binary payload>";
    assert_int_equal(bencode_decode(&doc, (const uint8_t *)in, strlen(in),
                                    BENCODE_ALLOW_TRAILING, &used, NULL),
                     0);
    assert_int_equal(used, 8);
    bencode_free(&doc);
}

static void encodes_canonically(void **state)
{
    (void)state;
    struct bv *d = bv_dict();
    assert_int_equal(bv_dict_set(d, "zeta", bv_int(-5)), 0);
    assert_int_equal(bv_dict_set(d, "alpha", bv_cstr("x")), 0);
    struct bv *l = bv_list();
    assert_int_equal(bv_list_add(l, bv_int(1)), 0);
    assert_int_equal(bv_list_add(l, bv_str("\0b", 2)), 0);
    assert_int_equal(bv_dict_set(d, "m", l), 0);
    assert_int_equal(bv_dict_set(d, "alpha", bv_cstr("replaced")), 0);
    assert_int_equal(bv_dict_setn(d, "a\0", 2, bv_dict()), 0);
    struct buf out;
    buf_init(&out, 0);
    assert_int_equal(bv_encode(d, &out), 0);
    static const char want[] = "d2:a\0de5:alpha8:replaced1:mli1e2:\0be4:zetai-5ee";
    assert_int_equal(out.len, sizeof(want) - 1);
    assert_memory_equal(out.data, want, out.len);

    /* What we write, we read back in strict mode. */
    struct bdoc doc;
    assert_int_equal(bencode_decode(&doc, out.data, out.len, BENCODE_STRICT, NULL, NULL), 0);
    bencode_free(&doc);
    buf_free(&out);
    bv_free(d);
}

static void encode_round_trip_of_extremes(void **state)
{
    (void)state;
    struct bv *l = bv_list();
    bv_list_add(l, bv_int(INT64_MIN));
    bv_list_add(l, bv_int(INT64_MAX));
    bv_list_add(l, bv_int(0));
    bv_list_add(l, bv_str("", 0));
    struct buf out;
    buf_init(&out, 0);
    assert_int_equal(bv_encode(l, &out), 0);
    static const char want[] = "li-9223372036854775808ei9223372036854775807ei0e0:e";
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data, want, out.len);
    buf_free(&out);
    bv_free(l);
    /* A NULL item (failed allocation upstream) is reported, not stored. */
    struct bv *l2 = bv_list();
    assert_int_equal(bv_list_add(l2, NULL), RV_ENOMEM);
    assert_int_equal(bv_dict_set(l2, "k", bv_int(1)), RV_EINVAL);
    bv_free(l2);
}

/* Random bytes must never crash the decoder, and a success must cover the whole input. */
static void random_inputs_are_safe(void **state)
{
    (void)state;
    uint32_t x = 12345;
    static const char alphabet[] = "ilde0123456789:-ab";
    for (int iter = 0; iter < 20000; iter++) {
        char buf[40];
        size_t n = 1 + (x % (sizeof(buf) - 1));
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245 + 12345;
            buf[i] = alphabet[(x >> 16) % (sizeof(alphabet) - 1)];
        }
        struct bdoc doc;
        size_t used = 0;
        if (bencode_decode(&doc, (const uint8_t *)buf, n, 0, &used, NULL) == 0)
            assert_int_equal(used, n);
        bencode_free(&doc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decodes_integers),
        cmocka_unit_test(rejects_bad_integers),
        cmocka_unit_test(decodes_strings_as_spans),
        cmocka_unit_test(rejects_bad_strings),
        cmocka_unit_test(decodes_nested_and_navigates),
        cmocka_unit_test(empty_containers),
        cmocka_unit_test(rejects_structural_errors),
        cmocka_unit_test(bounds_nesting_depth),
        cmocka_unit_test(bounds_value_count),
        cmocka_unit_test(strict_mode_checks_key_order),
        cmocka_unit_test(allow_trailing_reports_consumed),
        cmocka_unit_test(encodes_canonically),
        cmocka_unit_test(encode_round_trip_of_extremes),
        cmocka_unit_test(random_inputs_are_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
