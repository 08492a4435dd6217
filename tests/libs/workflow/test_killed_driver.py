"""A driver SIGKILLed mid-step: its worker stops, so ``resume`` runs the step alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import sluice
from sluice import workflow
from sluice.executor.process import process_alive

REPO = Path(__file__).resolve().parents[3]
DEADLINE_S = 60.0


@pytest.fixture(scope="module", autouse=True)
def runtime():
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


def poll_until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {DEADLINE_S} s"
        time.sleep(0.02)


DRIVER = textwrap.dedent("""
    import os, sys, time
    import sluice
    from sluice import workflow

    LOG, GATE, STORE = sys.argv[1], sys.argv[2], sys.argv[3]

    def note(line):
        with open(LOG, "a") as f:
            f.write(line + "\\n")

    @sluice.remote
    def first(n):
        return n * 10

    @sluice.remote
    def slow(x):
        note(f"start {os.getpid()}")
        while not os.path.exists(GATE):  # every pass leaves a mark while the step runs
            note(f"tick {os.getpid()}")
            time.sleep(0.02)
        return x + 1

    sluice.init(num_cpus=2)
    print(workflow.run(slow.bind(first.bind(4)), workflow_id="killed", storage=STORE))
""")


def test_a_sigkilled_drivers_step_stops_and_resume_runs_it_alone(tmp_path) -> None:
    log, gate, store = tmp_path / "log", tmp_path / "gate", tmp_path / "store"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(log), str(gate), str(store)], env=env,
                              cwd=REPO, start_new_session=True)
    try:
        poll_until(lambda: log.exists() and "start" in log.read_text(), "the step's start")
        [old] = [int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("start")]
        os.kill(driver.pid, signal.SIGKILL)  # the driver alone: nothing else signals its worker
        driver.wait()
        poll_until(lambda: not process_alive(old, None), f"the exit of the killed driver's worker {old}")
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # whatever is left, should the test fail
        except ProcessLookupError:
            pass
        driver.wait()
    assert workflow.get_status("killed", storage=store) is workflow.WorkflowStatus.RESUMABLE
    gate.touch()
    assert workflow.resume("killed", storage=store) == 41
    lines = log.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("start")]
    assert len(starts) == 2 and lines[starts[1]] != f"start {old}"
    assert f"tick {old}" not in lines[starts[1]:], "the killed driver's step ran beside the resumed one"
