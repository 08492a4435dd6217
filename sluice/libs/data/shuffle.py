"""Shuffles: map/reduce barriers. Each is a ``ShuffleSpec`` the executor runs in two phases.

Map side: each input block is cut into ``n`` pieces (by key hash, key range, or at
random). Where the cut needs nothing but the block, it is a block function
(``partitions = True``) that the planner puts at the end of the upstream stage, so
it fuses with the maps before it (a group-by also aggregates each block there, so
only partial states cross the barrier). Sort samples its keys first, so it cuts in
tasks of its own. Reduce side: piece ``i`` of every block meets in reduce task ``i``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from sluice.libs.data.aggregate import (
    AggregateFn,
    combine_partials,
    finalize_aggregate,
    partial_aggregate,
)
from sluice.libs.data.block import concat_blocks, to_batch, to_block
from sluice.libs.data.partition import (
    hash_partition,
    random_partition,
    range_partition,
    sample_block,
    sample_boundaries,
)
from sluice.libs.data.transforms import check_columns, fn_name


@dataclass(frozen=True)
class ShuffleSpec:
    """What a SHUFFLE op does. ``how``: aggregate | map_groups | sort | random_shuffle | repartition.

    ``map_side``: the block function cutting each block into pieces, fused upstream
    (None: the shuffle cuts in its own tasks: sort, repartition).
    """

    how: str
    keys: tuple[str, ...] = ()
    aggs: tuple[AggregateFn, ...] = ()
    fn: Any = None
    batch_format: str = "pandas"
    descending: bool = False
    seed: int | None = None
    num_outputs: int | None = None
    fn_args: tuple = field(default=())

    @property
    def required_columns(self) -> list[str]:
        """The columns the shuffle reads by name: keys, and an aggregate's ``on`` columns."""
        ons = [a.on for a in self.aggs if a.on] if self.how == "aggregate" else []
        return list(dict.fromkeys([*self.keys, *ons]))

    def output_columns(self, columns: list[str] | None) -> list[str] | None:
        """The keys and one column per aggregate; the input's own for a reordering."""
        if self.how == "aggregate":
            return [*self.keys, *(a.name for a in self.aggs)]
        return columns if self.how in ("sort", "random_shuffle", "repartition") else None

    @property
    def map_side(self) -> Any:
        if self.how == "aggregate":
            return PartialAggregate(list(self.keys), list(self.aggs))
        if self.how == "map_groups":
            return HashPartition(list(self.keys))
        if self.how == "random_shuffle":
            return RandomPartition(self.seed)
        return None


class PartialAggregate:
    """Map side of a group-by: aggregate the block by key, then cut the states by key hash."""

    partitions = True

    def __init__(self, keys: list[str], aggs: list[AggregateFn]):
        self.keys, self.aggs = keys, aggs
        self.name = f"PartialAggregate({', '.join(keys) or 'all'})"

    def __call__(self, block: pa.Table, num_parts: int, index: int) -> list[pa.Table]:
        check_columns(block, self.keys + [a.on for a in self.aggs if a.on], f"groupby {self.name}")
        state = partial_aggregate(block, self.keys, self.aggs)
        if not self.keys:
            return [state] + [state.slice(0, 0)] * (num_parts - 1)
        return hash_partition(state, self.keys, num_parts)


class HashPartition:
    """Map side of ``map_groups``: rows cut by key hash."""

    partitions = True

    def __init__(self, keys: list[str]):
        self.keys = keys
        self.name = f"HashPartition({', '.join(keys)})"

    def __call__(self, block: pa.Table, num_parts: int, index: int) -> list[pa.Table]:
        check_columns(block, self.keys, f"groupby {self.name}")
        return hash_partition(block, self.keys, num_parts)


class RandomPartition:
    """Map side of ``random_shuffle``: rows dealt at random (seeded per block when a seed is given)."""

    partitions = True

    def __init__(self, seed: int | None):
        self.seed = seed
        self.name = "RandomShuffle(map)"

    def __call__(self, block: pa.Table, num_parts: int, index: int) -> list[pa.Table]:
        return random_partition(block, num_parts, self.seed, index)


