"""sluice.tune end to end: real trial actors on the local runtime, the experiment's
SQLite state on disk, Ray Tune's API (Tuner, ResultGrid, schedulers, checkpoints,
failures, restore after a real SIGKILL of the driver)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import sluice
from sluice import tune
from sluice.tune.schedulers import ASHAScheduler

HERE = Path(__file__).resolve().parent
DEADLINE_S = 120


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=4)
    yield
    sluice.shutdown()


def tuner(trainable, space, tmp_path: Path, **tune_config) -> tune.Tuner:
    run = tune_config.pop("run", {})
    return tune.Tuner(trainable, param_space=space,
                      tune_config=tune.TuneConfig(**tune_config),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="exp",
                                                verbose=0, **run))


def quadratic(config):
    for i in range(config.get("steps", 3)):
        tune.report({"loss": (config["x"] - 3) ** 2 + 1.0 / (i + 1), "i": i})


# -- results ----------------------------------------------------------------------------

def test_a_function_trainable_reports_and_the_result_grid_reads_every_result(tmp_path) -> None:
    grid = tuner(quadratic, {"x": tune.grid_search([1, 3, 4]), "steps": 4}, tmp_path,
                 metric="loss", mode="min").fit()
    assert len(grid) == 3 and grid.num_terminated == 3 and grid.num_errors == 0
    best = grid.get_best_result()
    assert best.config["x"] == 3 and best.metrics["loss"] == pytest.approx(0.25)
    assert best.metrics["training_iteration"] == 4 and best.metrics["done"] is True
    assert best.metrics["config"] == best.config
    # scopes: the best over all results of x=4 is its last; avg ranks by the mean
    assert grid.get_best_result("loss", "max", scope="all").config["x"] == 1
    assert grid.get_best_result("loss", "min", scope="avg").config["x"] == 3
    frame = grid.get_dataframe()
    assert sorted(frame["config/x"]) == [1, 3, 4] and set(frame["training_iteration"]) == {4}
    curve = best.metrics_dataframe
    assert list(curve["i"]) == [0, 1, 2, 3] and list(curve["training_iteration"]) == [1, 2, 3, 4]
    assert grid.experiment_path == str(tmp_path / "exp")
    assert Path(best.path).is_dir() and Path(best.path).parent == tmp_path / "exp"
    # the state is SQLite: every result is a row
    with sqlite3.connect(tmp_path / "exp" / "experiment.db") as db:
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 12


def test_num_samples_repeats_the_grid_and_the_metric_can_be_given_late(tmp_path) -> None:
    grid = tuner(quadratic, {"x": tune.grid_search([0, 6]), "steps": 1}, tmp_path,
                 num_samples=3).fit()
    assert sorted(r.config["x"] for r in grid) == [0, 0, 0, 6, 6, 6]
    with pytest.raises(ValueError, match="needs a metric and a mode"):
        grid.get_best_result()
    assert grid.get_best_result("loss", "min").metrics["loss"] == pytest.approx(10.0)


class Counter(tune.Trainable):
    """A class trainable: counts up by ``step`` and checkpoints its count."""

    def setup(self, config, offset=0):
        self.count = config.get("start", 0) + offset

    def step(self):
        self.count += self.config["step"]
        return {"count": self.count, "done": self.iteration + 1 >= 5}

    def save_checkpoint(self, checkpoint_dir):
        Path(checkpoint_dir, "count").write_text(str(self.count))

    def load_checkpoint(self, checkpoint):
        self.count = int(Path(checkpoint, "count").read_text())


def test_a_class_trainable_steps_checkpoints_and_keeps_num_to_keep(tmp_path) -> None:
    grid = tuner(Counter, {"step": tune.grid_search([1, 10])}, tmp_path, metric="count",
                 mode="max",
                 run={"checkpoint_config": tune.CheckpointConfig(
                     num_to_keep=2, checkpoint_frequency=1,
                     checkpoint_score_attribute="count")}).fit()
    best = grid.get_best_result()
    assert best.metrics["count"] == 50 and best.metrics["training_iteration"] == 5
    kept = sorted(p.name for p in Path(best.path).iterdir() if p.name.startswith("checkpoint_"))
    assert len(kept) == 2  # five written, the best two kept (the latest among them)
    assert Path(best.checkpoint.path, "count").read_text() == "50"
    assert [m["count"] for _, m in best.best_checkpoints] == [40, 50]
    with best.checkpoint.as_directory() as folder:
        assert Path(folder, "count").read_text() == "50"


def test_with_parameters_puts_each_object_once_and_trials_read_it(tmp_path) -> None:
    data = np.arange(1000.0)

    def train(config, data=None):
        tune.report({"total": float(data.sum()) * config["k"], "writable": data.flags.writeable})

    grid = tuner(tune.with_parameters(train, data=data), {"k": tune.grid_search([1, 2])},
                 tmp_path, metric="total", mode="max").fit()
    assert sorted(r.metrics["total"] for r in grid) == [499500.0, 999000.0]
    assert not any(r.metrics["writable"] for r in grid)  # a read-only view of the store
    grid = tuner(tune.with_parameters(Counter, offset=100), {"step": 1}, tmp_path / "c",
                 metric="count", mode="max").fit()
    assert grid.get_best_result().metrics["count"] == 105


# -- scheduling -------------------------------------------------------------------------

def curve(config):
    for i in range(1, config["max_t"] + 1):
        tune.report({"score": config["x"] * (1 - 0.9 ** i)})


def test_asha_stops_bad_trials_and_the_best_reaches_max_t(tmp_path) -> None:
    xs = list(np.random.default_rng(0).permutation(np.linspace(0.1, 1.0, 16)))
    grid = tuner(curve, {"x": tune.grid_search(xs), "max_t": 27}, tmp_path, metric="score",
                 mode="max", reuse_actors=True,
                 scheduler=ASHAScheduler(max_t=27, grace_period=1, reduction_factor=3)).fit()
    iterations = [r.metrics["training_iteration"] for r in grid]
    assert sum(iterations) < 16 * 27  # some trials were stopped early
    assert min(iterations) < 27
    best = grid.get_best_result()
    assert best.config["x"] == pytest.approx(1.0) and best.metrics["training_iteration"] == 27


def spans(config):
    started = time.time()
    for i in range(3):
        time.sleep(0.02)  # the trial's work; the test measures overlap, not time
        tune.report({"started": started, "ended": time.time()})


def overlap(grid) -> int:
    events = sorted([(r.metrics["started"], 1) for r in grid] +
                    [(r.metrics["ended"], -1) for r in grid])
    most = now = 0
    for _, delta in events:
        now += delta
        most = max(most, now)
    return most


def test_max_concurrent_trials_is_honoured(tmp_path) -> None:
    grid = tuner(spans, {"k": tune.grid_search(list(range(6)))}, tmp_path,
                 max_concurrent_trials=1).fit()
    assert overlap(grid) == 1
    grid = tuner(spans, {"k": tune.grid_search(list(range(6)))}, tmp_path / "two",
                 max_concurrent_trials=2).fit()
    assert overlap(grid) <= 2


def test_a_trial_holds_its_resources(tmp_path) -> None:
    # four CPUs, three CPUs a trial: one at a time
    grid = tuner(tune.with_resources(spans, {"cpu": 3}), {"k": tune.grid_search([1, 2, 3])},
                 tmp_path).fit()
    assert overlap(grid) == 1


def test_stop_criteria_end_trials(tmp_path) -> None:
    def count(config):
        for i in range(100):
            tune.report({"i": i})

    grid = tuner(count, {}, tmp_path, run={"stop": {"training_iteration": 7}}).fit()
    assert grid[0].metrics["training_iteration"] == 7
    grid = tuner(count, {}, tmp_path / "f",
                 run={"stop": lambda trial_id, result: result["i"] >= 4}).fit()
    assert grid[0].metrics["i"] == 4


# -- failures ---------------------------------------------------------------------------

def flaky(config):
    checkpoint = tune.get_checkpoint()
    start = int(Path(checkpoint.path, "i").read_text()) if checkpoint else 0
    for i in range(start, 6):
        if config["fail"] == "always" and i == 2:
            raise ValueError(f"bad value at step {i}")
        marker = Path(config["dir"], f"failed-{config['fail']}")
        if config["fail"] == "once" and i == 3 and not marker.exists():
            marker.write_text("")
            raise RuntimeError("a one-off failure")
        folder = tempfile.mkdtemp()
        Path(folder, "i").write_text(str(i + 1))
        tune.report({"i": i}, checkpoint=tune.Checkpoint.from_directory(folder))


def test_an_erroring_trial_is_reported_while_the_others_finish(tmp_path) -> None:
    grid = tuner(flaky, {"fail": tune.grid_search(["never", "always", "never"]),
                         "dir": str(tmp_path)}, tmp_path).fit()
    assert grid.num_errors == 1 and grid.num_terminated == 2
    (error,) = grid.errors
    assert "ValueError: bad value at step 2" in str(error)
    assert sorted(r.metrics.get("i") for r in grid) == [1, 5, 5]


def test_max_failures_restarts_a_trial_from_its_latest_checkpoint(tmp_path) -> None:
    grid = tuner(flaky, {"fail": "once", "dir": str(tmp_path)}, tmp_path,
                 run={"failure_config": tune.FailureConfig(max_failures=1)}).fit()
    assert grid.num_errors == 0
    frame = grid[0].metrics_dataframe
    # i = 0, 1, 2, then the failure at 3, then 3, 4, 5 from the checkpoint after 2
    assert list(frame["i"]) == [0, 1, 2, 3, 4, 5]
    assert list(frame["training_iteration"]) == [1, 2, 3, 4, 5, 6]


# -- restore ----------------------------------------------------------------------------

def poll(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def rows(db_path: Path, query: str) -> list:
    if not db_path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
            return db.execute(query).fetchall()
    except sqlite3.OperationalError:  # the schema is being created
        return []


def gated(config):
    """Five results, then waits for the ``gate`` file, then five more."""
    for i in range(10):
        if i == 5:
            while not os.path.exists(config["gate"]):
                time.sleep(0.01)
        tune.report({"score": float(i)})


def test_results_before_the_schedulers_next_decision_reach_the_database_as_they_come(
        tmp_path) -> None:
    # ASHA decides first at iteration 50 (its grace period): the trial runs on to it without
    # waiting for decisions, and its results are still recorded as they are made
    gate = tmp_path / "gate"
    asha = ASHAScheduler(max_t=100, grace_period=50)
    run = tuner(gated, {"gate": str(gate)}, tmp_path / "storage", metric="score", mode="max",
                scheduler=asha)
    outcome: list = []
    fitting = threading.Thread(target=lambda: outcome.append(run.fit()))
    fitting.start()
    try:
        db_path = tmp_path / "storage" / "exp" / "experiment.db"
        poll(lambda: rows(db_path, "SELECT COUNT(*) FROM results") == [(5,)],
             "the five results made before the gate")
    finally:
        gate.write_text("")
        fitting.join()
    (grid,) = outcome
    assert grid.num_terminated == 1 and grid[0].metrics["training_iteration"] == 10
    assert list(grid[0].metrics_dataframe["score"]) == [float(i) for i in range(10)]


def test_restore_after_the_driver_is_killed_resumes_unfinished_trials_only(tmp_path) -> None:
    storage, gate = tmp_path / "storage", tmp_path / "go"
    storage.mkdir()
    driver = subprocess.Popen([sys.executable, str(HERE / "killable_driver.py"), str(storage),
                               str(gate)], start_new_session=True)
    db_path = storage / "killed" / "experiment.db"
    try:
        def two_done_two_held() -> bool:
            assert driver.poll() is None, "the driver ended before it was killed"
            statuses = dict(rows(db_path, "SELECT idx, status FROM trials"))
            held = rows(db_path, "SELECT COUNT(*) FROM checkpoints c JOIN trials t "
                                 "ON c.trial_id = t.trial_id WHERE t.idx >= 2 AND c.iteration = 3")
            return statuses.get(0) == statuses.get(1) == "TERMINATED" and bool(held) and \
                held[0][0] == 2
        poll(two_done_two_held, "two trials finished and two held at iteration 3")
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()

    sys.path.insert(0, str(HERE))
    try:
        from killable_driver import make_trainable
    finally:
        sys.path.remove(str(HERE))
    path = storage / "killed"
    assert tune.Tuner.can_restore(path) and not tune.Tuner.can_restore(tmp_path)
    gate.write_text("")
    grid = tune.Tuner.restore(str(path), make_trainable(str(storage), str(gate))).fit()
    assert grid.num_terminated == 6 and grid.num_errors == 0
    assert grid.get_best_result().metrics["score"] == 510
    starts = [line.split() for line in (storage / "starts.log").read_text().splitlines()]
    by_trial: dict[str, list[int]] = {}
    for trial_id, start in starts:
        by_trial.setdefault(trial_id, []).append(int(start))
    index = {r.trial_id: r.config["index"] for r in grid}
    runs = {index[t]: s for t, s in by_trial.items()}
    # finished trials ran once; the held ones resumed from their checkpoints (step 3)
    assert runs == {0: [0], 1: [0], 2: [0, 3], 3: [0, 3], 4: [0], 5: [0]}
    resumed = next(r for r in grid if r.config["index"] == 2)
    assert resumed.metrics["training_iteration"] == 10 and resumed.metrics["step"] == 10
    for result in grid:
        assert len([p for p in Path(result.path).iterdir()
                    if p.name.startswith("checkpoint_")]) <= 2  # num_to_keep=2


# -- bad input --------------------------------------------------------------------------

def test_bad_settings_are_clear_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        tune.TuneConfig(metric="loss", mode="lowest")
    with pytest.raises(ValueError, match="num_samples=0"):
        tune.TuneConfig(num_samples=0)
    with pytest.raises(TypeError, match="give a function taking the config"):
        tune.Tuner(42)
    with pytest.raises(TypeError, match="param_space"):
        tune.Tuner(quadratic, param_space=[1, 2])
    with pytest.raises(ValueError, match="differ from TuneConfig"):
        tune.Tuner(quadratic, param_space={"x": 1},
                   tune_config=tune.TuneConfig(metric="loss", mode="min",
                                               scheduler=ASHAScheduler(metric="acc")))
    with pytest.raises(ValueError, match="no experiment there"):
        tune.Tuner.restore(str(tmp_path), quadratic)
    with pytest.raises(RuntimeError, match="only inside a trainable"):
        tune.report({"x": 1})


def test_a_trial_asking_for_more_than_the_cluster_has_fails_at_fit(tmp_path) -> None:
    with pytest.raises(tune.TuneError, match=r"asks for .*GPU.* the cluster has at most"):
        tuner(tune.with_resources(quadratic, {"gpu": 1}), {"x": 1}, tmp_path).fit()


def test_the_experiment_explains_its_template(tmp_path) -> None:
    t = tuner(tune.with_resources(quadratic, {"cpu": 2}), {"x": tune.uniform(0, 1)}, tmp_path,
              metric="loss", mode="min", scheduler=ASHAScheduler(max_t=10))
    text = t.explain()
    assert "ACTOR TrialRunner" in text and "{CPU: 2}" in text
    assert "ASHAScheduler (metric='loss', mode='min'" in text
    assert "BasicVariantGenerator" in text
    graph = t.visualize(str(tmp_path / "plan.svg"))
    assert "TrialRunner" in graph.source and (tmp_path / "plan.svg").exists()


# -- population based training ------------------------------------------------------------

def grows(config):
    """score += lr per step, checkpointed every step. The trials keep in step with each
    other (none starts step s before all have done s - 1, or finished), so the population
    PBT compares is there at every perturbation, however the machine schedules them."""
    checkpoint = tune.get_checkpoint()
    score = float(Path(checkpoint.path, "score").read_text()) if checkpoint else 0.0
    step = int(Path(checkpoint.path, "step").read_text()) if checkpoint else 0
    progress = Path(config["dir"])
    me = progress / tune.get_context().get_trial_id()

    def reached(step: int) -> None:  # the furthest this trial got (an exploit jumps ahead)
        if not me.exists() or int(me.read_text() or 0) < step:
            me.write_text(str(step))

    reached(step)  # 0, or the step of the checkpoint it resumes from
    while step < 12:
        step += 1
        deadline = time.monotonic() + DEADLINE_S
        while True:  # a barrier: poll the others' progress files
            done = [int(f.read_text() or 0) for f in progress.iterdir() if f != me]
            if len(done) == 3 and min(done) >= step - 1:
                break
            assert time.monotonic() < deadline, f"step {step}: the others are at {done}"
            time.sleep(0.005)
        score += config["lr"]
        folder = tempfile.mkdtemp()
        Path(folder, "score").write_text(str(score))
        Path(folder, "step").write_text(str(step))
        tune.report({"score": score, "lr": config["lr"], "step": step},
                    checkpoint=tune.Checkpoint.from_directory(folder))
        reached(step)


def test_pbt_exploits_better_trials_checkpoints_and_mutates_their_config(tmp_path) -> None:
    from sluice.tune.schedulers import PopulationBasedTraining

    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=2,
                                  hyperparam_mutations={"lr": [0.01, 0.1, 1.0, 10.0]},
                                  quantile_fraction=0.5, resample_probability=0.5, seed=0)
    progress = tmp_path / "progress"
    progress.mkdir()
    grid = tuner(grows, {"lr": tune.grid_search([0.01, 0.1, 1.0, 10.0]), "dir": str(progress)},
                 tmp_path, metric="score", mode="max", scheduler=pbt, reuse_actors=True).fit()
    assert grid.num_terminated == 4
    frames = {r.trial_id: r.metrics_dataframe for r in grid}
    exploited = jumped = 0
    for trial_id, frame in frames.items():
        lrs, scores = list(frame["lr"]), list(frame["score"])
        reported = [s for f in frames.values() for s in f["score"]]
        for i in range(1, len(lrs)):
            if lrs[i] != lrs[i - 1]:  # a new config: the trial exploited another
                exploited += 1
                # it resumed from a checkpoint of a trial: a score reported, plus one step
                # of the new lr (not its own last score plus one step)
                assert any(abs(scores[i] - lrs[i] - s) < 1e-6 for s in reported), frames
                # (a trial may copy one that copied it before: then it continues from
                # its own score; at least one exploit lands elsewhere, below)
                jumped += abs(scores[i] - lrs[i] - scores[i - 1]) > 1e-6
    assert exploited >= 1 and jumped >= 1
    # every trial reached the end, the worst one included (exploit, not stop)
    assert all(r.metrics["step"] == 12 for r in grid)
    assert max(r.metrics["score"] for r in grid) >= 12 * 10.0
    with pytest.raises(ValueError, match="needs hyperparam_mutations"):
        PopulationBasedTraining()


# -- progress -----------------------------------------------------------------------------

def test_progress_prints_plain_lines_when_not_in_a_terminal_and_nothing_at_verbose_0(
        tmp_path, capsys) -> None:
    t = tune.Tuner(quadratic, param_space={"x": tune.grid_search([1, 3])},
                   tune_config=tune.TuneConfig(metric="loss", mode="min"),
                   run_config=tune.RunConfig(storage_path=str(tmp_path), name="loud", verbose=1))
    t.fit()
    out = capsys.readouterr().out
    assert "[tune] done: 2 TERMINATED | best loss=0.333333" in out
    tuner(quadratic, {"x": 1}, tmp_path, metric="loss", mode="min").fit()  # verbose=0
    assert capsys.readouterr().out == ""


def test_the_terminal_table_lists_trials_by_status_with_the_best(tmp_path) -> None:
    import io

    from sluice.libs.tune.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    t = tuner(quadratic, {"x": tune.grid_search([1, 3, 5])}, tmp_path, metric="loss",
              mode="min")
    grid = t.fit()
    progress = Progress(1, "loss", "min", stream=screen)
    progress.update(t.controller, force=True)
    progress.close(t.controller)
    text = screen.getvalue()
    assert "3 TERMINATED | best loss=0.333333" in text
    best = grid.get_best_result().metrics["loss"]
    assert f"{best:.4g}" in text and "x=3" in text


def test_a_metric_no_trial_reports_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(tune.TuneError, match=r"reported \['i', 'loss'\].*without 'acc', "
                                             r"the metric AsyncHyperBandScheduler ranks"):
        tuner(quadratic, {"x": 1}, tmp_path, metric="acc", mode="max",
              scheduler=ASHAScheduler(max_t=5)).fit()


def test_tune_config_takes_rays_field_order_and_spellings() -> None:
    import datetime as dt

    config = tune.TuneConfig("min", "loss", max_concurrent_trials=0,
                             time_budget_s=dt.timedelta(minutes=2))
    assert (config.mode, config.metric) == ("min", "loss")  # Ray's order: mode, metric
    assert config.max_concurrent_trials is None  # 0: no limit, as in Ray
    assert config.time_budget_s == 120.0
    with pytest.raises(ValueError, match="max_concurrent_trials=-1"):
        tune.TuneConfig(max_concurrent_trials=-1)
