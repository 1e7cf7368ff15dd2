#!/usr/bin/python3
"""A libtorrent 2.0 leecher for interop tests and benchmarks, kept on loopback.

usage: lt_leecher.py TORRENT|MAGNET SAVE_PATH IP PORT [--peer IP:PORT]... [--seconds N]
                     [--high-performance] [--peers-file FILE] [--linger N]

Downloads TORRENT (or a magnet link, whose metadata then comes from the peers) into SAVE_PATH, listening on IP:PORT and dialling (trackers included) from
IP. Exits 0 as soon as every piece has passed its hash check (libtorrent's torrent_finished),
1 on timeout (default 600 s) or error, 130 on SIGTERM/SIGINT. Prints one line at the end:
"finished in S s, N hash failures, downloaded B bytes". --peers-file FILE keeps a JSON list of
the peers met so far ({"ip", "port", "pex": learnt through PEX, "client"}), rewritten every
second; --linger N stays N more seconds after finishing (so PEX can be seen); --done-file FILE
gets the wall clock in nanoseconds (time.time_ns()) at the moment libtorrent says finished, for
benchmarks that time every client to its own completion signal.
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
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--high-performance", action="store_true")
    ap.add_argument("--peers-file")
    ap.add_argument("--linger", type=float, default=0)
    ap.add_argument("--done-file")
    ap.add_argument("--enc", choices=["forced", "enabled", "disabled"])
    ap.add_argument("--enc-level", choices=["rc4", "plaintext", "both"])
    a = ap.parse_args()
    guard("lt_leecher")

    settings = lt.high_performance_seed() if a.high_performance else {}
    settings.update({
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "listen_interfaces": f"{a.ip}:{a.port}",
        "outgoing_interfaces": a.ip,
        "allow_multiple_connections_per_ip": True,
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "alert_mask": lt.alert.category_t.status_notification
        | lt.alert.category_t.error_notification,
    })
    t0 = time.time()
    # Message Stream Encryption: in and out policy, and the crypto allowed
    if a.enc:
        pol = getattr(lt.enc_policy, "pe_" + a.enc)
        settings.update({"out_enc_policy": int(pol), "in_enc_policy": int(pol)})
    if a.enc_level:
        settings["allowed_enc_level"] = int(getattr(lt.enc_level, "pe_" + a.enc_level))
    ses = lt.session(settings)
    if a.torrent.startswith("magnet:"):
        params = lt.parse_magnet_uri(a.torrent)
        params.save_path = a.save_path
        h = ses.add_torrent(params)
    else:
        h = ses.add_torrent({"ti": lt.torrent_info(a.torrent), "save_path": a.save_path})
    h.resume()
    for p in a.peer:
        host, port = p.rsplit(":", 1)
        h.connect_peer((host, int(port)))

    stop = False

    def on_term(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    met = {}
    last_report = 0.0

    def report():
        for p in h.get_peer_info():
            ip, port = p.ip
            key = f"{ip}:{port}"
            e = met.setdefault(key, {"ip": ip, "port": port, "pex": False,
                                     "client": p.client.decode("utf-8", "replace")
                                     if isinstance(p.client, bytes) else str(p.client)})
            if p.source & lt.peer_info.pex:
                e["pex"] = True
        if a.peers_file:
            tmp = a.peers_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump(list(met.values()), f)
            os.replace(tmp, a.peers_file)

    failures = 0
    done = False
    finished_at = None
    deadline = t0 + a.seconds
    while not stop and time.time() < deadline:
        if done and finished_at is None:
            finished_at = time.time()
            if a.done_file:
                with open(a.done_file, "w") as f:
                    f.write(f"{time.time_ns()}\n")
        if finished_at is not None and time.time() - finished_at >= a.linger:
            break
        if time.time() - last_report >= 1:
            last_report = time.time()
            report()
        ses.wait_for_alert(100)
        for al in ses.pop_alerts():
            if isinstance(al, lt.torrent_finished_alert):
                done = True
            elif isinstance(al, lt.hash_failed_alert):
                failures += 1
            elif isinstance(al, (lt.file_error_alert, lt.torrent_error_alert,
                                 lt.listen_failed_alert)):
                print("lt_leecher:", al.message(), file=sys.stderr, flush=True)
        if not done and h.status().is_finished:
            done = True
    report()
    st = h.status()
    # libtorrent writes through its disk threads: wait for the data to reach the files
    h.flush_cache()
    dt = time.time() - t0
    print(f"{'finished' if done else 'stopped'} in {dt:.2f} s, {failures} hash failures, "
          f"downloaded {st.total_payload_download} bytes", flush=True)
    sys.exit(0 if done else (130 if stop else 1))


if __name__ == "__main__":
    main()
