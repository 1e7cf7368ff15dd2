/* .torrent parsing: v1 (BEP 3), v2 and hybrid (BEP 52), with the extensions real torrents
 * carry (BEP 12 tiers, 19 web seeds, 27 private, 47 padding files). Every path is checked so
 * that no file can land outside the download folder. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bencode/bencode.h"
#include "rivulet/metainfo.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/sha.h"

#define MAX_PATH_BYTES 4096
#define MAX_COMPONENT 255
/* Tracker URLs (all tiers together) and web seeds kept; the rest are ignored, as magnet.c
 * does. Real torrents carry tens. Without a cap, the duplicate check made a torrent of
 * 100,000 tracker URLs take minutes to read, and each URL would be announced to. */
#define MAX_TRACKERS 1000
#define MAX_WEB_SEEDS 1000

struct parse {
    const uint8_t *data;
    rv_error_t *err;
    rv_torrent_info_t *ti;
    size_t files_cap;
    size_t tracker_urls; /* kept so far, all tiers */
};

static size_t off(const struct parse *p, const struct bnode *n)
{
    return (size_t)(n->raw - p->data);
}

static int bad(struct parse *p, const struct bnode *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(struct parse *p, const struct bnode *n, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return err_set_at(p->err, RV_ETORRENT, n ? off(p, n) : 0, "%s", msg);
}

/* BEP 3 leaves path safety to clients. We refuse instead of silently renaming, so the user
 * learns the torrent is hostile: "..", ".", empty names, '/' or NUL inside a name. */
static int check_component(struct parse *p, const struct bnode *n, const char *what)
{
    if (n->type != BT_STR)
        return bad(p, n, "%s is not a string", what);
    if (n->slen == 0)
        return err_set_at(p->err, RV_EPATH, off(p, n), "%s has an empty path component", what);
    if ((n->slen == 1 && n->s[0] == '.') || (n->slen == 2 && n->s[0] == '.' && n->s[1] == '.'))
        return err_set_at(p->err, RV_EPATH, off(p, n),
                          "%s has a '%.*s' path component, which would leave the download folder",
                          what, (int)n->slen, (const char *)n->s);
    if (memchr(n->s, '/', n->slen) != NULL)
        return err_set_at(p->err, RV_EPATH, off(p, n), "%s has a '/' inside a path component",
                          what);
    if (memchr(n->s, '\0', n->slen) != NULL)
        return err_set_at(p->err, RV_EPATH, off(p, n), "%s has a NUL byte in a path component",
                          what);
    if (n->slen > MAX_COMPONENT)
        return err_set_at(p->err, RV_EPATH, off(p, n),
                          "%s has a path component of %zu bytes (the limit is %d)", what, n->slen,
                          MAX_COMPONENT);
    return 0;
}

static int add_file(struct parse *p, rv_file_t **out)
{
    rv_torrent_info_t *ti = p->ti;
    if (ti->file_count == p->files_cap) {
        size_t cap = p->files_cap ? p->files_cap * 2 : 8;
        rv_file_t *f = realloc(ti->files, cap * sizeof(*f));
        if (f == NULL)
            return err_set(p->err, RV_ENOMEM, "out of memory");
        ti->files = f;
        p->files_cap = cap;
    }
    *out = &ti->files[ti->file_count++];
    memset(*out, 0, sizeof(**out));
    return 0;
}

/* Joins prefix (may be NULL) and the string nodes comps[0..n) with '/'. */
static int join_path(struct parse *p, const char *prefix, const struct bnode *const *comps, size_t n,
                     char **out)
{
    struct buf b;
    buf_init(&b, MAX_PATH_BYTES);
    int rc = 0;
    if (prefix != NULL)
        rc = buf_append_str(&b, prefix);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (b.len > 0)
            rc = buf_append_byte(&b, '/');
        if (rc == 0)
            rc = buf_append(&b, comps[i]->s, comps[i]->slen);
    }
    if (rc == 0)
        rc = buf_append_byte(&b, 0);
    if (rc != 0) {
        buf_free(&b);
        if (rc == RV_ETOOBIG)
            return bad(p, comps[n ? n - 1 : 0], "file path longer than %d bytes", MAX_PATH_BYTES);
        return err_set(p->err, rc, "out of memory");
    }
    *out = (char *)buf_steal(&b, NULL);
    return 0;
}

static unsigned parse_attr(const struct bnode *a)
{
    unsigned attr = 0;
    if (a == NULL || a->type != BT_STR)
        return 0;
    for (size_t i = 0; i < a->slen; i++) {
        switch (a->s[i]) {
        case 'p':
            attr |= RV_FILE_PAD;
            break;
        case 'x':
            attr |= RV_FILE_EXECUTABLE;
            break;
        case 'h':
            attr |= RV_FILE_HIDDEN;
            break;
        case 'l':
            attr |= RV_FILE_SYMLINK;
            break;
        default:
            break;
        }
    }
    return attr;
}

