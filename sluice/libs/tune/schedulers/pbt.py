"""``PopulationBasedTraining``: trials learn from each other while they train.

Every ``perturbation_interval`` (in ``time_attr``), a trial in the bottom
``quantile_fraction`` of the population by its latest score *exploits* one from the top:
it is paused, takes a copy of that trial's checkpoint and its config, *explored*
(each of ``hyperparam_mutations`` resampled with ``resample_probability``, otherwise a
number multiplied by one of ``perturbation_factors`` or a list value moved to a
neighbour), and resumes from there. Trials in the top quantile are checkpointed at each
interval so there is something recent to copy. Ray Tune's algorithm, names and defaults.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable
from typing import Any

from sluice.libs.tune.schedulers.trial_scheduler import FIFOScheduler
from sluice.libs.tune.search_space import Domain, format_vars
from sluice.libs.tune.trial import PAUSED, PENDING, Trial


class _TrialState:
    """What PBT remembers of one trial."""

    def __init__(self) -> None:
        self.last_score: float | None = None
        self.last_perturbation_time = 0.0
        self.last_train_time = 0.0
        self.last_checkpoint: str | None = None


def explore(config: dict[str, Any], mutations: dict[str, Any], resample_probability: float,
            perturbation_factors: tuple[float, ...], rng: random.Random,
            custom_explore_fn: Callable[[dict], dict] | None = None) -> dict[str, Any]:
    """A perturbed copy of ``config`` (see the module's docstring).

    >>> rng = random.Random(0)
    >>> explore({"lr": 0.1, "opt": "b"}, {"lr": [0.1, 0.2], "opt": ["a", "b", "c"]}, 0.0,
    ...         (1.2, 0.8), rng)["opt"] in ("a", "c")
    True
    """
    new = copy.deepcopy(config)
    for key, spec in mutations.items():
        if isinstance(spec, dict) and not ("grid_search" in spec):
            new[key] = explore(config.get(key, {}), spec, resample_probability,
                               perturbation_factors, rng)
        elif isinstance(spec, (list, tuple)):
            values = list(spec)
            if rng.random() < resample_probability or config.get(key) not in values:
                new[key] = rng.choice(values)
            else:  # a neighbour in the list
                at = values.index(config[key]) + rng.choice((-1, 1))
                new[key] = values[min(max(at, 0), len(values) - 1)]
        elif isinstance(spec, Domain) or callable(spec):
            if rng.random() < resample_probability or key not in config:
                new[key] = spec.sample(rng) if isinstance(spec, Domain) else spec()
            else:
                value = config[key] * rng.choice(perturbation_factors)
                new[key] = int(value) if isinstance(config[key], int) else value
        else:
            raise TypeError(f"hyperparam_mutations[{key!r}] = {spec!r}: give a list of values, "
                            f"a tune search space (tune.uniform(...)), a function, or a dict")
    if custom_explore_fn is not None:
        new = custom_explore_fn(new)
        if not isinstance(new, dict):
            raise TypeError("custom_explore_fn must return the new config (a dict)")
    return new


class PopulationBasedTraining(FIFOScheduler):
    """Population based training (Jaderberg et al. 2017), with Ray Tune's options."""

    def __init__(self, time_attr: str = "time_total_s", metric: str | None = None,
                 mode: str | None = None, perturbation_interval: float = 60.0,
                 burn_in_period: float = 0.0,
                 hyperparam_mutations: dict[str, Any] | None = None,
                 quantile_fraction: float = 0.25, resample_probability: float = 0.25,
                 perturbation_factors: tuple[float, float] = (1.2, 0.8),
                 custom_explore_fn: Callable[[dict], dict] | None = None,
                 log_config: bool = True, require_attrs: bool = True, synch: bool = False,
                 seed: int | None = None):
        super().__init__(metric, mode)
        if not hyperparam_mutations and custom_explore_fn is None:
            raise ValueError("PopulationBasedTraining needs hyperparam_mutations or "
                             "custom_explore_fn: what to change when a trial exploits another")
        if not 0 <= quantile_fraction <= 0.5:
            raise ValueError(f"PopulationBasedTraining(quantile_fraction={quantile_fraction}): "
                             f"give a fraction between 0 and 0.5")
        if perturbation_interval <= 0:
            raise ValueError(f"PopulationBasedTraining(perturbation_interval="
                             f"{perturbation_interval}): give a positive interval in {time_attr}")
        if synch:
            raise ValueError("PopulationBasedTraining(synch=True) is not supported by "
                             "sluice.tune yet; the asynchronous default is")
        self._time_attr = time_attr
        self._perturbation_interval = perturbation_interval
        self._burn_in_period = burn_in_period
        self._mutations = dict(hyperparam_mutations or {})
        self._quantile_fraction = quantile_fraction
        self._resample_probability = resample_probability
        self._perturbation_factors = tuple(perturbation_factors)
        self._custom_explore_fn = custom_explore_fn
        self._require_attrs = require_attrs
        self._state: dict[str, _TrialState] = {}
        self._rng = random.Random(seed)
        self._num_perturbations = 0
        self._num_checkpoints = 0

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self._sign()
        self._state[trial.trial_id] = _TrialState()

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        if self._time_attr not in result or self._metric not in result:
            if self._require_attrs:
                missing = [k for k in (self._time_attr, self._metric) if k not in result]
                raise ValueError(f"PopulationBasedTraining: trial {trial.name}'s result has no "
                                 f"{missing}; report them or pass require_attrs=False")
            return self.CONTINUE
        state = self._state.setdefault(trial.trial_id, _TrialState())
        time = result[self._time_attr]
        state.last_train_time = time
        if time < self._burn_in_period:
            return self.CONTINUE
        if time - state.last_perturbation_time < self._perturbation_interval:
            return self.CONTINUE
        sign = 1.0 if self._mode == "max" else -1.0
        state.last_score = sign * float(result[self._metric])
        state.last_perturbation_time = time
        lower, upper = self._quantiles(tune_controller)
        if trial in upper:
            state.last_checkpoint = tune_controller.checkpoint_trial(trial)
            self._num_checkpoints += 1
        elif trial in lower:
            donors = [t for t in upper if self._state[t.trial_id].last_checkpoint]
            if donors:
                self._exploit(tune_controller, trial, self._rng.choice(donors))
        return self.NOOP if trial.status == PAUSED else self.CONTINUE

    def continue_until(self, trial: Trial) -> int | None:
        """Nothing is decided before the burn-in and the next perturbation interval."""
        state = self._state.get(trial.trial_id)
        if self._time_attr != "training_iteration" or state is None:
            return None
        return int(math.ceil(max(self._burn_in_period,
                                 state.last_perturbation_time + self._perturbation_interval)))

    def _quantiles(self, tune_controller: Any) -> tuple[list[Trial], list[Trial]]:
        """(bottom, top) trials by their last score."""
        scored = [t for t in tune_controller.get_trials()
                  if t.trial_id in self._state and self._state[t.trial_id].last_score is not None
                  and not t.is_finished()]
        if len(scored) <= 1:
            return [], []
        scored.sort(key=lambda t: self._state[t.trial_id].last_score)  # type: ignore[arg-type,return-value]
        count = min(int(math.ceil(len(scored) * self._quantile_fraction)), len(scored) // 2)
        if count == 0:
            return [], []
        return scored[:count], scored[-count:]

    def _exploit(self, tune_controller: Any, trial: Trial, donor: Trial) -> None:
        """``trial`` takes ``donor``'s checkpoint and an explored copy of its config."""
        donor_state, state = self._state[donor.trial_id], self._state[trial.trial_id]
        new_config = explore(donor.config, self._mutations, self._resample_probability,
                             self._perturbation_factors, self._rng, self._custom_explore_fn)
        changed = {k: v for k, v in new_config.items() if k in self._mutations}
        tag = f"{trial.index}@perturbed[{format_vars(changed)}]"
        tune_controller.pause_trial(trial, should_checkpoint=False)
        tune_controller.reset_trial(trial, new_config, tag, donor_state.last_checkpoint)
        state.last_perturbation_time = donor_state.last_perturbation_time
        state.last_train_time = donor_state.last_train_time
        state.last_score = donor_state.last_score
        self._num_perturbations += 1

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self._state.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._state.pop(trial.trial_id, None)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """The waiting trial furthest behind (keeps the population in step)."""
        waiting = [t for t in tune_controller.get_trials() if t.status in (PENDING, PAUSED)]
        if not waiting:
            return None

        def behind(trial: Trial) -> tuple[bool, float]:
            state = self._state.get(trial.trial_id, _TrialState())
            return trial.status != PENDING, state.last_train_time

        return min(waiting, key=behind)

    def debug_string(self) -> str:
        return (f"PopulationBasedTraining: {self._num_checkpoints} checkpoints, "
                f"{self._num_perturbations} perturbs")

    def describe(self) -> str:
        return (f"PopulationBasedTraining (metric={self._metric!r}, mode={self._mode!r}, "
                f"{self._time_attr} every {self._perturbation_interval:g}, "
                f"mutations {sorted(self._mutations)}, quantile_fraction="
                f"{self._quantile_fraction:g}, "
                f"resample_probability={self._resample_probability:g})")

    def save_state(self) -> Any:
        state = dict(self.__dict__)
        state["_rng"] = self._rng.getstate()
        state.pop("_custom_explore_fn", None)
        return state

    def restore_state(self, state: Any) -> None:
        state = dict(state)
        rng = random.Random()
        rng.setstate(state.pop("_rng"))
        self.__dict__.update(state, _rng=rng)
