#!/usr/bin/env bash
# Benchmark: downloading a torrent over loopback from fast libtorrent seeders (one by default),
# rivulet against aria2c, Transmission, libtorrent, ctorrent and rtorrent. Not a test: it prints a table and exits 0 unless the
# setup fails (a leecher that fails or writes wrong bytes shows as such in the table).
#
# usage: bench/download.sh PATH_TO_RIVULET [SIZE_MIB]     (SIZE_MIB defaults to 1024)
#
# The torrent: SIZE MiB in four files of uneven sizes, private, v1, 1 MiB pieces (PIECE_KIB),
# one HTTP tracker (opentracker on 127.0.0.1). The seeders: SEEDERS (default 1) python3-libtorrent
# processes with lt.high_performance_seed(), the first on 127.0.0.2, the others on 127.0.1.2,
# 127.0.1.3, ..., data checked up front and in the page cache. The leechers, one at a time, each
# from an empty folder and each on its own address:
#   rivulet download            (finds the seeder through the tracker; exits when done)
#   aria2c --seed-time=0        (tracker; done = its --on-bt-download-complete hook ran)
#   transmission-daemon         (done = transmission-remote says 100 %; Transmission never
#                                dials loopback, so the seeder dials it; "encryption": 0, i.e.
#                                plain TCP like the others)
#   libtorrent, default settings, and libtorrent with high_performance_seed() (tracker)
#   ctorrent -e 0               (when installed; tracker; done = its -X hook ran, it is then
#                                stopped: its last announce takes long)
#   rtorrent                    (when installed; system.daemon.set = true, DHT/PEX/UDP trackers
#                                off; done = its event.download.finished hook ran; it may stall
#                                near the end, so it gets RT_TIMEOUT s, default 300, then FAILED)
# Per leecher: wall time (start to done), MiB/s, CPU seconds (user + sys of the leecher's
# process, from time(1)) and per GiB, peak RSS, the seeders' CPU seconds over the same run, and
# how busy the busiest seeder thread was (a seeder-bound rate shows as a thread near 100 %).
# Environment: RUNS (default 1) repeats the whole round, medians are printed; SEEDERS=N seeders
# (default 1; e.g. 4); PIECE_KIB piece size (default 1024; e.g. 256); LEECHERS="rivulet aria2 ..."
# runs only these (names as in the table: rivulet aria2 transmission libtorrent libtorrent-hp
# ctorrent rtorrent; also rivulet-cached, not run unless named: rivulet with --cached-writes,
# i.e. through the page cache like the others); INSTALL=1 first runs `apt-get install -y ctorrent rtorrent`; SLOW_RUNS=N
# runs Transmission and rtorrent (20 to 50 times slower than the others) in the first N rounds
# only (default: every round); RESULTS=FILE appends one "download key=value ..." line per
# leecher to FILE (what bench/goals.sh reads).
set -euo pipefail
# Loopback only: the DHT starts from no outside router.
export RIVULET_DHT_BOOTSTRAP=

usage() {
    echo "usage: $0 PATH_TO_RIVULET [SIZE_MIB]" >&2
    exit 2
}

if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
RV=$1
SIZE=${2:-1024}
RUNS=${RUNS:-1}
SEEDERS=${SEEDERS:-1}
PIECE_KIB=${PIECE_KIB:-1024}
RT_TIMEOUT=${RT_TIMEOUT:-300}
SLOW_RUNS=${SLOW_RUNS:-$RUNS}
case $SIZE in '' | *[!0-9]*) usage ;; esac
case $RUNS in '' | *[!0-9]* | 0) echo "RUNS must be a positive number" >&2; exit 2 ;; esac
case $SLOW_RUNS in '' | *[!0-9]* | 0) echo "SLOW_RUNS must be a positive number" >&2; exit 2 ;; esac
case $SEEDERS in '' | *[!0-9]* | 0) echo "SEEDERS must be a number from 1 to 200" >&2; exit 2 ;; esac
[ "$SEEDERS" -le 200 ] || { echo "SEEDERS must be a number from 1 to 200" >&2; exit 2; }
case $PIECE_KIB in 16 | 32 | 64 | 128 | 256 | 512 | 1024 | 2048 | 4096 | 8192 | 16384) ;;
*) echo "PIECE_KIB must be a power of two from 16 to 16384" >&2; exit 2 ;; esac
case $RT_TIMEOUT in '' | *[!0-9]* | 0) echo "RT_TIMEOUT must be a number of seconds" >&2; exit 2 ;; esac
PIECE=$((PIECE_KIB * 1024))
[ "$SIZE" -ge 4 ] || { echo "SIZE_MIB must be at least 4" >&2; exit 2; }
[ -x "$RV" ] || { echo "$RV is not an executable" >&2; exit 2; }
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")

