"""The coordinator's longest loop callback per round, in thread CPU time (issue 14, item 5).

argv: fedvault fedvault-coordinator fedvault-agent [--model SPEC] [--agents N] [--rounds R]
      [--secagg-only]

A real federation, processes over TLS on 127.0.0.1: N agents (default 20), the shipped
Lending Club rows split round-robin into N banks, a model of about 1,000,000 parameters
(default mlp:4096,128 on the 119 features: 1,016,961 parameters, as bench_fed.py), R
training rounds (default 5) of one local epoch, no distillation, no early stopping;
SecAgg on, then the same job with SecAgg off (plain FedAvg) unless --secagg-only.

The coordinator measures every callback its libuv loop runs into the daemon's code in
thread CPU time (coordinator/coord_loopstat.c: CLOCK_THREAD_CPUTIME_ID at entry and exit,
the outermost of nested ones) and reports, in each round_done line of its log, the
longest since the previous round ended (loop_max_cpu_ms, loop_max_cb), how many callbacks
ran (loop_cb_count) and their sum (loop_cpu_ms); job_done has the same for the job's end
(after the last round: the final model stored). This prints them per round and, over the
training rounds, the median and the maximum of the longest callback, against the issue's
goal of 5 ms. Thread CPU time, not wall time: with N agents and the coordinator on this
machine's 2 cores, wall time would mostly measure preemption. Use a release build.
Nothing is asserted: timing belongs in benchmarks.
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

GOAL_MS = 5.0

ap = argparse.ArgumentParser()
ap.add_argument("fedvault")
ap.add_argument("coordinator")
ap.add_argument("agent")
ap.add_argument("--model", default="mlp:4096,128")
ap.add_argument("--agents", type=int, default=20)
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--secagg-only", action="store_true")
a = ap.parse_args()
print("machine: " + fvbench.machine(a.fedvault), flush=True)
SRC = os.environ.get("FV_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(SRC, "examples", "data", "lending_club.csv")
tmp = tempfile.mkdtemp(prefix="fv-bench-loop-")
banks = [f"bank-{i:02d}" for i in range(a.agents)]


def split(n):
    """The rows dealt round-robin into n banks' CSVs (the header copied)."""
    d = f"{tmp}/banks"
    os.makedirs(d, exist_ok=True)
    lines = open(DATA).read().splitlines(keepends=True)
    outs = [open(f"{d}/{b}.csv", "w") for b in banks]
    for o in outs:
        o.write(lines[0])
    for i, line in enumerate(lines[1:]):
        outs[i % n].write(line)
    for o in outs:
        o.close()
    return d


def federation(data, secagg):
    """Runs the job; returns the coordinator's round_done events and its job_done event."""
    label = "secagg" if secagg else "plain"
    d = f"{tmp}/{label}"
    os.makedirs(d, exist_ok=True)
    subprocess.run([a.fedvault, "provision", "--federation", "bench", "--coordinator",
                    "127.0.0.1:0", "--agents", ",".join(banks), "--admins", "ops-1",
                    "--out", f"{d}/fed"], check=True, capture_output=True)
    job = json.load(open(os.path.join(SRC, "examples", "lending-club", "job.json")))
    job.pop("distill", None)
    job.update({"model": a.model, "rounds": a.rounds, "local_epochs": 1,
                "min_agents": a.agents, "early_stopping": {"metric": "roc_auc", "patience": 0},
                "deadlines_ms": {"join": 300000, "train": 1200000, "secagg_phase": 600000}})
    if not secagg:
        job["secagg"] = "off"
    with open(f"{d}/job.json", "w") as f:
        json.dump(job, f)
    t0 = time.monotonic()
    _, log_path = fvbench.run_job(a.coordinator, a.agent, d, banks, data, f"{d}/out", label,
                                  1800)
    wall = time.monotonic() - t0
    events = [json.loads(line) for line in open(log_path) if line.startswith("{")]
    done = [e for e in events if e.get("event") == "round_done"]
    end = [e for e in events if e.get("event") == "job_done"]
    secs = {r["round"]: r["secs"] for r in map(json.loads, open(f"{d}/out/latest/rounds.jsonl"))}
    return done, end[-1] if end else None, secs, wall


def report(label, done, end, secs, wall):
    print(f"{label}: {a.agents} agents, {a.model}, {a.rounds} training rounds "
          f"({wall:.0f} s wall for the whole job)")
    print("  round  longest callback (thread CPU)          callbacks  all callbacks  round wall")
    for e in done:
        r = e["round"]
        kind = "stats" if r == 0 else "train"
        w = f"{secs[r]:8.2f} s" if r in secs else "         -"
        print(f"  {r:5d}  {e['loop_max_cpu_ms']:9.3f} ms  {e['loop_max_cb'] or '-':22s}"
              f"  {e['loop_cb_count']:9d}  {e['loop_cpu_ms']:10.1f} ms  {w}  ({kind})")
    if end is not None and "loop_max_cpu_ms" in end:
        print(f"  end    {end['loop_max_cpu_ms']:9.3f} ms  {end['loop_max_cb'] or '-':22s}"
              f"  {end['loop_cb_count']:9d}  {end['loop_cpu_ms']:10.1f} ms  (the job's end: "
              f"final model stored)")
    train = [e["loop_max_cpu_ms"] for e in done if e["round"] > 0]
    if train:
        worst = max((e for e in done if e["round"] > 0), key=lambda e: e["loop_max_cpu_ms"])
        print(f"  training rounds: longest callback median {statistics.median(train):.3f} ms, "
              f"max {max(train):.3f} ms ({worst['loop_max_cb']}, round {worst['round']}); "
              f"goal <= {GOAL_MS:g} ms: {'met' if max(train) <= GOAL_MS else 'not met'}")
    sys.stdout.flush()


print(f"bench_loop: coordinator {a.coordinator}; data {DATA}; work dir {tmp}", flush=True)
data = split(a.agents)
report("SecAgg on", *federation(data, True))
if not a.secagg_only:
    report("SecAgg off (plain FedAvg)", *federation(data, False))
