"""Scoring throughput and latency: fedvault vs ONNX Runtime on the same student model.

usage: bench_predict.py FEDVAULT [--seconds S] [--batches 1,1024]

Splits examples/data/lending_club.csv (fedvault split, 75/25, seed 0), trains a teacher
of the main job's architecture (mlp:128,64) and distills from it the main job's student
(mlp:4) and a logreg student, exports all three to ONNX, and times scoring on the test
split at batch 1 and batch 1024:
  - fedvault: `fedvault bench predict` (fv_model_predict_ws with a workspace made before
    timing, which `fedvault predict` scores with: preprocessing + network, on cells
    decoded once; 1 OpenBLAS thread),
  - ONNX Runtime: tests/bench/predict_ort.js under node (onnxruntime-node pinned in
    tests/onnx/package-lock.json; `session.run` on input tensors built once; intra- and
    inter-op threads 1, the same thread budget as fedvault),
each in its own process, over many calls (S seconds of timed calls per side and batch),
in the same run. Prints the median and p90 latency per call, rows/s and the ratio
ORT time / fedvault time (> 1: fedvault faster). The teacher is timed the same way, for
context. Timing is reported, never asserted.

ONNX Runtime's node package is installed by tests/onnx/fvnode.py, as for
tests/integration/onnx_export.py: into $FV_NODE_DIR when set, else BUILD/onnx-node, with
`npm ci` when missing or stale.
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

sys.dont_write_bytecode = True  # no __pycache__ in the source tree (tests/onnx)
sys.path.insert(0, os.path.join(SRC, "tests", "onnx"))
import fvnode  # noqa: E402  (the harness setup, shared with tests/integration/onnx_export.py)


def sh(args, env=None):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
    return p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fedvault")
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="timed calls per side and batch size (seconds)")
    ap.add_argument("--batches", default="1,1024")
    a = ap.parse_args()
    print("machine: " + fvbench.machine(a.fedvault), flush=True)
    batches = [int(b) for b in a.batches.split(",")]

    nd = fvnode.node_dir(a.fedvault, lambda msg: sys.exit(f"bench: {msg}"))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               NODE_PATH=os.path.join(nd, "node_modules"))
    d = tempfile.mkdtemp(prefix="fv-bench-predict-")
    tr, te, schema = (os.path.join(d, n) for n in ("train.csv", "test.csv", "schema.json"))
    teacher = os.path.join(d, "teacher.fvm")
    students = {"mlp:4": os.path.join(d, "student-mlp4.fvm"),
                "logreg": os.path.join(d, "student-logreg.fvm")}
    sh([a.fedvault, "split", "--data", DATA, "--target", "Class", "--positive", "bad",
        "--test-fraction", "0.25", "--seed", 0, "--train-out", tr, "--test-out", te])
    sh([a.fedvault, "schema", "infer", "--data", DATA, "--target", "Class", "--positive",
        "bad", "--out", schema])
    sh([a.fedvault, "train", "--data", tr, "--schema", schema, "--test-fraction", "0",
        "--model", "mlp:128,64", "--seed", 0, "--threads", 1, "--quiet", "--out", teacher],
       env=env)
    for arch, path in students.items():
        sh([a.fedvault, "distill", "--teacher", teacher, "--data", tr, "--student", arch,
            "--seed", 0, "--threads", 1, "--quiet", "--json", "--out", path], env=env)

    rows = []
    models = [(f"student {k}", v) for k, v in students.items()]
    for name, fvm in models + [("teacher mlp:128,64", teacher)]:
        onnx = fvm[:-4] + ".onnx"
        sh([a.fedvault, "export", "--model", fvm, "--format", "onnx", "--out", onnx])
        for b in batches:
            fv = json.loads(sh([a.fedvault, "bench", "predict", "--model", fvm, "--data", te,
                                "--batch", b, "--seconds", a.seconds, "--threads", 1,
                                "--json"], env=env))
            ort = json.loads(sh(["node", os.path.join(HERE, "predict_ort.js"), onnx, schema,
                                 te, b, a.seconds], env=env))
            rows.append((name, b, fv, ort))
            print(f"  {name} batch {b}: fedvault {fv['median_s'] * 1e6:.2f} us, "
                  f"ORT {ort['median_s'] * 1e6:.2f} us (median per call)", flush=True)

    print(f"Scoring {rows[0][2]['data_rows']} test rows of lending_club "
          f"({rows[0][2]['features']} features), one thread each side, "
          f"{a.seconds:g} s of calls per cell, each side in its own process")
    print(f"{'model':<19} {'batch':>5} {'fv median':>11} {'fv p90':>11} {'ORT median':>11} "
          f"{'ORT p90':>11} {'fv rows/s':>12} {'ORT rows/s':>12} {'ORT/fv':>7}")
    out = []
    for name, b, fv, ort in rows:
        ratio = ort["median_s"] / fv["median_s"]
        print(f"{name:<19} {b:>5} {fv['median_s'] * 1e6:>9.2f}us {fv['p90_s'] * 1e6:>9.2f}us "
              f"{ort['median_s'] * 1e6:>9.2f}us {ort['p90_s'] * 1e6:>9.2f}us "
              f"{fv['rows_per_s']:>12.0f} {ort['rows_per_s']:>12.0f} {ratio:>6.2f}x")
        out.append({"model": name, "batch": b, "fedvault": fv, "onnxruntime": ort,
                    "ratio_ort_over_fedvault_median": ratio})
    print("  ratio = ORT median time per call / fedvault median time per call "
          "(> 1: fedvault faster)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
