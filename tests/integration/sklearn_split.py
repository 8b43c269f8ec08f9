"""Writes scikit-learn's stratified 75/25 split of a CSV (train_test_split, random_state
SEED) and prints, as JSON, the test ROC AUC of scikit-learn's LogisticRegression (C=1,
one-hot categoricals, mean-imputed standardized numerics) on it: the reference the issue's
AUC floors were set against ("about 0.77 / 0.70 / 0.79"). Runs under /usr/bin/python3.

usage: sklearn_split.py DATA TARGET POSITIVE SEED TRAIN_OUT TEST_OUT [DROP,COLS]
"""
import csv
import json
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

MISSING = ("", "NA")


def num(v):
    try:
        float(v)
        return True
    except ValueError:
        return False


def main():
    src, target, pos, seed, tr_out, te_out = sys.argv[1:7]
    drop = sys.argv[7].split(",") if len(sys.argv) > 7 and sys.argv[7] else []
    with open(src, newline="") as f:
        rows = list(csv.reader(f))
    h, body = rows[0], rows[1:]
    ti = h.index(target)
    y = [r[ti] == pos for r in body]
    tr, te = train_test_split(body, test_size=0.25, stratify=y, random_state=int(seed))
    for path, rs in ((tr_out, tr), (te_out, te)):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(h)
            w.writerows(rs)

    cols = [i for i in range(len(h)) if i != ti and h[i] not in drop]
    numeric = [i for i in cols if all(num(r[i]) for r in body if r[i] not in MISSING)]
    stats = {}
    for i in numeric:
        v = np.array([float(r[i]) for r in tr if r[i] not in MISSING])
        stats[i] = (v.mean(), v.std() or 1.0)
    vocab = {i: sorted({r[i] for r in body if r[i] not in MISSING})
             for i in cols if i not in stats}

    def enc(rs):
        out = []
        for r in rs:
            x = []
            for i in cols:
                if i in stats:
                    x.append(0.0 if r[i] in MISSING else (float(r[i]) - stats[i][0]) / stats[i][1])
                else:
                    x.extend(1.0 if r[i] == c else 0.0 for c in vocab[i])
            out.append(x)
        return np.array(out), np.array([r[ti] == pos for r in rs])

    xtr, ytr = enc(tr)
    xte, yte = enc(te)
    lr = LogisticRegression(C=1.0, max_iter=5000).fit(xtr, ytr)
    print(json.dumps({"sklearn_logreg_roc_auc": roc_auc_score(yte, lr.predict_proba(xte)[:, 1]),
                      "train_rows": len(tr), "test_rows": len(te)}))


if __name__ == "__main__":
    main()
