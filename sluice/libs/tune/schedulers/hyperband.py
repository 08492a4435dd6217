"""``HyperBandScheduler``: synchronous HyperBand (Li et al., "Hyperband: A Novel
Bandit-Based Approach to Hyperparameter Optimization"), as Ray Tune implements it.

Trials fill *brackets* in the order they are added; ``s_max + 1`` brackets make a *band*
(``s_max = round(log(max_t) / log(eta))``), and a full band starts the next. Bracket ``s``
takes up to ``n0 = ceil((s_max + 1) / (s + 1) * eta**s)`` trials, which run to its first
milestone ``r0 = int(max_t / eta**s)``. A trial reaching the milestone pauses until every
live trial of its bracket reached it; then the top ``1/eta`` of them (by the metric at the
milestone) are resumed towards the next milestone (``eta`` times further, at most
``max_t``) and the others stop. The last milestone is ``max_t``: with ``stop_last_trials``
the trials reaching it stop there.

>>> s = HyperBandScheduler(metric="score", mode="max", max_t=9, reduction_factor=3)
>>> [(s._get_n0(i), s._get_r0(i)) for i in range(s._s_max_1)]
[(3, 9), (5, 3), (9, 1)]
"""

from __future__ import annotations

import logging
import math
from typing import Any

from sluice.libs.tune.schedulers.trial_scheduler import FIFOScheduler
from sluice.libs.tune.trial import PAUSED, PENDING, Trial

logger = logging.getLogger(__name__)


class _Bracket:
    """One bracket: its live trials' latest ``(time, score)`` by trial id (None before the
    first result), the milestone they run to, and how many continue past it."""

    def __init__(self, max_trials: int, init_t: float, max_t: float, eta: float, s: int,
                 stop_last_trials: bool = True):
        self.live: dict[str, tuple[float, float | None] | None] = {}
        self.all: list[str] = []
        self.n = max_trials
        self.r = init_t
        self.milestone = init_t
        self.max_t = max_t
        self.eta = eta
        self.halves = s
        self.stop_last_trials = stop_last_trials
        self.total_work = self._total_work(max_trials, init_t, s)
        self.progress = 0.0
        self.processing = False  # halving: a trial stopped meanwhile does not re-enter
        self.to_unpause: set[str] = set()  # paused trials that may resume

    def add(self, trial_id: str) -> None:
        self.live[trial_id] = None
        self.all.append(trial_id)

    def current(self) -> list[str]:
        """The live trials' ids, in the order added."""
        return list(self.live)

    def filled(self) -> bool:
        """New trials join only while the bracket is at its first milestone's size."""
        return len(self.live) == self.n

    @staticmethod
    def time_of(stats: tuple[float, float | None] | None) -> float:
        return 0.0 if stats is None else stats[0]

    def cur_iter_done(self) -> bool:
        """Every live trial reached the milestone."""
        return all(self.time_of(s) >= self.milestone for s in self.live.values())

    def finished(self) -> bool:
        """The last milestone (``max_t``) is reached and its trials stop there."""
        return self.stop_last_trials and self.halves == 0 and self.cur_iter_done()

    def continue_trial(self, trial_id: str) -> bool:
        """Whether the trial runs on (it is short of the milestone, or past the last one
        without ``stop_last_trials``)."""
        if not self.stop_last_trials and self.halves == 0:
            return True
        return self.time_of(self.live[trial_id]) < self.milestone

    def update(self, trial_id: str, time: float, score: float | None) -> None:
        last = self.time_of(self.live[trial_id])
        if time <= last:
            logger.info("trial %s restored from an earlier point (%s <= %s)", trial_id, time,
                        last)
        self.progress += time - last
        self.live[trial_id] = (time, score)
        self.to_unpause.discard(trial_id)

    def successive_halving(self) -> tuple[list[str], list[str]]:
        """(the trials that go on to the next milestone, those that stop)."""
        if self.halves == 0 and not self.stop_last_trials:
            return list(self.live), []
        assert self.halves > 0
        self.halves -= 1
        self.n = int(math.ceil(self.n / self.eta))
        self.r = min(self.r * self.eta, self.max_t)
        self.milestone = self.r
        ranked = sorted(self.live, key=self._score)
        return ranked[-self.n:], ranked[:-self.n]

    def _score(self, trial_id: str) -> float:
        stats = self.live[trial_id]
        return -math.inf if stats is None or stats[1] is None else stats[1]

    def remove(self, trial_id: str) -> None:
        self.live.pop(trial_id, None)
        self.to_unpause.discard(trial_id)

    def completion(self) -> float:
        """Roughly how much of the bracket's work is done (0 to 1)."""
        if self.finished():
            return 1.0
        return min(self.progress / self.total_work, 1.0) if self.total_work else 0.0

    def _total_work(self, n: int, r: float, s: int) -> float:
        work, reached = 0.0, 0.0
        for _ in range(s + 1):
            work += n * (r - reached)
            reached = r
            n = int(math.ceil(n / self.eta))
            r = min(r * self.eta, self.max_t)
        return work

    def describe(self) -> str:
        return (f"Bracket(Max Size (n)={self.n}, Milestone (r)={self.milestone:g}, "
                f"completed={self.completion():.1%}): {len(self.live)} live of "
                f"{len(self.all)} trials")


