"""generator: a generator task streaming 10,000 small items to the driver.

The driver reads each item as it arrives, ``for ref in gen: get(ref)`` (Ray's documented
idiom for streaming generators), and checks the sum.
"""

from __future__ import annotations

from benchmarks.workloads._common import Timings, ray_runtime, sluice_runtime, time_reps

TITLE = "a generator task streaming 10,000 small items to the driver"
TARGET_VS_RAY = 0.1


def size(quick: bool) -> int:
    return 1_000 if quick else 10_000


def producer():
    """The generator function, the same on both systems (made here so it pickles by value)."""
    def stream(n):
        for i in range(n):
            yield i

    return stream


def run_sluice(reps: int, quick: bool = False) -> Timings:
    with sluice_runtime() as sluice:
        return _run_ray_api(sluice, reps, quick)


def run_ray(reps: int, quick: bool = False) -> Timings:
    with ray_runtime() as ray:
        return _run_ray_api(ray, reps, quick)


def _run_ray_api(system, reps: int, quick: bool) -> Timings:
    """The workload in Ray's API, which sluice shares: the same code times both."""
    n = size(quick)
    stream = system.remote(producer())
    assert [system.get(ref) for ref in stream.remote(3)] == [0, 1, 2]

    def work() -> None:
        total = 0
        for ref in stream.remote(n):
            total += system.get(ref)
        assert total == n * (n - 1) // 2, total

    return Timings(time_reps(work, reps))


run_dask = None  # Dask has no streaming generator tasks: shown as '-'
