"""The TLS transport with real processes on 127.0.0.1: who gets in, who is refused.

argv: fedvault fv-netpeer. One server (fv-netpeer serve, the coordinator's kit) serves
a long-lived agent the whole time, while every kind of bad peer the issue lists tries its
luck. Each refusal must be logged by the server with a reason, and after each one a good
agent must still get through; at the end the long-lived agent must never have been
dropped.
"""
import os
import json
import socket
import ssl
import subprocess
import sys
import time

import fvnet
import fvtest

fedvault, netpeer = sys.argv[1], sys.argv[2]
tmp = fvtest.tmpdir()
fed_a = os.path.join(tmp, "fed-a")
fed_b = os.path.join(tmp, "fed-b")
fvnet.provision(fedvault, fed_a, "fed-a", ["bank-a", "bank-b", "bank-r"])
fvnet.provision(fedvault, fed_b, "fed-b", ["bank-x"])
# An agent whose certificate expired (issued that way on purpose).
_, _, err = fvtest.run(["provision", "add-agent", "old-bank", "--out", fed_a,
                        "--not-before", "2019-01-01", "--not-after", "2020-01-01"], expect=0)
kit = lambda fed, name: os.path.join(fed, name)

S = fvnet.SLOW
srv = fvnet.Server(netpeer, kit(fed_a, "coordinator"),
                   ["--crl", os.path.join(kit(fed_a, "coordinator"), "crl.pem"),
                    "--max-frame", 1 << 20, "--handshake-timeout-ms", 1500 * S,
                    "--heartbeat-ms", 200 * S, "--dead-ms", 2000 * S,
                    "--max-queue", 1 << 20])
port, admin_port = srv.port, srv.admin_port
print(f"server on {port}, admin on {admin_port}")

