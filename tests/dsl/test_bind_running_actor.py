"""``handle.method.bind(...)``: graph nodes that call an actor that already runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import sluice
from sluice.compiler.ir import OpKind


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


@sluice.remote
class Counter:
    def __init__(self, start: int = 0):
        self.n = start

    def add(self, x: int) -> int:
        self.n += x
        return self.n

    def read(self) -> int:
        return self.n


def test_a_bound_method_of_a_running_actor_calls_that_actor() -> None:
    counter = Counter.remote(100)
    assert sluice.get(counter.add.remote(1)) == 101
    with sluice.InputNode() as inp:
        once = counter.add.bind(inp)
        twice = counter.add.bind(once)
    assert sluice.get(once.execute(10)) == 111
    assert sluice.get(twice.execute(1)) == 111 + 1 + 112
    assert sluice.get(counter.read.remote()) == 224  # the graph's calls changed this actor


def test_its_plan_creates_no_actor() -> None:
    counter = Counter.remote()
    with sluice.InputNode() as inp:
        node = sluice.MultiOutputNode([counter.add.bind(inp), counter.add.bind(inp)])
    plan = node.compile()
    kinds = [op.kind for stage in plan.stages for op in stage.ops]
    assert OpKind.ACTOR not in kinds and kinds.count(OpKind.METHOD) == 2
    assert "running actor: its methods run in that actor's process" in plan.explain()
    assert sorted(sluice.get(plan.execute(5))) == [5, 10]
    assert sluice.get(counter.read.remote()) == 10


def test_running_and_new_actors_mix_in_one_graph() -> None:
    running = Counter.remote(1000)
    fresh = Counter.bind(0)
    with sluice.InputNode() as inp:
        node = fresh.add.bind(running.add.bind(inp))
    assert sluice.get(node.execute(1)) == 1001
    assert sluice.get(node.execute(1)) == 1002 + 1001  # the new actor lives as long as the Plan


def test_binding_checks_the_methods_arguments() -> None:
    counter = Counter.remote()
    with pytest.raises(TypeError, match=r"Counter.add.bind\(\)"):
        counter.add.bind(1, 2)
