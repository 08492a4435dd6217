"""Locality: one node keeps everything local; several nodes follow the largest input."""

from __future__ import annotations

import networkx as nx

from sluice.compiler.ir import Op, OpKind, make_op, ops_of
from sluice.compiler.passes.locality import place_stages
from tests.compiler.dag_example import graph_of, op, snapshot

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
