"""Datasources: where a Dataset's blocks come from, planned as picklable read tasks.

A :class:`Datasource` is immutable and cheap to build; the driver asks it for
:class:`ReadTask` objects and ships each one to a worker, which calls it to get
one block (a ``pyarrow.Table``). Pushdown (``with_columns``, ``with_filter``,
``with_limit``) returns a *new* source that does that work inside the reader, or
``None`` when the source cannot, in which case the caller keeps the operator.

This module holds the base classes and the in-memory sources (``range``,
``from_items``, ``from_pandas``, ``from_arrow``, ``from_numpy``); files are read by
:mod:`.parquet` and :mod:`.text`.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pyarrow as pa

from sluice.exceptions import InternalError
from sluice.libs.data.block import ColumnNotFoundError, column_from_values

if TYPE_CHECKING:
    import pyarrow.compute as pc


class ReadResult(NamedTuple):
    """What a read task made: its block, and the rows it went through to make it (more than
    the block's when a filter pushed into the read dropped some)."""

    block: pa.Table
    rows_read: int


@dataclass(frozen=True)
class ReadTask:
    """One block's worth of reading, run in a worker.

    ``fn`` takes no arguments and returns the block (or a :class:`ReadResult` when it
    filters while reading); it holds plain data (paths, options, table slices), never
    an open file, so the task pickles with cloudpickle. ``num_rows`` is the block's
    row count when known without reading, ``size_bytes`` an estimate of its size
    (bytes on disk for files), ``label`` what it reads.
    """

    fn: Callable[[], pa.Table | ReadResult]
    num_rows: int | None
    size_bytes: int | None
    label: str

    def __call__(self) -> pa.Table:
        """Read the block; an error raised while reading carries a note naming ``label``."""
        return self.read().block

    def read(self) -> ReadResult:
        """The block and the rows read to make it; errors carry a note naming ``label``."""
        try:
            out = self.fn()
        except Exception as err:
            if hasattr(err, "add_note"):
                err.add_note(f"while reading {self.label}")
            raise
        block, rows_read = out if isinstance(out, ReadResult) else (out, None)
        if not isinstance(block, pa.Table):
            raise InternalError(f"read task for {self.label} returned {type(block).__name__}, "
                                "not a pyarrow.Table")
        return ReadResult(block, block.num_rows if rows_read is None else rows_read)


class Datasource:
    """Base class of every source; subclasses are immutable and picklable.

    Pushdown methods return a new source, or ``None`` when not supported (the
    default). ``with_limit(n)`` promises that the first ``n`` rows of the new
    source are the first ``n`` rows of this one; it may hold more, so the caller
    still applies its limit.
    """

    name: str = "Read"

    def read_tasks(self, parallelism: int) -> list[ReadTask]:
        """The tasks that read this source, about ``parallelism`` of them."""
        raise NotImplementedError(f"{type(self).__name__} does not define read_tasks")

    def schema(self) -> pa.Schema | None:
        """The schema of the blocks, when cheap to know (else ``None``)."""
        return None

    def count_rows(self) -> int | None:
        """The number of rows, when known from metadata alone (else ``None``)."""
        return None

    def column_names(self, *, read: bool = False) -> list[str] | None:
        """The columns every block has, when known without reading data (else ``None``);
        ``read=True`` lets a source read a little (a header) to know them.

        Plans check the columns an operation names against these before anything runs,
        so a source returns names only when no block can lack one of them.
        """
        schema = self.schema()
        return list(schema.names) if schema is not None and len(schema.names) else None

    def rows_to_read(self) -> int | None:
        """How many rows the read tasks go through (before a filter they apply drops
        some), when metadata alone tells (else ``None``): the total of progress bars."""
        return self.count_rows()

    def describe(self) -> str:
        """One line for ``explain()``."""
        return self.name

    def with_columns(self, columns: list[str]) -> Datasource | None:
        """A source that reads only ``columns`` (in that order), or ``None``."""
        return None

    def with_filter(self, expr: pc.Expression) -> Datasource | None:
        """A source that keeps only the rows where ``expr`` is true, or ``None``."""
        return None

    def with_limit(self, n: int) -> Datasource | None:
        """A source whose first ``n`` rows are this one's first ``n`` rows, or ``None``."""
        return None


def check_parallelism(parallelism: int) -> int:
    """``parallelism`` itself, or a ValueError for a value below 1."""
    if not isinstance(parallelism, int) or parallelism < 1:
        raise ValueError(f"parallelism={parallelism!r} must be an int >= 1")
    return parallelism


def check_limit(n: int) -> int:
    """``n`` itself, or a ValueError for a negative or non-int limit."""
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"limit={n!r} must be an int >= 0")
    return int(n)


