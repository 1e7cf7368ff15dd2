#!/usr/bin/env bash
# One adversarial case: a misbehaving peer (evil_peer.py MODE) next to an honest libtorrent peer.
# Seeder modes: rivulet downloads from a rate-limited libtorrent seeder and from the evil seeder.
# Leecher modes: rivulet seeds to a libtorrent leecher and to the evil leecher.
# self_connect: rivulet is told to dial its own address.
# Each case checks that
#   - the honest transfer ends byte-identical,
#   - rivulet's events name the evil peer's address with one line saying what it did wrong
#     (EXPECT below, a grep -E pattern),
#   - rivulet's peak RSS stays under 64 MiB (--stats max_rss_kib), whatever the peer sent,
#   - the evil peer's own log shows rivulet ended the connection (where that is the answer).
# usage: tests/adversarial/run.sh MODE path/to/rivulet
set -euo pipefail

MODE=${1:?usage: $0 MODE path/to/rivulet}
RV=${2:?usage: $0 MODE path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
INTEROP=$(cd "$HERE/../interop" && pwd)
PY=/usr/bin/python3
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

# What rivulet must say about the evil peer, per mode.
case "$MODE" in
len_max) EXPECT='message length 4294967295 exceeds' ;;
oversized) EXPECT='piece message length [0-9]+, expected|exceeds the largest legal message' ;;
bitfield_len) EXPECT='bitfield of [0-9]+ bytes, expected' ;;
bitfield_spare) EXPECT='bitfield has spare bits set' ;;
have_past_end) EXPECT='have for piece 13 but the torrent has 13 pieces' ;;
unrequested | wrong_offset) EXPECT='blocks we never asked for' ;;
past_end) EXPECT='runs past the piece end' ;;
wrong_length) EXPECT='sent 8192 bytes for a 16384-byte block' ;;
bad_infohash) EXPECT='handshake for another torrent' ;;
bad_protocol) EXPECT='protocol string' ;;
slowloris | no_handshake) EXPECT='handshake' ;;
corrupt) EXPECT='failed the hash check|corrupt|banned' ;;
req_past_end) EXPECT='request for piece 13 but the torrent has 13 pieces' ;;
req_zero) EXPECT='request for piece 0 with block length 0' ;;
req_1mib) EXPECT='request for piece 0 with block length 1048576' ;;
req_flood) EXPECT='flooded us with more than' ;;
never_reads) EXPECT='read nothing we sent|does not read what we send' ;;
same_id) EXPECT='peer id already connected' ;;
self_connect) EXPECT='connected to ourselves' ;;
*) echo "unknown mode $MODE"; exit 2 ;;
esac
case "$MODE" in
req_* | never_reads | same_id) ROLE=leecher ;;
self_connect) ROLE=self ;;
*) ROLE=seeder ;;
esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-adv-$MODE.XXXXXX")
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
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $MODE: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $MODE: $*"; }
free_port() { $PY "$INTEROP/free_port.py" "$@"; } # IP; see free_port.py
wait_file() { local i; for ((i = 0; i < 200; i++)); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }
ev() { $PY "$INTEROP/rv_events.py" "$@"; }

# 13 pieces of 256 KiB, the last one short: a piece count that is not a multiple of 8, so a
# bitfield has spare bits.
mkdir -p seed
head -c 3300000 /dev/urandom >seed/data.bin
"$RV" create seed/data.bin -o t.torrent -l 256K >/dev/null

RVIP=127.0.0.20
RVPORT=$(free_port $RVIP)
EVIL=127.0.0.3
HONEST=127.0.0.2
# Short peer timeouts, so a peer that stalls is seen to be dropped within the test.
RVOPTS=(--listen $RVIP --port "$RVPORT" --no-trackers --no-dht --json --stats --peer-timeout 3)

rc=0
if [ "$ROLE" = seeder ] || [ "$ROLE" = self ]; then
    HP=$(free_port $HONEST)
    # The honest seeder is held back so the evil peer is met while the download runs: 600 KB/s
    # (about 5 s) where a stalling peer must be seen to time out (--peer-timeout 3), 1.5 MB/s
    # (about 2 s) where the evil peer misbehaves as soon as it is connected.
    case "$MODE" in slowloris | no_handshake) RATE=600000 ;; *) RATE=1500000 ;; esac
    $PY "$INTEROP/lt_seeder.py" t.torrent seed $HONEST "$HP" lt.ready --ready listen \
        --upload-limit $RATE >lt.log 2>&1 &
    pids+=($!)
    wait_file lt.ready || { bad "libtorrent seeder not ready: $(tail -n 3 lt.log)"; exit 1; }
    if [ "$ROLE" = seeder ]; then
        EP=$(free_port $EVIL)
        $PY "$HERE/evil_peer.py" "$MODE" t.torrent seed/data.bin $EVIL "$EP" evil.ready --seconds 45 \
            >evil.log 2>&1 &
        pids+=($!)
        EVPID=$!
        wait_file evil.ready || { bad "evil peer not ready: $(cat evil.log)"; exit 1; }
        PEERS=(--peer "$EVIL:$EP" --peer "$HONEST:$HP")
        WHO=$EVIL
    else
        PEERS=(--peer "$RVIP:$RVPORT" --peer "$HONEST:$HP")
        WHO=$RVIP
    fi
    timeout 60 "$RV" download t.torrent -o out --state-dir state --seed-time 0 "${RVOPTS[@]}" \
        "${PEERS[@]}" >ev.ndjson 2>rv.err || rc=$?
    if [ $rc -eq 0 ] && cmp -s seed/data.bin out/data.bin; then
        ok "the download from the honest seeder completed byte-identical"
    else
        bad "download exit $rc: $(tail -n 3 rv.err | tr '\n' ' ')"
    fi
