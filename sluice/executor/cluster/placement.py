"""The cluster head's placement policy and object locations, injected into its scheduler.

The head runs the local scheduler unchanged (leases, pipelining, nested gets,
actors, retries); what differs is where a worker runs and where an object lives,
and that is all here, behind the Protocols of :mod:`sluice.executor.placement`:

* **Placement** (:class:`ClusterPlacement`). A task with a ``scheduling_strategy``
  goes to the node it names: a hard affinity (``soft=False``) only there, and it
  fails with :class:`~sluice.exceptions.UnschedulableError` (naming the node and
  the live ones) once that node is unknown or dead; a soft one there first, else
  where the rule below says. Without one (the Plan runner pins every stage the
  locality pass placed, softly), a task goes to the node holding most of its input
  bytes; when that node has no free resources (and no room to queue behind a busy
  worker) it spills back to the node with the most free CPUs. Actors are placed
  by their strategy, else on the node with the most free CPUs that has room.
* **Objects by directory** (:class:`ClusterLocations` over the
  :class:`~sluice.executor.cluster.directory.ObjectDirectory`). A worker reads an
  object its node holds as a local segment; for one held elsewhere it gets a
  ``DEP_REMOTE`` spec and its node pulls a copy once over Arrow Flight.

What a node's death costs (lineage, rebuilds) is :mod:`sluice.executor.cluster.recovery`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sluice.exceptions import InternalError, ObjectLostError
from sluice.executor import protocol as P
from sluice.executor.backend import NodeInfo, ObjectLocation
from sluice.executor.cluster.directory import NodeState, ObjectDirectory
from sluice.executor.cluster.relay import RelayConn, RemoteProc
from sluice.executor.placement import affinity_error
from sluice.executor.records import ActorRecord, TaskRecord, WorkerHandle
from sluice.executor.resources import NodeResources
from sluice.executor.runtime_env import PreparedEnv
from sluice.executor.strategies import NodeAffinitySchedulingStrategy, is_affinity
from sluice.store import serialization


class ClusterPlacement:
    """The head's :class:`~sluice.executor.placement.Placement`. See the module docstring.

    ``nodes``: every node that registered, by its number (dead ones stay, ``alive`` False).
    """

    def __init__(self, locations: ClusterLocations):
        self.locations = locations
        self.nodes: dict[int, NodeState] = {}
        self.by_name: dict[str, NodeState] = {}  # NodeInfo.node_id (a strategy's node_id) -> node
        self.spread_turn = 0  # the next node a "SPREAD" task or actor tries first (round-robin)

    def add_node(self, node: NodeState) -> None:
        """A node registered: work may go there from now on."""
        self.nodes[node.node_id] = node
        self.by_name[str(node.node_id)] = node

    # -- the nodes -----------------------------------------------------------------------
    def node_infos(self) -> list[NodeInfo]:
        return [NodeInfo(str(n.node_id), n.host, n.alive, dict(n.resources.total), n.store_capacity,
                         n.store_used, n.spills, n.pulls, n.pulled_bytes)
                for n in self.nodes.values()]

    def node_id_of(self, node: NodeState) -> str:
        return str(node.node_id)

    def store_capacity(self) -> int:
        return sum(n.store_capacity for n in self.nodes.values() if n.alive)

    def node_resources(self, node: NodeState) -> NodeResources:
        return node.resources

    def spawn(self, index: int, node: NodeState, env: PreparedEnv | None = None
              ) -> tuple[RemoteProc, RelayConn]:
        # A cluster's environment travels as variables: env_vars, and the runtime_env the
        # worker sets up on its node before its first task (packages, pip; see setup_on_node).
        node.outbox.control(("spawn", index) if env is None else ("spawn", index, env.overrides()))
        return RemoteProc(node.outbox, index), RelayConn(node.outbox, index)

    def live_nodes(self) -> list[NodeState]:
        """The nodes not declared dead, in the order they registered."""
        return [n for n in self.nodes.values() if n.alive]

    def nodes_by_room(self) -> list[NodeState]:
        """The live nodes, most free CPUs first."""
        return sorted(self.live_nodes(), key=lambda n: -n.resources.available.get("CPU", 0.0))

    def roomiest_node(self) -> NodeState:
        """The live node with the most free CPUs (where a driver without a node stores puts)."""
        nodes = self.nodes_by_room()
        if not nodes:
            raise RuntimeError("the sluice cluster has no live node to run work on")
        return nodes[0]

    # -- scheduling strategies -------------------------------------------------------------
    def pinned_node(self, strategy: NodeAffinitySchedulingStrategy, what: str) -> NodeState | None:
        """The live node ``strategy`` names; None when it names no live node and is soft.
        Raises :class:`~sluice.exceptions.UnschedulableError` when it names none and is hard."""
        node = self.by_name.get(strategy.node_id)
        if node is not None and node.alive:
            return node
        if strategy.soft:
            return None
        state = "is not a node of this cluster" if node is None else "has died"
        raise affinity_error(strategy, what, state, [str(n.node_id) for n in self.live_nodes()])

    def check_strategy(self, strategy: NodeAffinitySchedulingStrategy | str | None, what: str) -> None:
        if is_affinity(strategy):
            self.pinned_node(strategy, what)

    def spread_order(self) -> list[NodeState]:
        """The live nodes in registration order, starting at the next turn (round-robin)."""
        nodes = self.live_nodes()
        if not nodes:
            return nodes
        k = self.spread_turn % len(nodes)
        self.spread_turn += 1
        return nodes[k:] + nodes[:k]

    def reservable_nodes(self) -> list[tuple[NodeState, str, NodeResources]]:
        return [(n, str(n.node_id), n.resources) for n in self.live_nodes()]

    # -- tasks and actors ------------------------------------------------------------------
    def dispatch_pass(self) -> ClusterDispatch:
        return ClusterDispatch(self)

    def may_run_on(self, task: TaskRecord, node: NodeState) -> bool:
        strategy = task.strategy
        if not is_affinity(strategy):
            return True
        pinned = self.by_name.get(strategy.node_id)
        if node is pinned:
            return True
        return strategy.soft and (pinned is None or not pinned.alive)

    def place_actor(self, actor: ActorRecord) -> list[int] | None:
        order = self.nodes_by_room()
        strategy = actor.options.get("scheduling_strategy")
        if strategy == "SPREAD":
            order = self.spread_order()
        elif is_affinity(strategy):
            pinned = self.pinned_node(strategy, f"actor {actor.class_name}")
            order = [pinned] if pinned is not None and not strategy.soft else first(order, pinned)
        for node in order:
            gpus = node.resources.try_acquire(actor.key)
            if gpus is not None:
                actor.node = node
                return gpus
        return None

    def actor_node_alive(self, actor: ActorRecord) -> bool:
        return actor.node is not None and actor.node.alive


class ClusterDispatch:
    """One dispatch pass at the head (:class:`~sluice.executor.placement.DispatchPass`).

    The live nodes are sorted by free CPUs once per pass (leases change that little
    within one); a task whose inputs no node holds and that names no node follows that
    order, and a node that took such a task after the first had no room is tried first
    for the next ones.
    """

    def __init__(self, placement: ClusterPlacement):
        self.placement = placement
        self.order = placement.nodes_by_room()
        self.by_room = False  # the last nodes_for answer was ``order`` itself

    def nodes_for(self, task: TaskRecord) -> Sequence[NodeState]:
        placement = self.placement
        pinned = None
        if task.strategy == "SPREAD":
            self.by_room = False
            return placement.spread_order()
        strategy = task.strategy
        if is_affinity(strategy):
            pinned = placement.pinned_node(strategy, f"task {task.name}")
            if pinned is not None and not strategy.soft:
                self.by_room = False
                return (pinned,)
        order = self.order
        if task.deps:
            held = placement.locations.bytes_on(task.deps)
            if held:  # most input bytes first; ties (and nodes holding none) by free CPUs
                order = sorted(order, key=lambda n: -held.get(n, 0))
        if pinned is not None:
            order = first(list(order), pinned)
        self.by_room = order is self.order
        return order

    def spilled(self, task: TaskRecord, node: NodeState) -> None:
        if self.by_room:
            first(self.order, node)


def first(order: list[NodeState], node: NodeState | None) -> list[NodeState]:
    """``order`` with ``node`` (a live node, if any) moved to the front, in place."""
    if node is not None and order and order[0] is not node:
        order.remove(node)
        order.insert(0, node)
    return order


class ClusterLocations:
    """The head's :class:`~sluice.executor.placement.ObjectLocations`: the
    :class:`~sluice.executor.cluster.directory.ObjectDirectory` of node-held copies.

    ``remote_readers``: drivers on a machine that runs no node; they read every object
    from a node's store over Flight, into their own memory.
    """

    def __init__(self, directory: ObjectDirectory):
        self.directory = directory
        self.retired = directory.retired  # the directory appends to it
        self.remote_readers: set[WorkerHandle] = set()

    def adopt(self, oid: int, size: int, node: NodeState) -> None:
        self.directory.adopt(oid, size, node)

    def free(self, oid: int) -> str | None:
        self.directory.free(oid)  # each holder unlinks its copy; no slot is recycled
        return None

    def release_slot(self, name: str) -> None:
        raise InternalError(f"slot {name} released at the cluster head, which hands out no slots "
                            f"to recycle (free() returns none)")

    def pin(self, oid: int) -> None:
        self.directory.pin(oid)

    def unpin(self, oid: int) -> None:
        self.directory.unpin(oid)

    def read_spec(self, oid: int, reader: WorkerHandle | None) -> tuple:
        directory = self.directory
        locs = directory.locations.get(oid)
        if not locs:
            return (P.DEP_ERROR, serialization.dumps(ObjectLostError(
                f"object {oid:x} has no copy on any live node")))
        node = None if reader is None or reader in self.remote_readers else reader.node
        if node is not None and node in locs:
            if not directory.on_disk(oid, node):
                return (P.DEP_SHM, locs[node])
            source = node  # spilled here: this node's store reads it back from its disk
        else:  # from a node holding it in memory, if one does
            source = min(locs, key=lambda n: directory.on_disk(oid, n))
        local = node.segment(oid) if node is not None else None
        return (P.DEP_REMOTE, (oid, source.flight, locs[source], local))

    def bytes_on(self, oids: Iterable[int]) -> dict[Any, int]:
        return self.directory.bytes_on(oids)

    def location(self, oid: int, size: int) -> ObjectLocation:
        """The nodes the directory lists (in memory or spilled)."""
        directory = self.directory
        holders = tuple(str(n.node_id) for n in directory.locations.get(oid, {}))
        return ObjectLocation(oid, holders, directory.sizes.get(oid, size))



if TYPE_CHECKING:  # mypy checks that the head's forms implement the Protocols
    from sluice.executor.placement import ObjectLocations, Placement

    def _conforms(placement: ClusterPlacement, locations: ClusterLocations
                  ) -> tuple[Placement, ObjectLocations]:
        return placement, locations
