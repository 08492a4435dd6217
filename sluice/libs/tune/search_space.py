"""Search spaces: Ray Tune's sampling functions and the variant generation over them.

A param space is a dict (nested dicts allowed) whose leaves are constants, a
:class:`Domain` (``uniform``, ``choice``, ... each sampled per trial) or a grid
(``grid_search([...])``, every value tried). :func:`generate_variants` yields the resolved
configs as Ray Tune does: each repeat of ``num_samples`` walks the whole grid (its first
variable changing fastest) and samples every domain anew for each grid point.

>>> import random
>>> space = {"lr": loguniform(1e-4, 1e-1), "layers": grid_search([1, 2]), "opt": "adam"}
>>> configs = [c for _, c in generate_variants(space, num_samples=2, rng=random.Random(0))]
>>> [(c["layers"], c["opt"]) for c in configs]
[(1, 'adam'), (2, 'adam'), (1, 'adam'), (2, 'adam')]
>>> all(1e-4 <= c["lr"] < 1e-1 for c in configs)
True
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

Path = tuple[Any, ...]
"""Where a value sits in a nested param space: its keys from the top."""


class Domain:
    """A value sampled per trial. ``sample(rng, spec)`` draws one; ``spec`` is the config
    resolved so far (what a :func:`sample_from` function reads)."""

    def sample(self, rng: random.Random, spec: Any = None) -> Any:
        raise NotImplementedError

    def is_grid(self) -> bool:
        return False


class Float(Domain):
    """A float in ``[lower, upper)``: uniform, log-uniform (``base``) or normal, optionally
    rounded to a multiple of ``q``."""

    def __init__(self, lower: float | None, upper: float | None, kind: str = "uniform", *,
                 base: float = 10, mean: float = 0.0, sd: float = 1.0, q: float | None = None):
        if kind != "normal":
            _check_bounds(lower, upper, kind)
            if kind == "loguniform" and lower <= 0:  # type: ignore[operator]
                raise ValueError(f"loguniform needs a lower bound above 0, got {lower}; "
                                 f"use uniform for ranges that include 0")
        if q is not None and q <= 0:
            raise ValueError(f"q={q} must be above 0 (the step values are rounded to)")
        self.lower, self.upper, self.kind = lower, upper, kind
        self.base, self.mean, self.sd, self.q = base, mean, sd, q

    def sample(self, rng: random.Random, spec: Any = None) -> float:
        if self.kind == "normal":
            value = rng.gauss(self.mean, self.sd)
        elif self.kind == "loguniform":
            log = math.log(self.base)
            value = self.base ** rng.uniform(math.log(self.lower) / log,  # type: ignore[arg-type]
                                            math.log(self.upper) / log)  # type: ignore[arg-type]
        else:
            value = rng.uniform(self.lower, self.upper)  # type: ignore[arg-type]
        if self.q is not None:
            value = round(value / self.q) * self.q
        return value

    def __repr__(self) -> str:
        quantized = f", q={self.q}" if self.q is not None else ""
        if self.kind == "normal":
            return f"randn(mean={self.mean}, sd={self.sd}{quantized})"
        return f"{self.kind}({self.lower}, {self.upper}{quantized})"


class Integer(Domain):
    """An int in ``[lower, upper)`` (``q`` given: ``[lower, upper]``, as Ray's ``qrandint``),
    uniform or log-uniform."""

    def __init__(self, lower: int, upper: int, kind: str = "uniform", *, base: float = 10,
                 q: int | None = None):
        _check_bounds(lower, upper, kind)
        if kind == "loguniform" and lower <= 0:
            raise ValueError(f"lograndint needs a lower bound above 0, got {lower}")
        if q is not None and q <= 0:
            raise ValueError(f"q={q} must be above 0 (the step values are rounded to)")
        self.lower, self.upper, self.kind, self.base, self.q = lower, upper, kind, base, q

    def sample(self, rng: random.Random, spec: Any = None) -> int:
        upper = self.upper + 1 if self.q is not None else self.upper  # q*: upper inclusive
        if self.kind == "loguniform":
            log = math.log(self.base)
            value = int(self.base ** rng.uniform(math.log(self.lower) / log,
                                                 math.log(upper) / log))
            value = min(max(value, self.lower), upper - 1)
        else:
            value = rng.randrange(self.lower, upper)
        if self.q is not None:
            value = int(round(value / self.q) * self.q)
        return value

    def __repr__(self) -> str:
        quantized = f", q={self.q}" if self.q is not None else ""
        return f"randint[{self.kind}]({self.lower}, {self.upper}{quantized})"


class Categorical(Domain):
    """One of ``categories``, each equally likely."""

    def __init__(self, categories: Sequence[Any]):
        categories = list(categories)
        if not categories:
            raise ValueError("choice() needs at least one category, got an empty list")
        self.categories = categories

    def sample(self, rng: random.Random, spec: Any = None) -> Any:
        return self.categories[rng.randrange(len(self.categories))]

    def __repr__(self) -> str:
        return f"choice({self.categories!r})"


class Function(Domain):
    """``func(spec)``: a value computed from the config resolved so far (``spec.config.x``
    or ``spec["config"]["x"]``, as in Ray), or ``func()`` for a function of no argument."""

    def __init__(self, func: Callable[..., Any]):
        if not callable(func):
            raise TypeError(f"sample_from() needs a function, got {func!r}")
        self.func = func

    def sample(self, rng: random.Random, spec: Any = None) -> Any:
        try:
            return self.func(spec)
        except TypeError as exc:
            if "positional argument" not in str(exc):
                raise
            return self.func()

    def __repr__(self) -> str:
        return f"sample_from({getattr(self.func, '__name__', self.func)!r})"


class _Spec(dict):
    """The resolved-so-far spec a ``sample_from`` function gets: ``spec.config.lr`` and
    ``spec["config"]["lr"]`` both read it."""

    def __getattr__(self, name: str) -> Any:
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        return _Spec(value) if isinstance(value, dict) else value


def _check_bounds(lower: Any, upper: Any, kind: str) -> None:
    if lower is None or upper is None or not lower < upper:
        raise ValueError(f"a {kind} range needs lower < upper, got lower={lower}, "
                         f"upper={upper}")


# --- Ray Tune's sampling functions -----------------------------------------------------------

def uniform(lower: float, upper: float) -> Float:
    """A float sampled uniformly in ``[lower, upper)``."""
    return Float(lower, upper)


def quniform(lower: float, upper: float, q: float) -> Float:
    """``uniform(lower, upper)`` rounded to a multiple of ``q``."""
    return Float(lower, upper, q=q)


def loguniform(lower: float, upper: float, base: float = 10) -> Float:
    """A float whose logarithm is uniform in ``[log(lower), log(upper))``."""
    return Float(lower, upper, "loguniform", base=base)


def qloguniform(lower: float, upper: float, q: float, base: float = 10) -> Float:
    """``loguniform(lower, upper, base)`` rounded to a multiple of ``q``."""
    return Float(lower, upper, "loguniform", base=base, q=q)


def randn(mean: float = 0.0, sd: float = 1.0) -> Float:
    """A float from a normal distribution."""
    return Float(None, None, "normal", mean=mean, sd=sd)


def qrandn(mean: float, sd: float, q: float) -> Float:
    """``randn(mean, sd)`` rounded to a multiple of ``q``."""
    return Float(None, None, "normal", mean=mean, sd=sd, q=q)


def randint(lower: int, upper: int) -> Integer:
    """An int in ``[lower, upper)``."""
    return Integer(lower, upper)


def qrandint(lower: int, upper: int, q: int = 1) -> Integer:
    """An int in ``[lower, upper]`` (upper included, as in Ray) rounded to a multiple of ``q``."""
    return Integer(lower, upper, q=q)


def lograndint(lower: int, upper: int, base: float = 10) -> Integer:
    """An int in ``[lower, upper)`` whose logarithm is uniform."""
    return Integer(lower, upper, "loguniform", base=base)


def qlograndint(lower: int, upper: int, q: int, base: float = 10) -> Integer:
    """``lograndint`` with upper included, rounded to a multiple of ``q``."""
    return Integer(lower, upper, "loguniform", base=base, q=q)


def choice(categories: Sequence[Any]) -> Categorical:
    """One of ``categories``, sampled uniformly."""
    return Categorical(categories)


def sample_from(func: Callable[..., Any]) -> Function:
    """A value computed per trial by ``func(spec)`` (``spec.config`` is the config so far)."""
    return Function(func)


def grid_search(values: Sequence[Any]) -> dict[str, list[Any]]:
    """Try every one of ``values`` (with ``num_samples`` > 1, every one that many times)."""
    values = list(values)
    if not values:
        raise ValueError("grid_search() needs at least one value, got an empty list")
    return {"grid_search": values}


# --- variant generation ----------------------------------------------------------------------

def _is_grid(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "grid_search" in value


def unresolved(space: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """(path, value) of every grid and :class:`Domain` in ``space``, in its key order."""
    if _is_grid(space) or isinstance(space, Domain):
        yield path, space
    elif isinstance(space, dict):
        for key, value in space.items():
            yield from unresolved(value, (*path, key))
    elif isinstance(space, (list, tuple)):
        for index, value in enumerate(space):
            yield from unresolved(value, (*path, index))


def _assign(spec: Any, path: Path, value: Any) -> None:
    for key in path[:-1]:
        spec = spec[key]
    spec[path[-1]] = value


def count_variants(space: dict, num_samples: int) -> int:
    """How many configs ``num_samples`` repeats of ``space`` make."""
    grids = [len(v["grid_search"]) for _, v in unresolved(space) if _is_grid(v)]
    return num_samples * math.prod(grids)


def generate_variants(space: dict, num_samples: int = 1, rng: random.Random | None = None
                      ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(resolved values by ``"a/b"`` path, the config) for each trial of ``space``.

    ``num_samples`` repeats the whole grid; every :class:`Domain` is sampled per config
    (``sample_from`` functions last, so they read the values sampled before them).
    """
    if not isinstance(space, dict):
        raise TypeError(f"param_space must be a dict of parameters, got {type(space).__name__}; "
                        f"e.g. {{'lr': tune.loguniform(1e-4, 1e-1)}}")
    rng = rng or random.Random()
    leaves = list(unresolved(space))
    grids = [(path, value["grid_search"]) for path, value in leaves if _is_grid(value)]
    domains = [(path, value) for path, value in leaves if isinstance(value, Domain)]
    domains.sort(key=lambda item: isinstance(item[1], Function))  # functions last
    # each config is a deep copy of the space but for its leaves to be replaced (a memo
    # naming them as their own copies): copying a domain object costs more than the rest
    replaced = {id(value): value for _, value in leaves if _is_grid(value)
                or isinstance(value, Domain)}
    for _ in range(num_samples):
        # the first grid variable changes fastest, as in Ray Tune
        for point in itertools.product(*(values for _, values in reversed(grids))):
            spec = copy.deepcopy(space, dict(replaced))
            resolved: dict[str, Any] = {}
            for (path, _), value in zip(reversed(grids), point):
                _assign(spec, path, value)
                resolved["/".join(map(str, path))] = value
            for path, domain in domains:
                value = domain.sample(rng, _Spec(config=spec))
                _assign(spec, path, value)
                resolved["/".join(map(str, path))] = value
            yield resolved, spec


def format_vars(resolved: dict[str, Any]) -> str:
    """A trial's experiment tag from its resolved values: ``lr=0.0010,layers=2``.

    >>> format_vars({"lr": 0.001234, "model/layers": 2})
    'lr=0.0012,layers=2'
    """
    def short(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) >= 1e-4 or value == 0 else f"{value:.4g}"
        return str(value)
    return ",".join(f"{path.rsplit('/', 1)[-1]}={short(value)}" for path, value in resolved.items())
