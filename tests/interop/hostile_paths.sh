#!/usr/bin/env bash
# Hostile file names and planted symlinks, downloaded from a real libtorrent seeder (--peer,
# no trackers, loopback only).
#
# 1. Names that are path tricks on other systems but ordinary names on Linux: '..\..\x',
#    '%2e%2e%2fescape', a '%2e%2e' folder, 'C:\x', 'C:x', a 'C:' folder, and the UTF-8
#    overlong forms of '.' and '/' (C0 AE, C0 AF) as a folder '..' and a file '/etc'.
#    Decision: rivulet keeps them as literal names (the kernel only splits on the byte '/', and
#    decodes neither '\', '%' nor UTF-8), so they cannot leave the folder; refusing them would
#    refuse real torrents made on Linux. (libtorrent 2.0 instead drops the backslashes and
#    replaces invalid UTF-8 with '_', then renames the clashes: its copy is placed where it
#    looks for it.) Checked: each file is byte-identical under OUT at its literal name,
#    nothing else is in OUT, and nothing was created or changed anywhere else in the test's
#    folder (rivulet runs from a working folder inside it).
# 2. Symlinks planted in the download folder pointing outside: the torrent's folder itself, a
#    folder on a file's path, a file (whose target even holds the right data), and a dangling
#    link. `rivulet verify` must not count the outside data, `rivulet download` must stop with
#    an error naming the link, and nothing outside may be written or created.
# 3. Deep paths: a file whose path in the torrent is legal (1.9 KB, under the 4096-byte cap)
#    inside a download folder whose own path is 3 KB, so the whole is over PATH_MAX: rivulet
#    walks with openat from the folder's descriptor, so it downloads, and verify reads it.
#
# usage: tests/interop/hostile_paths.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-hpaths.XXXXXX")
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
# every path below WORK with its type, size and mtime, one a line, NUL-free (names escaped)
snapshot() { (cd "$WORK" && find . -mindepth 1 -not -name .rv-ports "$@" -printf '%P %y %s %T@ %l\n' | LC_ALL=C sort); }

# Seeds TORRENT from SRC (the files at their literal names) through libtorrent on 127.0.0.2:
# SRC is copied into SEEDDIR at the paths libtorrent gives the torrent's files.
# Not in a command substitution: the seeder's PID must reach pids here, for cleanup (a
# subshell's pids+= was lost, and the seeders outlived the test by their 600 s).
start_seeder() { # VAR TORRENT SRC SEEDDIR READY LOG: sets VAR to the seeder's port
    local var=$1 port
    shift
    $PY - "$1" "$2" "$3" <<'PY'
import os, shutil, sys, libtorrent as lt
tor, src, dst = sys.argv[1:4]
raw = lt.bdecode(open(tor, "rb").read())[b"info"]
fs = lt.torrent_info(tor).files()
for i in range(fs.num_files()):
    parts = [raw[b"name"]] + (raw[b"files"][i][b"path"] if b"files" in raw else [])
    s = os.path.join(os.fsencode(src), *parts)
    d = os.path.join(os.fsencode(dst), os.fsencode(fs.file_path(i)))
    os.makedirs(os.path.dirname(d), exist_ok=True)
    shutil.copyfile(s, d)
PY
    port=$(free_port 127.0.0.2)
    $PY "$HERE/lt_seeder.py" "$1" "$3" 127.0.0.2 "$port" "$4" --ready listen >"$5" 2>&1 &
    pids+=($!)
    wait_file "$4" || { echo "FAIL seeder for $1: $(tail -n 3 "$5")" >&2; return 1; }
    printf -v "$var" '%s' "$port"
}

# ---- 1. literal names
OV_DOTDOT=$(printf '\xc0\xae\xc0\xae')   # overlong '..'
OV_SLASH=$(printf '\xc0\xaf')            # overlong '/'
mkdir -p src/hostile/%2e%2e "src/hostile/C:" "src/hostile/$OV_DOTDOT"
names=('..\..\x' '%2e%2e%2fescape' '%2e%2e/x' 'C:\x' 'C:x' 'C:/y' "$OV_DOTDOT/${OV_SLASH}etc"
       "${OV_DOTDOT}${OV_SLASH}passwd")
i=0
for n in "${names[@]}"; do
    head -c $((40000 + 7919 * i)) /dev/urandom >"src/hostile/$n"
    i=$((i + 1))
