"""pool: ``ActorPool.map`` over 10,000 items with 2 actors, a trivial method.

The same code times sluice and Ray (``sluice.util.ActorPool``, ``ray.util.ActorPool``);
Dask has no actor pool.
"""

from __future__ import annotations

from benchmarks.workloads._common import Timings, ray_runtime, sluice_runtime, time_reps

TITLE = "ActorPool.map, 10,000 items over 2 actors"
TARGET_VS_RAY = 0.1
ACTORS = 2


def size(quick: bool) -> int:
    return 1_000 if quick else 10_000


def doubler_class() -> type:
    """The actor, made inside a function so every system pickles it by value."""
    class Doubler:
        def double(self, v):
            return 2 * v

    return Doubler


def run_sluice(reps: int, quick: bool = False) -> Timings:
    with sluice_runtime() as sluice:
        from sluice.util import ActorPool

        return _run_ray_api(sluice, ActorPool, reps, quick)


def run_ray(reps: int, quick: bool = False) -> Timings:
    with ray_runtime() as ray:
        from ray.util import ActorPool

        return _run_ray_api(ray, ActorPool, reps, quick)


def _run_ray_api(system, pool_class, reps: int, quick: bool) -> Timings:
    """The workload in Ray's API, which sluice shares: the same code times both."""
    n = size(quick)
    actor = system.remote(doubler_class())
    pool = pool_class([actor.remote() for _ in range(ACTORS)])
    assert list(pool.map(lambda a, v: a.double.remote(v), range(ACTORS))) == [0, 2]  # warm

    def work() -> None:
        out = list(pool.map(lambda a, v: a.double.remote(v), range(n)))
        assert out == [2 * v for v in range(n)], out[-3:]

    return Timings(time_reps(work, reps))


run_dask = None  # Dask has no actor pool: shown as '-'
