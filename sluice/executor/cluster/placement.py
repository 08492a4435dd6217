"""The cluster scheduler: the local scheduler, with workers spread over nodes.

Everything the local scheduler does (leases, pipelining, nested gets, actors,
retries) holds unchanged; what differs is where a worker runs:

* **Placement by locality.** A task goes to the node holding most of its
  input bytes; when that node has no free resources (and no room to queue
  behind a busy worker) it spills back to the node with the most free CPUs.
* **Objects by directory.** A worker reads an object its node holds as a
  local segment; for one held elsewhere it gets a ``DEP_REMOTE`` spec and its
  node pulls a copy once over Arrow Flight.
* **Faults.** A dead node's workers die with it (tasks retry elsewhere within
  ``max_retries``, actors restart per ``max_restarts`` on a live node);
  objects whose only copy was there are rebuilt by re-running the task that
  made them (lineage, kept within ``max_lineage_bytes``: ``lineage.py``), or
  fail with ``ObjectLostError`` when nothing can.
"""

from __future__ import annotations

import itertools
from typing import Any

from sluice.exceptions import ObjectLostError
from sluice.executor import protocol as P
from sluice.executor.cluster import lineage as L
from sluice.executor.cluster.directory import (
    ClusterResources,
    NodeState,
    ObjectDirectory,
)
from sluice.executor.cluster.relay import RelayConn, RemoteProc
from sluice.executor.object_ref import OWNER_SHIFT
from sluice.executor.records import (
    FAILED,
    PENDING,
    READY,
    ActorRecord,
    TaskRecord,
    WorkerHandle,
)
from sluice.executor.resources import NodeResources, ResourceKey
from sluice.executor.scheduler import Scheduler
from sluice.store import serialization


