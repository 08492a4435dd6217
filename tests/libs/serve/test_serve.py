"""sluice.serve end to end on the local runtime: real replica actors, real sockets.

Deploy, call through handles (methods, responses passed on, streams, awaiting in replicas),
replace dead and unhealthy replicas, reconfigure in place, batch, and refuse bad input.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

import sluice
import sluice.serve as serve
from sluice.libs.serve.exceptions import RayServeException
from tests.libs.serve.helpers import eventually, free_port

DEADLINE_S = 90


@pytest.fixture(scope="module")
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=16)
    yield
    serve.shutdown()
    sluice.shutdown()


@pytest.fixture(autouse=True)
def clean(runtime: None) -> Iterator[None]:
    serve.start(http_options={"port": free_port()})  # not 8000: the machine is shared
    yield
    serve.shutdown()


@serve.deployment
class Model:
    def __init__(self, k: int = 1) -> None:
        self.k = k

    def __call__(self, x: int) -> int:
        return x + self.k

    def mul(self, x: int) -> int:
        return x * 10

    def pid(self) -> int:
        return os.getpid()

    def fail(self, message: str) -> None:
        raise ValueError(message)

    def count(self, n: int) -> Iterator[int]:
        yield from range(n)


@serve.deployment
class Ingress:
    def __init__(self, model: Any) -> None:
        self.model = model

    async def __call__(self, x: int) -> int:
        return await self.model.remote(x) + 100

    async def chained(self, x: int) -> int:
        # a response passed on inside a replica: resolved where it is used
        return await self.model.remote(self.model.mul.remote(x))

    async def stream(self, n: int) -> list:
        return [i async for i in self.model.options(stream=True).count.remote(n)]


def test_run_returns_the_ingress_handle_and_calls_reach_the_model() -> None:
    handle = serve.run(Ingress.bind(Model.bind(5)))
    assert handle.remote(1).result(timeout_s=DEADLINE_S) == 106
    assert handle.chained.remote(2).result() == 25
    model = serve.get_deployment_handle("Model", "default")
    assert model.mul.remote(3).result() == 30
    assert model.options(method_name="mul").remote(4).result() == 40
    assert serve.get_app_handle("default").remote(0).result() == 105
    app = serve.status().applications["default"]
    assert app.status == "RUNNING" and set(app.deployments) == {"Ingress", "Model"}


def test_a_response_passed_to_another_call_is_resolved_without_waiting() -> None:
    model = serve.run(Model.bind(1))
    first = model.mul.remote(2)  # not waited for
    assert model.remote(first).result() == 21
    assert model.remote(x=model.remote(1)).result() == 3


def test_streams_from_the_driver_and_inside_a_replica() -> None:
    handle = serve.run(Ingress.bind(Model.bind()))
    model = serve.get_deployment_handle("Model")
    assert list(model.options(stream=True).count.remote(4)) == [0, 1, 2, 3]
    assert handle.stream.remote(3).result() == [0, 1, 2]


def test_a_function_deployment_answers() -> None:
    @serve.deployment
    def shout(text: str) -> str:
        return text.upper()

    assert serve.run(shout.bind(), name="f", route_prefix="/f").remote("hi").result() == "HI"


def test_a_raising_method_raises_its_error_at_the_caller_and_the_replica_keeps_serving() -> None:
    model = serve.run(Model.bind())
    with pytest.raises(ValueError, match="bad input 42"):
        model.fail.remote("bad input 42").result()
    assert model.remote(1).result() == 2


def test_a_sigkilled_replica_is_replaced_and_no_call_goes_to_it_afterwards() -> None:
    model = serve.run(Model.options(num_replicas=2).bind())
    pids = eventually(lambda: {model.pid.remote().result() for _ in range(40)} if len(
        {model.pid.remote().result() for _ in range(40)}) == 2 else None, "both replicas answer")
    victim = sorted(pids)[0]
    os.kill(victim, signal.SIGKILL)
    # A call in flight at the kill may fail; once the router saw the channel break, no call
    # goes to the dead replica again: every call succeeds.
    eventually(lambda: all(model.pid.remote().result() != victim for _ in range(10)),
               "calls succeed again")
    seen = {model.pid.remote().result() for _ in range(30)}
    assert victim not in seen
    replacement = eventually(
        lambda: ({model.pid.remote().result() for _ in range(40)} - pids) or None,
        "a replacement replica answers")
    assert victim not in replacement
    deployment = serve.status().applications["default"].deployments["Model"]
    assert deployment.replica_states["RUNNING"] == 2


@serve.deployment(health_check_period_s=0.1, health_check_timeout_s=30)
class Fragile:
    def __init__(self) -> None:
        self.broken = False

    def breaks(self) -> int:
        self.broken = True
        return os.getpid()

    def pid(self) -> int:
        return os.getpid()

    def check_health(self) -> None:
        if self.broken:
            raise RuntimeError("lost its model")


def test_a_replica_whose_check_health_raises_is_replaced() -> None:
    handle = serve.run(Fragile.bind())
    broken = handle.breaks.remote().result()
    eventually(lambda: handle.pid.remote().result() != broken, "a healthy replica answers")


@serve.deployment(user_config={"threshold": 1})
class Tunable:
    def __init__(self) -> None:
        self.threshold = None
        self.reconfigured = 0

    def reconfigure(self, config: dict) -> None:
        self.threshold = config["threshold"]
        self.reconfigured += 1

    def state(self) -> tuple:
        return os.getpid(), self.threshold, self.reconfigured


def test_a_user_config_change_reconfigures_in_place_without_a_restart() -> None:
    handle = serve.run(Tunable.bind())
    pid, threshold, times = handle.state.remote().result()
    assert (threshold, times) == (1, 1)
    handle = serve.run(Tunable.options(user_config={"threshold": 7}).bind())
    assert handle.state.remote().result() == (pid, 7, 2)
    # any other change starts new replicas
    handle = serve.run(Tunable.options(user_config={"threshold": 7}, max_ongoing_requests=9).bind())
    eventually(lambda: handle.state.remote().result()[0] != pid, "a new replica answers")


@serve.deployment(max_ongoing_requests=16)
class Batcher:
    def __init__(self) -> None:
        self.sizes: list = []

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=30)
    async def double(self, xs: list) -> list:
        self.sizes.append(len(xs))
        return [x * 2 for x in xs]

    def batch_sizes(self) -> list:
        return self.sizes


def test_batched_calls_are_gathered_into_lists() -> None:
    handle = serve.run(Batcher.bind())
    responses = [handle.double.remote(i) for i in range(8)]
    assert [r.result() for r in responses] == [i * 2 for i in range(8)]
    assert handle.batch_sizes.remote().result() == [4, 4]


@serve.deployment
class Broken:
    def __init__(self) -> None:
        raise ValueError("no weights at /models/m.bin")


def test_a_constructor_that_raises_makes_run_raise_naming_the_deployment_and_error() -> None:
    with pytest.raises(RayServeException,
                       match=r"deployment 'Broken' .*ValueError: no weights at /models/m.bin"):
        serve.run(Broken.bind(), name="broken")
    assert serve.status().applications["broken"].status == "DEPLOY_FAILED"
    fixed = serve.run(Model.options(name="Broken").bind(3), name="broken")
    assert fixed.remote(1).result() == 4


def test_handles_to_unknown_apps_and_deployments_are_refused() -> None:
    serve.run(Model.bind())
    with pytest.raises(RayServeException, match=r"no app named 'nope' is running \(apps: \['default'\]\)"):
        serve.get_app_handle("nope")
    with pytest.raises(RayServeException, match=r"has no deployment 'Nope' \(its deployments: \['Model'\]\)"):
        serve.get_deployment_handle("Nope", "default")
    stray = serve.DeploymentHandle("Nope", "default")
    with pytest.raises(ValueError, match=r"no deployment 'Nope' in app 'default'"):
        stray.remote(1).result(timeout_s=DEADLINE_S)


def test_two_apps_on_one_route_prefix_are_refused() -> None:
    serve.run(Model.bind(), name="a", route_prefix="/m")
    with pytest.raises(ValueError, match=r"route_prefix '/m' is already taken by app 'a'; give app 'b' another"):
        serve.run(Model.bind(), name="b", route_prefix="/m")


def test_delete_stops_an_app_and_its_handles_fail() -> None:
    model = serve.run(Model.bind(), name="gone", route_prefix=None)
    assert model.remote(1).result() == 2
    serve.delete("gone")
    assert "gone" not in serve.status().applications

    def fails_naming_the_app() -> bool:
        try:
            model.remote(1).result(timeout_s=5)
        except TimeoutError:
            return False
        except Exception as exc:  # noqa: BLE001 - the error we wait for
            return "'gone'" in str(exc)
        return False

    eventually(fails_naming_the_app, "calls to a deleted app fail naming it")


def test_replica_context_inside_and_outside_a_replica() -> None:
    @serve.deployment
    class WhoAmI:
        def __call__(self) -> tuple:
            ctx = serve.get_replica_context()
            return ctx.app_name, ctx.deployment, ctx.replica_id.startswith("ctx#WhoAmI#")

    assert serve.run(WhoAmI.bind(), name="ctx", route_prefix=None).remote().result() == (
        "ctx", "WhoAmI", True)
    with pytest.raises(RuntimeError, match="outside a replica"):
        serve.get_replica_context()


def test_responses_are_awaitable_in_the_drivers_own_async_code() -> None:
    import asyncio

    model = serve.run(Model.bind(2))

    async def main() -> list:
        return list(await asyncio.gather(*(model.remote(i) for i in range(5))))

    assert asyncio.run(main()) == [2, 3, 4, 5, 6]
    assert asyncio.run(main()) == [2, 3, 4, 5, 6]  # a second loop gets its own router
    sync_made = model.remote(10)  # made in sync code, awaited in async code

    async def await_it() -> int:
        return await sync_made

    assert asyncio.run(await_it()) == 12


def test_a_redeploy_with_new_arguments_replaces_replicas_with_no_failed_call() -> None:
    import threading

    model = serve.run(Model.options(num_replicas=2).bind(1))
    answers: list = []
    failures: list = []
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            try:
                answers.append(model.remote(0).result(timeout_s=DEADLINE_S))
            except Exception as exc:  # noqa: BLE001 - counted
                failures.append(exc)

    caller = threading.Thread(target=stream)
    caller.start()
    try:
        eventually(lambda: len(answers) > 20, "calls answered before the redeploy")
        serve.run(Model.options(num_replicas=2).bind(2))
        done = len(answers)
        eventually(lambda: len(answers) > done + 20 and answers[-1] == 2,
                   "calls answered by the new version")
    finally:
        stop.set()
        caller.join()
    assert failures == []
    assert set(answers) == {1, 2}
    assert serve.status().applications["default"].deployments["Model"].replica_states[
        "RUNNING"] == 2


def test_an_autoscaling_deployment_starts_its_initial_replicas_and_follows_its_target() -> None:
    from sluice.libs.serve.handle import controller

    scaled = Model.options(autoscaling_config={"min_replicas": 1, "max_replicas": 3,
                                               "initial_replicas": 2})
    model = serve.run(scaled.bind())

    def running() -> int:
        return serve.status().applications["default"].deployments["Model"].replica_states[
            "RUNNING"]

    assert running() == 2
    assert sluice.get(controller().set_target_replicas.remote("default#Model", 9)) == 3
    eventually(lambda: running() == 3, "three replicas run")
    eventually(lambda: len({model.pid.remote().result() for _ in range(60)}) == 3,
               "calls reach all three")
    assert sluice.get(controller().set_target_replicas.remote("default#Model", 1)) == 1
    eventually(lambda: running() == 1, "one replica runs")
    assert model.remote(1).result() == 2


@serve.deployment(max_ongoing_requests=2)
class Slow:
    """Each call runs until a file exists; records how many ran at once."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    async def hold(self, gate: str) -> int:
        import asyncio

        self.now += 1
        self.most = max(self.most, self.now)
        try:
            while not os.path.exists(gate):
                await asyncio.sleep(0.01)
        finally:
            self.now -= 1
        return self.most


