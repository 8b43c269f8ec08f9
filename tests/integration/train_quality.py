"""Model quality on the shipped credit-risk data, through the real CLI.

usage: train_quality.py FEDVAULT CASE

On the split the issue's reference numbers come from (scikit-learn's stratified 75/25
train_test_split, random_state 0, made in this run by sklearn_split.py, which also prints
scikit-learn's logistic-regression AUC on it for comparison), each case:
  - shares one schema inferred from the whole file (`fedvault schema infer`),
  - trains with `fedvault train` on the training file (defaults: Adam, L2 0.01, early
    stopping with patience 3 on a 10 % validation split of the training rows),
  - scores the test file with `fedvault eval`: ROC AUC >= the case's floor, and the
    1,000-bin histogram ROC AUC within 0.002 of the exact one.
Then, on fedvault's own split (`train --test-fraction 0.25 --seed 0`), `fedvault split`
with the same seed + `fedvault eval` must reproduce exactly the test metrics train
reported (same rows, same model file).
"""
import json
import os
import subprocess
import sys

from fvtest import DATA, HERE, check, fail, run, run_json, tmpdir

NO_GRADE = "sub_grade,int_rate"
LC = ("lending_club.csv", "Class", "bad")
GC = ("german_credit.csv", "class", "bad")
MLP = "mlp:32,16"
CASES = {
    "lc-logreg": (LC, "", "logreg", 0.76),
    "lc-mlp": (LC, "", MLP, 0.76),
    "lc-nograde-logreg": (LC, NO_GRADE, "logreg", 0.69),
    "lc-nograde-mlp": (LC, NO_GRADE, MLP, 0.69),
    "german-logreg": (GC, "", "logreg", 0.78),
    "german-mlp": (GC, "", MLP, 0.78),
}


def main():
    case = sys.argv[2]
    (fname, target, positive), drop, model, floor = CASES[case]
    data = os.path.join(DATA, fname)
    d = tmpdir()
    tr, te, schema, mpath = (os.path.join(d, n) for n in
                             ("train.csv", "test.csv", "schema.json", "model.fvm"))
    p = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "sklearn_split.py"), data,
                        target, positive, "0", tr, te, drop], capture_output=True, text=True)
    if p.returncode != 0:
        fail(f"sklearn_split.py failed: {p.stderr}")
    ref = json.loads(p.stdout)
    dropargs = ["--drop", drop] if drop else []
    run(["schema", "infer", "--data", data, "--target", target, "--positive", positive,
         "--out", schema] + dropargs, expect=0)
    r = run_json(["train", "--data", tr, "--schema", schema, "--test-fraction", "0",
                  "--model", model, "--seed", "0", "--out", mpath, "--quiet"])
    e = run_json(["eval", "--model", mpath, "--data", te])
    for k in ("roc_auc", "pr_auc", "log_loss", "epochs", "train_seconds", "hist_roc_auc"):
        check(k in e, f"eval --json lacks '{k}': {e}")
    print(f"{case}: {model} test ROC AUC {e['roc_auc']:.4f} (hist {e['hist_roc_auc']:.4f}) "
          f"PR AUC {e['pr_auc']:.4f} log loss {e['log_loss']:.4f}, {r['epochs']} epochs "
          f"(best {r['best_epoch']}), {r['train_seconds']:.2f}s; scikit-learn logistic "
          f"regression on the same split: {ref['sklearn_logreg_roc_auc']:.4f}; floor {floor}")
    check(e["rows"] == ref["test_rows"], f"eval rows {e['rows']} != {ref['test_rows']}")
    check(e["roc_auc"] >= floor, f"{case}: test ROC AUC {e['roc_auc']:.4f} < {floor}")
    gap = abs(e["hist_roc_auc"] - e["roc_auc"])
    check(gap <= 0.002, f"{case}: histogram AUC {e['hist_roc_auc']:.5f} vs exact "
                        f"{e['roc_auc']:.5f}: gap {gap:.5f} > 0.002")

    # fedvault's own split: train's reported test metrics == split + eval
    common = ["--data", data, "--target", target, "--positive", positive]
    m2 = os.path.join(d, "own.fvm")
    r2 = run_json(["train"] + common + (["--drop", drop] if drop else []) +
                  ["--model", model, "--seed", "0", "--test-fraction", "0.25", "--out", m2,
                   "--quiet"])
    tr2, te2 = os.path.join(d, "own-train.csv"), os.path.join(d, "own-test.csv")
    run(["split"] + common + ["--test-fraction", "0.25", "--seed", "0", "--train-out", tr2,
                              "--test-out", te2], expect=0)
    e2 = run_json(["eval", "--model", m2, "--data", te2])
    check(e2["rows"] == r2["test_rows"], f"eval rows {e2['rows']} != train's {r2['test_rows']}")
    for k in ("roc_auc", "pr_auc", "log_loss", "hist_roc_auc"):
        check(abs(e2[k] - r2[k]) <= 1e-9, f"eval {k} {e2[k]} != train's {r2[k]}")
    check(e2["epochs"] == r2["epochs"], "eval does not report the model's epochs")
    check(abs(r2["hist_roc_auc"] - r2["roc_auc"]) <= 0.002, "histogram AUC gap on own split")
    print(f"{case}: own split ROC AUC {r2['roc_auc']:.4f}; split+eval reproduces it. OK")


if __name__ == "__main__":
    main()
