"""How the controller scales: the autoscaling loop, rolling-update waves, start warnings.

The autoscaling loop measures a deployment's load, asks the policy and sets the count.

Every ``metrics_interval_s`` the loop reads each running replica's ongoing + queued requests
(what the replica has accepted: running or waiting for one of its ``max_ongoing_requests``
slots) and adds the requests callers' routers last reported waiting for a replica (beyond
every replica's ``max_ongoing_requests``), keeps the samples of the last
``look_back_period_s``, and feeds their total to Ray's queue-length policy
(:class:`sluice.libs.serve.autoscaling.Policy`, which holds the delays that keep a steady
load at a steady count). Its answer, clamped to min/max replicas and at least one, becomes
the deployment's target.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from sluice.libs.serve import autoscaling

log = logging.getLogger("sluice.serve")

SCHEDULE_WARNING_S = 30.0
"""A replica that has not started after this long makes the controller warn (the log and the
deployment's status message). ``SLUICE_SERVE_SCHEDULE_WARNING_S`` in the environment of the
runtime's workers overrides it."""
ROLLING_WAVE_FRACTION = 0.2
"""A rolling update starts at most this share of the target count (at least one) at once."""


def policy_config(config: autoscaling.AutoscalingConfig) -> autoscaling.AutoscalingConfig:
    """The config the policy runs with: a deployment's ``autoscaling_config`` with at least
    one replica (the controller does not scale to zero)."""
    low = max(1, config.min_replicas)
    high = max(low, config.max_replicas)
    return dataclasses.replace(config, min_replicas=low, max_replicas=high,
                               initial_replicas=max(low, min(high, config.start_replicas)))


async def autoscale(current_config: Callable[[], Any], running: Callable[[], int],
                    measure: Callable[[], Awaitable[int]], target: Callable[[], int],
                    set_target: Callable[[int], None]) -> None:
    """Run one deployment's autoscaling loop until ``current_config()`` is None (deleted, or
    no longer autoscaling). ``measure()`` is the total of its replicas' ongoing requests,
    ``running()`` how many run, ``target()`` its target count now (which someone else may
    have set) and ``set_target(n)`` sets it."""
    loop = asyncio.get_running_loop()
    given = current_config()
    policy = autoscaling.Policy(policy_config(given), target=target())
    samples: list[autoscaling.Sample] = []
    while True:
        config = current_config()
        if config is None:
            return
        if config != given:
            given = config
            policy.reconfigure(policy_config(config))
        await asyncio.sleep(config.metrics_interval_s)
        if current_config() is None:
            return
        try:
            total = await measure()
        except Exception as exc:  # noqa: BLE001 - deleted meanwhile, or a replica went away
            log.debug("autoscaling: could not read the load (%s); trying again", exc)
            continue
        now = loop.time()
        samples.append((now, float(total)))
        horizon = now - config.look_back_period_s
        while len(samples) > 1 and samples[1][0] <= horizon:
            samples.pop(0)  # (the last sample before the window still holds at its start)
        before = policy.target = target()
        after = policy.decide(now, samples, running_replicas=running() or None)
        if after != before:
            log.info("autoscaling: %d -> %d replicas (load %.1f)", before, after, total)
            set_target(after)


def schedule_warning_s() -> float:
    """:data:`SCHEDULE_WARNING_S`, or ``SLUICE_SERVE_SCHEDULE_WARNING_S`` where it is set."""
    value = os.environ.get("SLUICE_SERVE_SCHEDULE_WARNING_S", "")
    try:
        return float(value) if value else SCHEDULE_WARNING_S
    except ValueError:
        return SCHEDULE_WARNING_S


def rolling_wave(target: int) -> int:
    """How many new replicas a rolling update to ``target`` replicas starts at a time.

    >>> rolling_wave(5), rolling_wave(12), rolling_wave(1)
    (1, 2, 1)
    """
    return max(1, int(target * ROLLING_WAVE_FRACTION))


def unscheduled_message(name: str, app: str, count: int, need: dict, free: dict,
                        fits: bool) -> str:
    """Ray's warning for ``count`` replicas of deployment ``name`` that have not started
    after :func:`schedule_warning_s` (``fits``: the free resources would hold one, so the
    wait is in its constructor rather than its scheduling)."""
    what = "initialize" if fits else "be scheduled"
    return (f"Deployment {name!r} in application {app!r} has {count} replicas that have "
            f"taken more than {schedule_warning_s():g}s to {what}. Resources required for "
            f"each replica: {need}, total resources available: {free}. Free resources or "
            f"lower the deployment's ray_actor_options (or num_replicas); a slow constructor "
            f"also shows here.")