static int get_length(struct parse *p, const struct bnode *dict, const struct bnode *where,
                      uint64_t *out)
{
    const struct bnode *len = bdict_get(dict, "length");
    if (len == NULL)
        return bad(p, where, "file has no 'length'");
    if (len->type != BT_INT)
        return bad(p, len, "file 'length' is not an integer");
    if (len->i < 0)
        return bad(p, len, "file 'length' is negative (%lld)", (long long)len->i);
    *out = (uint64_t)len->i;
    return 0;
}

/* A list of path components, all safe; returns the list's items in comps (caller frees). */
static int path_list(struct parse *p, const struct bnode *list, const struct bnode ***comps,
                     size_t *n)
{
    if (list->type != BT_LIST)
        return bad(p, list, "file 'path' is not a list");
    if (list->count == 0)
        return err_set_at(p->err, RV_EPATH, off(p, list), "file 'path' is empty");
    const struct bnode **c = malloc(list->count * sizeof(*c));
    if (c == NULL)
        return err_set(p->err, RV_ENOMEM, "out of memory");
    const struct bnode *it = bnode_first(list);
    for (uint32_t i = 0; i < list->count; i++, it = bnode_next(it)) {
        int rc = check_component(p, it, "file path");
        if (rc != 0) {
            free(c);
            return rc;
        }
        c[i] = it;
    }
    *comps = c;
    *n = list->count;
    return 0;
}

static int valid_utf8_path(const struct bnode *list)
{
    if (list == NULL || list->type != BT_LIST || list->count == 0)
        return 0;
    const struct bnode *it = bnode_first(list);
    for (uint32_t i = 0; i < list->count; i++, it = bnode_next(it))
        if (it->type != BT_STR)
            return 0;
    return 1;
}

static int parse_v1_files(struct parse *p, const struct bnode *info)
{
    rv_torrent_info_t *ti = p->ti;
    const struct bnode *files = bdict_get(info, "files");
    const struct bnode *length = bdict_get(info, "length");
    uint64_t pos = 0;
    int rc;

    if (files != NULL && length != NULL)
        return bad(p, info, "info has both 'length' (single file) and 'files' (multi-file)");
    if (length != NULL) {
        rv_file_t *f;
        uint64_t len;
        if ((rc = get_length(p, info, info, &len)) != 0)
            return rc;
        if ((rc = add_file(p, &f)) != 0)
            return rc;
        f->length = len;
        f->offset = 0;
        f->attr = parse_attr(bdict_get(info, "attr"));
        if ((f->path = strdup(ti->name)) == NULL)
            return err_set(p->err, RV_ENOMEM, "out of memory");
        ti->piece_space = len;
        ti->total_size = len;
        return 0;
    }
    if (files == NULL)
        return bad(p, info, "info has neither 'length' nor 'files'");
    if (files->type != BT_LIST)
        return bad(p, files, "'files' is not a list");
    if (files->count == 0)
        return bad(p, files, "'files' is empty");
    if (files->count > RV_MAX_FILES)
        return bad(p, files, "'files' lists %u files; the limit is %u", files->count,
                   RV_MAX_FILES);
    ti->multi_file = true;
    const struct bnode *fe = bnode_first(files);
    for (uint32_t i = 0; i < files->count; i++, fe = bnode_next(fe)) {
        if (fe->type != BT_DICT)
            return bad(p, fe, "entry %u of 'files' is not a dictionary", i);
        uint64_t len;
        if ((rc = get_length(p, fe, fe, &len)) != 0)
            return rc;
        const struct bnode *path = bdict_get(fe, "path.utf-8");
        if (!valid_utf8_path(path))
            path = bdict_get(fe, "path");
        if (path == NULL)
            return bad(p, fe, "entry %u of 'files' has no 'path'", i);
        const struct bnode **comps = NULL;
        size_t ncomps = 0;
        if ((rc = path_list(p, path, &comps, &ncomps)) != 0)
            return rc;
        rv_file_t *f;
        if ((rc = add_file(p, &f)) != 0) {
            free(comps);
            return rc;
        }
        rc = join_path(p, ti->name, comps, ncomps, &f->path);
        free(comps);
        if (rc != 0)
            return rc;
        f->length = len;
        f->offset = pos;
        f->attr = parse_attr(bdict_get(fe, "attr"));
        if (__builtin_add_overflow(pos, len, &pos) || pos > (uint64_t)INT64_MAX)
            return bad(p, fe, "the files' total size overflows");
        if (!(f->attr & RV_FILE_PAD))
            ti->total_size += len;
    }
    ti->piece_space = pos;
    return 0;
}