def check_columns(columns: Sequence[str], schema: pa.Schema, where: str) -> list[str]:
    """``columns`` as a list, or a ColumnNotFoundError (a ValueError and a KeyError) naming
    the first one ``schema`` lacks."""
    if isinstance(columns, str) or not isinstance(columns, Sequence):
        raise TypeError(f"columns must be a list of column names, not {columns!r}")
    names = schema.names
    for column in columns:
        if column not in names:
            raise ColumnNotFoundError(f"column {column!r} does not exist in {where}; available "
                                      f"columns: {names}")
    if len(set(columns)) != len(columns):
        repeated = sorted({c for c in columns if list(columns).count(c) > 1})
        raise ValueError(f"columns {list(columns)} name {repeated} more than once; name each column once")
    return list(columns)


# --------------------------------------------------------------------------- range


@dataclass(frozen=True)
class RangeSource(Datasource):
    """The integers ``0 .. n-1`` in column ``id`` (int64), split evenly into blocks."""

    n: int
    name = "Range"

    def read_tasks(self, parallelism: int) -> list[ReadTask]:
        """``min(parallelism, n)`` tasks of consecutive ids (one empty task when ``n`` is 0)."""
        count = max(1, min(check_parallelism(parallelism), self.n))
        bounds = np.linspace(0, self.n, count + 1).astype(np.int64)
        return [ReadTask(functools.partial(_range_block, int(lo), int(hi)), int(hi - lo), int(hi - lo) * 8,
                         f"range({lo}, {hi})")
                for lo, hi in itertools.pairwise(bounds)]

    def schema(self) -> pa.Schema:
        """``id: int64``."""
        return pa.schema([("id", pa.int64())])

    def count_rows(self) -> int:
        """``n``."""
        return self.n

    def describe(self) -> str:
        """``Range[n=...]``."""
        return f"Range[n={self.n}]"

    def with_limit(self, n: int) -> RangeSource:
        """``range(min(self.n, n))``."""
        return RangeSource(min(self.n, check_limit(n)))


def _range_block(start: int, stop: int) -> pa.Table:
    return pa.table({"id": np.arange(start, stop, dtype=np.int64)})


def range_source(n: int) -> RangeSource:
    """The source of ``sluice.data.range(n)``: column ``id`` holding ``0 .. n-1``.

    >>> range_source(5).read_tasks(2)[1]().column("id").to_pylist()
    [2, 3, 4]
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"range(n) needs an int n >= 0, got {n!r}")
    return RangeSource(int(n))


# --------------------------------------------------------------------------- in-memory tables


@dataclass(frozen=True, eq=False)
class TableSource(Datasource):
    """Tables already in the driver's memory, one block each (``split``: sliced to ``parallelism``).

    The tasks hold their table slices; big inputs travel with the tasks.
    """

    tables: tuple[pa.Table, ...]
    name: str
    split: bool = False

    def read_tasks(self, parallelism: int) -> list[ReadTask]:
        """One task per table, or for a split source ``min(parallelism, rows)`` even slices."""
        check_parallelism(parallelism)
        pieces = list(self.tables)
        if self.split and len(pieces) == 1 and pieces[0].num_rows > 1:
            table = pieces[0]
            count = min(parallelism, table.num_rows)
            bounds = np.linspace(0, table.num_rows, count + 1).astype(np.int64)
            # Copies, not slices: a pickled slice carries its whole parent's buffers, and
            # each task pickles its piece.
            pieces = [table.take(np.arange(lo, hi)) for lo, hi in itertools.pairwise(bounds)]
        return [ReadTask(functools.partial(_same_table, t), t.num_rows, t.nbytes,
                         f"{self.name} block {i} of {len(pieces)}")
                for i, t in enumerate(pieces)]

    def schema(self) -> pa.Schema | None:
        """The first table's schema."""
        return self.tables[0].schema if self.tables else None

    def count_rows(self) -> int:
        """Rows of all tables."""
        return sum(t.num_rows for t in self.tables)

    def describe(self) -> str:
        """``FromItems[rows=..., blocks=...]`` and the like."""
        return f"{self.name}[rows={self.count_rows()}, tables={len(self.tables)}]"

    def with_columns(self, columns: list[str]) -> TableSource:
        """The same tables keeping ``columns``."""
        schema = self.schema() or pa.schema([])
        columns = check_columns(columns, schema, f"the {self.name} data")
        return TableSource(tuple(t.select(columns) for t in self.tables), self.name, self.split)

    def with_limit(self, n: int) -> TableSource:
        """The first ``n`` rows of the tables."""
        remaining = check_limit(n)
        kept = []
        for table in self.tables:
            if remaining <= 0:
                break
            kept.append(table.slice(0, remaining))
            remaining -= kept[-1].num_rows
        if not kept and self.tables:
            kept = [self.tables[0].slice(0, 0)]
        return TableSource(tuple(kept), self.name, self.split)


