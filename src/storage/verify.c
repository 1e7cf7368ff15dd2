/* rv_verify: re-checking data on disk on every core (see rivulet/verify.h).
 *
 * The shape is create.c's hasher: worker threads take the next run of pieces from a shared
 * counter and pread each piece's file spans into one buffer that feeds SHA-1. What differs:
 * - Files are reached through pathat (O_NOFOLLOW on every component), never by a path that a
 *   symlink below the folder could redirect.
 * - The files are looked at once before the workers start. A piece that needs bytes a file
 *   does not have (missing, short, not a regular file) fails without a read; a file that
 *   changes during the check only fails the pieces it spoils.
 * - Padding and bytes that belong to no file hash as zeros (BEP 47; v2 alignment), as storage
 *   does.
 * - Workers take runs of pieces (about RUN_BYTES each), not single pieces, so each reads long
 *   sequential stretches: on a cold disk, readahead works; in the page cache it costs nothing.
 * - Where the CPU has AVX-512 or SHA-NI, sixteen full-length pieces are hashed side by side
 *   (sha1x), each read LANE_CHUNK at a time into its lane's buffer: 2-2.6 times libcrypto's
 *   rate on one core. The short last piece, and groups with fewer than LANES_MIN pieces to
 *   read, go through libcrypto one by one.
 * - A worker writes only its own pieces' bytes in ok[]; the bitfield is built after the join,
 *   so no two threads write one byte. */
#include "rivulet/verify.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "metainfo/layout.h"
#include "storage/pathat.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/sha1x.h"
#include "util/team.h"

/* Bytes per pread and per SHA-1 update, as in create.c. Measured on 1 GiB in the page cache:
 * 256 KiB chunks (which stay in L2) were 3-4 % slower than 1 MiB; fewer calls win. */
#define READ_CHUNK (1u << 20)
#define RUN_BYTES (8u << 20) /* piece space a worker takes at a time */
/* sha1x: bytes of each lane read per step (16 lanes: 2 MiB per worker; 1 GiB took as long as
 * with 256 KiB, at 14 MiB peak RSS against 18; 64 KiB cost 5 % more CPU in reads), and the
 * fewest full-length pieces worth a sixteen-lane pass. */
#define LANE_CHUNK (128u << 10)
#define LANES_MIN 8
#define FD_CACHE 8           /* open files kept per worker */
#define PROGRESS_NS 200000000L

/* What stopped a worker; formatted on the calling thread. */
struct fault {
    int errnum; /* 0: none */
    size_t file;
    bool open; /* opening failed, else reading */
    bool sha;  /* libcrypto failed */
};

struct job {
    const rv_torrent_info_t *ti;
    struct layout l;
    int dirfd;
    const uint64_t *avail; /* per file: bytes on disk usable (0: missing or not a file) */
    uint8_t *ok;           /* per piece: 1 when verified */
    uint32_t run;          /* pieces per grab */
    size_t bufsize;
    size_t lane_chunk; /* 0: sha1x not used */
    const EVP_MD *md;

    atomic_uint_fast64_t next_piece;
    atomic_uint_fast64_t done; /* piece-space bytes checked */
    atomic_uint_fast64_t bytes_read;
    atomic_bool stop;

    pthread_mutex_t mu;
    struct fault fault; /* the first, under mu */

    /* the calling thread's */
    rv_verify_progress_cb progress;
    void *progress_ud;
    bool canceled; /* progress asked to stop */
};

struct fdslot {
    size_t file;
    int fd;
};

struct worker {
    struct job *j;
    uint8_t *buf;
    uint8_t *lanes; /* SHA1X_LANES x lane_chunk, or NULL */
    EVP_MD_CTX *ctx;
    struct fdslot fds[FD_CACHE];
    unsigned evict;
};

enum piece_rc { P_OK, P_BAD, P_FAULT };

