#!/usr/bin/env bash
# make demo: what rivulet can do today, on this machine. Makes a small sample payload (several
# files), turns it into a torrent with `rivulet create`, and describes it with `rivulet info`.
# Later steps of the roadmap turn this into a real download between a seeder and a leecher.
set -euo pipefail
rivulet=${1:-build/rivulet}
rivulet=$(cd "$(dirname "$rivulet")" && pwd)/$(basename "$rivulet")

work=$(mktemp -d "${TMPDIR:-/tmp}/rivulet-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

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
echo "demo done: the torrent above describes the sample payload; downloads arrive with the next issues."