def _same_table(table: pa.Table) -> pa.Table:
    return table


def items_source(items: Sequence[Any]) -> TableSource:
    """The source of ``from_items``: dicts become rows; other values go in column ``item``.

    Dict rows may leave keys out (the value is null); a key whose values are numpy
    arrays of one shape becomes a tensor column.

    >>> items_source([{"a": 1}, {"a": 2, "b": "x"}]).tables[0].to_pydict()
    {'a': [1, 2], 'b': [None, 'x']}
    """
    if isinstance(items, (Mapping, str, bytes)) or not hasattr(items, "__iter__"):
        raise TypeError(f"from_items needs a list of items, not {type(items).__name__}; "
                        "wrap a single item in a list")
    items = list(items)
    are_dicts = [isinstance(item, Mapping) for item in items]
    if any(are_dicts) and not all(are_dicts):
        index = are_dicts.index(not are_dicts[0])
        raise TypeError(f"from_items got a mix of dicts and non-dicts (item {index} is "
                        f"{type(items[index]).__name__}, item 0 is {type(items[0]).__name__}); "
                        "pass only dicts (one per row) or only values (column 'item')")
    if not items:
        columns: dict[str, list] = {}
    elif are_dicts[0]:
        keys: dict[str, None] = {}
        for item in items:
            keys.update(dict.fromkeys(item))
        columns = {key: [item.get(key) for item in items] for key in keys}
    else:
        columns = {"item": items}
    table = pa.table({name: _column_of_values(name, values) for name, values in columns.items()})
    return TableSource((table,), "FromItems", split=True)


def _column_of_values(name: str, values: list) -> pa.Array:
    first = values[0] if values else None
    if isinstance(first, np.ndarray) and all(isinstance(v, np.ndarray) and v.shape == first.shape
                                             for v in values):
        return column_from_values(np.stack(values))
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as err:
        raise TypeError(f"the values of column {name!r} do not fit one Arrow type ({err}); give "
                        "the column values of one type") from None


def pandas_source(dfs: Any) -> TableSource:
    """The source of ``from_pandas``: one block per DataFrame (the index is dropped)."""
    import pandas as pd

    frames = [dfs] if isinstance(dfs, pd.DataFrame) else _as_list(dfs, "from_pandas", "DataFrame")
    for i, df in enumerate(frames):
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"from_pandas got {type(df).__name__} at position {i}; pass a "
                            "pandas.DataFrame or a list of them")
    return TableSource(tuple(pa.Table.from_pandas(df, preserve_index=False) for df in frames),
                       "FromPandas")


def arrow_source(tables: Any) -> TableSource:
    """The source of ``from_arrow``: one block per ``pyarrow.Table`` (or RecordBatch)."""
    given = [tables] if isinstance(tables, (pa.Table, pa.RecordBatch)) else _as_list(
        tables, "from_arrow", "pyarrow.Table")
    out = []
    for i, table in enumerate(given):
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        if not isinstance(table, pa.Table):
            raise TypeError(f"from_arrow got {type(table).__name__} at position {i}; pass a "
                            "pyarrow.Table or a list of them")
        out.append(table)
    return TableSource(tuple(out), "FromArrow")


def numpy_source(arrays: Any) -> TableSource:
    """The source of ``from_numpy``: one block per array, in column ``data``.

    A 1-D array is a plain column; an N-D array is a fixed-shape tensor column whose
    rows are the array's first axis.
    """
    given = [arrays] if isinstance(arrays, np.ndarray) else _as_list(arrays, "from_numpy", "numpy.ndarray")
    out = []
    for i, array in enumerate(given):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"from_numpy got {type(array).__name__} at position {i}; pass a "
                            "numpy.ndarray or a list of them")
        if array.ndim == 0:
            raise ValueError(f"from_numpy got a 0-d array ({array!r}) at position {i}; pass an "
                             "array of at least 1 dimension (rows along the first axis)")
        out.append(pa.table({"data": column_from_values(array)}))
    return TableSource(tuple(out), "FromNumpy")


def _as_list(values: Any, api: str, kind: str) -> list:
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{api} needs a {kind} or a list of them, not {type(values).__name__}")
    if not values:
        raise ValueError(f"{api} got an empty list; pass at least one {kind}")
    return list(values)
