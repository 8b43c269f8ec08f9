"""fedvault-serve (agent/serve/) as a real process, with releases signed by fv-release-tool
under a provisioned federation's coordinator key.

Cases, each an assertion on answers, never on durations (windows and deadlines are driven
by the admin socket's test hooks: FV_TEST_SERVE=1, a manual clock and added latency):
  - no model: /healthz 200, /readyz 503, /v1/score 503;
  - scores of one row and of a batch equal `fedvault predict --format jsonl` to 1e-6,
    reason codes equal `predict --explain 3`'s;
  - bad requests each get a 4xx naming the problem while another connection keeps
    getting 200s: malformed JSON, wrong type, unknown and missing column, non-finite
    after scaling (1e41), oversized body (Content-Length and chunked), wrong content
    type, unknown path, wrong method, oversized head, a slow client (408 after the
    header timeout: the assertion is the 408, not a duration); pipelined requests are
    answered in order;
  - bad releases (bad signature, wrong hash, another federation's manifest, a
    truncated file, a signer from another federation's CA) refused, counted per reason,
    and the resident version kept;
  - promote and rollback (the CLI) under load from client threads: zero failed requests
    and every request sent after the command returned names the target version;
  - breaker: added latency on stable over the p99 budget -> answers from the backup
    (fallback true, label backup); the delay removed and the clock past the cool-down ->
    back to stable; a deadline miss is answered by the backup;
  - a canary with injected failures is rolled back automatically (log and audit);
  - connection caps: per source address, and eviction of a silent connection at the
    global cap (sources 127.0.0.1 and 127.0.0.2);
  - HTTPS with client certificates (mTLS), a client without one refused; the CRL taken
    from <model-dir>/crl.pem (where the agent keeps it) when --crl is not given.
"""
import http.client
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time

from fvtest import DATA, SLOW, WRAPPER, check, fail, run, tmpdir

FV, SERVE, TOOL = sys.argv[1], sys.argv[2], sys.argv[3]
GC = os.path.join(DATA, "german_credit.csv")
TOL = 1e-6


def clean(err):
    check("AddressSanitizer" not in err and "runtime error" not in err
          and "LeakSanitizer" not in err, f"sanitizer:\n{err}")


# ---- fixtures ---------------------------------------------------------------------------

def read_rows(path, n):
    """The first n data rows as dicts (numbers where the cell parses as one)."""
    import csv
    with open(path, newline="") as f:
        rd = csv.DictReader(f)
        out = []
        for r in rd:
            row = {}
            for k, v in r.items():
                if k == "class":
                    continue
                try:
                    row[k] = float(v) if "." in v else int(v)
                except ValueError:
                    row[k] = v
            out.append(row)
            if len(out) == n:
                return out
    return out


def train(tmp, name, arch, seed):
    m = os.path.join(tmp, name + ".fvm")
    run(["train", "--data", GC, "--target", "class", "--positive", "bad", "--model", arch,
         "--out", m, "--quiet", "--epochs", "3", "--seed", str(seed)], expect=0)
    return m


def sign(kit, model, release, label, version, out, federation="f1"):
    p = subprocess.run([TOOL, "--key", f"{kit}/key.pem", "--cert", f"{kit}/cert.pem",
                        "--federation", federation, "--release", str(release), "--label", label,
                        "--version", str(version), "--model", model, "--out", out],
                       capture_output=True, text=True)
    check(p.returncode == 0, f"fv-release-tool: {p.stderr}")
    return p.stdout.strip()


