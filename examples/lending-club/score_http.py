#!/usr/bin/env python3
"""Scores a CSV file through fedvault-serve's HTTP API and checks the answers against
`fedvault predict --format jsonl` on the same rows.

  score_http.py URL SCHEMA.json DATA.csv PREDICT.jsonl [--batch N] [--tol T] [--out F]

URL is the server's base ("http://127.0.0.1:8080"). SCHEMA.json is a job spec or a schema
(its "schema" member, or the object itself): it says which columns are numeric (sent as
JSON numbers) and which categorical (sent as strings); an empty or NA cell is sent as
null (missing), the target column is left out. Rows go in batches of N (default 256) to
POST /v1/score. Every answered score must equal predict's to within T (default 1e-6,
absolute), and the answering model must be the same version for every batch. Prints one
summary line; exit status 1 on any difference, error or refused row.
Standard library only (runs with the python3 first on PATH)."""
import argparse
import csv
import http.client
import json
import sys
import urllib.parse


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url")
    ap.add_argument("schema")
    ap.add_argument("data")
    ap.add_argument("predict")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--out", help="write the server's answers here, one JSON line per row")
    a = ap.parse_args()

    spec = json.load(open(a.schema))
    schema = spec.get("schema", spec)
    types = {c["name"]: c["type"] for c in schema["columns"]}
    target = schema.get("target")

    want = {}
    for line in open(a.predict):
        r = json.loads(line)
        if "score" in r:
            want[r["row"]] = r["score"]

    u = urllib.parse.urlparse(a.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    rows, lines = [], []
    with open(a.data, newline="") as f:
        rd = csv.DictReader(f)
        for i, rec in enumerate(rd):
            row = {}
            for k, v in rec.items():
                t = types.get(k, "ignored")
                if k == target or t in ("ignored", "target"):
                    continue
                if v == "" or v == "NA":
                    row[k] = None
                elif t == "numeric":
                    row[k] = float(v)
                else:
                    row[k] = v
            rows.append(row)
            lines.append(i + 1)  # predict numbers data rows from 1

    out = open(a.out, "w") if a.out else None
    worst, n, versions, bad = 0.0, 0, set(), 0
    for s in range(0, len(rows), a.batch):
        body = json.dumps({"rows": rows[s:s + a.batch]})
        conn.request("POST", "/v1/score", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        text = resp.read()
        if resp.status != 200:
            print(f"score_http: batch at row {s + 1}: HTTP {resp.status}: {text[:300]!r}")
            return 1
        ans = json.loads(text)
        versions.add((ans["model"]["label"], ans["model"]["version"]))
        for res in ans["results"]:
            row = lines[s + res["row"]]
            if out:
                out.write(json.dumps(dict(res, row=row)) + "\n")
            if "error" in res:
                print(f"score_http: row {row}: {res['error']}")
                bad += 1
                continue
            if row not in want:
                print(f"score_http: row {row}: scored over HTTP, an error in predict")
                bad += 1
                continue
            worst = max(worst, abs(res["score"] - want[row]))
            n += 1
    if len(versions) != 1:
        print(f"score_http: answered by several models: {sorted(versions)}")
        bad += 1
    label, version = next(iter(versions)) if versions else ("?", "?")
    ok = bad == 0 and n == len(want) and worst <= a.tol
    print(f"{n} rows scored over HTTP by model version {version} ({label}) in batches of "
          f"{a.batch}: max |score - fedvault predict| = {worst:.3g} (tolerance {a.tol:g})"
          + ("" if ok else f"; {bad} rows refused or missing, {len(want) - n} not compared"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