static void fail_with(struct job *j, const struct fault *f)
{
    pthread_mutex_lock(&j->mu);
    if (j->fault.errnum == 0 && !j->fault.sha)
        j->fault = *f;
    pthread_mutex_unlock(&j->mu);
    atomic_store(&j->stop, true);
}

/* A descriptor for file from the worker's cache. P_BAD: the file went away or was replaced
 * since it was looked at (its pieces are missing); P_FAULT: f says why. */
static enum piece_rc worker_fd(struct worker *w, size_t file, int *fd, struct fault *f)
{
    for (unsigned i = 0; i < FD_CACHE; i++) {
        if (w->fds[i].fd >= 0 && w->fds[i].file == file) {
            *fd = w->fds[i].fd;
            return P_OK;
        }
    }
    struct stat st;
    int nfd = -1;
    int e = pathat_open_read(w->j->dirfd, w->j->ti->files[file].path, &nfd, &st);
    if (e == ENOENT || e == ENOTDIR || e == ELOOP || e == PATHAT_NOT_REGULAR)
        return P_BAD;
    if (e != 0) {
        *f = (struct fault){e, file, true, false};
        return P_FAULT;
    }
    (void)posix_fadvise(nfd, 0, 0, POSIX_FADV_SEQUENTIAL);
    struct fdslot *s = &w->fds[w->evict];
    w->evict = (w->evict + 1) % FD_CACHE;
    if (s->fd >= 0)
        close(s->fd);
    s->file = file;
    s->fd = nfd;
    *fd = nfd;
    return P_OK;
}

/* True when every byte piece needs is on disk, as the files were when looked at. */
static bool piece_available(const struct job *j, uint32_t piece)
{
    struct span_iter it;
    struct span sp;
    layout_piece_begin(&j->l, piece, &it);
    while (layout_span_next(&it, &sp)) {
        if (j->l.files[sp.file].attr & RV_FILE_PAD)
            continue;
        if (j->avail[sp.file] < sp.file_offset + sp.length)
            return false;
    }
    return true;
}

/* Copies the piece's bytes [off, off + len) into dst: a file's bytes by pread, padding files
 * and bytes that belong to no file (v2 alignment) as zeros, as storage has them. P_BAD: a file
 * shrank since it was looked at; P_FAULT: f says why. */
static enum piece_rc piece_read(struct worker *w, uint32_t piece, uint64_t off, size_t len,
                                uint8_t *dst, struct fault *f)
{
    struct job *j = w->j;
    uint64_t start = (uint64_t)piece * j->l.piece_length, end = off + len, at = off;
    struct span_iter it;
    struct span sp;

    layout_piece_begin(&j->l, piece, &it);
    while (at < end && layout_span_next(&it, &sp)) {
        const rv_file_t *file = &j->l.files[sp.file];
        uint64_t pos = file->offset + sp.file_offset - start; /* where the span is in the piece */
        uint64_t lo = pos > at ? pos : at;
        uint64_t hi = pos + sp.length < end ? pos + sp.length : end;
        if (lo >= hi)
            continue;                                   /* wholly before at, or after end */
        memset(dst + (at - off), 0, (size_t)(lo - at)); /* bytes in no file before the span */
        at = hi;
        if (file->attr & RV_FILE_PAD) {
            memset(dst + (lo - off), 0, (size_t)(hi - lo));
            continue;
        }
        int fdesc;
        enum piece_rc rc = worker_fd(w, sp.file, &fdesc, f);
        if (rc != P_OK)
            return rc;
        uint8_t *p = dst + (lo - off);
        uint64_t foff = sp.file_offset + (lo - pos);
        size_t left = (size_t)(hi - lo);
        while (left > 0) {
            ssize_t n = pread(fdesc, p, left, (off_t)foff);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                *f = (struct fault){errno, sp.file, false, false};
                return P_FAULT;
            }
            if (n == 0)
                return P_BAD; /* the file shrank since it was looked at */
            p += n;
            foff += (uint64_t)n;
            left -= (size_t)n;
            atomic_fetch_add_explicit(&j->bytes_read, (uint64_t)n, memory_order_relaxed);
        }
    }
    memset(dst + (at - off), 0, (size_t)(end - at)); /* bytes in no file after the last span */
    return P_OK;
}

