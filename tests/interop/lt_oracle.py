#!/usr/bin/python3
"""What libtorrent makes of a .torrent: the oracle for the interop tests.
Run with Debian's /usr/bin/python3 (the only interpreter with `import libtorrent`).

  lt_oracle.py dump FILE.torrent
      prints libtorrent's view as one JSON object (same field names as `rivulet info --json`)
  lt_oracle.py compare FILE.torrent RIVULET.json
      compares rivulet's JSON with libtorrent's view; prints one line per mismatch and
      exits 1 if there is any, 0 if all agree. Padding files are skipped on both sides.
  lt_oracle.py check FILE.torrent SAVE_PATH [SECONDS]
      adds the torrent to a loopback-only lt.session with its data in SAVE_PATH, waits for the
      check to finish and prints "state=... progress=..."; exits 0 only when seeding at 100%.
"""
import json
import sys
import time

import libtorrent as lt

PAD = lt.file_storage.flag_pad_file
EXEC = lt.file_storage.flag_executable


def view(path):
    ti = lt.torrent_info(path)
    ih = ti.info_hashes()
    fs = ti.files()
    files = []
    for i in range(fs.num_files()):
        fl = fs.file_flags(i)
        files.append({
            "path": fs.file_path(i),
            "size": fs.file_size(i),
            "offset": fs.file_offset(i),
            "pad": bool(fl & PAD),
            "exec": bool(fl & EXEC),
        })
    trackers = []
    for ae in ti.trackers():
        while len(trackers) <= ae.tier:
            trackers.append([])
        trackers[ae.tier].append(ae.url)
    with open(path, "rb") as f:
        raw = lt.bdecode(f.read())
    source = raw.get(b"info", {}).get(b"source") if isinstance(raw, dict) else None
    return {
        "name": ti.name(),
        "info_hash": str(ih.v1) if ih.has_v1() else None,
        "info_hash_v2": str(ih.v2) if ih.has_v2() else None,
        "total_size": sum(f["size"] for f in files if not f["pad"]),
        "piece_length": ti.piece_length(),
        "piece_count": ti.num_pieces(),
        "private": bool(ti.priv()),
        "files": files,
        "trackers": trackers,
        "web_seeds": [w["url"] for w in ti.web_seeds()],
        "comment": ti.comment() or None,
        "created_by": ti.creator() or None,
        "creation_date": ti.creation_date() or None,
        # libtorrent does not expose 'source'; read it from the info dictionary
        "source": source.decode("utf-8", "replace") if isinstance(source, bytes) else None,
    }


