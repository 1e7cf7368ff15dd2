#!/usr/bin/env bash
# The upload limit holds at a higher rate too: `rivulet seed --max-upload-rate 8M` to a
# libtorrent leecher sends 8 MiB/s within 10 % once the leecher has ramped up (the rate between
# rivulet's status events at 5 s and at 10 s), and the leecher completes byte-identical.
# rate_limits.sh checks 1 MiB/s; at 8 MiB/s serve() used to ask the limiter for one block per
# turn, which capped a peer at one block per 5 ms run: about 3.4-4.4 MB/s, half the limit.
#
# usage: tests/interop/rate_limits_upload.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-rate-up.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms

mkdir -p data/payload
head -c 100663296 /dev/urandom > data/payload/a.bin # 96 MiB: about 12 s at 8 MiB/s
"$RV" create -q data/payload -o t.torrent --piece-size 256K
RP=$(free_port 127.0.0.3)
LP=$(free_port 127.0.0.4)
"$RV" seed t.torrent -d data --state-dir st --listen 127.0.0.3 --port "$RP" --no-trackers \
    --max-upload-rate 8M --json > seed.ndjson 2> seed.err &
pids+=($!)
for ((i = 0; i < 50; i++)); do (exec 3<> "/dev/tcp/127.0.0.3/$RP") 2> /dev/null && break; sleep 0.1; done
rc=0
timeout 60 $PY "$HERE/lt_leecher.py" t.torrent leech 127.0.0.4 "$LP" --peer "127.0.0.3:$RP" \
    --seconds 50 > leech.out 2> leech.err || rc=$?
[ "$rc" -eq 0 ] && ok "leecher: $(cat leech.out)" || bad "leecher exit $rc: $(cat leech.out) $(tail -n 2 leech.err)"
if cmp -s data/payload/a.bin leech/payload/a.bin; then ok "byte-identical"; else bad "files differ"; fi
# status events come every 5 s: "uploaded" at the first non-zero one (5 s in, the leecher started
# about then) and at the next (10 s in; the 96 MiB take about 14 s)
read -r u1 u2 <<< "$($PY - seed.ndjson <<'EOF'
import json, sys
ups = []
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if isinstance(e, dict) and e.get("event") == "status":
        ups.append(e.get("uploaded", 0))
nz = [i for i, u in enumerate(ups) if u > 0]
print(*(ups[nz[0]:nz[0] + 2] if nz and len(ups) >= nz[0] + 2 else [0, 0]))
EOF
)"
rate=$(((u2 - u1) / 5))
want=8388608
echo "  uploaded $u1 then $u2 bytes 5 s later: $rate B/s (limit $want)"
[ "$rate" -ge $((want * 9 / 10)) ] && [ "$rate" -le $((want * 11 / 10)) ] \
    && ok "upload at 8 MiB/s: $rate B/s over 5 s (within 10 %)" || bad "upload at 8 MiB/s: $rate B/s over 5 s"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
