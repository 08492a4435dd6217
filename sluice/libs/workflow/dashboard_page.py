"""The dashboard's Workflows page: every run of the workflow storages this process used
(and the default one), each with its steps' states, and the cron schedules with their fires.
Registered when ``sluice.workflow`` is imported (:func:`sluice.dashboard.register_page`).
"""

from __future__ import annotations

import datetime as dt
from html import escape
from pathlib import Path
from typing import Any

from sluice.dashboard.html import table
from sluice.dashboard.pages import View, register_page

USED: dict[str, None] = {}
"""Folders of the storages this process opened (in order; see storage.py)."""


def note_storage(folder: Path) -> None:
    """Remember a storage folder for the page."""
    USED[str(folder)] = None


def _when(value: Any) -> str:
    if isinstance(value, (int, float)) and value:
        return dt.datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def _storages() -> list[Any]:
    from sluice.libs.workflow.database import default_folder
    from sluice.libs.workflow.storage import WorkflowStorage

    folders = list(dict.fromkeys([*USED, str(default_folder())]))
    out = []
    for folder in folders:
        try:
            out.append(WorkflowStorage(folder, create=False))
        except Exception:  # noqa: BLE001 - a folder without a database: nothing to show
            continue
    return out


def workflows_page(view: View) -> str:
    """Runs (newest first) and schedules of every known storage; a run's steps below."""
    if view.rest:
        return run_page(view)
    parts = ["<h1>Workflows</h1>"]
    storages = _storages()
    if not storages:
        return parts[0] + "<p class=muted>No workflow storage has been used yet.</p>"
    for number, store in enumerate(storages):
        runs = []
        for workflow_id, status in reversed(store.list_runs()):
            run = store.get_run(workflow_id) or {}
            steps = store.steps(workflow_id)
            done = sum(str(s["status"].value) == "SUCCESSFUL" for s in steps)
            runs.append({"run": f"{number}/{workflow_id}", "status": status.value,
                         "steps done": f"{done} of {len(steps)}",
                         "schedule": run.get("schedule_name"),
                         "logical time": run.get("logical_time"),
                         "updated": _when(run.get("updated")),
                         "error": (run.get("error") or "")[:120]})
        schedules = [{"name": s["name"], "cron": s["cron"], "timezone": s["timezone"],
                      "target": s["target"], "paused": s["paused"],
                      "active runs": store.active_runs(s["name"]),
                      "last fire": (store.fires(s["name"]) or [{}])[-1].get("logical_time")}
                     for s in store.list_schedules()]
        parts.append(f"<h2>Storage {escape(str(store.folder))}</h2>"
                     + "<h3>Runs</h3>" + table(runs[:500], [
                         "run", "status", "steps done", "schedule", "logical time",
                         "updated", "error"], link=("run", "/workflows/"), empty="no runs")
                     + "<h3>Schedules</h3>" + table(schedules, [
                         "name", "cron", "timezone", "target", "paused", "active runs",
                         "last fire"], empty="no schedules"))
    return "".join(parts)


def run_page(view: View) -> str:
    """One run: its status and each step's state, attempts, duration and error."""
    number, _, workflow_id = view.rest.partition("/")
    storages = _storages()
    if not number.isdigit() or int(number) >= len(storages):
        return f"<h1>Workflow run</h1><p>No storage {escape(number)}.</p>"
    store = storages[int(number)]
    run = store.get_run(workflow_id)
    if run is None:
        return f"<h1>{escape(workflow_id)}</h1><p>No such run in {escape(str(store.folder))}.</p>"
    steps = [{**s, "status": s["status"].value, "started": _when(s["started"]),
              "finished": _when(s["finished"]), "error": (s["error"] or "")[:300]}
             for s in store.steps(workflow_id)]
    return (f"<h1>Run {escape(workflow_id)}: <span class='state-{run['status'].value}'>"
            f"{run['status'].value}</span></h1><p class=muted>storage {escape(str(store.folder))}"
            f"; updated {_when(run.get('updated'))}</p>"
            + table(steps, ["step_id", "name", "status", "attempts", "started", "finished",
                            "duration", "error"], empty="no step has started")
            + (f"<h2>Error</h2><pre>{escape(run['error'])}</pre>" if run.get("error") else ""))


register_page("/workflows", "Workflows", workflows_page, order=70)
