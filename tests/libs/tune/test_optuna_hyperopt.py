"""OptunaSearch and HyperOptSearch (sluice.tune.search.optuna / .hyperopt) over the real
optuna and hyperopt packages: the space conversion, suggest and on_trial_complete on their
own, then Tuners with real trial actors that search a quadratic."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Iterator

import pytest

import sluice
from sluice import tune
from sluice.tune.search import ConcurrencyLimiter, Searcher

optuna = pytest.importorskip("optuna")
hyperopt = pytest.importorskip("hyperopt")

from sluice.tune.search.hyperopt import HyperOptSearch  # noqa: E402
from sluice.tune.search.optuna import OptunaSearch  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "x": tune.uniform(-5, 5),
    "lr": tune.loguniform(1e-4, 1e-1),
    "layers": tune.randint(1, 4),
    "width": tune.qrandint(0, 20, 5),
    "act": tune.choice(["relu", "tanh"]),
    "model": {"dropout": tune.quniform(0, 1, 0.25), "kind": "mlp"},
    "opt": "adam",
}


def loss_of(config: dict) -> float:
    return (config["x"] - 3) ** 2


def drive(searcher: Searcher, n: int, error_at: tuple[int, ...] = ()) -> list[dict]:
    """Suggest and complete one trial at a time (trial ``i`` in ``error_at`` errors)."""
    configs = []
    for i in range(n):
        config = searcher.suggest(f"t{i}")
        assert isinstance(config, dict)
        configs.append(config)
        searcher.on_trial_result(f"t{i}", {"loss": loss_of(config) + 1, "training_iteration": 1})
        searcher.on_trial_complete(f"t{i}", {"loss": loss_of(config)}, error=i in error_at)
    return configs


def optuna_search(space: dict = SPACE, num_samples: int = 50, **kwargs) -> OptunaSearch:
    searcher = OptunaSearch(metric="loss", mode=kwargs.pop("mode", "min"), **kwargs)
    assert searcher.set_search_properties(None, None, space, num_samples=num_samples)
    return searcher


def hyperopt_search(space: dict = SPACE, num_samples: int = 50, **kwargs) -> HyperOptSearch:
    searcher = HyperOptSearch(metric="loss", mode=kwargs.pop("mode", "min"), **kwargs)
    assert searcher.set_search_properties(None, None, space, num_samples=num_samples)
    return searcher


def check_config(config: dict) -> None:
    """A config of SPACE: each value in its domain, the constants passed through."""
    assert -5 <= config["x"] <= 5 and 1e-4 <= config["lr"] <= 1e-1
    assert config["layers"] in (1, 2, 3) and isinstance(config["layers"], int)
    assert config["width"] in (0, 5, 10, 15, 20) and isinstance(config["width"], int)
    assert config["act"] in ("relu", "tanh")
    assert config["model"]["dropout"] in (0, 0.25, 0.5, 0.75, 1.0)
    assert config["model"]["kind"] == "mlp" and config["opt"] == "adam"


# -- optional packages: imported only when a searcher is made ---------------------------------

def test_importing_the_modules_does_not_import_the_packages() -> None:
    code = ("import sys; import sluice.tune.search.optuna, sluice.tune.search.hyperopt; "
            "print('optuna' in sys.modules, 'hyperopt' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("package, make", [("optuna", lambda: OptunaSearch()),
                                           ("hyperopt", lambda: HyperOptSearch())])
def test_a_missing_package_raises_an_import_error_naming_the_extra(monkeypatch, package,
                                                                    make) -> None:
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(ImportError, match=rf"pip install 'sluice\[tune\]'.*pip install {package}"):
        make()


def test_the_searchers_are_reachable_under_ray_tunes_module_names() -> None:
    import sluice.libs.tune.search.hyperopt as hyperopt_module
    import sluice.libs.tune.search.optuna as optuna_module
    import sluice.tune.search.hyperopt
    import sluice.tune.search.optuna

    assert sluice.tune.search.optuna.OptunaSearch is optuna_module.OptunaSearch
    assert sluice.tune.search.hyperopt.HyperOptSearch is hyperopt_module.HyperOptSearch


# -- the space conversion ---------------------------------------------------------------------

def test_optuna_gets_the_param_space_as_its_distributions() -> None:
    searcher = optuna_search()
    check_config(searcher.suggest("t0"))
    dists = searcher.study.trials[0].distributions
    FloatD, IntD = optuna.distributions.FloatDistribution, optuna.distributions.IntDistribution
    assert dists == {
        "x": FloatD(-5, 5), "lr": FloatD(1e-4, 1e-1, log=True),
        "layers": IntD(1, 3), "width": IntD(0, 20, step=5),
        "act": optuna.distributions.CategoricalDistribution(["relu", "tanh"]),
        "model/dropout": FloatD(0, 1, step=0.25)}
    assert searcher.resolved_values("t0") == searcher.study.trials[0].params


def test_hyperopt_gets_the_param_space_as_hp_expressions() -> None:
    searcher = hyperopt_search(n_initial_points=5, random_state_seed=0)
    configs = drive(searcher, 30)
    for config in configs:
        check_config(config)
    # each sampled parameter is one hyperopt label; every value of the small domains comes up
    assert set(searcher.trials.trials[0]["misc"]["vals"]) == {
        "x", "lr", "layers", "width", "act", "model/dropout"}
    assert {c["layers"] for c in configs} == {1, 2, 3}
    assert {c["act"] for c in configs} == {"relu", "tanh"}
    assert searcher.resolved_values("t0") == {
        "x": configs[0]["x"], "lr": configs[0]["lr"], "layers": configs[0]["layers"],
        "width": configs[0]["width"], "act": configs[0]["act"],
        "model/dropout": configs[0]["model"]["dropout"]}


@pytest.mark.parametrize("make", [OptunaSearch, HyperOptSearch])
@pytest.mark.parametrize("value, what", [(tune.grid_search([1, 2]), "grid_search"),
                                         (tune.sample_from(lambda spec: 1), "sample_from")])
def test_grid_search_and_sample_from_are_refused_with_a_clear_error(tmp_path, make, value,
                                                                    what) -> None:
    with pytest.raises(ValueError, match=rf"{make.__name__} does not support {what} .*'b/c'"):
        tune.Tuner(lambda config: None, param_space={"a": tune.uniform(0, 1), "b": {"c": value}},
                   tune_config=tune.TuneConfig(metric="loss", mode="min", search_alg=make()),
                   run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))


def test_optuna_refuses_a_normal_distribution_and_hyperopt_takes_it() -> None:
    with pytest.raises(ValueError, match="OptunaSearch does not support normal"):
        optuna_search({"x": tune.randn(0, 1)})
    searcher = hyperopt_search({"x": tune.qrandn(10, 2, 0.5)}, random_state_seed=0)
    values = [searcher.suggest(f"t{i}")["x"] for i in range(20)]
    assert all(v % 0.5 == 0 for v in values) and 5 < sum(values) / len(values) < 15


def test_a_space_of_the_searchers_own_takes_the_tuners_constants_only() -> None:
    searcher = OptunaSearch({"a/b": optuna.distributions.FloatDistribution(0, 1)},
                            metric="loss", mode="min", seed=0)
    assert not searcher.set_search_properties(None, None, {"c": tune.uniform(0, 1)},
                                              num_samples=2)
    assert searcher.set_search_properties(None, None, {"c": 7, "a": {"d": 1}}, num_samples=2)
    config = searcher.suggest("t0")
    assert config["c"] == 7 and config["a"]["d"] == 1 and 0 <= config["a"]["b"] <= 1

    searcher = HyperOptSearch({"a": {"b": hyperopt.hp.uniform("a/b", 0, 1)}}, metric="loss",
                              mode="min", random_state_seed=0)
    assert not searcher.set_search_properties(None, None, {"c": tune.uniform(0, 1)})
    assert searcher.set_search_properties(None, None, {"c": 7}, num_samples=2)
    config = searcher.suggest("t0")
    assert config["c"] == 7 and 0 <= config["a"]["b"] <= 1


def test_optuna_takes_a_define_by_run_space() -> None:
    def space(trial):
        trial.suggest_float("x", -5, 5)
        if trial.suggest_categorical("deep", [True, False]):
            trial.suggest_int("layers", 2, 8)
        return {"opt": "adam"}

    searcher = OptunaSearch(space, metric="loss", mode="min", seed=0)
    assert searcher.set_search_properties(None, None, {}, num_samples=20)
    for config in drive(searcher, 20):
        assert config["opt"] == "adam" and -5 <= config["x"] <= 5
        assert ("layers" in config) == config["deep"]


# -- suggest and on_trial_complete ------------------------------------------------------------

def test_optuna_tells_the_study_each_result_and_failure() -> None:
    searcher = optuna_search(seed=0)
    configs = drive(searcher, 12, error_at=(3,))
    searcher.suggest("t12")
    searcher.on_trial_complete("t12", {"other": 1.0})  # no metric: pruned
    state = optuna.trial.TrialState
    trials = searcher.study.trials
    assert [t.state for t in trials] == [state.COMPLETE] * 3 + [state.FAIL] + [
        state.COMPLETE] * 8 + [state.PRUNED]
    assert [t.value for t in trials[4:12]] == [loss_of(c) for c in configs[4:12]]
    assert trials[0].intermediate_values == {1: loss_of(configs[0]) + 1}
    assert searcher.study.direction == optuna.study.StudyDirection.MINIMIZE
    maximizing = optuna_search(mode="max")
    maximizing.suggest("t0")
    assert maximizing.study.direction == optuna.study.StudyDirection.MAXIMIZE


def test_hyperopt_records_losses_negated_for_max_and_drops_errors() -> None:
    searcher = hyperopt_search(mode="max", random_state_seed=0, n_initial_points=3)
    configs = drive(searcher, 8, error_at=(2,))
    docs = {doc["tid"]: doc for doc in searcher.trials._dynamic_trials}
    assert docs[2]["state"] == hyperopt.base.JOB_STATE_ERROR
    assert len(searcher.trials.trials) == 7  # the errored one is not learned from
    assert [docs[i]["result"]["loss"] for i in (0, 1, 3, 7)] == [
        -loss_of(configs[i]) for i in (0, 1, 3, 7)]


@pytest.mark.parametrize("make", [optuna_search, hyperopt_search])
def test_num_samples_ends_the_search(make) -> None:
    searcher = make(num_samples=5)
    assert all(isinstance(searcher.suggest(f"t{i}"), dict) for i in range(5))
    assert searcher.suggest("t5") == Searcher.FINISHED
    assert searcher.suggest("t6") == Searcher.FINISHED


@pytest.mark.parametrize("make, seed", [(optuna_search, "seed"),
                                        (hyperopt_search, "random_state_seed")])
def test_a_seed_makes_the_search_reproducible(make, seed) -> None:
    # past the random start: the model-based suggestions repeat too
    first = drive(make(**{seed: 7}, **_few_initial(make)), 15)
    again = drive(make(**{seed: 7}, **_few_initial(make)), 15)
    other = drive(make(**{seed: 8}, **_few_initial(make)), 15)
    assert first == again and first != other


def _few_initial(make) -> dict:
    return {"n_initial_points": 5} if make is hyperopt_search else {}


@pytest.mark.parametrize("make", [optuna_search, hyperopt_search])
def test_points_to_evaluate_come_first(make) -> None:
    point = {"x": 1.5, "lr": 0.01, "layers": 2, "width": 10, "act": "tanh",
             "model": {"dropout": 0.5}}
    searcher = make(points_to_evaluate=[point], num_samples=3)
    config = searcher.suggest("t0")
    assert {k: config[k] for k in point if k != "model"} == {
        k: v for k, v in point.items() if k != "model"}
    assert config["model"] == {"dropout": 0.5, "kind": "mlp"} and config["opt"] == "adam"
    check_config(searcher.suggest("t1"))


def test_optuna_learns_evaluated_rewards_before_its_first_suggestion() -> None:
    searcher = optuna_search({"x": tune.uniform(-5, 5)}, points_to_evaluate=[{"x": 3.0}],
                             evaluated_rewards=[0.0], seed=0)
    assert searcher.suggest("t0") is not None
    done = searcher.study.trials[0]
    assert done.params == {"x": 3.0} and done.value == 0.0
    with pytest.raises(ValueError, match="one reward per point"):
        OptunaSearch(points_to_evaluate=[{"x": 1}], evaluated_rewards=[1.0, 2.0])


def test_hyperopt_refuses_a_point_without_every_parameter() -> None:
    searcher = hyperopt_search(points_to_evaluate=[{"x": 1.0}])
    with pytest.raises(ValueError, match="each point must give every sampled parameter"):
        searcher.suggest("t0")


@pytest.mark.parametrize("make", [OptunaSearch, HyperOptSearch])
def test_a_search_without_metric_or_space_says_what_is_missing(make) -> None:
    searcher = make()
    searcher.set_search_properties(None, None, {"x": tune.uniform(0, 1)}, num_samples=2)
    with pytest.raises(RuntimeError, match="needs a metric and a mode"):
        searcher.suggest("t0")
    searcher = make(metric="loss", mode="min")
    searcher.set_search_properties(None, None, {"x": 1}, num_samples=2)
    with pytest.raises(RuntimeError, match="has no search space"):
        searcher.suggest("t0")


@pytest.mark.parametrize("make, seed", [(optuna_search, "seed"),
                                        (hyperopt_search, "random_state_seed")])
def test_the_state_restores_a_search_midway(make, seed) -> None:
    searcher = make(**{seed: 3})
    drive(searcher, 6)
    searcher.suggest("live")
    state = pickle.loads(pickle.dumps(searcher.get_state()))
    expected = [searcher.suggest(f"n{i}") for i in range(3)]
    restored = make(**{seed: 99})
    restored.set_state(state)
    assert [restored.suggest(f"n{i}") for i in range(3)] == expected
    restored.on_trial_complete("live", {"loss": 0.5})  # a trial live at the save ends
    assert restored.resolved_values("live") == searcher.resolved_values("live")


# -- end to end: Tuners with real trial actors ------------------------------------------------

@pytest.fixture(scope="module")
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


def trainables() -> tuple:
    """The trainables, made in a function so that they pickle by value: a trial actor then
    does not import this module (nor optuna and hyperopt with it, a second per actor)."""
    def quadratic(config):
        for i in range(2):  # the last result is the loss; the first one above it
            tune.report({"loss": (config["x"] - 3) ** 2 + (1 - i)})

    def failing_below_zero(config):
        if config["x"] < 0:
            raise ValueError("x below zero")
        quadratic(config)

    return quadratic, failing_below_zero


quadratic, failing_below_zero = trainables()


def fit(search_alg: Searcher, tmp_path, num_samples: int, trainable=quadratic):
    tuner = tune.Tuner(trainable, param_space={"x": tune.uniform(-10, 10), "tag": "q"},
                       tune_config=tune.TuneConfig(metric="loss", mode="min",
                                                   num_samples=num_samples,
                                                   search_alg=search_alg),
                       run_config=tune.RunConfig(storage_path=str(tmp_path), name="exp",
                                                 verbose=0))
    return tuner.fit()


def test_a_tuner_with_optuna_finds_the_optimum(runtime, tmp_path) -> None:
    searcher = OptunaSearch(seed=0)
    grid = fit(searcher, tmp_path, 30)
    assert len(grid) == 30 and grid.num_terminated == 30 and grid.num_errors == 0
    assert all(r.config["tag"] == "q" and -10 <= r.config["x"] <= 10 for r in grid)
    # TPE's best of 30 on a 1-D quadratic is within 1 of the optimum (0.3 at worst over
    # 500 simulated seeds and completion orders)
    best = grid.get_best_result()
    assert best.metrics["loss"] < 1.0 and abs(best.config["x"] - 3) < 1.0
    # the study learned every trial's final loss, and its intermediate ones
    trials = searcher.study.trials
    assert sorted(t.value for t in trials) == sorted(r.metrics["loss"] for r in grid)
    assert all(t.intermediate_values == {1: t.value + 1, 2: t.value} for t in trials)


def test_a_tuner_with_hyperopt_finds_the_optimum(runtime, tmp_path) -> None:
    searcher = HyperOptSearch(random_state_seed=0, n_initial_points=10)
    grid = fit(searcher, tmp_path, 30)
    assert len(grid) == 30 and grid.num_terminated == 30 and grid.num_errors == 0
    assert all(r.config["tag"] == "q" and -10 <= r.config["x"] <= 10 for r in grid)
    best = grid.get_best_result()
    assert best.metrics["loss"] < 1.0 and abs(best.config["x"] - 3) < 1.0
    assert sorted(searcher.trials.losses()) == sorted(r.metrics["loss"] for r in grid)


def test_a_concurrency_limited_optuna_search_runs_every_trial(runtime, tmp_path) -> None:
    searcher = OptunaSearch(seed=1)
    grid = fit(ConcurrencyLimiter(searcher, max_concurrent=2), tmp_path, 8)
    assert len(grid) == 8 and grid.num_terminated == 8
    assert len(searcher.study.trials) == 8
    assert {t.state for t in searcher.study.trials} == {optuna.trial.TrialState.COMPLETE}


def test_errored_trials_are_told_as_failures(runtime, tmp_path) -> None:
    searcher = OptunaSearch(seed=0)
    grid = fit(searcher, tmp_path, 12, trainable=failing_below_zero)
    errored = {r.config["x"] for r in grid if r.error is not None}
    assert errored and all(x < 0 for x in errored) and len(grid) == 12
    failed = {t.params["x"] for t in searcher.study.trials
              if t.state == optuna.trial.TrialState.FAIL}
    assert failed == errored
