"""Every Python example in the READMEs (the top one and sdk-python's) runs.

A ```python block is either a fragment, marked ```python fragment, which must compile, or a
whole program preceded by ``<!-- test: GET PATH STATUS BODY -->``: it runs against the real
gateway (its ``ws://127.0.0.1:9000`` replaced by the test gateway's address), registers, answers
that request with that status and JSON body, and exits 0 on SIGTERM. A block that is neither
fails, so a new example cannot go untested by accident.
"""

from __future__ import annotations

import json
import re
import signal

import httpx
import pytest

from conftest import REPO, WAIT, Lines, python_child

READMES = [REPO / "README.md", REPO / "sdk-python" / "README.md"]
BLOCK = re.compile(
    r"(?:^<!-- test: (?P<test>.*?) -->\n)?^```python(?P<info>(?:[ \t][^\n]*)?)\n(?P<code>.*?)^```$",
    re.M | re.S,
)
# The core's "registered" log line, on stderr: the gateway has admitted the worker's routes.
LOGGING = "import logging; logging.basicConfig(level=logging.INFO)\n"


def blocks():
    for readme in READMES:
        text = readme.read_text()
        for m in BLOCK.finditer(text):
            line = text.count("\n", 0, m.start("code"))
            yield pytest.param(m["info"].strip(), m["test"], m["code"], id=f"{readme.relative_to(REPO)}:{line}")


def test_readmes_have_python_examples():
    assert len(list(blocks())) >= 3


@pytest.mark.parametrize("info,check,code", list(blocks()))
def test_readme_example(info, check, code, gateway):
    if info == "fragment":
        compile(code, "<readme>", "exec")
        return
    assert info == "" and check, "a whole example needs <!-- test: ... --> before it, or mark it ```python fragment"
    method, path, status, body = check.split(" ", 3)
    child = python_child(LOGGING + code.replace("ws://127.0.0.1:9000", gateway.ws))
    err = Lines(child.stderr)
    try:
        err.wait_for(lambda l: "registered" in l, "registered", WAIT)
        r = httpx.request(method, gateway.url(path), timeout=WAIT)
        assert (r.status_code, r.json()) == (int(status), json.loads(body))
        child.send_signal(signal.SIGTERM)
        assert child.wait(WAIT) == 0, err.text()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
