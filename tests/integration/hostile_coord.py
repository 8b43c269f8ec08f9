"""A hostile coordinator against the real agent: the agent's privacy follows from its own
checks, never from what the coordinator claims.

argv: fedvault fedvault-agent
The scripted coordinator is this script: a Python TLS 1.3 server holding the federation's
real coordinator kit (so the agent's TLS checks pass: it IS the coordinator, only it
lies), speaking the wire format by hand (fvwire.py, protocols/wire.c's top comment).
One real `fedvault-agent` (bank-a, the Lending Club file, its policy left at the
defaults: secure aggregation required, rows withheld, max CRL age 30 days; --min-cohort 5)
connects to it. Each case is one TLS session; after each the script closes the session
and the agent reconnects by itself. Every frame the agent sends is decoded and recorded.

Cases (the rule the agent must name, agent/agent_job.c and agent/agent_cohort.c):
  secagg-off     JOB_OFFER of the job with "secagg": "off"         require_secure_aggregation
  fabricated     ROUND_START: bank-a plus 4 made-up keys, no certificates   cohort_uncertified
  forged-keys    real certificates, but the keys in "pks" made up          member_key_mismatch
  other-ca       a member certified by another CA of the same federation name
                                                                         member_not_certified
  revoked        a member whose certificate the (fresh, CA-signed) CRL revokes
                                                                         member_not_certified
  twice          the same identity at two indices                          member_duplicate
  coordinator    the coordinator's own certificate as a member     member_is_coordinator
  admin          an admin's certificate (ops-1) as a member                member_role
  small-cohort   4 certified members, below the agent's min_cohort 5       min_cohort (sat out)
  low-threshold  5 certified members, t = 3 where the job prescribes 4     (sat out)
  stale-crl      the agent restarted with --max-crl-age-s 60; the only CRL it gets is an
                 hour old (fedvault provision signs lastUpdate = now - 1 h)     crl_stale
The offer always carries the federation's CRL (DER) except in stale-crl, where it is the
same CRL and the agent's limit is what makes it stale.

Checked for every case: the refusal arrives (JOB_REFUSE whose reason starts with the rule
and, for a member rule, names the member's index; for a sat-out round the agent's log
says policy_refusal naming the rule and nothing is sent); the frames the agent sent in
the session are only HELLO, PONG, JOB_ACCEPT (whose rows is 0: withheld) and JOB_REFUSE:
no SECAGG, no vector, nothing else (a PING/PONG barrier after the refusal makes sure
whatever the ROUND_START made the agent send has arrived). At the end the agent's own
audit log verifies (`fedvault audit verify`), its msg.sent records are exactly the frames
recorded here, session by session (PING/PONG are counted in session.closed, not recorded;
a BYE or ERROR the agent sent as this side hung up is not read here), and it holds a
policy.refused record for each refusal by its own policy and a cohort.refused record
naming the rule for each cohort or CRL refusal.
"""
import json
import os
import queue
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import fvnet
import fvwire
from fvtest import DATA, SRC, check, fail, run, tmpdir
from fvwire import (BYE, ERROR, HELLO, JOB_ACCEPT, JOB_OFFER, JOB_REFUSE, NAMES, PING, PONG,
                    ROUND_START, mp_decode, mp_encode)

FEDVAULT, AGENT = sys.argv[1:3]
WRAPPER = shlex.split(os.environ.get("FV_TEST_WRAPPER", ""))
SLOW = 20 if WRAPPER else 1
ALLOWED = {HELLO, PONG, JOB_ACCEPT, JOB_REFUSE, BYE, ERROR}

tmp = tmpdir()
fed, other = os.path.join(tmp, "fed"), os.path.join(tmp, "other")
BANKS = ["bank-a", "bank-b", "bank-c", "bank-d", "bank-e", "bank-r"]
run(["provision", "--federation", "hc", "--coordinator", "127.0.0.1:0", "--agents",
     ",".join(BANKS), "--admins", "ops-1", "--out", fed], expect=0)
# Another CA that calls its federation "hc" too: its certificates must not pass.
run(["provision", "--federation", "hc", "--coordinator", "127.0.0.1:0", "--agents",
     "bank-x", "--admins", "ops-9", "--out", other], expect=0)
