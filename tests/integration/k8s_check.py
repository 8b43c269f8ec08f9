"""The structure of the Kubernetes manifests in examples/deploy/k8s/ (docs/serving.md).

usage: k8s_check.py

No Kubernetes validator works offline here (no API server, no schemas), so this is all
that is checked: the YAML parses (python3-yaml, Debian's; missing = FAIL); every object
has apiVersion, kind and metadata.name; the kustomization lists exactly the other files;
the Deployment's selector matches its pod labels and the Service's selector; every
container has resource requests and limits (requests <= limits), a read-only root file
system, no privilege escalation and every capability dropped, and the pod runs as a
non-root user; every volumeMount names a volume, and every ConfigMap / PVC a volume
names is one of the manifests; fedvault-serve's --config is the ConfigMap's serve.json
(valid JSON); the port in its "listen", the serve container's containerPort, both
probes' ports and the Service's targetPort agree; the readiness probe is GET /readyz and
the liveness probe GET /healthz; the model directory is one volume, read-only for serve
and writable for the agent sidecar (its --model-dir), and the paths the two processes
write (admin socket, audit log) are on writable mounts (the root file system is
read-only).

Against the server itself (its sources are agent/serve/*.c): the probe paths are string
literals in its route table, and every key of serve.json names one of its long options (a
--config key is a flag's name, with '_' or '-').
"""
import glob
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("FV_SOURCE_ROOT", os.path.join(HERE, "..", ".."))
K8S = os.path.join(SRC, "examples", "deploy", "k8s")
SERVE_SRC = os.path.join(SRC, "agent", "serve")

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print(f"FAIL: {msg}", file=sys.stderr, flush=True)
    return cond


def get(obj, path, where):
    """obj[path...] or a failure naming where and the path; None when absent."""
    cur = obj
    for p in path.split("."):
        if not isinstance(cur, dict) or p not in cur:
            check(False, f"{where}: no {path}")
            return None
        cur = cur[p]
    return cur


QUANT = re.compile(r"^([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
MULT = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10,
        "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(q, where):
    m = QUANT.match(str(q))
    if not check(m is not None, f"{where}: quantity {q!r}"):
        return None
    return float(m.group(1)) * MULT[m.group(2)]


def port_of(probe_port, ports, where):
    if isinstance(probe_port, int):
        return probe_port
    named = [p["containerPort"] for p in ports if p.get("name") == probe_port]
    check(len(named) == 1, f"{where}: port name {probe_port!r} is not a containerPort name")
    return named[0] if named else None


def covering_mount(path, mounts):
    """The volumeMount whose mountPath holds path (the longest), or None."""
    best = None
    for m in mounts:
        mp = m["mountPath"].rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best["mountPath"]):
                best = m
    return best


def flag(cmd, name):
    return cmd[cmd.index(name) + 1] if name in cmd and cmd.index(name) + 1 < len(cmd) else None


