#!/usr/bin/python3
"""A libtorrent 2.0 seeder for interop tests and benchmarks, kept on loopback.

usage: lt_seeder.py TORRENT SAVE_PATH IP PORT READY_FILE [--ready tracker|listen]
                    [--upload-limit BYTES_PER_S] [--high-performance] [--check]
                    [--stats FILE] [--peer IP:PORT]... [--dial-file FILE] [--seconds N]

Seeds TORRENT from SAVE_PATH, listening on IP:PORT and making outgoing connections (tracker
announces included) from IP, so a tracker sees this peer at IP. Runs until SIGTERM/SIGINT (or
--seconds, default 600).

--ready tracker  (default) write READY_FILE once a tracker has answered an announce
--ready listen   write READY_FILE once the TCP listen socket is up and the torrent is seeding:
                 for torrents without trackers, found through the leecher's --peer
--upload-limit   cap the upload rate (bytes per second), so a download takes a while
--high-performance  start from lt.high_performance_seed() (loopback-only settings on top)
--check          check the data first instead of seed_mode (ready only once seeding at 100%)
--stats FILE     rewrite FILE every second and at exit with {"payload_upload": N, "peers": N}
--peer IP:PORT   connect to this peer by hand once seeding (e.g. a leecher without a tracker)
--dial-file FILE watch FILE (polled every 0.2 s) and connect to each IP:PORT line added to it:
                 for leechers that start later and never dial loopback (Transmission)

seed_mode: libtorrent assumes the data is complete and does not read it before it starts, but
it still hashes each piece once before it first uploads it; a piece that fails makes it leave
seed mode and recheck. So a seed_mode seeder never serves corrupt data: for a lying peer use
liar_seeder.py.
"""
# --enc forced|enabled|disabled and --enc-level rc4|plaintext|both set libtorrent's MSE
# policy (in and out) and the crypto it allows; the defaults are libtorrent's (enabled, both).
import argparse
import json
import os
import signal
import sys
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
    ap.add_argument("--ready", dest="ready_on", choices=["tracker", "listen"], default="tracker")
    ap.add_argument("--upload-limit", type=int, default=0)
    ap.add_argument("--high-performance", action="store_true")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--stats")
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--dial-file")
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--enc", choices=["forced", "enabled", "disabled"])
    ap.add_argument("--enc-level", choices=["rc4", "plaintext", "both"])
    a = ap.parse_args()
    guard("lt_seeder", a.ready)

    settings = lt.high_performance_seed() if a.high_performance else {}
    settings.update({
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        # IPv6 addresses go in brackets in libtorrent's interface lists.
        "listen_interfaces": (f"[{a.ip}]" if ":" in a.ip else a.ip) + f":{a.port}",
        "outgoing_interfaces": a.ip,
        "allow_multiple_connections_per_ip": True,
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "alert_mask": lt.alert.category_t.status_notification
        | lt.alert.category_t.error_notification
        | lt.alert.category_t.tracker_notification,
    })
    # Message Stream Encryption: in and out policy, and the crypto allowed
    if a.enc:
        pol = getattr(lt.enc_policy, "pe_" + a.enc)
        settings.update({"out_enc_policy": int(pol), "in_enc_policy": int(pol)})
    if a.enc_level:
        settings["allowed_enc_level"] = int(getattr(lt.enc_level, "pe_" + a.enc_level))
    ses = lt.session(settings)
    params = {"ti": lt.torrent_info(a.torrent), "save_path": a.save_path}
    if not a.check:
        params["flags"] = lt.torrent_flags.seed_mode
    h = ses.add_torrent(params)
    if a.upload_limit > 0:
        h.set_upload_limit(a.upload_limit)
    h.resume()

    stop = False

    def on_term(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    def write_stats():
        if not a.stats:
            return
        st = h.status()
        tmp = a.stats + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"payload_upload": st.total_payload_upload, "peers": st.num_peers,
                       "state": str(st.state)}, f)
        os.replace(tmp, a.stats)

    def mark_ready():
        with open(a.ready, "w") as f:
            f.write("ready\n")

    ready = False
    listening = False
    dialed = False
    dial_seen = set()
    reannounced = False
    last_stats = 0.0
    deadline = time.time() + a.seconds
    while not stop and time.time() < deadline:
        ses.wait_for_alert(200)
        for al in ses.pop_alerts():
            if isinstance(al, lt.tracker_reply_alert):
                if a.ready_on == "tracker" and not ready and is_seeding(h):
                    ready = True
                    mark_ready()
            elif isinstance(al, lt.listen_succeeded_alert):
                if al.socket_type == lt.socket_type_t.tcp:
                    listening = True
            elif isinstance(al, (lt.tracker_error_alert, lt.listen_failed_alert,
                                 lt.file_error_alert, lt.torrent_error_alert)):
                print("lt_seeder:", al.message(), file=sys.stderr, flush=True)
        seeding = is_seeding(h)
        if seeding and not dialed:
            dialed = True
            for p in a.peer:
                host, port = p.rsplit(":", 1)
                h.connect_peer((host, int(port)))
        if seeding and a.dial_file:
            for p in read_lines(a.dial_file):
                if p not in dial_seen:
                    dial_seen.add(p)
                    host, port = p.rsplit(":", 1)
                    h.connect_peer((host, int(port)))
        if a.ready_on == "tracker" and seeding and a.check and not reannounced:
            # with --check the first announce may have come before the check finished
            reannounced = True
            h.force_reannounce()
        if a.ready_on == "listen" and not ready and listening and seeding:
            ready = True
            mark_ready()
        now = time.time()
        if now - last_stats >= 1.0:
            last_stats = now
            write_stats()
    write_stats()


def read_lines(path):
    try:
        with open(path) as f:
            return [ln.strip() for ln in f if ln.strip()]
    except OSError:
        return []


def is_seeding(h):
    st = h.status()
    return st.state == lt.torrent_status.seeding or (st.is_seeding and st.progress >= 1.0)


if __name__ == "__main__":
    main()
