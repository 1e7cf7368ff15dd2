"""Keep a rare libtorrent crash from failing a test that is not about libtorrent.

The Python bindings of libtorrent 2.0 (Debian 12) once died of SIGSEGV in CI while an
lt_seeder.py was starting, with nothing wrong in the test; hundreds of runs by hand never showed
it again. guard() is called by the lt_*.py helpers after they parse their arguments and before
they make a session:

- it turns on faulthandler, so a crash prints the Python stack on stderr (the tests show stderr);
- with RV_LT_RESTARTS=N in the environment (CTest sets 2 for the interop and adversarial tests;
  benchmarks leave it unset, so they measure the libtorrent process itself), the process forks:
  the parent, whose PID the test holds, waits; the child returns from guard() and runs the
  script. A child killed by SIGSEGV, SIGBUS, SIGABRT, SIGILL or SIGFPE before READY exists (any
  time, without a READY file) is started again, up to N times, saying so on stderr. SIGTERM and
  SIGINT sent to the parent go to the child; the parent exits as the child did. The child dies
  with the parent (PR_SET_PDEATHSIG), so kill -9 on the PID the test holds still ends libtorrent.
  SIGSTOP cannot be forwarded: a test that freezes the peer stops the children too
  (/proc/PID/task/PID/children).
"""
import ctypes
import faulthandler
import os
import signal
import sys

_CRASHES = (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE)
_PR_SET_PDEATHSIG = 1


def guard(name, ready=None):
    try:
        restarts = int(os.environ.get("RV_LT_RESTARTS", "0") or 0)
    except ValueError:
        restarts = 0
    if restarts <= 0:
        faulthandler.enable()
        return
    parent = os.getpid()
    orig = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    state = {"child": 0, "forwarded": False}

    def forward(signum, frame):
        state["forwarded"] = True
        if state["child"]:
            try:
                os.kill(state["child"], signum)
            except ProcessLookupError:
                pass

    for s in orig:
        signal.signal(s, forward)
    attempt = 0
    while True:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            for s, h in orig.items():
                signal.signal(s, h if h is not None else signal.SIG_DFL)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took hold
                os._exit(1)
            faulthandler.enable()
            return
        state["child"] = pid
        _, status = os.waitpid(pid, 0)  # PEP 475: retried after a forwarded signal
        state["child"] = 0
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            started = ready is not None and os.path.exists(ready)
            if sig in _CRASHES and not state["forwarded"] and not started and attempt < restarts:
                attempt += 1
                print(f"{name}: libtorrent died of {signal.Signals(sig).name}; starting it again "
                      f"({attempt} of {restarts})", file=sys.stderr, flush=True)
                continue
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
            os._exit(128 + sig)
        os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)
