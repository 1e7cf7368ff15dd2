# Helpers shared by interop tests. Source it from a test after `set -euo pipefail`:
#   HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/lib.sh"; rv_test_init NAME "$@"
# rv_test_init sets RV (absolute), PY (/usr/bin/python3, which has libtorrent), EV, WORK (a
# new folder under TMPDIR, the current folder from then on), pids (each is stopped and
# waited for at exit, then WORK is removed) and the pass/fail counters. A test that sets
# these up itself (its own cleanup) sources it for the rest: the counts with ok and bad,
# free_port (once PY is set), wait_tcp, wait_file, now_ms, rv_stat.

rv_test_init() { # NAME PATH_TO_RIVULET
    local name=$1
    RV=${2:?usage: $0 path/to/rivulet}
    RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
    PY=/usr/bin/python3
    EV="$HERE/rv_events.py"
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/rv-$name.XXXXXX")
    pids=()
    pass=0
    fail=0
    trap rv_test_cleanup EXIT
    trap 'exit 130' INT TERM
    cd "$WORK"
}

rv_test_cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2> /dev/null || true; done
    rm -rf "$WORK"
}

# 77 (CTest's skip) when the Python that has libtorrent cannot import it
rv_need_libtorrent() {
    $PY -c 'import libtorrent' 2> /dev/null || { echo "SKIP: $PY cannot import libtorrent"; exit 77; }
}

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

# The test's verdict and exit status; the last line of a test.
rv_test_done() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}

free_port() { $PY "$HERE/free_port.py" "$@"; } # IP: a TCP+UDP port not given before in WORK
tcp_up() { $PY -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 0.5)' "$1" "$2" 2> /dev/null; }
wait_tcp() { # IP PORT SECONDS: until something listens there
    local i
    for ((i = 0; i < $3 * 10; i++)); do tcp_up "$1" "$2" && return 0; sleep 0.1; done
    return 1
}
wait_file() { # FILE SECONDS: until FILE exists and is not empty
    local i
    for ((i = 0; i < $2 * 10; i++)); do [ -s "$1" ] && return 0; sleep 0.1; done
    return 1
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# rv_stat FILE KEY: a counter of the last stats event in FILE (rivulet --json --stats), or -1
rv_stat() { $PY "$EV" "$1" "[e for e in kind('stats')][-1].get('$2', -1) if kind('stats') else -1" | cut -d. -f1; }
