#!/usr/bin/env bash
# The fast extension (BEP 6) against libtorrent, both ways. Private torrents (no PEX, so peers
# trade only with the seeder), rate-limited seeders with fewer upload slots than leechers, so
# some leechers are choked while they still want data:
#  A. a libtorrent seeder (one unchoke slot; loopback peers made to count against it) and three
#     rivulet leechers: libtorrent says have all (no bitfield) and every download completes
#     byte-identical; the choked leechers ask for their allowed-fast pieces and get them
#     (fast_requested > 0); libtorrent is also made to choke everyone for 3 s mid-download
#     (the rejects it sends then are counted and reported).
#  B. a rivulet seeder (one slot plus one optimistic, 50 KB/s: slow enough that two leechers
#     still want data at the 30 s optimistic rotation) and three libtorrent leechers:
#     rivulet grants BEP 6 allowed-fast sets and serves them to choked libtorrent leechers
#     (fast_served > 0), rejects the requests queued by a leecher it chokes at a choke round or
#     the optimistic rotation at 30 s (rejects_sent > 0), and every leecher completes
#     byte-identical. At the rotation two leechers are unchoked and one is choked; the slot goes
#     to the choked one, so one of the two is choked with its requests queued. (While the slot
#     could go to the leecher that had just lost the regular slot, some runs choked no one and
#     failed here: 1 of 18.)
# usage: tests/interop/fast_ext.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-fast.XXXXXX")
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
stat_max() { ev "$1" "max([e.get('$2', 0) for e in kind('status')] or [0])"; }

mkdir -p payload
head -c 3000000 /dev/urandom >payload/fast.bin
head -c 1000000 /dev/urandom >payload/small.bin
"$RV" create payload/fast.bin -o fast.torrent -l 16K --private >/dev/null
"$RV" create payload/small.bin -o small.torrent -l 16K --private >/dev/null

# ---- A: libtorrent seeds, rivulet leeches
SP=$(free_port 127.0.0.2)
$PY "$HERE/lt_fast_seeder.py" fast.torrent payload 127.0.0.2 "$SP" s.ready --slots 1 \
    --upload-limit 1000000 --choke-file choke >s.log 2>&1 &
SPID=$!
pids+=("$SPID")
wait_file s.ready || { echo "FAIL seeder: $(tail -n 3 s.log)"; exit 1; }
lpids=()
for n in 3 4 5; do
    timeout 120 "$RV" download fast.torrent -o "out-$n" --peer "127.0.0.2:$SP" --no-trackers \
        --listen "127.0.0.$n" --port "$(free_port "127.0.0.$n")" --seed-time 0 --state-dir "st-$n" \
        --json >"r$n.ndjson" 2>"r$n.err" &
    lpids+=($!)
    pids+=($!)
done
sleep 1.5
touch choke
sleep 3
rm -f choke
freq=0 rrecv=0
for i in 0 1 2; do
    n=$((i + 3))
    rc=0
    wait "${lpids[$i]}" || rc=$?
    if [ $rc -eq 0 ] && cmp -s payload/fast.bin "out-$n/fast.bin"; then ok "A: rivulet leecher $n byte-identical (libtorrent sent have all, no bitfield)"
    else bad "A: rivulet leecher $n: exit $rc: $(tail -n 2 "r$n.err" | tr '\n' ' ')"; fi
    freq=$((freq + $(stat_max "r$n.ndjson" fast_requested)))
    rrecv=$((rrecv + $(stat_max "r$n.ndjson" rejects_received)))
done
if [ "$freq" -ge 1 ]; then ok "A: choked by libtorrent, the rivulet leechers asked for $freq allowed-fast blocks"
else bad "A: no allowed-fast request while choked"; fi
# Reported, not asserted: libtorrent 2.0.8 rejects only requests still in its own queue when it
# chokes, and here it had none left (it reads ahead of its rate limit).
echo "     A: reject-request messages libtorrent sent to the rivulet leechers: $rrecv"
kill "$SPID" 2>/dev/null || true
wait "$SPID" 2>/dev/null || true

# ---- B: rivulet seeds, libtorrent leeches
RP=$(free_port 127.0.0.2)
# --encryption disable keeps the timing the reject check was written for (libtorrent's leechers
# reach the seeder on their second try, after their MSE attempt is refused); with MSE on they
# connect a second earlier and in some runs no leecher with queued requests is choked before
# they finish. Encryption has its own test (encryption.sh).
"$RV" seed small.torrent -d payload --listen 127.0.0.2 --port "$RP" --no-trackers --upload-slots 1 \
    --max-upload-rate 50K --state-dir st-seed --json --encryption disable >seed.ndjson 2>seed.err &
RPID=$!
pids+=("$RPID")
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.2/$RP") 2>/dev/null && break; sleep 0.1; done
lpids=()
for n in 6 7 8; do
    timeout 120 $PY "$HERE/lt_leecher.py" small.torrent "lt-$n" "127.0.0.$n" "$(free_port "127.0.0.$n")" \
        --peer "127.0.0.2:$RP" --seconds 110 >"lt$n.log" 2>&1 &
    lpids+=($!)
    pids+=($!)
done
for i in 0 1 2; do
    n=$((i + 6))
    rc=0
    wait "${lpids[$i]}" || rc=$?
    if [ $rc -eq 0 ] && cmp -s payload/small.bin "lt-$n/small.bin"; then ok "B: libtorrent leecher $n byte-identical ($(tail -n 1 "lt$n.log"))"
    else bad "B: libtorrent leecher $n: exit $rc: $(tail -n 2 "lt$n.log" | tr '\n' ' ')"; fi
done
sleep 5.5 # one more status line from the seeder
kill -INT "$RPID" 2>/dev/null || true
wait "$RPID" 2>/dev/null || true
served=$(stat_max seed.ndjson fast_served)
rsent=$(stat_max seed.ndjson rejects_sent)
if [ "$served" -ge 1 ]; then ok "B: rivulet served $served allowed-fast blocks to libtorrent leechers it was choking"
else bad "B: no allowed-fast block served while choked"; fi
if [ "$rsent" -ge 1 ]; then ok "B: rivulet rejected $rsent requests queued by libtorrent leechers it choked"
else bad "B: no reject-request sent"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
