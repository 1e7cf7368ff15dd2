/* Making a v1 torrent of a file or a folder: walk the payload, hash its pieces on worker
 * threads (each takes the next piece index from a shared counter and preads that piece's file
 * spans), then write the metainfo canonically.
 *
 * Folder walk rules: regular files are taken, hidden ones included, zero-length ones included;
 * symlinks to regular files are followed; symlinks to folders are not (that would allow loops),
 * nor are dangling symlinks, sockets, FIFOs or devices. Files are listed in the order of their
 * paths compared component by component as raw bytes, which is the same order a sorted
 * depth-first walk gives and does not depend on the file system or the locale. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "bencode/bencode.h"
#include "metainfo/layout.h"
#include "rivulet/metainfo.h"
#include "rivulet/version.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/sha1x.h"
#include "util/team.h"

#define MAX_DEPTH 256          /* folder nesting we accept */
#define READ_CHUNK (1u << 20)  /* bytes per pread and per SHA-1 update */
#define LANE_CHUNK (128u << 10) /* sha1x: bytes of each lane read per step (as verify.c) */
#define LANES_MIN 8             /* the fewest pieces worth a sixteen-lane pass */
#define FD_CACHE 8             /* open files kept per worker */
#define PROGRESS_NS 200000000L /* between progress calls */

/* One file of the payload. */
struct entry {
    char *rel;  /* path inside the folder, '/'-separated; for a single file, its name */
    char *full; /* path to open */
    uint64_t size;
};

struct payload {
    struct entry *v;
    size_t n, cap;
    uint64_t total;
};

static void payload_free(struct payload *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].rel);
        free(p->v[i].full);
    }
    free(p->v);
    memset(p, 0, sizeof(*p));
}

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 2);
    if (s == NULL)
        return NULL;
    memcpy(s, a, la);
    s[la] = '/';
    memcpy(s + la + 1, b, lb + 1);
    return s;
}

static int io_error(rv_error_t *err, int e, const char *what, const char *path)
{
    err_set(err, RV_EIO, "%s %s: %s", what, path, strerror(e));
    if (err != NULL)
        err->sys_errno = e;
    return RV_EIO;
}

/* Takes ownership of rel and full (freed on failure too). */
static int payload_add(struct payload *p, char *rel, char *full, uint64_t size, rv_error_t *err)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        struct entry *v = realloc(p->v, cap * sizeof(*v));
        if (v == NULL)
            goto nomem;
        p->v = v;
        p->cap = cap;
    }
    if (__builtin_add_overflow(p->total, size, &p->total)) {
        free(rel);
        free(full);
        return err_set(err, RV_ETOOBIG, "the payload's total size overflows 64 bits");
    }
    p->v[p->n++] = (struct entry){rel, full, size};
    return 0;
nomem:
    free(rel);
    free(full);
    return err_set(err, RV_ENOMEM, "out of memory listing files");
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b); /* bytewise: strcmp compares unsigned */
}

/* Lists dir's entries sorted by name. The folder is closed before the caller descends, so deep
 * trees do not hold one descriptor per level. */
static int read_names(const char *dir, char ***out, size_t *count, rv_error_t *err)
{
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc;
    DIR *d = opendir(dir);
    if (d == NULL)
        return io_error(err, errno, "cannot open folder", dir);
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (de == NULL) {
            if (errno != 0) {
                rc = io_error(err, errno, "cannot read folder", dir);
                goto fail;
            }
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == cap) {
            size_t c = cap ? cap * 2 : 16;
            char **p = realloc(names, c * sizeof(*p));
            if (p == NULL)
                goto nomem;
            names = p;
            cap = c;
        }
        if ((names[n] = strdup(de->d_name)) == NULL)
            goto nomem;
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(*names), cmp_name);
    *out = names;
    *count = n;
    return 0;
nomem:
    rc = err_set(err, RV_ENOMEM, "out of memory listing %s", dir);
fail:
    closedir(d);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

