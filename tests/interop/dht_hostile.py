#!/usr/bin/python3
"""Hostile KRPC against a DHT node on loopback; prints one line per case, exits 1 on a failure.

usage: dht_hostile.py NODE_IP NODE_PORT

Cases (each from its own 127.0.4.x source address):
  garbage    truncated bencode, wrong types, a list, a huge 'nodes' string, a long tid: the node
             answers none of them with a crash (it still answers a ping afterwards);
  flood      1000 pings from one source as fast as possible: far fewer than 1000 answers (the
             per-source rate limit), and a ping from another source is still answered;
  token      a get_peers token obtained from one address, used by another in announce_peer:
             refused with error 203, and a later get_peers returns no such peer.
"""
import os
import socket
import sys
import time

import libtorrent as lt

NODE = (sys.argv[1], int(sys.argv[2]))
ID = os.urandom(20)
IH = os.urandom(20)
failed = False


def sock(ip):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, 0))
    s.settimeout(1.0)
    return s


def q(method, args, tid=b"aa"):
    a = {b"id": ID}
    a.update(args)
    return lt.bencode({b"t": tid, b"y": b"q", b"q": method, b"a": a})


def ask(s, pkt, timeout=1.0):
    s.settimeout(timeout)
    s.sendto(pkt, NODE)
    try:
        data, _ = s.recvfrom(65536)
        return lt.bdecode(data)
    except socket.timeout:
        return None


def report(ok, what):
    global failed
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    failed = failed or not ok


# garbage
s = sock("127.0.4.1")
junk = [b"", b"d", b"d1:t2:aa1:y1:q", b"li1ei2ee", b"i42e", b"d1:t2:aa1:y1:qe",
        b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe",
        b"d1:ad2:idi5ee1:q4:ping1:t2:aa1:y1:qe",
        b"d1:rd2:id20:" + b"x" * 20 + b"5:nodes" + str(26 * 2000).encode() + b":" + b"n" * 26 * 2000 + b"e1:t2:zz1:y1:re",
        b"d1:rd2:id20:" + b"x" * 20 + b"5:nodes5:abcdee1:t2:zz1:y1:re",
        q(b"ping", {}, tid=b"t" * 40), q(b"get_peers", {b"info_hash": b"short"}),
        q(b"announce_peer", {b"info_hash": IH, b"port": 70000, b"token": b"x"}),
        os.urandom(300)]
for j in junk:
    s.sendto(j, NODE)
time.sleep(0.3)
r = ask(s, q(b"ping", {}))
report(r is not None and r.get(b"y") == b"r", f"garbage: {len(junk)} malformed packets, then a ping is answered")

# flood
f = sock("127.0.4.2")
f.setblocking(False)
for i in range(1000):
    try:
        f.sendto(q(b"ping", {}, tid=i.to_bytes(2, "big")), NODE)
    except BlockingIOError:
        time.sleep(0.001)
time.sleep(1.0)
answers = 0
while True:
    try:
        f.recvfrom(65536)
        answers += 1
    except (BlockingIOError, socket.timeout):
        break
report(answers < 200, f"flood: 1000 pings from one source, {answers} answered (rate limit)")
o = sock("127.0.4.3")
r = ask(o, q(b"ping", {}))
report(r is not None and r.get(b"y") == b"r", "flood: another source is still answered")

# token from another address
t1 = sock("127.0.4.4")
r = ask(t1, q(b"get_peers", {b"info_hash": IH}))
tok = r.get(b"r", {}).get(b"token") if r else None
report(tok is not None, "token: get_peers gives a token")
t2 = sock("127.0.4.5")
r = ask(t2, q(b"announce_peer", {b"info_hash": IH, b"port": 6881, b"token": tok or b"x"}))
report(r is not None and r.get(b"y") == b"e" and r.get(b"e", [0])[0] == 203,
       f"token: another address's announce_peer is refused ({r.get(b'e') if r else None})")
r = ask(t1, q(b"get_peers", {b"info_hash": IH}))
report(r is not None and not r.get(b"r", {}).get(b"values"), "token: no peer was stored")
r = ask(t1, q(b"announce_peer", {b"info_hash": IH, b"port": 6881, b"token": tok or b"x"}))
report(r is not None and r.get(b"y") == b"r", "token: the address it was given to may announce")
sys.exit(1 if failed else 0)
