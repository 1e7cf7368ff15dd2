#!/usr/bin/python3
"""A libtorrent 2.0 session with its DHT on, for private loopback DHT tests.

usage: lt_dht.py IP PORT --bootstrap HOST:PORT [--seed TORRENT SAVE | --leech MAGNET SAVE]
                 [--ready FILE] [--status FILE] [--seconds N]

Joins the DHT through --bootstrap only (no LSD, UPnP, NAT-PMP, uTP; the routing-table IP
restrictions off, since every node here shares 127.0.0.0/8). --seed seeds TORRENT from SAVE and
announces it in the DHT (libtorrent does so for any public torrent); --leech downloads a magnet
link, finding peers through the DHT alone, and exits 0 once finished ("finished in S s" on
stdout). --ready FILE is written once the session listens; --status FILE gets a JSON line each
second: {"dht_nodes": N, "peers": N, "progress": P}. Runs until --seconds or SIGTERM.
"""
import argparse
import json
import os
import signal
import sys
import time

import libtorrent as lt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ip")
    ap.add_argument("port", type=int)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--seed", nargs=2)
    ap.add_argument("--leech", nargs=2)
    ap.add_argument("--ready")
    ap.add_argument("--status")
    ap.add_argument("--seconds", type=float, default=120)
    a = ap.parse_args()
    iface = (f"[{a.ip}]" if ":" in a.ip else a.ip) + f":{a.port}"
    ses = lt.session({
        "enable_dht": True, "dht_bootstrap_nodes": a.bootstrap,
        "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "listen_interfaces": iface, "outgoing_interfaces": a.ip,
        "allow_multiple_connections_per_ip": True,
        "dht_restrict_routing_ips": False, "dht_restrict_search_ips": False,
        "dht_ignore_dark_internet": False,
        "alert_mask": lt.alert.category_t.status_notification
        | lt.alert.category_t.error_notification | lt.alert.category_t.dht_notification,
    })
    h = None
    if a.seed:
        h = ses.add_torrent({"ti": lt.torrent_info(a.seed[0]), "save_path": a.seed[1],
                             "flags": lt.torrent_flags.seed_mode})
    elif a.leech:
        p = lt.parse_magnet_uri(a.leech[0])
        p.save_path = a.leech[1]
        h = ses.add_torrent(p)
    if h is not None:
        h.resume()
    stop = False

    def on_term(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    t0 = time.time()
    ready = False
    last = 0.0
    last_announce = 0.0
    while not stop and time.time() - t0 < a.seconds:
        ses.wait_for_alert(100)
        for al in ses.pop_alerts():
            if isinstance(al, lt.listen_succeeded_alert) and a.ready and not ready:
                ready = True
                with open(a.ready, "w") as f:
                    f.write("ready\n")
            elif isinstance(al, (lt.listen_failed_alert, lt.file_error_alert,
                                 lt.torrent_error_alert)):
                print("lt_dht:", al.message(), file=sys.stderr, flush=True)
        st = ses.status()
        nodes = getattr(st, "dht_nodes", 0)
        # Announce again every few seconds until peers can find us (libtorrent otherwise
        # waits for its DHT announce interval).
        if h is not None and nodes > 0 and time.time() - last_announce > 5:
            last_announce = time.time()
            h.force_dht_announce()
        if a.status and time.time() - last >= 1:
            last = time.time()
            tst = h.status() if h is not None else None
            tmp = a.status + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"dht_nodes": nodes, "peers": tst.num_peers if tst else 0,
                           "progress": tst.progress if tst else 0}, f)
            os.replace(tmp, a.status)
        if a.leech and h.status().is_finished:
            h.flush_cache()
            print(f"finished in {time.time() - t0:.2f} s", flush=True)
            sys.exit(0)
    sys.exit(1 if a.leech else 0)


if __name__ == "__main__":
    main()
