"""Ray Serve's queue-length autoscaling policy (sluice/libs/serve/autoscaling.py), on
synthetic metric series: pure code, no clock, no actors."""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable

import pytest

from sluice.libs.serve.autoscaling import (
    AutoscalingConfig,
    Policy,
    PolicyState,
    apply_delays,
    decide,
    scaled_desire,
    window_total,
)


def simulate(config: AutoscalingConfig, load: Callable[[float], float], ticks: int,
             tick_s: float = 1.0, target: int | None = None) -> list[int]:
    """The target after each of ``ticks`` decisions, one every ``tick_s``, with the load
    sampled once per tick; the running count follows the target at once."""
    policy = Policy(config, target)
    samples: deque[tuple[float, float]] = deque()
    targets = []
    for tick in range(ticks):
        now = tick * tick_s
        samples.append((now, load(now)))
        # Keep one sample older than the window (it holds at the window's start).
        while len(samples) > 2 and samples[1][0] <= now - config.look_back_period_s:
            samples.popleft()
        targets.append(policy.decide(now, samples))
    return targets


def changes(targets: list[int]) -> list[tuple[int, int, int]]:
    """(tick, from, to) for every change of the target."""
    return [(i, a, b) for i, (a, b) in enumerate(zip(targets, targets[1:]), 1) if a != b]


# --- upscale and downscale delays ------------------------------------------------------------

def test_upscale_waits_for_the_delay_then_applies():
    config = AutoscalingConfig(max_replicas=10, upscale_delay_s=30, look_back_period_s=30)
    targets = simulate(config, lambda t: 8.0, ticks=40)  # 8 requests / 2 per replica = 4
    assert targets[:30] == [1] * 30  # t = 0 .. 29: the wait
    assert targets[30:] == [4] * 10  # t = 30: the decision held for 30 s


def test_downscale_waits_for_its_longer_delay():
    config = AutoscalingConfig(max_replicas=10, upscale_delay_s=30, downscale_delay_s=600,
                               look_back_period_s=1)
    targets = simulate(config, lambda t: 8.0 if t < 100 else 2.0, ticks=800, target=4)
    assert targets[:100] == [4] * 100
    # The load fell at t = 100; the 1 s window's mean reads it from t = 101 (at 100 the
    # window still holds the 8 of t = 99): the first downscale decision, applied 600 s on.
    assert set(targets[100:701]) == {4}
    assert targets[701:] == [1] * 99
    assert changes(targets) == [(701, 4, 1)]


def test_a_decision_in_the_other_direction_restarts_the_wait():
    config = AutoscalingConfig(max_replicas=10, upscale_delay_s=10, look_back_period_s=1)
    # High, except a quiet second from 9 to 10: the 1 s window reads it at t = 10, a
    # "same count" decision that ends the run of upscale decisions begun at 0.
    targets = simulate(config, lambda t: 0.0 if t == 9 else 8.0, ticks=25)
    assert targets[:21] == [1] * 21
    assert targets[21:] == [4] * 4  # 10 s after the new run began, at t = 11


def test_delay_logic_keeps_direction_and_start():
    config = AutoscalingConfig(max_replicas=10, upscale_delay_s=5, downscale_delay_s=50)
    target, state = apply_delays(config, PolicyState(), now=0.0, desired=3, target_replicas=2)
    assert (target, state) == (2, PolicyState(direction=1, since=0.0))
    target, state = apply_delays(config, state, now=4.0, desired=5, target_replicas=2)
    assert (target, state) == (2, PolicyState(direction=1, since=0.0))
    target, state = apply_delays(config, state, now=5.0, desired=5, target_replicas=2)
    assert (target, state) == (5, PolicyState())
    target, state = apply_delays(config, state, now=6.0, desired=1, target_replicas=5)
    assert (target, state) == (5, PolicyState(direction=-1, since=6.0))


# --- bounds, factors, zero ----------------------------------------------------------------

