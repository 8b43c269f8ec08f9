"""`fedvault distill` on the shipped Lending Club data, through the real CLI.

usage: distill_cli.py FEDVAULT

  - `fedvault split` (seed 0, 25 % test) of examples/data/lending_club.csv,
  - an MLP teacher (mlp:64,32) with `fedvault train` on the training file (defaults),
  - a logistic-regression student with `fedvault distill --json` (defaults: T 2,
    alpha 0.5), the test file given for the report,
  - checks: the report has every field; the student has >= 10x fewer parameters and a
    smaller file; its test ROC AUC is within 0.02 of the teacher's (both printed; on
    this split they are about 0.756 and 0.737); `fedvault eval` of the written student
    reproduces the report's test ROC AUC (same rows, same model file); and the usage
    errors name the option;
  - the same with --int8-out: the int8 student's file is smaller and `fedvault eval`
    reproduces its reported test ROC AUC, within 0.01 of the float student's.
Latencies are printed, never asserted (the machine may be busy).
"""
import os

from fvtest import DATA, check, run, run_json, tmpdir


def main():
    d = tmpdir()
    tr, te, teacher, student = (os.path.join(d, n) for n in
                                ("train.csv", "test.csv", "teacher.fvm", "student.fvm"))
    run(["split", "--data", os.path.join(DATA, "lending_club.csv"), "--target", "Class",
         "--positive", "bad", "--seed", "0", "--train-out", tr, "--test-out", te], expect=0)
    t = run_json(["train", "--data", tr, "--target", "Class", "--positive", "bad",
                  "--test-fraction", "0", "--model", "mlp:64,32", "--seed", "0",
                  "--out", teacher, "--quiet"])
    r = run_json(["distill", "--teacher", teacher, "--data", tr, "--student", "logreg",
                  "--test", te, "--out", student, "--quiet"])
    for k in ("teacher_file", "student_file", "temperature", "alpha", "train_rows",
              "val_rows", "epochs", "best_epoch", "train_seconds", "teacher", "student",
              "compression"):
        check(k in r, f"distill --json lacks '{k}': {r}")
    for side in ("teacher", "student"):
        s = r[side]
        for k in ("model", "parameters", "bytes", "latency", "test"):
            check(k in s, f"distill --json: {side} lacks '{k}': {s}")
        for k in ("batch_1_us", "batch_1024_us", "batch_1_calls", "batch_1024_calls"):
            check(k in s["latency"] and s["latency"][k] > 0,
                  f"distill --json: {side}.latency.{k} missing or not > 0: {s['latency']}")
        for k in ("roc_auc", "pr_auc", "log_loss"):
            check(s["test"].get(k) is not None, f"distill --json: {side}.test lacks {k}")
    for k in ("parameters", "bytes", "latency_batch_1", "latency_batch_1024"):
        check(k in r["compression"], f"distill --json: compression lacks '{k}'")
    check(r["temperature"] == 2.0 and r["alpha"] == 0.5,
          f"defaults: temperature {r['temperature']}, alpha {r['alpha']}")
    T, S = r["teacher"], r["student"]
    check(T["model"] == "mlp:64,32" and S["model"] == "logreg", f"models {T['model']} {S['model']}")
    check(T["parameters"] == t["parameters"], f"teacher parameters {T['parameters']} vs train's "
          f"{t['parameters']}")
    check(T["bytes"] == os.path.getsize(teacher), "teacher bytes = its file size")
    check(S["bytes"] == os.path.getsize(student), "student bytes = its file size")
    check(S["parameters"] * 10 <= T["parameters"],
          f"student {S['parameters']} parameters, teacher {T['parameters']}: not 10x fewer")
    check(S["bytes"] < T["bytes"], f"student file {S['bytes']} B >= teacher's {T['bytes']} B")
    ta, sa = T["test"]["roc_auc"], S["test"]["roc_auc"]
    print(f"teacher {T['model']}: {T['parameters']} params, {T['bytes']} B, ROC AUC {ta:.4f}, "
          f"PR AUC {T['test']['pr_auc']:.4f}, latency {T['latency']['batch_1_us']:.2f} us "
          f"(batch 1) {T['latency']['batch_1024_us']:.1f} us (batch 1024)")
    print(f"student {S['model']}: {S['parameters']} params, {S['bytes']} B, ROC AUC {sa:.4f}, "
          f"PR AUC {S['test']['pr_auc']:.4f}, latency {S['latency']['batch_1_us']:.2f} us "
          f"(batch 1) {S['latency']['batch_1024_us']:.1f} us (batch 1024); "
          f"{r['epochs']} epochs")
    check(sa >= ta - 0.02, f"student test ROC AUC {sa:.4f} is more than 0.02 below the "
          f"teacher's {ta:.4f}")

    e = run_json(["eval", "--model", student, "--data", te])
    check(abs(e["roc_auc"] - sa) < 1e-9, f"eval of the student: ROC AUC {e['roc_auc']} vs the "
          f"report's {sa}")
    check(e["model"] == "logreg", f"eval: model {e['model']}")

    # --int8-out: the int8 student's file, smaller, scored like any model; the report's
    # int8 test metrics are its file's (eval reproduces them)
    q8 = os.path.join(d, "student-int8.fvm")
    r8 = run_json(["distill", "--teacher", teacher, "--data", tr, "--student", "logreg",
                   "--test", te, "--int8-out", q8, "--quiet"])
    Q = r8.get("student_int8", {})
    check(Q.get("bytes") == os.path.getsize(q8) and Q["bytes"] < r8["student"]["bytes"],
          f"int8 student: {Q.get('bytes')} B, file {os.path.getsize(q8)} B, float "
          f"{r8['student']['bytes']} B")
    e8 = run_json(["eval", "--model", q8, "--data", te])
    check(abs(e8["roc_auc"] - Q["test"]["roc_auc"]) < 1e-9,
          f"eval of the int8 student: ROC AUC {e8['roc_auc']} vs the report's "
          f"{Q['test']['roc_auc']}")
    check(abs(Q["test"]["roc_auc"] - r8["student"]["test"]["roc_auc"]) < 0.01,
          f"int8 ROC AUC {Q['test']['roc_auc']} vs float {r8['student']['test']['roc_auc']}")
    print(f"int8 student: {Q['bytes']} B (float {r8['student']['bytes']} B), test ROC AUC "
          f"{Q['test']['roc_auc']:.4f} (float {r8['student']['test']['roc_auc']:.4f})")
    _, _, err = run(["distill", "--teacher", teacher, "--data", tr, "--out", q8,
                     "--int8-out", q8], expect=2)
    check("--int8-out" in err, f"--int8-out = --out: {err}")

    # usage errors name the option
    _, _, err = run(["distill", "--teacher", teacher, "--data", tr, "--alpha", "1.5"], expect=2)
    check("--alpha" in err, f"--alpha 1.5: {err}")
    _, _, err = run(["distill", "--teacher", teacher, "--data", tr, "--student", "mlp:"],
                    expect=2)
    check("--student" in err, f"--student mlp:: {err}")
    _, _, err = run(["distill", "--data", tr], expect=2)
    check("--teacher" in err, f"no --teacher: {err}")
    print("ok")


if __name__ == "__main__":
    main()
