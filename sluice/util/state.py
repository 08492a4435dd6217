"""The state API, as Ray's ``ray.util.state``: list what the runtime holds, summarize it.

>>> import sluice
>>> from sluice.util.state import list_tasks, summarize_tasks
>>> failed = list_tasks(filters=[("state", "=", "FAILED")])    # doctest: +SKIP
>>> failed[0].error_message                                    # doctest: +SKIP

Each ``list_*`` returns rows with Ray's column names (``task_id``, ``state``, ``name``,
``node_id``, ``worker_pid``, ``error_type``, ...), readable as attributes or keys;
``filters`` is a list of ``(column, "=" | "!=", value)`` compared as case-insensitive text
(Ray's rule) and ``limit`` caps the rows (100 by default, the newest kept). The rows come
from the runtime this process is connected to: the embedded one, a cluster's head (from a
cluster driver), or the driver's (from inside a task). Ended tasks are kept up to a bound
(``SLUICE_TASK_EVENTS_MAX``, 100,000 by default), the oldest dropping out first.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

DEFAULT_LIMIT = 100
"""Rows a list returns unless told (Ray's default)."""

PREDICATES = ("=", "!=")

COLUMNS: dict[str, tuple[str, ...]] = {
    "tasks": ("task_id", "attempt_number", "name", "state", "job_id", "actor_id", "type",
              "func_or_class_name", "parent_task_id", "node_id", "worker_id", "worker_pid",
              "error_type"),
    "actors": ("actor_id", "class_name", "state", "job_id", "name", "node_id", "pid",
               "ray_namespace"),
    "objects": ("object_id", "object_size", "task_status", "reference_type", "task_id"),
    "workers": ("worker_id", "is_alive", "worker_type", "node_id", "pid", "actor_class"),
    "nodes": ("node_id", "node_ip", "is_head_node", "state", "node_name"),
    "jobs": ("job_id", "type", "status", "namespace", "driver_pid"),
}
"""The columns each table can be filtered on (its rows hold more)."""


class State(dict):
    """One row: a dict whose columns also read as attributes (``task.state``), as Ray's
    ``TaskState`` and friends."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no column {name!r}; the row has {', '.join(self)}") from None

    def asdict(self) -> dict[str, Any]:
        """The row as a plain dict."""
        return dict(self)


def check_filters(kind: str, filters: Any) -> list[tuple[str, str, str]]:
    """``filters`` checked against ``kind``'s columns: a clear error for a malformed one or
    an unknown column."""
    if filters is None:
        return []
    if not isinstance(filters, (list, tuple)):
        raise TypeError(f"filters={filters!r}: give a list of (column, '=' or '!=', value) "
                        f"tuples, e.g. [('state', '=', 'FAILED')]")
    out = []
    for item in filters:
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise ValueError(f"filter {item!r} is not (column, predicate, value); write it "
                             f"like ('state', '=', 'FAILED')")
        key, predicate, value = item
        if key not in COLUMNS[kind]:
            raise ValueError(f"{key!r} is not a column {kind} can be filtered on; use one of "
                             f"{', '.join(COLUMNS[kind])}")
        if predicate not in PREDICATES:
            raise ValueError(f"predicate {predicate!r} in filter {item!r} is not supported; "
                             f"use '=' or '!='")
        out.append((key, predicate, str(value).lower()))
    return out


def select(kind: str, rows: list[dict[str, Any]], filters: Any = None,
           limit: int = DEFAULT_LIMIT) -> list[State]:
    """The rows of ``kind`` that pass ``filters``, the newest ``limit`` of them, in order."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit={limit!r}: give a whole number of rows, 1 or more")
    checked = check_filters(kind, filters)
    kept = [row for row in rows
            if all((str(row.get(key)).lower() == value) == (predicate == "=")
                   for key, predicate, value in checked)]
    return [State(row) for row in kept[-limit:]]


