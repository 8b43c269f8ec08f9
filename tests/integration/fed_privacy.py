"""Differential privacy in a real federation: the agents' plans, ledgers, refusals and the
two modes' rounds (issue 19).

argv: fedvault fedvault-coordinator fedvault-agent
A coordinator daemon and three Lending Club banks (SecAgg on, logreg, 2 training rounds of
1 local epoch), every agent with a privacy policy (epsilon_max, delta 1e-5) and its ledger
beside its config. Cases, in order:
  (a) local  a job with "privacy" {mode local, epsilon 3, delta 1e-5}: it runs to its end;
             each agent's ledger (`fedvault-agent --config C --privacy-ledger --json`) has
             exactly one entry for it, mode local, epsilon at most 3, and the agent's signed
             audit log has privacy_spent for it with the same epsilon.
  (d) distributed  a job in distributed mode (sample_rate 0.2, secagg bits 20, epsilon 3):
             max_update_norm 1): it runs to its end (the coordinator's sum check passes the
             noisy sums); every training round's metrics are finite, the final model
             scores the test split with a finite ROC AUC; the ledgers now hold two entries.
  (c) restart  bank-northeast is stopped; its ledger read while it is down equals the one
             read before; its policy's epsilon_max is lowered to what it has spent plus
             0.5; it is started again.
  (b) refusal  a third job (local, epsilon 3, another name) is offered: bank-northeast
             refuses it with category policy, its reason names the privacy budget (`job
             show` has it), and its ledger gains no entry; the job is aborted.
  (c') the same job again  the daemon is stopped, a fresh one (new state) is started and
             job (a)'s spec submitted again: the same job id. Every agent, restarted
             against it, accepts (bank-northeast too, though a new charge of epsilon 3
             would exceed its lowered epsilon_max: the job is already in its ledger) and
             no ledger changes; the job is aborted once the cohort has accepted.
  (e) crash  bank-central SIGKILLs itself after auditing a new job's spend and before its
             ledger write (FV_TEST_KILL_AT=privacy-audited:0); restarted, it charges the job
             on the next offer: one ledger entry, two privacy_spent records, and no ledger
             entry without a record.
"""
import json
import math
import os
import shutil
import subprocess
import sys

import fvdaemon
import fvfed
import fvtest

fedvault, coordinator, agent = sys.argv[1:4]
WRAPPER = fvtest.WRAPPER
S = fvtest.SLOW
tmp = fvtest.tmpdir()
fvfed.setup(tmp, "privacy-fed")
BANKS = ["bank-central", "bank-midwest", "bank-northeast"]
TIGHT = "bank-northeast"
DELTA = 1e-5


def cfg_path(b):
    return f"{tmp}/fed/{b}/agent.json"


def set_policy(b, epsilon_max):
    path = cfg_path(b)
    c = json.load(open(path))
    c.setdefault("policy", {})["privacy"] = {"epsilon_max": epsilon_max, "delta": DELTA}
    with open(path, "w") as f:
        json.dump(c, f, indent=2)


def ledger(b):
    p = subprocess.run(WRAPPER + [agent, "--config", cfg_path(b), "--privacy-ledger", "--json"],
                       capture_output=True, text=True, timeout=120 * S)
    fvtest.check(p.returncode == 0, f"{b}: --privacy-ledger exit {p.returncode}: {p.stderr}")
    try:
        return json.loads(p.stdout)
    except json.JSONDecodeError as e:
        fvtest.fail(f"{b}: --privacy-ledger --json is not JSON ({e}): {p.stdout!r}")


def audit_records(b):
    path = f"{tmp}/fed/{b}/audit/agent-audit.log"
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


def job(name, privacy, **over):
    return fvfed.job_spec(name=name, model="logreg", rounds=2, min_agents=len(BANKS),
                          privacy=dict({"delta": DELTA, "outside_budget": ["stats", "metrics"]},
                                       **privacy), **over)


LOCAL = {"mode": "local", "epsilon": 3.0}
DIST = {"mode": "distributed", "epsilon": 3.0, "sample_rate": 0.2}


def wait_done(d, jid, what):
    d.wait(lambda: d.admin_json(["job", "show", jid])["status"] not in ("queued", "running"),
           what, 300)
    show = d.admin_json(["job", "show", jid])
    fvtest.check(show["status"] == "done", f"{what}: {show['status']} ({show.get('why')})")
    return show


def cohort(d, jid):
    return {a["agent"]: a for a in d.admin_json(["job", "show", jid]).get("cohort", [])}


for b in BANKS:
    set_policy(b, 20.0)

