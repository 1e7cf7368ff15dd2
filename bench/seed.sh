#!/usr/bin/env bash
# Benchmark: seeding over loopback. Seeder -> leecher pairs, one transfer at a time:
#   rv-lt     rivulet seed       -> libtorrent leecher
#   rv-rv     rivulet seed       -> rivulet download
#   lt-lt     libtorrent seeder  -> libtorrent leecher   (the reference; both high_performance_seed())
#   rv-aria2  rivulet seed       -> aria2c                (when aria2c and opentracker are installed)
#   lt-aria2  libtorrent seeder  -> aria2c
# Not a test: it prints a table and exits 0 unless the setup fails (a transfer that fails or
# writes wrong bytes shows as FAILED in the table).
#
# usage: bench/seed.sh [PATH_TO_RIVULET] [SIZE_MIB] [RUNS]
#        (defaults: build/rivulet, 1024 MiB, 3 runs per pair; medians are printed)
#
# The torrent: SIZE MiB in four files of uneven sizes (as download.sh), v1, 1 MiB pieces, no
# tracker: the leecher is given the seeder with --peer. Each run starts a fresh seeder on
# 127.0.0.2 (data checked before the leecher starts) and a fresh leecher on 127.0.0.3 into an
# empty folder, with the payload read once so the seeder serves from the page cache.
# Per run: wall time from the leecher's start to its exit (every piece verified), the
# seeder's CPU (utime + stime from /proc over that same interval, so its start-up check is not
# counted), the leecher's CPU (user + sys from time(1), start-up included), the seeder's peak
# RSS (VmHWM just before it is stopped, start-up check included) and the leecher's (time(1)).
# aria2c takes no peer by hand: for its pairs the torrent names an HTTP tracker (opentracker on
# 127.0.0.1), the seeder announces (the leecher starts once a scrape shows the seeder), and
# aria2c's wall time ends at its --on-bt-download-complete hook (it lingers after that).
# Environment: PAIRS="rv-lt lt-lt ..." (default: all five, or the first three without aria2c);
# RESULTS=FILE appends one "seed key=value ..." line per pair to FILE (read by bench/goals.sh).
set -euo pipefail
# Loopback only: the DHT starts from no outside router.
export RIVULET_DHT_BOOTSTRAP=

usage() {
    echo "usage: $0 [PATH_TO_RIVULET] [SIZE_MIB] [RUNS]" >&2
    exit 2
}

HERE=$(cd "$(dirname "$0")" && pwd)
[ $# -le 3 ] || usage
RV=${1:-$HERE/../build/rivulet}
SIZE=${2:-1024}
RUNS=${3:-3}
PIECE=1048576
STEP_TIMEOUT=${STEP_TIMEOUT:-600} # seconds for one transfer
case $SIZE in '' | *[!0-9]*) usage ;; esac
case $RUNS in '' | *[!0-9]* | 0) usage ;; esac
[ "$SIZE" -ge 4 ] || { echo "SIZE_MIB must be at least 4" >&2; exit 2; }
[ -x "$RV" ] || { echo "$RV is not an executable" >&2; exit 2; }
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")

INTEROP=$(cd "$HERE/../tests/interop" && pwd)
PY=/usr/bin/python3
$PY -c 'import libtorrent' 2>/dev/null || { echo "$PY cannot import libtorrent" >&2; exit 2; }
command -v /usr/bin/time >/dev/null || { echo "missing tool: /usr/bin/time" >&2; exit 2; }
if [ -z "${PAIRS:-}" ]; then
    PAIRS="rv-lt rv-rv lt-lt"
    if command -v aria2c >/dev/null && command -v opentracker >/dev/null; then
        PAIRS="$PAIRS rv-aria2 lt-aria2"
    else
        echo "note: aria2c or opentracker not installed, the aria2 pairs are left out" >&2
    fi
fi
for p in $PAIRS; do
    case $p in rv-lt | rv-rv | lt-lt | rv-aria2 | lt-aria2) ;; *) echo "unknown pair: $p" >&2; exit 2 ;; esac
done
TRACKED=0
case " $PAIRS " in *-aria2" "*) TRACKED=1 ;; esac

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

WORK=$(mktemp -d "$HERE/out/seed.XXXXXX")
SEEDER=""
LEECH_PIDS=()
stop_seeder() { # SIGINT (rivulet exits 0, lt_seeder stops), then SIGKILL after 10 s
    local p=$SEEDER i
    [ -n "$p" ] || return 0
    SEEDER=""
    kill -INT "$p" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}
