"""The dashboard's Tune page: this driver's experiments, each trial's status, iterations,
metric and config, live while they run. Registered when ``sluice.tune`` is imported."""

from __future__ import annotations

from html import escape
from typing import Any

from sluice.dashboard.html import table
from sluice.dashboard.pages import Recent, View, register_page

KEEP = 10
_experiments = Recent(KEEP)  # (name, path, controller)


def note_experiment(name: str, path: str, controller: Any) -> None:
    """Show ``controller``'s trials (a TuneController, read as it runs)."""
    _experiments.note((name, path, controller))


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def tune_page(view: View) -> str:
    """Each kept experiment, newest first: its trials and the best so far."""
    experiments = _experiments.newest_first()
    if not experiments:
        return "<h1>Tune</h1><p class=muted>No experiment has run yet.</p>"
    parts = ["<h1>Tune</h1>"]
    for name, path, ctl in experiments:
        metric, mode = ctl.metric, ctl.mode
        trials = list(ctl.trials)
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        rows = []
        for t in trials:
            result = t.last_result or {}
            rows.append({"trial": t.name or t.trial_id, "status": t.status,
                         "iterations": result.get("training_iteration"),
                         metric or "metric": result.get(metric) if metric else None,
                         "config": _short(t.evaluated_params or t.config),
                         "error": (t.error or "")[:160]})
        scored = [r for r in rows if metric and isinstance(r.get(metric), (int, float))]
        best = (max if mode == "max" else min)(scored, key=lambda r: r[metric]) if scored else None
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        parts.append(
            f"<h2>{escape(name)}</h2><p class=muted>{escape(path)}; {len(trials)} trial(s): "
            f"{escape(summary)}"
            + (f"; best {escape(metric)} = {best[metric]:.6g} ({escape(best['trial'])})"
               if best else "") + "</p>"
            + table(rows, ["trial", "status", "iterations", metric or "metric", "config",
                           "error"], empty="no trials yet"))
    return "".join(parts)


register_page("/tune", "Tune", tune_page, order=80)
