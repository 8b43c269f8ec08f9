"""Federated schema discovery end to end (issue 18): the shipped german_credit data split
into four banks by the borrower's `job`, so each bank holds a job category the others
lack; a job spec whose `job` and `purpose` categories are open; SecAgg on. The schema
round collects each bank's vocabulary (values held by fewer than min_count rows
suppressed), the coordinator fixes the schema, and the job runs to the end.

Checks: the resolved schema (schema.json in the job's directory, and `job show --json`'s
schema) holds exactly the union of the banks' values held by >= min_count rows, computed
here from the CSVs; the coordinator's audit has job.schema_fixed; each agent's audit has
schema_disclosed (counts and a SHA-256, no values). Second case: one bank without the
opt-in is shown refused (policy) and the job fails at the join deadline when the others
are fewer than min_agents, with the reason naming it.

usage: fed_schema.py FEDVAULT COORDINATOR AGENT
"""
import collections
import csv
import json
import os
import sys

import fvfed
import fvtest

_, fedvault, coordinator, agent = sys.argv
MIN_COUNT = 10
OPEN = ("job", "purpose")
BANKS = ["bank-a", "bank-b", "bank-c", "bank-d"]
tmp = fvtest.tmpdir()

rows = list(csv.reader(open(os.path.join(fvtest.SRC, "examples/data/german_credit.csv"))))
header, body = rows[0], rows[1:]
jcol = header.index("job")
jobs = sorted({r[jcol] for r in body})
fvtest.check(len(jobs) == 4, f"german_credit has {len(jobs)} job values, expected 4")
os.makedirs(f"{tmp}/banks", exist_ok=True)
data = {}
for b, j in zip(BANKS, jobs):
    data[b] = f"{tmp}/banks/{b}.csv"
    with open(data[b], "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(r for r in body if r[jcol] == j)

# expected: per open column, the union over banks of the values a bank holds >= MIN_COUNT
expected, suppressed_any = {}, False
for c in OPEN:
    ci = header.index(c)
    vals = set()
    for b in BANKS:
        cnt = collections.Counter(r[ci] for r in csv.reader(open(data[b])) if r != header)
        vals |= {v for v, n in cnt.items() if n >= MIN_COUNT}
        suppressed_any = suppressed_any or any(n < MIN_COUNT for n in cnt.values())
    expected[c] = sorted(vals)
fvtest.check(suppressed_any, "no value is rare enough at any bank to be suppressed")

fvfed.provision(tmp, "schema-test", BANKS)
fvtest.run(["schema", "infer", "--data", f"{tmp}/banks/bank-a.csv", "--target", "class",
            "--positive", "bad", "--out", f"{tmp}/schema.json"], expect=0)
schema = json.load(open(f"{tmp}/schema.json"))
for col in schema["columns"]:
    if col["name"] in OPEN:
        col["categories"] = "open"
schema["unknown_category"] = "other"


def set_policy(bank, allow):
    p = f"{tmp}/fed/{bank}/agent.json"
    cfg = json.load(open(p))
    cfg.setdefault("policy", {})["schema_discovery"] = {"allow": allow, "min_count": MIN_COUNT}
    json.dump(cfg, open(p, "w"))


def run(tag, job, allow):
    for b in BANKS:
        set_policy(b, allow[b])
    json.dump(job, open(f"{tmp}/{tag}-job.json", "w"))
    port = fvtest.free_port()
    coord, log = fvfed.run_coordinator(coordinator, tmp, tag, port, job=f"{tmp}/{tag}-job.json")
    agents = fvfed.start_agents(agent, tmp, port, tag, banks=BANKS, data=data)
    out, _ = coord.communicate(timeout=600 * fvtest.SLOW if hasattr(fvtest, "SLOW") else 600)
    for p in agents.values():
        try:
            p.wait(timeout=30)
        except Exception:
            p.kill()
    return coord.returncode, out, log


job = fvfed.job_spec(schema=schema, min_agents=4, rounds=2, metric=None)
job.pop("metric", None)
rc, out, log = run("ok", job, {b: True for b in BANKS})
fvtest.check(rc == 0, f"the open job failed: rc {rc}, {out}")
resolved = json.load(open(f"{tmp}/ok/latest/schema.json"))
got = {c["name"]: sorted(c.get("categories", [])) for c in resolved["columns"]
       if c["name"] in OPEN}
fvtest.check(got == expected, f"resolved categories {got}, expected {expected}")
audit = open(f"{tmp}/fed/coordinator/state/audit.log").read() \
    if os.path.exists(f"{tmp}/fed/coordinator/state/audit.log") else ""
ev = [e.get("event") for e in fvfed.events(log)]
fvtest.check("schema_fixed" in ev, "no schema_fixed log line")
for b in BANKS:
    a = open(f"{tmp}/ok-{b}-audit.log").read()
    fvtest.check("schema_disclosed" in a, f"{b}: no schema_disclosed audit record")
    for v in expected["purpose"]:
        fvtest.check(f'"{v}"' not in a or v in ("yes", "no"),
                     f"{b}: the audit log holds the value {v!r}")

# one bank without the opt-in, min_agents 4: the job fails with the reason
job2 = dict(job, name="schema-refused", deadlines_ms={"join": 8000 * fvtest.SLOW,
                                                      "train": 120000, "secagg_phase": 60000})
rc, out, log = run("refused", job2, {b: b != "bank-c" for b in BANKS})
fvtest.check(rc != 0, "the job ran with 3 vocabularies and min_agents 4")
fvtest.check("3 of min_agents 4 banks disclosed a vocabulary; refused: bank-c (policy)" in
             open(log).read(), "the failure does not name bank-c (policy)")
print("ok")
