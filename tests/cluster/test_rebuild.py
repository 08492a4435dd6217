"""The head's rebuild path with no daemons: a real :class:`HeadRuntime` (scheduler, object
directory, lineage, node_died and its rebuild thread) whose nodes are records only. Tasks are
run by hand: submitted, handed to a node's worker and finished with a result on that node,
as the head's I/O applies a worker's batch (the result is stored where that worker runs)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from sluice.exceptions import ObjectLostError
from sluice.executor import protocol as P
from sluice.executor.cluster import cluster_pb2 as pb
from sluice.executor.cluster.directory import NodeState
from sluice.executor.cluster.head import HeadRuntime
from sluice.executor.object_ref import OWNER_SHIFT
from sluice.executor.records import FAILED, PENDING, READY, TaskRecord
from sluice.executor.resources import demand_key
from sluice.store import serialization

KEY = demand_key(1, 0, None)
SIZE = 200_000  # a result above the inline limit: it lives in its node's store
FN = 7


@pytest.fixture
def head() -> Iterator[HeadRuntime]:
    rt = HeadRuntime(max_lineage_bytes=None)
    try:
        yield rt
    finally:
        rt.shutdown()


def add_nodes(rt: HeadRuntime, n: int) -> list[NodeState]:
    return [rt.add_node(pb.NodeInfo(host=f"10.0.0.{i}", hostname=f"machine-{i}",
                                    flight_location=f"grpc://10.0.0.{i}:7000", session=f"s{i}",
                                    resources_json=json.dumps({"CPU": 1}), store_capacity=1 << 50,
                                    pid=1000 + i)) for i in range(n)]


def run_chain(rt: HeadRuntime, node: NodeState, steps: int, first: int) -> int:
    """``x = f.remote(x)`` ``steps`` times on ``node``, the driver keeping only the last ``x``.
    ``first`` is the chain's first input (kept by the driver). Returns the last object's id."""
    s = rt.scheduler
    w = next(x for x in s.workers if x.node is node)
    s.functions[FN] = b"step"
    prev = first
    with s.locked():
        for oid in range(first + 1, first + steps + 1):
            task = TaskRecord(next(s.task_ids), FN, "step", b"a" * 60, [prev], (), [oid], KEY, 3, False, [])
            s.submit(task)
            s.objects[oid].refs += 1                 # the driver's ref to the new x
            if prev != first:
                s.ref_events.append((-1, prev))      # ... and the old x goes out of scope
                s.apply_ref_events()
            assert s.ready[KEY].pop() is task        # it was ready: run it on ``node``
            task.worker = w
            w.inflight[task.task_id] = task
            w.queued_bytes += len(task.args_blob)
            s.task_done(w, task.task_id, [(oid, (P.DEP_SHM, SIZE), ())], 0.001, 0.0)
            assert rt.recovery.lineage.nbytes <= rt.recovery.lineage.cap
            prev = oid
    return prev


def put_on(rt: HeadRuntime, node: NodeState, oid: int) -> None:
    """A put() by a process of ``node``, whose copy lives there."""
    s = rt.scheduler
    with s.locked():
        s.new_entry(oid, None).refs += 1
        s.add_object(oid, (P.DEP_SHM, SIZE), (), stored_by=next(x for x in s.workers if x.node is node))


def wait_rebuilt(rt: HeadRuntime) -> None:
    deadline = time.monotonic() + 300
    while rt.rebuilding or rt.recovery.pending:
        assert time.monotonic() < deadline, "the rebuild did not finish"
        time.sleep(0.01)


def error_of(rt: HeadRuntime, oid: int) -> Exception:
    entry = rt.scheduler.objects[oid]
    assert entry.state == FAILED
    return serialization.loads(entry.spec[1])


def test_a_100000_step_chain_with_its_node_killed_is_rebuilt_in_bounded_steps(head) -> None:
    survivor, victim = add_nodes(head, 2)
    put_on(head, survivor, 1)
    tip = run_chain(head, victim, 100_000, first=1)
    s, rec = head.scheduler, head.recovery
    assert rec.lineage.count == 100_000  # the default 1 GB cap keeps it all
    head.node_died(victim, "was killed by the test")  # no RecursionError, here or in the thread
    wait_rebuilt(head)
    with s.locked():
        assert rec.rebuilds.submitted == 100_000
        assert rec.rebuilds.steps > 100_000 // 500  # the lock was free between steps
        # Inputs first: the first step runs (on the live node), each later one waits for it.
        entry = s.objects[tip]
        assert entry.state == PENDING and entry.producer.deps == [tip - 1]
        assert s.objects[tip - 1].producer.return_ids == [tip - 1]
        first = next(t for t in s.tasks.values() if t.return_ids == [2])
        assert first.worker is not None and first.worker.node is survivor
        assert sum(len(q) for q in s.ready.values()) == 0
        assert s.objects[1].holds == 1  # the first step holds its input; no other hold is left over
        rec.lineage.check()


def test_a_100000_step_chain_keeps_lineage_under_the_cap_and_its_loss_names_the_cap() -> None:
    cap = 64 * 1024
    rt = HeadRuntime(max_lineage_bytes=cap)
    try:
        survivor, victim = add_nodes(rt, 2)
        put_on(rt, survivor, 1)
        tip = run_chain(rt, victim, 100_000, first=1)  # asserts the cap after every step
        s, rec = rt.scheduler, rt.recovery
        assert rec.lineage.count < 200 and rec.lineage.evictions > 0
        rec.lineage.check()
        young = tip + 1  # made after the chain from the driver's input: its lineage is kept
        with s.locked():
            task = TaskRecord(next(s.task_ids), FN, "young", b"b" * 60, [1], (), [young], KEY, 3,
                              False, [])
            s.submit(task)
            s.objects[young].refs += 1
            s.ready[KEY].pop()
            w = next(x for x in s.workers if x.node is victim)
            task.worker = w
            w.inflight[task.task_id] = task
            s.task_done(w, task.task_id, [(young, (P.DEP_SHM, SIZE), ())], 0.001, 0.0)
        rt.node_died(victim, "was killed by the test")
        wait_rebuilt(rt)
        with s.locked():
            err = error_of(rt, tip)
            assert isinstance(err, ObjectLostError)
            assert f"object {tip:x} was lost" in str(err)
            assert "max_lineage_bytes=65536" in str(err) and "--max-lineage-bytes" in str(err)
            assert s.objects[young].state == PENDING  # rebuilt: its task runs again
            assert s.objects[young].producer.worker.node is survivor
            assert rec.rebuilds.submitted == 1
            rec.lineage.check()
    finally:
        rt.shutdown()


def test_tasks_queued_on_a_lost_input_wait_for_its_rebuild(head) -> None:
    survivor, victim = add_nodes(head, 2)
    put_on(head, survivor, 1)
    made = run_chain(head, victim, 1, first=1)
    s = head.scheduler
    with s.locked():  # a reader queued (not sent: no worker free) when the node dies
        survivor.resources.try_acquire(KEY)
        reader = TaskRecord(next(s.task_ids), FN, "reader", b"", [made], (), [made + 1], KEY, 0,
                            False, [])
        s.submit(reader)
        assert reader in s.ready[KEY]
    head.node_died(victim, "was killed by the test")
    wait_rebuilt(head)
    with s.locked():
        assert reader not in s.ready[KEY] and reader.unresolved == 1
        assert reader in s.objects[made].waiters and s.objects[made].state == PENDING
        rebuild = s.objects[made].producer
        survivor.resources.release(KEY, [])
        s.dispatch()
        assert rebuild.worker is not None and rebuild.worker.node is survivor
        w = rebuild.worker
        s.task_done(w, rebuild.task_id, [(made, (P.DEP_SHM, SIZE), ())], 0.001, 0.0)
        assert s.objects[made].state == READY and reader.unresolved == 0
        assert reader in s.ready[KEY] or reader.worker is not None


def test_a_rebuilt_task_with_two_results_keeps_only_the_lost_one(head) -> None:
    survivor, victim = add_nodes(head, 2)
    s, rec = head.scheduler, head.recovery
    s.functions[FN] = b"pair"
    with s.locked():  # num_returns=2 on the victim; the driver then drops the first result
        task = TaskRecord(next(s.task_ids), FN, "pair", b"", [], (), [10, 11], KEY, 3, False, [])
        s.submit(task)
        s.objects[10].refs += 1
        s.objects[11].refs += 1
        s.ready[KEY].pop()
        w = next(x for x in s.workers if x.node is victim)
        task.worker = w
        w.inflight[task.task_id] = task
        s.task_done(w, task.task_id, [(10, (P.DEP_SHM, SIZE), ()), (11, (P.DEP_SHM, SIZE), ())], 0.001, 0.0)
        s.ref_events.append((-1, 10))
        s.apply_ref_events()
        assert 10 not in s.objects
    head.node_died(victim, "was killed by the test")
    wait_rebuilt(head)
    with s.locked():
        again = s.objects[11].producer
        scratch = again.return_ids[0]
        assert again.return_ids[1] == 11 and scratch >> OWNER_SHIFT == rec.scratch_owner
        s.task_done(again.worker, again.task_id,
                    [(scratch, (P.DEP_SHM, SIZE), ()), (11, (P.DEP_SHM, SIZE), ())], 0.001, 0.0)
        assert s.objects[11].state == READY and scratch not in s.objects
        assert scratch not in head.directory.locations and head.directory.locations[11] == {survivor: survivor.segment(11)}
        rec.lineage.check()