d = fvdaemon.Daemon(coordinator, tmp)
try:
    for b in BANKS:
        d.start_agent(agent, b, f"{tmp}/banks/{b}.csv")
    d.wait_connected(len(BANKS))

    # ---- (a) local mode -----------------------------------------------------------------
    ja = job("dp-local", LOCAL)
    ida = d.submit(ja)
    wait_done(d, ida, "the local-mode job")
    before = {}
    for b in BANKS:
        lg = ledger(b)
        ent = [e for e in lg["entries"] if e["job"] == ida]
        fvtest.check(len(lg["entries"]) == 1 and len(ent) == 1,
                     f"{b}: one ledger entry for {ida[:12]} expected: {lg['entries']}")
        e = ent[0]
        fvtest.check(e["mode"] == "local" and 0 < e["epsilon"] <= 3.0 + 1e-9
                     and e["delta"] == DELTA and e["sigma"] > 0 and 0 < e["q"] <= 1
                     and e["steps"] >= 2, f"{b}: ledger entry {e}")
        spent = [r for r in audit_records(b) if r.get("event") == "privacy_spent"
                 and r["details"].get("job") == ida]
        fvtest.check(len(spent) == 1 and abs(spent[0]["details"]["epsilon"] - e["epsilon"]) < 1e-9,
                     f"{b}: audit privacy_spent for {ida[:12]}: {spent}")
        print(f"{b}: local job: epsilon {e['epsilon']:.3f} (sigma {e['sigma']:.3f}, q "
              f"{e['q']:.4f}, {e['steps']} steps)")

    # ---- (d) distributed mode -----------------------------------------------------------
    # max_update_norm: the coordinator's norm check must leave room for the summed noise
    jd = job("dp-distributed", DIST, optimizer={"kind": "sgd", "lr": 0.5}, max_update_norm=1.0,
             secagg={"threshold": 0, "neighbors": 0, "clip": 1.0, "bits": 20})
    idd = d.submit(jd)
    show = wait_done(d, idd, "the distributed-mode job")
    train = [r for r in show["rounds"] if r["kind"] == "train" and r["status"] == "ok"]
    fvtest.check(len(train) == 2 and all(
        math.isfinite(r["metrics"]["val_roc_auc"]) and math.isfinite(r["metrics"]["val_log_loss"])
        for r in train), f"distributed rounds' metrics: {[r.get('metrics') for r in train]}")
    final = [m for m in d.admin_json(["model", "list"])["models"]
             if m["kind"] == "final" and m.get("job", idd) == idd]
    fvtest.check(final, "no final model for the distributed job")
    exp = f"{tmp}/dist-final.fvm"
    d.admin(["model", "export", str(final[-1]["version"]), "--out", exp])
    ev = fvtest.run_json(["eval", "--model", exp, "--data", f"{tmp}/test.csv"])
    fvtest.check(math.isfinite(ev["roc_auc"]) and 0 <= ev["roc_auc"] <= 1, f"eval: {ev}")
    print(f"distributed job: val ROC AUC {train[-1]['metrics']['val_roc_auc']:.4f}, test "
          f"{ev['roc_auc']:.4f}")
    for b in BANKS:
        lg = ledger(b)
        e = [x for x in lg["entries"] if x["job"] == idd]
        fvtest.check(len(lg["entries"]) == 2 and len(e) == 1 and e[0]["mode"] == "distributed"
                     and e[0]["epsilon"] <= 3.0 + 1e-9, f"{b}: ledger {lg['entries']}")
        before[b] = lg

    # ---- (c) the ledger across a restart ------------------------------------------------
    p = d.agents[TIGHT]
    p.terminate()
    p.wait(timeout=60 * S)
    down = ledger(TIGHT)
    fvtest.check(down == before[TIGHT], f"{TIGHT}: the ledger changed when it stopped:\n"
                 f"{before[TIGHT]}\n{down}")
    tot = [t for t in down["totals"]]
    fvtest.check(len(tot) == 1 and tot[0]["jobs"] == 2 and tot[0]["epsilon"] > 0,
                 f"{TIGHT}: totals {tot}")
    spent = tot[0]["epsilon"]
    set_policy(TIGHT, spent + 0.5)
    d.start_agent(agent, TIGHT, f"{tmp}/banks/{TIGHT}.csv")
    d.wait_connected(len(BANKS))

    # ---- (b) refused over budget --------------------------------------------------------
    idb = d.submit(job("dp-local-2", LOCAL))
    d.wait(lambda: cohort(d, idb).get(TIGHT, {}).get("status") == "refused",
           f"{TIGHT} refusing the third job", 120)
    a = cohort(d, idb)[TIGHT]
    print(f"{TIGHT} refused: {a}")
    fvtest.check(a.get("category") == "policy" and "privacy budget" in (a.get("reason") or "")
                 and f"{spent + 0.5:.2f}" in a["reason"], f"{TIGHT}'s refusal: {a}")
    d.admin(["job", "abort", idb])
    d.wait(lambda: d.admin_json(["job", "show", idb])["status"] == "aborted", "job 3 aborted", 60)
    fvtest.check(ledger(TIGHT) == before[TIGHT], f"{TIGHT}: the refused job changed its ledger")
    after = {b: ledger(b) for b in BANKS}