/* One piece through libcrypto, bufsize bytes at a time. */
static enum piece_rc hash_piece(struct worker *w, uint32_t piece, struct fault *f)
{
    struct job *j = w->j;
    uint32_t size = layout_piece_size(&j->l, piece);
    uint8_t md[RV_SHA1_LEN];

    if (EVP_DigestInit_ex(w->ctx, j->md, NULL) != 1)
        goto sha_fail;
    for (uint64_t off = 0; off < size; off += j->bufsize) {
        size_t n = size - off < j->bufsize ? (size_t)(size - off) : j->bufsize;
        enum piece_rc rc = piece_read(w, piece, off, n, w->buf, f);
        if (rc != P_OK)
            return rc;
        if (EVP_DigestUpdate(w->ctx, w->buf, n) != 1)
            goto sha_fail;
    }
    if (EVP_DigestFinal_ex(w->ctx, md, NULL) != 1)
        goto sha_fail;
    const uint8_t *want = j->ti->piece_hashes + (size_t)piece * RV_SHA1_LEN;
    return memcmp(md, want, RV_SHA1_LEN) == 0 ? P_OK : P_BAD;
sha_fail:
    *f = (struct fault){0, 0, false, true};
    return P_FAULT;
}

struct lane_read {
    struct worker *w;
    const uint32_t *pieces;
    struct fault *f;
};

static int lane_read(void *ud, size_t k, uint64_t off, size_t len, uint8_t *dst)
{
    struct lane_read *lr = ud;
    enum piece_rc rc = piece_read(lr->w, lr->pieces[k], off, len, dst, lr->f);
    return rc == P_OK ? 0 : rc == P_BAD ? 1 : -1;
}

/* n (LANES_MIN..SHA1X_LANES) full-length pieces side by side through sha1x, each read
 * lane_chunk bytes at a time into its lane's part of w->lanes. res[k] gets piece k's outcome
 * (a piece whose file shrank is read no more, and is P_BAD). Returns P_FAULT when a read fault
 * stops the check, else P_OK. */
static enum piece_rc hash_lanes(struct worker *w, const uint32_t *pieces, size_t n,
                                enum piece_rc *res, struct fault *f)
{
    struct job *j = w->j;
    struct lane_read lr = {w, pieces, f};
    bool live[SHA1X_LANES];
    uint8_t md[SHA1X_LANES][RV_SHA1_LEN];

    if (sha1x_digest_chunked(n, j->l.piece_length, j->lane_chunk, w->lanes, lane_read, &lr, live,
                             md) != 0)
        return P_FAULT;
    for (size_t k = 0; k < n; k++) {
        const uint8_t *want = j->ti->piece_hashes + (size_t)pieces[k] * RV_SHA1_LEN;
        res[k] = live[k] && memcmp(md[k], want, RV_SHA1_LEN) == 0 ? P_OK : P_BAD;
    }
    return P_OK;
}

/* Checks pieces first..end-1, SHA1X_LANES at a time: the full-length ones that can be read go
 * through hash_lanes when there are at least LANES_MIN of them (fewer would leave most lanes
 * idle, and libcrypto does one piece in a sixteenth of the time it takes), the rest one by
 * one. False when a fault stops the check. */