done
"$RV" create src/hostile -o names.torrent -l 16K >/dev/null 2>&1
nfiles=$("$RV" info --json names.torrent | $PY -c 'import json,sys; print(len(json.load(sys.stdin)["files"]))')
[ "$nfiles" -eq ${#names[@]} ] && ok "names: the torrent lists the ${#names[@]} files" \
    || bad "names: the torrent lists $nfiles files, not ${#names[@]}"
start_seeder SP names.torrent src seed1 seed1.ready seed1.log

mkdir -p logs box/cwd box/out st1
LP=$(free_port 127.0.0.3) # before the stamp: free_port.py writes its ledger, ./.rv-ports
touch stamp
sleep 0.05
before=$(snapshot -not -path './logs*' -not -path './box/out*' -not -path './st1*' -not -path './seed1*')
rc=0
(cd box/cwd && timeout 60 "$RV" download ../../names.torrent -o ../out --peer "127.0.0.2:$SP" \
    --no-trackers --no-dht --listen 127.0.0.3 --port "$LP" --seed-time 0 \
    --state-dir ../../st1 -q) >logs/names.out 2>logs/names.err || rc=$?
[ $rc -eq 0 ] && ok "names: download exit 0" || bad "names: download exit $rc: $(tail -n 3 logs/names.err | tr '\n' ' ')"
same=0
for n in "${names[@]}"; do
    if cmp -s "src/hostile/$n" "box/out/hostile/$n"; then same=$((same + 1))
    else bad "names: $(printf '%q' "$n") is missing or differs under OUT"; fi
done
[ $same -eq ${#names[@]} ] && ok "names: all ${#names[@]} files byte-identical at their literal names under OUT"
want=$(cd src && find hostile | LC_ALL=C sort)
got=$(cd box/out && find hostile | LC_ALL=C sort)
extra=$(cd box/out && find . -mindepth 1 -maxdepth 1 ! -name hostile)
if [ "$want" = "$got" ] && [ -z "$extra" ]; then ok "names: OUT holds exactly the torrent's files and folders"
else bad "names: OUT differs from the torrent: $(diff <(echo "$want") <(echo "$got") | head -5 | tr '\n' ' ') $extra"; fi
after=$(snapshot -not -path './logs*' -not -path './box/out*' -not -path './st1*' -not -path './seed1*')
# The state folder and logs are rivulet's own; the rest of WORK (sources, cwd, box) must be as
# before. -newer catches anything created anywhere else under WORK.
if [ "$before" = "$after" ]; then ok "names: nothing created or changed outside OUT (cwd, its parents, the sources)"
else bad "names: changed outside OUT: $(diff <(echo "$before") <(echo "$after") | head -5 | tr '\n' ' ')"; fi
newer=$(find "$WORK" -newer stamp -not -path "$WORK/logs*" -not -path "$WORK/box/out*" \
    -not -path "$WORK/st1*" -not -path "$WORK/seed1*" -not -path "$WORK/box" | head -5)
[ -z "$newer" ] && ok "names: no file newer than the download's start outside OUT" \
    || bad "names: written outside OUT: $newer"

# ---- 2. planted symlinks
mkdir -p src/sym/dir
head -c 300000 /dev/urandom >src/sym/dir/a.bin
head -c 200000 /dev/urandom >src/sym/b.bin
head -c 100000 /dev/urandom >src/sym/c.bin
"$RV" create src/sym -o sym.torrent -l 16K >/dev/null 2>&1
start_seeder SP2 sym.torrent src seed2 seed2.ready seed2.log
mkdir -p outside/dir outside/top
cp src/sym/b.bin outside/b.bin          # the right data, outside: must be neither used nor touched
echo "keep me" >outside/keep.txt

# run_sym LABEL OUT: downloads sym.torrent into OUT; prints rivulet's exit code and stderr to files
run_sym() {
    local label=$1 out=$2 rc=0
    timeout 60 "$RV" download sym.torrent -o "$out" --peer "127.0.0.2:$SP2" --no-trackers --no-dht \
        --listen 127.0.0.3 --port "$(free_port 127.0.0.3)" --seed-time 0 --state-dir "st-$label" \
        -q >"logs/$label.out" 2>"logs/$label.err" || rc=$?
    echo $rc >"logs/$label.rc"
}
outside_before=$(find outside -printf '%P %y %s %T@\n' | LC_ALL=C sort; sha1sum outside/b.bin outside/keep.txt)

check_refused() { # LABEL LINKNAME: exit non-zero, below 124, an error naming the link
    local label=$1 link=$2 rc msg
    rc=$(cat "logs/$label.rc")
    msg=$(grep -m 1 '^rivulet: ' "logs/$label.err" || true)
    if [ "$rc" -ne 0 ] && [ "$rc" -lt 124 ] && [ -n "$msg" ] && [[ "$msg" == *"$link"* ]] &&
        [[ "$msg" == *"symbolic link"* ]]; then
        ok "$label: refused (exit $rc): $msg"
    else
        bad "$label: exit $rc, stderr: $(head -c 300 "logs/$label.err" | tr '\n' ' ')"
    fi
}

# a) a folder on a file's path: OUT/sym/dir -> outside/dir
mkdir -p o-dir/sym
ln -s "$WORK/outside/dir" o-dir/sym/dir
run_sym folderlink o-dir
check_refused folderlink sym/dir

# b) a file: OUT/sym/b.bin -> outside/b.bin, which holds b.bin's data. verify first.
mkdir -p o-file/sym
ln -s "$WORK/outside/b.bin" o-file/sym/b.bin
rc=0
timeout 30 "$RV" verify sym.torrent -d o-file --json >logs/verify.json 2>logs/verify.err || rc=$?
if [ $rc -lt 124 ] && $PY - logs/verify.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
b = [f for f in d["files"] if f["path"] == "sym/b.bin"]
# b.bin's bytes are behind the link: none of them may count, nor the torrent be complete
assert len(b) == 1 and b[0]["bytes_have"] == 0 and b[0]["state"] != "complete", b
assert not d["complete"], d
print(b[0]["state"], file=sys.stderr)
PY
then ok "file link: verify does not count the data behind the link (exit $rc)"
else bad "file link: verify exit $rc: $(head -c 400 logs/verify.json) $(head -c 200 logs/verify.err)"; fi
run_sym filelink o-file
check_refused filelink sym/b.bin

# c) a dangling link where a file goes: OUT/sym/c.bin -> outside/new.bin (must not be created)
mkdir -p o-dangle/sym
ln -s "$WORK/outside/new.bin" o-dangle/sym/c.bin
run_sym dangling o-dangle
check_refused dangling sym/c.bin

# d) the torrent's folder itself: OUT/sym -> outside/top
mkdir -p o-top
ln -s "$WORK/outside/top" o-top/sym
run_sym toplink o-top
check_refused toplink sym

outside_after=$(find outside -printf '%P %y %s %T@\n' | LC_ALL=C sort; sha1sum outside/b.bin outside/keep.txt)
if [ "$outside_before" = "$outside_after" ]; then
    ok "symlinks: nothing outside was written, created or changed ($(find outside -type f | wc -l) files there)"
else bad "symlinks: outside changed: $(diff <(echo "$outside_before") <(echo "$outside_after") | head -6 | tr '\n' ' ')"; fi

# control: the same torrent into a clean folder completes, so the refusals above are the links'
run_sym clean o-clean
rc=$(cat logs/clean.rc)
if [ "$rc" -eq 0 ] && cmp -s src/sym/dir/a.bin o-clean/sym/dir/a.bin && cmp -s src/sym/b.bin o-clean/sym/b.bin &&
    cmp -s src/sym/c.bin o-clean/sym/c.bin; then ok "control: a clean folder downloads byte-identical"
else bad "control: exit $rc: $(tail -n 3 logs/clean.err | tr '\n' ' ')"; fi

# ---- 3. over PATH_MAX in all: OUT is 12 folders of 250 bytes, the torrent's path 8 of 240
comp() { printf "%${2}s" "" | tr ' ' "$1"; }
deep_rel=deep
for i in 1 2 3 4 5 6 7 8; do deep_rel+=/$(comp "$i" 240); done
mkdir -p "src/$deep_rel"
head -c 500000 /dev/urandom >"src/$deep_rel/f.bin"
head -c 1000 /dev/urandom >src/deep/top.bin
"$RV" create src/deep -o deep.torrent -l 16K >/dev/null 2>&1
start_seeder SP3 deep.torrent src seed3 seed3.ready seed3.log
deep_out=$WORK/o-deep
for i in $(seq 12); do deep_out+=/$(comp o 250); done
mkdir -p "$deep_out"
len=$((${#deep_out} + 1 + ${#deep_rel} + 6))
rc=0
timeout 60 "$RV" download deep.torrent -o "$deep_out" --peer "127.0.0.2:$SP3" --no-trackers --no-dht \
    --listen 127.0.0.3 --port "$(free_port 127.0.0.3)" --seed-time 0 --state-dir st-deep -q \
    >logs/deep.out 2>logs/deep.err || rc=$?
# compare from inside OUT (cd one folder at a time): the absolute name is too long to open
same=$(cd "$WORK/o-deep" && for i in $(seq 12); do cd "$(comp o 250)"; done &&
    cmp -s "$WORK/src/$deep_rel/f.bin" "$deep_rel/f.bin" && cmp -s "$WORK/src/deep/top.bin" deep/top.bin &&
    echo yes || echo no)
if [ $rc -eq 0 ] && [ "$same" = yes ] && [ $len -gt 4096 ]; then
    ok "deep: a file $len bytes deep (over PATH_MAX) downloaded byte-identical"
else bad "deep: exit $rc, identical: $same, length $len: $(tail -n 2 logs/deep.err | tr '\n' ' ')"; fi
rc=0
timeout 30 "$RV" verify deep.torrent -d "$deep_out" --json >logs/deep-verify.json 2>logs/deep-verify.err || rc=$?
if [ $rc -eq 0 ] && $PY -c 'import json,sys; assert json.load(open(sys.argv[1]))["complete"]' logs/deep-verify.json; then
    ok "deep: verify reads it back complete"
else bad "deep: verify exit $rc: $(head -c 300 logs/deep-verify.err)"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
