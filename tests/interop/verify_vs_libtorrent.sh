#!/usr/bin/env bash
# rivulet verify against libtorrent's recheck of the same data. Makes payloads and torrents
# with libtorrent (v1, v1 with BEP 47 padding, hybrid, single file), checks that intact data is
# complete on both sides, then corrupts bytes in known pieces, truncates one file and deletes
# another: rivulet's piece set must equal libtorrent's (add_torrent + force_recheck,
# status().pieces), and so must each file's bytes in good pieces (file_progress). Then the
# exit codes: 0 complete, 4 incomplete, 3 bad torrent, 6 I/O error, 2 usage.
# Bounded, nothing listens: libtorrent's session binds 127.0.0.1 only and has no peers.
#
# usage: tests/interop/verify_vs_libtorrent.sh path/to/rivulet
#   LTPY=/usr/bin/python3 (the interpreter with `import libtorrent`)
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
LTPY=${LTPY:-/usr/bin/python3}
LTMAKE="$HERE/lt_make.py"

"$LTPY" -c 'import libtorrent' 2>/dev/null || { echo "SKIP: $LTPY cannot import libtorrent"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-verify-lt.XXXXXX")
trap 'chmod -R u+rwX "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
cd "$WORK"

. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms

# libtorrent's view of DIR for TORRENT: one JSON object with the piece bits as a '0'/'1'
# string and each file's bytes in verified pieces (padding left out), after a force_recheck.
cat >lt_recheck.py <<'EOF'
import json, sys, time
import libtorrent as lt

torrent, save = sys.argv[1], sys.argv[2]
ti = lt.torrent_info(torrent)
ses = lt.session({
    "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
    "listen_interfaces": "127.0.0.1:0", "outgoing_interfaces": "127.0.0.1",
    "alert_mask": lt.alert.category_t.status_notification | lt.alert.category_t.error_notification,
})
atp = lt.add_torrent_params()
atp.ti = ti
atp.save_path = save
h = ses.add_torrent(atp)

def wait_checked():
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ses.wait_for_alert(200)
        for a in ses.pop_alerts():
            if isinstance(a, lt.torrent_checked_alert):
                return
    sys.exit("libtorrent: no torrent_checked_alert within 60 s")

wait_checked()   # the check on adding
h.force_recheck()
wait_checked()   # and the recheck the test is about
st = h.status(lt.torrent_handle.query_pieces)
fs = ti.files()
prog = h.file_progress()
files = [prog[i] for i in range(fs.num_files())
         if not fs.file_flags(i) & lt.file_storage.flag_pad_file]
print(json.dumps({"pieces": "".join("1" if p else "0" for p in st.pieces), "files": files}))
ses.remove_torrent(h)
EOF

# rivulet's view, the same shape, from `rivulet verify --json`.
cat >rv_view.py <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
bits = "".join(format(b, "08b") for b in bytes.fromhex(r["have"]))[: r["piece_count"]]
print(json.dumps({"pieces": bits, "files": [f["bytes_have"] for f in r["files"]]}))
EOF

rnd() { head -c "$2" /dev/urandom >"$1"; }
# flip FILE OFFSET: inverts one byte in place.
flip() {
    "$LTPY" - "$1" "$2" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]))
    b = f.read(1)
    f.seek(int(sys.argv[2]))
    f.write(bytes([b[0] ^ 0xff]))
EOF
}

# compare NAME TORRENT DIR EXPECTED_EXIT: runs both and compares the piece sets and per-file
# bytes; prints how many pieces are good.
compare() {
    local name=$1 t=$2 dir=$3 want=$4 rc=0
    "$RV" verify "$t" -d "$dir" --json >"$name.rv.json" 2>"$name.rv.err" || rc=$?
    if [ "$rc" != "$want" ]; then
        bad "$name: rivulet verify exit $rc, expected $want ($(head -c 300 "$name.rv.err"))"
        return
    fi
    "$LTPY" rv_view.py "$name.rv.json" >"$name.rv" || { bad "$name: rivulet JSON unreadable"; return; }
    "$LTPY" lt_recheck.py "$t" "$dir" >"$name.lt" 2>"$name.lt.err" ||
        { bad "$name: libtorrent recheck failed: $(head -c 300 "$name.lt.err")"; return; }
    if cmp -s "$name.rv" "$name.lt"; then
        local good
        good=$("$LTPY" -c 'import json,sys; p=json.load(open(sys.argv[1]))["pieces"]; print("%d/%d" % (p.count("1"), len(p)))' "$name.lt")
        ok "$name: same pieces and file progress as libtorrent ($good pieces good, exit $rc)"
    else
        bad "$name: rivulet and libtorrent disagree"
        echo "  rivulet:    $(cat "$name.rv")"
        echo "  libtorrent: $(cat "$name.lt")"
    fi
}

# ---------------------------------------------------------------- payload and torrents
make_payload() { # DIR
    mkdir -p "$1/pay/sub/deeper"
    rnd "$1/pay/f1.bin" 100000
    rnd "$1/pay/f2.bin" 50001
    rnd "$1/pay/sub/f3.bin" 200000
    rnd "$1/pay/sub/deeper/f4.bin" 33333
    rnd "$1/pay/f5.bin" 70000
    : >"$1/pay/zero"
    rnd "$1/pay/z6.bin" 16384
}

