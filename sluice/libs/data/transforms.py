"""Block functions: what one MAP op does to one block. Each runs inside a worker.

Every class here is a small picklable callable ``block -> block`` with a ``name``
(the stage label in plans, stats and errors). Users' functions are called inside
them and their answers checked, so a wrong return names the stage that gave it.
The ones that name columns say so before anything runs (``columns.py``):
``required_columns`` are the columns they read, ``output_columns(input columns)``
the columns they make (None: not known without running).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sluice.libs.data.block import (
    ColumnNotFoundError,
    block_from_rows,
    column_from_values,
    concat_blocks,
    slices,
    to_batch,
    to_block,
)


_NO_MATCH_RE = re.compile(r"No match for FieldRef\.Name\((.*?)\)")


def fn_name(fn: Any) -> str:
    """A readable name for a user function or callable class."""
    return getattr(fn, "__name__", None) or type(fn).__name__


def check_columns(block: pa.Table, columns: list[str], where: str) -> None:
    """A ColumnNotFoundError (a KeyError) naming the first of ``columns`` missing from ``block``."""
    if block.num_columns == 0 and block.num_rows == 0:
        return  # an empty block of an empty dataset: nothing to check against
    missing = [c for c in columns if c not in block.column_names]
    if missing:
        raise ColumnNotFoundError(f"{where}: column {missing[0]!r} does not exist; the dataset has columns "
                       f"{block.column_names}")


class MapRows:
    """``map(fn)``: each row dict -> one row dict."""

    def __init__(self, fn: Callable[[dict], dict], fn_args: tuple = (), fn_kwargs: dict | None = None):
        self.fn, self.fn_args, self.fn_kwargs = fn, fn_args, fn_kwargs or {}
        self.name = f"Map({fn_name(fn)})"

    def __call__(self, block: pa.Table) -> pa.Table:
        rows = [self.fn(row, *self.fn_args, **self.fn_kwargs) for row in block.to_pylist()]
        return block_from_rows(rows, self.name)


class FlatMap:
    """``flat_map(fn)``: each row dict -> a list of row dicts."""

    def __init__(self, fn: Callable[[dict], list], fn_args: tuple = (), fn_kwargs: dict | None = None):
        self.fn, self.fn_args, self.fn_kwargs = fn, fn_args, fn_kwargs or {}
        self.name = f"FlatMap({fn_name(fn)})"

    def __call__(self, block: pa.Table) -> pa.Table:
        rows: list = []
        for row in block.to_pylist():
            out = self.fn(row, *self.fn_args, **self.fn_kwargs)
            if isinstance(out, Mapping) or not hasattr(out, "__iter__"):
                raise TypeError(f"{self.name} returned {type(out).__name__}; a flat_map function "
                                "must return a list of row dicts")
            rows.extend(out)
        return block_from_rows(rows, self.name)


class MapBatches:
    """``map_batches(fn)``: each batch of ``batch_size`` rows, in ``batch_format`` -> a batch."""

    def __init__(self, fn: Callable, batch_size: int | None, batch_format: str,
                 fn_args: tuple = (), fn_kwargs: dict | None = None, name: str | None = None):
        self.fn, self.batch_size, self.batch_format = fn, batch_size, batch_format
        self.fn_args, self.fn_kwargs = fn_args, fn_kwargs or {}
        self.name = name or f"MapBatches({fn_name(fn)})"

    def __call__(self, block: pa.Table) -> pa.Table:
        return apply_batches(self.fn, block, self.batch_size, self.batch_format, self.name,
                             self.fn_args, self.fn_kwargs)


def apply_batches(fn: Callable, block: pa.Table, batch_size: int | None, batch_format: str,
                  where: str, fn_args: tuple = (), fn_kwargs: dict | None = None) -> pa.Table:
    """``fn`` over ``block`` in batches, its answers checked and joined into one block."""
    fmt = "numpy" if batch_format == "default" else batch_format
    out = [to_block(fn(to_batch(b, fmt), *fn_args, **(fn_kwargs or {})), where)
           for b in slices(block, batch_size)]
    return out[0] if len(out) == 1 else concat_blocks(out)


class FilterRows:
    """``filter(fn)``: keep the rows for which ``fn(row)`` is true."""

    def __init__(self, fn: Callable[[dict], bool]):
        self.fn = fn
        self.name = f"Filter({fn_name(fn)})"

    def output_columns(self, columns: list[str] | None) -> list[str] | None:
        """The input's columns."""
        return columns

    def __call__(self, block: pa.Table) -> pa.Table:
        mask = [bool(self.fn(row)) for row in block.to_pylist()]
        return block.filter(pa.array(mask, type=pa.bool_())) if block.num_rows else block


