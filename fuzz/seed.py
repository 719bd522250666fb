#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora from the normative vectors, so that the seeds are
never a second copy of them to keep in step: spec/vectors/*.json (frames, malformed frames,
HELLO/WELCOME cases, routing cases) and the repository's vyx.yaml examples; and, built here,
deep and wide inputs for each target (nesting at and past every depth limit, thousands of
headers, segments or routes), where recursion and unbounded buffers would show.

usage: fuzz/seed.py OUT_DIR   (writes OUT_DIR/<target>/<name>, one file per seed, and
                               OUT_DIR/config_yaml.dict, the loader's keys)
"""

import hashlib
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
VECTORS = ROOT / "spec" / "vectors"
CONTROL_TYPES = {0x10, 0x11, 0x12, 0x13, 0x14}


def generator():
    """spec/vectors/generate.py, for its frame encoder."""
    sys.path.insert(0, str(VECTORS))
    import generate  # noqa: E402 (a sibling directory's module)
    return generate


def load(name):
    return json.loads((VECTORS / name).read_text())


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def frame_seeds():
    for f in ("frames.json", "malformed.json"):
        for v in load(f)["vectors"]:
            yield bytes.fromhex(v["hex"])
    # Wide: a REQUEST and a RESPONSE with 2,000 headers, a REQUEST with 500 params.
    gen = generator()
    many = [("x-h%d" % i, b"v") for i in range(2000)]
    yield gen.encode(gen.request(1, True, 0, "GET", "/", [], many))
    yield gen.encode(gen.response(1, True, 200, many))
    yield gen.encode(gen.request(1, True, 0, "GET", "/" + "/a" * 500,
                                 [("p%d" % i, b"a") for i in range(500)], []))


def control_seeds():
    for raw in frame_seeds():
        if len(raw) > 6 and raw[0] in CONTROL_TYPES:
            yield raw[6:]
    hs = load("handshake.json")
    for case in hs["cases"]:
        yield compact(case["hello"])
        yield compact({"routes": case["hello"].get("routes", [])})
    for case in hs.get("welcome_cases", []):
        yield compact(case["welcome"])
    # Deep: arrays and objects nested around the 127-level limit (§3.8) and far past it,
    # in an unknown key of a valid HELLO.
    hello = hs["cases"][0]["hello"]
    for depth in (126, 127, 128, 5000):
        nested = "[" * depth + "]" * depth
        yield compact(hello)[:-1] + b',"x":' + nested.encode() + b"}"
        obj = '{"a":' * depth + "1" + "}" * depth
        yield compact(hello)[:-1] + b',"y":' + obj.encode() + b"}"
    # Deep and long patterns, wide route sets and labels, at and past the bounds.
    for path in ("/a" * 128, "/a" * 129, "/a" * 5000, "/" * 129, "/" + "x" * 4096):
        yield compact(dict(hello, routes=[{"id": 0, "method": "GET", "path": path}]))
        yield compact({"routes": [{"id": 0, "method": "GET", "path": path}]})
    yield compact(dict(hello, routes=[{"id": i, "method": "GET", "path": "/r/%d" % i}
                                      for i in range(1025)]))
    yield compact(dict(hello, labels={"k%d" % i: "v" for i in range(65)},
                       instance="i" * 257))


def routing_seeds():
    for case in load("routing.json")["cases"]:
        routes = "\n".join(f'{r["method"]} {r["path"]}' for r in case["routes"])
        requests = "\n".join(f'{q["method"]} {q["path"]}' for q in case["requests"])
        yield f"{routes}\n\n{requests}\n".encode()
    # Long and deep patterns at and past the bounds (§2.5), paths deeper than any route.
    params = "".join("/{p%d}" % i for i in range(127))
    routes = ["GET " + "/a" * 128, "GET " + "/a" * 129, "GET " + "/" * 129,
              "GET /" + "x" * 4095, "GET /" + "x" * 4096, "GET " + params + "/{*rest}",
              "HEAD " + params + "/{last}", "* /{*all}"]
    requests = ["GET " + "/a" * 128, "GET " + "/a" * 2000, "HEAD " + "/b" * 128,
                "GET " + "/b" * 2000, "GET /" + "x" * 4095, "POST /"]
    yield ("\n".join(routes) + "\n\n" + "\n".join(requests) + "\n").encode()


def route_table_seeds():
    """Operation sequences for route_table (the encoding its header describes): deep chains
    at and past the 128-segment bound, wide fan-outs, conflicts, removals that prune, clones,
    and lookups thousands of segments deep that backtrack to a catch-all."""
    INSERT, REMOVE, LOOKUP, CLONE = 0, 1, 2, 3
    GET, POST, HEAD, ANY = 0, 1, 2, 3
    # Pattern pieces: a b "" {p} {*rest} café a%2Fb "{"; path pieces: a b "" %61 caf%C3%A9
    # a%252Fb a%2Fb x.
    LIT_A, LIT_B, EMPTY, PARAM, CATCH = 0, 1, 2, 3, 4
    P_A, P_B, P_X, P_PCT_A = 0, 1, 7, 3

    def op(code, method, *segments):
        return bytes([code, method, len(segments), *segments])

    def chain(piece, n, last=None):
        """Codes for n segments of `piece` (the last one `last`, if given): the piece, then
        repeat codes (each adds 16 × k, k ≤ 16), then single pieces for the remainder."""
        body = n - 1 if last is None else n - 2
        q, r = divmod(body, 16)
        codes = [piece]
        while q:
            k = min(q, 16)
            codes.append(0xEF + k)
            q -= k
        codes += [piece] * r
        if last is not None:
            codes.append(last)
        return codes

    deep_a = op(INSERT, GET, *chain(LIT_A, 128))
    too_deep = op(INSERT, GET, *chain(LIT_A, 129))
    very_deep = op(INSERT, POST, *chain(LIT_A, 769))
    deep_params = op(INSERT, GET, *chain(PARAM, 128, last=CATCH))
    deep_params_end = op(INSERT, HEAD, *chain(PARAM, 128))
    deep_path_a = op(LOOKUP, GET, *chain(P_A, 4000))
    deep_path_b = op(LOOKUP, GET, *chain(P_B, 4000))
    path_a_128 = op(LOOKUP, GET, *chain(P_A, 128))
    path_b_128 = op(LOOKUP, HEAD, *chain(P_B, 128))
    root_catch = op(INSERT, ANY, CATCH)
    yield deep_a + deep_path_a + path_a_128 + too_deep + path_a_128
    yield deep_a + deep_params + deep_params_end + root_catch + deep_path_a + deep_path_b \
        + path_b_128 + op(CLONE, 0) + deep_path_a + op(REMOVE, GET, *chain(LIT_A, 128)) \
        + deep_path_a + path_a_128 + path_b_128
    yield very_deep + too_deep + deep_params + deep_path_b \
        + op(REMOVE, GET, *chain(PARAM, 128, last=CATCH)) + deep_path_b
    # Wide: one level of many literals and parameters under methods, HEAD and `*`.
    wide = b"".join(op(INSERT, m, seg, s2) for m in (GET, POST, HEAD, ANY)
                    for seg in (LIT_A, LIT_B, EMPTY, PARAM, 5, 6) for s2 in (LIT_A, PARAM, CATCH))
    looks = b"".join(op(LOOKUP, m, a, b) for m in (GET, HEAD, POST)
                     for a in (P_A, P_PCT_A, 2, 4, 5, P_X) for b in (P_A, P_X, 2))
    yield wide + looks
    yield wide + op(CLONE, 0) + b"".join(op(REMOVE, m, seg, PARAM) for m in (GET, ANY)
                                         for seg in (LIT_A, PARAM)) + looks
    # Conflicts: the same shape under other names, and the same path twice.
    yield op(INSERT, GET, LIT_A, PARAM) + op(INSERT, GET, LIT_A, PARAM) \
        + op(INSERT, ANY, LIT_A, PARAM) + op(INSERT, GET, LIT_A, CATCH) \
        + op(LOOKUP, GET, P_A, P_B) + op(LOOKUP, POST, P_A, P_B) + op(LOOKUP, HEAD, P_A, 2)


def config_seeds():
    for path in sorted(ROOT.glob("examples/**/*.yaml")):
        yield path.read_bytes()
    # The yaml blocks of the README's gateway section.
    readme = (ROOT / "README.md").read_text()
    for block in re.findall(r"```yaml\n(.*?)```", readme, re.S):
        yield block.encode()
    # Deep: flow and block nesting (a YAML parser that recurses per level would overflow).
    for depth in (64, 200, 5000):
        yield ("workers: " + "[" * depth + "]" * depth + "\n").encode()
        yield ("workers: " + "{a: " * depth + "1" + "}" * depth + "\n").encode()
    for depth in (64, 200):
        yield ("".join(" " * i + "k%d:\n" % i for i in range(depth)) + " " * depth
               + "v\n").encode()
    # Wide: many workers, each with many route prefixes, one of them deep.
    workers = "".join("  - id: w%d\n    command: ./w\n    routes: [%s]\n"
                      % (i, ", ".join("/p%d" % j for j in range(20))) for i in range(50))
    yield ("workers:\n" + workers + "  - id: deep\n    command: ./w\n    routes: [%s]\n"
           % ("/a" * 2000)).encode()


def config_dict():
    """The keys of vyx.yaml (the field names of file_config/schema.rs, the file's shape) as a
    libFuzzer dictionary, so that the fuzzer writes keys the loader knows."""
    shape = (ROOT / "gateway" / "src" / "file_config" / "schema.rs").read_text()
    keys = sorted(set(re.findall(r"^    pub\(super\) ([a-z0-9_]+): ", shape, re.M)) | {"local", "remote"})
    return "".join(f'"{k}"\n' for k in keys)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = pathlib.Path(sys.argv[1])
    targets = {
        "frame_decode": frame_seeds,
        "control_json": control_seeds,
        "route_pattern": routing_seeds,
        "route_table": route_table_seeds,
        "config_yaml": config_seeds,
    }
    for target, seeds in targets.items():
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        n = 0
        for seed in seeds():
            (d / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
            n += 1
        print(f"{target}: {n} seeds in {d}")
    (out / "config_yaml.dict").write_text(config_dict())


if __name__ == "__main__":
    main()
