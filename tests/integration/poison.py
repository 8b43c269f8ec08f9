"""Poisoning a validated federation (issue 16): a malicious sixth bank among six.

argv: fedvault fedvault-coordinator fedvault-agent fv-evil-agent [attack ...]
(optional attack names run only those, and the honest run; for debugging.)

The shipped Lending Club rows, 25 % held out (stratified, seed 0) as the test split, the
rest dealt IID into six banks (fvfed.split_iid), one provisioned kit each. The job:
fvfed.job_spec with a logreg, ROUNDS training rounds, SecAgg on, "validation",
max_update_norm BOUND (the honest agents' weighted updates reach it: their `trained`
lines are printed), "validation": {"max_failures": 1}, min_agents 5.

Each job runs in its own coordinator process. The sixth bank ("bank-pacific") starts
first and the test waits for its job_accepted line before it starts the five others, so
it is in every round's cohort until it is excluded; round 0 (the stats) has the first
four of the others, the fifth joins from round 1 (held in place with FV_TEST_HOLD_COMPUTE,
not timing), so every run has the same cohorts and the honest run's model is
reproducible.
  honest      the sixth bank is the real fedvault-agent: every proof passes, nobody is
              excluded; the final model's test ROC AUC is the reference.
  attacks     the sixth bank is fv-evil-agent (tests/integration/evil) with FV_EVIL_ATTACK:
              over_norm, plus_clip, just_over, big_word (expected check "norm" or
              "wraparound"), count_range (a bin at 2^17) and neg_bin (a bin at -1, the
              sums kept): the check the agent's "evil" line names ("nonneg" for the bins
              as non-negative words, a range's name where bins are ranges), hist_sum (the
              equality's name), swap ("complaints", "consistency"
              or "gadget"), replay (round 2 sends round 1's proof: "complaints", or a
              refusal of its PROOF naming the member). Checked: the job completes; every
              round the agent lied in (its "evil" lines) has a coordinator proof_failed
              line naming it with the expected check; it is excluded (member_excluded) and
              lies in no later round; every later round has the five honest banks; the
              final test ROC AUC is within 0.01 of the honest run's.
  shuffle_hist  a lie within the rules (its validation histograms' positive and negative
              bins swapped; its update the honest one negated at the norm bound): every
              proof passes and it is never excluded. What moved is printed against the
              bounds the README states: per round, the validation ROC AUC against the
              honest run's (one bank's share of the validation rows), and the round-1
              aggregate step against the honest one (at most 2 B / weight_sum: its own
              block and the honest block it replaced, each at most B).
The installed fedvault-agent must contain none of the malicious build: `nm` on it finds
no symbol with "evil" (and finds fv_evil_input in fv-evil-agent, so the check can fail).
"""
import json
import math
import re
import os
import shutil
import subprocess
import sys
import time

import fvfed
import fvtest

fedvault, coordinator, agent, evil = sys.argv[1:5]
ONLY = sys.argv[5:]
WRAPPER = fvfed.WRAPPER
S = fvfed.SLOW
tmp = fvtest.tmpdir()
SIXTH = "bank-pacific"
BANKS = fvfed.BANKS + [SIXTH]
HONEST = fvfed.BANKS
ROUNDS = 5
BOUND = float(os.environ.get("FV_POISON_BOUND", "0.065"))

NORM = {"norm", "wraparound"}
ATTACKS = {  # attack: the checks a proof_failed line may name (None: the "evil" line's)
    "over_norm": NORM, "plus_clip": NORM, "just_over": NORM, "big_word": NORM,
    "count_range": None, "neg_bin": None, "hist_sum": None,
    "swap": {"complaints", "consistency", "gadget"},
    "replay": {"complaints"},
}

# ---- the malicious build stays out of the installed agent --------------------------------
nm = shutil.which("nm")
if nm:
    plain = subprocess.run([nm, agent], capture_output=True, text=True).stdout
    bad = [l for l in plain.splitlines() if "evil" in l.lower()]
    fvtest.check(not bad, f"{agent} contains the malicious agent's symbols: {bad[:5]}")
    ev = subprocess.run([nm, evil], capture_output=True, text=True).stdout
    fvtest.check(" T fv_evil_input" in ev, f"{evil}: no fv_evil_input symbol (nm check void)")
    print(f"nm: {os.path.basename(agent)} has no 'evil' symbol; fv-evil-agent has the hooks")
