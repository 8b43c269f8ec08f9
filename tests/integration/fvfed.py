"""Setting up a Lending Club federation for the federation tests (stdlib only).

Like the main job (examples/lending-club/run.sh): 25 % of the shipped rows held out
(stratified, seed 0) as a test split drawn from every bank, the rest split into five
regional banks by state, and a provisioned federation with one kit per bank. Federations
on other data (fed-multiclass) use the parts: provision, split_iid, start_agents' data.
"""
import csv
import json
import os
import random
import sqlite3
import subprocess
import time

import fvtest

WRAPPER = fvtest.WRAPPER
SLOW = fvtest.SLOW
BANKS = ["bank-central", "bank-midwest", "bank-northeast", "bank-southeast", "bank-west"]


def setup(tmp, federation, also=()):
    """Writes tmp/train.csv, tmp/test.csv, tmp/banks/<bank>.csv and the kits in tmp/fed
    (the banks' and, for agents played by hand, those named in `also`)."""
    fvtest.run(["split", "--data", os.path.join(fvtest.DATA, "lending_club.csv"), "--target",
                "Class", "--positive", "bad", "--test-fraction", "0.25", "--seed", "0",
                "--train-out", f"{tmp}/train.csv", "--test-out", f"{tmp}/test.csv"], expect=0)
    subprocess.run(["/usr/bin/python3",
                    os.path.join(fvtest.SRC, "examples/lending-club/split_regions.py"),
                    f"{tmp}/train.csv", f"{tmp}/banks"], check=True, capture_output=True)
    provision(tmp, federation, BANKS + list(also))


def provision(tmp, federation, banks):
    """The kits in tmp/fed: the coordinator's (at 127.0.0.1:0: each test gives --listen),
    one per bank and the admin ops-1's."""
    fvtest.run(["provision", "--federation", federation, "--coordinator", "127.0.0.1:0",
                "--agents", ",".join(banks), "--admins", "ops-1", "--out", f"{tmp}/fed"],
               expect=0)


