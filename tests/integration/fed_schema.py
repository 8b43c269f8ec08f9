"""Federated schema discovery end to end (issue 18): the shipped german_credit data split
into four banks by the borrower's `job`, so each bank holds a job category the others
lack; a job spec whose categorical columns are all open (the operator inferred the schema
from one bank's file with `schema infer --open-categories`); SecAgg on. The schema round
collects each bank's vocabulary (values held by fewer than min_count rows suppressed),
the coordinator fixes the schema, and the job runs to the end.

Checks:
  - per open column, the resolved schema holds exactly the union over banks of the values
    a bank holds in >= min_count rows, computed here from the CSVs: in schema.json (the job
    directory), in the state (job_schemas.spec) and in the spec the agents accepted;
  - the schema's SHA-256 (of schema.json's canonical JSON) is the one in the state, the
    coordinator's audit record job.schema_fixed, `job show --json`'s schema object and
    the lineage of the final model (`model show --json`), with the four banks as
    contributors; `job show`'s text names it;
  - the job id stays the submitted spec's digest; every round committed;
  - each agent's audit has schema_disclosed with counts and a SHA-256, and no value;
  - the job's report.html names the same SHA-256 and the four banks as its sources.
Second case: the coordinator killed right after fixing the schema resumes with the stored
spec (no second schema round) and ends with the same schema.json and final.fvm.
Third case: bank-c without the opt-in and min_agents 3: the schema is the other three's
union (bank-c's refusal is recorded with its category, policy, when it connected before the
others answered). Fourth case: the same
refusal with min_agents 4: the job fails at the join deadline, the reason naming bank-c
(policy).

usage: fed_schema.py FEDVAULT COORDINATOR AGENT
"""
import collections
import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import fvfed
import fvtest

_, fedvault, coordinator, agent = sys.argv
S = fvfed.SLOW
MIN_COUNT = 10
BANKS = ["bank-a", "bank-b", "bank-c", "bank-d"]
tmp = fvtest.tmpdir()

