/* rivulet info: describe a .torrent file or a magnet link, for people or (--json) scripts. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "json.h"

static const char usage[] =
    "Usage: rivulet info [OPTIONS] FILE.torrent|MAGNET\n"
    "\n"
    "Describes a torrent: name, info-hash(es), size, pieces, files, trackers by tier,\n"
    "web seeds and flags.\n"
    "\n"
    "  -j, --json      print one JSON object on stdout\n"
    "  -s, --strict    reject torrents whose dictionaries are not canonical\n"
    "  -h, --help      this help\n"
    "  -V, --version   print the version\n";

static const char *version_name(const rv_torrent_info_t *ti)
{
    if (ti->has_v1 && ti->has_v2)
        return "hybrid";
    return ti->has_v2 ? "v2" : "v1";
}

static void attr_string(unsigned attr, char out[8])
{
    size_t n = 0;
    if (attr & RV_FILE_PAD)
        out[n++] = 'p';
    if (attr & RV_FILE_EXECUTABLE)
        out[n++] = 'x';
    if (attr & RV_FILE_HIDDEN)
        out[n++] = 'h';
    if (attr & RV_FILE_SYMLINK)
        out[n++] = 'l';
    out[n] = '\0';
}

static void json_strings(struct json *j, const char *key, char *const *v, size_t n)
{
    json_key(j, key);
    json_array_begin(j);
    for (size_t i = 0; i < n; i++)
        json_string(j, v[i]);
    json_array_end(j);
}

static void torrent_json(const rv_torrent_info_t *ti)
{
    struct json j;
    char hex[65], attr[8];
    json_init(&j, stdout);
    json_object_begin(&j);
    json_key(&j, "type");
    json_string(&j, "torrent");
    json_key(&j, "version");
    json_string(&j, version_name(ti));
    json_key(&j, "name");
    json_string(&j, ti->name);
    json_key(&j, "info_hash");
    if (ti->has_v1) {
        cli_hex(ti->info_hash, RV_SHA1_LEN, hex);
        json_string(&j, hex);
    } else {
        json_null(&j);
    }
    json_key(&j, "info_hash_v2");
    if (ti->has_v2) {
        cli_hex(ti->info_hash_v2, RV_SHA256_LEN, hex);
        json_string(&j, hex);
    } else {
        json_null(&j);
    }
    json_key(&j, "total_size");
    json_uint(&j, ti->total_size);
    json_key(&j, "piece_length");
    json_uint(&j, ti->piece_length);
    json_key(&j, "piece_count");
    json_uint(&j, ti->piece_count);
    json_key(&j, "private");
    json_bool(&j, ti->is_private);
    json_key(&j, "files");
    json_array_begin(&j);
    size_t index = 0;
    for (size_t i = 0; i < ti->file_count; i++) {
        const rv_file_t *f = &ti->files[i];
        bool pad = (f->attr & RV_FILE_PAD) != 0;
        json_object_begin(&j);
        json_key(&j, "index");
        if (pad)
            json_null(&j);
        else
            json_uint(&j, index++);
        json_key(&j, "path");
        json_string(&j, f->path);
        json_key(&j, "size");
        json_uint(&j, f->length);
        json_key(&j, "offset");
        json_uint(&j, f->offset);
        json_key(&j, "pad");
        json_bool(&j, pad);
        attr_string(f->attr, attr);
        json_key(&j, "attr");
        json_string(&j, attr);
        if (f->has_pieces_root) {
            cli_hex(f->pieces_root, RV_SHA256_LEN, hex);
            json_key(&j, "pieces_root");
            json_string(&j, hex);
        }
        json_object_end(&j);
    }
    json_array_end(&j);
    json_key(&j, "trackers");
    json_array_begin(&j);
    for (size_t t = 0; t < ti->tier_count; t++) {
        json_array_begin(&j);
        for (size_t u = 0; u < ti->tiers[t].count; u++)
            json_string(&j, ti->tiers[t].urls[u]);
        json_array_end(&j);
    }
    json_array_end(&j);
    json_strings(&j, "web_seeds", ti->web_seeds, ti->web_seed_count);
    json_key(&j, "comment");
    json_string(&j, ti->comment);
    json_key(&j, "created_by");
    json_string(&j, ti->created_by);
    json_key(&j, "creation_date");
    if (ti->creation_date >= 0)
        json_int(&j, ti->creation_date);
    else
        json_null(&j);
    json_key(&j, "source");
    json_string(&j, ti->source);
    json_key(&j, "piece_layers");
    json_uint(&j, ti->piece_layer_count);
    json_object_end(&j);
}

/* Prints the file list as a tree: each folder once, files indented beneath it. */
static void print_tree(const rv_torrent_info_t *ti)
{
    const char *prev = "";
    size_t prev_dir = 0; /* length of prev's folder part, including the final '/' */
    size_t index = 0;
    char size[32];
    for (size_t i = 0; i < ti->file_count; i++) {
        const rv_file_t *f = &ti->files[i];
        if (f->attr & RV_FILE_PAD)
            continue;
        const char *p = f->path;
        /* Common folder prefix with the previous file. */
        size_t common = 0;
        for (size_t k = 0; k < prev_dir && p[k] == prev[k]; k++)
            if (p[k] == '/')
                common = k + 1;
        int depth = 0;
        for (size_t k = 0; k < common; k++)
            depth += p[k] == '/';
        const char *seg = p + common;
        const char *slash;
        while ((slash = strchr(seg, '/')) != NULL) {
            printf("  %6s  %10s  %*s%s/\n", "", "", 2 * depth, "",
                   cli_safen(seg, (size_t)(slash - seg)));
            depth++;
            seg = slash + 1;
        }
        cli_human_size(f->length, size, sizeof(size));
        printf("  %6zu  %10s  %*s%s%s\n", index++, size, 2 * depth, "", cli_safe(seg),
               (f->attr & RV_FILE_EXECUTABLE) ? " [x]" : "");
        prev = p;
        prev_dir = (size_t)(seg - p);
    }
}

