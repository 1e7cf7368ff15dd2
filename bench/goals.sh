#!/usr/bin/env bash
# Benchmark: the seven performance goals in one run, rivulet side by side with the real
# clients, printed as one table of measured figures, targets and ratios. Not a test: it exits 0
# unless a benchmark's setup fails; a goal missed shows as MISSED in the table.
#
# usage: bench/goals.sh [PATH_TO_RIVULET]          (default build/rivulet)
#
# It runs, one after the other, each writing its own table to OUT/NAME.txt and one line of
# figures per client to OUT/results.txt (their RESULTS=FILE option):
#   1a  download.sh, 1 libtorrent seeder, 1 MiB pieces: rivulet, aria2c, Transmission,
#       libtorrent (default and high_performance_seed), ctorrent, rtorrent
#   1b  download.sh, 1 seeder, 256 KiB pieces: the same without Transmission and rtorrent
#   2   download.sh, 4 seeders, 1 MiB pieces: every leecher
#   3,4 seed.sh: rivulet -> libtorrent, rivulet -> rivulet, libtorrent -> libtorrent,
#       rivulet -> aria2c, libtorrent -> aria2c
#   5   verify.sh and create.sh (rivulet against libtorrent's recheck, Transmission, mktorrent,
#       and the machine's limit: cores x openssl's SHA-1 rate)
#   6   memory.sh: rivulet downloading SIZE and BIG MiB (peak RSS ratio)
#   7   idle.sh: IDLE_N small torrents seeded in one session, rivulet and transmission-daemon
# Environment: RUNS (default 3) rounds per benchmark, medians; SLOW_RUNS (default 1) rounds for
# Transmission and rtorrent in the downloads (they take 20 to 50 times longer; their rows say
# how many runs they had); SIZE (default 1024) MiB for 1 to 5; BIG (default 4096) MiB for 6;
# IDLE_N (default 1000); ONLY="1a 1b 2 3 5 6 7" runs only these parts (3 covers 3 and 4);
# OUT (default bench/out/goals-DATE) keeps every table and the summary; INSTALL=1 installs
# ctorrent and rtorrent first (apt-get). Takes about 30 minutes with the defaults; run it on an
# idle machine (`uptime` first): anything else on the 2 cores shows in every figure.
set -euo pipefail
export RIVULET_DHT_BOOTSTRAP=

HERE=$(cd "$(dirname "$0")" && pwd)
[ $# -le 1 ] || { echo "usage: $0 [PATH_TO_RIVULET]" >&2; exit 2; }
RV=${1:-$HERE/../build/rivulet}
[ -x "$RV" ] || { echo "$RV is not an executable" >&2; exit 2; }
RV=$(cd "$(dirname "$RV")" && pwd)/$(basename "$RV")
RUNS=${RUNS:-3}
SLOW_RUNS=${SLOW_RUNS:-1}
SIZE=${SIZE:-1024}
BIG=${BIG:-4096}
IDLE_N=${IDLE_N:-1000}
ONLY=${ONLY:-1a 1b 2 3 5 6 7}
for v in "$RUNS" "$SLOW_RUNS" "$SIZE" "$BIG" "$IDLE_N"; do
    case $v in '' | *[!0-9]* | 0) echo "RUNS, SLOW_RUNS, SIZE, BIG and IDLE_N must be positive numbers" >&2; exit 2 ;; esac
done
for p in $ONLY; do
    case $p in 1a | 1b | 2 | 3 | 5 | 6 | 7) ;; *) echo "ONLY takes 1a 1b 2 3 5 6 7, not $p" >&2; exit 2 ;; esac
done
if [ "${INSTALL:-0}" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y ctorrent rtorrent >&2
fi
OUT=${OUT:-$HERE/out/goals-$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd) # absolute: the benchmarks it runs work in folders of their own
RESULTS=$OUT/results.txt
: >"$RESULTS"
export RESULTS

want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }
part() { # NAME CMD...: runs one benchmark, its table to OUT/NAME.txt, progress to stderr
    local name=$1 t0 rc=0
    shift
    t0=$(date +%s)
    echo "== $name: $*  ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    "$@" >"$OUT/$name.txt" 2>"$OUT/$name.err" || rc=$?
    echo "   $name took $(($(date +%s) - t0)) s, exit $rc" >&2
    if [ $rc -ne 0 ]; then
        echo "$name failed (exit $rc):" >&2
        tail -n 20 "$OUT/$name.err" >&2
    fi
    return 0
}

