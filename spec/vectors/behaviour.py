"""Behavioural vectors of vyx protocol v1: what a side does, not only which bytes it sends.

Imported by generate.py (one hook line); Python 3 standard library only. Writes
  streams.json    stream state-machine traces a scripted gateway replays to a worker (§4)
  flow.json       flow-control accounting, sender and receiver (§5)
  heartbeat.json  heartbeat ticks: tick / receive / stall -> dead at tick k (§7)
  retry.json      how a connection attempt ended -> the worker retries or stops (§9)
  worker_id.json  the worker-id syntax (§2.2)
The formats are described in spec/vectors/README.md. Each file is checked against the small
reference models below before it is written.
"""

import hashlib
import json
import string

MAX_WINDOW = 2**31 - 1
HEARTBEAT_MISSES = 3
WORKER_ID_CHARS = set(string.ascii_letters + string.digits + "._:@/-")

RESET_CODES = ["no_error", "cancel", "handler_error", "timeout", "refused", "protocol_error",
               "flow_control"]

# ---------------------------------------------------------------------------
# streams.json: traces against the conformance worker's routes
# ---------------------------------------------------------------------------

def pattern(offset, length):
    return bytes((offset + i) % 251 for i in range(length))


def req(sid, route, target, params=(), end=True):
    return {"send": {"type": "REQUEST", "stream_id": sid, "route": route, "target": target,
                     "params": [list(p) for p in params], "end_stream": end}}


def status_req(sid, code):
    return req(sid, "GET /status/{code}", "/status/%d" % code, [("code", str(code))])


def slow_req(sid, ms):
    return req(sid, "GET /slow/{ms}", "/slow/%d" % ms, [("ms", str(ms))])


def data(sid, text=None, end=False, pat=None):
    f = {"type": "DATA", "stream_id": sid}
    if pat is not None:
        f["pattern"] = list(pat)
    else:
        f["data"] = text
    f["end_stream"] = end
    return {"send": f}


def expect_response(sid, status, end=None):
    f = {"type": "RESPONSE", "stream_id": sid, "status": status}
    if end is not None:
        f["end_stream"] = end
    return {"expect": f}


def expect_body(sid, text=None, end=True, pat=None, json_body=None):
    f = {"type": "DATA", "stream_id": sid}
    if pat is not None:
        f["pattern"] = list(pat)
    elif json_body is not None:
        f["json"] = json_body
    elif text is not None:
        f["data"] = text
    f["end_stream"] = end
    return {"expect": f}


def status_ok(sid, code):
    return [status_req(sid, code), expect_response(sid, code), expect_body(sid, "status %d" % code)]


def trace(name, section, description, steps, welcome=None):
    t = {"name": name, "section": section, "description": description}
    if welcome:
        t["welcome"] = welcome
    t["steps"] = steps
    return t


