#!/usr/bin/env bash
# `rivulet seed` serving real leechers on loopback, byte-identical each time (diff -r). rivulet
# seeds a private multi-file torrent (a zero-length file, nested folders, 256 KiB pieces, about
# 4.4 MiB), listening on 127.0.0.2 only, to three leechers at once:
#  - a libtorrent leecher on 127.0.0.3 given rivulet with --peer;
#  - aria2c on 127.0.0.5, which cannot be given a peer: it finds rivulet through opentracker,
#    where rivulet must have announced itself (as 127.0.0.2:PORT: --listen 127.0.0.2);
#  - transmission-daemon on 127.0.0.4, which never dials loopback addresses: rivulet dials it
#    (`rivulet seed --peer 127.0.0.4:PORT`: a seed dials the peers it knows).
# libtorrent and Transmission get a copy of the torrent without its tracker (same info
# dictionary, so the same swarm): each leecher's only peer is rivulet, so whatever it completes
# came from rivulet. Then rivulet stops on SIGINT with exit 0 and counts what it uploaded.
#
# When rivulet is missing from the tracker (it did not announce, or announced from another
# address than the one it listens on), that is one failure, and the test announces 127.0.0.2:PORT
# on its behalf so that the aria2 part still tests serving aria2.
#
# Each leecher part is skipped (not failed) when its tool is missing; exit 77 when libtorrent is
# missing.
#
# usage: tests/interop/seed_leechers.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"
PROBE="$HERE/ot_probe.py"

have() { command -v "$1" >/dev/null; }
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }
HAVE_ARIA=0
HAVE_TR=0
have aria2c && have opentracker && HAVE_ARIA=1
have transmission-daemon && have transmission-remote && HAVE_TR=1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-seed-leechers.XXXXXX")
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
note() { echo "     $*"; }

stop_pid() { # pid [signal]
    kill "-${2:-TERM}" "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
tcp_up() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
rnd() { head -c "$2" /dev/urandom >"$1"; }
ev() { $PY "$EV" "$@"; }
secs_since() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }
lt_hash() { $PY -c 'import libtorrent as lt, sys; print(lt.torrent_info(sys.argv[1]).info_hashes().v1)' "$1"; }

