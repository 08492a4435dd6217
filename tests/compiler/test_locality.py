"""Locality: one node keeps everything local; several nodes follow the largest input.

Pure: the cluster is plain data (node -> held op ids, sizes), no runtime runs.
"""

from __future__ import annotations

from typing import Any

import networkx as nx
import pytest

import sluice
from sluice.compiler.ir import Op, OpKind, PlacementReason, make_op, ops_of
from sluice.compiler.passes.locality import ClusterView, place_stages
from sluice.compiler.pipeline import compile_graph
from sluice.dsl.to_graph import build_graph
from sluice.executor.object_ref import ObjectRef
from sluice.executor.strategies import NodeAffinitySchedulingStrategy
from tests.compiler.dag_example import graph_of, inc, op, snapshot

pytestmark = pytest.mark.usefixtures("no_runtime_started")

INP = make_op(OpKind.INPUT, "input")


def call(name: str, *inputs: Op) -> Op:
    return op(OpKind.CALL, name, *inputs, fn_id=1)


def join_graph() -> tuple[list[Op], nx.DiGraph]:
    """Two loads feed a join; the join and a follow-up are fused into stage s3."""
    small = call("load_small", INP)
    big = call("load_big", INP)
    join = call("join", small, big)
    post = call("post", join)
    stages = {INP: "s0", small: "s1", big: "s2", join: "s3", post: "s3"}
    sizes = {small.id: 1_000, big.id: 50_000_000}
    return [small, big, join, post], graph_of(INP, small, big, join, post, stages=stages,
                                              sizes=sizes)


def test_one_node_places_every_op_locally() -> None:
    _, g = join_graph()
    for nodes in (None, {"n1": {INP.id}}):
        out = place_stages(g, nodes)
        assert out.graph["placement"] == {op_id: "local" for op_id in g.nodes}
        assert out.graph["passes"] == ()


def test_stage_goes_where_its_largest_input_lives() -> None:
    (small, big, join, post), g = join_graph()
    out = place_stages(g, {"n1": {small.id}, "n2": {big.id}})
    assert out.graph["placement"][join.id] == "n2"
    assert out.graph["placement"][post.id] == "n2"  # fused with join: one stage, one place
    assert out.graph["passes"] == ("locality",)
    swapped = place_stages(g, {"n1": {big.id}, "n2": {small.id}})
    assert swapped.graph["placement"][join.id] == "n1"


def test_unknown_sizes_and_ties_stay_local() -> None:
    (small, big, join, _), g = join_graph()
    g.graph["sizes"] = {}
    out = place_stages(g, {"n1": {small.id}, "n2": {big.id}})
    assert set(out.graph["placement"].values()) == {"local"}
    assert out.graph["passes"] == ()
    g.graph["sizes"] = {small.id: 10, big.id: 10}
    tied = place_stages(g, {"n1": {small.id}, "n2": {big.id}})
    assert tied.graph["placement"][join.id] == "local"


def test_placed_stage_outputs_guide_the_next_stage() -> None:
    (small, big, join, post), g = join_graph()
    tail = call("tail", post)
    g2 = graph_of(INP, small, big, join, post, tail, sizes={**g.graph["sizes"], post.id: 5})
    g2.graph["stages"] = {**g.graph["stages"], tail.id: "s4"}
    out = place_stages(g2, {"n1": {small.id}, "n2": {big.id}})
    assert out.graph["placement"][tail.id] == "n2"  # post's value lives where s3 ran


def test_method_stage_runs_where_its_actor_is() -> None:
    data = call("load", INP)
    actor = make_op(OpKind.ACTOR, "Model", inputs=(data.id,), fn_id=2, pure=False)
    other = call("other", INP)
    method = make_op(OpKind.METHOD, "Model.predict", inputs=(actor.id, other.id),
                     method="predict", pure=False)
    stages = {INP: "s0", data: "s1", actor: "s2", other: "s3", method: "s4"}
    g = graph_of(INP, data, actor, other, method, stages=stages,
                 sizes={data.id: 100, other.id: 10_000})
    out = place_stages(g, {"n1": {data.id}, "n2": {other.id}})
    assert out.graph["placement"][actor.id] == "n1"
    assert out.graph["placement"][method.id] == "n1"  # not n2, though its biggest input is there


def test_input_graph_is_unchanged_and_ops_are_kept() -> None:
    (small, big, _, _), g = join_graph()
    before = snapshot(g)
    out = place_stages(g, {"n1": {small.id}, "n2": {big.id}})
    assert g.graph["placement"] == {} and g.graph["passes"] == ()
    assert snapshot(g) == before
    assert ops_of(out) == ops_of(g) and sorted(out.edges) == sorted(g.edges)