def test_a_replica_runs_at_most_max_ongoing_requests_whichever_callers_send(tmp_path) -> None:
    from sluice.libs.serve.handle import controller

    gate = str(tmp_path / "open")
    slow = serve.run(Slow.bind())

    @sluice.remote
    def call_from_a_task(handle: Any, gate: str) -> int:  # another process: another router
        return handle.hold.remote(gate).result()

    mine = [slow.hold.remote(gate) for _ in range(2)]
    theirs = [call_from_a_task.remote(slow, gate) for _ in range(2)]
    eventually(lambda: sum(sluice.get(controller().ongoing_requests.remote("default#Slow"))
                           .values()) == 4, "four requests reach the replica")
    open(gate, "w").close()
    most = [r.result(timeout_s=DEADLINE_S) for r in mine] + sluice.get(theirs)
    assert max(most) == 2


def test_many_sequential_and_concurrent_calls_across_a_redeploy_all_answer() -> None:
    import threading

    model = serve.run(Model.options(num_replicas=2).bind(1))
    for i in range(10_000):  # one caller, back to back: every call answers, in order
        assert model.remote(i).result(timeout_s=DEADLINE_S) == i + 1
    answers = [0] * 8
    failures: list = []
    stop = threading.Event()

    def calls(j: int) -> None:
        while not stop.is_set():
            try:
                model.remote(j).result(timeout_s=DEADLINE_S)
                answers[j] += 1
            except Exception as exc:  # noqa: BLE001 - counted (a TimeoutError: a lost call)
                failures.append(exc)
                return

    callers = [threading.Thread(target=calls, args=(j,)) for j in range(8)]
    for caller in callers:
        caller.start()
    try:
        eventually(lambda: min(answers) > 50, "calls answered by every caller")
        serve.run(Model.options(num_replicas=2).bind(2))
        done = list(answers)
        eventually(lambda: all(a > d + 50 for a, d in zip(answers, done)) or failures,
                   "calls answered by every caller after the redeploy")
    finally:
        stop.set()
        for caller in callers:
            caller.join()
    assert failures == []
    assert model.remote(0).result(timeout_s=DEADLINE_S) == 2


