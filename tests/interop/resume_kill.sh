#!/usr/bin/env bash
# Crash safety: one download from a libtorrent seeder, slowed by --max-download-rate, is killed
# with SIGKILL at random moments (0.2-1.5 s after each start) at least 20 times before it can
# complete, and restarted each time with the same -o and --state-dir; a few clean Ctrl+C stops
# among the kills leave resume files for the later runs to trust. After every stop, `rivulet
# verify` says which pieces are really on disk: every piece the resume file claims must be one
# of them, and the next run's "checked" event must never count more pieces as had than verify
# found (a piece trusted from resume data but bad would make it count more; fewer is allowed: a
# piece verified while the final snapshot of a Ctrl+C was syncing is on disk but not claimed,
# and the restart, trusting the files' stamps, fetches it again). No run ever reports a piece that
# fails its hash, progress is never lost across a kill, and a last run without kills finishes
# with byte-identical files, starting from what the killed runs left.
#
# usage: tests/interop/resume_kill.sh path/to/rivulet
#   RV_KILLS (default 24) SIGKILLs to make, at least 20; RV_KILL_SEED seeds the random moments.
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
KILLS=${RV_KILLS:-24}
[ "$KILLS" -ge 20 ] || KILLS=20
SEED=${RV_KILL_SEED:-$(($(date +%s) % 32768))}
RANDOM=$SEED