# --------------------------------------------------------------------------- reduce side

def reduce_pieces(spec: ShuffleSpec, index: int, pieces: list[pa.Table]) -> pa.Table:
    """Reduce task ``index`` of ``spec`` over its piece of every input block."""
    if spec.how == "aggregate":
        keys, aggs = list(spec.keys), list(spec.aggs)
        return finalize_aggregate(combine_partials(pieces, keys, aggs), keys, aggs)
    block = concat_blocks(pieces)
    if spec.how == "sort":
        order = "descending" if spec.descending else "ascending"
        return block.sort_by([(k, order) for k in spec.keys]) if block.num_rows else block
    if spec.how == "random_shuffle":
        seed = None if spec.seed is None else spec.seed * 1_000_003 + index
        perm = np.random.default_rng(seed).permutation(block.num_rows)
        return block.take(pa.array(perm)) if block.num_rows else block
    if spec.how == "map_groups":
        return map_groups(block, list(spec.keys), spec.fn, spec.batch_format)
    if spec.how == "repartition":
        return block
    raise ValueError(f"unknown shuffle {spec.how!r}")


def map_groups(block: pa.Table, keys: list[str], fn: Callable, batch_format: str) -> pa.Table:
    """``fn`` on each group of rows with equal keys (groups in key order)."""
    where = f"map_groups({fn_name(fn)})"
    if block.num_rows == 0:
        return block
    block = block.sort_by([(k, "ascending") for k in keys])
    starts = group_starts(block, keys)
    out = []
    fmt = "numpy" if batch_format == "default" else batch_format
    for start, end in zip(starts, starts[1:] + [block.num_rows]):
        out.append(to_block(fn(to_batch(block.slice(start, end - start), fmt)), where))
    return concat_blocks(out)


def group_starts(block: pa.Table, keys: list[str]) -> list[int]:
    """Row indexes where a new group begins in a block sorted by ``keys``."""
    change = np.zeros(block.num_rows, dtype=bool)
    change[0] = True
    for k in keys:
        col = block.column(k).combine_chunks()
        values = np.asarray(col.to_pylist(), dtype=object) if not _numeric(col.type) else col.to_numpy(
            zero_copy_only=False)
        change[1:] |= values[1:] != values[:-1]
    return np.flatnonzero(change).tolist()


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


# --------------------------------------------------------------------------- sort and repartition

def sort_sample(block: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """Map side of sort, phase one: a small sample of the first key."""
    if block.num_rows == 0 and block.num_columns == 0:
        return block
    check_columns(block, list(keys), f"sort({', '.join(keys)})")
    return sample_block(block, keys[0])


def sort_cut(block: pa.Table, keys: tuple[str, ...], boundaries: list, descending: bool
             ) -> list[pa.Table]:
    """Map side of sort, phase two: the block cut at the sampled boundaries."""
    return range_partition(block, keys[0], boundaries, descending)


def sort_boundaries(samples: list[pa.Table], keys: tuple[str, ...], n: int, descending: bool) -> list:
    """``n - 1`` cut points for a sort's ``n`` ranges."""
    return sample_boundaries(samples, keys[0], n, descending)


def repartition_slices(row_counts: list[int], n: int) -> list[list[tuple[int, int, int]]]:
    """For each of ``n`` outputs: (block index, offset, length) pieces, keeping row order."""
    total = sum(row_counts)
    bounds = [total * i // n for i in range(n + 1)]
    plans: list[list[tuple[int, int, int]]] = [[] for _ in range(n)]
    start = 0
    for b, rows in enumerate(row_counts):
        end = start + rows
        for i in range(n):
            lo, hi = max(start, bounds[i]), min(end, bounds[i + 1])
            if lo < hi:
                plans[i].append((b, lo - start, hi - lo))
        start = end
    return plans


def take_slices(plan: list[tuple[int, int, int]], *blocks: pa.Table) -> pa.Table:
    """Reduce side of repartition: the planned slices of ``blocks`` joined."""
    return concat_blocks([blocks[j].slice(offset, length) for j, (_, offset, length) in enumerate(plan)])
