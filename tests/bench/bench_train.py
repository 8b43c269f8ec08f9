"""Training speed: fedvault vs scikit-learn's MLPClassifier, same data, same run.

usage: bench_train.py FEDVAULT BENCH_SGEMM [--threads T] [--epochs E] [--batch B]
                      [--hidden 512,256] [--lr 0.001] [--weight-decay 0.01] [--seeds 3]
                      [--skip-sklearn]

Both train the same MLP (ReLU hidden layers, one logistic output, Adam, same epochs,
batch size, learning rate and L2 objective, no early stopping) on the same stratified
75/25 split of examples/data/lending_club.csv (made by `fedvault split`), with the same
number of threads T: fedvault's `--threads T` is T data-parallel training threads over
single-threaded OpenBLAS (fv_train_cfg_t.threads), scikit-learn's is T OpenBLAS threads
(OPENBLAS_NUM_THREADS; fedvault train gets 1, it runs OpenBLAS at one thread anyway).
The L2 objective matches: fedvault's weight decay wd on the mean batch loss is scikit-learn's alpha = wd * batch_size (sklearn divides its penalty by
the batch size). Prints wall-time ratio, both ROC AUCs, and fedvault's achieved training
GFLOP/s as a fraction of OpenBLAS sgemm peak (square 1024, same threads) measured in the
same run. Both are run with --seeds initialization/shuffling seeds (the split stays the
same): one seed's AUC differs by a few thousandths between any two runs, so the means and
ranges are compared. --skip-sklearn times fedvault alone (tests/bench/run_all compares
fedvault with 2 threads to fedvault with 1 this way). Timing is reported, never asserted.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import fvbench

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("FV_SOURCE_ROOT", os.path.join(HERE, "..", ".."))
DATA = os.path.join(SRC, "examples", "data", "lending_club.csv")


def sh(args, env=None):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
    return p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fedvault")
    ap.add_argument("bench_sgemm")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--hidden", default="512,256")
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--seeds", type=int, default=3,
                    help="repeat both with seeds 0..N-1 (init and shuffling); the split is seed 0")
    ap.add_argument("--skip-sklearn", action="store_true", help="time fedvault only")
    a = ap.parse_args()
    print("machine: " + fvbench.machine(a.fedvault, a.threads), flush=True)

    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    # fedvault train runs OpenBLAS single-threaded under its own training threads; with
    # OPENBLAS_NUM_THREADS=T OpenBLAS would still start T - 1 idle pool threads at load,
    # which spin for a while and take CPU from the training threads.
    fv_env = dict(env, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    d = tempfile.mkdtemp(prefix="fv-bench-")
    tr, te, schema = (os.path.join(d, n) for n in ("train.csv", "test.csv", "schema.json"))
    sh([a.fedvault, "split", "--data", DATA, "--target", "Class", "--positive", "bad",
        "--test-fraction", "0.25", "--seed", 0, "--train-out", tr, "--test-out", te])
    sh([a.fedvault, "schema", "infer", "--data", DATA, "--target", "Class", "--positive",
        "bad", "--out", schema])

    peak = json.loads(sh([a.bench_sgemm, a.threads, 1024, 10], env=env))

    fv_runs, sk_runs = [], []
    for seed in range(a.seeds):
        model = os.path.join(d, f"mlp{seed}.fvm")
        fv = json.loads(sh([a.fedvault, "train", "--data", tr, "--schema", schema,
                            "--test-fraction", "0", "--patience", "0",
                            "--model", "mlp:" + a.hidden, "--epochs", a.epochs,
                            "--batch-size", a.batch, "--optimizer", "adam", "--lr", a.lr,
                            "--weight-decay", a.weight_decay, "--seed", seed,
                            "--threads", a.threads, "--quiet", "--json", "--out", model],
                           env=fv_env))
        ev = json.loads(sh([a.fedvault, "eval", "--model", model, "--data", te, "--json",
                            "--threads", a.threads], env=env))
        fv.update(roc_auc=ev["roc_auc"], pr_auc=ev["pr_auc"])
        fv_runs.append(fv)
        if a.skip_sklearn:
            print(f"  seed {seed}: fedvault {fv['train_seconds']:.3f} s AUC {fv['roc_auc']:.4f}",
                  flush=True)
            continue
        sk_runs.append(json.loads(sh(["/usr/bin/python3", os.path.join(HERE, "sklearn_mlp.py"),
                                      tr, te, "Class", "bad", a.hidden, a.epochs, a.batch,
                                      a.lr, a.weight_decay * a.batch, seed], env=env)))
        print(f"  seed {seed}: fedvault {fv['train_seconds']:.3f} s AUC {fv['roc_auc']:.4f} | "
              f"scikit-learn {sk_runs[-1]['fit_seconds']:.3f} s AUC {sk_runs[-1]['roc_auc']:.4f}",
              flush=True)

    def mean(xs):
        return sum(xs) / len(xs)

    fv_s = sum(r["train_seconds"] for r in fv_runs)
    if a.skip_sklearn:  # no reference: fedvault's own figures only
        sk_runs = [{"fit_seconds": float("nan"), "roc_auc": float("nan"), "features": "-",
                    "dtype": "-"}]
    sk_s = sum(r["fit_seconds"] for r in sk_runs)
    fv_auc = [r["roc_auc"] for r in fv_runs]
    sk_auc = [r["roc_auc"] for r in sk_runs]
    gflops = sum(r["train_flop"] for r in fv_runs) / fv_s * 1e-9
    f0 = fv_runs[0]
    print(f"MLP {f0['features']}-{a.hidden.replace(',', '-')}-1 on {f0['train_rows']} rows, "
          f"{a.epochs} epochs, batch {a.batch}, Adam lr {a.lr}, L2 {a.weight_decay}, "
          f"{a.threads} thread(s) (fedvault: training threads; scikit-learn: OpenBLAS), "
          f"core {peak['core']}, {a.seeds} seed(s)")
    print(f"  fedvault      {fv_s:8.3f} s   test ROC AUC mean {mean(fv_auc):.4f} "
          f"[{min(fv_auc):.4f}, {max(fv_auc):.4f}]")
    print(f"  scikit-learn  {sk_s:8.3f} s   test ROC AUC mean {mean(sk_auc):.4f} "
          f"[{min(sk_auc):.4f}, {max(sk_auc):.4f}]  ({sk_runs[0]['features']} features, "
          f"{sk_runs[0]['dtype']})")
    print(f"  speed-up (sklearn time / fedvault time): {sk_s / fv_s:.2f}x")
    print(f"  mean AUC difference (fedvault - sklearn): {mean(fv_auc) - mean(sk_auc):+.4f}")
    print(f"  fedvault training: {gflops:.2f} GFLOP/s = {gflops / peak['gflops']:.3f} of "
          f"sgemm peak ({peak['gflops']:.2f} GFLOP/s, 1024^3, same threads)")
    print(json.dumps({"speedup": sk_s / fv_s, "fedvault_seconds": fv_s, "sklearn_seconds": sk_s,
                      "fedvault_roc_auc_mean": mean(fv_auc), "sklearn_roc_auc_mean": mean(sk_auc),
                      "fedvault_roc_auc": fv_auc, "sklearn_roc_auc": sk_auc,
                      "train_gflops": gflops, "sgemm_gflops": peak["gflops"],
                      "fraction_of_peak": gflops / peak["gflops"], "threads": a.threads,
                      "epochs": a.epochs, "batch": a.batch, "seeds": a.seeds}))

if __name__ == "__main__":
    main()
