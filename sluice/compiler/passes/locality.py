"""Locality: each stage runs on the node that already holds its largest input.

Legality rule: placement never changes what a stage computes, only where it
runs; it is a hint (the runner makes it a *soft* node affinity) that saves
moving the stage's biggest input between nodes.

The pass is a pure function of the graph and a :class:`ClusterView`, plain
data the caller read from the backend when it compiled (``sluice.dsl.placement``
asks ``Backend.nodes()`` and ``Backend.object_locations()``): which live node
holds the value of which op, and ``graph.graph["sizes"]`` (op id -> bytes).
Only values that exist at compile time have a place and a size: the ObjectRefs
bound as arguments (CONSTANT ops). A stage's own output has no known size
before it runs.

- Without a view, or with one node, every op is ``"local"`` (the backend chooses).
- A CONSTANT op is placed on the node that holds its object (``"holds"``), when
  exactly one live node does.
- A stage (ops sharing a name in ``graph.graph["stages"]``; an op with no entry
  is its own stage) whose op carries the user's own ``scheduling_strategy``
  node affinity goes to that node: the user's choice wins.
- A stage of actor method calls runs where its actor is, whatever its inputs.
- Any other stage goes to the node of its *largest known input*: of the values
  it reads from other stages that have both a known size and a known node, the
  biggest. It stays ``"local"`` when no input is known, and on a tie: when the
  inputs of the largest size live on more than one node (one object held on two
  nodes, or two equal objects on two nodes), any of them is as good, so the
  backend picks.
- A placed stage's values live on its node, so stages downstream find them
  there (with no known size, they guide only stages that read nothing bigger).

The result is ``graph.graph["placement"]`` (op id -> node id or ``"local"``, for
every op) and ``graph.graph["placement_reasons"]`` (op id -> the
:class:`~sluice.compiler.ir.PlacementReason` of each op placed on a node).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import networkx as nx

from sluice.compiler.ir import LOCAL, Op, OpKind, PlacementReason, ops_of
from sluice.exceptions import InternalError
from sluice.executor.strategies import affinity_node

PASS_NAME = "locality"

# One line of the rule, for explain().
RULE = ("a stage runs on the node holding its largest input of known size (bound objects, "
        "sized by the backend at compile); unknown sizes and ties stay local; method calls "
        "run where their actor is; a scheduling_strategy given by the user wins")


@dataclass(frozen=True)
class ClusterView:
    """What compiling knows of the cluster: plain data, read from the backend by the caller.

    ``held``: every live node id -> the ids of the ops whose values its store holds
    (a node holding nothing is listed with an empty set). ``sizes``: op id -> the
    bytes of its value, where known.
    """

    held: Mapping[str, AbstractSet[str]]
    sizes: Mapping[str, int] = field(default_factory=dict)


def place_stages(graph: nx.DiGraph,
                 nodes: Mapping[str, AbstractSet[str]] | None = None) -> nx.DiGraph:
    """A copy of ``graph`` with ``placement`` and ``placement_reasons`` set (see the module rule).

    ``nodes`` maps each live node id to the op ids whose values live there (a
    :attr:`ClusterView.held`); sizes come from ``graph.graph["sizes"]``. Records
    ``"locality"`` in ``graph.graph["passes"]`` when some op is placed on a node.
    """
    g = graph.copy()
    reasons: dict[str, PlacementReason] = {}
    if not nodes or len(nodes) == 1:
        placement = {op_id: LOCAL for op_id in g.nodes}
    else:
        placement = _place_on_nodes(g, nodes, reasons)
    g.graph["placement"] = placement
    g.graph["placement_reasons"] = reasons
    if any(where != LOCAL for where in placement.values()):
        g.graph["passes"] = (*g.graph.get("passes", ()), PASS_NAME)
    return g


def _place_on_nodes(g: nx.DiGraph, nodes: Mapping[str, AbstractSet[str]],
                    reasons: dict[str, PlacementReason]) -> dict[str, str]:
    stage_of = _stage_of(g)
    members: dict[str, list[str]] = {}
    for op_id, stage in stage_of.items():
        members.setdefault(stage, []).append(op_id)
    home: dict[str, set[str]] = {}  # op id -> the nodes holding its value
    for node, held in nodes.items():
        for op_id in held:
            home.setdefault(op_id, set()).add(node)
    sizes: Mapping[str, int] = g.graph.get("sizes") or {}
    ops = ops_of(g)
    placement: dict[str, str] = {}
    for stage in _stage_order(g, stage_of):
        stage_ops = members[stage]
        inputs = [u for v in stage_ops for u in g.predecessors(v) if stage_of[u] != stage]
        where, why = _decide(stage_ops, inputs, ops, placement, sizes, home)
        for op_id in stage_ops:
            placement[op_id] = where
            if where != LOCAL and why is not None:
                reasons[op_id] = why
                home.setdefault(op_id, {where})  # its value will live there
    return placement


def _decide(stage_ops: list[str], inputs: list[str], ops: Mapping[str, Op],
            placement: Mapping[str, str], sizes: Mapping[str, int],
            home: Mapping[str, set[str]]) -> tuple[str, PlacementReason | None]:
    """Where one stage runs and why, by the module's rules in order."""
    first = ops[stage_ops[0]]
    if first.kind is OpKind.CONSTANT:
        holders = home.get(first.id, set())
        if len(holders) == 1:
            return next(iter(holders)), PlacementReason("holds", first.id, sizes.get(first.id))
        return LOCAL, None
    for op_id in stage_ops:
        node, _soft = affinity_node(dict(ops[op_id].options).get("scheduling_strategy"))
        if node is not None:
            return node, PlacementReason("scheduling_strategy", op_id)
    actor = _actor_of(stage_ops, ops)
    if actor is not None:
        where = placement.get(actor, LOCAL)
        return where, PlacementReason("actor", actor) if where != LOCAL else None
    return _largest_input_node(inputs, sizes, home)