else:
    print("nm not found: the symbol check of the installed agent is skipped")

# ---- the federation -----------------------------------------------------------------------
fvtest.run(["split", "--data", os.path.join(fvtest.DATA, "lending_club.csv"), "--target",
            "Class", "--positive", "bad", "--test-fraction", "0.25", "--seed", "0",
            "--train-out", f"{tmp}/train.csv", "--test-out", f"{tmp}/test.csv"], expect=0)
fvfed.split_iid(f"{tmp}/train.csv", f"{tmp}/banks", BANKS, "Class")
fvfed.provision(tmp, "poison-fed", BANKS)

JOB = fvfed.job_spec(model="logreg", rounds=ROUNDS, local_epochs=5, min_agents=5,
                     max_update_norm=BOUND, validation={"max_failures": 1},
                     deadlines_ms={"join": 60000 * S, "train": 120000 * S,
                                   "secagg_phase": 10000 * S})
if os.environ.get("FV_POISON_NO_VALIDATION"):  # calibration of BOUND without the engine
    JOB.pop("validation")


def wait_log(path, pred, what, proc, timeout):
    deadline = time.time() + timeout * S
    while time.time() < deadline:
        for e in fvfed.events(path):
            if pred(e):
                return e
        if proc.poll() is not None:
            fvtest.fail(f"{what}: the process exited {proc.returncode}:\n"
                        + open(path).read()[-3000:])
        time.sleep(0.1)
    fvtest.fail(f"{what}: not seen in {timeout * S} s:\n" + open(path).read()[-3000:])


