"""CSV reading speed: fedvault's reader against cat, wc -l and pandas.read_csv, same file,
same run.

usage: bench_csv.py FEDVAULT BENCH_CSV_READER [--rows 60000] [--seed 0] [--reps 3]
                    [--file PATH] [--keep] [--before FEDVAULT_OLD]

Makes a Fashion-MNIST-shaped CSV (a 'label' column 0..9 and 784 integer pixels, half of
them 0, the rest 1..255; 60,000 rows, about 131 MB; seeded, so every run reads the same
bytes) in a temporary directory (or --file, reused when it exists; --keep leaves it),
warms the page cache, then prints the median of --reps runs, in MB/s (10^6 bytes/s) of
wall time and of CPU time (user + system; on a shared machine the wall time measures the
neighbours too):
  cat FILE > /dev/null       the floor: reading the page cache
  wc -l FILE                 one pass looking for newlines
  pandas.read_csv(FILE)      Debian's python3-pandas, C engine, default dtypes (int64);
                             timed inside the process, import excluded
  fedvault tokenize          fv_csv_open + fv_csv_next over every record
  fedvault infer             fv_schema_infer (types and vocabularies of every column)
  fedvault load              fv_dataset_load: every cell decoded to a double
and the ratios of the load against cat and pandas, then `fedvault train --model logreg
--epochs 1` on the file: total wall time and the training loop's share of it (with
--before, the same for an older fedvault binary, e.g. main's build). Timing is
reported, never asserted. Not part of any test suite: `meson test --benchmark`.
"""
import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import fvbench

PANDAS = r"""
import resource, sys, time
import pandas as pd
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t0, c0 = time.monotonic(), cpu()
df = pd.read_csv(sys.argv[1])
print(time.monotonic() - t0, cpu() - c0, df.shape[0], df.shape[1])
"""


def make_csv(path, rows, seed, cols=784):
    rng = random.Random(seed)
    tbl = [str(i) for i in range(256)]
    with open(path + ".part", "w", newline="") as f:
        f.write("label," + ",".join(f"pixel{i + 1}" for i in range(cols)) + "\n")
        for _ in range(rows):
            px = [tbl[rng.randrange(1, 256)] if rng.random() < 0.5 else "0" for _ in range(cols)]
            f.write(tbl[rng.randrange(10)] + "," + ",".join(px) + "\n")
    os.replace(path + ".part", path)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wall(args, **kw):
    """Runs args; returns (wall seconds, CPU seconds of the child, CompletedProcess)."""
    c0 = children_cpu()
    t0 = time.monotonic()
    p = subprocess.run([str(a) for a in args], **kw)
    t = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
    return t, children_cpu() - c0, p


def train(fedvault, path, d):
    """(wall s, CPU s, training loop s) of one `fedvault train ... --epochs 1`."""
    t, c, p = wall([fedvault, "train", "--data", path, "--target", "label", "--model", "logreg",
                    "--epochs", "1", "--out", os.path.join(d, "m.fvm"), "--json"],
                   capture_output=True, text=True)
    return t, c, json.loads(p.stdout)["train_seconds"]


def train_med(fedvault, path, d, reps):
    runs = [train(fedvault, path, d) for _ in range(reps)]
    return tuple(statistics.median(r[i] for r in runs) for i in range(3))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fedvault")
    ap.add_argument("bench_csv_reader")
    ap.add_argument("--rows", type=int, default=60000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--file")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--before", help="an older fedvault binary to time train with too")
    a = ap.parse_args()
    print("machine: " + fvbench.machine(a.fedvault), flush=True)

    d = tempfile.mkdtemp(prefix="fv-bench-csv-")
    path = a.file or os.path.join(d, "fmnist.csv")  # with --file, d holds only m.fvm
    try:
        if not os.path.exists(path):
            make_csv(path, a.rows, a.seed)
        size = os.path.getsize(path)
        mb = size / 1e6
        null = subprocess.DEVNULL
        wall(["cat", path], stdout=null)  # into the page cache

        def med2(f):  # medians of (wall, cpu) pairs
            runs = [f() for _ in range(a.reps)]
            return (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))

        t_cat = med2(lambda: wall(["cat", path], stdout=null)[:2])
        t_wc = med2(lambda: wall(["wc", "-l", path], stdout=null)[:2])

        def pandas_once():
            out = wall(["/usr/bin/python3", "-c", PANDAS, path], capture_output=True,
                       text=True)[2].stdout.split()
            return float(out[0]), float(out[1])

        t_pd = med2(pandas_once)
        p = wall([a.bench_csv_reader, path, "label", a.reps], capture_output=True, text=True)[2]
        fv = json.loads(p.stdout)
        now = train_med(a.fedvault, path, d, a.reps)
        before = train_med(a.before, path, d, a.reps) if a.before else None

        print(f"cpu: {cpu_model()} ({os.cpu_count()} logical CPUs)")
        print(f"file: {path}: {size} bytes, {fv['rows']} rows x {fv['cols']} columns "
              f"(seed {a.seed}); median of {a.reps}")
        rows = [("cat > /dev/null", t_cat), ("wc -l", t_wc), ("pandas.read_csv", t_pd),
                ("fedvault tokenize", (fv["tokenize_s"], fv["tokenize_cpu_s"])),
                ("fedvault infer", (fv["infer_s"], fv["infer_cpu_s"])),
                ("fedvault load", (fv["load_s"], fv["load_cpu_s"]))]
        print(f"  {'':20s} {'wall':>8s}    {'MB/s':>8s}   {'CPU':>8s}    {'MB/s of CPU':>11s}")
        for name, (t, c) in rows:
            print(f"  {name:20s} {t:8.3f} s  {mb / t:8.1f}   {c:8.3f} s  {mb / max(c, 1e-3):8.1f}")
        t_load = fv["load_s"], fv["load_cpu_s"]
        for i, what in ((0, "wall"), (1, "CPU")):
            print(f"  fedvault load, {what} time: {t_cat[i] / t_load[i]:.3f} of cat's speed, "
                  f"{t_wc[i] / t_load[i]:.3f} of wc -l's, {t_pd[i] / t_load[i]:.2f}x "
                  f"pandas.read_csv's")
        for label, (tw, tc, tl) in (("now", now),) + ((("before", before),) if before else ()):
            print(f"  train --model logreg --epochs 1 ({label}): {tw:.2f} s wall, {tc:.2f} s "
                  f"CPU; the training loop {tl:.2f} s: {100 * tl / tw:.1f}% of the wall time, "
                  f"{100 * tl / tc:.1f}% of the CPU time")
        if before:
            print(f"  before = {a.before}; now {before[0] / now[0]:.1f}x faster in wall time, "
                  f"{before[1] / now[1]:.1f}x in CPU time")
        print(json.dumps({"bytes": size, "cat_s": t_cat, "wc_s": t_wc, "pandas_s": t_pd,
                          "fedvault": fv, "train": now, "train_before": before}))
    finally:
        if a.keep and not a.file:
            print(f"kept {path}")
        else:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
