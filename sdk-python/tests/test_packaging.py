"""Packaging: the wheel ``maturin build --release`` makes installs with pip into a fresh
virtual environment and runs a worker there; the sdist builds into a wheel too."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx

from conftest import REPO, WAIT, Lines

SDK = REPO / "sdk-python"
BIN = Path(sys.executable).parent

HELLO = """
import vyx, sys
print("vyx from", vyx.__file__, flush=True)
w = vyx.Worker()

@w.get("/wheel/{name}")
async def hello(req):
    return {"hello": req.params["name"], "sdk": vyx.SDK}

@w.on_state
def state(s):
    print("state", s.kind, flush=True)

w.start()
"""


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout}\n{r.stderr}"
    return r


def fresh_venv(path: Path) -> Path:
    run([sys.executable, "-m", "venv", str(path)])
    return path / "bin" / "python"


def test_the_wheel_installs_into_a_fresh_venv_and_serves(gateway, tmp_path):
    out = tmp_path / "dist"
    run([str(BIN / "maturin"), "build", "--release", "--locked", "--out", str(out)], cwd=SDK)
    wheels = list(out.glob("vyx-*.whl"))
    assert len(wheels) == 1, wheels
    assert "-cp39-abi3-" in wheels[0].name  # one wheel for every CPython >= 3.9
    python = fresh_venv(tmp_path / "venv")
    run([str(python), "-m", "pip", "install", "--no-index", "--quiet", str(wheels[0])])
    script = tmp_path / "hello.py"
    script.write_text(HELLO)
    # Run from an empty directory, with no source tree on the path: only the wheel.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(VYX_CONNECT=gateway.ws, VYX_WORKER_ID="py:wheel")
    child = subprocess.Popen([str(python), str(script)], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_lines, err_lines = Lines(child.stdout), Lines(child.stderr)
    try:
        where = out_lines.wait_for(lambda l: l.startswith("vyx from"), "import line")
        assert str(tmp_path / "venv") in where, where
        out_lines.wait_for(lambda l: l == "state connected", "connected")
        r = httpx.get(gateway.url("/wheel/abi3"), timeout=WAIT)
        assert r.json() == {"hello": "abi3", "sdk": "vyx-python/0.1.0"}
        child.terminate()
        assert child.wait(WAIT) == 0, err_lines.text()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_the_sdist_carries_the_core_and_builds(tmp_path):
    out = tmp_path / "sdist"
    run([str(BIN / "maturin"), "sdist", "--out", str(out)], cwd=SDK)
    sdists = list(out.glob("vyx-*.tar.gz"))
    assert len(sdists) == 1, sdists
    with tarfile.open(sdists[0]) as tar:
        names = tar.getnames()
    for needed in ("pyproject.toml", "core/src/session/mod.rs", "sdk-python/src/lib.rs",
                   "python/vyx/__init__.py", "python/vyx/py.typed", "python/vyx/_core.pyi"):
        assert any(n.endswith(needed) for n in names), (needed, names[:40])
    # Built as pip would, with this venv's maturin (no download); the cargo target dir is
    # shared, so only the vyx crates compile again.
    wheels = tmp_path / "wheels"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    run([str(BIN / "python"), "-m", "pip", "wheel", "--no-build-isolation", "--no-deps",
         "--no-cache-dir", "--quiet", "-w", str(wheels), str(sdists[0])], env=env)
    assert len(list(wheels.glob("vyx-*-cp39-abi3-*.whl"))) == 1
