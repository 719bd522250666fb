"""Test harness: the real ``vyx`` gateway binary on an ephemeral loopback port, a worker
served from a thread of this process (or from a child process), and an HTTP client.

The gateway binary is ``$VYX_GATEWAY``, else ``$CARGO_TARGET_DIR/release/vyx``, else
``target/release/vyx`` (``scripts/test`` builds it).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator, List, Optional

import httpx
import pytest

import vyx

#: Upper bound for any single wait: generous for a busy 2-core machine, finite so that a
#: bug fails instead of hanging.
WAIT = 20.0

REPO = Path(__file__).resolve().parents[2]

#: For child scripts that report the threads left after a worker stopped: tokio's shutdown
#: returns once its threads have finished their work, a moment before the last one has
#: exited, so ``os_threads()`` waits (bounded) for /proc to show them gone.
OS_THREADS = """
import os as _os, time as _time

def os_threads():
    deadline = _time.monotonic() + 10
    while len(_os.listdir("/proc/self/task")) > 1 and _time.monotonic() < deadline:
        _time.sleep(0.01)
    return len(_os.listdir("/proc/self/task"))
"""


def gateway_binary() -> str:
    if os.environ.get("VYX_GATEWAY"):
        return os.environ["VYX_GATEWAY"]
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    if not target.is_absolute():
        target = REPO / target
    path = target / "release" / "vyx"
    if not path.exists():
        raise RuntimeError(
            f"no gateway binary at {path}: cargo build --release -p vyx-gateway "
            "(or set VYX_GATEWAY)"
        )
    return str(path)


class Lines:
    """A child's output lines, read by a thread, waited on with a bound."""

    def __init__(self, stream) -> None:
        self.lines: List[str] = []
        self._cond = threading.Condition()
        self._ended = False
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def wait_for(self, pred, what: str, timeout: float = WAIT) -> str:
        with self._cond:
            self._cond.wait_for(
                lambda: any(pred(l) for l in self.lines) or self._ended, timeout
            )
            for line in self.lines:
                if pred(line):
                    return line
        raise AssertionError(f"no {what} within {timeout}s (ended={self._ended}): {self.text()}")

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)


class Gateway:
    """``vyx --listen 127.0.0.1:0``; its address from the ``listening http://ADDR`` line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            # Two shards whatever the machine: a worker holds two connections (WELCOME's `connections`).
            [gateway_binary(), "--listen", "127.0.0.1:0", "--threads", "2", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)
        line = self.out.wait_for(lambda l: l.startswith("listening http://"), "listening line")
        self.addr = line[len("listening http://") :].strip()
        self.base = f"http://{self.addr}"
        self.ws = f"ws://{self.addr}"

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    gw = Gateway()
    try:
        yield gw
    finally:
        gw.close()


class Served:
    """A worker served by ``await worker.serve()`` on its own loop in a thread, registered
    before the test goes on, drained and joined at the end."""

    def __init__(self, worker: vyx.Worker) -> None:
        self.worker = worker
        self.states: List[vyx.State] = []
        self._connected = threading.Event()
        self.error: Optional[BaseException] = None
        self.loop: Optional[asyncio.AbstractEventLoop] = None

        @worker.on_state
        def record(state: vyx.State) -> None:
            self.states.append(state)
            if state.kind == "connected":
                self._connected.set()

        self.thread = threading.Thread(target=self._run, name="test-worker-loop")
        self.thread.start()
        if not self._connected.wait(WAIT) or self.error is not None:
            raise AssertionError(f"worker did not register within {WAIT}s: {self.states} {self.error!r}")

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            await self.worker.serve()

        try:
            asyncio.run(main())
        except BaseException as e:  # reported by stop()
            self.error = e
            self._connected.set()

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop is not None and self.thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(self.worker.stop(timeout), self.loop)
            fut.result(WAIT)
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the worker's loop did not end"
        if self.error is not None:
            raise self.error


@pytest.fixture
def serve(gateway: Gateway):
    """``serve(worker)`` runs the worker against the test's gateway until the test ends."""
    served: List[Served] = []

    def start(worker: vyx.Worker) -> Served:
        s = Served(worker)
        served.append(s)
        return s

    yield start
    for s in served:
        s.stop()


@pytest.fixture
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base, timeout=WAIT) as c:
        yield c


def python_child(code: str, env: Optional[dict] = None) -> subprocess.Popen:
    """A child Python running ``code`` (this interpreter, this vyx), output piped."""
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
