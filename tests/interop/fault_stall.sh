#!/usr/bin/env bash
# The seeder vanishes silently: a rate-limited libtorrent seeder is frozen (SIGSTOP) a third of
# the way into a download, so its connection stays open and says nothing (no FIN, no RST, as
# behind a dead link); its kernel even keeps accepting new connections. rivulet, with
# --peer-timeout 4, must drop the silent peer within the timeout (plus a tick), keep running,
# keep retrying; then the frozen seeder is killed and a new one starts on the same address and
# port, and rivulet must redial it and finish byte-identical within a bound, every piece
# verified once.
#
# usage: tests/interop/fault_stall.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"
PT=4 # --peer-timeout, seconds

$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-stall.XXXXXX")
seeder=
kids=
rv=
cleanup() {
    # a stopped process must be continued to act on SIGTERM; SIGKILL works either way
    for p in $rv $seeder $kids; do kill -9 "$p" 2>/dev/null || true; done
    for p in $rv $seeder; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms
nverified() { grep -c '"event":"piece_verified"' run.ndjson 2> /dev/null || true; }
ndropped() { grep -c '"event":"peer_dropped"' run.ndjson 2> /dev/null || true; }

SEED_PORT=$(free_port 127.0.0.2)
# 16 MiB in 256 pieces of 64 KiB at 2 MB/s: about 8 s of transfer
mkdir -p data/payload
head -c 16777216 /dev/urandom > data/payload/a.bin
NP=256
"$RV" create -q data/payload -o t.torrent --piece-size 64K

start_seeder() {
    rm -f seed.ready
    $PY "$HERE/lt_seeder.py" t.torrent data 127.0.0.2 "$SEED_PORT" seed.ready --ready listen \
        --upload-limit 2000000 2>> seed.err &
    seeder=$!
    wait_file seed.ready 30
}
start_seeder || { bad "seeder not ready: $(tail -n 3 seed.err)"; exit 1; }

t0=$(now_ms)
"$RV" download --seed-time 0 --no-trackers --peer "127.0.0.2:$SEED_PORT" --peer-timeout "$PT" \
    --state-dir st t.torrent -o out --json > run.ndjson 2> run.err &
rv=$!

for ((i = 0; i < 300; i++)); do
    [ "$(nverified)" -ge $((NP / 3)) ] && break
    kill -0 "$rv" 2> /dev/null || break
    sleep 0.1
done
# Under CTest lt_seeder.py runs libtorrent in a child (lt_guard.py): freeze that too.
kids=$(cat "/proc/$seeder/task/$seeder/children" 2> /dev/null || true)
kill -STOP "$seeder" $kids
t_stop=$(now_ms)
before=$(nverified)
[ "$before" -ge $((NP / 3)) ] && [ "$before" -lt $((NP * 2 / 3)) ] \
    && ok "seeder frozen midway ($before of $NP pieces, $((t_stop - t0)) ms in)" \
    || bad "seeder frozen at $before of $NP pieces"

# ---- the silent peer is dropped within the timeout
t_drop=
for ((i = 0; i < (PT + 6) * 10; i++)); do
    [ "$(ndropped)" -ge 1 ] && { t_drop=$(now_ms); break; }
    sleep 0.1
done
why=$($PY "$EV" run.ndjson '(kind("peer_dropped") or [{}])[0].get("message", "")')
if [ -n "$t_drop" ] && [ $((t_drop - t_stop)) -le $((PT * 1000 + 2500)) ]; then
    ok "the silent seeder dropped $((t_drop - t_stop)) ms after it froze: \"$why\""
else bad "no drop within $((PT + 6)) s of the freeze (${t_drop:+$((t_drop - t_stop)) ms}): '$why'"; fi
[[ "$why" == "127.0.0.2:$SEED_PORT"* ]] && [[ "$why" == *"nothing received"* ]] \
    && ok "the drop names the seeder and the silence" || bad "drop reason: '$why'"

# ---- retries meet the frozen seeder's kernel (it accepts, never answers), then it dies
sleep 3
kill -0 "$rv" 2> /dev/null && ok "rivulet still running $(( ($(now_ms) - t_stop) / 1000 )) s after the freeze" \
    || bad "rivulet exited while the seeder was frozen: $(tail -n 2 run.err | tr '\n' ' ')"
during=$(nverified)
{ kill -9 "$seeder" $kids; wait "$seeder"; } 2> /dev/null || true
for k in $kids; do  # gone, and its listening socket with it, before the new seeder binds
    for ((i = 0; i < 50; i++)); do kill -0 "$k" 2> /dev/null || break; sleep 0.1; done
done
seeder=
kids=
start_seeder || bad "seeder did not restart: $(tail -n 3 seed.err)"
t_back=$(now_ms)
nlines_back=$(wc -l < run.ndjson)

rc=0
t_reconn=
for ((i = 0; i < 600; i++)); do
    if [ -z "$t_reconn" ] && tail -n +"$((nlines_back + 1))" run.ndjson | grep -q '"event":"peer_connected"'; then
        t_reconn=$(now_ms)
    fi
    kill -0 "$rv" 2> /dev/null || break
    sleep 0.1
done
if kill -0 "$rv" 2> /dev/null; then
    bad "not finished 60 s after the new seeder started ($(nverified) of $NP pieces)"
    kill -9 "$rv" 2> /dev/null || true
fi
wait "$rv" || rc=$?
rv=
t_end=$(now_ms)
[ "$rc" -eq 0 ] && ok "exit 0, $((t_end - t_back)) ms after the new seeder started" \
    || bad "exit $rc ($(tail -n 2 run.err | tr '\n' ' '))"
# retries double from 3 s (3, 6, 12 s ...); the freeze lasted about PT + 4 s
[ -n "$t_reconn" ] && [ $((t_reconn - t_back)) -le 15000 ] \
    && ok "redialled the seeder $((t_reconn - t_back)) ms after it came back" \
    || bad "reconnected ${t_reconn:+$((t_reconn - t_back)) ms }after the seeder came back (bound 15 s)"
drops=$($PY "$EV" run.ndjson '[e.get("message", "") for e in kind("peer_dropped")]')
echo "  drops: $drops"
total=$($PY "$EV" run.ndjson 'len(verified)')
dup=$($PY "$EV" run.ndjson 'len(kind("piece_verified")) - len(verified)')
[ "$total" -eq "$NP" ] && [ "$dup" -eq 0 ] && ok "every piece verified once ($((NP - during)) after the freeze)" \
    || bad "$total distinct pieces verified, $dup twice"
nf=$($PY "$EV" run.ndjson 'len(failed)')
[ "$nf" -eq 0 ] && ok "no piece failed its hash" || bad "$nf pieces failed their hash"
if cmp -s data/payload/a.bin out/payload/a.bin; then ok "byte-identical"; else bad "files differ"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
