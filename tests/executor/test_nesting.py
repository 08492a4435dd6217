"""Nested gets (sluice/executor/nesting.py): a task waiting in a get runs the tasks it
waits for inside its own worker, so recursive programs need no process per waiting task."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import sluice
from sluice.exceptions import TaskCancelledError, TaskError
from sluice.executor import context, nesting
from tests.executor.helpers import wait_until


@pytest.fixture
def runtime(request) -> Iterator[None]:
    """A runtime of ``request.param`` CPUs (2 unless parametrized) and one custom "slot"."""
    sluice.init(num_cpus=getattr(request, "param", 2), resources={"slot": 1})
    yield
    sluice.shutdown()


@sluice.remote
def fib(n: int) -> tuple[int, frozenset[int]]:
    """fib(n) and the pids of every worker process that ran a part of it."""
    if n < 2:
        return n, frozenset({os.getpid()})
    (a, pa), (b, pb) = sluice.get([fib.remote(n - 1), fib.remote(n - 2)])
    return a + b, pa | pb | {os.getpid()}


@sluice.remote
def square(x: int) -> int:
    return x * x


@sluice.remote
def fan_out(first: int, count: int) -> int:
    return sum(sluice.get([square.remote(first + i) for i in range(count)]))


@sluice.remote
def fails_at(n: int, bad: int) -> int:
    """A recursion two levels deep whose leaf ``bad`` raises."""
    if n == bad:
        raise ValueError(f"leaf {n} is bad")
    if n < 2:
        return n
    return sum(sluice.get([fails_at.remote(n - 1, bad), fails_at.remote(n - 2, bad)]))


@sluice.remote
def depth(n: int) -> tuple[int, frozenset[int]]:
    """A chain of ``n`` tasks, each waiting for the next: n nested gets deep."""
    if n == 0:
        return 0, frozenset({os.getpid()})
    below, pids = sluice.get(depth.remote(n - 1))
    return below + 1, pids | {os.getpid()}


@sluice.remote(resources={"slot": 1})
def slotted(x: int) -> int:
    return x + 1


@sluice.remote
def waits_for_slotted(x: int) -> int:
    # Another demand than this task's: never run nested; the waiting worker lends its CPU.
    return sluice.get(slotted.remote(x))


@sluice.remote
def reads_first(refs: list) -> int:
    return sluice.get(refs[0]) + 1


@sluice.remote
def siblings(n: int) -> list[int]:
    # Both run nested in this worker; the first to run waits for the other, which may be
    # queued behind it there (short tasks are queued a few at a time): it must come back.
    a = square.remote(n)
    return sluice.get([reads_first.remote([a]), a])


@sluice.remote(num_cpus=0)
class Mailbox:
    def __init__(self) -> None:
        self.refs: list = []

    def put(self, refs: list) -> None:
        self.refs = refs

    def take(self) -> list:
        return self.refs


@sluice.remote
def gate(folder: str) -> str:
    Path(folder, "started").write_text(str(os.getpid()))
    if not wait_until(Path(folder, "open").exists, timeout=120):
        raise TimeoutError("the test never opened the gate")
    return "opened"


@sluice.remote(max_retries=0)
def waits_for_gate(mailbox, folder: str) -> tuple[str, int]:
    child = gate.remote(folder)
    mailbox.put.remote([child])  # the driver cancels it (a ref in a list stays a ref)
    try:
        return sluice.get(child), os.getpid()
    except TaskCancelledError:
        return "cancelled", os.getpid()


@sluice.remote
class Submitter:
    def run(self) -> tuple[int, int, list[int]]:
        pids = sluice.get([pid_of.remote() for _ in range(4)])
        return os.getpid(), sum(sluice.get([square.remote(i) for i in range(5)])), pids


@sluice.remote
def pid_of() -> int:
    return os.getpid()


def test_recursive_fib_runs_on_a_bounded_number_of_processes(runtime) -> None:
    value, pids = sluice.get(fib.remote(10))
    assert value == 55
    # fib(10) is 177 tasks, 88 of them waiting in a get: a process per waiting task (as
    # before nested gets ran tasks) would be dozens; the waiting workers run them instead.
    assert len(pids) < 10, f"fib(10) ran in {len(pids)} worker processes"


def test_cpus_are_all_free_again_after_nested_gets(runtime) -> None:
    assert sluice.get(fib.remote(8))[0] == 21
    assert wait_until(lambda: sluice.available_resources()["CPU"] == 2.0), \
        sluice.available_resources()


def test_a_nested_fan_out_sums_right(runtime) -> None:
    parts = [fan_out.remote(p * 20, 20) for p in range(6)]
    assert sum(sluice.get(parts)) == sum(i * i for i in range(120))


def test_an_error_in_a_nested_task_reaches_the_driver_through_every_get(runtime) -> None:
    # A TaskError from the leaf's get, re-raised by each parent's get (its text names the
    # cause), and of the leaf's type as in Ray: `except ValueError` catches it at the driver.
    with pytest.raises(TaskError, match="leaf 3 is bad") as info:
        sluice.get(fails_at.remote(6, 3))
    assert isinstance(info.value, ValueError)
    assert sluice.get(fib.remote(6))[0] == 8  # the workers that raised still serve


def test_a_recursion_deeper_than_the_nesting_bound_completes(runtime) -> None:
    levels, pids = sluice.get(depth.remote(nesting.MAX_DEPTH + 8))
    assert levels == nesting.MAX_DEPTH + 8
    assert len(pids) >= 2  # past MAX_DEPTH the waiting worker lends its CPU to another one


@pytest.mark.parametrize("runtime", [1], indirect=True)
def test_nested_gets_complete_on_one_cpu(runtime) -> None:
    assert sluice.get(fib.remote(7))[0] == 13
    assert sum(sluice.get([fan_out.remote(0, 10), fan_out.remote(10, 10)])) == sum(
        i * i for i in range(20))


@pytest.mark.parametrize("runtime", [1], indirect=True)
def test_a_nested_task_waiting_for_a_sibling_queued_behind_it_completes(runtime) -> None:
    sluice.get([square.remote(i) for i in range(20)])  # square's duration is known: short
    for n in range(5):
        assert sluice.get(siblings.remote(n)) == [n * n + 1, n * n]


@pytest.mark.parametrize("runtime", [1], indirect=True)
def test_a_get_for_another_demand_lends_the_only_cpu(runtime) -> None:
    assert sluice.get(waits_for_slotted.remote(4)) == 5
    assert wait_until(lambda: sluice.available_resources()["CPU"] == 1.0)


@pytest.mark.parametrize("runtime", [1], indirect=True)
def test_force_cancelling_a_nested_task_does_not_kill_the_task_waiting_for_it(runtime, tmp_path) -> None:
    mailbox = Mailbox.remote()
    parent = waits_for_gate.remote(mailbox, str(tmp_path))
    assert wait_until(lambda: sluice.get(mailbox.take.remote()) != [])
    (child,) = sluice.get(mailbox.take.remote())
    assert wait_until((tmp_path / "started").exists)  # running, inside the parent's get
    sluice.cancel(child, force=True)
    (tmp_path / "open").touch()
    outcome, parent_pid = sluice.get(parent)
    assert outcome == "cancelled"
    assert int((tmp_path / "started").read_text()) == parent_pid  # it ran nested
    with pytest.raises(TaskCancelledError):
        sluice.get(child)


def test_an_actor_waiting_in_a_get_runs_no_task_itself(runtime) -> None:
    actor = Submitter.remote()
    actor_pid, total, pids = sluice.get(actor.run.remote())
    assert total == sum(i * i for i in range(5))
    assert actor_pid not in pids


def test_the_driver_tracks_no_nesting_once_all_is_done(runtime) -> None:
    assert sluice.get(fib.remote(9))[0] == 34
    s = context.current().scheduler
    with s.locked():
        state = [(w.blocked, w.nested, w.nest_waits, w.lent) for w in s.workers]
    assert all(st == (0, [], [], False) for st in state), state
