"""``ResultGrid`` and ``Result``: an experiment's outcome, read from its database (Ray
Tune's API: the best result by a metric and scope, a dataframe of every trial, errors)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sluice.libs.tune.checkpoint import Checkpoint
from sluice.libs.tune.config import check_mode
from sluice.libs.tune.experiment_db import ExperimentDB, finite
from sluice.libs.tune.trial import ERROR, TERMINATED, Trial

SCOPES = ("all", "last", "avg", "last-5-avg", "last-10-avg")


class TrialError(RuntimeError):
    """A trial's failure, as ``Result.error`` holds it: the trial's traceback in the message."""


@dataclass
class Result:
    """One trial's outcome: its last metrics, config, latest checkpoint, error, folder."""

    metrics: dict[str, Any]
    config: dict[str, Any]
    checkpoint: Checkpoint | None
    error: Exception | None
    path: str
    trial_id: str = ""
    _db: ExperimentDB | None = field(default=None, repr=False)

    @property
    def metrics_dataframe(self) -> Any:
        """Every result the trial reported, one row each (a pandas DataFrame)."""
        import pandas as pd

        rows = self._db.results(self.trial_id) if self._db is not None else []
        return pd.DataFrame(rows)

    @property
    def best_checkpoints(self) -> list[tuple[Checkpoint, dict[str, Any]]]:
        """(checkpoint, the metrics it was reported with) of every checkpoint kept."""
        if self._db is None:
            return []
        return [(Checkpoint(path), metrics) for path, metrics in self._db.checkpoints(self.trial_id)
                if os.path.isdir(path)]

    def get_best_checkpoint(self, metric: str, mode: str) -> Checkpoint | None:
        """The kept checkpoint whose metrics are best by ``metric``."""
        check_mode(mode, "get_best_checkpoint")
        sign = 1.0 if mode == "max" else -1.0
        scored = [(sign * float(m[metric]), c) for c, m in self.best_checkpoints
                  if finite(m.get(metric))]
        return max(scored, key=lambda item: item[0])[1] if scored else None


class ResultGrid:
    """The results of every trial of an experiment (index it or iterate it for each
    :class:`Result`)."""

    def __init__(self, db: ExperimentDB, experiment_path: str, metric: str | None = None,
                 mode: str | None = None):
        self._db = db
        self.experiment_path = experiment_path
        self._metric, self._mode = metric, mode
        self._trials: list[Trial] = db.trials()
        self._results = [self._result(t) for t in self._trials]

    def _result(self, trial: Trial) -> Result:
        error = TrialError(f"trial {trial.name} failed:\n{trial.error}") if trial.status == ERROR \
            else None
        checkpoint = Checkpoint(trial.checkpoint) if trial.checkpoint and os.path.isdir(
            trial.checkpoint) else None
        return Result(dict(trial.last_result), trial.config, checkpoint, error, trial.path,
                      trial.trial_id, self._db)

    def __len__(self) -> int:
        return len(self._results)

    def __getitem__(self, index: int) -> Result:
        return self._results[index]

    def __iter__(self) -> Iterator[Result]:
        return iter(self._results)

    @property
    def errors(self) -> list[Exception]:
        """The errors of the trials that failed."""
        return [r.error for r in self._results if r.error is not None]

    @property
    def num_errors(self) -> int:
        return sum(1 for t in self._trials if t.status == ERROR)

    @property
    def num_terminated(self) -> int:
        return sum(1 for t in self._trials if t.status == TERMINATED)

    def get_best_result(self, metric: str | None = None, mode: str | None = None,
                        scope: str = "last", filter_nan_and_inf: bool = True) -> Result:
        """The trial best by ``metric`` (default: TuneConfig's) in ``mode``, each trial
        scored by its ``scope``: ``last`` result, ``avg`` of all, ``last-5-avg``,
        ``last-10-avg``, or its best of ``all``."""
        metric = metric or self._metric
        mode = mode or self._mode
        if metric is None or mode is None:
            raise ValueError("get_best_result() needs a metric and a mode: pass them, or give "
                             "them to TuneConfig(metric=..., mode=...)")
        check_mode(mode, "get_best_result")
        if scope not in SCOPES:
            raise ValueError(f"get_best_result(scope={scope!r}): give one of {', '.join(SCOPES)}")
        sign = 1.0 if mode == "max" else -1.0
        best: tuple[float, Result] | None = None
        for result in self._results:
            score = self._score(result, metric, mode, scope)
            if score is None or (filter_nan_and_inf and not finite(score)):
                continue
            if best is None or sign * score > sign * best[0]:
                best = (score, result)
        if best is None:
            raise RuntimeError(f"no trial reported a {'finite ' if filter_nan_and_inf else ''}"
                               f"value of {metric!r}; metrics reported: "
                               f"{sorted({k for r in self._results for k in r.metrics})}")
        return best[1]

    def _score(self, result: Result, metric: str, mode: str, scope: str) -> float | None:
        if scope == "last":
            value = result.metrics.get(metric)
            return float(value) if value is not None and _number(value) else None
        values = [float(r[metric]) for r in self._db.results(result.trial_id)
                  if _number(r.get(metric))]
        if not values:
            return None
        if scope == "all":
            return max(values) if mode == "max" else min(values)
        if scope.startswith("last-"):
            values = values[-int(scope.split("-")[1]):]
        return sum(values) / len(values)

    def get_dataframe(self, filter_metric: str | None = None,
                      filter_mode: str | None = None) -> Any:
        """One row per trial: its last result (or, with ``filter_metric``, its best by it),
        ``config/...`` columns, ``trial_id`` and ``logdir``."""
        import pandas as pd

        if (filter_metric is None) != (filter_mode is None):
            raise ValueError("get_dataframe(): give filter_metric and filter_mode together")
        if filter_mode is not None:
            check_mode(filter_mode, "get_dataframe")
        rows = []
        for trial, result in zip(self._trials, self._results):
            metrics = {k: v for k, v in result.metrics.items() if k != "config"}
            if filter_metric is not None:
                sign = 1.0 if filter_mode == "max" else -1.0
                scored = [r for r in self._db.results(trial.trial_id)
                          if _number(r.get(filter_metric))]
                if scored:
                    metrics = max(scored, key=lambda r: sign * float(r[filter_metric]))
            row = dict(metrics)
            row.update({f"config/{k}": v for k, v in _flatten(trial.config).items()})
            row["trial_id"] = trial.trial_id
            row["logdir"] = trial.path
            rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return (f"ResultGrid<{len(self)} trials: {self.num_terminated} terminated, "
                f"{self.num_errors} errored>")


def _number(value: Any) -> bool:
    """True for a value a score can be read from (a number, NaN included)."""
    if value is None or isinstance(value, str):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}/"))
        else:
            out[name] = value
    return out

