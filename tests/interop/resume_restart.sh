#!/usr/bin/env bash
# Resume data across restarts, against a rate-limited libtorrent seeder: Ctrl+C mid-download,
# then a restart hashes nothing and finishes byte-identical; a file changed behind our back
# (bytes rewritten, or truncated) gets only its pieces hashed and fetched again; kill -9 at
# random moments never leaves the resume file claiming a piece whose data is not on disk, and
# the download still finishes identical. Every run uses --state-dir inside the test's folder.
#
# usage: tests/interop/resume_restart.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
EV="$HERE/rv_events.py"
KILL_SECONDS=${RV_KILL_SECONDS:-60}

$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-resume.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms
# The numbers of the last "checked" event: "HASHED TRUSTED" (or "none").
checked() {
    $PY - "$1" <<'EOF'
import json, re, sys
last = "none"
for line in open(sys.argv[1], errors="replace"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") == "checked":
        m = re.match(r"checked (\d+) pieces, (\d+) trusted", e.get("message", ""))
        if m:
            last = m.group(1) + " " + m.group(2)
print(last)
EOF
}
# Pieces the resume file claims whose bytes on disk differ from the payload ("0" if none; a
# missing resume file claims nothing).
false_claims() {
    $PY - "$1" data/payload out/payload 65536 <<'EOF'
import os, sys
state, src, dst, pl = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
files = [f for f in os.listdir(state) if f.endswith(".resume")]
if not files:
    print(0); sys.exit()
raw = open(os.path.join(state, files[0]), "rb").read()
def dec(b, i):
    c = b[i:i + 1]
    if c == b"i":
        j = b.index(b"e", i); return int(b[i + 1:j]), j + 1
    if c == b"l":
        i += 1; out = []
        while b[i:i + 1] != b"e":
            v, i = dec(b, i); out.append(v)
        return out, i + 1
    if c == b"d":
        i += 1; out = {}
        while b[i:i + 1] != b"e":
            k, i = dec(b, i); v, i = dec(b, i); out[k] = v
        return out, i + 1
    j = b.index(b":", i); n = int(b[i:j]); return b[j + 1:j + 1 + n], j + 1 + n
d, _ = dec(raw, 0)
bits = d[b"pieces"]
names = sorted(os.listdir(src))
def space(root):
    out = b""
    for n in names:
        p = os.path.join(root, n)
        want = os.path.getsize(os.path.join(src, n))
        data = open(p, "rb").read()[:want] if os.path.exists(p) else b""
        out += data + b"\0" * (want - len(data))
    return out
a, b = space(src), space(dst)
bad = 0
for i in range((len(a) + pl - 1) // pl):
    if bits[i // 8] >> (7 - i % 8) & 1 and a[i * pl:(i + 1) * pl] != b[i * pl:(i + 1) * pl]:
        bad += 1
print(bad)
EOF
}

mkdir -p data/payload
head -c 8388608 /dev/urandom > data/payload/a.bin # 128 pieces of 64 KiB
head -c 2097152 /dev/urandom > data/payload/b.bin # 32 pieces
NP=160
"$RV" create -q data/payload -o t.torrent --piece-size 64K

SEED_PORT=$(free_port 127.0.0.2)
$PY "$HERE/lt_seeder.py" t.torrent data 127.0.0.2 "$SEED_PORT" seed.ready --ready listen \
    --upload-limit 2000000 2> seed.err &
pids+=($!)
wait_file seed.ready 30 || { bad "seeder not ready: $(tail -n 3 seed.err)"; exit 1; }
DL=("$RV" download --seed-time 0 --no-trackers --peer "127.0.0.2:$SEED_PORT" --state-dir st
    t.torrent -o out --json)

# ---- Ctrl+C mid-download, then a restart that trusts the resume file
"${DL[@]}" > run1.ndjson 2> run1.err &
rv=$!
for _ in $(seq 300); do
    n=$(grep -c piece_verified run1.ndjson 2>/dev/null || true)
    [ "${n:-0}" -ge 30 ] && break
    sleep 0.05
done
kill -INT "$rv"
rc=0
wait "$rv" || rc=$?
[ "$rc" -eq 130 ] && ok "Ctrl+C: exit 130" || bad "Ctrl+C: exit $rc ($(tail -n 2 run1.err | tr '\n' ' '))"
v1=$($PY "$EV" run1.ndjson 'len(verified)')
ls st/*.resume > /dev/null 2>&1 && ok "a resume file in --state-dir after Ctrl+C ($v1 pieces verified)" \
    || bad "no resume file in st/"
rc=0
timeout 120 "${DL[@]}" > run2.ndjson 2> run2.err || rc=$?
[ "$rc" -eq 0 ] && ok "restart: exit 0" || bad "restart: exit $rc ($(tail -n 2 run2.err | tr '\n' ' '))"
read -r hashed trusted _ <<< "$(checked run2.ndjson) x"
[ "$hashed" = 0 ] && [ "$trusted" -ge "$v1" ] && ok "restart hashed 0 pieces, trusted $trusted (run 1 verified $v1)" \
    || bad "restart: checked event says hashed=$hashed trusted=$trusted (run 1 verified $v1)"
f2=$($PY "$EV" run2.ndjson 'len(verified)')
[ "$f2" -eq $((NP - trusted)) ] && ok "restart fetched the other $f2 pieces" || bad "restart fetched $f2 pieces"
diff -r data/payload out/payload > /dev/null && ok "restart: byte-identical" || bad "restart: files differ"

# ---- bytes of b.bin changed behind our back: only b.bin's 32 pieces hashed, one fetched
printf 'XXXXXXXX' | dd of=out/payload/b.bin bs=1 seek=100000 conv=notrunc 2> /dev/null
rc=0
timeout 120 "${DL[@]}" > run3.ndjson 2> run3.err || rc=$?
[ "$rc" -eq 0 ] && ok "changed file: exit 0" || bad "changed file: exit $rc ($(tail -n 2 run3.err | tr '\n' ' '))"
read -r hashed trusted _ <<< "$(checked run3.ndjson) x"
[ "$hashed" = 32 ] && [ "$trusted" = 128 ] && ok "changed b.bin: hashed its 32 pieces, trusted 128" \
    || bad "changed b.bin: hashed=$hashed trusted=$trusted"
f3=$($PY "$EV" run3.ndjson 'sorted(verified)')
[ "$f3" = "129" ] && ok "changed b.bin: fetched piece 129 again" || bad "changed b.bin: fetched $f3"
diff -r data/payload out/payload > /dev/null && ok "changed file: byte-identical" || bad "changed file: files differ"

# ---- a.bin truncated: its 128 pieces hashed (16 pass), the rest fetched
truncate -s 1048576 out/payload/a.bin
rc=0
timeout 120 "${DL[@]}" > run4.ndjson 2> run4.err || rc=$?
[ "$rc" -eq 0 ] && ok "truncated file: exit 0" || bad "truncated file: exit $rc ($(tail -n 2 run4.err | tr '\n' ' '))"
read -r hashed trusted _ <<< "$(checked run4.ndjson) x"
[ "$hashed" = 128 ] && [ "$trusted" = 32 ] && ok "truncated a.bin: hashed its 128 pieces, trusted 32" \
    || bad "truncated a.bin: hashed=$hashed trusted=$trusted"
f4=$($PY "$EV" run4.ndjson 'len(verified)')
[ "$f4" -eq 112 ] && ok "truncated a.bin: fetched 112 pieces" || bad "truncated a.bin: fetched $f4"
diff -r data/payload out/payload > /dev/null && ok "truncated file: byte-identical" || bad "truncated file: files differ"

# ---- kill -9 (and some Ctrl+C) at random moments, for about KILL_SECONDS. Saves come every
# 30 s, at finishing and at stop, so the resume files checked here are those of clean stops
# and finished rounds, followed by crashed runs that wrote more data under them.
rm -rf out st
kills=0
ints=0
rounds=0
claims_bad=0
failed_pieces=0
end=$(($(date +%s) + KILL_SECONDS))
while [ "$(date +%s)" -lt "$end" ]; do
    "${DL[@]}" > kill.ndjson 2> kill.err &
    rv=$!
    sleep "$($PY -c 'import random; print(round(random.uniform(0.2, 2.5), 2))')"
    if ! kill -0 "$rv" 2> /dev/null; then
        # finished before the kill: check it, and start again from nothing for more kills
        rc=0
        wait "$rv" || rc=$?
        [ "$rc" -eq 0 ] || { bad "a run ended by itself with exit $rc: $(tail -n 5 kill.err | tr '\n' ' ')"; break; }
        rounds=$((rounds + 1))
        failed_pieces=$((failed_pieces + $($PY "$EV" kill.ndjson 'len(failed)')))
        diff -r data/payload out/payload > /dev/null || { claims_bad=$((claims_bad + 1)); echo "round $rounds: files differ"; }
        rm -rf out st
        continue
    fi
    # One stop in three is a clean Ctrl+C, so the runs killed after it start from a resume
    # file whose files have changed since (pieces written after the save).
    if [ $((RANDOM % 3)) -eq 0 ]; then
        kill -INT "$rv"
        wait "$rv" 2> /dev/null || true
        ints=$((ints + 1))
    else
        kill -9 "$rv"
        wait "$rv" 2> /dev/null || true
        kills=$((kills + 1))
    fi
    failed_pieces=$((failed_pieces + $($PY "$EV" kill.ndjson 'len(failed)')))
    mkdir -p st
    c=$(false_claims st)
    [ "$c" -ne 0 ] && { claims_bad=$((claims_bad + c)); echo "after stop $((kills + ints)): $c false claims"; }
done
[ "$claims_bad" -eq 0 ] && ok "$kills kill -9s and $ints Ctrl+Cs ($rounds downloads completed between them): the resume file never claimed a piece not on disk" \
    || bad "$kills kill -9s: $claims_bad false claims"
[ "$kills" -ge 5 ] || bad "only $kills kills"
rc=0
timeout 120 "${DL[@]}" > final.ndjson 2> final.err || rc=$?
failed_pieces=$((failed_pieces + $($PY "$EV" final.ndjson 'len(failed)')))
[ "$rc" -eq 0 ] && ok "after the kills: exit 0" || bad "after the kills: exit $rc ($(tail -n 2 final.err | tr '\n' ' '))"
[ "$failed_pieces" -eq 0 ] && ok "no piece failed its hash in any run" || bad "$failed_pieces pieces failed their hash"
diff -r data/payload out/payload > /dev/null && ok "after the kills: byte-identical" || bad "after the kills: files differ"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
