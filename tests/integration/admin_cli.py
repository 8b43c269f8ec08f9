"""Every admin CLI command against a running coordinator daemon, its metrics and audit log.

argv: fedvault fedvault-coordinator fedvault-agent
A coordinator daemon (no --job) with its agent, admin and metrics ports, five bank agents
that stay connected, and the operator's admin kit. In order:
  - every admin command's --help exits 0; usage errors exit 2;
  - status and agents list (table and --json) see the five agents;
  - job submit; job watch follows it to the end (exit 0); job list and job show (by a
    prefix) give its rounds, metrics and each agent's data fingerprint (the SHA-256 of
    its CSV, checked here);
  - model list: one global version per round plus the final one; model show: the lineage
    (parent, job, the cohort of every round, the agents' fingerprints, the
    hyperparameters, the fedvault version); model export writes a file whose SHA-256 is
    the listed one and that `fedvault eval` scores on the held-out split;
  - a second job (a spec file with // comments, its schema by --schema) submitted and
    aborted while it runs; the same spec again is refused;
    an unknown job id is refused (exit 1);
  - crl reload;
  - an agent's certificate on the admin port is refused (exit 3, the role named), and so
    is a wrong address (exit 3);
  - the Prometheus endpoint counts the agents, the rounds, the bytes and the refusal;
  - the coordinator's audit log verifies and holds the agents' connections, the job's
    life, each round, each model version, the export, every admin command with the
    admin's name as actor, and the refusal; `audit show` filters by actor, event and job;
    a flipped byte in a copy fails verification naming the record;
  - SIGTERM stops the daemon with exit 0.
"""
import atexit
import csv
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import fvfed
import fvtest

fedvault, coordinator, agent = sys.argv[1:4]
WRAPPER = fvfed.WRAPPER
S = fvfed.SLOW
SRC = fvtest.SRC
tmp = fvtest.tmpdir()
BANKS = fvfed.BANKS
fvfed.setup(tmp, "admin-fed")
ADMIN_CFG = f"{tmp}/fed/ops-1/admin.json"



