"""``BasicVariantGenerator``: the default search, grid and random sampling of the param
space (see :mod:`sluice.libs.tune.search_space`), with Ray Tune's options."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

from sluice.libs.tune.search.searcher import Searcher
from sluice.libs.tune.search_space import count_variants, generate_variants, unresolved


class BasicVariantGenerator(Searcher):
    """Every grid point ``num_samples`` times, each domain sampled per trial.

    ``points_to_evaluate``: configs (partial ones are completed from the space) tried first.
    ``max_concurrent``: at most this many of its trials running (0: no limit).
    ``random_state``: a seed (or ``random.Random``) for reproducible sampling.
    ``constant_grid_search``: sample the random domains once and reuse them across the grid.
    """

    def __init__(self, points_to_evaluate: list[dict] | None = None, max_concurrent: int = 0,
                 constant_grid_search: bool = False, random_state: Any = None):
        super().__init__()
        self.points_to_evaluate = [dict(p) for p in points_to_evaluate or []]
        self.max_concurrent = max_concurrent
        self.constant_grid_search = constant_grid_search
        if isinstance(random_state, random.Random):
            random_state = random_state.randrange(1 << 63)
        # a seed, kept: a restored search replays the same variants from it
        self._seed = random.randrange(1 << 63) if random_state is None else random_state
        self._rng = random.Random(self._seed)
        self._space: dict[str, Any] = {}
        self._num_samples = 1
        self._variants: Iterator[tuple[dict, dict]] | None = None
        self._emitted = 0
        self._live: set[str] = set()
        self._resolved: dict[str, dict[str, Any]] = {}
        self.total_samples = 0

    def set_search_properties(self, metric: str | None, mode: str | None,
                              config: dict[str, Any], **spec: Any) -> bool:
        super().set_search_properties(metric, mode, config)
        self._space = config
        self._num_samples = int(spec.get("num_samples", 1))
        if self._num_samples == -1:
            self._num_samples = 1 << 62  # as many as time allows
        grid_points = count_variants(config, 1)
        self.total_samples = len(self.points_to_evaluate) + grid_points * self._num_samples
        return True

    def _generate(self) -> Iterator[tuple[dict, dict]]:
        for point in self.points_to_evaluate:
            space = copy.deepcopy(self._space)
            _overlay(space, point)
            yield from generate_variants(space, 1, self._rng)
        if self.constant_grid_search:
            first = next(generate_variants(self._space, 1, self._rng), None)
            fixed = {path: value for path, value in unresolved(self._space)
                     if not (isinstance(value, dict) and "grid_search" in value)}
            for _ in range(self._num_samples):
                for resolved, config in generate_variants(self._space, 1, self._rng):
                    for path in fixed:
                        key = "/".join(map(str, path))
                        if first is not None and key in first[0]:
                            resolved[key] = first[0][key]
                            _set(config, path, first[0][key])
                    yield resolved, config
            return
        yield from generate_variants(self._space, self._num_samples, self._rng)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.max_concurrent and len(self._live) >= self.max_concurrent:
            return None
        if self._variants is None:
            self._variants = self._generate()
        found = next(self._variants, None)
        if found is None:
            return Searcher.FINISHED
        resolved, config = found
        self._emitted += 1
        self._live.add(trial_id)
        self._resolved[trial_id] = resolved
        return config

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        self._live.discard(trial_id)

    def resolved_values(self, trial_id: str) -> dict[str, Any] | None:
        return self._resolved.get(trial_id)

    def get_state(self) -> dict[str, Any]:
        # small on purpose (saved as trials start and end): the space comes from the Tuner
        # again on restore, the tags are in the trials' rows, the variants follow the seed
        return {"seed": self._seed, "emitted": self._emitted, "live": set(self._live)}

    def set_state(self, state: dict[str, Any]) -> None:
        self._seed, self._emitted, self._live = state["seed"], state["emitted"], set(state["live"])
        self._rng = random.Random(self._seed)
        self._resolved = {}
        self._variants = self._generate()
        for _ in range(self._emitted):  # those handed out before
            next(self._variants, None)

    def describe(self) -> str:
        return f"BasicVariantGenerator ({self.total_samples} trials: grid x num_samples)"


def _overlay(space: dict, point: dict) -> None:
    for key, value in point.items():
        if isinstance(value, dict) and isinstance(space.get(key), dict) and (
                "grid_search" not in space[key]):
            _overlay(space[key], value)
        elif "/" in key:
            _set(space, tuple(key.split("/")), value)
        else:
            space[key] = value


def _set(spec: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        spec = spec.setdefault(key, {})
    spec[path[-1]] = value
