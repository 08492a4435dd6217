"""GPU placement: device set on GPU ops, explicit host<->device copies, input untouched."""

from __future__ import annotations

import networkx as nx

from sluice.compiler.ir import Op, OpKind, make_op, ops_of
from sluice.compiler.passes.gpu import TO_DEVICE, TO_HOST, place_gpus
from tests.compiler.dag_example import CPU1, GPU1, graph_of, op, snapshot


def call(name: str, *inputs: Op, resources: tuple = CPU1) -> Op:
    return op(OpKind.CALL, name, *inputs, fn_id=1, resources=resources)


def transfers(g: nx.DiGraph, method: str) -> list[Op]:
    return [op for op in ops_of(g).values() if op.kind is OpKind.TRANSFER and op.method == method]


def pipeline() -> tuple[list[Op], nx.DiGraph]:
    """input -> pre (cpu) -> train (gpu) -> post (cpu), post is the output."""
    inp = make_op(OpKind.INPUT, "input")
    pre = call("pre", inp)
    train = call("train", pre, resources=GPU1)
    post = call("post", train)
    ops = [inp, pre, train, post]
    return ops, graph_of(*ops, outputs=(post,))


def test_gpu_op_gets_device_and_keeps_its_id_and_resources() -> None:
    (inp, pre, train, post), g = pipeline()
    out = place_gpus(g)
    placed = out.nodes[train.id]["op"]
    assert placed.device == "gpu"
    assert placed.resources == GPU1
    assert placed.content != train.content  # content recomputed with the device
    assert {out.nodes[o.id]["op"].device for o in (inp, pre, post)} == {"cpu"}
    assert set(g.nodes) <= set(out.nodes)  # every original id is still there


def test_transfers_are_inserted_in_both_directions() -> None:
    (inp, pre, train, post), g = pipeline()
    out = place_gpus(g)
    [down] = transfers(out, TO_DEVICE)
    [up] = transfers(out, TO_HOST)
    assert down.inputs == (pre.id,) and down.name == TO_DEVICE
    assert out.nodes[train.id]["op"].inputs == (down.id,)
    assert up.inputs == (train.id,) and up.name == TO_HOST
    assert out.nodes[post.id]["op"].inputs == (up.id,)
    assert set(out.edges) == {(inp.id, pre.id), (pre.id, down.id), (down.id, train.id),
                              (train.id, up.id), (up.id, post.id)}
    assert nx.is_directed_acyclic_graph(out)


def test_transfers_take_the_gpu_side_so_they_fuse_with_it() -> None:
    (_, _, train, _), g = pipeline()
    out = place_gpus(g)
    [down] = transfers(out, TO_DEVICE)
    [up] = transfers(out, TO_HOST)
    assert (down.resources, down.device) == (train.resources, "gpu")
    assert (up.resources, up.device) == (train.resources, "gpu")


def test_same_device_edges_get_no_transfer() -> None:
    inp = make_op(OpKind.INPUT, "input")
    a = call("a", inp)
    b = call("b", a)
    g1 = call("g1", b, resources=GPU1)
    g2 = call("g2", g1, resources=GPU1)
    out = place_gpus(graph_of(inp, a, b, g1, g2, outputs=(g2,)))
    assert out.nodes[b.id]["op"].inputs == (a.id,)          # cpu -> cpu
    assert out.nodes[g2.id]["op"].inputs == (g1.id,)        # gpu -> gpu
    assert len(transfers(out, TO_DEVICE)) == 1
    assert len(transfers(out, TO_HOST)) == 1                # only for the output


def test_gpu_output_is_copied_back_for_the_driver() -> None:
    inp = make_op(OpKind.INPUT, "input")
    g1 = call("g1", inp, resources=GPU1)
    out = place_gpus(graph_of(inp, g1, outputs=(g1,)))
    [up] = transfers(out, TO_HOST)
    assert out.graph["outputs"] == (up.id,)
    assert up.inputs == (g1.id,)


def test_each_gpu_consumer_gets_its_own_to_device_and_readers_share_one_to_host() -> None:
    inp = make_op(OpKind.INPUT, "input")
    src = call("src", inp)
    g1 = call("g1", src, resources=GPU1)
    g2 = call("g2", src, resources=GPU1)
    h1 = call("h1", g1)
    h2 = call("h2", g1)
    out = place_gpus(graph_of(inp, src, g1, g2, h1, h2, outputs=(h1, h2, g2)))
    downs = transfers(out, TO_DEVICE)
    assert len({d.id for d in downs}) == 2
    assert {out.nodes[g.id]["op"].inputs[0] for g in (g1, g2)} == {d.id for d in downs}
    assert sorted(r for d in downs for r in out.successors(d.id)) == sorted([g1.id, g2.id])
    ups = {up.inputs[0]: up for up in transfers(out, TO_HOST)}
    assert set(ups) == {g1.id, g2.id}
    assert out.nodes[h1.id]["op"].inputs == out.nodes[h2.id]["op"].inputs == (ups[g1.id].id,)


def test_input_and_select_are_host_values() -> None:
    inp = make_op(OpKind.INPUT, "input")
    sel = make_op(OpKind.SELECT, "input[0]", inputs=(inp.id,), key=("item", 0))
    g1 = call("g1", sel, resources=GPU1)
    out = place_gpus(graph_of(inp, sel, g1, outputs=(g1,)))
    [down] = transfers(out, TO_DEVICE)
    assert down.inputs == (sel.id,)
    assert out.nodes[sel.id]["op"].device == "cpu"


def test_gpu_actor_is_placed_but_exchanges_host_values() -> None:
    inp = make_op(OpKind.INPUT, "input")
    actor = make_op(OpKind.ACTOR, "Model", fn_id=2, resources=GPU1, pure=False)
    method = make_op(OpKind.METHOD, "Model.predict", inputs=(actor.id, inp.id),
                     method="predict", pure=False)
    out = place_gpus(graph_of(inp, actor, method, outputs=(method,)))
    assert out.nodes[actor.id]["op"].device == "gpu"
    assert transfers(out, TO_DEVICE) == transfers(out, TO_HOST) == []
    assert out.nodes[method.id]["op"].inputs == (actor.id, inp.id)


def test_input_graph_is_unchanged() -> None:
    _, g = pipeline()
    before = snapshot(g)
    place_gpus(g)
    assert snapshot(g) == before


def test_pass_is_recorded_only_when_something_changed() -> None:
    inp = make_op(OpKind.INPUT, "input")
    a = call("a", inp)
    cpu_only = place_gpus(graph_of(inp, a, outputs=(a,)))
    assert cpu_only.graph["passes"] == ()
    assert snapshot(cpu_only) == snapshot(graph_of(inp, a, outputs=(a,)))
    _, g = pipeline()
    assert place_gpus(g).graph["passes"] == ("gpu_placement",)


def test_placement_is_idempotent() -> None:
    _, g = pipeline()
    once = place_gpus(g)
    twice = place_gpus(once)
    assert snapshot(twice)[:2] == snapshot(once)[:2]
    assert twice.graph["passes"] == ("gpu_placement",)
