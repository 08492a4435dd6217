"""Logical rewrites of a Dataset's plan, each a free function from plan to plan.

* ``split_shuffles``: a shuffle that can cut blocks without seeing the others gets
  its map side as a MAP op of its own, so fusion puts it in the upstream stage
  (a group-by aggregates each block before anything crosses the barrier).
* ``push_into_reads``: ``select_columns`` and expression ``filter`` ops directly on a
  read become the read's projection and predicate. Legality: the MAP reads the READ
  and is its only consumer (another branch must still see every column and row);
  nothing but such MAPs may stand between them, so a filter never crosses a limit,
  a shuffle, a union or an opaque function.
* ``push_limits``: a limit moves above maps that keep every row in order (``map``,
  ``select_columns``, ...), never above a filter or a batch function, and a limit
  on a read tells the read to stop early (the limit op stays to cut exactly).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from sluice.libs.data.logical import Kind, LogicalOp, consumer_counts, topological

RULES = ("split_shuffles", "push_limits", "push_into_reads")


def optimize(root: LogicalOp) -> tuple[LogicalOp, tuple[str, ...]]:
    """Every rewrite, in order; also the names of the rules that changed the plan."""
    applied = []
    for name in RULES:
        new = globals()[name](root)
        if new is not root:
            applied.append(name)
        root = new
    return root, tuple(applied)


def _rewrite(root: LogicalOp, rule: Callable[[LogicalOp, dict[int, int]], LogicalOp]) -> LogicalOp:
    """Apply ``rule`` to every op, inputs first; shared ops stay shared."""
    counts = consumer_counts(root)
    new: dict[int, LogicalOp] = {}
    for op in topological(root):
        inputs = tuple(new[id(i)] for i in op.inputs)
        rebuilt = op if all(a is b for a, b in zip(inputs, op.inputs)) else op.with_inputs(*inputs)
        for old, fresh in zip(op.inputs, inputs):
            counts[id(fresh)] = counts.get(id(old), 0)
        new[id(op)] = rule(rebuilt, counts)
    return new[id(root)]


def split_shuffles(root: LogicalOp) -> LogicalOp:
    """SHUFFLE -> MAP(map side) + SHUFFLE, where the shuffle has a map side."""
    def rule(op: LogicalOp, counts: dict[int, int]) -> LogicalOp:
        if op.kind is not Kind.SHUFFLE or op.fn.map_side is None or op.pushdown == ("split",):
            return op
        side = op.fn.map_side
        cut = LogicalOp(Kind.MAP, side.name, inputs=op.inputs, fn=side)
        return replace(op, inputs=(cut,), pushdown=("split",))
    return _rewrite(root, rule)


def push_into_reads(root: LogicalOp) -> LogicalOp:
    """Projections and predicates into the read below them, where that is legal."""
    def rule(op: LogicalOp, counts: dict[int, int]) -> LogicalOp:
        if op.kind is not Kind.MAP or not op.pushdown or len(op.inputs) != 1:
            return op
        read = op.inputs[0]
        if read.kind is not Kind.READ or counts.get(id(read), 0) != 1:
            return op
        what, value = op.pushdown
        source = (read.source.with_columns(list(value)) if what == "select"
                  else read.source.with_filter(value) if what == "filter" else None)
        if source is None:
            return op
        return replace(read, source=source, name=read.name)
    return _rewrite(root, rule)


def push_limits(root: LogicalOp) -> LogicalOp:
    """Limits above row-keeping maps, merged with each other, and handed to reads."""
    def rule(op: LogicalOp, counts: dict[int, int]) -> LogicalOp:
        if op.kind is not Kind.LIMIT:
            return op
        below = op.inputs[0]
        maps: list[LogicalOp] = []
        # Walk down through maps that keep every row and that nothing else reads.
        while below.kind is Kind.MAP and below.rows_kept and counts.get(id(below), 0) <= 1:
            maps.append(below)
            below = below.inputs[0]
        if below.kind is Kind.LIMIT and counts.get(id(below), 0) <= 1:
            op = replace(op, limit=min(op.limit, below.limit))
            below = below.inputs[0]
        if below.kind is Kind.READ and counts.get(id(below), 0) <= 1:
            limited = below.source.with_limit(op.limit)
            if limited is not None:
                below = replace(below, source=limited)
        result = replace(op, inputs=(below,))
        for m in reversed(maps):
            result = m.with_inputs(result)
        return result
    return _rewrite(root, rule)
