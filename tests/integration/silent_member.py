"""A silent member: it accepts the job and then says nothing, round after round.

argv: fedvault fedvault-coordinator fedvault-agent
A real `fedvault-coordinator --job` (with its admin port) runs a SecAgg job (a logreg,
ROUNDS training rounds, min_agents 3, a short secagg_phase deadline, a long train one)
with three real `fedvault-agent` processes and one agent played by hand ("silent-1", a
thread of this script over fvnet.WireAgent: mutual TLS with its own kit, the wire format
by hand) that accepts the offer and from then on answers only PINGs (and acknowledges
the vectors sent to it, as a transport does): no SecAgg message, no upload, ever. The
stats round runs with the real agents alone: their compute of round 0 is held
(FV_TEST_HOLD_COMPUTE) until the silent member has accepted, so it is in every cohort
from round 1 on that does not bench it, whatever the processes' timing.

Checked:
  - every round it is in closes its phase 0 (advertise) at the phase deadline, without
    it: one "deadline" line of phase 0 with one member missing, and no round waits for
    the train deadline (no deadline line of another phase; every round done well within
    the train deadline); it contributes to no round;
  - after BENCH_AFTER silent rounds in a row (rounds 1, 2, 3) it is benched for 2 rounds
    ("agent_benched", bench_rounds 2), and the operator sees it while it sits out: round 4
    is held open (the real agents' compute of round 4 waits for a file) while `fedvault
    agents list --json` shows it connected, benched, with its misses, and `fedvault job
    show --json` lists it under live.benched (the text forms too);
  - its cohorts: rounds 1-3 and 6 (back on probation after its bench) include it, rounds
    0, 4, 5, 7 and 8 do not (the state's rounds table); silent again in round 6 it is
    benched for twice as long (bench_rounds 4);
  - the job ends "done" with every round committed.
"""
import json
import os
import ssl
import sys
import threading
import time

import fvfed
import fvnet
import fvtest
from fvnet import BYE, JOB_ACCEPT, JOB_DONE, JOB_OFFER, ROUND_START, Closed

fedvault, coordinator, agent = sys.argv[1:4]
S = fvtest.SLOW
REAL = ["bank-central", "bank-northeast", "bank-southeast"]
SILENT = "silent-1"
ROUNDS = 8
BENCH_AFTER = 3
# The SecAgg phase deadline: a silent member costs a round this much. The real agents
# answer phases 0, 1, 3, 4 in milliseconds under ASan (no training in them); valgrind is
# some 20 times slower.
PHASE_MS = 2000 if not fvtest.WRAPPER else 20000
TRAIN_MS = 120000 * S
HOLD_ROUND = 4
FIRST_BENCH = 3  # the round after which it is first benched (rounds 1..3 silent)
WANT_IN = {1, 2, 3, 6}

tmp = fvtest.tmpdir()


class Silent(fvnet.WireAgent, threading.Thread):
    """Accepts the job offered, then says nothing but PONGs and vector acknowledgements."""

    def __init__(self, port, stop):
        threading.Thread.__init__(self, daemon=True)
        fvnet.WireAgent.__init__(self, f"{tmp}/fed/{SILENT}", port, "silent member")
        self.stop_ev = stop
        self.accepted = threading.Event()
        self.round_starts = []
        self.job_done = False
        self.crash = None

    def run(self):
        try:
            while not self.job_done and not self.stop_ev.is_set():
                try:
                    self.connect()
                    self.session()
                except (OSError, ssl.SSLError, Closed):
                    time.sleep(0.3)
                finally:
                    self.close()
        except Exception as e:  # reported by the main thread
            self.crash = repr(e)
            self.close()

    def session(self):
        while not self.stop_ev.is_set():
            m = self.recv()
            if m is None:
                continue
            t = m["type"]
            if t == JOB_OFFER:
                self.send({"type": JOB_ACCEPT, "job": m["job"], "dsha": bytes(32), "rows": 1000,
                           "model": b""})
                self.accepted.set()
            elif t == ROUND_START:
                self.round_starts.append(m["round"])
            elif t == JOB_DONE:
                self.job_done = True
                self.send({"type": BYE, "reason": "job done"})
                return