class FilterExpr:
    """``filter(expr=...)``: keep the rows a ``pyarrow.compute`` expression selects (vectorized)."""

    def __init__(self, expr: pc.Expression):
        self.expr = expr
        self.name = f"Filter({expr})"

    def output_columns(self, columns: list[str] | None) -> list[str] | None:
        """The input's columns."""
        return columns

    def missing_columns(self, columns: list[str]) -> list[str]:
        """A column the expression names that is not among ``columns`` (bound to them as
        columns of nulls, which any comparison accepts), or none."""
        probe = pa.schema([(c, pa.null()) for c in columns]).empty_table()
        try:
            probe.filter(self.expr)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, KeyError) as err:
            missing = _NO_MATCH_RE.search(str(err))
            return [missing.group(1)] if missing else []
        return []

    def __call__(self, block: pa.Table) -> pa.Table:
        try:
            return block.filter(self.expr)
        except (pa.ArrowInvalid, KeyError) as err:
            raise ColumnNotFoundError(f"{self.name}: {err}; the dataset has columns "
                                      f"{block.column_names}") from None


class SelectColumns:
    """``select_columns(cols)``: only these columns, in this order."""

    def __init__(self, columns: list[str]):
        self.columns = list(columns)
        self.name = f"SelectColumns({', '.join(self.columns)})"
        self.required_columns = self.columns

    def output_columns(self, columns: list[str] | None) -> list[str]:
        """These columns, in this order."""
        return list(self.columns)

    def __call__(self, block: pa.Table) -> pa.Table:
        check_columns(block, self.columns, self.name)
        return block.select(self.columns)


class DropColumns:
    """``drop_columns(cols)``: every column but these."""

    def __init__(self, columns: list[str]):
        self.columns = list(columns)
        self.name = f"DropColumns({', '.join(self.columns)})"
        self.required_columns = self.columns

    def output_columns(self, columns: list[str] | None) -> list[str] | None:
        """The input's columns but these."""
        return None if columns is None else [c for c in columns if c not in self.columns]

    def __call__(self, block: pa.Table) -> pa.Table:
        check_columns(block, self.columns, self.name)
        return block.drop_columns(self.columns)


class RenameColumns:
    """``rename_columns({old: new})``."""

    def __init__(self, mapping: dict[str, str]):
        self.mapping = dict(mapping)
        self.name = f"RenameColumns({', '.join(f'{k}->{v}' for k, v in self.mapping.items())})"
        self.required_columns = list(self.mapping)

    def output_columns(self, columns: list[str] | None) -> list[str] | None:
        """The input's columns, renamed."""
        return None if columns is None else [self.mapping.get(c, c) for c in columns]

    def __call__(self, block: pa.Table) -> pa.Table:
        check_columns(block, list(self.mapping), self.name)
        return block.rename_columns([self.mapping.get(c, c) for c in block.column_names])


class AddColumn:
    """``add_column(name, fn)``: a new (or replaced) column ``fn(batch)``, one value per row."""

    def __init__(self, column: str, fn: Callable, batch_format: str):
        self.column, self.fn, self.batch_format = column, fn, batch_format
        self.name = f"AddColumn({column})"

    def output_columns(self, columns: list[str] | None) -> list[str] | None:
        """The input's columns and this one (in place when it replaces one)."""
        if columns is None:
            return None
        return list(columns) if self.column in columns else [*columns, self.column]

    def __call__(self, block: pa.Table) -> pa.Table:
        fmt = "numpy" if self.batch_format == "default" else self.batch_format
        values = self.fn(to_batch(block, fmt))
        column = column_from_values(values)
        if len(column) != block.num_rows:
            raise ValueError(f"{self.name}: the function returned {len(column)} values for a batch of "
                             f"{block.num_rows} rows; return one value per row")
        if self.column in block.column_names:
            return block.set_column(block.column_names.index(self.column), self.column, column)
        return block.append_column(self.column, column)
