#!/usr/bin/env bash
# rivulet in mixed swarms on loopback, each peer on its own 127.0.0.x:
#  (a) swarm: `rivulet seed` (127.0.0.2, --max-upload-rate 3M so that the leechers trade), a
#      libtorrent leecher (127.0.0.3), aria2c (127.0.0.4)
#      and a rivulet leecher (`rivulet download --seed-time 0`, 127.0.0.5), all finding each
#      other through opentracker only: every leecher finishes byte-identical (diff -r). Before
#      that, a `rivulet download --listen 127.0.0.5` alone must show up in the tracker as
#      127.0.0.5:PORT (opentracker records the announce's source address and ignores ip=).
#  (b) tit-for-tat: rivulet as a leecher with --upload-slots 2 (one regular slot, one optimistic)
#      among libtorrent peers: U has the first half of the pieces and uploads to rivulet (capped
#      at 50 kB/s, so it keeps uploading), N1..N6 have nothing and never can upload to rivulet
#      (rivulet starts with the second half; every peer's download is capped so each stays
#      interested throughout). Watched from libtorrent's side (peer_info: does rivulet choke
#      me?) and from rivulet's --json status (choked_by_us, optimistic), from 15 s on (after the
#      first choke round at 10 s and the 2-3 s a choke takes to arrive behind queued blocks):
#      U is unchoked all along, the N's share one slot, and the optimistic unchoke (rotated every
#      30 s) goes to more than one N. The optimistic pick is random: should rivulet re-pick the
#      same peer at both rotations the window holds (30 s, 60 s) the rotation check fails (odds
#      1/36 with six N's, as long as rivulet may re-pick the peer that had the slot).
#      RV_SLOW_TESTS=1 watches for 130 s instead of 75 s (rotations at 30, 60, 90 and 120 s).
#
# When the tracker does not list `rivulet seed` (it did not announce, or announced from another
# address than --listen), that is a failure, and the test announces 127.0.0.2:PORT on its behalf
# so that the rest of (a) still runs.
#
# usage: tests/interop/seed_swarm.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"
PROBE="$HERE/ot_probe.py"

have() { command -v "$1" >/dev/null; }
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }
HAVE_SWARM=0
have aria2c && have opentracker && HAVE_SWARM=1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-seed-swarm.XXXXXX")
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
lt_pieces() { $PY -c 'import libtorrent as lt, sys; print(lt.torrent_info(sys.argv[1]).num_pieces())' "$1"; }

# same_tree LABEL SRC DST: diff -r
same_tree() {
    if diff -r "$2" "$3" >"$1.diff" 2>&1; then
        ok "$1: byte-identical ($(find "$2" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }') bytes, diff -r)"
    else bad "$1: files differ: $(head -n 4 "$1.diff" | tr '\n' ' ')"; fi
}

