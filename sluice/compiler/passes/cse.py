"""cse: compute identical pure ops once (common-subexpression elimination).

Rule: two ops merge when both are pure (a CALL with ``pure=True``, an INPUT,
a SELECT or a CONSTANT) and they have equal content: the same function, the
same constant arguments, the same options and placement, and (after earlier
merges) the same inputs. Actor ops and impure calls never merge: running them twice is the point.
"""

from __future__ import annotations

import networkx as nx

from sluice.compiler.ir import Op, new_graph, topological_ops


def eliminate_common_subexpressions(graph: nx.DiGraph) -> nx.DiGraph:
    """A new graph where each set of equal pure ops is one op (the first in order)."""
    canonical: dict[str, str] = {}      # op id -> the id it merged into
    by_content: dict[str, str] = {}     # content -> surviving op id
    kept: list[Op] = []
    for op in topological_ops(graph):
        inputs = tuple(canonical.get(i, i) for i in op.inputs)
        if inputs != op.inputs:
            op = op.with_inputs(inputs)
        if op.pure and op.content in by_content:
            canonical[op.id] = by_content[op.content]
            continue
        if op.pure:
            by_content[op.content] = op.id
        kept.append(op)
    if not canonical:
        return graph
    attrs = dict(graph.graph)
    attrs["outputs"] = tuple(canonical.get(o, o) for o in graph.graph["outputs"])
    signatures = graph.graph.get("signatures", {})
    attrs["signatures"] = {k: v for k, v in signatures.items() if k not in canonical}
    attrs["passes"] = tuple(graph.graph.get("passes", ())) + ("cse",)
    return new_graph(kept, attrs)
