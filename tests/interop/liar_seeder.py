#!/usr/bin/python3
"""A BitTorrent v1 seeder that serves whatever bytes are on disk, without checking them: the
lying peer for tests of hash-failure handling and banning. (libtorrent cannot play this part:
even in seed_mode it hashes each piece before its first upload and stops serving bad ones.)

usage: liar_seeder.py TORRENT SAVE_PATH IP PORT READY_FILE [--stats FILE] [--seconds N]

Listens on IP:PORT (TCP only; it never dials out), checks the handshake's info-hash, announces
every piece with a bitfield, unchokes whoever is interested and answers every request from the
files under SAVE_PATH (padding files read as zeros). No extensions, no fast extension, no
encryption. Writes READY_FILE once listening; runs until SIGTERM/SIGINT or --seconds (600).

At start it hashes the files against the torrent to know which pieces are bad; --stats FILE is
rewritten after every block and at exit with {"connections": N, "blocks": N,
"bad_pieces": [the bad pieces on disk], "bad_pieces_served": [bad pieces it sent a block of]}.
Run it with Debian's /usr/bin/python3 (libtorrent reads the torrent).
"""
import argparse
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

import libtorrent as lt

PSTR = b"\x13BitTorrent protocol"
MAX_BLOCK = 128 * 1024  # BEP 3 suggests 16 KiB; refuse anything absurd


class Torrent:
    def __init__(self, path, save_path):
        ti = lt.torrent_info(path)
        if not ti.info_hashes().has_v1():
            sys.exit("liar_seeder.py: not a v1 torrent")
        self.info_hash = ti.info_hashes().v1.to_bytes()
        self.piece_length = ti.piece_length()
        self.num_pieces = ti.num_pieces()
        self.hashes = [ti.hash_for_piece(i) for i in range(self.num_pieces)]
        fs = ti.files()
        self.total = fs.total_size()
        self.files = []  # (offset, size, path or None for padding)
        for i in range(fs.num_files()):
            pad = bool(fs.file_flags(i) & lt.file_storage.flag_pad_file)
            p = None if pad else os.path.join(save_path, fs.file_path(i))
            self.files.append((fs.file_offset(i), fs.file_size(i), p))

    def piece_size(self, piece):
        return min(self.piece_length, self.total - piece * self.piece_length)

    def read(self, piece, begin, length):
        """The bytes at (piece, begin, length); missing file bytes read as zeros."""
        start = piece * self.piece_length + begin
        end = start + length
        out = bytearray()
        for off, size, path in self.files:
            if off + size <= start or off >= end or size == 0:
                continue
            a = max(start, off)
            b = min(end, off + size)
            chunk = b""
            if path is not None:
                try:
                    with open(path, "rb") as f:
                        f.seek(a - off)
                        chunk = f.read(b - a)
                except OSError:
                    chunk = b""
            out += chunk + b"\0" * (b - a - len(chunk))
        return bytes(out)

    def bad_pieces(self):
        return [i for i in range(self.num_pieces)
                if hashlib.sha1(self.read(i, 0, self.piece_size(i))).digest() != self.hashes[i]]


class Stats:
    def __init__(self, path, bad):
        self.path = path
        self.lock = threading.Lock()
        self.connections = 0
        self.blocks = 0
        self.bad = bad
        self.bad_served = set()

    def write(self):
        if not self.path:
            return
        with self.lock:
            d = {"connections": self.connections, "blocks": self.blocks,
                 "bad_pieces": self.bad, "bad_pieces_served": sorted(self.bad_served)}
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(d, f)
        os.replace(tmp, self.path)


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def serve(conn, tor, stats, peer_id):
    bad = set(stats.bad)
    try:
        conn.settimeout(180)
        hs = recv_exact(conn, 68)
        if hs[:20] != PSTR or hs[28:48] != tor.info_hash:
            return
        conn.sendall(PSTR + b"\0" * 8 + tor.info_hash + peer_id)
        nbytes = (tor.num_pieces + 7) // 8
        bits = bytearray(b"\xff" * nbytes)
        spare = nbytes * 8 - tor.num_pieces
        if spare:
            bits[-1] = (0xff << spare) & 0xff  # BEP 3: spare bits must be zero
        conn.sendall(struct.pack(">IB", 1 + nbytes, 5) + bytes(bits))
        with stats.lock:
            stats.connections += 1
        stats.write()
        unchoked = False
        while True:
            (length,) = struct.unpack(">I", recv_exact(conn, 4))
            if length == 0:
                continue  # keep-alive
            if length > 1 + 4 + 4 + MAX_BLOCK + nbytes:
                return
            msg = recv_exact(conn, length)
            mid = msg[0]
            if mid == 2 and not unchoked:  # interested
                unchoked = True
                conn.sendall(struct.pack(">IB", 1, 1))
            elif mid == 6 and length == 13:  # request
                piece, begin, blen = struct.unpack(">III", msg[1:13])
                if (piece >= tor.num_pieces or blen == 0 or blen > MAX_BLOCK
                        or begin + blen > tor.piece_size(piece)):
                    return
                data = tor.read(piece, begin, blen)
                conn.sendall(struct.pack(">IBII", 9 + len(data), 7, piece, begin) + data)
                with stats.lock:
                    stats.blocks += 1
                    if piece in bad:
                        stats.bad_served.add(piece)
                stats.write()
            # choke, unchoke, not interested, have, bitfield, cancel, extended: ignored
    except (OSError, EOFError, struct.error):
        pass
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("torrent")
    ap.add_argument("save_path")
    ap.add_argument("ip")
    ap.add_argument("port", type=int)
    ap.add_argument("ready")
    ap.add_argument("--stats")
    ap.add_argument("--seconds", type=float, default=600)
    a = ap.parse_args()

    tor = Torrent(a.torrent, a.save_path)
    stats = Stats(a.stats, tor.bad_pieces())
    stats.write()
    peer_id = b"-LI0001-" + os.urandom(12)

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((a.ip, a.port))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    signal.signal(signal.SIGINT, lambda s, f: stop.set())
    with open(a.ready, "w") as f:
        f.write("ready\n")
    deadline = time.time() + a.seconds
    while not stop.is_set() and time.time() < deadline:
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        except OSError:
            break
        threading.Thread(target=serve, args=(conn, tor, stats, peer_id), daemon=True).start()
    srv.close()
    stats.write()


if __name__ == "__main__":
    main()
