"""compiled: a 10-hop actor-to-actor chain compiled once and executed 1,000 times.

Two actors alternate along the chain (hop i runs on actor i % 2). Compiling and 10
warm-up executes stay outside the timing; the figure is 1,000 executes. Ray's idiom is
``experimental_compile()`` (compiled graphs); Dask has none.
"""

from __future__ import annotations

from benchmarks.workloads._common import Timings, ray_runtime, sluice_runtime, time_reps

TITLE = "10-hop actor chain, compiled, executed 1,000 times"
TARGET_VS_RAY = 0.4
REPS = 3  # timed repetitions per process: cheap on every system
HOPS = 10
WARMUP = 10


def size(quick: bool) -> int:
    """Executes timed per repetition."""
    return 100 if quick else 1_000


def run_sluice(reps: int, quick: bool = False) -> Timings:
    n = size(quick)
    with sluice_runtime() as sluice:
        @sluice.remote
        class Hop:
            def inc(self, x):
                return x + 1

        a, b = Hop.bind(), Hop.bind()
        with sluice.InputNode() as inp:
            node = inp
            for i in range(HOPS):
                node = (a if i % 2 == 0 else b).inc.bind(node)
        plan = node.compile()
        for i in range(WARMUP):
            assert sluice.get(plan.execute(i)) == i + HOPS

        def work() -> None:
            for i in range(n):
                assert sluice.get(plan.execute(i)) == i + HOPS

        return Timings(time_reps(work, reps))


def run_ray(reps: int, quick: bool = False) -> Timings:
    n = size(quick)
    with ray_runtime() as ray:
        from ray.dag import InputNode

        @ray.remote
        class Hop:
            def inc(self, x):
                return x + 1

        a, b = Hop.remote(), Hop.remote()
        with InputNode() as inp:
            node = inp
            for i in range(HOPS):
                node = (a if i % 2 == 0 else b).inc.bind(node)
        compiled = node.experimental_compile()
        try:
            for i in range(WARMUP):
                assert ray.get(compiled.execute(i)) == i + HOPS

            def work() -> None:
                for i in range(n):
                    assert ray.get(compiled.execute(i)) == i + HOPS

            return Timings(time_reps(work, reps))
        finally:
            compiled.teardown()


run_dask = None  # Dask has no compiled actor graphs: shown as '-'
