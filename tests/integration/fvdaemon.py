"""A coordinator daemon (no --job: jobs come by `fedvault job submit`) with its admin port,
and agents that stay for every job (no --once), for the tests of what the operator sees
(fed_refusals.py, fed_member_lost.py). stdlib only."""
import json
import os
import subprocess
import time

import fvtest

WRAPPER = fvtest.WRAPPER
S = fvtest.SLOW


class Daemon:
    def __init__(self, coordinator, tmp):
        self.tmp = tmp
        self.port, self.admin_port = fvtest.free_port(), fvtest.free_port()
        self.admin_args = ["--config", f"{tmp}/fed/ops-1/admin.json", "--admin",
                           f"127.0.0.1:{self.admin_port}", "--timeout", str(30 * S)]
        self.log = f"{tmp}/coordinator.log"
        self.p = subprocess.Popen(
            WRAPPER + [coordinator, "--config", f"{tmp}/fed/coordinator/coordinator.json",
                       "--state", f"{tmp}/state", "--listen", f"127.0.0.1:{self.port}",
                       "--admin-listen", f"127.0.0.1:{self.admin_port}"],
            stdout=subprocess.DEVNULL, stderr=open(fvtest.show_on_fail(self.log), "w"))
        self.agents = {}
        self.wait(lambda: fvtest.run(["status"] + self.admin_args)[0] == 0, "the admin port")

    def events(self):
        evs = []
        for line in open(self.log):
            try:
                evs.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return evs

    def wait(self, pred, what, timeout=120):
        deadline = time.time() + timeout * S
        while time.time() < deadline:
            v = pred()
            if v:
                return v
            if self.p.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        fvtest.fail(f"timed out waiting for {what}; coordinator exit {self.p.poll()}\n"
                    + open(self.log).read()[-4000:])

    def admin(self, args, expect=0):
        return fvtest.run(list(args) + self.admin_args, expect=expect)

    def admin_json(self, args):
        _, out, _ = self.admin(list(args) + ["--json"])
        try:
            return json.loads(out)
        except json.JSONDecodeError as e:
            fvtest.fail(f"fedvault {' '.join(args)} --json: not JSON ({e}): {out!r}")

    def start_agent(self, agent, bank, data, extra=(), env=None):
        penv = dict(os.environ, **(env or {}))
        self.agents[bank] = subprocess.Popen(
            WRAPPER + [agent, "--config", f"{self.tmp}/fed/{bank}/agent.json", "--data", data,
                       "--coordinator", f"127.0.0.1:{self.port}", *extra],
            stdout=subprocess.DEVNULL, stderr=open(f"{self.tmp}/{bank}.log", "a"), env=penv)

    def wait_connected(self, n):
        self.wait(lambda: self.admin_json(["status"])["agents_connected"] == n,
                  f"{n} agents connected")

    def submit(self, job):
        path = f"{self.tmp}/{job['name']}.json"
        with open(path, "w") as f:
            json.dump(job, f)
        self.admin(["job", "submit", path])
        return [j["id"] for j in self.admin_json(["job", "list"])["jobs"]
                if j["name"] == job["name"]][0]

    def watch(self, job_id):
        """`fedvault job watch ID` in the background (not a terminal: one line per change)."""
        return subprocess.Popen(WRAPPER + [fvtest.fedvault(), "job", "watch", job_id,
                                           "--interval", "0.2"] + self.admin_args,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self):
        for p in self.agents.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=30 * S)
            except subprocess.TimeoutExpired:
                self.p.kill()
