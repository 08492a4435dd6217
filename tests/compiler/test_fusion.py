"""fusion: linear chains of calls become one stage; every other edge says why not.

Rule (``sluice/compiler/passes/fusion.py``): ``u -> v`` fuses when both are
calls (or transfers), not actor ops; ``u`` has exactly one consumer and is not
a graph output; ``v`` reads no other computed op (a join stays a boundary);
both ask for the same resources and device; ``u`` returns one value. Each
edge between computed ops that does not fuse is in ``graph.graph["blocked"]``
with the first rule it broke. Compiler-only: no runtime is started.
"""

from __future__ import annotations

import networkx as nx
import pytest
from hypothesis import given, settings

from sluice.compiler.ir import OpKind, ops_of
from sluice.compiler.passes.fusion import fuse_linear_chains
from sluice.compiler.plan import Plan
from sluice.dsl.nodes import InputNode, MultiOutputNode
from tests.compiler.dag_example import Counter, add, graph_of, inc, op
from tests.dsl.test_to_graph import DagSpec, dag_specs

pytestmark = pytest.mark.usefixtures("no_runtime_started")
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None)
CPU2 = (("CPU", 2.0),)
COMPUTED = (OpKind.CALL, OpKind.TRANSFER, OpKind.ACTOR, OpKind.METHOD, OpKind.BLOCKS)


# -- tiny literal graphs ----------------------------------------------------------------------

def stages_of(graph: nx.DiGraph) -> list[set[str]]:
    """The stages as sets of op names, smallest first name first."""
    groups: dict[str, set[str]] = {}
    ops = ops_of(graph)
    for op_id, leader in graph.graph["stages"].items():
        groups.setdefault(leader, set()).add(ops[op_id].name)
    return sorted(groups.values(), key=lambda g: sorted(g))


def blocked_by_name(graph: nx.DiGraph) -> dict[tuple[str, str], str]:
    """The rules recorded for edges between computed ops (the ones the rule speaks of)."""
    ops = ops_of(graph)
    return {(ops[u].name, ops[v].name): rule for (u, v), rule in graph.graph["blocked"].items()
            if ops[u].kind in COMPUTED and ops[v].kind in COMPUTED}


def test_a_linear_chain_is_one_stage() -> None:
    inp = op(OpKind.INPUT, "input")
    a = op(OpKind.CALL, "a", inp)
    b = op(OpKind.CALL, "b", a)
    c = op(OpKind.CALL, "c", b)
    fused = fuse_linear_chains(graph_of(inp, a, b, c))
    assert stages_of(fused) == [{"a", "b", "c"}, {"input"}]
    assert fused.graph["stages"][c.id] == a.id  # a stage is named by its first op
    assert blocked_by_name(fused) == {}
    assert fused.graph["passes"] == ("fusion",)


def test_a_stream_op_never_fuses_with_the_calls_around_it() -> None:
    read = op(OpKind.CALL, "read")
    cut = op(OpKind.CALL, "cut", read)
    shuffle = op(OpKind.BLOCKS, "shuffle", cut, method="sort")
    after = op(OpKind.CALL, "after", shuffle)
    fused = fuse_linear_chains(graph_of(read, cut, shuffle, after))
    assert stages_of(fused) == [{"after"}, {"cut", "read"}, {"shuffle"}]
    rule = "stream op: shuffle works on the whole stream of blocks (sort), not block by block"
    assert blocked_by_name(fused) == {("cut", "shuffle"): rule, ("shuffle", "after"): rule}


def test_a_diamond_stays_four_stages_with_multi_consumer_and_join_rules() -> None:
    top = op(OpKind.CALL, "top")
    left = op(OpKind.CALL, "left", top)
    right = op(OpKind.CALL, "right", top)
    join = op(OpKind.CALL, "join", left, right)
    fused = fuse_linear_chains(graph_of(top, left, right, join))
    assert stages_of(fused) == [{"join"}, {"left"}, {"right"}, {"top"}]
    blocked = blocked_by_name(fused)
    assert blocked[("top", "left")] == "multi-consumer: top feeds 2 ops, so its value must be stored"
    assert blocked[("top", "right")] == "multi-consumer: top feeds 2 ops, so its value must be stored"
    assert blocked[("left", "join")] == "join: join reads 2 computed values (diamond or fan-in)"
    assert blocked[("right", "join")] == "join: join reads 2 computed values (diamond or fan-in)"
    assert "passes" not in fused.graph or "fusion" not in fused.graph["passes"]


def test_a_chain_into_a_diamond_fuses_only_its_linear_part() -> None:
    head = op(OpKind.CALL, "head")
    top = op(OpKind.CALL, "top", head)
    left = op(OpKind.CALL, "left", top)
    right = op(OpKind.CALL, "right", top)
    join = op(OpKind.CALL, "join", left, right)
    tail = op(OpKind.CALL, "tail", join)
    fused = fuse_linear_chains(graph_of(head, top, left, right, join, tail))
    assert stages_of(fused) == [{"head", "top"}, {"join", "tail"}, {"left"}, {"right"}]


