"""The Backend's queries about nodes and objects, answered from a scheduler's state.

One answer for the embedded runtime (``Runtime.nodes()``, ``object_locations()``,
...) and for a worker's or a cluster driver's ``LOOKUP`` message, wherever the
scheduler runs: what differs between one machine and a cluster comes from the
scheduler's injected :class:`~sluice.executor.placement.Placement` and
:class:`~sluice.executor.placement.ObjectLocations`. Call under the scheduler's lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sluice.exceptions import InfeasibleResourceError
from sluice.executor import protocol as P
from sluice.executor.backend import NodeInfo, ObjectLocation
from sluice.executor.records import READY

if TYPE_CHECKING:
    from sluice.executor.scheduler import Scheduler


def nodes(s: Scheduler) -> list[NodeInfo]:
    """Every node, dead ones with ``alive`` False."""
    return s.placement.node_infos()


def store_capacity(s: Scheduler) -> int:
    """Bytes the stores of the live nodes may hold together."""
    return s.placement.store_capacity()


def object_locations(s: Scheduler, ids: Sequence[int]) -> list[ObjectLocation]:
    """One location per id. Large values are held by stores (the scheduler's locations say
    which); small ones travel in messages; pending, failed and freed objects live nowhere."""
    objects = s.objects
    out = []
    for oid in ids:
        entry = objects.get(oid)
        spec = entry.spec if entry is not None and entry.state == READY else None
        if spec is None:
            out.append(ObjectLocation(oid))
        elif spec[0] == P.DEP_SHM:  # (DEP_SHM, size)
            out.append(s.locations.location(oid, spec[1]))
        else:  # (DEP_INLINE, bytes)
            out.append(ObjectLocation(oid, (), len(spec[1])))
    return out


def answer(s: Scheduler, what: str, arg: Any) -> Any:
    """The reply to a ``LOOKUP`` message (the wire form of the queries above, asked by a
    worker's or a cluster driver's Backend)."""
    if what == "actor":
        return s.actor_manager.find_named(arg)
    if what == "resources":
        return dict(s.resources.total) if arg == "total" else dict(s.resources.available)
    if what == "feasible":  # (demand key, what asks): None, or why no node ever could
        try:
            s.resources.check_feasible(*arg)
        except InfeasibleResourceError as err:
            return str(err)
        return None
    if what == "nodes":
        return nodes(s)
    if what == "locations":
        return object_locations(s, arg)
    if what == "capacity":
        return store_capacity(s)
    if what == "pg":  # (operation, argument): placement groups
        out = s.pgs.handle(*arg)
        s.flush_all()
        return out
    raise ValueError(f"unknown lookup {what!r}")
