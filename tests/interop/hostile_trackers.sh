#!/usr/bin/env bash
# Hostile trackers (tests/interop/hostile_tracker.py, loopback only): one that never answers
# (HTTP: connection held open; UDP: datagrams read, none answered), UDP ones that answer with
# junk, with a 3000-byte error full of terminal escapes, or with 10,914 peers in one
# 65,507-byte datagram, one that dribbles a valid
# reply a byte every 200 ms (too slow for any timeout) and one every 20 ms (slow but within
# it), a redirect loop (302 to itself forever), a flood of 100,000 compact peers (600,000
# bytes, 127.10/127.11 addresses where nothing listens, the real seeder first), an endless
# body, endless header lines, an HTML page and an HTTP 503.
#  1. `rivulet trackers --timeout 4` against all of them at once: it finishes in bounded time
#     and memory, and says per tracker in one line what was wrong; the 20 ms dribble and the
#     flood are read (the flood cut to the TRACKER_MAX_PEERS cap, the seeder among them).
#  2. `rivulet download` of the same data with each hostile tracker alone plus a libtorrent
#     seeder given with --peer (held to 2 MB/s, so the download overlaps the trackers' misdeeds): completes byte-identical, quickly (never waiting for the dead
#     tracker's 30 s timeout), under 100 MiB peak RSS; the redirect loop, endless body and
#     flood are reported in the NDJSON tracker event.
#  3. Without --peer: tiers [redirect loop] [endless body] [good tracker] fail over to the good
#     one, and the flood alone (the seeder is one address in 100,000) completes too.
#  4. A tracker asking for an announce every second ('interval' 1) gets 'started', then
#     nothing more in 4 s, then 'stopped' at Ctrl+C: intervals are raised to a minute.
#
# usage: tests/interop/hostile_trackers.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }
[ -x /usr/bin/time ] || { echo "SKIP: /usr/bin/time is needed to measure peak memory"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-htrack.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$WORK"
. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms
wait_file() { local i; for ((i = 0; i < 300; i++)); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }
wait_port() { local i; for ((i = 0; i < 50; i++)); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
MAXMIB=100

mkdir -p data
head -c 4000000 /dev/urandom >data/payload.bin
"$RV" create -q data/payload.bin -o base.torrent -l 64K
SP=$(free_port 127.0.0.2)
$PY "$HERE/lt_seeder.py" base.torrent data 127.0.0.2 "$SP" seed.ready --ready listen --upload-limit 2000000 >seed.log 2>&1 &
pids+=($!)
SEEDER=127.0.0.2:$SP
HP=$(free_port 127.0.0.1)
$PY "$HERE/hostile_tracker.py" 127.0.0.1 "$HP" tracker.log --peer "$SEEDER" 2>tracker.err &
pids+=($!)
declare -A UP
for m in garbage error flood; do
    UP[$m]=$(free_port 127.0.0.1)
    $PY "$HERE/hostile_tracker.py" 127.0.0.1 "${UP[$m]}" "udp-$m.log" --peer "$SEEDER" --udp "$m" \
        2>"udp-$m.err" &
    pids+=($!)
done
GP=$(free_port 127.0.0.1)
$PY "$HERE/log_tracker.py" 127.0.0.1 "$GP" good.log "$SEEDER" 2>good.err &
pids+=($!)
wait_file seed.ready || { echo "FAIL seeder: $(tail -n 3 seed.log)"; exit 1; }
for p in "$HP" "$GP" "${UP[@]}"; do
    wait_port 127.0.0.1 "$p" || { echo "FAIL trackers did not start: $(cat ./*.err)"; exit 1; }
done
B=http://127.0.0.1:$HP
GOOD=http://127.0.0.1:$GP/announce
declare -A URL=([silent]=$B/silent/announce [dribble200]=$B/dribble/200/announce
    [dribble20]=$B/dribble/20/announce [loop]=$B/loop/announce [flood]=$B/flood/announce
    [endless]=$B/endless/announce [eager]=$B/eager/announce [udp]=udp://127.0.0.1:$HP/announce
    [headers]=$B/headers/announce [html]=$B/html/announce [status]=$B/status/announce
    [udpgarbage]=udp://127.0.0.1:${UP[garbage]}/announce [udperror]=udp://127.0.0.1:${UP[error]}/announce
    [udpflood]=udp://127.0.0.1:${UP[flood]}/announce)
count_log() { grep -c "^$1\$" tracker.log 2>/dev/null || true; }

# ---- 1. rivulet trackers against all of them at once
all=""
for k in silent dribble200 dribble20 loop flood endless udp headers html status; do
    all+="${all:+,}${URL[$k]}"
done
"$RV" create -q data/payload.bin -o all.torrent -l 64K -t "$all"
t0=$(date +%s%N)
rc=0
timeout 30 /usr/bin/time -o trackers.rss -f %M "$RV" trackers --json --timeout 4 --udp-timeout 500 \
    all.torrent >trackers.json 2>trackers.err || rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
kib=$(tail -n 1 trackers.rss | tr -dc 0-9)
if [ $rc -eq 0 ] && [ $ms -lt 10000 ] && [ "${kib:-0}" -lt $((MAXMIB * 1024)) ]; then
    ok "trackers: exit 0 in $ms ms, peak ${kib} KiB"
else bad "trackers: exit $rc in $ms ms, peak ${kib} KiB: $(head -c 300 trackers.err)"; fi
$PY - trackers.json "$SEEDER" >trackers.check <<'PY' || true
import json, sys
d = json.load(open(sys.argv[1]))
seeder = sys.argv[2]
t = {}
for r in d["trackers"]:
    u = r["url"]
    t["udp" if u.startswith("udp:") else u.split("/")[3] + "".join(u.split("/")[4:-1])] = r
def check(name, cond, what):
    r = t[name]
    err = r["error"]
    # said in one line: no line break, short enough to read
    if err is not None and ("\n" in err or "\r" in err or len(err) > 200):
        cond = False
    print(("ok   " if cond else "FAIL ") + "trackers %s: %s [%s]" % (
        name, what, err if err is not None else "ok, %d peers" % r["peers"]))
e = lambda n: (t[n]["error"] or "").lower()
# the probe's deadline ("no answer within 4000 ms") and curl's ("Operation timed out after
# 4000 milliseconds with N bytes received") race; either says what happened
timed_out = lambda n: "no answer within 4000 ms" in e(n) or "timed out after 4000 milli" in e(n)
check("silent", not t["silent"]["ok"] and timed_out("silent"),
      "never answers: a timeout")
check("dribble200", not t["dribble200"]["ok"] and timed_out("dribble200"),
      "a byte every 200 ms: a timeout")
check("dribble20", t["dribble20"]["ok"] and t["dribble20"]["peer_list"] == [seeder],
      "a byte every 20 ms: read in time, the seeder")
check("loop", not t["loop"]["ok"] and "redirects" in e("loop"), "302 to itself: stopped")
check("flood", t["flood"]["ok"] and t["flood"]["peers"] == 10000 and
      seeder in t["flood"]["peer_list"], "100,000 peers: 10,000 kept, the seeder among them")
check("endless", not t["endless"]["ok"] and "larger than 2097152" in e("endless"),
      "an endless body: cut at the cap")
check("udp", not t["udp"]["ok"] and "no reply" in e("udp"), "UDP never answers: gives up")
# curl caps response headers at 300 KB (since 7.84); without that, the request timeout
check("headers", not t["headers"]["ok"] and ("too large response headers" in e("headers") or
      timed_out("headers")), "header lines without end: stopped")
check("html", not t["html"]["ok"] and "not bencode" in e("html"), "an HTML page: not bencode")
check("status", not t["status"]["ok"] and "503" in e("status"), "HTTP 503: the status")
PY
while read -r line; do
    case $line in
        ok*) ok "${line#ok   }" ;;
        *) bad "${line#FAIL }" ;;
    esac
done <trackers.check
[ -s trackers.check ] || bad "trackers: no checks ran: $(head -c 300 trackers.json)"
n=$(count_log loop)
# one announce and one scrape, each the first request and TRACKER_MAX_REDIRECTS more
[ "$n" -ge 6 ] && [ "$n" -le 12 ] && ok "trackers loop: $n requests in all (announce and scrape, 5 redirects each)" \
    || bad "trackers loop: $n requests"
sent=$(awk '/^endless-bytes/ { s += $2 } END { print s + 0 }' tracker.log)
[ "$sent" -lt $((32 << 20)) ] && ok "trackers endless: the tracker got to send $sent bytes in all, then was hung up on" \
    || bad "trackers endless: $sent bytes sent"
"$RV" trackers --timeout 4 --udp-timeout 500 all.torrent >trackers.txt 2>&1 || true
nfail=$(grep -c '^    failed: ' trackers.txt || true)
[ "$nfail" -eq 8 ] && ok "trackers text: 8 'failed:' lines, one per dead tracker" \
    || bad "trackers text: $nfail 'failed:' lines: $(grep -A1 '^  http\|^  udp' trackers.txt | head -20 | tr '\n' '|')"

# ---- 1b. the hostile UDP trackers, at once
"$RV" create -q data/payload.bin -o udp.torrent -l 64K -t "${URL[udpgarbage]},${URL[udperror]},${URL[udpflood]}"
t0=$(date +%s%N)
rc=0
timeout 30 /usr/bin/time -o udp.rss -f %M "$RV" trackers --json --timeout 4 --udp-timeout 500 \
    udp.torrent >udp.json 2>udp.err || rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
kib=$(tail -n 1 udp.rss | tr -dc 0-9)
if [ $rc -eq 0 ] && [ $ms -lt 10000 ] && [ "${kib:-0}" -lt $((MAXMIB * 1024)) ]; then
    ok "udp trackers: exit 0 in $ms ms, peak ${kib} KiB"
else bad "udp trackers: exit $rc in $ms ms, peak ${kib} KiB: $(head -c 300 udp.err)"; fi
$PY - udp.json "$SEEDER" "${UP[garbage]}" "${UP[error]}" "${UP[flood]}" >udp.check <<'PY' || true
import json, re, sys
d = json.load(open(sys.argv[1]))
seeder = sys.argv[2]
by_port = {r["url"].split(":")[2].split("/")[0]: r for r in d["trackers"]}
g, e, f = (by_port[p] for p in sys.argv[3:6])
def line_ok(s):  # one line, short, printable
    return s is not None and len(s) <= 300 and not re.search(r"[\x00-\x1f\x7f]", s)
def check(name, cond, r):
    print(("ok   " if cond else "FAIL ") + "udp %s [%s]" % (
        name, r["error"] if r["error"] is not None else "ok, %d peers" % r["peers"]))
check("junk replies: refused, said in one line", not g["ok"] and line_ok(g["error"]), g)
check("error with terminal escapes: one clean line, cut short",
      not e["ok"] and line_ok(e["error"]) and e["error"].startswith("tracker said: ") and
      e["error"].endswith("..."), e)
check("10,914 peers in one datagram: 10,000 kept, the seeder among them",
      f["ok"] and f["peers"] == 10000 and seeder in f["peer_list"], f)
PY
while read -r line; do
    case $line in
        ok*) ok "${line#ok   }" ;;
        *) bad "${line#FAIL }" ;;
    esac
