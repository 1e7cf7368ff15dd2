#!/usr/bin/env bash
# Benchmark: time from a magnet link to the verified metadata (BEP 9) on loopback, rivulet
# against libtorrent and aria2c doing the same, in one run. Not a test: it prints a table.
#
# usage: bench/magnet.sh PATH_TO_RIVULET [FILES]     (FILES: files in the torrent, default 2000,
#                                                    which makes an info dictionary of ~150 KiB)
#
# One libtorrent seeder on 127.0.0.2 serves the metadata; every client learns of it through
# the magnet link's tr= (opentracker on 127.0.0.1), since aria2c cannot be given a peer by hand.
# Each client starts from nothing (no state, no cache) RUNS times (default 3); the median wall
# time from start to "metadata saved/received" is printed with the ratio to rivulet's.
#   rivulet download --metadata-only MAGNET -o FILE.torrent   (exits once saved)
#   libtorrent: add_torrent(parse_magnet_uri) until metadata_received_alert, timed in-process
#   aria2c --bt-metadata-only=true --bt-save-metadata=true    (exits once saved; aria2 waits
#                                                             about 2 s before its first request)
set -euo pipefail
# Loopback only: the DHT starts from no outside router.
export RIVULET_DHT_BOOTSTRAP=

RV=${1:?usage: $0 PATH_TO_RIVULET [FILES]}
FILES=${2:-2000}
RUNS=${RUNS:-3}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
INTEROP=$(cd "$HERE/../tests/interop" && pwd)
PY=/usr/bin/python3
$PY -c 'import libtorrent' || { echo "needs python3-libtorrent" >&2; exit 2; }
command -v opentracker >/dev/null || { echo "needs opentracker" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-bench-magnet.XXXXXX")
chmod 755 "$WORK"
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
free_port() { $PY "$INTEROP/free_port.py" "$@"; } # IP; see free_port.py
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }'; }

mkdir -p payload/many
for i in $(seq "$FILES"); do printf '%s' "$i" >"payload/many/file-$i.txt"; done
HP=$(free_port 127.0.0.1)
"$RV" create payload/many -o many.torrent -l 16K -t "http://127.0.0.1:$HP/announce" >/dev/null 2>&1
IH=$("$RV" info --json many.torrent | $PY -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')
INFO=$($PY -c 'import libtorrent as lt,sys; print(len(lt.torrent_info(sys.argv[1]).info_section()))' many.torrent)
echo "$IH" >whitelist
chmod 644 whitelist
opentracker -i 127.0.0.1 -p "$HP" -P "$HP" -w "$WORK/whitelist" >ot.log 2>&1 &
pids+=($!)
SP=$(free_port 127.0.0.2)
$PY "$INTEROP/lt_seeder.py" many.torrent payload 127.0.0.2 "$SP" ready >seed.log 2>&1 &
pids+=($!)
for _ in $(seq 300); do [ -s ready ] && break; sleep 0.1; done
[ -s ready ] || { echo "seeder not ready: $(tail -n 3 seed.log)" >&2; exit 1; }
URI="magnet:?xt=urn:btih:$IH&tr=http%3A%2F%2F127.0.0.1%3A$HP%2Fannounce"

for r in $(seq "$RUNS"); do
    t0=$(now)
    timeout 60 "$RV" download --metadata-only "$URI" -o "rv-$r.torrent" --state-dir "st-$r" \
        --listen 127.0.0.3 --port "$(free_port 127.0.0.3)" -q
    secs "$t0" "$(now)" >>rivulet.times
    # libtorrent's time is taken inside the process, from add_torrent: the interpreter and
    # session start (about 0.6 s here) are left out, in libtorrent's favour.
    timeout 60 $PY - "$URI" "lt-$r" "$(free_port 127.0.0.4)" >>libtorrent.times <<'PY'
import sys, time, libtorrent as lt
uri, save, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ses = lt.session({"enable_dht": False, "enable_lsd": False, "enable_upnp": False,
                  "enable_natpmp": False, "enable_outgoing_utp": False,
                  "enable_incoming_utp": False, "listen_interfaces": f"127.0.0.4:{port}",
                  "outgoing_interfaces": "127.0.0.4",
                  "alert_mask": lt.alert.category_t.status_notification})
p = lt.parse_magnet_uri(uri)
p.save_path = save
p.flags |= lt.torrent_flags.upload_mode
t0 = time.monotonic()
h = ses.add_torrent(p)
while True:
    ses.wait_for_alert(50)
    if any(isinstance(a, lt.metadata_received_alert) for a in ses.pop_alerts()):
        break
print(f"{time.monotonic() - t0:.3f}")
PY
    if command -v aria2c >/dev/null; then
        mkdir -p "a-$r"
        t0=$(now)
        timeout 60 aria2c --no-conf --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
            --enable-peer-exchange=false --disable-ipv6=true --interface=127.0.0.5 \
            --listen-port="$(free_port 127.0.0.5)" --bt-metadata-only=true --bt-save-metadata=true \
            --dir="$WORK/a-$r" --summary-interval=0 --console-log-level=error "$URI" >"aria-$r.log" 2>&1
        secs "$t0" "$(now)" >>aria2c.times
    fi
done

rv=$(median <rivulet.times)
echo "magnet link -> metadata on loopback: $FILES files, info dictionary $INFO bytes, median of $RUNS runs ($(date -u +%F), $(nproc) cores)"
printf '%-12s %10s %12s\n' client seconds "x rivulet"
for c in rivulet libtorrent aria2c; do
    [ -s "$c.times" ] || continue
    m=$(median <"$c.times")
    printf '%-12s %10s %12s\n' "$c" "$m" "$(awk -v a="$m" -v b="$rv" 'BEGIN { printf "%.2f", a / b }')"
done
