"""A hostile agent among honest ones: the coordinator's defences against lying uploads.

argv: fedvault fedvault-coordinator fedvault-agent
A real `fedvault-coordinator --job` runs a small plain-FedAvg job ("secagg": "off": the
coordinator sees every agent's float32 vector, protocols/fv_fed.h "Plain vector"): the
Lending Club data (fvfed's split: 25 % held out as the test split, the rest by region),
a logreg, ROUNDS training rounds, min_agents 3, early stopping off (the final model is
the one after the last update). Its cohort: the three real `fedvault-agent` processes of
HONEST, and the hostile agents of HOSTILE, each a thread of this script speaking the
wire format by hand (protocols/wire.c's top comment: frames, a strict msgpack codec
written here from the msgpack spec) over mutual TLS with its own kit made by `fedvault
provision`. A hostile agent says HELLO, answers PINGs, accepts the JOB_OFFER with a
made-up data digest and row count, sits out the stats round (it accepts only once the
coordinator logged that round's start, so round 0 holds exactly the honest agents and
its sum is the honest run's; min_agents 3 lets that round start without it), joins the
next training round (1, or 2 if round 1 started first: each must misbehave in at least
one), and after each UPLOAD_GO of a training round sends its one kind of bad "update":
  (a) len    a VEC_BEGIN of the wrong element count (plain_dim + 3 in its first round,
             plain_dim - 1 later). The coordinator must refuse it before any buffer is
             allocated: a log line "upload_refused" and an ERROR frame (read before the
             connection closes), both naming the expected and the received counts. It
             then reconnects and accepts the job again, as an agent would.
  (b) the right length whose claims lie; each must be logged "update_rejected" with a
      reason naming the element (fv_fed_plain_check), left out of the sum:
      bin    a histogram bin of 1e9              ("element P+6 is 1e+09")
      neg    n_train = -5                        ("n_train (element P) is -5")
      nan    NaN in parameter 7                  ("parameter 7 is nan")
      sum    histogram bins summing to 101, n_val 100
      zero   n_train = 0 with a non-zero update  (fv_fed.h: "n_train >= 1")
      (The job is binary: its plain vector has no per-class counts to lie about.) Every
      lie carries an update of +0.5 per parameter and histograms of 100 validation rows
      all in bin 0, so one that got into the sum shows in the final model and metrics.
Checked: the job ends "done" with every round committed; for each training round, the
coordinator's round_done line counts the honest agents only, and the round's contributor
names (the state's rounds table, and the signed RECEIPT each hostile agent receives)
list exactly the honest agents; no round waits for its train deadline on account of an
agent whose upload was refused or rejected (a "deadline" line); the final model's test
ROC AUC (`fedvault eval` on the held-out split) is above 0.6 and within AUC_TOL of the
same job run by the three honest agents alone (same seeds: the honest agents' seeds
depend on job, round and name only), and its parameters within PARAM_TOL of that run's.
Problems are collected and reported together at the end.
"""
import hashlib
import json
import math
import os
import shutil
import ssl
import struct
import subprocess
import sys
import threading
import time
import traceback

import fvfed
import fvnet
import fvtest
from fvnet import (BYE, ERROR, JOB_ACCEPT, JOB_DONE, JOB_OFFER, RECEIPT, ROUND_END, ROUND_START,
                   UPLOAD_GO, VEC_BEGIN, VEC_CHUNK, VEC_END, Closed)

fedvault, coordinator, agent = sys.argv[1:4]
S = fvtest.SLOW
ROUNDS = 3
HONEST = ["bank-central", "bank-northeast", "bank-southeast"]
# One behaviour per hostile agent; names sort after the banks' so the honest agents keep
# their cohort positions.
HOSTILE = {"hostile-len": "len", "hostile-bin": "bin", "hostile-neg": "neg",
           "hostile-nan": "nan", "hostile-sum": "sum", "hostile-zero": "zero"}
# The train deadline bounds a round that waits for a silent agent: long enough for the
# honest agents' local training and upload (a logreg on ~2000 rows: 0.3 s of a round under
# ASan, about 1 s under valgrind, measured), short enough that a round stalled by a
# hostile agent costs the test little.
TRAIN_MS = 15000 if not fvtest.WRAPPER else 30000
AUC_TOL = 0.002   # test ROC AUC, hostile run vs honest run
PARAM_TOL = 1e-4  # max |parameter difference|, hostile run vs honest run (the sums differ
                  # only in the order of float64 additions of float32 uploads)
