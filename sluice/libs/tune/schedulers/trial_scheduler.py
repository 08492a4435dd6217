"""The scheduler interface (Ray Tune's ``TrialScheduler``) and the default FIFO scheduler.

The controller tells a scheduler about each trial added, each result, each trial that
completed or errored, and asks it which trial to run next; a result's answer is one of
:data:`CONTINUE`, :data:`PAUSE`, :data:`STOP`. A scheduler reaches the controller
(``tune_controller``) for ``get_trials()``, ``get_live_trials()``, ``pause_trial(trial)``
and ``stop_trial(trial)``.
"""

from __future__ import annotations

from typing import Any

from sluice.libs.tune.config import MetricMode
from sluice.libs.tune.trial import PAUSED, PENDING, Trial


class TrialScheduler(MetricMode):
    """Decides, result by result, whether each trial continues, pauses or stops."""

    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"
    NOOP = "NOOP"

    _supports_buffered_results = True

    def _sign(self) -> float:
        """+1 to maximise the metric, -1 to minimise it; a clear error without both."""
        if self._metric is None or self._mode is None:
            raise ValueError(f"{type(self).__name__} needs a metric and a mode: give them to "
                             f"the scheduler or to TuneConfig(metric=..., mode='min'|'max')")
        return 1.0 if self._mode == "max" else -1.0

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Take the experiment's metric and mode where the scheduler has none (False: it
        has its own, which differs)."""
        if self._metric and metric and self._metric != metric:
            return False
        if self._mode and mode and self._mode != mode:
            return False
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        """A trial was added (it waits to run)."""

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        """A trial failed."""

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        """A trial reported ``result``: CONTINUE, PAUSE or STOP."""
        return self.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        """A trial finished (its trainable returned, or a stop criterion was met)."""

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        """A trial was stopped by the scheduler (or removed)."""

    def continue_until(self, trial: Trial) -> int | None:
        """The ``training_iteration`` before which this scheduler answers CONTINUE to every
        result of running ``trial`` whatever it holds (None: it may decide at any result).
        The trial then reports on without waiting up to that iteration: fewer round trips
        between the driver and the trial, the same decisions."""
        return None

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """The next trial to start or resume, of those PENDING or PAUSED (None: none now)."""
        for trial in tune_controller.get_trials():
            if trial.status == PENDING:
                return trial
        for trial in tune_controller.get_trials():
            if trial.status == PAUSED:
                return trial
        return None

    def debug_string(self) -> str:
        """One line on the scheduler's state, for the progress display."""
        return f"Using {type(self).__name__}."

    def describe(self) -> str:
        """The scheduler and its settings, for ``Tuner.explain()``."""
        return type(self).__name__

    def save_state(self) -> Any:
        """What restores this scheduler after a driver crash (picklable)."""
        return dict(self.__dict__)

    def restore_state(self, state: Any) -> None:
        self.__dict__.update(state)


class FIFOScheduler(TrialScheduler):
    """Runs trials in the order they were added, to their end (the default)."""

    def describe(self) -> str:
        return "FIFOScheduler (trials run to their end, in order)"
