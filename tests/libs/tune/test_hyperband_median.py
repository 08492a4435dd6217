"""HyperBandScheduler and MedianStoppingRule: their decisions driven result by result with
plain Trial records and a fake controller, then end to end on a real local runtime."""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import sluice
from sluice import tune
from sluice.libs.tune.schedulers import HyperBandScheduler, MedianStoppingRule, TrialScheduler
from sluice.libs.tune.trial import PAUSED, RUNNING, TERMINATED, Trial

CONTINUE, PAUSE, STOP = TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.STOP


class Controller:
    """What a scheduler reaches of the controller, acting on plain Trial records as the
    real one does (a stopped paused trial is removed, a stopped running one completes)."""

    def __init__(self, scheduler: TrialScheduler):
        self.scheduler = scheduler
        self.trials: list[Trial] = []
        self.until: dict[str, int | None] = {}  # continue_until after each trial's result

    def get_trials(self) -> list[Trial]:
        return self.trials

    def get_live_trials(self) -> list[Trial]:
        return [t for t in self.trials if not t.is_finished()]

    def pause_trial(self, trial: Trial, should_checkpoint: bool = True) -> None:
        trial.status = PAUSED

    def stop_trial(self, trial: Trial) -> None:
        if trial.is_finished():
            return
        was_running = trial.status == RUNNING
        trial.status = TERMINATED
        if was_running:
            self.scheduler.on_trial_complete(self, trial, dict(trial.last_result))
        else:
            self.scheduler.on_trial_remove(self, trial)

    def add(self, count: int) -> list[Trial]:
        new = [Trial(f"t{len(self.trials) + i}", {}) for i in range(count)]
        for trial in new:
            self.trials.append(trial)
            self.scheduler.on_trial_add(self, trial)
        return new

    def start(self) -> Trial | None:
        """Start (or resume) the trial the scheduler picks."""
        trial = self.scheduler.choose_trial_to_run(self)
        if trial is not None:
            trial.status = RUNNING
            self.until.pop(trial.trial_id, None)  # (its first result is always taken)
        return trial

    def report(self, trial: Trial, **result) -> str:
        """One result of running ``trial``, and the controller's part of the decision."""
        assert trial.status == RUNNING, f"{trial} reports while {trial.status}"
        until = self.until.get(trial.trial_id)
        trial.last_result = result
        decision = self.scheduler.on_trial_result(self, trial, result)
        # the promise the runner relies on to let a trial run on without waiting
        if until is not None and result["training_iteration"] < until:
            assert decision == CONTINUE, (trial, result, until, decision)
        self.until[trial.trial_id] = self.scheduler.continue_until(trial)
        if trial.status == RUNNING:
            if decision == STOP:
                self.stop_trial(trial)
            elif decision == PAUSE:
                self.pause_trial(trial)
        return decision


def statuses(trials: list[Trial]) -> list[str]:
    return [t.status for t in trials]


# -- HyperBandScheduler: decisions ------------------------------------------------------

def test_hyperband_fills_brackets_in_order_and_starts_a_new_band_when_one_is_full() -> None:
    hb = HyperBandScheduler(metric="score", mode="max")  # max_t=81, reduction_factor=3
    ctl = Controller(hb)
    # Ray's layout for max_t=81, eta=3: (trials, first milestone) per bracket
    assert [(hb._get_n0(s), hb._get_r0(s)) for s in range(5)] == [
        (5, 81), (8, 27), (15, 9), (34, 3), (81, 1)]
    ctl.add(5 + 8 + 1)
    band = hb._hyperbands[0]
    assert [len(b.live) for b in band] == [5, 8, 1]
    assert [b.milestone for b in band] == [81, 27, 9]
    ctl.add(14 + 34 + 81 + 1)  # fills the band: the next trial opens band 2
    assert len(hb._hyperbands) == 2 and [len(b.live) for b in hb._hyperbands[0]] == [
        5, 8, 15, 34, 81]
    assert [len(b.live) for b in hb._hyperbands[1]] == [1]
    assert "total_brackets=6" in hb.debug_string() and "round 1: " in hb.debug_string()


