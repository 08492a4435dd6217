"""tasks: 10,000 no-op tasks submitted, then gathered.

Every system pays its per-task bookkeeping here and nothing else.
"""

from __future__ import annotations

from benchmarks.workloads._common import (
    Timings,
    dask_client,
    ray_runtime,
    sluice_runtime,
    time_reps,
)

TITLE = "10,000 no-op tasks, submitted then gathered"
TARGET_VS_RAY = 0.10


def size(quick: bool) -> int:
    return 1_000 if quick else 10_000


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
    def noop():
        return None

    system.get(noop.remote())

    def work() -> None:
        assert system.get([noop.remote() for _ in range(n)]) == [None] * n

    return Timings(time_reps(work, reps))


def run_dask(reps: int, quick: bool = False) -> Timings:
    n = size(quick)
    with dask_client() as client:
        def noop(i):
            return None

        client.submit(noop, -1, pure=False).result()

        def work() -> None:
            assert client.gather(client.map(noop, range(n), pure=False)) == [None] * n

        return Timings(time_reps(work, reps))
