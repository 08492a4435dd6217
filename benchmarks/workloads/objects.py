"""objects: ``put`` of a 200 MB float64 array, then 8 tasks each summing it.

Also reports the driver's peak resident memory while it holds the array and puts it:
the target is under 1.2x the array's size (the array itself is 1.0x, so a store that
copies the array inside the driver, or keeps a second mapping of it resident, misses).
"""

from __future__ import annotations

import numpy as np

from benchmarks.workloads._common import (
    MB,
    Timings,
    dask_client,
    peak_rss,
    ray_runtime,
    reset_peak_rss,
    sluice_runtime,
    time_reps,
)

TITLE = "`put` of a 200 MB array + 8 tasks summing it"
TARGET_VS_RAY = 0.4
REPS = 3  # timed repetitions per process: cheap on every system
RSS_TARGET = 1.2  # driver's peak resident memory over the array's size
READERS = 8


def size(quick: bool) -> int:
    """The array's size in bytes."""
    return 20 * MB if quick else 200 * MB


def _measure(reps: int, quick: bool, put_and_sum) -> Timings:
    """Time ``put_and_sum(array)`` with the driver's peak memory measured from just before
    the array exists, so the runtime's own start-up does not count."""
    baseline = reset_peak_rss()
    array = np.ones(size(quick) // 8)
    seconds = time_reps(lambda: put_and_sum(array), reps)
    peak = peak_rss()
    return Timings(seconds, {
        "array_mb": array.nbytes / MB,
        "driver_peak_rss_mb": peak / MB,
        "driver_baseline_rss_mb": baseline / MB,
        # what the array and its put added to the driver, in units of the array's size
        "driver_peak_over_array": (peak - baseline) / array.nbytes,
    })


def run_sluice(reps: int, quick: bool = False) -> Timings:
    with sluice_runtime() as sluice:
        return _run_ray_api(sluice, reps, quick)


def run_ray(reps: int, quick: bool = False) -> Timings:
    with ray_runtime() as ray:
        return _run_ray_api(ray, reps, quick)


def _run_ray_api(system, reps: int, quick: bool) -> Timings:
    """The workload in Ray's API, which sluice shares: the same code times both."""
    @system.remote
    def total(a):
        return float(a.sum())

    system.get(total.remote(np.ones(8)))

    def put_and_sum(array) -> None:
        ref = system.put(array)
        assert system.get([total.remote(ref) for _ in range(READERS)])[0] == array.size

    return _measure(reps, quick, put_and_sum)


def run_dask(reps: int, quick: bool = False) -> Timings:
    with dask_client() as client:
        def total(a):
            return float(a.sum())

        client.submit(total, np.ones(8), pure=False).result()

        def put_and_sum(array) -> None:
            future = client.scatter(array, broadcast=False)
            futures = [client.submit(total, future, pure=False) for _ in range(READERS)]
            assert client.gather(futures)[0] == array.size

        return _measure(reps, quick, put_and_sum)