def run_to(ctl: Controller, trial: Trial, start: int, stop: int, score: float) -> list[str]:
    return [ctl.report(trial, training_iteration=i, score=score) for i in range(start, stop + 1)]


def test_hyperband_pauses_at_the_milestone_then_the_top_third_goes_on_and_the_rest_stop() -> None:
    hb = HyperBandScheduler(metric="score", mode="max", max_t=9, reduction_factor=3)
    ctl = Controller(hb)
    first = ctl.add(3)  # bracket 0: 3 trials straight to max_t
    trials = ctl.add(5)  # bracket 1: 5 trials to 3, the top ceil(5/3)=2 on to 9
    assert [hb._trial_info[t.trial_id][0].milestone for t in first + trials] == [9] * 3 + [3] * 5
    # no decision short of the milestone: the runner lets a trial run on to it
    assert [hb.continue_until(t) for t in first + trials] == [9] * 3 + [3] * 5
    assert HyperBandScheduler(time_attr="time_total_s").continue_until(first[0]) is None
    for t in first:
        assert ctl.start() is t  # pending trials run first (bracket 0 is the least done)
    scores = [0.5, 0.9, 0.1, 0.95, 0.3]
    for t, score in zip(trials[:4], scores):
        assert ctl.start() is t
        # short of the milestone the trial continues; at it, it waits for the others
        assert run_to(ctl, t, 1, 3, score) == [CONTINUE, CONTINUE, PAUSE]
        assert t.status == PAUSED
    assert ctl.start() is trials[4]
    # the last to reach the milestone halves the bracket: it is in the bottom, so it stops
    assert run_to(ctl, trials[4], 1, 3, scores[4]) == [CONTINUE, CONTINUE, STOP]
    assert statuses(trials) == [TERMINATED, PAUSED, TERMINATED, PAUSED, TERMINATED]
    assert "num_stopped=3" in hb.debug_string()
    # the top two resume (chosen to run), nothing else is runnable
    resumed = [ctl.start(), ctl.start()]
    assert {t.trial_id for t in resumed} == {trials[1].trial_id, trials[3].trial_id}
    assert [hb.continue_until(t) for t in resumed] == [9, 9]  # the next milestone
    assert ctl.start() is None
    # on to max_t: the first there waits, the second ends the bracket and both stop
    assert run_to(ctl, resumed[0], 4, 9, 1.0) == [CONTINUE] * 5 + [PAUSE]
    assert run_to(ctl, resumed[1], 4, 9, 2.0) == [CONTINUE] * 5 + [STOP]
    assert statuses(trials) == [TERMINATED] * 5
    assert ctl.start() is None


def test_hyperband_keeps_the_lowest_with_mode_min() -> None:
    hb = HyperBandScheduler(metric="loss", mode="min", max_t=9, reduction_factor=3)
    ctl = Controller(hb)
    for t in ctl.add(3):
        ctl.start()
    trials = ctl.add(5)
    losses = [0.5, 0.9, 0.1, 0.95, 0.05]
    decisions = []
    for t, loss in zip(trials, losses):
        assert ctl.start() is t
        decisions.append(ctl.report(t, training_iteration=3, loss=loss))
    # the last (lowest loss) halves the bracket and continues with the 0.1 trial
    assert decisions == [PAUSE] * 4 + [CONTINUE]
    assert statuses(trials) == [TERMINATED, TERMINATED, PAUSED, TERMINATED, RUNNING]
    assert ctl.start() is trials[2]


def test_hyperband_halves_when_a_trial_leaves_and_the_rest_wait_at_the_milestone() -> None:
    hb = HyperBandScheduler(metric="score", mode="max", max_t=9, reduction_factor=3)
    ctl = Controller(hb)
    for t in ctl.add(3):
        ctl.start()
    trials = ctl.add(5)
    for t, score in zip(trials[:4], [4.0, 3.0, 2.0, 1.0]):
        ctl.start()
        assert ctl.report(t, training_iteration=3, score=score) == PAUSE
    last = ctl.start()
    assert last is trials[4] and ctl.report(last, training_iteration=1, score=9.0) == CONTINUE
    # the last trial ends before the milestone (its trainable returned): the bracket halves
    ctl.stop_trial(last)
    assert statuses(trials) == [PAUSED, PAUSED, TERMINATED, TERMINATED, TERMINATED]
    assert {ctl.start().trial_id, ctl.start().trial_id} == {"t3", "t4"}


