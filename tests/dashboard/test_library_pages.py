"""Pages libraries add to the dashboard (without touching its core): sluice.workflow's runs,
steps and schedules, and sluice.data's executions with each stage's progress, live."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import sluice
import sluice.dashboard
import sluice.data as sd
from sluice import workflow
from tests.dashboard.conftest import screenshot
from tests.dashboard.test_dashboard import content, links, table_text, wait


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    sluice.init(num_cpus=2, include_dashboard=True, dashboard_port=0)
    dashboard = sluice.dashboard.current()
    assert dashboard is not None
    yield dashboard.url
    sluice.shutdown()


@sluice.remote
def extract(x):
    return x + 1


@sluice.remote
def load(x):
    if x > 100:
        raise ValueError(f"cannot load {x}")
    return x * 2


def nightly():
    return load.bind(extract.bind(1))


def test_the_workflows_page_shows_runs_steps_and_schedules(url: str, browser,
                                                           tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    store = str(tmp_path / "wf")
    assert workflow.run(load.bind(extract.bind(3)), workflow_id="etl-ok", storage=store) == 8
    with pytest.raises(Exception, match="cannot load 501"):
        workflow.run(load.bind(extract.bind(500)), workflow_id="etl-bad", storage=store)
    workflow.schedule("nightly-etl", "tests.dashboard.test_library_pages:nightly",
                      "0 2 * * *", storage=store)
    browser.get(url + "/")
    browser.find_element(By.LINK_TEXT, "Workflows").click()
    wait(browser, lambda d: "etl-bad" in table_text(d))
    rows = [r.split("\t") for r in table_text(browser).splitlines()]
    statuses = {cells[0].split("/")[-1]: cells[1] for cells in rows if "/etl-" in cells[0]}
    assert statuses == {"etl-ok": "SUCCESSFUL", "etl-bad": "FAILED"}
    assert any(cells[:2] == ["nightly-etl", "0 2 * * *"] for cells in rows)
    screenshot(browser, "workflows")
    (bad,) = [href for text, href in links(browser) if text.endswith("/etl-bad")]
    browser.get(bad)
    wait(browser, lambda d: "FAILED" in content(d))
    steps = [r.split("\t") for r in table_text(browser).splitlines()[1:]]
    assert [(s[1], s[2]) for s in steps] == [("extract", "SUCCESSFUL"), ("load", "FAILED")]
    assert "cannot load 501" in content(browser)


def newest(driver) -> str:
    """The text of the newest execution's table (earlier ones may be listed below it)."""
    return driver.execute_script(
        "const t = document.querySelector('#content table'); return t ? t.innerText : '';")


def test_the_data_page_shows_each_stages_progress_live(url: str, browser,
                                                       tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    go = tmp_path / "go"

    def gated(batch):
        while not os.path.exists(go):
            time.sleep(0.01)
        return batch

    ds = sd.range(1000).repartition(4).map_batches(gated)
    result: list = []
    runner = threading.Thread(target=lambda: result.append(ds.count()))
    runner.start()
    try:
        browser.get(url + "/")
        browser.find_element(By.LINK_TEXT, "Data").click()
        wait(browser, lambda d: "RUNNING" in newest(d) or "PENDING" in newest(d))
        assert "Execution" in content(browser) and "running" in content(browser)
    finally:
        go.touch()
        runner.join(timeout=120)
    assert result == [1000]
    wait(browser, lambda d: "RUNNING" not in newest(d) and "PENDING" not in newest(d))
    stages = [r.split("\t") for r in newest(browser).splitlines()[1:]]
    assert stages and all(cells[2] == "DONE" for cells in stages)
    assert any(cells[5] == "1000" for cells in stages)   # rows out of the last stage
    screenshot(browser, "data")


def score(config):
    from sluice import tune

    for step in range(3):
        tune.report({"score": config["x"] * (step + 1)})


def test_the_tune_page_shows_the_experiments_trials(url: str, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    from sluice import tune

    grid = tune.Tuner(score, param_space={"x": tune.grid_search([1, 2, 3])},
                      tune_config=tune.TuneConfig(metric="score", mode="max"),
                      run_config=tune.RunConfig(name="page-exp", storage_path=str(tmp_path),
                                                verbose=0)).fit()
    assert grid.num_errors == 0
    browser.get(url + "/")
    browser.find_element(By.LINK_TEXT, "Tune").click()
    wait(browser, lambda d: "page-exp" in content(d))
    rows = [r.split("\t") for r in newest(browser).splitlines()[1:]]
    assert sorted((r[1], r[2], r[3]) for r in rows) == [("TERMINATED", "3", "3"),
                                                         ("TERMINATED", "3", "6"),
                                                         ("TERMINATED", "3", "9")]
    assert "3 TERMINATED; best score = 9" in content(browser)


def two_rounds(config):
    from sluice import train

    for step in range(2):
        train.report({"loss": 1.0 / (step + 1), "step": step})


def test_the_train_page_shows_the_gang_and_its_rounds(url: str, browser,
                                                      tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from selenium.webdriver.common.by import By

    from sluice import train
    from sluice.train.torch import TorchTrainer

    result = TorchTrainer(two_rounds, scaling_config=train.ScalingConfig(num_workers=2),
                          run_config=train.RunConfig(name="page-run",
                                                     storage_path=str(tmp_path))).fit()
    assert result.metrics["step"] == 1
    browser.get(url + "/")
    browser.find_element(By.LINK_TEXT, "Train").click()
    wait(browser, lambda d: "page-run" in content(d))
    text = content(browser)
    assert "2 rank(s)" in text and "2 round(s) reported" in text and "failure(s) 0" in text
    rounds_table = browser.execute_script(   # the table under the newest run's "Rounds"
        "const h = Array.from(document.querySelectorAll('#content h3'))"
        ".find(e => e.innerText.startsWith('Rounds'));"
        "return h.nextElementSibling.innerText;")
    rounds = [r.split("\t") for r in rounds_table.splitlines()[1:]]
    assert [(r[0], r[1]) for r in rounds] == [("1", "1"), ("2", "0.5")]   # round, loss


def test_the_serve_page_shows_the_applications(url: str, browser) -> None:
    from selenium.webdriver.common.by import By

    from sluice import serve
    from sluice.executor.cluster.local import free_port

    @serve.deployment(num_replicas=2)
    class Echo:
        def __call__(self, request):
            return "echo"

    serve.start(http_options={"port": free_port()})
    try:
        serve.run(Echo.bind(), name="echo-app", route_prefix="/echo")
        browser.get(url + "/")
        browser.find_element(By.LINK_TEXT, "Serve").click()
        wait(browser, lambda d: "echo-app: RUNNING" in content(d))
        rows = [r.split("\t") for r in table_text(browser).splitlines()[1:]]
        expected = serve.status().applications["echo-app"].deployments["Echo"]
        assert rows[0][:2] == ["Echo", expected.status] and "RUNNING: 2" in rows[0][2]
        assert "route /echo" in content(browser)
        screenshot(browser, "serve")
    finally:
        serve.shutdown()
