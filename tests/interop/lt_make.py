#!/usr/bin/python3
"""Make a .torrent with libtorrent (run with Debian's /usr/bin/python3, which has the bindings).

usage: lt_make.py PAYLOAD OUT.torrent [--mode v1|v1pad|v2|hybrid] [--piece-size N]
                  [--tracker TIER,URL]... [--web-seed URL]... [--private] [--comment S]
                  [--creator S] [--date N]

--mode v1     v1 only, no padding files
--mode v1pad  v1 only with BEP 47 padding files (canonical_files: a pad after every file
              that does not end on a piece boundary)
--mode v2     v2 only (meta version 2, file tree + piece layers)
--mode hybrid v1 + v2 in one info dictionary (libtorrent pads the v1 file list)
"""
import argparse
import os
import sys

import libtorrent as lt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("payload")
    ap.add_argument("out")
    ap.add_argument("--mode", default="v1", choices=["v1", "v1pad", "v2", "hybrid"])
    ap.add_argument("--piece-size", type=int, default=0)
    ap.add_argument("--tracker", action="append", default=[], help="TIER,URL")
    ap.add_argument("--web-seed", action="append", default=[])
    ap.add_argument("--private", action="store_true")
    ap.add_argument("--comment")
    ap.add_argument("--creator", default="lt_make.py (libtorrent %s)" % lt.__version__)
    ap.add_argument("--date", type=int)
    a = ap.parse_args()

    payload = os.path.abspath(a.payload)
    fs = lt.file_storage()
    lt.add_files(fs, payload)
    if fs.num_files() == 0:
        sys.exit("lt_make.py: no files under %s" % payload)

    flags = {
        "v1": lt.create_torrent.v1_only,
        "v1pad": lt.create_torrent.v1_only | lt.create_torrent.canonical_files,
        "v2": lt.create_torrent.v2_only,
        "hybrid": 0,
    }[a.mode]
    ct = lt.create_torrent(fs, a.piece_size, flags=flags)
    for t in a.tracker:
        tier, url = t.split(",", 1)
        ct.add_tracker(url, int(tier))
    for ws in a.web_seed:
        ct.add_url_seed(ws)
    if a.private:
        ct.set_priv(True)
    if a.comment is not None:
        ct.set_comment(a.comment)
    ct.set_creator(a.creator)
    lt.set_piece_hashes(ct, os.path.dirname(payload))
    entry = ct.generate()
    if a.date is not None:
        entry[b"creation date"] = a.date
    with open(a.out, "wb") as f:
        f.write(lt.bencode(entry))


if __name__ == "__main__":
    main()
