"""Writes digits.csv: scikit-learn's copy of the UCI handwritten digits (see README.md).

usage: /usr/bin/python3 make_digits.py [OUT.csv]     (default: digits.csv next to this file)
Needs Debian's python3-sklearn, which ships the data (sklearn/datasets/data/digits.csv.gz):
no network. One row per image in sklearn's order: p0..p63, the 8x8 pixel counts (integers
0..16, row-major), then `digit`, the class label written "d0".."d9" so that every tool
(fedvault schema infer included) reads it as a label and not as a number. Same sklearn
data, same bytes: README.md lists the file's sha256.
"""
import csv
import os
import sys

from sklearn.datasets import load_digits

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(
    os.path.abspath(__file__)), "digits.csv")
d = load_digits()
with open(out, "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow([f"p{i}" for i in range(d.data.shape[1])] + ["digit"])
    for x, y in zip(d.data, d.target):
        px = [int(v) for v in x]
        if any(v != x_ or not 0 <= v <= 16 for v, x_ in zip(px, x)):
            sys.exit(f"{out}: a pixel that is not an integer in 0..16: {list(x)}")
        w.writerow(px + [f"d{int(y)}"])
print(f"{out}: {d.data.shape[0]} rows, {d.data.shape[1]} pixel columns, "
      f"{len(set(d.target))} classes")
