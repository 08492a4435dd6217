"""The Plans page: every Plan this driver executed, drawn with each stage's figures from
its runs (live while they run), and what each compiler pass changed, drawn as a diff.

A run's figures come from the state API: each stage's objects (recorded by the runner,
:mod:`sluice.compiler.history`) name the tasks that made them, whose rows say how long
they ran and whether they failed, and the objects' rows say how many bytes they hold.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

from sluice.compiler import history
from sluice.compiler.pass_log import summary
from sluice.dashboard.html import size, table
from sluice.dashboard.pages import View, register_page


def _when(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds).strftime("%H:%M:%S")


def _seconds(value: float) -> str:
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"


def stage_figures(record: history.PlanRecord, run: history.PlanRun,
                  tasks: list[dict[str, Any]], objects: list[dict[str, Any]],
                  ) -> dict[str, dict[str, Any]]:
    """Stage id -> the figures of ``run``: its tasks by state, task time, wall time, bytes
    out, failures, and a status (pending, running, done, failed); stages that ran no
    task (the input, an actor's creation) are left out."""
    by_object: dict[str, dict[str, Any]] = {}
    for row in tasks:
        for oid in row.get("object_ids") or ():
            by_object[oid] = row
    sizes = {row["object_id"]: row["object_size"] for row in objects}
    out: dict[str, dict[str, Any]] = {}
    for stage in record.plan.stages:
        ids = [f"{oid:016x}" for oid in run.objects.get(stage.id, ())]
        rows = list({by_object[i]["task_id"]: by_object[i] for i in ids if i in by_object}
                    .values())
        if not ids:
            continue
        states = [r["state"] for r in rows]
        failed = states.count("FAILED")
        finished = states.count("FINISHED")
        running = sum(s in ("RUNNING", "SUBMITTED_TO_WORKER") for s in states)
        status = ("failed" if failed else "running" if running else
                  "done" if rows and finished == len(rows) else "pending")
        starts = [r["start_time_ms"] for r in rows if r.get("start_time_ms")]
        ends = [r["end_time_ms"] for r in rows if r.get("end_time_ms")]
        task_time = sum(r["duration_s"] or 0.0 for r in rows)
        wall = (max(ends) - min(starts)) / 1e3 if starts and ends else 0.0
        # Bytes out: what the tasks reported making (an object may be freed since).
        done_bytes = {r["task_id"]: r.get("output_bytes") for r in rows}
        nbytes = sum(b for b in done_bytes.values() if b) + sum(
            sizes.get(i) or 0 for i in ids if i not in by_object)
        known = any(b is not None for b in done_bytes.values()) or any(
            sizes.get(i) is not None for i in ids if i not in by_object)
        text = f"{status}: {len(ids)} object(s)"
        if rows:
            text += f", {len(rows)} task(s)"
        if finished or failed:
            text += f", {_seconds(task_time)}"
        if known:
            text += f", {size(nbytes)}"
        if failed:
            text += f", {failed} failed"
        out[stage.id] = {"status": status, "text": text, "tasks": len(rows),
                         "finished": finished, "running": running, "failed": failed,
                         "task_time_s": task_time, "wall_s": wall, "objects": len(ids),
                         "bytes": nbytes if known else None}
    return out


def plans_page(view: View) -> str:
    """Every recorded Plan, the most recently run first; one Plan's page below it."""
    if view.rest:
        return plan_page(view)
    records = list(reversed(history.records()))
    rows = [{"plan": r.number, "name": r.name, "stages": len(r.plan.stages),
             "passes": ", ".join(r.plan.passes) or "none", "runs": r.total_runs,
             "last run": _when(r.runs[-1].started) if r.runs else "",
             "how": r.runs[-1].how if r.runs else ""} for r in records]
    return ("<h1>Plans</h1><p class=muted>Every Plan this driver executed (the newest "
            f"{history.MAX_PLANS}), with its stages' figures from its runs.</p>"
            + table(rows, ["plan", "name", "stages", "passes", "runs", "last run", "how"],
                    link=("plan", "/plans/"), empty="no Plan has run yet"))


def plan_page(view: View) -> str:
    """One Plan: drawn with a run's figures (the latest, or ``?run=K``), its stages'
    figures over all kept runs, and each compiler pass that fired, drawn as a diff."""
    try:
        record = history.find(int(view.rest))
    except ValueError:
        record = None
    if record is None:
        return (f"<h1>Plan {escape(view.rest)}</h1><p>No Plan {escape(view.rest)} is kept: "
                f"only the newest {history.MAX_PLANS} are.</p>")
    runs = list(record.runs)
    if not runs:
        return f"<h1>Plan {record.number}</h1><p>It has not run.</p>"
    choice = view.query.get("run", "")
    index = int(choice) if choice.isdigit() and 0 < int(choice) <= len(runs) else len(runs)
    run = runs[index - 1]
    tasks = view.source.rows("recent_tasks")  # (read every second while the page is open)
    objects = view.source.rows("objects")
    figures = stage_figures(record, run, tasks, objects)
    from sluice.compiler.views import draw_pass_change, visualize

    overlay = {k: {"text": v["text"], "status": v["status"]} for k, v in figures.items()}
    key = (record.number, index, repr(sorted(overlay.items())))
    svg = _PLAN_SVGS.get(key)  # (graphviz runs again only when a figure changed)
    if svg is None:
        svg = _PLAN_SVGS[key] = visualize(record.plan, figures=overlay).pipe(format="svg")
        while len(_PLAN_SVGS) > 2 * history.MAX_PLANS:
            del _PLAN_SVGS[next(iter(_PLAN_SVGS))]
    # Over every kept run: how often each stage ran and how it went.
    totals: dict[str, dict[str, Any]] = {}
    for past in runs:
        for stage_id, past_f in stage_figures(record, past, tasks, objects).items():
            t = totals.setdefault(stage_id, {"runs": 0, "done": 0, "failed runs": 0,
                                             "task time": 0.0})
            t["runs"] += 1
            t["done"] += past_f["status"] == "done"
            t["failed runs"] += past_f["status"] == "failed"
            t["task time"] += past_f["task_time_s"]
    stage_rows = []
    for number, stage in enumerate(record.plan.stages, start=1):
        f = figures.get(stage.id)
        t = totals.get(stage.id, {})
        stage_rows.append({
            "#": number, "stage": stage.name, "kind": stage.kind.value,
            "status": f["status"].upper() if f else "", "tasks": f["tasks"] if f else None,
            "failed": f["failed"] if f else None,
            "task time": _seconds(f["task_time_s"]) if f else "",
            "wall": _seconds(f["wall_s"]) if f else "",
            "bytes out": size(f["bytes"]) if f else "",
            "runs (kept)": t.get("runs"), "done": t.get("done"),
            "failed runs": t.get("failed runs")})
    run_links = " ".join(
        f"<a href='/plans/{record.number}?run={i}'>{'<b>' if i == index else ''}{i}"
        f"{'</b>' if i == index else ''}</a>" for i in range(1, len(runs) + 1))
    passes = []
    for number, change in enumerate(record.plan.pass_log):
        pass_key = (record.number, number)   # a pass's drawing never changes: drawn once
        drawing = _PASS_SVGS.get(pass_key)
        if drawing is None:
            drawing = _PASS_SVGS[pass_key] = draw_pass_change(change).pipe(format="svg").decode()
            while len(_PASS_SVGS) > 4 * history.MAX_PLANS:
                del _PASS_SVGS[next(iter(_PASS_SVGS))]
        passes.append(f"<h3>{escape(change.name)}</h3><p class=muted>{escape(summary(change))}"
                      f"</p><div class=pass-diff>{_inline(drawing)}</div>")
    passes_html = "".join(passes) or "<p class=muted>No pass changed the graph.</p>"
    return (f"<h1>Plan {record.number}: {escape(record.name)}</h1>"
            f"<p class=muted>{len(record.plan.stages)} stage(s); {record.total_runs} run(s), "
            f"the newest {len(runs)} kept; showing run {index} of {_when(run.started)} "
            f"({escape(run.how)}). Runs: {run_links}</p>"
            f"<div class=plan-svg>{_inline(svg.decode())}</div>"
            "<h2>Stages</h2>"
            + table(stage_rows, ["#", "stage", "kind", "status", "tasks", "failed",
                                 "task time", "wall", "bytes out", "runs (kept)", "done",
                                 "failed runs"])
            + "<h2>What the compiler did</h2>" + passes_html
            + f"<details><summary>explain()</summary><pre>{escape(record.plan.explain())}"
              f"</pre></details>")


_PASS_SVGS: dict[tuple[int, int], str] = {}
_PLAN_SVGS: dict[tuple[int, int, str], bytes] = {}


def _inline(svg: str) -> str:
    """An SVG document as inline markup (without its XML prologue)."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


register_page("/plans", "Plans", plans_page, order=15)
