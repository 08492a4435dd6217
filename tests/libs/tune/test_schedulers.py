"""Trial schedulers' decisions (sluice/libs/tune/schedulers/), driven result by result
with plain Trial records (the controller's part is in test_tuner.py)."""

from __future__ import annotations

import pytest

from sluice.libs.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    PopulationBasedTraining,
    TrialScheduler,
)
from sluice.libs.tune.trial import PAUSED, PENDING, RUNNING, Trial


class Trials:
    """What a scheduler reads of the controller: the trials."""

    def __init__(self, trials):
        self.trials = trials

    def get_trials(self):
        return self.trials


def test_asha_stops_a_trial_below_the_rungs_top_fraction_and_lets_the_best_reach_max_t() -> None:
    asha = ASHAScheduler(metric="score", mode="max", max_t=9, grace_period=1,
                         reduction_factor=3)
    trials = [Trial(f"t{i}", {}) for i in range(4)]
    ctl = Trials(trials)
    for t in trials:
        asha.on_trial_add(ctl, t)
    # the first trial at each rung sets it; later ones below the 2/3 quantile stop
    decisions = [asha.on_trial_result(ctl, t, {"training_iteration": 1, "score": s})
                 for t, s in zip(trials, [0.5, 0.9, 0.1, 0.95])]
    assert decisions == ["CONTINUE", "CONTINUE", "STOP", "CONTINUE"]
    # between rungs nothing is decided; max_t stops the last
    assert asha.on_trial_result(ctl, trials[3], {"training_iteration": 2, "score": 0}) == "CONTINUE"
    assert asha.on_trial_result(ctl, trials[3], {"training_iteration": 3, "score": 1}) == "CONTINUE"
    assert asha.on_trial_result(ctl, trials[3], {"training_iteration": 9, "score": 2}) == "STOP"


def test_asha_minimizes_with_mode_min() -> None:
    asha = ASHAScheduler(metric="loss", mode="min", max_t=9, grace_period=1, reduction_factor=3)
    a, b = Trial("a", {}), Trial("b", {})
    for t in (a, b):
        asha.on_trial_add(Trials([a, b]), t)
    assert asha.on_trial_result(None, a, {"training_iteration": 1, "loss": 0.1}) == "CONTINUE"
    assert asha.on_trial_result(None, b, {"training_iteration": 1, "loss": 5.0}) == "STOP"


def test_asha_needs_a_metric_and_mode_and_checks_its_settings() -> None:
    with pytest.raises(ValueError, match="needs a metric and a mode"):
        ASHAScheduler().on_trial_add(None, Trial("a", {}))
    with pytest.raises(ValueError, match="reduction_factor"):
        ASHAScheduler(reduction_factor=1)
    with pytest.raises(ValueError, match="below grace_period"):
        ASHAScheduler(max_t=1, grace_period=5)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        ASHAScheduler(metric="x", mode="best")


def test_asha_takes_the_experiments_metric_unless_it_has_a_different_one() -> None:
    asha = ASHAScheduler()
    assert asha.set_search_properties("score", "max") and asha.metric == "score"
    assert not ASHAScheduler(metric="loss").set_search_properties("score", "max")


def test_asha_state_survives_a_save_and_restore() -> None:
    asha = ASHAScheduler(metric="s", mode="max", max_t=9, grace_period=1, reduction_factor=3,
                         seed=1)
    a, b = Trial("a", {}), Trial("b", {})
    for t in (a, b):
        asha.on_trial_add(None, t)
    asha.on_trial_result(None, a, {"training_iteration": 1, "s": 1.0})
    copy = ASHAScheduler()
    copy.restore_state(asha.save_state())
    assert copy.on_trial_result(None, b, {"training_iteration": 1, "s": 0.0}) == "STOP"


def test_fifo_runs_pending_trials_first_then_paused_ones_and_always_continues() -> None:
    fifo = FIFOScheduler()
    trials = [Trial("a", {}, status=RUNNING), Trial("b", {}, status=PAUSED),
              Trial("c", {}, status=PENDING)]
    assert fifo.choose_trial_to_run(Trials(trials)).trial_id == "c"
    trials[2].status = RUNNING
    assert fifo.choose_trial_to_run(Trials(trials)).trial_id == "b"
    assert fifo.on_trial_result(None, trials[0], {"x": 1}) == TrialScheduler.CONTINUE


def test_asha_tells_how_far_a_trial_runs_before_its_next_decision() -> None:
    asha = ASHAScheduler(metric="s", mode="max", max_t=20, grace_period=1, reduction_factor=4)
    trial = Trial("a", {})
    asha.on_trial_add(None, trial)
    assert asha.continue_until(trial) == 1  # the first rung
    trial.last_result = {"training_iteration": 1}
    asha.on_trial_result(None, trial, {"training_iteration": 1, "s": 1.0})
    assert asha.continue_until(trial) == 4  # nothing decided at 2 and 3
    trial.last_result = {"training_iteration": 16}
    asha.on_trial_result(None, trial, {"training_iteration": 4, "s": 1.0})
    asha.on_trial_result(None, trial, {"training_iteration": 16, "s": 1.0})
    assert asha.continue_until(trial) == 20  # max_t stops it
    assert FIFOScheduler().continue_until(trial) is None
    # a time_attr other than the iteration count: every result is a decision point
    assert ASHAScheduler(time_attr="time_total_s", metric="s", mode="max").continue_until(
        trial) is None


def test_pbt_tells_how_far_a_trial_runs_before_its_next_perturbation() -> None:
    pbt = PopulationBasedTraining(time_attr="training_iteration", metric="s", mode="max",
                                  perturbation_interval=5,
                                  burn_in_period=7, hyperparam_mutations={"lr": [1, 2]})
    trial = Trial("a", {"lr": 1})
    ctl = Trials([trial])
    pbt.on_trial_add(ctl, trial)
    assert pbt.continue_until(trial) == 7  # the burn-in first
    decisions = [pbt.on_trial_result(ctl, trial, {"training_iteration": i, "s": 1.0})
                 for i in range(1, 8)]
    assert decisions == [TrialScheduler.CONTINUE] * 7  # (a lone trial has no one to copy)
    assert pbt.continue_until(trial) == 12  # perturbed at 7: the next interval ends at 12
    # Ray's default time_attr, time_total_s: every result is a decision point
    assert PopulationBasedTraining(metric="s", mode="max",
                                   hyperparam_mutations={"lr": [1]}).continue_until(trial) is None
