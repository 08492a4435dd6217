"""``ASHAScheduler`` (``AsyncHyperBandScheduler``): asynchronous successive halving.

Rungs sit at ``grace_period * reduction_factor**k`` (below ``max_t``). A trial reaching a
rung is compared with every trial that reached it before: unless it is in the top
``1/reduction_factor`` of them, it stops. Nothing waits for a whole rung, so no trial is
ever paused (Li et al., "A System for Massively Parallel Hyperparameter Tuning", the
algorithm Ray Tune implements, with its defaults).

>>> s = ASHAScheduler(metric="score", mode="max", max_t=9, grace_period=1, reduction_factor=3)
>>> [rung for rung, _ in s._brackets[0].rungs]
[9, 3, 1]
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np

from sluice.libs.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler
from sluice.libs.tune.trial import Trial


class _Bracket:
    """One bracket's rungs (highest first), each the scores recorded at it by trial id."""

    def __init__(self, min_t: float, max_t: float, reduction_factor: float, s: int,
                 stop_last_trials: bool = True):
        self.rf = reduction_factor
        count = int(math.log(max_t / min_t) / math.log(reduction_factor) - s + 1)
        self.rungs: list[tuple[float, dict[str, float]]] = [
            (min_t * reduction_factor ** (k + s), {}) for k in reversed(range(count))]
        self.stop_last_trials = stop_last_trials

    def cutoff(self, recorded: dict[str, float]) -> float | None:
        """The ``1 - 1/rf`` quantile of the scores recorded (numpy's nanpercentile,
        linear interpolation, in plain Python: a rung holds tens of scores, not millions)."""
        values = sorted(v for v in recorded.values() if v == v)  # NaN dropped
        if not values:
            return None
        at = (len(values) - 1) * (1 - 1 / self.rf)
        low = int(at)
        high = min(low + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (at - low)

    def on_result(self, trial_id: str, cur_iter: float, cur_score: float | None) -> str:
        action = TrialScheduler.CONTINUE
        for milestone, recorded in self.rungs:
            if cur_iter >= milestone and trial_id in recorded and not self.stop_last_trials:
                break  # past the top rung it already reached: keep going
            if cur_iter < milestone or trial_id in recorded:
                continue
            cutoff = self.cutoff(recorded)
            if cutoff is not None and cur_score is not None and cur_score < cutoff:
                action = TrialScheduler.STOP
            if cur_score is not None:
                recorded[trial_id] = cur_score
            break
        return action

    def describe(self) -> str:
        return " ".join(f"{rung:g}:{len(rec)}" for rung, rec in reversed(self.rungs))


class AsyncHyperBandScheduler(FIFOScheduler):
    """Asynchronous successive halving (Ray Tune's names and defaults)."""

    def __init__(self, time_attr: str = "training_iteration", metric: str | None = None,
                 mode: str | None = None, max_t: float = 100, grace_period: float = 1,
                 reduction_factor: float = 4, brackets: int = 1, stop_last_trials: bool = True,
                 seed: int | None = None):
        super().__init__(metric, mode)
        if grace_period <= 0:
            raise ValueError(f"ASHAScheduler(grace_period={grace_period}): give a positive "
                             f"number of {time_attr}")
        if max_t < grace_period:
            raise ValueError(f"ASHAScheduler(max_t={max_t}) is below grace_period="
                             f"{grace_period}; raise max_t or lower grace_period")
        if reduction_factor <= 1:
            raise ValueError(f"ASHAScheduler(reduction_factor={reduction_factor}): give a "
                             f"number above 1 (4 keeps the best quarter at each rung)")
        if brackets < 1:
            raise ValueError(f"ASHAScheduler(brackets={brackets}): give at least 1")
        self._time_attr = time_attr
        self._max_t = max_t
        self._grace_period = grace_period
        self._reduction_factor = reduction_factor
        self._stop_last_trials = stop_last_trials
        self._brackets = [_Bracket(grace_period, max_t, reduction_factor, s, stop_last_trials)
                          for s in range(brackets)]
        self._trial_bracket: dict[str, int] = {}
        self._num_stopped = 0
        self._rng = random.Random(seed)

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self._sign()
        # a bracket with more rungs is more likely (Ray's softmax over rung counts)
        sizes = np.array([len(b.rungs) for b in self._brackets], dtype=float)
        weights = np.exp(sizes - sizes.max())
        index = self._rng.choices(range(len(self._brackets)), weights=list(weights))[0]
        self._trial_bracket[trial.trial_id] = index

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        if self._time_attr not in result or self._metric not in result:
            return self.CONTINUE
        if result[self._time_attr] >= self._max_t and self._stop_last_trials:
            action = self.STOP
        else:
            bracket = self._brackets[self._trial_bracket.setdefault(trial.trial_id, 0)]
            action = bracket.on_result(trial.trial_id, result[self._time_attr],
                                       self._score(result))
        if action == self.STOP:
            self._num_stopped += 1
        return action

    def continue_until(self, trial: Trial) -> int | None:
        """Only a rung the trial has not reached yet (or max_t) is a decision point."""
        if self._time_attr != "training_iteration":
            return None
        now = trial.last_result.get("training_iteration", 0)
        index = self._trial_bracket.get(trial.trial_id)
        if index is None:
            return None
        bracket = self._brackets[index]
        ahead = [m for m, recorded in bracket.rungs if m > now and trial.trial_id not in recorded]
        limit = min([*ahead, self._max_t]) if self._stop_last_trials else min(ahead, default=None)
        return None if limit is None else int(math.ceil(limit))

    def _score(self, result: dict) -> float | None:
        value = result.get(self._metric or "")
        if value is None:
            return None
        return self._sign() * float(value)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        index = self._trial_bracket.pop(trial.trial_id, None)
        if index is None or not result or self._time_attr not in result or (
                self._metric not in result):
            return
        self._brackets[index].on_result(trial.trial_id, result[self._time_attr],
                                        self._score(result))

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._trial_bracket.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        rungs = "; ".join(f"bracket {i}: {b.describe()}" for i, b in enumerate(self._brackets))
        return f"Using AsyncHyperBand: num_stopped={self._num_stopped} {rungs}"

    def describe(self) -> str:
        return (f"ASHAScheduler (metric={self._metric!r}, mode={self._mode!r}, "
                f"{self._time_attr} max_t={self._max_t:g}, grace_period={self._grace_period:g},"
                f" reduction_factor={self._reduction_factor:g}, brackets={len(self._brackets)})")

    def save_state(self) -> Any:
        state = dict(self.__dict__)
        state["_rng"] = self._rng.getstate()
        return state

    def restore_state(self, state: Any) -> None:
        state = dict(state)
        rng = random.Random()
        rng.setstate(state.pop("_rng"))
        self.__dict__.update(state, _rng=rng)


ASHAScheduler = AsyncHyperBandScheduler
