#!/usr/bin/env bash
# The data goes away under a seed: `rivulet seed` (--max-upload-rate 4M) is uploading to a
# libtorrent leecher when its file is truncated to 1 MiB. The seed must stop by itself with
# exit 6 and an error naming the file, and send nothing wrong (the leecher sees no hash
# failure). Once the file is put back (a copy: a new time), the restarted seed must not trust
# its resume data for it (re-hash every piece, 0 trusted), and the leecher, dialled again,
# completes byte-identical.
#
# usage: tests/interop/fault_seed_truncate.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"

$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-seed-trunc.XXXXXX")
pids=()
rv=
cleanup() {
    [ -n "$rv" ] && { kill "$rv" 2> /dev/null || true; wait "$rv" 2> /dev/null || true; }
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms
checked_of() {
    $PY "$EV" "$1" '" ".join(__import__("re").match(r"checked (\d+) pieces, (\d+) trusted from resume data, (\d+) of", kind("checked")[-1]["message"]).groups()) if kind("checked") else "- - -"'
}

# 32 MiB in 128 pieces of 256 KiB: 8 s at 4 MiB/s
mkdir -p data/payload orig
head -c 33554432 /dev/urandom > orig/a.bin
cp orig/a.bin data/payload/a.bin
NP=128
"$RV" create -q data/payload -o t.torrent --piece-size 256K
RP=$(free_port 127.0.0.3)
LP=$(free_port 127.0.0.4)
SEED=("$RV" seed t.torrent -d data --state-dir st --no-trackers --listen 127.0.0.3 --port "$RP"
      --max-upload-rate 4M --json)

"${SEED[@]}" > seed1.ndjson 2> seed1.err &
rv=$!
for ((i = 0; i < 50; i++)); do (exec 3<> "/dev/tcp/127.0.0.3/$RP") 2> /dev/null && break; sleep 0.1; done
mkdir leech
timeout 60 $PY "$HERE/lt_leecher.py" t.torrent leech 127.0.0.4 "$LP" --peer "127.0.0.3:$RP" \
    --seconds 50 > leech.out 2> leech.err &
leech=$!
pids+=($leech)
for ((i = 0; i < 100; i++)); do
    kb=$(du -sk leech 2> /dev/null | cut -f1)
    [ "${kb:-0}" -ge 6144 ] && break
    sleep 0.1
done
truncate -s 1048576 data/payload/a.bin
echo "  a.bin truncated to 1 MiB with the leecher at ${kb} KiB of 32768"

# ---- the seed stops by itself, exit 6, naming the file
for ((i = 0; i < 100; i++)); do kill -0 "$rv" 2> /dev/null || break; sleep 0.1; done
rc=0
if kill -0 "$rv" 2> /dev/null; then
    bad "the seed still runs 10 s after its file was truncated"
    kill "$rv" 2> /dev/null || true
fi
wait "$rv" || rc=$?
rv=
[ "$rc" -eq 6 ] && ok "the seed stopped by itself: exit 6" || bad "seed exit $rc ($(tail -n 2 seed1.err | tr '\n' ' '))"
msg=$($PY "$EV" seed1.ndjson '(kind("error") or [{}])[0].get("message", "")')
[[ "$msg" == *"data/payload/a.bin"* ]] && ok "error event: \"$msg\"" || bad "the error does not name the file: '$msg'"

# ---- the file comes back; the restarted seed re-checks it and the leecher completes
cp orig/a.bin data/payload/a.bin
"${SEED[@]}" --peer "127.0.0.4:$LP" > seed2.ndjson 2> seed2.err &
rv=$!
lrc=0
wait "$leech" || lrc=$?
read -r hashed trusted had <<< "$(checked_of seed2.ndjson)"
[ "$hashed" = "$NP" ] && [ "$trusted" = 0 ] && [ "$had" = "$NP" ] \
    && ok "restarted seed re-hashed the file put back: checked $hashed, trusted $trusted, had $had of $NP" \
    || bad "restarted seed: checked $hashed, trusted $trusted, had $had of $NP"
[ "$lrc" -eq 0 ] && ok "leecher: $(cat leech.out)" || bad "leecher exit $lrc: $(cat leech.out) $(tail -n 2 leech.err)"
grep -q " 0 hash failures" leech.out && ok "the leecher saw no hash failure" || bad "the leecher saw hash failures"
if cmp -s orig/a.bin leech/payload/a.bin; then ok "leecher byte-identical"; else bad "leecher's file differs"; fi
kill "$rv" 2> /dev/null || true
rc=0
wait "$rv" || rc=$?
rv=
[ "$rc" -eq 0 ] && ok "the restarted seed exits 0 on SIGTERM" || bad "restarted seed: exit $rc on SIGTERM"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