T0=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
want 1a && part download-1seed-1m env RUNS="$RUNS" SLOW_RUNS="$SLOW_RUNS" SEEDERS=1 PIECE_KIB=1024 \
    "$HERE/download.sh" "$RV" "$SIZE"
want 1b && part download-1seed-256k env RUNS="$RUNS" SEEDERS=1 PIECE_KIB=256 \
    LEECHERS="rivulet aria2 libtorrent libtorrent-hp ctorrent" "$HERE/download.sh" "$RV" "$SIZE"
want 2 && part download-4seed-1m env RUNS="$RUNS" SLOW_RUNS="$SLOW_RUNS" SEEDERS=4 PIECE_KIB=1024 \
    "$HERE/download.sh" "$RV" "$SIZE"
want 3 && part seed "$HERE/seed.sh" "$RV" "$SIZE" "$RUNS"
want 5 && part verify env RUNS="$RUNS" "$HERE/verify.sh" "$RV" "$SIZE"
want 5 && part create env RUNS="$RUNS" "$HERE/create.sh" "$RV" "$SIZE"
want 6 && part memory env RUNS="$RUNS" ANCHOR=none "$HERE/memory.sh" "$RV" "$SIZE" "$BIG"
want 7 && part idle "$HERE/idle.sh" "$RV" "$IDLE_N"