static void torrent_text(const rv_torrent_info_t *ti)
{
    char hex[65], size[32], plen[32];
    size_t nfiles = 0;
    for (size_t i = 0; i < ti->file_count; i++)
        nfiles += !(ti->files[i].attr & RV_FILE_PAD);
    printf("Name:         %s\n", cli_safe(ti->name));
    if (ti->has_v1) {
        cli_hex(ti->info_hash, RV_SHA1_LEN, hex);
        printf("Info-hash v1: %s\n", hex);
    }
    if (ti->has_v2) {
        cli_hex(ti->info_hash_v2, RV_SHA256_LEN, hex);
        printf("Info-hash v2: %s\n", hex);
    }
    printf("Format:       %s\n", version_name(ti));
    cli_human_size(ti->total_size, size, sizeof(size));
    printf("Total size:   %s (%llu bytes) in %zu file%s\n", size,
           (unsigned long long)ti->total_size, nfiles, nfiles == 1 ? "" : "s");
    cli_human_size(ti->piece_length, plen, sizeof(plen));
    printf("Pieces:       %u of %s\n", ti->piece_count, plen);
    printf("Private:      %s\n", ti->is_private ? "yes" : "no");
    if (ti->created_by)
        printf("Created by:   %s\n", cli_safe(ti->created_by));
    if (ti->creation_date >= 0) {
        time_t t = (time_t)ti->creation_date;
        struct tm tm;
        char when[64];
        if (gmtime_r(&t, &tm) && strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm))
            printf("Created on:   %s\n", when);
    }
    if (ti->comment)
        printf("Comment:      %s\n", cli_safe(ti->comment));
    if (ti->source)
        printf("Source:       %s\n", cli_safe(ti->source));
    printf("Trackers:%s\n", ti->tier_count ? "" : "     none");
    for (size_t t = 0; t < ti->tier_count; t++) {
        char label[32];
        snprintf(label, sizeof(label), "tier %zu", t + 1);
        for (size_t u = 0; u < ti->tiers[t].count; u++)
            printf("  %-8s  %s\n", u == 0 ? label : "", cli_safe(ti->tiers[t].urls[u]));
    }
    if (ti->web_seed_count) {
        printf("Web seeds:\n");
        for (size_t i = 0; i < ti->web_seed_count; i++)
            printf("  %s\n", cli_safe(ti->web_seeds[i]));
    }
    printf("Files:\n  %6s  %10s  %s\n", "index", "size", "path");
    print_tree(ti);
}

