#!/usr/bin/env python3
"""Writes the malformed .torrent inputs in tests/malformed/torrent/ (NN-description.torrent) and
a few well-formed controls in tests/malformed/valid/. Plain Python 3, no dependencies; the output
is deterministic, so running it again leaves the committed files unchanged.

Each malformed file breaks one rule and is otherwise a well-formed torrent (the controls are the
bases they are made from), so a reader that accepts one has missed exactly that rule.

usage: python3 tests/malformed/make_torrents.py
       python3 tests/malformed/make_torrents.py --many N OUT.torrent   (N one-byte files)
       python3 tests/malformed/make_torrents.py --many-trackers N OUT.torrent   (N tiers)
       python3 tests/malformed/make_torrents.py --many-v2 N OUT.torrent   (N files and layers)
       python3 tests/malformed/make_torrents.py --control-chars OUT.torrent
"""
import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BLOCK = 16384


class Raw:
    """Bytes spliced into the output as they are (for invalid encodings)."""

    def __init__(self, b):
        self.b = b


class Pairs:
    """A dictionary written in the given order, keys as given (unsorted, duplicates, non-strings)."""

    def __init__(self, items):
        self.items = items


def benc(v):
    if isinstance(v, Raw):
        return v.b
    if isinstance(v, bool):
        raise TypeError("bool")
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode("utf-8")
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(benc(x) for x in v) + b"e"
    if isinstance(v, Pairs):
        return b"d" + b"".join(benc(k) + benc(x) for k, x in v.items) + b"e"
    if isinstance(v, dict):
        items = sorted(((k.encode() if isinstance(k, str) else k), x) for k, x in v.items())
        return b"d" + b"".join(benc(k) + benc(x) for k, x in items) + b"e"
    raise TypeError(type(v))