def stream_traces():
    w64k = {"initial_window": 65536}
    upload_64k = {"length": 65536, "sha256": hashlib.sha256(pattern(0, 65536)).hexdigest()}
    return [
        trace("request_without_body", "4.2",
              "REQUEST with END_STREAM opens the stream half-closed (remote); the worker answers.",
              status_ok(1, 200)),
        trace("request_body_delivered", "4.4",
              "DATA on an open stream is delivered in order; an empty DATA without END_STREAM "
              "changes nothing; END_STREAM ends the body.",
              [req(1, "POST /echo", "/echo", end=False), data(1, "hello "), data(1, ""),
               data(1, "world", end=True), expect_response(1, 200),
               expect_body(1, "hello world")]),
        trace("stream_ids_with_gaps", "4.1",
              "Each REQUEST id is greater than the last; gaps are allowed.",
              status_ok(1, 200) + status_ok(10, 201) + status_ok(4294967295, 202)),
        trace("data_after_end_stream", "4.4",
              "DATA on a half-closed (remote) stream: RESET protocol_error; the handler's answer "
              "is never sent (the next frame is the later stream's).",
              [slow_req(1, 300), data(1, "x"), {"expect": {"type": "RESET", "stream_id": 1,
                                                          "code": "protocol_error"}},
               slow_req(3, 600), expect_response(3, 200), expect_body(3)]),
        trace("reset_by_gateway", "4.4",
              "RESET from the gateway closes the stream; no frame is sent in reply, and no "
              "answer follows.",
              [slow_req(1, 300), {"send": {"type": "RESET", "stream_id": 1, "code": "cancel"}},
               slow_req(3, 600), expect_response(3, 200), expect_body(3)]),
        trace("frames_on_a_closed_stream_ignored", "4.4",
              "DATA, WINDOW and RESET for a closed stream (id <= highest opened) are ignored "
              "silently.",
              status_ok(1, 200) + status_ok(3, 201) +
              [data(1, "late", end=True),
               {"send": {"type": "WINDOW", "stream_id": 1, "increment": 100}},
               {"send": {"type": "RESET", "stream_id": 1, "code": "cancel"}}] +
              status_ok(5, 202)),
        trace("request_id_reused", "4.1", "A REQUEST reusing an id: close 4005.",
              status_ok(3, 200) + [status_req(3, 200), {"expect": {"close": 4005}}]),
        trace("request_id_lower", "4.1", "A REQUEST with an id below the highest opened: close 4005.",
              status_ok(5, 200) + [status_req(3, 200), {"expect": {"close": 4005}}]),
        trace("data_on_idle_stream", "4.1", "DATA for an id above the highest opened: close 4005.",
              status_ok(1, 200) + [data(3, "x"), {"expect": {"close": 4005}}]),
        trace("window_on_idle_stream", "4.1", "WINDOW for an id above the highest opened: close 4005.",
              status_ok(1, 200) + [{"send": {"type": "WINDOW", "stream_id": 3, "increment": 1}},
                                   {"expect": {"close": 4005}}]),
        trace("reset_on_idle_stream", "4.1", "RESET for an id above the highest opened: close 4005.",
              [{"send": {"type": "RESET", "stream_id": 1, "code": "cancel"}},
               {"expect": {"close": 4005}}]),
        trace("unknown_route_id", "3.8",
              "A REQUEST naming a route id the worker does not serve: the worker answers 404 "
              "itself.",
              [req(1, "unknown", "/nowhere"), expect_response(1, 404), expect_body(1)] +
              status_ok(3, 200)),
        trace("data_up_to_the_window", "5",
              "DATA of exactly the receive window is accepted.",
              [req(1, "POST /upload", "/upload", end=False), data(1, end=True, pat=(0, 65536)),
               expect_response(1, 200), expect_body(1, json_body=upload_64k)],
              welcome=w64k),
        trace("data_beyond_the_window", "5",
              "DATA beyond the remaining receive window: close 4008.",
              [req(1, "POST /upload", "/upload", end=False), data(1, pat=(0, 65537)),
               {"expect": {"close": 4008}}],
              welcome=w64k),
        trace("send_window_respected", "5",
              "The worker sends no more response DATA than its send window, and goes on after "
              "a WINDOW.",
              [req(1, "GET /stream/{bytes}", "/stream/100000", [("bytes", "100000")]),
               expect_response(1, 200), expect_body(1, end=False, pat=(0, 65536)),
               {"quiet_ms": 300},
               {"send": {"type": "WINDOW", "stream_id": 1, "increment": 34464}},
               expect_body(1, end=True, pat=(65536, 34464))],
              welcome=w64k),
        trace("in_flight_finish_after_drain", "7",
              "After the gateway's DRAIN a stream in flight finishes normally.",
              [slow_req(1, 300), {"send": {"type": "DRAIN", "deadline_ms": 10000}},
               expect_response(1, 200), expect_body(1)]),
        trace("request_after_drain", "7", "A REQUEST after the gateway's DRAIN: close 4005.",
              status_ok(1, 200) + [{"send": {"type": "DRAIN", "deadline_ms": 10000}},
                                   status_req(3, 200), {"expect": {"close": 4005}}]),
    ] + bad_request_traces() + [
        trace(name, section, description, status_ok(1, 200) + [{"send": send}, {"expect": {"close": code}}])
        for name, section, description, send, code in connection_errors()
    ]


