#!/usr/bin/env bash
# Benchmark: many idle torrents. N (default 1000) small single-file torrents seeded in one
# session with no peers at all: what the session costs while nothing happens, and how long a
# restart takes until every torrent seeds again from its resume data. rivulet against
# transmission-daemon (row left out when it is not installed). Not a test: it prints a table
# and exits 0 unless the setup fails.
#
# usage: bench/idle.sh [PATH_TO_RIVULET] [N]      (defaults: build/rivulet, 1000)
#        DURATION=60 (seconds measured while idle), SETTLE=10 (seconds waited before that)
#
# For each client:
#   1. start it on all N torrents (data already complete, in one folder), wait until all N
#      seed (rivulet: N "finished" events with --json; Transmission: `transmission-remote -l`
#      shows N torrents at 100 % and Idle or Seeding), wait SETTLE s, then measure over DURATION
#      s: CPU % of one core (utime + stime deltas of /proc/PID/stat, all threads), wakeups/s
#      (voluntary context switches of all its threads), RSS (VmRSS at the end) and peak RSS
#      (VmHWM, start-up check included);
#   2. stop it (rivulet: SIGINT; Transmission: SIGTERM; both save their resume data) and start
#      it again: the restart time runs from the start of the process until all N seed again.
# Loopback only (127.0.0.2 rivulet, 127.0.0.3 Transmission), no trackers, DHT/LSD/PEX/UPnP/
# NAT-PMP off, no peer ever connects.
set -euo pipefail
export RIVULET_DHT_BOOTSTRAP=

usage() {
    echo "usage: $0 [PATH_TO_RIVULET] [N]" >&2
    exit 2
}
HERE=$(cd "$(dirname "$0")" && pwd)
[ $# -le 2 ] || usage
RV=${1:-$HERE/../build/rivulet}
N=${2:-1000}
DURATION=${DURATION:-60}
SETTLE=${SETTLE:-10}
for v in "$N" "$DURATION" "$SETTLE"; do
    case $v in '' | *[!0-9]*) usage ;; esac
done
[ "$N" -ge 1 ] && [ "$DURATION" -ge 1 ] || usage
[ -x "$RV" ] || { echo "$RV is not an executable" >&2; exit 2; }
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
PY=/usr/bin/python3
$PY -c 'import libtorrent' 2>/dev/null || { echo "$PY cannot import libtorrent" >&2; exit 2; }
HAVE_TR=0
command -v transmission-daemon >/dev/null && command -v transmission-remote >/dev/null && HAVE_TR=1
[ $HAVE_TR -eq 1 ] || echo "note: transmission-daemon/-remote not installed, its row is left out" >&2

# about 544 KiB a torrent on average (64 KiB to 1 MiB), plus resume data and margin
mkdir -p "$HERE/out"
need_mib=$((N * 600 / 1024 + 64))
avail_mib=$(df -Pm "$HERE/out" | awk 'NR == 2 { print $4 }')
if [ "$avail_mib" -lt "$need_mib" ]; then
    echo "not enough space in $HERE/out: ${avail_mib} MiB free, need $need_mib" >&2
    exit 1
fi

WORK=$(mktemp -d "$HERE/out/idle.XXXXXX")
PID=""
STOP_S=0
stop_pid() { # SIGNAL: stops $PID, SIGKILL after 30 s; sets STOP_S to the seconds it took
    local p=$PID sig=$1 i t0
    [ -n "$p" ] || return 0
    PID=""
    t0=$(date +%s%N)
    kill "-$sig" "$p" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    STOP_S=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
}
cleanup() {
    stop_pid KILL
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$WORK"

TICK=$(getconf CLK_TCK)
now_ns() { date +%s%N; }
free_port() { $PY "$HERE/../tests/interop/free_port.py" "$@"; } # IP; see free_port.py
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
wakeups() { # voluntary context switches over all threads of PID
    cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches:/ { s += $2 } END { print s + 0 }'
}
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
measure() { # PID NAME: idle figures over DURATION s -> NAME.idle "cpu_pct wakeups_per_s rss_kib hwm_kib threads"
    local p=$1 c0 c1 w0 w1 t0 t1
    sleep "$SETTLE"
    c0=$(cpu_ticks "$p"); w0=$(wakeups "$p"); t0=$(now_ns)
    sleep "$DURATION"
    c1=$(cpu_ticks "$p"); w1=$(wakeups "$p"); t1=$(now_ns)
    kill -0 "$p" 2>/dev/null || { echo "$2 died while idle" >&2; exit 1; }
    awk -v c="$((c1 - c0))" -v w="$((w1 - w0))" -v t0="$t0" -v t1="$t1" -v tick="$TICK" \
        -v rss="$(status_kib "$p" VmRSS)" -v hwm="$(status_kib "$p" VmHWM)" \
        -v th="$(ls "/proc/$p/task" | wc -l)" 'BEGIN { s = (t1 - t0) / 1e9
        printf "%.3f %.1f %d %d %d\n", 100 * c / tick / s, w / s, rss, hwm, th }' >"$2.idle"
    awk '{ printf "  idle: CPU %.3f %%, %.1f wakeups/s, RSS %.1f MiB (peak %.1f MiB), %d threads\n",
           $1, $2, $3 / 1024, $4 / 1024, $5 }' "$2.idle" >&2
}
secs_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }'; }

