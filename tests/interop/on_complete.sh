#!/usr/bin/env bash
# --on-complete: `rivulet download` from a libtorrent seeder runs the command once, when every
# piece is verified and written (the hook itself compares the files with the payload), with
# the torrent's name, info-hash and the download folder as $1 $2 $3; a failing command is
# reported and does not change the exit code; the process exits only after the command ends;
# a download that cannot finish never runs it.
# usage: tests/interop/on_complete.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-hook.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$WORK"
. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms

mkdir -p payload/dir
head -c 3000000 /dev/urandom >payload/dir/a.bin
head -c 1234567 /dev/urandom >payload/dir/b.bin
"$RV" create payload/dir -o t.torrent -l 256K >/dev/null
HASH=$($PY -c 'import libtorrent as lt, sys; print(lt.torrent_info(sys.argv[1]).info_hashes().v1)' t.torrent)
LP=$(free_port 127.0.0.2)
$PY "$HERE/lt_seeder.py" t.torrent payload 127.0.0.2 "$LP" lt.ready --ready listen >lt.log 2>&1 &
pids+=($!)
for _ in $(seq 300); do [ -s lt.ready ] && break; sleep 0.1; done
[ -s lt.ready ] || { echo "FAIL the libtorrent seeder did not start: $(tail -n 3 lt.log)"; exit 1; }

# The hook: records its arguments, checks the data is all there, then takes 1 s and fails, so
# the test sees that the exit waits for it and that its failure is only reported.
cat >hook.sh <<'SH'
#!/bin/sh
printf '%s\n' "$1" "$2" "$3" >>"$HOOK_DIR/args"
if cmp -s "$HOOK_DIR/payload/dir/a.bin" "$3/dir/a.bin" && cmp -s "$HOOK_DIR/payload/dir/b.bin" "$3/dir/b.bin"; then
    echo complete >>"$HOOK_DIR/seen"
else
    echo incomplete >>"$HOOK_DIR/seen"
fi
sleep 1
date +%s%N >"$HOOK_DIR/hook_end"
exit 7
SH
chmod +x hook.sh
export HOOK_DIR=$WORK
rc=0
timeout 60 "$RV" download t.torrent -o out --peer "127.0.0.2:$LP" --no-trackers --no-dht --seed-time 0 \
    --listen 127.0.0.3 --port "$(free_port 127.0.0.3)" --state-dir st -q \
    --on-complete "$WORK/hook.sh \"\$1\" \"\$2\" \"\$3\"" 2>dl.err || rc=$?
t_exit=$(date +%s%N)
[ "$rc" -eq 0 ] && ok "download exit 0 although the hook failed" || bad "download exit $rc: $(tail -n 3 dl.err)"
want=$(printf '%s\n' dir "$HASH" out)
if [ -f args ] && [ "$(cat args)" = "$want" ]; then
    ok "the hook ran once with name, info-hash and folder: $(tr '\n' ' ' <args)"
else
    bad "hook arguments: '$(tr '\n' ' ' <args 2>/dev/null)', wanted '$(echo "$want" | tr '\n' ' ')'"
fi
[ "$(cat seen 2>/dev/null)" = complete ] && ok "every file was complete when the hook ran" ||
    bad "the hook saw: $(cat seen 2>/dev/null)"
if [ -f hook_end ] && [ "$(cat hook_end)" -le "$t_exit" ]; then
    ok "rivulet exited after the hook had finished"
else
    bad "rivulet exited before the hook ended"
fi
grep -q "on-complete: the command exited with 7" dl.err && ok "the hook's failure was reported" ||
    bad "no report of the hook's exit code: $(tail -n 3 dl.err)"

# A download that cannot finish (no peer) never runs it.
rm -f args seen
rc=0
timeout 30 "$RV" download t.torrent -o out2 --no-trackers --no-dht --seed-time 0 --listen 127.0.0.4 \
    --port "$(free_port 127.0.0.4)" --state-dir st2 -q --on-complete "$WORK/hook.sh x y z" \
    2>dl2.err &
p=$!
pids+=("$p")
sleep 3
kill -INT "$p" 2>/dev/null || true
wait "$p" 2>/dev/null || rc=$?
[ ! -f args ] && ok "an interrupted, incomplete download did not run the hook (exit $rc)" ||
    bad "the hook ran for an incomplete download"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