$PY -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-resume-kill.XXXXXX")
pids=()
rv=
cleanup() {
    [ -n "$rv" ] && { kill -9 "$rv" 2>/dev/null || true; wait "$rv" 2>/dev/null || true; }
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms

# check.py STATE_DIR VERIFY.json RUN.ndjson NP
# prints: CLAIMED UNBACKED HAVE HASHED TRUSTED HAD FAILED VERIFIED
#   CLAIMED   pieces the resume file in STATE_DIR claims (0 without one)
#   UNBACKED  of those, pieces verify does not find complete on disk
#   HAVE      pieces verify finds complete on disk
#   HASHED TRUSTED HAD  the numbers of the run's last "checked" event (- - - without one)
#   FAILED VERIFIED     piece_failed and piece_verified events of the run
cat > check.py <<'EOF'
import json, os, re, sys
state, vfile, run, np_ = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
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
def bits(buf):
    return {i for i in range(np_) if i // 8 < len(buf) and buf[i // 8] >> (7 - i % 8) & 1}
v = json.load(open(vfile))
have = bits(bytes.fromhex(v["have"]))
assert len(have) == v["pieces_have"], (len(have), v["pieces_have"])
claimed = set()
res = [f for f in os.listdir(state) if f.endswith(".resume")] if os.path.isdir(state) else []
if res:
    assert res == [v["info_hash"] + ".resume"], res
    d, _ = dec(open(os.path.join(state, res[0]), "rb").read(), 0)
    claimed = bits(d[b"pieces"])
checked = ["-", "-", "-"]
failed = verified = 0
for line in open(run, errors="replace"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if not isinstance(e, dict):
        continue
    k = e.get("event")
    if k == "checked":
        m = re.match(r"checked (\d+) pieces, (\d+) trusted from resume data, (\d+) of (\d+) had",
                     e.get("message", ""))
        if m:
            checked = [m.group(1), m.group(2), m.group(3)]
    elif k == "piece_failed":
        failed += 1
    elif k == "piece_verified":
        verified += 1
print(len(claimed), len(claimed - have), len(have), *checked, failed, verified)
EOF

mkdir -p data/payload
head -c 29360128 /dev/urandom > data/payload/a.bin # 448 pieces of 64 KiB
head -c 4194304 /dev/urandom > data/payload/b.bin  # 64 pieces
NP=512
"$RV" create -q data/payload -o t.torrent --piece-size 64K

SEED_PORT=$(free_port 127.0.0.2)
# The seeder's own cap is only a backstop: --max-download-rate 1M is what makes it slow.
$PY "$HERE/lt_seeder.py" t.torrent data 127.0.0.2 "$SEED_PORT" seed.ready --ready listen \
    --upload-limit 3000000 2> seed.err &
pids+=($!)
wait_file seed.ready 30 || { bad "seeder not ready: $(tail -n 3 seed.err)"; exit 1; }
DL=("$RV" download --seed-time 0 --no-trackers --peer "127.0.0.2:$SEED_PORT" --state-dir st
    t.torrent -o out --json --max-download-rate 1M)
echo "seed $SEED: $KILLS SIGKILLs, 0.2-1.5 s after each start, a Ctrl+C every 6th stop"

# Stop the downloader $rv with signal $1; a Ctrl+C that has not stopped it in 5 s is a failure
# (and a kill -9 then).
stop_rv() {
    kill -"$1" "$rv" 2>/dev/null || true
    local i
    for ((i = 0; i < 50; i++)); do kill -0 "$rv" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$rv" 2>/dev/null; then
        bad "run $run: still running 5 s after SIG$1"
        kill -9 "$rv" 2>/dev/null || true
    fi
    { wait "$rv"; } 2>/dev/null || true
    rv=
}

t_start=$(date +%s%N)
kills=0
ints=0
run=0
early=0        # runs that finished before their kill
unbacked=0     # resume-file claims verify did not find on disk, summed over the stops
with_claims=0  # stops after which the resume file claimed some pieces
max_claimed=0
failed=0       # piece_failed events, all runs
overcount=0    # runs whose "had" is more than what verify found before they started
ignored=0      # pieces on disk a run's "had" left out (fetched again), summed
lost=0         # stops after which fewer pieces were on disk than before
trusted_runs=0 # runs that trusted pieces from resume data
prev_have=0    # verify's count before the current run ("0" before the first)
# bash reports each SIGKILLed job on its stderr ("Killed ..."): not during the loop.
exec 3>&2 2>/dev/null
while [ "$kills" -lt "$KILLS" ]; do
    run=$((run + 1))
    "${DL[@]}" > "run$run.ndjson" 2> "run$run.err" &
    rv=$!
    ms=$((200 + RANDOM % 1301))
    sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
    if ! kill -0 "$rv" 2>/dev/null; then
        rc=0
        wait "$rv" || rc=$?
        rv=
        early=1
        bad "run $run ended by itself (exit $rc) after $kills kills: $(tail -n 3 "run$run.err" | tr '\n' ' ')"
        break
    fi
    if [ $((run % 6)) -eq 0 ]; then
        sig=INT
        ints=$((ints + 1))
    else
        sig=KILL
        kills=$((kills + 1))
    fi
    stop_rv "$sig"
    vrc=0
    "$RV" verify t.torrent -d out --json > verify.json 2> verify.err || vrc=$?
    [ "$vrc" -eq 0 ] || [ "$vrc" -eq 4 ] || { bad "verify after run $run: exit $vrc $(head -n 2 verify.err)"; break; }
    read -r claimed unb have hashed trusted had fl vf <<< "$($PY check.py st verify.json "run$run.ndjson" $NP)"
    printf '  run %2d: SIG%-4s after %4d ms: checked %s (trusted %s, had %s), +%s verified, %s failed; on disk %s, resume claims %s\n' \
        "$run" "$sig" "$ms" "$hashed" "$trusted" "$had" "$vf" "$fl" "$have" "$claimed"
    failed=$((failed + fl))
    unbacked=$((unbacked + unb))
    [ "$unb" -ne 0 ] && echo "  run $run: the resume file claims $unb pieces that are not on disk"
    [ "$claimed" -gt 0 ] && with_claims=$((with_claims + 1))
    [ "$claimed" -gt "$max_claimed" ] && max_claimed=$claimed
    if [ "$had" != - ]; then
        if [ "$had" -gt "$prev_have" ]; then
            overcount=$((overcount + 1))
            echo "  run $run: had $had, verify had found only $prev_have"
        elif [ "$had" -lt "$prev_have" ]; then
            ignored=$((ignored + prev_have - had))
            echo "  run $run: had $had, verify had found $prev_have (left out, fetched again)"
        fi
        [ "$trusted" -gt 0 ] && trusted_runs=$((trusted_runs + 1))
    fi
    [ "$have" -ge "$prev_have" ] || { lost=$((lost + 1)); echo "  run $run: $prev_have pieces on disk before, $have after"; }
    prev_have=$have
done
t_kills=$(( ($(date +%s%N) - t_start) / 1000000 ))
exec 2>&3 3>&-

[ "$early" -eq 0 ] && [ "$kills" -ge 20 ] && [ "$prev_have" -lt "$NP" ] \
    && ok "$kills SIGKILLs and $ints Ctrl+Cs in $run runs ($t_kills ms), all before the download completed ($prev_have of $NP pieces on disk)" \
    || bad "only $kills SIGKILLs landed before completion ($prev_have of $NP pieces on disk)"
[ "$unbacked" -eq 0 ] && [ "$with_claims" -gt 0 ] \
    && ok "after all $run stops the resume file claimed only pieces verify found on disk ($with_claims stops with claims, up to $max_claimed pieces)" \
    || bad "resume files claimed $unbacked pieces not on disk (stops with claims: $with_claims)"
[ "$overcount" -eq 0 ] && ok "no restart counted more pieces as had than verify found ($ignored good pieces left out in all)" \
    || bad "$overcount restarts counted more pieces as had than verify found"
[ "$trusted_runs" -gt 0 ] && ok "$trusted_runs restarts trusted pieces from resume data" \
    || bad "no restart trusted pieces from resume data"
[ "$lost" -eq 0 ] && ok "no stop lost pieces already on disk" || bad "$lost stops lost pieces already on disk"

# ---- a last run without kills finishes the download
run=$((run + 1))
rc=0
t0=$(date +%s%N)
timeout 90 "${DL[@]}" > final.ndjson 2> final.err || rc=$?
t_final=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$rc" -eq 0 ] && ok "last run: exit 0 in $t_final ms" || bad "last run: exit $rc ($(tail -n 2 final.err | tr '\n' ' '))"
"$RV" verify t.torrent -d out --json > verify.json 2> verify.err || true
read -r claimed unb have hashed trusted had fl vf <<< "$($PY check.py st verify.json final.ndjson $NP)"
failed=$((failed + fl))
echo "  last run: checked $hashed (trusted $trusted, had $had), +$vf verified, $fl failed; on disk $have, resume claims $claimed"
[ "$had" != - ] && [ "$had" -gt 0 ] && [ "$had" -le "$prev_have" ] \
    && ok "last run started from $had of the $prev_have pieces the killed runs left ($trusted trusted from resume data)" \
    || bad "last run: had $had pieces at start, verify had found $prev_have"
[ "$had" != - ] && [ "$vf" -eq $((NP - had)) ] && ok "last run fetched only the other $vf pieces" \
    || bad "last run fetched $vf pieces (had $had of $NP)"
[ "$failed" -eq 0 ] && ok "no piece failed its hash in any of the $run runs" || bad "$failed piece_failed events"
same=1
for f in a.bin b.bin; do cmp -s "data/payload/$f" "out/payload/$f" || same=0; done
[ "$same" -eq 1 ] && ok "byte-identical files" || bad "files differ"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
