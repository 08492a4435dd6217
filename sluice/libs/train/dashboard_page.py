"""The dashboard's Train page: this driver's training runs, their gangs, attempts and
failures, checkpoints and each reported round, live. Registered when ``sluice.train`` is
imported."""

from __future__ import annotations

from html import escape
from typing import Any

from sluice.dashboard.html import table
from sluice.dashboard.pages import Recent, View, register_page

KEEP = 10
_runs = Recent(KEEP)  # (name, path, controller)


def note_run(name: str, path: str, controller: Any) -> None:
    """Show ``controller``'s run (a TrainController, read as it goes)."""
    _runs.note((name, path, controller))


def train_page(view: View) -> str:
    """Each kept run, newest first: its gang, attempts, checkpoints and reported rounds."""
    runs = _runs.newest_first()
    if not runs:
        return "<h1>Train</h1><p class=muted>No training run has started yet.</p>"
    parts = ["<h1>Train</h1>"]
    for name, path, ctl in runs:
        history = list(ctl.history)
        keys = sorted({k for round_ in history for k, v in round_.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)})[:8]
        rows = [{"round": i, **{k: r.get(k) for k in keys}} for i, r in enumerate(history, 1)]
        kept = [{"checkpoint": p, **{k: m.get(k) for k in keys[:4]}} for p, m in ctl.kept]
        scaling = ctl.scaling
        parts.append(
            f"<h2>{escape(name)}</h2><p class=muted>{escape(path)}; {scaling.num_workers} "
            f"rank(s), each {escape(str(scaling.worker_resources()))}, "
            f"{escape(scaling.placement_strategy)}; attempt(s) {ctl.attempts}, failure(s) "
            f"{ctl.failures} of {ctl.failure_config.max_failures} allowed; "
            f"{len(history)} round(s) reported</p>"
            + "<h3>Checkpoints kept</h3>" + table(kept, ["checkpoint", *keys[:4]],
                                                  empty="none yet")
            + "<h3>Rounds (rank 0's metrics)</h3>"
            + table(rows[-200:], ["round", *keys], empty="no round reported yet"))
    return "".join(parts)


register_page("/train", "Train", train_page, order=85)
