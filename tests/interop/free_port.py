#!/usr/bin/env python3
"""Prints a port that is free for both TCP and UDP on IP and that this test has not been
given before.

usage: free_port.py [IP]        (IP defaults to 127.0.0.1; an IPv6 address works too)

The kernel picks the port (bind to port 0), and the sockets are closed before the port is
printed, so two calls in a row can get the same number: a test that then starts two
listeners on it fails with "Address already in use". Every port handed out is therefore
written to .rv-ports in the current folder (a test's own work folder), under a lock, and a
port already there for the same IP is never handed out again.
"""
import fcntl
import os
import socket
import sys

ip = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
ledger = os.path.join(os.getcwd(), ".rv-ports")

with open(ledger, "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    f.seek(0)
    given = set(f.read().split())
    for _ in range(1000):
        t = socket.socket(fam)
        u = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            t.bind((ip, 0))
            port = t.getsockname()[1]
            u.bind((ip, port))
        except OSError:
            continue
        finally:
            t.close()
            u.close()
        if f"{ip},{port}" not in given:
            f.write(f"{ip},{port}\n")
            print(port)
            sys.exit(0)
sys.exit(f"free_port.py: no free port on {ip} after 1000 tries")
