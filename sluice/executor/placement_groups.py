"""Placement groups in the scheduler: bundles of resources reserved together on nodes.

A group's bundles are reserved all at once or not at all. A reserved bundle's
resources leave its node's free pool and come back renamed, as Ray names them
(:func:`~sluice.executor.strategies.group_resource`): ``CPU_group_{i}_{id}`` for
bundle ``i``, ``CPU_group_{id}`` for any bundle of the group on that node, and
``bundle_group_...`` (1000 per bundle) that every task of the group takes a sliver
of. A task or actor given a
:class:`~sluice.executor.strategies.PlacementGroupSchedulingStrategy` asks for
those names instead (its options rename its demand), so the scheduler places it
like any other work and only the group's nodes can run it.

Where bundles go (:func:`assign`), over the live nodes of the scheduler's placement:
``STRICT_PACK`` all on one node; ``PACK`` on one node if one has room, else on as
few as first-fit finds; ``STRICT_SPREAD`` each on its own node; ``SPREAD`` on
distinct nodes where there is room, else shared. A group that no node could ever
hold (a bundle larger than every node, ``STRICT_SPREAD`` with more bundles than
nodes, ``STRICT_PACK`` larger than every node) fails at once; one that does not fit
yet waits (``PENDING``) and is tried again whenever resources are freed.

Removing a group stops its tasks (they fail with the removal) and its actors, then
returns its reservation. A node that dies with a bundle on it (a cluster's): the
bundle moves to a live node that has room for it within the strategy; when none
has, the group fails (state ``FAILED``): its ``ready()`` and its tasks raise
:class:`~sluice.exceptions.UnschedulableError` naming the node.

All calls are made under the scheduler's lock; the LOOKUP message ``("pg", (op,
arg))`` reaches :meth:`PlacementGroups.handle` from a worker or a cluster's driver.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

from sluice.exceptions import ActorPlacementGroupRemoved, TaskPlacementGroupRemoved, UnschedulableError
from sluice.executor import protocol as P
from sluice.executor.records import PENDING, ActorRecord
from sluice.executor.strategies import PlacementGroupSchedulingStrategy, group_resource
from sluice.store import serialization

if TYPE_CHECKING:
    from sluice.executor.scheduler import Scheduler

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
BUNDLE_UNITS = 1000.0
"""The ``bundle_group`` resource of each bundle (a task of the group takes 0.001 of it)."""
EPS = 1e-9

Bundle = dict[str, float]


class GroupRecord:
    """One placement group, from creation until removed (kept for the table afterwards)."""

    __slots__ = ("id", "name", "bundles", "strategy", "lifetime", "blob", "state", "nodes",
                 "readers", "error")

    def __init__(self, gid: str, name: str, bundles: list[Bundle], strategy: str,
                 lifetime: str | None, blob: bytes):
        self.id = gid
        self.name = name
        self.bundles = bundles
        self.strategy = strategy
        self.lifetime = lifetime
        self.blob = blob                     # what ready() resolves to: the pickled group
        self.state = "PENDING"               # PENDING -> CREATED -> REMOVED | FAILED
        self.nodes: list[tuple[Any, str]] = []  # (node, node id) per bundle while CREATED
        self.readers: list[int] = []         # ready() object ids to fill once CREATED/failed
        self.error: bytes | None = None      # why it failed (a pickled error), once FAILED

    @property
    def suffix(self) -> str:
        """The ending of every resource name this group adds to a node."""
        return "_" + self.id

    def table_row(self) -> dict[str, Any]:
        """Its row of ``placement_group_table`` (Ray's keys)."""
        return {"placement_group_id": self.id, "name": self.name,
                "bundles": {i: dict(b) for i, b in enumerate(self.bundles)},
                "bundles_to_node_id": {i: name for i, (_, name) in enumerate(self.nodes)},
                "strategy": self.strategy, "state": self.state,
                "lifetime": self.lifetime}


def base_resources(resources: dict[str, float]) -> dict[str, float]:
    """A node's own resources, without those placement groups renamed into it."""
    return {k: v for k, v in resources.items() if "_group_" not in k}


def fits(bundle: Bundle, free: dict[str, float]) -> bool:
    """Whether ``bundle`` fits in ``free``."""
    return all(free.get(k, 0.0) >= v - EPS for k, v in bundle.items())


def largest_node(nodes: list[tuple[str, dict[str, float]]]) -> str:
    """``'ID' has {resources}`` of the node with the most CPUs (then GPUs) among ``nodes``."""
    name, total = max(nodes, key=lambda n: (n[1].get("CPU", 0.0), n[1].get("GPU", 0.0)))
    return f"{name!r} has {base_resources(total)}"


def total_of(bundles: list[Bundle]) -> Bundle:
    """The sum of ``bundles``."""
    out: Bundle = {}
    for b in bundles:
        for k, v in b.items():
            out[k] = out.get(k, 0.0) + v
    return out


def assign(bundles: list[tuple[int, Bundle]], nodes: list[tuple[Any, dict[str, float]]],
           strategy: str, taken: list[Any]) -> dict[int, Any] | None:
    """Bundle index -> node for ``bundles`` over ``nodes`` ((node, free resources), best
    first), honouring ``strategy``; ``taken``: nodes the group's other bundles hold. None
    when they do not all fit now. Reads ``nodes``' free resources; changes nothing.

    >>> assign([(0, {"CPU": 1}), (1, {"CPU": 1})], [("a", {"CPU": 2}), ("b", {"CPU": 2})],
    ...        "STRICT_SPREAD", [])
    {0: 'a', 1: 'b'}
    >>> assign([(0, {"CPU": 1}), (1, {"CPU": 1})], [("a", {"CPU": 2}), ("b", {"CPU": 2})], "PACK", [])
    {0: 'a', 1: 'a'}
    """
    names = {k for _, b in bundles for k in b}  # only these are read: copy only these
    free = {id(n): {k: f.get(k, 0.0) for k in names} for n, f in nodes}
    if strategy in ("PACK", "STRICT_PACK"):
        need = total_of([b for _, b in bundles])
        candidates = [n for n, _ in nodes if not taken or n in taken]
        if strategy == "STRICT_PACK" and taken:
            candidates = [n for n in candidates if n is taken[0]]
        for n in candidates:
            if fits(need, free[id(n)]):
                return {i: n for i, _ in bundles}
        if strategy == "STRICT_PACK":
            return None
    used = list(taken)
    out: dict[int, Any] = {}
    for i, b in bundles:
        if strategy == "PACK":  # first fit, the nodes already used first
            order = used + [n for n, _ in nodes if n not in used]
        elif strategy == "SPREAD":  # unused nodes first
            order = [n for n, _ in nodes if n not in used] + used
        else:  # STRICT_SPREAD: unused nodes only
            order = [n for n, _ in nodes if n not in used]
        node = next((n for n in order if fits(b, free[id(n)])), None)
        if node is None:
            return None
        for k, v in b.items():
            free[id(node)][k] = free[id(node)].get(k, 0.0) - v
        out[i] = node
        if node not in used:
            used.append(node)
    return out


class PlacementGroups:
    """The placement groups of one scheduler (its ``pgs``). See the module docstring."""

    def __init__(self, scheduler: Scheduler):
        self.s = scheduler
        self.groups: dict[str, GroupRecord] = {}
        self.by_name: dict[str, str] = {}     # name -> id of a group not removed
        self.pending: list[GroupRecord] = []  # waiting for room, oldest first
        self.retrying = False

    # -- the wire form -----------------------------------------------------------------
    def handle(self, op: str, arg: Any) -> Any:
        """Answer ``op`` (create, ready, remove, get, table) for a driver or worker."""
        if op == "create":
            return self.create(*arg)
        if op == "ready":
            self.watch(*arg)
            return None
        if op == "remove":
            self.remove(arg)
            return None
        if op == "get":
            gid = self.by_name.get(arg)
            g = self.groups.get(gid) if gid is not None else None
            return None if g is None else (g.id, g.bundles, g.strategy, g.name, g.lifetime)
        if op == "table":
            if arg is None:
                return {g.id: g.table_row() for g in self.groups.values()}
            g = self.groups.get(arg)
            return None if g is None else g.table_row()
        raise ValueError(f"unknown placement group operation {op!r}")

    # -- creation ----------------------------------------------------------------------
    def create(self, gid: str, name: str, bundles: list[Bundle], strategy: str,
               lifetime: str | None, blob: bytes) -> str | None:
        """Register a group and reserve it now if it fits; a message when ``name`` is taken."""
        if name and name in self.by_name:
            return (f"a placement group named {name!r} already exists; pick another name, or "
                    f"reach it with sluice.util.get_placement_group({name!r})")
        g = GroupRecord(gid, name, bundles, strategy, lifetime, blob)
        self.groups[gid] = g
        if name:
            self.by_name[name] = gid
        problem = self.never_fits(g)
        if problem is not None:
            self.fail(g, UnschedulableError(problem))
        elif not self.try_reserve(g):
            self.pending.append(g)
        return None

    def never_fits(self, g: GroupRecord) -> str | None:
        """Why no set of the live nodes could ever hold ``g``, or None."""
        nodes = [(name, res.total) for _, name, res in self.s.placement.reservable_nodes()]
        if not nodes:
            return None  # a cluster without nodes yet: wait for one
        where = f"placement group {g.name or g.id} ({g.strategy})"
        if g.strategy == "STRICT_SPREAD" and len(g.bundles) > len(nodes):
            return (f"{where}: STRICT_SPREAD puts each of its {len(g.bundles)} bundles on its own node, "
                    f"but there are {len(nodes)} live node(s); use SPREAD, or fewer bundles, or add nodes")
        if g.strategy == "STRICT_PACK":
            need = total_of(g.bundles)
            if not any(fits(need, total) for _, total in nodes):
                return (f"{where}: its bundles together {need} fit on no node; the largest node "
                        f"{largest_node(nodes)}; use PACK, or smaller bundles")
        for i, b in enumerate(g.bundles):
            if not any(fits(b, total) for _, total in nodes):
                return (f"{where}: bundle {i} {b} fits on no node; the largest node "
                        f"{largest_node(nodes)}; make the bundle smaller or add a larger node")
        return None

    def try_reserve(self, g: GroupRecord) -> bool:
        """Reserve every bundle of ``g`` now, or nothing (False)."""
        nodes = self.s.placement.reservable_nodes()
        order = sorted(nodes, key=lambda n: -n[2].available.get("CPU", 0.0))
        placed = assign(list(enumerate(g.bundles)), [(n, res.available) for n, _, res in order],
                        g.strategy, [])
        if placed is None:
            return False
        names = {id(n): name for n, name, _ in nodes}
        g.nodes = [(placed[i], names[id(placed[i])]) for i in range(len(g.bundles))]
        for i, b in enumerate(g.bundles):
            self.reserve_bundle(g, i, b)
        g.state = "CREATED"
        self.fill_readers(g)
        return True

    def reserve_bundle(self, g: GroupRecord, i: int, bundle: Bundle) -> None:
        """Move bundle ``i``'s resources out of its node's free pool into the group's names."""
        res = self.s.placement.node_resources(g.nodes[i][0])
        items = dict(bundle)
        items["bundle"] = BUNDLE_UNITS
        for k, v in items.items():
            if k != "bundle":
                res.available[k] = res.available.get(k, 0.0) - v
            for name in (group_resource(k, g.id, i), group_resource(k, g.id)):
                res.total[name] = res.total.get(name, 0.0) + v
                res.available[name] = res.available.get(name, 0.0) + v

    def retry(self) -> None:
        """Resources were freed: reserve the pending groups that fit now, oldest first."""
        if self.retrying:
            return
        self.retrying = True
        try:
            done = [g for g in self.pending if self.try_reserve(g)]
            if done:
                self.pending = [g for g in self.pending if g.state == "PENDING"]
                self.s.dispatch()
        finally:
            self.retrying = False

    # -- ready -------------------------------------------------------------------------
    def watch(self, gid: str, oid: int) -> None:
        """Object ``oid`` resolves to the group once it is reserved (or to why it cannot be)."""
        g = self.groups.get(gid)
        if g is None:
            self.put(oid, (P.DEP_ERROR, serialization.dumps(ValueError(
                f"no placement group {gid} in this runtime; it belongs to an earlier session"))))
        elif g.state == "PENDING":
            g.readers.append(oid)
        else:
            self.put(oid, self.outcome(g))

    def outcome(self, g: GroupRecord) -> tuple:
        """What ``g``'s ready() resolves to now that it is not pending."""
        if g.state == "CREATED":
            return (P.DEP_INLINE, g.blob)
        return (P.DEP_ERROR, g.error or serialization.dumps(UnschedulableError(
            f"placement group {g.name or g.id} was removed")))

    def fill_readers(self, g: GroupRecord) -> None:
        readers, g.readers = g.readers, []
        spec = self.outcome(g)
        for oid in readers:
            self.put(oid, spec)

    def put(self, oid: int, spec: tuple) -> None:
        entry = self.s.objects.get(oid)
        if entry is None:
            entry = self.s.new_entry(oid, None)  # the reader's ref is still on its way
        if entry.state == PENDING:
            self.s.add_object(oid, spec, ())

    def check_usable(self, gid: str, what: str) -> None:
        """Raise when work of group ``gid`` could never run (the group is gone or failed)."""
        g = self.groups.get(gid)
        if g is None:
            raise UnschedulableError(f"{what}: placement group {gid} is not in this runtime; make it "
                                     "with sluice.util.placement_group(...) first")
        if g.state in ("REMOVED", "FAILED"):
            error = UnschedulableError if g.state == "FAILED" else \
                ActorPlacementGroupRemoved if what.startswith("actor") else TaskPlacementGroupRemoved
            raise error(f"{what}: placement group {g.name or g.id} is {g.state.lower()}; "
                                     "schedule it in a live placement group")

    # -- the group a worker runs in -------------------------------------------------------
    def running_in(self, w: Any) -> Any:
        """The PlacementGroupSchedulingStrategy of what ``w`` runs now (its actor's, or its
        running task's), or None."""
        if w.actor is not None:
            strategy = w.actor.options.get("scheduling_strategy")
            return strategy if isinstance(strategy, PlacementGroupSchedulingStrategy) else None
        running = next(iter(w.inflight.values()), None)
        return running.group if running is not None else None

    def captured(self, w: Any) -> PlacementGroupSchedulingStrategy | None:
        """The strategy a task or actor submitted from ``w`` defaults to: any bundle of the
        group ``w`` runs in, when that group's strategy captures child tasks."""
        strategy = self.running_in(w)
        if strategy is None or not strategy.placement_group_capture_child_tasks:
            return None
        return PlacementGroupSchedulingStrategy(strategy.placement_group, -1, True)

    def current(self, w: Any) -> tuple[str, list[Bundle]] | None:
        """``(id, bundles)`` of the group ``w`` runs in (``get_current_placement_group``)."""
        strategy = self.running_in(w)
        if strategy is None:
            return None
        pg = strategy.placement_group
        return pg.id, pg.bundle_specs

    # -- removal and failure ------------------------------------------------------------
    def remove(self, gid: str) -> None:
        """Stop ``gid``'s tasks and actors and return its reservation."""
        g = self.groups.get(gid)
        if g is None or g.state in ("REMOVED", "FAILED"):
            return
        self.end(g, "REMOVED", UnschedulableError(removed_message(g)))

    def fail(self, g: GroupRecord, err: Exception) -> None:
        """``g`` can never be reserved (again): its ready() and its work raise ``err``."""
        self.end(g, "FAILED", err)

    def end(self, g: GroupRecord, state: str, err: Exception) -> None:
        was_created = g.state == "CREATED"
        if g in self.pending:
            self.pending.remove(g)
        g.state = state
        g.error = serialization.dumps(err)
        if self.by_name.get(g.name) == g.id:
            del self.by_name[g.name]
        self.fill_readers(g)
        self.stop_work(g, g.error)
        if was_created:
            self.release(g)
        self.s.actor_manager.retry_waiting()
        self.s.dispatch()

    def uses(self, key: Any, suffix: str) -> bool:
        return any(name.endswith(suffix) for name, _ in key)

    def stop_work(self, g: GroupRecord, blob: bytes) -> None:
        """Fail the group's tasks (killing the workers running them) and its actors."""
        s, suffix = self.s, g.suffix
        actor_blob = task_blob = blob
        if g.state == "REMOVED":  # Ray's errors for it (both UnschedulableErrors, as before)
            actor_blob = serialization.dumps(ActorPlacementGroupRemoved(removed_message(g)))
            task_blob = serialization.dumps(TaskPlacementGroupRemoved(removed_message(g)))
        for actor in list(s.actors.values()):
            if actor.state != ActorRecord.DEAD and self.uses(actor.key, suffix):
                w = actor.worker
                s.actor_manager.mark_dead(actor, actor_blob)
                if w is not None and w.alive:
                    _sigkill(w)
        doomed = []
        for task in list(s.tasks.values()):
            if task.actor is not None or not self.uses(task.key, suffix):
                continue
            w = task.worker
            if w is not None:
                s.take_inflight(w, task.task_id)
                if w not in doomed:
                    doomed.append(w)
            else:
                q = s.ready.get(task.lane)
                if q is not None and task in q:
                    q.remove(task)
                for dep in task.deps:
                    entry = s.objects.get(dep)
                    if entry is not None and task in entry.waiters:
                        entry.waiters.remove(task)
            s.finish_failed(task, task_blob)
        for w in doomed:  # their leases are the group's: end them before it is released
            _sigkill(w)
            s.worker_died(w)

    def release(self, g: GroupRecord) -> None:
        """Give each bundle's resources back to its node; drop the group's names."""
        for i, (node, _) in enumerate(g.nodes):
            res = self.s.placement.node_resources(node)
            for k, v in g.bundles[i].items():
                res.available[k] = res.available.get(k, 0.0) + v
            drop_names(res, g, [i])

    # -- a node died (a cluster's) ------------------------------------------------------
    def node_died(self, node: Any, node_name: str) -> None:
        """Move the bundles ``node`` held to live nodes with room, or fail their groups."""
        for g in list(self.groups.values()):
            if g.state != "CREATED":
                continue
            lost = [i for i, (n, _) in enumerate(g.nodes) if n is node]
            if lost:
                self.move_bundles(g, lost, node, node_name)

    def move_bundles(self, g: GroupRecord, lost: list[int], node: Any, node_name: str) -> None:
        nodes = self.s.placement.reservable_nodes()
        taken = [n for i, (n, _) in enumerate(g.nodes) if i not in lost]
        placed = assign([(i, g.bundles[i]) for i in lost],
                        [(n, res.available) for n, _, res in nodes], g.strategy, taken)
        drop_names(self.s.placement.node_resources(node), g, lost)  # gone with the node
        if placed is None:
            g.nodes = [(n, name) if i not in lost else (None, name)
                       for i, (n, name) in enumerate(g.nodes)]
            err = UnschedulableError(
                f"placement group {g.name or g.id} ({g.strategy}): node {node_name!r} died with "
                f"bundle(s) {lost} on it, and no live node has room for them within the strategy; "
                "create the group again once the cluster has room")
            self.end_lost(g, err, lost)
            return
        names = {id(n): name for n, name, _ in nodes}
        for i in lost:
            g.nodes[i] = (placed[i], names[id(placed[i])])
            self.reserve_bundle(g, i, g.bundles[i])
        self.s.dispatch()

    def end_lost(self, g: GroupRecord, err: Exception, lost: list[int]) -> None:
        """Fail ``g`` after a node death: release only the bundles still on live nodes."""
        g.nodes = [pair for i, pair in enumerate(g.nodes) if i not in lost]
        bundles = g.bundles
        g.bundles = [b for i, b in enumerate(bundles) if i not in lost]
        self.end(g, "FAILED", err)
        g.bundles = bundles


def drop_names(res: Any, g: GroupRecord, indices: list[int]) -> None:
    """Take bundles ``indices`` of ``g`` out of node resources ``res``: their own names, and
    their share of the group's any-bundle names (dropped once nothing is left)."""
    for i in indices:
        for k, v in [*g.bundles[i].items(), ("bundle", BUNDLE_UNITS)]:
            for d in (res.total, res.available):
                d.pop(group_resource(k, g.id, i), None)
                wildcard = group_resource(k, g.id)
                if wildcard in d:
                    d[wildcard] -= v
                    if d[wildcard] <= EPS:
                        del d[wildcard]


def _sigkill(w: Any) -> None:
    try:
        w.proc.send_signal(signal.SIGKILL)
    except (ProcessLookupError, OSError):
        pass


def removed_message(g: Any) -> str:
    """Why the work of removed group ``g`` stopped."""
    return (f"placement group {g.name or g.id} was removed (sluice.util.remove_placement_group), "
            "which stops its tasks and actors")
