#!/usr/bin/python3
"""Writes the seed corpus tests/fuzz/corpus/wire/ for fuzz_wire. Each seed is 4 bytes of limits
(piece count, big-endian 16 bits; log2 of the piece length; the last piece's shortfall in 256ths)
followed by a stream of peer wire messages.

usage: python3 tests/fuzz/make_wire_corpus.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "wire")

# 1000 pieces of 32 KiB; the last 32768 - 32768 * 100 / 256 = 19968 bytes.
LIMITS = struct.pack(">HBB", 1000, 15, 100)
LAST = 999


def msg(mid, body=b""):
    return struct.pack(">IB", 1 + len(body), mid) + body


def req(mid, index, begin, length):
    return msg(mid, struct.pack(">III", index, begin, length))


def piece(index, begin, block):
    return msg(7, struct.pack(">II", index, begin) + block)


KEEPALIVE = b"\0\0\0\0"
HANDSHAKE = b"\x13BitTorrent protocol" + bytes(5) + b"\x10\0\x05" + bytes(range(20)) + b"-RV0001-abcdefghijkl"

SEEDS = {
    "keepalives": LIMITS + KEEPALIVE * 3,
    "simple": LIMITS + b"".join(msg(i) for i in (0, 1, 2, 3, 14, 15)),
    "have": LIMITS + msg(4, struct.pack(">I", 0)) + msg(4, struct.pack(">I", LAST)),
    "bitfield": LIMITS + msg(5, b"\xa5" * 125),
    "bitfield-spare": struct.pack(">HBB", 10, 14, 0) + msg(5, b"\xff\xe0"),
    "requests": LIMITS + req(6, 0, 0, 16384) + req(8, 0, 0, 16384) + req(16, LAST, 16384, 19968 - 16384),
    "piece": LIMITS + piece(3, 16384, bytes(range(256)) * 4),
    "piece-last-past-end": LIMITS + piece(LAST, 16384, b"\x55" * 4000),
    "piece-truncated": LIMITS + piece(2, 0, b"x" * 100)[:60],
    "request-overflow": LIMITS + req(6, 1, 0xFFFFFFFF, 1),
    "have-out-of-range": LIMITS + msg(4, struct.pack(">I", 1234)),
    "huge-prefix": LIMITS + b"\xff\xff\xff\xff\x07",
    "wrong-size": LIMITS + struct.pack(">IB", 2, 0) + b"\0",
    "port": LIMITS + msg(9, struct.pack(">H", 6881)),
    "extended": LIMITS + msg(20, b"\0d1:md11:ut_metadatai1ee1:pi6881ee"),
    "fast": LIMITS + msg(14) + msg(13, struct.pack(">I", 5)) + msg(17, struct.pack(">I", 6)),
    "unknown-ids": LIMITS + msg(10) + msg(42, b"xyz") + msg(255, b"\1\2"),
    "handshake-then-bitfield": HANDSHAKE + msg(5, b"\xff" * 125),
    "limits-then-handshake": LIMITS + HANDSHAKE,
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(SEEDS), OUT))


if __name__ == "__main__":
    main()
