"""A multi-class federation (issue 13): ten classes, five banks, SecAgg on, and the default
spec for everything about metrics (no "hist_bins", no "early_stopping").

argv: fedvault fedvault-coordinator fedvault-agent
The data: examples/data/digits.csv (the UCI handwritten digits, target `digit`, "d0".."d9"),
25 % held out (`fedvault split`, stratified, seed 0), the rest dealt IID into five banks
(fvfed.split_iid: equal shares of every class). The job: a softmax regression, ROUNDS
rounds of LOCAL_EPOCHS local epochs. Checked:
  - the job runs to its end ("done"), every agent exits 0;
  - every training round of rounds.jsonl has the multi-class global metrics from the
    secure sums: a finite val_log_loss, val_accuracy in [0, 1], val_recall with one
    recall per class (each in [0, 1]), and no ROC / PR AUC (null);
  - final.fvm's accuracy on the test split (`fedvault eval`) is within 0.02 of the same
    model trained centrally by `fedvault train` on the union of the banks' rows (the
    same architecture, optimizer and batch size; epochs = rounds x local epochs; early
    stopping on validation loss with patience 3, the job's default; 10 % validation),
    evaluated on the same split;
  - the last round's global validation accuracy is within 0.1 of final.fvm's test
    accuracy (different rows: a loose check that the secure counts mean what they say).
Small enough for valgrind (tests/run.sh runs it there): a 650-parameter model and 1,346
training rows, so each process spends its time on TLS and SecAgg, not on training.
"""
import csv
import json
import math
import os
import subprocess
import sys
import time

import fvfed
import fvtest

fedvault, coordinator, agent = sys.argv[1:4]
S = fvfed.SLOW
tmp = fvtest.tmpdir()
BANKS = ["bank-a", "bank-b", "bank-c", "bank-d", "bank-e"]
MODEL, ROUNDS, LOCAL_EPOCHS, BATCH, LR = "logreg", 10, 2, 32, 0.02
TOL_CENTRAL, TOL_VAL = 0.02, 0.1

fvtest.run(["split", "--data", os.path.join(fvtest.DATA, "digits.csv"), "--target", "digit",
            "--test-fraction", "0.25", "--seed", "0", "--train-out", f"{tmp}/train.csv",
            "--test-out", f"{tmp}/test.csv"], expect=0)
fvtest.run(["schema", "infer", "--data", f"{tmp}/train.csv", "--target", "digit", "--out",
            f"{tmp}/schema.json"], expect=0)
schema = json.load(open(f"{tmp}/schema.json"))
classes = schema["classes"]
fvtest.check(len(classes) == 10 and schema.get("positive") is None,
             f"digits schema: classes {classes}, positive {schema.get('positive')}")
data = fvfed.split_iid(f"{tmp}/train.csv", f"{tmp}/banks", BANKS, "digit", seed=0)
fvfed.provision(tmp, "digits-fed", BANKS)


def rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))[1:]


# The banks hold the training split between them, every row once, every class each.
train_rows = rows(f"{tmp}/train.csv")
bank_rows = {b: rows(p) for b, p in data.items()}
fvtest.check(sorted(r for rs in bank_rows.values() for r in rs) == sorted(train_rows),
             "the banks' rows are not the training split")
for b, rs in bank_rows.items():
    fvtest.check({r[-1] for r in rs} == set(classes), f"{b} lacks a class")
print("banks: " + ", ".join(f"{b} {len(rs)} rows" for b, rs in bank_rows.items()))

job = {
    "name": "digits-iid",
    "schema": schema,
    "model": MODEL,
    "rounds": ROUNDS,
    "local_epochs": LOCAL_EPOCHS,
    "batch_size": BATCH,
    "optimizer": {"kind": "adam", "lr": LR},
    "min_agents": len(BANKS),
    "deadlines_ms": {"join": 120000 * S, "train": 120000 * S, "secagg_phase": 60000 * S},
    "seed": 0,
}
fvtest.check("secagg" not in job and "hist_bins" not in job and "early_stopping" not in job,
             "the job must use the default SecAgg and metrics settings")
with open(f"{tmp}/job.json", "w") as f:
    json.dump(job, f)

# The federation: --out tmp/run. Every process is waited for with a deadline and killed
# past it, so a failure leaves no agent reconnecting forever behind.
t0 = time.time()
port = fvtest.free_port()
coord, clog = fvfed.run_coordinator(coordinator, tmp, "run", port)
agents = fvfed.start_agents(agent, tmp, port, "run", BANKS, data)
try:
    out, _ = coord.communicate(timeout=900 * S)
