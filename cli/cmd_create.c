/* rivulet create: make a v1 torrent of a file or folder, hashing on every core. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const char usage[] =
    "Usage: rivulet create [OPTIONS] PATH -o OUT.torrent\n"
    "\n"
    "Makes a v1 torrent of the file or folder PATH.\n"
    "\n"
    "  -o, --output FILE       where to write the torrent (required)\n"
    "  -t, --tracker URL       announce URL; each -t starts a new tier, and\n"
    "                          comma-separated URLs in one -t share a tier\n"
    "  -l, --piece-size SIZE   piece size in bytes, or with K/M suffix (16K..256M, a\n"
    "                          power of two); default: chosen from the total size\n"
    "  -p, --private           set the private flag (BEP 27)\n"
    "  -c, --comment TEXT      comment\n"
    "  -w, --web-seed URL      web seed (BEP 19), repeatable\n"
    "  -s, --source TEXT       source tag (makes the info-hash unique to a site)\n"
    "      --created-by TEXT   'created by' (default rivulet/VERSION)\n"
    "      --no-date           leave out the creation date\n"
    "  -j, --threads N         hashing threads (default: one per core)\n"
    "  -q, --quiet             no progress or summary\n"
    "  -h, --help              this help\n"
    "  -V, --version           print the version\n";

struct progress {
    int tty;
    struct timespec start;
};

static double elapsed(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void on_progress(void *ud, uint64_t hashed, uint64_t total)
{
    struct progress *p = ud;
    if (!p->tty)
        return;
    double secs = elapsed(&p->start);
    char done[32], all[32], rate[32];
    cli_human_size(hashed, done, sizeof(done));
    cli_human_size(total, all, sizeof(all));
    cli_human_size(secs > 0 ? (uint64_t)((double)hashed / secs) : 0, rate, sizeof(rate));
    fprintf(stderr, "\r\033[Khashing %5.1f%%  %s / %s  %s/s",
            total ? 100.0 * (double)hashed / (double)total : 100.0, done, all, rate);
}

struct strv {
    char **v;
    unsigned *tier;
    size_t n;
};

static int strv_push(struct strv *s, char *str, unsigned tier)
{
    char **v = realloc(s->v, (s->n + 1) * sizeof(*v));
    if (v == NULL)
        return -1;
    s->v = v;
    unsigned *t = realloc(s->tier, (s->n + 1) * sizeof(*t));
    if (t == NULL)
        return -1;
    s->tier = t;
    s->v[s->n] = str;
    s->tier[s->n] = tier;
    s->n++;
    return 0;
}

int cmd_create(int argc, char **argv)
{
    enum { OPT_CREATED_BY = 256, OPT_NO_DATE };
    static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                         {"tracker", required_argument, NULL, 't'},
                                         {"piece-size", required_argument, NULL, 'l'},
                                         {"private", no_argument, NULL, 'p'},
                                         {"comment", required_argument, NULL, 'c'},
                                         {"web-seed", required_argument, NULL, 'w'},
                                         {"source", required_argument, NULL, 's'},
                                         {"created-by", required_argument, NULL, OPT_CREATED_BY},
                                         {"no-date", no_argument, NULL, OPT_NO_DATE},
                                         {"threads", required_argument, NULL, 'j'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"version", no_argument, NULL, 'V'},
                                         {NULL, 0, NULL, 0}};
    rv_create_opts_t o;
    struct strv trackers = {0}, seeds = {0};
    const char *out = NULL;
    unsigned tier = 0;
    int quiet = 0, c, ret = EXIT_USAGE;
    uint64_t v;

    memset(&o, 0, sizeof(o));
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:t:l:pc:w:s:j:qhV", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 't':
            for (char *save = NULL, *u = strtok_r(optarg, ",", &save); u != NULL;
                 u = strtok_r(NULL, ",", &save)) {
                if (*u && strv_push(&trackers, u, tier) != 0)
                    goto oom;
            }
            tier++;
            break;
        case 'l':
            if (cli_parse_size(optarg, &v) != 0 || v > UINT32_MAX) {
                cli_error("--piece-size: '%s' is not a size", optarg);
                goto done;
            }
            o.piece_length = (uint32_t)v;
            break;
        case 'p':
            o.is_private = true;
            break;
        case 'c':
            o.comment = optarg;
            break;
        case 'w':
            if (strv_push(&seeds, optarg, 0) != 0)
                goto oom;
            break;
        case 's':
            o.source = optarg;
            break;
        case OPT_CREATED_BY:
            o.created_by = optarg;
            break;
        case OPT_NO_DATE:
            o.creation_date = -1;
            break;
        case 'j':
            if (cli_parse_size(optarg, &v) != 0 || v < 1 || v > 256) {
                cli_error("--threads: '%s' is not a number from 1 to 256", optarg);
                goto done;
            }
            o.threads = (unsigned)v;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'h':
            fputs(usage, stdout);
            ret = EXIT_OK;
            goto done;
        case 'V':
            printf("rivulet %s\n", RV_VERSION_STRING);
            ret = EXIT_OK;
            goto done;
        default:
            fputs(usage, stderr);
            goto done;
        }
    }
    if (optind + 1 != argc) {
        cli_error("create needs exactly one PATH (try rivulet create --help)");
        goto done;
    }
    if (out == NULL) {
        cli_error("create needs -o OUT.torrent");
        goto done;
    }
    o.path = argv[optind];
    o.trackers = (const char *const *)trackers.v;
    o.tracker_tiers = trackers.tier;
    o.tracker_count = trackers.n;
    o.web_seeds = (const char *const *)seeds.v;
    o.web_seed_count = seeds.n;
    struct progress prog = {.tty = !quiet && isatty(STDERR_FILENO)};
    clock_gettime(CLOCK_MONOTONIC, &prog.start);
    o.progress = on_progress;
    o.progress_ud = &prog;

    rv_error_t err;
    int rc = rv_create_file(&o, out, &err);
    if (prog.tty)
        fputs("\r\033[K", stderr);
    if (rc != 0) {
        cli_report("create", &err);
        ret = rc == RV_EIO ? EXIT_DISK : EXIT_FAIL;
        goto done;
    }
    ret = EXIT_OK;
    if (!quiet) {
        rv_torrent_info_t *ti;
        if (rv_torrent_load(out, 0, &ti, &err) != 0) {
            cli_report(out, &err);
            ret = EXIT_FAIL;
            goto done;
        }
        char size[32], plen[32], hex[41];
        cli_hex(ti->info_hash, RV_SHA1_LEN, hex);
        cli_human_size(ti->total_size, size, sizeof(size));
        cli_human_size(ti->piece_length, plen, sizeof(plen));
        double secs = elapsed(&prog.start);
        fprintf(stderr, "created %s: %s in %zu file%s, %u pieces of %s, %.2f s (%.0f MiB/s)\n",
                out, size, ti->file_count, ti->file_count == 1 ? "" : "s", ti->piece_count, plen,
                secs, secs > 0 ? (double)ti->total_size / 1048576.0 / secs : 0.0);
        printf("%s\n", hex);
        rv_torrent_info_free(ti);
    }
    goto done;
oom:
    cli_error("out of memory");
    ret = EXIT_FAIL;
done:
    free(trackers.v);
    free(trackers.tier);
    free(seeds.v);
    free(seeds.tier);
    return ret;
}