def write(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


port, admin_port, metrics_port = fvtest.free_port(), fvtest.free_port(), fvtest.free_port()
ADMIN = ["--config", ADMIN_CFG, "--admin", f"127.0.0.1:{admin_port}",
         "--timeout", str(30 * S)]
state = f"{tmp}/state"
clog = f"{tmp}/coordinator.log"
# Round 0's finish (the statistics round: its worker sets the job machine's sums) waits
# on the thread pool for the file hold-0 (FV_TEST_HOLD_FINISH), so job show and status
# run while a worker holds the job machine (under TSan, a read of the machine from the
# admin port there is a data race); every later round's file exists from the start.
HOLD = f"{tmp}/hold"
for r in range(1, 64):
    open(f"{HOLD}-{r}", "w").close()
coord = subprocess.Popen(
    WRAPPER + [coordinator, "--config", f"{tmp}/fed/coordinator/coordinator.json", "--state",
               state, "--listen", f"127.0.0.1:{port}", "--admin-listen",
               f"127.0.0.1:{admin_port}", "--metrics-listen", f"127.0.0.1:{metrics_port}"],
    stdout=subprocess.PIPE, stderr=open(fvtest.show_on_fail(clog), "w"), text=True,
    env=dict(os.environ, FV_TEST_HOLD_FINISH=HOLD))
agents = {}


@atexit.register
def _no_leftovers():
    """A failed check exits at once: no daemon of this test outlives it."""
    for p in [coord] + list(agents.values()):
        if p.poll() is None:
            p.kill()


def admin(args, expect=0):
    return fvtest.run(list(args) + ADMIN, expect=expect)


def admin_json(args):
    _, out, _ = admin(list(args) + ["--json"])
    try:
        return json.loads(out)
    except json.JSONDecodeError as e:
        fvtest.fail(f"fedvault {' '.join(args)} --json: not JSON ({e}): {out!r}")


def wait(pred, what, timeout=120):
    deadline = time.time() + timeout * S
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        if coord.poll() is not None:
            break
        time.sleep(0.2)
    fvtest.fail(f"timed out waiting for {what}; coordinator exit {coord.poll()}\n"
                + open(clog).read()[-3000:])


# The daemon is up when status answers.
wait(lambda: fvtest.run(["status"] + ADMIN)[0] == 0, "the admin port")

# --help and usage errors
for cmd in (["status"], ["agents", "list"], ["job", "submit"], ["job", "list"], ["job", "show"],
            ["job", "watch"], ["job", "abort"], ["model", "list"], ["model", "show"],
            ["model", "export"], ["crl", "reload"]):
    code, out, _ = fvtest.run(cmd + ["--help"])
    fvtest.check(code == 0 and "Usage" in out, f"{' '.join(cmd)} --help: exit {code}")
admin(["job", "show"], expect=2)                       # no ID
admin(["model", "export", "1"], expect=2)              # no --out
admin(["job", "frobnicate"], expect=2)
print("--help on every admin command; usage errors exit 2")

st = admin_json(["status"])
fvtest.check(st["job"] is None and st["agents_connected"] == 0, f"status before agents: {st}")

# Two banks' policies let them tell the coordinator their row counts; the others withhold
# them (the default: JOB_ACCEPT says 0).
DISCLOSE = set(BANKS[:2])
for b in BANKS:
    agents[b] = subprocess.Popen(
        WRAPPER + [agent, "--config", f"{tmp}/fed/{b}/agent.json", "--data",
                   f"{tmp}/banks/{b}.csv", "--coordinator", f"127.0.0.1:{port}"]
        + (["--disclose-rows", "on"] if b in DISCLOSE else []),
        stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/{b}.log", "w"))
wait(lambda: admin_json(["status"])["agents_connected"] == 5, "five agents")
al = admin_json(["agents", "list"])["agents"]
fvtest.check(sorted(a["name"] for a in al) == BANKS and all(a["connected"] for a in al),
             f"agents list: {al}")
_, out, _ = admin(["agents", "list"])
fvtest.check(all(b in out for b in BANKS), f"agents list table: {out}")
_, out, _ = admin(["status"])
print(f"status:\n{out}")

# A job, start to end.
# (with the explanation round: round 4, after the 3 training rounds)
spec1 = write(f"{tmp}/job1.json", fvfed.job_spec(name="lc-admin-1", explain=True))
_, out, _ = admin(["job", "submit", spec1])
job1 = admin_json(["job", "list"])["jobs"][0]["id"]
fvtest.check(job1[:12] in out, f"job submit printed {out!r}, id {job1}")
wait(lambda: (admin_json(["job", "show", job1[:8]]).get("live") or {}).get("phase") == "finishing",
     "round 0's finish held on the thread pool")
for _ in range(3):
    live = admin_json(["job", "show", job1[:8]])["live"]
    fvtest.check(live["round"] == 0 and live["kind"] == "stats", f"live while held: {live}")
    admin_json(["status"])
open(f"{HOLD}-0", "w").close()
code, wout, werr = admin(["job", "watch", job1[:10], "--interval", "0.2"])
fvtest.check("done" in wout, f"job watch output: {wout}")
print(f"job watch (last lines):\n" + "\n".join(wout.strip().splitlines()[-3:]))
jobs = admin_json(["job", "list"])["jobs"]
fvtest.check(len(jobs) == 1 and jobs[0]["status"] == "done", f"job list: {jobs}")
show = admin_json(["job", "show", job1[:8]])
# patience 0 (fvfed's spec): the final model is the last update's, labelled with the last
# round run (3 of 3), not "round 4"; job watch ends on the final model's round's metric.
fvtest.check(show.get("final_round") == 3, f"final_round {show.get('final_round')}, expected 3")
fin = [r for r in show["rounds"] if r["round"] == show["final_round"] and r["kind"] == "train"]
wl = wout.strip().splitlines()[-1]
m = re.search(r"roc_auc=([0-9.]+)", wl)
fvtest.check(m is not None and fin and
             abs(float(m.group(1)) - fin[0]["metrics"]["val_roc_auc"]) <= 5e-4,  # %.4g
             f"job watch's last line {wl!r}, the final round's metrics {fin}")
ok_rounds = [r for r in show["rounds"] if r["status"] == "ok"]
fvtest.check([r["round"] for r in ok_rounds] == [0, 1, 2, 3, 4]
             and [r["kind"] for r in ok_rounds] == ["stats"] + ["train"] * 3 + ["explain"],
             f"rounds: {show['rounds']}")
fvtest.check(all(0 <= r["metrics"]["val_roc_auc"] <= 1 for r in ok_rounds[1:4]),
             f"metrics: {[r['metrics'] for r in ok_rounds[1:4]]}")
# the explanation: one finite mean >= 0 per numeric and categorical column, in the state
spec1_cols = [c["name"] for c in json.load(open(spec1))["schema"]["columns"]
              if c["type"] in ("numeric", "categorical")]
ex = ok_rounds[4]["metrics"]["explanation"]
fvtest.check([c["name"] for c in ex["columns"]] == spec1_cols
             and all(0 <= c["mean_abs"] < 1e9 for c in ex["columns"]) and ex["rows"] > 0
             and ok_rounds[4].get("model_out") is None, f"explain round: {ok_rounds[4]}")
sha = {b: hashlib.sha256(open(f"{tmp}/banks/{b}.csv", "rb").read()).hexdigest() for b in BANKS}
rows = {b: sum(1 for _ in csv.reader(open(f"{tmp}/banks/{b}.csv"))) - 1 for b in BANKS}
fp = {a["name"]: a for a in show["agents"]}
for b in BANKS:
    want = rows[b] if b in DISCLOSE else 0
    fvtest.check(fp[b]["data_sha256"] == sha[b] and fp[b]["rows"] == want,
                 f"{b}: fingerprint {fp[b]}, expected {sha[b]} / {want} rows")
_, out, _ = admin(["job", "show", job1])
fvtest.check("lc-admin-1" in out and "done" in out, f"job show table: {out[:800]}")
top = max(ex["columns"], key=lambda c: c["mean_abs"])
fvtest.check(f"explanation ({ex['rows']} rows" in out and top["name"] in out,
             f"job show's explanation: {out[-1500:]}")
print(f"job {job1[:12]}: 5 rounds ok (the last an explanation, top column {top['name']}), "
      "fingerprints match the banks' CSV files")

# Model versions and lineage.
models = admin_json(["model", "list"])["models"]
glob = [m for m in models if m["kind"] == "global"]
final = [m for m in models if m["kind"] == "final"]
fvtest.check(len(glob) == 4 and len(final) == 1, f"model list: {models}")
fvtest.check(show["final_version"] == final[0]["version"], f"final_version {show}")
ms = admin_json(["model", "show", str(glob[-1]["version"])])
lin = ms["lineage"]
fvtest.check(lin["parent"] == glob[-2]["version"] and lin["job"] == job1,
             f"lineage parent/job: {lin}")
fvtest.check([r["round"] for r in lin["rounds"]] == [0, 1, 2, 3] and
             all(sorted(r["cohort"]) == BANKS for r in lin["rounds"]), f"lineage rounds: {lin}")
fvtest.check({a["name"]: a["data_sha256"] for a in lin["agents"]} == sha,
             f"lineage agents: {lin['agents']}")
fvtest.check(lin["hyperparameters"]["model"] == "mlp:16" and "fedvault" in lin["producer"],
             f"lineage hyperparameters/producer: {lin}")
fvtest.check("privacy" in lin and lin["privacy"] is None, f"lineage privacy (none): {lin}")
_, out, _ = admin(["model", "show", str(final[0]["version"])])
fvtest.check("lineage" in out.lower(), f"model show table: {out[:600]}")
exp = f"{tmp}/exported.fvm"
admin(["model", "export", str(final[0]["version"]), "--out", exp])
got = hashlib.sha256(open(exp, "rb").read()).hexdigest()
fvtest.check(got == final[0]["sha256"], f"exported {got}, listed {final[0]['sha256']}")
ev = fvtest.run_json(["eval", "--model", exp, "--data", f"{tmp}/test.csv"])
fvtest.check(0 <= ev["roc_auc"] <= 1, f"the exported model scores {ev}")
# --data - reads standard input, as a file would be read
_, out, _ = fvtest.run(["eval", "--model", exp, "--data", "-", "--json"], expect=0,
                       stdin=open(f"{tmp}/test.csv").read())
fvtest.check(json.loads(out)["roc_auc"] == ev["roc_auc"]
             and json.loads(out)["data"] == "standard input", f"eval --data -: {out}")
_, out, _ = fvtest.run(["eval", "--model", exp, "--data", "-"], expect=0,
                       stdin=open(f"{tmp}/test.csv").read())
fvtest.check("standard input (" in out and "/proc/" not in out, f"eval --data - text: {out}")
_, _, err = fvtest.run(["eval", "--model", exp, "--data", "-"], expect=1, stdin="a,b\n1\n")
fvtest.check("standard input:" in err and "/proc/" not in err, f"eval --data - error: {err}")
print(f"models: {len(glob)} global + 1 final; exported v{final[0]['version']} "
      f"(sha256 {got[:16]}) scores test ROC AUC {ev['roc_auc']:.4f}")

# Abort a running job; duplicates and unknown ids are refused.
# (job 2's spec file has // comments and a schema path that --schema replaces)
s2 = fvfed.job_spec(name="lc-admin-2", rounds=50, local_epochs=3, seed=7)
# with differential privacy (job show, text and --json, shows the spec's section)
s2["privacy"] = {"mode": "local", "noise_multiplier": 1.1, "delta": 1e-5,
                 "outside_budget": ["stats", "metrics"]}
schema2 = write(f"{tmp}/schema2.json", s2.pop("schema"))
spec2 = f"{tmp}/job2.json"
with open(spec2, "w") as f:
    f.write("// job 2, schema from --schema\n" + json.dumps(dict(s2, schema="none.json"), indent=1))
admin(["job", "submit", spec2, "--schema", schema2])
job2 = [j for j in admin_json(["job", "list"])["jobs"] if j["name"] == "lc-admin-2"][0]["id"]
wait(lambda: (admin_json(["job", "show", job2]).get("live") or {}).get("round", 0) >= 1,
     "job 2 training")
_, out, _ = admin(["status"])
fvtest.check(job2 in out, f"status does not show job 2's whole id {job2}: {out}")
_, out, _ = admin(["job", "abort", job2])
j2 = admin_json(["job", "show", job2])
fvtest.check(j2["status"] == "aborted" and "ops-1" in (j2.get("why") or ""), f"aborted: {j2}")
fvtest.check(j2.get("privacy") == {"mode": "local", "epsilon": None, "noise_multiplier": 1.1,
                                   "delta": 1e-5, "clip": 1.0, "sample_rate": None,
                                   "min_honest": None, "outside_budget": ["stats", "metrics"]},
             f"job show --json's privacy: {j2.get('privacy')}")
fvtest.check(admin_json(["job", "show", job1]).get("privacy", 0) is None,
             "job show --json: a job without privacy shows privacy null")
_, out, _ = admin(["job", "show", job2])
fvtest.check("\nprivacy:\n  mode              local\n  noise_multiplier  1.1\n" in out and
             "outside_budget    stats, metrics\n" in out and
             "sample_rate       batch_size / each agent's training rows" in out,
             f"job show's privacy: {out[:1500]}")
code, _, werr = admin(["job", "watch", job2], expect=1)
code, _, err = admin(["job", "submit", spec1], expect=1)
fvtest.check("already exists" in err, f"duplicate submit: {err}")
code, _, err = admin(["job", "show", "deadbeef"], expect=1)
fvtest.check("no job" in err, f"unknown job: {err}")
code, _, err = admin(["job", "abort", job1], expect=1)
fvtest.check("done" in err, f"abort of a finished job: {err}")
code, _, err = admin(["model", "show", "9999"], expect=1)
print("abort, duplicate submit, unknown ids: refused as expected")

crl = admin_json(["crl", "reload"])
fvtest.check(crl["revoked"] == 0, f"crl reload: {crl}")

# Refusals: an agent's certificate on the admin port, a wrong address.
code, out, err = fvtest.run(["status", "--config", f"{tmp}/fed/bank-west/agent.json",
                             "--admin", f"127.0.0.1:{admin_port}"])
fvtest.check(code == 3, f"agent certificate on the admin port: exit {code}\n{out}{err}")
print(f"agent certificate on the admin port: exit 3: {err.strip()[:200]}")
code, _, err = fvtest.run(["status", "--config", ADMIN_CFG, "--admin",
                           f"127.0.0.1:{fvtest.free_port()}", "--timeout", "5"])
fvtest.check(code == 3, f"wrong admin address: exit {code} {err}")

# A flood of plain-TCP connections to the agent port: each is refused and counted; the
# audit log takes at most 30 refusal records a minute (the rest are summed up later).
FLOOD = 100
for _ in range(FLOOD):
    with socket.create_connection(("127.0.0.1", port), timeout=10 * S) as sk:
        sk.sendall(b"GET / HTTP/1.0\r\n\r\n")
        try:
            sk.recv(100)
        except OSError:
            pass


# Metrics.
def scrape():
    global text
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                  timeout=10).read().decode()
    return text


def metric(name):
    vals = [float(l.split()[-1]) for l in text.splitlines()
            if l.startswith(name) and not l.startswith("#")]
    return sum(vals) if vals else None


wait(lambda: scrape() and (metric('fedvault_refusals_total{reason="FV_EPROTO"}') or 0) >= FLOOD,
     f"{FLOOD} refusals counted")

wait(lambda: scrape() and metric("fedvault_agents_connected") == 5, "metrics")
fvtest.check(metric("fedvault_rounds_completed_total") >= 4, "rounds_completed")
fvtest.check(metric("fedvault_agent_bytes_received_total") > 0 and
             metric("fedvault_agent_bytes_sent_total") > 0, "bytes in/out")
fvtest.check(metric('fedvault_refusals_total{reason="FV_EAUTH"}') >= 1,
             f"refusals: {[l for l in text.splitlines() if 'refusal' in l]}")
fvtest.check(metric("fedvault_phase_duration_seconds_count") > 0, "phase durations")
print("metrics: " + ", ".join(l for l in text.splitlines()
                              if l.startswith(("fedvault_rounds", "fedvault_agents",
                                               "fedvault_refusals"))))

# Stop the daemon, then its audit log.
coord.send_signal(signal.SIGTERM)
try:
    coord.wait(timeout=60 * S)
except subprocess.TimeoutExpired:
    coord.kill()
    fvtest.fail("the coordinator did not stop on SIGTERM")
fvtest.check(coord.returncode == 0, f"coordinator exit {coord.returncode} on SIGTERM")
for p in agents.values():
    p.send_signal(signal.SIGTERM)
for b, p in agents.items():
    p.wait(timeout=60 * S)

log, head = f"{state}/audit.log", f"{state}/audit.log.head"
cert = f"{tmp}/fed/coordinator/cert.pem"
fvtest.run(["audit", "verify", "--log", log, "--head", head, "--cert", cert], expect=0)
recs = [json.loads(l) for l in open(log)]
events = [r["event"] for r in recs]
for e in ("coordinator.started", "agent.connected", "agent.accepted_job", "job.submitted",
          "job.started", "round.completed", "model.stored", "job.finished", "model.exported",
          "admin.status", "admin.agents.list", "admin.job.submit", "admin.job.list",
          "admin.job.show", "admin.job.abort", "admin.model.list", "admin.model.show",
          "admin.model.read", "admin.crl.reload", "config.crl_reloaded", "job.aborted",
          "admin.refused", "coordinator.stopped"):
    fvtest.check(e in events, f"no {e} record in the audit log: {sorted(set(events))}")
refused = [r for r in recs if r["event"] in ("agent.refused", "admin.refused")]
# The coordinator's windows (coord_audit_refusal) take at most 30 records each and last
# at least 60 s, opened by its clock, not by a refusal: any 60 s hold at most two of them,
# so at most 60 records, whatever the run's speed (under valgrind the refusals spread).
# The flood's FLOOD + 1 refusals (the agent certificate on the admin port too) cannot all
# be recorded.
ts = sorted(datetime.datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).timestamp()
            for r in refused)
