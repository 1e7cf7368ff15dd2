#!/usr/bin/env bash
# `rivulet download` from seeders other than libtorrent, byte-identical each time:
#  - aria2c seeding a private mktorrent-made torrent, found through a real opentracker (HTTP)
#    (aria2 cannot be given a peer by hand, so it announces and rivulet finds it there);
#  - transmission-daemon seeding a transmission-create-made torrent, given to rivulet with --peer
#    (Transmission never dials loopback addresses, but accepts our connection).
# Each part is skipped (not failed) when its tool is missing; exit 77 when every part was.
#
# usage: tests/interop/download_others.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"

have() { command -v "$1" >/dev/null; }
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }
HAVE_ARIA=0
HAVE_TR=0
have aria2c && have opentracker && have mktorrent && HAVE_ARIA=1
have transmission-daemon && have transmission-remote && have transmission-create && HAVE_TR=1
if [ $HAVE_ARIA -eq 0 ] && [ $HAVE_TR -eq 0 ]; then
    echo "SKIP: neither aria2c+opentracker+mktorrent nor transmission-daemon/-remote/-create installed"
    exit 77
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-dl-others.XXXXXX")
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

stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
rnd() { head -c "$2" /dev/urandom >"$1"; }
lt_pieces() {
    $PY -c 'import libtorrent as lt, sys; print(lt.torrent_info(sys.argv[1]).num_pieces())' "$1"
}
lt_hash() {
    $PY -c 'import libtorrent as lt, sys; print(lt.torrent_info(sys.argv[1]).info_hashes().v1)' "$1"
}
ev() { $PY "$EV" "$@"; }
secs_since() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }

# check_result LABEL TORRENT PAYLOAD_DIR NAME RC SECONDS SEEDER_ADDR
check_result() {
    local label=$1 torrent=$2 payload=$3 name=$4 rc=$5 secs=$6 seeder=$7
    if [ "$rc" -eq 0 ]; then ok "$label: rivulet exits 0 in $secs s"; else
        bad "$label: rivulet exit $rc after $secs s (timeout gives 124): $(tail -n 5 "$label.err" | tr '\n' ' ')"
        tail -n 5 "$label.ndjson"
    fi
    if diff -r "$payload/$name" "out-$label/$name" >"$label.diff" 2>&1; then
        ok "$label: byte-identical ($(du -sb "$payload/$name" | cut -f1) bytes)"
    else bad "$label: files differ: $(head -n 3 "$label.diff" | tr '\n' ' ')"; fi
    local n nv
    n=$(lt_pieces "$torrent")
    nv=$(ev "$label.ndjson" 'len(verified)')
    if [ "$nv" -eq "$n" ]; then ok "$label: $nv/$n pieces verified"; else
        bad "$label: $nv piece_verified events for $n pieces"; fi
    local who
    who=$(ev "$label.ndjson" "[e.get('message') for e in kind('peer_connected') if addr(e) == '$seeder']")
    if [ -n "$who" ]; then ok "$label: peer_connected: $who"; else
        bad "$label: no peer_connected for $seeder: $(ev "$label.ndjson" "addrs('peer_connected')")"; fi
}

# ---------------------------------------------------------------- aria2c via opentracker
aria_part() {
    local HP APORT
    HP=$(free_port 127.0.0.1)
    APORT=$(free_port 127.0.0.2)
    mkdir -p pa/ariadata/sub
    rnd pa/ariadata/one.bin 3000001
    rnd pa/ariadata/sub/two.bin 123457
    : >pa/ariadata/sub/empty
    # private, one tracker on 127.0.0.1: nobody looks for peers anywhere else (BEP 27)
    mktorrent -l 18 -p -a "http://127.0.0.1:$HP/announce" -o aria.torrent pa/ariadata \
        >mktorrent.log 2>&1 || { bad "aria2: mktorrent failed: $(tail -n 2 mktorrent.log)"; return; }
    local hash
    hash=$(lt_hash aria.torrent)
    echo "$hash" >whitelist
    chmod 644 whitelist
    opentracker -i 127.0.0.1 -p "$HP" -P "$HP" -w "$WORK/whitelist" >opentracker.log 2>&1 &
    local otpid=$!
    pids+=("$otpid")
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$HP") 2>/dev/null && break
        sleep 0.1
    done
    aria2c --no-conf --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
        --enable-peer-exchange=false --disable-ipv6=true --interface=127.0.0.2 \
        --listen-port="$APORT" --seed-ratio=0 --check-integrity=true --bt-seed-unverified=false \
        --dir="$WORK/pa" --summary-interval=0 --console-log-level=warn \
        --bt-tracker-interval=5 aria.torrent >aria2.log 2>&1 &
    local apid=$!
    pids+=("$apid")
    # ready: the tracker counts a seeder (aria2 announces once its integrity check is done)
    local i seeders=0
    for ((i = 0; i < 300; i++)); do
        seeders=$($PY - "$HP" "$hash" <<'PY' 2>/dev/null || echo 0
import sys, urllib.request, libtorrent as lt
port, h = sys.argv[1], bytes.fromhex(sys.argv[2])
q = urllib.parse.quote_from_bytes(h)
body = urllib.request.urlopen(f"http://127.0.0.1:{port}/scrape?info_hash={q}", timeout=2).read()
files = lt.bdecode(body).get(b"files", {})
print(files.get(h, {}).get(b"complete", 0))
PY
        )
        [ "${seeders:-0}" -ge 1 ] && break
        kill -0 "$apid" 2>/dev/null || break
        sleep 0.1
    done
    if [ "${seeders:-0}" -ge 1 ]; then
        ok "aria2: aria2c seeding on 127.0.0.2:$APORT, announced to opentracker"
    else
        bad "aria2: aria2c never announced as a seeder: $(tail -n 5 aria2.log | tr '\n' ' ')"
        stop_pid "$apid"
        return
    fi
    local rc=0 t0 secs
    t0=$(date +%s%N)
    timeout 90 "$RV" download --seed-time 0 aria.torrent -o "$WORK/out-aria2" --port "$(free_port 127.0.0.1)" \
        --json >aria2.ndjson 2>aria2.err || rc=$?
    secs=$(secs_since "$t0")
    stop_pid "$apid"
    stop_pid "$otpid"
    check_result aria2 aria.torrent pa ariadata "$rc" "$secs" "127.0.0.2:$APORT"
    if [ "$(ev aria2.ndjson "any('ok' in str(e.get('message','')) for e in kind('tracker'))")" = True ]; then
        ok "aria2: tracker event: $(ev aria2.ndjson "kind('tracker')[0].get('message')")"
    else bad "aria2: no successful tracker event: $(ev aria2.ndjson "kind('tracker')")"; fi
}

