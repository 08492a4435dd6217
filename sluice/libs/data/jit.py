"""``map(fn, jit=True)`` and ``map_batches(fn, jit=True)``: numba-compiled maps over numeric columns.

Rows: ``fn(row)`` sees a numba record (``row["x"]`` reads a column) and returns a
dict of numbers; the loop over rows is compiled too, so no Python runs per row.
The output columns and their types come from calling ``fn`` once in Python on the
first row. Batches: ``fn(batch)`` gets a numpy structured array of the numeric
columns (``batch["x"]`` is a column) and returns a dict of equal-length arrays.
Non-numeric columns cannot enter numba; the error names them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from sluice.libs.data.block import slices, to_block
from sluice.libs.data.transforms import fn_name


def records(block: pa.Table, where: str) -> np.ndarray:
    """The block as a numpy structured array (one copy); a TypeError naming non-numeric columns."""
    bad = [f"{f.name} ({f.type})" for f in block.schema
           if not (pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_boolean(f.type))]
    if bad:
        raise TypeError(f"{where}: jit=True compiles over numeric columns, but the block has "
                        f"{', '.join(bad)}; select_columns the numeric ones first or drop jit=True")
    out = np.empty(block.num_rows, dtype=[(f.name, f.type.to_pandas_dtype()) for f in block.schema])
    for name in block.column_names:
        out[name] = block.column(name).to_numpy()
    return out


class JitMapRows:
    """A compiled per-row map: ``fn(record) -> dict``, the row loop in numba."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self.name = f"Map({fn_name(fn)}, jit)"
        self._kernels: dict = {}

    def __getstate__(self) -> dict:
        return {"fn": self.fn, "name": self.name}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _kernels={})

    def __call__(self, block: pa.Table) -> pa.Table:
        if block.num_rows == 0:
            return block
        recs = records(block, self.name)
        first = self.fn({name: recs[name][0].item() for name in recs.dtype.names})
        if not isinstance(first, dict):
            raise TypeError(f"{self.name} returned {type(first).__name__}; a row function must return "
                            "a dict of column name -> number")
        names = list(first)
        dtypes = [np.asarray(first[n]).dtype for n in names]
        kernel = self._kernel(tuple(names), recs.dtype)
        outs = [np.empty(block.num_rows, dtype=d) for d in dtypes]
        kernel(recs, *outs)
        return pa.table(dict(zip(names, outs)))

    def _kernel(self, names: tuple[str, ...], dtype: np.dtype) -> Callable:
        key = (names, dtype)
        if key not in self._kernels:
            import numba

            row_fn = numba.njit(self.fn)
            params = ", ".join(f"out{i}" for i in range(len(names)))
            body = "\n".join(f"        out{i}[i] = r[{n!r}]" for i, n in enumerate(names))
            src = (f"def kernel(recs, {params}):\n    for i in range(recs.shape[0]):\n"
                   f"        r = row_fn(recs[i])\n{body}\n")
            scope: dict[str, Any] = {"row_fn": row_fn}
            exec(src, scope)  # noqa: S102 - generated from column names only
            self._kernels[key] = numba.njit(scope["kernel"])
        return self._kernels[key]


class JitMapBatches:
    """A compiled batch map: ``fn(structured array) -> dict of arrays``.

    numba cannot hand a dict of arrays of different types back to Python, so the
    output's keys are found by calling ``fn`` in Python on the first row, and a
    compiled wrapper returns the values as a tuple in that order.
    """

    def __init__(self, fn: Callable, batch_size: int | None):
        self.fn, self.batch_size = fn, batch_size
        self.name = f"MapBatches({fn_name(fn)}, jit)"
        self._wrappers: dict = {}

    def __getstate__(self) -> dict:
        return {"fn": self.fn, "batch_size": self.batch_size, "name": self.name}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _wrappers={})

    def __call__(self, block: pa.Table) -> pa.Table:
        out = [self._one(b) for b in slices(block, self.batch_size)]
        return out[0] if len(out) == 1 else pa.concat_tables(out)

    def _one(self, block: pa.Table) -> pa.Table:
        recs = records(block, self.name)
        probe = self.fn(recs[:1])
        if not isinstance(probe, dict):
            raise TypeError(f"{self.name} returned {type(probe).__name__}; a jit batch function must "
                            "return a dict of column name -> numpy array")
        names = tuple(probe)
        key = (names, recs.dtype)
        if key not in self._wrappers:
            import numba

            inner = numba.njit(self.fn)
            values = ", ".join(f"d[{n!r}]" for n in names)
            src = f"def wrapper(recs):\n    d = inner(recs)\n    return ({values},)\n"
            scope: dict[str, Any] = {"inner": inner}
            exec(src, scope)  # noqa: S102 - generated from the output's column names only
            self._wrappers[key] = numba.njit(scope["wrapper"])
        return to_block(dict(zip(names, self._wrappers[key](recs))), self.name)
