"""The dashboard on the embedded runtime: its JSON state API, ``sluice list``/``summary``
against it, and its pages in a real browser (headless Chromium): following links, a failed
task's traceback, the content refreshing live while tasks run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import sluice
import sluice.dashboard
from sluice.util import state
from tests.dashboard.conftest import ROOT, screenshot


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    sluice.init(num_cpus=2, include_dashboard=True, dashboard_port=0)
    dashboard = sluice.dashboard.current()
    assert dashboard is not None
    yield dashboard.url
    sluice.shutdown()


@sluice.remote
def square(x):
    return x * x


@sluice.remote
def explode(x):
    raise ValueError(f"no good: {x}")


@sluice.remote
def wait_for(path: str) -> str:
    while not os.path.exists(path):
        time.sleep(0.01)
    return path


@sluice.remote
class Greeter:
    def greet(self, name):
        return f"hello {name}"


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sluice.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_json_state_api_answers_as_rays(url: str) -> None:
    sluice.get([square.remote(i) for i in range(3)])
    with pytest.raises(ValueError):
        sluice.get(explode.remote(1))
    body = get_json(f"{url}/api/v0/tasks?limit=1000&filter_keys=name&filter_predicates=%3D"
                    f"&filter_values=explode")
    assert body["result"] is True
    (row,) = body["data"]["result"]["result"]
    assert row["state"] == "FAILED" and row["error_type"] == "ValueError"
    assert body["data"]["result"]["total"] >= 4
    trace = get_json(f"{url}/api/v0/timeline")
    assert {e["name"] for e in trace if e["ph"] == "X"} >= {"square", "explode"}
    summary = get_json(f"{url}/api/v0/tasks/summarize")["data"]["result"]["node_id_to_summary"]
    assert summary["cluster"]["summary"]["square"]["state_counts"]["FINISHED"] >= 3
    # what the API returns is what the local state API returns
    assert state.list_tasks(address=url, limit=1000) == state.list_tasks(limit=1000)
    with pytest.raises(urllib.error.HTTPError) as refused:
        get_json(f"{url}/api/v0/tasks?filter_keys=colour&filter_predicates=%3D&filter_values=x")
    assert refused.value.code == 400
    assert "'colour' is not a column tasks can be filtered on" in json.load(refused.value)["msg"]


def test_sluice_list_and_summary_read_the_dashboard(url: str) -> None:
    sluice.get([square.remote(i) for i in range(2)])
    with pytest.raises(ValueError):
        sluice.get(explode.remote(2))
    out = run_cli("list", "tasks", "--address", url, "--filter", "state=FAILED")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["TASK_ID", "NAME", "STATE"]
    assert all(" explode " in line and "FAILED" in line for line in lines[1:-1]) and lines[1:-1]
    rows = json.loads(run_cli("list", "tasks", "--address", url, "--filter", "name!=explode",
                              "--limit", "2", "--format", "json").stdout)
    assert len(rows) == 2 and all(r["name"] != "explode" for r in rows)
    summary = run_cli("summary", "tasks", "--address", url)
    assert summary.returncode == 0
    assert any(line.startswith("square") and "FINISHED:" in line
               for line in summary.stdout.splitlines())
    nodes = run_cli("list", "nodes", "--address", url)
    assert "local" in nodes.stdout and "ALIVE" in nodes.stdout
    bad = run_cli("list", "tasks", "--address", url, "--filter", "colour=red")
    assert bad.returncode == 2 and "'colour' is not a column" in bad.stderr
    malformed = run_cli("list", "tasks", "--address", url, "--filter", "state")
    assert malformed.returncode == 2 and "write KEY=VALUE" in malformed.stderr


def test_sluice_list_without_a_dashboard_says_so() -> None:
    import socket

    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    out = run_cli("list", "actors", "--address", f"127.0.0.1:{port}")
    assert out.returncode == 1
    assert f"no sluice dashboard answers at 127.0.0.1:{port}" in out.stderr


def test_a_token_guards_the_dashboard() -> None:
    from sluice.dashboard.server import Dashboard

    class Rows:
        def rows(self, kind: str) -> list:
            return [{"node_id": "n1", "node_ip": "10.0.0.1", "is_head_node": True,
                     "state": "ALIVE", "node_name": "n1"}] if kind == "nodes" else []

    guarded = Dashboard(Rows(), port=0, token="s3cret")
    guarded.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            get_json(f"{guarded.url}/api/v0/nodes")
        assert refused.value.code == 401 and "token" in json.load(refused.value)["msg"]
        request = urllib.request.Request(f"{guarded.url}/api/v0/nodes",
                                         headers={"Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.load(response)["data"]["result"]["result"][0]["node_id"] == "n1"
        wrong = urllib.request.Request(f"{guarded.url}/", headers={"Authorization": "Bearer no"})
        with pytest.raises(urllib.error.HTTPError) as page_refused:
            urllib.request.urlopen(wrong, timeout=30)
        assert page_refused.value.code == 401
    finally:
        guarded.stop()


# -- in a browser -------------------------------------------------------------------------

def wait(driver, condition, deadline_s: float = 60.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, deadline_s, poll_frequency=0.1).until(condition)


# The content refreshes in place every second, so elements found one moment may be gone
# the next: what is read is read in one script, and links are followed by their address.

def content(driver) -> str:
    return driver.execute_script("return document.getElementById('content').innerText;")


def table_text(driver) -> str:
    """The text of the page's tables (not its filter form, whose choices name states)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#content table'))"
        ".map(t => t.innerText).join('\\n');")


