#!/usr/bin/env bash
# `rivulet download` from several peers at once, on loopback, each on its own 127.0.0.x:
#  (a) four libtorrent seeders: the result is byte-identical and every seeder sent data (each
#      seeder's own upload counter, the peer_connected events, and the per-peer summary of the
#      finished event when rivulet prints one);
#  (b) a lying seeder (liar_seeder.py: serves a copy of the payload with bytes flipped in some
#      pieces, unchecked) among two honest libtorrent seeders: the result is byte-identical, at
#      least one piece_failed, only pieces the liar sent bad blocks of fail, the liar is banned
#      by address and the honest seeders are not;
#  (c) a slow seeder killed mid-download while another seeder, given with --peer from the
#      start but only started after the kill, joins: rivulet retries it and finishes.
#
# usage: tests/interop/download_swarm.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"

$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-dl-swarm.XXXXXX")
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

stop_pid() { # pid [signal]: signal it (TERM by default) and reap it
    kill "-${2:-TERM}" "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
rnd() { head -c "$2" /dev/urandom >"$1"; }
lt_pieces() { # torrent: piece count as libtorrent reads it
    $PY -c 'import libtorrent as lt, sys; print(lt.torrent_info(sys.argv[1]).num_pieces())' "$1"
}
ev() { $PY "$EV" "$@"; } # events file, expression
secs_since() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }
stat_of() { # stats json, key
    $PY -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2" 2>/dev/null ||
        echo "?"
}

# seeder PIDs, set by start_seeder through printf -v
lp="" g1="" g2="" sa="" sb=""

# start_seeder VAR KIND TORRENT SAVE_PATH IP PORT NAME [options...]: starts a seeder (KIND lt or
# liar), sets VAR to its PID and waits until it listens
start_seeder() {
    local var=$1 kind=$2 torrent=$3 save=$4 ip=$5 port=$6 name=$7
    shift 7
    local script=lt_seeder.py extra=(--ready listen)
    [ "$kind" = liar ] && { script=liar_seeder.py; extra=(); }
    rm -f "$name.ready"
    $PY "$HERE/$script" "$torrent" "$save" "$ip" "$port" "$name.ready" "${extra[@]}" \
        --stats "$name.stats" "$@" 2>"$name.err" &
    local pid=$!
    pids+=("$pid")
    printf -v "$var" '%s' "$pid"
    if wait_file "$name.ready" 30; then return 0; fi
    bad "$name: $script on $ip:$port not ready: $(tail -n 3 "$name.err" | tr '\n' ' ')"
    return 1
}

# check_result LABEL TORRENT PAYLOAD_DIR NAME RC SECONDS: exit status, bytes, every piece verified
check_result() {
    local label=$1 torrent=$2 payload=$3 name=$4 rc=$5 secs=$6
    if [ "$rc" -eq 0 ]; then ok "$label: rivulet exits 0 in $secs s"; else
        bad "$label: rivulet exit $rc after $secs s (timeout gives 124): $(tail -n 5 "$label.err" | tr '\n' ' ')"
        tail -n 5 "$label.ndjson"
    fi
    if diff -r "$payload/$name" "out-$label/$name" >"$label.diff" 2>&1; then
        ok "$label: byte-identical ($(du -sb "$payload/$name" | cut -f1) bytes)"
    else bad "$label: files differ: $(head -n 3 "$label.diff" | tr '\n' ' ')"; fi
    local n nv
    n=$(lt_pieces "$torrent")
    nv=$(ev "$label.ndjson" 'len(verified)')
    if [ "$nv" -eq "$n" ]; then ok "$label: $nv/$n pieces verified"; else
        bad "$label: $nv piece_verified events for $n pieces"; fi
}

# ---------------------------------------------------------------- (a) four seeders at once
# 12 MiB in 64 KiB pieces, each seeder capped at 2 MB/s: one seeder alone would take 6 s, so
# rivulet has every reason to use all four.
mkdir -p pa/four
rnd pa/four/a.bin 7000001
rnd pa/four/b.bin $((12 * 1048576 - 7000001))
$PY "$HERE/lt_make.py" pa/four four.torrent --piece-size 65536
addrs=()
ok_start=1
for i in 2 3 4 5; do
    port=$(free_port "127.0.0.$i")
    start_seeder "sp$i" lt four.torrent "$WORK/pa" "127.0.0.$i" "$port" "four-s$i" \
        --upload-limit 2000000 || ok_start=0
    addrs+=("127.0.0.$i:$port")
