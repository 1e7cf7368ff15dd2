#!/usr/bin/env bash
# Metadata from lying peers (BEP 9) is refused and fetched from an honest one: for each lie
# (wrong bytes, a wrong size, an oversized metadata_size), a magnet link whose x.pe names the
# liar and a libtorrent seeder downloads byte-identical data, and the events say what the liar
# did (banned for the first two, not asked for the third). The seeder starts a second after
# rivulet, so the liar is met first and alone (rivulet dials the seeder again 3 s later).
# usage: tests/interop/magnet_liars.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-mliars.XXXXXX")
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
wait_file() { local i; for ((i = 0; i < 300; i++)); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }
ev() { $PY "$EV" "$@"; }

# 200 files: an info dictionary over 16 KiB, so the metadata takes several blocks.
mkdir -p payload/lies
for i in $(seq 200); do head -c $((RANDOM * 7 + i)) /dev/urandom >"payload/lies/file-with-a-long-name-$i.bin"; done
"$RV" create payload/lies -o lies.torrent -l 16K >/dev/null
IH=$("$RV" info --json lies.torrent | $PY -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')

n=3
for mode in wrongbytes wrongsize oversize; do
    n=$((n + 1))
    LIP=127.0.0.$n
    LIARP=$(free_port "$LIP")
    $PY "$HERE/metadata_liar.py" "$LIP" "$LIARP" lies.torrent "$mode" "$mode.ready" >"$mode.liar.log" 2>&1 &
    pids+=($!)
    wait_file "$mode.ready" || { bad "$mode: liar not ready: $(cat "$mode.liar.log")"; continue; }
    rc=0
    LP=$(free_port 127.0.0.2)
    timeout 60 "$RV" download "magnet:?xt=urn:btih:$IH&x.pe=$LIP:$LIARP&x.pe=127.0.0.2:$LP" -o "out-$mode" \
        --state-dir "state-$mode" --seed-time 0 --listen 127.0.0.20 --port "$(free_port 127.0.0.20)" --json \
        >"$mode.ndjson" 2>"$mode.err" &
    RVPID=$!
    sleep 1
    $PY "$HERE/lt_seeder.py" lies.torrent payload 127.0.0.2 "$LP" "$mode.lt.ready" --ready listen >"$mode.lt.log" 2>&1 &
    LTPID=$!
    pids+=("$LTPID")
    wait "$RVPID" || rc=$?
    kill "$LTPID" 2>/dev/null || true
    wait "$LTPID" 2>/dev/null || true
    if [ $rc -eq 0 ] && diff -r payload/lies "out-$mode/lies" >/dev/null 2>&1; then
        ok "$mode: the download completed byte-identical despite the liar"
    else bad "$mode: exit $rc: $(tail -n 3 "$mode.err" | tr '\n' ' ')"; fi
    said=$(ev "$mode.ndjson" "[e.get('message') for e in kind('metadata') + kind('peer_banned') if '$LIP' in str(e.get('message'))]")
    case "$mode" in
    wrongbytes) want="does not match the info-hash" ;;
    wrongsize) want="does not match the info-hash" ;;
    oversize) want="over the" ;;
    esac
    case "$said" in *"$want"*) ok "$mode: $said" ;; *) bad "$mode: no event naming $LIP with '$want': $(ev "$mode.ndjson" "kind('metadata') + kind('peer_banned')")" ;; esac
    if [ "$mode" != oversize ]; then
        if [ "$(ev "$mode.ndjson" "'$LIP' in str(addrs('peer_banned'))")" = True ]; then ok "$mode: the liar $LIP was banned"
        else bad "$mode: the liar was not banned"; fi
    fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
