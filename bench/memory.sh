#!/usr/bin/env bash
# Benchmark: peak memory of a download against the torrent's size. rivulet downloads a 1 GiB
# and a 4 GiB torrent (by default) from one libtorrent seeder; the peak RSS of each is printed
# side by side with the ratio (the goal: the larger no more than 10 % above the smaller; piece
# data held in memory is capped by --max-memory, so only the piece bitfields and per-piece
# tables should grow). aria2c, when installed, is the anchor (ANCHOR=none leaves it out).
# Not a test: it prints a table and exits 0 unless the setup fails.
#
# usage: bench/memory.sh [PATH_TO_RIVULET] [SIZE_MIB...]     (defaults: build/rivulet 1024 4096)
#        RUNS=N (default 1; medians), ANCHOR=aria2|none (default aria2 when installed),
#        RV_ARGS="--max-memory 16M" (more options for rivulet download, split on spaces)
#
# Per size, one after the other (only one size's payload on disk at a time): a payload of SIZE
# MiB in four files of uneven sizes under bench/out/ (as download.sh), a private v1 torrent with
# 1 MiB pieces and one HTTP tracker (opentracker on 127.0.0.1), a libtorrent seeder
# (high_performance_seed, data checked first) on 127.0.0.2. Then, into an empty folder each:
#   rivulet download --peer 127.0.0.2:PORT --no-trackers --no-dht --stats   (127.0.0.3)
#   aria2c --seed-time=0, DHT/LPD/PEX off, finds the seeder through the tracker (127.0.0.4)
# Peak RSS from /usr/bin/time -f %M (and rivulet's own max_rss_kib from --stats); each copy is
# compared with the payload. The payload and the copies are deleted after each size.
set -euo pipefail
export RIVULET_DHT_BOOTSTRAP=

usage() {
    echo "usage: $0 [PATH_TO_RIVULET] [SIZE_MIB...]" >&2
    exit 2
}
HERE=$(cd "$(dirname "$0")" && pwd)
RV=${1:-$HERE/../build/rivulet}
[ $# -gt 0 ] && shift
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1024 4096)
RUNS=${RUNS:-1}
STEP_TIMEOUT=${STEP_TIMEOUT:-900}
for s in "${SIZES[@]}" "$RUNS"; do
    case $s in '' | *[!0-9]* | 0) usage ;; esac
done
[ -x "$RV" ] || { echo "$RV is not an executable" >&2; exit 2; }
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
INTEROP=$(cd "$HERE/../tests/interop" && pwd)
PY=/usr/bin/python3
$PY -c 'import libtorrent' 2>/dev/null || { echo "$PY cannot import libtorrent" >&2; exit 2; }
for t in opentracker /usr/bin/time; do
    command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 2; }
done
ANCHOR=${ANCHOR:-aria2}
if [ "$ANCHOR" = aria2 ] && ! command -v aria2c >/dev/null; then
    echo "note: aria2c not installed, no anchor" >&2
    ANCHOR=none
fi
case $ANCHOR in aria2 | none) ;; *) usage ;; esac

max=0
for s in "${SIZES[@]}"; do [ "$s" -gt "$max" ] && max=$s; done
mkdir -p "$HERE/out"
avail_mib=$(df -Pm "$HERE/out" | awk 'NR == 2 { print $4 }')
if [ "$avail_mib" -lt $((2 * max + 64)) ]; then
    echo "not enough space in $HERE/out: ${avail_mib} MiB free, need $((2 * max + 64))" >&2
    exit 1
fi
mem_mib=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
if [ "$mem_mib" -lt $((max * 5 / 2)) ]; then
    echo "warning: ${mem_mib} MiB of memory available; the payload and a copy may not both stay" \
         "in the page cache (this changes the speed, not the clients' RSS)" >&2
fi

WORK=$(mktemp -d "$HERE/out/memory.XXXXXX")
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

HP=$(free_port 127.0.0.1)
ANNOUNCE=http://127.0.0.1:$HP/announce
: >whitelist
chmod 644 whitelist
TRACKER=""
start_tracker() { # (re)starts opentracker with the current whitelist
    if [ -n "$TRACKER" ]; then
        kill "$TRACKER" 2>/dev/null || true
        wait "$TRACKER" 2>/dev/null || true
        drop_pid "$TRACKER"
    fi
    opentracker -i 127.0.0.1 -p "$HP" -P "$HP" -w "$WORK/whitelist" >>opentracker.log 2>&1 &
    TRACKER=$!
    pids+=("$TRACKER")
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$HP") 2>/dev/null && break
        sleep 0.1
    done
}

