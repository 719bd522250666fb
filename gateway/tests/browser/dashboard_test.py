"""The dashboard in a real browser (issue 20, item 4): headless Chromium driven by Selenium.

Starts the gateway with an admin token and a remote worker id, then checks that /_vyx/ui
refuses without the token (HTTP and in the browser), signs in through its form, loads with
no console error (its CSP allows only its own inline script and style), shows the worker's
two replicas as they connect, and that a route's request counter rises under load. Writes a
screenshot and prints its path. Run by scripts/test-browser:

    dashboard_test.py --vyx PATH/vyx --worker PATH/hello --out DIR
"""

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 20  # seconds, the bound on any one wait
WORKER_ID = "go:hello"
ROUTE = "GET /go/hello/{name}"
LOAD = 200  # requests


def start_gateway(vyx, config_dir, env, log):
    config = os.path.join(config_dir, "vyx.yaml")
    with open(config, "w") as f:
        f.write(
            "listen: 127.0.0.1:0\n"
            "admin: {token_env: VYX_TEST_ADMIN_TOKEN}\n"
            "workers:\n"
            f"  - id: {WORKER_ID}\n"
            "    mode: remote\n"
            "    token_env: VYX_TEST_WORKER_TOKEN\n"
            '    routes: ["/go/hello/{name}", /go/echo]\n'
        )
    gw = subprocess.Popen(
        [vyx, "--config", config],
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
        text=True,
    )
    # The first line is `listening http://ADDR`.
    timer = threading.Timer(WAIT, gw.kill)
    timer.start()
    line = gw.stdout.readline().strip()
    timer.cancel()
    assert line.startswith("listening http://"), f"gateway said {line!r}"
    return gw, line.removeprefix("listening ")


def status_of(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def browser(profile_dir):
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
        f"--user-data-dir={profile_dir}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver from Debian, named: Selenium Manager downloads nothing.
    return webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))


def console_errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def wait_for(driver, what, check):
    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(check)
    except TimeoutException:
        page = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(f"{what}: not within {WAIT}s; the page shows:\n{page}") from None


def text_of(driver, selector):
    """An element's text, or None; read in the page in one go, as the page redraws its
    tables on every event (an element found first may be gone when read)."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", selector
    )


def instances_of(driver):
    """The worker processes the workers table lists for WORKER_ID (its instance column)."""
    return set(
        driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map((row) => row.cells[1].textContent);",
            f'#workers tr[data-worker="{WORKER_ID}"]',
        )
    )


def route_cell(driver, n):
    """The text of cell `n` of ROUTE's row, read in one go (the rows are redrawn per event)."""
    return driver.execute_script(
        "const row = document.querySelector(arguments[0]);"
        "return row ? row.cells[arguments[1]].textContent : null;",
        f'#routes tr[data-route="{ROUTE}"]',
        n,
    )


def requests_of(driver):
    text = route_cell(driver, 3)
    return None if text is None else int(text)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    args = argparse.ArgumentParser()
    args.add_argument("--vyx", required=True)
    args.add_argument("--worker", required=True)
    args.add_argument("--out", required=True)
    a = args.parse_args()
    os.makedirs(a.out, exist_ok=True)
    admin, worker_token = secrets.token_hex(16), secrets.token_hex(16)
    env = dict(os.environ, VYX_TEST_ADMIN_TOKEN=admin, VYX_TEST_WORKER_TOKEN=worker_token)
    procs, driver = [], None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            log_path = os.path.join(a.out, "gateway.log")
            log = open(log_path, "w")
            print(f"dashboard browser test: the gateway logs to {log_path}")
            gw, base = start_gateway(a.vyx, tmp, env, log)
            procs.append(gw)
            ui = base + "/_vyx/ui"

            # Refused without the token.
            status, body = status_of(ui)
            assert status == 401 and "/_vyx/ui/login" in body, (status, body)
            assert status_of(ui + "/events")[0] == 401
            assert status_of(base + "/_vyx/workers")[0] == 401

            driver = browser(os.path.join(tmp, "profile"))
            driver.get(ui)
            assert driver.find_elements(By.ID, "login"), "no sign-in form"
            assert not driver.find_elements(By.ID, "workers"), "the dashboard without the token"
            driver.find_element(By.ID, "token").send_keys("wrong")
            driver.find_element(By.ID, "sign-in").click()
            wait_for(driver, "the refusal", lambda d: "Invalid admin token" in (text_of(d, "#message") or ""))
            # The sign-in pages answer 401/403, which the console reports: not the dashboard's.
            driver.get_log("browser")

            driver.find_element(By.ID, "token").send_keys(admin)
            driver.find_element(By.ID, "sign-in").click()
            wait_for(driver, "the live dashboard", lambda d: text_of(d, "#status") == "live")
            assert "no worker connected" in text_of(driver, "#workers")

            # A worker connects, two replicas of it.
            worker_env = dict(
                env,
                VYX_CONNECT="ws://" + base.removeprefix("http://"),
                VYX_WORKER_ID=WORKER_ID,
                VYX_TOKEN=worker_token,
            )
            for _ in range(2):
                procs.append(
                    subprocess.Popen([a.worker], env=worker_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )
            # Each holds a connection per gateway shard (WELCOME's `connections`): a row each,
            # the process named in the instance column.
            wait_for(driver, "two replicas of the worker", lambda d: len(instances_of(d)) == 2)
            wait_for(driver, "the route", lambda d: requests_of(d) is not None)
            before = requests_of(driver)

            # Under load, its counter rises.
            for i in range(LOAD):
                status, _ = status_of(f"{base}/go/hello/n{i}")
                assert status == 200, status
            wait_for(driver, "the counter", lambda d: requests_of(d) >= before + LOAD)
            # Rates and percentiles follow within an event or two.
            wait_for(
                driver,
                "a request rate",
                lambda d: route_cell(d, 5) not in (None, "–"),
            )

            shot = os.path.join(a.out, "dashboard.png")
            driver.save_screenshot(shot)
            errors = console_errors(driver)
            assert not errors, f"console errors: {errors}"
            print(f"dashboard browser test: ok; screenshot {shot}")
        finally:
            if driver is not None:
                driver.quit()
            for p in reversed(procs):
                stop(p)


if __name__ == "__main__":
    sys.exit(main())
