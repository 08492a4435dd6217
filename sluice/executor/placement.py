"""What the scheduler asks of nodes and object stores, as small Protocols, and their local forms.

The :class:`~sluice.executor.scheduler.Scheduler` is state plus transitions: objects,
tasks, leases, actors. What differs between one machine and a cluster is injected:

- :class:`Placement`: the nodes and their resources; which node a ready task (through
  a :class:`DispatchPass`) or an actor goes to, its ``scheduling_strategy`` first;
  starting a worker on a node.
- :class:`ObjectLocations`: where stored (shared-memory) values live: a worker's
  result adopted where it was written, freed, pinned while read; how a worker reads
  one; how many bytes of some objects each node holds.
- :class:`LineageKeeper`: what a finished task made, kept to make it again if its
  copy is lost (a cluster's; one machine keeps none).
- :class:`WorkerIO`: the thread reading the workers' pipes, woken when a process
  starts and asked to apply the batches that arrived while the scheduler's lock
  was held.

:class:`LocalPlacement` and :class:`StoreLocations` are the embedded runtime's: one
node, whose processes have ``node`` None, and its shared-memory
:class:`~sluice.store.object_store.ObjectStore`. The cluster head's are in
:mod:`sluice.executor.cluster.placement`. A node is opaque to the scheduler
(:data:`Node`): it compares nodes by identity and hands them back to the placement.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sluice.exceptions import InternalError, UnschedulableError
from sluice.executor import protocol as P
from sluice.executor.backend import LOCAL_NODE, NodeID, NodeInfo, ObjectID, ObjectLocation
from sluice.executor.process import WorkerTemplate, spawn_worker
from sluice.executor.records import ActorRecord, TaskRecord, WorkerHandle
from sluice.executor.resources import NodeResources, ResourceKey
from sluice.executor.runtime_env import PreparedEnv
from sluice.executor.strategies import NodeAffinitySchedulingStrategy, is_affinity
from sluice.store.object_store import ObjectStore

Node = Any
"""A node as the placement knows it (None on one machine); the scheduler only compares them."""


class ResourceTotals(Protocol):
    """The resources of every live node together (one node's :class:`NodeResources`, or a
    cluster's sum)."""

    @property
    def total(self) -> dict[str, float]:
        """What the nodes have."""
        ...

    @property
    def available(self) -> dict[str, float]:
        """What running tasks and actors do not hold now."""
        ...

    def check_feasible(self, key: ResourceKey, what: str) -> None:
        """Raise :class:`~sluice.exceptions.InfeasibleResourceError` naming ``what`` when no
        node could ever meet ``key``."""
        ...


class Placement(Protocol):
    """Where work runs. Called under the scheduler's lock, except that the local runtime
    calls :meth:`LocalPlacement.check_strategy` (which reads nothing that changes) without it
    when a task is submitted."""

    def node_infos(self) -> list[NodeInfo]:
        """Every node, dead ones with ``alive`` False (``Backend.nodes``)."""
        ...

    def store_capacity(self) -> int:
        """Bytes the stores of the live nodes may hold together."""
        ...

    def node_id_of(self, node: Node) -> NodeID:
        """The id ``node_infos`` gives ``node`` (what a runtime context reports)."""
        ...

    def node_resources(self, node: Node) -> NodeResources:
        """The resources of ``node``, which its workers' leases and its actors take."""
        ...

    def spawn(self, index: int, node: Node, env: PreparedEnv | None = None) -> tuple[Any, Any]:
        """Start worker process ``index`` on ``node`` with runtime environment ``env`` (None:
        none): its process handle (``poll``, ``wait``, ``send_signal``) and the scheduler's
        end of its pipe (``send_bytes``, ``close``)."""
        ...

    def check_strategy(self, strategy: NodeAffinitySchedulingStrategy | str | None, what: str) -> None:
        """Raise :class:`~sluice.exceptions.UnschedulableError` naming ``what`` when
        ``strategy`` pins work to a node that is not there; pass otherwise."""
        ...

    def dispatch_pass(self) -> DispatchPass:
        """A dispatch pass starts: the ready tasks are placed through what this returns, in
        order, until the scheduler's walk ends (a policy may sort its nodes once per pass)."""
        ...

    def may_run_on(self, task: TaskRecord, node: Node) -> bool:
        """Whether ``task``, which has a ``strategy``, may queue on a worker of ``node``
        (behind the task making its input) instead of being placed when it is ready."""
        ...

    def place_actor(self, actor: ActorRecord) -> list[int] | None:
        """Take the actor's resources on a node (set ``actor.node``); its GPU ids, or None
        to wait for room. Raises :class:`~sluice.exceptions.UnschedulableError` when it
        can never start (pinned to a node that is gone)."""
        ...

    def actor_node_alive(self, actor: ActorRecord) -> bool:
        """Whether a restarted actor may come back on the node it ran on."""
        ...

    def reservable_nodes(self) -> list[tuple[Node, str, NodeResources]]:
        """The live nodes a placement group may reserve bundles on, as (node, its
        ``NodeInfo.node_id``, its resources), in a stable order."""
        ...


class DispatchPass(Protocol):
    """Where the ready tasks of one dispatch pass go."""

    def nodes_for(self, task: TaskRecord) -> Sequence[Node]:
        """The nodes to try for a ready task, best first (the scheduler takes the first with
        a worker free for it). Raises :class:`~sluice.exceptions.UnschedulableError` when
        the task can never run (pinned to a node that is gone): the task fails with it."""
        ...

    def spilled(self, task: TaskRecord, node: Node) -> None:
        """``task`` went to ``node``, not to the first node :meth:`nodes_for` named (that
        one had no room)."""
        ...


class ObjectLocations(Protocol):
    """Where the values of stored objects live. Called under the scheduler's lock.

    Small values travel inside messages and never reach it; it sees an object from
    :meth:`adopt` (or a driver's own put) until :meth:`free`.
    """

    retired: list[str]
    """Segment names that left a store for good (freed, spilled, evicted), appended as they
    go: the scheduler tells every reader to drop its mappings of them, then clears it."""

    def adopt(self, oid: ObjectID, size: int, node: Node) -> None:
        """A process on ``node`` wrote ``oid`` (``size`` bytes) into its node's store."""
        ...

    def free(self, oid: ObjectID) -> str | None:
        """Forget ``oid`` and drop its copies; a slot to recycle once every reader let go of
        it (see :meth:`release_slot`), or None."""
        ...

    def release_slot(self, name: str) -> None:
        """No process maps slot ``name`` (one :meth:`free` returned) any more: reuse it."""
        ...

    def pin(self, oid: ObjectID) -> None:
        """A task is about to read ``oid``: keep it where it is until :meth:`unpin`."""
        ...

    def unpin(self, oid: ObjectID) -> None:
        """Undo one :meth:`pin`."""
        ...

    def read_spec(self, oid: ObjectID, reader: WorkerHandle | None) -> tuple:
        """How process ``reader`` (None: the driver itself) reads stored object ``oid``:
        ``(DEP_SHM, segment)`` on its node, ``(DEP_REMOTE, ...)`` from another node, or
        ``(DEP_ERROR, blob)`` when no copy is left."""
        ...

    def bytes_on(self, oids: Iterable[ObjectID]) -> dict[Node, int]:
        """How many bytes of ``oids`` each node holds in memory (locality of a task's inputs)."""
        ...

    def location(self, oid: ObjectID, size: int) -> ObjectLocation:
        """The nodes holding stored object ``oid`` and its size (``Backend.object_locations``)."""
        ...


class LineageKeeper(Protocol):
    """What made each stored object, kept to make it again when its copies are lost."""

    def task_finished(self, task: TaskRecord, made: list[ObjectID]) -> None:
        """``task`` stored ``made`` (called before its inputs are released)."""
        ...

    def released(self, oid: ObjectID) -> None:
        """The scheduler dropped ``oid``: its lineage is kept only while kept lineage reads it."""
        ...


class WorkerIO(Protocol):
    """The thread that reads the workers' pipes and applies what they send."""

    def wake(self) -> None:
        """A process started (or its pipe changed): read the set of pipes again."""
        ...

    def drain_if_free(self) -> None:
        """Apply the batches queued while another thread held the scheduler's lock."""
        ...


def affinity_error(strategy: NodeAffinitySchedulingStrategy, what: str, state: str,
                   live: Sequence[str]) -> UnschedulableError:
    """The error of work pinned to a node it cannot run on.

    >>> affinity_error(NodeAffinitySchedulingStrategy("9", soft=False), "task f", "is not a node "
    ...                "of this cluster", ["1", "2"])  # doctest: +ELLIPSIS
    UnschedulableError("task f: scheduling_strategy=NodeAffinitySchedulingStrategy(node_id='9', soft=False) names node '9', which is not a node of this cluster (live nodes: '1', '2'); ...")
    """
    listed = ", ".join(repr(n) for n in live) or "none"
    return UnschedulableError(
        f"{what}: scheduling_strategy=NodeAffinitySchedulingStrategy(node_id={strategy.node_id!r}, "
        f"soft=False) names node {strategy.node_id!r}, which {state} (live nodes: {listed}); pin it "
        f"to one of the live nodes, or pass soft=True to let it run elsewhere")


class OneNodePass:
    """The :class:`DispatchPass` of one machine: every task goes to its one node (None)."""

    NODES: tuple[Node, ...] = (None,)

    def nodes_for(self, task: TaskRecord) -> Sequence[Node]:
        return self.NODES

    def spilled(self, task: TaskRecord, node: Node) -> None:
        raise InternalError(f"task {task.name} spilled to node {node!r} on a runtime of one node")


ONE_NODE_PASS = OneNodePass()


class LocalPlacement:
    """The :class:`Placement` of one machine: every worker and actor runs here.

    A node affinity to this node (``LOCAL_NODE``) is met; a soft one to another node
    is ignored (the work runs here, as it would when that node is gone); a hard one to
    another node can never be met and is refused when the work is submitted.
    """

    def __init__(self, session: str, resources: NodeResources, store_capacity: int,
                 template: WorkerTemplate | None = None, store: ObjectStore | None = None):
        self.session = session
        self.resources = resources
        self.capacity = store_capacity
        self.template = template  # forks workers; None: each a fresh interpreter
        self.store = store        # its use, for node_infos

    def node_infos(self) -> list[NodeInfo]:
        store = self.store
        return [NodeInfo(LOCAL_NODE, socket.gethostname(), True, dict(self.resources.total),
                         self.capacity, store.used_bytes if store is not None else 0,
                         store.num_spilled if store is not None else 0)]

    def store_capacity(self) -> int:
        return self.capacity

    def node_id_of(self, node: Node) -> NodeID:
        return LOCAL_NODE

    def node_resources(self, node: Node) -> NodeResources:
        return self.resources

    def spawn(self, index: int, node: Node, env: PreparedEnv | None = None) -> tuple[Any, Any]:
        overrides = env.overrides() if env is not None else None
        cwd = env.cwd if env is not None else None
        if env is not None and env.python is not None:  # a pip virtualenv: a fresh interpreter
            return spawn_worker(self.session, index, overrides, cwd, env.python)
        if self.template is not None:
            return self.template.spawn(self.session, index, overrides, cwd)
        return spawn_worker(self.session, index, overrides, cwd)

    def check_strategy(self, strategy: NodeAffinitySchedulingStrategy | str | None, what: str) -> None:
        if not is_affinity(strategy) or strategy.soft or strategy.node_id == LOCAL_NODE:
            return
        raise affinity_error(strategy, what, "this local runtime does not have", [LOCAL_NODE])

    def dispatch_pass(self) -> DispatchPass:
        return ONE_NODE_PASS

    def may_run_on(self, task: TaskRecord, node: Node) -> bool:
        return True

    def place_actor(self, actor: ActorRecord) -> list[int] | None:
        return self.resources.try_acquire(actor.key)

    def actor_node_alive(self, actor: ActorRecord) -> bool:
        return True

    def reservable_nodes(self) -> list[tuple[Node, str, NodeResources]]:
        return [(None, LOCAL_NODE, self.resources)]


class StoreLocations:
    """The :class:`ObjectLocations` of one machine: its shared-memory :class:`ObjectStore`
    (which spills to disk past its capacity and reads spilled values back on demand)."""

    def __init__(self, store: ObjectStore):
        self.store = store
        self.retired = store.retired  # the store appends to it

    def adopt(self, oid: ObjectID, size: int, node: Node) -> None:
        self.store.adopt(oid, size)

    def free(self, oid: ObjectID) -> str | None:
        return self.store.free(oid)

    def release_slot(self, name: str) -> None:
        self.store.release_slot(name)

    def pin(self, oid: ObjectID) -> None:
        self.store.pin(oid)

    def unpin(self, oid: ObjectID) -> None:
        self.store.unpin(oid)

    def read_spec(self, oid: ObjectID, reader: WorkerHandle | None) -> tuple:
        return (P.DEP_SHM, self.store.ensure_local(oid))

    def bytes_on(self, oids: Iterable[ObjectID]) -> dict[Node, int]:
        return {}

    def location(self, oid: ObjectID, size: int) -> ObjectLocation:
        return ObjectLocation(oid, (LOCAL_NODE,), size)


if TYPE_CHECKING:  # mypy checks that the local forms implement the Protocols

    def _conforms(placement: LocalPlacement, locations: StoreLocations) -> tuple[Placement, ObjectLocations]:
        return placement, locations
