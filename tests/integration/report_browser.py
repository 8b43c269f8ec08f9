"""The job report in a real browser: Debian's chromium, headless.

argv: fedvault fedvault-coordinator fedvault-agent
A small Lending Club federation (five banks, SecAgg) runs a job with distillation (an
mlp:16 teacher for 3 rounds with early stopping, then 2 distill rounds of a logreg
student, int8) and its explanation round. Then:
  - the coordinator wrote report.html into the job's directory at the job's end;
  - `fedvault job report ID --out F` (a daemon on the same state, admin port) writes the
    page, and --json its document;
  - the data schema section: "given in the job spec", a SHA-256, a row per column;
  - chromium loads each page (Chrome DevTools protocol over --remote-debugging-pipe, stdlib
    only) with no console message of level error, no exception, and no request but the
    page itself; the HTML holds no http(s) URL, no <script>;
  - from the rendered DOM (the browser's own parse of the SVG: polyline points, circle
    centres, bar widths) every chart's plotted values are mapped back through the chart's
    frame and compared with the job's records: each training and distill metric per round
    with rounds.jsonl, the ROC and PR points with those recomputed here from the final
    round's histograms in rounds.jsonl, the explanation's bars with the explain round's
    line in rounds.jsonl, the cohort table with the state's round rows, the audit verdict.
Exit 77 (skipped) when chromium is not installed. Suite 'browser' (not 'integration').
"""
import fcntl
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time

import fvfed
import fvtest

T_START = time.time()
fedvault, coordinator, agent = sys.argv[1:4]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    print("chromium is not installed: skipped")
    sys.exit(77)
S = fvfed.SLOW
tmp = fvtest.tmpdir()
fvfed.setup(tmp, "report-fed")
job = fvfed.job_spec(name="report-browser", rounds=3, explain=True,
                     early_stopping={"metric": "roc_auc", "patience": 2},
                     distill={"student": "logreg", "temperature": 2.0, "alpha": 0.5,
                              "rounds": 2, "local_epochs": 1, "quantize_int8": True,
                              "early_stopping": {"patience": 0}})
with open(f"{tmp}/job.json", "w") as f:
    json.dump(job, f)

res = fvfed.run_job(coordinator, agent, tmp, "ref", "the job")
fvtest.check(res["status"] == "done", f"job: {res}")
job_id = res["id"]
jobdir = f"{tmp}/ref/jobs/{job_id}"
t_job = time.time()
print(f"job {job_id[:16]} done in {t_job - T_START:.1f} s")
end_page = f"{jobdir}/report.html"
fvtest.check(os.path.isfile(end_page), f"no report.html in {jobdir}: {os.listdir(jobdir)}")
logev = fvfed.events(f"{tmp}/ref-coordinator.log")
written = [e for e in logev if e.get("event") == "report_written"]
fvtest.check(len(written) == 1 and written[0]["path"] == end_page,
             f"report_written log lines: {written}")
print(f"report.html at the job's end: {written[0]['bytes']} bytes in {written[0]['ms']:.1f} ms")

lines = [json.loads(l) for l in open(f"{jobdir}/rounds.jsonl")]

# the data schema section: a schema given in the spec, its SHA-256, one row per column
page = open(end_page).read()
m = re.search(r'id="schema-sha256">([0-9a-f]{64})<', page)
cols = re.search(r'<table id="schema-columns">(.*?)</table>', page, re.S)
fvtest.check(m is not None and "given in the job spec" in page and cols is not None
             and cols.group(1).count("<tr>") == 1 + len(job["schema"]["columns"]),
             "report.html: no data schema section with a SHA-256 and every column")

