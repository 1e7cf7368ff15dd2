#!/usr/bin/env bash
# Output folders that cannot be written, with a libtorrent seeder ready to send the data: each
# download stops with exit 6 (disk) and one error line naming the path and the cause, without a
# crash, and writes nothing it should not:
#   ro_dir    -o on a read-only tmpfs                          (EROFS, the torrent's folder)
#   ro_below  -o a missing folder under a read-only tmpfs       (EROFS, the -o folder)
#   top_file  the torrent's folder is a regular file            (ENOTDIR; the file untouched)
#   sub_file  a subfolder the second file needs is a regular file (ENOTDIR; the file untouched,
#             only the other file's pieces written, the resume file claims only pieces on disk)
#   eacces    run as nobody, -o a root-owned 755 folder         (EACCES, nothing created)
#   ro_file   run as nobody, a file to write is root-owned 0444 (EACCES on that file, unchanged)
# The last two drop to uid 65534 with setpriv (root ignores permission bits).
#
# usage: tests/interop/fault_readonly.sh path/to/rivulet   (root: it mounts tmpfs; else skip)
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3

$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-readonly.XXXXXX")
pids=()
mounts=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
chmod 755 "$WORK" # nobody must reach the torrent and its folders
cd "$WORK"

mkdir ro
if [ "$(id -u)" -ne 0 ] || ! mount -t tmpfs -o ro,size=1m tmpfs ro 2>/dev/null; then
    echo "SKIP: cannot mount a tmpfs here (needs root)"
    exit 77
fi
mounts+=("$WORK/ro")

. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms
tree() { (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | tr '\n' ' '); }

# payload/a.bin (32 pieces) then payload/sub/b.bin (16 pieces): a.bin's pieces come first.
mkdir -p data/payload/sub
head -c 2097152 /dev/urandom > data/payload/a.bin
head -c 1048576 /dev/urandom > data/payload/sub/b.bin
NP=48
"$RV" create -q data/payload -o t.torrent --piece-size 64K
chmod 644 t.torrent

SEED_PORT=$(free_port 127.0.0.2)
$PY "$HERE/lt_seeder.py" t.torrent data 127.0.0.2 "$SEED_PORT" seed.ready --ready listen 2> seed.err &
pids+=($!)
wait_file seed.ready 30 || { bad "seeder not ready: $(tail -n 3 seed.err)"; exit 1; }

# run NAME OUT [as-nobody]: one download into OUT, its exit code in $rc, stderr in NAME.err
run() {
    local name=$1 out=$2 st="$WORK/st-$1" cache="$WORK/cache-$1"
    mkdir -p "$st" "$cache"
    local pre=()
    if [ "${3:-}" = nobody ]; then
        chown 65534:65534 "$st" "$cache"
        pre=(setpriv --reuid=65534 --regid=65534 --clear-groups env HOME=/nonexistent)
    fi
    rc=0
    timeout 30 "${pre[@]}" env XDG_CACHE_HOME="$cache" "$RV" download --seed-time 0 --no-trackers \
        --peer "127.0.0.2:$SEED_PORT" --state-dir "$st" t.torrent -o "$out" -q \
        > "$name.out" 2> "$name.err" || rc=$?
    local lines
    lines=$(wc -l < "$name.err")
    [ "$rc" -eq 6 ] && ok "$name: exit 6" || bad "$name: exit $rc"
    [ "$lines" -eq 1 ] && ok "$name: $(cat "$name.err")" \
        || bad "$name: $lines lines on stderr: $(head -c 400 "$name.err" | tr '\n' '|')"
}
# claims NAME: pieces the resume file in st-NAME claims (0 without one)
claims() {
    $PY - "$WORK/st-$1" <<'EOF'
import os, sys
d = sys.argv[1]
n = 0
for f in os.listdir(d):
    if f.endswith(".resume"):
        b = open(os.path.join(d, f), "rb").read()
        i = b.find(b"6:pieces")
        if i >= 0:
            j = b.index(b":", i + 8)
            ln = int(b[i + 8:j])
            n += sum(bin(x).count("1") for x in b[j + 1:j + 1 + ln])
print(n)
EOF
}

# ---- a read-only mount as -o
run ro_dir ro
grep -q "ro/payload: Read-only file system" ro_dir.err && ok "ro_dir: names ro/payload and EROFS" \
    || bad "ro_dir: expected 'ro/payload: Read-only file system'"
