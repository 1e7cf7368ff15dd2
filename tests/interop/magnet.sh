#!/usr/bin/env bash
# Magnet links end to end (BEP 9/10), each byte-identical:
#  - x.pe only, pointing at a libtorrent seeder: metadata, then data; the .torrent lands in the
#    state folder and a second run takes it from there (no metadata event);
#  - tr only (opentracker over HTTP) with the same libtorrent seeder;
#  - an aria2c seeder found through opentracker, and a transmission-daemon seeder dialled by
#    x.pe: both serve the metadata;
#  - --metadata-only -o FILE.torrent: the saved file has the original info-hash and files;
#  - a libtorrent leecher given only a magnet link and our seeder's address gets the metadata
#    and the data from rivulet.
# usage: tests/interop/magnet.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"
have() { command -v "$1" >/dev/null; }
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }
have opentracker || { echo "SKIP: opentracker missing"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-magnet.XXXXXX")
chmod 755 "$WORK"
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
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
wait_file() { local i; for ((i = 0; i < 300; i++)); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }
ev() { $PY "$EV" "$@"; }
hash_of() { "$RV" info --json "$1" | $PY -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])'; }

# A non-private multi-file payload of uneven sizes, 64 KiB pieces.
mkdir -p payload/mag/sub
head -c 3000001 /dev/urandom >payload/mag/a.bin
head -c 1234567 /dev/urandom >payload/mag/sub/b.bin
head -c 77777 /dev/urandom >payload/mag/sub/c.bin
HP=$(free_port 127.0.0.1)
"$RV" create payload/mag -o mag.torrent -l 64K -t "http://127.0.0.1:$HP/announce" >/dev/null
IH=$(hash_of mag.torrent)
echo "$IH" >whitelist
chmod 644 whitelist
opentracker -i 127.0.0.1 -p "$HP" -P "$HP" -w "$WORK/whitelist" >opentracker.log 2>&1 &
pids+=($!)

LP=$(free_port 127.0.0.2)
$PY "$HERE/lt_seeder.py" mag.torrent payload 127.0.0.2 "$LP" lt.ready --ready listen >lt.log 2>&1 &
LTPID=$!
pids+=("$LTPID")
wait_file lt.ready || { bad "libtorrent seeder not ready: $(tail -n 3 lt.log)"; echo "$pass passed, $fail failed"; exit 1; }

# run LABEL MAGNET: downloads into out-LABEL with state folder state-LABEL
run() {
    local label=$1 uri=$2 state=${3:-state-$1} rc=0
    timeout 90 "$RV" download "$uri" -o "out-$label" --state-dir "$state" --seed-time 0 \
        --listen 127.0.0.10 --port "$(free_port 127.0.0.10)" --json >"$label.ndjson" 2>"$label.err" || rc=$?
    if [ $rc -eq 0 ]; then ok "$label: exit 0"; else bad "$label: exit $rc: $(tail -n 3 "$label.err" | tr '\n' ' ')"; fi
    if diff -r payload/mag "out-$label/mag" >"$label.diff" 2>&1; then ok "$label: byte-identical"
    else bad "$label: files differ: $(head -n 3 "$label.diff" | tr '\n' ' ')"; fi
}

# 1. x.pe only
run xpe "magnet:?xt=urn:btih:$IH&dn=mag&x.pe=127.0.0.2:$LP"
m=$(ev xpe.ndjson "[e.get('message') for e in kind('metadata') if not e.get('code')]")
case "$m" in *bytes\ from\ peers*) ok "xpe: $m" ;; *) bad "xpe: no metadata event: $m" ;; esac
if cmp -s <("$RV" info --json "state-xpe/$IH.torrent" | $PY -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])') <(echo "$IH"); then
    ok "xpe: state folder keeps $IH.torrent"