rows = list(csv.reader(open(os.path.join(fvtest.DATA, "german_credit.csv"))))
header, body = rows[0], rows[1:]
jcol = header.index("job")
jobs = sorted({r[jcol] for r in body})
fvtest.check(len(jobs) == 4, f"german_credit has {len(jobs)} job values, expected 4")
os.makedirs(f"{tmp}/banks", exist_ok=True)
data, bank_rows = {}, {}
for b, j in zip(BANKS, jobs):
    data[b] = f"{tmp}/banks/{b}.csv"
    bank_rows[b] = [r for r in body if r[jcol] == j]
    with open(data[b], "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(bank_rows[b])

# The operator's schema: inferred from bank-a's file alone with every categorical column
# left open (schema infer --open-categories); nothing edited by hand.
fvfed.provision(tmp, "schema-test", BANKS)
fvtest.run(["schema", "infer", "--data", data["bank-a"], "--target", "class", "--positive",
            "bad", "--open-categories", "--out", f"{tmp}/schema.json"], expect=0)
schema = json.load(open(f"{tmp}/schema.json"))
OPEN = [c["name"] for c in schema["columns"] if c.get("categories") == "open"]
fvtest.check("job" in OPEN and "purpose" in OPEN, f"opened categorical columns: {OPEN}")
fvtest.check(schema["unknown_category"] == "other", "an open schema's unknown_category")



def union(banks):
    """Per open column, the union over banks of the values a bank holds >= MIN_COUNT; and
    the number of (bank, value) pairs suppressed."""
    exp, supp = {}, collections.Counter()
    for c in OPEN:
        ci = header.index(c)
        vals = set()
        for b in banks:
            cnt = collections.Counter(r[ci] for r in bank_rows[b])
            vals |= {v for v, n in cnt.items() if n >= MIN_COUNT}
            supp[c] += sum(1 for n in cnt.values() if n < MIN_COUNT)
        exp[c] = sorted(vals)
    return exp, supp


expected, suppressed = union(BANKS)
fvtest.check(sum(suppressed.values()) > 0, "no value is rare enough at any bank to be suppressed")
fvtest.check(len(expected["job"]) == 4,
             f"the job column's union is {expected['job']}: each bank's own value expected")
allvals = {c: sorted({r[header.index(c)] for r in body}) for c in OPEN}
fvtest.check(any(expected[c] != allvals[c] for c in OPEN),
             "the union minus suppressed equals the pooled vocabulary: the test shows nothing")


def set_policy(bank, allow):
    p = f"{tmp}/fed/{bank}/agent.json"
    cfg = json.load(open(p))
    cfg.setdefault("policy", {})["schema_discovery"] = {"allow": allow, "min_count": MIN_COUNT}
    json.dump(cfg, open(p, "w"))


def run(tag, job, allow):
    """The job run by a coordinator --job with the four agents (--once); returns
    (coordinator exit code, its stdout, its log path)."""
    for b in BANKS:
        set_policy(b, allow[b])
    json.dump(job, open(f"{tmp}/{tag}-job.json", "w"))
    port = fvtest.free_port()
    coord, log = fvfed.run_coordinator(coordinator, tmp, tag, port, job=f"{tmp}/{tag}-job.json")
    agents = fvfed.start_agents(agent, tmp, port, tag, banks=BANKS, data=data)
    out = fvfed.finish(coord, tag)
    codes = fvfed.wait_exits(agents, 60 * S)
    return coord.returncode, out, log, codes


def cats(schema_obj):
    return {c["name"]: sorted(c.get("categories", [])) for c in schema_obj["columns"]
            if c["name"] in OPEN}


job = fvfed.job_spec(name="schema-open", schema=schema, min_agents=4, rounds=2)
rc, out, log, codes = run("ok", job, {b: True for b in BANKS})
fvtest.check(rc == 0, f"the open job failed: rc {rc}, {out}\n"
             + "\n".join(json.dumps(e) for e in fvfed.events(log)[-12:]))
fvtest.check(all(v == 0 for v in codes.values()), f"agents' exit codes {codes}")

# schema.json in the job directory: the union minus the suppressed values
text = open(f"{tmp}/ok/latest/schema.json", "rb").read()
resolved = json.loads(text)
fvtest.check(cats(resolved) == expected,
             f"schema.json's categories {cats(resolved)}, expected {expected}")
fvtest.check(resolved["unknown_category"] == "other", "the resolved schema's unknown_category")
sha = hashlib.sha256(text.rstrip(b"\n")).hexdigest()
# the job's report (report.html, written at its end) names the same schema and its sources
page = open(f"{tmp}/ok/latest/report.html").read()
fvtest.check(f'id="schema-sha256">{sha}<' in page
             and "<th>vocabularies from</th><td>" + ", ".join(BANKS) + "</td>" in page,
             "report.html's data schema section does not name the schema and the four banks")

# the state: the job's id is the submitted spec's digest; the resolved spec stored
jobs_rows = fvfed.db_rows(tmp, "ok", "SELECT id, status FROM jobs")
fvtest.check(len(jobs_rows) == 1 and jobs_rows[0][1] == "done", f"jobs: {jobs_rows}")
job_id = jobs_rows[0][0]
fvtest.check(os.path.realpath(f"{tmp}/ok/latest").endswith(job_id),
             "latest is not the state id's directory")
srow = fvfed.db_rows(tmp, "ok", "SELECT spec, sha256, version, contributors FROM job_schemas")
fvtest.check(len(srow) == 1, f"job_schemas: {srow}")
spec_s, sha_s, ver_s, contrib_s = srow[0]
fvtest.check(cats(json.loads(spec_s)["schema"]) == expected,
             f"the state's resolved spec: {cats(json.loads(spec_s)['schema'])}")
fvtest.check(sha_s == sha and ver_s == 1 and sorted(json.loads(contrib_s)) == BANKS,
             f"job_schemas row: {sha_s} {ver_s} {contrib_s}; schema.json's sha256 {sha}")
rounds = fvfed.db_rows(tmp, "ok", "SELECT round, kind, status FROM rounds ORDER BY round")
fvtest.check([(r[1], r[2]) for r in rounds] == [("stats", "ok"), ("train", "ok"),
                                                  ("train", "ok")], f"rounds: {rounds}")

# the coordinator's audit: job.schema_fixed
recs = [json.loads(l) for l in open(f"{tmp}/ok/state/audit.log")]
fixed = [r for r in recs if "job.schema_fixed" in json.dumps(r)]
fvtest.check(len(fixed) == 1 and sha in json.dumps(fixed[0])
             and all(b in json.dumps(fixed[0]) for b in BANKS),
             f"job.schema_fixed records: {fixed}")
fvtest.check("schema_fixed" in [e.get("event") for e in fvfed.events(log)],
             "no schema_fixed log line")

# the agents: each disclosed (audited with counts and a hash, no value) and trained on
# the resolved spec
for b in BANKS:
    arecs = [json.loads(l) for l in open(f"{tmp}/ok-{b}-audit.log")]
    disc = [r for r in arecs if "schema_disclosed" in json.dumps(r)]
    fvtest.check(len(disc) == 1, f"{b}: schema_disclosed records: {len(disc)}")
    dtext = json.dumps(disc[0])
    for c in OPEN:
        for v in allvals[c]:
            fvtest.check(json.dumps(v) not in dtext or v in OPEN,
                         f"{b}: the schema_disclosed record holds the value {v!r}")

# job show / model show through the admin port of a daemon on the same state
port2 = fvtest.free_port()
adm = subprocess.Popen(fvfed.WRAPPER + [coordinator, "--config",
                                        f"{tmp}/fed/coordinator/coordinator.json", "--state",
                                        f"{tmp}/ok/state", "--listen", "127.0.0.1:0",
                                        "--admin-listen", f"127.0.0.1:{port2}"],
                       stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/admin.log", "w"))
try:
    admin = ["--config", f"{tmp}/fed/ops-1/admin.json", "--admin", f"127.0.0.1:{port2}"]
    for _ in range(int(100 * S)):
        code, _, _ = fvtest.run(["status", *admin])
        if code == 0:
            break
        time.sleep(0.2)
    show = fvtest.run_json(["job", "show", job_id, *admin])
    sch = show.get("schema") or {}
    fvtest.check(sch.get("sha256") == sha and sch.get("version") == 1
                 and sorted(sch.get("contributors", [])) == BANKS and sch.get("open") is False,
                 f"job show's schema: {sch}")
    _, jtext, _ = fvtest.run(["job", "show", job_id, *admin], expect=0)
    fvtest.check(sha[:16] in jtext, f"job show's text does not name the schema:\n{jtext}")
    final = show.get("final_version")
    ms = fvtest.run_json(["model", "show", str(final), *admin])
    lsch = ms["lineage"].get("schema") or {}
    fvtest.check(lsch.get("sha256") == sha and lsch.get("version") == 1
                 and sorted(lsch.get("contributors", [])) == BANKS,
                 f"the final model's lineage schema: {lsch}")
finally:
    adm.send_signal(signal.SIGTERM)
    adm.wait(timeout=60 * S)
print(f"job {job_id[:16]}: schema {sha[:16]} fixed from 4 vocabularies; "
      + ", ".join(f"{c}: {len(expected[c])}/{len(allvals[c])}" for c in OPEN))

# The coordinator SIGKILLed right after the schema is fixed (stored and audited, no offer
# yet), then restarted on the same state with the same agents: it resumes with the stored
# resolved spec (no second schema round) and ends with the uninterrupted run's schema and
# final model, byte for byte.
for b in BANKS:
    set_policy(b, True)
port = fvtest.free_port()
p, clog = fvfed.run_coordinator(coordinator, tmp, "crash", port, kill_at="schema-fixed",
                                job=f"{tmp}/ok-job.json")
agents = fvfed.start_agents(agent, tmp, port, "crash", banks=BANKS, data=data)
fvfed.finish(p, "crash run 1")
fvtest.check(p.returncode == -signal.SIGKILL and "test_kill" in open(clog).read(),
             f"crash run 1: exit {p.returncode}, expected the SIGKILL at schema-fixed")
p, clog = fvfed.run_coordinator(coordinator, tmp, "crash", port, job=f"{tmp}/ok-job.json")
fvfed.finish(p, "crash run 2")
fvtest.check(p.returncode == 0, f"crash run 2: exit {p.returncode}\n"
             + "\n".join(json.dumps(e) for e in fvfed.events(clog, since_start=True)[-10:]))
codes = fvfed.wait_exits(agents, 60 * S)
fvtest.check(all(v == 0 for v in codes.values()), f"crash: agents' exit codes {codes}")
ev2 = [e.get("event") for e in fvfed.events(clog, since_start=True)]
fvtest.check("schema_round_started" not in ev2 and "job_started" in ev2,
             f"the restarted coordinator ran a second schema round: {ev2[:12]}")
fvtest.check(fvfed.db_rows(tmp, "crash", "SELECT count(*) FROM job_schemas") == [(1,)],
             "crash: not one job_schemas row")
crecs = [json.loads(l) for l in open(f"{tmp}/crash/state/audit.log")]
fvtest.check(sum(r.get("event") == "job.schema_fixed" for r in crecs) == 1,
             "crash: not one job.schema_fixed audit record")
for f in ("schema.json", "final.fvm"):
    fvtest.check(open(f"{tmp}/crash/latest/{f}", "rb").read()
                 == open(f"{tmp}/ok/latest/{f}", "rb").read(),
                 f"crash: {f} differs from the uninterrupted run's")
print("crash at schema-fixed: resumed with the stored spec, same schema and final model")

# bank-c without the opt-in, min_agents 3: the schema is fixed from the other three, and the job runs with all four (bank-c's own job
# value, in no vocabulary, lands in "other")
others = [b for b in BANKS if b != "bank-c"]
rc, out, log, codes = run("partial", dict(job, name="schema-partial", min_agents=3),
                          {b: b != "bank-c" for b in BANKS})
fvtest.check(rc == 0, f"the job with 3 vocabularies and min_agents 3 failed: rc {rc}\n"
             + "\n".join(json.dumps(e) for e in fvfed.events(log)[-12:]))
exp3, _ = union(others)
got3 = cats(json.loads(open(f"{tmp}/partial/latest/schema.json").read()))
fvtest.check(got3 == exp3, f"partial: schema.json's categories {got3}, expected {exp3}")
fvtest.check(exp3["job"] != expected["job"], "bank-c's job value is in the others' union")
prow = fvfed.db_rows(tmp, "partial", "SELECT contributors, refused FROM job_schemas")
# The round ends once every CONNECTED agent has answered with >= min_agents vocabularies:
# bank-c's refusal is in the record when it connected before the other three answered,
# and absent when it connected after (it then gets the resolved job's offer). The case
# below (min_agents 4) waits for the deadline, so there its refusal is always recorded.
fvtest.check(len(prow) == 1 and sorted(json.loads(prow[0][0])) == others
             and json.loads(prow[0][1]) in ([], [{"agent": "bank-c", "category": "policy"}]),
             f"partial: job_schemas contributors/refused {prow}")
print("bank-c refused (policy), min_agents 3: fixed from the other three's vocabularies")

# one bank without the opt-in, min_agents 4: the job fails at the join deadline, with why
job2 = dict(job, name="schema-refused", deadlines_ms={"join": 8000 * S, "train": 120000 * S,
                                                      "secagg_phase": 60000 * S})
rc, out, log, codes = run("refused", job2, {b: b != "bank-c" for b in BANKS})
fvtest.check(rc != 0, "the job ran with 3 vocabularies and min_agents 4")
want = "3 of min_agents 4 banks disclosed a vocabulary; refused: bank-c (policy)"
st = fvfed.db_rows(tmp, "refused", "SELECT status, why FROM jobs")
fvtest.check(len(st) == 1 and st[0][0] == "failed" and want in (st[0][1] or ""),
             f"the refused job's state: {st}")
fvtest.check(want in open(log).read(), "the coordinator's log does not name bank-c (policy)")
print("ok")
