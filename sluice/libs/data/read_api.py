"""The functions that make a Dataset from data: ``range``, ``from_*``, ``read_*``."""

from __future__ import annotations

from typing import Any

from sluice.libs.data import datasource as sources
from sluice.libs.data.dataset import Dataset
from sluice.libs.data.logical import Kind, LogicalOp


def _read(source: Any) -> Dataset:
    return Dataset(LogicalOp(Kind.READ, source.name, source=source))


def range(n: int) -> Dataset:
    """Rows ``{"id": 0}`` .. ``{"id": n - 1}``."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"range({n!r}): give a row count, an int >= 0")
    return _read(sources.range_source(n))


def from_items(items: list) -> Dataset:
    """Rows from a list of dicts (or of plain values, in a column ``item``)."""
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"from_items takes a list, not {type(items).__name__}")
    return _read(sources.items_source(list(items)))


def from_pandas(dfs: Any) -> Dataset:
    """Rows of a pandas DataFrame (or a list of them, one block each)."""
    return _read(sources.pandas_source(dfs))


def from_arrow(tables: Any) -> Dataset:
    """Rows of a pyarrow Table (or a list of them, one block each)."""
    return _read(sources.arrow_source(tables))


def from_numpy(arrays: Any) -> Dataset:
    """Rows of a numpy array (or a list of them) in a column ``data``."""
    return _read(sources.numpy_source(arrays))


def read_parquet(paths: Any, *, columns: list[str] | None = None, filter: Any = None) -> Dataset:
    """Parquet files, folders (hive ``key=value`` partitions become columns) or globs, listed lazily.

    ``columns`` and ``filter`` (a ``pyarrow.compute`` expression) are read-time
    projection and predicate; later ``select_columns``/``filter(expr=...)`` are pushed
    here by the optimizer too.
    """
    from sluice.libs.data.parquet import ParquetSource

    return _read(ParquetSource(paths, columns=columns, filter=filter))


def read_csv(paths: Any, **options: Any) -> Dataset:
    """CSV files, folders or globs (``options`` go to pyarrow.csv)."""
    from sluice.libs.data.text import CSVSource

    return _read(CSVSource(paths, **options))


def read_json(paths: Any, **options: Any) -> Dataset:
    """JSON-lines files, folders or globs."""
    from sluice.libs.data.text import JSONSource

    return _read(JSONSource(paths, **options))


__all__ = [
    "from_arrow",
    "from_items",
    "from_numpy",
    "from_pandas",
    "range",
    "read_csv",
    "read_json",
    "read_parquet",
]