def request_hex(sid, target=b"/status/200", method=b"GET", params=(), value=b"conformance.test",
                end=True, cut=0, extra=b""):
    """A REQUEST no encoder would produce: its head breaks a rule of §3.4. Route id 0 (the
    head is refused before its route is looked at); `cut` bytes cut off the end, `extra`
    appended."""
    def str16(b):
        return len(b).to_bytes(2, "big") + b
    payload = b"\x00\x00" + str16(method) + str16(target) + len(params).to_bytes(2, "big")
    for n, v in params:
        payload += str16(n) + str16(v)
    payload += b"\x00\x01" + str16(b"host") + str16(value)
    raw = bytes([0x01, 0x01 if end else 0x00]) + sid.to_bytes(4, "big") + payload
    return {"send": {"hex": (raw[:len(raw) - cut] + extra).hex()}}


def upgrade_request_hex(sid):
    """A valid WebSocket REQUEST (route 0, `GET /status/{code}`) with flag UPGRADE."""
    req = request_hex(sid, end=False)["send"]["hex"]
    return {"hex": req[:2] + "02" + req[4:]}


def expect_reset(sid, code="protocol_error"):
    return {"expect": {"type": "RESET", "stream_id": sid, "code": code}}


def bad_request_traces():
    """§8: a REQUEST whose head does not decode is a stream error: RESET protocol_error on
    its id, which counts as opened; the connection serves on."""
    return [
        trace("request_bad_target", "8",
              "A REQUEST whose target holds raw UTF-8 (bytes >= 0x80): RESET protocol_error on "
              "that stream only; the next REQUEST on the connection is served.",
              [request_hex(1, target="/status/caf\u00e9".encode()), expect_reset(1)] +
              status_ok(3, 200)),
        trace("request_bad_heads", "8",
              "REQUEST heads that do not decode (a method with a space, a control byte in a "
              "header value, an empty param name, a head ending inside a field, a trailing "
              "byte): each stream is RESET protocol_error, in order, and the connection serves "
              "on.",
              [request_hex(1, method=b"G T"), expect_reset(1),
               request_hex(2, value=b"a\x01b"), expect_reset(2),
               request_hex(3, params=((b"", b"200"),)), expect_reset(3),
               request_hex(4, cut=1), expect_reset(4),
               request_hex(5, extra=b"\x00"), expect_reset(5)] +
              status_ok(6, 200)),
        trace("request_bad_head_with_body", "8",
              "A bad REQUEST head without END_STREAM: RESET protocol_error; the DATA the "
              "gateway sent on behind it is ignored (the stream is closed), and the connection "
              "serves on.",
              [request_hex(1, target=b"/status/ 200", end=False), expect_reset(1),
               data(1, "late"), data(1, "body", end=True)] +
              status_ok(3, 200)),
        trace("request_bad_head_opens_its_id", "8",
              "A bad REQUEST head still opens its id: a later REQUEST with a lower id is "
              "close 4005.",
              [request_hex(5, target=b"no-slash"), expect_reset(5), status_req(3, 200),
               {"expect": {"close": 4005}}]),
        trace("request_bad_head_after_drain", "8",
              "A REQUEST after the gateway's DRAIN is close 4005, its head valid or not.",
              status_ok(1, 200) + [{"send": {"type": "DRAIN", "deadline_ms": 10000}},
                                   request_hex(3, target=b"caf\xc3\xa9"),
                                   {"expect": {"close": 4005}}]),
    ]


def control_hex(type_byte, obj):
    return (bytes([type_byte, 0, 0, 0, 0, 0]) + compact(obj).encode("utf-8")).hex()


def connection_errors():
    welcome = {"protocol": 1, "gateway": "vyx/0.1.0", "connection_id": "again",
               "heartbeat_ms": 10000, "initial_window": 262144, "max_frame_size": 1048576,
               "max_concurrency": 1}
    hello = {"protocol": 1, "worker_id": "gateway", "max_concurrency": 1, "routes": []}
    return [
        ("unknown_frame_type", "8.1", "A reserved frame type: close 4005.",
         {"hex": "040000000001"}, 4005),
        ("truncated_header", "8.1", "A message shorter than the frame header: close 4005.",
         {"hex": "000000"}, 4005),
        ("flag_not_allowed", "8.1", "END_STREAM on a RESET: close 4005.",
         {"hex": "03010000000100000001"}, 4005),
        ("text_message", "8.2", "A text WebSocket message: close 4005.",
         {"text": "hello"}, 4005),
        ("oversized_frame", "8.1", "A message of max_frame_size + 1 bytes: close 4006.",
         {"zeros": 1048577}, 4006),
        ("second_welcome", "2.3", "A second WELCOME: close 4005.",
         {"hex": control_hex(0x11, welcome)}, 4005),
        ("hello_from_the_gateway", "8.2", "HELLO sent by the gateway (wrong direction): close 4005.",
         {"hex": control_hex(0x10, hello)}, 4005),
        ("response_from_the_gateway", "8.2",
         "RESPONSE sent by the gateway (wrong direction): close 4005.",
         {"hex": "020100000001" + "00c8" + "0000"}, 4005),
        ("upgrade_without_the_extension", "4.5",
         "REQUEST with flag UPGRADE on a connection whose WELCOME did not list `upgrade`: "
         "close 4005.", upgrade_request_hex(3), 4005),
    ]