done <udp.check
[ -s udp.check ] || bad "udp trackers: no checks ran: $(head -c 300 udp.json)"

# ---- 2. download with one hostile tracker each and the seeder through --peer
dl() { # LABEL TORRENT [ARGS...]: sets rc, ms, kib; NDJSON in LABEL.ndjson
    local label=$1 tor=$2
    shift 2
    rm -rf "out-$label"
    rc=0
    t0=$(date +%s%N)
    timeout 45 /usr/bin/time -o "$label.rss" -f %M "$RV" download "$tor" -o "out-$label" \
        --no-dht --listen 127.0.0.3 --port "$(free_port 127.0.0.3)" --seed-time 0 \
        --state-dir "st-$label" --json "$@" >"$label.ndjson" 2>"$label.err" || rc=$?
    ms=$((($(date +%s%N) - t0) / 1000000))
    kib=$(tail -n 1 "$label.rss" 2>/dev/null | tr -dc 0-9)
}
tracker_msg() { # NDJSON: the tracker events' messages, one a line
    $PY -c 'import json,sys
for l in open(sys.argv[1]):
    try: e = json.loads(l)
    except ValueError: continue
    if e.get("event") == "tracker": print(e.get("message", ""))' "$1"
}
for k in silent dribble200 loop flood endless udp udpgarbage udpflood; do
    "$RV" create -q data/payload.bin -o "$k.torrent" -l 64K -t "${URL[$k]}"
    dl "$k" "$k.torrent" --peer "$SEEDER"
    msgs=$(tracker_msg "$k.ndjson" | sort -u | tr '\n' '|')
    # exit before the 30 s tracker timeout: a dead tracker must not hold up the download
    if [ $rc -eq 0 ] && cmp -s data/payload.bin "out-$k/payload.bin" && [ $ms -lt 20000 ] &&
        [ "${kib:-0}" -lt $((MAXMIB * 1024)) ]; then
        ok "download with $k: byte-identical, exit 0 in $ms ms, peak ${kib} KiB${msgs:+ (tracker: $msgs)}"
    else bad "download with $k: exit $rc in $ms ms, peak ${kib} KiB: $(tail -n 3 "$k.err" | tr '\n' ' ')"; fi
    case $k in
        loop) want="redirects" ;;
        endless) want="larger than 2097152 bytes" ;;
        flood | udpflood) want="ok, 10000 peers" ;;
        *) want="" ;;
    esac
    if [ -n "$want" ]; then
        all_msgs=$(tracker_msg "$k.ndjson")
        [[ "$all_msgs" == *"$want"* ]] && ok "download with $k: tracker event says '$want'" \
            || bad "download with $k: no tracker event with '$want': $msgs"
    fi
