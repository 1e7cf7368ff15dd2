#!/usr/bin/env bash
# Stopping and failing cleanly: Ctrl+C in the middle of a download stops within two seconds
# with exit 130, after telling the tracker 'stopped'; what was verified is on disk, and a second
# run checks it and finishes the rest. A full disk and a read-only disk stop the download with
# exit 6 and an error naming the file.
#
# usage: tests/interop/download_stop.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"

$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-stop.XXXXXX")
pids=()
mounts=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms

mkdir -p data/payload
head -c 12000000 /dev/urandom > data/payload/a.bin
head -c 3000000 /dev/urandom > data/payload/b.bin
TP=$(free_port 127.0.0.1)
"$RV" create -q data/payload -o t.torrent --piece-size 64K -t "http://127.0.0.1:$TP/announce"

SEED_PORT=$(free_port 127.0.0.2)
$PY "$HERE/lt_seeder.py" t.torrent data 127.0.0.2 "$SEED_PORT" seed.ready --ready listen \
    --upload-limit 3000000 2> seed.err &
pids+=($!)
$PY "$HERE/log_tracker.py" 127.0.0.1 "$TP" tracker.log "127.0.0.2:$SEED_PORT" &
pids+=($!)
wait_file seed.ready 30 || { bad "seeder not ready: $(tail -n 3 seed.err)"; exit 1; }

# ---- Ctrl+C in the middle
"$RV" download --seed-time 0 t.torrent -o out --json > run1.ndjson 2> run1.err &
rv=$!
for _ in $(seq 200); do
    n=$(grep -c piece_verified run1.ndjson 2>/dev/null || true)
    [ "${n:-0}" -ge 20 ] && break
    sleep 0.05
done
t0=$(date +%s%N)
kill -INT "$rv"
rc=0
wait "$rv" || rc=$?
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
[ "$rc" -eq 130 ] && ok "Ctrl+C: exit 130" || bad "Ctrl+C: exit $rc ($(tail -n 2 run1.err | tr '\n' ' '))"
[ "$ms" -le 2000 ] && ok "Ctrl+C: stopped in $ms ms" || bad "Ctrl+C: took $ms ms"
if grep -q '"event":"stopped"' run1.ndjson; then ok "Ctrl+C: a stopped event"; else bad "no stopped event"; fi
if grep -qx started tracker.log && grep -qx stopped tracker.log; then
    ok "the tracker heard 'started' and then 'stopped'"
else bad "tracker log: $(tr '\n' ' ' < tracker.log)"; fi
verified=$($PY "$EV" run1.ndjson 'len(verified)')
[ "$verified" -ge 20 ] && [ "$verified" -lt 230 ] && ok "Ctrl+C came mid-download ($verified of 229 pieces verified)" \
    || bad "verified $verified pieces before the stop"

# ---- a second run checks what is there and fetches the rest
rc=0
timeout 60 "$RV" download --seed-time 0 t.torrent -o out --json > run2.ndjson 2> run2.err || rc=$?
[ "$rc" -eq 0 ] && ok "second run: exit 0" || bad "second run: exit $rc ($(tail -n 2 run2.err | tr '\n' ' '))"
if diff -r data/payload out/payload > /dev/null; then ok "second run: byte-identical"; else bad "second run: files differ"; fi
fetched=$($PY "$EV" run2.ndjson 'len(verified)')
[ "$fetched" -le $((229 - verified)) ] && ok "second run fetched only $fetched pieces (the first had verified $verified)" \
    || bad "second run fetched $fetched pieces although $verified were on disk"

# ---- disk errors: a full disk, a read-only disk (tmpfs mounts the test makes, root only)
if [ "$(id -u)" -eq 0 ] && mkdir small && mount -t tmpfs -o size=1m tmpfs small 2>/dev/null; then
    mounts+=("$WORK/small")
    rc=0
    timeout 60 "$RV" download --seed-time 0 t.torrent -o small/out -q 2> full.err || rc=$?
    [ "$rc" -eq 6 ] && ok "full disk: exit 6" || bad "full disk: exit $rc"
    # Pieces complete in any order, so either file may be the one that no longer fits.
    if grep -qE "payload/[ab]\.bin" full.err && grep -qi "no space" full.err; then
        ok "full disk: $(head -n 1 full.err)"
    else bad "full disk: error does not name the file and the cause: $(cat full.err)"; fi
    mkdir ro
    mount -t tmpfs -o size=1m,ro tmpfs ro
    mounts+=("$WORK/ro")
    rc=0
    timeout 60 "$RV" download --seed-time 0 t.torrent -o ro/out -q 2> ro.err || rc=$?
    [ "$rc" -eq 6 ] && ok "read-only disk: exit 6" || bad "read-only disk: exit $rc"
    if grep -qi "read-only" ro.err; then ok "read-only disk: $(head -n 1 ro.err)"; else
        bad "read-only disk: $(cat ro.err)"; fi
else
    echo "skip disk errors: cannot mount a tmpfs here (not root?)"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
