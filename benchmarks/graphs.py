"""Lazy-graph figures: a 100-node .bind() chain executed 10 times, and a 10-hop
actor-to-actor chain in a compiled Plan executed 1,000 times.

Run: ``python benchmarks/graphs.py`` (Ray's versions: the project's anchors).
"""

from __future__ import annotations

import time

import sluice
from sluice import InputNode


@sluice.remote
def inc(x):
    return x + 1


@sluice.remote
class Hop:
    def inc(self, x):
        return x + 1


def chain_dag():
    with InputNode() as inp:
        node = inc.bind(inp)
        for _ in range(99):
            node = inc.bind(node)
    return node


def dag_executes(dag) -> None:
    for i in range(10):
        assert sluice.get(dag.execute(i)) == i + 100


def actor_chain():
    a, b = Hop.bind(), Hop.bind()
    with InputNode() as inp:
        node = inp
        for i in range(10):
            node = (a if i % 2 == 0 else b).inc.bind(node)
    return node.compile()


def best_of(fn, reps: int = 3) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> dict[str, float]:
    sluice.init(num_cpus=2)
    results = {}
    # Building and compiling the DAG is part of the workload, as in Ray's version.
    results["dag: 100-node chain, 10 executes"] = best_of(lambda: dag_executes(chain_dag()))
    plan = actor_chain()
    for i in range(10):
        assert sluice.get(plan.execute(i)) == i + 10

    def compiled() -> None:
        for i in range(1000):
            assert sluice.get(plan.execute(i)) == i + 10

    results["compiled: 10-hop actor chain, per execute"] = best_of(compiled) / 1000
    for label, seconds in results.items():
        print(f"{label:<44} {seconds * 1e3:9.3f} ms", flush=True)
    sluice.shutdown()
    return results


if __name__ == "__main__":
    main()
