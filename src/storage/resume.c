/* Resume data: the bencoded file, its checks, and the comparison with the files on disk.
 *
 * The format (version 1), one canonical bencoded dictionary:
 *   version     1
 *   info-hash   20 bytes: the torrent's v1 info-hash
 *   pieces      the verified pieces as a BEP 3 bitfield (spare bits zero)
 *   files       one dict per torrent file, padding included, in torrent order:
 *               {mtime: ns since the epoch, size: bytes} when a regular file was there, {}
 *               when none was
 *   partial     [{blocks: bitfield of the piece's 16 KiB blocks, piece: index}, ...]
 *   uploaded, downloaded   payload bytes, >= 0
 *   peers       compact IPv4 peers, 6 bytes each (BEP 23); peers6: IPv6, 18 bytes each
 * Unknown keys are ignored, so a later version may add some without breaking this one.
 *
 * Why size and mtime are enough: our own writes only ever touch pieces not yet in `have`, so
 * they cannot invalidate what `have` claims; size and mtime only have to catch someone else's
 * change (an editor, a truncation, a file replaced or deleted), which moves at least one of
 * them. A change within the file system's timestamp granularity of our own stat is missed, as
 * it is by every client that works this way (libtorrent, Transmission). */
#include "storage/resume.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bencode/bencode.h"
#include "storage/pathat.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/hex.h"

#define V4_LEN 6
#define V6_LEN 18

/* RV_EIO with "MESSAGE: strerror(e)" and err->sys_errno = e. GNU strerror_r: these calls run on
 * workers, where strerror's shared buffer is not safe. */