class HyperBandScheduler(FIFOScheduler):
    """Synchronous HyperBand (see the module's docstring; Ray Tune's names and defaults).

    ``time_attr`` must grow monotonically (``training_iteration``, ``time_total_s``...);
    ``max_t`` is the most of it a trial gets; ``reduction_factor`` is HyperBand's ``eta``;
    with ``stop_last_trials=False`` the trials of a bracket's last round run on past
    ``max_t`` until they end by themselves. Trials are paused (checkpointed, their actors
    freed) at milestones and resumed from their checkpoints: a function trainable should
    start from ``tune.get_checkpoint()``.
    """

    _supports_buffered_results = False

    def __init__(self, time_attr: str = "training_iteration", metric: str | None = None,
                 mode: str | None = None, max_t: float = 81, reduction_factor: float = 3,
                 stop_last_trials: bool = True):
        super().__init__(metric, mode)
        if max_t <= 0:
            raise ValueError(f"HyperBandScheduler(max_t={max_t}): give a positive number of "
                             f"{time_attr}, the most a trial runs")
        if reduction_factor <= 1:
            raise ValueError(f"HyperBandScheduler(reduction_factor={reduction_factor}): give a "
                             f"number above 1 (3 keeps the best third at each milestone)")
        self._time_attr = time_attr
        self._max_t_attr = max_t
        self._eta = reduction_factor
        self._stop_last_trials = stop_last_trials
        self._s_max_1 = int(round(math.log(max_t) / math.log(reduction_factor))) + 1
        self._hyperbands: list[list[_Bracket | None]] = [[]]  # bands of brackets
        self._trial_info: dict[str, tuple[_Bracket, int]] = {}  # id -> bracket, band
        self._state: dict[str, Any] = {"bracket": None, "band_idx": 0}
        self._num_stopped = 0

    def _get_n0(self, s: int) -> int:
        """Bracket ``s``'s most trials."""
        return int(math.ceil(self._s_max_1 / (s + 1) * self._eta ** s))

    def _get_r0(self, s: int) -> float:
        """Bracket ``s``'s first milestone."""
        return int(self._max_t_attr * self._eta ** (-s))

    # -- trials join brackets -------------------------------------------------------------
    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        """Put ``trial`` in the current bracket; a full bracket starts the next one of the
        band, a full band the next band."""
        self._sign()
        bracket = self._state["bracket"]
        if bracket is None or bracket.filled():
            bracket = None
            while bracket is None:
                band = self._hyperbands[self._state["band_idx"]]
                if len(band) == self._s_max_1:  # the band is full: a new one
                    band = []
                    self._hyperbands.append(band)
                    self._state["band_idx"] += 1
                s = len(band)
                if self._get_r0(s) > 0:
                    bracket = _Bracket(self._get_n0(s), self._get_r0(s), self._max_t_attr,
                                       self._eta, s, self._stop_last_trials)
                band.append(bracket)  # (None: a bracket too small for max_t, skipped)
            self._state["bracket"] = bracket
        bracket.add(trial.trial_id)
        self._trial_info[trial.trial_id] = (bracket, self._state["band_idx"])

    # -- results --------------------------------------------------------------------------
    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        """CONTINUE short of the bracket's milestone; at it, PAUSE until the bracket's
        other live trials reach it, then CONTINUE (top ``1/eta``) or STOP."""
        if self._time_attr not in result:
            raise ValueError(f"HyperBandScheduler(time_attr={self._time_attr!r}): trial "
                             f"{trial.name}'s result has no {self._time_attr!r}; its metrics "
                             f"are {sorted(k for k in result if k != 'config')}")
        if trial.trial_id not in self._trial_info:  # (a trial the saved state missed)
            self.on_trial_add(tune_controller, trial)
        bracket, _ = self._trial_info[trial.trial_id]
        value = result.get(self._metric)
        score = None if value is None else self._sign() * float(value)
        bracket.update(trial.trial_id, result[self._time_attr], score)
        if bracket.continue_trial(trial.trial_id):
            return self.CONTINUE
        if score is None:
            raise ValueError(f"HyperBandScheduler(metric={self._metric!r}): trial {trial.name}"
                             f" reached {self._time_attr}={result[self._time_attr]} without "
                             f"reporting {self._metric!r}, which ranks the bracket's trials")
        action = self._process_bracket(tune_controller, bracket, trial)
        logger.debug("%s for %s at %s=%s", action, trial, self._time_attr,
                     result[self._time_attr])
        return action

    def continue_until(self, trial: Trial) -> int | None:
        """Nothing is decided short of the trial's bracket's milestone."""
        info = self._trial_info.get(trial.trial_id)
        if self._time_attr != "training_iteration" or info is None:
            return None
        bracket = info[0]
        if trial.trial_id not in bracket.live:
            return None
        if not bracket.stop_last_trials and bracket.halves == 0:
            return None  # (it runs to its end: results are taken as they come)
        return int(math.ceil(bracket.milestone))

    def _process_bracket(self, tune_controller: Any, bracket: _Bracket,
                         current: Trial | None = None) -> str:
        """Halve ``bracket`` once every live trial reached its milestone: stop the bottom
        trials, let the top ones resume; what ``current`` (the trial reporting) does."""
        action = self.PAUSE
        if not bracket.cur_iter_done():
            return action
        by_id = {t.trial_id: t for t in tune_controller.get_trials()}
        current_id = current.trial_id if current is not None else None
        if bracket.finished():
            self._stop_waiting(tune_controller, bracket, by_id, bracket.current(), current_id)
            return self.STOP
        bracket.processing = True
        try:
            good, bad = bracket.successive_halving()
            self._num_stopped += len(bad)
            for trial_id in bad:
                if trial_id == current_id:
                    bracket.remove(trial_id)
                    action = self.STOP
                else:
                    self._stop(tune_controller, bracket, trial_id, by_id.get(trial_id))
            for trial_id in good:
                trial = by_id.get(trial_id)
                if bracket.continue_trial(trial_id):
                    if trial_id == current_id:
                        action = self.CONTINUE
                    elif trial is not None and trial.status in (PAUSED, PENDING):
                        bracket.to_unpause.add(trial_id)
                elif bracket.finished():  # (halved to max_t, already there)
                    if trial_id == current_id:
                        bracket.remove(trial_id)
                        action = self.STOP
                    else:
                        self._stop(tune_controller, bracket, trial_id, trial)
        finally:
            bracket.processing = False
        return action

    def _stop(self, tune_controller: Any, bracket: _Bracket, trial_id: str,
              trial: Trial | None) -> None:
        """Stop a trial other than the one reporting (the controller tells us back)."""
        bracket.remove(trial_id)
        self._trial_info.pop(trial_id, None)
        if trial is not None and not trial.is_finished():
            tune_controller.stop_trial(trial)

    def _stop_waiting(self, tune_controller: Any, bracket: _Bracket, by_id: dict[str, Trial],
                      trial_ids: list[str], current_id: str | None) -> None:
        """The bracket is done: stop its paused (and pending) trials."""
        bracket.processing = True
        try:
            for trial_id in trial_ids:
                trial = by_id.get(trial_id)
                if trial_id != current_id and trial is not None and (
                        trial.status in (PAUSED, PENDING)):
                    self._stop(tune_controller, bracket, trial_id, trial)
        finally:
            bracket.processing = False

    # -- trials leave ---------------------------------------------------------------------
    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        """``trial`` left its bracket: the others may now all be at the milestone."""
        info = self._trial_info.pop(trial.trial_id, None)
        if info is None:
            return
        bracket = info[0]
        bracket.remove(trial.trial_id)
        if bracket.live and not bracket.processing:  # (a finished one stops those paused)
            self._process_bracket(tune_controller, bracket)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.on_trial_remove(tune_controller, trial)

    # -- what runs next -------------------------------------------------------------------
    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """A pending trial, or a paused one its bracket let through: from the earliest band,
        the least complete bracket first (None: the paused trials wait for their
        brackets)."""
        by_id = {t.trial_id: t for t in tune_controller.get_trials()}
        trial = self._runnable(by_id)
        if trial is None:
            # a bracket whose trials all reached its milestone with nothing left to report
            # (e.g. past it at once): halve it now
            for band in self._hyperbands:
                for bracket in band:
                    if bracket is not None and bracket.live and bracket.cur_iter_done():
                        self._process_bracket(tune_controller, bracket)
            trial = self._runnable(by_id)
        if trial is None:  # a trial no bracket holds (a restore without the saved state)
            trial = next((t for t in by_id.values()
                          if t.status == PENDING and t.trial_id not in self._trial_info), None)
        return trial

    def _runnable(self, by_id: dict[str, Trial]) -> Trial | None:
        for band in self._hyperbands:
            brackets = [b for b in band if b is not None]
            for bracket in sorted(brackets, key=_Bracket.completion):
                for trial_id in bracket.current():
                    trial = by_id.get(trial_id)
                    if trial is None:
                        continue
                    if trial.status == PENDING or (
                            trial.status == PAUSED and trial_id in bracket.to_unpause):
                        return trial
        return None

    # -- display and state ----------------------------------------------------------------
    def debug_string(self) -> str:
        """The brackets of each band (round): size, milestone, completion, trials."""
        total = sum(len(band) for band in self._hyperbands)
        rounds = "; ".join(
            f"round {i}: " + ", ".join(b.describe() for b in band if b is not None)
            for i, band in enumerate(self._hyperbands))
        return f"Using HyperBand: num_stopped={self._num_stopped} total_brackets={total}; {rounds}"

    def describe(self) -> str:
        return (f"HyperBandScheduler (metric={self._metric!r}, mode={self._mode!r}, "
                f"{self._time_attr} max_t={self._max_t_attr:g}, reduction_factor="
                f"{self._eta:g}, {self._s_max_1} brackets per band of "
                f"{sum(self._get_n0(s) for s in range(self._s_max_1))} trials)")
