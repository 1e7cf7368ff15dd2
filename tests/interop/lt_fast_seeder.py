#!/usr/bin/python3
"""A libtorrent 2.0 seeder that chokes on command, for BEP 6 (fast extension) tests on loopback.

usage: lt_fast_seeder.py TORRENT SAVE_PATH IP PORT READY_FILE [--upload-limit B/s]
                         [--slots N] [--choke-file FILE] [--stats FILE] [--seconds N]

Seeds TORRENT from SAVE_PATH (seed mode) on IP:PORT and writes READY_FILE once listening.
--slots N: libtorrent's unchoke_slots_limit (it adds one optimistic unchoke of its own), so
with more leechers than slots some are choked and get only allowed-fast pieces.
While --choke-file exists it unchokes nobody (unchoke_slots_limit 0): peers are choked and
their queued requests rejected (libtorrent does that for fast-extension peers), and only the
BEP 6 allowed-fast pieces are served. --stats FILE: a JSON line of totals, rewritten every
second. Exits on SIGTERM/SIGINT or after --seconds.
"""
import argparse
import json
import os
import signal
import time

import libtorrent as lt
from lt_guard import guard


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("torrent")
    ap.add_argument("save_path")
    ap.add_argument("ip")
    ap.add_argument("port", type=int)
    ap.add_argument("ready")
    ap.add_argument("--upload-limit", type=int, default=0)
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--choke-file")
    ap.add_argument("--stats")
    ap.add_argument("--seconds", type=float, default=300)
    a = ap.parse_args()
    guard("lt_fast_seeder", a.ready)

    ses = lt.session({
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "listen_interfaces": f"{a.ip}:{a.port}", "outgoing_interfaces": a.ip,
        "allow_multiple_connections_per_ip": True,
        "unchoke_interval": 1,  # rechoke every second, so a choke takes effect at once
        "alert_mask": lt.alert.category_t.status_notification
        | lt.alert.category_t.error_notification,
    })
    # libtorrent puts loopback peers in its local peer class, which ignores the unchoke slots:
    # make them count, or nobody is ever choked here.
    for cid in (lt.session.local_peer_class_id, lt.session.global_peer_class_id):
        pc = ses.get_peer_class(cid)
        pc["ignore_unchoke_slots"] = False
        ses.set_peer_class(cid, pc)
    h = ses.add_torrent({"ti": lt.torrent_info(a.torrent), "save_path": a.save_path,
                         "flags": lt.torrent_flags.seed_mode})
    if a.upload_limit > 0:
        h.set_upload_limit(a.upload_limit)
    h.resume()
    stop = False

    def on_term(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    choked = None
    ready = False
    last = 0.0
    deadline = time.time() + a.seconds
    while not stop and time.time() < deadline:
        ses.wait_for_alert(100)
        for al in ses.pop_alerts():
            if isinstance(al, lt.listen_succeeded_alert) and not ready:
                ready = True
                with open(a.ready, "w") as f:
                    f.write("ready\n")
        want = bool(a.choke_file and os.path.exists(a.choke_file))
        if want != choked:
            choked = want
            # No regular slots; the optimistic unchoke (at least one, every interval) is kept
            # off by an interval longer than any test.
            ses.apply_settings({"unchoke_slots_limit": 0 if want else a.slots,
                                "optimistic_unchoke_interval": 100000 if want else 30})
            h.set_max_uploads(0 if want else -1)
        if a.stats and time.time() - last >= 1:
            last = time.time()
            st = h.status()
            tmp = a.stats + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"payload_upload": st.total_payload_upload, "peers": st.num_peers,
                           "choking": choked}, f)
            os.replace(tmp, a.stats)


if __name__ == "__main__":
    main()