def test_the_target_is_clamped_to_min_and_max():
    config = AutoscalingConfig(min_replicas=2, max_replicas=5, upscale_delay_s=0,
                               downscale_delay_s=0, look_back_period_s=1)
    assert simulate(config, lambda t: 100.0, ticks=3) == [5, 5, 5]
    assert simulate(config, lambda t: 0.0, ticks=3, target=5) == [2, 2, 2]
    assert Policy(AutoscalingConfig(min_replicas=2, max_replicas=5, initial_replicas=4)).target == 4
    assert Policy(AutoscalingConfig(min_replicas=2, max_replicas=5)).target == 2


def test_upscaling_factor_takes_part_of_the_step_each_decision():
    config = AutoscalingConfig(max_replicas=20, upscaling_factor=0.5, upscale_delay_s=0,
                               look_back_period_s=1)
    targets = simulate(config, lambda t: 18.0, ticks=6)  # wants 9
    assert targets == [5, 7, 8, 9, 9, 9]  # ceil(1 + 0.5*8), ceil(5 + 0.5*4), ...


def test_downscaling_factor_and_a_step_rounded_away_still_removes_one():
    config = AutoscalingConfig(max_replicas=20, downscaling_factor=0.5, downscale_delay_s=0,
                               look_back_period_s=1)
    assert scaled_desire(config, 10, 4.0) == 6  # wants 2: ceil(10 - 0.5*8)
    assert scaled_desire(config, 3, 4.0) == 2   # wants 2: ceil(3 - 0.5) = 3 would stall
    targets = simulate(config, lambda t: 4.0, ticks=5, target=10)
    assert targets == [6, 4, 3, 2, 2]


def test_deprecated_smoothing_factors_are_read_when_the_factors_are_unset():
    config = AutoscalingConfig(smoothing_factor=0.5, max_replicas=10)
    assert (config.get_upscaling_factor(), config.get_downscaling_factor()) == (0.5, 0.5)
    config = AutoscalingConfig(upscale_smoothing_factor=0.3, upscaling_factor=2.0, max_replicas=10)
    assert config.get_upscaling_factor() == 2.0


def test_downscale_never_goes_below_one_except_from_one():
    config = AutoscalingConfig(min_replicas=0, max_replicas=10, downscale_delay_s=10,
                               downscale_to_zero_delay_s=100, look_back_period_s=1)
    targets = simulate(config, lambda t: 0.0, ticks=120, target=4)
    # 4 -> 1 after 10 s; from 1 the next decision (t = 11) starts the 100 s wait for zero.
    assert changes(targets) == [(10, 4, 1), (111, 1, 0)]


def test_cold_start_skips_the_delay():
    config = AutoscalingConfig(min_replicas=0, max_replicas=10, upscale_delay_s=30)
    target, _ = decide(config, PolicyState(), now=0.0, target_replicas=0, samples=[(0.0, 3.0)])
    assert target == 1
    target, _ = decide(config, PolicyState(), now=0.0, target_replicas=0, samples=[])
    assert target == 0


# --- settling and flapping ---------------------------------------------------------------

@pytest.mark.parametrize("load", [0.5, 3.0, 4.0, 7.3, 12.0, 40.0])
@pytest.mark.parametrize("factors", [(None, None), (0.3, 0.3), (2.0, 0.5)])
def test_a_constant_load_settles_and_stays(load, factors):
    up, down = factors
    config = AutoscalingConfig(min_replicas=1, max_replicas=16, upscaling_factor=up,
                               downscaling_factor=down)  # Ray's delays: 30 s up, 600 s down
    for start in (1, 16):
        targets = simulate(config, lambda t: load, ticks=10_000, target=start)
        settled = config.clamp(math.ceil(load / config.target_ongoing_requests))
        assert targets[-1] == settled, (start, targets[-1])
        steps = changes(targets)
        directions = [b > a for _, a, b in steps]
        reversals = sum(x != y for x, y in zip(directions, directions[1:]))
        # Toward the settled count; an upscaling factor above 1 may overshoot once and
        # come back down, never more. Done well before the end.
        assert reversals <= (1 if (up or 1.0) > 1 else 0), steps
        assert not steps or steps[-1][0] < 5_000, steps
        assert targets[5_000:] == [settled] * 5_000


