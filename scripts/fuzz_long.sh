#!/usr/bin/env bash
# The long fuzz run (outside CI): each libFuzzer target in BUILD_DIR runs for SECONDS on a
# working corpus that starts from tests/fuzz/corpus/NAME; afterwards the inputs that add
# coverage are merged (libFuzzer -merge=1, so the kept corpus stays minimal) back into
# tests/fuzz/corpus/NAME, to be committed. One line per target goes to LOG: runs, coverage,
# corpus sizes and the verdict. A crash, leak, timeout or OOM leaves its reproducer in
# BUILD_DIR/fuzz-artifacts/ and makes the script exit 1 (the other targets still run).
#
# usage: scripts/fuzz_long.sh BUILD_DIR SECONDS [LOG] [TARGET...]
#   make the build with: cmake -S . -B build-fuzz -DRV_FUZZ=ON -DRV_TESTS=OFF \
#       -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRV_SANITIZE=ON
set -euo pipefail

BUILD=${1:?usage: $0 BUILD_DIR SECONDS [LOG] [TARGET...]}
SECS=${2:?usage: $0 BUILD_DIR SECONDS [LOG] [TARGET...]}
LOG=${3:-fuzz-long.log}
shift 3 2>/dev/null || shift $#
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$BUILD" && pwd)
ARTIFACTS="$BUILD/fuzz-artifacts"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-fuzzlong.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$ARTIFACTS"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for t in "$BUILD"/fuzz_*; do [ -x "$t" ] && targets+=("$(basename "$t")"); done
fi
failed=0
for exe in "${targets[@]}"; do
    name=${exe#fuzz_}
    seeds="$ROOT/tests/fuzz/corpus/$name"
    corpus="$WORK/$name"
    mkdir -p "$corpus" "$seeds"
    cp -R "$seeds"/. "$corpus"/
    before=$(find "$seeds" -type f | wc -l)
    out="$WORK/$name.out"
    rc=0
    "$BUILD/$exe" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$ARTIFACTS/$exe-" "$corpus" >"$out" 2>&1 || rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -oE 'cov: [0-9]+' "$out" | tail -n 1 | grep -oE '[0-9]+' || echo '?')
    # keep only what adds coverage over the seeds already committed
    "$BUILD/$exe" -merge=1 "$seeds" "$corpus" >"$WORK/$name.merge" 2>&1 || true
    after=$(find "$seeds" -type f | wc -l)
    if [ $rc -eq 0 ]; then verdict="no finding"; else
        verdict="FINDING (exit $rc): $(grep -m 1 -E 'ERROR|SUMMARY|deadly signal|timeout' "$out" || true)"
        cp "$out" "$ARTIFACTS/$exe.log"
        failed=1
    fi
    printf '%s %-14s %6ss  runs %-10s cov %-6s corpus %s -> %s  %s\n' "$(date -u +%FT%TZ)" \
        "$name" "$SECS" "$runs" "$cov" "$before" "$after" "$verdict" | tee -a "$LOG"
done
exit $failed
