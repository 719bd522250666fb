"""Lifecycle in child processes, each of which must exit within a bound: SIGTERM and Ctrl-C
drain and return with no thread left, asyncio.run exits cleanly whether the worker is
stopped or its task cancelled, and a fork after import does not hang."""

from __future__ import annotations

import signal
import threading

import httpx
import pytest

from conftest import OS_THREADS, WAIT, Lines, python_child

# Prints its states and, after start() returns, how many threads the process has left
# (Python's and the OS's count, /proc/self/task).
SIGNAL_CHILD = OS_THREADS + """
import asyncio, os, threading, vyx
w = vyx.Worker(drain_timeout=10)

@w.get("/slow")
async def slow(req):
    print("begin", flush=True)
    await asyncio.sleep(1.0)
    return "done"

@w.on_state
def state(s):
    print("state", s.kind, flush=True)

w.start()
print("threads", threading.active_count(), os_threads(), flush=True)
"""


def child_env(gateway, name):
    return {"VYX_CONNECT": gateway.ws, "VYX_WORKER_ID": name}


def finish(child, out: Lines, err: Lines) -> None:
    try:
        code = child.wait(WAIT)
    except Exception:
        child.kill()
        child.wait()
        raise AssertionError(f"child did not exit within {WAIT}s:\n{out.text()}\n{err.text()}")
    assert code == 0, f"exit {code}:\n{out.text()}\n{err.text()}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_in_flight_requests_and_leaves_no_thread(gateway, sig):
    child = python_child(SIGNAL_CHILD, child_env(gateway, "py:signal"))
    out, err = Lines(child.stdout), Lines(child.stderr)
    try:
        out.wait_for(lambda l: l == "state connected", "connected")
        result = {}

        def call():
            with httpx.Client(timeout=WAIT) as c:
                r = c.get(gateway.url("/slow"))
                result["r"] = (r.status_code, r.text)

        t = threading.Thread(target=call)
        t.start()
        out.wait_for(lambda l: l == "begin", "the request in flight")
        child.send_signal(sig)
        t.join(WAIT)
        assert result.get("r") == (200, "done"), err.text()
        finish(child, out, err)
        lines = out.text().splitlines()
        assert "state draining" in lines and "state stopped" in lines
        assert lines[-1] == "threads 1 1", out.text()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


ASYNCIO_CHILD = OS_THREADS + """
import asyncio, os, threading, vyx

async def main(mode):
    w = vyx.Worker()
    connected = asyncio.get_running_loop().create_future()

    @w.get("/x")
    async def x(req):
        return "x"

    @w.on_state
    def state(s):
        if s.kind == "connected" and not connected.done():
            connected.set_result(None)

    task = asyncio.create_task(w.serve())
    await asyncio.wait_for(connected, 20)
    if mode == "stop":
        await w.stop()
        await task
    else:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

for mode in ("stop", "cancel"):
    asyncio.run(main(mode))
    print(mode, "clean", threading.active_count(), os_threads(), flush=True)
"""


def test_asyncio_run_exits_cleanly_after_stop_and_after_cancel(gateway):
    child = python_child(ASYNCIO_CHILD, child_env(gateway, "py:asyncio"))
    out, err = Lines(child.stdout), Lines(child.stderr)
    try:
        finish(child, out, err)
    finally:
        if child.poll() is None:
            child.kill()
    assert out.text().splitlines() == ["stop clean 1 1", "cancel clean 1 1"], err.text()
    for bad in ("Exception ignored", "Event loop is closed", "was destroyed", "Traceback"):
        assert bad not in err.text(), err.text()


FORK_CHILD = """
import asyncio, os, vyx

pid = os.fork()
if pid == 0:
    w = vyx.Worker()

    @w.get("/forked")
    async def forked(req):
        return "from the fork"

    @w.on_state
    def state(s):
        print("state", s.kind, flush=True)
        if s.kind == "connected":
            asyncio.ensure_future(w.stop())

    asyncio.run(w.serve())
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("fork exit", os.waitstatus_to_exitcode(status), flush=True)
"""


def test_a_fork_after_import_serves_and_exits(gateway):
    child = python_child(FORK_CHILD, child_env(gateway, "py:fork"))
    out, err = Lines(child.stdout), Lines(child.stderr)
    try:
        finish(child, out, err)
    finally:
        if child.poll() is None:
            child.kill()
    lines = out.text().splitlines()
    assert "state connected" in lines and "state stopped" in lines, err.text()
    assert lines[-1] == "fork exit 0"