def test_hyperband_halves_again_when_a_trial_errors_after_an_earlier_halving() -> None:
    hb = HyperBandScheduler(metric="score", mode="max", max_t=4, reduction_factor=2)
    ctl = Controller(hb)
    for t in ctl.add(3 + 3):  # brackets to 4 and to 2
        ctl.start()
    a, b, c, d = ctl.add(4)  # the bracket 1 -> 2 -> 4: 4 trials, then 2, then 1
    assert hb._trial_info[a.trial_id][0].milestone == 1
    for t, score in zip((a, b, c, d), [4.0, 3.0, 2.0, 1.0]):
        assert ctl.start() is t
        ctl.report(t, training_iteration=1, score=score)
    assert statuses([a, b, c, d]) == [PAUSED, PAUSED, TERMINATED, TERMINATED]
    assert {ctl.start().trial_id, ctl.start().trial_id} == {a.trial_id, b.trial_id}
    assert ctl.report(a, training_iteration=2, score=5.0) == PAUSE
    # b fails for good: a, alone at the milestone, is let through to max_t
    b.status = "ERROR"
    hb.on_trial_error(ctl, b)
    assert ctl.start() is a
    assert run_to(ctl, a, 3, 4, 6.0) == [CONTINUE, STOP]


def test_hyperband_stops_a_trial_paused_at_max_t_once_the_others_left() -> None:
    hb = HyperBandScheduler(metric="score", mode="max", max_t=9, reduction_factor=3)
    ctl = Controller(hb)
    a, b = ctl.add(2)
    for t in (a, b):
        ctl.start()
    assert ctl.report(a, training_iteration=9, score=1.0) == PAUSE
    ctl.report(b, training_iteration=5, score=0.5)
    ctl.stop_trial(b)  # its trainable returned before max_t
    assert a.status == TERMINATED and ctl.start() is None


def test_hyperband_without_stop_last_trials_lets_the_last_round_run_past_max_t() -> None:
    hb = HyperBandScheduler(metric="score", mode="max", max_t=9, reduction_factor=3,
                            stop_last_trials=False)
    ctl = Controller(hb)
    a, b = ctl.add(2)
    for t in (a, b):
        ctl.start()
    assert hb.continue_until(a) is None  # running on past max_t: results taken as they come
    assert run_to(ctl, a, 1, 12, 1.0) == [CONTINUE] * 12
    with_stop = HyperBandScheduler(metric="score", mode="max", max_t=9, reduction_factor=3)
    ctl = Controller(with_stop)
    a, b = ctl.add(2)
    for t in (a, b):
        ctl.start()
    assert run_to(ctl, a, 8, 9, 1.0) == [CONTINUE, PAUSE]
    assert run_to(ctl, b, 9, 9, 1.0) == [STOP]
    assert statuses([a, b]) == [TERMINATED, TERMINATED]  # the paused one stopped too


def test_hyperband_state_survives_a_pickled_save_and_restore_with_new_trial_records() -> None:
    hb = HyperBandScheduler(metric="score", mode="max", max_t=9, reduction_factor=3)
    ctl = Controller(hb)
    for t in ctl.add(3):
        ctl.start()
    trials = ctl.add(5)
    for t, score in zip(trials[:4], [0.5, 0.9, 0.1, 0.95]):
        ctl.start()
        ctl.report(t, training_iteration=3, score=score)
    blob = pickle.dumps(hb.save_state())
    # a restored driver: a fresh scheduler, and new Trial records with the same ids
    copy = HyperBandScheduler()
    copy.restore_state(pickle.loads(blob))
    ctl2 = Controller(copy)
    ctl2.trials = [Trial(t.trial_id, {}, status=t.status) for t in ctl.trials]
    last = ctl2.trials[-1]
    assert ctl2.start() is last  # the only pending trial
    assert ctl2.report(last, training_iteration=3, score=0.3) == STOP
    assert statuses(ctl2.trials[3:]) == [TERMINATED, PAUSED, TERMINATED, PAUSED, TERMINATED]


