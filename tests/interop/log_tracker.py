#!/usr/bin/env python3
"""A minimal HTTP tracker for tests: answers every announce with the peers given on the command
line (compact, BEP 23) and appends each request's event to a log file, so a test can see that
'started' and 'stopped' arrived.

usage: log_tracker.py [--interval SEC] IP PORT LOG_FILE PEER_IP:PORT...
  --interval: the announce interval it asks for (default 1800)
"""
import http.server
import socket
import struct
import sys
import urllib.parse

args = sys.argv[1:]
interval = 1800
if args[:1] == ["--interval"]:
    interval = int(args[1])
    args = args[2:]
ip, port, log = args[0], int(args[1]), args[2]
peers = b""
for p in args[3:]:
    host, pport = p.rsplit(":", 1)
    peers += socket.inet_aton(host) + struct.pack(">H", int(pport))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        q = urllib.parse.urlparse(self.path).query
        event = "none"
        for part in q.split("&"):
            if part.startswith("event="):
                event = part[6:]
        with open(log, "a") as f:
            f.write(event + "\n")
        body = b"d8:intervali%de5:peers%d:%se" % (interval, len(peers), peers)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.HTTPServer((ip, port), Handler).serve_forever()
