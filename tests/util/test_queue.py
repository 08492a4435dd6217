"""Queue: an actor-held FIFO used from the driver, tasks and actors; Empty/Full; batches."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import pytest

import sluice
from sluice.exceptions import ActorDiedError
from sluice.util.queue import Empty, Full, Queue


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


def test_items_come_out_in_order() -> None:
    q = Queue()
    for i in range(10):
        q.put(i)
    assert (q.qsize(), q.size(), len(q), q.empty(), q.full()) == (10, 10, 10, False, False)
    assert [q.get() for _ in range(10)] == list(range(10))
    assert q.empty()


def test_errors_are_the_standard_librarys() -> None:
    assert issubclass(Empty, queue.Empty) and issubclass(Full, queue.Full)


def test_nonblocking_and_timed_calls_raise_empty_and_full() -> None:
    q = Queue(maxsize=1)
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(block=False)
    with pytest.raises(Empty):
        q.get(timeout=0.05)
    q.put_nowait("a")
    assert q.full()
    with pytest.raises(Full):
        q.put_nowait("b")
    with pytest.raises(Full):
        q.put("b", timeout=0.05)
    assert q.get_nowait() == "a"
    with pytest.raises(ValueError, match="timeout=-1"):
        q.get(timeout=-1)


def test_batches_go_in_whole_or_not_at_all() -> None:
    q = Queue(maxsize=3)
    q.put_nowait_batch([1, 2])
    with pytest.raises(Full, match="cannot add 2 items"):
        q.put_nowait_batch([3, 4])
    assert q.qsize() == 2
    with pytest.raises(Empty, match="cannot get 3 items"):
        q.get_nowait_batch(3)
    assert q.get_nowait_batch(2) == [1, 2]
    assert q.get_nowait_batch(0) == []
    with pytest.raises(TypeError):
        q.get_nowait_batch("2")
    with pytest.raises(TypeError):
        q.put_nowait_batch(5)


@sluice.remote
def produce(q, n):
    for i in range(n):
        q.put(i)
    return n


@sluice.remote
class Consumer:
    def take(self, q, n):
        return [q.get(timeout=60) for _ in range(n)]


def test_a_blocked_get_in_an_actor_waits_for_a_task_to_put() -> None:
    q = Queue(maxsize=2)  # the producer blocks on a full queue until the consumer takes
    taken = Consumer.remote().take.remote(q, 20)
    assert sluice.get(produce.remote(q, 20)) == 20
    assert sluice.get(taken) == list(range(20))


@sluice.remote
def queue_made_in_a_task(items):
    q = Queue()
    q.put_nowait_batch(items)
    return q.get_nowait_batch(len(items))


def test_a_task_can_make_and_use_its_own_queue() -> None:
    assert sluice.get(queue_made_in_a_task.remote([1, 2, 3]), timeout=60) == [1, 2, 3]


def test_a_blocked_get_does_not_stop_other_callers() -> None:
    q = Queue()
    waiting = Consumer.remote().take.remote(q, 1)
    with pytest.raises(Empty):  # a second blocked get times out beside the consumer's
        q.get(timeout=0.2)
    assert q.qsize() == 0
    q.put("x")
    assert sluice.get(waiting) == ["x"]


def test_actor_options_reach_the_actor() -> None:
    q = Queue(actor_options={"num_cpus": 0, "max_concurrency": 10})
    q.put(1)
    assert q.get() == 1
    with pytest.raises(ValueError, match="no_such_option"):
        Queue(actor_options={"no_such_option": 1})


def test_shutdown_stops_the_actor() -> None:
    q = Queue()
    actor = q.actor
    q.put(1)
    q.shutdown()
    with pytest.raises(ActorDiedError):
        sluice.get(actor.qsize.remote())
    with pytest.raises(RuntimeError, match="shut down"):
        q.put(2)
    q.shutdown()  # twice is fine
    Queue().shutdown(force=True)


def test_async_put_and_get() -> None:
    import asyncio

    async def main(q: Queue) -> list:
        await q.put_async(1)
        await q.put_async(2, block=False)
        got = [await q.get_async(), await q.get_async(block=False)]
        with pytest.raises(Empty):
            await q.get_async(timeout=0.05)
        return got

    assert asyncio.run(main(Queue())) == [1, 2]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"maxsize": "a"}, r"Queue\(maxsize='a'\): give an int"),
    ({"maxsize": True}, r"Queue\(maxsize=True\): give an int"),
    ({"actor_options": [1]}, r"Queue\(actor_options=\[1\]\): give a dict"),
])
def test_bad_arguments_are_refused_naming_them(kwargs, message) -> None:
    with pytest.raises(TypeError, match=message):
        Queue(**kwargs)