# same_tree LABEL DIR [zero-ok]: DIR/multi against the seeder's copy, with diff -r. With zero-ok,
# zero-length files the leecher did not create are tolerated (Transmission 3.00 never creates
# them), and said so.
same_tree() {
    local label=$1 dir=$2 zero_ok=${3:-}
    if diff -r seed/multi "$dir/multi" >"$label.diff" 2>&1; then
        ok "$label: byte-identical ($TOTAL bytes, diff -r)"
        return
    fi
    if [ -n "$zero_ok" ]; then
        local rest missing
        missing=$(grep -E '^Only in seed/multi' "$label.diff" | while IFS= read -r l; do
            d=${l#Only in }
            f="${d%%: *}/${d#*: }"
            [ -f "$f" ] && [ ! -s "$f" ] && echo "${f#seed/multi/}"
        done || true)
        rest=$(grep -vE '^Only in seed/multi' "$label.diff" || true)
        local others
        others=$(grep -E '^Only in seed/multi' "$label.diff" | while IFS= read -r l; do
            d=${l#Only in }
            f="${d%%: *}/${d#*: }"
            { [ -f "$f" ] && [ ! -s "$f" ]; } || echo "$l"
        done || true)
        if [ -z "$rest" ] && [ -z "$others" ]; then
            ok "$label: byte-identical apart from zero-length files it does not create ($(tr '\n' ' ' <<<"$missing" | sed 's/ $//'))"
            return
        fi
    fi
    bad "$label: files differ: $(head -n 4 "$label.diff" | tr '\n' ' ')"
}

# ---------------------------------------------------------------- the torrent and the tracker
mkdir -p seed/multi/sub/deeper
rnd seed/multi/a.bin 3000001
rnd seed/multi/sub/b.bin 1234567
: >seed/multi/sub/empty
rnd seed/multi/sub/deeper/c.txt 70000
rnd seed/multi/d.bin 262144
HP=$(free_port 127.0.0.1)
ANNOUNCE="http://127.0.0.1:$HP/announce"
# private, its one tracker on 127.0.0.1: nobody looks for peers anywhere else (BEP 27)
$PY "$HERE/lt_make.py" seed/multi m.torrent --piece-size 262144 --private --tracker "0,$ANNOUNCE"
# the same info dictionary without the tracker, for the leechers that get rivulet by hand
$PY - m.torrent notrk.torrent <<'PY'
import sys, libtorrent as lt
d = lt.bdecode(open(sys.argv[1], "rb").read())
for k in (b"announce", b"announce-list"):
    d.pop(k, None)
open(sys.argv[2], "wb").write(lt.bencode(d))
PY
HASH=$(lt_hash m.torrent)
if [ "$(lt_hash notrk.torrent)" != "$HASH" ]; then
    bad "the trackerless copy has another info-hash"
    echo "$pass passed, $fail failed"
    exit 1
fi
TOTAL=$($PY -c 'import libtorrent as lt, sys; print(lt.torrent_info(sys.argv[1]).total_size())' m.torrent)
NPIECES=$($PY -c 'import libtorrent as lt, sys; print(lt.torrent_info(sys.argv[1]).num_pieces())' m.torrent)
note "torrent: $TOTAL bytes in 5 files (one empty), $NPIECES pieces of 256 KiB, info-hash $HASH"

otpid=""
if [ $HAVE_ARIA -eq 1 ]; then
    echo "$HASH" >whitelist
    chmod 644 whitelist
    opentracker -i 127.0.0.1 -p "$HP" -P "$HP" -w "$WORK/whitelist" >opentracker.log 2>&1 &
    otpid=$!
    pids+=("$otpid")
    for _ in $(seq 50); do tcp_up 127.0.0.1 "$HP" && break; sleep 0.1; done
fi

# ---------------------------------------------------------------- transmission-daemon, waiting
TPORT="" RPC="" tpid=""
if [ $HAVE_TR -eq 1 ]; then
    RPC=$(free_port 127.0.0.1)
    TPORT=$(free_port 127.0.0.4)
    mkdir -p trcfg trdl
    cat >trcfg/settings.json <<JSON
{
    "dht-enabled": false,
    "lpd-enabled": false,
    "pex-enabled": false,
    "utp-enabled": false,
    "port-forwarding-enabled": false,
    "bind-address-ipv6": "::1",
    "rpc-whitelist-enabled": true,
    "rpc-whitelist": "127.0.0.1",
    "peer-port-random-on-start": false,
    "start-added-torrents": true,
    "ratio-limit-enabled": false,
    "idle-seeding-limit-enabled": false
}
JSON
    transmission-daemon -f -g "$WORK/trcfg" -O -Y -M --no-utp -i 127.0.0.4 -r 127.0.0.1 -T \
        -p "$RPC" -P "$TPORT" -w "$WORK/trdl" >transmission.log 2>&1 &
    tpid=$!
    pids+=("$tpid")
    added=0
    for ((i = 0; i < 100; i++)); do
        if transmission-remote "127.0.0.1:$RPC" -a notrk.torrent >tradd.log 2>&1; then added=1; break; fi
        kill -0 "$tpid" 2>/dev/null || break
        sleep 0.1
    done
    if [ $added -eq 1 ] && tcp_up 127.0.0.4 "$TPORT"; then
        ok "transmission: transmission-daemon waits for rivulet on 127.0.0.4:$TPORT"
    else
        bad "transmission: cannot start transmission-daemon with the torrent: $(tail -n 3 tradd.log transmission.log | tr '\n' ' ')"
        stop_pid "$tpid"
        HAVE_TR=0
    fi
else
    echo "skip transmission part: transmission-daemon/-remote missing"
fi
[ $HAVE_ARIA -eq 1 ] || echo "skip aria2 part: aria2c or opentracker missing"

# ---------------------------------------------------------------- rivulet seed
RP=$(free_port 127.0.0.2)
seed_args=(seed m.torrent -d "$WORK/seed" --listen 127.0.0.2 --port "$RP" --json)
[ $HAVE_TR -eq 1 ] && seed_args+=(--peer "127.0.0.4:$TPORT")
[ $HAVE_ARIA -eq 1 ] || seed_args+=(--no-trackers)
t0=$(date +%s%N)
# no `timeout` around it: timeout relays a SIGINT to its whole process group too, and rivulet
# takes a second SIGINT as "stop now" (exit 130); --seed-time bounds it instead
"$RV" "${seed_args[@]}" --seed-time 5 >seed.ndjson 2>seed.err &
rvpid=$!
pids+=("$rvpid")
ready=0
for ((i = 0; i < 300; i++)); do
    if grep -q '"event":"finished"' seed.ndjson 2>/dev/null && tcp_up 127.0.0.2 "$RP"; then ready=1; break; fi
    kill -0 "$rvpid" 2>/dev/null || break
    sleep 0.1
done
if [ $ready -eq 1 ]; then
    ok "rivulet seed checked the data and listens on 127.0.0.2:$RP ($(secs_since "$t0") s)"
else
    bad "rivulet seed not ready: $(tail -n 3 seed.err | tr '\n' ' ') $(tail -n 2 seed.ndjson | tr '\n' ' ')"
    echo "$pass passed, $fail failed"
    exit 1
fi
if [ "$(ss -Hltn "sport = :$RP" | awk '{print $4}' | sort -u | tr '\n' ' ')" = "127.0.0.2:$RP " ]; then
    ok "rivulet listens on 127.0.0.2:$RP only (--listen)"
else bad "rivulet listens on: $(ss -Hltn "sport = :$RP" | awk '{print $4}' | tr '\n' ' ')"; fi

if [ $HAVE_ARIA -eq 1 ]; then
    listed=""
    for ((i = 0; i < 100; i++)); do
        listed=$($PY "$PROBE" peers "$ANNOUNCE" "$HASH" 2>&1 | tr '\n' ' ' || true)
        case " $listed " in *" 127.0.0.2:$RP "*) break ;; esac
        sleep 0.1
    done
    if [[ " $listed " == *" 127.0.0.2:$RP "* ]]; then
        ok "rivulet announced itself: the tracker lists 127.0.0.2:$RP"
    else
        if [[ " $listed " =~ \ ([0-9.]+:$RP)\  ]]; then
            bad "rivulet announced itself as ${BASH_REMATCH[1]}, not as its --listen address 127.0.0.2:$RP: opentracker records the source address of the announce (and ignores ip=), so the announce must come from 127.0.0.2"
        else
            bad "the tracker does not list rivulet at 127.0.0.2:$RP after 10 s (it lists: '${listed% }'; rivulet's tracker events: $(ev seed.ndjson "[e.get('message') for e in kind('tracker')]"))"
        fi
        if $PY "$PROBE" announce "$ANNOUNCE" "$HASH" --from 127.0.0.2 --port "$RP" --event started >/dev/null; then
            note "announced 127.0.0.2:$RP to the tracker on rivulet's behalf, to test serving aria2 anyway"
        fi
    fi
fi

# ---------------------------------------------------------------- the leechers, all at once
LPORT=$(free_port 127.0.0.3)
timeout 70 $PY "$HERE/lt_leecher.py" notrk.torrent "$WORK/lt" 127.0.0.3 "$LPORT" \
    --peer "127.0.0.2:$RP" --seconds 60 >lt.out 2>lt.err &
ltpid=$!
pids+=("$ltpid")
apid=""
if [ $HAVE_ARIA -eq 1 ]; then
    APORT=$(free_port 127.0.0.5)
    mkdir -p aria
    timeout 40 aria2c --no-conf --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
        --enable-peer-exchange=false --disable-ipv6=true --interface=127.0.0.5 \
        --listen-port="$APORT" --seed-time=0 --dir="$WORK/aria" --summary-interval=0 \
        --console-log-level=warn --bt-tracker-interval=5 m.torrent >aria2.log 2>&1 &
    apid=$!
    pids+=("$apid")
fi
tl0=$(date +%s%N)

# one loop watches all three, so each gets its own completion time
lt_rc="" lt_secs="" aria_rc="" aria_secs="" tr_done="" tr_secs="" info=""
[ $HAVE_ARIA -eq 1 ] || aria_rc=skip
[ $HAVE_TR -eq 1 ] || tr_done=skip
for ((i = 0; i < 900; i++)); do
    if [ -z "$lt_rc" ] && ! kill -0 "$ltpid" 2>/dev/null; then
        lt_rc=0
        wait "$ltpid" || lt_rc=$?
        lt_secs=$(secs_since "$tl0")
    fi
    if [ -z "$aria_rc" ] && ! kill -0 "$apid" 2>/dev/null; then
        aria_rc=0
        wait "$apid" || aria_rc=$?
        aria_secs=$(secs_since "$tl0")
    fi
    if [ -z "$tr_done" ] && ((i % 5 == 0)); then
        info=$(transmission-remote "127.0.0.1:$RPC" -t 1 -i 2>/dev/null || true)
        if grep -q 'Percent Done: 100%' <<<"$info"; then
            tr_done=1
            tr_secs=$(secs_since "$t0")
        elif ! kill -0 "$tpid" 2>/dev/null || ((i >= 600)); then
            tr_done=0
            tr_secs=$(secs_since "$t0")
        fi
    fi
    [ -n "$lt_rc" ] && [ -n "$aria_rc" ] && [ -n "$tr_done" ] && break
    sleep 0.1
done
completed=0

if [ "$lt_rc" = 0 ]; then
    ok "libtorrent: $(cat lt.out)"
    completed=$((completed + 1))
else
    bad "libtorrent: lt_leecher exit ${lt_rc:-?} after ${lt_secs:-?} s: $(cat lt.out) $(tail -n 3 lt.err | tr '\n' ' ')"
fi
same_tree libtorrent lt
case " $(ev seed.ndjson "addrs('peer_connected')") " in
*" 127.0.0.3:"*) ok "libtorrent: rivulet saw it connect: $(ev seed.ndjson "[e.get('message') for e in kind('peer_connected') if addr(e).startswith('127.0.0.3:')][0]")" ;;
*) bad "libtorrent: no peer_connected from 127.0.0.3 (connected: $(ev seed.ndjson "addrs('peer_connected')"))" ;;
esac

