"""Cutting a block into pieces for a shuffle: by key hash, by key range, or at random.

Every function here is vectorized over the block's Arrow buffers and returns
compact tables (built with ``take``, never slices, so a pickled piece carries
only its own rows). Each piece keeps the block's schema, and the pieces of one
block together hold each of its rows exactly once.

Hashing is stable across processes and runs: it never uses Python's ``hash()``
(salted per process for strings) but a fixed 64-bit mix of the values' bytes, so
the same key lands in the same piece in every map task. Values that compare
equal hash equally across the numeric types (``1``, ``1.0`` and ``True`` are one
key, as are ``0.0`` and ``-0.0``), and ``string``/``large_string``/``binary``
values with the same bytes hash equally.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sluice.libs.data.block import ColumnNotFoundError

__all__ = [
    "ColumnNotFoundError",
    "hash_partition",
    "hash_rows",
    "random_partition",
    "range_partition",
    "require_columns",
    "sample_block",
    "sample_boundaries",
]


def require_columns(block: pa.Table, columns: Sequence[str], where: str) -> None:
    """Raise :class:`ColumnNotFoundError` naming the first of ``columns`` missing from ``block``."""
    present = set(block.column_names)
    for column in columns:
        if column not in present:
            raise ColumnNotFoundError(
                f"{where}: column {column!r} does not exist; the block has columns "
                f"{block.column_names}")


def _check_count(n: int, what: str) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{what}={n!r} must be a positive integer number of pieces")


def _pieces(block: pa.Table, piece_of_row: np.ndarray, n: int) -> list[pa.Table]:
    """``n`` tables: piece ``i`` holds the rows whose ``piece_of_row`` is ``i``, in block order."""
    if n == 1:
        return [block]
    # A stable sort keeps each piece's rows in block order; uint16 labels let numpy radix-sort.
    labels = piece_of_row.astype(np.uint16 if n <= 1 << 16 else np.int64, copy=False)
    order = np.argsort(labels, kind="stable")
    ends = np.cumsum(np.bincount(labels, minlength=n))
    starts = ends - np.bincount(labels, minlength=n)
    return [block.take(pa.array(order[s:e])) for s, e in zip(starts.tolist(), ends.tolist())]


# --------------------------------------------------------------------------- stable hashing

_NULL_HASH = np.uint64(0x9E3779B97F4A7C15)
_STRING_PRIME = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime: a good odd multiplier


def _mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection on uint64 that spreads every input bit (wraps mod 2**64)."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _valid_mask(column: pa.ChunkedArray) -> np.ndarray | None:
    if column.null_count == 0:
        return None
    return pc.is_valid(column).to_numpy()


def _hash_int64(values: np.ndarray) -> np.ndarray:
    return _mix64(values.astype(np.int64, copy=False).view(np.uint64))


def _hash_floats(column: pa.ChunkedArray) -> np.ndarray:
    values = pc.fill_null(column.cast(pa.float64()), 0.0).to_numpy()
    # Integral floats hash as the integer they equal, so 1.0 and 1 are one key; -0.0 is 0.
    integral = np.isfinite(values) & (np.floor(values) == values) & (np.abs(values) < 2.0**63)
    as_int = np.where(integral, values, 0.0).astype(np.int64)
    canonical = np.where(np.isnan(values), np.nan, values)  # one bit pattern for every NaN
    return _hash_int64(np.where(integral, as_int, canonical.view(np.int64)))


def _hash_bytes(column: pa.ChunkedArray) -> np.ndarray:
    """A polynomial hash of each value's bytes, vectorized over the column's data buffer."""
    array = column.cast(pa.large_binary()).combine_chunks()
    n = len(array)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset:array.offset + n + 1]
    data_buffer = array.buffers()[2]
    data = (np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None
            else np.zeros(0, dtype=np.uint8))[offsets[0]:offsets[-1]]
    lengths = np.diff(offsets)
    sums = np.zeros(n, dtype=np.uint64)
    if len(data):
        starts = offsets[:-1] - offsets[0]
        # Byte j of a value is weighted by prime**j (mod 2**64), so order matters.
        position = np.arange(len(data), dtype=np.int64) - np.repeat(starts, lengths)
        powers = np.cumprod(np.full(int(lengths.max()), _STRING_PRIME, dtype=np.uint64))
        terms = (data.astype(np.uint64) + np.uint64(1)) * powers[position]
        nonempty = lengths > 0
        # Values are contiguous in the buffer, so each nonempty value's sum runs to the next one's start.
        sums[nonempty] = np.add.reduceat(terms, starts[nonempty])
    return _mix64(sums ^ _mix64(lengths.astype(np.uint64)))


def _hash_column(column: pa.ChunkedArray, name: str) -> np.ndarray:
    """A stable uint64 hash of each value of ``column`` (nulls share one hash)."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    if pa.types.is_null(kind):
        return np.full(len(column), _NULL_HASH, dtype=np.uint64)
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        hashes = _hash_floats(column)
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        filled = pc.fill_null(column, 0 if pa.types.is_integer(kind) else False)
        hashes = _hash_int64(filled.to_numpy().astype(np.int64))
    elif pa.types.is_temporal(kind):
        storage = pa.int32() if kind.bit_width == 32 else pa.int64()
        hashes = _hash_int64(pc.fill_null(column.cast(storage), 0).to_numpy())
    elif (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
          or pa.types.is_large_binary(kind) or pa.types.is_string_view(kind)
          or pa.types.is_binary_view(kind)):
        hashes = _hash_bytes(column)
    else:
        raise TypeError(f"cannot hash key column {name!r} of type {kind}; group or partition by "
                        "number, string, bool or date/time columns (map nested values to a string key first)")
    valid = _valid_mask(column)
    if valid is not None:
        hashes = np.where(valid, hashes, _NULL_HASH)
    return hashes