static int walk(struct payload *p, const char *full, const char *rel, int depth, rv_error_t *err)
{
    if (depth > MAX_DEPTH)
        return err_set(err, RV_EINVAL, "%s is nested more than %d folders deep", full, MAX_DEPTH);
    char **names = NULL;
    size_t n = 0;
    int rc = read_names(full, &names, &n, err);
    if (rc != 0)
        return rc;
    size_t i = 0;
    for (; i < n; i++) {
        char *cfull = join(full, names[i]);
        char *crel = rel ? join(rel, names[i]) : strdup(names[i]);
        if (cfull == NULL || crel == NULL) {
            free(cfull);
            free(crel);
            rc = err_set(err, RV_ENOMEM, "out of memory listing files");
            goto done;
        }
        struct stat st;
        if (lstat(cfull, &st) != 0) {
            rc = io_error(err, errno, "cannot stat", cfull);
        } else if (S_ISDIR(st.st_mode)) {
            rc = walk(p, cfull, crel, depth + 1, err);
        } else if (S_ISLNK(st.st_mode) && stat(cfull, &st) == 0 && S_ISREG(st.st_mode)) {
            rc = payload_add(p, crel, cfull, (uint64_t)st.st_size, err);
            cfull = crel = NULL; /* owned by p now */
        } else if (S_ISREG(st.st_mode)) {
            rc = payload_add(p, crel, cfull, (uint64_t)st.st_size, err);
            cfull = crel = NULL;
        }
        /* anything else (folder symlinks, dangling symlinks, FIFOs, sockets, devices) is
         * skipped */
        free(cfull);
        free(crel);
        if (rc != 0)
            goto done;
    }
done:
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* The torrent's name: the last component of path as the user wrote it, or of its real path
 * when that component is "." or "..". Caller frees. */
static int payload_name(const char *path, char **out, rv_error_t *err)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/')
        start--;
    const char *base = path + start;
    size_t blen = len - start;
    char *real = NULL;
    if (blen == 0 || (blen == 1 && base[0] == '.') ||
        (blen == 2 && base[0] == '.' && base[1] == '.')) {
        real = realpath(path, NULL);
        if (real == NULL)
            return io_error(err, errno, "cannot resolve", path);
        base = strrchr(real, '/');
        base = base ? base + 1 : real;
        blen = strlen(base);
    }
    if (blen == 0) {
        free(real);
        return err_set(err, RV_EINVAL, "%s has no name to give the torrent", path);
    }
    *out = strndup(base, blen);
    free(real);
    if (*out == NULL)
        return err_set(err, RV_ENOMEM, "out of memory");
    return 0;
}

/* ---- hashing ---- */

enum fault_kind { F_NONE, F_OPEN, F_READ, F_SHRUNK, F_CHANGED, F_SHA };

/* What went wrong in a worker; formatted on the calling thread (strerror is not reentrant). */
struct fault {
    enum fault_kind kind;
    int errnum;
    size_t file;
    uint64_t was, now;
};

struct hasher {
    const struct layout *l;
    const struct entry *files;
    uint8_t *hashes; /* piece_count * 20 */
    size_t bufsize;
    size_t lane_chunk; /* 0: sha1x not used */
    const EVP_MD *md;

    atomic_uint_fast64_t next_piece;
    atomic_uint_fast64_t hashed;
    atomic_bool stop;

    pthread_mutex_t mu;
    struct fault fault; /* the first one, under mu */

    /* the calling thread's */
    const rv_create_opts_t *o;
    uint64_t total;
};

struct fdslot {
    size_t file;
    int fd;
};

struct worker {
    struct hasher *h;
    uint8_t *buf;
    uint8_t *lanes; /* SHA1X_LANES x lane_chunk, or NULL */
    EVP_MD_CTX *ctx;
    struct fdslot fds[FD_CACHE];
    unsigned evict;
};

static void fail_with(struct hasher *h, const struct fault *f)
{
    pthread_mutex_lock(&h->mu);
    if (h->fault.kind == F_NONE)
        h->fault = *f;
    pthread_mutex_unlock(&h->mu);
    atomic_store(&h->stop, true);
}

/* An open descriptor for file, from the worker's small cache. Files are opened lazily, so a
 * payload of many thousands of files never holds more than FD_CACHE per worker. */
