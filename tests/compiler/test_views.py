"""Views of a Plan: ``to_json``, ``explain`` text and graphviz drawings, on tiny literal plans."""

from __future__ import annotations

import dataclasses
import html
import json
import pickle
import re

import pytest

from sluice.compiler import views
from sluice.compiler.ir import Op, OpKind, PlacementReason
from sluice.compiler.passes.locality import RULE as PLACEMENT_RULE
from sluice.compiler.plan import Plan, Stage, stage_id
from tests.compiler.dag_example import CPU1, GPU1, op


def stage(*ops: Op, device: str = "cpu", resources=CPU1, placement: str = "local") -> Stage:
    members = {o.id for o in ops}
    inputs = tuple(dict.fromkeys(i for o in ops for i in o.inputs if i not in members))
    return Stage(id=stage_id(ops), kind=ops[-1].kind, ops=ops, inputs=inputs, output=ops[-1].id,
                 resources=resources, device=device, placement=placement)


class Pipeline:
    """input -> inp[0] -> inc -> inc -> inc (fused) -> square on the GPU, and a Counter actor
    whose ``add`` reads the chain; both results are outputs."""

    def __init__(self, optimized: bool = True) -> None:
        self.input = op(OpKind.INPUT, "input")
        self.select = op(OpKind.SELECT, "input", self.input, key=("item", 0))
        self.inc1 = op(OpKind.CALL, "inc", self.select, resources=CPU1)
        self.inc2 = op(OpKind.CALL, "inc", self.inc1, ordinal=1, resources=CPU1)
        self.inc3 = op(OpKind.CALL, "inc", self.inc2, ordinal=2, resources=CPU1)
        self.square = op(OpKind.CALL, "square", self.inc3, device="gpu", resources=GPU1)
        self.actor = op(OpKind.ACTOR, "Counter")
        self.add = op(OpKind.METHOD, "Counter.add", self.actor, self.inc3, method="add")
        self.input_stage = stage(self.input, self.select, resources=())
        self.chain = stage(self.inc1, self.inc2, self.inc3)
        self.gpu = stage(self.square, device="gpu", resources=GPU1)
        self.actor_stage = stage(self.actor, resources=())
        self.method_stage = stage(self.add, resources=())
        self.plan = Plan(
            stages=(self.input_stage, self.chain, self.gpu, self.actor_stage, self.method_stage),
            outputs=(self.square.id, self.add.id), multi_output=True, functions=(),
            passes=("cse", "fuse_linear_chains") if optimized else (),
            blocked=((self.inc3.id, self.square.id, "device differs: cpu -> gpu"),
                     (self.inc3.id, self.add.id, "an actor method call never fuses")),
            optimized=optimized)


@pytest.fixture
def p() -> Pipeline:
    return Pipeline()


def chain_plan(n_ops: int, group: int, rename_every: int = 0) -> Plan:
    """An input and ``n_ops - 1`` steps in a line, fused ``group`` ops to a stage."""
    ops = [op(OpKind.INPUT, "input")]
    for i in range(n_ops - 1):
        ops.append(op(OpKind.CALL, "step", ops[-1], ordinal=i + 1, resources=CPU1))
    stages = tuple(stage(*ops[k:k + group]) for k in range(0, n_ops, group))
    return Plan(stages=stages, outputs=(ops[-1].id,), multi_output=False, functions=())


def edge_line(dot: str, src: Op, dst: Op) -> str:
    [line] = [ln for ln in dot.splitlines() if f'"{src.id}" -> "{dst.id}"' in ln]
    return line


def edge_lines(dot: str) -> list[str]:
    return [ln for ln in dot.splitlines() if re.match(r'\s*"[^"]+" -> "[^"]+"', ln)]


def node_line(dot: str, o: Op) -> str:
    [line] = [ln for ln in dot.splitlines() if ln.strip().startswith(f'"{o.id}" [')]
    return line


# --------------------------------------------------------------------------- to_json

def test_to_json_is_plain_json_and_round_trips_stage_ids(p: Pipeline) -> None:
    data = json.loads(json.dumps(p.plan.to_json()))
    assert [s["id"] for s in data["stages"]] == [s.id for s in p.plan.stages]
    assert [o["id"] for o in data["stages"][1]["ops"]] == [p.inc1.id, p.inc2.id, p.inc3.id]
    assert data["outputs"] == [p.square.id, p.add.id]
    assert data["passes"] == ["cse", "fuse_linear_chains"]
    assert data["stages"][2]["device"] == "gpu"
    assert data["stages"][2]["resources"] == {"CPU": 1.0, "GPU": 1.0}
    assert data["blocked"][0] == {"src": p.inc3.id, "dst": p.square.id,
                                  "rule": "device differs: cpu -> gpu"}


