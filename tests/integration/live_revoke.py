"""Revoking a connected agent in the middle of a round: the session closes at once.

argv: fedvault fedvault-coordinator fedvault-agent
A real `fedvault-coordinator --job` (with its admin port) runs a SecAgg job (a logreg,
ROUNDS training rounds, min_agents 3) with four real `fedvault-agent` processes. Round
HOLD_ROUND is held open deterministically: the agents' compute of that round waits for a
file (FV_TEST_HOLD_COMPUTE; round 1's too, until all four accepted the job, so round
HOLD_ROUND's cohort has all four), so once the round's phase 1 (share keys) has closed, all four
members are alive in phase 2 (the masked input) and stay there. Then the operator
revokes VICTIM (`fedvault provision revoke`, which re-signs the CRL in the coordinator's
kit) and runs `fedvault crl reload`. Checked:
  - when the command returns it has closed the session (its answer counts it),
    `fedvault agents list --json` shows VICTIM disconnected, and the coordinator log has
    session_revoked naming it and its serial (the audit log too);
  - an admin session is closed the same way: a second admin (ops-2) revoked with VICTIM
    while its `fedvault job watch` holds a session open: the watch ends with an error
    and the log has session_revoked with role admin;
  - released, the round in flight completes with the three others (VICTIM, gone after
    its shares, is a dropout whose masks the survivors' shares remove);
  - VICTIM is in no later round's cohort (the state's rounds table);
  - its agent keeps trying to reconnect and is refused at the TLS handshake
    ("certificate revoked" in the coordinator's log);
  - the job ends "done" with every round committed and the others' agents exit 0.
"""
import json
import subprocess
import sys
import time

import fvfed
import fvtest

fedvault, coordinator, agent = sys.argv[1:4]
S = fvtest.SLOW
AGENTS = ["bank-central", "bank-midwest", "bank-northeast", "bank-west"]
VICTIM = "bank-west"
ROUNDS = 4
HOLD_ROUND = 2

tmp = fvtest.tmpdir()
fvfed.setup(tmp, "revoke-fed")
fvtest.run(["provision", "add-admin", "ops-2", "--out", f"{tmp}/fed"], expect=0)
with open(f"{tmp}/job.json", "w") as f:
    json.dump(fvfed.job_spec(name="revoke", model="logreg", rounds=ROUNDS, min_agents=3), f)

port, admin_port = fvtest.free_port(), fvtest.free_port()
ADMIN = ["--config", f"{tmp}/fed/ops-1/admin.json", "--admin", f"127.0.0.1:{admin_port}",
         "--timeout", str(30 * S)]
p, log = fvfed.run_coordinator(coordinator, tmp, "revoke", port,
                               extra=["--admin-listen", f"127.0.0.1:{admin_port}"])
release = f"{tmp}/release"
# Round 1 is held too, until all four have accepted the job: min_agents 3 lets a round
# start without a late one, and round HOLD_ROUND must have all four in its cohort.
procs = fvfed.start_agents(agent, tmp, port, "revoke", banks=AGENTS,
                           env={"FV_TEST_HOLD_COMPUTE": f"1,{HOLD_ROUND}:{release}"})


def events():
    return fvfed.events(log, since_start=True)


def stop_all():
    if p.poll() is None:
        p.kill()
    for q in procs.values():
        if q.poll() is None:
            q.kill()


