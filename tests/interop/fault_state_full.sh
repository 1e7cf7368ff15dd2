#!/usr/bin/env bash
# The state folder fills up: resume data cannot be saved. A download from a libtorrent seeder
# stopped with Ctrl+C midway leaves a resume file; then the state folder (a tmpfs the test
# mounts) is filled to the last byte and the download is run again to the end: it must finish
# (exit 0, byte-identical) and say, naming the file, that the resume data was not saved (ENOSPC),
# leave the old resume file byte for byte as it was and no temporary file behind. A third run
# (the folder still full) must not trust the stale file for the data written since: it re-checks
# the changed file, counts every piece as had and fetches nothing.
#
# usage: tests/interop/fault_state_full.sh path/to/rivulet   (root: it mounts a tmpfs; else skip)
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"

$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-state-full.XXXXXX")
pids=()
mounts=()
rv=
cleanup() {
    [ -n "$rv" ] && { kill -9 "$rv" 2> /dev/null || true; wait "$rv" 2> /dev/null || true; }
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

mkdir st
if [ "$(id -u)" -ne 0 ] || ! mount -t tmpfs -o size=256k tmpfs st 2>/dev/null; then
    echo "SKIP: cannot mount a tmpfs here (needs root)"
    exit 77
fi
mounts+=("$WORK/st")

. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms
# checked_of FILE: "HASHED TRUSTED HAD" of the last "checked" event, or "- - -"
checked_of() {
    $PY "$EV" "$1" '" ".join(__import__("re").match(r"checked (\d+) pieces, (\d+) trusted from resume data, (\d+) of", kind("checked")[-1]["message"]).groups()) if kind("checked") else "- - -"'
}

# 8 MiB in 128 pieces of 64 KiB at 2 MB/s: about 4 s
mkdir -p data/payload
head -c 8388608 /dev/urandom > data/payload/a.bin
NP=128
"$RV" create -q data/payload -o t.torrent --piece-size 64K
SEED_PORT=$(free_port 127.0.0.2)
$PY "$HERE/lt_seeder.py" t.torrent data 127.0.0.2 "$SEED_PORT" seed.ready --ready listen \
    --upload-limit 2000000 2> seed.err &
pids+=($!)
wait_file seed.ready 30 || { bad "seeder not ready: $(tail -n 3 seed.err)"; exit 1; }
DL=("$RV" download --seed-time 0 --no-trackers --peer "127.0.0.2:$SEED_PORT" --state-dir st
    t.torrent -o out --json)

# ---- run 1: Ctrl+C a third of the way in leaves a resume file
"${DL[@]}" > run1.ndjson 2> run1.err &
rv=$!
for ((i = 0; i < 200; i++)); do
    [ "$(grep -c '"event":"piece_verified"' run1.ndjson || true)" -ge $((NP / 3)) ] && break
    sleep 0.05
done
kill -INT "$rv"
rc=0
wait "$rv" || rc=$?
rv=
res=$(ls st/*.resume 2> /dev/null | head -n 1)
saved=$($PY "$EV" run1.ndjson 'max([int(m.group(1)) for m in (__import__("re").search(r"saved (\d+) pieces", e.get("message","")) for e in kind("resume")) if m] or [0])')
[ "$rc" -eq 130 ] && [ -n "$res" ] && [ "$saved" -gt 0 ] && [ "$saved" -lt "$NP" ] \
    && ok "Ctrl+C midway: exit 130, the resume file claims $saved of $NP pieces" \
    || bad "run 1: exit $rc, resume file '$res', $saved pieces saved"
sum1=$(sha1sum < "$res")

# ---- fill the state folder to the last byte
head -c 1048576 /dev/zero > st/fill 2> /dev/null || true
avail=$(df -k --output=avail st | tail -n 1 | tr -d ' ')
[ "$avail" -eq 0 ] && ok "state folder full" || bad "state folder still has $avail KiB"

# ---- run 2: finishes, cannot save, says so
rc=0
timeout 60 "${DL[@]}" > run2.ndjson 2> run2.err || rc=$?
[ "$rc" -eq 0 ] && ok "full state folder: the download still finishes, exit 0" \
    || bad "run 2: exit $rc ($(tail -n 2 run2.err | tr '\n' ' '))"
msg=$($PY "$EV" run2.ndjson '[e.get("message","") for e in kind("resume") if e.get("code")][:1]')
[[ "$msg" == *"not saved"*"$(basename "$res")"*"No space left on device"* ]] \
    && ok "says $msg" || bad "no event saying the resume data was not saved: $msg"
[ "$(sha1sum < "$res")" = "$sum1" ] && ok "the old resume file is untouched" || bad "the old resume file changed"
others=$(cd st && ls -A | grep -v -e '^fill$' -e '\.resume$' | tr '\n' ' ' || true)
[ -z "$others" ] && ok "no temporary file left in the state folder" || bad "left in the state folder: $others"
if cmp -s data/payload/a.bin out/payload/a.bin; then ok "byte-identical"; else bad "files differ"; fi

# ---- run 3: the stale resume file is not trusted for the changed file
rc=0
timeout 60 "${DL[@]}" > run3.ndjson 2> run3.err || rc=$?
read -r hashed trusted had <<< "$(checked_of run3.ndjson)"
fetched=$($PY "$EV" run3.ndjson 'len(verified)')
[ "$rc" -eq 0 ] && [ "$had" = "$NP" ] && [ "$hashed" = "$NP" ] && [ "$trusted" = 0 ] && [ "$fetched" -eq 0 ] \
    && ok "run 3: re-checked the changed file ($hashed pieces, $trusted trusted), had $had of $NP, fetched nothing" \
    || bad "run 3: exit $rc, checked $hashed, trusted $trusted, had $had, fetched $fetched"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