def hash_rows(block: pa.Table, keys: Sequence[str]) -> np.ndarray:
    """A stable uint64 hash per row of the ``keys`` columns (equal keys, equal hash, in any process)."""
    combined = np.full(block.num_rows, 0x2545F4914F6CDD1D, dtype=np.uint64)
    for key in keys:
        combined = _mix64(combined * _STRING_PRIME + _hash_column(block.column(key), key))
    return combined


def hash_partition(block: pa.Table, keys: Sequence[str], n: int) -> list[pa.Table]:
    """``n`` tables; all rows with equal ``keys`` values land in the same one, in every process and run.

    Row order within a piece follows the block. Nulls count as one key value.

    >>> pieces = hash_partition(pa.table({"k": [1, 2, 1, 2, 3]}), ["k"], 2)
    >>> [piece["k"].to_pylist() for piece in pieces]
    [[3], [1, 2, 1, 2]]
    """
    _check_count(n, "n")
    if isinstance(keys, str):
        keys = [keys]
    if not keys:
        raise ValueError("hash_partition needs at least one key column; use random_partition to "
                         "spread rows without a key")
    require_columns(block, keys, "hash_partition")
    if block.num_rows == 0:
        return [block] * n
    if n == 1:
        return [block]
    piece_of_row = hash_rows(block, keys) % np.uint64(n)
    return _pieces(block, piece_of_row, n)


# --------------------------------------------------------------------------- range partitioning

def sample_block(block: pa.Table, key: str, k: int = 100) -> pa.Table:
    """Up to ``k`` evenly spaced rows of the ``key`` column (all rows when the block has at most ``k``).

    >>> sample_block(pa.table({"x": list(range(10))}), "x", 3)["x"].to_pylist()
    [0, 4, 9]
    """
    require_columns(block, [key], "sample_block")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k={k!r} must be a non-negative number of rows to sample")
    column = block.select([key])
    if column.num_rows <= k:
        return column
    rows = np.linspace(0, column.num_rows - 1, k).round().astype(np.int64)
    return column.take(pa.array(rows))


