"""A first look at sluice: tasks, an actor, and a zero-copy put/get.

Run it with ``make demo`` (or ``python examples/demo.py`` inside the venv).
"""

from __future__ import annotations

import os
import time

import numpy as np

import sluice


@sluice.remote
def square(x: int) -> int:
    return x * x


@sluice.remote
def where_am_i() -> int:
    time.sleep(0.2)
    return os.getpid()


@sluice.remote
def column_sums(matrix: np.ndarray) -> np.ndarray:
    # ``matrix`` is a read-only view of the shared-memory store: no copy was made.
    assert not matrix.flags.writeable
    return matrix.sum(axis=0)


@sluice.remote
class Counter:
    def __init__(self) -> None:
        self.total = 0

    def add(self, x: int) -> int:
        self.total += x
        return self.total


def backing_file(array: np.ndarray) -> str:
    """The file whose mapping holds ``array``'s memory (Linux), or "private memory"."""
    address = array.__array_interface__["data"][0]
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            low, high = (int(x, 16) for x in fields[0].split("-"))
            if low <= address < high:
                return fields[5] if len(fields) > 5 else "private memory"
    return "private memory"


def main() -> None:
    sluice.init(num_cpus=2)
    print(f"sluice runtime: {sluice.cluster_resources()}")

    squares = sluice.get([square.remote(i) for i in range(10)])
    print(f"tasks:  squares of 0..9 = {squares}")

    start = time.perf_counter()
    pids = sluice.get([where_am_i.remote() for _ in range(4)])
    print(f"        4 tasks of 0.2 s ran in {time.perf_counter() - start:.2f} s "
          f"on worker processes {sorted(set(pids))} (driver is {os.getpid()})")

    counter = Counter.remote()
    totals = sluice.get([counter.add.remote(i) for i in range(1, 6)])
    print(f"actor:  running totals in call order = {totals}")

    matrix = np.arange(25_000_000, dtype=np.float64).reshape(5_000_000, 5)  # 200 MB
    start = time.perf_counter()
    ref = sluice.put(matrix)
    put_ms = (time.perf_counter() - start) * 1e3
    view = sluice.get(ref)
    print(f"store:  put {matrix.nbytes / 1e6:.0f} MB in {put_ms:.0f} ms; get returned a "
          f"{'read-only' if not view.flags.writeable else 'writable'} view mapped from "
          f"{backing_file(view)}")
    sums = sluice.get([column_sums.remote(ref) for _ in range(2)])
    assert all(np.array_equal(s, matrix.sum(axis=0)) for s in sums)
    print(f"        2 tasks read it in place; column sums agree: {sums[0][:3]}...")

    sluice.shutdown()
    print("done: workers stopped, shared memory released")


if __name__ == "__main__":
    main()
