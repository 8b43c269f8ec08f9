"""What strangers can cost the coordinator (issue 15): a federation at work under a flood.

argv: fedvault fedvault-coordinator fedvault-agent [--flood-s S] [--bare N] [--hello N]
      [--slow-metrics N] [--sources K]

A real coordinator (agent, admin and metrics ports on 127.0.0.1) runs a Lending Club job
(mlp:16, SecAgg on, the shipped rows dealt round-robin into 4 banks) with 3 real agents
on 127.0.0.1. Once rounds are completing, for --flood-s seconds (default 30), from OTHER
loopback addresses (each flood socket is bound to its source address before connecting,
so the coordinator's per-source caps see what they would see in the field):
  - --bare (10000) plain TCP connections to the agent port that never send a byte,
    from K sources 127.0.0.2.. (default 10), each worker reopening what the coordinator
    closes (at most 100 reopens a second per worker);
  - --hello (5000) connections that send a TLS ClientHello (every second one only its
    first half) and stall, from K more sources, reopened the same way;
  - --slow-metrics (200) connections to the metrics port that send a request head one
    byte a second, from 2 more sources, reopened the same way.
Meanwhile this script scrapes /metrics every second, runs `fedvault status` every 5 s,
starts a 4th agent 10 s into the flood, and samples the coordinator's VmRSS
(/proc/PID/status) every 0.25 s. It prints the numbers and a pass/fail per goal, and
exits 1 if a goal fails:
  - rounds keep completing: at least one round in each third of the flood;
  - the late agent connects during the flood (its agent_connected line);
  - every `fedvault status` and every scrape during the flood answers;
  - RSS 10 s after the flood within 20 MB of RSS before it.
The flood workers are this script run with --worker (one process per source address),
each with RLIMIT_NOFILE raised to its hard limit, at nice 10: in the field the flood's
own CPU would be other machines', here it shares 2 cores with the coordinator and the
agents. Scrapes time out at 10 s (Prometheus' default), `fedvault status` at 10 s. Use a
release build. About 1 minute.
"""
import argparse
import json
import os
import resource
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

import fvbench

GOAL_RSS_MB = 20.0
REOPEN_PER_S = 100.0  # per flood worker (source address)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def client_hello():
    """A real TLS 1.3 ClientHello (what a stalled handshake sends), from Python's ssl."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="coordinator")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def worker(a):
    """One source address: keeps a.n connections open to a.port for a.secs seconds,
    reopening (at most REOPEN_PER_S a second) those the server closes. Prints its counts."""
    raise_nofile()
    # The flood's own CPU is not the coordinator's to pay: in the field it comes from
    # other machines; here it shares 2 cores with the coordinator and the agents.
    os.nice(10)
    mode, n, deadline = a.worker, a.n, time.monotonic() + a.secs
    hello = client_hello() if mode == "hello" else b""
    ep = select.epoll()
    socks = {}  # fd -> [socket, index, state]; state: connecting, sent, open
    counts = {"connects": 0, "established": 0, "closed_by_server": 0, "errors": 0}
    last_drip = time.monotonic()

    def open_one(i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.bind((a.src, 0))
            s.connect_ex(("127.0.0.1", a.port))
        except OSError:
            counts["errors"] += 1
            s.close()
            return False
        counts["connects"] += 1
        socks[s.fileno()] = [s, i, "connecting"]
        ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLIN | select.EPOLLRDHUP)
        return True

    pending = list(range(n))  # indexes to (re)open
    budget, budget_t = 0.0, time.monotonic()
    first_wave = True
    while time.monotonic() < deadline:
        now = time.monotonic()
        if first_wave:
            while pending:
                open_one(pending.pop())
            first_wave = False
        else:
            budget = min(REOPEN_PER_S, budget + (now - budget_t) * REOPEN_PER_S)
            budget_t = now
            while pending and budget >= 1.0:
                open_one(pending.pop())
                budget -= 1.0
        for fd, ev in ep.poll(0.05):
            ent = socks.get(fd)
            if ent is None:
                continue
            s, i, st = ent
            if st == "connecting" and ev & select.EPOLLOUT:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err == 0:
                    counts["established"] += 1
                    ent[2] = "open"
                    if mode == "hello":
                        part = hello if i % 2 == 0 else hello[:len(hello) // 2]
                        try:
                            s.send(part)
                        except OSError:
                            pass
                    elif mode == "metrics":
                        try:
                            s.send(b"G")
                        except OSError:
                            pass
                    ep.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
                    continue
            if ev & (select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR):
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if data and not ev & (select.EPOLLRDHUP | select.EPOLLHUP):
                    continue  # a TLS alert or an HTTP answer: wait for the close
                counts["closed_by_server"] += 1
                ep.unregister(fd)
                del socks[fd]
                s.close()
                pending.append(i)
        if mode == "metrics" and now - last_drip >= 1.0:
            last_drip = now
            for fd, (s, i, st) in list(socks.items()):
                if st == "open":
                    try:
                        s.send(b"E")  # never a complete head: "GEEEE..."
                    except OSError:
                        pass
    counts["open_at_end"] = len(socks)
    for s, _, _ in socks.values():
        s.close()
    print(json.dumps(counts), flush=True)


def vm_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


SCRAPE_TIMEOUT_S = 10.0  # Prometheus' default scrape_timeout


def scrape(port, timeout=SCRAPE_TIMEOUT_S):
    """The /metrics text, or None."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
            return r.read().decode()
    except OSError:
        return None


