#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora from the normative vectors, so that the seeds are
never a second copy of them to keep in step: spec/vectors/*.json (frames, malformed frames,
HELLO/WELCOME cases, routing cases) and the repository's vyx.yaml examples.

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


def load(name):
    return json.loads((VECTORS / name).read_text())


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def frame_seeds():
    for f in ("frames.json", "malformed.json"):
        for v in load(f)["vectors"]:
            yield bytes.fromhex(v["hex"])


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


def routing_seeds():
    for case in load("routing.json")["cases"]:
        routes = "\n".join(f'{r["method"]} {r["path"]}' for r in case["routes"])
        requests = "\n".join(f'{q["method"]} {q["path"]}' for q in case["requests"])
        yield f"{routes}\n\n{requests}\n".encode()


def config_seeds():
    for path in sorted(ROOT.glob("examples/**/*.yaml")):
        yield path.read_bytes()
    # The yaml blocks of the README's gateway section.
    readme = (ROOT / "README.md").read_text()
    for block in re.findall(r"```yaml\n(.*?)```", readme, re.S):
        yield block.encode()


def config_dict():
    """The keys of vyx.yaml (the field names of file_config.rs's file shape) as a libFuzzer
    dictionary, so that the fuzzer writes keys the loader knows."""
    src = (ROOT / "gateway" / "src" / "file_config.rs").read_text()
    shape = src.split("// Loading and checking.")[0]
    keys = sorted(set(re.findall(r"^    ([a-z_]+): ", shape, re.M)) | {"local", "remote"})
    return "".join(f'"{k}"\n' for k in keys)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = pathlib.Path(sys.argv[1])
    targets = {
        "frame_decode": frame_seeds,
        "control_json": control_seeds,
        "route_pattern": routing_seeds,
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
