"""`fedvault audit` through the real CLI, and one record checked with openssl alone.

A federation from `fedvault provision`; 12 records appended with the coordinator's key
(`audit append`); `audit verify` passes with the coordinator's certificate and fails with
an agent's. Tamper cases on copies (a flipped byte, a deleted line, two swapped lines, an
inserted line signed by another kit's key, a whitespace change, a truncated tail) each
exit 1 and name the record; the truncated tail passes without the head and says so.
`show` filters (--since/--until/--actor/--event/--job, --json), `export` as JSONL
(verbatim lines) and CSV (parsed back). Then the README's shell commands, run exactly as
printed there, check one record's signature and the head's with the openssl binary.
"""
import base64
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess

from fvtest import SRC, check, fail, run, run_json, tmpdir


def expect(args, code, *needles):
    rc, out, err = run(args)
    check(rc == code, f"fedvault {' '.join(map(str, args))}: exit {rc}, expected {code}\n"
                      f"stdout: {out}\nstderr: {err}")
    for n in needles:
        check(n in out + err, f"fedvault {' '.join(map(str, args))}: output lacks {n!r}:\n"
                              f"{out}{err}")
    check("AddressSanitizer" not in err and "runtime error" not in err, f"sanitizer: {err}")
    return out, err


def readme_commands():
    """The shell block of the README section 'Checking an audit record with openssl'."""
    text = open(os.path.join(SRC, "README.md")).read()
    m = re.search(r"## Checking an audit record with openssl\n(.*?)(?=\n## |\Z)", text, re.S)
    check(m is not None, "README.md lacks the section 'Checking an audit record with openssl'")
    blocks = re.findall(r"```sh\n(.*?)```", m.group(1), re.S)
    check(len(blocks) >= 1, "the README section has no ```sh block")
    return blocks


