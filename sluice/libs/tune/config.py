"""An experiment's settings, with Ray Tune's names and defaults: :class:`TuneConfig` (the
search), :class:`RunConfig` (where results go, when trials stop), :class:`CheckpointConfig`
and :class:`FailureConfig`.

>>> TuneConfig(metric="loss", mode="min").num_samples
1
>>> TuneConfig(mode="lowest")
Traceback (most recent call last):
...
ValueError: TuneConfig(mode='lowest'): mode must be 'min' or 'max'
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_STORAGE_PATH = "~/sluice_results"
"""Where experiments go when ``RunConfig.storage_path`` is not given (Ray's is ~/ray_results)."""


def check_mode(mode: str | None, where: str) -> None:
    """Raise unless ``mode`` is None, "min" or "max"."""
    if mode not in (None, "min", "max"):
        raise ValueError(f"{where}(mode={mode!r}): mode must be 'min' or 'max'")


class MetricMode:
    """The metric and mode (min or max) a scheduler or a searcher ranks results by; either
    may be None until the experiment gives its own."""

    _metric: str | None = None
    _mode: str | None = None

    def __init__(self, metric: str | None = None, mode: str | None = None):
        check_mode(mode, type(self).__name__)
        self._metric = metric
        self._mode = mode

    @property
    def metric(self) -> str | None:
        return self._metric

    @property
    def mode(self) -> str | None:
        return self._mode


@dataclass
class TuneConfig:
    """How to search: the metric and mode results are ranked by, how many trials, and the
    scheduler and search algorithm that pick and stop them."""

    mode: str | None = None  # (Ray's field order: mode before metric)
    metric: str | None = None
    search_alg: Any = None
    scheduler: Any = None
    num_samples: int = 1
    max_concurrent_trials: int | None = None
    time_budget_s: float | None = None
    reuse_actors: bool = False
    trial_name_creator: Callable[[Any], str] | None = None
    trial_dirname_creator: Callable[[Any], str] | None = None

    def __post_init__(self) -> None:
        check_mode(self.mode, "TuneConfig")
        if not isinstance(self.num_samples, int) or isinstance(self.num_samples, bool) or (
                self.num_samples == 0 or self.num_samples < -1):
            raise ValueError(f"TuneConfig(num_samples={self.num_samples!r}): give a positive "
                             f"number of samples (or -1 for as many as the search algorithm "
                             f"gives, with a time_budget_s)")
        if self.max_concurrent_trials == 0:  # Ray's "no limit", like None
            self.max_concurrent_trials = None
        if self.max_concurrent_trials is not None and self.max_concurrent_trials < 0:
            raise ValueError(f"TuneConfig(max_concurrent_trials={self.max_concurrent_trials}): "
                             f"give a positive limit, or None (or 0) for as many as resources "
                             f"allow")
        if isinstance(self.time_budget_s, dt.timedelta):
            self.time_budget_s = self.time_budget_s.total_seconds()
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError(f"TuneConfig(time_budget_s={self.time_budget_s}): give a "
                             f"positive number of seconds, or None for no budget")


@dataclass
class CheckpointConfig:
    """Which checkpoints a trial keeps: the best ``num_to_keep`` by
    ``checkpoint_score_attribute`` (the latest ones when None), and, for class
    trainables, every ``checkpoint_frequency`` iterations and at the end."""

    num_to_keep: int | None = None
    checkpoint_score_attribute: str | None = None
    checkpoint_score_order: str = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool | None = None

    def __post_init__(self) -> None:
        if self.num_to_keep is not None and self.num_to_keep < 1:
            raise ValueError(f"CheckpointConfig(num_to_keep={self.num_to_keep}): keep at least "
                             f"1 checkpoint, or None to keep them all")
        if self.checkpoint_score_order not in ("min", "max"):
            raise ValueError(f"CheckpointConfig(checkpoint_score_order="
                             f"{self.checkpoint_score_order!r}): give 'min' or 'max'")
        if self.checkpoint_frequency < 0:
            raise ValueError(f"CheckpointConfig(checkpoint_frequency="
                             f"{self.checkpoint_frequency}): give 0 (never) or a positive "
                             f"number of iterations")


@dataclass
class FailureConfig:
    """How often a failed trial is restarted (from its latest checkpoint) before it counts
    as errored; ``-1``: without limit. ``fail_fast``: stop the experiment at the first error."""

    max_failures: int = 0
    fail_fast: bool = False


@dataclass
class RunConfig:
    """Where the experiment lives (``storage_path/name``), when trials stop (``stop``: a
    dict of ``{metric: threshold}`` reached, or a ``(trial_id, result) -> bool`` function),
    and how checkpoints and failures are handled. ``verbose``: 0 silent, 1 status table,
    2 (default) and 3 also each trial's end."""

    name: str | None = None
    storage_path: str | None = None
    stop: dict[str, Any] | Callable[[str, dict], bool] | None = None
    checkpoint_config: CheckpointConfig | None = None
    failure_config: FailureConfig | None = None
    verbose: int | None = None
    callbacks: list[Any] | None = None
    log_to_file: bool = False
    storage_filesystem: Any = None
    sync_config: Any = None
    progress_reporter: Any = None
    _extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.stop is not None and not (isinstance(self.stop, dict) or callable(self.stop)):
            raise TypeError(f"RunConfig(stop={self.stop!r}): give a dict of "
                            f"{{metric: threshold}} or a function (trial_id, result) -> bool")
        ignored = [name for name in ("callbacks", "sync_config", "progress_reporter")
                   if getattr(self, name) is not None] + (["log_to_file"] if self.log_to_file
                                                          else [])
        if ignored:
            logger.warning("RunConfig(%s): sluice.tune accepts these for Ray Tune programs but "
                           "does not use them (progress comes from verbose=, trial output "
                           "from the runtime's worker logs)", ", ".join(ignored))
        if self.storage_filesystem is not None:
            raise ValueError("RunConfig(storage_filesystem=...) is not supported: sluice keeps "
                             "experiments on a local path (storage_path) and moves "
                             "checkpoints between nodes through its object store")

    def experiment_storage(self) -> str:
        """The storage path, expanded (``~/sluice_results`` by default)."""
        return os.path.abspath(os.path.expanduser(self.storage_path or DEFAULT_STORAGE_PATH))