HERE=$(cd "$(dirname "$0")" && pwd)
INTEROP=$(cd "$HERE/../tests/interop" && pwd)
PY=/usr/bin/python3
$PY -c 'import libtorrent' 2>/dev/null || { echo "$PY cannot import libtorrent" >&2; exit 2; }
for t in opentracker /usr/bin/time; do
    command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 2; }
done
if [ "${INSTALL:-0}" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y ctorrent rtorrent >&2
fi
HAVE_ARIA=0
HAVE_TR=0
HAVE_CT=0
HAVE_RT=0
command -v aria2c >/dev/null && HAVE_ARIA=1
command -v ctorrent >/dev/null && HAVE_CT=1
command -v rtorrent >/dev/null && HAVE_RT=1
command -v transmission-daemon >/dev/null && command -v transmission-remote >/dev/null && HAVE_TR=1
[ $HAVE_ARIA -eq 1 ] || echo "note: aria2c not installed, its row is left out" >&2
[ $HAVE_TR -eq 1 ] || echo "note: transmission-daemon/-remote not installed, its row is left out" >&2
[ $HAVE_CT -eq 1 ] || echo "note: ctorrent not installed, its row is left out (INSTALL=1 installs it)" >&2
[ $HAVE_RT -eq 1 ] || echo "note: rtorrent not installed, its row is left out (INSTALL=1 installs it)" >&2

# Payload and one leecher's copy at a time, on the project's disk (not /tmp, maybe a tmpfs).
mkdir -p "$HERE/out"
avail_mib=$(df -Pm "$HERE/out" | awk 'NR == 2 { print $4 }')
if [ "$avail_mib" -lt $((2 * SIZE + 64)) ]; then
    echo "not enough space in $HERE/out: ${avail_mib} MiB free, need $((2 * SIZE + 64))" >&2
    exit 1
fi
mem_mib=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
if [ "$mem_mib" -lt $((SIZE * 5 / 2)) ]; then
    echo "warning: ${mem_mib} MiB of memory available; the payload and a leecher's copy may" \
         "not both stay in the page cache, so disk speed will show in the figures" >&2
fi

WORK=$(mktemp -d "$HERE/out/download.XXXXXX")
chmod 755 "$WORK" # opentracker drops privileges and must read the whitelist
pids=()
drop_pid() { # PID: reaped, so no longer to be killed at exit (its number may be reused)
    local p keep=()
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    pids=("${keep[@]}")
}
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$WORK"

free_port() { $PY "$INTEROP/free_port.py" "$@"; } # IP; see free_port.py
now_ns() { date +%s%N; }
thread_ticks() { # pid...: "pid/tid ticks" for every thread (utime + stime in clock ticks)
    local p t
    for p in "$@"; do
        for t in /proc/"$p"/task/*; do
            awk -v id="$p/${t##*/}" '{ print id, $14 + $15 }' "$t/stat" 2>/dev/null || true
        done
    done
}
busiest_thread() { # before_file after_file wall_s: the share of a core the busiest thread used
    awk -v w="$3" -v tick="$TICK" 'NR == FNR { b[$1] = $2; next }
        { d = $2 - b[$1]; if (d > m) m = d } END { printf "%.2f\n", (w > 0 ? m / tick / w : 0) }' "$1" "$2"
}
cpu_ticks() { # pid...: utime + stime in clock ticks, summed
    local p s=0 t
    for p in "$@"; do
        t=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)
        s=$((s + ${t:-0}))
    done
    echo $s
}
TICK=$(getconf CLK_TCK)
proc_usage() { # pid: "user_s sys_s peak_rss_kib" of a running process, like time -f "%U %S %M"
    local hwm
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0)
    awk -v tick="$TICK" -v hwm="${hwm:-0}" '{ printf "%.2f %.2f %d\n", $14 / tick, $15 / tick, hwm }' \
        "/proc/$1/stat" 2>/dev/null || echo "0 0 0"
}