def links(driver, selector: str = "#content td a") -> list[tuple[str, str]]:
    """(text, address) of the links ``selector`` finds."""
    return [tuple(pair) for pair in driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".map(a => [a.innerText, a.href]);", selector)]


def test_the_pages_in_a_browser(url: str, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    sluice.get([square.remote(i) for i in range(4)])
    with pytest.raises(ValueError):
        sluice.get(explode.remote(42))
    greeter = Greeter.options(name="greeter").remote()
    assert sluice.get(greeter.greet.remote("you")) == "hello you"

    browser.get(url + "/")
    assert "Cluster" in browser.title
    text = content(browser)
    assert "nodes alive" in text and "local" in text and "ALIVE" in text
    screenshot(browser, "cluster")

    browser.find_element(By.LINK_TEXT, "Tasks").click()   # the navigation bar
    wait(browser, lambda d: d.current_url.endswith("/tasks"))
    wait(browser, lambda d: "explode" in content(d))
    failed = [row.split("\t") for row in table_text(browser).splitlines()]
    failed = [cells for cells in failed if "explode" in cells and "FAILED" in cells]
    assert failed
    screenshot(browser, "tasks")
    task_id = failed[0][0]
    browser.find_element(By.LINK_TEXT, task_id).click()   # the failed task's own page
    traceback = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "pre.traceback"))
    assert "ValueError: no good: 42" in traceback.text and "Traceback" in traceback.text
    assert "in explode" in traceback.text
    screenshot(browser, "task-failed")

    browser.find_element(By.LINK_TEXT, "Actors").click()
    wait(browser, lambda d: "greeter" in content(d))
    assert "Greeter" in content(browser) and "ALIVE" in content(browser)
    browser.find_element(By.LINK_TEXT, "Objects").click()
    wait(browser, lambda d: "object(s)" in content(d))
    browser.find_element(By.LINK_TEXT, "Workers").click()
    wait(browser, lambda d: "Greeter" in content(d))
    browser.find_element(By.LINK_TEXT, "Jobs").click()
    wait(browser, lambda d: "DRIVER" in content(d) and "RUNNING" in content(d))

    # Live: the tasks page shows a task start and end without being reloaded.
    browser.get(url + "/tasks?name=wait_for")
    browser.execute_script("window.__not_reloaded = true;")
    go = tmp_path / "go"
    ref = wait_for.remote(str(go))
    wait(browser, lambda d: "RUNNING" in table_text(d))
    go.touch()
    sluice.get(ref)
    wait(browser, lambda d: "FINISHED" in table_text(d) and "RUNNING" not in table_text(d))
    assert browser.execute_script("return window.__not_reloaded === true;")
    sluice.kill(greeter)