def _rows(kind: str, address: str | None) -> list[dict[str, Any]]:
    if address is not None:
        from sluice.util.state_client import fetch_rows

        return fetch_rows(address, kind)
    from sluice.executor.api import runtime

    return runtime().state(kind)


def _lister(kind: str) -> Callable[..., list[State]]:
    def list_kind(address: str | None = None, filters: list[tuple[str, str, Any]] | None = None,
                  limit: int = DEFAULT_LIMIT, timeout: int = 30, detail: bool = False,
                  raise_on_missing_output: bool = True, _explain: bool = False) -> list[State]:
        return select(kind, _rows(kind, address), filters, limit)

    list_kind.__name__ = list_kind.__qualname__ = f"list_{kind}"
    list_kind.__doc__ = (f"The {kind} of the runtime (or of the dashboard at ``address``), "
                         f"filtered by ``filters`` and the newest ``limit`` kept (see the "
                         f"module's docstring). ``timeout``, ``detail`` and "
                         f"``raise_on_missing_output`` are accepted for Ray's signature.")
    return list_kind


list_tasks = _lister("tasks")
list_actors = _lister("actors")
list_objects = _lister("objects")
list_workers = _lister("workers")
list_nodes = _lister("nodes")
list_jobs = _lister("jobs")


def summarize_task_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ray's ``TaskSummaries`` of task rows, by function (or actor method) name."""
    summary: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = summary.setdefault(row["func_or_class_name"], {
            "func_or_class_name": row["func_or_class_name"], "type": row["type"],
            "state_counts": {}})
        counts = entry["state_counts"]
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return {"cluster": {"summary": summary, "total_tasks": len(rows),
                        "total_actor_tasks": sum(r["type"] == "ACTOR_TASK" for r in rows),
                        "total_actor_scheduled": 0, "summary_by": "func_name"}}


def summarize_tasks(address: str | None = None, timeout: int = 30,
                    raise_on_missing_output: bool = True, _explain: bool = False) -> dict:
    """Tasks counted by name and state: ``{"cluster": {"summary": {name: {"state_counts":
    {...}}}, "total_tasks": N, ...}}`` (Ray's shape)."""
    return summarize_task_rows(_rows("tasks", address))


def summarize_actor_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ray's ``ActorSummaries`` of actor rows, by class."""
    summary: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = summary.setdefault(row["class_name"], {"class_name": row["class_name"],
                                                       "state_counts": {}})
        entry["state_counts"][row["state"]] = entry["state_counts"].get(row["state"], 0) + 1
    return {"cluster": {"summary": summary, "total_actors": len(rows), "summary_by": "class"}}


def summarize_actors(address: str | None = None, timeout: int = 30,
                     raise_on_missing_output: bool = True, _explain: bool = False) -> dict:
    """Actors counted by class and state (Ray's ``ActorSummaries`` shape)."""
    return summarize_actor_rows(_rows("actors", address))


def summarize_object_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ray's ``ObjectSummaries`` of object rows (sluice records no call sites: one group)."""
    size = sum(row["object_size"] or 0 for row in rows)
    group = {"total_objects": len(rows), "total_size_mb": size / 2**20,
             "total_num_workers": 0, "total_num_nodes": 1,
             "task_state_counts": dict(Counter(row["task_status"] for row in rows)),
             "ref_type_counts": dict(Counter(row["reference_type"] for row in rows))}
    return {"cluster": {"summary": {"disabled": group}, "total_objects": len(rows),
                        "total_size_mb": size / 2**20, "callsite_enabled": False,
                        "summary_by": "callsite"}}


def summarize_objects(address: str | None = None, timeout: int = 30,
                      raise_on_missing_output: bool = True, _explain: bool = False) -> dict:
    """Objects counted by state and reference type, with their total size (Ray's
    ``ObjectSummaries`` shape)."""
    return summarize_object_rows(_rows("objects", address))