def run_job(label, attack=None, job=JOB, inspect=None):
    """One job, one coordinator; the sixth bank is fv-evil-agent with FV_EVIL_ATTACK=attack
    (None: the real agent). Returns a dict: dir, summary, coordinator events, the sixth
    bank's events, rounds.jsonl, the final model's test ROC AUC, seconds."""
    d = f"{tmp}/{label}"
    os.makedirs(d)
    with open(f"{d}/job.json", "w") as f:
        json.dump(job, f)
    clog = f"{d}/coordinator.log"
    t0 = time.time()
    # inspect(admin_args): called while round INSPECT_ROUND is held open by the honest
    # agents (FV_TEST_HOLD_COMPUTE), with the admin port's CLI arguments
    admin = []
    if inspect is not None:
        admin_port = fvtest.free_port()
        admin = ["--config", f"{tmp}/fed/ops-1/admin.json", "--admin",
                 f"127.0.0.1:{admin_port}", "--timeout", str(30 * S)]
    c = subprocess.Popen(WRAPPER + [coordinator, "--config",
                                    f"{tmp}/fed/coordinator/coordinator.json", "--job",
                                    f"{d}/job.json", "--out", f"{d}/state", "--listen",
                                    "127.0.0.1:0"]
                         + (["--admin-listen", f"127.0.0.1:{admin_port}"] if admin else []),
                         stdout=subprocess.PIPE, stderr=open(fvtest.show_on_fail(clog), "a"), text=True)
    procs = {}
    try:
        port = wait_log(clog, lambda e: e.get("event") == "listening", f"{label}: listening",
                        c, 60)["port"]

        def start(bank, binary, env):
            return subprocess.Popen(
                WRAPPER + [binary, "--config", f"{tmp}/fed/{bank}/agent.json", "--data",
                           f"{tmp}/banks/{bank}.csv", "--coordinator", f"127.0.0.1:{port}",
                           "--once", "--audit-log", f"{d}/{bank}-audit.log"],
                stdout=subprocess.DEVNULL, stderr=open(f"{d}/{bank}.log", "a"),
                env=dict(os.environ, **env))

        env6 = {} if attack is None else {"FV_EVIL_ATTACK": attack}
        procs[SIXTH] = start(SIXTH, agent if attack is None else evil, env6)
        wait_log(clog, lambda e: e.get("event") == "job_accepted" and e.get("agent") == SIXTH,
                 f"{label}: {SIXTH} accepting the job", c, 120)
        # Round 0 (the stats) is the sixth bank and the first four: the fifth starts once
        # it has begun, and the first one's round-0 compute waits (FV_TEST_HOLD_COMPUTE)
        # until the fifth has accepted, so every run has the same cohorts: round 0 without
        # the fifth, every later round with all six (until an exclusion).
        hold = f"{d}/hold"
        later = f",{INSPECT_ROUND}" if admin else ""

        def hold_env(b):
            if b == HONEST[0]:
                return {"FV_TEST_HOLD_COMPUTE": f"0{later}:{hold}"}
            return {"FV_TEST_HOLD_COMPUTE": f"{later[1:]}:{hold}"} if admin else {}
        for b in HONEST[:-1]:
            procs[b] = start(b, agent, hold_env(b))
        wait_log(clog, lambda e: e.get("event") == "round_start" and e.get("round") == 0,
                 f"{label}: round 0", c, 120)
        procs[HONEST[-1]] = start(HONEST[-1], agent, hold_env(HONEST[-1]))
        wait_log(clog, lambda e: e.get("event") == "job_accepted"
                 and e.get("agent") == HONEST[-1], f"{label}: {HONEST[-1]} accepting", c, 120)
        open(f"{hold}-0", "w").close()
        if admin:
            wait_log(clog, lambda e: e.get("event") == "round_start"
                     and e.get("round") == INSPECT_ROUND, f"{label}: round {INSPECT_ROUND}", c,
                     300)
            inspect(admin)
            open(f"{hold}-{INSPECT_ROUND}", "w").close()
        while c.poll() is None:
            failed = {b: p.returncode for b, p in procs.items()
                      if p.poll() is not None and p.returncode != 0}
            if failed or time.time() - t0 > 1500 * S:
                why = f"agents failed: {failed}" if failed else "the job did not finish"
                tails = "".join(f"--- {b}\n" + open(f"{d}/{b}.log").read()[-1500:]
                                for b in BANKS)
                fvtest.fail(f"{label}: {why}\n--- coordinator\n"
                            + open(clog).read()[-4000:] + "\n" + tails)
            time.sleep(0.2)
        out = c.stdout.read()
        codes = fvfed.wait_exits(procs, 120 * S)
    finally:
        for p in [c] + list(procs.values()):
            if p.poll() is None:
                p.kill()
                p.wait()
    fvtest.check(c.returncode == 0, f"{label}: coordinator exit {c.returncode}\n"
                 + open(clog).read()[-4000:])
    fvtest.check(all(codes[b] == 0 for b in HONEST), f"{label}: honest agents' exits {codes}")
    res = json.loads(out.strip().splitlines()[-1])
    fvtest.check(res.get("status") == "done", f"{label}: job {res}")
    _, ev, _ = fvtest.run(["eval", "--model", f"{d}/state/latest/final.fvm", "--data",
                           f"{tmp}/test.csv", "--json"], expect=0)
    return {"dir": d, "res": res, "coord": fvfed.events(clog),
            "sixth": fvfed.events(f"{d}/{SIXTH}.log"), "sixth_exit": codes[SIXTH],
            "rounds": [json.loads(l) for l in open(f"{d}/state/latest/rounds.jsonl")],
            "auc": json.loads(ev)["roc_auc"], "secs": time.time() - t0}


INSPECT_ROUND = 3


def audit_lines(r, event):
    """The coordinator's signed audit records of an event naming the sixth bank."""
    path = f"{r['dir']}/state/state/audit.log"
    return [l for l in open(path) if f'"{event}"' in l and SIXTH in l]


def inspect_live(admin):
    """While the liar is excluded and the job runs: job show (--json and text) names it,
    with its check."""
    job_id = json.loads(fvtest.run(["job", "list"] + admin + ["--json"], expect=0)[1])[
        "jobs"][0]["id"]
    live = json.loads(fvtest.run(["job", "show", job_id] + admin + ["--json"],
                                 expect=0)[1])["live"]
    pf = live.get("proof_failures", [])
    print(f"  job show --json: live.proof_failures {json.dumps(pf)}")
    expect([(x.get("agent"), x.get("check"), x.get("excluded")) for x in pf]
           == [(SIXTH, "norm", True)], f"job show: live.proof_failures: {pf}")
    _, text, _ = fvtest.run(["job", "show", job_id] + admin, expect=0)
    line = [l for l in text.splitlines() if "proofs failed" in l]
    print(f"  job show: {line}")
    expect(line and SIXTH in line[0] and "'norm'" in line[0] and "excluded" in line[0],
           f"job show: no proofs line naming {SIXTH}:\n{text}")


