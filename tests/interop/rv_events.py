#!/usr/bin/python3
"""Questions about the NDJSON events `rivulet download --json` printed, for the download tests.

usage: rv_events.py EVENTS.ndjson EXPRESSION

Prints the value of EXPRESSION (Python), evaluated with:
  E                every event, a list of dicts, in order (lines that are not JSON are skipped)
  kind(name)       the events whose "event" is name
  verified         the set of pieces of the piece_verified events
  failed           the list of pieces of the piece_failed events (repeats kept)
  addr(ev)         the "IP:PORT" an event names (its "address", "peer" or the start of "message")
  addrs(name)      the set of addresses the events of kind name name
  finished         the last "finished" event, or None
  sent(address)    bytes that peer sent according to the finished event's "peers" summary, or
                   None when there is no such summary
  has_summary      whether the finished event carries a per-peer summary
Booleans print as True/False, sets and lists sorted.
"""
import json
import re
import sys

ADDR = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d+)")


def load(path):
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                out.append(ev)
    return out


def addr(ev):
    for key in ("address", "peer", "addr"):
        v = ev.get(key)
        if isinstance(v, str) and v:
            m = ADDR.match(v)
            return f"{m.group(1)}:{m.group(2)}" if m else v
    m = ADDR.match(str(ev.get("message", "")))
    return f"{m.group(1)}:{m.group(2)}" if m else None


def main():
    events = load(sys.argv[1])

    def kind(name):
        return [e for e in events if e.get("event") == name]

    fin = kind("finished")
    finished = fin[-1] if fin else None
    summary = finished.get("peers") if isinstance(finished, dict) else None
    has_summary = isinstance(summary, list)

    def sent(address):
        if not has_summary:
            return None
        total = 0
        for p in summary:
            if isinstance(p, dict) and addr(p) == address:
                total += int(p.get("downloaded", 0) or 0)
        return total

    env = {
        "E": events,
        "kind": kind,
        "verified": {e.get("piece") for e in kind("piece_verified")},
        "failed": [e.get("piece") for e in kind("piece_failed")],
        "addr": addr,
        "addrs": lambda name: {addr(e) for e in kind(name)} - {None},
        "finished": finished,
        "sent": sent,
        "has_summary": has_summary,
        "len": len, "set": set, "sorted": sorted, "any": any, "all": all, "sum": sum,
    }
    v = eval(sys.argv[2], env)
    if isinstance(v, (set, frozenset)):
        v = sorted(v, key=str)
    if isinstance(v, list):
        print(" ".join(str(x) for x in v))
    else:
        print(v)


if __name__ == "__main__":
    main()
