#!/usr/bin/env bash
# The interop and adversarial tests with every rivulet process under valgrind's memcheck (outside
# CI: it multiplies rivulet's CPU time by 20-50). Each test script gets a wrapper in place of the
# rivulet binary; the wrapper runs valgrind --leak-check=full with one log per process. Prints,
# per test, its result and, over all its rivulet processes, the memcheck errors and the bytes
# definitely lost; exits 1 when any process had a memcheck error or lost memory for certain.
# (A test may fail under valgrind for being slow; that is reported, not counted as a finding.)
#
# usage: scripts/valgrind_interop.sh path/to/rivulet [TEST...]
#   TEST: an interop script name (magnet, seed_swarm, ...) or adversarial:MODE; default: all.
set -uo pipefail

RV=${1:?usage: $0 path/to/rivulet [TEST...]}
shift
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
command -v valgrind >/dev/null || { echo "valgrind is not installed"; exit 2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-vg.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

cat >"$WORK/rivulet" <<EOF
#!/bin/sh
# memcheck wrapper for one rivulet process: a log per pid in \$RV_VG_LOGS
exec valgrind --leak-check=full --show-leak-kinds=definite \\
    --errors-for-leak-kinds=definite --track-fds=no --num-callers=30 \\
    --log-file="\$RV_VG_LOGS/%p.log" "$RV" "\$@"
EOF
chmod +x "$WORK/rivulet"

tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
    for s in "$ROOT"/tests/interop/*.sh; do tests+=("$(basename "$s" .sh)"); done
    for m in $(sed -n '/foreach(case /,/)/p' "$ROOT/CMakeLists.txt" | tr -d '()' |
        sed 's/foreach//; s/case//' | tr ' ' '\n' | grep -E '^[a-z_0-9]+$'); do
        tests+=("adversarial:$m")
    done
fi

export XDG_STATE_HOME="$WORK/state" XDG_CACHE_HOME="$WORK/cache" RIVULET_DHT_BOOTSTRAP=
export RV_RSS_LIMIT_KIB=$((1024 * 1024)) # valgrind's own memory is in the process's RSS
bad=0
printf '%-34s %-8s %6s %8s %14s\n' test result procs errors definitely_lost
for t in "${tests[@]}"; do
    logs="$WORK/logs-${t//:/-}"
    mkdir -p "$logs"
    export RV_VG_LOGS="$logs"
    start=$(date +%s)
    case "$t" in
    adversarial:*) timeout 900 "$ROOT/tests/adversarial/run.sh" "${t#adversarial:}" "$WORK/rivulet" >"$logs/test.out" 2>&1 ;;
    *) timeout 1800 "$ROOT/tests/interop/$t.sh" "$WORK/rivulet" >"$logs/test.out" 2>&1 ;;
    esac
    rc=$?
    result=$([ $rc -eq 0 ] && echo pass || { [ $rc -eq 77 ] && echo skip || echo "fail:$rc"; })
    procs=$(find "$logs" -name '[0-9]*.log' | wc -l)
    errs=0
    lost=0
    for l in "$logs"/[0-9]*.log; do
        [ -f "$l" ] || continue
        e=$(grep -oE 'ERROR SUMMARY: [0-9]+' "$l" | grep -oE '[0-9]+$' | tail -n 1)
        d=$(grep -oE 'definitely lost: [0-9,]+ bytes' "$l" | grep -oE '[0-9,]+' | tr -d , | tail -n 1)
        # a process killed by the test (SIGKILL) writes no summary: count what it did write
        n=0
        [ -z "$e" ] && n=$(grep -cE 'Invalid (read|write|free)|uninitialised|Mismatched free|overlap|are definitely lost' "$l")
        errs=$((errs + ${e:-0} + n))
        lost=$((lost + ${d:-0}))
    done
    if [ "$result" != pass ] && [ "$result" != skip ]; then
        mkdir -p "$ROOT/build/valgrind-findings"
        cp "$logs/test.out" "$ROOT/build/valgrind-findings/${t//:/-}.out"
    fi
    printf '%-34s %-8s %6s %8s %14s  (%ss)\n' "$t" "$result" "$procs" "$errs" "$lost" $(($(date +%s) - start))
    if [ "$errs" -gt 0 ] || [ "$lost" -gt 0 ]; then
        bad=1
        mkdir -p "$ROOT/build/valgrind-findings"
        cp "$logs"/*.log "$ROOT/build/valgrind-findings/" 2>/dev/null
    fi
done
[ $bad -eq 0 ] && echo "memcheck: no errors, nothing definitely lost" || echo "memcheck: findings kept in build/valgrind-findings/"
exit $bad