def main():
    base = tmpdir()
    fed = os.path.join(base, "fed")
    run(["provision", "--federation", "acme", "--coordinator", "127.0.0.1:7443", "--out", fed,
         "--agents", "bank-a", "--admins", "ops-1"], expect=0)
    coord_key = os.path.join(fed, "coordinator", "key.pem")
    coord_cert = os.path.join(fed, "coordinator", "cert.pem")
    log = os.path.join(base, "audit.log")
    head = log + ".head"

    # --help everywhere; usage errors exit 2
    for sub in ([], ["verify"], ["show"], ["export"], ["append"]):
        rc, out, _ = run(["audit"] + sub + ["--help"])
        check(rc == 0 and "Usage" in out, f"audit {sub} --help: exit {rc}: {out}")
    rc, out, _ = run(["--help"])
    check("audit" in out, "fedvault --help does not list audit")
    for args, needle in ((["audit"], "subcommand"),
                         (["audit", "frob"], "frob"),
                         (["audit", "verify", "--log", log], "--cert"),
                         (["audit", "verify", "--cert", coord_cert], "--log"),
                         (["audit", "show", "--log", log, "--since", "yesterday"], "--since"),
                         (["audit", "export", "--log", log], "--format"),
                         (["audit", "export", "--log", log, "--format", "xml"], "xml"),
                         (["audit", "show", "--log", log, "--cert", coord_cert], "--cert"),
                         (["audit", "append", "--log", log, "--key", coord_key, "--actor", "a"],
                          "--event"),
                         (["audit", "append", "--log", log, "--key", coord_key, "--actor", "a",
                           "--event", "e", "--details", "[1]"], "--details")):
        expect(args, 2, needle)
    check(not os.path.exists(log), "a usage error created the log")

    # 12 records by the coordinator
    for i in range(1, 13):
        details = json.dumps({"job": f"job-{i % 3}", "round": i, "note": "a,b \"c\"\nd"})
        actor = "coordinator" if i % 2 else "admin:ops-1"
        event = "job.submitted" if i % 4 == 1 else "round.done"
        r = run_json(["audit", "append", "--log", log, "--key", coord_key, "--actor", actor,
                      "--event", event, "--details", details])
        check(r["seq"] == i and r["head"] == head, f"append --json: {r}")
    lines = open(log, "rb").read().split(b"\n")[:-1]
    check(len(lines) == 12, f"{len(lines)} lines")

    out, _ = expect(["audit", "verify", "--log", log, "--cert", coord_cert], 0,
                    "12 record", "complete")
    r = run_json(["audit", "verify", "--log", log, "--cert", coord_cert])
    check(r["ok"] and r["records"] == 12 and r["head_checked"] and r["head_seq"] == 12, f"{r}")
    expect(["audit", "verify", "--log", log, "--cert", os.path.join(fed, "bank-a", "cert.pem")],
           1, "record 1: bad signature")
    expect(["audit", "verify", "--log", log, "--cert", os.path.join(fed, "ca", "ca.key")], 1,
           "certificate")
    expect(["audit", "verify", "--log", log + ".nope", "--cert", coord_cert], 1, ".nope")

    # tampering, each on a copy with the original head
    def tampered(name, new_lines, k, needle, with_head=True):
        p = os.path.join(base, name + ".log")
        open(p, "wb").write(b"".join(l + b"\n" for l in new_lines))
        args = ["audit", "verify", "--log", p, "--cert", coord_cert]
        if with_head:
            args += ["--head", head]
        expect(args, 1, f"record {k}", needle)
        rc, out, _ = run(args + ["--json"])
        r = json.loads(out)
        check(rc == 1 and not r["ok"] and r["bad_record"] == k, f"{name} --json: {r}")

    flipped = list(lines)
    b = bytearray(flipped[6])
    pos = b.index(b'"round":7') + len(b'"round":')
    b[pos] = ord("8")
    flipped[6] = bytes(b)
    tampered("flip", flipped, 7, "hash does not match")
    for pos in (0, 10, 100, len(lines[6]) // 2, len(lines[6]) - 3):
        f = list(lines)
        b = bytearray(f[6])
        b[pos] ^= 0x04
        f[6] = bytes(b)
        p = os.path.join(base, "flip2.log")
        open(p, "wb").write(b"".join(l + b"\n" for l in f))
        _, err = expect(["audit", "verify", "--log", p, "--cert", coord_cert, "--head", head],
                        1)
        check("record 7" in err or "line 7:" in err, f"flip at {pos}: {err}")
    tampered("delete", lines[:4] + lines[5:], 5, "seq 6, expected 5")
    tampered("swap", lines[:4] + [lines[5], lines[4]] + lines[6:], 5, "seq 6, expected 5")
    # an inserted record, well formed and signed by another kit's key (bank-a's)
    # build it by hand: the canonical bytes of record 5 with another event, bank-a's sig
    canon = re.sub(rb',"hash":"[0-9a-f]{64}","sig":"[A-Za-z0-9+/=]*"}$', b"}", lines[4])
    canon = canon.replace(b'"event":"round.done"', b'"event":"forged"')
    cpath = os.path.join(base, "forged.bin")
    open(cpath, "wb").write(canon)
    sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey",
                          os.path.join(fed, "bank-a", "key.pem"), "-rawin", "-in", cpath],
                         capture_output=True, timeout=60).stdout
    check(len(sig) == 64, f"openssl pkeyutl -sign: {len(sig)} bytes")
    forged = canon[:-1] + b',"hash":"' + hashlib.sha256(canon).hexdigest().encode() + \
        b'","sig":"' + base64.b64encode(sig) + b'"}'
    tampered("insert", lines[:4] + [forged] + lines[4:], 5, "bad signature")
    tampered("space", lines[:8] + [lines[8].replace(b'"seq":9,', b'"seq": 9,')] + lines[9:],
             9, "not in canonical form")
    # truncated tail: caught only through the head
    p = os.path.join(base, "trunc.log")
    open(p, "wb").write(b"".join(l + b"\n" for l in lines[:9]))
    out, _ = expect(["audit", "verify", "--log", p, "--cert", coord_cert], 0,
                    "9 record", "no head checked")
    r = run_json(["audit", "verify", "--log", p, "--cert", coord_cert])
    check(r["ok"] and not r["head_checked"], f"{r}")
    tampered("trunc", lines[:9], 10, "tail was removed")
    # and the writer refuses to continue a truncated log
    shutil.copy(head, p + ".head")
    expect(["audit", "append", "--log", p, "--key", coord_key, "--actor", "a", "--event", "e"],
           1, "ends at record 9")

    # show and its filters
    r = run_json(["audit", "show", "--log", log])
    check(r["matched"] == 12 and [x["seq"] for x in r["records"]] == list(range(1, 13)), f"{r}")
    check(r["records"][0]["details"]["note"] == "a,b \"c\"\nd", f"{r['records'][0]}")

    def seqs(*filt):
        return [x["seq"] for x in run_json(["audit", "show", "--log", log] + list(filt))["records"]]
    check(seqs("--job", "job-1") == [1, 4, 7, 10], seqs("--job", "job-1"))
    check(seqs("--event", "job.submitted") == [1, 5, 9], seqs("--event", "job.submitted"))
    check(seqs("--actor", "admin:ops-1") == [2, 4, 6, 8, 10, 12], seqs("--actor", "admin:ops-1"))
    check(seqs("--actor", "admin:ops-1", "--job", "job-1") == [4, 10], "actor+job")
    ts = [x["ts"] for x in r["records"]]
    check(seqs("--since", ts[5][:19]) == [x for x in range(1, 13) if ts[x - 1][:19] >= ts[5][:19]],
          "--since")
    check(seqs("--until", ts[5][:19]) == [x for x in range(1, 13) if ts[x - 1][:19] <= ts[5][:19]],
          "--until")
    check(seqs("--since", "2000-01-01", "--until", "2999") == list(range(1, 13)), "wide range")
    check(seqs("--since", "2999") == [], "--since in the future")
    out, _ = expect(["audit", "show", "--log", log, "--event", "job.submitted"], 0,
                    "job.submitted")
    check(len(out.strip().split("\n")) == 3, f"show text: {out}")
    expect(["audit", "show", "--log", os.path.join(base, "swap.log")], 1, "record 5")

    # export
    out, _ = expect(["audit", "export", "--log", log, "--format", "jsonl"], 0)
    check(out.encode() == open(log, "rb").read(), "jsonl export differs from the log")
    outp = os.path.join(base, "export.csv")
    expect(["audit", "export", "--log", log, "--format", "csv", "--out", outp], 0)
    rows = list(csv.DictReader(io.StringIO(open(outp, newline="").read())))
    check(len(rows) == 12 and rows[3]["seq"] == "4" and rows[3]["job"] == "job-1", f"{rows[3]}")
    check(json.loads(rows[0]["details"])["note"] == "a,b \"c\"\nd", f"{rows[0]}")
    check(rows[11]["hash"] == json.loads(lines[11])["hash"], "csv hash")
    outj = os.path.join(base, "export.jsonl")
    expect(["audit", "export", "--log", log, "--format", "jsonl", "--job", "job-2", "--out",
            outj], 0)
    check([json.loads(l)["seq"] for l in open(outj)] == [2, 5, 8, 11], "filtered export")

    # the README's openssl commands, exactly as printed, in a scratch directory
    work = os.path.join(base, "readme")
    os.mkdir(work)
    shutil.copy(log, os.path.join(work, "audit.log"))
    shutil.copy(head, os.path.join(work, "audit.log.head"))
    shutil.copy(coord_cert, os.path.join(work, "cert.pem"))
    # (the section's third block checks an agent's round receipt: integration/admin-cli)
    for i, block in enumerate(readme_commands()[:2]):
        p = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work,
                           capture_output=True, text=True, timeout=60)
        check(p.returncode == 0 and "Signature Verified Successfully" in p.stdout,
              f"README block {i}: exit {p.returncode}\n{block}\n{p.stdout}{p.stderr}")
    # and the same commands reject a tampered record 7
    f = list(lines)
    f[6] = f[6].replace(b'"round":7', b'"round":8')
    open(os.path.join(work, "audit.log"), "wb").write(b"".join(l + b"\n" for l in f))
    block = readme_commands()[0]
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work,
                       capture_output=True, text=True, timeout=60)
    check(p.returncode != 0 and "Signature Verified Successfully" not in p.stdout,
          f"README commands accepted a tampered record 7:\n{p.stdout}{p.stderr}")
    print("ok")


if __name__ == "__main__":
    main()
