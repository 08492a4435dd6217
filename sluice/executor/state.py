"""The state API's rows, read from a scheduler's state: tasks, actors, objects, workers,
nodes and jobs as plain dicts with Ray's column names (``ray.util.state``).

Tasks live in two places. Unfinished ones are the scheduler's ``tasks`` (their state
follows from where they are: waiting for inputs, queued, sent to a worker, running).
Ended ones are the scheduler's ``task_log``: a ring of compact tuples appended when a
task finishes or fails for good, bounded (``SLUICE_TASK_EVENTS_MAX``, Ray's 100,000 by
default) so that a million tasks cost bounded memory; the oldest ended tasks drop out
first. Recording is one tuple per task in the scheduler (which every task of the driver,
or of a cluster's head, passes through); the worker sends when its attempt began with its
result. Everything else is read when asked: a query pays for its rows, a task does not.

One answer for the embedded runtime and for a worker's or a cluster driver's ``LOOKUP``
(see :mod:`sluice.executor.lookups`). Call under the scheduler's lock.
"""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING, Any

from sluice.executor import protocol as P
from sluice.executor.backend import LOCAL_NODE
from sluice.executor.records import FAILED, PENDING, ActorRecord, JobInfo, WorkerHandle

if TYPE_CHECKING:
    from sluice.executor.scheduler import Scheduler

DEFAULT_TASK_LOG = 100_000
"""Ended tasks kept for the state API (Ray's ``RAY_task_events_max_num_task_in_gcs``)."""

KINDS = ("tasks", "actors", "objects", "workers", "nodes", "jobs", "metrics", "recent_tasks")
"""What the state API lists (``recent_tasks``: the unfinished tasks and only the newest
:data:`RECENT_TASKS` ended ones, what the dashboard's live pages read every second)."""

RECENT_TASKS = 10_000
"""Ended tasks in ``recent_tasks``: reading rows costs a few microseconds each, under the
scheduler's lock, so a page refreshed every second reads this many, not the 100,000 kept."""

_ACTOR_STATES = {ActorRecord.PENDING: "PENDING_CREATION", ActorRecord.ALIVE: "ALIVE",
                 ActorRecord.DEAD: "DEAD"}


def task_log_capacity() -> int:
    """How many ended tasks the scheduler keeps: ``SLUICE_TASK_EVENTS_MAX`` or 100,000."""
    raw = os.environ.get("SLUICE_TASK_EVENTS_MAX", "")
    try:
        value = int(raw) if raw else DEFAULT_TASK_LOG
    except ValueError:
        raise ValueError(f"SLUICE_TASK_EVENTS_MAX={raw!r} is not a whole number; give how "
                         f"many ended tasks to keep (0 keeps none)") from None
    return max(0, value)


WORKERS_KEPT = 10_000
"""Workers whose pid and node the state API remembers (the newest)."""


def ended_entry(task: Any, w: WorkerHandle | None, started: float, seconds: float,
                blob: bytes | None) -> tuple:
    """The ``task_log`` entry of a task that failed: only numbers, strings and bytes (a
    tuple of those the garbage collector stops tracking, so 100,000 of them cost it
    nothing): ``(task id, name, actor id, job id, parent id, submitted, started, seconds,
    worker index, error blob (None: finished), result id(s), result bytes)``. A task that
    finished gets the same tuple, built inline in ``Scheduler.task_done``."""
    actor, job, rids = task.actor, task.job, task.return_ids
    return (task.task_id, task.name, actor and actor.actor_id, job and job.job_id,
            task.parent, task.submitted, started, seconds,
            w.index if w is not None else None, blob,
            rids[0] if len(rids) == 1 else tuple(rids), 0)


def rows(s: Scheduler, kind: str) -> list[dict[str, Any]]:
    """Every row of state table ``kind`` (one of :data:`KINDS`), oldest first."""
    if kind == "tasks":
        return task_rows(s)
    if kind == "recent_tasks":
        return task_rows(s, newest=RECENT_TASKS)
    if kind == "actors":
        return [actor_row(s, actor) for actor in list(s.actors.values())]
    if kind == "objects":
        return object_rows(s)
    if kind == "workers":
        return worker_rows(s)
    if kind == "nodes":
        return node_rows(s)
    if kind == "jobs":
        return job_rows(s)
    if kind == "metrics":
        return metric_rows(s)
    raise ValueError(f"{kind!r} is not a state table; use one of {', '.join(KINDS)}")