finally:
    d.stop()

# ---- (c') the same job offered again, by a fresh coordinator ---------------------------
for f in ("state", "coordinator.log"):
    shutil.move(f"{tmp}/{f}", f"{tmp}/first-{f}")
d = fvdaemon.Daemon(coordinator, tmp)
try:
    for b in BANKS:
        d.start_agent(agent, b, f"{tmp}/banks/{b}.csv")
    d.wait_connected(len(BANKS))
    ida2 = d.submit(ja)
    fvtest.check(ida2 == ida, f"the same spec gave job id {ida2}, first {ida}")
    d.wait(lambda: all(a.get("status") in ("accepted", "refused")
                       for a in cohort(d, ida2).values()) and len(cohort(d, ida2)) == len(BANKS),
           "every agent's answer to job (a) again", 120)
    c = cohort(d, ida2)
    fvtest.check(all(c[b]["status"] == "accepted" for b in BANKS),
                 f"job (a) offered again: {json.dumps(c)}")
    d.admin(["job", "abort", ida2], expect=None)
    d.wait(lambda: d.admin_json(["job", "show", ida2])["status"] in ("aborted", "done"),
           "job (a) again ended", 120)
    for b in BANKS:
        lg = ledger(b)
        fvtest.check(lg == after[b], f"{b}: job (a) offered again changed the ledger:\n"
                     f"{after[b]}\n{lg}")
        # one privacy_spent per charged job, none for the job offered again
        jobs = [r["details"]["job"] for r in audit_records(b) if r.get("event") == "privacy_spent"]
        fvtest.check(sorted(jobs) == sorted(e["job"] for e in lg["entries"]),
                     f"{b}: privacy_spent audit records for {jobs}, ledger entries "
                     f"{[e['job'] for e in lg['entries']]}")

    # ---- (e) a crash between the audit record and the ledger write -----------------------
    # bank-central dies right after auditing a new job's spend (FV_TEST_KILL_AT
    # privacy-audited: a protocol point, not a time): its audit log has the record, its
    # ledger no entry. Restarted, it is offered the job again and charges it: the ledger has
    # one entry, the audit log two records; no entry is ever without a record.
    CRASH = "bank-central"
    set_policy(TIGHT, 20.0)
    for b in (CRASH, TIGHT):
        d.agents[b].terminate()
        d.agents[b].wait(timeout=60 * S)
    d.start_agent(agent, TIGHT, f"{tmp}/banks/{TIGHT}.csv")
    d.start_agent(agent, CRASH, f"{tmp}/banks/{CRASH}.csv",
                  env={"FV_TEST_KILL_AT": "privacy-audited:0"})
    d.wait_connected(len(BANKS))
    ide = d.submit(job("dp-crash", LOCAL))
    d.wait(lambda: d.agents[CRASH].poll() is not None, f"{CRASH} killed at privacy-audited", 120)
    fvtest.check(d.agents[CRASH].returncode == -9, f"{CRASH} exit {d.agents[CRASH].returncode}")
    rec = [r for r in audit_records(CRASH) if r.get("event") == "privacy_spent"
           and r["details"]["job"] == ide]
    fvtest.check(len(rec) == 1 and not [e for e in ledger(CRASH)["entries"] if e["job"] == ide],
                 f"{CRASH} after the kill: {len(rec)} records, ledger {ledger(CRASH)}")
    d.start_agent(agent, CRASH, f"{tmp}/banks/{CRASH}.csv")
    wait_done(d, ide, "the job after the crash")
    lg = ledger(CRASH)
    rec = [r["details"]["job"] for r in audit_records(CRASH) if r.get("event") == "privacy_spent"]
    fvtest.check(len([e for e in lg["entries"] if e["job"] == ide]) == 1
                 and rec.count(ide) == 2 and all(e["job"] in rec for e in lg["entries"]),
                 f"{CRASH}: ledger {[e['job'][:12] for e in lg['entries']]}, privacy_spent "
                 f"records {[j[:12] for j in rec]}")
    print(f"(e) killed between the audit record and the ledger: charged on the next offer; "
          f"audit {rec.count(ide)} records, ledger 1 entry")
finally:
    d.stop()
print("ok")