class ClusterScheduler(Scheduler):
    """Schedules one cluster's work from the head. See the module docstring."""

    def __init__(self, runtime: Any, nodes: dict[int, NodeState],
                 max_lineage_bytes: int = L.DEFAULT_MAX_LINEAGE_BYTES):
        super().__init__("head", ClusterResources(nodes), ObjectDirectory(), runtime)
        self.nodes = nodes
        self.handles: dict[int, WorkerHandle] = {}    # worker index -> handle (pool, actor, driver)
        self.clients: dict[int, WorkerHandle] = {}    # connected drivers
        self.remote_clients: set[WorkerHandle] = set()  # drivers on a machine without a node
        self.lineage = L.Lineage(max_lineage_bytes)   # the task behind each node-held result
        self.rebuilds = L.RebuildPlan(self.lineage)   # lost objects still to plan (node_died)
        self.rebuild_view = SchedulerRebuildView(self)
        # Results a rebuild does not need get ids of an owner index no process is given.
        self.scratch_owner = next(self.worker_index)
        self.scratch_ids = itertools.count(1)

    # -- processes on nodes ------------------------------------------------------------
    def spawn(self, index: int, node: NodeState) -> tuple[RemoteProc, RelayConn]:
        node.outbox.control(("spawn", index))
        return RemoteProc(node.outbox, index), RelayConn(node.outbox, index)

    def start_worker(self, node: NodeState | None = None) -> WorkerHandle:
        node = node or self.roomiest_node()
        w = super().start_worker(node)
        self.handles[w.index] = w
        return w

    def handle_for(self, index: int) -> WorkerHandle | None:
        w = self.handles.get(index)
        if w is None:  # an actor's process, registered lazily
            for actor in self.actors.values():
                if actor.worker is not None and actor.worker.index == index:
                    w = self.handles[index] = actor.worker
        return w

    def all_workers(self):
        yield from super().all_workers()
        yield from self.clients.values()

    def node_resources(self, node: NodeState) -> NodeResources:
        return node.resources

    def actor_resources(self, actor: ActorRecord) -> NodeResources:
        return actor.node.resources

    def place_actor(self, actor: ActorRecord) -> list[int] | None:
        for node in self.nodes_by_room():
            gpus = node.resources.try_acquire(actor.key)
            if gpus is not None:
                actor.node = node
                return gpus
        return None

    def actor_node_alive(self, actor: ActorRecord) -> bool:
        return actor.node is not None and actor.node.alive

    def live_nodes(self) -> list[NodeState]:
        return [n for n in self.nodes.values() if n.alive]

    def nodes_by_room(self) -> list[NodeState]:
        return sorted(self.live_nodes(), key=lambda n: -n.resources.available.get("CPU", 0.0))

    def roomiest_node(self) -> NodeState:
        nodes = self.nodes_by_room()
        if not nodes:
            raise RuntimeError("the sluice cluster has no live node to run work on")
        return nodes[0]

    # -- placement ---------------------------------------------------------------------
    def dispatch(self) -> None:
        order = None  # nodes by free CPUs, sorted once per pass (leases change it little)
        for key, q in self.ready.items():
            while q:
                task = q[0]
                held = self.store.bytes_on(task.deps) if task.deps else None
                if order is None:
                    order = self.nodes_by_room()
                nodes = sorted(order, key=lambda n: -held.get(n, 0)) if held else order
                w = self.pick_for(task, key, nodes)
                if w is None:
                    break
                if not held and w.node is not order[0]:  # try the node that took it first next
                    order.remove(w.node)
                    order.insert(0, w.node)
                self.send_task(q.popleft(), w)

    def pick_for(self, task: TaskRecord, key: ResourceKey, nodes: list[NodeState]) -> WorkerHandle | None:
        """A worker for ``task`` on the first of ``nodes`` that can take it: the node with
        most of its input bytes first, then the others by free CPUs (spillback)."""
        for node in nodes:
            w = self.pick_worker(key, task.fn_id, node)
            if w is not None:
                return w
        return None

    # -- objects -------------------------------------------------------------------------
    def spec_for_worker(self, oid: int, w: WorkerHandle | None = None) -> tuple:
        entry = self.objects.get(oid)
        if entry is not None and entry.spec is None:  # lost and being rebuilt: none to read now
            return (P.DEP_ERROR, serialization.dumps(ObjectLostError(
                f"object {oid:x} was lost with its node and is being rebuilt; read it again once "
                f"it is ready")))
        if entry is None or entry.spec[0] != P.DEP_SHM:
            return super().spec_for_worker(oid, w)
        locs = self.store.locations.get(oid)
        if not locs:
            return (P.DEP_ERROR, serialization.dumps(ObjectLostError(
                f"object {oid:x} has no copy on any live node")))
        node = None if w is None or w in self.remote_clients else w.node
        store = self.store
        if node is not None and node in locs:
            if not store.on_disk(oid, node):
                return (P.DEP_SHM, locs[node])
            source = node  # spilled here: this node's store reads it back from its disk
        else:  # from a node holding it in memory, if one does
            source = min(locs, key=lambda n: store.on_disk(oid, n))
        local = node.segment(oid) if node is not None else None
        return (P.DEP_REMOTE, (oid, source.flight, locs[source], local))

    def task_done(self, w: WorkerHandle, task_id: int, results: list, seconds: float) -> None:
        task = w.inflight.get(task_id)
        if task is not None and task.actor is None and not task.cancelled:
            # Before the task's inputs are released below: an input freed then keeps its
            # lineage, since this result's lineage reads it.
            made = [oid for oid, spec, _ in results if spec[0] == P.DEP_SHM and oid in self.objects]
            if made:
                ids = len(task.deps) + len(task.contained) + len(task.return_ids)
                self.lineage.record(task, made, task.deps,
                                    L.lineage_nbytes(len(task.args_blob), task.name, ids))
        super().task_done(w, task_id, results, seconds)

    def freed(self, oid: int) -> None:
        self.lineage.release(oid)  # kept while a kept task reads it

    # -- faults --------------------------------------------------------------------------
    def worker_died(self, w: WorkerHandle) -> None:
        super().worker_died(w)
        self.handles.pop(w.index, None)
        node = w.node
        if node is not None and node.alive and not self.closed:
            pool = sum(1 for x in self.workers if x.node is node and x.alive)
            if pool < max(1, int(node.resources.total.get("CPU", 1))):
                self.start_worker(node)  # keep the node's pool full after a crash

    def node_died(self, node: NodeState, why: str) -> None:
        """Declare ``node`` dead: its processes die with it, and what only it held is lost.

        Lost objects turn pending and go to :attr:`rebuilds`, which the head works through
        with :meth:`rebuild_step` (a bounded step per lock hold). The work here is linear
        in the directory and the tasks not yet sent, and never follows lineage.
        """
        if not node.alive:
            return
        node.alive = False
        node.outbox.close()
        for w in [x for x in self.all_workers() if x.node is node and x.alive]:
            if w in self.clients.values():
                continue
            w.proc.returncode = -9
            self.inbox.append((w, None))
        lost = set()
        context = (node.describe(), why)
        for oid in self.store.node_lost(node):
            entry = self.objects.get(oid)
            if entry is None or entry.state != READY:
                continue
            entry.state, entry.spec, entry.producer = PENDING, None, None
            if entry.contained:  # the rebuilt value brings its own
                contained, entry.contained = entry.contained, ()
                self.unhold(contained)
            self.rebuilds.add(oid, context)
            lost.add(oid)
        if lost:
            self.wait_for_rebuilds(lost)

    def wait_for_rebuilds(self, lost: set[int]) -> None:
        """Tasks not sent yet that read a ``lost`` object wait for it as for any pending input."""
        unqueue = set()
        for task in self.tasks.values():
            if task.worker is not None or task.local_to is not None:
                continue
            n = 0
            for oid in task.deps:
                if oid in lost:
                    self.objects[oid].waiters.append(task)
                    n += 1
            if n:
                if task.unresolved == 0 and task.actor is None:
                    unqueue.add(task)  # in a ready queue: it leaves it until the rebuild
                task.unresolved += n
        if unqueue:
            for q in self.ready.values():
                kept = [t for t in q if t not in unqueue]
                if len(kept) != len(q):
                    q.clear()
                    q.extend(kept)

    def rebuild_step(self, budget: int = L.REBUILD_STEP) -> bool:
        """Plan (and submit) up to ``budget`` moves of pending rebuilds; whether work remains."""
        more = self.rebuilds.step(self.rebuild_view, budget)
        self.dispatch()
        self.flush_all()
        return more

    def scratch_id(self) -> int:
        return (self.scratch_owner << OWNER_SHIFT) | next(self.scratch_ids)

    def lost_message(self, oid: int, failure: L.Failure, context: tuple[str, str]) -> str:
        where, why = context
        head = f"object {oid:x} was lost: its only copy was on {where}, which {why}"
        cause = failure.cause
        if failure.reason == L.EVICTED:
            whose = ("its lineage (the task that made it)" if cause == oid else
                     f"the lineage of object {cause:x}, which rebuilding it needs,")
            return (f"{head}, and it cannot be rebuilt: {whose} was evicted because the head keeps "
                    f"at most max_lineage_bytes={self.lineage.cap} bytes of lineage (the oldest "
                    f"objects' goes first). Raise the cap (sluice start --head --max-lineage-bytes "
                    f"N, or {L.ENV_MAX_LINEAGE_BYTES}), drop ObjectRefs you no longer need sooner, "
                    f"or keep a copy you cannot lose (sluice.get() it into the driver)")
        if failure.reason == L.NO_LINEAGE:
            how = ("it was stored by put() (or by an actor call), so nothing can compute it again"
                   if cause == oid else
                   f"rebuilding it needs object {cause:x}, which was freed and was stored by put() "
                   f"(or by an actor call), so nothing can compute it again")
        else:
            how = (f"an input of the task that made it (object {cause:x}) failed, so it cannot be "
                   f"computed again")
        return f"{head}; {how}. Keep the inputs alive (or put() it again) to survive node loss"


