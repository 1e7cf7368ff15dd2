/* Reading .torrent files (v1, v2 and hybrid) and magnet links, and making v1 torrents.
 * Everything here is plain data owned by the caller once returned: free it with the matching
 * rv_..._free call. Nothing here does network or event-loop work. */
#ifndef RIVULET_METAINFO_H
#define RIVULET_METAINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rivulet/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RV_SHA1_LEN 20
#define RV_SHA256_LEN 32
#define RV_BLOCK_SIZE 16384u
#define RV_MIN_PIECE_LEN 16384u
#define RV_MAX_PIECE_LEN (1u << 28) /* 256 MiB: far above anything real, keeps arithmetic safe */
#define RV_MAX_TORRENT_FILE (64u << 20) /* largest .torrent we read */
/* Most entries in a torrent's file list (v1 'files', padding files included) or v2 file tree.
 * Every file costs memory and a descriptor-cache slot for the life of the torrent, so a
 * hostile .torrent of a million one-byte files is refused at once. libtorrent 2.0 refuses
 * such torrents too: its default load limits (10 MB of .torrent, 3,000,000 bencode tokens,
 * which our decoder shares) let through roughly 330,000 files with the shortest names. */
#define RV_MAX_FILES 400000u

/* File attribute flags (BEP 47). */
enum {
    RV_FILE_PAD = 1 << 0,        /* 'p': padding, never written */
    RV_FILE_EXECUTABLE = 1 << 1, /* 'x' */
    RV_FILE_HIDDEN = 1 << 2,     /* 'h' */
    RV_FILE_SYMLINK = 1 << 3     /* 'l' */
};

typedef struct rv_file {
    char *path;      /* relative, '/'-separated, sanitised; includes the torrent name for
                        multi-file torrents ("name/dir/file") */
    uint64_t length; /* bytes */
    uint64_t offset; /* where the file starts in the torrent's piece space (v2: piece aligned) */
    unsigned attr;   /* RV_FILE_* */
    bool has_pieces_root;
    uint8_t pieces_root[RV_SHA256_LEN]; /* v2 merkle root, when has_pieces_root */
} rv_file_t;

typedef struct rv_tier {
    char **urls;
    size_t count;
} rv_tier_t;

typedef struct rv_torrent_info {
    bool has_v1; /* a v1 info dictionary: pieces + length/files */
    bool has_v2; /* meta version 2: file tree (+ piece layers) */
    uint8_t info_hash[RV_SHA1_LEN];       /* SHA-1 of the info dictionary (v1 and hybrid) */
    uint8_t info_hash_v2[RV_SHA256_LEN];  /* SHA-256 of the info dictionary (v2 and hybrid) */

    char *name;
    bool multi_file;        /* v1 'files' list, or a v2 file tree of more than one file */
    uint64_t total_size;    /* sum of the files' lengths, padding files excluded */
    uint64_t piece_space;   /* bytes covered by pieces (padding and v2 alignment included) */
    uint32_t piece_length;
    uint32_t piece_count;
    const uint8_t *piece_hashes; /* v1: piece_count * 20 bytes (points into info_bytes), or NULL */

    rv_file_t *files; /* in torrent order; padding files included and flagged */
    size_t file_count;

    rv_tier_t *tiers; /* BEP 12 announce-list, or the single announce URL as one tier */
    size_t tier_count;
    char **web_seeds; /* BEP 19 url-list */
    size_t web_seed_count;
    char **dht_nodes; /* BEP 5 'nodes': "host:port" ("[v6]:port"), DHT nodes to start from */
    size_t dht_node_count;
    bool is_private;  /* BEP 27 */
    char *comment;
    char *created_by;
    char *source;
    int64_t creation_date; /* seconds since the epoch, or -1 if absent */

    size_t piece_layer_count; /* v2: entries in 'piece layers' that were checked */

    uint8_t *info_bytes; /* a copy of the info dictionary exactly as it appeared */
    size_t info_len;
} rv_torrent_info_t;