# ---------------------------------------------------------------- (a) a mixed swarm
swarm_part() {
    mkdir -p sw/swarm/docs
    rnd sw/swarm/big.bin $((12 * 1048576 + 4321))
    rnd sw/swarm/docs/small.txt 99999
    : >sw/swarm/docs/empty
    local HP ANNOUNCE HASH TOTAL
    HP=$(free_port 127.0.0.1)
    ANNOUNCE="http://127.0.0.1:$HP/announce"
    $PY "$HERE/lt_make.py" sw/swarm sw.torrent --piece-size 262144 --private --tracker "0,$ANNOUNCE"
    HASH=$(lt_hash sw.torrent)
    TOTAL=$($PY -c 'import libtorrent as lt, sys; print(lt.torrent_info(sys.argv[1]).total_size())' sw.torrent)
    echo "$HASH" >whitelist
    chmod 644 whitelist
    opentracker -i 127.0.0.1 -p "$HP" -P "$HP" -w "$WORK/whitelist" >opentracker.log 2>&1 &
    pids+=($!)
    local i
    for i in $(seq 50); do tcp_up 127.0.0.1 "$HP" && break; sleep 0.1; done

    # first, alone: `rivulet download --listen 127.0.0.5` must announce 127.0.0.5:PORT (the
    # tracker records the source address of an announce), or nobody can reach it
    local PPORT ppid pseen="" prc=0
    PPORT=$(free_port 127.0.0.5)
    "$RV" download sw.torrent -o "$WORK/swprobe" --listen 127.0.0.5 --port "$PPORT" --json \
        >swprobe.ndjson 2>swprobe.err &
    ppid=$!
    pids+=("$ppid")
    for ((i = 0; i < 50; i++)); do
        pseen=$($PY "$PROBE" peers "$ANNOUNCE" "$HASH" 2>/dev/null | grep -E ":$PPORT\$" | tr '\n' ' ' || true)
        [ -n "$pseen" ] && break
        kill -0 "$ppid" 2>/dev/null || break
        sleep 0.1
    done
    case " $pseen " in
    *" 127.0.0.5:$PPORT "*) ok "swarm: rivulet download --listen 127.0.0.5 announced itself as 127.0.0.5:$PPORT" ;;
    "  ") bad "swarm: rivulet download --listen 127.0.0.5 never showed up in the tracker (tracker events: $(ev swprobe.ndjson "[e.get('message') for e in kind('tracker')]"))" ;;
    *) bad "swarm: rivulet download --listen 127.0.0.5 announced itself as '${pseen% }', not 127.0.0.5:$PPORT: opentracker records the source address of the announce (and ignores ip=), so peers dial an address nobody listens on" ;;
    esac
    kill -INT "$ppid" 2>/dev/null || true
    wait "$ppid" || prc=$?
    rm -rf "$WORK/swprobe"
    [ $prc -eq 130 ] || note "swarm: the probing rivulet download exited $prc on SIGINT (expected 130)"

    local RP t0 seedpid ready=0
    RP=$(free_port 127.0.0.2)
    t0=$(date +%s%N)
    # no `timeout` around it: timeout relays a SIGINT to its whole process group too, and
    # rivulet takes a second SIGINT as "stop now" (exit 130); --seed-time bounds it instead
    # capped at 3 MB/s, so that the leechers have reason to trade among themselves
    "$RV" seed sw.torrent -d "$WORK/sw" --listen 127.0.0.2 --port "$RP" --seed-time 5 \
        --max-upload-rate 3M --json \
        >swseed.ndjson 2>swseed.err &
    seedpid=$!
    pids+=("$seedpid")
    for ((i = 0; i < 300; i++)); do
        if grep -q '"event":"finished"' swseed.ndjson 2>/dev/null && tcp_up 127.0.0.2 "$RP"; then ready=1; break; fi
        kill -0 "$seedpid" 2>/dev/null || break
        sleep 0.1
    done
    if [ $ready -eq 1 ]; then
        ok "swarm: rivulet seed checked $TOTAL bytes and listens on 127.0.0.2:$RP ($(secs_since "$t0") s)"
    else
        bad "swarm: rivulet seed not ready: $(tail -n 3 swseed.err | tr '\n' ' ')"
        stop_pid "$seedpid"
        return
    fi
    local listed=""
    for ((i = 0; i < 100; i++)); do
        listed=$($PY "$PROBE" peers "$ANNOUNCE" "$HASH" 2>&1 | tr '\n' ' ' || true)
        case " $listed " in *" 127.0.0.2:$RP "*) break ;; esac
        sleep 0.1
    done
    if [[ " $listed " == *" 127.0.0.2:$RP "* ]]; then
        ok "swarm: rivulet seed announced itself: the tracker lists 127.0.0.2:$RP"
    else
        if [[ " $listed " =~ \ ([0-9.]+:$RP)\  ]]; then
            bad "swarm: rivulet seed announced itself as ${BASH_REMATCH[1]}, not as its --listen address 127.0.0.2:$RP (opentracker records the source address of the announce, and ignores ip=)"
        else
            bad "swarm: the tracker does not list rivulet seed at 127.0.0.2:$RP after 10 s (it lists: '${listed% }'; rivulet's tracker events: $(ev swseed.ndjson "[e.get('message') for e in kind('tracker')]"))"
        fi
        $PY "$PROBE" announce "$ANNOUNCE" "$HASH" --from 127.0.0.2 --port "$RP" --event started >/dev/null &&
            note "announced 127.0.0.2:$RP on rivulet's behalf, to go on with the swarm"
    fi

    # the three leechers at once, finding everyone through the tracker only
    local LPORT APORT VPORT ltpid apid rvlpid tl0
    LPORT=$(free_port 127.0.0.3)
    APORT=$(free_port 127.0.0.4)
    VPORT=$(free_port 127.0.0.5)
    mkdir -p swaria
    tl0=$(date +%s%N)
    timeout 70 $PY "$HERE/lt_leecher.py" sw.torrent "$WORK/swlt" 127.0.0.3 "$LPORT" --seconds 60 \
        >swlt.out 2>swlt.err &
    ltpid=$!
    pids+=("$ltpid")
    timeout 40 aria2c --no-conf --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
        --enable-peer-exchange=false --disable-ipv6=true --interface=127.0.0.4 \
        --listen-port="$APORT" --seed-time=0 --dir="$WORK/swaria" --summary-interval=0 \
        --console-log-level=warn --bt-tracker-interval=5 sw.torrent >swaria.log 2>&1 &
    apid=$!
    pids+=("$apid")
    timeout 60 "$RV" download --seed-time 0 sw.torrent -o "$WORK/swrv" --listen 127.0.0.5 \
        --port "$VPORT" --json >swrv.ndjson 2>swrv.err &
    rvlpid=$!
    pids+=("$rvlpid")

    # one loop: completion times
    local lt_rc="" lt_s="" a_rc="" a_s="" v_rc="" v_s=""
    for ((i = 0; i < 800; i++)); do
        if [ -z "$lt_rc" ] && ! kill -0 "$ltpid" 2>/dev/null; then
            lt_rc=0; wait "$ltpid" || lt_rc=$?; lt_s=$(secs_since "$tl0")
        fi
        if [ -z "$a_rc" ] && ! kill -0 "$apid" 2>/dev/null; then
            a_rc=0; wait "$apid" || a_rc=$?; a_s=$(secs_since "$tl0")
        fi
        if [ -z "$v_rc" ] && ! kill -0 "$rvlpid" 2>/dev/null; then
            v_rc=0; wait "$rvlpid" || v_rc=$?; v_s=$(secs_since "$tl0")
        fi
        [ -n "$lt_rc" ] && [ -n "$a_rc" ] && [ -n "$v_rc" ] && break
        sleep 0.1
    done

    if [ "$lt_rc" = 0 ]; then ok "swarm: libtorrent: $(cat swlt.out)"; else
        bad "swarm: libtorrent: lt_leecher exit ${lt_rc:-?} after ${lt_s:-?} s: $(cat swlt.out) $(tail -n 2 swlt.err | tr '\n' ' ')"; fi
    same_tree "swarm: libtorrent" sw/swarm swlt/swarm
    if [ "$a_rc" = 0 ]; then ok "swarm: aria2c finished and exited 0 in $a_s s"; else
        bad "swarm: aria2c exit ${a_rc:-?} after ${a_s:-?} s (timeout gives 124): $(grep -vE '^\s*$' swaria.log | tail -n 2 | tr '\n' ' ')"; fi
    same_tree "swarm: aria2" sw/swarm swaria/swarm
    if [ "$v_rc" = 0 ]; then ok "swarm: rivulet leecher exits 0 in $v_s s"; else
        bad "swarm: rivulet leecher exit ${v_rc:-?} after ${v_s:-?} s (timeout gives 124): $(tail -n 3 swrv.err | tr '\n' ' ')"; fi
    same_tree "swarm: rivulet leecher" sw/swarm swrv/swarm
    local n nv
    n=$(lt_pieces sw.torrent)
    nv=$(ev swrv.ndjson 'len(verified)')
    if [ "$nv" -eq "$n" ]; then ok "swarm: rivulet leecher verified $nv/$n pieces"; else
        bad "swarm: rivulet leecher: $nv piece_verified events for $n pieces"; fi
    if [ "$(ev swrv.ndjson "any('ok' in str(e.get('message','')) for e in kind('tracker'))")" = True ]; then
        ok "swarm: rivulet leecher's tracker event: $(ev swrv.ndjson "[e.get('message') for e in kind('tracker')][0]")"
    else bad "swarm: rivulet leecher: no successful tracker event: $(ev swrv.ndjson "kind('tracker')")"; fi
    case " $(ev swrv.ndjson "addrs('peer_connected')") " in
    *" 127.0.0.2:$RP "*) ok "swarm: the rivulet leecher connected to the rivulet seeder 127.0.0.2:$RP" ;;
    *) bad "swarm: the rivulet leecher never connected to the seeder 127.0.0.2:$RP (it connected to: $(ev swrv.ndjson "addrs('peer_connected')"))" ;;
    esac
    note "rivulet leecher's peers: $(ev swrv.ndjson "sorted(set(e.get('message') for e in kind('peer_connected')))" | cut -c1-300)"
    if [ "$(ev swrv.ndjson has_summary)" = True ]; then
        note "rivulet leecher got $(ev swrv.ndjson "sent('127.0.0.2:$RP')") bytes from the seeder, $(ev swrv.ndjson "sum(int(p.get('downloaded', 0) or 0) for p in finished['peers'] if addr(p) != '127.0.0.2:$RP')") from the other leechers"
    fi
    local who
    who=$(ev swseed.ndjson "addrs('peer_connected')")
    local ip label
    for ip in 127.0.0.3:libtorrent 127.0.0.4:aria2; do
        label=${ip#*:}
        case " $who " in
        *" ${ip%%:*}:"*) ok "swarm: the seeder served the $label leecher ($(ev swseed.ndjson "len([e for e in kind('peer_connected') if addr(e).startswith('${ip%%:*}:')])") connection(s))" ;;
        *) bad "swarm: the seeder never saw the $label leecher (${ip%%:*}) connect (connected: $who)" ;;
        esac
    done
    # Protocol errors of established connections; refused handshakes (an encrypted attempt
    # before the plain one, a dial to our own address learned by PEX) are not the peers' faults.
    local proto="[e for e in kind('peer_dropped') if e.get('code') == -14 and 'handshake' not in e.get('message', '') and 'ourselves' not in e.get('message', '')]"
    for f in swseed swrv; do
        if [ "$(ev $f.ndjson "len($proto)")" -eq 0 ]; then ok "swarm: $f: no peer dropped for a protocol error"; else
            bad "swarm: $f dropped peers $(ev $f.ndjson "len($proto)") times for a protocol error: $(ev $f.ndjson "sorted(set(e.get('message','') for e in $proto))" | cut -c1-240)"; fi
    done
    local rc=0 up
    kill -INT "$seedpid" 2>/dev/null || true
    wait "$seedpid" || rc=$?
    if [ $rc -eq 0 ]; then ok "swarm: rivulet seed exits 0 on SIGINT"; else bad "swarm: rivulet seed exit $rc on SIGINT"; fi
    up=$(ev swseed.ndjson "max([e.get('uploaded', 0) for e in kind('status')] + [0])")
    if [ "$up" -ge "$TOTAL" ]; then ok "swarm: the seeder uploaded $up bytes (at least one copy, $TOTAL)"; else
        bad "swarm: the seeder uploaded $up bytes, less than one copy ($TOTAL)"; fi
}

