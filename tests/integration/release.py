"""Signed model releases reach the banks, and a bank installs only models it took part in.

argv: fedvault fedvault-coordinator fedvault-agent
A coordinator daemon (agent and admin ports) and four banks on an IID split of the
shipped Lending Club rows (fvfed.split_iid), plain jobs (secagg off, agents with
--require-secure-aggregation off: the smallest federation a job allows is 3 agents).
  1. job 1 with banks A, B, C (--once agents); its final model released as stable
     (`fedvault model release V --label stable`): the CLI prints release 1 and the file's
     SHA-256; the coordinator's audit log has model.released.
  2. A and B sync (`fedvault-agent --fetch-releases --model-dir DIR`): both exit 0 with
     DIR/<sha>.fvm (whose SHA-256 is the release's) and DIR/<sha>.release.json (naming
     the sha, label stable, release 1); their audit logs have release.installed.
  3. job 2 with banks A, C, D (B is not running): its final model released as canary.
     A syncs and installs it. B syncs and refuses it - a correctly signed manifest for a
     model B never took part in: the refusal is logged (release_refused naming the
     receipts), audited (release.refused with the sha and label) and nothing is written
     (no DIR/<sha2>.*); B still exits 0 (the sync is complete). B again with --pin of that
     sha installs it.
  4. `fedvault model releases --json` lists releases 1 and 2; a release of an unknown
     version is refused (exit 1) and a bad label is a usage error (exit 2).
  5. bank D played by hand (fvnet.WireAgent): RELEASE_SYNC {2, CRL} and both envelopes
     after HELLO; FETCH of a sha no release names gets FETCH_FAIL; FETCH of release 1
     gets FILE_CHUNKs in order whose bytes hash to its sha.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import fvfed
import fvnet
import fvtest

fedvault, coordinator, agent = sys.argv[1:4]
WRAPPER = fvfed.WRAPPER
S = fvfed.SLOW
tmp = fvtest.tmpdir()
BANKS = ["bank-a", "bank-b", "bank-c", "bank-d"]
A, B, C, D = BANKS

fvtest.run(["split", "--data", os.path.join(fvtest.DATA, "lending_club.csv"), "--target",
            "Class", "--positive", "bad", "--test-fraction", "0.25", "--seed", "0",
            "--train-out", f"{tmp}/train.csv", "--test-out", f"{tmp}/test.csv"], expect=0)
data = fvfed.split_iid(f"{tmp}/train.csv", f"{tmp}/banks", BANKS, "Class")
fvfed.provision(tmp, "rel-fed", BANKS)

port, admin_port = fvtest.free_port(), fvtest.free_port()
ADMIN = ["--config", f"{tmp}/fed/ops-1/admin.json", "--admin", f"127.0.0.1:{admin_port}",
         "--timeout", str(30 * S)]
clog = f"{tmp}/coordinator.log"
state = f"{tmp}/state"
coord = subprocess.Popen(
    WRAPPER + [coordinator, "--config", f"{tmp}/fed/coordinator/coordinator.json", "--state",
               state, "--listen", f"127.0.0.1:{port}", "--admin-listen",
               f"127.0.0.1:{admin_port}"],
    stdout=subprocess.DEVNULL, stderr=open(fvtest.show_on_fail(clog), "w"))


def admin(args, expect=0):
    return fvtest.run(list(args) + ADMIN, expect=expect)


def admin_json(args):
    _, out, _ = admin(list(args) + ["--json"])
    return json.loads(out)


def wait(pred, what, timeout=300):
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


def audit_events(path, event):
    """The details of every record `event` in a signed audit log (JSON lines)."""
    out = []
    for line in open(path):
        rec = json.loads(line)
        if rec.get("event") == event:
            out.append(rec.get("details") or {})
    return out


def audit_log(b):
    return f"{tmp}/{b}-audit.log"


def run_job(name, banks, model="mlp:16"):
    """A plain job on `banks` (--once agents) to its end; returns the final model's version
    and file SHA-256."""
    spec = f"{tmp}/{name}.json"
    # two rounds, patience 1: the final model is the best EVALUATED one, which no round
    # sent as its model_out under the same round label (with patience 0 the final model is
    # the last round's output, labelled with that round: the same bytes as its model_out)
    js = fvfed.job_spec(name=name, rounds=2, secagg="off", min_agents=3, model=model)
    js["early_stopping"] = {"metric": "roc_auc", "patience": 1}
    with open(spec, "w") as f:
        json.dump(js, f)
    procs = {b: subprocess.Popen(
        WRAPPER + [agent, "--config", f"{tmp}/fed/{b}/agent.json", "--data", data[b],
                   "--coordinator", f"127.0.0.1:{port}", "--once", "--audit-log", audit_log(b),
                   *fvfed.PLAIN_OK],
        stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/{b}.log", "a")) for b in banks}
    admin(["job", "submit", spec])
    job = [j for j in admin_json(["job", "list"])["jobs"] if j["name"] == name][0]["id"]
    code, _, werr = admin(["job", "watch", job, "--interval", "0.2"], expect=None)
    fvtest.check(code == 0, f"{name}: job watch exit {code}: {werr}")
    fvfed.wait_agents(procs, name)
    final = [m for m in admin_json(["model", "list"])["models"]
             if m["job"] == job and m["kind"] == "final"]
    fvtest.check(len(final) == 1, f"{name}: final versions {final}")
    return final[0]["version"], final[0]["sha256"], job


def sync(b, tag, extra=()):
    """fedvault-agent --fetch-releases for bank b into tmp/models-b; returns its log events."""
    mdir = f"{tmp}/models-{b}"
    os.makedirs(mdir, exist_ok=True)
    log = f"{tmp}/{b}-{tag}.log"
    p = subprocess.run(
        WRAPPER + [agent, "--config", f"{tmp}/fed/{b}/agent.json", "--coordinator",
                   f"127.0.0.1:{port}", "--fetch-releases", "--model-dir", mdir,
                   "--audit-log", audit_log(b), *extra],
        stdout=subprocess.DEVNULL, stderr=open(log, "w"), timeout=120 * S)
    evs = fvfed.events(log)
    fvtest.check(p.returncode == 0, f"{b} {tag}: exit {p.returncode}; last events "
                 + json.dumps(evs[-6:]))
    return mdir, evs


def check_installed(b, mdir, sha, label, release):
    path = f"{mdir}/{sha}.fvm"
    fvtest.check(os.path.exists(path), f"{b}: no {path}; dir has {os.listdir(mdir)}")
    got = hashlib.sha256(open(path, "rb").read()).hexdigest()
    fvtest.check(got == sha, f"{b}: {path} has sha256 {got}")
    env = json.load(open(f"{mdir}/{sha}.release.json"))
    man = json.loads(env["manifest"])
    fvtest.check(man["model_sha256"] == sha and man["label"] == label
                 and man["release"] == release and man["federation"] == "rel-fed",
                 f"{b}: envelope's manifest {man}")
    # the federation CRL the agent verified, handed to fedvault-serve beside the models
    crl = open(f"{mdir}/crl.pem").read() if os.path.exists(f"{mdir}/crl.pem") else ""
    fvtest.check(crl.startswith("-----BEGIN X509 CRL-----\n")
                 and crl.endswith("-----END X509 CRL-----\n"), f"{b}: crl.pem: {crl[:80]!r}")
    fvtest.check(crl == open(f"{tmp}/fed/ca/crl.pem").read(),
                 f"{b}: crl.pem is not the CA's CRL")
    inst = [r for r in audit_events(audit_log(b), "release.installed") if r.get("sha256") == sha]
    fvtest.check(inst and inst[-1].get("label") == label,
                 f"{b}: audit release.installed for {sha[:12]}: {inst}")


wait(lambda: fvtest.run(["status"] + ADMIN)[0] == 0, "the admin port")

# usage errors before anything exists
code, out, _ = fvtest.run(["model", "release", "--help"])
fvtest.check(code == 0 and "--label" in out, f"model release --help: {code}")
admin(["model", "release", "1"], expect=2)
admin(["model", "release", "1", "--label", "gold"], expect=2)
code, _, err = admin(["model", "release", "999", "--label", "stable"], expect=1)
fvtest.check("999" in err, f"release of an unknown version: {err}")

# 1. job 1 (A, B, C), released as stable
# (a model of about 750 KB: its FILE_CHUNKs pass the coordinator's low-water mark, so the
# transfer waits for the socket to drain at least once)
v1, sha1, job1 = run_job("rel-1", [A, B, C], model="mlp:384,384")
_, out, _ = admin(["model", "release", str(v1), "--label", "stable"])
fvtest.check(sha1 in out and "stable" in out, f"model release printed {out!r}")
rel = [r for r in audit_events(f"{state}/audit.log", "model.released")]
fvtest.check(len(rel) == 1 and rel[0]["sha256"] == sha1 and rel[0]["release"] == 1
             and rel[0]["label"] == "stable", f"coordinator audit model.released: {rel}")
print(f"job 1 final v{v1} {sha1[:12]} released as stable (release 1)")
# final.fvm's bytes are its own (the best evaluated model, its metadata naming the round
# that evaluated it): only the job's receipt
# (kind "job", before JOB_DONE) names its sha, and each member kept it
for b in (A, B, C):
    bodies = [json.loads(r["receipt"]) for r in audit_events(audit_log(b), "round.receipt")]
    jr = [x for x in bodies if x.get("kind") == "job" and x.get("job") == job1]
    fvtest.check(len(jr) == 1 and jr[0]["final"] == sha1 and jr[0]["status"] == "done",
                 f"{b}: job receipts {jr}")
    fvtest.check(not any(x.get("model_out") == sha1 for x in bodies),
                 f"{b}: a round receipt names the final file (the job receipt would be moot)")

# 2. A and B install it
for b in (A, B):
    mdir, evs = sync(b, "sync1")
    check_installed(b, mdir, sha1, "stable", 1)
print("A and B installed release 1")

# 3. job 2 (A, C, D: B not there), released as canary
v2, sha2, job2 = run_job("rel-2", [A, C, D])
fvtest.check(sha2 != sha1, "job 2's final model is job 1's")
admin(["model", "release", str(v2), "--label", "canary"])
mdir, evs = sync(A, "sync2")
check_installed(A, mdir, sha2, "canary", 2)
mdir, evs = sync(B, "sync2")
refused = [e for e in evs if e.get("event") == "release_refused"]
fvtest.check(len(refused) == 1 and refused[0].get("sha256") == sha2
             and "receipts" in refused[0].get("why", ""), f"B's refusal: {refused}")
fvtest.check(not any(f.startswith(sha2) for f in os.listdir(mdir)),
             f"B wrote the refused model: {os.listdir(mdir)}")
ar = [r for r in audit_events(audit_log(B), "release.refused") if r.get("sha256") == sha2]
fvtest.check(len(ar) == 1 and ar[0].get("label") == "canary" and "receipts" in ar[0]["why"],
             f"B's audit release.refused: {ar}")
fvtest.check(any(e.get("event") == "release_present" for e in evs),
             "B's stable release was not recognised as present")
print(f"B refused release 2 ({sha2[:12]}): {refused[0]['why']}")
mdir, evs = sync(B, "sync3", extra=["--pin", sha2])
check_installed(B, mdir, sha2, "canary", 2)
print("B installed release 2 with --pin")

# 4. the list
rl = admin_json(["model", "releases"])["releases"]
fvtest.check([(r["release"], r["label"], r["sha256"]) for r in rl]
             == [(1, "stable", sha1), (2, "canary", sha2)], f"model releases: {rl}")
_, out, _ = admin(["model", "releases"])
fvtest.check("canary" in out and sha2[:12] in out, f"model releases table: {out}")

# 5. the coordinator's side of FETCH, played by hand (fvnet.WireAgent as bank D): after
# HELLO, RELEASE_SYNC {n: 2, the CRL} and the two envelopes; FETCH of a sha no release
# names is FETCH_FAIL; FETCH of a released one is FILE_CHUNKs in order that make the file.
w = fvnet.WireAgent(f"{tmp}/fed/{D}", port, "release test")
w.connect()


def next_msg(what):
    deadline = time.time() + 30 * S
    while time.time() < deadline:
        m = w.recv()
        if m is not None and m["type"] not in (fvnet.JOB_DONE, fvnet.RECEIPT):
            return m
    fvtest.fail(f"hand-played agent: no {what}")


m = next_msg("RELEASE_SYNC")
fvtest.check(m["type"] == fvnet.RELEASE_SYNC and m["n"] == 2 and len(m["crl"]) > 0,
             f"after HELLO: {m}")
envs = [json.loads(json.loads(next_msg("RELEASE")["body"])["manifest"]) for _ in range(2)]
fvtest.check(sorted(e["model_sha256"] for e in envs) == sorted([sha1, sha2]),
             f"the RELEASEs after HELLO: {envs}")
w.send({"type": fvnet.FETCH, "sha256": bytes(32)})
m = next_msg("FETCH_FAIL")
fvtest.check(m["type"] == fvnet.FETCH_FAIL and "not a released model" in m["reason"],
             f"FETCH of an unreleased sha: {m}")
w.send({"type": fvnet.FETCH, "sha256": bytes.fromhex(sha1)})
got = b""
while True:
    m = next_msg("FILE_CHUNK")
    fvtest.check(m["type"] == fvnet.FILE_CHUNK and m["sha256"] == bytes.fromhex(sha1)
                 and m["offset"] == len(got), f"FILE_CHUNK at {len(got)}: {m.get('offset')}")
    got += m["data"]
    if len(got) == m["total"]:
        break
fvtest.check(hashlib.sha256(got).hexdigest() == sha1 and len(got) > 512 << 10,
             f"the fetched file: {len(got)} bytes, sha256 {hashlib.sha256(got).hexdigest()}")
w.close()
print(f"FETCH served {len(got)} bytes in order; an unreleased sha refused")

coord.send_signal(signal.SIGTERM)
fvtest.check(coord.wait(timeout=60 * S) == 0, f"coordinator exit {coord.returncode}")
print("release: ok")