def check_traces(traces):
    names = set()
    for t in traces:
        assert t["name"] not in names
        names.add(t["name"])
        for step in t["steps"]:
            assert len(step) == 1 and next(iter(step)) in ("send", "expect", "quiet_ms"), step
            if "send" in step and "type" not in step["send"]:
                assert len(step["send"]) == 1 and next(iter(step["send"])) in ("hex", "text", "zeros")
            f = step.get("send") or step.get("expect")
            if isinstance(f, dict) and f.get("type") == "RESET":
                assert f["code"] in RESET_CODES
        # A trace that expects a close ends there.
        closes = [i for i, s in enumerate(t["steps"]) if "close" in s.get("expect", {})]
        assert not closes or closes == [len(t["steps"]) - 1], t["name"]


# ---------------------------------------------------------------------------
# flow.json
# ---------------------------------------------------------------------------

def run_send(initial, ops):
    """Reference sender: a window of credit; WINDOW adds; sending takes what is there."""
    window, events = initial, []
    for op, n in ops:
        if op == "grant":
            window += n
            if window > MAX_WINDOW:
                events.append({"grant": n, "close": 4008})
                break
            events.append({"grant": n, "window": window})
        else:
            sent = min(n, window)
            window -= sent
            events.append({"send": n, "sent": sent, "window": window})
    return events


def run_receive(initial, ops):
    """Reference receiver: DATA takes credit (beyond it: 4008); consumed bytes are granted
    back by WINDOW once they reach initial/2 (§5 SHOULD), never after END_STREAM."""
    window, unacked, ended, events = initial, 0, False, []
    for op, n, *rest in ops:
        if op == "data":
            end = bool(rest and rest[0])
            window -= n
            if window < 0:
                events.append({"data": n, "close": 4008})
                break
            ev = {"data": n, "window": window}
            if end:
                ev["end_stream"] = True
                ended = True
            events.append(ev)
        else:
            inc = 0
            if not ended:
                unacked += n
                if unacked > 0 and unacked >= initial // 2:
                    inc, unacked = unacked, 0
                    window += inc
            events.append({"consume": n, "window_update": inc, "window": window})
    return events


def flow_vectors():
    send = [
        ("send_within_the_window", 65536, [("send", 1000), ("send", 64536), ("send", 1)]),
        ("window_restores_credit", 65536, [("send", 65536), ("grant", 100), ("send", 1000),
                                           ("grant", 65536), ("send", 65536)]),
        ("window_up_to_the_maximum", 65536, [("grant", MAX_WINDOW - 65536), ("send", 10)]),
        ("window_past_the_maximum", 65536, [("send", 1), ("grant", MAX_WINDOW - 65535)]),
        ("overflow_from_zero", 1, [("send", 1), ("grant", MAX_WINDOW), ("grant", 1)]),
    ]
    receive = [
        ("data_up_to_the_window", 65536, [("data", 32768), ("data", 32768)]),
        ("data_beyond_the_window", 65536, [("data", 65536), ("data", 1)]),
        ("one_frame_beyond_the_window", 65536, [("data", 65537)]),
        ("window_batched_at_half", 65536, [("data", 20000), ("consume", 20000),
                                           ("data", 20000), ("consume", 20000),
                                           ("data", 25536), ("data", 40000), ("consume", 45536),
                                           ("data", 45536), ("data", 1)]),
        ("no_window_after_end_stream", 65536, [("data", 40000, True), ("consume", 40000)]),
    ]
    return {
        "send": [{"name": n, "initial_window": w, "events": run_send(w, ops)} for n, w, ops in send],
        "receive": [{"name": n, "initial_window": w, "events": run_receive(w, ops)}
                    for n, w, ops in receive],
    }