static int worker_fd(struct worker *w, size_t file, int *fd, struct fault *f)
{
    for (unsigned i = 0; i < FD_CACHE; i++) {
        if (w->fds[i].fd >= 0 && w->fds[i].file == file) {
            *fd = w->fds[i].fd;
            return 0;
        }
    }
    const struct entry *e = &w->h->files[file];
    int nfd = open(e->full, O_RDONLY | O_CLOEXEC);
    if (nfd < 0) {
        *f = (struct fault){F_OPEN, errno, file, 0, 0};
        return -1;
    }
    struct stat st;
    if (fstat(nfd, &st) != 0) {
        *f = (struct fault){F_OPEN, errno, file, 0, 0};
        close(nfd);
        return -1;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != e->size) {
        *f = (struct fault){F_CHANGED, 0, file, e->size, (uint64_t)st.st_size};
        close(nfd);
        return -1;
    }
    (void)posix_fadvise(nfd, 0, 0, POSIX_FADV_SEQUENTIAL);
    struct fdslot *s = &w->fds[w->evict];
    w->evict = (w->evict + 1) % FD_CACHE;
    if (s->fd >= 0)
        close(s->fd);
    s->file = file;
    s->fd = nfd;
    *fd = nfd;
    return 0;
}

/* Copies the piece's bytes [off, off + len) into dst by pread. Returns 0, or -1 (f says why). */
static int piece_read(struct worker *w, uint32_t piece, uint64_t off, size_t len, uint8_t *dst,
                      struct fault *f)
{
    struct hasher *h = w->h;
    uint64_t start = (uint64_t)piece * h->l->piece_length, end = off + len;
    struct span_iter it;
    struct span sp;

    layout_piece_begin(h->l, piece, &it);
    while (layout_span_next(&it, &sp)) {
        uint64_t pos = h->l->files[sp.file].offset + sp.file_offset - start; /* in the piece */
        uint64_t lo = pos > off ? pos : off;
        uint64_t hi = pos + sp.length < end ? pos + sp.length : end;
        if (lo >= hi)
            continue;
        int fd;
        if (worker_fd(w, sp.file, &fd, f) != 0)
            return -1;
        uint8_t *p = dst + (lo - off);
        uint64_t foff = sp.file_offset + (lo - pos);
        size_t left = (size_t)(hi - lo);
        while (left > 0) {
            ssize_t n = pread(fd, p, left, (off_t)foff);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                *f = (struct fault){F_READ, errno, sp.file, 0, 0};
                return -1;
            }
            if (n == 0) {
                *f = (struct fault){F_SHRUNK, 0, sp.file, h->files[sp.file].size, foff};
                return -1;
            }
            p += n;
            foff += (uint64_t)n;
            left -= (size_t)n;
        }
    }
    atomic_fetch_add(&h->hashed, len);
    return 0;
}

/* One piece through libcrypto, bufsize bytes at a time. */
static int hash_piece(struct worker *w, uint32_t piece, struct fault *f)
{
    struct hasher *h = w->h;
    uint32_t size = layout_piece_size(h->l, piece);

    if (EVP_DigestInit_ex(w->ctx, h->md, NULL) != 1)
        goto sha_fail;
    for (uint64_t off = 0; off < size; off += h->bufsize) {
        size_t n = size - off < h->bufsize ? (size_t)(size - off) : h->bufsize;
        if (piece_read(w, piece, off, n, w->buf, f) != 0)
            return -1;
        if (EVP_DigestUpdate(w->ctx, w->buf, n) != 1)
            goto sha_fail;
        if (atomic_load_explicit(&h->stop, memory_order_relaxed))
            return -1;
    }
    if (EVP_DigestFinal_ex(w->ctx, h->hashes + (size_t)piece * RV_SHA1_LEN, NULL) != 1)
        goto sha_fail;
    return 0;
sha_fail:
    *f = (struct fault){F_SHA, 0, 0, 0, 0};
    return -1;
}

struct lane_read {
    struct worker *w;
    uint32_t first;
    struct fault *f;
};

static int lane_read(void *ud, size_t k, uint64_t off, size_t len, uint8_t *dst)
{
    struct lane_read *lr = ud;
    return piece_read(lr->w, lr->first + (uint32_t)k, off, len, dst, lr->f);
}