else
    timeout --foreground 90 "$RV" seed t.torrent -d seed --state-dir state "${RVOPTS[@]}" \
        >ev.ndjson 2>rv.err &
    RVPID=$!
    pids+=("$RVPID")
    for ((i = 0; i < 100; i++)); do grep -q '"checked"\|"state":"seeding"\|seeding' ev.ndjson 2>/dev/null && break; sleep 0.1; done
    sleep 0.5
    WHO=$EVIL
    EP=$(free_port $EVIL)
    $PY "$HERE/evil_peer.py" "$MODE" t.torrent seed/data.bin $EVIL "$EP" evil.ready \
        --target "$RVIP:$RVPORT" --seconds 20 >evil.log 2>&1 &
    EVPID=$!
    pids+=("$EVPID")
    HP=$(free_port $HONEST)
    $PY "$INTEROP/lt_leecher.py" t.torrent leech $HONEST "$HP" --peer "$RVIP:$RVPORT" --seconds 40 \
        >lt.log 2>&1 || rc=$?
    if [ $rc -eq 0 ] && cmp -s seed/data.bin leech/data.bin; then
        ok "the libtorrent leecher got the data byte-identical from rivulet"
    else
        bad "libtorrent leecher exit $rc: $(tail -n 3 lt.log | tr '\n' ' ')"
    fi
    wait "$EVPID" 2>/dev/null || true
    kill -INT "$RVPID" 2>/dev/null || true
    src=0
    wait "$RVPID" 2>/dev/null || src=$?
    if [ $src -eq 0 ]; then ok "rivulet seed exited 0 on SIGINT"
    else bad "rivulet seed exit $src on SIGINT: $(tail -n 3 rv.err | tr '\n' ' ')"; fi
fi
if grep -qE 'Sanitizer|runtime error:' rv.err; then
    bad "sanitizer report: $(grep -m 1 -E 'Sanitizer|runtime error:' rv.err)"
fi

# One line naming the evil peer and saying what it did.
said=$(ev ev.ndjson "'\n'.join(str(e.get('message')) for e in kind('peer_dropped') + kind('peer_banned') + kind('piece_failed') if '$WHO' in str(e.get('message')) or e.get('event') == 'piece_failed')" || true)
if printf '%s\n' "$said" | grep -qE "$EXPECT"; then
    ok "rivulet said: $(printf '%s\n' "$said" | grep -E "$EXPECT" | head -n 1)"
else
    bad "no event about $WHO matching /$EXPECT/; events about it: $(printf '%s' "$said" | head -c 600 | tr '\n' '|')"
fi
if [ "$MODE" = corrupt ]; then
    if [ "$(ev ev.ndjson "'$EVIL' in str(addrs('peer_banned'))")" = True ]; then ok "the corrupting peer was banned"
    else bad "the corrupting peer was not banned"; fi
fi

# Memory stays bounded whatever the peer sent or asked for.
rss=$(ev ev.ndjson "int(kind('stats')[-1]['max_rss_kib']) if kind('stats') else -1" || echo -1)
# (RV_RSS_LIMIT_KIB: scripts/valgrind_interop.sh raises it, valgrind's own memory counts too)
limit=${RV_RSS_LIMIT_KIB:-65536}
if [ "$rss" -gt 0 ] && [ "$rss" -lt "$limit" ]; then ok "peak RSS $((rss / 1024)) MiB"
else bad "peak RSS ${rss} KiB (limit $((limit / 1024)) MiB, -1: no stats event)"; fi

# The evil peer's side of it, for the log (and a check where rivulet must be the one to close).
if [ -f evil.log ]; then
    echo "     evil peer: $(tr '\n' '|' <evil.log | head -c 400)"
    case "$MODE" in
    slowloris | no_handshake | never_reads | bad_infohash | bad_protocol | req_*)
        if grep -q 'closed by rivulet' evil.log; then ok "rivulet closed the connection"
        else bad "rivulet did not close the connection"; fi ;;
    same_id)
        if grep -q 'rivulet kept 1 of 10' evil.log; then ok "rivulet kept one connection of the ten"
        else bad "rivulet kept $(grep -o 'kept [0-9]* of' evil.log || echo '?')"; fi ;;
    esac
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
