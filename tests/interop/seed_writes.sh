#!/usr/bin/env bash
# How `rivulet seed` spends writes and memory serving one fast leecher: 64 MiB in 1 MiB pieces,
# to a libtorrent leecher (high_performance_seed settings) and then to a rivulet one, each
# from a fresh seeder started with --json --stats. For each: the leecher has every byte; the
# seeder sent every block at least once (blocks_out); the blocks asked for in one read go out
# together, one write for several blocks (net_writes at most a quarter of blocks_out; one
# write per block was what rivulet did before: 40,363 writes per GiB, 65,536 blocks); and the
# read cache filled no more pieces than one leecher needs, the one being sent and the one read
# ahead with a little slack (read_cache_pieces_max <= 4, of the 16 the default cache allows;
# up to 13 for a rivulet leecher, which asks for blocks of 8 to 10 pieces side by side where
# its CPU hashes them in lanes).
#
# usage: tests/interop/seed_writes.sh path/to/rivulet
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
rv_test_init seed-writes "$@"
rv_need_libtorrent

SIZE=$((64 * 1048576))
BLOCKS=$((SIZE / 16384))
mkdir -p payload
head -c "$SIZE" /dev/urandom > payload/w.bin
"$RV" create -q payload/w.bin -o w.torrent --piece-size 1M

# run LABEL LEECHER_IP: one seeder, one leecher (libtorrent or rivulet), then the checks
run() {
    local label=$1 lip=$2 rport lport seeder rc=0 src=0
    rport=$(free_port 127.0.0.2)
    "$RV" seed w.torrent -d payload --listen 127.0.0.2 --port "$rport" --no-trackers --no-dht \
        --state-dir "st-$label" --json --stats > "$label.ndjson" 2> "$label.err" &
    seeder=$!
    pids+=("$seeder")
    if ! wait_tcp 127.0.0.2 "$rport" 20; then
        bad "$label: rivulet seed not listening: $(tail -n 3 "$label.err" | tr '\n' ' ')"
        return
    fi
    if [ "$label" = libtorrent ]; then
        lport=$(free_port "$lip")
        timeout 120 "$PY" "$HERE/lt_leecher.py" w.torrent "out-$label" "$lip" "$lport" \
            --peer "127.0.0.2:$rport" --high-performance --seconds 100 \
            > "$label.leech.out" 2> "$label.leech.err" || rc=$?
    else
        timeout 120 "$RV" download w.torrent -o "out-$label" --listen "$lip" --no-trackers \
            --no-dht --seed-time 0 --state-dir "st-$label-leech" --peer "127.0.0.2:$rport" -q \
            > "$label.leech.out" 2> "$label.leech.err" || rc=$?
    fi
    kill -INT "$seeder" 2> /dev/null || true
    wait "$seeder" || src=$?
    if [ "$rc" -eq 0 ] && cmp -s payload/w.bin "out-$label/w.bin"; then
        ok "$label: the leecher has every byte"
    else
        bad "$label: leecher exit $rc: $(tail -n 3 "$label.leech.err" | tr '\n' ' ')"
    fi
    [ "$src" -eq 0 ] || bad "$label: rivulet seed exit $src on SIGINT: $(tail -n 3 "$label.err" | tr '\n' ' ')"
    local out writes cached
    out=$(rv_stat "$label.ndjson" blocks_out)
    writes=$(rv_stat "$label.ndjson" net_writes)
    cached=$(rv_stat "$label.ndjson" read_cache_pieces_max)
    [ "$out" -ge "$BLOCKS" ] && ok "$label: $out blocks sent (the payload is $BLOCKS)" \
        || bad "$label: $out blocks sent, the payload is $BLOCKS"
    [ "$writes" -ge 1 ] && [ $((writes * 4)) -le "$out" ] \
        && ok "$label: $writes writes for $out blocks ($((out / writes)) blocks a write)" \
        || bad "$label: $writes writes for $out blocks (want at most one for every 4 blocks)"
    local most=4
    [ "$label" = rivulet ] && most=13
    [ "$cached" -ge 1 ] && [ "$cached" -le "$most" ] \
        && ok "$label: the read cache held at most $cached pieces" \
        || bad "$label: the read cache held $cached pieces (want 1 to $most for this leecher)"
}

run libtorrent 127.0.0.3
run rivulet 127.0.0.4

rv_test_done