/* Pieces first..first+n-1, all full-length, side by side through sha1x (see verify.c). */
static int hash_lanes(struct worker *w, uint32_t first, size_t n, struct fault *f)
{
    struct hasher *h = w->h;
    struct lane_read lr = {w, first, f};
    bool live[SHA1X_LANES];
    uint8_t md[SHA1X_LANES][RV_SHA1_LEN];

    if (sha1x_digest_chunked(n, h->l->piece_length, h->lane_chunk, w->lanes, lane_read, &lr, live,
                             md) != 0)
        return -1;
    for (size_t k = 0; k < n; k++)
        memcpy(h->hashes + (size_t)(first + k) * RV_SHA1_LEN, md[k], RV_SHA1_LEN);
    return 0;
}

static void hash_worker(void *arg)
{
    struct worker *w = arg;
    struct hasher *h = w->h;
    struct fault f = {F_NONE, 0, 0, 0, 0};
    uint32_t count = h->l->piece_count;
    /* With sha1x, sixteen pieces at a time; the last piece (short) and a group of fewer than
     * LANES_MIN go through libcrypto one by one. */
    unsigned grab = w->lanes != NULL ? SHA1X_LANES : 1;

    while (!atomic_load_explicit(&h->stop, memory_order_relaxed)) {
        uint64_t p = atomic_fetch_add(&h->next_piece, grab);
        if (p >= count)
            break;
        uint64_t end = p + grab < count ? p + grab : count;
        uint64_t full = end < count || layout_piece_size(h->l, count - 1) == h->l->piece_length
                            ? end
                            : end - 1; /* pieces p..full-1 are full-length */
        int rc = 0;
        if (w->lanes != NULL && full - p >= LANES_MIN) {
            rc = hash_lanes(w, (uint32_t)p, (size_t)(full - p), &f);
            p = full;
        }
        for (; rc == 0 && p < end; p++)
            rc = hash_piece(w, (uint32_t)p, &f);
        if (rc != 0) {
            if (f.kind != F_NONE)
                fail_with(h, &f);
            break;
        }
    }
    for (unsigned i = 0; i < FD_CACHE; i++) {
        if (w->fds[i].fd >= 0)
            close(w->fds[i].fd);
        w->fds[i].fd = -1;
    }
}

static int fault_format(const struct fault *f, const struct entry *files, rv_error_t *err)
{
    const char *name = files[f->file].full;
    switch (f->kind) {
    case F_OPEN:
        return io_error(err, f->errnum, "cannot open", name);
    case F_READ:
        return io_error(err, f->errnum, "cannot read", name);
    case F_SHRUNK:
        return err_set(err, RV_EIO, "%s changed while hashing: it was %llu bytes, now ends at %llu",
                       name, (unsigned long long)f->was, (unsigned long long)f->now);
    case F_CHANGED:
        return err_set(err, RV_EIO, "%s changed while hashing: it was %llu bytes, now %llu", name,
                       (unsigned long long)f->was, (unsigned long long)f->now);
    case F_SHA:
    case F_NONE:
    default:
        return err_set(err, RV_EIO, "SHA-1 failed inside libcrypto");
    }
}

/* Every PROGRESS_NS on the calling thread while the workers run. */
static void tick(void *ud)
{
    struct hasher *h = ud;
    if (h->o->progress != NULL && !atomic_load(&h->stop))
        h->o->progress(h->o->progress_ud, atomic_load(&h->hashed), h->total);
}

