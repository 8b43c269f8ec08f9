"""Every option of the fedvault CLI that writes a file, written to "-", /dev/stdout and
through symlinks (README "Using the CLI"; cli/cli-int.h, kernels/fv_file.h).

argv: fedvault fedvault-coordinator
The commands and options: schema infer --out; train --out, --schema-out; distill --out,
--int8-out; export --out; predict --out; split --train-out, --test-out; audit export
--out; model export --out (against a coordinator whose state holds one model version,
seeded into its database: no federation needs to run). For each, the file a plain
`--out FILE` run writes is the reference, and:
  - `--out -` and `--out /dev/stdout` put exactly that file on stdout and nothing else
    (bytes compared; a model file, whose metadata records the training time, is
    compared by what it scores: `fedvault predict` prints the same scores, and it loads,
    which its trailing SHA-256 allows only for the exact bytes); the summary, if the
    command prints one, is on stderr and names "standard output";
  - `--out LINK`, LINK a relative symlink to an existing file: LINK is still the same
    symlink and the file it points to holds the reference (no temporary file left);
  - `--out LINK`, LINK a dangling symlink into an existing directory: the same, and
    the file it names is created.
(For the second option of a command, "-" and a symlink to an existing file.) Then: a
FIFO is written in place; `--out /dev/stdout` with stdout redirected to a file; --json
with `--out -` goes to stderr; two outputs on stdout, a directory, and a model to a
terminal are refused. Run as root, /dev/stdout is still a symlink at the end.
"""
import csv
import hashlib
import io
import json
import os
import pty
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import fvtest
from fvtest import HERE, WRAPPER, check

FV, COORD = sys.argv[1], sys.argv[2]
OK = os.path.join(HERE, "data", "ok.csv")
T = fvtest.tmpdir()
DEV_STDOUT_LINK = os.path.islink("/dev/stdout")


def run(args, expect=0, stdout=subprocess.PIPE):
    """fedvault with args; stdout as bytes, stderr as text. Checks the exit code."""
    p = subprocess.run(WRAPPER + [FV] + [str(a) for a in args], stdout=stdout,
                       stderr=subprocess.PIPE, timeout=600)
    err = p.stderr.decode(errors="replace")
    check("AddressSanitizer" not in err and "runtime error" not in err, f"sanitizer: {err}")
    check(p.returncode == expect, f"fedvault {' '.join(map(str, args))}: exit {p.returncode}, "
          f"expected {expect}\n--- stderr\n{err}")
    return p.stdout, err


def read(path):
    with open(path, "rb") as f:
        return f.read()


def scores(model_bytes):
    """What a model file scores on ok.csv (predict's CSV), the model loaded from a copy."""
    path = os.path.join(T, "scored.fvm")
    with open(path, "wb") as f:
        f.write(model_bytes)
    out, _ = run(["predict", "--model", path, "--data", OK])
    os.unlink(path)
    return out


def exact(got, ref):
    return got == ref


def same_model(got, ref):
    return got.startswith(b"FVMODEL\0") and scores(got) == scores_of(ref)


_scored = {}


def scores_of(ref):
    if ref not in _scored:
        _scored[ref] = scores(ref)
    return _scored[ref]


def cases(name, opt, make_args, ext, same, summary=None, full=True):
    """Runs the command (make_args(path) -> its arguments, with opt given path) with opt
    pointing at a file, "-", /dev/stdout, a symlink to an existing file and a dangling
    symlink (the last two kinds and /dev/stdout only when full). Returns the reference
    bytes. summary: the text before the path in the command's summary line ("" when the
    line starts with the path)."""
    d = os.path.join(T, f"{name}{opt}".replace("-", "_"))
    os.makedirs(os.path.join(d, "sub"))
    ref_path = os.path.join(d, "ref" + ext)
    run(make_args(ref_path))
    ref = read(ref_path)
    check(len(ref) > 0, f"{name} {opt}: empty reference file")

    for target in (["-", "/dev/stdout"] if full else ["-"]):
        out, err = run(make_args(target))
        check(same(out, ref), f"{name} {opt} {target}: stdout is not the file "
              f"({len(out)} bytes, the file has {len(ref)})")
        if summary is not None:
            check(f"{summary} standard output".strip() in err or
                  f"{summary} {target}".strip() in err,
                  f"{name} {opt} {target}: no summary on stderr: {err!r}")

    link = os.path.join(d, "link" + ext)
    with open(os.path.join(d, "target" + ext), "wb") as f:
        f.write(b"old contents\n")
    os.symlink("target" + ext, link)
    out, _ = run(make_args(link))
    check(os.path.islink(link) and os.readlink(link) == "target" + ext,
          f"{name} {opt}: the symlink was replaced")
    check(same(read(os.path.join(d, "target" + ext)), ref),
          f"{name} {opt}: the symlink's target does not hold the output")
    if summary is not None:  # on stdout when the data is not there
        check(f"{summary} {link}".strip().encode() in out, f"{name} {opt}: summary {out!r}")

    if full:
        dangling = os.path.join(d, "dangling" + ext)
        os.symlink(os.path.join("sub", "new" + ext), dangling)
        run(make_args(dangling))
        check(os.path.islink(dangling), f"{name} {opt}: the dangling symlink was replaced")
        check(same(read(os.path.join(d, "sub", "new" + ext)), ref),
              f"{name} {opt}: the file the dangling symlink names does not hold the output")
    left = sorted(os.listdir(d)) + sorted(os.listdir(os.path.join(d, "sub")))
    want = sorted(["ref" + ext, "link" + ext, "target" + ext, "sub"] +
                  (["dangling" + ext] if full else [])) + (["new" + ext] if full else [])
    check(left == want, f"{name} {opt}: files left {left}, expected {want}")
    print(f"{name} {opt}: file, {'-, /dev/stdout' if full else '-'}, symlink"
          f"{', dangling symlink' if full else ''}: ok")
    return ref