def test_hyperband_checks_its_settings_and_its_results() -> None:
    with pytest.raises(ValueError, match="needs a metric and a mode"):
        HyperBandScheduler().on_trial_add(None, Trial("a", {}))
    with pytest.raises(ValueError, match=r"reduction_factor=1\): give a number above 1"):
        HyperBandScheduler(reduction_factor=1)
    with pytest.raises(ValueError, match=r"max_t=0\): give a positive"):
        HyperBandScheduler(max_t=0)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        HyperBandScheduler(metric="x", mode="best")
    hb = HyperBandScheduler(metric="score", mode="max", max_t=9)
    ctl = Controller(hb)
    (trial,) = ctl.add(1)
    ctl.start()
    with pytest.raises(ValueError, match="has no 'training_iteration'"):
        ctl.report(trial, score=1.0)
    assert ctl.report(trial, training_iteration=1) == CONTINUE  # the metric may come later
    with pytest.raises(ValueError, match="without reporting 'score'"):
        ctl.report(trial, training_iteration=9)
    assert HyperBandScheduler().set_search_properties("score", "max")
    assert not HyperBandScheduler(metric="loss").set_search_properties("score", "max")


# -- MedianStoppingRule: decisions ------------------------------------------------------

def median_rule(**kwargs) -> tuple[MedianStoppingRule, Controller]:
    kwargs = {"time_attr": "training_iteration", "metric": "score", "mode": "max",
              "grace_period": 2, **kwargs}
    rule = MedianStoppingRule(**kwargs)
    return rule, Controller(rule)


def finish(ctl: Controller, trial: Trial, values: list[float]) -> list[str]:
    """Run ``trial`` through ``values`` (one per iteration), then end it."""
    ctl.start()
    decisions = []
    for i, value in enumerate(values, start=1):
        decisions.append(ctl.report(trial, training_iteration=i, score=value))
        if trial.status != RUNNING:
            return decisions
    ctl.stop_trial(trial)
    return decisions


def test_median_rule_stops_a_trial_below_the_median_and_not_a_good_one() -> None:
    rule, ctl = median_rule()
    for top in [1.0, 2.0, 3.0]:
        # the first three have fewer than min_samples_required=3 others to compare with
        # (and no trial waits for them to yield)
        (trial,) = ctl.add(1)
        assert finish(ctl, trial, [top * i for i in range(1, 6)]) == [CONTINUE] * 5
    bad, fine = ctl.add(2)
    # at t=2 the others' running averages (from grace_period=2) are 2, 4, 6: median 4
    assert finish(ctl, bad, [1.0, 3.9]) == [CONTINUE, STOP]  # below the grace period: continue
    assert bad.status == TERMINATED
    # its best just above the medians: 3.95 at t=2 (the stopped trial counts there), then
    # 5, 6, 7 (the averages from t=2 of 1, 2, 3 * t)
    assert finish(ctl, fine, [1.0, 4.0, 5.1, 6.1, 7.1]) == [CONTINUE] * 5
    assert fine.status == TERMINATED and "num_stopped=1" in rule.debug_string()


def test_median_rule_decides_nothing_before_the_grace_period() -> None:
    rule, ctl = median_rule(grace_period=3)
    (trial,) = ctl.add(1)
    ctl.start()
    assert rule.continue_until(trial) == 3
    ctl.report(trial, training_iteration=3, score=1.0)
    assert rule.continue_until(trial) is None  # past it, any result may stop the trial
    assert MedianStoppingRule(metric="score", mode="max").continue_until(trial) is None


def test_median_rule_compares_the_best_result_so_far() -> None:
    rule, ctl = median_rule(min_samples_required=1)
    (ref,) = ctl.add(1)
    finish(ctl, ref, [1.0, 1.0, 1.0, 1.0])
    (trial,) = ctl.add(1)
    # a dip below the median (1) is forgiven while the best so far (5) is above it
    assert finish(ctl, trial, [5.0, 0.5, 0.5, 0.5]) == [CONTINUE] * 4