# ---- job report through the admin port -------------------------------------------------
port = fvtest.free_port()
adm = subprocess.Popen(fvfed.WRAPPER + [coordinator, "--config",
                                        f"{tmp}/fed/coordinator/coordinator.json", "--state",
                                        f"{tmp}/ref/state", "--out", f"{tmp}/ref", "--listen",
                                        "127.0.0.1:0", "--admin-listen", f"127.0.0.1:{port}"],
                       stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/admin.log", "w"))
admin = ["--config", f"{tmp}/fed/ops-1/admin.json", "--admin", f"127.0.0.1:{port}"]
try:
    for _ in range(int(100 * S)):
        code, _, _ = fvtest.run(["status", *admin])
        if code == 0:
            break
        time.sleep(0.2)
    cli_page = f"{tmp}/cli-report.html"
    code, out, err = fvtest.run(["job", "report", job_id[:12], "--out", cli_page, *admin])
    fvtest.check(code == 0 and os.path.isfile(cli_page), f"job report: {code} {out} {err}")
    code, out, err = fvtest.run(["job", "report", job_id[:12], "--json", *admin])
    fvtest.check(code == 0, f"job report --json: {code} {err}")
    doc = json.loads(out)
    code, out, err = fvtest.run(["job", "report", job_id[:12], *admin])
    fvtest.check(code == 2 and "--out" in err, f"job report without --out: {code} {err}")
    code, out, err = fvtest.run(["job", "report", "ffff0000", "--out", f"{tmp}/x.html",
                                 *admin])
    fvtest.check(code == 1 and "ffff0000" in err, f"job report of an unknown job: {code} {err}")
    code, out, err = fvtest.run(["job", "report", job_id[:12], "--out",
                                 f"{tmp}/no/such/dir/r.html", *admin])
    fvtest.check(code == 1 and f"{tmp}/no/such/dir/r.html" in err,
                 f"job report into a missing directory: {code} {err}")
finally:
    adm.send_signal(signal.SIGTERM)
    adm.wait(timeout=60 * S)

fvtest.check(doc["audit"]["verified"] is True, f"audit: {doc['audit']}")
fvtest.check(doc["job"]["id"] == job_id and doc["job"]["name"] == job["name"], "doc job")

state_rounds = fvfed.db_rows(tmp, "ref", "SELECT round, attempt, kind, status FROM rounds "
                                         "ORDER BY round, attempt")


# ---- chromium over the DevTools protocol (a pipe: fd 3 to it, fd 4 from it) ------------
class Browser:
    def __init__(self):
        r_in, w_in = os.pipe()    # we write, chromium reads (its fd 3)
        r_out, w_out = os.pipe()  # chromium writes (its fd 4), we read
        # high numbers first, so the dup2 to 3 and 4 cannot clobber one another
        hi_in, hi_out = fcntl.fcntl(r_in, fcntl.F_DUPFD, 100), fcntl.fcntl(w_out,
                                                                            fcntl.F_DUPFD, 100)
        os.close(r_in)
        os.close(w_out)
        r_in, w_out = hi_in, hi_out

        def fds():
            os.dup2(r_in, 3)
            os.dup2(w_out, 4)

        self.profile = f"{tmp}/chromium-profile"
        self.p = subprocess.Popen(
            [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--disable-sync",
             "--disable-background-networking", "--disable-component-update",
             "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
             "--window-size=1200,3000", "about:blank"],
            pass_fds=(3, 4), preexec_fn=fds, stdout=subprocess.DEVNULL,
            stderr=open(f"{tmp}/chromium.log", "w"))
        os.close(r_in)
        os.close(w_out)
        self.w, self.r = w_in, r_out
        self.buf = b""
        self.next_id = 0
        self.events = []

    def _read_msg(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.r], [], [], left)[0]:
                fvtest.fail("chromium did not answer in time")
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                fvtest.fail("chromium closed its pipe (see chromium.log)")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=None, timeout=60):
        self.next_id += 1
        m = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            m["sessionId"] = session
        os.write(self.w, json.dumps(m).encode() + b"\0")
        deadline = time.monotonic() + timeout * S
        while True:
            msg = self._read_msg(deadline)
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    fvtest.fail(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, name, timeout=60):
        deadline = time.monotonic() + timeout * S
        for e in self.events:
            if e.get("method") == name:
                return e
        while True:
            msg = self._read_msg(deadline)
            self.events.append(msg)
            if msg.get("method") == name:
                return msg

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except SystemExit:
            pass
        try:
            self.p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