run(["provision", "revoke", "bank-r", "--out", fed], expect=0)


def cert(kit):
    return fvnet.pem_der(os.path.join(kit, "cert.pem"))


cert_pk = fvnet.cert_pk


CERT = {b: cert(os.path.join(fed, b)) for b in BANKS}
CERT["coordinator"] = cert(os.path.join(fed, "coordinator"))
CERT["ops-1"] = cert(os.path.join(fed, "ops-1"))
CERT["bank-x"] = cert(os.path.join(other, "bank-x"))
CRL = fvnet.pem_der(os.path.join(fed, "coordinator", "crl.pem"))
check(len(CRL) > 0 and CRL == fvnet.pem_der(os.path.join(fed, "ca", "crl.pem")),
      "the coordinator kit's CRL is the CA's after the revocation")


def certs_blob(names):
    return fvnet.certs_field([CERT[n] for n in names])


# The job: the Lending Club example without distillation, 1 round, 3 agents at least.
job = json.load(open(os.path.join(SRC, "examples", "lending-club", "job.json")))
job.pop("distill", None)
job.update({"name": "hostile-coord", "rounds": 1, "min_agents": 3})
spec_on = json.dumps(job).encode()
spec_off = json.dumps(dict(job, secagg="off")).encode()

# ---- the scripted coordinator's listener -------------------------------------------------
sctx, lsock, port = fvnet.coordinator_listener(os.path.join(fed, "coordinator"), 60 * SLOW)
audit_log = os.path.join(tmp, "bank-a-audit.log")
agent_proc, agent_log, events = None, [], queue.Queue()