/* Hashes every piece into hashes (l->piece_count * 20 bytes). */
static int hash_all(const rv_create_opts_t *o, const struct layout *l, const struct payload *p,
                    uint8_t *hashes, rv_error_t *err)
{
    struct hasher h = {0};
    h.l = l;
    h.files = p->v;
    h.hashes = hashes;
    h.bufsize = l->piece_length < READ_CHUNK ? l->piece_length : READ_CHUNK;
    if (sha1x_min_messages() > 0 && l->piece_count > 1) /* lanes gain on this CPU */
        h.lane_chunk = l->piece_length < LANE_CHUNK ? (l->piece_length + 63u) & ~63u : LANE_CHUNK;
    atomic_init(&h.next_piece, 0);
    atomic_init(&h.hashed, 0);
    atomic_init(&h.stop, false);

    h.o = o;
    h.total = p->total;
    unsigned nthreads = team_size(o->threads, l->piece_count);
    struct worker *w = calloc(nthreads, sizeof(*w));
    EVP_MD *fetched = NULL;
    int rc = 0;

    if (w == NULL)
        return err_set(err, RV_ENOMEM, "out of memory starting the hashing threads");
    if (pthread_mutex_init(&h.mu, NULL) != 0) {
        free(w);
        return err_set(err, RV_ENOMEM, "cannot set up the hashing threads");
    }
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    /* Fetch once rather than on every EVP_DigestInit_ex (OpenSSL 3 looks the algorithm up
     * again for each init with EVP_sha1()). */
    fetched = EVP_MD_fetch(NULL, "SHA1", NULL);
    h.md = fetched;
#endif
    if (h.md == NULL)
        h.md = EVP_sha1();

    for (unsigned i = 0; i < nthreads; i++) {
        w[i].h = &h;
        for (unsigned k = 0; k < FD_CACHE; k++)
            w[i].fds[k].fd = -1;
        w[i].buf = fs_read_buffer(h.bufsize);
        w[i].ctx = EVP_MD_CTX_new();
        if (h.lane_chunk > 0) {
            w[i].lanes = fs_read_buffer(SHA1X_LANES * h.lane_chunk);
            if (w[i].lanes != NULL) /* the unused lanes hash these bytes: defined ones */
                memset(w[i].lanes, 0, SHA1X_LANES * h.lane_chunk);
        }
        if (w[i].buf == NULL || w[i].ctx == NULL || (h.lane_chunk > 0 && w[i].lanes == NULL)) {
            rc = err_set(err, RV_ENOMEM, "out of memory for the hashing buffers");
            goto out;
        }
    }
    struct team_opts to = {.threads = nthreads, .work = hash_worker, .args = w,
                           .stride = sizeof(*w), .stop = &h.stop, .tick_ns = PROGRESS_NS,
                           .tick = tick, .ud = &h};
    rc = team_run(&to, err);
    if (rc == 0 && h.fault.kind != F_NONE)
        rc = fault_format(&h.fault, p->v, err);
    if (rc == 0 && o->progress != NULL)
        o->progress(o->progress_ud, atomic_load(&h.hashed), p->total);

out:
    for (unsigned i = 0; i < nthreads; i++) {
        free(w[i].buf);
        free(w[i].lanes);
        EVP_MD_CTX_free(w[i].ctx);
    }
    free(w);
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    EVP_MD_free(fetched);
#endif
    pthread_mutex_destroy(&h.mu);
    return rc;
}

/* A file that grew after its last byte was hashed is only seen by looking again. */
static int recheck_sizes(const struct payload *p, rv_error_t *err)
{
    for (size_t i = 0; i < p->n; i++) {
        struct stat st;
        if (stat(p->v[i].full, &st) != 0)
            return io_error(err, errno, "cannot stat", p->v[i].full);
        if ((uint64_t)st.st_size != p->v[i].size)
            return err_set(err, RV_EIO, "%s changed while hashing: it was %llu bytes, now %llu",
                           p->v[i].full, (unsigned long long)p->v[i].size,
                           (unsigned long long)st.st_size);
    }
    return 0;
}

/* ---- metainfo ---- */

uint32_t rv_create_auto_piece_length(uint64_t total)
{
    /* libtorrent's create_torrent table: about sqrt(total) * 2 bytes of hashes, so entry i is
     * the largest total for which a piece of 16 KiB << i is chosen. */
    static const uint64_t size_table[] = {
        2684355ULL,    10737418ULL,    42949673ULL,    171798692ULL,    687194767ULL,
        2748779069ULL, 10995116278ULL, 43980465111ULL, 175921860444ULL, 703687441777ULL,
    };
    unsigned i = 0;
    while (i < sizeof(size_table) / sizeof(size_table[0]) && size_table[i] < total)
        i++;
    return RV_MIN_PIECE_LEN << i;
}

