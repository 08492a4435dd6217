"""Views of a Plan: its JSON description, Spark-style ``explain`` text, graphviz drawings.

Every view is drawn from :func:`plan_to_json`, and that reads only the Plan's
fields, so the text, the drawing and any backend see the same truth. Each
op-level edge gets one kind (:data:`EDGE_KINDS`), decided here once.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.compiler.ir import ActorChain, Op, OpKind, PlacementReason, op_label
from sluice.compiler.passes.actor_chains import RULE as CHAIN_RULE
from sluice.compiler.passes.locality import LOCAL
from sluice.compiler.passes.locality import RULE as PLACEMENT_RULE
from sluice.compiler.pass_log import PassChange, diff, summary
from sluice.compiler.plan import Plan, Stage
from sluice.executor.strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

if TYPE_CHECKING:  # graphviz is imported when a drawing is made: JSON and explain need none
    import graphviz

LEVELS = ("physical", "logical")
RENDER_FORMATS = ("svg", "png", "pdf")

EDGE_KINDS = {
    "fused": "both ops run in one stage: the value passes in one process, never stored",
    "store": "between stages on one device and node: read zero-copy through the node's store",
    "transfer": "between devices (cpu <-> gpu) or placements: the value is copied",
    "actor": "an actor to a method call: the call runs in the actor's process",
    "chained": "method call to method call in an actor chain: forwarded actor to actor, "
               "never back to the driver",
}

# Past this many edges a drawing hides edge labels (style still shows the kind):
# labels on hundreds of edges make dot slow and the picture unreadable.
EDGE_LABEL_LIMIT = 100

_FONT = "Helvetica"
_GPU_FILL, _GPU_LINE = "#c9f0b8", "#4c8c00"
_ACTOR_FILL, _ACTOR_LINE = "#fde2c8", "#c0601a"
_CLUSTER_FILL, _CLUSTER_LINE = "#f3f5fa", "#8a9bb8"
_IO_FILL = "#eeeeee"
_TRANSFER_FILL = "#ffd6d6"

_NODE_SHAPES = {
    OpKind.CALL.value: ("box", "filled,rounded"),
    OpKind.ACTOR.value: ("component", "filled"),
    OpKind.METHOD.value: ("ellipse", "filled"),
    OpKind.INPUT.value: ("note", "filled"),
    OpKind.CONSTANT.value: ("cylinder", "filled"),
    OpKind.SELECT.value: ("plain", ""),
    OpKind.OUTPUT.value: ("note", "filled"),
    OpKind.TRANSFER.value: ("cds", "filled"),
    OpKind.BLOCKS.value: ("hexagon", "filled"),
}

_EDGE_STYLES = {
    "fused": {"style": "bold", "color": "#333333"},
    "store": {"style": "dashed", "color": "#4a6fa5"},
    "transfer": {"color": "red", "penwidth": "1.6"},
    "actor": {"style": "dotted", "color": _ACTOR_LINE},
    "chained": {"style": "bold", "color": _ACTOR_LINE, "penwidth": "1.6"},
}
_EDGE_LABELS = {"fused": "fused", "store": "zero-copy", "transfer": "transfer", "actor": "actor",
                "chained": "chained"}


# --------------------------------------------------------------------------- JSON

def plan_to_json(plan: Plan, sizes: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The plan as plain JSON-able data: the one description every view draws from.

    ``sizes`` maps op ids to the byte size of their values where known (e.g.
    measured by a run), over the sizes the plan knew at compile (``Plan.sizes``);
    each edge carries its source's size, or ``None``.
    Keys: ``optimized``, ``multi_output``, ``outputs``, ``passes``, ``stages``
    (each with its ``ops``, ``placement`` and ``placement_reason``), ``edges``
    (physical, each with a ``kind`` from :data:`EDGE_KINDS` and the ``rule`` that
    kept it from being fused), ``logical_edges``, ``blocked``, ``actor_chains``
    (each with its ``source``, ``ops``, ``stages`` and ``slots``), ``not_chained``,
    ``chain_rule`` and ``placement_rule``.
    """
    stage_of = {op.id: stage.id for stage in plan.stages for op in stage.ops}
    outputs = set(plan.outputs)
    known = {**dict(plan.sizes), **dict(sizes or {})}
    return {
        "optimized": plan.optimized,
        "multi_output": plan.multi_output,
        "outputs": list(plan.outputs),
        "passes": list(plan.passes),
        "stages": [_stage_json(i, stage, stage_of, outputs)
                   for i, stage in enumerate(plan.stages, start=1)],
        "edges": _edges_json(plan, stage_of, known),
        "logical_edges": [list(edge) for edge in _logical_edges(plan)],
        "blocked": [{"src": src, "dst": dst, "rule": rule} for src, dst, rule in plan.blocked],
        "actor_chains": [_chain_json(i, chain, stage_of)
                         for i, chain in enumerate(plan.actor_chains, start=1)],
        "not_chained": [{"src": src, "dst": dst, "rule": rule} for src, dst, rule in plan.not_chained],
        "chain_rule": CHAIN_RULE,
        "placement_rule": PLACEMENT_RULE,
    }


