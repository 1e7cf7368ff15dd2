#!/usr/bin/env bash
# Rate limits hold: a 30 MiB transfer at 1 MiB/s takes 30 s within 10%, downloading from a
# libtorrent seeder with --max-download-rate and seeding to a libtorrent leecher with
# --max-upload-rate. Takes about a minute.
#
# usage: tests/interop/rate_limits.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-rate.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms
within() { # seconds expected: prints ok when |s - e| <= 10% of e
    awk -v s="$1" -v e="$2" 'BEGIN { exit !(s >= e * 0.9 && s <= e * 1.1) }'
}

SIZE=$((30 << 20))
mkdir -p data
head -c "$SIZE" /dev/urandom > data/payload.bin
"$RV" create -q data/payload.bin -o t.torrent --piece-size 256K

# ---- download at 1 MiB/s from an unlimited libtorrent seeder
SP=$(free_port 127.0.0.2)
$PY "$HERE/lt_seeder.py" t.torrent data 127.0.0.2 "$SP" seed.ready --ready listen 2> seed.err &
pids+=($!)
wait_file seed.ready 30 || { bad "seeder not ready"; exit 1; }
t0=$(date +%s%N)
rc=0
timeout 90 "$RV" download --seed-time 0 t.torrent -o down --peer "127.0.0.2:$SP" --no-trackers \
    --max-download-rate 1M -q || rc=$?
t1=$(date +%s%N)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
[ "$rc" -eq 0 ] && cmp -s data/payload.bin down/payload.bin && ok "download complete and identical" \
    || bad "download: exit $rc"
if within "$secs" 30; then ok "download of 30 MiB at 1 MiB/s took $secs s (30 s +-10%)"; else
    bad "download of 30 MiB at 1 MiB/s took $secs s"; fi

# ---- upload at 1 MiB/s to a libtorrent leecher
RP=$(free_port 127.0.0.3)
"$RV" seed t.torrent -d data --listen 127.0.0.3 --port "$RP" --no-trackers --max-upload-rate 1M -q &
rvs=$!
pids+=("$rvs")
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.3/$RP") 2>/dev/null && break; sleep 0.1; done
t0=$(date +%s%N)
rc=0
timeout 90 $PY "$HERE/lt_leecher.py" t.torrent up 127.0.0.4 "$(free_port 127.0.0.4)" \
    --peer "127.0.0.3:$RP" > leech.out 2>&1 || rc=$?
t1=$(date +%s%N)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
kill -INT "$rvs" 2>/dev/null || true
[ "$rc" -eq 0 ] && cmp -s data/payload.bin up/payload.bin && ok "upload complete and identical" \
    || bad "upload: leecher exit $rc: $(tail -n 2 leech.out | tr '\n' ' ')"
if within "$secs" 30; then ok "upload of 30 MiB at 1 MiB/s took $secs s (30 s +-10%)"; else
    bad "upload of 30 MiB at 1 MiB/s took $secs s"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
