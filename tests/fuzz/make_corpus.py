#!/usr/bin/python3
"""Writes the seed corpora tests/fuzz/corpus/bencode/ and tests/fuzz/corpus/torrent/.
Run with Debian's /usr/bin/python3 (the v2 and hybrid seeds are made with libtorrent) and with
mktorrent and transmission-create installed. Payloads are deterministic; creation dates are fixed,
so a second run rewrites the same bytes (except where a tool adds its own version string).

usage: /usr/bin/python3 tests/fuzz/make_corpus.py
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True  # keep __pycache__ out of the tree
sys.path.insert(0, os.path.join(ROOT, "tests", "malformed"))
import make_torrents as mt  # noqa: E402  (bencode writer, payloads, the malformed cases)

MAX_SEED = 8192
DATE = 1700000000

BENCODE = {
    "int-zero": b"i0e",
    "int-negative": b"i-42e",
    "int64-max": b"i9223372036854775807e",
    "int64-min": b"i-9223372036854775808e",
    "int64-max-plus-1": b"i9223372036854775808e",
    "int-negative-zero": b"i-0e",
    "int-leading-zero": b"i03e",
    "int-empty": b"ie",
    "string-empty": b"0:",
    "string": b"4:spam",
    "string-binary": b"8:\x00\xff\x01\xfe\x80\x7f\n\r",
    "string-utf8": mt.benc("Ünïcødé 日本 🎵"),
    "string-too-long": b"5:abc",
    "string-leading-zero": b"04:spam",
    "string-huge-length": b"9999999999999999999:x",
    "list-empty": b"le",
    "list-mixed": b"l4:spami42eli1eed1:ai0eee",
    "list-unterminated": b"l4:spam",
    "dict-empty": b"de",
    "dict": b"d3:bar4:spam3:fooi42ee",
    "dict-nested": b"d1:ad1:bd1:cl1:dd1:ei1eeeeee",
    "dict-unsorted": b"d3:foo1:a3:bar1:be",
    "dict-duplicate-key": b"d1:ai1e1:ai2ee",
    "dict-int-key": b"di1e1:ae",
    "dict-missing-value": b"d1:ae",
    "dict-unterminated": b"d1:ai1e",
    "deep-lists-64": b"l" * 64 + b"e" * 64,
    "deep-lists-2000": b"l" * 2000 + b"e" * 2000,
    "deep-dicts-100": b"d1:a" * 100 + b"i1e" + b"e" * 100,
    "trailing-garbage": b"i1ei2e",
    "unknown-type": b"x",
    "empty": b"",
    "colon-only": b":",
    "minus-only": b"i-e",
    "small-torrent": mt.VALID["v1-single"],
}


def run(*cmd, **kw):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def fix_date(path):
    """Re-encode a tool's torrent with a fixed creation date (outside the info dict)."""
    import libtorrent as lt
    with open(path, "rb") as f:
        d = lt.bdecode(f.read())
    d[b"creation date"] = DATE
    return lt.bencode(d)


def torrents(tmp):
    out = {}
    for name, content in mt.VALID.items():
        out[name] = content
    lt_make = os.path.join(ROOT, "tests", "interop", "lt_make.py")
    pay = os.path.join(tmp, "tiny")
    os.makedirs(os.path.join(pay, "sub"))
    files = {"a.txt": 1000, "sub/b.bin": 20000, "sub/empty": 0, "c.dat": 5000}
    for rel, n in files.items():
        with open(os.path.join(pay, rel), "wb") as f:
            f.write(mt.data(n, rel))
    single = os.path.join(tmp, "one.bin")
    with open(single, "wb") as f:
        f.write(mt.data(50000, "one"))
    ann = "http://127.0.0.1:6969/announce"

    def ltm(name, src, *args):
        t = os.path.join(tmp, name + ".torrent")
        run(sys.executable, lt_make, src, t, "--piece-size", "16384", "--date", str(DATE),
            "--creator", "libtorrent", *args)
        with open(t, "rb") as f:
            out[name] = f.read()

    ltm("lt-v1pad-multi", pay, "--mode", "v1pad", "--tracker", "0," + ann)
    ltm("lt-v2-multi", pay, "--mode", "v2", "--tracker", "0," + ann, "--tracker",
        "1,udp://127.0.0.1:1/a")
    ltm("lt-hybrid-multi", pay, "--mode", "hybrid", "--web-seed", "http://127.0.0.1/ws/",
        "--private")
    ltm("lt-v2-layers", single, "--mode", "v2")
    ltm("lt-hybrid-single", single, "--mode", "hybrid", "--comment", "c")

    t = os.path.join(tmp, "mk.torrent")
    run("mktorrent", "-d", "-l", "15", "-a", ann + ",http://localhost:1/a", "-a",
        "udp://127.0.0.1:2", "-w", "http://127.0.0.1/seed", "-p", "-c", "mk", "-s", "SRC",
        "-o", t, pay)
    with open(t, "rb") as f:
        out["mktorrent-multi"] = f.read()
    t = os.path.join(tmp, "tr.torrent")
    run("transmission-create", "-s", "16", "-t", ann, "-o", t, single)
    out["transmission-single"] = fix_date(t)

    # a few invalid ones near the valid shapes
    bad = dict(mt.cases())
    for key in ("truncated-in-pieces", "pieces-too-few", "path-dotdot", "v2-pieces-root-31-bytes",
                "v2-piece-layers-wrong-hash", "meta-version-3", "hybrid-sizes-disagree",
                "total-size-wraps-uint64"):
        out["bad-" + key] = bad[key]
    return out


def write_dir(d, items):
    os.makedirs(d, exist_ok=True)
    for name, content in items.items():
        assert len(content) <= MAX_SEED, (name, len(content))
        with open(os.path.join(d, name), "wb") as f:
            f.write(content)


def main():
    write_dir(os.path.join(HERE, "corpus", "bencode"), BENCODE)
    tmp = tempfile.mkdtemp(prefix="rv-corpus.")
    try:
        tor = torrents(tmp)
    finally:
        shutil.rmtree(tmp)
    write_dir(os.path.join(HERE, "corpus", "torrent"), tor)
    print("%d bencode seeds, %d torrent seeds" % (len(BENCODE), len(tor)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
