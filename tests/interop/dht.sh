#!/usr/bin/env bash
# A private DHT (BEP 5) on loopback: 12 `rivulet dht` nodes and 8 libtorrent sessions (one of
# them seeding torrent A), every one bootstrapped from the first rivulet node only.
#  - rivulet nodes fill their routing tables from that one address;
#  - `rivulet download` of a magnet link with no tracker and no x.pe finds the libtorrent seeder
#    through the DHT and downloads A byte-identical;
#  - the same torrent with BEP 5 'nodes' and no bootstrap list at all also finds it;
#  - `rivulet seed` of torrent B announces it; a libtorrent leecher given only B's magnet link
#    finds rivulet through the DHT and downloads B from it, byte-identical;
#  - a private torrent D seeded by rivulet the same way is never announced (BEP 27): a lookup
#    finds B's seeder but nobody for D;
#  - IPv6 (BEP 32) on ::1: 6 rivulet nodes, a rivulet seeder of C and a rivulet magnet download
#    of C finding it through the IPv6 DHT, byte-identical.
# usage: tests/interop/dht.sh path/to/rivulet
set -euo pipefail
# Loopback only: no outside DHT router, even when run by hand.
export RIVULET_DHT_BOOTSTRAP=

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-dht.XXXXXX")
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
export XDG_CACHE_HOME="$WORK/cache" # each run starts with an empty saved routing table
. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms
wait_file() { local i; for ((i = 0; i < 300; i++)); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }
ev() { $PY "$EV" "$@"; }
hash_of() { "$RV" info --json "$1" | $PY -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])'; }

