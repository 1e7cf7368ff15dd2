#!/usr/bin/env python3
"""A hostile tracker for tests: HTTP on TCP IP:PORT and a silent UDP tracker on the same port.
The first part of the HTTP path picks the misbehaviour:

  /silent/announce        reads the request, then sends nothing (the connection stays open)
  /dribble/MS/announce    a valid reply (the --peer addresses, compact) one byte every MS ms
  /loop/announce          302 to itself, forever (each hop a new request)
  /flood/announce         a valid reply of 100,000 compact peers (600,000 bytes) at 127.10.x.y/127.11.x.y
                          port 9, where nothing listens; the --peer addresses come first
  /endless/announce       200 with no length, then bytes as fast as they go, until the
                          client hangs up
  /eager/announce         a valid reply with no peers that asks for the next announce in 1 s
                          ('interval' and 'min interval' 1); logged as "eager EVENT"
  /headers/announce       200, then header lines without end, as fast as they go
  /html/announce          200 with an HTML page (newlines, ESC) instead of bencode
  /status/announce        503 with an HTML body

UDP (--udp MODE):
  silent   (default) every datagram is read and none answered, as silent_udp.py
  garbage  each datagram is answered with 50 junk datagrams (0 to 3000 random bytes; half the
           time 8 to 15 bytes that start with the request's action and transaction id) and a connect reply
           with a wrong transaction id, never a usable reply
  error    an error reply (action 3) of 3000 bytes of text full of ESC, BEL, CR and LF
  flood    a proper connect reply, then an announce reply in one 65,507-byte datagram:
           10,914 peers at 127.10.x.y port 9, the --peer addresses first
Each HTTP request and each datagram appends a line to LOG: "MODE" (or "udp"), and
"endless-bytes N" when an endless reply stops. Plain Python 3; stops on SIGTERM.

usage: hostile_tracker.py IP PORT LOG [--peer IP:PORT]... [--udp MODE]
"""
import argparse
import os
import random
import signal
import socket
import socketserver
import struct
import sys
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("ip")
ap.add_argument("port", type=int)
ap.add_argument("log")
ap.add_argument("--peer", action="append", default=[])
ap.add_argument("--udp", choices=["silent", "garbage", "error", "flood"], default="silent")
a = ap.parse_args()

lock = threading.Lock()
stop = threading.Event()


def log(line):
    with lock, open(a.log, "a") as f:
        f.write(line + "\n")


def compact(peers):
    out = b""
    for p in peers:
        host, port = p.rsplit(":", 1)
        out += socket.inet_aton(host) + struct.pack(">H", int(port))
    return out


GOOD = compact(a.peer)
FLOOD = GOOD + b"".join(bytes([127, 10 + (i >> 16), (i >> 8) & 255, i & 255]) + struct.pack(">H", 9)
                        for i in range(100000 - len(a.peer)))


def reply(body, status="200 OK", extra=""):
    return (("HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s"
             "Connection: close\r\n\r\n") % (status, len(body), extra)).encode() + body


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        s.settimeout(0.5)
        req = b""
        while b"\r\n\r\n" not in req and len(req) < 65536 and not stop.is_set():
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                continue
            if not chunk:
                return
            req += chunk
        try:
            target = req.split(b" ", 2)[1].decode("latin-1")
        except IndexError:
            return
        parts = target.split("?", 1)[0].strip("/").split("/")
        mode = parts[0]
        if mode == "eager":
            q = target.split("?", 1)[1] if "?" in target else ""
            ev = [p[6:] for p in q.split("&") if p.startswith("event=")]
            log("eager " + (ev[0] if ev else "none"))
        else:
            log(mode)
        try:
            if mode == "silent":
                # hold the connection, answer nothing, until the client gives up
                while not stop.is_set():
                    try:
                        if not s.recv(4096):
                            return
                    except socket.timeout:
                        continue
            elif mode == "dribble":
                delay = int(parts[1]) / 1000.0
                msg = reply(b"d8:intervali1800e5:peers%d:%se" % (len(GOOD), GOOD))
                for i in range(len(msg)):
                    if stop.is_set():
                        return
                    s.sendall(msg[i:i + 1])
                    time.sleep(delay)
            elif mode == "loop":
                loc = "http://%s:%d%s" % (a.ip, a.port, target)
                s.sendall(reply(b"", "302 Found", "Location: %s\r\n" % loc))
            elif mode == "flood":
                s.sendall(reply(b"d8:intervali1800e5:peers%d:%se" % (len(FLOOD), FLOOD)))
            elif mode == "eager":
                s.sendall(reply(b"d8:intervali1e12:min intervali1e5:peers0:e"))
            elif mode == "headers":
                s.sendall(b"HTTP/1.1 200 OK\r\n")
                line = b"X-Hostile: " + b"y" * 1000 + b"\r\n"
                sent = 0
                try:
                    while not stop.is_set():
                        s.sendall(line * 64)
                        sent += 64 * len(line)
                finally:
                    log("headers-bytes %d" % sent)
            elif mode == "html":
                s.sendall(reply(b"<html>\n<body>\x1b[2J\nrivulet: fake line\n</body></html>\n"))
            elif mode == "status":
                s.sendall(reply(b"<html><body>Service Unavailable\n</body></html>",
                                "503 Service Unavailable"))
            elif mode == "endless":
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
                block = b"d8:intervali1800e5:peers" + b"x" * 65500
                sent = 0
                try:
                    while not stop.is_set():
                        s.sendall(block)
                        sent += len(block)
                finally:
                    log("endless-bytes %d" % sent)
            else:
                s.sendall(reply(b"d14:failure reason12:unknown modee"))
        except OSError:
            pass


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def udp_answer(u, pkt, peer):
    if len(pkt) < 16:
        return
    action, trans = struct.unpack(">II", pkt[8:16])
    if a.udp == "garbage":
        rng = random.Random(trans)
        for _ in range(50):
            junk = os.urandom(rng.randrange(0, 3000))
            if rng.random() < 0.5 and len(junk) >= 8:
                # the right action and transaction id, but too short to be a reply (a connect
                # reply needs 16 bytes, an announce reply 20): with any longer tail the junk
                # would be a valid reply with a random connection id or random peers
                junk = struct.pack(">II", action, trans) + junk[8:8 + rng.randrange(0, 8)]
            u.sendto(junk, peer)
        u.sendto(struct.pack(">IIQ", 0, trans ^ 1, 0x1234), peer)
    elif a.udp == "error":
        text = ("\x1b[2J\x1b]0;owned\x07\r\nrivulet: fake line " * 80)[:3000].encode()
        u.sendto(struct.pack(">II", 3, trans) + text, peer)
    elif a.udp == "flood":
        if action == 0:
            u.sendto(struct.pack(">IIQ", 0, trans, 0x1234), peer)
        elif action == 1:
            peers = (GOOD + FLOOD[len(GOOD):])[:(65507 - 20) // 6 * 6]
            u.sendto(struct.pack(">IIIII", 1, trans, 1800, 0, 1) + peers, peer)


def udp_silent():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((a.ip, a.port))
    u.settimeout(0.5)
    while not stop.is_set():
        try:
            pkt, peer = u.recvfrom(4096)
        except socket.timeout:
            continue
        log("udp")
        if a.udp != "silent":
            udp_answer(u, pkt, peer)


srv = Server((a.ip, a.port), Handler)
threading.Thread(target=udp_silent, daemon=True).start()


def on_term(*_):
    stop.set()
    threading.Thread(target=srv.shutdown, daemon=True).start()


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)
srv.serve_forever(poll_interval=0.2)
sys.exit(0)
