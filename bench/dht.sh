#!/usr/bin/env bash
# Benchmark: a saved DHT routing table against a cold start. Not a test: prints a table.
#
# usage: bench/dht.sh PATH_TO_RIVULET            (RUNS=3 by default)
#
# A private DHT on loopback: 16 `rivulet dht` nodes and one libtorrent seeder announcing a
# torrent. The only bootstrap address is a UDP relay that delays every packet by 300 ms each
# way, standing in for a router on the other side of the world. Each run fetches the torrent's
# metadata from its magnet link (no tracker, no x.pe) with `rivulet download --metadata-only`:
#   cold: an empty cache folder (nothing to start from but the far router)
#   warm: the cache folder the cold run left (its saved routing table is reloaded at start)
# Medians of wall time from start to the saved .torrent, and the ratio.
set -euo pipefail
# Loopback only: the DHT starts from no outside router.
export RIVULET_DHT_BOOTSTRAP=

RV=${1:?usage: $0 PATH_TO_RIVULET}
RUNS=${RUNS:-3}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
INTEROP=$(cd "$HERE/../tests/interop" && pwd)
PY=/usr/bin/python3
$PY -c 'import libtorrent' || { echo "needs python3-libtorrent" >&2; exit 2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-bench-dht.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
free_port() { $PY "$INTEROP/free_port.py" "$@"; } # IP; see free_port.py
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
now() { date +%s%N; }

mkdir -p p
head -c 500000 /dev/urandom >p/x.bin
"$RV" create p/x.bin -o x.torrent -l 64K >/dev/null 2>&1
IH=$("$RV" info --json x.torrent | $PY -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')

N0=$(free_port 127.0.5.1)
"$RV" dht --listen 127.0.5.1 --port "$N0" --seconds 600 --interval 600 >/dev/null 2>&1 &
pids+=($!)
sleep 0.3
for i in $(seq 2 16); do
    "$RV" dht --listen "127.0.5.$i" --port "$(free_port "127.0.5.$i")" --bootstrap "127.0.5.1:$N0" \
        --seconds 600 --interval 600 >/dev/null 2>&1 &
    pids+=($!)
done
SP=$(free_port 127.0.5.20)
$PY "$INTEROP/lt_dht.py" 127.0.5.20 "$SP" --bootstrap "127.0.5.1:$N0" --seed x.torrent p \
    --seconds 600 >seed.log 2>&1 &
pids+=($!)
# the far router: a relay on 127.0.5.30 that forwards to node 1 with 300 ms each way
RP=$(free_port 127.0.5.30)
$PY - "$RP" "$N0" <<'PY' >relay.log 2>&1 &
import heapq, select, socket, sys, time
rp, n0 = int(sys.argv[1]), int(sys.argv[2])
front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); front.bind(("127.0.5.30", rp))
back = {}   # client address -> its own socket toward node 1
q = []      # (due, seq, sock, data, dest)
seq = 0
while True:
    timeout = max(0.0, q[0][0] - time.time()) if q else 1.0
    socks = [front] + list(back.values())
    r, _, _ = select.select(socks, [], [], timeout)
    for s in r:
        data, addr = s.recvfrom(65536)
        if s is front:
            if addr not in back:
                b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.bind(("127.0.5.30", 0))
                back[addr] = b
            heapq.heappush(q, (time.time() + 0.3, seq, back[addr], data, ("127.0.5.1", n0)))
        else:
            client = next(a for a, b in back.items() if b is s)
            heapq.heappush(q, (time.time() + 0.3, seq, front, data, client))
        seq += 1
    while q and q[0][0] <= time.time():
        _, _, s, data, dest = heapq.heappop(q)
        s.sendto(data, dest)
PY
pids+=($!)
sleep 8 # the seeder has announced

for r in $(seq "$RUNS"); do
    rm -rf "cache-$r"
    for kind in cold warm; do
        t0=$(now)
        XDG_CACHE_HOME="$WORK/cache-$r" timeout 60 "$RV" download --metadata-only "magnet:?xt=urn:btih:$IH" \
            -o "$kind-$r.torrent" --listen 127.0.5.40 --port "$(free_port 127.0.5.40)" \
            --dht-bootstrap "127.0.5.30:$RP" --state-dir "st-$kind-$r" -q
        awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }' >>"$kind.times"
    done
done
cold=$(median <cold.times)
warm=$(median <warm.times)
echo "DHT magnet -> metadata, bootstrap router 300 ms away, 17-node loopback DHT, median of $RUNS runs ($(date -u +%F), $(nproc) cores)"
printf '%-28s %8s\n' start seconds
printf '%-28s %8s\n' "cold (empty cache folder)" "$cold"
printf '%-28s %8s\n' "warm (saved routing table)" "$warm"
awk -v c="$cold" -v w="$warm" 'BEGIN { printf "warm/cold: %.2f\n", w / c }'