def test_median_rule_with_mode_min_stops_the_high_loss() -> None:
    rule, ctl = median_rule(metric="loss", mode="min", min_samples_required=2)
    for _ in range(2):
        (t,) = ctl.add(1)
        ctl.start()
        for i in range(1, 4):
            ctl.report(t, training_iteration=i, loss=1.0 / i)
        ctl.stop_trial(t)
    low, high = ctl.add(2)
    ctl.start()
    assert [ctl.report(low, training_iteration=i, loss=0.1) for i in (1, 2, 3)] == [CONTINUE] * 3
    ctl.start()
    assert [ctl.report(high, training_iteration=i, loss=2.0) for i in (1, 2)] == [CONTINUE, STOP]


def test_median_rule_without_hard_stop_pauses_and_runs_the_trial_last_to_its_end() -> None:
    rule, ctl = median_rule(min_samples_required=1, hard_stop=False)
    (ref,) = ctl.add(1)
    finish(ctl, ref, [1.0, 2.0, 3.0])
    bad, other = ctl.add(2)
    assert ctl.start() is bad
    assert [ctl.report(bad, training_iteration=i, score=0.0) for i in (1, 2)] == [CONTINUE, PAUSE]
    assert bad.status == PAUSED
    # the other (pending) trial runs first; the paused one only once nothing else runs
    assert ctl.start() is other
    assert ctl.start() is None
    ctl.stop_trial(other)
    assert ctl.start() is bad
    assert ctl.report(bad, training_iteration=3, score=0.0) == CONTINUE  # to its end


def test_median_rule_yields_to_waiting_trials_while_it_has_too_few_samples() -> None:
    rule, ctl = median_rule(min_time_slice=2)
    first, waiting = ctl.add(2)
    ctl.start()
    # at the grace period, nobody to compare with and a trial waits: yield
    assert [ctl.report(first, training_iteration=i, score=1.0) for i in (1, 2)] == [
        CONTINUE, PAUSE]
    assert ctl.start() is waiting  # the pending one runs before the paused one
    assert ctl.start() is first
    # at most once per min_time_slice=2
    assert ctl.report(first, training_iteration=3, score=1.0) == CONTINUE
    assert ctl.report(first, training_iteration=4, score=1.0) == CONTINUE
    ctl.stop_trial(waiting)  # nothing waits any more: no yielding
    assert ctl.report(first, training_iteration=5, score=1.0) == CONTINUE


def test_median_rule_state_survives_a_pickled_save_and_restore() -> None:
    rule, ctl = median_rule(min_samples_required=1)
    (ref,) = ctl.add(1)
    finish(ctl, ref, [1.0, 2.0, 3.0])
    copy = MedianStoppingRule()
    copy.restore_state(pickle.loads(pickle.dumps(rule.save_state())))
    ctl2 = Controller(copy)
    ctl2.trials = [Trial(ref.trial_id, {}, status=TERMINATED)]  # the restored experiment's
    (bad,) = ctl2.add(1)
    assert finish(ctl2, bad, [0.0, 0.0]) == [CONTINUE, STOP]


def test_median_rule_checks_its_settings() -> None:
    with pytest.raises(ValueError, match="needs a metric and a mode"):
        MedianStoppingRule().on_trial_add(None, Trial("a", {}))
    with pytest.raises(ValueError, match=r"min_samples_required=0\)"):
        MedianStoppingRule(min_samples_required=0)
    with pytest.raises(ValueError, match=r"grace_period=-1\)"):
        MedianStoppingRule(grace_period=-1)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        MedianStoppingRule(metric="x", mode="best")
    rule = MedianStoppingRule(metric="score", mode="max")
    assert (rule._time_attr, rule._grace_period, rule._min_samples_required,
            rule._min_time_slice, rule._hard_stop) == ("time_total_s", 60.0, 3, 0, True)


# -- end to end -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


