"""Lazy graph nodes (``.bind()``), checked without starting a runtime."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import pytest

import sluice
from sluice.compiler.ir import OpKind
from sluice.compiler.plan import Plan
from sluice.dsl.nodes import (
    ClassMethodNode,
    ClassNode,
    DAGNode,
    FunctionNode,
    InputAttributeNode,
    InputNode,
    MultiOutputNode,
    compile,
)


@pytest.fixture(autouse=True)
def no_runtime_started() -> Iterator[None]:
    yield
    assert not sluice.is_initialized(), "a DSL-only test must not start a runtime"


@sluice.remote
def inc(x: int) -> int:
    return x + 1


@sluice.remote
def pair(a: object, b: object = None) -> tuple:
    return (a, b)


@sluice.remote
class Counter:
    def __init__(self, start: int = 0):
        self.n = start

    def add(self, k: int) -> int:
        self.n += k
        return self.n

    def read(self) -> int:
        return self.n


def test_bind_makes_nodes_of_each_kind_and_runs_nothing() -> None:
    with InputNode() as inp:
        call = inc.bind(inp)
        actor = Counter.bind(5)
        method = actor.add.bind(call)
    assert isinstance(call, FunctionNode) and repr(call) == "FunctionNode(inc)"
    assert isinstance(actor, ClassNode) and repr(actor) == "ClassNode(Counter)"
    assert isinstance(method, ClassMethodNode) and repr(method) == "ClassMethodNode(Counter.add)"
    assert repr(inp) == "InputNode()"
    assert all(isinstance(n, DAGNode) for n in (call, actor, method, inp))


def test_input_node_is_a_context_manager_that_returns_itself() -> None:
    node = InputNode()
    with node as inp:
        assert inp is node


@pytest.mark.parametrize(("select", "label"), [
    (lambda inp: inp[0], "input[0]"),
    (lambda inp: inp["k"], "input['k']"),
    (lambda inp: inp.k, "input.k"),
])
def test_selectors_make_input_attribute_nodes(select, label: str) -> None:
    with InputNode() as inp:
        part = select(inp)
    assert isinstance(part, InputAttributeNode)
    assert part.label == label and repr(part) == f"InputAttributeNode({label})"
    assert part.children() == [inp]


def test_private_attributes_are_not_selectors() -> None:
    # Protocols (pickle, copy) probe dunder/private names; they must not become graph nodes.
    with InputNode() as inp:
        with pytest.raises(AttributeError):
            inp._private  # noqa: B018
        actor = Counter.bind()
        with pytest.raises(AttributeError):
            actor._private  # noqa: B018


def test_children_are_in_argument_order_without_duplicates() -> None:
    with InputNode() as inp:
        a = inc.bind(inp)
        b = inc.bind(a)
        c = pair.bind(b, a)
        d = pair.bind(a, b=a)
    assert c.children() == [b, a]
    assert d.children() == [a]


def test_children_are_found_inside_lists_dicts_and_tuples() -> None:
    with InputNode() as inp:
        a, b, c = inc.bind(inp[0]), inc.bind(inp[1]), inc.bind(inp[2])
        node = pair.bind([a, {"k": b, "n": 1}], b=(c, [a]))
    assert node.children() == [a, b, c]


def test_children_of_a_deeply_nested_argument_are_found_iteratively() -> None:
    with InputNode() as inp:
        leaf = inc.bind(inp)
        nested: object = leaf
        for _ in range(5_000):
            nested = [nested]
        node = pair.bind(nested)
    assert node.children() == [leaf]


def test_a_method_call_reads_its_actor_first() -> None:
    with InputNode() as inp:
        value = inc.bind(inp)
        actor = Counter.bind(value)
        call = actor.add.bind(value)
    assert call.children() == [actor, value]
    assert actor.children() == [value]


def test_an_unknown_actor_method_names_the_methods_there_are() -> None:
    actor = Counter.bind()
    with pytest.raises(AttributeError, match=r"actor Counter has no method 'sub'; "
                                             r"its methods are add, read"):
        actor.sub  # noqa: B018


def test_a_bound_actor_method_cannot_run_eagerly() -> None:
    actor = Counter.bind()
    with pytest.raises(TypeError, match=r"Counter\.add of a graph node cannot run eagerly; "
                                        r"use \.bind\(\.\.\.\) and execute the graph"):
        actor.add.remote(1)


@pytest.mark.parametrize("make", [
    lambda: inc.bind(1),
    lambda: InputNode(),
    lambda: Counter.bind(),
    lambda: Counter.bind().add.bind(1),
    lambda: MultiOutputNode([inc.bind(1)]),
])
def test_calling_a_node_directly_is_a_type_error(make) -> None:
    node = make()
    with pytest.raises(TypeError, match=r"is a graph node; run the graph with \.execute\(\.\.\.\)"):
        node(1)


def test_multi_output_node_takes_only_nodes() -> None:
    with pytest.raises(TypeError, match=r"MultiOutputNode takes graph nodes, got int 3; "
                                        r"bind a function to make a node"):
        MultiOutputNode([inc.bind(1), 3])  # type: ignore[list-item]


def test_multi_output_node_reads_its_outputs_in_order() -> None:
    a, b = inc.bind(1), inc.bind(2)
    node = MultiOutputNode((b, a))
    assert node.children() == [b, a]
    assert repr(node) == "MultiOutputNode(2)"


def test_compile_returns_a_plan_without_a_runtime() -> None:
    with InputNode() as inp:
        dag = inc.bind(inc.bind(inp))
    plan = dag.compile()
    assert isinstance(plan, Plan)
    assert plan == compile(dag) == sluice.compile(dag)
    assert [s.kind for s in plan.stages] == [OpKind.INPUT, OpKind.CALL]
    unoptimized = dag.compile(optimize=False)
    assert unoptimized.optimized is False and len(unoptimized.stages) == 3


def test_a_bad_bind_fails_at_bind_before_starting_a_runtime() -> None:
    with pytest.raises(TypeError, match=r"^inc\.bind\(\): the arguments do not fit inc\(x\): too many "
                                        r"positional arguments"):
        inc.bind(1, 2)


def test_a_pickled_node_keeps_its_graph_and_drops_its_plan() -> None:
    with InputNode() as inp:
        dag = pair.bind(inc.bind(inp[0]), b=[inp.k])
    dag._plan = dag.compile()  # as execute() caches it
    copy = pickle.loads(pickle.dumps(dag))
    assert copy._plan is None
    assert isinstance(copy, FunctionNode) and repr(copy) == "FunctionNode(pair)"
    assert [repr(c) for c in copy.children()] == ["FunctionNode(inc)", "InputAttributeNode(input.k)"]
    assert len(copy.compile().stages) == len(dag._plan.stages)


def test_sluice_dag_is_rays_import_path_for_the_nodes() -> None:
    import sluice.dag
    from sluice.dag import InputNode as DagInputNode
    from sluice.dag import MultiOutputNode as DagMultiOutputNode

    assert (DagInputNode, DagMultiOutputNode) == (InputNode, MultiOutputNode)
    for name in sluice.dag.__all__:
        assert getattr(sluice.dag, name).__doc__


def test_experimental_compile_is_compile() -> None:
    @sluice.remote
    def inc(x):
        return x + 1

    with InputNode() as inp:
        node = inc.bind(inp)
    plan = node.experimental_compile()
    assert isinstance(plan, Plan)
    assert plan.to_json() == node.compile().to_json()
    plan.teardown()  # Ray's compiled graphs need it; a Plan has nothing to stop
