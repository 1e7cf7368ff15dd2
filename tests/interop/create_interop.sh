#!/usr/bin/env bash
# Torrents made by `rivulet create` must be read the same way by libtorrent and Transmission,
# and libtorrent must find the original data 100% complete against them.
#
# usage: tests/interop/create_interop.sh path/to/rivulet
#   LTPY=/usr/bin/python3 (the interpreter with `import libtorrent`)
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
LTPY=${LTPY:-/usr/bin/python3}
ORACLE="$HERE/lt_oracle.py"

command -v transmission-show >/dev/null || { echo "SKIP: transmission-show not installed"; exit 77; }
"$LTPY" -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $LTPY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-create-interop.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms
check() { # description, command...
    local d=$1
    shift
    if "$@"; then ok "$d"; else bad "$d"; fi
}

TA=http://127.0.0.1:6969/announce
TA2=http://localhost:6969/announce # same tier as TA (comma-separated in one -t)
TB=udp://127.0.0.1:6970/announce
WS=http://127.0.0.1:8080/seed/
COMMENT='made by rivulet — interop ✓'

# ---------------------------------------------------------------- payloads
rnd() { head -c "$2" /dev/urandom >"$1"; }
mkdir -p data/multi/nested/deeper data/multi/other
rnd data/multi/big.bin 2500000
rnd data/multi/nested/small.txt 777
: >data/multi/nested/empty.dat
rnd data/multi/nested/deeper/block.bin 16384
rnd data/multi/other/odd.bin 123457
rnd data/single.bin 1500001
# 64 MiB, mostly a hole: big enough that the automatic piece size is above the 16 KiB minimum
truncate -s 64M data/big.img
rnd data/head.tmp 300000
dd if=data/head.tmp of=data/big.img conv=notrunc status=none
rm data/head.tmp

json_get() { # file, python expression on d
    "$LTPY" -c 'import json,sys; d=json.load(open(sys.argv[1])); v=eval(sys.argv[2]); print("" if v is None else v)' "$1" "$2"
}

# One made torrent: info, libtorrent, transmission, recheck.
# args: label, torrent, save_path, expected_piece_length (0: any), expect_private(1/0),
#       expected tier json
verify() {
    local label=$1 t=$2 save=$3 want_pl=$4 want_priv=$5 want_tiers=$6
    local rc=0
    timeout 20 "$RV" info --json "$t" >"$t.json" 2>"$t.err" || rc=$?
    if [ "$rc" -ne 0 ]; then
        bad "$label: rivulet info exited $rc: $(head -c 300 "$t.err")"
        return
    fi
    local rv_hash lt_hash tr_hash
    rv_hash=$(json_get "$t.json" 'd.get("info_hash")')
    if ! timeout 30 "$LTPY" "$ORACLE" dump "$t" >"$t.lt.json" 2>"$t.lt.err"; then
        bad "$label: libtorrent cannot load it: $(tail -n 1 "$t.lt.err")"
        return
    fi
    ok "$label: libtorrent loads it"
    lt_hash=$(json_get "$t.lt.json" 'd["info_hash"]')
    if [ -n "$rv_hash" ] && [ "$rv_hash" = "$lt_hash" ]; then
        ok "$label: v1 info-hash agrees with libtorrent ($lt_hash)"
    else
        bad "$label: v1 info-hash rivulet=$rv_hash libtorrent=$lt_hash"
    fi
    local v2
    v2=$(json_get "$t.lt.json" 'd["info_hash_v2"]')
    check "$label: a v1 torrent (libtorrent sees no v2 hash)" test -z "$v2"
    if out=$(timeout 30 "$LTPY" "$ORACLE" compare "$t" "$t.json" 2>&1); then
        ok "$label: rivulet info and libtorrent agree on every field"
    else
        bad "$label: rivulet info and libtorrent disagree"
        printf '%s\n' "$out"
    fi

    tr_hash=$(timeout 20 transmission-show "$t" 2>&1 | sed -n 's/^ *Hash: *\([0-9a-fA-F]\{40\}\).*/\1/p' | head -n 1 |
        tr 'A-F' 'a-f') || true
    if [ -n "$tr_hash" ] && [ "$tr_hash" = "$lt_hash" ]; then
        ok "$label: transmission-show accepts it, same hash"
    else
        bad "$label: transmission-show hash '$tr_hash' vs '$lt_hash': $(timeout 20 transmission-show "$t" 2>&1 | head -n 3 | tr '\n' ' ')"
    fi

    local pl pc total
    pl=$(json_get "$t.lt.json" 'd["piece_length"]')
    pc=$(json_get "$t.lt.json" 'd["piece_count"]')
    total=$(json_get "$t.lt.json" 'd["total_size"]')
    if [ "$want_pl" -ne 0 ]; then
        check "$label: piece length $pl = $want_pl" test "$pl" -eq "$want_pl"
    else
        check "$label: auto piece length $pl is a power of two in [16 KiB, 16 MiB]" \
            test $((pl >= 16384 && pl <= 16777216 && (pl & (pl - 1)) == 0)) -eq 1
    fi
    check "$label: $pc pieces cover $total bytes" test "$pc" -eq $(((total + pl - 1) / pl))
    check "$label: private flag = $want_priv (libtorrent)" \
        test "$(json_get "$t.lt.json" 'int(d["private"])')" -eq "$want_priv"
    # (libtorrent shuffles the URLs inside a tier, so compare each tier sorted)
    check "$label: trackers as libtorrent sees them = $want_tiers" \
        test "$(json_get "$t.lt.json" 'json.dumps([sorted(t) for t in d["trackers"]])')" = "$want_tiers"

    local st
    if st=$(timeout 90 "$LTPY" "$ORACLE" check "$t" "$save" 60 2>&1); then
        ok "$label: libtorrent finds the original data complete ($st)"
    else
        bad "$label: libtorrent recheck of the original data: $st"
    fi
}

