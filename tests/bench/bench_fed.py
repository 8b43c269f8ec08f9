"""The cost of secure aggregation in a real federation, and the coordinator's memory.

argv: fedvault fedvault-coordinator fedvault-agent [--model SPEC] [--rounds N]
      [--skip-rss] [--json-out FILE]

All in one run, real processes over TLS on 127.0.0.1, the shipped Lending Club rows
split round-robin into N banks, and the job spec of this benchmark, tests/bench/
fed_job.json: training rounds only (no distillation, no explanation round), a model of
about 1,000,000 parameters (mlp:4096,128 on the 119 features: 1,016,961 parameters), one
local epoch per round, 8 rounds, no early stopping; its schema is the one of
examples/lending-club/job.json, put in at run time (the spec file has no "schema" key).
  1. 10 agents, SecAgg on vs off (plain FedAvg over TLS): the wall time of each training
     round (rounds.jsonl lines of kind "train"; round 0, the secure statistics round, is
     not one) as the coordinator measures it (ROUND_START to the update applied). Printed:
     each round's time on and off, the ratio of round i on to round i off, and the median
     and range of those ratios (the first issue's ceiling: 1.5).
  2. SecAgg on with 5 and with 20 agents (2 rounds each): the coordinator's peak RSS
     (getrusage, reported in its result), and the growth from 5 to 20 (the issue asks for
     < 20 %: masked inputs are added into one accumulator as they arrive and uploads are
     admitted two at a time, so memory does not follow the cohort).
Both agents and coordinator share this machine's 2 cores, so round times include every
agent's local training; the SecAgg overhead is what the ratio isolates. The last line is
one JSON object (also written to --json-out): tests/bench/run_all reads it.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import fvbench

ap = argparse.ArgumentParser()
ap.add_argument("fedvault")
ap.add_argument("coordinator")
ap.add_argument("agent")
ap.add_argument("--model", help="override fed_job.json's model")
ap.add_argument("--rounds", type=int, help="override fed_job.json's rounds (default 8)")
ap.add_argument("--skip-rss", action="store_true", help="only part 1")
ap.add_argument("--json-out", help="also write the result object to this file")
a = ap.parse_args()
SRC = os.environ.get("FV_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(SRC, "examples", "data", "lending_club.csv")
tmp = tempfile.mkdtemp(prefix="fv-bench-fed-")
base_job = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "fed_job.json")))
base_job["schema"] = json.load(open(os.path.join(SRC, "examples", "lending-club",
                                                 "job.json")))["schema"]
if a.model:
    base_job["model"] = a.model
if a.rounds:
    base_job["rounds"] = a.rounds


def split(n):
    d = f"{tmp}/banks{n}"
    os.makedirs(d, exist_ok=True)
    lines = open(DATA).read().splitlines(keepends=True)
    outs = [open(f"{d}/bank-{i:02d}.csv", "w") for i in range(n)]
    for o in outs:
        o.write(lines[0])
    for i, line in enumerate(lines[1:]):
        outs[i % n].write(line)
    for o in outs:
        o.close()
    return d


def federation(n, secagg, rounds=None):
    label = f"n{n}-{'on' if secagg else 'off'}"
    d = f"{tmp}/{label}"
    banks = [f"bank-{i:02d}" for i in range(n)]
    os.makedirs(d, exist_ok=True)
    subprocess.run([a.fedvault, "provision", "--federation", "bench", "--coordinator",
                    "127.0.0.1:0", "--agents", ",".join(banks), "--admins", "ops-1",
                    "--out", f"{d}/fed"], check=True, capture_output=True)
    data = split(n)
    job = dict(base_job)
    job["min_agents"] = n
    if rounds is not None:
        job["rounds"] = rounds
    if not secagg:
        job["secagg"] = "off"
    with open(f"{d}/job.json", "w") as f:
        json.dump(job, f)
    res, _ = fvbench.run_job(a.coordinator, a.agent, d, banks, data, f"{d}/state", label, 3600)
    lines = [json.loads(l) for l in open(f"{d}/state/latest/rounds.jsonl")]
    secs = [r["secs"] for r in lines if r.get("kind") == "train"]
    if len(secs) != job["rounds"]:
        sys.exit(f"{label}: {len(secs)} training rounds in rounds.jsonl, the job has "
                 f"{job['rounds']}; see {d}")
    return res, secs


print("machine: " + fvbench.machine(a.fedvault), flush=True)
print(f"model {base_job['model']}, {base_job['rounds']} training rounds of "
      f"{base_job['local_epochs']} local epoch(s), Lending Club rows split round-robin "
      f"(tests/bench/fed_job.json)", flush=True)
on, on_secs = federation(10, True)
off, off_secs = federation(10, False)
ratios = [x / y for x, y in zip(on_secs, off_secs)]
m_on, m_off, m_r = (statistics.median(v) for v in (on_secs, off_secs, ratios))
print(f"10 agents, training round wall time (s), round by round:")
print("  round   " + " ".join(f"{i + 1:7d}" for i in range(len(on_secs))))
print("  on      " + " ".join(f"{s:7.3f}" for s in on_secs))
print("  off     " + " ".join(f"{s:7.3f}" for s in off_secs))
print("  on/off  " + " ".join(f"{r:7.2f}" for r in ratios))
print(f"SecAgg on / off per training round: median {m_r:.2f}, range [{min(ratios):.2f}, "
      f"{max(ratios):.2f}] over {len(ratios)} rounds (median round on {m_on:.3f} s, off "
      f"{m_off:.3f} s; the ceiling: 1.5)", flush=True)
result = {"bench": "fed", "model": base_job["model"], "rounds": len(ratios),
          "on_secs": on_secs, "off_secs": off_secs, "ratio_median": m_r,
          "ratio_min": min(ratios), "ratio_max": max(ratios), "on_median_s": m_on,
          "off_median_s": m_off}
if not a.skip_rss:
    r5, _ = federation(5, True, rounds=2)
    r20, _ = federation(20, True, rounds=2)
    k5, k20 = r5["max_rss_kb"], r20["max_rss_kb"]
    print(f"coordinator peak RSS, SecAgg on: 5 agents {k5 / 1024:.1f} MiB, 20 agents "
          f"{k20 / 1024:.1f} MiB: growth {100 * (k20 - k5) / k5:+.1f} % (the ceiling: 20 %)")
    print(f"(10 agents: on {on['max_rss_kb'] / 1024:.1f} MiB, off "
          f"{off['max_rss_kb'] / 1024:.1f} MiB)")
    result.update(rss5_kb=k5, rss20_kb=k20, rss_growth=(k20 - k5) / k5)
print(json.dumps(result))
if a.json_out:
    with open(a.json_out, "w") as f:
        json.dump(result, f)
