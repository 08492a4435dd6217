"""``sluice.timeline()``: what ran where and when, as a Chrome trace (``chrome://tracing``,
https://ui.perfetto.dev), as Ray's ``ray.timeline()``.

One complete event (``"ph": "X"``) per ended task and actor call that ran in a worker, from
the state API's task rows (so the newest ``SLUICE_TASK_EVENTS_MAX`` ended tasks): a row per
node (``pid``) and worker process (``tid``), named by the task; a task that a Plan's stage
ran (while the dashboard records Plans) is named by its stage and carries the Plan's number
and the stage in ``args``. Failed tasks are marked ``cname: "terrible"`` (red).
"""

from __future__ import annotations

import json
from typing import Any


def stage_names() -> dict[str, tuple[int, int, str]]:
    """Object id (hex) -> (plan number, stage number, stage name), for the Plans recorded
    in this process (:mod:`sluice.compiler.history`)."""
    try:
        from sluice.compiler import history
    except ImportError:  # pragma: no cover - the compiler ships with sluice
        return {}
    out: dict[str, tuple[int, int, str]] = {}
    for record in history.records():
        numbers = {stage.id: (i, stage.name) for i, stage in enumerate(record.plan.stages, 1)}
        for run in record.runs:
            for stage_id, ids in run.objects.items():
                number, name = numbers[stage_id]
                for oid in ids:
                    out[f"{oid:016x}"] = (record.number, number, name)
    return out


def trace_events(tasks: list[dict[str, Any]],
                 stages: dict[str, tuple[int, int, str]] | None = None) -> list[dict[str, Any]]:
    """Chrome trace events of the ended ``tasks`` (state API rows), oldest first."""
    stages = stages or {}
    events: list[dict[str, Any]] = []
    named: set[tuple[str, int]] = set()
    for row in sorted((r for r in tasks if r.get("start_time_us") and r.get("duration_s")
                       is not None and r.get("worker_id") is not None),
                      key=lambda r: r["start_time_us"]):
        node = str(row.get("node_id") or "local")
        # A worker by its pid where known (a cluster's head knows its workers by index).
        pid = row["worker_pid"] if row.get("worker_pid") is not None \
            else int(row["worker_id"], 16)
        if (node, pid) not in named:
            named.add((node, pid))
            label = (f"worker pid={pid}" if row.get("worker_pid") is not None
                     else f"worker {int(row['worker_id'], 16)}")
            events.append({"ph": "M", "name": "thread_name", "pid": f"node {node}",
                           "tid": pid, "args": {"name": label}})
        stage = next((stages[o] for o in row.get("object_ids") or () if o in stages), None)
        name = row["name"] if stage is None else f"stage {stage[1]}: {stage[2]}"
        args = {"task_id": row["task_id"], "function": row["name"], "state": row["state"],
                "type": row["type"], "job_id": row.get("job_id")}
        if stage is not None:
            args.update(plan=stage[0], stage=stage[1], stage_name=stage[2])
        if row.get("error_type"):
            args["error_type"] = row["error_type"]
        event = {"ph": "X", "cat": "actor_task" if row["type"] == "ACTOR_TASK" else "task",
                 "name": name, "pid": f"node {node}", "tid": pid,
                 "ts": row["start_time_us"],
                 "dur": max(row["duration_s"] * 1e6, 1.0), "args": args}
        if row["state"] == "FAILED":
            event["cname"] = "terrible"
        events.append(event)
    return events


def timeline(filename: str | None = None) -> list[dict[str, Any]] | None:
    """The trace of what ran (see the module's docstring): written to ``filename`` as
    JSON when given (then None is returned), else returned as a list of events."""
    from sluice.executor.api import runtime

    events = trace_events(runtime().state("tasks"), stage_names())
    if filename is None:
        return events
    with open(filename, "w") as f:
        json.dump(events, f)
    return None
