"""`fedvault-agent` command line and configuration, as real processes.

argv[1] is `fedvault` (to provision a federation), argv[2] is `fedvault-agent`.
--help exits 0; usage errors exit 2 and say what was wrong; configuration failures
(missing or malformed config, a coordinator's kit, an unknown key, a data file that does
not exist) exit 1 with one JSON line on stderr (event startup_failed) whose "why" names
the file. An agent started against a closed port keeps retrying and stops cleanly on
SIGTERM (exit 0, event "stopped"; uv_loop_close succeeded). Every line the daemon writes
to stderr is a JSON object with ts, level and event.

A scripted coordinator (Python TLS server with the coordinator's kit, speaking the wire
format by hand through fvnet.py) then drives the agent's refusals and its defence:
  - JOB_OFFER whose id is not the spec's digest: JOB_REFUSE, logged (job_id_mismatch
    gives the canonical id);
  - the same spec under its canonical id, against a data file of another schema
    (german_credit.csv for the Lending Club job): JOB_REFUSE, and a job_refused line
    whose reason is the dataset's diagnostic naming the file and the column;
  - a vector before any job was accepted: logged as a violation, the connection is
    closed with an ERROR, and the agent reconnects by itself.
With the Lending Club data (a SecAgg job; the offers carry the federation's CRL) the agent
accepts (JOB_ACCEPT, rows); a "model" vector of the wrong size is a violation (closed,
reconnected), and so are, for the job's distill phase, a distill round numbered like a
training round (its cohort certified), a "teacher" vector of the wrong size and a
"student" vector with a training round's id; after each reconnect the re-offered job is
accepted again from what the agent holds. A ROUND_START whose cohort does not verify
(pks not the certificates' keys, the coordinator's certificate as a member, no
certificates) makes the agent refuse the whole job (JOB_REFUSE with the rule, the member
and its name; cohort_refused), and round messages for that job are then stale.
Differential privacy: policy.privacy's config errors, --privacy-ledger [--json] (empty,
corrupt), and with epsilon_max 3.5 a job of epsilon 3 charged once (privacy_spent; a
re-offer is not charged again) and a second one refused (category policy, the budget
sentence), the ledger holding the one entry afterwards.
"""
import json
import os
import queue
import shlex
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

import fvnet

from fvtest import DATA, SRC, check, fail, free_port, run, tmpdir

AGENT = sys.argv[2]
WRAPPER = shlex.split(os.environ.get("FV_TEST_WRAPPER", ""))
SLOW = 20 if WRAPPER else 1


def agent(args, timeout=120):
    p = subprocess.run(WRAPPER + [AGENT] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout * SLOW)
    return p.returncode, p.stdout, p.stderr


def json_lines(err, what):
    out = []
    for line in err.splitlines():
        if not line.strip():
            continue
        try:
            o = json.loads(line)
        except json.JSONDecodeError:
            fail(f"{what}: stderr line is not JSON: {line!r}\n--- stderr\n{err}")
        for k in ("ts", "level", "event"):
            check(k in o, f"{what}: log line without '{k}': {line}")
        out.append(o)
    return out


def expect_usage(args, needle):
    code, out, err = agent(args)
    check(code == 2, f"{args}: exit {code}, expected 2\n{err}")
    check(needle in err, f"{args}: stderr should mention {needle!r}:\n{err}")
    check("--help" in err, f"{args}: stderr should point at --help:\n{err}")


def expect_fail(args, needle):
    code, out, err = agent(args)
    check(code == 1, f"{args}: exit {code}, expected 1\n{err}")
    lines = json_lines(err, str(args))
    check(lines and lines[-1]["event"] == "startup_failed",
          f"{args}: last log line should be startup_failed:\n{err}")
    check(needle in lines[-1].get("why", ""),
          f"{args}: 'why' should mention {needle!r}: {lines[-1]}")
    return lines[-1]


def write_config(path, cfg):
    with open(path, "w") as f:
        json.dump(cfg, f)



# ---- --help and usage errors -----------------------------------------------------------
code, out, err = agent(["--help"])
check(code == 0, f"--help: exit {code}\n{err}")
check(out.startswith("Usage: fedvault-agent") and "--config" in out and "--once" in out,
      f"--help output:\n{out}")