# ---------------------------------------------------------------------------
# heartbeat.json
# ---------------------------------------------------------------------------

def dead_at(events):
    """Reference heartbeat: at each tick, silent intervals reset if anything was heard since
    the previous tick, else grow; dead at HEARTBEAT_MISSES. A stall delays the next tick and
    counts as one interval, whatever its length."""
    heard, silent, ticks = False, 0, 0
    for e in events:
        if e == "recv":
            heard = True
        elif e == "tick":
            ticks += 1
            silent = 0 if heard else silent + 1
            heard = False
            if silent >= HEARTBEAT_MISSES:
                return ticks
    return None


def heartbeat_vectors():
    cases = [
        ("silent_peer", ["tick", "tick", "tick"]),
        ("heard_every_interval", ["recv", "tick"] * 6),
        ("heard_every_other_interval", ["tick", "recv", "tick", "tick", "recv", "tick", "tick",
                                        "recv", "tick"]),
        ("heard_then_silent", ["recv", "tick", "tick", "tick", "tick"]),
        ("heard_twice_in_one_interval", ["recv", "recv", "tick", "tick", "tick", "tick"]),
        ("two_silent_then_heard", ["tick", "tick", "recv", "tick", "tick", "tick", "tick"]),
        ("own_stall_then_backlog", ["recv", "tick", "stall", "tick", "recv", "tick", "tick",
                                    "tick", "tick"]),
        ("own_stall_counts_once", ["tick", "stall", "tick", "tick"]),
        ("stalls_between_heard_ticks", ["recv", "tick", "stall", "tick", "recv", "stall", "tick",
                                        "recv", "tick"]),
    ]
    out = []
    for name, events in cases:
        # Vectors end at the death (nothing after it is defined).
        k = dead_at(events)
        if k is not None:
            n = 0
            for i, e in enumerate(events):
                n += e == "tick"
                if n == k:
                    assert i == len(events) - 1, name
        out.append({"name": name, "events": events, "dead_at_tick": k})
    return out


# ---------------------------------------------------------------------------
# retry.json
# ---------------------------------------------------------------------------

def retry_cases():
    reason = "{reason}"
    cases = []
    for status in (400, 401, 403):
        cases.append({"name": "http_%d" % status, "outcome": {"http_status": status},
                      "retry": False, "error_names": [str(status), reason]})
    cases.append({"name": "http_404", "outcome": {"http_status": 404}, "retry": False,
                  "error_names": ["404"]})
    for status in (500, 502, 503):
        cases.append({"name": "http_%d" % status, "outcome": {"http_status": status},
                      "retry": True})
    cases.append({"name": "upgrade_without_vyx.1", "outcome": {"upgrade": "no_subprotocol"},
                  "retry": False, "error_names": ["vyx.1"]})
    cases.append({"name": "dropped_before_upgrade", "outcome": {"upgrade": "dropped"},
                  "retry": True})
    # The close frame's own reason is a short text other than the ERROR's message: the
    # error a stopping worker reports names the ERROR's (§3.8, §9).
    short = "refused"
    for code in (4001, 4002, 4003, 4004):
        cases.append({"name": "close_%d_handshake" % code,
                      "outcome": {"close": code, "phase": "handshake", "close_reason": short},
                      "retry": False, "error_names": [str(code), reason]})
    cases.append({"name": "close_4000_connected",
                  "outcome": {"close": 4000, "phase": "connected", "close_reason": short},
                  "retry": False, "error_names": ["4000", reason]})
    for code, phase in ((4005, "handshake"), (4007, "handshake"), (1000, "connected"),
                        (1001, "connected"), (4005, "connected"), (4006, "connected"),
                        (4008, "connected"), (4009, "connected"), (4010, "connected"),
                        (4011, "connected")):
        cases.append({"name": "close_%d_%s" % (code, phase),
                      "outcome": {"close": code, "phase": phase}, "retry": True})
    good = {"protocol": 1, "gateway": "vyx/0.1.0", "connection_id": "c1", "heartbeat_ms": 5000,
            "initial_window": 262144, "max_frame_size": 1048576, "max_concurrency": 1}

    def welcome(**changes):
        w = dict(good)
        w.update(changes)
        return compact(w)

    cases.append({"name": "welcome_protocol_2", "outcome": {"welcome": welcome(protocol=2)},
                  "worker_closes": 4002, "retry": False, "error_names": ["protocol"]})
    bad = [
        ("welcome_heartbeat_0", welcome(heartbeat_ms=0)),
        ("welcome_initial_window_0", welcome(initial_window=0)),
        ("welcome_initial_window_2^31", welcome(initial_window=2**31)),
        ("welcome_max_concurrency_0", welcome(max_concurrency=0)),
        ("welcome_max_concurrency_above_hello", welcome(max_concurrency=1025)),
        ("welcome_max_frame_size_65536", welcome(max_frame_size=65536)),
        ("welcome_max_frame_size_2097152", welcome(max_frame_size=2097152)),
        ("welcome_not_json", '{"protocol":1,'),
        ("welcome_missing_field", compact({k: v for k, v in good.items() if k != "connection_id"})),
    ]
    for name, text in bad:
        cases.append({"name": name, "outcome": {"welcome": text}, "worker_closes": 4005,
                      "retry": True})
    # The HELLO those WELCOMEs answer (max_concurrency_above_hello is above it).
    for c in cases:
        if "welcome" in c["outcome"]:
            c["hello_max_concurrency"] = 1024
    # Decision of §9: exactly 4000-4004 among close codes, and 400/401/403/404 among HTTP
    # statuses, are permanent.
    for c in cases:
        o = c["outcome"]
        if "close" in o:
            assert c["retry"] == (not 4000 <= o["close"] <= 4004), c
        if "http_status" in o:
            assert c["retry"] == (o["http_status"] not in (400, 401, 403, 404)), c
    assert len({c["name"] for c in cases}) == len(cases)
    return cases


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------------------
# worker_id.json
# ---------------------------------------------------------------------------

