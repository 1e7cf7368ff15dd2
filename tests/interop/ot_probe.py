#!/usr/bin/python3
"""Ask an HTTP tracker (opentracker on loopback) about a swarm, from a chosen source address.

usage: ot_probe.py peers    ANNOUNCE_URL INFO_HASH_HEX [--from IP]
       ot_probe.py scrape   ANNOUNCE_URL INFO_HASH_HEX
       ot_probe.py announce ANNOUNCE_URL INFO_HASH_HEX --from IP --port N [--left N]
                            [--event started|stopped|completed] [--peer-id S]

peers     prints the IP:PORT of every peer the tracker lists, one a line: it announces as a
          leecher from --from (default 127.0.0.254, an address no test peer uses), port 1, and
          then announces 'stopped' so the probe does not stay in the swarm
scrape    prints "COMPLETE INCOMPLETE" for the torrent
announce  announces on someone's behalf from --from (opentracker records the source address of
          the request, and ignores an ip= parameter): prints the peers it answered
Exit status 1 when the tracker cannot be reached or answers with a failure reason.
"""
import argparse
import http.client
import sys
import urllib.parse

import libtorrent as lt


def request(url, path_query, source):
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=3,
                                   source_address=(source, 0) if source else None)
    try:
        c.request("GET", path_query)
        body = c.getresponse().read()
    finally:
        c.close()
    d = lt.bdecode(body)
    if not isinstance(d, dict):
        raise RuntimeError(f"not a bencoded dictionary: {body[:80]!r}")
    if b"failure reason" in d:
        raise RuntimeError(d[b"failure reason"].decode("utf-8", "replace"))
    return d


def compact_peers(d):
    p = d.get(b"peers", b"")
    out = []
    if isinstance(p, bytes):
        for i in range(0, len(p) - 5, 6):
            out.append("%d.%d.%d.%d:%d" % (p[i], p[i + 1], p[i + 2], p[i + 3],
                                           int.from_bytes(p[i + 4:i + 6], "big")))
    elif isinstance(p, list):
        for e in p:
            out.append(f"{e[b'ip'].decode()}:{e[b'port']}")
    return out


def announce(url, ih, source, port, left, event, peer_id):
    u = urllib.parse.urlsplit(url)
    q = (f"info_hash={urllib.parse.quote_from_bytes(ih)}"
         f"&peer_id={urllib.parse.quote_from_bytes(peer_id)}&port={port}&uploaded=0"
         f"&downloaded=0&left={left}&compact=1&numwant=200")
    if event:
        q += f"&event={event}"
    return request(url, f"{u.path}?{q}", source)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["peers", "scrape", "announce"])
    ap.add_argument("url")
    ap.add_argument("info_hash")
    ap.add_argument("--from", dest="source")
    ap.add_argument("--port", type=int, default=1)
    ap.add_argument("--left", type=int, default=0)
    ap.add_argument("--event")
    ap.add_argument("--peer-id")
    a = ap.parse_args()
    ih = bytes.fromhex(a.info_hash)
    try:
        if a.what == "peers":
            src = a.source or "127.0.0.254"
            pid = b"-PROBE0-" + b"0123456789ab"
            d = announce(a.url, ih, src, 1, 1, "started", pid)
            announce(a.url, ih, src, 1, 1, "stopped", pid)
            for p in compact_peers(d):
                if p != f"{src}:1":
                    print(p)
        elif a.what == "scrape":
            u = urllib.parse.urlsplit(a.url)
            path = u.path.replace("announce", "scrape")
            d = request(a.url, f"{path}?info_hash={urllib.parse.quote_from_bytes(ih)}", None)
            f = d.get(b"files", {}).get(ih, {})
            print(f.get(b"complete", 0), f.get(b"incomplete", 0))
        else:
            if not a.source:
                ap.error("announce needs --from")
            pid = (a.peer_id or "-STANDIN-0123456789a").encode()[:20].ljust(20, b"x")
            for p in compact_peers(announce(a.url, ih, a.source, a.port, a.left, a.event, pid)):
                print(p)
    except Exception as e:  # noqa: BLE001 - any failure is "the tracker did not answer"
        print(f"ot_probe.py: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
