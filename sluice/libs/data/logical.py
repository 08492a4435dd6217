"""The logical plan of a Dataset: a small DAG of plain, frozen ``LogicalOp`` nodes.

A Dataset holds its last op; each op holds the ops it reads. Ops are compared by
identity (``eq=False``): two datasets built from one share that node, and the
optimizer counts consumers to know when a rewrite would change what another
branch sees. The plan is lowered through the compiler (``planner.py``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any


class Kind(enum.Enum):
    """What a logical op does to the stream of blocks."""

    READ = "read"            # a Datasource: one block per read task
    MAP = "map"              # block -> block (or block -> partitions, for a shuffle's map side)
    ACTOR_MAP = "actor_map"  # block -> block on a pool of actors (a callable class)
    LIMIT = "limit"          # the first n rows of the stream
    UNION = "union"          # the blocks of each input, one after the other
    SHUFFLE = "shuffle"      # a barrier: sort, aggregate, random_shuffle, repartition, map_groups


@dataclass(frozen=True, eq=False)
class LogicalOp:
    """One node of a Dataset's plan.

    ``fn``: MAP: a block function (``transforms.py``); ACTOR_MAP: an ``ActorPoolSpec``;
    SHUFFLE: a ``shuffle.ShuffleSpec``. ``pushdown``: what a MAP may hand to its read
    (``("select", columns)`` or ``("filter", expression)``); ``rows_kept``: the MAP
    keeps every row in order (a limit may move above it). ``resources``: the
    options of its tasks (num_cpus, num_gpus, ...).
    """

    kind: Kind
    name: str
    inputs: tuple[LogicalOp, ...] = ()
    source: Any = None
    fn: Any = None
    pushdown: tuple = ()
    rows_kept: bool = False
    limit: int | None = None
    resources: tuple[tuple[str, Any], ...] = ()
    concurrency: int | None = None

    def with_inputs(self, *inputs: LogicalOp) -> LogicalOp:
        """The same op over other inputs."""
        return replace(self, inputs=tuple(inputs))


def topological(root: LogicalOp) -> list[LogicalOp]:
    """Every op ``root`` depends on, inputs before their readers (iterative)."""
    order: list[LogicalOp] = []
    seen: set[int] = set()
    stack: list[tuple[LogicalOp, bool]] = [(root, False)]
    while stack:
        op, expanded = stack.pop()
        if expanded:
            order.append(op)
            continue
        if id(op) in seen:
            continue
        seen.add(id(op))
        stack.append((op, True))
        stack.extend((i, False) for i in reversed(op.inputs) if id(i) not in seen)
    return order


def consumer_counts(root: LogicalOp) -> dict[int, int]:
    """id(op) -> how many ops of the plan read it."""
    counts: dict[int, int] = {}
    for op in topological(root):
        for i in op.inputs:
            counts[id(i)] = counts.get(id(i), 0) + 1
    return counts
