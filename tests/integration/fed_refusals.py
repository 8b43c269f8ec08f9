"""Refusals the operator can see, and a job without a cohort failing at its join deadline.

argv: fedvault fedvault-coordinator fedvault-agent
A coordinator daemon with its admin port and three Lending Club banks, all connected
before any job is submitted (so each is offered the job at once). Job 1 (plain, min_agents
3, a short join deadline, cohort defaults) has a schema whose 'term' column lacks the
category 'term_60' that every bank holds: bank-midwest and bank-northeast (allowed plain
jobs) refuse it with category schema, bank-central (requiring secure aggregation) with
category policy. Checked:
  - `job watch` prints one line per refusal with its category, and the final reason; it
    exits 1 ("failed: cohort not formed by the join deadline");
  - the job fails with the reason naming each refusal by agent and category and the
    accepted count ("0 of min_agents 3 accepted");
  - `job show --json` has each agent's status (refused, category, the agent's sentence
    naming the column, the time), and the text form a cohort section;
  - the value 'term_60' leaves no bank: not in the coordinator's log, nor in job show;
  - the coordinator's log has job_refused {agent, category} for each.
Job 2 (the same with "cohort": {"on_join_deadline": "wait"}) waits past its deadline:
`status --json` and `status` say on whom and who refused, there is no eta, the log has
cohort_waiting once; then it is aborted.
Job 3 (an open schema, "wait"; no bank allows schema discovery): the schema round's view
in `status` (--json and text) and `job show`: each bank refused (policy) with its time and
a sentence; bank-midwest, opted in and restarted, is asked again and shows as disclosed;
after the abort, job show still names the refusals.
"""
import json
import sys

import fvdaemon
import fvfed
import fvtest

fedvault, coordinator, agent = sys.argv[1:4]
S = fvtest.SLOW
tmp = fvtest.tmpdir()
fvfed.setup(tmp, "refuse-fed")
BANKS = ["bank-central", "bank-midwest", "bank-northeast"]
PLAIN = {"bank-midwest", "bank-northeast"}  # allow a job without secure aggregation
WANT = {"bank-central": "policy", "bank-midwest": "schema", "bank-northeast": "schema"}
JOIN_MS = 8000 * S