/* ---- v2 (BEP 52) ---- */

struct v2file {
    char *path;
    uint64_t length;
    unsigned attr;
    bool has_root;
    uint8_t root[32];
};

struct v2walk {
    struct v2file *files;
    size_t n, cap;
    const struct bnode *stack[BENCODE_MAX_DEPTH + 1];
    size_t depth;
};

static void v2walk_free(struct v2walk *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->files[i].path);
    free(w->files);
}

static int walk_tree(struct parse *p, struct v2walk *w, const struct bnode *dir)
{
    if (dir->type != BT_DICT)
        return bad(p, dir, "'file tree' entry is not a dictionary");
    if (dir->count == 0)
        return bad(p, dir, "'file tree' has an empty folder");
    const struct bnode *k = bnode_first(dir);
    for (uint32_t i = 0; i + 1 < dir->count; i += 2) {
        const struct bnode *v = bnode_next(k);
        int rc;
        if (v->type != BT_DICT)
            return bad(p, v, "'file tree' entry is not a dictionary");
        const struct bnode *leaf = bdict_get(v, "");
        if ((rc = check_component(p, k, "file tree")) != 0)
            return rc;
        if (w->depth >= BENCODE_MAX_DEPTH)
            return bad(p, k, "'file tree' nested too deeply");
        w->stack[w->depth++] = k;
        if (leaf != NULL) {
            if (leaf->type != BT_DICT || v->count != 2)
                return bad(p, v, "'file tree' file entry is malformed");
            if (w->n >= RV_MAX_FILES)
                return bad(p, k, "'file tree' holds more than %u files", RV_MAX_FILES);
            if (w->n == w->cap) {
                size_t cap = w->cap ? w->cap * 2 : 8;
                struct v2file *f = realloc(w->files, cap * sizeof(*f));
                if (f == NULL)
                    return err_set(p->err, RV_ENOMEM, "out of memory");
                w->files = f;
                w->cap = cap;
            }
            struct v2file *f = &w->files[w->n];
            memset(f, 0, sizeof(*f));
            if ((rc = get_length(p, leaf, leaf, &f->length)) != 0)
                return rc;
            f->attr = parse_attr(bdict_get(leaf, "attr"));
            const struct bnode *root = bdict_get(leaf, "pieces root");
            if (root != NULL) {
                if (root->type != BT_STR || root->slen != 32)
                    return bad(p, root, "'pieces root' is not 32 bytes");
                memcpy(f->root, root->s, 32);
                f->has_root = true;
            } else if (f->length > 0) {
                return bad(p, leaf, "file of %llu bytes has no 'pieces root'",
                           (unsigned long long)f->length);
            }
            if ((rc = join_path(p, NULL, w->stack, w->depth, &f->path)) != 0)
                return rc;
            w->n++;
        } else {
            if ((rc = walk_tree(p, w, v)) != 0)
                return rc;
        }
        w->depth--;
        k = bnode_next(v);
    }
    return 0;
}

/* The hash of a merkle subtree of 2^height zero leaves (BEP 52 pads with zero hashes). */
static void zero_subtree(unsigned height, uint8_t out[32])
{
    uint8_t pair[64];
    memset(out, 0, 32);
    for (unsigned i = 0; i < height; i++) {
        memcpy(pair, out, 32);
        memcpy(pair + 32, out, 32);
        sha256(pair, 64, out);
    }
}

/* The root of a piece layer: layer hashes padded up to a power of two with the hash of a
 * piece made of zero blocks. */
static int layer_root(const uint8_t *layer, size_t count, uint32_t piece_length, uint8_t out[32])
{
    unsigned piece_height = 0;
    while ((RV_BLOCK_SIZE << piece_height) < piece_length)
        piece_height++;
    uint8_t pad[32];
    zero_subtree(piece_height, pad);
    size_t width = 1;
    while (width < count)
        width *= 2;
    uint8_t *row = malloc(width * 32);
    if (row == NULL)
        return RV_ENOMEM;
    memcpy(row, layer, count * 32);
    for (size_t i = count; i < width; i++)
        memcpy(row + i * 32, pad, 32);
    while (width > 1) {
        for (size_t i = 0; i < width / 2; i++)
            sha256(row + i * 64, 64, row + i * 32);
        width /= 2;
    }
    memcpy(out, row, 32);
    free(row);
    return 0;
}

/* Orders files with a pieces root by root, then by position (so the first of equal roots,
 * as a linear scan would find, comes first). */
