"""Federated distillation: a job with a "distill" section, run end to end and with crashes.

argv: fedvault fedvault-coordinator fedvault-agent
Five Lending Club banks, SecAgg. Teacher mlp:16 trained for 3 rounds (early stopping on,
so the teacher is the best evaluated model), then 3 distill rounds train a logreg student
with alpha 0.5, T 2 and int8 quantization. Checks:
  - rounds 0 (stats), 1..3 (train), 4..6 (distill) committed; versions: one "global"
    per round (the stats round's is the initial model), the teacher as "final", one "student" per distill round, the
    best student as "distilled" plus its int8 file (a second "distilled" version);
  - every distill round's teacher ROC AUC (its own secure histograms) equals the training
    round's ROC AUC of the model chosen as teacher: same model, same validation rows;
  - the compression report (versions.report, `fedvault model show` through the admin
    port): parameters and bytes of each model, latencies, AUCs, ratios consistent;
  - the student and int8 files score with `fedvault predict`; the int8 file is smaller;
  - the same job in a fresh state with the coordinator SIGKILLed at four points of the
    hand-over and of the distill phase (the last training round committed, the distill
    phase committed, a distill round's upload phase, a distill round committed) ends with
    the uninterrupted run's models: every round's model file and the distilled ones are
    byte-identical.
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
tmp = fvtest.tmpdir()
fvfed.setup(tmp, "distill-fed")
job = fvfed.job_spec(rounds=3, early_stopping={"metric": "roc_auc", "patience": 2},
                     distill={"student": "logreg", "temperature": 2.0, "alpha": 0.5,
                              "rounds": 3, "local_epochs": 1, "quantize_int8": True,
                              "early_stopping": {"patience": 0}})
with open(f"{tmp}/job.json", "w") as f:
    json.dump(job, f)
COORD_CFG = f"{tmp}/fed/coordinator/coordinator.json"


def start_agents(port, tag):
    return fvfed.start_agents(agent, tmp, port, tag)


def run_coordinator(tag, port, kill_at=None, extra=()):
    return fvfed.run_coordinator(coordinator, tmp, tag, port, kill_at, extra)


def events_since_start(log):
    return fvfed.events(log, since_start=True)


def db_rows(tag, sql):
    return fvfed.db_rows(tmp, tag, sql)


finish, wait_agents = fvfed.finish, fvfed.wait_agents


# ---- the uninterrupted run ------------------------------------------------------------
t0 = time.time()
res = fvfed.run_job(coordinator, agent, tmp, "ref", "reference run")
print(f"reference: {res['rounds']} rounds in {time.time() - t0:.1f} s; final version "
      f"{res.get('final_version')}, student version {res.get('student_version')}")
fvtest.check(res["status"] == "done" and res.get("student_version"),
             f"the job summary names no student version: {res}")

rounds = db_rows("ref", "SELECT round, kind, status, metrics, model_out FROM rounds "
                        "ORDER BY round, attempt")
fvtest.check([(r[0], r[1], r[2]) for r in rounds] ==
             [(0, "stats", "ok")] + [(i, "train", "ok") for i in (1, 2, 3)]
             + [(i, "distill", "ok") for i in (4, 5, 6)], f"rounds: {rounds}")
versions = db_rows("ref", "SELECT version, kind, round, parent, sha256, report FROM versions "
                          "ORDER BY version")
kinds = [v[1] for v in versions]
fvtest.check(kinds == ["global"] * 4 + ["final"] + ["student"] * 3 + ["distilled"] * 2,
             f"version kinds: {kinds}")
job_row = db_rows("ref", "SELECT final_version, student_version FROM jobs")[0]
final_v = [v for v in versions if v[1] == "final"][0]
distilled = [v for v in versions if v[1] == "distilled"]
fvtest.check(job_row == (final_v[0], distilled[0][0]),
             f"jobs.final_version/student_version {job_row}, versions {final_v[0]}, "
             f"{distilled[0][0]}")
fvtest.check(distilled[1][3] == distilled[0][0], "the int8 version's parent is the student")
fvtest.check(versions[5][3] == final_v[0], "the first student's parent is the teacher")

# The teacher: the training round with the best ROC AUC; each distill round measured it
# again on the same validation rows, so its ROC AUC must be exactly that round's.
train_m = {r[0]: json.loads(r[3]) for r in rounds if r[1] == "train"}
dist_m = {r[0]: json.loads(r[3]) for r in rounds if r[1] == "distill"}


def best_round(metrics, min_delta=1e-4):
    """The round the coordinator keeps as best: the first that beats the best so far by
    more than early stopping's min_delta (the job's default, 1e-4); a later round within
    min_delta of it does not replace it, so this is not simply the maximum."""
    best, val = None, None
    for r in sorted(metrics):
        v = metrics[r]["val_roc_auc"]
        if v is not None and (val is None or v > val + min_delta):
            best, val = r, v
    return best


best_r = best_round(train_m)
for r, m in dist_m.items():
    fvtest.check(m["teacher_roc_auc"] == train_m[best_r]["val_roc_auc"],
                 f"distill round {r}: teacher ROC AUC {m['teacher_roc_auc']} is not the "
                 f"teacher's own (round {best_r}: {train_m[best_r]['val_roc_auc']})")
    fvtest.check(m["n_val"] == train_m[best_r]["n_val"], f"round {r}: n_val differs")
    for k in ("val_roc_auc", "int8_roc_auc", "int8_pr_auc", "teacher_pr_auc"):
        fvtest.check(isinstance(m.get(k), float) and 0 < m[k] <= 1, f"round {r}: {k} {m}")
    fvtest.check(abs(m["int8_roc_auc"] - m["val_roc_auc"]) < 0.02,
                 f"round {r}: int8 ROC AUC {m['int8_roc_auc']} far from {m['val_roc_auc']}")
print(f"teacher = round {best_r} (ROC AUC {train_m[best_r]['val_roc_auc']:.4f}); every "
      f"distill round measured the same")

# The compression report.
rep = json.loads(distilled[0][5])
fvtest.check(json.loads(distilled[1][5]) == rep, "the int8 version carries the same report")
t, s, q = rep["teacher"], rep["student"], rep["student_int8"]
fvtest.check(t["arch"] == "mlp:16" and s["arch"] == "logreg", f"archs {t['arch']} {s['arch']}")
n_in = s["params"] - 1
fvtest.check(t["params"] == n_in * 16 + 16 + 16 + 1, f"teacher params {t['params']}")
fvtest.check(abs(rep["ratios"]["params"] - t["params"] / s["params"]) < 1e-9, "params ratio")
fvtest.check(t["version"] == final_v[0] and s["version"] == distilled[0][0]
             and q["version"] == distilled[1][0], "report versions")
sizes = {v[0]: os.path.getsize(f"{tmp}/ref/state/models/{v[4]}.fvm") for v in versions}
fvtest.check(t["bytes"] == sizes[final_v[0]] and s["bytes"] == sizes[distilled[0][0]]
             and q["bytes"] == sizes[distilled[1][0]], f"report bytes {t['bytes']} "
             f"{s['bytes']} {q['bytes']} vs files {sizes}")
fvtest.check(q["bytes"] < s["bytes"], "the int8 file is not smaller")
for side in (t, s, q):
    lat = side["latency_us"]
    fvtest.check(lat["batch_1"] > 0 and lat["batch_1024"] > lat["batch_1"]
                 and lat["calls_1"] >= 31, f"latency {lat}")
best_s = rep["round"]
fvtest.check(s["roc_auc"] == dist_m[best_s]["val_roc_auc"]
             and t["roc_auc"] == dist_m[best_s]["teacher_roc_auc"]
             and q["roc_auc"] == dist_m[best_s]["int8_roc_auc"]
             and best_s == best_round(dist_m),
             f"report AUCs are not those of the best distill round {best_s} (rounds "
             f"{ {k: m['val_roc_auc'] for k, m in dist_m.items()} })")
fvtest.check(abs(rep["roc_auc_gap"] - (t["roc_auc"] - s["roc_auc"])) < 1e-12, "gap")
print(f"report: params {t['params']} -> {s['params']}, bytes {t['bytes']} -> {s['bytes']} "
      f"(int8 {q['bytes']}), batch-1 {t['latency_us']['batch_1']:.2f} -> "
      f"{s['latency_us']['batch_1']:.2f} us, ROC AUC {t['roc_auc']:.4f} -> "
      f"{s['roc_auc']:.4f} (int8 {q['roc_auc']:.4f})")

# The student files score.
stud = f"{tmp}/ref/state/models/{distilled[0][4]}.fvm"
fvtest.check(open(stud, "rb").read() == open(f"{tmp}/ref/latest/student.fvm", "rb").read(),
             "--out student.fvm is not the distilled version's file")
for path in (stud, f"{tmp}/ref/state/models/{distilled[1][4]}.fvm"):
    code, pout, perr = fvtest.run(["predict", "--model", path, "--data", f"{tmp}/test.csv",
                                   "--format", "jsonl", "--explain", "2"])
    fvtest.check(code == 0 and len(pout.splitlines()) > 1000, f"predict {path}: {code} {perr}")

# `fedvault model show` through the admin port of a daemon on the same state.
port2 = fvtest.free_port()
adm = subprocess.Popen(WRAPPER + [coordinator, "--config", COORD_CFG, "--state",
                                  f"{tmp}/ref/state", "--listen", "127.0.0.1:0",
                                  "--admin-listen", f"127.0.0.1:{port2}"],
                       stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/admin.log", "w"))
try:
    admin = ["--config", f"{tmp}/fed/ops-1/admin.json", "--admin", f"127.0.0.1:{port2}"]
    for _ in range(int(100 * S)):
        code, _, _ = fvtest.run(["status", *admin])
        if code == 0:
            break
        time.sleep(0.2)
    code, sout, serr = fvtest.run(["model", "show", str(distilled[0][0]), *admin, "--json"])
    fvtest.check(code == 0 and json.loads(sout)["report"] == rep,
                 f"model show --json: {code} {serr}")
    code, sout, serr = fvtest.run(["model", "show", str(distilled[0][0]), *admin])
    fvtest.check(code == 0 and "mlp:16" in sout and "logreg" in sout, f"model show: {sout}")
    print("model show (text):\n" + "\n".join("  " + l for l in sout.splitlines()[-14:]))
finally:
    adm.send_signal(signal.SIGTERM)
    adm.wait(timeout=60 * S)

# ---- the same job, the coordinator killed at four points --------------------------------
KILLS = ["round-committed:3", "distill-started:1", "secagg-upload:1", "round-committed:1"]
port = fvtest.free_port()
procs = None
t0 = time.time()
for i, k in enumerate(KILLS + [None]):
    p, log = run_coordinator("crash", port, k)
    if procs is None:
        procs = start_agents(port, "crash")
    out = finish(p, f"run {i + 1} (kill at {k})")
    mine = events_since_start(log)
    if k is None:
        fvtest.check(p.returncode == 0, f"last run: exit {p.returncode}\n"
                     + "\n".join(json.dumps(e) for e in mine[-10:]))
        break
    killed = [e for e in mine if e.get("event") == "test_kill"]
    fvtest.check(p.returncode == -signal.SIGKILL and killed
                 and killed[0]["point"] == k.split(":")[0],
                 f"run {i + 1}: expected a SIGKILL at {k}, exit {p.returncode}\n"
                 + "\n".join(json.dumps(e) for e in mine[-10:]))
    done = [e["round"] for e in mine if e.get("event") == "round_done"]
    print(f"  run {i + 1}: completed rounds {done}, killed at {k}")
wait_agents(procs, "crashing run")
print(f"crashing run: {len(KILLS) + 1} coordinator processes, {time.time() - t0:.1f} s")
crows = db_rows("crash", "SELECT round, kind, status, model_out FROM rounds WHERE status = 'ok' "
                         "ORDER BY round, attempt")
fvtest.check([(r[0], r[1], r[3]) for r in crows] == [(r[0], r[1], r[4]) for r in rounds],
             f"the crashing run's rounds differ from the reference's:\n{crows}\n{rounds}")
cvers = db_rows("crash", "SELECT kind, sha256 FROM versions ORDER BY version")
fvtest.check(cvers == [(v[1], v[4]) for v in versions],
             f"the crashing run's versions differ:\n{cvers}\n{[(v[1], v[4]) for v in versions]}")
state = f"{tmp}/crash/state"
code, vout, verr = fvtest.run(["audit", "verify", "--log", f"{state}/audit.log", "--head",
                               f"{state}/audit.log.head", "--cert",
                               f"{tmp}/fed/coordinator/cert.pem"])
fvtest.check(code == 0, f"audit verify: exit {code}\n{vout}\n{verr}")
ev = [json.loads(l)["event"] for l in open(f"{state}/audit.log")]
fvtest.check(ev.count("job.distill_started") == 1 and ev.count("job.resumed") == len(KILLS),
             f"audit: {ev.count('job.distill_started')} distill_started, "
             f"{ev.count('job.resumed')} resumed")
print("crashing run: every round and version identical to the reference's; audit verifies")

# ---- SecAgg off: distill rounds over plain float32 updates -----------------------------
job_off = dict(job, secagg="off")
with open(f"{tmp}/job.json", "w") as f:
    json.dump(job_off, f)
fvfed.run_job(coordinator, agent, tmp, "plain", "SecAgg-off run")
prow = db_rows("plain", "SELECT round, kind, status, metrics FROM rounds ORDER BY round, attempt")
fvtest.check([(r[0], r[1], r[2]) for r in prow] == [(r[0], r[1], r[2]) for r in rounds],
             f"SecAgg-off rounds: {prow}")
ptrain = {r[0]: json.loads(r[3]) for r in prow if r[1] == "train"}
pdist = {r[0]: json.loads(r[3]) for r in prow if r[1] == "distill"}
pbest = best_round(ptrain)
for r, m in pdist.items():
    fvtest.check(m["teacher_roc_auc"] == ptrain[pbest]["val_roc_auc"],
                 f"SecAgg off, distill round {r}: teacher ROC AUC {m['teacher_roc_auc']} is "
                 f"not round {pbest}'s {ptrain[pbest]['val_roc_auc']}")
    fvtest.check(abs(m["val_roc_auc"] - dist_m[r]["val_roc_auc"]) < 0.05,
                 f"round {r}: student ROC AUC {m['val_roc_auc']} with SecAgg off, "
                 f"{dist_m[r]['val_roc_auc']} with it")
prep = json.loads(db_rows("plain", "SELECT report FROM versions WHERE kind = 'distilled' "
                                   "ORDER BY version LIMIT 1")[0][0])
print(f"SecAgg off: student ROC AUC {prep['student']['roc_auc']:.4f} (on: "
      f"{rep['student']['roc_auc']:.4f}), teacher {prep['teacher']['roc_auc']:.4f}")
print("PASS")
