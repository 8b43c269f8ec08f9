"""The wire format by hand, for the test peers that speak it (hostile agents, scripted
coordinators): msgpack as protocols/wire.c's top comment ("BODY") specifies it, frames,
and the message type numbers of protocols/fv_wire.h. Standard library only."""
import struct

# Written from the msgpack spec, independent of fedvault's msgpack-c; both directions use
# only shortest encodings, as the coordinator requires and writes.

def mp_encode(o):
    if isinstance(o, bool) or o is None or isinstance(o, float):
        raise TypeError(f"the wire format has no {type(o).__name__}")
    if isinstance(o, dict):
        if len(o) > 15:
            raise ValueError("a message is a fixmap of at most 15 entries")
        return bytes([0x80 | len(o)]) + b"".join(mp_encode(k) + mp_encode(v)
                                                 for k, v in o.items())
    if isinstance(o, str):
        b = o.encode()
        if len(b) < 32:
            return bytes([0xa0 | len(b)]) + b
        if len(b) < 256:
            return b"\xd9" + bytes([len(b)]) + b
        if len(b) < 65536:
            return b"\xda" + struct.pack(">H", len(b)) + b
        return b"\xdb" + struct.pack(">I", len(b)) + b
    if isinstance(o, (bytes, bytearray)):
        o = bytes(o)
        if len(o) < 256:
            return b"\xc4" + bytes([len(o)]) + o
        if len(o) < 65536:
            return b"\xc5" + struct.pack(">H", len(o)) + o
        return b"\xc6" + struct.pack(">I", len(o)) + o
    if isinstance(o, int):
        if 0 <= o < 128:
            return bytes([o])
        if 0 <= o < 256:
            return b"\xcc" + bytes([o])
        if 0 <= o < 65536:
            return b"\xcd" + struct.pack(">H", o)
        if 0 <= o < 2**32:
            return b"\xce" + struct.pack(">I", o)
        if 0 <= o < 2**64:
            return b"\xcf" + struct.pack(">Q", o)
        if -32 <= o < 0:
            return struct.pack("b", o)
        if -128 <= o < 0:
            return b"\xd0" + struct.pack(">b", o)
        if -32768 <= o < 0:
            return b"\xd1" + struct.pack(">h", o)
        if -2**31 <= o < 0:
            return b"\xd2" + struct.pack(">i", o)
        if -2**63 <= o < 0:
            return b"\xd3" + struct.pack(">q", o)
    raise ValueError(f"cannot encode {o!r}")


class MsgpackError(ValueError):
    pass


# (format byte) -> (struct format, size, smallest value the format may hold: shortest form)
_UINTS = {0xcc: (">B", 1, 128), 0xcd: (">H", 2, 256), 0xce: (">I", 4, 65536),
          0xcf: (">Q", 8, 2**32)}
_INTS = {0xd0: (">b", 1, -33), 0xd1: (">h", 2, -129), 0xd2: (">i", 4, -32769),
         0xd3: (">q", 8, -2**31 - 1)}  # value must be <= the bound (else a shorter form)
_STRS = {0xd9: (">B", 1, 32), 0xda: (">H", 2, 256), 0xdb: (">I", 4, 65536)}
_BINS = {0xc4: (">B", 1, 0), 0xc5: (">H", 2, 256), 0xc6: (">I", 4, 65536)}


def mp_decode(b):
    """One msgpack map, nothing after it; only the wire's types, in shortest form."""
    if not b or not 0x80 <= b[0] <= 0x8f:
        raise MsgpackError("a body must be a fixmap")
    o, i = _dec(b, 0, top=True)
    if i != len(b):
        raise MsgpackError(f"{len(b) - i} trailing bytes")
    return o


def _take(b, i, n):
    if i + n > len(b):
        raise MsgpackError("truncated object")
    return b[i:i + n], i + n


def _dec(b, i, top=False):
    raw, i = _take(b, i, 1)
    t = raw[0]
    if t <= 0x7f:
        return t, i
    if t >= 0xe0:
        return t - 256, i
    if 0x80 <= t <= 0x8f:
        if not top:
            raise MsgpackError("a map inside a message")
        d = {}
        for _ in range(t & 0x0f):
            k, i = _dec(b, i)
            if not isinstance(k, str):
                raise MsgpackError(f"a key that is not a str: {k!r}")
            if k in d:
                raise MsgpackError(f"key {k!r} twice")
            d[k], i = _dec(b, i)
        return d, i
    if 0xa0 <= t <= 0xbf or t in _STRS:
        if t in _STRS:
            fmt, sz, least = _STRS[t]
            raw, i = _take(b, i, sz)
            n = struct.unpack(fmt, raw)[0]
            if n < least:
                raise MsgpackError(f"str of {n} bytes in format 0x{t:02x}: not shortest")
        else:
            n = t & 0x1f
        raw, i = _take(b, i, n)
        try:
            return raw.decode("utf-8"), i
        except UnicodeDecodeError:
            raise MsgpackError("a str that is not UTF-8")
    if t in _BINS:
        fmt, sz, least = _BINS[t]
        raw, i = _take(b, i, sz)
        n = struct.unpack(fmt, raw)[0]
        if n < least:
            raise MsgpackError(f"bin of {n} bytes in format 0x{t:02x}: not shortest")
        raw, i = _take(b, i, n)
        return bytes(raw), i
    if t in _UINTS:
        fmt, sz, least = _UINTS[t]
        raw, i = _take(b, i, sz)
        v = struct.unpack(fmt, raw)[0]
        if v < least:
            raise MsgpackError(f"uint {v} in format 0x{t:02x}: not shortest")
        return v, i
    if t in _INTS:
        fmt, sz, bound = _INTS[t]
        raw, i = _take(b, i, sz)
        v = struct.unpack(fmt, raw)[0]
        if v > bound:
            raise MsgpackError(f"int {v} in format 0x{t:02x}: not shortest")
        return v, i
    raise MsgpackError(f"msgpack format 0x{t:02x} is not used by the wire format")


