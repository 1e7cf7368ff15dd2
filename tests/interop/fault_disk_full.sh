#!/usr/bin/env bash
# A full disk, then room again: a download from a libtorrent seeder into a tmpfs smaller than the
# torrent stops with exit 6 and an error naming the file and saying the disk is full (ENOSPC),
# without a crash; the resume file claims only pieces `rivulet verify` finds on disk. After the
# tmpfs is remounted bigger, the same command with the same state folder trusts those pieces
# (no re-hash, no re-download: downloaded bytes are the rest only) and finishes byte-identical.
#
# usage: tests/interop/fault_disk_full.sh path/to/rivulet   (root: it mounts a tmpfs; else skip)
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"

$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-disk-full.XXXXXX")
pids=()
mounts=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

mkdir out
if [ "$(id -u)" -ne 0 ] || ! mount -t tmpfs -o size=3500k tmpfs out 2>/dev/null; then
    echo "SKIP: cannot mount a tmpfs here (needs root)"
    exit 77
fi
mounts+=("$WORK/out")

. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms
jfield() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# 8 MiB in 128 pieces of 64 KiB, two files; the tmpfs holds 3500 KiB (about 54 pieces).
mkdir -p data/payload
head -c 6291456 /dev/urandom > data/payload/a.bin
head -c 2097152 /dev/urandom > data/payload/b.bin
NP=128
TOTAL=8388608
"$RV" create -q data/payload -o t.torrent --piece-size 64K

SEED_PORT=$(free_port 127.0.0.2)
$PY "$HERE/lt_seeder.py" t.torrent data 127.0.0.2 "$SEED_PORT" seed.ready --ready listen \
    --upload-limit 8000000 2> seed.err &
pids+=($!)
wait_file seed.ready 30 || { bad "seeder not ready: $(tail -n 3 seed.err)"; exit 1; }
DL=("$RV" download --seed-time 0 --no-trackers --peer "127.0.0.2:$SEED_PORT" --state-dir st
    t.torrent -o out)

# ---- run 1: the disk fills up
rc=0
timeout 60 "${DL[@]}" --json > run1.ndjson 2> run1.err || rc=$?
[ "$rc" -eq 6 ] && ok "full disk: exit 6" || bad "full disk: exit $rc ($(tail -n 2 run1.err | tr '\n' ' '))"
msg=$($PY "$EV" run1.ndjson '(kind("error") or [{}])[0].get("message", "")')
# Pieces complete in any order, so either file may be the one that no longer fits.
if [[ "$msg" =~ out/payload/[ab]\.bin ]] && [[ "$msg" == *"No space left on device"* ]]; then
    ok "full disk: error event \"$msg\""
else bad "full disk: the error does not name the file and ENOSPC: '$msg'"; fi
code=$($PY "$EV" run1.ndjson '(kind("stopped") or [{}])[-1].get("code")')
[ "$code" != None ] && [ "$code" != 0 ] && ok "full disk: a stopped event with code $code" \
    || bad "full disk: stopped event code $code"
v1=$($PY "$EV" run1.ndjson 'len(verified)')
used=$(df -k --output=used out | tail -n 1 | tr -d ' ')
echo "  run 1: $v1 pieces verified, tmpfs ${used} KiB used of 3500"
saved=$($PY "$EV" run1.ndjson 'max([int(__import__("re").search(r"saved (\d+) pieces", e.get("message","")).group(1)) for e in kind("resume") if "saved" in e.get("message","")] or [-1])')
vrc=0
"$RV" verify t.torrent -d out --json > verify1.json 2> verify1.err || vrc=$?
have1=$(jfield verify1.json pieces_have)
[ "$vrc" -eq 4 ] && ok "verify after the full disk: exit 4, $have1 of $NP pieces on disk" \
    || bad "verify after the full disk: exit $vrc ($(head -n 2 verify1.err | tr '\n' ' '))"
[ "$saved" -gt 0 ] && [ "$saved" -le "$have1" ] && [ "$saved" -lt "$NP" ] \
    && ok "the resume file claims $saved pieces, all of them on disk ($have1)" \
    || bad "the resume file claims $saved pieces, verify finds $have1"

# ---- room again: the same command resumes and finishes
mount -o remount,size=16m out
rc=0
timeout 60 "${DL[@]}" --json > run2.ndjson 2> run2.err || rc=$?
[ "$rc" -eq 0 ] && ok "after remount: exit 0" || bad "after remount: exit $rc ($(tail -n 2 run2.err | tr '\n' ' '))"
checked=$($PY "$EV" run2.ndjson '(kind("checked") or [{}])[-1].get("message", "")')
echo "  run 2: $checked"
if [[ "$checked" =~ checked\ ([0-9]+)\ pieces,\ ([0-9]+)\ trusted\ from\ resume\ data,\ ([0-9]+)\ of ]]; then
    hashed=${BASH_REMATCH[1]} trusted=${BASH_REMATCH[2]} had=${BASH_REMATCH[3]}
else hashed=- trusted=0 had=0; fi
[ "$trusted" -eq "$saved" ] && [ "$had" -ge "$saved" ] && [ "$had" -le "$have1" ] \
    && ok "restart trusted the $trusted pieces of the resume file (had $had, re-hashed $hashed)" \
    || bad "restart trusted $trusted, had $had; the resume file claimed $saved, verify found $have1"
v2=$($PY "$EV" run2.ndjson 'len(verified)')
[ "$v2" -eq $((NP - had)) ] && ok "restart fetched only the other $v2 pieces" \
    || bad "restart verified $v2 pieces (had $had of $NP)"
got=$($PY "$EV" run2.ndjson 'int(__import__("re").search(r"downloaded (\d+) bytes", (finished or {}).get("message", "downloaded -1 bytes")).group(1))')
[ "$got" -gt 0 ] && [ "$got" -lt "$TOTAL" ] && [ "$got" -le $(((NP - had) * 65536 + 65536)) ] \
    && ok "restart downloaded $got bytes of $TOTAL" || bad "restart downloaded $got bytes of $TOTAL"
nf=$($PY "$EV" run1.ndjson 'len(failed)')
nf2=$($PY "$EV" run2.ndjson 'len(failed)')
[ "$nf" -eq 0 ] && [ "$nf2" -eq 0 ] && ok "no piece failed its hash" || bad "piece_failed: $nf, then $nf2"
if diff -r data/payload out/payload > /dev/null; then ok "byte-identical"; else bad "files differ"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
