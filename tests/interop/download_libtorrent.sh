#!/usr/bin/env bash
# `rivulet download` from a real libtorrent seeder: the files written must be byte-identical to
# the seeder's. Single-file and multi-file torrents; 16 KiB, 256 KiB, 4 MiB and 16 MiB pieces;
# sizes that are not a multiple of the piece size; zero-length files; BEP 47 padding files (a
# libtorrent-made torrent, the padding must not be written); the seeder found through --peer
# with --no-trackers (one torrent also lists a dead tracker that must not be asked) and, once,
# through a real opentracker over HTTP.
#
# usage: tests/interop/download_libtorrent.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"

command -v opentracker >/dev/null || { echo "SKIP: opentracker not installed"; exit 77; }
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-dl-lt.XXXXXX")
chmod 755 "$WORK"
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

stop_pid() { # pid: SIGTERM, then wait for it
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
rnd() { head -c "$2" /dev/urandom >"$1"; }
lt_pieces() { # torrent: piece count as libtorrent reads it
    $PY -c 'import libtorrent as lt, sys; print(lt.torrent_info(sys.argv[1]).num_pieces())' "$1"
}
lt_hash() { # torrent: v1 info-hash
    $PY -c 'import libtorrent as lt, sys; print(lt.torrent_info(sys.argv[1]).info_hashes().v1)' "$1"
}

# ---------------------------------------------------------------- payloads and torrents
# Every size is deliberately not a multiple of the piece size.
mkdir -p p16k p256k/multi/sub/deeper p4m p16m/big/d ppad/padded/x popen/tracked
rnd p16k/single16k.bin 1000001                   # 62 pieces of 16 KiB, last one 576 bytes
: >p256k/multi/empty-first.dat                   # zero-length files at the start, middle, end
rnd p256k/multi/a.bin 1234567
rnd p256k/multi/sub/b.txt 777
: >p256k/multi/sub/empty-middle
rnd p256k/multi/sub/deeper/c.bin 262144          # exactly one piece long, but not aligned
rnd p256k/multi/sub/deeper/d.bin 1500001
: >p256k/multi/zzz-empty-last
rnd p4m/single4m.bin $((9 * 1048576 + 4321))     # 3 pieces of 4 MiB, last one partial
rnd p16m/big/one.bin 17000000                    # 40 MiB in 16 MiB pieces: 3 pieces
rnd p16m/big/d/two.bin 1
: >p16m/big/d/empty
rnd p16m/big/three.bin $((40 * 1048576 - 17000001))
rnd ppad/padded/a.bin 100000                     # padding after every file not ending on a
rnd ppad/padded/b.bin 65536                      # piece boundary (BEP 47)
: >ppad/padded/empty.bin
rnd ppad/padded/x/c.bin 1
rnd ppad/padded/x/d.bin 300001
rnd popen/tracked/a.bin 2000000
rnd popen/tracked/b.bin 345678

HP=$(free_port 127.0.0.1) # opentracker
DEAD=$(free_port 127.0.0.1) # nothing listens: a tracker that must never be asked

mk() { # label payload mode piece_size [lt_make options...]
    local label=$1 payload=$2 mode=$3 ps=$4
    shift 4
    if $PY "$HERE/lt_make.py" "$payload" "$label.torrent" --mode "$mode" --piece-size "$ps" "$@" \
        2>"$label.mk.err"; then
        return 0
    fi
    bad "$label: lt_make.py failed: $(tail -n 1 "$label.mk.err")"
    return 1
}
mk single16k p16k/single16k.bin v1 16384
mk multi256k p256k/multi v1 262144
mk single4m p4m/single4m.bin v1 4194304 --tracker "0,http://127.0.0.1:$DEAD/announce"
mk multi16m p16m/big v1 16777216
mk padded ppad/padded v1pad 32768
mk tracked popen/tracked v1 65536 --tracker "0,http://127.0.0.1:$HP/announce" --private

npad=$($PY -c '
import libtorrent as lt, sys
fs = lt.torrent_info(sys.argv[1]).files()
print(sum(1 for i in range(fs.num_files()) if fs.file_flags(i) & lt.file_storage.flag_pad_file))
' padded.torrent)
if [ "$npad" -gt 0 ]; then ok "padded: libtorrent made a torrent with $npad padding files"; else
    bad "padded: lt_make.py made no padding files"; fi
nzero=$($PY -c '
import libtorrent as lt, sys
fs = lt.torrent_info(sys.argv[1]).files()
print(sum(1 for i in range(fs.num_files()) if fs.file_size(i) == 0))
' multi256k.torrent)
if [ "$nzero" -eq 3 ]; then ok "multi256k: the torrent lists the 3 zero-length files"; else
    bad "multi256k: the torrent lists $nzero zero-length files, not 3"; fi

# ---------------------------------------------------------------- one download
# download LABEL PAYLOAD_DIR NAME SEEDER_IP MODE [rivulet options...]
#   MODE peer: seeder ready when listening, rivulet gets --peer and --no-trackers
#   MODE tracker: seeder ready after opentracker answered, rivulet finds it there
#   MODE short: like peer, through the short form `rivulet FILE.torrent -o DIR`
download() {
    local label=$1 payload=$2 name=$3 ip=$4 mode=$5
    shift 5
    [ -s "$label.torrent" ] || return 0
    local port seeder rc=0 t0 t1 npieces
    port=$(free_port "$ip")
    local ready=(--ready listen)
    [ "$mode" = tracker ] && ready=(--ready tracker)
    $PY "$HERE/lt_seeder.py" "$label.torrent" "$WORK/$payload" "$ip" "$port" "$label.ready" \
        "${ready[@]}" --stats "$label.seeder.json" 2>"$label.seeder.err" &
    seeder=$!
    pids+=("$seeder")
    if ! wait_file "$label.ready" 30; then
        bad "$label: libtorrent seeder on $ip:$port not ready: $(tail -n 3 "$label.seeder.err")"
        stop_pid "$seeder"
        return 0
    fi
    local args=(download "$label.torrent" -o "$WORK/out-$label" --seed-time 0)
    case $mode in
    peer) args+=(--peer "$ip:$port" --no-trackers) ;;
    short) args=("$label.torrent" -o "$WORK/out-$label" --peer "$ip:$port" --no-trackers --seed-time 0) ;;
    tracker) ;;
    esac
    args+=(--port "$(free_port 127.0.0.1)" --json "$@")
    t0=$(date +%s%N)
    timeout 90 "$RV" "${args[@]}" >"$label.ndjson" 2>"$label.err" || rc=$?
    t1=$(date +%s%N)
    stop_pid "$seeder"
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
    if [ "$rc" -eq 0 ]; then ok "$label: rivulet ${args[*]:0:1} exits 0 in $secs s"; else
        bad "$label: rivulet exit $rc after $secs s (timeout gives 124): $(tail -n 5 "$label.err" | tr '\n' ' ')"
        tail -n 5 "$label.ndjson"
    fi
    if diff -r "$WORK/$payload/$name" "$WORK/out-$label/$name" >"$label.diff" 2>&1; then
        ok "$label: byte-identical to the seeder's data ($(du -sb "$WORK/$payload/$name" | cut -f1) bytes)"
    else
        bad "$label: files differ: $(head -n 3 "$label.diff" | tr '\n' ' ')"
    fi
    local extra="" entry
    for entry in "$WORK/out-$label"/* "$WORK/out-$label"/.[!.]*; do
        [ -e "$entry" ] && [ "$(basename "$entry")" != "$name" ] && extra+="$(basename "$entry") "
    done
    if [ -z "$extra" ]; then ok "$label: nothing but $name written to the output folder"; else
        bad "$label: extra entries in the output folder: $extra"; fi
    npieces=$(lt_pieces "$label.torrent")
    local nv
    nv=$($PY "$EV" "$label.ndjson" 'len(verified)')
    if [ "$nv" -eq "$npieces" ]; then ok "$label: $nv/$npieces piece_verified events"; else
        bad "$label: $nv piece_verified events for $npieces pieces"; fi
    if [ "$($PY "$EV" "$label.ndjson" 'finished is not None')" = True ]; then
        ok "$label: a finished event"
    else bad "$label: no finished event"; fi
    if [ "$($PY "$EV" "$label.ndjson" "'$ip:$port' in addrs('peer_connected')")" = True ]; then
        ok "$label: peer_connected names the seeder $ip:$port"
    else bad "$label: no peer_connected for $ip:$port: $($PY "$EV" "$label.ndjson" "addrs('peer_connected')")"; fi
    case $mode in
    tracker)
        if [ "$($PY "$EV" "$label.ndjson" "any('ok' in str(e.get('message','')) for e in kind('tracker'))")" = True ]; then
            ok "$label: tracker event: $($PY "$EV" "$label.ndjson" "kind('tracker')[0].get('message')")"
        else bad "$label: no successful tracker event: $($PY "$EV" "$label.ndjson" "kind('tracker')")"; fi
        ;;
    *)
        if [ "$($PY "$EV" "$label.ndjson" "len(kind('tracker'))")" -eq 0 ]; then
            ok "$label: --no-trackers: no tracker asked"
        else bad "$label: tracker events despite --no-trackers: $($PY "$EV" "$label.ndjson" "kind('tracker')")"; fi
        ;;
    esac
}

download single16k p16k single16k.bin 127.0.0.2 short
download multi256k p256k multi 127.0.0.3 peer
download single4m p4m single4m.bin 127.0.0.4 peer
download multi16m p16m big 127.0.0.5 peer
download padded ppad padded 127.0.0.6 peer

# ---------------------------------------------------------------- through opentracker (HTTP)
HASH=$(lt_hash tracked.torrent)
echo "$HASH" >whitelist
chmod 644 whitelist
opentracker -i 127.0.0.1 -p "$HP" -P "$HP" -w "$WORK/whitelist" >opentracker.log 2>&1 &
pids+=($!)
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$HP") 2>/dev/null && break
    sleep 0.1
done
download tracked popen tracked 127.0.0.7 tracker

# ---------------------------------------------------------------- IPv6: a seeder on [::1]
if $PY -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null; then
    port6=$($PY -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1", 0)); print(s.getsockname()[1])')
    $PY "$HERE/lt_seeder.py" multi256k.torrent "$WORK/p256k" ::1 "$port6" v6.ready --ready listen \
        2>v6.seeder.err &
    seeder6=$!
    pids+=("$seeder6")
    if wait_file v6.ready 30; then
        rc=0
        timeout 60 "$RV" download multi256k.torrent --seed-time 0 -o "$WORK/out-v6" --peer "[::1]:$port6" \
            --no-trackers --json >v6.ndjson 2>v6.err || rc=$?
        if [ "$rc" -eq 0 ] && diff -r "$WORK/p256k/multi" "$WORK/out-v6/multi" >/dev/null 2>&1; then
            ok "ipv6: byte-identical download from the libtorrent seeder on [::1]:$port6"
        else bad "ipv6: exit $rc: $(tail -n 3 v6.err | tr '\n' ' ')"; fi
        if [ "$($PY "$EV" v6.ndjson "'[::1]:$port6' in addrs('peer_connected')")" = True ]; then
            ok "ipv6: peer_connected names [::1]:$port6"
        else bad "ipv6: no peer_connected for [::1]:$port6"; fi
    else
        bad "ipv6: libtorrent seeder on [::1]:$port6 not ready: $(tail -n 3 v6.seeder.err)"
    fi
    stop_pid "$seeder6"
else
    echo "skip ipv6: ::1 cannot be bound here"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
