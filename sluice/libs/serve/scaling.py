"""The controller's autoscaling loop: measure a deployment's load, ask the policy, set the count.

Every ``metrics_interval_s`` the loop reads each running replica's ongoing + queued requests
(what the replica has accepted: running or waiting for one of its ``max_ongoing_requests``
slots), keeps the samples of the last ``look_back_period_s``, and feeds their total to Ray's
queue-length policy (:class:`sluice.libs.serve.autoscaling.Policy`, which holds the delays
that keep a steady load at a steady count). Its answer, clamped to min/max replicas and at
least one, becomes the deployment's target. Requests waiting in a caller's router (beyond
every replica's ``max_ongoing_requests``) are not counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sluice.libs.serve import autoscaling

log = logging.getLogger("sluice.serve")


def policy_config(config: Any) -> autoscaling.AutoscalingConfig:
    """The policy's config from a deployment's ``autoscaling_config`` (at least one replica:
    the controller does not scale to zero)."""
    values = dataclasses.asdict(config)
    values["min_replicas"] = max(1, values["min_replicas"])
    values["max_replicas"] = max(values["min_replicas"], values["max_replicas"])
    start = config.start_replicas
    values["initial_replicas"] = max(values["min_replicas"], min(values["max_replicas"], start))
    return autoscaling.AutoscalingConfig(**values)


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