static void magnet_json(const rv_magnet_t *m)
{
    struct json j;
    char hex[65];
    json_init(&j, stdout);
    json_object_begin(&j);
    json_key(&j, "type");
    json_string(&j, "magnet");
    json_key(&j, "info_hash");
    if (m->has_v1) {
        cli_hex(m->info_hash, RV_SHA1_LEN, hex);
        json_string(&j, hex);
    } else {
        json_null(&j);
    }
    json_key(&j, "info_hash_v2");
    if (m->has_v2) {
        cli_hex(m->info_hash_v2, RV_SHA256_LEN, hex);
        json_string(&j, hex);
    } else {
        json_null(&j);
    }
    json_key(&j, "name");
    json_string(&j, m->name);
    json_strings(&j, "trackers", m->trackers, m->tracker_count);
    json_strings(&j, "web_seeds", m->web_seeds, m->web_seed_count);
    json_strings(&j, "peers", m->peers, m->peer_count);
    json_key(&j, "select");
    json_array_begin(&j);
    for (size_t i = 0; i < m->select_count; i++) {
        json_array_begin(&j);
        json_uint(&j, m->select[i].first);
        json_uint(&j, m->select[i].last);
        json_array_end(&j);
    }
    json_array_end(&j);
    json_object_end(&j);
}

static void magnet_text(const rv_magnet_t *m)
{
    char hex[65];
    printf("Name:         %s\n", m->name ? cli_safe(m->name) : "(not given)");
    if (m->has_v1) {
        cli_hex(m->info_hash, RV_SHA1_LEN, hex);
        printf("Info-hash v1: %s\n", hex);
    }
    if (m->has_v2) {
        cli_hex(m->info_hash_v2, RV_SHA256_LEN, hex);
        printf("Info-hash v2: %s\n", hex);
    }
    printf("Trackers:%s\n", m->tracker_count ? "" : "     none");
    for (size_t i = 0; i < m->tracker_count; i++)
        printf("  %s\n", cli_safe(m->trackers[i]));
    for (size_t i = 0; i < m->web_seed_count; i++)
        printf("%s %s\n", i == 0 ? "Web seeds:   " : "             ", cli_safe(m->web_seeds[i]));
    for (size_t i = 0; i < m->peer_count; i++)
        printf("%s %s\n", i == 0 ? "Peers:       " : "             ", cli_safe(m->peers[i]));
    if (m->select_count) {
        printf("Files:        ");
        for (size_t i = 0; i < m->select_count; i++) {
            if (m->select[i].first == m->select[i].last)
                printf("%s%u", i ? "," : "", m->select[i].first);
            else
                printf("%s%u-%u", i ? "," : "", m->select[i].first, m->select[i].last);
        }
        printf("\n");
    }
    printf("Metadata:     not in the link; it comes from peers once downloading starts\n");
}

int cmd_info(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"strict", no_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"version", no_argument, NULL, 'V'},
                                         {NULL, 0, NULL, 0}};
    int json = 0, c;
    unsigned flags = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "jshV", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            json = 1;
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
        cli_error("info needs exactly one FILE.torrent or MAGNET (try rivulet info --help)");
        return EXIT_USAGE;
    }
    const char *arg = argv[optind];
    rv_error_t err;
    if (strncasecmp(arg, "magnet:", 7) == 0) {
        rv_magnet_t *m;
        if (rv_magnet_parse(arg, &m, &err) != 0) {
            cli_report("magnet link", &err);
            return EXIT_TORRENT;
        }
        json ? magnet_json(m) : magnet_text(m);
        rv_magnet_free(m);
        return EXIT_OK;
    }
    rv_torrent_info_t *ti;
    int rc = rv_torrent_load(arg, flags, &ti, &err);
    if (rc != 0) {
        cli_report(arg, &err);
        return rc == RV_EIO ? EXIT_DISK : EXIT_TORRENT;
    }
    json ? torrent_json(ti) : torrent_text(ti);
    rv_torrent_info_free(ti);
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}