# ---------------------------------------------------------------- multi-file, all options
rc=0
timeout 60 "$RV" create data/multi -o multi.torrent -t "$TA,$TA2" -t "$TB" --private \
    --comment "$COMMENT" --web-seed "$WS" >create1.out 2>create1.err || rc=$?
if [ "$rc" -eq 0 ] && [ -s multi.torrent ]; then
    ok "create multi-file with two tiers, --private, --comment, --web-seed"
    verify multi multi.torrent "$WORK/data" 0 1 "[[\"$TA\", \"$TA2\"], [\"$TB\"]]"
    check "multi: comment kept" test "$(json_get multi.torrent.lt.json 'd["comment"]')" = "$COMMENT"
    check "multi: web seed kept" test "$(json_get multi.torrent.lt.json '",".join(d["web_seeds"])')" = "$WS"
    check "multi: 5 files with the empty one, in libtorrent's view" \
        test "$(json_get multi.torrent.lt.json 'len([f for f in d["files"] if not f["pad"]])')" -eq 5

    # Negative control: the recheck must notice a changed byte, or it proves nothing.
    mkdir -p corrupt
    cp -r data/multi corrupt/multi
    printf 'X' | dd of=corrupt/multi/big.bin bs=1 seek=1000000 conv=notrunc status=none
    if st=$(timeout 90 "$LTPY" "$ORACLE" check multi.torrent "$WORK/corrupt" 60 2>&1); then
        bad "multi: libtorrent recheck of corrupted data claims complete ($st)"
    else
        ok "multi: libtorrent recheck notices a corrupted byte ($st)"
    fi
else
    bad "create multi-file exited $rc: $(head -c 300 create1.err)"
fi

# ---------------------------------------------------------------- single file, auto piece size
rc=0
timeout 60 "$RV" create data/big.img -o single-auto.torrent -t "$TA" >create2.out 2>create2.err || rc=$?
if [ "$rc" -eq 0 ] && [ -s single-auto.torrent ]; then
    ok "create single-file (64 MiB), automatic piece size"
    verify single-auto single-auto.torrent "$WORK/data" 0 0 "[[\"$TA\"]]"
    check "single-auto: name is the file name" \
        test "$(json_get single-auto.torrent.lt.json 'd["name"]')" = big.img
else
    bad "create single-file exited $rc: $(head -c 300 create2.err)"
fi

# ---------------------------------------------------------------- explicit 16 KiB pieces
rc=0
timeout 60 "$RV" create data/single.bin -o single-16k.torrent --piece-size 16384 -t "$TA" \
    >create3.out 2>create3.err || rc=$?
if [ "$rc" -eq 0 ] && [ -s single-16k.torrent ]; then
    ok "create single-file, --piece-size 16384"
    verify single-16k single-16k.torrent "$WORK/data" 16384 0 "[[\"$TA\"]]"
else
    bad "create single-file --piece-size 16384 exited $rc: $(head -c 300 create3.err)"
fi

rc=0
timeout 60 "$RV" create data/multi -o multi-16k.torrent --piece-size 16384 -t "$TA" \
    >create4.out 2>create4.err || rc=$?
if [ "$rc" -eq 0 ] && [ -s multi-16k.torrent ]; then
    ok "create multi-file, --piece-size 16384"
    verify multi-16k multi-16k.torrent "$WORK/data" 16384 0 "[[\"$TA\"]]"
else
    bad "create multi-file --piece-size 16384 exited $rc: $(head -c 300 create4.err)"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
