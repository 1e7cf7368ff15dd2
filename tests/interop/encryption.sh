#!/usr/bin/env bash
# Message Stream Encryption against real libtorrent peers (and aria2 when installed), a 16 MiB
# torrent each time, every download checked byte for byte:
#  1. rivulet seeds (default allow); a libtorrent leecher that requires RC4 (pe_forced, rc4)
#     downloads: RC4 both ways, one MSE handshake counted.
#  2. rivulet seeds; a default-settings libtorrent leecher (it dials MSE first, offering both)
#     gets the data over its first connection: one MSE handshake (plaintext selected), no
#     failed one, one connection.
#  3. rivulet downloads with --encryption require from a libtorrent seeder that requires RC4.
#  4. rivulet downloads (default allow) from a libtorrent seeder that requires encryption: it
#     hangs up on our plaintext handshake and rivulet redials with MSE.
#  5. rivulet downloads with --encryption prefer from a default libtorrent seeder (MSE first).
#  6. rivulet seeds with --encryption disable; a default libtorrent leecher falls back to
#     plaintext and downloads; the MSE attempt is refused.
#  7. rivulet seeds with --encryption require; a plaintext-only libtorrent leecher gets nothing
#     and rivulet says why.
#  8. aria2c with --bt-require-crypto --bt-min-crypto-level=arc4 downloads from rivulet in
#     require mode (found through opentracker; skipped without aria2c or opentracker).
#
# usage: tests/interop/encryption.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"

$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-enc.XXXXXX")
chmod 755 "$WORK" # opentracker drops privileges and must still read the whitelist
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

