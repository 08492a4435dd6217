"""Ray Serve's queue-length autoscaling policy as pure code: no I/O, no actors, no clock.

The controller feeds it what it measured; it answers how many replicas a deployment
should have. The rules are Ray Serve 2.60's default policy
(``ray.serve.autoscaling_policy.replica_queue_length_autoscaling_policy`` and the
defaults its wrapper applies), step by step:

1. **Load**: the total of ongoing and queued requests, a time-weighted mean (or the max,
   or the min: ``aggregation_function``) of the metric samples over the last
   ``look_back_period_s`` seconds (:func:`window_total`).
2. **Raw desire**: ``total / target_ongoing_requests`` replicas (Ray writes it as
   ``running * total / (target * running)``; the same number).
3. **Factors**: the step from the running count toward the raw desire is scaled by
   ``upscaling_factor`` or ``downscaling_factor`` and rounded up; a downscale that the
   factor would round away to nothing still takes one replica off.
4. **Delays (the hysteresis)**: a desire above the current target must hold for
   ``upscale_delay_s`` of consecutive decisions before it applies, one below it for
   ``downscale_delay_s`` (``downscale_to_zero_delay_s`` for 1 -> 0); a decision in the
   other direction, or one equal to the target, restarts the wait. Downscaling never
   goes below one replica except from exactly one (to zero).
5. **Bounds**: the result is clamped to ``[min_replicas, max_replicas]``.

A deployment at zero replicas with requests waiting skips the delays (Ray's cold start).

One deliberate difference from Ray: rounding up ignores a float error below 1e-9, so a
load of exactly ``n * target_ongoing_requests`` asks for ``n`` replicas on every tick
rather than ``n + 1`` on some (``3 * (4 / 6)`` is not always ``2.0``), which would make a
constant load flap between two counts.

>>> config = AutoscalingConfig(min_replicas=1, max_replicas=10, upscale_delay_s=0)
>>> decide(config, PolicyState(), now=0.0, target_replicas=1, samples=[(0.0, 7.0)])[0]
4
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

DEFAULT_TARGET_ONGOING_REQUESTS = 2.0
DEFAULT_METRICS_INTERVAL_S = 10.0
AGGREGATION_FUNCTIONS = ("mean", "max", "min")
# Float error tolerated when rounding a replica count up (see the module docstring).
_CEIL_EPS = 1e-9
# Ray's tolerance when comparing elapsed time with a delay (400 s may read as 399.999...).
_DELAY_EPS_S = 1e-6

Sample = tuple[float, float]
"""(timestamp in seconds, total ongoing + queued requests at that moment)."""


@dataclass(frozen=True)
class AutoscalingConfig:
    """How a deployment's replica count follows its load (Ray Serve's names and defaults).

    ``max_replicas`` defaults to 1, as in Ray: set it to let the deployment grow.
    ``initial_replicas`` (default: ``min_replicas``) is the count a deployment starts with.
    ``metrics_interval_s`` is how often replicas and handles report their queue lengths.
    ``smoothing_factor``, ``upscale_smoothing_factor`` and ``downscale_smoothing_factor``
    are Ray's deprecated spellings of the two factors, kept so Ray configs load.

    >>> AutoscalingConfig(max_replicas=4).target_ongoing_requests
    2.0
    >>> AutoscalingConfig(min_replicas=3, max_replicas=2)
    Traceback (most recent call last):
    ...
    ValueError: autoscaling_config: max_replicas=2 is below min_replicas=3; raise max_replicas to at least 3 or lower min_replicas
    """

    min_replicas: int = 1
    initial_replicas: int | None = None
    max_replicas: int = 1
    target_ongoing_requests: float = DEFAULT_TARGET_ONGOING_REQUESTS
    metrics_interval_s: float = DEFAULT_METRICS_INTERVAL_S
    look_back_period_s: float = 30.0
    smoothing_factor: float = 1.0
    upscale_smoothing_factor: float | None = None
    downscale_smoothing_factor: float | None = None
    upscaling_factor: float | None = None
    downscaling_factor: float | None = None
    downscale_delay_s: float = 600.0
    downscale_to_zero_delay_s: float | None = None
    upscale_delay_s: float = 30.0
    aggregation_function: str = "mean"

    def __post_init__(self) -> None:
        _check_int(self.min_replicas, "min_replicas", minimum=0)
        _check_int(self.max_replicas, "max_replicas", minimum=1)
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"autoscaling_config: max_replicas={self.max_replicas} is below "
                f"min_replicas={self.min_replicas}; raise max_replicas to at least "
                f"{self.min_replicas} or lower min_replicas")
        if self.initial_replicas is not None:
            _check_int(self.initial_replicas, "initial_replicas", minimum=0)
            if not self.min_replicas <= self.initial_replicas <= self.max_replicas:
                raise ValueError(
                    f"autoscaling_config: initial_replicas={self.initial_replicas} is outside "
                    f"[min_replicas={self.min_replicas}, max_replicas={self.max_replicas}]; "
                    f"pick a value in that range or leave it unset (it then starts at "
                    f"min_replicas)")
        for name in ("target_ongoing_requests", "metrics_interval_s", "look_back_period_s",
                     "smoothing_factor"):
            _check_number(getattr(self, name), name, positive=True)
        for name in ("upscale_smoothing_factor", "downscale_smoothing_factor",
                     "upscaling_factor", "downscaling_factor"):
            if getattr(self, name) is not None:
                _check_number(getattr(self, name), name, positive=True)
        for name in ("upscale_delay_s", "downscale_delay_s"):
            _check_number(getattr(self, name), name, positive=False)
        if self.downscale_to_zero_delay_s is not None:
            _check_number(self.downscale_to_zero_delay_s, "downscale_to_zero_delay_s",
                          positive=False)
        aggregation = str(self.aggregation_function).lower()
        if aggregation not in AGGREGATION_FUNCTIONS:
            raise ValueError(
                f"autoscaling_config: aggregation_function={self.aggregation_function!r} is "
                f"not one of {', '.join(AGGREGATION_FUNCTIONS)}; use one of those")
        object.__setattr__(self, "aggregation_function", aggregation)

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> AutoscalingConfig:
        """A config from a dict of Ray's option names (a deployment's ``autoscaling_config=``).

        >>> AutoscalingConfig.from_dict({"max_replicas": 5}).max_replicas
        5
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"autoscaling_config: unknown option(s) {', '.join(map(repr, unknown))}; "
                f"the options are {', '.join(sorted(known))}")
        return cls(**options)

    def get_upscaling_factor(self) -> float:
        """``upscaling_factor``, else the deprecated spellings (Ray's precedence)."""
        return self.upscaling_factor or self.upscale_smoothing_factor or self.smoothing_factor

    def get_downscaling_factor(self) -> float:
        """``downscaling_factor``, else the deprecated spellings (Ray's precedence)."""
        return (self.downscaling_factor or self.downscale_smoothing_factor
                or self.smoothing_factor)

    @property
    def start_replicas(self) -> int:
        """How many replicas a new deployment starts with: its initial (else min) replicas,
        at least one (the controller does not scale to zero)."""
        return max(1, self.get_initial_replicas())

    def get_initial_replicas(self) -> int:
        """The replica count a deployment starts with."""
        return self.min_replicas if self.initial_replicas is None else self.initial_replicas

    def clamp(self, replicas: int) -> int:
        """``replicas`` within ``[min_replicas, max_replicas]``.

        >>> AutoscalingConfig(min_replicas=2, max_replicas=4).clamp(9)
        4
        """
        return max(self.min_replicas, min(self.max_replicas, replicas))


