"""Durable runs: checkpoints, resume after a real SIGKILL, retries, the cross-run cache."""

from __future__ import annotations

import _thread
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import sluice
from sluice import workflow
from sluice.libs.workflow.storage import WorkflowStorage

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module", autouse=True)
def runtime():
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


def count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_for(path: Path, timeout: float = 60.0) -> None:
    """Until ``path`` exists (another process makes it), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@sluice.remote
def load(n: int, log: str) -> list:
    with open(log, "a") as f:
        f.write("load\n")
    return list(range(n))


@sluice.remote
def total(xs: list, log: str) -> int:
    with open(log, "a") as f:
        f.write("total\n")
    return sum(xs)


def test_a_run_returns_its_output_and_records_every_step(tmp_path):
    log = str(tmp_path / "log")
    out = workflow.run(total.bind(load.bind(5, log), log), workflow_id="sum5", storage=tmp_path / "s")
    assert out == 10
    assert workflow.get_status("sum5", storage=tmp_path / "s") is workflow.WorkflowStatus.SUCCESSFUL
    assert workflow.get_output("sum5", storage=tmp_path / "s") == 10
    steps = WorkflowStorage(tmp_path / "s").steps("sum5")
    assert [(s["name"], s["status"], s["attempts"]) for s in steps] == [
        ("load", "SUCCESSFUL", 1), ("total", "SUCCESSFUL", 1)]
    assert ("sum5", workflow.WorkflowStatus.SUCCESSFUL) in workflow.list_all(storage=tmp_path / "s")


def test_running_an_id_that_finished_raises_and_delete_forgets_it(tmp_path):
    log = str(tmp_path / "log")
    workflow.run(load.bind(2, log), workflow_id="w", storage=tmp_path)
    with pytest.raises(Exception, match="'w' exists with status SUCCESSFUL"):
        workflow.run(load.bind(2, log), workflow_id="w", storage=tmp_path)
    workflow.delete("w", storage=tmp_path)
    assert workflow.run(load.bind(3, log), workflow_id="w", storage=tmp_path) == [0, 1, 2]


DRIVER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {repo!r})
    import sluice
    from sluice import workflow

    LOG, GATE, STARTED = sys.argv[1], sys.argv[2], sys.argv[3]

    @sluice.remote
    def first(n):
        with open(LOG, "a") as f:
            f.write("first\\n")
        return n * 10

    @sluice.remote
    def second(x):
        with open(LOG, "a") as f:
            f.write("second\\n")
        open(STARTED, "w").close()
        while not os.path.exists(GATE):   # held here until the test opens the gate
            time.sleep(0.01)
        return x + 1

    @sluice.remote
    def third(y):
        with open(LOG, "a") as f:
            f.write("third\\n")
        return y * 2

    sluice.init(num_cpus=2)
    print(workflow.run(third.bind(second.bind(first.bind(4))), workflow_id="crashy",
                       storage=sys.argv[4]))
""")


def test_a_killed_driver_leaves_a_resumable_run_that_reruns_only_unfinished_steps(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(repo=str(REPO)))
    log, gate, started, store = (tmp_path / "log", tmp_path / "gate", tmp_path / "started",
                                 tmp_path / "store")
    proc = subprocess.Popen([sys.executable, str(script), str(log), str(gate), str(started), str(store)],
                            start_new_session=True)
    try:
        wait_for(started)                      # first is checkpointed, second is running
        os.killpg(proc.pid, signal.SIGKILL)    # the driver and its workers die at once
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert workflow.get_status("crashy", storage=store) is workflow.WorkflowStatus.RESUMABLE
    assert log.read_text().splitlines() == ["first", "second"]
    gate.touch()
    assert workflow.resume("crashy", storage=store) == 82
    assert log.read_text().splitlines() == ["first", "second", "second", "third"]  # first not again
    assert workflow.get_status("crashy", storage=store) is workflow.WorkflowStatus.SUCCESSFUL
    attempts = {s["name"]: s["attempts"] for s in WorkflowStorage(store).steps("crashy")}
    assert attempts == {"first": 1, "second": 2, "third": 1}


@sluice.remote
def flaky(log: str, fail_times: int) -> str:
    with open(log, "a") as f:
        f.write(f"{time.monotonic()}\n")
    if count(Path(log)) <= fail_times:
        raise ConnectionError("the service is not up yet")
    return "up"


def test_a_failing_step_is_retried_with_growing_delays(tmp_path):
    log = tmp_path / "log"
    step = flaky.options(max_retries=3, retry_delay_s=0.1, backoff=2.0)
    assert workflow.run(step.bind(str(log), 2), workflow_id="retry", storage=tmp_path) == "up"
    times = [float(t) for t in log.read_text().split()]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) == 3 and gaps[0] >= 0.1 and gaps[1] >= 0.2
    (row,) = WorkflowStorage(tmp_path).steps("retry")
    assert row["attempts"] == 3 and row["status"] == "SUCCESSFUL"


