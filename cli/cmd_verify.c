/* rivulet verify: re-check the data of a torrent already on disk, on every core, and say what
 * is complete, for people or (--json) scripts. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "json.h"
#include "rivulet/verify.h"

static const char usage[] =
    "Usage: rivulet verify [OPTIONS] FILE.torrent -d DIR\n"
    "\n"
    "Re-checks the files of a torrent in DIR (the folder it was downloaded to) against its\n"
    "piece hashes, on every core, and prints per file whether it is complete, partial (with\n"
    "the share of its bytes in good pieces) or missing, then the totals and the speed.\n"
    "Nothing is written. Symbolic links below DIR are never followed.\n"
    "\n"
    "  -d, -o, --dir DIR   the download folder (default: the current folder)\n"
    "  -t, --threads N     hashing threads (default: one per core)\n"
    "  -j, --json          print one JSON object on stdout\n"
    "  -q, --quiet         no progress and no file list, only the totals\n"
    "  -s, --strict        reject torrents whose dictionaries are not canonical\n"
    "  -h, --help          this help\n"
    "  -V, --version       print the version\n"
    "\n"
    "Exit codes: 0 every piece verified and every file there, 4 incomplete, 3 unreadable or\n"
    "invalid torrent, 6 a file could not be read, 2 usage error, 130 interrupted.\n";

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

struct progress {
    bool tty;
    struct timespec start;
};

static double elapsed(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static int on_progress(void *ud, uint64_t done, uint64_t total)
{
    struct progress *p = ud;
    if (interrupted)
        return 1;
    if (!p->tty)
        return 0;
    double secs = elapsed(&p->start);
    char d[32], t[32], rate[32];
    cli_human_size(done, d, sizeof(d));
    cli_human_size(total, t, sizeof(t));
    cli_human_size(secs > 0 ? (uint64_t)((double)done / secs) : 0, rate, sizeof(rate));
    fprintf(stderr, "\r\033[Kverifying %5.1f%%  %s / %s  %s/s",
            total ? 100.0 * (double)done / (double)total : 100.0, d, t, rate);
    return 0;
}

/* Tenths of a percent of part in whole, rounded down: 99.95 % shows as 99.9, never 100. */
static unsigned permille(uint64_t part, uint64_t whole)
{
    if (whole == 0)
        return 1000;
    return (unsigned)((unsigned __int128)part * 1000 / whole);
}

static const char *state_name(rv_verify_state_t s)
{
    switch (s) {
    case RV_VERIFY_COMPLETE:
        return "complete";
    case RV_VERIFY_PARTIAL:
        return "partial";
    case RV_VERIFY_MISSING:
        return "missing";
    case RV_VERIFY_NOT_FILE:
        return "not_a_file";
    case RV_VERIFY_PADDING:
    default:
        return "padding";
    }
}

static void print_json(const rv_torrent_info_t *ti, const char *dir, const rv_verify_result_t *r,
                       double secs)
{
    struct json j;
    char hex[41];
    json_init(&j, stdout);
    json_object_begin(&j);
    json_key(&j, "name");
    json_string(&j, ti->name);
    json_key(&j, "info_hash");
    cli_hex(ti->info_hash, RV_SHA1_LEN, hex);
    json_string(&j, hex);
    json_key(&j, "dir");
    json_string(&j, dir);
    json_key(&j, "dir_missing");
    json_bool(&j, r->dir_missing);
    json_key(&j, "complete");
    json_bool(&j, r->complete);
    json_key(&j, "piece_length");
    json_uint(&j, ti->piece_length);
    json_key(&j, "piece_count");
    json_uint(&j, r->piece_count);
    json_key(&j, "pieces_have");
    json_uint(&j, r->pieces_have);
    json_key(&j, "total_size");
    json_uint(&j, r->bytes_total);
    json_key(&j, "bytes_have");
    json_uint(&j, r->bytes_have);
    json_key(&j, "bytes_read");
    json_uint(&j, r->bytes_read);
    json_key(&j, "threads");
    json_uint(&j, r->threads);
    json_key(&j, "milliseconds");
    json_uint(&j, (uint64_t)(secs * 1000.0 + 0.5));
    /* The pieces as BEP 3 wire bytes in hex: piece 0 is the high bit of the first byte. */
    json_key(&j, "have");
    size_t nbytes = ((size_t)r->piece_count + 7) / 8;
    char *bits = malloc(2 * nbytes + 1);
    if (bits != NULL) {
        cli_hex(r->have, nbytes, bits);
        json_string(&j, bits);
        free(bits);
    } else {
        json_null(&j);
    }
    json_key(&j, "files");
    json_array_begin(&j);
    size_t index = 0;
    for (size_t i = 0; i < r->file_count; i++) {
        const rv_verify_file_t *f = &r->files[i];
        if (f->state == RV_VERIFY_PADDING)
            continue;
        json_object_begin(&j);
        json_key(&j, "index");
        json_uint(&j, index++);
        json_key(&j, "path");
        json_string(&j, ti->files[i].path);
        json_key(&j, "size");
        json_uint(&j, ti->files[i].length);
        json_key(&j, "state");
        json_string(&j, state_name(f->state));
        json_key(&j, "size_on_disk");
        json_uint(&j, f->size_on_disk);
        json_key(&j, "bytes_have");
        json_uint(&j, f->bytes_have);
        json_object_end(&j);
    }
    json_array_end(&j);
    json_object_end(&j);
    fputc('\n', stdout);
}

