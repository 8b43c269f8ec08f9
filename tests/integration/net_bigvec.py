"""A 100 MB vector each way over the TLS stream, with bounded memory on both sides.

argv: fedvault fv-netpeer. The agent sends a 100 MB float vector in chunks (1 MiB each
by default) and waits for the server's VEC_ACK (digest checked); then it asks for a
100 MB vector and checks every element. Each process reports its peak RSS
(getrusage ru_maxrss). A process must hold the vector once, plus buffers bounded by the
chunk size and the write-queue low-water mark: the test asserts peak RSS < 1.5x the
vector (the issue asks for well under 2x). Under AddressSanitizer or valgrind the RSS of
a process says nothing about our buffers (shadow memory, quarantine), so there the
numbers are printed and only the release build asserts them (tests/run.sh runs this test
in the release build).
"""
import os
import sys
import time

import fvnet
import fvtest

fedvault, netpeer = sys.argv[1], sys.argv[2]
tmp = fvtest.tmpdir()
fed = fvnet.provision(fedvault, os.path.join(tmp, "fed"), "fed", ["bank-a"])
N = 100 * 1000 * 1000 // 4  # 100 MB of float32
vec_kb = N * 4 / 1024

srv = fvnet.Server(netpeer, os.path.join(fed, "coordinator"))
t0 = time.time()
res = fvnet.connect(netpeer, os.path.join(fed, "bank-a"), srv.port, "--send-vec", N,
                    "--recv-vec", N, timeout=600)
secs = time.time() - t0
fvtest.check(res["vec_sent_acked"] and res["vec_received_ok"], f"vectors: {res}")
got = srv.wait(lambda e: e["event"] == "vec_received", 60 * fvnet.SLOW, "vec_received")
fvtest.check(got["content_ok"] and got["n"] == N, f"server side: {got}")
srv.stop()
srv_rss = max(e.get("rss_kb", 0) for e in srv.log)
cli_rss = res["rss_kb"]
print(f"2 x 100 MB over TLS in {secs:.1f} s (both ways, including process start)")
print(f"peak RSS: agent {cli_rss / 1024:.1f} MiB ({cli_rss / vec_kb:.2f}x the vector), "
      f"server {srv_rss / 1024:.1f} MiB ({srv_rss / vec_kb:.2f}x the vector)")
sanitized = os.environ.get("FV_SANITIZE", "none") not in ("", "none")
if sanitized or fvnet.WRAPPER:
    print("RSS not asserted here (sanitizer or valgrind build); the release build asserts it")
else:
    fvtest.check(cli_rss < 1.5 * vec_kb, f"agent peak RSS {cli_rss} kB >= 1.5x vector")
    fvtest.check(srv_rss < 1.5 * vec_kb, f"server peak RSS {srv_rss} kB >= 1.5x vector")
print("PASS")
