#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int err_vset(rv_error_t *err, int code, int has_offset, size_t offset, const char *fmt,
                    va_list ap) __attribute__((format(printf, 5, 0)));

static int err_vset(rv_error_t *err, int code, int has_offset, size_t offset, const char *fmt,
                    va_list ap)
{
    if (err == NULL)
        return code;
    err->code = code;
    err->has_offset = has_offset;
    err->offset = offset;
    err->sys_errno = 0;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    return code;
}

int err_set(rv_error_t *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, code, 0, 0, fmt, ap);
    va_end(ap);
    return code;
}

int err_set_at(rv_error_t *err, int code, size_t offset, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, code, 1, offset, fmt, ap);
    va_end(ap);
    return code;
}

void err_clear(rv_error_t *err)
{
    if (err != NULL)
        memset(err, 0, sizeof(*err));
}

const char *rv_strerror(int code)
{
    switch (code) {
    case RV_OK:
        return "success";
    case RV_ENOMEM:
        return "out of memory";
    case RV_EINVAL:
        return "invalid argument";
    case RV_EBENCODE:
        return "malformed bencode";
    case RV_ETORRENT:
        return "invalid torrent";
    case RV_EMAGNET:
        return "malformed magnet link";
    case RV_EIO:
        return "input/output error";
    case RV_ETOOBIG:
        return "too large";
    case RV_EPATH:
        return "unsafe file path";
    case RV_ECANCELED:
        return "canceled";
    case RV_ETRACKER:
        return "tracker error";
    case RV_ETIMEDOUT:
        return "timed out";
    case RV_ENET:
        return "network error";
    case RV_EFULL:
        return "full";
    case RV_EPROTO:
        return "protocol violation";
    case RV_EHASH:
        return "hash mismatch";
    default:
        return "unknown error";
    }
}

void rv_error_format(const rv_error_t *err, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    if (err == NULL || err->code == 0) {
        snprintf(out, outlen, "no error");
        return;
    }
    const char *msg = err->msg[0] ? err->msg : rv_strerror(err->code);
    if (err->has_offset)
        snprintf(out, outlen, "%s at byte %zu: %s", rv_strerror(err->code), err->offset, msg);
    else
        snprintf(out, outlen, "%s: %s", rv_strerror(err->code), msg);
}