def test_a_load_of_exactly_n_targets_asks_for_n_on_every_tick():
    # 4 requests at 2 per replica over 3 running replicas: Ray's 3 * (4 / 6) may round to
    # 3; it must read as 2, always.
    config = AutoscalingConfig(max_replicas=16, target_ongoing_requests=2.0)
    for running in range(1, 17):
        for n in range(1, 17):
            total = n * 2.0
            assert scaled_desire(config, running, total) == n
            assert scaled_desire(AutoscalingConfig(max_replicas=16, target_ongoing_requests=0.7),
                                 running, n * 0.7) == n


@pytest.mark.parametrize("look_back", [1.0, 30.0])
def test_a_load_noisy_around_the_boundary_does_not_flap(look_back):
    rng = random.Random(15)
    noise = [4.0 + rng.uniform(-0.6, 0.6) for _ in range(10_000)]  # 2 or 3 replicas, by turns
    config = AutoscalingConfig(max_replicas=10, look_back_period_s=look_back)
    targets = simulate(config, lambda t: noise[int(t)], ticks=10_000, target=2)
    # At most one change (a mean that sat above 4 for a whole upscale delay), never back.
    assert len(changes(targets)) <= 1, changes(targets)
    # Without the delays the same series flaps: what the hysteresis prevents.
    eager = AutoscalingConfig(max_replicas=10, look_back_period_s=look_back, upscale_delay_s=0,
                              downscale_delay_s=0)
    assert len(changes(simulate(eager, lambda t: noise[int(t)], ticks=10_000, target=2))) > 10


def test_a_load_that_steps_up_then_down_scales_up_then_back_down_once_each():
    config = AutoscalingConfig(max_replicas=10)
    targets = simulate(config, lambda t: 12.0 if 1_000 <= t < 3_000 else 1.0, ticks=6_000)
    ups = [c for c in changes(targets) if c[2] > c[1]]
    downs = [c for c in changes(targets) if c[2] < c[1]]
    assert [c[1:] for c in ups] == [(1, 6)] and 1_000 < ups[0][0] <= 1_060
    assert [c[1:] for c in downs] == [(6, 1)] and 3_600 <= downs[0][0] <= 3_660


# --- the metric window ------------------------------------------------------------------

def test_window_mean_is_weighted_by_time_and_carries_the_sample_before_the_window():
    samples = [(0.0, 10.0), (8.0, 0.0), (9.0, 20.0)]
    # Window [5, 10]: 10 held from 5 to 8, 0 from 8 to 9, 20 from 9 to 10 -> 50 / 5.
    assert window_total(samples, now=10.0, look_back_period_s=5.0) == pytest.approx(10.0)
    assert window_total(samples, now=10.0, look_back_period_s=5.0,
                        aggregation_function="max") == 20.0
    assert window_total(samples, now=10.0, look_back_period_s=5.0,
                        aggregation_function="min") == 0.0
    assert window_total([], now=10.0, look_back_period_s=5.0) == 0.0
    assert window_total([(11.0, 5.0)], now=10.0, look_back_period_s=5.0) == 0.0  # future
    assert window_total([(10.0, 5.0)], now=10.0, look_back_period_s=5.0) == 5.0


def test_the_look_back_window_smooths_a_short_burst():
    config = AutoscalingConfig(max_replicas=10, upscale_delay_s=0, look_back_period_s=30)
    # A 1-second burst of 40 requests among 0.5: the 30 s mean stays under 2 per replica.
    targets = simulate(config, lambda t: 40.0 if 100 <= t < 101 else 0.5, ticks=200)
    assert set(targets) == {1}
    eager = AutoscalingConfig(max_replicas=10, upscale_delay_s=0, look_back_period_s=1)
    assert max(simulate(eager, lambda t: 40.0 if 100 <= t < 101 else 0.5, ticks=200)) == 10


