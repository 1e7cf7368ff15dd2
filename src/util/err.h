/* Filling rv_error_t records: the one place messages are formatted. */
#ifndef RV_UTIL_ERR_H
#define RV_UTIL_ERR_H

#include <stddef.h>

#include "rivulet/error.h"

/* Sets err (if not NULL) to code and a printf-style message; returns code. */
int err_set(rv_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same with a byte offset into the input. */
int err_set_at(rv_error_t *err, int code, size_t offset, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Clears err to "no error". */
void err_clear(rv_error_t *err);

#endif