class Serve:
    def __init__(self, args):
        env = dict(os.environ, FV_TEST_SERVE="1")
        self.p = subprocess.Popen(WRAPPER + [SERVE] + [str(a) for a in args],
                                  stderr=subprocess.PIPE, text=True, env=env)
        SERVERS.append(self.p)
        self.log = []
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ev = self.wait(lambda e: e.get("event") == "listening", 60 * SLOW, "listening")
        self.port = ev["port"]
        self.sock = ev["admin_socket"]

    def _read(self):
        for line in self.p.stderr:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                ev = {"event": "junk", "line": line}
            self.log.append(ev)
            self.q.put(ev)

    def wait(self, pred, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                ev = self.q.get(timeout=0.2)
            except queue.Empty:
                if self.p.poll() is not None:
                    break
                continue
            if pred(ev):
                return ev
        fail(f"fedvault-serve: no {what}; log:\n" + "\n".join(json.dumps(e) for e in self.log))

    def admin(self, obj):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(120 * SLOW)
        s.connect(self.sock)
        s.sendall((json.dumps(obj) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            b = s.recv(65536)
            if not b:
                break
            buf += b
        s.close()
        return json.loads(buf)

    def ok(self, obj):
        a = self.admin(obj)
        check(a.get("ok") is True, f"admin {obj}: {a}")
        return a

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120 * SLOW)

    def stop(self):
        self.p.terminate()
        code = self.p.wait(timeout=120 * SLOW)
        time.sleep(0.2)
        junk = "\n".join(e.get("line", "") for e in self.log if e.get("event") == "junk")
        clean(junk)
        check(code == 0, f"fedvault-serve exit {code}; its lines that are not log events:\n"
              + junk[-4000:])


def req(c, method, path, body=None, ctype="application/json"):
    headers = {"Content-Type": ctype} if body is not None else {}
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    try:
        j = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        j = None
    return r.status, j, data


def score(c, rows, **kw):
    body = dict(kw)
    body["rows"] = rows
    return req(c, "POST", "/v1/score", body)


def raw(port, data, read_until_close=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=120 * SLOW)
    s.sendall(data)
    buf = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        buf += b
        if not read_until_close:
            break
    s.close()
    return buf


# ---- the test ---------------------------------------------------------------------------

SERVERS = []


def main():
    try:
        test()
    finally:
        for p in SERVERS:  # a failed check must not leave a daemon behind
            if p.poll() is None:
                p.kill()


def test():
    tmp = tmpdir()
    for fed in ("f1", "f2"):
        os.makedirs(f"{tmp}/{fed}")
        run(["provision", "--federation", fed, "--coordinator", "127.0.0.1:0", "--agents",
             "bank-a", "--admins", "ops-1", "--out", f"{tmp}/{fed}/fed"], expect=0)
    coord, coord2 = f"{tmp}/f1/fed/coordinator", f"{tmp}/f2/fed/coordinator"
    bank = f"{tmp}/f1/fed/bank-a"
    m1 = train(tmp, "m1", "logreg", 1)
    m2 = train(tmp, "m2", "logreg", 2)
    m3 = train(tmp, "m3", "mlp:8", 3)
    m4 = train(tmp, "m4", "logreg", 4)
    mdir = f"{tmp}/models"
    scratch = f"{tmp}/scratch"
    os.makedirs(mdir)
    os.makedirs(scratch)
    audit = f"{tmp}/serve-audit.log"
    # part of the configuration in --config (keys with '_' or '-'), a flag overriding one
    conf = f"{tmp}/serve.json"
    json.dump({"model_dir": mdir, "ca": f"{bank}/ca.pem", "crl": f"{tmp}/f1/fed/ca/crl.pem",
               "threads": 2, "poll-ms": 3600000,
               "max_body": 65536, "listen": "127.0.0.1:1", "shadow": False}, open(conf, "w"))
    sv = Serve(["--config", conf, "--listen", "127.0.0.1:0",
                "--header-timeout-ms", str(300 * SLOW), "--p99-budget-us", "20000",
                "--min-requests", "5", "--window-ms", "60000", "--cooldown-ms", "500",
                "--probes", "2", "--deadline-us", "1000000", "--consecutive-misses", "0",
                "--canary-max-error-rate", "0.5", "--audit", audit, "--identity",
                f"{bank}/agent.json"])
    c = sv.conn()

    # ---- no model yet
    check(req(c, "GET", "/healthz")[0] == 200, "/healthz")
    check(req(c, "GET", "/readyz")[0] == 503, "/readyz without a model")
    rows = read_rows(GC, 40)
    st, j, _ = score(c, rows[:1])
    check(st == 503 and "no model" in j["error"], f"score without a model: {st} {j}")

    # ---- stable v1 (logreg) and backup v3 (mlp)
    sign(coord, m1, 1, "stable", 1, mdir)
    sign(coord, m3, 2, "backup", 3, mdir)
    a = sv.ok({"cmd": "reload"})
    check((a["models"]["models"]["stable"] or {}).get("version") == "1",
          f"stable after reload: {a}\n{sv.log}")
    check(a["models"]["models"]["backup"]["version"] == "3", f"backup after reload: {a}")
    check(req(c, "GET", "/readyz")[0] == 200, "/readyz with a model")

    # ---- scores equal predict's
    import csv as _csv
    sub = f"{tmp}/rows.csv"
    with open(GC, newline="") as f:
        lines = f.read().splitlines()
    with open(sub, "w") as f:
        f.write("\n".join(lines[:41]) + "\n")
    _, out, err = run(["predict", "--model", m1, "--data", sub, "--format", "jsonl",
                       "--explain", "3"], expect=0)
    ref = [json.loads(x) for x in out.splitlines()]
    st, j, _ = score(c, rows[:1], explain=True)
    check(st == 200 and j["model"]["version"] == "1" and j["model"]["label"] == "stable"
          and j["fallback"] is False, f"one row: {st} {j}")
    check(abs(j["results"][0]["score"] - ref[0]["score"]) <= TOL, f"one row: {j} vs {ref[0]}")
    st, j, _ = score(c, rows, explain=True)
    check(st == 200 and len(j["results"]) == 40, f"batch: {st}")
    for got, want in zip(j["results"], ref):
        check(abs(got["score"] - want["score"]) <= TOL and abs(got["logit"] - want["logit"]) <= 1e-5,
              f"batch row {got['row']}: {got} vs {want}")
        check([r["column"] for r in got["reasons"]] == [r["column"] for r in want["reasons"]],
              f"reasons of row {got['row']}: {got['reasons']} vs {want['reasons']}")
        for g, w in zip(got["reasons"], want["reasons"]):
            check(abs(g["contribution"] - w["contribution"]) <= 1e-5, f"contribution {g} {w}")
    st, j, _ = req(c, "POST", "/v1/score", {"row": rows[2]})
    check(st == 200 and abs(j["results"][0]["score"] - ref[2]["score"]) <= TOL, "'row' form")

    # ---- bad requests: a 4xx naming the problem; another connection keeps scoring
    c2 = sv.conn()

    def still_serving():
        s2, j2, _ = score(c2, rows[:1])
        check(s2 == 200 and j2["results"][0]["score"] > 0, f"the other connection: {s2} {j2}")

    st, j, _ = req(c, "POST", "/v1/score", "{\"rows\": [")
    check(st == 400 and "line" in j["error"], f"malformed JSON: {st} {j}")
    c = sv.conn()
    still_serving()
    bad = dict(rows[0], credit_amount="lots")
    st, j, _ = score(c, [bad])
    check(st == 422 and "credit_amount" in j["results"][0]["error"], f"wrong type: {st} {j}")
    st, j, _ = score(c, [bad, rows[1]])
    check(st == 200 and "error" in j["results"][0] and "score" in j["results"][1],
          f"one bad row of two: {st} {j}")
    st, j, _ = score(c, [dict(rows[0], favourite_colour="red")])
    check(st == 422 and "favourite_colour" in j["results"][0]["error"], f"unknown column: {j}")
    miss = dict(rows[0])
    del miss["duration"]
    st, j, _ = score(c, [miss])
    check(st == 422 and "duration" in j["results"][0]["error"], f"missing column: {j}")
    st, j, _ = score(c, [dict(rows[0], credit_amount=1e300), rows[1]])
    check(st == 200 and "credit_amount" in j["results"][0]["error"]
          and "score" in j["results"][1], f"non-finite after scaling: {st} {j}")
    still_serving()
    st, j, _ = req(c, "POST", "/v1/score", json.dumps({"rows": rows[:1]}), ctype="text/plain")
    check(st == 415 and "application/json" in j["error"], f"content type: {st} {j}")
    c = sv.conn()
    st, j, _ = req(c, "GET", "/v1/nothing")
    check(st == 404, f"unknown path: {st}")
    c = sv.conn()
    st, j, _ = req(c, "GET", "/v1/score")
    check(st == 405, f"GET /v1/score: {st}")
    c = sv.conn()
    r = raw(sv.port, b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n", read_until_close=False)
    check(r.startswith(b"HTTP/1.1 413") and b"max-body" in r, f"Content-Length over cap: {r!r}")
    chunk = b"{\"rows\":[" + b" " * 30000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3))
    r = raw(sv.port, b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + body)
    check(r.startswith(b"HTTP/1.1 413"), f"chunked body over cap: {r[:80]!r}")
    r = raw(sv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10000 + b"\r\n\r\n")
    check(r.startswith(b"HTTP/1.1 431"), f"head over cap: {r[:80]!r}")
    still_serving()
    # a slow client: half a head, then nothing: 408 after the header timeout, while
    # another connection is served
    slow = socket.create_connection(("127.0.0.1", sv.port), timeout=120 * SLOW)
    slow.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\n")
    still_serving()
    r = b""
    while True:
        b = slow.recv(65536)
        if not b:
            break
        r += b
    slow.close()
    check(r.startswith(b"HTTP/1.1 408") and b"header timeout" in r, f"slow client: {r!r}")
    still_serving()
    # pipelining: two requests in one write, answered in order on the same connection
    one = json.dumps({"rows": rows[:1]}).encode()
    two = json.dumps({"rows": rows[:2]}).encode()
    r = raw(sv.port, b"".join(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: "
                              b"application/json\r\nContent-Length: %d\r\n%s\r\n%s"
                              % (len(b), b"Connection: close\r\n" if b is two else b"", b)
                              for b in (one, two)))
    check(r.count(b"HTTP/1.1 200") == 2 and r.index(b"\"row\":1") > r.index(b"HTTP/1.1 200", 1),
          f"pipelined: {r!r}")

    # ---- bad releases: refused, counted, stable kept
    def release_copy(model, rel, label, version, fed="f1", kit=coord):
        d = f"{scratch}/{rel}"
        os.makedirs(d)
        sha = sign(kit, model, rel, label, version, d, federation=fed)
        return d, sha

    d, sha = release_copy(m2, 10, "stable", 2)                    # bad signature
    env = json.load(open(f"{d}/{sha}.release.json"))
    sig = env["sig"]
    env["sig"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    json.dump(env, open(f"{mdir}/{sha}.release.json", "w"))
    shutil.copy(m2, f"{mdir}/{sha}.fvm")
    d, sha = release_copy(m4, 11, "stable", 4)                    # wrong hash
    data = bytearray(open(m4, "rb").read())
    data[-1] ^= 1
    open(f"{mdir}/{sha}.fvm", "wb").write(data)
    os.rename(f"{d}/{sha}.release.json", f"{mdir}/{sha}.release.json")
    m5 = train(tmp, "m5", "logreg", 5)
    d, sha = release_copy(m5, 12, "stable", 5, fed="f2")          # another federation
    os.rename(f"{d}/{sha}.release.json", f"{mdir}/{sha}.release.json")
    os.rename(f"{d}/{sha}.fvm", f"{mdir}/{sha}.fvm")
    m6 = train(tmp, "m6", "logreg", 6)
    d, sha = release_copy(m6, 13, "stable", 6)                    # truncated
    open(f"{mdir}/{sha}.fvm", "wb").write(open(m6, "rb").read()[:100])
    os.rename(f"{d}/{sha}.release.json", f"{mdir}/{sha}.release.json")
    m7 = train(tmp, "m7", "logreg", 7)
    d, sha = release_copy(m7, 14, "stable", 7, kit=coord2)  # a signer under another CA
    os.rename(f"{d}/{sha}.release.json", f"{mdir}/{sha}.release.json")
    os.rename(f"{d}/{sha}.fvm", f"{mdir}/{sha}.fvm")
    a = sv.ok({"cmd": "reload"})
    models = a["models"]
    check(models["models"]["stable"]["version"] == "1", f"stable kept: {models}")
    reasons = sorted(r["reason"] for r in models["rejected"])
    check(len(models["rejected"]) == 5, f"five refused: {models['rejected']}")
    for want in ("hash", "truncated", "federation", "signature"):
        check(want in reasons, f"refusal '{want}' missing: {models['rejected']}")
    sv.ok({"cmd": "reload"})  # refused again, but logged and counted once
    _, _, met = req(c, "GET", "/metrics")
    met = met.decode()
    for want, n in (("hash", 1), ("truncated", 1), ("federation", 1), ("signature", 2)):
        check(f'fv_serve_releases_rejected_total{{reason="{want}"}} {n}' in met,
              f"metric for {want}:\n{met}\n{models['rejected']}")
    refused = [e for e in sv.log if e.get("event") == "release_refused"]
    check(len(refused) == 5, f"each refusal logged once: {refused}")
    st, j, _ = score(c, rows[:1])
    check(st == 200 and j["model"]["version"] == "1", f"still v1: {j}")

    # ---- promote and rollback under load
    sign(coord, m2, 20, "canary", 2, mdir)
    a = sv.ok({"cmd": "reload"})
    check(a["models"]["models"]["canary"]["version"] == "2", f"canary loaded: {a}")
    epoch = [0]
    want = {0: "1", 1: "2", 2: "1"}
    stop = threading.Event()
    errors, counts = [], [0]

    def client():
        cc = sv.conn()
        while not stop.is_set():
            e = epoch[0]
            try:
                s3, j3, _ = score(cc, rows[:2])
            except Exception as ex:  # a dropped request is a failure
                errors.append(f"exception {ex!r}")
                cc = sv.conn()
                continue
            counts[0] += 1
            if s3 != 200:
                errors.append(f"status {s3} {j3}")
            elif e in want and j3["model"]["version"] != want[e]:
                errors.append(f"epoch {e}: version {j3['model']['version']}")

    ts = [threading.Thread(target=client) for _ in range(3)]
    for t in ts:
        t.start()
    time.sleep(0.3)
    epoch[0] = -1  # the switch is in flight: either version is right
    rc, out, err = run(["serve", "promote", "--socket", sv.sock])
    check(rc == 0, f"serve promote: {rc} {err}")
    epoch[0] = 1
    time.sleep(0.3)
    epoch[0] = -1
    rc, out, err = run(["serve", "rollback", "--socket", sv.sock])
    check(rc == 0, f"serve rollback: {rc} {err}")
    epoch[0] = 2
    time.sleep(0.3)
    stop.set()
    for t in ts:
        t.join()
    check(not errors, f"under load: {errors[:5]} ({len(errors)} of {counts[0]})")
    check(counts[0] >= 6, f"too few requests under load: {counts[0]}")
    rc, out, err = run(["serve", "status", "--socket", sv.sock])
    check(rc == 0 and json.loads(out)["models"]["models"]["stable"]["version"] == "1",
          f"status after rollback: {out} {err}")

    # ---- breaker: stable slowed past the p99 budget -> backup; recovered -> stable
    # the manual clock past the window first: the requests of the load phase leave it
    sv.ok({"cmd": "test.clock", "advance_ms": 61000})
    sv.ok({"cmd": "test.delay", "label": "stable", "us": 50000})
    labels = []
    for _ in range(12):
        st, j, _ = score(c, rows[:1])
        check(st == 200, f"breaker: {st} {j}")
        labels.append((j["model"]["label"], j["fallback"]))
    check(labels[-1] == ("backup", True), f"breaker did not open: {labels}")
    check(sv.admin({"cmd": "status"})["models"]["breaker"] == "open", "breaker state")
    sv.ok({"cmd": "test.delay", "label": "stable", "us": 0})
    sv.ok({"cmd": "test.clock", "advance_ms": 600})
    labels = []
    for _ in range(10):
        st, j, _ = score(c, rows[:1])
        labels.append((j["model"]["label"], j["fallback"]))
    check(labels[-1] == ("stable", False), f"breaker did not close: {labels}")
    check(sv.admin({"cmd": "status"})["models"]["breaker"] == "closed", "breaker closed")
    # a deadline miss is answered by the backup
    sv.ok({"cmd": "test.delay", "label": "stable", "us": 2000000})
    st, j, _ = score(c, rows[:1])
    check(st == 200 and j["model"]["label"] == "backup" and j["fallback"] is True,
          f"deadline miss: {j}")
    sv.ok({"cmd": "test.delay", "label": "stable", "us": 0})
    # that slow request may have opened the breaker again (its p99): recover before the
    # canary, which is routed only while the breaker is closed
    sv.ok({"cmd": "test.clock", "advance_ms": 600})
    for _ in range(10):
        score(c, rows[:1])
    check(sv.admin({"cmd": "status"})["models"]["breaker"] == "closed", "breaker closed again")

    # ---- a failing canary is rolled back automatically
    sign(coord, m4, 30, "canary", 4, mdir)
    sv.ok({"cmd": "reload"})
    # shadow: the canary scores beside stable, stable answers, divergence is counted
    rc, out, err = run(["serve", "shadow", "on", "--socket", sv.sock])
    check(rc == 0, f"serve shadow on: {err}")
    st, j, _ = score(c, rows[:3])
    check(st == 200 and j["model"]["label"] == "stable", f"shadow answer: {j}")
    _, _, met = req(c, "GET", "/metrics")
    met = met.decode()
    check("fv_serve_shadow_scored_total 1" in met and "fv_serve_shadow_diverged_total 1" in met,
          f"shadow metrics:\n{met}")
    sv.ok({"cmd": "shadow", "on": False})
    sv.ok({"cmd": "canary", "percent": 100})
    sv.ok({"cmd": "test.fail", "label": "canary", "on": True})
    seen = []
    for _ in range(12):
        st, j, _ = score(c, rows[:1])
        check(st == 200, f"failing canary: {st} {j}")
        seen.append(j["model"]["label"])
    check(seen[-1] == "stable", f"canary not rolled back: {seen}")
    a = sv.admin({"cmd": "status"})["models"]
    check(a["models"]["canary"] is None and a["auto_rollbacks"] == 1, f"after auto rollback: {a}")
    sv.wait(lambda e: e.get("event") == "route_auto_rollback", 30 * SLOW, "route_auto_rollback")
    _, _, met = req(c, "GET", "/metrics")
    met = met.decode()
    for name in ("fv_serve_requests_total{", "fv_serve_request_seconds_bucket{",
                 "fv_serve_breaker_state ", "fv_serve_canary_percent "):
        check(name in met, f"/metrics lacks {name}")
    sv.stop()
    text = open(audit).read()
    for ev in ("serve.promote", "serve.rollback", "serve.breaker", "serve.auto_rollback"):
        check(ev in text, f"audit lacks {ev}")
    rc, out, err = run(["audit", "verify", "--log", audit, "--head", audit + ".head", "--cert",
                        f"{bank}/cert.pem"])
    check(rc == 0, f"audit verify: {out} {err}")
    caps(tmp, bank)
    tls(tmp, bank, mdir)
    print("serve: ok")


def tls(tmp, bank, mdir):
    """HTTPS with client certificates (mTLS): keep-alive requests of several TLS records
    answered; a client without a certificate refused at the handshake."""
    import ssl
    fed = f"{tmp}/f1/fed"
    shutil.copy(f"{fed}/ca/crl.pem", f"{mdir}/crl.pem")  # as the agent keeps it: the default
    sv = Serve(["--listen", "127.0.0.1:0", "--model-dir", mdir, "--ca", f"{bank}/ca.pem",
                "--admin-socket", f"{tmp}/tls.sock",
                "--tls-cert", f"{fed}/coordinator/cert.pem",
                "--tls-key", f"{fed}/coordinator/key.pem", "--tls-client-ca", f"{fed}/ca/ca.pem"])
    a = sv.ok({"cmd": "reload"})  # the start's scan is asynchronous: wait for one
    check(a["models"]["models"]["stable"] is not None, f"the CRL beside the releases: {a}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # the test's certificate names no host
    ctx.load_verify_locations(f"{fed}/ca/ca.pem")
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.check_hostname = False
    bare.load_verify_locations(f"{fed}/ca/ca.pem")
    ctx.load_cert_chain(f"{fed}/ops-1/cert.pem", f"{fed}/ops-1/key.pem")
    c = http.client.HTTPSConnection("127.0.0.1", sv.port, context=ctx, timeout=120 * SLOW)
    rows = read_rows(GC, 100)  # about 50 KB: several TLS records
    for n in (1, 100, 100, 3):
        st, j, _ = score(c, rows[:n])
        check(st == 200 and len(j["results"]) == n, f"HTTPS, {n} rows: {st} {j}")
    try:
        c2 = http.client.HTTPSConnection("127.0.0.1", sv.port, context=bare, timeout=60 * SLOW)
        st = req(c2, "GET", "/healthz")[0]
        fail(f"a client without a certificate got {st}")
    except (ssl.SSLError, ConnectionError, OSError):
        pass
    c.close()
    sv.stop()


def caps(tmp, bank):
    """Connection caps: per source, and at the global cap a silent connection of the source
    holding the most is evicted for a newcomer from another address."""
    import select
    empty = f"{tmp}/empty-models"
    os.makedirs(empty)
    sv = Serve(["--listen", "127.0.0.1:0", "--model-dir", empty, "--ca", f"{bank}/ca.pem",
                "--max-conns", "4", "--max-conns-per-source", "3"])

    def conn_from(addr):
        s = socket.socket()
        s.bind((addr, 0))
        s.settimeout(60 * SLOW)
        s.connect(("127.0.0.1", sv.port))
        return s

    def healthz(s):
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buf = b""
        while True:
            b = s.recv(65536)
            if not b:
                return buf
            buf += b

    silent = [conn_from("127.0.0.1") for _ in range(3)]
    fourth = conn_from("127.0.0.1")  # over the per-source cap: closed at once
    try:
        r = healthz(fourth)
    except ConnectionResetError:
        r = b""
    check(r == b"", f"a fourth connection from one source was served: {r!r}")
    other = conn_from("127.0.0.2")  # the global cap (4) reached
    other2 = conn_from("127.0.0.2")  # over it: one of 127.0.0.1's silent ones evicted
    r = healthz(other2)
    check(r.startswith(b"HTTP/1.1 200"), f"newcomer at the global cap: {r!r}")
    readable, _, _ = select.select(silent, [], [], 30 * SLOW)
    check(len(readable) == 1 and readable[0].recv(10) == b"", f"evicted: {readable}")
    c = sv.conn()
    _, _, met = req(c, "GET", "/metrics")
    met = met.decode()
    for why in ("per_source", "evicted"):
        check(f'fv_serve_connections_refused_total{{why="{why}"}} 1' in met, f"{why}:\n{met}")
    for s in silent + [fourth, other, other2]:
        s.close()
    c.close()
    sv.stop()


main()
