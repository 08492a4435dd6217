"""``build_graph``: DAG nodes become one frozen Op each, with content-addressed ids.

No runtime is started here. Besides the tests, this module holds what the
compiler tests share: :class:`DagSpec` and the ``dag_specs`` hypothesis
strategy (random DAGs made with ``.bind()``, with a plain-Python reference
evaluation), and :func:`run_graph_in_process`, a synchronous interpreter of a
logical graph that needs no worker.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sluice
from sluice.compiler.ir import (
    OpKind,
    Slot,
    fill_slots,
    ops_of,
    topological_ops,
    unpack_template,
)
from sluice.compiler.run import DAGInput
from sluice.dsl.nodes import DAGNode, InputNode, MultiOutputNode
from sluice.dsl.to_graph import build_graph
from sluice.executor.calls import load_function
from sluice.executor.object_ref import ObjectRef
from sluice.executor.strategies import NodeAffinitySchedulingStrategy

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None)
MOD = 1_000_003


@pytest.fixture(autouse=True)
def no_runtime_started() -> Iterator[None]:
    yield
    assert not sluice.is_initialized(), "building a graph must not start a runtime"


# -- the shared random-DAG generator ----------------------------------------------------------

@sluice.remote
def add(*xs: int, k: int = 0) -> int:
    """Sums its inputs plus k. (Its name sorts before "input", on purpose: op ids of
    calls then interleave with the input's in a lexicographic topological order.)"""
    return (sum(xs) + k) % MOD


@sluice.remote
def mul(*xs: int, k: int = 0) -> int:
    return (sum(xs) * (k + 2) + 1) % MOD


# What a random node may call: pure calls, one that asks for other resources (so fusion
# meets the "different resources" rule) and one impure call (which CSE must keep).
RANDOM_FUNCTIONS = (add, mul, add.options(num_cpus=2), mul.options(pure=False))


@dataclass(frozen=True)
class DagSpec:
    """A random DAG as data: node i calls ``RANDOM_FUNCTIONS[fn](*parents, k=k)``.

    A parent is an earlier node's index, or -1 for the InputNode. The outputs are
    the nodes nobody reads, plus ``extra_outputs`` (nodes that are also read).
    """

    nodes: tuple[tuple[int, tuple[int, ...], int], ...]
    extra_outputs: tuple[int, ...] = ()

    def output_indices(self) -> list[int]:
        read = {p for _, parents, _ in self.nodes for p in parents}
        sinks = [i for i in range(len(self.nodes)) if i not in read]
        return list(dict.fromkeys(sinks + list(self.extra_outputs)))

    def build(self) -> DAGNode:
        """The DAG, built with ``.bind()``: one node, or a MultiOutputNode of several."""
        with InputNode() as inp:
            built: list[DAGNode] = []
            for fn, parents, k in self.nodes:
                args = [inp if p < 0 else built[p] for p in parents]
                built.append(RANDOM_FUNCTIONS[fn].bind(*args, k=k))
        outs = [built[i] for i in self.output_indices()]
        return outs[0] if len(outs) == 1 else MultiOutputNode(outs)

    def evaluate(self, x: int) -> list[int]:
        """What the outputs must be for ``execute(x)``, computed in plain Python."""
        values: list[int] = []
        for fn, parents, k in self.nodes:
            args = [x if p < 0 else values[p] for p in parents]
            values.append(RANDOM_FUNCTIONS[fn].__wrapped__(*args, k=k))
        return [values[i] for i in self.output_indices()]

    @property
    def multi_output(self) -> bool:
        return len(self.output_indices()) > 1


@st.composite
def dag_specs(draw: Any, max_nodes: int = 7) -> DagSpec:
    """Random DAGs of up to ``max_nodes`` calls: chains, diamonds, fan-in and fan-out,
    repeated parents, constant-only calls and duplicates (small ``k`` makes CSE likely)."""
    n = draw(st.integers(1, max_nodes))
    nodes = []
    for i in range(n):
        fn = draw(st.integers(0, len(RANDOM_FUNCTIONS) - 1))
        parents = tuple(draw(st.lists(st.integers(-1, i - 1), max_size=3)))
        nodes.append((fn, parents, draw(st.integers(0, 2))))
    extra = tuple(draw(st.lists(st.integers(0, n - 1), max_size=2)))
    return DagSpec(tuple(nodes), extra)


def run_graph_in_process(graph: nx.DiGraph, *args: Any, **kwargs: Any) -> list[Any]:
    """Evaluate a logical graph op by op in this process (actors are local objects).

    A reference interpreter for compiler tests: no worker, no store. Returns the
    values of ``graph.graph["outputs"]``, in order.
    """
    functions = graph.graph["functions"]
    dag_input = DAGInput(args, kwargs)
    values: dict[str, Any] = {}
    for op in topological_ops(graph):
        inputs = [values[i] for i in op.inputs]
        call_args, call_kwargs = unpack_template(op.template)
        if op.kind is OpKind.INPUT:
            values[op.id] = dag_input.value()
        elif op.kind is OpKind.SELECT:
            values[op.id] = dag_input.select(op.key)
        elif op.kind is OpKind.CALL:
            fn = load_function(functions[op.fn_id])
            values[op.id] = fn(*fill_slots(call_args, inputs), **fill_slots(call_kwargs, inputs))
        elif op.kind is OpKind.ACTOR:
            cls = load_function(functions[op.fn_id])
            values[op.id] = cls(*fill_slots(call_args, inputs), **fill_slots(call_kwargs, inputs))
        elif op.kind is OpKind.METHOD:
            method = getattr(inputs[0], op.method)
            values[op.id] = method(*fill_slots(call_args, inputs), **fill_slots(call_kwargs, inputs))
        else:
            raise AssertionError(f"the reference interpreter does not run {op.kind} ops")
    return [values[o] for o in graph.graph["outputs"]]


# -- tiny literal graphs -----------------------------------------------------------------------

@sluice.remote
def inc(x: int) -> int:
    return x + 1


@sluice.remote
def pair(a: Any, b: Any = None) -> tuple:
    return (a, b)


@sluice.remote(num_cpus=2, max_retries=5, num_returns=2)
def split(x: int) -> tuple[int, int]:
    return x, -x


@sluice.remote
class Counter:
    def __init__(self, start: int = 0):
        self.n = start

    def add(self, k: int) -> int:
        self.n += k
        return self.n


def chain_of_three() -> DAGNode:
    with InputNode() as inp:
        return inc.bind(inc.bind(inc.bind(inp)))


def test_each_node_becomes_one_op_and_each_read_one_edge() -> None:
    with InputNode() as inp:
        a = inc.bind(inp)
        b = pair.bind(a, inp)
    g = build_graph(b)
    kinds = sorted(op.kind.value for op in ops_of(g).values())
    assert kinds == ["call", "call", "input"]
    ops = {op.name: op for op in ops_of(g).values()}
    assert ops["inc"].inputs == (ops["input"].id,)
    assert ops["pair"].inputs == (ops["inc"].id, ops["input"].id)  # argument order
    assert set(g.edges()) == {(ops["input"].id, ops["inc"].id), (ops["inc"].id, ops["pair"].id),
                              (ops["input"].id, ops["pair"].id)}
    assert g.graph["outputs"] == (ops["pair"].id,)
    assert g.graph["multi_output"] is False


def test_a_node_read_twice_is_one_input_and_two_slots() -> None:
    with InputNode() as inp:
        a = inc.bind(inp)
        b = pair.bind(a, a)
    g = build_graph(b)
    op = next(o for o in ops_of(g).values() if o.name == "pair")
    assert len(op.inputs) == 1
    assert unpack_template(op.template) == ((Slot(0), Slot(0)), {})


def test_nodes_nested_in_lists_dicts_and_tuples_become_slots_and_constants_stay() -> None:
    with InputNode() as inp:
        a = inc.bind(inp[0])
        b = inc.bind(inp[1])
        c = pair.bind([a, {"k": b, "c": 7}], b=(a, "s"))
    g = build_graph(c)
    op = next(o for o in ops_of(g).values() if o.name == "pair")
    assert [ops_of(g)[i].name for i in op.inputs] == ["inc", "inc"]  # a, then b: first-seen order
    assert unpack_template(op.template) == (([Slot(0), {"k": Slot(1), "c": 7}],), {"b": (Slot(0), "s")})
    assert [ops_of(g)[i].key for i in ops_of(g)[op.inputs[0]].inputs] == [("item", 0)]
    assert [ops_of(g)[i].key for i in ops_of(g)[op.inputs[1]].inputs] == [("item", 1)]


def test_selectors_become_select_ops_reading_the_input() -> None:
    with InputNode() as inp:
        dag = MultiOutputNode([inc.bind(inp[0]), inc.bind(inp["k"]), inc.bind(inp.attr)])
    g = build_graph(dag)
    selects = sorted((op.name, op.key) for op in ops_of(g).values() if op.kind is OpKind.SELECT)
    assert selects == [("input.attr", ("attr", "attr")), ("input['k']", ("item", "k")),
                       ("input[0]", ("item", 0))]
    (input_op,) = [op for op in ops_of(g).values() if op.kind is OpKind.INPUT]
    assert all(op.inputs == (input_op.id,) for op in ops_of(g).values() if op.kind is OpKind.SELECT)


def test_function_options_are_part_of_the_op() -> None:
    with InputNode() as inp:
        dag = split.bind(inp)
    op = next(o for o in ops_of(build_graph(dag)).values() if o.kind is OpKind.CALL)
    assert op.name == "split"
    assert op.resources == (("CPU", 2.0),)
    assert op.num_returns == 2
    assert dict(op.options)["max_retries"] == 5
    assert op.pure is True and op.device == "cpu"
    assert op.id.startswith("split-") and len(op.id) == len("split-") + 12


def test_an_actor_is_an_actor_op_and_its_method_calls_read_it_first() -> None:
    with InputNode() as inp:
        counter = Counter.bind(10)
        call = counter.add.bind(inp)
    g = build_graph(call)
    ops = {op.kind: op for op in ops_of(g).values()}
    actor, method, input_op = ops[OpKind.ACTOR], ops[OpKind.METHOD], ops[OpKind.INPUT]
    assert (actor.name, method.name, method.method) == ("Counter", "Counter.add", "add")
    assert actor.pure is False and method.pure is False
    assert method.inputs == (actor.id, input_op.id)
    assert unpack_template(actor.template) == ((10,), {})
    assert unpack_template(method.template) == ((Slot(1),), {})  # slot 0 is the actor
    assert ("_methods", (("add", 1),)) in actor.options
    assert load_function(g.graph["functions"][actor.fn_id]).__name__ == "Counter"


def constants_of(g: nx.DiGraph) -> dict[int, Any]:
    """Object id -> the CONSTANT op of each bound ObjectRef in ``g``."""
    return {op.key[1]: op for op in ops_of(g).values() if op.kind is OpKind.CONSTANT}


def test_a_bound_object_ref_becomes_a_constant_op_the_call_reads_by_slot() -> None:
    big, small = ObjectRef(7), ObjectRef(8)  # no runtime: refs that count nowhere
    g = build_graph(pair.bind(big, b=small))
    constants = constants_of(g)
    assert sorted(constants) == [7, 8]
    assert constants[7].key == ("object", 7) and constants[7].name == repr(big)
    assert unpack_template(constants[7].template) == ((big,), {})  # the ref itself, to run
    call = next(o for o in ops_of(g).values() if o.kind is OpKind.CALL)
    assert call.inputs == (constants[7].id, constants[8].id)
    assert unpack_template(call.template) == ((Slot(0),), {"b": Slot(1)})
    assert set(g.edges()) == {(constants[7].id, call.id), (constants[8].id, call.id)}


def test_one_object_bound_in_many_places_is_one_constant_op() -> None:
    ref = ObjectRef(7)
    with InputNode() as inp:
        a = pair.bind(ref, inp)
        b = pair.bind(a, ref)
        dag = pair.bind(ref, ref)
    g = build_graph(MultiOutputNode([b, dag]))
    (constant,) = constants_of(g).values()
    assert g.out_degree(constant.id) == 3
    both = next(o for o in ops_of(g).values() if o.inputs == (constant.id,))
    assert unpack_template(both.template) == ((Slot(0), Slot(0)), {})


def test_a_ref_nested_in_an_argument_stays_in_the_template_as_a_ref() -> None:
    ref = ObjectRef(7)
    g = build_graph(pair.bind([ref], b={"k": ref}))
    assert constants_of(g) == {}
    call = next(iter(ops_of(g).values()))
    assert call.inputs == () and unpack_template(call.template) == (([ref],), {"b": {"k": ref}})


def test_actor_constructors_and_method_calls_read_bound_objects_too() -> None:
    weights, batch = ObjectRef(7), ObjectRef(8)
    counter = Counter.bind(weights)
    g = build_graph(counter.add.bind(batch))
    constants = constants_of(g)
    ops = {op.kind: op for op in ops_of(g).values()}
    actor, method = ops[OpKind.ACTOR], ops[OpKind.METHOD]
    assert actor.inputs == (constants[7].id,)
    assert unpack_template(actor.template) == ((Slot(0),), {})
    assert method.inputs == (actor.id, constants[8].id)  # the actor first, as always
    assert unpack_template(method.template) == ((Slot(1),), {})


def test_a_scheduling_strategy_joins_the_op_only_when_given() -> None:
    strategy = NodeAffinitySchedulingStrategy("n1", soft=False)
    plain = next(iter(ops_of(build_graph(inc.bind(1))).values()))
    default = next(iter(ops_of(build_graph(
        inc.options(scheduling_strategy="DEFAULT").bind(1))).values()))
    placed = next(iter(ops_of(build_graph(
        inc.options(scheduling_strategy=strategy).bind(1))).values()))
    assert "scheduling_strategy" not in dict(plain.options) and default.id == plain.id
    assert dict(placed.options)["scheduling_strategy"] == strategy and placed.id != plain.id
    actor = next(iter(ops_of(build_graph(
        Counter.options(scheduling_strategy=strategy).bind())).values()))
    assert dict(actor.options)["scheduling_strategy"] == strategy


def test_functions_table_holds_each_function_once_by_id() -> None:
    with InputNode() as inp:
        dag = pair.bind(inc.bind(inp), inc.bind(inc.bind(inp)))
    g = build_graph(dag)
    fn_ids = {op.fn_id for op in ops_of(g).values() if op.kind is OpKind.CALL}
    assert set(g.graph["functions"]) == fn_ids and len(fn_ids) == 2
    assert {load_function(g.graph["functions"][i]).__name__ for i in fn_ids} == {"inc", "pair"}


def test_multi_output_node_lists_its_outputs_in_order_and_is_no_op() -> None:
    with InputNode() as inp:
        a = inc.bind(inp)
        b = pair.bind(a)
        dag = MultiOutputNode([b, a, b])
    g = build_graph(dag)
    assert g.graph["multi_output"] is True
    ids = {op.name: op.id for op in ops_of(g).values()}
    assert g.graph["outputs"] == (ids["pair"], ids["inc"], ids["pair"])
    assert OpKind.OUTPUT not in {op.kind for op in ops_of(g).values()}


def test_equal_nodes_stay_separate_ops_with_equal_content() -> None:
    with InputNode() as inp:
        dag = MultiOutputNode([inc.bind(inp), inc.bind(inp)])
    calls = [op for op in ops_of(build_graph(dag)).values() if op.kind is OpKind.CALL]
    assert len(calls) == 2
    assert calls[0].id != calls[1].id
    assert calls[0].content == calls[1].content  # for CSE to merge


def test_ops_that_differ_in_a_constant_have_different_content() -> None:
    with InputNode() as inp:
        dag = MultiOutputNode([pair.bind(inp, 1), pair.bind(inp, 2)])
    calls = [op for op in ops_of(build_graph(dag)).values() if op.kind is OpKind.CALL]
    assert calls[0].content != calls[1].content


def test_the_same_dag_built_twice_has_the_same_op_ids() -> None:
    first, second = build_graph(chain_of_three()), build_graph(chain_of_three())
    assert [op.id for op in topological_ops(first)] == [op.id for op in topological_ops(second)]
    assert first.graph["outputs"] == second.graph["outputs"]
    one_dag = chain_of_three()
    assert [op.id for op in topological_ops(build_graph(one_dag))] == \
           [op.id for op in topological_ops(build_graph(one_dag))]


@SETTINGS
@given(dag_specs())
def test_random_dags_built_twice_have_equal_ops(spec: DagSpec) -> None:
    first, second = build_graph(spec.build()), build_graph(spec.build())
    assert topological_ops(first) == topological_ops(second)
    assert first.graph["outputs"] == second.graph["outputs"]
    calls = [op for op in ops_of(first).values() if op.kind is OpKind.CALL]
    assert len(calls) == len(spec.nodes)  # one op per node; CSE has not run yet


@SETTINGS
@given(dag_specs(), st.integers(-5, 5))
def test_the_reference_interpreter_agrees_with_the_dag_spec(spec: DagSpec, x: int) -> None:
    # Guards the helpers the compiler tests lean on: the built graph computes the spec.
    assert run_graph_in_process(build_graph(spec.build()), x) == spec.evaluate(x)


def test_a_pickled_dag_builds_the_same_op_ids() -> None:
    dag = chain_of_three()
    before = [op.id for op in topological_ops(build_graph(dag))]
    copy = pickle.loads(pickle.dumps(dag))
    assert [op.id for op in topological_ops(build_graph(copy))] == before


def test_two_input_nodes_raise_value_error() -> None:
    with InputNode() as first, InputNode() as second:
        dag = pair.bind(first, second)
    with pytest.raises(ValueError, match=r"the graph has 2 InputNodes; use one InputNode and select "
                                         r"parts of it with inp\[0\], inp\['k'\] or inp\.k"):
        build_graph(dag)


def test_building_from_something_that_is_not_a_node_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"compile\(\) takes a graph node \(from \.bind\(\)\), got int"):
        build_graph(3)  # type: ignore[arg-type]


