"""``sluice.cancel(ref, recursive=True)`` (Ray's default) cancels the tasks the task submitted."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import sluice
from sluice.exceptions import TaskCancelledError


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


def wait_for(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.01)


@sluice.remote
class Registry:
    """Holds the refs of the tasks a parent submitted, so the driver can watch them."""

    def __init__(self):
        self.refs: list = []

    def add(self, refs: list) -> None:
        self.refs.extend(refs)

    def all(self) -> list:
        return self.refs


@sluice.remote
def leaf(gate: str) -> int:
    wait_for(gate)
    return 1


@sluice.remote
def child(gate: str, registry) -> int:
    grandchild = leaf.remote(gate)
    sluice.get(registry.add.remote([grandchild]))
    wait_for(gate)
    return 1 + sluice.get(grandchild)


@sluice.remote
def parent(gate: str, registry) -> int:
    children = [child.remote(gate, registry), leaf.remote(gate)]
    sluice.get(registry.add.remote(children))
    wait_for(gate)
    return sum(sluice.get(children))


def submitted(registry, count: int) -> list:
    """The refs the parent and its child registered, once all ``count`` are there."""
    deadline = time.monotonic() + 60
    while True:
        refs = sluice.get(registry.all.remote())
        if len(refs) >= count:
            return refs
        assert time.monotonic() < deadline, f"only {len(refs)} of {count} tasks were submitted"
        time.sleep(0.02)


def test_cancel_cancels_the_tasks_the_task_submitted_and_theirs(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    registry = Registry.remote()
    top = parent.remote(gate, registry)
    descendants = submitted(registry, 3)  # child, a leaf, and the child's own leaf
    sluice.cancel(top)
    Path(gate).touch()  # what still runs may finish now: its results are discarded
    for ref in [top, *descendants]:
        with pytest.raises(TaskCancelledError):
            sluice.get(ref, timeout=60)


def test_cancel_with_recursive_false_leaves_the_submitted_tasks_running(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    registry = Registry.remote()
    top = parent.remote(gate, registry)
    descendants = submitted(registry, 3)
    sluice.cancel(top, recursive=False)
    Path(gate).touch()
    with pytest.raises(TaskCancelledError):
        sluice.get(top, timeout=60)
    assert sorted(sluice.get(descendants, timeout=60)) == [1, 1, 2]


def test_cancel_refuses_flags_that_are_not_bools() -> None:
    ref = sluice.put(1)
    with pytest.raises(TypeError, match=r"cancel\(force=False, recursive='yes'\): give True or False"):
        sluice.cancel(ref, recursive="yes")