def metric(text, name):
    """The sum of a family's samples in a scrape."""
    total = 0.0
    for line in (text or "").splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fedvault", nargs="?")
    ap.add_argument("coordinator", nargs="?")
    ap.add_argument("agent", nargs="?")
    ap.add_argument("--flood-s", type=float, default=30.0)
    ap.add_argument("--bare", type=int, default=10000)
    ap.add_argument("--hello", type=int, default=5000)
    ap.add_argument("--slow-metrics", type=int, default=200)
    ap.add_argument("--sources", type=int, default=10)
    # worker mode (internal)
    ap.add_argument("--worker", choices=["bare", "hello", "metrics"])
    ap.add_argument("--src")
    ap.add_argument("--port", type=int)
    ap.add_argument("--n", type=int)
    ap.add_argument("--secs", type=float)
    a = ap.parse_args()
    print("machine: " + fvbench.machine(a.fedvault), flush=True)
    if a.worker:
        worker(a)
        return 0
    raise_nofile()
    src_root = os.environ.get("FV_SOURCE_ROOT",
                              os.path.join(os.path.dirname(__file__), "..", ".."))
    data = os.path.join(src_root, "examples", "data", "lending_club.csv")
    tmp = tempfile.mkdtemp(prefix="fv-bench-flood-")
    banks = [f"bank-{i:02d}" for i in range(4)]
    print(f"bench_flood: coordinator {a.coordinator}; work dir {tmp}", flush=True)

    subprocess.run([a.fedvault, "provision", "--federation", "bench", "--coordinator",
                    "127.0.0.1:0", "--agents", ",".join(banks), "--admins", "ops-1",
                    "--out", f"{tmp}/fed"], check=True, capture_output=True)
    lines = open(data).read().splitlines(keepends=True)
    os.makedirs(f"{tmp}/banks")
    outs = [open(f"{tmp}/banks/{b}.csv", "w") for b in banks]
    for o in outs:
        o.write(lines[0])
    for i, line in enumerate(lines[1:]):
        outs[i % len(banks)].write(line)
    for o in outs:
        o.close()
    job = json.load(open(os.path.join(src_root, "examples", "lending-club", "job.json")))
    job.pop("distill", None)
    job.update({"model": "mlp:16", "rounds": 5000, "local_epochs": 1, "min_agents": 3,
                "early_stopping": {"metric": "roc_auc", "patience": 0}})
    with open(f"{tmp}/job.json", "w") as f:
        json.dump(job, f)

    log_path = f"{tmp}/coordinator.log"
    log = open(log_path, "w+")
    # "--metrics-listen 0": a port alone means 127.0.0.1 (never all addresses)
    coord = subprocess.Popen([a.coordinator, "--config", f"{tmp}/fed/coordinator/coordinator.json",
                              "--job", f"{tmp}/job.json", "--out", f"{tmp}/out", "--listen",
                              "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                              "--metrics-listen", "0"],
                             stdout=subprocess.DEVNULL, stderr=log, text=True)
    procs = [coord]

    def events():
        log.flush()
        evs = []
        for line in open(log_path):
            try:
                evs.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return evs

    def stop_all():
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()

    try:
        listening = None
        while listening is None:
            time.sleep(0.05)
            listening = next((e for e in events() if e.get("event") == "listening"), None)
            if coord.poll() is not None:
                sys.exit(f"coordinator exited {coord.returncode}; see {log_path}")
        port, aport, mport = (listening["port"], listening["admin_port"],
                              listening["metrics_port"])
        nofile = next((e for e in events() if e.get("event") == "nofile_limit"), {})
        print(f"ports: agents {port}, admin {aport}, metrics {mport}; RLIMIT_NOFILE soft "
              f"{nofile.get('soft_before')} -> {nofile.get('soft')} (hard {nofile.get('hard')})",
              flush=True)

        def start_agent(b):
            p = subprocess.Popen([a.agent, "--config", f"{tmp}/fed/{b}/agent.json", "--data",
                                  f"{tmp}/banks/{b}.csv", "--coordinator", f"127.0.0.1:{port}"],
                                 stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/{b}.log", "w"))
            procs.append(p)
            return p

        for b in banks[:3]:
            start_agent(b)

        def rounds_done():
            return metric(scrape(mport, 10.0), "fedvault_rounds_completed_total")

        t_wait = time.monotonic()
        while rounds_done() < 3:
            if time.monotonic() - t_wait > 120 or coord.poll() is not None:
                sys.exit(f"no rounds completing; see {tmp}")
            time.sleep(0.5)
        time.sleep(2.0)
        rss_before = [vm_rss_kb(coord.pid)]
        for _ in range(7):
            time.sleep(0.25)
            rss_before.append(vm_rss_kb(coord.pid))
        rss0 = max(rss_before[-4:])

        # ---- the flood ----
        workers = []
        me = os.path.abspath(__file__)
        k = a.sources
        plan = ([("bare", f"127.0.0.{2 + i}", port, a.bare // k) for i in range(k)]
                + [("hello", f"127.0.0.{2 + k + i}", port, a.hello // k) for i in range(k)]
                + [("metrics", f"127.0.0.{2 + 2 * k + i}", mport, a.slow_metrics // 2)
                   for i in range(2)])
        t0 = time.monotonic()
        wall0 = time.time()
        r_start = rounds_done()
        for mode, src, p, n in plan:
            workers.append(subprocess.Popen(
                [sys.executable, me, "--worker", mode, "--src", src, "--port", str(p), "--n",
                 str(n), "--secs", str(a.flood_s)], stdout=subprocess.PIPE, text=True))
        scrapes_ok = scrapes_fail = status_ok = status_fail = 0
        status_ms, scrape_ms = [], []
        rss_peak = rss0
        third_rounds = [r_start, None, None, None]
        late, late_t, late_at = None, float("nan"), float("nan")
        next_scrape = next_status = t0 + 0.5
        while True:
            now = time.monotonic()
            if now - t0 >= a.flood_s:
                break
            rss_peak = max(rss_peak, vm_rss_kb(coord.pid))
            if late is None and now - t0 >= 10.0:
                late = start_agent(banks[3])
                late_t = now - t0
            if now >= next_scrape:
                next_scrape = max(next_scrape + 1.0, now)
                ts = time.monotonic()
                text = scrape(mport)
                scrape_ms.append(1000 * (time.monotonic() - ts))
                if text is None:
                    scrapes_fail += 1
                    print(f"  scrape failed at +{ts - t0:.1f} s after {scrape_ms[-1]:.0f} ms",
                          flush=True)
                else:
                    scrapes_ok += 1
                    third = int(3 * (now - t0) / a.flood_s) + 1
                    if third <= 3:
                        third_rounds[third] = metric(text, "fedvault_rounds_completed_total")
            if now >= next_status:
                next_status = max(next_status + 5.0, now)
                ts = time.monotonic()
                r = subprocess.run([a.fedvault, "status", "--config",
                                    f"{tmp}/fed/ops-1/admin.json", "--admin",
                                    f"127.0.0.1:{aport}", "--timeout", "10", "--json"],
                                   capture_output=True, text=True)
                status_ms.append(1000 * (time.monotonic() - ts))
                if r.returncode == 0:
                    status_ok += 1
                else:
                    status_fail += 1
                    print(f"  status failed: {r.stderr.strip()[:200]}", flush=True)
            time.sleep(0.25)
        flood_results = {}
        for (mode, src, _, _), w in zip(plan, workers):
            out, _ = w.communicate(timeout=60)
            try:
                c = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                c = {}
            agg = flood_results.setdefault(mode, {})
            for key, v in c.items():
                agg[key] = agg.get(key, 0) + v
        t1 = time.monotonic()
        wall1 = time.time()
        rounds_in_flood = rounds_done() - r_start
        after = []
        while time.monotonic() - t1 < 10.0:
            rss_peak = max(rss_peak, vm_rss_kb(coord.pid))
            time.sleep(0.25)
        rss_after = vm_rss_kb(coord.pid)
        final = scrape(mport, 10.0)

        evs = events()
        late_conn = [e for e in evs if e.get("event") == "agent_connected"
                     and e.get("agent") == banks[3]]
        late_ok = False
        if late_conn:
            # ts is wall clock ("...Z"); compare with the flood's wall-clock window
            import datetime
            t = datetime.datetime.strptime(late_conn[0]["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
            t = t.replace(tzinfo=datetime.timezone.utc).timestamp()
            late_ok = wall0 <= t <= wall1
            late_at = t - wall0
        thirds = []
        prev = third_rounds[0]
        for i in range(1, 4):
            cur = third_rounds[i] if third_rounds[i] is not None else prev
            thirds.append(cur - prev)
            prev = cur
        summary_lines = [e for e in evs if e.get("event") == "net_refused"]
        closed_lines = [e for e in evs if e.get("event") == "conn_closed"]

        print(f"\nflood: {a.flood_s:.0f} s from {2 * k + 2} loopback sources other than the "
              f"agents' 127.0.0.1")
        for mode in ("bare", "hello", "metrics"):
            print(f"  {mode:8s} {json.dumps(flood_results.get(mode, {}))}")
        print(f"coordinator counters after: refused/evicted/timed out by reason "
              f"{metric(final, 'fedvault_net_refused_total'):.0f} "
              f"(over_unauth {sum_label(final, 'over_unauth')}, per_source "
              f"{sum_label(final, 'over_unauth_per_source')}, handshakes "
              f"{sum_label(final, 'over_handshakes')}, evicted {sum_label(final, 'evicted')}, "
              f"handshake timeouts {sum_label(final, 'handshake_timeout')}), strangers now "
              f"{metric(final, 'fedvault_net_unauth_connections'):.0f}, metrics evictions "
              f"{metric(final, 'fedvault_metrics_conns_evicted_total'):.0f}, log lines "
              f"suppressed {metric(final, 'fedvault_log_suppressed_total'):.0f}")
        print(f"log: {len(summary_lines)} net_refused summary lines, {len(closed_lines)} "
              f"conn_closed lines in the whole run")
        goals = [
            ("rounds completing in each third of the flood",
             f"{rounds_in_flood:.0f} rounds ({', '.join(f'{x:.0f}' for x in thirds)})",
             all(x >= 1 for x in thirds)),
            ("late agent connects during the flood",
             f"started at +{late_t:.1f} s, connected at "
             + (f"+{late_at:.1f} s" if late_conn else "never"), late_ok),
            ("fedvault status answers", f"{status_ok}/{status_ok + status_fail} "
             f"(max {max(status_ms) if status_ms else 0:.0f} ms)", status_fail == 0 and
             status_ok > 0),
            ("metrics scrapes answer", f"{scrapes_ok}/{scrapes_ok + scrapes_fail} "
             f"(max {max(scrape_ms) if scrape_ms else 0:.0f} ms)",
             scrapes_fail == 0 and scrapes_ok > 0),
            (f"RSS 10 s after within {GOAL_RSS_MB:.0f} MB of before",
             f"before {rss0 / 1024:.1f} MB, peak {rss_peak / 1024:.1f} MB, after "
             f"{rss_after / 1024:.1f} MB ({(rss_after - rss0) / 1024:+.1f} MB)",
             rss_after - rss0 <= GOAL_RSS_MB * 1024),
        ]
        print(f"\n  {'goal':48s} {'measured':58s} result")
        for name, val, ok in goals:
            print(f"  {name:48s} {val:58s} {'pass' if ok else 'FAIL'}")
        sys.stdout.flush()
        failed = [g for g in goals if not g[2]]
        if coord.poll() is not None:
            print(f"coordinator exited {coord.returncode} during the bench")
            failed.append("coordinator")
        return 1 if failed else 0
    finally:
        stop_all()


def sum_label(text, reason):
    total = 0.0
    for line in (text or "").splitlines():
        if line.startswith("fedvault_net_refused_total{") and f'reason="{reason}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return f"{total:.0f}"


if __name__ == "__main__":
    sys.exit(main())
