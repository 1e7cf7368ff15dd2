/* Storage of one torrent's files: pieces verified and written, checked and read on libuv's
 * worker threads, files opened relative to the download folder one component at a time.
 *
 * Decisions worth knowing:
 * - A file gets its final size the first time a piece is written to it: its space reserved with
 *   fallocate(2) (as Transmission does by default), or, where the file system cannot or has no
 *   room for all of it, sparse (ftruncate; a full disk then shows at the write that finds no
 *   room). Files the user never receives data for are not created, and a partly written file
 *   reads as zeros where data is missing, so a check of such a piece is a hash mismatch rather
 *   than a short read. A file already longer than the torrent says is not shrunk. Reserved
 *   space matters for direct writes on ext4: into a sparse file each one allocates blocks under
 *   the file's exclusive lock, so the workers' writes went one at a time (1 GiB in 1 MiB
 *   pieces from one libtorrent seeder, 3 runs each: workers' write time 2.7-2.9 s against
 *   4.3-4.5, the download done in 1.20-1.44 s against 1.48-1.52, and 0.86-1.02 CPU s against
 *   1.09-1.11).
 * - A write that finds direct_max direct writes running (two by default) and two more write
 *   jobs waiting for a worker (counts shared by a session's storages) goes through the page
 *   cache and returns at once. The disk bounds a download only where the network outruns it:
 *   on this machine's virtual disk four 256 KiB direct writers reach 1.45 GB/s and one 1.05,
 *   so a rivulet seeder on loopback (~1 GB/s) kept all four workers waiting on the disk (3.9 s
 *   of write time in a 1.2 s download) and hashing waited behind them. 1 GiB from a rivulet
 *   seeder, 3 rounds alternating: 1.11-1.13 s (a quarter of the data through the cache)
 *   against 1.26-1.32 all direct. Overflowing on the running count alone (1.06-1.20 s) sent
 *   a third of the data through the cache from a libtorrent seeder too, where the disk kept
 *   up, and cost 0.1 CPU s per GiB there (the copy, and its writeback in the fsync at the
 *   end): 1.26 against 1.14 all direct and 1.16 with the queue condition (4 rounds, noisy).
 * - A chunk job's direct writes (storage_write_chunks: up to STORAGE_CHUNKS_MAX chunks of
 *   different pieces, none next to another in its file) go to the kernel in one io_submit(2)
 *   and are waited for together (Linux AIO on O_DIRECT files), instead of one pwritev each:
 *   the virtual disk is told once (a write to its queue's doorbell, which leaves the virtual
 *   machine) and the worker sleeps once. 1 GiB in 256 KiB writes, four pieces to a row, on
 *   this machine: 0.20 s of system time one write at a time, 0.10 four at a time, the rows
 *   done in 0.75-0.93 s against 1.00-1.14. 1 GiB from one libtorrent seeder, 8 rounds
 *   alternating: 0.93 CPU s median against 1.01 (7 rounds of 8 lower; system time 0.40
 *   against 0.47 on average, 9,900 voluntary context switches against 11,800); from four, 5
 *   rounds: 0.99 against 1.02 on average (2026-12-07). A job's gathered writes count as one
 *   running direct write (the overflow rule above): counted one by one, they sent twice as
 *   much through the cache. Where the kernel refuses AIO (no context, seccomp), or a write
 *   comes back short or refused, it is done as before.
 * - Handles are cached (at most max_open, least recently used closed first) and shared by the
 *   workers under one mutex. A worker holds a reference on a handle for each read or write, and
 *   only a handle nobody holds is closed, so no fd is closed (and its number reused) under a
 *   worker. While every cached handle is in use the cache may briefly hold more than max_open;
 *   the excess is closed as the references are dropped.
 * - Only the fd cache and the disk's counts (struct storage_disk: atomics, shared by a
 *   session's torrents, as the workers are) are shared between threads. Workers read the
 *   torrent, the layout, the folder's fd and name (all fixed after storage_new) and their own
 *   request; everything else (pending work, the close state) belongs to the loop thread.
 * - storage_new creates the folder and the zero-length files on the calling (loop) thread: it
 *   runs once per torrent and its errors must reach the caller. */
#include "storage/storage.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/aio_abi.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "util/err.h"
#include "util/sha.h"
#include "util/sha1x.h"
#include "util/stats.h"

#define DEFAULT_MAX_OPEN 64
#define CHECK_CHUNK (256u << 10) /* storage_check hashes a piece in reads of this size */
#define CHECK_LANE (64u << 10)   /* storage_check_run: bytes of each lane read per step */
#define IO_MAX (1u << 30)        /* Linux moves at most ~2 GiB per call; keep each call below */
#define NONE SIZE_MAX
#define BOUNCE_BYTES (256u << 10) /* aligned copy of data that is not aligned in memory */
#define BOUNCE_MAX 16             /* bounce buffers kept for reuse (one per busy worker) */
#define DIRECT_REFUSED (-1)       /* write_direct: fall back to the cache, for good */
#define DIRECT_SKIPPED (-2)       /* write_direct: fall back to the cache, this time */
#define DIRECT_UNALIGNED (-3)     /* write_direct_chunks: a chunk is not aligned in memory */
#define AIO_MAX (2 * STORAGE_CHUNKS_MAX) /* direct writes one job submits together */
_Static_assert(STORAGE_RUN_MAX <= SHA1X_LANES, "a run's pieces fit sha1x's lanes");
_Static_assert(STORAGE_CHUNKS_MAX <= STORAGE_RUN_MAX, "a job's chunks have a result each");

enum op { OP_WRITE, OP_CHECK, OP_READ, OP_SYNC, OP_STEPS, OP_CHUNK };

/* The jobs storage_disk.queued counts. */
static bool is_write(enum op op)
{
    return op == OP_WRITE || op == OP_CHUNK;
}

struct req {
    uv_work_t work; /* work.data points back here */
    struct storage *s;
    enum op op;
    uint32_t piece, begin, len;
    uint32_t count; /* OP_WRITE: pieces piece..piece+count-1, piece+i's data at run[i]; OP_CHUNK:
                       chunks */
    const uint8_t *run[STORAGE_RUN_MAX];
    int run_rc[STORAGE_RUN_MAX]; /* each piece's (OP_CHUNK: chunk's) result: 0, RV_EHASH, or
                                    the write's error */
    uint8_t *out;        /* OP_READ */
    /* OP_STEPS (storage_hash_chunks): steps[0..nsteps), chunk bytes the full ones; OP_CHUNK
     * (storage_write_chunks): chunks[0..count), each data set to NULL once released. Either
     * hands its data to release once done with it (OP_STEPS: only when canceled; steps_cb has
     * it). */
    struct storage_step *steps;
    unsigned nsteps;
    uint32_t chunk;
    storage_steps_cb steps_cb;
    struct storage_chunk chunks[STORAGE_CHUNKS_MAX];
    bool hurry; /* OP_CHUNK: through the cache unless the disk is idle */
    struct aio_batch *batch; /* OP_CHUNK: direct writes gathered to go out together */
    storage_release_fn release;
    void *rud;
    storage_cb cb;
    void *ud;
    int rc;
    rv_error_t err;
    struct req *prev, *next; /* the in-flight list, or (next only) the free list */
};

/* One file's place in the handle cache; guarded by storage.lock. */
struct fent {
    int fd;                    /* -1: not open */
    int dfd;                   /* fd reopened with O_DIRECT for writes; -1: not (yet) open */
    bool no_direct;            /* the file system refused O_DIRECT: every write is cached */
    unsigned refs;             /* workers using fd now: it is closed only at 0 */
    bool writable;             /* O_RDWR; O_RDONLY when a check or read found it read-only */
    bool sized;                /* already at least its final length */
    bool dirty;                /* written to since the last sync: fsync'd by storage_sync and
                                  at close */
    bool new_name;             /* opened for writing since the last sync: its folders may hold
                                  a new name (the file or a folder made for it) to fsync */
    size_t lru_prev, lru_next; /* towards the most / least recently used open file */
};

struct storage {
    uv_loop_t *loop;
    const rv_torrent_info_t *ti;
    const struct layout *l;
    char *dir; /* as given, for messages */
    const uint8_t *file_sel;
    int dirfd;
    unsigned max_open;
    rv_session_stats_t *stats; /* the session's, or own_stats */
    rv_session_stats_t own_stats;
    bool direct;              /* storage_opts.direct */
    unsigned direct_max;      /* storage_opts.direct_max, or STORAGE_DIRECT_BUSY */
    struct storage_disk *disk; /* opts.disk, or own_disk */
    struct storage_disk own_disk;

    uv_mutex_t lock; /* guards fents, lru_head, lru_tail, open_count, bounce */
    uint8_t *bounce[BOUNCE_MAX];
    unsigned nbounce;
    struct fent *fents;
    size_t lru_head, lru_tail; /* most and least recently used open files */
    unsigned open_count;

    /* The loop thread's own. */
    unsigned pending;
    struct req *inflight;
    struct req *free_reqs;
    bool closing, final_queued;
    bool syncing; /* a storage_sync is queued or running */
    uv_work_t final_work;
    void (*close_cb)(void *ud);
    void *close_ud;
};

/* A handle borrowed for one read or write. own: opened for this call alone because the
 * cached handle is read-only and in use; closed on release. */
struct fh {
    int fd;
    size_t file;
    bool own;
};