def scratch(name):
    return os.path.join(T, "scratch-" + name)


def main():
    check(not DEV_STDOUT_LINK or os.readlink("/dev/stdout"),
          "/dev/stdout is a symlink without a target")

    schema_args = ["schema", "infer", "--data", OK, "--target", "y", "--positive", "1"]
    schema = cases("schema", "--out", lambda p: schema_args + ["--out", p], ".json", exact,
                   summary="Schema written to")
    json.loads(schema)

    train_args = ["train", "--data", OK, "--target", "y", "--positive", "1", "--quiet",
                  "--epochs", "3", "--test-fraction", "0", "--patience", "0", "--seed", "5"]
    model = cases("train", "--out", lambda p: train_args + ["--out", p], ".fvm", same_model,
                  summary="Model written to")
    cases("train", "--schema-out",
          lambda p: train_args + ["--schema-out", p, "--out", scratch("train.fvm")],
          ".json", exact, full=False)
    # --json with the model on stdout: the JSON object is on stderr
    out, err = run(train_args + ["--out", "-", "--json"])
    check(same_model(out, model), "train --out - --json: stdout is not the model")
    check(json.loads(err)["model_file"] == "-", f"train --json on stderr: {err!r}")

    teacher = os.path.join(T, "teacher.fvm")
    with open(teacher, "wb") as f:
        f.write(model)
    distill_args = ["distill", "--teacher", teacher, "--data", OK, "--quiet", "--epochs", "2",
                    "--patience", "0", "--seed", "2"]
    cases("distill", "--out", lambda p: distill_args + ["--out", p], ".fvm", same_model,
          summary="Student written to")
    cases("distill", "--int8-out",
          lambda p: distill_args + ["--int8-out", p, "--out", scratch("student.fvm")], ".fvm",
          same_model, summary="Int8 student written to", full=False)

    cases("export", "--out",
          lambda p: ["export", "--model", teacher, "--format", "onnx", "--out", p], ".onnx",
          exact)

    predicted = cases("predict", "--out",
                      lambda p: ["predict", "--model", teacher, "--data", OK, "--out", p],
                      ".csv", exact)
    check(predicted == scores_of(model), "predict --out FILE: not what predict prints")

    split_args = ["split", "--data", OK, "--target", "y", "--positive", "1",
                  "--test-fraction", "0.25", "--seed", "3"]
    train_rows = cases("split", "--train-out",
                       lambda p: split_args + ["--train-out", p, "--test-out",
                                               scratch("test.csv")], ".csv", exact)
    test_rows = cases("split", "--test-out",
                      lambda p: split_args + ["--train-out", scratch("train.csv"),
                                              "--test-out", p], ".csv", exact, full=False)
    n = [len(list(csv.reader(io.StringIO(b.decode())))) - 1 for b in (train_rows, test_rows)]
    check(sum(n) == 8, f"split: {n} rows")

    # a federation's kits: the admin's key signs an audit log; the coordinator's kit and
    # the admin's serve `model export`
    fvtest.run(["provision", "--federation", "cli-out", "--coordinator", "127.0.0.1:0",
                "--admins", "ops-1", "--out", os.path.join(T, "fed")], expect=0)
    log = os.path.join(T, "audit.log")
    for ev in ("note", "check"):
        run(["audit", "append", "--log", log, "--key", os.path.join(T, "fed/ops-1/key.pem"),
             "--actor", "ops-1", "--event", ev, "--details", '{"job":"j1"}'])
    for fmt in ("csv", "jsonl"):
        cases("audit-export-" + fmt, "--out",
              lambda p: ["audit", "export", "--log", log, "--format", fmt, "--out", p],
              "." + fmt, exact, full=fmt == "csv")

    model_export(model)
    edge_cases(schema_args, schema, train_args, split_args)

    if DEV_STDOUT_LINK:
        check(os.path.islink("/dev/stdout"), "/dev/stdout is no longer a symlink")
    print(f"/dev/stdout {'is still a symlink' if DEV_STDOUT_LINK else 'was not a symlink'}"
          f" (uid {os.getuid()})")