# -- bound objects, the user's strategy, and compile with a cluster view ----------------------

MB = 1 << 20


def constant(object_id: int) -> Op:
    """A bound ObjectRef as the front end records it (the ref itself is not needed here)."""
    return make_op(OpKind.CONSTANT, f"ObjectRef(0:{object_id})", key=("object", object_id))


def test_a_stage_follows_its_largest_bound_object_and_says_why() -> None:
    big, small = constant(1), constant(2)
    use = call("use", big, small)
    g = graph_of(big, small, use, sizes={big.id: 200 * MB, small.id: 1_000})
    out = place_stages(g, {"n1": {small.id}, "n2": {big.id}, "n3": set()})
    assert out.graph["placement"] == {big.id: "n2", small.id: "n1", use.id: "n2"}
    reasons = out.graph["placement_reasons"]
    assert reasons[use.id] == PlacementReason("largest_input", big.id, 200 * MB)
    assert reasons[big.id] == PlacementReason("holds", big.id, 200 * MB)
    assert reasons[small.id] == PlacementReason("holds", small.id, 1_000)


def test_an_object_held_on_two_nodes_is_a_tie_and_its_reader_stays_local() -> None:
    big = constant(1)
    use = call("use", big)
    g = graph_of(big, use, sizes={big.id: 200 * MB})
    out = place_stages(g, {"n1": {big.id}, "n2": {big.id}})
    assert out.graph["placement"] == {big.id: "local", use.id: "local"}
    assert out.graph["placement_reasons"] == {} and out.graph["passes"] == ()


def test_an_object_no_node_holds_or_of_unknown_size_does_not_place_its_reader() -> None:
    big, other = constant(1), constant(2)
    use = call("use", big, other)
    g = graph_of(big, other, use, sizes={big.id: 200 * MB})  # other: size unknown
    assert place_stages(g, {"n1": set(), "n2": {other.id}}).graph["placement"][use.id] == "local"


def test_the_users_scheduling_strategy_wins_over_the_largest_input() -> None:
    big = constant(1)
    chosen = NodeAffinitySchedulingStrategy("n1", soft=False)
    use = op(OpKind.CALL, "use", big, fn_id=1, options=(("scheduling_strategy", chosen),))
    after = call("after", use)
    g = graph_of(big, use, after, sizes={big.id: 200 * MB})
    out = place_stages(g, {"n1": set(), "n2": {big.id}})
    assert out.graph["placement"][use.id] == "n1"
    assert out.graph["placement_reasons"][use.id] == PlacementReason("scheduling_strategy", use.id)
    # Its output's size is unknown: the next stage is placed by nothing it reads.
    assert out.graph["placement"][after.id] == "local"


def test_an_actor_goes_to_its_bound_object_and_its_calls_follow_it() -> None:
    weights = constant(1)
    model = make_op(OpKind.ACTOR, "Model", inputs=(weights.id,), fn_id=2, pure=False)
    batch = constant(2)
    predict = make_op(OpKind.METHOD, "Model.predict", inputs=(model.id, batch.id),
                      method="predict", pure=False)
    g = graph_of(weights, model, batch, predict, sizes={weights.id: 50 * MB, batch.id: 80 * MB})
    out = place_stages(g, {"n1": {weights.id}, "n2": {batch.id}})
    assert out.graph["placement"][model.id] == "n1"
    assert out.graph["placement"][predict.id] == "n1"  # its bigger input is on n2: the actor wins
    assert out.graph["placement_reasons"][predict.id] == PlacementReason("actor", model.id)


@sluice.remote
def total(a: Any, b: Any = None) -> float:
    return float(a.sum())


def test_compile_with_a_cluster_view_places_the_plan_and_keeps_the_sizes() -> None:
    big, small = ObjectRef(101), ObjectRef(102)  # no runtime: refs that count nowhere
    graph = build_graph(inc.bind(total.bind(big, b=small)))
    of = {o.key[1]: o.id for o in ops_of(graph).values() if o.kind is OpKind.CONSTANT}
    view = ClusterView(held={"n1": {of[102]}, "n2": {of[101]}},
                       sizes={of[101]: 200 * MB, of[102]: 1_000})
    plan = compile_graph(graph, cluster=view)
    [work] = [st for st in plan.stages if st.kind is OpKind.CALL]
    assert work.name == "total+inc" and work.placement == "n2"
    assert work.placement_reason == PlacementReason("largest_input", of[101], 200 * MB)
    assert dict(plan.sizes) == {of[101]: 200 * MB, of[102]: 1_000}
    assert "locality" in plan.passes
    local = compile_graph(graph)  # no view: every stage stays local
    assert {st.placement for st in local.stages} == {"local"} and local.sizes == ()