d = fvdaemon.Daemon(coordinator, tmp)
try:
    for b in BANKS:
        d.start_agent(agent, b, f"{tmp}/banks/{b}.csv",
                      extra=fvfed.PLAIN_OK if b in PLAIN else ())
    d.wait_connected(len(BANKS))

    def job(name, **over):
        j = fvfed.job_spec(name=name, model="logreg", secagg="off", min_agents=3,
                           deadlines_ms={"join": JOIN_MS, "train": 60000 * S,
                                         "secagg_phase": 60000 * S}, **over)
        for c in j["schema"]["columns"]:
            if c["name"] == "term":
                c["categories"] = [x for x in c["categories"] if x != "term_60"]
        return j

    # ---- job 1: every agent refuses; the job fails at its join deadline -------------------
    id1 = d.submit(job("refused-all"))
    w = d.watch(id1)
    try:
        wout, werr = w.communicate(timeout=120 * S)
    except Exception:
        w.kill()
        fvtest.fail("job watch did not end")
    print(f"job watch:\n{wout}{werr}")
    fvtest.check(w.returncode == 1, f"job watch exit {w.returncode}, expected 1")
    for b, cat in WANT.items():
        fvtest.check(any(b in line and f"refused ({cat})" in line for line in wout.splitlines()),
                     f"job watch: no line for {b} refused ({cat})")
    fvtest.check("why: cohort not formed by the join deadline" in wout,
                 f"job watch: no final reason:\n{wout}")
    fvtest.check("failed: cohort not formed by the join deadline" in werr,
                 f"job watch stderr: {werr}")

    show = d.admin_json(["job", "show", id1])
    why = show.get("why") or ""
    print(f"why: {why}")
    fvtest.check(show["status"] == "failed" and why.startswith(
        f"cohort not formed by the join deadline ({JOIN_MS / 1000:g} s): 0 of min_agents 3 "
        "accepted; refused: "), f"job 1 should fail at its join deadline: {show['status']} {why}")
    for b, cat in WANT.items():
        fvtest.check(f"{b} ({cat})" in why, f"the reason should name {b} ({cat}): {why}")
    cohort = {a["agent"]: a for a in show["cohort"]}
    print(f"cohort: {json.dumps(cohort)}")
    for b, cat in WANT.items():
        a = cohort.get(b, {})
        fvtest.check(a.get("status") == "refused" and a.get("category") == cat
                     and a.get("at") and isinstance(a.get("at_ms"), int),
                     f"job show: {b} should be refused ({cat}) with a time: {a}")
    for b in PLAIN:
        fvtest.check(cohort[b]["reason"] == "column 'term' has a category the job's schema "
                     "lacks", f"{b}'s reason: {cohort[b]['reason']!r}")
    fvtest.check("require_secure_aggregation" in cohort["bank-central"]["reason"],
                 f"bank-central's reason: {cohort['bank-central']['reason']!r}")
    _, text, _ = d.admin(["job", "show", id1])
    fvtest.check("cohort:" in text and "refused (schema)" in text and "refused (policy)" in text,
                 f"job show text:\n{text}")
    clog = open(d.log).read()
    fvtest.check("term_60" not in clog and "term_60" not in json.dumps(show),
                 "a bank's data value reached the coordinator")
    refused = {e["agent"]: e.get("category") for e in d.events()
               if e.get("event") == "job_refused"}
    fvtest.check(refused == WANT, f"job_refused log lines: {refused}")
    fvtest.check([e for e in d.events() if e.get("event") == "cohort_not_formed"],
                 "no cohort_not_formed line")

    # ---- job 2: the same, on_join_deadline "wait": waits on, shows on whom ---------------
    id2 = d.submit(job("refused-wait", cohort={"on_join_deadline": "wait"}))
    d.wait(lambda: [e for e in d.events() if e.get("event") == "cohort_waiting"],
           "cohort_waiting", 60)
    st = d.admin_json(["status"])
    sj = st["job"]
    summary = (sj.get("cohort") or {}).get("summary") or ""
    print(f"status --json job: {json.dumps(sj)}")
    fvtest.check(sj["id"] == id2 and sj["phase"] == "waiting for agents" and sj["eta_s"] is None
                 and summary.startswith("waiting for agents: 0 of min_agents 3 accepted; "
                                        "refused: ")
                 and all(f"{b} ({c})" in summary for b, c in WANT.items()),
                 f"status: waiting, no eta, who refused: {sj}")
    _, text, _ = d.admin(["status"])
    print(text)
    fvtest.check("waiting for agents: 0 of min_agents 3 accepted; refused:" in text,
                 f"status text:\n{text}")
    d.admin(["job", "abort", id2])
    d.wait(lambda: d.admin_json(["job", "show", id2])["status"] == "aborted", "job 2 aborted", 60)
    fvtest.check(len([e for e in d.events() if e.get("event") == "cohort_waiting"]) == 1,
                 "cohort_waiting should be logged once")

    # ---- job 3: an open schema; no bank allows schema discovery; "wait" ------------------
    # The schema round's view: each bank refused (policy) with the time, live and stored;
    # after bank-midwest's operator opts in and restarts it, it is asked again and shows
    # as disclosed.
    j3 = job("schema-wait", cohort={"on_join_deadline": "wait"})
    for c in j3["schema"]["columns"]:
        if c["name"] == "term":
            c["categories"] = "open"
    j3["schema"]["unknown_category"] = "other"
    id3 = d.submit(j3)
    d.wait(lambda: len([e for e in d.events() if e.get("event") == "cohort_waiting"]) == 2,
           "cohort_waiting of the schema round", 60)

    def schema_view():
        sj = d.admin_json(["status"])["job"]
        return sj, sj.get("cohort") or {}, {a["agent"]: a for a in
                                            (sj.get("cohort") or {}).get("agents", [])}

    sj, co, agents = schema_view()
    print(f"status --json job (schema round): {json.dumps(sj)}")
    fvtest.check(sj["id"] == id3 and sj["phase"] == "schema discovery" and sj["kind"] == "schema"
                 and co.get("round") == "schema" and sj["answered"] == 3,
                 f"status during the schema round: {sj}")
    fvtest.check(co.get("summary", "").startswith("past the join deadline, waiting: 0 of "
                                                  "min_agents 3 banks disclosed a vocabulary; "
                                                  "refused: ")
                 and all(f"{b} (policy)" in co["summary"] for b in BANKS),
                 f"schema round summary: {co.get('summary')}")
    for b in BANKS:
        a = agents.get(b, {})
        fvtest.check(a.get("status") == "refused" and a.get("category") == "policy"
                     and a.get("at") and "schema discovery" in (a.get("reason") or ""),
                     f"{b} in the schema round: {a}")
    _, text, _ = d.admin(["status"])
    fvtest.check("phase schema discovery, past the join deadline, waiting: 0 of min_agents 3 "
                 "banks disclosed a vocabulary" in text,
                 f"status text:\n{text}")
    _, text, _ = d.admin(["job", "show", id3])
    fvtest.check(text.count("refused (policy)") >= 3 and "schema discovery: no vocabulary "
                 "disclosed" in text, f"job show text in the schema round:\n{text}")
    # bank-midwest opts in and is restarted: asked again, it discloses
    kit = f"{tmp}/fed/bank-midwest/agent.json"
    cfg = json.load(open(kit))
    cfg.setdefault("policy", {})["schema_discovery"] = {"allow": True, "min_count": 10}
    json.dump(cfg, open(kit, "w"))
    d.agents["bank-midwest"].kill()
    d.agents["bank-midwest"].wait()
    d.start_agent(agent, "bank-midwest", f"{tmp}/banks/bank-midwest.csv", extra=fvfed.PLAIN_OK)
    d.wait(lambda: schema_view()[2].get("bank-midwest", {}).get("status") == "disclosed",
           "bank-midwest disclosed after its restart", 60)
    sj, co, agents = schema_view()
    fvtest.check(co["summary"].startswith("past the join deadline, waiting: 1 of min_agents 3 "
                                          "banks disclosed a vocabulary; refused: ")
                 and "bank-midwest" not in co["summary"],
                 f"after bank-midwest's restart: {co['summary']}")
    d.admin(["job", "abort", id3])
    d.wait(lambda: d.admin_json(["job", "show", id3])["status"] == "aborted", "job 3 aborted", 60)
    stored = {a["agent"]: a for a in d.admin_json(["job", "show", id3])["cohort"]}
    fvtest.check(stored.get("bank-central", {}).get("status") == "refused"
                 and stored["bank-central"].get("category") == "policy"
                 and "schema discovery" in stored["bank-central"].get("reason", ""),
                 f"job 3's stored statuses: {stored}")
    print("schema round: refusals shown live and stored; a restarted bank is asked again")
finally:
    d.stop()
print("ok")
