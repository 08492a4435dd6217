"""pgs: 100 placement groups of 2 bundles created, readied and removed.

Each group asks for two bundles of 0.01 CPU (PACK), so all fit at once on 2 CPUs: what is
timed is creating them, waiting for every ``ready()`` and removing them.
"""

from __future__ import annotations

import importlib

from benchmarks.workloads._common import Timings, ray_runtime, sluice_runtime, time_reps

TITLE = "100 placement groups of 2 bundles created, readied, removed"
TARGET_VS_RAY = 0.1


def size(quick: bool) -> int:
    return 10 if quick else 100


def run_sluice(reps: int, quick: bool = False) -> Timings:
    with sluice_runtime() as sluice:
        return _run_ray_api(sluice, reps, quick)


def run_ray(reps: int, quick: bool = False) -> Timings:
    with ray_runtime() as ray:
        return _run_ray_api(ray, reps, quick)


def _run_ray_api(system, reps: int, quick: bool) -> Timings:
    """The workload in Ray's API, which sluice shares: the same code times both."""
    util = importlib.import_module(f"{system.__name__}.util")
    n = size(quick)
    warm = util.placement_group([{"CPU": 0.01}, {"CPU": 0.01}])
    system.get(warm.ready())
    util.remove_placement_group(warm)

    def work() -> None:
        groups = [util.placement_group([{"CPU": 0.01}, {"CPU": 0.01}]) for _ in range(n)]
        ready = system.get([pg.ready() for pg in groups])
        assert len(ready) == n
        for pg in groups:
            util.remove_placement_group(pg)

    return Timings(time_reps(work, reps))
