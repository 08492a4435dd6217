"""Streaming generators: a generator task or actor method yields items the caller sees at once."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import sluice
from sluice.exceptions import TaskCancelledError, WorkerCrashedError
from sluice.executor.generators import ObjectRefGenerator
from tests.executor.helpers import bump, current_session, session_files, wait_until


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2, num_gpus=0)
    yield
    sluice.shutdown()


def _wait_for_file(path: str) -> None:
    if not wait_until(lambda: os.path.exists(path), timeout=60):
        raise TimeoutError(f"{path} never appeared")


def _read_int(path: str) -> int:
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
    _wait_for_file(gate)  # only a consumer that saw "first" creates it
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


@sluice.remote(max_retries=1)
def crashes_mid_stream(marker: str, gate: str):
    first_attempt = bump(marker) == 1
    for i in range(6):
        yield i
        if first_attempt and i == 2:
            _wait_for_file(gate)  # the consumer has taken items 0..2
            os._exit(1)


@sluice.remote(max_retries=0)
def crashes_without_retries(gate: str):
    yield 0
    _wait_for_file(gate)
    os._exit(1)


@sluice.remote
def big_items(n: int):
    for i in range(n):
        yield np.full(1 << 18, i, dtype=np.float64)  # 2 MB each: through shared memory


@sluice.remote
class Producer:
    def items(self, n: int):
        for i in range(n):
            yield i * 10

    async def async_items(self, n: int):
        for i in range(n):
            await asyncio.sleep(0)
            yield f"a{i}"

    def ping(self) -> str:
        return "pong"


def test_items_arrive_in_order_and_the_generator_is_an_object_ref_generator() -> None:
    gen = count.remote(50)
    assert isinstance(gen, ObjectRefGenerator)
    assert [sluice.get(ref) for ref in gen] == list(range(50))


def test_items_are_seen_before_the_producer_finishes(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    gen = waits_for_consumer.remote(gate)
    assert sluice.get(next(gen)) == "first"  # would never come if items waited for the end
    Path(gate).write_text("go")
    assert sluice.get(next(gen)) == "second"
    with pytest.raises(StopIteration):
        next(gen)


def test_next_raises_stop_iteration_at_the_end_and_again_after() -> None:
    gen = count.remote(2)
    assert [sluice.get(next(gen)), sluice.get(next(gen))] == [0, 1]
    for _ in range(2):
        with pytest.raises(StopIteration):
            next(gen)
    assert gen.is_finished()
    assert sluice.get(gen.completed()) is None


def test_async_for_reads_every_item() -> None:
    async def consume() -> list[int]:
        return [await ref async for ref in count.remote(5)]

    assert asyncio.run(consume()) == [0, 1, 2, 3, 4]


def test_an_exception_mid_stream_raises_at_that_item_after_the_good_ones() -> None:
    gen = fails_after.remote(3)
    refs = list(gen)
    assert len(refs) == 4
    assert sluice.get(refs[:3]) == [0, 1, 2]
    with pytest.raises(ValueError, match="broke after 3"):
        sluice.get(refs[3])


def test_backpressure_keeps_the_producer_within_n_items_of_the_consumer(tmp_path: Path) -> None:
    progress = str(tmp_path / "progress")
    gen = records_progress.remote(progress, 30)
    consumed = 0
    for ref in gen:
        assert sluice.get(ref) == consumed
        consumed += 1
        if consumed == 1:  # the producer runs ahead up to the bound ...
            assert wait_until(lambda: _read_int(progress) >= 3)
        assert _read_int(progress) <= consumed + 3  # ... and never past it
    assert consumed == 30


def test_cancel_stops_the_producer(tmp_path: Path) -> None:
    progress, closed = str(tmp_path / "progress"), str(tmp_path / "closed")
    gen = endless.remote(progress, closed)
    assert [sluice.get(next(gen)), sluice.get(next(gen))] == [0, 1]
    sluice.cancel(gen)
    assert wait_until(lambda: os.path.exists(closed))  # its generator was closed
    with pytest.raises(TaskCancelledError):
        for ref in gen:
            sluice.get(ref)
    stopped_at = _read_int(progress)
    assert sluice.get(count.remote(3).completed()) is None  # the workers serve new tasks
    assert _read_int(progress) == stopped_at


def test_a_crash_mid_stream_retries_without_repeating_consumed_items(tmp_path: Path) -> None:
    marker, gate = str(tmp_path / "attempts"), str(tmp_path / "gate")
    gen = crashes_mid_stream.remote(marker, gate)
    seen = [sluice.get(next(gen)) for _ in range(3)]
    Path(gate).write_text("go")  # the first attempt dies now; its retry starts over
    seen += [sluice.get(ref) for ref in gen]
    assert seen == [0, 1, 2, 3, 4, 5]
    assert _read_int(marker) == 2


def test_a_crash_mid_stream_without_retries_raises_after_the_good_items(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    gen = crashes_without_retries.remote(gate)
    assert sluice.get(next(gen)) == 0
    Path(gate).write_text("go")
    with pytest.raises(WorkerCrashedError):
        sluice.get(next(gen))
    with pytest.raises(StopIteration):
        next(gen)


def test_large_items_travel_through_the_store() -> None:
    values = [sluice.get(ref) for ref in big_items.remote(4)]
    assert [float(v[0]) for v in values] == [0.0, 1.0, 2.0, 3.0]
    assert all(v.shape == (1 << 18,) for v in values)


def test_num_returns_n_with_a_generator_still_returns_n_refs() -> None:
    refs = count.options(num_returns=3).remote(3)
    assert sluice.get(refs) == [0, 1, 2]


def test_wait_counts_a_generator_ready_when_its_next_item_is_there(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    gen = waits_for_consumer.remote(gate)
    ready, _ = sluice.wait([gen], timeout=60)
    assert ready == [gen]
    assert sluice.get(next(gen)) == "first"
    ready, not_ready = sluice.wait([gen], timeout=0)
    assert (ready, not_ready) == ([], [gen])
    Path(gate).write_text("go")


def test_actor_method_generators_sync_and_async() -> None:
    p = Producer.remote()
    assert [sluice.get(r) for r in p.items.remote(4)] == [0, 10, 20, 30]
    assert [sluice.get(r) for r in p.async_items.remote(3)] == ["a0", "a1", "a2"]
    assert sluice.get(p.ping.remote()) == "pong"


def test_a_generator_cannot_be_passed_to_a_task() -> None:
    with pytest.raises(Exception, match="cannot be passed"):
        count.remote(count.remote(1))


def test_a_dropped_generator_frees_its_items_and_unblocks_its_producer(tmp_path: Path) -> None:
    progress = str(tmp_path / "progress")
    gen = records_progress.remote(progress, 30)
    sluice.get(next(gen))
    del gen  # the producer, paused by backpressure, runs to its end
    assert wait_until(lambda: _read_int(progress) == 29)


# -- a generator started and iterated inside a task or an actor ---------------------------

@sluice.remote
def sums_a_generator(n: int) -> list[int]:
    return [sluice.get(ref) for ref in count.remote(n)]


@sluice.remote
def steps_through(gate: str) -> list:
    gen = waits_for_consumer.remote(gate)
    seen = [sluice.get(next(gen))]
    Path(gate).write_text("go")  # the producer can only end after the first item came
    seen.append(sluice.get(next(gen)))
    try:
        next(gen)
    except StopIteration:
        seen.append("stop")
    return seen


@sluice.remote
def good_items_then_error(n: int) -> tuple:
    refs = list(fails_after.remote(n))
    good = sluice.get(refs[:-1])
    try:
        sluice.get(refs[-1])
    except ValueError as err:
        return good, str(err).splitlines()[0]
    return good, None


@sluice.remote
def holds_back(progress: str, n: int) -> list[int]:
    worst = []
    gen = records_progress.remote(progress, n)
    for i, ref in enumerate(gen):
        assert sluice.get(ref) == i
        if i == 0:
            assert wait_until(lambda: _read_int(progress) >= 3)  # ran ahead up to the bound
        worst.append(_read_int(progress) - (i + 1))
    return worst


@sluice.remote
def times_out_then_reads(gate: str) -> list:
    gen = waits_for_consumer.remote(gate)
    out = [sluice.get(gen._next_sync(60))]
    try:
        gen._next_sync(0.2)  # "second" waits for the gate
    except sluice.exceptions.GetTimeoutError:
        out.append("timeout")
    Path(gate).write_text("go")
    out += [sluice.get(ref) for ref in gen]  # the timed-out request lost no item
    return out


@sluice.remote
def cancels_its_generator(progress: str, closed: str) -> list[int]:
    gen = endless.remote(progress, closed)
    seen = [sluice.get(next(gen)), sluice.get(next(gen))]
    sluice.cancel(gen)
    assert wait_until(lambda: os.path.exists(closed))
    try:
        for ref in gen:
            seen.append(sluice.get(ref))
    except TaskCancelledError:
        seen.append(-1)
    return seen


@sluice.remote
def rides_out_a_crash(marker: str, gate: str) -> list[int]:
    gen = crashes_mid_stream.remote(marker, gate)
    seen = [sluice.get(next(gen)) for _ in range(3)]
    Path(gate).write_text("go")  # the producer's first attempt dies; its retry starts over
    return seen + [sluice.get(ref) for ref in gen]


@sluice.remote
def sums_big_items(n: int) -> list[float]:
    return [float(sluice.get(ref)[0]) for ref in big_items.remote(n)]


@sluice.remote
def mid_items(n: int):
    for i in range(n):
        yield bytes([i % 256]) * 90_000  # inline (under 100 KB), 90 KB each


@sluice.remote
def gets_every_mid_item_late(n: int) -> bool:
    refs = list(mid_items.remote(n))  # more than the 8 MB of small values a consumer keeps
    return all(sluice.get(ref) == bytes([i % 256]) * 90_000 for i, ref in enumerate(refs))


def test_a_task_reads_items_whose_kept_values_were_evicted() -> None:
    assert sluice.get(gets_every_mid_item_late.remote(120))


def test_a_task_iterates_a_generator_it_started() -> None:
    assert sluice.get(sums_a_generator.remote(20)) == list(range(20))


def test_items_a_task_took_are_freed_when_it_drops_them() -> None:
    before = len(session_files(current_session()))
    assert sluice.get(sums_big_items.remote(4)) == [0.0, 1.0, 2.0, 3.0]
    assert wait_until(lambda: len(session_files(current_session())) <= before)


def test_inside_a_task_items_arrive_before_the_producer_ends(tmp_path: Path) -> None:
    assert sluice.get(steps_through.remote(str(tmp_path / "gate"))) == ["first", "second", "stop"]


def test_inside_a_task_an_error_mid_stream_comes_after_the_good_items() -> None:
    assert sluice.get(good_items_then_error.remote(3)) == ([0, 1, 2], "task fails_after failed: ValueError: broke after 3")


def test_inside_a_task_backpressure_keeps_the_producer_within_n_items(tmp_path: Path) -> None:
    ahead = sluice.get(holds_back.remote(str(tmp_path / "progress"), 20))
    assert len(ahead) == 20 and max(ahead) <= 3


def test_inside_a_task_a_timed_out_next_loses_no_item(tmp_path: Path) -> None:
    assert sluice.get(times_out_then_reads.remote(str(tmp_path / "gate"))) == \
        ["first", "timeout", "second"]


def test_inside_a_task_cancel_stops_the_producer(tmp_path: Path) -> None:
    progress, closed = str(tmp_path / "progress"), str(tmp_path / "closed")
    seen = sluice.get(cancels_its_generator.remote(progress, closed))
    assert seen[-1] == -1  # items that came before the cancel, then its error
    assert seen[:-1] == list(range(len(seen) - 1)) and len(seen) >= 3
    stopped_at = _read_int(progress)
    assert sluice.get(count.remote(3).completed()) is None
    assert _read_int(progress) == stopped_at


def test_inside_a_task_a_producer_crash_repeats_no_consumed_item(tmp_path: Path) -> None:
    marker, gate = str(tmp_path / "attempts"), str(tmp_path / "gate")
    assert sluice.get(rides_out_a_crash.remote(marker, gate)) == [0, 1, 2, 3, 4, 5]
    assert _read_int(marker) == 2


@sluice.remote(max_retries=0)
def takes_one_then_dies(progress: str) -> None:
    gen = records_progress.remote(progress, 30)
    sluice.get(next(gen))
    os._exit(1)  # its generator is never dropped: the driver closes the stream for it


def test_a_consumer_that_dies_lets_its_paused_producer_finish(tmp_path: Path) -> None:
    progress = str(tmp_path / "progress")
    with pytest.raises(WorkerCrashedError):
        sluice.get(takes_one_then_dies.remote(progress))
    assert wait_until(lambda: _read_int(progress) == 29)


@sluice.remote
class Consumer:
    def __init__(self) -> None:
        self.producer = Producer.remote()

    def reads_method_items(self, n: int) -> list[int]:
        return [sluice.get(r) for r in self.producer.items.remote(n)]

    def reads_task_items(self, n: int) -> list[int]:
        gen = count.remote(n)
        first = sluice.get(next(gen))
        return [first] + [sluice.get(r) for r in gen]

    def ready_then_finished(self) -> tuple:
        gen = count.remote(2)
        ready, _ = sluice.wait([gen], timeout=60)
        items = [sluice.get(r) for r in gen]
        return len(ready), items, gen.is_finished()


@sluice.remote
class AsyncConsumer:
    async def reads(self, n: int) -> list:
        producer = Producer.remote()
        out = [await ref async for ref in producer.async_items.remote(n)]
        return out + [await ref async for ref in count.remote(2)]


def test_an_actor_iterates_generators_of_tasks_and_of_other_actors() -> None:
    c = Consumer.remote()
    assert sluice.get(c.reads_method_items.remote(4)) == [0, 10, 20, 30]
    assert sluice.get(c.reads_task_items.remote(5)) == [0, 1, 2, 3, 4]
    assert sluice.get(c.ready_then_finished.remote()) == (1, [0, 1], True)


def test_an_async_actor_reads_generators_with_async_for() -> None:
    assert sluice.get(AsyncConsumer.remote().reads.remote(3)) == ["a0", "a1", "a2", 0, 1]


def test_a_generator_cannot_be_bound_into_a_graph_and_bad_options_are_named() -> None:
    with pytest.raises(TypeError, match="cannot be a graph node"):
        count.bind(3)
    with pytest.raises(ValueError, match="_generator_backpressure_num_objects=0"):
        count.options(_generator_backpressure_num_objects=0)
    with pytest.raises(ValueError, match="num_returns='many'"):
        count.options(num_returns="many")


@sluice.remote(max_concurrency=2)
class ThreadedProducer:
    @sluice.method(_generator_backpressure_num_objects=2)
    def items(self, progress: str, n: int):
        for i in range(n):
            Path(progress).write_text(str(i))
            yield i

    def ping(self) -> str:
        return "pong"


def test_a_threaded_actor_streams_with_backpressure_and_serves_other_calls(tmp_path: Path) -> None:
    progress = str(tmp_path / "progress")
    p = ThreadedProducer.remote()
    gen = p.items.remote(progress, 10)
    assert sluice.get(next(gen)) == 0
    assert wait_until(lambda: _read_int(progress) >= 2)
    assert sluice.get(p.ping.remote()) == "pong"  # while the generator is paused
    assert _read_int(progress) <= 1 + 2
    assert [sluice.get(r) for r in gen] == list(range(1, 10))


@sluice.remote
class EndlessActor:
    def items(self, closed: str):
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            Path(closed).write_text("closed")

    def ping(self) -> str:
        return "pong"


def test_cancel_stops_a_running_actor_method_generator(tmp_path: Path) -> None:
    closed = str(tmp_path / "closed")
    a = EndlessActor.remote()
    gen = a.items.remote(closed)
    assert sluice.get(next(gen)) == 0
    sluice.cancel(gen)
    assert wait_until(lambda: os.path.exists(closed))
    with pytest.raises(TaskCancelledError):
        for ref in gen:
            sluice.get(ref)
    assert sluice.get(a.ping.remote()) == "pong"  # the actor lives on and serves calls
