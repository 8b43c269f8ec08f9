"""`fedvault provision` through the real CLI, checked with the openssl command line.

A federation with a coordinator, two agents and an admin: files and modes (keys 0600,
kits 0700), every certificate verifies against the CA (`openssl verify`, with the TLS
purpose of its role), subjects carry O/OU/CN, keys are Ed25519, the coordinator's
subjectAltName is its host (IPv4, IPv6, DNS). add-agent/add-admin touch no existing file
but the registry (sha256 of every file before and after); a --not-after in the past gives
an expired certificate (with a warning); revoke makes `openssl verify -crl_check` fail
for the revoked certificate and pass for the others. Refusals exit 1 and name the place;
usage errors exit 2 and create nothing; --help exits 0.
"""
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess

from fvtest import check, fail, run, run_json, tmpdir


def openssl(*args):
    p = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def tree_hashes(root, skip=()):
    """sha256 of every file under root (relative path -> hex), except those in skip."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)
            if rel in skip:
                continue
            out[rel] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def verify(fed, name, purpose=None, crl=False):
    args = ["verify", "-CAfile", os.path.join(fed, "ca", "ca.pem")]
    if purpose:
        args += ["-purpose", purpose]
    if crl:
        args += ["-crl_check", "-CRLfile", os.path.join(fed, "ca", "crl.pem")]
    return openssl(*args, os.path.join(fed, name, "cert.pem"))


def subject(fed, name):
    rc, out = openssl("x509", "-noout", "-subject", "-in", os.path.join(fed, name, "cert.pem"))
    check(rc == 0, f"openssl x509 -subject {name}: {out}")
    fields = dict(re.findall(r"\b(O|OU|CN)\s*=\s*([^,\n]+)", out))
    return {k: v.strip() for k, v in fields.items()}


def san(fed, name):
    rc, out = openssl("x509", "-noout", "-ext", "subjectAltName", "-in",
                      os.path.join(fed, name, "cert.pem"))
    check(rc == 0, f"openssl x509 -ext subjectAltName {name}: {out}")
    return out


def check_kit(fed, federation, name, role):
    kit = os.path.join(fed, name)
    check(mode(kit) == 0o700, f"{kit}: mode {oct(mode(kit))}, expected 0700")
    check(mode(os.path.join(kit, "key.pem")) == 0o600, f"{kit}/key.pem: not 0600")
    want = {"key.pem", "cert.pem", "ca.pem", f"{role}.json"}
    if role != "agent":
        want.add("crl.pem")
    check(set(os.listdir(kit)) == want, f"{kit}: files {sorted(os.listdir(kit))}")
    subj = subject(fed, name)
    check(subj == {"O": federation, "OU": role, "CN": name}, f"{name}: subject {subj}")
    rc, out = openssl("x509", "-noout", "-text", "-in", os.path.join(kit, "cert.pem"))
    check(rc == 0 and "ED25519" in out, f"{name}: not an Ed25519 certificate: {out}")
    check("CA:FALSE" in out, f"{name}: not CA:FALSE")
    rc, out = openssl("pkey", "-in", os.path.join(kit, "key.pem"), "-noout", "-text")
    check(rc == 0 and "ED25519" in out, f"{name}: key.pem is not an Ed25519 key: {out}")
    check(open(os.path.join(kit, "key.pem")).read().startswith("-----BEGIN PRIVATE KEY-----"),
          f"{name}: key.pem is not unencrypted PKCS#8")
    # key matches certificate: same public key
    _, pub_cert = openssl("x509", "-noout", "-pubkey", "-in", os.path.join(kit, "cert.pem"))
    _, pub_key = openssl("pkey", "-pubout", "-in", os.path.join(kit, "key.pem"))
    check(pub_cert.strip() == pub_key.strip(), f"{name}: key.pem does not match cert.pem")
    check(open(os.path.join(kit, "ca.pem")).read() ==
          open(os.path.join(fed, "ca", "ca.pem")).read(), f"{name}: ca.pem is not the CA's")
    cfg = json.load(open(os.path.join(kit, f"{role}.json")))
    check(cfg["federation"] == federation and cfg["name"] == name and cfg["role"] == role,
          f"{name}: {role}.json: {cfg}")
    purpose = "sslserver" if role == "coordinator" else "sslclient"
    rc, out = verify(fed, name, purpose)
    check(rc == 0 and "OK" in out, f"openssl verify {name} ({purpose}): {out}")
    rc, out = verify(fed, name, "sslclient", crl=True)
    check(rc == 0, f"openssl verify -crl_check {name}: {out}")
    return cfg


def expect(args, code, *needles):
    rc, out, err = run(args)
    check(rc == code, f"fedvault {' '.join(map(str, args))}: exit {rc}, expected {code}\n"
                      f"stdout: {out}\nstderr: {err}")
    for n in needles:
        check(n in err, f"fedvault {' '.join(map(str, args))}: stderr lacks {n!r}: {err!r}")
    check("AddressSanitizer" not in err and "runtime error" not in err, f"sanitizer: {err}")
    return out, err


def main():
    base = tmpdir()
    fed = os.path.join(base, "fed")

    # --help everywhere
    for sub in ([], ["add-agent"], ["add-admin"], ["revoke"], ["crl"]):
        rc, out, _ = run(["provision"] + sub + ["--help"])
        check(rc == 0 and "Usage" in out, f"provision {sub} --help: exit {rc}: {out}")
    rc, out, _ = run(["--help"])
    check("provision" in out, "fedvault --help does not list provision")

    # usage errors: exit 2, nothing created
    good = ["--federation", "acme", "--coordinator", "127.0.0.1:7443", "--out", fed]
    for args, needle in (
            ([], "--out"),
            (["--federation", "acme", "--out", fed], "--coordinator"),
            (["--federation", "Acme", "--coordinator", "h:1", "--out", fed], "Acme"),
            (good + ["--agents", "bank-a,Bank-B"], "Bank-B"),
            (good + ["--agents", "bank-a,,bank-b"], "invalid"),
            (good + ["--agents", "bank-a,bank-a"], "bank-a"),
            (good + ["--agents", "coordinator"], "coordinator"),
            (good + ["--admins", "ca"], "reserved"),
            (["--federation", "acme", "--coordinator", "nohost", "--out", fed], "--coordinator"),
            (["--federation", "acme", "--coordinator", "::1:80", "--out", fed], "--coordinator"),
            (["--federation", "acme", "--coordinator", "h:70000", "--out", fed], "port"),
            (good + ["--days", "0"], "--days"),
            (good + ["--days", "x"], "--days"),
            (good + ["--not-after", "2030-01-01"], "--not-after"),
            (good + ["--bogus"], ""),
            (good + ["extra"], "extra"),
            (["frobnicate"], "frobnicate")):
        expect(["provision"] + args, 2, needle)
        check(not os.path.exists(fed), f"provision {args}: created {fed} on a usage error")

    # the federation
    r = run_json(["provision"] + good + ["--agents", "bank-a,bank-b", "--admins", "ops-1"])
    check(r["federation"] == "acme" and r["dir"] == fed, f"--json: {r}")
    check([(k["name"], k["role"]) for k in r["kits"]] ==
          [("coordinator", "coordinator"), ("bank-a", "agent"), ("bank-b", "agent"),
           ("ops-1", "admin")], f"--json kits: {r['kits']}")
    check(mode(fed) == 0o700 and mode(os.path.join(fed, "ca")) == 0o700, "fed/ca modes")
    check(mode(os.path.join(fed, "ca", "ca.key")) == 0o600, "ca.key not 0600")
    check(mode(os.path.join(fed, "ca", "registry.json")) == 0o600, "registry.json not 0600")
    check(sorted(os.listdir(fed)) == ["bank-a", "bank-b", "ca", "coordinator", "ops-1"],
          f"{fed}: {sorted(os.listdir(fed))}")
    rc, out = openssl("x509", "-noout", "-text", "-in", os.path.join(fed, "ca", "ca.pem"))
    check(rc == 0 and "CA:TRUE, pathlen:0" in out and "Certificate Sign, CRL Sign" in out,
          f"CA extensions: {out}")
    cfg = check_kit(fed, "acme", "coordinator", "coordinator")
    check(cfg["listen"] == "127.0.0.1:7443" and cfg["crl"] == "crl.pem", f"{cfg}")
    for n in ("bank-a", "bank-b"):
        cfg = check_kit(fed, "acme", n, "agent")
        check(cfg["coordinator"] == "127.0.0.1:7443", f"{n}: {cfg}")
    check_kit(fed, "acme", "ops-1", "admin")
    check("IP Address:127.0.0.1" in san(fed, "coordinator"), san(fed, "coordinator"))
    rc, out = verify(fed, "bank-a", "sslserver")
    check(rc != 0, "an agent's certificate passes as a TLS server")

    # a second run on the same DIR: refused, names the place, changes nothing
    before = tree_hashes(fed)
    expect(["provision"] + good + ["--agents", "bank-x"], 1, os.path.join(fed, "ca"))
    check(tree_hashes(fed) == before, "a refused provision changed files")

    # add-agent / add-admin touch no other file (the registry excepted)
    skip = {os.path.join("ca", "registry.json")}
    before = tree_hashes(fed, skip)
    out, _ = expect(["provision", "add-agent", "bank-c", "--out", fed], 0)
    check("bank-c" in out, f"add-agent summary: {out}")
    after = tree_hashes(fed, skip)
    check({k: v for k, v in after.items() if not k.startswith("bank-c/")} == before,
          "add-agent modified existing files")
    cfg = check_kit(fed, "acme", "bank-c", "agent")
    check(cfg["coordinator"] == "127.0.0.1:7443", f"bank-c: {cfg}")
    r = run_json(["provision", "add-admin", "ops-2", "--out", fed, "--days", "30"])
    check(r["kits"] == [{"name": "ops-2", "role": "admin", "path": os.path.join(fed, "ops-2")}],
          f"add-admin --json: {r}")
    check_kit(fed, "acme", "ops-2", "admin")
    rc, out = openssl("x509", "-noout", "-checkend", str(31 * 86400), "-in",
                      os.path.join(fed, "ops-2", "cert.pem"))
    check(rc != 0, "--days 30 certificate still valid in 31 days")
    check(tree_hashes(fed, skip | {k for k in tree_hashes(fed) if k.startswith("ops-2/")})
          == after, "add-admin modified existing files")

    before = tree_hashes(fed)
    expect(["provision", "add-agent", "bank-a", "--out", fed], 1, "bank-a", "registry.json")
    expect(["provision", "add-admin", "bank-b", "--out", fed], 1, "bank-b")
    check(tree_hashes(fed) == before, "a refused add changed files")
    expect(["provision", "add-agent", "--out", fed], 2, "NAME")
    expect(["provision", "add-agent", "x", "y", "--out", fed], 2, "'y'")
    expect(["provision", "add-agent", "x"], 2, "--out")
    expect(["provision", "add-agent", "Bad", "--out", fed], 2, "Bad")
    expect(["provision", "add-agent", "x", "--out", fed, "--not-after", "2020-13-01"], 2,
           "--not-after")
    expect(["provision", "add-agent", "x", "--out", fed, "--not-after", "2021-02-30"], 2,
           "--not-after")
    expect(["provision", "add-agent", "x", "--out", fed, "--not-before", "2030-01-02",
            "--not-after", "2030-01-01"], 2, "--not-after")
    expect(["provision", "add-agent", "x", "--out", fed, "--agents", "y"], 2, "--agents")
    expect(["provision", "add-agent", "x", "--out", os.path.join(base, "nowhere")], 1,
           "nowhere")
    check(tree_hashes(fed) == before, "a usage error changed files")

    # expired on purpose
    out, err = expect(["provision", "add-agent", "bank-old", "--out", fed, "--not-after",
                       "2020-01-01"], 0, "warning")
    rc, out = verify(fed, "bank-old", "sslclient")
    check(rc != 0 and "expired" in out, f"bank-old verifies: {out}")
    rc, out = openssl("x509", "-noout", "-enddate", "-in",
                      os.path.join(fed, "bank-old", "cert.pem"))
    check("Jan  1 23:59:59 2020 GMT" in out, f"bank-old end date: {out}")
    # explicit window in the future
    expect(["provision", "add-agent", "bank-future", "--out", fed, "--not-before",
            "2099-01-01", "--not-after", "2099-12-31"], 0)
    rc, out = verify(fed, "bank-future", "sslclient")
    check(rc != 0 and "not yet valid" in out, f"bank-future verifies: {out}")

    # revocation
    crl_before = open(os.path.join(fed, "ca", "crl.pem")).read()
    agents_before = {k: v for k, v in tree_hashes(fed).items()
                     if k.split("/")[0] in ("bank-a", "bank-b", "bank-c")}
    out, _ = expect(["provision", "revoke", "bank-a", "--out", fed], 0)
    check("bank-a" in out, f"revoke summary: {out}")
    crl = open(os.path.join(fed, "ca", "crl.pem")).read()
    check(crl != crl_before, "revoke did not rewrite the CRL")
    for k in ("coordinator", "ops-1", "ops-2"):
        check(open(os.path.join(fed, k, "crl.pem")).read() == crl, f"{k}/crl.pem not updated")
    check({k: v for k, v in tree_hashes(fed).items() if k.split("/")[0] in
           ("bank-a", "bank-b", "bank-c")} == agents_before, "revoke touched agent kits")
    rc, out = openssl("crl", "-noout", "-text", "-in", os.path.join(fed, "ca", "crl.pem"))
    check(rc == 0, f"openssl crl: {out}")
    rc, out2 = openssl("crl", "-noout", "-CAfile", os.path.join(fed, "ca", "ca.pem"), "-in",
                       os.path.join(fed, "ca", "crl.pem"))
    check(rc == 0 and "verify OK" in out2, f"CRL signature: {out2}")
    _, serial = openssl("x509", "-noout", "-serial", "-in",
                        os.path.join(fed, "bank-a", "cert.pem"))
    serial = serial.strip().split("=")[1].upper()
    check(serial in out.replace(":", "").upper(), f"CRL lacks bank-a's serial {serial}: {out}")
    rc, out = verify(fed, "bank-a", "sslclient", crl=True)
    check(rc != 0 and "revoked" in out, f"revoked bank-a still verifies: {out}")
    for n in ("bank-b", "bank-c", "coordinator"):
        rc, out = verify(fed, n, "sslclient", crl=True)
        check(rc == 0, f"{n} fails after revoking bank-a: {out}")
    expect(["provision", "revoke", "bank-a", "--out", fed], 0)  # idempotent
    r = run_json(["provision", "revoke", "bank-b", "--out", fed])
    check(r["revoked"] == "bank-b", f"revoke --json: {r}")
    rc, out = verify(fed, "bank-b", "sslclient", crl=True)
    check(rc != 0, f"revoked bank-b still verifies: {out}")
    expect(["provision", "revoke", "nobody", "--out", fed], 1, "nobody")
    expect(["provision", "revoke", "--out", fed], 2, "NAME")
    expect(["provision", "revoke", "bank-c", "--out", fed, "--days", "3"], 2, "--days")
    expect(["provision", "crl", "--out", fed], 0)
    rc, out = verify(fed, "bank-c", "sslclient", crl=True)
    check(rc == 0, f"bank-c after crl refresh: {out}")
    rc, out = verify(fed, "bank-a", "sslclient", crl=True)
    check(rc != 0, f"bank-a after crl refresh: {out}")
    check(not [f for f in os.listdir(fed) if f.startswith(".") or ".tmp" in f],
          f"temporaries left in {fed}: {os.listdir(fed)}")

    # IPv6 and DNS coordinators, a custom coordinator name
    fed6 = os.path.join(base, "fed6")
    expect(["provision", "--federation", "v6", "--coordinator", "[::1]:9000", "--out", fed6,
            "--agents", "b1", "--coordinator-name", "hub"], 0)
    s = san(fed6, "hub")
    check("IP Address:0:0:0:0:0:0:0:1" in s or "IP Address:::1" in s, f"IPv6 SAN: {s}")
    check(json.load(open(os.path.join(fed6, "b1", "agent.json")))["coordinator"] ==
          "[::1]:9000", "IPv6 coordinator address in agent.json")
    check_kit(fed6, "v6", "hub", "coordinator")
    fedd = os.path.join(base, "fedd")
    expect(["provision", "--federation", "dns.fed", "--coordinator", "coord.example.org:443",
            "--out", fedd], 0)
    check("DNS:coord.example.org" in san(fedd, "coordinator"), san(fedd, "coordinator"))
    rc, out = openssl("verify", "-CAfile", os.path.join(fedd, "ca", "ca.pem"), "-verify_hostname",
                      "coord.example.org", os.path.join(fedd, "coordinator", "cert.pem"))
    check(rc == 0, f"hostname verification: {out}")
    expect(["provision", "add-agent", "late", "--out", fedd], 0)

    # --admin-address: the coordinator binds it, admin kits (now and later) dial it
    feda = os.path.join(base, "feda")
    expect(["provision", "--federation", "adm", "--coordinator", "10.0.0.1:7443",
            "--admin-address", "bad address", "--out", feda], 2, "--admin-address")
    check(not os.path.exists(feda), "a refused --admin-address created files")
    expect(["provision", "--federation", "adm", "--coordinator", "10.0.0.1:7443",
            "--admin-address", "127.0.0.1:7444", "--admins", "ops-1", "--agents", "b1",
            "--out", feda], 0)
    expect(["provision", "add-admin", "ops-2", "--out", feda], 0)
    cc = json.load(open(os.path.join(feda, "coordinator", "coordinator.json")))
    check(cc.get("admin_listen") == "127.0.0.1:7444", f"coordinator.json: {cc}")
    for who in ("ops-1", "ops-2"):
        ac = json.load(open(os.path.join(feda, who, "admin.json")))
        check(ac.get("admin") == "127.0.0.1:7444" and ac["coordinator"] == "10.0.0.1:7443",
              f"{who}/admin.json: {ac}")
    check("admin" not in json.load(open(os.path.join(feda, "b1", "agent.json"))),
          "an agent kit names the admin port")

    shutil.rmtree(base)
    print("provision_cli: OK")


if __name__ == "__main__":
    main()