# ---------------------------------------------------------------- payload, torrent, tracker, seeder
PAYLOAD=$WORK/payload
mkdir "$PAYLOAD"
total=$((SIZE * 1048576))
s1=$((total * 4 / 10 + 12345))
s2=$((total * 3 / 10 - 54321))
s3=$((total * 2 / 10 + 777))
s4=$((total - s1 - s2 - s3))
i=1
for s in $s1 $s2 $s3 $s4; do
    head -c "$s" /dev/urandom >"$PAYLOAD/file$i.bin"
    i=$((i + 1))
done

HP=$(free_port 127.0.0.1)
ANNOUNCE=http://127.0.0.1:$HP/announce
$PY "$INTEROP/lt_make.py" "$PAYLOAD" t.torrent --piece-size $PIECE --private \
    --tracker "0,$ANNOUNCE" --creator bench/download.sh
$PY -c 'import libtorrent as lt, sys; print(lt.torrent_info(sys.argv[1]).info_hashes().v1)' \
    t.torrent >whitelist
chmod 644 whitelist
opentracker -i 127.0.0.1 -p "$HP" -P "$HP" -w "$WORK/whitelist" >opentracker.log 2>&1 &
pids+=($!)
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$HP") 2>/dev/null && break
    sleep 0.1
done

: >dial.txt
SEEDER_PIDS=()
SEEDER_ADDRS=()
for ((k = 1; k <= SEEDERS; k++)); do
    if [ $k -eq 1 ]; then sip=127.0.0.2; else sip=127.0.1.$k; fi
    sport=$(free_port "$sip")
    # every seeder dials what dial.txt lists (Transmission)
    $PY "$INTEROP/lt_seeder.py" t.torrent "$WORK" "$sip" "$sport" "seeder$k.ready" --ready tracker \
        --check --high-performance --dial-file "$WORK/dial.txt" --stats "seeder$k.json" \
        --seconds 86400 2>"seeder$k.err" &
    pids+=($!)
    SEEDER_PIDS+=($!)
    SEEDER_ADDRS+=("$sip:$sport")
done
for ((k = 1; k <= SEEDERS; k++)); do
    for ((i = 0; i < 1200; i++)); do
        [ -s "seeder$k.ready" ] && break
        kill -0 "${SEEDER_PIDS[k - 1]}" 2>/dev/null || break
        sleep 0.1
    done
    [ -s "seeder$k.ready" ] || { echo "libtorrent seeder $k did not start:" >&2; cat "seeder$k.err" >&2; exit 1; }