for mode in v1 v1pad hybrid; do
    d=$mode
    make_payload "$d"
    "$LTPY" "$LTMAKE" "$d/pay" "$mode.torrent" --mode "$mode" --piece-size 16384 >/dev/null
    compare "$mode intact" "$mode.torrent" "$d" 0

    # A byte in the middle of f1 (one piece), the first byte of f3 (a piece it may share with
    # f2, or with padding), the last byte of f5; f3 cut to 120000 bytes; f4 deleted.
    flip "$d/pay/f1.bin" 40000
    flip "$d/pay/sub/f3.bin" 0
    flip "$d/pay/f5.bin" 69999
    truncate -s 120000 "$d/pay/sub/f3.bin"
    rm "$d/pay/sub/deeper/f4.bin"
    compare "$mode damaged" "$mode.torrent" "$d" 4

    # Every file gone but one; then the folder itself.
    rm -f "$d/pay/f1.bin" "$d/pay/f2.bin" "$d/pay/sub/f3.bin" "$d/pay/f5.bin"
    compare "$mode only z6.bin left" "$mode.torrent" "$d" 4
    compare "$mode folder missing" "$mode.torrent" "$WORK/nowhere" 4
done

# A single-file torrent: the save folder holds the file itself.
mkdir -p single
rnd single/one.bin 300001
"$LTPY" "$LTMAKE" single/one.bin single.torrent --mode v1 --piece-size 32768 >/dev/null
compare "single intact" single.torrent single 0
flip single/one.bin 32768
truncate -s 250000 single/one.bin
compare "single damaged and short" single.torrent single 4
# Longer than the torrent says: the extra bytes are not the torrent's business.
rnd single/extra 1000
rnd single/one.bin 300001
"$LTPY" "$LTMAKE" single/one.bin single2.torrent --mode v1 --piece-size 32768 >/dev/null
cat single/extra >>single/one.bin
compare "single with bytes appended" single2.torrent single 0

# A symlink in a file's place is never followed by rivulet (libtorrent does follow it, so no
# comparison here): the data outside is not counted.
mkdir -p sl
make_payload sl
"$LTPY" "$LTMAKE" sl/pay sl.torrent --mode v1 --piece-size 16384 >/dev/null
mv sl/pay/f5.bin outside-f5.bin
ln -s "$WORK/outside-f5.bin" sl/pay/f5.bin
rc=0
"$RV" verify sl.torrent -d sl --json >sl.json 2>/dev/null || rc=$?
state=$("$LTPY" -c 'import json,sys; print([f["state"] for f in json.load(open(sys.argv[1]))["files"] if f["path"].endswith("f5.bin")][0])' sl.json)
if [ "$rc" = 4 ] && [ "$state" = not_a_file ]; then
    ok "symlinked file not followed (state $state, exit 4)"
else
    bad "symlinked file: exit $rc, state $state"
fi

# ---------------------------------------------------------------- exit codes
expect_exit() { # WANT NAME CMD...
    local want=$1 name=$2 rc=0
    shift 2
    "$@" >out.txt 2>err.txt || rc=$?
    if [ "$rc" = "$want" ]; then
        ok "exit $want: $name ($(head -n 1 err.txt | cut -c1-100))"
    else
        bad "exit $rc, expected $want: $name: $(head -c 300 err.txt)"
    fi
}
mkdir -p codes
make_payload codes
"$LTPY" "$LTMAKE" codes/pay codes.torrent --mode v1 --piece-size 16384 >/dev/null
"$LTPY" "$LTMAKE" codes/pay v2only.torrent --mode v2 --piece-size 16384 >/dev/null
echo 'd4:infod4:name1:xee' >bad.torrent
expect_exit 0 "complete" "$RV" verify codes.torrent -d codes
grep -q "7 of 7 files complete" out.txt || bad "complete: summary line missing: $(tail -n 2 out.txt)"
expect_exit 0 "complete, --quiet, one thread" "$RV" verify -q -t 1 codes.torrent -o codes
expect_exit 3 "not a torrent" "$RV" verify bad.torrent -d codes
expect_exit 3 "no such torrent file" "$RV" verify nothing.torrent -d codes
expect_exit 3 "v2-only torrent (no v1 piece hashes)" "$RV" verify v2only.torrent -d codes
expect_exit 6 "the folder is a file" "$RV" verify codes.torrent -d codes/pay/f1.bin
expect_exit 2 "no torrent given" "$RV" verify -d codes
expect_exit 2 "bad --threads" "$RV" verify codes.torrent -d codes -t 0
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    # root reads anything: an unreadable file needs another user.
    chmod 755 "$WORK"
    chmod -R a+rX codes codes.torrent
    chmod 000 codes/pay/f2.bin
    expect_exit 6 "unreadable file (as nobody)" \
        setpriv --reuid=nobody --regid=nogroup --clear-groups "$RV" verify codes.torrent -d codes
    grep -q "f2.bin" err.txt || bad "unreadable file: the message does not name f2.bin"
elif [ "$(id -u)" != 0 ]; then
    chmod 000 codes/pay/f2.bin
    expect_exit 6 "unreadable file" "$RV" verify codes.torrent -d codes
fi
chmod 644 codes/pay/f2.bin

echo "verify_vs_libtorrent: $pass passed, $fail failed"
[ "$fail" = 0 ]