static bool check_pieces(struct worker *w, uint64_t first, uint64_t end, struct fault *f)
{
    struct job *j = w->j;
    for (uint64_t g = first; g < end; g += SHA1X_LANES) {
        uint64_t gend = g + SHA1X_LANES < end ? g + SHA1X_LANES : end;
        uint32_t lane[SHA1X_LANES];
        enum piece_rc res[SHA1X_LANES];
        size_t n = 0, k = 0;
        for (uint64_t p = g; p < gend && w->lanes != NULL; p++)
            if (layout_piece_size(&j->l, (uint32_t)p) == j->l.piece_length &&
                piece_available(j, (uint32_t)p))
                lane[n++] = (uint32_t)p;
        if (n < LANES_MIN)
            n = 0;
        if (n > 0 && hash_lanes(w, lane, n, res, f) == P_FAULT)
            return false;
        for (uint64_t p = g; p < gend; p++) {
            uint32_t piece = (uint32_t)p;
            enum piece_rc rc = P_BAD;
            if (k < n && lane[k] == piece)
                rc = res[k++];
            else if (piece_available(j, piece))
                rc = hash_piece(w, piece, f);
            if (rc == P_FAULT)
                return false;
            j->ok[piece] = rc == P_OK;
            atomic_fetch_add_explicit(&j->done, layout_piece_size(&j->l, piece),
                                      memory_order_relaxed);
            if (atomic_load_explicit(&j->stop, memory_order_relaxed))
                return true;
        }
    }
    return true;
}

static void verify_worker(void *arg)
{
    struct worker *w = arg;
    struct job *j = w->j;
    struct fault f;
    uint32_t count = j->l.piece_count;

    while (!atomic_load_explicit(&j->stop, memory_order_relaxed)) {
        uint64_t first = atomic_fetch_add(&j->next_piece, j->run);
        if (first >= count)
            break;
        uint64_t end = first + j->run < count ? first + j->run : count;
        if (!check_pieces(w, first, end, &f)) {
            fail_with(j, &f);
            break;
        }
    }
    for (unsigned i = 0; i < FD_CACHE; i++) {
        if (w->fds[i].fd >= 0)
            close(w->fds[i].fd);
        w->fds[i].fd = -1;
    }
}

/* ---- the calling thread ---- */

static int sys_err(rv_error_t *err, int e, const char *what, const char *dir, const char *path)
{
    char ebuf[128];
    if (path != NULL)
        err_set(err, RV_EIO, "%s %s/%s: %s", what, dir, path, strerror_r(e, ebuf, sizeof(ebuf)));
    else
        err_set(err, RV_EIO, "%s %s: %s", what, dir, strerror_r(e, ebuf, sizeof(ebuf)));
    if (err != NULL)
        err->sys_errno = e;
    return RV_EIO;
}

/* Looks at every file once: its state and how many of its bytes can be read. */
static int look(const rv_torrent_info_t *ti, int dirfd, const char *dir, rv_verify_file_t *files,
                uint64_t *avail, rv_error_t *err)
{
    for (size_t i = 0; i < ti->file_count; i++) {
        const rv_file_t *f = &ti->files[i];
        struct stat st;
        avail[i] = 0;
        if (f->attr & RV_FILE_PAD) {
            files[i].state = RV_VERIFY_PADDING;
            continue;
        }
        int e = dirfd < 0 ? ENOENT : pathat_stat_file(dirfd, f->path, &st);
        switch (e) {
        case 0:
            files[i].state = RV_VERIFY_PARTIAL; /* until its pieces are counted */
            files[i].size_on_disk = (uint64_t)st.st_size;
            avail[i] = files[i].size_on_disk < f->length ? files[i].size_on_disk : f->length;
            break;
        case ENOENT:
        case ENOTDIR:
            files[i].state = RV_VERIFY_MISSING;
            break;
        case ELOOP:
        case PATHAT_NOT_REGULAR:
            files[i].state = RV_VERIFY_NOT_FILE;
            break;
        case EINVAL: /* the parser refuses such paths; one made some other way is not read */
            files[i].state = RV_VERIFY_NOT_FILE;
            break;
        default:
            return sys_err(err, e, "cannot look at", dir, f->path);
        }
    }
    return 0;
}

/* Every PROGRESS_NS on the calling thread while the workers run. */
static void tick(void *ud)
{
    struct job *j = ud;
    if (j->progress == NULL || atomic_load(&j->stop))
        return;
    if (j->progress(j->progress_ud, atomic_load(&j->done), j->l.piece_space) != 0) {
        j->canceled = true;
        atomic_store(&j->stop, true);
    }
}

