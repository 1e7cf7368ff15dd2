#!/usr/bin/env bash
# Seeds do not connect to seeds (BEP 21 spirit): `rivulet seed` given a libtorrent seeder of
# the same torrent with --peer connects once, drops it ("both sides are seeds") as soon as it
# says have all, and does not dial it again for the rest of the run (12 s, while a plain
# refused peer would be retried every few seconds).
# usage: tests/interop/seed_to_seed.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-s2s.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$WORK"
. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms
ev() { $PY "$EV" "$@"; }

mkdir -p payload
head -c 2000000 /dev/urandom >payload/s.bin
"$RV" create payload/s.bin -o s.torrent -l 64K >/dev/null
LP=$(free_port 127.0.0.2)
$PY "$HERE/lt_seeder.py" s.torrent payload 127.0.0.2 "$LP" lt.ready --ready listen >lt.log 2>&1 &
pids+=($!)
for _ in $(seq 300); do [ -s lt.ready ] && break; sleep 0.1; done
"$RV" seed s.torrent -d payload --peer "127.0.0.2:$LP" --no-trackers --listen 127.0.0.3 \
    --port "$(free_port 127.0.0.3)" --state-dir st --json >seed.ndjson 2>seed.err &
SPID=$!
pids+=("$SPID")
sleep 12
kill -INT "$SPID" 2>/dev/null || true
wait "$SPID" 2>/dev/null || true
n=$(ev seed.ndjson "len([e for e in kind('peer_connected') if addr(e) == '127.0.0.2:$LP'])")
why=$(ev seed.ndjson "[e.get('message') for e in kind('peer_dropped') if addr(e) == '127.0.0.2:$LP']")
case "$why" in *"both sides are seeds"*) ok "the libtorrent seed was dropped: $why" ;;
    *) bad "no 'both sides are seeds' drop: $why" ;; esac
if [ "$n" -eq 1 ]; then ok "connected to the other seed once in 12 s, never dialled again"
else bad "connected to the other seed $n times"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