def start_agent(*extra):
    global agent_proc
    agent_proc = subprocess.Popen(
        WRAPPER + [AGENT, "--config", os.path.join(fed, "bank-a", "agent.json"), "--data",
                   os.path.join(DATA, "lending_club.csv"), "--coordinator", f"127.0.0.1:{port}",
                   "--audit-log", audit_log, "--min-cohort", "5", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def reader(p):
        for line in p.stderr:
            agent_log.append(line)
            try:
                events.put(json.loads(line))
            except json.JSONDecodeError:
                events.put({"event": "junk", "line": line})

    threading.Thread(target=reader, args=(agent_proc,), daemon=True).start()


def stop_agent():
    if agent_proc.poll() is None:
        agent_proc.send_signal(signal.SIGTERM)
    try:
        agent_proc.wait(timeout=60 * SLOW)
    except subprocess.TimeoutExpired:
        agent_proc.kill()
        fail("the agent did not stop on SIGTERM")
    check(agent_proc.returncode == 0, f"agent exit {agent_proc.returncode}")


def wait_event(pred, what, timeout=60):
    deadline = time.time() + timeout * SLOW
    while time.time() < deadline:
        try:
            ev = events.get(timeout=0.2)
        except queue.Empty:
            if agent_proc.poll() is not None:
                break
            continue
        check(ev["event"] != "junk", f"agent log line is not JSON: {ev}")
        if pred(ev):
            return ev
    fail(f"no {what} from the agent; its log:\n" + "".join(agent_log[-30:]))


class Session:
    """One TLS session with the agent; every frame it sends is decoded and kept."""

    def __init__(self):
        raw, _ = lsock.accept()
        self.s = sctx.wrap_socket(raw, server_side=True)
        self.s.settimeout(0.2)
        self.rd = fvwire.FrameReader(1 << 20)
        self.got = []    # every message received, in order
        self.inbox = []  # received and not yet consumed by wait()
        self.seq = 1
        self.send({"v": 1, "type": HELLO, "sw": "hostile coordinator", "maxf": 1 << 20})

    def send(self, m):
        self.s.sendall(fvwire.frame(mp_encode(m)))

    def wait(self, msg_type, timeout=60):
        """Consumes messages until one of msg_type; answers PINGs; returns it."""
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            while self.inbox:
                m = self.inbox.pop(0)
                if m["type"] == msg_type:
                    return m
            try:
                b = self.s.recv(65536)
            except socket.timeout:
                continue
            except (OSError, ssl.SSLError) as e:
                fail(f"session closed waiting for {NAMES[msg_type]}: {e}")
            if not b:
                fail(f"session closed waiting for {NAMES[msg_type]}")
            for body in self.rd.feed(b):
                m = mp_decode(body)
                self.got.append(m)
                self.inbox.append(m)
                if m["type"] == PING:
                    self.send({"v": 1, "type": PONG, "seq": m["seq"]})
        fail(f"no {NAMES[msg_type]} from the agent; frames so far: "
             f"{[NAMES.get(m['type'], m['type']) for m in self.got]}")

    def barrier(self):
        """PING, then wait for its PONG: everything the agent sent before it is in."""
        self.seq += 1
        self.send({"v": 1, "type": PING, "seq": self.seq})
        while self.wait(PONG)["seq"] != self.seq:
            pass

    def close(self):
        sessions.append([NAMES[m["type"]] for m in self.got if m["type"] not in (PING, PONG)])
        try:
            self.s.close()
        except OSError:
            pass


def offer(sess, job_id, spec, crl=CRL):
    sess.send({"v": 1, "type": JOB_OFFER, "job": job_id, "spec": spec, "crl": crl})


def canonical_id(spec):
    """The job's id as the agent computes it: a mismatching offer makes it log the id."""
    sess = Session()
    offer(sess, bytes(32), spec)
    ev = wait_event(lambda e: e["event"] == "job_id_mismatch", "job_id_mismatch")
    sess.wait(JOB_REFUSE)
    sess.close()
    return bytes.fromhex(ev["canonical"])


def round_start(job_id, names, pks=None, t=4, n=None, certs=True):
    n = n if n is not None else len(names)
    return {"v": 1, "type": ROUND_START, "job": job_id, "round": 0, "kind": 1, "index": 0,
            "n": n, "t": t, "k": n - 1, "gseed": bytes(range(32)),
            "pks": pks if pks is not None else b"".join(cert_pk(CERT[x]) for x in names),
            "model": b"", "nref": 0, "certs": certs_blob(names) if certs else b""}


results = []  # (case, outcome) for the summary
sessions = []  # per TLS session, in order: the frames the agent sent (no PING/PONG)


def finish_session(case, sess):
    sess.barrier()
    sess.close()
    kinds = [m["type"] for m in sess.got]
    bad = [NAMES.get(t, t) for t in kinds if t not in ALLOWED]
    check(not bad, f"{case}: the agent sent {bad} to a coordinator it refused")
    for m in sess.got:
        if m["type"] == JOB_ACCEPT:
            check(m["rows"] == 0, f"{case}: JOB_ACCEPT disclosed rows={m['rows']}")
    return [NAMES[t] for t in kinds]


def expect_refusal(case, sess, rule, needle=None):
    m = sess.wait(JOB_REFUSE)
    reason = m["reason"]
    check(reason.startswith(rule), f"{case}: refusal {reason!r} should start with {rule!r}")
    if needle is not None:
        check(needle in reason, f"{case}: refusal {reason!r} should name {needle!r}")
    frames = finish_session(case, sess)
    results.append((case, reason))
    print(f"{case:14s} refused: {reason}  (frames: {', '.join(frames)})", flush=True)


def cohort_case(case, msg, rule, needle):
    sess = Session()
    offer(sess, job_on, spec_on)
    sess.wait(JOB_ACCEPT)
    sess.send(msg)
    expect_refusal(case, sess, rule, needle)


def sit_out_case(case, msg, needle):
    sess = Session()
    offer(sess, job_on, spec_on)
    sess.wait(JOB_ACCEPT)
    sess.send(msg)
    ev = wait_event(lambda e: e["event"] == "policy_refusal" and e.get("round") == 0,
                    f"{case}: policy_refusal")
    check(needle in ev["why"], f"{case}: policy_refusal {ev} should name {needle!r}")
    frames = finish_session(case, sess)
    results.append((case, ev["why"]))
    print(f"{case:14s} sat out: {ev['why']}  (frames: {', '.join(frames)})", flush=True)


start_agent()
try:
    job_on = canonical_id(spec_on)
    job_off = canonical_id(spec_off)

    sess = Session()
    offer(sess, job_off, spec_off)
    expect_refusal("secagg-off", sess, "require_secure_aggregation")

    five = ["bank-a", "bank-b", "bank-c", "bank-d", "bank-e"]
    four = five[:4]
    made_up = cert_pk(CERT["bank-a"]) + b"".join(bytes([i]) * 32 for i in range(1, 5))
    cohort_case("fabricated", round_start(job_on, five, pks=made_up, certs=False),
                "cohort_uncertified", None)
    cohort_case("forged-keys", round_start(job_on, five, pks=made_up),
                "member_key_mismatch", "member 1")
    cohort_case("other-ca", round_start(job_on, four + ["bank-x"]),
                "member_not_certified", "member 4")
    cohort_case("revoked", round_start(job_on, four + ["bank-r"]),
                "member_not_certified", "member 4")
    cohort_case("twice", round_start(job_on, four + ["bank-b"]), "member_duplicate",
                "member 4")
    cohort_case("coordinator", round_start(job_on, four + ["coordinator"]),
                "member_is_coordinator", "member 4")
    cohort_case("admin", round_start(job_on, four + ["ops-1"]), "member_role", "member 4")
    sit_out_case("small-cohort", round_start(job_on, four, t=3), "min_cohort 5")
    sit_out_case("low-threshold", round_start(job_on, five, t=3),
                 "not what the job prescribes")
finally:
    stop_agent()

# The stale CRL: the same CRL, an agent whose policy wants one at most 60 s old.
start_agent("--max-crl-age-s", "60")
try:
    sess = Session()
    offer(sess, job_on, spec_on)
    expect_refusal("stale-crl", sess, "crl_stale")
finally:
    stop_agent()
lsock.close()

# ---- the agent's own audit log agrees ------------------------------------------------------
code, out, err = run(["audit", "verify", "--log", audit_log, "--head", audit_log + ".head",
                      "--cert", os.path.join(fed, "bank-a", "cert.pem")])
check(code == 0, f"audit verify: exit {code}\n{out}{err}")
recs = [json.loads(line) for line in open(audit_log)]
sent = [r["details"] for r in recs if r["event"] == "msg.sent"]
# Per session (the id probes included), what the agent recorded sending is what arrived
# here, but for the last frame of a session that this side closed without waiting: the
# agent's BYE or ERROR when it saw the close (recorded, never read here).
by_session = {}
for m in sent:
    by_session.setdefault(m["session"], []).append(m["type"])
audit_sessions = list(by_session.values())


def strip_end(types):
    return types[:-1] if types and types[-1] in ("bye", "error") else types


check(len(audit_sessions) == len(sessions) and
      all(strip_end(a) == strip_end(b) for a, b in zip(audit_sessions, sessions)),
      f"the audit log's msg.sent per session {audit_sessions}\n"
      f"!= the frames received per session {sessions}")
for m in sent:
    check(m["type"] in ("hello", "job_accept", "job_refuse", "bye", "error"),
          f"audit log: msg.sent of type {m['type']}")
    if m["type"] == "job_accept":
        check(m["rows"] == 0, f"audit log: job_accept rows {m['rows']}")
refused = [r["details"] for r in recs if r["event"] == "policy.refused"]
scopes = sorted((d["scope"], d.get("rule", "")) for d in refused)
check(("job", "require_secure_aggregation") in scopes and
      sum(1 for d in refused if d["scope"] == "round") == 2,
      f"policy.refused records: {refused}")
cohort = [r["details"]["rule"] for r in recs if r["event"] == "cohort.refused"]
want_rules = ["cohort_uncertified", "member_key_mismatch", "member_not_certified",
              "member_not_certified", "member_duplicate", "member_is_coordinator", "member_role",
              "crl_stale"]
check(cohort == want_rules, f"cohort.refused records {cohort}, expected {want_rules}")
print(f"audit log: {len(recs)} records verified; {len(sent)} msg.sent in {len(sessions)} "
      f"sessions, the same frames as received; {len(refused)} policy.refused")
print(f"{len(results)} cases refused")
