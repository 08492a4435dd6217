"""An actor ending itself: ``sluice.actor.exit_actor()`` and ``handle.__ray_terminate__``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import sluice
from sluice.exceptions import ActorDiedError, RayActorError


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


def wait_until(condition, what: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.02)


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie the driver has not reaped yet counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


@sluice.remote(max_restarts=3)
class Service:
    def __init__(self, farewell: str | None = None):
        if farewell is not None:
            import atexit

            atexit.register(lambda: Path(farewell).write_text("bye"))
        self.calls = 0

    def work(self) -> int:
        self.calls += 1
        return self.calls

    def pid(self) -> int:
        return os.getpid()

    def stop(self) -> None:
        sluice.actor.exit_actor()
        raise AssertionError("exit_actor returned")


def test_exit_actor_fails_its_call_and_every_later_one_and_does_not_restart(tmp_path) -> None:
    farewell = tmp_path / "farewell"
    actor = Service.remote(str(farewell))
    pid = sluice.get(actor.pid.remote())
    stopping, queued = actor.stop.remote(), actor.work.remote()
    with pytest.raises(ActorDiedError, match="Service.stop: the actor exited on purpose"):
        sluice.get(stopping)
    with pytest.raises(ActorDiedError, match="exit_actor"):
        sluice.get(queued)
    # max_restarts=3 does not bring it back: the exit was asked for, not a crash.
    with pytest.raises(RayActorError):
        sluice.get(actor.work.remote())
    wait_until(lambda: process_gone(pid), "the actor's process exits")
    wait_until(farewell.exists, "the actor's atexit handler runs")
    assert farewell.read_text() == "bye"


def test_ray_terminate_runs_the_calls_queued_before_it() -> None:
    actor = Service.remote()
    before = [actor.work.remote() for _ in range(3)]
    terminated = actor.__ray_terminate__.remote()
    after = actor.work.remote()
    assert sluice.get(before) == [1, 2, 3]
    with pytest.raises(ActorDiedError, match="__ray_terminate__"):
        sluice.get(terminated)
    with pytest.raises(ActorDiedError):
        sluice.get(after)


def test_a_named_actor_that_exits_frees_its_name() -> None:
    actor = Service.options(name="exiting-service").remote()
    with pytest.raises(ActorDiedError):
        sluice.get(actor.stop.remote())
    wait_until(lambda: "exiting-service" not in {a["name"] for a in sluice.util.list_named_actors(True)},
               "the name is released")
    again = Service.options(name="exiting-service").remote()
    assert sluice.get(again.work.remote()) == 1
    sluice.kill(again)


@sluice.remote
class AsyncService:
    async def stop(self) -> None:
        sluice.actor.exit_actor()

    async def ping(self) -> str:
        return "pong"


@sluice.remote(max_concurrency=3)
class ThreadedService:
    def stop(self) -> None:
        sluice.actor.exit_actor()

    def ping(self) -> str:
        return "pong"


@pytest.mark.parametrize("cls", [AsyncService, ThreadedService], ids=["async", "threaded"])
def test_async_and_threaded_actors_exit_too(cls) -> None:
    actor = cls.remote()
    assert sluice.get(actor.ping.remote()) == "pong"
    with pytest.raises(ActorDiedError, match="exited on purpose"):
        sluice.get(actor.stop.remote())
    with pytest.raises(ActorDiedError):
        sluice.get(actor.ping.remote())


def test_async_actor_exit_raises_rays_asyncio_actor_exit_in_the_method() -> None:
    @sluice.remote
    class Catcher:
        async def stop(self) -> str:
            try:
                sluice.actor.exit_actor()
            except sluice.exceptions.AsyncioActorExit as err:
                return type(err).__name__
            return "nothing raised"

    assert sluice.get(Catcher.remote().stop.remote()) == "AsyncioActorExit"


def test_exit_actor_in_the_constructor_fails_the_creation() -> None:
    @sluice.remote
    class Quitter:
        def __init__(self):
            sluice.actor.exit_actor()

        def ping(self) -> str:
            return "pong"

    with pytest.raises(ActorDiedError, match="Quitter.__init__: the actor exited on purpose"):
        sluice.get(Quitter.remote().ping.remote())


def test_exit_actor_outside_an_actor_is_a_type_error() -> None:
    @sluice.remote
    def task() -> None:
        sluice.actor.exit_actor()

    with pytest.raises(TypeError, match="called in a task, not an actor"):
        sluice.get(task.remote())
    with pytest.raises(TypeError, match=r"outside an actor \(in the driver\)"):
        sluice.actor.exit_actor()
