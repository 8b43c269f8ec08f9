"""The caps on strangers (protocols/fv_conn.h): real sockets against fv-netpeer serve.

argv: fedvault fv-netpeer. Connections come from distinct loopback addresses (each
socket bound to 127.0.0.N before connecting), so the per-source caps see distinct
sources. The handshake deadline is long (60 s) in the first server, so a connection the
server closes within the test's 20 s socket timeout was closed by a cap, not by the
deadline; a cap that failed to act shows up as a receive timeout. The counts come from
the server's own counters (SIGUSR1 -> a "stats" line) and refused or evicted strangers
must not reach the application (no "refused" event for them).
A second server with a 1 s deadline checks that the deadline covers a peer that sends
nothing and one that sends half a ClientHello.
"""
import os
import select
import socket
import ssl
import sys
import time

import fvnet
import fvtest

fedvault, netpeer = sys.argv[1], sys.argv[2]
tmp = fvtest.tmpdir()
fed = os.path.join(tmp, "fed")
fvnet.provision(fedvault, fed, "fed-s", ["bank-a"])
S = fvnet.SLOW


def client_hello():
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


HELLO = client_hello()


def conn(src, port, send=b""):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(20 * S)
    s.bind((f"127.0.0.{src}", 0))
    s.connect(("127.0.0.1", port))
    if send:
        s.sendall(send)
    return s


def closed_by_server(s, what):
    """The server closes s (EOF or reset; a TLS alert before it is fine)."""
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        fvtest.fail(f"{what}: the server did not close the connection within {20 * S} s")


def stats(srv):
    srv.p.send_signal(10)  # SIGUSR1
    return srv.wait(lambda e: e["event"] == "stats", 10 * S, "stats")


srv = fvnet.Server(netpeer, os.path.join(fed, "coordinator"),
                   ["--handshake-timeout-ms", 60000, "--max-unauth", 6,
                    "--max-unauth-per-source", 2, "--max-handshakes", 2,
                    "--max-handshakes-per-source", 1])
port = srv.port

# A. Per source: two silent connections from 127.0.0.2 are held, the third is closed.
a = [conn(2, port), conn(2, port)]
closed_by_server(conn(2, port), "third connection from one source")
st = stats(srv)
fvtest.check(st["refused_unauth_source"] == 1 and st["n_unauth"] == 2, f"A: {st}")
print("A. per-source cap: the third silent connection from 127.0.0.2 closed at once")

# B. Handshakes per source: a ClientHello from 127.0.0.3 makes a TLS engine; a second
# one from there is closed at its first bytes.
b = [conn(3, port, HELLO)]
closed_by_server(conn(3, port, HELLO), "second handshake from one source")
st = stats(srv)
fvtest.check(st["refused_handshakes"] == 1 and st["n_handshakes"] == 1, f"B: {st}")
print("B. per-source handshake cap: the second ClientHello from 127.0.0.3 closed")

# C. Handshakes, all sources (2): 127.0.0.4 takes the second slot; 127.0.0.5's
# ClientHello finds no source holding two more than itself, so it is closed.
c = [conn(4, port, HELLO)]
closed_by_server(conn(5, port, HELLO), "handshake over the global cap")
st = stats(srv)
fvtest.check(st["refused_handshakes"] == 2 and st["n_handshakes"] == 2 and
             st["evicted"] == 0, f"C: {st}")
print("C. global handshake cap: a third ClientHello closed")

# The stalled handshakes go (closed by this side); the server notices them.
for x in b + c:
    x.close()
deadline = time.monotonic() + 20 * S
while stats(srv)["n_handshakes"] != 0:
    fvtest.check(time.monotonic() < deadline, "the closed handshakes were never released")
    time.sleep(0.05)

# D. Strangers, all sources (6): 127.0.0.6 and 127.0.0.8 hold two more each (2+2+2 = 6);
# a newcomer from 127.0.0.7 evicts the oldest stranger of a source holding two (a[0],
# d[0] or f[0]) instead of being refused.
d = [conn(6, port), conn(6, port)]
f = [conn(8, port), conn(8, port)]
e = conn(7, port)
readable, _, _ = select.select([a[0], d[0], f[0]], [], [], 20 * S)
fvtest.check(readable, "D: no stranger evicted for the newcomer from 127.0.0.7")
closed_by_server(readable[0], "the evicted stranger")
st = stats(srv)
fvtest.check(st["evicted"] == 1 and st["refused_unauth"] == 0 and st["n_unauth"] == 6,
             f"D: {st}")
print("D. global cap: a newcomer from a quiet source evicted the oldest of a heavy one")

# E. A good agent still gets in (it evicts a stranger of its own), with the cap full.
res = fvnet.connect(netpeer, os.path.join(fed, "bank-a"), port, "--echo", 2)
fvtest.check(res["echoes"] == 2, f"E: good agent {res}")
st = stats(srv)
fvtest.check(st["evicted"] == 2 and st["n_unauth"] == 5, f"E: {st}")
print("E. a good agent from 127.0.0.1 gets through with the strangers' cap full")

for s in a + d + f + [e]:
    s.close()
code = srv.stop()
fvtest.check(code == 0, f"server exit {code}")
refused = [ev for ev in srv.log if ev["event"] == "refused"]
# the closes of the strangers still held at the end (by this side) are reported; the
# ones refused or evicted by a cap never are
fvtest.check(not any("too many" in ev["why"] or "evicted" in ev["why"] for ev in refused),
             f"capped strangers reached the application: {refused}")

# F. The handshake deadline covers silence and half a ClientHello.
srv2 = fvnet.Server(netpeer, os.path.join(fed, "coordinator"), ["--handshake-timeout-ms", 1000])
silent = conn(2, srv2.port)
half = conn(3, srv2.port, HELLO[:len(HELLO) // 2])
closed_by_server(silent, "a silent peer past the handshake deadline")
closed_by_server(half, "half a ClientHello past the handshake deadline")
st = stats(srv2)
fvtest.check(st["handshake_timeouts"] == 2 and st["n_unauth"] == 0, f"F: {st}")
fvtest.check(srv2.stop() == 0, "second server's exit")
print("F. handshake deadline: a silent peer and half a ClientHello closed at 1 s")
print("net-strangers: ok")
