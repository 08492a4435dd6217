"""The worker loop's bookkeeping, driven in-process over a real socket pair."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from multiprocessing.connection import Connection

import pytest

from sluice.executor import protocol as P
from sluice.executor.calls import dumps_function, encode_call
from sluice.executor.worker import Worker
from sluice.store import serialization


def double(x: int) -> int:
    return 2 * x


@pytest.fixture
def worker_and_driver() -> Iterator[tuple[Worker, Connection]]:
    here, there = socket.socketpair()
    worker = Worker(Connection(here.detach()), "0-test", 7)
    driver = Connection(there.detach())
    yield worker, driver
    worker.conn.close()
    driver.close()


def task(task_id: int, fn: tuple[int, bytes] | None, fn_id: int, arg: int) -> tuple:
    blob, _, _, _ = encode_call("double", (arg,), {}, None)
    return (P.TASK, task_id, fn_id, fn[1] if fn else None, blob, [], [100 + task_id], False, None,
            "double")


def test_a_function_that_arrives_with_a_bounced_task_is_kept(worker_and_driver) -> None:
    worker, driver = worker_and_driver
    fn_id, data = dumps_function(double, "double")
    worker.blocked = 1  # inside a nested get: new tasks are handed back unstarted
    worker.handle_batch([task(1, (fn_id, data), fn_id, 3)])
    worker.blocked = 0
    worker.flush()
    assert P.unpack(driver.recv_bytes()) == [(P.BOUNCE, [1])]
    # The driver counts the function as known here, so the next task comes without it.
    worker.run_task(task(2, None, fn_id, 21))
    worker.flush()
    (done,) = P.unpack(driver.recv_bytes())
    assert done[0] == P.DONE and done[1] == 2
    ((oid, spec, _),) = done[2]
    assert oid == 102 and serialization.loads(spec[1]) == 42


def test_a_nested_task_sent_to_a_waiting_worker_runs_inside_its_get(worker_and_driver) -> None:
    worker, driver = worker_and_driver
    fn_id, data = dumps_function(double, "double")
    worker.blocked = 1  # inside a nested get
    bounced = task(1, (fn_id, data), fn_id, 3)
    nested = (P.NESTED, 1, task(2, None, fn_id, 21))
    worker.handle_batch([bounced, nested])
    assert list(worker.nested[1]) == [nested[2]] and not worker.local
    worker.pump(None)  # what the waiting get does first: run the task it waits for
    worker.blocked = 0
    worker.flush()
    bounce, done = P.unpack(driver.recv_bytes())
    assert bounce == (P.BOUNCE, [1])
    assert done[0] == P.DONE and done[1] == 2
    ((oid, spec, _),) = done[2]
    assert oid == 102 and serialization.loads(spec[1]) == 42


def test_nested_tasks_that_could_wait_behind_a_deeper_get_are_handed_back(worker_and_driver) -> None:
    worker, driver = worker_and_driver
    fn_id, data = dumps_function(double, "double")
    worker.blocked = 1
    worker.handle_batch([(P.NESTED, 1, task(1, (fn_id, data), fn_id, 1)),
                         (P.NESTED, 1, task(2, None, fn_id, 2))])
    worker.on_block()  # the task running inside the get enters a get of its own: depth 2
    # Sent for the get at depth 1 while the one at depth 2 runs: it may wait for them.
    worker.handle_batch([(P.NESTED, 1, task(3, None, fn_id, 3))])
    worker.flush()
    assert P.unpack(driver.recv_bytes()) == [(P.BOUNCE, [1, 2]), (P.BOUNCE, [3])]
    assert not any(worker.nested.values()) and not worker.local