else bad "xpe: no usable $IH.torrent in the state folder: $(ls state-xpe)"; fi
rm -rf out-xpe
run xpe-again "magnet:?xt=urn:btih:$IH&x.pe=127.0.0.2:$LP" state-xpe
if [ "$(ev xpe-again.ndjson "len(kind('metadata'))")" = 0 ]; then ok "xpe-again: metadata taken from the state folder"
else bad "xpe-again: fetched the metadata again"; fi

# 2. tr only (opentracker knows the libtorrent seeder once it announced)
for _ in $(seq 50); do $PY - "$HP" "$IH" <<'PY' && break || sleep 0.2
import sys, urllib.request, libtorrent as lt
port, h = sys.argv[1], bytes.fromhex(sys.argv[2])
q = urllib.parse.quote_from_bytes(h)
body = urllib.request.urlopen(f"http://127.0.0.1:{port}/scrape?info_hash={q}", timeout=2).read()
sys.exit(0 if lt.bdecode(body).get(b"files", {}).get(h, {}).get(b"complete", 0) >= 1 else 1)
PY
done
run tr "magnet:?xt=urn:btih:$IH&tr=http%3A%2F%2F127.0.0.1%3A$HP%2Fannounce"
if [ "$(ev tr.ndjson "any('ok' in str(e.get('message','')) for e in kind('tracker'))")" = True ]; then
    ok "tr: peers from the tracker: $(ev tr.ndjson "kind('tracker')[0].get('message')")"
else bad "tr: no tracker answer: $(ev tr.ndjson "kind('tracker')")"; fi

# 5. --metadata-only
rc=0
timeout 60 "$RV" download --metadata-only "magnet:?xt=urn:btih:$IH&x.pe=127.0.0.2:$LP" -o only.torrent \
    --state-dir state-only --listen 127.0.0.10 --port "$(free_port 127.0.0.10)" -q 2>only.err || rc=$?
if [ $rc -eq 0 ] && [ "$(hash_of only.torrent)" = "$IH" ] && [ ! -e mag ] && [ ! -e ./out-only ]; then
    ok "metadata-only: only.torrent has info-hash $IH, no data written"
else bad "metadata-only: exit $rc, $(cat only.err) $(ls)"; fi
if diff <("$RV" info only.torrent | grep -v -i 'tracker\|announce\|created') <("$RV" info mag.torrent | grep -v -i 'tracker\|announce\|created') >only.diff; then
    ok "metadata-only: rivulet info shows the same files and pieces as the original"
else bad "metadata-only: info differs: $(head -n 4 only.diff | tr '\n' ' ')"; fi
stop_pid "$LTPID"

# 6. a libtorrent leecher with a magnet link, fed by our seeder
SP=$(free_port 127.0.0.3)
mkdir -p state-seed
"$RV" seed mag.torrent -d payload --listen 127.0.0.3 --port "$SP" --no-trackers --state-dir state-seed -q \
    >seed.log 2>&1 &
SPID=$!
pids+=("$SPID")
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.3/$SP") 2>/dev/null && break; sleep 0.1; done
rc=0
timeout 60 $PY "$HERE/lt_leecher.py" "magnet:?xt=urn:btih:$IH" ltout 127.0.0.4 "$(free_port 127.0.0.4)" \
    --peer "127.0.0.3:$SP" --seconds 50 >ltleech.log 2>&1 || rc=$?
if [ $rc -eq 0 ] && diff -r payload/mag ltout/mag >ltleech.diff 2>&1; then
    ok "libtorrent leecher: metadata and data from rivulet, byte-identical ($(tail -n 1 ltleech.log))"
else bad "libtorrent leecher: exit $rc, $(tail -n 2 ltleech.log | tr '\n' ' ') $(head -n 2 ltleech.diff 2>/dev/null | tr '\n' ' ')"; fi
stop_pid "$SPID"

