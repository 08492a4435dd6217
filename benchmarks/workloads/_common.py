"""What every workload shares: the timing loop, the driver's peak memory, and each
system's runtime started the same way everywhere (two CPUs, two worker processes).

A workload module's ``run_<system>(reps, quick)`` starts its runtime, warms it (one
call of every remote function or actor it will time, so worker start-up and function
export stay outside the timing), times ``reps`` repetitions and stops the runtime.
"""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

NUM_CPUS = 2
MB = 1_000_000


@dataclass
class Timings:
    """Seconds per timed repetition, plus any other figure a workload reports."""

    seconds: list[float]
    metrics: dict[str, float] = field(default_factory=dict)


def time_reps(fn: Callable[[], Any], reps: int) -> list[float]:
    """Wall-clock seconds of ``reps`` back-to-back calls of ``fn``.

    >>> len(time_reps(lambda: None, 3))
    3
    """
    seconds = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> int:
    """Reset this process's peak resident set to its current size; return that size (bytes).

    Linux lets a process clear its own high-water mark (``5 > /proc/self/clear_refs``),
    so the peak measured afterwards belongs to what ran afterwards, not to start-up.
    Elsewhere the peak cannot be reset and the lifetime peak is returned.
    """
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    current = _status_kib("VmRSS")
    return current * 1024 if current is not None else peak_rss()


def peak_rss() -> int:
    """This process's peak resident set size in bytes, since start or the last reset."""
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


@contextlib.contextmanager
def sluice_runtime() -> Iterator[Any]:
    import sluice

    sluice.init(num_cpus=NUM_CPUS)
    try:
        yield sluice
    finally:
        sluice.shutdown()


@contextlib.contextmanager
def ray_runtime() -> Iterator[Any]:
    import ray

    ray.init(num_cpus=NUM_CPUS, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@contextlib.contextmanager
def dask_client() -> Iterator[Any]:
    """A ``distributed`` client on a local cluster of 2 worker processes, 1 thread each."""
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=NUM_CPUS, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client