def list_logs(address: str | None = None, node_id: str | None = None,
              node_ip: str | None = None, glob_filter: str | None = None,
              timeout: int = 30) -> dict[str, list[str]]:
    """The workers' log files, ``{"worker_out": [...], "worker_err": [...]}`` (Ray's
    categories), newest session's, ``glob_filter`` (e.g. ``"*-1234.*"``) keeping some."""
    import fnmatch

    files = _log_files(address)
    out: dict[str, list[str]] = {"worker_out": [], "worker_err": []}
    for f in files:
        if glob_filter is None or fnmatch.fnmatch(f["filename"], glob_filter):
            out[f"worker_{f['stream']}"].append(f["filename"])
    return out


def _log_files(address: str | None) -> list[dict[str, Any]]:
    if address is not None:
        from sluice.util.state_client import fetch

        return fetch(address, "/api/v0/logs")["files"]
    from sluice.executor.api import runtime

    return runtime().worker_logs()


def _log_lines(address: str | None, filename: str, tail: int) -> list[str]:
    if address is not None:
        from sluice.util.state_client import fetch

        return fetch(address, "/api/v0/logs/file", {"filename": filename, "lines": tail})
    from sluice.executor.api import runtime

    return runtime().worker_logs(filename, tail)


def resolve_log_file(address: str | None, filename: str | None = None, pid: int | None = None,
                     actor_id: str | None = None, task_id: str | None = None,
                     suffix: str = "out") -> str:
    """The log file named by ``filename``, or that of the worker process ``pid``, of actor
    ``actor_id``, or where task ``task_id`` ran (``suffix``: ``out`` or ``err``)."""
    if suffix not in ("out", "err"):
        raise ValueError(f"suffix={suffix!r}: give 'out' (stdout) or 'err' (stderr)")
    given = [n for n, v in (("filename", filename), ("pid", pid), ("actor_id", actor_id),
                            ("task_id", task_id)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of filename, pid, actor_id, task_id (got "
                         f"{', '.join(given) or 'none'})")
    if filename is not None:
        return filename
    if actor_id is not None:
        rows = [r for r in _rows("actors", address) if r["actor_id"] == actor_id]
        if not rows or rows[-1]["pid"] is None:
            raise ValueError(f"no actor {actor_id!r} with a process is known; list them "
                             f"with list_actors()")
        pid = rows[-1]["pid"]
    elif task_id is not None:
        rows = [r for r in _rows("tasks", address) if r["task_id"] == task_id]
        if not rows or rows[-1]["worker_pid"] is None:
            raise ValueError(f"no task {task_id!r} that ran in a worker is known; list them "
                             f"with list_tasks()")
        pid = rows[-1]["worker_pid"]
    found = [f["filename"] for f in _log_files(address)
             if f["pid"] == pid and f["stream"] == suffix]
    if not found:
        raise ValueError(f"no worker log of process {pid}; list them with list_logs()")
    return found[-1]


def get_log(address: str | None = None, node_id: str | None = None, node_ip: str | None = None,
            filename: str | None = None, actor_id: str | None = None,
            task_id: str | None = None, pid: int | None = None, follow: bool = False,
            tail: int = -1, timeout: int = 30, suffix: str = "out",
            interval: float = 0.25) -> Iterator[str]:
    """The lines of one worker log (give exactly one of ``filename``, ``pid``, ``actor_id``,
    ``task_id``; ``suffix="err"`` for stderr), the last ``tail`` (-1: all); with
    ``follow``, then the lines written after, as they come, until the caller stops."""
    name = resolve_log_file(address, filename, pid, actor_id, task_id, suffix)
    lines = _log_lines(address, name, -1)
    yield from (lines if tail < 0 else lines[-tail:] if tail else [])
    seen = len(lines)
    while follow:
        time.sleep(interval)
        lines = _log_lines(address, name, -1)
        yield from lines[seen:]
        seen = len(lines)


__all__ = ["DEFAULT_LIMIT", "State", "get_log", "list_actors", "list_jobs", "list_logs",
           "list_nodes", "list_objects",
           "list_tasks", "list_workers", "summarize_actors", "summarize_objects",
           "summarize_tasks"]