# 3. aria2c, found through the tracker (it cannot be given a peer by hand)
if have aria2c; then
    AP=$(free_port 127.0.0.5)
    aria2c --no-conf --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
        --enable-peer-exchange=false --disable-ipv6=true --interface=127.0.0.5 \
        --listen-port="$AP" --seed-ratio=0 --check-integrity=true --bt-seed-unverified=false \
        --dir="$WORK/payload" --summary-interval=0 --console-log-level=warn \
        --bt-tracker-interval=5 mag.torrent >aria2.log 2>&1 &
    APID=$!
    pids+=("$APID")
    seen=0
    for _ in $(seq 150); do
        if $PY - "$HP" "$IH" <<'PY'
import sys, urllib.request, libtorrent as lt
port, h = sys.argv[1], bytes.fromhex(sys.argv[2])
q = urllib.parse.quote_from_bytes(h)
body = urllib.request.urlopen(f"http://127.0.0.1:{port}/scrape?info_hash={q}", timeout=2).read()
# the libtorrent seeder stopped (its 'stopped' reached the tracker): a seeder now is aria2
sys.exit(0 if lt.bdecode(body).get(b"files", {}).get(h, {}).get(b"complete", 0) >= 1 else 1)
PY
        then seen=1; break; fi
        sleep 0.2
    done
    [ $seen -eq 1 ] || bad "aria2: never announced as a seeder: $(tail -n 3 aria2.log)"
    run aria2 "magnet:?xt=urn:btih:$IH&tr=http%3A%2F%2F127.0.0.1%3A$HP%2Fannounce"
    who=$(ev aria2.ndjson "[e.get('message') for e in kind('peer_connected')]")
    case "$who" in *127.0.0.5:$AP*) ok "aria2: metadata and data from aria2c ($who)" ;;
        *) bad "aria2: never connected to aria2c at 127.0.0.5:$AP: $who" ;; esac
    stop_pid "$APID"
else echo "skip aria2 part: aria2c missing"; fi

# 4. transmission-daemon, dialled through x.pe (it never dials loopback itself)
if have transmission-daemon && have transmission-remote; then
    RPC=$(free_port 127.0.0.1)
    TP=$(free_port 127.0.0.6)
    mkdir -p cfg
    cat >cfg/settings.json <<JSON
{"dht-enabled": false, "lpd-enabled": false, "pex-enabled": false, "utp-enabled": false,
 "port-forwarding-enabled": false, "bind-address-ipv6": "::1", "rpc-whitelist-enabled": true,
 "rpc-whitelist": "127.0.0.1", "start-added-torrents": true, "ratio-limit-enabled": false,
 "idle-seeding-limit-enabled": false}
JSON
    transmission-daemon -f -g "$WORK/cfg" -O -Y -M --no-utp -i 127.0.0.6 -r 127.0.0.1 -T \
        -p "$RPC" -P "$TP" -w "$WORK/payload" >transmission.log 2>&1 &
    TPID=$!
    pids+=("$TPID")
    added=0
    for _ in $(seq 100); do
        transmission-remote "127.0.0.1:$RPC" -a mag.torrent >/dev/null 2>&1 && { added=1; break; }
        sleep 0.1
    done
    info=""
    for _ in $(seq 300); do
        info=$(transmission-remote "127.0.0.1:$RPC" -t 1 -i 2>/dev/null || true)
        grep -q 'Percent Done: 100%' <<<"$info" && break
        sleep 0.1
    done
    if [ $added -eq 1 ] && grep -q 'Percent Done: 100%' <<<"$info"; then
        run transmission "magnet:?xt=urn:btih:$IH&x.pe=127.0.0.6:$TP"
        who=$(ev transmission.ndjson "[e.get('message') for e in kind('peer_connected')]")
        case "$who" in *127.0.0.6:$TP*) ok "transmission: metadata and data from transmission-daemon ($who)" ;;
            *) bad "transmission: never connected: $who" ;; esac
    else bad "transmission: daemon not seeding: $(grep -E 'State|Percent|Error' <<<"$info" | tr '\n' ' ')"; fi
    stop_pid "$TPID"
else echo "skip transmission part: transmission-daemon missing"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