def _check_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"autoscaling_config: {name}={value!r} must be an integer >= {minimum}")


def _check_number(value: Any, name: str, positive: bool) -> None:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and (value > 0 if positive else value >= 0))
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"autoscaling_config: {name}={value!r} must be a finite number {bound}")


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between decisions (plain data, Ray's two fields).

    ``direction`` is +1 while consecutive decisions want more replicas, -1 while they want
    fewer, 0 otherwise; ``since`` is when the current run of such decisions began.
    """

    direction: int = 0
    since: float | None = None


def _ceil(value: float) -> int:
    return math.ceil(value - _CEIL_EPS)


def window_total(samples: Iterable[Sample], now: float, look_back_period_s: float,
                 aggregation_function: str = "mean") -> float:
    """The load over ``[now - look_back_period_s, now]`` from (timestamp, total) samples.

    The samples are a step function: each value holds until the next sample, the last
    until ``now``, and a sample from before the window holds at its start. ``mean`` is
    weighted by how long each value held; ``max`` and ``min`` take the values seen in the
    window. No sample at all reads as no load (0.0), as in Ray.

    >>> window_total([(0.0, 2.0), (5.0, 4.0)], now=10.0, look_back_period_s=10.0)
    3.0
    >>> window_total([(0.0, 2.0), (5.0, 4.0)], now=10.0, look_back_period_s=4.0)
    4.0
    """
    start = now - look_back_period_s
    points: list[Sample] = []
    carried: Sample | None = None  # the last sample at or before the window's start
    for timestamp, value in sorted(samples):
        if timestamp > now:
            break
        if timestamp <= start:
            carried = (start, value)
        else:
            points.append((timestamp, value))
    if carried is not None:
        points.insert(0, carried)
    if not points:
        return 0.0
    if aggregation_function == "max":
        return max(value for _, value in points)
    if aggregation_function == "min":
        return min(value for _, value in points)
    span = now - points[0][0]
    if span <= 0:
        return points[-1][1]
    weighted = 0.0
    for (timestamp, value), (next_timestamp, _) in zip(points, points[1:] + [(now, 0.0)]):
        weighted += value * (next_timestamp - timestamp)
    return weighted / span


def scaled_desire(config: AutoscalingConfig, running_replicas: int, total_requests: float) -> int:
    """Steps 2 and 3: the replicas the load asks for, after the factors (before delays
    and bounds).

    >>> scaled_desire(AutoscalingConfig(max_replicas=9, upscaling_factor=0.5), 1, 18.0)  # 1 + 0.5 * (9 - 1)
    5
    """
    raw = total_requests / config.target_ongoing_requests
    if running_replicas == 0:
        return _ceil(raw)
    delta = raw - running_replicas
    factor = config.get_upscaling_factor() if delta > 0 else config.get_downscaling_factor()
    scaled = _ceil(running_replicas + factor * delta)
    # A downscale the factor rounds away to nothing still removes one replica (as Ray).
    if _ceil(raw) < running_replicas and scaled == running_replicas:
        scaled -= 1
    return scaled


def apply_delays(config: AutoscalingConfig, state: PolicyState, now: float, desired: int,
                 target_replicas: int) -> tuple[int, PolicyState]:
    """Step 4: the new target and state, given this decision's ``desired`` count."""
    if desired > target_replicas:
        since = state.since if state.direction > 0 and state.since is not None else now
        if now - since + _DELAY_EPS_S >= config.upscale_delay_s:
            return desired, PolicyState()
        return target_replicas, PolicyState(direction=1, since=since)
    if desired < target_replicas:
        since = state.since if state.direction < 0 and state.since is not None else now
        if target_replicas == 1:
            delay = (config.downscale_delay_s if config.downscale_to_zero_delay_s is None
                     else config.downscale_to_zero_delay_s)
        else:
            delay = config.downscale_delay_s
            desired = max(1, desired)  # only 1 -> 0 may reach zero
        if now - since + _DELAY_EPS_S >= delay:
            return desired, PolicyState()
        return target_replicas, PolicyState(direction=-1, since=since)
    return target_replicas, PolicyState()


def decide(config: AutoscalingConfig, state: PolicyState, now: float, target_replicas: int,
           samples: Iterable[Sample], running_replicas: int | None = None,
           ) -> tuple[int, PolicyState]:
    """One autoscaling decision: (the deployment's new target replica count, the new state).

    ``target_replicas`` is the count the controller currently aims for,
    ``running_replicas`` the count actually running (default: the target), ``samples``
    the (timestamp, total ongoing + queued requests) metrics, of which those in the last
    ``look_back_period_s`` count. Call it every control-loop tick with the state it
    returned last time.
    """
    running = target_replicas if running_replicas is None else running_replicas
    total = window_total(samples, now, config.look_back_period_s, config.aggregation_function)
    if running == 0 and total > 0:  # cold start: no delay, at least one replica at once
        return config.clamp(max(_ceil(config.get_upscaling_factor()), target_replicas)), state
    if running == 0:
        desired = target_replicas
    else:
        desired = scaled_desire(config, running, total)
    new_target, new_state = apply_delays(config, state, now, max(0, desired), target_replicas)
    return config.clamp(new_target), new_state


class Policy:
    """The policy with its state kept: one per deployment, in the controller.

    >>> policy = Policy(AutoscalingConfig(max_replicas=4, upscale_delay_s=10))
    >>> policy.target
    1
    >>> [policy.decide(t, [(0.0, 8.0)]) for t in (0.0, 5.0, 10.0)]
    [1, 1, 4]
    """

    def __init__(self, config: AutoscalingConfig, target: int | None = None) -> None:
        self.config = config
        self.target = config.clamp(config.get_initial_replicas() if target is None else target)
        self.state = PolicyState()

    def decide(self, now: float, samples: Iterable[Sample],
               running_replicas: int | None = None) -> int:
        """The target after one more decision at ``now``; also kept as ``self.target``."""
        self.target, self.state = decide(self.config, self.state, now, self.target, samples,
                                         running_replicas)
        return self.target

    def reconfigure(self, config: AutoscalingConfig) -> None:
        """A new config (a redeploy): its bounds apply at once and pending waits restart."""
        self.config = config
        self.target = config.clamp(self.target)
        self.state = PolicyState()


__all__ = ["AGGREGATION_FUNCTIONS", "AutoscalingConfig", "Policy", "PolicyState", "Sample",
           "apply_delays", "decide", "scaled_desire", "window_total"]
