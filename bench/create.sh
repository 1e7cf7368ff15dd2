#!/usr/bin/env bash
# Benchmark: making a v1 torrent of a payload already in the page cache, rivulet against
# mktorrent and transmission-create. Not a test: it prints a table and exits 0 unless a tool
# fails.
#
# usage: bench/create.sh PATH_TO_RIVULET [SIZE_MIB]     (SIZE_MIB defaults to 1024)
#
# All tools use 1 MiB pieces. Each is run RUNS times (default 3) and the median wall time and
# the median user+sys CPU time are reported. The machine's limit is nproc times the SHA-1 rate
# `openssl speed` measures on 16 KiB blocks: no tool that hashes one piece at a time can hash
# faster than every core running SHA-1 and doing nothing else. rivulet passes it where the CPU
# has AVX-512, hashing sixteen pieces side by side (src/util/sha1x.c).
set -euo pipefail

usage() {
    echo "usage: $0 PATH_TO_RIVULET [SIZE_MIB]" >&2
    exit 2
}

if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
RV=$1
SIZE=${2:-1024}
RUNS=${RUNS:-3}
PIECE=1048576
case $SIZE in '' | *[!0-9]*) usage ;; esac
case $RUNS in '' | *[!0-9]* | 0) echo "RUNS must be a positive number" >&2; exit 2 ;; esac
[ "$SIZE" -ge 4 ] || { echo "SIZE_MIB must be at least 4" >&2; exit 2; }
[ -x "$RV" ] || { echo "$RV is not an executable" >&2; exit 2; }
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")

for t in mktorrent transmission-create openssl /usr/bin/time; do
    command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 2; }
done

HERE=$(cd "$(dirname "$0")" && pwd)
NPROC=$(nproc)

# The payload goes under bench/out (on the project's disk), not /tmp, which may be a small
# tmpfs; check there is room for it plus the torrents.
mkdir -p "$HERE/out"
avail_mib=$(df -Pm "$HERE/out" | awk 'NR == 2 { print $4 }')
if [ "$avail_mib" -lt $((SIZE + 64)) ]; then
    echo "not enough space in $HERE/out: ${avail_mib} MiB free, need $((SIZE + 64))" >&2
    exit 1
fi
mem_mib=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
if [ "$mem_mib" -lt $((SIZE * 3 / 2)) ]; then
    echo "warning: ${mem_mib} MiB of memory available; a ${SIZE} MiB payload may not stay" \
         "in the page cache, so the figures will include disk reads" >&2
fi

