/* rivulet dht: run a DHT node for a while and say what it sees: routing-table size per family,
 * good nodes, lookups in flight, rate-limited sources; optionally look up (and announce) an
 * info-hash. A diagnostic, and a node for private test networks. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli.h"
#include "json.h"

static const char usage[] =
    "Usage: rivulet dht [OPTIONS]\n"
    "\n"
    "Runs a mainline DHT node (BEP 5; IPv6 per BEP 32) and reports its routing table, lookups\n"
    "and rate limits every few seconds, until --seconds pass or Ctrl+C.\n"
    "\n"
    "      --port N              UDP port (default: any)\n"
    "      --listen ADDR         numeric address to use (default: every IPv4 and IPv6 one)\n"
    "      --bootstrap HOST:PORT a node to start from (repeatable; default: the comma-separated\n"
    "                            $RIVULET_DHT_BOOTSTRAP when set, which may be empty, else\n"
    "                            the well-known routers)\n"
    "      --state FILE          keep the routing table in FILE between runs\n"
    "      --get-peers HASH      look up peers of a 40-hex info-hash (every 5 s)\n"
    "      --announce PORT       ... and announce ourselves on TCP port PORT for it\n"
    "      --seconds N           run N seconds (default 30; 0: until Ctrl+C)\n"
    "      --interval N          report every N seconds (default 5)\n"
    "  -j, --json                NDJSON reports on stdout\n"
    "  -h, --help                this help\n";

struct dctx {
    rv_dht_t *dht;
    uv_timer_t report, stop, lookup;
    uv_signal_t sigint;
    bool json, have_hash;
    uint8_t hash[20];
    uint16_t announce;
    char **seen;
    size_t nseen;
};

static void report(struct dctx *c, const char *why)
{
    rv_dht_stats_t st;
    rv_dht_stats(c->dht, &st);
    if (c->json) {
        struct json j;
        json_init(&j, stdout);
        json_object_begin(&j);
        json_key(&j, "event");
        json_string(&j, why);
        json_key(&j, "port");
        json_uint(&j, st.port);
        json_key(&j, "nodes4");
        json_uint(&j, st.nodes4);
        json_key(&j, "good4");
        json_uint(&j, st.good4);
        json_key(&j, "nodes6");
        json_uint(&j, st.nodes6);
        json_key(&j, "good6");
        json_uint(&j, st.good6);
        json_key(&j, "searches");
        json_uint(&j, st.searches);
        json_key(&j, "stored_torrents");
        json_uint(&j, st.stored_torrents);
        json_key(&j, "stored_peers");
        json_uint(&j, st.stored_peers);
        json_key(&j, "queries_in");
        json_uint(&j, st.queries_in);
        json_key(&j, "replies_in");
        json_uint(&j, st.replies_in);
        json_key(&j, "timeouts");
        json_uint(&j, st.timeouts);
        json_key(&j, "rate_limited");
        json_uint(&j, st.rate_limited);
        json_key(&j, "limited_sources");
        json_uint(&j, st.limited_sources);
        json_key(&j, "bad_packets");
        json_uint(&j, st.bad_packets);
        json_key(&j, "peers_found");
        json_uint(&j, c->nseen);
        json_object_end(&j);
        fflush(stdout);
    } else {
        printf("dht port %u: IPv4 %zu nodes (%zu good), IPv6 %zu nodes (%zu good), %zu lookups, "
               "%zu torrents/%zu peers stored, %llu rate-limited from %zu sources, %llu bad "
               "packets, %zu peers found\n",
               st.port, st.nodes4, st.good4, st.nodes6, st.good6, st.searches, st.stored_torrents,
               st.stored_peers, (unsigned long long)st.rate_limited, st.limited_sources,
               (unsigned long long)st.bad_packets, c->nseen);
        fflush(stdout);
    }
}

static void on_peers(void *ud, const char *const *peers, size_t n, bool done)
{
    struct dctx *c = ud;
    (void)done;
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        for (size_t k = 0; k < c->nseen && !dup; k++)
            dup = strcmp(c->seen[k], peers[i]) == 0;
        if (dup || c->nseen >= 1000)
            continue;
        char **s = realloc(c->seen, (c->nseen + 1) * sizeof(*s));
        if (s == NULL)
            return;
        c->seen = s;
        c->seen[c->nseen++] = strdup(peers[i]);
        if (c->json)
            printf("{\"event\":\"peer\",\"address\":\"%s\"}\n", peers[i]);
        else
            printf("peer %s\n", peers[i]);
        fflush(stdout);
    }
}

static void on_report(uv_timer_t *t)
{
    report(t->data, "dht");
}

static void on_lookup(uv_timer_t *t)
{
    struct dctx *c = t->data;
    rv_dht_get_peers(c->dht, c->hash, c->announce != 0, c->announce, on_peers, c);
}

static void closed(uv_handle_t *h)
{
    (void)h;
}

static void finish(struct dctx *c)
{
    report(c, "final");
    uv_close((uv_handle_t *)&c->report, closed);
    uv_close((uv_handle_t *)&c->stop, closed);
    uv_close((uv_handle_t *)&c->lookup, closed);
    uv_close((uv_handle_t *)&c->sigint, closed);
    rv_dht_close(c->dht, NULL, NULL);
}

static void on_stop(uv_timer_t *t)
{
    finish(t->data);
}

static void on_sigint(uv_signal_t *h, int sig)
{
    (void)sig;
    finish(h->data);
}

int cmd_dht(int argc, char **argv)
{
    enum { OPT_PORT = 256, OPT_LISTEN, OPT_BOOT, OPT_STATE, OPT_GET, OPT_ANN, OPT_SECS, OPT_INT };
    static const struct option opts[] = {{"port", required_argument, NULL, OPT_PORT},
                                         {"listen", required_argument, NULL, OPT_LISTEN},
                                         {"bootstrap", required_argument, NULL, OPT_BOOT},
                                         {"state", required_argument, NULL, OPT_STATE},
                                         {"get-peers", required_argument, NULL, OPT_GET},
                                         {"announce", required_argument, NULL, OPT_ANN},
                                         {"seconds", required_argument, NULL, OPT_SECS},
                                         {"interval", required_argument, NULL, OPT_INT},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    rv_dht_opts_t o;
    struct dctx c;
    memset(&o, 0, sizeof(o));
    memset(&c, 0, sizeof(c));
    const char *boot[16];
    size_t nboot = 0;
    uint64_t v, secs = 30, interval = 5;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
        switch (ch) {
        case OPT_PORT:
        case OPT_ANN:
            if (cli_parse_size(optarg, &v) != 0 || v < 1 || v > 65535) {
                cli_error("--%s: '%s' is not a port number", ch == OPT_PORT ? "port" : "announce",
                          optarg);
                return EXIT_USAGE;
            }
            if (ch == OPT_PORT)
                o.port = (uint16_t)v;
            else
                c.announce = (uint16_t)v;
            break;
        case OPT_LISTEN:
            o.listen_addr = optarg;
            break;
        case OPT_BOOT:
            if (nboot == 16) {
                cli_error("--bootstrap: at most 16");
                return EXIT_USAGE;
            }
            boot[nboot++] = optarg;
            break;
        case OPT_STATE:
            o.state_file = optarg;
            break;
        case OPT_GET: {
            size_t n = strlen(optarg);
            bool ok = n == 40;
            for (size_t i = 0; ok && i < 20; i++) {
                unsigned x;
                ok = sscanf(optarg + 2 * i, "%2x", &x) == 1;
                c.hash[i] = (uint8_t)x;
            }
            if (!ok) {
                cli_error("--get-peers: '%s' is not a 40-hex info-hash", optarg);
                return EXIT_USAGE;
            }
            c.have_hash = true;
            break;
        }
        case OPT_SECS:
        case OPT_INT:
            if (cli_parse_size(optarg, &v) != 0 || v > 86400 || (ch == OPT_INT && v == 0)) {
                cli_error("--%s: '%s' is not a number of seconds",
                          ch == OPT_SECS ? "seconds" : "interval", optarg);
                return EXIT_USAGE;
            }
            if (ch == OPT_SECS)
                secs = v;
            else
                interval = v;
            break;
        case 'j':
            c.json = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return EXIT_OK;
        default:
            fputs(usage, stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        cli_error("dht takes no arguments (try rivulet dht --help)");
        return EXIT_USAGE;
    }
    if (c.announce && !c.have_hash) {
        cli_error("--announce needs --get-peers HASH");
        return EXIT_USAGE;
    }
    static const char *const routers[] = {"router.bittorrent.com:6881",
                                          "dht.transmissionbt.com:6881",
                                          "router.utorrent.com:6881", "dht.libtorrent.org:25401"};
    char envboot[1024];
    const char *env = getenv("RIVULET_DHT_BOOTSTRAP");
    if (nboot == 0 && env != NULL) {
        snprintf(envboot, sizeof(envboot), "%s", env);
        for (char *tok = strtok(envboot, ", "); tok != NULL && nboot < 16; tok = strtok(NULL, ", "))
            boot[nboot++] = tok;
    }
    if (nboot == 0 && env == NULL) {
        o.bootstrap = routers;
        o.bootstrap_count = sizeof(routers) / sizeof(routers[0]);
    } else {
        o.bootstrap = boot;
        o.bootstrap_count = nboot;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    rv_error_t err;
    if (rv_dht_new(&loop, &o, &c.dht, &err) != 0) {
        cli_report("dht", &err);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return EXIT_NET;
    }
    uv_timer_init(&loop, &c.report);
    uv_timer_init(&loop, &c.stop);
    uv_timer_init(&loop, &c.lookup);
    uv_signal_init(&loop, &c.sigint);
    c.report.data = c.stop.data = c.lookup.data = c.sigint.data = &c;
    uv_timer_start(&c.report, on_report, interval * 1000, interval * 1000);
    if (secs > 0)
        uv_timer_start(&c.stop, on_stop, secs * 1000, 0);
    if (c.have_hash)
        uv_timer_start(&c.lookup, on_lookup, 1000, 5000);
    uv_signal_start(&c.sigint, on_sigint, SIGINT);
    report(&c, "started");
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    for (size_t i = 0; i < c.nseen; i++)
        free(c.seen[i]);
    free(c.seen);
    return EXIT_OK;
}
