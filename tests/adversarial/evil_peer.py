#!/usr/bin/env python3
"""A scriptable misbehaving BitTorrent peer, for the adversarial tests.

usage: evil_peer.py MODE TORRENT DATAFILE IP PORT READYFILE [--target IP:PORT] [--count N]

It holds the whole single-file torrent TORRENT (its data in DATAFILE) and, depending on MODE,
either listens on IP:PORT as a seeder that rivulet dials (seeder modes), or dials --target from
IP as a leecher (leecher modes, rivulet seeding). It plays by the rules (BEP 3) until the moment
MODE names, then does exactly that one wrong thing, and logs to stdout what it did. READYFILE is
written once it listens (seeder modes) or once it is connected (leecher modes). It exits when
rivulet closes the connection, or after --seconds (default 60).

Seeder modes (rivulet downloads from us):
  len_max          a length prefix of 2^32-1 after the handshake
  oversized        a piece message of 2 MiB + 9 bytes (longer than any legal message)
  bitfield_len     a bitfield three bytes too long
  bitfield_spare   a bitfield with the spare bits of the last byte set
  have_past_end    a valid bitfield, then `have` for the piece after the last one
  unrequested      unchoke, then push 40 blocks nobody asked for
  wrong_offset     answer every request with the bytes half a block away from those asked
  past_end         answer every request with a block that runs past the piece's end
  wrong_length     answer every request with half the bytes asked for
  bad_infohash     a handshake carrying another torrent's info-hash
  bad_protocol     a handshake whose protocol string is not "BitTorrent protocol"
  slowloris        the handshake dribbled one byte per second
  no_handshake     read everything, send nothing
  corrupt          serve every block with its bytes flipped
Leecher modes (rivulet seeds; we dial --target):
  req_past_end     request piece N (the torrent has N pieces)
  req_zero         request a block of 0 bytes
  req_1mib         request a block of 1 MiB
  req_flood        5000 requests in one burst
  never_reads      a small receive window, a request for every block, and never a byte read
                   (rivulet's send buffer must stay bounded and the peer must go)
  same_id          --count connections, all with the same peer id
"""
import argparse
import hashlib
import os
import socket
import struct
import sys
import threading
import time

PSTR = b"BitTorrent protocol"
BLOCK = 16384
SEEDER_MODES = {"len_max", "oversized", "bitfield_len", "bitfield_spare", "have_past_end",
                "unrequested", "wrong_offset", "past_end", "wrong_length", "bad_infohash",
                "bad_protocol", "slowloris", "no_handshake", "corrupt"}