fvfed.setup(tmp, "silent-fed", also=[SILENT])
with open(f"{tmp}/job.json", "w") as f:
    json.dump(fvfed.job_spec(name="silent", model="logreg", rounds=ROUNDS, min_agents=3,
                             deadlines_ms={"join": 60000 * S, "train": TRAIN_MS,
                                           "secagg_phase": PHASE_MS}), f)

port, admin_port = fvtest.free_port(), fvtest.free_port()
ADMIN = ["--config", f"{tmp}/fed/ops-1/admin.json", "--admin", f"127.0.0.1:{admin_port}",
         "--timeout", str(30 * S)]
p, log = fvfed.run_coordinator(coordinator, tmp, "silent", port,
                               extra=["--admin-listen", f"127.0.0.1:{admin_port}",
                                      "--bench-after", str(BENCH_AFTER), "--bench-base-rounds",
                                      "2", "--bench-max-rounds", "32"])
stop = threading.Event()
silent = Silent(port, stop)


def events():
    return fvfed.events(log, since_start=True)


def wait_for(pred, what, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        if p.poll() is not None:
            break
        time.sleep(0.1)
    stop.set()
    if p.poll() is None:
        p.kill()
    fvtest.fail(f"timed out waiting for {what}; last coordinator lines:\n"
                + "\n".join(json.dumps(e) for e in events()[-15:]))


def admin_json(args):
    _, out, _ = fvtest.run(list(args) + ADMIN + ["--json"], expect=0)
    return json.loads(out)


# The stats round starts with the real agents and waits (their compute of round 0 is
# held) until the silent member has accepted the job: it is in round 1's cohort.
release = f"{tmp}/release"
procs = fvfed.start_agents(agent, tmp, port, "silent", banks=REAL,
                           env={"FV_TEST_HOLD_COMPUTE": f"0,{HOLD_ROUND}:{release}"})
wait_for(lambda: [e for e in events() if e.get("event") == "round_start"
                  and e.get("round") == 0], "the stats round's start", 120 * S)
silent.start()
wait_for(lambda: [e for e in events() if e.get("event") == "job_accepted"
                  and e.get("agent") == SILENT], "the silent member's job_accepted", 60 * S)
open(f"{release}-0", "w").close()

# Benched after rounds 1-3; round 4 runs without it and is held open by the real agents.
benched = wait_for(lambda: [e for e in events() if e.get("event") == "agent_benched"],
                   "agent_benched", 300 * S)[0]
print(f"coordinator log: {json.dumps(benched)}")
fvtest.check(benched.get("agent") == SILENT and benched.get("round") == FIRST_BENCH
             and benched.get("bench_rounds") == 2 and benched.get("misses") == BENCH_AFTER,
             f"the first bench should be {SILENT}'s after round {FIRST_BENCH}, for 2 rounds: "
             f"{benched}")
wait_for(lambda: [e for e in events() if e.get("event") == "round_start"
                  and e.get("round") == HOLD_ROUND], f"round {HOLD_ROUND}'s start", 60 * S)
agents = {a["name"]: a for a in admin_json(["agents", "list"])["agents"]}
sa = agents.get(SILENT, {})
print(f"agents list --json: {SILENT}: {json.dumps(sa)}")
fvtest.check(sa.get("connected") is True and sa.get("benched") is True
             and sa.get("misses") == BENCH_AFTER and sa.get("bench_rounds_left") == 1,
             f"agents list: {SILENT} should be connected and benched with {BENCH_AFTER} misses "
             f"and 1 round to sit out after round {HOLD_ROUND}: {sa}")
for b in REAL:
    fvtest.check(agents.get(b, {}).get("benched") is False and agents[b].get("misses") == 0,
                 f"agents list: {b} should not be benched: {agents.get(b)}")
_, text, _ = fvtest.run(["agents", "list"] + ADMIN, expect=0)
print(text)
fvtest.check("BENCHED" in text and "MISSES" in text, f"agents list: no bench columns:\n{text}")
job_id = admin_json(["job", "list"])["jobs"][0]["id"]
live = admin_json(["job", "show", job_id])["live"]
print(f"job show --json: live: {json.dumps(live)}")
fvtest.check([x.get("agent") for x in live.get("benched", [])] == [SILENT]
             and live.get("round") == HOLD_ROUND and live.get("expected") == len(REAL),
             f"job show: live.benched should list {SILENT} in round {HOLD_ROUND} of a cohort of "
             f"{len(REAL)}: {live}")
_, text, _ = fvtest.run(["job", "show", job_id] + ADMIN, expect=0)
fvtest.check(f"{SILENT} (1 rounds left)" in text, f"job show: no benched line:\n{text}")
open(f"{release}-{HOLD_ROUND}", "w").close()

out = fvfed.finish(p, "silent-member")
stop.set()
silent.join(timeout=30 * S)
codes = fvfed.wait_exits(procs, 120 * S)
fvtest.check(all(c == 0 for c in codes.values()), f"real agents' exit codes {codes}")
fvtest.check(silent.crash is None, f"the silent member's thread failed: {silent.crash}")
res = json.loads(out.strip().splitlines()[-1])
fvtest.check(p.returncode == 0 and res.get("status") == "done",
             f"the job should end done: exit {p.returncode}, {res}")

evs = events()
rows = fvfed.db_rows(tmp, "silent", "SELECT round, attempt, status, cohort, contributors "
                     "FROM rounds ORDER BY round, attempt")
print("state rounds: " + "; ".join(f"round {r} attempt {a} {s}: cohort {c} contributors {k}"
                                   for r, a, s, c, k in rows))
fvtest.check([r for r, a, s, c, k in rows] == list(range(ROUNDS + 1))
             and all(s == "ok" for r, a, s, c, k in rows),
             f"every round should be committed once: {rows}")
want_in = WANT_IN
for r, a, s, c, k in rows:
    cohort, contributors = json.loads(c), json.loads(k)
    fvtest.check((SILENT in cohort) == (r in want_in),
                 f"round {r}: cohort {cohort}: {SILENT} should be "
                 f"{'in' if r in want_in else 'benched out of'} it")
    fvtest.check(sorted(contributors) == sorted(REAL),
                 f"round {r}: contributors {contributors}, expected {REAL}")
    late = [e for e in evs if e.get("event") == "deadline" and e.get("round") == r]
    if r in want_in:
        fvtest.check(len(late) == 1 and late[0].get("phase") == 0 and late[0].get("missing") == 1,
                     f"round {r}: expected one phase 0 deadline with the silent member missing, "
                     f"got {late}")
    else:
        fvtest.check(not late, f"round {r}: no member is silent, yet {late}")
    starts = [e for e in evs if e.get("event") == "round_start" and e.get("round") == r]
    fvtest.check(starts and starts[-1].get("cohort") == len(cohort),
                 f"round {r}: round_start {starts}")
rl = [json.loads(line) for line in open(f"{tmp}/silent/latest/rounds.jsonl")]
print("rounds.jsonl: " + "; ".join(f"round {x['round']} agents {x['agents']} {x['secs']:.1f} s"
                                   for x in rl))
for x in rl:
    # held round 3 aside, a round lasts its phase deadline plus the agents' work: far from
    # the train deadline it would take if phase 0 still ran on it
    fvtest.check(x["round"] in (0, HOLD_ROUND) or x["secs"] * 1000 < TRAIN_MS / 2,
                 f"round {x['round']} took {x['secs']:.1f} s: it waited for the train deadline")
bench = [e for e in evs if e.get("event") == "agent_benched"]
fvtest.check([(e.get("round"), e.get("bench_rounds")) for e in bench] == [(3, 2), (6, 4)],
             f"benches: expected after round 3 for 2 rounds, after round 6 for 4: {bench}")
fvtest.check(silent.round_starts == sorted(want_in),
             f"the silent member heard ROUND_START of rounds {silent.round_starts}, "
             f"expected {sorted(want_in)}")
print(f"PASS: {SILENT} missed rounds {sorted(want_in)}, benched after rounds 3 and 6")
