#!/usr/bin/python3
"""Make N small single-file v1 torrents with libtorrent, all data in one folder (bench/idle.sh).

usage: make_many.py DATA_DIR TORRENT_DIR N [--min-kib 64] [--max-kib 1024] [--seed 1]

DATA_DIR/fNNNN.bin gets a random size from MIN to MAX KiB (pseudo-random bytes, seeded, so a
run is reproducible) and TORRENT_DIR/fNNNN.torrent its torrent: v1, no tracker, 64 KiB pieces.
All in one process: 1,000 torrents of up to 1 MiB take a few seconds.
"""
import argparse
import os
import random

import libtorrent as lt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("torrents")
    ap.add_argument("n", type=int)
    ap.add_argument("--min-kib", type=int, default=64)
    ap.add_argument("--max-kib", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    os.makedirs(a.data, exist_ok=True)
    os.makedirs(a.torrents, exist_ok=True)
    data = os.path.abspath(a.data)
    for i in range(a.n):
        name = "f%04d.bin" % i
        size = rnd.randint(a.min_kib * 1024, a.max_kib * 1024)
        with open(os.path.join(data, name), "wb") as f:
            f.write(rnd.randbytes(size))
        fs = lt.file_storage()
        fs.add_file(name, size)
        ct = lt.create_torrent(fs, 65536, flags=lt.create_torrent.v1_only)
        ct.set_creator("bench/make_many.py")
        lt.set_piece_hashes(ct, data)
        with open(os.path.join(a.torrents, "f%04d.torrent" % i), "wb") as f:
            f.write(lt.bencode(ct.generate()))


if __name__ == "__main__":
    main()
