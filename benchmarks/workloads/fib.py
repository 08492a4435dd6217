"""fib: the textbook recursive ``fib(12)``, each task submitting its two children and
getting them (465 tasks, 232 of them waiting in a nested ``get``).

It times how a runtime treats tasks blocked in ``get`` inside a worker: Ray releases
the blocked worker's CPU and starts or reuses another worker; sluice runs the tasks a
get waits for inside the waiting worker (``sluice/executor/nesting.py``); Dask's
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

TITLE = "recursive fib(12): each task submits fib(n-1), fib(n-2) and gets them"
TARGET_VS_RAY = 0.2


def size(quick: bool) -> int:
    """The ``n`` of ``fib(n)``."""
    return 8 if quick else 12


def expected(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


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
    def fib(k):
        if k < 2:
            return k
        return sum(system.get([fib.remote(k - 1), fib.remote(k - 2)]))

    assert system.get(fib.remote(2)) == 1  # warm: one nested get

    def work() -> None:
        assert system.get(fib.remote(n)) == expected(n)

    return Timings(time_reps(work, reps))


def run_dask(reps: int, quick: bool = False) -> Timings:
    from dask.distributed import worker_client

    n = size(quick)
    with dask_client() as client:
        def fib(k):
            if k < 2:
                return k
            with worker_client() as inner:  # secedes this thread while it waits
                return sum(inner.gather([inner.submit(fib, k - 1, pure=False),
                                         inner.submit(fib, k - 2, pure=False)]))

        assert client.submit(fib, 2, pure=False).result() == 1

        def work() -> None:
            assert client.submit(fib, n, pure=False).result() == expected(n)

        return Timings(time_reps(work, reps))
