"""Bad input through the real CLI: every case exits non-zero (1 for data, 2 for usage)
with one message on stderr that names the place (file, line, column) -- and no crash
(a sanitizer report or signal would fail the exit-code check).
"""
import os

from fvtest import DATA, HERE, check, run, tmpdir

BAD = os.path.join(HERE, "data")


def expect_error(args, code, *needles):
    rc, out, err = run(args)
    check(rc == code, f"fedvault {' '.join(args)}: exit {rc}, expected {code}; stderr: {err}")
    for n in needles:
        check(n in err, f"fedvault {' '.join(args)}: stderr lacks {n!r}: {err!r}")
    check("AddressSanitizer" not in err and "runtime error" not in err, f"sanitizer: {err}")


def train_args(fname, *extra, out=None):
    out = out or os.path.join(tmpdir(), "m.fvm")
    data = fname if os.path.isabs(fname) else os.path.join(BAD, fname)
    return ["train", "--data", data, "--target", "y", "--positive", "1", "--out", out,
            "--quiet", "--epochs", "2", "--test-fraction", "0", "--patience", "0"] + list(extra)


def main():
    # data errors: file:line:column named
    expect_error(train_args("ragged.csv"), 1, "ragged.csv:4:")
    expect_error(train_args("empty.csv"), 1, "empty.csv")
    expect_error(train_args("header_only.csv"), 1, "header_only.csv")
    expect_error(train_args("missing_target.csv"), 1, "missing_target.csv:3:3", "'y'")
    expect_error(train_args("unterminated.csv"), 1, "unterminated.csv:3:")
    expect_error(train_args("no_such_file.csv"), 1, "no_such_file.csv",
                 "No such file or directory")
    expect_error(train_args(BAD), 1, BAD)  # a directory
    expect_error(train_args("ok.csv", "--drop", "nope"), 1, "nope")
    # a two-class target without --positive: refused before training, naming the classes
    no_pos = [a for a in train_args("ok.csv") if a not in ("--positive", "1")]
    expect_error(no_pos, 1, "ok.csv", "two classes", "--positive")

    # schema-driven errors: train on ok.csv, then eval files that break the schema
    d = tmpdir()
    m = os.path.join(d, "m.fvm")
    rc, _, err = run(train_args("ok.csv", out=m))
    check(rc == 0, f"training on ok.csv failed: {err}")
    expect_error(["eval", "--model", m, "--data", os.path.join(BAD, "text_in_numeric.csv")],
                 1, "text_in_numeric.csv:3:1", "'x1'", "abc")
    expect_error(["eval", "--model", m, "--data", os.path.join(BAD, "unknown_category.csv")],
                 1, "unknown_category.csv:4:2", "'color'", "purple")
    expect_error(["eval", "--model", m, "--data", os.path.join(BAD, "unknown_label.csv")],
                 1, "unknown_label.csv:2:3", "'y'", "7")
    expect_error(["eval", "--model", m, "--data", os.path.join(BAD, "missing_column.csv")],
                 1, "missing_column.csv", "color")
    expect_error(["eval", "--model", os.path.join(BAD, "ok.csv"), "--data",
                  os.path.join(BAD, "ok.csv")], 1, "ok.csv")
    # corrupt model: flip a byte in the middle
    blob = bytearray(open(m, "rb").read())
    blob[len(blob) // 2] ^= 0x10
    bad_model = os.path.join(d, "corrupt.fvm")
    open(bad_model, "wb").write(blob)
    expect_error(["eval", "--model", bad_model, "--data", os.path.join(BAD, "ok.csv")], 1,
                 "corrupt.fvm")
    trunc = os.path.join(d, "trunc.fvm")
    open(trunc, "wb").write(bytes(blob[:40]))
    expect_error(["eval", "--model", trunc, "--data", os.path.join(BAD, "ok.csv")], 1,
                 "trunc.fvm")

    # usage errors: exit 2, name the option
    expect_error(["train"], 2, "--data")
    expect_error(train_args("ok.csv", "--epochs", "0"), 2, "--epochs")
    expect_error(train_args("ok.csv", "--lr", "abc"), 2, "--lr")
    expect_error(train_args("ok.csv", "--model", "mlp:0"), 2, "--model")
    expect_error(train_args("ok.csv", "--bogus"), 2)
    expect_error(["nope"], 2, "unknown command")

    # --help everywhere
    for cmd in (["--help"], ["train", "--help"], ["eval", "--help"], ["split", "--help"],
                ["schema", "--help"], ["schema", "infer", "--help"], ["bench", "--help"],
                ["bench", "secagg", "--help"]):
        rc, out, _ = run(cmd)
        check(rc == 0 and "Usage" in out, f"fedvault {' '.join(cmd)}: exit {rc}: {out}")
    print("cli_errors: OK")


if __name__ == "__main__":
    main()