busiest = max((sum(1 for u in ts if t <= u < t + 60) for t in ts), default=0)
fvtest.check(refused and busiest <= 60 and len(refused) <= FLOOD,
             f"{len(refused)} refusal records of {FLOOD + 1}, {busiest} within 60 s (at most "
             f"30 a minute)")
adm = [r for r in recs if r["event"].startswith("admin.") and r["event"] != "admin.refused"]
fvtest.check(all(r["actor"] == "admin:ops-1" for r in adm),
             f"admin records' actors: {set(r['actor'] for r in adm)}")
sub = [r for r in recs if r["event"] == "job.submitted"]
fvtest.check(all(r["actor"] == "admin:ops-1" for r in sub), f"job.submitted actor: {sub}")
_, out, _ = fvtest.run(["audit", "show", "--log", log, "--actor", "admin:ops-1", "--event",
                        "admin.job.abort", "--json"], expect=0)
shown = json.loads(out)["records"]
fvtest.check(len(shown) >= 1 and all(r["event"] == "admin.job.abort" for r in shown),
             f"audit show --actor --event: {out[:500]}")
_, out, _ = fvtest.run(["audit", "show", "--log", log, "--job", job1, "--event",
                        "round.completed", "--json"], expect=0)
# (stats, 3 training rounds, the explanation)
fvtest.check(len(json.loads(out)["records"]) == 5, f"audit show --job: {out[:500]}")
_, out, _ = fvtest.run(["audit", "export", "--log", log, "--format", "csv", "--job", job1],
                      expect=0)