def main():
    try:
        import yaml
    except ImportError:
        sys.exit(f"FAIL: {sys.executable} has no yaml module: install Debian's python3-yaml "
                 "(.ci/install-deps does); the manifests cannot be parsed without it")
    files = sorted(os.path.basename(f) for f in glob.glob(os.path.join(K8S, "*.yaml")))
    docs = {}
    for f in files:
        with open(os.path.join(K8S, f)) as fh:
            for d in yaml.safe_load_all(fh):
                if d is None:
                    continue
                where = f"{f}: {d.get('kind')}"
                for k in ("apiVersion", "kind"):
                    check(k in d, f"{f}: no {k}")
                if d.get("kind") != "Kustomization":
                    check(isinstance(d.get("metadata"), dict) and d["metadata"].get("name"),
                          f"{where}: no metadata.name")
                docs.setdefault(d.get("kind"), []).append((f, d))
    for kind in ("Deployment", "ConfigMap", "Service", "Kustomization"):
        check(len(docs.get(kind, [])) == 1, f"expected one {kind}, found "
              f"{len(docs.get(kind, []))}")
    if failures:
        sys.exit(f"{len(failures)} failure(s)")
    kf, kust = docs["Kustomization"][0]
    check(sorted(kust.get("resources", [])) == sorted(x for x in files if x != kf),
          f"{kf}: resources {kust.get('resources')} are not the other files {files}")

    _, dep = docs["Deployment"][0]
    _, cm = docs["ConfigMap"][0]
    _, svc = docs["Service"][0]
    claims = {d["metadata"]["name"] for _, d in docs.get("PersistentVolumeClaim", [])}
    check(dep["apiVersion"] == "apps/v1", "Deployment: apiVersion is not apps/v1")
    tmpl_labels = get(dep, "spec.template.metadata.labels", "Deployment") or {}
    sel = get(dep, "spec.selector.matchLabels", "Deployment") or {}
    check(sel and all(tmpl_labels.get(k) == v for k, v in sel.items()),
          f"Deployment: selector {sel} does not match the pod labels {tmpl_labels}")
    ssel = get(svc, "spec.selector", "Service") or {}
    check(ssel and all(tmpl_labels.get(k) == v for k, v in ssel.items()),
          f"Service: selector {ssel} does not match the pod labels {tmpl_labels}")

    pod = get(dep, "spec.template.spec", "Deployment") or {}
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, "pod: securityContext.runAsNonRoot is not true")
    check(isinstance(psc.get("runAsUser"), int) and psc["runAsUser"] > 0,
          "pod: securityContext.runAsUser is not a non-root uid")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for name, v in volumes.items():
        if "configMap" in v:
            check(v["configMap"].get("name") == cm["metadata"]["name"],
                  f"volume {name}: ConfigMap {v['configMap'].get('name')} is not in {K8S}")
        if "persistentVolumeClaim" in v:
            check(v["persistentVolumeClaim"].get("claimName") in claims,
                  f"volume {name}: claim {v['persistentVolumeClaim']} is not in {K8S}")
    containers = {c["name"]: c for c in pod.get("containers", [])}
    check(set(containers) == {"serve", "agent"},
          f"pod: containers {sorted(containers)}, expected serve and agent")
    if failures:
        sys.exit(f"{len(failures)} failure(s)")
    for name, c in containers.items():
        w = f"container {name}"
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                check(get(c, f"resources.{kind}.{r}", w) is not None, f"{w}: no {kind}.{r}")
        for r in ("cpu", "memory"):
            req = quantity(c["resources"]["requests"][r], w)
            lim = quantity(c["resources"]["limits"][r], w)
            if req is not None and lim is not None:
                check(req <= lim, f"{w}: {r} request {req} over its limit {lim}")
        sc = c.get("securityContext", {})
        check(sc.get("readOnlyRootFilesystem") is True, f"{w}: root file system not read-only")
        check(sc.get("allowPrivilegeEscalation") is False, f"{w}: privilege escalation")
        check("ALL" in sc.get("capabilities", {}).get("drop", []), f"{w}: capabilities kept")
        check(sc.get("runAsUser", 1) != 0, f"{w}: runs as root")
        for m in c.get("volumeMounts", []):
            check(m["name"] in volumes, f"{w}: mount {m['name']} names no volume")

    serve, agent = containers["serve"], containers["agent"]
    cmd = serve.get("command", [])
    check(cmd[:1] == ["fedvault-serve"], f"serve: command {cmd} does not run fedvault-serve")
    cfg_path = flag(cmd, "--config")
    smounts = serve.get("volumeMounts", [])
    amounts = agent.get("volumeMounts", [])
    cfg = {}
    cm_mount = covering_mount(cfg_path or "", smounts)
    if check(cm_mount is not None and "configMap" in volumes[cm_mount["name"]],
             f"serve: --config {cfg_path} is not on the ConfigMap's volume"):
        key = cm_mount.get("subPath") or os.path.relpath(cfg_path, cm_mount["mountPath"])
        text = cm.get("data", {}).get(key)
        if check(text is not None, f"ConfigMap: no data key {key!r} for --config {cfg_path}"):
            try:
                cfg = json.loads(text)
            except json.JSONDecodeError as e:
                check(False, f"ConfigMap {key}: not JSON: {e}")

    listen = cfg.get("listen", "127.0.0.1:8080")
    port = int(listen.rsplit(":", 1)[1])
    check(not listen.startswith("127.") and not listen.startswith("[::1]"),
          f"serve.json: listen {listen} is loopback: the kubelet's probes and the Service "
          "cannot reach it")
    ports = serve.get("ports", [])
    check([p["containerPort"] for p in ports] == [port],
          f"serve: containerPorts {[p['containerPort'] for p in ports]}, serve.json listens "
          f"on {port}")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        hg = get(serve, f"{probe}.httpGet", "serve") or {}
        check(hg.get("path") == path, f"serve: {probe} path {hg.get('path')}, expected {path}")
        check(port_of(hg.get("port"), ports, f"serve {probe}") == port,
              f"serve: {probe} port {hg.get('port')} is not {port}")
    sports = get(svc, "spec.ports", "Service") or []
    check(len(sports) == 1 and port_of(sports[0].get("targetPort"), ports, "Service") == port,
          f"Service: targetPort {sports} does not reach containerPort {port}")

    # the model directory: one volume, read-only for serve, writable for the agent
    mdir = flag(cmd, "--model-dir") or cfg.get("model_dir")
    amd = flag(agent.get("command", []), "--model-dir")
    sm, am = covering_mount(mdir or "", smounts), covering_mount(amd or "", amounts)
    if check(sm is not None and am is not None,
             f"model dir: serve {mdir} / agent --model-dir {amd} not on a mounted volume"):
        check(sm["name"] == am["name"] and sm["mountPath"] == mdir and am["mountPath"] == amd,
              f"model dir: serve reads {mdir} ({sm['name']}), the agent writes {amd} "
              f"({am['name']}): not the same volume")
        check(sm.get("readOnly") is True, "serve: the model directory is not read-only")
        check(not am.get("readOnly"), "agent: the model directory is read-only")
    for who, mounts, path, what in (
            ("serve", smounts, os.path.dirname(cfg.get("admin_socket", "") or
                                               (mdir or "") + "/serve.sock"), "admin socket"),
            ("agent", amounts,
             os.path.dirname(flag(agent.get("command", []), "--audit-log") or ""), "audit log")):
        m = covering_mount(path, mounts)
        check(m is not None and not m.get("readOnly"),
              f"{who}: the {what}'s directory {path!r} is not on a writable mount")
    acmd = agent.get("command", [])
    for who, mounts, path in (("serve", smounts, cfg.get("ca")), ("serve", smounts, cfg.get("crl")),
                              ("agent", amounts, flag(acmd, "--config")),
                              ("agent", amounts, flag(acmd, "--data"))):
        check(path is not None and covering_mount(path, mounts) is not None,
              f"{who}: {path} is on no mounted volume")

    if len(sys.argv) != 1:
        sys.exit("usage: k8s_check.py")
    srcs = glob.glob(os.path.join(SERVE_SRC, "*.c"))
    check(len(srcs) > 0, f"no fedvault-serve sources in {SERVE_SRC}")
    text = "".join(open(s).read() for s in srcs)
    for path in ("/readyz", "/healthz"):
        check(f'"{path}"' in text, f"probe path {path} is not a string literal in "
              f"{SERVE_SRC}/*.c (the route table)")
    # a --config key is a long option's name, '_' or '-' (serve_main.c)
    for key in cfg:
        opt = key.replace("_", "-")
        check(f'"{opt}"' in text, f"serve.json key {key!r}: no long option \"{opt}\" "
              f"in {SERVE_SRC}/*.c (no such --config key)")
    if failures:
        sys.exit(f"{len(failures)} failure(s)")
    print(f"ok: {len(files)} manifests; port {port}; probes /readyz, /healthz")


if __name__ == "__main__":
    main()
