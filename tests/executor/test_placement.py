"""The scheduler's injected parts (sluice/executor/placement.py) and scheduling strategies on
the local runtime.

The first tests build a :class:`Scheduler` by hand from a placement policy, the store's
object locations and an I/O thread, with real worker processes: :class:`SplitMachine` is a
:class:`~sluice.executor.placement.Placement` that splits this machine into two nodes of one
CPU each, so where the scheduler runs a task is whatever the injected policy says. The rest
run ``scheduling_strategy`` through ``sluice.init()``'s one-node runtime.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import sluice
from sluice.exceptions import UnschedulableError
from sluice.executor import protocol as P
from sluice.executor import api
from sluice.executor.backend import LOCAL_NODE, NodeInfo
from sluice.executor.calls import dumps_function, encode_call
from sluice.executor.io import IOThread
from sluice.executor.placement import LocalPlacement, StoreLocations, affinity_error
from sluice.executor.process import spawn_worker
from sluice.executor.records import PENDING, ActorRecord, TaskRecord
from sluice.executor.resources import NodeResources, demand_key
from sluice.executor.scheduler import Scheduler
from sluice.store import serialization, shm
from sluice.store.object_store import ObjectStore
from sluice.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Affinity

DEADLINE_S = 60
ONE_CPU = demand_key(1, 0, None)


class SplitMachine:
    """A :class:`Placement` of two nodes, ``"a"`` and ``"b"``, of one CPU each, on this machine.

    A task pinned hard goes only to its node; a soft pin tries its node first; others try
    ``a`` then ``b``. ``pids`` records the worker processes started on each node.
    """

    NODES = ("a", "b")

    def __init__(self, session: str):
        self.session = session
        self.resources = {n: NodeResources({"CPU": 1}) for n in self.NODES}
        self.pids: dict[str, set[int]] = {n: set() for n in self.NODES}

    def node_infos(self) -> list[NodeInfo]:
        return [NodeInfo(n, "127.0.0.1", True, dict(r.total)) for n, r in self.resources.items()]

    def store_capacity(self) -> int:
        return 64 << 20

    def node_resources(self, node: str) -> NodeResources:
        return self.resources[node]

    def spawn(self, index: int, node: str) -> tuple[Any, Any]:
        proc, conn = spawn_worker(self.session, index)
        self.pids[node].add(proc.pid)
        return proc, conn

    def check_strategy(self, strategy: Affinity | None, what: str) -> None:
        if strategy is not None and not strategy.soft and strategy.node_id not in self.resources:
            raise affinity_error(strategy, what, "is not a node here", list(self.NODES))

    def dispatch_pass(self) -> SplitMachine:
        return self  # no state per pass

    def spilled(self, task: TaskRecord, node: str) -> None:
        pass

    def nodes_for(self, task: TaskRecord) -> Sequence[str]:
        strategy = task.strategy
        if strategy is None:
            return self.NODES
        self.check_strategy(strategy, f"task {task.name}")
        if not strategy.soft:
            return (strategy.node_id,)
        return (strategy.node_id, *[n for n in self.NODES if n != strategy.node_id])

    def may_run_on(self, task: TaskRecord, node: str) -> bool:
        return task.strategy.node_id == node

    def place_actor(self, actor: ActorRecord) -> list[int] | None:
        for node in self.NODES:
            gpus = self.resources[node].try_acquire(actor.key)
            if gpus is not None:
                actor.node = node
                return gpus
        return None

    def actor_node_alive(self, actor: ActorRecord) -> bool:
        return True


class Driver:
    """A scheduler built from parts: ``placement``, the store's locations, an I/O thread."""

    def __init__(self, spill_dir: Path):
        self.session = shm.new_session_id()
        self.store = ObjectStore(self.session, 64 << 20, spill_dir)
        self.placement = SplitMachine(self.session)
        self.io = IOThread()
        self.s = Scheduler(self.session, NodeResources({"CPU": 2}), self.placement,
                           StoreLocations(self.store), self.io)
        self.io.start(self.s)
        self.ids = itertools.count(1)

    def submit(self, fn: Any, *args: Any, strategy: Affinity | None = None) -> int:
        """Run ``fn(*args)`` as a one-CPU task; the id of its result."""
        name = fn.__name__
        fn_id, fn_bytes = dumps_function(fn, name)
        blob, deps, contained, keep = encode_call(name, args, {}, self.no_put)
        s = self.s
        with s.locked():
            s.functions.setdefault(fn_id, fn_bytes)
            oid = next(self.ids)
            s.new_entry(oid, None).refs += 1
            s.submit(TaskRecord(next(s.task_ids), fn_id, name, blob, deps, contained, [oid],
                                ONE_CPU, 0, False, keep, strategy))
            s.dispatch()
        return oid

    @staticmethod
    def no_put(value: Any) -> Any:
        raise AssertionError("the tests pass small arguments only")

    def pending(self, oid: int) -> bool:
        with self.s.locked():
            return self.s.objects[oid].state == PENDING

    def result(self, oid: int) -> Any:
        """The value (or the error) ``oid`` holds once ready."""
        s = self.s
        event = threading.Event()
        with s.locked():
            waiter = s.waiter_for([oid], 1, event)
        assert waiter is None or event.wait(DEADLINE_S), f"object {oid} not ready in {DEADLINE_S} s"
        with s.locked():
            kind, payload = s.objects[oid].spec
        assert kind in (P.DEP_INLINE, P.DEP_ERROR)
        return serialization.loads(payload)

    def shutdown(self) -> None:
        s = self.s
        with s.locked():
            s.closed = True
            procs = list(s.all_workers())
            for w in procs:
                w.out.append((P.SHUTDOWN,))
                s.send(w)
        self.io.stop()
        for w in procs:
            w.proc.wait(timeout=DEADLINE_S)
            w.conn.close()
        self.store.close()
        shm.cleanup_session(self.session)


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Driver]:
    d = Driver(tmp_path)
    try:
        yield d
    finally:
        d.shutdown()


