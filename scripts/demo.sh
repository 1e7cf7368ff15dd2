#!/usr/bin/env bash
# make demo: what rivulet can do today, on this machine. Makes a sample payload (several files),
# turns it into a torrent with `rivulet create`, describes it with `rivulet info`, then
# downloads it with `rivulet download` from a real libtorrent seeder on 127.0.0.2 and checks the
# result byte for byte. Everything stays on loopback and is cleaned up at the end.
set -euo pipefail
rivulet=${1:-build/rivulet}
rivulet=$(cd "$(dirname "$rivulet")" && pwd)/$(basename "$rivulet")

here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/rivulet-demo.XXXXXX")
seeder=""
cleanup() {
    if [ -n "$seeder" ]; then kill "$seeder" 2>/dev/null || true; wait "$seeder" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

payload="$work/sample album"
mkdir -p "$payload/disc 1" "$payload/disc 2"
echo "== making a sample payload in $payload"
head -c $((24 << 20)) /dev/urandom > "$payload/disc 1/track 01.flac"
head -c $((17 << 20 | 12345)) /dev/urandom > "$payload/disc 1/track 02.flac"
head -c $((9 << 20 | 777)) /dev/urandom > "$payload/disc 2/track 01.flac"
printf 'A sample made by make demo.\n' > "$payload/README.txt"
: > "$payload/empty.cue"

echo "== rivulet create"
"$rivulet" create "$payload" -o "$work/sample.torrent" \
    -t http://127.0.0.1:6969/announce -t udp://127.0.0.1:6969 \
    --comment "rivulet demo" --web-seed http://127.0.0.1:8080/files/

echo
echo "== rivulet info"
"$rivulet" info "$work/sample.torrent"

echo
echo "== rivulet info --json (first 300 bytes)"
"$rivulet" info --json "$work/sample.torrent" | head -c 300
echo " ..."
echo
hash=$("$rivulet" info --json "$work/sample.torrent" | sed -n 's/.*"info_hash":"\([0-9a-f]*\)".*/\1/p')
magnet="magnet:?xt=urn:btih:$hash&dn=sample%20album&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce"
echo "== rivulet info on the magnet link $magnet"
"$rivulet" info "$magnet"
echo
if ! /usr/bin/python3 -c 'import libtorrent' 2>/dev/null; then
    echo "demo: python3-libtorrent is missing, so there is no seeder to download from (run scripts/deps.sh)"
    exit 0
fi
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.2", 0)); print(s.getsockname()[1])')
echo "== a libtorrent seeder on 127.0.0.2:$port, and rivulet downloading from it"
/usr/bin/python3 "$here/tests/interop/lt_seeder.py" "$work/sample.torrent" "$work" 127.0.0.2 "$port" \
    "$work/seeder.ready" 2> "$work/seeder.log" &
seeder=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.2/$port") 2>/dev/null && break
    sleep 0.1
done
"$rivulet" download --seed-time 0 "$work/sample.torrent" -o "$work/downloaded" --peer "127.0.0.2:$port" --no-trackers
if diff -r "$payload" "$work/downloaded/sample album" > /dev/null; then
    echo "demo done: the download is byte-identical to the original"
else
    echo "demo FAILED: the downloaded files differ from the original" >&2
    exit 1
fi
