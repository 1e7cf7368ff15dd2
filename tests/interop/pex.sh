#!/usr/bin/env bash
# PEX (BEP 11) with libtorrent, both ways. One libtorrent seeder S; rivulet R is told S only;
# libtorrent leechers B and C are told R only; libtorrent leecher D is told B only.
#  - B and C learn S through R's PEX (libtorrent marks them with its pex source flag);
#  - R learns D through libtorrent's PEX (B tells R of D) and connects to it;
#  - everyone's data is byte-identical.
# The seeder is rate-limited so the swarm lives long enough for a PEX round.
# usage: tests/interop/pex.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-pex.XXXXXX")
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

mkdir -p payload/pex
head -c 6000000 /dev/urandom >payload/pex/a.bin
head -c 1000000 /dev/urandom >payload/pex/b.bin
"$RV" create payload/pex -o pex.torrent -l 64K >/dev/null   # public: PEX is allowed (BEP 27)

S=127.0.0.2 R=127.0.0.3 B=127.0.0.4 C=127.0.0.5 D=127.0.0.6
SP=$(free_port $S) RP=$(free_port $R) BP=$(free_port $B) CP=$(free_port $C) DP=$(free_port $D)
# 6.7 MB at 400 KB/s: about 17 s of swarm, two PEX rounds at least
$PY "$HERE/lt_seeder.py" pex.torrent payload $S "$SP" s.ready --ready listen --upload-limit 400000 >s.log 2>&1 &
pids+=($!)
wait_file s.ready || { echo "FAIL seeder: $(tail -n 3 s.log)"; exit 1; }

# --encryption disable: libtorrent's leechers then reach R on their second try, as before MSE
# existed. With MSE on, they connect at once, and in 3 runs of 4 one of B and C never met S:
# both sides seem to learn of each other through PEX and dial at the same moment, and
# libtorrent drops both connections as duplicates. Encryption has its own test (encryption.sh).
"$RV" download pex.torrent -o out-r --peer "$S:$SP" --no-trackers --listen $R --port "$RP" \
    --seed-ratio 0 --seed-time 1 --state-dir state --json --encryption disable >r.ndjson 2>r.err &
RPID=$!
pids+=("$RPID")
for _ in $(seq 100); do (exec 3<>"/dev/tcp/$R/$RP") 2>/dev/null && break; sleep 0.1; done
lt_leech() { # NAME IP PORT PEER
    timeout 120 $PY "$HERE/lt_leecher.py" pex.torrent "out-$1" "$2" "$3" --peer "$4" --seconds 110 \
        --peers-file "$1.peers" --linger 3 >"$1.log" 2>&1
}
lt_leech b $B "$BP" "$R:$RP" &
BPID=$!
pids+=("$BPID")
lt_leech c $C "$CP" "$R:$RP" &
CPID=$!
pids+=("$CPID")
sleep 1
lt_leech d $D "$DP" "$B:$BP" &
DPID=$!
pids+=("$DPID")

for x in b c d; do
    pid_var=${x^^}PID
    rc=0
    wait "${!pid_var}" || rc=$?
    if [ $rc -eq 0 ] && diff -r payload/pex "out-$x/pex" >/dev/null 2>&1; then ok "libtorrent leecher $x: byte-identical ($(tail -n 1 "$x.log"))"
    else bad "libtorrent leecher $x: exit $rc: $(tail -n 2 "$x.log" | tr '\n' ' ')"; fi
done
for x in b c; do
    learnt=$($PY -c 'import json,sys; print(any(p["ip"] == sys.argv[2] and p["pex"] for p in json.load(open(sys.argv[1]))))' "$x.peers" $S)
    if [ "$learnt" = True ]; then ok "libtorrent leecher $x learnt the seeder $S through PEX (from rivulet, the only peer it was told)"
    else bad "libtorrent leecher $x did not learn $S through PEX: $(cat "$x.peers")"; fi
done
kill -INT "$RPID" 2>/dev/null || true
rc=0
wait "$RPID" || rc=$?
if diff -r payload/pex out-r/pex >/dev/null 2>&1; then ok "rivulet: byte-identical (exit $rc)"; else bad "rivulet: data differs (exit $rc)"; fi
if [ "$(ev r.ndjson "'$D:$DP' in addrs('peer_connected')")" = True ]; then
    ok "rivulet connected to $D:$DP, which only libtorrent's PEX could have named"
else bad "rivulet never connected to $D:$DP: $(ev r.ndjson "addrs('peer_connected')")"; fi
n=$(ev r.ndjson "max([e.get('pex_received', 0) for e in kind('status')] or [0])")
if [ "$n" -ge 1 ]; then ok "rivulet: $n peers learnt through PEX"; else bad "rivulet: pex_received $n"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
