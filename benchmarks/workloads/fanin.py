"""fanin: a tree reduction of 4,096 leaves, each a task producing a 1 MB float64 array,
summed pairwise down to one array.

8,191 tasks and 8 GB of intermediate arrays: the object store's allocation, freeing and
zero-copy hand-off between tasks decide the time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.workloads._common import (
    Timings,
    dask_client,
    ray_runtime,
    sluice_runtime,
    time_reps,
)

TITLE = "pairwise tree reduction of 4,096 leaves of 1 MB arrays"
TARGET_VS_RAY = 0.3
ELEMENTS = 131_072  # float64: 1 MB per leaf


def size(quick: bool) -> int:
    """Leaves (a power of two)."""
    return 256 if quick else 4_096


def _functions():
    """The leaf and the pairwise sum, defined here so that every system pickles them by
    value (workers need not import this module)."""
    def leaf(i):
        return np.ones(ELEMENTS) * i

    def add(a, b):
        return a + b

    return leaf, add


def _check(result, leaves: int) -> None:
    # every element is 0 + 1 + ... + (leaves - 1); all partial sums are exact in float64
    assert float(result.sum()) == ELEMENTS * leaves * (leaves - 1) / 2


def _reduce(level: list, add_remote) -> Any:
    while len(level) > 1:
        level = [add_remote(level[j], level[j + 1]) for j in range(0, len(level), 2)]
    return level[0]


def run_sluice(reps: int, quick: bool = False) -> Timings:
    n = size(quick)
    with sluice_runtime() as sluice:
        leaf, add = _functions()
        leaf_task, add_task = sluice.remote(leaf), sluice.remote(add)
        sluice.get(add_task.remote(leaf_task.remote(0), leaf_task.remote(1)))

        def work() -> None:
            root = _reduce([leaf_task.remote(i) for i in range(n)], add_task.remote)
            _check(sluice.get(root), n)

        return Timings(time_reps(work, reps))


def run_ray(reps: int, quick: bool = False) -> Timings:
    n = size(quick)
    with ray_runtime() as ray:
        leaf, add = _functions()
        leaf_task, add_task = ray.remote(leaf), ray.remote(add)
        ray.get(add_task.remote(leaf_task.remote(0), leaf_task.remote(1)))

        def work() -> None:
            root = _reduce([leaf_task.remote(i) for i in range(n)], add_task.remote)
            _check(ray.get(root), n)

        return Timings(time_reps(work, reps))


def run_dask(reps: int, quick: bool = False) -> Timings:
    n = size(quick)
    with dask_client() as client:
        leaf, add = _functions()
        client.submit(add, client.submit(leaf, 0, pure=False), 1, pure=False).result()

        def add_remote(a, b):
            return client.submit(add, a, b, pure=False)

        def work() -> None:
            root = _reduce([client.submit(leaf, i, pure=False) for i in range(n)], add_remote)
            _check(root.result(), n)

        return Timings(time_reps(work, reps))