@sluice.remote
def load(n):
    import numpy as np

    return np.arange(n)


@sluice.remote
def double(x):
    return x * 2


@sluice.remote
def gate(x, path: str):
    while not os.path.exists(path):
        time.sleep(0.01)
    return x


@sluice.remote
def combine(a, b):
    return float(a.sum() + b.sum())


@sluice.remote
def refuse(x):
    raise RuntimeError("stage refused")


def svg_text(driver, selector: str = ".plan-svg text") -> str:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".map(t => t.textContent).join(' ');", selector)


def test_the_plans_page_draws_a_running_plan_live_and_what_each_pass_did(
        url: str, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    go = tmp_path / "go"
    with sluice.InputNode() as inp:
        left = double.bind(load.bind(inp))
        right = double.bind(load.bind(inp))        # CSE makes this the same as left
        dag = combine.bind(gate.bind(left, str(go)), right)
    ref = dag.execute(100_000)

    browser.get(url + "/")
    browser.find_element(By.LINK_TEXT, "Plans").click()
    found = wait(browser, lambda d: [href for text, href in links(d) if text.isdigit()])
    rows = table_text(browser)
    assert "combine" in rows and "cse, fusion" in rows
    browser.get(found[0])
    wait(browser, lambda d: "running:" in svg_text(d))   # the gated stage runs now
    text = svg_text(browser)
    assert "done: 1 object(s), 1 task(s)" in text      # load+double, fused, finished
    assert "pending: 1 object(s), 1 task(s)" in text   # combine waits for the gate
    screenshot(browser, "plan-running")
    go.touch()
    assert sluice.get(ref) == 2 * 2 * sum(range(100_000))
    wait(browser, lambda d: "running:" not in svg_text(d) and "pending:" not in svg_text(d))
    assert svg_text(browser).count("done:") == 3
    stages = table_text(browser)
    assert "load+double" in stages and "DONE" in stages and "RUNNING" not in stages
    passes = browser.execute_script(
        "return Array.from(document.querySelectorAll('#content h3')).map(h => h.innerText);")
    assert passes == ["cse", "fusion"]
    diffs = svg_text(browser, ".pass-diff svg text")
    assert "pass cse: 2 op(s) removed" in diffs
    assert "pass fusion: 2 op(s) regrouped into stages" in diffs
    screenshot(browser, "plan")

    with sluice.InputNode() as inp:
        failing = double.bind(refuse.bind(inp))
    with pytest.raises(RuntimeError, match="stage refused"):
        sluice.get(failing.execute(1))
    browser.get(url + "/plans")
    newest = wait(browser, lambda d: [href for text, href in links(d) if text.isdigit()])
    browser.get(newest[0])   # the most recently run is listed first
    wait(browser, lambda d: "failed:" in svg_text(d))
    assert "1 failed" in svg_text(browser) and "FAILED" in table_text(browser)


@sluice.remote
def announce(text: str) -> int:
    print(text)
    return os.getpid()


def test_the_logs_page_and_sluice_logs_show_a_workers_output(url: str, browser) -> None:
    from selenium.webdriver.common.by import By

    pid = sluice.get(announce.remote("a line for the logs page"))
    browser.get(url + "/")
    browser.find_element(By.LINK_TEXT, "Logs").click()
    wanted = f"-{pid}.out"
    found = wait(browser, lambda d: [href for text, href in links(d) if text.endswith(wanted)])
    browser.get(found[0])
    wait(browser, lambda d: "a line for the logs page" in content(d))
    screenshot(browser, "log")
    out = run_cli("logs", "--address", url, "--pid", str(pid))
    assert out.returncode == 0 and "a line for the logs page" in out.stdout.splitlines()
    listing = run_cli("logs", "--address", url)
    assert "worker-" in listing.stdout and wanted.lstrip("-") in listing.stdout
    bad = run_cli("logs", "--address", url, "../../etc/passwd")
    assert bad.returncode == 2 and "is not a worker log file" in bad.stderr
