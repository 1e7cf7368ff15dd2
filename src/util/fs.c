#include "util/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"

static int io_error(rv_error_t *err, const char *what, const char *path)
{
    int e = errno;
    err_set(err, RV_EIO, "%s %s: %s", what, path, strerror(e));
    if (err != NULL)
        err->sys_errno = e;
    return RV_EIO;
}

int fs_read_file(const char *path, size_t max, uint8_t **out, size_t *len, rv_error_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return io_error(err, "cannot open", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        io_error(err, "cannot stat", path);
        close(fd);
        return RV_EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, RV_EIO, "%s is not a regular file", path);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return err_set(err, RV_ETOOBIG, "%s is %lld bytes, over the limit of %zu", path,
                       (long long)st.st_size, max);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *data = malloc(size ? size : 1);
    if (data == NULL) {
        close(fd);
        return err_set(err, RV_ENOMEM, "out of memory reading %s", path);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, data + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            io_error(err, "cannot read", path);
            free(data);
            close(fd);
            return RV_EIO;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    *out = data;
    *len = got;
    return 0;
}

/* After a rename, the folder entry itself must reach the disk for the new file to survive a
 * crash. Best effort: some file systems refuse fsync on folders. */
static void fsync_parent(char *path)
{
    char *slash = strrchr(path, '/');
    const char *dir = ".";
    if (slash == path)
        dir = "/";
    else if (slash != NULL) {
        *slash = '\0';
        dir = path;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int fs_write_atomic(const char *path, const void *data, size_t len, rv_error_t *err)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    if (tmp == NULL)
        return err_set(err, RV_ENOMEM, "out of memory");
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        io_error(err, "cannot create", tmp);
        free(tmp);
        return RV_EIO;
    }
    const uint8_t *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        done += (size_t)n;
    }
    if (fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto fail;
    fsync_parent(tmp);
    free(tmp);
    return 0;
fail:
    io_error(err, "cannot write", path);
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(tmp);
    return RV_EIO;
}

void *fs_read_buffer(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 4096, n ? n : 1) != 0)
        return NULL;
    return p;
}
