#!/usr/bin/env bash
# rivulet info --json against libtorrent's reading of the same .torrent files.
# Makes payloads and torrents with real tools (mktorrent, transmission-create, libtorrent) in a
# temporary folder, then compares info-hashes, name, piece geometry, files (padding skipped),
# sizes, private flag, trackers, web seeds and the optional strings. Bounded, loopback only.
#
# usage: tests/interop/info_vs_libtorrent.sh path/to/rivulet
#   LTPY=/usr/bin/python3 (the interpreter with `import libtorrent`)
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
LTPY=${LTPY:-/usr/bin/python3}
ORACLE="$HERE/lt_oracle.py"
LTMAKE="$HERE/lt_make.py"

for tool in mktorrent transmission-create; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
"$LTPY" -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $LTPY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-info-lt.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms

# Trackers and web seeds are loopback URLs; nothing here contacts them.
T1=http://127.0.0.1:6969/announce
T2=udp://127.0.0.1:6969/announce
T3=http://localhost:6970/announce
WS=http://127.0.0.1:8080/seed

# ---------------------------------------------------------------- payloads
rnd() { head -c "$2" /dev/urandom >"$1"; }

mkdir -p pay
rnd pay/single.bin 300000                       # single file, not a piece multiple

mkdir -p pay/multi/docs/deep/er pay/multi/bin
rnd pay/multi/a.dat 700001
rnd pay/multi/docs/readme.txt 1234
rnd pay/multi/docs/deep/er/nested.bin 400000
rnd pay/multi/bin/tool 65536
chmod +x pay/multi/bin/tool
rnd pay/multi/z-last 17

mkdir -p pay/big
truncate -s 20M pay/big/sparse.img              # > 16 MiB, for 16 MiB pieces
rnd pay/big/head.bin 100000

U='Ünïcødé 日本'
mkdir -p "pay/$U/sub dir"
rnd "pay/$U/ファイル.txt" 50000
rnd "pay/$U/sub dir/straße ß.bin" 90000
rnd "pay/$U/sub dir/emoji 🎵.dat" 3000

mkdir -p pay/empties/sub pay/empties/zz
: >pay/empties/0-first-empty
rnd pay/empties/a.bin 40000
: >pay/empties/sub/empty-in-dir
rnd pay/empties/sub/b.bin 20000
: >pay/empties/zz/last-empty

mkdir -p pay/v2
rnd pay/v2/one.bin 300000                       # several pieces -> piece layers
rnd pay/v2/two.bin 16384                        # exactly one block
rnd pay/v2/three.bin 100

rnd pay/single-v2.bin 200000

# ---------------------------------------------------------------- torrents
mkdir -p t
made=()
mk() { # name, command...
    local name=$1
    shift
    if "$@" >"t/$name.log" 2>&1 && [ -s "t/$name.torrent" ]; then
        made+=("$name")
    else
        bad "make $name: $(tail -n 3 "t/$name.log" | tr '\n' ' ')"
    fi
}

# mktorrent (1.1 refuses -l below 15, so 16 KiB pieces come from transmission-create -s 16
# and libtorrent below)
mk mk-single mktorrent -a "$T1" -o t/mk-single.torrent pay/single.bin
mk mk-multi mktorrent -a "$T1" -o t/mk-multi.torrent pay/multi
mk mk-l15 mktorrent -l 15 -a "$T1" -o t/mk-l15.torrent pay/multi
mk mk-l24 mktorrent -l 24 -a "$T1" -o t/mk-l24.torrent pay/big
mk mk-tiers-ws-priv mktorrent -a "$T1,$T3" -a "$T2" -a http://127.0.0.2:1/a -w "$WS" \
    -w http://127.0.0.1:8081/other -p -c "mktorrent comment" -l 15 \
    -o t/mk-tiers-ws-priv.torrent pay/multi
mk mk-single-priv-src mktorrent -a "$T2" -p -c "single ü comment" -s "RIVSRC" -w "$WS/single.bin" \
    -n renamed.bin -o t/mk-single-priv-src.torrent pay/single.bin