/* Runs the workers and waits, calling progress. Returns 0, RV_ECANCELED, or a fault. */
static int run_workers(struct job *j, unsigned nthreads, const char *dir, rv_error_t *err)
{
    struct worker *w = calloc(nthreads, sizeof(*w));
    int rc = 0;

    if (w == NULL)
        return err_set(err, RV_ENOMEM, "out of memory starting the hashing threads");
    if (pthread_mutex_init(&j->mu, NULL) != 0) {
        free(w);
        return err_set(err, RV_ENOMEM, "cannot set up the hashing threads");
    }
    for (unsigned i = 0; i < nthreads; i++) {
        w[i].j = j;
        for (unsigned k = 0; k < FD_CACHE; k++)
            w[i].fds[k].fd = -1;
        w[i].buf = fs_read_buffer(j->bufsize);
        w[i].ctx = EVP_MD_CTX_new();
        if (j->lane_chunk > 0) {
            w[i].lanes = fs_read_buffer(SHA1X_LANES * j->lane_chunk);
            if (w[i].lanes != NULL) /* the unused lanes hash these bytes: defined ones */
                memset(w[i].lanes, 0, SHA1X_LANES * j->lane_chunk);
        }
        if (w[i].buf == NULL || w[i].ctx == NULL || (j->lane_chunk > 0 && w[i].lanes == NULL)) {
            rc = err_set(err, RV_ENOMEM, "out of memory for the hashing buffers");
            goto out;
        }
    }
    struct team_opts o = {.threads = nthreads, .work = verify_worker, .args = w,
                          .stride = sizeof(*w), .stop = &j->stop, .tick_ns = PROGRESS_NS,
                          .tick = tick, .ud = j};
    rc = team_run(&o, err);
    if (rc == 0 && j->fault.sha)
        rc = err_set(err, RV_EIO, "SHA-1 failed inside libcrypto");
    else if (rc == 0 && j->fault.errnum != 0)
        rc = sys_err(err, j->fault.errnum, j->fault.open ? "cannot open" : "cannot read", dir,
                     j->ti->files[j->fault.file].path);
    else if (rc == 0 && j->canceled)
        rc = err_set(err, RV_ECANCELED, "the check was stopped");
    if (rc == 0 && j->progress != NULL)
        (void)j->progress(j->progress_ud, atomic_load(&j->done), j->l.piece_space);
out:
    for (unsigned i = 0; i < nthreads; i++) {
        free(w[i].buf);
        free(w[i].lanes);
        EVP_MD_CTX_free(w[i].ctx);
    }
    free(w);
    pthread_mutex_destroy(&j->mu);
    return rc;
}

/* Fills the result from ok[]: the bitfield, each file's bytes in verified pieces, totals. */
static int summarise(const struct job *j, rv_verify_result_t *out, rv_error_t *err)
{
    const struct layout *l = &j->l;
    out->have = calloc(((size_t)l->piece_count + 7) / 8 + 1, 1);
    if (out->have == NULL)
        return err_set(err, RV_ENOMEM, "out of memory");
    for (uint32_t p = 0; p < l->piece_count; p++) {
        if (!j->ok[p])
            continue;
        out->have[p / 8] |= (uint8_t)(0x80u >> (p % 8));
        out->pieces_have++;
        struct span_iter it;
        struct span sp;
        layout_piece_begin(l, p, &it);
        while (layout_span_next(&it, &sp))
            out->files[sp.file].bytes_have += sp.length;
    }
    out->complete = out->pieces_have == l->piece_count;
    for (size_t i = 0; i < out->file_count; i++) {
        rv_verify_file_t *f = &out->files[i];
        const rv_file_t *tf = &l->files[i];
        if (f->state == RV_VERIFY_PADDING) {
            f->bytes_have = 0;
            continue;
        }
        if (f->state == RV_VERIFY_MISSING || f->state == RV_VERIFY_NOT_FILE) {
            f->bytes_have = 0; /* only possible for an empty file, whose pieces are others' */
            out->complete = false;
            continue;
        }
        f->state = f->bytes_have == tf->length ? RV_VERIFY_COMPLETE : RV_VERIFY_PARTIAL;
        out->bytes_have += f->bytes_have;
    }
    return 0;
}

