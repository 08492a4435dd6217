"""Live progress of an experiment: how many trials are in each status and the best result
so far. In a terminal: a table of the trials (rich, with the ``tune`` extra; a tqdm line
without it) refreshed at most four times a second. Otherwise: a plain line every few
seconds. ``verbose=0`` is silent.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, TextIO

from sluice.libs.tune.experiment_db import finite

TERMINAL_REFRESH_S = 0.25
LINE_EVERY_S = 5.0


class Progress:
    """Reports an experiment's progress to ``stream`` (see the module's docstring)."""

    def __init__(self, verbose: int, metric: str | None, mode: str | None,
                 stream: TextIO | None = None):
        self.verbose = verbose
        self.metric, self.mode = metric, mode
        self.stream = stream or sys.stdout
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = TERMINAL_REFRESH_S if self.terminal else LINE_EVERY_S
        self._last = 0.0
        self._bar: Any = None

    def summary(self, controller: Any) -> str:
        """``3 RUNNING, 10 TERMINATED | best loss=0.12 (trial_00004)``."""
        counts = Counter(t.status for t in controller.get_trials())
        text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        best = self.best(controller)
        if best is not None:
            text += f" | best {self.metric}={best[0]:.6g} ({best[1]})"
        return text or "no trials yet"

    def best(self, controller: Any) -> tuple[float, str] | None:
        if self.metric is None or self.mode is None:
            return None
        sign = 1.0 if self.mode == "max" else -1.0
        scored = [(float(t.last_result[self.metric]), t.name) for t in controller.get_trials()
                  if finite(t.last_result.get(self.metric))]
        return max(scored, key=lambda item: sign * item[0]) if scored else None

    def update(self, controller: Any, force: bool = False) -> None:
        if self.verbose <= 0:
            return
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last = now
        if self.terminal:
            if self._bar is None:
                self._bar = _live_table(self.stream) or _tqdm_line(self.stream)
            self._bar.show(self, controller)
        else:
            print(f"[tune] {self.summary(controller)}; {controller.num_results} results",
                  file=self.stream, flush=True)

    def trial_ended(self, controller: Any, trial: Any) -> None:
        if self.verbose >= 2 and not self.terminal and trial.status == "ERROR":
            print(f"[tune] trial {trial.name} errored: "
                  f"{(trial.error or '').strip().splitlines()[-1:]}", file=self.stream,
                  flush=True)

    def close(self, controller: Any) -> None:
        if self.verbose <= 0:
            return
        if self._bar is not None:
            self.update(controller, force=True)
            self._bar.close()
            self._bar = None
        else:
            print(f"[tune] done: {self.summary(controller)}; {controller.num_results} results",
                  file=self.stream, flush=True)


def make_progress(verbose: int, metric: str | None, mode: str | None) -> Progress | None:
    """The progress reporter for ``RunConfig(verbose=...)`` (None when silent)."""
    return Progress(verbose, metric, mode) if verbose > 0 else None


MAX_ROWS = 20
"""Trials shown in the terminal table (running ones first, then the best)."""


def rows(progress: Progress, controller: Any) -> list[tuple[str, str, str, str, str]]:
    """(name, status, params, iterations, metric) of the trials worth showing."""
    trials = controller.get_trials()
    sign = 1.0 if progress.mode == "max" else -1.0

    def rank(trial: Any) -> tuple:
        value = trial.last_result.get(progress.metric) if progress.metric else None
        score = sign * float(value) if value is not None and finite(value) else float("-inf")
        return (trial.status != "RUNNING", -score, trial.index)

    out = []
    for trial in sorted(trials, key=rank)[:MAX_ROWS]:
        value = trial.last_result.get(progress.metric) if progress.metric else None
        params = ", ".join(f"{k}={_short(v)}" for k, v in trial.evaluated_params.items())
        out.append((trial.name, trial.status, params,
                    str(trial.last_result.get("training_iteration", "")),
                    "" if value is None else _short(value)))
    return out


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class _RichTable:
    """The trials as a rich table, redrawn in place."""

    def __init__(self, live: Any):
        self.live = live

    def show(self, progress: Progress, controller: Any) -> None:
        from rich.table import Table

        table = Table(title=progress.summary(controller), title_justify="left")
        for column in ("trial", "status", "params", "iter", progress.metric or "metric"):
            table.add_column(column)
        for row in rows(progress, controller):
            table.add_row(*row)
        self.live.update(table, refresh=True)

    def close(self) -> None:
        self.live.stop()


class _TqdmLine:
    """Status counts and the best result on one tqdm line."""

    def __init__(self, bar: Any):
        self.bar = bar

    def show(self, progress: Progress, controller: Any) -> None:
        self.bar.n = controller.num_results
        self.bar.set_description_str(progress.summary(controller), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _live_table(stream: TextIO) -> _RichTable | None:
    try:
        from rich.console import Console
        from rich.live import Live
    except ImportError:  # the tune extra brings rich; without it, one tqdm line
        return None
    live = Live(console=Console(file=stream), auto_refresh=False, transient=False)
    live.start()
    return _RichTable(live)


def _tqdm_line(stream: TextIO) -> _TqdmLine:
    from tqdm import tqdm  # type: ignore[import-untyped]

    return _TqdmLine(tqdm(total=None, file=stream, unit=" results", leave=True))
