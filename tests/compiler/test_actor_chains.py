"""The actor_chains pass: which method calls forward actor to actor, recorded in the Plan
and shown by explain(), to_json() and visualize().

Compiler-only: no runtime is started (test_runner.py runs forwarded chains).
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import sluice
from sluice.compiler.ir import ActorChain, OpKind, ops_of
from sluice.compiler.passes.actor_chains import RULE, find_actor_chains
from sluice.compiler.plan import Plan
from sluice.dsl.nodes import DAGNode, InputNode, MultiOutputNode
from sluice.dsl.to_graph import build_graph


@pytest.fixture(autouse=True)
def no_runtime_started() -> Iterator[None]:
    yield
    assert not sluice.is_initialized(), "a compiler test must not start a runtime"


@sluice.remote
class Relay:
    def step(self, x: int) -> int:
        return x + 1

    def keyed(self, *, x: int) -> int:
        return x + 1

    def pair(self, x: int, y: int) -> int:
        return x + y

    def many(self, xs: list) -> int:
        return sum(xs)

    @sluice.method(num_returns=2)
    def split(self, x: int) -> tuple[int, int]:
        return x, x


@sluice.remote
def inc(x: int) -> int:
    return x + 1


def relay_line(hops: int, source: Any) -> tuple[list[DAGNode], DAGNode]:
    """``hops`` calls alternating over two actors, the first reading ``source``."""
    actors = [Relay.bind(), Relay.bind()]
    node = source
    calls = []
    for i in range(hops):
        node = actors[i % 2].step.bind(node)
        calls.append(node)
    return calls, node


def method_ids(plan: Plan) -> list[str]:
    """The METHOD op ids of ``plan`` in plan order."""
    return [st.output for st in plan.stages if st.kind is OpKind.METHOD]


def number_of(plan: Plan, op_id: str) -> int:
    return next(i for i, st in enumerate(plan.stages, start=1) if st.output == op_id)


def test_a_line_of_calls_fed_by_the_input_is_one_chain() -> None:
    with InputNode() as inp:
        _, last = relay_line(6, inp)
    plan = last.compile()
    methods = method_ids(plan)
    source = next(st.output for st in plan.stages if st.kind is OpKind.INPUT)
    assert plan.actor_chains == (ActorChain(source=source, ops=tuple(methods), slots=(0,) * 6),)
    assert plan.not_chained == ()
    assert "actor_chains" in plan.passes


def test_an_unoptimized_plan_chains_too() -> None:
    with InputNode() as inp:
        _, last = relay_line(3, inp)
    assert len(last.compile(optimize=False).actor_chains[0].ops) == 3


def test_a_keyword_argument_is_a_chain_slot() -> None:
    actor = Relay.bind()
    with InputNode() as inp:
        last = actor.keyed.bind(x=actor.keyed.bind(x=inp))
    (chain,) = last.compile().actor_chains
    assert chain.slots == ("x", "x")


def test_a_call_read_twice_ends_the_chain_there_and_says_why() -> None:
    with InputNode() as inp:
        calls, last = relay_line(3, inp)
        dag = MultiOutputNode([last, inc.bind(calls[1])])
    plan = dag.compile()
    ids = method_ids(plan)
    assert [c.ops for c in plan.actor_chains] == [tuple(ids[:2])]
    assert plan.not_chained == ((ids[1], ids[2], "multi-consumer: Relay.step feeds 2 ops, so its "
                                                 "value must be stored"),)


def test_an_output_in_the_middle_breaks_the_chain() -> None:
    with InputNode() as inp:
        calls, last = relay_line(2, inp)
        dag = MultiOutputNode([calls[0], last])
    plan = dag.compile()
    assert plan.actor_chains == ()
    (src, dst, rule), = plan.not_chained
    assert rule == "Relay.step is an output of the graph, so its value must be stored"


@pytest.mark.parametrize(("build", "rule"), [
    (lambda a, prev, inp: a.many.bind([prev]),
     "Relay.many takes the value inside a list, tuple or dict, not as a whole argument"),
    (lambda a, prev, inp: a.pair.bind(prev, inc.bind(inp)),
     "join: Relay.pair reads 2 computed values besides its actor"),
    (lambda a, prev, inp: a.pair.bind(prev, prev),
     "Relay.pair reads the value 2 times"),
])
def test_a_method_edge_that_cannot_chain_names_its_rule(build: Any, rule: str) -> None:
    actor = Relay.bind()
    with InputNode() as inp:
        first = actor.step.bind(inp)
        dag = build(actor, first, inp)
    plan = dag.compile()
    assert plan.actor_chains == ()
    assert plan.not_chained == ((first_id(plan), dag_id(plan), rule),)


def test_a_call_returning_several_values_does_not_chain() -> None:
    actor = Relay.bind()
    with InputNode() as inp:
        last = actor.step.bind(actor.split.bind(actor.step.bind(inp)))
    plan = last.compile()
    ids = method_ids(plan)
    assert plan.actor_chains == ()
    assert plan.not_chained == tuple(sorted([
        (ids[0], ids[1], "Relay.split returns 2 values"),
        (ids[1], ids[2], "Relay.split returns 2 values")]))


def first_id(plan: Plan) -> str:
    return method_ids(plan)[0]


def dag_id(plan: Plan) -> str:
    return plan.outputs[0]


def test_the_input_beside_the_chained_value_travels_with_the_hop() -> None:
    actor = Relay.bind()
    with InputNode() as inp:
        last = actor.pair.bind(actor.step.bind(inp[0]), inp[1])
    (chain,) = last.compile().actor_chains
    assert chain.slots == (0, 0)


def test_a_first_call_reading_two_values_leaves_the_chain_to_the_next() -> None:
    actor = Relay.bind()
    with InputNode() as inp:
        head = actor.pair.bind(inc.bind(inp), inc.bind(inc.bind(inp)))
        last = actor.step.bind(actor.step.bind(head))
    plan = last.compile()
    ids = method_ids(plan)
    assert plan.actor_chains == (ActorChain(source=ids[0], ops=tuple(ids[1:]), slots=(0, 0)),)


def test_a_single_call_after_a_task_is_no_chain_and_needs_no_reason() -> None:
    actor = Relay.bind()
    with InputNode() as inp:
        plan = actor.step.bind(inc.bind(inp)).compile()
    assert plan.actor_chains == () and plan.not_chained == ()
    assert "Actor chains" not in plan.explain()


def test_the_pass_leaves_its_input_graph_alone() -> None:
    with InputNode() as inp:
        _, last = relay_line(3, inp)
    graph = build_graph(last)
    before = (dict(graph.graph), ops_of(graph))
    out = find_actor_chains(graph)
    assert (dict(graph.graph), ops_of(graph)) == before
    assert len(out.graph["actor_chains"]) == 1 and out.graph["passes"] == ("actor_chains",)


def test_a_chain_longer_than_the_recursion_limit_is_found() -> None:
    hops = sys.getrecursionlimit() + 500
    with InputNode() as inp:
        _, last = relay_line(hops, inp)
    (chain,) = last.compile().actor_chains
    assert len(chain.ops) == hops


def test_explain_lists_each_chain_by_stage_with_the_rule_and_why_others_did_not() -> None:
    with InputNode() as inp:
        calls, last = relay_line(3, inp)
        dag = MultiOutputNode([last, inc.bind(calls[1])])
    plan = dag.compile()
    ids = method_ids(plan)
    inp_op = next(st.output for st in plan.stages if st.kind is OpKind.INPUT)
    n = [number_of(plan, i) for i in ids]
    lines = plan.explain().splitlines()
    start = lines.index("Actor chains (one call from the driver per execute, forwarded actor to actor):")
    assert lines[start + 1:start + 4] == [
        f"  rule: {RULE}",
        f"  chain 1: ({n[0]}) Relay.step -> ({n[1]}) Relay.step <- ({number_of(plan, inp_op)}) input",
        f"  not chained {ids[1]} -> {ids[2]}: multi-consumer: Relay.step feeds 2 ops, so its value "
        "must be stored",
    ]
    assert lines[start - 1].startswith("Passes: ") and "actor_chains" in lines[start - 1]
    assert lines[start + 4].startswith("Not fused:")


def test_to_json_and_the_drawing_carry_the_chains() -> None:
    with InputNode() as inp:
        _, last = relay_line(3, inp)
    plan = last.compile()
    data = plan.to_json()
    ids = method_ids(plan)
    (chain,) = data["actor_chains"]
    assert chain["ops"] == ids and chain["slots"] == [0, 0, 0] and chain["index"] == 1
    assert chain["stages"] == [plan.stage_of(i).id for i in ids]
    assert data["chain_rule"] == RULE and data["not_chained"] == []
    kinds = {(e["src"], e["dst"]): e["kind"] for e in data["edges"]}
    assert kinds[(ids[0], ids[1])] == kinds[(ids[1], ids[2])] == "chained"
    assert kinds[(chain["source"], ids[0])] != "chained"  # the source comes from the driver
    pytest.importorskip("graphviz")
    dot = plan.visualize().source
    [line] = [ln for ln in dot.splitlines() if f'"{ids[0]}" -> "{ids[1]}"' in ln]
    assert "label=chained" in line and "bold" in line


def test_a_pickled_plan_keeps_its_chains() -> None:
    with InputNode() as inp:
        _, last = relay_line(4, inp)
    plan = last.compile()
    copy = pickle.loads(pickle.dumps(plan))
    assert copy.actor_chains == plan.actor_chains and copy.explain() == plan.explain()
