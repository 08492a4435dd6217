"""The dashboard's Data page: the newest Dataset executions of this driver, each stage's
progress (blocks, rows in and out, bytes, how far through its input, wall and task time),
live while they run. Registered when ``sluice.data`` is imported."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sluice.dashboard.html import size, table
from sluice.dashboard.pages import Recent, View, register_page

KEEP = 20
"""Executions the page keeps (the newest)."""

_runs = Recent(KEEP)  # (number, wall time, name, stats)
_numbers = iter(range(1, 1 << 62))


def note_execution(name: str, stats: Any) -> None:
    """Show ``stats`` (an ``ExecutionStats``, updated in place as the run goes) as ``name``."""
    _runs.note((next(_numbers), time.time(), name, stats))


def data_page(view: View) -> str:
    """Each kept execution, newest first, with a row per stage."""
    runs = _runs.newest_first()
    if not runs:
        return "<h1>Data</h1><p class=muted>No Dataset has been executed yet.</p>"
    parts = ["<h1>Data</h1>"]
    for number, started, name, stats in runs:
        state = "done" if stats.finished is not None else "running"
        total_ms = ((stats.finished or time.perf_counter()) - stats.started) * 1e3
        rows = []
        for i, stage in enumerate(list(stats.stages.values()), start=1):
            through = (f"{min(1.0, stage.rows_in / stage.total_in):.0%}"
                       if stage.total_in else ("100%" if stage.done else ""))
            rows.append({"#": i, "stage": stage.name, "state": "DONE" if stage.done else
                         ("RUNNING" if stage.started is not None else "PENDING"),
                         "blocks": stage.blocks, "rows in": stage.rows_in, "rows out": stage.rows,
                         "bytes out": size(stage.bytes), "input done": through,
                         "wall": f"{stage.wall_s * 1e3:.1f} ms",
                         "in tasks": f"{stage.task_s * 1e3:.1f} ms"})
        parts.append(
            f"<h2>Execution {number}: {name}</h2><p class=muted>started "
            f"{dt.datetime.fromtimestamp(started):%H:%M:%S}; {state}; {total_ms:.1f} ms"
            f"{'; answered from metadata' if stats.metadata_only else ''}</p>"
            + table(rows, ["#", "stage", "state", "blocks", "rows in", "rows out",
                           "bytes out", "input done", "wall", "in tasks"], empty="no stage"))
    return "".join(parts)


register_page("/data", "Data", data_page, order=65)
