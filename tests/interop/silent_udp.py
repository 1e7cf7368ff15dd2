#!/usr/bin/env python3
"""A UDP 'tracker' that reads every datagram and never answers, counting what it got.

usage: silent_udp.py IP PORT COUNT_FILE
"""
import signal
import socket
import sys

ip, port, count_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((ip, port))
s.settimeout(0.5)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
n = 0
while True:
    try:
        s.recvfrom(4096)
    except socket.timeout:
        continue
    n += 1
    with open(count_file, "w") as f:
        f.write(f"{n}\n")
