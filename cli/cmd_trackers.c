/* rivulet trackers: ask every tracker of a torrent or magnet link what it knows, to find out
 * why a torrent finds no peers. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "json.h"

static const char usage[] =
    "Usage: rivulet trackers [OPTIONS] FILE.torrent|MAGNET\n"
    "\n"
    "Announces once to every tracker (event none, left = the full size) and scrapes it, then\n"
    "prints per tracker: reachable or the exact error, seeders/leechers/completed, the peers\n"
    "returned, the announce interval and the round-trip time.\n"
    "\n"
    "  -j, --json          print one JSON object on stdout\n"
    "      --tiers         follow BEP 12 instead: tiers in order, stopping at the first that\n"
    "                      answers, and print the announce log (order, errors, back-off)\n"
    "      --all-tiers     with --tiers: announce to every tier at once\n"
    "      --ca-file PEM   trust these certificates for HTTPS trackers\n"
    "      --timeout SECS  give up on trackers that have not answered (default 20)\n"
    "      --udp-timeout MS  first UDP retransmission timeout (default: timeout/3, <= 15 s)\n"
    "      --port N        the port announced (default 6881)\n"
    "  -h, --help          this help\n"
    "  -V, --version       print the version\n"
    "\n"
    "Exit codes: 0 at least one tracker answered, 5 none did, 2 usage, 3 bad torrent.\n";

static void json_opt_int(struct json *j, const char *key, int64_t v)
{
    json_key(j, key);
    if (v >= 0)
        json_int(j, v);
    else
        json_null(j);
}

static void json_opt_str(struct json *j, const char *key, bool present, const char *s)
{
    json_key(j, key);
    if (present)
        json_string(j, s);
    else
        json_null(j);
}

static void print_json(const rv_tracker_report_t *rep, bool follow)
{
    struct json j;
    json_init(&j, stdout);
    json_object_begin(&j);
    json_key(&j, "mode");
    json_string(&j, follow ? "tiers" : "all");
    json_key(&j, "unique_peers");
    json_uint(&j, rep->unique_peers);
    json_key(&j, "trackers");
    json_array_begin(&j);
    for (size_t i = 0; i < rep->count; i++) {
        const rv_tracker_result_t *r = &rep->results[i];
        json_object_begin(&j);
        json_key(&j, "url");
        json_string(&j, r->url);
        json_key(&j, "tier");
        json_uint(&j, r->tier + 1);
        json_key(&j, "contacted");
        json_bool(&j, r->contacted);
        json_key(&j, "ok");
        json_bool(&j, r->ok);
        json_opt_str(&j, "error", r->contacted && !r->ok, r->error);
        json_opt_str(&j, "warning", r->warning != NULL, r->warning);
        json_opt_int(&j, "seeders", r->scrape_ok ? r->scrape_seeders : r->seeders);
        json_opt_int(&j, "leechers", r->scrape_ok ? r->scrape_leechers : r->leechers);
        json_opt_int(&j, "completed", r->scrape_ok ? r->scrape_completed : -1);
        json_key(&j, "peers");
        json_uint(&j, r->peer_count);
        json_key(&j, "peer_list");
        json_array_begin(&j);
        for (size_t k = 0; k < r->peer_count; k++)
            json_string(&j, r->peers[k]);
        json_array_end(&j);
        json_opt_int(&j, "interval", r->interval);
        json_opt_int(&j, "min_interval", r->min_interval);
        json_opt_int(&j, "rtt_ms", r->ok ? r->rtt_ms : -1);
        json_key(&j, "attempts");
        json_uint(&j, r->attempts);
        json_key(&j, "backoff_ms");
        json_uint(&j, r->backoff_ms);
        json_key(&j, "scrape_ok");
        json_bool(&j, r->scrape_ok);
        json_opt_str(&j, "scrape_error", r->scraped && !r->scrape_ok, r->scrape_error);
        json_object_end(&j);
    }
    json_array_end(&j);
    json_key(&j, "events");
    json_array_begin(&j);
    for (size_t i = 0; i < rep->event_count; i++) {
        const rv_tracker_event_t *e = &rep->events[i];
        json_object_begin(&j);
        json_key(&j, "at_ms");
        json_uint(&j, e->at_ms);
        json_key(&j, "url");
        json_string(&j, rep->results[e->tracker].url);
        json_key(&j, "tier");
        json_uint(&j, rep->results[e->tracker].tier + 1);
        json_key(&j, "ok");
        json_bool(&j, e->ok);
        json_opt_str(&j, "error", !e->ok, e->error);
        json_key(&j, "backoff_ms");
        json_uint(&j, e->backoff_ms);
        json_key(&j, "peers");
        json_uint(&j, e->peer_count);
        json_object_end(&j);
    }
    json_array_end(&j);
    json_object_end(&j);
}

static void num(char *out, size_t n, int64_t v)
{
    if (v >= 0)
        snprintf(out, n, "%lld", (long long)v);
    else
        snprintf(out, n, "?");
}

static void print_text(const rv_tracker_report_t *rep, bool follow)
{
    if (follow && rep->event_count) {
        printf("Announce log (BEP 12 order):\n");
        for (size_t i = 0; i < rep->event_count; i++) {
            const rv_tracker_event_t *e = &rep->events[i];
            const rv_tracker_result_t *r = &rep->results[e->tracker];
            if (e->ok)
                printf("  %7.2f s  tier %u  %s: ok, %zu peers\n", (double)e->at_ms / 1000,
                       r->tier + 1, cli_safe(r->url), e->peer_count);
            else
                printf("  %7.2f s  tier %u  %s: %s; retry in %.1f s\n", (double)e->at_ms / 1000,
                       r->tier + 1, cli_safe(r->url), cli_safe(e->error),
                       (double)e->backoff_ms / 1000);
        }
        printf("\n");
    }
    unsigned tier = (unsigned)-1;
    for (size_t i = 0; i < rep->count; i++) {
        const rv_tracker_result_t *r = &rep->results[i];
        if (r->tier != tier) {
            tier = r->tier;
            printf("Tier %u\n", tier + 1);
        }
        printf("  %s\n", cli_safe(r->url));
        if (!r->contacted) {
            printf("    not contacted (an earlier tracker answered, or the time ran out)\n");
            continue;
        }
        if (r->ok) {
            char s[24], l[24], c[24], iv[24];
            num(s, sizeof(s), r->scrape_ok ? r->scrape_seeders : r->seeders);
            num(l, sizeof(l), r->scrape_ok ? r->scrape_leechers : r->leechers);
            num(c, sizeof(c), r->scrape_ok ? r->scrape_completed : -1);
            num(iv, sizeof(iv), r->interval);
            printf("    ok in %lld ms: %s seeders, %s leechers, %s completed, %zu peers, "
                   "interval %s s",
                   (long long)r->rtt_ms, s, l, c, r->peer_count, iv);
            if (r->min_interval >= 0)
                printf(" (min %lld s)", (long long)r->min_interval);
            printf("\n");
            for (size_t k = 0; k < r->peer_count && k < 10; k++)
                printf("      peer %s\n", r->peers[k]);
            if (r->peer_count > 10)
                printf("      ... and %zu more\n", r->peer_count - 10);
        } else {
            printf("    failed: %s", cli_safe(r->error));
            if (r->backoff_ms)
                printf(" (after %u attempt%s; next retry in %.1f s)", r->attempts,
                       r->attempts == 1 ? "" : "s", (double)r->backoff_ms / 1000);
            printf("\n");
        }
        if (r->warning)
            printf("    warning: %s\n", cli_safe(r->warning));
        if (r->scraped && !r->scrape_ok)
            printf("    scrape failed: %s\n", cli_safe(r->scrape_error));
    }
    printf("\n%zu unique peer%s from all trackers\n", rep->unique_peers,
           rep->unique_peers == 1 ? "" : "s");
}

int cmd_trackers(int argc, char **argv)
{
    enum { OPT_TIERS = 256, OPT_ALL_TIERS, OPT_CA, OPT_TIMEOUT, OPT_UDP_TIMEOUT, OPT_PORT };
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"tiers", no_argument, NULL, OPT_TIERS},
                                         {"all-tiers", no_argument, NULL, OPT_ALL_TIERS},
                                         {"ca-file", required_argument, NULL, OPT_CA},
                                         {"timeout", required_argument, NULL, OPT_TIMEOUT},
                                         {"udp-timeout", required_argument, NULL, OPT_UDP_TIMEOUT},
                                         {"port", required_argument, NULL, OPT_PORT},
                                         {"help", no_argument, NULL, 'h'},
                                         {"version", no_argument, NULL, 'V'},
                                         {NULL, 0, NULL, 0}};
    rv_tracker_probe_opts_t po;
    bool json = false;
    int c;
    uint64_t v;
    memset(&po, 0, sizeof(po));
    optind = 1;
    while ((c = getopt_long(argc, argv, "jhV", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            json = true;
            break;
        case OPT_TIERS:
            po.follow_tiers = true;
            break;
        case OPT_ALL_TIERS:
            po.all_tiers = true;
            break;
        case OPT_CA:
            po.ca_file = optarg;
            break;
        case OPT_TIMEOUT:
            if (cli_parse_size(optarg, &v) != 0 || v < 1 || v > 3600) {
                cli_error("--timeout: '%s' is not a number of seconds from 1 to 3600", optarg);
                return EXIT_USAGE;
            }
            po.timeout_ms = (unsigned)v * 1000;
            break;
        case OPT_UDP_TIMEOUT:
            if (cli_parse_size(optarg, &v) != 0 || v < 1 || v > 60000) {
                cli_error("--udp-timeout: '%s' is not a number of ms from 1 to 60000", optarg);
                return EXIT_USAGE;
            }
            po.udp_timeout_ms = (unsigned)v;
            break;
        case OPT_PORT:
            if (cli_parse_size(optarg, &v) != 0 || v < 1 || v > 65535) {
                cli_error("--port: '%s' is not a port number", optarg);
                return EXIT_USAGE;
            }
            po.port = (uint16_t)v;
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
        cli_error("trackers needs exactly one FILE.torrent or MAGNET (try rivulet trackers --help)");
        return EXIT_USAGE;
    }
    const char *arg = argv[optind];
    rv_error_t err;
    rv_torrent_info_t *ti = NULL;
    rv_magnet_t *m = NULL;
    rv_tier_t *tiers = NULL;
    size_t tier_count = 0;
    const uint8_t *info_hash;
    int ret = EXIT_FAIL;

    if (strncasecmp(arg, "magnet:", 7) == 0) {
        if (rv_magnet_parse(arg, &m, &err) != 0) {
            cli_report("magnet link", &err);
            return EXIT_TORRENT;
        }
        if (!m->has_v1) {
            cli_error("magnet link: trackers need a v1 (btih) info-hash");
            rv_magnet_free(m);
            return EXIT_TORRENT;
        }
        /* As libtorrent does, each tr= of a magnet link is its own tier. */
        tiers = calloc(m->tracker_count ? m->tracker_count : 1, sizeof(*tiers));
        if (tiers == NULL) {
            rv_magnet_free(m);
            cli_error("out of memory");
            return EXIT_FAIL;
        }
        for (size_t i = 0; i < m->tracker_count; i++) {
            tiers[i].urls = &m->trackers[i];
            tiers[i].count = 1;
        }
        tier_count = m->tracker_count;
        info_hash = m->info_hash;
        po.left = 16384; /* unknown until the metadata arrives; not zero, which means a seed */
    } else {
        int rc = rv_torrent_load(arg, 0, &ti, &err);
        if (rc != 0) {
            cli_report(arg, &err);
            return rc == RV_EIO ? EXIT_DISK : EXIT_TORRENT;
        }
        if (!ti->has_v1) {
            /* BEP 52: v2-only swarms announce the truncated SHA-256 info-hash. */
            memcpy(ti->info_hash, ti->info_hash_v2, RV_SHA1_LEN);
        }
        tiers = ti->tiers;
        tier_count = ti->tier_count;
        info_hash = ti->info_hash;
        po.left = ti->total_size;
    }
    if (tier_count == 0) {
        cli_error("%s names no trackers", m ? "the magnet link" : arg);
        ret = EXIT_TORRENT;
        goto done;
    }
    rv_tracker_report_t *rep;
    if (rv_trackers_probe(tiers, tier_count, info_hash, &po, &rep, &err) != 0) {
        cli_report("trackers", &err);
        goto done;
    }
    json ? print_json(rep, po.follow_tiers) : print_text(rep, po.follow_tiers);
    ret = EXIT_NET;
    for (size_t i = 0; i < rep->count; i++)
        if (rep->results[i].ok)
            ret = EXIT_OK;
    rv_tracker_report_free(rep);
done:
    if (m != NULL) {
        free(tiers);
        rv_magnet_free(m);
    }
    rv_torrent_info_free(ti);
    return ret;
}
