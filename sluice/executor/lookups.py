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
from sluice.executor import logs
from sluice.executor import protocol as P
from sluice.executor import state
from sluice.executor.backend import NodeInfo, ObjectLocation
from sluice.executor.records import READY, WorkerHandle
from sluice.executor.strategies import PlacementGroupSchedulingStrategy

if TYPE_CHECKING:
    from sluice.executor.scheduler import Scheduler


def nodes(s: Scheduler) -> list[NodeInfo]:
    """Every node, dead ones with ``alive`` False."""
    return s.placement.node_infos()


def worker_logs(session: str, filename: str | None, tail: int) -> Any:
    """The log files of ``session``'s workers, or the lines of one (``Backend.worker_logs``)."""
    folder = logs.log_dir(session)
    return logs.log_files(folder) if filename is None else logs.read_log(folder, filename, tail)


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


def placement_group_id(strategy: Any) -> str | None:
    """The id of the placement group ``strategy`` (a task's or actor's scheduling strategy)
    runs it in, else None."""
    return strategy.placement_group.id if isinstance(strategy, PlacementGroupSchedulingStrategy) else None


def context_of(s: Scheduler, w: WorkerHandle | None, task_id: int | None) -> dict[str, Any]:
    """What a runtime context reports for process ``w`` running task ``task_id`` (a plain
    dict; see :mod:`sluice.executor.runtime_context`). ``w`` None: the embedded runtime's
    own driver."""
    actor = w.actor if w is not None else None
    task = w.inflight.get(task_id) if w is not None and task_id is not None else None
    if actor is not None:
        job, key, strategy = actor.job, actor.key, actor.options.get("scheduling_strategy")
    elif task is not None:
        job, key = task.job, task.key
        strategy = task.group if task.group is not None else task.strategy
    else:
        job, key, strategy = (s.job_of(w) if w is not None else None), (), None
    job = job or s.driver_job
    return {
        "job_id": job.job_id if job is not None else None,
        "namespace": job.namespace if job is not None else None,
        "node_id": s.placement.node_id_of(w.node if w is not None else None),
        "worker_id": f"{w.index if w is not None else 0:016x}",
        "task_id": None if task_id is None else f"{task_id:016x}",
        "actor_id": None if actor is None else f"{actor.actor_id:016x}",
        "actor_name": None if actor is None else actor.name,
        "resources": dict(key),
        "gpu_ids": list(actor.gpu_ids or []) if actor is not None else list(w.gpu_ids) if w else [],
        "placement_group_id": placement_group_id(strategy),
        "reconstructed": actor is not None and actor.restarted,
    }


def answer(s: Scheduler, what: str, arg: Any, w: WorkerHandle | None = None) -> Any:
    """The reply to a ``LOOKUP`` message (the wire form of the queries above, asked by a
    worker's or a cluster driver's Backend ``w``)."""
    if what == "actor":  # (name, namespace)
        return s.actor_manager.find_named(*arg)
    if what == "named":  # a namespace, or None for all
        return s.actor_manager.list_named(arg)
    if what == "context":  # the task id the asking process runs, or None
        return context_of(s, w, arg)
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
    if what in ("state", "log"):  # (bad input comes back as ("error", why), not raised)
        try:
            if what == "state":  # a state table's name: its rows (state.py)
                return ("ok", state.rows(s, arg))
            return ("ok", worker_logs(s.session, *arg))  # (file name or None, tail)
        except ValueError as err:
            return ("error", str(err))
    if what == "locations":
        return object_locations(s, arg)
    if what == "capacity":
        return store_capacity(s)
    if what == "current_pg":  # the group the asking process runs in (get_current_placement_group)
        return s.pgs.current(w) if w is not None else None
    if what == "stream_ready":  # a generator id: would its next() return at once
        return s.stream_ready(arg)
    if what == "stream_finished":  # a generator id: its call ended and every item was taken
        return s.stream_finished(arg)
    if what == "pg":  # (operation, argument): placement groups
        out = s.pgs.handle(*arg)
        s.flush_all()
        return out
    raise ValueError(f"unknown lookup {what!r}")
