/* Small file helpers: whole-file reads with a size cap, atomic writes, read buffers. */
#ifndef RV_UTIL_FS_H
#define RV_UTIL_FS_H

#include <stddef.h>
#include <stdint.h>

#include "rivulet/error.h"

/* Reads path into a new buffer (caller frees) of at most max bytes. */
int fs_read_file(const char *path, size_t max, uint8_t **out, size_t *len, rv_error_t *err);
/* Writes data to path through a temporary file in the same folder, fsync and rename. */
int fs_write_atomic(const char *path, const void *data, size_t len, rv_error_t *err);
/* A buffer of n bytes for large preads, page-aligned; NULL without memory. Free it with free().
 * The kernel's copy out of the page cache is slow when the destination sits a few bytes past
 * the source's place in its page: into malloc's buffer (16 bytes past a page boundary) it took
 * 2.4 times as long, and hashing 1 GiB from the page cache on 2 threads ran 10 % slower. */
void *fs_read_buffer(size_t n);

#endif
