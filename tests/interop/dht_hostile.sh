#!/usr/bin/env bash
# Hostile KRPC input against `rivulet dht` (tests/interop/dht_hostile.py): malformed packets,
# a flood from one source, a token used from another address. The node survives, answers
# others, and its own report counts the bad packets and the rate-limited queries.
# usage: tests/interop/dht_hostile.sh path/to/rivulet
set -euo pipefail
# Loopback only: no outside DHT router, even when run by hand.
export RIVULET_DHT_BOOTSTRAP=

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-dhth.XXXXXX")
NPID=
cleanup() {
    [ -n "$NPID" ] && kill "$NPID" 2>/dev/null || true
    [ -n "$NPID" ] && wait "$NPID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
P=$($PY -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.4.10",0)); print(s.getsockname()[1])')
"$RV" dht --listen 127.0.4.10 --port "$P" --seconds 60 --interval 1 --json >node.ndjson 2>node.err &
NPID=$!
sleep 0.5
fail=0
$PY "$HERE/dht_hostile.py" 127.0.4.10 "$P" || fail=1
sleep 1.5
kill -INT "$NPID"
wait "$NPID" || { echo "FAIL the node exited badly: $(tail -n 3 node.err)"; fail=1; }
NPID=
final=$(grep '"final"' node.ndjson || true)
echo "     node: $final"
$PY - "$final" <<'PY' || fail=1
import json, sys
f = json.loads(sys.argv[1])
ok = f["bad_packets"] >= 5 and f["rate_limited"] >= 100 and f["limited_sources"] >= 1
print(("ok   " if ok else "FAIL ") + f"the node counted {f['bad_packets']} bad packets and "
      f"{f['rate_limited']} rate-limited queries from {f['limited_sources']} source(s)")
sys.exit(0 if ok else 1)
PY
[ "$fail" -eq 0 ]
