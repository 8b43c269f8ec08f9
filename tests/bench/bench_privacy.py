"""The privacy-utility table (issue 19): test ROC AUC of the Lending Club federation at
epsilon 1, 3 and 8 (delta 1e-5), local DP-SGD and distributed noise, against the
non-private model of the same job spec (epsilon inf), and at epsilon 100 (the same DP
algorithm, clipping and sampling, with little noise: what the noise alone costs).

argv: fedvault fedvault-coordinator fedvault-agent [--eps 1,3,8,100]
      [--modes local,distributed] [--local-rounds N] [--dist-rounds N]
      [--local-opt KIND:LR] [--dist-opt KIND:LR] [--dist-q Q]
The federation of examples/lending-club/run.sh: 25 % of the shipped rows held out
(stratified, seed 0) as the test split, the rest split into five regional banks by state
(split_regions.py), SecAgg on, real processes over TLS on 127.0.0.1 (one --once agent per
bank, fedvault-coordinator --job). Each cell is one job; its final model is scored on the
test split (`fedvault eval`). The agents' ledgers (`fedvault-agent --privacy-ledger
--json`) give each job's noise multiplier and the epsilon an agent's records got.

The specs (DP-friendly: a small model, few parameters for the noise to cover, clip 1,
plain SGD, whose steps average the noise out where Adam's scaling would amplify it):
  local        logreg, 10 rounds of 1 local epoch, batch 256 (q = 256 / a bank's training
               rows), sgd lr 1.0, fedavg; DP-SGD in every local step (sigma calibrated by
               each agent to epsilon over its 10 epochs).
  distributed  logreg, 60 rounds, sample_rate 0.1 (one clipped gradient sum per round over
               a Poisson sample of 10 % of each bank's rows), sgd lr 2.0 (the round's
               step is -lr times the noisy mean clipped gradient), fedavg, secagg bits 20
               (a quantization step small beside one record's contribution), min_honest 5.
The non-private reference of each spec is the same spec without "privacy" (plain local
training: 1 epoch per round with the spec's batch and optimizer); for the distributed
spec that is a different algorithm (many local steps per round), which is why the
epsilon-100 column is there.
Takes several minutes in a release build:
  meson setup build-release -Dbuildtype=release -Db_ndebug=true && ninja -C build-release
  python3 tests/bench/bench_privacy.py build-release/cli/fedvault \\
      build-release/coordinator/fedvault-coordinator build-release/agent/fedvault-agent
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import fvbench

ap = argparse.ArgumentParser()
ap.add_argument("fedvault")
ap.add_argument("coordinator")
ap.add_argument("agent")
ap.add_argument("--eps", default="1,3,8,100")
ap.add_argument("--modes", default="local,distributed")
ap.add_argument("--local-rounds", type=int, default=10)
ap.add_argument("--dist-rounds", type=int, default=60)
ap.add_argument("--local-opt", default="sgd:1.0", help="KIND:LR of the local spec")
ap.add_argument("--dist-opt", default="sgd:2.0", help="KIND:LR of the distributed spec")
ap.add_argument("--dist-q", type=float, default=0.1, help="the distributed spec's sample_rate")
a = ap.parse_args()
print("machine: " + fvbench.machine(a.fedvault), flush=True)
SRC = os.environ.get("FV_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(SRC, "examples", "data", "lending_club.csv")
BANKS = ["bank-west", "bank-central", "bank-northeast", "bank-southeast", "bank-midwest"]
DELTA = 1e-5
EPS = [float(x) for x in a.eps.split(",") if x]
MODES = [m for m in a.modes.split(",") if m]
tmp = tempfile.mkdtemp(prefix="fv-bench-privacy-")


def fv(*args):
    p = subprocess.run([a.fedvault] + [str(x) for x in args], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"fedvault {' '.join(map(str, args))}: exit {p.returncode}\n{p.stderr}")
    return p.stdout


fv("split", "--data", DATA, "--target", "Class", "--positive", "bad", "--test-fraction", "0.25",
   "--seed", "0", "--train-out", f"{tmp}/train.csv", "--test-out", f"{tmp}/test.csv")
subprocess.run(["/usr/bin/python3", os.path.join(SRC, "examples/lending-club/split_regions.py"),
                f"{tmp}/train.csv", f"{tmp}/banks"], check=True, capture_output=True)
fv("provision", "--federation", "bench-privacy", "--coordinator", "127.0.0.1:0", "--agents",
   ",".join(BANKS), "--admins", "ops-1", "--out", f"{tmp}/fed")
base = json.load(open(os.path.join(SRC, "examples", "lending-club", "job.json")))
for k in ("distill", "explain"):
    base.pop(k, None)
base.update({"model": "logreg", "local_epochs": 1, "batch_size": 256, "min_agents": 5,
             "early_stopping": {"metric": "roc_auc", "patience": 0}, "l2": 0.0})


def opt(text):
    kind, lr = text.split(":")
    return {"kind": kind, "lr": float(lr)}


def spec(mode, eps):
    j = json.loads(json.dumps(base))
    if mode == "local":
        j.update({"name": "dp-bench-local", "rounds": a.local_rounds,
                  "optimizer": opt(a.local_opt)})
        priv = {"mode": "local"}
    else:
        j.update({"name": "dp-bench-distributed", "rounds": a.dist_rounds,
                  "optimizer": opt(a.dist_opt),
                  "secagg": {"threshold": 0, "neighbors": 0, "clip": 1.0, "bits": 20}})
        priv = {"mode": "distributed", "sample_rate": a.dist_q, "min_honest": 5}
    if eps is not None:
        priv.update({"epsilon": eps, "delta": DELTA, "clip": 1.0,
                     "outside_budget": ["stats", "metrics"]})
        j["privacy"] = priv
    return j


def test_auc(model):
    return json.loads(fv("eval", "--model", model, "--data", f"{tmp}/test.csv", "--json"))["roc_auc"]


def ledger_entry(bank, job_id):
    p = subprocess.run([a.agent, "--config", f"{tmp}/fed/{bank}/agent.json", "--privacy-ledger",
                        "--json"], capture_output=True, text=True)
    if p.returncode != 0:
        return None
    e = [x for x in json.loads(p.stdout)["entries"] if x["job"] == job_id]
    return e[0] if e else None


def cell(mode, eps):
    label = f"{mode}-{'inf' if eps is None else f'{eps:g}'}"
    d = f"{tmp}/{label}"
    os.makedirs(d)
    os.symlink(f"{tmp}/fed", f"{d}/fed")
    with open(f"{d}/job.json", "w") as f:
        json.dump(spec(mode, eps), f)
    t0 = time.monotonic()
    res, _ = fvbench.run_job(a.coordinator, a.agent, d, BANKS, f"{tmp}/banks", f"{d}/state", label,
                             7200)
    secs = time.monotonic() - t0
    auc = test_auc(f"{d}/state/latest/final.fvm")
    job_id = res.get("id") or ""
    sig = []
    for b in BANKS:
        e = ledger_entry(b, job_id) if eps is not None and job_id else None
        if e is not None:
            sig.append((b, e["sigma"], e["epsilon"], e["q"], e["steps"]))
    print(f"  {label}: test ROC AUC {auc:.4f} ({secs:.0f} s)"
          + "".join(f"\n    {b}: sigma {s:.3f}, epsilon {ep:.3f}, q {q:.4f}, {st} steps"
                    for b, s, ep, q, st in sig), flush=True)
    return auc


print(f"Lending Club, 5 regional banks, SecAgg on, delta {DELTA:g}; work dir {tmp}", flush=True)
table = {}
for mode in MODES:
    table[(mode, None)] = cell(mode, None)
    for eps in EPS:
        table[(mode, eps)] = cell(mode, eps)

cols = [f"{e:g}" for e in EPS] + ["inf"]
print("\ntest ROC AUC (rows: mode; columns: epsilon at delta 1e-05; inf = the same spec "
      "without privacy)")
print(f"{'mode':<13}" + "".join(f"{c:>9}" for c in cols))
for mode in MODES:
    print(f"{mode:<13}" + "".join(f"{table[(mode, e)]:>9.4f}" for e in EPS + [None]))
print("command: python3 tests/bench/bench_privacy.py " + " ".join(sys.argv[1:]))
