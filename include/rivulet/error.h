/* Error codes and the error record every fallible public call fills in.
 * Functions return 0 on success or a negative RV_E... code; parsers also fill an rv_error_t
 * naming what was wrong and, for byte-level input, the offset where it went wrong. */
#ifndef RIVULET_ERROR_H
#define RIVULET_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    RV_OK = 0,
    RV_ENOMEM = -1,   /* out of memory */
    RV_EINVAL = -2,   /* invalid argument */
    RV_EBENCODE = -3, /* malformed bencode */
    RV_ETORRENT = -4, /* well-formed bencode, but not a valid torrent */
    RV_EMAGNET = -5,  /* malformed magnet link */
    RV_EIO = -6,      /* a file could not be read or written (errno kept in rv_error_t) */
    RV_ETOOBIG = -7,  /* input larger than a limit */
    RV_EPATH = -8,    /* a file path that would escape the download folder */
    RV_ECANCELED = -9, /* stopped by the caller */
    RV_ETRACKER = -10, /* a tracker refused the request or sent a malformed reply */
    RV_ETIMEDOUT = -11, /* no answer in time */
    RV_ENET = -12,      /* a network error: name lookup, connection refused, TLS, ... */
    RV_EFULL = -13,     /* a bounded table or queue is full */
    RV_EPROTO = -14,    /* a peer broke the wire protocol */
    RV_EHASH = -15      /* data does not match its hash */
};

/* What went wrong, for a person: msg is a complete sentence fragment such as
 * "piece length 1000 is not a power of two". has_offset says whether offset is meaningful. */
typedef struct rv_error {
    int code;
    int has_offset;
    size_t offset;
    int sys_errno; /* errno for RV_EIO, else 0 */
    char msg[256];
} rv_error_t;

/* A static string describing an RV_E... code. */
const char *rv_strerror(int code);

/* Formats err as one line ("at byte 17: string length exceeds input") into out. */
void rv_error_format(const rv_error_t *err, char *out, size_t outlen);

/* Copies text from outside (a torrent's names, a tracker's message) into out (cap bytes, always
 * NUL-terminated when cap > 0), stopping at a NUL: printable ASCII and well-formed UTF-8 stay,
 * control characters and broken UTF-8 become '?', so it is safe to print on a terminal; text
 * that does not fit ends in "...". Returns the length written. */
size_t rv_printable(const char *s, size_t n, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