mkdir -p pa pb pc pd
head -c 300000 /dev/urandom >pd/d.bin
"$RV" create pd/d.bin -o d.torrent -l 64K --private >/dev/null 2>&1
D=$("$RV" info --json d.torrent | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')
head -c 2000000 /dev/urandom >pa/a.bin
head -c 1500000 /dev/urandom >pb/b.bin
head -c 1000000 /dev/urandom >pc/c.bin
for x in a b c; do "$RV" create "p$x/$x.bin" -o "$x.torrent" -l 64K >/dev/null 2>&1; done
A=$(hash_of a.torrent) B=$(hash_of b.torrent) C=$(hash_of c.torrent)

# ---- the IPv4 network
B0P=$(free_port 127.0.3.1)
BOOT="127.0.3.1:$B0P"
"$RV" dht --listen 127.0.3.1 --port "$B0P" --seconds 170 --interval 2 --json >n1.ndjson 2>&1 &
pids+=($!)
sleep 0.3
for i in $(seq 2 12); do
    "$RV" dht --listen "127.0.3.$i" --port "$(free_port "127.0.3.$i")" --bootstrap "$BOOT" \
        --seconds 170 --interval 2 --json >"n$i.ndjson" 2>&1 &
    pids+=($!)
done
SP=$(free_port 127.0.3.21)
$PY "$HERE/lt_dht.py" 127.0.3.21 "$SP" --bootstrap "$BOOT" --seed a.torrent pa --ready lts.ready \
    --status lts.json --seconds 170 >lts.log 2>&1 &
pids+=($!)
for i in $(seq 22 28); do
    $PY "$HERE/lt_dht.py" "127.0.3.$i" "$(free_port "127.0.3.$i")" --bootstrap "$BOOT" \
        --seconds 170 >"lt$i.log" 2>&1 &
    pids+=($!)
done
wait_file lts.ready || bad "libtorrent seeder did not start: $(tail -n 3 lts.log)"
# the network settles: libtorrent's seeder knows DHT nodes and has announced
for _ in $(seq 100); do
    [ "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1])).get("dht_nodes",0))' lts.json 2>/dev/null || echo 0)" -ge 5 ] && break
    sleep 0.2
done
sleep 6
nodes=$(ev n7.ndjson "max([e.get('nodes4', 0) for e in E] or [0])")
if [ "$nodes" -ge 10 ]; then ok "a rivulet node bootstrapped from one address knows $nodes IPv4 nodes of the 20"
else bad "rivulet node 7 knows only $nodes nodes: $(tail -n 1 n7.ndjson)"; fi

rc=0
timeout 60 "$RV" download "magnet:?xt=urn:btih:$A" -o out-a --listen 127.0.3.30 --port "$(free_port 127.0.3.30)" \
    --dht-bootstrap "$BOOT" --seed-time 0 --state-dir st-a --json >a.ndjson 2>a.err || rc=$?
if [ $rc -eq 0 ] && cmp -s pa/a.bin out-a/a.bin; then ok "magnet with no tracker and no x.pe: found the libtorrent seeder through the DHT, byte-identical"
else bad "DHT magnet download: exit $rc: $(tail -n 3 a.err | tr '\n' ' ')"; fi
if [ "$(ev a.ndjson "'127.0.3.21:$SP' in addrs('peer_connected')")" = True ]; then
    ok "rivulet connected to the libtorrent seeder 127.0.3.21:$SP ($(ev a.ndjson "max([e.get('dht_peers', 0) for e in kind('status')] or [0])") peers from the DHT)"
else bad "never connected to the libtorrent seeder: $(ev a.ndjson "addrs('peer_connected')")"; fi

# the same torrent with BEP 5 'nodes' naming the first node, and no bootstrap at all
$PY - a.torrent a-nodes.torrent 127.0.3.1 "$B0P" <<'PY'
import sys, libtorrent as lt
t = lt.bdecode(open(sys.argv[1], "rb").read())
t[b"nodes"] = [[sys.argv[3].encode(), int(sys.argv[4])]]
open(sys.argv[2], "wb").write(lt.bencode(t))
PY
rc=0
XDG_CACHE_HOME="$WORK/cache-n" timeout 60 "$RV" download a-nodes.torrent -o out-n --listen 127.0.3.34 --port "$(free_port 127.0.3.34)" \
    --seed-time 0 --state-dir st-n --json >n.ndjson 2>n.err || rc=$?
if [ $rc -eq 0 ] && cmp -s pa/a.bin out-n/a.bin; then ok "a .torrent's nodes alone (no bootstrap list) lead to the libtorrent seeder, byte-identical"
else bad ".torrent nodes: exit $rc: $(tail -n 3 n.err | tr '\n' ' ')"; fi

RP=$(free_port 127.0.3.31)
"$RV" seed b.torrent -d pb --listen 127.0.3.31 --port "$RP" --dht-bootstrap "$BOOT" --state-dir st-b \
    --json >b-seed.ndjson 2>b-seed.err &
RSP=$!
pids+=("$RSP")
"$RV" seed d.torrent -d pd --listen 127.0.3.33 --port "$(free_port 127.0.3.33)" --dht-bootstrap "$BOOT" \
    --state-dir st-d -q >d-seed.log 2>&1 &
pids+=($!)
rc=0
timeout 90 $PY "$HERE/lt_dht.py" 127.0.3.32 "$(free_port 127.0.3.32)" --bootstrap "$BOOT" \
    --leech "magnet:?xt=urn:btih:$B" ltb --seconds 80 >ltb.log 2>&1 || rc=$?
if [ $rc -eq 0 ] && cmp -s pb/b.bin ltb/b.bin; then ok "libtorrent found rivulet's torrent through the DHT and downloaded it from rivulet ($(tail -n 1 ltb.log))"
else bad "libtorrent leecher via DHT: exit $rc: $(tail -n 3 ltb.log | tr '\n' ' ')"; fi
"$RV" dht --listen 127.0.3.40 --port "$(free_port 127.0.3.40)" --bootstrap "$BOOT" --get-peers "$B" \
    --seconds 7 --interval 7 --json >look-b.ndjson 2>&1 &
LB=$!
"$RV" dht --listen 127.0.3.41 --port "$(free_port 127.0.3.41)" --bootstrap "$BOOT" --get-peers "$D" \
    --seconds 7 --interval 7 --json >look-d.ndjson 2>&1 || true
wait "$LB" || true
if grep -q "127.0.3.31:$RP" look-b.ndjson && ! grep -q '"event":"peer"' look-d.ndjson; then
    ok "private torrent: a lookup finds the public torrent's seeder but no peer for the private one"
else bad "private torrent: B lookup $(grep -c '"peer"' look-b.ndjson) peers, D lookup $(grep '"peer"' look-d.ndjson | tr '\n' ' ')"; fi
kill -INT "$RSP" 2>/dev/null || true
wait "$RSP" 2>/dev/null || true
up=$(ev b-seed.ndjson "max([e.get('uploaded', 0) for e in kind('status')] or [0])")
if [ "$up" -ge 1500000 ]; then ok "rivulet seeder uploaded $up bytes"; else bad "rivulet seeder uploaded $up bytes"; fi

# ---- IPv6 (BEP 32) on ::1
if $PY -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1",0))' 2>/dev/null; then
    V0=$(free_port ::1)
    "$RV" dht --listen ::1 --port "$V0" --seconds 90 --interval 2 --json >v1.ndjson 2>&1 &
    pids+=($!)
    sleep 0.3
    for i in 2 3 4 5 6; do
        "$RV" dht --listen ::1 --port "$(free_port ::1)" --bootstrap "[::1]:$V0" --seconds 90 \
            --interval 2 --json >"v$i.ndjson" 2>&1 &
        pids+=($!)
    done
    sleep 2
    CP=$(free_port ::1)
    "$RV" seed c.torrent -d pc --listen ::1 --port "$CP" --dht-bootstrap "[::1]:$V0" --state-dir st-c \
        --json >c-seed.ndjson 2>c-seed.err &
    CSP=$!
    pids+=("$CSP")
    sleep 3
    rc=0
    timeout 60 "$RV" download "magnet:?xt=urn:btih:$C" -o out-c --listen ::1 --port "$(free_port ::1)" \
        --dht-bootstrap "[::1]:$V0" --seed-time 0 --state-dir st-c2 --json >c.ndjson 2>c.err || rc=$?
    if [ $rc -eq 0 ] && cmp -s pc/c.bin out-c/c.bin; then ok "IPv6: magnet download through the ::1 DHT from a rivulet seeder, byte-identical"
    else bad "IPv6 DHT download: exit $rc: $(tail -n 3 c.err | tr '\n' ' ')"; fi
    n6=$(ev v4.ndjson "max([e.get('nodes6', 0) for e in E] or [0])")
    if [ "$n6" -ge 4 ]; then ok "IPv6: a rivulet node knows $n6 IPv6 nodes"; else bad "IPv6: node knows $n6 nodes"; fi
    kill -INT "$CSP" 2>/dev/null || true
else
    echo "skip IPv6 part: no ::1"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