EXTRACT = r"""
(() => {
  const num = s => (s === undefined ? undefined : JSON.parse(s));
  return JSON.stringify({
    title: document.title,
    h1: document.querySelector('h1').textContent,
    charts: Array.from(document.querySelectorAll('svg.chart')).map(svg => {
      const d = svg.dataset, box = svg.getBoundingClientRect();
      return {
        cls: svg.getAttribute('class'),
        caption: svg.closest('figure').querySelector('figcaption').textContent,
        shown: box.width > 0 && box.height > 0,
        frame: {x0: +d.x0, x1: +d.x1, y0: +d.y0, y1: +d.y1,
                px0: +d.px0, px1: +d.px1, py0: +d.py0, py1: +d.py1},
        series: Array.from(svg.querySelectorAll('g.series')).map(g => ({
          key: g.dataset.series, x: num(g.dataset.x), values: num(g.dataset.values),
          points: num(g.dataset.points),
          polylines: Array.from(g.querySelectorAll('polyline')).map(
            p => Array.from(p.points).map(q => [q.x, q.y])),
          circles: Array.from(g.querySelectorAll('circle')).map(
            c => [c.cx.baseVal.value, c.cy.baseVal.value]),
        })),
        bars: Array.from(svg.querySelectorAll('rect.bar')).map(r => ({
          name: r.dataset.name, value: num(r.dataset.value),
          x: r.x.baseVal.value, width: r.width.baseVal.value})),
      };
    }),
    explanation: document.querySelector('#explanation').textContent,
    cohortRows: Array.from(document.querySelectorAll('#cohorts-table tr')).slice(1).map(
      tr => Array.from(tr.cells).map(c => c.textContent)),
    agentRows: Array.from(document.querySelectorAll('#agents-table tr')).slice(1).map(
      tr => Array.from(tr.cells).map(c => c.textContent)),
    compression: Array.from(document.querySelectorAll('#compression-table tr')).slice(1).map(
      tr => Array.from(tr.cells).map(c => c.textContent)),
    audit: document.querySelector('#audit-verdict').textContent,
  });
})()
"""


def load(browser, path):
    """Loads path in a new tab; returns (the extracted DOM facts, console errors,
    requests other than the page itself)."""
    t = browser.call("Target.createTarget", {"url": "about:blank"})
    sess = browser.call("Target.attachToTarget", {"targetId": t["targetId"],
                                                  "flatten": True})["sessionId"]
    for dom in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{dom}.enable", session=sess)
    browser.events.clear()
    url = "file://" + os.path.abspath(path)
    browser.call("Page.navigate", {"url": url}, session=sess)
    browser.wait_event("Page.loadEventFired")
    r = browser.call("Runtime.evaluate", {"expression": EXTRACT, "returnByValue": True},
                     session=sess)
    if "exceptionDetails" in r:
        fvtest.fail(f"{path}: extracting the DOM failed: {r['exceptionDetails']}")
    facts = json.loads(r["result"]["value"])
    # a last round trip, so every event of the load has arrived
    browser.call("Runtime.evaluate", {"expression": "1"}, session=sess)
    errors, requests = [], []
    for e in browser.events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            errors.append(p)
        elif m == "Runtime.exceptionThrown":
            errors.append(p)
        elif m == "Log.entryAdded" and p["entry"].get("level") in ("error", "warning"):
            errors.append(p["entry"])
        elif m == "Network.requestWillBeSent" and p["request"]["url"] != url:
            requests.append(p["request"]["url"])
    browser.call("Target.closeTarget", {"targetId": t["targetId"]})
    return facts, errors, requests


def close(a, b, tol, what):
    fvtest.check(a is not None and b is not None and abs(a - b) <= tol,
                 f"{what}: {a} vs {b} (tolerance {tol})")


def back(frame, px, py):
    """A pixel of the plot mapped back to data coordinates."""
    x = frame["x0"] + (px - frame["px0"]) / (frame["px1"] - frame["px0"]) * (
        frame["x1"] - frame["x0"])
    y = frame["y0"] + (frame["py0"] - py) / (frame["py0"] - frame["py1"]) * (
        frame["y1"] - frame["y0"])
    return x, y


