"""A member that vanishes mid-job is shown gone, and the job's policy decides.

argv: fedvault fedvault-coordinator fedvault-agent
A coordinator daemon with its admin port and four Lending Club banks (no --once; started
afresh for each job, the three others holding their stats compute until bank-west has
accepted the job: FV_TEST_HOLD_COMPUTE), SecAgg on (4 members: k 3, t 3, one dropout tolerated). In each job
bank-west SIGKILLs itself after the coordinator acknowledged its masked upload of round 1
(FV_TEST_KILL_AT=after-masked:1, agent/agent.c: a protocol point, not a time) and is not
restarted until the job is over.
  Job 1, cohort defaults (on_member_lost "continue", min_agents 3): the coordinator logs
  member_lost {agent bank-west, round 1} at once; round 1 completes with it in the sum
  (its masks recovered from the others); rounds 2 and 3 run with the three others; the
  job ends done; `job show --json` has bank-west gone with its time and round, the others
  accepted; `job watch` printed a line for the loss.
  Job 2, "cohort": {"on_member_lost": "wait"}: after round 1 the job holds for bank-west:
  live.cohort.held, "waiting for lost members" naming it, waiting_on it, no eta; no round 2
  starts; then it is aborted (job watch ends with the reason).
"""
import json
import sys

import fvdaemon
import fvfed
import fvtest

fedvault, coordinator, agent = sys.argv[1:4]
S = fvtest.SLOW
tmp = fvtest.tmpdir()
fvfed.setup(tmp, "lost-fed")
BANKS = ["bank-central", "bank-midwest", "bank-northeast", "bank-west"]
LOST = "bank-west"
KILL = {"FV_TEST_KILL_AT": "after-masked:1"}

d = fvdaemon.Daemon(coordinator, tmp)


def job(name, **over):
    return fvfed.job_spec(name=name, model="logreg", rounds=3, min_agents=3,
                          deadlines_ms={"join": 120000 * S, "train": 120000 * S,
                                        "secagg_phase": 60000 * S}, **over)


def start_all(tag):
    """Every agent (re)started: the others hold their stats compute (round 0) until the
    file tmp/tag-0 exists, so the job's first rounds wait for LOST to accept it: it is in
    round 1's cohort whatever the processes' timing (released by release())."""
    for p in d.agents.values():
        if p.poll() is None:
            p.kill()
            p.wait()
    d.wait_connected(0)
    for b in BANKS:
        d.start_agent(agent, b, f"{tmp}/banks/{b}.csv",
                      env=KILL if b == LOST else {"FV_TEST_HOLD_COMPUTE": f"0:{tmp}/{tag}"})
    d.wait_connected(len(BANKS))


def release(tag, job_id):
    d.wait(lambda: [e for e in d.events() if e.get("event") == "job_accepted"
                    and e.get("agent") == LOST and e.get("job") == job_id[:16]],
           f"{LOST}'s job_accepted", 120)
    open(f"{tmp}/{tag}-0", "w").close()


try:
    # ---- job 1: continue without it ----------------------------------------------------
    start_all("hold1")
    id1 = d.submit(job("lost-continue"))
    w = d.watch(id1)
    release("hold1", id1)
    wout, werr = w.communicate(timeout=300 * S)
    print(f"job watch:\n{wout}{werr}")
    fvtest.check(w.returncode == 0, f"job 1 should end done: job watch exit {w.returncode}")
    lost = [e for e in d.events() if e.get("event") == "member_lost"]
    print(f"member_lost: {lost}")
    fvtest.check(len(lost) == 1 and lost[0].get("agent") == LOST and lost[0].get("round") == 1
                 and lost[0].get("on_member_lost") == "continue",
                 f"one member_lost line for {LOST} in round 1: {lost}")
    show = d.admin_json(["job", "show", id1])
    cohort = {a["agent"]: a for a in show["cohort"]}
    print(f"cohort: {json.dumps(cohort)}")
    g = cohort.get(LOST, {})
    fvtest.check(g.get("status") == "gone" and g.get("round") == 1 and g.get("at"),
                 f"job show: {LOST} should be gone since round 1 with a time: {g}")
    for b in BANKS:
        if b != LOST:
            fvtest.check(cohort.get(b, {}).get("status") == "accepted", f"{b}: {cohort.get(b)}")
    rounds = {r["round"]: r for r in show["rounds"] if r["status"] == "ok"}
    others = sorted(b for b in BANKS if b != LOST)
    fvtest.check(show["status"] == "done" and sorted(rounds[1]["contributors"]) == BANKS
                 and rounds[2]["cohort"] == others and rounds[3]["cohort"] == others,
                 f"round 1 with {LOST} in the sum, rounds 2 and 3 with the three others: "
                 f"{[(r['round'], r['cohort'], r['contributors']) for r in show['rounds']]}")
    fvtest.check(any(LOST in line and "gone since" in line and "(round 1)" in line
                     for line in wout.splitlines()), "job watch: no line for the loss")
    _, text, _ = d.admin(["job", "show", id1])
    fvtest.check(f"{LOST}" in text and "gone since" in text, f"job show text:\n{text}")

    # ---- job 2: wait for it --------------------------------------------------------------
    start_all("hold2")
    id2 = d.submit(job("lost-wait", cohort={"on_member_lost": "wait"}))
    w = d.watch(id2)
    release("hold2", id2)

    def held():
        live = d.admin_json(["job", "show", id2]).get("live") or {}
        co = live.get("cohort") or {}
        return live if co.get("held") and live.get("phase") == "waiting for agents" else None

    live = d.wait(held, "job 2 held for its lost member", 300)
    co = live["cohort"]
    print(f"live: {json.dumps(live)}")
    fvtest.check(co["summary"].startswith("waiting for lost members: 3 of min_agents 3 accepted")
                 and f"gone: {LOST} (since " in co["summary"] and LOST in co["waiting_on"]
                 and live["eta_s"] is None,
                 f"job 2 should say it waits for {LOST}, without an eta: {co}")
    fvtest.check(not [e for e in d.events() if e.get("event") == "round_start"
                      and e.get("round") == 2 and e.get("job") == id2[:16]],
                 "no round 2 may start while the lost member is away")
    d.admin(["job", "abort", id2])
    wout, werr = w.communicate(timeout=120 * S)
    print(f"job watch:\n{wout}{werr}")
    fvtest.check(w.returncode == 1 and "aborted" in werr and "why: aborted by" in wout
                 and any(LOST in line and "gone since" in line for line in wout.splitlines()),
                 f"job watch of job 2: exit {w.returncode}")
    fvtest.check(d.admin_json(["job", "show", id2])["status"] == "aborted", "job 2 aborted")
finally:
    d.stop()
print("ok")
