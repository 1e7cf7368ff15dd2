#!/usr/bin/env python3
"""Seed inputs for fuzz_peer: byte 0 picks the torrent (0 seeding, 1 downloading, 2 magnet;
+0x80: no handshake prepended), bytes 1-8 are the handshake's reserved bits, the rest is the
message stream. usage: make_peer_corpus.py OUT_DIR"""
import os
import struct
import sys

FAST_EXT = bytes([0, 0, 0, 0, 0, 0x10, 0, 0x05])  # extension protocol, fast, DHT


def m(mid, payload=b""):
    return struct.pack(">IB", 1 + len(payload), mid) + payload


def ext(eid, payload):
    return m(20, bytes([eid]) + payload)


HS = b"d1:md11:ut_metadatai3e6:ut_pexi1ee1:pi6881e4:reqqi250ee"
seeds = {
    # to the seeding torrent (4 pieces): nothing, interested, requests, a cancel, have all
    "seed-requests": bytes([0]) + FAST_EXT + m(5, b"\x00") + m(2) +
    b"".join(m(6, struct.pack(">III", i, 0, 16384)) for i in range(4)) +
    m(8, struct.pack(">III", 1, 0, 16384)) + bytes(4),
    "seed-fast": bytes([0]) + FAST_EXT + m(15) + m(2) + m(6, struct.pack(">III", 3, 0, 1000)) +
    ext(0, HS) + ext(1, b"d8:msg_typei0e5:piecei0ee"),
    # to the downloading torrent (6 pieces): bitfield, unchoke, a block, suggest, allowed fast,
    # reject, have, PEX
    "down-blocks": bytes([1]) + FAST_EXT + m(5, b"\xfc") + m(1) +
    m(7, struct.pack(">II", 0, 0) + bytes(16384)) + m(13, struct.pack(">I", 2)) +
    m(17, struct.pack(">I", 4)) + m(16, struct.pack(">III", 0, 16384, 16384)) +
    m(4, struct.pack(">I", 5)) + ext(0, HS) + ext(1, b"d5:added6:\x7f\x00\x00\x05\x1a\xe1e"),
    "down-haveall": bytes([1]) + FAST_EXT + m(14) + m(1) + m(0) + m(1) + m(9, b"\x1a\xe1"),
    # to the magnet torrent: an extended handshake with metadata_size, data for block 0
    "magnet": bytes([2]) + FAST_EXT + ext(0, b"d1:md11:ut_metadatai3ee13:metadata_sizei100ee") +
    ext(3, b"d8:msg_typei1e5:piecei0e10:total_sizei100ee" + bytes(100)),
    # no handshake of ours: a raw stream, here a handshake with a wrong protocol string
    "raw": bytes([0x80]) + bytes(8) + b"\x13BitTorrent protocoX" + bytes(48),
}
os.makedirs(sys.argv[1], exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(sys.argv[1], name), "wb") as f:
        f.write(data)