/* RV_EIO with "MESSAGE: strerror(e)" and err->sys_errno = e. */
static int sys_err(rv_error_t *err, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int sys_err(rv_error_t *err, int e, const char *fmt, ...)
{
    char what[200], ebuf[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    /* GNU strerror_r: workers call this concurrently, and strerror may share one buffer */
    err_set(err, RV_EIO, "%s: %s", what, strerror_r(e, ebuf, sizeof(ebuf)));
    if (err != NULL)
        err->sys_errno = e;
    return RV_EIO;
}

static bool bad_component(const char *p, size_t n)
{
    return n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.');
}

/* An openat of comp in dfd failed with e: a symlink is refused as RV_EPATH whatever errno the
 * kernel chose for it (ELOOP for O_NOFOLLOW, ENOTDIR when O_DIRECTORY is checked first). */
static int open_failed(const struct storage *s, int dfd, const char *comp, int e, const char *path,
                       int shown, const char *what, rv_error_t *err)
{
    struct stat st;
    if ((e == ELOOP || e == ENOTDIR || e == EMLINK) &&
        fstatat(dfd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
        return err_set(err, RV_EPATH,
                       "%s/%.*s is a symbolic link; refusing to follow it out of the download "
                       "folder",
                       s->dir, shown, path);
    return sys_err(err, e, "cannot open %s %s/%.*s", what, s->dir, shown, path);
}

/* Opens path (relative, '/'-separated) below the download folder, one component at a time with
 * O_NOFOLLOW, so neither a symlink nor ".." placed in the path can lead outside. create: make
 * the missing folders and the file (O_RDWR); else open an existing file O_RDWR, or O_RDONLY if
 * it cannot be written (data checked or seeded from a read-only folder or disk, or a program
 * running from it). */
static int open_path(const struct storage *s, const char *path, bool create, int *out,
                     bool *writable, rv_error_t *err)
{
    char comp[NAME_MAX + 1];
    int dfd = s->dirfd, fd = -1, rc = 0;
    const char *p = path;
    struct stat st;

    /* The parser refuses these already; a path reaching us some other way must not climb out
     * of the folder either. All are checked before any folder is made. */
    for (const char *q = path;;) {
        const char *slash = strchr(q, '/');
        size_t n = slash != NULL ? (size_t)(slash - q) : strlen(q);
        if (bad_component(q, n))
            return err_set(err, RV_EPATH, "%s/%s has an unsafe path component '%.*s'", s->dir, path,
                           (int)n, q);
        if (slash == NULL)
            break;
        q = slash + 1;
    }
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash != NULL ? (size_t)(slash - p) : strlen(p);
        /* How much of path names this component, for messages. path is at most a few KiB (the
         * parser caps it), so this fits an int. */
        int shown = (int)((size_t)(p - path) + n);
        if (n > NAME_MAX) {
            rc = sys_err(err, ENAMETOOLONG, "cannot open %s/%.*s", s->dir, shown, path);
            goto done;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        if (slash == NULL)
            break;
        if (create && mkdirat(dfd, comp, 0755) != 0 && errno != EEXIST) {
            rc = sys_err(err, errno, "cannot create folder %s/%.*s", s->dir, shown, path);
            goto done;
        }
        int nfd = openat(dfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (nfd < 0) {
            rc = open_failed(s, dfd, comp, errno, path, shown, "folder", err);
            goto done;
        }
        if (dfd != s->dirfd)
            close(dfd);
        dfd = nfd;
        p = slash + 1;
    }

    *writable = true;
    fd = openat(dfd, comp, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0644);
    if (fd < 0 && !create && (errno == EACCES || errno == EROFS || errno == ETXTBSY)) {
        *writable = false;
        fd = openat(dfd, comp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0) {
        rc = open_failed(s, dfd, comp, errno, path, (int)strlen(path), "file", err);
        goto done;
    }
    /* A FIFO or device planted under the folder is no place for torrent data. */
    if (fstat(fd, &st) != 0) {
        rc = sys_err(err, errno, "cannot stat %s/%s", s->dir, path);
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = err_set(err, RV_EPATH, "%s/%s is not a regular file", s->dir, path);
        goto done;
    }
    *out = fd;
    fd = -1;
done:
    if (fd >= 0)
        close(fd);
    if (dfd != s->dirfd)
        close(dfd);
    return rc;
}

/* ---- the handle cache (callers hold s->lock) ---- */

static void lru_unlink(struct storage *s, size_t i)
{
    struct fent *e = &s->fents[i];
    if (e->lru_prev != NONE)
        s->fents[e->lru_prev].lru_next = e->lru_next;
    else
        s->lru_head = e->lru_next;
    if (e->lru_next != NONE)
        s->fents[e->lru_next].lru_prev = e->lru_prev;
    else
        s->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NONE;
}

static void lru_push(struct storage *s, size_t i)
{
    struct fent *e = &s->fents[i];
    e->lru_prev = NONE;
    e->lru_next = s->lru_head;
    if (s->lru_head != NONE)
        s->fents[s->lru_head].lru_prev = i;
    else
        s->lru_tail = i;
    s->lru_head = i;
}

static void lru_touch(struct storage *s, size_t i)
{
    if (s->lru_head == i)
        return;
    lru_unlink(s, i);
    lru_push(s, i);
}

static void cache_drop(struct storage *s, size_t i)
{
    struct fent *e = &s->fents[i];
    lru_unlink(s, i);
    close(e->fd);
    e->fd = -1;
    if (e->dfd >= 0)
        close(e->dfd);
    e->dfd = -1;
    e->sized = false;
    s->open_count--;
}

/* Closes least recently used handles nobody holds until the cache is within max_open.
 * close(2) of a regular file is quick, so it is done under the lock. */
static void cache_trim(struct storage *s)
{
    size_t i = s->lru_tail;
    while (s->open_count > s->max_open && i != NONE) {
        size_t prev = s->fents[i].lru_prev;
        if (s->fents[i].refs == 0)
            cache_drop(s, i);
        i = prev;
    }
}

/* Gives the file its final size once, so unwritten ranges read as zeros: reserved where the
 * file system can (fallocate keeps the bytes already there), sparse where it cannot or has no
 * room for it all. */
static int fh_size(struct storage *s, const struct fh *h, rv_error_t *err)
{
    const rv_file_t *f = &s->l->files[h->file];
    struct stat st;
    if (fstat(h->fd, &st) != 0)
        return sys_err(err, errno, "cannot stat %s/%s", s->dir, f->path);
    if ((uint64_t)st.st_size < f->length && fallocate(h->fd, 0, 0, (off_t)f->length) != 0 &&
        ftruncate(h->fd, (off_t)f->length) != 0)
        return sys_err(err, errno, "cannot set the size of %s/%s to %llu bytes", s->dir, f->path,
                       (unsigned long long)f->length);
    if (!h->own) {
        uv_mutex_lock(&s->lock);
        if (s->fents[h->file].fd == h->fd)
            s->fents[h->file].sized = true;
        uv_mutex_unlock(&s->lock);
    }
    return 0;
}

/* Borrows a handle on file for one read or write; release it with fh_release. write: create
 * the file (and its folders) if missing, open it for writing and give it its final size. */
static int fh_acquire(struct storage *s, size_t file, bool write, struct fh *h, rv_error_t *err)
{
    struct fent *e = &s->fents[file];
    int fd, extra = -1, rc;
    bool writable, sized;

    h->file = file;
    h->own = false;
    uv_mutex_lock(&s->lock);
    if (e->fd >= 0 && (e->writable || !write)) {
        e->refs++;
        lru_touch(s, file);
        h->fd = e->fd;
        sized = e->sized;
        uv_mutex_unlock(&s->lock);
        goto opened;
    }
    uv_mutex_unlock(&s->lock);

    /* Walking the path takes a few system calls: done unlocked so other workers go on. */
    rc = open_path(s, s->l->files[file].path, write, &fd, &writable, err);
    if (rc != 0)
        return rc;

    uv_mutex_lock(&s->lock);
    if (write)
        e->new_name = true; /* open_path may have made the file or its folders */
    if (e->fd >= 0 && (e->writable || !write)) {
        /* another worker opened it meanwhile: share theirs */
        extra = fd;
        e->refs++;
        lru_touch(s, file);
        h->fd = e->fd;
        sized = e->sized;
    } else if (e->fd >= 0 && e->refs > 0) {
        /* a read-only handle in use by a reader: this writer keeps its own */
        h->fd = fd;
        h->own = true;
        sized = false;
    } else {
        if (e->fd >= 0) {
            close(e->fd); /* read-only and unused: replaced by the writable one */
            if (e->dfd >= 0)
                close(e->dfd); /* (never open for a read-only handle) */
            e->dfd = -1;
        } else {
            lru_push(s, file);
            s->open_count++;
        }
        e->fd = fd;
        e->writable = writable;
        e->sized = false;
        e->refs = 1;
        lru_touch(s, file);
        h->fd = fd;
        sized = false;
        cache_trim(s);
    }
    uv_mutex_unlock(&s->lock);
    if (extra >= 0)
        close(extra);

opened:
    if (write && !sized && (rc = fh_size(s, h, err)) != 0) {
        /* the handle stays cached; only the reference goes */
        uv_mutex_lock(&s->lock);
        if (!h->own)
            e->refs--;
        cache_trim(s);
        uv_mutex_unlock(&s->lock);
        if (h->own)
            close(h->fd);
        return rc;
    }
    return 0;
}

static void fh_release(struct storage *s, const struct fh *h, bool wrote)
{
    struct fent *e = &s->fents[h->file];
    uv_mutex_lock(&s->lock);
    if (wrote)
        e->dirty = true; /* fsync at close looks up the file again if its handle is gone */
    if (!h->own) {
        e->refs--;
        cache_trim(s);
    }
    uv_mutex_unlock(&s->lock);
    if (h->own)
        close(h->fd);
}

/* ---- positional I/O ---- */

/* Writes all of p, through short writes and signals. Returns 0 or an errno. */
static int pwrite_all(rv_session_stats_t *st, int fd, const uint8_t *p, uint64_t len,
                      uint64_t off)
{
    while (len > 0) {
        size_t n = len > IO_MAX ? IO_MAX : (size_t)len;
        if (off > (uint64_t)INT64_MAX - n)
            return EFBIG;
        uint64_t t0 = stats_now_ns();
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        stats_add(&st->disk_ns, stats_now_ns() - t0);
        stats_add(&st->disk_writes, 1);
        if (w > 0)
            stats_add(&st->disk_write_bytes, (uint64_t)w);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (w == 0)
            return ENOSPC; /* no progress and no error: treat as a full disk, never spin */
        p += w;
        len -= (uint64_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Reads up to len bytes, through short reads and signals; *got < len means end of file. */
static int pread_all(rv_session_stats_t *st, int fd, uint8_t *p, uint64_t len, uint64_t off,
                     uint64_t *got)
{
    *got = 0;
    while (len > 0) {
        size_t n = len > IO_MAX ? IO_MAX : (size_t)len;
        if (off > (uint64_t)INT64_MAX - n)
            return EFBIG;
        uint64_t t0 = stats_now_ns();
        ssize_t r = pread(fd, p, n, (off_t)off);
        stats_add(&st->disk_ns, stats_now_ns() - t0);
        stats_add(&st->disk_reads, 1);
        if (r > 0)
            stats_add(&st->disk_read_bytes, (uint64_t)r);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (r == 0)
            break;
        p += r;
        len -= (uint64_t)r;
        off += (uint64_t)r;
        *got += (uint64_t)r;
    }
    return 0;
}

/* ---- direct writes ---- */

/* h's file reopened with O_DIRECT (through /proc/self/fd, so the very same file), kept with
 * the cached handle; -1 when this file system or this system refuses it: such a file is then
 * written through the cache only. The caller's reference on h keeps both handles open. */
static int fh_direct(struct storage *s, const struct fh *h)
{
    struct fent *e = &s->fents[h->file];
    if (h->own)
        return -1; /* a writer's private handle, closed on release: not worth a second one */
    uv_mutex_lock(&s->lock);
    int d = e->no_direct ? -1 : e->dfd;
    bool open_one = !e->no_direct && e->dfd < 0;
    uv_mutex_unlock(&s->lock);
    if (!open_one)
        return d;

    char path[48];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", h->fd);
    int nd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
    int extra = -1;
    uv_mutex_lock(&s->lock);
    if (nd < 0)
        e->no_direct = true; /* EINVAL: tmpfs and other file systems without O_DIRECT */
    else if (e->dfd >= 0)
        extra = nd; /* another worker opened one meanwhile */
    else
        e->dfd = nd;
    d = e->no_direct ? -1 : e->dfd;
    uv_mutex_unlock(&s->lock);
    if (extra >= 0)
        close(extra);
    return d;
}

static uint8_t *bounce_get(struct storage *s)
{
    void *p = NULL;
    uv_mutex_lock(&s->lock);
    if (s->nbounce > 0)
        p = s->bounce[--s->nbounce];
    uv_mutex_unlock(&s->lock);
    if (p == NULL && posix_memalign(&p, STORAGE_DIRECT_ALIGN, BOUNCE_BYTES) != 0)
        p = NULL;
    return p;
}

static void bounce_put(struct storage *s, uint8_t *p)
{
    uv_mutex_lock(&s->lock);
    if (s->nbounce < BOUNCE_MAX) {
        s->bounce[s->nbounce++] = p;
        p = NULL;
    }
    uv_mutex_unlock(&s->lock);
    free(p);
}

/* One O_DIRECT write, retried after a signal and counted. Returns 0 with *w the bytes written,
 * or an errno (DIRECT_REFUSED for EINVAL: this file system wants something else). */
static int pwritev_direct(struct storage *s, int dfd, const struct iovec *iov, int iovcnt,
                          uint64_t off, uint64_t *w)
{
    ssize_t n;
    do {
        uint64_t t0 = stats_now_ns();
        n = pwritev(dfd, iov, iovcnt, (off_t)off);
        stats_add(&s->stats->disk_ns, stats_now_ns() - t0);
        stats_add(&s->stats->disk_writes, 1);
        stats_add(&s->stats->disk_submits, 1);
    } while (n < 0 && errno == EINTR);
    *w = n > 0 ? (uint64_t)n : 0;
    if (n < 0)
        return errno == EINVAL ? DIRECT_REFUSED : errno;
    stats_add(&s->stats->disk_write_bytes, *w);
    stats_add(&s->stats->disk_direct_bytes, *w);
    return 0;
}

/* O_DIRECT write of [off, off+len), both multiples of STORAGE_DIRECT_ALIGN, from p (aligned
 * or not: an unaligned p goes through a bounce buffer, a copy far cheaper than the page
 * cache's).
 * Returns 0 or an errno; or, with the first *done bytes written and the caller to write the
 * rest through the cache, DIRECT_REFUSED (the kernel said EINVAL: this file system wants
 * something else) or DIRECT_SKIPPED (no memory for a bounce buffer, or a short write that left
 * the alignment). */
static int write_direct(struct storage *s, int dfd, const uint8_t *p, uint64_t len, uint64_t off,
                        uint64_t *done)
{
    uint8_t *bounce = NULL;
    int e = 0;
    *done = 0;
    if (((uintptr_t)p & (STORAGE_DIRECT_ALIGN - 1)) != 0 && (bounce = bounce_get(s)) == NULL)
        return DIRECT_SKIPPED;
    while (e == 0 && *done < len) {
        uint64_t n = len - *done;
        const uint8_t *src = p + *done;
        if (bounce != NULL) {
            n = n < BOUNCE_BYTES ? n : BOUNCE_BYTES;
            memcpy(bounce, src, (size_t)n);
            src = bounce;
        }
        struct iovec iov = {(void *)(uintptr_t)src, (size_t)(n < IO_MAX ? n : IO_MAX)};
        uint64_t w;
        e = pwritev_direct(s, dfd, &iov, 1, off + *done, &w);
        if (e == 0 && (w == 0 || (w & (STORAGE_DIRECT_ALIGN - 1)) != 0))
            e = DIRECT_SKIPPED;
        *done += w;
    }
    if (bounce != NULL)
        bounce_put(s, bounce);
    return e;
}

/* Part of a file run: the file's bytes [off, off+len) are at p. A run's chunks are
 * consecutive in the file (each starts where the one before ends). */
struct chunk {
    const uint8_t *p;
    uint64_t off, len;
};

/* Writes the run's bytes in [from, to) through the cache. */
static int write_cached_chunks(struct storage *s, int fd, const struct chunk *c, size_t n,
                               uint64_t from, uint64_t to)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t a = from > c[i].off ? from : c[i].off;
        uint64_t b = to < c[i].off + c[i].len ? to : c[i].off + c[i].len;
        if (a < b) {
            int e = pwrite_all(s->stats, fd, c[i].p + (a - c[i].off), b - a, a);
            if (e != 0)
                return e;
        }
    }
    return 0;
}

/* O_DIRECT write of the whole pages [a, b) of a run in one pwritev: each chunk's whole pages
 * straight from its buffer, each page two chunks share (the neighbouring pieces' ends) copied
 * into a bounce page. Returns like write_direct, or DIRECT_UNALIGNED before writing anything
 * when a chunk's pages are not page-aligned in memory (the caller then writes chunk by
 * chunk). */
static int write_direct_chunks(struct storage *s, int dfd, const struct chunk *c, size_t n,
                               uint64_t a, uint64_t b, uint64_t *done)
{
    struct iovec iov[2 * STORAGE_RUN_MAX] = {{0}};
    uint8_t *bounce = NULL;
    size_t nb = 0, i = 0;
    int iovcnt = 0, e = 0;
    *done = 0;
    for (uint64_t x = a; x < b;) {
        while (c[i].off + c[i].len <= x)
            i++;
        uint64_t end = c[i].off + c[i].len;
        uint64_t whole = end & ~(uint64_t)(STORAGE_DIRECT_ALIGN - 1);
        if (whole > b)
            whole = b;
        if (whole > x) { /* whole pages inside chunk i */
            const uint8_t *p = c[i].p + (x - c[i].off);
            if (((uintptr_t)p & (STORAGE_DIRECT_ALIGN - 1)) != 0) {
                e = DIRECT_UNALIGNED;
                break;
            }
            iov[iovcnt].iov_base = (void *)(uintptr_t)p;
            iov[iovcnt++].iov_len = (size_t)(whole - x);
            x = whole;
            continue;
        }
        /* the page at x ends past chunk i: gather it from the chunks it spans */
        if (bounce == NULL && (bounce = bounce_get(s)) == NULL) {
            e = DIRECT_SKIPPED;
            break;
        }
        uint8_t *pg = bounce + nb++ * STORAGE_DIRECT_ALIGN;
        for (size_t k = i; k < n && c[k].off < x + STORAGE_DIRECT_ALIGN; k++) {
            uint64_t from = x > c[k].off ? x : c[k].off;
            uint64_t to = c[k].off + c[k].len;
            if (to > x + STORAGE_DIRECT_ALIGN)
                to = x + STORAGE_DIRECT_ALIGN;
            memcpy(pg + (from - x), c[k].p + (from - c[k].off), (size_t)(to - from));
        }
        iov[iovcnt].iov_base = pg;
        iov[iovcnt++].iov_len = STORAGE_DIRECT_ALIGN;
        x += STORAGE_DIRECT_ALIGN;
    }
    /* n chunks give at most n runs of whole pages and n - 1 shared pages */
    if (e == 0)
        e = pwritev_direct(s, dfd, iov, iovcnt, a, done);
    if (e == 0 && *done != b - a)
        e = DIRECT_SKIPPED; /* short: the caller writes the rest through the cache */
    if (bounce != NULL)
        bounce_put(s, bounce);
    return e;
}

/* ---- direct writes submitted together (Linux AIO) ---- */

/* One direct write waiting for its job's io_submit: the chunk's whole pages [a, b), from memory
 * aligned for O_DIRECT, the file's handle held until the write is done. */
struct aio_slot {
    struct fh h;
    int dfd;
    struct chunk c;
    uint64_t a, b;
    uint32_t first; /* the job's chunk its run began with: where an error is reported from */
    int64_t res;    /* the kernel's answer: bytes written or -errno */
};

struct aio_batch {
    unsigned n;
    uint32_t first; /* do_chunks: the chunk the run being written began with */
    struct aio_slot slot[AIO_MAX];
};

/* Each worker's AIO context, made on its first batch and destroyed when the thread ends. */
static __thread aio_context_t aio_ctx;
static __thread int aio_state; /* 0: not tried; 1: ready; -1: the kernel refused */
static pthread_key_t aio_key;
static bool aio_key_ok;
static pthread_once_t aio_once = PTHREAD_ONCE_INIT;
static bool aio_off;

static void aio_thread_end(void *unused)
{
    (void)unused;
    if (aio_state == 1)
        (void)syscall(SYS_io_destroy, aio_ctx);
    aio_state = -1;
}

static void aio_key_make(void)
{
    aio_key_ok = pthread_key_create(&aio_key, aio_thread_end) == 0;
}

void storage_aio_enable(bool on)
{
    __atomic_store_n(&aio_off, !on, __ATOMIC_RELAXED);
}

static int aio_fake = STORAGE_AIO_REAL;

void storage_aio_fake(enum storage_aio_fake f)
{
    __atomic_store_n(&aio_fake, (int)f, __ATOMIC_RELAXED);
}

/* How much of a write of len bytes the kernel is given (storage_aio_fake): all of it, its
 * first page (the short answers: what follows is only written by the fallbacks), or nothing
 * (refused). */
static uint64_t aio_given(uint64_t len)
{
    int f = __atomic_load_n(&aio_fake, __ATOMIC_RELAXED);
    if (f == STORAGE_AIO_REAL)
        return len;
    if (f == STORAGE_AIO_REFUSED)
        return 0;
    return len < STORAGE_DIRECT_ALIGN ? len : STORAGE_DIRECT_ALIGN;
}

/* A write's result as storage_aio_fake says to take it. */
static int64_t aio_result(int64_t res)
{
    int f = __atomic_load_n(&aio_fake, __ATOMIC_RELAXED);
    if (res < 0 || f == STORAGE_AIO_REAL || f == STORAGE_AIO_SHORT_PAGE)
        return res;
    if (f == STORAGE_AIO_REFUSED)
        return -EINVAL;
    return res < 100 ? res : 100;
}

static bool aio_ready(void)
{
    if (__atomic_load_n(&aio_off, __ATOMIC_RELAXED))
        return false;
    if (aio_state == 0) {
        aio_state = -1;
        (void)pthread_once(&aio_once, aio_key_make);
        if (aio_key_ok && syscall(SYS_io_setup, AIO_MAX, &aio_ctx) == 0) {
            if (pthread_setspecific(aio_key, &aio_state) == 0)
                aio_state = 1;
            else
                (void)syscall(SYS_io_destroy, aio_ctx);
        }
    }
    return aio_state == 1;
}

/* Submits the batch's writes in one call and waits for all of them; what the kernel did not
 * take, refused (EINVAL: this file system wants something else) or wrote short is written as
 * write_chunks would have (the rest through the cache). Releases every slot's handle. Returns
 * 0, or the first error (RV_*, err says it) with *from the chunk its run began with. */
static int aio_finish(struct storage *s, rv_error_t *err, struct aio_batch *ab, uint32_t *from)
{
    struct iocb cb[AIO_MAX], *cbp[AIO_MAX];
    long sub = 0, got = 0;
    int rc = 0;
    if (ab->n == 0)
        return 0;
    memset(cb, 0, sizeof(cb));
    for (unsigned i = 0; i < ab->n; i++) {
        struct aio_slot *sl = &ab->slot[i];
        cb[i].aio_data = i;
        cb[i].aio_lio_opcode = IOCB_CMD_PWRITE;
        cb[i].aio_fildes = (uint32_t)sl->dfd;
        cb[i].aio_buf = (uint64_t)(uintptr_t)(sl->c.p + (sl->a - sl->c.off));
        cb[i].aio_nbytes = aio_given(sl->b - sl->a);
        cb[i].aio_offset = (int64_t)sl->a;
        cbp[i] = &cb[i];
        sl->res = -EAGAIN; /* not taken: written one by one below */
    }
    uint64_t t0 = stats_now_ns();
    do
        sub = syscall(SYS_io_submit, aio_ctx, (long)ab->n, cbp);
    while (sub < 0 && errno == EINTR);
    if (sub > 0)
        stats_add(&s->stats->disk_submits, 1);
    while (got < sub) {
        struct io_event ev[AIO_MAX];
        long k = syscall(SYS_io_getevents, aio_ctx, 1L, sub - got, ev, NULL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            /* Cannot happen with a valid context; should it, io_destroy waits for what is
             * in flight, and every write not heard of is done again below (same bytes). */
            (void)syscall(SYS_io_destroy, aio_ctx);
            aio_state = -1;
            break;
        }
        for (long j = 0; j < k; j++)
            ab->slot[ev[j].data].res = aio_result((int64_t)ev[j].res);
        got += k;
    }
    stats_add(&s->stats->disk_ns, stats_now_ns() - t0);
    __atomic_sub_fetch(&s->disk->running, 1, __ATOMIC_RELAXED); /* the job's count */
    for (unsigned i = 0; i < ab->n; i++) {
        struct aio_slot *sl = &ab->slot[i];
        uint64_t len = sl->b - sl->a, done = sl->res > 0 ? (uint64_t)sl->res : 0;
        int e = 0;
        if (sl->res >= 0) {
            stats_add(&s->stats->disk_writes, 1);
            stats_add(&s->stats->disk_write_bytes, done);
            stats_add(&s->stats->disk_direct_bytes, done);
        }
        if (sl->res == -EAGAIN ||
            (sl->res >= 0 && (done & (STORAGE_DIRECT_ALIGN - 1)) == 0 && done > 0 && done < len)) {
            /* not taken, or short on a page: the rest one write at a time */
            uint64_t more;
            e = write_direct(s, sl->dfd, sl->c.p + (sl->a + done - sl->c.off), len - done,
                             sl->a + done, &more);
            done += more;
        } else if (sl->res == -EINVAL) {
            e = DIRECT_REFUSED;
        } else if (sl->res < 0) {
            e = (int)-sl->res;
        } else if (done < len) {
            e = DIRECT_SKIPPED;
        }
        if (e == DIRECT_REFUSED && done == 0) {
            uv_mutex_lock(&s->lock);
            s->fents[sl->h.file].no_direct = true;
            uv_mutex_unlock(&s->lock);
        }
        if (e == DIRECT_REFUSED || e == DIRECT_SKIPPED)
            e = write_cached_chunks(s, sl->h.fd, &sl->c, 1, sl->a + done, sl->b);
        fh_release(s, &sl->h, true);
        if (e != 0 && (rc == 0 || sl->first < *from)) {
            if (rc == 0)
                rc = sys_err(err, e, "cannot write %s/%s", s->dir, s->l->files[sl->h.file].path);
            *from = sl->first;
        }
    }
    ab->n = 0;
    return rc;
}

/* Writes a run of chunks to one file. With direct writes, the whole aligned blocks in its
 * middle bypass the page cache, in one write: no copy into it, no page allocation, nothing
 * left dirty for writeback or for the fsync at the end; the partial blocks at either end
 * (shared with the neighbouring piece or past the file's last full block) go through the
 * cache. */
static int write_chunks(struct storage *s, const struct fh *h, const struct chunk *c, size_t n,
                        bool hurry, struct aio_batch *ab)
{
    uint64_t off = c[0].off, end = c[n - 1].off + c[n - 1].len;
    uint64_t a = (off + STORAGE_DIRECT_ALIGN - 1) & ~(uint64_t)(STORAGE_DIRECT_ALIGN - 1);
    uint64_t b = end & ~(uint64_t)(STORAGE_DIRECT_ALIGN - 1);
    int dfd, e;
    if (!s->direct || b <= a || b - a < STORAGE_DIRECT_MIN || (n > 1 && b - a > IO_MAX) ||
        (dfd = fh_direct(s, h)) < 0)
        return write_cached_chunks(s, h->fd, c, n, off, end);
    /* the direct writes a job gathers count as one running, its worker's, from the first */
    bool joined = ab != NULL && ab->n > 0;
    unsigned running = joined ? __atomic_load_n(&s->disk->running, __ATOMIC_RELAXED)
                              : __atomic_add_fetch(&s->disk->running, 1, __ATOMIC_RELAXED);
    if ((hurry && running > 1) ||
        (running > s->direct_max &&
         __atomic_load_n(&s->disk->queued, __ATOMIC_RELAXED) >= STORAGE_WRITES_QUEUED)) {
        /* the disk is behind: this one goes to the page cache and returns at once */
        if (!joined)
            __atomic_sub_fetch(&s->disk->running, 1, __ATOMIC_RELAXED);
        stats_add(&s->stats->disk_overflow_bytes, b - a);
        return write_cached_chunks(s, h->fd, c, n, off, end);
    }
    stats_peak_atomic(&s->stats->disk_direct_max, running);
    uint64_t done;
    if (ab != NULL && n == 1 && ab->n < AIO_MAX && b - a <= IO_MAX &&
        ((uintptr_t)(c[0].p + (a - off)) & (STORAGE_DIRECT_ALIGN - 1)) == 0 && aio_ready()) {
        /* with the job's other direct writes, at its end (aio_finish keeps the handle, and
         * the job counted as running, until then); the partial pages now */
        ab->slot[ab->n++] =
            (struct aio_slot){.h = *h, .dfd = dfd, .c = c[0], .a = a, .b = b, .first = ab->first};
        e = 0;
        goto edges;
    }
    if (n == 1)
        e = write_direct(s, dfd, c[0].p + (a - off), b - a, a, &done);
    else
        e = write_direct_chunks(s, dfd, c, n, a, b, &done);
    if (!joined)
        __atomic_sub_fetch(&s->disk->running, 1, __ATOMIC_RELAXED);
    if (e == DIRECT_UNALIGNED) {
        for (size_t i = 0; i < n; i++)
            if ((e = write_chunks(s, h, &c[i], 1, hurry, NULL)) != 0)
                return e;
        return 0;
    }
    if (e == DIRECT_REFUSED && done == 0) {
        /* refused outright (a file system that opens with O_DIRECT and then wants a larger
         * alignment): this file is written through the cache from now on */
        uv_mutex_lock(&s->lock);
        s->fents[h->file].no_direct = true;
        uv_mutex_unlock(&s->lock);
    }
    if (e == DIRECT_REFUSED || e == DIRECT_SKIPPED)
        e = write_cached_chunks(s, h->fd, c, n, a + done, b);
edges:
    if (e == 0 && off < a) {
        stats_add(&s->stats->disk_edge_writes, 1);
        e = write_cached_chunks(s, h->fd, c, n, off, a);
    }
    if (e == 0 && b < end) {
        stats_add(&s->stats->disk_edge_writes, 1);
        e = write_cached_chunks(s, h->fd, c, n, b, end);
    }
    return e;
}

/* Where a span starts, relative to start in piece space. */
static uint64_t span_pos(const struct storage *s, const struct span *sp, uint64_t start)
{
    return s->l->files[sp->file].offset + sp->file_offset - start;
}

static uint64_t piece_start(const struct storage *s, uint32_t piece)
{
    return (uint64_t)piece * s->l->piece_length;
}

/* ---- the work (on a worker thread) ---- */

/* Writes c[0..n), a run in one file. */
static int write_file_run(struct storage *s, struct req *r, size_t file, const struct chunk *c,
                          size_t n)
{
    if (n == 0)
        return 0;
    struct fh h;
    int rc = fh_acquire(s, file, true, &h, &r->err);
    if (rc != 0)
        return rc;
    unsigned held = r->batch != NULL ? r->batch->n : 0;
    int e = write_chunks(s, &h, c, n, r->hurry, r->batch);
    if (r->batch == NULL || r->batch->n == held)
        fh_release(s, &h, true); /* else aio_finish releases it */
    if (e != 0)
        return sys_err(&r->err, e, "cannot write %s/%s", s->dir, s->l->files[file].path);
    return 0;
}

/* Chunks that follow each other in one file, gathered to go out in one write_chunks. */
struct file_run {
    struct chunk *c;
    size_t n, cap, file;
    unsigned begun; /* runs begun so far */
};

/* Adds span sp, whose bytes are at p, to the run: first writes out what the run holds when sp
 * is in another file, does not follow it, or the run is full. Padding (BEP 47: never written)
 * and files not selected (a boundary piece writes only the selected part) are skipped. */
static int run_add(struct storage *s, struct req *r, struct file_run *fr, const struct span *sp,
                   const uint8_t *p)
{
    if (s->l->files[sp->file].attr & RV_FILE_PAD)
        return 0;
    if (s->file_sel != NULL && !s->file_sel[sp->file])
        return 0;
    const struct chunk *last = fr->n > 0 ? &fr->c[fr->n - 1] : NULL;
    if (last != NULL &&
        (sp->file != fr->file || sp->file_offset != last->off + last->len || fr->n == fr->cap)) {
        int rc = write_file_run(s, r, fr->file, fr->c, fr->n);
        if (rc != 0)
            return rc;
        fr->n = 0;
    }
    if (fr->n == 0)
        fr->begun++;
    fr->file = sp->file;
    fr->c[fr->n++] = (struct chunk){.p = p, .off = sp->file_offset, .len = sp->length};
    return 0;
}

/* Writes the verified pieces first..first+n-1 (piece first+k at data[k]): the parts of
 * consecutive pieces that follow each other in a file go in one write_chunks. */
static int write_pieces(struct storage *s, struct req *r, uint32_t first, uint32_t n,
                        const uint8_t *const *data)
{
    struct chunk c[STORAGE_RUN_MAX];
    struct file_run fr = {.c = c, .cap = STORAGE_RUN_MAX};
    int rc = 0;
    for (uint32_t k = 0; k < n && rc == 0; k++) {
        uint64_t start = piece_start(s, first + k);
        struct span_iter it;
        struct span sp;
        layout_piece_begin(s->l, first + k, &it);
        while (rc == 0 && layout_span_next(&it, &sp))
            rc = run_add(s, r, &fr, &sp, data[k] + span_pos(s, &sp, start));
    }
    if (rc == 0)
        rc = write_file_run(s, r, fr.file, c, fr.n);
    return rc;
}

/* The request's pieces hashed into md: its full-length pieces side by side through sha1x's
 * lanes when there are at least sha1x_min_messages() of them (where that gains on this CPU),
 * the rest, and every piece where the CPU has neither AVX-512 nor SHA-NI, one by one. Only a run's
 * last piece can be short (the torrent's last). Returns the bytes hashed in lanes. */
static uint64_t hash_run(struct storage *s, const struct req *r, uint8_t md[][RV_SHA1_LEN])
{
    uint32_t full = r->count, i = 0;
    unsigned min = sha1x_min_messages();
    if (full > 0 && layout_piece_size(s->l, r->piece + full - 1) != s->l->piece_length)
        full--;
    if (min > 0 && full >= min) {
        const uint8_t *p[SHA1X_LANES];
        uint8_t out[SHA1X_LANES][RV_SHA1_LEN];
        struct sha1x x;
        for (uint32_t k = 0; k < SHA1X_LANES; k++)
            p[k] = r->run[k < full ? k : 0]; /* lanes past full hash piece 0 again, unused */
        sha1x_init(&x, full);
        sha1x_final(&x, p, s->l->piece_length, out);
        memcpy(md, out, (size_t)full * RV_SHA1_LEN);
        i = full;
    }
    uint64_t lanes = (uint64_t)i * s->l->piece_length;
    for (; i < r->count; i++)
        sha1(r->run[i], layout_piece_size(s->l, r->piece + i), md[i]);
    return lanes;
}

/* Hashes each piece of the request; writes each stretch of consecutive pieces that match
 * together. A write error stops there: it and every later good piece report it. */
static void do_write(struct storage *s, struct req *r)
{
    uint8_t md[STORAGE_RUN_MAX][RV_SHA1_LEN];
    uint64_t t0 = stats_now_ns(), bytes = 0;
    stats_add(&s->stats->hash_lane_bytes, hash_run(s, r, md));
    stats_add(&s->stats->hash_ns, stats_now_ns() - t0);
    for (uint32_t i = 0; i < r->count; i++) {
        uint32_t piece = r->piece + i;
        bytes += layout_piece_size(s->l, piece);
        bool ok =
            memcmp(md[i], s->ti->piece_hashes + (size_t)piece * RV_SHA1_LEN, RV_SHA1_LEN) == 0;
        r->run_rc[i] = ok ? 0 : RV_EHASH;
    }
    stats_add(&s->stats->hash_bytes, bytes);
    for (uint32_t i = 0; i < r->count;) {
        uint32_t j = i;
        while (j < r->count && r->run_rc[j] == 0)
            j++;
        int rc = j > i ? write_pieces(s, r, r->piece + i, j - i, &r->run[i]) : 0;
        if (rc != 0) {
            for (uint32_t k = i; k < r->count; k++)
                if (r->run_rc[k] == 0)
                    r->run_rc[k] = rc;
            return;
        }
        i = j + 1;
    }
}

/* Bytes [begin, begin + len) of piece into out: padding and bytes in no file are zeros. A file
 * missing or shorter than the torrent says is RV_EHASH when checking (the piece is not there),
 * RV_EIO when serving (someone removed or truncated verified data). */
static int read_range(struct storage *s, uint32_t piece, uint64_t begin, size_t len, uint8_t *out,
                      bool checking, rv_error_t *err)
{
    uint64_t start = piece_start(s, piece) + begin, at = 0;
    struct span_iter it;
    struct span sp;

    layout_span_begin(s->l, start, len, &it);
    while (layout_span_next(&it, &sp)) {
        const rv_file_t *f = &s->l->files[sp.file];
        uint64_t pos = span_pos(s, &sp, start);
        memset(out + at, 0, (size_t)(pos - at));
        at = pos + sp.length;
        if (f->attr & RV_FILE_PAD) {
            memset(out + pos, 0, (size_t)sp.length);
            continue;
        }
        struct fh h;
        int rc = fh_acquire(s, sp.file, false, &h, err);
        if (rc == RV_EIO && err->sys_errno == ENOENT && checking)
            return err_set(err, RV_EHASH, "piece %u: %s/%s is missing", piece, s->dir, f->path);
        if (rc != 0)
            return rc;
        uint64_t got;
        int e = pread_all(s->stats, h.fd, out + pos, sp.length, sp.file_offset, &got);
        fh_release(s, &h, false);
        if (e != 0)
            return sys_err(err, e, "cannot read %s/%s", s->dir, f->path);
        if (got < sp.length && checking)
            return err_set(err, RV_EHASH, "piece %u: %s/%s is shorter than the torrent says", piece,
                           s->dir, f->path);
        /* Seeding reads verified data; a short file means someone truncated it. */
        if (got < sp.length)
            return err_set(err, RV_EIO,
                           "cannot read %s/%s: the file is shorter than the torrent says", s->dir,
                           f->path);
    }
    memset(out + at, 0, (size_t)(len - at));
    return 0;
}

/* Reads piece from disk and checks its hash, CHECK_CHUNK bytes at a time: 0, RV_EHASH (no
 * match, or a file missing or short), or the read error (err says it). */
static int check_piece(struct storage *s, uint32_t piece, rv_error_t *err)
{
    uint32_t size = layout_piece_size(s->l, piece);
    size_t cap = size < CHECK_CHUNK ? size : CHECK_CHUNK;
    uint8_t md[RV_SHA1_LEN];
    struct sha1_ctx c;
    int rc = 0;

    uint8_t *buf = malloc(cap);
    if (buf == NULL)
        return err_set(err, RV_ENOMEM, "out of memory checking piece %u", piece);
    if (sha1_init(&c) != 0) {
        free(buf);
        return err_set(err, RV_ENOMEM, "out of memory checking piece %u", piece);
    }
    for (uint32_t off = 0; off < size && rc == 0; off += (uint32_t)cap) {
        size_t n = size - off < cap ? size - off : cap;
        rc = read_range(s, piece, off, n, buf, true, err);
        if (rc == 0) {
            uint64_t t0 = stats_now_ns();
            sha1_update(&c, buf, n);
            stats_add(&s->stats->hash_ns, stats_now_ns() - t0);
            stats_add(&s->stats->hash_bytes, n);
        }
    }
    sha1_final(&c, md); /* also on failure: it frees the context */
    free(buf);
    if (rc != 0)
        return rc;
    if (memcmp(md, s->ti->piece_hashes + (size_t)piece * RV_SHA1_LEN, RV_SHA1_LEN) != 0)
        return err_set(err, RV_EHASH, "piece %u on disk does not match its SHA-1 hash", piece);
    return 0;
}

static int do_read(struct storage *s, struct req *r)
{
    return read_range(s, r->piece, r->begin, r->len, r->out, false, &r->err);
}

struct check_read {
    struct storage *s;
    struct req *r;
    int rc;           /* the read error that stopped the run */
    uint64_t read_ns; /* time in read_range, kept out of the hashing time */
};

/* sha1x_read_fn for do_check_run: piece r->piece + k's bytes [off, off + len). */
static int check_read(void *ud, size_t k, uint64_t off, size_t len, uint8_t *dst)
{
    struct check_read *cr = ud;
    uint64_t t0 = stats_now_ns();
    int rc = read_range(cr->s, cr->r->piece + (uint32_t)k, off, len, dst, true, &cr->r->err);
    cr->read_ns += stats_now_ns() - t0;
    if (rc == 0)
        return 0;
    if (rc == RV_EHASH)
        return 1; /* this piece is not there; the others go on */
    cr->rc = rc;
    return -1;
}

/* Checks pieces r->piece..r->piece+count-1: the full-length ones side by side through sha1x's
 * lanes when there are at least sha1x_min_messages() of them (each read
 * CHECK_LANE bytes at a time), the rest one by one. run_rc[i]: 0, RV_EHASH, or the read error
 * that stopped the run (r->err says it), which every piece not yet checked reports too. */
static void do_check_run(struct storage *s, struct req *r)
{
    uint32_t full = r->count, i = 0;
    if (layout_piece_size(s->l, r->piece + full - 1) != s->l->piece_length)
        full--;
    uint8_t *buf = NULL;
    unsigned min = sha1x_min_messages();
    if (min > 0 && full >= min)
        buf = malloc(SHA1X_LANES * CHECK_LANE);
    if (buf != NULL) {
        struct check_read cr = {s, r, 0, 0};
        bool live[SHA1X_LANES];
        uint8_t md[SHA1X_LANES][RV_SHA1_LEN];
        uint64_t t0 = stats_now_ns();
        int rc = sha1x_digest_chunked(full, s->l->piece_length, CHECK_LANE, buf, check_read, &cr,
                                      live, md);
        stats_add(&s->stats->hash_ns, stats_now_ns() - t0 - cr.read_ns);
        free(buf);
        if (rc != 0) {
            for (uint32_t k = 0; k < r->count; k++)
                r->run_rc[k] = cr.rc;
            return;
        }
        for (uint32_t k = 0; k < full; k++) {
            const uint8_t *want = s->ti->piece_hashes + (size_t)(r->piece + k) * RV_SHA1_LEN;
            r->run_rc[k] = live[k] && memcmp(md[k], want, RV_SHA1_LEN) == 0 ? 0 : RV_EHASH;
            if (live[k]) {
                stats_add(&s->stats->hash_bytes, s->l->piece_length);
                stats_add(&s->stats->hash_lane_bytes, s->l->piece_length);
            }
        }
        i = full;
    }
    for (; i < r->count; i++) {
        int rc = check_piece(s, r->piece + i, &r->err);
        r->run_rc[i] = rc;
        if (rc != 0 && rc != RV_EHASH) {
            while (++i < r->count)
                r->run_rc[i] = rc;
        }
    }
}

/* fsyncs every folder from the download folder down to the one holding path. */
static int sync_folders(struct storage *s, const char *path, rv_error_t *err)
{
    char comp[NAME_MAX + 1];
    int dfd = s->dirfd, rc = 0;
    const char *p = path;
    for (;;) {
        if (fsync(dfd) != 0) {
            rc = sys_err(err, errno, "cannot sync a folder of %s/%s", s->dir, path);
            break;
        }
        const char *slash = strchr(p, '/');
        if (slash == NULL || (size_t)(slash - p) > NAME_MAX)
            break;
        memcpy(comp, p, (size_t)(slash - p));
        comp[slash - p] = '\0';
        int nfd = openat(dfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (nfd < 0) {
            rc = sys_err(err, errno, "cannot open a folder of %s/%s", s->dir, path);
            break;
        }
        if (dfd != s->dirfd)
            close(dfd);
        dfd = nfd;
        p = slash + 1;
    }
    if (dfd != s->dirfd)
        close(dfd);
    return rc;
}

/* Takes the dirty and new-name marks under the lock, then fsyncs those files and folders
 * unlocked. A write during the sync marks its file dirty again, for the next sync. On
 * failure the marks not yet honoured are put back, so nothing is ever lost from a sync. */
static int do_sync(struct storage *s, struct req *r)
{
    size_t n = s->l->file_count;
    uint8_t *marks = calloc(n + 1, 1); /* bit 0: dirty, bit 1: new name */
    if (marks == NULL)
        return err_set(&r->err, RV_ENOMEM, "out of memory syncing");
    uv_mutex_lock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        marks[i] = (uint8_t)((s->fents[i].dirty ? 1 : 0) | (s->fents[i].new_name ? 2 : 0));
        s->fents[i].dirty = s->fents[i].new_name = false;
    }
    uv_mutex_unlock(&s->lock);

    int rc = 0;
    size_t i = 0;
    for (; i < n && rc == 0; i++) {
        if (marks[i] & 1) {
            struct fh h;
            rc = fh_acquire(s, i, false, &h, &r->err);
            if (rc == 0) {
                uint64_t t0 = stats_now_ns();
                int e = fsync(h.fd);
                stats_add(&s->stats->disk_ns, stats_now_ns() - t0);
                stats_add(&s->stats->disk_syncs, 1);
                if (e != 0)
                    rc = sys_err(&r->err, errno, "cannot sync %s/%s", s->dir, s->l->files[i].path);
                fh_release(s, &h, false);
            }
            if (rc == 0)
                marks[i] &= (uint8_t)~1u;
        }
        if (rc == 0 && (marks[i] & 2) && (rc = sync_folders(s, s->l->files[i].path, &r->err)) == 0)
            marks[i] &= (uint8_t)~2u;
    }
    if (rc != 0) {
        uv_mutex_lock(&s->lock);
        for (size_t k = 0; k < n; k++) {
            if (marks[k] & 1)
                s->fents[k].dirty = true;
            if (marks[k] & 2)
                s->fents[k].new_name = true;
        }
        uv_mutex_unlock(&s->lock);
    }
    free(marks);
    return rc;
}

/* storage_write_chunks on a worker: chunks that follow each other in a file go in one write,
 * as write_pieces does for pieces. A write error stops the job: the chunks in that write and
 * every later one report it. */
static void do_chunks(struct storage *s, struct req *r)
{
    struct chunk c[STORAGE_CHUNKS_MAX * 2];
    struct file_run fr = {.c = c, .cap = sizeof(c) / sizeof(c[0])};
    struct aio_batch ab = {0};
    uint32_t first = 0; /* the first chunk with bytes in c[] */
    int rc = 0;
    r->batch = &ab;
    for (uint32_t i = 0; i < r->count && rc == 0; i++) {
        const struct storage_chunk *ch = &r->chunks[i];
        uint64_t start = piece_start(s, ch->piece) + ch->off;
        struct span_iter it;
        struct span sp;
        layout_span_begin(s->l, start, ch->len, &it);
        while (rc == 0 && layout_span_next(&it, &sp)) {
            unsigned begun = fr.begun;
            ab.first = first;
            rc = run_add(s, r, &fr, &sp, ch->data + span_pos(s, &sp, start));
            if (fr.begun != begun)
                first = i;
        }
    }
    ab.first = first;
    if (rc == 0)
        rc = write_file_run(s, r, fr.file, c, fr.n);
    /* the direct writes gathered on the way, all at once; an error there counts from the
     * chunk its run began with, as one here does */
    uint32_t from = first;
    rv_error_t aerr;
    int arc = aio_finish(s, &aerr, &ab, &from);
    r->batch = NULL;
    if (arc != 0 && (rc == 0 || from < first)) {
        rc = arc;
        first = from;
        r->err = aerr;
    }
    for (uint32_t i = 0; i < r->count; i++) {
        r->run_rc[i] = rc != 0 && i >= first ? rc : 0;
        r->release(r->rud, r->chunks[i].data);
        r->chunks[i].data = NULL;
    }
}

/* storage_hash_chunks on a worker: the full chunks side by side in sha1x's lanes when there
 * are enough of them to gain, the others one at a time; the hash of each piece that ends here
 * finished and compared. */
static void do_steps(struct storage *s, struct req *r)
{
    uint64_t t0 = stats_now_ns(), bytes = 0, lane = 0;
    unsigned min = sha1x_min_messages(), n = 0;
    struct sha1_mid *mid[SHA1X_LANES];
    const uint8_t *data[SHA1X_LANES];
    bool in_lanes[STORAGE_STEPS_MAX] = {false};
    for (unsigned i = 0; i < r->nsteps; i++)
        if (r->steps[i].len == r->chunk && r->chunk % 64 == 0)
            n++;
    if (min > 0 && n >= min) {
        n = 0;
        for (unsigned i = 0; i < r->nsteps; i++) {
            if (r->steps[i].len == r->chunk && r->chunk % 64 == 0) {
                mid[n] = r->steps[i].mid;
                data[n++] = r->steps[i].data;
                in_lanes[i] = true;
            }
        }
        sha1x_advance(mid, data, n, r->chunk);
        lane = (uint64_t)n * r->chunk;
    }
    for (unsigned i = 0; i < r->nsteps; i++) {
        struct storage_step *st = &r->steps[i];
        bool end = st->off + st->len == layout_piece_size(s->l, st->piece);
        uint8_t md[RV_SHA1_LEN];
        bytes += st->len;
        st->verdict = 1;
        if (!in_lanes[i] && !end)
            sha1_mid_update(st->mid, st->data, st->len);
        if (end) {
            if (in_lanes[i])
                sha1_mid_final(st->mid, NULL, 0, md);
            else
                sha1_mid_final(st->mid, st->data, st->len, md);
            st->verdict =
                memcmp(md, s->ti->piece_hashes + (size_t)st->piece * RV_SHA1_LEN, RV_SHA1_LEN) == 0
                    ? 0
                    : RV_EHASH;
        }
    }
    stats_add(&s->stats->hash_ns, stats_now_ns() - t0);
    stats_add(&s->stats->hash_bytes, bytes);
    stats_add(&s->stats->hash_lane_bytes, lane);
}

static void run_req(uv_work_t *w)
{
    struct req *r = w->data;
    if (is_write(r->op))
        __atomic_sub_fetch(&r->s->disk->queued, 1, __ATOMIC_RELAXED);
    switch (r->op) {
    case OP_WRITE:
        do_write(r->s, r);
        break;
    case OP_CHECK:
        if (r->count > 0)
            do_check_run(r->s, r);
        else
            r->rc = check_piece(r->s, r->piece, &r->err);
        break;
    case OP_READ:
        r->rc = do_read(r->s, r);
        break;
    case OP_SYNC:
        r->rc = do_sync(r->s, r);
        break;
    case OP_STEPS:
        do_steps(r->s, r);
        break;
    case OP_CHUNK:
        do_chunks(r->s, r);
        break;
    }
}

/* ---- the loop side ---- */

static void final_run(uv_work_t *w);
static void final_done(uv_work_t *w, int status);

static void free_storage(struct storage *s)
{
    while (s->free_reqs != NULL) {
        struct req *r = s->free_reqs;
        s->free_reqs = r->next;
        free(r);
    }
    while (s->nbounce > 0)
        free(s->bounce[--s->nbounce]);
    uv_mutex_destroy(&s->lock);
    free(s->fents);
    free(s->dir);
    free(s);
}

/* Once closing and nothing is pending: fsync and close on a worker (fsync can take seconds). */
static void maybe_finish(struct storage *s)
{
    if (!s->closing || s->pending > 0 || s->final_queued)
        return;
    s->final_queued = true;
    s->final_work.data = s;
    /* uv_queue_work fails only without a work callback */
    (void)uv_queue_work(s->loop, &s->final_work, final_run, final_done);
}

static void after_req(uv_work_t *w, int status)
{
    struct req *r = w->data;
    struct storage *s = r->s;

    if (status == UV_ECANCELED && is_write(r->op))
        __atomic_sub_fetch(&s->disk->queued, 1, __ATOMIC_RELAXED); /* never started */
    s->pending--;
    s->stats->disk_queue--;
    s->stats->disk_jobs++;
    if (r->op == OP_SYNC)
        s->syncing = false;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        s->inflight = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;

    /* Closing: the owner may already be gone, so its callback is not called. */
    for (uint32_t i = 0; r->op == OP_CHUNK && i < r->count; i++)
        if (r->chunks[i].data != NULL) /* canceled before it ran */
            r->release(r->rud, r->chunks[i].data);
    if (r->op == OP_STEPS) {
        if (s->closing || status == UV_ECANCELED) {
            for (unsigned i = 0; i < r->nsteps; i++) /* steps_cb will not see them */
                r->release(r->rud, r->steps[i].data);
        } else {
            r->steps_cb(r->ud, r->steps, r->nsteps);
        }
    } else if (r->op == OP_WRITE || r->op == OP_CHUNK || (r->op == OP_CHECK && r->count > 0)) {
        /* one callback per piece (chunk), in order; one of them may close the storage */
        for (uint32_t i = 0; i < r->count && !s->closing && r->cb != NULL; i++) {
            rv_error_t e;
            const rv_error_t *err = &r->err;
            int rc = r->run_rc[i];
            uint32_t piece = r->op == OP_CHUNK ? r->chunks[i].piece : r->piece + i;
            err_clear(&e);
            if (status == UV_ECANCELED)
                rc = err_set(&e, RV_ECANCELED, "piece %u: canceled", piece);
            else if (rc == RV_EHASH)
                err_set(&e, rc, "piece %u does not match its SHA-1 hash", piece);
            if (rc == 0 || status == UV_ECANCELED || rc == RV_EHASH)
                err = &e;
            r->cb(r->ud, piece, rc, err);
        }
    } else if (!s->closing && r->cb != NULL) {
        if (status == UV_ECANCELED && r->rc == 0)
            r->rc = err_set(&r->err, RV_ECANCELED, "piece %u: canceled", r->piece);
        r->cb(r->ud, r->piece, r->rc, &r->err);
    }
    r->prev = NULL;
    r->next = s->free_reqs;
    s->free_reqs = r;
    maybe_finish(s); /* also when cb itself called storage_close */
}

/* A request, filled in; queued by queue_req (which takes it back on failure). */
static int new_req(struct storage *s, enum op op, uint32_t piece, uint32_t begin, uint32_t len,
                   const uint8_t *const *run, uint32_t count, uint8_t *out, storage_cb cb, void *ud,
                   struct req **out_r)
{
    if (s->closing)
        return RV_ECANCELED;
    struct req *r = s->free_reqs;
    if (r != NULL)
        s->free_reqs = r->next;
    else if ((r = malloc(sizeof(*r))) == NULL)
        return RV_ENOMEM;
    r->s = s;
    r->op = op;
    r->piece = piece;
    r->begin = begin;
    r->len = len;
    r->count = count;
    for (uint32_t i = 0; i < count; i++) {
        r->run[i] = run != NULL ? run[i] : NULL;
        r->run_rc[i] = 0;
    }
    r->out = out;
    r->cb = cb;
    r->ud = ud;
    r->rc = 0;
    r->steps = NULL;
    r->nsteps = 0;
    r->chunk = 0;
    r->steps_cb = NULL;
    r->release = NULL;
    r->hurry = false;
    r->batch = NULL;
    r->rud = NULL;
    err_clear(&r->err);
    r->work.data = r;
    *out_r = r;
    return 0;
}

static int queue_req(struct storage *s, struct req *r)
{
    if (uv_queue_work(s->loop, &r->work, run_req, after_req) != 0) {
        r->next = s->free_reqs;
        s->free_reqs = r;
        return RV_EINVAL;
    }
    if (is_write(r->op))
        __atomic_add_fetch(&s->disk->queued, 1, __ATOMIC_RELAXED);
    r->prev = NULL;
    r->next = s->inflight;
    if (s->inflight != NULL)
        s->inflight->prev = r;
    s->inflight = r;
    s->pending++;
    s->stats->disk_queue++;
    stats_peak(&s->stats->disk_queue_max, s->stats->disk_queue);
    return 0;
}

static int submit(struct storage *s, enum op op, uint32_t piece, uint32_t begin, uint32_t len,
                  const uint8_t *const *run, uint32_t count, uint8_t *out, storage_cb cb, void *ud)
{
    struct req *r;
    int rc = new_req(s, op, piece, begin, len, run, count, out, cb, ud, &r);
    return rc != 0 ? rc : queue_req(s, r);
}

int storage_hash_chunks(struct storage *s, struct storage_step *steps, unsigned n, uint32_t chunk,
                        storage_release_fn release, void *rud, storage_steps_cb cb, void *ud)
{
    if (s->ti->piece_hashes == NULL || steps == NULL || n == 0 || n > STORAGE_STEPS_MAX ||
        chunk == 0 || release == NULL || cb == NULL)
        return RV_EINVAL;
    for (unsigned i = 0; i < n; i++) {
        const struct storage_step *st = &steps[i];
        if (st->piece >= s->l->piece_count || st->data == NULL || st->mid == NULL || st->len == 0 ||
            st->len > chunk || st->len > layout_piece_size(s->l, st->piece) ||
            st->off > layout_piece_size(s->l, st->piece) - st->len || st->mid->bytes != st->off ||
            (st->len % 64 != 0 && st->off + st->len != layout_piece_size(s->l, st->piece)))
            return RV_EINVAL;
    }
    struct req *r;
    int rc = new_req(s, OP_STEPS, steps[0].piece, 0, 0, NULL, 0, NULL, NULL, ud, &r);
    if (rc != 0)
        return rc;
    r->steps = steps;
    r->nsteps = n;
    r->chunk = chunk;
    r->steps_cb = cb;
    r->release = release;
    r->rud = rud;
    return queue_req(s, r);
}

int storage_write_chunks(struct storage *s, const struct storage_chunk *c, unsigned n, bool hurry,
                         storage_release_fn release, void *rud, storage_cb cb, void *ud)
{
    if (c == NULL || n == 0 || n > STORAGE_CHUNKS_MAX || release == NULL)
        return RV_EINVAL;
    for (unsigned i = 0; i < n; i++)
        if (c[i].piece >= s->l->piece_count || c[i].data == NULL || c[i].len == 0 ||
            c[i].len > layout_piece_size(s->l, c[i].piece) ||
            c[i].off > layout_piece_size(s->l, c[i].piece) - c[i].len)
            return RV_EINVAL;
    struct req *r;
    int rc = new_req(s, OP_CHUNK, c[0].piece, 0, 0, NULL, n, NULL, cb, ud, &r);
    if (rc != 0)
        return rc;
    memcpy(r->chunks, c, n * sizeof(*c));
    r->hurry = hurry;
    r->release = release;
    r->rud = rud;
    return queue_req(s, r);
}

int storage_verify_and_write(struct storage *s, uint32_t piece, const uint8_t *data, uint32_t len,
                             storage_cb cb, void *ud)
{
    if (piece >= s->l->piece_count || len != layout_piece_size(s->l, piece))
        return RV_EINVAL;
    return storage_verify_and_write_run(s, piece, 1, &data, cb, ud);
}

int storage_verify_and_write_run(struct storage *s, uint32_t first, uint32_t n,
                                 const uint8_t *const *data, storage_cb cb, void *ud)
{
    if (s->ti->piece_hashes == NULL || n == 0 || n > STORAGE_RUN_MAX ||
        first >= s->l->piece_count || n > s->l->piece_count - first || data == NULL)
        return RV_EINVAL;
    for (uint32_t i = 0; i < n; i++)
        if (data[i] == NULL)
            return RV_EINVAL;
    return submit(s, OP_WRITE, first, 0, 0, data, n, NULL, cb, ud);
}

int storage_check(struct storage *s, uint32_t piece, storage_cb cb, void *ud)
{
    if (s->ti->piece_hashes == NULL || piece >= s->l->piece_count)
        return RV_EINVAL;
    return submit(s, OP_CHECK, piece, 0, 0, NULL, 0, NULL, cb, ud);
}

int storage_check_run(struct storage *s, uint32_t first, uint32_t n, storage_cb cb, void *ud)
{
    if (s->ti->piece_hashes == NULL || n == 0 || n > STORAGE_RUN_MAX ||
        first >= s->l->piece_count || n > s->l->piece_count - first)
        return RV_EINVAL;
    return submit(s, OP_CHECK, first, 0, 0, NULL, n, NULL, cb, ud);
}

int storage_read(struct storage *s, uint32_t piece, uint32_t begin, uint32_t len, uint8_t *out,
                 storage_cb cb, void *ud)
{
    uint32_t size = layout_piece_size(s->l, piece);
    if (piece >= s->l->piece_count || out == NULL || len == 0 || begin > size || len > size - begin)
        return RV_EINVAL;
    return submit(s, OP_READ, piece, begin, len, NULL, 0, out, cb, ud);
}

int storage_sync(struct storage *s, storage_cb cb, void *ud)
{
    if (s->closing)
        return RV_ECANCELED;
    if (s->syncing)
        return RV_EFULL;
    int rc = submit(s, OP_SYNC, 0, 0, 0, NULL, 0, NULL, cb, ud);
    if (rc == 0)
        s->syncing = true;
    return rc;
}

unsigned storage_pending(const struct storage *s)
{
    return s->pending;
}

static void final_run(uv_work_t *w)
{
    struct storage *s = w->data;
    bool any = false;

    /* No other work is running now; the lock only orders memory with the last workers. */
    uv_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->l->file_count; i++) {
        struct fent *e = &s->fents[i];
        if (e->dirty) {
            /* fsync flushes the file, not the handle: a fresh one serves if it was closed */
            int fd = e->fd;
            bool writable;
            if (fd < 0 && open_path(s, s->l->files[i].path, false, &fd, &writable, NULL) != 0)
                fd = -1;
            if (fd >= 0) {
                (void)fsync(fd); /* no one to report to: storage_close's callback has no code */
                if (fd != e->fd)
                    close(fd);
            }
            any = true;
        }
        if (e->fd >= 0) {
            close(e->fd);
            e->fd = -1;
        }
        if (e->dfd >= 0) {
            close(e->dfd);
            e->dfd = -1;
        }
    }
    s->open_count = 0;
    uv_mutex_unlock(&s->lock);
    if (any)
        (void)fsync(s->dirfd); /* the new names in the top folder */
    close(s->dirfd);
    s->dirfd = -1;
}

static void final_done(uv_work_t *w, int status)
{
    (void)status; /* never canceled: storage_close cancels only requests */
    struct storage *s = w->data;
    void (*cb)(void *) = s->close_cb;
    void *ud = s->close_ud;
    free_storage(s);
    if (cb != NULL)
        cb(ud);
}

void storage_close(struct storage *s, void (*cb)(void *ud), void *ud)
{
    if (s->closing)
        return;
    s->closing = true;
    s->close_cb = cb;
    s->close_ud = ud;
    /* Work not started yet is dropped; work running finishes (a worker cannot be stopped
     * mid-write) and its callback is skipped in after_req. */
    for (struct req *r = s->inflight; r != NULL; r = r->next)
        (void)uv_cancel((uv_req_t *)&r->work);
    maybe_finish(s);
}

/* mkdir -p for the download folder itself: the user chose it, so symlinks there are followed. */
static int make_folder(const char *dir, rv_error_t *err)
{
    char *p = strdup(dir);
    if (p == NULL)
        return err_set(err, RV_ENOMEM, "out of memory");
    int rc = 0;
    for (char *q = p + 1;; q++) {
        if (*q != '/' && *q != '\0')
            continue;
        char c = *q;
        *q = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            rc = sys_err(err, errno, "cannot create download folder %s", p);
            break;
        }
        *q = c;
        if (c == '\0')
            break;
    }
    free(p);
    return rc;
}

int storage_new(uv_loop_t *loop, const rv_torrent_info_t *ti, const struct layout *l,
                const struct storage_opts *opts, struct storage **out, rv_error_t *err)
{
    struct storage *s = NULL;
    bool locked = false;
    int rc;

    *out = NULL;
    if (opts == NULL || opts->dir == NULL || opts->dir[0] == '\0')
        return err_set(err, RV_EINVAL, "no download folder given");
    if (ti->piece_hashes != NULL && l->piece_count != ti->piece_count)
        return err_set(err, RV_EINVAL, "the layout has %u pieces but the torrent %u",
                       l->piece_count, ti->piece_count);
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return err_set(err, RV_ENOMEM, "out of memory");
    s->loop = loop;
    s->ti = ti;
    s->l = l;
    s->dirfd = -1;
    s->max_open = opts->max_open != 0 ? opts->max_open : DEFAULT_MAX_OPEN;
    s->file_sel = opts->file_sel;
    s->stats = opts->stats != NULL ? opts->stats : &s->own_stats;
    s->direct = opts->direct;
    s->direct_max = opts->direct_max > 0 ? opts->direct_max : STORAGE_DIRECT_BUSY;
    s->disk = opts->disk != NULL ? opts->disk : &s->own_disk;
    s->lru_head = s->lru_tail = NONE;
    s->dir = strdup(opts->dir);
    /* one extra entry so a torrent of no files still gets a non-NULL array */
    s->fents = calloc(l->file_count + 1, sizeof(*s->fents));
    if (s->dir == NULL || s->fents == NULL) {
        rc = err_set(err, RV_ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < l->file_count; i++) {
        s->fents[i].fd = s->fents[i].dfd = -1;
        s->fents[i].lru_prev = s->fents[i].lru_next = NONE;
    }
    if (uv_mutex_init(&s->lock) != 0) {
        rc = err_set(err, RV_ENOMEM, "cannot create a mutex");
        goto fail;
    }
    locked = true;

    if ((rc = make_folder(s->dir, err)) != 0)
        goto fail;
    s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        rc = sys_err(err, errno, "cannot open download folder %s", s->dir);
        goto fail;
    }
    /* No piece ever writes to an empty file, so it is made now. */
    for (size_t i = 0; i < l->file_count; i++) {
        const rv_file_t *f = &l->files[i];
        int fd;
        bool writable;
        if (f->length != 0 || (f->attr & RV_FILE_PAD) || (s->file_sel && !s->file_sel[i]))
            continue;
        if ((rc = open_path(s, f->path, true, &fd, &writable, err)) != 0)
            goto fail;
        close(fd);
    }
    *out = s;
    return 0;

fail:
    if (s->dirfd >= 0)
        close(s->dirfd);
    if (locked)
        uv_mutex_destroy(&s->lock);
    free(s->fents);
    free(s->dir);
    free(s);
    return rc;
}
