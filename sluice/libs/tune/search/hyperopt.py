"""``HyperOptSearch``: Ray Tune's searcher over `HyperOpt <http://hyperopt.github.io/hyperopt>`_'s
Tree-structured Parzen Estimators (an extra: ``pip install 'sluice[tune]'``).

Each new trial is one ``hyperopt.tpe.suggest`` over hyperopt's ``Trials`` (random for the
first ``n_initial_points``); its end writes the trial's loss (the metric, negated for
``mode="max"``) back into them. The Tuner's param space (sluice domains, nested dicts
named by their ``"a/b"`` paths) becomes ``hp.*`` expressions; constants pass through to
every config. Importing this module does not import hyperopt: a ``HyperOptSearch`` does,
when it is made.
"""

from __future__ import annotations

import logging
import math
from functools import partial
from typing import Any

import numpy as np

from sluice.libs.tune.search.space_searcher import (
    SpaceSearcher,
    _fill,
    _flatten,
    _is_number,
    _merge,
    _sampled,
)
from sluice.libs.tune.search.searcher import Searcher
from sluice.libs.tune.search_space import Categorical, Domain, Float, Integer, Path, unresolved


def _import_hyperopt() -> Any:
    try:
        import hyperopt  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ImportError("HyperOptSearch needs the hyperopt package: pip install "
                          "'sluice[tune]' (or pip install hyperopt)") from exc
    logging.getLogger("hyperopt").setLevel(logging.WARNING)  # not a line per suggestion
    return hyperopt


def _identity(space: Any) -> Any:
    return space


class HyperOptSearch(SpaceSearcher):
    """Suggests configs with HyperOpt's TPE, as Ray Tune's ``HyperOptSearch``.

    ``space``: a search space of the searcher's own (then give the Tuner no sampled
    parameters): a dict of ``hyperopt.hp`` expressions, or of sluice domains. None: the
    Tuner's ``param_space`` is converted (``grid_search`` and ``sample_from`` are not
    supported there).
    ``points_to_evaluate``: configs tried first (each names every sampled parameter).
    ``n_initial_points``: random trials before TPE models the results (None: hyperopt's
    default). ``random_state_seed``: a seed for reproducible suggestions. ``gamma``: TPE's
    split of good and bad results. The search ends after ``num_samples`` trials
    (``TuneConfig(num_samples=...)``).
    """

    def __init__(self, space: dict[str, Any] | None = None, metric: str | None = None,
                 mode: str | None = None, points_to_evaluate: list[dict] | None = None,
                 n_initial_points: int | None = 20, random_state_seed: int | None = None,
                 gamma: float | None = 0.25):
        _import_hyperopt()
        super().__init__(metric, mode)
        self._n_initial_points = n_initial_points
        self._gamma = gamma
        self._rstate = np.random.RandomState(random_state_seed)
        self._points = [_flatten(p) for p in points_to_evaluate or []]
        self._own_space = bool(space)
        self._template: dict[str, Any] = {}  # the config a suggestion fills in
        self._paths: dict[str, Path] = {}  # where each sampled parameter sits in it
        self._categories: dict[str, list] = {}  # a choice's values (hyperopt picks an index)
        self._space: dict[str, Any] = {}  # the hyperopt space
        self._given_hp_space = False  # a space of hp expressions (its result is nested)
        if self._own_space:
            self._set_space(space)  # type: ignore[arg-type]
        self._num_samples: int | None = None  # None: no end
        self._domain: Any = None
        self._trials: Any = None  # hyperopt's Trials, made at the first suggestion
        self._live: dict[str, int] = {}  # trial_id -> hyperopt's tid
        self._resolved: dict[str, dict[str, Any]] = {}
        self._suggested = 0

    def _set_space(self, space: dict[str, Any]) -> None:
        self._domain = None
        if self._own_space and not any(True for _ in unresolved(space)):
            self._space, self._given_hp_space = dict(space), True
            return
        domains = _sampled(space, "HyperOptSearch")
        self._template = _merge(self._template, space)
        self._paths = {name: path for name, (path, _) in domains.items()}
        self._categories = {name: list(domain.categories) for name, (_, domain)
                            in domains.items() if isinstance(domain, Categorical)}
        self._space = {name: _to_hp(name, domain) for name, (_, domain) in domains.items()}

    def _ensure_trials(self) -> Any:
        if self._trials is not None:
            return self._trials
        self._check_ready(bool(self._space))
        _import_hyperopt()
        from hyperopt.fmin import generate_trials_to_calculate  # type: ignore[import-untyped]

        trials = generate_trials_to_calculate([self._hp_point(p) for p in self._points])
        trials.refresh()  # the points are trials 0..n-1, suggested first
        self._trials = trials
        return trials

    def _hp_point(self, point: dict[str, Any]) -> dict[str, Any]:
        """A point to evaluate as hyperopt's values: every parameter, a choice's index."""
        if self._given_hp_space:
            return dict(point)
        missing = sorted(set(self._paths) - set(point))
        if missing:
            raise ValueError(f"HyperOptSearch(points_to_evaluate=...): {point} lacks {missing}; "
                             f"each point must give every sampled parameter")
        values = {name: point[name] for name in self._paths}
        for name, categories in self._categories.items():
            if values[name] not in categories:
                raise ValueError(f"HyperOptSearch(points_to_evaluate=...): {values[name]!r} "
                                 f"is not one of {name!r}'s choices {categories}")
            values[name] = categories.index(values[name])
        return values

    def _hp_domain(self) -> Any:
        if self._domain is None:
            self._domain = _import_hyperopt().Domain(_identity, self._space)
        return self._domain

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """The next point to evaluate, else TPE's suggestion; FINISHED after ``num_samples``."""
        if self._num_samples is not None and self._suggested >= self._num_samples:
            return Searcher.FINISHED
        hpo = _import_hyperopt()
        trials, domain = self._ensure_trials(), self._hp_domain()
        if self._suggested < len(self._points):
            doc = self._doc(self._suggested)
        else:
            new_ids = trials.new_trial_ids(1)
            trials.refresh()
            algo = hpo.tpe.suggest
            if self._n_initial_points is not None:
                algo = partial(algo, n_startup_jobs=self._n_initial_points)
            if self._gamma is not None:
                algo = partial(algo, gamma=self._gamma)
            docs = algo(new_ids, domain, trials, self._rstate.randint(2**31 - 1))
            trials.insert_trial_docs(docs)
            trials.refresh()
            doc = self._doc(new_ids[0])
        # evaluate the space at the trial's values, as hyperopt.base.Domain.evaluate does
        ctrl = hpo.base.Ctrl(trials, current_trial=doc)
        memo = domain.memo_from_config(hpo.base.spec_from_misc(doc["misc"]))
        hpo.utils.use_obj_for_literal_in_memo(domain.expr, ctrl, hpo.base.Ctrl, memo)
        sampled = hpo.pyll.rec_eval(domain.expr, memo=memo, print_node_on_error=False)
        values = {name: _plain(value) for name, value in _flatten(sampled).items()}
        if self._paths:  # a converted space: its values in its order, choices by value
            values = {name: values[name] for name in self._paths}
        for name, categories in self._categories.items():
            values[name] = categories[values[name]]
        self._suggested += 1
        self._live[trial_id] = doc["tid"]
        self._resolved[trial_id] = values
        return _fill(self._template, self._paths, values)

    def _doc(self, tid: int) -> dict[str, Any]:
        return next(doc for doc in self._trials.trials if doc["tid"] == tid)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        """Write the trial's loss into hyperopt's trials (an error: the trial is dropped;
        no metric: a failed trial TPE does not learn from)."""
        tid = self._live.pop(trial_id, None)
        if tid is None:
            return
        hpo = _import_hyperopt()
        doc = self._doc(tid)
        doc["refresh_time"] = hpo.utils.coarse_utcnow()
        value: Any = (result or {}).get(self._metric) if self._metric is not None else None
        if error:
            doc["state"] = hpo.base.JOB_STATE_ERROR
            doc["misc"]["error"] = ("TrialError", "the trial failed")
        elif not _is_number(value):
            doc["state"] = hpo.base.JOB_STATE_DONE
            doc["result"] = {"status": hpo.STATUS_FAIL}
        else:
            sign = -1.0 if self._mode == "max" else 1.0  # hyperopt minimizes
            doc["state"] = hpo.base.JOB_STATE_DONE
            doc["result"] = {"loss": sign * float(value), "status": hpo.STATUS_OK}
        self._trials.refresh()

    def resolved_values(self, trial_id: str) -> dict[str, Any] | None:
        return self._resolved.get(trial_id)

    @property
    def trials(self) -> Any:
        """HyperOpt's ``Trials`` (None until the first suggestion)."""
        return self._trials

    def get_state(self) -> dict[str, Any]:
        return {"trials": self._trials, "rstate": self._rstate.get_state(),
                "live": dict(self._live), "resolved": dict(self._resolved),
                "suggested": self._suggested}

    def set_state(self, state: dict[str, Any]) -> None:
        self._trials, self._live = state["trials"], dict(state["live"])
        self._rstate.set_state(state["rstate"])
        self._resolved, self._suggested = dict(state["resolved"]), state["suggested"]

    def describe(self) -> str:
        total = "no limit" if self._num_samples is None else self._num_samples
        return (f"HyperOptSearch (TPE after {self._n_initial_points} random trials, "
                f"{total} trials)")


