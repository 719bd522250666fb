#!/usr/bin/env python3
"""Generate the vyx protocol v1 test vectors (spec/vectors/*.json).

An independent encoder of spec/PROTOCOL.md, Python 3 standard library only.
Run from anywhere:  python3 spec/vectors/generate.py [--out DIR]
The output is deterministic: running it twice gives byte-identical files.

Before writing anything the script checks itself:
  * every frame vector is decoded again by the small decoder below and must
    give back exactly the frame it was encoded from, and re-encode to the
    same bytes;
  * every malformed vector must fail with exactly the named error kind, under
    two decoders that read the payload in different orders (so a vector
    never depends on the order in which payload fields are validated);
  * every handshake case is run through the HELLO validation rules, every
    WELCOME case through the worker's WELCOME check;
  * every routing expectation is computed by a matcher that scores all routes
    (not the trie vyx-core walks) and checked against the hand-written answer;
  * SplitMix64(0) must start with 0xE220A8397B1DCDAF.
"""

import json
import os
import struct
import sys

from client import client_vectors
from cookies import cookie_vectors
from query import query_vectors

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------
# Constants (spec/PROTOCOL.md)
# ---------------------------------------------------------------------------

PROTOCOL_VERSION = 1
HEADER_LEN = 6
MAX_FRAME_SIZE = 1048576
END_STREAM = 0x01
# REQUEST only, extension `upgrade`: the client asked to switch protocols (PROTOCOL.md §4.5).
UPGRADE = 0x02
MAX_WINDOW = 2**31 - 1
U64_MAX = 2**64 - 1

TYPES = {
    0x00: "DATA",
    0x01: "REQUEST",
    0x02: "RESPONSE",
    0x03: "RESET",
    0x04: "TRAILERS",
    0x05: "INFORMATIONAL",
    0x08: "WINDOW",
    0x10: "HELLO",
    0x11: "WELCOME",
    0x12: "DRAIN",
    0x13: "ROUTES",
    0x14: "ERROR",
}
CODES = {name: code for code, name in TYPES.items()}
ALLOWED_FLAGS = {
    "DATA": END_STREAM,
    "REQUEST": END_STREAM | UPGRADE,
    "RESPONSE": END_STREAM,
    "RESET": 0,
    "TRAILERS": 0,
    "INFORMATIONAL": 0,
    "WINDOW": 0,
    "HELLO": 0,
    "WELCOME": 0,
    "DRAIN": 0,
    "ROUTES": 0,
    "ERROR": 0,
}
STREAM_TYPES = ("DATA", "REQUEST", "RESPONSE", "RESET", "TRAILERS", "INFORMATIONAL", "WINDOW")
# Frames whose payload is a head: a payload error after a valid header fails the stream only.
HEAD_TYPES = ("REQUEST", "RESPONSE", "TRAILERS", "INFORMATIONAL")
CONTROL_TYPES = ("HELLO", "WELCOME", "DRAIN", "ROUTES", "ERROR")

CLOSE_PROTOCOL_VIOLATION = 4005
CLOSE_FRAME_TOO_LARGE = 4006
CLOSE_BAD_HELLO = 4001
CLOSE_UNSUPPORTED_VERSION = 4002

ERROR_KINDS = (
    "truncated_header",
    "frame_too_large",
    "unknown_type",
    "invalid_flags",
    "stream_id_zero",
    "stream_id_nonzero",
    "truncated_payload",
    "trailing_bytes",
    "invalid_method",
    "invalid_target",
    "invalid_header_name",
    "invalid_header_value",
    "invalid_param_name",
    "invalid_status",
    "invalid_reset_reason",
    "invalid_window_increment",
    "invalid_control_payload",
)


def close_code_for(kind, raw):
    """The close code a receiver without stream context reports: a HELLO payload that does
    not decode is bad_hello (the worker has a bug that retrying cannot fix); every other
    decode error is 4005/4006. (A REQUEST or RESPONSE payload error on a stream its receiver
    opens or has open is a stream error instead: the vector's stream_error flag.)"""
    if kind == "frame_too_large":
        return CLOSE_FRAME_TOO_LARGE
    if kind == "invalid_control_payload" and raw[:1] == b"\x10":
        return CLOSE_BAD_HELLO
    return CLOSE_PROTOCOL_VIOLATION


# Key order of every control message: the order in which senders emit keys. `features` is
# emitted only when it is not empty (§2.6), WELCOME's `connections` only when it is not 1
# (§3.8), so a message without them is v1's.
OMITTED_WHEN_DEFAULT = {"features": [], "connections": 1}
CONTROL_KEYS = {
    "HELLO": ["protocol", "worker_id", "instance", "sdk", "max_concurrency", "routes", "labels",
              "features"],
    "WELCOME": ["protocol", "gateway", "connection_id", "heartbeat_ms", "initial_window",
                "max_frame_size", "max_concurrency", "connections", "features"],
    "DRAIN": ["reason", "deadline_ms"],
    "ROUTES": ["routes"],
    "ERROR": ["code", "message"],
}
ROUTE_KEYS = ["id", "method", "path", "idempotent"]

