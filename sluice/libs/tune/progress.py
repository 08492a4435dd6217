"""Live progress of an experiment: how many trials are in each status and the best result
so far, refreshed at most a few times a second in a terminal (a tqdm bar), as a plain line
every few seconds otherwise; ``verbose=0`` is silent.
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
                from tqdm import tqdm

                self._bar = tqdm(total=None, file=self.stream, unit=" results", leave=True)
            self._bar.n = controller.num_results
            self._bar.set_description_str(self.summary(controller), refresh=False)
            self._bar.refresh()
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