except subprocess.TimeoutExpired:
    coord.kill()
    out, _ = coord.communicate()
codes = fvfed.wait_exits(agents, 120 * S)
fed_secs = time.time() - t0
tail = "".join(open(clog).readlines()[-8:])
fvtest.check(coord.returncode == 0 and out.strip(),
             f"the coordinator exited {coord.returncode}; its last log lines:\n{tail}")
fvtest.check(all(v == 0 for v in codes.values()),
             f"agents' exit codes {codes} (None: killed, still running)")
res = json.loads(out.strip().splitlines()[-1])
print(f"federation: {json.dumps(res)} ({fed_secs:.1f} s)")
fvtest.check(res["status"] == "done", f"job status {res['status']}: {res.get('why')}")

rounds = [json.loads(line) for line in open(f"{tmp}/run/latest/rounds.jsonl")]
train_rounds = [r for r in rounds if r.get("kind") == "train"]
fvtest.check(len(train_rounds) == res["rounds"] - 1 and train_rounds,
             f"rounds.jsonl has {len(train_rounds)} training rounds, the summary "
             f"{res['rounds']} rounds (with the stats round)")
for r in train_rounds:
    print(f"  round {r['round']:2d}: agents {r['agents']}, val accuracy "
          f"{r.get('val_accuracy')}, log loss {r.get('val_log_loss')}, recall "
          f"{r.get('val_recall')}")
for r in train_rounds:
    where = f"rounds.jsonl round {r['round']}"
    fvtest.check(r["agents"] == len(BANKS), f"{where}: {r['agents']} agents contributed")
    ll = r.get("val_log_loss")
    fvtest.check(isinstance(ll, (int, float)) and math.isfinite(ll) and ll >= 0,
                 f"{where}: val_log_loss {ll!r}")
    acc = r.get("val_accuracy")
    fvtest.check(isinstance(acc, (int, float)) and 0 <= acc <= 1,
                 f"{where}: val_accuracy {acc!r}, expected a number in [0, 1]")
    rec = r.get("val_recall")
    fvtest.check(isinstance(rec, list) and len(rec) == len(classes)
                 and all(isinstance(x, (int, float)) and 0 <= x <= 1 for x in rec),
                 f"{where}: val_recall {rec!r}, expected {len(classes)} recalls in [0, 1]")
    fvtest.check(r.get("val_roc_auc") is None and r.get("val_pr_auc") is None,
                 f"{where}: a multi-class round has no ROC / PR AUC: "
                 f"{r.get('val_roc_auc')!r} / {r.get('val_pr_auc')!r}")


def test_accuracy(model):
    e = fvtest.run_json(["eval", "--model", model, "--data", f"{tmp}/test.csv"])
    fvtest.check(e["roc_auc"] is None, f"{model}: a multi-class model has no ROC AUC")
    return e["accuracy"]


fed_acc = test_accuracy(f"{tmp}/run/latest/final.fvm")
epochs = ROUNDS * LOCAL_EPOCHS
c = fvtest.run_json(["train", "--data", f"{tmp}/train.csv", "--schema", f"{tmp}/schema.json",
                     "--model", MODEL, "--test-fraction", "0", "--val-fraction", "0.1",
                     "--epochs", epochs, "--patience", 3, "--batch-size", BATCH, "--lr", LR,
                     "--seed", 0, "--quiet", "--out", f"{tmp}/central.fvm"])
central_acc = test_accuracy(f"{tmp}/central.fvm")
last_val = train_rounds[-1]["val_accuracy"]
print(f"test accuracy ({MODEL}, {ROUNDS} rounds x {LOCAL_EPOCHS} local epochs vs "
      f"{c['epochs']} of {epochs} central epochs): central {central_acc:.4f}, federated "
      f"{fed_acc:.4f} (difference {fed_acc - central_acc:+.4f}; at most {TOL_CENTRAL} apart); "
      f"last round's global validation accuracy {last_val:.4f} (final model's best round "
      f"{res['best_round']})")
fvtest.check(abs(fed_acc - central_acc) <= TOL_CENTRAL,
             f"federated test accuracy {fed_acc:.4f} vs central {central_acc:.4f}: more than "
             f"{TOL_CENTRAL} apart")
fvtest.check(abs(last_val - fed_acc) <= TOL_VAL,
             f"last round's val_accuracy {last_val:.4f} vs final model's test accuracy "
             f"{fed_acc:.4f}: more than {TOL_VAL} apart")
print("PASS")