def _hex(number: int | None) -> str | None:
    return None if number is None else f"{number:016x}"


def _ms(seconds: float) -> int | None:
    return int(seconds * 1000) if seconds else None


def _job_id(s: Scheduler, job: JobInfo | None) -> str | None:
    job = job or s.driver_job
    return job.job_id if job is not None else None


def _namespace(s: Scheduler, job: JobInfo | None) -> str | None:
    job = job or s.driver_job
    return job.namespace if job is not None else None


def _worker_fields(s: Scheduler, w: WorkerHandle | None) -> dict[str, Any]:
    if w is None:
        return {"node_id": None, "worker_id": None, "worker_pid": None}
    return {"node_id": s.placement.node_id_of(w.node), "worker_id": _hex(w.index),
            "worker_pid": getattr(w.proc, "pid", None)}


def error_fields(blob: bytes | None) -> dict[str, Any]:
    """``error_type`` (the exception's class name, the cause's for a task's error) and
    ``error_message`` (its text, with the remote traceback) of an error blob."""
    if blob is None:
        return {"error_type": None, "error_message": None}
    from sluice.store import serialization

    try:
        err = serialization.loads(blob)
    except Exception:  # noqa: BLE001 - an empty or unreadable blob (a task cancelled queued)
        return {"error_type": "TaskCancelledError" if not blob else "Unknown",
                "error_message": "cancelled before it ran" if not blob else None}
    cause = getattr(err, "cause", None) or err
    return {"error_type": type(cause).__name__, "error_message": str(err)}


def task_rows(s: Scheduler, ended: bool = True, newest: int | None = None
              ) -> list[dict[str, Any]]:
    """Ended tasks (newest last; ``ended=False``: none; ``newest=N``: the newest N), then
    the unfinished ones."""
    out = []
    driver_job = s.driver_job.job_id if s.driver_job is not None else None
    workers = s.worker_info
    log = s.task_log
    entries = (list(log) if newest is None or newest >= len(log)
               else list(itertools.islice(reversed(log), newest))[::-1]) if ended else []
    for (task_id, name, actor_id, job_id, parent, submitted, started, ran, index,
         blob, returns, nbytes) in entries:
        pid, node = workers.get(index, (None, None)) if index is not None else (None, None)
        row = {"task_id": _hex(task_id), "attempt_number": 0, "name": name,
               "state": "FAILED" if blob is not None else "FINISHED",
               "job_id": job_id or driver_job,
               "actor_id": _hex(actor_id),
               "type": "ACTOR_TASK" if actor_id is not None else "NORMAL_TASK",
               "func_or_class_name": name, "parent_task_id": _hex(parent),
               "node_id": (LOCAL_NODE if node is None else s.placement.node_id_of(node))
               if index is not None else None,
               "worker_id": _hex(index), "worker_pid": pid,
               "creation_time_ms": _ms(submitted), "start_time_ms": _ms(started),
               "end_time_ms": _ms(started + ran) if started else None,
               "duration_s": ran if started else None,
               "start_time_us": int(started * 1e6) if started else None,
               "object_ids": [_hex(oid) for oid in (returns if isinstance(returns, tuple)
                                                    else (returns,))],
               "output_bytes": nbytes if blob is None else None}
        row.update(error_fields(blob))
        out.append(row)
    for task in list(s.tasks.values()):
        w = task.worker
        if task.unresolved:  # (one queued behind the task making its input too)
            state = "PENDING_ARGS_AVAIL"
        elif w is not None:
            first = next(iter(w.inflight), None)
            state = "RUNNING" if first == task.task_id else "SUBMITTED_TO_WORKER"
        elif task.actor is not None:
            state = "SUBMITTED_TO_WORKER" if task.actor.state == ActorRecord.ALIVE \
                else "PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY"
        else:
            state = "PENDING_NODE_ASSIGNMENT"
        out.append({"task_id": _hex(task.task_id), "attempt_number": 0, "name": task.name,
                    "state": state, "job_id": _job_id(s, task.job),
                    "actor_id": _hex(task.actor.actor_id) if task.actor is not None else None,
                    "type": "ACTOR_TASK" if task.actor is not None else "NORMAL_TASK",
                    "func_or_class_name": task.name, "parent_task_id": _hex(task.parent),
                    **_worker_fields(s, w),
                    "creation_time_ms": _ms(task.submitted), "start_time_ms": None,
                    "end_time_ms": None, "duration_s": None, "start_time_us": None,
                    "object_ids": [_hex(oid) for oid in task.return_ids],
                    "output_bytes": None, "error_type": None, "error_message": None})
    return out


