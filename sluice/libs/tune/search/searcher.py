"""The search-algorithm interface (Ray Tune's ``Searcher``).

The controller asks ``suggest(trial_id)`` for each new trial's config (None: not now,
:data:`Searcher.FINISHED`: no more), and reports every result and every trial's end.
"""

from __future__ import annotations

import pickle
from typing import Any

from sluice.libs.tune.config import MetricMode


class Searcher(MetricMode):
    """Suggests configs and learns from their results; subclass for a custom search."""

    FINISHED = "FINISHED"

    def set_search_properties(self, metric: str | None, mode: str | None,
                              config: dict[str, Any], **spec: Any) -> bool:
        """Take the experiment's metric, mode and param space where the searcher has none
        (False: it was given a space of its own and cannot take this one)."""
        if self._metric is None and metric is not None:
            self._metric = metric
        if self._mode is None and mode is not None:
            self._mode = mode
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """The config of new trial ``trial_id``; None: none now (ask again later);
        ``Searcher.FINISHED``: the search is over."""
        raise NotImplementedError(f"{type(self).__name__} must define suggest(trial_id)")

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """A trial reported an intermediate result."""

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        """A trial ended with ``result`` (its last), or with an error."""

    def add_evaluated_point(self, parameters: dict[str, Any], value: float,
                            error: bool = False, pruned: bool = False,
                            intermediate_values: list[float] | None = None) -> None:
        """Tell the searcher a config it did not suggest and its score (when it can use it)."""
        raise NotImplementedError(f"{type(self).__name__} does not take evaluated points")

    def get_state(self) -> dict[str, Any]:
        """What restores this searcher after a driver crash (picklable)."""
        return dict(self.__dict__)

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        """Write the searcher's state to a file."""
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        """Read the state :meth:`save` wrote."""
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))

    def describe(self) -> str:
        """The searcher, for ``Tuner.explain()``."""
        return type(self).__name__

    def resolved_values(self, trial_id: str) -> dict[str, Any] | None:
        """The sampled values of trial ``trial_id`` by path (its experiment tag), if known."""
        return None