echo "machine: $(nproc) cores, $(awk '/^MemTotal:/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo); $RUNS run(s) per client and size; load average $(cut -d' ' -f1-3 /proc/loadavg)"
[ -z "${RV_ARGS:-}" ] || echo "rivulet download options added: $RV_ARGS"
echo "seeder: libtorrent $($PY -c 'import libtorrent as lt; print(lt.__version__)') (high_performance_seed) on 127.0.0.2; 1 MiB pieces, private v1"

verify() { # 1 when out/payload equals the payload
    local f
    for f in "$PAYLOAD"/*; do
        cmp -s "$f" "$WORK/out/payload/$(basename "$f")" || { echo 0; return; }
    done
    echo 1
}
prepare() {
    rm -rf "$WORK/out" "$WORK/rvstate"
    mkdir "$WORK/out"
    sync
    cat "$PAYLOAD"/* >/dev/null
}

# results: SIZE.CLIENT.runs, lines "wall_s rss_kib stats_rss_kib ok"
for SIZE in "${SIZES[@]}"; do
    echo "size $SIZE MiB: payload, torrent, seeder" >&2
    PAYLOAD=$WORK/payload
    rm -rf "$PAYLOAD" "$WORK/out"
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
    timeout 600 $PY "$INTEROP/lt_make.py" "$PAYLOAD" t.torrent --piece-size 1048576 --private \
        --tracker "0,$ANNOUNCE" --creator bench/memory.sh
    $PY -c 'import libtorrent as lt, sys; print(lt.torrent_info(sys.argv[1]).info_hashes().v1)' \
        t.torrent >whitelist
    start_tracker
    SPORT=$(free_port 127.0.0.2)
    rm -f seeder.ready
    $PY "$INTEROP/lt_seeder.py" t.torrent "$WORK" 127.0.0.2 "$SPORT" seeder.ready --ready tracker \
        --check --high-performance --seconds 86400 2>seeder.err &
    SEEDER=$!
    pids+=("$SEEDER")
    for ((i = 0; i < 3000; i++)); do
        [ -s seeder.ready ] && break
        kill -0 "$SEEDER" 2>/dev/null || break
        sleep 0.1
    done
    [ -s seeder.ready ] || { echo "the libtorrent seeder did not start:" >&2; cat seeder.err >&2; exit 1; }

    for r in $(seq "$RUNS"); do
        echo "  run $r/$RUNS: rivulet" >&2
        prepare
        rc=0
        t0=$(now_ns)
        /usr/bin/time -f "%M" -o rv.time timeout -s KILL "$STEP_TIMEOUT" \
            "$RV" download --seed-time 0 t.torrent -o "$WORK/out" --peer "127.0.0.2:$SPORT" \
            --no-trackers --no-dht --listen 127.0.0.3 --port "$(free_port 127.0.0.3)" -q --stats \
            --state-dir "$WORK/rvstate" ${RV_ARGS:-} >rv.log 2>&1 || rc=$?
        t1=$(now_ns)
        ok=$(verify)
        [ "$rc" -eq 0 ] || ok=0
        stat_of() { grep -o "$1=[0-9.]*" rv.log | cut -d= -f2 | head -n 1 || true; }
        srss=$(stat_of max_rss_kib)
        pim=$(stat_of pieces_in_memory_max)
        dq=$(stat_of disk_queue_max)
        # wall rss_kib stats_rss_kib ok pieces_in_memory_max disk_queue_max
        echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }') $(tail -n 1 rv.time) ${srss:-0} $ok ${pim:-0} ${dq:-0}" \
            >>"$SIZE.rivulet.runs"
        [ "$ok" -eq 1 ] || echo "warning: rivulet $SIZE MiB: exit $rc or wrong data ($(tail -n 2 rv.log | tr '\n' ' '))" >&2
        if [ "$ANCHOR" = aria2 ]; then
            echo "  run $r/$RUNS: aria2c" >&2
            prepare
            rc=0
            rm -f aria2.done
            printf '#!/bin/sh\ndate +%%s%%N > %s/aria2.done\n' "$WORK" >aria2-done.sh
            chmod +x aria2-done.sh
            t0=$(now_ns)
            /usr/bin/time -f "%M" -o aria2.time timeout -s KILL "$STEP_TIMEOUT" \
                aria2c --no-conf --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
                --enable-peer-exchange=false --disable-ipv6=true --interface=127.0.0.4 \
                --listen-port="$(free_port 127.0.0.4)" --seed-time=0 --dir="$WORK/out" \
                --file-allocation=falloc --summary-interval=0 --console-log-level=warn \
                --on-bt-download-complete="$WORK/aria2-done.sh" t.torrent >aria2.log 2>&1 || rc=$?
            t1=$(now_ns)
            if [ -s aria2.done ]; then t1=$(cat aria2.done); elif [ "$rc" -eq 0 ]; then rc=1; fi
            ok=$(verify)
            [ "$rc" -eq 0 ] || ok=0
            echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }') $(tail -n 1 aria2.time) 0 $ok" \
                >>"$SIZE.aria2.runs"
            [ "$ok" -eq 1 ] || echo "warning: aria2c $SIZE MiB: exit $rc or wrong data ($(tail -n 2 aria2.log | tr '\n' ' '))" >&2
        fi
    done
    kill "$SEEDER" 2>/dev/null || true
    wait "$SEEDER" 2>/dev/null || true
    drop_pid "$SEEDER"
    rm -rf "$PAYLOAD" "$WORK/out" "$WORK/rvstate" "$WORK/t.torrent"
done

# ---------------------------------------------------------------- the table
median_col() {
    awk -v c="$2" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
CLIENTS=rivulet
[ "$ANCHOR" = aria2 ] && CLIENTS="rivulet aria2"
first=${SIZES[0]}
echo
printf "%-16s" client
for s in "${SIZES[@]}"; do printf " %20s" "$s MiB: RSS MiB (s)"; done
printf " %s\n" "  RSS ratio (vs $first MiB)"
for c in $CLIENTS; do
    case $c in
    rivulet) label="rivulet $("$RV" --version 2>/dev/null | head -n 1 | awk '{ print $NF }')" ;;
    aria2) label="aria2c $(aria2c --version | awk 'NR == 1 { print $3 }')" ;;
    esac
    printf "%-16s" "$label"
    base=$(median_col "$first.$c.runs" 2)
    ratios=""
    for s in "${SIZES[@]}"; do
        f=$s.$c.runs
        rss=$(median_col "$f" 2)
        okn=$(awk '{ n += $4 } END { print n + 0 }' "$f")
        printf " %20s" "$(awk -v r="$rss" -v w="$(median_col "$f" 1)" -v ok="$okn" -v n="$RUNS" \
            'BEGIN { printf "%.1f (%.1f)%s", r / 1024, w, ok == n ? "" : "!" }')"
        [ "$s" = "$first" ] || ratios="$ratios $(awk -v a="$rss" -v b="$base" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')"
    done
    printf "   %s\n" "${ratios# }"
    if [ -n "${RESULTS:-}" ]; then
        for s in "${SIZES[@]}"; do
            awk -v c="$c" -v s="$s" -v n="$RUNS" -v r="$(median_col "$s.$c.runs" 2)" \
                -v w="$(median_col "$s.$c.runs" 1)" -v ok="$(awk '{ n += $4 } END { print n + 0 }' "$s.$c.runs")" \
                'BEGIN { printf "memory tool=%s size_mib=%d runs=%d ok=%d wall=%.2f rss_mib=%.1f\n", c, s, n, ok, w, r / 1024 }' \
                >>"$RESULTS"
        done
    fi
done
echo
# rivulet keeps up to --max-memory (64 MiB) of piece buffers, allocated as needed and kept for
# reuse: how many it needed at once (pieces_in_memory_max) depends on how far the disk writes
# fell behind, not on the torrent's size. RSS less those buffers is what grows with the size.
for s in "${SIZES[@]}"; do
    awk -v s="$s" '{ printf "rivulet %s MiB: max_rss_kib %d (--stats), pieces in memory at most %d (%d MiB of buffers), disk queue at most %d; RSS less the buffers %.1f MiB\n",
        s, $3, $5, $5, $6, ($2 - $5 * 1024) / 1024 }' "$s.rivulet.runs" | tail -n 1
done
if [ ${#SIZES[@]} -gt 1 ]; then
    awk -v a="$(tail -n 1 "${SIZES[-1]}.rivulet.runs")" -v b="$(tail -n 1 "$first.rivulet.runs")" \
        -v s="${SIZES[-1]}" -v f="$first" 'BEGIN { split(a, x, " "); split(b, y, " ")
        na = x[2] - x[5] * 1024; nb = y[2] - y[5] * 1024
        printf "rivulet RSS less piece buffers, %s MiB / %s MiB: %.3f (last run of each)\n", s, f, (nb > 0 ? na / nb : 0) }'
fi
if [ ${#SIZES[@]} -gt 1 ]; then
    awk -v a="$(median_col "${SIZES[-1]}.rivulet.runs" 2)" -v b="$(median_col "$first.rivulet.runs" 2)" \
        -v s="${SIZES[-1]}" -v f="$first" 'BEGIN { r = b > 0 ? a / b : 0
        printf "goal: rivulet at %s MiB no more than 10 %% above %s MiB: %.3f, %s\n", s, f, r,
               r <= 1.10 ? "met" : "MISSED" }'
fi
echo "RSS: peak resident set of the leecher (time(1) %M), median over runs; (s): wall seconds"
echo "from start to done (aria2c: its completion hook); ! marks a failed or wrong download."
