/* Paths below a download folder, one component at a time with O_NOFOLLOW (see pathat.h). */
#include "storage/pathat.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

static int bad_component(const char *p, size_t n)
{
    return n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.');
}

/* An openat of comp in dfd failed with e. The kernel reports a symlink opened with
 * O_NOFOLLOW | O_DIRECTORY as ELOOP or ENOTDIR depending on which check runs first: look. */
static int why_not_dir(int dfd, const char *comp, int e)
{
    struct stat st;
    if ((e == ELOOP || e == ENOTDIR) && fstatat(dfd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return S_ISLNK(st.st_mode) ? ELOOP : ENOTDIR;
    return e;
}

/* Opens the folder that holds rel's last component: *parent is dirfd itself (not to be
 * closed) or a new descriptor, and leaf receives the last component. */
static int walk_parent(int dirfd, const char *rel, int *parent, char leaf[NAME_MAX + 1])
{
    int dfd = dirfd;
    const char *p = rel;

    if (rel[0] == '\0' || rel[0] == '/')
        return EINVAL;
    /* Everything is checked before anything is opened. */
    for (const char *q = rel;;) {
        const char *slash = strchr(q, '/');
        size_t n = slash != NULL ? (size_t)(slash - q) : strlen(q);
        if (bad_component(q, n))
            return EINVAL;
        if (n > NAME_MAX)
            return ENAMETOOLONG;
        if (slash == NULL)
            break;
        q = slash + 1;
    }
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash != NULL ? (size_t)(slash - p) : strlen(p);
        memcpy(leaf, p, n);
        leaf[n] = '\0';
        if (slash == NULL)
            break;
        int nfd = openat(dfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (nfd < 0) {
            int e = why_not_dir(dfd, leaf, errno);
            if (dfd != dirfd)
                close(dfd);
            return e;
        }
        if (dfd != dirfd)
            close(dfd);
        dfd = nfd;
        p = slash + 1;
    }
    *parent = dfd;
    return 0;
}

static int type_error(mode_t mode)
{
    if (S_ISREG(mode))
        return 0;
    return S_ISLNK(mode) ? ELOOP : PATHAT_NOT_REGULAR;
}

int pathat_stat_file(int dirfd, const char *rel, struct stat *st)
{
    char leaf[NAME_MAX + 1];
    int saved = errno, dfd, rc = walk_parent(dirfd, rel, &dfd, leaf);
    if (rc == 0) {
        if (fstatat(dfd, leaf, st, AT_SYMLINK_NOFOLLOW) != 0)
            rc = errno;
        else
            rc = type_error(st->st_mode);
        if (dfd != dirfd)
            close(dfd);
    }
    errno = saved;
    return rc;
}

int pathat_open_read(int dirfd, const char *rel, int *fd, struct stat *st)
{
    char leaf[NAME_MAX + 1];
    int saved = errno, dfd, rc = walk_parent(dirfd, rel, &dfd, leaf);
    if (rc != 0)
        goto out;
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. */
    int f = openat(dfd, leaf, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (f < 0) {
        rc = errno; /* ELOOP: a symbolic link */
    } else if (fstat(f, st) != 0) {
        rc = errno;
        close(f);
    } else if ((rc = type_error(st->st_mode)) != 0) {
        close(f);
    } else {
        /* Regular files ignore O_NONBLOCK for reads, but clear it all the same. */
        int fl = fcntl(f, F_GETFL);
        if (fl >= 0)
            (void)fcntl(f, F_SETFL, fl & ~O_NONBLOCK);
        *fd = f;
    }
    if (dfd != dirfd)
        close(dfd);
out:
    errno = saved;
    return rc;
}
