"""A Plan is immutable and safe to share: its run state lives in a PlanRun outside it.

Real threads on a real runtime: concurrent first executes create each actor once.
"""

from __future__ import annotations

import dataclasses
import gc
import pickle
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import sluice
from sluice.compiler import plan_run
from sluice.compiler.plan import Plan
from sluice.dsl.nodes import InputNode, MultiOutputNode

THREADS = 4
TRIALS = 20


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


@sluice.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n


@sluice.remote
def inc(x: int) -> int:
    return x + 1


def counter_dag() -> Any:
    with InputNode() as inp:
        return Counter.bind().add.bind(inp)


def together(n: int, fn: Callable[[], Any]) -> list[Any]:
    """``fn()`` called by ``n`` threads released at the same moment; their results."""
    barrier = threading.Barrier(n)
    results: list[Any] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            barrier.wait()
            results.append(fn())
        except BaseException as err:  # re-raised in the test's thread below
            errors.append(err)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_concurrent_first_executes_of_one_plan_create_its_actor_once() -> None:
    for trial in range(TRIALS):
        plan = counter_dag().compile()
        refs = together(THREADS, lambda: plan.execute(1))
        assert sorted(sluice.get(refs, timeout=60)) == [1, 2, 3, 4], f"trial {trial}"


def test_concurrent_first_executes_of_one_dag_node_compile_and_create_once() -> None:
    for trial in range(TRIALS):
        dag = counter_dag()
        refs = together(THREADS, lambda: dag.execute(1))
        assert sorted(sluice.get(refs, timeout=60)) == [1, 2, 3, 4], f"trial {trial}"


def test_a_plan_object_never_changes_when_executed() -> None:
    with InputNode() as inp:
        counter = Counter.bind()
        dag = MultiOutputNode([counter.add.bind(inc.bind(inp)), inc.bind(inp)])
    plan = dag.compile()
    fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}
    before = pickle.dumps(plan)
    assert not hasattr(plan, "__dict__") or set(vars(plan)) == set(fields)
    for x in range(3):
        sluice.get(plan.execute(x), timeout=60)
    together(THREADS, lambda: sluice.get(plan.execute(1), timeout=60))
    assert {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)} == fields
    assert set(vars(plan)) == set(fields)  # nothing was added beside the fields
    assert pickle.dumps(plan) == before
    assert pickle.loads(before) == plan


def test_equal_plans_keep_separate_run_states_that_go_with_their_plan() -> None:
    dag = counter_dag()
    first, second = dag.compile(), dag.compile()
    assert first == second
    assert sluice.get([first.execute(1), first.execute(1), second.execute(1)]) == [1, 2, 1]
    rt = sluice.executor.api.runtime()  # type: ignore[attr-defined]
    state = plan_run.plan_run(first, rt)
    assert plan_run.plan_run(first, rt) is state
    assert plan_run.plan_run(second, rt) is not state
    gc.collect()  # (plans earlier tests dropped go first: only this one may go below)
    before = len(plan_run._RUNS)
    del first, state
    gc.collect()
    assert len(plan_run._RUNS) == before - 1


def test_a_plan_run_belongs_to_one_runtime() -> None:
    plan: Plan = counter_dag().compile()
    rt = sluice.executor.api.runtime()  # type: ignore[attr-defined]
    other = object()  # stands for the runtime a later sluice.init() starts
    assert plan_run.plan_run(plan, rt) is plan_run.plan_run(plan, rt)
    assert plan_run.plan_run(plan, other) is not plan_run.plan_run(plan, rt)
