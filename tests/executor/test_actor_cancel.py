"""``sluice.cancel`` of actor calls, as Ray's: queued calls are dropped, an async actor's
running call is cancelled at its next await, a sync actor's running call is flagged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import sluice
from sluice.exceptions import TaskCancelledError

DEADLINE_S = 60


@pytest.fixture
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2)
    try:
        yield
    finally:
        sluice.shutdown()


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)


@sluice.remote
class Counter:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def hold(self, started: str, release: str) -> str:
        Path(started).touch()
        wait_for(Path(release))
        self.calls.append("hold")
        return "held"

    def add(self, tag: str) -> str:
        self.calls.append(tag)
        return tag

    def until_cancelled(self, started: str) -> str:
        Path(started).touch()
        deadline = time.monotonic() + DEADLINE_S
        while not sluice.get_runtime_context().is_canceled():
            if time.monotonic() > deadline:
                return "never cancelled"
            time.sleep(0.005)
        return "stopped early"

    def seen(self) -> list[str]:
        return self.calls


@sluice.remote
def slow_value(release: str) -> str:
    wait_for(Path(release))
    return "late"


def test_a_call_queued_behind_a_running_one_is_dropped(runtime: None, tmp_path: Path) -> None:
    counter = Counter.remote()
    started, release = tmp_path / "started", tmp_path / "release"
    running = counter.hold.remote(str(started), str(release))
    wait_for(started)
    queued = counter.add.remote("queued")          # sent to the actor's process, not started
    after = counter.add.remote("after")
    sluice.cancel(queued)
    release.touch()
    with pytest.raises(TaskCancelledError, match="actor method .*add was cancelled"):
        sluice.get(queued, timeout=DEADLINE_S)
    assert sluice.get([running, after], timeout=DEADLINE_S) == ["held", "after"]
    assert sluice.get(counter.seen.remote(), timeout=DEADLINE_S) == ["hold", "after"]


def test_a_call_waiting_for_its_argument_is_dropped_and_the_next_ones_go_on(
        runtime: None, tmp_path: Path) -> None:
    counter = Counter.remote()
    release = tmp_path / "release"
    waiting = counter.add.remote(slow_value.remote(str(release)))  # queued in the driver
    sluice.cancel(waiting)
    with pytest.raises(TaskCancelledError):
        sluice.get(waiting, timeout=DEADLINE_S)
    assert sluice.get(counter.add.remote("next"), timeout=DEADLINE_S) == "next"
    release.touch()
    assert sluice.get(counter.seen.remote(), timeout=DEADLINE_S) == ["next"]


def test_a_sync_actors_running_call_is_flagged_not_interrupted(runtime: None,
                                                                tmp_path: Path) -> None:
    counter = Counter.remote()
    started = tmp_path / "started"
    ref = counter.until_cancelled.remote(str(started))
    wait_for(started)
    sluice.cancel(ref)
    assert sluice.get(ref, timeout=DEADLINE_S) == "stopped early"
    assert sluice.get(counter.add.remote("alive"), timeout=DEADLINE_S) == "alive"


@sluice.remote
class AsyncWaiter:
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.cancelled: list[str] = []

    async def wait(self, tag: str) -> str:
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled.append(tag)
            raise
        return tag

    async def open(self) -> None:
        self.gate.set()

    async def seen(self) -> list[str]:
        return self.cancelled


def test_an_async_actors_running_call_is_cancelled_at_its_await(runtime: None) -> None:
    waiter = AsyncWaiter.remote()
    first, second = waiter.wait.remote("first"), waiter.wait.remote("second")
    sluice.cancel(first)
    with pytest.raises(TaskCancelledError):
        sluice.get(first, timeout=DEADLINE_S)
    sluice.get(waiter.open.remote(), timeout=DEADLINE_S)
    assert sluice.get(second, timeout=DEADLINE_S) == "second"
    assert sluice.get(waiter.seen.remote(), timeout=DEADLINE_S) == ["first"]


def test_a_threaded_actors_call_not_started_in_its_pool_is_dropped(runtime: None,
                                                                     tmp_path: Path) -> None:
    counter = Counter.options(max_concurrency=2).remote()
    gates = [(tmp_path / f"s{i}", tmp_path / f"r{i}") for i in range(2)]
    busy = [counter.hold.remote(str(s), str(r)) for s, r in gates]
    for s, _ in gates:
        wait_for(s)  # both threads are busy
    queued = counter.add.remote("queued")
    sluice.cancel(queued)
    for _, r in gates:
        r.touch()
    with pytest.raises(TaskCancelledError):
        sluice.get(queued, timeout=DEADLINE_S)
    assert sluice.get(busy, timeout=DEADLINE_S) == ["held", "held"]
    assert "queued" not in sluice.get(counter.seen.remote(), timeout=DEADLINE_S)


@sluice.remote
def counter_context() -> bool:
    return sluice.get_runtime_context().is_canceled()


def test_is_canceled_is_false_outside_a_cancelled_call(runtime: None) -> None:
    assert sluice.get_runtime_context().is_canceled() is False
    assert sluice.get(counter_context.remote(), timeout=DEADLINE_S) is False