def _chain_json(index: int, chain: ActorChain, stage_of: dict[str, str]) -> dict[str, Any]:
    return {
        "index": index,
        "source": chain.source,
        "source_stage": stage_of.get(chain.source),
        "ops": list(chain.ops),
        "stages": [stage_of.get(op_id, op_id) for op_id in chain.ops],
        "slots": list(chain.slots),
    }


def _stage_json(index: int, stage: Stage, stage_of: dict[str, str],
                outputs: set[str]) -> dict[str, Any]:
    return {
        "id": stage.id,
        "index": index,
        "kind": stage.kind.value,
        "name": stage.name,
        "fused": stage.fused,
        "ops": [_op_json(op) for op in stage.ops],
        "inputs": list(stage.inputs),
        "input_stages": _unique(stage_of.get(op_id, op_id) for op_id in stage.inputs),
        "output": stage.output,
        "is_output": stage.output in outputs,
        "resources": dict(stage.resources),
        "device": stage.device,
        "placement": stage.placement,
        "placement_reason": _reason_json(stage.placement_reason),
        "scheduling_strategy": strategy_text(next(
            (s for op in stage.ops if (s := dict(op.options).get("scheduling_strategy")) is not None),
            None)),
    }


def strategy_text(strategy: Any) -> str | None:
    """A user's ``scheduling_strategy`` in a few words (None for the default).

    >>> from sluice.executor.strategies import NodeAffinitySchedulingStrategy
    >>> strategy_text("SPREAD"), strategy_text(NodeAffinitySchedulingStrategy("2", soft=True))
    ('SPREAD', 'node 2 (soft)')
    """
    if strategy is None:
        return None
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return f"node {strategy.node_id}" + (" (soft)" if strategy.soft else "")
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        index = strategy.placement_group_bundle_index
        return (f"placement group {strategy.placement_group.id}, "
                + ("any bundle" if index < 0 else f"bundle {index}"))
    return str(strategy)


def _reason_json(reason: PlacementReason | None) -> dict[str, Any] | None:
    if reason is None:
        return None
    return {"rule": reason.rule, "op": reason.op, "size": reason.size}


def _op_json(op: Op) -> dict[str, Any]:
    return {
        "id": op.id,
        "kind": op.kind.value,
        "name": op.name,
        "label": op_label(op),
        "inputs": list(op.inputs),
        "resources": dict(op.resources),
        "device": op.device,
        "pure": op.pure,
        "jit": op.jit,
        "num_returns": op.num_returns,
    }


