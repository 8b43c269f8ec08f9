"""Multi-class training through the real CLI: german_credit.csv with the 10-label
`purpose` column as target (no --positive: softmax over every label).

The check is against the only model that needs no features, the class prior: the test
log loss must be below the entropy of the training label frequencies evaluated on the
test labels, and accuracy at least the majority-class rate. Both models see the same
stratified split (`fedvault split`, seed 0).
"""
import collections
import csv
import math
import os

from fvtest import DATA, check, run, run_json, tmpdir


def main():
    data = os.path.join(DATA, "german_credit.csv")
    d = tmpdir()
    tr, te, schema, m = (os.path.join(d, n) for n in
                         ("train.csv", "test.csv", "schema.json", "mc.fvm"))
    run(["split", "--data", data, "--target", "purpose", "--test-fraction", "0.25",
         "--seed", "0", "--train-out", tr, "--test-out", te], expect=0)
    run(["schema", "infer", "--data", data, "--target", "purpose", "--out", schema], expect=0)
    r = run_json(["train", "--data", tr, "--schema", schema, "--test-fraction", "0",
                  "--model", "mlp:16", "--seed", "0", "--out", m, "--quiet"])
    e = run_json(["eval", "--model", m, "--data", te])
    check(e["roc_auc"] is None, "a multi-class model reports no binary ROC AUC")

    def labels(path):
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        i = rows[0].index("purpose")
        return [row[i] for row in rows[1:]]

    ytr, yte = labels(tr), labels(te)
    freq = collections.Counter(ytr)
    prior = {k: v / len(ytr) for k, v in freq.items()}
    base_loss = -sum(math.log(max(prior.get(y, 0.0), 1e-7)) for y in yte) / len(yte)
    majority = max(prior, key=prior.get)
    base_acc = sum(y == majority for y in yte) / len(yte)
    print(f"multi-class purpose: {len(freq)} labels, {r['epochs']} epochs; test accuracy "
          f"{e['accuracy']:.4f} (majority class {base_acc:.4f}), log loss "
          f"{e['log_loss']:.4f} (class prior {base_loss:.4f})")
    check(e["rows"] == len(yte), "eval scored every test row")
    check(e["log_loss"] < base_loss, f"log loss {e['log_loss']:.4f} >= prior {base_loss:.4f}")
    check(e["accuracy"] >= base_acc, f"accuracy {e['accuracy']:.4f} < majority {base_acc:.4f}")
    print("train_multiclass: OK")


if __name__ == "__main__":
    main()