if [ $HAVE_ARIA -eq 1 ]; then
    if [ "$aria_rc" = 0 ]; then
        ok "aria2: aria2c finished and exited 0 in $aria_secs s"
        completed=$((completed + 1))
    else
        bad "aria2: aria2c exit ${aria_rc:-?} after ${aria_secs:-?} s (timeout gives 124): $(grep -vE '^\s*$' aria2.log | tail -n 4 | tr '\n' ' ')"
    fi
    same_tree aria2 aria
    case " $(ev seed.ndjson "addrs('peer_connected')") " in
    *" 127.0.0.5:"*) ok "aria2: rivulet saw it connect ($(ev seed.ndjson "len([e for e in kind('peer_connected') if addr(e).startswith('127.0.0.5:')])") connection(s))" ;;
    *) bad "aria2: no peer_connected from 127.0.0.5 (connected: $(ev seed.ndjson "addrs('peer_connected')"))" ;;
    esac
    # (aria2 tries an encrypted handshake first and falls back to a plain one: a refused
    # handshake is not a protocol error of an established connection)
    proto="[e for e in kind('peer_dropped') if addr(e).startswith('127.0.0.5:') and e.get('code') == -14 and 'handshake' not in e.get('message', '')]"
    if [ "$(ev seed.ndjson "len($proto)")" -eq 0 ]; then
        ok "aria2: rivulet dropped no aria2 connection for a protocol error"
    else
        bad "aria2: rivulet dropped aria2 $(ev seed.ndjson "len($proto)") times for a protocol error: $(ev seed.ndjson "sorted(set(e.get('message','').split(': ',1)[-1] for e in $proto))")"
    fi
