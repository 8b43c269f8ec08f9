"""fedvault-coordinator's command line and start-up failures, without a federation.

argv: fedvault fedvault-coordinator
Checks: --help (exit 0, names every option); a missing or unknown option (exit 2 and a
pointer to --help); an agent, admin or metrics address that is malformed or already in
use: exit 1 with a sentence naming the address, and no crash (a busy admin or metrics
port aborted libuv, closing a timer that had never been initialised); the state
directory is left usable (the same command then starts and stops cleanly on SIGTERM);
--job SPEC takes a spec file with // comments and a schema path (as `job check` does).
The CA stays offline: that last run uses a copy of the coordinator's kit alone, in a
directory with no `ca/` beside it (the kit holds one private key, its own, and no CA
key), so a running coordinator cannot issue or revoke certificates.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import fvtest

fedvault, coordinator = sys.argv[1:3]
W = fvtest.WRAPPER
tmp = fvtest.tmpdir()
fvtest.run(["provision", "--federation", "cc", "--coordinator", "127.0.0.1:0", "--agents",
            "a1,a2,a3", "--admins", "ops-1", "--out", f"{tmp}/fed"], expect=0)
CFG = ["--config", f"{tmp}/fed/coordinator/coordinator.json", "--state", f"{tmp}/state"]


def coord(*args, timeout=120):
    p = subprocess.run(W + [coordinator] + list(args), capture_output=True, text=True,
                       timeout=timeout * fvtest.SLOW)
    return p.returncode, p.stdout, p.stderr


rc, out, err = coord("--help")
fvtest.check(rc == 0 and "Usage: fedvault-coordinator" in out, f"--help: {rc} {err}")
for opt in ("--config", "--state", "--job", "--out", "--listen", "--admin-listen",
            "--metrics-listen", "--max-uploads"):
    fvtest.check(opt in out, f"--help does not name {opt}")
rc, _, err = coord("--bogus")
fvtest.check(rc == 2 and "--help" in err, f"unknown option: exit {rc}: {err}")
rc, _, err = coord()
fvtest.check(rc == 2, f"no --config: exit {rc}: {err}")

busy = socket.socket()
busy.bind(("127.0.0.1", 0))
busy.listen()
bport = busy.getsockname()[1]
cases = [
    (["--listen", "127.0.0.1"], "127.0.0.1"),
    (["--listen", f"127.0.0.1:{bport}"], f"127.0.0.1:{bport}"),
    (["--listen", "127.0.0.1:0", "--admin-listen", f"127.0.0.1:{bport}"], f"{bport}"),
    (["--listen", "127.0.0.1:0", "--metrics-listen", f"127.0.0.1:{bport}"], f"{bport}"),
    (["--listen", "127.0.0.1:0", "--metrics-listen", "nowhere"], "nowhere"),
]
for args, needle in cases:
    rc, _, err = coord(*CFG, *args)
    last = err.strip().splitlines()[-1] if err.strip() else ""
    fvtest.check(rc == 1, f"{args}: exit {rc}, expected 1 (no crash)\n{err[-1500:]}")
    fvtest.check(needle in last, f"{args}: the error does not name {needle!r}: {last!r}")
    print(f"{' '.join(args)}: exit 1: {last}")
busy.close()

# --job SPEC reads a spec FILE as `fedvault job check` does: // comment lines skipped, a
# schema path relative to the spec's directory (a missing one named, exit 1), and the job
# it submits has the id job check prints.
os.makedirs(f"{tmp}/specs")
fvtest.run(["schema", "infer", "--data", os.path.join(fvtest.DATA, "german_credit.csv"),
            "--target", "class", "--positive", "bad", "--out", f"{tmp}/specs/schema.json"],
           expect=0)
_, tpl, _ = fvtest.run(["job", "template"], expect=0)
with open(f"{tmp}/specs/job.json", "w") as f:
    f.write(tpl)
with open(f"{tmp}/specs/lost.json", "w") as f:
    f.write(tpl.replace('"schema.json"', '"lost-schema.json"'))
JOBCFG = ["--config", f"{tmp}/fed/coordinator/coordinator.json", "--state", f"{tmp}/state-job",
          "--listen", "127.0.0.1:0"]
rc, _, err = coord(*JOBCFG, "--job", f"{tmp}/specs/lost.json")
fvtest.check(rc == 1 and f"{tmp}/specs/lost-schema.json" in err and "No such file" in err,
             f"--job with a missing schema file: exit {rc}: {err[-800:]}")
_, _, cerr = fvtest.run(["job", "check", f"{tmp}/specs/job.json"], expect=0)
want_id = cerr.strip().split()[-1]
p = subprocess.Popen(W + [coordinator] + JOBCFG + ["--job", f"{tmp}/specs/job.json"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
deadline = time.time() + 60 * fvtest.SLOW
line = ""
while time.time() < deadline:
    line = p.stderr.readline()
    if '"event":"job_submitted"' in line or not line:
        break
p.send_signal(signal.SIGTERM)
try:
    p.communicate(timeout=60 * fvtest.SLOW)
except subprocess.TimeoutExpired:
    p.kill()
    fvtest.fail("the daemon with --job did not stop on SIGTERM")
fvtest.check(f'"job":"{want_id}"' in line,
             f"--job with comments and a schema path: not submitted as {want_id}: {line!r}")
print(f"--job: a commented spec with a schema path submitted as {want_id[:16]}")

# The state directory is still usable: the daemon starts, listens and stops on SIGTERM,
# from a copy of its kit alone (no CA directory anywhere near it).
kit_only = f"{tmp}/kit-only/coordinator"
shutil.copytree(f"{tmp}/fed/coordinator", kit_only)
keys = [f for f in os.listdir(kit_only) if "PRIVATE KEY" in open(f"{kit_only}/{f}").read()]
fvtest.check(keys == ["key.pem"] and not os.path.exists(f"{tmp}/kit-only/ca"),
             f"the coordinator kit holds private keys {keys}: only its own key.pem belongs")
CFG = ["--config", f"{kit_only}/coordinator.json", "--state", f"{tmp}/state"]
p = subprocess.Popen(W + [coordinator] + CFG + ["--listen", "127.0.0.1:0", "--metrics-listen",
                                                 "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
deadline = time.time() + 60 * fvtest.SLOW
line = ""
while time.time() < deadline:
    line = p.stderr.readline()
    if '"event":"listening"' in line or not line:
        break
fvtest.check('"event":"listening"' in line, f"the daemon did not start: {line!r}")
p.send_signal(signal.SIGTERM)
try:
    rest = p.communicate(timeout=60 * fvtest.SLOW)[1]
except subprocess.TimeoutExpired:
    p.kill()
    fvtest.fail("the daemon did not stop on SIGTERM")
fvtest.check(p.returncode == 0, f"SIGTERM: exit {p.returncode}: {rest[-800:]}")
print("PASS")
