"""cse: equal pure ops are computed once; actors and impure calls never merge.

Rule (``sluice/compiler/passes/cse.py``): two ops merge when both are pure (a
CALL with ``pure=True``, an INPUT or a SELECT) and have equal content: the same
function, constant arguments, options and placement, and (after earlier merges)
the same inputs. Compiler-only: no runtime is started (test_run.py checks that
a merged call runs once per execute).
"""

from __future__ import annotations

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sluice
from sluice.compiler.ir import OpKind, ops_of
from sluice.compiler.passes.cse import eliminate_common_subexpressions
from sluice.dsl.nodes import DAGNode, InputNode, MultiOutputNode
from sluice.dsl.to_graph import build_graph
from tests.compiler.dag_example import Counter, inc, snapshot
from tests.dsl.test_to_graph import (
    RANDOM_FUNCTIONS,
    DagSpec,
    dag_specs,
    run_graph_in_process,
)

pytestmark = pytest.mark.usefixtures("no_runtime_started")
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None)


@sluice.remote
def scale(x: int, by: int = 2) -> int:
    return x * by


def cse(dag: DAGNode) -> nx.DiGraph:
    return eliminate_common_subexpressions(build_graph(dag))


def count(graph: nx.DiGraph, kind: OpKind) -> int:
    return sum(1 for op in ops_of(graph).values() if op.kind is kind)


def test_two_equal_pure_calls_become_one_op() -> None:
    with InputNode() as inp:
        dag = MultiOutputNode([inc.bind(inp), inc.bind(inp)])
    graph = cse(dag)
    assert count(graph, OpKind.CALL) == 1
    (call,) = [op.id for op in ops_of(graph).values() if op.kind is OpKind.CALL]
    assert graph.graph["outputs"] == (call, call)  # both outputs read the survivor
    assert graph.graph["passes"] == ("cse",)
    plan = dag.compile()
    assert [s.kind for s in plan.stages] == [OpKind.INPUT, OpKind.CALL]
    assert plan.outputs == (call, call)


def test_merges_follow_through_chains_and_joins() -> None:
    with InputNode() as inp:
        left = scale.bind(inc.bind(inp[0]), 3)
        right = scale.bind(inc.bind(inp[0]), 3)
        dag = MultiOutputNode([inc.bind(left), inc.bind(right), scale.bind(left, by=right)])
    graph = cse(dag)
    assert count(graph, OpKind.SELECT) == 1
    # inc(inp[0]), scale(., 3), inc(scale) and the join: the two copies fold into one each.
    assert count(graph, OpKind.CALL) == 4
    assert run_graph_in_process(graph, [4]) == [16, 16, 225]  # one argument: inp[0] is its item


def test_equal_selectors_merge() -> None:
    with InputNode() as inp:
        dag = MultiOutputNode([inc.bind(inp["a"]), scale.bind(inp["a"]), scale.bind(inp.a)])
    graph = cse(dag)
    keys = sorted(op.key for op in ops_of(graph).values() if op.kind is OpKind.SELECT)
    assert keys == [("attr", "a"), ("item", "a")]  # inp["a"] and inp.a select differently


@pytest.mark.parametrize("other", [
    lambda inp: scale.bind(inp, 3),                      # another constant
    lambda inp: scale.bind(inp, by=2),                   # the same value, passed another way
    lambda inp: scale.options(num_cpus=2).bind(inp, 2),  # other resources
    lambda inp: scale.options(max_retries=0).bind(inp, 2),
    lambda inp: scale.options(name="double").bind(inp, 2),
    lambda inp: scale.bind(inp[0], 2),                   # another input
])
def test_calls_that_differ_in_content_stay_apart(other) -> None:
    with InputNode() as inp:
        dag = MultiOutputNode([scale.bind(inp, 2), other(inp)])
    assert count(cse(dag), OpKind.CALL) == 2


def test_impure_calls_never_merge() -> None:
    impure = inc.options(pure=False)
    with InputNode() as inp:
        dag = MultiOutputNode([impure.bind(inp), impure.bind(inp)])
    graph = cse(dag)
    assert count(graph, OpKind.CALL) == 2
    assert "cse" not in graph.graph["passes"]
    plan = dag.compile()
    assert sum(1 for s in plan.stages if s.kind is OpKind.CALL) == 2


def test_actor_constructions_never_merge() -> None:
    with InputNode() as inp:
        first, second = Counter.bind(), Counter.bind()
        dag = MultiOutputNode([first.add.bind(inp), second.add.bind(inp)])
    graph = cse(dag)
    assert count(graph, OpKind.ACTOR) == 2
    assert count(graph, OpKind.METHOD) == 2


def test_actor_method_calls_never_merge() -> None:
    with InputNode() as inp:
        counter = Counter.bind()
        dag = MultiOutputNode([counter.add.bind(inp), counter.add.bind(inp)])
    graph = cse(dag)
    assert count(graph, OpKind.ACTOR) == 1
    assert count(graph, OpKind.METHOD) == 2


def step_closing_over(k: int) -> sluice.RemoteFunction:
    @sluice.remote
    def step(x: int) -> int:
        return x + k
    return step


def step_defaulting_to(k: int) -> sluice.RemoteFunction:
    @sluice.remote
    def step(x: int, k: int = k) -> int:
        return x + k
    return step


@pytest.mark.parametrize("make", [step_closing_over, step_defaulting_to])
def test_functions_with_the_same_code_but_other_captured_values_do_not_merge(make) -> None:
    # Not "the same function": merging them would compute x + 1 for both.
    plus_one, plus_two = make(1), make(2)
    with InputNode() as inp:
        dag = MultiOutputNode([plus_one.bind(inp), plus_two.bind(inp)])
    graph = cse(dag)
    assert run_graph_in_process(graph, 10) == [11, 12]
    assert count(graph, OpKind.CALL) == 2


def test_the_signature_of_a_merged_op_goes_with_it() -> None:
    with InputNode() as inp:
        dag = MultiOutputNode([inc.bind(inp), inc.bind(inp)])
    graph = cse(dag)
    assert set(graph.graph["signatures"]) <= set(graph.nodes)


def test_nothing_to_merge_returns_the_graph_itself() -> None:
    with InputNode() as inp:
        graph = build_graph(inc.bind(scale.bind(inp)))
    assert eliminate_common_subexpressions(graph) is graph


@SETTINGS
@given(dag_specs(), st.integers(-3, 3))
def test_cse_keeps_what_the_graph_computes_and_leaves_its_input_alone(spec: DagSpec, x: int) -> None:
    graph = build_graph(spec.build())
    before = snapshot(graph)
    merged = eliminate_common_subexpressions(graph)
    assert snapshot(graph) == before
    assert run_graph_in_process(merged, x) == spec.evaluate(x)
    assert set(merged.graph["outputs"]) <= set(merged.nodes)
    assert all(set(op.inputs) <= set(merged.nodes) for op in ops_of(merged).values())


@SETTINGS
@given(dag_specs())
def test_after_cse_no_two_pure_ops_are_equal_and_impure_calls_all_stay(spec: DagSpec) -> None:
    merged = eliminate_common_subexpressions(build_graph(spec.build()))
    pure = [op.content for op in ops_of(merged).values() if op.pure]
    assert len(pure) == len(set(pure))
    impure_nodes = sum(1 for fn, _, _ in spec.nodes if not RANDOM_FUNCTIONS[fn]._options["pure"])
    assert sum(1 for op in ops_of(merged).values() if not op.pure) == impure_nodes
    assert eliminate_common_subexpressions(merged) is merged  # a fixed point
