"""``OptunaSearch``: Ray Tune's searcher over `Optuna <https://optuna.org>`_ (an extra:
``pip install 'sluice[tune]'``).

Optuna runs ask-and-tell: each new trial is ``study.ask(distributions)``, its end is
``study.tell(trial, value)`` (an error: told as FAIL). The Tuner's param space (sluice
domains, nested dicts named by their ``"a/b"`` paths) becomes Optuna distributions;
constants pass through to every config. Importing this module does not import optuna:
an ``OptunaSearch`` does, when it is made.

What it shares with ``HyperOptSearch`` (taking the Tuner's space, filling configs) is in
:mod:`sluice.libs.tune.search.space_searcher`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sluice.libs.tune.search.searcher import Searcher
from sluice.libs.tune.search.space_searcher import (
    SpaceSearcher,
    _fill,
    _flatten,
    _is_number,
    _merge,
    _sampled,
)
from sluice.libs.tune.search_space import (
    Categorical,
    Domain,
    Float,
    Integer,
    Path,
)

logger = logging.getLogger(__name__)


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise ImportError("OptunaSearch needs the optuna package: pip install 'sluice[tune]' "
                          "(or pip install optuna)") from exc
    return optuna


class OptunaSearch(SpaceSearcher):
    """Suggests configs with an Optuna study (TPE by default), as Ray Tune's ``OptunaSearch``.

    ``space``: the search space of the searcher's own (then give the Tuner no sampled
    parameters): a dict of Optuna distributions by ``"a/b"`` name, a dict of sluice domains,
    or a define-by-run function ``space(optuna_trial) -> dict of constants | None`` that
    calls ``optuna_trial.suggest_*``. None: the Tuner's ``param_space`` is converted
    (``grid_search`` and ``sample_from`` are not supported there).
    ``points_to_evaluate``: configs tried first (enqueued in the study), or, with
    ``evaluated_rewards`` (one per point), configs already scored that the study learns from.
    ``sampler``: an ``optuna.samplers.BaseSampler``; default ``TPESampler(seed=seed)``.
    The search ends after ``num_samples`` trials (``TuneConfig(num_samples=...)``).
    """

    def __init__(self, space: dict[str, Any] | Callable[[Any], dict | None] | None = None,
                 metric: str | None = None, mode: str | None = None,
                 points_to_evaluate: list[dict] | None = None, sampler: Any = None,
                 seed: int | None = None, evaluated_rewards: list[float] | None = None):
        optuna = _import_optuna()
        super().__init__(metric, mode)
        if sampler is not None and not isinstance(sampler, optuna.samplers.BaseSampler):
            raise TypeError(f"OptunaSearch(sampler={sampler!r}): give an optuna sampler, e.g. "
                            f"optuna.samplers.TPESampler(seed=0)")
        if sampler is not None and seed is not None:
            logger.warning("OptunaSearch: seed=%s is ignored with a sampler given; pass the "
                           "seed to the sampler", seed)
        if evaluated_rewards is not None and (
                points_to_evaluate is None or len(evaluated_rewards) != len(points_to_evaluate)):
            raise ValueError("OptunaSearch(evaluated_rewards=...): give one reward per point of "
                             "points_to_evaluate")
        self._sampler = sampler if sampler is not None else optuna.samplers.TPESampler(seed=seed)
        self._points = [_flatten(p) for p in points_to_evaluate or []]
        self._rewards = list(evaluated_rewards) if evaluated_rewards is not None else None
        self._own_space = space is not None and (callable(space) or bool(space))
        self._template: dict[str, Any] = {}  # the config a suggestion fills in
        self._paths: dict[str, Path] = {}  # where each sampled parameter sits in it
        self._space: dict[str, Any] | Callable[[Any], Any] = {}  # name -> distribution
        if self._own_space:
            self._set_space(space)  # type: ignore[arg-type]
        self._num_samples: int | None = None  # None: no end
        self._study: Any = None  # made at the first suggestion (it needs the mode)
        self._trials: dict[str, Any] = {}  # trial_id -> live optuna trial
        self._resolved: dict[str, dict[str, Any]] = {}
        self._suggested = 0

    def _set_space(self, space: dict[str, Any] | Callable[[Any], Any]) -> None:
        optuna = _import_optuna()
        if callable(space):
            self._space = space
            return
        if all(isinstance(v, optuna.distributions.BaseDistribution) for v in space.values()):
            self._space = dict(space)
            return
        domains = _sampled(space, "OptunaSearch")
        self._template = _merge(self._template, space)
        self._paths = {name: path for name, (path, _) in domains.items()}
        self._space = {name: _to_distribution(name, domain)
                       for name, (_, domain) in domains.items()}

    def _ensure_study(self) -> Any:
        if self._study is not None:
            return self._study
        self._check_ready(bool(self._space))
        optuna = _import_optuna()
        direction = "maximize" if self._mode == "max" else "minimize"
        self._study = optuna.create_study(direction=direction, sampler=self._sampler)
        if self._rewards is not None:
            for point, reward in zip(self._points, self._rewards):
                self.add_evaluated_point(point, reward)
        else:
            for point in self._points:
                self._study.enqueue_trial(point)
        return self._study

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """Ask the study for a new trial's parameters; FINISHED after ``num_samples``."""
        if self._num_samples is not None and self._suggested >= self._num_samples:
            return Searcher.FINISHED
        study = self._ensure_study()
        if callable(self._space):
            ot_trial = study.ask()
            constants = self._space(ot_trial)
            if constants is not None and not isinstance(constants, dict):
                raise TypeError(f"OptunaSearch: the define-by-run space returned "
                                f"{type(constants).__name__}; it must return None or a dict "
                                f"of constants")
            values = {**ot_trial.params, **(constants or {})}
        else:
            ot_trial = study.ask(fixed_distributions=self._space)
            values = dict(ot_trial.params)
        self._suggested += 1
        self._trials[trial_id] = ot_trial
        self._resolved[trial_id] = values
        return _fill(self._template, self._paths, values)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Report the metric to the study as an intermediate value (for Optuna's pruners)."""
        ot_trial = self._trials.get(trial_id)
        value: Any = result.get(self._metric) if self._metric is not None else None
        if ot_trial is None or not _is_number(value):
            return
        ot_trial.report(float(value), int(result.get("training_iteration", 0)))

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        """Tell the study the trial's final metric (an error: FAIL; no metric: PRUNED)."""
        ot_trial = self._trials.pop(trial_id, None)
        if ot_trial is None:
            return
        state = _import_optuna().trial.TrialState
        value: Any = (result or {}).get(self._metric) if self._metric is not None else None
        if error:
            self._study.tell(ot_trial, state=state.FAIL)
        elif not _is_number(value):
            self._study.tell(ot_trial, state=state.PRUNED)
        else:
            self._study.tell(ot_trial, float(value))

    def add_evaluated_point(self, parameters: dict[str, Any], value: float,
                            error: bool = False, pruned: bool = False,
                            intermediate_values: list[float] | None = None) -> None:
        """Add a config scored elsewhere (``parameters`` by name or nested) to the study."""
        if callable(self._space):
            raise TypeError("OptunaSearch: evaluated points need a space of distributions, "
                            "not a define-by-run function")
        study = self._ensure_study()
        params = _flatten(parameters)
        unknown = sorted(set(params) - set(self._space))
        if unknown:
            raise ValueError(f"OptunaSearch.add_evaluated_point: {unknown} are not parameters "
                             f"of the search space ({sorted(self._space)})")
        optuna = _import_optuna()
        state = optuna.trial.TrialState
        trial = optuna.trial.create_trial(
            state=state.FAIL if error else state.PRUNED if pruned else state.COMPLETE,
            value=None if error or pruned else float(value), params=params,
            distributions={name: self._space[name] for name in params},
            intermediate_values=dict(enumerate(intermediate_values or [])) or None)
        study.add_trial(trial)

    def resolved_values(self, trial_id: str) -> dict[str, Any] | None:
        return self._resolved.get(trial_id)

    @property
    def study(self) -> Any:
        """The Optuna study (None until the first suggestion)."""
        return self._study

    def get_state(self) -> dict[str, Any]:
        return {"study": self._study, "trials": dict(self._trials),
                "resolved": dict(self._resolved), "suggested": self._suggested}

    def set_state(self, state: dict[str, Any]) -> None:
        self._study, self._trials = state["study"], dict(state["trials"])
        self._resolved, self._suggested = dict(state["resolved"]), state["suggested"]
        if self._study is not None:
            self._sampler = self._study.sampler

    def describe(self) -> str:
        total = "no limit" if self._num_samples is None else self._num_samples
        return f"OptunaSearch ({type(self._sampler).__name__}, {total} trials)"


def _to_distribution(name: str, domain: Domain) -> Any:
    """The Optuna distribution of a sluice domain (as Ray Tune converts them)."""
    distributions = _import_optuna().distributions
    if isinstance(domain, Float):
        if domain.kind == "normal":
            raise ValueError(f"OptunaSearch does not support normal distributions (randn, "
                             f"qrandn) at {name!r}: use tune.uniform or tune.loguniform")
        if domain.kind == "loguniform":
            if domain.q is not None:
                logger.warning("OptunaSearch: %r: optuna cannot quantize a log-uniform float; "
                               "q=%s is dropped", name, domain.q)
            return distributions.FloatDistribution(domain.lower, domain.upper, log=True)
        return distributions.FloatDistribution(domain.lower, domain.upper, step=domain.q)
    if isinstance(domain, Integer):
        # sluice's randint excludes the upper bound; with q (qrandint) it includes it
        upper = domain.upper if domain.q is not None else domain.upper - 1
        if domain.kind == "loguniform":
            if domain.q not in (None, 1):
                logger.warning("OptunaSearch: %r: optuna cannot quantize a log-uniform int; "
                               "q=%s is dropped", name, domain.q)
            return distributions.IntDistribution(domain.lower, upper, log=True)
        return distributions.IntDistribution(domain.lower, upper, step=domain.q or 1)
    if isinstance(domain, Categorical):
        return distributions.CategoricalDistribution(domain.categories)
    raise ValueError(f"OptunaSearch does not support {domain!r} at {name!r}")


__all__ = ["OptunaSearch"]