TRACKER_PID=""
cleanup() {
    stop_seeder
    if [ -n "$TRACKER_PID" ]; then
        kill "$TRACKER_PID" 2>/dev/null || true
        wait "$TRACKER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$WORK"

free_port() { $PY "$INTEROP/free_port.py" "$@"; } # IP; see free_port.py
now_ns() { date +%s%N; }
tcp_up() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# ---------------------------------------------------------------- payload and torrent
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
TRACKER_ARGS=()
if [ $TRACKED -eq 1 ]; then
    HP=$(free_port 127.0.0.1)
    ANNOUNCE=http://127.0.0.1:$HP/announce
    TRACKER_ARGS=(--tracker "0,$ANNOUNCE")
fi
timeout 300 $PY "$INTEROP/lt_make.py" "$PAYLOAD" t.torrent --piece-size $PIECE --creator bench/seed.sh \
    "${TRACKER_ARGS[@]}"
INFO_HASH=$($PY -c 'import libtorrent as lt, sys; print(lt.torrent_info(sys.argv[1]).info_hashes().v1)' t.torrent)
if [ $TRACKED -eq 1 ]; then
    chmod 755 "$WORK" # opentracker drops privileges and must read the whitelist
    echo "$INFO_HASH" >whitelist
    chmod 644 whitelist
    opentracker -i 127.0.0.1 -p "$HP" -P "$HP" -w "$WORK/whitelist" >opentracker.log 2>&1 &
    TRACKER_PID=$!
fi
seeders_listed() { # how many seeders the tracker lists for the torrent (its scrape)
    $PY - "$ANNOUNCE" "$INFO_HASH" <<'PY' 2>/dev/null || echo 0
import sys, urllib.parse, urllib.request, libtorrent as lt
url = sys.argv[1].replace("/announce", "/scrape")
ih = bytes.fromhex(sys.argv[2])
with urllib.request.urlopen(url + "?info_hash=" + urllib.parse.quote(ih), timeout=2) as r:
    d = lt.bdecode(r.read())
print(d[b"files"].get(ih, {}).get(b"complete", 0))
PY
}

lt_ver=$($PY -c 'import libtorrent as lt; print(lt.__version__)')
rv_ver=$("$RV" --version 2>/dev/null | head -n 1 | awk '{ print $NF }')
echo "payload: $SIZE MiB in 4 files ($s1 $s2 $s3 $s4 bytes), 1 MiB pieces, v1, no tracker"
echo "rivulet $rv_ver; libtorrent $lt_ver (seeder and leecher with high_performance_seed())"
echo "machine: $(nproc) cores, $(awk '/^MemTotal:/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo); $RUNS run(s) per pair; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- one run
start_seeder() { # rivulet|libtorrent: starts it on 127.0.0.2:$SPORT, waits until it seeds
    local kind=$1 i ready=0
    SPORT=$(free_port 127.0.0.2)
    rm -rf "$WORK/seedstate" "$WORK/seed.out" "$WORK/seed.ready"
    if [ "$kind" = rivulet ]; then
        # no `timeout` around it (it would relay SIGINT to the group); --seed-time bounds it
        local notr=--no-trackers
        [ $TRACKED -eq 0 ] || notr=--no-dht
        "$RV" seed t.torrent -d "$WORK" --listen 127.0.0.2 --port "$SPORT" "$notr" --json \
            --seed-time 60 --state-dir "$WORK/seedstate" >seed.out 2>seed.err &
    else
        $PY "$INTEROP/lt_seeder.py" t.torrent "$WORK" 127.0.0.2 "$SPORT" seed.ready --ready listen \
            --check --high-performance --seconds 3600 >seed.out 2>seed.err &
    fi
    SEEDER=$!
    for ((i = 0; i < 1200; i++)); do # up to 120 s for the start-up check
        kill -0 "$SEEDER" 2>/dev/null || break
        if [ "$kind" = rivulet ]; then
            grep -q '"event":"finished"' seed.out 2>/dev/null && tcp_up 127.0.0.2 "$SPORT" && { ready=1; break; }
        else
            [ -s seed.ready ] && { ready=1; break; }
        fi
        sleep 0.1
    done
    [ $ready -eq 1 ] || { echo "the $kind seeder did not start: $(tail -n 3 seed.err | tr '\n' ' ')" >&2; exit 1; }
    [ $TRACKED -eq 1 ] || return 0
    # the tracker must list it before a leecher that finds peers only there starts
    for ((i = 0; i < 100; i++)); do
        [ "$(seeders_listed)" -ge 1 ] && return 0
        sleep 0.2
    done
    echo "the $kind seeder did not announce to the tracker" >&2
    exit 1
}

verify() { # 1 when the leecher's copy equals the payload
    local f
    for f in "$PAYLOAD"/*; do
        cmp -s "$f" "$WORK/out/payload/$(basename "$f")" || { echo 0; return; }
    done
    echo 1
}

run_pair() { # name seeder_kind leecher_kind; appends "wall seed_cpu leech_cpu seed_rss leech_rss ok"
    local name=$1 skind=$2 lkind=$3 lport sb sa t0 t1 rc=0 shwm good
    rm -rf "$WORK/out" "$WORK/leechstate" "$WORK/leech.done" "$WORK/aria2.done"
    mkdir "$WORK/out"
    sync
    cat "$PAYLOAD"/* >/dev/null
    start_seeder "$skind"
    lport=$(free_port 127.0.0.3)
    sb=$(cpu_ticks "$SEEDER")
    t0=$(now_ns)
    if [ "$lkind" = aria2 ]; then
        rm -f aria2.done
        printf '#!/bin/sh\ndate +%%s%%N > %s/aria2.done\n' "$WORK" >aria2-done.sh
        chmod +x aria2-done.sh
        /usr/bin/time -f "%U %S %M" -o leech.time timeout -s KILL "$STEP_TIMEOUT" \
            aria2c --no-conf --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
            --enable-peer-exchange=false --disable-ipv6=true --interface=127.0.0.3 \
            --listen-port="$lport" --seed-time=0 --dir="$WORK/out" --file-allocation=falloc \
            --summary-interval=0 --console-log-level=warn \
            --on-bt-download-complete="$WORK/aria2-done.sh" t.torrent >"$name.log" 2>&1 || rc=$?
    elif [ "$lkind" = rivulet ]; then
        /usr/bin/time -f "%U %S %M" -o leech.time timeout -s KILL "$STEP_TIMEOUT" \
            "$RV" download --seed-time 0 t.torrent -o "$WORK/out" --peer "127.0.0.2:$SPORT" \
            --no-trackers --no-dht -q --listen 127.0.0.3 --port "$lport" \
            --state-dir "$WORK/leechstate" --on-complete "date +%s%N >$WORK/leech.done" \
            >"$name.log" 2>&1 || rc=$?
    else
        /usr/bin/time -f "%U %S %M" -o leech.time timeout -s KILL "$STEP_TIMEOUT" \
            $PY "$INTEROP/lt_leecher.py" t.torrent "$WORK/out" 127.0.0.3 "$lport" \
            --peer "127.0.0.2:$SPORT" --high-performance --seconds $((STEP_TIMEOUT - 10)) \
            --done-file "$WORK/leech.done" >"$name.log" 2>&1 || rc=$?
    fi
    t1=$(now_ns)
    # the wall time ends at each leecher's own completion signal: aria2c's and rivulet's hooks,
    # libtorrent's torrent_finished alert (aria2c lingers a few seconds after it, rivulet syncs
    # the files to disk, libtorrent flushes its cache)
    if [ "$lkind" = aria2 ] && [ -s aria2.done ]; then cp aria2.done leech.done; fi
    if [ -s leech.done ]; then t1=$(cat leech.done); elif [ "$rc" -eq 0 ]; then rc=1; fi
    sa=$(cpu_ticks "$SEEDER")
    shwm=$(hwm_kib "$SEEDER")
    kill -0 "$SEEDER" 2>/dev/null || { rc=1; echo "warning: $name: the seeder died" >&2; }
    stop_seeder
    good=$(verify)
    [ "$rc" -eq 0 ] || good=0
    # time(1): its last line (earlier ones may say "Command exited with non-zero status")
    tail -n 1 leech.time | awk -v t0="$t0" -v t1="$t1" -v sb="$sb" -v sa="$sa" -v tick="$TICK" \
        -v shwm="${shwm:-0}" -v ok="$good" '{ printf "%.3f %.2f %.2f %d %d %d\n", (t1 - t0) / 1e9,
            (sa - sb) / tick, $1 + $2, shwm, $3, ok }' >>"$name.runs"
    tail -n 1 "$name.runs" | awk '{ printf "  wall %s s, seeder CPU %s s, leecher CPU %s s, RSS %d/%d MiB%s\n",
        $1, $2, $3, $4 / 1024, $5 / 1024, $6 ? "" : ", FAILED" }' >&2
    [ "$good" -eq 1 ] || echo "warning: $name: exit $rc, or its files differ from the payload" \
        "(log: $(tail -n 3 "$name.log" | tr '\n' ' '); seeder: $(tail -n 3 seed.err | tr '\n' ' '))" >&2
    rm -rf "$WORK/out"
}

for r in $(seq "$RUNS"); do
    for p in $PAIRS; do
        echo "run $r/$RUNS: $p" >&2
        case $p in
        rv-lt) run_pair rv-lt rivulet libtorrent ;;
        rv-rv) run_pair rv-rv rivulet rivulet ;;
        lt-lt) run_pair lt-lt libtorrent libtorrent ;;
        rv-aria2) run_pair rv-aria2 rivulet aria2 ;;
        lt-aria2) run_pair lt-aria2 libtorrent aria2 ;;
        esac
    done
done

# ---------------------------------------------------------------- the table
median_col() { # file column
    awk -v c="$2" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
label() {
    case $1 in
    rv-lt) echo "rivulet -> libtorrent" ;;
    rv-rv) echo "rivulet -> rivulet" ;;
    lt-lt) echo "libtorrent -> libtorrent" ;;
    rv-aria2) echo "rivulet -> aria2c" ;;
    lt-aria2) echo "libtorrent -> aria2c" ;;
    esac
}
echo
echo "seeder -> leecher           wall s   (min-max)  MiB/s   seeder CPU s/GiB   leecher CPU s/GiB   seeder RSS MiB   leecher RSS MiB"
for p in $PAIRS; do
    f=$p.runs
    range=$(awk 'NR == 1 || $1 < lo { lo = $1 } NR == 1 || $1 > hi { hi = $1 }
                 END { printf "%.1f-%.1f", lo, hi }' "$f")
    okruns=$(awk '{ s += $6 } END { print s }' "$f")
    awk -v t="$(label "$p")" -v w="$(median_col "$f" 1)" -v sc="$(median_col "$f" 2)" \
        -v lc="$(median_col "$f" 3)" -v sr="$(median_col "$f" 4)" -v lr="$(median_col "$f" 5)" \
        -v s="$SIZE" -v rg="$range" -v ok="$okruns" -v n="$RUNS" 'BEGIN {
        ws = w > 0 ? w : 0.001
        printf "%-26s %7.2f %11s %6.0f %18.2f %19.2f %16.0f %17.0f%s\n", t, w, "(" rg ")", s / ws,
               sc * 1024 / s, lc * 1024 / s, sr / 1024, lr / 1024,
               ok == n ? "" : sprintf("  (%d of %d runs FAILED)", n - ok, n) }'
    if [ -n "${RESULTS:-}" ]; then
        awk -v p="$p" -v w="$(median_col "$f" 1)" -v sc="$(median_col "$f" 2)" \
            -v lc="$(median_col "$f" 3)" -v sr="$(median_col "$f" 4)" -v lr="$(median_col "$f" 5)" \
            -v s="$SIZE" -v ok="$okruns" -v n="$RUNS" 'BEGIN { ws = w > 0 ? w : 0.001
            printf "seed pair=%s runs=%d ok=%d wall=%.3f mibs=%.1f seed_cpu_gib=%.3f leech_cpu_gib=%.3f seed_rss_mib=%.1f leech_rss_mib=%.1f\n",
                   p, n, ok, w, s / ws, sc * 1024 / s, lc * 1024 / s, sr / 1024, lr / 1024 }' >>"$RESULTS"
    fi
done
echo
echo "relative to libtorrent seeding to the same leecher:  wall   seeder CPU   leecher CPU"
for p in $PAIRS; do
    case $p in *-aria2) ref=lt-aria2 ;; *) ref=lt-lt ;; esac
    [ -s "$ref.runs" ] && [ "$p" != "$ref" ] || continue
    awk -v t="$(label "$p") (vs $(label "$ref"))" -v w="$(median_col "$p.runs" 1)" \
        -v sc="$(median_col "$p.runs" 2)" -v lc="$(median_col "$p.runs" 3)" \
        -v rw="$(median_col "$ref.runs" 1)" -v rs="$(median_col "$ref.runs" 2)" \
        -v rl="$(median_col "$ref.runs" 3)" 'BEGIN {
        rw = rw > 0 ? rw : 0.001; rs = rs > 0 ? rs : 0.001; rl = rl > 0 ? rl : 0.001
        printf "%-52s %6.2fx %11.2fx %12.2fx\n", t, w / rw, sc / rs, lc / rl }'
done
echo
echo "wall: leecher start to its own completion signal (every piece verified: rivulet's and aria2c's"
echo "hooks, libtorrent's torrent_finished alert)."
echo "seeder CPU: utime + stime over that interval (its start-up check excluded); leecher CPU:"
echo "user + sys from time(1), start-up included (python + libtorrent for the libtorrent leecher)."
echo "seeder RSS: VmHWM just before it is stopped (start-up check included); leecher: time(1)."
echo "libtorrent 2.0 reads and writes through mmap: its RSS counts the mapped file pages."
echo "Both sides share the machine's $(nproc) cores; the payload is in the page cache."
