"""fedvault-serve against a reference server, and its release scenarios under load.

usage: bench_serve.py FEDVAULT [--serve PATH] [--seconds S] [--rates 500,2000]
                      [--scenarios peak,rates,promote,breaker,canary] [--conns N]

Setup (in a scratch directory): splits examples/data/lending_club.csv (75/25, seed 0),
trains the main job's student architecture (mlp:4, seed 0) as "stable" version 1,
another mlp:4 (seed 1) as "canary" version 2 and a logreg as "backup" version 3, exports
version 1 to ONNX, provisions a federation (`fedvault provision`) and writes each model
into a model directory as a signed release (write_release: the manifest and envelope of
protocols/fv_release.h, signed with the coordinator kit's key).

Servers, each pinned to CPU 0 (taskset; the load generators run on CPU 1):
  - fedvault-serve --threads 1 (BUILD/agent/serve/fedvault-serve, or --serve),
  - tests/bench/serve_ref.js: Node's http server, onnxruntime-node on the ONNX export
    (intra/inter-op threads 1, UV_THREADPOOL_SIZE=1), the same request and answer.
Both answer the same request first; their scores must agree to 1e-6.

Measurements (single-row requests: the first test row, a fixed body):
  peak     wrk, one thread, --conns connections, S seconds: requests/s of each, and the
           ratio fedvault / reference (issue 17's goal: >= 5x);
  rates    h2load --h1 --rps at each fixed total rate (4 clients), S seconds: p50 / p99
           latency from h2load's per-request log, and non-200 answers;
  promote  under wrk load, with a probe client (one keep-alive connection in a loop)
           recording each answer's version: canary -> stable (`promote`), then back
           (`rollback`); time from the admin command to the last request sent after it
           that was still answered by the old version, and failed requests (non-200 of
           wrk and the probe, socket errors);
  breaker  FV_TEST_SERVE=1 FV_TEST_SERVE_SLEEP=1: the stable model slowed by a real
           30 ms sleep (test.delay; deadline 25 ms, p99 budget 20 ms) under h2load at
           --breaker-rate (20/s) and the probe: time from the delay to
           traffic on the backup, failed requests, and time back to stable after the
           delay is removed;
  canary   canary_percent 50, keys varying per probe request, test.fail on the canary:
           time to the automatic rollback (no answer from the canary any more).
Timing is printed, never asserted. Exit 1 when fedvault-serve is missing (the reference
side is measured and printed anyway).

ONNX Runtime's node package: tests/onnx/fvnode.py (into $FV_NODE_DIR or BUILD/onnx-node).
wrk and h2load: Debian's wrk and nghttp2-client (.ci/install-deps).
"""
import argparse
import base64
import csv
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import fvbench

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("FV_SOURCE_ROOT", os.path.join(HERE, "..", ".."))
DATA = os.path.join(SRC, "examples", "data", "lending_club.csv")

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(SRC, "tests", "onnx"))
import fvnode  # noqa: E402

FEDERATION = "benchfed"


def die(msg):
    sys.exit(f"bench_serve: {msg}")


def sh(args, env=None):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        die(f"{' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
    return p.stdout


def pin(cpu):
    """taskset prefix for one CPU, or [] on a single-CPU machine (printed)."""
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(cpu)]


# ---- models, federation, releases ----------------------------------------------------