# How often a hostile agent looks at the gate between reads: it must accept the job while
# the stats round runs (under ASan about 0.1 s) to be in round 1's cohort.
POLL_S = 0.01

tmp = fvtest.tmpdir()
problems = []


def problem(msg):
    print(f"PROBLEM: {msg}", flush=True)
    problems.append(msg)


class Hostile(fvnet.WireAgent, threading.Thread):
    """One hostile agent: its own kit, one bad behaviour in every training round it is
    granted an upload in. Records what it sent and what it heard, per round. (The wire
    format by hand: fvnet.WireAgent.)"""

    def __init__(self, name, behaviour, port, gate, stop, deadline_s):
        threading.Thread.__init__(self, daemon=True)
        fvnet.WireAgent.__init__(self, f"{tmp}/fed/{name}", port, f"hostile agent ({behaviour})")
        self.agent, self.behaviour = name, behaviour
        self.gate, self.stop_ev, self.deadline = gate, stop, time.time() + deadline_s
        self.rounds = {}   # round -> {"kind", "sent", "n", "error", "end", "receipt"}
        self.sessions = 0
        self.job_done = False
        self.crash = None
        self.n_params = None
        self.sock = None

    # -- the agent
    def run(self):
        try:
            while not self.job_done and not self.stop_ev.is_set() and time.time() < self.deadline:
                try:
                    self.connect()
                except (OSError, ssl.SSLError, Closed):
                    self.close()
                    time.sleep(0.3)
                    continue
                self.sessions += 1
                try:
                    self.session()
                except Closed:
                    pass
                finally:
                    self.close()
        except Exception:
            self.crash = traceback.format_exc()
            self.close()

    def session(self):
        offer = None
        kind = None
        while not self.stop_ev.is_set() and time.time() < self.deadline:
            if offer is not None and self.gate.is_set():
                # made-up data: a digest of nothing it holds, a row count it does not have
                self.send({"type": JOB_ACCEPT, "job": offer, "dsha":
                           hashlib.sha256(b"no such data " + self.agent.encode()).digest(),
                           "rows": 4321, "model": b""})
                offer = None
            m = self.recv()
            if m is None:
                continue
            t = m["type"]
            if t == JOB_OFFER:
                self.layout(json.loads(m["spec"]))
                offer = m["job"]
            elif t == "vec":
                if m["name"] == "model":
                    self.n_params = m["n"]
            elif t == ROUND_START:
                kind = m["kind"]
                self.rounds.setdefault(m["round"], {})["kind"] = kind
            elif t == UPLOAD_GO:
                r = self.rounds.setdefault(m["round"], {})
                if kind == 1:  # not expected: it sits the stats round out
                    self.upload(m["round"], [0] * self.stats_dim, 2)
                    r["sent"] = "zeros"
                else:
                    self.misbehave(m["round"], r)
            elif t == ROUND_END:
                self.rounds.setdefault(m["round"], {})["end"] = (m["status"], m["reason"])
            elif t == RECEIPT:
                body = json.loads(m["body"])
                if body.get("kind") != "job":  # the job's receipt (before JOB_DONE) aside
                    self.rounds.setdefault(m["round"], {})["receipt"] = body
            elif t == JOB_DONE:
                self.job_done = True
                self.send({"type": BYE, "reason": "job done"})
                return
            elif t == ERROR:
                # The coordinator is closing this connection: what it said, in which round.
                last = max(self.rounds) if self.rounds else None
                self.rounds.setdefault(last, {})["error"] = (m["code"], m["reason"])
                return

    def layout(self, spec):
        """The round vectors' sizes from the offered spec (protocols/fv_fed.h)."""
        schema = spec["schema"]
        classes = schema["classes"]
        self.n_classes = len(classes)
        self.stats_dim = 1 + self.n_classes
        for col in schema["columns"]:
            if col["type"] == "numeric":
                self.stats_dim += 1 + 2 * 8
            elif col["type"] == "categorical":
                self.stats_dim += len(col["categories"]) + 1
        self.k = self.n_classes if self.n_classes > 2 else 0
        self.bins = spec["hist_bins"] if self.k == 0 else 0

    def plain_dim(self):
        return self.n_params + 1 + 2 * self.bins + 1 + 1 + self.k + self.k

    def upload(self, rnd, values, dtype, n=None, begin_only=False):
        n = len(values) if n is None else n
        chunk = min(max(n, 1), 16384, (self.peer_maxf - 64) // 4)
        self.send({"type": VEC_BEGIN, "id": rnd, "dtype": dtype, "n": n, "chunk": chunk,
                   "name": "update"})
        if begin_only:
            return
        data = struct.pack(f"<{n}{'f' if dtype == 1 else 'I'}", *values)
        for seq, off in enumerate(range(0, len(data), chunk * 4)):
            self.send({"type": VEC_CHUNK, "id": rnd, "seq": seq, "data": data[off:off + chunk * 4]})
        self.send({"type": VEC_END, "id": rnd, "sha256": hashlib.sha256(data).digest()})

    def misbehave(self, rnd, rec):
        P, B = self.n_params, self.bins
        if P is None:
            raise Closed("UPLOAD_GO for a training round before any model")
        rec["plain_dim"] = self.plain_dim()
        if self.behaviour == "len":
            # The wrong count, announced only: the coordinator decides on VEC_BEGIN.
            n = self.plain_dim() + 3 if not any("n" in r for r in self.rounds.values()) \
                else self.plain_dim() - 1
            rec["n"], rec["sent"] = n, "len"
            self.upload(rnd, None, 1, n=n, begin_only=True)
            return
        params = [0.5] * P
        n_train, hist_pos, hist_neg, loss, n_val = 1000.0, [0.0] * B, [0.0] * B, 50.0, 100.0
        hist_pos[0], hist_neg[0] = 60.0, 40.0
        if self.behaviour == "bin":
            hist_pos[5] = 1e9
            rec["needle"] = f"element {P + 1 + 5} is 1e+09"
        elif self.behaviour == "neg":
            n_train = -5.0
            rec["needle"] = f"n_train (element {P}) is -5"
        elif self.behaviour == "nan":
            params[7] = float("nan")
            rec["needle"] = "parameter 7 is nan"
        elif self.behaviour == "sum":
            hist_pos[0] = 61.0
            rec["needle"] = "model 0's histograms hold 101 rows, n_val is 100"
        elif self.behaviour == "zero":
            n_train = 0.0
            rec["needle"] = f"n_train (element {P}) is 0"
        v = params + [n_train] + hist_pos + hist_neg + [loss, n_val] + [0.0] * (2 * self.k)
        assert len(v) == self.plain_dim()
        rec["n"], rec["sent"] = len(v), self.behaviour
        self.upload(rnd, v, 1)


# ---- the federation --------------------------------------------------------------------

params = fvtest.model_params


def test_auc(model):
    _, out, _ = fvtest.run(["eval", "--model", model, "--data", f"{tmp}/test.csv", "--json"],
                           expect=0)
    return json.loads(out)["roc_auc"]


def run_federation(tag, hostile):
    """The job with the honest agents and, if hostile, the hostile agents. Returns
    (summary, coordinator events, hostile threads, seconds)."""
    port = fvtest.free_port()
    t0 = time.time()
    p, log = fvfed.run_coordinator(coordinator, tmp, tag, port)
    procs = fvfed.start_agents(agent, tmp, port, tag, banks=HONEST,
                                   extra=fvfed.PLAIN_OK)
    gate, stop = threading.Event(), threading.Event()
    threads = [Hostile(n, b, port, gate, stop, 900 * S) for n, b in HOSTILE.items()] if hostile \
        else []
    for t in threads:
        t.start()
    # The hostile agents accept the job once the stats round started with the honest ones
    # (its cohort is then exactly theirs), and in time for round 1 (they hold the offer).
    deadline = time.time() + 900 * S
    with open(log) as lf:
        pending = ""
        while time.time() < deadline and p.poll() is None:
            if not gate.is_set():
                pending += lf.read()
                lines = pending.split("\n")
                pending = lines.pop()
                if any('"round_start"' in l and '"stats"' in l for l in lines):
                    gate.set()
            time.sleep(POLL_S)
    if p.poll() is None:
        p.kill()
        problem(f"{tag}: the coordinator did not finish within {900 * S} s (killed); its last "
                "log lines:\n" + "".join(open(log).readlines()[-10:]))
    out = p.communicate()[0]
    secs = time.time() - t0
    stop.set()
    for t in threads:
        t.join(timeout=30 * S)
    codes = fvfed.wait_exits(procs, 60 * S)
    if any(c != 0 for c in codes.values()):
        problem(f"{tag}: honest agents' exit codes {codes}")
    try:
        res = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        res = {}
    if p.returncode != 0 or res.get("status") != "done":
        problem(f"{tag}: the coordinator exited {p.returncode}, summary {res}; last log lines:\n"
                + "".join(open(log).readlines()[-10:]))
    print(f"{tag}: {secs:.1f} s, summary {json.dumps(res)}", flush=True)
    return res, fvfed.events(log), threads, secs


# Data and kits: fvfed.setup's split, kits for the honest banks and the hostile agents.
fvtest.run(["split", "--data", os.path.join(fvtest.DATA, "lending_club.csv"), "--target",
            "Class", "--positive", "bad", "--test-fraction", "0.25", "--seed", "0",
            "--train-out", f"{tmp}/train.csv", "--test-out", f"{tmp}/test.csv"], expect=0)
subprocess.run(["/usr/bin/python3", os.path.join(fvtest.SRC, "examples/lending-club/split_regions.py"),
                f"{tmp}/train.csv", f"{tmp}/banks"], check=True, capture_output=True)
fvfed.provision(tmp, "hostile-fed", HONEST + list(HOSTILE))
with open(f"{tmp}/job.json", "w") as f:
    json.dump(fvfed.job_spec(name="hostile", model="logreg", rounds=ROUNDS, secagg="off",
                             min_agents=3,
                             deadlines_ms={"join": 60000 * S, "train": TRAIN_MS,
                                           "secagg_phase": 60000 * S}), f)

res, evs, hostiles, secs = run_federation("hostile", True)
ev = lambda name: [e for e in evs if e.get("event") == name]

for h in hostiles:
    if h.crash:
        problem(f"{h.agent}: the hostile agent's thread failed:\n{h.crash}")
    if not h.job_done:
        problem(f"{h.agent}: never received JOB_DONE ({h.sessions} sessions)")

# Each bad upload: refused or rejected, in the log (and for (a) in the ERROR frame).
for h in hostiles:
    sent = {r: rec for r, rec in h.rounds.items() if r and rec.get("sent")}
    if not sent:
        problem(f"{h.agent}: was granted no upload in any training round; rounds {h.rounds}")
    for r, rec in sorted(sent.items()):
        if h.behaviour == "len":
            want, got = rec["plain_dim"], rec["n"]
            lines = [e for e in ev("upload_refused") if e.get("agent") == h.agent and
                     e.get("round") == r]
            nums = (f"'update' of {want} f32", f"got 'update' of {got} f32")
            if not lines:
                problem(f"round {r}: {h.agent} announced {got} elements ({want} expected) and "
                        "the coordinator logged no upload_refused")
            elif not all(s in lines[0].get("why", "") for s in nums):
                problem(f"round {r}: upload_refused should name {want} and {got}: {lines[0]}")
            else:
                print(f"round {r}: (a) {h.agent}: coordinator log: {json.dumps(lines[0])}")
            err = rec.get("error")
            if err is None:
                problem(f"round {r}: {h.agent} received no ERROR frame after its {got}-element "
                        "VEC_BEGIN")
            elif not (err[0] < 0 and all(s in err[1] for s in nums)):
                problem(f"round {r}: the ERROR frame should name {want} and {got}: {err}")
            else:
                print(f"round {r}: (a) {h.agent}: ERROR frame code {err[0]}: {err[1]!r}")
        else:
            lines = [e for e in ev("update_rejected") if e.get("agent") == h.agent and
                     e.get("round") == r]
            accepted = [e for e in ev("upload_received") if e.get("agent") == h.agent and
                        e.get("round") == r]
            if not lines:
                problem(f"round {r}: {h.agent}'s lie ({h.behaviour}: expected a rejection "
                        f"naming {rec['needle']!r}) was not rejected: no update_rejected line "
                        f"(upload_received: {len(accepted)}); protocols/fed.c "
                        "fv_fed_plain_check let it into the sum")
            elif rec["needle"] not in lines[0].get("why", ""):
                problem(f"round {r}: {h.agent}'s rejection should name {rec['needle']!r}: "
                        f"{lines[0]}")
            else:
                print(f"round {r}: (b) {h.behaviour}: coordinator log: {json.dumps(lines[0])}")

# Every training round: committed, the honest agents its only contributors, no deadline.
db = fvfed.db_rows(tmp, "hostile", "SELECT round, attempt, status, cohort, contributors "
                   "FROM rounds ORDER BY round, attempt")
print("state rounds: " + "; ".join(f"round {r} attempt {a} {s}: cohort {c} contributors {k}"
                                   for r, a, s, c, k in db))
stats = [json.loads(c) for rr, a, s, c, k in db if rr == 0 and s == "ok"]
if not stats or sorted(stats[-1]) != sorted(HONEST):
    problem(f"the stats round's cohort is {stats}, expected exactly {HONEST} (the hostile agents "
            "sit it out): the comparison with the honest run assumes the same global statistics")
for r in range(1, ROUNDS + 1):
    done = [e for e in ev("round_done") if e.get("round") == r]
    if not done:
        problem(f"round {r}: no round_done line")
        continue
    print(f"round {r}: coordinator log: {json.dumps(done[-1])}")
    if done[-1].get("contributors") != len(HONEST):
        problem(f"round {r}: round_done counts {done[-1].get('contributors')} contributors, "
                f"expected the {len(HONEST)} honest agents")
    rows = [json.loads(k) for rr, a, s, c, k in db if rr == r and s == "ok"]
    named = sorted(set(rows[-1] if rows else []) - set(HONEST))
    # the signed RECEIPT each hostile agent still on its round's session received
    receipted = sorted(h.agent for h in hostiles
                       if h.agent in h.rounds.get(r, {}).get("receipt", {}).get("contributors", []))
    if not rows or sorted(rows[-1]) != sorted(HONEST) or receipted:
        problem(f"round {r}: the round's contributors are {rows[-1] if rows else None} in the "
                f"state (rounds table, audit round.completed), expected exactly {HONEST}; "
                f"{receipted} hold a RECEIPT signed by the coordinator that lists them as "
                f"contributors; of {named}, those whose update was rejected (above) were not "
                "summed: coordinator/coord_conn.c coord__on_vec sets a->uploaded before "
                "fv_fed_plain_check and keeps it on rejection, and coord_round.c cohort_names "
                "lists `uploaded` agents as the contributors of a plain round")
    late = [e for e in ev("deadline") if e.get("round") == r]
    if late:
        problem(f"round {r}: waited for its train deadline ({TRAIN_MS} ms) and closed with "
                f"{late[0].get('missing')} agent(s) missing: {json.dumps(late[0])}; an agent whose "
                "update was rejected is left alive and unanswered (coordinator/coord_conn.c "
                "coord__on_vec: update_rejected sets neither a->answered nor drops the agent), "
                "so coord__phase_progress waits for the deadline: one hostile agent stretches "
                "every round to deadlines_ms.train")
rl = [json.loads(l) for l in open(f"{tmp}/hostile/latest/rounds.jsonl")]
print("rounds.jsonl: " + "; ".join(f"round {x['round']} agents {x['agents']} {x['secs']:.1f} s "
                                   f"val ROC AUC {x['val_roc_auc']:.4f}" for x in rl))

# The final model: sane, and the honest run's.
hres, _, _, hsecs = run_federation("honest", False)
auc = test_auc(f"{tmp}/hostile/latest/final.fvm")
hauc = test_auc(f"{tmp}/honest/latest/final.fvm")
pa, pb = params(f"{tmp}/hostile/latest/final.fvm"), params(f"{tmp}/honest/latest/final.fvm")
gap = max(abs(x - y) for x, y in zip(pa, pb)) if len(pa) == len(pb) else math.inf
print(f"final model: test ROC AUC {auc:.4f} with the hostile agents, {hauc:.4f} honest only "
      f"(tolerance {AUC_TOL}); max |parameter difference| {gap:.3g} (tolerance {PARAM_TOL}); "
      f"runs {secs:.1f} s and {hsecs:.1f} s")
if not auc > 0.6:
    problem(f"the final model's test ROC AUC is {auc:.4f}, not above 0.6: poisoned")
if abs(auc - hauc) > AUC_TOL or not gap <= PARAM_TOL:
    problem(f"the final model differs from the honest run's: test ROC AUC {auc:.4f} vs "
            f"{hauc:.4f}, max |parameter difference| {gap:.3g}: a hostile update reached the sum")

fvtest.check(not problems, f"{len(problems)} problem(s) (files kept in {tmp}):\n"
             + "\n".join(problems))
shutil.rmtree(tmp, ignore_errors=True)
print("PASS")