def model_export(model):
    """A coordinator whose state holds `model` as version 1 (seeded into state.db between
    two runs: the first creates the database), and `model export 1 --out ...`."""
    fed = os.path.join(T, "fed")
    state = os.path.join(T, "state")
    admin_port = fvtest.free_port()
    admin = ["--config", f"{fed}/ops-1/admin.json", "--admin", f"127.0.0.1:{admin_port}",
             "--timeout", str(30 * fvtest.SLOW)]
    clog = open(os.path.join(T, "coordinator.log"), "a")

    def start():
        p = subprocess.Popen(WRAPPER + [COORD, "--config", f"{fed}/coordinator/coordinator.json",
                                        "--state", state, "--listen", "127.0.0.1:0",
                                        "--admin-listen", f"127.0.0.1:{admin_port}"],
                             stdout=subprocess.DEVNULL, stderr=clog)
        deadline = time.time() + 60 * fvtest.SLOW
        while time.time() < deadline and p.poll() is None:
            if fvtest.run(["status"] + admin)[0] == 0:
                return p
            time.sleep(0.2)
        fvtest.fail(f"the coordinator did not answer (exit {p.poll()}): "
                    + open(clog.name).read()[-2000:])

    def stop(p):
        p.send_signal(signal.SIGTERM)
        check(p.wait(timeout=60 * fvtest.SLOW) == 0, f"coordinator exit {p.returncode}")

    stop(start())
    sha = hashlib.sha256(model).hexdigest()
    with open(os.path.join(state, "models", sha + ".fvm"), "wb") as f:
        f.write(model)
    db = sqlite3.connect(os.path.join(state, "state.db"))
    job = "c" * 64
    db.execute("INSERT INTO jobs (id, name, spec, submitted, status) VALUES (?, ?, ?, 0, 'done')",
               (job, "cli-out", "{}"))
    db.execute("INSERT INTO versions (sha256, job, round, kind, created, bytes, producer) "
               "VALUES (?, ?, 0, 'final', 0, ?, 'cli_out.py')", (sha, job, len(model)))
    db.commit()
    db.close()
    coord = start()
    try:
        ref = cases("model-export", "--out",
                    lambda p: ["model", "export", "1", "--out", p] + admin, ".fvm", exact,
                    summary="")
        check(ref == model, "model export: not the seeded model")
    finally:
        stop(coord)


def on_tty(args):
    """Runs fedvault with a terminal as stdout; returns (exit code, stderr, tty bytes)."""
    master, slave = pty.openpty()
    p = subprocess.run(WRAPPER + [FV] + args, stdout=slave, stderr=subprocess.PIPE,
                       timeout=600)
    os.close(slave)
    os.set_blocking(master, False)
    got = b""
    try:
        got = os.read(master, 65536)
    except (BlockingIOError, OSError):
        pass
    os.close(master)
    return p.returncode, p.stderr.decode(errors="replace"), got


def edge_cases(schema_args, schema, train_args, split_args):
    d = os.path.join(T, "edge")
    os.makedirs(d)

    # a FIFO: written in place (no temporary file beside it), still a FIFO
    fifo = os.path.join(d, "fifo")
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(read(fifo)))
    reader.start()
    run(schema_args + ["--out", fifo])
    reader.join(60)
    check(got == [schema], f"schema --out FIFO: read {got!r}")
    check(os.listdir(d) == ["fifo"] and not os.path.isfile(fifo), "FIFO replaced")

    # --out /dev/stdout with stdout redirected to a file: the file gets the schema
    red = os.path.join(d, "redirected.json")
    with open(red, "wb") as f:
        run(schema_args + ["--out", "/dev/stdout"], stdout=f)
    check(read(red) == schema, f"--out /dev/stdout > FILE: {read(red)!r}")

    # refusals: two outputs on stdout, a directory, a model to a terminal
    _, err = run(train_args + ["--out", "-", "--schema-out", "/dev/stdout"], expect=2)
    check("both name standard output" in err, f"train: {err!r}")
    _, err = run(split_args + ["--train-out", "-", "--test-out", "-"], expect=2)
    check("both name standard output" in err, f"split: {err!r}")
    _, err = run(schema_args + ["--out", d], expect=1)
    check(d in err and "is a directory" in err, f"schema --out DIR: {err!r}")
    for args in (train_args + ["--out", "-"],
                 ["export", "--model", os.path.join(T, "teacher.fvm"), "--format", "onnx",
                  "--out", "/dev/stdout"]):
        code, err, written = on_tty(args)
        check(code == 2 and "standard output is a terminal" in err and written == b"",
              f"{args[0]} to a terminal: exit {code}, {len(written)} bytes, {err!r}")
    # a text file to a terminal is fine
    code, err, written = on_tty(schema_args + ["--out", "-"])
    check(code == 0 and b"fedvault_schema" in written, f"schema to a terminal: {code} {err!r}")
    print("FIFO, --out /dev/stdout > FILE, --json on stderr, refusals: ok")


if __name__ == "__main__":
    main()