static int set(struct bv *d, const char *key, struct bv *v)
{
    return bv_dict_set(d, key, v); /* frees v on failure; a NULL v reads as RV_ENOMEM */
}

/* Path components as a bencoded list: "a/b/c" -> ["a", "b", "c"]. */
static struct bv *path_list(const char *rel)
{
    struct bv *l = bv_list();
    if (l == NULL)
        return NULL;
    const char *s = rel;
    for (;;) {
        const char *slash = strchr(s, '/');
        size_t n = slash ? (size_t)(slash - s) : strlen(s);
        if (bv_list_add(l, bv_str(s, n)) != 0) {
            bv_free(l);
            return NULL;
        }
        if (slash == NULL)
            return l;
        s = slash + 1;
    }
}

struct tracker_ref {
    unsigned tier;
    size_t index;
};

static int cmp_tracker(const void *a, const void *b)
{
    const struct tracker_ref *x = a, *y = b;
    if (x->tier != y->tier)
        return x->tier < y->tier ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* announce and (BEP 12) announce-list. Trackers are grouped by tier number, tiers in ascending
 * order, URLs in the caller's order within a tier; announce is the first URL of the first tier.
 * announce-list is only written when there is more than one URL. Without tracker_tiers every
 * tracker is its own tier, in order. */
static int add_trackers(struct bv *root, const rv_create_opts_t *o)
{
    size_t n = o->tracker_count;
    if (n == 0)
        return 0;
    struct tracker_ref *ref = malloc(n * sizeof(*ref));
    if (ref == NULL)
        return RV_ENOMEM;
    for (size_t i = 0; i < n; i++)
        ref[i] = (struct tracker_ref){o->tracker_tiers ? o->tracker_tiers[i] : (unsigned)i, i};
    qsort(ref, n, sizeof(*ref), cmp_tracker); /* index breaks ties, so the order is stable */

    int rc = set(root, "announce", bv_cstr(o->trackers[ref[0].index]));
    if (rc == 0 && n > 1) {
        struct bv *list = bv_list(), *tier = NULL;
        rc = list ? 0 : RV_ENOMEM;
        for (size_t i = 0; rc == 0 && i < n; i++) {
            if (tier == NULL && (tier = bv_list()) == NULL) {
                rc = RV_ENOMEM;
                break;
            }
            rc = bv_list_add(tier, bv_cstr(o->trackers[ref[i].index]));
            if (rc == 0 && (i + 1 == n || ref[i + 1].tier != ref[i].tier)) {
                rc = bv_list_add(list, tier);
                tier = NULL;
            }
        }
        bv_free(tier);
        if (rc == 0)
            rc = set(root, "announce-list", list);
        else
            bv_free(list);
    }
    free(ref);
    return rc;
}

static int build_info(struct bv *info, const rv_create_opts_t *o, const struct payload *p,
                      const char *name, bool multi, uint32_t piece_length, const uint8_t *hashes,
                      uint32_t piece_count)
{
    int rc = 0;
    if (multi) {
        struct bv *files = bv_list();
        if (files == NULL)
            return RV_ENOMEM;
        for (size_t i = 0; rc == 0 && i < p->n; i++) {
            struct bv *f = bv_dict();
            if (f == NULL) {
                rc = RV_ENOMEM;
                break;
            }
            rc = set(f, "length", bv_int((int64_t)p->v[i].size));
            if (rc == 0)
                rc = set(f, "path", path_list(p->v[i].rel));
            if (rc == 0)
                rc = bv_list_add(files, f);
            else
                bv_free(f);
        }
        if (rc != 0) {
            bv_free(files);
            return rc;
        }
        rc = set(info, "files", files);
    } else {
        rc = set(info, "length", bv_int((int64_t)p->total));
    }
    if (rc == 0)
        rc = set(info, "name", bv_cstr(name));
    if (rc == 0)
        rc = set(info, "piece length", bv_int(piece_length));
    if (rc == 0)
        rc = set(info, "pieces", bv_str(hashes, (size_t)piece_count * RV_SHA1_LEN));
    if (rc == 0 && o->is_private)
        rc = set(info, "private", bv_int(1));
    if (rc == 0 && o->source != NULL && o->source[0] != '\0')
        rc = set(info, "source", bv_cstr(o->source));
    return rc;
}

static int build_torrent(const rv_create_opts_t *o, const struct payload *p, const char *name,
                         bool multi, uint32_t piece_length, const uint8_t *hashes,
                         uint32_t piece_count, struct buf *out, rv_error_t *err)
{
    struct bv *root = bv_dict(), *info = bv_dict();
    int rc = (root && info) ? 0 : RV_ENOMEM;
    if (rc == 0)
        rc = add_trackers(root, o);
    if (rc == 0 && o->comment != NULL && o->comment[0] != '\0')
        rc = set(root, "comment", bv_cstr(o->comment));
    if (rc == 0)
        rc = set(root, "created by",
                 bv_cstr(o->created_by ? o->created_by : "rivulet/" RV_VERSION_STRING));
    if (rc == 0 && o->creation_date != -1)
        rc = set(root, "creation date",
                 bv_int(o->creation_date ? o->creation_date : (int64_t)time(NULL)));
    if (rc == 0 && o->web_seed_count == 1) {
        rc = set(root, "url-list", bv_cstr(o->web_seeds[0]));
    } else if (rc == 0 && o->web_seed_count > 1) {
        struct bv *ws = bv_list();
        rc = ws ? 0 : RV_ENOMEM;
        for (size_t i = 0; rc == 0 && i < o->web_seed_count; i++)
            rc = bv_list_add(ws, bv_cstr(o->web_seeds[i]));
        if (rc == 0)
            rc = set(root, "url-list", ws);
        else
            bv_free(ws);
    }
    if (rc == 0)
        rc = build_info(info, o, p, name, multi, piece_length, hashes, piece_count);
    if (rc == 0) {
        rc = set(root, "info", info);
        info = NULL; /* owned by root, or already freed on failure */
    }
    if (rc == 0)
        rc = bv_encode(root, out);
    bv_free(info);
    bv_free(root);
    if (rc == RV_ETOOBIG)
        return err_set(err, rc,
                       "the torrent would be larger than %u bytes; use a larger "
                       "piece length",
                       RV_MAX_TORRENT_FILE);
    if (rc != 0)
        return err_set(err, rc, "cannot encode the torrent: %s", rv_strerror(rc));
    return 0;
}

static int check_opts(const rv_create_opts_t *o, rv_error_t *err)
{
    if (o == NULL || o->path == NULL || o->path[0] == '\0')
        return err_set(err, RV_EINVAL, "no file or folder given to make a torrent of");
    uint32_t pl = o->piece_length;
    if (pl != 0 && (pl < RV_MIN_PIECE_LEN || pl > RV_MAX_PIECE_LEN || (pl & (pl - 1)) != 0))
        return err_set(err, RV_EINVAL, "piece length %u is not a power of two from %u to %u bytes",
                       pl, RV_MIN_PIECE_LEN, RV_MAX_PIECE_LEN);
    if (o->tracker_count > 0 && o->trackers == NULL)
        return err_set(err, RV_EINVAL, "tracker_count is set but trackers is NULL");
    for (size_t i = 0; i < o->tracker_count; i++)
        if (o->trackers[i] == NULL || o->trackers[i][0] == '\0')
            return err_set(err, RV_EINVAL, "tracker %zu is empty", i + 1);
    if (o->web_seed_count > 0 && o->web_seeds == NULL)
        return err_set(err, RV_EINVAL, "web_seed_count is set but web_seeds is NULL");
    for (size_t i = 0; i < o->web_seed_count; i++)
        if (o->web_seeds[i] == NULL || o->web_seeds[i][0] == '\0')
            return err_set(err, RV_EINVAL, "web seed %zu is empty", i + 1);
    if (o->creation_date < -1)
        return err_set(err, RV_EINVAL, "creation date %lld is before 1970",
                       (long long)o->creation_date);
    return 0;
}

int rv_create(const rv_create_opts_t *opts, uint8_t **out, size_t *out_len, rv_error_t *err)
{
    struct payload p = {0};
    char *name = NULL, *root = NULL;
    rv_file_t *files = NULL;
    uint8_t *hashes = NULL;
    struct buf b;
    bool multi = false;
    int rc;

    buf_init(&b, RV_MAX_TORRENT_FILE);
    if (out == NULL || out_len == NULL)
        return err_set(err, RV_EINVAL, "no place given for the torrent");
    if ((rc = check_opts(opts, err)) != 0)
        return rc;

    struct stat st;
    if (stat(opts->path, &st) != 0)
        return io_error(err, errno, "cannot stat", opts->path);
    if ((rc = payload_name(opts->path, &name, err)) != 0)
        return rc;
    if (S_ISREG(st.st_mode)) {
        char *rel = strdup(name), *full = strdup(opts->path);
        if (rel == NULL || full == NULL) {
            free(rel);
            free(full);
            rc = err_set(err, RV_ENOMEM, "out of memory");
            goto fail;
        }
        if ((rc = payload_add(&p, rel, full, (uint64_t)st.st_size, err)) != 0)
            goto fail;
    } else if (S_ISDIR(st.st_mode)) {
        multi = true;
        size_t rlen = strlen(opts->path);
        while (rlen > 1 && opts->path[rlen - 1] == '/')
            rlen--; /* so messages name "dir/file", not "dir//file" */
        if ((root = strndup(opts->path, rlen)) == NULL) {
            rc = err_set(err, RV_ENOMEM, "out of memory");
            goto fail;
        }
        if ((rc = walk(&p, root, NULL, 0, err)) != 0)
            goto fail;
        if (p.n == 0) {
            rc = err_set(err, RV_EINVAL, "%s holds no files to make a torrent of", opts->path);
            goto fail;
        }
    } else {
        rc = err_set(err, RV_EINVAL, "%s is neither a regular file nor a folder", opts->path);
        goto fail;
    }
    if (p.total == 0) {
        rc = err_set(err, RV_EINVAL, "%s holds no data: every file is empty", opts->path);
        goto fail;
    }

    uint32_t pl = opts->piece_length ? opts->piece_length : rv_create_auto_piece_length(p.total);
    uint64_t pieces = p.total / pl + (p.total % pl != 0);
    if (pieces > RV_MAX_TORRENT_FILE / RV_SHA1_LEN) {
        rc = err_set(err, RV_ETOOBIG,
                     "%llu pieces of %u bytes would make the torrent larger than %u bytes; use a "
                     "larger piece length",
                     (unsigned long long)pieces, pl, RV_MAX_TORRENT_FILE);
        goto fail;
    }

    /* The layout wants rv_file_t; only offsets and lengths matter to it. */
    files = calloc(p.n, sizeof(*files));
    hashes = malloc((size_t)pieces * RV_SHA1_LEN);
    if (files == NULL || hashes == NULL) {
        rc = err_set(err, RV_ENOMEM, "out of memory");
        goto fail;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < p.n; i++) {
        files[i].path = p.v[i].rel;
        files[i].length = p.v[i].size;
        files[i].offset = off;
        off += p.v[i].size; /* cannot overflow: the total was checked as it was summed */
    }
    struct layout l;
    if (layout_init(&l, files, p.n, pl, p.total) != 0 || l.piece_count != pieces) {
        rc = err_set(err, RV_EINVAL, "internal error: bad file layout");
        goto fail;
    }

    if ((rc = hash_all(opts, &l, &p, hashes, err)) != 0)
        goto fail;
    if ((rc = recheck_sizes(&p, err)) != 0)
        goto fail;
    if ((rc = build_torrent(opts, &p, name, multi, pl, hashes, l.piece_count, &b, err)) != 0)
        goto fail;

    *out = buf_steal(&b, out_len);
    rc = 0;
fail:
    buf_free(&b);
    free(hashes);
    free(files);
    free(root);
    free(name);
    payload_free(&p);
    return rc;
}

int rv_create_file(const rv_create_opts_t *opts, const char *out_path, rv_error_t *err)
{
    if (out_path == NULL || out_path[0] == '\0')
        return err_set(err, RV_EINVAL, "no output file given");
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = rv_create(opts, &data, &len, err);
    if (rc == 0)
        rc = fs_write_atomic(out_path, data, len, err);
    free(data);
    return rc;
}
