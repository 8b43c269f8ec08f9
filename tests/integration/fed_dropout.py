"""Dropouts in a real SecAgg federation: agents killed at each point of a round.

argv: fedvault fedvault-coordinator fedvault-agent
Five banks, SecAgg classic (k = 4, t = 4: one dropout tolerated per round), min_agents 5.
Each dropout is injected by the agent itself at a protocol point (FV_TEST_KILL_AT, see
agent/agent.c: it SIGKILLs itself there, no goodbye), never by timing, so the same
dropouts happen on every machine and in every build (release, ASan, valgrind):
  round 2  bank-central at before-masked: it advertised its keys and sent its shares,
           never its masked input. The coordinator must remove its pairwise masks from
           the survivors' sum with the shares of its s_sk: 4 contributors.
  round 3  bank-midwest at mid-masked: its masked upload announced (VEC_BEGIN), the
           first chunk never sent: 4 contributors.
  round 4  bank-west at after-masked: the coordinator acknowledged its whole masked
           input, so it is in U3 and the sum includes it; the coordinator needs the
           shares of its b_u from the others: 5 contributors.
  round 5  bank-northeast and bank-southeast at round-start: 3 survivors < t = 4, the
           round must abort cleanly (FV_ETHRESHOLD), be run again under the same number
           (an aborted round does not use up one of the job's rounds), and complete.
Each killed agent is restarted at once (same kit, same data, no hook) and must rejoin:
min_agents 5 makes every later round wait for the whole cohort. The job must finish,
every completed round must have the expected number of contributors, and the final
model must be a real one (val ROC AUC well above chance).
"""
import json
import os
import signal
import subprocess
import sys
import time

import fvfed
import fvtest

fedvault, coordinator, agent = sys.argv[1:4]
WRAPPER = fvfed.WRAPPER
S = fvfed.SLOW
SRC = fvtest.SRC
tmp = fvtest.tmpdir()
BANKS = fvfed.BANKS
fvfed.setup(tmp, "drop-fed")
job = json.load(open(os.path.join(SRC, "examples/lending-club/job.json")))
job.pop("distill", None)  # training rounds only (distillation: fed-distill)
job.pop("explain", None)  # (the explain round: fed-exact)
# Slow enough rounds (local training of about a second) for the test to act inside them.
# The dropouts are at protocol points, not times: a small, fast model will do.
job.update({"model": "logreg", "rounds": 8, "local_epochs": 5, "min_agents": 5,
            "early_stopping": {"metric": "roc_auc", "patience": 0},
            "deadlines_ms": {"join": 60000 * S, "train": 120000 * S, "secagg_phase": 30000 * S}})
with open(f"{tmp}/job.json", "w") as f:
    json.dump(job, f)

clog_path = f"{tmp}/coordinator.log"
c = subprocess.Popen(WRAPPER + [coordinator, "--config", f"{tmp}/fed/coordinator/coordinator.json",
                                "--job", f"{tmp}/job.json", "--out", f"{tmp}/state",
                                "--listen", "127.0.0.1:0"],
                     stdout=subprocess.PIPE, stderr=open(fvtest.show_on_fail(clog_path), "w"), text=True)
log_f = open(clog_path)
events = []


def poll_events():
    while True:
        line = log_f.readline()
        if not line:
            return
        if not line.endswith("\n"):
            log_f.seek(log_f.tell() - len(line))
            return
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            pass


def wait_for(pred, what, timeout=300):
    deadline = time.time() + timeout * S
    seen = 0
    while time.time() < deadline:
        poll_events()
        for ev in events[seen:]:
            if pred(ev):
                return ev
        seen = len(events)
        if c.poll() is not None:
            break
        time.sleep(0.01)
    fvtest.fail(f"no {what} in the coordinator log (exit {c.poll()}):\n"
                + "\n".join(json.dumps(e) for e in events[-30:]))


port = wait_for(lambda e: e.get("event") == "listening", "listening", 60)["port"]
PLAN = {"bank-central": "before-masked:2", "bank-midwest": "mid-masked:3",
        "bank-west": "after-masked:4", "bank-northeast": "round-start:5",
        "bank-southeast": "round-start:5"}
