#!/usr/bin/env bash
# The swarm vanishes and comes back: rivulet downloads from a rate-limited libtorrent seeder it
# found through opentracker; midway both the seeder and the tracker are killed (SIGKILL). rivulet
# must keep running (exit only when done), keep retrying, and once both are back on the same
# addresses and ports, resume by itself and finish byte-identical within a bound, without
# fetching again what it had.
#
# The restarted seeder seeds the same data from a copy of the torrent without trackers (the
# same info-hash: trackers are outside the info dictionary), so it never learns rivulet's
# address and never dials it: the reconnection must come from rivulet's own retries of the
# peer it knew. The restarted tracker is an empty opentracker; rivulet's announces to it must
# succeed again.
#
# usage: tests/interop/fault_vanish.sh path/to/rivulet
#   RV_DOWN_S (default 8) seconds the swarm stays away
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"
DOWN_S=${RV_DOWN_S:-8}

$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }
command -v opentracker > /dev/null || { echo "SKIP: opentracker not installed"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-vanish.XXXXXX")
chmod 755 "$WORK" # opentracker drops privileges and must read the whitelist
seeder=
tracker=
rv=
cleanup() {
    for p in $rv $seeder $tracker; do kill "$p" 2>/dev/null || true; done
    for p in $rv $seeder $tracker; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms
nverified() { grep -c '"event":"piece_verified"' run.ndjson 2> /dev/null || true; }

TP=$(free_port 127.0.0.1)
SEED_PORT=$(free_port 127.0.0.2)
RV_PORT=$(free_port 127.0.0.3)
# 16 MiB in 256 pieces of 64 KiB, sent at 2 MB/s: about 8 s of transfer.
mkdir -p data/payload
head -c 12582912 /dev/urandom > data/payload/a.bin
head -c 4194304 /dev/urandom > data/payload/b.bin
NP=256
"$RV" create -q data/payload -o t.torrent --piece-size 64K -t "http://127.0.0.1:$TP/announce"
"$RV" create -q data/payload -o bare.torrent --piece-size 64K
HASH=$("$RV" info --json t.torrent | $PY -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')
HASH2=$("$RV" info --json bare.torrent | $PY -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')
[ "$HASH" = "$HASH2" ] || { bad "the tracker-less copy has another info-hash"; exit 1; }
echo "$HASH" > whitelist
chmod 644 whitelist

start_tracker() {
    opentracker -i 127.0.0.1 -p "$TP" -P "$TP" -w "$WORK/whitelist" >> opentracker.log 2>&1 &
    tracker=$!
    local i
    for ((i = 0; i < 50; i++)); do
        (exec 3<> "/dev/tcp/127.0.0.1/$TP") 2> /dev/null && return 0
        sleep 0.1
    done
    return 1
}
# start_seeder TORRENT READY_ON: the seeder on 127.0.0.2:SEED_PORT, 2 MB/s
start_seeder() {
    rm -f seed.ready
    $PY "$HERE/lt_seeder.py" "$1" data 127.0.0.2 "$SEED_PORT" seed.ready --ready "$2" \
        --upload-limit 2000000 2>> seed.err &
    seeder=$!
    wait_file seed.ready 30
}
# kill_wait PID: SIGKILL one process we started and reap it
kill_wait() { kill -9 "$1" 2> /dev/null || true; wait "$1" 2> /dev/null || true; }

start_tracker || { bad "opentracker did not start: $(tail -n 3 opentracker.log)"; exit 1; }
start_seeder t.torrent tracker || { bad "seeder never announced: $(tail -n 3 seed.err)"; exit 1; }

t0=$(now_ms)
"$RV" download --seed-time 0 --listen 127.0.0.3 --port "$RV_PORT" --state-dir st t.torrent \
    -o out --json > run.ndjson 2> run.err &
rv=$!

# ---- midway: a third of the pieces, then both go
for ((i = 0; i < 300; i++)); do
    [ "$(nverified)" -ge $((NP / 3)) ] && break
    kill -0 "$rv" 2> /dev/null || break
    sleep 0.1
done
before=$(nverified)
kill_wait "$seeder"
kill_wait "$tracker"
seeder= tracker=
t_kill=$(now_ms)
[ "$before" -ge $((NP / 3)) ] && [ "$before" -lt $((NP * 2 / 3)) ] \
    && ok "seeder and tracker killed midway ($before of $NP pieces verified, after $((t_kill - t0)) ms)" \
    || bad "killed at $before of $NP pieces"
from=$($PY "$EV" run.ndjson 'sorted(addrs("peer_connected"))')
[ "$from" = "127.0.0.2:$SEED_PORT" ] && ok "rivulet had found the seeder through the tracker" \
    || bad "rivulet's peers before the kill: $from"

# Pieces whose blocks were all in before the kill may still be verified after it: completed
# pieces wait in memory for neighbours (up to STORAGE_RUN_MAX of them, a tick at most) and the
# hashing jobs take their time. What the first 2 s bring is that; after, nothing may come.
sleep 2
settled=$(nverified)
sleep "$((DOWN_S > 2 ? DOWN_S - 2 : 0))"
if kill -0 "$rv" 2> /dev/null; then ok "rivulet still running after $DOWN_S s without a swarm"; else
    rc=0; wait "$rv" || rc=$?; rv=
    bad "rivulet exited ($rc) while the swarm was away: $(tail -n 2 run.err | tr '\n' ' ')"
fi
during=$(nverified)
[ "$settled" -le $((before + 32)) ] && [ "$during" -eq "$settled" ] \
    && ok "nothing arrived while the swarm was away ($before verified at the kill, $settled 2 s later, $during at the return)" \
    || bad "pieces verified while the seeder was dead: $before at the kill, $settled 2 s later, $during after $DOWN_S s"

# ---- both come back on the same addresses and ports
start_tracker || bad "opentracker did not restart: $(tail -n 3 opentracker.log)"
start_seeder bare.torrent listen || bad "seeder did not restart: $(tail -n 3 seed.err)"
t_back=$(now_ms)
nlines_back=$(wc -l < run.ndjson)

rc=0
t_reconn=
if [ -n "$rv" ]; then
    # bounded: 60 s for the rest (about 6 s of transfer) and the retries
    for ((i = 0; i < 600; i++)); do
        if [ -z "$t_reconn" ] && tail -n +"$((nlines_back + 1))" run.ndjson | grep -q '"event":"peer_connected"'; then
            t_reconn=$(now_ms)
        fi
        kill -0 "$rv" 2> /dev/null || break
        sleep 0.1
    done
    if kill -0 "$rv" 2> /dev/null; then
        bad "not finished 60 s after the swarm came back ($(nverified) of $NP pieces)"
        kill -9 "$rv" 2> /dev/null || true
    fi
    wait "$rv" || rc=$?
    rv=
fi
t_end=$(now_ms)
[ "$rc" -eq 0 ] && ok "exit 0, $((t_end - t_back)) ms after the swarm came back" \
    || bad "exit $rc ($(tail -n 2 run.err | tr '\n' ' '))"
tail -n +"$((nlines_back + 1))" run.ndjson > after.ndjson
# rivulet retries a dropped peer 3 s after the drop, then after 3, 6, 12 s ... (doubling, up to
# 5 min): the try after the return comes at most as long after it as the swarm was away (from
# the kill to its return), plus the first 3 s, plus a second of slack.
away=$((t_back - t_kill))
[ -n "$t_reconn" ] && [ $((t_reconn - t_back)) -le $((away + 4000)) ] \
    && ok "reconnected $((t_reconn - t_back)) ms after the swarm came back ($((t_reconn - t_kill)) ms after the kill, away $away ms)" \
    || bad "reconnected ${t_reconn:+$((t_reconn - t_back)) ms }after the swarm came back (away $away ms, bound $((away + 4000)) ms)"
reconn=$($PY "$EV" after.ndjson '[(e.get("message","")) for e in kind("peer_connected")]')
echo "  after the return: peer_connected $reconn"
first=$($PY "$EV" after.ndjson '(kind("peer_connected") or [{}])[0].get("message","").split(" ")[0]')
[ "$first" = "127.0.0.2:$SEED_PORT" ] && ok "rivulet dialled the seeder again at $first" \
    || bad "after the return rivulet connected to '$first', not 127.0.0.2:$SEED_PORT"
total=$($PY "$EV" run.ndjson 'len(verified)')
dup=$($PY "$EV" run.ndjson 'len(kind("piece_verified")) - len(verified)')
[ "$total" -eq "$NP" ] && [ "$dup" -eq 0 ] && ok "every piece verified once ($((NP - during)) after the return)" \
    || bad "$total distinct pieces verified, $dup twice"
nf=$($PY "$EV" run.ndjson 'len(failed)')
[ "$nf" -eq 0 ] && ok "no piece failed its hash" || bad "$nf pieces failed their hash"
trk=$($PY "$EV" after.ndjson '[e.get("message") for e in E if str(e.get("event","")).startswith("tracker")]')
echo "  tracker events after the return: $trk"
if diff -r data/payload out/payload > /dev/null; then ok "byte-identical"; else bad "files differ"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
