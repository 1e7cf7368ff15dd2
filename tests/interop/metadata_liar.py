#!/usr/bin/python3
"""A peer that lies about a torrent's metadata (BEP 9), for magnet-link tests on loopback.

usage: metadata_liar.py IP PORT TORRENT MODE READY_FILE

Accepts connections on IP:PORT, answers the handshake for TORRENT's info-hash with the BEP 10
bit set, and serves ut_metadata requests according to MODE:
  wrongbytes  the right metadata_size, but every block has flipped bytes
  wrongsize   metadata_size 5000 bytes too large, and random blocks of that size
  oversize    metadata_size of 100 MiB (over any sane cap); requests get no answer
It never has any piece. Writes READY_FILE once listening; runs until killed.
"""
import hashlib
import os
import socket
import struct
import sys
import threading

import libtorrent as lt


def bencode(v):
    return lt.bencode(v)


def serve(conn, info_hash, info, mode):
    try:
        hs = b""
        while len(hs) < 68:
            d = conn.recv(68 - len(hs))
            if not d:
                return
            hs += d
        if hs[28:48] != info_hash:
            return
        reserved = bytearray(8)
        reserved[5] |= 0x10
        conn.sendall(b"\x13BitTorrent protocol" + bytes(reserved) + info_hash +
                     b"-XX0001-" + os.urandom(12))
        size = len(info)
        data = info
        if mode == "wrongbytes":
            data = bytes(b ^ 0x5a for b in info)
        elif mode == "wrongsize":
            size = len(info) + 5000
            data = os.urandom(size)
        elif mode == "oversize":
            size = 100 << 20
        eh = bencode({b"m": {b"ut_metadata": 3}, b"metadata_size": size, b"v": b"liar 1.0"})
        conn.sendall(struct.pack(">IBB", 2 + len(eh), 20, 0) + eh)
        their_id = 0
        buf = b""
        while True:
            d = conn.recv(65536)
            if not d:
                return
            buf += d
            while len(buf) >= 4:
                n = struct.unpack(">I", buf[:4])[0]
                if len(buf) < 4 + n:
                    break
                msg, buf = buf[4:4 + n], buf[4 + n:]
                if n < 2 or msg[0] != 20:
                    continue
                if msg[1] == 0:
                    m = lt.bdecode(msg[2:]).get(b"m", {})
                    their_id = m.get(b"ut_metadata", 0)
                    continue
                if msg[1] != 3 or their_id == 0 or mode == "oversize":
                    continue
                req = lt.bdecode(msg[2:])
                if req.get(b"msg_type") != 0:
                    continue
                piece = req[b"piece"]
                block = data[piece * 16384:(piece + 1) * 16384]
                body = bencode({b"msg_type": 1, b"piece": piece, b"total_size": size}) + block
                conn.sendall(struct.pack(">IBB", 2 + len(body), 20, their_id) + body)
    except OSError:
        pass
    finally:
        conn.close()


def main():
    ip, port, torrent, mode, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    raw = open(torrent, "rb").read()
    ti = lt.torrent_info(lt.bdecode(raw))
    info = ti.info_section()
    info_hash = hashlib.sha1(info).digest()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(16)
    with open(ready, "w") as f:
        f.write("ready\n")
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, info_hash, info, mode), daemon=True).start()


if __name__ == "__main__":
    main()