static int root_cmp(const void *a, const void *b)
{
    const struct v2file *x = *(const struct v2file *const *)a;
    const struct v2file *y = *(const struct v2file *const *)b;
    int c = memcmp(x->root, y->root, 32);
    return c != 0 ? c : (x < y ? -1 : x > y);
}

/* The first file (in tree order) whose pieces root is key, in by_root (n files sorted by
 * root_cmp), or NULL. */
static struct v2file *file_by_root(struct v2file *const *by_root, size_t n, const uint8_t *key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(by_root[mid]->root, key, 32) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && memcmp(by_root[lo]->root, key, 32) == 0 ? by_root[lo] : NULL;
}

/* One 'piece layers' entry: key k (a pieces root), value v (the layer's hashes). */
static int check_layer(struct parse *p, const struct bnode *k, const struct bnode *v,
                       struct v2file *const *by_root, size_t nroots)
{
    uint32_t plen = p->ti->piece_length;
    if (k->slen != 32)
        return bad(p, k, "'piece layers' key is not a 32-byte pieces root");
    if (v->type != BT_STR || v->slen % 32 != 0)
        return bad(p, v, "'piece layers' entry is not a multiple of 32 bytes");
    struct v2file *f = file_by_root(by_root, nroots, k->s);
    if (f == NULL)
        return bad(p, k, "'piece layers' has an entry for no file");
    uint64_t want = f->length / plen + (f->length % plen != 0);
    if (v->slen / 32 != want)
        return bad(p, v, "piece layer of %s holds %zu hashes, its %llu bytes need %llu", f->path,
                   v->slen / 32, (unsigned long long)f->length, (unsigned long long)want);
    uint8_t r[32];
    if (layer_root(v->s, v->slen / 32, plen, r) != 0)
        return err_set(p->err, RV_ENOMEM, "out of memory");
    if (memcmp(r, f->root, 32) != 0)
        return bad(p, v, "piece layer of %s does not hash to its pieces root", f->path);
    p->ti->piece_layer_count++;
    return 0;
}

static int check_piece_layers(struct parse *p, const struct bnode *root, struct v2walk *w)
{
    const struct bnode *layers = bdict_get(root, "piece layers");
    if (layers == NULL)
        return 0; /* allowed: a client can fetch them from peers */
    if (layers->type != BT_DICT)
        return bad(p, layers, "'piece layers' is not a dictionary");
    /* Files are looked up by root: a scan of every file per entry made a v2 torrent of
     * 100,000 files and as many layers take 10 s to read, and grew with the square. */
    struct v2file **by_root = malloc((w->n ? w->n : 1) * sizeof(*by_root));
    size_t nroots = 0;
    if (by_root == NULL)
        return err_set(p->err, RV_ENOMEM, "out of memory");
    for (size_t j = 0; j < w->n; j++)
        if (w->files[j].has_root)
            by_root[nroots++] = &w->files[j];
    qsort(by_root, nroots, sizeof(*by_root), root_cmp);
    int rc = 0;
    const struct bnode *k = bnode_first(layers);
    for (uint32_t i = 0; rc == 0 && i + 1 < layers->count; i += 2) {
        const struct bnode *v = bnode_next(k);
        rc = check_layer(p, k, v, by_root, nroots);
        k = bnode_next(v);
    }
    free(by_root);
    return rc;
}