def test_every_edge_has_one_kind(p: Pipeline) -> None:
    kinds = {(e["src"], e["dst"]): e["kind"] for e in p.plan.to_json()["edges"]}
    assert kinds == {
        (p.input.id, p.select.id): "fused",
        (p.select.id, p.inc1.id): "store",
        (p.inc1.id, p.inc2.id): "fused",
        (p.inc2.id, p.inc3.id): "fused",
        (p.inc3.id, p.square.id): "transfer",   # cpu -> gpu
        (p.actor.id, p.add.id): "actor",
        (p.inc3.id, p.add.id): "store",
    }
    assert set(kinds.values()) <= set(views.EDGE_KINDS)


def test_stages_on_different_placements_transfer() -> None:
    a = op(OpKind.CALL, "load")
    b = op(OpKind.CALL, "use", a)
    plan = Plan(stages=(stage(a, placement="node-1"), stage(b, placement="node-2")),
                outputs=(b.id,), multi_output=False, functions=())
    [edge] = plan.to_json()["edges"]
    assert edge["kind"] == "transfer"


def test_explicit_copies_make_the_stage_edges_around_a_gpu_stage_zero_copy() -> None:
    prep = op(OpKind.CALL, "prep", resources=CPU1)
    up = op(OpKind.TRANSFER, "to_device", prep, method="to_device", device="gpu", resources=GPU1)
    kernel = op(OpKind.CALL, "kernel", up, device="gpu", resources=GPU1)
    down = op(OpKind.TRANSFER, "to_host", kernel, method="to_host", device="gpu", resources=GPU1)
    post = op(OpKind.CALL, "post", down, resources=CPU1)
    gpu = stage(up, kernel, down, device="gpu", resources=GPU1)
    plan = Plan(stages=(stage(prep), gpu, stage(post)), outputs=(post.id,), multi_output=False,
                functions=())
    # The copies happen inside the GPU stage (its TRANSFER ops): host values cross stages.
    assert [e["kind"] for e in plan.to_json()["edges"]] == ["store", "fused", "fused", "store"]
    dot = plan.visualize().source
    assert "shape=cds" in node_line(dot, up) and "label=to_host" in node_line(dot, down)


def test_edges_carry_the_rule_that_blocked_them_and_sizes_when_known(p: Pipeline) -> None:
    edges = views.plan_to_json(p.plan, sizes={p.inc3.id: 3 << 20})["edges"]
    blocked = next(e for e in edges if e["dst"] == p.square.id)
    assert blocked["rule"] == "device differs: cpu -> gpu"
    assert blocked["size"] == 3 << 20
    assert next(e for e in edges if e["dst"] == p.inc2.id)["size"] is None


def test_a_plan_survives_pickling_with_equal_views(p: Pipeline) -> None:
    copy = pickle.loads(pickle.dumps(p.plan))
    assert copy.to_json() == p.plan.to_json()
    assert copy.explain(verbose=True) == p.plan.explain(verbose=True)


# --------------------------------------------------------------------------- explain

def test_explain_has_one_line_per_stage_in_plan_order(p: Pipeline) -> None:
    lines = p.plan.explain().splitlines()
    assert lines[0] == "== Physical Plan (optimized) =="
    assert lines[1] == "5 stages, 8 ops; *(n) marks a stage of fused ops"
    stage_lines = [ln for ln in lines if " Stage stage-" in ln]
    assert [re.search(r"stage-\w+", ln).group() for ln in stage_lines] == \
        [s.id for s in p.plan.stages]


def test_explain_shows_fused_ops_inside_their_stage(p: Pipeline) -> None:
    lines = p.plan.explain().splitlines()
    assert (f"*(2) Stage {p.chain.id} [CALL inc+inc+inc] cpu {{CPU: 1}} @local "
            f"<- {p.input_stage.id}") in lines
    assert f"*(1) Stage {p.input_stage.id} [SELECT input+input[0]] cpu {{}} @local" in lines


def test_explain_shows_device_resources_and_outputs(p: Pipeline) -> None:
    lines = p.plan.explain().splitlines()
    assert (f" (3) Stage {p.gpu.id} [CALL square] gpu {{CPU: 1, GPU: 1}} @local "
            f"<- {p.chain.id} => output") in lines
    assert (f"Outputs (list of 2): {p.square.id} ({p.gpu.id}), "
            f"{p.add.id} ({p.method_stage.id})") in lines


