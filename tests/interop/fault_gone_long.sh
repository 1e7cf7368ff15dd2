#!/usr/bin/env bash
# A seeder gone longer than rivulet's tries to reach it is found again when the tracker names it
# again. rivulet is told of a libtorrent seeder by a tracker that asks for an announce every
# minute; the seeder is not up yet, so the dial is refused, and with --peer-retries 3 rivulet
# gives up after the third try (3 s, then 6 s later). The seeder then starts (from a copy of
# the torrent without trackers: it never dials rivulet). rivulet must not dial it while given
# up, and must dial it, download everything and exit 0 once the tracker's next answer names it
# again.
#
# usage: tests/interop/fault_gone_long.sh path/to/rivulet
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
rv_test_init gone "$@"
rv_need_libtorrent

nconnected() { grep -c '"event":"peer_connected"' run.ndjson 2>/dev/null || true; }
nannounces() { wc -l < tracker.log 2>/dev/null || echo 0; }

mkdir -p data/payload
head -c 3000000 /dev/urandom > data/payload/a.bin
head -c 1000000 /dev/urandom > data/payload/b.bin
TP=$(free_port 127.0.0.1)
SEED_PORT=$(free_port 127.0.0.2)
"$RV" create -q data/payload -o t.torrent --piece-size 64K -t "http://127.0.0.1:$TP/announce"
"$RV" create -q data/payload -o bare.torrent --piece-size 64K

# The tracker asks for an announce every 60 s (rivulet's floor) and always names the seeder.
$PY "$HERE/log_tracker.py" --interval 60 127.0.0.1 "$TP" tracker.log "127.0.0.2:$SEED_PORT" \
    2> tracker.err &
pids+=($!)
wait_tcp 127.0.0.1 "$TP" 10 || bad "the tracker did not start: $(tail -n 3 tracker.err)"

t0=$(now_ms)
"$RV" download --seed-time 0 --no-dht --peer-retries 3 --listen 127.0.0.3 \
    --port "$(free_port 127.0.0.3)" --state-dir st t.torrent -o out --json > run.ndjson 2> run.err &
rv=$!
pids+=($rv)

# Refused at once, 3 s later and 9 s after the first: given up. The seeder comes up after that.
wait_file tracker.log 10 || bad "rivulet never announced"
sleep 12
$PY "$HERE/lt_seeder.py" bare.torrent data 127.0.0.2 "$SEED_PORT" seed.ready --ready listen \
    2> seed.err &
pids+=($!)
wait_file seed.ready 30 || { bad "seeder not ready: $(tail -n 3 seed.err)"; exit 1; }
t_seed=$(now_ms)

# Without --peer-retries 3 the fourth try (12 s after the third) would reach it by now.
sleep 12
n=$(nconnected)
a=$(nannounces)
[ "$n" -eq 0 ] && [ "$a" -eq 1 ] \
    && ok "given up after 3 refused tries: no dial to the seeder in the $(( ($(now_ms) - t_seed) / 1000 )) s it has been up" \
    || bad "$n connection(s), $a announce(s) in the first $(( ($(now_ms) - t0) / 1000 )) s"

# The announce a minute after the first names the seeder again: rivulet dials it and finishes.
t_ann=
t_conn=
for ((i = 0; i < 900; i++)); do
    [ -z "$t_ann" ] && [ "$(nannounces)" -ge 2 ] && t_ann=$(now_ms)
    [ -z "$t_conn" ] && [ "$(nconnected)" -ge 1 ] && t_conn=$(now_ms)
    kill -0 "$rv" 2> /dev/null || break
    sleep 0.1
done
rc=0
if kill -0 "$rv" 2> /dev/null; then
    bad "still running $(( ($(now_ms) - t0) / 1000 )) s after the start"
    kill -9 "$rv" 2> /dev/null || true
fi
wait "$rv" || rc=$?
[ -n "$t_ann" ] && ok "announced again $(( (t_ann - t0) / 1000 )) s after the start" \
    || bad "no second announce"
[ -n "$t_ann" ] && [ -n "$t_conn" ] && [ "$t_conn" -ge "$t_ann" ] && [ $((t_conn - t_ann)) -le 5000 ] \
    && ok "dialled the seeder again $((t_conn - t_ann)) ms after the tracker named it again" \
    || bad "connection at ${t_conn:-never}, second announce at ${t_ann:-never} (ms since epoch)"
first=$($PY "$EV" run.ndjson '(kind("peer_connected") or [{}])[0].get("message","").split(" ")[0]')
[ "$first" = "127.0.0.2:$SEED_PORT" ] && ok "the peer was the seeder ($first)" \
    || bad "connected to '$first', not 127.0.0.2:$SEED_PORT"
[ "$rc" -eq 0 ] && ok "exit 0" || bad "exit $rc: $(tail -n 2 run.err | tr '\n' ' ')"
if diff -r data/payload out/payload > /dev/null 2>&1; then ok "byte-identical"; else bad "files differ"; fi

rv_test_done
