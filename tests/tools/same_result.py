"""Does a refactor change a result? The same job, with the same kits and data, run by two
builds of fedvault (before and after), and every model file compared.

usage: /usr/bin/python3 tests/tools/same_result.py BEFORE_BUILD AFTER_BUILD [WORKDIR]
(BUILD: a build directory holding cli/fedvault or coordinator/fedvault, and
coordinator/fedvault-coordinator, agent/fedvault-agent; the CLI of AFTER_BUILD makes the
kits and the data split once.)

The job: the Lending Club federation of the tests (fvfed.setup: five banks, SecAgg on),
mlp:16, 4 training rounds of 2 local epochs, then 3 distill rounds into an mlp:4 student
with its int8 copy, no early stopping. Every random choice derives from the job's seed,
the round and each agent's key (the same kits for both runs), so the two runs must give
the same parameters. A model file also records the build's commit (and a student the
hash of its teacher's file, which records it too), so the files are compared with those
fields masked and without their trailing checksum; anything else that differs is printed.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
os.environ.setdefault("FV_SOURCE_ROOT", os.path.abspath(os.path.join(HERE, "..", "..")))


def exe(build, *names):
    for n in names:
        if os.path.exists(os.path.join(build, n)):
            return os.path.join(build, n)
    sys.exit(f"{build}: none of {names}")


before, after = (os.path.abspath(p) for p in sys.argv[1:3])
work = os.path.abspath(sys.argv[3]) if len(sys.argv) > 3 else "/tmp/fv-same-result"
sys.argv = [sys.argv[0], exe(after, "cli/fedvault", "coordinator/fedvault")]
import fvfed  # noqa: E402  (reads sys.argv[1] as the CLI)
import fvtest  # noqa: E402

if not os.path.exists(os.path.join(work, "fed")):
    os.makedirs(work, exist_ok=True)
    fvfed.setup(work, "same-result")
job = fvfed.job_spec(rounds=4, local_epochs=2)
job["distill"] = {"student": "mlp:4", "rounds": 3, "local_epochs": 2, "quantize_int8": True,
                  "early_stopping": {"metric": "roc_auc", "patience": 0}}
with open(os.path.join(work, "job.json"), "w") as f:
    json.dump(job, f)


def run(tag, build):
    out = os.path.join(work, tag)
    shutil.rmtree(out, ignore_errors=True)
    port = fvtest.free_port()
    c = subprocess.Popen([exe(build, "coordinator/fedvault-coordinator"), "--config",
                          f"{work}/fed/coordinator/coordinator.json", "--job",
                          f"{work}/job.json", "--out", out, "--listen", f"127.0.0.1:{port}"],
                         stdout=subprocess.PIPE, stderr=open(f"{work}/{tag}.log", "w"), text=True)
    time.sleep(0.5)
    agents = fvfed.start_agents(exe(build, "agent/fedvault-agent"), work, port, tag)
    o, _ = c.communicate(timeout=900)
    for p in agents.values():
        p.wait(timeout=120)
    print(f"{tag}: exit {c.returncode}: {o.strip().splitlines()[-1][:160]}")
    return out


a, b = run("before", before), run("after", after)
norm = lambda s: re.sub(rb'"teacher":"[0-9a-f]{64}"', b'"teacher":"-"',
                        re.sub(rb'"commit":"[0-9a-f]{12}"', b'"commit":"-"', s[:-32]))
bad = 0
files = sorted(f for f in os.listdir(a) if f.endswith(".fvm"))
for f in files:
    x, y = open(os.path.join(a, f), "rb").read(), open(os.path.join(b, f), "rb").read()
    same_bytes = x == y
    ok = same_bytes or norm(x) == norm(y)
    bad += not ok
    print(f"{f}: " + ("byte-identical" if same_bytes else
                      "identical but for the commit id (and what hashes it)" if ok else
                      "DIFFERENT"))
print(f"{len(files) - bad} of {len(files)} model files the same")
sys.exit(1 if bad or not files else 0)
