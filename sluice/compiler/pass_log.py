"""What each compiler pass changed: the graph before and after it, as plain data.

``compile_graph`` takes a :func:`snapshot` of the logical graph around every pass that
fires and keeps the pair as a :class:`PassChange` in the Plan (``Plan.pass_log``), for
graphs of up to :data:`MAX_OPS` ops (a larger graph keeps only the names in
``Plan.passes``: its picture would not be read, and snapshots cost compile time).
:func:`diff` says what changed: ops added and removed, ops moved to another stage
(fusion), placed elsewhere (locality) or onto another device (GPU placement), edges
added and removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sluice.compiler.ir import op_label

MAX_OPS = 2000
"""Largest graph whose passes are recorded."""


@dataclass(frozen=True)
class GraphSnapshot:
    """A logical graph at one moment: ``ops`` as (op id, label, kind, stage group,
    placement, device), ``edges`` as (src, dst)."""

    ops: tuple[tuple[str, str, str, str, str, str], ...]
    edges: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PassChange:
    """One pass that changed the graph: its ``name``, the graph ``before`` and ``after``."""

    name: str
    before: GraphSnapshot
    after: GraphSnapshot


def snapshot(graph: Any) -> GraphSnapshot:
    """The ops and edges of logical ``graph`` (a networkx DiGraph of ops)."""
    groups = graph.graph.get("stages") or {}
    placement = graph.graph.get("placement") or {}
    ops = []
    for node in sorted(graph.nodes):
        op = graph.nodes[node]["op"]
        ops.append((op.id, op_label(op), op.kind.value, groups.get(op.id, op.id),
                    placement.get(op.id, "local"), op.device))
    return GraphSnapshot(tuple(ops), tuple(sorted(graph.edges())))


def diff(change: PassChange) -> dict[str, list[Any]]:
    """What ``change`` did: ``added`` / ``removed`` op ids, ``regrouped`` (op id, old group,
    new group), ``placed`` (op id, old node, new node), ``moved`` (op id, old device, new
    device), ``edges_added`` / ``edges_removed``."""
    before = {op[0]: op for op in change.before.ops}
    after = {op[0]: op for op in change.after.ops}
    common = before.keys() & after.keys()
    both = sorted(common)
    old_edges, new_edges = set(change.before.edges), set(change.after.edges)

    def members(ops: dict[str, tuple]) -> dict[str, frozenset[str]]:
        groups: dict[str, set[str]] = {}
        for op in ops.values():
            groups.setdefault(op[3], set()).add(op[0])
        return {op_id: frozenset(groups[op[3]]) for op_id, op in ops.items()}

    # Grouping changed when an op's stage-mates changed (group names themselves may differ).
    old_mates, new_mates = members(before), members(after)
    return {
        "added": sorted(after.keys() - before.keys()),
        "removed": sorted(before.keys() - after.keys()),
        "regrouped": [(i, before[i][3], after[i][3]) for i in both
                      if old_mates[i] & common != new_mates[i] & common],
        "placed": [(i, before[i][4], after[i][4]) for i in both if before[i][4] != after[i][4]],
        "moved": [(i, before[i][5], after[i][5]) for i in both if before[i][5] != after[i][5]],
        "edges_added": sorted(new_edges - old_edges),
        "edges_removed": sorted(old_edges - new_edges),
    }


def summary(change: PassChange) -> str:
    """One line: what ``change`` did, in counts."""
    d = diff(change)
    parts = [f"{len(d[key])} {text}" for key, text in (
        ("added", "op(s) added"), ("removed", "op(s) removed"),
        ("regrouped", "op(s) regrouped into stages"), ("placed", "op(s) placed on a node"),
        ("moved", "op(s) moved to another device"), ("edges_added", "edge(s) added"),
        ("edges_removed", "edge(s) removed")) if d[key]]
    return ", ".join(parts) if parts else "attributes only (no op, edge or stage changed)"