if [ $HAVE_SWARM -eq 1 ]; then swarm_part; else echo "skip swarm part: aria2c or opentracker missing"; fi

# ---------------------------------------------------------------- (b) tit-for-tat
WATCH=75
[ "${RV_SLOW_TESTS:-0}" = 1 ] && WATCH=130
NN=6
mkdir -p tft/full/tft tft/up/tft tft/rv/tft
HALF=$((8 * 1048576))
rnd tft/full/tft/data.bin $((2 * HALF))
$PY "$HERE/lt_make.py" tft/full/tft tft.torrent --piece-size 65536 --private
{ head -c $HALF tft/full/tft/data.bin; head -c $HALF /dev/zero; } >tft/up/tft/data.bin
{ head -c $HALF /dev/zero; tail -c $HALF tft/full/tft/data.bin; } >tft/rv/tft/data.bin
nodes=(--node "U,127.0.0.3,$(free_port 127.0.0.3),$WORK/tft/up,up=50000,down=32000")
rvpeers=(--peer "$(cut -d, -f2,3 <<<"${nodes[1]}" | tr , :)")
for ((i = 1; i <= NN; i++)); do
    ip=127.0.0.$((3 + i))
    port=$(free_port "$ip")
    nodes+=(--node "N$i,$ip,$port,$WORK/tft/n$i,down=32000")
    rvpeers+=(--peer "$ip:$port")
