"""sluice.get_runtime_context() in the driver, tasks and actors; named actors per namespace."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import sluice
import sluice.util
from sluice.exceptions import ActorDiedError


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2, resources={"disk": 2})
    yield
    sluice.shutdown()


def _context() -> dict:
    c = sluice.get_runtime_context()
    return {"job": c.get_job_id(), "node": c.get_node_id(), "task": c.get_task_id(),
            "actor": c.get_actor_id(), "worker": c.get_worker_id(),
            "resources": c.get_assigned_resources(), "pg": c.get_placement_group_id(),
            "namespace": c.namespace, "reconstructed": c.was_current_actor_reconstructed,
            "actor_name": c.get_actor_name(), "gpus": c.get_accelerator_ids(), "pid": os.getpid()}


@sluice.remote
def task_context() -> dict:
    return _context()


@sluice.remote
def nested_context() -> dict:
    return sluice.get(task_context.remote())


@sluice.remote
class Probe:
    def context(self) -> dict:
        return _context()

    def crash(self) -> None:
        os._exit(1)


def test_driver_context_has_a_job_and_node_but_no_task_or_actor() -> None:
    ctx = _context()
    assert ctx["job"] and ctx["namespace"]
    assert ctx["node"] in {n["NodeID"] for n in sluice.nodes()}
    assert ctx["task"] is None and ctx["actor"] is None and ctx["pg"] is None
    assert ctx["resources"] == {} and ctx["reconstructed"] is False
    assert ctx["gpus"] == {"GPU": []}


def test_task_context_names_the_task_its_resources_and_the_drivers_job() -> None:
    driver = _context()
    one, two = sluice.get([task_context.remote(),
                           task_context.options(num_cpus=2, resources={"disk": 1}).remote()])
    for ctx in (one, two):
        assert ctx["job"] == driver["job"] and ctx["namespace"] == driver["namespace"]
        assert ctx["node"] == driver["node"]
        assert ctx["task"] is not None and ctx["actor"] is None and ctx["pg"] is None
        assert ctx["worker"] != driver["worker"]
    assert one["task"] != two["task"]
    assert one["resources"] == {"CPU": 1.0}
    assert two["resources"] == {"CPU": 2.0, "disk": 1.0}


@sluice.remote
def task_ids_around_a_get() -> tuple:
    before = sluice.get_runtime_context().get_task_id()
    child = sluice.get(task_context.remote())["task"]  # may run nested, in this very process
    return before, child, sluice.get_runtime_context().get_task_id()


def test_a_nested_task_belongs_to_the_same_job() -> None:
    ctx = sluice.get(nested_context.remote())
    assert ctx["job"] == _context()["job"] and ctx["task"] is not None


def test_a_task_keeps_its_task_id_after_a_nested_get() -> None:
    for before, child, after in sluice.get([task_ids_around_a_get.remote() for _ in range(4)]):
        assert before == after and child != before


def test_actor_context_names_the_actor_and_its_resources() -> None:
    a = Probe.options(num_cpus=1, name="probe").remote()
    first, second = sluice.get([a.context.remote(), a.context.remote()])
    assert first["actor"] is not None and first["actor"] == second["actor"]
    assert first["task"] != second["task"]
    assert first["resources"] == {"CPU": 1.0}
    assert first["actor_name"] == "probe"
    assert first["job"] == _context()["job"] and first["reconstructed"] is False
    other = sluice.get(Probe.remote().context.remote())
    assert other["actor"] != first["actor"] and other["actor_name"] is None
    sluice.kill(a)


def test_a_restarted_actor_knows_it_was_reconstructed() -> None:
    a = Probe.options(max_restarts=1).remote()
    before = sluice.get(a.context.remote())
    assert before["reconstructed"] is False
    with pytest.raises(ActorDiedError):
        sluice.get(a.crash.remote())
    after = sluice.get(a.context.remote())
    assert after["pid"] != before["pid"]
    assert after["reconstructed"] is True and after["actor"] == before["actor"]


@sluice.remote
class Overlapping:
    """Two calls at once, each reading its task id before and after the other has started."""

    def __init__(self) -> None:
        import threading

        self.barrier = threading.Barrier(2, timeout=60)

    def both(self) -> tuple:
        before = sluice.get_runtime_context().get_task_id()
        self.barrier.wait()
        return before, sluice.get_runtime_context().get_task_id()


@sluice.remote
class AsyncOverlapping:
    def __init__(self) -> None:
        self.arrived = 0

    async def both(self) -> tuple:
        import asyncio

        before = sluice.get_runtime_context().get_task_id()
        self.arrived += 1
        for _ in range(60_000):  # until the other call has started too (a generous deadline)
            if self.arrived >= 2:
                break
            await asyncio.sleep(0.001)
        return before, sluice.get_runtime_context().get_task_id()


@pytest.mark.parametrize("cls", [Overlapping.options(max_concurrency=2), AsyncOverlapping],
                         ids=["threaded", "async"])
def test_concurrent_calls_of_one_actor_each_see_their_own_task_id(cls) -> None:
    a = cls.remote()
    (b1, a1), (b2, a2) = sluice.get([a.both.remote(), a.both.remote()])
    assert b1 == a1 and b2 == a2 and a1 != a2 and None not in (a1, a2)
    sluice.kill(a)


# -- named actors and namespaces ----------------------------------------------------------------
def test_get_if_exists_returns_the_live_actor_of_that_name() -> None:
    first = Probe.options(name="shared").remote()
    first_id = sluice.get(first.context.remote())["actor"]
    again = Probe.options(name="shared", get_if_exists=True).remote()
    assert sluice.get(again.context.remote())["actor"] == first_id
    with pytest.raises(ValueError, match="'shared' already exists.*get_if_exists=True"):
        Probe.options(name="shared").remote()
    sluice.kill(first)
    fresh = Probe.options(name="shared", get_if_exists=True).remote()  # the old one is dead
    assert sluice.get(fresh.context.remote())["actor"] != first_id
    sluice.kill(fresh)


@sluice.remote
def get_or_create(name: str) -> str:
    a = Probe.options(name=name, get_if_exists=True, lifetime="detached").remote()
    return sluice.get(a.context.remote())["actor"]


def test_get_if_exists_from_racing_tasks_yields_one_actor() -> None:
    ids = sluice.get([get_or_create.remote("raced") for _ in range(6)])
    assert len(set(ids)) == 1
    sluice.kill(sluice.get_actor("raced"))


def test_a_creation_that_finds_its_name_taken_reaches_the_live_actor() -> None:
    # What a get_if_exists creation does when another caller took the name after it looked:
    # its id becomes another name for the live actor (the calls below skip the look).
    from sluice.executor import api

    first = Probe.options(name="taken").remote()
    first_id = sluice.get(first.context.remote())["actor"]
    cls = Probe.options(name="taken", get_if_exists=True)
    rt = api.runtime()
    late = rt.new_actor_id()
    options = {**cls._options, "class_name": "Probe", "_methods": cls._methods,
               "namespace": sluice.get_runtime_context().namespace}
    rt.create_actor(late, *cls._pickle(), "Probe", (), {}, options)
    [ref] = rt.submit_actor_task(late, "context", "Probe.context", (), {}, {"num_returns": 1})
    assert sluice.get(ref)["actor"] == first_id
    sluice.kill(first)


def test_the_same_name_in_two_namespaces_is_two_actors() -> None:
    mine = Probe.options(name="twin").remote()
    theirs = Probe.options(name="twin", namespace="elsewhere").remote()
    mine_id = sluice.get(mine.context.remote())["actor"]
    theirs_id = sluice.get(theirs.context.remote())["actor"]
    assert mine_id != theirs_id
    assert sluice.get(sluice.get_actor("twin").context.remote())["actor"] == mine_id
    found = sluice.get_actor("twin", namespace="elsewhere")
    assert sluice.get(found.context.remote())["actor"] == theirs_id
    with pytest.raises(ValueError, match="no actor named 'twin' is alive in namespace 'nowhere'"):
        sluice.get_actor("twin", namespace="nowhere")
    assert "twin" in sluice.util.list_named_actors()
    everywhere = sluice.util.list_named_actors(all_namespaces=True)
    assert {"name": "twin", "namespace": "elsewhere"} in everywhere
    assert {"name": "twin", "namespace": sluice.get_runtime_context().namespace} in everywhere
    sluice.kill(mine)
    sluice.kill(theirs)


@sluice.remote
def lookup_in_task(name: str) -> str:
    return sluice.get(sluice.get_actor(name).context.remote())["actor"]


def test_a_task_looks_names_up_in_its_jobs_namespace() -> None:
    a = Probe.options(name="from-task").remote()
    assert sluice.get(lookup_in_task.remote("from-task")) == sluice.get(a.context.remote())["actor"]
    sluice.kill(a)


def test_bad_namespace_and_lifetime_options_are_refused_naming_the_value() -> None:
    with pytest.raises(ValueError, match="lifetime='forever'"):
        Probe.options(lifetime="forever")
    with pytest.raises(ValueError, match="namespace=''"):
        Probe.options(namespace="")
    with pytest.raises(ValueError, match="get_if_exists='yes'"):
        Probe.options(get_if_exists="yes")
    with pytest.raises(ValueError, match="namespace=3"):
        sluice.get_actor("x", namespace=3)


def test_a_detached_actor_on_the_local_runtime_lives_without_handles() -> None:
    Probe.options(name="keeper", lifetime="detached").remote()  # no handle kept
    found = sluice.get_actor("keeper")
    assert sluice.get(found.context.remote())["actor_name"] == "keeper"
    sluice.kill(found)


def test_init_namespace_is_the_jobs_namespace() -> None:
    sluice.shutdown()
    try:
        sluice.init(num_cpus=1, namespace="team")
        assert sluice.get_runtime_context().namespace == "team"
        a = Probe.options(name="n").remote()
        assert sluice.get(sluice.get_actor("n", namespace="team").context.remote())["actor_name"] == "n"
        assert sluice.get(task_context.remote())["namespace"] == "team"
        sluice.kill(a)
        with pytest.raises(ValueError, match="namespace=''"):
            sluice.shutdown()
            sluice.init(num_cpus=1, namespace="")
    finally:
        sluice.shutdown()
        sluice.init(num_cpus=2, resources={"disk": 2})


def test_accelerator_ids_are_the_granted_gpus() -> None:
    sluice.shutdown()
    try:
        sluice.init(num_cpus=2, num_gpus=2)  # logical GPUs: no device needed
        ctx = sluice.get(task_context.options(num_gpus=1).remote())
        assert ctx["resources"] == {"CPU": 1.0, "GPU": 1.0}
        assert ctx["gpus"]["GPU"] in (["0"], ["1"])
        assert sluice.get(task_context.remote())["gpus"] == {"GPU": []}
        a = Probe.options(num_gpus=2).remote()
        actor_ctx = sluice.get(a.context.remote())
        assert sorted(actor_ctx["gpus"]["GPU"]) == ["0", "1"]
        assert actor_ctx["resources"] == {"GPU": 2.0}
        sluice.kill(a)
    finally:
        sluice.shutdown()
        sluice.init(num_cpus=2, resources={"disk": 2})