def trained_norms(r):
    out = {}
    for b in BANKS:
        for e in fvfed.events(f"{r['dir']}/{b}.log"):
            if e.get("event") == "trained":
                out.setdefault(b, []).append((round(e["update_norm"], 4), e.get("clipped")))
    return out


def lines(r, event, agent=SIXTH):
    return [e for e in r["coord"] if e.get("event") == event and e.get("agent") == agent]


def check_of(e):
    """The check a proof_failed line names: its "check" field, else the quoted name in its
    "why" ("proof failed check 'norm' (0 holders complained, decided from 6)")."""
    if e.get("check"):
        return e["check"]
    m = re.search(r"check '([^']*)'", e.get("why", ""))
    return m.group(1) if m else None


def print_rounds(r):
    for x in r["rounds"]:
        print(f"    round {x['round']}: agents {x['agents']}, val ROC AUC "
              f"{x['val_roc_auc']:.4f}")


t_all = time.time()
honest = run_job("honest")
print(f"honest: {ROUNDS} rounds in {honest['secs']:.1f} s, test ROC AUC {honest['auc']:.4f}")
print_rounds(honest)
print(f"  trained update norms (bound {BOUND}; norm, clipped): {trained_norms(honest)}")
if os.environ.get("FV_POISON_NO_VALIDATION"):
    print("calibration only (no validation)")
    sys.exit(0)
fvtest.check(not [e for e in honest["coord"] if e.get("event") in
                  ("proof_failed", "member_excluded")],
             "honest run: " + json.dumps([e for e in honest["coord"] if e.get("event") in
                                          ("proof_failed", "member_excluded")]))
fvtest.check(all(x["agents"] >= 5 for x in honest["rounds"]), f"honest: {honest['rounds']}")

problems = []  # every attack runs; the failures are reported together at the end


def expect(cond, msg):
    if not cond:
        problems.append(msg)
        print(f"  PROBLEM: {msg}")
    return cond


for attack, want in ATTACKS.items():
    if ONLY and attack not in ONLY:
        continue
    r = run_job(attack, attack, inspect=inspect_live if attack == "over_norm" else None)
    expect(audit_lines(r, "proof.failed") and audit_lines(r, "agent.excluded"),
           f"{attack}: no proof.failed / agent.excluded audit record naming {SIXTH}")
    lied = {}  # round: the check the agent aimed at
    for e in r["sixth"]:
        if e.get("event") == "evil" and e.get("check"):
            lied.setdefault(e["round"], e["check"])
    if not expect(lied, f"{attack}: the evil agent lied in no round: "
                  + json.dumps(r["sixth"][-20:])):
        continue
    failed = {e.get("round"): e for e in lines(r, "proof_failed")}
    for rnd, aim in sorted(lied.items()):
        ok_checks = want if want is not None else {aim}
        e = failed.get(rnd)
        if attack == "count_range" and e is not None and str(check_of(e)).startswith("hist_sum"):
            # fv_valid proves the bins' total under nonneg_sum only up to the witnesses'
            # wraparound slack (fv_valid.h "four squares"): a bin at 2^17 passes "nonneg"
            # and is caught by its model's hist_sum=n_val equality
            ok_checks = ok_checks | {check_of(e)}
        if e is None and attack == "replay":  # the PROOF itself refused, naming the member
            ref = [x for x in r["coord"] if x.get("round") == rnd and "refus" in
                   str(x.get("event", "")) and SIXTH in json.dumps(x)]
            expect(ref, f"replay: round {rnd}: neither proof_failed nor a refusal naming "
                   f"{SIXTH}: " + json.dumps([x for x in r["coord"] if x.get("round") == rnd]))
            continue
        if expect(e is not None, f"{attack}: round {rnd}: no proof_failed for {SIXTH}; its "
                  "lines: " + json.dumps([x for x in r["coord"] if x.get("agent") == SIXTH][-10:])):
            expect(check_of(e) in ok_checks, f"{attack}: round {rnd}: check {check_of(e)!r}, "
                   f"expected {sorted(ok_checks)}: " + json.dumps(e))
    first = min(lied)
    exc = lines(r, "member_excluded")
    # validation.max_failures 1: excluded after its first failed proof, in no later cohort
    expect(exc, f"{attack}: no member_excluded for {SIXTH} (max_failures 1); it lied in "
           f"rounds {sorted(lied)}")
    expect(max(lied) == first, f"{attack}: lied again after its first failure: {sorted(lied)}")
    later = [x for x in r["rounds"] if x["round"] > first]
    expect(later and all(x["agents"] == len(HONEST) for x in later),
           f"{attack}: rounds after {first}: " + json.dumps(
               [{k: x.get(k) for k in ("round", "agents")} for x in later]))
    gap = r["auc"] - honest["auc"]
    checks = sorted({str(check_of(failed[k])) for k in failed})
    print(f"{attack}: lied in round(s) {sorted(lied)} ({lied[first]}); proof_failed "
          f"{checks} in rounds {sorted(failed)}; excluded: "
          f"{[x.get('round') for x in exc] or 'no'}; test ROC AUC {r['auc']:.4f} "
          f"({gap:+.4f}); {r['secs']:.1f} s; its exit {r['sixth_exit']}")
    expect(abs(gap) <= 0.01, f"{attack}: test ROC AUC {r['auc']:.4f} vs honest "
           f"{honest['auc']:.4f}")

