"""The coordinator SIGKILLed at seven points of a job resumes it and ends with the same model.

argv: fedvault fedvault-coordinator fedvault-agent
Five banks, SecAgg, 6 training rounds, no early stopping (the result is the last update, so
every round counts). First an uninterrupted reference run. Then the same job in a fresh
state directory, with the coordinator killed (SIGKILL, through FV_TEST_KILL_AT, see
coord_log.c) and restarted on the same port each time; the agents keep running and
reconnect by themselves:
  1 stats-committed:1    right after the stats round's commit (between rounds)
  2 secagg-advertise:2   round 2, the key-advertisement phase closing
  3 secagg-shares:2      round 3, the share phase closing
  4 secagg-upload:2      round 4, the masked-input phase closing
  5 secagg-unmask:2      round 5, the unmasking phase closing
  6 model-write:1        round 5 again: its new model file is on disk, its round not
                         committed (the round is run again)
  7 round-committed:1    round 5 committed, before the agents hear of it (between rounds)
  8 no kill              rounds 6 to the end
Checks: every kill happened where it was meant to; the job finishes; each round is
committed exactly once (state.db) and produced the same model file (same SHA-256) as in
the reference run; final.fvm is byte for byte the reference's; the audit log verifies and
records every resume; a finished job is not run again by a restart with the same --job.
Equality is exact because everything random is seeded by the job (the initial model, each
agent's split, local training and stochastic rounding: job seed, round and agent name),
SecAgg masks cancel exactly, and the server optimizer's state is restored from the
checkpoint.
"""
import hashlib
import json
import signal
import sys
import time

import fvfed
import fvtest

fedvault, coordinator, agent = sys.argv[1:4]
tmp = fvtest.tmpdir()
fvfed.setup(tmp, "crash-fed")
job = fvfed.job_spec(rounds=6)
with open(f"{tmp}/job.json", "w") as f:
    json.dump(job, f)


def start_agents(port, tag):
    return fvfed.start_agents(agent, tmp, port, tag)


def run_coordinator(tag, port, kill_at=None):
    return fvfed.run_coordinator(coordinator, tmp, tag, port, kill_at)


def ok_rounds(tag):
    return fvfed.db_rows(tmp, tag, "SELECT round, attempt, kind, status, model_out FROM rounds "
                                   "ORDER BY round, attempt")


finish, wait_agents = fvfed.finish, fvfed.wait_agents


# ---- the reference run ----------------------------------------------------------------
t0 = time.time()
ref_res = fvfed.run_job(coordinator, agent, tmp, "ref", "reference run")
ref_rounds = ok_rounds("ref")
print(f"reference: {ref_res['rounds']} rounds in {time.time() - t0:.1f} s, "
      f"{len(ref_rounds)} round rows")
fvtest.check(all(r[3] == "ok" for r in ref_rounds), f"reference run had aborted rounds: "
             f"{ref_rounds}")
ref_models = {r[0]: r[4] for r in ref_rounds}

# ---- the crashing run -----------------------------------------------------------------
KILLS = ["stats-committed:1", "secagg-advertise:2", "secagg-shares:2", "secagg-upload:2",
         "secagg-unmask:2", "model-write:1", "round-committed:1"]
port = fvtest.free_port()
procs = None
t0 = time.time()
for i, k in enumerate(KILLS + [None]):
    p, log = run_coordinator("crash", port, k)
    if procs is None:
        procs = start_agents(port, "crash")
    out = finish(p, f"run {i + 1} (kill at {k})")
    mine = fvfed.events(log, since_start=True)
    if k is None:
        fvtest.check(p.returncode == 0, f"last run: exit {p.returncode}\n"
                     + "\n".join(json.dumps(e) for e in mine[-10:]))
        break
    point = k.split(":")[0]
    killed = [e for e in mine if e.get("event") == "test_kill"]
    fvtest.check(p.returncode == -signal.SIGKILL and killed and killed[0]["point"] == point,
                 f"run {i + 1}: expected a SIGKILL at {point}, exit {p.returncode}\n"
                 + "\n".join(json.dumps(e) for e in mine[-10:]))
    resumed = [e for e in mine if e.get("event") in ("job_resumed", "job_started")]
    where = resumed[0].get("next_round") if resumed else None
    done = [e["round"] for e in mine if e.get("event") == "round_done"]
    print(f"  run {i + 1}: started at round {where}, completed rounds {done}, "
          f"killed at {point}")
wait_agents(procs, "crashing run")
res = json.loads(out.strip().splitlines()[-1])
print(f"crashing run: {res['rounds']} rounds in {time.time() - t0:.1f} s over "
      f"{len(KILLS) + 1} coordinator processes")

rows = ok_rounds("crash")
okr = [r for r in rows if r[3] == "ok"]
seen = [r[0] for r in okr]
fvtest.check(len(seen) == len(set(seen)), f"a round was committed twice: {rows}")
fvtest.check(sorted(seen) == sorted(ref_models),
             f"committed rounds {sorted(seen)} differ from the reference's {sorted(ref_models)}")
for r in okr:
    fvtest.check(r[4] == ref_models[r[0]],
                 f"round {r[0]}: model {r[4]} differs from the reference's {ref_models[r[0]]}")
a = open(f"{tmp}/ref/latest/final.fvm", "rb").read()
b = open(f"{tmp}/crash/latest/final.fvm", "rb").read()
fvtest.check(a == b, "final.fvm differs from the uninterrupted run's "
             f"({hashlib.sha256(a).hexdigest()} vs {hashlib.sha256(b).hexdigest()})")
print(f"final model identical to the reference: sha256 {hashlib.sha256(b).hexdigest()[:16]}")

state = f"{tmp}/crash/state"
code, vout, verr = fvtest.run(["audit", "verify", "--log", f"{state}/audit.log", "--head",
                               f"{state}/audit.log.head", "--cert",
                               f"{tmp}/fed/coordinator/cert.pem"])
fvtest.check(code == 0, f"audit verify: exit {code}\n{vout}\n{verr}")
recs = [json.loads(l) for l in open(f"{state}/audit.log")]
ev = [r["event"] for r in recs]
fvtest.check(ev.count("job.resumed") == len(KILLS),
             f"{ev.count('job.resumed')} job.resumed records, expected {len(KILLS)}")
completed = [r["details"]["round"] for r in recs if r["event"] == "round.completed"]
fvtest.check(sorted(completed) == sorted(ref_models),
             f"round.completed records {completed} (each round exactly once)")
eids = [r["details"]["eid"] for r in recs if "eid" in r["details"]]
fvtest.check(len(eids) == len(set(eids)), "an audit record was appended twice")
print(f"audit log verifies: {len(recs)} records, {ev.count('job.resumed')} resumes")

# A restart with the same --job after the end runs nothing.
p, log = run_coordinator("crash", port)
out = finish(p, "restart after the end")
fvtest.check(p.returncode == 0 and len(ok_rounds("crash")) == len(rows),
             f"restart after the end: exit {p.returncode}, rounds {len(ok_rounds('crash'))}")
print("PASS")