[ -z "$(tree ro)" ] && ok "ro_dir: the mount is still empty" || bad "ro_dir: found $(tree ro)"

# ---- -o a folder to create under a read-only mount
run ro_below ro/out
grep -q "ro/out: Read-only file system" ro_below.err && ok "ro_below: names ro/out and EROFS" \
    || bad "ro_below: expected 'ro/out: Read-only file system'"

# ---- the torrent's own folder is a regular file
mkdir o_top
echo "not a folder" > o_top/payload
run top_file o_top
grep -q "o_top/payload: Not a directory" top_file.err && ok "top_file: names o_top/payload and ENOTDIR" \
    || bad "top_file: expected 'o_top/payload: Not a directory'"
[ "$(cat o_top/payload)" = "not a folder" ] && [ "$(tree o_top)" = "./payload " ] \
    && ok "top_file: the file is untouched, nothing else in o_top" || bad "top_file: o_top holds $(tree o_top)"
c=$(claims top_file)
[ "$c" -eq 0 ] && ok "top_file: the resume file claims no piece" || bad "top_file: the resume file claims $c pieces"

# ---- a subfolder the second file needs is a regular file
mkdir -p o_sub/payload
echo "not a folder" > o_sub/payload/sub
run sub_file o_sub
grep -q "o_sub/payload/sub: Not a directory" sub_file.err && ok "sub_file: names o_sub/payload/sub and ENOTDIR" \
    || bad "sub_file: expected 'o_sub/payload/sub: Not a directory'"
t=$(tree o_sub)
[ "$(cat o_sub/payload/sub)" = "not a folder" ] && { [ "$t" = "./payload ./payload/a.bin ./payload/sub " ] || [ "$t" = "./payload ./payload/sub " ]; } \
    && ok "sub_file: the file is untouched, only payload/a.bin written besides ($t)" || bad "sub_file: o_sub holds $t"
c=$(claims sub_file)
vrc=0
have=$("$RV" verify t.torrent -d o_sub --json 2> /dev/null | $PY -c 'import json,sys; print(json.load(sys.stdin)["pieces_have"])') || vrc=$?
{ [ "$vrc" -eq 0 ] || [ "$vrc" -eq 4 ]; } && [ "$c" -le "$have" ] && [ "$have" -le 32 ] \
    && ok "sub_file: the resume file claims $c pieces, verify finds $have (all in a.bin)" \
    || bad "sub_file: the resume file claims $c pieces, verify finds $have (verify status $vrc)"

# ---- permission denied: nobody, -o a folder owned by root
mkdir o_acc
chmod 755 o_acc
run eacces o_acc nobody
grep -q "o_acc/payload: Permission denied" eacces.err && ok "eacces: names o_acc/payload and EACCES" \
    || bad "eacces: expected 'o_acc/payload: Permission denied'"
[ -z "$(tree o_acc)" ] && ok "eacces: nothing created in o_acc" || bad "eacces: o_acc holds $(tree o_acc)"

# ---- permission denied on one file: nobody owns the folders, a.bin is root's and read-only
mkdir -p o_file/payload/sub
head -c 1000 /dev/urandom > o_file/payload/a.bin
chmod 444 o_file/payload/a.bin
chown -R 65534:65534 o_file
chown 0:0 o_file/payload/a.bin
sum=$(sha1sum < o_file/payload/a.bin)
run ro_file o_file nobody
grep -q "o_file/payload/a.bin: Permission denied" ro_file.err && ok "ro_file: names o_file/payload/a.bin and EACCES" \
    || bad "ro_file: expected 'o_file/payload/a.bin: Permission denied'"
[ "$(sha1sum < o_file/payload/a.bin)" = "$sum" ] && [ "$(stat -c %s o_file/payload/a.bin)" -eq 1000 ] \
    && ok "ro_file: a.bin unchanged" || bad "ro_file: a.bin changed"
t=$(tree o_file)
[ "$t" = "./payload ./payload/a.bin ./payload/sub " ] || [ "$t" = "./payload ./payload/a.bin ./payload/sub ./payload/sub/b.bin " ] \
    && ok "ro_file: nothing else in o_file ($t)" || bad "ro_file: o_file holds $t"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