def test_a_10000_node_chain_builds_without_recursion() -> None:
    assert sys.getrecursionlimit() < 10_000
    with InputNode() as inp:
        node: DAGNode = inp
        for _ in range(10_000):
            node = inc.bind(node)
    g = build_graph(node)
    assert g.number_of_nodes() == 10_001
    assert nx.dag_longest_path_length(g) == 10_000


# -- cycles: refused when the graph is built, before any walk that could loop ------------------

def test_a_cycle_through_a_list_changed_after_bind_is_named() -> None:
    # .bind() cannot make a cycle, but a bound list changed afterwards can: the first
    # node then reads the last, which reads the first.
    later: list = []
    first = inc.bind(later)
    middle = pair.bind(first)
    last = inc.bind(middle)
    later.append(last)
    with pytest.raises(ValueError, match=r"^the graph has a cycle: FunctionNode\(inc\) -> "
                                         r"FunctionNode\(inc\) -> FunctionNode\(pair\) -> "
                                         r"FunctionNode\(inc\) \(each node reads the one before it\), "
                                         r"so no node of it can ever run\. A list or dict bound as an "
                                         r"argument was changed after \.bind\(\) to hold a node that "
                                         r"reads that call; bind each value once it is made"):
        build_graph(last)


def test_a_cycle_through_a_dict_is_found_from_any_node_and_by_compile_and_execute() -> None:
    kwargs: dict = {}
    first = pair.bind(1, b=kwargs)
    second = inc.bind(first)
    kwargs["k"] = second
    unrelated = inc.bind(1)
    for root in (first, second, MultiOutputNode([unrelated, second])):
        with pytest.raises(ValueError, match=r"^the graph has a cycle: "):
            build_graph(root)
    with pytest.raises(ValueError, match=r"^the graph has a cycle: "):
        second.compile()
    with pytest.raises(ValueError, match=r"^the graph has a cycle: "):
        second.execute()  # refused while compiling: no runtime starts


def test_a_node_that_reads_itself_is_a_cycle_of_one() -> None:
    box: list = []
    node = inc.bind(box)
    box.append(node)
    with pytest.raises(ValueError, match=r"^the graph has a cycle: FunctionNode\(inc\) -> "
                                         r"FunctionNode\(inc\) \("):
        build_graph(node)


def test_an_argument_that_holds_itself_is_named() -> None:
    loop: list = [1]
    loop.append(loop)
    with pytest.raises(ValueError, match=r"^an argument of FunctionNode\(pair\) is a list that holds "
                                         r"itself; .* pass a value without the loop$"):
        build_graph(pair.bind(loop))


def test_a_value_shared_by_two_arguments_is_no_cycle() -> None:
    shared = [inc.bind(1)]
    graph = build_graph(pair.bind(shared, {"again": shared}))
    assert graph.number_of_nodes() == 2