def tolerances(frame):
    # a pixel is printed with 3 decimals and parsed as float32 by the browser
    return (2e-3 * (frame["x1"] - frame["x0"]) / (frame["px1"] - frame["px0"]),
            2e-3 * (frame["y1"] - frame["y0"]) / (frame["py0"] - frame["py1"]))


def check_drawn(chart, s, pts, what):
    """Every defined point of series s is drawn (a circle, and on a polyline of its run)
    where its value says."""
    f = chart["frame"]
    tx, ty = tolerances(f)
    circles = s["circles"]
    fvtest.check(len(circles) == len(pts), f"{what}: {len(circles)} circles, {len(pts)} "
                 f"defined points")
    for (cx, cy), (x, y) in zip(circles, pts):
        bx, by = back(f, cx, cy)
        close(bx, x, tx, f"{what}: circle x")
        close(by, y, ty, f"{what}: circle y")
    drawn = [back(f, px, py) for pl in s["polylines"] for px, py in pl]
    if len(pts) >= 2 and len(s["polylines"]) == 0:
        fvtest.fail(f"{what}: no line drawn through {len(pts)} points")
    for bx, by in drawn:
        fvtest.check(any(abs(bx - x) <= tx and abs(by - y) <= ty for x, y in pts),
                     f"{what}: a polyline vertex ({bx}, {by}) is no record's point")


def curves_from_hist(pos, neg):
    P, N = sum(pos), sum(neg)
    roc, pr, tp, fp = [[0.0, 0.0]], [], 0, 0
    for b in range(len(pos) - 1, -1, -1):
        if pos[b] + neg[b] == 0:
            continue
        tp += pos[b]
        fp += neg[b]
        roc.append([fp / N, tp / P])
        pr.append([tp / P, tp / (tp + fp)])
    return roc, pr