def pid() -> int:
    return os.getpid()


def hold(gate: str) -> int:
    """Hold a CPU until the file ``gate`` exists; then this worker's pid."""
    deadline = time.monotonic() + DEADLINE_S
    while not os.path.exists(gate):
        assert time.monotonic() < deadline, f"the gate {gate} stayed shut for {DEADLINE_S} s"
        time.sleep(0.01)
    return os.getpid()


def test_a_scheduler_built_from_injected_parts_runs_tasks_where_its_placement_says(driver) -> None:
    on_b = [driver.submit(pid, strategy=Affinity("b", soft=False)) for _ in range(3)]
    on_a = driver.submit(pid, strategy=Affinity("a", soft=False))
    assert {driver.result(oid) for oid in on_b} <= driver.placement.pids["b"]
    assert driver.result(on_a) in driver.placement.pids["a"]


def test_a_task_pinned_to_a_full_node_waits_without_holding_back_others(driver, tmp_path) -> None:
    gate = str(tmp_path / "gate")
    held = driver.submit(hold, gate, strategy=Affinity("b", soft=False))  # b's one CPU, now
    pinned = driver.submit(pid, strategy=Affinity("b", soft=False))
    free = driver.submit(pid)  # same demand, no pin: it must not queue behind the pinned one
    assert driver.result(free) in driver.placement.pids["a"]
    assert driver.pending(pinned)
    Path(gate).touch()
    assert driver.result(held) in driver.placement.pids["b"]
    assert driver.result(pinned) in driver.placement.pids["b"]


def test_a_soft_pin_to_a_full_node_runs_elsewhere(driver, tmp_path) -> None:
    gate = str(tmp_path / "gate")
    held = driver.submit(hold, gate, strategy=Affinity("b", soft=False))
    soft = driver.submit(pid, strategy=Affinity("b", soft=True))
    assert driver.result(soft) in driver.placement.pids["a"]
    Path(gate).touch()
    assert driver.result(held) in driver.placement.pids["b"]