def _to_hp(name: str, domain: Domain) -> Any:
    """The ``hyperopt.hp`` expression of a sluice domain (as Ray Tune converts them)."""
    hpo = _import_hyperopt()
    hp, to_int = hpo.hp, hpo.pyll.scope.int
    if isinstance(domain, Float):
        q = domain.q
        if domain.kind == "normal":
            return hp.qnormal(name, domain.mean, domain.sd, q) if q else hp.normal(
                name, domain.mean, domain.sd)
        if domain.kind == "loguniform":
            low, high = math.log(domain.lower), math.log(domain.upper)  # type: ignore[arg-type]
            return hp.qloguniform(name, low, high, q) if q else hp.loguniform(name, low, high)
        return (hp.quniform(name, domain.lower, domain.upper, q) if q
                else hp.uniform(name, domain.lower, domain.upper))
    if isinstance(domain, Integer):
        # sluice's randint excludes the upper bound; with q (qrandint) it includes it
        if domain.kind == "loguniform":
            if domain.q is not None:
                return to_int(hp.qloguniform(name, math.log(domain.lower),
                                             math.log(domain.upper), domain.q))
            return to_int(hp.qloguniform(name, math.log(domain.lower),
                                         math.log(domain.upper - 1), 1))
        if domain.q is not None:
            return to_int(hp.quniform(name, domain.lower, domain.upper, domain.q))
        return hp.uniformint(name, domain.lower, domain.upper - 1)
    if isinstance(domain, Categorical):
        return hp.choice(name, list(range(len(domain.categories))))  # an index: see suggest
    raise ValueError(f"HyperOptSearch does not support {domain!r} at {name!r}")


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number (configs and tags hold plain values)."""
    return value.item() if isinstance(value, np.generic) else value


__all__ = ["HyperOptSearch"]