@serve.deployment
class Threads:
    def __call__(self, request=None) -> str:
        import threading

        return threading.current_thread().name


def test_sync_methods_run_on_the_replica_loop_unless_the_threadpool_is_asked_for() -> None:
    on_loop = serve.run(Threads.bind(), name="loop", route_prefix="/loop")
    threadpool = serve.run(Threads.options(ray_actor_options={"runtime_env": {"env_vars": {
        "RAY_SERVE_RUN_SYNC_IN_THREADPOOL": "1"}}}).bind(), name="pool", route_prefix="/pool")
    loop_thread = on_loop.remote().result(timeout_s=60)
    assert loop_thread != "sluice-serve-sync"
    assert threadpool.remote().result(timeout_s=60) == "sluice-serve-sync"


@serve.deployment(max_ongoing_requests=1)
class OneAtATime:
    async def __call__(self, gate: str) -> str:
        import asyncio

        while not os.path.exists(gate):
            await asyncio.sleep(0.01)
        return "done"

    async def count(self, n: int):
        for i in range(n):
            yield i


def test_a_request_queued_behind_a_sync_call_starts_once_that_call_ends(tmp_path) -> None:
    import threading

    handle = serve.run(OneAtATime.bind(), name="one", route_prefix="/one")
    gate = tmp_path / "open"
    held = handle.remote(str(gate))  # sent from this thread: it holds the replica's one slot
    items: list = []
    streamed = threading.Thread(target=lambda: items.extend(
        handle.options(stream=True).count.remote(3)))  # a stream waits in the router's queue
    streamed.start()
    from sluice.libs.serve import handle as handles

    def queued() -> int:
        [router] = [r for routers in list(handles._ROUTERS.values()) for d, r in routers.items()
                    if d == "one#OneAtATime"]
        return router.num_queued

    eventually(lambda: queued() == 1, "the stream waits in the router for the held slot")
    gate.touch()
    assert held.result(timeout_s=60) == "done"
    # the end of the held call wakes the queued stream at once, not at the next membership
    # update (a 30 s long poll)
    streamed.join(20)
    assert items == [0, 1, 2]
