"""The head's view of nodes and objects: node records, cluster resources, the object directory.

An object larger than the inline limit lives as a segment in the store of the
node whose worker made it; the directory records that node and every node that
pulled a copy since. Freeing an object asks each holder to unlink its copy. A node
past its store capacity drops copies that live elsewhere too and spills the least
recently used others to its disk, from where they are served and pulled back.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
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
        self.store_used = 0                   # bytes of its segments, as its heartbeats say
        self.store_bytes = 0                  # bytes of the objects the head placed in its memory
        self.spills = 0                       # objects spilled to its disk so far
        self.pulls = 0                        # objects it pulled from other nodes so far
        self.pulled_bytes = 0                 # and their bytes
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
    """Which nodes hold a copy of each shared-memory object, and each node's store use.

    Plain state, read and changed under the head's scheduler lock; the scheduler reaches
    it through :class:`~sluice.executor.cluster.placement.ClusterLocations`.
    """

    def __init__(self) -> None:
        self.locations: dict[int, dict[NodeState, str]] = {}
        self.sizes: dict[int, int] = {}
        self.retired: list[str] = []          # names whose mappings readers should drop
        self.spilled: dict[int, set[NodeState]] = {}  # copies moved to their node's disk
        self.pins: dict[int, int] = {}        # objects tasks are about to read: never spilled
        self.recency: OrderedDict[int, None] = OrderedDict()  # least recently used first

    # -- what the scheduler's locations change -------------------------------------------
    def adopt(self, oid: int, size: int, node: NodeState) -> None:
        """A process on ``node`` stored ``oid`` there."""
        self.locations[oid] = {node: node.segment(oid)}
        self.sizes[oid] = size
        self.recency[oid] = None
        self.gained(node, size)

    def add_copy(self, oid: int, node: NodeState, name: str) -> None:
        """``node`` pulled a copy of ``oid`` (segment ``name``), or read it back from its disk."""
        locs = self.locations.get(oid)
        if locs is None:  # freed meanwhile: drop the fresh copy too
            if node.alive:
                node.outbox.control(("unlink", [name]))
            return
        on_disk = self.spilled.get(oid)
        restored = on_disk is not None and node in on_disk
        if node in locs and not restored:
            return  # already in that node's memory
        if on_disk is not None:  # (restored: read back from that node's disk)
            on_disk.discard(node)
            if not on_disk:
                del self.spilled[oid]
        locs[node] = name
        size = self.sizes.get(oid, 0)
        self.gained(node, size)
        if not restored:  # a transfer from another node
            node.pulls += 1
            node.pulled_bytes += size

    def free(self, oid: int) -> None:
        size = self.sizes.pop(oid, 0)
        on_disk = self.spilled.pop(oid, set())
        self.recency.pop(oid, None)
        self.pins.pop(oid, None)
        for node, name in self.locations.pop(oid, {}).items():
            if node not in on_disk:
                node.store_bytes -= size
                self.retired.append(name)
            if node.alive and not node.outbox.closed:
                node.outbox.control(("unlink", [name]))

    def pin(self, oid: int) -> None:
        self.pins[oid] = self.pins.get(oid, 0) + 1
        if oid in self.recency:
            self.recency.move_to_end(oid)

    def unpin(self, oid: int) -> None:
        left = self.pins.get(oid, 0) - 1
        if left > 0:
            self.pins[oid] = left
        else:
            self.pins.pop(oid, None)

    # -- capacity: spill the least recently used copies past a node's store capacity ---------
    def gained(self, node: NodeState, size: int) -> None:
        node.store_bytes += size
        if node.store_bytes > node.store_capacity:
            self.make_room(node)

    def make_room(self, node: NodeState) -> None:
        """Bring ``node`` back under its capacity: drop copies that live elsewhere too, and
        spill objects whose only copy is there to its disk (served and pulled back from it)."""
        drop, spill = [], []
        for oid in self.recency:
            if node.store_bytes <= node.store_capacity:
                break
            locs = self.locations.get(oid)
            on_disk = self.spilled.get(oid, ())
            if not locs or node not in locs or node in on_disk or self.pins.get(oid):
                continue
            in_memory = [n for n in locs if n not in self.spilled.get(oid, ())]
            if len(in_memory) > 1:
                drop.append(locs.pop(node))
            else:
                spill.append(locs[node])
                self.spilled.setdefault(oid, set()).add(node)
            node.store_bytes -= self.sizes.get(oid, 0)
        if drop:
            self.retired.extend(drop)
            node.outbox.control(("unlink", drop))
        if spill:
            self.retired.extend(spill)
            node.outbox.control(("spill", spill))
        node.spills += len(spill)

    def on_disk(self, oid: int, node: NodeState) -> bool:
        return node in self.spilled.get(oid, ())

    # -- cluster queries -----------------------------------------------------------------
    def bytes_on(self, oids: Any) -> dict[NodeState, int]:
        """How many bytes of ``oids`` each node holds."""
        held: dict[NodeState, int] = {}
        for oid in oids:
            locs = self.locations.get(oid)
            if locs:
                size = self.sizes.get(oid, 0)
                on_disk = self.spilled.get(oid, ())
                for node in locs:
                    if node not in on_disk:
                        held[node] = held.get(node, 0) + size
        return held

    def node_lost(self, node: NodeState) -> list[int]:
        """Forget ``node``'s copies; the objects that had no other copy."""
        lost = []
        for oid, locs in self.locations.items():
            if node in locs:
                del locs[node]
                on_disk = self.spilled.get(oid)
                if on_disk is not None:
                    on_disk.discard(node)
                    if not on_disk:
                        del self.spilled[oid]
                if not locs:
                    lost.append(oid)
        for oid in lost:
            del self.locations[oid]
        return lost
