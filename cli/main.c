/* rivulet command line: dispatches to one subcommand. */
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

static const char usage[] =
    "Usage: rivulet COMMAND [OPTIONS] ...\n"
    "\n"
    "Commands:\n"
    "  info FILE.torrent|MAGNET     describe a torrent or a magnet link (--json)\n"
    "  download FILE.torrent|MAGNET -o DIR\n"
    "                               fetch a torrent (also: rivulet FILE.torrent -o DIR)\n"
    "  seed FILE.torrent -d DIR     check the data in DIR and seed it\n"
    "  create PATH -o OUT.torrent   make a torrent of a file or folder\n"
    "  trackers FILE.torrent|MAGNET ask every tracker what it knows (--json)\n"
    "  verify FILE.torrent -d DIR   re-check the data in DIR on every core (--json)\n"
    "  dht [--bootstrap HOST:PORT]  run a DHT node and report its routing table (--json)\n"
    "\n"
    "Options:\n"
    "  -h, --help      help (also after each command: rivulet info --help)\n"
    "  -V, --version   print the version\n"
    "\n"
    "Exit codes: 0 success, 1 other failure, 2 usage error, 3 unreadable or invalid\n"
    "torrent or magnet link, 4 download stopped incomplete, 5 no tracker could be reached,\n"
    "6 a file could not be read or written, 130 interrupted.\n";

#define SAFE_BUFS 8
#define SAFE_LEN 8192

const char *cli_safen(const char *s, size_t n)
{
    static char bufs[SAFE_BUFS][SAFE_LEN];
    static unsigned next;
    char *out = bufs[next++ % SAFE_BUFS];
    rv_printable(s, n, out, SAFE_LEN);
    return out;
}

const char *cli_safe(const char *s)
{
    return cli_safen(s, strlen(s));
}

/* Messages often quote a torrent's names or a tracker's words: sanitised as a whole, so
 * that an error stays one line and cannot drive the terminal. */
void cli_error(const char *fmt, ...)
{
    char msg[SAFE_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "rivulet: %s\n", cli_safe(msg));
}

void cli_report(const char *what, const rv_error_t *err)
{
    char msg[400];
    rv_error_format(err, msg, sizeof(msg));
    cli_error("%s: %s", what, msg);
}

void cli_hex(const uint8_t *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = '\0';
}

void cli_human_size(uint64_t bytes, char *out, size_t outlen)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, outlen, "%llu B", (unsigned long long)bytes);
    else
        snprintf(out, outlen, "%.*f %s", v < 10 ? 2 : 1, v, units[u]);
}

int cli_parse_size(const char *s, uint64_t *out)
{
    char *end;
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;
    switch (*end) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    default:
        return -1;
    }
    if (*end != '\0') {
        end++;
        if (*end == 'i' && end[1] == 'B')
            end += 2;
        else if (*end == 'B')
            end++;
        if (*end != '\0')
            return -1;
    }
    if (v > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

int main(int argc, char **argv)
{
    /* A peer that hangs up while we write must be an EPIPE error on that connection, not the
     * end of the process; a file over the size limit must be EFBIG naming the file. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        printf("rivulet %s\n", RV_VERSION_STRING);
        return EXIT_OK;
    }
    if (strcmp(cmd, "info") == 0)
        return cmd_info(argc - 1, argv + 1);
    if (strcmp(cmd, "download") == 0)
        return cmd_download(argc - 1, argv + 1);
    if (strcmp(cmd, "seed") == 0)
        return cmd_seed(argc - 1, argv + 1);
    /* The first client's short form: rivulet FILE.torrent -o DIR. */
    size_t n = strlen(cmd);
    if ((n > 8 && strcmp(cmd + n - 8, ".torrent") == 0) || strncasecmp(cmd, "magnet:", 7) == 0)
        return cmd_download(argc, argv);
    if (strcmp(cmd, "create") == 0)
        return cmd_create(argc - 1, argv + 1);
    if (strcmp(cmd, "trackers") == 0)
        return cmd_trackers(argc - 1, argv + 1);
    if (strcmp(cmd, "verify") == 0)
        return cmd_verify(argc - 1, argv + 1);
    if (strcmp(cmd, "dht") == 0)
        return cmd_dht(argc - 1, argv + 1);
    cli_error("unknown command '%s' (try rivulet --help)", cmd);
    return EXIT_USAGE;
}
