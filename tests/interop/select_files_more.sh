#!/usr/bin/env bash
# More of `--select-file` against libtorrent than select_files.sh: a torrent of seven uneven
# files on 32 KiB pieces (a 5-byte file inside a shared piece, an empty file) and one with BEP 47
# padding files. Checked: exactly the pieces holding chosen files are fetched, as libtorrent's
# own file layout says (file_storage offsets, an oracle independent of rivulet's), and the bytes
# downloaded are those pieces' sizes; the chosen files are byte-identical and nothing else is
# written (no unselected file, no padding, no part file); indices do not count padding files,
# which libtorrent's and aria2's numbering does (shown here); the empty file alone needs no
# piece; a restart with the same selection fetches exactly the boundary pieces again (not
# claimed in the resume data); rivulet seeding a selection (from its resume data) offers and
# serves a libtorrent leecher exactly the whole pieces, never a boundary piece; a later run
# with every file completes the folder byte-identical (no hole where a boundary piece was
# dropped); bad lists are refused with exit 2 before anything is written. Every rivulet runs
# with --no-dht.
#
# usage: tests/interop/select_files_more.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"

$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-select-more.XXXXXX")
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

rnd() { head -c "$2" /dev/urandom >"$1"; }

# oracle TORRENT WHAT LIST: from libtorrent's view of the torrent, for the files LIST (user
# indices: padding files not counted) prints
#   paths     their paths, one a line
#   others    the paths of the non-padding files not in LIST
#   pieces    the pieces holding any of their bytes, comma-separated
#   boundary  those of them that also hold bytes of a non-padding file not in LIST
#   bytes     the total size of those pieces
oracle() {
    $PY - "$@" <<'PY'
import sys
import libtorrent as lt
path, what, lst = sys.argv[1], sys.argv[2], sys.argv[3]
ti = lt.torrent_info(path)
fs = ti.files()
plen = ti.piece_length()
user = [i for i in range(fs.num_files()) if not fs.file_flags(i) & lt.file_storage.flag_pad_file]
sel = set()
for item in lst.split(","):
    a, _, b = item.partition("-")
    sel.update(range(int(a), int(b or a) + 1))
chosen = [user[k] for k in sorted(sel)]
others = [i for i in user if i not in chosen]
def pieces(files):
    out = set()
    for i in files:
        if fs.file_size(i) == 0:
            continue
        first = fs.file_offset(i) // plen
        last = (fs.file_offset(i) + fs.file_size(i) - 1) // plen
        out.update(range(first, last + 1))
    return out
want = pieces(chosen)
if what == "paths":
    print("\n".join(fs.file_path(i) for i in chosen))
elif what == "others":
    print("\n".join(fs.file_path(i) for i in others))
elif what == "pieces":
    print(",".join(str(p) for p in sorted(want)))
elif what == "boundary":
    print(",".join(str(p) for p in sorted(want & pieces(others))))
elif what == "bytes":
    print(sum(ti.piece_size(p) for p in want))
PY
}

