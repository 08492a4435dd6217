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
    n = size(quick)
    with sluice_runtime() as sluice:
        @sluice.remote
        def inc(x):
            return x + 1

        sluice.get(inc.remote(0))

        def work() -> None:
            r = 0
            for _ in range(n):
                r = inc.remote(r)
            assert sluice.get(r) == n

        return Timings(time_reps(work, reps))


def run_ray(reps: int, quick: bool = False) -> Timings:
    n = size(quick)
    with ray_runtime() as ray:
        @ray.remote
        def inc(x):
            return x + 1

        ray.get(inc.remote(0))

        def work() -> None:
            r = 0
            for _ in range(n):
                r = inc.remote(r)
            assert ray.get(r) == n

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