def test_different_resources_keep_ops_apart() -> None:
    a = op(OpKind.CALL, "a", resources=CPU2)
    b = op(OpKind.CALL, "b", a)
    fused = fuse_linear_chains(graph_of(a, b))
    assert stages_of(fused) == [{"a"}, {"b"}]
    assert blocked_by_name(fused) == {("a", "b"): "different resources: {CPU: 2} vs {CPU: 1}"}


def test_a_different_device_keeps_ops_apart() -> None:
    a = op(OpKind.CALL, "a")
    b = op(OpKind.CALL, "b", a, device="gpu")
    fused = fuse_linear_chains(graph_of(a, b))
    assert blocked_by_name(fused) == {("a", "b"): "different device: cpu vs gpu"}


def test_actor_ops_never_fuse() -> None:
    actor = op(OpKind.ACTOR, "Counter")
    before = op(OpKind.CALL, "before")
    method = op(OpKind.METHOD, "Counter.add", actor, before, method="add")
    after = op(OpKind.CALL, "after", method)
    fused = fuse_linear_chains(graph_of(actor, before, method, after))
    assert stages_of(fused) == [{"Counter"}, {"Counter.add"}, {"after"}, {"before"}]
    rule = "actor op: actor methods run in their actor's process, not in a fused task"
    assert blocked_by_name(fused) == {("Counter", "Counter.add"): rule, ("before", "Counter.add"): rule,
                                      ("Counter.add", "after"): rule}


def test_an_output_of_the_graph_is_not_fused_away() -> None:
    a = op(OpKind.CALL, "a")
    b = op(OpKind.CALL, "b", a)
    fused = fuse_linear_chains(graph_of(a, b, outputs=(a, b)))
    assert stages_of(fused) == [{"a"}, {"b"}]
    assert blocked_by_name(fused) == {("a", "b"): "a is an output of the graph, so its value must be stored"}


def test_a_call_returning_several_values_is_not_fused_into_its_reader() -> None:
    a = op(OpKind.CALL, "a", num_returns=2)
    b = op(OpKind.CALL, "b", a)
    fused = fuse_linear_chains(graph_of(a, b))
    assert blocked_by_name(fused) == {("a", "b"): "a returns 2 values"}


def test_transfers_fuse_with_the_calls_beside_them() -> None:
    gpu = (("CPU", 1.0), ("GPU", 1.0))
    inp = op(OpKind.INPUT, "input")
    to_device = op(OpKind.TRANSFER, "to_device", inp, method="to_device", resources=gpu, device="gpu")
    kernel = op(OpKind.CALL, "kernel", to_device, resources=gpu, device="gpu")
    to_host = op(OpKind.TRANSFER, "to_host", kernel, method="to_host", resources=gpu, device="gpu")
    fused = fuse_linear_chains(graph_of(inp, to_device, kernel, to_host))
    assert stages_of(fused) == [{"input"}, {"kernel", "to_device", "to_host"}]


def test_inputs_and_selectors_never_join_a_call_stage_nor_break_a_chain() -> None:
    inp = op(OpKind.INPUT, "input")
    first = op(OpKind.SELECT, "input[0]", inp, key=("item", 0))
    second = op(OpKind.SELECT, "input[1]", inp, key=("item", 1))
    a = op(OpKind.CALL, "a", first)
    b = op(OpKind.CALL, "b", a, second)  # reads a select besides a: still a chain
    fused = fuse_linear_chains(graph_of(inp, first, second, a, b))
    assert stages_of(fused) == [{"a", "b"}, {"input"}, {"input[0]"}, {"input[1]"}]
    assert blocked_by_name(fused) == {}


def test_fusion_leaves_its_input_graph_alone() -> None:
    a = op(OpKind.CALL, "a")
    b = op(OpKind.CALL, "b", a)
    graph = graph_of(a, b)
    fused = fuse_linear_chains(graph)
    assert graph.graph["stages"] == {} and graph.graph["passes"] == ()
    assert fused is not graph and fused.graph["stages"] == {a.id: a.id, b.id: a.id}


# -- the same rules through .bind() and compile() ----------------------------------------------

def call_stages(plan: Plan) -> list[str]:
    return [s.name for s in plan.stages if s.kind is OpKind.CALL]


def computed_blocked(plan: Plan) -> list[tuple[str, str, str]]:
    kinds = {op.id: op.kind for stage in plan.stages for op in stage.ops}
    return [(u, v, rule) for u, v, rule in plan.blocked if kinds[u] in COMPUTED and kinds[v] in COMPUTED]