TCHAR = set(b"!#$%&'*+-.^_`|~0123456789"
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class DecodeError(Exception):
    def __init__(self, kind):
        assert kind in ERROR_KINDS, kind
        super().__init__(kind)
        self.kind = kind


# ---------------------------------------------------------------------------
# Encoder (works on the JSON form used in frames.json)
# ---------------------------------------------------------------------------

def u16(n):
    assert 0 <= n <= 0xFFFF
    return struct.pack(">H", n)


def u32(n):
    assert 0 <= n <= 0xFFFFFFFF
    return struct.pack(">I", n)


def str16(b):
    return u16(len(b)) + b


def header(type_code, flags, stream_id):
    return bytes([type_code, flags]) + u32(stream_id)


def control_json_bytes(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_fields(pairs):
    """pairs: [[name(str), value(hex str)], ...] -> count u16 + str16 pairs."""
    out = u16(len(pairs))
    for name, value_hex in pairs:
        out += str16(name.encode("utf-8")) + str16(bytes.fromhex(value_hex))
    return out


def encode(frame):
    t = frame["type"]
    if t in CONTROL_TYPES:
        return header(CODES[t], 0, 0) + control_json_bytes(frame["json"])
    sid = frame["stream_id"]
    if t == "DATA":
        flags = END_STREAM if frame["end_stream"] else 0
        payload = bytes.fromhex(frame["data"])
    elif t == "REQUEST":
        flags = (END_STREAM if frame["end_stream"] else 0) | (UPGRADE if frame["upgrade"] else 0)
        payload = (u16(frame["route_id"])
                   + str16(frame["method"].encode("ascii"))
                   + str16(frame["target"].encode("ascii"))
                   + encode_fields(frame["params"])
                   + encode_fields(frame["headers"]))
    elif t == "RESPONSE":
        flags = END_STREAM if frame["end_stream"] else 0
        payload = u16(frame["status"]) + encode_fields(frame["headers"])
    elif t == "TRAILERS":
        flags = 0
        payload = encode_fields(frame["headers"])
    elif t == "INFORMATIONAL":
        flags = 0
        payload = u16(frame["status"]) + encode_fields(frame["headers"])
    elif t == "RESET":
        flags = 0
        payload = u32(frame["code"]) + frame["reason"].encode("utf-8")
    elif t == "WINDOW":
        flags = 0
        payload = u32(frame["increment"])
    else:
        raise AssertionError(t)
    return header(CODES[t], flags, sid) + payload


# ---------------------------------------------------------------------------
# Decoder (self-check). Two payload strategies:
#   "streaming"       validate each field as soon as it is read, then check
#                     for trailing bytes;
#   "structure_first" read the whole structure and check trailing bytes
#                     first, then validate the fields in reverse order.
# A malformed vector with exactly one fault gives the same kind under both.
# ---------------------------------------------------------------------------

class Reader:
    def __init__(self, buf):
        self.buf = buf
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.buf):
            raise DecodeError("truncated_payload")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def str16(self):
        return self.take(self.u16())

    def rest(self):
        b = self.buf[self.pos:]
        self.pos = len(self.buf)
        return b

    def finish(self):
        if self.pos != len(self.buf):
            raise DecodeError("trailing_bytes")


def check_method(b):
    if len(b) == 0 or any(c not in TCHAR for c in b):
        raise DecodeError("invalid_method")


def check_target(b):
    if len(b) == 0 or b[0] != 0x2F or any(c < 0x21 or c > 0x7E for c in b):
        raise DecodeError("invalid_target")


def check_param_name(b):
    if len(b) == 0:
        raise DecodeError("invalid_param_name")
    try:
        b.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise DecodeError("invalid_param_name")


def check_header_name(b):
    if len(b) == 0 or any(c not in TCHAR or 0x41 <= c <= 0x5A for c in b):
        raise DecodeError("invalid_header_name")


def check_header_value(b):
    # RFC 9110 field-value bytes: HTAB, 0x20-0x7E, 0x80-0xFF.
    if any(not (c == 0x09 or 0x20 <= c <= 0x7E or c >= 0x80) for c in b):
        raise DecodeError("invalid_header_value")


def check_status(s):
    # 101 decodes; that it answers an UPGRADE stream is the session's rule (§4.5).
    if not (s == 101 or 200 <= s <= 599):
        raise DecodeError("invalid_status")


def check_informational_status(s):
    if not 100 <= s <= 199 or s == 101:
        raise DecodeError("invalid_status")


def check_increment(n):
    if n == 0 or n > MAX_WINDOW:
        raise DecodeError("invalid_window_increment")


def read_fields(r, checks, name_check, value_check, streaming):
    out = []
    for _ in range(r.u16()):
        name = r.str16()
        if streaming:
            name_check(name)
        value = r.str16()
        if streaming:
            value_check(value)
        else:
            checks.append((name_check, name))
            checks.append((value_check, value))
        out.append([name, value])
    return out


def fields_json(pairs):
    return [[n.decode("utf-8"), v.hex()] for n, v in pairs]


def decode_payload(t, flags, sid, payload, strategy):
    streaming = strategy == "streaming"
    r = Reader(payload)
    checks = []  # deferred (check, value) pairs for structure_first

    def check(fn, v):
        if streaming:
            fn(v)
        else:
            checks.append((fn, v))

    end_stream = bool(flags & END_STREAM)
    if t == "DATA":
        out = {"type": t, "stream_id": sid, "end_stream": end_stream, "data": r.rest().hex()}
    elif t == "REQUEST":
        route_id = r.u16()
        method = r.str16()
        check(check_method, method)
        target = r.str16()
        check(check_target, target)
        params = read_fields(r, checks, check_param_name, lambda v: None, streaming)
        headers = read_fields(r, checks, check_header_name, check_header_value, streaming)
        r.finish()
        out = {"type": t, "stream_id": sid, "end_stream": end_stream,
               "upgrade": bool(flags & UPGRADE), "route_id": route_id,
               "method": method.decode("ascii") if method.isascii() else None,
               "target": target.decode("ascii") if target.isascii() else None,
               "params": params, "headers": headers}
    elif t == "RESPONSE":
        status = r.u16()
        check(check_status, status)
        headers = read_fields(r, checks, check_header_name, check_header_value, streaming)
        r.finish()
        out = {"type": t, "stream_id": sid, "end_stream": end_stream, "status": status,
               "headers": headers}
    elif t == "TRAILERS":
        headers = read_fields(r, checks, check_header_name, check_header_value, streaming)
        r.finish()
        out = {"type": t, "stream_id": sid, "headers": headers}
    elif t == "INFORMATIONAL":
        status = r.u16()
        check(check_informational_status, status)
        headers = read_fields(r, checks, check_header_name, check_header_value, streaming)
        r.finish()
        out = {"type": t, "stream_id": sid, "status": status, "headers": headers}
    elif t == "RESET":
        code = r.u32()
        reason = r.rest()

        def check_reason(b):
            try:
                b.decode("utf-8", errors="strict")
            except UnicodeDecodeError:
                raise DecodeError("invalid_reset_reason")
        check(check_reason, reason)
        out = {"type": t, "stream_id": sid, "code": code, "reason": reason}
    elif t == "WINDOW":
        increment = r.u32()
        check(check_increment, increment)
        r.finish()
        out = {"type": t, "stream_id": sid, "increment": increment}
    else:
        out = {"type": t, "json": parse_control(t, payload)}

    for fn, v in reversed(checks):
        fn(v)
    # Convert validated raw bytes to the JSON form.
    if t in HEAD_TYPES:
        if "params" in out:
            out["params"] = fields_json(out["params"])
        out["headers"] = fields_json(out["headers"])
    if t == "RESET":
        out["reason"] = out["reason"].decode("utf-8")
    return out


def decode(buf, strategy="streaming", max_frame_size=MAX_FRAME_SIZE):
    if len(buf) > max_frame_size:
        raise DecodeError("frame_too_large")
    if len(buf) < HEADER_LEN:
        raise DecodeError("truncated_header")
    type_code, flags = buf[0], buf[1]
    sid = struct.unpack(">I", buf[2:6])[0]
    t = TYPES.get(type_code)
    if t is None:
        raise DecodeError("unknown_type")
    if flags & ~ALLOWED_FLAGS[t] & 0xFF:
        raise DecodeError("invalid_flags")
    if t in STREAM_TYPES and sid == 0:
        raise DecodeError("stream_id_zero")
    if t in CONTROL_TYPES and sid != 0:
        raise DecodeError("stream_id_nonzero")
    return decode_payload(t, flags, sid, buf[HEADER_LEN:], strategy)


# --- control payload schema -------------------------------------------------

class SchemaError(Exception):
    pass


def _no_constants(name):
    raise SchemaError("non-standard JSON constant " + name)


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise SchemaError("duplicate key")
    return dict(pairs)


class SignedInt(int):
    """An integer written with a minus sign ("-0" included): never a valid field value."""


# Deepest nesting of arrays and objects, the top-level object counted (§3.8): what
# serde_json's recursion limit of 128 gives the Rust core.
MAX_JSON_DEPTH = 127
# The smallest magnitude an IEEE 754 double rounds to infinity (§3.8: such a number, as
# 1e400, is an error anywhere, unknown keys included).
DOUBLE_OVERFLOW = 2**1024 - 2**970


def _parse_int(text):
    if abs(int(text)) >= DOUBLE_OVERFLOW:
        raise SchemaError("number out of range")
    return SignedInt(int(text)) if text.startswith("-") else int(text)


def _parse_float(text):
    f = float(text)
    if f in (float("inf"), float("-inf")):
        raise SchemaError("number out of range")
    return f


def _depth(v):
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    return 0


def _no_lone_surrogates(v):
    # json.loads turns "\ud800" into a lone surrogate code point instead of failing.
    if isinstance(v, str):
        if any(0xD800 <= ord(c) <= 0xDFFF for c in v):
            raise SchemaError("lone surrogate escape")
    elif isinstance(v, list):
        for x in v:
            _no_lone_surrogates(x)
    elif isinstance(v, dict):
        for k, x in v.items():
            _no_lone_surrogates(k)
            _no_lone_surrogates(x)


def is_uint(v):
    # JSON integer (no sign, fraction or exponent), 0..=2^64-1. bool is not an int here.
    return type(v) is int and 0 <= v <= U64_MAX


def is_bool(v):
    return type(v) is bool


def is_str(v):
    return type(v) is str


def require(o, key, pred, optional=False):
    if optional and o.get(key, 0) is None:  # null for an optional field = absent
        return
    if key not in o:
        if optional:
            return
        raise SchemaError("missing " + key)
    if not pred(o[key]):
        raise SchemaError("bad type for " + key)


def check_route_schema(r):
    if type(r) is not dict:
        raise SchemaError("route is not an object")
    require(r, "id", is_uint)
    require(r, "method", is_str)
    require(r, "path", is_str)
    require(r, "idempotent", is_bool, optional=True)


def check_routes_schema(v):
    if type(v) is not list:
        return False
    for r in v:
        check_route_schema(r)
    return True


def check_features_schema(v):
    return type(v) is list and all(is_str(x) for x in v)


def check_labels_schema(v):
    return type(v) is dict and all(is_str(x) for x in v.values())


def check_control_schema(t, o):
    if type(o) is not dict:
        raise SchemaError("not an object")
    if t == "HELLO":
        require(o, "protocol", is_uint)
        require(o, "worker_id", is_str)
        require(o, "instance", is_str, optional=True)
        require(o, "sdk", is_str, optional=True)
        require(o, "max_concurrency", is_uint)
        require(o, "routes", check_routes_schema)
        require(o, "labels", check_labels_schema, optional=True)
        require(o, "features", check_features_schema, optional=True)
    elif t == "WELCOME":
        require(o, "protocol", is_uint)
        require(o, "gateway", is_str)
        require(o, "connection_id", is_str)
        require(o, "heartbeat_ms", is_uint)
        require(o, "initial_window", is_uint)
        require(o, "max_frame_size", is_uint)
        require(o, "max_concurrency", is_uint)
        require(o, "connections", is_uint, optional=True)
        require(o, "features", check_features_schema, optional=True)
    elif t == "DRAIN":
        require(o, "reason", is_str)
        require(o, "deadline_ms", is_uint)
    elif t == "ROUTES":
        require(o, "routes", check_routes_schema)
    elif t == "ERROR":
        require(o, "code", lambda v: is_uint(v) and v <= 0xFFFF)
        require(o, "message", is_str)
    else:
        raise AssertionError(t)


def parse_control(t, payload):
    try:
        text = payload.decode("utf-8", errors="strict")
        o = json.loads(text, parse_constant=_no_constants, object_pairs_hook=_no_duplicates,
                       parse_int=_parse_int, parse_float=_parse_float)
        _no_lone_surrogates(o)
        if _depth(o) > MAX_JSON_DEPTH:
            raise SchemaError("nesting too deep")
        check_control_schema(t, o)
    except (UnicodeDecodeError, ValueError, SchemaError):
        raise DecodeError("invalid_control_payload")
    return o


# ---------------------------------------------------------------------------
# HELLO validation (gateway side, protocol core part)
# ---------------------------------------------------------------------------

MAX_ROUTES = 1024
MAX_PATTERN_LEN = 4096       # bytes, §2.5
MAX_PATTERN_SEGMENTS = 128   # §2.5
MAX_METHOD_LEN = 32          # bytes, §2.4 rule 6
MAX_INSTANCE_LEN = 256       # bytes, §2.4 rule 3a
MAX_SDK_LEN = 128
MAX_LABELS = 64
MAX_LABEL_LEN = 256          # each key and value
MAX_FEATURES = 16            # names in a features list (§2.6)
MAX_FEATURE_LEN = 32         # each name, 1..=32 bytes


def utf8_len(s):
    return len(s.encode("utf-8"))


def pattern_ok(path):
    if not path.startswith("/"):
        return False
    if utf8_len(path) > MAX_PATTERN_LEN or path.count("/") > MAX_PATTERN_SEGMENTS:
        return False
    if any(ord(c) <= 0x20 or ord(c) == 0x7F or c in "?#" for c in path):
        return False
    segments = path[1:].split("/")
    names = set()
    for i, seg in enumerate(segments):
        if "{" not in seg and "}" not in seg:
            continue
        if not (seg.startswith("{") and seg.endswith("}")) or seg.count("{") != 1 \
                or seg.count("}") != 1:
            return False
        name = seg[1:-1]
        if name.startswith("*"):
            if i != len(segments) - 1:
                return False
            name = name[1:]
        if name == "" or "*" in name or name in names:
            return False
        names.add(name)
    return True


def pattern_shape(path):
    segs = []
    for seg in path[1:].split("/"):
        if seg.startswith("{*"):
            segs.append("{*}")
        elif seg.startswith("{"):
            segs.append("{}")
        else:
            segs.append(seg)
    return "/" + "/".join(segs)


def route_method_ok(m):
    if m == "*":
        return True
    b = m.encode("utf-8")
    if len(b) > MAX_METHOD_LEN:
        return False
    return len(b) > 0 and all(c in TCHAR and not (0x61 <= c <= 0x7A) for c in b)


def validate_routes(routes):
    if len(routes) > MAX_ROUTES:
        return CLOSE_BAD_HELLO
    ids = set()
    shapes = set()
    for r in routes:
        if r["id"] > 0xFFFF or r["id"] in ids:
            return CLOSE_BAD_HELLO
        ids.add(r["id"])
        if not route_method_ok(r["method"]) or not pattern_ok(r["path"]):
            return CLOSE_BAD_HELLO
        key = (r["method"], pattern_shape(r["path"]))
        if key in shapes:
            return CLOSE_BAD_HELLO
        shapes.add(key)
    return None


def validate_hello(header_worker_id, hello):
    """Returns "ok" or the close code."""
    check_control_schema("HELLO", hello)  # handshake cases are schema-valid
    if hello["protocol"] != PROTOCOL_VERSION:
        return CLOSE_UNSUPPORTED_VERSION
    if hello["worker_id"] != header_worker_id:
        return CLOSE_BAD_HELLO
    if not 1 <= hello["max_concurrency"] <= 65535:
        return CLOSE_BAD_HELLO
    labels = hello.get("labels") or {}
    if utf8_len(hello.get("instance") or "") > MAX_INSTANCE_LEN \
            or utf8_len(hello.get("sdk") or "") > MAX_SDK_LEN \
            or len(labels) > MAX_LABELS \
            or any(utf8_len(k) > MAX_LABEL_LEN or utf8_len(v) > MAX_LABEL_LEN
                   for k, v in labels.items()):
        return CLOSE_BAD_HELLO
    if not features_ok(hello.get("features") or []):
        return CLOSE_BAD_HELLO
    code = validate_routes(hello["routes"])
    return "ok" if code is None else code


def features_ok(names):
    """§2.6: at most 16 names, each 1..=32 bytes, none twice."""
    return len(names) <= MAX_FEATURES and len(set(names)) == len(names) \
        and all(1 <= utf8_len(n) <= MAX_FEATURE_LEN for n in names)


# ---------------------------------------------------------------------------
# Backoff
# ---------------------------------------------------------------------------

BASE_MS = 100
CAP_MS = 10000
STABLE_MS = 10000
GOLDEN = 0x9E3779B97F4A7C15


class SplitMix64:
    def __init__(self, seed):
        assert 0 <= seed <= U64_MAX
        self.s = seed

    def next(self):
        self.s = (self.s + GOLDEN) & U64_MAX
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & U64_MAX
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & U64_MAX
        return z ^ (z >> 31)


def envelope(n):
    e = BASE_MS
    for _ in range(n):
        if e >= CAP_MS:
            break
        e *= 2
    return min(e, CAP_MS)


def delay(n, rng):
    e = envelope(n)
    lo = e // 2
    return lo + rng.next() % (e - lo + 1)


# ---------------------------------------------------------------------------
# Vectors
# ---------------------------------------------------------------------------

def hx(b):
    if isinstance(b, str):
        b = b.encode("utf-8")
    return b.hex()


def data(sid, end, payload):
    return {"type": "DATA", "stream_id": sid, "end_stream": end, "data": hx(payload)}


def request(sid, end, route_id, method, target, params, headers, upgrade=False):
    return {"type": "REQUEST", "stream_id": sid, "end_stream": end, "upgrade": upgrade,
            "route_id": route_id,
            "method": method, "target": target,
            "params": [[n, hx(v)] for n, v in params],
            "headers": [[n, hx(v)] for n, v in headers]}


def response(sid, end, status, headers):
    return {"type": "RESPONSE", "stream_id": sid, "end_stream": end, "status": status,
            "headers": [[n, hx(v)] for n, v in headers]}


def trailers(sid, headers):
    return {"type": "TRAILERS", "stream_id": sid, "headers": [[n, hx(v)] for n, v in headers]}


def informational(sid, status, headers):
    return {"type": "INFORMATIONAL", "stream_id": sid, "status": status,
            "headers": [[n, hx(v)] for n, v in headers]}


def reset(sid, code, reason):
    return {"type": "RESET", "stream_id": sid, "code": code, "reason": reason}


def window(sid, inc):
    return {"type": "WINDOW", "stream_id": sid, "increment": inc}


def control(t, obj):
    want = [k for k in CONTROL_KEYS[t] if k in obj or k not in OMITTED_WHEN_DEFAULT]
    assert list(obj.keys()) == want, (t, list(obj.keys()))
    assert all(obj[k] != d for k, d in OMITTED_WHEN_DEFAULT.items() if k in obj), obj
    for r in obj.get("routes", []):
        assert list(r.keys()) == [k for k in ROUTE_KEYS if k in r], list(r.keys())
    return {"type": t, "json": obj}


def route(i, method, path, idempotent=False):
    r = {"id": i, "method": method, "path": path}
    if idempotent:  # emitted only when true (§3.8)
        r["idempotent"] = True
    return r


FULL_HELLO = {
    "protocol": 1,
    "worker_id": "rust:api",
    "instance": "3f2a9c1e-8b7d-4e60-9a51-0c2d4b6e8f10",
    "sdk": "vyx-rust/0.1.0",
    "max_concurrency": 256,
    "routes": [route(0, "GET", "/hello/{name}"), route(1, "*", "/files/{*rest}")],
    "labels": {"region": "eu-west-1"},
}

FULL_WELCOME = {
    "protocol": 1,
    "gateway": "vyx/0.1.0",
    "connection_id": "c-7f3e2a91",
    "heartbeat_ms": 5000,
    "initial_window": 262144,
    "max_frame_size": 1048576,
    "max_concurrency": 256,
}


def frame_vectors():
    v = []

    def add(name, frame):
        v.append({"name": name, "hex": encode(frame).hex(), "frame": frame})

    # DATA
    add("data_plain", data(1, False, b"hello, world"))
    add("data_end_stream", data(1, True, b"last chunk"))
    add("data_empty_end_stream", data(1, True, b""))
    add("data_all_byte_values", data(3, False, bytes(range(256))))
    add("data_large_stream_id", data(0xFFFFFFFE, True, b"x"))

    # REQUEST
    add("request_get_no_body", request(
        1, True, 0, "GET", "/hello/w%C3%B6rld?x=1",
        [("name", "wörld")], [("host", "example.com")]))
    add("request_post_with_body", request(
        3, False, 1, "POST", "/api/items",
        [], [("host", "example.com"), ("content-type", "application/json"),
             ("content-length", "13")]))
    add("request_minimal", request(5, True, 0, "GET", "/", [], []))
    add("request_multiple_params", request(
        7, True, 2, "GET", "/users/42/posts/7?full=true",
        [("user", "42"), ("post", "7")], [("host", "api.example.com")]))
    add("request_catch_all_param", request(
        9, False, 1, "PUT", "/files/docs/a%2Fb%20c.txt",
        [("rest", "docs/a/b c.txt")], [("content-length", "0")]))
    add("request_repeated_headers", request(
        11, True, 0, "GET", "/hello/x",
        [("name", "x")],
        [("cookie", "a=1"), ("accept", "text/html"), ("cookie", "b=2"),
         ("x-forwarded-for", "10.0.0.1"), ("x-forwarded-for", "10.0.0.2")]))
    add("request_non_utf8_header_value", request(
        13, True, 0, "GET", "/hello/x",
        [("name", "x")], [("x-raw", b"a\x80\xffb"), ("x-latin1", b"caf\xe9")]))
    add("request_param_raw_ff_byte", request(
        15, True, 0, "GET", "/hello/%FF",
        [("name", b"\xff")], [("host", "example.com")]))
    add("request_param_utf8_and_raw", request(
        17, True, 3, "GET", "/greet/w%C3%B6rld/%FF%00",
        [("who", "wörld"), ("tail", b"\xff\x00")], []))
    add("request_utf8_param_name", request(
        19, True, 4, "GET", "/caf%C3%A9/1",
        [("näme", "1")], []))
    add("request_empty_header_value", request(
        21, True, 0, "GET", "/hello/x",
        [("name", "x")], [("x-empty", ""), ("accept", "")]))
    add("request_header_value_tab_space_and_high_bytes", request(
        23, True, 0, "GET", "/hello/x",
        [("name", "x")], [("x-tab", b"a\tb"), ("x-space", b" padded "), ("x-high", b"~\x80\xff")]))
    add("request_max_route_id_custom_method", request(
        0xFFFFFFFE, True, 65535, "PURGE", "/cache/*",
        [], [("host", "example.com")]))
    add("request_target_every_visible_ascii", request(
        25, True, 0, "OPTIONS", "/" + bytes(range(0x21, 0x7F)).decode("ascii"), [], []))
    add("request_method_token_chars", request(
        27, False, 5, "M-SEARCH!#$%&'*+.^_`|~09az", "/x",
        [], [("!#$%&'*+-.^_`|~09az", "v")]))
    # Extension `upgrade` (§4.5): a WebSocket handshake as the worker sees it, whether the
    # client sent HTTP/1.1 Upgrade or HTTP/2 extended CONNECT.
    add("request_upgrade_websocket", request(
        29, False, 6, "GET", "/chat",
        [], [("host", "example.com"), ("connection", "upgrade"), ("upgrade", "websocket"),
             ("sec-websocket-version", "13"),
             ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")], upgrade=True))

    # RESPONSE
    add("response_200_with_body", response(
        1, False, 200,
        [("content-type", "text/plain; charset=utf-8"), ("content-length", "12")]))
    add("response_204_end_stream", response(3, True, 204, []))
    add("response_repeated_headers", response(
        5, False, 200,
        [("set-cookie", "a=1; Path=/"), ("content-type", "text/html"),
         ("set-cookie", "b=2; HttpOnly"), ("x-raw", b"\x80\xff"), ("x-empty", "")]))
    add("response_status_599_end_stream", response(7, True, 599, [("retry-after", "1")]))
    add("response_101_switching_protocols", response(
        29, False, 101, [("upgrade", "websocket"),
                         ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")]))

    # TRAILERS (extension `trailers`, §3.10)
    add("trailers_grpc_status", trailers(
        1, [("grpc-status", "0"), ("grpc-message", "")]))
    add("trailers_server_timing_repeated", trailers(
        3, [("server-timing", "db;dur=53"), ("x-raw", b"\x80\xff"),
            ("server-timing", "app;dur=47.2")]))
    add("trailers_empty", trailers(5, []))
    add("trailers_large_stream_id", trailers(0xFFFFFFFE, [("x-checksum", "sha256=abc")]))

    # INFORMATIONAL (extension `informational`, §3.11)
    add("informational_103_early_hints", informational(
        1, 103, [("link", "</style.css>; rel=preload; as=style"),
                 ("link", "</app.js>; rel=preload; as=script")]))
    add("informational_100_no_headers", informational(3, 100, []))
    add("informational_102", informational(5, 102, []))
    add("informational_199", informational(7, 199, [("x-empty", "")]))

    # RESET
    add("reset_cancel", reset(1, 1, "client went away"))
    add("reset_no_error_empty_reason", reset(3, 0, ""))
    add("reset_handler_error_utf8_reason", reset(5, 2, "handler panicked: ünïcödé ✓ 🚀"))
    add("reset_refused", reset(7, 4, "at capacity"))
    add("reset_unknown_code", reset(9, 0xFFFFFFFF, ""))

    # WINDOW
    add("window_65536", window(1, 65536))
    add("window_1", window(3, 1))
    add("window_max", window(0xFFFFFFFE, MAX_WINDOW))

    # Control
    add("hello_full", control("HELLO", FULL_HELLO))
    add("hello_utf8_label", control("HELLO", {
        "protocol": 1,
        "worker_id": "py:api@eu-1/blue",
        "instance": "9",
        "sdk": "vyx-python/0.1.0",
        "max_concurrency": 1,
        "routes": [route(0, "GET", "/"), route(7, "POST", "/api/products/{id}"),
                   route(65535, "DELETE", "/api/products/{id}")],
        "labels": {"city": "Zürich"},
    }))
    add("welcome", control("WELCOME", FULL_WELCOME))
    add("hello_with_features", control("HELLO", dict(FULL_HELLO, features=["upgrade", "trailers"])))
    add("welcome_with_features", control("WELCOME", dict(FULL_WELCOME, features=["trailers"])))
    add("welcome_with_connections", control("WELCOME", dict(FULL_WELCOME, connections=2,
                                                            features=["trailers"])))
    add("drain_shutdown", control("DRAIN", {"reason": "shutdown", "deadline_ms": 30000}))
    add("drain_deploy_zero_deadline", control("DRAIN", {"reason": "deploy", "deadline_ms": 0}))
    add("routes_update", control("ROUTES", {"routes": [
        route(0, "GET", "/hello/{name}"), route(2, "PATCH", "/items/{id}")]}))
    add("routes_idempotent", control("ROUTES", {"routes": [
        route(0, "POST", "/orders", idempotent=True), route(1, "GET", "/orders/{id}")]}))
    add("error_protocol_violation", control("ERROR", {
        "code": 4005, "message": "unknown frame type 0x06"}))
    add("error_route_conflict_utf8", control("ERROR", {
        "code": 4003, "message": "route GET /hello/{name} is served by “node:api”"}))
    return v


def malformed_vectors():
    v = []

    def add(name, raw, kind):
        vec = {"name": name, "hex": raw.hex(), "error": kind,
               "close_code": close_code_for(kind, raw)}
        # A REQUEST or RESPONSE head that fails after a valid frame header is a stream error
        # at its receiver (PROTOCOL.md §3.5, §8): RESET protocol_error instead of the close.
        if raw[:1] in (b"\x01", b"\x02", b"\x04", b"\x05") and kind not in (
                "truncated_header", "unknown_type", "invalid_flags", "stream_id_zero"):
            vec["stream_error"] = True
        v.append(vec)

    H = header
    D, RQ, RS, RT, W = 0x00, 0x01, 0x02, 0x03, 0x08
    TR, INF = 0x04, 0x05
    HELLO, WELCOME, DRAIN, ROUTES, ERROR = 0x10, 0x11, 0x12, 0x13, 0x14

    def req(method=b"GET", target=b"/", params=(), headers=(), route_id=0):
        out = u16(route_id) + str16(method) + str16(target) + u16(len(params))
        for n, val in params:
            out += str16(n) + str16(val)
        out += u16(len(headers))
        for n, val in headers:
            out += str16(n) + str16(val)
        return out

    def resp(status=200, headers=()):
        out = u16(status) + u16(len(headers))
        for n, val in headers:
            out += str16(n) + str16(val)
        return out

    def cj(o):
        return control_json_bytes(o)

    hello_ok = cj({"protocol": 1, "worker_id": "rust:api", "max_concurrency": 8,
                   "routes": [route(0, "GET", "/")]})
    welcome_ok = dict(FULL_WELCOME)

    # truncated_header
    add("empty_message", b"", "truncated_header")
    add("one_byte", b"\x00", "truncated_header")
    add("header_5_bytes", bytes.fromhex("0001000000"), "truncated_header")
    add("header_5_bytes_unknown_type", bytes.fromhex("ffff000000"), "truncated_header")

    # unknown_type
    for t in (0x06, 0x07, 0x09, 0x0F, 0x15, 0xFF):
        add("unknown_type_0x%02x" % t, H(t, 0, 1), "unknown_type")
    add("unknown_type_0x06_stream_0_with_payload", H(0x06, 0, 0) + b"{}", "unknown_type")
    add("unknown_type_checked_before_flags", H(0x06, 0x02, 1), "unknown_type")

    # invalid_flags
    add("data_flag_0x02", H(D, 0x02, 1) + b"x", "invalid_flags")
    add("data_flags_0x03", H(D, 0x03, 1) + b"x", "invalid_flags")
    add("data_flag_0x80", H(D, 0x80, 1), "invalid_flags")
    add("request_flag_0x04", H(RQ, 0x04, 1) + req(), "invalid_flags")
    add("request_flags_0x83", H(RQ, 0x83, 1) + req(), "invalid_flags")
    add("response_flag_0x04", H(RS, 0x04, 1) + resp(), "invalid_flags")
    add("reset_flag_0x01", H(RT, 0x01, 1) + u32(1), "invalid_flags")
    add("window_flag_0x01", H(W, 0x01, 1) + u32(1), "invalid_flags")
    add("trailers_end_stream_flag", H(TR, END_STREAM, 1) + u16(0), "invalid_flags")
    add("informational_end_stream_flag", H(INF, END_STREAM, 1) + resp(103), "invalid_flags")
    add("hello_flag_0x01", H(HELLO, 0x01, 0) + hello_ok, "invalid_flags")
    add("drain_flag_0x80", H(DRAIN, 0x80, 0) + cj({"reason": "x", "deadline_ms": 1}),
        "invalid_flags")
    add("flags_checked_before_stream_id", H(D, 0x02, 0) + b"x", "invalid_flags")

    # stream_id_zero
    add("data_stream_0", H(D, 0, 0) + b"x", "stream_id_zero")
    add("data_stream_0_empty_end_stream", H(D, END_STREAM, 0), "stream_id_zero")
    add("request_stream_0", H(RQ, END_STREAM, 0) + req(), "stream_id_zero")
    add("response_stream_0", H(RS, 0, 0) + resp(), "stream_id_zero")
    add("reset_stream_0", H(RT, 0, 0) + u32(1), "stream_id_zero")
    add("window_stream_0", H(W, 0, 0) + u32(65536), "stream_id_zero")
    add("trailers_stream_0", H(TR, 0, 0) + u16(0), "stream_id_zero")
    add("informational_stream_0", H(INF, 0, 0) + resp(103), "stream_id_zero")
    add("stream_id_checked_before_payload", H(W, 0, 0) + u32(0), "stream_id_zero")

    # stream_id_nonzero
    add("hello_stream_3", H(HELLO, 0, 3) + hello_ok, "stream_id_nonzero")
    add("welcome_stream_1", H(WELCOME, 0, 1) + cj(welcome_ok), "stream_id_nonzero")
    add("drain_stream_0x80000000", H(DRAIN, 0, 0x80000000)
        + cj({"reason": "shutdown", "deadline_ms": 30000}), "stream_id_nonzero")
    add("routes_stream_1", H(ROUTES, 0, 1) + cj({"routes": []}), "stream_id_nonzero")
    add("error_stream_0xffffffff", H(ERROR, 0, 0xFFFFFFFF)
        + cj({"code": 4005, "message": "x"}), "stream_id_nonzero")
    add("hello_stream_1_not_json", H(HELLO, 0, 1) + b"not json", "stream_id_nonzero")

    # truncated_payload
    add("request_empty_payload", H(RQ, END_STREAM, 1), "truncated_payload")
    add("request_route_id_1_byte", H(RQ, END_STREAM, 1) + b"\x00", "truncated_payload")
    add("request_method_length_past_end",
        H(RQ, END_STREAM, 1) + u16(0) + u16(10) + b"GET", "truncated_payload")
    add("request_ends_after_target",
        H(RQ, END_STREAM, 1) + u16(0) + str16(b"GET") + str16(b"/"), "truncated_payload")
    add("request_param_value_missing",
        H(RQ, END_STREAM, 1) + u16(0) + str16(b"GET") + str16(b"/a") + u16(1)
        + str16(b"id"), "truncated_payload")
    add("request_header_count_past_end",
        H(RQ, END_STREAM, 1) + u16(0) + str16(b"GET") + str16(b"/") + u16(0)
        + u16(2) + str16(b"host") + str16(b"example.com"), "truncated_payload")
    add("request_header_value_length_past_end",
        H(RQ, END_STREAM, 1) + u16(0) + str16(b"GET") + str16(b"/") + u16(0)
        + u16(1) + str16(b"host") + u16(12) + b"example.com", "truncated_payload")
    add("request_header_count_1_byte",
        H(RQ, END_STREAM, 1) + u16(0) + str16(b"GET") + str16(b"/") + u16(0) + b"\x00",
        "truncated_payload")
    add("response_empty_payload", H(RS, END_STREAM, 1), "truncated_payload")
    add("response_status_only", H(RS, END_STREAM, 1) + u16(200), "truncated_payload")
    add("response_header_name_length_past_end",
        H(RS, 0, 1) + u16(200) + u16(1) + u16(5) + b"date", "truncated_payload")
    add("trailers_empty_payload", H(TR, 0, 1), "truncated_payload")
    add("trailers_header_value_length_past_end",
        H(TR, 0, 1) + u16(1) + str16(b"grpc-status") + u16(2) + b"0", "truncated_payload")
    add("informational_status_only", H(INF, 0, 1) + u16(103), "truncated_payload")
    add("reset_empty_payload", H(RT, 0, 1), "truncated_payload")
    add("reset_3_bytes", H(RT, 0, 1) + b"\x00\x00\x01", "truncated_payload")
    add("window_empty_payload", H(W, 0, 1), "truncated_payload")
    add("window_3_bytes", H(W, 0, 1) + b"\x00\x01\x00", "truncated_payload")

    # trailing_bytes
    add("request_one_trailing_byte", H(RQ, END_STREAM, 1)
        + req(headers=[(b"host", b"example.com")]) + b"\x00", "trailing_bytes")
    add("request_two_trailing_bytes", H(RQ, END_STREAM, 1) + req() + b"\x00\x00",
        "trailing_bytes")
    add("response_one_trailing_byte", H(RS, END_STREAM, 1) + resp(204) + b"\xff",
        "trailing_bytes")
    add("trailers_one_trailing_byte", H(TR, 0, 1) + u16(0) + b"\x00", "trailing_bytes")
    add("informational_one_trailing_byte", H(INF, 0, 1) + resp(103) + b"\x00",
        "trailing_bytes")
    add("window_5_bytes", H(W, 0, 1) + u32(65536) + b"\x00", "trailing_bytes")
    add("window_8_bytes", H(W, 0, 1) + u32(1) + u32(1), "trailing_bytes")

    # invalid_method
    add("method_empty", H(RQ, END_STREAM, 1) + req(method=b""), "invalid_method")
    add("method_with_space", H(RQ, END_STREAM, 1) + req(method=b"GE T"), "invalid_method")
    add("method_with_slash", H(RQ, END_STREAM, 1) + req(method=b"GET/1"), "invalid_method")
    add("method_non_ascii", H(RQ, END_STREAM, 1) + req(method=b"G\xc3\x89T"),
        "invalid_method")
    add("method_with_nul", H(RQ, END_STREAM, 1) + req(method=b"GET\x00"), "invalid_method")

    # invalid_target
    add("target_no_leading_slash", H(RQ, END_STREAM, 1) + req(target=b"hello"),
        "invalid_target")
    add("target_empty", H(RQ, END_STREAM, 1) + req(target=b""), "invalid_target")
    add("target_asterisk_form", H(RQ, END_STREAM, 1) + req(method=b"OPTIONS", target=b"*"),
        "invalid_target")
    add("target_absolute_form", H(RQ, END_STREAM, 1) + req(target=b"http://example.com/"),
        "invalid_target")
    add("target_with_space", H(RQ, END_STREAM, 1) + req(target=b"/a b"), "invalid_target")
    add("target_with_tab", H(RQ, END_STREAM, 1) + req(target=b"/a\tb"), "invalid_target")
    add("target_with_0x7f", H(RQ, END_STREAM, 1) + req(target=b"/a\x7f"), "invalid_target")
    add("target_with_0x80", H(RQ, END_STREAM, 1) + req(target=b"/\x80"), "invalid_target")

    # invalid_header_name
    add("header_name_uppercase", H(RQ, END_STREAM, 1)
        + req(headers=[(b"Host", b"example.com")]), "invalid_header_name")
    add("header_name_empty", H(RQ, END_STREAM, 1) + req(headers=[(b"", b"v")]),
        "invalid_header_name")
    add("header_name_with_colon", H(RQ, END_STREAM, 1) + req(headers=[(b"x:y", b"v")]),
        "invalid_header_name")
    add("header_name_pseudo", H(RQ, END_STREAM, 1)
        + req(headers=[(b":authority", b"example.com")]), "invalid_header_name")
    add("header_name_with_space", H(RQ, END_STREAM, 1) + req(headers=[(b"x y", b"v")]),
        "invalid_header_name")
    add("header_name_non_ascii", H(RQ, END_STREAM, 1) + req(headers=[(b"x-\xc3\xa9", b"v")]),
        "invalid_header_name")
    add("header_name_second_header_uppercase", H(RQ, END_STREAM, 1)
        + req(headers=[(b"host", b"a"), (b"Accept", b"*/*")]), "invalid_header_name")
    add("response_header_name_uppercase", H(RS, END_STREAM, 1)
        + resp(headers=[(b"Content-Type", b"text/plain")]), "invalid_header_name")
    add("trailers_header_name_pseudo", H(TR, 0, 1) + u16(1) + str16(b":status")
        + str16(b"200"), "invalid_header_name")
    add("informational_header_name_uppercase", H(INF, 0, 1)
        + resp(103, headers=[(b"Link", b"</a>")]), "invalid_header_name")

    # invalid_header_value
    add("header_value_with_cr", H(RQ, END_STREAM, 1) + req(headers=[(b"x-a", b"a\rb")]),
        "invalid_header_value")
    add("header_value_with_lf", H(RQ, END_STREAM, 1) + req(headers=[(b"x-a", b"a\nb")]),
        "invalid_header_value")
    add("header_value_with_nul", H(RQ, END_STREAM, 1) + req(headers=[(b"x-a", b"a\x00b")]),
        "invalid_header_value")
    for byte in (0x01, 0x08, 0x0B, 0x1F, 0x7F):
        add("header_value_with_0x%02x" % byte,
            H(RQ, END_STREAM, 1) + req(headers=[(b"x-a", b"a" + bytes([byte]) + b"b")]),
            "invalid_header_value")
    add("response_header_value_del", H(RS, END_STREAM, 1)
        + resp(headers=[(b"x-a", b"\x7f")]), "invalid_header_value")
    add("response_header_value_crlf", H(RS, END_STREAM, 1)
        + resp(headers=[(b"set-cookie", b"a=1\r\nx-injected: 1")]), "invalid_header_value")
    add("trailers_header_value_lf", H(TR, 0, 1) + u16(1) + str16(b"grpc-message")
        + str16(b"a\nb"), "invalid_header_value")
    add("informational_header_value_nul", H(INF, 0, 1)
        + resp(103, headers=[(b"link", b"\x00")]), "invalid_header_value")

    # invalid_param_name
    add("param_name_empty", H(RQ, END_STREAM, 1) + req(params=[(b"", b"v")]),
        "invalid_param_name")
    add("param_name_invalid_utf8_ff", H(RQ, END_STREAM, 1) + req(params=[(b"\xff", b"v")]),
        "invalid_param_name")
    add("param_name_overlong_utf8", H(RQ, END_STREAM, 1)
        + req(params=[(b"\xc0\xaf", b"v")]), "invalid_param_name")
    add("param_name_utf8_surrogate", H(RQ, END_STREAM, 1)
        + req(params=[(b"\xed\xa0\x80", b"v")]), "invalid_param_name")
    add("param_name_truncated_utf8", H(RQ, END_STREAM, 1)
        + req(params=[(b"n\xc3", b"v")]), "invalid_param_name")

    # invalid_status
    for s in (0, 99, 100, 102, 199, 600, 65535):
        add("status_%d" % s, H(RS, END_STREAM, 1) + resp(s), "invalid_status")
    for s in (0, 99, 101, 200, 204, 65535):
        add("informational_status_%d" % s, H(INF, 0, 1) + resp(s), "invalid_status")

    # invalid_reset_reason
    add("reset_reason_ff", H(RT, 0, 1) + u32(1) + b"\xff", "invalid_reset_reason")
    add("reset_reason_truncated_utf8", H(RT, 0, 1) + u32(2) + b"caf\xc3",
        "invalid_reset_reason")
    add("reset_reason_surrogate", H(RT, 0, 1) + u32(2) + b"\xed\xa0\x80",
        "invalid_reset_reason")
    add("reset_reason_latin1", H(RT, 0, 1) + u32(1) + b"caf\xe9 gone", "invalid_reset_reason")

    # invalid_window_increment
    add("window_increment_0", H(W, 0, 1) + u32(0), "invalid_window_increment")
    add("window_increment_0x80000000", H(W, 0, 1) + u32(0x80000000),
        "invalid_window_increment")
    add("window_increment_0xffffffff", H(W, 0, 1) + u32(0xFFFFFFFF),
        "invalid_window_increment")

    # invalid_control_payload
    ICP = "invalid_control_payload"
    add("hello_not_json", H(HELLO, 0, 0) + b"not json", ICP)
    add("hello_empty_payload", H(HELLO, 0, 0), ICP)
    add("hello_json_array", H(HELLO, 0, 0) + b"[]", ICP)
    add("hello_json_null", H(HELLO, 0, 0) + b"null", ICP)
    add("hello_json_string", H(HELLO, 0, 0) + b'"hello"', ICP)
    add("hello_missing_worker_id", H(HELLO, 0, 0)
        + cj({"protocol": 1, "max_concurrency": 8, "routes": []}), ICP)
    add("hello_key_wrong_case", H(HELLO, 0, 0)
        + cj({"protocol": 1, "Worker_Id": "rust:api", "max_concurrency": 8, "routes": []}), ICP)
    add("hello_missing_routes", H(HELLO, 0, 0)
        + cj({"protocol": 1, "worker_id": "rust:api", "max_concurrency": 8}), ICP)
    add("hello_missing_max_concurrency", H(HELLO, 0, 0)
        + cj({"protocol": 1, "worker_id": "rust:api", "routes": []}), ICP)
    add("hello_protocol_string", H(HELLO, 0, 0)
        + cj({"protocol": "1", "worker_id": "rust:api", "max_concurrency": 8,
              "routes": []}), ICP)
    add("hello_worker_id_number", H(HELLO, 0, 0)
        + cj({"protocol": 1, "worker_id": 7, "max_concurrency": 8, "routes": []}), ICP)
    add("hello_routes_object", H(HELLO, 0, 0)
        + cj({"protocol": 1, "worker_id": "rust:api", "max_concurrency": 8,
              "routes": {}}), ICP)
    add("hello_route_missing_path", H(HELLO, 0, 0)
        + cj({"protocol": 1, "worker_id": "rust:api", "max_concurrency": 8,
              "routes": [{"id": 0, "method": "GET"}]}), ICP)
    add("hello_route_id_string", H(HELLO, 0, 0)
        + cj({"protocol": 1, "worker_id": "rust:api", "max_concurrency": 8,
              "routes": [{"id": "0", "method": "GET", "path": "/"}]}), ICP)
    add("hello_route_idempotent_string", H(HELLO, 0, 0)
        + cj({"protocol": 1, "worker_id": "rust:api", "max_concurrency": 8,
              "routes": [{"id": 0, "method": "POST", "path": "/", "idempotent": "yes"}]}), ICP)
    add("hello_instance_number", H(HELLO, 0, 0)
        + cj({"protocol": 1, "worker_id": "rust:api", "instance": 5, "max_concurrency": 8,
              "routes": []}), ICP)
    add("hello_features_not_strings", H(HELLO, 0, 0)
        + cj({"protocol": 1, "worker_id": "rust:api", "max_concurrency": 8, "routes": [],
              "features": ["upgrade", 1]}), ICP)
    add("hello_features_not_a_list", H(HELLO, 0, 0)
        + cj({"protocol": 1, "worker_id": "rust:api", "max_concurrency": 8, "routes": [],
              "features": "upgrade"}), ICP)
    add("hello_labels_value_number", H(HELLO, 0, 0)
        + cj({"protocol": 1, "worker_id": "rust:api", "max_concurrency": 8, "routes": [],
              "labels": {"replicas": 3}}), ICP)
    add("hello_trailing_garbage", H(HELLO, 0, 0) + hello_ok + b" x", ICP)
    add("hello_invalid_utf8", H(HELLO, 0, 0)
        + b'{"protocol":1,"worker_id":"rust:\xff","max_concurrency":8,"routes":[]}', ICP)
    add("hello_truncated_json", H(HELLO, 0, 0) + hello_ok[:-1], ICP)
    w = dict(welcome_ok)
    w["heartbeat_ms"] = "5000"
    add("welcome_heartbeat_string", H(WELCOME, 0, 0) + cj(w), ICP)
    w = dict(welcome_ok)
    w["initial_window"] = 262144.5
    add("welcome_initial_window_fraction", H(WELCOME, 0, 0) + cj(w), ICP)
    w = dict(welcome_ok)
    w["max_frame_size"] = -1
    add("welcome_max_frame_size_negative", H(WELCOME, 0, 0) + cj(w), ICP)
    add("welcome_json_array", H(WELCOME, 0, 0) + b"[1]", ICP)
    w = dict(welcome_ok)
    w["connections"] = "2"
    add("welcome_connections_string", H(WELCOME, 0, 0) + cj(w), ICP)
    w = dict(welcome_ok)
    w["connections"] = -1
    add("welcome_connections_negative", H(WELCOME, 0, 0) + cj(w), ICP)
    # Strictness edge cases (PROTOCOL.md §3.8), one each; the same HELLO without the fault
    # is valid. Written by hand: a JSON library would not produce them.
    base = b'"worker_id":"rust:api","max_concurrency":8,"routes":[]'

    def hello_raw(name, text):
        add(name, H(HELLO, 0, 0) + text, ICP)
    hello_raw("hello_duplicate_key", b'{"protocol":1,' + base + b',"protocol":1}')
    hello_raw("hello_duplicate_key_in_unknown_object",
              b'{"protocol":1,' + base + b',"future":{"k":1,"k":1}}')
    hello_raw("hello_duplicate_label", b'{"protocol":1,' + base + b',"labels":{"a":"1","a":"2"}}')
    hello_raw("hello_duplicate_key_in_route", b'{"protocol":1,"worker_id":"rust:api",'
              b'"max_concurrency":8,"routes":[{"id":0,"method":"GET","path":"/","id":1}]}')
    hello_raw("hello_protocol_minus_zero", b'{"protocol":-0,' + base + b'}')
    hello_raw("hello_max_concurrency_negative",
              b'{"protocol":1,"worker_id":"rust:api","max_concurrency":-1,"routes":[]}')
    hello_raw("hello_protocol_fraction", b'{"protocol":1.0,' + base + b'}')
    hello_raw("hello_protocol_exponent", b'{"protocol":1e0,' + base + b'}')
    hello_raw("hello_protocol_above_u64", b'{"protocol":18446744073709551616,' + base + b'}')
    hello_raw("hello_lone_high_surrogate", b'{"protocol":1,' + base + b',"sdk":"\\ud800"}')
    hello_raw("hello_lone_low_surrogate", b'{"protocol":1,' + base + b',"sdk":"x\\udc00"}')
    hello_raw("hello_lone_surrogate_in_unknown_key",
              b'{"protocol":1,' + base + b',"future":"\\udbff"}')
    hello_raw("hello_null_required_field",
              b'{"protocol":1,"worker_id":null,"max_concurrency":8,"routes":[]}')
    hello_raw("hello_invalid_utf8_in_unknown_key", b'{"protocol":1,' + base + b',"x":"\xc3("}')
    hello_raw("hello_number_out_of_range_in_unknown_key",
              b'{"protocol":1,' + base + b',"x":1e400}')
    hello_raw("hello_long_integer_out_of_range_in_unknown_key",
              b'{"protocol":1,' + base + b',"x":1' + b"0" * 400 + b'}')
    # 128 levels: the top-level object and 127 arrays (127 levels decode).
    hello_raw("hello_nested_128_levels",
              b'{"protocol":1,' + base + b',"x":' + b"[" * 127 + b"]" * 127 + b"}")
    add("drain_json_number", H(DRAIN, 0, 0) + b"42", ICP)
    add("drain_deadline_string", H(DRAIN, 0, 0)
        + cj({"reason": "shutdown", "deadline_ms": "30000"}), ICP)
    add("routes_missing_routes", H(ROUTES, 0, 0) + b"{}", ICP)
    add("routes_route_not_object", H(ROUTES, 0, 0) + b'{"routes":["GET /"]}', ICP)
    add("error_code_string", H(ERROR, 0, 0) + cj({"code": "4005", "message": "x"}), ICP)
    add("error_code_above_u16", H(ERROR, 0, 0) + cj({"code": 65536, "message": "x"}), ICP)
    add("error_not_object", H(ERROR, 0, 0) + b'"protocol violation"', ICP)
    return v


def handshake_cases():
    cases = []

    def add(name, hello, expect, header_worker_id="rust:api"):
        cases.append({"name": name, "header_worker_id": header_worker_id, "hello": hello,
                      "expect": expect if expect == "ok" else {"close_code": expect}})

    def minimal(**kw):
        h = {"protocol": 1, "worker_id": "rust:api", "max_concurrency": 256,
             "routes": [route(0, "GET", "/hello/{name}")]}
        h.update(kw)
        return h

    def with_routes(*routes):
        return minimal(routes=[route(i, m, p) for i, m, p in routes])

    add("minimal_ok", minimal(), "ok")
    add("full_ok", dict(FULL_HELLO), "ok")
    add("unknown_fields_ignored_ok",
        dict(minimal(), future_field={"nested": [1, 2]}, another="x"), "ok")
    add("unknown_key_numbers_unchecked_ok",
        dict(minimal(), future_big=1e308, future_small=-5e-324, future_long=2**64), "ok")
    add("protocol_2", minimal(protocol=2), CLOSE_UNSUPPORTED_VERSION)
    add("protocol_0", minimal(protocol=0), CLOSE_UNSUPPORTED_VERSION)
    add("worker_id_mismatch", minimal(worker_id="rust:other"), CLOSE_BAD_HELLO)
    add("worker_id_case_mismatch", minimal(worker_id="Rust:api"), CLOSE_BAD_HELLO)
    add("worker_id_other_header_ok", minimal(worker_id="go:api@eu-1/blue"), "ok",
        header_worker_id="go:api@eu-1/blue")
    add("duplicate_route_id", with_routes((0, "GET", "/a"), (0, "POST", "/b")),
        CLOSE_BAD_HELLO)
    add("method_lowercase", with_routes((0, "get", "/a")), CLOSE_BAD_HELLO)
    add("method_mixed_case", with_routes((0, "Get", "/a")), CLOSE_BAD_HELLO)
    add("method_empty", with_routes((0, "", "/a")), CLOSE_BAD_HELLO)
    add("method_with_space", with_routes((0, "GE T", "/a")), CLOSE_BAD_HELLO)
    add("method_star_ok", with_routes((0, "*", "/a")), "ok")
    add("method_extension_token_ok", with_routes((0, "PURGE", "/a"), (1, "M-SEARCH", "/b")),
        "ok")
    add("path_no_leading_slash", with_routes((0, "GET", "a/b")), CLOSE_BAD_HELLO)
    add("path_empty", with_routes((0, "GET", "")), CLOSE_BAD_HELLO)
    add("catch_all_not_last", with_routes((0, "GET", "/a/{*rest}/b")), CLOSE_BAD_HELLO)
    add("catch_all_last_ok", with_routes((0, "GET", "/a/{*rest}")), "ok")
    add("empty_param_name", with_routes((0, "GET", "/a/{}")), CLOSE_BAD_HELLO)
    add("empty_catch_all_name", with_routes((0, "GET", "/a/{*}")), CLOSE_BAD_HELLO)
    add("unclosed_brace", with_routes((0, "GET", "/a/{id")), CLOSE_BAD_HELLO)
    add("params_ok", with_routes((0, "GET", "/users/{user}/posts/{post}")), "ok")
    add("max_concurrency_0", minimal(max_concurrency=0), CLOSE_BAD_HELLO)
    add("max_concurrency_1_ok", minimal(max_concurrency=1), "ok")
    add("max_concurrency_65535_ok", minimal(max_concurrency=65535), "ok")
    add("max_concurrency_65536", minimal(max_concurrency=65536), CLOSE_BAD_HELLO)
    add("routes_1024_ok",
        minimal(routes=[route(i, "GET", "/r/%d" % i) for i in range(1024)]), "ok")
    add("routes_1025",
        minimal(routes=[route(i, "GET", "/r/%d" % i) for i in range(1025)]), CLOSE_BAD_HELLO)
    add("route_ids_sparse_ok", with_routes((65535, "GET", "/a"), (3, "GET", "/b")), "ok")
    add("same_route_twice_different_ids",
        with_routes((0, "GET", "/a/{id}"), (1, "GET", "/a/{id}")), CLOSE_BAD_HELLO)
    add("same_path_different_methods_ok",
        with_routes((0, "GET", "/a/{id}"), (1, "POST", "/a/{id}")), "ok")
    # Route sets (§2.5): routes conflict only on the same method and the same shape.
    add("same_shape_other_param_name",
        with_routes((0, "GET", "/a/{id}"), (1, "GET", "/a/{key}")), CLOSE_BAD_HELLO)
    add("same_shape_other_catch_all_name",
        with_routes((0, "GET", "/f/{*a}"), (1, "GET", "/f/{*b}")), CLOSE_BAD_HELLO)
    add("star_twice_same_shape",
        with_routes((0, "*", "/a/{x}"), (1, "*", "/a/{y}")), CLOSE_BAD_HELLO)
    add("param_beside_catch_all_ok",
        with_routes((0, "GET", "/a/{x}"), (1, "GET", "/a/{*rest}")), "ok")
    add("root_param_beside_root_catch_all_ok",
        with_routes((0, "GET", "/{x}"), (1, "GET", "/{*r}")), "ok")
    add("literal_beside_param_ok",
        with_routes((0, "GET", "/a/b"), (1, "GET", "/a/{x}"), (2, "GET", "/a/{x}/c")), "ok")
    add("star_beside_method_same_shape_ok",
        with_routes((0, "*", "/a/{x}"), (1, "GET", "/a/{y}")), "ok")
    add("head_beside_get_same_shape_ok", with_routes((0, "GET", "/p"), (1, "HEAD", "/p")), "ok")
    add("trailing_slash_is_another_route_ok", with_routes((0, "GET", "/a"), (1, "GET", "/a/")),
        "ok")
    add("prefix_beside_its_catch_all_ok",
        with_routes((0, "GET", "/files"), (1, "GET", "/files/{*rest}")), "ok")
    add("root_and_root_catch_all_ok", with_routes((0, "GET", "/"), (1, "GET", "/{*r}")), "ok")
    add("non_ascii_literal_ok", with_routes((0, "GET", "/caf\u00e9")), "ok")
    add("empty_segment_literal_ok", with_routes((0, "GET", "/a//b")), "ok")
    add("param_not_whole_segment", with_routes((0, "GET", "/a/x{id}")), CLOSE_BAD_HELLO)
    add("param_name_twice", with_routes((0, "GET", "/a/{id}/{id}")), CLOSE_BAD_HELLO)
    add("path_with_query", with_routes((0, "GET", "/a?x=1")), CLOSE_BAD_HELLO)
    add("path_with_space", with_routes((0, "GET", "/a b")), CLOSE_BAD_HELLO)
    # JSON edge cases that decode (§3.8): null for an optional field is absent; an integer
    # out of a field's range is a validation failure (4001/4002), not a decode error.
    add("optional_fields_null_ok", minimal(instance=None, sdk=None, labels=None), "ok")
    add("route_idempotent_null_ok",
        minimal(routes=[dict(route(0, "POST", "/a"), idempotent=None)]), "ok")
    add("route_idempotent_false_ok",
        minimal(routes=[dict(route(0, "POST", "/a"), idempotent=False)]), "ok")
    add("protocol_above_u32", minimal(protocol=2**40), CLOSE_UNSUPPORTED_VERSION)
    add("max_concurrency_u64_max", minimal(max_concurrency=U64_MAX), CLOSE_BAD_HELLO)
    add("max_concurrency_above_u32", minimal(max_concurrency=2**32), CLOSE_BAD_HELLO)
    add("route_id_65536", with_routes((65536, "GET", "/a")), CLOSE_BAD_HELLO)
    add("route_id_u64_max", with_routes((U64_MAX, "GET", "/a")), CLOSE_BAD_HELLO)
    # Length bounds (§2.4 rules 3a, 6, 7; §2.5): just accepted at the bound, refused past it.
    # Lengths are UTF-8 bytes: "é" is two.
    add("pattern_128_segments_ok", with_routes((0, "GET", "/a" * 128)), "ok")
    add("pattern_129_segments", with_routes((0, "GET", "/a" * 129)), CLOSE_BAD_HELLO)
    add("pattern_128_slashes_ok", with_routes((0, "GET", "/" * 128)), "ok")
    add("pattern_129_slashes", with_routes((0, "GET", "/" * 129)), CLOSE_BAD_HELLO)
    add("pattern_128_segments_with_params_ok",
        with_routes((0, "GET", "".join("/{p%d}" % i for i in range(127)) + "/{*rest}")), "ok")
    add("pattern_4096_bytes_ok", with_routes((0, "GET", "/" + "x" * 4095)), "ok")
    add("pattern_4097_bytes", with_routes((0, "GET", "/" + "x" * 4096)), CLOSE_BAD_HELLO)
    add("pattern_4097_utf8_bytes", with_routes((0, "GET", "/" + "x" * 4094 + "\u00e9")),
        CLOSE_BAD_HELLO)
    add("pattern_bounds_checked_per_route",
        with_routes((0, "GET", "/ok"), (1, "GET", "/a" * 129)), CLOSE_BAD_HELLO)
    add("method_32_bytes_ok", with_routes((0, "X" * 32, "/a")), "ok")
    add("method_33_bytes", with_routes((0, "X" * 33, "/a")), CLOSE_BAD_HELLO)
    add("instance_256_bytes_ok", minimal(instance="i" * 256), "ok")
    add("instance_257_bytes", minimal(instance="i" * 257), CLOSE_BAD_HELLO)
    add("instance_257_utf8_bytes", minimal(instance="i" * 255 + "\u00e9"), CLOSE_BAD_HELLO)
    add("sdk_128_bytes_ok", minimal(sdk="s" * 128), "ok")
    add("sdk_129_bytes", minimal(sdk="s" * 129), CLOSE_BAD_HELLO)
    add("labels_64_ok", minimal(labels={"k%02d" % i: "v" for i in range(64)}), "ok")
    add("labels_65", minimal(labels={"k%02d" % i: "v" for i in range(65)}), CLOSE_BAD_HELLO)
    add("label_key_256_bytes_ok", minimal(labels={"k" * 256: "v"}), "ok")
    add("label_key_257_bytes", minimal(labels={"k" * 257: "v"}), CLOSE_BAD_HELLO)
    add("label_value_256_bytes_ok", minimal(labels={"k": "v" * 256}), "ok")
    add("label_value_257_bytes", minimal(labels={"k": "v" * 257}), CLOSE_BAD_HELLO)
    # §2.6: unknown feature names are ignored; the list itself is bounded.
    add("features_unknown_ok", minimal(features=["upgrade", "some-later-extension"]), "ok")
    add("features_null_ok", minimal(features=None), "ok")
    add("features_16_ok", minimal(features=["f%02d" % i for i in range(16)]), "ok")
    add("features_17", minimal(features=["f%02d" % i for i in range(17)]), CLOSE_BAD_HELLO)
    add("feature_32_bytes_ok", minimal(features=["f" * 32]), "ok")
    add("feature_33_bytes", minimal(features=["f" * 33]), CLOSE_BAD_HELLO)
    add("feature_empty", minimal(features=[""]), CLOSE_BAD_HELLO)
    add("feature_twice", minimal(features=["trailers", "trailers"]), CLOSE_BAD_HELLO)
    return cases


MAX_FRAME_SIZE_V1 = 1048576
MAX_CONNECTIONS = 64  # WELCOME `connections` (§3.8, §10)


def validate_welcome(hello_max_concurrency, hello_features, w):
    """The worker's check of a decoded WELCOME: "ok" or the close code it sends."""
    check_control_schema("WELCOME", w)
    if w["protocol"] != PROTOCOL_VERSION:
        return CLOSE_UNSUPPORTED_VERSION
    if not 1 <= w["heartbeat_ms"] <= MAX_WINDOW:
        return CLOSE_PROTOCOL_VIOLATION
    if not 1 <= w["initial_window"] <= MAX_WINDOW:
        return CLOSE_PROTOCOL_VIOLATION
    if w["max_frame_size"] != MAX_FRAME_SIZE_V1:
        return CLOSE_PROTOCOL_VIOLATION
    if not 1 <= w["max_concurrency"] <= hello_max_concurrency:
        return CLOSE_PROTOCOL_VIOLATION
    if not 1 <= welcome_connections(w) <= MAX_CONNECTIONS:
        return CLOSE_PROTOCOL_VIOLATION
    granted = w.get("features") or []
    if not features_ok(granted) or any(f not in hello_features for f in granted):
        return CLOSE_PROTOCOL_VIOLATION
    return "ok"


def welcome_connections(w):
    """The connections a WELCOME asks for: absent or null is 1 (§3.8)."""
    c = w.get("connections")
    return 1 if c is None else c


def welcome_cases():
    cases = []

    def add(name, expect, offered=(), **kw):
        w = dict(FULL_WELCOME)
        w.update(kw)
        case = {"name": name, "hello_max_concurrency": 256,
                "hello_features": list(offered), "welcome": w,
                "expect": expect if expect == "ok" else {"close_code": expect}}
        if expect == "ok":
            case["connections"] = welcome_connections(w)
        cases.append(case)

    add("welcome_ok", "ok")
    add("protocol_2", CLOSE_UNSUPPORTED_VERSION, protocol=2)
    add("protocol_above_u32", CLOSE_UNSUPPORTED_VERSION, protocol=2**40)
    add("heartbeat_0", CLOSE_PROTOCOL_VIOLATION, heartbeat_ms=0)
    add("heartbeat_max_ok", "ok", heartbeat_ms=MAX_WINDOW)
    add("heartbeat_above_max", CLOSE_PROTOCOL_VIOLATION, heartbeat_ms=MAX_WINDOW + 1)
    add("initial_window_0", CLOSE_PROTOCOL_VIOLATION, initial_window=0)
    add("initial_window_max_ok", "ok", initial_window=MAX_WINDOW)
    add("initial_window_above_max", CLOSE_PROTOCOL_VIOLATION, initial_window=MAX_WINDOW + 1)
    add("max_frame_size_65536", CLOSE_PROTOCOL_VIOLATION, max_frame_size=65536)
    add("max_frame_size_2mib", CLOSE_PROTOCOL_VIOLATION, max_frame_size=2 * MAX_FRAME_SIZE_V1)
    add("max_frame_size_u64_max", CLOSE_PROTOCOL_VIOLATION, max_frame_size=U64_MAX)
    add("max_concurrency_0", CLOSE_PROTOCOL_VIOLATION, max_concurrency=0)
    add("max_concurrency_1_ok", "ok", max_concurrency=1)
    add("max_concurrency_as_asked_ok", "ok", max_concurrency=256)
    add("max_concurrency_above_asked", CLOSE_PROTOCOL_VIOLATION, max_concurrency=257)
    # §2.6: the gateway grants a subset of what the HELLO offered, unknown names included.
    add("features_granted_subset_ok", "ok", offered=["upgrade", "trailers", "later"],
        features=["trailers", "later"])
    add("features_none_granted_ok", "ok", offered=["upgrade"])
    add("features_null_ok", "ok", offered=["upgrade"], features=None)
    add("features_not_offered", CLOSE_PROTOCOL_VIOLATION, offered=["trailers"],
        features=["upgrade"])
    add("features_granted_twice", CLOSE_PROTOCOL_VIOLATION, offered=["upgrade"],
        features=["upgrade", "upgrade"])
    # §3.8, §9.1: connections asked for, 1..=64; absent (welcome_ok) or null is 1.
    add("connections_null_ok", "ok", connections=None)
    add("connections_1_ok", "ok", connections=1)
    add("connections_2_ok", "ok", connections=2)
    add("connections_64_ok", "ok", connections=MAX_CONNECTIONS)
    add("connections_0", CLOSE_PROTOCOL_VIOLATION, connections=0)
    add("connections_65", CLOSE_PROTOCOL_VIOLATION, connections=MAX_CONNECTIONS + 1)
    add("connections_u64_max", CLOSE_PROTOCOL_VIOLATION, connections=U64_MAX)
    return cases


# ---------------------------------------------------------------------------
# Routing (PROTOCOL.md §2.5), an independent matcher: it scores every route instead of
# walking a trie as vyx-core does.
# ---------------------------------------------------------------------------

def pct_decode(s):
    b = s.encode("ascii")
    out = bytearray()
    i = 0
    while i < len(b):
        if b[i] == 0x25 and i + 2 < len(b) \
                and all(chr(c) in "0123456789abcdefABCDEF" for c in b[i + 1:i + 3]):
            out.append(int(b[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(b[i])
            i += 1
    return bytes(out)


def match_pattern(pattern, path):
    """(ranks, raw param values) when pattern matches the raw path, else None."""
    segs = pattern[1:].split("/")
    raw = path[1:].split("/")
    ranks, values = [], []
    for i, seg in enumerate(segs):
        if seg.startswith("{*"):
            if i >= len(raw):
                return None
            ranks.append(0)
            values.append("/".join(raw[i:]))
            return ranks, values
        if i >= len(raw):
            return None
        if seg.startswith("{"):
            if raw[i] == "":
                return None
            ranks.append(1)
            values.append(raw[i])
        else:
            if pct_decode(raw[i]) != seg.encode("utf-8"):
                return None
            ranks.append(2)
    return (ranks, values) if len(raw) == len(segs) else None


def route_lookup(routes, method, path):
    best = None
    for r in routes:
        if r["method"] == method:
            mrank = 2
        elif method == "HEAD" and r["method"] == "GET":
            mrank = 1
        elif r["method"] == "*":
            mrank = 0
        else:
            continue
        m = match_pattern(r["path"], path)
        if m is None:
            continue
        key = (m[0], mrank)
        if best is None or key > best[0]:
            names = [seg.strip("{}*") for seg in r["path"][1:].split("/") if seg.startswith("{")]
            best = (key, r["id"], list(zip(names, m[1])))
    if best is None:
        return None
    return {"route_id": best[1], "params": [[n, hx(pct_decode(v))] for n, v in best[2]]}


def allowed_methods(routes, path):
    """§2.5.2: the methods of the routes whose pattern matches path, whatever the request's
    method (GET implies HEAD), sorted; the Allow of a 405, or [] for a 404."""
    methods = {r["method"] for r in routes
               if r["method"] != "*" and route_lookup([r], r["method"], path) is not None}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def routing_cases():
    cases = []

    def add(name, routes, requests):
        rs = [route(i, m, p) for i, (m, p) in enumerate(routes)]
        assert validate_routes(rs) is None, name
        reqs = []
        for method, path, want in requests:
            got = route_lookup(rs, method, path)
            want_id = None if want is None else want[0]
            assert (got and got["route_id"]) == want_id or (got is None and want is None), \
                (name, method, path, got, want)
            if want is not None:
                assert [[n, bytes.fromhex(v).decode("utf-8")] for n, v in got["params"]] \
                    == [list(p) for p in want[1]], (name, path, got)
            req = {"method": method, "path": path, "expect": got}
            if got is None:
                req["allow"] = allowed_methods(rs, path)
            reqs.append(req)
        cases.append({"name": name, "routes": rs, "requests": reqs})

    add("literal_beats_param_beats_catch_all",
        [("GET", "/a/b"), ("GET", "/a/{x}"), ("GET", "/a/{*rest}"), ("GET", "/{x}"),
         ("GET", "/{*r}")],
        [("GET", "/a/b", (0, [])),
         ("GET", "/a/c", (1, [("x", "c")])),
         ("GET", "/a/b/c", (2, [("rest", "b/c")])),
         ("GET", "/a/", (2, [("rest", "")])),
         ("GET", "/a", (3, [("x", "a")])),
         ("GET", "/", (4, [("r", "")])),
         ("GET", "/z/y", (4, [("r", "z/y")]))])
    add("leftmost_segment_decides",
        [("GET", "/{x}/b"), ("GET", "/a/{y}")],
        [("GET", "/a/b", (1, [("y", "b")])),
         ("GET", "/c/b", (0, [("x", "c")]))])
    add("backtrack_when_the_literal_branch_dead_ends",
        [("GET", "/a/b/c"), ("GET", "/a/{x}/d")],
        [("GET", "/a/b/d", (1, [("x", "b")])),
         ("GET", "/a/b/c", (0, [])),
         ("GET", "/a/b/e", None)])
    add("percent_decoding",
        [("GET", "/caf\u00e9"), ("GET", "/u/{name}"), ("GET", "/files/{*rest}")],
        [("GET", "/caf%C3%A9", (0, [])),
         ("GET", "/caf%c3%a9", (0, [])),
         ("GET", "/u/a%2Fb", (1, [("name", "a/b")])),
         ("GET", "/u/a/b", None),
         ("GET", "/u/w%C3%B6rld", (1, [("name", "w\u00f6rld")])),
         ("GET", "/u/100%", (1, [("name", "100%")])),
         ("GET", "/u/%zz+%41", (1, [("name", "%zz+A")])),
         ("GET", "/files/a%2Fb/c", (2, [("rest", "a/b/c")]))])
    add("encoded_literal_needs_the_decoded_text",
        [("GET", "/a%2Fb"), ("GET", "/x/y")],
        [("GET", "/a%2Fb", None),
         ("GET", "/a%252Fb", (0, [])),
         ("GET", "/x%2Fy", None)])
    add("trailing_slash_and_empty_segments",
        [("GET", "/a"), ("GET", "/a/"), ("GET", "/p/{x}")],
        [("GET", "/a", (0, [])),
         ("GET", "/a/", (1, [])),
         ("GET", "/a//", None),
         ("GET", "/p/", None),
         ("GET", "/p//", None),
         ("GET", "/p/1/", None)])
    add("catch_all_rest_may_be_empty_but_needs_its_slash",
        [("GET", "/files/{*rest}")],
        [("GET", "/files", None),
         ("GET", "/files/", (0, [("rest", "")])),
         ("GET", "/files//x", (0, [("rest", "/x")])),
         ("GET", "/files/a/b/", (0, [("rest", "a/b/")]))])
    add("no_normalisation",
        [("GET", "/Abc"), ("GET", "/a/b")],
        [("GET", "/abc", None),
         ("GET", "/%41bc", (0, [])),
         ("GET", "/a/./b", None),
         ("GET", "/a//b", None)])
    add("specificity_before_method",
        [("*", "/api/{*rest}"), ("GET", "/{*rest}")],
        [("GET", "/api/x", (0, [("rest", "x")])),
         ("GET", "/other", (1, [("rest", "other")])),
         ("POST", "/other", None),
         ("POST", "/api/x", (0, [("rest", "x")]))])
    add("method_beats_star_at_the_same_shape",
        [("*", "/a/{y}"), ("GET", "/a/{x}")],
        [("GET", "/a/1", (1, [("x", "1")])),
         ("DELETE", "/a/1", (0, [("y", "1")]))])
    add("a_method_that_does_not_fit_falls_back",
        [("POST", "/a/b"), ("GET", "/a/{x}")],
        [("GET", "/a/b", (1, [("x", "b")])),
         ("POST", "/a/b", (0, [])),
         ("PUT", "/a/b", None)])
    add("a_path_served_for_other_methods_is_405_with_allow",
        [("GET", "/items/{id}"), ("DELETE", "/items/{id}"), ("POST", "/items"),
         ("GET", "/files/{*rest}")],
        [("DELETE", "/items", None),
         ("PATCH", "/items/5", None),
         ("PUT", "/files/a/b", None),
         ("GET", "/nothing", None)])
    add("methods_are_case_sensitive",
        [("GET", "/a")],
        [("get", "/a", None),
         ("GET", "/a", (0, []))])
    add("head_uses_the_get_route",
        [("GET", "/p"), ("GET", "/q"), ("HEAD", "/q"), ("*", "/r"), ("GET", "/s"), ("*", "/s"),
         ("GET", "/t/x"), ("HEAD", "/t/{y}")],
        [("HEAD", "/p", (0, [])),
         ("HEAD", "/q", (2, [])),
         ("GET", "/q", (1, [])),
         ("HEAD", "/r", (3, [])),
         ("HEAD", "/s", (4, [])),
         ("HEAD", "/t/x", (6, [])),
         ("HEAD", "/t/z", (7, [("y", "z")]))])
    return cases


def backoff_vectors():
    seeds = [0, 1, 0xDEADBEEF, U64_MAX]
    sm = []
    for s in seeds:
        g = SplitMix64(s)
        sm.append({"seed": str(s), "outputs": [str(g.next()) for _ in range(8)]})
    delays = []
    for s in seeds:
        g = SplitMix64(s)
        delays.append({"seed": str(s), "delays_ms": [delay(n, g) for n in range(21)]})
    return {
        "description": "vyx reconnect backoff. envelope(n) = min(cap_ms, base_ms * 2^n) "
                       "(saturating); delay(n) = floor(e/2) + (next() mod (e - floor(e/2) + 1)) "
                       "with e = envelope(n) and next() the SplitMix64 generator seeded with "
                       "seed (one next() per delay, drawn in order from one generator). "
                       "u64 values are decimal strings. See spec/PROTOCOL.md, Reconnect.",
        "base_ms": BASE_MS,
        "cap_ms": CAP_MS,
        "stable_ms": STABLE_MS,
        "envelope_ms": [envelope(n) for n in range(21)],
        "splitmix64": sm,
        "delays": delays,
    }


# ---------------------------------------------------------------------------
# Self-check
# ---------------------------------------------------------------------------

def self_check(frames, malformed, cases, backoff):
    # SplitMix64 known answer.
    g = SplitMix64(0)
    assert g.next() == 16294208416658607535 == 0xE220A8397B1DCDAF
    assert envelope(0) == 100 and envelope(6) == 6400 and envelope(7) == 10000
    assert envelope(1000) == 10000

    names = set()
    seen_types = set()
    for vec in frames:
        assert vec["name"] not in names, vec["name"]
        names.add(vec["name"])
        raw = bytes.fromhex(vec["hex"])
        assert vec["hex"] == raw.hex()  # lowercase, canonical
        assert len(raw) <= MAX_FRAME_SIZE
        for strategy in ("streaming", "structure_first"):
            got = decode(raw, strategy)
            assert got == vec["frame"], (vec["name"], got, vec["frame"])
        assert encode(got) == raw, vec["name"]
        if vec["frame"]["type"] in CONTROL_TYPES:
            # byte-exact: compact, key order as documented, raw UTF-8
            assert control_json_bytes(json.loads(raw[6:].decode("utf-8"))) == raw[6:]
            control(vec["frame"]["type"], vec["frame"]["json"])  # key order as documented
        seen_types.add(vec["frame"]["type"])
    assert seen_types == set(TYPES.values()), seen_types

    kinds = set()
    names = set()
    for vec in malformed:
        assert vec["name"] not in names, vec["name"]
        names.add(vec["name"])
        raw = bytes.fromhex(vec["hex"])
        for strategy in ("streaming", "structure_first"):
            try:
                decode(raw, strategy)
            except DecodeError as e:
                assert e.kind == vec["error"], (vec["name"], strategy, e.kind)
            else:
                raise AssertionError("decoded without error: " + vec["name"])
        assert vec["close_code"] == close_code_for(vec["error"], raw)
        kinds.add(vec["error"])
    assert kinds == set(ERROR_KINDS) - {"frame_too_large"}, set(ERROR_KINDS) - kinds

    # frame_too_large is not in the file; check the boundary here.
    big = header(0, 0, 1) + bytes(MAX_FRAME_SIZE - HEADER_LEN)
    assert decode(big)["data"] == "00" * (MAX_FRAME_SIZE - HEADER_LEN)
    try:
        decode(big + b"\x00")
    except DecodeError as e:
        assert e.kind == "frame_too_large"
    else:
        raise AssertionError("frame_too_large not detected")
    try:  # length is checked before anything else
        decode(b"\xff" * (MAX_FRAME_SIZE + 1))
    except DecodeError as e:
        assert e.kind == "frame_too_large"

    names = set()
    for case in cases:
        assert case["name"] not in names, case["name"]
        names.add(case["name"])
        got = validate_hello(case["header_worker_id"], case["hello"])
        want = case["expect"] if case["expect"] == "ok" else case["expect"]["close_code"]
        assert got == want, (case["name"], got, want)
        # every handshake HELLO must also be a decodable HELLO frame
        payload = control_json_bytes(case["hello"])
        assert decode(header(0x10, 0, 0) + payload)["json"] == case["hello"]

    for d in backoff["delays"]:
        for n, ms in enumerate(d["delays_ms"]):
            e = envelope(n)
            assert e // 2 <= ms <= e
    assert backoff["splitmix64"][0]["outputs"][0] == "16294208416658607535"


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

def dump(value, level=0, width=120):
    """Deterministic pretty-printer: a list/object whose one-line form fits in
    `width` columns is printed on one line, otherwise one item per line."""
    one_line = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    if not isinstance(value, (list, dict)) or not value or level + len(one_line) <= width:
        return one_line
    pad = " " * (level + 1)
    if isinstance(value, dict):
        items = [pad + json.dumps(k, ensure_ascii=False) + ": " + dump(v, level + 1, width)
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * level + "}"
    items = [pad + dump(v, level + 1, width) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * level + "]"


OUT_DIR = HERE


def write(name, obj):
    text = dump(obj) + "\n"
    assert json.loads(text) == obj
    with open(os.path.join(OUT_DIR, name), "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def main():
    global OUT_DIR
    # --out DIR writes elsewhere, so that a test can compare with the committed files.
    if len(sys.argv) == 3 and sys.argv[1] == "--out":
        OUT_DIR = sys.argv[2]
    elif len(sys.argv) != 1:
        print("usage: generate.py [--out DIR]", file=sys.stderr)
        return 2
    frames = frame_vectors()
    malformed = malformed_vectors()
    cases = handshake_cases()
    welcomes = welcome_cases()
    routing = routing_cases()
    backoff = backoff_vectors()
    self_check(frames, malformed, cases, backoff)
    for case in welcomes:
        payload = control_json_bytes(case["welcome"])
        assert decode(header(0x11, 0, 0) + payload)["json"] == case["welcome"]
        want = case["expect"] if case["expect"] == "ok" else case["expect"]["close_code"]
        assert validate_welcome(case["hello_max_concurrency"], case["hello_features"],
                                case["welcome"]) == want, case
    assert len({c["name"] for c in welcomes}) == len(welcomes)
    assert len({c["name"] for c in routing}) == len(routing)

    write("frames.json", {
        "description": "vyx protocol v1 frame vectors. hex is the whole WebSocket binary "
                       "message (6-byte header + payload). Decoding hex must give frame; "
                       "encoding frame must give hex (for HELLO/WELCOME/DRAIN/ROUTES/ERROR "
                       "compare the parsed JSON payload with json; the bytes are the compact "
                       "encoding with keys in the documented order). Byte strings "
                       "(data, param values, header values) are lowercase hex. "
                       "See spec/PROTOCOL.md.",
        "vectors": frames,
    })
    write("malformed.json", {
        "description": "vyx protocol v1 malformed frames. Decoding hex (with the given "
                       "max_frame_size) must fail with error; the receiver then closes the "
                       "WebSocket with close_code. Each vector has exactly one fault, except "
                       "the ones named *_checked_before_* / *_stream_1_not_json / "
                       "header_5_bytes_unknown_type, which test the header check order. "
                       "frame_too_large is not listed (too big for a file). "
                       "See spec/PROTOCOL.md.",
        "max_frame_size": MAX_FRAME_SIZE,
        "vectors": malformed,
    })
    write("handshake.json", {
        "description": "vyx protocol v1 HELLO validation by the gateway (protocol-core rules "
                       "only; route conflicts and allow-lists are not covered). The upgrade "
                       "request carried X-Vyx-Worker-Id: header_worker_id and the worker sent "
                       "hello; expect is \"ok\" (gateway answers WELCOME) or the close code. "
                       "welcome_cases: the worker's check of a WELCOME answering a HELLO with "
                       "hello_max_concurrency and offering hello_features; expect is \"ok\" or the close code the worker "
                       "sends (4002 stops, 4005 retries); an ok case's connections is how many "
                       "connections the worker then holds to the address (absent or null: 1). "
                       "See spec/PROTOCOL.md, HELLO validation and Control frames.",
        "cases": cases,
        "welcome_cases": welcomes,
    })
    write("routing.json", {
        "description": "vyx protocol v1 routing: a worker declares routes (a valid HELLO route "
                       "set); for each request (method, raw path as received, without query) "
                       "the gateway picks expect.route_id and sends expect.params (name, "
                       "percent-decoded value as hex) in pattern order, or, when expect is null, "
                       "answers itself: 405 with Allow = allow joined by ', ' when allow is "
                       "not empty, else 404. See spec/PROTOCOL.md, Route patterns and matching.",
        "cases": routing,
    })
    write("backoff.json", backoff)
    write("query.json", query_vectors())  # spec/vectors/query.py
    write("cookies.json", cookie_vectors())  # spec/vectors/cookies.py
    write("client.json", client_vectors())  # spec/vectors/client.py
    write("defaults.json", {
        "description": "What every SDK uses for what its user leaves unset (spec/HOSTS.md, "
                       "section 1): vyx-core's config module and sdk-go/config.go hold these "
                       "numbers, and the Node and Python bindings read the core's.",
        "max_concurrency": 1024,
        "connect_timeout_ms": 10000,
        "drain_timeout_ms": 30000,
        "resolve_interval_ms": 30000,
    })
    __import__("behaviour").write_all(write)  # streams, flow, heartbeat, retry, worker_id
    print("frames: %d, malformed: %d, handshake: %d, welcome: %d, routing: %d, backoff seeds: %d"
          % (len(frames), len(malformed), len(cases), len(welcomes), len(routing),
             len(backoff["delays"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