check(err == "", f"--help wrote to stderr:\n{err}")

expect_usage([], "--config")
expect_usage(["--config"], "needs a value")
expect_usage(["--bogus"], "unknown option")
expect_usage(["--config", "x.json", "extra"], "unexpected argument")
expect_usage(["--config", "x.json", "--threads", "0"], "--threads")
expect_usage(["--config", "x.json", "--min-cohort", "-3"], "--min-cohort")
expect_usage(["--config", "x.json", "--min-threshold", "lots"], "--min-threshold")
expect_usage(["--config", "x.json", "--coordinator", "nohost"], "--coordinator")
expect_usage(["--config", "x.json", "--coordinator", "h:99999"], "--coordinator")
expect_usage(["--config", "x.json", "--require-secure-aggregation", "maybe"],
             "--require-secure-aggregation")
expect_usage(["--config", "x.json", "--disclose-rows", "1"], "--disclose-rows")
check("--require-secure-aggregation" in out and "--disclose-rows" in out,
      f"--help should list the disclosure policy flags:\n{out}")

# ---- configuration failures --------------------------------------------------------------
root = tmpdir()
try:
    fed = os.path.join(root, "fed")
    run(["provision", "--federation", "acme", "--coordinator", "127.0.0.1:7000",
         "--agents", "bank-a,bank-b,bank-c,bank-d,bank-e", "--admins", "ops-1", "--out", fed],
        expect=0)
    kit = os.path.join(fed, "bank-a")
    cfg_path = os.path.join(kit, "agent.json")
    base = json.load(open(cfg_path))
    check(base["role"] == "agent" and base["name"] == "bank-a", f"kit config: {base}")

    expect_fail(["--config", os.path.join(root, "nope.json")], "nope.json")

    bad = os.path.join(root, "bad.json")
    with open(bad, "w") as f:
        f.write("{\"federation\": ")
    expect_fail(["--config", bad], "bad.json")

    # The kit's config has no data file: a usage error naming the config.
    expect_usage(["--config", cfg_path], "data")

    # A data file that does not exist (relative to the config's directory): exit 1,
    # naming the resolved path.
    cfg = dict(base, data="no-such-data.csv")
    write_config(cfg_path, cfg)
    e = expect_fail(["--config", cfg_path], os.path.join(kit, "no-such-data.csv"))
    check("No such file" in e["why"], f"why should say the file is missing: {e}")
    # --data overrides the config, relative to the working directory.
    expect_fail(["--config", cfg_path, "--data", os.path.join(root, "gone.csv")], "gone.csv")

    data = os.path.join(kit, "bank.csv")
    shutil.copy(os.path.join(DATA, "german_credit.csv"), data)
    write_config(cfg_path, dict(base, data="bank.csv", extra_key=1))
    expect_fail(["--config", cfg_path], "extra_key")
    write_config(cfg_path, dict(base, data="bank.csv", policy={"min_cohort": "three"}))
    expect_fail(["--config", cfg_path], "min_cohort")
    write_config(cfg_path, dict(base, data="bank.csv", policy={"accept_jobs": "x"}))
    expect_fail(["--config", cfg_path], "accept_jobs")
    write_config(cfg_path, dict(base, data="bank.csv",
                                policy={"require_secure_aggregation": "no"}))
    expect_fail(["--config", cfg_path], "require_secure_aggregation")
    write_config(cfg_path, dict(base, data="bank.csv", policy={"disclose_rows": 1}))
    expect_fail(["--config", cfg_path], "disclose_rows")
    write_config(cfg_path, dict(base, data="bank.csv", role="admin"))
    expect_fail(["--config", cfg_path], "not an agent")
    # A config whose name is not the certificate's.
    write_config(cfg_path, dict(base, data="bank.csv", name="bank-z"))
    expect_fail(["--config", cfg_path], "bank-z")
    # A missing key file.
    write_config(cfg_path, dict(base, data="bank.csv", key="missing-key.pem"))
    expect_fail(["--config", cfg_path], "missing-key.pem")

    # policy.privacy and the privacy ledger (agent/agent_privacy.c)
    for bad_priv, needle in (({"epsilon_max": 0}, "policy.privacy.epsilon_max"),
                             ({"delta": 0.5}, "policy.privacy.delta"),
                             ({"required": "yes"}, "policy.privacy.required"),
                             ({"allow_outside_budget": ["labels"]},
                              "policy.privacy.allow_outside_budget[0]"),
                             ({"budget": 1}, "policy.privacy.budget")):
        write_config(cfg_path, dict(base, data="bank.csv", policy={"privacy": bad_priv}))
        expect_fail(["--config", cfg_path], needle)
    write_config(cfg_path, dict(base, data="bank.csv", privacy_ledger="ledger/x.jsonl",
                                policy={"privacy": {"epsilon_max": 10}}))
    code, out, err = agent(["--config", cfg_path, "--privacy-ledger"])
    check(code == 0 and os.path.join(kit, "ledger", "x.jsonl") in out and
          "epsilon_max 10.00" in out and "no spends recorded" in out,
          f"--privacy-ledger (none yet): exit {code}\n{out}{err}")
    code, out, err = agent(["--config", cfg_path, "--privacy-ledger", "--json"])
    check(code == 0 and json.loads(out) == {"entries": [], "totals": []},
          f"--privacy-ledger --json: exit {code}\n{out}{err}")
    os.makedirs(os.path.join(kit, "ledger"))
    with open(os.path.join(kit, "ledger", "x.jsonl"), "w") as f:
        f.write("{\"job\": 1}\n")
    code, out, err = agent(["--config", cfg_path, "--privacy-ledger"])
    check(code == 1 and "x.jsonl:1: job is missing or out of range" in err,
          f"--privacy-ledger (corrupt): exit {code}\n{out}{err}")
    expect_usage(["--config", cfg_path, "--json"], "--json goes with --privacy-ledger")

    # Port 0 in the config (provisioned before the coordinator's port was known): the
    # command line must give the address.
    write_config(cfg_path, dict(base, data="bank.csv", coordinator="127.0.0.1:0"))
    expect_usage(["--config", cfg_path], "port 0")

    # ---- a well-formed agent with no coordinator: retries, stops on SIGTERM -------------
    write_config(cfg_path, dict(base, data="bank.csv", coordinator="127.0.0.1:0",
                                policy={"accept_jobs": ["credit"], "min_cohort": 3,
                                        "min_threshold": 2}))
    port = free_port()
    p = subprocess.Popen(WRAPPER + [AGENT, "--config", cfg_path, "--coordinator",
                                    f"127.0.0.1:{port}", "--once", "--accept-jobs",
                                    "credit,fraud", "--min-cohort", "4"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = p.stderr.readline()
    try:
        started = json.loads(first)
    except json.JSONDecodeError:
        p.kill()
        fail(f"first stderr line is not JSON: {first!r}")
    check(started["event"] == "starting" and started["name"] == "bank-a" and
          started["port"] == port and started["min_cohort"] == 4 and
          started["min_threshold"] == 2 and started["once"] is True,
          f"starting event: {started}")
    time.sleep(1.5)  # a few refused connection attempts
    check(p.poll() is None, "the agent exited while the coordinator was unreachable")
    p.send_signal(signal.SIGTERM)
    try:
        out, err = p.communicate(timeout=30 * SLOW)
    except subprocess.TimeoutExpired:
        p.kill()
        fail("the agent did not stop on SIGTERM")
    check(p.returncode == 0, f"SIGTERM: exit {p.returncode}\n{err}")
    lines = json_lines(err, "agent run")
    check(lines[-1]["event"] == "stopped" and lines[-1]["exit"] == 0,
          f"last event should be 'stopped': {lines[-1:]}")
    check(out == "", f"the daemon wrote to stdout: {out!r}")

    # ---- a scripted coordinator ---------------------------------------------------------
    write_config(cfg_path, dict(base, data="bank.csv", coordinator="127.0.0.1:0"))
    # (bank.csv is german_credit.csv)
    coord_kit = os.path.join(fed, "coordinator")
    sctx, lsock, port = fvnet.coordinator_listener(coord_kit, 30 * SLOW)

    p = subprocess.Popen(WRAPPER + [AGENT, "--config", cfg_path, "--coordinator",
                                    f"127.0.0.1:{port}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events, log = queue.Queue(), []

    def reader():
        for line in p.stderr:
            log.append(line)
            try:
                events.put(json.loads(line))
            except json.JSONDecodeError:
                events.put({"event": "junk", "line": line})

    threading.Thread(target=reader, daemon=True).start()

    def wait_event(name, timeout=30):
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            try:
                ev = events.get(timeout=0.2)
            except queue.Empty:
                continue
            check(ev["event"] != "junk", f"agent log line is not JSON: {ev}")
            if ev["event"] == name:
                return ev
        p.kill()
        fail(f"no '{name}' event from the agent; log:\n" + "".join(log))

    def accept():
        raw, _ = lsock.accept()
        s = sctx.wrap_socket(raw, server_side=True)
        s.sendall(fvnet.hello())
        return s

    pending = {}  # socket -> bytes read past the last frame returned

    def wait_frame(s, msg_type, timeout=30):
        """Reads frames until one of msg_type arrives; returns its body."""
        s.settimeout(0.2)
        buf = pending.pop(s, b"")
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
                n = struct.unpack(">I", buf[:4])[0]
                body, buf = buf[4:4 + n], buf[4 + n:]
                if b"\xa4type" + bytes([msg_type]) in body:
                    pending[s] = buf
                    return body
            try:
                b = s.recv(65536)
            except socket.timeout:
                continue
            except (OSError, ssl.SSLError):
                break
            if not b:
                break
            buf += b
        fail(f"no message of type {msg_type} from the agent")

    def stop_agent():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30 * SLOW)
        except subprocess.TimeoutExpired:
            p.kill()
            fail("the agent did not stop on SIGTERM")

    # the federation's CRL, relayed in JOB_OFFER as the coordinator does (the agent kit
    # holds none: without it a SecAgg job is refused, crl_missing)
    crl_der = fvnet.pem_der(os.path.join(fed, "ca", "crl.pem"))

    def offer(s, job_id, spec):
        s.sendall(fvnet.frame(fvnet.mp({"v": 1, "type": 12, "job": job_id, "spec": spec,
                                        "crl": crl_der})))

    # a certified cohort of 5 with bank-a at index 1 (ROUND_START "certs" and "pks")
    cohort = ["bank-b", "bank-a", "bank-c", "bank-d", "bank-e"]
    ders = [fvnet.pem_der(os.path.join(fed, n, "cert.pem")) for n in cohort]
    pks = b"".join(fvnet.cert_pk(d) for d in ders)
    coord_der = fvnet.pem_der(os.path.join(coord_kit, "cert.pem"))

    spec = open(os.path.join(SRC, "examples", "lending-club", "job.json"), "rb").read()
    try:
        c1 = accept()
        wait_event("connected")
        offer(c1, bytes(32), spec)
        mism = wait_event("job_id_mismatch")
        ev = wait_event("job_refused")
        check("canonical JSON" in ev["reason"], f"refusal reason: {ev}")
        wait_frame(c1, 14)
        offer(c1, bytes.fromhex(mism["canonical"]), spec)
        ev = wait_event("job_refused")
        check(ev["job"] == mism["canonical"] and ev["job_name"] == "lending-club" and
              "bank.csv" in ev["reason"] and "checking_status" in ev["reason"],
              f"the refusal should carry the dataset's diagnostic: {ev}")
        body = wait_frame(c1, 14)
        # The coordinator learns that the data does not fit (category schema), not the
        # local path, a header name the schema lacks or a cell of the file: those stay in
        # the bank's own log (agent/agent_refuse.c).
        check(b"the data file has a column the job's schema lacks" in body
              and b"\xa8category\xa6schema" in body and b"bank.csv" not in body
              and b"checking_status" not in body,
              f"JOB_REFUSE reason on the wire: {body!r}")
        check(ev.get("category") == "schema", f"the agent's log names the category: {ev}")
        # A vector before any job: a violation, the connection closes, the agent returns.
        c1.sendall(fvnet.frame(fvnet.mp({"v": 1, "type": 8, "id": 0, "dtype": 1, "n": 10,
                                         "chunk": 10, "name": "model"})))
        ev = wait_event("violation")
        check("before any job" in ev["why"], f"violation: {ev}")
        wait_frame(c1, 2)  # ERROR
        ev = wait_event("disconnected")
        check(ev["reconnecting"] is True, f"disconnected: {ev}")
        c2 = accept()
        wait_event("connected")
        c1.close()
        c2.close()
    finally:
        stop_agent()
    check(p.returncode == 0, f"agent exit {p.returncode}:\n" + "".join(log))

    # ---- an agent whose data fits the job ---------------------------------------------
    p = subprocess.Popen(WRAPPER + [AGENT, "--config", cfg_path, "--coordinator",
                                    f"127.0.0.1:{port}", "--data",
                                    os.path.join(DATA, "lending_club.csv")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events, log = queue.Queue(), []
    threading.Thread(target=reader, daemon=True).start()
    job_id = bytes.fromhex(mism["canonical"])
    try:
        c1 = accept()
        offer(c1, job_id, spec)
        ev = wait_event("job_accepted")
        check(ev["rows"] == 9857 and ev["model"] == "mlp:128,64" and "global_sha256" not in ev and ev["secagg"] is True,
              f"job_accepted: {ev}")
        wait_frame(c1, 13)
        c1.sendall(fvnet.frame(fvnet.mp({"v": 1, "type": 8, "id": 1, "dtype": 1, "n": 5,
                                         "chunk": 5, "name": "model"})))
        ev = wait_event("violation")
        check("vector 'model'" in ev["why"], f"violation: {ev}")
        wait_frame(c1, 2)
        c2 = accept()
        offer(c2, job_id, spec)
        ev = wait_event("job_accepted")  # the same job again: nothing reloaded
        check(ev["rows"] == 9857, f"re-accepted: {ev}")
        wait_frame(c2, 13)
        rs = {"v": 1, "type": 15, "job": job_id, "round": 0, "kind": 1, "index": 1, "n": 5,
              "t": 4, "k": 4, "gseed": bytes(32), "pks": pks, "model": b"",
              "nref": 0, "certs": fvnet.certs_field(ders)}
        # The job distills after its 20 training rounds (distill rounds 21..40): a distill
        # round numbered like a training round (its cohort certified: the round machine's
        # check), and a teacher of the wrong size, are violations.
        c2.sendall(fvnet.frame(fvnet.mp(dict(rs, round=5, kind=3))))
        ev = wait_event("violation")
        check("ROUND_START round 5 kind 3" in ev["why"], f"violation: {ev}")
        wait_frame(c2, 2)
        socks = [c1, c2]
        for bad, needle in (
                ({"v": 1, "type": 8, "id": 0, "dtype": 1, "n": 7, "chunk": 7,
                  "name": "teacher"}, "vector 'teacher': 7 elements"),
                ({"v": 1, "type": 8, "id": 3, "dtype": 1, "n": 100, "chunk": 100,
                  "name": "student"}, "vector 'student'")):
            c = accept()
            socks.append(c)
            offer(c, job_id, spec)
            wait_event("job_accepted")
            wait_frame(c, 13)
            c.sendall(fvnet.frame(fvnet.mp(bad)))
            ev = wait_event("violation")
            check(needle in ev["why"], f"violation (expected '{needle}'): {ev}")
            wait_frame(c, 2)
        c3 = accept()
        wait_event("connected")
        # The cohort of a SecAgg ROUND_START is the agent's to verify: a key list that is
        # not the certificates' keys, then the coordinator's own certificate as a member,
        # refuse the whole job (JOB_REFUSE naming the rule, the member and its name; no
        # violation, the session stays); a round message for the refused job is stale.
        for cohort_bad, rule, needle in (
                (dict(rs, pks=bytes(5 * 32)), "member_key_mismatch",
                 "member_key_mismatch: member 0 (bank-b): pks[0] is not the key"),
                (dict(rs, pks=fvnet.cert_pk(coord_der) + pks[32:],
                      certs=fvnet.certs_field([coord_der] + ders[1:])),
                 "member_is_coordinator", "member_is_coordinator: member 0 (coordinator)"),
                (dict(rs, certs=b""), "cohort_uncertified", "cohort_uncertified: ")):
            offer(c3, job_id, spec)
            wait_event("job_accepted")
            wait_frame(c3, 13)
            c3.sendall(fvnet.frame(fvnet.mp(cohort_bad)))
            ev = wait_event("cohort_refused")
            check(ev["rule"] == rule and ev["reason"].startswith(needle),
                  f"cohort_refused (expected {rule}): {ev}")
            body = wait_frame(c3, 14)
            check(needle.encode() in body, f"JOB_REFUSE frame: {body!r}")
            c3.sendall(fvnet.frame(fvnet.mp({"v": 1, "type": 17, "job": job_id, "round": 0})))
            ev = wait_event("stale_message")
            check("refused for its cohort" in ev.get("why", ""), f"stale: {ev}")
        for c in socks + [c3]:
            c.close()
    finally:
        stop_agent()
    check(p.returncode == 0, f"agent exit {p.returncode}:\n" + "".join(log))

    # ---- differential privacy: the budget at JOB_OFFER (agent_privacy.c) ---------------
    # epsilon_max 3.5: a job of epsilon 3 is charged (privacy_spent, before JOB_ACCEPT),
    # offered again it is not charged twice; a second job of epsilon 3 would pass 3.5.
    write_config(cfg_path, dict(base, data="bank.csv", coordinator="127.0.0.1:0",
                                policy={"privacy": {"epsilon_max": 3.5}}))
    p = subprocess.Popen(WRAPPER + [AGENT, "--config", cfg_path, "--coordinator",
                                    f"127.0.0.1:{port}", "--data",
                                    os.path.join(DATA, "lending_club.csv")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events, log = queue.Queue(), []
    threading.Thread(target=reader, daemon=True).start()
    priv = {"mode": "local", "epsilon": 3, "delta": 1e-5,
            "outside_budget": ["stats", "metrics", "explain"]}
    specs = []
    for name in ("dp-one", "dp-two"):
        sp = dict(json.loads(spec), name=name, privacy=priv)
        sp.pop("distill", None)
        specs.append(json.dumps(sp).encode())
    try:
        c1 = accept()
        ids = []
        for sp in specs:
            offer(c1, bytes(32), sp)
            ids.append(bytes.fromhex(wait_event("job_id_mismatch")["canonical"]))
            wait_frame(c1, 14)
        offer(c1, ids[0], specs[0])
        ev = wait_event("privacy_spent")
        check(2.9 <= ev["epsilon"] <= 3.0 and ev["total_epsilon"] == ev["epsilon"],
              f"privacy_spent: {ev}")
        wait_event("job_accepted")
        wait_frame(c1, 13)
        c1.close()
        c2 = accept()
        offer(c2, ids[0], specs[0])
        wait_event("privacy_already_charged")
        wait_event("job_accepted")
        wait_frame(c2, 13)
        offer(c2, ids[1], specs[1])
        ev = wait_event("job_refused")
        check(ev["category"] == "policy" and ev["reason"].startswith(
            "privacy budget: this job needs epsilon 3.00 (delta 1e-05); data fingerprint ") and
            "of epsilon_max 3.50" in ev["reason"], f"privacy refusal: {ev}")
        body = wait_frame(c2, 14)
        check(b"privacy budget" in body and b"\xa8category\xa6policy" in body,
              f"JOB_REFUSE frame: {body!r}")
        c2.close()
    finally:
        stop_agent()
    check(p.returncode == 0, f"agent exit {p.returncode}:\n" + "".join(log))
    code, out, err = agent(["--config", cfg_path, "--privacy-ledger", "--json"])
    led = json.loads(out) if code == 0 else {}
    check(code == 0 and len(led["entries"]) == 1 and led["entries"][0]["job"] == ids[0].hex()
          and led["totals"][0]["jobs"] == 1, f"the ledger after the run: {code} {out} {err}")
    check(os.stat(os.path.join(kit, "privacy")).st_mode & 0o777 == 0o700,
          "the ledger's directory should be 0700")
    lsock.close()
finally:
    shutil.rmtree(root, ignore_errors=True)

print("agent-cli: ok")