# Known answers from protocols/wire.c's top comment.
assert mp_encode({"v": 1, "type": 3, "seq": 5}).hex() == "83a17601a474797065 03a373657105".replace(" ", "")
_ug = mp_encode({"v": 1, "type": 17, "job": bytes(range(32)), "round": 300})
assert len(_ug) == 57 and _ug.endswith(bytes.fromhex("a5726f756e64cd012c")), _ug.hex()
assert mp_decode(_ug) == {"v": 1, "type": 17, "job": bytes(range(32)), "round": 300}
for _bad in (b"\x81\xa1v\xcc\x01", b"\x81\xa1v\x01\x00", b"\x81\xa1v\xca\0\0\0\0",
             b"\x82\xa1v\x01\xa1v\x01", b"\x81\xa1v\xd0\xff"):
    try:
        mp_decode(_bad)
    except MsgpackError:
        pass
    else:
        raise AssertionError(f"decoded {_bad!r}")


def frame(body):
    """A frame: 4-byte big-endian length, then the body."""
    return struct.pack(">I", len(body)) + body


# Message types (protocols/fv_wire.h fv_msg_type_t).
HELLO, ERROR, PING, PONG, BYE, ECHO, ECHO_REPLY = 1, 2, 3, 4, 5, 6, 7
VEC_BEGIN, VEC_CHUNK, VEC_END, VEC_ACK = 8, 9, 10, 11
JOB_OFFER, JOB_ACCEPT, JOB_REFUSE, ROUND_START, SECAGG, UPLOAD_GO = 12, 13, 14, 15, 16, 17
ROUND_END, JOB_DONE, ADMIN_REQ, ADMIN_RESP, RECEIPT = 18, 19, 20, 21, 22
RELEASE, RELEASE_SYNC, FETCH, FILE_CHUNK, FETCH_FAIL = 23, 24, 25, 26, 27
NAMES = {HELLO: "hello", ERROR: "error", PING: "ping", PONG: "pong", BYE: "bye",
         ECHO: "echo", ECHO_REPLY: "echo_reply", VEC_BEGIN: "vec_begin",
         VEC_CHUNK: "vec_chunk", VEC_END: "vec_end", VEC_ACK: "vec_ack",
         JOB_OFFER: "job_offer", JOB_ACCEPT: "job_accept", JOB_REFUSE: "job_refuse",
         ROUND_START: "round_start", SECAGG: "secagg", UPLOAD_GO: "upload_go",
         ROUND_END: "round_end", JOB_DONE: "job_done", ADMIN_REQ: "admin_req",
         ADMIN_RESP: "admin_resp", RECEIPT: "receipt", RELEASE: "release",
         RELEASE_SYNC: "release_sync", FETCH: "fetch", FILE_CHUNK: "file_chunk",
         FETCH_FAIL: "fetch_fail"}


# Schema discovery (protocols/fv_wire.h, "SCHEMA"): helper S2's types and fields.
SCHEMA_QUERY, SCHEMA_VOCAB = 28, 29
NAMES.update({SCHEMA_QUERY: "schema_query", SCHEMA_VOCAB: "schema_vocab"})


def schema_query(job, spec):
    """SCHEMA_QUERY {job (32 bytes), spec (bytes: canonical JSON)}: a body."""
    return mp_encode({"v": 1, "type": SCHEMA_QUERY, "job": bytes(job), "spec": bytes(spec)})


def schema_vocab(job, status=0, category="", body=""):
    """SCHEMA_VOCAB {job, status (0 or negative), category ([a-z] word, "" with status 0),
    body (vocabulary JSON text, "" for a refusal)}: a body."""
    return mp_encode({"v": 1, "type": SCHEMA_VOCAB, "job": bytes(job), "status": status,
                      "category": category, "body": body})


class FrameReader:
    """Splits a byte stream into frame bodies (max_frame bytes at most each)."""

    def __init__(self, max_frame=64 << 20):
        self.buf = b""
        self.max_frame = max_frame

    def feed(self, data):
        self.buf += data
        out = []
        while len(self.buf) >= 4:
            n = struct.unpack(">I", self.buf[:4])[0]
            if n > self.max_frame:
                raise MsgpackError(f"a frame of {n} bytes is over the cap {self.max_frame}")
            if len(self.buf) < 4 + n:
                break
            out.append(self.buf[4:4 + n])
            self.buf = self.buf[4 + n:]
        return out


# JOB_REFUSE's "category" (protocols/fv_wire.h fv_refuse_category_t): one of these words;
# an agent before it sends none, which the coordinator reads as "unknown".
REFUSE_CATEGORIES = ("schema", "policy", "version", "resources", "data", "protocol", "unknown")


def job_refuse(job, reason, category=None):
    """A JOB_REFUSE body: {v, type, job (32 bytes), reason[, category]} (no category: what
    an older agent sends)."""
    m = {"v": 1, "type": JOB_REFUSE, "job": bytes(job), "reason": reason}
    if category is not None:
        m["category"] = category
    return mp_encode(m)