int rv_verify(const rv_torrent_info_t *ti, const char *dir, unsigned threads,
              rv_verify_progress_cb progress, void *ud, rv_verify_result_t *out, rv_error_t *err)
{
    struct job j;
    uint64_t *avail = NULL;
    EVP_MD *fetched = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    memset(&j, 0, sizeof(j));
    j.dirfd = -1;
    if (ti->piece_hashes == NULL)
        return err_set(err, RV_ETORRENT,
                       "%s has no v1 piece hashes (v2-only torrents cannot be verified yet)",
                       ti->name);
    if (layout_from_torrent(&j.l, ti) != 0 || j.l.piece_count == 0)
        return err_set(err, RV_ETORRENT, "%s has an inconsistent file layout", ti->name);
    if (dir == NULL || dir[0] == '\0')
        return err_set(err, RV_EINVAL, "no folder given");
    j.ti = ti;

    out->piece_count = ti->piece_count;
    out->file_count = ti->file_count;
    out->bytes_total = ti->total_size;
    out->files = calloc(ti->file_count + 1, sizeof(*out->files));
    avail = calloc(ti->file_count + 1, sizeof(*avail));
    j.ok = calloc(ti->piece_count, 1);
    if (out->files == NULL || avail == NULL || j.ok == NULL) {
        rc = err_set(err, RV_ENOMEM, "out of memory");
        goto fail;
    }
    j.avail = avail;
    /* The folder itself is the user's choice: a symlink there is followed. */
    j.dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (j.dirfd < 0 && errno != ENOENT) {
        rc = sys_err(err, errno, "cannot open folder", dir, NULL);
        goto fail;
    }
    out->dir_missing = j.dirfd < 0;
    if ((rc = look(ti, j.dirfd, dir, out->files, avail, err)) != 0)
        goto fail;

    j.bufsize = ti->piece_length < READ_CHUNK ? ti->piece_length : READ_CHUNK;
    j.run = RUN_BYTES / ti->piece_length ? RUN_BYTES / ti->piece_length : 1;
    if (sha1x_min_messages() > 0 && ti->piece_count > 1) { /* lanes gain on this CPU */
        /* A worker takes at least a pass's worth of pieces at a time. */
        j.lane_chunk = ti->piece_length < LANE_CHUNK ? (ti->piece_length + 63u) & ~63u : LANE_CHUNK;
        if (j.run < SHA1X_LANES)
            j.run = SHA1X_LANES;
    }
    atomic_init(&j.next_piece, 0);
    atomic_init(&j.done, 0);
    atomic_init(&j.bytes_read, 0);
    atomic_init(&j.stop, false);
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    /* Fetched once: OpenSSL 3 looks EVP_sha1() up again on every init otherwise. */
    fetched = EVP_MD_fetch(NULL, "SHA1", NULL);
    j.md = fetched;
#endif
    if (j.md == NULL)
        j.md = EVP_sha1();
    j.progress = progress;
    j.progress_ud = ud;
    out->threads = team_size(threads, ti->piece_count);
    if ((rc = run_workers(&j, out->threads, dir, err)) != 0)
        goto fail;
    out->bytes_read = atomic_load(&j.bytes_read);
    if ((rc = summarise(&j, out, err)) != 0)
        goto fail;
    rc = 0;
    goto done;
fail:
    rv_verify_result_free(out);
done:
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    EVP_MD_free(fetched);
#endif
    if (j.dirfd >= 0)
        close(j.dirfd);
    free(avail);
    free(j.ok);
    return rc;
}

void rv_verify_result_free(rv_verify_result_t *r)
{
    if (r == NULL)
        return;
    free(r->have);
    free(r->files);
    memset(r, 0, sizeof(*r));
}