def _edges_json(plan: Plan, stage_of: dict[str, str],
                sizes: dict[str, int]) -> list[dict[str, Any]]:
    """Every physical edge (an op reading another op's value), with its kind."""
    stages = {stage.id: stage for stage in plan.stages}
    ops = {op.id: op for stage in plan.stages for op in stage.ops}
    rules = {(src, dst): rule for src, dst, rule in plan.blocked}
    # Inside a chain each call reads the call before it, actor to actor.
    chained = {(a, b) for chain in plan.actor_chains for a, b in zip(chain.ops, chain.ops[1:])}
    edges = []
    for stage in plan.stages:
        for op in stage.ops:
            for src in _unique(op.inputs):
                src_stage = stages.get(stage_of.get(src, ""))
                edges.append({
                    "src": src,
                    "dst": op.id,
                    "src_stage": src_stage.id if src_stage else None,
                    "dst_stage": stage.id,
                    "kind": ("chained" if (src, op.id) in chained
                             else _edge_kind(ops.get(src), src_stage, op, stage)),
                    "size": sizes.get(src),
                    "rule": rules.get((src, op.id)),
                })
    return edges


def _edge_kind(src: Op | None, src_stage: Stage | None, dst: Op, dst_stage: Stage) -> str:
    if src_stage is not None and src_stage.id == dst_stage.id:
        return "fused"
    if src is not None and src.kind is OpKind.ACTOR:
        return "actor"
    if (src is None or src_stage is None or src_stage.placement != dst_stage.placement
            or _value_device(src) != _read_device(dst)):
        return "transfer"
    return "store"


def _value_device(op: Op) -> str:
    """Where the value of ``op`` lives: a copy moves it, any other op keeps it on its device."""
    if op.kind is OpKind.TRANSFER and op.method in ("to_host", "to_device"):
        return "cpu" if op.method == "to_host" else "gpu"
    return op.device


def _read_device(op: Op) -> str:
    """Where ``op`` reads its inputs: a copy reads from the other side."""
    if op.kind is OpKind.TRANSFER and op.method in ("to_host", "to_device"):
        return "gpu" if op.method == "to_host" else "cpu"
    return op.device


def _logical_edges(plan: Plan) -> list[tuple[str, str]]:
    """``plan.logical_edges``, or (for a plan built without them) the op inputs."""
    if plan.logical_edges:
        return [(src, dst) for src, dst in plan.logical_edges]
    return [(src, op.id) for stage in plan.stages for op in stage.ops for src in _unique(op.inputs)]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --------------------------------------------------------------------------- explain

def explain(plan: Plan, verbose: bool = False) -> str:
    """Text in the spirit of Spark's ``explain()``.

    One line per stage in plan order (``*(n)`` marks a stage of fused ops) with
    its kind, member ops, device, resources, placement (``@node``, and for a
    stage placed on a node why: its largest input held there, its actor, the
    user's scheduling_strategy) and input stages; with ``verbose`` each op's id,
    device, resources and inputs on its own line; then the outputs, the passes
    that fired, the placement rule (when a stage is placed on a node), the actor
    chains (method calls forwarded actor to actor, with the rule and, for a
    method-to-method edge that was not chained, the reason), and every edge that
    was not fused with the rule that blocked it.
    """
    data = plan_to_json(plan)
    state = "optimized" if data["optimized"] else "not optimized"
    n_ops = sum(len(stage["ops"]) for stage in data["stages"])
    lines = [f"== Physical Plan ({state}) ==",
             f"{len(data['stages'])} stages, {n_ops} ops; *(n) marks a stage of fused ops"]
    for stage in data["stages"]:
        lines.append(_stage_line(stage))
        if verbose:
            lines.extend(_op_line(op) for op in stage["ops"])
    lines.append(_outputs_line(data))
    lines.append("Passes: " + (", ".join(data["passes"]) or "(none)"))
    if any(stage["placement"] != LOCAL for stage in data["stages"]):
        lines.append(f"Placement: {data['placement_rule']}")
    lines.extend(_chain_lines(data))
    lines.extend(_not_fused_lines(data))
    return "\n".join(lines)