def data(n, seed):
    """n deterministic pseudo-random bytes."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%s:%d" % (seed.encode(), i)).digest()
        i += 1
    return bytes(out[:n])


def sha1_pieces(payload, plen):
    return b"".join(hashlib.sha1(payload[i:i + plen]).digest()
                    for i in range(0, len(payload), plen))


def merkle_root(hashes, count):
    """Root of a tree whose leaves are hashes, padded with zero hashes to count (a power of 2)."""
    layer = list(hashes) + [b"\0" * 32] * (count - len(hashes))
    while len(layer) > 1:
        layer = [hashlib.sha256(layer[i] + layer[i + 1]).digest() for i in range(0, len(layer), 2)]
    return layer[0]


def pow2_at_least(n):
    p = 1
    while p < n:
        p *= 2
    return p


def v2_file(payload, plen):
    """BEP 52: (pieces root, piece layer or b'' when the file fits in one piece)."""
    leaves = [hashlib.sha256(payload[i:i + BLOCK]).digest() for i in range(0, len(payload), BLOCK)]
    if len(payload) <= plen:
        return merkle_root(leaves, pow2_at_least(len(leaves))), b""
    per = plen // BLOCK
    layer = [merkle_root(leaves[i:i + per], per) for i in range(0, len(leaves), per)]
    pad = merkle_root([], per)  # the hash of a piece of zero leaves
    layer_padded = layer + [pad] * (pow2_at_least(len(layer)) - len(layer))
    while len(layer_padded) > 1:
        layer_padded = [hashlib.sha256(layer_padded[i] + layer_padded[i + 1]).digest()
                        for i in range(0, len(layer_padded), 2)]
    root = layer_padded[0]
    return root, b"".join(layer)


ANNOUNCE = "http://127.0.0.1:6969/announce"
PLEN = 16384

# Base v1 single file: 40000 bytes, 3 pieces.
D_SINGLE = data(40000, "single")


def v1_single(**over):
    info = {"length": len(D_SINGLE), "name": "base.bin", "piece length": PLEN,
            "pieces": sha1_pieces(D_SINGLE, PLEN)}
    info.update(over)
    for k in [k for k, v in info.items() if v is None]:
        del info[k]
    return info


# Base v1 multi file: a.bin 30000 + dir/b.bin 20000 = 50000 bytes, 4 pieces.
D_A = data(30000, "a")
D_B = data(20000, "b")


def v1_multi(files=None, **over):
    if files is None:
        files = [{"length": len(D_A), "path": ["a.bin"]},
                 {"length": len(D_B), "path": ["dir", "b.bin"]}]
    info = {"files": files, "name": "base", "piece length": PLEN,
            "pieces": sha1_pieces(D_A + D_B, PLEN)}
    info.update(over)
    for k in [k for k, v in info.items() if v is None]:
        del info[k]
    return info


# Base v2 single file: 40000 bytes in 16 KiB pieces -> a piece layer of 3 hashes.
V2_ROOT, V2_LAYER = v2_file(D_SINGLE, PLEN)


def v2_single(leaf=None, tree=None, layers=None, **over):
    if leaf is None:
        leaf = {"length": len(D_SINGLE), "pieces root": V2_ROOT}
    if tree is None:
        tree = {"base-v2.bin": {"": leaf}}
    info = {"file tree": tree, "meta version": 2, "name": "base-v2.bin", "piece length": PLEN}
    info.update(over)
    for k in [k for k, v in info.items() if v is None]:
        del info[k]
    top = {"announce": ANNOUNCE, "info": info,
           "piece layers": {V2_ROOT: V2_LAYER} if layers is None else layers}
    return top


def hybrid_single(**over):
    """v1 + v2 of the same single file (no padding needed for one file)."""
    info = v2_single()["info"]
    info.update({"length": len(D_SINGLE), "pieces": sha1_pieces(D_SINGLE, PLEN)})
    info.update(over)
    return {"announce": ANNOUNCE, "info": info, "piece layers": {V2_ROOT: V2_LAYER}}


def t(info, **top):
    d = {"announce": ANNOUNCE, "info": info}
    d.update(top)
    return d


VALID = {
    "v1-single": benc(t(v1_single())),
    "v1-multi": benc(t(v1_multi())),
    "v2-single": benc(v2_single()),
    "hybrid-single": benc(hybrid_single()),
}

BASE = VALID["v1-single"]
I64 = 2 ** 63 - 1


def deep(n, open_=b"l", close=b"e"):
    return open_ * n + close * n


def replace_once(b, old, new):
    assert b.count(old) == 1, (old, b.count(old))
    return b.replace(old, new)


def cases():
    c = []

    def add(desc, content):
        c.append((desc, content if isinstance(content, bytes) else benc(content)))

    # --- bencode syntax, not a dictionary, truncation
    add("empty-file", b"")
    add("only-d", b"d")
    add("truncated-in-first-key", BASE[:5])
    add("truncated-10pct", BASE[:len(BASE) // 10])
    add("truncated-50pct", BASE[:len(BASE) // 2])
    add("truncated-in-pieces", BASE[:BASE.index(b"6:pieces60:") + 30])
    add("truncated-90pct", BASE[:len(BASE) * 9 // 10])
    add("missing-root-dict-end", BASE[:-1])
    add("missing-info-dict-end", BASE[:-2] + b"e")
    add("root-is-list", benc([t(v1_single())]))
    add("root-is-integer", b"i42e")
    add("root-is-string", b"4:spam")
    add("trailing-garbage", BASE + b"garbage")
    add("trailing-second-dict", BASE + b"de")
    add("int-overflow-length", replace_once(BASE, b"6:lengthi40000e",
                                            b"6:lengthi99999999999999999999e"))
    add("int-2pow64-length", replace_once(BASE, b"6:lengthi40000e",
                                          b"6:lengthi18446744073709551616e"))
    add("int-leading-zero", replace_once(BASE, b"6:lengthi40000e", b"6:lengthi040000e"))
    add("int-negative-zero", benc(t(v1_single(), **{"creation date": Raw(b"i-0e")})))
    add("int-empty", benc(t(v1_single(), **{"creation date": Raw(b"ie")})))
    add("int-plus-sign", replace_once(BASE, b"6:lengthi40000e", b"6:lengthi+40000e"))
    add("int-unterminated", b"d8:announcei12")
    add("string-length-beyond-buffer", replace_once(BASE, b"6:pieces60:", b"6:pieces600:"))
    add("string-length-leading-zero", replace_once(BASE, b"4:name8:base.bin", b"4:name08:base.bin"))
    add("string-length-huge", b"d8:announce9999999999:" + ANNOUNCE.encode() + b"e")
    add("string-length-2pow64", b"d8:announce18446744073709551617:abce")
    add("string-length-negative", b"d8:announce-3:abc4:info" + benc(v1_single()) + b"e")
    add("string-no-colon", b"d8:announce5abcde4:info" + benc(v1_single()) + b"e")
    add("unknown-type-byte", benc(t(v1_single(), comment=Raw(b"x"))))
    add("nesting-10000-lists", deep(10000))
    add("nesting-10000-dicts", b"d1:a" * 10000 + b"i0e" + b"e" * 10000)
    add("nesting-10000-inside-valid", benc(t(v1_single(), **{"x-deep": Raw(deep(10000))})))
    add("dict-key-integer", benc(Pairs([(Raw(b"i1e"), 1), ("announce", ANNOUNCE),
                                        ("info", v1_single())])))
    add("dict-key-list", benc(Pairs([("announce", ANNOUNCE), ("info", v1_single()),
                                     (Raw(b"l1:ae"), 1)])))
    add("info-key-integer", benc(t(Pairs([(Raw(b"i7e"), 1)] + sorted(v1_single().items())))))

    # --- structure of the metainfo
    add("missing-info", {"announce": ANNOUNCE})
    add("info-is-list", t([v1_single()]))
    add("info-is-string", t("info"))
    add("info-empty-dict", t({}))
    add("missing-pieces", t(v1_single(pieces=None)))
    add("pieces-is-integer", t(v1_single(pieces=20)))
    add("missing-piece-length", t(v1_single(**{"piece length": None})))
    add("pieces-not-multiple-of-20", t(v1_single(pieces=sha1_pieces(D_SINGLE, PLEN)[:-1])))
    add("pieces-too-few", t(v1_single(pieces=sha1_pieces(D_SINGLE, PLEN)[:40])))
    add("pieces-too-many", t(v1_single(pieces=sha1_pieces(D_SINGLE, PLEN) + b"\1" * 20)))
    add("pieces-empty", t(v1_single(pieces=b"")))
    add("piece-length-zero", t(v1_single(**{"piece length": 0})))
    add("piece-length-1000", t(v1_single(**{"piece length": 1000},
                                         pieces=sha1_pieces(D_SINGLE, 1000))))
    add("piece-length-negative", t(v1_single(**{"piece length": -16384})))
    add("piece-length-2pow40", t(v1_single(**{"piece length": 2 ** 40},
                                           pieces=sha1_pieces(D_SINGLE, 2 ** 40))))
    add("length-negative", t(v1_single(length=-40000)))
    add("length-int64-max", t(v1_single(length=I64)))
    add("both-length-and-files", t(v1_multi(length=50000)))
    add("neither-length-nor-files", t(v1_single(length=None)))
    add("files-empty-list", t(v1_multi(files=[], pieces=b"")))
    add("files-not-a-list", t(v1_multi(files={"a": 1})))
    add("file-entry-not-a-dict", t(v1_multi(files=[["a.bin"], {"length": 20000,
                                                                "path": ["b.bin"]}])))
    add("file-length-negative", t(v1_multi(files=[{"length": -30000, "path": ["a.bin"]},
                                                  {"length": 80000, "path": ["b.bin"]}])))
    add("file-length-missing", t(v1_multi(files=[{"path": ["a.bin"]},
                                                 {"length": 50000, "path": ["b.bin"]}])))
    add("file-path-empty-list", t(v1_multi(files=[{"length": 30000, "path": []},
                                                  {"length": 20000, "path": ["b.bin"]}])))
    add("file-path-missing", t(v1_multi(files=[{"length": 30000},
                                               {"length": 20000, "path": ["b.bin"]}])))
    add("file-path-component-integer", t(v1_multi(files=[{"length": 30000, "path": [7]},
                                                         {"length": 20000, "path": ["b.bin"]}])))
    # two files of 2^62+ bytes: the total does not fit an int64
    add("total-size-over-int64", t(v1_multi(files=[{"length": 2 ** 62 + 1, "path": ["a"]},
                                                   {"length": 2 ** 62 + 1, "path": ["b"]},
                                                   {"length": I64, "path": ["c"]}])))
    # the lengths wrap a uint64 sum to exactly 50000, which the 4 pieces would match
    add("total-size-wraps-uint64", t(v1_multi(files=[{"length": I64, "path": ["a"]},
                                                     {"length": I64, "path": ["b"]},
                                                     {"length": 50002, "path": ["c"]}])))

    # --- names and paths that would escape the download folder
    def with_path(p):
        return t(v1_multi(files=[{"length": 30000, "path": p},
                                 {"length": 20000, "path": ["dir", "b.bin"]}]))

    add("path-dotdot", with_path(["..", "..", "etc", "passwd"]))
    add("path-dotdot-inside", with_path(["dir", "..", "..", "escape"]))
    add("path-empty-component-absolute", with_path(["", "etc", "passwd"]))
    add("path-component-absolute", with_path(["/etc/passwd"]))
    add("path-component-dot", with_path(["."]))
    add("path-component-nul", with_path(["a\0b.bin"]))
    add("name-dotdot", t(v1_single(name="..")))
    add("name-dotdot-multi", t(v1_multi(name="..")))
    add("name-absolute", t(v1_single(name="/etc/passwd")))

    # --- BEP 52 (v2)
    add("v2-pieces-root-31-bytes", v2_single(leaf={"length": 40000, "pieces root": V2_ROOT[:31]},
                                             layers={V2_ROOT[:31]: V2_LAYER}))
    add("v2-leaf-missing-length", v2_single(leaf={"pieces root": V2_ROOT}))
    add("v2-leaf-length-negative", v2_single(leaf={"length": -40000, "pieces root": V2_ROOT}))
    add("v2-leaf-missing-pieces-root", v2_single(leaf={"length": 40000}, layers={}))
    add("v2-leaf-not-a-dict", v2_single(tree={"base-v2.bin": {"": 40000}}))
    add("v2-file-tree-empty", v2_single(tree={}, layers={}))
    add("v2-file-tree-not-a-dict", v2_single(tree=[{"base-v2.bin": 1}], layers={}))
    add("v2-missing-file-tree", v2_single(**{"file tree": None}))
    add("v2-path-dotdot", v2_single(tree={"..": {"x.bin": {"": {"length": 40000,
                                                                 "pieces root": V2_ROOT}}}}))
    add("v2-piece-layers-too-short", v2_single(layers={V2_ROOT: V2_LAYER[:64]}))
    add("v2-piece-layers-not-multiple-of-32", v2_single(layers={V2_ROOT: V2_LAYER + b"\0" * 5}))
    # (no case for a missing 'piece layers' entry: libtorrent accepts that and fetches the
    # layer from peers, so it is a policy choice rather than a malformed file)
    add("v2-piece-layers-not-a-dict", v2_single(layers=[V2_LAYER]))
    bad_layer = bytes([V2_LAYER[0] ^ 1]) + V2_LAYER[1:]
    add("v2-piece-layers-wrong-hash", v2_single(layers={V2_ROOT: bad_layer}))
    add("v2-piece-length-not-pow2", v2_single(**{"piece length": 3 * BLOCK}))
    add("v2-piece-length-8k", v2_single(**{"piece length": 8192}))
    add("meta-version-3", v2_single(**{"meta version": 3}))
    add("meta-version-string", v2_single(**{"meta version": "2"}))
    add("hybrid-sizes-disagree", hybrid_single(length=40001))

    # --- hostile file lists (issue "Hostile input and faults"). Decided per case:
    # - '..\\..\\x', '%2e%2e%2fx', 'C:\\x', 'C:x' and the UTF-8 overlong forms of '.' and '/'
    #   (C0 AE, C0 AF) are ordinary file names on Linux: the kernel splits paths on the byte
    #   '/' only and never decodes UTF-8 or percent escapes. They are accepted as literal names
    #   (as libtorrent does on Linux, which only replaces invalid UTF-8 with '_'), so they are
    #   not here: tests/interop/hostile_paths.sh downloads a torrent of them and checks that
    #   nothing lands outside the download folder.
    # - What cannot be written as the torrent says is refused: two files with one path, a file
    #   that is also a folder (either order), a component over NAME_MAX (255 bytes), a path
    #   over PATH_MAX (4096 bytes).
    # - More than RV_MAX_FILES files: run.sh generates a 1,000,000-file torrent (30 MB, not
    #   kept in the repository) and checks it is refused quickly.
    add("files-same-path", t(v1_multi(files=[{"length": 30000, "path": ["dir", "b.bin"]},
                                             {"length": 20000, "path": ["dir", "b.bin"]}])))
    add("file-also-folder", t(v1_multi(files=[{"length": 30000, "path": ["a", "b"]},
                                              {"length": 20000, "path": ["a", "b", "c"]}])))
    add("folder-also-file", t(v1_multi(files=[{"length": 30000, "path": ["a", "b", "c"]},
                                              {"length": 20000, "path": ["a", "b"]}])))
    add("path-component-256-bytes", with_path(["x" * 256]))
    add("name-256-bytes", t(v1_single(name="n" * 256)))
    # 17 components of 255 bytes: 4351 bytes, over PATH_MAX (4096) although each fits NAME_MAX
    add("path-over-path-max", with_path(["d" * 255] * 16 + ["f" * 255]))
    add("piece-length-2pow31", t(v1_single(**{"piece length": 2 ** 31},
                                           pieces=sha1_pieces(D_SINGLE, 2 ** 31))))
    # 2^32 + 16 KiB: truncated to 32 bits it would read as a valid 16 KiB
    add("piece-length-2pow32-plus-16k", t(v1_single(**{"piece length": 2 ** 32 + PLEN})))
    add("length-2pow63", replace_once(BASE, b"6:lengthi40000e",
                                      b"6:lengthi9223372036854775808e"))
    # two files of 2^62 bytes: a total of exactly 2^63, one past the largest int64
    add("total-size-exactly-2pow63", t(v1_multi(files=[{"length": 2 ** 62, "path": ["a"]},
                                                       {"length": 2 ** 62, "path": ["b"]}])))
    big = {"length": 2 ** 62, "pieces root": V2_ROOT}
    add("v2-total-size-2pow63", v2_single(tree={"a": {"": big}, "b": {"": dict(big)}},
                                          layers={}))
    # v2: a file tree cannot spell two files with one path except by repeating a key, which
    # the (lenient) decoder keeps; both forms must still be refused
    leaf = {"": {"length": len(D_SINGLE), "pieces root": V2_ROOT}}
    add("v2-duplicate-key-same-path", v2_single(tree=Pairs([("a", leaf), ("a", leaf)])))
    add("v2-duplicate-key-file-and-folder",
        v2_single(tree=Pairs([("a", leaf), ("a", {"b": leaf})])))
    return c


def many_files(n):
    """A v1 torrent of n one-byte files named 0000000, 0000001, ... (piece hashes are not the
    data's: only the file list matters)."""
    parts = [b"d8:announce%d:%s4:infod5:filesl" % (len(ANNOUNCE), ANNOUNCE.encode())]
    for i in range(n):
        nm = b"%07d" % i
        parts.append(b"d6:lengthi1e4:pathl%d:%see" % (len(nm), nm))
    npieces = (n + PLEN - 1) // PLEN
    parts.append(b"e4:name4:many12:piece lengthi%de6:pieces%d:" % (PLEN, npieces * 20))
    parts.append(b"\1" * (npieces * 20))
    parts.append(b"ee")
    return b"".join(parts)


def write(path, content):
    old = None
    if os.path.exists(path):
        with open(path, "rb") as f:
            old = f.read()
    if old != content:
        with open(path, "wb") as f:
            f.write(content)


def many_v2(n):
    """A v2 torrent of n files of two 16 KiB pieces, each with a piece layer that hashes to its
    root (random-looking hashes: only the metadata is read)."""
    tree, layers = {}, {}
    for i in range(n):
        layer = hashlib.sha256(b"a%d" % i).digest() + hashlib.sha256(b"b%d" % i).digest()
        root = hashlib.sha256(layer).digest()
        tree["%07d" % i] = {"": {"length": 2 * PLEN, "pieces root": root}}
        layers[root] = layer
    return benc({"announce": ANNOUNCE, "piece layers": layers,
                 "info": {"file tree": tree, "meta version": 2, "name": "many-v2",
                          "piece length": PLEN}})


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--many":
        # make_torrents.py --many N OUT.torrent: the many-files torrent, written elsewhere
        write(sys.argv[3], many_files(int(sys.argv[2])))
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "--many-v2":
        # make_torrents.py --many-v2 N OUT.torrent: N two-piece v2 files, each with its layer
        write(sys.argv[3], many_v2(int(sys.argv[2])))
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "--control-chars":
        # make_torrents.py --control-chars OUT.torrent: legal, but every string a terminal
        # shows carries ESC sequences, BEL, CR, LF or C1 controls
        esc = "\x1b[2J\x1b]0;owned\x07\r\nrivulet: fake line\u009b31m"
        # (the empty file is created at start: a download into a folder where that fails
        # names it in an error at once)
        info = v1_multi(files=[{"length": 30000, "path": ["a" + esc]},
                               {"length": 0, "path": ["e" + esc]},
                               {"length": 20000, "path": ["dir" + esc, "b" + esc]}],
                        name="n" + esc, source="s" + esc)
        write(sys.argv[2], benc(t(info, announce="http://127.0.0.1:1/a" + esc,
                                  comment="c" + esc, **{"created by": "cb" + esc,
                                                        "url-list": ["http://w/" + esc]})))
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "--many-trackers":
        # make_torrents.py --many-trackers N OUT.torrent: the v1 control with N announce tiers
        tiers = [["http://127.%d.%d.%d:1/announce" % (i >> 16, (i >> 8) & 255, i & 255)]
                 for i in range(int(sys.argv[2]))]
        write(sys.argv[3], benc(t(v1_single(), **{"announce-list": tiers})))
        return 0
    out = os.path.join(HERE, "torrent")
    os.makedirs(out, exist_ok=True)
    cs = cases()
    names = set()
    for i, (desc, content) in enumerate(cs, 1):
        name = "%02d-%s.torrent" % (i, desc)
        names.add(name)
        write(os.path.join(out, name), content)
    # remove files from an older numbering
    for f in os.listdir(out):
        if f.endswith(".torrent") and f[:2].isdigit() and f not in names:
            os.unlink(os.path.join(out, f))

    vdir = os.path.join(HERE, "valid")
    os.makedirs(vdir, exist_ok=True)
    for name, content in VALID.items():
        write(os.path.join(vdir, name + ".torrent"), content)
    print("%d malformed in %s, %d controls in %s" % (len(cs), out, len(VALID), vdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
