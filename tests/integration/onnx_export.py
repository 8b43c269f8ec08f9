"""ONNX export through the real CLI, scored in ONNX Runtime, against fedvault's scores.

usage: onnx_export.py FEDVAULT FV_ONNX_REFSCORE

For three models -- logreg on lending_club with the "other" unknown-category policy,
mlp:16 on lending_club with the default "error" policy, and a multi-class mlp:16 on
german_credit (target purpose) -- the test:
  - trains with `fedvault train` on a stratified 75 % split (`fedvault split`, seed 0),
  - exports with `fedvault export --format onnx`,
  - scores the test split in ONNX Runtime (tests/onnx/score.js under node, with
    onnxruntime-node from tests/onnx/package-lock.json; installed with `npm ci` into
    BUILD/onnx-node when missing, so the source tree stays clean),
  - scores it with fedvault (fv-onnx-refscore: fv_model_load + fv_model_predict, and
    `fedvault predict --format csv` too when this build has it: its "score" column, for
    a multi-class model the probability of the predicted class),
  - asserts max |diff| <= 1e-5 on every row and every class.
The lending_club test split is edited first so that it holds missing numeric values
("" and "NA"), missing categorical values and, for the "other" model, categories the
schema never saw. Also: exit codes and messages of `fedvault export`, and the ONNX
checker of Debian's python3-onnx when installed (optional: skipped with a note).
"""
import csv
import os
import shutil
import subprocess
import sys

from fvtest import DATA, SRC, check, fail, run, tmpdir

sys.path.insert(0, os.path.join(SRC, "tests", "onnx"))
import fvnode  # noqa: E402  (the harness setup, shared with tests/bench/bench_predict.py)

TOL = 1e-5


def read_scores(path):
    with open(path) as f:
        return [[float(x) for x in line.split(",")] for line in f if line.strip()]