def prepare(fv, d, env):
    tr, te, schema = (os.path.join(d, n) for n in ("train.csv", "test.csv", "schema.json"))
    sh([fv, "split", "--data", DATA, "--target", "Class", "--positive", "bad",
        "--test-fraction", "0.25", "--seed", 0, "--train-out", tr, "--test-out", te])
    sh([fv, "schema", "infer", "--data", DATA, "--target", "Class", "--positive", "bad",
        "--out", schema])
    models = {}
    for name, arch, seed in (("stable", "mlp:4", 0), ("canary", "mlp:4", 1),
                             ("backup", "logreg", 0)):
        out = os.path.join(d, f"{name}.fvm")
        sh([fv, "train", "--data", tr, "--schema", schema, "--test-fraction", "0",
            "--model", arch, "--seed", seed, "--threads", 1, "--quiet", "--out", out], env=env)
        models[name] = out
    onnx = os.path.join(d, "stable.onnx")
    sh([fv, "export", "--model", models["stable"], "--format", "onnx", "--out", onnx])
    sh([fv, "provision", "--federation", FEDERATION, "--coordinator", "127.0.0.1:7443",
        "--agents", "bank-a", "--admins", "ops-1", "--out", os.path.join(d, "fed")])
    return tr, te, schema, models, onnx


def atomic_write(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def write_release(model_dir, kit, fvm, label, version, counter, kind="student"):
    """Writes fvm into model_dir as a signed release (protocols/fv_release.h): the model
    file <sha>.fvm first, then <sha>.release.json, the envelope {"manifest", "sig",
    "cert"} whose manifest (compact JSON, sorted keys) is signed with Ed25519 by the
    coordinator kit's key (openssl pkeyutl -rawin: the signature over the text's exact
    bytes). The one place the benchmark makes releases: the coordinator's own path
    (`fedvault model release`) needs a whole federation run, which this does not time."""
    with open(fvm, "rb") as f:
        model = f.read()
    sha = hashlib.sha256(model).hexdigest()
    manifest = json.dumps({
        "federation": FEDERATION, "release": counter, "label": label, "version": version,
        "model_sha256": sha, "model_bytes": len(model), "job": "", "kind": kind,
        "lineage": {}, "report": None,
        "released": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), "by": "ops-1",
    }, separators=(",", ":"), sort_keys=True)
    mpath = os.path.join(model_dir, f".manifest-{sha}")
    with open(mpath, "w") as f:
        f.write(manifest)
    sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-rawin", "-inkey",
                          os.path.join(kit, "key.pem"), "-in", mpath],
                         capture_output=True, check=True).stdout
    os.unlink(mpath)
    with open(os.path.join(kit, "cert.pem")) as f:
        cert = f.read()
    env = json.dumps({"manifest": manifest, "sig": base64.b64encode(sig).decode(),
                      "cert": cert})
    atomic_write(os.path.join(model_dir, f"{sha}.fvm"), model)
    atomic_write(os.path.join(model_dir, f"{sha}.release.json"), env.encode())
    return sha


def request_body(schema_path, test_csv, key=None):
    """The first test row as a single-row request: feature columns only, numbers as JSON
    numbers ("" / NA as null), categories as strings."""
    with open(schema_path) as f:
        schema = json.load(f)
    with open(test_csv, newline="") as f:
        row = next(csv.DictReader(f))
    obj = {}
    for c in schema["columns"]:
        v = row[c["name"]]
        if c["type"] == "numeric":
            obj[c["name"]] = None if v in ("", "NA") else float(v)
        elif c["type"] == "categorical":
            obj[c["name"]] = v
    body = {"row": obj}
    if key is not None:
        body["key"] = key
    return body


# ---- servers -------------------------------------------------------------------------

def wait_listening(proc, log_path, who, timeout=60):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        with open(log_path) as f:
            for line in f:
                if '"event":"listening"' in line.replace(" ", ""):
                    return json.loads(line)["port"]
        if proc.poll() is not None:
            die(f"{who} exited {proc.returncode}; see {log_path}")
        time.sleep(0.05)
    die(f"{who}: no listening line in {timeout} s; see {log_path}")


