#!/usr/bin/python3
"""Writes the seed corpus tests/fuzz/corpus/resume/: resume files for the torrent
tests/fuzz/fuzz_resume.c builds ("f": a 100000 bytes, b 50000 bytes, 64 KiB pieces), valid
ones and a few near misses. Deterministic: a second run writes the same bytes.

usage: python3 tests/fuzz/make_resume_corpus.py
"""
import hashlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "resume")


def enc(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(enc(x) for x in v) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(enc(k) + enc(x) for k, x in items) + b"e"
    raise TypeError(v)


INFO = {
    "files": [{"length": 100000, "path": ["a"]}, {"length": 50000, "path": ["b"]}],
    "name": "f",
    "piece length": 65536,
    "pieces": bytes(range(60)),
}
IH = hashlib.sha1(enc(INFO)).digest()


def resume(**over):
    r = {
        "version": 1,
        "info-hash": IH,
        "pieces": b"\x80",
        "files": [{"mtime": 1700000000123456789, "size": 100000}, {}],
        "partial": [{"piece": 2, "blocks": b"\x40"}, {"piece": 1, "blocks": b"\x90"}],
        "uploaded": 12345,
        "downloaded": 150000,
        "peers": bytes([10, 0, 0, 1, 0x1a, 0xe1, 192, 168, 1, 2, 0, 80]),
        "peers6": bytes([0x20, 0x01, 0x0d, 0xb8] + [0] * 11 + [7, 0xc8, 0xd5]),
    }
    r.update(over)
    return enc(r)


SEEDS = {
    "valid-sample": resume(),
    "valid-empty": resume(pieces=b"\x00", files=[{}, {}], partial=[], uploaded=0, downloaded=0,
                          peers=b"", peers6=b""),
    "valid-complete": resume(pieces=b"\xe0", partial=[],
                             files=[{"mtime": -1, "size": 100000}, {"mtime": 5, "size": 50000}]),
    "bad-version": resume(version=2),
    "bad-info-hash": resume(**{"info-hash": b"\x00" * 20}),
    "bad-pieces-spare": resume(pieces=b"\x90"),
    "bad-partial-had": resume(partial=[{"piece": 0, "blocks": b"\x80"}]),
    "bad-partial-bitmap": resume(partial=[{"piece": 2, "blocks": b"\x60"}]),
    "bad-peers-length": resume(peers=b"\x0a\x00\x00\x01\x1a"),
}

os.makedirs(OUT, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print("wrote %d seeds to %s" % (len(SEEDS), OUT))