def _non_missing(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """``column`` without nulls and NaNs (they sort last and never serve as boundaries)."""
    column = column.drop_null()
    if pa.types.is_floating(column.type):
        column = column.filter(pc.invert(pc.is_nan(column)))
    return column


def sample_boundaries(samples: Sequence[pa.Table], key: str, n: int,
                      descending: bool = False) -> list:
    """``n - 1`` boundary values for ``n`` key ranges, from sampled ``key`` values.

    The boundaries come in sort order: ascending, or descending when
    ``descending``; :func:`range_partition` takes them as they are. Nulls and NaNs
    are ignored; with no other sampled value the answer is ``[]`` (one range).

    >>> sample_boundaries([pa.table({"x": [5, 1, 3, 7]})], "x", 2)
    [5]
    """
    _check_count(n, "n")
    tables = []
    for sample in samples:
        if sample.num_columns:  # a block with no columns at all has nothing to sample
            require_columns(sample, [key], "sample_boundaries")
            tables.append(sample.select([key]))
    if not tables:
        return []
    values = _non_missing(pa.concat_tables(tables, promote_options="permissive").column(key))
    if len(values) == 0 or n == 1:
        return []
    ordered = values.take(pc.sort_indices(values))
    picks = [min(len(ordered) - 1, i * len(ordered) // n) for i in range(1, n)]
    boundaries = ordered.take(pa.array(picks)).to_pylist()
    return boundaries[::-1] if descending else boundaries


def _check_sorted(boundaries: Sequence[Any], descending: bool) -> None:
    pairs = pairwise(boundaries)
    in_order = all(b <= a for a, b in pairs) if descending else all(a <= b for a, b in pairs)
    if not in_order:
        direction = "descending" if descending else "ascending"
        raise ValueError(f"boundaries {list(boundaries)!r} are not sorted {direction} "
                         f"(descending={descending}); pass the list sample_boundaries returns")


def _search(values: np.ndarray, cuts: np.ndarray, descending: bool) -> np.ndarray:
    """Piece per value: how many boundaries sort at or before it (``np.searchsorted``)."""
    if descending:
        return len(cuts) - np.searchsorted(cuts[::-1], values, side="left")  # boundaries >= value
    return np.searchsorted(cuts, values, side="right")  # boundaries <= value


def _sorted_pieces(values: pa.Array, cuts: pa.Array, descending: bool) -> np.ndarray:
    """Piece per value of any orderable type: sort values and boundaries together, count boundaries."""
    n = len(values)
    # A boundary sorts before the values equal to it, so a value counts the boundaries it equals.
    after_cut = np.concatenate([np.ones(n, dtype=np.int8), np.zeros(len(cuts), dtype=np.int8)])
    both = pa.table({"value": pa.chunked_array([values, cuts], type=values.type), "after": after_cut})
    order = pc.sort_indices(both, sort_keys=[("value", "descending" if descending else "ascending"),
                                             ("after", "ascending")]).to_numpy()
    piece = np.empty(n + len(cuts), dtype=np.int64)
    piece[order] = np.cumsum(after_cut[order] == 0)
    return piece[:n]


def _piece_of_row(column: pa.ChunkedArray, boundaries: list, descending: bool) -> np.ndarray:
    """Piece per row; nulls and NaNs go to the last piece, where a sort puts them in either direction."""
    kind, last = column.type, len(boundaries)
    numbers = all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in boundaries)
    if (pa.types.is_integer(kind) or pa.types.is_floating(kind)) and numbers:
        dtype = np.float64 if pa.types.is_floating(kind) or any(isinstance(b, float) for b in boundaries) \
            else np.int64
        values = pc.fill_null(column, 0).to_numpy().astype(dtype, copy=False)
        piece = _search(values, np.asarray(boundaries, dtype=dtype), descending)
        if dtype is np.float64:
            piece[np.isnan(values)] = last
    elif pa.types.is_temporal(kind) and kind.bit_width in (32, 64):
        # Dates and times compare as their integer storage; the boundaries take the column's unit.
        storage = pa.int32() if kind.bit_width == 32 else pa.int64()
        cuts = pa.array(boundaries, type=kind).cast(storage).to_numpy()
        piece = _search(pc.fill_null(column.cast(storage), 0).to_numpy(), cuts, descending)
    else:
        # Sort only the distinct values with the boundaries, then look each row's value up.
        encoded = pc.dictionary_encode(column.combine_chunks())
        per_value = _sorted_pieces(encoded.dictionary, pa.array(boundaries, type=kind), descending)
        piece = per_value[pc.fill_null(encoded.indices, 0).to_numpy()] if len(per_value) else \
            np.full(len(column), last, dtype=np.int64)
    if column.null_count:
        piece[~pc.is_valid(column).to_numpy()] = last
    return piece


def range_partition(block: pa.Table, key: str, boundaries: Sequence[Any],
                    descending: bool = False) -> list[pa.Table]:
    """``len(boundaries) + 1`` tables, piece ``i`` holding the rows between boundary ``i - 1`` and ``i``.

    ``boundaries`` are in sort order (descending when ``descending``). A row equal
    to a boundary goes to the piece after it; nulls and NaNs go to the last piece,
    where a sort puts them. Sorting each piece and concatenating them in order
    therefore sorts the block.

    >>> [p["x"].to_pylist() for p in range_partition(pa.table({"x": [3, 1, 2]}), "x", [2])]
    [[1], [3, 2]]
    """
    require_columns(block, [key], "range_partition")
    boundaries = list(boundaries)
    _check_sorted(boundaries, descending)
    n = len(boundaries) + 1
    if block.num_rows == 0:
        return [block] * n
    if n == 1:
        return [block]
    column = block.column(key)
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    try:
        piece = _piece_of_row(column, boundaries, descending)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
        raise TypeError(f"range_partition: boundaries {boundaries!r:.200} do not fit column {key!r} "
                        f"of type {column.type} ({err}); sample the boundaries from this column") from None
    return _pieces(block, piece, n)


# --------------------------------------------------------------------------- random partitioning

def random_partition(block: pa.Table, n: int, seed: int | None, index: int) -> list[pa.Table]:
    """The block's rows, permuted at random and dealt round-robin into ``n`` tables.

    With a ``seed`` the cut is a function of ``(seed, index)`` alone (``index``:
    the block's position), so reruns give the same pieces; with ``None`` it differs
    every call. The deal starts at piece ``index % n`` so that the pieces that get
    one row more differ from block to block.
    """
    _check_count(n, "n")
    rng = np.random.default_rng(None if seed is None else [int(seed), int(index)])
    order = rng.permutation(block.num_rows)
    # Permuted position p goes to piece (p + index) % n; rows keep the permuted order.
    return [block.take(pa.array(order[(j - index) % n::n])) for j in range(n)]