def test_explain_marks_actor_stages(p: Pipeline) -> None:
    lines = p.plan.explain().splitlines()
    assert f" (4) Stage {p.actor_stage.id} [ACTOR Counter] cpu {{}} @local" in lines
    assert (f" (5) Stage {p.method_stage.id} [METHOD Counter.add] cpu {{}} @local "
            f"<- {p.actor_stage.id}, {p.chain.id} => output") in lines


def test_explain_lists_passes_and_every_edge_not_fused_with_its_rule(p: Pipeline) -> None:
    text = p.plan.explain()
    assert "\nPasses: cse, fuse_linear_chains\n" in text
    assert text.endswith(
        "Not fused:\n"
        f"  {p.select.id} -> {p.inc1.id}: no rule recorded\n"
        f"  {p.inc3.id} -> {p.square.id}: device differs: cpu -> gpu\n"
        f"  {p.actor.id} -> {p.add.id}: no rule recorded\n"
        f"  {p.inc3.id} -> {p.add.id}: an actor method call never fuses")


def test_explain_of_an_unoptimized_plan_says_so() -> None:
    a = op(OpKind.CALL, "a")
    b = op(OpKind.CALL, "b", a)
    plan = Plan(stages=(stage(a), stage(b)), outputs=(b.id,), multi_output=False,
                functions=(), optimized=False)
    lines = plan.explain().splitlines()
    assert lines[0] == "== Physical Plan (not optimized) =="
    assert lines[-3:] == ["Passes: (none)", "Not fused:",
                          f"  {a.id} -> {b.id}: not optimized (optimize=False)"]


def test_explain_keeps_rules_on_edges_the_plan_no_longer_has() -> None:
    a = op(OpKind.CALL, "a")
    plan = Plan(stages=(stage(a),), outputs=(a.id,), multi_output=False, functions=(),
                blocked=(("x-1", a.id, "merged by cse"),))
    assert plan.explain().splitlines()[-2:] == ["Not fused:", f"  x-1 -> {a.id}: merged by cse"]


def test_explain_without_blocked_edges_says_none() -> None:
    assert chain_plan(3, group=3).explain().splitlines()[-1] == "Not fused: (none)"


def test_verbose_explain_lists_each_op_with_its_inputs(p: Pipeline) -> None:
    lines = p.plan.explain(verbose=True).splitlines()
    chain_at = next(i for i, ln in enumerate(lines) if p.chain.id in ln and "Stage" in ln)
    assert lines[chain_at + 1:chain_at + 4] == [
        f"      {p.inc1.id} CALL inc cpu {{CPU: 1}} <- {p.select.id}",
        f"      {p.inc2.id} CALL inc cpu {{CPU: 1}} <- {p.inc1.id}",
        f"      {p.inc3.id} CALL inc cpu {{CPU: 1}} <- {p.inc2.id}",
    ]
    assert f"      {p.add.id} METHOD Counter.add cpu {{}} <- {p.actor.id}, {p.inc3.id}" in lines
    assert not [ln for ln in p.plan.explain().splitlines() if ln.startswith("      ")]


def test_verbose_explain_flags_jit_and_impure_ops() -> None:
    a = op(OpKind.CALL, "kernel", jit=True, pure=False, resources=CPU1)
    plan = Plan(stages=(stage(a),), outputs=(a.id,), multi_output=False, functions=())
    assert f"      {a.id} CALL kernel cpu {{CPU: 1}} jit impure" in \
        plan.explain(verbose=True).splitlines()


# --------------------------------------------------------------------------- visualize

def test_physical_drawing_has_one_cluster_per_fused_stage(p: Pipeline) -> None:
    dot = p.plan.visualize().source
    clusters = re.findall(r'subgraph "cluster_(stage-\w+)"', dot)
    assert clusters == [p.input_stage.id, p.chain.id]   # single-op stages are plain nodes
    chain_body = dot.split(f'subgraph "cluster_{p.chain.id}"')[1].split("\n\t}")[0]
    for member in (p.inc1, p.inc2, p.inc3):
        assert f'"{member.id}" [label=inc' in chain_body
    assert 'label="(2) CALL cpu {CPU: 1}"' in chain_body


def test_gpu_stages_are_filled_green(p: Pipeline) -> None:
    dot = p.plan.visualize().source
    assert f'fillcolor="{views._GPU_FILL}"' in node_line(dot, p.square)
    assert f'fillcolor="{views._GPU_FILL}"' not in node_line(dot, p.inc1)