def actor_row(s: Scheduler, actor: ActorRecord) -> dict[str, Any]:
    """One actor, with Ray's ``ActorState`` columns."""
    w = actor.worker
    state = _ACTOR_STATES[actor.state]
    if state == "PENDING_CREATION" and actor.restarted:
        state = "RESTARTING"
    elif state == "PENDING_CREATION" and actor.unresolved:
        state = "DEPENDENCIES_UNREADY"
    row = {"actor_id": _hex(actor.actor_id), "class_name": actor.class_name, "state": state,
           "job_id": _job_id(s, actor.job), "name": actor.name or "",
           "node_id": s.placement.node_id_of(actor.node) if actor.node is not None or w
           else None,
           "pid": getattr(w.proc, "pid", None) if w is not None else None,
           "ray_namespace": actor.namespace or _namespace(s, actor.job),
           "required_resources": dict(actor.key),
           "num_restarts": (int(actor.options.get("max_restarts", 0)) - actor.restarts_left
                            if actor.restarts_left >= 0 else None),
           "repr_name": "", "death_cause": None}
    if actor.death is not None:
        row["death_cause"] = error_fields(actor.death)["error_message"]
    return row


def object_rows(s: Scheduler) -> list[dict[str, Any]]:
    """Objects the driver tracks: size (None while pending), state, references."""
    out = []
    for oid, entry in list(s.objects.items()):
        spec = entry.spec
        if spec is None:
            size = None
        elif spec[0] == P.DEP_SHM:
            size = spec[1]
        elif spec[0] == P.DEP_ERROR:
            size = 0
        else:
            size = len(spec[1])
        producer = entry.producer
        out.append({"object_id": _hex(oid), "object_size": size,
                    "task_status": ("PENDING" if entry.state == PENDING else
                                    "FAILED" if entry.state == FAILED else "FINISHED"),
                    "reference_type": "LOCAL_REFERENCE" if entry.refs > 0 else
                                      "USED_BY_PENDING_TASK" if entry.holds > 0 else "CAPTURED",
                    "refs": entry.refs, "holds": entry.holds,
                    "in_shared_memory": spec is not None and spec[0] == P.DEP_SHM,
                    "task_id": _hex(producer.task_id) if producer is not None else None})
    return out


def worker_rows(s: Scheduler) -> list[dict[str, Any]]:
    """The driver's worker processes: the pool's and the actors'."""
    out = []
    seen: set[int] = set()
    for w in list(s.workers) + [a.worker for a in s.actors.values() if a.worker is not None]:
        if w.index in seen:
            continue
        seen.add(w.index)
        out.append({"worker_id": _hex(w.index), "is_alive": w.alive,
                    "worker_type": "WORKER", "node_id": s.placement.node_id_of(w.node),
                    "pid": getattr(w.proc, "pid", None),
                    "actor_class": w.actor.class_name if w.actor is not None else None,
                    "tasks_in_flight": len(w.inflight), "blocked_in_get": bool(w.blocked)})
    return out


def node_rows(s: Scheduler) -> list[dict[str, Any]]:
    """Every node (dead ones DEAD), with its resources and its store's capacity."""
    infos = s.placement.node_infos()
    return [{"node_id": info.node_id, "node_ip": info.address.rsplit(":", 1)[0]
             if ":" in info.address else info.address,
             "is_head_node": i == 0, "state": "ALIVE" if info.alive else "DEAD",
             "node_name": info.address, "resources_total": dict(info.resources),
             "store_capacity": info.store_capacity, "store_used": info.store_used,
             "objects_spilled": info.objects_spilled, "objects_pulled": info.objects_pulled,
             "bytes_pulled": info.bytes_pulled} for i, info in enumerate(infos)]