static int parse_v2(struct parse *p, const struct bnode *root, const struct bnode *info)
{
    rv_torrent_info_t *ti = p->ti;
    const struct bnode *tree = bdict_get(info, "file tree");
    struct v2walk w = {0};
    int rc;
    if (tree == NULL)
        return bad(p, info, "meta version 2 torrent has no 'file tree'");
    if (tree->type != BT_DICT || tree->count == 0)
        return bad(p, tree, "'file tree' is not a non-empty dictionary");
    if ((rc = walk_tree(p, &w, tree)) != 0)
        goto done;
    if ((rc = check_piece_layers(p, root, &w)) != 0)
        goto done;
    /* BEP 52: a single file at the top of the tree is a single-file torrent. */
    bool single = w.n == 1 && strchr(w.files[0].path, '/') == NULL;

    if (ti->has_v1) {
        /* Hybrid: the v1 file list (padding aside) must describe the same files, at the
         * piece-aligned offsets v2 gives them (BEP 52 + BEP 47 padding), or a piece would
         * mean different bytes to v1 and v2 peers. */
        size_t j = 0;
        uint64_t v2pos = 0;
        for (size_t i = 0; i < ti->file_count; i++) {
            rv_file_t *f = &ti->files[i];
            if (f->attr & RV_FILE_PAD)
                continue;
            if (j >= w.n) {
                rc = bad(p, info, "hybrid torrent: the v1 file list has more files than v2's");
                goto done;
            }
            const char *v2path = w.files[j].path;
            const char *v1path = f->path;
            if (ti->multi_file) {
                size_t nl = strlen(ti->name);
                if (strncmp(v1path, ti->name, nl) == 0 && v1path[nl] == '/')
                    v1path += nl + 1;
            }
            if (w.files[j].length != f->length || strcmp(v1path, v2path) != 0) {
                rc = bad(p, info, "hybrid torrent: v1 file %s does not match v2 file %s", f->path,
                         w.files[j].path);
                goto done;
            }
            if (f->length > 0) {
                if (f->offset != v2pos) {
                    rc = bad(p, info,
                             "hybrid torrent: v1 file %s starts at byte %llu, but v2 puts it at "
                             "%llu (missing or wrong padding files)",
                             f->path, (unsigned long long)f->offset, (unsigned long long)v2pos);
                    goto done;
                }
                /* v1 offsets are at most INT64_MAX, so rounding up cannot overflow */
                v2pos = f->offset + f->length;
                if (v2pos % ti->piece_length != 0)
                    v2pos += ti->piece_length - v2pos % ti->piece_length;
            }
            f->has_pieces_root = w.files[j].has_root;
            memcpy(f->pieces_root, w.files[j].root, 32);
            j++;
        }
        if (j != w.n) {
            rc = bad(p, info, "hybrid torrent: the v2 file tree has more files than v1's list");
            goto done;
        }
        goto done;
    }

    ti->multi_file = !single;
    uint64_t pos = 0;
    for (size_t i = 0; i < w.n; i++) {
        rv_file_t *f;
        if ((rc = add_file(p, &f)) != 0)
            goto done;
        if (single) {
            f->path = strdup(ti->name);
        } else {
            size_t n = strlen(ti->name) + strlen(w.files[i].path) + 2;
            f->path = malloc(n);
            if (f->path != NULL)
                snprintf(f->path, n, "%s/%s", ti->name, w.files[i].path);
        }
        if (f->path == NULL) {
            rc = err_set(p->err, RV_ENOMEM, "out of memory");
            goto done;
        }
        f->length = w.files[i].length;
        f->attr = w.files[i].attr;
        f->has_pieces_root = w.files[i].has_root;
        memcpy(f->pieces_root, w.files[i].root, 32);
        f->offset = pos;
        /* v2 files start on piece boundaries. */
        if (__builtin_add_overflow(pos, f->length, &pos) || pos > (uint64_t)INT64_MAX - ti->piece_length) {
            rc = bad(p, tree, "the files' total size overflows");
            goto done;
        }
        ti->total_size += f->length;
        if (i + 1 < w.n && pos % ti->piece_length != 0)
            pos += ti->piece_length - pos % ti->piece_length;
    }
    ti->piece_space = pos;
done:
    v2walk_free(&w);
    return rc;
}

/* ---- the rest ---- */

static int dup_str(struct parse *p, const struct bnode *n, char **out)
{
    *out = NULL;
    if (n == NULL || n->type != BT_STR)
        return 0;
    *out = bstr_dup(n);
    return *out ? 0 : err_set(p->err, RV_ENOMEM, "out of memory");
}

static const struct bnode *pick(const struct bnode *d, const char *utf8, const char *plain)
{
    const struct bnode *n = bdict_get_type(d, utf8, BT_STR);
    return n ? n : bdict_get(d, plain);
}

static int push_url(struct parse *p, char ***arr, size_t *n, const struct bnode *s)
{
    if (s->type != BT_STR || s->slen == 0 || memchr(s->s, '\0', s->slen) != NULL)
        return 0; /* skipped: real torrents carry junk here, and it costs nothing to ignore */
    char **a = realloc(*arr, (*n + 1) * sizeof(*a));
    if (a == NULL)
        return err_set(p->err, RV_ENOMEM, "out of memory");
    *arr = a;
    if ((a[*n] = bstr_dup(s)) == NULL)
        return err_set(p->err, RV_ENOMEM, "out of memory");
    (*n)++;
    return 0;
}

static bool seen_tracker(const rv_torrent_info_t *ti, const struct bnode *s)
{
    for (size_t t = 0; t < ti->tier_count; t++)
        for (size_t u = 0; u < ti->tiers[t].count; u++)
            if (bstr_eq(s, ti->tiers[t].urls[u]))
                return true;
    return false;
}

