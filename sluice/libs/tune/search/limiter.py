"""``ConcurrencyLimiter`` and ``Repeater``: wrappers around another searcher (Ray Tune's)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sluice.libs.tune.search.searcher import Searcher


class ConcurrencyLimiter(Searcher):
    """At most ``max_concurrent`` trials of ``searcher`` run at once; ``batch=True``: a new
    batch of ``max_concurrent`` starts only once the whole last batch ended."""

    def __init__(self, searcher: Searcher, max_concurrent: int, batch: bool = False):
        if max_concurrent < 1:
            raise ValueError(f"ConcurrencyLimiter(max_concurrent={max_concurrent}): give at "
                             f"least 1")
        super().__init__(searcher.metric, searcher.mode)
        self.searcher = searcher
        self.max_concurrent = max_concurrent
        self.batch = batch
        self.live: set[str] = set()
        self.cached: list[tuple[str, dict | None, bool]] = []  # a batch's endings, held

    def set_search_properties(self, metric: str | None, mode: str | None,
                              config: dict[str, Any], **spec: Any) -> bool:
        super().set_search_properties(metric, mode, config)
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if len(self.live) >= self.max_concurrent:
            return None
        suggestion = self.searcher.suggest(trial_id)
        if isinstance(suggestion, dict):
            self.live.add(trial_id)
        return suggestion

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        if trial_id not in self.live:
            return
        if not self.batch:
            self.live.discard(trial_id)
            self.searcher.on_trial_complete(trial_id, result, error)
            return
        self.cached.append((trial_id, result, error))
        if len(self.cached) == len(self.live):
            for cached_id, cached_result, cached_error in self.cached:
                self.searcher.on_trial_complete(cached_id, cached_result, cached_error)
            self.live.clear()
            self.cached.clear()

    def resolved_values(self, trial_id: str) -> dict[str, Any] | None:
        return self.searcher.resolved_values(trial_id)

    def get_state(self) -> dict[str, Any]:
        return {"live": set(self.live), "cached": list(self.cached),
                "searcher": self.searcher.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.live, self.cached = set(state["live"]), list(state["cached"])
        self.searcher.set_state(state["searcher"])

    def describe(self) -> str:
        return (f"ConcurrencyLimiter({self.searcher.describe()}, "
                f"max_concurrent={self.max_concurrent})")


class Repeater(Searcher):
    """Runs each config of ``searcher`` ``repeat`` times; the searcher learns the mean of
    their final metric. ``set_index``: each trial's config gets ``__trial_index__``."""

    def __init__(self, searcher: Searcher, repeat: int = 1, set_index: bool = True):
        if repeat < 1:
            raise ValueError(f"Repeater(repeat={repeat}): give at least 1")
        super().__init__(searcher.metric, searcher.mode)
        self.searcher = searcher
        self.repeat = repeat
        self.set_index = set_index
        self._current: tuple[str, dict] | None = None  # (group id, config) being repeated
        self._given = 0
        self._groups: dict[str, list[float | None]] = {}
        self._group_of: dict[str, str] = {}

    def set_search_properties(self, metric: str | None, mode: str | None,
                              config: dict[str, Any], **spec: Any) -> bool:
        super().set_search_properties(metric, mode, config)
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self._current is None or self._given >= self.repeat:
            config = self.searcher.suggest(trial_id)
            if not isinstance(config, dict):
                return config
            self._current, self._given = (trial_id, config), 0
            self._groups[trial_id] = []
        group, config = self._current
        config = dict(config)
        if self.set_index:
            config["__trial_index__"] = self._given
        self._given += 1
        self._group_of[trial_id] = group
        return config

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        group = self._group_of.pop(trial_id, None)
        if group is None:
            return
        scores = self._groups[group]
        metric = self._metric or ""
        scores.append(None if error or not result else result.get(metric))
        if len(scores) == self.repeat:
            del self._groups[group]
            values = [s for s in scores if s is not None]
            if not values:
                self.searcher.on_trial_complete(group, None, error=True)
            else:
                self.searcher.on_trial_complete(group, {metric: float(np.mean(values))})

    def describe(self) -> str:
        return f"Repeater({self.searcher.describe()}, repeat={self.repeat})"