def rules(plan: Plan) -> list[str]:
    return sorted(rule.split(":")[0] for _, _, rule in computed_blocked(plan))


def test_a_bound_chain_compiles_to_one_call_stage() -> None:
    with InputNode() as inp:
        dag = inc.bind(inc.bind(inc.bind(inc.bind(inp))))
    plan = dag.compile()
    assert call_stages(plan) == ["inc+inc+inc+inc"]
    assert "fusion" in plan.passes and computed_blocked(plan) == []


def test_a_bound_diamond_is_blocked_by_join_and_multi_consumer() -> None:
    with InputNode() as inp:
        top = inc.bind(inp)
        dag = add.bind(inc.bind(top), inc.options(name="other").bind(top))
    plan = dag.compile()
    assert sorted(call_stages(plan)) == ["add", "inc", "inc", "other"]
    assert rules(plan) == ["join", "join", "multi-consumer", "multi-consumer"]


def test_differing_resources_block_a_bound_chain() -> None:
    with InputNode() as inp:
        dag = inc.bind(inc.options(num_cpus=2).bind(inp))
    plan = dag.compile()
    assert call_stages(plan) == ["inc", "inc"]
    ((_, _, rule),) = computed_blocked(plan)
    assert rule == "different resources: {CPU: 2} vs {CPU: 1}"


def test_actor_method_edges_block_a_bound_chain() -> None:
    with InputNode() as inp:
        dag = inc.bind(Counter.bind().add.bind(inc.bind(inp)))
    plan = dag.compile()
    assert sorted(s.name for s in plan.stages if s.kind is not OpKind.INPUT) == \
           ["Counter", "Counter.add", "inc", "inc"]
    assert rules(plan) == ["actor op"] * 3


def test_a_bound_output_read_by_another_op_stays_its_own_stage() -> None:
    with InputNode() as inp:
        first = inc.bind(inp)
        dag = MultiOutputNode([first, inc.bind(first)])
    plan = dag.compile()
    assert call_stages(plan) == ["inc", "inc"]
    ((_, _, rule),) = computed_blocked(plan)
    assert rule == "inc is an output of the graph, so its value must be stored"


# -- invariants over random graphs -------------------------------------------------------------

@SETTINGS
@given(dag_specs())
def test_every_stage_is_a_legal_chain_and_every_other_edge_is_explained(spec: DagSpec) -> None:
    plan = spec.build().compile()
    ops = {op.id: op for stage in plan.stages for op in stage.ops}
    stage_of = {op.id: stage.id for stage in plan.stages for op in stage.ops}
    consumers: dict[str, int] = {}
    for u, _ in plan.logical_edges:
        consumers[u] = consumers.get(u, 0) + 1
    for stage in plan.stages:
        for u, v in zip(stage.ops, stage.ops[1:]):
            assert consumers[u.id] == 1
            assert [i for i in v.inputs if ops[i].kind in COMPUTED] == [u.id]
            assert u.id not in plan.outputs
            assert (u.resources, u.device, u.num_returns) == (v.resources, v.device, 1)
            assert u.kind is OpKind.CALL and v.kind is OpKind.CALL
    blocked = {(u, v): rule for u, v, rule in plan.blocked}
    for u, v in plan.logical_edges:
        computed = ops[u].kind in COMPUTED and ops[v].kind in COMPUTED
        if stage_of[u] == stage_of[v]:
            assert (u, v) not in blocked
        elif computed:
            rule = blocked[(u, v)]
            if rule.startswith("multi-consumer"):
                assert consumers[u] > 1
            elif rule.startswith("join"):
                assert sum(ops[i].kind in COMPUTED for i in ops[v].inputs) > 1
            elif rule.startswith("different resources"):
                assert ops[u].resources != ops[v].resources
            else:
                assert rule.endswith("is an output of the graph, so its value must be stored")
                assert u in plan.outputs


@SETTINGS
@given(dag_specs())
def test_fusion_is_maximal_a_chain_of_plain_calls_always_fuses(spec: DagSpec) -> None:
    # Every edge whose ends satisfy all the rules lies inside one stage.
    plan = spec.build().compile()
    ops = {op.id: op for stage in plan.stages for op in stage.ops}
    stage_of = {op.id: stage.id for stage in plan.stages for op in stage.ops}
    consumers: dict[str, int] = {}
    for u, _ in plan.logical_edges:
        consumers[u] = consumers.get(u, 0) + 1
    for u, v in plan.logical_edges:
        a, b = ops[u], ops[v]
        legal = (a.kind is b.kind is OpKind.CALL and consumers[u] == 1 and u not in plan.outputs
                 and sum(ops[i].kind in COMPUTED for i in b.inputs) == 1
                 and a.resources == b.resources and a.device == b.device and a.num_returns == 1)
        assert legal == (stage_of[u] == stage_of[v]) or a.kind not in COMPUTED
