"""Helpers for the transport's integration tests (stdlib only).

Starts fv-netpeer servers and clients as real processes on 127.0.0.1, provisions
federations with the real `fedvault provision`, and speaks the wire format by hand
(a minimal msgpack encoder written from the msgpack spec, independent of fedvault's own
encoder) to play misbehaving peers; and agents played by hand (WireAgent: a strict msgpack
codec, the coordinator's messages checked key by key) for the federation tests.
"""
import hashlib
import json
import os
import queue
import socket
import ssl
import struct
import subprocess
import threading
import time

import fvtest
from fvwire import (BYE, ERROR, FETCH, FETCH_FAIL, FILE_CHUNK, HELLO, JOB_ACCEPT,  # noqa: F401
                    JOB_DONE, JOB_OFFER, PING, PONG, RECEIPT, RELEASE, RELEASE_SYNC, ROUND_END,
                    ROUND_START, SECAGG, UPLOAD_GO, VEC_ACK, VEC_BEGIN, VEC_CHUNK, VEC_END,
                    MsgpackError, mp_decode, mp_encode)

WRAPPER = fvtest.WRAPPER
SLOW = fvtest.SLOW


def provision(fedvault, out, federation, agents, admins=("ops-1",), coordinator="127.0.0.1:7000"):
    fvtest.run(["provision", "--federation", federation, "--coordinator", coordinator,
                "--agents", ",".join(agents), "--admins", ",".join(admins), "--out", out],
               expect=0)
    return out


class Server:
    """fv-netpeer serve; events are parsed JSON lines, read by a thread."""

    def __init__(self, netpeer, kit, extra=()):
        args = WRAPPER + [netpeer, "serve", "--kit", kit, "--admin-listen", "127.0.0.1:0"]
        args += [str(a) for a in extra]
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        self.events = queue.Queue()
        self.log = []
        self.err_lines = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        ev = self.wait(lambda e: e["event"] == "listening", 30 * SLOW, "listening")
        self.port = ev["port"]
        self.admin_port = ev["admin_port"]

    def _read(self):
        for line in self.p.stdout:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                ev = {"event": "junk", "line": line}
            self.log.append(ev)
            self.events.put(ev)

    def _read_err(self):
        for line in self.p.stderr:
            self.err_lines.append(line)

    def wait(self, pred, timeout, what):
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                fvtest.fail(f"server: no '{what}' event within {timeout}s; events so far:\n"
                            + "\n".join(json.dumps(e) for e in self.log)
                            + "\nstderr:\n" + "".join(self.err_lines))
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if pred(ev):
                return ev

    def hup(self):
        self.p.send_signal(1)

    def stop(self):
        self.p.terminate()
        try:
            code = self.p.wait(timeout=60 * SLOW)
        except subprocess.TimeoutExpired:
            self.p.kill()
            fvtest.fail("server did not stop on SIGTERM within the deadline")
        time.sleep(0.2)
        return code


