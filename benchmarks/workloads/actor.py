"""actor: 10,000 calls on one actor, gathered at the end.

Calls on one actor run one at a time, in order, so the last result is the count.
"""

from __future__ import annotations

from benchmarks.workloads._common import (
    Timings,
    dask_client,
    ray_runtime,
    sluice_runtime,
    time_reps,
)

TITLE = "10,000 calls on one actor"
TARGET_VS_RAY = 0.2


def size(quick: bool) -> int:
    return 1_000 if quick else 10_000


def _check(results: list[int], n: int) -> None:
    assert len(results) == n and results[-1] - results[0] == n - 1, results[-3:]


def counter_class() -> type:
    """The actor, the same on every system (each wraps it in its own idiom).

    Made inside a function so every system pickles it by value: worker processes
    need not import this module.
    """
    class Counter:
        def __init__(self):
            self.n = 0

        def add(self, x):
            self.n += x
            return self.n

    return Counter


def run_sluice(reps: int, quick: bool = False) -> Timings:
    with sluice_runtime() as sluice:
        return _run_ray_api(sluice, reps, quick)


def run_ray(reps: int, quick: bool = False) -> Timings:
    with ray_runtime() as ray:
        return _run_ray_api(ray, reps, quick)


def _run_ray_api(system, reps: int, quick: bool) -> Timings:
    """The workload in Ray's API, which sluice shares: the same code times both."""
    n = size(quick)
    counter = system.remote(counter_class()).remote()
    system.get(counter.add.remote(0))

    def work() -> None:
        _check(system.get([counter.add.remote(1) for _ in range(n)]), n)

    return Timings(time_reps(work, reps))


def run_dask(reps: int, quick: bool = False) -> Timings:
    n = size(quick)
    with dask_client() as client:
        counter = client.submit(counter_class(), actor=True).result()
        counter.add(0).result()

        def work() -> None:
            _check([f.result() for f in [counter.add(1) for _ in range(n)]], n)

        return Timings(time_reps(work, reps))
