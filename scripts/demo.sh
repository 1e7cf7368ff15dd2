#!/usr/bin/env bash
# make demo: rivulet end to end on this machine, on loopback only.
#  1. makes a sample payload (a few hundred MiB in several files) and its torrent with
#     `rivulet create`, and describes it with `rivulet info`;
#  2. starts a real opentracker, a rivulet seeder (`rivulet seed`) on 127.0.0.2, and a rivulet
#     downloader that finds it through the tracker and shows its live progress;
#  3. checks the download byte for byte and prints the speed. Everything is cleaned up.
set -euo pipefail
# Loopback only: the DHT starts from no outside router.
export RIVULET_DHT_BOOTSTRAP=
rivulet=${1:-build/rivulet}
rivulet=$(cd "$(dirname "$rivulet")" && pwd)/$(basename "$rivulet")
size_mib=${DEMO_MIB:-300}

work=$(mktemp -d "${TMPDIR:-/tmp}/rivulet-demo.XXXXXX")
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
port_free() { /usr/bin/python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$1"; }

payload="$work/sample album"
mkdir -p "$payload/disc 1" "$payload/disc 2"
echo "== making a sample payload of about $size_mib MiB in $payload"
head -c $((size_mib * 1024 * 1024 / 2)) /dev/urandom > "$payload/disc 1/track 01.flac"
head -c $((size_mib * 1024 * 1024 / 3 + 12345)) /dev/urandom > "$payload/disc 1/track 02.flac"
head -c $((size_mib * 1024 * 1024 / 6 + 777)) /dev/urandom > "$payload/disc 2/track 01.flac"
printf 'A sample made by make demo.\n' > "$payload/README.txt"
: > "$payload/empty.cue"

tp=$(port_free 127.0.0.1)
echo
echo "== rivulet create (a private torrent whose only tracker is the local opentracker)"
"$rivulet" create "$payload" -o "$work/sample.torrent" --private \
    -t "http://127.0.0.1:$tp/announce" --comment "rivulet demo"
echo
echo "== rivulet info"
"$rivulet" info "$work/sample.torrent"

if ! command -v opentracker > /dev/null; then
    echo "demo: opentracker is missing (scripts/deps.sh installs it); stopping here"
    exit 0
fi
echo
echo "== opentracker on 127.0.0.1:$tp, a rivulet seeder on 127.0.0.2, a rivulet downloader"
hash=$("$rivulet" info --json "$work/sample.torrent" | sed -n 's/.*"info_hash":"\([0-9a-f]*\)".*/\1/p')
echo "$hash" > "$work/whitelist"
chmod 644 "$work/whitelist"
opentracker -i 127.0.0.1 -p "$tp" -P "$tp" -w "$work/whitelist" > "$work/opentracker.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$tp") 2>/dev/null && break; sleep 0.1; done

sp=$(port_free 127.0.0.2)
"$rivulet" seed "$work/sample.torrent" -d "$work" --listen 127.0.0.2 --port "$sp" -q \
    --state-dir "$work/seeder-state" &
pids+=($!)
sleep 1.5 # the seeder checks its data, then announces
dp=$(port_free 127.0.0.3)
start=$(date +%s%N)
"$rivulet" download "$work/sample.torrent" -o "$work/downloaded" --listen 127.0.0.3 --port "$dp" \
    --seed-time 0 --state-dir "$work/downloader-state"
end=$(date +%s%N)
if diff -r "$payload" "$work/downloaded/sample album" > /dev/null; then
    awk -v b="$(du -sb "$payload" | cut -f1)" -v ns="$((end - start))" \
        'BEGIN { printf "demo done: %.0f MiB downloaded byte-identical in %.2f s (%.0f MiB/s)\n", b / 1048576, ns / 1e9, b / 1048576 / (ns / 1e9) }'
else
    echo "demo FAILED: the downloaded files differ from the original" >&2
    exit 1
fi