procs, restarted = {}, set()


def start(bank, kill_at=None):
    env = dict(os.environ)
    env.pop("FV_TEST_KILL_AT", None)
    if kill_at:
        env["FV_TEST_KILL_AT"] = kill_at
    procs[bank] = subprocess.Popen(
        WRAPPER + [agent, "--config", f"{tmp}/fed/{bank}/agent.json", "--data",
                   f"{tmp}/banks/{bank}.csv", "--coordinator", f"127.0.0.1:{port}", "--once"],
        stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/{bank}.log", "a"), env=env)


for b in BANKS:
    start(b, PLAN[b])

# Restart each agent once, without the hook, when it has killed itself; until the job ends.
deadline = time.time() + 900 * S
while c.poll() is None and time.time() < deadline:
    for b, p in procs.items():
        if b not in restarted and p.poll() is not None:
            fvtest.check(p.returncode == -signal.SIGKILL,
                         f"{b} exited {p.returncode} before its planned kill ({PLAN[b]})")
            print(f"  {b} killed itself at {PLAN[b]}; restarted")
            restarted.add(b)
            start(b)
    time.sleep(0.05)
try:
    out, _ = c.communicate(timeout=max(1, deadline - time.time()))
except subprocess.TimeoutExpired:
    c.kill()
    fvtest.fail("the job did not finish")
poll_events()
fvtest.check(restarted == set(BANKS), f"agents that reached their kill point: {restarted}; "
             f"coordinator exit {c.returncode}, its last events:\n"
             + "\n".join(json.dumps(e) for e in events[-8:]) + "\n"
             + open(clog_path).read()[-2000:])
codes = {b: p.wait(timeout=120 * S) for b, p in procs.items()}
poll_events()
fvtest.check(c.returncode == 0, f"coordinator exit {c.returncode}: {events[-5:]}")
fvtest.check(all(v == 0 for v in codes.values()), f"agents' exit codes {codes}")
res = json.loads(out.strip().splitlines()[-1])

ends = {}
for e in events:
    if e.get("event") in ("round_done", "round_aborted"):
        ends.setdefault(e["round"], []).append(e)
starts = {}
for e in events:
    if e.get("event") == "round_start":
        starts.setdefault(e["round"], []).append(e)
for r in sorted(ends):
    for e in ends[r]:
        print(f"round {r}: {e['event']} {e['status']}, contributors {e['contributors']}"
              + (f", why: {e['why']}" if "why" in e else ""))

done = lambda r: [e for e in ends.get(r, []) if e["event"] == "round_done"]
aborted = lambda r: [e for e in ends.get(r, []) if e["event"] == "round_aborted"]
fvtest.check(done(2) and done(2)[0]["contributors"] == 4,
             "round 2 must complete with the 4 survivors (one killed before its masked input)")
fvtest.check(done(3) and done(3)[0]["contributors"] == 4,
             "round 3 must complete with the 4 survivors (one killed in the masked phase)")
fvtest.check(done(4) and done(4)[0]["contributors"] == 5,
             "round 4 must complete with 5 inputs (one killed after sending its masked input)")
fvtest.check(aborted(5) and aborted(5)[0]["status"] == "FV_ETHRESHOLD",
             "round 5 must abort below the threshold")
fvtest.check(done(5) and len(starts[5]) >= 2,
             "round 5 must be run again after its abort, and complete")
later = [r for r in starts if r > 5]
fvtest.check(later, "a round must start after the aborted one")
for r in later:
    fvtest.check(all(s["cohort"] == 5 for s in starts[r]),
                 f"round {r}: the killed agents must have rejoined (cohort {starts[r]})")
rounds = [json.loads(l) for l in open(f"{tmp}/state/latest/rounds.jsonl")]
best = max(r["val_roc_auc"] for r in rounds)
print(f"job finished: {res['rounds']} rounds completed, {res['rounds_failed']} aborted, "
      f"best val ROC AUC {best:.4f}")
fvtest.check(best > 0.7, f"the final model is not a real one: best val ROC AUC {best}")
print("PASS")