class SchedulerRebuildView:
    """The scheduler's object table and submission as a rebuild sees them
    (:class:`~sluice.executor.cluster.lineage.RebuildView`)."""

    def __init__(self, s: ClusterScheduler):
        self.s = s

    def status(self, oid: int) -> int:
        entry = self.s.objects.get(oid)
        if entry is None:
            return L.GONE
        return L.FAILED if entry.state == FAILED else L.HELD

    def hold(self, oid: int) -> None:
        self.s.hold((oid,))

    def unhold(self, oid: int) -> None:
        self.s.unhold((oid,))

    def submit(self, task: TaskRecord, outputs: list[int]) -> None:
        s = self.s
        keep = set(outputs)
        return_ids = [oid if oid in keep else s.scratch_id() for oid in task.return_ids]
        s.submit(TaskRecord(next(s.task_ids), task.fn_id, task.name, task.args_blob, list(task.deps),
                            task.contained, return_ids, task.key, task.retries_left, task.retry_exc,
                            []))

    def fail(self, oid: int, failure: L.Failure, context: Any) -> None:
        s = self.s
        if oid in s.objects:
            blob = serialization.dumps(ObjectLostError(s.lost_message(oid, failure, context)))
            s.add_object(oid, (P.DEP_ERROR, blob), (), adopt=False)
