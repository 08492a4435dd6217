"""Blocks: every block of a Dataset is a ``pyarrow.Table``; batches are views of one.

A block function maps a block to a block. Users' batch functions see a batch in the
format they asked for (``"pyarrow"``, ``"pandas"``, ``"numpy"``: a dict of arrays)
and may return any of those; :func:`to_block` turns the answer back into a table,
or says which stage returned what.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

BATCH_FORMATS = ("pyarrow", "pandas", "numpy", "default")


class ColumnNotFoundError(KeyError, ValueError):
    """A column a data operation needs is not in the block (a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:
        # KeyError's own __str__ quotes its argument like a dict key; this is a sentence.
        return str(self.args[0]) if self.args else ""


def concat_blocks(blocks: list[pa.Table]) -> pa.Table:
    """One table of ``blocks`` in order (schemas unified; an empty list gives an empty table)."""
    blocks = [b for b in blocks if b is not None]
    if not blocks:
        return pa.table({})
    if len(blocks) == 1:
        return blocks[0]
    non_empty = [b for b in blocks if b.num_columns] or blocks
    try:
        return pa.concat_tables(non_empty, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        first = non_empty[0].schema
        for b in non_empty[1:]:
            if not b.schema.equals(first):
                raise ValueError(f"blocks of one dataset disagree on their schema: {_schema_text(first)} "
                                 f"vs {_schema_text(b.schema)}; make every batch function return the "
                                 f"same columns and types ({err})") from None
        raise


def _schema_text(schema: pa.Schema) -> str:
    return "{" + ", ".join(f"{f.name}: {f.type}" for f in schema) + "}"


def check_batch_format(batch_format: str) -> str:
    """``batch_format`` itself, or a ValueError naming the allowed ones."""
    if batch_format not in BATCH_FORMATS:
        raise ValueError(f"batch_format={batch_format!r} is not one of {list(BATCH_FORMATS)}; "
                         "use 'pyarrow', 'pandas' or 'numpy'")
    return batch_format


def to_batch(block: pa.Table, batch_format: str) -> Any:
    """The block in ``batch_format``: a Table, a pandas DataFrame or a dict of numpy arrays."""
    if batch_format == "pyarrow":
        return block
    if batch_format == "pandas":
        return block.to_pandas()
    return {name: column_to_numpy(block.column(name)) for name in block.column_names}


def column_to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A column as a numpy array (zero-copy for one chunk of a primitive type without nulls)."""
    if isinstance(column.type, pa.FixedShapeTensorType):
        return column.combine_chunks().to_numpy_ndarray()
    if pa.types.is_fixed_size_list(column.type):
        flat = column.combine_chunks()
        width = column.type.list_size
        return flat.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
    return column.to_numpy()


def to_block(value: Any, where: str) -> pa.Table:
    """A batch function's answer as a table; a TypeError naming ``where`` for anything else."""
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    if isinstance(value, Mapping):
        return _table_from_columns(value, where)
    if type(value).__name__ == "DataFrame" and hasattr(value, "to_dict"):
        return pa.Table.from_pandas(value, preserve_index=False)
    raise TypeError(f"{where} returned {type(value).__name__}; a batch function must return a "
                    "pyarrow.Table, a pandas.DataFrame or a dict of column name -> numpy array/list "
                    "(columns of one length)")


def _table_from_columns(columns: Mapping, where: str) -> pa.Table:
    arrays: dict[str, Any] = {}
    lengths = set()
    for name, col in columns.items():
        if not isinstance(name, str):
            raise TypeError(f"{where} returned a dict with key {name!r}; column names must be strings")
        try:
            arrays[name] = column_from_values(col)
        except (TypeError, pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise TypeError(f"{where} returned column {name!r} as {type(col).__name__} ({col!r:.60}), "
                            f"which is not a column ({err}); give each column as a numpy array, list or "
                            "Arrow array of one value per row") from None
        lengths.add(len(arrays[name]))
    if len(lengths) > 1:
        sizes = {name: len(a) for name, a in arrays.items()}
        raise ValueError(f"{where} returned columns of different lengths {sizes}; every column "
                         "of a batch must have one value per row")
    return pa.table(arrays)


def column_from_values(values: Any) -> pa.Array | pa.ChunkedArray:
    """An Arrow column of a numpy array (N-d arrays as a fixed-shape tensor column), list or Arrow array."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if isinstance(values, np.ndarray) and values.ndim > 1:
        if not values.flags.c_contiguous:
            values = np.ascontiguousarray(values)
        return pa.FixedShapeTensorArray.from_numpy_ndarray(values)
    if type(values).__name__ == "Series":
        return pa.Array.from_pandas(values)
    return pa.array(values)


def block_from_rows(rows: list[Any], where: str, schema: pa.Schema | None = None) -> pa.Table:
    """A table of row dicts; a TypeError naming ``where`` for a row that is not a dict."""
    for row in rows:
        if not isinstance(row, Mapping):
            raise TypeError(f"{where} returned a row of type {type(row).__name__} ({row!r:.80}); "
                            "a row function must return a dict of column name -> value")
        break
    if not rows:
        return schema.empty_table() if schema is not None else pa.table({})
    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        for key in dict.fromkeys(k for row in rows for k in row):  # which key: only on this error path
            try:
                pa.array([row.get(key) for row in rows])
            except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
                raise TypeError(f"{where} returned rows whose values for {key!r} do not fit one type "
                                f"({err}); return values of one type for each key") from None
        raise


def slices(block: pa.Table, batch_size: int | None) -> Iterator[pa.Table]:
    """``block`` in consecutive slices of ``batch_size`` rows (the whole block for None)."""
    if batch_size is None or block.num_rows <= batch_size:
        yield block
        return
    for start in range(0, block.num_rows, batch_size):
        yield block.slice(start, batch_size)