static int add_tier(struct parse *p, const struct bnode *const *urls, size_t n)
{
    rv_torrent_info_t *ti = p->ti;
    rv_tier_t *t = realloc(ti->tiers, (ti->tier_count + 1) * sizeof(*t));
    if (t == NULL)
        return err_set(p->err, RV_ENOMEM, "out of memory");
    ti->tiers = t;
    rv_tier_t *tier = &ti->tiers[ti->tier_count];
    tier->urls = NULL;
    tier->count = 0;
    ti->tier_count++;
    for (size_t i = 0; i < n && p->tracker_urls < MAX_TRACKERS; i++) {
        if (urls[i]->type != BT_STR || seen_tracker(ti, urls[i]))
            continue;
        size_t had = tier->count;
        int rc = push_url(p, &tier->urls, &tier->count, urls[i]);
        if (rc != 0)
            return rc;
        p->tracker_urls += tier->count - had;
    }
    if (tier->count == 0)
        ti->tier_count--; /* an empty tier is dropped */
    return 0;
}

static int parse_trackers(struct parse *p, const struct bnode *root)
{
    const struct bnode *list = bdict_get_type(root, "announce-list", BT_LIST);
    int rc;
    if (list != NULL) {
        const struct bnode *tier = bnode_first(list);
        for (uint32_t i = 0; i < list->count && p->tracker_urls < MAX_TRACKERS;
             i++, tier = bnode_next(tier)) {
            if (tier->type != BT_LIST || tier->count == 0)
                continue;
            const struct bnode **urls = malloc(tier->count * sizeof(*urls));
            if (urls == NULL)
                return err_set(p->err, RV_ENOMEM, "out of memory");
            const struct bnode *u = bnode_first(tier);
            for (uint32_t j = 0; j < tier->count; j++, u = bnode_next(u))
                urls[j] = u;
            rc = add_tier(p, urls, tier->count);
            free(urls);
            if (rc != 0)
                return rc;
        }
    }
    /* BEP 12: announce-list, when present, supersedes announce. */
    const struct bnode *announce = bdict_get_type(root, "announce", BT_STR);
    if (p->ti->tier_count == 0 && announce != NULL)
        return add_tier(p, &announce, 1);
    return 0;
}

