"""scikit-learn side of bench_train.py; runs under Debian's /usr/bin/python3.

usage: sklearn_mlp.py TRAIN.csv TEST.csv TARGET POSITIVE HIDDEN EPOCHS BATCH LR ALPHA SEED
Preprocessing mirrors fedvault's: numeric columns mean-imputed and standardized with
training statistics, categoricals one-hot over the categories seen in training (missing ->
all zeros). Only MLPClassifier.fit is timed. Prints one JSON object.
"""
import csv
import json
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.neural_network import MLPClassifier

MISSING = ("", "NA")


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def is_num(v):
    try:
        float(v)
        return True
    except ValueError:
        return False


def main():
    (train_p, test_p, target, positive, hidden, epochs, batch, lr, alpha, seed) = sys.argv[1:]
    hidden = tuple(int(h) for h in hidden.split(","))
    header, tr = load(train_p)
    h2, te = load(test_p)
    assert header == h2
    ti = header.index(target)
    cols = [i for i in range(len(header)) if i != ti]
    numeric = [i for i in cols if all(is_num(r[i]) for r in tr + te if r[i] not in MISSING)]
    categorical = [i for i in cols if i not in numeric]
    stats = {}
    for i in numeric:
        v = np.array([float(r[i]) for r in tr if r[i] not in MISSING])
        sd = v.std()
        stats[i] = (v.mean() if len(v) else 0.0, sd if sd > 0 else 1.0)
    vocab = {i: sorted({r[i] for r in tr + te if r[i] not in MISSING}) for i in categorical}

    def encode(rows):
        out = []
        for r in rows:
            x = []
            for i in cols:
                if i in stats:
                    m, s = stats[i]
                    x.append(0.0 if r[i] in MISSING else (float(r[i]) - m) / s)
                else:
                    x.extend(1.0 if r[i] == c else 0.0 for c in vocab[i])
            out.append(x)
        return np.array(out), np.array([1 if r[ti] == positive else 0 for r in rows])

    xtr, ytr = encode(tr)
    xte, yte = encode(te)
    clf = MLPClassifier(hidden_layer_sizes=hidden, activation="relu", solver="adam",
                        alpha=float(alpha), batch_size=int(batch),
                        learning_rate_init=float(lr), max_iter=int(epochs), shuffle=True,
                        random_state=int(seed), tol=0.0, n_iter_no_change=10 ** 9,
                        early_stopping=False)
    warnings.simplefilter("ignore", ConvergenceWarning)
    t0 = time.perf_counter()
    clf.fit(xtr, ytr)
    fit_s = time.perf_counter() - t0
    p = clf.predict_proba(xte)[:, 1]
    print(json.dumps({"fit_seconds": fit_s, "epochs": clf.n_iter_,
                      "features": xtr.shape[1], "train_rows": xtr.shape[0],
                      "roc_auc": roc_auc_score(yte, p),
                      "pr_auc": average_precision_score(yte, p),
                      "dtype": str(xtr.dtype)}))


if __name__ == "__main__":
    main()
