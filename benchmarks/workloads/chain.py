"""chain: 1,000 dependent tasks, each adding one to the result of the last.

Latency bound: each task waits for its input, so no batching of independent work helps.
"""

from __future__ import annotations

from benchmarks.workloads._common import (
    Timings,
    dask_client,
    ray_runtime,
    sluice_runtime,
    time_reps,
)

TITLE = "1,000 dependent tasks, each adding one to the last"
TARGET_VS_RAY = 0.12


def size(quick: bool) -> int:
    return 100 if quick else 1_000


def run_sluice(reps: int, quick: bool = False) -> Timings:
    with sluice_runtime() as sluice:
        return _run_ray_api(sluice, reps, quick)


def run_ray(reps: int, quick: bool = False) -> Timings:
    with ray_runtime() as ray:
        return _run_ray_api(ray, reps, quick)


def _run_ray_api(system, reps: int, quick: bool) -> Timings:
    """The workload in Ray's API, which sluice shares: the same code times both."""
    n = size(quick)

    @system.remote
    def inc(x):
        return x + 1

    system.get(inc.remote(0))

    def work() -> None:
        r = 0
        for _ in range(n):
            r = inc.remote(r)
        assert system.get(r) == n

    return Timings(time_reps(work, reps))


def run_dask(reps: int, quick: bool = False) -> Timings:
    n = size(quick)
    with dask_client() as client:
        def inc(x):
            return x + 1

        client.submit(inc, 0, pure=False).result()

        def work() -> None:
            r = 0
            for _ in range(n):
                r = client.submit(inc, r, pure=False)
            assert r.result() == n

        return Timings(time_reps(work, reps))