# ---- what cannot be proved ----------------------------------------------------------------
if not ONLY or "shuffle_hist" in ONLY:
    r = run_job("shuffle_hist", "shuffle_hist")
    bad = [e for e in r["coord"] if e.get("event") in ("proof_failed", "member_excluded")]
    expect(not bad, "shuffle_hist: its lies within the rules were refused: " + json.dumps(bad))
    lied = sorted({e["round"] for e in r["sixth"] if e.get("event") == "evil"})
    expect(lied == list(range(1, ROUNDS + 1)), f"shuffle_hist: lied in rounds {lied}")
    print(f"shuffle_hist: lied in rounds {lied}, every proof passed; test ROC AUC "
          f"{r['auc']:.4f} ({r['auc'] - honest['auc']:+.4f} against honest)")
    val6 = {b: [e["val_rows"] for e in fvfed.events(f"{r['dir']}/{b}.log")
                if e.get("event") == "trained"] for b in BANKS}
    share = max(val6[SIXTH] or [0]) / max(1, sum(max(v or [0]) for v in val6.values()))
    for h, s in zip(honest["rounds"], r["rounds"]):
        print(f"    round {s['round']}: val ROC AUC {s['val_roc_auc']:.4f} vs honest "
              f"{h['val_roc_auc']:.4f} ({s['val_roc_auc'] - h['val_roc_auc']:+.4f}); the "
              f"liar's share of validation rows {share:.3f}")
    p = {k: fvtest.model_params(f"{x['dir']}/state/latest/model-r0001.fvm")
         for k, x in (("h", honest), ("s", r))}
    q = {k: fvtest.model_params(f"{x['dir']}/state/latest/model-r0002.fvm")
         for k, x in (("h", honest), ("s", r))}
    step = math.sqrt(sum(((qs - ps) - (qh - ph)) ** 2
                         for ps, qs, ph, qh in zip(p["s"], q["s"], p["h"], q["h"])))
    same_start = p["s"] == p["h"]
    r1 = [x for x in r["rounds"] if x["round"] == 1][0]
    print(f"    round-1 step vs honest: ||diff|| = {step:.4g}; bound 2 B / weight_sum "
          f"= {2 * BOUND:.4g} (weight_sum 1 with every bank in; {r1['agents']} agents)"
          f"{'' if same_start else '; NOTE: the runs started from different models'}")

fvtest.check(not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems))
print(f"PASS ({time.time() - t_all:.0f} s in all)")