def _largest_input_node(inputs: list[str], sizes: Mapping[str, int],
                        home: Mapping[str, set[str]]) -> tuple[str, PlacementReason | None]:
    """The node of the biggest input with a known size and node; ``"local"`` if none or a tie."""
    known = [u for u in dict.fromkeys(inputs) if u in sizes and home.get(u)]
    if not known:
        return LOCAL, None
    largest = max(sizes[u] for u in known)
    biggest = [u for u in known if sizes[u] == largest]
    holders = set().union(*(home[u] for u in biggest))
    if len(holders) != 1:
        return LOCAL, None
    return holders.pop(), PlacementReason("largest_input", biggest[0], largest)


def _actor_of(stage_ops: list[str], ops: Mapping[str, Op]) -> str | None:
    """The actor op a method-call stage calls, or None for other stages."""
    for op_id in stage_ops:
        op = ops[op_id]
        if op.kind is OpKind.METHOD and op.inputs:
            return op.inputs[0]
    return None


def _stage_of(g: nx.DiGraph) -> dict[str, str]:
    stages = g.graph.get("stages") or {}
    return {op_id: stages.get(op_id, op_id) for op_id in g.nodes}


def _stage_order(g: nx.DiGraph, stage_of: Mapping[str, str]) -> list[str]:
    """The stages in a deterministic topological order of the stage graph."""
    stage_graph: nx.DiGraph[str] = nx.DiGraph()
    stage_graph.add_nodes_from(set(stage_of.values()))
    stage_graph.add_edges_from((stage_of[u], stage_of[v]) for u, v in g.edges
                               if stage_of[u] != stage_of[v])
    try:
        return list(nx.lexicographical_topological_sort(stage_graph))
    except nx.NetworkXUnfeasible as err:
        raise InternalError("the stages of this graph form a cycle; fusion grouped ops that "
                            "depend on each other through another stage") from err