def test_a_task_its_placement_cannot_place_fails_with_the_placements_error(driver) -> None:
    lost = driver.submit(pid, strategy=Affinity("c", soft=False))
    err = driver.result(lost)
    assert isinstance(err, UnschedulableError) and isinstance(err, ValueError)
    assert "names node 'c', which is not a node here (live nodes: 'a', 'b')" in str(err)
    assert driver.result(driver.submit(pid)) in driver.placement.pids["a"]  # the rest goes on


def test_a_nested_task_refused_for_its_pin_is_never_queued(driver) -> None:
    s = driver.s
    fn_id, fn_bytes = dumps_function(pid, "pid")
    options = {"name": "pid", "num_returns": 1, "num_cpus": 1, "num_gpus": 0, "resources": None, "max_retries": 0,
               "retry_exceptions": False, "scheduling_strategy": Affinity("c", soft=False)}
    blob, _, _, _ = encode_call("pid", (), {}, driver.no_put)
    with s.locked():  # a worker's SUBMIT, as the I/O thread applies it
        s.new_entry(99, None).refs += 1
        driver.io.nested_submit((P.SUBMIT, fn_id, fn_bytes, blob, [], (), [99], options))
        assert not any(s.ready.values()) and not s.tasks
    err = driver.result(99)
    assert isinstance(err, UnschedulableError) and "names node 'c'" in str(err)


# -- scheduling_strategy on the local runtime (one node, LOCAL_NODE) ---------------------------
@pytest.fixture(scope="module")
def local() -> Iterator[None]:
    sluice.init(num_cpus=2)
    try:
        yield
    finally:
        sluice.shutdown()


@sluice.remote
def where() -> int:
    return os.getpid()


@sluice.remote
def submit_pinned(node_id: str) -> int:
    return sluice.get(where.options(scheduling_strategy=Affinity(node_id, soft=False)).remote())


@sluice.remote
class Box:
    def pid(self) -> int:
        return os.getpid()


def test_the_local_runtime_builds_its_scheduler_from_the_local_parts(local) -> None:
    rt = api.runtime()
    s = rt.scheduler
    assert isinstance(s.placement, LocalPlacement) and isinstance(s.locations, StoreLocations)
    assert s.locations.store is rt.store and s.io is rt.io and s.lineage is None
    assert [n.node_id for n in rt.nodes()] == [LOCAL_NODE]


def test_affinity_to_the_local_node_runs_and_soft_affinity_elsewhere_is_ignored(local) -> None:
    here = api.runtime().nodes()[0].node_id
    pinned = where.options(scheduling_strategy=Affinity(here, soft=False)).remote()
    anywhere = where.options(scheduling_strategy=Affinity("elsewhere", soft=True)).remote()
    assert all(isinstance(pid, int) for pid in sluice.get([pinned, anywhere]))
    box = Box.options(scheduling_strategy=Affinity(here, soft=False)).remote()
    assert isinstance(sluice.get(box.pid.remote()), int)


def test_hard_affinity_to_an_unknown_node_is_refused_at_remote(local) -> None:
    with pytest.raises(UnschedulableError, match=r"task where: .*names node 'elsewhere', which this "
                                                 r"local runtime does not have \(live nodes: 'local'\)"):
        where.options(scheduling_strategy=Affinity("elsewhere", soft=False)).remote()
    with pytest.raises(ValueError, match=r"actor Box: .*names node 'elsewhere'"):
        Box.options(scheduling_strategy=Affinity("elsewhere", soft=False)).remote()


def test_a_nested_task_pinned_to_an_unknown_node_fails_at_get(local) -> None:
    with pytest.raises(ValueError, match="names node 'nowhere', which this local runtime does not have"):
        sluice.get(submit_pinned.remote("nowhere"), timeout=DEADLINE_S)
    assert isinstance(sluice.get(submit_pinned.remote(LOCAL_NODE), timeout=DEADLINE_S), int)