done
if [ "$ok_start" -eq 1 ]; then
    ok "four: four libtorrent seeders on ${addrs[*]}"
    peer_args=()
    for a in "${addrs[@]}"; do peer_args+=(--peer "$a"); done
    rc=0
    t0=$(date +%s%N)
    timeout 90 "$RV" download --seed-time 0 four.torrent -o "$WORK/out-four" "${peer_args[@]}" --no-trackers \
        --port "$(free_port 127.0.0.1)" --json >four.ndjson 2>four.err || rc=$?
    secs=$(secs_since "$t0")
    for v in sp2 sp3 sp4 sp5; do stop_pid "${!v}"; done
    check_result four four.torrent pa four "$rc" "$secs"
    connected=$(ev four.ndjson "addrs('peer_connected')")
    summary=$(ev four.ndjson has_summary)
    for i in 2 3 4 5; do
        a=${addrs[$((i - 2))]}
        up=$(stat_of "four-s$i.stats" payload_upload)
        if [ "$up" != "?" ] && [ "$up" -gt 0 ]; then ok "four: seeder $a uploaded $up bytes"; else
            bad "four: seeder $a uploaded $up bytes"; fi
        case " $connected " in
        *" $a "*) ok "four: peer_connected for $a" ;;
        *) bad "four: no peer_connected for $a (connected: $connected)" ;;
        esac
        if [ "$summary" = True ]; then
            got=$(ev four.ndjson "sent('$a')")
            if [ "$got" -gt 0 ]; then ok "four: finished summary: $got bytes from $a"; else
                bad "four: finished summary: $got bytes from $a"; fi
        fi
    done
    [ "$summary" = True ] || echo "note four: the finished event has no per-peer summary yet"
fi

# ---------------------------------------------------------------- (b) a liar among honest seeders
# 4 MiB in 64 KiB pieces; the liar's copy has a byte flipped in every fourth piece. The honest
# seeders are capped at 1 MB/s so the (unthrottled) liar gets a good share of the requests.
mkdir -p pb/lie liar/lie
rnd pb/lie/data.bin $((4 * 1048576 - 12345))
$PY "$HERE/lt_make.py" pb/lie lie.torrent --piece-size 65536
cp pb/lie/data.bin liar/lie/data.bin
$PY - liar/lie/data.bin 65536 <<'PY'
import sys
path, pl = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    size = f.seek(0, 2)
    for piece in range(1, size // pl, 4):
        off = piece * pl + 1000 + piece * 7
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0xFF]))
PY
lport=$(free_port 127.0.0.2)
g1port=$(free_port 127.0.0.3)
g2port=$(free_port 127.0.0.4)
LIAR=127.0.0.2:$lport
if start_seeder lp liar lie.torrent "$WORK/liar" 127.0.0.2 "$lport" lie-liar &&
    start_seeder g1 lt lie.torrent "$WORK/pb" 127.0.0.3 "$g1port" lie-g1 --upload-limit 1000000 &&
    start_seeder g2 lt lie.torrent "$WORK/pb" 127.0.0.4 "$g2port" lie-g2 --upload-limit 1000000; then
    nbad=$(stat_of lie-liar.stats bad_pieces | tr -d '[] ' | tr ',' '\n' | grep -c . || true)
    ok "lie: liar on $LIAR with $nbad bad pieces, honest seeders on 127.0.0.3:$g1port, 127.0.0.4:$g2port"
    rc=0
    t0=$(date +%s%N)
    timeout 90 "$RV" download --seed-time 0 lie.torrent -o "$WORK/out-lie" --peer "$LIAR" \
        --peer "127.0.0.3:$g1port" --peer "127.0.0.4:$g2port" --no-trackers \
        --port "$(free_port 127.0.0.1)" --json >lie.ndjson 2>lie.err || rc=$?
    secs=$(secs_since "$t0")
    stop_pid "$lp"
    stop_pid "$g1"
    stop_pid "$g2"
    check_result lie lie.torrent pb lie "$rc" "$secs"
    served=$(stat_of lie-liar.stats bad_pieces_served)
    echo "     the liar sent $(stat_of lie-liar.stats blocks) blocks, touching bad pieces $served"
    nfailed=$(ev lie.ndjson 'len(failed)')
    if [ "$nfailed" -ge 1 ]; then ok "lie: $nfailed piece_failed events (pieces $(ev lie.ndjson failed))"; else
        bad "lie: no piece_failed event (the liar sent blocks of bad pieces $served)"; fi
    if [ "$($PY -c 'import json, sys
served = set(json.load(open(sys.argv[1]))["bad_pieces_served"])
failed = set(int(x) for x in sys.argv[2].split())
print(failed <= served)' lie-liar.stats "$(ev lie.ndjson failed)")" = True ]; then
        ok "lie: only pieces the liar sent bad blocks of failed"
    else bad "lie: failed pieces $(ev lie.ndjson failed) are not all among the liar's bad ones $served"; fi
    banned=$(ev lie.ndjson "addrs('peer_banned')")
    case " $banned " in
    *" $LIAR "*) ok "lie: peer_banned names the liar: $(ev lie.ndjson "[e.get('message') for e in kind('peer_banned')]")" ;;
    *) bad "lie: no peer_banned for $LIAR (banned: '$banned'; events: $(ev lie.ndjson "kind('peer_banned')"))" ;;
    esac
    honest_banned=$(ev lie.ndjson "addrs('peer_banned') & {'127.0.0.3:$g1port', '127.0.0.4:$g2port'}")
    if [ -z "$honest_banned" ]; then ok "lie: no honest seeder banned"; else
        bad "lie: honest seeder(s) banned: $honest_banned"; fi
