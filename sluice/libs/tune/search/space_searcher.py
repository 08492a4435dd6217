"""What the searchers over external packages (``OptunaSearch``, ``HyperOptSearch``) share:
taking the Tuner's param space as sampled parameters by ``"a/b"`` name, and filling a
config from the values a package suggests."""

from __future__ import annotations

import copy
import math
import numbers
from typing import Any

from sluice.libs.tune.search.searcher import Searcher
from sluice.libs.tune.search_space import Domain, Function, Path, unresolved


class SpaceSearcher(Searcher):
    """A searcher with a space of its own, or the Tuner's (``_set_space`` converts it)."""

    _own_space = False
    _template: dict[str, Any]
    _num_samples: int | None

    def set_search_properties(self, metric: str | None, mode: str | None,
                              config: dict[str, Any], **spec: Any) -> bool:
        """Take the Tuner's metric, mode and ``num_samples``, and its param space unless
        the searcher has one (then False when the Tuner's has sampled parameters too)."""
        if self._own_space:
            if any(True for _ in unresolved(config)):
                return False
            self._template = _merge(config, self._template)
        else:
            self._template = {}
            self._set_space(config)
        super().set_search_properties(metric, mode, config)
        num_samples = spec.get("num_samples")
        self._num_samples = None if num_samples in (None, -1) else int(num_samples)
        return True

    def _set_space(self, space: Any) -> None:
        raise NotImplementedError

    def _check_ready(self, has_space: bool) -> None:
        """Raise unless the searcher has a space, a metric and a mode."""
        who = type(self).__name__
        if not has_space:
            raise RuntimeError(f"{who} has no search space: give the Tuner a param_space "
                               f"with sampled parameters (tune.uniform, ...) or "
                               f"{who}(space=...)")
        if self._metric is None or self._mode is None:
            raise RuntimeError(f"{who} needs a metric and a mode (got metric="
                               f"{self._metric!r}, mode={self._mode!r}): give them to "
                               f"{who} or to TuneConfig(metric=..., mode=...)")


def _is_number(value: Any) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def _sampled(space: dict[str, Any], who: str) -> dict[str, tuple[Path, Domain]]:
    """The sampled parameters of a param space by ``"a/b"`` name: (path, domain); a clear
    ValueError for what a model-based searcher cannot take (grids, ``sample_from``)."""
    found = {}
    for path, value in unresolved(space):
        name = "/".join(map(str, path))
        if not isinstance(value, Domain):
            raise ValueError(f"{who} does not support grid_search (at {name!r}): use "
                             f"tune.choice([...]) for a searched choice, or the default "
                             f"search (no search_alg) for a grid")
        if isinstance(value, Function):
            raise ValueError(f"{who} does not support sample_from (at {name!r}): give a "
                             f"tune.uniform/loguniform/randint/choice domain, or use the "
                             f"default search (no search_alg)")
        found[name] = (path, value)
    return found


def _fill(template: dict[str, Any], paths: dict[str, Path],
          values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``template`` with each sampled value put at its path (a name not in
    ``paths``: its ``"a/b"`` parts, nested dicts made as needed)."""
    config = copy.deepcopy(template)
    for name, value in values.items():
        path = paths.get(name) or tuple(name.split("/"))
        node = config
        for key in path[:-1]:
            if isinstance(node, dict) and not isinstance(node.get(key), (dict, list)):
                node[key] = {}
            node = node[key]
        node[path[-1]] = value
    return config


def _flatten(point: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A (possibly nested) config by ``"a/b"`` names."""
    flat: dict[str, Any] = {}
    for key, value in point.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid over it, nested dicts merged."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
