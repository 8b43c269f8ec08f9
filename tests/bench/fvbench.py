"""Shared by the benchmarks: the machine line (every Python benchmark), and for the
federation benchmarks (bench_fed.py, bench_loop.py) one job run to its end by a real
coordinator (--job) and real agents on loopback (stdlib only)."""
import json
import subprocess
import sys
import time


def machine(fedvault, threads=1):
    """The machine line every benchmark prints (`fedvault bench machine`): CPU model,
    CPUs online, AES/AVX extensions, OpenBLAS version, core and thread count."""
    p = subprocess.run([fedvault, "bench", "machine", "--threads", str(threads)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"bench: {fedvault} bench machine failed ({p.returncode}): {p.stderr}")
    return p.stdout.strip()


def run_job(coordinator, agent, d, banks, data, out, label, timeout):
    """d/job.json run by `coordinator` (kits in d/fed, --out `out`) and one --once agent
    per bank on data/<bank>.csv; exits the benchmark if any process fails. Returns the
    coordinator's summary (its last stdout line, parsed) and its log's path."""
    log_path = f"{d}/coordinator.log"
    log = open(log_path, "a+")  # O_APPEND: the child shares the offset seek(0) moves
    c = subprocess.Popen([coordinator, "--config", f"{d}/fed/coordinator/coordinator.json",
                          "--job", f"{d}/job.json", "--out", out, "--listen", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=log, text=True)
    port = None
    while port is None:
        time.sleep(0.05)
        log.seek(0)
        for line in log:
            if '"event":"listening"' in line:
                port = json.loads(line)["port"]
        if c.poll() is not None:
            sys.exit(f"{label}: coordinator exited {c.returncode}; see {log_path}")
    # a plain job needs the agents' consent (their policy requires SecAgg by default)
    with open(f"{d}/job.json") as f:
        plain = json.load(f).get("secagg") == "off"
    agents = [subprocess.Popen([agent, "--config", f"{d}/fed/{b}/agent.json", "--data",
                                f"{data}/{b}.csv", "--coordinator", f"127.0.0.1:{port}",
                                "--once"] + (["--require-secure-aggregation", "off"]
                                             if plain else []), stdout=subprocess.DEVNULL,
                               stderr=open(f"{d}/{b}.log", "w")) for b in banks]
    out_text, _ = c.communicate(timeout=timeout)
    codes = [p.wait(timeout=300) for p in agents]
    if c.returncode != 0 or any(codes):
        sys.exit(f"{label}: coordinator {c.returncode}, agents {codes}; see {d}")
    return json.loads(out_text.strip().splitlines()[-1]), log_path
