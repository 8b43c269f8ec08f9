"""Throughput of fedvault's TLS stream on loopback, as a ratio to `openssl s_server` /
`s_client` moving the same bytes in the same run.

argv: fedvault fv-netpeer [--mb N] [--reps N]

Both sides use the same federation certificates (Ed25519, mutual TLS 1.3, the default
cipher suite TLS_AES_256_GCM_SHA384), one process each on 127.0.0.1.
  fedvault: fv-netpeer connect --send-vec N -> fv-netpeer serve. Timed inside the client
            from handing the vector to fv_conn until the server's VEC_ACK (the server has
            every chunk, decoded, copied, digest checked). Chunks of 1 MiB.
  openssl:  s_client -no_ign_eof -nocommands < file -> s_server -naccept 1, whose stdout (the
            received bytes) this script reads and counts. Timed from starting s_client
            until s_server has delivered the last byte (includes process start and the
            handshake: a few ms against seconds of transfer).
Best of --reps for each. The ratio > 1 means fedvault is faster.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import fvbench

ap = argparse.ArgumentParser()
ap.add_argument("fedvault")
ap.add_argument("netpeer")
ap.add_argument("--mb", type=int, default=256)
ap.add_argument("--reps", type=int, default=3)
a = ap.parse_args()
print("machine: " + fvbench.machine(a.fedvault), flush=True)

tmp = tempfile.mkdtemp(prefix="fv-bench-net-")
subprocess.run([a.fedvault, "provision", "--federation", "bench", "--coordinator",
                "127.0.0.1:7000", "--agents", "bank-a", "--admins", "ops-1", "--out",
                tmp + "/fed"], check=True, capture_output=True)
coord, agent = tmp + "/fed/coordinator", tmp + "/fed/bank-a"
n_bytes = a.mb * 1000 * 1000
n_elems = n_bytes // 4


def fedvault_once():
    srv = subprocess.Popen([a.netpeer, "serve", "--kit", coord], stdout=subprocess.PIPE,
                           text=True)
    import json
    port = json.loads(srv.stdout.readline())["port"]
    p = subprocess.run([a.netpeer, "connect", "--kit", agent, "--to", f"127.0.0.1:{port}",
                        "--send-vec", str(n_elems)], capture_output=True, text=True)
    srv.terminate()
    srv.wait()
    res = json.loads(p.stdout.strip().splitlines()[-1])
    if not res["ok"] or not res["vec_sent_acked"]:
        sys.exit(f"fedvault transfer failed: {res}")
    return res["vec_send_s"]


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


data_file = tmp + "/payload"
with open(data_file, "wb") as f:
    block = os.urandom(1 << 20)
    left = n_bytes
    while left > 0:
        f.write(block[:min(left, len(block))])
        left -= len(block)


def openssl_once():
    port = free_port()
    srv = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}",
                            "-naccept", "1", "-quiet", "-tls1_3",
                            "-cert", coord + "/cert.pem", "-key", coord + "/key.pem",
                            "-CAfile", coord + "/ca.pem", "-Verify", "1",
                            "-verify_return_error"],
                           stdin=subprocess.PIPE,  # at EOF on stdin s_server quits
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # s_server prints nothing with -quiet; give it time to listen
    t0 = time.perf_counter()
    with open(data_file, "rb") as f:
        cli = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                                "-quiet", "-no_ign_eof", "-nocommands", "-tls1_3",
                                "-cert", agent + "/cert.pem", "-key", agent + "/key.pem",
                                "-CAfile", agent + "/ca.pem", "-verify_return_error"],
                               stdin=f, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        got = 0
        while got < n_bytes:
            b = srv.stdout.read1(1 << 20)
            if not b:
                break
            got += len(b)
        t1 = time.perf_counter()
        cli.wait()
    srv.kill()
    srv.wait()
    if got != n_bytes:
        sys.exit(f"openssl moved {got} bytes, expected {n_bytes}")
    return t1 - t0


fv, ossl = [], []
for _ in range(a.reps):
    fv.append(fedvault_once())
    ossl.append(openssl_once())
fv_best, ossl_best = min(fv), min(ossl)
mb = n_bytes / 1e6
print(f"loopback TLS 1.3, {mb:.0f} MB, best of {a.reps}")
print(f"  fedvault stream (chunked vector, acked) : {fv_best:.3f} s  {mb / fv_best:8.1f} MB/s"
      f"   runs {', '.join(f'{t:.3f}' for t in fv)}")
print(f"  openssl s_client -> s_server           : {ossl_best:.3f} s  {mb / ossl_best:8.1f} MB/s"
      f"   runs {', '.join(f'{t:.3f}' for t in ossl)}")
print(f"ratio fedvault / openssl throughput: {ossl_best / fv_best:.2f}")