def split_iid(train, out, banks, target, seed=0):
    """An IID federation: the rows of the CSV `train` dealt into out/<bank>.csv, equal
    shares of every class (a seeded shuffle, then each class's rows dealt in turn, the
    next class starting where the last one stopped, so the banks' sizes differ by at most
    one row). Rows keep their text; the header is copied. Returns {bank: path}."""
    with open(train, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    col = header.index(target)
    random.Random(seed).shuffle(body)
    shares = {b: [] for b in banks}
    i = 0
    for label in sorted({r[col] for r in body}):
        for r in body:
            if r[col] == label:
                shares[banks[i % len(banks)]].append(r)
                i += 1
    os.makedirs(out, exist_ok=True)
    paths = {}
    for b, rs in shares.items():
        paths[b] = os.path.join(out, b + ".csv")
        with open(paths[b], "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(header)
            w.writerows(rs)
    return paths


def job_spec(**overrides):
    """The main job's spec (examples/lending-club/job.json) made small for the tests that
    exercise the machinery rather than the model: mlp:16, 3 rounds of 1 local epoch, no
    early stopping, no distillation, no explanation round, deadlines scaled for valgrind;
    then overrides."""
    job = json.load(open(os.path.join(fvtest.SRC, "examples/lending-club/job.json")))
    job.pop("distill", None)
    job.pop("explain", None)
    job.update({"model": "mlp:16", "rounds": 3, "local_epochs": 1,
                "early_stopping": {"metric": "roc_auc", "patience": 0},
                "deadlines_ms": {"join": 120000 * SLOW, "train": 120000 * SLOW,
                                 "secagg_phase": 60000 * SLOW}})
    job.update(overrides)
    return job


# ---- running a federation whose coordinator may be killed (coord-crash, fed-distill) ----

# An agent refuses a job without secure aggregation unless its policy says otherwise
# (agent/agent_job.c, require_secure_aggregation): what a plain job's agents are given.
PLAIN_OK = ("--require-secure-aggregation", "off")


def plain_args(job):
    """PLAIN_OK for a job spec (dict) with "secagg": "off", () otherwise."""
    return PLAIN_OK if job.get("secagg") == "off" else ()


def start_agents(agent, tmp, port, tag, banks=BANKS, data=None, extra=(), env=None):
    """One --once agent per bank on 127.0.0.1:port; logs and audit logs tagged `tag`.
    data: {bank: CSV path}; by default tmp/banks/<bank>.csv. extra: more agent flags;
    env: more environment variables (the agents' FV_TEST_* hooks)."""
    penv = dict(os.environ, **(env or {}))
    return {b: subprocess.Popen(
        WRAPPER + [agent, "--config", f"{tmp}/fed/{b}/agent.json", "--data",
                   data[b] if data else f"{tmp}/banks/{b}.csv", "--coordinator",
                   f"127.0.0.1:{port}", "--once", "--audit-log", f"{tmp}/{tag}-{b}-audit.log",
                   *extra],
        stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/{tag}-{b}.log", "a"), env=penv)
        for b in banks}


def run_coordinator(coordinator, tmp, tag, port, kill_at=None, extra=(), job=None, env=None):
    """fedvault-coordinator --job JOB --out tmp/tag on port, with FV_TEST_KILL_AT set to
    kill_at (or unset); its log (appended, a {"test": "start"} line first) is
    tmp/tag-coordinator.log. job: the spec's path (default tmp/job.json); env: more
    environment variables (the other FV_TEST_* hooks). Returns (process, log path)."""
    penv = dict(os.environ)
    penv.pop("FV_TEST_KILL_AT", None)
    if kill_at:
        penv["FV_TEST_KILL_AT"] = kill_at
    penv.update(env or {})
    log = f"{tmp}/{tag}-coordinator.log"
    with open(log, "a") as f:
        f.write(json.dumps({"test": "start", "kill_at": kill_at}) + "\n")
    p = subprocess.Popen(WRAPPER + [coordinator, "--config",
                                    f"{tmp}/fed/coordinator/coordinator.json", "--job",
                                    job or f"{tmp}/job.json", "--out", f"{tmp}/{tag}",
                                    "--listen", f"127.0.0.1:{port}", *extra],
                         stdout=subprocess.PIPE, stderr=open(fvtest.show_on_fail(log), "a"), text=True, env=penv)
    return p, log


def events(log, since_start=False):
    """The JSON lines of a log; with since_start, only those after the last start mark."""
    evs = []
    for line in open(log):
        try:
            evs.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    if since_start:
        last = [i for i, e in enumerate(evs) if e.get("test") == "start"][-1]
        evs = evs[last + 1:]
    return evs


def finish(p, what):
    """Waits for a coordinator; returns its stdout."""
    try:
        out, _ = p.communicate(timeout=900 * SLOW)
    except subprocess.TimeoutExpired:
        p.kill()
        fvtest.fail(f"{what}: the coordinator did not finish")
    return out


def wait_agents(procs, what):
    """Waits for the agents; each must exit 0."""
    codes = {}
    for b, p in procs.items():
        try:
            codes[b] = p.wait(timeout=300 * SLOW)
        except subprocess.TimeoutExpired:
            p.kill()
            codes[b] = "hung"
    fvtest.check(all(v == 0 for v in codes.values()), f"{what}: agents' exit codes {codes}")


def wait_exits(procs, timeout_s):
    """Waits for every process of {name: Popen} until one deadline timeout_s from now;
    those still running then are killed. Returns {name: exit code, or None if killed}."""
    deadline = time.monotonic() + timeout_s
    codes = {}
    for b, p in procs.items():
        try:
            codes[b] = p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            codes[b] = None
    return codes


def db_rows(tmp, tag, sql):
    """Rows of a query on tmp/tag/state/state.db, read-only."""
    db = sqlite3.connect(f"file:{tmp}/{tag}/state/state.db?mode=ro", uri=True)
    rows = db.execute(sql).fetchall()
    db.close()
    return rows


def run_job(coordinator, agent, tmp, tag, what):
    """tmp/job.json run to its end without interruption: a coordinator on a free port and
    the agents; both must exit 0. Returns the coordinator's summary (its last stdout line)."""
    port = fvtest.free_port()
    p, log = run_coordinator(coordinator, tmp, tag, port)
    with open(f"{tmp}/job.json") as f:
        extra = plain_args(json.load(f))
    procs = start_agents(agent, tmp, port, tag, extra=extra)
    out = finish(p, what)
    fvtest.check(p.returncode == 0, f"{what}: exit {p.returncode}\n"
                 + "\n".join(json.dumps(e) for e in events(log, since_start=True)[-10:]))
    wait_agents(procs, what)
    return json.loads(out.strip().splitlines()[-1])
