"""The head's view of nodes and objects: node records, cluster resources, the object directory.

An object larger than the inline limit lives as a segment in the store of the
node whose worker made it; the directory records that node and every node that
pulled a copy since. Freeing an object asks each holder to unlink its copy.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sluice.exceptions import InfeasibleResourceError
from sluice.executor.cluster.relay import Outbox
from sluice.executor.resources import NodeResources, ResourceKey
from sluice.store import shm


class NodeState:
    """One node daemon as the head sees it."""

    def __init__(self, node_id: int, host: str, hostname: str, flight: str, session: str,
                 total: dict[str, float], store_capacity: int, pid: int):
        self.node_id = node_id
        self.host = host
        self.hostname = hostname
        self.flight = flight                  # its Arrow Flight location
        self.session = session                # its segments are sluice-{session}-{oid hex}
        self.resources = NodeResources(total)
        self.store_capacity = store_capacity
        self.pid = pid
        self.alive = True
        self.last_heartbeat = time.monotonic()
        self.store_used = 0
        self.outbox = Outbox()
        self.connected = False                # its NodeChannel stream is open

    def segment(self, oid: int) -> str:
        return shm.segment_name(self.session, oid)

    def describe(self) -> str:
        return f"node {self.node_id} ({self.host})"


class ClusterResources:
    """The resources of all live nodes, for feasibility checks and ``cluster_resources()``."""

    def __init__(self, nodes: dict[int, NodeState]):
        self.nodes = nodes

    def _sum(self, attr: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for node in self.nodes.values():
            if node.alive:
                for name, amount in getattr(node.resources, attr).items():
                    out[name] = out.get(name, 0.0) + amount
        return out

    @property
    def total(self) -> dict[str, float]:
        return self._sum("total")

    @property
    def available(self) -> dict[str, float]:
        return self._sum("available")

    def check_feasible(self, key: ResourceKey, what: str) -> None:
        """Raise at once when no live node could ever run ``key``."""
        for node in self.nodes.values():
            if node.alive and all(node.resources.total.get(n, 0.0) >= a for n, a in key):
                return
        wanted = ", ".join(f"{n}={a:g}" for n, a in key) or "nothing"
        have = "; ".join(f"{n.describe()}: {json.dumps(n.resources.total)}"
                         for n in self.nodes.values() if n.alive) or "no live nodes"
        raise InfeasibleResourceError(
            f"{what}: no node of this sluice cluster has {wanted} ({have}); start a node that "
            f"has it with `sluice start --address HEAD:PORT --num-cpus/--num-gpus/--resources ...` "
            f"or lower the request")


class ObjectDirectory:
    """Which nodes hold a copy of each shared-memory object; the store interface of the head.

    The scheduler calls it as it calls the local :class:`~sluice.store.object_store.ObjectStore`
    (adopt, free, pin, ...). ``origin`` is the node whose worker batch is being applied:
    a result or put adopted meanwhile lives there.
    """

    def __init__(self) -> None:
        self.locations: dict[int, dict[NodeState, str]] = {}
        self.sizes: dict[int, int] = {}
        self.origin: NodeState | None = None
        self.retired: list[str] = []          # names whose mappings readers should drop

    # -- what the scheduler calls ------------------------------------------------------
    def adopt(self, oid: int, size: int) -> None:
        node = self.origin
        if node is None:
            raise RuntimeError(f"object {oid:x} stored by a process of no known node")
        self.locations[oid] = {node: node.segment(oid)}
        self.sizes[oid] = size

    def add_copy(self, oid: int, node: NodeState, name: str) -> None:
        locs = self.locations.get(oid)
        if locs is None:  # freed meanwhile: drop the fresh copy too
            if node.alive:
                node.outbox.control(("unlink", [name]))
            return
        locs[node] = name

    def free(self, oid: int) -> None:
        self.sizes.pop(oid, None)
        for node, name in self.locations.pop(oid, {}).items():
            self.retired.append(name)
            if node.alive and not node.outbox.closed:
                node.outbox.control(("unlink", [name]))
        # no slot to recycle

    def pin(self, oid: int) -> None:
        pass  # node stores do not evict what a task reads (no spilling across nodes yet)

    def unpin(self, oid: int) -> None:
        pass

    def slot_coming(self, nbytes: int) -> bool:
        return False

    def release_slot(self, name: str) -> None:
        pass

    def close(self) -> None:
        pass

    # -- cluster queries -----------------------------------------------------------------
    def bytes_on(self, oids: Any) -> dict[NodeState, int]:
        """How many bytes of ``oids`` each node holds."""
        held: dict[NodeState, int] = {}
        for oid in oids:
            locs = self.locations.get(oid)
            if locs:
                size = self.sizes.get(oid, 0)
                for node in locs:
                    held[node] = held.get(node, 0) + size
        return held

    def node_lost(self, node: NodeState) -> list[int]:
        """Forget ``node``'s copies; the objects that had no other copy."""
        lost = []
        for oid, locs in self.locations.items():
            if node in locs:
                del locs[node]
                if not locs:
                    lost.append(oid)
        for oid in lost:
            del self.locations[oid]
        return lost

    def count_on(self, node: NodeState) -> int:
        return sum(1 for locs in self.locations.values() if node in locs)