def test_a_step_that_keeps_failing_fails_the_run_naming_it(tmp_path):
    log = tmp_path / "log"
    with pytest.raises(workflow.WorkflowError, match=r"step flaky .* failed after 2 attempt\(s\): "
                                                     r"ConnectionError: the service is not up yet"):
        workflow.run(flaky.options(max_retries=1).bind(str(log), 5), workflow_id="down", storage=tmp_path)
    assert workflow.get_status("down", storage=tmp_path) is workflow.WorkflowStatus.FAILED
    (row,) = WorkflowStorage(tmp_path).steps("down")
    assert row["status"] == "FAILED" and "ConnectionError" in row["error"]


def test_catch_exceptions_hands_the_error_to_the_next_step(tmp_path):
    out = workflow.run(flaky.options(max_retries=0, catch_exceptions=True).bind(str(tmp_path / "log"), 9),
                       storage=tmp_path)
    result, error = out
    assert result is None and isinstance(error, ConnectionError)


@sluice.remote
def expensive(x: int, log: str) -> int:
    with open(log, "a") as f:
        f.write(f"{x}\n")
    return x * x


def test_a_cached_step_is_reused_across_runs_until_its_input_or_code_changes(tmp_path):
    log = tmp_path / "log"
    cached = expensive.options(cache=True)
    assert workflow.run(cached.bind(7, str(log)), storage=tmp_path) == 49
    assert workflow.run(cached.bind(7, str(log)), storage=tmp_path) == 49
    assert count(log) == 1                       # the second run reused the step
    assert workflow.run(cached.bind(8, str(log)), storage=tmp_path) == 64
    assert count(log) == 2                       # another input: computed
    assert workflow.run(expensive.bind(7, str(log)), storage=tmp_path) == 49
    assert count(log) == 3                       # without cache=True: computed


@sluice.remote
def hold(gate: str, started: str) -> str:
    open(started, "w").close()
    while not os.path.exists(gate):
        time.sleep(0.01)
    return "done"


def test_a_running_id_cannot_start_twice_and_cancel_stops_it(tmp_path):
    gate, started = tmp_path / "gate", tmp_path / "started"
    ref = workflow.run_async(hold.bind(str(gate), str(started)), workflow_id="busy", storage=tmp_path)
    wait_for(started)
    assert workflow.get_status("busy", storage=tmp_path) is workflow.WorkflowStatus.RUNNING
    with pytest.raises(Exception, match="'busy' is already RUNNING"):
        workflow.run(hold.bind(str(gate), str(started)), workflow_id="busy", storage=tmp_path)
    workflow.cancel("busy", storage=tmp_path)
    with pytest.raises(workflow.WorkflowCancelledError):
        sluice.get(ref, timeout=60)
    assert workflow.get_status("busy", storage=tmp_path) is workflow.WorkflowStatus.CANCELED
    gate.touch()


def test_an_interrupted_run_is_resumable_not_failed_and_resumes(tmp_path):
    gate, started = tmp_path / "gate", tmp_path / "started"

    def ctrl_c_once_the_step_runs() -> None:
        try:
            wait_for(started)
        finally:
            _thread.interrupt_main()   # as Ctrl-C does (never left waiting on the gate)

    interrupter = threading.Thread(target=ctrl_c_once_the_step_runs)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        workflow.run(hold.bind(str(gate), str(started)), workflow_id="stopped", storage=tmp_path)
    interrupter.join()
    assert started.exists()
    run = WorkflowStorage(tmp_path).get_run("stopped")
    assert (run["status"], run["error"]) == (workflow.WorkflowStatus.RESUMABLE, "KeyboardInterrupt: ")
    gate.touch()
    assert workflow.resume("stopped", storage=tmp_path) == "done"
    assert workflow.get_status("stopped", storage=tmp_path) is workflow.WorkflowStatus.SUCCESSFUL


def test_run_refuses_what_is_not_a_dag(tmp_path):
    with pytest.raises(TypeError, match="workflow.run takes a DAG built with .bind"):
        workflow.run(lambda: 1, storage=tmp_path)


def test_a_finished_run_cannot_be_cancelled(tmp_path):
    workflow.run(load.bind(1, str(tmp_path / "log")), workflow_id="done", storage=tmp_path)
    with pytest.raises(ValueError, match="'done' is SUCCESSFUL; only a RUNNING or RESUMABLE run"):
        workflow.cancel("done", storage=tmp_path)
    assert workflow.get_output("done", storage=tmp_path) == [0]
