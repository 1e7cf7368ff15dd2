/* rivulet's command line: one file per subcommand, sharing these helpers. */
#ifndef RV_CLI_H
#define RV_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "rivulet/rivulet.h"

/* Exit codes scripts can rely on (also in --help and the README). */
enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,    /* anything not listed below */
    EXIT_USAGE = 2,   /* bad command line */
    EXIT_TORRENT = 3, /* unreadable or invalid torrent or magnet link */
    EXIT_INCOMPLETE = 4, /* stopped before every piece was verified */
    EXIT_NET = 5,     /* no tracker or peer could be reached */
    EXIT_DISK = 6     /* a file could not be read or written */
};

int cmd_info(int argc, char **argv);
int cmd_create(int argc, char **argv);
int cmd_trackers(int argc, char **argv);
int cmd_download(int argc, char **argv);
int cmd_seed(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_dht(int argc, char **argv);

/* Prints "rivulet: " + message + newline on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "rivulet: WHAT: " + the formatted error. */
void cli_report(const char *what, const rv_error_t *err);
/* Text from a torrent, magnet link, tracker or peer, made safe for a terminal: well-formed
 * UTF-8 is kept except control characters (C0, DEL, C1: ESC sequences, newlines that would
 * fake a line of our own), which become '?' like every malformed byte. cli_safen takes the
 * first n bytes of s. Returns one of 8 static buffers, reused in turn (so up to 8 may appear
 * in one printf); over 8 KiB it is cut with "...". Loop thread / main thread only. */
const char *cli_safe(const char *s);
const char *cli_safen(const char *s, size_t n);
/* Lowercase hex of n bytes into out (2n+1 bytes). */
void cli_hex(const uint8_t *p, size_t n, char *out);
/* "1.5 MiB" style sizes. */
void cli_human_size(uint64_t bytes, char *out, size_t outlen);
/* Parses "16384", "256K", "4M", "1G" (powers of 1024). Returns 0 or -1. */
int cli_parse_size(const char *s, uint64_t *out);

#endif