fi

if [ $HAVE_TR -eq 1 ]; then
    if [ "$tr_done" = 1 ]; then
        ok "transmission: 100% done $tr_secs s after rivulet started (it waits about 10 s before its first request)"
        completed=$((completed + 1))
    else
        bad "transmission: not done $tr_secs s after rivulet started: $(grep -E 'State|Percent|Error|Peers' <<<"$info" | sed 's/^ *//' | tr '\n' ' ')"
    fi
    stop_pid "$tpid" # writes out its cache
    same_tree transmission trdl zero-ok
    case " $(ev seed.ndjson "addrs('peer_connected')") " in
    *" 127.0.0.4:$TPORT "*) ok "transmission: rivulet, seeding, dialled it: $(ev seed.ndjson "[e.get('message') for e in kind('peer_connected') if addr(e) == '127.0.0.4:$TPORT'][0]")" ;;
    *) bad "transmission: rivulet never connected to 127.0.0.4:$TPORT (connected: $(ev seed.ndjson "addrs('peer_connected')"); dropped: $(ev seed.ndjson "[e.get('message') for e in kind('peer_dropped')]"))" ;;
    esac
fi

# ---------------------------------------------------------------- rivulet stops cleanly
rc=0
kill -INT "$rvpid" 2>/dev/null || true
wait "$rvpid" || rc=$?
if [ $rc -eq 0 ]; then ok "rivulet seed exits 0 on SIGINT (complete data)"; else
    bad "rivulet seed exit $rc on SIGINT: $(tail -n 3 seed.err | tr '\n' ' ')"; fi
if grep -q '"event":"stopped"' seed.ndjson; then ok "rivulet seed printed a stopped event"; else
    bad "no stopped event: $(tail -n 2 seed.ndjson | tr '\n' ' ')"; fi
up=$(ev seed.ndjson "max([e.get('uploaded', 0) for e in kind('status')] + [0])")
if [ "$up" -ge $((completed * TOTAL)) ]; then
    ok "rivulet counts $up bytes uploaded: at least $completed complete copies of $TOTAL"
else
    bad "rivulet counts $up bytes uploaded, less than $completed complete copies of $TOTAL"
fi
ndrop=$(ev seed.ndjson "len(kind('peer_dropped'))")
note "rivulet: $(ev seed.ndjson "len(kind('peer_connected'))") connections, $ndrop dropped: $(ev seed.ndjson "sorted(set(e.get('message','').split(': ',1)[-1] for e in kind('peer_dropped')))" | cut -c1-300)"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
