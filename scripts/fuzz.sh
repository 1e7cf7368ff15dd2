#!/usr/bin/env bash
# Fuzz smoke run: each libFuzzer target in BUILD_DIR (fuzz_bencode, fuzz_torrent, fuzz_magnet, ...)
# runs for SECONDS on a scratch copy of its seed corpus tests/fuzz/corpus/NAME, so the repository
# is never modified. Any crash, leak, timeout or OOM fails the run; the reproducer is kept in
# BUILD_DIR/fuzz-artifacts/.
#
# usage: scripts/fuzz.sh BUILD_DIR SECONDS
set -euo pipefail

BUILD=${1:?usage: $0 BUILD_DIR SECONDS}
SECS=${2:?usage: $0 BUILD_DIR SECONDS}
case $SECS in '' | *[!0-9]*) echo "fuzz.sh: SECONDS must be a number" >&2; exit 2 ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$BUILD" && pwd)
ARTIFACTS="$BUILD/fuzz-artifacts"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

shopt -s nullglob
targets=()
for t in "$BUILD"/fuzz_*; do
    [ -f "$t" ] && [ -x "$t" ] && targets+=("$t")
done
if [ "${#targets[@]}" -eq 0 ]; then
    echo "fuzz.sh: no fuzz_* targets in $BUILD (configure with -DRV_FUZZ=ON)" >&2
    exit 2
fi

failed=0
summary=()
for t in "${targets[@]}"; do
    exe=$(basename "$t")
    name=${exe#fuzz_}
    seeds="$ROOT/tests/fuzz/corpus/$name"
    corpus="$WORK/corpus-$name"
    mkdir -p "$corpus" "$ARTIFACTS"
    nseeds=0
    if [ -d "$seeds" ]; then
        cp -R "$seeds"/. "$corpus"/
        nseeds=$(find "$corpus" -type f | wc -l)
    else
        echo "fuzz.sh: warning: no seed corpus at tests/fuzz/corpus/$name" >&2
    fi
    log="$WORK/$name.log"
    echo "== $exe: ${SECS}s, $nseeds seeds"
    rc=0
    # The outer timeout is a backstop in case the target ignores -max_total_time.
    timeout -k 10 $((SECS + 120)) "$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$name-" "$corpus" >"$log" 2>&1 || rc=$?
    runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$log" | tail -n 1)
    nafter=$(find "$corpus" -type f | wc -l)
    if [ "$rc" -eq 0 ]; then
        summary+=("ok    $exe: ${runs:-? runs}, corpus $nseeds -> $nafter")
    else
        failed=$((failed + 1))
        what=$(grep -m 1 -E 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|runtime error:|==[0-9]+== ?ERROR' "$log" || true)
        [ "$rc" -eq 124 ] && what="did not stop: killed by the outer timeout"
        summary+=("FAIL  $exe: exit $rc: ${what:-see log}")
        echo "---- last lines of the $exe log:"
        tail -n 40 "$log"
        for a in "$ARTIFACTS/$name"-*; do echo "artifact: $a"; done
    fi
done

echo "== fuzz summary (${SECS}s per target)"
printf '%s\n' "${summary[@]}"
[ "$failed" -eq 0 ]