def connect(netpeer, kit, port, *extra, expect_ok=True, timeout=120):
    """fv-netpeer connect; returns its JSON result."""
    args = WRAPPER + [netpeer, "connect", "--kit", kit, "--to", f"127.0.0.1:{port}"]
    args += [str(a) for a in extra]
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout * SLOW)
    try:
        res = json.loads(p.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        fvtest.fail(f"fv-netpeer connect printed no result (exit {p.returncode}):\n"
                    f"{p.stdout}\n{p.stderr}")
    if expect_ok is not None and res.get("ok") != expect_ok:
        fvtest.fail(f"connect with {kit}: expected ok={expect_ok}, got {res}\n{p.stderr}")
    if (p.returncode == 0) != res["ok"]:
        fvtest.fail(f"exit code {p.returncode} disagrees with the result {res}")
    return res


# ---- the wire format, by hand ---------------------------------------------------------
# Field names as specified at the top of protocols/wire.c.

def mp(obj):
    """A minimal msgpack encoder: dict (str keys), str, bytes, non-negative/negative int."""
    if isinstance(obj, dict):
        assert len(obj) < 16
        out = bytes([0x80 | len(obj)])
        for k, v in obj.items():
            out += mp(k) + mp(v)
        return out
    if isinstance(obj, str):
        b = obj.encode()
        assert len(b) < 32
        return bytes([0xa0 | len(b)]) + b
    if isinstance(obj, bytes):
        if len(obj) < 256:
            return bytes([0xc4, len(obj)]) + obj
        if len(obj) < 65536:
            return b"\xc5" + struct.pack(">H", len(obj)) + obj
        return b"\xc6" + struct.pack(">I", len(obj)) + obj
    if isinstance(obj, int):
        if 0 <= obj < 128:
            return bytes([obj])
        if 0 <= obj < 2**32:
            return b"\xce" + struct.pack(">I", obj)
        if -32 <= obj < 0:
            return struct.pack("b", obj)
        return b"\xd2" + struct.pack(">i", obj)
    raise TypeError(obj)


def frame(body):
    return struct.pack(">I", len(body)) + body


def pem_der(path):
    """The DER of the first PEM block in a file (a certificate or a CRL)."""
    import base64
    text = open(path).read()
    body = text.split("-----BEGIN ")[1].split("-----", 1)[1].split("-----END ")[0]
    return base64.b64decode("".join(body.split()))


def cert_pk(der):
    """The raw Ed25519 key of a DER certificate: the 32 bytes after its
    SubjectPublicKeyInfo header (30 2a 30 05 06 03 2b 65 70 03 21 00)."""
    spki = bytes.fromhex("302a300506032b6570032100")
    at = der.index(spki) + len(spki)
    return der[at:at + 32]


def certs_field(ders):
    """ROUND_START "certs" (protocols/wire.c): each a 2-byte big-endian length and DER."""
    return b"".join(struct.pack(">H", len(d)) + d for d in ders)


def coordinator_listener(kit, timeout):
    """A scripted coordinator's TLS 1.3 server side with the coordinator's kit (mutual:
    the agent's certificate is required and checked against the kit's CA): returns
    (ssl context, listening socket on 127.0.0.1, port)."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.minimum_version = ssl.TLSVersion.TLSv1_3
    sctx.load_cert_chain(os.path.join(kit, "cert.pem"), os.path.join(kit, "key.pem"))
    sctx.load_verify_locations(os.path.join(kit, "ca.pem"))
    sctx.verify_mode = ssl.CERT_REQUIRED
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    lsock.settimeout(timeout)
    return sctx, lsock, lsock.getsockname()[1]


def hello():
    return frame(mp({"v": 1, "type": 1, "sw": "python test", "maxf": 1 << 20}))


def tls_client(kit, port, cert=True, ca=None):
    """A Python TLS 1.3 client (optionally without a certificate); returns the socket."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(ca or os.path.join(kit, "ca.pem"))
    if cert:
        ctx.load_cert_chain(os.path.join(kit, "cert.pem"), os.path.join(kit, "key.pem"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    s = ctx.wrap_socket(raw)
    return s


def read_until_closed(s, limit=1 << 20):
    """Reads until EOF or error; returns the bytes read (bounded)."""
    got = b""
    try:
        while len(got) < limit:
            b = s.recv(65536)
            if not b:
                break
            got += b
    except (OSError, ssl.SSLError):
        pass
    return got


# ---- a strict msgpack codec, the subset the wire uses: fvwire.py ------------------------
# (mp above is the minimal encoder the transport tests use; agents played by hand use
# fvwire's strict one, written from the msgpack spec, independent of msgpack-c.)
# (its known answers from protocols/wire.c's top comment are checked in fvwire.py)

# ---- messages (protocols/fv_wire.h, wire.c): the type numbers are fvwire's -----------
# What the coordinator may send an agent: each message's keys besides "v" and "type".
KEYS = {HELLO: {"sw", "maxf"}, ERROR: {"code", "reason"}, PING: {"seq"}, PONG: {"seq"},
        BYE: {"reason"}, VEC_BEGIN: {"id", "dtype", "n", "chunk", "name"},
        VEC_CHUNK: {"id", "seq", "data"}, VEC_END: {"id", "sha256"}, VEC_ACK: {"id", "sha256"},
        JOB_OFFER: {"job", "spec", "crl"},
        ROUND_START: {"job", "round", "kind", "index", "n", "t", "k", "gseed", "pks", "model",
                      "nref", "certs"},
        SECAGG: {"job", "round", "data"},
        UPLOAD_GO: {"job", "round"}, ROUND_END: {"job", "round", "status", "reason"},
        JOB_DONE: {"job", "rounds", "model"}, RECEIPT: {"job", "round", "body", "sig"},
        RELEASE: {"body"}, RELEASE_SYNC: {"n", "crl"},
        FILE_CHUNK: {"sha256", "offset", "total", "data"}, FETCH_FAIL: {"sha256", "reason"}}
BYTES_KEYS = {"job", "spec", "crl", "gseed", "pks", "model", "certs", "data", "sha256", "sig"}
STR_KEYS = {"sw", "reason", "name", "body"}


def decode_msg(body):
    m = mp_decode(body)
    if m.get("v") != 1:
        raise MsgpackError(f"version {m.get('v')!r}")
    t = m.get("type")
    if t not in KEYS:
        raise MsgpackError(f"unexpected message type {t!r} from the coordinator")
    got = set(m) - {"v", "type"}
    if got != KEYS[t]:
        raise MsgpackError(f"type {t}: keys {sorted(got)}, expected {sorted(KEYS[t])}")
    for k, v in m.items():
        want = bytes if k in BYTES_KEYS else str if k in STR_KEYS else int
        if not isinstance(v, want):
            raise MsgpackError(f"type {t}: {k} is {type(v).__name__}, expected {want.__name__}")
    return m


class Closed(Exception):
    pass


# ---- an agent played by hand ------------------------------------------------------------

POLL_S = 0.01     # how long recv waits for a message before it returns None
MAXF = 1 << 20    # the frame size a hand-played agent announces


class WireAgent:
    """An agent played by hand: mutual TLS with its own kit (made by `fedvault
    provision`), the wire format spoken with the strict codec above. It says HELLO,
    answers PINGs and acknowledges vectors (recv hands them out whole); what it does with
    the job is the subclass's (hostile_agent.py: lying uploads; silent_member.py: nothing
    at all)."""

    def __init__(self, kit, port, sw):
        self.kit, self.port, self.sw = kit, port, sw
        self.sock = None
        self.buf, self.vec = b"", None
        self.peer_maxf = None

    def send(self, fields):
        body = mp_encode(dict({"v": 1}, **fields))
        self.sock.settimeout(30 * SLOW)
        self.sock.sendall(struct.pack(">I", len(body)) + body)
        self.sock.settimeout(POLL_S)

    def recv(self):
        """The next message, or None after POLL_S without one. PINGs are answered here;
        a vector comes out whole as {"type": "vec", "name", "id", "n", "data"}."""
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if n == 0 or n > MAXF:
                    raise MsgpackError(f"frame of {n} bytes (announced at most {MAXF})")
                if len(self.buf) >= 4 + n:
                    body, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    m = self.handle(decode_msg(body))
                    if m is not None:
                        return m
                    continue
            try:
                b = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                return None
            except (OSError, ssl.SSLError) as e:
                raise Closed(str(e))
            if not b:
                raise Closed("EOF")
            self.buf += b

    def handle(self, m):
        t = m["type"]
        if t == PING:
            self.send({"type": PONG, "seq": m["seq"]})
            return None
        if t == VEC_BEGIN:
            self.vec = {"type": "vec", "name": m["name"], "id": m["id"], "n": m["n"],
                        "dtype": m["dtype"], "data": b""}
            return None
        if t == VEC_CHUNK:
            if self.vec is None or m["id"] != self.vec["id"]:
                raise MsgpackError("a chunk outside its vector")
            self.vec["data"] += m["data"]
            return None
        if t == VEC_END:
            v, self.vec = self.vec, None
            if v is None or len(v["data"]) != 4 * v["n"]:
                raise MsgpackError("a vector ended short")
            digest = hashlib.sha256(v["data"]).digest()
            if digest != m["sha256"]:
                raise MsgpackError(f"vector {v['name']}: digest mismatch")
            self.send({"type": VEC_ACK, "id": v["id"], "sha256": digest})
            return v
        return m

    def connect(self):
        self.sock = tls_client(self.kit, self.port)
        self.buf, self.vec = b"", None
        self.sock.settimeout(POLL_S)
        self.send({"type": HELLO, "sw": self.sw, "maxf": MAXF})
        t0 = time.time()
        m = None
        while m is None and time.time() - t0 < 30 * SLOW:
            m = self.recv()
        if m is None or m["type"] != HELLO:
            raise Closed(f"no HELLO from the coordinator: {m}")
        self.peer_maxf = m["maxf"]

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
