/* Reaching a torrent's files below a download folder without following symlinks: each
 * component of a relative path is opened from the folder's descriptor with O_NOFOLLOW, so no
 * symlink or ".." placed in the tree leads outside it. Used where data already on disk is
 * looked at (resume's stat, verify's reads); storage keeps its own walk, which also creates
 * what is missing. Safe on any thread; errno is left as it was. */
#ifndef RV_STORAGE_PATHAT_H
#define RV_STORAGE_PATHAT_H

#include <sys/stat.h>

/* Returned for a path that exists but is not a regular file (a folder, FIFO, device or socket
 * where a file should be). Negative, so it cannot be mistaken for an errno value. */
#define PATHAT_NOT_REGULAR (-1)

/* lstat of the regular file rel (relative, '/'-separated) below dirfd. Returns 0 with *st
 * filled, or:
 *   ENOENT              rel or one of its folders does not exist
 *   ENOTDIR             one of its folders is not a folder
 *   ELOOP               rel or one of its folders is a symbolic link (never followed)
 *   PATHAT_NOT_REGULAR  rel is a folder, FIFO, device or socket
 *   EINVAL              rel is empty, absolute, or has an empty, "." or ".." component
 *   another errno value (EACCES, ENAMETOOLONG, EIO, ...) as the system gave it. */
int pathat_stat_file(int dirfd, const char *rel, struct stat *st);

/* Opens the regular file rel below dirfd read-only, O_CLOEXEC. Returns 0 with *fd (the caller
 * closes it) and *st (its fstat) set, or the codes of pathat_stat_file. A FIFO or device is
 * opened non-blocking and closed at once, never read. */
int pathat_open_read(int dirfd, const char *rel, int *fd, struct stat *st);

#endif