done
SPORT=${SEEDER_ADDRS[0]##*:}

lt_ver=$($PY -c 'import libtorrent as lt; print(lt.__version__)')
echo "payload: $SIZE MiB in 4 files ($s1 $s2 $s3 $s4 bytes), $PIECE_KIB KiB pieces, private v1"
echo "seeders: $SEEDERS libtorrent $lt_ver (high_performance_seed) on ${SEEDER_ADDRS[*]}; tracker $ANNOUNCE"
echo "machine: $(nproc) cores, $(awk '/^MemTotal:/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo); $RUNS run(s) per leecher; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- measuring one leecher
# Each run: an empty output folder, dirty pages of the previous run flushed, the payload read
# once so the seeder serves from the page cache. Results go to NAME.runs as
# "wall cpu rss_kib seeder_cpu ok seeders_used seeder_busiest_thread" lines.
seed_up() { # bytes each seeder has uploaded so far (its --stats file, rewritten every second)
    local k
    for ((k = 1; k <= SEEDERS; k++)); do
        grep -o '"payload_upload": *[0-9]*' "seeder$k.json" 2>/dev/null | grep -o '[0-9]*$' || echo 0
    done | tr '\n' ' '
}
SU0=""
prepare() {
    rm -rf "$WORK/out"
    mkdir "$WORK/out"
    sync
    cat "$PAYLOAD"/* >/dev/null
    [ "$SEEDERS" -eq 1 ] || SU0=$(seed_up)
    thread_ticks "${SEEDER_PIDS[@]}" >threads.before
}
verify() { # 1 when the leecher's copy equals the payload
    local f
    for f in "$PAYLOAD"/*; do
        cmp -s "$f" "$WORK/out/payload/$(basename "$f")" || { echo 0; return; }
    done
    echo 1
}
record() { # name t0_ns t1_ns timefile seeder_ticks_before rc
    local name=$1 t0=$2 t1=$3 tf=$4 sb=$5 rc=$6 good
    local sa used=1 busy
    sa=$(cpu_ticks "${SEEDER_PIDS[@]}")
    thread_ticks "${SEEDER_PIDS[@]}" >threads.after
    busy=$(busiest_thread threads.before threads.after "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) / 1e9 }')")
    if [ "$SEEDERS" -gt 1 ]; then
        # how many seeders sent this leecher at least 1 MiB (their stats lag up to a second)
        sleep 1.2
        used=$(awk -v a="$SU0" -v b="$(seed_up)" 'BEGIN { n = split(a, x, " "); split(b, y, " ")
            for (i = 1; i <= n; i++) u += (y[i] - x[i] >= 1048576); print u + 0 }')
    fi
    good=$(verify)
    [ "$rc" -eq 0 ] || good=0
    # time(1) -f "%U %S %M": user s, sys s, max RSS KiB (its last line: earlier lines may be
    # "Command exited with non-zero status")
    tail -n 1 "$tf" | awk -v t0="$t0" -v t1="$t1" -v sb="$sb" -v sa="$sa" -v tick="$TICK" \
        -v ok="$good" -v used="$used" -v busy="$busy" '{ printf "%.3f %.3f %d %.2f %d %d %.2f\n", (t1 - t0) / 1e9, $1 + $2, $3,
                        (sa - sb) / tick, ok, used, busy }' >>"$WORK/$name.runs"
    [ "$good" -eq 1 ] || echo "warning: $name: exit $rc, or its files differ from the payload" \
        "(log: $(tail -n 3 "$WORK/$name.log" | tr '\n' ' '))" >&2
}

run_rivulet() { # [NAME EXTRA_ARG...]: rivulet-cached passes --cached-writes
    local name=${1:-rivulet}
    [ $# -eq 0 ] || shift
    prepare
    local sb t0 t1 rc=0
    sb=$(cpu_ticks "${SEEDER_PIDS[@]}")
    t0=$(now_ns)
    rm -f "$name.done"
    /usr/bin/time -f "%U %S %M" -o "$name.time" timeout 900 \
        "$RV" download --seed-time 0 t.torrent -o "$WORK/out" --port "$(free_port 127.0.0.1)" -q \
        --stats --on-complete "date +%s%N >$WORK/$name.done" "$@" >"$name.log" 2>&1 || rc=$?
    t1=$(now_ns)
    # done = its --on-complete hook (every piece verified and written, as the others' hooks);
    # the rest, until it exits, is the sync of the data to disk and the resume data
    if [ -s "$name.done" ]; then
        awk -v a="$(cat "$name.done")" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }' >>"$name.tail"
        t1=$(cat "$name.done")
    elif [ "$rc" -eq 0 ]; then
        rc=1
    fi
    record "$name" "$t0" "$t1" "$name.time" "$sb" "$rc"
}

run_aria2() {
    prepare
    local sb t0 t1 rc=0
    rm -f aria2.done
    printf '#!/bin/sh\ndate +%%s%%N > %s/aria2.done\n' "$WORK" >aria2-done.sh
    chmod +x aria2-done.sh
    sb=$(cpu_ticks "${SEEDER_PIDS[@]}")
    t0=$(now_ns)
    /usr/bin/time -f "%U %S %M" -o aria2.time timeout 900 \
        aria2c --no-conf --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
        --enable-peer-exchange=false --disable-ipv6=true --interface=127.0.0.4 \
        --listen-port="$(free_port 127.0.0.4)" --seed-time=0 --dir="$WORK/out" \
        --file-allocation=falloc --summary-interval=0 --console-log-level=warn \
        --on-bt-download-complete="$WORK/aria2-done.sh" t.torrent >aria2.log 2>&1 || rc=$?
    t1=$(now_ns)
    # aria2 lingers a few seconds after finishing: the wall time ends at its completion hook
    if [ -s aria2.done ]; then t1=$(cat aria2.done); elif [ "$rc" -eq 0 ]; then rc=1; fi
    record aria2 "$t0" "$t1" aria2.time "$sb" "$rc"
}

run_transmission() {
    prepare
    local sb t0 t1 rc=0 rpc tport tpid i info
    rm -rf trcfg
    mkdir trcfg
    cat >trcfg/settings.json <<JSON
{
    "dht-enabled": false, "lpd-enabled": false, "pex-enabled": false, "utp-enabled": false,
    "port-forwarding-enabled": false, "bind-address-ipv6": "::1",
    "rpc-whitelist-enabled": true, "rpc-whitelist": "127.0.0.1",
    "start-added-torrents": true, "ratio-limit-enabled": false,
    "idle-seeding-limit-enabled": false, "message-level": 1, "encryption": 0
}
JSON
    rpc=$(free_port 127.0.0.1)
    tport=$(free_port 127.0.0.5)
    # started directly (not under time(1), whose PID would not be the daemon's): its CPU time
    # and peak RSS come from /proc just before it is stopped
    transmission-daemon -f -g "$WORK/trcfg" -O -Y -M --no-utp -i 127.0.0.5 -r 127.0.0.1 -T \
        -p "$rpc" -P "$tport" -w "$WORK/out" >transmission.log 2>&1 &
    tpid=$!
    pids+=("$tpid")
    for ((i = 0; i < 100; i++)); do
        transmission-remote "127.0.0.1:$rpc" -l >/dev/null 2>&1 && break
        sleep 0.1
    done
    sb=$(cpu_ticks "${SEEDER_PIDS[@]}")
    t0=$(now_ns)
    transmission-remote "127.0.0.1:$rpc" -a t.torrent >>transmission.log 2>&1 || rc=1
    # Transmission never dials a loopback address: the seeder dials it
    echo "127.0.0.5:$tport" >>dial.txt
    t1=""
    local first=""
    for ((i = 0; i < 9000 && rc == 0; i++)); do
        info=$(transmission-remote "127.0.0.1:$rpc" -t 1 -i 2>/dev/null || true)
        if [ -z "$first" ] && grep -qE 'Have: [1-9]' <<<"$info"; then first=$(now_ns); fi
        if grep -q 'Percent Done: 100%' <<<"$info"; then t1=$(now_ns); break; fi
        sleep 0.1
    done
    [ -n "$t1" ] || { rc=1; t1=$(now_ns); }
    proc_usage "$tpid" >transmission.time
    kill "$tpid" 2>/dev/null || true
    wait "$tpid" 2>/dev/null || true
    drop_pid "$tpid"
    [ -n "$first" ] && awk -v a="$t0" -v b="$first" 'BEGIN { printf "%.1f\n", (b - a) / 1e9 }' \
        >>transmission.first
    record transmission "$t0" "$t1" transmission.time "$sb" "$rc"
}

run_libtorrent() { # name ip [--high-performance]
    local name=$1 ip=$2
    shift 2
    prepare
    local sb t0 t1 rc=0
    rm -f "$name.done"
    sb=$(cpu_ticks "${SEEDER_PIDS[@]}")
    t0=$(now_ns)
    /usr/bin/time -f "%U %S %M" -o "$name.time" timeout 900 \
        $PY "$INTEROP/lt_leecher.py" t.torrent "$WORK/out" "$ip" "$(free_port "$ip")" \
        --seconds 880 --done-file "$WORK/$name.done" "$@" >"$name.log" 2>&1 || rc=$?
    t1=$(now_ns)
    # done = its torrent_finished alert (it then flushes its cache and exits)
    if [ -s "$name.done" ]; then t1=$(cat "$name.done"); elif [ "$rc" -eq 0 ]; then rc=1; fi
    record "$name" "$t0" "$t1" "$name.time" "$sb" "$rc"
}

# A leecher that runs in the background under time(1) and says it is done by running a hook
# (touching NAME.done): run_hooked NAME LIMIT_S STOP_SIGNAL CMD... The command runs under
# `sh -c 'echo $$ >NAME.pid; exec CMD'`, so the client itself can be stopped by PID once it is
# done (or at LIMIT_S): CPU and peak RSS from time(1) include its time after the hook.
run_hooked() {
    local name=$1 limit=$2 sig=$3
    shift 3
    local sb t0 t1="" rc=0 tp i p
    rm -f "$name.done" "$name.pid"
    sb=$(cpu_ticks "${SEEDER_PIDS[@]}")
    t0=$(now_ns)
    /usr/bin/time -f "%U %S %M" -o "$name.time" timeout -s KILL $((limit + 60)) \
        sh -c 'echo $$ >"$0.pid"; exec "$@"' "$WORK/$name" "$@" </dev/null >"$name.log" 2>&1 &
    tp=$!
    pids+=("$tp")
    for ((i = 0; i < limit * 20; i++)); do
        [ -e "$name.done" ] && { t1=$(now_ns); break; }
        kill -0 "$tp" 2>/dev/null || break
        sleep 0.05
    done
    [ -n "$t1" ] || { rc=1; t1=$(now_ns); }
    # done (or out of time): give it 5 s to exit by itself, then stop it
    for ((i = 0; i < 50; i++)); do
        kill -0 "$tp" 2>/dev/null || break
        sleep 0.1
    done
    p=$(cat "$name.pid" 2>/dev/null || true)
    if kill -0 "$tp" 2>/dev/null && [ -n "$p" ]; then
        kill "-$sig" "$p" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$tp" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null || true
    fi
    wait "$tp" 2>/dev/null || true
    drop_pid "$tp"
    record "$name" "$t0" "$t1" "$name.time" "$sb" "$rc"
}

run_ctorrent() {
    prepare
    rm -f "$WORK/ctorrent.bf"
    run_hooked ctorrent 900 TERM ctorrent -e 0 -i 127.0.0.8 -p "$(free_port 127.0.0.8)" \
        -s "$WORK/out/payload" -b "$WORK/ctorrent.bf" -X "touch $WORK/ctorrent.done" t.torrent
}

run_rtorrent() {
    prepare
    rm -rf "$WORK/rtsession"
    mkdir "$WORK/rtsession"
    local port
    port=$(free_port 127.0.0.9)
    cat >rtorrent.rc <<RC
directory.default.set = $WORK/out
session.path.set = $WORK/rtsession
network.bind_address.set = 127.0.0.9
network.port_range.set = $port-$port
network.port_random.set = no
dht.mode.set = disable
protocol.pex.set = no
trackers.use_udp.set = no
protocol.encryption.set = allow_incoming,try_outgoing,enable_retry
system.daemon.set = true
method.set_key = event.download.finished, bench_done, "execute.nothrow = touch, $WORK/rtorrent.done"
RC
    run_hooked rtorrent "$RT_TIMEOUT" INT rtorrent -n -o "import=$WORK/rtorrent.rc" "$WORK/t.torrent"
}

TOOLS=rivulet
[ $HAVE_ARIA -eq 1 ] && TOOLS="$TOOLS aria2"
[ $HAVE_TR -eq 1 ] && TOOLS="$TOOLS transmission"
TOOLS="$TOOLS libtorrent libtorrent-hp"
[ $HAVE_CT -eq 1 ] && TOOLS="$TOOLS ctorrent"
[ $HAVE_RT -eq 1 ] && TOOLS="$TOOLS rtorrent"
if [ -n "${LEECHERS:-}" ]; then
    sel=""
    for t in $TOOLS; do
        case " $LEECHERS " in *" $t "*) sel="$sel $t" ;; esac
        # opt-in: rivulet with --cached-writes, after rivulet
        [ "$t" != rivulet ] || case " $LEECHERS " in *" rivulet-cached "*) sel="$sel rivulet-cached" ;; esac
    done
    TOOLS=${sel# }
    case " $TOOLS " in *" rivulet "*) ;; *) echo "LEECHERS must include rivulet (the reference)" >&2; exit 2 ;; esac
fi
for r in $(seq "$RUNS"); do
    for t in $TOOLS; do
        case $t in transmission | rtorrent) [ "$r" -le "$SLOW_RUNS" ] || continue ;; esac
        echo "run $r/$RUNS: $t" >&2
        case $t in
        rivulet) run_rivulet ;;
        rivulet-cached) run_rivulet rivulet-cached --cached-writes ;;
        aria2) run_aria2 ;;
        transmission) run_transmission ;;
        libtorrent) run_libtorrent libtorrent 127.0.0.6 ;;
        libtorrent-hp) run_libtorrent libtorrent-hp 127.0.0.7 --high-performance ;;
        ctorrent) run_ctorrent ;;
        rtorrent) run_rtorrent ;;
        esac
    done
done
rm -rf "$WORK/out"

# ---------------------------------------------------------------- the table
median_col() { # file column
    awk -v c="$2" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
label() {
    case $1 in
    rivulet) echo "rivulet $("$RV" --version 2>/dev/null | awk '{ print $NF }' | head -n 1)" ;;
    rivulet-cached) echo "rivulet --cached-writes" ;;
    aria2) echo "aria2c $(aria2c --version | awk 'NR == 1 { print $3 }')" ;;
    transmission) echo "transmission $(transmission-daemon -V 2>&1 | awk '{ print $2 }' | head -n 1)" ;;
    libtorrent) echo "libtorrent $lt_ver" ;;
    libtorrent-hp) echo "libtorrent $lt_ver (hp)" ;;
    ctorrent) echo "ctorrent $(ctorrent -h 2>&1 | awk 'NR == 1 { print $3 }')" ;;
    rtorrent) echo "rtorrent $(rtorrent -h 2>&1 | awk 'NR == 1 { sub(/\.$/, "", $NF); print $NF }')" ;;
    esac
}
rv_wall=$(median_col rivulet.runs 1)
rv_cpu=$(median_col rivulet.runs 2)
echo
printf "%-26s %7s %11s %7s %7s %9s %8s %8s %8s %8s %8s\n" leecher "wall s" "(min-max)" "MiB/s" \
    "CPU s" "CPU s/GiB" "RSS MiB" "seed CPU" "seed thr" "wall/rv" "CPU/rv"
for t in $TOOLS; do
    f=$t.runs
    wall=$(median_col "$f" 1)
    cpu=$(median_col "$f" 2)
    rss=$(median_col "$f" 3)
    scpu=$(median_col "$f" 4)
    okruns=$(awk '{ s += $5 } END { print s }' "$f")
    nruns=$(wc -l <"$f")
    range=$(awk 'NR == 1 || $1 < lo { lo = $1 } NR == 1 || $1 > hi { hi = $1 }
                 END { printf "%.1f-%.1f", lo, hi }' "$f")
    used=$(median_col "$f" 6)
    sthr=$(median_col "$f" 7)
    awk -v t="$(label "$t")" -v w="$wall" -v c="$cpu" -v r="$rss" -v sc="$scpu" -v s="$SIZE" -v rg="$range" -v st="$sthr" \
        -v rw="$rv_wall" -v rc="$rv_cpu" -v ok="$okruns" -v n="$nruns" -v u="$used" -v ns="$SEEDERS" -v rr="$RUNS" 'BEGIN {
        ws = w > 0 ? w : 0.001; rws = rw > 0 ? rw : 0.001; rcs = rc > 0 ? rc : 0.001
        printf "%-26s %7.2f %11s %7.0f %7.2f %9.2f %8.0f %8.2f %7.0f%% %7.2fx %7.2fx%s%s\n", t, w, "(" rg ")", s / ws, c,
               c * 1024 / s, r / 1024, sc, st * 100, ws / rws, c / rcs,
               ok == n ? "" : sprintf("  (%d of %d runs FAILED)", n - ok, n),
               (ns > 1 ? sprintf("  [%d of %d seeders sent >= 1 MiB]", u, ns) : ""),
               (n < rr ? sprintf("  (%d run%s)", n, n == 1 ? "" : "s") : "") }'
    if [ -n "${RESULTS:-}" ]; then
        awk -v t="$t" -v w="$wall" -v c="$cpu" -v r="$rss" -v sc="$scpu" -v s="$SIZE" -v ok="$okruns" \
            -v n="$nruns" -v ns="$SEEDERS" -v pk="$PIECE_KIB" -v u="$used" -v st="$sthr" 'BEGIN {
            ws = w > 0 ? w : 0.001
            printf "download seeders=%d piece_kib=%d tool=%s runs=%d ok=%d wall=%.3f mibs=%.1f cpu_gib=%.3f rss_mib=%.1f seed_cpu_gib=%.3f seeders_used=%d seed_thread=%.2f\n",
                   ns, pk, t, n, ok, w, s / ws, c * 1024 / s, r / 1024, sc * 1024 / s, u, st }' >>"$RESULTS"
    fi
done
echo
echo "wall: start of the leecher to every piece verified (rivulet, aria2, ctorrent, rtorrent: their"
echo "completion hooks; libtorrent: its torrent_finished alert; transmission: remote reports 100 %,"
echo "polled every 0.1 s). CPU: user + sys of"
echo "the leecher's process tree; seed CPU: the $SEEDERS seeder(s)' over the same run, summed; seed thr:"
echo "the busiest thread of any seeder, in % of one core over the run (near 100 %: that thread, not"
echo "the leecher, sets the rate). All on $(nproc) cores shared with the seeders."
if [ -s transmission.first ]; then
    tf=$(sort -g transmission.first | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    awk -v f="$tf" -v w="$(median_col transmission.runs 1)" -v s="$SIZE" 'BEGIN {
        printf "transmission: its first piece arrived %.1f s after the torrent was added (its start-up\n", f
        r = w - f > 0 ? s / (w - f) : 0
        printf "delay counts in its wall time); from then on it took %.2f s, %.0f MiB/s\n", w - f, r }'
fi
for t in rivulet rivulet-cached; do
    [ -s $t.tail ] || continue
    echo "$t exited $(sort -g $t.tail | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }') s after its hook (median): the fsync of every file and the resume data"
done
rvstats=$(grep -o 'max_rss_kib=[0-9]*\|pieces_in_memory_max=[0-9]*\|disk_queue_max=[0-9]*\|peer_requests_max=[0-9]*\|hash_s=[0-9.]*\|hash_lane_bytes=[0-9]*\|disk_direct_bytes=[0-9]*\|disk_overflow_bytes=[0-9]*' \
    rivulet.log 2>/dev/null | tr '\n' ' ' || true)
[ -z "$rvstats" ] || echo "rivulet --stats, last run: ${rvstats}(piece buffers held: pieces_in_memory_max x $PIECE_KIB KiB)"
echo "libtorrent 2.0 and rtorrent write through mmap: their peak RSS counts the mapped file pages."
echo "the payload stays in the page cache (read before each run) and each leecher's writes go to"
echo "the page cache too (sync between runs), except rivulet's: by default it writes whole 4 KiB"
echo "blocks with O_DIRECT, and through the cache only while the disk is behind (disk_overflow_bytes)"
echo "(rivulet-cached, in LEECHERS, is the same binary with --cached-writes)."