def test_a_fused_gpu_stage_is_a_green_cluster() -> None:
    a = op(OpKind.CALL, "a", device="gpu", resources=GPU1)
    b = op(OpKind.CALL, "b", a, device="gpu", resources=GPU1)
    gpu = stage(a, b, device="gpu", resources=GPU1)
    dot = Plan(stages=(gpu,), outputs=(b.id,), multi_output=False, functions=()).visualize().source
    cluster_attrs = dot.split(f'subgraph "cluster_{gpu.id}" {{')[1].splitlines()[1]
    assert f'fillcolor="{views._GPU_FILL}"' in cluster_attrs
    assert 'label="(1) CALL gpu {CPU: 1, GPU: 1}"' in cluster_attrs


def test_actors_are_drawn_differently_from_functions(p: Pipeline) -> None:
    dot = p.plan.visualize().source
    assert "shape=component" in node_line(dot, p.actor)
    assert "shape=ellipse" in node_line(dot, p.add)
    assert f'fillcolor="{views._ACTOR_FILL}"' in node_line(dot, p.add)
    assert "shape=box" in node_line(dot, p.inc1)
    assert "shape=note" in node_line(dot, p.input)
    assert "shape=plain" in node_line(dot, p.select)


def test_edges_are_drawn_by_kind(p: Pipeline) -> None:
    dot = p.plan.visualize().source
    fused = edge_line(dot, p.inc1, p.inc2)
    assert "label=fused" in fused and "style=bold" in fused
    store = edge_line(dot, p.select, p.inc1)
    assert 'label="zero-copy"' in store and "style=dashed" in store
    transfer = edge_line(dot, p.inc3, p.square)
    assert "label=transfer" in transfer and "color=red" in transfer
    assert "not fused: device differs: cpu -> gpu" in transfer   # the rule, as a tooltip
    actor = edge_line(dot, p.actor, p.add)
    assert "style=dotted" in actor


def test_edge_labels_show_sizes_when_known(p: Pipeline) -> None:
    dot = views.visualize(p.plan, sizes={p.inc3.id: 3 << 20}).source
    assert 'label="transfer 3.0 MiB"' in edge_line(dot, p.inc3, p.square)
    assert "label=fused " in edge_line(dot, p.inc1, p.inc2)


def test_format_bytes() -> None:
    assert [views.format_bytes(n) for n in (0, 512, 1536, 3 << 20, 5 << 30, 5 << 40)] == \
        ["0 B", "512 B", "1.5 KiB", "3.0 MiB", "5.0 GiB", "5120.0 GiB"]


def test_logical_drawing_has_one_node_per_op_and_no_clusters(p: Pipeline) -> None:
    dot = p.plan.visualize(level="logical").source
    assert "cluster" not in dot
    for o in (p.input, p.select, p.inc1, p.inc2, p.inc3, p.square, p.actor, p.add):
        node_line(dot, o)
    assert len(edge_lines(dot)) == 7
    assert "shape=component" in node_line(dot, p.actor)


def test_logical_drawing_uses_the_plans_logical_edges() -> None:
    a = op(OpKind.CALL, "a")
    b = op(OpKind.CALL, "b", a)
    gone = "c-000000000000"   # an op a pass merged away: drawn dashed, not dropped
    plan = Plan(stages=(stage(a, b),), outputs=(b.id,), multi_output=False, functions=(),
                logical_edges=((a.id, b.id), (gone, b.id)))
    dot = plan.visualize(level="logical").source
    assert f'"{gone}" -> "{b.id}"' in dot
    assert f'"{gone}" [label="{gone}" shape=box style=dashed]' in dot


def test_unknown_level_is_refused_with_the_choices(p: Pipeline) -> None:
    with pytest.raises(ValueError, match=r"level='stages' is not a plan level; use one of "
                                         r"physical, logical"):
        p.plan.visualize(level="stages")


def test_unknown_suffix_is_refused_before_drawing(p: Pipeline, tmp_path) -> None:
    target = tmp_path / "plan.jpeg"
    with pytest.raises(ValueError, match=r"unknown suffix '\.jpeg'; use a path ending in "
                                         r"\.svg, \.png or \.pdf"):
        p.plan.visualize(target)
    assert list(tmp_path.iterdir()) == []


