"""nested: a nested fan-out: 8 tasks, each submitting 50 subtasks and getting them,
summed at the driver (408 tasks, 8 of them waiting in a nested ``get``).

Ray releases each waiting task's CPU and runs the subtasks on other workers; sluice
runs them inside the waiting worker as well (``sluice/executor/nesting.py``); Dask's
``worker_client`` secedes the waiting thread from the worker's pool.
"""

from __future__ import annotations

from benchmarks.workloads._common import (
    Timings,
    dask_client,
    ray_runtime,
    sluice_runtime,
    time_reps,
)

TITLE = "nested fan-out: 8 tasks each submit 50 subtasks and get them, summed at the driver"
TARGET_VS_RAY = 0.2
PARENTS = 8


def size(quick: bool) -> int:
    """Subtasks per parent task."""
    return 10 if quick else 50


def expected(width: int) -> int:
    return sum(i * i for i in range(PARENTS * width))


def run_sluice(reps: int, quick: bool = False) -> Timings:
    with sluice_runtime() as sluice:
        return _run_ray_api(sluice, reps, quick)


def run_ray(reps: int, quick: bool = False) -> Timings:
    with ray_runtime() as ray:
        return _run_ray_api(ray, reps, quick)


def _run_ray_api(system, reps: int, quick: bool) -> Timings:
    """The workload in Ray's API, which sluice shares: the same code times both."""
    width = size(quick)

    @system.remote
    def square(i):
        return i * i

    @system.remote
    def fan_out(first, count):
        return sum(system.get([square.remote(first + i) for i in range(count)]))

    assert system.get(fan_out.remote(0, 2)) == 1  # warm: both functions, one nested get

    def work() -> None:
        parts = [fan_out.remote(p * width, width) for p in range(PARENTS)]
        assert sum(system.get(parts)) == expected(width)

    return Timings(time_reps(work, reps))


def run_dask(reps: int, quick: bool = False) -> Timings:
    from dask.distributed import worker_client

    width = size(quick)
    with dask_client() as client:
        def square(i):
            return i * i

        def fan_out(first, count):
            with worker_client() as inner:  # secedes this thread while it waits
                futures = [inner.submit(square, first + i, pure=False) for i in range(count)]
                return sum(inner.gather(futures))

        assert client.submit(fan_out, 0, 2, pure=False).result() == 1

        def work() -> None:
            parts = [client.submit(fan_out, p * width, width, pure=False) for p in range(PARENTS)]
            assert sum(client.gather(parts)) == expected(width)

        return Timings(time_reps(work, reps))
