"""dag: a 100-node linear ``.bind()`` chain with an input node, built and executed 10 times.

As in Ray's version, building the graph is part of the timing. Dask's idiom is
``dask.delayed``: a delayed chain is built per input and computed.
"""

from __future__ import annotations

from benchmarks.workloads._common import (
    Timings,
    dask_client,
    ray_runtime,
    sluice_runtime,
    time_reps,
)

TITLE = "100-node `.bind()` chain, built and executed 10 times"
TARGET_VS_RAY = 0.05
EXECUTES = 10


def size(quick: bool) -> int:
    """Nodes in the chain."""
    return 20 if quick else 100


def run_sluice(reps: int, quick: bool = False) -> Timings:
    n = size(quick)
    with sluice_runtime() as sluice:
        @sluice.remote
        def inc(x):
            return x + 1

        sluice.get(inc.remote(0))

        def work() -> None:
            with sluice.InputNode() as inp:
                node = inc.bind(inp)
                for _ in range(n - 1):
                    node = inc.bind(node)
            for i in range(EXECUTES):
                assert sluice.get(node.execute(i)) == i + n

        return Timings(time_reps(work, reps))


def run_ray(reps: int, quick: bool = False) -> Timings:
    n = size(quick)
    with ray_runtime() as ray:
        from ray.dag import InputNode

        @ray.remote
        def inc(x):
            return x + 1

        ray.get(inc.remote(0))

        def work() -> None:
            with InputNode() as inp:
                node = inc.bind(inp)
                for _ in range(n - 1):
                    node = inc.bind(node)
            for i in range(EXECUTES):
                assert ray.get(node.execute(i)) == i + n

        return Timings(time_reps(work, reps))


def run_dask(reps: int, quick: bool = False) -> Timings:
    n = size(quick)
    with dask_client() as client:
        import dask

        def inc(x):
            return x + 1

        client.submit(inc, 0, pure=False).result()

        def work() -> None:
            for i in range(EXECUTES):
                node = dask.delayed(inc)(i)
                for _ in range(n - 1):
                    node = dask.delayed(inc)(node)
                assert node.compute() == i + n

        return Timings(time_reps(work, reps))