def _chain_lines(data: dict[str, Any]) -> list[str]:
    """The actor chains by stage number, and why method-to-method edges did not chain."""
    if not data["actor_chains"] and not data["not_chained"]:
        return []
    number = {stage["id"]: stage["index"] for stage in data["stages"]}
    label = {op["id"]: op["label"] for stage in data["stages"] for op in stage["ops"]}
    lines = ["Actor chains (one call from the driver per execute, forwarded actor to actor):",
             f"  rule: {data['chain_rule']}"]
    for chain in data["actor_chains"]:
        hops = " -> ".join(f"({number.get(st, '?')}) {label.get(op, op)}"
                           for op, st in zip(chain["ops"], chain["stages"]))
        source = chain["source_stage"]
        fed = f"({number[source]}) {label.get(chain['source'], chain['source'])}" if source in number \
            else chain["source"]
        lines.append(f"  chain {chain['index']}: {hops} <- {fed}")
    if not data["actor_chains"]:
        lines.append("  (none)")
    lines.extend(f"  not chained {b['src']} -> {b['dst']}: {b['rule']}" for b in data["not_chained"])
    return lines


def _stage_line(stage: dict[str, Any]) -> str:
    mark = "*" if stage["fused"] else " "
    members = "+".join(op["label"] for op in stage["ops"])
    line = (f"{mark}({stage['index']}) Stage {stage['id']} [{stage['kind'].upper()} {members}] "
            f"{stage['device']} {_format_resources(stage['resources'])} {_placement_text(stage)}")
    if stage["scheduling_strategy"] is not None:
        line += f" strategy={stage['scheduling_strategy']}"
    if stage["input_stages"]:
        line += " <- " + ", ".join(stage["input_stages"])
    if stage["is_output"]:
        line += " => output"
    return line


def _placement_text(stage: dict[str, Any]) -> str:
    """``@node``, and why the stage runs there: ``@n2 (largest input of 200.0 MiB held there)``."""
    where = f"@{stage['placement']}"
    reason = stage["placement_reason"]
    if reason is None:
        return where
    size = f" of {format_bytes(reason['size'])}" if reason["size"] is not None else ""
    why = {"largest_input": f"largest input{size} held there",
           "holds": f"bound object{size} held there",
           "actor": "its actor runs there",
           "scheduling_strategy": "the scheduling_strategy given names it"}
    return f"{where} ({why.get(reason['rule'], reason['rule'])})"


def _op_line(op: dict[str, Any]) -> str:
    flags = "".join(f" {flag}" for flag, on in (("jit", op["jit"]), ("impure", not op["pure"]))
                    if on)
    line = (f"      {op['id']} {op['kind'].upper()} {op['label']} {op['device']} "
            f"{_format_resources(op['resources'])}{flags}")
    if op["inputs"]:
        line += " <- " + ", ".join(op["inputs"])
    return line


def _outputs_line(data: dict[str, Any]) -> str:
    stage_of = {op["id"]: stage["id"] for stage in data["stages"] for op in stage["ops"]}
    outs = [f"{out} ({stage_of.get(out, 'no stage')})" for out in data["outputs"]]
    kind = "list of " if data["multi_output"] else ""
    return f"Outputs ({kind}{len(outs)}): " + (", ".join(outs) or "(none)")


def _not_fused_lines(data: dict[str, Any]) -> list[str]:
    """Every edge between stages, with the rule that kept it from being fused."""
    default = "no rule recorded" if data["optimized"] else "not optimized (optimize=False)"
    listed: set[tuple[str, str]] = set()
    lines = []
    for edge in data["edges"]:
        if edge["kind"] != "fused":
            listed.add((edge["src"], edge["dst"]))
            lines.append(f"  {edge['src']} -> {edge['dst']}: {edge['rule'] or default}")
    # Rules on edges the plan no longer has (an op merged away) are still shown.
    lines.extend(f"  {b['src']} -> {b['dst']}: {b['rule']}" for b in data["blocked"]
                 if (b["src"], b["dst"]) not in listed)
    return ["Not fused:"] + lines if lines else ["Not fused: (none)"]


