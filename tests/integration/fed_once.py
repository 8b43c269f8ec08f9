"""--once agents hear of the end of their job, even one that failed while they were away.

argv: fedvault fedvault-coordinator fedvault-agent
Five Lending Club banks (fvfed.setup), fvfed.job_spec's small job (mlp:16, 2 rounds), every
agent started with --once. Two test hooks of fedvault-coordinator, read at its start:
FV_TEST_FAIL_ROUNDS=1 aborts every training round when it finishes (reason
"FV_TEST_FAIL_ROUNDS"), so after its attempts at round 1 the job ends "failed";
FV_TEST_DROP_AGENTS_AT=job-end closes every agent connection once the job's end is
committed and before JOB_DONE is sent (a network blip at the worst moment): the agents
reconnect with backoff and the coordinator must tell each of them then. Cases:
  control  --job, no hooks: the job is "done", the coordinator exits 0, every agent logs
           job_done and exits 0.
  job      --job, both hooks: the summary says "failed" with a reason naming the round,
           round 1 was aborted 3 times (its attempts) and no other round, the coordinator
           exits 1 (a failed job), and every agent logs `disconnected` (reconnecting)
           then `job_done` and exits 0.
  daemon   no --job (the job submitted with the admin CLI), both hooks: `job list` shows
           the job "failed", every agent as in `job`; then SIGTERM stops the daemon
           (exit 0).
An agent must exit within AGENT_EXIT_S * fvtest.SLOW seconds of the job's end (the
coordinator's exit, or the job shown ended); one still running then is killed, and the
test fails naming it: the bug this catches left --once agents reconnecting forever.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import fvfed
import fvtest

fedvault, coordinator, agent = sys.argv[1:4]
WRAPPER = fvfed.WRAPPER
S = fvfed.SLOW
tmp = fvtest.tmpdir()
BANKS = fvfed.BANKS
AGENT_EXIT_S = 60
ATTEMPTS = 3  # attempts at a round before the job fails (the coordinator's rule)
HOOKS = {"FV_TEST_FAIL_ROUNDS": "1", "FV_TEST_DROP_AGENTS_AT": "job-end"}
fvfed.setup(tmp, "once-fed")
problems = []  # every failed check of every case, reported together at the end


def problem(msg):
    print(f"PROBLEM: {msg}")
    problems.append(msg)


def write_job(name):
    path = f"{tmp}/{name}.json"
    with open(path, "w") as f:
        json.dump(fvfed.job_spec(name=name, rounds=2), f)
    return path


def check_agents(case, tag, codes, blip):
    """Every agent exited 0 and its log has job_done; with blip, a `disconnected` event
    (reconnecting) before it."""
    for b in BANKS:
        if codes[b] is None:
            problem(f"{case}: agent {b} did not exit within {AGENT_EXIT_S * S} s of the job's "
                    f"end (killed); its last log lines:\n"
                    + "".join(open(f"{tmp}/{tag}-{b}.log").readlines()[-5:]))
            continue
        if codes[b] != 0:
            problem(f"{case}: agent {b} exited {codes[b]}, expected 0")
        evs = [e.get("event") for e in fvfed.events(f"{tmp}/{tag}-{b}.log")]
        if "job_done" not in evs:
            problem(f"{case}: agent {b} logged no job_done; events {evs}")
        elif blip and "job_accepted" not in evs[:evs.index("job_done")]:
            problem(f"{case}: agent {b} logged job_done before job_accepted; events {evs}")
        elif blip:
            # The blip: after the agent's last round (an agent that started before the
            # coordinator listened has a `disconnected` at its start too), before job_done.
            done = evs.index("job_done")
            last = max(i for i, e in enumerate(evs[:done]) if e in ("job_accepted", "round_end"))
            if not any(e.get("event") == "disconnected" and e.get("reconnecting")
                       for e in fvfed.events(f"{tmp}/{tag}-{b}.log")[last + 1:done]):
                problem(f"{case}: agent {b} logged no `disconnected` (reconnecting) event "
                        f"between its last round and job_done: the coordinator did not drop "
                        f"it at the job's end (FV_TEST_DROP_AGENTS_AT); events {evs}")
    print(f"{case}: agents' exit codes {codes}")


def check_failed_rounds(case, log):
    """Round 1 aborted ATTEMPTS times by the hook, and no other training round ran."""
    ab = [e for e in fvfed.events(log) if e.get("event") == "round_aborted"]
    done = [e.get("round") for e in fvfed.events(log)
            if e.get("event") == "round_done" and e.get("round", 0) > 0]
    if [e.get("round") for e in ab] != [1] * ATTEMPTS or done:
        problem(f"{case}: expected round 1 aborted {ATTEMPTS} times and no training round "
                f"done; aborted {[(e.get('round'), e.get('why')) for e in ab]}, done {done}")
    elif not all("FV_TEST_FAIL_ROUNDS" in e.get("why", "") for e in ab):
        problem(f"{case}: rounds aborted for another reason: {[e.get('why') for e in ab]}")


def names_round(why):
    return re.search(r"\bround\D{0,3}1\b", why or "", re.IGNORECASE) is not None


def run_with_job(case, env, want_status):
    """--job mode: the coordinator, five --once agents; returns nothing, records problems."""
    port = fvtest.free_port()
    job = write_job(f"once-{case}")
    t0 = time.time()
    p, log = fvfed.run_coordinator(coordinator, tmp, case, port, job=job, env=env)
    procs = fvfed.start_agents(agent, tmp, port, case)
    try:
        out, _ = p.communicate(timeout=600 * S)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        problem(f"{case}: the coordinator did not exit within {600 * S} s (killed)")
    codes = fvfed.wait_exits(procs, AGENT_EXIT_S * S)
    print(f"{case}: coordinator exit {p.returncode} after {time.time() - t0:.1f} s")
    try:
        res = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        res = {}
        problem(f"{case}: no JSON summary on the coordinator's stdout: {out!r}")
    print(f"{case}: summary {json.dumps(res)}")
    want_code = 0 if want_status == "done" else 1
    if res.get("status") != want_status:
        problem(f"{case}: the coordinator's summary says {res.get('status')!r} "
                f"({res.get('why')!r}), expected {want_status!r}")
    if p.returncode != want_code:
        problem(f"{case}: the coordinator exited {p.returncode}, expected {want_code} for a "
                f"{want_status} job; its last log lines:\n"
                + "".join(open(log).readlines()[-5:]))
    if want_status == "failed":
        if not names_round(res.get("why")):
            problem(f"{case}: the failure's reason {res.get('why')!r} names no round 1")
        check_failed_rounds(case, log)
    check_agents(case, case, codes, blip="FV_TEST_DROP_AGENTS_AT" in env)


def run_daemon(case, env):
    """A coordinator daemon; the job submitted with the admin CLI while the --once agents
    are connected; SIGTERM at the end."""
    port, admin_port = fvtest.free_port(), fvtest.free_port()
    admin = ["--config", f"{tmp}/fed/ops-1/admin.json", "--admin", f"127.0.0.1:{admin_port}",
             "--timeout", str(30 * S)]
    log = f"{tmp}/{case}-coordinator.log"
    penv = dict(os.environ)
    penv.update(env)
    coord = subprocess.Popen(
        WRAPPER + [coordinator, "--config", f"{tmp}/fed/coordinator/coordinator.json",
                   "--state", f"{tmp}/{case}-state", "--listen", f"127.0.0.1:{port}",
                   "--admin-listen", f"127.0.0.1:{admin_port}"],
        stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=penv)

    def admin_json(args):
        code, out, err = fvtest.run(list(args) + admin + ["--json"])
        return json.loads(out) if code == 0 else None

    procs = {}

    def wait(pred, what, timeout_s):
        deadline = time.time() + timeout_s
        while time.time() < deadline and coord.poll() is None:
            v = pred()
            if v:
                return v
            time.sleep(0.2)
        for p in [coord, *procs.values()]:
            p.kill()
        fvtest.fail(f"{case}: timed out waiting for {what}; coordinator exit {coord.poll()}\n"
                    + "".join(open(log).readlines()[-10:]) + "\n" + "\n".join(problems))

    wait(lambda: admin_json(["status"]), "the admin port", 120 * S)
    procs.update(fvfed.start_agents(agent, tmp, port, case))
    wait(lambda: (admin_json(["status"]) or {}).get("agents_connected") == len(BANKS),
         "five agents", 120 * S)
    fvtest.run(["job", "submit", write_job(f"once-{case}")] + admin, expect=0)
    t0 = time.time()

    def ended():
        jobs = (admin_json(["job", "list"]) or {}).get("jobs", [])
        return jobs[0] if jobs and jobs[0]["status"] not in ("queued", "running") else None

    j = wait(ended, "the job's end", 600 * S)
    print(f"{case}: job {j['status']} after {time.time() - t0:.1f} s: {j.get('why')!r}")
    if j["status"] != "failed":
        problem(f"{case}: job list says {j['status']!r} ({j.get('why')!r}), expected 'failed'")
    elif not names_round(j.get("why")):
        problem(f"{case}: the failure's reason {j.get('why')!r} names no round 1")
    check_failed_rounds(case, log)
    codes = fvfed.wait_exits(procs, AGENT_EXIT_S * S)
    check_agents(case, case, codes, blip=True)
    if coord.poll() is not None:
        problem(f"{case}: the daemon exited {coord.returncode} by itself")
    coord.send_signal(signal.SIGTERM)
    try:
        code = coord.wait(timeout=60 * S)
    except subprocess.TimeoutExpired:
        coord.kill()
        code = "hung"
    if code != 0:
        problem(f"{case}: SIGTERM: the daemon exited {code}, expected 0")


run_with_job("control", {}, "done")
run_with_job("job", HOOKS, "failed")
run_daemon("daemon", HOOKS)
fvtest.check(not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems))
print("PASS")
