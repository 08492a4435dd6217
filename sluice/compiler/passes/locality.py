"""Locality: each stage runs on the node that already holds its largest input.

Legality rule: placement never changes what a stage computes, only where it
runs; it is a hint that saves moving the stage's biggest input between nodes.

- On one node (``nodes`` None or a single node) every op is ``"local"``.
- With several nodes, ``nodes`` maps each node name to the op ids whose values
  live there. A stage (ops sharing a name in ``graph.graph["stages"]``; an op
  with no entry is its own stage) goes to the node of its largest input: the
  biggest value, by ``graph.graph["sizes"]`` (op id -> bytes), that it reads
  from another stage. It stays ``"local"`` when no input has both a known size
  and a known node, or when inputs of the largest size live on different nodes.
- A placed stage's values live on its node, so stages downstream find them there.
- A stage of actor method calls runs where its actor is, whatever its inputs.

The result is ``graph.graph["placement"]``: op id -> node name or ``"local"``,
for every op.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet

import networkx as nx

from sluice.compiler.ir import OpKind, ops_of
from sluice.exceptions import InternalError

LOCAL = "local"
PASS_NAME = "locality"


def place_stages(graph: nx.DiGraph,
                 nodes: Mapping[str, AbstractSet[str]] | None = None) -> nx.DiGraph:
    """A copy of ``graph`` with ``graph.graph["placement"]`` set for every op.

    Records ``"locality"`` in ``graph.graph["passes"]`` when some op is placed
    on a node rather than ``"local"``.
    """
    g = graph.copy()
    if not nodes or len(nodes) == 1:
        placement = {op_id: LOCAL for op_id in g.nodes}
    else:
        placement = _place_on_nodes(g, nodes)
    g.graph["placement"] = placement
    if any(where != LOCAL for where in placement.values()):
        g.graph["passes"] = (*g.graph.get("passes", ()), PASS_NAME)
    return g


def _place_on_nodes(g: nx.DiGraph, nodes: Mapping[str, AbstractSet[str]]) -> dict[str, str]:
    stage_of = _stage_of(g)
    members: dict[str, list[str]] = {}
    for op_id, stage in stage_of.items():
        members.setdefault(stage, []).append(op_id)
    home = {op_id: node for node, held in nodes.items() for op_id in held}
    sizes: Mapping[str, int] = g.graph.get("sizes") or {}
    ops = ops_of(g)
    placement: dict[str, str] = {}
    for stage in _stage_order(g, stage_of):
        inputs = [u for v in members[stage] for u in g.predecessors(v) if stage_of[u] != stage]
        where = _actor_home(members[stage], ops, placement, stage_of)
        if where is None:
            where = _largest_input_node(inputs, sizes, home)
        for op_id in members[stage]:
            placement[op_id] = where
            if where != LOCAL:
                home.setdefault(op_id, where)  # its value will live there
    return placement


def _largest_input_node(inputs: list[str], sizes: Mapping[str, int],
                        home: Mapping[str, str]) -> str:
    """The node of the biggest input with a known size and node; ``"local"`` if none or a tie."""
    known = [(sizes[u], home[u]) for u in inputs if u in sizes and u in home]
    if not known:
        return LOCAL
    largest = max(size for size, _ in known)
    candidates = {node for size, node in known if size == largest}
    return candidates.pop() if len(candidates) == 1 else LOCAL


def _actor_home(stage_ops: list[str], ops: Mapping, placement: Mapping[str, str],
                stage_of: Mapping[str, str]) -> str | None:
    """Where the actor of a method-call stage was placed, or None for other stages."""
    for op_id in stage_ops:
        op = ops[op_id]
        if op.kind is OpKind.METHOD and op.inputs:
            return placement.get(op.inputs[0], LOCAL)
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