static int parse_web_seeds(struct parse *p, const struct bnode *root)
{
    const struct bnode *ul = bdict_get(root, "url-list");
    rv_torrent_info_t *ti = p->ti;
    if (ul == NULL)
        return 0;
    if (ul->type == BT_STR)
        return push_url(p, &ti->web_seeds, &ti->web_seed_count, ul);
    if (ul->type != BT_LIST)
        return 0;
    const struct bnode *u = bnode_first(ul);
    for (uint32_t i = 0; i < ul->count && ti->web_seed_count < MAX_WEB_SEEDS;
         i++, u = bnode_next(u)) {
        int rc = push_url(p, &ti->web_seeds, &ti->web_seed_count, u);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* BEP 5: nodes = [["host", port], ...], DHT nodes to bootstrap from. Malformed entries are
 * skipped, as for url-list; at most 64 are kept. */
static int parse_nodes(struct parse *p, const struct bnode *root)
{
    const struct bnode *nodes = bdict_get_type(root, "nodes", BT_LIST);
    rv_torrent_info_t *ti = p->ti;
    const struct bnode *e = nodes ? bnode_first(nodes) : NULL;
    for (uint32_t i = 0; nodes != NULL && i < nodes->count && ti->dht_node_count < 64;
         i++, e = bnode_next(e)) {
        if (e->type != BT_LIST || e->count != 2)
            continue;
        const struct bnode *host = bnode_first(e), *port = bnode_next(host);
        if (host->type != BT_STR || host->slen == 0 || host->slen > 253 || port->type != BT_INT ||
            port->i < 1 || port->i > 65535 || memchr(host->s, '\0', host->slen) != NULL)
            continue;
        char buf[300];
        bool v6 = memchr(host->s, ':', host->slen) != NULL;
        snprintf(buf, sizeof(buf), v6 ? "[%.*s]:%lld" : "%.*s:%lld", (int)host->slen,
                 (const char *)host->s, (long long)port->i);
        char **a = realloc(ti->dht_nodes, (ti->dht_node_count + 1) * sizeof(*a));
        if (a == NULL)
            return err_set(p->err, RV_ENOMEM, "out of memory");
        ti->dht_nodes = a;
        if ((a[ti->dht_node_count] = strdup(buf)) == NULL)
            return err_set(p->err, RV_ENOMEM, "out of memory");
        ti->dht_node_count++;
    }
    return 0;
}

/* Orders paths so that a folder's contents follow it directly: '/' sorts before any byte. */
static int path_cmp(const void *a, const void *b)
{
    const unsigned char *x = *(const unsigned char *const *)a;
    const unsigned char *y = *(const unsigned char *const *)b;
    for (;; x++, y++) {
        unsigned cx = *x == '/' ? 1 : (*x ? (unsigned)*x + 1 : 0);
        unsigned cy = *y == '/' ? 1 : (*y ? (unsigned)*y + 1 : 0);
        if (cx != cy)
            return cx < cy ? -1 : 1;
        if (cx == 0)
            return 0;
    }
}

/* Two files with one path, or a file that is also a folder, cannot both be written. */
static int check_unique_paths(struct parse *p, const struct bnode *info)
{
    rv_torrent_info_t *ti = p->ti;
    if (ti->file_count < 2)
        return 0;
    const char **paths = malloc(ti->file_count * sizeof(*paths));
    if (paths == NULL)
        return err_set(p->err, RV_ENOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < ti->file_count; i++)
        if (!(ti->files[i].attr & RV_FILE_PAD))
            paths[n++] = ti->files[i].path;
    qsort(paths, n, sizeof(*paths), path_cmp);
    int rc = 0;
    for (size_t i = 1; i < n && rc == 0; i++) {
        size_t l = strlen(paths[i - 1]);
        if (strcmp(paths[i - 1], paths[i]) == 0)
            rc = err_set_at(p->err, RV_EPATH, off(p, info), "two files have the same path %s",
                            paths[i]);
        else if (strncmp(paths[i - 1], paths[i], l) == 0 && paths[i][l] == '/')
            rc = err_set_at(p->err, RV_EPATH, off(p, info), "%s is both a file and a folder",
                            paths[i - 1]);
    }
    free(paths);
    return rc;
}

static int parse_info(struct parse *p, const struct bnode *root, const struct bnode *info)
{
    rv_torrent_info_t *ti = p->ti;
    int rc;

    const struct bnode *mv = bdict_get(info, "meta version");
    if (mv != NULL) {
        if (mv->type != BT_INT)
            return bad(p, mv, "'meta version' is not an integer");
        if (mv->i != 1 && mv->i != 2)
            return bad(p, mv, "unsupported 'meta version' %lld", (long long)mv->i);
        ti->has_v2 = mv->i == 2;
    }
    const struct bnode *pieces = bdict_get(info, "pieces");
    ti->has_v1 = pieces != NULL;
    if (!ti->has_v1 && !ti->has_v2)
        return bad(p, info, "info has neither 'pieces' (v1) nor 'meta version' 2");

    const struct bnode *name = pick(info, "name.utf-8", "name");
    if (name == NULL)
        return bad(p, info, "info has no 'name'");
    if ((rc = check_component(p, name, "name")) != 0)
        return rc;
    if ((ti->name = bstr_dup(name)) == NULL)
        return err_set(p->err, RV_ENOMEM, "out of memory");

    const struct bnode *pl = bdict_get(info, "piece length");
    if (pl == NULL)
        return bad(p, info, "info has no 'piece length'");
    if (pl->type != BT_INT)
        return bad(p, pl, "'piece length' is not an integer");
    if (pl->i < (int64_t)RV_MIN_PIECE_LEN || pl->i > (int64_t)RV_MAX_PIECE_LEN)
        return bad(p, pl, "piece length %lld is outside %u..%u", (long long)pl->i,
                   RV_MIN_PIECE_LEN, RV_MAX_PIECE_LEN);
    if ((pl->i & (pl->i - 1)) != 0)
        return bad(p, pl, "piece length %lld is not a power of two", (long long)pl->i);
    ti->piece_length = (uint32_t)pl->i;

    if (ti->has_v1) {
        if ((rc = parse_v1_files(p, info)) != 0)
            return rc;
        if (pieces->type != BT_STR)
            return bad(p, pieces, "'pieces' is not a string");
        if (pieces->slen % RV_SHA1_LEN != 0)
            return bad(p, pieces, "'pieces' is %zu bytes, not a multiple of 20", pieces->slen);
        uint64_t want = ti->piece_space / ti->piece_length + (ti->piece_space % ti->piece_length != 0);
        if (pieces->slen / RV_SHA1_LEN != want)
            return bad(p, pieces, "'pieces' holds %zu hashes but %llu bytes in pieces of %u need %llu",
                       pieces->slen / RV_SHA1_LEN, (unsigned long long)ti->piece_space,
                       ti->piece_length, (unsigned long long)want);
        /* Points into our own copy of the info dictionary. */
        ti->piece_hashes = ti->info_bytes + (pieces->s - info->raw);
    }
    if (ti->has_v2 && (rc = parse_v2(p, root, info)) != 0)
        return rc;
    if (ti->total_size == 0)
        return bad(p, info, "the torrent holds no data (every file is empty or padding)");
    uint64_t count = ti->piece_space / ti->piece_length + (ti->piece_space % ti->piece_length != 0);
    if (count > UINT32_MAX)
        return bad(p, info, "too many pieces (%llu)", (unsigned long long)count);
    ti->piece_count = (uint32_t)count;
    if ((rc = check_unique_paths(p, info)) != 0)
        return rc;

    const struct bnode *priv = bdict_get_type(info, "private", BT_INT);
    ti->is_private = priv != NULL && priv->i == 1;
    return dup_str(p, bdict_get(info, "source"), &ti->source);
}

int rv_torrent_parse(const uint8_t *data, size_t len, unsigned flags, rv_torrent_info_t **out,
                     rv_error_t *err)
{
    struct bdoc doc;
    struct parse p = {.data = data, .err = err};
    int rc;

    *out = NULL;
    err_clear(err);
    rc = bencode_decode(&doc, data, len, (flags & RV_PARSE_STRICT) ? BENCODE_STRICT : 0, NULL, err);
    if (rc != 0)
        goto fail;
    const struct bnode *root = bencode_root(&doc);
    if (root->type != BT_DICT) {
        rc = err_set_at(err, RV_ETORRENT, 0, "the file is not a bencoded dictionary");
        goto fail;
    }
    const struct bnode *info = bdict_get(root, "info");
    if (info == NULL) {
        rc = err_set_at(err, RV_ETORRENT, 0, "no 'info' dictionary");
        goto fail;
    }
    if (info->type != BT_DICT) {
        rc = bad(&p, info, "'info' is not a dictionary");
        goto fail;
    }
    if ((p.ti = calloc(1, sizeof(*p.ti))) == NULL) {
        rc = err_set(err, RV_ENOMEM, "out of memory");
        goto fail;
    }
    rv_torrent_info_t *ti = p.ti;
    ti->creation_date = -1;
    if ((ti->info_bytes = malloc(info->raw_len)) == NULL) {
        rc = err_set(err, RV_ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(ti->info_bytes, info->raw, info->raw_len);
    ti->info_len = info->raw_len;
    /* The info-hash covers the bytes exactly as they appear in the file. */
    sha1(info->raw, info->raw_len, ti->info_hash);
    sha256(info->raw, info->raw_len, ti->info_hash_v2);

    if ((rc = parse_info(&p, root, info)) != 0)
        goto fail;
    if (!ti->has_v1)
        memset(ti->info_hash, 0, sizeof(ti->info_hash));
    if (!ti->has_v2)
        memset(ti->info_hash_v2, 0, sizeof(ti->info_hash_v2));
    if ((rc = parse_trackers(&p, root)) != 0 || (rc = parse_web_seeds(&p, root)) != 0 ||
        (rc = parse_nodes(&p, root)) != 0)
        goto fail;
    if ((rc = dup_str(&p, pick(root, "comment.utf-8", "comment"), &ti->comment)) != 0 ||
        (rc = dup_str(&p, bdict_get(root, "created by"), &ti->created_by)) != 0)
        goto fail;
    const struct bnode *date = bdict_get_type(root, "creation date", BT_INT);
    if (date != NULL)
        ti->creation_date = date->i;
    bencode_free(&doc);
    *out = ti;
    return 0;
fail:
    rv_torrent_info_free(p.ti);
    bencode_free(&doc);
    return rc;
}

int rv_torrent_load(const char *path, unsigned flags, rv_torrent_info_t **out, rv_error_t *err)
{
    uint8_t *data;
    size_t len;
    *out = NULL;
    int rc = fs_read_file(path, RV_MAX_TORRENT_FILE, &data, &len, err);
    if (rc != 0)
        return rc;
    rc = rv_torrent_parse(data, len, flags, out, err);
    free(data);
    return rc;
}

void rv_torrent_info_free(rv_torrent_info_t *ti)
{
    if (ti == NULL)
        return;
    for (size_t i = 0; i < ti->file_count; i++)
        free(ti->files[i].path);
    free(ti->files);
    for (size_t t = 0; t < ti->tier_count; t++) {
        for (size_t u = 0; u < ti->tiers[t].count; u++)
            free(ti->tiers[t].urls[u]);
        free(ti->tiers[t].urls);
    }
    free(ti->tiers);
    for (size_t i = 0; i < ti->web_seed_count; i++)
        free(ti->web_seeds[i]);
    free(ti->web_seeds);
    for (size_t i = 0; i < ti->dht_node_count; i++)
        free(ti->dht_nodes[i]);
    free(ti->dht_nodes);
    free(ti->name);
    free(ti->comment);
    free(ti->created_by);
    free(ti->source);
    free(ti->info_bytes);
    free(ti);
}