def check_page(path, facts, errors, requests):
    html = open(path, encoding="utf-8").read()
    fvtest.check(not re.search(r"https?://", html), f"{path}: an http(s) URL in the page")
    fvtest.check("<script" not in html.lower(), f"{path}: a <script> in the page")
    fvtest.check(not errors, f"{path}: console errors {errors}")
    fvtest.check(not requests, f"{path}: requests {requests}")
    fvtest.check(facts["h1"] == "Job report: " + job["name"], f"h1 {facts['h1']!r}")
    charts = facts["charts"]
    fvtest.check(all(c["shown"] for c in charts), f"{path}: a chart with no size")
    # per-round curves: every series of every round chart equals rounds.jsonl
    n_series = 0
    for kind in ("train", "distill"):
        recs = sorted((l for l in lines if l["kind"] == kind), key=lambda l: l["round"])
        fvtest.check(recs, f"no {kind} line in rounds.jsonl")
        mine = [c for c in charts if "rounds" in c["cls"] and c["caption"].startswith(kind + ":")]
        keys = {s["key"] for c in mine for s in c["series"]}
        want = {k for l in recs for k in l if k.endswith(("roc_auc", "pr_auc", "log_loss",
                                                          "accuracy"))}
        fvtest.check(keys == want, f"{kind}: series {sorted(keys)}, records have {sorted(want)}")
        for c in mine:
            for s in c["series"]:
                what = f"{path}: {kind} {s['key']}"
                fvtest.check(s["x"] == [l["round"] for l in recs], f"{what}: rounds {s['x']}")
                for v, l in zip(s["values"], recs):
                    r = l.get(s["key"])
                    fvtest.check((v is None and r is None) or (v is not None and r is not None
                                 and abs(v - r) <= 1e-12 * max(1, abs(r))),
                                 f"{what}: round {l['round']}: {v} vs record {r}")
                pts = [(l["round"], l[s["key"]]) for l in recs if l.get(s["key"]) is not None]
                check_drawn(c, s, pts, what)
                n_series += 1
    # the final model's ROC and PR curves from the histograms in the records
    train = [l for l in lines if l["kind"] == "train"]
    final_r = max(l["round"] for l in train if l.get("improved"))
    fl = [l for l in train if l["round"] == final_r][-1]
    fvtest.check("hist_pos" in fl and len(fl["hist_pos"]) == job.get("hist_bins", 1000),
                 f"round {final_r}'s line has no histograms of hist_bins bins")
    roc, pr = curves_from_hist(fl["hist_pos"], fl["hist_neg"])
    for key, want in (("roc", roc), ("pr", pr)):
        c = [c for c in charts if any(s["key"] == key for s in c["series"])]
        fvtest.check(len(c) == 1, f"{path}: {len(c)} {key} charts")
        s = [s for s in c[0]["series"] if s["key"] == key][0]
        fvtest.check(len(s["points"]) == len(want), f"{key}: {len(s['points'])} points, "
                     f"recomputed {len(want)}")
        for (x, y), (wx, wy) in zip(s["points"], want):
            close(x, wx, 1e-12, f"{key} x")
            close(y, wy, 1e-12, f"{key} y")
        f = c[0]["frame"]
        tx, ty = tolerances(f)
        drawn = [back(f, px, py) for px, py in s["polylines"][0]]
        fvtest.check(len(drawn) == len(want), f"{key}: {len(drawn)} vertices drawn")
        for (bx, by), (wx, wy) in zip(drawn, want):
            close(bx, wx, tx, f"{key} drawn x")
            close(by, wy, ty, f"{key} drawn y")
    # the explanation's bars: the explain round's columns, largest first
    ex = [l for l in lines if l["kind"] == "explain"]
    fvtest.check(len(ex) == 1, f"explain rounds in rounds.jsonl: {len(ex)}, expected 1")
    bars = [b for c in charts for b in c["bars"]]
    cols = sorted(ex[-1]["explanation"]["columns"], key=lambda c: (-c["mean_abs"], c["name"]))
    fvtest.check(len(bars) == min(40, len(cols)) and len(bars) > 0
                 and [b["name"] for b in bars] == [c["name"] for c in cols[:len(bars)]],
                 f"bars {[b['name'] for b in bars]} are not the columns by size")
    c = [c for c in charts if c["bars"]][0]
    f = c["frame"]
    tx, _ = tolerances(f)
    for b, col in zip(bars, cols):
        close(b["value"], col["mean_abs"], 1e-12, f"bar {b['name']}")
        close(back(f, b["x"] + b["width"], 0)[0], col["mean_abs"], tx, f"bar {b['name']} width")
    # the cohort of every round: the state's rows
    got = [(int(r[0]), int(r[1]), r[2], r[3]) for r in facts["cohortRows"]]
    fvtest.check(got == [tuple(r) for r in state_rounds], f"cohort rows {got} vs state "
                 f"{state_rounds}")
    names = sorted(r[0] for r in facts["agentRows"])
    fvtest.check(names == sorted(fvfed.BANKS), f"agents {names}")
    fvtest.check(all(re.fullmatch(r"[0-9a-f]{64}", r[2]) for r in facts["agentRows"]),
                 f"fingerprints {facts['agentRows']}")
    fvtest.check([r[0] for r in facts["compression"]] == ["teacher", "student", "student int8"]
                 and facts["compression"][0][1] == "mlp:16", f"compression {facts['compression']}")
    fvtest.check("verified" in facts["audit"] and "NOT" not in facts["audit"],
                 f"audit: {facts['audit']}")
    return n_series


b = Browser()
try:
    b.call("Browser.getVersion")
    for page in (end_page, cli_page):
        t0 = time.time()
        facts, errors, requests = load(b, page)
        n = check_page(page, facts, errors, requests)
        print(f"{os.path.basename(page)}: {len(facts['charts'])} charts, {n} round series "
              f"checked against rounds.jsonl, ROC/PR against the histograms "
              f"({time.time() - t0:.1f} s in chromium)")
finally:
    b.close()
print(f"report_browser: ok in {time.time() - T_START:.1f} s (job {t_job - T_START:.1f} s)")