static int sys_err(rv_error_t *err, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int sys_err(rv_error_t *err, int e, const char *fmt, ...)
{
    char what[300], ebuf[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    err_set(err, RV_EIO, "%s: %s", what, strerror_r(e, ebuf, sizeof(ebuf)));
    if (err != NULL)
        err->sys_errno = e;
    return RV_EIO;
}

int resume_init(struct resume_data *rd, const rv_torrent_info_t *ti)
{
    memset(rd, 0, sizeof(*rd));
    memcpy(rd->info_hash, ti->info_hash, RV_SHA1_LEN);
    if (bitfield_init(&rd->have, ti->piece_count) != 0)
        return RV_ENOMEM;
    rd->files = calloc(ti->file_count ? ti->file_count : 1, sizeof(*rd->files));
    if (rd->files == NULL) {
        bitfield_free(&rd->have);
        return RV_ENOMEM;
    }
    rd->file_count = ti->file_count;
    return 0;
}

static void free_partials(struct resume_data *rd)
{
    for (size_t i = 0; i < rd->partial_count; i++)
        bitfield_free(&rd->partials[i].blocks);
    free(rd->partials);
    rd->partials = NULL;
    rd->partial_count = 0;
}

void resume_free(struct resume_data *rd)
{
    bitfield_free(&rd->have);
    free(rd->files);
    free_partials(rd);
    free(rd->peers);
    memset(rd, 0, sizeof(*rd));
}

uint32_t resume_piece_blocks(const struct layout *l, uint32_t piece)
{
    uint32_t size = layout_piece_size(l, piece);
    return size / RV_BLOCK_SIZE + (size % RV_BLOCK_SIZE != 0);
}

static bool partial_listed(const struct resume_data *rd, uint32_t piece)
{
    for (size_t i = 0; i < rd->partial_count; i++)
        if (rd->partials[i].piece == piece)
            return true;
    return false;
}

/* Appends a partial piece, taking ownership of blocks (freed on failure). */
static int push_partial(struct resume_data *rd, uint32_t piece, struct bitfield *blocks)
{
    struct resume_partial *v = realloc(rd->partials, (rd->partial_count + 1) * sizeof(*v));
    if (v == NULL) {
        bitfield_free(blocks);
        return RV_ENOMEM;
    }
    rd->partials = v;
    v[rd->partial_count].piece = piece;
    v[rd->partial_count].blocks = *blocks;
    rd->partial_count++;
    return 0;
}

int resume_add_partial(struct resume_data *rd, const struct layout *l, uint32_t piece,
                       const struct bitfield *blocks)
{
    if (piece >= rd->have.count || piece >= l->piece_count || bitfield_has(&rd->have, piece) ||
        blocks->count != resume_piece_blocks(l, piece) || blocks->set == 0 ||
        partial_listed(rd, piece))
        return RV_EINVAL;
    struct bitfield copy;
    if (bitfield_init(&copy, blocks->count) != 0)
        return RV_ENOMEM;
    int rc = bitfield_load(&copy, blocks->bits, bitfield_bytes(blocks->count));
    if (rc != 0) {
        bitfield_free(&copy);
        return RV_EINVAL;
    }
    return push_partial(rd, piece, &copy);
}

int resume_set_peers(struct resume_data *rd, const struct peer_addr *peers, size_t n)
{
    if (n > RESUME_MAX_PEERS)
        n = RESUME_MAX_PEERS;
    struct peer_addr *v = malloc((n ? n : 1) * sizeof(*v));
    if (v == NULL)
        return RV_ENOMEM;
    if (n)
        memcpy(v, peers, n * sizeof(*v));
    free(rd->peers);
    rd->peers = v;
    rd->peer_count = n;
    return 0;
}

/* ---- where the file lives ---- */

/* mkdir -p with mode 0700 for every folder made (the XDG spec's mode for base directories);
 * folders that exist are left as they are. */
static int make_folders(char *dir, rv_error_t *err)
{
    for (char *q = dir + 1;; q++) {
        if (*q != '/' && *q != '\0')
            continue;
        char c = *q;
        *q = '\0';
        if (q[-1] != '/' && mkdir(dir, 0700) != 0 && errno != EEXIST) {
            int rc = sys_err(err, errno, "cannot create state folder %s", dir);
            *q = c;
            return rc;
        }
        *q = c;
        if (c == '\0')
            break;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        err_set(err, RV_EIO, "state folder %s is not a folder", dir);
        if (err != NULL)
            err->sys_errno = ENOTDIR;
        return RV_EIO;
    }
    return 0;
}

/* The user's home folder: $HOME, or the password database when HOME is unset or relative. */
static int home_folder(char *out, size_t n, rv_error_t *err)
{
    const char *home = getenv("HOME");
    if (home != NULL && home[0] == '/') {
        if ((size_t)snprintf(out, n, "%s", home) >= n)
            return err_set(err, RV_ETOOBIG, "$HOME is longer than %zu bytes", n - 1);
        return 0;
    }
    struct passwd pw, *res = NULL;
    char buf[4096];
    if (getpwuid_r(getuid(), &pw, buf, sizeof(buf), &res) == 0 && res != NULL &&
        pw.pw_dir != NULL && pw.pw_dir[0] == '/') {
        if ((size_t)snprintf(out, n, "%s", pw.pw_dir) >= n)
            return err_set(err, RV_ETOOBIG, "the home folder %s is too long", pw.pw_dir);
        return 0;
    }
    return err_set(err, RV_EINVAL,
                   "no state folder: XDG_STATE_HOME and HOME are unset or not absolute paths, "
                   "and the user has no home folder");
}

int resume_path(const char *state_dir, const uint8_t info_hash[RV_SHA1_LEN], char *out, size_t n,
                rv_error_t *err)
{
    char dir[4096], hex[2 * RV_SHA1_LEN + 1];
    const char *xdg = getenv("XDG_STATE_HOME");
    int rc;

    if (n > 0)
        out[0] = '\0';
    if (state_dir != NULL && state_dir[0] != '\0') {
        if ((size_t)snprintf(dir, sizeof(dir), "%s", state_dir) >= sizeof(dir))
            return err_set(err, RV_ETOOBIG, "state folder %s is too long", state_dir);
    } else if (xdg != NULL && xdg[0] == '/') {
        if ((size_t)snprintf(dir, sizeof(dir), "%s/rivulet", xdg) >= sizeof(dir))
            return err_set(err, RV_ETOOBIG, "$XDG_STATE_HOME is too long");
    } else {
        if ((rc = home_folder(dir, sizeof(dir), err)) != 0)
            return rc;
        size_t len = strlen(dir);
        if ((size_t)snprintf(dir + len, sizeof(dir) - len, "%s.local/state/rivulet",
                             len > 0 && dir[len - 1] == '/' ? "" : "/") >= sizeof(dir) - len)
            return err_set(err, RV_ETOOBIG, "the home folder %s is too long", dir);
    }
    hex_encode(info_hash, RV_SHA1_LEN, hex);
    size_t dlen = strlen(dir);
    while (dlen > 1 && dir[dlen - 1] == '/')
        dir[--dlen] = '\0';
    if ((size_t)snprintf(out, n, "%s/%s.resume", dir, hex) >= n) {
        if (n > 0)
            out[0] = '\0';
        return err_set(err, RV_ETOOBIG, "the resume file's path in %s is longer than %zu bytes",
                       dir, n ? n - 1 : 0);
    }
    return make_folders(dir, err);
}

int torrent_state_path(const char *state_dir, const uint8_t info_hash[RV_SHA1_LEN], char *out,
                       size_t n, rv_error_t *err)
{
    int rc = resume_path(state_dir, info_hash, out, n, err);
    if (rc != 0)
        return rc;
    size_t len = strlen(out), suffix = strlen(".resume");
    if (len < suffix || len - suffix + strlen(".torrent") + 1 > n)
        return err_set(err, RV_ETOOBIG, "the state folder's path is too long");
    strcpy(out + len - suffix, ".torrent");
    return 0;
}

/* ---- encoding ---- */

static struct bv *bv_u64(uint64_t v)
{
    return bv_int(v > INT64_MAX ? INT64_MAX : (int64_t)v); /* 9 EiB: never reached */
}

static struct bv *files_list(const struct resume_data *rd)
{
    struct bv *list = bv_list();
    for (size_t i = 0; list != NULL && i < rd->file_count; i++) {
        const struct resume_file *f = &rd->files[i];
        struct bv *d = bv_dict();
        int rc = d ? 0 : RV_ENOMEM;
        if (rc == 0 && f->exists) {
            rc = bv_dict_set(d, "size", bv_u64(f->size));
            if (rc == 0)
                rc = bv_dict_set(d, "mtime", bv_int(f->mtime_ns));
        }
        if (rc != 0) {
            bv_free(d);
            bv_free(list);
            return NULL;
        }
        if (bv_list_add(list, d) != 0) {
            bv_free(list);
            return NULL;
        }
    }
    return list;
}

static struct bv *partial_list(const struct resume_data *rd)
{
    struct bv *list = bv_list();
    for (size_t i = 0; list != NULL && i < rd->partial_count; i++) {
        const struct resume_partial *pp = &rd->partials[i];
        struct bv *d = bv_dict();
        int rc = d ? 0 : RV_ENOMEM;
        if (rc == 0)
            rc = bv_dict_set(d, "piece", bv_int(pp->piece));
        if (rc == 0)
            rc =
                bv_dict_set(d, "blocks", bv_str(pp->blocks.bits, bitfield_bytes(pp->blocks.count)));
        if (rc != 0) {
            bv_free(d);
            bv_free(list);
            return NULL;
        }
        if (bv_list_add(list, d) != 0) {
            bv_free(list);
            return NULL;
        }
    }
    return list;
}

/* Compact peers of one family: 4 + 2 or 16 + 2 bytes each, port in network order. */
static struct bv *peer_string(const struct resume_data *rd, uint8_t family)
{
    size_t iplen = family == 4 ? 4 : 16, n = 0;
    size_t count = rd->peer_count < RESUME_MAX_PEERS ? rd->peer_count : RESUME_MAX_PEERS;
    uint8_t *s = malloc(count * (iplen + 2) + 1);
    if (s == NULL)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        const struct peer_addr *a = &rd->peers[i];
        if (a->family != family)
            continue;
        memcpy(s + n, a->ip, iplen);
        s[n + iplen] = (uint8_t)(a->port >> 8);
        s[n + iplen + 1] = (uint8_t)(a->port & 0xff);
        n += iplen + 2;
    }
    struct bv *v = bv_str(s, n);
    free(s);
    return v;
}

/* The partial pieces must name distinct pieces in range that are not had. */
static int check_partials(const struct resume_data *rd, rv_error_t *err)
{
    struct bitfield seen;
    if (bitfield_init(&seen, rd->have.count) != 0)
        return err_set(err, RV_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < rd->partial_count; i++) {
        const struct resume_partial *pp = &rd->partials[i];
        if (pp->piece >= rd->have.count)
            rc = err_set(err, RV_EINVAL, "partial piece %u is out of range (%u pieces)", pp->piece,
                         rd->have.count);
        else if (bitfield_has(&rd->have, pp->piece))
            rc = err_set(err, RV_EINVAL, "partial piece %u is also listed as had", pp->piece);
        else if (bitfield_has(&seen, pp->piece))
            rc = err_set(err, RV_EINVAL, "partial piece %u is listed twice", pp->piece);
        else if (pp->blocks.count == 0 || pp->blocks.set == 0)
            rc = err_set(err, RV_EINVAL, "partial piece %u has no block", pp->piece);
        bitfield_set(&seen, pp->piece);
    }
    bitfield_free(&seen);
    return rc;
}

int resume_encode(const struct resume_data *rd, struct buf *out, rv_error_t *err)
{
    int rc;
    if (rd->have.count == 0 || rd->files == NULL)
        return err_set(err, RV_EINVAL, "resume data without pieces or files");
    if ((rc = check_partials(rd, err)) != 0)
        return rc;

    struct bv *root = bv_dict();
    rc = root ? 0 : RV_ENOMEM;
    if (rc == 0)
        rc = bv_dict_set(root, "version", bv_int(RESUME_VERSION));
    if (rc == 0)
        rc = bv_dict_set(root, "info-hash", bv_str(rd->info_hash, RV_SHA1_LEN));
    if (rc == 0)
        rc = bv_dict_set(root, "pieces", bv_str(rd->have.bits, bitfield_bytes(rd->have.count)));
    if (rc == 0)
        rc = bv_dict_set(root, "files", files_list(rd));
    if (rc == 0)
        rc = bv_dict_set(root, "partial", partial_list(rd));
    if (rc == 0)
        rc = bv_dict_set(root, "uploaded", bv_u64(rd->uploaded));
    if (rc == 0)
        rc = bv_dict_set(root, "downloaded", bv_u64(rd->downloaded));
    if (rc == 0)
        rc = bv_dict_set(root, "peers", peer_string(rd, 4));
    if (rc == 0)
        rc = bv_dict_set(root, "peers6", peer_string(rd, 6));
    if (rc == 0)
        rc = bv_encode(root, out);
    bv_free(root);
    if (rc == RV_ETOOBIG)
        return err_set(err, rc, "the resume data is larger than its buffer allows");
    if (rc != 0)
        return err_set(err, RV_ENOMEM, "out of memory encoding resume data");
    return 0;
}

/* ---- decoding ---- */

struct dec {
    const uint8_t *base; /* the input, for byte offsets in messages */
    rv_error_t *err;
};

static size_t at(const struct dec *d, const struct bnode *n)
{
    return (size_t)(n->raw - d->base);
}

/* A required key of dict of type t. */
static const struct bnode *need(struct dec *d, const struct bnode *dict, const char *key,
                                enum btype t, const char *what)
{
    static const char *names[] = {"an integer", "a string", "a list", "a dictionary"};
    const struct bnode *n = bdict_get(dict, key);
    if (n == NULL)
        err_set_at(d->err, RV_EINVAL, at(d, dict), "%s has no '%s'", what, key);
    else if (n->type != t)
        err_set_at(d->err, RV_EINVAL, at(d, n), "'%s' in %s is not %s", key, what, names[t]);
    else
        return n;
    return NULL;
}

static int need_count(struct dec *d, const struct bnode *dict, const char *key, const char *what,
                      uint64_t *out)
{
    const struct bnode *n = need(d, dict, key, BT_INT, what);
    if (n == NULL)
        return RV_EINVAL;
    if (n->i < 0)
        return err_set_at(d->err, RV_EINVAL, at(d, n), "'%s' in %s is negative (%lld)", key, what,
                          (long long)n->i);
    *out = (uint64_t)n->i;
    return 0;
}

static int decode_files(struct dec *d, const struct bnode *list, struct resume_data *rd)
{
    if (list->count != rd->file_count)
        return err_set_at(d->err, RV_EINVAL, at(d, list),
                          "'files' lists %u files, the torrent has %zu", list->count,
                          rd->file_count);
    const struct bnode *e = bnode_first(list);
    for (size_t i = 0; i < rd->file_count; i++, e = bnode_next(e)) {
        char what[48];
        snprintf(what, sizeof(what), "file %zu", i);
        if (e->type != BT_DICT)
            return err_set_at(d->err, RV_EINVAL, at(d, e), "%s is not a dictionary", what);
        const struct bnode *size = bdict_get(e, "size"), *mtime = bdict_get(e, "mtime");
        if (size == NULL && mtime == NULL)
            continue; /* not on disk */
        if (size == NULL || mtime == NULL)
            return err_set_at(d->err, RV_EINVAL, at(d, e), "%s has '%s' without '%s'", what,
                              size ? "size" : "mtime", size ? "mtime" : "size");
        if (need_count(d, e, "size", what, &rd->files[i].size) != 0)
            return RV_EINVAL;
        if (need(d, e, "mtime", BT_INT, what) == NULL)
            return RV_EINVAL;
        rd->files[i].mtime_ns = mtime->i;
        rd->files[i].exists = true;
    }
    return 0;
}

static int decode_partials(struct dec *d, const struct bnode *list, const struct layout *l,
                           struct resume_data *rd)
{
    const struct bnode *e = bnode_first(list);
    for (uint32_t k = 0; k < list->count; k++, e = bnode_next(e)) {
        char what[48];
        snprintf(what, sizeof(what), "partial piece entry %u", k);
        if (e->type != BT_DICT)
            return err_set_at(d->err, RV_EINVAL, at(d, e), "%s is not a dictionary", what);
        const struct bnode *pn = need(d, e, "piece", BT_INT, what);
        const struct bnode *bn = pn ? need(d, e, "blocks", BT_STR, what) : NULL;
        if (bn == NULL)
            return RV_EINVAL;
        if (pn->i < 0 || (uint64_t)pn->i >= l->piece_count)
            return err_set_at(d->err, RV_EINVAL, at(d, pn),
                              "partial piece %lld is out of range (%u pieces)", (long long)pn->i,
                              l->piece_count);
        uint32_t piece = (uint32_t)pn->i;
        if (bitfield_has(&rd->have, piece))
            return err_set_at(d->err, RV_EINVAL, at(d, pn),
                              "partial piece %u is also listed as had", piece);
        if (partial_listed(rd, piece))
            return err_set_at(d->err, RV_EINVAL, at(d, pn), "partial piece %u is listed twice",
                              piece);
        uint32_t nblocks = resume_piece_blocks(l, piece);
        struct bitfield b;
        if (bitfield_init(&b, nblocks) != 0)
            return err_set(d->err, RV_ENOMEM, "out of memory");
        if (bitfield_load(&b, bn->s, bn->slen) != 0) {
            bitfield_free(&b);
            if (bn->slen != bitfield_bytes(nblocks))
                return err_set_at(d->err, RV_EINVAL, at(d, bn),
                                  "partial piece %u has a block bitmap of %zu bytes; its %u "
                                  "blocks need %zu",
                                  piece, bn->slen, nblocks, bitfield_bytes(nblocks));
            return err_set_at(d->err, RV_EINVAL, at(d, bn),
                              "partial piece %u has bits set past its %u blocks", piece, nblocks);
        }
        if (b.set == 0) {
            bitfield_free(&b);
            return err_set_at(d->err, RV_EINVAL, at(d, bn), "partial piece %u has no block", piece);
        }
        if (push_partial(rd, piece, &b) != 0)
            return err_set(d->err, RV_ENOMEM, "out of memory");
    }
    return 0;
}

static int decode_peers(struct dec *d, const struct bnode *v4, const struct bnode *v6,
                        struct resume_data *rd)
{
    if (v4->slen % V4_LEN != 0)
        return err_set_at(d->err, RV_EINVAL, at(d, v4),
                          "'peers' is %zu bytes, not a multiple of %d", v4->slen, V4_LEN);
    if (v6->slen % V6_LEN != 0)
        return err_set_at(d->err, RV_EINVAL, at(d, v6),
                          "'peers6' is %zu bytes, not a multiple of %d", v6->slen, V6_LEN);
    size_t n4 = v4->slen / V4_LEN, n6 = v6->slen / V6_LEN;
    if (n4 + n6 > RESUME_MAX_PEERS)
        return err_set_at(d->err, RV_EINVAL, at(d, v4), "%zu peers, more than the %u written",
                          n4 + n6, RESUME_MAX_PEERS);
    rd->peers = malloc((n4 + n6 + 1) * sizeof(*rd->peers));
    if (rd->peers == NULL)
        return err_set(d->err, RV_ENOMEM, "out of memory");
    for (size_t i = 0; i < n4 + n6; i++) {
        bool is4 = i < n4;
        const uint8_t *p = is4 ? v4->s + i * V4_LEN : v6->s + (i - n4) * V6_LEN;
        size_t iplen = is4 ? 4 : 16;
        struct peer_addr a;
        memset(&a, 0, sizeof(a));
        a.family = is4 ? 4 : 6;
        memcpy(a.ip, p, iplen);
        a.port = (uint16_t)(p[iplen] << 8 | p[iplen + 1]);
        if (peer_addr_is_valid(&a))
            rd->peers[rd->peer_count++] = a;
    }
    return 0;
}

int resume_decode(const uint8_t *p, size_t len, const rv_torrent_info_t *ti,
                  struct resume_data *out, rv_error_t *err)
{
    struct bdoc doc = {0};
    struct layout l;
    struct dec d = {p, err};
    const struct bnode *root, *n, *v4, *v6;
    int rc;

    memset(out, 0, sizeof(*out));
    if (layout_from_torrent(&l, ti) != 0)
        return err_set(err, RV_EINVAL, "the torrent's file layout is inconsistent");
    if ((rc = resume_init(out, ti)) != 0)
        return err_set(err, rc, "out of memory");
    /* Strict: we write canonical bencode, so anything else was not written by us. */
    if ((rc = bencode_decode(&doc, p, len, BENCODE_STRICT, NULL, err)) != 0)
        goto fail;
    rc = RV_EINVAL;
    root = bencode_root(&doc);
    if (root->type != BT_DICT) {
        err_set_at(err, rc, 0, "a resume file is a dictionary");
        goto fail;
    }
    if ((n = need(&d, root, "version", BT_INT, "the resume file")) == NULL)
        goto fail;
    if (n->i != RESUME_VERSION) {
        err_set_at(err, rc, at(&d, n), "resume file version %lld, not %d", (long long)n->i,
                   RESUME_VERSION);
        goto fail;
    }
    if ((n = need(&d, root, "info-hash", BT_STR, "the resume file")) == NULL)
        goto fail;
    if (n->slen != RV_SHA1_LEN || memcmp(n->s, ti->info_hash, RV_SHA1_LEN) != 0) {
        char want[2 * RV_SHA1_LEN + 1], got[2 * RV_SHA1_LEN + 1] = "?";
        hex_encode(ti->info_hash, RV_SHA1_LEN, want);
        if (n->slen == RV_SHA1_LEN)
            hex_encode(n->s, RV_SHA1_LEN, got);
        err_set_at(err, rc, at(&d, n), "the resume file is for info-hash %s, not %s", got, want);
        goto fail;
    }
    if ((n = need(&d, root, "pieces", BT_STR, "the resume file")) == NULL)
        goto fail;
    if (n->slen != bitfield_bytes(ti->piece_count)) {
        err_set_at(err, rc, at(&d, n), "'pieces' is %zu bytes; the torrent's %u pieces need %zu",
                   n->slen, ti->piece_count, bitfield_bytes(ti->piece_count));
        goto fail;
    }
    if (bitfield_load(&out->have, n->s, n->slen) != 0) {
        err_set_at(err, rc, at(&d, n), "'pieces' has bits set past the last piece (%u)",
                   ti->piece_count);
        goto fail;
    }
    if ((n = need(&d, root, "files", BT_LIST, "the resume file")) == NULL ||
        decode_files(&d, n, out) != 0)
        goto fail;
    if ((n = need(&d, root, "partial", BT_LIST, "the resume file")) == NULL)
        goto fail;
    if ((rc = decode_partials(&d, n, &l, out)) != 0)
        goto fail;
    rc = RV_EINVAL;
    if (need_count(&d, root, "uploaded", "the resume file", &out->uploaded) != 0 ||
        need_count(&d, root, "downloaded", "the resume file", &out->downloaded) != 0)
        goto fail;
    if ((v4 = need(&d, root, "peers", BT_STR, "the resume file")) == NULL ||
        (v6 = need(&d, root, "peers6", BT_STR, "the resume file")) == NULL)
        goto fail;
    if ((rc = decode_peers(&d, v4, v6, out)) != 0)
        goto fail;
    bencode_free(&doc);
    return 0;
fail:
    bencode_free(&doc);
    resume_free(out);
    return rc;
}

/* ---- the file ---- */

int resume_save(const char *path, const struct resume_data *rd, rv_error_t *err)
{
    struct buf b;
    buf_init(&b, RESUME_MAX_SIZE);
    int rc = resume_encode(rd, &b, err);
    if (rc == 0)
        rc = fs_write_atomic(path, b.data, b.len, err);
    buf_free(&b);
    return rc;
}

/* Puts "PATH: " in front of err's message, keeping its code, offset and errno. */
static int prefix_path(rv_error_t *err, const char *path, int rc)
{
    if (err == NULL)
        return rc;
    rv_error_t e = *err;
    if (e.has_offset)
        err_set_at(err, rc, e.offset, "%s: %s", path, e.msg);
    else
        err_set(err, rc, "%s: %s", path, e.msg);
    err->sys_errno = e.sys_errno;
    return rc;
}

int resume_load(const char *path, const rv_torrent_info_t *ti, struct resume_data *out,
                rv_error_t *err)
{
    uint8_t *data = NULL;
    size_t len = 0;
    memset(out, 0, sizeof(*out));
    int rc = fs_read_file(path, RESUME_MAX_SIZE, &data, &len, err);
    if (rc != 0)
        return rc; /* fs_read_file's messages name the path already */
    rc = resume_decode(data, len, ti, out, err);
    free(data);
    return rc == 0 ? 0 : prefix_path(err, path, rc);
}

/* ---- the files on disk ---- */

static int64_t mtime_ns(const struct stat *st)
{
    int64_t ns;
    if (__builtin_mul_overflow((int64_t)st->st_mtim.tv_sec, (int64_t)1000000000, &ns) ||
        __builtin_add_overflow(ns, (int64_t)st->st_mtim.tv_nsec, &ns))
        return st->st_mtim.tv_sec < 0 ? INT64_MIN : INT64_MAX; /* past the year 2262 */
    return ns;
}

/* The download folder, or -1 with *e = ENOENT when it does not exist yet. The user chose it,
 * so a symlink there is followed; below it, nothing is. */
static int open_save_dir(const char *save_dir, int *e)
{
    int fd = open(save_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    *e = fd < 0 ? errno : 0;
    return fd;
}

/* How file i is now: 0 with *f filled (exists or not), or an errno value when it cannot be
 * told. dirfd < 0: the folder is missing, so is every file. */
static int file_now(int dirfd, const rv_file_t *tf, struct resume_file *f)
{
    struct stat st;
    memset(f, 0, sizeof(*f));
    if (dirfd < 0 || (tf->attr & RV_FILE_PAD))
        return 0;
    int e = pathat_stat_file(dirfd, tf->path, &st);
    switch (e) {
    case 0:
        f->exists = true;
        f->size = (uint64_t)st.st_size;
        f->mtime_ns = mtime_ns(&st);
        return 0;
    case ENOENT:
    case ENOTDIR:
    case ELOOP: /* a symlink: storage refuses it, so it holds none of our data */
    case PATHAT_NOT_REGULAR:
        return 0;
    default:
        return e;
    }
}

int resume_files_from_disk(const rv_torrent_info_t *ti, const char *save_dir,
                           struct resume_file *files, rv_error_t *err)
{
    int e, dirfd = open_save_dir(save_dir, &e);
    if (dirfd < 0 && e != ENOENT)
        return sys_err(err, e, "cannot open download folder %s", save_dir);
    int rc = 0;
    for (size_t i = 0; i < ti->file_count && rc == 0; i++) {
        if ((e = file_now(dirfd, &ti->files[i], &files[i])) != 0)
            rc = sys_err(err, e, "cannot look at %s/%s", save_dir, ti->files[i].path);
    }
    if (dirfd >= 0)
        close(dirfd);
    return rc;
}

int resume_files_match(const rv_torrent_info_t *ti, const char *save_dir,
                       const struct resume_data *rd, struct bitfield *suspect, rv_error_t *err)
{
    struct layout l;
    if (layout_from_torrent(&l, ti) != 0)
        return err_set(err, RV_EINVAL, "the torrent's file layout is inconsistent");
    if (rd->file_count != ti->file_count || rd->have.count != ti->piece_count ||
        suspect->count != ti->piece_count || memcmp(rd->info_hash, ti->info_hash, RV_SHA1_LEN) != 0)
        return err_set(err, RV_EINVAL, "resume data or suspect bitfield for another torrent");
    int e, dirfd = open_save_dir(save_dir, &e), differ = 0;
    for (size_t i = 0; i < ti->file_count; i++) {
        const struct resume_file *was = &rd->files[i];
        struct resume_file now;
        if (ti->files[i].attr & RV_FILE_PAD)
            continue;
        if (dirfd < 0 && e != ENOENT)
            now.exists = !was->exists; /* the folder cannot be read: a change, whatever was */
        else if (file_now(dirfd, &ti->files[i], &now) != 0)
            now.exists = !was->exists;
        if (now.exists == was->exists &&
            (!now.exists || (now.size == was->size && now.mtime_ns == was->mtime_ns)))
            continue;
        differ++;
        uint32_t first, end;
        layout_file_pieces(&l, i, &first, &end);
        for (uint32_t p = first; p < end; p++)
            bitfield_set(suspect, p);
    }
    if (dirfd >= 0)
        close(dirfd);
    return differ;
}

void resume_drop_suspect(struct resume_data *rd, const struct bitfield *suspect)
{
    for (uint32_t p = 0; p < rd->have.count && suspect->set > 0; p++)
        if (bitfield_has(suspect, p))
            bitfield_clear(&rd->have, p);
    size_t keep = 0;
    for (size_t i = 0; i < rd->partial_count; i++) {
        if (bitfield_has(suspect, rd->partials[i].piece))
            bitfield_free(&rd->partials[i].blocks);
        else
            rd->partials[keep++] = rd->partials[i];
    }
    rd->partial_count = keep;
}
