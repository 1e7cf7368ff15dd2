#!/usr/bin/env bash
# --select-file and magnet so= against a libtorrent seeder: a torrent of five uneven files with
# 64 KiB pieces (files share pieces). Selecting files 1 and 3:
#  - exactly the wanted pieces are verified (those that hold a byte of a selected file, counted
#    here from the layout), the selected files are byte-identical, the others never created;
#  - a restart with the same state folder completes again (boundary pieces are fetched again,
#    the rest trusted from the resume data) and leaves the selected files intact;
#  - the same selection through a magnet link's so= (metadata from the seeder) gives the same
#    files.
# usage: tests/interop/select_files.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-select.XXXXXX")
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
wait_file() { local i; for ((i = 0; i < 300; i++)); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }
ev() { $PY "$EV" "$@"; }

mkdir -p p/five
sizes=(300001 200003 150007 90001 400009)
for i in 0 1 2 3 4; do head -c "${sizes[$i]}" /dev/urandom >"p/five/f$i.bin"; done
"$RV" create p/five -o five.torrent -l 64K >/dev/null 2>&1
IH=$("$RV" info --json five.torrent | $PY -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')
# the wanted pieces of files 1 and 3, from libtorrent's own file layout
WANT=$($PY - five.torrent <<'PY'
import sys, libtorrent as lt
ti = lt.torrent_info(sys.argv[1])
fs = ti.files()
idx = [i for i in range(fs.num_files()) if not fs.flag_pad_file & fs.file_flags(i)]
want = set()
for k in (1, 3):
    i = idx[k]
    off, size = fs.file_offset(i), fs.file_size(i)
    want.update(range(off // ti.piece_length(), (off + size - 1) // ti.piece_length() + 1))
print(" ".join(map(str, sorted(want))))
PY
)
SP=$(free_port 127.0.0.2)
$PY "$HERE/lt_seeder.py" five.torrent p 127.0.0.2 "$SP" lt.ready --ready listen >lt.log 2>&1 &
pids+=($!)
wait_file lt.ready || { echo "FAIL seeder: $(tail -n 3 lt.log)"; exit 1; }

check() { # LABEL DIR NDJSON
    local label=$1 dir=$2 nd=$3 got
    if cmp -s p/five/f1.bin "$dir/five/f1.bin" && cmp -s p/five/f3.bin "$dir/five/f3.bin"; then
        ok "$label: files 1 and 3 byte-identical"
    else bad "$label: selected files differ or are missing: $(ls "$dir/five" 2>&1 | tr '\n' ' ')"; fi
    if [ ! -e "$dir/five/f0.bin" ] && [ ! -e "$dir/five/f2.bin" ] && [ ! -e "$dir/five/f4.bin" ]; then
        ok "$label: files 0, 2 and 4 were never created"
    else bad "$label: unselected files exist: $(ls "$dir/five" | tr '\n' ' ')"; fi
    got=$(ev "$nd" 'verified' | tr -d '[],' | tr ' ' '\n' | sort -n | xargs)
    if [ -n "$got" ] && [ "$got" = "$WANT" ]; then ok "$label: verified exactly the wanted pieces [$got]"
    else bad "$label: verified [$got], wanted [$WANT]"; fi
}

rc=0
timeout 60 "$RV" download five.torrent -o out --select-file 1,3 --peer "127.0.0.2:$SP" --no-trackers \
    --listen 127.0.0.3 --port "$(free_port 127.0.0.3)" --seed-time 0 --state-dir st --json >a.ndjson 2>a.err || rc=$?
[ $rc -eq 0 ] && ok "select-file: exit 0" || bad "select-file: exit $rc: $(tail -n 3 a.err | tr '\n' ' ')"
check select-file out a.ndjson

rc=0
timeout 60 "$RV" download five.torrent -o out --select-file 1,3 --peer "127.0.0.2:$SP" --no-trackers \
    --listen 127.0.0.3 --port "$(free_port 127.0.0.3)" --seed-time 0 --state-dir st --json >b.ndjson 2>b.err || rc=$?
if [ $rc -eq 0 ] && cmp -s p/five/f1.bin out/five/f1.bin && cmp -s p/five/f3.bin out/five/f3.bin; then
    ok "restart: exit 0, files 1 and 3 intact ($(ev b.ndjson 'len(verified)') boundary pieces fetched again)"
else bad "restart: exit $rc: $(tail -n 3 b.err | tr '\n' ' ')"; fi

rc=0
timeout 60 "$RV" download "magnet:?xt=urn:btih:$IH&x.pe=127.0.0.2:$SP&so=1,3" -o out-m \
    --listen 127.0.0.3 --port "$(free_port 127.0.0.3)" --seed-time 0 --state-dir st-m --json >m.ndjson 2>m.err || rc=$?
[ $rc -eq 0 ] && ok "so=1,3: exit 0" || bad "so=1,3: exit $rc: $(tail -n 3 m.err | tr '\n' ' ')"
check "magnet so=" out-m m.ndjson

rc=0
"$RV" download five.torrent -o bad --select-file 5 --no-trackers --no-dht --state-dir st-bad -q 2>bad.err || rc=$?
if [ $rc -eq 2 ] && grep -q "file 5 is past the last file" bad.err; then ok "--select-file 5: $(cat bad.err)"
else bad "--select-file 5: exit $rc: $(cat bad.err)"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