fi

# ---------------------------------------------------------------- (c) a seeder leaves, another joins
# 8 MiB in 64 KiB pieces; the first seeder is capped at 1 MB/s (about 8 s alone) and killed
# (SIGKILL) after 10 verified pieces. The second one is on rivulet's --peer list from the start
# but nobody listens there until after the kill, so rivulet must retry it.
mkdir -p pc/churn
rnd pc/churn/a.bin $((8 * 1048576 + 999))
$PY "$HERE/lt_make.py" pc/churn churn.torrent --piece-size 65536
n=$(lt_pieces churn.torrent)
aport=$(free_port 127.0.0.2)
bport=$(free_port 127.0.0.3)
if start_seeder sa lt churn.torrent "$WORK/pc" 127.0.0.2 "$aport" churn-a --upload-limit 1000000; then
    rc=0
    t0=$(date +%s%N)
    timeout 120 "$RV" download --seed-time 0 churn.torrent -o "$WORK/out-churn" --peer "127.0.0.2:$aport" \
        --peer "127.0.0.3:$bport" --no-trackers --port "$(free_port 127.0.0.1)" --json \
        >churn.ndjson 2>churn.err &
    rvpid=$!
    pids+=("$rvpid")
    nv=0
    for _ in $(seq 300); do
        nv=$(cat churn.ndjson 2>/dev/null | grep -c '"piece_verified"' || true)
        [ "$nv" -ge 10 ] && break
        kill -0 "$rvpid" 2>/dev/null || break
        sleep 0.1
    done
    stop_pid "$sa" KILL
    if [ "$nv" -ge 10 ] && [ "$nv" -lt "$n" ]; then
        ok "churn: seeder 127.0.0.2:$aport killed after $nv/$n verified pieces ($(secs_since "$t0") s)"
    else bad "churn: seeder killed at $nv/$n verified pieces (wanted at least 10, not all)"; fi
    sleep 1
    tj=$(date +%s%N)
    start_seeder sb lt churn.torrent "$WORK/pc" 127.0.0.3 "$bport" churn-b || true
    wait "$rvpid" || rc=$?
    secs=$(secs_since "$t0")
    echo "     the second seeder joined; rivulet finished $(secs_since "$tj") s after it started"
    stop_pid "$sb"
    check_result churn churn.torrent pc churn "$rc" "$secs"
    case " $(ev churn.ndjson "addrs('peer_connected')") " in
    *" 127.0.0.3:$bport "*) ok "churn: rivulet retried and connected to the late seeder 127.0.0.3:$bport" ;;
    *) bad "churn: no peer_connected for the late seeder 127.0.0.3:$bport" ;;
    esac
    up=$(stat_of churn-b.stats payload_upload)
    if [ "$up" != "?" ] && [ "$up" -gt 0 ]; then ok "churn: the late seeder uploaded $up bytes"; else
        bad "churn: the late seeder uploaded $up bytes"; fi
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