# ---------------------------------------------------------------- transmission-daemon via --peer
tr_part() {
    local RPC TPORT
    RPC=$(free_port 127.0.0.1)
    TPORT=$(free_port 127.0.0.3)
    mkdir -p pt/trdata/nested cfg
    rnd pt/trdata/a.bin 2500003
    rnd pt/trdata/nested/b.bin 700001 # (transmission-create leaves out zero-length files)
    transmission-create -s 64 -o tr.torrent pt/trdata >trcreate.log 2>&1 ||
        { bad "transmission: transmission-create failed: $(tail -n 2 trcreate.log)"; return; }
    cat >cfg/settings.json <<JSON
{
    "dht-enabled": false,
    "lpd-enabled": false,
    "pex-enabled": false,
    "utp-enabled": false,
    "port-forwarding-enabled": false,
    "bind-address-ipv6": "::1",
    "rpc-whitelist-enabled": true,
    "rpc-whitelist": "127.0.0.1",
    "peer-port-random-on-start": false,
    "start-added-torrents": true,
    "ratio-limit-enabled": false,
    "idle-seeding-limit-enabled": false
}
JSON
    transmission-daemon -f -g "$WORK/cfg" -O -Y -M --no-utp -i 127.0.0.3 -r 127.0.0.1 -T \
        -p "$RPC" -P "$TPORT" -w "$WORK/pt" >transmission.log 2>&1 &
    local tpid=$!
    pids+=("$tpid")
    local i added=0
    for ((i = 0; i < 100; i++)); do
        if transmission-remote "127.0.0.1:$RPC" -a tr.torrent >tradd.log 2>&1; then added=1; break; fi
        kill -0 "$tpid" 2>/dev/null || break
        sleep 0.1
    done
    [ $added -eq 1 ] || { bad "transmission: cannot add the torrent: $(tail -n 3 tradd.log transmission.log | tr '\n' ' ')"; stop_pid "$tpid"; return; }
    local info=""
    for ((i = 0; i < 300; i++)); do
        info=$(transmission-remote "127.0.0.1:$RPC" -t 1 -i 2>/dev/null || true)
        if grep -q 'Percent Done: 100%' <<<"$info" && grep -qE 'State: (Seeding|Idle)' <<<"$info"; then
            break
        fi
        sleep 0.1
    done
    if grep -q 'Percent Done: 100%' <<<"$info"; then
        ok "transmission: transmission-daemon verified the data and seeds on 127.0.0.3:$TPORT"
    else
        bad "transmission: not seeding: $(grep -E 'State|Percent|Error' <<<"$info" | tr '\n' ' ')"
        stop_pid "$tpid"
        return
    fi
    local rc=0 t0 secs
    t0=$(date +%s%N)
    timeout 90 "$RV" download --seed-time 0 tr.torrent -o "$WORK/out-transmission" --peer "127.0.0.3:$TPORT" \
        --no-trackers --port "$(free_port 127.0.0.1)" --json >transmission.ndjson 2>transmission.err || rc=$?
    secs=$(secs_since "$t0")
    info=$(transmission-remote "127.0.0.1:$RPC" -t 1 -i 2>/dev/null || true)
    stop_pid "$tpid"
    check_result transmission tr.torrent pt trdata "$rc" "$secs" "127.0.0.3:$TPORT"
    echo "     transmission: $(grep -E 'Uploaded:' <<<"$info" | sed 's/^ *//')"
}

if [ $HAVE_ARIA -eq 1 ]; then aria_part; else echo "skip aria2 part: aria2c, opentracker or mktorrent missing"; fi
if [ $HAVE_TR -eq 1 ]; then tr_part; else echo "skip transmission part: transmission-daemon/-remote/-create missing"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