# --- validation ---------------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"min_replicas": -1}, r"min_replicas=-1 must be an integer >= 0"),
    ({"max_replicas": 0}, r"max_replicas=0 must be an integer >= 1"),
    ({"min_replicas": 3, "max_replicas": 2}, r"max_replicas=2 is below min_replicas=3"),
    ({"max_replicas": 4, "initial_replicas": 5}, r"initial_replicas=5 is outside"),
    ({"target_ongoing_requests": 0}, r"target_ongoing_requests=0 must be a finite number > 0"),
    ({"upscale_delay_s": -1.0}, r"upscale_delay_s=-1.0 must be a finite number >= 0"),
    ({"downscaling_factor": 0.0}, r"downscaling_factor=0.0 must be a finite number > 0"),
    ({"look_back_period_s": float("nan")}, r"look_back_period_s=nan"),
    ({"aggregation_function": "median"}, r"aggregation_function='median' is not one of"),
    ({"max_replica": 3}, r"unknown option\(s\) 'max_replica'"),
    ({"min_replicas": 1.5}, r"min_replicas=1.5 must be an integer"),
])
def test_bad_options_name_the_value(options, message):
    with pytest.raises(ValueError, match=message):
        AutoscalingConfig.from_dict(options)


def test_defaults_are_ray_serves():
    config = AutoscalingConfig()
    assert (config.min_replicas, config.max_replicas, config.initial_replicas) == (1, 1, None)
    assert (config.target_ongoing_requests, config.upscale_delay_s,
            config.downscale_delay_s) == (2.0, 30.0, 600.0)
    assert (config.look_back_period_s, config.metrics_interval_s) == (30.0, 10.0)
    assert AutoscalingConfig(aggregation_function="MAX").aggregation_function == "max"
    ray_config = pytest.importorskip("ray.serve.config")
    ray_defaults = ray_config.AutoscalingConfig()
    for name in ("min_replicas", "max_replicas", "initial_replicas", "target_ongoing_requests",
                 "metrics_interval_s", "look_back_period_s", "upscale_delay_s",
                 "downscale_delay_s", "downscale_to_zero_delay_s", "upscaling_factor",
                 "downscaling_factor", "smoothing_factor"):
        assert getattr(config, name) == getattr(ray_defaults, name), name


def test_decisions_match_rays_policy_functions():
    """The factor and delay steps against Ray Serve's own functions, where Ray is installed."""
    ray_policy = pytest.importorskip("ray.serve.autoscaling_policy")
    from ray.serve._private.constants import (
        SERVE_AUTOSCALING_DECISION_COUNTERS_KEY as COUNTER,
        SERVE_AUTOSCALING_DECISION_TIMESTAMP_KEY as SINCE,
    )
    from ray.serve.config import AutoscalingConfig as RayConfig

    rng = random.Random(7)
    for _ in range(300):
        options = {"min_replicas": 0, "max_replicas": 50,
                   "upscaling_factor": rng.choice([None, 0.25, 0.5, 1.5]),
                   "downscaling_factor": rng.choice([None, 0.3, 0.5]),
                   "upscale_delay_s": rng.choice([0.0, 3.0]),
                   "downscale_delay_s": rng.choice([0.0, 5.0]),
                   "downscale_to_zero_delay_s": rng.choice([None, 8.0])}
        ours, theirs = AutoscalingConfig(**options), RayConfig(**options)
        state, ray_state, target = PolicyState(), {}, rng.randint(1, 10)
        for tick in range(20):
            running = target
            total = float(rng.randint(0, 40))  # whole requests: no float rounding at stake
            desired = scaled_desire(ours, running, total)
            ray_desired = ray_policy._apply_scaling_factors(
                running * (total / (2.0 * running)), running, theirs)
            assert desired == ray_desired, (options, running, total)
            new_target, state = apply_delays(ours, state, float(tick), max(0, desired), target)
            ray_target, ray_state = ray_policy._apply_delay_logic(
                max(0, ray_desired), target, theirs, ray_state, _now=float(tick))
            assert new_target == ray_target, (options, tick, running, total)
            assert state.since == ray_state[SINCE]
            assert state.direction == (ray_state[COUNTER] > 0) - (ray_state[COUNTER] < 0)
            target = ours.clamp(new_target) or 1
