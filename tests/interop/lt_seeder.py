#!/usr/bin/python3
"""A libtorrent 2.0 seeder for interop tests, kept on loopback.

usage: lt_seeder.py TORRENT SAVE_PATH IP PORT READY_FILE

Seeds TORRENT from SAVE_PATH, listening on IP:PORT and making outgoing connections (tracker
announces included) from IP, so a tracker sees this peer at IP. Writes READY_FILE once a
tracker has answered an announce, then runs until SIGTERM.
"""
import signal
import sys
import time

import libtorrent as lt

torrent, save_path, ip, port, ready = sys.argv[1:6]
settings = {
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "listen_interfaces": f"{ip}:{port}",
    "outgoing_interfaces": ip,
    "allow_multiple_connections_per_ip": True,
    "announce_to_all_trackers": True,
    "announce_to_all_tiers": True,
    "alert_mask": lt.alert.category_t.status_notification | lt.alert.category_t.error_notification
    | lt.alert.category_t.tracker_notification,
}
ses = lt.session(settings)
h = ses.add_torrent({
    "ti": lt.torrent_info(torrent),
    "save_path": save_path,
    "flags": lt.torrent_flags.seed_mode,
})
h.resume()

stop = False


def on_term(signum, frame):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)
announced = False
deadline = time.time() + 600
while not stop and time.time() < deadline:
    ses.wait_for_alert(200)
    for a in ses.pop_alerts():
        if isinstance(a, lt.tracker_reply_alert) and not announced:
            announced = True
            with open(ready, "w") as f:
                f.write("ready\n")
        elif isinstance(a, (lt.tracker_error_alert, lt.listen_failed_alert)):
            print("lt_seeder:", a.message(), file=sys.stderr, flush=True)