done

# ---- 3. trackers only, no --peer
"$RV" create -q data/payload.bin -o tiers.torrent -l 64K -t "${URL[loop]}" -t "${URL[endless]}" -t "$GOOD"
dl tiers tiers.torrent
msgs=$(tracker_msg tiers.ndjson | tr '\n' '|')
if [ $rc -eq 0 ] && cmp -s data/payload.bin out-tiers/payload.bin && [[ "$msgs" == *"$GOOD: ok"* ]]; then
    ok "tiers [loop] [endless] [good]: byte-identical through the good tracker in $ms ms, peak ${kib} KiB"
else bad "tiers: exit $rc in $ms ms: $msgs $(tail -n 3 tiers.err | tr '\n' ' ')"; fi
dl floodonly flood.torrent
if [ $rc -eq 0 ] && cmp -s data/payload.bin out-floodonly/payload.bin && [ "${kib:-0}" -lt $((MAXMIB * 1024)) ]; then
    ok "flood alone: the seeder found among 100,000 addresses, byte-identical in $ms ms, peak ${kib} KiB"
else bad "flood alone: exit $rc in $ms ms, peak ${kib} KiB: $(tail -n 3 floodonly.err | tr '\n' ' ')"; fi

# ---- 4. interval 1: no seeder, so the download runs until the SIGINT at 4 s
"$RV" create -q data/payload.bin -o eager.torrent -l 64K -t "${URL[eager]}"
rc=0
timeout --preserve-status -s INT -k 10 4 "$RV" download eager.torrent -o out-eager --no-dht --listen 127.0.0.3 \
    --port "$(free_port 127.0.0.3)" --state-dir st-eager --json >eager.ndjson 2>eager.err || rc=$?
sleep 0.3
got=$(grep '^eager ' tracker.log | cut -d' ' -f2 | xargs)
if [ "$got" = "started stopped" ] && { [ $rc -lt 124 ] || [ $rc -eq 130 ]; }; then
    ok "interval 1: announces in 4 s: '$got' (exit $rc after Ctrl+C)"
else bad "interval 1: announces in 4 s: '$got', exit $rc: $(tail -n 2 eager.err | tr '\n' ' ')"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
