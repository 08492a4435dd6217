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
  made them (lineage), or fail with ``ObjectLostError`` when nothing can.
"""

from __future__ import annotations

from typing import Any

from sluice.exceptions import ObjectLostError
from sluice.executor import protocol as P
from sluice.executor.cluster.directory import (
    ClusterResources,
    NodeState,
    ObjectDirectory,
)
from sluice.executor.cluster.relay import RelayConn, RemoteProc
from sluice.executor.records import (
    FAILED,
    PENDING,
    ActorRecord,
    TaskRecord,
    WorkerHandle,
)
from sluice.executor.resources import NodeResources, ResourceKey
from sluice.executor.scheduler import Scheduler
from sluice.store import serialization


class ClusterScheduler(Scheduler):
    """Schedules one cluster's work from the head. See the module docstring."""

    def __init__(self, runtime: Any, nodes: dict[int, NodeState]):
        super().__init__("head", ClusterResources(nodes), ObjectDirectory(), runtime)
        self.nodes = nodes
        self.handles: dict[int, WorkerHandle] = {}    # worker index -> handle (pool, actor, driver)
        self.clients: dict[int, WorkerHandle] = {}    # connected drivers
        self.remote_clients: set[WorkerHandle] = set()  # drivers on a machine without a node
        self.lineage: dict[int, TaskRecord] = {}      # shm result -> the task that made it
        self.lineage_uses: dict[int, int] = {}        # object -> lineage records that read it

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
        if entry is None or entry.spec is None or entry.spec[0] != P.DEP_SHM:
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
            # lineage, since this result's lineage needs it.
            for oid, spec, _ in results:
                if spec[0] == P.DEP_SHM and oid in self.objects:
                    self.remember_lineage(oid, task)
        super().task_done(w, task_id, results, seconds)

    # -- lineage: the task that made each node-held object, and of its inputs while needed ---
    def remember_lineage(self, oid: int, task: TaskRecord) -> None:
        self.forget_lineage(oid, keep_inputs=True)
        self.lineage[oid] = task
        for dep in set(task.deps):
            self.lineage_uses[dep] = self.lineage_uses.get(dep, 0) + 1

    def forget_lineage(self, oid: int, keep_inputs: bool = False) -> None:
        """Drop ``oid``'s lineage, and that of freed inputs no other lineage needs."""
        stack = [oid]
        while stack:
            task = self.lineage.pop(stack.pop(), None)
            if task is None:
                continue
            for dep in set(task.deps):
                left = self.lineage_uses.get(dep, 0) - 1
                if left > 0:
                    self.lineage_uses[dep] = left
                    continue
                self.lineage_uses.pop(dep, None)
                if dep not in self.objects and not keep_inputs:
                    stack.append(dep)

    def freed(self, oid: int) -> None:
        if not self.lineage_uses.get(oid):  # else kept: a live object may need it rebuilt
            self.forget_lineage(oid)

    def rebuildable(self, task: TaskRecord | None, depth: int = 0) -> bool:
        """Whether ``task`` can run again: each input is alive, or can be rebuilt itself."""
        if task is None or depth > 1000:
            return False
        for dep in task.deps:
            entry = self.objects.get(dep)
            if entry is None:
                if not self.rebuildable(self.lineage.get(dep), depth + 1):
                    return False
            elif entry.state == FAILED:
                return False
        return True

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
        """Declare ``node`` dead: its processes die with it; rebuild or fail what it held."""
        if not node.alive:
            return
        node.alive = False
        node.outbox.close()
        for w in [x for x in self.all_workers() if x.node is node and x.alive]:
            if w in self.clients.values():
                continue
            w.proc.returncode = -9
            self.inbox.append((w, None))
        for oid in self.store.node_lost(node):
            self.object_lost(oid, node, why)

    def object_lost(self, oid: int, node: NodeState, why: str) -> None:
        entry = self.objects.get(oid)
        if entry is None or entry.state == PENDING:
            return
        task = self.lineage.get(oid)
        if self.rebuildable(task):
            self.rebuild(oid, entry, task)
            return
        how = ("it was stored by put(), so nothing can compute it again" if task is None else
               "an input of the task that made it cannot be computed again either")
        entry.spec = (P.DEP_ERROR, serialization.dumps(ObjectLostError(
            f"object {oid:x} was lost: its only copy was on {node.describe()}, which {why}; {how}. "
            f"Keep the inputs alive (or put() it again) to survive node loss")))
        entry.state = FAILED

    def rebuild(self, oid: int, entry: Any, task: TaskRecord) -> None:
        """Run the task that made ``oid`` again (and first those of its freed inputs);
        readers wait as for any pending object."""
        for dep in task.deps:
            if dep not in self.objects:  # freed since, but its lineage was kept for this
                self.rebuild(dep, self.new_entry(dep, None), self.lineage[dep])
        again = TaskRecord(next(self.task_ids), task.fn_id, task.name, task.args_blob, list(task.deps),
                           task.contained, [oid], task.key, task.retries_left, task.retry_exc, [])
        entry.state = PENDING
        entry.spec = None
        if entry.contained:
            self.unhold(entry.contained)
            entry.contained = ()
        self.submit(again)
