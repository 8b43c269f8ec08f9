"""Shared helpers for fedvault's integration tests (stdlib only).

Each test script is its own meson test and process. It receives the path of the
`fedvault` executable as argv[1]; FV_SOURCE_ROOT points at the source tree.
FV_TEST_WRAPPER (e.g. "valgrind --error-exitcode=1 --leak-check=full") prefixes every
fedvault invocation when set.
"""
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile

SRC = os.environ.get("FV_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(SRC, "examples", "data")
HERE = os.path.dirname(os.path.abspath(__file__))
# A process wrapper for every executable a test starts (valgrind in tests/run.sh), and
# the factor every deadline scales by under it.
WRAPPER = shlex.split(os.environ.get("FV_TEST_WRAPPER", ""))
SLOW = 20 if WRAPPER else 1


def fedvault():
    return sys.argv[1]


def run(args, expect=None, stdin=None):
    """Runs fedvault with args (stdin: bytes for its standard input); returns (code,
    stdout, stderr)."""
    p = subprocess.run(WRAPPER + [fedvault()] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=1800, input=stdin)
    if expect is not None and p.returncode != expect:
        fail(f"fedvault {' '.join(map(str, args))}: exit {p.returncode}, expected {expect}\n"
             f"--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}")
    return p.returncode, p.stdout, p.stderr


def run_json(args):
    _, out, _ = run(list(args) + ["--json"], expect=0)
    try:
        return json.loads(out)
    except json.JSONDecodeError as e:
        fail(f"not JSON ({e}): {out!r}")


# Daemon logs whose tail a failure prints (show_on_fail): a daemon that died under a
# sanitizer says why only there.
_LOGS = []


def show_on_fail(path):
    """Registers a log file (a daemon's stderr) to print the end of when the test fails."""
    if path not in _LOGS:
        _LOGS.append(path)
    return path


def _log_tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            text = f.read().splitlines()
    except OSError as e:
        return f"(cannot read: {e})"
    # A sanitizer's report is the reason, wherever it is in the log: show it whole.
    for i, ln in enumerate(text):
        if "Sanitizer" in ln and ("ERROR" in ln or "WARNING" in ln):
            return "\n".join(text[max(0, i - 5):i + 80])
    return "\n".join(text[-lines:])


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    for p in _LOGS:
        print(f"--- end of {p}\n{_log_tail(p)}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def tmpdir():
    return tempfile.mkdtemp(prefix="fv-it-")


def free_port():
    """A TCP port free on 127.0.0.1 right now, for a daemon that must keep its port
    across restarts (port 0 would give it a new one each time)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def model_params(path):
    """The float32 parameters (PARM section) of a .fvm file (format: top of model/model.c)."""
    import struct
    b = open(path, "rb").read()
    check(b[:8] == b"FVMODEL\0", f"{path}: not a model file")
    off = 16
    for _ in range(5):
        tag, n = b[off:off + 4], struct.unpack_from("<Q", b, off + 4)[0]
        if tag == b"PARM":
            cnt = struct.unpack_from("<Q", b, off + 12)[0]
            return struct.unpack_from(f"<{cnt}f", b, off + 20)
        off += 12 + n
    fail(f"{path}: no PARM section")
