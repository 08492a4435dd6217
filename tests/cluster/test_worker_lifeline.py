"""A node daemon SIGKILLed while its worker runs a task: the worker stops with it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import sluice
from sluice.executor.process import process_alive
from tests.cluster.conftest import connected_cluster

DEADLINE_S = 60.0


@sluice.remote(max_retries=0)
def long_task(log: str) -> None:
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {os.getppid()}\n")  # the worker and its parent (the template)
    time.sleep(3600)


def poll_until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {DEADLINE_S} s"
        time.sleep(0.02)


def test_a_sigkilled_node_daemons_workers_stop(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with connected_cluster(nodes=1, head_cpus=0) as c:
        [node] = c.nodes
        long_task.remote(str(log))
        poll_until(lambda: log.exists() and log.read_text().endswith("\n"), "the task's start")
        pids = [int(p) for p in log.read_text().split()]
        assert pids[1] != node.pid, "the node's workers are forked from its template"
        assert all(process_alive(p, None) for p in pids)
        os.kill(node.pid, signal.SIGKILL)  # the node alone: nothing else signals its processes
        node.wait()
        poll_until(lambda: not any(process_alive(p, None) for p in pids),
                   f"the exit of the killed node's worker and template {pids}")