def climb(config):
    """Scores ``x * (1 - 0.9**i)`` for i up to ``max_t``, a checkpoint each step; resumes
    from its checkpoint (``start``: the step it resumed from)."""
    checkpoint = tune.get_checkpoint()
    start = int(Path(checkpoint.path, "i").read_text()) if checkpoint else 0
    for i in range(start + 1, config["max_t"] + 1):
        folder = tempfile.mkdtemp()
        Path(folder, "i").write_text(str(i))
        tune.report({"score": config["x"] * (1 - 0.9 ** i), "start": start},
                    checkpoint=tune.Checkpoint.from_directory(folder))


def fit(trainable, xs: list[float], tmp_path: Path, scheduler: TrialScheduler,
        **tune_config) -> tune.ResultGrid:
    return tune.Tuner(trainable, param_space={"x": tune.grid_search(xs), "max_t": 9},
                      tune_config=tune.TuneConfig(metric="score", mode="max",
                                                  scheduler=scheduler, **tune_config),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="exp",
                                                verbose=0)).fit()


def test_hyperband_pauses_resumes_and_stops_trials_of_a_real_experiment(runtime,
                                                                         tmp_path) -> None:
    xs = [0.3, 0.7, 0.5, 0.2, 0.9, 0.4, 1.0, 0.6]
    # the 8 trials fit at once (a quarter CPU each), so all are added before any reports
    # (as Ray adds every grid trial as pending at the start) and fill the brackets: the
    # first 3 run to max_t=9, the next 5 to 3, where the top 2 resume to 9
    grid = fit(tune.with_resources(climb, {"cpu": 0.25}), xs, tmp_path,
               HyperBandScheduler(max_t=9, reduction_factor=3))
    assert len(grid) == 8 and grid.num_terminated == 8 and grid.num_errors == 0
    reached = {r.config["x"]: r.metrics["training_iteration"] for r in grid}
    assert reached == {0.3: 9, 0.7: 9, 0.5: 9, 0.2: 3, 0.9: 9, 0.4: 3, 1.0: 9, 0.6: 3}
    assert sum(reached.values()) == 3 * 9 + 5 * 3 + 2 * 6 < 8 * 9
    # of the two that went on, those that reached 3 before the last of the bracket were
    # paused there and resumed from their checkpoints (the last one goes straight on)
    starts = sorted(r.metrics["start"] for r in grid if r.config["x"] in (0.9, 1.0))
    assert starts in ([0, 3], [3, 3])
    best = grid.get_best_result()
    assert best.config["x"] == 1.0 and best.metrics["training_iteration"] == 9
    assert best.metrics["score"] == pytest.approx(1 - 0.9 ** 9)


def test_median_rule_stops_the_bad_trials_of_a_real_experiment(runtime, tmp_path) -> None:
    # one trial at a time, in order: the bad ones meet three finished good ones
    xs = [1.0, 0.9, 0.8, 0.1, 0.95, 0.2]
    rule = MedianStoppingRule(time_attr="training_iteration", grace_period=1)
    grid = fit(climb, xs, tmp_path, rule, max_concurrent_trials=1)
    assert grid.num_terminated == 6 and grid.num_errors == 0
    reached = {r.config["x"]: r.metrics["training_iteration"] for r in grid}
    assert reached == {1.0: 9, 0.9: 9, 0.8: 9, 0.1: 1, 0.95: 9, 0.2: 1}
    assert grid.get_best_result().config["x"] == 1.0


def test_median_rule_without_hard_stop_resumes_the_paused_trials(runtime, tmp_path) -> None:
    xs = [1.0, 0.9, 0.8, 0.1, 0.95, 0.2]
    rule = MedianStoppingRule(time_attr="training_iteration", grace_period=1, hard_stop=False)
    grid = fit(climb, xs, tmp_path, rule, max_concurrent_trials=1)
    assert grid.num_terminated == 6 and grid.num_errors == 0
    # every trial ran to its end; the two below the median were paused at 1 and resumed
    assert {r.metrics["training_iteration"] for r in grid} == {9}
    assert {r.config["x"]: r.metrics["start"] for r in grid} == {
        1.0: 0, 0.9: 0, 0.8: 0, 0.1: 1, 0.95: 0, 0.2: 1}