WORK=$(mktemp -d "$HERE/out/create.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# Four files of uneven sizes (about 40/30/20/10 %), none a multiple of the piece length, so
# pieces straddle file boundaries.
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
echo "payload: $SIZE MiB in 4 files ($s1 $s2 $s3 $s4 bytes), $NPROC cores, $RUNS runs each"
cat "$PAYLOAD"/* >/dev/null # warm the page cache

# run NAME OUT CMD...: times one run; appends "wall cpu" (seconds) to $WORK/NAME.times.
run() {
    local name=$1 out=$2
    shift 2
    local t0 t1
    rm -f "$out"
    t0=$(date +%s%N)
    if ! /usr/bin/time -f "%e %U %S" -o "$WORK/time.txt" "$@" >"$WORK/$name.log" 2>&1; then
        echo "$name failed:" >&2
        cat "$WORK/$name.log" >&2
        exit 1
    fi
    t1=$(date +%s%N)
    # %e only has 10 ms steps, so wall time comes from the clock around the run; CPU time
    # (user + sys) from time(1).
    awk -v ns=$((t1 - t0)) '{ printf "%.3f %.3f\n", ns / 1e9, $2 + $3 }' "$WORK/time.txt" \
        >>"$WORK/$name.times"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

TOOLS="rivulet mktorrent transmission"
for _ in $(seq "$RUNS"); do
    run rivulet "$WORK/rivulet.torrent" \
        "$RV" create "$PAYLOAD" -o "$WORK/rivulet.torrent" --piece-size "$PIECE"
    run mktorrent "$WORK/mktorrent.torrent" \
        mktorrent -l 20 -t "$NPROC" -a http://127.0.0.1:1/announce \
        -o "$WORK/mktorrent.torrent" "$PAYLOAD"
    run transmission "$WORK/transmission.torrent" \
        transmission-create -s $((PIECE / 1024)) -o "$WORK/transmission.torrent" "$PAYLOAD"
done

# The three must agree on the pieces (a fast wrong answer is no answer).
if /usr/bin/python3 -c 'import libtorrent' 2>/dev/null; then
    /usr/bin/python3 - "$WORK" <<'EOF' || exit 1
import sys, libtorrent as lt
w = sys.argv[1]
p = {t: lt.bdecode(open(f"{w}/{t}.torrent", "rb").read())[b"info"][b"pieces"]
     for t in ("rivulet", "mktorrent", "transmission")}
same = p["rivulet"] == p["mktorrent"] == p["transmission"]
print("piece hashes identical across the three tools:", "yes" if same else "NO")
sys.exit(0 if same else 1)
EOF
fi

# Machine limit: openssl's single-thread SHA-1 rate on 16 KiB blocks, times the cores.
sha_k=$(openssl speed -bytes 16384 -seconds 2 sha1 2>/dev/null |
    awk '$1 == "sha1" { sub(/k$/, "", $2); print $2 }')
limit=$(awk -v k="$sha_k" -v n="$NPROC" 'BEGIN { printf "%.0f", k * 1000 / 1048576 * n }')
# ... and what every core hashing at once really gives (openssl speed -multi): less than the
# product when the cores share caches or memory bandwidth
multi_k=$(openssl speed -multi "$NPROC" -bytes 16384 -seconds 2 sha1 2>/dev/null |
    awk '$1 == "sha1" { sub(/k$/, "", $2); print $2 }')
multi=$(awk -v k="${multi_k:-0}" 'BEGIN { printf "%.0f", k * 1000 / 1048576 }')

echo
printf "%-14s %8s %8s %9s %12s\n" tool "wall s" "CPU s" "MiB/s" "wall vs rv"
rv_wall=$(cut -d' ' -f1 "$WORK/rivulet.times" | median)
for t in $TOOLS; do
    wall=$(cut -d' ' -f1 "$WORK/$t.times" | median)
    cpu=$(cut -d' ' -f2 "$WORK/$t.times" | median)
    awk -v t="$t" -v w="$wall" -v c="$cpu" -v s="$SIZE" -v rw="$rv_wall" 'BEGIN {
        ws = w > 0 ? w : 0.001; rws = rw > 0 ? rw : 0.001
        printf "%-14s %8.2f %8.2f %9.0f %11.2fx\n", t, w, c, s / ws, ws / rws }'
    [ -z "${RESULTS:-}" ] || awk -v t="$t" -v w="$wall" -v c="$cpu" -v s="$SIZE" -v lim="$limit" -v n="$RUNS" \
        -v m="$multi" 'BEGIN { ws = w > 0 ? w : 0.001
        printf "create tool=%s runs=%d wall=%.3f cpu=%.3f mibs=%.1f limit_mibs=%d multi_mibs=%d\n", t, n, w, c, s / ws, lim, m }' >>"$RESULTS"
done
echo
awk -v k="$sha_k" -v n="$NPROC" -v lim="$limit" -v m="$multi" -v s="$SIZE" -v rw="$rv_wall" 'BEGIN {
    rws = rw > 0 ? rw : 0.001
    printf "machine limit: %d cores x %.0f MiB/s (openssl speed sha1, 16 KiB) = %d MiB/s\n",
           n, k * 1000 / 1048576, lim
    if (m > 0) printf "(openssl speed -multi %d sha1, every core at once: %d MiB/s)\n", n, m
    printf "(one piece at a time; rivulet hashes up to 16 at once where the CPU has AVX-512 or SHA-NI)\n"
    printf "rivulet: %.0f MiB/s = %.0f%% of the limit\n", s / rws, 100 * s / rws / lim }'
