"""The controller scales deployments on the local runtime: real replicas, real load.

Autoscaling follows held requests up and back down, and a constant load settles at one
count; a redeploy replaces replicas in waves with no failed call; replicas that cannot be
scheduled are reported in the status.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

import sluice
import sluice.serve as serve
from tests.libs.serve.helpers import eventually, free_port

DEADLINE_S = 120
SMALL = {"num_cpus": 0.1}  # many replicas fit on the test runtime's CPUs
FAST = {"target_ongoing_requests": 2, "upscale_delay_s": 0.5, "metrics_interval_s": 0.1,
        "look_back_period_s": 0.5}


@pytest.fixture(scope="module")
def runtime() -> Iterator[None]:
    # replicas not started after 1 s (not 30) are reported; the runtime's workers read it
    os.environ["SLUICE_SERVE_SCHEDULE_WARNING_S"] = "1"
    sluice.init(num_cpus=4)
    yield
    serve.shutdown()
    sluice.shutdown()
    os.environ.pop("SLUICE_SERVE_SCHEDULE_WARNING_S", None)


@pytest.fixture(autouse=True)
def clean(runtime: None) -> Iterator[None]:
    serve.start(http_options={"port": free_port()})
    yield
    serve.shutdown()


def running(name: str, app: str = "default") -> int:
    return serve.status().applications[app].deployments[name].replica_states["RUNNING"]


@serve.deployment(max_ongoing_requests=20, ray_actor_options=SMALL)
class Held:
    """Calls wait until the test's gate file exists; ``work`` takes a short while."""

    async def hold(self, gate: str) -> int:
        import asyncio

        while not os.path.exists(gate):
            await asyncio.sleep(0.01)
        return os.getpid()

    async def work(self) -> int:
        import asyncio

        await asyncio.sleep(0.05)
        return os.getpid()


def test_held_requests_scale_a_deployment_up_and_it_scales_back_down_after(tmp_path) -> None:
    gate = str(tmp_path / "open")
    config = {"min_replicas": 1, "max_replicas": 6, "downscale_delay_s": 1.0, **FAST}
    handle = serve.run(Held.options(autoscaling_config=config).bind())
    assert running("Held") == 1
    held = [handle.hold.remote(gate) for _ in range(8)]  # 8 ongoing / 2 per replica = 4
    eventually(lambda: running("Held") == 4, "four replicas run under 8 held requests")
    open(gate, "w").close()
    assert len([r.result(timeout_s=DEADLINE_S) for r in held]) == 8
    eventually(lambda: running("Held") == 1, "back to min_replicas once the load is gone")
    assert serve.status().applications["default"].status == "RUNNING"


def test_a_constant_load_settles_at_one_count_and_stays(tmp_path) -> None:
    # The load is 8 requests held at the replicas, so the load the controller measures is
    # constant. (Closed-loop clients in this process are not: when their threads are starved
    # fewer requests reach the replicas, which is all the autoscaler counts so far.)
    config = {"min_replicas": 1, "max_replicas": 8, "downscale_delay_s": 2.0, **FAST}
    handle = serve.run(Held.options(autoscaling_config=config).bind())
    gate = tmp_path / "gate"
    held = [handle.hold.remote(str(gate)) for _ in range(8)]
    try:
        eventually(lambda: running("Held") == 4, "8 held requests scale the deployment to 4")
        counts = []
        end = time.monotonic() + 6.0  # the load is held for this long, the counts recorded
        while time.monotonic() < end:
            counts.append(running("Held"))
            time.sleep(0.1)
    finally:
        gate.touch()
    assert len({r.result(timeout_s=DEADLINE_S) for r in held}) >= 1
    changes = sum(1 for a, b in zip(counts, counts[1:]) if a != b)
    assert changes == 0, f"the replica count kept changing under a constant load: {counts}"
    assert counts[-1] == 4, counts  # 8 held / target_ongoing_requests 2