LEECHER_MODES = {"req_past_end", "req_zero", "req_1mib", "req_flood", "never_reads", "same_id"}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def bdecode(data, i=0):
    """Returns (value, end). Enough of bencode for a .torrent; raises on bad input."""
    c = data[i:i + 1]
    if c == b"i":
        j = data.index(b"e", i)
        return int(data[i + 1:j]), j + 1
    if c == b"l":
        i += 1
        out = []
        while data[i:i + 1] != b"e":
            v, i = bdecode(data, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        i += 1
        out = {}
        while data[i:i + 1] != b"e":
            k, i = bdecode(data, i)
            start = i
            v, i = bdecode(data, i)
            out[k] = v
            if k == b"info":
                out[b"__info_span"] = (start, i)
        return out, i + 1
    j = data.index(b":", i)
    n = int(data[i:j])
    return data[j + 1:j + 1 + n], j + 1 + n


class Torrent:
    def __init__(self, path, datafile):
        raw = open(path, "rb").read()
        meta, _ = bdecode(raw)
        a, b = meta[b"__info_span"]
        self.info_hash = hashlib.sha1(raw[a:b]).digest()
        info = meta[b"info"]
        self.piece_len = info[b"piece length"]
        self.total = info[b"length"]
        self.npieces = len(info[b"pieces"]) // 20
        self.data = open(datafile, "rb").read()
        assert len(self.data) == self.total, "DATAFILE is not the torrent's data"

    def piece_size(self, i):
        return min(self.piece_len, self.total - i * self.piece_len)

    def block(self, i, begin, length):
        off = i * self.piece_len + begin
        return self.data[off:off + length]

    def bitfield(self):
        bits = bytearray((self.npieces + 7) // 8)
        for i in range(self.npieces):
            bits[i // 8] |= 0x80 >> (i % 8)
        return bits


def msg(mid, payload=b""):
    return struct.pack(">IB", 1 + len(payload), mid) + payload


def handshake(ih, pid, pstr=PSTR):
    return bytes([len(pstr)]) + pstr + bytes(8) + ih + pid


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        c = s.recv(n - len(buf))
        if not c:
            raise EOFError("peer closed the connection")
        buf += c
    return buf


def read_msg(s):
    (n,) = struct.unpack(">I", recv_exact(s, 4))
    if n == 0:
        return None, b""
    body = recv_exact(s, n)
    return body[0], body[1:]


def wait_closed(s, seconds):
    """Reads and drops whatever comes until the other side closes; True if it did."""
    s.settimeout(seconds)
    try:
        while s.recv(65536):
            pass
        return True
    except socket.timeout:
        return False
    except OSError:  # a reset
        return True


def peer_id(tag):
    return (b"-EV0001-" + tag.encode() + os.urandom(12))[:20]


# ---- seeder side ----

def serve(conn, tor, mode):
    conn.settimeout(30)
    try:
        hs = recv_exact(conn, 68)
    except (EOFError, OSError) as e:
        log("no handshake from rivulet:", e)
        return
    if hs[1:20] != PSTR or hs[28:48] != tor.info_hash:
        log("rivulet sent a handshake we did not expect:", hs[:48].hex())
        return
    pid = peer_id("seed")
    if mode == "bad_infohash":
        conn.sendall(handshake(hashlib.sha1(b"another torrent").digest(), pid))
        log("sent a handshake with another info-hash")
        log("closed by rivulet" if wait_closed(conn, 20) else "rivulet kept the connection")
        return
    if mode == "bad_protocol":
        conn.sendall(handshake(tor.info_hash, pid, b"BitTorrent protocoX"))
        log("sent a handshake with protocol string 'BitTorrent protocoX'")
        log("closed by rivulet" if wait_closed(conn, 20) else "rivulet kept the connection")
        return
    if mode == "no_handshake":
        log("sending nothing")
        t0 = time.time()
        closed = wait_closed(conn, 40)
        log("closed by rivulet after %.1f s" % (time.time() - t0) if closed
            else "rivulet kept the connection")
        return
    if mode == "slowloris":
        t0 = time.time()
        try:
            for i, byte in enumerate(handshake(tor.info_hash, pid)):
                conn.sendall(bytes([byte]))
                time.sleep(1)
                if i == 0:
                    log("dribbling the handshake, one byte a second")
        except OSError as e:
            log("closed by rivulet after %.1f s (%s)" % (time.time() - t0, e))
            return
        log("the whole handshake went out in %.1f s" % (time.time() - t0))
        log("closed by rivulet" if wait_closed(conn, 20) else "rivulet kept the connection")
        return
    conn.sendall(handshake(tor.info_hash, pid))
    bits = tor.bitfield()
    if mode == "bitfield_len":
        bits += b"\xff\xff\xff"
        log("sent a bitfield of %d bytes (%d expected)" % (len(bits), len(bits) - 3))
    elif mode == "bitfield_spare":
        spare = 8 * len(bits) - tor.npieces
        assert spare > 0, "the torrent's piece count must not be a multiple of 8"
        bits[-1] |= (1 << spare) - 1
        log("sent a bitfield with %d spare bits set" % spare)
    conn.sendall(msg(5, bytes(bits)))
    if mode == "have_past_end":
        conn.sendall(msg(4, struct.pack(">I", tor.npieces)))
        log("sent have %d (the torrent has %d pieces)" % (tor.npieces, tor.npieces))
    elif mode == "len_max":
        conn.sendall(struct.pack(">I", 0xFFFFFFFF) + b"\x07" + bytes(1000))
        log("sent a length prefix of 2^32-1")
    elif mode == "oversized":
        body = struct.pack(">BII", 7, 0, 0) + bytes(2 << 20)
        try:
            conn.sendall(struct.pack(">I", len(body)) + body)
            log("sent a %d-byte piece message" % len(body))
        except OSError as e:
            log("rivulet closed while we sent a %d-byte message (%s)" % (len(body), e))
            return
    try:
        conn.sendall(msg(1))  # unchoke
    except OSError as e:
        log("closed by rivulet: %s" % e)
        return
    if mode == "unrequested":
        for k in range(40):
            i, begin = k % tor.npieces, 0
            conn.sendall(msg(7, struct.pack(">II", i, begin) + tor.block(i, begin, BLOCK)))
        log("pushed 40 blocks nobody asked for")
    served = 0
    try:
        while True:
            mid, payload = read_msg(conn)
            if mid != 6 or len(payload) != 12:
                continue
            i, begin, length = struct.unpack(">III", payload)
            data = tor.block(i, begin, length)
            if mode == "wrong_offset":
                # half a block away, inside the piece: an offset nobody asked for
                begin = begin + BLOCK // 2 if begin + BLOCK // 2 + length <= tor.piece_size(i) \
                    else begin - BLOCK // 2
                data = tor.block(i, begin, length)
            elif mode == "past_end":
                begin = tor.piece_size(i) - length // 2
                data = bytes(length)
            elif mode == "wrong_length":
                data = data[:length // 2]
            elif mode == "corrupt":
                data = bytes(b ^ 0x5A for b in data)
            conn.sendall(msg(7, struct.pack(">II", i, begin) + data))
            served += 1
            if served == 1:
                log("answered request (%d, %d, %d) in mode %s" % (i, begin, length, mode))
    except (EOFError, OSError) as e:
        log("closed by rivulet after %d blocks: %s" % (served, e))


def run_seeder(args, tor):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.ip, args.port))
    srv.listen(16)
    open(args.ready, "w").write("ready\n")
    log("listening on %s:%d as a %s seeder" % (args.ip, args.port, args.mode))
    srv.settimeout(args.seconds)
    threads = []
    deadline = time.time() + args.seconds
    while time.time() < deadline:
        try:
            conn, addr = srv.accept()
        except socket.timeout:
            break
        log("connection from %s:%d" % addr)
        t = threading.Thread(target=serve, args=(conn, tor, args.mode), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(1)


# ---- leecher side ----

def dial(args, tor, pid, rcvbuf=None):
    host, port = args.target.rsplit(":", 1)
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((args.ip, 0))
    s.settimeout(20)
    s.connect((host, int(port)))
    s.sendall(handshake(tor.info_hash, pid))
    return s


def run_leecher(args, tor):
    mode = args.mode
    if mode == "same_id":
        pid = peer_id("twin")
        socks, kept = [], 0
        for k in range(args.count):
            s = dial(args, tor, pid)
            socks.append(s)
            time.sleep(0.1)
        open(args.ready, "w").write("ready\n")
        log("opened %d connections with peer id %s" % (args.count, pid.hex()))
        for s in socks:  # interested, so an honest connection has a reason to stay
            try:
                s.sendall(msg(5, bytes((tor.npieces + 7) // 8)) + msg(2))
            except OSError:
                pass
        time.sleep(1)
        for s in socks:
            s.settimeout(0.5)
            try:
                alive = True
                while True:
                    c = s.recv(65536)
                    if not c:
                        alive = False
                        break
            except socket.timeout:
                pass
            except OSError:
                alive = False
            kept += alive
            if alive:
                s.sendall(bytes(4))
        log("rivulet kept %d of %d connections" % (kept, args.count))
        for s in socks:
            s.close()
        return
    s = dial(args, tor, peer_id("leech"), rcvbuf=4096 if mode == "never_reads" else None)
    hs = recv_exact(s, 68)
    if hs[28:48] != tor.info_hash:
        log("rivulet answered with another info-hash")
        return
    open(args.ready, "w").write("ready\n")
    s.sendall(msg(5, bytes((tor.npieces + 7) // 8)))  # we have nothing
    s.sendall(msg(2))  # interested
    if mode != "never_reads":
        # wait for the unchoke, so the requests are ones rivulet would otherwise serve
        s.settimeout(20)
        while True:
            mid, _ = read_msg(s)
            if mid == 1:
                break
    if mode == "req_past_end":
        s.sendall(msg(6, struct.pack(">III", tor.npieces, 0, BLOCK)))
        log("requested piece %d (the torrent has %d)" % (tor.npieces, tor.npieces))
    elif mode == "req_zero":
        s.sendall(msg(6, struct.pack(">III", 0, 0, 0)))
        log("requested a block of 0 bytes")
    elif mode == "req_1mib":
        s.sendall(msg(6, struct.pack(">III", 0, 0, 1 << 20)))
        log("requested a block of 1 MiB")
    elif mode == "req_flood":
        reqs = b"".join(msg(6, struct.pack(">III", k % tor.npieces,
                                            (k // tor.npieces) % (tor.piece_size(k % tor.npieces) // BLOCK) * BLOCK,
                                            BLOCK))
                        for k in range(5000))
        s.sendall(reqs)
        log("sent 5000 requests in one burst")
    elif mode == "never_reads":
        reqs = b"".join(msg(6, struct.pack(">III", i, b, min(BLOCK, tor.piece_size(i) - b)))
                        for i in range(tor.npieces) for b in range(0, tor.piece_size(i), BLOCK))
        s.sendall(reqs)
        log("requested all %d bytes, reading nothing" % tor.total)
        # A keep-alive every half second: once rivulet gives up on us and closes (with our
        # requests and its unsent blocks behind), a send fails with a reset.
        t0 = time.time()
        closed = False
        while time.time() - t0 < args.seconds:
            try:
                s.send(bytes(4))
            except OSError:
                closed = True
                break
            time.sleep(0.5)
        log("%s after %.1f s" % ("closed by rivulet" if closed else "still open",
                                 time.time() - t0))
        return
    log("closed by rivulet" if wait_closed(s, 20) else "rivulet kept the connection")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=sorted(SEEDER_MODES | LEECHER_MODES))
    ap.add_argument("torrent")
    ap.add_argument("datafile")
    ap.add_argument("ip")
    ap.add_argument("port", type=int)
    ap.add_argument("ready")
    ap.add_argument("--target")
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=60)
    args = ap.parse_args()
    tor = Torrent(args.torrent, args.datafile)
    if args.mode in SEEDER_MODES:
        run_seeder(args, tor)
    else:
        if not args.target:
            sys.exit("leecher modes need --target IP:PORT")
        run_leecher(args, tor)


if __name__ == "__main__":
    main()