def read_predict_csv(path):
    """fedvault predict --format csv: the "score" column of each row (binary: P(positive);
    multi-class: the probability of the predicted class)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    check(rows and rows[0][0] == "row" and "score" in rows[0], f"{path}: header {rows[:1]}")
    i = rows[0].index("score")
    return [[float(r[i])] for r in rows[1:]]


def compare(name, a, b, what):
    check(len(a) == len(b), f"{name}: {what}: {len(a)} rows vs {len(b)}")
    worst, at = 0.0, -1
    for i, (x, y) in enumerate(zip(a, b)):
        check(len(x) == len(y), f"{name}: row {i}: {len(x)} values vs {len(y)}")
        for u, v in zip(x, y):
            dv = abs(u - v)
            if not dv <= worst:  # NaN counts as the worst
                worst, at = dv, i
    check(worst <= TOL, f"{name}: {what}: max |diff| {worst:.3g} at row {at} > {TOL}: "
                        f"{a[at]} vs {b[at]}")
    return worst


def edit_rows(src, dst, schema_unknown_other):
    """Copies src to dst with missing values and (policy other) unseen categories."""
    with open(src, newline="") as f:
        rows = list(csv.reader(f))
    h = rows[0]
    num = [h.index(c) for c in ("annual_inc", "revol_util", "int_rate", "all_util")]
    cat = [h.index(c) for c in ("addr_state", "emp_length", "verification_status")]
    edits = 0
    for i, r in enumerate(rows[1:], start=1):
        if i % 7 == 0:
            r[num[i % len(num)]] = "" if i % 2 else "NA"
            edits += 1
        if i % 11 == 0:
            r[cat[i % len(cat)]] = "NA" if i % 2 else ""
            edits += 1
        if schema_unknown_other and i % 13 == 0:
            r[cat[i % len(cat)]] = "ZZ, unseen \"value\""  # also exercises CSV quoting
            edits += 1
        if i == 1:  # one row with everything numeric missing
            for j in num:
                r[j] = ""
    with open(dst, "w", newline="") as f:
        csv.writer(f, lineterminator="\r\n").writerows(rows)
    return edits


def predict_available():
    p = subprocess.run([sys.argv[1], "predict", "--help"], capture_output=True, text=True)
    return p.returncode == 0


def main():
    refscore = sys.argv[2]
    d = tmpdir()
    nd = fvnode.node_dir(sys.argv[1], fail)
    lc = os.path.join(DATA, "lending_club.csv")
    gc = os.path.join(DATA, "german_credit.csv")
    tr, te = os.path.join(d, "lc-train.csv"), os.path.join(d, "lc-test.csv")
    run(["split", "--data", lc, "--target", "Class", "--positive", "bad", "--test-fraction",
         "0.25", "--seed", "0", "--train-out", tr, "--test-out", te], expect=0)
    gtr, gte = os.path.join(d, "gc-train.csv"), os.path.join(d, "gc-test.csv")
    run(["split", "--data", gc, "--target", "purpose", "--test-fraction", "0.25",
         "--seed", "0", "--train-out", gtr, "--test-out", gte], expect=0)

    cases = [
        # name, data, target args, unknown policy, arch, train file, test file
        ("lc-logreg-other", lc, ["--target", "Class", "--positive", "bad"], "other",
         "logreg", tr, te),
        ("lc-mlp16-error", lc, ["--target", "Class", "--positive", "bad"], "error",
         "mlp:16", tr, te),
        ("gc-multiclass-mlp16", gc, ["--target", "purpose"], "error", "mlp:16", gtr, gte),
    ]
    with_predict = predict_available()
    for name, data, targs, unknown, arch, trf, tef in cases:
        schema = os.path.join(d, name + ".schema.json")
        model = os.path.join(d, name + ".fvm")
        onnx = os.path.join(d, name + ".onnx")
        run(["schema", "infer", "--data", data] + targs + ["--unknown", unknown,
                                                           "--out", schema], expect=0)
        run(["train", "--data", trf, "--schema", schema, "--test-fraction", "0",
             "--model", arch, "--seed", "0", "--out", model, "--quiet"], expect=0)
        run(["export", "--model", model, "--format", "onnx", "--out", onnx], expect=0)
        test_csv = tef
        edits = 0
        if data == lc:
            test_csv = os.path.join(d, name + ".test.csv")
            edits = edit_rows(tef, test_csv, unknown == "other")

        ref_txt = os.path.join(d, name + ".ref.txt")
        p = subprocess.run([refscore, model, test_csv, ref_txt], capture_output=True,
                           text=True, timeout=600)
        check(p.returncode == 0, f"{name}: fv-onnx-refscore: {p.stderr}")
        ort_txt = os.path.join(d, name + ".ort.txt")
        p = subprocess.run(["node", os.path.join(nd, "score.js"), onnx, schema, test_csv,
                            ort_txt], capture_output=True, text=True, timeout=600,
                           cwd=nd)
        check(p.returncode == 0, f"{name}: score.js: exit {p.returncode}\n{p.stderr}")
        ref, ort = read_scores(ref_txt), read_scores(ort_txt)
        worst = compare(name, ort, ref, "ONNX Runtime vs fedvault")
        msg = (f"{name}: {len(ref)} rows ({edits} edited cells), {len(ref[0])} value(s) per "
               f"row, ONNX {os.path.getsize(onnx)} bytes: max |ORT - fedvault| {worst:.3g}")
        if with_predict:
            pred = os.path.join(d, name + ".pred.csv")
            run(["predict", "--model", model, "--data", test_csv, "--out", pred,
                 "--format", "csv"], expect=0)
            # multi-class: predict reports the predicted class's probability, the max
            pw = compare(name, [[max(r)] for r in ort], read_predict_csv(pred),
                         "ONNX Runtime vs fedvault predict")
            msg += f", max |ORT - fedvault predict| {pw:.3g}"
        print(msg)

    # CLI contract of `fedvault export`
    model = os.path.join(d, "lc-logreg-other.fvm")
    code, out, _ = run(["export", "--help"], expect=0)
    check("--format onnx" in out, f"export --help: {out}")
    for args, what in ((["--model", model, "--format", "onnx"], "--out missing"),
                       (["--model", model, "--format", "pmml", "--out", "x"], "bad format"),
                       (["--model", model, "--format", "onnx", "--out", "x", "extra"],
                        "extra argument"),
                       (["--bogus"], "unknown option")):
        code, _, err = run(["export"] + args)
        check(code == 2, f"export {what}: exit {code}, expected 2: {err}")
    bad = os.path.join(d, "garbage.fvm")
    with open(bad, "wb") as f:
        f.write(b"not a model")
    out_path = os.path.join(d, "never.onnx")
    code, _, err = run(["export", "--model", bad, "--format", "onnx", "--out", out_path])
    check(code == 1 and "garbage.fvm" in err, f"export of a corrupt model: exit {code}: {err}")
    check(not os.path.exists(out_path), "a failed export left an output file")
    code, _, err = run(["export", "--model", model, "--format", "onnx", "--out",
                        os.path.join(d, "no-such-dir", "m.onnx")])
    check(code == 1 and "no-such-dir" in err, f"export to a missing dir: exit {code}: {err}")

    # Optional: the reference checker (Debian's python3-onnx), if installed.
    p = subprocess.run(["/usr/bin/python3", "-c", "import onnx"], capture_output=True)
    if p.returncode == 0:
        for name, *_ in cases:
            path = os.path.join(d, name + ".onnx")
            p = subprocess.run(["/usr/bin/python3", "-c",
                                "import onnx, sys; m = onnx.load(sys.argv[1]); "
                                "onnx.checker.check_model(m, full_check=True)", path],
                               capture_output=True, text=True)
            check(p.returncode == 0, f"onnx.checker on {name}: {p.stderr}")
        print("onnx.checker: all models pass")
    else:
        print("note: python3-onnx not installed; the ONNX checker step was skipped")
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
