#!/usr/bin/python3
"""Several libtorrent 2.0 peers in one process, each its own session on its own loopback address,
recording how every remote peer treats them: for choking tests (tit-for-tat, optimistic unchoke).

usage: lt_peers.py TORRENT READY_FILE TIMELINE --node NAME,IP,PORT,SAVE_PATH[,up=B][,down=B]...
                   [--connect IP:PORT]... [--seconds N] [--interval S]

Each --node is a libtorrent session listening on IP:PORT and dialling from IP, holding TORRENT in
SAVE_PATH: libtorrent checks what is there first, so a node may start with none, some or all of
the pieces. up=/down= cap that node's upload/download rate for the torrent (bytes per second);
the caps are torrent limits, which libtorrent applies to loopback peers too.

READY_FILE is written (JSON: {NAME: pieces it has}) once every node listens and has checked its
data; then each node dials the --connect peers (none: wait to be dialled).

TIMELINE gets one JSON line per node every --interval seconds (default 0.5) until SIGTERM/SIGINT
or --seconds (default 300):
  {"t": UNIX_TIME, "node": NAME, "have": PIECES, "down": PAYLOAD_BYTES_IN, "up": PAYLOAD_BYTES_OUT,
   "peers": [{"ip": "A:P", "remote_choked": B, "choked": B, "remote_interested": B,
              "interesting": B, "down": BYTES_FROM_IT, "up": BYTES_TO_IT, "client": S}]}
remote_choked: the remote peer chokes this node (libtorrent's peer_info.remote_choked);
choked: this node chokes the remote; remote_interested: the remote is interested in this node;
interesting: this node is interested in the remote.
"""
import argparse
import json
import os
import signal
import sys
import time

import libtorrent as lt
from lt_guard import guard


def parse_node(spec):
    parts = spec.split(",")
    if len(parts) < 4:
        raise argparse.ArgumentTypeError(f"--node {spec}: want NAME,IP,PORT,SAVE_PATH[,up=B][,down=B]")
    node = {"name": parts[0], "ip": parts[1], "port": int(parts[2]), "save": parts[3],
            "up": 0, "down": 0}
    for kv in parts[4:]:
        k, _, v = kv.partition("=")
        if k not in ("up", "down"):
            raise argparse.ArgumentTypeError(f"--node {spec}: unknown option {k}")
        node[k] = int(v)
    return node


def client_name(c):
    if isinstance(c, bytes):
        return c.decode("utf-8", "replace")
    return str(c)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("torrent")
    ap.add_argument("ready")
    ap.add_argument("timeline")
    ap.add_argument("--node", type=parse_node, action="append", required=True)
    ap.add_argument("--connect", action="append", default=[])
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--interval", type=float, default=0.5)
    a = ap.parse_args()
    guard("lt_peers", a.ready)

    ti = lt.torrent_info(a.torrent)
    nodes = []
    for n in a.node:
        ses = lt.session({
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "listen_interfaces": f"{n['ip']}:{n['port']}",
            "outgoing_interfaces": n["ip"],
            "allow_multiple_connections_per_ip": True,
            "alert_mask": lt.alert.category_t.error_notification
            | lt.alert.category_t.status_notification,
        })
        os.makedirs(n["save"], exist_ok=True)
        h = ses.add_torrent({"ti": ti, "save_path": n["save"]})
        if n["up"] > 0:
            h.set_upload_limit(n["up"])
        if n["down"] > 0:
            h.set_download_limit(n["down"])
        h.resume()
        nodes.append({**n, "ses": ses, "h": h, "listening": False})

    stop = False

    def on_term(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    checking = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data)
    ready = False
    out = open(a.timeline, "a", buffering=1)
    deadline = time.time() + a.seconds
    next_sample = 0.0
    while not stop and time.time() < deadline:
        for n in nodes:
            for al in n["ses"].pop_alerts():
                if isinstance(al, lt.listen_succeeded_alert):
                    if al.socket_type == lt.socket_type_t.tcp:
                        n["listening"] = True
                elif isinstance(al, (lt.listen_failed_alert, lt.file_error_alert,
                                     lt.torrent_error_alert)):
                    print(f"lt_peers {n['name']}:", al.message(), file=sys.stderr, flush=True)
        if not ready and all(n["listening"] and n["h"].status().state not in checking
                             for n in nodes):
            ready = True
            for n in nodes:
                for p in a.connect:
                    host, port = p.rsplit(":", 1)
                    n["h"].connect_peer((host, int(port)))
            tmp = a.ready + ".tmp"
            with open(tmp, "w") as f:
                json.dump({n["name"]: n["h"].status().num_pieces for n in nodes}, f)
            os.replace(tmp, a.ready)
        now = time.time()
        if ready and now >= next_sample:
            next_sample = now + a.interval
            for n in nodes:
                st = n["h"].status()
                peers = []
                for pi in n["h"].get_peer_info():
                    f = pi.flags
                    peers.append({
                        "ip": f"{pi.ip[0]}:{pi.ip[1]}",
                        "remote_choked": bool(f & lt.peer_info.remote_choked),
                        "choked": bool(f & lt.peer_info.choked),
                        "remote_interested": bool(f & lt.peer_info.remote_interested),
                        "interesting": bool(f & lt.peer_info.interesting),
                        "down": pi.total_download,
                        "up": pi.total_upload,
                        "client": client_name(pi.client),
                    })
                out.write(json.dumps({"t": round(now, 3), "node": n["name"],
                                      "have": st.num_pieces, "down": st.total_payload_download,
                                      "up": st.total_payload_upload, "peers": peers}) + "\n")
        time.sleep(0.05)
    out.close()


if __name__ == "__main__":
    main()
