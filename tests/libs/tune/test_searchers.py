"""Search algorithms (sluice/libs/tune/search/): the variant generator's options, the
concurrency limiter, the repeater, and their saved states."""

from __future__ import annotations

import pytest

from sluice import tune
from sluice.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Repeater, Searcher


def drain(searcher, n=100):
    out = []
    for i in range(n):
        config = searcher.suggest(f"t{i}")
        if config == Searcher.FINISHED:
            break
        out.append(config)
    return out


def test_points_to_evaluate_come_first_and_are_completed_from_the_space() -> None:
    gen = BasicVariantGenerator(points_to_evaluate=[{"a": 5}], random_state=0)
    gen.set_search_properties("m", "max", {"a": tune.uniform(0, 1), "b": tune.choice([7])},
                              num_samples=2)
    out = drain(gen)
    assert out[0] == {"a": 5, "b": 7}
    assert len(out) == 3 and all(0 <= c["a"] < 1 for c in out[1:])
    assert gen.total_samples == 3


def test_a_seeded_generator_repeats_its_configs_and_restores_where_it_was() -> None:
    space = {"lr": tune.loguniform(1e-4, 1e-1)}
    first = BasicVariantGenerator(random_state=7)
    first.set_search_properties(None, None, space, num_samples=6)
    a = [first.suggest(f"t{i}") for i in range(3)]
    state = first.get_state()
    rest = drain(first)
    again = BasicVariantGenerator(random_state=7)
    again.set_search_properties(None, None, space, num_samples=6)
    assert [again.suggest(f"t{i}") for i in range(3)] == a
    restored = BasicVariantGenerator()  # as Tuner.restore makes it: the space, then the state
    restored.set_search_properties(None, None, space, num_samples=6)
    restored.set_state(state)
    assert drain(restored) == rest


def test_max_concurrent_holds_back_suggestions_until_a_trial_completes() -> None:
    gen = BasicVariantGenerator(max_concurrent=2)
    gen.set_search_properties(None, None, {"a": tune.grid_search([1, 2, 3])}, num_samples=1)
    assert [gen.suggest("t0"), gen.suggest("t1"), gen.suggest("t2")] == [{"a": 1}, {"a": 2}, None]
    gen.on_trial_complete("t0", {"m": 1})
    assert gen.suggest("t2") == {"a": 3}


class Counting(Searcher):
    """A custom searcher: x = 0, 1, 2, ... and what it was told."""

    def __init__(self):
        super().__init__(metric="m", mode="max")
        self.n = 0
        self.completed = []

    def suggest(self, trial_id):
        self.n += 1
        return {"x": self.n - 1}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.completed.append((trial_id, result, error))


def test_the_concurrency_limiter_caps_live_trials() -> None:
    limiter = ConcurrencyLimiter(Counting(), max_concurrent=2)
    assert [limiter.suggest("a"), limiter.suggest("b"), limiter.suggest("c")] == [
        {"x": 0}, {"x": 1}, None]
    limiter.on_trial_complete("a", {"m": 1})
    assert limiter.suggest("c") == {"x": 2}
    with pytest.raises(ValueError, match="at least 1"):
        ConcurrencyLimiter(Counting(), max_concurrent=0)


def test_a_batch_limiter_waits_for_the_whole_batch() -> None:
    inner = Counting()
    limiter = ConcurrencyLimiter(inner, max_concurrent=2, batch=True)
    limiter.suggest("a"), limiter.suggest("b")
    limiter.on_trial_complete("a", {"m": 1})
    assert limiter.suggest("c") is None and inner.completed == []
    limiter.on_trial_complete("b", {"m": 2})
    assert [c[0] for c in inner.completed] == ["a", "b"] and limiter.suggest("c") == {"x": 2}


def test_the_repeater_runs_each_config_n_times_and_reports_the_mean() -> None:
    inner = Counting()
    repeater = Repeater(inner, repeat=3)
    configs = [repeater.suggest(f"t{i}") for i in range(4)]
    assert [c["x"] for c in configs] == [0, 0, 0, 1]
    assert [c["__trial_index__"] for c in configs] == [0, 1, 2, 0]
    for i, score in enumerate([1.0, 2.0, 6.0]):
        repeater.on_trial_complete(f"t{i}", {"m": score})
    assert inner.completed == [("t0", {"m": 3.0}, False)]