done
$PY "$HERE/lt_peers.py" tft.torrent tft.ready tft.timeline "${nodes[@]}" --seconds $((WATCH + 60)) \
    2>tft-lt.err &
ltp=$!
pids+=("$ltp")
if ! wait_file tft.ready 30; then
    bad "tit-for-tat: libtorrent peers not ready: $(tail -n 3 tft-lt.err | tr '\n' ' ')"
else
    note "tit-for-tat: libtorrent peers ready with pieces $(cat tft.ready); rivulet has the other half"
    # --json status lines get the time they were printed (t), to line up with libtorrent's view
    T0=$(date +%s.%N)
    "$RV" download tft.torrent -o "$WORK/tft/rv" --no-trackers --upload-slots 2 \
        --seed-time 0 --listen 127.0.0.2 --port "$(free_port 127.0.0.2)" "${rvpeers[@]}" --json \
        2>tft-rv.err > >($PY -u -c '
import json, sys, time
for line in sys.stdin:
    try:
        e = json.loads(line)
        e["t"] = round(time.time(), 3)
        line = json.dumps(e) + "\n"
    except ValueError:
        pass
    sys.stdout.write(line)
    sys.stdout.flush()' >tft-rv.ndjson) &
    rvp=$!
    pids+=("$rvp")
    sleep "$WATCH"
    stop_pid "$rvp" INT # (it cannot finish: U alone has the first half, at 50 kB/s)
    stop_pid "$ltp"
    sleep 0.5
    note "tit-for-tat: rivulet's last status: $(ev tft-rv.ndjson "{k: v for k, v in (kind('status') or [{}])[-1].items() if k in ('rejects_received', 'rejects_sent', 'fast_requested', 'fast_served', 'uploaded', 'have')}")"
    n_conn=$(ev tft-rv.ndjson "len(addrs('peer_connected'))")
    if [ "$n_conn" -eq $((NN + 1)) ]; then ok "tit-for-tat: rivulet connected to all $n_conn libtorrent peers"; else
        bad "tit-for-tat: rivulet connected to $n_conn of $((NN + 1)) peers: $(ev tft-rv.ndjson "addrs('peer_connected')") (dropped: $(ev tft-rv.ndjson "[e.get('message') for e in kind('peer_dropped')]"))"; fi
    $PY - tft.timeline tft-rv.ndjson "$T0" "$WATCH" "$NN" "${nodes[1]}" >tft.verdict <<'PY' || true
import json, sys
from collections import defaultdict

timeline, rvfile, t0, watch, nn, uspec = sys.argv[1], sys.argv[2], float(sys.argv[3]), \
    float(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
START = 15.0          # after the first choke round (10 s) and the choke's delivery
U_ADDR = ":".join(uspec.split(",")[1:3])

def say(kind, msg):
    print(kind, msg)

# libtorrent's side: per sample time, which node rivulet unchokes
samples = defaultdict(dict)   # rounded time -> node -> unchoked
last = {}
for line in open(timeline):
    r = json.loads(line)
    t = r["t"] - t0
    last[r["node"]] = r
    if not r["peers"] or t < START or t > watch:
        continue
    samples[round(t * 2) / 2][r["node"]] = any(not p["remote_choked"] for p in r["peers"])
times = sorted(samples)
N = [f"N{i}" for i in range(1, nn + 1)]
if len(times) < (watch - START) * 1.5:
    say("FAIL", f"tit-for-tat: only {len(times)} libtorrent samples from {START:.0f} s on")
    sys.exit(0)
u_on = sum(1 for t in times if samples[t].get("U"))
frac_u = u_on / len(times)
(say("PASS" if frac_u >= 0.9 else "FAIL",
     f"tit-for-tat: rivulet unchokes the uploader U in {100 * frac_u:.0f}% of "
     f"{len(times)} samples ({START:.0f}-{watch:.0f} s)"))
n_on = [sum(1 for n in N if samples[t].get(n)) for t in times]
one = sum(1 for k in n_on if k <= 1) / len(times)
most = max(n_on)
per_n = {n: sum(1 for t in times if samples[t].get(n)) / len(times) for n in N}
(say("PASS" if one >= 0.8 and most <= 2 else "FAIL",
     f"tit-for-tat: the {nn} non-uploaders share one slot: at most one of them unchoked in "
     f"{100 * one:.0f}% of samples, never more than {most} (each unchoked: " +
     ", ".join(f"{n} {100 * per_n[n]:.0f}%" for n in N) + ")"))
# the optimistic slot: runs of an N unchoked for at least 2 s
holders = []
for n in N:
    run = 0
    for t in times:
        run = run + 1 if samples[t].get(n) else 0
        if run == 4:
            holders.append((t - 1.5, n))
holders.sort()
distinct = sorted({n for _, n in holders})
desc = ", ".join(f"{n} from {t:.1f} s" for t, n in holders) or "nobody"
(say("PASS" if len(distinct) >= 2 else "FAIL",
     f"tit-for-tat: the optimistic unchoke rotates: {len(distinct)} non-uploaders held it "
     f"({desc})"))
for rot in range(30, int(watch) - 4, 30):
    before = [n for t, n in holders if t < rot - 1]
    after = [n for t, n in holders if rot - 1 <= t < rot + 6]
    if before and after:
        say("NOTE", f"rotation at {rot} s: {before[-1]} -> {after[0]}")
    elif before:
        say("NOTE", f"rotation at {rot} s: {before[-1]} kept the slot (picked again)")
# what flowed: U gives to rivulet and gets from it, the N's never give
u = last.get("U", {})
u_peer = (u.get("peers") or [{}])[0]
(say("PASS" if u_peer.get("down", 0) > 0 and u_peer.get("up", 0) > 0 else "FAIL",
     f"tit-for-tat: U and rivulet trade: U sent {u_peer.get('up', 0)} bytes, got "
     f"{u_peer.get('down', 0)}"))
n_up = {n: last.get(n, {}).get("up", 0) for n in N}
n_down = {n: last.get(n, {}).get("down", 0) for n in N}
(say("PASS" if not any(n_up.values()) else "FAIL",
     f"tit-for-tat: the non-uploaders sent nothing (they got " +
     ", ".join(f"{n} {n_down[n]}" for n in N) + " bytes)"))

# rivulet's own side: its --json status lines
status = []
for line in open(rvfile):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") == "status" and "peers" in e and START <= e.get("t", 0) - t0 <= watch:
        status.append(e)
if not status:
    say("FAIL", "tit-for-tat: no --json status line with a peer list from rivulet")
    sys.exit(0)
bad_u, bad_opt, opt_addrs = [], [], []
for e in status:
    t = e["t"] - t0
    peers = {p["address"]: p for p in e["peers"]}
    up = peers.get(U_ADDR)
    if up is None or up["choked_by_us"] or up["optimistic"]:
        bad_u.append(f"{t:.0f} s: {up}")
    opt = [a for a, p in peers.items() if p["optimistic"]]
    unchoked_n = [a for a, p in peers.items() if a != U_ADDR and not p["choked_by_us"]]
    if len(opt) != 1 or opt[0] == U_ADDR or any(a not in opt for a in unchoked_n):
        bad_opt.append(f"{t:.0f} s: optimistic {opt}, unchoked non-uploaders {unchoked_n}")
    opt_addrs += opt
(say("PASS" if not bad_u else "FAIL",
     f"tit-for-tat: rivulet's status: U ({U_ADDR}) holds a regular slot in all "
     f"{len(status)} status lines" if not bad_u else
     f"tit-for-tat: rivulet's status: U ({U_ADDR}) not in a regular slot: {bad_u[:3]}"))
(say("PASS" if not bad_opt else "FAIL",
     "tit-for-tat: rivulet's status: exactly one optimistic non-uploader, the only one "
     f"unchoked (held by {' '.join(dict.fromkeys(opt_addrs))})" if not bad_opt else
     f"tit-for-tat: rivulet's status: {bad_opt[:3]}"))
PY
    while read -r kind msg; do
        case "$kind" in
        PASS) ok "$msg" ;;
        FAIL) bad "$msg" ;;
        *) note "$msg" ;;
        esac
    done <tft.verdict
    [ -s tft.verdict ] || bad "tit-for-tat: no verdict from the analysis"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
