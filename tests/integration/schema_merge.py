"""`fedvault schema merge` through the real CLI, on the German credit data.

The shipped file is split into four "banks" by its `job` column, so each bank's inferred
schema knows one job category only (and only some values of the other categorical
columns). Merging the four schemas must give exactly the schema inferred from the pooled
file: every category is held by some bank, and the types, target and classes agree.
Also: the merged JSON on standard output equals the --out file; --out replaces a file;
two schemas of different shapes are refused naming both files (exit 1); an unreadable or
open schema is refused naming it; fewer than two files is a usage error (exit 2);
--help exits 0. And `schema infer --open-categories` / `--open COL,...` on one bank's file
writes the open schema a job's schema round fills in: the pooled schema with those columns
opened; a column that is not a feature is refused naming the option and the file.
"""
import csv
import json
import os

from fvtest import DATA, check, run, tmpdir

GC = os.path.join(DATA, "german_credit.csv")


def clean(err):
    check("AddressSanitizer" not in err and "runtime error" not in err, f"sanitizer: {err}")


def main():
    d = tmpdir()
    with open(GC, newline="") as f:
        rows = list(csv.reader(f))
    head, body = rows[0], rows[1:]
    col = head.index("job")
    groups = {}
    for r in body:
        groups.setdefault(r[col], []).append(r)
    check(len(groups) == 4, f"expected 4 job values, got {sorted(groups)}")

    schemas = []
    for i, (job, rs) in enumerate(sorted(groups.items())):
        data = os.path.join(d, f"bank{i}.csv")
        with open(data, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(head)
            w.writerows(rs)
        out = os.path.join(d, f"bank{i}.json")
        _, _, err = run(["schema", "infer", "--data", data, "--target", "class",
                         "--positive", "bad", "--out", out], expect=0)
        clean(err)
        with open(out) as f:
            s = json.load(f)
        cats = [c["categories"] for c in s["columns"] if c["name"] == "job"][0]
        check(cats == [job], f"bank{i}: job categories {cats}, expected [{job!r}]")
        schemas.append(out)

    full = os.path.join(d, "full.json")
    run(["schema", "infer", "--data", GC, "--target", "class", "--positive", "bad",
         "--out", full], expect=0)
    with open(full) as f:
        want = f.read()

    # stdout
    _, out, err = run(["schema", "merge"] + schemas, expect=0)
    clean(err)
    check(out == want, f"merged schema differs from the pooled one:\n{out}\n---\n{want}")
    merged = json.loads(out)
    job = [c for c in merged["columns"] if c["name"] == "job"][0]
    check(job["categories"] == sorted(groups), f"job categories {job['categories']}")

    # --out (replacing an existing file)
    dest = os.path.join(d, "merged.json")
    with open(dest, "w") as f:
        f.write("old")
    _, out, err = run(["schema", "merge", "--out", dest] + schemas, expect=0)
    clean(err)
    check("Merged 4 schemas into" in out, f"summary: {out!r}")
    with open(dest) as f:
        check(f.read() == want, "--out file differs from the pooled schema")

    # any "other" input makes the merged policy "other"
    other = os.path.join(d, "other.json")
    s = json.loads(want)
    s["unknown_category"] = "other"
    with open(other, "w") as f:
        json.dump(s, f)
    _, out, _ = run(["schema", "merge", schemas[0], other], expect=0)
    check(json.loads(out)["unknown_category"] == "other", "policy not 'other'")

    # different shapes: both files named
    shape = os.path.join(d, "shape.json")
    s = json.loads(want)
    s["columns"] = [c for c in s["columns"] if c["name"] != "age"]
    with open(shape, "w") as f:
        json.dump(s, f)
    _, out, err = run(["schema", "merge", schemas[0], shape], expect=1)
    clean(err)
    check(shape in err and schemas[0] in err and "columns" in err, f"shape error: {err}")
    check(out == "", f"stdout on failure: {out!r}")

    # a type disagreement
    typed = os.path.join(d, "typed.json")
    s = json.loads(want)
    for c in s["columns"]:
        if c["name"] == "age":
            c["type"] = "ignored"
    with open(typed, "w") as f:
        json.dump(s, f)
    _, _, err = run(["schema", "merge", schemas[1], typed], expect=1)
    check(f"{typed}: column 'age' is ignored but in {schemas[1]} it is numeric" in err,
          f"type error: {err}")

    # an open schema is not mergeable offline
    opened = os.path.join(d, "open.json")
    s = json.loads(want)
    for c in s["columns"]:
        if c["name"] == "job":
            c["categories"] = "open"
    s["unknown_category"] = "other"
    with open(opened, "w") as f:
        json.dump(s, f)
    _, _, err = run(["schema", "merge", schemas[0], opened], expect=1)
    check(f"{opened}: schema has open columns" in err and "resolve it first" in err,
          f"open error: {err}")

    # schema infer --open-categories / --open: one bank's file, written open for a schema
    # round; equal to the pooled schema with the same columns opened by hand
    bank0 = os.path.join(d, "bank0.csv")
    op = os.path.join(d, "opened.json")
    _, out, err = run(["schema", "infer", "--data", bank0, "--target", "class", "--positive",
                       "bad", "--open-categories", "--out", op], expect=0)
    clean(err)
    s = json.loads(want)
    n_cat = 0
    for c in s["columns"]:
        if c["type"] == "categorical":
            c["categories"] = "open"
            n_cat += 1
    s["unknown_category"] = "other"
    with open(op) as f:
        check(json.load(f) == s, "--open-categories is not the pooled schema opened by hand")
    check(f"{n_cat} open (categories or type)" in out, f"--open-categories summary: {out}")
    _, _, err = run(["schema", "infer", "--data", bank0, "--target", "class", "--positive",
                     "bad", "--open", "age,job", "--out", op], expect=0)
    with open(op) as f:
        got = {c["name"]: c for c in json.load(f)["columns"]}
    check(got["age"] == {"name": "age", "type": "open"}
          and got["job"] == {"name": "job", "type": "categorical", "categories": "open"}
          and isinstance(got["purpose"]["categories"], list),
          f"--open age,job: {got['age']} {got['job']} {got['purpose']}")
    for cols, why in (("nosuch", "column 'nosuch' is not in the schema"),
                      ("class", "column 'class' is the target")):
        _, _, err = run(["schema", "infer", "--data", bank0, "--target", "class",
                         "--positive", "bad", "--open", cols, "--out", op + ".x"], expect=1)
        check(f"--open (the schema inferred from {bank0}): {why}" in err and
              not os.path.exists(op + ".x"), f"--open {cols}: {err}")
    # an opened schema is what a job with a schema round takes, not a training schema
    _, _, err = run(["train", "--data", bank0, "--schema", op, "--model", "logreg",
                     "--epochs", "1", "--out", os.path.join(d, "m.fvm")], expect=1)
    check("open columns" in err, f"train on an open schema: {err}")

    # unreadable file, named
    missing = os.path.join(d, "nope.json")
    _, _, err = run(["schema", "merge", schemas[0], missing], expect=1)
    check(missing in err, f"missing file error: {err}")

    # usage
    _, _, err = run(["schema", "merge", schemas[0]], expect=2)
    check("at least two schema files" in err, f"usage: {err}")
    _, _, err = run(["schema", "merge", "--bogus", schemas[0], schemas[1]], expect=2)
    _, out, _ = run(["schema", "merge", "--help"], expect=0)
    check("fedvault schema merge SCHEMA SCHEMA..." in out, f"help: {out}")
    print("ok")


if __name__ == "__main__":
    main()
