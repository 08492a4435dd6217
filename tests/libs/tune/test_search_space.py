"""Search spaces (sluice/libs/tune/search_space.py): Ray Tune's sampling functions and the
variant generation over them: ranges, quantization, grid order, repeats, seeds."""

from __future__ import annotations

import math
import random

import pytest

from sluice import tune
from sluice.libs.tune.search_space import count_variants, generate_variants


def configs(space, num_samples=1, seed=0):
    return [c for _, c in generate_variants(space, num_samples, random.Random(seed))]


def test_each_domain_samples_within_its_range() -> None:
    space = {"u": tune.uniform(2, 3), "qu": tune.quniform(0, 1, 0.25),
             "lu": tune.loguniform(1e-4, 1e-1), "qlu": tune.qloguniform(1, 1000, 5),
             "ri": tune.randint(0, 3), "qri": tune.qrandint(0, 10, 5),
             "lri": tune.lograndint(1, 100), "qlri": tune.qlograndint(1, 100, 10),
             "c": tune.choice(["a", "b"]), "n": tune.randn(10, 0.1)}
    out = configs(space, num_samples=300)
    assert all(2 <= c["u"] < 3 for c in out)
    assert {c["qu"] for c in out} <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert all(1e-4 <= c["lu"] < 1e-1 for c in out)
    # log-uniform: about a third of the samples in each decade
    assert 60 < sum(c["lu"] < 1e-3 for c in out) < 140
    assert all(c["qlu"] % 5 == 0 for c in out)
    assert {c["ri"] for c in out} == {0, 1, 2}  # upper bound excluded
    assert {c["qri"] for c in out} == {0, 5, 10}  # qrandint: upper bound included
    assert all(1 <= c["lri"] < 100 and isinstance(c["lri"], int) for c in out)
    assert all(c["qlri"] % 10 == 0 for c in out)
    assert {c["c"] for c in out} == {"a", "b"}
    assert 9.9 < sum(c["n"] for c in out) / len(out) < 10.1


def test_grids_repeat_per_sample_with_the_first_variable_fastest() -> None:
    space = {"a": tune.grid_search([1, 2]), "b": tune.grid_search(["x", "y"]), "k": 7}
    assert [(c["a"], c["b"]) for c in configs(space, num_samples=2)] == [
        (1, "x"), (2, "x"), (1, "y"), (2, "y")] * 2
    assert all(c["k"] == 7 for c in configs(space))
    assert count_variants(space, 3) == 12


def test_nested_spaces_and_sample_from_reading_the_config_so_far() -> None:
    space = {"model": {"width": tune.grid_search([8, 16]), "depth": tune.randint(1, 4)},
             "lr": tune.loguniform(1e-3, 1e-1),
             "double": tune.sample_from(lambda spec: spec.config.model.width * 2),
             "scaled": tune.sample_from(lambda spec: spec["config"]["lr"] * 10),
             "plain": tune.sample_from(lambda: 5)}
    out = configs(space)
    assert [c["model"]["width"] for c in out] == [8, 16]
    assert [c["double"] for c in out] == [16, 32]
    assert all(math.isclose(c["scaled"], c["lr"] * 10) for c in out)
    assert all(c["plain"] == 5 and 1 <= c["model"]["depth"] < 4 for c in out)


def test_the_same_seed_gives_the_same_configs() -> None:
    space = {"lr": tune.loguniform(1e-4, 1e-1), "opt": tune.choice(["adam", "sgd"])}
    assert configs(space, 5, seed=3) == configs(space, 5, seed=3)
    assert configs(space, 5, seed=3) != configs(space, 5, seed=4)


def test_resolved_values_name_each_sampled_path() -> None:
    space = {"model": {"width": tune.grid_search([8])}, "lr": tune.uniform(0, 1), "k": 1}
    resolved, config = next(generate_variants(space, 1, random.Random(0)))
    assert resolved == {"model/width": 8, "lr": config["lr"]}


@pytest.mark.parametrize("make, message", [
    (lambda: tune.uniform(3, 2), "lower < upper"),
    (lambda: tune.loguniform(0, 1), "above 0"),
    (lambda: tune.choice([]), "at least one category"),
    (lambda: tune.grid_search([]), "at least one value"),
    (lambda: tune.quniform(0, 1, 0), "q=0"),
    (lambda: tune.sample_from(3), "needs a function"),
])
def test_bad_domains_say_what_is_wrong(make, message) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_a_param_space_that_is_not_a_dict_is_refused() -> None:
    with pytest.raises(TypeError, match="param_space must be a dict"):
        list(generate_variants([1, 2]))  # type: ignore[arg-type]