# ---------------------------------------------------------------- the goals table
{
    echo "bench/goals.sh, $(date -u +%Y-%m-%d), $(uname -m) $(nproc) cores" \
        "($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal:/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo);" \
        "RUNS=$RUNS SLOW_RUNS=$SLOW_RUNS SIZE=$SIZE BIG=$BIG IDLE_N=$IDLE_N; load average at the start $LOAD0;" \
        "$(($(date +%s) - T0)) s in all"
    echo "rivulet $("$RV" --version 2>/dev/null | head -n 1 | awk '{ print $NF }')," \
        "libtorrent $(/usr/bin/python3 -c 'import libtorrent as lt; print(lt.__version__)' 2>/dev/null || echo '?')," \
        "aria2c $(aria2c --version 2>/dev/null | awk 'NR == 1 { print $3 }')," \
        "transmission $(transmission-daemon -V 2>&1 | awk '{ print $2 }' | head -n 1)," \
        "ctorrent $(ctorrent -h 2>&1 | awk 'NR == 1 { print $3 }')," \
        "rtorrent $(rtorrent -h 2>&1 | awk 'NR == 1 { sub(/\.$/, "", $NF); print $NF }')"
    echo
    /usr/bin/python3 - "$RESULTS" <<'PY'
import sys

rows = []
for line in open(sys.argv[1]):
    f = line.split()
    if not f:
        continue
    d = {"kind": f[0]}
    for kv in f[1:]:
        k, _, v = kv.partition("=")
        try:
            d[k] = float(v)
        except ValueError:
            d[k] = v
    rows.append(d)

def pick(kind, **kw):
    return [r for r in rows if r["kind"] == kind and all(r.get(k) == v for k, v in kw.items())]

NAMES = {"rivulet": "rivulet", "aria2": "aria2c", "transmission": "Transmission",
         "libtorrent": "libtorrent", "libtorrent-hp": "libtorrent (hp)", "ctorrent": "ctorrent",
         "rtorrent": "rtorrent", "lt-default": "libtorrent recheck", "lt-threads":
         "libtorrent recheck (2 threads)", "mktorrent": "mktorrent -t cores",
         "transmission-cli": "transmission-cli -v"}
out = []
def row(goal, what, rv, anchors, target, ok):
    out.append("| %s | %s | %s | %s | %s | %s |" % (goal, what, rv, anchors, target,
               "-" if ok is None else ("met" if ok else "MISSED")))

def good(r):
    return r.get("ok", 1) == r.get("runs", 1) and r.get("ok", 1) > 0

def runs_note(r, runs):
    return "" if r["runs"] >= runs else " (%d run%s)" % (r["runs"], "" if r["runs"] == 1 else "s")

def download_goal(goal, seeders, pk, rate_factor, aim):
    rs = pick("download", seeders=seeders, piece_kib=pk)
    rv = [r for r in rs if r["tool"] == "rivulet"]
    an = [r for r in rs if r["tool"] != "rivulet" and good(r)]
    if not rv:
        return
    rv = rv[0]
    runs = max(r["runs"] for r in rs)
    if not good(rv):
        row(goal, "download", "FAILED", "", "", False)
        return
    desc = "%d seeder%s, %d KiB pieces" % (seeders, "" if seeders == 1 else "s", pk)
    allan = ", ".join("%s %.0f%s" % (NAMES[r["tool"]], r["mibs"], runs_note(r, runs))
                      for r in sorted(an, key=lambda r: -r["mibs"]))
    if an:
        best = max(an, key=lambda r: r["mibs"])
        need = rate_factor * best["mibs"]
        tgt = ">= %.0f (%s%s)" % (need, "" if rate_factor == 1 else "%.1fx " % rate_factor,
                                  NAMES[best["tool"]])
        if aim:
            tgt += "; aim %.0f" % (aim * best["mibs"])
        row(goal, desc + ": MiB/s", "%.0f (%.2fx the best)" % (rv["mibs"], rv["mibs"] / best["mibs"]),
            allan, tgt, rv["mibs"] >= need)
        lean = min(an, key=lambda r: r["cpu_gib"])
        row(goal, desc + ": CPU s/GiB", "%.2f (%.2fx the leanest)" % (rv["cpu_gib"], rv["cpu_gib"] / lean["cpu_gib"]),
            ", ".join("%s %.2f" % (NAMES[r["tool"]], r["cpu_gib"]) for r in sorted(an, key=lambda r: r["cpu_gib"])),
            "<= %.2f (half of %s)" % (lean["cpu_gib"] / 2, NAMES[lean["tool"]]),
            rv["cpu_gib"] <= lean["cpu_gib"] / 2)
        ct = [r for r in an if r["tool"] == "ctorrent"]
        if ct:
            row(goal, desc + ": peak RSS MiB", "%.1f" % rv["rss_mib"],
                ", ".join("%s %.0f" % (NAMES[r["tool"]], r["rss_mib"]) for r in sorted(an, key=lambda r: r["rss_mib"])),
                "<= %.1f (ctorrent)" % ct[0]["rss_mib"], rv["rss_mib"] <= ct[0]["rss_mib"])
        thr = lambda r: ("; busiest thread %.0f%%" % (100 * r["seed_thread"])) if "seed_thread" in r else ""
        row(goal, desc + ": seeders' CPU s/GiB", "%.2f%s while rivulet downloads" % (rv["seed_cpu_gib"], thr(rv)),
            ", ".join("%s %.2f%s" % (NAMES[r["tool"]], r["seed_cpu_gib"], thr(r)) for r in an),
            "(context: where the seeders' CPU caps the rate)", None)

download_goal("1", 1, 1024, 1.0, 1.5)
download_goal("1", 1, 256, 1.0, 1.5)
download_goal("2", 4, 1024, 1.5, None)

seed = {r["pair"]: r for r in pick("seed")}
def cpu2(r):
    return "%.0f MiB/s, CPU s/GiB seeder %.2f + leecher %.2f" % (r["mibs"], r["seed_cpu_gib"], r["leech_cpu_gib"])
if "rv-rv" in seed and "lt-lt" in seed:
    a, b = seed["rv-rv"], seed["lt-lt"]
    row("3", "rivulet -> rivulet vs libtorrent -> libtorrent", cpu2(a) + " (%.2fx)" % (a["mibs"] / b["mibs"]),
        "libtorrent -> libtorrent: " + cpu2(b), ">= 2x the rate", good(a) and a["mibs"] >= 2 * b["mibs"])
for rvp, ltp, who in (("rv-lt", "lt-lt", "libtorrent"), ("rv-aria2", "lt-aria2", "aria2c")):
    if rvp in seed and ltp in seed:
        a, b = seed[rvp], seed[ltp]
        row("4", "seeding to %s: MiB/s" % who, "%.0f (%.2fx)" % (a["mibs"], a["mibs"] / b["mibs"]),
            "libtorrent seeding: %.0f" % b["mibs"], ">= 1x", good(a) and a["mibs"] >= b["mibs"])
        row("4", "seeding to %s: seeder CPU s/GiB" % who,
            "%.2f (%.2fx)" % (a["seed_cpu_gib"], a["seed_cpu_gib"] / max(b["seed_cpu_gib"], 1e-3)),
            "libtorrent seeding: %.2f" % b["seed_cpu_gib"], "< 1x", a["seed_cpu_gib"] < b["seed_cpu_gib"])

for kind, others in (("verify", ("lt-default", "lt-threads", "transmission")),
                     ("create", ("mktorrent", "transmission"))):
    rs = {r["tool"]: r for r in pick(kind)}
    if "rivulet" not in rs:
        continue
    rv = rs["rivulet"]
    lim = rv["limit_mibs"]
    row("5", "%s: MiB/s of the limit" % kind, "%.0f (%.0f%%)" % (rv["mibs"], 100 * rv["mibs"] / lim),
        "limit %d (cores x openssl sha1, one piece at a time; all cores at once, openssl -multi: %d; "
        "rivulet hashes up to 16 pieces at once where the CPU has AVX-512 or SHA-NI)" % (lim, rv.get("multi_mibs", 0)),
        ">= 80%", rv["mibs"] >= 0.8 * lim)
    rivals = [rs[t] for t in others if t in rs and t != "transmission"]
    names = {"transmission": "transmission-cli -v" if kind == "verify" else "transmission-create"}
    allr = ", ".join("%s %.0f" % (names.get(t, NAMES.get(t, t)), rs[t]["mibs"]) for t in others if t in rs)
    if rivals:
        best = max(rivals, key=lambda r: r["mibs"])
        row("5", "%s: vs %s" % (kind, "libtorrent" if kind == "verify" else "mktorrent"),
            "%.2fx %s" % (rv["mibs"] / best["mibs"], NAMES[best["tool"]]), allr, ">= 1.5x",
            rv["mibs"] >= 1.5 * best["mibs"])

mem = {int(r["size_mib"]): r for r in pick("memory", tool="rivulet")}
if len(mem) >= 2:
    lo, hi = min(mem), max(mem)
    ratio = mem[hi]["rss_mib"] / mem[lo]["rss_mib"]
    row("6", "peak RSS, %d MiB vs %d MiB torrent" % (hi, lo),
        "%.1f vs %.1f MiB (%.3f)" % (mem[hi]["rss_mib"], mem[lo]["rss_mib"], ratio), "", "<= 1.10",
        ratio <= 1.10 and good(mem[hi]) and good(mem[lo]))

idle = {r["tool"]: r for r in pick("idle")}
if "rivulet" in idle:
    r = idle["rivulet"]
    t = idle.get("transmission")
    tr = lambda k, fmt: ("transmission-daemon " + fmt % t[k]) if t else ""
    n = int(r["torrents"])
    row("7", "%d idle torrents: CPU %% of a core" % n, "%.3f" % r["cpu_pct"], tr("cpu_pct", "%.3f"), "< 1", r["cpu_pct"] < 1)
    row("7", "%d idle torrents: RSS MiB" % n, "%.1f" % r["rss_mib"], tr("rss_mib", "%.1f"), "< 100", r["rss_mib"] < 100)
    row("7", "%d idle torrents: restart s" % n, "%.2f" % r["restart_s"], tr("restart_s", "%.2f"), "< 2", r["restart_s"] < 2)

print("| goal | measure | rivulet | the others, same run | target | |")
print("|---|---|---|---|---|---|")
print("\n".join(out))
PY
    echo
    echo "Medians of RUNS rounds; every table behind this one is in $OUT."
} | tee "$OUT/goals.txt"
