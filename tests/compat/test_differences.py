"""Where sluice deliberately differs from Ray, asserted (README: "Differences from Ray").

Each test names Ray's behaviour in a comment and asserts sluice's. A Ray program that
relies on one of these behaves differently on sluice; none of the programs in
``programs/`` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import sluice as ray

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    ray.init(num_cpus=2)
    yield
    ray.shutdown()


@ray.remote
def fails():
    raise ValueError("boom")


@ray.remote(num_cpus=64)
def too_big():
    return 1


@ray.remote
class Actor:
    def ping(self):
        return "pong"


def test_a_demand_no_node_can_meet_raises_at_remote() -> None:
    # Ray: the task stays pending forever (with a warning; an autoscaler might add a node).
    # sluice: its nodes are known, so .remote() raises InfeasibleResourceError (a ValueError)
    # naming the demand and what the runtime has.
    with pytest.raises(ray.exceptions.InfeasibleResourceError, match="num_cpus=64.*2 CPUs"):
        too_big.remote()
    with pytest.raises(ValueError):
        Actor.options(num_cpus=64).remote()


def test_a_placement_group_no_node_can_hold_fails_ready_at_once() -> None:
    # Ray: the group stays pending forever (an autoscaler might add a node), so get of
    # ready() raises GetTimeoutError at its timeout and wait() returns False. sluice: its
    # nodes are known, so both raise UnschedulableError at once, naming the bundle and the
    # largest node (programs/placement_group_infeasible.py passes on both).
    from sluice.util.placement_group import placement_group, remove_placement_group

    pg = placement_group([{"CPU": 1}, {"GPU": 2}])
    with pytest.raises(ray.exceptions.UnschedulableError,
                       match=r"bundle 1 \{'GPU': 2.0\} fits on no node; the largest node"):
        ray.get(pg.ready(), timeout=60)
    with pytest.raises(ray.exceptions.UnschedulableError, match="fits on no node"):
        pg.wait(timeout_seconds=60)
    remove_placement_group(pg)


def test_a_hard_affinity_to_a_missing_node_raises_at_remote() -> None:
    # Ray: .remote() returns a ref and ray.get raises TaskUnschedulableError. sluice: .remote()
    # raises it (UnschedulableError), naming the node and the live ones.
    from sluice.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    missing = NodeAffinitySchedulingStrategy(node_id="ab" * 28, soft=False)
    with pytest.raises(ray.exceptions.TaskUnschedulableError, match="live nodes"):
        Actor.options(scheduling_strategy=missing).remote()
    with pytest.raises(ray.exceptions.TaskUnschedulableError, match="ab" * 28):
        fails.options(scheduling_strategy=missing).remote()


def test_a_task_error_is_named_and_printed_the_sluice_way() -> None:
    # Ray: type(e).__name__ == "RayTaskError(ValueError)", str(e) starts
    # "ray::fails() (pid=..., ip=...)". sluice: "TaskError(ValueError)" and
    # "task fails failed: ValueError: boom", then the remote traceback. Both are instances
    # of RayTaskError and ValueError, with .cause the original exception.
    with pytest.raises(ValueError) as info:
        ray.get(fails.remote())
    err = info.value
    assert type(err).__name__ == "TaskError(ValueError)"
    assert str(err).startswith("task fails failed: ValueError: boom")
    assert isinstance(err, ray.exceptions.RayTaskError) and isinstance(err.cause, ValueError)


def test_an_actor_death_is_also_a_task_error() -> None:
    # Ray: RayActorError and RayTaskError are siblings under RayError. sluice: RayActorError
    # (ActorError) derives from RayTaskError (TaskError), so `except RayTaskError` also
    # catches a dead actor; `except RayActorError` catches exactly what it does in Ray.
    actor = Actor.remote()
    ray.kill(actor)
    with pytest.raises(ray.exceptions.RayTaskError) as info:
        ray.get(actor.ping.remote())
    assert isinstance(info.value, ray.exceptions.RayActorError)
    assert isinstance(info.value, ray.exceptions.ActorDiedError)


def test_a_named_actor_outlives_its_creators_handle() -> None:
    # Ray: a named actor that is not detached is collected once the handles its creator made
    # are gone (a handle from get_actor does not keep it). sluice: it lives until killed or
    # the runtime ends (tests/executor/test_actors.py covers the lifecycle).
    Actor.options(name="kept").remote()  # the handle is dropped at once
    again = ray.get_actor("kept")
    assert ray.get(again.ping.remote()) == "pong"
    ray.kill(again)


def test_an_object_ref_prints_a_short_id() -> None:
    # Ray: ObjectRef(<56 hex digits>) and .hex() of 56 digits. sluice: ObjectRef(NODE:N)
    # and a 16-digit .hex(); code that parses ids would differ.
    ref = ray.put(1)
    assert repr(ref).startswith("ObjectRef(") and len(ref.hex()) == 16


def test_init_without_an_address_starts_a_local_runtime_whatever_ray_address_says() -> None:
    # Ray: init() with RAY_ADDRESS set (or a `ray start` cluster on the machine) connects to
    # that cluster. sluice: init() always starts a local runtime; init(address="auto")
    # connects to SLUICE_ADDRESS, RAY_ADDRESS or the head `sluice start --head` runs here.
    from sluice.executor.cluster.local import free_port

    source = ("import sluice; from sluice.executor import context; sluice.init(num_cpus=1); "
              "print(type(context.current()).__name__)")
    out = subprocess.run([sys.executable, "-c", source], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT),
                                           "RAY_ADDRESS": f"127.0.0.1:{free_port()}"})
    assert out.returncode == 0 and out.stdout.strip() == "Runtime", out.stdout + out.stderr


def test_the_dashboard_starts_only_when_asked() -> None:
    # Ray: ray.init() starts its dashboard on 127.0.0.1:8265 unless include_dashboard=False.
    # sluice starts it only with include_dashboard=True (a web server thread in the driver
    # is not free, and most programs never open it).
    import sluice.dashboard

    ray.init(ignore_reinit_error=True)
    assert sluice.dashboard.current() is None


def test_a_gpu_task_keeps_its_worker_by_default() -> None:
    # Ray: a function with num_gpus > 0 defaults to max_calls=1 (a fresh process per call, to
    # release GPU memory). sluice: max_calls defaults to 0 (no limit) for every function;
    # @remote(num_gpus=1, max_calls=1) asks for Ray's behaviour.
    @ray.remote(num_gpus=1)
    def on_gpu():
        return 1

    @ray.remote(num_gpus=1, max_calls=1)
    def on_gpu_fresh():
        return 1

    assert on_gpu._options["max_calls"] == 0 and on_gpu_fresh._options["max_calls"] == 1
