"""``MedianStoppingRule``: the median stopping rule of Google Vizier (Golovin et al.,
"Google Vizier: A Service for Black-Box Optimization"), as Ray Tune implements it.

At each result past ``grace_period`` (in ``time_attr``), a trial's best metric so far is
compared with the median, over the other trials that got at least as far, of their running
averages (their results from ``grace_period`` to the same time). Strictly worse: the trial
stops (``hard_stop=False``: it is paused and runs again, to its end, once nothing else
waits). With fewer than ``min_samples_required`` other trials to compare with, a trial
yields its resources to a waiting one (it pauses) at most every ``min_time_slice``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from sluice.libs.tune.schedulers.trial_scheduler import FIFOScheduler
from sluice.libs.tune.trial import PAUSED, PENDING, RUNNING, Trial

logger = logging.getLogger(__name__)


class MedianStoppingRule(FIFOScheduler):
    """Stops a trial whose best result is below the median of the others' running averages
    at the same time (see the module's docstring; Ray Tune's names and defaults)."""

    def __init__(self, time_attr: str = "time_total_s", metric: str | None = None,
                 mode: str | None = None, grace_period: float = 60.0,
                 min_samples_required: int = 3, min_time_slice: float = 0,
                 hard_stop: bool = True):
        super().__init__(metric, mode)
        if grace_period < 0:
            raise ValueError(f"MedianStoppingRule(grace_period={grace_period}): give a number "
                             f"of {time_attr} >= 0 before which no trial is stopped")
        if min_samples_required < 1:
            raise ValueError(f"MedianStoppingRule(min_samples_required={min_samples_required})"
                             f": give at least 1 other trial to compare with")
        if min_time_slice < 0:
            raise ValueError(f"MedianStoppingRule(min_time_slice={min_time_slice}): give a "
                             f"number of {time_attr} >= 0")
        self._time_attr = time_attr
        self._grace_period = grace_period
        self._min_samples_required = min_samples_required
        self._min_time_slice = min_time_slice
        self._hard_stop = hard_stop
        self._results: dict[str, list[tuple[float, float]]] = {}  # id -> (time, metric)
        self._stopped_trials: set[str] = set()
        self._last_pause: dict[str, float] = {}

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self._sign()

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        """STOP (or PAUSE without ``hard_stop``) a trial strictly worse than the median;
        PAUSE to yield while there are too few trials to compare with; else CONTINUE."""
        if self._time_attr not in result or self._metric not in result:
            return self.CONTINUE
        if trial.trial_id in self._stopped_trials:
            return self.CONTINUE  # paused by the rule and resumed: it runs to its end
        time = float(result[self._time_attr])
        self._results.setdefault(trial.trial_id, []).append(
            (time, float(result[self._metric])))
        if time < self._grace_period:
            return self.CONTINUE
        others = [t for t in self._trials_beyond_time(time) if t != trial.trial_id]
        if len(others) < self._min_samples_required:
            action = self._on_insufficient_samples(tune_controller, trial, time)
            if action == self.PAUSE:
                self._last_pause[trial.trial_id] = time
            logger.debug("MedianStoppingRule: %d trials to compare %s with at %s=%s: %s",
                         len(others), trial, self._time_attr, time, action)
            return action
        sign = self._sign()
        median = self._median_result(others, time)
        best = max(sign * value for _, value in self._results[trial.trial_id])
        if best < sign * median:  # (False for a NaN median)
            logger.debug("MedianStoppingRule: stopping %s (best %s, median %s at %s=%s)",
                         trial, sign * best, median, self._time_attr, time)
            self._stopped_trials.add(trial.trial_id)
            return self.STOP if self._hard_stop else self.PAUSE
        return self.CONTINUE

    def continue_until(self, trial: Trial) -> int | None:
        """Nothing is decided before ``grace_period``; past it, any result may stop the
        trial."""
        if self._time_attr != "training_iteration":
            return None
        now = trial.last_result.get("training_iteration", 0)
        until = int(math.ceil(self._grace_period))
        return until if until > now else None

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        """A finished trial's results stay, for the later trials to be compared with."""
        if result and self._time_attr in result and self._metric in result:
            results = self._results.setdefault(trial.trial_id, [])
            point = (float(result[self._time_attr]), float(result[self._metric]))
            if not results or results[-1] != point:
                results.append(point)

    def _on_insufficient_samples(self, tune_controller: Any, trial: Trial, time: float) -> str:
        """PAUSE (to let a waiting trial run) at most once per ``min_time_slice``."""
        if time - self._last_pause.get(trial.trial_id, -math.inf) <= self._min_time_slice:
            return self.CONTINUE
        waiting = any(t.status in (PENDING, PAUSED) for t in tune_controller.get_live_trials())
        return self.PAUSE if waiting else self.CONTINUE

    def _trials_beyond_time(self, time: float) -> list[str]:
        """The trials whose latest result is at ``time`` or later."""
        return [t for t, results in self._results.items() if results[-1][0] >= time]

    def _median_result(self, trial_ids: list[str], time: float) -> float:
        """The median of the trials' running averages (NaN: none has a result in range)."""
        means = [m for m in (self._running_mean(t, time) for t in trial_ids) if not math.isnan(m)]
        return float(np.median(means)) if means else math.nan

    def _running_mean(self, trial_id: str, time: float) -> float:
        """The mean of a trial's results from ``grace_period`` to ``time``."""
        scoped = [value for t, value in self._results[trial_id]
                  if self._grace_period <= t <= time]
        return float(np.mean(scoped)) if scoped else math.nan

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """Pending trials first, then paused ones (those the rule stopped only once no
        trial runs or waits: they run to their end last)."""
        trials = tune_controller.get_trials()
        for status in (PENDING, PAUSED):
            for trial in trials:
                if trial.status == status and trial.trial_id not in self._stopped_trials:
                    return trial
        if any(t.status == RUNNING for t in trials):
            return None
        return next((t for t in trials if t.status == PAUSED), None)

    def debug_string(self) -> str:
        return f"Using MedianStoppingRule: num_stopped={len(self._stopped_trials)}."

    def describe(self) -> str:
        return (f"MedianStoppingRule (metric={self._metric!r}, mode={self._mode!r}, "
                f"{self._time_attr} grace_period={self._grace_period:g}, "
                f"min_samples_required={self._min_samples_required}, "
                f"min_time_slice={self._min_time_slice:g}, hard_stop={self._hard_stop})")
