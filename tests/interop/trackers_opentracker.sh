#!/usr/bin/env bash
# `rivulet trackers` against a real opentracker (HTTP and UDP) that a real libtorrent seeder
# announced to: our client must receive the seeder's address over both protocols, and scrape
# must count it. Then BEP 12: a torrent whose first tier is dead (a closed TCP port and a UDP
# tracker that never answers) and whose second tier works still gets the seeder, and the order
# and back-off show in the announce log.
#
# usage: tests/interop/trackers_opentracker.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3

command -v opentracker >/dev/null || { echo "SKIP: opentracker not installed"; exit 77; }
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-trackers.XXXXXX")
chmod 755 "$WORK"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms

jq_py() { # json file, python expression over d; prints the result
    $PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

HP=$(free_port)   # opentracker HTTP and UDP on the same number
SEED_PORT=$(free_port)
DEAD_TCP=$(free_port) # nothing listens here: connection refused
SILENT=$(free_port)

mkdir -p data/payload
head -c 3000000 /dev/urandom > data/payload/a.bin
head -c 123456 /dev/urandom > data/payload/b.bin
"$RV" create -q data/payload -o t.torrent \
    -t "http://127.0.0.1:$HP/announce" -t "udp://127.0.0.1:$HP/announce"
# The same data with a dead first tier: trackers live outside the info dictionary, so the
# info-hash is the same and the seeder is already known to the live tracker.
"$RV" create -q data/payload -o dead-first.torrent \
    -t "http://127.0.0.1:$DEAD_TCP/announce,udp://127.0.0.1:$SILENT/announce" \
    -t "http://127.0.0.1:$HP/announce"
HASH=$("$RV" info --json t.torrent | $PY -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')
HASH2=$("$RV" info --json dead-first.torrent | $PY -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')
[ "$HASH" = "$HASH2" ] && ok "same info-hash for both tracker lists" || bad "info-hashes differ"

# opentracker drops privileges: its whitelist must be world-readable.
echo "$HASH" > whitelist
chmod 644 whitelist
opentracker -i 127.0.0.1 -p "$HP" -P "$HP" -w "$WORK/whitelist" > opentracker.log 2>&1 &
pids+=($!)
$PY "$HERE/silent_udp.py" 127.0.0.1 "$SILENT" silent.count &
pids+=($!)
for i in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$HP") 2>/dev/null && break
    sleep 0.1
done

$PY "$HERE/lt_seeder.py" t.torrent data 127.0.0.2 "$SEED_PORT" seeder.ready 2> seeder.log &
pids+=($!)
if wait_file seeder.ready 30; then ok "libtorrent seeder announced to opentracker"; else
    bad "libtorrent seeder never announced"; cat seeder.log opentracker.log; exit 1; fi

# ---- every tracker at once: HTTP and UDP both give the seeder; scrape counts it
set +e
timeout 60 "$RV" trackers --json --timeout 15 t.torrent > all.json 2> all.err
rc=$?
set -e
[ $rc -eq 0 ] && ok "rivulet trackers exits 0" || { bad "rivulet trackers exit $rc"; cat all.err; }
for proto in http udp; do
    sel="[t for t in d['trackers'] if t['url'].startswith('$proto://')][0]"
    if [ "$(jq_py all.json "$sel['ok']")" = True ]; then ok "$proto announce answered"; else
        bad "$proto announce: $(jq_py all.json "$sel['error']")"; fi
    if [ "$(jq_py all.json "'127.0.0.2:$SEED_PORT' in $sel['peer_list']")" = True ]; then
        ok "$proto announce returned the libtorrent seeder 127.0.0.2:$SEED_PORT"
    else bad "$proto peers: $(jq_py all.json "$sel['peer_list']")"; fi
    if [ "$(jq_py all.json "$sel['scrape_ok'] and $sel['seeders'] >= 1")" = True ]; then
        ok "$proto scrape reports $(jq_py all.json "$sel['seeders']") seeder(s)"
    else bad "$proto scrape: $(jq_py all.json "$sel['scrape_error']")"; fi
    if [ "$(jq_py all.json "$sel['interval'] > 0 and $sel['rtt_ms'] >= 0")" = True ]; then
        ok "$proto interval $(jq_py all.json "$sel['interval']") s, rtt $(jq_py all.json "$sel['rtt_ms']") ms"
    else bad "$proto interval/rtt missing"; fi
done
# Both trackers name the seeder (and possibly our own announce): merged, each address once.
if [ "$(jq_py all.json "d['unique_peers'] == len(set(p for t in d['trackers'] for p in t['peer_list']))")" = True ]; then
    ok "peers from both trackers merged without duplicates ($(jq_py all.json "d['unique_peers']") unique)"
else bad "unique peers: $(jq_py all.json "d['unique_peers']")"; fi
"$RV" trackers --timeout 15 t.torrent > all.txt 2>&1 || true
grep -q "127.0.0.2:$SEED_PORT" all.txt && ok "text output lists the seeder" || { bad "text output"; cat all.txt; }

# ---- BEP 12 order with a dead first tier
set +e
timeout 60 "$RV" trackers --tiers --json --timeout 20 --udp-timeout 300 dead-first.torrent > tiers.json 2> tiers.err
rc=$?
set -e
[ $rc -eq 0 ] && ok "tiers mode exits 0 (a tracker answered)" || { bad "tiers mode exit $rc"; cat tiers.err; }
cat > check_tiers.py <<PY
import json, sys
d = json.load(open("tiers.json"))
ev = d["events"]
print("events:", [(e["tier"], e["url"], e["ok"], e["backoff_ms"], e["error"]) for e in ev])
t1 = [e for e in ev if e["tier"] == 1]
t2 = [e for e in ev if e["tier"] == 2]
assert len(t1) == 2 and not any(e["ok"] for e in t1), "both tier-1 trackers tried and failed"
assert all(e["backoff_ms"] > 0 for e in t1), "failures back off"
assert t2 and t2[0]["ok"] and t2[0]["peers"] >= 1, "tier 2 answered with peers"
assert ev.index(t2[0]) > max(ev.index(e) for e in t1), "tier 2 only after tier 1 failed"
tcp = [e for e in t1 if e["url"].startswith("http://")][0]
assert "refused" in (tcp["error"] or "").lower() or "connect" in (tcp["error"] or "").lower(), tcp["error"]
udp = [e for e in t1 if e["url"].startswith("udp://")][0]
assert "no reply" in (udp["error"] or "").lower() or "timed out" in (udp["error"] or "").lower(), udp["error"]
live = [t for t in d["trackers"] if t["tier"] == 2][0]
assert "127.0.0.2:$SEED_PORT" in live["peer_list"], live["peer_list"]
PY
if $PY check_tiers.py; then ok "BEP 12: tier 1 tried and failed (with back-off), tier 2 gave the seeder"; else
    bad "BEP 12 order"; cat tiers.json; fi
n=$(cat silent.count 2>/dev/null || echo 0)
[ "$n" -ge 2 ] && ok "the silent UDP tracker got $n datagrams (retransmission)" || bad "silent UDP got $n"
"$RV" trackers --tiers --timeout 20 --udp-timeout 300 dead-first.torrent > tiers.txt 2>&1 || true
grep -q "retry in" tiers.txt && ok "text log shows the back-off" || { bad "text log"; cat tiers.txt; }

# ---- nothing but loopback: every connect/sendto of a full run, traced by the kernel
if command -v strace >/dev/null; then
    strace -f -qq -e trace=connect,sendto,sendmsg,sendmmsg -o strace.log \
        timeout 60 "$RV" trackers --tiers --all-tiers --timeout 10 --udp-timeout 300 dead-first.torrent \
        > /dev/null 2>&1 || true
    outside=$(grep -oE 'inet_addr\("[0-9.]+"\)|inet_pton\(AF_INET6, "[^"]+"' strace.log \
        | grep -vE '"127\.|"::1"|"::ffff:127\.' | sort -u || true)
    seen=$(grep -cE 'inet_addr\("127\.' strace.log || true)
    if [ -z "$outside" ] && [ "$seen" -gt 0 ]; then
        ok "strace: $seen loopback destinations, none outside 127.0.0.0/8 and ::1"
    else bad "strace saw destinations outside loopback: $outside (loopback seen: $seen)"; fi
else
    echo "skip strace check: strace not installed"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
