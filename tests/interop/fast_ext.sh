#!/usr/bin/env bash
# The fast extension (BEP 6) against a libtorrent seeder:
#  - it says have all (no bitfield) to a fast peer: the download completes byte-identical only
#    if rivulet took it;
#  - the seeder is asked to choke (no upload slots) at the start and in the middle; the pieces
#    verified while it should choke are compared with BEP 6's canonical allowed-fast set for our
#    address (computed here independently), and the rejects rivulet counted are printed.
#    Both are reported, not asserted: libtorrent 2.0 keeps one optimistic unchoke slot even
#    with unchoke_slots_limit 0, so it does not reliably choke a lone peer (see the notes).
# usage: tests/interop/fast_ext.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-fast.XXXXXX")
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
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
free_port() { $PY -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"; }
wait_file() { local i; for ((i = 0; i < 300; i++)); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }
ev() { $PY "$EV" "$@"; }

mkdir -p payload
head -c 8000000 /dev/urandom >payload/fast.bin
"$RV" create payload/fast.bin -o fast.torrent -l 64K >/dev/null
IH=$("$RV" info --json fast.torrent | $PY -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')
NP=$("$RV" info --json fast.torrent | $PY -c 'import json,sys; print(json.load(sys.stdin)["piece_count"])')
ALLOWED=$($PY - "$IH" "$NP" <<'PY'
import hashlib, sys
ih, n = bytes.fromhex(sys.argv[1]), int(sys.argv[2])
x = bytes([127, 0, 0, 0]) + ih          # BEP 6: the peer's IPv4 address & 0xffffff00
out = []
while len(out) < min(5, n):
    x = hashlib.sha1(x).digest()
    for i in range(5):
        if len(out) == min(5, n):
            break
        idx = int.from_bytes(x[4 * i:4 * i + 4], "big") % n
        if idx not in out:
            out.append(idx)
print(" ".join(map(str, sorted(out))))
PY
)
SP=$(free_port 127.0.0.2)
touch choke
# 1 MB/s: the download lasts long enough to be choked in the middle
$PY "$HERE/lt_fast_seeder.py" fast.torrent payload 127.0.0.2 "$SP" s.ready --choke-file choke \
    --upload-limit 1000000 >s.log 2>&1 &
pids+=($!)
wait_file s.ready || { echo "FAIL seeder: $(tail -n 3 s.log)"; exit 1; }

"$RV" download fast.torrent -o out --peer "127.0.0.2:$SP" --no-trackers --listen 127.0.0.3 \
    --port "$(free_port 127.0.0.3)" --seed-time 0 --state-dir state --json >r.ndjson 2>r.err &
RPID=$!
pids+=("$RPID")
# phase 1: choked from the start; only allowed-fast pieces can come
for _ in $(seq 80); do
    [ "$(ev r.ndjson 'len(verified)')" -ge 5 ] && break
    sleep 0.1
done
sleep 1
cp r.ndjson phase1.ndjson
got=$(ev phase1.ndjson 'verified')
got=$(tr -d '[],' <<<"$got")
echo "note: pieces verified in the choke phase: [$got]; BEP 6 allowed-fast set for 127.0.0.3: [$ALLOWED]"
# phase 2: unchoked, then choked again mid-download, then unchoked for good
rm -f choke
sleep 2
touch choke
sleep 2
rm -f choke
rc=0
timeout 90 tail --pid="$RPID" -f /dev/null || true
wait "$RPID" || rc=$?
if [ $rc -eq 0 ] && cmp -s payload/fast.bin out/fast.bin; then ok "download complete and byte-identical (have all, no bitfield)"
else bad "download: exit $rc: $(tail -n 3 r.err | tr '\n' ' ')"; fi
rej=$(ev r.ndjson "max([e.get('rejects_received', 0) for e in kind('status')] or [0])")
echo "note: reject-request messages received from libtorrent: $rej"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
