#!/usr/bin/env bash
# `rivulet trackers` over HTTPS with certificate checking, against a real opentracker behind a
# TLS front (tls_proxy.py, Python's ssl module) on 127.0.0.1. A throwaway CA made here with the
# openssl CLI signs the server's certificate (IP:127.0.0.1, DNS:localhost):
#   --ca-file CA.pem          the announce and the scrape succeed and return a known peer;
#   --ca-file OTHER-CA.pem    refused, and the error names the certificate;
#   no --ca-file              refused: the system's store does not trust the throwaway CA;
#   a certificate for another name (signed by the right CA)  refused, naming the certificate.
#
# usage: tests/interop/tracker_https.sh path/to/rivulet
set -euo pipefail

RV=${1:?usage: $0 path/to/rivulet}
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3

command -v opentracker >/dev/null || { echo "SKIP: opentracker not installed"; exit 77; }
command -v openssl >/dev/null || { echo "SKIP: openssl CLI not installed"; exit 77; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-https.XXXXXX")
chmod 755 "$WORK" # opentracker drops privileges and must still read the whitelist
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

. "$HERE/lib.sh" # ok, bad and their counts, free_port, wait_file, now_ms

jq_py() { # json file, python expression over d; prints the result
    $PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# ---- certificates: two unrelated CAs, a server cert for 127.0.0.1/localhost, one for another name
make_ca() { # name
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -keyout "$1.key" -out "$1.pem" -subj "/CN=rivulet test CA $1" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
make_leaf() { # name, ca, common name, subjectAltName
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$1.key" -out "$1.csr" -subj "/CN=$3" 2>/dev/null
    printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\n%s\n%s\n' "$4" \
        'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days 2 \
        -out "$1.pem" -extfile "$1.ext" 2>/dev/null
}
make_ca ca
make_ca other
make_leaf server ca 127.0.0.1 "IP:127.0.0.1,DNS:localhost"
make_leaf wrong ca wrong.example "DNS:wrong.example"
if openssl verify -CAfile ca.pem server.pem wrong.pem >/dev/null &&
    ! openssl verify -CAfile other.pem server.pem >/dev/null 2>&1; then
    ok "throwaway CAs and certificates made with the openssl CLI"
else
    bad "openssl could not make the test certificates"; exit 1
fi

# ---- opentracker (plain HTTP, whitelist) and two TLS fronts for it
mkdir data
head -c 200000 /dev/urandom > data/payload.bin
# Trackers live outside the info dictionary: every torrent of this payload has this info-hash.
"$RV" create -q data/payload.bin -o probe.torrent -t http://127.0.0.1:1/announce
HASH=$("$RV" info --json probe.torrent | $PY -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')
echo "$HASH" > whitelist
chmod 644 whitelist

# Another test may take the port between free_port and opentracker's bind; opentracker then
# exits, and another port is tried (only a live opentracker of ours is kept in pids).
HP=
for _ in 1 2 3 4 5; do
    port=$(free_port)
    opentracker -i 127.0.0.1 -p "$port" -P "$port" -w "$WORK/whitelist" > opentracker.log 2>&1 &
    ot=$!
    up=0
    for _ in $(seq 50); do
        kill -0 "$ot" 2>/dev/null || break
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
        sleep 0.1
    done
    sleep 0.2
    if [ "$up" = 1 ] && kill -0 "$ot" 2>/dev/null; then
        pids+=("$ot")
        HP=$port
        break
    fi
    kill "$ot" 2>/dev/null || true
    wait "$ot" 2>/dev/null || true
done
[ -n "$HP" ] || { bad "opentracker did not start"; cat opentracker.log; exit 1; }

$PY "$HERE/tls_proxy.py" server.pem server.key "http://127.0.0.1:$HP" good.port 2> good-proxy.log &
pids+=($!)
$PY "$HERE/tls_proxy.py" wrong.pem wrong.key "http://127.0.0.1:$HP" wrong.port 2> wrong-proxy.log &
pids+=($!)
wait_file good.port 10 && wait_file wrong.port 10 || { bad "TLS fronts did not start"; exit 1; }
GOOD=$(cat good.port)
WRONG=$(cat wrong.port)

"$RV" create -q data/payload.bin -o good.torrent \
    -t "https://127.0.0.1:$GOOD/announce" -t "https://localhost:$GOOD/announce"
"$RV" create -q data/payload.bin -o wrong.torrent -t "https://127.0.0.1:$WRONG/announce"
for t in good wrong; do
    h=$("$RV" info --json $t.torrent | $PY -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')
    [ "$h" = "$HASH" ] || { bad "$t.torrent has info-hash $h, not $HASH"; exit 1; }
done
ok "opentracker on 127.0.0.1:$HP, TLS fronts on :$GOOD (127.0.0.1, localhost) and :$WRONG (wrong.example)"

# A seeder the tracker knows: one plain-HTTP announce from 127.0.0.2, so the address the
# tracker records (the connection's source) is distinguishable from rivulet's 127.0.0.1.
# opentracker reads its whitelist on a thread of its own after it starts listening, so the
# announce is retried (up to 30 s: under CI load 10 s was once not enough) while the torrent
# is still "not authorized". Every byte is percent-encoded: urlencode's default turns a 0x20
# into '+', which opentracker takes as 0x2b, so one info-hash in about 13 (those with a 0x20
# byte) stayed "not authorized" for all 30 s.
SEED_PORT=$(free_port)
if $PY - "$HP" "$HASH" "$SEED_PORT" <<'PY'
import http.client, sys, time, urllib.parse
port, ih, seed = int(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[3]
q = urllib.parse.urlencode({"info_hash": ih, "peer_id": b"-XX0000-seederseeder", "port": seed,
                            "uploaded": 0, "downloaded": 0, "left": 0, "compact": 1,
                            "event": "started"}, quote_via=urllib.parse.quote)
for _ in range(300):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=("127.0.0.2", 0))
    c.request("GET", "/announce?" + q)
    body = c.getresponse().read()
    c.close()
    if body.startswith(b"d") and b"interval" in body:
        sys.exit(0)
    time.sleep(0.1)
sys.exit("opentracker said %r" % body)
PY
then ok "a seeder at 127.0.0.2:$SEED_PORT announced to opentracker"; else
    bad "seeder announce failed"; cat opentracker.log; exit 1; fi
sleep 0.2 # opentracker makes the new peer visible to other requests asynchronously

run_trackers() { # expected exit code, output json, torrent, extra options...
    local want=$1 out=$2 torrent=$3 rc=0
    shift 3
    timeout 60 "$RV" trackers --json --timeout 15 "$@" "$torrent" > "$out" 2> "${out%.json}.err" || rc=$?
    if grep -q 'Sanitizer' "${out%.json}.err"; then
        bad "rivulet trackers $* $torrent: sanitizer report"
        cat "${out%.json}.err"
    fi
    [ "$rc" -eq "$want" ] || bad "rivulet trackers $* $torrent exited $rc, not $want"
    if ! $PY -c 'import json,sys; json.load(open(sys.argv[1]))' "$out" 2>/dev/null; then
        bad "rivulet trackers $* $torrent (exit $rc) printed no JSON"
        cat "${out%.json}.err"
        return 1
    fi
    return 0
}

# ---- the right CA: both names answer, over TLS, with the seeder; scrape counts it
gets_before=$(grep -c 'GET /announce?' good-proxy.log || true)
if run_trackers 0 good.json good.torrent --ca-file ca.pem; then
    for host in 127.0.0.1 localhost; do
        sel="[t for t in d['trackers'] if t['url'].startswith('https://$host:')][0]"
        if [ "$(jq_py good.json "$sel['ok'] and $sel['error'] is None")" = True ]; then
            ok "https://$host announce verified against the CA and answered"
        else bad "https://$host announce: $(jq_py good.json "$sel['error']")"; fi
        if [ "$(jq_py good.json "'127.0.0.2:$SEED_PORT' in $sel['peer_list']")" = True ]; then
            ok "https://$host returned the seeder 127.0.0.2:$SEED_PORT"
        else bad "https://$host peers: $(jq_py good.json "$sel['peer_list']")"; fi
        if [ "$(jq_py good.json "$sel['interval'] is not None and $sel['interval'] > 0")" = True ]; then
            ok "https://$host interval $(jq_py good.json "$sel['interval']") s"
        else bad "https://$host interval: $(jq_py good.json "$sel['interval']")"; fi
        if [ "$(jq_py good.json "$sel['scrape_ok'] and ($sel['seeders'] or 0) >= 1")" = True ]; then
            ok "https://$host scrape counts $(jq_py good.json "$sel['seeders']") seeder(s)"
        else bad "https://$host scrape: $(jq_py good.json "$sel['scrape_error']")"; fi
    done
fi
gets_after=$(grep -c 'GET /announce?' good-proxy.log || true)
if [ "$gets_after" -ge $((gets_before + 2)) ]; then
    ok "the announces went through the TLS front ($((gets_after - gets_before)) GETs)"
else bad "the TLS front saw $((gets_after - gets_before)) announces"; fi

# ---- every way the certificate can be wrong: refused, and the error says so
refused() { # json, label
    local sel="d['trackers'][0]"
    if [ "$(jq_py "$1" "not $sel['ok'] and 'certificate' in ($sel['error'] or '').lower()")" = True ] &&
        [ "$(jq_py "$1" "$sel['peers'] == 0 and not $sel['scrape_ok']")" = True ]; then
        ok "$2: refused ($(jq_py "$1" "$sel['error']"))"
    else
        bad "$2: ok=$(jq_py "$1" "$sel['ok']") error=$(jq_py "$1" "$sel['error']")"
    fi
}
gets_before=$(grep -c 'GET /' good-proxy.log || true)
run_trackers 5 other.json good.torrent --ca-file other.pem && refused other.json "another CA"
run_trackers 5 system.json good.torrent && refused system.json "system trust store"
gets_after=$(grep -c 'GET /' good-proxy.log || true)
[ "$gets_after" -eq "$gets_before" ] && ok "no request crossed a refused TLS handshake" ||
    bad "$((gets_after - gets_before)) requests reached the tracker through a bad handshake"
run_trackers 5 wrong.json wrong.torrent --ca-file ca.pem && refused wrong.json "certificate for wrong.example"
grep -qiE 'wrong\.example|subject name|host ?name|mismatch' wrong.err wrong.json &&
    ok "the wrong-name error talks about the name" || bad "wrong-name error: $(cat wrong.json)"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