# ---------------------------------------------------------------- the torrents
echo "making $N torrents ..." >&2
t0=$(now_ns)
timeout 900 $PY "$HERE/make_many.py" "$WORK/data" "$WORK/tor" "$N"
data_mib=$(du -sm "$WORK/data" | awk '{ print $1 }')
echo "  $N torrents, $data_mib MiB of data, made in $(secs_since "$t0") s" >&2
cat "$WORK"/data/* >/dev/null # both clients check from the page cache
TORRENTS=("$WORK"/tor/*.torrent)
echo "$N single-file v1 torrents (64 KiB to 1 MiB each, $data_mib MiB in all, no tracker), all seeding, no peers"
echo "machine: $(nproc) cores; idle measured over $DURATION s after $SETTLE s; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- rivulet
rv_start() { # OUT: starts rivulet seed on all N; sets PID
    "$RV" seed --no-trackers --no-dht --listen 127.0.0.2 --port "$RVPORT" --json \
        --state-dir "$WORK/rvstate" -d "$WORK/data" "${TORRENTS[@]}" >"$1" 2>"$1.err" &
    PID=$!
}
rv_wait_all() { # OUT LIMIT_S: waits until N finished events; prints the seconds from T0
    local i n=0
    for ((i = 0; i < $2 * 50; i++)); do
        n=$(grep -c '"event":"finished"' "$1" 2>/dev/null || true)
        n=${n:-0}
        [ "$n" -ge "$N" ] && { secs_since "$T0"; return 0; }
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.02
    done
    echo "rivulet: $n of $N torrents seeding ($(tail -n 2 "$1.err" | tr '\n' ' '))" >&2
    exit 1
}
RVPORT=$(free_port 127.0.0.2)
echo "rivulet: first start (checks all the data)" >&2
T0=$(now_ns)
rv_start rv1.json
rv_first=$(rv_wait_all rv1.json 600)
echo "  all $N seeding after $rv_first s" >&2
measure "$PID" rivulet
stop_pid INT
rv_stop=$STOP_S
echo "rivulet: restart with resume data (stop took $rv_stop s)" >&2
T0=$(now_ns)
rv_start rv2.json
rv_restart=$(rv_wait_all rv2.json 120)
trusted=$(grep -c '"message":"checked 0 pieces' rv2.json || true)
echo "  all $N seeding after $rv_restart s; $trusted of $N from resume data without hashing" >&2
stop_pid INT

# ---------------------------------------------------------------- Transmission
if [ $HAVE_TR -eq 1 ]; then
    mkdir trcfg
    cat >trcfg/settings.json <<JSON
{
    "dht-enabled": false, "lpd-enabled": false, "pex-enabled": false, "utp-enabled": false,
    "port-forwarding-enabled": false, "bind-address-ipv6": "::1",
    "rpc-whitelist-enabled": true, "rpc-whitelist": "127.0.0.1",
    "start-added-torrents": true, "ratio-limit-enabled": false,
    "idle-seeding-limit-enabled": false, "message-level": 1,
    "download-queue-enabled": false, "seed-queue-enabled": false, "queue-stalled-enabled": false
}
JSON
    RPC=$(free_port 127.0.0.1)
    TPORT=$(free_port 127.0.0.3)
    tr_start() {
        transmission-daemon -f -g "$WORK/trcfg" -O -Y -M --no-utp -i 127.0.0.3 -r 127.0.0.1 -T \
            -p "$RPC" -P "$TPORT" -w "$WORK/data" >>transmission.log 2>&1 &
        PID=$!
    }
    tr_wait_all() { # LIMIT_S: polls until N torrents are at 100 % and Idle/Seeding
        local i n=0
        for ((i = 0; i < $1 * 10; i++)); do
            n=$(transmission-remote "127.0.0.1:$RPC" -l 2>/dev/null |
                grep -cE '^ +[0-9]+\*? +100% .* (Idle|Seeding) ' || true)
            [ "$n" -ge "$N" ] && { secs_since "$T0"; return 0; }
            kill -0 "$PID" 2>/dev/null || break
            sleep 0.1
        done
        echo "transmission: $n of $N torrents seeding" >&2
        exit 1
    }
    echo "transmission: first start, adding $N torrents (100 per transmission-remote call)" >&2
    T0=$(now_ns)
    tr_start
    for ((i = 0; i < 100; i++)); do
        transmission-remote "127.0.0.1:$RPC" -l >/dev/null 2>&1 && break
        sleep 0.1
    done
    for ((i = 0; i < N; i += 100)); do
        args=()
        for f in "${TORRENTS[@]:i:100}"; do args+=(-a "$f"); done
        transmission-remote "127.0.0.1:$RPC" "${args[@]}" >>transmission.log 2>&1
    done
    tr_first=$(tr_wait_all 900)
    echo "  all $N seeding after $tr_first s" >&2
    measure "$PID" transmission
    stop_pid TERM
    tr_stop=$STOP_S
    echo "transmission: restart with its resume data (stop took $tr_stop s)" >&2
    T0=$(now_ns)
    tr_start
    tr_restart=$(tr_wait_all 300)
    echo "  all $N seeding after $tr_restart s" >&2
    stop_pid TERM
fi

# ---------------------------------------------------------------- the table
rv_ver=$("$RV" --version 2>/dev/null | head -n 1 | awk '{ print $NF }')
echo
printf "%-22s %8s %10s %8s %9s %8s %9s %9s\n" client "CPU %" "wakeups/s" "RSS MiB" "peak MiB" threads \
    "start s" "restart s"
row() { # label idlefile first restart
    awk -v l="$1" -v f="$3" -v r="$4" '{ printf "%-22s %8.3f %10.1f %8.1f %9.1f %8d %9.2f %9.2f\n",
        l, $1, $2, $3 / 1024, $4 / 1024, $5, f, r }' "$2"
}
row "rivulet $rv_ver" rivulet.idle "$rv_first" "$rv_restart"
if [ -n "${RESULTS:-}" ]; then
    awk -v n="$N" -v f="$rv_first" -v r="$rv_restart" '{ printf "idle tool=rivulet torrents=%d cpu_pct=%.3f wakeups=%.1f rss_mib=%.1f hwm_mib=%.1f start_s=%.2f restart_s=%.2f\n",
        n, $1, $2, $3 / 1024, $4 / 1024, f, r }' rivulet.idle >>"$RESULTS"
    [ $HAVE_TR -eq 0 ] || awk -v n="$N" -v f="$tr_first" -v r="$tr_restart" '{ printf "idle tool=transmission torrents=%d cpu_pct=%.3f wakeups=%.1f rss_mib=%.1f hwm_mib=%.1f start_s=%.2f restart_s=%.2f\n",
        n, $1, $2, $3 / 1024, $4 / 1024, f, r }' transmission.idle >>"$RESULTS"
fi
if [ $HAVE_TR -eq 1 ]; then
    tr_ver=$(transmission-daemon -V 2>&1 | awk '{ print $2 }' | head -n 1)
    row "transmission $tr_ver" transmission.idle "$tr_first" "$tr_restart"
    echo
    read -r rc rw rr _ _ <rivulet.idle
    read -r tc tw trr _ _ <transmission.idle
    awk -v rc="$rc" -v rw="$rw" -v rr="$rr" -v tc="$tc" -v tw="$tw" -v trr="$trr" \
        -v rs="$rv_restart" -v ts="$tr_restart" 'function q(a, b) { return b > 0 ? sprintf("%.2fx", a / b) : "-" }
        BEGIN { printf "rivulet / transmission: CPU %s, wakeups %s, RSS %s, restart %s\n",
                q(rc, tc), q(rw, tw), q(rr, trr), q(rs, ts) }'
fi
echo
awk -v c="$(awk '{ print $1 }' rivulet.idle)" -v r="$(awk '{ print $3 }' rivulet.idle)" -v s="$rv_restart" 'BEGIN {
    printf "goals for rivulet: idle CPU <= 1 %% of a core: %s; RSS <= 100 MiB: %s; restart < 2 s: %s\n",
        c <= 1 ? "met" : "MISSED", r <= 102400 ? "met" : "MISSED", s < 2 ? "met" : "MISSED" }'
echo "rivulet's restart: $trusted of $N torrents trusted their resume data without hashing."
echo "start s: first start until all seed (every byte checked); restart s: process start until all"
echo "seed again (rivulet: N 'finished' events; transmission: polled with transmission-remote -l"
echo "every 0.1 s, which adds up to 0.1 s plus the time of a listing of N torrents)."