def _format_resources(resources: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{name}: {_format_number(amount)}"
                           for name, amount in sorted(resources.items())) + "}"


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def format_bytes(size: int) -> str:
    """A byte count as a short edge label.

    >>> format_bytes(1536)
    '1.5 KiB'
    """
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{int(amount)} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")  # the loop returns at GiB


# --------------------------------------------------------------------------- graphviz

def visualize(plan: Plan, path: str | Path | None = None, level: str = "physical",
              sizes: Mapping[str, int] | None = None,
              figures: Mapping[str, Mapping[str, str]] | None = None) -> graphviz.Digraph:
    """A ``graphviz.Digraph`` of the plan, rendered to ``path`` when given.

    ``level="physical"`` draws each fused stage as a cluster, GPU stages in
    green, actors and their method calls in orange with their own shapes, bound
    objects as cylinders, a stage placed on a node with ``@node`` (and why, in its
    tooltip), and
    each edge by kind (bold: fused, dashed: zero-copy through the store, red:
    transfer, dotted: actor call), labelled with the value's size from
    ``sizes`` (op id -> bytes) when known. ``level="logical"`` draws one node
    per op and the op-level edges, without stages. ``path`` picks the format
    by suffix: ``.svg``, ``.png`` or ``.pdf``. ``figures`` (stage id -> ``{"text": ...,
    "status": "pending" | "running" | "done" | "failed"}``) writes a run's figures under
    each stage and colours it by its status (the dashboard's live plans).
    """
    if level not in LEVELS:
        raise ValueError(f"level={level!r} is not a plan level; use one of {', '.join(LEVELS)}")
    fmt = _render_format(path) if path is not None else None
    data = plan_to_json(plan, sizes)
    graph = _physical_graph(data, figures or {}) if level == "physical" else _logical_graph(data)
    if path is not None and fmt is not None:
        _render(graph, Path(path), fmt)
    return graph


def _new_digraph(title: str, n_nodes: int) -> graphviz.Digraph:
    try:
        import graphviz
    except ImportError:
        raise ImportError("drawing a plan needs the graphviz package: pip install graphviz "
                          "(and the Graphviz `dot` program to render it)") from None
    # Large graphs get tighter spacing; left-to-right reads like a pipeline.
    dense = n_nodes > EDGE_LABEL_LIMIT
    return graphviz.Digraph(
        name="plan",
        graph_attr={"rankdir": "LR", "label": title, "labelloc": "t", "fontname": _FONT,
                    "fontsize": "11", "nodesep": "0.1" if dense else "0.25",
                    "ranksep": "0.2" if dense else "0.4", "newrank": "true"},
        node_attr={"fontname": _FONT, "fontsize": "10", "height": "0.3",
                   "margin": "0.08,0.03"},
        edge_attr={"fontname": _FONT, "fontsize": "8", "arrowsize": "0.6"},
    )


def _physical_graph(data: dict[str, Any],
                    figures: Mapping[str, Mapping[str, str]]) -> graphviz.Digraph:
    n_ops = sum(len(stage["ops"]) for stage in data["stages"])
    labelled = len(data["edges"]) <= EDGE_LABEL_LIMIT
    state = "optimized" if data["optimized"] else "not optimized"
    title = f"physical plan ({state}): {len(data['stages'])} stages, {n_ops} ops"
    if not labelled:
        title += ("\nedges: bold = fused, dashed = zero-copy via store, red = transfer, "
                  "dotted = actor call")
    graph = _new_digraph(title, n_ops)
    for stage in data["stages"]:
        _draw_stage(graph, stage, figures.get(stage["id"]))
    known = {op["id"] for stage in data["stages"] for op in stage["ops"]}
    for edge in data["edges"]:
        if edge["src"] not in known:  # an input no stage holds: drawn once, dashed
            known.add(edge["src"])
            graph.node(edge["src"], label=edge["src"], shape="box", style="dashed")
        graph.edge(edge["src"], edge["dst"], **_edge_attrs(edge, labelled))
    return graph