def is_worker_id(s):
    b = s.encode("utf-8")
    return 1 <= len(b) <= 128 and all(c in WORKER_ID_CHARS for c in s)


def worker_id_cases():
    ids = ["a", "conformance:rust", "node:api", "svc.payments/v2@eu-1_a", "0", "-", "A" * 128,
           "A" * 129, "", "has space", "tab\there", "caf\u00e9", "x#y", "x+y", "x?y", "x%41",
           "x,y", "x\"y", "x\\y", "x*y", "\u0000", "a\nb", "~tilde", "UPPER_lower.09"]
    return [{"id": i, "valid": is_worker_id(i)} for i in ids]


# ---------------------------------------------------------------------------

def write_all(write):
    traces = stream_traces()
    check_traces(traces)
    write("streams.json", {
        "description": "vyx protocol v1 stream traces, worker side (§4, §5, §7). A scripted "
                       "gateway sends each `send` frame to a worker serving the conformance "
                       "routes (spec/conformance/README.md) and checks each `expect`. "
                       "Format: spec/vectors/README.md.",
        "traces": traces,
    })
    flow = flow_vectors()
    write("flow.json", dict({"description": "vyx protocol v1 flow-control accounting (§5): a "
                             "sender's window under send/WINDOW, a receiver's window under "
                             "DATA/consume, and the 4008 point. Format: "
                             "spec/vectors/README.md."}, **flow))
    write("heartbeat.json", {
        "description": "vyx protocol v1 heartbeat (§7): events seen by one side; dead_at_tick "
                       "is the tick (1-based) at which the peer is dead, or null. Format: "
                       "spec/vectors/README.md.",
        "misses": HEARTBEAT_MISSES,
        "cases": heartbeat_vectors(),
    })
    write("retry.json", {
        "description": "vyx protocol v1 reconnect classification (§9): how a worker's "
                       "connection attempt ended -> the close code the worker sends, and "
                       "whether it retries (backoff) or stops (start() fails naming the "
                       "cause), for a worker that did not ask to drain. Format: "
                       "spec/vectors/README.md.",
        "cases": retry_cases(),
    })
    write("worker_id.json", {
        "description": "vyx protocol v1 worker-id syntax (§2.2): 1..=128 bytes of "
                       "A-Z a-z 0-9 . _ : @ / -.",
        "cases": worker_id_cases(),
    })
    return len(traces)