def job_rows(s: Scheduler) -> list[dict[str, Any]]:
    """The drivers' jobs: the embedded runtime's own, or each driver connected to a head."""
    jobs = ([(s.driver_job, os.getpid())] if s.driver_job is not None else []) + [
        (job, getattr(getattr(w, "proc", None), "pid", None))
        for index, job in s.client_jobs.items() for w in [s.clients.get(index)]]
    return [{"job_id": job.job_id, "type": "DRIVER", "status": "RUNNING",
             "namespace": job.namespace, "driver_pid": pid} for job, pid in jobs]


def _metric(name: str, kind: str, description: str, value: Any,
            labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "kind": kind, "description": description, "labels": labels or {},
            "value": value}


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {q: ordered[min(len(ordered) - 1, int(float(q) * len(ordered)))]
            for q in ("0.5", "0.9", "0.99")}


QUANTILE_WINDOW = 10_000
"""Ended tasks the latency quantiles are taken over (the newest)."""


def metric_rows(s: Scheduler) -> list[dict[str, Any]]:
    """The runtime's own metrics (tasks by state, ended totals, scheduling latency, workers,
    actors, objects, each node's store), then the users' (``sluice.util.metrics``)."""
    live: dict[str, int] = {}
    for row in task_rows_live(s):
        live[row] = live.get(row, 0) + 1
    out = [_metric("sluice_tasks", "gauge", "Unfinished tasks by state", n, {"state": state})
           for state, n in sorted(live.items())]
    out.append(_metric("sluice_tasks_finished_total", "counter", "Tasks that finished",
                       s.ended[0]))
    out.append(_metric("sluice_tasks_failed_total", "counter", "Tasks that failed for good",
                       s.ended[1]))
    recent = list(s.task_log)[-QUANTILE_WINDOW:]
    waits = [e[6] - e[5] for e in recent if e[6] and e[9] is None]
    runs = [e[7] for e in recent if e[6] and e[9] is None]
    for name, values, what in (
            ("sluice_scheduling_latency_seconds", waits,
             "From submission to the start of its run, over the newest ended tasks"),
            ("sluice_task_run_seconds", runs, "How long tasks ran, over the newest ended")):
        out.extend(_metric(name, "gauge", what, v, {"quantile": q})
                   for q, v in _quantiles(values).items())
    actors: dict[str, int] = {}
    for actor in s.actors.values():
        state = _ACTOR_STATES[actor.state]
        actors[state] = actors.get(state, 0) + 1
    out.extend(_metric("sluice_actors", "gauge", "Actors by state", n, {"state": state})
               for state, n in sorted(actors.items()))
    workers = list(s.workers) + [a.worker for a in s.actors.values() if a.worker is not None]
    out.append(_metric("sluice_workers", "gauge", "Worker processes alive",
                       sum(1 for w in workers if w.alive)))
    out.append(_metric("sluice_objects", "gauge", "Objects the runtime tracks", len(s.objects)))
    for info in s.placement.node_infos():
        labels = {"node": info.node_id}
        for name, kind, what, value in (
                ("sluice_object_store_used_bytes", "gauge",
                 "Bytes of objects in the node's shared memory", info.store_used),
                ("sluice_object_store_capacity_bytes", "gauge",
                 "Bytes the node's store may hold before it spills", info.store_capacity),
                ("sluice_objects_spilled_total", "counter",
                 "Objects the node's store spilled to disk", info.objects_spilled),
                ("sluice_object_transfers_total", "counter",
                 "Objects the node pulled from other nodes", info.objects_pulled),
                ("sluice_object_transfer_bytes_total", "counter",
                 "Bytes of the objects the node pulled from other nodes", info.bytes_pulled),
                ("sluice_node_alive", "gauge", "1 while the node is alive", int(info.alive))):
            out.append(_metric(name, kind, what, value, labels))
    return out + s.metrics.rows()


def task_rows_live(s: Scheduler) -> list[str]:
    """The state of every unfinished task (as :func:`task_rows` names them)."""
    return [row["state"] for row in task_rows(s, ended=False)]
