"""The core runtime's four figures: tasks, chain, objects, actor calls.

Run: ``python benchmarks/core.py``. Each figure is the best of a few repetitions
(the same protocol as the Ray and Dask anchor scripts). The side-by-side suite
against Ray and Dask is ``python -m benchmarks``.
"""

from __future__ import annotations

import time

import numpy as np

import sluice


@sluice.remote
def noop():
    return None


@sluice.remote
def inc(x):
    return x + 1


@sluice.remote
def total(a):
    return float(a.sum())


@sluice.remote
class Counter:
    def __init__(self):
        self.n = 0

    def add(self, x):
        self.n += x
        return self.n


def best_of(fn, reps: int = 3) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def tasks() -> None:
    sluice.get([noop.remote() for _ in range(10_000)])


def chain() -> None:
    r = 0
    for _ in range(1000):
        r = inc.remote(r)
    assert sluice.get(r) == 1000


ARRAY = None


def objects() -> None:
    ref = sluice.put(ARRAY)
    assert sluice.get([total.remote(ref) for _ in range(8)])[0] == ARRAY.size


def actor_calls(counter) -> None:
    sluice.get([counter.add.remote(1) for _ in range(10_000)])


def main() -> dict[str, float]:
    global ARRAY
    sluice.init(num_cpus=2)
    sluice.get(noop.remote())
    ARRAY = np.ones(200_000_000 // 8)
    counter = Counter.remote()
    sluice.get(counter.add.remote(0))
    results = {
        "tasks: 10,000 no-op tasks": best_of(tasks),
        "chain: 1,000 dependent tasks": best_of(chain),
        "objects: put 200 MB + 8 readers": best_of(objects),
        "actor: 10,000 calls on one actor": best_of(lambda: actor_calls(counter)),
    }
    for label, seconds in results.items():
        print(f"{label:<36} {seconds * 1e3:8.1f} ms", flush=True)
    sluice.shutdown()
    return results


if __name__ == "__main__":
    main()