static void print_text(const rv_torrent_info_t *ti, const char *dir, const rv_verify_result_t *r,
                       double secs, bool quiet)
{
    char size[32], have[32], total[32], read[32];
    size_t partial = 0, missing = 0, files = 0;
    for (size_t i = 0; i < r->file_count; i++) {
        const rv_verify_file_t *f = &r->files[i];
        if (f->state == RV_VERIFY_PADDING)
            continue;
        files++;
        partial += f->state == RV_VERIFY_PARTIAL;
        missing += f->state == RV_VERIFY_MISSING || f->state == RV_VERIFY_NOT_FILE;
        if (quiet)
            continue;
        cli_human_size(ti->files[i].length, size, sizeof(size));
        switch (f->state) {
        case RV_VERIFY_PARTIAL: {
            unsigned pm = permille(f->bytes_have, ti->files[i].length);
            printf("partial %4u.%u%%  %10s  %s\n", pm / 10, pm % 10, size,
                   cli_safe(ti->files[i].path));
            break;
        }
        case RV_VERIFY_NOT_FILE:
            printf("missing          %10s  %s (not a regular file; not followed)\n", size,
                   cli_safe(ti->files[i].path));
            break;
        default:
            printf("%-16s %10s  %s\n", state_name(f->state), size, cli_safe(ti->files[i].path));
            break;
        }
    }
    if (r->dir_missing)
        printf("%s does not exist\n", dir);
    unsigned pm = permille(r->pieces_have, r->piece_count);
    cli_human_size(r->bytes_have, have, sizeof(have));
    cli_human_size(r->bytes_total, total, sizeof(total));
    cli_human_size(r->bytes_read, read, sizeof(read));
    printf("%s: %u of %u pieces (%u.%u%%), %s of %s; %zu of %zu files complete", cli_safe(ti->name),
           r->pieces_have, r->piece_count, pm / 10, pm % 10, have, total, files - partial - missing,
           files);
    if (partial || missing)
        printf(", %zu partial, %zu missing", partial, missing);
    printf("\nchecked %s in %.2f s (%.0f MiB/s) on %u thread%s\n", read, secs,
           secs > 0 ? (double)r->bytes_read / 1048576.0 / secs : 0.0, r->threads,
           r->threads == 1 ? "" : "s");
}

int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"strict", no_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"version", no_argument, NULL, 'V'},
                                         {NULL, 0, NULL, 0}};
    const char *dir = ".";
    unsigned threads = 0, flags = 0;
    bool json = false, quiet = false;
    int c;
    uint64_t v;

    optind = 1;
    while ((c = getopt_long(argc, argv, "d:o:t:jqshV", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
        case 'o':
            dir = optarg;
            break;
        case 't':
            if (cli_parse_size(optarg, &v) != 0 || v < 1 || v > 256) {
                cli_error("--threads: '%s' is not a number from 1 to 256", optarg);
                return EXIT_USAGE;
            }
            threads = (unsigned)v;
            break;
        case 'j':
            json = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 's':
            flags |= RV_PARSE_STRICT;
            break;
        case 'h':
            fputs(usage, stdout);
            return EXIT_OK;
        case 'V':
            printf("rivulet %s\n", RV_VERSION_STRING);
            return EXIT_OK;
        default:
            fputs(usage, stderr);
            return EXIT_USAGE;
        }
    }
    if (optind + 1 != argc) {
        cli_error("verify needs exactly one FILE.torrent (try rivulet verify --help)");
        return EXIT_USAGE;
    }
    const char *path = argv[optind];
    rv_torrent_info_t *ti;
    rv_error_t err;
    if (rv_torrent_load(path, flags, &ti, &err) != 0) {
        cli_report(path, &err);
        return EXIT_TORRENT;
    }

    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    struct progress prog = {.tty = !quiet && !json && isatty(STDERR_FILENO)};
    clock_gettime(CLOCK_MONOTONIC, &prog.start);
    rv_verify_result_t r;
    int rc = rv_verify(ti, dir, threads, on_progress, &prog, &r, &err);
    double secs = elapsed(&prog.start);
    if (prog.tty)
        fputs("\r\033[K", stderr);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);

    int ret;
    if (rc == RV_ECANCELED) {
        cli_error("verify: interrupted");
        ret = 130;
    } else if (rc != 0) {
        cli_report("verify", &err);
        ret = rc == RV_EIO ? EXIT_DISK : rc == RV_ETORRENT ? EXIT_TORRENT : EXIT_FAIL;
    } else {
        if (json)
            print_json(ti, dir, &r, secs);
        else
            print_text(ti, dir, &r, secs, quiet);
        ret = r.complete ? EXIT_OK : EXIT_INCOMPLETE;
        rv_verify_result_free(&r);
    }
    rv_torrent_info_free(ti);
    return ret;
}