_STATUS_LINES = {"running": ("#1a7f37", "3"), "failed": ("#b42318", "3"),
                 "pending": ("#8c959f", "1.5")}


def _draw_stage(graph: graphviz.Digraph, stage: dict[str, Any],
                figure: Mapping[str, str] | None = None) -> None:
    gpu = stage["device"] == "gpu"
    if not stage["fused"]:
        _draw_op(graph, stage["ops"][0], gpu, stage, figure)
        return
    label = (f"({stage['index']}) {stage['kind'].upper()} {stage['device']} "
             f"{_format_resources(stage['resources'])}")
    if stage["placement"] != LOCAL:
        label += f" {_placement_text(stage)}"
    if figure is not None:
        label += f"\\n{figure['text']}"
    with graph.subgraph(name=f"cluster_{stage['id']}") as cluster:
        cluster.attr(label=label, style="filled,rounded", fontsize="9", labeljust="l",
                     fillcolor=_GPU_FILL if gpu else _CLUSTER_FILL,
                     color=_GPU_LINE if gpu else _CLUSTER_LINE, tooltip=stage["id"])
        status = _STATUS_LINES.get(figure.get("status", "")) if figure is not None else None
        if status is not None:
            cluster.attr(color=status[0], penwidth=status[1])
        for op in stage["ops"]:
            _draw_op(cluster, op, gpu, stage)


def _draw_op(graph: graphviz.Digraph, op: dict[str, Any], gpu: bool,
             stage: dict[str, Any] | None, figure: Mapping[str, str] | None = None) -> None:
    label = op["label"]
    if stage is not None and not stage["fused"] and stage["placement"] != LOCAL:
        label += f"\\n@{stage['placement']}"  # a fused stage's cluster label says where
    style = _op_style(op, gpu)
    if figure is not None:
        label += f"\\n{figure['text']}"
        status = _STATUS_LINES.get(figure.get("status", ""))
        if status is not None:
            style.update(color=status[0], penwidth=status[1])
    graph.node(op["id"], label=label, tooltip=_op_tooltip(op, stage), **style)


def _op_style(op: dict[str, Any], gpu: bool) -> dict[str, str]:
    shape, style = _NODE_SHAPES[op["kind"]]
    attrs = {"shape": shape}
    if style:
        attrs["style"] = style
    actor = op["kind"] in (OpKind.ACTOR.value, OpKind.METHOD.value)
    if gpu or op["device"] == "gpu":
        attrs.update(fillcolor=_GPU_FILL, color=_ACTOR_LINE if actor else _GPU_LINE)
    elif actor:
        attrs.update(fillcolor=_ACTOR_FILL, color=_ACTOR_LINE)
    elif op["kind"] == OpKind.TRANSFER.value:
        attrs.update(fillcolor=_TRANSFER_FILL, color="red")
    elif op["kind"] in (OpKind.INPUT.value, OpKind.OUTPUT.value, OpKind.CONSTANT.value):
        attrs.update(fillcolor=_IO_FILL)
    else:
        attrs.update(fillcolor="white")
    return attrs


def _op_tooltip(op: dict[str, Any], stage: dict[str, Any] | None) -> str:
    where = f" in {stage['id']} {_placement_text(stage)}" if stage else ""
    return (f"{op['id']}: {op['kind'].upper()} {op['device']} "
            f"{_format_resources(op['resources'])}{where}")


def _edge_attrs(edge: dict[str, Any], labelled: bool) -> dict[str, str]:
    attrs = dict(_EDGE_STYLES[edge["kind"]])
    text = _EDGE_LABELS[edge["kind"]]
    if edge["size"] is not None:
        text += " " + format_bytes(edge["size"])
    if labelled:
        attrs["label"] = text
    tooltip = f"{edge['src']} -> {edge['dst']}: {text}"
    if edge["rule"]:
        tooltip += f"; not fused: {edge['rule']}"
    attrs["tooltip"] = tooltip
    return attrs