def wait_for(pred, what, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        if p.poll() is not None:
            break
        time.sleep(0.1)
    stop_all()
    fvtest.fail(f"timed out waiting for {what}; last coordinator lines:\n"
                + "\n".join(json.dumps(e) for e in events()[-15:]))


def admin_json(args):
    _, out, _ = fvtest.run(list(args) + ADMIN + ["--json"], expect=0)
    return json.loads(out)


def ev(name, **fields):
    return [e for e in events() if e.get("event") == name
            and all(e.get(k) == v for k, v in fields.items())]


wait_for(lambda: len({e.get("agent") for e in ev("job_accepted")}) == len(AGENTS),
         "every agent's job_accepted", 300 * S)
open(f"{release}-1", "w").close()
# Round HOLD_ROUND with all four, past its share keys: every member is in phase 2, held.
start = wait_for(lambda: ev("round_start", round=HOLD_ROUND), f"round {HOLD_ROUND}'s start",
                 300 * S)[0]
fvtest.check(start.get("cohort") == 4, f"round {HOLD_ROUND} should start with all four: {start}")
wait_for(lambda: ev("phase_closed", round=HOLD_ROUND, closed_phase=1),
         f"round {HOLD_ROUND}'s phase 1", 120 * S)
agents = {a["name"]: a for a in admin_json(["agents", "list"])["agents"]}
fvtest.check(agents.get(VICTIM, {}).get("connected") is True,
             f"{VICTIM} should be connected before the revocation: {agents.get(VICTIM)}")
serial = agents[VICTIM]["serial"]
# ops-2 watches the job: a live admin session (its first answer printed once it is up)
job_id = admin_json(["job", "list"])["jobs"][0]["id"]
watch = subprocess.Popen(
    [fedvault, "job", "watch", job_id, "--interval", "0.2", "--config",
     f"{tmp}/fed/ops-2/admin.json", "--admin", f"127.0.0.1:{admin_port}", "--timeout",
     str(30 * S)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
wait_for(lambda: ev("admin_command", admin="ops-2"), "ops-2's job watch", 60 * S)

fvtest.run(["provision", "revoke", VICTIM, "--out", f"{tmp}/fed"], expect=0)
fvtest.run(["provision", "revoke", "ops-2", "--out", f"{tmp}/fed"], expect=0)
_, out, _ = fvtest.run(["crl", "reload"] + ADMIN, expect=0)
print(f"fedvault crl reload: {out.strip()}")
# What holds when the command has returned: no waiting from here on.
fvtest.check("2 live session(s) closed" in out,
             f"crl reload should close two sessions (the agent's, ops-2's): {out}")
agents = {a["name"]: a for a in admin_json(["agents", "list"])["agents"]}
fvtest.check(agents.get(VICTIM, {}).get("connected") is False,
             f"agents list: {VICTIM} still connected after the reload: {agents.get(VICTIM)}")
fvtest.check(all(agents.get(b, {}).get("connected") is True for b in AGENTS if b != VICTIM),
             f"agents list: the others should stay connected: {agents}")
rv = ev("session_revoked", role="agent")
print(f"coordinator log: {json.dumps(rv)}")
ra = ev("session_revoked", role="admin")
print(f"coordinator log: {json.dumps(ra)}")
fvtest.check(len(ra) == 1 and ra[0].get("admin") == "ops-2",
             f"session_revoked should name the admin ops-2: {ra}")
try:
    wout, werr = watch.communicate(timeout=30 * S)
except subprocess.TimeoutExpired:
    watch.kill()
    wout, werr = watch.communicate()
    fvtest.fail("ops-2's job watch goes on after its certificate was revoked")
print(f"ops-2's job watch: exit {watch.returncode}: {werr.strip()[-300:]}")
fvtest.check(watch.returncode != 0, f"ops-2's job watch should fail: exit {watch.returncode}")
fvtest.check(len(rv) == 1 and rv[0].get("agent") == VICTIM and rv[0].get("serial") == serial
             and rv[0].get("by", "").startswith("admin:"),
             f"session_revoked should name {VICTIM}, its serial {serial} and the admin: {rv}")
reloaded = ev("crl_reloaded")
fvtest.check(reloaded and reloaded[-1].get("sessions_closed") == 2,
             f"crl_reloaded should count two sessions closed: {reloaded}")
fvtest.check(not ev("round_done", round=HOLD_ROUND),
             f"round {HOLD_ROUND} ended before it was released: the hold did not hold")

# Its reconnect attempts are refused at the handshake (the round still held: the
# coordinator is up whatever the timing).
refused = wait_for(lambda: [e for e in events() if e.get("event") == "conn_closed"
                            and e.get("addr") != rv[0].get("addr")
                            and "handshake" in e.get("why", "")
                            and "certificate revoked" in e.get("why", "")],
                   f"{VICTIM}'s reconnect refused at the handshake", 60 * S)
print(f"coordinator log: {json.dumps(refused[0])}")
open(f"{release}-{HOLD_ROUND}", "w").close()
out = fvfed.finish(p, "live-revoke")
res = json.loads(out.strip().splitlines()[-1])
# the revoked agent would try forever: stopped here; the others end with the job
procs[VICTIM].kill()
procs[VICTIM].wait()
codes = fvfed.wait_exits(procs, 120 * S)
fvtest.check(all(codes[b] == 0 for b in AGENTS if b != VICTIM),
             f"the other agents' exit codes: {codes}")
fvtest.check(p.returncode == 0 and res.get("status") == "done",
             f"the job should end done: exit {p.returncode}, {res}")

done = ev("round_done", round=HOLD_ROUND)
print(f"coordinator log: {json.dumps(done)}")
fvtest.check(done and done[-1].get("contributors") == 3,
             f"round {HOLD_ROUND} should complete with the three others: {done}")
rows = fvfed.db_rows(tmp, "revoke", "SELECT round, attempt, status, cohort, contributors "
                     "FROM rounds ORDER BY round, attempt")
print("state rounds: " + "; ".join(f"round {r} attempt {a} {s}: cohort {c} contributors {k}"
                                   for r, a, s, c, k in rows))
fvtest.check([r for r, a, s, c, k in rows] == list(range(ROUNDS + 1))
             and all(s == "ok" for r, a, s, c, k in rows),
             f"every round should be committed once: {rows}")
for r, a, s, c, k in rows:
    cohort, contributors = json.loads(c), json.loads(k)
    if r == HOLD_ROUND:
        fvtest.check(VICTIM in cohort and VICTIM not in contributors and len(contributors) == 3,
                     f"round {r}: cohort {cohort}, contributors {contributors}")
    elif r > HOLD_ROUND:
        fvtest.check(VICTIM not in cohort, f"round {r}: the revoked {VICTIM} is in the cohort "
                     f"{cohort}")
audit = open(f"{tmp}/revoke/state/audit.log").read()
fvtest.check("agent.session_revoked" in audit and VICTIM in audit,
             "the audit log has no agent.session_revoked record")
print(f"PASS: {VICTIM} revoked in round {HOLD_ROUND}: session closed by the reload, the round "
      "done with three, refused at reconnect")