rows_csv = list(csv.reader(out.splitlines()))
fvtest.check(len(rows_csv) > 5 and "event" in rows_csv[0] and
             all(job1 in ",".join(r) for r in rows_csv[1:]), f"audit export csv: {out[:400]}")
lines = open(log, "rb").read().splitlines(keepends=True)
bad = bytearray(lines[9])
bad[bad.index(b'"event"') + 10] ^= 0x01
with open(f"{tmp}/tampered.log", "wb") as f:
    f.write(b"".join(lines[:9] + [bytes(bad)] + lines[10:]))
code, out, err = fvtest.run(["audit", "verify", "--log", f"{tmp}/tampered.log", "--cert", cert])
fvtest.check(code == 1 and "record 10" in out + err, f"tampered copy: exit {code} {out}{err}")
print(f"audit log: {len(recs)} records verify; a flipped byte in record 10 is caught")

# The README's check of an agent's round receipt, with openssl (and jq to extract fields).
readme = open(os.path.join(SRC, "README.md")).read()
sec = re.search(r"## Checking an audit record with openssl\n(.*?)(?=\n## |\Z)", readme, re.S)
blocks = re.findall(r"```sh\n(.*?)```", sec.group(1), re.S) if sec else []
fvtest.check(len(blocks) >= 3 and "receipt" in blocks[2], "README: no receipt check block")
work = f"{tmp}/readme-receipt"
os.makedirs(f"{work}/audit")
shutil.copy(f"{tmp}/fed/bank-west/audit/agent-audit.log", f"{work}/audit/agent-audit.log")
shutil.copy(cert, f"{work}/coordinator-cert.pem")
p = subprocess.run(["bash", "-euo", "pipefail", "-c", blocks[2]], cwd=work,
                   capture_output=True, text=True, timeout=60)
fvtest.check(p.returncode == 0 and "Signature Verified Successfully" in p.stdout,
             f"README receipt block: exit {p.returncode}\n{p.stdout}{p.stderr}")
# a receipt whose text was changed does not verify
lines = open(f"{work}/audit/agent-audit.log").read().splitlines(keepends=True)
i = next(k for k, l in enumerate(lines) if '"event":"round.receipt"' in l)
lines[i] = lines[i].replace('\\"status\\":\\"ok\\"', '\\"status\\":\\"OK\\"', 1)
open(f"{work}/audit/agent-audit.log", "w").write("".join(lines))
p = subprocess.run(["bash", "-euo", "pipefail", "-c", blocks[2]], cwd=work,
                   capture_output=True, text=True, timeout=60)
fvtest.check(p.returncode != 0 and "Signature Verified Successfully" not in p.stdout,
             f"README receipt block accepted a changed receipt:\n{p.stdout}{p.stderr}")
print("README: an agent's round receipt verifies with openssl; a changed one does not")
print("PASS")