tcp_up() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
wait_tcp() { # ip port seconds
    local i
    for ((i = 0; i < $3 * 10; i++)); do tcp_up "$1" "$2" && return 0; sleep 0.1; done
    return 1
}
stop_pid() { # pid [signal]
    kill "-${2:-TERM}" "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
ev() { $PY "$EV" "$@"; }
# stat FILE KEY: a counter of the stats event (--json --stats)
stat() { ev "$1" "[e for e in kind('stats')][-1].get('$2') if kind('stats') else -1" | cut -d. -f1; }

mkdir -p payload
head -c $((16 * 1048576)) /dev/urandom >payload/enc.bin
$PY "$HERE/lt_make.py" payload/enc.bin enc.torrent --mode v1 --piece-size 262144 2>mk.err ||
    { bad "lt_make.py failed: $(tail -n 1 mk.err)"; exit 1; }

# ---------------------------------------------------------------- rivulet seeds
# seed_case LABEL IP "RIVULET OPTIONS" "LEECHER OPTIONS" EXPECT(ok|refused)
seed_case() {
    local label=$1 ip=$2 rvopts=$3 ltopts=$4 expect=$5
    local rport lport seeder rc=0
    rport=$(free_port 127.0.0.2)
    lport=$(free_port "$ip")
    # shellcheck disable=SC2086
    "$RV" seed enc.torrent -d "$WORK/payload" --listen 127.0.0.2 --port "$rport" --no-trackers \
        --no-dht --state-dir "$WORK/state-$label" --json --stats $rvopts \
        >"$label.ndjson" 2>"$label.err" &
    seeder=$!
    pids+=("$seeder")
    if ! wait_tcp 127.0.0.2 "$rport" 20; then
        bad "$label: rivulet seed not listening: $(tail -n 3 "$label.err" | tr '\n' ' ')"
        stop_pid "$seeder"
        return
    fi
    local secs=40
    [ "$expect" = refused ] && secs=6
    # shellcheck disable=SC2086
    timeout 60 "$PY" "$HERE/lt_leecher.py" enc.torrent "$WORK/out-$label" "$ip" "$lport" \
        --peer "127.0.0.2:$rport" --seconds "$secs" $ltopts >"$label.lt.out" 2>"$label.lt.err" || rc=$?
    kill -INT "$seeder" 2>/dev/null || true
    local src=0
    wait "$seeder" || src=$?
    if [ "$src" -ne 0 ] || grep -qE 'AddressSanitizer|runtime error' "$label.err"; then
        bad "$label: rivulet seed exit $src on SIGINT: $(tail -n 5 "$label.err" | tr '\n' ' ')"
    fi
    if [ "$expect" = ok ]; then
        if [ "$rc" -eq 0 ] && cmp -s payload/enc.bin "out-$label/enc.bin"; then
            ok "$label: the libtorrent leecher ($ltopts) has every byte: $(cat "$label.lt.out")"
        else
            bad "$label: leecher exit $rc: $(cat "$label.lt.out") $(tail -n 3 "$label.lt.err" | tr '\n' ' ')"
        fi
    else
        if [ "$rc" -ne 0 ] && ! cmp -s payload/enc.bin "out-$label/enc.bin" 2>/dev/null; then
            ok "$label: the libtorrent leecher ($ltopts) got nothing"
        else
            bad "$label: the leecher ($ltopts) finished against rivulet $rvopts"
        fi
    fi
}

seed_case rc4 127.0.0.3 "" "--enc forced --enc-level rc4" ok
n=$(stat rc4.ndjson mse_ok)
r=$(stat rc4.ndjson mse_rc4)
if [ "$n" -ge 1 ] && [ "$r" -eq "$n" ]; then ok "rc4: rivulet counts $n MSE handshakes, RC4 selected"; else
    bad "rc4: mse_ok=$n mse_rc4=$r"; fi

seed_case first 127.0.0.4 "" "" ok
n=$(stat first.ndjson mse_ok)
f=$(stat first.ndjson mse_failed)
conns=$(ev first.ndjson "len([e for e in kind('peer_connected') if addr(e).startswith('127.0.0.4:')])")
r=$(stat first.ndjson mse_rc4)
# One connection from the leecher, its MSE handshake done and none failed: no reconnect.
if [ "$n" -eq 1 ] && [ "$f" -eq 0 ] && [ "$r" -eq 0 ] && [ "$conns" -eq 1 ]; then
    ok "first: libtorrent's first (MSE) connection served it: mse_ok=1, plaintext selected, one connection"
else
    bad "first: mse_ok=$n mse_failed=$f mse_rc4=$r connections=$conns: $(ev first.ndjson "kind('peer_dropped')")"
fi

seed_case disable 127.0.0.5 "--encryption disable" "" ok
if [ "$(stat disable.ndjson mse_ok)" -eq 0 ]; then ok "disable: no MSE handshake done"; else
    bad "disable: mse_ok=$(stat disable.ndjson mse_ok)"; fi

seed_case require_plain 127.0.0.6 "--encryption require" "--enc disabled" refused
if grep -q "plaintext handshake refused" require_plain.ndjson; then
    ok "require_plain: rivulet says: plaintext handshake refused"
else bad "require_plain: no 'plaintext handshake refused' in rivulet's events"; fi

# ---------------------------------------------------------------- rivulet downloads
# dl_case LABEL IP "RIVULET OPTIONS" "SEEDER OPTIONS"
dl_case() {
    local label=$1 ip=$2 rvopts=$3 ltopts=$4
    local port seeder rc=0
    port=$(free_port "$ip")
    # shellcheck disable=SC2086
    $PY "$HERE/lt_seeder.py" enc.torrent "$WORK/payload" "$ip" "$port" "$label.ready" \
        --ready listen $ltopts 2>"$label.seeder.err" &
    seeder=$!
    pids+=("$seeder")
    if ! wait_file "$label.ready" 30; then
        bad "$label: libtorrent seeder not ready: $(tail -n 3 "$label.seeder.err")"
        stop_pid "$seeder"
        return
    fi
    local t0 t1
    t0=$(date +%s%N)
    # shellcheck disable=SC2086
    timeout 60 "$RV" download enc.torrent -o "$WORK/out-$label" --peer "$ip:$port" --no-trackers \
        --no-dht --seed-time 0 --port "$(free_port 127.0.0.1)" --listen 127.0.0.1 \
        --state-dir "$WORK/state-$label" --json --stats $rvopts >"$label.ndjson" 2>"$label.err" || rc=$?
    t1=$(date +%s%N)
    stop_pid "$seeder"
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
    if grep -qE 'AddressSanitizer|runtime error' "$label.err"; then
        bad "$label: sanitizer report: $(grep -m 1 -E 'AddressSanitizer|runtime error' "$label.err")"
    fi
    if [ "$rc" -eq 0 ] && cmp -s payload/enc.bin "out-$label/enc.bin"; then
        ok "$label: rivulet $rvopts downloaded every byte from libtorrent ($ltopts) in $secs s, mse_ok=$(stat "$label.ndjson" mse_ok)"
    else
        bad "$label: rivulet exit $rc after $secs s: $(tail -n 3 "$label.err" | tr '\n' ' ') $(ev "$label.ndjson" "kind('peer_dropped')")"
    fi
}

dl_case require 127.0.0.7 "--encryption require" "--enc forced --enc-level rc4"
if [ "$(stat require.ndjson mse_rc4)" -ge 1 ]; then ok "require: over RC4"; else bad "require: mse_rc4=0"; fi
dl_case redial 127.0.0.8 "" "--enc forced"
if [ "$(stat redial.ndjson mse_ok)" -ge 1 ]; then ok "redial: allow redialled with MSE"; else bad "redial: mse_ok=0"; fi
dl_case prefer 127.0.0.9 "--encryption prefer" ""
if [ "$(stat prefer.ndjson mse_ok)" -ge 1 ]; then ok "prefer: over MSE"; else bad "prefer: mse_ok=0"; fi

# ---------------------------------------------------------------- aria2, RC4 required
if command -v aria2c >/dev/null && command -v opentracker >/dev/null; then
    tport=$(free_port 127.0.0.1)
    $PY "$HERE/lt_make.py" payload/enc.bin tracked.torrent --mode v1 --piece-size 262144 \
        --tracker "0,http://127.0.0.1:$tport/announce" --private 2>>mk.err
    $PY -c 'import libtorrent as lt, sys; print(lt.torrent_info(sys.argv[1]).info_hashes().v1)' \
        tracked.torrent >whitelist
    chmod 644 whitelist
    opentracker -i 127.0.0.1 -p "$tport" -P "$tport" -w "$WORK/whitelist" >opentracker.log 2>&1 &
    pids+=($!)
    wait_tcp 127.0.0.1 "$tport" 10 || true
    rport=$(free_port 127.0.0.2)
    "$RV" seed tracked.torrent -d "$WORK/payload" --listen 127.0.0.2 --port "$rport" --no-dht \
        --state-dir "$WORK/state-aria" --json --stats --encryption require \
        >aria.ndjson 2>aria.err &
    seeder=$!
    pids+=("$seeder")
    wait_tcp 127.0.0.2 "$rport" 20 || true
    sleep 1 # its first announce
    mkdir -p out-aria
    rc=0
    timeout 60 aria2c --dir="$WORK/out-aria" --interface=127.0.0.10 --listen-port="$(free_port 127.0.0.10)" \
        --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false \
        --bt-require-crypto=true --bt-min-crypto-level=arc4 --seed-time=0 --summary-interval=0 \
        --console-log-level=warn tracked.torrent >aria.out 2>&1 || rc=$?
    kill -INT "$seeder" 2>/dev/null || true
    src=0
    wait "$seeder" || src=$?
    if [ "$src" -ne 0 ] || grep -qE 'AddressSanitizer|runtime error' aria.err; then
        bad "aria2: rivulet seed exit $src on SIGINT: $(tail -n 5 aria.err | tr '\n' ' ')"
    fi
    if [ "$rc" -eq 0 ] && cmp -s payload/enc.bin out-aria/enc.bin; then
        ok "aria2: downloaded every byte from rivulet (require), mse_ok=$(stat aria.ndjson mse_ok) mse_rc4=$(stat aria.ndjson mse_rc4)"
    else
        bad "aria2: exit $rc: $(tail -n 5 aria.out | tr '\n' ' ')"
    fi
else
    echo "skip aria2: aria2c or opentracker missing"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