enum {
    RV_PARSE_STRICT = 1 << 0 /* reject unsorted or duplicate dictionary keys */
};

/* Parses a .torrent held in memory. Borrows data; on success *out is a new object the caller
 * frees with rv_torrent_info_free. On failure returns a negative code and fills err. */
int rv_torrent_parse(const uint8_t *data, size_t len, unsigned flags, rv_torrent_info_t **out,
                     rv_error_t *err);

/* Reads and parses a .torrent file (at most RV_MAX_TORRENT_FILE bytes). */
int rv_torrent_load(const char *path, unsigned flags, rv_torrent_info_t **out, rv_error_t *err);

void rv_torrent_info_free(rv_torrent_info_t *ti);

/* Magnet links: magnet:?xt=urn:btih:...&xt=urn:btmh:...&dn=&tr=&ws=&x.pe=&so= */
typedef struct rv_file_range {
    uint32_t first, last; /* inclusive, 0-based file indices (padding files not counted) */
} rv_file_range_t;

typedef struct rv_magnet {
    bool has_v1;
    bool has_v2;
    uint8_t info_hash[RV_SHA1_LEN];
    uint8_t info_hash_v2[RV_SHA256_LEN];
    char *name;        /* dn, or NULL */
    char **trackers;   /* tr, in order, duplicates removed */
    size_t tracker_count;
    char **web_seeds;  /* ws */
    size_t web_seed_count;
    char **peers;      /* x.pe, "host:port" or "[v6]:port" */
    size_t peer_count;
    rv_file_range_t *select; /* so (BEP 53) */
    size_t select_count;
} rv_magnet_t;

/* Parses a file selection such as "0,2,5-7" (0-based indices among the non-padding files,
 * inclusive ranges, any order; libtorrent and aria2 count padding files too, see
 * src/metainfo/select.h). On success *out is a malloc'd array of *n ranges (caller
 * frees); RV_EINVAL with err naming the offending part otherwise. */
int rv_file_select_parse(const char *list, rv_file_range_t **out, size_t *n, rv_error_t *err);

/* Parses a magnet URI. On success *out is a new object freed with rv_magnet_free. */
int rv_magnet_parse(const char *uri, rv_magnet_t **out, rv_error_t *err);
void rv_magnet_free(rv_magnet_t *m);

/* Making a v1 torrent of a file or a folder. */
typedef void (*rv_create_progress_cb)(void *ud, uint64_t hashed, uint64_t total);

typedef struct rv_create_opts {
    const char *path;          /* file or folder to describe */
    const char *const *trackers; /* announce URLs, each with its tier number in tracker_tiers */
    const unsigned *tracker_tiers;
    size_t tracker_count;
    const char *const *web_seeds;
    size_t web_seed_count;
    uint32_t piece_length;     /* 0: chosen from the total size */
    bool is_private;
    const char *comment;       /* NULL: none */
    const char *source;        /* NULL: none */
    const char *created_by;    /* NULL: "rivulet/VERSION" */
    int64_t creation_date;     /* seconds; 0: now; -1: omit */
    unsigned threads;          /* 0: one per core */
    rv_create_progress_cb progress; /* called from the calling thread, a few times a second */
    void *progress_ud;
} rv_create_opts_t;

/* The piece length chosen for a payload of total bytes when none is given (libtorrent's
 * table: about sqrt(total)*2 hashes, 16 KiB to 16 MiB). */
uint32_t rv_create_auto_piece_length(uint64_t total);

/* Hashes the payload on opts->threads worker threads and returns the bencoded torrent in
 * *out (malloc'd, caller frees) and its length in *out_len. */
int rv_create(const rv_create_opts_t *opts, uint8_t **out, size_t *out_len, rv_error_t *err);

/* rv_create, then writes the result to out_path atomically (temporary file, fsync, rename). */
int rv_create_file(const rv_create_opts_t *opts, const char *out_path, rv_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