mk mk-nodate-unicode mktorrent -d -a "$T1" -l 16 -o t/mk-nodate-unicode.torrent "pay/$U"

# transmission-create
mk tr-single transmission-create -t "$T1" -c "transmission comment" -o t/tr-single.torrent \
    pay/single.bin
mk tr-unicode transmission-create -p -t "$T1" -t "$T2" -s 16 -o t/tr-unicode.torrent "pay/$U"
mk tr-multi-notracker transmission-create -s 16 -o t/tr-multi-notracker.torrent pay/multi

# libtorrent
mk lt-v1 "$LTPY" "$LTMAKE" pay/multi t/lt-v1.torrent --mode v1 --tracker "0,$T1"
mk lt-v1pad "$LTPY" "$LTMAKE" pay/multi t/lt-v1pad.torrent --mode v1pad --piece-size 32768 \
    --tracker "0,$T1"
mk lt-v2 "$LTPY" "$LTMAKE" pay/v2 t/lt-v2.torrent --mode v2 --piece-size 16384 --tracker "0,$T1"
mk lt-v2-multi "$LTPY" "$LTMAKE" pay/multi t/lt-v2-multi.torrent --mode v2 --piece-size 65536
mk lt-v2-single "$LTPY" "$LTMAKE" pay/single-v2.bin t/lt-v2-single.torrent --mode v2 \
    --piece-size 32768 --private
mk lt-hybrid "$LTPY" "$LTMAKE" pay/multi t/lt-hybrid.torrent --mode hybrid --piece-size 65536 \
    --tracker "0,$T1" --tracker "1,$T2" --web-seed "$WS" --comment "hybrid"
mk lt-hybrid-single "$LTPY" "$LTMAKE" pay/single-v2.bin t/lt-hybrid-single.torrent --mode hybrid \
    --piece-size 16384
mk lt-empty-v1 "$LTPY" "$LTMAKE" pay/empties t/lt-empty-v1.torrent --mode v1 --piece-size 16384
mk lt-empty-v1pad "$LTPY" "$LTMAKE" pay/empties t/lt-empty-v1pad.torrent --mode v1pad \
    --piece-size 16384
mk lt-empty-v2 "$LTPY" "$LTMAKE" pay/empties t/lt-empty-v2.torrent --mode v2 --piece-size 16384
mk lt-empty-hybrid "$LTPY" "$LTMAKE" pay/empties t/lt-empty-hybrid.torrent --mode hybrid \
    --piece-size 16384
mk lt-unicode-hybrid "$LTPY" "$LTMAKE" "pay/$U" t/lt-unicode-hybrid.torrent --mode hybrid \
    --piece-size 16384 --comment "コメント"
mk lt-tiers "$LTPY" "$LTMAKE" pay/single.bin t/lt-tiers.torrent --mode v1 \
    --tracker "0,$T1" --tracker "0,$T3" --tracker "1,$T2" --tracker "2,http://127.0.0.3:80/ann" \
    --tracker "2,udp://[::1]:6969"

echo "made ${#made[@]} torrents"
if [ "${#made[@]}" -ge 10 ]; then ok "at least 10 torrents made"; else bad "only ${#made[@]} torrents made"; fi

# ---------------------------------------------------------------- compare
for name in "${made[@]}"; do
    f="t/$name.torrent"
    rc=0
    timeout 20 "$RV" info --json "$f" >"t/$name.rv.json" 2>"t/$name.rv.err" || rc=$?
    if [ "$rc" -ne 0 ]; then
        bad "$name: rivulet info exited $rc: $(head -c 300 "t/$name.rv.err")"
        continue
    fi
    if out=$(timeout 30 "$LTPY" "$ORACLE" compare "$f" "t/$name.rv.json" 2>&1); then
        ok "$name: rivulet agrees with libtorrent"
    else
        bad "$name: rivulet disagrees with libtorrent"
        printf '%s\n' "$out"
    fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