def http_call(port, method, path, body=None, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_ready(port, who, timeout=30):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if http_call(port, "GET", "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    die(f"{who}: /readyz not 200 within {timeout} s")


class Server:
    def __init__(self, argv, env, log_path, who):
        self.who, self.log_path = who, log_path
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(log_path, "w"))
        self.port = wait_listening(self.proc, log_path, who)
        wait_ready(self.port, who)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_serve(serve, d, model_dir, ca, extra=(), env_extra=None):
    sock = os.path.join(d, "serve.sock")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", **(env_extra or {}))
    crl = os.path.join(os.path.dirname(ca), "crl.pem")  # fv_trust checks revocation
    argv = pin(0) + [serve, "--listen", "127.0.0.1:0", "--model-dir", model_dir, "--ca", ca,
                     "--crl", crl, "--admin-socket", sock, "--threads", "1"] + list(extra)
    s = Server(argv, env, os.path.join(d, f"serve-{len(os.listdir(d))}.log"), "fedvault-serve")
    s.sock = sock
    return s


def start_ref(nd, d, onnx, schema, sha):
    env = dict(os.environ, NODE_PATH=os.path.join(nd, "node_modules"), UV_THREADPOOL_SIZE="1",
               OMP_NUM_THREADS="1")
    argv = pin(0) + ["node", os.path.join(HERE, "serve_ref.js"), onnx, schema, "0", "1", sha]
    return Server(argv, env, os.path.join(d, "serve_ref.log"), "serve_ref.js")


def admin(sock, obj, timeout=10):
    """One admin command over fedvault-serve's unix socket: (reply, t_sent, t_answered)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock)
    try:
        t0 = time.monotonic()
        s.sendall((json.dumps(obj) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        t1 = time.monotonic()
    finally:
        s.close()
    try:
        reply = json.loads(buf)
    except json.JSONDecodeError:
        die(f"admin {obj}: not a JSON line: {buf!r}")
    return reply, t0, t1


# ---- load generators -----------------------------------------------------------------

def wrk_script(d, body):
    text = json.dumps(body)
    if "]==]" in text:
        die("request body holds ']==]'")
    path = os.path.join(d, "post.lua")
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                f"wrk.body = [==[{text}]==]\n")
    return path


def wrk_start(port, script, seconds, conns):
    return subprocess.Popen(pin(1) + ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s",
                                      "--latency", "-s", script,
                                      f"http://127.0.0.1:{port}/v1/score"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wrk_result(p):
    out, _ = p.communicate(timeout=600)
    if p.returncode != 0:
        die(f"wrk failed ({p.returncode}):\n{out}")
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if rps is None or total is None:
        die(f"wrk: no Requests/sec in:\n{out}")
    return {"rps": float(rps.group(1)), "requests": int(total.group(1)),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(map(int, sock.groups())) if sock else 0}


def h2load_rate(port, d, body, rate, seconds, clients=4):
    bpath = os.path.join(d, "body.json")
    with open(bpath, "w") as f:
        json.dump(body, f)
    log = os.path.join(d, f"h2load-{port}-{rate}.tsv")
    n = int(rate * seconds)
    p = subprocess.run(pin(1) + ["h2load", "--h1", "-n", str(n), "-c", str(clients),
                                 f"--rps={rate / clients:g}", "-d", bpath,
                                 "-H", "Content-Type: application/json", "--log-file", log,
                                 f"http://127.0.0.1:{port}/v1/score"],
                       capture_output=True, text=True, timeout=seconds * 10 + 120)
    if p.returncode != 0:
        die(f"h2load failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    lat, bad = [], 0
    with open(log) as f:
        for line in f:
            cols = line.split("\t")
            if len(cols) >= 3:
                lat.append(int(cols[2]))
                bad += cols[1] != "200"
    if not lat:
        die(f"h2load: no requests logged:\n{p.stdout}")
    lat.sort()
    q = lambda x: lat[min(len(lat) - 1, int(x * len(lat)))]  # noqa: E731
    return {"rate": rate, "requests": len(lat), "failed": bad + (n - len(lat)),
            "p50_us": q(0.5), "p99_us": q(0.99), "max_us": lat[-1]}


class Probe(threading.Thread):
    """One keep-alive connection posting in a loop; records (sent, answered, status,
    version, label, fallback) per request. keys=True: a new routing key per request."""

    def __init__(self, port, body, keys=False):
        super().__init__(daemon=True)
        self.port, self.body, self.keys = port, body, keys
        self.stop_ev = threading.Event()
        self.log = []
        self.errors = 0

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        n = 0
        while not self.stop_ev.is_set():
            body = dict(self.body, key=f"customer-{n}") if self.keys else self.body
            n += 1
            t0 = time.monotonic()
            try:
                conn.request("POST", "/v1/score", body=json.dumps(body),
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException):
                self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                continue
            t1 = time.monotonic()
            ver = label = None
            fb = False
            try:
                j = json.loads(data)
                ver, label = str(j["model"]["version"]), j["model"]["label"]
                fb = bool(j.get("fallback"))
            except (ValueError, KeyError, TypeError):
                pass
            self.log.append((t0, t1, r.status, ver, label, fb))
        conn.close()

    def finish(self):
        self.stop_ev.set()
        self.join(timeout=30)
        return self.log


def switch_time(log, t_cmd, old_pred):
    """(ms from t_cmd to the last request sent after it whose answer matched old_pred,
    0 when none; the number of requests sent after t_cmd)."""
    after = [e for e in log if e[0] >= t_cmd]
    old = [e[0] for e in after if old_pred(e)]
    return ((max(old) - t_cmd) * 1e3 if old else 0.0), len(after)


# ---- scenarios -----------------------------------------------------------------------

def scenario_promote(serve_exe, d, model_dir, ca, body, seconds, conns):
    s = start_serve(serve_exe, d, model_dir, ca, ["--canary-percent", "0"])
    try:
        script = wrk_script(d, body)
        out = {}
        for cmd, old, new in (("promote", "1", "2"), ("rollback", "2", "1")):
            load = wrk_start(s.port, script, seconds, conns)
            probe = Probe(s.port, body)
            probe.start()
            time.sleep(seconds / 3)
            reply, t0, t1 = admin(s.sock, {"cmd": cmd})
            time.sleep(seconds / 3)
            log = probe.finish()
            w = wrk_result(load)
            last_old, n_after = switch_time(log, t0, lambda e: e[3] == old)
            on_new = sum(1 for e in log if e[0] > t1 and e[3] == new)
            failed = w["non_2xx"] + w["socket_errors"] + probe.errors + sum(
                1 for e in log if e[2] != 200)
            out[cmd] = {"reply": reply, "ack_ms": (t1 - t0) * 1e3,
                        "last_old_version_ms": last_old, "probe_requests_after": n_after,
                        "on_new_after_ack": on_new, "failed": failed, "wrk": w}
            print(f"  {cmd}: answered in {(t1 - t0) * 1e3:.2f} ms; last request answered by "
                  f"version {old} was sent {last_old:.2f} ms after the command; "
                  f"{failed} failed of {w['requests'] + len(log)}", flush=True)
        return out
    finally:
        s.stop()


def scenario_breaker(serve_exe, d, model_dir, ca, body, rate, seconds):
    s = start_serve(serve_exe, d, model_dir, ca,
                    ["--p99-budget-us", "20000", "--deadline-us", "25000",
                     "--consecutive-misses", "5", "--window-ms", "1000", "--min-requests", "5",
                     "--cooldown-ms", "1000", "--probes", "3"],
                    {"FV_TEST_SERVE": "1", "FV_TEST_SERVE_SLEEP": "1"})
    try:
        res = {}
        load = threading.Thread(target=lambda: res.update(
            h2load_rate(s.port, d, body, rate, seconds)), daemon=True)
        load.start()
        probe = Probe(s.port, body)
        probe.start()
        time.sleep(seconds / 4)
        # 30 ms on the worker: over the deadline (25 ms) and the p99 budget (20 ms), and
        # still under the offered rate's capacity (the breaker's load is --breaker-rate)
        _, t0, _ = admin(s.sock, {"cmd": "test.delay", "label": "stable", "us": 30000})
        time.sleep(seconds / 4)
        _, t2, _ = admin(s.sock, {"cmd": "test.delay", "label": "stable", "us": 0})
        load.join(timeout=seconds * 10 + 120)
        log = probe.finish()
        on_backup = lambda e: e[4] == "backup" or e[5]  # noqa: E731
        first_backup = min((e[1] for e in log if e[0] >= t0 and on_backup(e)), default=None)
        last_stable_in_breach, _ = switch_time([e for e in log if e[0] < t2], t0,
                                               lambda e: not on_backup(e))
        back, _ = switch_time(log, t2, on_backup)
        failed = probe.errors + sum(1 for e in log if e[2] != 200) + res.get("failed", 0)
        out = {"first_backup_answer_ms": None if first_backup is None
               else (first_backup - t0) * 1e3,
               "last_stable_answer_after_breach_ms": last_stable_in_breach,
               "back_to_stable_ms": back, "failed": failed, "h2load": res}
        print(f"  breaker: first backup answer {out['first_backup_answer_ms'] or -1:.1f} ms "
              f"after the delay, last request answered by stable sent "
              f"{last_stable_in_breach:.1f} ms after it; "
              f"back on stable {back:.1f} ms after the delay ended; {failed} failed",
              flush=True)
        return out
    finally:
        s.stop()


def scenario_canary(serve_exe, d, model_dir, ca, body, seconds):
    s = start_serve(serve_exe, d, model_dir, ca, ["--canary-percent", "50"],
                    {"FV_TEST_SERVE": "1"})
    try:
        probe = Probe(s.port, body, keys=True)
        probe.start()
        time.sleep(seconds / 3)
        _, t0, _ = admin(s.sock, {"cmd": "test.fail", "label": "canary", "on": True})
        time.sleep(seconds * 2 / 3)
        log = probe.finish()
        status, _, _ = admin(s.sock, {"cmd": "status"})
        # a failing canary's requests are answered by the backup (fallback) or fail: the
        # last of those sent after the fault is when the guard had withdrawn the canary
        last_canary, n_after = switch_time(
            log, t0, lambda e: e[4] == "canary" or e[5] or e[2] != 200)
        failed = probe.errors + sum(1 for e in log if e[2] != 200)
        out = {"rolled_back_ms": last_canary, "probe_requests_after": n_after,
               "failed": failed, "status": status}
        print(f"  canary: last request answered by the failing canary, its fallback or an "
              f"error sent {last_canary:.1f} ms after the fault; {failed} failed; "
              f"auto_rollbacks {status.get('models', {}).get('auto_rollbacks')}", flush=True)
        return out
    finally:
        s.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fedvault")
    ap.add_argument("--serve", help="fedvault-serve (default: BUILD/agent/serve/fedvault-serve)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rates", default="500,2000")
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--breaker-rate", type=int, default=20,
                    help="h2load's rate during the breaker scenario (a slowed model on one "
                    "thread serves ~33/s)")
    ap.add_argument("--scenarios", default="peak,rates,promote,breaker,canary")
    a = ap.parse_args()
    print("machine: " + fvbench.machine(a.fedvault), flush=True)
    scen = set(a.scenarios.split(","))
    for tool in ("wrk", "h2load", "node", "openssl"):
        if shutil.which(tool) is None:
            die(f"{tool} not found (.ci/install-deps installs wrk, nghttp2-client, nodejs)")
    build = os.path.dirname(os.path.dirname(os.path.abspath(a.fedvault)))
    serve = a.serve or os.path.join(build, "agent", "serve", "fedvault-serve")
    have_serve = os.access(serve, os.X_OK)

    nd = fvnode.node_dir(a.fedvault, die)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    d = tempfile.mkdtemp(prefix="fv-bench-serve-")
    tr, te, schema, models, onnx = prepare(a.fedvault, d, env)
    model_dir = os.path.join(d, "models")
    os.makedirs(model_dir)
    kit = os.path.join(d, "fed", "coordinator")
    ca = os.path.join(d, "fed", "ca", "ca.pem")
    shas = {lab: write_release(model_dir, kit, models[lab], lab, v, v)
            for lab, v in (("stable", 1), ("canary", 2), ("backup", 3))}
    body = request_body(schema, te)
    print(f"bench_serve: {d}; CPUs {os.cpu_count()}; servers on CPU 0, load on CPU 1"
          if pin(0) else f"bench_serve: {d}; one CPU: nothing pinned", flush=True)

    results = {"body_bytes": len(json.dumps(body))}
    ref = start_ref(nd, d, onnx, schema, shas["stable"])
    servers = {"reference": ref}
    try:
        if have_serve:
            servers["fedvault"] = start_serve(serve, d, model_dir, ca, ["--canary-percent", "0"])
        answers = {}
        for name, s in servers.items():
            st, data = http_call(s.port, "POST", "/v1/score", json.dumps(body))
            if st != 200:
                die(f"{name}: POST /v1/score: {st} {data[:300]!r}")
            answers[name] = json.loads(data)
            print(f"  {name}: {data.decode()[:200]}", flush=True)
        if "fedvault" in answers:
            a_fv = answers["fedvault"]["results"][0]["score"]
            a_ref = answers["reference"]["results"][0]["score"]
            if abs(a_fv - a_ref) > 1e-6:
                die(f"the servers disagree: fedvault {a_fv}, reference {a_ref}")
        if "peak" in scen:
            script = wrk_script(d, body)
            for name, s in servers.items():
                w = wrk_result(wrk_start(s.port, script, a.seconds, a.conns))
                results.setdefault("peak", {})[name] = w
                print(f"  peak {name}: {w['rps']:.0f} requests/s ({w['non_2xx']} non-2xx, "
                      f"{w['socket_errors']} socket errors)", flush=True)
        if "rates" in scen:
            for rate in (int(r) for r in a.rates.split(",")):
                for name, s in servers.items():
                    h = h2load_rate(s.port, d, body, rate, a.seconds)
                    results.setdefault("rates", {}).setdefault(str(rate), {})[name] = h
                    print(f"  {rate}/s {name}: p50 {h['p50_us']} us, p99 {h['p99_us']} us, "
                          f"{h['failed']} failed of {h['requests']}", flush=True)
    finally:
        for s in servers.values():
            s.stop()

    if have_serve:
        if "promote" in scen:
            results["promote"] = scenario_promote(serve, d, model_dir, ca, body, a.seconds,
                                                  a.conns)
        if "breaker" in scen:
            results["breaker"] = scenario_breaker(serve, d, model_dir, ca, body,
                                                  a.breaker_rate, a.seconds)
        if "canary" in scen:
            results["canary"] = scenario_canary(serve, d, model_dir, ca, body, a.seconds)

    print(f"\nSingle-row POST /v1/score ({results['body_bytes']} bytes), mlp:4 student of "
          "lending_club, one core per server")
    if "peak" in results and "fedvault" in results["peak"]:
        fvp, rp = results["peak"]["fedvault"]["rps"], results["peak"]["reference"]["rps"]
        results["peak_ratio"] = fvp / rp
        print(f"  peak (wrk -t1 -c{a.conns}): fedvault {fvp:.0f}/s, reference {rp:.0f}/s, "
              f"ratio {fvp / rp:.2f}x (goal >= 5x)")
    for rate, r in results.get("rates", {}).items():
        line = "  ".join(f"{n} p50 {v['p50_us']} us p99 {v['p99_us']} us"
                         for n, v in r.items())
        print(f"  at {rate}/s: {line}")
    print(json.dumps(results, default=str))
    if not have_serve:
        die(f"{serve} not built: only the reference was measured")


if __name__ == "__main__":
    main()