def test_requests_queued_at_a_handle_count_toward_scaling_up(tmp_path) -> None:
    # One request fits a replica: of 6 held, 1 runs there and 5 wait in this process's
    # router. Only the handle's reports tell the controller about those 5.
    gate = str(tmp_path / "open")
    config = {"min_replicas": 1, "max_replicas": 3, "downscale_delay_s": 600, **FAST,
              "target_ongoing_requests": 1}
    handle = serve.run(Held.options(max_ongoing_requests=1, autoscaling_config=config).bind())
    held = [handle.hold.remote(gate) for _ in range(6)]
    try:
        eventually(lambda: running("Held") == 3, "the requests queued at the handle scale it up")
    finally:
        open(gate, "w").close()
    assert len([r.result(timeout_s=DEADLINE_S) for r in held]) == 6


@serve.deployment(ray_actor_options=SMALL)
class Versioned:
    def __init__(self, version: int) -> None:
        self.version = version

    def __call__(self) -> int:
        return self.version


def test_a_rolling_update_replaces_a_fifth_of_the_replicas_at_a_time_with_no_failed_call(
        ) -> None:
    handle = serve.run(Versioned.options(num_replicas=5).bind(1))
    answers: list = []
    failures: list = []
    alive: list = []  # replicas running + starting, as serve.status() shows them
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            try:
                answers.append(handle.remote().result(timeout_s=DEADLINE_S))
            except Exception as exc:  # noqa: BLE001 - counted
                failures.append(exc)

    def watch() -> None:
        while not stop.is_set():
            states = serve.status().applications["default"].deployments[
                "Versioned"].replica_states
            alive.append(states["RUNNING"] + states["STARTING"])
            time.sleep(0.02)

    threads = [threading.Thread(target=stream), threading.Thread(target=stream),
               threading.Thread(target=watch)]
    for t in threads:
        t.start()
    try:
        eventually(lambda: len(answers) > 20 and len(alive) > 5, "calls answered before")
        serve.run(Versioned.options(num_replicas=5).bind(2))
        done = len(answers)
        eventually(lambda: len(answers) > done + 20 and answers[-1] == 2,
                   "calls answered by the new version")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert set(answers) == {1, 2}
    assert max(alive) <= 6, f"more than one new replica started at a time: {alive}"
    assert running("Versioned") == 5
    # after the update only the new version answers
    assert {handle.remote().result(timeout_s=DEADLINE_S) for _ in range(30)} == {2}


@sluice.remote(num_cpus=3.5)
class Blocker:
    """Holds most of the runtime's CPUs while it lives."""

    def ping(self) -> bool:
        return True


def test_replicas_that_cannot_be_scheduled_are_reported_and_start_once_cpus_free() -> None:
    # replicas retired by earlier tests (scaled down, replaced) were stopped, CPUs and all
    eventually(lambda: sluice.available_resources()["CPU"] > 4 - 1e-6, "all 4 CPUs free")
    blocker = Blocker.remote()
    assert sluice.get(blocker.ping.remote())  # it holds 3.5 of the 4 CPUs
    errors: list = []
    handles: list = []

    def deploy() -> None:  # serve.run waits for replicas that cannot start yet
        try:
            handles.append(serve.run(Versioned.options(
                num_replicas=2, ray_actor_options={"num_cpus": 1}).bind(1)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    waiter = threading.Thread(target=deploy, daemon=True)
    waiter.start()

    def message() -> str:
        app = serve.status().applications["default"]
        assert app.status == "DEPLOYING"
        return app.deployments["Versioned"].message

    # (the two replicas start a moment apart: the first report may count only one)
    counted = "Deployment 'Versioned' in application 'default' has 2 replicas that have taken more than"
    text = eventually(lambda: counted in message() and message(),
                      "the status reports both replicas waiting to be scheduled")
    assert "to be scheduled" in text
    assert "Resources required for each replica: {'CPU': 1.0}" in text
    assert "total resources available: {" in text and "'CPU': 0.5" in text
    assert "taken more than" in serve.status().applications["default"].message
    sluice.kill(blocker)  # the CPUs free: the replicas start and serve.run returns
    waiter.join(DEADLINE_S)
    assert errors == [] and handles[0].remote().result(timeout_s=DEADLINE_S) == 1
    app = serve.status().applications["default"]
    assert app.status == "RUNNING" and app.deployments["Versioned"].message == ""