def test_renders_svg_png_and_pdf_by_suffix(p: Pipeline, tmp_path) -> None:
    (tmp_path / "plan.gv").write_text("a file of the user's")
    svg = tmp_path / "plan.svg"
    graph = p.plan.visualize(str(svg))
    assert graph.source == p.plan.visualize().source
    text = svg.read_text()
    assert text.startswith(("<?xml", "<svg"))
    assert p.square.id in html.unescape(text)   # dot escapes '-' in SVG titles
    p.plan.visualize(tmp_path / "plan.png", level="logical")
    assert (tmp_path / "plan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    p.plan.visualize(tmp_path / "out" / "plan.pdf")
    assert (tmp_path / "out" / "plan.pdf").read_bytes()[:5] == b"%PDF-"
    # Rendering leaves nothing else behind and never touches a neighbouring file.
    assert (tmp_path / "plan.gv").read_text() == "a file of the user's"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["out", "plan.gv", "plan.png", "plan.svg"]


def test_jupyter_shows_a_plan_as_svg(p: Pipeline) -> None:
    svg = p.plan._repr_svg_()
    assert "<svg" in svg and p.chain.id in html.unescape(svg)


@pytest.mark.parametrize("group", [1, 5])
def test_a_500_op_plan_renders_without_edge_labels(group: int, tmp_path) -> None:
    # Labels on hundreds of edges make dot slow: past EDGE_LABEL_LIMIT they are left out.
    plan = chain_plan(500, group)
    graph = plan.visualize(tmp_path / "big.svg")
    assert "<svg" in (tmp_path / "big.svg").read_text()
    dot = graph.source
    assert len(edge_lines(dot)) == 499
    assert "label=fused" not in dot and 'label="zero-copy"' not in dot
    assert "dashed = zero-copy via store" in dot      # the legend replaces per-edge labels
    assert len(re.findall(r'subgraph "cluster_', dot)) == (0 if group == 1 else 100)
    assert (tmp_path / "big.svg").stat().st_size > 0


def test_a_small_plan_keeps_its_edge_labels() -> None:
    dot = chain_plan(50, group=5).visualize().source
    assert dot.count("label=fused") == 40 and dot.count('label="zero-copy"') == 9


def placed_plan() -> tuple[Plan, Op, Op, Op]:
    """A bound object of 200 MiB held on n2, and a fused read of it placed there."""
    big = op(OpKind.CONSTANT, "ObjectRef(0:1)", key=("object", 1), resources=())
    read = op(OpKind.CALL, "read", big)
    post = op(OpKind.CALL, "post", read)
    held = dataclasses.replace(stage(big, resources=()), placement="n2",
                               placement_reason=PlacementReason("holds", big.id, 200 << 20))
    work = dataclasses.replace(stage(read, post), placement="n2",
                               placement_reason=PlacementReason("largest_input", big.id, 200 << 20))
    plan = Plan(stages=(held, work), outputs=(post.id,), multi_output=False, functions=(),
                sizes=((big.id, 200 << 20),))
    return plan, big, read, post


def test_explain_shows_where_each_stage_runs_and_why() -> None:
    plan, big, _, _ = placed_plan()
    lines = plan.explain().splitlines()
    assert lines[2].endswith("[CONSTANT ObjectRef(0:1)] cpu {} @n2 (bound object of 200.0 MiB "
                             "held there)")
    assert "[CALL read+post] cpu {CPU: 1} @n2 (largest input of 200.0 MiB held there) <- " in lines[3]
    assert f"Placement: {PLACEMENT_RULE}" in lines
    reason = plan.to_json()["stages"][1]["placement_reason"]
    assert reason == {"rule": "largest_input", "op": big.id, "size": 200 << 20}


@pytest.mark.parametrize(("reason", "text"), [
    (PlacementReason("actor", "Model-1"), "@n2 (its actor runs there)"),
    (PlacementReason("scheduling_strategy", "f-1"), "@n2 (the scheduling_strategy given names it)"),
    (None, "@n2"),
])
def test_explain_names_each_placement_rule(reason: PlacementReason | None, text: str) -> None:
    a = op(OpKind.CALL, "f")
    placed = dataclasses.replace(stage(a), placement="n2", placement_reason=reason)
    plan = Plan(stages=(placed,), outputs=(a.id,), multi_output=False, functions=())
    assert plan.explain().splitlines()[2].endswith(f"{{CPU: 1}} {text} => output")


def test_a_plan_with_every_stage_local_states_no_placement_rule() -> None:
    plan = Pipeline().plan
    assert not [ln for ln in plan.explain().splitlines() if ln.startswith("Placement:")]


def test_visualize_marks_placed_stages_and_sizes_the_edge_from_a_bound_object() -> None:
    plan, big, read, _ = placed_plan()
    dot = plan.visualize().source
    assert "shape=cylinder" in node_line(dot, big) and "@n2" in node_line(dot, big)
    assert "label=\"(2) CALL cpu {CPU: 1} @n2 (largest input of 200.0 MiB held there)\"" in dot
    edge = next(ln for ln in dot.splitlines() if f'"{big.id}" -> "{read.id}"' in ln)
    assert "zero-copy 200.0 MiB" in edge  # same node: read through its store