def _logical_graph(data: dict[str, Any]) -> graphviz.Digraph:
    ops = {op["id"]: op for stage in data["stages"] for op in stage["ops"]}
    title = f"logical plan: {len(ops)} ops"
    graph = _new_digraph(title, len(ops))
    for op in ops.values():
        _draw_op(graph, op, op["device"] == "gpu", None)
    missing: set[str] = set()
    for src, dst in data["logical_edges"]:
        for end in (src, dst):
            if end not in ops and end not in missing:  # an op no stage holds any more
                missing.add(end)
                graph.node(end, label=end, shape="box", style="dashed")
        graph.edge(src, dst, color="#555555")
    return graph


def _render_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix.lstrip(".") not in RENDER_FORMATS:
        raise ValueError(f"cannot render a plan to {str(path)!r}: unknown suffix {suffix!r}; "
                         f"use a path ending in .svg, .png or .pdf")
    return suffix.lstrip(".")


def _render(graph: graphviz.Digraph, path: Path, fmt: str) -> None:
    # The DOT source goes to a scratch dir so rendering never overwrites a
    # user's file next to ``path``.
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sluice-plan-") as scratch:
        graph.render(filename=Path(scratch) / "plan.gv", outfile=path, format=fmt, cleanup=True)


def draw_pass_change(change: PassChange) -> graphviz.Digraph:
    """One compiler pass drawn as a diff: the graph after it, with what it removed still
    shown. Green: ops and edges it added; red, dashed: removed; orange outline: ops it
    regrouped into another stage, placed on another node or moved to another device.
    Boxes around ops are the stages after the pass (fused ops share one)."""
    changed = diff(change)
    before = {op[0]: op for op in change.before.ops}
    after = {op[0]: op for op in change.after.ops}
    touched = ({op_id for op_id, _, _ in changed["regrouped"]}
               | {op_id for op_id, _, _ in changed["placed"]}
               | {op_id for op_id, _, _ in changed["moved"]})
    added, removed = set(changed["added"]), set(changed["removed"])
    graph = _new_digraph(f"pass {change.name}: {summary(change)}", len(after) + len(removed))
    groups: dict[str, list[tuple]] = {}
    for op in after.values():
        groups.setdefault(op[3], []).append(op)

    def node(g: graphviz.Digraph, op: tuple, state: str) -> None:
        label = op[1] if op[4] == LOCAL else f"{op[1]}\\n@{op[4]}"
        if op[5] == "gpu":
            label += "\\n(gpu)"
        attrs = {"shape": "box", "style": "filled,rounded", "fillcolor": "white"}
        if state == "added":
            attrs.update(fillcolor="#d8f3dc", color="#1a7f37", penwidth="2")
        elif state == "removed":
            attrs.update(style="dashed,rounded", color="#b42318", fontcolor="#b42318")
        elif state == "touched":
            attrs.update(color="#d4700a", penwidth="2.5")
        g.node(op[0], label=label, tooltip=f"{op[0]} ({state})", **attrs)

    def state_of(op_id: str) -> str:
        return "added" if op_id in added else "touched" if op_id in touched else "same"

    for index, (group, members) in enumerate(sorted(groups.items())):
        if len(members) == 1:
            node(graph, members[0], state_of(members[0][0]))
            continue
        with graph.subgraph(name=f"cluster_{index}") as cluster:
            cluster.attr(label=f"stage of {len(members)} ops", style="rounded,filled",
                         fillcolor=_CLUSTER_FILL, color=_CLUSTER_LINE, fontsize="9")
            for op in members:
                node(cluster, op, state_of(op[0]))
    for op_id in sorted(removed):
        node(graph, before[op_id], "removed")
    new_edges = set(changed["edges_added"])
    for src, dst in change.after.edges:
        if (src, dst) in new_edges:
            graph.edge(src, dst, color="#1a7f37", penwidth="2")
        else:
            graph.edge(src, dst, color="#555555")
    for src, dst in changed["edges_removed"]:
        graph.edge(src, dst, color="#b42318", style="dashed")
    return graph
