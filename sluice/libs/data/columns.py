"""What a Dataset's plan knows of its columns before anything runs, and the checks that use it.

A source knows its column names without reading data when its schema is at hand
(a Parquet footer read at planning, an in-memory table, ``range``); a CSV file's
header costs a small read, so it is asked for only when the plan is compiled;
JSON lines may add keys on any line, so their columns are never known up front.
Each op then derives its output columns from its input's: projections and
renames say which, filters and limits keep them, an aggregate makes its keys and
results, and a user function hides them (unknown).

An op that needs columns (a group-by key, an aggregate's ``on``, a sort key, a
projection) is checked against what is known: at the call that builds it when
the input's columns are free to know, and again when the plan is compiled. So
a missing column is a :class:`ColumnNotFoundError` (a ``ValueError`` and a
``KeyError``, as Ray Data users expect) in the driver, before any task runs.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from sluice.libs.data.block import ColumnNotFoundError
from sluice.libs.data.logical import Kind, LogicalOp, topological


def output_columns(root: LogicalOp, *, read: bool = False) -> list[str] | None:
    """The column names of ``root``'s blocks when the plan knows them (else ``None``).

    ``read=True`` lets a source read a little (a CSV header) to know them.
    """
    known: dict[int, list[str] | None] = {}
    for op in topological(root):  # iterative: a plan may be a long chain
        known[id(op)] = _columns_of(op, [known[id(i)] for i in op.inputs], read)
    return known[id(root)]


def check_plan(root: LogicalOp) -> None:
    """A :class:`ColumnNotFoundError` for the first op of the plan that needs a column its
    input does not have (sources may read their headers); nothing when all is known good."""
    ops = topological(root)
    if not any(_names_columns(op) for op in ops):
        return
    known: dict[int, list[str] | None] = {}
    for op in ops:
        inputs = [known[id(i)] for i in op.inputs]
        if _names_columns(op) and len(inputs) == 1:
            require_of(op.fn, inputs[0], op.name)
        known[id(op)] = _columns_of(op, inputs, True)


def require_of(fn: object, present: Sequence[str] | None, where: str) -> None:
    """:func:`require` for what block function or shuffle ``fn`` names: its
    ``required_columns``, and those its ``missing_columns(present)`` finds (an expression)."""
    if present is None:
        return
    named = list(getattr(fn, "required_columns", None) or [])
    probe = getattr(fn, "missing_columns", None)
    require(named + (probe(list(present)) if probe is not None else []), present, where)


def require(columns: Sequence[str], present: Sequence[str] | None, where: str) -> None:
    """A ColumnNotFoundError naming the first of ``columns`` not in ``present``, the columns
    there are and the closest name; nothing when ``present`` is unknown (None)."""
    if present is None:
        return
    for column in columns:
        if column not in present:
            close = difflib.get_close_matches(str(column), [str(p) for p in present], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ColumnNotFoundError(f"{where}: column {column!r} does not exist; the dataset has "
                                      f"columns {list(present)}{hint}")


def _names_columns(op: LogicalOp) -> bool:
    """Whether ``op`` reads columns of its input by name."""
    return op.kind in (Kind.MAP, Kind.SHUFFLE) and (
        bool(getattr(op.fn, "required_columns", None)) or hasattr(op.fn, "missing_columns"))


def _columns_of(op: LogicalOp, inputs: list[list[str] | None], read: bool) -> list[str] | None:
    if op.kind is Kind.READ:
        names = getattr(op.source, "column_names", None)
        return names(read=read) if names is not None else None
    if op.kind is Kind.LIMIT:
        return inputs[0]
    if op.kind is Kind.UNION:
        first = inputs[0]
        return first if first is not None and all(i == first for i in inputs) else None
    if op.kind in (Kind.MAP, Kind.SHUFFLE):
        # ``output_columns(input columns or None)``: what the op makes (None: unknown).
        derive = getattr(op.fn, "output_columns", None)
        return derive(inputs[0]) if derive is not None else None
    return None
