"""Actors: one process each, ordered calls, errors, restarts, concurrency, names, handles in tasks."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator

import pytest

import sluice
from sluice.exceptions import ActorDiedError, TaskError


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


@sluice.remote
class Recorder:
    def __init__(self):
        self.items: list[int] = []

    def append(self, i: int) -> int:
        self.items.append(i)
        return len(self.items)

    def read(self) -> list[int]:
        return self.items

    def pid(self) -> int:
        return os.getpid()

    def fail_validation(self, value: int) -> None:
        raise ValueError(f"value {value} is out of range")

    def crash(self) -> None:
        os._exit(1)

    @sluice.method(num_returns=2)
    def split(self) -> tuple[int, int]:
        return len(self.items), sum(self.items)


@sluice.remote
class BrokenAtBirth:
    def __init__(self, config: dict):
        raise KeyError(f"missing setting {sorted(config)}")

    def ping(self) -> str:
        return "pong"


@sluice.remote
class Threaded:
    """Four calls can all return only if the actor runs them at the same time."""

    def __init__(self):
        self.barrier = threading.Barrier(4, timeout=30)

    def ready(self) -> bool:
        return True

    def meet(self) -> int:
        self.barrier.wait()
        return threading.get_ident()


@sluice.remote
class AsyncMeeting:
    """Four coroutines can all return only if they run at the same time on the event loop."""

    def __init__(self):
        self.arrived = 0
        self.all_here: asyncio.Event | None = None

    async def meet(self, parties: int) -> int:
        if self.all_here is None:
            self.all_here = asyncio.Event()
        self.arrived += 1
        if self.arrived == parties:
            self.all_here.set()
        await asyncio.wait_for(self.all_here.wait(), timeout=30)
        return self.arrived

    async def ready(self) -> bool:
        return True


@sluice.remote
def call_actor_from_task(recorder, value: int) -> list[int]:
    sluice.get(recorder.append.remote(value), timeout=30)
    return sluice.get(recorder.read.remote(), timeout=30)


def test_each_actor_has_its_own_process() -> None:
    a, b = Recorder.remote(), Recorder.remote()
    pid_a, pid_b = sluice.get([a.pid.remote(), b.pid.remote()], timeout=30)
    assert len({pid_a, pid_b, os.getpid()}) == 3
    assert sluice.get(a.pid.remote()) == pid_a  # the same process serves every call
    sluice.kill(a)
    sluice.kill(b)


def test_method_calls_run_in_submission_order() -> None:
    r = Recorder.remote()
    lengths = sluice.get([r.append.remote(i) for i in range(200)], timeout=30)
    assert lengths == list(range(1, 201))
    assert sluice.get(r.read.remote()) == list(range(200))
    assert sluice.get(list(r.split.remote())) == [200, sum(range(200))]
    sluice.kill(r)


def test_a_method_that_raises_leaves_the_actor_alive() -> None:
    r = Recorder.remote()
    sluice.get(r.append.remote(1))
    with pytest.raises(ValueError, match="value 7 is out of range") as info:
        sluice.get(r.fail_validation.remote(7), timeout=30)
    assert isinstance(info.value, TaskError)
    message = str(info.value)
    assert "Traceback" in message and "fail_validation" in message
    assert sluice.get(r.append.remote(2)) == 2  # state survived the error
    sluice.kill(r)


def test_a_constructor_error_surfaces_at_every_call_with_its_type_and_traceback() -> None:
    broken = BrokenAtBirth.remote({"host": 1})
    for _ in range(2):
        with pytest.raises(KeyError, match="missing setting") as info:
            sluice.get(broken.ping.remote(), timeout=30)
        assert isinstance(info.value, TaskError)
        assert "__init__" in str(info.value) and "Traceback" in str(info.value)


def test_a_constructor_error_makes_calls_raise_actor_died_error() -> None:
    # ActorDiedError's contract: "the actor's process is gone (killed, crashed past
    # max_restarts, or its constructor raised)"; the original type stays catchable.
    broken = BrokenAtBirth.remote({})
    with pytest.raises(ActorDiedError) as info:
        sluice.get(broken.ping.remote(), timeout=30)
    assert isinstance(info.value, KeyError)


def test_max_restarts_one_restarts_once_with_fresh_state_then_dies_for_good() -> None:
    r = Recorder.options(max_restarts=1).remote()
    first_pid = sluice.get(r.pid.remote(), timeout=30)
    assert sluice.get(r.append.remote(1)) == 1
    with pytest.raises(ActorDiedError, match="restarted"):
        sluice.get(r.crash.remote(), timeout=30)
    assert sluice.get(r.append.remote(2), timeout=30) == 1  # a fresh instance: the list restarted
    assert sluice.get(r.pid.remote()) != first_pid
    with pytest.raises(ActorDiedError, match="max_restarts"):
        sluice.get(r.crash.remote(), timeout=30)
    with pytest.raises(ActorDiedError, match="max_restarts"):
        sluice.get(r.append.remote(3), timeout=30)


def test_without_restarts_a_crash_kills_the_actor() -> None:
    r = Recorder.remote()
    with pytest.raises(ActorDiedError, match="exit code 1"):
        sluice.get(r.crash.remote(), timeout=30)
    with pytest.raises(ActorDiedError):
        sluice.get(r.read.remote(), timeout=30)


def test_max_concurrency_runs_calls_in_concurrent_threads() -> None:
    t = Threaded.options(max_concurrency=4).remote()
    assert sluice.get(t.ready.remote(), timeout=30)
    threads = sluice.get([t.meet.remote() for _ in range(4)], timeout=60)  # all 4 at once
    assert len(set(threads)) == 4
    sluice.kill(t)


def test_async_methods_run_concurrently_on_the_event_loop() -> None:
    a = AsyncMeeting.remote()
    assert sluice.get(a.ready.remote(), timeout=30)
    # Each awaits the last arrival: all return only if the four overlapped on the loop.
    assert sluice.get([a.meet.remote(4) for _ in range(4)], timeout=60) == [4, 4, 4, 4]
    sluice.kill(a)


def test_named_actor_is_found_by_get_actor_and_a_duplicate_name_is_refused() -> None:
    r = Recorder.options(name="the-recorder").remote()
    sluice.get(r.append.remote(42))
    found = sluice.get_actor("the-recorder")
    assert sluice.get(found.read.remote()) == [42]
    with pytest.raises(ValueError, match="an actor named 'the-recorder' already exists"):
        Recorder.options(name="the-recorder").remote()
    sluice.kill(r)
    with pytest.raises(ValueError, match="no actor named 'the-recorder'"):
        sluice.get_actor("the-recorder")
    again = Recorder.options(name="the-recorder").remote()  # the name is free once it died
    assert sluice.get(again.read.remote(), timeout=30) == []
    sluice.kill(again)


def test_an_actor_handle_passed_to_a_task_can_be_called_there() -> None:
    r = Recorder.remote()
    sluice.get(r.append.remote(1))
    assert sluice.get(call_actor_from_task.remote(r, 2), timeout=30) == [1, 2]
    assert sluice.get(r.read.remote()) == [1, 2]
    sluice.kill(r)


def test_an_actor_class_defined_in_a_function_starts_actors_from_inside_an_actor() -> None:
    # Classes local to a function travel by value: the actor class inside the constructor
    # is rebuilt in the worker and must still check its arguments and start its actor.
    @sluice.remote
    class Leaf:
        def __init__(self, value: int):
            self.value = value

        def read(self) -> int:
            return self.value

    @sluice.remote
    class Supervisor:
        def __init__(self, values: list[int]):
            self.leaves = [Leaf.remote(v) for v in values]

        def read(self) -> list[int]:
            return sluice.get([leaf.read.remote() for leaf in self.leaves])

        def misuse(self) -> None:
            Leaf.remote(1, 2)

    supervisor = Supervisor.remote([1, 2, 3])
    assert sluice.get(supervisor.read.remote()) == [1, 2, 3]
    with pytest.raises(TypeError, match="Leaf.remote()"):
        sluice.get(supervisor.misuse.remote())


def test_actor_misuse_raises_helpful_errors() -> None:
    with pytest.raises(TypeError, match=r"cannot be instantiated directly; use Recorder\.remote"):
        Recorder()
    r = Recorder.remote()
    with pytest.raises(TypeError, match=r"cannot be called directly.*\.remote\("):
        r.append(1)
    with pytest.raises(AttributeError, match="no method 'appendx'"):
        r.appendx
    sluice.kill(r)


def process_gone(pid: int, timeout: float = 60.0) -> bool:
    """Whether ``pid`` exits within ``timeout`` (a put drives the driver's bookkeeping)."""
    import gc

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gc.collect()
        sluice.put(0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


def test_an_actor_stops_after_its_last_handle_is_dropped_and_its_calls_finish() -> None:
    recorder = Recorder.remote()
    pid = sluice.get(recorder.pid.remote(), timeout=30)
    pending = [recorder.append.remote(i) for i in range(50)]
    del recorder
    assert sluice.get(pending, timeout=30)[-1] == 50  # calls made before the drop all run
    assert process_gone(pid)


def test_a_named_actor_or_one_whose_handle_was_passed_on_lives_without_driver_handles() -> None:
    named = Recorder.options(name="kept-by-name").remote()
    named_pid = sluice.get(named.pid.remote(), timeout=30)
    shared = Recorder.remote()
    shared_pid = sluice.get(shared.pid.remote(), timeout=30)
    assert sluice.get(call_actor_from_task.remote(shared, 7), timeout=30) == [7]  # pickled
    del named, shared
    assert not process_gone(named_pid, timeout=0.5)
    assert not process_gone(shared_pid, timeout=0.5)
    assert sluice.get(sluice.get_actor("kept-by-name").pid.remote(), timeout=30) == named_pid


# -- max_task_retries ----------------------------------------------------------------------

@sluice.remote
class CrashOnce:
    """Its process dies on the first call that finds no marker file (and leaves one)."""

    def run(self, marker: str, value: int) -> int:
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return value

    def echo(self, value: int) -> int:
        return value


def test_max_task_retries_runs_a_call_again_on_the_restarted_actor(tmp_path) -> None:
    actor = CrashOnce.options(max_restarts=1, max_task_retries=1).remote()
    crashing = actor.run.remote(str(tmp_path / "crashed"), 7)
    behind = [actor.echo.remote(i) for i in range(5)]  # queued behind it: run after, in order
    assert sluice.get(crashing, timeout=60) == 7
    assert sluice.get(behind, timeout=60) == list(range(5))


def test_without_max_task_retries_the_call_in_flight_fails(tmp_path) -> None:
    actor = CrashOnce.options(max_restarts=1).remote()  # max_task_retries defaults to 0
    with pytest.raises(ActorDiedError, match="max_task_retries"):
        sluice.get(actor.run.remote(str(tmp_path / "crashed"), 7), timeout=60)
    assert sluice.get(actor.echo.remote(3), timeout=60) == 3  # restarted for later calls


def test_max_task_retries_stops_when_restarts_are_spent(tmp_path) -> None:
    actor = CrashOnce.options(max_restarts=0, max_task_retries=-1).remote()
    with pytest.raises(ActorDiedError, match="max_restarts is spent"):
        sluice.get(actor.run.remote(str(tmp_path / "crashed"), 7), timeout=60)


def test_max_task_retries_must_be_an_int() -> None:
    with pytest.raises(ValueError, match="max_task_retries=1.5"):
        CrashOnce.options(max_task_retries=1.5)


@sluice.remote
class Holder:
    def __init__(self, value):
        self.total = float(value.sum())

    def get(self) -> float:
        return self.total


@sluice.remote
def create_named(name: str, refs: list) -> str:
    handle = Holder.options(name=name).remote(refs[0])
    try:
        sluice.get(handle.get.remote())
    except ValueError as err:  # refused: the name is taken (its calls raise why)
        return str(err)
    return "created"


def _holds(ref) -> int:
    """How many holders the runtime counts on ``ref``'s object (actors, tasks in flight)."""
    from sluice.executor import context

    scheduler = context.current().scheduler
    with scheduler.locked():
        return scheduler.objects[ref.id].holds


def test_an_actor_a_task_fails_to_create_does_not_release_arguments_others_hold() -> None:
    # A creation refused inside a task (its name is taken) must leave the holds others have on
    # its arguments as they were: releasing holds it never took frees values still needed.
    import numpy as np

    ref = sluice.put(np.ones(1 << 18))  # 2 MB: a shared-memory segment, counted
    assert sluice.get(create_named.remote("holder", [ref])) == "created"
    holder = sluice.get_actor("holder")
    assert sluice.get(holder.get.remote()) == float(1 << 18)
    before = _holds(ref)
    assert "already exists" in sluice.get(create_named.remote("holder", [ref]))
    assert _holds(ref) == before
    assert sluice.get(holder.get.remote()) == float(1 << 18)
    assert float(sluice.get(ref).sum()) == float(1 << 18)
