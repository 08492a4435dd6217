"""Streaming generators on a 3-node loopback cluster: iterated by the connected driver and
inside tasks and actors, with backpressure, errors, cancel and a node killed mid-stream."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import sluice
from sluice.exceptions import TaskCancelledError
from sluice.executor.generators import ObjectRefGenerator
from tests.cluster.conftest import LocalCluster, node_info

DEADLINE_S = 60
"""How long a test waits for a condition (generous: a busy machine never fails it)."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    # Two nodes with a "spot" each: a producer needing one can be retried on the other.
    c = LocalCluster(nodes=2, node_args=[["--resources", '{"spot": 1}'], ["--resources", '{"spot": 1}']])
    sluice.init(address=c.address)
    try:
        yield c
    finally:
        sluice.shutdown()
        c.stop()


def wait_for(condition, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {DEADLINE_S} s for {what}")
        time.sleep(0.01)


def read_int(path: str) -> int:
    try:
        return int(Path(path).read_text() or -1)
    except (FileNotFoundError, ValueError):
        return -1


@sluice.remote
def count(n: int):
    for i in range(n):
        yield i


@sluice.remote
def waits_for_consumer(gate: str):
    yield "first"
    wait_for(lambda: os.path.exists(gate), f"the gate {gate}")  # opened after "first" was seen
    yield "second"


@sluice.remote
def fails_after(n: int):
    for i in range(n):
        yield i
    raise ValueError(f"broke after {n}")


@sluice.remote(_generator_backpressure_num_objects=3)
def records_progress(progress: str, n: int):
    for i in range(n):
        Path(progress).write_text(str(i))
        yield i


@sluice.remote
def endless(progress: str, closed: str):
    i = 0
    try:
        while True:
            Path(progress).write_text(str(i))
            yield i
            i += 1
    finally:
        Path(closed).write_text("closed")


@sluice.remote
def big_items(n: int):
    for i in range(n):
        yield np.full(1 << 18, i, dtype=np.float64)  # 2 MB each: in a node's store


@sluice.remote
def reads_a_generator(n: int) -> list[int]:
    return [sluice.get(ref) for ref in count.remote(n)]


@sluice.remote
def steps_through(gate: str) -> list[str]:
    gen = waits_for_consumer.remote(gate)
    seen = [sluice.get(next(gen))]
    Path(gate).write_text("go")
    return seen + [sluice.get(ref) for ref in gen]


@sluice.remote
class Producer:
    def items(self, n: int):
        for i in range(n):
            yield i * 10


@sluice.remote
class Consumer:
    def reads(self, producer, n: int) -> list[int]:
        return [sluice.get(ref) for ref in producer.items.remote(n)]


@sluice.remote
class AsyncConsumer:
    async def reads(self, n: int) -> list[int]:
        return [await ref async for ref in count.remote(n)]


def test_items_arrive_in_order_at_a_connected_driver(cluster: LocalCluster) -> None:
    gen = count.remote(200)
    assert isinstance(gen, ObjectRefGenerator)
    assert [sluice.get(ref) for ref in gen] == list(range(200))
    assert gen.is_finished()
    assert sluice.get(gen.completed()) is None


def test_items_reach_the_driver_before_the_producer_ends(cluster: LocalCluster,
                                                         tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    gen = waits_for_consumer.remote(gate)
    assert sluice.get(next(gen)) == "first"  # would never come if items waited for the end
    Path(gate).write_text("go")
    assert sluice.get(next(gen)) == "second"
    with pytest.raises(StopIteration):
        next(gen)


def test_a_timed_out_next_at_the_driver_loses_no_item(cluster: LocalCluster,
                                                       tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    gen = waits_for_consumer.remote(gate)
    assert sluice.get(gen._next_sync(DEADLINE_S)) == "first"
    with pytest.raises(sluice.exceptions.GetTimeoutError, match="no item of the generator came"):
        gen._next_sync(0.2)  # "second" waits for the gate
    Path(gate).write_text("go")
    assert [sluice.get(ref) for ref in gen] == ["second"]


def test_an_exception_mid_stream_raises_at_that_item(cluster: LocalCluster) -> None:
    refs = list(fails_after.remote(3))
    assert len(refs) == 4
    assert sluice.get(refs[:3]) == [0, 1, 2]
    with pytest.raises(ValueError, match="broke after 3"):
        sluice.get(refs[3])


def test_backpressure_holds_the_producer_within_n_items(cluster: LocalCluster,
                                                        tmp_path: Path) -> None:
    progress = str(tmp_path / "progress")
    consumed = 0
    for ref in records_progress.remote(progress, 20):
        assert sluice.get(ref) == consumed
        consumed += 1
        if consumed == 1:  # the producer runs ahead up to the bound ...
            wait_for(lambda: read_int(progress) >= 3, "the producer to run ahead")
        assert read_int(progress) <= consumed + 3  # ... and never past it
    assert consumed == 20


def test_async_for_and_wait_at_a_connected_driver(cluster: LocalCluster, tmp_path: Path) -> None:
    async def consume() -> list[int]:
        return [await ref async for ref in count.remote(5)]

    assert asyncio.run(consume()) == [0, 1, 2, 3, 4]
    gate = str(tmp_path / "gate")
    gen = waits_for_consumer.remote(gate)
    ready, _ = sluice.wait([gen], timeout=DEADLINE_S)
    assert ready == [gen]
    assert sluice.get(next(gen)) == "first"
    assert sluice.wait([gen], timeout=0) == ([], [gen])
    Path(gate).write_text("go")
    assert [sluice.get(ref) for ref in gen] == ["second"]


def test_cancel_from_the_driver_stops_the_producer(cluster: LocalCluster, tmp_path: Path) -> None:
    progress, closed = str(tmp_path / "progress"), str(tmp_path / "closed")
    gen = endless.remote(progress, closed)
    assert [sluice.get(next(gen)), sluice.get(next(gen))] == [0, 1]
    sluice.cancel(gen)
    wait_for(lambda: os.path.exists(closed), "the producer's generator to close")
    with pytest.raises(TaskCancelledError):
        for ref in gen:
            sluice.get(ref)


def test_a_dropped_generator_lets_its_paused_producer_finish(cluster: LocalCluster,
                                                             tmp_path: Path) -> None:
    progress = str(tmp_path / "progress")
    gen = records_progress.remote(progress, 30)
    assert sluice.get(next(gen)) == 0
    del gen
    wait_for(lambda: read_int(progress) == 29, "the producer to run to its end")


def test_large_items_are_freed_once_the_driver_drops_them(cluster: LocalCluster) -> None:
    refs = list(big_items.remote(3))
    assert [float(sluice.get(ref)[0]) for ref in refs] == [0.0, 1.0, 2.0]
    ids = [ref.id for ref in refs]
    assert all(cluster.locate(oid) for oid in ids)  # each held in a node's store
    del refs
    wait_for(lambda: all(cluster.locate(oid) == [] for oid in ids), "the items to be freed")


def test_a_task_on_the_cluster_iterates_a_generator(cluster: LocalCluster, tmp_path: Path) -> None:
    assert sluice.get(reads_a_generator.remote(50)) == list(range(50))
    assert sluice.get(steps_through.remote(str(tmp_path / "gate"))) == ["first", "second"]


def test_actor_method_generators_at_the_driver_and_inside_an_actor(cluster: LocalCluster) -> None:
    producer = Producer.options(num_cpus=0).remote()
    assert [sluice.get(ref) for ref in producer.items.remote(4)] == [0, 10, 20, 30]
    consumer = Consumer.options(num_cpus=0).remote()
    assert sluice.get(consumer.reads.remote(producer, 5)) == [0, 10, 20, 30, 40]
    assert sluice.get(AsyncConsumer.options(num_cpus=0).remote().reads.remote(4)) == [0, 1, 2, 3]


@sluice.remote(resources={"spot": 1}, max_retries=1)
def reports_then_waits(marker: str, gate: str):
    first_attempt = not os.path.exists(marker)
    Path(marker).write_text("started")
    yield node_info()["flight"]
    for i in range(1, 6):
        yield i
        if first_attempt and i == 2:
            wait_for(lambda: os.path.exists(gate), "the test to kill this node")


def node_serving(c: LocalCluster, flight: str):
    """The node daemon process whose store serves at ``flight``."""
    for proc, log in zip(c.nodes, c.logs[1:]):
        if flight in log.read_text():
            return proc
    raise AssertionError(f"no node daemon serves {flight}")


def test_a_node_killed_mid_stream_retries_without_repeating_items(cluster: LocalCluster,
                                                                  tmp_path: Path) -> None:
    # Last in this module: it kills a node of the shared cluster.
    marker, gate = str(tmp_path / "started"), str(tmp_path / "gate")
    gen = reports_then_waits.remote(marker, gate)
    flight = sluice.get(next(gen))
    seen = [sluice.get(next(gen)), sluice.get(next(gen))]
    node_serving(cluster, flight).send_signal(signal.SIGKILL)
    seen += [sluice.get(ref, timeout=DEADLINE_S) for ref in gen]  # the retry, on the other node
    assert seen == [1, 2, 3, 4, 5]