# A long-lived agent: connected for the whole test, heartbeats flowing (200 ms).
hold_ms = 600000
longlived = subprocess.Popen(
    fvnet.WRAPPER + [netpeer, "connect", "--kit", kit(fed_a, "bank-b"), "--to",
                     f"127.0.0.1:{port}", "--echo", "1", "--hold-ms", str(hold_ms),
                     "--heartbeat-ms", str(200 * S), "--dead-ms", str(5000 * S)],
    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
srv.wait(lambda e: e["event"] == "open" and e["peer"]["name"] == "bank-b", 30 * S,
         "bank-b open")


def good_agent(label):
    res = fvnet.connect(netpeer, kit(fed_a, "bank-a"), port, "--echo", 3)
    fvtest.check(res["echoes"] == 3 and res["peer"]["role"] == "coordinator",
                 f"after {label}: good agent result {res}")
    print(f"  after {label}: a good agent still gets through")


def refused(label, pred_why, timeout=30):
    ev = srv.wait(lambda e: e["event"] == "refused", timeout * S, f"refused ({label})")
    why = ev["why"]
    fvtest.check(pred_why(why, ev), f"{label}: unexpected refusal reason {ev}")
    print(f"refused {label}: {ev['err_name']}: {why}")
    good_agent(label)
    return ev


# 0. A valid agent: handshake, messages both ways.
res = fvnet.connect(netpeer, kit(fed_a, "bank-a"), port, "--echo", 5)
fvtest.check(res["echoes"] == 5, f"echo count {res}")
fvtest.check(res["peer"] == {"federation": "fed-a", "name": "coordinator",
                             "role": "coordinator"}, f"peer identity {res}")
ev = srv.wait(lambda e: e["event"] == "open" and e["peer"]["name"] == "bank-a", 10 * S, "open")
fvtest.check(ev["peer"]["role"] == "agent", f"server sees {ev}")
srv.wait(lambda e: e["event"] == "close" and e.get("peer", {}).get("name") == "bank-a",
         10 * S, "orderly close")
print("valid agent: handshake, 5 echoes both ways, orderly close")

# 1. No client certificate.
try:
    s = fvnet.tls_client(kit(fed_a, "bank-a"), port, cert=False)
    s.sendall(fvnet.hello())
    fvnet.read_until_closed(s)
    s.close()
except (OSError, ssl.SSLError):
    pass
refused("no client certificate",
        lambda w, e: e["err_name"] == "FV_EAUTH" and "certificate" in w)



def foreign_client(client_kit, label, pred):
    """A Python TLS client that trusts our CA (so it gets as far as presenting its own
    certificate) but holds client_kit's certificate; the server must refuse it."""
    try:
        s = fvnet.tls_client(client_kit, port, ca=os.path.join(kit(fed_a, "bank-a"), "ca.pem"))
        s.sendall(fvnet.hello())
        fvnet.read_until_closed(s)
        s.close()
    except (OSError, ssl.SSLError):
        pass
    return refused(label, pred)


# 2. A certificate from another federation's CA (fedvault's own agent would not even
# present it: it refuses our coordinator first, see 11; a foreign client gets further).
foreign_client(kit(fed_b, "bank-x"), "certificate from another CA",
               lambda w, e: e["err_name"] == "FV_EAUTH" and "issuer" in w)
res = fvnet.connect(netpeer, kit(fed_b, "bank-x"), port, expect_ok=False)
refused("fedvault agent of another CA", lambda w, e: e["err_name"] == "FV_EAUTH")

# 3. An expired certificate (fedvault's own agent refuses to start with it, so a Python
# client presents it).
res = subprocess.run(fvnet.WRAPPER + [netpeer, "connect", "--kit", kit(fed_a, "old-bank"),
                                      "--to", f"127.0.0.1:{port}"],
                     capture_output=True, text=True, timeout=60 * S)
fvtest.check(res.returncode == 1 and "expired" in res.stderr,
             f"an agent with an expired kit must refuse to start: {res.returncode} {res.stderr}")
foreign_client(kit(fed_a, "old-bank"), "expired certificate",
               lambda w, e: e["err_name"] == "FV_EAUTH" and "expired" in w)

# 4. Revocation: bank-r gets in, is revoked, the CRL is reloaded on SIGHUP, it does not.
res = fvnet.connect(netpeer, kit(fed_a, "bank-r"), port, "--echo", 1)
fvtest.run(["provision", "revoke", "bank-r", "--out", fed_a], expect=0)
srv.hup()
ev = srv.wait(lambda e: e["event"].startswith("crl_reload"), 10 * S, "crl_reloaded")
fvtest.check(ev["event"] == "crl_reloaded" and ev["revoked"] == 1, f"CRL reload: {ev}")
res = fvnet.connect(netpeer, kit(fed_a, "bank-r"), port, expect_ok=False)
refused("revoked certificate (after CRL reload)",
        lambda w, e: e["err_name"] == "FV_EAUTH" and "revoked" in w)

# 5. An agent certificate on the admin port; an admin certificate is accepted there.
res = fvnet.connect(netpeer, kit(fed_a, "bank-a"), admin_port, expect_ok=False)
fvtest.check("not accepted" in res["why"] or "role" in res["why"],
             f"the agent should learn why: {res}")
refused("agent certificate on the admin port",
        lambda w, e: e["err_name"] == "FV_EAUTH" and "role agent" in w)
res = fvnet.connect(netpeer, kit(fed_a, "ops-1"), admin_port, "--echo", 1)
print("admin certificate on the admin port: accepted")

# 6. A plain-TCP client.
with socket.create_connection(("127.0.0.1", port)) as s:
    s.sendall(b"GET / HTTP/1.1\r\nHost: coordinator\r\n\r\n")
    fvnet.read_until_closed(s)
refused("plain-TCP client", lambda w, e: e["err_name"] == "FV_EPROTO")

# 7. A client that stops mid-handshake: the first bytes of a TLS record, then silence.
with socket.create_connection(("127.0.0.1", port)) as s:
    s.sendall(bytes.fromhex("160301"))
    t0 = time.time()
    fvnet.read_until_closed(s)
    waited = time.time() - t0
refused("client stopped mid-handshake",
        lambda w, e: e["err_name"] == "UV_ETIMEDOUT" and "handshake" in w)
print(f"  (closed after {waited:.1f} s; deadline 1.5 s)")

# 8. A frame over the cap (1 MiB here): the header alone is refused.
s = fvnet.tls_client(kit(fed_a, "bank-a"), port)
s.sendall(fvnet.hello() + bytes.fromhex("7fffffff"))
fvnet.read_until_closed(s)
s.close()
refused("frame over the cap", lambda w, e: e["err_name"] == "FV_ETOOBIG")

# 9. Garbage bytes instead of TLS.
with socket.create_connection(("127.0.0.1", port)) as s:
    s.sendall(bytes(range(256)) * 4)
    fvnet.read_until_closed(s)
refused("garbage bytes", lambda w, e: e["err_name"] == "FV_EPROTO")

# 9b. Garbage inside a valid TLS session, after HELLO: a frame that is not msgpack.
s = fvnet.tls_client(kit(fed_a, "bank-a"), port)
s.sendall(fvnet.hello() + fvnet.frame(b"\xc1garbage\xff\x00"))
fvnet.read_until_closed(s)
s.close()
refused("garbage frame in a TLS session", lambda w, e: e["err_name"] == "FV_EPROTO")

# 10. A valid frame with a malformed message: a ping without its seq.
s = fvnet.tls_client(kit(fed_a, "bank-a"), port)
s.sendall(fvnet.hello() + fvnet.frame(fvnet.mp({"v": 1, "type": 3})))
fvnet.read_until_closed(s)
s.close()
refused("malformed message (ping without seq)",
        lambda w, e: e["err_name"] == "FV_EPROTO" and "seq" in w)

# 12. Backpressure: a peer that sends echo requests and never reads the replies. The
# replies fill the socket buffers, then the server's queue; past its cap (1 MiB here) the
# server drops that peer instead of buffering without bound.
s = fvnet.tls_client(kit(fed_a, "bank-a"), port)
s.sendall(fvnet.hello())
body = bytes(60000)
echo = b"".join(fvnet.frame(fvnet.mp({"v": 1, "type": 6, "seq": i, "body": body}))
                for i in range(1, 33))
sent = 0
try:
    for _ in range(100):  # up to ~190 MB if the server never gave up
        s.sendall(echo)
        sent += len(echo)
except (OSError, ssl.SSLError):
    pass
s.close()
refused("peer not reading (write queue over its cap)",
        lambda w, e: e["err_name"] == "UV_ENOBUFS" and "not reading" in w)
print(f"  (the peer had sent {sent / 1e6:.1f} MB of requests when it was dropped)")

# 13. A peer that hangs (SIGSTOP) is closed after the dead-peer timeout (2 s); when it
# wakes up it reconnects with backoff and opens a second session.
hung = subprocess.Popen(
    fvnet.WRAPPER + [netpeer, "connect", "--kit", kit(fed_a, "bank-a"), "--to",
                     f"127.0.0.1:{port}", "--echo", "1", "--reconnect", "--min-connections",
                     "2", "--hold-ms", "100"],
    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
srv.wait(lambda e: e["event"] == "open" and e["peer"]["name"] == "bank-a", 30 * S, "open")
time.sleep(0.5 * S)
hung.send_signal(19)  # SIGSTOP
ev = srv.wait(lambda e: e["event"] == "refused", 30 * S, "dead-peer timeout")
fvtest.check(ev["err_name"] == "UV_ETIMEDOUT" and "silent" in ev["why"], f"dead peer: {ev}")
print(f"hung peer closed: {ev['why']}")
hung.send_signal(18)  # SIGCONT
out, err = hung.communicate(timeout=60 * S)
res = json.loads(out.strip().splitlines()[-1])
fvtest.check(res["ok"] and res["connections"] == 2, f"reconnect after a loss: {res}\n{err}")
print("  it reconnected after waking up: 2 sessions")
good_agent("hung peer")

# 11. The agent side refuses a coordinator whose certificate is not from its CA.
other = fvnet.Server(netpeer, kit(fed_b, "coordinator"), ["--handshake-timeout-ms", 1500 * S])
res = fvnet.connect(netpeer, kit(fed_a, "bank-a"), other.port, expect_ok=False)
fvtest.check(res["err_name"] == "FV_EAUTH" and res["connections"] == 0,
             f"agent must refuse a coordinator of another CA: {res}")
print(f"agent refused a coordinator from another CA: {res['why']}")
fvtest.check(other.stop() == 0, "second server exit code")

# The long-lived agent was never dropped: stop the server, the agent sees an orderly
# close (BYE) after exactly one connection.
fvtest.check(longlived.poll() is None, "the long-lived agent ended early")
code = srv.stop()
out, err = longlived.communicate(timeout=60 * S)
res = json.loads(out.strip().splitlines()[-1])
fvtest.check(res["connections"] == 1 and res["echoes"] == 1 and res["err"] == 0,
             f"long-lived agent: {res}\n{err}")
fvtest.check(code == 0, f"server exit code {code}")
stopped = [e for e in srv.log if e["event"] == "stopped"]
fvtest.check(stopped and stopped[0]["loop_closed"], f"server loop not closed cleanly: {stopped}")
n_refused = sum(1 for e in srv.log if e["event"] == "refused")
print(f"long-lived agent stayed connected through {n_refused} refusals; server exit 0")
print("PASS")