# ---------------------------------------------------------------- payloads and torrents
# Uneven sizes on 32 KiB pieces: most files share their first or last piece with a neighbour.
mkdir -p pm/multi/sub pp/padded/x
rnd pm/multi/a.bin 100000          # pieces 0-3, piece 3 shared with b
rnd pm/multi/b.bin 70001           # pieces 3-5
: >pm/multi/empty.dat              # covers no piece
rnd pm/multi/sub/c.bin 5           # inside piece 5, shared with b and d
rnd pm/multi/sub/d.bin 250000      # pieces 5-12
rnd pm/multi/sub/e.bin 33333       # pieces 12-13
rnd pm/multi/z.bin 131072          # pieces 13-17, ends the torrent
rnd pp/padded/a.bin 100000         # BEP 47: a padding file after each file not ending on a
rnd pp/padded/b.bin 65537          # piece boundary, so no piece is shared
rnd pp/padded/x/c.bin 30000
$PY "$HERE/lt_make.py" pm/multi multi.torrent --mode v1 --piece-size 32768
$PY "$HERE/lt_make.py" pp/padded padded.torrent --mode v1pad --piece-size 32768
npad=$($PY -c '
import libtorrent as lt, sys
fs = lt.torrent_info(sys.argv[1]).files()
print(sum(1 for i in range(fs.num_files()) if fs.file_flags(i) & lt.file_storage.flag_pad_file))
' padded.torrent)
if [ "$npad" -gt 0 ]; then ok "padded: libtorrent made $npad padding files"; else
    bad "padded: no padding files"; fi

# rivulet info shows the indices --select-file takes: 0..n-1 over the files without padding.
if "$RV" info --json padded.torrent | $PY -c '
import json, sys
fs = json.load(sys.stdin)["files"]
idx = [f["index"] for f in fs if not f["pad"]]
ok = idx == list(range(len(idx))) and all(f["index"] is None for f in fs if f["pad"])
sys.exit(0 if ok else 1)'; then
    ok "rivulet info --json: indices 0..n-1, padding files without one"
else bad "rivulet info --json: unexpected indices"; fi
if "$RV" info padded.torrent | grep -Eq '^ +2 +29\.3 KiB +c\.bin'; then
    ok "rivulet info: c.bin listed with index 2 (padding not counted)"
else bad "rivulet info: no index 2 for c.bin: $("$RV" info padded.torrent | tail -n 6 | tr '\n' '|')"; fi

# libtorrent (and aria2, from 1) number padding files too: the file we call 2 (c.bin) is
# libtorrent's 4 here. So a so= written by libtorrent for this torrent would name other files.
ltidx=$($PY -c '
import libtorrent as lt, sys
fs = lt.torrent_info(sys.argv[1]).files()
print([i for i in range(fs.num_files()) if fs.file_path(i).endswith("c.bin")][0])' padded.torrent)
if [ "$ltidx" -eq 4 ]; then ok "libtorrent numbers c.bin 4 (padding counted); rivulet 2"
else bad "libtorrent numbers c.bin $ltidx, expected 4"; fi
if command -v aria2c >/dev/null; then
    a2idx=$(aria2c --show-files padded.torrent 2>/dev/null | awk -F'|' '$2 ~ /c\.bin$/ { gsub(/ /, "", $1); print $1 }')
    if [ "$a2idx" = 5 ]; then ok "aria2c --show-files numbers c.bin 5 (from 1, padding counted)"
    else bad "aria2c numbers c.bin '$a2idx', expected 5"; fi
fi

# ---------------------------------------------------------------- seeders
start_seeder() { # label torrent payload ip
    local port
    port=$(free_port "$4")
    $PY "$HERE/lt_seeder.py" "$2" "$WORK/$3" "$4" "$port" "$1.ready" --ready listen \
        2>"$1.seeder.err" &
    pids+=($!)
    if ! wait_file "$1.ready" 30; then
        bad "$1: libtorrent seeder not ready: $(tail -n 3 "$1.seeder.err")"
        return 1
    fi
    echo "$4:$port" >"$1.addr"
}
start_seeder multi multi.torrent pm 127.0.8.2
start_seeder padded padded.torrent pp 127.0.8.3

# ---------------------------------------------------------------- one selective download
# fetch LABEL TORRENT SEEDER PAYLOAD OUT LIST EXPECT_PIECES [rivulet options...]
#   EXPECT_PIECES: the pieces the run must fetch (comma-separated; "" for none)
fetch() {
    local label=$1 torrent=$2 seeder=$3 payload=$4 out=$5 list=$6 expect=$7
    shift 7
    local args=(download "$torrent" -o "$WORK/$out" --peer "$(cat "$seeder.addr")" --no-trackers
        --seed-time 0 --port "$(free_port 127.0.8.1)" --listen 127.0.8.1 --json --no-dht
        --state-dir "$WORK/state")
    [ -n "$list" ] && args+=(--select-file "$list")
    local rc=0
    timeout 60 "$RV" "${args[@]}" "$@" >"$label.ndjson" 2>"$label.err" || rc=$?
    if [ "$rc" -eq 0 ]; then ok "$label: rivulet exits 0"; else
        bad "$label: rivulet exit $rc: $(tail -n 3 "$label.err" | tr '\n' ' ')"; fi
    local got
    got=$($PY "$EV" "$label.ndjson" "','.join(str(p) for p in sorted(verified))")
    if [ "$got" = "$expect" ]; then
        ok "$label: fetched exactly pieces [$got]"
    else bad "$label: fetched pieces [$got], expected [$expect]"; fi
    local nv
    nv=$($PY "$EV" "$label.ndjson" "len(kind('piece_verified'))")
    if [ "$nv" -eq "$($PY "$EV" "$label.ndjson" 'len(verified)')" ]; then
        ok "$label: $nv piece_verified events, none repeated"
    else bad "$label: $nv piece_verified events for $($PY "$EV" "$label.ndjson" 'len(verified)') pieces"; fi
    if [ "$($PY "$EV" "$label.ndjson" 'finished is not None')" = True ]; then
        ok "$label: a finished event"
    else bad "$label: no finished event"; fi
}

# same_files LABEL PAYLOAD OUT TORRENT LIST: the chosen files are byte-identical, the others
# absent, and nothing else is in the folder.
same_files() {
    local label=$1 payload=$2 out=$3 torrent=$4 list=$5 f n=0
    while IFS= read -r f; do
        [ -n "$f" ] || continue
        n=$((n + 1))
        if cmp -s "$WORK/$payload/$f" "$WORK/$out/$f"; then :; else
            bad "$label: $f differs or is missing"
            return
        fi
    done < <(oracle "$torrent" paths "$list")
    ok "$label: the $n chosen files are byte-identical"
    local absent=0 present=""
    while IFS= read -r f; do
        [ -n "$f" ] || continue
        if [ -e "$WORK/$out/$f" ]; then present+="$f "; else absent=$((absent + 1)); fi
    done < <(oracle "$torrent" others "$list")
    if [ -z "$present" ]; then ok "$label: the $absent files not chosen were not created"; else
        bad "$label: files not chosen were created: $present"; fi
    local all extra
    all=$( (oracle "$torrent" paths "$list"; oracle "$torrent" others "$list") | sort)
    extra=$(cd "$WORK/$out" && find . -type f | sed 's|^\./||' | sort | comm -23 - <(echo "$all"))
    if [ -z "$extra" ]; then ok "$label: no other file in the folder (no padding, no part file)"; else
        bad "$label: unexpected files: $(echo "$extra" | tr '\n' ' ')"; fi
}

# b and d: non-adjacent, with boundary pieces on both sides of each
L1=1,4
P1=$(oracle multi.torrent pieces $L1)
B1=$(oracle multi.torrent boundary $L1)
fetch sel1 multi.torrent multi pm out1 $L1 "$P1"
same_files sel1 pm out1 multi.torrent $L1
bytes=$($PY "$EV" sel1.ndjson "int(kind('finished')[0]['message'].split()[1])")
want=$(oracle multi.torrent bytes $L1)
if [ "$bytes" -eq "$want" ]; then ok "sel1: downloaded $bytes bytes, the size of the wanted pieces"
else bad "sel1: downloaded $bytes bytes, the wanted pieces hold $want"; fi
[ -n "$B1" ] && ok "sel1: boundary pieces [$B1] fetched, written only into b and d"

# the same selection again, same state folder: only the boundary pieces, which the resume data
# does not claim (their other part was dropped), are fetched again
fetch sel1-again multi.torrent multi pm out1 $L1 "$B1"
same_files sel1-again pm out1 multi.torrent $L1

# rivulet seeding what it has of a selection, from a copy of the download and its resume data:
# a libtorrent leecher is offered (bitfield and haves) and gets exactly the whole pieces; the
# boundary pieces, half on disk, are neither claimed in the resume data nor offered
cp -a out1 out1seed
cp -a state state-seed
SP=$(free_port 127.0.8.1)
"$RV" seed multi.torrent -d "$WORK/out1seed" --select-file $L1 --no-trackers --no-dht --listen 127.0.8.1 \
    --port "$SP" --state-dir "$WORK/state-seed" --json >seed.ndjson 2>seed.err &
rvseed=$!
pids+=("$rvseed")
WHOLE=$($PY -c '
import sys
a = set(map(int, sys.argv[1].split(","))); b = set(map(int, sys.argv[2].split(",")))
print(",".join(str(p) for p in sorted(a - b)))' "$P1" "$B1")
LP=$(free_port 127.0.8.4)
if timeout 60 $PY - multi.torrent "$WORK/lt-leech" 127.0.8.4 "$LP" "127.0.8.1:$SP" "$WHOLE" \
    >leech.out 2>&1 <<'PY'; then
import sys, time
import libtorrent as lt
torrent, save, ip, port, peer, whole = sys.argv[1:7]
whole = set(map(int, whole.split(",")))
ses = lt.session({"enable_dht": False, "enable_lsd": False, "enable_upnp": False,
                  "enable_natpmp": False, "enable_outgoing_utp": False,
                  "enable_incoming_utp": False, "listen_interfaces": f"{ip}:{port}",
                  "outgoing_interfaces": ip})
h = ses.add_torrent({"ti": lt.torrent_info(torrent), "save_path": save})
h.resume()
host, p = peer.rsplit(":", 1)
deadline = time.time() + 50
offered = None
while time.time() < deadline:
    h.connect_peer((host, int(p)))
    st = h.status()
    have = {i for i, b in enumerate(st.pieces) if b}
    for pi in h.get_peer_info():
        offered = {i for i, b in enumerate(pi.pieces) if b}
    if have == whole:
        break
    time.sleep(0.2)
print("have", sorted(have), "offered", sorted(offered or []), "failed", st.num_pieces - len(have))
ok = have == whole and offered == whole
sys.exit(0 if ok else 1)
PY
    ok "seed: a libtorrent leecher got exactly the whole pieces [$WHOLE], and was offered no other"
else bad "seed: libtorrent leecher: $(tail -n 3 leech.out | tr '\n' ' ') (whole pieces: $WHOLE)"; fi
kill "$rvseed" 2>/dev/null || true
wait "$rvseed" 2>/dev/null || true
if grep -q '"event":"error"' seed.ndjson; then bad "seed: rivulet reported an error: $(grep error seed.ndjson | head -n 1)"
else ok "seed: no error while seeding a selection"; fi

# every file now: the rest arrives and the boundary pieces' dropped parts with it
ALL=$(oracle multi.torrent pieces 0-6)
REST=$($PY -c '
import sys
a = set(map(int, sys.argv[1].split(","))); h = set(map(int, sys.argv[2].split(",")))
print(",".join(str(p) for p in sorted(a - (h - set(map(int, sys.argv[3].split(",")))))))' \
    "$ALL" "$P1" "$B1")
fetch sel1-all multi.torrent multi pm out1 "" "$REST"
if diff -r "$WORK/pm/multi" "$WORK/out1/multi" >/dev/null; then
    ok "sel1-all: every file byte-identical after completing the selective download"
else bad "sel1-all: files differ: $(diff -rq "$WORK/pm/multi" "$WORK/out1/multi" | head -n 3 | tr '\n' ' ')"; fi

# the empty file, the 5-byte file inside one shared piece, and the last file
L2=2-3,6
fetch sel2 multi.torrent multi pm out2 $L2 "$(oracle multi.torrent pieces $L2)"
same_files sel2 pm out2 multi.torrent $L2
if [ -f "$WORK/out2/multi/empty.dat" ] && [ ! -s "$WORK/out2/multi/empty.dat" ]; then
    ok "sel2: the chosen empty file exists, empty"
else bad "sel2: the chosen empty file is missing"; fi

# only the empty file: nothing to fetch, done at once
fetch sel3 multi.torrent multi pm out3 2 ""
same_files sel3 pm out3 multi.torrent 2

# padding files are not counted: index 2 is c.bin, the fifth entry of libtorrent's list
L4=0,2
fetch sel4 padded.torrent padded pp out4 $L4 "$(oracle padded.torrent pieces $L4)"
same_files sel4 pp out4 padded.torrent $L4
if [ -z "$(oracle padded.torrent boundary $L4)" ]; then
    ok "sel4: with padding files no piece is shared between files"
else bad "sel4: boundary pieces in a padded torrent: $(oracle padded.torrent boundary $L4)"; fi

# ---------------------------------------------------------------- bad lists
badlist() { # list expected-message
    local rc=0
    timeout 20 "$RV" download multi.torrent -o "$WORK/out-bad" --no-trackers --no-dht --seed-time 0 \
        --listen 127.0.8.1 --port "$(free_port 127.0.8.1)" --select-file "$1" --state-dir "$WORK/state" >bad.out 2>bad.err || rc=$?
    if [ "$rc" -eq 2 ] && grep -q -- "$2" bad.err; then
        ok "--select-file '$1' refused (exit 2): $(head -n 1 bad.err)"
    else bad "--select-file '$1': exit $rc, stderr: $(head -n 2 bad.err | tr '\n' ' ')"; fi
    if [ -e "$WORK/out-bad" ]; then bad "--select-file '$1': the output folder was created"; fi
}
badlist 7 "file 7 is past the last file (the torrent has 7 files, 0-6)"
badlist 1,,2 "(at offset 2)"
badlist 3-1 "3-1"
badlist x "'x' is not a file list"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
