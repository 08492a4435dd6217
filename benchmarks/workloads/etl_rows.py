"""etl_rows: part of the etl data set through a row function, then group by key and sum.

Read ``key, x, y`` from the first 2 of the etl set's Parquet files (1M rows: Dask's
row-wise apply takes about 37 µs a row on 2 workers, so all 10M rows would take it
minutes a pass), map every row through a Python function
``row -> {"key": key, "z": x * 2 + y}``, group by ``key`` and sum ``z``. It shows what
``map(fn, jit=True)`` buys: sluice compiles the function and the loop over rows with
numba, so no Python runs per row, while Ray Data's ``map(fn)`` and Dask's
``apply(fn, axis=1)`` call the function in Python once per row. sluice's run also times
the same pipeline once with ``jit=False`` (the ``no_jit_seconds`` metric), so the report
shows jit against no jit on the same runtime.

There are no targets: the figures show the difference the compilation makes. Each run
warms its system with one untimed pass over the small (quick) data set, so worker
start-up and function export (and for sluice numba's compilation, where its workers keep
the compiled function) stay outside the timing; a full-size warm-up pass would take Dask
minutes.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.workloads import etl
from benchmarks.workloads._common import (
    Timings,
    dask_client,
    ray_runtime,
    sluice_runtime,
    time_reps,
)
from benchmarks.workloads.etl import KEYS, data_skip_reason, ensure_data

TITLE = "1M rows of Parquet: a row function (sluice: numba jit), group-by sum"
TARGET_VS_RAY = None  # no target: the workload shows what jit=True buys
COLUMNS = ["key", "x", "y"]
FILES = 2  # of the etl set's files, at full size


def skip_reason() -> str | None:
    """Why the runner skips etl_rows: only when sluice.data cannot be imported."""
    return data_skip_reason("etl_rows")


def _functions():
    """The row function, defined here so that every system pickles it by value. It
    only indexes and does arithmetic, so numba compiles it as it is."""
    def row_fn(row):
        return {"key": row["key"], "z": row["x"] * 2 + row["y"]}

    return row_fn


def size(quick: bool) -> tuple[int, int]:
    """(files, rows per file) timed."""
    files, rows = etl.size(quick)
    return (files, rows) if quick else (FILES, rows)


def _data(quick: bool) -> tuple[str, str]:
    """(the folder to time, the small data set to warm up on).

    At full size, a folder of its own holding hard links to the etl set's first files:
    every system reads a folder, as in etl (Ray Data's read of a list of paths goes
    through fsspec's HTTP module, which some fsspec releases lack).
    """
    folder = Path(ensure_data(quick))
    if quick:
        return str(folder), ensure_data(True)
    files, rows = size(False)
    mine = folder.parent / f"etl-rows-{files * rows}"
    mine.mkdir(exist_ok=True)
    for i in range(files):
        name = f"part-{i:03d}.parquet"
        if not (mine / name).exists():
            os.link(folder / name, mine / name)
    return str(mine), ensure_data(True)


def run_sluice(reps: int, quick: bool = False) -> Timings:
    data, warm = _data(quick)
    row_fn = _functions()
    with sluice_runtime():
        import sluice.data as sd

        def pipeline(path: str, jit: bool) -> None:
            ds = sd.read_parquet(path, columns=COLUMNS).map(row_fn, jit=jit)
            assert len(ds.groupby("key").sum("z").to_pandas()) == KEYS

        pipeline(warm, jit=True)  # warm-up, untimed
        timings = Timings(time_reps(lambda: pipeline(data, jit=True), reps))
        pipeline(warm, jit=False)  # warm-up of the no-jit pipeline, untimed
        timings.metrics["no_jit_seconds"] = time_reps(lambda: pipeline(data, jit=False), 1)[0]
        return timings


def run_ray(reps: int, quick: bool = False) -> Timings:
    data, warm = _data(quick)
    row_fn = _functions()
    with ray_runtime() as ray:
        from ray.data.context import DataContext

        DataContext.get_current().enable_progress_bars = False

        def pipeline(path: str) -> None:
            ds = ray.data.read_parquet(path, columns=COLUMNS).map(row_fn)
            assert len(ds.groupby("key").sum("z").to_pandas()) == KEYS

        pipeline(warm)  # warm-up, untimed
        return Timings(time_reps(lambda: pipeline(data), reps))


def run_dask(reps: int, quick: bool = False) -> Timings:
    import dask.dataframe as dd

    data, warm = _data(quick)
    row_fn = _functions()
    with dask_client():
        def pipeline(path: str) -> None:
            df = dd.read_parquet(path, columns=COLUMNS)
            # A pandas row holds int64 and float64 columns as float64: the key comes back
            # as a float, which groups the same.
            df = df.apply(row_fn, axis=1, result_type="expand", meta={"key": "f8", "z": "f8"})
            assert len(df.groupby("key")["z"].sum().compute()) == KEYS

        pipeline(warm)  # warm-up, untimed
        return Timings(time_reps(lambda: pipeline(data), reps))
