"""The benchmarks' shared tools (issue 20): `fedvault bench machine` and tests/bench/run_all.

argv: fedvault

1. `fedvault bench machine [--threads N] [--json]`: the line names this machine's CPUs
   online (os.cpu_count()), the OpenBLAS core and the thread count asked for; the JSON
   form agrees with the text; bad arguments are usage errors (exit 2).
2. run_all: --list names every benchmark; --combine of two runs' JSON files prints one
   Markdown table whose cells are "run 1 / run 2" (equal cells once, a shared label
   once), and refuses runs that measured different rows; an unknown --only name is
   refused before anything is built.
No benchmark is run: timing belongs to the benchmarks themselves.
"""
import json
import os
import subprocess
import sys

import fvtest

RUN_ALL = os.path.join(fvtest.SRC, "tests", "bench", "run_all")

# 1. the machine line
_, text, _ = fvtest.run(["bench", "machine", "--threads", "2"], expect=0)
line = text.strip()
cpus = os.cpu_count()
fvtest.check(f"{cpus} CPU" in line, f"machine line does not name {cpus} CPUs: {line!r}")
fvtest.check(line.endswith("2 threads"), f"machine line does not end with the threads: {line!r}")
j = fvtest.run_json(["bench", "machine", "--threads", "2"])
fvtest.check(j["machine"] == line, f"--json machine {j['machine']!r} != text {line!r}")
fvtest.check(j["blas_threads"] == 2 and j["blas_core"] and f"core {j['blas_core']}" in line,
             f"--json fields disagree with the line: {j}")
fvtest.run(["bench", "machine", "--threads", "0"], expect=2)
fvtest.run(["bench", "machine", "--bogus"], expect=2)
_, h, _ = fvtest.run(["bench", "machine", "--help"], expect=0)
fvtest.check("Usage: fedvault bench machine" in h, f"no usage in --help: {h!r}")
print(f"bench machine: {line}")


# 2. run_all
def run_all(*args, expect=0):
    p = subprocess.run([sys.executable, RUN_ALL] + list(args), capture_output=True, text=True,
                       timeout=120)
    fvtest.check(p.returncode == expect,
                 f"run_all {' '.join(args)}: exit {p.returncode}, expected {expect}\n"
                 f"{p.stdout}\n{p.stderr}")
    return p.stdout + p.stderr


names = run_all("--list").split()
for n in ("train", "threads", "latency", "secagg", "fed", "csv", "dpsgd"):
    fvtest.check(n in names, f"run_all --list lacks {n}: {names}")
out = run_all("--only", "nosuch", expect=1)
fvtest.check("unknown benchmark 'nosuch'" in out, f"no refusal of an unknown name: {out}")

d = fvtest.tmpdir()


def rows(v):
    return [{"measure": "SecAgg round", "fedvault": f"{v} s", "reference": f"bound 0.3{v[-1]} s",
             "ratio": "1.40x", "goal": "<= 1.2x bound", "met": "no"}]


runs = []
for i, v in enumerate(("0.458", "0.533")):
    p = os.path.join(d, f"run{i}.json")
    json.dump({"machine": "M", "commit": "abc", "start": f"T{i}", "rows": rows(v)}, open(p, "w"))
    runs.append(p)
table = run_all("--combine", *runs)
want = "| SecAgg round | 0.458 s / 0.533 s | bound 0.38 s / 0.33 s | 1.40x | <= 1.2x bound | no |"
fvtest.check(want in table, f"combined row not as expected:\n{table}\nwanted {want}")
fvtest.check("machine: M" in table and "T0 and T1" in table, f"no machine/run line:\n{table}")
other = os.path.join(d, "other.json")
json.dump({"machine": "M", "commit": "abc", "start": "T2",
           "rows": [dict(rows("0.5")[0], measure="another")]}, open(other, "w"))
out = run_all("--combine", runs[0], other, expect=1)
fvtest.check("different rows" in out, f"--combine took runs of different rows:\n{out}")
print("run_all: --list, --only refusal, --combine")
print("ok")