def compare(torrent, rjson):
    with open(rjson, "rb") as f:
        raw = f.read()
    try:
        r = json.loads(raw)
    except ValueError as e:
        print("  MISMATCH rivulet output is not JSON (%s): %r" % (e, raw[:200]))
        return 1
    lv = view(torrent)
    bad = []

    def eq(field, lval, rval):
        if lval != rval:
            bad.append("%s: libtorrent=%r rivulet=%r" % (field, lval, rval))

    eq("type", "torrent", r.get("type"))
    expect_ver = {(True, False): "v1", (False, True): "v2", (True, True): "hybrid"}.get(
        (lv["info_hash"] is not None, lv["info_hash_v2"] is not None))
    eq("version", expect_ver, r.get("version"))
    for k in ("info_hash", "info_hash_v2", "name", "piece_length", "piece_count",
              "total_size", "private"):
        eq(k, lv[k], r.get(k))

    lfiles = [f for f in lv["files"] if not f["pad"]]
    rfiles_all = r.get("files")
    if not isinstance(rfiles_all, list):
        bad.append("files: rivulet has no list: %r" % (rfiles_all,))
        rfiles_all = []
    rfiles = [f for f in rfiles_all if not f.get("pad")]
    if len(lfiles) != len(rfiles):
        bad.append("files: count (non-pad) libtorrent=%d rivulet=%d" % (len(lfiles), len(rfiles)))
    for i, (lf, rf) in enumerate(zip(lfiles, rfiles)):
        eq("files[%d].path" % i, lf["path"], rf.get("path"))
        eq("files[%d].size" % i, lf["size"], rf.get("size"))
        # offsets agree for v1 and hybrid (pads are explicit); for v2-only libtorrent adds
        # implicit pads at the same piece-aligned offsets, so they agree there too.
        # (a zero-length file's offset means nothing; writers differ on it)
        if lf["size"] > 0:
            eq("files[%d].offset" % i, lf["offset"], rf.get("offset"))
        eq("files[%d].executable" % i, lf["exec"], "x" in (rf.get("attr") or ""))
    rsum = sum(f.get("size", 0) for f in rfiles)
    eq("sum of non-pad file sizes", lv["total_size"], rsum)
    # Pad files that rivulet lists must be flagged as such by libtorrent too (v1 and hybrid
    # torrents carry them explicitly).
    if lv["info_hash"] is not None:
        lpads = [(f["offset"], f["size"]) for f in lv["files"] if f["pad"]]
        rpads = [(f.get("offset"), f.get("size")) for f in rfiles_all if f.get("pad")]
        eq("pad files (offset,size)", lpads, rpads)

    # Trackers: same tiers, in order; inside a tier compare as sets (BEP 12 lets clients
    # shuffle a tier, and libtorrent may reorder).
    rtr = r.get("trackers") or []
    ltr = [t for t in lv["trackers"] if t]
    rtr_ne = [t for t in rtr if t]
    eq("tracker tier count", len(ltr), len(rtr_ne))
    for i, (lt_tier, rv_tier) in enumerate(zip(ltr, rtr_ne)):
        eq("trackers tier %d" % i, sorted(lt_tier), sorted(rv_tier))
    # libtorrent appends '/' to a multi-file web seed; compare without it.
    eq("web_seeds", [w.rstrip("/") for w in lv["web_seeds"]],
       [w.rstrip("/") for w in (r.get("web_seeds") or [])])
    eq("comment", lv["comment"], r.get("comment") or None)
    eq("created_by", lv["created_by"], r.get("created_by") or None)
    eq("creation_date", lv["creation_date"], r.get("creation_date") or None)
    eq("source", lv["source"], r.get("source") or None)

    for b in bad:
        print("  MISMATCH " + b)
    return 1 if bad else 0


def check(torrent, save_path, seconds):
    ti = lt.torrent_info(torrent)
    cat = lt.alert.category_t
    ses = lt.session({
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "listen_interfaces": "127.0.0.1:0",
        "outgoing_interfaces": "127.0.0.1",
        "alert_mask": cat.status_notification | cat.error_notification,
    })
    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = save_path
    h = ses.add_torrent(atp)
    deadline = time.monotonic() + seconds
    checked = False
    while not checked and time.monotonic() < deadline:
        ses.wait_for_alert(200)
        for a in ses.pop_alerts():
            if isinstance(a, lt.torrent_checked_alert):
                checked = True
            elif isinstance(a, (lt.torrent_error_alert, lt.file_error_alert)):
                print("alert: " + a.message())
    st = h.status()
    print("checked=%s state=%s progress=%.4f pieces=%d/%d" % (
        checked, st.state, st.progress, st.num_pieces, ti.num_pieces()))
    ok = checked and st.state in (lt.torrent_status.seeding, lt.torrent_status.finished) \
        and st.progress >= 1.0 and st.num_pieces == ti.num_pieces()
    ses.remove_torrent(h)
    return 0 if ok else 1


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "dump":
        print(json.dumps(view(sys.argv[2]), ensure_ascii=False, indent=1))
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "compare":
        return compare(sys.argv[2], sys.argv[3])
    if len(sys.argv) in (4, 5) and sys.argv[1] == "check":
        return check(sys.argv[2], sys.argv[3], float(sys.argv[4]) if len(sys.argv) == 5 else 60)
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
